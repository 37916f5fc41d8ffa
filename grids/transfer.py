"""Transfers Pi: values on a source grid -> values on a target grid (the ResNet shortcut).

Every transfer is stored in gather form: for each target node i, ``m`` source indices
``index[i, :]`` and coefficients ``coeff[i, :]`` (padded with zero coefficients), so that
``(P x)_i = sum_r coeff[i, r] * x[index[i, r]]``. Applying it costs ``n_dst * m`` multiply-adds
and never forms the dense ``[n_dst, n_src]`` matrix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from . import quadrature
from ._checks import as_int
from .grid import Grid, parse_to_args

__all__ = ["Transfer", "make_transfer", "TRANSFER_KINDS"]

_Stencil = tuple[np.ndarray, np.ndarray]  # int64 indices [n_dst, m], float64 coefficients


class Transfer:
    """A linear map ``[..., n_src] -> [..., n_dst]`` acting on the last dimension.

    In gather form: ``(P x)_i = sum_r coeff[i, r] * x[..., index[i, r]]``. Build one with
    [`make_transfer`][grids.transfer.make_transfer]; calling it applies P.

    Args:
        index: the source indices, int64 ``[n_dst, m]``, each in ``[0, n_src)``.
        coeff: the coefficients, floating ``[n_dst, m]`` on the device of ``index`` (zero
            where a row has fewer than m entries).
        n_src: the size of the source grid.
        kind: the kind that built it, one of ``TRANSFER_KINDS``.
        identity: True when source and target are the same grid: the call returns its input.

    Raises:
        ValueError: for tensors of the wrong dtype, shape or device, or indices out of range.
    """

    def __init__(
        self,
        index: torch.Tensor,
        coeff: torch.Tensor,
        n_src: int,
        kind: str,
        identity: bool = False,
    ) -> None:
        n_src = as_int("n_src", n_src)
        _transfer_kind(kind)
        if not isinstance(identity, bool):
            raise ValueError(f"identity: expected True or False, got {identity!r}")
        if not isinstance(index, torch.Tensor) or index.dtype != torch.long or index.dim() != 2:
            raise ValueError(f"index: expected an int64 tensor [n_dst, m], got {_describe(index)}")
        if index.shape[0] == 0 or index.shape[1] == 0:
            raise ValueError(f"index: expected at least one row and column, got shape "
                             f"{tuple(index.shape)}")  # fmt: skip
        if not isinstance(coeff, torch.Tensor) or not coeff.is_floating_point():
            raise ValueError(f"coeff: expected a floating tensor, got {_describe(coeff)}")
        if coeff.shape != index.shape or coeff.device != index.device:
            raise ValueError(
                f"coeff: expected the shape {tuple(index.shape)} of index on {index.device}, got "
                f"shape {tuple(coeff.shape)} on {coeff.device}"
            )
        if not index.is_meta and (int(index.min()) < 0 or int(index.max()) >= n_src):
            raise ValueError(
                f"index: expected source indices in [0, {n_src}), got "
                f"[{int(index.min())}, {int(index.max())}]"
            )
        self.index = index
        self.coeff = coeff
        self.n_src = n_src
        self.n_dst = int(index.shape[0])
        self.kind = kind
        self.identity = identity

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Apply P to the last dimension: ``[..., n_src] -> [..., n_dst]``."""
        if not isinstance(x, torch.Tensor) or x.dim() == 0:
            raise ValueError(
                f"x: expected a tensor [..., {self.n_src}] (last dimension the source grid "
                f"size), got {_describe(x)}"
            )
        if x.shape[-1] != self.n_src:
            raise ValueError(
                f"x: last dimension must be the source grid size {self.n_src}, got shape "
                f"{tuple(x.shape)}"
            )
        if self.identity:
            return x
        # one index_select per stencil column: its backward is a cheap index_add
        coeff = self.coeff.to(x.dtype)
        y = torch.index_select(x, -1, self.index[:, 0]) * coeff[:, 0]
        for r in range(1, self.index.shape[1]):
            y = torch.addcmul(y, torch.index_select(x, -1, self.index[:, r]), coeff[:, r])
        return y

    def matrix(self) -> torch.Tensor:
        """The dense ``[n_dst, n_src]`` matrix of P (for export and tests).

        Returns:
            The matrix, in the dtype and on the device of ``coeff``.
        """
        m = torch.zeros(self.n_dst, self.n_src, dtype=self.coeff.dtype, device=self.coeff.device)
        m.scatter_add_(1, self.index, self.coeff)
        return m

    def to(self, *args: object, **kwargs: object) -> Transfer:
        """A copy on ``device`` with coefficients in ``dtype`` (indices stay int64), with
        torch's conventions: ``to(dtype)``, ``to(device)``, ``to(device, dtype)``,
        ``to(tensor)`` or the keywords ``device=`` / ``dtype=`` (a floating dtype).

        Args:
            *args: a device, a dtype, both (in that order) or a tensor.
            **kwargs: ``device=`` and / or ``dtype=``.

        Returns:
            The new transfer (this one is unchanged).
        """
        device, dtype = parse_to_args(args, kwargs)
        return Transfer(
            self.index.to(device=device),
            self.coeff.to(device=device, dtype=dtype),
            self.n_src,
            self.kind,
            self.identity,
        )

    def __repr__(self) -> str:
        tag = ", identity" if self.identity else ""
        return f"Transfer({self.kind}, {self.n_src} -> {self.n_dst}{tag})"


def make_transfer(source: Grid, target: Grid, kind: str = "linear") -> Transfer:
    """Build Pi from ``source`` to ``target`` grid.

    ``linear``: piecewise linear interpolation (multilinear on tensor grids) with constant
    extrapolation outside the source's node range. ``nearest``: the value of the nearest source
    node. ``l2``: conservative transfer P = D_dst^{-1} L^T D_src, where L interpolates linearly
    from the target grid to the source grid and D holds quadrature weights; it preserves the
    quadrature integral, sum_i w_dst_i (P x)_i = sum_j w_src_j x_j. ``galerkin``: per axis,
    where the target is coarser, (P x)_i = int phi_i x_h / int phi_i, computed exactly, with
    x_h the piecewise-linear interpolant of the source values (constant past the end nodes)
    and phi_i the target's hats: a filter that gives the same numbers for the same function
    on any source grid; where the target is as fine or finer, linear interpolation (exact
    for a nested refinement). When both grids use the
    ``periodic`` rule, ``linear`` and ``nearest`` wrap around (the node past the last one is
    the first node shifted by the period b - a) instead of extrapolating.

    Args:
        source: the grid the values live on (n_src nodes).
        target: the grid they are carried to (n_dst nodes), on the same domain.
        kind: one of ``TRANSFER_KINDS``: ``linear``, ``nearest``, ``l2`` or ``galerkin``.

    Returns:
        The [`Transfer`][grids.transfer.Transfer], in the dtype and on the device of the
            source's weights; an identity transfer when the grids are the same.
    """
    entry = _transfer_kind(kind)
    for label, g in (("source", source), ("target", target)):
        if not isinstance(g, Grid):
            raise ValueError(f"{label}: expected a grids.Grid, got {type(g).__name__}")
    if source.domain != target.domain:
        raise ValueError(
            f"target: grids must share a domain, got {source.domain} and {target.domain}"
        )
    dtype, device = source.weights.dtype, source.weights.device
    if source.same_as(target):
        idx = torch.arange(source.n, device=device)[:, None]
        return Transfer(
            idx, torch.ones(source.n, 1, dtype=dtype, device=device), source.n, kind, identity=True
        )
    idx, coeff = entry.build(source, target)
    return Transfer(
        torch.as_tensor(idx, dtype=torch.long, device=device),
        torch.as_tensor(coeff, dtype=dtype, device=device),
        source.n,
        kind,
    )


def _describe(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    return f"{x!r:.80}"


_AxisStencil = Callable[[np.ndarray, np.ndarray, float | None], _Stencil]
"""``(src, dst, period) -> (index, coeff)``: a 1-D stencil from at least two source nodes."""


def _axis_stencil(
    src: np.ndarray, dst: np.ndarray, axis: _AxisStencil, period: float | None = None
) -> _Stencil:
    """1-D stencil: indices [n_dst, m] into ``src`` and coefficients [n_dst, m], by ``axis``
    (one of ``_axis_linear``, ``_axis_nearest``, ``_axis_galerkin``); a single source node
    gives every target node its value.

    With ``period`` (both grids periodic), the source nodes repeat with that period: a target
    node past the last source node lies between it and the first node shifted by the period.
    """
    if src.size == 1:
        return np.zeros((dst.size, 1), dtype=np.int64), np.ones((dst.size, 1))
    return axis(src, dst, period)


def _wrapped(axis: _AxisStencil, src: np.ndarray, dst: np.ndarray, period: float) -> _Stencil:
    """``axis`` on the periodic nodes ``src``: one more node, x_n = x_0 + period, stands for
    node 0."""
    i, c = axis(np.append(src, src[0] + period), dst, None)
    return i % src.size, c


def _axis_linear(src: np.ndarray, dst: np.ndarray, period: float | None = None) -> _Stencil:
    """Linear interpolation between the two source nodes around each target node, constant
    past the end nodes (or wrapping around with ``period``)."""
    if period is not None:
        return _wrapped(_axis_linear, src, dst, period)
    n = src.size
    j = np.clip(np.searchsorted(src, dst, side="right"), 1, n - 1)
    x0, x1 = src[j - 1], src[j]
    theta = np.clip((dst - x0) / (x1 - x0), 0.0, 1.0)  # clip = constant extrapolation
    return np.stack([j - 1, j], axis=1), np.stack([1.0 - theta, theta], axis=1)


def _axis_nearest(src: np.ndarray, dst: np.ndarray, period: float | None = None) -> _Stencil:
    """The nearest source node of each target node (the left one on a tie; wrapping around
    with ``period``)."""
    if period is not None:
        return _wrapped(_axis_nearest, src, dst, period)
    n = src.size
    j = np.clip(np.searchsorted(src, dst), 1, n - 1)
    left_closer = (dst - src[j - 1]) <= (src[j] - dst)
    return np.where(left_closer, j - 1, j)[:, None], np.ones((dst.size, 1))


def _axis_galerkin(src: np.ndarray, dst: np.ndarray, period: float | None = None) -> _Stencil:
    """1-D Galerkin restriction (see `make_transfer`); linear interpolation when ``dst``
    has at least as many nodes as ``src``. Integrals over [min node, max node] of both grids
    (the interpolants are constant beyond their end nodes), by 2-point Gauss-Legendre on every
    cell of the merged nodes, where both hats are linear: exact. With ``period``, both node
    sets repeat: one period from the first node, the node past the end standing for node 0."""
    if dst.size >= src.size:
        return _axis_stencil(src, dst, _axis_linear, period)
    n_src, n_dst = src.size, dst.size
    src_map, dst_map = np.arange(n_src), np.arange(n_dst)
    lo_end, hi_end = min(src[0], dst[0]), max(src[-1], dst[-1])
    if period is not None:  # one period from the first node; neighbours wrap around
        hi_end = lo_end + period
        src = np.concatenate([src[-1:] - period, src, src[:1] + period])
        dst = np.concatenate([dst[-1:] - period, dst, dst[:1] + period])
        src_map = np.concatenate([[n_src - 1], src_map, [0]])
        dst_map = np.concatenate([[n_dst - 1], dst_map, [0]])
    cuts = np.unique(np.concatenate([src, dst, [lo_end, hi_end]]))
    cuts = cuts[(cuts >= lo_end) & (cuts <= hi_end)]
    lo, hi = cuts[:-1], cuts[1:]
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    g = 1.0 / np.sqrt(3.0)
    rows, cols, vals = [], [], []
    for pt in (mid - g * half, mid + g * half):
        si, sc = _axis_stencil(src, pt, _axis_linear)  # [cells, 2]
        di, dc = _axis_stencil(dst, pt, _axis_linear)
        for a in range(di.shape[1]):
            for b in range(si.shape[1]):
                rows.append(dst_map[di[:, a]])
                cols.append(src_map[si[:, b]])
                vals.append(dc[:, a] * sc[:, b] * half)
    rows, cols, vals = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    key, inv = np.unique(rows * n_src + cols, return_inverse=True)
    total = np.bincount(inv, weights=vals)
    rows, cols = key // n_src, key % n_src
    norm = np.bincount(rows, weights=total, minlength=n_dst)  # int phi_i
    keep = total != 0.0
    return _pad_rows(rows[keep], cols[keep], total[keep] / norm[rows[keep]], n_dst)


def _tensor_stencil(source: Grid, target: Grid, axis: _AxisStencil) -> _Stencil:
    """Tensor product of the 1-D stencils ``axis`` builds, flattened row-major like
    ``Grid.nodes``."""
    idx = np.zeros((1,), dtype=np.int64)[:, None]
    coeff = np.ones((1, 1))
    periodic = (
        quadrature.get_rule(source.rule).periodic and quadrature.get_rule(target.rule).periodic
    )
    for a_src, a_dst, (lo, hi) in zip(source.axes, target.axes, source.domain.bounds):
        i1, c1 = _axis_stencil(
            a_src.detach().cpu().double().numpy(),
            a_dst.detach().cpu().double().numpy(),
            axis,
            period=hi - lo if periodic else None,
        )
        n_ax = a_src.numel()
        # combine: new target index is (old_target, this_axis_target); stencil is the product
        idx = (idx[:, None, :, None] * n_ax + i1[None, :, None, :]).reshape(
            idx.shape[0] * i1.shape[0], -1
        )
        coeff = (coeff[:, None, :, None] * c1[None, :, None, :]).reshape(idx.shape[0], -1)
    return idx, coeff


def _l2(source: Grid, target: Grid) -> _Stencil:
    """The conservative transfer D_dst^{-1} L^T D_src (see `make_transfer`)."""
    # L: target -> source interpolation, in gather form over source rows
    l_idx, l_coeff = _tensor_stencil(target, source, _axis_linear)  # [n_src, m] indices into target
    w_src = source.weights.detach().cpu().double().numpy()
    w_dst = target.weights.detach().cpu().double().numpy()
    rows = l_idx.reshape(-1)  # target index
    cols = np.repeat(np.arange(source.n), l_idx.shape[1])  # source index
    vals = (l_coeff * w_src[:, None]).reshape(-1) / w_dst[rows]
    keep = vals != 0.0
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    return _pad_rows(rows, cols, vals, target.n)


def _pad_rows(rows, cols, vals, n_rows):
    """COO entries -> padded gather form [n_rows, m] (zero coefficients where a row is short)."""
    order = np.lexsort((cols, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    counts = np.bincount(rows, minlength=n_rows)
    m = max(int(counts.max()) if counts.size else 1, 1)
    need = 16 * n_rows * m  # int64 indices and float64 coefficients
    if need > quadrature.MAX_GRID_BYTES:
        raise ValueError(
            f"target: the padded l2 transfer ({n_rows:,} rows of up to {m:,} entries) would "
            f"take about {need / 2**20:,.0f} MiB, above the bound of "
            f"{quadrature.MAX_GRID_BYTES / 2**20:,.0f} MiB (grids.quadrature.MAX_GRID_BYTES); "
            f"use a target grid closer to the source in width, or kind='linear'"
        )
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(rows.size) - starts[rows]
    idx = np.zeros((n_rows, m), dtype=np.int64)
    coeff = np.zeros((n_rows, m))
    idx[rows, pos] = cols
    coeff[rows, pos] = vals
    return idx, coeff


@dataclass(frozen=True)
class _TransferKind:
    """One kind of transfer: its name and how it is built.

    Attributes:
        name: the name `make_transfer` and a schedule's ``transfer_kind`` take.
        build: ``(source, target) -> (index, coeff)``: the gather form of P as float64 NumPy
            arrays (int64 indices ``[n_dst, m]``, coefficients ``[n_dst, m]``) for two
            different grids on one domain.
    """

    name: str
    build: Callable[[Grid, Grid], _Stencil]


_TRANSFER_KINDS: dict[str, _TransferKind] = {
    entry.name: entry
    for entry in (
        _TransferKind("linear", partial(_tensor_stencil, axis=_axis_linear)),
        _TransferKind("nearest", partial(_tensor_stencil, axis=_axis_nearest)),
        _TransferKind("l2", _l2),
        _TransferKind("galerkin", partial(_tensor_stencil, axis=_axis_galerkin)),
    )
}

TRANSFER_KINDS: tuple[str, ...] = tuple(_TRANSFER_KINDS)
"""The kinds of transfer `make_transfer` builds (and a schedule's `transfer_kind` accepts)."""


def _transfer_kind(kind: object) -> _TransferKind:
    """The entry of ``kind`` (ValueError naming the argument ``kind`` otherwise)."""
    entry = _TRANSFER_KINDS.get(kind) if isinstance(kind, str) else None
    if entry is None:
        raise ValueError(f"kind: expected one of {', '.join(TRANSFER_KINDS)}; got {kind!r}")
    return entry
