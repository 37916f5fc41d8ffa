"""Explicit Runge-Kutta steppers as Butcher tableaux: adding a stepper is one entry.

A step of size dt from x with the field f (controls frozen on the step):

    k_i = f(x + dt sum_{j<i} a_ij k_j),    y = x + dt sum_i b_i k_i

A single-stage tableau (``euler``, under whatever name it is registered) is special in the
space-time model
([`ButcherTableau.between_grids`][spacetime_nets.steppers.ButcherTableau.between_grids]): with
dense kernels its field is evaluated at the *new* nodes (W^k maps G_k to G_{k+1}),
X^{k+1} = Pi_k X^k + dt f(X^k); every other stepper (and every stationary kernel) takes the step
on G_k and then transfers, X^{k+1} = Pi_k(y).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from grids.registry import FieldView, NamesView

__all__ = [
    "ButcherTableau",
    "STEPPERS",
    "STEPPER_NAMES",
    "STEPPER_ORDERS",
    "register_stepper",
    "get_stepper",
    "steps_between_grids",
    "rk_step",
]


@dataclass(frozen=True)
class ButcherTableau:
    """Coefficients of an explicit RK method: ``a`` (strictly lower triangular rows), ``b``
    (weights), ``order`` (of the method for smooth fields).

    Attributes:
        name: the name ``method=`` takes.
        a: the stage coefficients a_ij, row i with i entries (``()`` for the first stage).
        b: the weights b_i, one per stage.
        order: the global order p of the method for smooth fields (errors O(dt^p)).
    """

    name: str
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    order: int

    @property
    def stages(self) -> int:
        """The number of stages s (evaluations of the field per step), ``len(b)``."""
        return len(self.b)

    @property
    def between_grids(self) -> bool:
        """A single-stage tableau (forward Euler, the ResNet step) reads its field at the next
        grid's nodes, X^{k+1} = Pi_k X^k + dt f(X^k) with W^k: G_k -> G_{k+1}; a tableau of
        several stages evaluates f at intermediate states on G_k, so it steps on G_k and then
        transfers."""
        return self.stages == 1


STEPPERS: dict[str, ButcherTableau] = {}
"""The registered time steppers, by name: `{name: ButcherTableau}` (`register_stepper` adds
one)."""


STEPPER_NAMES: Sequence[str] = NamesView(STEPPERS)
"""The registered steppers' names: a live view of the keys of `STEPPERS`."""
STEPPER_ORDERS: Mapping[str, int] = FieldView(STEPPERS, "order")
"""The registered steppers' global orders p, `{name: p}`: a live view of `STEPPERS`."""


def register_stepper(tableau: ButcherTableau) -> ButcherTableau:
    """Add a stepper to ``STEPPERS`` (its ``a`` rows must be strictly lower triangular).

    Args:
        tableau: the tableau; one of the same name is replaced.

    Returns:
        ``tableau``.

    Raises:
        ValueError: when row i of ``a`` does not have i entries.
    """
    if len(tableau.a) != tableau.stages or any(len(row) != i for i, row in enumerate(tableau.a)):
        raise ValueError(f"tableau {tableau.name!r}: row i of a must have i entries")
    STEPPERS[tableau.name] = tableau
    return tableau


register_stepper(ButcherTableau("euler", ((),), (1.0,), 1))
register_stepper(ButcherTableau("midpoint", ((), (0.5,)), (0.0, 1.0), 2))
register_stepper(ButcherTableau("heun", ((), (1.0,)), (0.5, 0.5), 2))
register_stepper(ButcherTableau("ralston", ((), (2.0 / 3.0,)), (0.25, 0.75), 2))
register_stepper(
    ButcherTableau(
        "rk4",
        ((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
        (1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0),
        4,
    )
)


def get_stepper(method: str) -> ButcherTableau:
    """The tableau named ``method``; ValueError naming the registered ones otherwise.

    Args:
        method: a registered stepper name (``euler``, ``midpoint``, ``heun``, ``ralston``,
            ``rk4`` or one added with ``register_stepper``).

    Returns:
        The [`ButcherTableau`][spacetime_nets.steppers.ButcherTableau].
    """
    if not isinstance(method, str) or method not in STEPPERS:
        raise ValueError(f"method: expected one of {', '.join(STEPPERS)}; got {method!r}")
    return STEPPERS[method]


def rk_step(
    f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, dt: float, tab: ButcherTableau
) -> torch.Tensor:
    """One explicit RK step ``x -> y`` of size ``dt`` with the tableau ``tab``.

    k_i = f(x + dt sum_{j<i} a_ij k_j), y = x + dt sum_i b_i k_i (zero coefficients skipped).

    Args:
        f: the field, a tensor of the shape of ``x`` -> one of the same shape.
        x: the state (any shape).
        dt: the step size.
        tab: the tableau.

    Returns:
        y, of the shape of ``x``.
    """
    ks: list[torch.Tensor] = []
    for row in tab.a:
        xi = x
        for aij, kj in zip(row, ks):
            if aij != 0.0:
                xi = torch.add(xi, kj, alpha=dt * aij)
        ks.append(f(xi))
    y = x
    for bi, ki in zip(tab.b, ks):
        if bi != 0.0:
            y = torch.add(y, ki, alpha=dt * bi)
    return y


def steps_between_grids(method: str) -> bool:
    """[`ButcherTableau.between_grids`][spacetime_nets.steppers.ButcherTableau.between_grids]
    of the registered stepper ``method``.

    Args:
        method: a registered stepper name.

    Returns:
        True for a single-stage stepper (its field is read at the next grid's nodes).
    """
    return get_stepper(method).between_grids
