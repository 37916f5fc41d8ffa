"""Stationary kernels w(t, xi, zeta) = kappa(t, xi - zeta): continuous convolutions and
spectral (FNO-like) kernels, both with channels (``kappa(t, delta)`` is a ``c x c`` matrix).

Coefficients are piecewise constant in t on ``pieces`` equal intervals of [0, T] (one per step
of the schedule they are made for), or Legendre polynomials of degree ``time_degree`` in t.
Channel counts may change from piece to piece (a CNN's stages); a smooth-in-t kernel has one.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from grids import Domain, GridSchedule
from grids.domain import as_domain
from grids.quadrature import get_rule

from ..ops import ConvOp, Dense, GridInfo, SpectralOp
from ..validation import check_bool, check_int
from .dense import Kernel, basis_functions, check_scale

__all__ = ["PiecewiseKernel", "ConvKernel", "SpectralKernel", "window", "TAPS"]


@dataclass(frozen=True)
class _TapsRule:
    """One way of making a stationary kernel's discrete operator (a value of ``taps``), with
    the facts the conv and spectral kernels read from it instead of comparing names.

    Attributes:
        name: the rule's name, the kernel's ``taps`` attribute.
        hats: True: node j's value enters through its hat phi_j (kappa integrated against the
            piecewise-linear interpolant of the input, node j weighed by the hat's measure
            int phi_j); False: through kappa's point values weighed by the rule's quadrature
            weight omega_j.
        min_radius: the smallest conv radius a grid resolves, in grid spacings h (the kernel
            must reach a nonzero tap beside the centre).
        trim: the taps left off each end of a conv stencil ceil(r / h) spacings wide: 1 when
            the outermost one is zero (point values: the window vanishes at |m h| >= r), 0 when
            it is not (a hat average reaches r + h).
        needs_fft: a spectral kernel with this rule has the FFT path only (no dense operator
            on grids without it).
    """

    name: str
    hats: bool
    min_radius: float
    trim: int
    needs_fft: bool


_TAPS_RULES: dict[str, _TapsRule] = {
    rule.name: rule
    for rule in (
        _TapsRule("galerkin", hats=True, min_radius=1.0, trim=0, needs_fft=True),
        _TapsRule("sampled", hats=False, min_radius=2.0, trim=1, needs_fft=False),
    )
}

#: how a conv kernel's discrete operator is made: ``galerkin`` integrates the kernel exactly
#: against the piecewise-linear interpolant of the input (the same operator on every grid, for
#: rough inputs too); ``sampled`` takes the point values kappa(xi_i - zeta_j) omega_j
TAPS = tuple(_TAPS_RULES)


def _lookup_taps(taps: object) -> _TapsRule:
    """The rule named ``taps``; a ValueError naming the choices for anything else."""
    rule = _TAPS_RULES.get(taps) if isinstance(taps, str) else None
    if rule is None:
        raise ValueError(f"taps: expected one of {', '.join(TAPS)}; got {taps!r}")
    return rule


def window(u: torch.Tensor) -> torch.Tensor:
    """The window (1 - u^2)^2 on |u| < 1, 0 outside: smooth inside, vanishing with its first
    derivative at |u| = 1, so the trapezoid rule on a windowed kernel is O(h^2) accurate.

    Args:
        u: the points (any shape).

    Returns:
        The window's values, of the shape of ``u``.
    """
    return torch.clamp(1.0 - u * u, min=0.0) ** 2


def _gauss(q: int) -> tuple[torch.Tensor, torch.Tensor]:
    import numpy as np

    x, w = np.polynomial.legendre.leggauss(q)
    return torch.from_numpy(x), torch.from_numpy(w)


def hat_average(
    delta: torch.Tensor, hl: torch.Tensor, hr: torch.Tensor, r: float, modes: int
) -> torch.Tensor:
    """The windowed Legendre profile g_m(delta) = window(delta / r) psi_m(delta / r) / r
    averaged against a hat of half-widths ``hl`` (left) and ``hr`` (right):

        (2 / (hl + hr)) int g_m(delta - s) hat(s) ds,   hat(s) = 1 + s/hl on [-hl, 0],
                                                         1 - s/hr on [0, hr]

    ``delta``, ``hl``, ``hr`` broadcast to ``[N]`` -> ``[N, modes]`` (float64). The integrand is
    a polynomial on each half-cell cut to the support |delta - s| < r, so Gauss-Legendre with
    ``modes // 2 + 4`` points per piece is exact. As hl, hr -> 0 it tends to g_m(delta)."""
    delta, hl, hr = torch.broadcast_tensors(delta.double(), hl.double(), hr.double())
    x, w = _gauss(modes // 2 + 4)
    x, w = x.to(delta.device), w.to(delta.device)
    total = delta.new_zeros(*delta.shape, modes)
    for lo, hi, sign, half in (
        (torch.maximum(-hl, delta - r), torch.minimum(torch.zeros_like(delta), delta + r), 1, hl),
        (torch.maximum(torch.zeros_like(delta), delta - r), torch.minimum(hr, delta + r), -1, hr),
    ):
        length = (hi - lo).clamp(min=0.0)
        s = (lo + hi)[..., None] / 2 + length[..., None] / 2 * x  # [N, q]
        u = ((delta[..., None] - s) / r).clamp(-1.0, 1.0)
        psi = basis_functions(u.reshape(-1), -1.0, 1.0, modes).reshape(*u.shape, modes)
        f = psi * (window(u) / r * (1.0 + sign * s / half[..., None]))[..., None]
        total = total + (f * w[:, None]).sum(-2) * (length / 2)[..., None]
    return total * (2.0 / (hl + hr))[..., None]


def _hat_geometry(
    nodes: torch.Tensor, shape: tuple[int, ...], bounds: Sequence[tuple[float, float]]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The hats of the piecewise-linear interpolant on a tensor grid (nodes ``[n, d]`` in
    row-major order of ``shape``; the interpolant is constant from the end nodes to the box):
    per node and axis the half-widths (left, right) of its hat, mirrored at the end nodes,
    ``[n, d]`` each, and its measure m_j = int_Omega phi_j ``[n]`` (a product over the axes:
    (z_{j+1} - z_{j-1}) / 2 inside, (z_0 - a) + (z_1 - z_0) / 2 at the first node). Device
    operations on static shapes only (no host synchronisation)."""
    d = len(shape)
    hl, hr, measure = [], [], None
    grid = nodes.reshape(*shape, d)
    for a in range(d):
        index = [0] * d
        index[a] = slice(None)
        u = grid[(*index, a)]  # the coordinates of axis a [n_a]
        lo, hi = bounds[a]
        view = [1] * d
        view[a] = shape[a]
        if shape[a] == 1:
            left = right = m = u.new_full((1,), hi - lo)
        else:
            gaps = u[1:] - u[:-1]
            left = torch.cat([gaps[:1], gaps])
            right = torch.cat([gaps, gaps[-1:]])
            m = torch.cat([(u[:1] - lo) + gaps[:1] / 2, (left + right)[1:-1] / 2,
                           (hi - u[-1:]) + gaps[-1:] / 2])  # fmt: skip
        hl.append(left.reshape(view).expand(shape).reshape(-1))
        hr.append(right.reshape(view).expand(shape).reshape(-1))
        m = m.reshape(view).expand(shape).reshape(-1)
        measure = m if measure is None else measure * m
    return torch.stack(hl, -1), torch.stack(hr, -1), measure


def _map_main(v: torch.Tensor, q: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Main coefficients ``[c_out, c_in, ...]`` in new channel bases: both channel dimensions
    contracted, Q^T C R."""
    return torch.einsum("oi...,or,is->rs...", v, q, r)


def _map_bias(v: torch.Tensor, q: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """A bias ``[c_out]`` in the new output basis: Q^T b (``r`` is not read)."""
    return q.T @ v


def _map_mix(v: torch.Tensor, q: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """A pointwise channel mix ``[c_out, c_in]`` in new channel bases: Q^T A R."""
    return q.T @ v @ r


class PiecewiseKernel(Kernel):
    """Per-piece parameter tensors (channels may change between pieces) or a smooth-in-t
    expansion (one channel count).

    The base of the stationary kernels [`ConvKernel`][spacetime_nets.kernels.ConvKernel] and
    [`SpectralKernel`][spacetime_nets.kernels.SpectralKernel]: it holds the pieces, their
    channel counts and the coefficients at time t; it is not built on its own.

    Args:
        T: the horizon the time variable spans (set by the subclasses).
    """

    @property
    def taps(self) -> str:
        """The name of the rule that makes the discrete operator (one of ``TAPS``; conv and
        spectral kernels). Setting it checks the name and switches the rule.

        Returns:
            ``"galerkin"`` or ``"sampled"``.
        """
        return self._taps_rule.name

    @taps.setter
    def taps(self, value: str) -> None:
        self._taps_rule = _lookup_taps(value)

    def __setstate__(self, state: dict) -> None:
        name = state.pop("taps", None)  # pickled before the rule was an object: only its name
        super().__setstate__(state)
        if name is not None:
            self.taps = name

    def _setup_pieces(self, channels, pieces, time_degree) -> None:
        self._cache: dict = {}  # per-grid tensors (taps, hat scales), keyed by static facts
        if time_degree is not None:
            self.time_degree = check_int("time_degree", time_degree, 0)
            self.pieces = self.time_degree + 1
        else:
            self.time_degree = None
            self.pieces = check_int("pieces", pieces)
        if isinstance(channels, int) and not isinstance(channels, bool):
            channels = [channels] * self.pieces
        if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence):
            raise ValueError(f"channels: expected an int or one int per piece, got {channels!r}")
        channels = [check_int("channels", c) for c in channels]
        if len(channels) != self.pieces:
            raise ValueError(
                f"channels: need one count per piece ({self.pieces}), got {len(channels)}"
            )
        if self.time_degree is not None and len(set(channels)) > 1:
            raise ValueError("channels: a kernel smooth in t (time_degree) has one channel count")
        self.piece_channels = channels
        self.channels = channels[0] if len(set(channels)) == 1 else None

    def _init_pieces(self, main: nn.ParameterList, make, init_scale: float, generator) -> None:
        """Per piece (c channels): the main coefficients ``make(c)``, then the bias and the
        pointwise mix when the kernel has them (``bias_coeff`` / ``point`` not None)."""
        for c in self.piece_channels:
            main.append(nn.Parameter(make(c)))
            if self.bias_coeff is not None:
                b = (torch.rand(c, generator=generator) * 2 - 1) * init_scale / math.sqrt(c)
                self.bias_coeff.append(nn.Parameter(b))
            if self.point is not None:
                a = torch.randn(c, c, generator=generator) * init_scale / math.sqrt(c)
                self.point.append(nn.Parameter(a))

    @classmethod
    def for_schedule(cls, schedule: GridSchedule, **kwargs):
        """One piece per step of ``schedule`` (channels from the schedule when it has them).

        Args:
            schedule: gives the domain, T and (by default) ``pieces`` = K and the channels
                c_0..c_{K-1}.
            **kwargs (object): the other arguments of the constructor.

        Returns:
            (PiecewiseKernel): the kernel, of the class this is called on.
        """
        kwargs.setdefault("pieces", schedule.num_steps)
        if schedule.channels is not None:
            kwargs.setdefault("channels", list(schedule.channels[:-1]))
        return cls(schedule.domain, T=schedule.T, **kwargs)

    def piece(self, t: float) -> int:
        """The piece holding time t.

        Args:
            t: the time (clamped to [0, T]).

        Returns:
            ``floor(pieces t / T)`` (with a tolerance for t_k a few ulps low), at most
                ``pieces - 1``.
        """
        tau = min(max(t / self.T, 0.0), 1.0)
        # t_k = k T / K can come out a few ulps low: without the tolerance step k would use
        # piece k - 1
        return min(int(tau * self.pieces + 1e-9), self.pieces - 1)

    def channels_at(self, k: int, t: float) -> int | None:
        """The channel count of the piece holding t (``k`` is not read).

        Args:
            k: the step.
            t: the time t_k.

        Returns:
            c of that piece.
        """
        if self.time_degree is not None:
            return self.piece_channels[0]
        return self.piece_channels[self.piece(t)]

    def _hat_scale(self, info: GridInfo, like: torch.Tensor) -> torch.Tensor | None:
        """m_j / prod(h) ``[n]`` on an equispaced grid, m_j = int phi_j the measure of node j's
        hat: 1/2 per axis whose end nodes lie on the box (1/4 at a corner), 1 elsewhere; None
        when it is 1 everywhere (periodic grids, cell-centred nodes). Cached per grid shape,
        device and dtype, so the forward pass does not rebuild it."""
        ends = tuple(
            abs(f - lo) < 1e-9 * h for f, (lo, _), h in zip(info.first, self.domain.bounds, info.h)
        )
        if info.periodic or not any(ends):
            return None
        key = ("hat scale", info.shape, ends, like.device, like.dtype)
        hit = self._cache.get(key)
        if hit is None:
            scale = None
            for n, end in zip(info.shape, ends):
                axis = torch.ones(n, dtype=torch.float64)
                if end and n > 1:  # a lone node's hat spans the box: measure h
                    axis[0] = axis[-1] = 0.5
                scale = axis if scale is None else torch.outer(scale, axis).reshape(-1)
            hit = self._cache[key] = scale.to(device=like.device, dtype=like.dtype)
        return hit

    def _warn_dense(self, k: int, g: GridInfo, needs: str) -> None:
        """Warn once per kernel that grid ``k`` runs the O(c^2 n^2) dense path (not with
        ``allow_dense``)."""
        if getattr(self, "allow_dense", False) or getattr(self, "_warned_dense", False):
            return
        self._warned_dense = True
        warnings.warn(
            f"{type(self).__name__}: grid {k} ({g.shape} nodes) has no fast path (it needs "
            f"{needs}); the dense path costs O(c^2 n^2) per step, often 10-100x the fast one. "
            "Use an equispaced grid (trapezoid, midpoint, periodic) or pass allow_dense=True",
            stacklevel=4,
        )

    def _coefficients(self) -> nn.ParameterList:
        """The main coefficients per piece, ``[c_out, c_in, ...]``."""
        raise NotImplementedError

    def map_channels_(
        self,
        out: Sequence[torch.Tensor],
        inp: Sequence[torch.Tensor],
        channels: int | None = None,
    ) -> None:
        """A change of channel bases, in place: per piece p, with Q_p = ``out[p]`` ``[c, r_out]``
        and R_p = ``inp[p]`` ``[c, r_in]``, C_p -> Q_p^T C_p R_p on the channel dimensions of
        the coefficients, b_p -> Q_p^T b_p and A_p -> Q_p^T A_p R_p. Where the input lies in
        the span of R_p's columns (x = R_p z), the new operator gives Q_p^T (K x), the old
        output in the new basis. With r_out != r_in (a bottleneck's hidden channels) the
        operator runs on equispaced grids only (the convolution and FFT paths).

        Args:
            out: one ``[c, r_out]`` matrix per piece for the output channels (a kernel smooth
                in t needs the same matrix for every piece: its pieces are its Legendre
                coefficients in t).
            inp: one ``[c, r_in]`` matrix per piece for the input channels.
            channels: the state's channel count the kernel reports from now on
                ([`channels_at`][spacetime_nets.kernels.PiecewiseKernel.channels_at]); None:
                r_out, which must equal r_in.
        """
        out, inp = list(out), list(inp)
        if len(out) != self.pieces or len(inp) != self.pieces:
            raise ValueError(
                f"out, inp: expected one matrix per piece ({self.pieces}), got {len(out)} "
                f"and {len(inp)}"
            )
        r_out, r_in = {q.shape[1] for q in out}, {q.shape[1] for q in inp}
        if len(r_out) != 1 or len(r_in) != 1:
            raise ValueError(
                f"out, inp: every piece needs the same new channel counts, got {r_out}, {r_in}"
            )
        if channels is None and r_out != r_in:
            raise ValueError(
                f"channels: needed when the maps change the channels to different counts "
                f"({r_out.pop()} out, {r_in.pop()} in)"
            )
        rank = check_int("channels", channels) if channels is not None else r_out.pop()
        if self.time_degree is not None and any(
            not torch.equal(q, out[0]) or not torch.equal(r, inp[0]) for q, r in zip(out, inp)
        ):
            raise ValueError("out, inp: a kernel smooth in t takes one map for every piece")
        lists: list[tuple[nn.ParameterList | None, Callable[..., torch.Tensor]]] = [
            (self._coefficients(), _map_main),
            (self.bias_coeff, _map_bias),
            (self.point, _map_mix),
        ]
        with torch.no_grad():
            for params, change in lists:
                if params is None:
                    continue
                for p, (q, r) in enumerate(zip(out, inp)):
                    v = params[p]
                    new = change(v, q.to(v), r.to(v))
                    params[p] = nn.Parameter(new.contiguous(), requires_grad=v.requires_grad)
        self.piece_channels = [rank] * self.pieces
        self.channels = rank
        self._cache.clear()

    def _at(self, params: nn.ParameterList, t: float) -> torch.Tensor:
        """The coefficient tensor at time t (times ``output_scale``)."""
        if self.time_degree is None:
            v = params[self.piece(t)]
        else:
            tau = min(max(t / self.T, 0.0), 1.0)
            L = basis_functions(torch.tensor([tau], dtype=torch.float64), 0.0, 1.0, self.pieces)
            L = L[0].tolist()
            v = sum(li * p for li, p in zip(L, params))
        return v * self.output_scale if self.output_scale != 1.0 else v


def _square_for_dense(coeff: torch.Tensor, k: int) -> None:
    """The dense block operator maps c channels to c: refuse other coefficients clearly."""
    if coeff.shape[0] != coeff.shape[1]:
        raise ValueError(
            f"schedule: grid {k} is not equispaced, and this kernel maps {coeff.shape[1]} "
            f"channels to {coeff.shape[0]} (hidden channels of a reduced bottleneck), which "
            "runs on equispaced grids only"
        )


def _check_flag(name: str, v) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"{name}: expected True or False, got {v!r}")
    return v


def _per_axis(name: str, v, dim: int) -> tuple[float, ...]:
    """One positive finite real per axis (a single value is used on every axis; NumPy reals
    too, never a bool or a string) as a tuple of ``dim`` floats."""
    vals = tuple(v) if isinstance(v, (tuple, list)) else (v,) * dim
    if len(vals) != dim:
        raise ValueError(f"{name}: expected one value or {dim} (one per axis), got {v!r}")
    out = []
    for x in vals:
        if (
            isinstance(x, bool)
            or not isinstance(x, numbers.Real)
            or not (math.isfinite(x) and x > 0)
        ):
            raise ValueError(f"{name}: expected positive finite numbers, got {v!r}")
        out.append(float(x))
    return tuple(out)


class ConvKernel(PiecewiseKernel):
    """A continuous convolution: w(t, xi, zeta) = kappa(t, xi - zeta) with a physical radius r,

        kappa(t, delta) = r^-d prod_a window(delta_a / r_a) sum_m C_m(t) psi_m(delta / r),

    ``psi_m`` the tensor Legendre polynomials of degree < ``modes`` per axis, ``C_m(t)`` the
    ``c x c`` coefficient matrices (one set per piece), plus a bias b(t) ``[c]`` and an optional
    pointwise channel mix A(t) ``[c, c]``.

    The discrete operator (``taps``): ``galerkin`` (default) integrates kappa exactly against
    the piecewise-linear interpolant of the input, T_ij = int kappa(xi_i - zeta) phi_j(zeta)
    dzeta with phi_j the hat of node j (per axis on tensor grids), so a rough input gives the
    same output on a grid and on its nested refinements; ``sampled`` takes kappa(xi_i - zeta_j)
    omega_j, a quadrature that is accurate only for inputs smooth at the grid scale. Galerkin
    taps weigh node j by its hat's measure m_j = int phi_j, whatever the rule's weights (the
    interpolant does not depend on the rule); an end node's half hat is taken as m_j times the
    kernel's average over the mirrored full hat (O(h^2)). On
    equispaced grids a step is one ``conv1d`` / ``conv2d`` (refining h adds taps, never
    parameters); on other grids the same operator is built densely.

    Args:
        domain: the box Omega.
        channels: c, or one count per piece (the stages of a CNN).
        radius: the physical radius r: a float, a tuple (one per axis), or a list of either
            with one entry per piece (a radius that grows with the stage of a pyramid).
        modes: Legendre polynomials per axis in delta / r.
        pieces: equal intervals of [0, T] with their own coefficients.
        T: the horizon the time variable spans.
        time_degree: Legendre degree in t instead of pieces (one channel count).
        pointwise: add the pointwise channel mix A(t) (True or False).
        init_scale: scale of the initial coefficients (the operator's norm is O(init_scale)).
        bias: add b(t).
        generator: random generator of the initialisation.
        taps: ``galerkin`` or ``sampled`` (see above).
        allow_dense: build the dense operator on non-equispaced grids without a warning.
    """

    stationary = True

    def __init__(
        self,
        domain: Domain | Sequence = (0.0, 1.0),
        channels: int | Sequence[int] = 16,
        radius: float | Sequence = 0.1,
        modes: int = 3,
        pieces: int = 1,
        T: float = 1.0,
        time_degree: int | None = None,
        pointwise: bool = False,
        init_scale: float = 1.0,
        bias: bool = True,
        generator: torch.Generator | None = None,
        taps: str = "galerkin",
        allow_dense: bool = False,
    ) -> None:
        super().__init__(T)
        init_scale = check_scale(init_scale)
        self.domain = as_domain(domain)
        self._setup_pieces(channels, pieces, time_degree)
        self.modes = check_int("modes", modes)
        self.taps = taps  # checked: the property looks the rule up
        self.allow_dense = _check_flag("allow_dense", allow_dense)
        d = self.domain.dim
        per_piece = isinstance(radius, list) and len(radius) == self.pieces
        if per_piece and (self.pieces > 1 or isinstance(radius[0], (tuple, list))):
            self.radii = [_per_axis("radius", r, d) for r in radius]
        elif isinstance(radius, list) and len(radius) != d:
            raise ValueError(
                f"radius: a list gives one radius per piece (one per step of the schedule): "
                f"expected {self.pieces} entries, got {len(radius)}; or give one float for "
                f"every step, or a tuple of {d} (one per axis)"
            )
        else:
            self.radii = [_per_axis("radius", radius, d)] * self.pieces
        M = self.modes**d
        self.coeff = nn.ParameterList()
        self.bias_coeff = nn.ParameterList() if bias else None
        self.point = nn.ParameterList() if check_bool("pointwise", pointwise) else None
        # the operator's norm is O(init_scale): the kernel integrates to O(1) whatever r
        self._init_pieces(
            self.coeff,
            lambda c: (
                torch.randn(c, c, M, generator=generator)
                * (init_scale * math.sqrt(2.0**d) / math.sqrt(c * M))
            ),
            init_scale,
            generator,
        )

    def _coefficients(self) -> nn.ParameterList:
        return self.coeff

    def radius_at(self, t: float) -> tuple[float, ...]:
        """The radius r of the piece holding t.

        Args:
            t: the time.

        Returns:
            r per axis.
        """
        return self.radii[0] if self.time_degree is not None else self.radii[self.piece(t)]

    def profile(self, delta: torch.Tensor, r: tuple[float, ...]) -> torch.Tensor:
        """r^-d window(delta / r) psi_m(delta / r): ``[..., d] -> [..., M]`` (float64 values).

        Args:
            delta: the offsets xi - zeta, ``[..., d]``.
            r: the radius per axis.

        Returns:
            ``[..., M]``, M = modes^d, the tensor Legendre functions windowed.
        """
        d = len(r)
        out = None
        for a in range(d):
            u = delta[..., a] / r[a]
            psi = basis_functions(u.clamp(-1, 1).reshape(-1), -1.0, 1.0, self.modes)
            psi = psi.reshape(*u.shape, self.modes) * (window(u) / r[a])[..., None]
            out = psi if out is None else (out[..., :, None] * psi[..., None, :]).flatten(-2)
        return out

    def galerkin_profile(
        self,
        delta: torch.Tensor,
        hl: torch.Tensor,
        hr: torch.Tensor,
        r: tuple[float, ...],
    ) -> torch.Tensor:
        """The profile of [`profile`][spacetime_nets.kernels.ConvKernel.profile] averaged
        against the input node's hat, per axis (``hat_average``): ``delta [..., d]``,
        half-widths ``hl``, ``hr`` broadcastable to it -> ``[..., M]`` (float64).

        Args:
            delta: the offsets, ``[..., d]``.
            hl: the hats' left half-widths per axis, broadcastable to ``delta``.
            hr: the hats' right half-widths per axis.
            r: the radius per axis.

        Returns:
            ``[..., M]``.
        """
        delta, hl, hr = torch.broadcast_tensors(delta.double(), hl.double(), hr.double())
        out = None
        for a in range(len(r)):
            psi = hat_average(
                delta[..., a].reshape(-1),
                hl[..., a].reshape(-1),
                hr[..., a].reshape(-1),
                r[a],
                self.modes,
            ).reshape(*delta.shape[:-1], self.modes)
            out = psi if out is None else (out[..., :, None] * psi[..., None, :]).flatten(-2)
        return out

    def _taps_basis(self, h: tuple[float, ...], r: tuple[float, ...], like: torch.Tensor):
        """Basis values at the taps m h, flipped for cross-correlation: ``[*k, M]`` (cached
        per kind of taps, spacing, radius, device and dtype). Sampled: point values at
        |m h| < r (the window vanishes at |m h| = r); Galerkin: hat averages, nonzero for
        |m h| < r + h."""
        key = (self.taps, h, r, like.device, like.dtype)
        hit = self._cache.get(key)
        if hit is None:
            trim = self._taps_rule.trim
            R = [max(int(math.ceil(ri / hi - 1e-9)) - trim, 0) for ri, hi in zip(r, h)]
            axes = [torch.arange(Ri, -Ri - 1, -1, dtype=torch.float64) * hi for Ri, hi in zip(R, h)]
            mesh = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
            if self._taps_rule.hats:
                hh = torch.tensor(h, dtype=torch.float64)
                prof = self.galerkin_profile(mesh, hh, hh, r)
            else:
                prof = self.profile(mesh, r)
            hit = prof.to(device=like.device, dtype=like.dtype)
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[key] = hit
        return hit

    def check_resolution(self, steps: Sequence[tuple[float, GridInfo]], allow_underresolved=False):
        """Every grid resolves the radius: r >= h (Galerkin taps: the kernel spans a cell on
        each side) or r >= 2 h (sampled taps: a nonzero tap beside the centre); a grid without
        the conv path (not equispaced) warns once unless ``allow_dense``.

        Args:
            steps: ``(t_k, GridInfo)`` for each grid of the schedule.
            allow_underresolved (bool): skip the radius checks (the warning stays).
        """
        need = self._taps_rule.min_radius
        for k, (t, g) in enumerate(steps):
            if not g.equispaced:
                self._warn_dense(k, g, "equispaced nodes")
            if allow_underresolved:
                continue
            r = self.radius_at(t)
            for a, (ra, ha) in enumerate(zip(r, g.h)):
                if ra < need * ha * (1 - 1e-9):
                    raise ValueError(
                        f"radius: {ra:g} on axis {a} is under-resolved by grid {k} (spacing "
                        f"{ha:.4g}): {self.taps} taps need radius >= {need:g} h; use a larger "
                        "radius, a finer grid, or allow_underresolved=True"
                    )
                if g.periodic and 2 * ra >= g.lengths[a]:
                    raise ValueError(
                        f"radius: {ra:g} must be below half the period {g.lengths[a]:g} on axis {a}"
                    )

    def kernel_values(self, t: float, delta: torch.Tensor) -> torch.Tensor:
        """kappa(t, delta) ``[c, c, *delta.shape[:-1]]`` at offsets ``delta`` ``[..., d]``.

        Args:
            t: the time.
            delta: the offsets, ``[..., d]``.

        Returns:
            ``[c, c, ...]`` (output channel, input channel), ``output_scale`` included.
        """
        C = self._at(self.coeff, t)
        prof = self.profile(delta.double(), self.radius_at(t)).to(C.dtype)
        return torch.einsum("oim,...m->oi...", C, prof)

    def step_op(self, k: int, t: float, out, inp):
        """The operator on G_k (stationary kernels step on G_k, then transfer): a ``ConvOp`` on
        equispaced grids, the dense block matrix elsewhere.

        Args:
            k: the step.
            t: the time t_k.
            out (tuple): the output grid's ``(nodes, weights, GridInfo)`` (the same grid as
                ``inp``: the operator is square).
            inp (tuple): the grid G_k's ``(nodes [n, d], weights [n], GridInfo)``.

        Returns:
            (ConvOp | Dense): the step operator.
        """
        nodes, w, info = inp
        C = self._at(self.coeff, t)
        c = C.shape[0]
        b = self._at(self.bias_coeff, t) if self.bias_coeff is not None else C.new_zeros(c)
        A = self._at(self.point, t) if self.point is not None else None
        r = self.radius_at(t)
        if info.equispaced:
            basis = self._taps_basis(info.h, r, C)
            taps = torch.einsum("oim,...m->oi...", C, basis) * math.prod(info.h)
            if self._taps_rule.hats:
                # the hats' measures, not the rule's weights (Simpson's alternate)
                scale = self._hat_scale(info, w)
            else:
                scale = None if info.equal_weights else w / math.prod(info.h)
            return ConvOp(taps, b, A, info.shape, info.periodic, scale, math.prod(info.h))
        _square_for_dense(C, k)
        nd = nodes.double()
        delta = nd[:, None, :] - nd[None, :, :]
        if self._taps_rule.hats:  # T_ij = m_j * (the kernel averaged against the hat of node j)
            hl, hr, m = _hat_geometry(nd, info.shape, self.domain.bounds)
            prof = self.galerkin_profile(delta, hl[None], hr[None], r).to(C.dtype)
            W = torch.einsum("oim,...m->oi...", C, prof) * m.to(C.dtype)
        else:
            W = self.kernel_values(t, delta).to(C.dtype) * w
        W = W.permute(0, 2, 1, 3)  # [c, n, c, n]
        if A is not None:
            eye = torch.eye(nodes.shape[0], dtype=C.dtype, device=C.device)
            W = W + A[:, None, :, None] * eye[None, :, None, :]
        n = nodes.shape[0]
        return Dense(W.reshape(c * n, c * n), b.repeat_interleave(n))

    def extra_repr(self) -> str:
        """The line printed in the module's repr.

        Returns:
            The channels, radius, modes, pieces, T and taps.
        """
        return (
            f"channels={self.piece_channels if self.channels is None else self.channels}, "
            f"radius={self.radii[0] if len(set(self.radii)) == 1 else self.radii}, "
            f"modes={self.modes}, pieces={self.pieces}, T={self.T:g}, taps={self.taps}"
        )


class SpectralKernel(PiecewiseKernel):
    """An FNO-like kernel: kappa(t, delta) = sum_m K_m(t) e^{2 pi i m.delta/P} over |m_a| <
    ``modes`` per axis (real: K_{-m} = conj(K_m)), ``K_m`` complex ``c x c``, P the ``period``
    per axis, plus the pointwise channel mix A(t) x(xi) and a bias.

    On a periodic box P is the box's length. On a box with boundaries P >= 2 L (default 2 L):
    kappa is then one band-limited function on the offsets (-L, L) that occur in Omega, and a
    step is the linear (non-circular) convolution y(xi) = int_Omega kappa(xi - zeta) x(zeta)
    dzeta by the grid's quadrature. On equispaced grids with P / h an integer N a step is
    ``rfft`` of size N (zero-padded) -> multiply the lowest modes -> inverse FFT; elsewhere the
    same kernel is evaluated densely, which costs O(c^2 n^2) and warns (``allow_dense=True``
    silences it). Valid while 2 ``modes`` < N on every axis.

    ``taps="sampled"`` weighs node j by its quadrature weight (spectrally accurate on smooth
    inputs); ``"galerkin"`` integrates each mode exactly against the piecewise-linear
    interpolant of the input, a factor sinc^2(m h / P) per mode and hat measures as weights
    (the same operator for nested grids, on rough inputs too; end nodes of a box to O(h^2)).

    Args:
        domain: the box (1-D or 2-D).
        channels: c, or one count per piece.
        modes: kept frequencies per axis (an int or one per axis).
        pieces: equal intervals of [0, T] with their own coefficients.
        T: the horizon the time variable spans.
        time_degree: Legendre degree in t instead of pieces (one channel count).
        pointwise: add the pointwise channel mix A(t) (the FNO's skip term; True or False).
        init_scale: scale of the initial coefficients.
        bias: add b(t).
        generator: random generator of the initialisation.
        period: P per axis (one number or one per axis; None: the box's length, the periodic
            kernel; [`for_schedule`][spacetime_nets.kernels.SpectralKernel.for_schedule]
            takes twice it on grids with boundaries).
        taps: ``"sampled"`` or ``"galerkin"`` (see above).
        allow_dense: run the dense path on grids without the FFT path without a warning.
    """

    stationary = True

    def __init__(
        self,
        domain: Domain | Sequence = (0.0, 1.0),
        channels: int | Sequence[int] = 16,
        modes: int | Sequence[int] = 8,
        pieces: int = 1,
        T: float = 1.0,
        time_degree: int | None = None,
        pointwise: bool = True,
        init_scale: float = 1.0,
        bias: bool = True,
        generator: torch.Generator | None = None,
        period: float | Sequence[float] | None = None,
        taps: str = "sampled",
        allow_dense: bool = False,
    ) -> None:
        super().__init__(T)
        init_scale = check_scale(init_scale)
        self.domain = as_domain(domain)
        self._setup_pieces(channels, pieces, time_degree)
        d = self.domain.dim
        if d > 2:
            raise ValueError(f"domain: SpectralKernel supports 1-D and 2-D boxes, got {d}-D")
        ms = modes if isinstance(modes, (tuple, list)) else (modes,) * d
        if len(ms) != d:
            raise ValueError(f"modes: expected one int or {d}, got {modes!r}")
        self.modes = tuple(check_int("modes", m) for m in ms)
        lengths = tuple(b - a for a, b in self.domain.bounds)
        self.period = lengths if period is None else _per_axis("period", period, d)
        for a, (P, L) in enumerate(zip(self.period, lengths)):
            if P < L * (1 - 1e-12):
                raise ValueError(
                    f"period: {P:g} on axis {a} is shorter than the box ({L:g}); expected a "
                    "period >= the box's length (2 L on a box with boundaries)"
                )
        self.taps = taps  # checked: the property looks the rule up
        self.allow_dense = _check_flag("allow_dense", allow_dense)
        shape = self.modes if d == 1 else (2 * self.modes[0] - 1, self.modes[1])
        vol = self.domain.volume
        self.weight = nn.ParameterList()
        self.bias_coeff = nn.ParameterList() if bias else None
        self.point = nn.ParameterList() if check_bool("pointwise", pointwise) else None
        self._init_pieces(
            self.weight,
            lambda c: (
                torch.randn(c, c, *shape, 2, generator=generator)
                * (init_scale / (vol * math.sqrt(c * math.prod(shape))))
            ),
            init_scale,
            generator,
        )

    def _coefficients(self) -> nn.ParameterList:
        return self.weight

    @classmethod
    def for_schedule(cls, schedule: GridSchedule, **kwargs):
        """One piece per step of ``schedule``; the period is the box's length on periodic
        grids and twice it on grids with boundaries (a linear convolution over the box).

        Args:
            schedule: gives the domain, T, the period and (by default) ``pieces`` = K and the
                channels.
            **kwargs (object): the other arguments of the constructor.

        Returns:
            (SpectralKernel): the kernel.
        """
        if kwargs.get("period") is None and not get_rule(schedule.grids[0].rule).periodic:
            kwargs["period"] = tuple(2 * (b - a) for a, b in schedule.domain.bounds)
        return super().for_schedule(schedule, **kwargs)

    def fft_size(self, g: GridInfo) -> tuple[int, ...] | None:
        """N = P / h per axis where the FFT path applies (an equispaced grid whose spacing
        divides the period: on a periodic grid, P must be its length), else None.

        Args:
            g: the grid's facts.

        Returns:
            N per axis, or None.
        """
        if not g.equispaced:
            return None
        out = []
        for P, h, L in zip(self.period, g.h, g.lengths):
            if g.periodic and abs(P - L) > 1e-9 * L:
                return None
            N = P / h
            if abs(N - round(N)) > 1e-6 * N:
                return None
            out.append(int(round(N)))
        return tuple(out)

    def check_resolution(self, steps: Sequence[tuple[float, GridInfo]], allow_underresolved=False):
        """Every grid resolves the modes (2 modes < N = P / h per axis); a periodic grid needs
        the period P = its length, a box P >= 2 L; a grid without the FFT path warns (once)
        unless ``allow_dense``.

        Args:
            steps: ``(t_k, GridInfo)`` for each grid of the schedule.
            allow_underresolved (bool): skip the check of the modes (the period checks stay).
        """
        for k, (_, g) in enumerate(steps):
            for a, (P, L) in enumerate(zip(self.period, g.lengths)):
                if g.periodic and abs(P - L) > 1e-9 * L:
                    raise ValueError(
                        f"period: {P:g} on axis {a} differs from the periodic box's length "
                        f"{L:g} (grid {k}); a kernel on a periodic grid has the box's period"
                    )
                if not g.periodic and P < 2 * L * (1 - 1e-9):
                    raise ValueError(
                        f"period: {P:g} on axis {a} is below twice the box's length {L:g} "
                        f"(grid {k} has boundaries): kappa(xi - zeta) would couple the two ends "
                        "of the box; use period >= 2 L (SpectralKernel.for_schedule does)"
                    )
            N = self.fft_size(g)
            if N is None and self._taps_rule.needs_fft:
                raise ValueError(
                    f"taps: {self.taps} spectral taps need the FFT path (equispaced nodes whose "
                    f"spacing divides the period), grid {k} has {g.shape} nodes without it; "
                    "use taps='sampled' or an equispaced grid"
                )
            if N is None:
                self._warn_dense(k, g, "equispaced nodes whose spacing divides the period")
            if allow_underresolved:
                continue
            sizes = N or tuple(n * P / L for n, P, L in zip(g.shape, self.period, g.lengths))
            for a, (m, Na) in enumerate(zip(self.modes, sizes)):
                if 2 * m >= Na:
                    what = "nodes" if g.periodic else f"points per period {self.period[a]:g}"
                    raise ValueError(
                        f"modes: {m} on axis {a} needs more than {2 * m} {what}, grid "
                        f"{k} has {Na:g}"
                        " (modes >= n/2 alias); use fewer modes, a finer grid, or "
                        "allow_underresolved=True"
                    )

    def kernel_values(self, t: float, delta: torch.Tensor) -> torch.Tensor:
        """kappa(t, delta) ``[c, c, *delta.shape[:-1]]`` (real) at offsets ``delta [..., d]``.

        Args:
            t: the time.
            delta: the offsets, ``[..., d]``.

        Returns:
            ``[c, c, ...]`` (output channel, input channel), ``output_scale`` included.
        """
        K = torch.view_as_complex(self._at(self.weight, t).contiguous())
        d = len(self.modes)
        L = self.period
        dl = delta.double()
        if d == 1:
            m = torch.arange(self.modes[0], dtype=torch.float64, device=dl.device)
            theta = 2 * math.pi * dl[..., 0, None] * m / L[0]  # [..., M]
            mult = torch.where(m == 0, 1.0, 2.0).to(torch.float64)
        else:
            M0, M1 = self.modes
            m0 = torch.cat([torch.arange(M0), torch.arange(-M0 + 1, 0)]).double().to(dl.device)
            m1 = torch.arange(M1, dtype=torch.float64, device=dl.device)
            theta = (
                2
                * math.pi
                * (dl[..., 0, None, None] * m0[:, None] / L[0] + dl[..., 1, None, None] * m1 / L[1])
            )
            mult = torch.where(m1 == 0, 1.0, 2.0).to(torch.float64).expand(len(m0), M1)
        e = torch.polar(mult.expand(theta.shape), theta).to(K.dtype)  # [..., *modes]
        nd = len(self.modes)
        idx = "xy"[:nd]
        return torch.einsum(f"oi{idx},...{idx}->oi...", K, e).real

    def _frequencies(self, device) -> list[torch.Tensor]:
        """The signed frequencies m per axis in the layout of the coefficients (float64)."""
        if len(self.modes) == 1:
            return [torch.arange(self.modes[0], dtype=torch.float64, device=device)]
        M0, M1 = self.modes
        m0 = torch.cat([torch.arange(M0), torch.arange(-M0 + 1, 0)]).double().to(device)
        return [m0, torch.arange(M1, dtype=torch.float64, device=device)]

    def _galerkin_mult(self, h: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
        """prod_a sinc^2(m_a h_a / P_a) ``[*modes]``: the Fourier transform of a hat of
        half-width h over its measure (cached per spacing, device and dtype)."""
        key = ("galerkin mult", h, like.device, like.dtype)
        hit = self._cache.get(key)
        if hit is None:
            mult = None
            for m, ha, P in zip(self._frequencies(None), h, self.period):
                f = torch.sinc(m * ha / P) ** 2
                mult = f if mult is None else torch.outer(mult, f)
            hit = self._cache[key] = mult.to(device=like.device, dtype=like.dtype)
        return hit

    def step_op(self, k: int, t: float, out, inp):
        """The operator on G_k (stationary kernels step on G_k, then transfer): a
        ``SpectralOp`` where the FFT path applies
        ([`fft_size`][spacetime_nets.kernels.SpectralKernel.fft_size]), the dense block matrix
        elsewhere.

        Args:
            k: the step.
            t: the time t_k.
            out (tuple): the output grid's ``(nodes, weights, GridInfo)`` (the same grid as
                ``inp``: the operator is square).
            inp (tuple): the grid G_k's ``(nodes [n, d], weights [n], GridInfo)``.

        Returns:
            (SpectralOp | Dense): the step operator.
        """
        nodes, w, info = inp
        Wt = self._at(self.weight, t)
        c = Wt.shape[0]
        b = self._at(self.bias_coeff, t) if self.bias_coeff is not None else Wt.new_zeros(c)
        A = self._at(self.point, t) if self.point is not None else None
        N = self.fft_size(info)
        if N is not None:
            scale = math.prod(info.h) * math.prod(N)
            if self._taps_rule.hats:
                in_scale = self._hat_scale(info, w)
                mult = self._galerkin_mult(info.h, Wt)
            else:
                in_scale = None if info.equal_weights else w / math.prod(info.h)
                mult = None
            return SpectralOp(Wt, b, A, info.shape, scale, N, in_scale, mult)
        _square_for_dense(Wt, k)
        delta = nodes[:, None, :] - nodes[None, :, :]
        W = self.kernel_values(t, delta).to(w.dtype).permute(0, 2, 1, 3) * w  # [c, n, c, n]
        if A is not None:
            eye = torch.eye(nodes.shape[0], dtype=W.dtype, device=W.device)
            W = W + A[:, None, :, None] * eye[None, :, None, :]
        n = nodes.shape[0]
        return Dense(W.reshape(c * n, c * n), b.repeat_interleave(n))

    def extra_repr(self) -> str:
        """The line printed in the module's repr.

        Returns:
            The channels, modes, pieces, T, period (when not the box's length) and taps.
        """
        per = (
            ""
            if self.period == tuple(b - a for a, b in self.domain.bounds)
            else (f", period={self.period}")
        )
        return (
            f"channels={self.piece_channels if self.channels is None else self.channels}, "
            f"modes={self.modes}, pieces={self.pieces}, T={self.T:g}{per}, taps={self.taps}"
        )
