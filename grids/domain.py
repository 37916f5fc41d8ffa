"""Boxes Omega = [a1, b1] x ... x [ad, bd] on which the width variable xi lives."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["Domain", "as_domain"]


class Domain:
    """An axis-aligned box ``[a1, b1] x ... x [ad, bd]`` with ``a_i < b_i`` (finite).

    ``Domain((0, 1))`` is an interval, ``Domain([(0, 1), (-1, 1)])`` a rectangle.

    Args:
        bounds: one pair ``(a, b)`` (an interval), a sequence of pairs ``[(a1, b1), ...]``
            (one per axis), or a `Domain` (its bounds are shared). Numbers may be Python,
            NumPy or zero-dimensional torch reals, never bools or strings.
        name: the argument name used in error messages.

    Raises:
        ValueError: for anything else, a side that is not finite, or one with ``a >= b``.
    """

    __slots__ = ("bounds",)

    def __init__(self, bounds: Domain | Sequence, name: str = "domain") -> None:
        if isinstance(bounds, Domain):
            self.bounds = bounds.bounds
            return
        if isinstance(bounds, (str, bytes)):
            raise ValueError(f"{name}: expected (a, b) or [(a1, b1), (a2, b2)], got {bounds!r}")
        try:
            items = list(bounds)
        except TypeError:
            raise ValueError(
                f"{name}: expected (a, b) or [(a1, b1), (a2, b2)], got {bounds!r}"
            ) from None
        if len(items) == 0:
            raise ValueError(f"{name}: expected (a, b) or [(a1, b1), ...], got an empty {bounds!r}")
        if all(_is_number(v) for v in items):
            items = [tuple(items)]
        parsed = []
        for i, pair in enumerate(items):
            try:
                if isinstance(pair, (str, bytes)):
                    raise TypeError
                a, b = pair
                if not (_is_number(a) and _is_number(b)):
                    raise TypeError
                a, b = float(a), float(b)
            except (TypeError, ValueError, OverflowError):
                raise ValueError(
                    f"{name}: side {i} must be a pair of numbers (a, b), got {pair!r}"
                ) from None
            if not (math.isfinite(a) and math.isfinite(b)):
                raise ValueError(f"{name}: side {i} must be finite, got ({a}, {b})")
            if not a < b:
                kind = "empty" if a == b else "reversed"
                raise ValueError(f"{name}: side {i} is {kind}: need a < b, got ({a}, {b})")
            parsed.append((a, b))
        self.bounds: tuple[tuple[float, float], ...] = tuple(parsed)

    @property
    def dim(self) -> int:
        """Number of dimensions d of the box."""
        return len(self.bounds)

    @property
    def volume(self) -> float:
        """|Omega| = prod_i (b_i - a_i)."""
        return math.prod(b - a for a, b in self.bounds)

    @property
    def lower(self) -> tuple[float, ...]:
        """The lower corner ``(a1, ..., ad)``."""
        return tuple(a for a, _ in self.bounds)

    @property
    def upper(self) -> tuple[float, ...]:
        """The upper corner ``(b1, ..., bd)``."""
        return tuple(b for _, b in self.bounds)

    def to_json(self) -> list[list[float]]:
        """The bounds as JSON lists.

        Returns:
            ``[[a1, b1], ..., [ad, bd]]``, which `Domain(...)` reads back.
        """
        return [[a, b] for a, b in self.bounds]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Domain) and self.bounds == other.bounds

    def __hash__(self) -> int:
        return hash(self.bounds)

    def __repr__(self) -> str:
        if self.dim == 1:
            return f"Domain({self.bounds[0]})"
        return f"Domain({list(self.bounds)})"


def _is_number(v: object) -> bool:
    """A real number (Python, NumPy or a one-element torch scalar); never a bool or a string."""
    if isinstance(v, (bool, np.bool_, str, bytes)):
        return False
    if isinstance(v, torch.Tensor):
        return v.dim() == 0 and not v.is_complex() and v.dtype != torch.bool
    return isinstance(v, (int, float)) or (
        hasattr(v, "__float__") and not hasattr(v, "__len__") and not isinstance(v, complex)
    )


def as_domain(domain: Domain | Sequence, name: str = "domain") -> Domain:
    """Validate and return ``domain`` as a [`Domain`][grids.domain.Domain].

    Args:
        domain: a `Domain` (returned as it is) or bounds that `Domain(...)` takes.
        name: the argument name used in error messages.

    Returns:
        The `Domain`.

    Raises:
        ValueError: when ``domain`` is not a valid box.
    """
    return domain if isinstance(domain, Domain) else Domain(domain, name=name)
