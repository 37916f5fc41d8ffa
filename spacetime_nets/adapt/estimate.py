"""Error estimates per grid (space) and per step (time), Richardson-scaled."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..models import SpaceTimeNet
from ..ops import op_tensors
from ..validation import check_bool, check_int
from ._common import (
    ORDERS,
    SPACE_ORDER,
    _calibration,
    _check_continuous,
    _check_norm,
    _distance,
    _input_on_first_grid,
    _lists,
    _outputs,
    _refined,
    _schedule,
    model_macs,
)

# --------------------------------------------------------------------------------------------
# error estimates
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def time_order(model: SpaceTimeNet) -> int:
    """The global order in dt the scheme has for this model: the stepper's (``ORDERS``)
    when the controls (w, b) are constant within every step (e.g. a basis kernel piecewise
    constant on the steps), else 1, since every scheme freezes the controls at t_k over a step
    (a first-order error in the time variation of w and b). Checked by evaluating the
    operators of the kernel(s) at t_k and at the step's midpoint on G_k (every kind of kernel).

    Args:
        model: a continuous SpaceTimeNet.

    Returns:
        p: the order of ``model.method`` (e.g. 1, 2, 4 for euler, heun, rk4), or 1 when
            the controls vary within a step.
    """
    _check_continuous(model, "time_order")
    p = ORDERS[model.method]
    if p == 1:
        return 1
    disc = model.disc
    for kern in (model.kernel, getattr(model, "kernel2", None)):
        if kern is None:
            continue
        for k in range(disc.num_steps):
            g = disc._point(k)  # every kind of kernel gives its operator on G_k -> G_k
            t0, t1 = disc.times[k], disc.times[k + 1]
            a = op_tensors(kern.step_op(k, t0, g, g))
            b = op_tensors(kern.step_op(k, 0.5 * (t0 + t1), g, g))
            for u, v in zip(a, b):
                if not torch.allclose(u, v, rtol=1e-12, atol=0.0):
                    return 1
    return p


@dataclass
class ErrorReport:
    """Per-grid space and per-step time error estimates of a continuous model on a schedule.

    ``space[k]`` (k = 0..K) estimates the error due to grid G_k: the output change when G_k
    alone is replaced by its refinement (every gap halved), divided by 1 - 2^-2 (Richardson,
    second-order quadrature and transfers). ``time[k]`` (k = 0..K-1) estimates the error of
    step k: the change when it is replaced by two half steps, divided by 1 - 2^-p (p from
    [`time_order`][spacetime_nets.adapt.time_order]). ``space_total`` / ``time_total`` do the
    same with every grid / every step refined at once. All in the output's units (``norm``
    over the calibration batch and the outputs). When the input is given as values on G_0 (identity
    lift), G_0 is the data's grid and ``space[0]`` is 0; a function readout is compared on the
    model's last grid.

    Attributes:
        times: the time points t_0 < ... < t_K of the schedule.
        shapes: the shape of each grid G_0..G_K (nodes per axis).
        widths: n_k, the node count of each grid G_0..G_K.
        space: K + 1 space estimates, one per grid.
        time: K time estimates, one per step.
        space_total: the estimate with every grid refined at once (None without ``totals``).
        time_total: the estimate with every step halved at once (None without ``totals``).
        macs: the model's multiply-adds per sample
            ([`model_macs`][spacetime_nets.adapt.model_macs]).
        method: the model's time stepper (a key of ``ORDERS``, e.g. ``"rk4"``).
        norm: ``"max"`` or ``"rms"``, the norm of every estimate.
        samples: N, the size of the calibration batch.
    """

    times: list[float]
    shapes: list[tuple[int, ...]]
    widths: list[int]
    space: list[float]
    time: list[float]
    space_total: float | None
    time_total: float | None
    macs: int
    method: str
    norm: str
    samples: int

    @property
    def num_steps(self) -> int:
        """K, the number of steps (one time estimate each)."""
        return len(self.time)

    def summary(self) -> str:
        """A text table: one row per grid / step with t_k, the grid, n_k and both estimates.

        Returns:
            The table: two header lines, one line per grid G_k (with the time estimate of
                the step that starts there), and a last line with the totals when they were
                computed.
        """
        K = self.num_steps
        lines = [
            f"Error estimates ({self.norm} over {self.samples} samples, output units): "
            f"K={K} {self.method} steps, {self.macs} multiply-adds per sample",
            "     k       t_k     dt_k      grid     n_k       space        time",
        ]
        for k in range(K + 1):
            dt = f"{self.times[k + 1] - self.times[k]:8.4f}" if k < K else " " * 8
            tk = f"{self.time[k]:11.3e}" if k < K else " " * 11
            shape = "x".join(map(str, self.shapes[k]))
            lines.append(
                f"  {k:4d}  {self.times[k]:8.4f} {dt}  {shape:>8s} {self.widths[k]:7d}  "
                f"{self.space[k]:11.3e} {tk}"
            )
        if self.space_total is not None and self.time_total is not None:
            lines.append(
                f"  all grids refined: {self.space_total:.3e}   all steps halved: "
                f"{self.time_total:.3e}"
            )
        return "\n".join(lines)

    def plot(self):
        """A matplotlib Figure: widths n_k against t (left), the estimates against t (right,
        space at t_k, time at the step midpoints, log scale).

        Returns:
            (matplotlib.figure.Figure): the figure, not shown and not saved.
        """
        from matplotlib.figure import Figure

        fig = Figure(figsize=(9, 3.4), layout="constrained")
        a, b = fig.subplots(1, 2)
        a.step(self.times, self.widths, where="post", marker="o")
        a.set_xlabel("t")
        a.set_ylabel("width n_k")
        a.set_title("schedule")
        mids = [(s + e) / 2 for s, e in zip(self.times[:-1], self.times[1:])]
        floor = 1e-16
        b.semilogy(self.times, [max(v, floor) for v in self.space], "o-", label="space (G_k)")
        b.semilogy(mids, [max(v, floor) for v in self.time], "s-", label="time (step k)")
        b.set_xlabel("t")
        b.set_ylabel(f"estimated error ({self.norm})")
        b.set_title("error estimates")
        b.legend()
        return fig


def estimate_errors(
    model: SpaceTimeNet,
    data: Any,
    *,
    norm: str = "max",
    totals: bool = True,
    batch_size: int = 1024,
) -> ErrorReport:
    """Per-grid space and per-step time error estimates of ``model`` on a calibration batch.

    Space: e_k = |y(S) - y(S with G_k refined)| / (1 - 2^-2); time: e_k = |y(S) - y(S with
    step k split in two)| / (1 - 2^-p), p = 1, 2, 4 for euler, heun, rk4 when the controls are
    constant within each step, else 1 ([`time_order`][spacetime_nets.adapt.time_order]).
    Richardson: an error C h^p becomes C (h/2)^p on the refinement, so the difference is
    (1 - 2^-p) of it.
    Costs 2K + 1 forward passes of the batch (2K + 3 with ``totals``).

    Args:
        model: a continuous SpaceTimeNet.
        data: calibration inputs: x ``[N, in_features]``, a pair (x, y) or a Split.
        norm: ``max`` (largest absolute output change) or ``rms``.
        totals: also refine every grid / every step at once (``space_total``, ``time_total``).
        batch_size: samples per forward pass.

    Returns:
        An [`ErrorReport`][spacetime_nets.adapt.ErrorReport] (``summary()`` table, ``plot()``
            figure).
    """
    _check_continuous(model, "estimate_errors")
    norm = _check_norm(norm)
    batch_size = check_int("batch_size", batch_size)
    totals = check_bool("totals", totals)
    x, _ = _calibration(model, data, need_labels=False)
    sched = model.schedule
    times, grids = _lists(sched)
    K = sched.num_steps
    out_grid = sched.grids[-1]
    y0 = _outputs(model, x, batch_size, out_grid)
    s_fac = 1.0 / (1.0 - 2.0**-SPACE_ORDER)
    t_fac = 1.0 / (1.0 - 2.0 ** -time_order(model))

    def change(t, g) -> float:
        return _distance(
            _outputs(model.with_schedule(_schedule(t, g, sched)), x, batch_size, out_grid),
            y0,
            norm,
        )

    refined = {id(g): _refined(g) for g in grids}
    fixed0 = _input_on_first_grid(model)  # the input is given on G_0: the data's grid
    space = []
    for k in range(K + 1):
        g = list(grids)
        g[k] = refined[id(grids[k])] if not (k == 0 and fixed0) else grids[0]
        space.append(0.0 if g[k] is grids[k] else change(times, g) * s_fac)
    tim = []
    for k in range(K):
        t = times[: k + 1] + [0.5 * (times[k] + times[k + 1])] + times[k + 1 :]
        g = grids[: k + 1] + [grids[k]] + grids[k + 1 :]
        tim.append(change(t, g) * t_fac)
    s_tot = t_tot = None
    if totals:
        g = [refined[id(v)] for v in grids]
        if fixed0:
            g[0] = grids[0]
        s_tot = change(times, g) * s_fac
        fine = sched.refine(width=1, depth=2)
        t_tot = change(*_lists(fine)) * t_fac
    return ErrorReport(
        times=times,
        shapes=[tuple(g.shape) for g in grids],
        widths=sched.widths,
        space=space,
        time=tim,
        space_total=s_tot,
        time_total=t_tot,
        macs=model_macs(model),
        method=model.method,
        norm=norm,
        samples=int(x.shape[0]),
    )
