"""Horizon sweeps of the ERM problem and the check of the scaling lemma on trained models.

[`horizon_sweep`][spacetime_nets.experiments.horizon_sweep] trains one model per horizon T at
a fixed lam (full batch, controls only) and fits the decay of the training error in T;
[`scaling_check`][spacetime_nets.experiments.scaling_check] trains at (T, lam) and at
(1, lam / T) from matching initial points and compares (docs/concepts.md, large-time
behaviour).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .. import objectives
from ..fullbatch import (
    TrainInfo,
    as_xy,
    erm_objective,
    freeze_all_but_controls,
    seeded,
    train_objective,
)
from ..tables import format_table, write_csv
from ..theory import fit_power_law, fold_output_scale, rescale_horizon

__all__ = ["SWEEP_COLUMNS", "SweepResult", "horizon_sweep", "ScalingCheck", "scaling_check"]

SWEEP_COLUMNS = (
    "T",
    "error",
    "objective",
    "l2_control",
    "T_l2_control",
    "v_norm2",
    "accuracy",
    "max_residual",
    "grad_norm",
    "steps",
    "evals",
    "wall_time",
    "stop_reason",
)
"""The columns of a horizon sweep's table, one row per T (see
[`SweepResult`][spacetime_nets.experiments.SweepResult])."""


@dataclass
class SweepResult:
    """One ERM run per horizon T at a fixed lam.

    ``rows``: one dict per T with the columns of
    [`SWEEP_COLUMNS`][spacetime_nets.experiments.SWEEP_COLUMNS] (``error`` = E(x_T(T)) of
    the trained model, ``T_l2_control`` = T int_0^T |u_T|^2, ``v_norm2`` = int_0^1 |v_T|^2 of
    the rescaled controls v_T(s) = T u_T(T s)). ``slope``/``intercept``: least-squares fit
    log(error) = slope * log(T) + intercept over the rows with error above ``floor``.
    ``models``: the trained models (not written to CSV).

    Attributes:
        rows: one dict per T, keyed by
            [`SWEEP_COLUMNS`][spacetime_nets.experiments.SWEEP_COLUMNS].
        slope: the fitted slope of log(error) against log(T) (the theory: <= -1).
        intercept: the fitted intercept of that line.
        lam: the weight of the control penalty of every run.
        loss: the loss name of every run.
        floor: errors at or below it were left out of the fit.
        models: the trained models, one per T (not written to CSV).
        meta: free-form notes on the sweep (empty unless the caller adds some).
    """

    rows: list[dict]
    slope: float
    intercept: float
    lam: float
    loss: str
    floor: float = 1e-14
    models: list[nn.Module] = field(default_factory=list, repr=False)
    meta: dict = field(default_factory=dict)

    @property
    def Ts(self) -> list[float]:
        """The horizons T of the rows, in order."""
        return [r["T"] for r in self.rows]

    @property
    def errors(self) -> list[float]:
        """The training errors E(x_T(T)) of the rows, in order."""
        return [r["error"] for r in self.rows]

    @property
    def T_l2_ratio(self) -> float:
        """max / min of T * int_0^T |u_T|^2 over the sweep (bounded by the theory)."""
        v = [r["T_l2_control"] for r in self.rows]
        return max(v) / max(min(v), 1e-300)

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write the table (one row per T) to ``path``.

        Args:
            path: the CSV file to write.
        """
        write_csv(path, self.rows, SWEEP_COLUMNS)

    def summary(self) -> str:
        """The table, the fitted slope of log(error) against log(T) and max/min of T * l2.

        Returns:
            A multi-line text: a heading, the table (without ``evals``) and the fit.
        """
        cols = [c for c in SWEEP_COLUMNS if c not in ("evals",)]
        head = f"ERM horizon sweep: lam={self.lam:g}, loss={self.loss}"
        tail = (
            f"slope of log(error) vs log(T): {self.slope:.3f}; "
            f"max/min of T*l2_control: {self.T_l2_ratio:.3f}"
        )
        return "\n".join([head, format_table(self.rows, cols), tail])


def _accuracy(out: torch.Tensor, y: torch.Tensor) -> float:
    if y.is_floating_point():
        if y.dim() == 1 or y.shape[-1] == 1:
            return float((torch.sign(out.reshape(-1)) == torch.sign(y.reshape(-1))).double().mean())
        return float((out.argmax(-1) == y.argmax(-1)).double().mean())
    return float((out.argmax(-1) == y).double().mean())


def _max_residual(out: torch.Tensor, y: torch.Tensor) -> float:
    if not y.is_floating_point():
        y = torch.nn.functional.one_hot(y.long(), out.shape[-1]).to(out.dtype)
    return float((out - y.reshape(out.shape)).abs().max())


def horizon_sweep(
    make_model: Callable[[float], nn.Module],
    data: Any,
    Ts: Sequence[float],
    lam: float,
    *,
    loss: str = "mse",
    p: float | None = None,
    optimizer: str = "lbfgs",
    max_iter: int = 2000,
    tol: float = 1e-10,
    window: int = 20,
    lr: float = 1e-2,
    seed: int = 0,
    train: str = "controls",
    warm_start: bool = False,
    dtype: torch.dtype = torch.float64,
    floor: float = 1e-14,
    verbose: bool = False,
) -> SweepResult:
    """Train one model per horizon T (increasing) with the same lam on the full batch:
    minimise E(x(T)) + lam * int_0^T |u|^2 dt (``objectives.l2_control``).

    Args:
        make_model: T -> the model on [0, T] (e.g. ``rescale_horizon(base, T)`` so every T
            starts from the same network function).
        data: a DatasetSplits (train split), a Split or (x ``[N, d]``, y).
        Ts: increasing positive horizons.
        lam: the weight of the control penalty (>= 0).
        loss: a name of ``objectives.LOSSES``.
        p: the exponent of the ``lp`` loss.
        optimizer: ``lbfgs`` or ``adam``
            ([`train_objective`][spacetime_nets.fullbatch.train_objective]).
        max_iter: the iteration limit of each training.
        tol: the stopping tolerance of each training.
        window: iterations of the relative-decrease stopping test.
        lr: the learning rate of Adam.
        seed: seeds torch for the run.
        train: ``'controls'`` trains the kernels only (the readout and lift stay fixed, as
            in the theory); ``'all'`` trains everything.
        warm_start: start each T > T_0 from the previous trained model rescaled to T (a
            continuation in lam / T).
        dtype: the floating type of the computation.
        floor: errors at or below it are left out of the slope fit.
        verbose: print each row as it is done.

    Returns:
        A [`SweepResult`][spacetime_nets.experiments.SweepResult] (rows, fitted slope, trained
            models).
    """
    Ts = [float(T) for T in Ts]
    if not Ts or any(not (math.isfinite(T) and T > 0) for T in Ts):
        raise ValueError(f"Ts: expected positive finite horizons, got {Ts!r}")
    if any(b <= a for a, b in zip(Ts, Ts[1:])):
        raise ValueError(f"Ts: expected increasing horizons, got {Ts!r}")
    lam = float(lam)
    if not (math.isfinite(lam) and lam >= 0):
        raise ValueError(f"lam: expected a finite lam >= 0, got {lam!r}")
    x, y = as_xy(data, dtype)
    with seeded(seed):  # reproducible draws; the caller's random state is kept
        rows, models = [], []
        prev = None
        for T in Ts:
            if warm_start and prev is not None:
                model = rescale_horizon(prev, T)
            else:
                model = make_model(T)
            model = model.to(dtype)
            if abs(model.T - T) > 1e-9 * T:
                raise ValueError(f"make_model: asked for T={T:g}, got a model on [0, {model.T:g}]")
            params = freeze_all_but_controls(model, train)
            info = train_objective(
                params,
                erm_objective(model, x, y, lam, loss, p),
                optimizer=optimizer,
                max_iter=max_iter,
                tol=tol,
                window=window,
                lr=lr,
            )
            with torch.no_grad():
                out = model(x)
                err = float(objectives.empirical_risk(out, y, loss, p))
                l2 = float(objectives.l2_control(model))
                v2 = float(objectives.l2_control(rescale_horizon(model, 1.0, strict=False)))
            row = {
                "T": T,
                "error": err,
                "objective": info.objective,
                "l2_control": l2,
                "T_l2_control": T * l2,
                "v_norm2": v2,
                "accuracy": _accuracy(out, y),
                "max_residual": _max_residual(out, y),
                "grad_norm": info.grad_norm,
                "steps": info.steps,
                "evals": info.evals,
                "wall_time": info.wall_time,
                "stop_reason": info.stop_reason,
            }
            rows.append(row)
            models.append(model)
            prev = model
            if verbose:
                print(format_table([row], SWEEP_COLUMNS).splitlines()[-1], flush=True)
        slope, icpt = fit_power_law(Ts, [r["error"] for r in rows], floor)
        return SweepResult(rows, slope, icpt, lam, loss, floor, models)


@dataclass
class ScalingCheck:
    """Training at (T, lam) vs at (1, lam / T) from matching initialisations.

    ``objective_T`` = J_{T,lam}(u_T), ``objective_1`` = J_{1,lam/T}(v); ``rel_objective`` their
    relative difference; ``rel_outputs`` max |P x_T - P x_1| / max |P x_T|; ``rel_controls``
    the relative difference of int_0^1 |v|^2 between rescale_horizon(model_T, 1) and model_1.
    ``lemma_objective``: |J_{1,lam/T}(v_T) - J_{T,lam}(u_T)| / J_{T,lam}(u_T) for the trained
    u_T and its image v_T = T u_T(T .), and ``lemma_grad``: |T grad_v J_1 - grad_u J_T| /
    |grad_u J_T| there (the lemma on the trained point, whatever minimum each run found).

    Attributes:
        T: the horizon of the first model.
        lam: the weight of the control penalty at horizon T.
        objective_T: J_{T,lam} of the model trained on [0, T].
        objective_1: J_{1,lam/T} of the model trained on [0, 1].
        rel_objective: |objective_T - objective_1| / |objective_T|.
        rel_outputs: max |P x_T - P x_1| / max |P x_T| over the training inputs.
        rel_controls: the relative difference of int_0^1 |v|^2 of the two trained models.
        info_T: the training statistics of the model on [0, T].
        info_1: the training statistics of the model on [0, 1].
        lemma_objective: the relative gap of the lemma's objectives at the trained u_T.
        lemma_grad: the relative gap of the lemma's gradients at the trained u_T.
    """

    T: float
    lam: float
    objective_T: float
    objective_1: float
    rel_objective: float
    rel_outputs: float
    rel_controls: float
    info_T: TrainInfo
    info_1: TrainInfo
    lemma_objective: float = float("nan")
    lemma_grad: float = float("nan")

    def row(self) -> dict:
        """The check as one table row.

        Returns:
            The scalar fields, with the steps and final gradient norms of both trainings
                (``steps_T``, ``steps_1``, ``grad_T``, ``grad_1``) in place of ``info_T`` and
                ``info_1``.
        """
        return {
            "T": self.T,
            "lam": self.lam,
            "objective_T": self.objective_T,
            "objective_1": self.objective_1,
            "rel_objective": self.rel_objective,
            "rel_outputs": self.rel_outputs,
            "rel_controls": self.rel_controls,
            "lemma_objective": self.lemma_objective,
            "lemma_grad": self.lemma_grad,
            "steps_T": self.info_T.steps,
            "steps_1": self.info_1.steps,
            "grad_T": self.info_T.grad_norm,
            "grad_1": self.info_1.grad_norm,
        }


def scaling_check(
    model_T: nn.Module,
    data: Any,
    lam: float,
    *,
    loss: str = "mse",
    p: float | None = None,
    max_iter: int = 5000,
    tol: float = 1e-13,
    window: int = 50,
    dtype: torch.dtype = torch.float64,
) -> ScalingCheck:
    """Check J_{T,lam}(u) = J_{1,lam/T}(v) on trained models: train ``model_T`` (horizon T)
    at lam and, from ``rescale_horizon(model_T, 1)`` (the same initial point in the other
    coordinates), a model on [0, 1] at lam / T; both with L-BFGS in ``dtype``. Compares the
    final objectives, the outputs and the rescaled control norms.

    Both models have their ``output_scale`` folded into the parameters
    ([`fold_output_scale`][spacetime_nets.theory.fold_output_scale]), so the optimiser sees the
    controls u on [0, T] and v = T u on [0, 1] themselves: two parametrisations of one problem, and
    two different L-BFGS paths.

    Args:
        model_T: the initial model on [0, T] (not changed).
        data: a DatasetSplits (train split), a Split or (x ``[N, d]``, y).
        lam: the weight of the control penalty at horizon T.
        loss: a name of ``objectives.LOSSES``.
        p: the exponent of the ``lp`` loss.
        max_iter: the iteration limit of each training (L-BFGS).
        tol: the stopping tolerance of each training.
        window: iterations of the relative-decrease stopping test.
        dtype: the floating type of the computation.

    Returns:
        A [`ScalingCheck`][spacetime_nets.experiments.ScalingCheck] with the relative
            differences.
    """
    x, y = as_xy(data, dtype)
    mT = fold_output_scale(copy.deepcopy(model_T).to(dtype))
    T = mT.T
    m1 = fold_output_scale(rescale_horizon(mT, 1.0))
    infos = []
    for m, lam_m in ((mT, lam), (m1, lam / T)):
        params = freeze_all_but_controls(m, "controls")
        infos.append(
            train_objective(
                params,
                erm_objective(m, x, y, lam_m, loss, p),
                max_iter=max_iter,
                tol=tol,
                window=window,
            )
        )
    image = fold_output_scale(rescale_horizon(mT, 1.0))
    grads = []
    for m, lam_m in ((mT, lam), (image, lam / T)):
        params = freeze_all_but_controls(m, "controls")
        J = erm_objective(m, x, y, lam_m, loss, p)()
        g = torch.autograd.grad(J, params)
        grads.append((float(J.detach()), torch.cat([v.reshape(-1) for v in g])))
    (JuT, guT), (JvT, gvT) = grads
    lemma_objective = abs(JvT - JuT) / max(abs(JuT), 1e-300)
    lemma_grad = float((T * gvT - guT).norm()) / max(float(guT.norm()), 1e-300)
    with torch.no_grad():
        JT = float(erm_objective(mT, x, y, lam, loss, p)())
        J1 = float(erm_objective(m1, x, y, lam / T, loss, p)())
        oT, o1 = mT(x), m1(x)
        vT = float(objectives.l2_control(rescale_horizon(mT, 1.0)))
        v1 = float(objectives.l2_control(m1))
    return ScalingCheck(
        T=T,
        lam=lam,
        objective_T=JT,
        objective_1=J1,
        rel_objective=abs(JT - J1) / max(abs(JT), 1e-300),
        rel_outputs=float((oT - o1).abs().max()) / max(float(oT.abs().max()), 1e-300),
        rel_controls=abs(vT - v1) / max(abs(vT), 1e-300),
        info_T=infos[0],
        info_1=infos[1],
        lemma_objective=lemma_objective,
        lemma_grad=lemma_grad,
    )
