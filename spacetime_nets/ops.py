"""Step operators: how one step's integral operator acts on a state ``[B, c, n]`` (or ``[B, n]``).

A kernel evaluated for step k gives an operator from the input grid G (nodes zeta_j, weights
omega_j) to an output grid G' (nodes xi_i):

    (K x)_i = sum_j w(t_k, xi_i, zeta_j) x_j omega_j + A x_i + b

``Dense`` holds the matrix itself (``W [c n_out, c n_in]``, channel-major); ``LowRankOp`` applies
a separable kernel (a basis expansion) in factored form, without forming W; ``ConvOp`` applies a
stationary kernel of finite radius as ``F.conv1d`` / ``F.conv2d`` on uniform grids; ``SpectralOp``
applies a periodic stationary kernel by FFT. All are plain torch, used both by the step loop
and by exported ResNets, and all have the interface [`StepOp`][spacetime_nets.ops.StepOp]
(apply, count, cost, copy, export), so that no caller asks which kind it holds.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from grids import Grid
from grids.quadrature import get_rule

__all__ = [
    "GridInfo",
    "StepOp",
    "Dense",
    "LowRankOp",
    "StationaryOp",
    "ConvOp",
    "SpectralOp",
    "apply_op",
    "op_tensors",
    "op_rebuild",
    "pointwise",
]


@dataclass(frozen=True)
class GridInfo:
    """Static facts about a grid that stationary kernels need (Python values, no tensors).

    ``shape`` nodes per axis; ``equispaced`` and ``h`` (spacing per axis); ``first`` node per
    axis; ``periodic`` (rule "periodic": nodes a + j L / n, j < n); ``lengths`` of the box;
    ``equal_weights`` (every quadrature weight is prod h).

    Attributes:
        shape: the nodes per axis.
        equispaced: whether the nodes are equally spaced on every axis (a lattice).
        h: the spacing per axis (the box's length on an axis of one node).
        first: the first node per axis.
        periodic: whether the grid uses the ``periodic`` rule.
        lengths: the box's length per axis.
        equal_weights: whether every quadrature weight equals prod(h).
    """

    shape: tuple[int, ...]
    equispaced: bool
    h: tuple[float, ...]
    first: tuple[float, ...]
    periodic: bool
    lengths: tuple[float, ...]
    equal_weights: bool

    @classmethod
    def of(cls, g: Grid) -> GridInfo:
        """The facts of ``g``, read once on the host.

        Args:
            g: the grid.

        Returns:
            Its ``GridInfo``.
        """
        axes = [a.detach().cpu().double() for a in g.axes]
        lengths = tuple(float(b - a) for a, b in g.domain.bounds)
        h = tuple(float(a[1] - a[0]) if a.numel() > 1 else lengths[i] for i, a in enumerate(axes))
        rule = get_rule(g.rule)
        equi = bool(g.is_uniform and rule.equispaced)
        if equi:
            for a, hi in zip(axes, h):
                if a.numel() > 1 and float((a[1:] - a[:-1] - hi).abs().max()) > 1e-9 * hi:
                    equi = False
        w = g.weights.detach().cpu().double()
        vol = math.prod(h)
        return cls(
            shape=tuple(g.shape),
            equispaced=equi,
            h=h,
            first=tuple(float(a[0]) for a in axes),
            periodic=rule.periodic,
            lengths=lengths,
            equal_weights=bool(equi and float((w - vol).abs().max()) <= 1e-12 * vol),
        )

    @property
    def n(self) -> int:
        """The number of nodes, prod(shape)."""
        return math.prod(self.shape)


@runtime_checkable
class StepOp(Protocol):
    """The interface every step operator has ([`Dense`][spacetime_nets.ops.Dense],
    [`LowRankOp`][spacetime_nets.ops.LowRankOp], [`ConvOp`][spacetime_nets.ops.ConvOp],
    [`SpectralOp`][spacetime_nets.ops.SpectralOp], or a kernel's own): the step loop, the
    multiply-add count, the control cost, checkpointed recomputation and the export call these
    methods and never ask for the kind. Runtime-checkable: ``isinstance(op, StepOp)`` tells
    whether ``op`` has them all.

    Calling the operator applies it: ``op(x)`` maps the state ``[B, n_in]`` (or
    ``[B, c, n_in]`` with channels) to ``[B, n_out]`` (``[B, c, n_out]``) on its output grid.
    """

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def multiply_adds(self, n: int) -> int:
        """Multiply-adds of one application, per sample.

        Args:
            n: the node count of the step's grid G_k (the input grid).

        Returns:
            The count.
        """
        ...

    def control_norm_sq(self, w_out: torch.Tensor, w_in: torch.Tensor) -> torch.Tensor:
        """The control cost |w|^2_{L2(Omega x Omega)} + |b|^2_{L2(Omega)} as a quadrature
        on the operator's grids, sum_ij w_out_i w_in_j |w(xi_i, zeta_j)|^2 +
        sum_i w_out_i |b(xi_i)|^2 (channel pairs included; a pointwise mix A adds
        |A|^2 |Omega|).

        Args:
            w_out: the quadrature weights of the output grid, ``[n_out]``.
            w_in: the quadrature weights of the input grid, ``[n_in]``.

        Returns:
            The 0-d tensor.
        """
        ...

    def export_entries(self) -> int:
        """The entries of the dense matrices its exported module holds (the size check of
        [`to_resnet`][spacetime_nets.export.to_resnet]).

        Returns:
            The count (0 for the convolution and FFT blocks).
        """
        ...

    def tensors(self) -> list[torch.Tensor]:
        """The trainable tensors, for checkpointed recomputation.

        Returns:
            The tensors, in the order ``rebuild`` takes them.
        """
        ...

    def rebuild(self, tensors: list[torch.Tensor]) -> StepOp:
        """The same operator made of other tensors.

        Args:
            tensors: one tensor for each of ``tensors()``, e.g. detached copies.

        Returns:
            A new operator of the same kind.
        """
        ...

    def to_module(self) -> nn.Module:
        """The operator as a plain-torch module (the exported ResNet's layer), its values
        copied: ``op.to_module()(x)`` equals ``op(x)``.

        Returns:
            The module.
        """
        ...


class Dense:
    """A dense step operator ``(W [c n_out, c n_in], b [c n_out])``: y = W x + b on the
    flattened state. Unpacks (and indexes) as the pair ``(W, b)``.

    Args:
        W: the matrix, quadrature weights of the input folded in, ``[c n_out, c n_in]``.
        b: the bias beta, ``[c n_out]``.

    Attributes:
        W: the matrix, ``[c n_out, c n_in]``.
        b: the bias beta, ``[c n_out]``.
    """

    def __init__(self, W: torch.Tensor, b: torch.Tensor) -> None:
        self.W, self.b = W, b

    def __iter__(self):
        return iter((self.W, self.b))

    def __getitem__(self, i):
        return (self.W, self.b)[i]

    def __len__(self) -> int:
        return 2

    def __repr__(self) -> str:
        return f"Dense(W={tuple(self.W.shape)}, b={tuple(self.b.shape)})"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, n_in] -> [B, n_out]``, or ``[B, c, n_in] -> [B, c, n_out]``."""
        if x.dim() == 2:
            return F.linear(x, self.W, self.b)
        n_out = self.W.shape[0] // x.shape[1]  # explicit sizes: an empty batch keeps its shape
        return F.linear(x.flatten(1), self.W, self.b).view(x.shape[0], x.shape[1], n_out)

    def multiply_adds(self, n: int | None = None) -> int:
        """Multiply-adds per sample: the entries of W.

        Args:
            n: the step grid's node count (not needed).

        Returns:
            ``W.numel()``.
        """
        return self.W.numel()

    def control_norm_sq(self, w_out: torch.Tensor, w_in: torch.Tensor) -> torch.Tensor:
        """sum_ij w_out_i w_in_j (W_ij / w_in_j)^2 + sum_i w_out_i beta_i^2, the weights
        repeated per channel.

        Args:
            w_out: the quadrature weights of the output grid, ``[n_out]``.
            w_in: the quadrature weights of the input grid, ``[n_in]``.

        Returns:
            |w|^2_{L2(Omega x Omega)} + |b|^2_{L2(Omega)}, a 0-d tensor.
        """
        c = self.W.shape[0] // w_out.shape[0]
        if c > 1:
            w_out, w_in = w_out.repeat(c), w_in.repeat(c)
        return (self.W**2 * w_out[:, None] / w_in[None, :]).sum() + (w_out * self.b**2).sum()

    def export_entries(self) -> int:
        """The entries of the exported ``nn.Linear``'s matrix.

        Returns:
            ``W.numel()``.
        """
        return self.W.numel()

    def tensors(self) -> list[torch.Tensor]:
        """The trainable tensors, for checkpointed recomputation.

        Returns:
            ``[W, b]``.
        """
        return [self.W, self.b]

    def rebuild(self, tensors: list[torch.Tensor]) -> Dense:
        """The same operator with other tensors.

        Args:
            tensors: ``[W, b]``, e.g. detached copies.

        Returns:
            ``Dense(W, b)``.
        """
        return Dense(*tensors)

    def to_module(self) -> nn.Module:
        """The operator as ``nn.Linear(c n_in -> c n_out)`` (on the flattened state).

        Returns:
            The ``nn.Linear``, W and b copied.
        """
        from .export import _linear  # export imports this module

        return _linear(self.W, self.b)


class LowRankOp:
    """A separable kernel w(xi, zeta) = sum_ab M_ab phi_a(xi) phi_b(zeta) and bias
    b(xi) = sum_a c_a phi_a(xi) in factored form:

        y = U (M (V^T x) + c),   V = Phi_in * omega:   W = U M V^T, beta = U c never formed

    ``U [n_out, A]`` (basis at the output nodes), ``phi_in [n_in, A]`` (basis at the input
    nodes), ``V [n_in, A]`` (it times the input quadrature weights omega), ``M [A, A]`` and
    ``c [A]``; with channels ``M [c A, c A]`` in blocks (o, a), (p, b) and ``c [c A]``. A step
    costs c A (n_in + n_out) + (c A)^2 multiply-adds per sample instead of c^2 n_in n_out, and
    no kernel matrix is built.

    Args:
        U: the basis at the output nodes, ``[n_out, A]``.
        M: the coefficients, ``[A, A]`` (``[c A, c A]`` with channels).
        c: the bias coefficients, ``[A]`` (``[c A]``).
        phi_in: the basis at the input nodes, ``[n_in, A]``.
        V: ``phi_in`` times the input weights omega, ``[n_in, A]``.
        channels: the channel count c, or None for the scalar model.
    """

    def __init__(
        self,
        U: torch.Tensor,
        M: torch.Tensor,
        c: torch.Tensor,
        phi_in: torch.Tensor,
        V: torch.Tensor,
        channels: int | None = None,
    ) -> None:
        self.U, self.M, self.c, self.phi_in, self.V = U, M, c, phi_in, V
        self.channels = channels

    def tensors(self) -> list[torch.Tensor]:
        """The trainable tensors, for checkpointed recomputation.

        Returns:
            ``[M, c]``.
        """
        return [self.M, self.c]

    def rebuild(self, tensors: list[torch.Tensor]) -> LowRankOp:
        """The same operator with other trainable tensors.

        Args:
            tensors: ``[M, c]``, e.g. detached copies.

        Returns:
            A copy sharing the bases ``U``, ``phi_in``, ``V``.
        """
        new = copy.copy(self)
        new.M, new.c = tensors
        return new

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, n_in] -> [B, n_out]``, or ``[B, c, n_in] -> [B, c, n_out]``."""
        B = x.shape[0]
        # explicit sizes (no -1): an empty batch B = 0 keeps its shape
        u = torch.addmm(self.c, (x @ self.V).reshape(B, self.M.shape[1]), self.M.T)  # [B, c A]
        if x.dim() == 2:
            return u @ self.U.T
        A, n_out = self.U.shape[1], self.U.shape[0]
        return (u.view(B * x.shape[1], A) @ self.U.T).view(B, x.shape[1], n_out)

    def dense(self) -> Dense:
        """The same operator as a [`Dense`][spacetime_nets.ops.Dense] pair
        ``(W [c n_out, c n_in], beta [c n_out])``.

        Returns:
            ``Dense(U M V^T, U c)``, with channels in blocks.
        """
        ch = self.channels or 1
        n_out, n_in = self.U.shape[0], self.V.shape[0]
        W = ((self.U @ self._blocks()) @ self.V.T).transpose(1, 2).reshape(ch * n_out, ch * n_in)
        return Dense(W, (self.c.view(ch, -1) @ self.U.T).reshape(-1))

    def _blocks(self) -> torch.Tensor:
        """M as ``[c, c, A, A]`` (output channel, input channel, a, b)."""
        ch, A = self.channels or 1, self.U.shape[1]
        return self.M.view(ch, A, ch, A).permute(0, 2, 1, 3)

    def multiply_adds(self, n: int | None = None) -> int:
        """Multiply-adds per sample.

        Args:
            n: the step grid's node count (not needed: the bases give n_in and n_out).

        Returns:
            c A (n_in + n_out) + (c A)^2.
        """
        ch, A = self.channels or 1, self.U.shape[1]
        return ch * A * (self.U.shape[0] + self.V.shape[0]) + (ch * A) ** 2

    def export_entries(self) -> int:
        """The entries of the dense matrix it is exported as.

        Returns:
            c^2 n_out n_in.
        """
        c = self.channels or 1
        return c * c * self.U.shape[0] * self.V.shape[0]

    def to_module(self) -> nn.Module:
        """The operator made dense ([`dense`][spacetime_nets.ops.LowRankOp.dense]), as
        ``nn.Linear``.

        Returns:
            The ``nn.Linear``.
        """
        return self.dense().to_module()

    def control_norm_sq(self, w_out: torch.Tensor, w_in: torch.Tensor) -> torch.Tensor:
        """The [`Dense`][spacetime_nets.ops.Dense] quadrature sum_ij w_out_i w_in_j
        (W_ij / omega_j)^2 + sum_i w_out_i beta_i^2 in closed form: sum over channel blocks of
        tr(M^T G_out M G_in) + c^T G_out c, with the Gram matrices G_out = U^T diag(w_out) U,
        G_in = Phi_in^T diag(w_in) Phi_in.

        Args:
            w_out: the quadrature weights of the output grid, ``[n_out]``.
            w_in: the quadrature weights of the input grid, ``[n_in]``.

        Returns:
            |w|^2_{L2(Omega x Omega)} + |b|^2_{L2(Omega)}, a 0-d tensor.
        """
        g_out = self.U.T @ (self.U * w_out[:, None])
        g_in = self.phi_in.T @ (self.phi_in * w_in[:, None])
        blocks = self._blocks()
        cv = self.c.view(-1, self.U.shape[1])  # [c, A]
        return ((g_out @ blocks) * (blocks @ g_in)).sum() + ((cv @ g_out) * cv).sum()


class StationaryOp:
    """Shared parts of the stationary operators: their trainable tensors (the main one named
    by ``_MAIN``, the bias, the optional pointwise mix) and a copy made of other tensors.
    The base of [`ConvOp`][spacetime_nets.ops.ConvOp] and
    [`SpectralOp`][spacetime_nets.ops.SpectralOp]; not built on its own."""

    _MAIN = ""
    bias: torch.Tensor
    point: torch.Tensor | None

    def tensors(self) -> list[torch.Tensor]:
        """The trainable tensors, for checkpointed recomputation.

        Returns:
            The main tensor (taps or spectral weights), the bias, and the pointwise mix when
                there is one.
        """
        ts = [getattr(self, self._MAIN), self.bias]
        return ts + ([self.point] if self.point is not None else [])

    def rebuild(self, tensors: list[torch.Tensor]):
        """The same operator with other trainable tensors.

        Args:
            tensors: one tensor for each of ``tensors()``, in that order.

        Returns:
            (StationaryOp): a copy of this operator (same class) holding them.
        """
        new = copy.copy(self)
        setattr(new, self._MAIN, tensors[0])
        new.bias = tensors[1]
        new.point = tensors[2] if self.point is not None else None
        return new

    def export_entries(self) -> int:
        """The entries of dense matrices its exported module holds: none (a convolution or
        FFT block).

        Returns:
            0.
        """
        return 0

    def _pointwise_and_bias_norm(self, vol: torch.Tensor) -> torch.Tensor:
        """|A|^2 |Omega| + |b|^2 |Omega|: the pointwise mix and the bias in L^2."""
        total = vol * (self.bias**2).sum()
        return total + vol * (self.point**2).sum() if self.point is not None else total


class ConvOp(StationaryOp):
    """Discrete convolution with a stationary kernel on an equispaced grid (square: G -> G).

    y_i = sum_j kappa(xi_i - xi_j) x_j omega_j (+ A x_i) + b, run as one ``conv1d`` /
    ``conv2d``: taps kappa(m h) prod(h) for |m h| < r (``taps [c, c, *k]``, flipped for torch's
    cross-correlation), zero padding (circular on periodic grids), and the input multiplied by
    omega_j / prod(h) when the rule's weights are not all equal (``in_scale [n]``, e.g. the
    halved end weights of the trapezoid rule). ``bias [c]``, ``point [c, c]`` or None.

    Args:
        taps: the convolution taps, ``[c, c, *k]`` (k odd per axis).
        bias: the bias, ``[c]``.
        point: the pointwise channel mix A, ``[c, c]``, or None.
        shape: the grid's nodes per axis.
        periodic: circular padding (a periodic grid) instead of zero padding.
        in_scale: omega_j / prod(h) ``[n]`` where the weights are not all equal, else None.
        cell: prod(h), the volume of a grid cell (taps = kappa(m h) prod(h)).
    """

    _MAIN = "taps"

    def __init__(
        self,
        taps: torch.Tensor,
        bias: torch.Tensor,
        point: torch.Tensor | None,
        shape: tuple[int, ...],
        periodic: bool,
        in_scale: torch.Tensor | None,
        cell: float = 1.0,
    ) -> None:
        self.taps, self.bias, self.point, self.in_scale = taps, bias, point, in_scale
        self.shape, self.periodic, self.cell = tuple(shape), periodic, float(cell)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return conv_apply(
            x, self.taps, self.bias, self.point, self.shape, self.periodic, self.in_scale
        )

    def multiply_adds(self, n: int) -> int:
        """Multiply-adds per sample: every tap at every node.

        Args:
            n: the grid's node count.

        Returns:
            ``taps.numel() * n``.
        """
        return self.taps.numel() * n

    def to_module(self) -> nn.Module:
        """The operator as a [`ConvLayer`][spacetime_nets.export.ConvLayer].

        Returns:
            The ``ConvLayer``.
        """
        from .export import ConvLayer  # export imports this module

        return ConvLayer(self)

    def control_norm_sq(self, w_out: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """|w|^2_{L2(Omega x Omega)} + |A|^2 |Omega| + |b|^2 |Omega| on this grid (``w_out`` is
        ``weights``: the operator is square): sum_ij omega_i omega_j |kappa(xi_i - xi_j)|_F^2 by
        one convolution of the weights with sum_oc kappa_oc^2 (kappa(m h) = taps / prod(h)).

        Args:
            w_out: the output grid's weights (the same as ``weights``).
            weights: the grid's quadrature weights omega, ``[n]``.

        Returns:
            The 0-d tensor.
        """
        k2 = (self.taps**2).sum(dim=(0, 1))[None, None] / self.cell**2
        g = weights.reshape(1, 1, *self.shape)
        pads: list[int] = []
        for R in reversed([(k - 1) // 2 for k in self.taps.shape[2:]]):
            pads += [R, R]
        g = F.pad(g, pads, mode="circular" if self.periodic else "constant")
        conv = F.conv1d if len(self.shape) == 1 else F.conv2d
        total = (conv(g, k2).reshape(-1) * weights).sum()
        return total + self._pointwise_and_bias_norm(weights.sum())


def conv_apply(
    x: torch.Tensor,
    taps: torch.Tensor,
    bias: torch.Tensor,
    point: torch.Tensor | None,
    shape: tuple[int, ...],
    periodic: bool,
    in_scale: torch.Tensor | None,
) -> torch.Tensor:
    """The convolution of [`ConvOp`][spacetime_nets.ops.ConvOp]: ``x [B, c, n] -> [B, c, n]``.

    Args:
        x: the state, ``[B, c, n]``.
        taps: ``[c_out, c, *k]``.
        bias: ``[c_out]``.
        point: the pointwise mix ``[c_out, c]``, or None.
        shape: the grid's nodes per axis (prod(shape) = n).
        periodic: circular padding instead of zero padding.
        in_scale: omega_j / prod(h) ``[n]``, or None.

    Returns:
        ``[B, c_out, n]``.
    """
    B, c = x.shape[0], x.shape[1]
    xs = x * in_scale if in_scale is not None else x
    g = xs.reshape(B, c, *shape)
    half = [(k - 1) // 2 for k in taps.shape[2:]]
    conv = F.conv1d if len(shape) == 1 else F.conv2d
    if periodic:
        pads: list[int] = []
        for R in reversed(half):
            pads += [R, R]
        y = conv(F.pad(g, pads, mode="circular"), taps, bias)
    else:  # zero padding inside the convolution: no padded copy of the state
        y = conv(g, taps, bias, padding=tuple(half))
    y = y.reshape(B, y.shape[1], math.prod(shape))  # explicit sizes: B = 0 keeps its shape
    return y if point is None else y + pointwise(x, point)


def pointwise(x: torch.Tensor, A: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """A x_i (+ b) at every node: ``[B, c_in, n] -> [B, c_out, n]`` as a 1x1 convolution.

    Args:
        x: ``[B, c_in, n]``.
        A: the channel mix, ``[c_out, c_in]``.
        b: the bias ``[c_out]``, or None.

    Returns:
        ``[B, c_out, n]``.
    """
    return F.conv1d(x, A[..., None], b)


class SpectralOp(StationaryOp):
    """A stationary kernel of period P (per axis) applied by FFT on an equispaced grid (G -> G).

    y(xi_i) = sum_j kappa(xi_i - zeta_j) x_j omega_j (+ A x + b), kappa(delta) = sum_m K_m
    e^{2 pi i m . delta / P}: the weighted input u_j = x_j omega_j is laid on N = P / h points
    per axis (zero-padded: N >= n; on a periodic grid N = n),
    ``rfft``/``rfftn`` of size N, the lowest ``modes`` per axis multiplied by ``K [c, c, *modes]``
    (complex; on 2-D grids the first axis keeps m and -m), inverse FFT, the first n values.
    As kappa has period N h, this is the quadrature sum over the grid exactly; on a box with
    P >= 2 L per axis it is a linear (non-circular) convolution. ``weight`` holds K as real
    pairs ``[..., 2]``; ``scale`` = prod(h) N (irfft divides by N); ``fft`` = N per axis
    (None: the grid's shape); ``in_scale [n]`` = omega_j / prod(h) where the weights are not
    all equal; ``mult [*modes]`` a real factor per mode (Galerkin: the hat's Fourier
    transform), or None.

    Args:
        weight: K as real pairs, ``[c, c, *modes, 2]``.
        bias: the bias, ``[c]``.
        point: the pointwise channel mix A, ``[c, c]``, or None.
        shape: the grid's nodes per axis.
        scale: prod(h) N.
        fft: the FFT size N per axis (None: ``shape``).
        in_scale: omega_j / prod(h) ``[n]``, or None.
        mult: a real factor per mode ``[*modes]``, or None.
    """

    _MAIN = "weight"

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor,
        point: torch.Tensor | None,
        shape: tuple[int, ...],
        scale: float,
        fft: tuple[int, ...] | None = None,
        in_scale: torch.Tensor | None = None,
        mult: torch.Tensor | None = None,
    ) -> None:
        self.weight, self.bias, self.point = weight, bias, point
        self.shape, self.scale = tuple(shape), scale
        self.fft = tuple(fft) if fft is not None else tuple(shape)
        self.in_scale, self.mult = in_scale, mult

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return spectral_apply(
            x, self.weight, self.bias, self.point, self.shape, self.scale,
            self.fft, self.in_scale, self.mult,
        )  # fmt: skip

    def multiply_adds(self, n: int) -> int:
        """Multiply-adds per sample, estimated: the mode products (4 real per complex one),
        a forward and an inverse FFT of 5 c N log2 N each, and the pointwise mix at every
        node.

        Args:
            n: the grid's node count.

        Returns:
            The count.
        """
        c, N = self.weight.shape[0], math.prod(self.fft)
        fft = int(5 * c * N * max(math.log2(N), 1.0))
        point = self.point.numel() * n if self.point is not None else 0
        return self.weight[..., 0].numel() * 4 + 2 * fft + point

    def to_module(self) -> nn.Module:
        """The operator as a [`SpectralLayer`][spacetime_nets.export.SpectralLayer].

        Returns:
            The ``SpectralLayer``.
        """
        from .export import SpectralLayer  # export imports this module

        return SpectralLayer(self)

    def kernel_samples(self) -> torch.Tensor:
        """kappa(m h) at the N offsets m of one period per axis, ``[c_in, c_out, *fft]`` (real):
        the operator on the N-point torus applied to a unit impulse at offset 0 of each input
        channel gives prod(h) kappa(m h).

        Returns:
            ``[c_in, c_out, *fft]``.
        """
        c = self.weight.shape[1]
        e = self.weight.new_zeros(c, c, math.prod(self.fft))
        diag = torch.arange(c, device=e.device)  # no host index on an accelerator
        e[diag, diag, 0] = 1.0
        zero = self.weight.new_zeros(self.weight.shape[0])
        y = spectral_apply(e, self.weight, zero, None, self.fft, self.scale)
        return y.reshape(c, -1, *self.fft) * (math.prod(self.fft) / self.scale)

    def control_norm_sq(self, w_out: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """|w|^2_{L2(Omega x Omega)} + |A|^2 |Omega| + |b|^2 |Omega| on this grid (square:
        ``w_out`` is ``weights``): sum_ij omega_i omega_j |kappa(xi_i - xi_j)|_F^2, with
        kappa(xi_i - xi_j) = kappa(((i - j) mod N) h) (period N h), as one circular
        convolution of the weights (zero-padded to N points) with sum_oc kappa_oc^2.

        Args:
            w_out: the output grid's weights (the same as ``weights``).
            weights: the grid's quadrature weights omega, ``[n]``.

        Returns:
            The 0-d tensor.
        """
        k2 = (self.kernel_samples() ** 2).sum(dim=(0, 1))  # [*fft]
        g = weights.reshape(*self.shape)
        corr = torch.fft.irfftn(
            torch.fft.rfftn(k2) * torch.fft.rfftn(g, s=self.fft), s=self.fft
        )  # (k2 * g)_m = sum_j k2[(m - j) mod N] g_j, g zero-padded to N
        total = (corr[tuple(slice(0, n) for n in self.shape)] * g).sum()
        return total + self._pointwise_and_bias_norm(weights.sum())


def spectral_apply(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    point: torch.Tensor | None,
    shape: tuple[int, ...],
    scale: float,
    fft: tuple[int, ...] | None = None,
    in_scale: torch.Tensor | None = None,
    mult: torch.Tensor | None = None,
) -> torch.Tensor:
    """The FFT path of [`SpectralOp`][spacetime_nets.ops.SpectralOp]:
    ``x [B, c, n] -> [B, c, n]``.

    Args:
        x: the state, ``[B, c, n]``.
        weight: K as real pairs, ``[c_out, c, *modes, 2]``.
        bias: ``[c_out]``.
        point: the pointwise mix ``[c_out, c]``, or None.
        shape: the grid's nodes per axis (prod(shape) = n).
        scale: prod(h) N.
        fft: the FFT size N per axis (None: ``shape``).
        in_scale: omega_j / prod(h) ``[n]``, or None.
        mult: a real factor per mode ``[*modes]``, or None.

    Returns:
        ``[B, c_out, n]``.
    """
    B, c = x.shape[0], x.shape[1]
    fft = tuple(shape) if fft is None else tuple(fft)
    # irfft divides by N; the quadrature weight of the input is prod(h): both in K
    K = torch.view_as_complex(weight) * scale  # [c, c, *modes]
    if mult is not None:
        K = K * mult
    if B == 0:  # an empty batch (MKL's FFT refuses one): the empty output, still in the graph
        y = x.new_zeros(0, K.shape[0], x.shape[-1]) + K.real.sum() * 0
        return y + pointwise(x, point, bias) if point is not None else y + bias[:, None]
    xs = x * in_scale if in_scale is not None else x
    g = xs.reshape(B, c, *shape)
    if len(shape) == 1:
        M = K.shape[-1]
        xh = torch.fft.rfft(g, n=fft[0], dim=-1)[..., :M]  # zero-padded to N
        yh = torch.einsum("bim,oim->bom", xh, K)
        y = torch.fft.irfft(yh, n=fft[0], dim=-1)
    else:
        M0, M1 = (K.shape[-2] + 1) // 2, K.shape[-1]
        xh = torch.fft.rfft2(g, s=fft, dim=(-2, -1))
        xh = torch.cat([xh[..., :M0, :M1], xh[..., fft[0] - M0 + 1 :, :M1]], dim=-2)
        yh = torch.einsum("bixy,oixy->boxy", xh, K)
        full = yh.new_zeros(B, K.shape[0], fft[0], fft[1] // 2 + 1)
        full[..., :M0, :M1] = yh[..., :M0, :]
        full[..., fft[0] - M0 + 1 :, :M1] = yh[..., M0:, :]
        y = torch.fft.irfft2(full, s=fft, dim=(-2, -1))
    if fft != tuple(shape):  # the first n of the N values per axis
        y = y[(..., *(slice(0, n) for n in shape))]
    y = y.reshape(B, K.shape[0], x.shape[-1])  # explicit sizes: B = 0 keeps its shape
    if point is not None:
        return y + pointwise(x, point, bias)
    return y + bias[:, None]


def _step_op(op) -> StepOp:
    """``op`` itself, or a bare ``(W, b)`` pair as a [`Dense`][spacetime_nets.ops.Dense]:
    the one place a pair is accepted for an operator."""
    return Dense(*op) if isinstance(op, tuple) else op


def apply_op(op, x: torch.Tensor) -> torch.Tensor:
    """Apply a step operator: ``Dense`` (or a ``(W, b)`` pair) to ``[B, n]`` or ``[B, c, n]``,
    ``ConvOp`` / ``SpectralOp`` to ``[B, c, n]``.

    Args:
        op (StepOp | tuple): the operator, or a ``(W, b)`` pair.
        x: the state.

    Returns:
        The operator applied to ``x``, on its output grid.
    """
    return _step_op(op)(x)


def op_tensors(op) -> list[torch.Tensor]:
    """The tensors an operator is made of (for checkpointed recomputation).

    Args:
        op (StepOp | tuple): the operator, or a ``(W, b)`` pair.

    Returns:
        ``op.tensors()`` (``[W, b]`` of a pair).
    """
    return _step_op(op).tensors()


def op_rebuild(op, tensors: list[torch.Tensor]):
    """The same operator made of other tensors (detached copies in a recomputation).

    Args:
        op (StepOp | tuple): the operator, or a ``(W, b)`` pair.
        tensors: one tensor for each of ``op_tensors(op)``.

    Returns:
        (StepOp): the new operator (a ``Dense`` for a pair).
    """
    return _step_op(op).rebuild(tensors)
