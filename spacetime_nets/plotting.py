"""Figures for the large-time experiments (matplotlib object API only: every function builds
and returns its own ``matplotlib.figure.Figure``; no pyplot, no global state).

- [`plot_asymptotics`][spacetime_nets.plotting.plot_asymptotics]: training error E(x_T(T))
  against T on log-log axes with the fitted slope, and T * int_0^T |u_T|^2 against T;
- [`plot_turnpike`][spacetime_nets.plotting.plot_turnpike]: E(x(t)) and |u(t)| against t (log
  scale) for several T, turnpike and ERM, with the decay rates fitted on one arc common to
  every T;
- [`plot_trajectories`][spacetime_nets.plotting.plot_trajectories]: 2-D inputs by class and
  the readout trajectories P x_i(t_k).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

__all__ = ["plot_asymptotics", "plot_turnpike", "plot_trajectories", "save_figure"]


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 110) -> None:
    """Write ``fig`` to ``path`` (format from the suffix), creating the folder.

    Args:
        fig: the figure.
        path: the file to write; its suffix (``.png``, ``.pdf``, ``.svg``, ...) gives the
            format.
        dpi: the resolution of raster formats, in dots per inch.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")


def plot_asymptotics(sweeps: Mapping[str, object], title: str = "") -> Figure:
    """Two panels for ``{label: SweepResult}``: log E(x_T(T)) against log T with the fitted
    line (slope in the legend) and a reference slope -1; T * int_0^T |u_T|^2 against T.

    Args:
        sweeps: ``{label: result}``, each result a
            [`SweepResult`][spacetime_nets.experiments.SweepResult] of
            [`horizon_sweep`][spacetime_nets.experiments.horizon_sweep] (its ``Ts``,
            ``errors``, ``slope``, ``intercept`` and ``rows`` with ``T_l2_control``).
        title: the figure's title ("" for none).

    Returns:
        The figure.
    """
    fig = Figure(figsize=(10, 4))
    ax1, ax2 = fig.subplots(1, 2)
    for i, (label, sw) in enumerate(sweeps.items()):
        color = f"C{i}"
        Ts = np.asarray(sw.Ts, dtype=float)
        errs = np.asarray(sw.errors, dtype=float)
        ok = errs > 0
        ax1.loglog(Ts[ok], errs[ok], "o", color=color)
        if np.isfinite(sw.slope):
            ax1.loglog(
                Ts,
                np.exp(sw.intercept) * Ts**sw.slope,
                "-",
                color=color,
                label=f"{label}: slope {sw.slope:.2f}",
            )
        tl2 = np.asarray([r["T_l2_control"] for r in sw.rows], dtype=float)
        ax2.semilogx(Ts, tl2, "o-", color=color, label=label)
    if sweeps:
        first = next(iter(sweeps.values()))
        Ts = np.asarray(first.Ts, dtype=float)
        e0 = max(float(first.errors[0]), 1e-300)
        ax1.loglog(Ts, e0 * Ts[0] / Ts, "k--", lw=0.8, label="slope -1")
    ax1.set_xlabel("T")
    ax1.set_ylabel("training error E(x_T(T))")
    ax1.legend(fontsize=7)
    ax1.grid(True, which="both", alpha=0.3)
    ax2.set_xlabel("T")
    ax2.set_ylabel("T * int_0^T |u_T|^2 dt")
    ax2.set_ylim(bottom=0)
    ax2.legend(fontsize=7)
    ax2.grid(True, which="both", alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


def plot_turnpike(result, title: str = "") -> Figure:
    """Four panels for a ``TurnpikeResult``: E(x(t)) and |u(t)| against t on a log scale, one
    line per T, for the turnpike problem (left) and plain ERM (right); the threshold dotted.

    The turnpike legends give the rates mu of E and |u| fitted on the one arc shared by every
    T (``result.common_window``, shaded and named in the legend title), so the rates of
    different horizons are comparable; the per-T own-arc fits are left to the tables.

    Args:
        result (TurnpikeResult): a
            [`TurnpikeResult`][spacetime_nets.experiments.TurnpikeResult] of
            [`train_turnpike`][spacetime_nets.experiments.train_turnpike] (its profiles
            ``tp`` and ``erm``, ``threshold`` and ``common_window``).
        title: the figure's title ("" for none).

    Returns:
        The figure.
    """
    fig = Figure(figsize=(11, 7))
    axes = fig.subplots(2, 2, sharex="col")
    arc = getattr(result, "common_window", None)
    # (title, profiles, whether the legends give the rates fitted on the common arc)
    groups = [("turnpike", result.tp, arc is not None), ("ERM", result.erm, False)]
    for col, (name, profiles, common_rates) in enumerate(groups):
        top, bottom = axes[0][col], axes[1][col]
        for i, pr in enumerate(profiles):
            color = f"C{i}"
            risk = np.where(pr.risk > 0, pr.risk, np.nan)
            lab = lab_u = f"T={pr.T:g}"
            if common_rates:
                lab += f", mu={pr.mu_common:.2f}" if np.isfinite(pr.mu_common) else ", mu: -"
                mu_u = getattr(pr, "mu_u_common", float("nan"))
                lab_u += f", mu={mu_u:.2f}" if np.isfinite(mu_u) else ", mu: -"
            top.semilogy(pr.times, risk, "-", color=color, label=lab)
            ctrl = np.where(pr.control > 0, pr.control, np.nan)
            bottom.semilogy(pr.times[:-1], ctrl, "-", color=color, label=lab_u)
            if pr.t_hit is not None:
                top.axvline(pr.t_hit, color=color, ls=":", lw=0.8)
        top.axhline(result.threshold, color="k", ls=":", lw=0.8)
        top.set_title(f"{name}: E(x(t))")
        bottom.set_title(f"{name}: |u(t)|")
        bottom.set_xlabel("t")
        legend_title = None
        if common_rates:
            legend_title = f"mu fitted on t in [{arc[0]:.3g}, {arc[1]:.3g}] (every T)"
            for ax in (top, bottom):
                ax.axvspan(arc[0], arc[1], color="0.85", alpha=0.5, lw=0)
            bottom.legend(fontsize=7, title=legend_title, title_fontsize=7)
        top.legend(fontsize=7, title=legend_title, title_fontsize=7)
        top.grid(True, which="both", alpha=0.3)
        bottom.grid(True, which="both", alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


def plot_trajectories(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, title: str = "", max_points: int = 200
) -> Figure:
    """Two panels: the inputs x_i in the plane coloured by class, and the readout
    trajectories t_k -> P x_i(t_k) in the plane of the first two outputs (one-hot targets
    marked), for 2-D data.

    Args:
        model: a trained flow model (with ``trajectory`` and ``readout_along``, e.g. a
            [`SpaceTimeNet`][spacetime_nets.models.SpaceTimeNet]).
        x: the inputs ``[batch, 2]``.
        y: the class labels ``[batch]`` or one-hot targets ``[batch, classes]``.
        title: the figure's title ("" for none).
        max_points: only the first ``max_points`` samples are drawn.

    Returns:
        The figure (with one output, the right panel shows P x_i(t) against t).
    """
    x, y = x[:max_points], y[:max_points]
    with torch.no_grad():
        traj = model.trajectory(x.to(next(model.parameters()).dtype))
        outs = torch.stack(model.readout_along(traj.states)).double().cpu().numpy()  # [K+1,B,m]
    labels = y.cpu().numpy()
    if labels.ndim > 1:
        labels = labels.argmax(-1)
    fig = Figure(figsize=(10, 4.5))
    ax1, ax2 = fig.subplots(1, 2)
    xs = x.double().cpu().numpy()
    classes = np.unique(labels)
    for c in classes:
        sel = labels == c
        ax1.scatter(xs[sel, 0], xs[sel, 1], s=10, color=f"C{int(c)}", label=f"class {int(c)}")
    ax1.set_aspect("equal")
    ax1.set_title("inputs x_i")
    ax1.legend(fontsize=7)
    m = outs.shape[-1]
    if m >= 2:
        for i in range(outs.shape[1]):
            c = int(labels[i])
            ax2.plot(outs[:, i, 0], outs[:, i, 1], "-", color=f"C{c}", lw=0.5, alpha=0.6)
            ax2.plot(outs[-1, i, 0], outs[-1, i, 1], ".", color=f"C{c}", ms=4)
        for c in classes:
            e = np.zeros(m)
            e[int(c)] = 1.0
            ax2.plot(e[0], e[1], "k*", ms=12)
        ax2.set_xlabel("(P x)_0")
        ax2.set_ylabel("(P x)_1")
        ax2.set_title("readout trajectories P x_i(t), targets *")
    else:
        t = np.asarray(traj.times)
        for i in range(outs.shape[1]):
            ax2.plot(t, outs[:, i, 0], "-", color=f"C{int(labels[i])}", lw=0.5)
        ax2.set_xlabel("t")
        ax2.set_ylabel("P x_i(t)")
        ax2.set_title("readout trajectories")
    ax2.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig
