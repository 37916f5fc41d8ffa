"""Multilevel training: coarse schedules first, then refine and continue."""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import methodcaller
from pathlib import Path
from typing import Any

from grids import GridSchedule

from ..models import SpaceTimeNet
from ..training._io import check_path
from ..validation import check_int

# --------------------------------------------------------------------------------------------
# multilevel training
# --------------------------------------------------------------------------------------------


@dataclass
class MultilevelResult:
    """The trained model on the finest level, one training History per level, the schedules
    trained on and the wall time of each level (training plus the move up).

    Attributes:
        model: the model trained on the last (finest) level.
        histories: the [`History`][spacetime_nets.training.History] that
            [`fit`][spacetime_nets.training.fit] returned on each level, coarse to fine.
        schedules: the schedule each level trained on, coarse to fine.
        seconds: the wall time of each level in seconds (training plus the move up).
    """

    model: SpaceTimeNet
    histories: list
    schedules: list[GridSchedule]
    seconds: list[float]

    @property
    def total_seconds(self) -> float:
        """The wall time of all levels together, in seconds."""
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
    training with [`fit`][spacetime_nets.training.fit] on every level.

    Moving up: a continuous model is rediscretised exactly (``with_schedule``); a nodal one is
    interpolated by ``refine(width, depth)`` (Net2Wider / Net2Deeper in the continuum), so the
    network function is nearly preserved and training continues from it. Each level is a
    [`GridSchedule`][grids.schedule.GridSchedule] or a pair ``(width, depth)`` meaning "the
    previous level refined by these factors" (for level 0: the model's own schedule refined).
    For nodal models, level 0 must be the model's own schedule and each next level a
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
        A [`MultilevelResult`][spacetime_nets.adapt.MultilevelResult] (the model on the last
            level, histories, schedules, times).
    """
    from ..training import fit

    if not isinstance(model, SpaceTimeNet):
        raise ValueError(f"model: expected a SpaceTimeNet, got {type(model).__name__}")
    levels = list(levels) if isinstance(levels, (list, tuple)) else levels
    if not isinstance(levels, list) or not levels:
        raise ValueError(f"levels: expected a non-empty list of schedules, got {levels!r:.80}")
    for i, lv in enumerate(levels):
        if isinstance(lv, GridSchedule):
            continue
        ok = isinstance(lv, tuple) and len(lv) == 2
        if ok:
            try:  # NumPy integers are ints here too
                levels[i] = tuple(check_int(f"levels[{i}]", v) for v in lv)
            except ValueError:
                ok = False
        if not ok:
            raise ValueError(
                f"levels[{i}]: expected a GridSchedule or a pair (width, depth) of positive "
                f"ints, got {lv!r:.80}"
            )
    if isinstance(epochs, (list, tuple)):
        per_level = list(epochs)
    else:
        try:
            per_level = [check_int("epochs", epochs)] * len(levels)
        except ValueError:
            raise ValueError(
                f"epochs: expected an int >= 1 or one int per level, got {epochs!r:.80}"
            ) from None
    if len(per_level) != len(levels):
        raise ValueError(
            f"epochs: expected {len(levels)} entries (one per level), got {len(per_level)}"
        )
    per_level = [check_int(f"epochs[{i}]", e) for i, e in enumerate(per_level)]
    if out_dir is not None:
        check_path("out_dir", out_dir)
    if "resume" in fit_kwargs:
        raise ValueError(
            "resume: multilevel_fit starts from the given model; resume is not supported"
        )
    if "batch_size" not in fit_kwargs:
        raise ValueError("batch_size: required (passed to training.fit)")

    # the plan, checked before any training: how the model of the level before (the given
    # model for level 0) becomes the model of every level
    plan: list[Callable[[SpaceTimeNet], SpaceTimeNet]] = []
    sched = model.schedule
    for i, lv in enumerate(levels):
        if isinstance(lv, tuple):
            plan.append(methodcaller("refine", *lv))
            sched = sched.refine(*lv)
        elif model.continuous:
            plan.append(methodcaller("with_schedule", lv))
            sched = lv
        elif i == 0:
            if not sched.same_as(lv):
                raise ValueError(
                    f"levels[0]: a nodal model trains first on its own schedule ({sched!r}), "
                    f"got {lv!r}"
                )
            plan.append(copy.deepcopy)  # training runs on a copy
        else:
            f = _refinement_factors(sched, lv)
            if f is None:
                raise ValueError(
                    f"levels[{i}]: a nodal model moves up only by refine(width, depth); {lv!r} "
                    f"is no such refinement of {sched!r}"
                )
            plan.append(methodcaller("refine", *f))
            sched = lv

    current = model
    histories, schedules, seconds = [], [], []
    for i, (move_up, ep) in enumerate(zip(plan, per_level)):
        t0 = time.perf_counter()
        current = move_up(current)
        level_dir = Path(out_dir) / f"level{i}" if out_dir is not None else None
        history = fit(current, train, val, epochs=ep, out_dir=level_dir, **fit_kwargs)
        seconds.append(time.perf_counter() - t0)
        histories.append(history)
        schedules.append(current.schedule)
    return MultilevelResult(current, histories, schedules, seconds)
