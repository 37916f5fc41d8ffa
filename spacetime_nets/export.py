"""Export to plain PyTorch: a ResNet of ``nn.Linear(n_k -> n_{k+1})`` (dense kernels),
``nn.Conv1d`` / ``nn.Conv2d`` (conv kernels) or FFT blocks (spectral kernels), with the fixed
shortcuts Pi_k (and channel changes) as buffers, and back (``from_resnet``). A channel
normalisation becomes a [`QuadratureNorm`][spacetime_nets.export.QuadratureNorm] before each
block's activation (its grid's weights omega / |Omega| a buffer), an MLP head on the channel
means an ``nn.Sequential``."""

from __future__ import annotations

import copy
import io
import json
import os
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from grids import GridSchedule

from .fields import FORMS, NormOp, activation_module, activation_name, quadrature_norm
from .kernels import NodalKernel
from .ops import ConvOp, SpectralOp, StepOp, spectral_apply
from .steppers import get_stepper, rk_step, steps_between_grids

__all__ = [
    "MAX_EXPORT_BYTES",
    "ResidualBlock",
    "VariableWidthResNet",
    "ConvLayer",
    "SpectralLayer",
    "ChannelLift",
    "ChannelHead",
    "QuadratureNorm",
    "to_resnet",
    "from_resnet",
    "SAVE_FORMATS",
    "SaveFormat",
    "get_save_format",
    "SavedResNet",
    "save_resnet",
    "resnet_bytes",
    "load_resnet",
    "resnet_from_bytes",
]


MAX_EXPORT_BYTES = 4 * 2**30
"""The largest exported network (bytes of its dense matrices: the Linear layers, the factored
basis operators made dense, the shortcuts Pi_k) that `to_resnet` builds; above it, it raises
ValueError before allocating anything (raise this module attribute to export anyway)."""


class ConvLayer(nn.Module):
    """A conv kernel's step operator as ``nn.Conv1d`` / ``nn.Conv2d`` (zero or circular
    padding), the input scaled by omega_j / prod(h) where the rule's weights differ (buffer),
    and an optional pointwise channel mix (a bias-free 1x1 convolution): ``[B, c, n] -> [B, c, n]``.

    Args:
        op: the step operator to copy (its taps, bias, pointwise mix and input scale).
    """

    def __init__(self, op: ConvOp) -> None:
        super().__init__()
        c_out, c_in, d = op.taps.shape[0], op.taps.shape[1], op.taps.dim() - 2
        k = tuple(op.taps.shape[2:])
        conv = nn.Conv1d if d == 1 else nn.Conv2d
        kw = {"device": op.taps.device, "dtype": op.taps.dtype}
        self.shape = tuple(op.shape)
        self.conv = conv(
            c_in,
            c_out,
            k,
            padding=tuple((m - 1) // 2 for m in k),
            padding_mode="circular" if op.periodic else "zeros",
            **kw,
        )
        self.point = nn.Conv1d(c_in, c_out, 1, bias=False, **kw) if op.point is not None else None
        with torch.no_grad():
            self.conv.weight.copy_(op.taps)
            self.conv.bias.copy_(op.bias)
            if self.point is not None:
                self.point.weight.copy_(op.point[..., None])
        self.has_scale = op.in_scale is not None
        if self.has_scale:
            self.register_buffer("in_scale", op.in_scale.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the convolution.

        Args:
            x: the state, ``[B, c_in, n]``.

        Returns:
            ``[B, c_out, n]``.
        """
        xs = x * self.in_scale if self.has_scale else x
        y = self.conv(xs.reshape(x.shape[0], x.shape[1], *self.shape))
        y = y.reshape(x.shape[0], -1, x.shape[-1])
        return y + self.point(x) if self.point is not None else y


class SpectralLayer(nn.Module):
    """A spectral kernel's step operator as a plain-torch FFT block (rfft, multiply the lowest
    modes, inverse FFT, plus the pointwise mix and bias): ``[B, c, n] -> [B, c, n]``.

    Args:
        op: the step operator to copy (its weights become parameters, the input scale and
            per-mode factor buffers).
    """

    def __init__(self, op: SpectralOp) -> None:
        super().__init__()
        self.shape, self.scale, self.fft = tuple(op.shape), float(op.scale), tuple(op.fft)
        self.weight = nn.Parameter(op.weight.detach().clone())
        self.bias = nn.Parameter(op.bias.detach().clone())
        self.point = nn.Parameter(op.point.detach().clone()) if op.point is not None else None
        # the input's quadrature scale and the per-mode factor are fixed by the grid: buffers
        for name in ("in_scale", "mult"):
            v = getattr(op, name)
            self.register_buffer(name, v.detach().clone() if v is not None else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the FFT block
        ([`spectral_apply`][spacetime_nets.ops.spectral_apply]).

        Args:
            x: the state, ``[B, c_in, n]``.

        Returns:
            ``[B, c_out, n]``.
        """
        # a module pickled before boxes had the FFT path has none of the three (periodic)
        fft, in_scale = getattr(self, "fft", None), getattr(self, "in_scale", None)
        mult = getattr(self, "mult", None)
        return spectral_apply(
            x, self.weight, self.bias, self.point, self.shape, self.scale, fft, in_scale, mult
        )


class QuadratureNorm(nn.Module):
    """One step's channel normalisation by quadrature, ``[B, c, n] -> [B, c, n]``: per sample
    and group of c / ``groups`` channels, mean and variance sum_j p_j (.)_j with the fixed
    weights ``p = omega / |Omega|`` (buffer) of the grid, then ``gamma_c (z - mu) /
    sqrt(s^2 + eps) + beta_c`` (parameters); see
    [`quadrature_norm`][spacetime_nets.fields.quadrature_norm]. In an exported block it
    precedes the activation: ``nn.Sequential(QuadratureNorm, act)``.

    Args:
        op: the step's normalisation (its weights p become a buffer, gamma and beta
            parameters).
    """

    def __init__(self, op: NormOp) -> None:
        super().__init__()
        self.groups, self.eps = int(op.groups), float(op.eps)
        self.register_buffer("p", op.p.detach().clone())
        self.gamma = nn.Parameter(op.gamma.detach().clone())
        self.beta = nn.Parameter(op.beta.detach().clone())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Normalise ``z``.

        Args:
            z: ``[B, c, n]``.

        Returns:
            N(z), ``[B, c, n]``.
        """
        return quadrature_norm(z, self.p, self.gamma, self.beta, self.groups, self.eps)

    def extra_repr(self) -> str:
        """The line printed in the module's repr.

        Returns:
            The channels, groups and grid size.
        """
        return f"channels={self.gamma.shape[0]}, groups={self.groups}, n={self.p.shape[0]}"


class ResidualBlock(nn.Module):
    """y = Pi x + dt * F(x), with F of the form ``outside`` (sigma(L x)), ``inside``
    (L sigma(x)) or ``bottleneck`` (L2 sigma(L1 x)); blocks of the other steppers (and of
    stationary kernels, ``square``) take the Runge-Kutta step with operators on G_k and then
    apply Pi. ``shortcut`` is None for the identity; ``channels_out`` pads or truncates the
    channel dimension after Pi where the channel count changes. ``layers`` are ``nn.Linear``
    (on the flattened ``[B, c n]`` state), [`ConvLayer`][spacetime_nets.export.ConvLayer] or
    [`SpectralLayer`][spacetime_nets.export.SpectralLayer].

    Args:
        linears: the step operators, one (L) or two (L1, L2 of the bottleneck).
        dt: the step size.
        form: a registered form name.
        activation: sigma as a module (with a channel normalisation,
            ``nn.Sequential(QuadratureNorm, act)``).
        shortcut: Pi_k as a dense matrix ``[n_{k+1}, n_k]`` (a buffer), or None for the
            identity.
        method: a registered stepper name.
        square: whether the operators act on G_k (then Pi after the step); None: from
            ``method`` (every stepper but a single-stage one).
        channels_out: c_{k+1}, padded or truncated to after Pi; None keeps the channels.
    """

    def __init__(
        self,
        linears: list[nn.Module],
        dt: float,
        form: str,
        activation: nn.Module,
        shortcut: torch.Tensor | None,
        method: str = "euler",
        square: bool | None = None,
        channels_out: int | None = None,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(linears)
        self.dt = float(dt)
        self.form = form
        self.method = method
        self.tableau = get_stepper(method)
        self.square = not steps_between_grids(method) if square is None else bool(square)
        self.activation = activation
        self.channels_out = channels_out
        self.has_shortcut = shortcut is not None
        if shortcut is not None:
            self.register_buffer("shortcut", shortcut)

    @staticmethod
    def _run_layer(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if isinstance(layer, nn.Linear) and x.dim() == 3:
            return layer(x.flatten(1)).view(x.shape[0], x.shape[1], -1)
        return layer(x)

    def field(self, x: torch.Tensor) -> torch.Tensor:
        """The block's vector field F(x) (the form's formula with these layers).

        Args:
            x: the state, ``[B, n]`` or ``[B, c, n]``.

        Returns:
            F(x), on the output grid of the last layer.
        """
        return FORMS[self.form].field(self.activation, self._run_layer, self.layers, x)

    def _pi(self, x: torch.Tensor) -> torch.Tensor:
        return self._channels(x @ self.shortcut.T if self.has_shortcut else x)

    def _channels(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_out is not None and x.dim() == 3:
            c = x.shape[1]
            if self.channels_out > c:
                x = F.pad(x, (0, 0, 0, self.channels_out - c))
            elif self.channels_out < c:
                x = x[:, : self.channels_out]
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One step, y = Pi x + dt F(x) (or Pi applied to the Runge-Kutta step).

        Args:
            x: X^k, ``[B, n_k]`` or ``[B, c_k, n_k]``.

        Returns:
            X^{k+1}, ``[B, n_{k+1}]`` or ``[B, c_{k+1}, n_{k+1}]``.
        """
        if not self.square:
            px = x @ self.shortcut.T if self.has_shortcut else x
            return self._channels(torch.add(px, self.field(x), alpha=self.dt))
        return self._pi(rk_step(self.field, x, self.dt, self.tableau))

    def extra_repr(self) -> str:
        """The line printed in the module's repr.

        Returns:
            The form, method and dt.
        """
        return f"form={self.form}, method={self.method}, dt={self.dt:g}"


class ChannelLift(nn.Module):
    """The input ``[B, n_0]``, ``[B, c_in, n_0]``, ``[B, c_in, *grid]`` (or cell values, gathered
    onto G_0 by the fixed ``index``) lifted pointwise to ``[B, c_0, n_0]`` by a 1x1 convolution,
    plus the fixed ``field [c_0, n_0]`` L_xi xi_j of a lift that sees the coordinates.

    Args:
        weight: the pointwise map L, ``[c_0, c_in]``.
        bias: l, ``[c_0]``.
        index: the cell of each node of G_0 for a cells lift (a buffer, ``[n_0]``), or None.
        field: L_xi xi_j, ``[c_0, n_0]`` (a buffer), or None.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor,
        index: torch.Tensor | None,
        field: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        c0, cin = weight.shape
        self.in_channels = cin
        self.conv = nn.Conv1d(cin, c0, 1, device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            self.conv.weight.copy_(weight[..., None])
            self.conv.bias.copy_(bias)
        self.has_index = index is not None
        if index is not None:
            self.register_buffer("index", index.detach().clone())
        self.register_buffer("field", field.detach().clone() if field is not None else None)

    @property
    def out_features(self) -> int:
        """c_0, the channels of the lifted state."""
        return self.conv.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Lift ``x`` onto G_0.

        Args:
            x: the input in one of the layouts above.

        Returns:
            X^0, ``[B, c_0, n_0]``.
        """
        x = x.reshape(x.shape[0], self.in_channels, -1)
        if self.has_index:
            x = x[..., self.index]
        y = self.conv(x)
        field = getattr(self, "field", None)  # None in a module pickled before it existed
        return y if field is None else y + field


class ChannelHead(nn.Module):
    """Readouts of a state ``[B, c_K, n_K]``: ``quadrature`` (an ``nn.Linear`` on the flattened
    state, quadrature weights folded in), ``mean`` (fixed weights omega / |Omega| per node,
    then ``nn.Linear(c_K, out)``, or the MLP ``nn.Sequential(Linear(c_K, H), GELU,
    Linear(H, out))``; with ``act`` the activation is applied before the pooling: the
    ``pool`` readout), ``function`` (a 1x1 convolution, in the input's layout).

    Args:
        kind: ``quadrature``, ``mean`` (the pool readout too) or ``function``.
        linear: the head's module (``nn.Linear``, ``nn.Sequential`` MLP or ``nn.Conv1d``).
        pool: ``mean``: the weights omega / |Omega| of G_K, ``[n_K]`` (a buffer); else None.
        grid_shape: ``function``: the nodes per axis of G_K, for the output's layout.
        cells: ``function``: whether the input came as cell values (a cells lift).
        act: ``mean``: sigma applied before the pooling (the pool readout), or None.

    Raises:
        ValueError: for another ``kind``.
    """

    def __init__(
        self,
        kind: str,
        linear: nn.Module,
        pool: torch.Tensor | None = None,
        grid_shape: tuple[int, ...] = (),
        cells: bool = False,
        act: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(kind, str) or kind not in _HEAD_KINDS:
            raise ValueError(f"kind: expected one of {', '.join(_HEAD_KINDS)}; got {kind!r}")
        self.kind, self.linear, self.act = kind, linear, act
        self.grid_shape, self.cells = tuple(grid_shape), cells
        if pool is not None:
            self.register_buffer("pool", pool)

    @property
    def out_features(self) -> int:
        """The number of outputs (output channels for ``function``)."""
        m = self.linear[-1] if isinstance(self.linear, nn.Sequential) else self.linear
        return m.out_features if isinstance(m, nn.Linear) else m.out_channels

    def forward(self, h: torch.Tensor, in_dim: int) -> torch.Tensor:
        """The readout of the final state.

        Args:
            h: X^K, ``[B, c_K, n_K]``.
            in_dim: the number of dimensions of the network's input (the function readout
                answers in the input's layout).

        Returns:
            ``[B, out]``, or for ``function`` ``[B, out, n_K]``, ``[B, out, *grid]`` or
                ``[B, n_K]``.
        """
        return _HEAD_KINDS[self.kind].read(self, h, in_dim)


def _read_quadrature(head: ChannelHead, h: torch.Tensor, in_dim: int) -> torch.Tensor:
    """The quadrature head: its ``nn.Linear`` (weights folded in) on the flattened state."""
    return head.linear(h.flatten(1))


def _read_mean(head: ChannelHead, h: torch.Tensor, in_dim: int) -> torch.Tensor:
    """The mean head: the channel means by the weights ``pool`` (after ``act``, if any), then
    its linear map or MLP."""
    return head.linear((h if head.act is None else head.act(h)) @ head.pool)


def _read_function(head: ChannelHead, h: torch.Tensor, in_dim: int) -> torch.Tensor:
    """The function head: a 1x1 convolution, answered in the layout the input came in."""
    y = head.linear(h)
    if in_dim == 2 and y.shape[1] == 1:
        return y[:, 0]
    if in_dim > 3 or (in_dim == 2 and head.cells and len(head.grid_shape) > 1):
        return y.reshape(y.shape[0], y.shape[1], *head.grid_shape)
    return y


def _restore_quadrature(net: nn.Module, linear: nn.Linear) -> None:
    """R_c = W_c / omega on G_K: the quadrature weights taken out of the head's matrix."""
    wK = net.disc.grid(net.schedule.num_steps)[1]
    net.readout_values.copy_(linear.weight.reshape(net.readout_values.shape) / wK)


def _restore_mean(net: nn.Module, linear: nn.Linear) -> None:
    """The linear map of the channel means, as it is."""
    net.readout_weight.copy_(linear.weight)


@dataclass(frozen=True)
class _HeadKind:
    """One kind of [`ChannelHead`][spacetime_nets.export.ChannelHead].

    Attributes:
        name: the ``kind`` the head takes (the readout it was exported from, or comes back
            as).
        read: ``read(head, h, in_dim)``: the head's outputs for the final state ``h``
            ``[B, c_K, n_K]`` of an input with ``in_dim`` dimensions.
        restore: ``restore(net, linear)``: copy the weights of the head's linear map into the
            readout of the SpaceTimeNet `from_resnet` builds (its bias is copied apart); None:
            `from_resnet` does not import this kind.
    """

    name: str
    read: Callable[[ChannelHead, torch.Tensor, int], torch.Tensor]
    restore: Callable[[nn.Module, nn.Linear], None] | None = None


_HEAD_KINDS: dict[str, _HeadKind] = {
    entry.name: entry
    for entry in (
        _HeadKind("quadrature", _read_quadrature, _restore_quadrature),
        _HeadKind("mean", _read_mean, _restore_mean),
        _HeadKind("function", _read_function),
    )
}


#: the buffers of an exported network's scalar normalisers (as the model's)
_NORMALIZER_NAMES = ("in_shift", "in_scale", "out_shift", "out_scale")


def _check_x(
    x: object,
    shapes: list[tuple[int, ...]] | None,
    dtype: torch.dtype | None,
    device: torch.device | None,
    *,
    at: str,
    dtype_hint: str,
    device_hint: str,
    shape_hint: str = "",
    dtype_fix: str = "",
    device_fix: str = "",
) -> None:
    """The input checks of an exported or saved network, from metadata only (no device sync):
    a ValueError naming ``x`` for another type, per-sample shape, dtype or device (None: that
    property is not checked). ``at``, the hints and the fixes word the messages."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    if shapes is not None and (x.dim() < 1 or tuple(x.shape[1:]) not in shapes):
        want = " or ".join(f"[batch, {', '.join(map(str, t))}]" for t in shapes)
        raise ValueError(
            f"x: expected {want} (the resolution the network was {at} at), got shape "
            f"{tuple(x.shape)}{shape_hint}"
        )
    if dtype is not None and x.dtype != dtype:
        raise ValueError(
            f"x: expected dtype {dtype} ({dtype_hint}), got {x.dtype}; convert the input with "
            f"x.to({dtype}){dtype_fix}"
        )
    if device is not None and x.device != device:
        raise ValueError(
            f"x: expected a tensor on {device} ({device_hint}), got one on {x.device}{device_fix}"
        )


class VariableWidthResNet(nn.Module):
    """input -> lift (``Linear(in, n_0)``, or a pointwise
    [`ChannelLift`][spacetime_nets.export.ChannelLift]) -> residual blocks n_k -> n_{k+1} ->
    head (``Linear(n_K, out)`` or a [`ChannelHead`][spacetime_nets.export.ChannelHead]).

    Plain ``torch.nn``: it needs nothing from this library's model classes to run, save or
    export.

    ``normalizers`` (in_shift, in_scale, out_shift, out_scale), scalars kept as buffers of
    the same names, standardise the input before the lift, (x - in_shift) / in_scale, and
    de-standardise the output after the head, z * out_scale + out_shift, as the model's
    own (``SpaceTimeNet.set_normalizers``); None: neither step.

    Inputs are checked from their metadata only (no device sync): ``x`` must be a tensor of
    the network's dtype (no silent casts: convert with ``x.to(dtype)``) on its device, with
    one of the per-sample shapes in ``in_shapes`` (``[batch, n_0]`` features for a scalar
    network; ``[batch, c_in, n_0]``, ``[batch, c_in, *grid]`` or, with one channel,
    ``[batch, n_0]`` for a channel network: the resolution it was exported at). Anything
    else is a ValueError naming ``x``, what was expected and what came. An empty batch gives
    an empty output. The values are not read: a NaN or infinite input propagates to a NaN or
    infinite output (checking would cost a device sync in every call); check the inputs
    yourself where they may hold them (``torch.isfinite(x).all()``).

    Args:
        lift: the lift module.
        blocks: the residual blocks, one per step.
        head: the readout module.
        grid_widths: the widths n_0..n_K to report (None: read from the blocks).
        normalizers: ``(in_shift, in_scale, out_shift, out_scale)`` (buffers), or None.
        in_shapes: the accepted per-sample input shapes (None: ``[(in,)]`` for a
            ``Linear`` lift, else not checked).
    """

    def __init__(
        self,
        lift: nn.Module,
        blocks: list[ResidualBlock],
        head: nn.Module,
        grid_widths: list[int] | None = None,
        normalizers: tuple[float | torch.Tensor, ...] | None = None,
        in_shapes: list[tuple[int, ...]] | None = None,
    ) -> None:
        super().__init__()
        self.lift = lift
        self.blocks = nn.ModuleList(blocks)
        self.head = head
        self.grid_widths = None if grid_widths is None else [int(n) for n in grid_widths]
        if in_shapes is None and isinstance(lift, nn.Linear):
            in_shapes = [(lift.in_features,)]
        #: the accepted shapes of one sample (None: not checked, e.g. a hand-built lift)
        self.in_shapes = (
            None if in_shapes is None else [tuple(int(v) for v in t) for t in in_shapes]
        )
        self.has_normalizers = normalizers is not None
        if normalizers is not None:
            if len(normalizers) != 4:
                raise ValueError(
                    "normalizers: expected (in_shift, in_scale, out_shift, out_scale), got "
                    f"{len(normalizers)} values"
                )
            ref = next(head.parameters(), None)
            kw = {"dtype": ref.dtype, "device": ref.device} if ref is not None else {}
            for name, v in zip(_NORMALIZER_NAMES, normalizers):
                self.register_buffer(name, torch.as_tensor(v, **kw).detach().clone().reshape(()))

    @property
    def widths(self) -> list[int]:
        """Nodes per layer [n_0, ..., n_K] (the schedule's widths; channels not counted)."""
        if self.grid_widths is not None:
            return list(self.grid_widths)
        w = [self.lift.out_features]
        for b in self.blocks:
            if b.has_shortcut:
                w.append(b.shortcut.shape[0])
            elif not b.square and isinstance(b.layers[-1], nn.Linear):
                w.append(b.layers[-1].out_features)
            else:
                w.append(w[-1])
        return w

    def check_input(self, x: torch.Tensor) -> None:
        """The checks of ``forward`` (metadata only): a ValueError naming ``x`` for
        another type, shape (resolution), dtype or device than the network's.

        Args:
            x: the input to check.
        """
        ref = next(self.parameters(), None)
        _check_x(
            x,
            getattr(self, "in_shapes", None),  # None in a module pickled before them
            None if ref is None else ref.dtype,
            None if ref is None else ref.device,
            at="exported",
            shape_hint="; export the model again at another resolution "
            "(model.at_resolution(n) or with_schedule(...), then to_resnet)",
            dtype_hint="the network's",
            device_hint="the network's device",
            dtype_fix=f" or the network with .to({x.dtype})" if isinstance(x, torch.Tensor) else "",
            device_fix="" if ref is None else f"; move the input with x.to({str(ref.device)!r})",
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """normalise -> lift -> blocks -> head -> de-normalise, after ``check_input``.

        Args:
            x: the input, one of ``in_shapes`` per sample, in the network's dtype and on its
                device.

        Returns:
            The outputs, as the exported model's.
        """
        self.check_input(x)
        if x.shape[0] == 0:  # an empty batch: the output of one sample, without its row
            return self._forward(torch.zeros((1, *x.shape[1:]), dtype=x.dtype, device=x.device))[:0]
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        in_dim = x.dim()
        norm = getattr(self, "has_normalizers", False)  # False in a module pickled before them
        if norm:
            x = (x - self.in_shift) / self.in_scale
        h = self.lift(x)
        for block in self.blocks:
            h = block(h)
        y = self.head(h, in_dim) if isinstance(self.head, ChannelHead) else self.head(h)
        if norm:
            y = y * self.out_scale + self.out_shift
        return y

    def layer_table(self) -> str:
        """One line per block: index, layers, dt, shortcut kind, parameters.

        Returns:
            The table (lift and head on lines of their own).
        """
        rows = [f"lift   {self.lift}".replace("\n", " ")]
        for k, b in enumerate(self.blocks):
            shapes = " + ".join(_describe_layer(m) for m in b.layers)
            if _block_norm(b) is not None:
                shapes += f" + norm(g={_block_norm(b).groups})"
            sc = "Pi (fixed)" if b.has_shortcut else "identity"
            if b.channels_out is not None and k < len(self.blocks):
                c_in = _channels_in(b)
                if c_in is not None and c_in != b.channels_out:
                    how = "pad" if b.channels_out > c_in else "cut"
                    sc += f" + {how} {c_in}->{b.channels_out}ch"
            n = sum(p.numel() for p in b.parameters())
            rows.append(f"block {k:3d}  {shapes:34s} dt={b.dt:.4g}  shortcut={sc:10s} params={n}")
        rows.append(f"head   {self.head}".replace("\n", " "))
        return "\n".join(rows)


def _block_norm(b: ResidualBlock) -> QuadratureNorm | None:
    """The block's channel normalisation (None: none)."""
    act = b.activation
    if isinstance(act, nn.Sequential) and isinstance(act[0], QuadratureNorm):
        return act[0]
    return None


def _channels_in(b: ResidualBlock) -> int | None:
    """The channel count a block's operators act on (None for scalar blocks)."""
    m = b.layers[0]
    if isinstance(m, ConvLayer):
        return m.conv.in_channels
    if isinstance(m, SpectralLayer):
        return m.weight.shape[1]
    return None


def _describe_layer(m: nn.Module) -> str:
    if isinstance(m, nn.Linear):
        return f"Linear({m.in_features}->{m.out_features})"
    if isinstance(m, ConvLayer):
        c = m.conv
        return f"{type(c).__name__}({c.in_channels}->{c.out_channels}, k={c.kernel_size})"
    if isinstance(m, SpectralLayer):
        return f"FFT({m.weight.shape[0]}ch, modes={tuple(m.weight.shape[2:-1])})"
    return type(m).__name__


def _linear(W: torch.Tensor, b: torch.Tensor) -> nn.Linear:
    lin = nn.Linear(W.shape[1], W.shape[0], device=W.device, dtype=W.dtype)
    with torch.no_grad():
        lin.weight.copy_(W)
        lin.bias.copy_(b)
    return lin


def _exportable(op) -> StepOp:
    """``op``, or a ValueError when it is not a step operator the export knows."""
    if not isinstance(op, StepOp):
        raise ValueError(f"op: cannot export a step operator of type {type(op).__name__}")
    return op


def _layer(op) -> nn.Module:
    return _exportable(op).to_module()


def _check_export_size(disc, mats, itemsize: int) -> None:
    """ValueError when the dense matrices of the export would exceed MAX_EXPORT_BYTES."""
    entries = 0
    for k, sm in enumerate(mats):
        entries += sum(_exportable(op).export_entries() for op in sm.layers)
        if disc.pi[k] is not None:
            entries += disc.widths[k] * disc.widths[k + 1]
    need = entries * itemsize
    if need > MAX_EXPORT_BYTES:
        raise ValueError(
            f"model: the exported ResNet would hold {need / 2**30:,.1f} GiB of dense matrices "
            f"(its Linear layers, the basis operators made dense, the shortcuts Pi_k), above "
            f"spacetime_nets.export.MAX_EXPORT_BYTES = {MAX_EXPORT_BYTES / 2**30:g} GiB; export "
            "a coarser discretisation (model.at_resolution(n) or model.with_schedule(...)) or "
            "raise the bound"
        )


def _channel_parts(model) -> tuple[nn.Module, nn.Module]:
    index = model.lift_index if model.lift_entry.cells else None
    W, field = model.lift_weight, None
    if getattr(model, "coordinates", False):  # L_xi xi_j on G_0: fixed with the grid
        cin = model.in_channels
        W, field = W[:, :cin], W[:, cin:] @ model.disc.grid(0)[0].T.to(W.dtype)
    lift = ChannelLift(W, model.lift_bias, index, field)
    return lift, model.readout_entry.export(model)


@torch.no_grad()
def to_resnet(model: nn.Module) -> VariableWidthResNet:
    """Export a [`SpaceTimeNet`][spacetime_nets.models.SpaceTimeNet] or
    [`NeuralODE`][spacetime_nets.models.NeuralODE] to a
    [`VariableWidthResNet`][spacetime_nets.export.VariableWidthResNet] that computes the same
    function (the step operators, Pi_k and channel changes frozen at their values): dense kernels
    give ``nn.Linear`` blocks, conv kernels ``nn.Conv1d`` / ``nn.Conv2d`` blocks, spectral kernels
    FFT blocks.

    The model's scalar normalisers (``set_normalizers``) become the exported network's
    (buffers), so it takes and returns the same raw units.

    Args:
        model: the model to export (its current schedule, dtype and device).

    Returns:
        A [`VariableWidthResNet`][spacetime_nets.export.VariableWidthResNet] equal to ``model`` up
            to rounding.
    """
    from .models import NeuralODE, SpaceTimeNet

    if isinstance(model, SpaceTimeNet):
        if model.input_grid is not None:
            raise ValueError(
                "model: its inputs arrive on another grid than G_0 (at_resolution below the "
                "schedule's resolution); export the model on its own schedule, or call "
                "at_resolution with a size its first grid takes"
            )
        if model.channel_mode:
            lift, head = _channel_parts(model)
        else:
            M, a0 = model.lift_matrix()
            lift = _linear(M, a0)
            head = model.readout_entry.export(model)
    elif isinstance(model, NeuralODE):
        ref = next(model.parameters())
        D = model.dim + model.augment
        M = torch.zeros(D, model.dim, dtype=ref.dtype, device=ref.device)
        M[: model.dim].copy_(torch.eye(model.dim))
        lift = _linear(M, torch.zeros(D, dtype=ref.dtype, device=ref.device))
        if model.out_features is None:
            head = _linear(
                torch.eye(D, dtype=ref.dtype, device=ref.device),
                torch.zeros(D, dtype=ref.dtype, device=ref.device),
            )
        else:
            head = _linear(model.readout_weight, model.readout_bias)
    else:
        raise ValueError(f"model: expected a SpaceTimeNet or NeuralODE, got {type(model).__name__}")
    disc = model.disc
    mats = model.controls()
    _check_export_size(disc, mats, disc.weights[0].element_size())
    blocks = []
    for k, sm in enumerate(mats):
        layers = [_layer(op) for op in sm.layers]
        shortcut = None if disc.pi[k] is None else disc.transfer_matrix(k).clone()
        c_out = None if disc.channels is None else disc.channels[k + 1]
        act = activation_module(model.activation)
        if sm.norm is not None:  # sigma o N_k: the norm before the activation
            act = nn.Sequential(QuadratureNorm(sm.norm), act)
        blocks.append(
            ResidualBlock(
                layers,
                sm.dt,
                model.form,
                act,
                shortcut,
                model.method,
                sm.square,
                c_out,
            )
        )
    norms = tuple(getattr(model, n) for n in _NORMALIZER_NAMES)
    return VariableWidthResNet(lift, blocks, head, list(disc.widths), norms, _in_shapes(model))


def _in_shapes(model: nn.Module) -> list[tuple[int, ...]] | None:
    """The per-sample input shapes the model takes on its own schedule (None: the lift's
    ``nn.Linear`` says it)."""
    if not getattr(model, "channel_mode", False):
        return None
    if model.lift_entry.cells:
        return [(int(model.in_features),)]
    cin, n0 = int(model.in_channels), int(model.schedule.widths[0])
    shape0 = tuple(int(v) for v in model.schedule.grids[0].shape)
    shapes = [(n0,)] if cin == 1 else []
    shapes.append((cin, n0))
    if len(shape0) > 1:
        shapes.append((cin, *shape0))
    return shapes


def from_resnet(module: VariableWidthResNet, schedule: GridSchedule):
    """A nodal [`SpaceTimeNet`][spacetime_nets.models.SpaceTimeNet] on ``schedule`` reproducing
    ``module`` (an exported
    ResNet of the euler ``outside`` or ``inside`` form with ``nn.Linear`` blocks): W^k, beta^k
    copied, the readout p_c = R_c / omega on G_K, the lift as a learned linear map (scalar) or
    the pointwise lift (channels, read from the blocks' shapes and channel changes; quadrature
    or mean heads). The schedule's widths, steps and transfers must match the module's
    blocks.

    Args:
        module: the network to import.
        schedule: the schedule to build the model on (one step per block).

    Returns:
        (SpaceTimeNet): the nodal model; ``model(x)`` equals ``module(x)`` up to rounding.

    Raises:
        ValueError: for a network this cannot import (another form or stepper, normalised
            blocks, ...) or a schedule that does not match it.
    """
    from .models import SpaceTimeNet

    if not isinstance(module, VariableWidthResNet):
        raise ValueError(f"module: expected a VariableWidthResNet, got {type(module).__name__}")
    blocks = list(module.blocks)
    if not isinstance(schedule, GridSchedule) or schedule.num_steps != len(blocks):
        raise ValueError(
            f"schedule: expected a GridSchedule with {len(blocks)} steps, got "
            f"{getattr(schedule, 'num_steps', schedule)!r}"
        )
    forms = {b.form for b in blocks}
    methods = {b.method for b in blocks}
    two = any(FORMS[f].operators == 2 for f in forms)
    if len(forms) != 1 or not all(map(steps_between_grids, methods)) or two:
        raise ValueError(
            f"module: needs single-stage (euler) blocks of one form (outside/inside), got "
            f"{sorted(forms)} with {sorted(methods)}"
        )
    head = module.head
    if any(_block_norm(b) is not None for b in blocks) or (
        isinstance(head, ChannelHead)
        and (isinstance(head.linear, nn.Sequential) or head.act is not None)
    ):
        raise ValueError(
            "module: has a channel normalisation, an MLP head or a pooled activation "
            "(exported from a SpaceTimeNet with norm=, head_hidden= or readout='pool'); "
            "from_resnet rebuilds plain nodal blocks and linear heads only: keep the "
            "SpaceTimeNet it came from"
        )
    if not all(isinstance(m, nn.Linear) for b in blocks for m in b.layers):
        raise ValueError(
            "module: needs nn.Linear blocks (a nodal export); conv and FFT blocks "
            "come from continuous kernels: keep the SpaceTimeNet they came from"
        )
    chan = isinstance(module.lift, ChannelLift)
    restore = _HEAD_KINDS[head.kind].restore if isinstance(head, ChannelHead) else None
    if chan and (
        module.lift.has_index or getattr(module.lift, "field", None) is not None or restore is None
    ):
        raise ValueError(
            "module: only identity lifts (without coordinates) with quadrature or mean heads "
            "come back"
        )
    widths = schedule.widths
    if chan:
        channels = [b.layers[0].in_features // n for b, n in zip(blocks, widths)]
        channels.append(blocks[-1].channels_out or channels[-1])
        schedule = schedule.with_channels(channels)
    elif module.widths != widths:
        raise ValueError(f"schedule: widths must be {module.widths}, got {widths}")
    ref = next(module.head.parameters())
    for k, b in enumerate(blocks):
        if abs(b.dt - float(schedule.dt[k])) > 1e-9 * max(1.0, b.dt):
            raise ValueError(f"schedule: dt[{k}] must be {b.dt}, got {float(schedule.dt[k])}")
        c = 1 if not chan else channels[k]
        if tuple(b.layers[0].weight.shape) != (c * widths[k + 1], c * widths[k]):
            raise ValueError(
                f"schedule: block {k} does not fit widths {widths[k]} -> "
                f"{widths[k + 1]} with {c} channel(s)"
            )
        pi = schedule.transfer(k)
        P = b.shortcut if b.has_shortcut else torch.eye(widths[k + 1], dtype=ref.dtype)
        if P.shape != (widths[k + 1], widths[k]) or not torch.allclose(
            pi.matrix().to(P), P, atol=1e-6
        ):
            raise ValueError(f"schedule: transfer {k} does not match the module's shortcut")
    act = copy.deepcopy(blocks[0].activation)
    name = activation_name(act)
    kernel = NodalKernel(schedule)
    opts = {"kernel": kernel, "form": blocks[0].form, "activation": name or act}
    if chan:
        net = SpaceTimeNet(
            schedule,
            None,
            module.head.out_features,
            lift="identity",
            readout=module.head.kind,
            in_channels=module.lift.in_channels,
            **opts,
        )
    else:
        net = SpaceTimeNet(
            schedule, module.lift.in_features, module.head.out_features, lift="linear", **opts
        )
    net = net.to(device=ref.device, dtype=ref.dtype)
    if getattr(module, "has_normalizers", False):
        net.set_normalizers(*(getattr(module, n) for n in _NORMALIZER_NAMES))
    with torch.no_grad():
        for k, b in enumerate(blocks):
            net.kernel.weight[k].copy_(b.layers[0].weight)
            net.kernel.bias[k].copy_(b.layers[0].bias)
        if chan:
            net.lift_weight.copy_(module.lift.conv.weight[..., 0])
            net.lift_bias.copy_(module.lift.conv.bias)
            restore(net, head.linear)
            net.readout_bias.copy_(head.linear.bias)
            return net
        net.lift_weight.copy_(module.lift.weight)
        net.lift_bias.copy_(module.lift.bias)
        wK = net.disc.grid(schedule.num_steps)[1]
        net.readout_values.copy_(module.head.weight / wK)
        net.readout_bias.copy_(module.head.bias)
    return net


# --------------------------------------------------------------------------------------------
# saving and loading the exported network as a self-contained program
# --------------------------------------------------------------------------------------------

_SPEC_FILE = "spacetime_nets_input.json"


@dataclass(frozen=True)
class SaveFormat:
    """One program format of [`save_resnet`][spacetime_nets.export.save_resnet]: how the
    network is traced and written, and how such a file is read back.

    Attributes:
        name: the name ``format=`` (and the command line's ``--format``) takes.
        suffix: the file name's ending (``resnet`` + suffix is the default file name).
        title: what messages call the format.
        write: ``write(resnet, example, spec) -> bytes``: the program traced on ``example``,
            serialised with the input description ``spec`` among its extra files (it may
            set ``spec["batch"]`` first, for a program that keeps the example's batch).
        read: ``read(data, extra) -> nn.Module``: the program in the file's bytes; it fills
            ``extra`` (``{file name: ""}``) with the extra files of those names.
    """

    name: str
    suffix: str
    title: str
    write: Callable[[nn.Module, torch.Tensor, dict], bytes]
    read: Callable[[bytes, dict[str, str]], nn.Module]


def _write_export(resnet: nn.Module, example: torch.Tensor, spec: dict) -> bytes:
    """A ``torch.export`` program with a dynamic batch (or, where the batch cannot vary, the
    example's: recorded in ``spec``)."""
    try:
        batch = torch.export.Dim("batch", min=1)
        prog = torch.export.export(resnet, (example,), dynamic_shapes=({0: batch},))
    except Exception:  # a static batch still exports the same network
        prog = torch.export.export(resnet, (example,))
        spec["batch"] = int(example.shape[0])
    buf = io.BytesIO()
    torch.export.save(prog, buf, extra_files={_SPEC_FILE: json.dumps(spec)})
    return buf.getvalue()


def _read_export(data: bytes, extra: dict[str, str]) -> nn.Module:
    return torch.export.load(io.BytesIO(data), extra_files=extra).module()


def _write_torchscript(resnet: nn.Module, example: torch.Tensor, spec: dict) -> bytes:
    """A TorchScript program by ``torch.jit.trace``."""
    buf = io.BytesIO()
    torch.jit.save(
        torch.jit.trace(resnet, (example,)), buf, _extra_files={_SPEC_FILE: json.dumps(spec)}
    )
    return buf.getvalue()


def _read_torchscript(data: bytes, extra: dict[str, str]) -> nn.Module:
    return torch.jit.load(io.BytesIO(data), _extra_files=extra)


_EXPORT = SaveFormat("export", ".pt2", "torch.export", _write_export, _read_export)
_TORCHSCRIPT = SaveFormat(
    "torchscript", ".ts.pt", "TorchScript", _write_torchscript, _read_torchscript
)
_SAVE_FORMATS: dict[str, SaveFormat] = {f.name: f for f in (_EXPORT, _TORCHSCRIPT)}

SAVE_FORMATS: tuple[str, ...] = tuple(_SAVE_FORMATS)
"""The program formats of `save_resnet`: `torch.export` (.pt2) and TorchScript."""


def get_save_format(name: str, argument: str = "format") -> SaveFormat:
    """The program format ``name`` (one of ``SAVE_FORMATS``); a ValueError naming
    ``argument`` otherwise.

    Args:
        name: ``"export"`` or ``"torchscript"``.
        argument: the argument named in the error message.

    Returns:
        The [`SaveFormat`][spacetime_nets.export.SaveFormat] (its ``suffix`` is the file
            name's ending).
    """
    fmt = _SAVE_FORMATS.get(name) if isinstance(name, str) else None
    if fmt is None:
        raise ValueError(f"{argument}: expected one of {', '.join(SAVE_FORMATS)}; got {name!r}")
    return fmt


def save_resnet(
    resnet: VariableWidthResNet,
    path: str | os.PathLike,
    example: torch.Tensor,
    *,
    format: str = "export",
) -> Path:
    """Write ``resnet`` as a self-contained program (``format="export"``: ``torch.export``
    with a dynamic batch, a ``.pt2`` file; ``"torchscript"``: ``torch.jit.trace``), traced on
    ``example`` (a batch of inputs ``resnet`` takes).
    [`load_resnet`][spacetime_nets.export.load_resnet] reads it back.

    The program is serialised in memory first and then written through a temporary file in
    the same folder and ``os.replace``: a full disk or a read-only folder raises an OSError
    naming ``path`` (never an abort inside torch's writer), no temporary file is left and a
    previous file at ``path`` is kept as it was. The accepted input shapes, dtype and output
    shape go into the file too, so the loaded program checks its inputs as ``resnet`` does.

    Args:
        resnet: the exported network ([`to_resnet`][spacetime_nets.export.to_resnet]).
        path: the file to write (its folder must exist).
        example: a non-empty batch of inputs for the trace.
        format: one of ``SAVE_FORMATS`` (see
            [`get_save_format`][spacetime_nets.export.get_save_format]).

    Returns:
        The path written.
    """
    from .training._io import atomic_write_bytes, check_path

    out = check_path("path", path)
    if out.is_dir():
        raise ValueError(f"path: {out} is a folder; name the file to write")
    if not out.parent.is_dir():
        raise ValueError(f"path: the folder {out.parent} does not exist")
    return atomic_write_bytes(out, resnet_bytes(resnet, example, format=format))


def resnet_bytes(
    resnet: VariableWidthResNet, example: torch.Tensor, *, format: str = "export"
) -> bytes:
    """The file [`save_resnet`][spacetime_nets.export.save_resnet] writes, as bytes (nothing touches
    the disk).

    Args:
        resnet: the exported network.
        example: a non-empty batch of inputs for the trace.
        format: one of ``SAVE_FORMATS``.

    Returns:
        The file's bytes (a zip archive, the input description among its extra files).
    """
    if not isinstance(resnet, VariableWidthResNet):
        raise ValueError(f"resnet: expected a VariableWidthResNet, got {type(resnet).__name__}")
    fmt = get_save_format(format)
    try:
        resnet.check_input(example)
    except ValueError as exc:
        raise ValueError(f"example: {str(exc).removeprefix('x: ')}") from None
    if example.shape[0] < 1:
        raise ValueError(
            f"example: expected a batch of at least 1 sample, got shape {tuple(example.shape)}"
        )
    was = resnet.training
    resnet.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracers' notes on shapes read in Python
            y = resnet(example)
            spec = {
                "in_shapes": [list(t) for t in (resnet.in_shapes or [tuple(example.shape[1:])])],
                "dtype": str(example.dtype).removeprefix("torch."),
                "device": str(example.device),
                "out_shape": list(y.shape[1:]),
                "batch": None,
                "format": fmt.name,
            }
            return fmt.write(resnet, example, spec)
    finally:
        resnet.train(was)


class SavedResNet(nn.Module):
    """A program read by [`load_resnet`][spacetime_nets.export.load_resnet], with the input checks
    of the network it was saved from: a ValueError naming ``x`` for another shape (resolution),
    dtype or device, an empty output for an empty batch. ``program`` is the loaded module itself (no
    checks); ``spec`` what [`save_resnet`][spacetime_nets.export.save_resnet] recorded (None for a
    program saved otherwise: then nothing is checked). As for
    [`VariableWidthResNet`][spacetime_nets.export.VariableWidthResNet], values are not read: a NaN
    input gives NaN outputs.

    Args:
        program: the loaded ``torch.export`` module or TorchScript module.
        spec: ``{"in_shapes", "dtype", "device", "out_shape", "batch", "format"}``, or None.
    """

    def __init__(self, program: nn.Module, spec: dict | None) -> None:
        super().__init__()
        self.program, self.spec = program, spec
        self.training = False

    def train(self, mode: bool = True) -> SavedResNet:
        """The program was traced in eval mode, which its graph keeps: only the flag changes
        (a ``torch.export`` program refuses ``train()`` itself).

        Args:
            mode: the value of the ``training`` flag.

        Returns:
            The module itself.
        """
        self.training = bool(mode)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Check ``x`` against the recorded description, then run the program.

        Args:
            x: the input, as the saved network took it.

        Returns:
            The program's output.
        """
        spec = self.spec
        if spec is None:
            return self.program(x)
        dtype = getattr(torch, spec["dtype"])
        _check_x(
            x,
            [tuple(t) for t in spec["in_shapes"]],
            dtype,
            torch.device(spec["device"]),
            at="saved",
            dtype_hint="the saved network's",
            device_hint="where the network was saved",
        )
        if x.shape[0] == 0:
            return torch.empty((0, *spec["out_shape"]), dtype=dtype, device=x.device)
        if spec.get("batch") is not None and x.shape[0] != spec["batch"]:
            raise ValueError(
                f"x: this program was saved with a fixed batch of {spec['batch']} samples, got "
                f"{x.shape[0]}"
            )
        return self.program(x)


def load_resnet(path: str | os.PathLike) -> SavedResNet:
    """Read a program written by [`save_resnet`][spacetime_nets.export.save_resnet] (either format)
    as a [`SavedResNet`][spacetime_nets.export.SavedResNet], which checks its inputs as the saved
    network did.

    Args:
        path: the ``.pt2`` or TorchScript file.

    Returns:
        The program, ready to call (in eval mode).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a saved program.
    """
    from .training._io import check_path

    p = check_path("path", path)
    if not p.is_file():
        raise FileNotFoundError(f"path: no such file: {p}")
    return resnet_from_bytes(p.read_bytes(), f"path: {p}")


def resnet_from_bytes(data: bytes, name: str = "data") -> SavedResNet:
    """[`load_resnet`][spacetime_nets.export.load_resnet] of the file's bytes (what
    [`resnet_bytes`][spacetime_nets.export.resnet_bytes] returns); ``name`` says where they came
    from in an error.

    Args:
        data: the file's bytes.
        name: what to call them in an error message.

    Returns:
        The [`SavedResNet`][spacetime_nets.export.SavedResNet].

    Raises:
        ValueError: when the bytes are not a readable saved network.
    """
    from .training._io import first_line

    try:
        names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    except (zipfile.BadZipFile, OSError, ValueError, TypeError):
        raise ValueError(f"{name} is not a saved network (not a zip archive)") from None
    # a torch.export archive says so in a file of its own; any other zip is read as TorchScript
    fmt = _EXPORT if any(n.endswith("/archive_format") for n in names) else _TORCHSCRIPT
    extra = {_SPEC_FILE: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = fmt.read(data, extra)
        except Exception as exc:  # torch's readers raise many kinds
            raise ValueError(
                f"{name} is not a readable saved network ({fmt.title}: {first_line(exc)})"
            ) from None
    raw = extra.get(_SPEC_FILE) or ""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    try:
        spec = json.loads(raw) if raw else None
    except ValueError:
        raise ValueError(f"{name} holds a damaged input description ({_SPEC_FILE})") from None
    return SavedResNet(program, spec)
