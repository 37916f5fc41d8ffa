"""``SpaceTimeNet``: lift -> space-time flow on a grid schedule -> readout."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from grids import Grid, GridSchedule, make_transfer

from ..fields import (
    DEFAULT_ACTIVATION,
    DEFAULT_FORM,
    ChannelNorm,
    check_norm,
    norm_reads,
)
from ..integrate import Discretization, Trajectory
from ..kernels import BASES, BasisKernel, Kernel, check_scale, tensor_basis
from ..ops import pointwise
from ..steppers import steps_between_grids
from ..validation import check_bool, check_choice, check_int
from .base import (
    FlowModel,
    _check_device,
    _check_dtype,
    _check_features,
    _check_finite,
    _generator,
)
from .kernel_kinds import (
    KERNEL_OPTIONS,
    KERNEL_REGISTRY,
    KERNELS,
    KernelRequest,
)
from .lifts import LIFT_REGISTRY, LIFTS, Lift
from .options import (
    _check_applicable,
    _check_hidden_width,
    _check_kernel_arg,
    _check_size,
    _radius,
    _reads,
    _size_terms,
)
from .readouts import READOUT_REGISTRY, READOUTS, Readout, ReadoutRequest
from .resample import STAGES, _refine_nodal, _resolution_schedule, input_grid_for

__all__ = [
    "SpaceTimeNet",
    "LIFTS",
    "KERNELS",
    "KERNEL_OPTIONS",
    "READOUTS",
    "STAGES",
]


class SpaceTimeNet(FlowModel):
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
    on (like the stationary kernels' coefficients), so
    [`with_schedule`][spacetime_nets.models.SpaceTimeNet.with_schedule] and
    [`at_resolution`][spacetime_nets.models.SpaceTimeNet.at_resolution] keep them (see
    [`ChannelNorm`][spacetime_nets.fields.ChannelNorm]).

    Kernels: ``nodal`` (a plain ResNet on this schedule), ``basis``, ``neural`` (dense,
    continuous), ``conv`` (a windowed continuous convolution of physical ``radius``) and
    ``spectral`` (FNO-like, ``modes`` per axis, periodic grids), or a Kernel instance.
    Continuous kernels keep p_c and a_j in the same basis, so the model lives on every schedule
    ([`with_schedule`][spacetime_nets.models.SpaceTimeNet.with_schedule],
    [`at_resolution`][spacetime_nets.models.SpaceTimeNet.at_resolution]); a nodal model exists on
    its own only.

    Args:
        schedule: the grid schedule (times, grids G_k, optionally channel counts).
        in_features: input features (``None`` with ``lift="identity"``: n_0 * in_channels).
        out_features: outputs (classes, regression targets, or output channels of the
            ``function`` readout).
        kernel: ``nodal``, ``basis``, ``neural``, ``conv``, ``spectral`` (or another name of
            ``KERNELS``, a kind added with ``register_kernel_kind``) or a Kernel instance.
        form: ``inside`` W sigma(x) + b (the default, ``fields.DEFAULT_FORM``), ``outside``
            sigma(W x + b), ``bottleneck``, or another name of ``fields.FORMS``.
        activation: a name of ``spacetime_nets.fields.ACTIVATIONS`` or a callable (default
            ``tanh``, ``fields.DEFAULT_ACTIVATION``).
        lift: ``cells``, ``linear`` (scalar model only) or ``identity``.
        readout: ``quadrature``, ``mean``, ``pool`` or ``function`` (all but the first need
            channels), or another name of ``READOUTS`` (added with
            [`register_readout`][spacetime_nets.models.register_readout]).
        head_hidden: ``readout="mean"`` or ``"pool"``: hidden width H of the MLP head on the channel
            means ``[B, c_K] -> Linear(c_K, H) -> GELU -> Linear(H, out) -> [B, out]``
            (None: the linear map ``Linear(c_K, out)``).
        norm: None (no normalisation), ``instance`` or ``group`` (needs channels): the
            channel normalisation by quadrature of sigma's argument described above.
        norm_groups: ``norm="group"`` only: the number of groups g, dividing every c_k
            (g = 1: one group of all channels, a layer norm).
        method: a registered stepper (``spacetime_nets.steppers.STEPPERS``).
        checkpoint: recompute segments of this many steps in the backward pass.
        kernel2: ``form="bottleneck"`` only: the second kernel, a name or a Kernel instance
            (None: one like ``kernel``, made with the same options).
        hidden_width: ``form="bottleneck"`` only: nodes of the hidden grid H_k, an int on an
            interval or one per axis (midpoint rule; None: H_k = G_k).
        in_shape: ``lift="cells"`` only: cells per axis, a tuple of d ints >= 1 with
            product in_features / in_channels (None: in_features / in_channels cells on an
            interval, equal cells per axis on a box when that count is a perfect d-th power).
        modes: basis, neural, conv and spectral kernels only (``KERNEL_OPTIONS``), an
            int >= 1 (NumPy integers too). None: the variant's default, basis 8 functions per
            axis (which also carry the lift and readout), neural 8 (the lift and readout
            basis), conv 3 Legendre polynomials per axis, spectral 8 frequencies per axis.
        basis: basis kernel only: ``legendre`` or ``fourier`` (its functions, and the lift and
            readout functions). None: ``legendre``.
        init_scale: scale of the initial controls, a finite number >= 0.
        seed: seed of the initialisation, an int in [0, 2**63) (None: torch's global
            generator).
        channels: an int or ``[c_0, ..., c_K]`` (see
            [`GridSchedule.with_channels`][grids.schedule.GridSchedule.with_channels]).
        in_channels: input features per node (channel models).
        radius: conv kernel only: the physical radius, r_a in (0, L_a] on an axis of extent
            L_a (a float, a per-axis tuple, or a list with one entry per step). None: 0.1
            (unless ``radius_spacings`` is given).
        radius_spacings: conv kernel only: the radius in grid spacings of each step's grid
            instead (r_k = radius_spacings * h_k per axis, at most the domain's extent, fixed
            as a physical radius from then on, so a refined model keeps it). None: use
            ``radius``.
        pointwise: conv and spectral kernels only: add the pointwise channel mix A(t)
            (True or False; None: the variant's default, spectral True, conv False).
        allow_underresolved: skip the check that every grid resolves the kernel (True or
            False).
        coordinates: channel models with ``lift="identity"``: the lift also sees the
            coordinates, X^0(xi) = L x(xi) + L_xi xi + l (an affine-in-xi lift bias; the
            d coordinate functions are functions on Omega, so this holds at every
            resolution). Lets a translation-invariant kernel learn where the boundary is.

    Options of another variant are refused, not ignored: a kernel option given (not None)
    that neither kernel reads (``KERNEL_OPTIONS``: ``radius`` with a basis kernel,
    ``modes`` with a nodal one ...), ``hidden_width`` or ``kernel2`` without
    ``form="bottleneck"``, ``in_shape`` without ``lift="cells"``, ``head_hidden`` without
    the mean or pool readout raise ValueError naming the option and the variant. Sizes are
    ints (Python or NumPy); a model whose parameters and one sample's states would exceed
    ``spacetime_nets.models.base.MAX_MODEL_BYTES`` is refused before anything is
    allocated, naming the argument that makes it large.

    Raises:
        ValueError: on every bad argument, as ``"<argument>: expected <what>, got <value>"``.
    """

    def __init__(
        self,
        schedule: GridSchedule,
        in_features: int | None,
        out_features: int,
        kernel: str | Kernel = "nodal",
        form: str = DEFAULT_FORM,
        activation: str | Callable = DEFAULT_ACTIVATION,
        lift: str = "cells",
        readout: str = "quadrature",
        *,
        method: str = "euler",
        checkpoint: int | None = None,
        kernel2: str | Kernel | None = None,
        hidden_width: int | Sequence[int] | None = None,
        in_shape: Sequence[int] | None = None,
        modes: int | None = None,
        basis: str | None = None,
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
        self._setup_flow(form, activation, method, checkpoint)
        # ---- the variants, and options of other variants: refused, not ignored
        given = {
            "hidden_width": hidden_width,
            "kernel2": kernel2,
            "in_shape": in_shape,
            "modes": modes,
            "basis": basis,
            "radius": radius,
            "radius_spacings": radius_spacings,
            "pointwise": pointwise,
            "head_hidden": head_hidden,
        }
        kernels, lift_entry, readout_entry = self._variants(kernel, lift, readout, given)
        if channels is not None:
            schedule = schedule.with_channels(channels)
        self.channel_mode = schedule.channels is not None
        # ---- inputs and outputs: counts, layouts, the head
        self._check_io(
            schedule, lift_entry, readout_entry, in_features, out_features, in_channels, in_shape
        )
        self.coordinates = check_bool("coordinates", coordinates)
        if self.coordinates and not (self.channel_mode and lift_entry.function):
            raise ValueError(
                "coordinates: the coordinates join the input as channels of a function: they "
                f"need channels=... and lift='identity', got lift={lift!r}"
                + ("" if self.channel_mode else " without channels")
            )
        self.head_hidden = head_hidden = (
            None if head_hidden is None else _check_features("head_hidden", head_hidden)
        )
        norm_groups = check_norm(
            norm, norm_groups, schedule.channels[:-1] if self.channel_mode else None
        )
        if norm is not None:
            norm_reads(self.form)
        # ---- the values of the options (None: the variant's default)
        if modes is not None:
            modes = check_int("modes", modes, 1)
        basis = "legendre" if basis is None else check_choice("basis", basis, BASES)
        if pointwise is not None:
            pointwise = check_bool("pointwise", pointwise)
        self.allow_underresolved = check_bool("allow_underresolved", allow_underresolved)
        init_scale = check_scale(init_scale)
        gen = _generator(seed)
        if hidden_width is not None:
            hidden_width = _check_hidden_width(hidden_width, schedule.dim)
        # ---- the memory it needs, before anything is allocated
        self.lift_kind, self.readout_kind = lift, readout
        shown = channels if channels is not None else schedule.channels
        self._check_memory(schedule, kernels, shown, modes, head_hidden, hidden_width, pointwise)
        self.hidden_width = hidden_width
        # ---- the parts, in the order they draw from the generator: kernels, lift, readout
        radii = (radius, radius_spacings)
        self._build_kernels(kernels, schedule, modes, basis, init_scale, gen, radii, pointwise)
        self.domain = schedule.domain
        self._build_lift(schedule, lift_entry, gen)
        A = self.modes**schedule.dim
        request = ReadoutRequest(schedule, self.out_features, self.continuous, A, head_hidden, gen)
        self._set_parameters(readout_entry.build(request))
        # ---- channel normalisation: gamma, beta per step of this schedule (pieces in t)
        self.norm = norm
        self.norm_layer: ChannelNorm | None = None
        if norm is not None:
            self.norm_layer = ChannelNorm(
                norm, schedule.channels[:-1], norm_groups, T=float(schedule.T)
            )
        self._bind(schedule)

    # ------------------------------------------------------------------ construction steps
    def _variants(
        self, kernel: object, lift: object, readout: object, given: dict[str, object]
    ) -> tuple[list[str | Kernel], Lift, Readout]:
        """The kernels (one, or the bottleneck's two), the lift's and the readout's entries,
        after refusing unknown names and options the chosen variants do not read."""
        kernel = _check_kernel_arg("kernel", kernel)
        lift_entry = LIFT_REGISTRY.get(lift) if isinstance(lift, str) else None
        if lift_entry is None:
            raise ValueError(f"lift: expected one of {', '.join(LIFTS)}; got {lift!r}")
        readout_entry = READOUT_REGISTRY.get(readout) if isinstance(readout, str) else None
        if readout_entry is None:
            raise ValueError(f"readout: expected one of {', '.join(READOUTS)}; got {readout!r}")
        kernel2 = given["kernel2"]
        if kernel2 is not None and self.two_operators:
            kernel2 = given["kernel2"] = _check_kernel_arg("kernel2", kernel2)
        _check_applicable(kernel, kernel2, self.form, lift, given)
        if given["head_hidden"] is not None and not readout_entry.head:
            heads = " or ".join(repr(n) for n, r in READOUT_REGISTRY.items() if r.head)
            raise ValueError(
                f"head_hidden: applies to readout={heads} only (an MLP on the pooled "
                f"channels); got head_hidden={given['head_hidden']!r} with readout={readout!r}"
            )
        kernels = [kernel]
        if self.two_operators:
            kernels.append(kernel if kernel2 is None else kernel2)
        return kernels, lift_entry, readout_entry

    def _check_io(
        self,
        schedule: GridSchedule,
        lift: Lift,
        readout: Readout,
        in_features: object,
        out_features: object,
        in_channels: object,
        in_shape: object,
    ) -> None:
        """Set ``in_channels``, ``in_features`` (``input_size``), ``out_features`` and, for
        the cells lift, ``in_shape``, after checking that the lift and the readout serve this
        model (scalar or channels) and that the counts fit the lift."""
        self.in_channels = _check_features("in_channels", in_channels)
        if not self.channel_mode and self.in_channels != 1:
            raise ValueError(
                "in_channels: several input channels need channels=... (a state with channels)"
            )
        n0 = schedule.widths[0] * self.in_channels
        if in_features is None:
            if not lift.function:
                raise ValueError("in_features: None is allowed with lift='identity' only")
            in_features = n0
        self.in_features = self.input_size = _check_features("in_features", in_features)
        self.out_features = _check_features("out_features", out_features)
        if not (readout.scalar or self.channel_mode):
            raise ValueError(
                f"readout: {readout.name!r} needs a state with channels (channels=...)"
            )
        if not (lift.channels if self.channel_mode else lift.scalar):
            which = [
                n
                for n, e in LIFT_REGISTRY.items()
                if (e.channels if self.channel_mode else e.scalar)
            ]
            model = "channel models (channels=...)" if self.channel_mode else "the scalar model"
            raise ValueError(
                f"lift: {lift.name!r} does not serve {model}; use {' or '.join(map(repr, which))}"
                + (" (then a learned pointwise lift)" if self.channel_mode else "")
            )
        if lift.cells:
            cells_in = self.in_features // self.in_channels
            if cells_in * self.in_channels != self.in_features:
                raise ValueError(
                    f"in_features: {self.in_features} is not a multiple of in_channels="
                    f"{self.in_channels}"
                )
            self.in_shape = self._cells_shape(in_shape, schedule.dim, cells_in)
        elif lift.function and self.in_features != n0:
            raise ValueError(
                f"in_features: lift={lift.name!r} needs in_features = n_0 * in_channels = "
                f"{n0}, got {self.in_features}"
            )

    def _set_parameters(self, params: dict[str, nn.Parameter]) -> None:
        """Register ``params`` on the model under their names, in their order."""
        for name, param in params.items():
            setattr(self, name, param)

    def _check_memory(
        self, schedule, kernels, channels, modes, head_hidden, hidden_width, pointwise
    ) -> None:
        """Refuse a model whose parameters and one sample's states would not fit (see
        ``_size_terms``), before anything is allocated."""
        hidden_nodes = None
        if hidden_width is not None:
            hidden_nodes = (
                math.prod(hidden_width) if isinstance(hidden_width, tuple) else hidden_width
            )
        terms = _size_terms(
            schedule,
            kernels,
            form=self.form,
            method=self.method,
            lift=self.lift_kind,
            readout=self.readout_kind,
            in_features=self.in_features,
            in_channels=self.in_channels,
            out_features=self.out_features,
            modes=modes,
            head_hidden=head_hidden,
            hidden_nodes=hidden_nodes,
            pointwise=pointwise,
        )
        shown = {
            "in_features": f"in_features={self.in_features!r}",
            "out_features": f"out_features={self.out_features!r}",
            "channels": f"channels={channels!r}",
            "schedule": f"a schedule of widths {schedule.widths}",
            "modes": f"modes={modes!r}",
            "hidden_width": f"hidden_width={hidden_width!r}",
            "head_hidden": f"head_hidden={head_hidden!r}",
        }
        _check_size(terms, shown)

    def _build_kernels(
        self, kernels, schedule, modes, basis, init_scale, gen, radii, pointwise
    ) -> None:
        """``kernel`` (and the bottleneck's ``kernel2``) built by name or taken as given;
        then ``continuous`` and the lift and readout basis (``modes``, ``basis_name``).
        ``radii``: ``(radius, radius_spacings)`` as given."""
        hidden = self._hidden_grids(schedule)
        hw = [g.n for g in hidden] if hidden is not None else schedule.widths[:-1]
        reads_radius = any(_reads(k, "radius") for k in kernels)
        radius, spacings = radii
        kopts = {
            "radius": _radius(schedule, radius, spacings) if reads_radius else None,
            "radius_given": radius,  # a physical radius given: at most the domain's extent
            "pointwise": pointwise,
        }
        self.kernel = self._make_kernel(
            kernels[0], schedule, hw, "kernel", modes, basis, init_scale, gen, True, kopts
        )
        self.kernel2 = None
        if len(kernels) == 2:
            k2 = kernels[1]
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
            else (modes if modes is not None and not self.kernel_stationary else 8)
        )

    def _build_lift(self, schedule: GridSchedule, lift: Lift, gen) -> None:
        """The lift's parameters: the scalar model's learned map (a_j in the basis, or values
        on G_0 for a nodal model) or the channel models' pointwise ``c_0 x c_in`` map (plus d
        coordinate columns with ``coordinates``). The cells lift's index is set by
        ``_bind``."""
        n_in = self.in_features
        if lift.learned:
            if self.continuous:
                A = self.modes**schedule.dim
                self.lift_coeff = nn.Parameter(
                    torch.randn(n_in, A, generator=gen) / math.sqrt(n_in * self.domain.volume)
                )
                self.lift_bias = nn.Parameter(torch.zeros(A))
            else:
                n0 = schedule.widths[0]
                self.lift_weight = nn.Parameter(
                    (torch.rand(n0, n_in, generator=gen) * 2 - 1) / math.sqrt(n_in)
                )
                self.lift_bias = nn.Parameter(torch.zeros(n0))
        if self.channel_mode:
            c0 = schedule.channels[0]
            cin = self.in_channels + (self.domain.dim if self.coordinates else 0)
            self.lift_weight = nn.Parameter(
                (torch.rand(c0, cin, generator=gen) * 2 - 1) * math.sqrt(3.0 / cin)
            )
            self.lift_bias = nn.Parameter(torch.zeros(c0))

    @property
    def kernel_stationary(self) -> bool:
        """Whether the kernel is stationary (conv, spectral): its steps act on G_k, then
        transfer."""
        return bool(getattr(getattr(self, "kernel", None), "stationary", False))

    @property
    def lift_entry(self) -> Lift:
        """The [`Lift`][spacetime_nets.models.Lift] entry of ``lift_kind``."""
        return LIFT_REGISTRY[self.lift_kind]

    @property
    def readout_entry(self) -> Readout:
        """The [`Readout`][spacetime_nets.models.Readout] entry of ``readout_kind``."""
        return READOUT_REGISTRY[self.readout_kind]

    @property
    def channels(self) -> list[int] | None:
        """[c_0, ..., c_K] of the current schedule (None: the scalar model)."""
        return self.schedule.channels

    # ------------------------------------------------------------------ construction helpers
    def _hidden_grids(self, schedule: GridSchedule) -> list[Grid] | None:
        if not self.two_operators or self.hidden_width is None:
            return None
        rule = "midpoint"
        return [Grid.uniform(self.hidden_width, schedule.domain, rule)] * schedule.num_steps

    def _make_kernel(
        self, kernel, schedule, hidden_widths, name, modes, basis, init_scale, gen, first, kopts
    ):
        """The kernel of argument ``name``: a built one as it is, a name by the ``build`` of
        its [`KernelKind`][spacetime_nets.models.KernelKind] entry, after the channel checks
        of the entry."""
        if isinstance(kernel, Kernel):
            return kernel
        kind = KERNEL_REGISTRY.get(kernel)
        if kind is None:
            raise ValueError(
                f"{name}: expected one of {', '.join(KERNELS)} or a Kernel instance; got {kernel!r}"
            )
        ch = schedule.channels
        if ch is not None and len(set(ch[:-1])) > 1 and kind.one_channel_count:
            raise ValueError(
                f"{name}: a {kernel} kernel has one channel count; the schedule changes "
                f"channels ({ch}): use a conv, spectral or nodal kernel"
            )
        if ch is None and kind.needs_channels:
            raise ValueError(f"{name}: a {kernel} kernel needs channels=... (an int or list)")
        request = KernelRequest(
            schedule=schedule,
            hidden_widths=hidden_widths,
            name=name,
            modes=modes if modes is not None else kind.default_modes,
            basis=basis,
            init_scale=init_scale,
            generator=gen,
            first=first,
            form=self.form,
            method=self.method,
            radius=kopts["radius"],
            radius_given=kopts["radius_given"],
            pointwise=kopts["pointwise"],
        )
        return kind.build(request)

    def _cells_shape(self, in_shape: object, d: int, n: int) -> tuple[int, ...]:
        """The cells per axis of the ``cells`` lift: ``in_shape`` (a tuple of d ints >= 1
        with product n, the cells of one input channel), or n itself on an interval, or
        n^(1/d) per axis when n is a perfect d-th power."""
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
        want = f"in_shape: expected a tuple of {d} ints >= 1 (cells per axis)"
        if isinstance(in_shape, (str, bytes)) or not isinstance(in_shape, (list, tuple)):
            raise ValueError(f"{want}, got {in_shape!r}")
        try:
            in_shape = tuple(check_int("in_shape", v, 1) for v in in_shape)
        except ValueError:
            raise ValueError(f"{want}, got {in_shape!r}") from None
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
        if self.lift_entry.cells:
            nodes0 = schedule.grids[0].nodes
            idx = torch.zeros(nodes0.shape[0], dtype=torch.long)
            for axis, (cells, (a, b)) in enumerate(zip(self.in_shape, self.domain.bounds)):
                c = torch.floor((nodes0[:, axis] - a) / (b - a) * cells).long().clamp(0, cells - 1)
                idx = idx * cells + c
            self.register_buffer("lift_index", idx.to(ref.device))
        if self.lift_entry.function:
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
        input (x - in_shift) / in_scale.

        Returns:
            ``(M, a0)``: ``[n_0, in_features]`` and ``[n_0]`` (a 0/1 selection for the cells
                lift, the identity for the identity lift).
        """
        nodes0, _ = self.disc.grid(0)
        n0 = nodes0.shape[0]
        lift = self.lift_entry
        if lift.cells:
            M = torch.zeros(n0, self.in_features, dtype=nodes0.dtype, device=nodes0.device)
            M[torch.arange(n0, device=nodes0.device), self.lift_index] = 1.0
            return M, torch.zeros(n0, dtype=nodes0.dtype, device=nodes0.device)
        if lift.function:
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
        ([`set_normalizers`][spacetime_nets.models.FlowModel.set_normalizers]; the identity by
        default).

        Args:
            x: the inputs, ``[B, in_features]`` (channel models: any accepted input layout).

        Returns:
            X^0 on G_0, ``[B, n_0]`` or ``[B, c_0, n_0]``.
        """
        x = self._standardize(x)
        if self.channel_mode:
            x = self._as_state(x)
            if self.lift_entry.cells:
                x = x[..., self.lift_index]
            if getattr(self, "coordinates", False):
                cin = self.in_channels
                field = self.lift_weight[:, cin:] @ self.disc.grid(0)[0].T.to(x.dtype)
                return pointwise(x, self.lift_weight[:, :cin], self.lift_bias) + field
            return pointwise(x, self.lift_weight, self.lift_bias)
        if self.lift_entry.cells:
            return x[:, self.lift_index]
        if self.lift_entry.function:
            return x
        M, a0 = self.lift_matrix()
        return torch.nn.functional.linear(x, M, a0)

    def _as_state(self, x: torch.Tensor) -> torch.Tensor:
        """An input in any accepted layout -> ``[B, c_in, n]`` (cells: n = number of cells)."""
        n = math.prod(x.shape[1:]) // self.in_channels  # explicit: an empty batch keeps it
        return x.reshape(x.shape[0], self.in_channels, n)

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
        [`at_resolution`][spacetime_nets.models.SpaceTimeNet.at_resolution] set, the attribute
        ``input_grid``) says where, and the input is moved to G_0 by the ``galerkin`` transfer
        (linear interpolation onto a finer G_0, the exact hat average onto a coarser one); a
        function readout then answers on that grid when G_K has G_0's shape. A list of series
        ``[c_in, n_b]`` (or ``[n_b]``) of any lengths, each on the uniform grid of its length laid
        out like G_0, is one batch: ``[B, out]``, or a list of ``[out, n_b]`` functions for the
        function readout; so is a padded tensor ``[B, c_in, N]`` (or ``[B, N]``) with ``lengths``
        ``[B]``, series b being its first ``lengths[b]`` values.

        Args:
            x: the inputs (a tensor in one of the layouts above, or a list of series).
            output_grid: the function readout's grid (None: G_K, or the input's grid).
            input_grid: the grid the inputs are sampled on (None: ``input_grid`` of the
                model, else G_0).
            lengths: with a padded tensor, the length of each series, ``[B]``.

        Returns:
            The outputs: ``[B, out_features]``, or for the function readout
                ``[B, out, n]`` / ``[B, out, *grid_shape]`` / ``[B, n]`` (the input's layout);
                a list of ``[out, n_b]`` for a list of series with the function readout.
        """
        if lengths is not None:
            x = self._unpad(x, lengths)
        if isinstance(x, (list, tuple)):
            return self._forward_list(x, output_grid, input_grid)
        grid_in = input_grid if input_grid is not None else self.input_grid
        if grid_in is not None:
            x = self._to_first_grid(x, grid_in)
            if output_grid is None and self.readout_entry.function:
                if self.schedule.grids[-1].shape == self.schedule.grids[0].shape:
                    output_grid = grid_in
        if not self.channel_mode:
            if output_grid is not None:
                raise ValueError("output_grid: needs readout='function'")
            return super().forward(x)
        self._check_channel_input(x)
        final, _ = self._flow(self.lift(x), keep_states=False)
        if not self.readout_entry.function:
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
        if x.dim() > 3 or (x.dim() == 2 and self.lift_entry.cells and grid.dim > 1):
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
        if not self.lift_entry.function or self.schedule.dim != 1:
            raise ValueError(
                f"x: a list of series of any length needs lift='identity' on a 1-D domain, got "
                f"lift={self.lift_kind!r} on a {self.schedule.dim}-D one"
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
        if not self.readout_entry.function:
            return out
        out = out.reshape(len(xs), self.out_features, -1)
        return [self._output_transfer(g, out[b : b + 1])[0] for b, g in enumerate(grids)]

    def _to_first_grid(self, x: torch.Tensor, grid: Grid) -> torch.Tensor:
        """An input on ``grid`` -> the same function on G_0 ``[B, c_in, *shape of G_0]`` (or
        ``[B, n_0]`` for a scalar model / one channel given as ``[B, n]``)."""
        if not self.lift_entry.function:
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
        _check_device(x, self)
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
        after the lift.

        Args:
            x: the inputs, as ``forward`` takes a tensor.

        Returns:
            The [`Trajectory`][spacetime_nets.integrate.Trajectory].
        """
        if self.input_grid is not None:
            x = self._to_first_grid(x, self.input_grid)
        if not self.channel_mode:
            return super().trajectory(x)
        self._check_channel_input(x)
        return self._trajectory(self.lift(x))

    def _check_channel_input(self, x: torch.Tensor) -> None:
        cin = self.in_channels
        if self.lift_entry.cells:
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
        _check_device(x, self)
        _check_finite(x)

    def _phi(self, nodes: torch.Tensor) -> torch.Tensor:
        if isinstance(self.kernel, BasisKernel):
            return self.kernel.phi(nodes)
        return tensor_basis(nodes.double(), self.domain, self.modes, self.basis_name).to(
            nodes.dtype
        )

    def readout_matrix(self, k: int | None = None) -> torch.Tensor:
        """R ``[out, n_k]`` with (P x)_c = sum_j R_cj x_j = sum_j omega_j p_c(xi_j) x_j (k = K
        by default; other k only for continuous readouts).

        Args:
            k: the time index of the grid (None: K).

        Returns:
            R, ``[out, n_k]`` (``[out, c n_k]`` with channels).

        Raises:
            ValueError: for a readout other than ``quadrature``, or k != K on a nodal model.
        """
        K = self.disc.num_steps
        k = K if k is None else k
        nodes, weights = self.disc.grid(k)
        if not self.readout_entry.matrix:
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
        z -> z * out_scale + out_shift
        ([`set_normalizers`][spacetime_nets.models.FlowModel.set_normalizers]; the identity by
        default).

        Args:
            xT: the state on G_k, ``[B, n_k]`` or ``[B, c, n_k]``.
            k: the time index of its grid (None: K).

        Returns:
            ``[B, out]``, or ``[B, out, n_k]`` for the function readout.
        """
        return self._destandardize(self._readout(xT, k))

    def _readout(self, xT: torch.Tensor, k: int | None) -> torch.Tensor:
        return self.readout_entry.apply(self, xT, self.disc.num_steps if k is None else k)

    def readout_along(self, states: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """P x(t_k) for every state of a trajectory ``[B, n_k] -> [B, out]`` (turnpike costs).
        Nodal readouts see the state transferred to G_K (linear interpolation).

        Args:
            states: the states X^k of a trajectory, one per time.

        Returns:
            One readout per state.
        """
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
        """The same continuous model discretised on another schedule (shares no tensors).

        Args:
            schedule: the new schedule, on the same domain (without channels a channel model
                takes its own per step).

        Returns:
            The new model; this one is unchanged.

        Raises:
            ValueError: for a nodal model, another domain, or channels on a scalar model.
        """
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
        interpolated onto G_0 (the attribute ``input_grid``). ``stages="scale"``: every grid
        is scaled by the factor that takes G_0 to n (n_k - 1 -> (n_k - 1)(n - 1) / (n_0 - 1)
        for rules with end points, n_k -> n_k n / n_0 otherwise), each rounded to the nearest
        size its rule accepts. Times and channels are kept in both.

        Args:
            n: the input's nodes per axis (an int, or one per axis).
            stages: ``"keep"`` or ``"scale"``.

        Returns:
            The new model (see [`with_schedule`][spacetime_nets.models.SpaceTimeNet.with_schedule]).
        """
        sched = _resolution_schedule(self.schedule, n, stages)
        new = self.with_schedule(sched)
        grid = input_grid_for(self.schedule.grids[0], n)
        if not grid.same_as(sched.grids[0]):
            new._set_input_grid(grid)
        return new

    def _set_input_grid(self, grid: Grid | None) -> None:
        """Inputs arrive on ``grid`` (None: on G_0)."""
        self.input_grid = grid
        if self.lift_entry.function:
            n = (grid or self.schedule.grids[0]).n
            self.in_features = self.input_size = n * self.in_channels

    def refine(self, width: int = 2, depth: int = 2) -> SpaceTimeNet:
        """The model on ``schedule.refine(width, depth)``: exact resampling for continuous
        kernels; interpolated samples for nodal ones (Net2Wider / Net2Deeper in the continuum),
        so the network function is nearly preserved.

        Args:
            width: the refinement factor of every grid.
            depth: the substeps per step.

        Returns:
            The refined model; this one is unchanged.
        """
        fine = self.schedule.refine(width, depth)
        if self.continuous:
            return self.with_schedule(fine)
        if self.two_operators or not steps_between_grids(self.method):
            raise ValueError(
                "refine: nodal refinement supports single-stage (euler) steps of the outside "
                "and inside forms"
            )
        return _refine_nodal(self, fine, depth)

    def _rebind(self, schedule: GridSchedule) -> None:
        self._bind(schedule)

    def extra_repr(self) -> str:
        """The line printed in the module's repr.

        Returns:
            The form, activation, lift, schedule and, when set, norm and head width.
        """
        norm, hidden = getattr(self, "norm", None), getattr(self, "head_hidden", None)
        extra = "" if norm is None else f", norm={norm}"
        if hidden is not None:
            extra += f", head_hidden={hidden}"
        return (
            f"form={self.form}, activation={self.activation_name}, lift={self.lift_kind}, "
            f"widths={self.schedule!r}{extra}"
        )
