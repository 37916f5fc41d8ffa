"""Training one model across input resolutions (``fit(..., resolutions=[0.5, 1, 2])``).

Each training batch is given to the model at a scale s drawn from ``resolutions``: the
inputs, functions sampled on the model's input grid G (its first grid G_0, or the grid
[`at_resolution`][spacetime_nets.models.SpaceTimeNet.at_resolution] set), are resampled by linear
interpolation to the uniform grid G_s of

    n_s = round(s (n - 1)) + 1   (rules with end points: trapezoid, simpson, boole)
    n_s = round(s n)             (other rules: midpoint, gauss_legendre, periodic)

nodes per axis (Python's ``round``, half to even), laid out like G, and the model is evaluated
with ``model(x_s, input_grid=G_s)``, which moves them back onto G_0 with the model's own
transfer and so trains the model's own parameters in place. The scales of an epoch are drawn
by the epoch's shuffling generator (``torch.Generator().manual_seed(seed + epoch)``) after the
permutation of the N training rows: ``randperm(N)`` then ``randint(len(resolutions),
(steps,))``. They depend on the seed, the epoch and the step only, so a run is reproducible
and a resumed one takes the scales of an uninterrupted one.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from grids import Grid, make_transfer
from grids.quadrature import get_rule

from .data import _function_readout

__all__ = ["MultiResolution", "check_resolutions", "epoch_scales", "scaled_size"]


def check_resolutions(resolutions: Any) -> list[float] | None:
    """``resolutions`` as a list of floats (None stays None): a non-empty list or tuple of
    positive finite numbers, else a ValueError naming ``resolutions``.

    Args:
        resolutions: the scales of the input size as given to ``fit`` (e.g. ``[0.5, 1, 2]``),
            or None.

    Returns:
        The scales as floats, or None.
    """
    if resolutions is None:
        return None
    if isinstance(resolutions, (str, bytes)) or not isinstance(resolutions, Sequence):
        raise ValueError(
            "resolutions: expected a non-empty list of positive scales of the input size "
            f"(e.g. [0.5, 1, 2]), got {resolutions!r:.80}"
        )
    if len(resolutions) == 0:
        raise ValueError("resolutions: expected at least one scale, got an empty list")
    out = []
    for i, s in enumerate(resolutions):
        ok = isinstance(s, numbers.Real) and not isinstance(s, (bool, np.bool_))
        if not ok or not math.isfinite(s) or s <= 0:
            raise ValueError(
                f"resolutions: every scale must be a positive finite number, got {s!r:.40} at "
                f"index {i}"
            )
        out.append(float(s))
    return out


def scaled_size(n: int, scale: float, rule: str) -> int:
    """Nodes per axis at ``scale`` times an axis of ``n`` nodes of ``rule``: round(s (n - 1)) + 1
    for rules with end points (the cells scale), round(s n) otherwise.

    Args:
        n: the nodes per axis of the input grid.
        scale: the scale s of the input size.
        rule: the quadrature rule of the axis (a name of ``grids.RULES``).

    Returns:
        The nodes per axis at that scale.
    """
    if get_rule(rule).end_points:  # nodes at both ends: the count scales as n - 1 (cells)
        return round(scale * (n - 1)) + 1
    return round(scale * n)


def epoch_scales(rows: int, seed: int, epoch: int, steps: int, count: int) -> torch.Tensor:
    """The indices into ``resolutions`` of the ``steps`` batches of ``epoch`` (0-based): the
    shuffling generator of the epoch, seeded ``seed + epoch``, after ``randperm(rows)``.

    Args:
        rows: the number N of training rows (of the permutation drawn first).
        seed: the run's shuffling seed.
        epoch: the epoch, 0-based.
        steps: the number of batches of the epoch.
        count: the number of scales, ``len(resolutions)``.

    Returns:
        ``[steps]`` int64 indices in ``0 .. count-1``, one per batch.
    """
    g = torch.Generator().manual_seed(seed + epoch)
    torch.randperm(rows, generator=g)  # the epoch's permutation (the rule of epoch_order)
    return torch.randint(count, (steps,), generator=g)


@dataclass(frozen=True)
class _Level:
    """One scale: its grid G_s and the linear interpolation G -> G_s (None: G_s is G)."""

    scale: float
    grid: Grid | None
    transfer: Any


class MultiResolution:
    """The scales of a run and the resampled batches (see the module docstring).

    Args:
        model: a ``SpaceTimeNet`` with ``lift="identity"`` (scalar or with channels).
        resolutions: the checked scales (``check_resolutions``).
        device: where the batches are.
        dtype: the model's floating dtype.
    """

    def __init__(
        self,
        model: nn.Module,
        resolutions: list[float],
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        check_model(model)
        self.resolutions = list(resolutions)
        sched = model.schedule
        g0 = sched.grids[0]
        base = getattr(model, "input_grid", None) or g0
        self.base, self.in_channels = base, int(model.in_channels)
        # the grid the loss sees the outputs on: that of model(x) on the base grid
        self.output_grid: Grid | None = None
        if _function_readout(model):
            last = sched.grids[-1]
            same = base is not g0 and last.shape == g0.shape
            self.output_grid = base if same else last
        from ..models.resample import input_grid_for

        self.levels: list[_Level] = []
        for s in self.resolutions:
            shape = tuple(scaled_size(n, s, base.rule) for n in base.shape)
            if min(shape) < 2:
                raise ValueError(
                    f"resolutions: the scale {s:g} gives {min(shape)} node(s) per axis on the "
                    f"input grid of {base.n} nodes ({base.rule}); every scale must give >= 2"
                )
            try:
                grid = input_grid_for(base, shape if base.dim > 1 else shape[0])
            except ValueError as exc:
                raise ValueError(f"resolutions: the scale {s:g}: {exc}") from None
            if grid.same_as(base):
                self.levels.append(_Level(s, None, None))
                continue
            p = make_transfer(base, grid, "linear").to(device=device, dtype=dtype)
            self.levels.append(_Level(s, grid, p))

    def check_input(self, x: torch.Tensor) -> None:
        """Refuse (ValueError) a batch whose layout is not that of values on the input grid.

        Args:
            x: a batch of inputs: ``[B, n]`` (one channel), ``[B, c, n]`` or
                ``[B, c, *grid.shape]``, with ``n`` the input grid's nodes.
        """
        self._shaped(x)

    def _shaped(self, x: torch.Tensor) -> bool:
        """Whether ``x`` is laid out on the grid's shape ``[B, c_in, *shape]`` (False: flat,
        ``[B, n]`` or ``[B, c_in, n]``); a ValueError for any other layout."""
        b, cin = self.base, self.in_channels
        if x.dim() == 2 and cin == 1 and x.shape[1] == b.n:
            return False
        if x.dim() == 3 and tuple(x.shape[1:]) == (cin, b.n):
            return False
        if b.dim > 1 and x.dim() == 2 + b.dim and tuple(x.shape[1:]) == (cin, *b.shape):
            return True
        want = f"[B, {cin}, {b.n}]" + (f" or [B, {b.n}]" if cin == 1 else "")
        raise ValueError(
            f"resolutions: the inputs must be values on the model's input grid ({want}), got "
            f"shape {tuple(x.shape)}"
        )

    def resample(self, x: torch.Tensor, level: int) -> tuple[torch.Tensor, dict]:
        """The batch ``x`` at ``resolutions[level]``: (x_s in the layout of x, the keyword
        arguments of the model call: ``input_grid`` and, for a function readout,
        ``output_grid``). At a scale whose grid is the input grid: (x, {}).

        Args:
            x: a batch on the input grid, in a layout ``check_input`` accepts.
            level: the index of the scale in ``resolutions``.

        Returns:
            ``(x_s, kwargs)``: the resampled batch and the keyword arguments of the model call.
        """
        lv = self.levels[level]
        if lv.grid is None:
            return x, {}
        if self._shaped(x):
            xs = lv.transfer(x.reshape(x.shape[0], self.in_channels, -1))
            xs = xs.reshape(x.shape[0], self.in_channels, *lv.grid.shape)
        else:
            xs = lv.transfer(x)
        kw: dict = {"input_grid": lv.grid}
        if self.output_grid is not None:
            kw["output_grid"] = self.output_grid
        return xs, kw


def check_model(model: nn.Module) -> None:
    """Refuse (ValueError naming ``resolutions``) a model that cannot read inputs on another
    grid: a ``SpaceTimeNet`` with ``lift="identity"`` is needed."""
    lift = getattr(model, "lift_kind", None)
    sched = getattr(model, "schedule", None)
    reads_functions = getattr(getattr(model, "lift_entry", None), "function", False)
    if not reads_functions or sched is None or not hasattr(model, "in_channels"):
        what = f"lift={lift!r}" if lift is not None else type(model).__name__
        raise ValueError(
            "resolutions: training across resolutions needs a SpaceTimeNet with "
            f"lift='identity' (inputs that are functions sampled on its first grid), got {what}"
        )
