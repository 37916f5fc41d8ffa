"""``SpaceTimeNet``: lift -> space-time flow on a grid schedule -> readout."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from grids import Grid, GridSchedule, make_transfer

from ..fields import ChannelNorm, check_norm, norm_reads
from ..integrate import Discretization, Trajectory
from ..kernels import (
    BasisKernel,
    ConvKernel,
    Kernel,
    NeuralKernel,
    NodalKernel,
    SpectralKernel,
    tensor_basis,
)
from ..ops import GridInfo, pointwise
from .base import _check_dtype, _check_features, _check_finite, _FlowModel, _generator
from .resample import STAGES, _refine_nodal, _resolution_schedule, input_grid_for

__all__ = ["SpaceTimeNet", "LIFTS", "KERNELS", "READOUTS", "STAGES"]

LIFTS = ("cells", "linear", "identity")
KERNELS = ("nodal", "basis", "neural", "conv", "spectral")
#: quadrature: (P x)_o = sum_c int p_oc x_c + beta_o; mean: a linear map (or, with
#: head_hidden, a one-hidden-layer GELU MLP) of the channel means; pool: the same of the
#: channel means of sigma(x) (global average pooling after the activation, as in CNNs);
#: function: y(xi) = Q x(T, xi) + q pointwise (operator learning)
READOUTS = ("quadrature", "mean", "pool", "function")
_DEFAULT_MODES = {"conv": 3}


def _radius(schedule: GridSchedule, radius, spacings, kernel) -> float | Sequence:
    """The conv kernel's radius argument: ``radius`` as given, or ``spacings`` times each
    step grid's spacing per axis (a list, one per step)."""
    if spacings is None:
        return 0.1 if radius is None else radius
    if radius is not None:
        raise ValueError("radius_spacings: give radius or radius_spacings, not both")
    if kernel != "conv":
        raise ValueError(f"radius_spacings: applies to conv kernels only, got kernel={kernel!r}")
    if isinstance(spacings, bool) or not isinstance(spacings, (int, float)):
        raise ValueError(f"radius_spacings: expected a positive number, got {spacings!r}")
    if not (math.isfinite(spacings) and spacings > 0):
        raise ValueError(f"radius_spacings: expected a positive finite number, got {spacings!r}")
    out = []
    for k, g in enumerate(schedule.grids[:-1]):
        if not g.is_uniform:
            raise ValueError(
                f"radius_spacings: grid {k} is not uniform (no single spacing); give radius"
            )
        h = GridInfo.of(g).h
        out.append(tuple(spacings * v for v in h) if g.dim > 1 else spacings * h[0])
    return out


class SpaceTimeNet(_FlowModel):
    """Lift -> integro-differential flow on a moving grid schedule -> readout.

    Scalar model (``channels=None``): ``forward(x [B, in_features]) -> [B, out_features]``.
    Lifts: ``cells`` (x_j is the value on the j-th of ``in_shape`` equal cells of Omega),
    ``linear`` (learned functions a_j, x -> sum_j x_j a_j + a_0), ``identity`` (x already is the
    state on G_0; a continuous model then reads any resolution). Readout: (P x)_c =
    int_Omega p_c(xi) x(T, xi) dxi + beta_c by the quadrature of G_K.

    With ``channels`` (an int, or ``[c_0, ..., c_K]``, or a schedule that has them) the state
    is ``[B, c_k, n_k]``: the input (``cells`` or ``identity``, ``in_channels`` features per
    node: ``[B, n_0]``, ``[B, c_in, n_0]`` or ``[B, c_in, *grid_shape]``) is lifted pointwise
    to c_0 channels by a learned ``c_0 x c_in`` map. Readouts: ``quadrature`` (per channel),
    ``mean`` (a linear map of the channel means m_c = (1/|Omega|) int_Omega x_c(T), or with
    ``head_hidden=H`` the MLP Linear(c_K, H) -> GELU -> Linear(H, out) of them), ``pool`` (the
    same of the means of sigma(x_c(T)), global average pooling after the activation) or
    ``function``
    (y(xi) = Q x(T, xi) + q with ``out_features`` output channels, returned on G_K in the
    input's layout, or on another grid with ``forward(x, output_grid=...)``).

    Channel normalisation (``norm="instance"`` or ``"group"``): the argument z ``[B, c_k, n]``
    of sigma is normalised in every form, sigma replaced by sigma o N_k: ``inside``
    W sigma(N_k(x)) + b (pre-activation, as in pre-activation ResNets), ``outside``
    sigma(N_k(W x + b)) (conv-norm-activation), ``bottleneck`` W2 sigma(N_k(W1 x + b1)) + b2.
    Per sample and group of channels (a group per channel for ``instance``),
    N_k(z)_c = gamma_c(t_k) (z_c - mu) / sqrt(s^2 + eps) + beta_c(t_k) with the mean
    mu = (1/|Omega|) int_Omega z and variance s^2 = (1/|Omega|) int_Omega (z - mu)^2 (both also
    averaged over the group's channels) taken by the quadrature of the grid z lives on (G_k
    for stationary kernels and for ``inside``; G_{k+1} for dense Euler ``outside``; H_k for the
    bottleneck): the same numbers on every grid that resolves the state. gamma, beta
    ``[c_k]`` are piecewise constant in t, one pair per step of the schedule the model is built
    on (like the stationary kernels' coefficients), so :meth:`with_schedule` and
    :meth:`at_resolution` keep them (see :class:`spacetime_nets.fields.ChannelNorm`).

    Kernels: ``nodal`` (a plain ResNet on this schedule), ``basis``, ``neural`` (dense,
    continuous), ``conv`` (a windowed continuous convolution of physical ``radius``) and
    ``spectral`` (FNO-like, ``modes`` per axis, periodic grids), or a Kernel instance.
    Continuous kernels keep p_c and a_j in the same basis, so the model lives on every schedule
    (:meth:`with_schedule`, :meth:`at_resolution`); a nodal model exists on its own only.

    Args:
        schedule: the grid schedule (times, grids G_k, optionally channel counts).
        in_features: input features (``None`` with ``lift="identity"``: n_0 * in_channels).
        out_features: outputs (classes, regression targets, or output channels of the
            ``function`` readout).
        kernel: ``nodal``, ``basis``, ``neural``, ``conv``, ``spectral`` or a Kernel instance.
        form: ``outside`` sigma(W x + b), ``inside`` W sigma(x) + b, ``bottleneck``.
        activation: a name of :data:`spacetime_nets.fields.ACTIVATIONS` or a callable.
        lift: ``cells``, ``linear`` (scalar model only) or ``identity``.
        readout: ``quadrature``, ``mean``, ``pool`` or ``function`` (all but the first need
            channels).
        head_hidden: ``readout="mean"`` or ``"pool"``: hidden width H of the MLP head on the channel
            means ``[B, c_K] -> Linear(c_K, H) -> GELU -> Linear(H, out) -> [B, out]``
            (None: the linear map ``Linear(c_K, out)``).
        norm: None (no normalisation), ``instance`` or ``group`` (needs channels): the
            channel normalisation by quadrature of sigma's argument described above.
        norm_groups: ``norm="group"`` only: the number of groups g, dividing every c_k
            (g = 1: one group of all channels, a layer norm).
        method: a registered stepper (:data:`spacetime_nets.steppers.STEPPERS`).
        checkpoint: recompute segments of this many steps in the backward pass.
        kernel2: the second kernel of the bottleneck form (default: one like ``kernel``).
        hidden_width: nodes of the bottleneck's hidden grid.
        in_shape: cells per axis of the ``cells`` lift.
        modes: basis size (basis 8, conv 3 by default; spectral: modes per axis, 8).
        basis: ``legendre`` or ``fourier`` (basis kernel, lift and readout functions).
        init_scale: scale of the initial controls (a finite number).
        seed: seed of the initialisation (None: torch's global generator).
        channels: an int or ``[c_0, ..., c_K]`` (see :meth:`GridSchedule.with_channels`).
        in_channels: input features per node (channel models).
        radius: conv kernels: physical radius (float, per-axis tuple, or a list with one
            entry per step). Default 0.1.
        radius_spacings: conv kernels: the radius in grid spacings of each step's grid
            instead (r_k = radius_spacings * h_k per axis, fixed as a physical radius from
            then on, so a refined model keeps it).
        pointwise: stationary kernels: add the pointwise channel mix A(t) (default: spectral
            yes, conv no).
        allow_underresolved: skip the check that every grid resolves the kernel.
        coordinates: channel models with ``lift="identity"``: the lift also sees the
            coordinates, X^0(xi) = L x(xi) + L_xi xi + l (an affine-in-xi lift bias; the
            d coordinate functions are functions on Omega, so this holds at every
            resolution). Lets a translation-invariant kernel learn where the boundary is.
    """

    def __init__(
        self,
        schedule: GridSchedule,
        in_features: int | None,
        out_features: int,
        kernel: str | Kernel = "nodal",
        form: str = "outside",
        activation: str | Callable = "relu",
        lift: str = "cells",
        readout: str = "quadrature",
        *,
        method: str = "euler",
        checkpoint: int | None = None,
        kernel2: Kernel | None = None,
        hidden_width: int | Sequence[int] | None = None,
        in_shape: Sequence[int] | None = None,
        modes: int | None = None,
        basis: str = "legendre",
        init_scale: float = 1.0,
        seed: int | None = None,
        channels: int | Sequence[int] | None = None,
        in_channels: int = 1,
        radius: float | Sequence | None = None,
        radius_spacings: float | None = None,
        pointwise: bool | None = None,
        allow_underresolved: bool = False,
        head_hidden: int | None = None,
        norm: str | None = None,
        norm_groups: int | None = None,
        coordinates: bool = False,
    ) -> None:
        super().__init__()
        self.input_grid: Grid | None = None
        if not isinstance(schedule, GridSchedule):
            raise ValueError(
                f"schedule: expected a grids.GridSchedule, got {type(schedule).__name__}"
            )
        if channels is not None:
            schedule = schedule.with_channels(channels)
        self.channel_mode = schedule.channels is not None
        self.in_channels = _check_features("in_channels", in_channels)
        if not self.channel_mode and in_channels != 1:
            raise ValueError(
                "in_channels: several input channels need channels=... (a state with channels)"
            )
        if lift not in LIFTS:
            raise ValueError(f"lift: expected one of {', '.join(LIFTS)}; got {lift!r}")
        if in_features is None:
            if lift != "identity":
                raise ValueError("in_features: None is allowed with lift='identity' only")
            in_features = schedule.widths[0] * self.in_channels
        self.in_features = _check_features("in_features", in_features)
        self.input_size = self.in_features
        self.out_features = _check_features("out_features", out_features)
        self._setup_flow(form, activation, method, checkpoint)
        if readout not in READOUTS:
            raise ValueError(f"readout: expected one of {', '.join(READOUTS)}; got {readout!r}")
        if readout != "quadrature" and not self.channel_mode:
            raise ValueError(f"readout: {readout!r} needs a state with channels (channels=...)")
        if head_hidden is not None:
            if readout not in ("mean", "pool"):
                raise ValueError(
                    f"head_hidden: applies to readout='mean' or 'pool' only (an MLP on the "
                    f"channel means); got head_hidden={head_hidden!r} with readout={readout!r}"
                )
            _check_features("head_hidden", head_hidden)
        self.head_hidden = head_hidden
        norm_groups = check_norm(
            norm, norm_groups, schedule.channels[:-1] if self.channel_mode else None
        )
        if norm is not None:
            norm_reads(self.form)
        if lift == "linear" and self.channel_mode:
            raise ValueError(
                "lift: 'linear' is for the scalar model; with channels use "
                "'identity' or 'cells' (then a learned pointwise lift)"
            )
        self.allow_underresolved = bool(allow_underresolved)
        self.lift_kind, self.readout_kind = lift, readout
        self.hidden_width = hidden_width
        gen = _generator(seed)
        hidden = self._hidden_grids(schedule)
        hw = [g.n for g in hidden] if hidden is not None else schedule.widths[:-1]
        kopts = {
            "radius": _radius(schedule, radius, radius_spacings, kernel),
            "pointwise": pointwise,
        }
        self.kernel = self._make_kernel(
            kernel, schedule, hw, "kernel", modes, basis, init_scale, gen, True, kopts
        )
        self.kernel2 = None
        if self.form == "bottleneck":
            k2 = kernel2 if kernel2 is not None else kernel
            if isinstance(k2, Kernel) and k2 is self.kernel:
                raise ValueError("kernel2: the bottleneck form needs a second, distinct kernel")
            self.kernel2 = self._make_kernel(
                k2, schedule, hw, "kernel2", modes, basis, init_scale, gen, False, kopts
            )
        self.continuous = self.kernel.continuous and (
            self.kernel2 is None or self.kernel2.continuous
        )
        self.basis_name = self.kernel.basis if isinstance(self.kernel, BasisKernel) else "legendre"
        self.modes = (
            self.kernel.modes
            if isinstance(self.kernel, BasisKernel)
            else (modes if isinstance(modes, int) and not self.kernel_stationary else 8)
        )
        d = schedule.dim
        A = self.modes**d
        self.domain = schedule.domain
        # ---- lift
        if lift == "cells":
            cells_in = self.in_features // self.in_channels
            if cells_in * self.in_channels != self.in_features:
                raise ValueError(
                    f"in_features: {self.in_features} is not a multiple of in_channels="
                    f"{self.in_channels}"
                )
            self.in_shape = self._cells_shape(in_shape, d, cells_in)
        elif lift == "identity":
            if in_features != schedule.widths[0] * self.in_channels:
                raise ValueError(
                    f"in_features: lift='identity' needs in_features = n_0 * in_channels = "
                    f"{schedule.widths[0] * self.in_channels}, got {in_features}"
                )
        elif lift == "linear":
            if self.continuous:
                self.lift_coeff = nn.Parameter(
                    torch.randn(in_features, A, generator=gen)
                    / math.sqrt(in_features * self.domain.volume)
                )
                self.lift_bias = nn.Parameter(torch.zeros(A))
            else:
                n0 = schedule.widths[0]
                self.lift_weight = nn.Parameter(
                    (torch.rand(n0, in_features, generator=gen) * 2 - 1) / math.sqrt(in_features)
                )
                self.lift_bias = nn.Parameter(torch.zeros(n0))
        if not isinstance(coordinates, bool):
            raise ValueError(f"coordinates: expected True or False, got {coordinates!r}")
        if coordinates and not (self.channel_mode and lift == "identity"):
            raise ValueError(
                "coordinates: the coordinates join the input as channels of a function: they "
                f"need channels=... and lift='identity', got lift={lift!r}"
                + ("" if self.channel_mode else " without channels")
            )
        self.coordinates = coordinates
        if self.channel_mode:
            c0 = schedule.channels[0]
            cin = self.in_channels + (self.domain.dim if coordinates else 0)
            self.lift_weight = nn.Parameter(
                (torch.rand(c0, cin, generator=gen) * 2 - 1) * math.sqrt(3.0 / cin)
            )
            self.lift_bias = nn.Parameter(torch.zeros(c0))
        # ---- readout: p_c in the basis (continuous) or as nodal values on G_K (nodal)
        cK = schedule.channels[-1] if self.channel_mode else 1
        shape = (out_features, cK) if self.channel_mode else (out_features,)
        if head_hidden is not None:  # pooled readout: Linear(c_K, H) -> GELU -> Linear(H, out)
            self.head_weight = nn.Parameter(
                (torch.rand(head_hidden, cK, generator=gen) * 2 - 1) / math.sqrt(cK)
            )
            self.head_bias = nn.Parameter(torch.zeros(head_hidden))
            self.readout_weight = nn.Parameter(
                (torch.rand(out_features, head_hidden, generator=gen) * 2 - 1)
                / math.sqrt(head_hidden)
            )
        elif readout in ("mean", "pool", "function"):
            self.readout_weight = nn.Parameter(
                (torch.rand(out_features, cK, generator=gen) * 2 - 1) / math.sqrt(cK)
            )
        elif self.continuous:
            self.readout_coeff = nn.Parameter(
                torch.randn(*shape, A, generator=gen) / math.sqrt(A * cK)
            )
        else:
            nK = schedule.widths[-1]
            vol = self.domain.volume
            self.readout_values = nn.Parameter(
                (torch.rand(*shape, nK, generator=gen) * 2 - 1) * math.sqrt(nK / cK) / vol
            )
        self.readout_bias = nn.Parameter(torch.zeros(out_features))
        # ---- channel normalisation: gamma, beta per step of this schedule (pieces in t)
        self.norm = norm
        self.norm_layer: ChannelNorm | None = None
        if norm is not None:
            self.norm_layer = ChannelNorm(
                norm, schedule.channels[:-1], norm_groups, T=float(schedule.T)
            )
        self._bind(schedule)

    @property
    def kernel_stationary(self) -> bool:
        return bool(getattr(getattr(self, "kernel", None), "stationary", False))

    @property
    def channels(self) -> list[int] | None:
        """[c_0, ..., c_K] of the current schedule (None: the scalar model)."""
        return self.schedule.channels

    # ------------------------------------------------------------------ construction helpers
    def _hidden_grids(self, schedule: GridSchedule) -> list[Grid] | None:
        if self.form != "bottleneck" or self.hidden_width is None:
            return None
        rule = "midpoint"
        return [Grid.uniform(self.hidden_width, schedule.domain, rule)] * schedule.num_steps

    def _make_kernel(
        self, kernel, schedule, hidden_widths, name, modes, basis, init_scale, gen, first, kopts
    ):
        K = schedule.num_steps
        if isinstance(kernel, Kernel):
            return kernel
        ch = schedule.channels
        const = None if ch is None else ch[0]
        if ch is not None and len(set(ch[:-1])) > 1 and kernel in ("basis", "neural"):
            raise ValueError(
                f"{name}: a {kernel} kernel has one channel count; the schedule changes "
                f"channels ({ch}): use a conv, spectral or nodal kernel"
            )
        if kernel == "nodal":
            steps_c = None if ch is None else ch[:-1]
            if self.form == "bottleneck":
                outs = (
                    hidden_widths
                    if first
                    else (schedule.widths[1:] if self.method == "euler" else schedule.widths[:-1])
                )
                ins = schedule.widths[:-1] if first else hidden_widths
                return NodalKernel(
                    out_widths=outs,
                    in_widths=ins,
                    init_scale=init_scale,
                    generator=gen,
                    channels=steps_c,
                )
            if self.method == "euler":
                return NodalKernel(schedule, init_scale=init_scale, generator=gen, channels=steps_c)
            w = schedule.widths[:-1]
            return NodalKernel(
                out_widths=w, in_widths=w, init_scale=init_scale, generator=gen, channels=steps_c
            )
        if modes is not None and (isinstance(modes, bool) or not isinstance(modes, int)):
            raise ValueError(f"modes: expected a positive int, got {modes!r}")
        m = modes if modes is not None else _DEFAULT_MODES.get(kernel, 8)
        if kernel == "basis":
            return BasisKernel(
                schedule.domain,
                modes=m,
                basis=basis,
                pieces=K,
                T=schedule.T,
                init_scale=init_scale,
                generator=gen,
                channels=const,
            )
        if kernel == "neural":
            return NeuralKernel(
                schedule.domain,
                T=schedule.T,
                init_scale=init_scale,
                generator=gen,
                channels=const,
            )
        if kernel in ("conv", "spectral"):
            if ch is None:
                raise ValueError(f"{name}: a {kernel} kernel needs channels=... (an int or list)")
            opts = {"init_scale": init_scale, "generator": gen, "modes": m}
            if kopts["pointwise"] is not None:
                opts["pointwise"] = kopts["pointwise"]
            if kernel == "conv":
                return ConvKernel.for_schedule(schedule, radius=kopts["radius"], **opts)
            return SpectralKernel.for_schedule(schedule, **opts)
        raise ValueError(
            f"{name}: expected one of {', '.join(KERNELS)} or a Kernel instance; got {kernel!r}"
        )

    def _cells_shape(self, in_shape, d: int, n: int) -> tuple[int, ...]:
        if in_shape is None:
            if d == 1:
                return (n,)
            side = round(n ** (1.0 / d))
            if side**d != n:
                raise ValueError(
                    f"in_shape: a {d}-D domain with in_features={n} (not a perfect power) needs "
                    f"in_shape, the number of cells per axis"
                )
            return (side,) * d
        in_shape = tuple(int(s) for s in in_shape)
        if len(in_shape) != d or math.prod(in_shape) != n or min(in_shape) < 1:
            raise ValueError(
                f"in_shape: expected {d} positive cell counts with product {n} (in_features / "
                f"in_channels), got {in_shape}"
            )
        return in_shape

    def _bind(self, schedule: GridSchedule) -> None:
        """(Re)build every schedule-dependent buffer: grids, transfers, cell indices."""
        ref = next(self.parameters())
        hidden = self._hidden_grids(schedule)
        disc = Discretization(schedule, hidden, self.allow_underresolved)
        disc = disc.to(device=ref.device, dtype=ref.dtype)
        disc.check_kernel(self.kernel, self.form, self.method, self.kernel2)
        self._check_norm_channels(disc)
        self.disc = disc
        self._out_transfers = {}
        if hasattr(self, "readout_values") and schedule.widths[-1] != self.readout_values.shape[-1]:
            raise ValueError("schedule: the nodal readout was made for another final grid")
        if self.lift_kind == "cells":
            nodes0 = schedule.grids[0].nodes
            idx = torch.zeros(nodes0.shape[0], dtype=torch.long)
            for axis, (cells, (a, b)) in enumerate(zip(self.in_shape, self.domain.bounds)):
                c = torch.floor((nodes0[:, axis] - a) / (b - a) * cells).long().clamp(0, cells - 1)
                idx = idx * cells + c
            self.register_buffer("lift_index", idx.to(ref.device))
        if self.lift_kind == "identity":
            # the input is a function on G_0: it follows the grid
            self.in_features = self.input_size = schedule.widths[0] * self.in_channels

    def _check_norm_channels(self, disc: Discretization) -> None:
        """The normalisation's channels at every step time must be the schedule's c_k."""
        norm = getattr(self, "norm_layer", None)
        if norm is None:
            return
        for k, t in enumerate(disc.times[:-1]):
            mine, theirs = norm.channels_at(t), disc.channels[k]
            if mine != theirs:
                raise ValueError(
                    f"schedule: step {k} (t={t:.4g}) has {theirs} channels, the channel "
                    f"normalisation has {mine} there"
                )

    # ------------------------------------------------------------------ the three parts
    def lift_matrix(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(M [n_0, in_features], a_0 [n_0]) with X^0 = x M^T + a_0, x the standardised
        input (x - in_shift) / in_scale."""
        nodes0, _ = self.disc.grid(0)
        n0 = nodes0.shape[0]
        if self.lift_kind == "cells":
            M = torch.zeros(n0, self.in_features, dtype=nodes0.dtype, device=nodes0.device)
            M[torch.arange(n0, device=nodes0.device), self.lift_index] = 1.0
            return M, torch.zeros(n0, dtype=nodes0.dtype, device=nodes0.device)
        if self.lift_kind == "identity":
            return (
                torch.eye(n0, dtype=nodes0.dtype, device=nodes0.device),
                torch.zeros(n0, dtype=nodes0.dtype, device=nodes0.device),
            )
        if self.continuous:
            phi = self._phi(nodes0)
            return phi @ self.lift_coeff.T, phi @ self.lift_bias
        return self.lift_weight, self.lift_bias

    def lift(self, x: torch.Tensor) -> torch.Tensor:
        """x ``[B, in_features]`` -> X^0 ``[B, n_0]`` on G_0; with channels, the input's
        ``[B, c_in, n_0]`` values lifted pointwise: X^0_i = L x_i + l ``[B, c_0, n_0]``
        (with ``coordinates``, + L_xi xi_i: ``lift_weight`` is ``[c_0, c_in + d]``).
        The input is standardised first, x -> (x - in_shift) / in_scale
        (:meth:`set_normalizers`; the identity by default)."""
        x = self._standardize(x)
        if self.channel_mode:
            x = self._as_state(x)
            if self.lift_kind == "cells":
                x = x[..., self.lift_index]
            if getattr(self, "coordinates", False):
                cin = self.in_channels
                field = self.lift_weight[:, cin:] @ self.disc.grid(0)[0].T.to(x.dtype)
                return pointwise(x, self.lift_weight[:, :cin], self.lift_bias) + field
            return pointwise(x, self.lift_weight, self.lift_bias)
        if self.lift_kind == "cells":
            return x[:, self.lift_index]
        if self.lift_kind == "identity":
            return x
        M, a0 = self.lift_matrix()
        return torch.nn.functional.linear(x, M, a0)

    def _as_state(self, x: torch.Tensor) -> torch.Tensor:
        """An input in any accepted layout -> ``[B, c_in, n]`` (cells: n = number of cells)."""
        return x.reshape(x.shape[0], self.in_channels, -1)

    def forward(
        self,
        x: torch.Tensor | Sequence[torch.Tensor],
        output_grid: Grid | None = None,
        input_grid: Grid | None = None,
        lengths: torch.Tensor | Sequence[int] | None = None,
    ) -> torch.Tensor | list[torch.Tensor]:
        """lift -> flow -> readout. Scalar: ``[B, in_features] -> [B, out_features]``.
        Channels: the input ``[B, n_0]``, ``[B, c_in, n_0]`` or ``[B, c_in, *grid_shape]``
        (or ``[B, in_features]`` cell values); the function readout answers in the same layout
        (``[B, n_K]`` for ``[B, n_0]`` and one output channel), on ``output_grid`` if given
        (the final state transferred there by linear interpolation).

        Inputs sampled elsewhere (``lift="identity"``): ``input_grid`` (or the grid that
        :meth:`at_resolution` set, :attr:`input_grid`) says where, and the input is moved to
        G_0 by the ``galerkin`` transfer (linear interpolation onto a finer G_0, the exact
        hat average onto a coarser one); a function readout then answers on that grid when
        G_K has G_0's shape. A list of series ``[c_in, n_b]`` (or ``[n_b]``) of any lengths,
        each on the uniform grid of its length laid out like G_0, is one batch: ``[B, out]``,
        or a list of ``[out, n_b]`` functions for the function readout; so is a padded
        tensor ``[B, c_in, N]`` (or ``[B, N]``) with ``lengths`` ``[B]``, series b being its
        first ``lengths[b]`` values."""
        if lengths is not None:
            x = self._unpad(x, lengths)
        if isinstance(x, (list, tuple)):
            return self._forward_list(x, output_grid, input_grid)
        grid_in = input_grid if input_grid is not None else self.input_grid
        if grid_in is not None:
            x = self._to_first_grid(x, grid_in)
            if output_grid is None and self.readout_kind == "function":
                if self.schedule.grids[-1].shape == self.schedule.grids[0].shape:
                    output_grid = grid_in
        if not self.channel_mode:
            if output_grid is not None:
                raise ValueError("output_grid: needs readout='function'")
            return super().forward(x)
        self._check_channel_input(x)
        final, _ = self._flow(self.lift(x), keep_states=False)
        if self.readout_kind != "function":
            if output_grid is not None:
                raise ValueError("output_grid: needs readout='function'")
            return self.readout(final)
        y = self.readout(final)
        grid = self.schedule.grids[-1]
        if output_grid is not None:
            y = self._output_transfer(output_grid, y)
            grid = output_grid
        if x.dim() == 2 and self.out_features == 1:
            return y[:, 0]
        if x.dim() > 3 or (x.dim() == 2 and self.lift_kind == "cells" and grid.dim > 1):
            return y.reshape(y.shape[0], y.shape[1], *grid.shape)
        return y

    def _unpad(self, x: torch.Tensor, lengths) -> list[torch.Tensor]:
        """A padded batch ``[B, c_in, N]`` / ``[B, N]`` and its lengths -> a list of series."""
        if not isinstance(x, torch.Tensor) or x.dim() not in (2, 3):
            got = f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"x: with lengths, expected a padded [B, c_in, N] or [B, N], got {got}"
            )
        if isinstance(lengths, torch.Tensor):
            lengths = lengths.tolist()  # host values: the lengths decide shapes
        lengths = list(lengths) if isinstance(lengths, (list, tuple)) else lengths
        ok = isinstance(lengths, list) and len(lengths) == x.shape[0]
        ok = ok and all(
            isinstance(n, int) and not isinstance(n, bool) and 2 <= n <= x.shape[-1]
            for n in lengths
        )
        if not ok:
            raise ValueError(
                f"lengths: expected {x.shape[0]} ints in [2, {x.shape[-1]}] (one per series of "
                f"the padded batch), got {lengths!r}"
            )
        return [x[b, ..., :n] for b, n in enumerate(lengths)]

    def _forward_list(self, xs, output_grid, input_grid) -> torch.Tensor | list[torch.Tensor]:
        """A batch of series of their own lengths (see :meth:`forward`)."""
        if input_grid is not None or output_grid is not None:
            raise ValueError("x: a list of series takes neither input_grid nor output_grid")
        if self.lift_kind != "identity" or self.schedule.dim != 1:
            raise ValueError(
                "x: a list of series of any length needs lift='identity' on a 1-D domain"
            )
        if len(xs) == 0:
            raise ValueError("x: expected a non-empty list of series, got an empty list")
        g0 = self.schedule.grids[0]
        cin = self.in_channels
        rows, grids = [], []
        for b, s in enumerate(xs):
            ok = isinstance(s, torch.Tensor) and (
                (s.dim() == 1 and cin == 1) or (s.dim() == 2 and s.shape[0] == cin)
            )
            if not ok or s.shape[-1] < 2:
                got = f"shape {tuple(s.shape)}" if isinstance(s, torch.Tensor) else type(s)
                want = f"[{cin}, n]" + (" or [n]" if cin == 1 else "")
                raise ValueError(f"x[{b}]: expected a series {want} with n >= 2, got {got}")
            grids.append(input_grid_for(g0, int(s.shape[-1])))
            rows.append(self._to_first_grid(s.reshape(1, cin, -1), grids[-1]))
        out = self.forward(torch.cat(rows))
        if self.readout_kind != "function":
            return out
        out = out.reshape(len(xs), self.out_features, -1)
        return [self._output_transfer(g, out[b : b + 1])[0] for b, g in enumerate(grids)]

    def _to_first_grid(self, x: torch.Tensor, grid: Grid) -> torch.Tensor:
        """An input on ``grid`` -> the same function on G_0 ``[B, c_in, *shape of G_0]`` (or
        ``[B, n_0]`` for a scalar model / one channel given as ``[B, n]``)."""
        if self.lift_kind != "identity":
            raise ValueError(
                f"input_grid: needs lift='identity' (inputs are functions), got {self.lift_kind!r}"
            )
        if not isinstance(grid, Grid) or grid.domain != self.domain:
            raise ValueError(f"input_grid: expected a grids.Grid on {self.domain}, got {grid!r}")
        g0 = self.schedule.grids[0]
        if grid.same_as(g0):
            return x
        cin = self.in_channels
        if not self._on_grid(x, grid):
            got = f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"x: expected [B, {cin}, {grid.n}] (values on input_grid {grid!r}), got {got}"
            )
        _check_dtype(x, self)
        key = ("in", id(grid), x.device, x.dtype)
        hit = self._out_transfers.get(key)
        if hit is None or hit[0] is not grid:
            p = make_transfer(grid, g0, "galerkin").to(device=x.device, dtype=x.dtype)
            hit = self._out_transfers[key] = (grid, p)
        y = hit[1](x.reshape(x.shape[0], cin, grid.n))
        if x.dim() == 2:
            return y[:, 0]
        return y if x.dim() == 3 else y.reshape(y.shape[0], cin, *g0.shape)

    def _on_grid(self, x: object, grid: Grid) -> bool:
        """x is values on ``grid`` in an accepted layout: ``[B, n]`` (one input channel),
        ``[B, c_in, n]`` or ``[B, c_in, *grid.shape]``."""
        cin = self.in_channels
        return isinstance(x, torch.Tensor) and (
            (x.dim() == 2 and cin == 1 and x.shape[1] == grid.n)
            or (x.dim() == 3 and tuple(x.shape[1:]) == (cin, grid.n))
            or (x.dim() == 2 + grid.dim and tuple(x.shape[1:]) == (cin, *grid.shape))
        )

    def _output_transfer(self, grid: Grid, y: torch.Tensor) -> torch.Tensor:
        if not isinstance(grid, Grid) or grid.domain != self.domain:
            raise ValueError(f"output_grid: expected a grids.Grid on {self.domain}, got {grid!r}")
        key = id(grid)
        hit = self._out_transfers.get(key)
        if hit is None or hit[0] is not grid:
            p = make_transfer(self.schedule.grids[-1], grid, "linear").to(
                device=y.device, dtype=y.dtype
            )
            hit = self._out_transfers[key] = (grid, p)
        return hit[1](y)

    def trajectory(self, x: torch.Tensor) -> Trajectory:
        """The states X^k ``[B, n_k]`` (``[B, c_k, n_k]`` with channels) at every time t_k,
        after the lift."""
        if self.input_grid is not None:
            x = self._to_first_grid(x, self.input_grid)
        if not self.channel_mode:
            return super().trajectory(x)
        self._check_channel_input(x)
        return self._trajectory(self.lift(x))

    def _check_channel_input(self, x: torch.Tensor) -> None:
        cin = self.in_channels
        if self.lift_kind == "cells":
            self._check_input(x, self.in_features)
            return
        n0 = self.schedule.widths[0]
        shape0 = self.schedule.grids[0].shape
        if not self._on_grid(x, self.schedule.grids[0]):
            got = f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            want = [f"[B, {cin}, {n0}]"]
            if cin == 1:
                want.insert(0, f"[B, {n0}]")
            if len(shape0) > 1:
                want.append(f"[B, {cin}, {', '.join(map(str, shape0))}]")
            raise ValueError(
                f"x: expected {' or '.join(want)} (values on the first grid), got {got}; "
                "use model.at_resolution(...) or with_schedule(...) for another resolution"
            )
        _check_dtype(x, self)
        _check_finite(x)

    def _phi(self, nodes: torch.Tensor) -> torch.Tensor:
        if isinstance(self.kernel, BasisKernel):
            return self.kernel.phi(nodes)
        return tensor_basis(nodes.double(), self.domain, self.modes, self.basis_name).to(
            nodes.dtype
        )

    def readout_matrix(self, k: int | None = None) -> torch.Tensor:
        """R ``[out, n_k]`` with (P x)_c = sum_j R_cj x_j = sum_j omega_j p_c(xi_j) x_j (k = K
        by default; other k only for continuous readouts)."""
        K = self.disc.num_steps
        k = K if k is None else k
        nodes, weights = self.disc.grid(k)
        if self.readout_kind != "quadrature":
            raise ValueError(f"readout_matrix: the {self.readout_kind!r} readout has none")
        if self.continuous:
            R = (self.readout_coeff @ self._phi(nodes).T) * weights
        else:
            if k != K:
                raise ValueError(
                    f"k: a nodal readout lives on the final grid only (k={K}), got {k}"
                )
            R = self.readout_values * weights
        return R.reshape(R.shape[0], -1)

    def readout(self, xT: torch.Tensor, k: int | None = None) -> torch.Tensor:
        """The readout of a state ``[B, c, n_k]`` on G_k (k = K by default): quadrature
        ``[B, out]``; mean ``[B, out]``: the channel means m = (1/|Omega|) sum_j omega_j x_j
        ``[B, c]`` through ``Linear(c, out)``, or with ``head_hidden`` H through
        ``Linear(c, H) -> GELU -> Linear(H, out)``; pool: the same with sigma(x_j) in place of
        x_j; function ``[B, out, n_k]``. The result is de-standardised,
        z -> z * out_scale + out_shift (:meth:`set_normalizers`; the identity by default)."""
        return self._destandardize(self._readout(xT, k))

    def _readout(self, xT: torch.Tensor, k: int | None) -> torch.Tensor:
        if self.readout_kind == "function":
            return pointwise(xT, self.readout_weight, self.readout_bias)
        if self.readout_kind in ("mean", "pool"):
            _, w = self.disc.grid(self.disc.num_steps if k is None else k)
            z = self.act(xT) if self.readout_kind == "pool" else xT
            means = (z * w).sum(-1) / self.domain.volume
            if getattr(self, "head_hidden", None) is not None:
                means = torch.nn.functional.gelu(
                    torch.nn.functional.linear(means, self.head_weight, self.head_bias)
                )
            return torch.nn.functional.linear(means, self.readout_weight, self.readout_bias)
        return torch.nn.functional.linear(xT.flatten(1), self.readout_matrix(k), self.readout_bias)

    def readout_along(self, states: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """P x(t_k) for every state of a trajectory ``[B, n_k] -> [B, out]`` (turnpike costs).
        Nodal readouts see the state transferred to G_K (linear interpolation)."""
        if self.continuous:
            return [self.readout(s, k) for k, s in enumerate(states)]
        sched = self.schedule
        last = sched.grids[-1]
        out = []
        for k, s in enumerate(states):
            p = make_transfer(sched.grids[k], last, "linear").to(s.device, s.dtype)
            out.append(self.readout(p(s)))
        return out

    # ------------------------------------------------------------------ discretisation changes
    def with_schedule(self, schedule: GridSchedule) -> SpaceTimeNet:
        """The same continuous model discretised on another schedule (shares no tensors)."""
        if not self.continuous:
            raise ValueError(
                "schedule: a nodal SpaceTimeNet exists only on its own schedule; use refine() "
                "to interpolate it, or a continuous kernel (basis, neural, function)"
            )
        if not isinstance(schedule, GridSchedule):
            raise ValueError(
                f"schedule: expected a grids.GridSchedule, got {type(schedule).__name__}"
            )
        if schedule.domain != self.domain:
            raise ValueError(f"schedule: domain must be {self.domain}, got {schedule.domain}")
        if self.channel_mode and schedule.channels is None:
            # c(t) of this model: the kernel's channels per step, the readout's at t = T
            ch = [self.kernel.channels_at(k, float(t)) for k, t in enumerate(schedule.times[:-1])]
            schedule = schedule.with_channels([*ch, self.schedule.channels[-1]])
        elif not self.channel_mode and schedule.channels is not None:
            raise ValueError("schedule: has channels, but this is a scalar model")
        new = copy.deepcopy(self)
        new._bind(schedule)
        new._set_input_grid(None)
        return new

    def at_resolution(self, n: int | Sequence[int], stages: str = "keep") -> SpaceTimeNet:
        """The same continuous model for inputs of ``n`` nodes per axis (any n >= 2), laid
        out like G_0 (its rule, or the trapezoid / midpoint rule with the same nodes when the
        rule does not take n).

        ``stages="keep"`` (default): a stage is a function space. Grids of G_0's resolution
        become the n-node grid when it is at least as fine; every other grid (a coarse stage
        of a pyramid or hourglass) keeps its nodes, so a coarsening transfer that filters
        (``galerkin``) gives it the same state at every input resolution. A coarser input is
        interpolated onto G_0 (:attr:`input_grid`). ``stages="scale"``: every grid is scaled
        by the factor that takes G_0 to n (n_k - 1 -> (n_k - 1)(n - 1) / (n_0 - 1) for rules
        with end points, n_k -> n_k n / n_0 otherwise), each rounded to the nearest size its
        rule accepts. Times and channels are kept in both."""
        sched = _resolution_schedule(self.schedule, n, stages)
        new = self.with_schedule(sched)
        grid = input_grid_for(self.schedule.grids[0], n)
        if not grid.same_as(sched.grids[0]):
            new._set_input_grid(grid)
        return new

    def _set_input_grid(self, grid: Grid | None) -> None:
        """Inputs arrive on ``grid`` (None: on G_0)."""
        self.input_grid = grid
        if self.lift_kind == "identity":
            n = (grid or self.schedule.grids[0]).n
            self.in_features = self.input_size = n * self.in_channels

    def refine(self, width: int = 2, depth: int = 2) -> SpaceTimeNet:
        """The model on ``schedule.refine(width, depth)``: exact resampling for continuous
        kernels; interpolated samples for nodal ones (Net2Wider / Net2Deeper in the continuum),
        so the network function is nearly preserved."""
        fine = self.schedule.refine(width, depth)
        if self.continuous:
            return self.with_schedule(fine)
        if self.form == "bottleneck" or self.method != "euler":
            raise ValueError("refine: nodal refinement supports the euler outside/inside forms")
        return _refine_nodal(self, fine, depth)

    def _rebind(self, schedule: GridSchedule) -> None:
        self._bind(schedule)

    def extra_repr(self) -> str:
        norm, hidden = getattr(self, "norm", None), getattr(self, "head_hidden", None)
        extra = "" if norm is None else f", norm={norm}"
        if hidden is not None:
            extra += f", head_hidden={hidden}"
        return (
            f"form={self.form}, activation={self.activation_name}, lift={self.lift_kind}, "
            f"widths={self.schedule!r}{extra}"
        )
