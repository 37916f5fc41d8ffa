"""Shared parts of the adaptive tools: argument checks, the calibration batch, outputs and
distances, multiply-add counts, and schedules as (times, grids) lists."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from grids import Grid, GridSchedule
from grids.quadrature import check_n

from ..integrate import multiply_adds
from ..models import SpaceTimeNet
from ..steppers import STEPPER_ORDERS
from ..training.data import _function_readout
from ..validation import first_nonfinite

_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)

ORDERS = STEPPER_ORDERS
"""The global order p of each time stepper, `{name: p}` (the error of a step of size dt is
O(dt^(p+1))): a live view of `spacetime_nets.steppers.STEPPERS`."""
SPACE_ORDER = 2
"""The order of the spatial discretisation: trapezoid/midpoint quadrature, linear transfers."""
_NORM_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "max": lambda d: d.abs().max(),
    "rms": lambda d: d.square().mean().sqrt(),
}
"""Each norm of a difference ``d`` (any shape), by name."""
NORMS: tuple[str, ...] = tuple(_NORM_FUNCTIONS)
"""The norms over the batch and the outputs that `metric="output"` accepts (`norm=`)."""
METRICS = ("output", "accuracy", "predictions")
"""The measures of a compression's change (`metric=`): the output's change, accuracy points
lost, or points of changed predictions."""


# --------------------------------------------------------------------------------------------
# validation and small helpers
# --------------------------------------------------------------------------------------------


def _check_continuous(model: Any, what: str) -> SpaceTimeNet:
    if not isinstance(model, SpaceTimeNet):
        raise ValueError(f"model: expected a SpaceTimeNet, got {type(model).__name__}")
    if not model.continuous:
        raise ValueError(
            f"model: {what} needs a continuous kernel (basis, neural, function, conv, spectral) "
            "that can be discretised on other schedules; this model has a nodal kernel"
        )
    return model


def _check_norm(norm: object) -> str:
    if norm not in NORMS:
        raise ValueError(f"norm: expected one of {', '.join(NORMS)}; got {norm!r}")
    return str(norm)


def _calibration(
    model: SpaceTimeNet, data: Any, need_labels: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(x [N, in], labels [N] or None) from a tensor, an (x, y) pair or an object with .x/.y,
    on the model's device and in its dtype."""
    y = None
    if isinstance(data, torch.Tensor):
        x = data
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    elif isinstance(getattr(data, "x", None), torch.Tensor):
        x, y = data.x, getattr(data, "y", None)
    else:
        raise ValueError(
            "data: expected a tensor x [N, in_features], a pair (x, y) or a Split with .x and "
            f".y, got {type(data).__name__}"
        )
    channels = getattr(model, "channel_mode", False)
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[0] < 1:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"data: expected x with a batch of N >= 1 samples, got {got}")
    if not channels and (x.dim() != 2 or x.shape[1] != model.in_features):
        raise ValueError(
            f"data: the model reads {model.in_features} features, x has shape {tuple(x.shape)}"
        )
    if x.is_complex() or not (x.is_floating_point() or x.dtype in _INT_DTYPES):
        raise ValueError(f"data: expected real inputs x, got dtype {x.dtype}")
    bad = first_nonfinite(x)
    if bad is not None:
        raise ValueError(
            f"data: x is not finite at row {bad[0]} (index {list(bad)}: {float(x[bad])}); "
            "calibrate on finite inputs"
        )
    ref = next(model.parameters())
    x = x.to(device=ref.device, dtype=ref.dtype)
    if channels:  # the accepted layouts depend on the lift: let the model check one sample
        try:
            with torch.no_grad():
                model(x[:1])
        except ValueError as exc:
            raise ValueError(f"data: {exc}") from None
    if y is not None:
        if not isinstance(y, torch.Tensor) or y.shape[:1] != x.shape[:1]:
            raise ValueError(
                f"data: labels must be a tensor with {x.shape[0]} rows, got "
                f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}"
            )
        y = y.to(ref.device)
    if need_labels:
        if y is None or y.dim() != 1 or y.is_floating_point() or y.dtype == torch.bool:
            raise ValueError(
                "data: metric='accuracy' needs integer class labels y [N] with x (a pair "
                "(x, y) or a Split)"
            )
    return x, y


def _check_labels(labels: torch.Tensor | None, out: torch.Tensor) -> None:
    """Class labels ``[N]`` must index the model's ``out.shape[1]`` classes: a label outside
    ``[0, classes)`` would count as a wrong prediction for every schedule, silently."""
    if labels is None or labels.dim() != 1 or labels.is_floating_point() or out.dim() != 2:
        return
    if labels.dtype == torch.bool or labels.is_complex():
        return
    classes = out.shape[1]
    outside = (labels < 0) | (labels >= classes)
    if bool(outside.any()):
        i = int(outside.nonzero()[0, 0])
        raise ValueError(
            f"data: the labels must be class indices in [0, {classes}) (the model has "
            f"{classes} outputs); row {i} has label {int(labels[i])}"
        )


@torch.no_grad()
def _outputs(
    model: SpaceTimeNet, x: torch.Tensor, batch: int = 1024, grid: Grid | None = None
) -> torch.Tensor:
    """The model's outputs ``[N, ...]`` in batches; a function readout answers on ``grid``
    (the reference model's last grid), so that outputs of different schedules compare."""
    was = model.training
    model.eval()
    kw = {"output_grid": grid} if grid is not None and _function_readout(model) else {}
    try:
        return torch.cat([model(x[s : s + batch], **kw) for s in range(0, x.shape[0], batch)])
    finally:
        model.train(was)


def _input_on_first_grid(model: SpaceTimeNet) -> bool:
    """True when the input is given as values on G_0 (identity lift): G_0 is then fixed."""
    return model.lift_entry.function


def _distance(a: torch.Tensor, b: torch.Tensor, norm: str) -> float:
    return float(_NORM_FUNCTIONS[norm]((a - b).double()))


def model_macs(model: SpaceTimeNet) -> int:
    """Multiply-adds per sample of ``model``: the flow (operators and the stencils of the
    transfers Pi_k, as [`multiply_adds`][spacetime_nets.integrate.multiply_adds] counts them),
    the readout (``out_features * n_K``, times c_K with channels) and the lift (scalar model:
    ``in_features * n_0`` for the linear lift, none for the cells and identity lifts, which
    are gathers; with channels the pointwise ``n_0 * c_0 * c_in``).

    Args:
        model: a SpaceTimeNet (any kernel; scalar or channel model).

    Returns:
        The multiply-adds of one sample's forward pass: flow, lift and readout together.
    """
    if not isinstance(model, SpaceTimeNet):
        raise ValueError(f"model: expected a SpaceTimeNet, got {type(model).__name__}")
    w = model.schedule.widths
    with torch.no_grad():
        try:  # each operator counts its own work (dense, conv taps, spectral modes and FFTs)
            flow = multiply_adds(model.disc, model.form, model.method, 1, model.controls())
        except TypeError:  # an integrate without per-operator counts
            flow = multiply_adds(model.disc, model.form, model.method, 1)
    readout = model.readout_entry.multiply_adds(model)
    if getattr(model, "channel_mode", False):
        lift = w[0] * model.schedule.channels[0] * model.in_channels  # the pointwise map
        return int(flow + lift + readout)
    lift = model.in_features * w[0] if model.lift_entry.learned else 0
    return int(flow + readout + lift)


_NAMED_COSTS: dict[str, Callable[[SpaceTimeNet], float]] = {"macs": model_macs}
"""The costs ``cost=`` takes by name (else a callable model -> float)."""


def _cost_fn(cost: object) -> Callable[[SpaceTimeNet], float]:
    """The cost function: ``model_macs`` for ``"macs"``, or the callable with its answers
    checked (a finite real number >= 0; a NaN, a string or an infinity would make every
    comparison of the search false and silently keep or drop schedules)."""
    named = _NAMED_COSTS.get(cost) if isinstance(cost, str) else None
    if named is not None:
        return named
    if isinstance(cost, str) or not callable(cost):
        names = " or ".join(map(repr, _NAMED_COSTS))
        raise ValueError(f"cost: expected {names} or a callable model -> float, got {cost!r:.80}")

    def checked(m: SpaceTimeNet) -> float:
        v = cost(m)
        ok = isinstance(v, (numbers.Real, torch.Tensor)) and not isinstance(v, (bool, np.bool_))
        if isinstance(v, torch.Tensor):
            ok = v.numel() == 1 and not v.is_complex() and v.dtype != torch.bool
        f = float(v) if ok else math.nan
        if not (ok and math.isfinite(f) and f >= 0):
            raise ValueError(
                f"cost: the callable must return a finite number >= 0 for every model, it "
                f"returned {v!r:.60} for the schedule with widths {m.schedule.widths}"
            )
        return f

    return checked


# ---- schedules as (times, grids) lists --------------------------------------------------------


class UniformGrids:
    """The uniform grids one search makes, one object per shape, rule and domain, so that
    equal grids are one object (a run of equal grids is found by identity, and the
    discretisation shares their buffers). Each search holds its own: nothing outlives it."""

    def __init__(self) -> None:
        self._made: dict[tuple, Grid] = {}

    def like(self, shape: tuple[int, ...], g: Grid) -> Grid:
        """The uniform grid of ``shape`` on g's domain with g's rule (trapezoid for a node
        grid)."""
        rule = g.rule if g.is_uniform else "trapezoid"
        key = (shape, rule, tuple(g.domain.bounds))
        if key not in self._made:
            n = shape[0] if len(shape) == 1 else shape
            self._made[key] = Grid.uniform(n, g.domain, rule)
        return self._made[key]


def _valid(rule: str, n: int) -> bool:
    try:
        check_n(rule, n)
    except ValueError:
        return False
    return True


def _coarser(made: UniformGrids, g: Grid, floor: int, factor: float = 0.85) -> Grid | None:
    """The next rung down of the ladder n -> min(n - 1, round(factor n)) per axis (the nearest
    size the rule accepts, never below ``floor`` nodes per axis), made by ``made``; None at
    the bottom."""
    rule = g.rule if g.is_uniform else "trapezoid"
    shape = []
    for n in g.shape:
        m = min(n - 1, round(factor * n))
        while m >= floor and not _valid(rule, m):
            m -= 1
        if m < floor:
            return None
        shape.append(m)
    return made.like(tuple(shape), g)


def _finer(made: UniformGrids, g: Grid) -> Grid:
    """The next rung up: n -> max(n + 1, round(1.25 n)) per axis (the nearest valid size
    above), made by ``made``."""
    rule = g.rule if g.is_uniform else "trapezoid"
    shape = []
    for n in g.shape:
        m = max(n + 1, round(1.25 * n))
        while not _valid(rule, m):
            m += 1
        shape.append(m)
    return made.like(tuple(shape), g)


def _refined(g: Grid) -> Grid:
    """g with every gap halved (the refinement of ``GridSchedule.refine``, width 2)."""
    return GridSchedule([0.0, 1.0], [g, g]).refine(width=2, depth=1).grids[0]


def _schedule(times: Sequence[float], grids: Sequence[Grid], like: GridSchedule) -> GridSchedule:
    return GridSchedule(
        torch.tensor(list(times), dtype=torch.float64), list(grids), like.transfer_kind
    )


def _lists(s: GridSchedule) -> tuple[list[float], list[Grid]]:
    return [float(t) for t in s.times.cpu().double()], list(s.grids)


def _key(times: Sequence[float], grids: Sequence[Grid]) -> tuple:
    """A schedule's identity: its times and, per grid, the uniform grid's size and rule (the
    domain is the model's) or, for node grids (only the model's own), the object."""
    return tuple(times), tuple(
        (g.shape, g.rule) if g.is_uniform else ("nodes", id(g)) for g in grids
    )


def _shape_text(g: Grid) -> str:
    return "x".join(str(s) for s in g.shape)
