"""Small argument checks of the grids package (which never imports ``spacetime_nets``): every
bad input is a ValueError naming the argument, what was expected and what came."""

from __future__ import annotations

import math
import operator

import numpy as np
import torch

__all__ = ["as_int", "as_real", "is_int", "numeric_array"]


def is_int(value: object) -> bool:
    """True for a Python, NumPy or torch integer (never a bool, a float or a string)."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, torch.Tensor):
        return value.dim() == 0 and not value.is_floating_point() and not value.is_complex()
    try:
        operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return False
    return True


def as_int(name: str, value: object, low: int = 1, high: int | None = None) -> int:
    """``value`` as a Python int in ``[low, high]``; a bool, a float or a string is refused.

    The message reads ``"{name}: expected a positive int, got {value!r}"`` (``low = 1``) or
    ``"{name}: expected an int >= {low}, got ..."``, with the upper bound where one is given.
    """
    want = "a positive int" if low == 1 else f"an int >= {low}"
    if not is_int(value):
        raise ValueError(f"{name}: expected {want}, got {value!r}")
    v = operator.index(value)  # type: ignore[arg-type]
    if v < low:
        raise ValueError(f"{name}: expected {want}, got {value!r}")
    if high is not None and v > high:
        raise ValueError(f"{name}: expected {want} of at most {high:,}, got {value!r}")
    return v


def as_real(name: str, value: object, *, positive: bool = False, what: str = "a number") -> float:
    """``value`` as a finite Python float (``> 0`` with ``positive``); bools and strings are
    refused rather than read as numbers."""
    need = f"a finite {what} > 0" if positive else f"a finite {what}"
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise ValueError(f"{name}: expected {need}, got {value!r}")
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name}: expected {need}, got {value!r:.80}") from None
    if not math.isfinite(v) or (positive and v <= 0):
        raise ValueError(f"{name}: expected {need}, got {value!r}")
    return v


def numeric_array(name: str, value: object, what: str) -> np.ndarray | None:
    """Refuse booleans, strings and other non-numbers inside a sequence of numbers: None when
    ``value`` is a tensor (checked by its dtype elsewhere), else the values as an array.
    """
    if isinstance(value, torch.Tensor):
        if value.dtype.is_complex or value.dtype == torch.bool:
            raise ValueError(f"{name}: expected {what}, got a tensor of dtype {value.dtype}")
        return None
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected {what}, got {value!r:.80}") from None
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name}: expected {what}, got {value!r:.80}")
    return arr
