"""Schedules that choose themselves: error estimates, compression, targeted refinement and
multilevel training for continuous space-time networks.

A continuous :class:`~spacetime_nets.models.SpaceTimeNet` (basis, neural, function, conv or
spectral kernels) is a function of the continuum; its grid schedule is only a discretisation,
and a cheaper or a more accurate one can be chosen after training, the way adaptive ODE and
finite-element codes choose step sizes and meshes (docs/concepts.md, sections 3 and 4):

* :func:`estimate_errors`: per-grid space estimates (G_k against its refinement) and per-step
  time estimates (one step against two half steps), Richardson-scaled, in the output's units;
* :func:`compress`: the cheapest schedule (per-step grid sizes, possibly fewer steps) whose
  outputs on a calibration batch stay within a tolerance of the trained model's;
* :func:`refine_where`: the other way, spend a multiply-add budget where the estimates are
  largest;
* :func:`multilevel_fit`: train on a coarse schedule, move the model up (exact resampling for
  continuous kernels, Net2Net-like interpolation for nodal ones), continue;
* :func:`compress_run`: the library side of ``spacetime-nets compress RUN``.

Costs are multiply-adds per sample (:func:`model_macs`); errors are measured on a calibration
batch ``x`` ``[N, in_features]`` as the largest absolute change of any output (``norm="max"``)
or its root mean square (``norm="rms"``).
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from grids import Grid, GridSchedule
from grids.quadrature import check_n

from .integrate import multiply_adds
from .models import SpaceTimeNet

__all__ = [
    "ORDERS",
    "ErrorReport",
    "AdaptSummary",
    "MultilevelResult",
    "model_macs",
    "time_order",
    "estimate_errors",
    "compress",
    "refine_where",
    "multilevel_fit",
    "compress_run",
]

#: global order p of each time stepper (the error of a step of size dt is O(dt^(p+1)))
ORDERS = {"euler": 1, "heun": 2, "rk4": 4}
#: order of the spatial discretisation: trapezoid/midpoint quadrature and linear transfers
SPACE_ORDER = 2
NORMS = ("max", "rms")
METRICS = ("output", "accuracy", "predictions")


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


def _check_real(name: str, v: object, low: float = 0.0) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        raise ValueError(f"{name}: expected a finite number >= {low:g}, got {v!r}")
    if float(v) < low:
        raise ValueError(f"{name}: expected a finite number >= {low:g}, got {v!r}")
    return float(v)


def _check_int(name: str, v: object, low: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {v!r}")
    return v


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
        if y is None or y.dim() != 1 or y.is_floating_point():
            raise ValueError(
                "data: metric='accuracy' needs integer class labels y [N] with x (a pair "
                "(x, y) or a Split)"
            )
    return x, y


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


def _function_readout(model: SpaceTimeNet) -> bool:
    return getattr(model, "readout_kind", "quadrature") == "function"


def _input_on_first_grid(model: SpaceTimeNet) -> bool:
    """True when the input is given as values on G_0 (identity lift): G_0 is then fixed."""
    return model.lift_kind == "identity"


def _distance(a: torch.Tensor, b: torch.Tensor, norm: str) -> float:
    d = (a - b).double()
    if norm == "max":
        return float(d.abs().max())
    return float(d.square().mean().sqrt())


def model_macs(model: SpaceTimeNet) -> int:
    """Multiply-adds per sample of ``model``: the flow (operators and the stencils of the
    transfers Pi_k, as :func:`spacetime_nets.integrate.multiply_adds` counts them), the
    readout (``out_features * n_K``, times c_K with channels) and the lift (scalar model:
    ``in_features * n_0`` for the linear lift, none for the cells and identity lifts, which
    are gathers; with channels the pointwise ``n_0 * c_0 * c_in``)."""
    if not isinstance(model, SpaceTimeNet):
        raise ValueError(f"model: expected a SpaceTimeNet, got {type(model).__name__}")
    w = model.schedule.widths
    with torch.no_grad():
        try:  # each operator counts its own work (dense, conv taps, spectral modes and FFTs)
            flow = multiply_adds(model.disc, model.form, model.method, 1, model.controls())
        except TypeError:  # an integrate without per-operator counts
            flow = multiply_adds(model.disc, model.form, model.method, 1)
    if getattr(model, "channel_mode", False):
        ch = model.schedule.channels
        lift = w[0] * ch[0] * model.in_channels  # the pointwise c_0 x c_in map
        if model.readout_kind == "mean":
            readout = ch[-1] * w[-1] + model.out_features * ch[-1]
        else:  # quadrature per channel, or the pointwise function readout
            readout = model.out_features * ch[-1] * w[-1]
        return int(flow + lift + readout)
    lift = model.in_features * w[0] if model.lift_kind == "linear" else 0
    return int(flow + model.out_features * w[-1] + lift)


def _cost_fn(cost: object) -> Callable[[SpaceTimeNet], float]:
    if cost == "macs":
        return model_macs
    if callable(cost):
        return lambda m: float(cost(m))
    raise ValueError(f"cost: expected 'macs' or a callable model -> float, got {cost!r}")


# ---- schedules as (times, grids) lists --------------------------------------------------------

_GRID_CACHE: dict[tuple, Grid] = {}


def _uniform(shape: tuple[int, ...], g: Grid) -> Grid:
    """A uniform grid of ``shape`` on g's domain with g's rule (trapezoid for node grids);
    cached so that equal grids are one object (the discretisation shares their buffers)."""
    rule = g.rule if g.is_uniform else "trapezoid"
    key = (shape, rule, tuple(g.domain.bounds))
    if key not in _GRID_CACHE:
        if len(_GRID_CACHE) > 512:
            _GRID_CACHE.clear()
        n = shape[0] if len(shape) == 1 else shape
        _GRID_CACHE[key] = Grid.uniform(n, g.domain, rule)
    return _GRID_CACHE[key]


def _valid(rule: str, n: int) -> bool:
    try:
        check_n(rule, n)
    except ValueError:
        return False
    return True


def _coarser(g: Grid, floor: int, factor: float = 0.85) -> Grid | None:
    """The next rung down of the ladder n -> min(n - 1, round(factor n)) per axis (the nearest
    size the rule accepts, never below ``floor`` nodes per axis); None at the bottom."""
    rule = g.rule if g.is_uniform else "trapezoid"
    shape = []
    for n in g.shape:
        m = min(n - 1, round(factor * n))
        while m >= floor and not _valid(rule, m):
            m -= 1
        if m < floor:
            return None
        shape.append(m)
    return _uniform(tuple(shape), g)


def _finer(g: Grid) -> Grid:
    """The next rung up: n -> max(n + 1, round(1.25 n)) per axis (the nearest valid size above)."""
    rule = g.rule if g.is_uniform else "trapezoid"
    shape = []
    for n in g.shape:
        m = max(n + 1, round(1.25 * n))
        while not _valid(rule, m):
            m += 1
        shape.append(m)
    return _uniform(tuple(shape), g)


def _refined(g: Grid) -> Grid:
    """g with every gap halved (the refinement of :meth:`GridSchedule.refine`, width 2)."""
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


# --------------------------------------------------------------------------------------------
# error estimates
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def time_order(model: SpaceTimeNet) -> int:
    """The global order in dt the scheme has for this model: the stepper's (:data:`ORDERS`)
    when the controls (w, b) are constant within every step (e.g. a basis kernel piecewise
    constant on the steps), else 1, since every scheme freezes the controls at t_k over a step
    (a first-order error in the time variation of w and b). Checked by evaluating the
    kernel(s) at t_k and at the step's midpoint on G_k."""
    p = ORDERS[model.method]
    if p == 1:
        return 1
    disc = model.disc
    for kern in (model.kernel, getattr(model, "kernel2", None)):
        if kern is None:
            continue
        for k in range(disc.num_steps):
            nodes, weights = disc.grid(k)
            t0, t1 = disc.times[k], disc.times[k + 1]
            try:
                a = kern(k, t0, nodes, nodes, weights)
                b = kern(k, 0.5 * (t0 + t1), nodes, nodes, weights)
            except Exception:  # a kernel that cannot be probed this way: assume it varies
                return 1
            for u, v in zip(a, b):
                if not torch.allclose(u, v, rtol=1e-12, atol=0.0):
                    return 1
    return p


@dataclass
class ErrorReport:
    """Per-grid space and per-step time error estimates of a continuous model on a schedule.

    ``space[k]`` (k = 0..K) estimates the error due to grid G_k: the output change when G_k
    alone is replaced by its refinement (every gap halved), divided by 1 - 2^-2 (Richardson,
    second-order quadrature and transfers). ``time[k]`` (k = 0..K-1) estimates the error of
    step k: the change when it is replaced by two half steps, divided by 1 - 2^-p (p from
    :func:`time_order`). ``space_total`` / ``time_total`` do the same with every
    grid / every step refined at once. All in the output's units (``norm`` over the
    calibration batch and the outputs). When the input is given as values on G_0 (identity
    lift), G_0 is the data's grid and ``space[0]`` is 0; a function readout is compared on the
    model's last grid.
    """

    times: list[float]
    shapes: list[tuple[int, ...]]
    widths: list[int]
    space: list[float]
    time: list[float]
    space_total: float | None
    time_total: float | None
    macs: int
    method: str
    norm: str
    samples: int

    @property
    def num_steps(self) -> int:
        return len(self.time)

    def summary(self) -> str:
        """A text table: one row per grid / step with t_k, the grid, n_k and both estimates."""
        K = self.num_steps
        lines = [
            f"Error estimates ({self.norm} over {self.samples} samples, output units): "
            f"K={K} {self.method} steps, {self.macs} multiply-adds per sample",
            "     k       t_k     dt_k      grid     n_k       space        time",
        ]
        for k in range(K + 1):
            dt = f"{self.times[k + 1] - self.times[k]:8.4f}" if k < K else " " * 8
            tk = f"{self.time[k]:11.3e}" if k < K else " " * 11
            shape = "x".join(map(str, self.shapes[k]))
            lines.append(
                f"  {k:4d}  {self.times[k]:8.4f} {dt}  {shape:>8s} {self.widths[k]:7d}  "
                f"{self.space[k]:11.3e} {tk}"
            )
        if self.space_total is not None and self.time_total is not None:
            lines.append(
                f"  all grids refined: {self.space_total:.3e}   all steps halved: "
                f"{self.time_total:.3e}"
            )
        return "\n".join(lines)

    def plot(self):
        """A matplotlib Figure: widths n_k against t (left), the estimates against t (right,
        space at t_k, time at the step midpoints, log scale)."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(9, 3.4), layout="constrained")
        a, b = fig.subplots(1, 2)
        a.step(self.times, self.widths, where="post", marker="o")
        a.set_xlabel("t")
        a.set_ylabel("width n_k")
        a.set_title("schedule")
        mids = [(s + e) / 2 for s, e in zip(self.times[:-1], self.times[1:])]
        floor = 1e-16
        b.semilogy(self.times, [max(v, floor) for v in self.space], "o-", label="space (G_k)")
        b.semilogy(mids, [max(v, floor) for v in self.time], "s-", label="time (step k)")
        b.set_xlabel("t")
        b.set_ylabel(f"estimated error ({self.norm})")
        b.set_title("error estimates")
        b.legend()
        return fig


def estimate_errors(
    model: SpaceTimeNet,
    data: Any,
    *,
    norm: str = "max",
    totals: bool = True,
    batch_size: int = 1024,
) -> ErrorReport:
    """Per-grid space and per-step time error estimates of ``model`` on a calibration batch.

    Space: e_k = |y(S) - y(S with G_k refined)| / (1 - 2^-2); time: e_k = |y(S) - y(S with
    step k split in two)| / (1 - 2^-p), p = 1, 2, 4 for euler, heun, rk4 when the controls are
    constant within each step, else 1 (:func:`time_order`). Richardson: an error C h^p becomes
    C (h/2)^p on the refinement, so the difference is (1 - 2^-p) of it.
    Costs 2K + 1 forward passes of the batch (2K + 3 with ``totals``).

    Args:
        model: a continuous SpaceTimeNet.
        data: calibration inputs: x ``[N, in_features]``, a pair (x, y) or a Split.
        norm: ``max`` (largest absolute output change) or ``rms``.
        totals: also refine every grid / every step at once (``space_total``, ``time_total``).
        batch_size: samples per forward pass.

    Returns:
        An :class:`ErrorReport` (``summary()`` table, ``plot()`` figure).
    """
    _check_continuous(model, "estimate_errors")
    norm = _check_norm(norm)
    batch_size = _check_int("batch_size", batch_size)
    x, _ = _calibration(model, data, need_labels=False)
    sched = model.schedule
    times, grids = _lists(sched)
    K = sched.num_steps
    out_grid = sched.grids[-1]
    y0 = _outputs(model, x, batch_size, out_grid)
    s_fac = 1.0 / (1.0 - 2.0**-SPACE_ORDER)
    t_fac = 1.0 / (1.0 - 2.0 ** -time_order(model))

    def change(t, g) -> float:
        return _distance(
            _outputs(model.with_schedule(_schedule(t, g, sched)), x, batch_size, out_grid),
            y0,
            norm,
        )

    refined = {id(g): _refined(g) for g in grids}
    fixed0 = _input_on_first_grid(model)  # the input is given on G_0: the data's grid
    space = []
    for k in range(K + 1):
        g = list(grids)
        g[k] = refined[id(grids[k])] if not (k == 0 and fixed0) else grids[0]
        space.append(0.0 if g[k] is grids[k] else change(times, g) * s_fac)
    tim = []
    for k in range(K):
        t = times[: k + 1] + [0.5 * (times[k] + times[k + 1])] + times[k + 1 :]
        g = grids[: k + 1] + [grids[k]] + grids[k + 1 :]
        tim.append(change(t, g) * t_fac)
    s_tot = t_tot = None
    if totals:
        g = [refined[id(v)] for v in grids]
        if fixed0:
            g[0] = grids[0]
        s_tot = change(times, g) * s_fac
        fine = sched.refine(width=1, depth=2)
        t_tot = change(*_lists(fine)) * t_fac
    return ErrorReport(
        times=times,
        shapes=[tuple(g.shape) for g in grids],
        widths=sched.widths,
        space=space,
        time=tim,
        space_total=s_tot,
        time_total=t_tot,
        macs=model_macs(model),
        method=model.method,
        norm=norm,
        samples=int(x.shape[0]),
    )


# --------------------------------------------------------------------------------------------
# compression and refinement
# --------------------------------------------------------------------------------------------


@dataclass
class AdaptSummary:
    """What :func:`compress` or :func:`refine_where` did: the schedules before and after, the
    multiply-adds per sample, the verified change on the calibration data (``error``, in the
    output's units for ``metric="output"``, in points otherwise), the
    calibration accuracies when labels were given, and the accepted moves in order."""

    kind: str
    schedule_before: GridSchedule
    schedule_after: GridSchedule
    macs_before: int
    macs_after: int
    metric: str
    norm: str
    limit: float
    error: float
    accuracy_before: float | None = None
    accuracy_after: float | None = None
    estimate_before: float | None = None
    estimate_after: float | None = None
    moves: list[str] = field(default_factory=list)
    evaluations: int = 0
    seconds: float = 0.0
    files: dict[str, str] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """macs_before / macs_after (> 1: the new schedule is cheaper)."""
        return self.macs_before / max(self.macs_after, 1)

    def summary(self) -> str:
        """A few lines: MACs before/after, error against the limit, widths, moves."""
        unit = "points" if self.metric != "output" else f"({self.norm}, output units)"
        what = "tol" if self.kind == "compress" else "budget"
        lines = [
            f"{self.kind}: {self.macs_before} -> {self.macs_after} multiply-adds per sample "
            f"({self.ratio:.2f}x), {what} {self.limit:g}",
            f"  change on the calibration data: {self.error:.4g} {unit}",
        ]
        if self.accuracy_before is not None and self.accuracy_after is not None:
            lines.append(
                f"  calibration accuracy: {self.accuracy_before:.4f} -> {self.accuracy_after:.4f}"
            )
        if self.estimate_before is not None and self.estimate_after is not None:
            lines.append(
                f"  summed error estimates: {self.estimate_before:.3e} -> {self.estimate_after:.3e}"
            )
        for name, s in (("before", self.schedule_before), ("after", self.schedule_after)):
            grids = " ".join(_shape_text(g) for g in s.grids)
            lines.append(f"  {name:6s} K={s.num_steps:2d}: {grids}")
        lines.append(
            f"  {len(self.moves)} moves, {self.evaluations} evaluations, {self.seconds:.1f} s"
        )
        return "\n".join(lines)

    def plot(self):
        """A matplotlib Figure: the widths n_k against t before and after."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 3.4), layout="constrained")
        ax = fig.subplots()
        for name, s, style in (
            ("before", self.schedule_before, "o-"),
            ("after", self.schedule_after, "s-"),
        ):
            t = [float(v) for v in s.times]
            ax.step(t, s.widths, style, where="post", label=f"{name} (K={s.num_steps})")
        ax.set_xlabel("t (depth)")
        ax.set_ylabel("width n_k")
        ax.set_title(f"{self.kind}: {self.ratio:.2f}x fewer multiply-adds")
        ax.legend()
        return fig

    def to_dict(self) -> dict:
        """Plain data (JSON-ready): every field but the schedules, which are given as widths,
        grid shapes and times."""
        out = {
            k: v for k, v in self.__dict__.items() if k not in ("schedule_before", "schedule_after")
        }
        for name, s in (("before", self.schedule_before), ("after", self.schedule_after)):
            out[f"widths_{name}"] = s.widths
            out[f"shapes_{name}"] = [list(g.shape) for g in s.grids]
            out[f"times_{name}"] = [float(t) for t in s.times]
        out["ratio"] = self.ratio
        return out


def _accuracy(out: torch.Tensor, labels: torch.Tensor) -> float:
    return float((out.argmax(-1) == labels).double().mean())


def compress(
    model: SpaceTimeNet,
    data: Any,
    tol: float,
    cost: str | Callable[[SpaceTimeNet], float] = "macs",
    metric: str = "output",
    *,
    norm: str = "max",
    fewer_steps: bool = True,
    min_nodes: int = 2,
    max_evaluations: int = 5000,
    batch_size: int = 1024,
) -> tuple[SpaceTimeNet, AdaptSummary]:
    """The cheapest schedule found whose outputs on ``data`` stay within ``tol`` of the model's.

    Minimises ``cost`` (multiply-adds per sample by default) over schedules made of the model's
    time points (some may be dropped: two steps merge into one) and uniform grids of the same
    rule and domain, subject to

        metric="output":      |y_new - y| <= tol  (``norm`` over the batch and the outputs),
        metric="accuracy":    100 (acc(y) - acc(y_new)) <= tol  (accuracy points lost), or
        metric="predictions": 100 mean(argmax y_new != argmax y) <= tol  (points of changed
                              predictions: no labels needed, and flips both ways count),

    on the calibration batch, y being the model's own outputs.

    The search is greedy. From the trained schedule, each round tries every move by a full
    forward pass: one grid a rung coarser (n -> ~0.85 n per axis) or halved (a jump past sizes
    that align badly with the data, such as the pixels of a cells lift), the same for a run of
    equal grids together, an interior time point dropped (never G_0 when the input is given on
    it; grids a kernel refuses are skipped). Among the moves within ``tol`` it applies the one
    that saves the most cost per unit of output change added (the metric itself for
    ``"output"``; the RMS change of the scores for the discrete metrics, which tie at zero
    while no sample flips), and stops when no move saves cost within ``tol``. Greedy rather
    than dynamic programming because the errors of different steps do not add: the nonlinear
    flow carries and mixes them, so a DP over an additive per-step error model would need a
    posteriori repair, while every greedy state is a schedule whose true error was measured.
    The returned model is checked again by a full forward pass: the constraint holds on the
    calibration data whatever the estimates say.

    Args:
        model: a trained continuous SpaceTimeNet (left unchanged).
        data: calibration data: x ``[N, in_features]``, a pair (x, y) or a Split (labels needed
            for ``metric="accuracy"``). Held-out data is the honest choice.
        tol: the allowed change (>= 0), in output units or accuracy points.
        cost: ``"macs"`` (:func:`model_macs`) or a callable model -> float.
        metric: ``"output"``, ``"accuracy"`` or ``"predictions"``.
        norm: ``"max"`` or ``"rms"``, for ``metric="output"``.
        fewer_steps: allow dropping time points (False keeps the number of steps).
        min_nodes: no grid goes below this many nodes per axis.
        max_evaluations: at most this many trial forward passes (the search then stops with the
            best schedule so far).
        batch_size: samples per forward pass.

    Returns:
        (the model on the new schedule, an :class:`AdaptSummary`).
    """
    start = time.perf_counter()
    _check_continuous(model, "compress")
    tol = _check_real("tol", tol)
    cost_fn = _cost_fn(cost)
    if metric not in METRICS:
        raise ValueError(f"metric: expected one of {', '.join(METRICS)}; got {metric!r}")
    norm = _check_norm(norm)
    min_nodes = _check_int("min_nodes", min_nodes)
    max_evaluations = _check_int("max_evaluations", max_evaluations)
    batch_size = _check_int("batch_size", batch_size)
    if not isinstance(fewer_steps, bool):
        raise ValueError(f"fewer_steps: expected True or False, got {fewer_steps!r}")
    x, labels = _calibration(model, data, need_labels=metric == "accuracy")
    sched = model.schedule
    out_grid = sched.grids[-1]
    y_ref = _outputs(model, x, batch_size, out_grid)
    if metric != "output" and y_ref.dim() != 2:
        raise ValueError(
            f"metric: {metric!r} needs class scores [N, classes], the model answers "
            f"{tuple(y_ref.shape)}; use metric='output'"
        )
    acc_ref = _accuracy(y_ref, labels) if _is_labels(labels, y_ref) else None

    def error(out: torch.Tensor) -> float:
        if metric == "accuracy":
            return 100.0 * (acc_ref - _accuracy(out, labels))
        if metric == "predictions":
            return 100.0 * float((out.argmax(-1) != y_ref.argmax(-1)).double().mean())
        return _distance(out, y_ref, norm)

    times, grids = _lists(sched)
    cur_cost, cur_err, cur_guide = cost_fn(model), 0.0, 0.0
    seen: dict[tuple, tuple[float, float | None, float]] = {}
    history: list[tuple[list[float], list[Grid], float]] = [(times, grids, 0.0)]
    moves: list[str] = []
    evals = 0
    # moves are ranked by the cost saved per unit of smooth output change: the metric itself
    # for "output"; the RMS change of the scores for the discrete metrics, whose ties at zero
    # (no calibration sample flips) say nothing about how far a move moved the function
    if metric == "output":
        guide, eps_guide = error, 1e-6 * tol + 1e-12
    else:
        scale = float(y_ref.double().square().mean().sqrt()) + 1e-12
        guide, eps_guide = (lambda out: _distance(out, y_ref, "rms")), 1e-9 * scale
    while evals < max_evaluations:
        best = None
        moves_now = _coarsening_moves(
            times, grids, min_nodes, fewer_steps, _input_on_first_grid(model)
        )
        for desc, t, g in moves_now:
            key = _key(t, g)
            if key not in seen:
                try:
                    cand = model.with_schedule(_schedule(t, g, sched))
                except ValueError:  # a kernel this grid under-resolves refuses it
                    seen[key] = (math.inf, None, math.inf)
                    continue
                c = cost_fn(cand)
                e, gd = None, math.inf
                if c < cur_cost and evals < max_evaluations:
                    out = _outputs(cand, x, batch_size, out_grid)
                    e, gd = error(out), guide(out)
                    evals += 1
                seen[key] = (c, e, gd)
            c, e, gd = seen[key]
            if e is None or c >= cur_cost or not e <= tol:
                continue
            score = (cur_cost - c) / (max(gd - cur_guide, 0.0) + eps_guide)
            if best is None or score > best[0]:
                best = (score, desc, t, g, c, e, gd)
        if best is None:
            break
        _, desc, times, grids, cur_cost, cur_err, cur_guide = best
        history.append((times, grids, cur_err))
        moves.append(f"{desc}: cost {cur_cost:.6g}, change {cur_err:.4g}")
    # the guarantee: verify the returned model by a full forward pass, fall back if needed
    while True:
        times, grids, _ = history[-1]
        small = model.with_schedule(_schedule(times, grids, sched))
        out = _outputs(small, x, batch_size, out_grid)
        err = error(out)
        if err <= tol or len(history) == 1:
            break
        history.pop()
        moves.append("verification failed: one move undone")
    summary = AdaptSummary(
        kind="compress",
        schedule_before=sched,
        schedule_after=small.schedule,
        macs_before=model_macs(model),
        macs_after=model_macs(small),
        metric=metric,
        norm=norm,
        limit=tol,
        error=err,
        accuracy_before=acc_ref,
        accuracy_after=_accuracy(out, labels) if acc_ref is not None else None,
        moves=moves,
        evaluations=evals,
        seconds=time.perf_counter() - start,
    )
    return small, summary


def _is_labels(labels: torch.Tensor | None, out: torch.Tensor) -> bool:
    return (
        labels is not None
        and labels.dim() == 1
        and not labels.is_floating_point()
        and out.dim() == 2
    )


def _coarsening_moves(times, grids, floor, fewer_steps, fixed_first=False):
    """(description, times, grids) of every coarsening move from a schedule (G_0 is left
    alone when ``fixed_first``)."""
    K = len(times) - 1
    for j in range(1 if fixed_first else 0, K + 1):
        # one rung down, or halved (a jump past rungs that align badly with the data, such as
        # the pixels of a cells lift)
        targets = [_coarser(grids[j], floor), _coarser(grids[j], floor, 0.5)]
        targets = [c for i, c in enumerate(targets) if c is not None and c not in targets[:i]]
        # the run of equal grids that starts at j (coarsened together)
        first = j == 0 or grids[j - 1] is not grids[j] or (fixed_first and j == 1)
        hi = j
        while first and hi + 1 <= K and grids[hi + 1] is grids[j]:
            hi += 1
        for c in targets:
            g = list(grids)
            g[j] = c
            yield f"grid {j} {_shape_text(grids[j])} -> {_shape_text(c)}", times, g
            if hi > j:
                g = list(grids)
                g[j : hi + 1] = [c] * (hi - j + 1)
                yield f"grids {j}-{hi} {_shape_text(grids[j])} -> {_shape_text(c)}", times, g
    if fewer_steps:
        for j in range(1, K):
            t = times[:j] + times[j + 1 :]
            g = grids[:j] + grids[j + 1 :]
            yield f"drop t_{j} = {times[j]:.4g} (steps {j - 1} and {j} merge)", t, g


def refine_where(
    model: SpaceTimeNet,
    data: Any,
    budget: float,
    *,
    norm: str = "max",
    max_moves: int = 50,
    batch_size: int = 1024,
) -> tuple[SpaceTimeNet, AdaptSummary]:
    """Spend multiply-adds where the error estimates are largest, never above ``budget``.

    Repeats: estimate the per-grid and per-step errors (:func:`estimate_errors`), then apply
    the affordable move with the largest estimate per multiply-add added: a grid one rung finer
    (n -> ~1.25 n per axis) or a step split in two. Stops when no move fits in the budget,
    when every estimate is zero, or after ``max_moves`` moves.

    Args:
        model: a continuous SpaceTimeNet (left unchanged).
        data: calibration inputs: x ``[N, in_features]``, a pair (x, y) or a Split.
        budget: the largest multiply-adds per sample (:func:`model_macs`) the result may cost;
            at least the model's own.
        norm: ``max`` or ``rms`` (the estimates' norm).
        max_moves: at most this many refinements.
        batch_size: samples per forward pass.

    Returns:
        (the model on the refined schedule, an :class:`AdaptSummary` whose ``error`` is the
        output change against the given model and ``estimate_before``/``estimate_after`` the
        summed estimates).
    """
    start = time.perf_counter()
    _check_continuous(model, "refine_where")
    norm = _check_norm(norm)
    budget = _check_real("budget", budget)
    max_moves = _check_int("max_moves", max_moves, 0)
    batch_size = _check_int("batch_size", batch_size)
    macs0 = model_macs(model)
    if budget < macs0:
        raise ValueError(
            f"budget: the model already costs {macs0} multiply-adds per sample, more than the "
            f"budget {budget:g}"
        )
    x, _ = _calibration(model, data, need_labels=False)
    sched = model.schedule
    cur = model
    moves: list[str] = []
    rep = estimate_errors(cur, x, norm=norm, totals=False, batch_size=batch_size)
    est0 = sum(rep.space) + sum(rep.time)
    evals = 2 * rep.num_steps + 1
    while len(moves) < max_moves:
        times, grids = _lists(cur.schedule)
        macs = model_macs(cur)
        best = None
        cands = []
        for j in range(1 if _input_on_first_grid(model) else 0, len(grids)):
            g = list(grids)
            g[j] = _finer(grids[j])
            cands.append(
                (rep.space[j], f"grid {j} {_shape_text(grids[j])} -> {_shape_text(g[j])}", times, g)
            )
        for k in range(len(times) - 1):
            t = times[: k + 1] + [0.5 * (times[k] + times[k + 1])] + times[k + 1 :]
            g = grids[: k + 1] + [grids[k]] + grids[k + 1 :]
            cands.append((rep.time[k], f"split step {k}", t, g))
        for est, desc, t, g in cands:
            if not est > 0:
                continue
            try:
                m = model.with_schedule(_schedule(t, g, sched))
            except ValueError:  # a schedule the kernel refuses
                continue
            c = model_macs(m)
            if c > budget or c <= macs:
                continue
            score = est / (c - macs)
            if best is None or score > best[0]:
                best = (score, desc, m, c)
        if best is None:
            break
        _, desc, cur, c = best
        moves.append(f"{desc}: {c} multiply-adds")
        rep = estimate_errors(cur, x, norm=norm, totals=False, batch_size=batch_size)
        evals += 2 * rep.num_steps + 1
    y0 = _outputs(model, x, batch_size, sched.grids[-1])
    err = _distance(_outputs(cur, x, batch_size, sched.grids[-1]), y0, norm)
    summary = AdaptSummary(
        kind="refine_where",
        schedule_before=sched,
        schedule_after=cur.schedule,
        macs_before=macs0,
        macs_after=model_macs(cur),
        metric="output",
        norm=norm,
        limit=budget,
        error=err,
        estimate_before=est0,
        estimate_after=sum(rep.space) + sum(rep.time),
        moves=moves,
        evaluations=evals,
        seconds=time.perf_counter() - start,
    )
    if cur is model:
        cur = copy.deepcopy(model)
    return cur, summary


# --------------------------------------------------------------------------------------------
# multilevel training
# --------------------------------------------------------------------------------------------


@dataclass
class MultilevelResult:
    """The trained model on the finest level, one training History per level, the schedules
    trained on and the wall time of each level (training plus the move up)."""

    model: SpaceTimeNet
    histories: list
    schedules: list[GridSchedule]
    seconds: list[float]

    @property
    def total_seconds(self) -> float:
        return float(sum(self.seconds))


def _refinement_factors(coarse: GridSchedule, fine: GridSchedule, limit: int = 8):
    for d in range(1, limit + 1):
        if fine.num_steps != coarse.num_steps * d:
            continue
        for w in range(1, limit + 1):
            if coarse.refine(w, d).same_as(fine):
                return w, d
    return None


def multilevel_fit(
    model: SpaceTimeNet,
    train: Any,
    val: Any = None,
    *,
    levels: Sequence[GridSchedule | tuple[int, int]],
    epochs: int | Sequence[int],
    out_dir: str | os.PathLike | None = None,
    **fit_kwargs: Any,
) -> MultilevelResult:
    """Train on a coarse schedule, move up a level, continue: coarse-to-fine (multilevel)
    training with :func:`spacetime_nets.training.fit` on every level.

    Moving up: a continuous model is rediscretised exactly (``with_schedule``); a nodal one is
    interpolated by ``refine(width, depth)`` (Net2Wider / Net2Deeper in the continuum), so the
    network function is nearly preserved and training continues from it. Each level is a
    :class:`grids.GridSchedule` or a pair ``(width, depth)`` meaning "the previous level
    refined by these factors" (for level 0: the model's own schedule refined). For nodal
    models, level 0 must be the model's own schedule and each next level a
    ``refine(width, depth)`` of the one before. A basis kernel piecewise constant in t keeps
    its pieces on every level: build the model with as many pieces as the coarsest level has
    steps (or with ``time_degree``), or pieces that no coarse step starts in stay untrained.

    Args:
        model: a SpaceTimeNet (left unchanged; training runs on copies).
        train: training data, as for ``fit``.
        val: validation data or None, as for ``fit``.
        levels: the schedules, coarse to fine (at least one).
        epochs: epochs per level: one int for all, or one per level.
        out_dir: if given, level i writes its checkpoints and history in ``out_dir/level{i}``.
        **fit_kwargs: passed to ``fit`` (``batch_size`` is required; ``resume`` is refused).

    Returns:
        A :class:`MultilevelResult` (the model on the last level, histories, schedules, times).
    """
    from .training import fit

    if not isinstance(model, SpaceTimeNet):
        raise ValueError(f"model: expected a SpaceTimeNet, got {type(model).__name__}")
    levels = list(levels) if isinstance(levels, (list, tuple)) else levels
    if not isinstance(levels, list) or not levels:
        raise ValueError(f"levels: expected a non-empty list of schedules, got {levels!r:.80}")
    for i, lv in enumerate(levels):
        ok = isinstance(lv, GridSchedule) or (
            isinstance(lv, tuple)
            and len(lv) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in lv)
        )
        if not ok:
            raise ValueError(
                f"levels[{i}]: expected a GridSchedule or a pair (width, depth) of positive "
                f"ints, got {lv!r:.80}"
            )
    if isinstance(epochs, int) and not isinstance(epochs, bool):
        per_level = [epochs] * len(levels)
    elif isinstance(epochs, (list, tuple)):
        per_level = list(epochs)
    else:
        raise ValueError(f"epochs: expected an int or one int per level, got {epochs!r:.80}")
    if len(per_level) != len(levels):
        raise ValueError(
            f"epochs: expected {len(levels)} entries (one per level), got {len(per_level)}"
        )
    for i, e in enumerate(per_level):
        _check_int(f"epochs[{i}]", e)
    if "resume" in fit_kwargs:
        raise ValueError(
            "resume: multilevel_fit starts from the given model; resume is not supported"
        )
    if "batch_size" not in fit_kwargs:
        raise ValueError("batch_size: required (passed to training.fit)")

    # the plan, checked before any training: how the model reaches every level
    plan: list[tuple[str, Any]] = []
    sched = model.schedule
    for i, lv in enumerate(levels):
        if isinstance(lv, tuple):
            plan.append(("refine", lv))
            sched = sched.refine(*lv)
        elif model.continuous:
            plan.append(("with_schedule", lv))
            sched = lv
        elif i == 0:
            if not sched.same_as(lv):
                raise ValueError(
                    f"levels[0]: a nodal model trains first on its own schedule ({sched!r}), "
                    f"got {lv!r}"
                )
            plan.append(("same", None))
        else:
            f = _refinement_factors(sched, lv)
            if f is None:
                raise ValueError(
                    f"levels[{i}]: a nodal model moves up only by refine(width, depth); {lv!r} "
                    f"is no such refinement of {sched!r}"
                )
            plan.append(("refine", f))
            sched = lv

    current = model
    histories, schedules, seconds = [], [], []
    for i, ((action, arg), ep) in enumerate(zip(plan, per_level)):
        t0 = time.perf_counter()
        if action == "refine":
            current = current.refine(*arg)
        elif action == "with_schedule":
            current = current.with_schedule(arg)
        elif current is model:
            current = copy.deepcopy(model)
        level_dir = Path(out_dir) / f"level{i}" if out_dir is not None else None
        history = fit(current, train, val, epochs=ep, out_dir=level_dir, **fit_kwargs)
        seconds.append(time.perf_counter() - t0)
        histories.append(history)
        schedules.append(current.schedule)
    return MultilevelResult(current, histories, schedules, seconds)


# --------------------------------------------------------------------------------------------
# the command line's library function
# --------------------------------------------------------------------------------------------


def compress_run(
    run_dir: str | os.PathLike,
    tol: float,
    out: str | os.PathLike | None = None,
    *,
    metric: str = "auto",
    split: str = "val",
    samples: int | None = None,
    checkpoint: str | None = None,
    norm: str = "max",
    fewer_steps: bool = True,
    export_format: str = "export",
) -> AdaptSummary:
    """Compress a trained run folder (``model.json`` + checkpoint, as written by
    ``spacetime-nets train``) and write the result.

    Loads the run, takes the calibration batch from its data set (``split``, the first
    ``samples`` rows), runs :func:`compress` with ``tol`` and writes into ``out`` (default
    ``RUN/compressed``): ``schedule.json`` (the new grid schedule), ``resnet.pt2``
    (``torch.export``; ``resnet.ts.pt`` for TorchScript), the exported plain ResNet, and
    ``compress.json`` (the summary, with the test metrics before and after). The trained
    parameters do not change: ``spacetime-nets evaluate RUN --schedule OUT/schedule.json``
    evaluates the compressed model.

    Args:
        run_dir: the run folder.
        tol: allowed change: accuracy points (``metric="accuracy"``) or output units.
        out: output folder (created).
        metric: ``"accuracy"``, ``"predictions"``, ``"output"``, or ``"auto"`` (accuracy
            for classification, output otherwise).
        split: calibration split of the run's data set: ``"train"``, ``"val"`` or ``"test"``.
        samples: use only the first ``samples`` rows of the split (None: all).
        checkpoint: checkpoint file in the run (default ``last.pt``).
        norm: ``"max"`` or ``"rms"`` for ``metric="output"``.
        fewer_steps: allow merging steps.
        export_format: ``"export"`` (torch.export, .pt2) or ``"torchscript"`` (.ts.pt).

    Returns:
        The :class:`AdaptSummary`, with ``files`` naming what was written.
    """
    import warnings

    from . import datasets
    from .export import to_resnet
    from .runs import load_run
    from .training import evaluate

    if split not in ("train", "val", "test"):
        raise ValueError(f"split: expected 'train', 'val' or 'test', got {split!r}")
    if export_format not in ("export", "torchscript"):
        raise ValueError(
            f"export_format: expected 'export' or 'torchscript', got {export_format!r}"
        )
    if samples is not None:
        _check_int("samples", samples)
    if metric not in (*METRICS, "auto"):
        raise ValueError(f"metric: expected 'auto' or one of {', '.join(METRICS)}; got {metric!r}")
    tol = _check_real("tol", tol)
    run = load_run(run_dir, checkpoint)
    model, config = run.model, run.config
    _check_continuous(model, "compress_run")
    ds = config.dataset or {}
    dtype = getattr(torch, str(config.dtype))
    name = ds.get("name")
    if name not in datasets.DATASETS:
        raise ValueError(f"{run_dir}: model.json names no known data set ({name!r})")
    data = datasets.load(name, seed=int(ds.get("seed", 0)), dtype=dtype, **(ds.get("kwargs") or {}))
    cal = getattr(data, split)
    x, y = cal.x, cal.y
    if samples is not None:
        x, y = x[:samples], y[:samples]
    classify = y.dim() == 1 and not y.is_floating_point()
    if metric == "auto":
        metric = "accuracy" if classify else "output"
    small, summary = compress(model, (x, y), tol, metric=metric, norm=norm, fewer_steps=fewer_steps)
    dest = Path(out) if out is not None else Path(run_dir) / "compressed"
    dest.mkdir(parents=True, exist_ok=True)
    files = {}
    files["schedule"] = str(dest / "schedule.json")
    small.schedule.to_json(files["schedule"])
    resnet = to_resnet(small).eval()
    suffix = ".pt2" if export_format == "export" else ".ts.pt"
    files["resnet"] = str(dest / f"resnet{suffix}")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xs = x[:8]
        if export_format == "export":
            try:
                batch = torch.export.Dim("batch", min=1)
                prog = torch.export.export(resnet, (xs,), dynamic_shapes=({0: batch},))
            except Exception:  # a static batch still exports the same network
                prog = torch.export.export(resnet, (xs,))
            torch.export.save(prog, files["resnet"])
        else:
            torch.jit.save(torch.jit.trace(resnet, (xs,)), files["resnet"])
    loss = (config.training or {}).get("loss")
    test_before = evaluate(model, data.test, loss)
    test_after = evaluate(small, data.test, loss)
    summary.files = files
    info = summary.to_dict()
    info["test_before"], info["test_after"] = test_before, test_after
    files["summary"] = str(dest / "compress.json")
    info["files"] = files
    Path(files["summary"]).write_text(json.dumps(info, indent=1, default=str))
    return summary
