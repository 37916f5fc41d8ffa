"""The full-batch optimiser of the large-time experiments, and their objectives.

[`train_objective`][spacetime_nets.fullbatch.train_objective] minimises a closure J() over a
list of tensors, in place: scipy's L-BFGS-B in float64 with the exact gradient, or torch's
Adam, with one stopping rule (gradient norm, relative decrease over a window, iteration limit)
and a [`TrainInfo`][spacetime_nets.fullbatch.TrainInfo] that says why it stopped. The closures
are the problems of docs/concepts.md (large-time behaviour):

ERM:       J_{T,lam}(u) = E(x(T)) + lam * int_0^T |u(t)|^2 dt        (``erm_objective``)
Turnpike:  J_T(u) = E(x(T)) + int_0^T E(x(t)) dt + lam * int_0^T |u|^2  (``turnpike_objective``)

Only the controls are trained by default
([`freeze_all_but_controls`][spacetime_nets.fullbatch.freeze_all_but_controls]), as in the
theory.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize
from torch import nn

from . import objectives
from .theory import control_parameters

__all__ = [
    "FULLBATCH_OPTIMIZERS",
    "STOP_REASONS",
    "TrainInfo",
    "train_objective",
    "as_xy",
    "freeze_all_but_controls",
    "erm_objective",
    "turnpike_objective",
    "seeded",
]

FULLBATCH_OPTIMIZERS = ("lbfgs", "adam")
"""The optimizers `train_objective` accepts (`optimizer=`)."""
STOP_REASONS = ("grad_norm", "rel_decrease", "max_iter", "line_search", "no_decrease", "non-finite")
"""Why a full-batch run stopped (`TrainInfo.stop_reason`); `line_search` and `no_decrease`
are L-BFGS's only."""


def as_xy(data: Any, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The full batch of a data set.

    Args:
        data: a DatasetSplits (its train split is used), a Split, or an (x, y) pair.
        dtype: the floating type of x (and of floating targets).

    Returns:
        (x ``[N, d]``, y ``[N]`` class labels or ``[N, m]`` targets).

    Raises:
        ValueError: for other data, or x not ``[N, d]`` with one target per row.
    """
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
    tensors), iterations, objective evaluations, wall time (s) and why it stopped.

    Attributes:
        objective: the final value of J.
        grad_norm: |grad J| at the final point, over the trained tensors.
        steps: the iterations taken.
        evals: the evaluations of the objective (with its gradient).
        wall_time: the seconds the run took.
        stop_reason: why it stopped, one of ``STOP_REASONS``.
        history: J after each iteration.
    """

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
    or an iteration does not lower J at all (``no_decrease``); Adam when J is not finite
    (``non-finite``).

    Args:
        params: the tensors to train (those without ``requires_grad`` are left out).
        objective: a closure returning the scalar J for the current values of ``params``.
        optimizer: one of ``FULLBATCH_OPTIMIZERS``.
        max_iter: the largest number of iterations (>= 0).
        tol: the tolerance of the gradient-norm and relative-decrease tests.
        window: iterations spanned by the relative-decrease test.
        lr: the learning rate of Adam.
        history_size: the L-BFGS memory (number of correction pairs).

    Returns:
        A [`TrainInfo`][spacetime_nets.fullbatch.TrainInfo]; ``params`` hold the final point.
    """
    run_optimizer = _OPTIMIZERS.get(optimizer) if isinstance(optimizer, str) else None
    if run_optimizer is None:
        raise ValueError(
            f"optimizer: expected one of {', '.join(FULLBATCH_OPTIMIZERS)}; got {optimizer!r}"
        )
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("params: nothing to train")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 0:
        raise ValueError(f"max_iter: expected an int >= 0, got {max_iter!r}")
    if not (tol >= 0):
        raise ValueError(f"tol: expected tol >= 0, got {tol!r}")
    t0 = time.perf_counter()
    run = _Run(params, objective, tol, window)
    steps, reason = run_optimizer(run, max_iter, lr, history_size)
    J, g = run.value_and_grad()
    return TrainInfo(
        J,
        float(g.norm()),
        steps,
        run.evals,
        time.perf_counter() - t0,
        reason,
        run.history,
    )


@dataclass
class _Run:
    """One run of ``train_objective``: the objective over the trained tensors, its evaluations
    counted, J after every iteration, and the relative-decrease test.

    Attributes:
        params: the trained tensors.
        objective: the closure J.
        tol: the tolerance of the stopping tests.
        window: iterations spanned by the relative-decrease test.
        history: J after each iteration.
        evals: the evaluations of J so far.
    """

    params: list[nn.Parameter]
    objective: Callable[[], torch.Tensor]
    tol: float
    window: int
    history: list[float] = field(default_factory=list)
    evals: int = 0

    def value_and_grad(self) -> tuple[float, torch.Tensor]:
        """J and its gradient w.r.t. the trained tensors, flattened (zeros where unused)."""
        self.evals += 1
        for p in self.params:
            p.grad = None
        J = self.objective()
        grads = torch.autograd.grad(J, self.params, allow_unused=True)
        flat = torch.cat(
            [
                (g if g is not None else torch.zeros_like(p)).reshape(-1)
                for g, p in zip(grads, self.params)
            ]
        )
        return float(J.detach()), flat.detach()

    def window_done(self) -> bool:
        """Whether J fell by at most ``tol`` relative over the last ``window`` iterations."""
        history, window = self.history, self.window
        if len(history) <= window:
            return False
        old, new = history[-1 - window], history[-1]
        return (old - new) <= self.tol * max(abs(new), 1e-300)


def _adam(run: _Run, max_iter: int, lr: float, history_size: int) -> tuple[int, str]:
    """torch's Adam with learning rate ``lr`` (``history_size`` unused); returns (iterations,
    stop reason)."""
    params, tol = run.params, run.tol
    opt = torch.optim.Adam(params, lr=lr)
    steps = 0
    for steps in range(max_iter + 1):
        J, g = run.value_and_grad()
        run.history.append(J)
        gn = float(g.norm())
        if not math.isfinite(J):
            return steps, "non-finite"
        if gn < tol:
            return steps, "grad_norm"
        if run.window_done():
            return steps, "rel_decrease"
        if steps == max_iter:
            break
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = g[offset : offset + n].view_as(p).to(p.dtype)
            offset += n
        opt.step()
    return steps, "max_iter"


def _lbfgs(run: _Run, max_iter: int, lr: float, history_size: int) -> tuple[int, str]:
    """scipy's L-BFGS-B on the flattened tensors in float64 with ``history_size`` correction
    pairs (``lr`` unused); returns (iterations, stop reason)."""
    params, tol, history = run.params, run.tol, run.history
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
        J, g = run.value_and_grad()
        last["z"], last["gn"] = z.copy(), float(g.norm())
        if not math.isfinite(J):
            return float("inf"), np.zeros_like(z)
        return J, g.double().numpy()

    z0 = torch.cat([p.detach().reshape(-1).double() for p in params]).numpy().copy()
    J0, g0 = run.value_and_grad()
    history.append(J0)
    state: dict[str, Any] = {"reason": None, "steps": 0}  # reason: why the callback stopped
    if float(g0.norm()) < tol:
        return 0, "grad_norm"
    if max_iter == 0:
        return 0, "max_iter"

    def callback(intermediate_result) -> None:
        state["steps"] += 1
        J = float(intermediate_result.fun)
        history.append(J)
        z = intermediate_result.x
        if last["z"] is not None and np.array_equal(z, last["z"]):
            gn = last["gn"]
        else:
            set_flat(z)
            gn = float(run.value_and_grad()[1].norm())
        if gn < tol:
            state["reason"] = "grad_norm"
            raise StopIteration
        if run.window_done():
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
    set_flat(res.x)
    return state["steps"], state["reason"] or _scipy_stop_reason(res)


def _scipy_stop_reason(res: Any) -> str:
    """Why scipy's L-BFGS-B stopped by itself, from its status and message."""
    if res.status == 1:  # the iteration limit
        return "max_iter"
    msg = str(res.message).lower()
    if "lnsrch" in msg or "abnormal" in msg:
        return "line_search"  # no step satisfies the Wolfe conditions
    if "relative reduction" in msg:
        return "no_decrease"  # an iteration that did not lower J at all
    if "projected gradient" in msg:
        return "grad_norm"
    return "max_iter"  # the limit on evaluations


_OPTIMIZERS: dict[str, Callable[[_Run, int, float, int], tuple[int, str]]] = {
    "lbfgs": _lbfgs,
    "adam": _adam,
}
"""How each name of ``FULLBATCH_OPTIMIZERS`` runs: (run, max_iter, lr, history_size) ->
(iterations, stop reason); the point reached is left in the run's tensors."""


@contextlib.contextmanager
def seeded(seed: int):
    """torch's global CPU generator seeded with ``seed`` inside the block and restored after
    it: a driver's draws (and those of the models it builds) are reproducible without
    changing the caller's random state.

    Args:
        seed: the seed of torch's global CPU generator inside the block.

    Yields:
        (None): nothing; the block runs with the seeded generator.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _blas_single_thread():
    """One BLAS thread inside scipy's L-BFGS-B: its small dense products gain nothing from
    threads, and idle BLAS threads spinning beside torch slow every evaluation down."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


_TRAINED: dict[str, Callable[[nn.Module], Iterable[nn.Parameter]]] = {
    "controls": control_parameters,
    "all": nn.Module.parameters,
}
"""The tensors each ``train=`` of ``freeze_all_but_controls`` trains."""


def freeze_all_but_controls(model: nn.Module, train: str = "controls") -> list[nn.Parameter]:
    """Set ``requires_grad`` so that only the controls or every parameter are trained.

    Args:
        model: a ``NeuralODE`` or ``SpaceTimeNet``, changed in place.
        train: ``'controls'`` (the kernels' parameters,
            [`control_parameters`][spacetime_nets.theory.control_parameters]) or ``'all'``.

    Returns:
        The tensors that are trained.
    """
    trained = _TRAINED.get(train) if isinstance(train, str) else None
    if trained is None:
        raise ValueError(f"train: expected 'controls' or 'all', got {train!r}")
    keep = {id(p) for p in trained(model)}
    out = []
    for p in model.parameters():
        on = id(p) in keep
        p.requires_grad_(on)
        if on:
            out.append(p)
    return out


def erm_objective(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    lam: float,
    loss: str,
    p: float | None = None,
) -> Callable[[], torch.Tensor]:
    """The ERM objective J() = E(x(T)) + lam int_0^T |u|^2 dt on the full batch.

    Args:
        model: a ``NeuralODE`` or ``SpaceTimeNet``.
        x: inputs ``[N, d]``.
        y: targets ``[N]`` (class labels) or ``[N, m]``.
        lam: the weight of the control penalty (``objectives.l2_control``).
        loss: a name of ``objectives.LOSSES``.
        p: the exponent of the ``lp`` loss.

    Returns:
        A closure that evaluates J (a scalar tensor with its graph).
    """

    def J() -> torch.Tensor:
        return objectives.empirical_risk(model(x), y, loss, p) + lam * objectives.l2_control(model)

    return J


def turnpike_objective(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    lam: float,
    loss: str,
    p: float | None = None,
) -> Callable[[], torch.Tensor]:
    """The turnpike objective J() = E(x(T)) + int_0^T E(x(t)) dt + lam int_0^T |u|^2 dt on
    the full batch: one trajectory, the risks of all K + 1 states evaluated in one batch, the
    time integral by ``objectives.trapezoid_in_time`` on the model's time grid.

    Args:
        model: a ``NeuralODE`` or ``SpaceTimeNet``.
        x: inputs ``[N, d]``.
        y: targets ``[N]`` (class labels) or ``[N, m]``.
        lam: the weight of the control penalty.
        loss: a name of ``objectives.LOSSES``.
        p: the exponent of the ``lp`` loss.

    Returns:
        A closure that evaluates J (a scalar tensor with its graph).
    """

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
        integral = objectives.trapezoid_in_time(risks, traj.times)
        return risks[-1] + integral + lam * objectives.l2_control(model)

    return J


# the names these functions had inside spacetime_nets.theory
_as_xy = as_xy
_freeze_all_but_controls = freeze_all_but_controls
_erm_objective = erm_objective
_tp_objective = turnpike_objective
