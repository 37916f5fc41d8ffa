"""Rediscretisation helpers: a schedule rescaled to another resolution, and the Net2Net-like
interpolation of a nodal model onto a finer schedule."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from grids import Grid, GridSchedule, make_transfer

from ..kernels import NodalKernel

if TYPE_CHECKING:
    from .spacetime import SpaceTimeNet


def _rescaled_schedule(sched: GridSchedule, n: int | Sequence[int]) -> GridSchedule:
    from fractions import Fraction

    g0 = sched.grids[0]
    target = tuple(n) if isinstance(n, (tuple, list)) else (n,) * g0.dim
    if len(target) != g0.dim or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in target
    ):
        raise ValueError(f"n: expected {g0.dim} positive int(s), got {n!r}")
    ends = {"trapezoid", "simpson", "boole"}
    made: dict[int, Grid] = {}
    grids = []
    for k, g in enumerate(sched.grids):
        if id(g) in made:
            grids.append(made[id(g)])
            continue
        if not g.is_uniform:
            raise ValueError(
                f"n: grid {k} is not a uniform grid; build the schedule at the new resolution "
                "and use with_schedule"
            )
        shape = []
        for a, (s0, sk, t) in enumerate(zip(g0.shape, g.shape, target)):
            off = 1 if g.rule in ends else 0
            v = Fraction(sk - off) * Fraction(t - off, max(s0 - off, 1)) + off
            if v.denominator != 1 or v < 1:
                raise ValueError(
                    f"n: resolution {t} on axis {a} maps grid {k} ({sk} nodes) to {float(v):g} "
                    f"nodes, not an integer; choose n so that every grid scales exactly"
                )
            shape.append(int(v))
        try:
            new = Grid.uniform(shape[0] if g.dim == 1 else tuple(shape), g.domain, g.rule)
        except ValueError as exc:
            raise ValueError(f"n: grid {k}: {exc}") from None
        made[id(g)] = new
        grids.append(new)
    return GridSchedule(sched.times, grids, sched.transfer_kind, sched.channels)


def _refine_nodal(model: SpaceTimeNet, fine: GridSchedule, depth: int) -> SpaceTimeNet:
    coarse = model.schedule
    new = copy.deepcopy(model)
    K = coarse.num_steps
    new.kernel = NodalKernel(fine, bias=model.kernel.bias is not None)
    with torch.no_grad():
        dev, dt = model.readout_values.device, model.readout_values.dtype

        def interp(src: Grid, dst: Grid) -> torch.Tensor:
            return make_transfer(src, dst, "linear").matrix().to(dev, dt)

        for k in range(K):
            g_in, g_out = coarse.grids[k], coarse.grids[k + 1]
            w = model.kernel.weight[k] / g_in.weights.to(dev, dt)[None, :]  # kernel values
            b = model.kernel.bias[k] if model.kernel.bias is not None else None
            scale = model.kernel.output_scale
            for j in range(depth):
                kk = k * depth + j
                f_in, f_out = fine.grids[kk], fine.grids[kk + 1]
                wf = interp(g_out, f_out) @ w @ interp(g_in, f_in).T
                new.kernel.weight[kk].copy_(wf * f_in.weights.to(dev, dt)[None, :] * scale)
                if b is not None:
                    new.kernel.bias[kk].copy_(interp(g_out, f_out) @ b * scale)
        pK = model.readout_values
        new.readout_values = nn.Parameter(pK @ interp(coarse.grids[-1], fine.grids[-1]).T)
        if model.lift_kind == "linear":
            P0 = interp(coarse.grids[0], fine.grids[0])
            new.lift_weight = nn.Parameter(P0 @ model.lift_weight)
            new.lift_bias = nn.Parameter(P0 @ model.lift_bias)
    new.to(device=dev, dtype=dt)  # the fresh kernel is made in the default dtype
    new._bind(fine)
    return new
