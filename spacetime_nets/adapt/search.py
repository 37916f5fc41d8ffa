"""Compression to a tolerance and refinement within a budget: searches over schedules."""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from grids import Grid, GridSchedule

from ..models import SpaceTimeNet
from ..validation import check_bool, check_int, check_real, check_seed
from ._common import (
    METRICS,
    UniformGrids,
    _calibration,
    _check_continuous,
    _check_labels,
    _check_norm,
    _coarser,
    _cost_fn,
    _distance,
    _finer,
    _function_readout,
    _input_on_first_grid,
    _key,
    _lists,
    _outputs,
    _schedule,
    _shape_text,
    model_macs,
)
from .channels import _check_channel_model, hidden_count, rank_channels, with_channels
from .estimate import (
    estimate_errors,
)

# --------------------------------------------------------------------------------------------
# the measures of a compression's change
# --------------------------------------------------------------------------------------------

_Change = Callable[[torch.Tensor], float]


@dataclass(frozen=True)
class _Metric:
    """What ``compress`` needs to know about one ``metric``.

    Attributes:
        needs_labels: the calibration data must carry integer class labels.
        discrete: the change counts samples, 100 / N points each: the model must answer class
            scores ``[N, classes]``, a ``tol`` below one sample warns, and the search is
            guided by the RMS change of the scores (the metric itself ties at zero while no
            sample flips).
        unit: the unit of the change in messages, a format string of ``norm``.
        change: ``(y_ref, labels, norm)`` -> the function that measures the change of
            outputs against the reference outputs ``y_ref`` in the metric's units (``labels``
            None when not given).
    """

    needs_labels: bool
    discrete: bool
    unit: str
    change: Callable[[torch.Tensor, torch.Tensor | None, str], _Change]


def _output_change(y_ref: torch.Tensor, labels: torch.Tensor | None, norm: str) -> _Change:
    """The ``norm`` of the outputs' difference, in output units."""
    return lambda out: _distance(out, y_ref, norm)


def _accuracy_change(y_ref: torch.Tensor, labels: torch.Tensor | None, norm: str) -> _Change:
    """The accuracy points lost against ``labels``."""
    acc_ref = _accuracy(y_ref, labels)
    return lambda out: 100.0 * (acc_ref - _accuracy(out, labels))


def _predictions_change(y_ref: torch.Tensor, labels: torch.Tensor | None, norm: str) -> _Change:
    """The points of predictions (argmax of the scores) that differ, either way."""
    pred_ref = y_ref.argmax(-1)
    return lambda out: 100.0 * float((out.argmax(-1) != pred_ref).double().mean())


_METRICS: dict[str, _Metric] = {
    "output": _Metric(
        needs_labels=False, discrete=False, unit="({norm}, output units)", change=_output_change
    ),
    "accuracy": _Metric(needs_labels=True, discrete=True, unit="points", change=_accuracy_change),
    "predictions": _Metric(
        needs_labels=False, discrete=True, unit="points", change=_predictions_change
    ),
}
"""The entry of each name of ``METRICS``, in its order."""

_LIMIT_NAMES = {"compress": "tol", "refine_where": "budget"}
"""The argument that bounds each search (``AdaptSummary.kind`` -> name)."""


# --------------------------------------------------------------------------------------------
# compression and refinement
# --------------------------------------------------------------------------------------------


@dataclass
class AdaptSummary:
    """What [`compress`][spacetime_nets.adapt.compress] or
    [`refine_where`][spacetime_nets.adapt.refine_where] did: the schedules before and after,
    the multiply-adds per sample, the verified change on the calibration data (``error``, in
    the output's units for ``metric="output"``, in points otherwise), the calibration
    accuracies when labels were given, and the accepted moves in order.

    Attributes:
        kind: ``"compress"`` or ``"refine_where"``.
        schedule_before: the schedule of the given model.
        schedule_after: the schedule of the returned model.
        macs_before: the given model's multiply-adds per sample
            ([`model_macs`][spacetime_nets.adapt.model_macs]).
        macs_after: the returned model's multiply-adds per sample.
        metric: ``"output"``, ``"accuracy"`` or ``"predictions"`` (``"output"`` for
            ``refine_where``).
        norm: ``"max"`` or ``"rms"``, for ``metric="output"``.
        limit: ``tol`` for ``compress``, ``budget`` for ``refine_where``.
        error: the change of the returned model's outputs against the given model's on the
            calibration data (in the units of ``metric``), measured by a full forward pass.
        accuracy_before: the given model's calibration accuracy (a fraction in [0, 1]) when
            labels were given, else None.
        accuracy_after: the returned model's calibration accuracy, else None.
        estimate_before: ``refine_where``: the summed space and time error estimates of the
            given model; None for ``compress``.
        estimate_after: ``refine_where``: the same for the returned model.
        moves: the accepted moves in order, as text (with notes such as kept channels and
            recoveries).
        evaluations: ``compress``: the trial forward passes of the calibration batch;
            ``refine_where``: the forward passes of its error estimates.
        seconds: the wall time of the search.
        files: ``compress_run`` only: what it wrote (``"schedule"``, ``"resnet"``,
            ``"summary"`` -> path); empty otherwise.
        channels_before: ``compress`` on a channel model: the given model's channel count;
            None otherwise.
        channels_after: the returned model's channel count (None as above).
        recover_epochs: the epochs spent in recoveries, all rounds together.
        recoveries: the recoveries that ran.
    """

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
    channels_before: int | None = None
    channels_after: int | None = None
    recover_epochs: int = 0
    recoveries: int = 0

    @property
    def ratio(self) -> float:
        """macs_before / macs_after (> 1: the new schedule is cheaper)."""
        return self.macs_before / max(self.macs_after, 1)

    def summary(self) -> str:
        """A few lines: MACs before/after, error against the limit, widths, moves.

        Returns:
            The text, lines joined by newlines.
        """
        unit = _METRICS[self.metric].unit.format(norm=self.norm)
        what = _LIMIT_NAMES[self.kind]
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
        if self.channels_before is not None:
            lines.append(f"  channels: {self.channels_before} -> {self.channels_after}")
        if self.recoveries:
            lines.append(
                f"  {self.recoveries} recoveries, {self.recover_epochs} epochs of fine-tuning"
            )
        for name, s in (("before", self.schedule_before), ("after", self.schedule_after)):
            grids = " ".join(_shape_text(g) for g in s.grids)
            lines.append(f"  {name:6s} K={s.num_steps:2d}: {grids}")
        lines.append(
            f"  {len(self.moves)} moves, {self.evaluations} evaluations, {self.seconds:.1f} s"
        )
        return "\n".join(lines)

    def plot(self):
        """A matplotlib Figure: the widths n_k against t before and after.

        Returns:
            (matplotlib.figure.Figure): the figure, not shown and not saved.
        """
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
        grid shapes and times.

        Returns:
            The fields by name, ``widths_before``, ``shapes_before``, ``times_before`` (and the
                same ``_after``) for the schedules, and ``ratio``.
        """
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
    norm: str | None = None,
    fewer_steps: bool = True,
    min_nodes: int = 2,
    channels: bool = True,
    min_channels: int = 1,
    recover_epochs: int = 0,
    recover_data: Any = None,
    recover_lr: float = 1e-3,
    recover_rounds: int = 4,
    seed: int = 0,
    max_evaluations: int = 5000,
    batch_size: int = 1024,
    progress: bool | Callable[[dict], Any] = False,
) -> tuple[SpaceTimeNet, AdaptSummary]:
    """The cheapest model found whose outputs on ``data`` stay within ``tol`` of the model's.

    Minimises ``cost`` (multiply-adds per sample by default) over schedules made of the model's
    time points (some may be dropped: two steps merge into one) and uniform grids of the same
    rule and domain, and, for channel models, over the state's channel count, subject to

        metric="output":      |y_new - y| <= tol  (``norm`` over the batch and the outputs),
        metric="accuracy":    100 (acc(y) - acc(y_new)) <= tol  (accuracy points lost), or
        metric="predictions": 100 mean(argmax y_new != argmax y) <= tol  (points of changed
                              predictions: no labels needed, and flips both ways count),

    on the calibration batch, y being the given model's own outputs.

    The search is greedy. From the trained schedule, each round tries every move by a full
    forward pass: one grid a rung coarser (n -> ~0.85 n per axis) or halved (a jump past sizes
    that align badly with the data, such as the pixels of a cells lift), the same for a run of
    equal grids together, an interior time point dropped (never G_0 when the input is given on
    it; grids a kernel refuses are skipped), and with ``channels`` the state's channels
    c -> ~0.85 c or c / 2 (the leading directions of
    [`rank_channels`][spacetime_nets.adapt.rank_channels], see
    [`with_channels`][spacetime_nets.adapt.with_channels]). Among the moves within ``tol`` it
    applies the one that saves the most cost per unit of output change added (the metric
    itself for ``"output"``; the RMS change of the scores for the discrete metrics, which tie
    at zero while no sample flips), and stops when no move saves cost within ``tol``. Greedy
    rather than dynamic programming because the errors of different steps do not add: the
    nonlinear flow carries and mixes them, so every greedy state is a model whose true error
    was measured.

    Recovery (``recover_epochs`` > 0): the search's result is fine-tuned for that many epochs
    to the given model's outputs on ``recover_data`` (distillation: Adam on batches of 64,
    mean squared output difference, cosine decay from ``recover_lr``), kept when it stays
    within ``tol`` and moved the outputs back towards the given model's, and the search goes
    on from it; at most ``recover_rounds`` times. The epochs spent are
    ``summary.recover_epochs``.

    The returned model is checked again by a full forward pass: its change on the calibration
    data is at most ``tol``, with or without recovery (``summary.error``, measured last).

    Args:
        model: a trained continuous SpaceTimeNet (left unchanged).
        data: calibration data: x ``[N, in_features]``, a pair (x, y) or a Split (labels needed
            for ``metric="accuracy"``). Held-out data is the honest choice. With a discrete
            metric, a ``tol`` below one sample's worth (100 / N points) warns: the
            constraint then allows no sample to change.
        tol: the allowed change (>= 0), in output units or accuracy points.
        cost: ``"macs"`` ([`model_macs`][spacetime_nets.adapt.model_macs]) or a callable
            model -> float.
        metric: ``"output"``, ``"accuracy"`` or ``"predictions"``.
        norm: ``"max"`` or ``"rms"``, for ``metric="output"`` only (None: ``"max"``; given
            with another metric it is refused).
        fewer_steps: allow dropping time points (False keeps the number of steps).
        min_nodes: no grid goes below this many nodes per axis.
        channels: also reduce the channels of a channel model with conv or spectral kernels,
            one channel count and no channel normalisation (other models keep theirs; for a
            channel model that cannot be reduced, ``summary.moves`` says why).
        min_channels: no fewer channels than this.
        recover_epochs: epochs of each recovery (0: none; the parameters then do not change
            unless channels are reduced).
        recover_data: the inputs of the recovery: x ``[M, in_features]``, a pair or a Split
            (None: the calibration inputs). Data other than the calibration data keeps the
            checked change honest.
        recover_lr: the recovery's initial learning rate (> 0).
        recover_rounds: at most this many recoveries.
        seed: seed of the recovery's batch order.
        max_evaluations: at most this many trial forward passes (the search then stops with the
            best model so far).
        batch_size: samples per forward pass.
        progress: True prints a line to stderr after every round of moves and at most every
            two seconds within one (trials so far, seconds, the cost and change of the
            model held); a callable gets the same as a dict ``{"round", "trials",
            "seconds", "cost", "change", "done"}``; False: silent.

    Returns:
        (the compressed model, an [`AdaptSummary`][spacetime_nets.adapt.AdaptSummary]).

    Raises:
        ValueError: on a bad argument, naming it.
    """
    start = time.perf_counter()
    _check_continuous(model, "compress")
    report = _progress_reporter(progress, start)
    tol = check_real("tol", tol)
    cost_fn = _cost_fn(cost)
    measure = _METRICS.get(metric) if isinstance(metric, str) else None
    if measure is None:
        raise ValueError(f"metric: expected one of {', '.join(METRICS)}; got {metric!r}")
    if norm is not None and measure.discrete:
        raise ValueError(
            f"norm: applies to metric='output' only (the norm of the output change), got "
            f"norm={norm!r} with metric={metric!r} (leave norm out or use metric='output')"
        )
    norm = _check_norm("max" if norm is None else norm)
    min_nodes = check_int("min_nodes", min_nodes)
    min_channels = check_int("min_channels", min_channels)
    max_evaluations = check_int("max_evaluations", max_evaluations)
    batch_size = check_int("batch_size", batch_size)
    fewer_steps = check_bool("fewer_steps", fewer_steps)
    channels = check_bool("channels", channels)
    recover_epochs = check_int("recover_epochs", recover_epochs, 0)
    recover_rounds = check_int("recover_rounds", recover_rounds, 0)
    recover_lr = check_real("recover_lr", recover_lr, positive=True)
    seed = check_seed("seed", seed)
    x, labels = _calibration(model, data, need_labels=measure.needs_labels)
    x_rec = x
    if recover_data is not None:
        try:
            x_rec, _ = _calibration(model, recover_data, need_labels=False)
        except ValueError as exc:  # the same checks as the calibration data, its own name
            raise ValueError(f"recover_data: {str(exc).removeprefix('data: ')}") from None
    if measure.discrete:
        _warn_below_one_sample(tol, x.shape[0])
    out_grid = model.schedule.grids[-1]
    y_ref = _outputs(model, x, batch_size, out_grid)
    if measure.discrete and y_ref.dim() != 2:
        raise ValueError(
            f"metric: {metric!r} needs class scores [N, classes], the model answers "
            f"{tuple(y_ref.shape)}; use metric='output'"
        )
    _check_labels(labels, y_ref)
    acc_ref = _accuracy(y_ref, labels) if _is_labels(labels, y_ref) else None

    error = measure.change(y_ref, labels, norm)
    # moves are ranked by the cost saved per unit of smooth output change: the metric itself
    # for "output"; the RMS change of the scores for the discrete metrics, whose ties at zero
    # (no calibration sample flips) say nothing about how far a move moved the function
    if measure.discrete:
        scale = float(y_ref.double().square().mean().sqrt()) + 1e-12
        guide, eps_guide = _output_change(y_ref, labels, "rms"), 1e-9 * scale
    else:
        guide, eps_guide = error, 1e-6 * tol + 1e-12
    moves: list[str] = []
    reduce = channels and getattr(model, "channel_mode", False)
    if reduce:
        try:
            _check_channel_model(model, "channel compression")
        except ValueError as exc:
            reduce = False
            moves.append(f"channels kept: {exc}")
    search = _Greedy(
        x,
        out_grid,
        error,
        guide,
        eps_guide,
        tol,
        cost_fn,
        min_nodes,
        fewer_steps,
        min_channels if reduce else None,
        max_evaluations,
        batch_size,
        report,
        cost_fn(model),
    )
    small, err = search.run(model, 0.0, moves, 0.0)
    recoveries = 0
    if recover_epochs and recover_rounds:
        small, err, recoveries = search.recover(
            model, small, err, x_rec, recover_rounds, recover_epochs, recover_lr, seed, moves
        )
    report(search.rounds, search.evals, search.cost0, cost_fn(small), err, True)
    summary = AdaptSummary(
        kind="compress",
        schedule_before=model.schedule,
        schedule_after=small.schedule,
        macs_before=model_macs(model),
        macs_after=model_macs(small),
        metric=metric,
        norm=norm,
        limit=tol,
        error=err,
        accuracy_before=acc_ref,
        accuracy_after=search.accuracy(labels) if acc_ref is not None else None,
        moves=moves,
        evaluations=search.evals,
        seconds=time.perf_counter() - start,
        channels_before=_channel_count(model),
        channels_after=_channel_count(small),
        recover_epochs=recover_epochs * recoveries,
        recoveries=recoveries,
    )
    return small, summary


def _channel_count(model: SpaceTimeNet) -> int | None:
    ch = model.schedule.channels
    return None if ch is None else max(ch)


def _warn_below_one_sample(tol: float, n: int) -> None:
    """A discrete metric moves in steps of one sample, 100 / n points: a smaller ``tol``
    allows no change at all (and a tol of a few samples is a coarse, noisy constraint)."""
    step = 100.0 / n
    if 0 < tol < step:  # tol = 0 asks for no change: nothing to warn about
        warnings.warn(
            f"tol: {tol:g} points is below one sample of the {n}-sample calibration set "
            f"({step:.3g} points): no calibration sample may change, so the search is "
            f"stricter than tol says; calibrate on at least {math.ceil(100.0 / tol)} samples",
            stacklevel=3,
        )


def _recover(
    small: SpaceTimeNet,
    x: torch.Tensor,
    y: torch.Tensor,
    out_grid: Grid,
    epochs: int,
    lr: float,
    seed: int,
    batch: int = 64,
) -> SpaceTimeNet:
    """A copy of ``small`` fitted to the outputs ``y`` on ``x`` (mean squared difference, Adam
    with cosine decay from ``lr``); the copy before any step whose loss is not finite."""
    student = copy.deepcopy(small).train()
    kw = {"output_grid": out_grid} if _function_readout(student) else {}
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    n = x.shape[0]
    steps = epochs * math.ceil(n / batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    gen = torch.Generator().manual_seed(seed)
    good = copy.deepcopy(student.state_dict())
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=gen).split(batch):
            idx = idx.to(x.device)
            loss = torch.nn.functional.mse_loss(student(x[idx], **kw), y[idx])
            if not torch.isfinite(loss):
                student.load_state_dict(good)
                warnings.warn("recovery: the loss became non-finite; stopped", stacklevel=3)
                return student.eval()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        good = copy.deepcopy(student.state_dict())
    return student.eval()


@dataclass
class _Greedy:
    """The greedy search of ``compress`` from one starting model, with the trial count
    and rounds kept across calls (recoveries restart it from a fitted model);
    ``min_channels`` None: channels are kept."""

    x: torch.Tensor
    out_grid: Grid
    error: Callable[[torch.Tensor], float]
    guide: Callable[[torch.Tensor], float]
    eps_guide: float
    tol: float
    cost_fn: Callable[[SpaceTimeNet], float]
    min_nodes: int
    fewer_steps: bool
    min_channels: int | None
    max_evaluations: int
    batch_size: int
    report: Callable
    cost0: float
    evals: int = 0
    rounds: int = 0
    last_out: torch.Tensor | None = None
    made: UniformGrids = field(default_factory=UniformGrids)

    def accuracy(self, labels: torch.Tensor) -> float:
        """The accuracy of the last verified model on the calibration batch."""
        return _accuracy(self.last_out, labels)

    def _outputs(self, m: SpaceTimeNet) -> torch.Tensor:
        return _outputs(m, self.x, self.batch_size, self.out_grid)

    def run(self, base: SpaceTimeNet, base_err: float, moves: list[str], base_guide: float):
        """(the cheapest model found from ``base``, its verified change); appends the accepted
        moves to ``moves``. ``base_err``, ``base_guide``: the change and the guide of
        ``base``'s outputs."""
        sched = base.schedule
        times, grids = _lists(sched)
        # the channels held: (state, hidden) counts, hidden None outside the bottleneck form;
        # None when channels are kept
        ch0 = None
        if self.min_channels is not None and _channel_count(base) > self.min_channels:
            ch0 = (_channel_count(base), hidden_count(base))
            ranking = rank_channels(base, self.x, batch_size=self.batch_size)
        narrowed: dict[tuple | None, SpaceTimeNet] = {ch0: base}

        def build(t, g, ch) -> SpaceTimeNet:
            if ch not in narrowed:
                narrowed[ch] = with_channels(base, ranking, *ch)
            return narrowed[ch].with_schedule(_schedule(t, g, sched))

        cur_cost, cur_err, cur_guide = self.cost_fn(base), base_err, base_guide
        seen: dict[tuple, tuple[float, float | None, float]] = {}
        history = [(times, grids, ch0)]
        first_fixed = _input_on_first_grid(base)
        while self.evals < self.max_evaluations:
            best = None
            self.rounds += 1
            cands = [
                (desc, t, g, ch0)
                for desc, t, g in _coarsening_moves(
                    self.made, times, grids, self.min_nodes, self.fewer_steps, first_fixed
                )
            ]
            if ch0 is not None:
                cands += _channel_moves(times, grids, ch0, self.min_channels)
            for desc, t, g, ch in cands:
                self.report(self.rounds, self.evals, self.cost0, cur_cost, cur_err, False,
                            within=True)  # fmt: skip
                key = (_key(t, g), ch)
                if key not in seen:
                    seen[key] = self._measure(lambda t=t, g=g, ch=ch: build(t, g, ch), cur_cost)
                cost, e, gd = seen[key]
                if e is None or cost >= cur_cost or not e <= self.tol:
                    continue
                score = (cur_cost - cost) / (max(gd - cur_guide, 0.0) + self.eps_guide)
                if best is None or score > best[0]:
                    best = (score, desc, t, g, ch, cost, e, gd)
            if best is None:
                break
            _, desc, times, grids, ch0, cur_cost, cur_err, cur_guide = best
            history.append((times, grids, ch0))
            moves.append(f"{desc}: cost {cur_cost:.6g}, change {cur_err:.4g}")
            self.report(self.rounds, self.evals, self.cost0, cur_cost, cur_err, False)
        # the guarantee: verify the returned model by a full forward pass, fall back if needed
        while True:
            small = build(*history[-1])
            out = self._outputs(small)
            err = self.error(out)
            if err <= self.tol or len(history) == 1:
                break
            history.pop()
            moves.append("verification failed: one move undone")
        self.last_out = out
        return small, err

    def _measure(self, make: Callable[[], SpaceTimeNet], cur_cost: float):
        """(cost, change, guide) of the candidate ``make()`` builds: its outputs are measured
        (one trial) only when it is cheaper than ``cur_cost`` and trials are left; a
        candidate the kernel refuses (a grid it under-resolves) costs infinity."""
        try:
            cand = make()
        except ValueError:
            return math.inf, None, math.inf
        cost = self.cost_fn(cand)
        if not (cost < cur_cost and self.evals < self.max_evaluations):
            return cost, None, math.inf
        out = self._outputs(cand)
        self.evals += 1
        return cost, self.error(out), self.guide(out)

    def recover(self, model, small, err, x_rec, rounds, epochs, lr, seed, moves):
        """Up to ``rounds`` times: fit ``small`` to ``model``'s outputs on ``x_rec`` for
        ``epochs`` epochs, keep the fit when it stays within tol and moved the outputs back
        towards the model's, and search on from it. Returns (model, change, recoveries)."""
        y_rec = _outputs(model, x_rec, self.batch_size, self.out_grid)
        done = 0
        for i in range(rounds):
            rec = _recover(small, x_rec, y_rec, self.out_grid, epochs, lr, seed + i)
            done += 1
            out = self._outputs(rec)
            err_rec, guide_rec = self.error(out), self.guide(out)
            moves.append(f"recovery {i + 1} ({epochs} epochs): change {err:.4g} -> {err_rec:.4g}")
            closer = err_rec < err or guide_rec < self.guide(self.last_out)
            if not (err_rec <= self.tol and closer):
                moves.append("recovery not kept: the model before it is returned")
                break
            n_moves = len(moves)
            small, err = self.run(rec, err_rec, moves, guide_rec)
            if len(moves) == n_moves:  # no move fits even after recovery
                break
        return small, err, done


def _channel_moves(times, grids, ch: tuple[int, int | None], floor: int):
    """(description, times, grids, (state, hidden)) of every channel move: the state's
    channels, or the bottleneck's hidden channels, to about 0.85 times as many or half as
    many, at least ``floor``."""
    r, h = ch
    for new in _fewer(r, floor):
        yield f"state channels {r} -> {new}", times, grids, (new, h)
    if h is not None:
        for new in _fewer(h, floor):
            yield f"hidden channels {h} -> {new}", times, grids, (r, new)


def _fewer(c: int, floor: int) -> list[int]:
    targets = []
    for r in (math.floor(0.85 * c), c // 2):
        r = max(r, floor)
        if r < c and r not in targets:
            targets.append(r)
    return targets


def _progress_reporter(progress: bool | Callable[[dict], Any], start: float) -> Callable:
    """report(round, trials, cost0, cost, change, done, within=False): calls ``progress``
    with a dict, or for True prints a line to stderr (within a round at most every 2 s)."""
    if progress is False:
        return lambda *a, **k: None
    if not (progress is True or callable(progress)):
        raise ValueError(f"progress: expected True, False or a callable, got {progress!r}")
    last = [start]

    def report(r, trials, cost0, cost, change, done, within=False) -> None:
        now = time.perf_counter()
        if within and now - last[0] < 2.0:
            return
        last[0] = now
        info = {
            "round": r,
            "trials": trials,
            "seconds": now - start,
            "cost": cost,
            "change": change,
            "done": done,
        }
        if callable(progress):
            progress(info)
            return
        import sys

        what = "done" if done else f"round {r}"
        print(
            f"compress: {what}: {trials} trials, {info['seconds']:.1f} s; schedule held: "
            f"cost {cost:,.6g} ({cost0 / max(cost, 1):.2f}x fewer), change "
            f"{change:.4g}",
            file=sys.stderr,
            flush=True,
        )

    return report


def _is_labels(labels: torch.Tensor | None, out: torch.Tensor) -> bool:
    return (
        labels is not None
        and labels.dim() == 1
        and not labels.is_floating_point()
        and out.dim() == 2
    )


def _coarsening_moves(made, times, grids, floor, fewer_steps, fixed_first=False):
    """(description, times, grids) of every coarsening move from a schedule (G_0 is left
    alone when ``fixed_first``; new grids made by ``made``, a ``UniformGrids``)."""
    K = len(times) - 1
    for j in range(1 if fixed_first else 0, K + 1):
        # one rung down, or halved (a jump past rungs that align badly with the data, such as
        # the pixels of a cells lift)
        targets = [_coarser(made, grids[j], floor), _coarser(made, grids[j], floor, 0.5)]
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

    Repeats: estimate the per-grid and per-step errors
    ([`estimate_errors`][spacetime_nets.adapt.estimate_errors]), then apply the affordable
    move with the largest estimate per multiply-add added: a grid one rung finer (n -> ~1.25 n
    per axis) or a step split in two. Stops when no move fits in the budget, when every
    estimate is zero, or after ``max_moves`` moves.

    Args:
        model: a continuous SpaceTimeNet (left unchanged).
        data: calibration inputs: x ``[N, in_features]``, a pair (x, y) or a Split.
        budget: the largest multiply-adds per sample
            ([`model_macs`][spacetime_nets.adapt.model_macs]) the result may cost; at least
            the model's own.
        norm: ``max`` or ``rms`` (the estimates' norm).
        max_moves: at most this many refinements.
        batch_size: samples per forward pass.

    Returns:
        (the model on the refined schedule, an
            [`AdaptSummary`][spacetime_nets.adapt.AdaptSummary] whose ``error`` is the output
            change against the given model and ``estimate_before``/``estimate_after`` the
            summed estimates).
    """
    start = time.perf_counter()
    _check_continuous(model, "refine_where")
    norm = _check_norm(norm)
    budget = check_real("budget", budget)
    max_moves = check_int("max_moves", max_moves, 0)
    batch_size = check_int("batch_size", batch_size)
    macs0 = model_macs(model)
    if budget < macs0:
        raise ValueError(
            f"budget: the model already costs {macs0} multiply-adds per sample, more than the "
            f"budget {budget:g}"
        )
    x, _ = _calibration(model, data, need_labels=False)
    sched = model.schedule
    cur = model
    made = UniformGrids()
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
            g[j] = _finer(made, grids[j])
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
