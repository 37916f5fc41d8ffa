"""The turnpike study: turnpike-trained and ERM-trained models on several horizons, their
risk and control profiles and the decay rates fitted on one arc common to every horizon.
"""

from __future__ import annotations

import copy
import csv
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .. import objectives
from ..fullbatch import (
    as_xy,
    erm_objective,
    freeze_all_but_controls,
    seeded,
    train_objective,
    turnpike_objective,
)
from ..tables import format_arc, format_table, write_csv
from ..theory import TurnpikeProfile, turnpike_profile

__all__ = ["TURNPIKE_COLUMNS", "TurnpikeResult", "train_turnpike"]


TURNPIKE_COLUMNS = (
    "problem",
    "T",
    "mu_common",
    "mu_u_common",
    "common_arc",
    "t_hit",
    "t_hit_over_T",
    "final_error",
    "objective",
    "l2_control",
    "grad_norm",
    "steps",
    "wall_time",
    "stop_reason",
    "mu_own_arc",
    "mu_u_own_arc",
    "own_arc",
    "C",
    "C_u",
    "n_fit",
)
"""Columns of the turnpike table: the rates fitted on the common arc (``common_arc``) first;
``mu_own_arc``, ``mu_u_own_arc`` (fits on each T's own middle arc ``own_arc``), ``C``,
``C_u`` and ``n_fit`` are diagnostics."""


@dataclass
class TurnpikeResult:
    """Per horizon T: the turnpike-trained profile (``tp``) and the ERM-trained one (``erm``,
    the same model and lam without the integral term), with training statistics.
    ``common_window``: the arc (t_a, t_b) on which the reported rates of every T are fitted.

    Attributes:
        Ts: the horizons, increasing.
        lam: the weight of the control penalty.
        loss: the loss name.
        threshold: the risk level whose hitting time ``t_hit`` is reported.
        tp: the [`TurnpikeProfile`][spacetime_nets.theory.TurnpikeProfile] of the
            turnpike-trained model, one per T.
        erm: the profile of the ERM-trained model, one per T (empty without ERM).
        rows: one dict per (problem, T), keyed by
            [`TURNPIKE_COLUMNS`][spacetime_nets.experiments.TURNPIKE_COLUMNS].
        models: the trained models, ``{"tp": [...], "erm": [...]}`` in the order of ``Ts``.
        common_window: the common fit arc (t_a, t_b), or None.
    """

    Ts: list[float]
    lam: float
    loss: str
    threshold: float
    tp: list[TurnpikeProfile]
    erm: list[TurnpikeProfile]
    rows: list[dict]
    models: dict = field(default_factory=dict, repr=False)
    common_window: tuple[float, float] | None = None

    def mu_ratio(self, problem: str = "tp", which: str = "mu_common") -> float:
        """max / min over T of the fitted rate ``which``: ``mu_common`` (default, the common
        arc), ``mu_u_common`` (of |u|, common arc), or the own-arc diagnostics ``mu`` and
        ``mu_u``; near 1 when the rate does not depend on T.

        Args:
            problem: ``"tp"`` (the turnpike-trained profiles) or ``"erm"``.
            which: the profile attribute to compare, ``mu_common``, ``mu_u_common``, ``mu``
                or ``mu_u``.

        Returns:
            max / min of the rates, or nan when one of them is not positive.

        Raises:
            ValueError: ``problem`` is neither ``"tp"`` nor ``"erm"``.
        """
        mus = [getattr(pr, which) for pr in self._profiles(problem)]
        if any(not (m > 0) for m in mus):
            return float("nan")
        return max(mus) / min(mus)

    def t_hit_spread(self, problem: str = "tp") -> float:
        """(max - min) / min of the times to reach the threshold (nan if one never does).

        Args:
            problem: ``"tp"`` (the turnpike-trained profiles) or ``"erm"``.

        Returns:
            The relative spread of the hitting times over T.

        Raises:
            ValueError: ``problem`` is neither ``"tp"`` nor ``"erm"``.
        """
        th = [pr.t_hit for pr in self._profiles(problem)]
        if any(t is None for t in th) or min(th) <= 0:
            return float("nan")
        return (max(th) - min(th)) / min(th)

    def _profiles(self, problem: str) -> list[TurnpikeProfile]:
        """The profiles of ``problem``, ``"tp"`` or ``"erm"`` (a ValueError for another)."""
        by_problem = {"tp": self.tp, "erm": self.erm}
        if not isinstance(problem, str) or problem not in by_problem:
            raise ValueError(f"problem: expected 'tp' or 'erm', got {problem!r}")
        return by_problem[problem]

    def to_csv(self, path: str | os.PathLike) -> None:
        """One row per (problem, T): fitted rates, hitting time, training statistics.

        Args:
            path: the CSV file to write, with the columns
                [`TURNPIKE_COLUMNS`][spacetime_nets.experiments.TURNPIKE_COLUMNS].
        """
        write_csv(path, self.rows, TURNPIKE_COLUMNS)

    def profiles_to_csv(self, path: str | os.PathLike) -> None:
        """Long format: problem, T, k, t_k, E(x(t_k)), |u(t_k)| (empty at k = K).

        Args:
            path: the CSV file to write (its folder is created when missing); the columns
                are ``problem``, ``T``, ``k``, ``t``, ``risk``, ``control``.
        """
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["problem", "T", "k", "t", "risk", "control"])
            for name, profs in (("tp", self.tp), ("erm", self.erm)):
                for pr in profs:
                    for k, t in enumerate(pr.times):
                        u = repr(float(pr.control[k])) if k < len(pr.control) else ""
                        w.writerow([name, pr.T, k, repr(float(t)), repr(float(pr.risk[k])), u])

    def summary(self) -> str:
        """The table and the fitted rates and hitting times, for printing.

        Returns:
            A multi-line text: a heading, the table (without the fit diagnostics) and a line
                with the rates on the common arc, their max/min and the hitting times.
        """
        skip = ("C", "C_u", "n_fit", "objective", "mu_u_own_arc", "own_arc", "common_arc")
        cols = [c for c in TURNPIKE_COLUMNS if c not in skip]
        head = f"Turnpike vs ERM: lam={self.lam:g}, loss={self.loss}, threshold={self.threshold:g}"
        tail = (
            f"turnpike: mu fitted on the common arc t in {format_arc(self.common_window)} for "
            "every T: "
            + ", ".join(f"T={pr.T:g}: {pr.mu_common:.3g}" for pr in self.tp)
            + f" (max/min {self.mu_ratio('tp'):.3f}; own-arc fits, a diagnostic: max/min "
            f"{self.mu_ratio('tp', 'mu'):.3f}); spread of t_hit = "
            f"{self.t_hit_spread('tp'):.3f}; ERM: t_hit = "
            + ", ".join(f"{pr.t_hit:.3g}" if pr.t_hit is not None else "never" for pr in self.erm)
        )
        return "\n".join([head, format_table(self.rows, cols), tail])


def train_turnpike(
    make_model: Callable[[float], nn.Module],
    data: Any,
    Ts: Sequence[float],
    lam: float,
    loss: str = "l2",
    *,
    p: float | None = None,
    threshold: float = 1e-2,
    optimizer: str = "lbfgs",
    max_iter: int = 2000,
    tol: float = 1e-10,
    window: int = 20,
    lr: float = 1e-2,
    seed: int = 0,
    train: str = "controls",
    erm: bool = True,
    dtype: torch.dtype = torch.float64,
    fit_window: tuple[float, float] = (0.2, 0.8),
    verbose: bool = False,
) -> TurnpikeResult:
    """For every T: train ``make_model(T)`` on the turnpike objective
    E(x(T)) + int_0^T E(x(t)) dt + lam int_0^T |u|^2 dt (trapezoid in t on the model's time
    grid, ``objectives.turnpike_cost``), and (``erm=True``) a second copy of the same initial
    model on E(x(T)) + lam int_0^T |u|^2 dt; return the
    [`turnpike_profile`][spacetime_nets.theory.turnpike_profile] of each,
    with the rates of every T also fitted on one common arc, ``fit_window`` x the shortest
    horizon (the rates to report; the own-arc fits are a diagnostic).

    Args:
        make_model: T -> the initial model on [0, T].
        data: a DatasetSplits (train split), a Split or (x ``[N, d]``, y).
        Ts: increasing positive horizons.
        lam: the weight of the control penalty.
        loss: an l^p-distance loss (``l1``, ``l2``, ``lp`` with ``p``) or ``mse``.
        p: the exponent of the ``lp`` loss.
        threshold: the risk level whose hitting time is reported.
        optimizer: ``lbfgs`` or ``adam``
            ([`train_objective`][spacetime_nets.fullbatch.train_objective]).
        max_iter: the iteration limit of each training.
        tol: the stopping tolerance of each training.
        window: iterations of the relative-decrease stopping test.
        lr: the learning rate of Adam.
        seed: seeds torch for the run.
        train: ``'controls'`` (the kernels only) or ``'all'``.
        erm: also train the ERM problem from the same initial model.
        dtype: the floating type of the computation.
        fit_window: the fit arc as fractions of T (own arcs) and of the shortest T (common).
        verbose: print each row as it is done.

    Returns:
        A [`TurnpikeResult`][spacetime_nets.experiments.TurnpikeResult].
    """
    Ts = [float(T) for T in Ts]
    if not Ts or any(not (math.isfinite(T) and T > 0) for T in Ts):
        raise ValueError(f"Ts: expected positive finite horizons, got {Ts!r}")
    if any(b <= a for a, b in zip(Ts, Ts[1:])):
        raise ValueError(f"Ts: expected increasing horizons, got {Ts!r}")
    x, y = as_xy(data, dtype)
    with seeded(seed):  # reproducible draws; the caller's random state is kept
        rows = []
        profiles: dict[str, list[TurnpikeProfile]] = {"tp": [], "erm": []}
        models: dict = {"tp": [], "erm": []}
        problems = [("tp", turnpike_objective)] + ([("erm", erm_objective)] if erm else [])
        for T in Ts:
            init = make_model(T).to(dtype)
            if abs(init.T - T) > 1e-9 * T:
                raise ValueError(f"make_model: asked for T={T:g}, got a model on [0, {init.T:g}]")
            for name, make_obj in problems:
                model = copy.deepcopy(init)
                params = freeze_all_but_controls(model, train)
                info = train_objective(
                    params,
                    make_obj(model, x, y, lam, loss, p),
                    optimizer=optimizer,
                    max_iter=max_iter,
                    tol=tol,
                    window=window,
                    lr=lr,
                )
                prof = turnpike_profile(model, x, y, loss, threshold, p=p, window=fit_window)
                with torch.no_grad():
                    l2 = float(objectives.l2_control(model))
                row = {
                    "problem": name,
                    **prof.row(),
                    "objective": info.objective,
                    "l2_control": l2,
                    "grad_norm": info.grad_norm,
                    "steps": info.steps,
                    "wall_time": info.wall_time,
                    "stop_reason": info.stop_reason,
                }
                rows.append(row)
                profiles[name].append(prof)
                models[name].append(model)
                if verbose:
                    print(format_table([row], TURNPIKE_COLUMNS).splitlines()[-1], flush=True)
        # the same arc for every T: [0.2, 0.8] x the shortest horizon (C, mu independent of T)
        common = (fit_window[0] * Ts[0], fit_window[1] * Ts[0])
        by_problem = {name: iter(profs) for name, profs in profiles.items()}
        for row in rows:
            prof = next(by_problem[row["problem"]])
            prof.fit_common(common)
            row.update(prof.row())
        tp, er = profiles["tp"], profiles["erm"]
        return TurnpikeResult(Ts, float(lam), loss, threshold, tp, er, rows, models, common)
