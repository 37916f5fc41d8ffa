"""Large-time theory (docs/concepts.md, large-time behaviour): the mathematics.

ERM:       J_{T,lam}(u) = E(x(T)) + lam * int_0^T |u(t)|^2 dt
Turnpike:  J_T(u) = E(x(T)) + int_0^T E(x(t)) dt + lam * int_0^T |u(t)|^2 dt

Scaling lemma (homogeneous f): with v(s) = T u(T s) on [0, 1], the trajectory driven by u on
[0, T] is the time-rescaled trajectory driven by v on [0, 1], and int_0^T |u|^2 = (1/T)
int_0^1 |v|^2, so J_{T,lam}(u) = J_{1,lam/T}(v). Discretely, K Euler steps of size T/K with
controls u_k give the same outputs as K steps of size 1/K with controls T u_k.

Consequences: the training error of the ERM minimiser decays like O(1/T) (or faster) at fixed
lam with T * int_0^T |u_T|^2 bounded, and with the integral term the risk along the
trajectory decays like C exp(-mu t) with C, mu independent of T.

This module holds the mathematics: the homogeneity test
([`is_homogeneous`][spacetime_nets.theory.is_homogeneous]), the scaling lemma
([`rescale_horizon`][spacetime_nets.theory.rescale_horizon],
[`fold_output_scale`][spacetime_nets.theory.fold_output_scale]), rate fits
([`fit_exponential_rate`][spacetime_nets.theory.fit_exponential_rate],
[`fit_power_law`][spacetime_nets.theory.fit_power_law]) and risk / control profiles along a
trajectory ([`turnpike_profile`][spacetime_nets.theory.turnpike_profile]). The full-batch
optimiser lives in [`spacetime_nets.fullbatch`][spacetime_nets.fullbatch], the experiment
drivers (horizon sweeps, the scaling check, the turnpike study) in
[`spacetime_nets.experiments`][spacetime_nets.experiments], the table helpers in
[`spacetime_nets.tables`][spacetime_nets.tables]; their names stay importable from here.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import objectives
from .fields import check_form, form_is_homogeneous, get_activation
from .integrate import field, step
from .tables import format_arc

__all__ = [
    "is_homogeneous",
    "rescale_horizon",
    "control_parameters",
    "fold_output_scale",
    "fit_exponential_rate",
    "fit_power_law",
    "TurnpikeProfile",
    "turnpike_profile",
]

PROBE_FACTORS = (0.5, 2.0, 3.7)


# --------------------------------------------------------------------------- homogeneity
def _kernels(model: nn.Module) -> list:
    ks = [getattr(model, "kernel", None), getattr(model, "kernel2", None)]
    return [k for k in ks if k is not None]


def _increments(model: nn.Module, states: list[torch.Tensor]) -> list[torch.Tensor]:
    """f(X^k, u_k) for every step k: (X^{k+1} - Pi_k X^k) / dt_k of one Euler step from the
    given states ``[B, n_k]``; steps on G_k (other steppers, stationary kernels) evaluate f
    directly."""
    out = []
    mats = model.controls()
    disc = model.disc
    for k, sm in enumerate(mats):
        X = states[k]
        if not sm.square:
            X1 = step(disc, k, sm, X, model.form, model.act, model.method)
            out.append((X1 - disc.transfer(k, X)) / sm.dt)
        else:
            out.append(field(model.form, model.act, sm.layers, X))
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

    The exact rule ([`form_is_homogeneous`][spacetime_nets.fields.form_is_homogeneous]) is
    checked against a numerical probe:
    the model's controls are scaled by a in {0.5, 2, 3.7} and one step's increment
    (X^{k+1} - Pi_k X^k) / dt_k is compared with a times the unscaled one on random states
    ``[16, n_k]`` (a form name is probed on a small random ``NeuralODE``).

    Args:
        model_or_form: a ``NeuralODE`` / ``SpaceTimeNet`` (its form and activation are used)
            or a form name (``outside``, ``inside``, ``bottleneck``).
        activation: the activation, required with a form name (not with a model).
        probe: False returns the rule alone, without the numerical probe.

    Returns:
        True only when the rule and the probe both say homogeneous.

    Raises:
        ValueError: when the rule and the probe disagree (a custom activation mislabelled),
            or for a bad argument.
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

    Args:
        model: a ``NeuralODE`` or ``SpaceTimeNet`` on [0, T].
        T_new: the new horizon, positive and finite.
        strict: raise ValueError for a non-homogeneous model (the outputs would differ).
        x: inputs ``[B, in]``; when given, also check that the outputs agree to ``rtol``
            (relative, max norm).
        rtol: the tolerance of that check.

    Returns:
        A new model on [0, T_new]; the original is not changed.
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


# --------------------------------------------------------------------------- controls
def control_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The trainable tensors of the controls (w, b): the parameters of the kernel(s) only.

    Args:
        model: a ``NeuralODE`` or ``SpaceTimeNet``.

    Returns:
        The kernels' parameters (not the lift's or the readout's).
    """
    return [p for k in _kernels(model) for p in k.parameters()]


def fold_output_scale(model: nn.Module) -> nn.Module:
    """In place: multiply each kernel's parameters by its ``output_scale`` and reset the scale
    to 1, so the trainable tensors are the controls themselves (the network is unchanged).

    Args:
        model: a model whose kernels are linear in their parameters (nodal, basis) or neural
            (the scale goes into their output layers).

    Returns:
        ``model`` itself.

    Raises:
        ValueError: for a kernel whose scale cannot be folded into its parameters.
    """
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


# --------------------------------------------------------------------------- rate fits
def fit_power_law(Ts: Sequence[float], errs: Sequence[float], floor: float) -> tuple[float, float]:
    """Least squares of log(err) = intercept + slope * log(T) over the points with err >
    ``floor`` (the decay of the ERM training error in T: slope <= -1 for O(1/T)).

    Args:
        Ts: horizons ``[n]``.
        errs: the values at those horizons ``[n]``.
        floor: values at or below it are left out.

    Returns:
        (slope, intercept); (nan, nan) with fewer than two points above the floor.
    """
    pts = [(math.log(T), math.log(e)) for T, e in zip(Ts, errs) if e > floor]
    if len(pts) < 2:
        return float("nan"), float("nan")
    a, b = np.polyfit([p[0] for p in pts], [p[1] for p in pts], 1)
    return float(a), float(b)


_fit_loglog = fit_power_law


def fit_exponential_rate(
    t: Sequence[float] | np.ndarray,
    values: Sequence[float] | np.ndarray,
    window: tuple[float, float],
    floor: float,
) -> tuple[float, float, int]:
    """Least squares of log(value) = log(C) - mu t over the points with t in ``window`` and
    value > ``floor``.

    Args:
        t: times ``[n]``.
        values: the values at those times ``[n]``.
        window: the arc (t_a, t_b) of the fit, ends included.
        floor: values at or below it (and non-finite ones) are left out.

    Returns:
        (mu, C, number of points used); (nan, nan, n) when n < 2.
    """
    t = np.asarray(t, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    keep = (t >= window[0] - 1e-12) & (t <= window[1] + 1e-12) & (v > floor) & np.isfinite(v)
    n = int(keep.sum())
    if n < 2:
        return float("nan"), float("nan"), n
    a, b = np.polyfit(t[keep], np.log(v[keep]), 1)
    return float(-a), float(math.exp(b)), n


# --------------------------------------------------------------------------- profiles
@dataclass
class TurnpikeProfile:
    """E(x(t_k)) and |u(t_k)| along a trained trajectory.

    ``times`` ``[K+1]``, ``risk`` ``[K+1]`` = E(x(t_k)); ``control`` ``[K]`` = |u_k| on
    [t_k, t_{k+1}) (sqrt of ``objectives.control_norms``).

    The reported rate is ``mu_common`` (``mu_u_common`` for |u(t)|): the fit of
    E(x(t)) ~ C exp(-mu t) on ``common_window``, one arc shared by every horizon of a run (set
    by [`train_turnpike`][spacetime_nets.experiments.train_turnpike]: [0.2, 0.8] x the
    shortest horizon), so rates of different T are fitted on the same times. ``mu``, ``C``
    (``mu_u``, ``C_u``) are the fits on this profile's own middle arc ``window`` (values above
    ``floor``): a diagnostic only, since on a long horizon that arc lies where the risk already
    sits on its floor set by lam, and its slope shrinks with T although the decay does not.
    ``t_hit``: the first t_k with E(x(t_k)) <= ``threshold`` (None if never).

    Attributes:
        T: the horizon t_K.
        times: the times t_k, ``[K+1]``.
        risk: E(x(t_k)), ``[K+1]``.
        control: |u_k|, ``[K]``.
        mu: the rate of E fitted on the own arc ``window``.
        C: the constant of that fit, E ~ C exp(-mu t).
        mu_u: the rate of |u| fitted on the own arc.
        C_u: the constant of that fit.
        t_hit: the first t_k with E(x(t_k)) <= ``threshold``, or None.
        threshold: the risk level of ``t_hit``.
        window: the own arc (t_a, t_b) of the fits.
        n_fit: the number of points the fit of E used.
        floor: values of E at or below it were left out of the fits.
        mu_common: the rate of E on ``common_window`` (NaN until ``fit_common``).
        mu_u_common: the rate of |u| on ``common_window`` (NaN until ``fit_common``).
        common_window: the arc shared by every horizon of a study, or None.
        floor_u: values of |u| at or below it were left out of the fits (None: derived from
            the largest |u|).
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
        """E(x(T)), the risk at the final time."""
        return float(self.risk[-1])

    def fit_common(self, window: tuple[float, float]) -> None:
        """Set ``mu_common`` and ``mu_u_common``: the rates of E(x(t)) and |u(t)| fitted on
        the arc ``window`` = (t_a, t_b) (values above the floor), and ``common_window``.

        Args:
            window: the arc shared by every horizon of a study.
        """
        f_u = self.floor_u
        if f_u is None:
            f_u = 100 * np.finfo(np.float64).eps * max(float(self.control.max(initial=0.0)), 1.0)
        self.common_window = (float(window[0]), float(window[1]))
        self.mu_common = fit_exponential_rate(self.times, self.risk, window, self.floor)[0]
        self.mu_u_common = fit_exponential_rate(self.times[:-1], self.control, window, f_u)[0]

    def row(self) -> dict:
        """The table row: reported rates on the common arc first, the own-arc fits last.

        Returns:
            ``{"T", "mu_common", "mu_u_common", "common_arc", "t_hit", "t_hit_over_T",
                "final_error", "mu_own_arc", "mu_u_own_arc", "own_arc", "C", "C_u",
                "n_fit"}`` (arcs as text, a missing ``t_hit`` as NaN).
        """
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


_arc = format_arc


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

    Args:
        model: a trained ``NeuralODE`` or ``SpaceTimeNet``.
        x: inputs ``[N, d]``.
        y: targets ``[N]`` (class labels) or ``[N, m]``.
        loss: the loss of E (a name of ``objectives.LOSSES``).
        threshold: the risk level whose hitting time is reported.
        p: the exponent of the ``lp`` loss.
        window: the own arc of the fits, as fractions of T.
        floor: values at or below it are left out of the fits (default: 100 * machine
            epsilon of the model's dtype times max(E(x(0)), 1) for E, times max |u| for |u|).

    Returns:
        A [`TurnpikeProfile`][spacetime_nets.theory.TurnpikeProfile] (its ``mu_common`` is
            set by a study with several T).
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
