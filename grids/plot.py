"""Pictures of a grid schedule: widths against t, and node positions against t."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .schedule import GridSchedule

__all__ = ["plot_schedule"]


def plot_schedule(schedule: GridSchedule, max_points: int = 20000):
    """Return a matplotlib Figure with two panels: n_k against t_k, and xi^k_j against t_k
    (first axis of the nodes in 2-D). Uses the object-oriented API only (no pyplot state).

    Args:
        schedule: the schedule to draw.
        max_points: about the most node markers drawn in the right panel; above it only every
            s-th grid is drawn (s = total nodes // ``max_points``).

    Returns:
        (matplotlib.figure.Figure): the figure, not shown and not saved.
    """
    from matplotlib.figure import Figure

    from ._checks import as_int
    from .schedule import GridSchedule

    if not isinstance(schedule, GridSchedule):
        raise ValueError(f"schedule: expected a GridSchedule, got {type(schedule).__name__}")
    max_points = as_int("max_points", max_points)

    fig = Figure(figsize=(9, 3.6), layout="constrained")
    ax_w, ax_n = fig.subplots(1, 2)
    t = schedule.times.detach().cpu().double().numpy()
    ax_w.step(t, schedule.widths, where="post", color="C0")
    ax_w.plot(t, schedule.widths, "o", ms=3, color="C0")
    ax_w.set_xlabel("t")
    ax_w.set_ylabel("width $n_k$")
    ax_w.set_title(f"widths (K={schedule.num_steps})")
    total = sum(g.axes[0].numel() for g in schedule.grids)
    stride = max(1, total // max_points)
    for k, g in enumerate(schedule.grids[::stride]):
        xs = g.axes[0].detach().cpu().double().numpy()
        ax_n.plot([t[k * stride]] * xs.size, xs, ".", ms=2, color="C1")
    lo, hi = schedule.domain.bounds[0]
    ax_n.set_ylim(lo, hi)
    ax_n.set_xlabel("t")
    ax_n.set_ylabel(r"nodes $\xi^k_j$" + (" (axis 0)" if schedule.dim > 1 else ""))
    ax_n.set_title("node positions")
    return fig
