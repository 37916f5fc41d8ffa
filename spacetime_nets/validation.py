"""Argument checks shared by the library: one wording for every "bad input" ValueError.

Each check returns the value it accepted (converted to the plain Python type) or raises a
ValueError that names the argument, says what was expected and shows what came, e.g.
``epochs: expected an int >= 1, got 0``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

__all__ = [
    "check_bool",
    "check_choice",
    "check_int",
    "check_real",
    "check_seed",
    "first_nonfinite",
]


def check_int(name: str, value: object, low: int = 1) -> int:
    """An integer ``>= low`` (Python or NumPy/torch integer scalars; never a bool or a float).

    Args:
        name: the argument's name, used in the message.
        value: the value to check.
        low: the smallest accepted value.

    Returns:
        ``value`` as a Python int.
    """
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")
    try:
        v = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{name}: expected an int >= {low}, got {value!r}") from None
    if v < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")
    return v


def check_real(name: str, value: object, positive: bool = False) -> float:
    """A finite real number ``>= 0`` (``> 0`` with ``positive``); bools, NaN and strings
    (``"0.3"`` is text, not a number) are refused.

    Args:
        name: the argument's name, used in the message.
        value: the value to check.
        positive: refuse 0 as well.

    Returns:
        ``value`` as a Python float.
    """
    if isinstance(value, (bool, str, bytes)):
        raise ValueError(f"{name}: expected a number, got {value!r:.40}")
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number, got {value!r}") from None
    if not math.isfinite(f) or f < 0 or (positive and f == 0):
        need = "> 0" if positive else ">= 0"
        raise ValueError(f"{name}: expected a finite number {need}, got {value!r}")
    return f


def check_bool(name: str, value: object) -> bool:
    """``True`` or ``False`` (a NumPy bool scalar too); ``'yes'``, ``1``, None or a tensor
    are refused rather than read by their truth value.

    Args:
        name: the argument's name, used in the message.
        value: the value to check.

    Returns:
        ``value`` as a Python bool.
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ValueError(f"{name}: expected True or False, got {value!r}")


def check_seed(name: str, value: object) -> int:
    """A random seed: an integer in ``[0, 2**63)`` (Python or NumPy/torch integer scalar).

    Args:
        name: the argument's name, used in the message.
        value: the value to check.

    Returns:
        ``value`` as a Python int.
    """
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected an int in [0, 2**63), got {value!r}")
    try:
        v = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{name}: expected an int in [0, 2**63), got {value!r}") from None
    if not 0 <= v < 2**63:
        raise ValueError(f"{name}: expected an int in [0, 2**63), got {value!r}")
    return v


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """One of ``choices``.

    Args:
        name: the argument's name, used in the message.
        value: the value to check.
        choices: the accepted values.

    Returns:
        ``value`` unchanged.
    """
    options = tuple(choices)
    if value not in options:
        shown = ", ".join(str(c) for c in options)
        raise ValueError(f"{name}: expected one of {shown}; got {value!r}")
    return value


def first_nonfinite(t: torch.Tensor) -> tuple[int, ...] | None:
    """The index of the first NaN or infinite entry of a floating tensor (row-major), or None.

    One reduction over the whole tensor; the position is searched only when there is one.

    Args:
        t: any tensor; integer and bool tensors are always finite.

    Returns:
        A tuple of indices (``(row, column)`` for ``[N, d]``), or None when all are finite.
    """
    if not (t.is_floating_point() or t.is_complex()) or t.numel() == 0:
        return None
    bad = ~torch.isfinite(t)
    if not bool(bad.any()):
        return None
    flat = int(bad.reshape(-1).nonzero()[0, 0])
    return tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), t.shape))
