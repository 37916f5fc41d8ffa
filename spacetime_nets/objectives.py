"""Objectives of the two learning problems (docs/concepts.md, the large-time theory).

ERM:       J = E(x(T)) + lam * int_0^T |u(t)|^2 dt
Turnpike:  J = E(x(T)) + int_0^T E(x(t)) dt + lam * int_0^T |u(t)|^2 dt

Control costs and time integrals are quadratures on the model's own grids (dt_k weights in t,
the grids' weights in xi), so they do not change when only the resolution changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .integrate import without_autocast

__all__ = [
    "LOSSES",
    "LOSS_REGISTRY",
    "Loss",
    "get_loss",
    "loss_per_sample",
    "relative_error",
    "empirical_risk",
    "l2_control",
    "control_norms",
    "trapezoid_in_time",
    "turnpike_cost",
    "tracking_cost",
    "risk_profile",
]


@dataclass(frozen=True)
class Loss:
    """One entry of ``LOSS_REGISTRY``: a per-sample loss ``[B, ...], [B, ...] -> [B]``.

    Attributes:
        name: the name ``fit`` / ``evaluate`` / the CLI take.
        fn: ``fn(outputs, targets, p) -> [B]`` (targets already one-hot where they were
            labels, except for a loss that ``takes_labels``).
        takes_labels: the targets are class indices ``[B]`` (cross_entropy).
        needs_p: the loss reads the exponent ``p >= 1``.
        relative: divides by the target's norm (targets with norm 0 are refused by the data
            check of ``fit`` and ``evaluate``).
    """

    name: str
    fn: Callable[[torch.Tensor, torch.Tensor, float | None], torch.Tensor]
    takes_labels: bool = False
    needs_p: bool = False
    relative: bool = False


def _distance(order: float | None) -> Callable:
    def fn(z: torch.Tensor, y: torch.Tensor, p: float | None) -> torch.Tensor:
        return torch.linalg.vector_norm(z - y, ord=order if order is not None else p, dim=-1)

    return fn


def _relative(order: float | None) -> Callable:
    def fn(z: torch.Tensor, y: torch.Tensor, p: float | None) -> torch.Tensor:
        return relative_error(z, y, order if order is not None else p)

    return fn


LOSS_REGISTRY: dict[str, Loss] = {
    "mse": Loss("mse", lambda z, y, p: ((z - y) ** 2).mean(-1)),
    "cross_entropy": Loss(
        "cross_entropy",
        lambda z, y, p: F.cross_entropy(z, y, reduction="none"),
        takes_labels=True,
    ),
    "l1": Loss("l1", _distance(1.0)),
    "l2": Loss("l2", _distance(2.0)),
    "lp": Loss("lp", _distance(None), needs_p=True),
    "rel_l2": Loss("rel_l2", _relative(2.0), relative=True),
    "rel_lp": Loss("rel_lp", _relative(None), needs_p=True, relative=True),
}
"""Every loss, by name: `{name: Loss}`. `rel_l2` and `rel_lp` are the relative errors of
operator learning, |z - y|_p / |y|_p over all entries of a sample."""
LOSSES = tuple(LOSS_REGISTRY)
"""The loss names (the keys of `LOSS_REGISTRY`, a tuple taken at import)."""


def get_loss(loss: str, p: float | None = None) -> Loss:
    """The [`Loss`][spacetime_nets.objectives.Loss] named ``loss`` (ValueError for another
    name, or a missing / bad ``p`` where the loss reads one).

    Args:
        loss: one of ``LOSSES``: ``mse``, ``cross_entropy``, ``l1``, ``l2``, ``lp``,
            ``rel_l2``, ``rel_lp``.
        p: the exponent, needed (>= 1, ``inf`` for the max norm) by ``lp`` and ``rel_lp``.

    Returns:
        The registry entry.
    """
    entry = LOSS_REGISTRY.get(loss) if isinstance(loss, str) else None
    if entry is None:
        raise ValueError(f"loss: expected one of {', '.join(LOSSES)}; got {loss!r}")
    if entry.needs_p and (isinstance(p, bool) or not isinstance(p, (int, float)) or not p >= 1):
        raise ValueError(f"p: the {loss} loss needs p >= 1 (inf: the max norm), got {p!r}")
    return entry


def _check_loss(loss: str, p: float | None) -> None:
    get_loss(loss, p)


def relative_error(outputs: torch.Tensor, targets: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """|z_i - y_i|_p / |y_i|_p per sample over all its entries: ``[B, ...], [B, ...] -> [B]``.

    The denominator is clamped at the smallest normal number of the dtype, which only
    changes a target whose norm is zero (or subnormal): such a sample gives a huge or
    infinite value instead of NaN, and ``fit`` / ``evaluate`` refuse such targets before
    they start (see ``training.data.check_data``).

    Args:
        outputs: the predictions z ``[B, ...]``.
        targets: the targets y, of the same shape.
        p: the exponent of the norm (``inf``: the max norm).

    Returns:
        ``[B]``: the relative error of each sample.
    """
    if targets.shape != outputs.shape:
        raise ValueError(
            f"targets: shape {tuple(targets.shape)} does not match outputs {tuple(outputs.shape)}"
        )
    num = torch.linalg.vector_norm((outputs - targets).flatten(1), ord=p, dim=1)
    den = torch.linalg.vector_norm(targets.flatten(1), ord=p, dim=1)
    return num / den.clamp_min(torch.finfo(den.dtype).tiny)


def loss_per_sample(
    outputs: torch.Tensor, targets: torch.Tensor, loss: str = "mse", p: float | None = None
) -> torch.Tensor:
    """loss(P x_i, y_i) for each sample: ``[B, m], [B, m] or [B] -> [B]``.

    mse: |z - y|_2^2 / m; cross_entropy: -log softmax(z)_y (y class indices); l1, l2, lp:
    the distance |z - y|_p (p = 1, 2 or ``p``), which the turnpike results use; rel_l2,
    rel_lp: the relative error |z - y|_p / |y|_p (p = 2 or ``p``, over all entries of a
    sample, [`relative_error`][spacetime_nets.objectives.relative_error]), the loss of
    operator learning. Class labels for the other losses are turned into one-hot targets.

    Args:
        outputs: the predictions z = P x_i ``[B, m]`` (``[B, ...]`` for the distances).
        targets: the targets y ``[B, m]`` (same shape as ``outputs``) or class indices ``[B]``
            (int64 / int32).
        loss: one of ``LOSSES``.
        p: the exponent of ``lp`` and ``rel_lp``.

    Returns:
        ``[B]``: the loss of each sample.
    """
    entry = get_loss(loss, p)
    if entry.takes_labels:
        if targets.dtype not in (torch.long, torch.int32, torch.int64):
            raise ValueError(f"targets: {loss} needs class indices, got {targets.dtype}")
        return entry.fn(outputs, targets, p)
    if targets.dtype in (torch.long, torch.int32, torch.int64):
        targets = F.one_hot(targets.long(), outputs.shape[-1]).to(outputs.dtype)
    if targets.shape != outputs.shape:
        raise ValueError(
            f"targets: shape {tuple(targets.shape)} does not match outputs {tuple(outputs.shape)}"
        )
    return entry.fn(outputs, targets, p)


def empirical_risk(
    outputs: torch.Tensor, targets: torch.Tensor, loss: str = "mse", p: float | None = None
) -> torch.Tensor:
    """E = (1/N) sum_i loss(P x_i, y_i) -> scalar.

    Args:
        outputs: the predictions ``[N, m]``.
        targets: the targets ``[N, m]`` or class indices ``[N]``.
        loss: one of ``LOSSES``.
        p: the exponent of ``lp`` and ``rel_lp``.

    Returns:
        The mean of [`loss_per_sample`][spacetime_nets.objectives.loss_per_sample], a 0-d
            tensor.
    """
    return loss_per_sample(outputs, targets, loss, p).mean()


def control_norms(model: nn.Module) -> list[torch.Tensor]:
    """|u_k|^2 per step: sum over the step's layers of
    |w|^2_{L2(Omega x Omega)} ~ sum_ij omega_out_i omega_in_j (W_ij / omega_in_j)^2 and
    |b|^2_{L2(Omega)} ~ sum_i omega_out_i beta_i^2 (unit weights: the Frobenius norms).
    With channels the sums run over the channel pairs too; factored operators (basis kernels)
    and stationary operators (conv, spectral) compute the same quadrature (see
    [`spacetime_nets.ops`][spacetime_nets.ops]), the pointwise mix A of the stationary ones
    counting |A|^2 |Omega|. Computed in the parameters' precision, also under bf16 autocast.

    Args:
        model: a ``NeuralODE`` or ``SpaceTimeNet``.

    Returns:
        One 0-d tensor |u_k|^2 per step, K in all.
    """
    with without_autocast(model.disc.weights[0].device.type):
        return [_control_norm(sm) for sm in model.controls()]


def _control_norm(sm) -> torch.Tensor:
    total = 0.0
    for op, (w_out, w_in) in zip(sm.layers, sm.grids):
        total = total + op.control_norm_sq(w_out, w_in)
    return total


def l2_control(model: nn.Module) -> torch.Tensor:
    """int_0^T |u(t)|^2 dt = sum_k dt_k |u_k|^2 over the controls (w, b) only, never the
    readout or the lift (piecewise-constant controls: the sum is exact in t).

    Args:
        model: a ``NeuralODE`` or ``SpaceTimeNet``.

    Returns:
        The 0-d tensor, differentiable in the kernels' parameters.
    """
    dts = model.disc.dts
    norms = control_norms(model)
    return sum(dt * n for dt, n in zip(dts, norms))


def trapezoid_in_time(values: Sequence[torch.Tensor], times: Sequence[float]) -> torch.Tensor:
    """int_0^T v(t) dt by the trapezoid rule on the time grid (values[k] at times[k]).

    sum_k (t_{k+1} - t_k) (v_k + v_{k+1}) / 2.

    Args:
        values: v(t_k), one tensor (of any one shape) per time.
        times: t_0 < ... < t_K.

    Returns:
        The integral, of the shape of the values.
    """
    if len(values) != len(times):
        raise ValueError(f"values: need one value per time ({len(times)}), got {len(values)}")
    total = 0.0
    for k in range(len(times) - 1):
        total = total + 0.5 * (times[k + 1] - times[k]) * (values[k] + values[k + 1])
    return total


def turnpike_cost(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: str = "l2",
    p: float | None = None,
    trajectory=None,
) -> torch.Tensor:
    """int_0^T E(x(t)) dt with E(x(t)) = (1/N) sum_i loss(P x_i(t), y_i), trapezoid in t.
    Pass ``trajectory`` (from ``model.trajectory(x)``) to reuse a forward pass.

    Args:
        model: a ``NeuralODE`` or ``SpaceTimeNet``.
        x: the inputs ``[N, d]``.
        y: the targets ``[N, m]`` or class indices ``[N]``.
        loss: one of ``LOSSES``.
        p: the exponent of ``lp`` and ``rel_lp``.
        trajectory (Trajectory | None): the
            [`Trajectory`][spacetime_nets.integrate.Trajectory] of ``model.trajectory(x)``
            to reuse, or None to run the forward pass here.

    Returns:
        The 0-d tensor.
    """
    traj = trajectory if trajectory is not None else model.trajectory(x)
    return trapezoid_in_time(risk_profile(model, x, y, loss, p, traj), traj.times)


def risk_profile(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: str = "l2",
    p: float | None = None,
    trajectory=None,
) -> torch.Tensor:
    """E(x(t_k)) for k = 0..K -> ``[K + 1]``.

    E(x(t_k)) = (1/N) sum_i loss(P x_i(t_k), y_i), with the readout applied to every state.

    Args:
        model: a ``NeuralODE`` or ``SpaceTimeNet``.
        x: the inputs ``[N, d]``.
        y: the targets ``[N, m]`` or class indices ``[N]``.
        loss: one of ``LOSSES``.
        p: the exponent of ``lp`` and ``rel_lp``.
        trajectory (Trajectory | None): the
            [`Trajectory`][spacetime_nets.integrate.Trajectory] of ``model.trajectory(x)``
            to reuse, or None to run the forward pass here.

    Returns:
        ``[K + 1]``: the risk at each time.
    """
    traj = trajectory if trajectory is not None else model.trajectory(x)
    return torch.stack([empirical_risk(o, y, loss, p) for o in model.readout_along(traj.states)])


def tracking_cost(
    model: nn.Module, x: torch.Tensor, xbar: torch.Tensor | Sequence[torch.Tensor], trajectory=None
) -> torch.Tensor:
    """(1/N) sum_i int_0^T |x_i(t) - xbar_i|^2 dt (trapezoid in t). ``xbar`` ``[B, n]`` is a
    fixed target state (constant-width models), or one ``[B, n_k]`` per time on a moving
    schedule; on grids the norm is the quadrature L^2(Omega) norm.

    Args:
        model: a ``NeuralODE`` or ``SpaceTimeNet``.
        x: the inputs ``[B, d]``.
        xbar: the target state ``[B, n]``, or a list of ``[B, n_k]``, one per time.
        trajectory (Trajectory | None): the
            [`Trajectory`][spacetime_nets.integrate.Trajectory] of ``model.trajectory(x)``
            to reuse, or None to run the forward pass here.

    Returns:
        The 0-d tensor.
    """
    traj = trajectory if trajectory is not None else model.trajectory(x)
    vals = []
    for k, s in enumerate(traj.states):
        target = xbar[k] if isinstance(xbar, (list, tuple)) else xbar
        if target.shape != s.shape:
            raise ValueError(
                f"xbar: at step {k} expected shape {tuple(s.shape)}, got {tuple(target.shape)}"
            )
        w = model.disc.grid(k)[1]
        vals.append(((s - target) ** 2 * w).sum(-1).mean())
    return trapezoid_in_time(vals, traj.times)
