"""Rediscretisation helpers: a schedule rescaled to another resolution, and the Net2Net-like
interpolation of a nodal model onto a finer schedule."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from grids import Grid, GridSchedule, make_transfer, nearest_valid_n
from grids.quadrature import get_rule

from ..kernels import NodalKernel

if TYPE_CHECKING:
    from .spacetime import SpaceTimeNet


def _target_shape(g0: Grid, n: int | Sequence[int]) -> tuple[int, ...]:
    target = tuple(n) if isinstance(n, (tuple, list)) else (n,) * g0.dim
    if len(target) != g0.dim or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 2 for v in target
    ):
        raise ValueError(f"n: expected {g0.dim} int(s) >= 2 (nodes per axis), got {n!r}")
    return target


def _uniform(shape: Sequence[int], like: Grid, k: int | str) -> Grid:
    """A uniform grid of ``shape`` nodes with ``like``'s rule, each count rounded to the
    nearest size the rule accepts."""
    shape = [nearest_valid_n(like.rule, int(v)) for v in shape]
    try:
        return Grid.uniform(shape[0] if like.dim == 1 else tuple(shape), like.domain, like.rule)
    except ValueError as exc:
        raise ValueError(f"n: grid {k}: {exc}") from None


def input_grid_for(g0: Grid, n: int | Sequence[int]) -> Grid:
    """The grid of inputs sampled at ``n`` nodes per axis, laid out like G_0: G_0's rule when
    it accepts ``n``, else (Simpson, Boole) the trapezoid rule, with the same equispaced nodes
    and end points."""
    target = _target_shape(g0, n)
    rule = g0.rule
    if any(nearest_valid_n(rule, v) != v for v in target):
        rule = "trapezoid"
    return Grid.uniform(target[0] if g0.dim == 1 else target, g0.domain, rule)


def _follows_input(g: Grid, g0: Grid, target: tuple[int, ...]) -> bool:
    """Whether ``g`` is an input-resolution stage that follows a finer input: G_0's shape,
    and the target at least as fine on every axis."""
    return g.shape == g0.shape and all(t >= s for t, s in zip(target, g0.shape))


def _scaled_shape(g: Grid, g0: Grid, target: tuple[int, ...]) -> list[int]:
    """``g``'s nodes per axis scaled by target / G_0 (the intervals between nodes, when the
    rule has end points)."""
    off = 1 if get_rule(g.rule).end_points else 0
    return [
        max(round((sk - off) * (t - off) / max(s0 - off, 1)) + off, 1)
        for s0, sk, t in zip(g0.shape, g.shape, target)
    ]


@dataclass(frozen=True)
class _Stages:
    """How ``at_resolution`` treats the grids of a schedule (one entry of ``STAGES``).

    Attributes:
        name: the name ``stages=`` takes.
        rebuilt: whether grid g is rebuilt, ``rebuilt(g, G_0, target)`` (False: g is kept
            as it is, whatever its nodes).
        shape: the nodes per axis of the rebuilt grid, ``shape(g, G_0, target)`` (each
            count then rounded to the nearest size g's rule accepts).
    """

    name: str
    rebuilt: Callable[[Grid, Grid, tuple[int, ...]], bool]
    shape: Callable[[Grid, Grid, tuple[int, ...]], Sequence[int]]


_STAGES: dict[str, _Stages] = {
    s.name: s
    for s in (
        # keep: the input-resolution stages follow a finer input; every other stage is a
        # function space (its cell size in Omega), kept as it is
        _Stages("keep", _follows_input, lambda g, g0, target: target),
        # scale: every grid scaled by the same factor as G_0
        _Stages("scale", lambda g, g0, target: True, _scaled_shape),
    )
}

#: how ``at_resolution`` treats the grids of a schedule
STAGES = tuple(_STAGES)


def _resolution_schedule(sched: GridSchedule, n: int | Sequence[int], stages: str) -> GridSchedule:
    """The schedule of ``at_resolution``: see
    [`SpaceTimeNet.at_resolution`][spacetime_nets.models.SpaceTimeNet.at_resolution]."""
    entry = _STAGES.get(stages) if isinstance(stages, str) else None
    if entry is None:
        raise ValueError(f"stages: expected one of {', '.join(STAGES)}; got {stages!r}")
    g0 = sched.grids[0]
    target = _target_shape(g0, n)
    made: dict[int, Grid] = {}
    grids = []
    for k, g in enumerate(sched.grids):
        if id(g) in made:
            grids.append(made[id(g)])
            continue
        if not entry.rebuilt(g, g0, target):
            new = g
        elif not g.is_uniform:
            raise ValueError(
                f"n: grid {k} is not a uniform grid; build the schedule at the new resolution "
                "and use with_schedule"
            )
        else:
            new = _uniform(entry.shape(g, g0, target), g, k)
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
        if model.lift_entry.learned:
            P0 = interp(coarse.grids[0], fine.grids[0])
            new.lift_weight = nn.Parameter(P0 @ model.lift_weight)
            new.lift_bias = nn.Parameter(P0 @ model.lift_bias)
    new.to(device=dev, dtype=dt)  # the fresh kernel is made in the default dtype
    new._bind(fine)
    return new
