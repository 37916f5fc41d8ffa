"""Large-time training theory (MATH section 2): homogeneity, the scaling lemma, horizon sweeps
of the L2-regularised risk, and turnpike profiles.

ERM:       J_{T,lam}(u) = E(x(T)) + lam * int_0^T |u(t)|^2 dt
Turnpike:  J_T(u) = E(x(T)) + int_0^T E(x(t)) dt + lam * int_0^T |u(t)|^2 dt

Scaling lemma (homogeneous f): with v(s) = T u(T s) on [0, 1], the trajectory driven by u on
[0, T] is the time-rescaled trajectory driven by v on [0, 1], and int_0^T |u|^2 = (1/T)
int_0^1 |v|^2, so J_{T,lam}(u) = J_{1,lam/T}(v). Discretely, K Euler steps of size T/K with
controls u_k give the same outputs as K steps of size 1/K with controls T u_k.

Consequences reproduced here: the training error of the ERM minimiser decays like O(1/T) (or
faster) at fixed lam with T * int_0^T |u_T|^2 bounded, and with the integral term the risk
along the trajectory decays like C exp(-mu t) with C, mu independent of T.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize
from torch import nn

from . import objectives
from .fields import check_form, form_is_homogeneous, get_activation
from .integrate import _field, _step

__all__ = [
    "is_homogeneous",
    "rescale_horizon",
    "control_parameters",
    "train_objective",
    "TrainInfo",
    "SweepResult",
    "horizon_sweep",
    "ScalingCheck",
    "scaling_check",
    "fold_output_scale",
    "TurnpikeProfile",
    "turnpike_profile",
    "TurnpikeResult",
    "train_turnpike",
    "fit_exponential_rate",
]

PROBE_FACTORS = (0.5, 2.0, 3.7)
OPTIMIZERS = ("lbfgs", "adam")
STOP_REASONS = ("grad_norm", "rel_decrease", "max_iter", "line_search", "no_decrease", "non-finite")


# --------------------------------------------------------------------------- homogeneity
def _kernels(model: nn.Module) -> list:
    ks = [getattr(model, "kernel", None), getattr(model, "kernel2", None)]
    return [k for k in ks if k is not None]


def _increments(model: nn.Module, states: list[torch.Tensor]) -> list[torch.Tensor]:
    """f(X^k, u_k) for every step k: (X^{k+1} - Pi_k X^k) / dt_k of one Euler step from the
    given states ``[B, n_k]``; Heun/RK4 models (square matrices on G_k) evaluate f directly."""
    out = []
    mats = model.controls()
    disc = model.disc
    for k, sm in enumerate(mats):
        X = states[k]
        if model.method == "euler":
            X1 = _step(disc, k, sm, X, model.form, model.act, "euler")
            out.append((X1 - disc.transfer(k, X)) / sm.dt)
        else:
            out.append(_field(model.form, model.act, sm.layers, X))
    return out


def _probe_model(model: nn.Module, factors: Sequence[float] = PROBE_FACTORS) -> bool:
    """Numerical probe: is f(X, a u) = a f(X, u) for a in ``factors`` on random states?

    Works on a float64 copy; the controls (the kernels, not the lift or readout) are scaled by
    ``a`` through their ``output_scale``. A probe on a vanishing field is uninformative, so the
    copy's kernel parameters are redrawn at random when every increment is ~0.
    """
    m = copy.deepcopy(model).double()
    g = torch.Generator().manual_seed(1234)
    widths = list(m.disc.widths)
    states = [2.0 * torch.randn(16, n, generator=g, dtype=torch.float64) for n in widths[:-1]]
    with torch.no_grad():
        base = _increments(m, states)
        if max(float(b.abs().max()) for b in base) < 1e-10:
            for kern in _kernels(m):
                for p in kern.parameters():
                    p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype))
            base = _increments(m, states)
        kerns = _kernels(m)
        scales0 = [k.output_scale for k in kerns]
        try:
            for a in factors:
                for k, s in zip(kerns, scales0):
                    k.output_scale = s * a
                scaled = _increments(m, states)
                for f0, fa in zip(base, scaled):
                    ref = float((a * f0).abs().max()) + 1e-300
                    if float((fa - a * f0).abs().max()) > 1e-9 * max(ref, 1.0):
                        return False
        finally:
            for k, s in zip(kerns, scales0):
                k.output_scale = s
    return True


def is_homogeneous(
    model_or_form: nn.Module | str,
    activation: str | Callable | None = None,
    probe: bool = True,
) -> bool:
    """Is the vector field homogeneous of degree 1 in the controls, f(x, a u) = a f(x, u)
    for all a > 0?

    ``model_or_form``: a ``NeuralODE`` / ``SpaceTimeNet`` (its form and activation are used) or
    a form name (``outside``, ``inside``, ``bottleneck``, then ``activation`` is required).
    The exact rule (:func:`fields.form_is_homogeneous`) is checked against a numerical probe:
    the model's controls are scaled by a in {0.5, 2, 3.7} and one step's increment
    (X^{k+1} - Pi_k X^k) / dt_k is compared with a times the unscaled one on random states (a
    form name is probed on a small random ``NeuralODE``). Returns True only when both say
    homogeneous; raises ValueError when they disagree (a custom activation mislabelled).
    ``probe=False`` returns the rule alone.
    """
    if isinstance(model_or_form, str):
        form = check_form(model_or_form)
        if activation is None:
            raise ValueError("activation: required when a form name is given")
        get_activation(activation)
        rule = form_is_homogeneous(form, activation)
        if not probe:
            return rule
        from .models import NeuralODE

        m = NeuralODE(3, T=1.0, steps=3, form=form, activation=activation, seed=0).double()
        probed = _probe_model(m)
    elif isinstance(model_or_form, nn.Module) and hasattr(model_or_form, "controls"):
        model = model_or_form
        if activation is not None:
            raise ValueError("activation: give it only with a form name, not with a model")
        rule = form_is_homogeneous(model.form, model.activation)
        if not probe:
            return rule
        probed = _probe_model(model)
    else:
        raise ValueError(
            "model_or_form: expected a NeuralODE / SpaceTimeNet or a form name, got "
            f"{type(model_or_form).__name__}"
        )
    if rule != probed:
        raise ValueError(
            f"is_homogeneous: the rule says {rule} but the numerical probe says {probed} "
            "(an activation labelled as positively homogeneous that is not, or the reverse)"
        )
    return rule


# --------------------------------------------------------------------------- scaling lemma
def rescale_horizon(
    model: nn.Module,
    T_new: float,
    *,
    strict: bool = True,
    x: torch.Tensor | None = None,
    rtol: float = 1e-6,
) -> nn.Module:
    """The scaling lemma: the model on [0, T_new], time grid stretched by T_new / T and
    controls multiplied by T / T_new (v(s) = (T / T_new) u(s T / T_new)). For a homogeneous
    field the outputs are unchanged and int_0^{T_new} |v|^2 = (T / T_new) int_0^T |u|^2.

    ``strict``: raise ValueError for a non-homogeneous model (the outputs would differ).
    ``x`` ``[B, in]``: also check that the outputs agree to ``rtol`` (relative, max norm).
    Returns a new model; the original is not changed.
    """
    if not (isinstance(model, nn.Module) and hasattr(model, "rescale_horizon")):
        raise ValueError(f"model: expected a NeuralODE or SpaceTimeNet, got {type(model).__name__}")
    try:
        T_new = float(T_new)
    except (TypeError, ValueError):
        raise ValueError(f"T_new: expected a positive finite number, got {T_new!r}") from None
    if not (math.isfinite(T_new) and T_new > 0):
        raise ValueError(f"T_new: expected a positive finite horizon, got {T_new}")
    if strict and not is_homogeneous(model):
        raise ValueError(
            f"model: the scaling lemma needs a homogeneous field; form={model.form!r} with "
            f"activation={model.activation_name!r} is not (pass strict=False to rescale anyway)"
        )
    src = model
    T = float(model.T)
    kerns = _kernels(model)
    if any(abs(k.T - T) > 1e-12 * T for k in kerns):
        if any(k.continuous and abs(k.T - T) > 1e-12 * T for k in kerns):
            raise ValueError(
                f"model: a continuous kernel spans [0, {kerns[0].T:g}] but the model's horizon "
                f"is T={T:g}; the scaling lemma needs the kernel's time variable to span [0, T]"
            )
        # a nodal kernel's T only enters through rescaling: align it with the model's horizon
        src = copy.deepcopy(model)
        for k in _kernels(src):
            k.T = T
    new = src.rescale_horizon(T_new)
    if x is not None:
        with torch.no_grad():
            a, b = model(x), new(x)
        err = float((a - b).abs().max()) / max(float(a.abs().max()), 1e-300)
        if not err <= rtol:
            raise ValueError(
                f"rescale_horizon: outputs differ by {err:.3g} (relative) after rescaling "
                f"T={model.T:g} -> {T_new:g}; expected <= {rtol:g}"
            )
    return new


# --------------------------------------------------------------------------- training
def control_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The trainable tensors of the controls (w, b): the parameters of the kernel(s) only."""
    return [p for k in _kernels(model) for p in k.parameters()]


def _as_xy(data: Any, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) from a DatasetSplits (its train split), a Split, or an (x, y) pair."""
    if hasattr(data, "train") and hasattr(data.train, "x"):
        data = data.train
    if hasattr(data, "x") and hasattr(data, "y"):
        x, y = data.x, data.y
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    else:
        raise ValueError(
            f"data: expected a DatasetSplits, a Split or an (x, y) pair, got {type(data).__name__}"
        )
    x = torch.as_tensor(x).to(dtype)
    y = torch.as_tensor(y)
    if y.is_floating_point():
        y = y.to(dtype)
    if x.dim() != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"data: x must be [N, d] with one target per row, got {tuple(x.shape)}")
    return x, y


@dataclass
class TrainInfo:
    """Statistics of one training run: final objective, gradient norm (w.r.t. the trained
    tensors), iterations, objective evaluations, wall time (s) and why it stopped."""

    objective: float
    grad_norm: float
    steps: int
    evals: int
    wall_time: float
    stop_reason: str
    history: list[float] = field(default_factory=list)


def train_objective(
    params: Sequence[nn.Parameter],
    objective: Callable[[], torch.Tensor],
    *,
    optimizer: str = "lbfgs",
    max_iter: int = 2000,
    tol: float = 1e-9,
    window: int = 20,
    lr: float = 1e-2,
    history_size: int = 30,
) -> TrainInfo:
    """Minimise ``objective()`` over ``params`` (full batch), in place.

    ``lbfgs``: scipy's L-BFGS-B on the flattened parameters in float64 with the exact gradient;
    ``adam``: torch.optim.Adam with learning rate ``lr``. Stopping rule, checked after every
    iteration: |grad J| < tol (``grad_norm``), or a relative decrease
    (J_{i-window} - J_i) / |J_i| < tol over the last ``window`` iterations (``rel_decrease``),
    or ``max_iter`` iterations; L-BFGS also stops when the line search fails (``line_search``)
    or an iteration does not lower J at all (``no_decrease``).
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer: expected one of {', '.join(OPTIMIZERS)}; got {optimizer!r}")
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("params: nothing to train")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 0:
        raise ValueError(f"max_iter: expected an int >= 0, got {max_iter!r}")
    if not (tol >= 0):
        raise ValueError(f"tol: expected tol >= 0, got {tol!r}")
    history: list[float] = []
    evals = 0
    t0 = time.perf_counter()

    def value_and_grad() -> tuple[float, torch.Tensor]:
        nonlocal evals
        evals += 1
        for p in params:
            p.grad = None
        J = objective()
        grads = torch.autograd.grad(J, params, allow_unused=True)
        flat = torch.cat(
            [
                (g if g is not None else torch.zeros_like(p)).reshape(-1)
                for g, p in zip(grads, params)
            ]
        )
        return float(J.detach()), flat.detach()

    def window_done() -> bool:
        if len(history) <= window:
            return False
        old, new = history[-1 - window], history[-1]
        return (old - new) <= tol * max(abs(new), 1e-300)

    reason = "max_iter"
    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr)
        steps = 0
        for steps in range(max_iter + 1):
            J, g = value_and_grad()
            history.append(J)
            gn = float(g.norm())
            if not math.isfinite(J):
                reason = "non-finite"
                break
            if gn < tol:
                reason = "grad_norm"
                break
            if window_done():
                reason = "rel_decrease"
                break
            if steps == max_iter:
                break
            offset = 0
            for p in params:
                n = p.numel()
                p.grad = g[offset : offset + n].view_as(p).to(p.dtype)
                offset += n
            opt.step()
        J, g = value_and_grad()
        return TrainInfo(
            J, float(g.norm()), steps, evals, time.perf_counter() - t0, reason, history
        )

    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]

    def set_flat(z: np.ndarray) -> None:
        zt = torch.from_numpy(z)
        offset = 0
        with torch.no_grad():
            for p, n, s in zip(params, sizes, shapes):
                p.copy_(zt[offset : offset + n].view(s).to(p.dtype))
                offset += n

    last: dict[str, Any] = {"z": None, "gn": math.inf}

    def fun(z: np.ndarray) -> tuple[float, np.ndarray]:
        set_flat(z)
        J, g = value_and_grad()
        last["z"], last["gn"] = z.copy(), float(g.norm())
        if not math.isfinite(J):
            return float("inf"), np.zeros_like(z)
        return J, g.double().numpy()

    z0 = torch.cat([p.detach().reshape(-1).double() for p in params]).numpy().copy()
    J0, g0 = value_and_grad()
    history.append(J0)
    state = {"reason": "max_iter", "steps": 0}
    if float(g0.norm()) < tol:
        state["reason"] = "grad_norm"
    elif max_iter > 0:

        def callback(intermediate_result) -> None:
            state["steps"] += 1
            J = float(intermediate_result.fun)
            history.append(J)
            z = intermediate_result.x
            if last["z"] is not None and np.array_equal(z, last["z"]):
                gn = last["gn"]
            else:
                set_flat(z)
                gn = float(value_and_grad()[1].norm())
            if gn < tol:
                state["reason"] = "grad_norm"
                raise StopIteration
            if window_done():
                state["reason"] = "rel_decrease"
                raise StopIteration

        with _blas_single_thread():
            res = minimize(
                fun,
                z0,
                jac=True,
                method="L-BFGS-B",
                callback=callback,
                options={
                    "maxiter": max_iter,
                    "maxfun": 20 * max_iter + 20,
                    "maxcor": history_size,
                    "ftol": 0.0,
                    "gtol": 0.0,
                    "maxls": 40,
                },
            )
        if state["reason"] == "max_iter" and res.status not in (1,):
            msg = str(res.message).lower()
            if "lnsrch" in msg or "abnormal" in msg:
                state["reason"] = "line_search"  # no step satisfies the Wolfe conditions
            elif "relative reduction" in msg:
                state["reason"] = "no_decrease"  # an iteration that did not lower J at all
            elif "projected gradient" in msg:
                state["reason"] = "grad_norm"
            else:  # the limit on evaluations
                state["reason"] = "max_iter"
        set_flat(res.x)
    J, g = value_and_grad()
    return TrainInfo(
        J,
        float(g.norm()),
        state["steps"],
        evals,
        time.perf_counter() - t0,
        state["reason"],
        history,
    )


def _blas_single_thread():
    """One BLAS thread inside scipy's L-BFGS-B: its small dense products gain nothing from
    threads, and idle BLAS threads spinning beside torch slow every evaluation down."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _freeze_all_but_controls(model: nn.Module, train: str) -> list[nn.Parameter]:
    if train not in ("controls", "all"):
        raise ValueError(f"train: expected 'controls' or 'all', got {train!r}")
    ctrl = {id(p) for p in control_parameters(model)}
    out = []
    for p in model.parameters():
        on = train == "all" or id(p) in ctrl
        p.requires_grad_(on)
        if on:
            out.append(p)
    return out


def _erm_objective(model, x, y, lam, loss, p=None) -> Callable[[], torch.Tensor]:
    def J() -> torch.Tensor:
        return objectives.empirical_risk(model(x), y, loss, p) + lam * objectives.l2_control(model)

    return J


def _trapezoid_weights(times: Sequence[float], ref: torch.Tensor) -> torch.Tensor:
    """w_k with sum_k w_k v_k = the trapezoid rule on ``times`` ([K + 1])."""
    t = torch.tensor(list(times), dtype=ref.dtype, device=ref.device)
    w = torch.zeros_like(t)
    dt = t[1:] - t[:-1]
    w[:-1] += 0.5 * dt
    w[1:] += 0.5 * dt
    return w


def _tp_objective(model, x, y, lam, loss, p=None) -> Callable[[], torch.Tensor]:
    """E(x(T)) + int_0^T E(x(t)) dt (trapezoid) + lam int_0^T |u|^2, the risks of all K + 1
    states evaluated in one batch."""

    def J() -> torch.Tensor:
        traj = model.trajectory(x)
        if hasattr(model, "dim"):  # NeuralODE: one readout for every time
            outs = model.readout(torch.stack(traj.states))
        else:
            outs = torch.stack(model.readout_along(traj.states))
        n_t, B, m = outs.shape
        yy = y.repeat(n_t) if y.dim() == 1 else y.repeat(n_t, 1)
        risks = objectives.loss_per_sample(outs.reshape(n_t * B, m), yy, loss, p)
        risks = risks.reshape(n_t, B).mean(1)
        w = _trapezoid_weights(traj.times, risks)
        return risks[-1] + (w * risks).sum() + lam * objectives.l2_control(model)

    return J


# --------------------------------------------------------------------------- horizon sweep
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


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _write_csv(path: str | os.PathLike, rows: list[dict], columns: Sequence[str]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: (repr(r[c]) if isinstance(r[c], float) else r[c]) for c in columns})


def _table(rows: list[dict], columns: Sequence[str]) -> str:
    cells = [[_fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


@dataclass
class SweepResult:
    """One ERM run per horizon T at a fixed lam.

    ``rows``: one dict per T with the columns of :data:`SWEEP_COLUMNS` (``error`` = E(x_T(T)) of
    the trained model, ``T_l2_control`` = T int_0^T |u_T|^2, ``v_norm2`` = int_0^1 |v_T|^2 of
    the rescaled controls v_T(s) = T u_T(T s)). ``slope``/``intercept``: least-squares fit
    log(error) = slope * log(T) + intercept over the rows with error above ``floor``.
    ``models``: the trained models (not written to CSV).
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
        return [r["T"] for r in self.rows]

    @property
    def errors(self) -> list[float]:
        return [r["error"] for r in self.rows]

    @property
    def T_l2_ratio(self) -> float:
        """max / min of T * int_0^T |u_T|^2 over the sweep (bounded by the theory)."""
        v = [r["T_l2_control"] for r in self.rows]
        return max(v) / max(min(v), 1e-300)

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write the table (one row per T) to ``path``."""
        _write_csv(path, self.rows, SWEEP_COLUMNS)

    def summary(self) -> str:
        """The table, the fitted slope of log(error) against log(T) and max/min of T * l2."""
        cols = [c for c in SWEEP_COLUMNS if c not in ("evals",)]
        head = f"ERM horizon sweep: lam={self.lam:g}, loss={self.loss}"
        tail = (
            f"slope of log(error) vs log(T): {self.slope:.3f}; "
            f"max/min of T*l2_control: {self.T_l2_ratio:.3f}"
        )
        return "\n".join([head, _table(self.rows, cols), tail])


def _fit_loglog(Ts: Sequence[float], errs: Sequence[float], floor: float) -> tuple[float, float]:
    pts = [(math.log(T), math.log(e)) for T, e in zip(Ts, errs) if e > floor]
    if len(pts) < 2:
        return float("nan"), float("nan")
    a, b = np.polyfit([p[0] for p in pts], [p[1] for p in pts], 1)
    return float(a), float(b)


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

    ``make_model(T)`` builds the model on [0, T] (e.g. ``rescale_horizon(base, T)`` so every T
    starts from the same network function). ``data``: a DatasetSplits (train split), a Split
    or (x [N, d], y). ``train='controls'`` trains the kernels only (the readout and lift stay
    fixed, as in the theory); ``'all'`` trains everything. ``warm_start``: start each T > T_0
    from the previous trained model rescaled to T (a continuation in lam / T). Computation is
    in ``dtype``; ``seed`` seeds torch for the run. Returns a :class:`SweepResult`.
    """
    Ts = [float(T) for T in Ts]
    if not Ts or any(not (math.isfinite(T) and T > 0) for T in Ts):
        raise ValueError(f"Ts: expected positive finite horizons, got {Ts!r}")
    if any(b <= a for a, b in zip(Ts, Ts[1:])):
        raise ValueError(f"Ts: expected increasing horizons, got {Ts!r}")
    lam = float(lam)
    if not (math.isfinite(lam) and lam >= 0):
        raise ValueError(f"lam: expected a finite lam >= 0, got {lam!r}")
    x, y = _as_xy(data, dtype)
    torch.manual_seed(seed)
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
        params = _freeze_all_but_controls(model, train)
        info = train_objective(
            params,
            _erm_objective(model, x, y, lam, loss, p),
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
            print(_table([row], SWEEP_COLUMNS).splitlines()[-1], flush=True)
    slope, icpt = _fit_loglog(Ts, [r["error"] for r in rows], floor)
    return SweepResult(rows, slope, icpt, lam, loss, floor, models)


# --------------------------------------------------------------------------- scaling check
def fold_output_scale(model: nn.Module) -> nn.Module:
    """In place: multiply each kernel's parameters by its ``output_scale`` and reset the scale
    to 1, so the trainable tensors are the controls themselves (the network is unchanged).
    Supports kernels linear in their parameters (nodal, basis) and neural kernels (the scale
    goes into their output layers)."""
    from .kernels import BasisKernel, NeuralKernel, NodalKernel

    with torch.no_grad():
        for k in _kernels(model):
            s = k.output_scale
            if s == 1.0:
                continue
            if isinstance(k, (NodalKernel, BasisKernel)):
                for p in k.parameters():
                    p.mul_(s)
            elif isinstance(k, NeuralKernel):
                for net in (k.net, k.bias_net):
                    if net is not None:
                        net[-1].weight.mul_(s)
                        net[-1].bias.mul_(s)
            else:
                raise ValueError(
                    f"model: cannot fold the output scale of a {type(k).__name__} into its "
                    "parameters"
                )
            k.output_scale = 1.0
    return model


@dataclass
class ScalingCheck:
    """Training at (T, lam) vs at (1, lam / T) from matching initialisations.

    ``objective_T`` = J_{T,lam}(u_T), ``objective_1`` = J_{1,lam/T}(v); ``rel_objective`` their
    relative difference; ``rel_outputs`` max |P x_T - P x_1| / max |P x_T|; ``rel_controls``
    the relative difference of int_0^1 |v|^2 between rescale_horizon(model_T, 1) and model_1.
    ``lemma_objective``: |J_{1,lam/T}(v_T) - J_{T,lam}(u_T)| / J_{T,lam}(u_T) for the trained
    u_T and its image v_T = T u_T(T .), and ``lemma_grad``: |T grad_v J_1 - grad_u J_T| /
    |grad_u J_T| there (the lemma on the trained point, whatever minimum each run found).
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
    (:func:`fold_output_scale`), so the optimiser sees the controls u on [0, T] and v = T u on
    [0, 1] themselves: two parametrisations of one problem, and two different L-BFGS paths.
    """
    x, y = _as_xy(data, dtype)
    mT = fold_output_scale(copy.deepcopy(model_T).to(dtype))
    T = mT.T
    m1 = fold_output_scale(rescale_horizon(mT, 1.0))
    infos = []
    for m, lam_m in ((mT, lam), (m1, lam / T)):
        params = _freeze_all_but_controls(m, "controls")
        infos.append(
            train_objective(
                params,
                _erm_objective(m, x, y, lam_m, loss, p),
                max_iter=max_iter,
                tol=tol,
                window=window,
            )
        )
    image = fold_output_scale(rescale_horizon(mT, 1.0))
    grads = []
    for m, lam_m in ((mT, lam), (image, lam / T)):
        params = _freeze_all_but_controls(m, "controls")
        J = _erm_objective(m, x, y, lam_m, loss, p)()
        g = torch.autograd.grad(J, params)
        grads.append((float(J.detach()), torch.cat([v.reshape(-1) for v in g])))
    (JuT, guT), (JvT, gvT) = grads
    lemma_objective = abs(JvT - JuT) / max(abs(JuT), 1e-300)
    lemma_grad = float((T * gvT - guT).norm()) / max(float(guT.norm()), 1e-300)
    with torch.no_grad():
        JT = float(_erm_objective(mT, x, y, lam, loss, p)())
        J1 = float(_erm_objective(m1, x, y, lam / T, loss, p)())
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


# --------------------------------------------------------------------------- turnpike
def fit_exponential_rate(
    t: Sequence[float] | np.ndarray,
    values: Sequence[float] | np.ndarray,
    window: tuple[float, float],
    floor: float,
) -> tuple[float, float, int]:
    """Least squares of log(value) = log(C) - mu t over the points with t in ``window`` and
    value > ``floor``. Returns (mu, C, number of points used); (nan, nan, n) if n < 2."""
    t = np.asarray(t, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    keep = (t >= window[0] - 1e-12) & (t <= window[1] + 1e-12) & (v > floor) & np.isfinite(v)
    n = int(keep.sum())
    if n < 2:
        return float("nan"), float("nan"), n
    a, b = np.polyfit(t[keep], np.log(v[keep]), 1)
    return float(-a), float(math.exp(b)), n


@dataclass
class TurnpikeProfile:
    """E(x(t_k)) and |u(t_k)| along a trained trajectory.

    ``times`` ``[K+1]``, ``risk`` ``[K+1]`` = E(x(t_k)); ``control`` ``[K]`` = |u_k| on
    [t_k, t_{k+1}) (sqrt of ``objectives.control_norms``).

    The reported rate is ``mu_common`` (``mu_u_common`` for |u(t)|): the fit of
    E(x(t)) ~ C exp(-mu t) on ``common_window``, one arc shared by every horizon of a run (set
    by :func:`train_turnpike`: [0.2, 0.8] x the shortest horizon), so rates of different T are
    fitted on the same times. ``mu``, ``C`` (``mu_u``, ``C_u``) are the fits on this profile's
    own middle arc ``window`` (values above ``floor``): a diagnostic only, since on a long
    horizon that arc lies where the risk already sits on its floor set by lam, and its slope
    shrinks with T although the decay does not. ``t_hit``: the first t_k with
    E(x(t_k)) <= ``threshold`` (None if never).
    """

    T: float
    times: np.ndarray
    risk: np.ndarray
    control: np.ndarray
    mu: float
    C: float
    mu_u: float
    C_u: float
    t_hit: float | None
    threshold: float
    window: tuple[float, float]
    n_fit: int
    floor: float
    mu_common: float = float("nan")
    mu_u_common: float = float("nan")
    common_window: tuple[float, float] | None = None
    floor_u: float | None = None

    @property
    def final_error(self) -> float:
        return float(self.risk[-1])

    def fit_common(self, window: tuple[float, float]) -> None:
        """Set ``mu_common`` and ``mu_u_common``: the rates of E(x(t)) and |u(t)| fitted on
        the arc ``window`` = (t_a, t_b) (values above the floor)."""
        f_u = self.floor_u
        if f_u is None:
            f_u = 100 * np.finfo(np.float64).eps * max(float(self.control.max(initial=0.0)), 1.0)
        self.common_window = (float(window[0]), float(window[1]))
        self.mu_common = fit_exponential_rate(self.times, self.risk, window, self.floor)[0]
        self.mu_u_common = fit_exponential_rate(self.times[:-1], self.control, window, f_u)[0]

    def row(self) -> dict:
        """The table row: reported rates on the common arc first, the own-arc fits last."""
        return {
            "T": self.T,
            "mu_common": self.mu_common,
            "mu_u_common": self.mu_u_common,
            "common_arc": _arc(self.common_window),
            "t_hit": self.t_hit if self.t_hit is not None else float("nan"),
            "t_hit_over_T": (self.t_hit / self.T) if self.t_hit is not None else float("nan"),
            "final_error": self.final_error,
            "mu_own_arc": self.mu,
            "mu_u_own_arc": self.mu_u,
            "own_arc": _arc(self.window),
            "C": self.C,
            "C_u": self.C_u,
            "n_fit": self.n_fit,
        }


def _arc(window: tuple[float, float] | None) -> str:
    """``"[a, b]"`` for a fit window (empty when there is none)."""
    return "" if window is None else f"[{window[0]:.4g}, {window[1]:.4g}]"


def turnpike_profile(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: str = "l2",
    threshold: float = 1e-2,
    *,
    p: float | None = None,
    window: tuple[float, float] = (0.2, 0.8),
    floor: float | None = None,
) -> TurnpikeProfile:
    """The risk profile t_k -> E(x(t_k)) (``objectives.risk_profile``), the control sizes
    |u(t_k)| = sqrt(control_norms[k]), exponential rates fitted on t in [window[0] T,
    window[1] T] and the first time E drops below ``threshold``.

    ``floor``: values at or below it are left out of the fits (default: 100 * machine epsilon
    of the model's dtype times max(E(x(0)), 1) for E, times max |u| for |u|).
    """
    with torch.no_grad():
        traj = model.trajectory(x)
        risk = objectives.risk_profile(model, x, y, loss, p, trajectory=traj)
        norms = objectives.control_norms(model)
    risk_np = risk.double().cpu().numpy()
    ctrl = np.sqrt(np.array([float(n) for n in norms], dtype=np.float64))
    times = np.asarray(traj.times, dtype=np.float64)
    T = float(times[-1])
    eps = float(torch.finfo(risk.dtype).eps)
    f_E = floor if floor is not None else 100 * eps * max(float(risk_np[0]), 1.0)
    f_u = floor if floor is not None else 100 * eps * max(float(ctrl.max(initial=0.0)), 1.0)
    win = (window[0] * T, window[1] * T)
    mu, C, n = fit_exponential_rate(times, risk_np, win, f_E)
    mu_u, C_u, _ = fit_exponential_rate(times[:-1], ctrl, win, f_u)
    below = np.flatnonzero(risk_np <= threshold)
    t_hit = float(times[below[0]]) if below.size else None
    return TurnpikeProfile(
        T=T,
        times=times,
        risk=risk_np,
        control=ctrl,
        mu=mu,
        C=C,
        mu_u=mu_u,
        C_u=C_u,
        t_hit=t_hit,
        threshold=threshold,
        window=win,
        n_fit=n,
        floor=f_E,
        floor_u=f_u,
    )


#: columns of the turnpike table: the rates fitted on the common arc (``common_arc``) first;
#: ``mu_own_arc``, ``mu_u_own_arc`` (fits on each T's own middle arc ``own_arc``), ``C``,
#: ``C_u`` and ``n_fit`` are diagnostics
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


@dataclass
class TurnpikeResult:
    """Per horizon T: the turnpike-trained profile (``tp``) and the ERM-trained one (``erm``,
    the same model and lam without the integral term), with training statistics.
    ``common_window``: the arc (t_a, t_b) on which the reported rates of every T are fitted."""

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
        ``mu_u``; near 1 when the rate does not depend on T."""
        mus = [getattr(pr, which) for pr in (self.tp if problem == "tp" else self.erm)]
        if any(not (m > 0) for m in mus):
            return float("nan")
        return max(mus) / min(mus)

    def t_hit_spread(self, problem: str = "tp") -> float:
        """(max - min) / min of the times to reach the threshold (nan if one never does)."""
        th = [pr.t_hit for pr in (self.tp if problem == "tp" else self.erm)]
        if any(t is None for t in th) or min(th) <= 0:
            return float("nan")
        return (max(th) - min(th)) / min(th)

    def to_csv(self, path: str | os.PathLike) -> None:
        """One row per (problem, T): fitted rates, hitting time, training statistics."""
        _write_csv(path, self.rows, TURNPIKE_COLUMNS)

    def profiles_to_csv(self, path: str | os.PathLike) -> None:
        """Long format: problem, T, k, t_k, E(x(t_k)), |u(t_k)| (empty at k = K)."""
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
        skip = ("C", "C_u", "n_fit", "objective", "mu_u_own_arc", "own_arc", "common_arc")
        cols = [c for c in TURNPIKE_COLUMNS if c not in skip]
        head = f"Turnpike vs ERM: lam={self.lam:g}, loss={self.loss}, threshold={self.threshold:g}"
        tail = (
            f"turnpike: mu fitted on the common arc t in {_arc(self.common_window)} for every T: "
            + ", ".join(f"T={pr.T:g}: {pr.mu_common:.3g}" for pr in self.tp)
            + f" (max/min {self.mu_ratio('tp'):.3f}; own-arc fits, a diagnostic: max/min "
            f"{self.mu_ratio('tp', 'mu'):.3f}); spread of t_hit = "
            f"{self.t_hit_spread('tp'):.3f}; ERM: t_hit = "
            + ", ".join(f"{pr.t_hit:.3g}" if pr.t_hit is not None else "never" for pr in self.erm)
        )
        return "\n".join([head, _table(self.rows, cols), tail])


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
    model on E(x(T)) + lam int_0^T |u|^2 dt; return the :func:`turnpike_profile` of each.
    ``loss``: an l^p-distance loss (``l1``, ``l2``, ``lp`` with ``p``) or ``mse``.
    """
    Ts = [float(T) for T in Ts]
    if not Ts or any(not (math.isfinite(T) and T > 0) for T in Ts):
        raise ValueError(f"Ts: expected positive finite horizons, got {Ts!r}")
    if any(b <= a for a, b in zip(Ts, Ts[1:])):
        raise ValueError(f"Ts: expected increasing horizons, got {Ts!r}")
    x, y = _as_xy(data, dtype)
    torch.manual_seed(seed)
    tp, er, rows = [], [], []
    models: dict = {"tp": [], "erm": []}
    problems = [("tp", _tp_objective)] + ([("erm", _erm_objective)] if erm else [])
    for T in Ts:
        init = make_model(T).to(dtype)
        if abs(init.T - T) > 1e-9 * T:
            raise ValueError(f"make_model: asked for T={T:g}, got a model on [0, {init.T:g}]")
        for name, make_obj in problems:
            model = copy.deepcopy(init)
            params = _freeze_all_but_controls(model, train)
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
            (tp if name == "tp" else er).append(prof)
            models[name].append(model)
            if verbose:
                print(_table([row], TURNPIKE_COLUMNS).splitlines()[-1], flush=True)
    # the same arc for every T: [0.2, 0.8] x the shortest horizon (C, mu independent of T)
    common = (fit_window[0] * Ts[0], fit_window[1] * Ts[0])
    by_problem = {"tp": iter(tp), "erm": iter(er)}
    for row in rows:
        prof = next(by_problem[row["problem"]])
        prof.fit_common(common)
        row.update(prof.row())
    return TurnpikeResult(Ts, float(lam), loss, threshold, tp, er, rows, models, common)
