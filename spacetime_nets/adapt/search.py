"""Compression to a tolerance and refinement within a budget: searches over schedules."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from grids import Grid, GridSchedule

from ..models import SpaceTimeNet
from ..validation import check_bool, check_int, check_real
from ._common import (
    METRICS,
    _calibration,
    _check_continuous,
    _check_labels,
    _check_norm,
    _coarser,
    _cost_fn,
    _distance,
    _finer,
    _input_on_first_grid,
    _key,
    _lists,
    _outputs,
    _schedule,
    _shape_text,
    model_macs,
)
from .estimate import (
    estimate_errors,
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
    progress: bool | Callable[[dict], Any] = False,
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
        progress: True prints a line to stderr after every round of moves and at most every
            two seconds within one (trials so far, seconds, the cost and change of the
            schedule held); a callable gets the same as a dict ``{"round", "trials",
            "seconds", "cost", "change", "done"}``; False: silent.

    Returns:
        (the model on the new schedule, an :class:`AdaptSummary`).
    """
    start = time.perf_counter()
    _check_continuous(model, "compress")
    report = _progress_reporter(progress, start)
    tol = check_real("tol", tol)
    cost_fn = _cost_fn(cost)
    if not isinstance(metric, str) or metric not in METRICS:
        raise ValueError(f"metric: expected one of {', '.join(METRICS)}; got {metric!r}")
    norm = _check_norm(norm)
    min_nodes = check_int("min_nodes", min_nodes)
    max_evaluations = check_int("max_evaluations", max_evaluations)
    batch_size = check_int("batch_size", batch_size)
    fewer_steps = check_bool("fewer_steps", fewer_steps)
    x, labels = _calibration(model, data, need_labels=metric == "accuracy")
    sched = model.schedule
    out_grid = sched.grids[-1]
    y_ref = _outputs(model, x, batch_size, out_grid)
    if metric != "output" and y_ref.dim() != 2:
        raise ValueError(
            f"metric: {metric!r} needs class scores [N, classes], the model answers "
            f"{tuple(y_ref.shape)}; use metric='output'"
        )
    _check_labels(labels, y_ref)
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
    cost0 = cur_cost
    rounds = 0
    while evals < max_evaluations:
        best = None
        rounds += 1
        moves_now = _coarsening_moves(
            times, grids, min_nodes, fewer_steps, _input_on_first_grid(model)
        )
        for desc, t, g in moves_now:
            report(rounds, evals, cost0, cur_cost, cur_err, False, within=True)
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
        report(rounds, evals, cost0, cur_cost, cur_err, False)
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
    report(rounds, evals, cost0, cost_fn(small), err, True)
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
