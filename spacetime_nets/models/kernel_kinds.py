"""The kernel kinds ``SpaceTimeNet(kernel=...)`` builds by name: adding a kind is one entry.

A [`KernelKind`][spacetime_nets.models.KernelKind] says how its kernel is built from the
model's arguments, which construction options it reads, whether it is continuous and
stationary, which channel counts it takes, its default ``modes`` and its parameter count for
the model's size check. ``KERNEL_REGISTRY`` holds them; ``KERNELS`` and ``KERNEL_OPTIONS`` are
live views of it, so a kind registered after import is taken by the model, ``runs.ModelOptions``
and the command line's ``--kernel`` alike. Export and the multiply-add count go through the
step operators the built kernel returns, so they need nothing of the entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch

from grids import GridSchedule
from grids.registry import NamesView

from ..fields import FORMS
from ..kernels import (
    BasisKernel,
    ConvKernel,
    Kernel,
    NeuralKernel,
    NodalKernel,
    SpectralKernel,
)
from ..steppers import steps_between_grids

__all__ = [
    "KernelKind",
    "KernelRequest",
    "SizeRequest",
    "KERNEL_REGISTRY",
    "register_kernel_kind",
    "KERNELS",
    "KERNEL_OPTIONS",
    "KERNEL_OPTION_NAMES",
    "KERNEL_CHANNELS",
]

KERNEL_OPTION_NAMES = ("modes", "basis", "radius", "radius_spacings", "pointwise")
"""The construction options of `SpaceTimeNet` that only some kernel kinds read (the values a
`KernelKind`'s ``options`` may name)."""


@dataclass(frozen=True)
class _ChannelRule:
    """What one channel rule of ``KERNEL_CHANNELS`` allows.

    Attributes:
        scalar: whether the scalar model (no channels) takes the kind.
        varying: whether the channel counts may change between steps.
    """

    scalar: bool
    varying: bool


_CHANNEL_RULES: dict[str, _ChannelRule] = {
    "optional": _ChannelRule(scalar=True, varying=False),
    "required": _ChannelRule(scalar=False, varying=True),
    "any": _ChannelRule(scalar=True, varying=True),
}

KERNEL_CHANNELS = tuple(_CHANNEL_RULES)
"""The channel rules of a `KernelKind`: ``optional`` (the scalar model or one channel count
for every step), ``required`` (channel models only; the counts may change between steps),
``any`` (the scalar model or channel counts that may change between steps)."""

#: the MLP of a neural kernel: hidden width and depth (its parameter count, for the size check)
_NEURAL_HIDDEN, _NEURAL_DEPTH = 32, 2


@dataclass(frozen=True)
class KernelRequest:
    """What a kind's ``build`` receives: the model's arguments for one of its kernels.

    Attributes:
        schedule: the grid schedule (with the channel counts of a channel model).
        hidden_widths: the nodes of each step's hidden grid (the bottleneck's H_k; the step
            grids' widths n_0..n_{K-1} otherwise).
        name: the argument being built, ``"kernel"`` or ``"kernel2"`` (for messages).
        modes: ``modes`` as given, or the kind's ``default_modes``.
        basis: the basis family (``legendre`` unless given).
        init_scale: the scale of the initial controls.
        generator: the random generator of the initialisation (None: torch's global one).
        first: whether this is the first kernel (the bottleneck's W1) or the second (W2).
        form: the model's form (``outside``, ``inside``, ``bottleneck``).
        method: the model's stepper.
        radius: the radius argument (a number, per axis, or one per step) when some kernel
            of the model reads ``radius``, else None.
        radius_given: the ``radius`` given in physical units (None: not given).
        pointwise: ``pointwise`` as given (None: the kind's default).
    """

    schedule: GridSchedule
    hidden_widths: Sequence[int]
    name: str
    modes: int
    basis: str
    init_scale: float
    generator: torch.Generator | None
    first: bool
    form: str
    method: str
    radius: float | Sequence | None
    radius_given: object
    pointwise: bool | None


@dataclass(frozen=True)
class SizeRequest:
    """What a kind's ``parameters`` receives for the size check that runs before anything is
    allocated.

    Attributes:
        schedule: the grid schedule (with the channel counts of a channel model).
        first: whether this is the first kernel (the bottleneck's W1) or the second (W2).
        form: the model's form.
        method: the model's stepper.
        modes: ``modes`` as given, or the kind's ``default_modes``.
        pointwise: ``pointwise`` as given (None: the kind's default).
        hidden_nodes: the nodes of the bottleneck's hidden grid (None: H_k = G_k).
    """

    schedule: GridSchedule
    first: bool
    form: str
    method: str
    modes: int
    pointwise: bool | None
    hidden_nodes: int | None

    @property
    def channels(self) -> list[int]:
        """[c_0, ..., c_K]: the schedule's channel counts (all 1 for the scalar model)."""
        ch = self.schedule.channels
        return list(ch) if ch is not None else [1] * (self.schedule.num_steps + 1)

    @property
    def state_argument(self) -> str:
        """The argument that sets the channel counts: ``channels`` (``schedule`` for the
        scalar model)."""
        return "schedule" if self.schedule.channels is None else "channels"

    def by_modes(self, elements: int, per: int, what: str) -> tuple[int, str, str]:
        """A parameter count attributed to ``modes`` when ``per`` (the coefficients per channel
        pair) outweighs c^2 (c the most channels of a step), else to the channel counts.

        Args:
            elements: the kernel's parameters.
            per: its coefficients per channel pair.
            what: what they are, for the message.

        Returns:
            ``(elements, argument, what)``, as a kind's ``parameters`` returns.
        """
        big = per > max(self.channels[:-1]) ** 2
        return elements, "modes" if big else self.state_argument, what


@dataclass(frozen=True)
class KernelKind:
    """One kernel kind of ``SpaceTimeNet(kernel=name)``.

    Attributes:
        name: the name ``kernel=`` (and ``--kernel``) takes.
        build: makes the kernel, ``build(KernelRequest) -> Kernel``.
        options: the options of ``KERNEL_OPTION_NAMES`` it reads (another one given is
            refused, naming the option and the kind).
        continuous: whether the kernel is defined at every point (the model then lives on
            every schedule; its lift and readout are functions in a basis).
        stationary: whether its steps act on G_k and then transfer (conv, spectral), with the
            lift and readout in the default basis of 8 functions per axis.
        channels: ``optional``, ``required`` or ``any`` (see ``KERNEL_CHANNELS``).
        default_modes: ``modes`` when none is given.
        parameters: the parameter count of the size check, ``parameters(SizeRequest) ->
            (elements, argument, what)``: the argument that makes them large (``modes``,
            ``channels``, ``schedule`` or ``hidden_width``) and what they are, both for the
            message (None: not counted).
    """

    name: str
    build: Callable[[KernelRequest], Kernel]
    options: tuple[str, ...] = ()
    continuous: bool = True
    stationary: bool = False
    channels: str = "optional"
    default_modes: int = 8
    parameters: Callable[[SizeRequest], tuple[int, str, str]] | None = None

    @property
    def needs_channels(self) -> bool:
        """Whether the kind builds for channel models only (``channels="required"``)."""
        return not _channel_rule(self).scalar

    @property
    def one_channel_count(self) -> bool:
        """Whether the kind takes one channel count for every step (``channels="optional"``)."""
        return not _channel_rule(self).varying


def _channel_rule(kind: KernelKind) -> _ChannelRule:
    """The entry of ``kind.channels`` (ValueError naming the kind otherwise)."""
    rule = _CHANNEL_RULES.get(kind.channels) if isinstance(kind.channels, str) else None
    if rule is None:
        raise ValueError(
            f"kernel kind {kind.name!r}: channels must be one of {', '.join(KERNEL_CHANNELS)}; "
            f"got {kind.channels!r}"
        )
    return rule


KERNEL_REGISTRY: dict[str, KernelKind] = {}
"""The kernel kinds, by name: `{name: KernelKind}` (`register_kernel_kind` adds one)."""


def register_kernel_kind(kind: KernelKind) -> KernelKind:
    """Add ``kind`` to ``KERNEL_REGISTRY``: ``SpaceTimeNet(kernel=kind.name)``,
    ``runs.ModelOptions``, the option checks and the command line take it from then on.

    Args:
        kind: the entry; one of the same name is replaced.

    Returns:
        ``kind``.

    Raises:
        ValueError: when ``kind`` is not a `KernelKind`, or names an unknown option or
            channel rule, or its build is not callable.
    """
    if not isinstance(kind, KernelKind):
        raise ValueError(f"kind: expected a KernelKind, got {type(kind).__name__}")
    if not isinstance(kind.name, str) or not kind.name:
        raise ValueError(f"kernel kind {kind.name!r}: name must be a non-empty string")
    unknown = [o for o in kind.options if o not in KERNEL_OPTION_NAMES]
    if unknown or not isinstance(kind.options, tuple):
        raise ValueError(
            f"kernel kind {kind.name!r}: options must be a tuple of "
            f"{', '.join(KERNEL_OPTION_NAMES)}; got {kind.options!r}"
        )
    _channel_rule(kind)
    if not callable(kind.build) or not (kind.parameters is None or callable(kind.parameters)):
        raise ValueError(f"kernel kind {kind.name!r}: build and parameters must be callable")
    if isinstance(kind.default_modes, bool) or not (
        isinstance(kind.default_modes, int) and kind.default_modes >= 1
    ):
        raise ValueError(
            f"kernel kind {kind.name!r}: default_modes must be an int >= 1, "
            f"got {kind.default_modes!r}"
        )
    KERNEL_REGISTRY[kind.name] = kind
    return kind


class _ReadersView(Mapping):
    """``{option: names of the kinds that read it}`` for every option of
    ``KERNEL_OPTION_NAMES``, read from ``KERNEL_REGISTRY`` at each use."""

    def __getitem__(self, option: str) -> tuple[str, ...]:
        if option not in KERNEL_OPTION_NAMES:
            raise KeyError(option)
        return tuple(n for n, kind in KERNEL_REGISTRY.items() if option in kind.options)

    def __iter__(self) -> Iterator[str]:
        return iter(KERNEL_OPTION_NAMES)

    def __len__(self) -> int:
        return len(KERNEL_OPTION_NAMES)

    def __repr__(self) -> str:
        return repr(dict(self))


KERNELS: Sequence[str] = NamesView(KERNEL_REGISTRY)
"""The kernels `SpaceTimeNet(kernel=...)` builds by name (a `Kernel` instance is also
accepted): a live view of the keys of `KERNEL_REGISTRY`."""
KERNEL_OPTIONS: Mapping[str, tuple[str, ...]] = _ReadersView()
"""The construction options that only some kernels read: `{option: names of the kernels that
read it}`, a live view of the ``options`` of the `KERNEL_REGISTRY` entries. An option given
(not None) to a `SpaceTimeNet` none of whose kernels reads it is refused, naming the option
and the kernel (`runs.ModelOptions` checks the same table).

`modes`: the basis kernel's functions per axis (its A = modes^d functions also carry the lift
and readout), the neural kernel's lift and readout basis, the conv kernel's Legendre
polynomials per axis in delta / r, the spectral kernel's frequencies per axis; `basis`: the
basis kernel's family (`legendre` or `fourier`); `radius` and `radius_spacings`: the conv
kernel's window; `pointwise`: the stationary kernels' pointwise channel mix A(t)."""


# --------------------------------------------------------------------------- the built-in kinds
def _check_radius_extent(kernel: ConvKernel, given: object) -> None:
    """A radius given in physical units may not exceed the domain's extent L_a on its axis:
    every offset between two points of Omega is shorter than L_a, so the window
    ``window(delta / r)`` of a larger r only flattens the kernel, and a huge one (1e300) asks
    for more taps than any grid has."""
    for r in kernel.radii:
        for a, (ra, (lo, hi)) in enumerate(zip(r, kernel.domain.bounds)):
            if ra > (hi - lo) * (1 + 1e-12):
                raise ValueError(
                    f"radius: expected at most the domain's extent on each axis (L = "
                    f"{hi - lo:g} on axis {a}), got {given!r}"
                )


def _build_nodal(req: KernelRequest) -> NodalKernel:
    schedule = req.schedule
    ch = schedule.channels
    steps_c = None if ch is None else ch[:-1]
    between = steps_between_grids(req.method)
    if FORMS[req.form].operators == 2:  # W1: G_k -> H_k, W2: H_k -> G_{k+1} (euler) or G_k
        outs = (
            req.hidden_widths
            if req.first
            else (schedule.widths[1:] if between else schedule.widths[:-1])
        )
        ins = schedule.widths[:-1] if req.first else req.hidden_widths
        return NodalKernel(
            out_widths=outs,
            in_widths=ins,
            init_scale=req.init_scale,
            generator=req.generator,
            channels=steps_c,
        )
    if between:
        return NodalKernel(
            schedule, init_scale=req.init_scale, generator=req.generator, channels=steps_c
        )
    w = schedule.widths[:-1]
    return NodalKernel(
        out_widths=w,
        in_widths=w,
        init_scale=req.init_scale,
        generator=req.generator,
        channels=steps_c,
    )


def _nodal_size(req: SizeRequest) -> tuple[int, str, str]:
    n, K, c = req.schedule.widths, req.schedule.num_steps, req.channels
    hidden = req.hidden_nodes
    if FORMS[req.form].operators == 2:  # W1: G_k -> H_k, W2: H_k -> G_{k+1} (euler) or G_k
        hid = [n[k] if hidden is None else hidden for k in range(K)]
        back = n[1:] if steps_between_grids(req.method) else n[:-1]
        pairs = list(zip(hid, n[:-1])) if req.first else list(zip(back, hid))
    elif steps_between_grids(req.method):
        pairs = [(n[k + 1], n[k]) for k in range(K)]
    else:
        pairs = [(n[k], n[k]) for k in range(K)]
    size = sum(c[k] ** 2 * no * ni + c[k] * no for k, (no, ni) in enumerate(pairs))
    big = max(no * ni for no, ni in pairs)
    if max(c[:-1]) ** 2 >= big:
        arg = req.state_argument
    else:
        arg = "hidden_width" if hidden is not None else "schedule"
    return size, arg, "the nodal kernel's matrices"


def _build_basis(req: KernelRequest) -> BasisKernel:
    schedule, ch = req.schedule, req.schedule.channels
    return BasisKernel(
        schedule.domain,
        modes=req.modes,
        basis=req.basis,
        pieces=schedule.num_steps,
        T=schedule.T,
        init_scale=req.init_scale,
        generator=req.generator,
        channels=None if ch is None else ch[0],
    )


def _basis_size(req: SizeRequest) -> tuple[int, str, str]:
    Ak = req.modes**req.schedule.dim
    size = req.schedule.num_steps * req.channels[0] ** 2 * (Ak * Ak + Ak)
    return req.by_modes(size, Ak * Ak, "the basis kernel's coefficients")


def _build_neural(req: KernelRequest) -> NeuralKernel:
    schedule, ch = req.schedule, req.schedule.channels
    return NeuralKernel(
        schedule.domain,
        T=schedule.T,
        init_scale=req.init_scale,
        generator=req.generator,
        channels=None if ch is None else ch[0],
    )


def _neural_size(req: SizeRequest) -> tuple[int, str, str]:
    """MLPs (1 + 2d) -> H -> ... -> c^2 and (1 + d) -> ... -> c."""
    d, c0, hid = req.schedule.dim, req.channels[0], _NEURAL_HIDDEN
    body = (_NEURAL_DEPTH - 1) * (hid * hid + hid) + hid
    size = sum((1 + k * d) * hid + body + (hid + 1) * out for k, out in ((2, c0**2), (1, c0)))
    return req.by_modes(size, 1, "the neural kernel's coefficients")


def _stationary_options(req: KernelRequest) -> dict:
    opts = {"init_scale": req.init_scale, "generator": req.generator, "modes": req.modes}
    if req.pointwise is not None:
        opts["pointwise"] = req.pointwise
    return opts


def _build_conv(req: KernelRequest) -> ConvKernel:
    conv = ConvKernel.for_schedule(req.schedule, radius=req.radius, **_stationary_options(req))
    if req.radius_given is not None:
        _check_radius_extent(conv, req.radius_given)
    return conv


def _conv_size(req: SizeRequest) -> tuple[int, str, str]:
    per = req.modes**req.schedule.dim
    pw = 1 if req.pointwise else 0
    size = sum(ck * ck * (per + pw) + ck for ck in req.channels[:-1])
    return req.by_modes(size, per, "the conv kernel's coefficients")


def _build_spectral(req: KernelRequest) -> SpectralKernel:
    return SpectralKernel.for_schedule(req.schedule, **_stationary_options(req))


def _spectral_size(req: SizeRequest) -> tuple[int, str, str]:
    m, d = req.modes, req.schedule.dim
    per = 2 * (m if d == 1 else (2 * m - 1) * m)
    pw = 0 if req.pointwise is False else 1
    size = sum(ck * ck * (per + pw) + ck for ck in req.channels[:-1])
    return req.by_modes(size, per, "the spectral kernel's coefficients")


register_kernel_kind(
    KernelKind("nodal", _build_nodal, (), continuous=False, channels="any", parameters=_nodal_size)
)
register_kernel_kind(KernelKind("basis", _build_basis, ("modes", "basis"), parameters=_basis_size))
register_kernel_kind(KernelKind("neural", _build_neural, ("modes",), parameters=_neural_size))
register_kernel_kind(
    KernelKind(
        "conv",
        _build_conv,
        ("modes", "radius", "radius_spacings", "pointwise"),
        stationary=True,
        channels="required",
        default_modes=3,
        parameters=_conv_size,
    )
)
register_kernel_kind(
    KernelKind(
        "spectral",
        _build_spectral,
        ("modes", "pointwise"),
        stationary=True,
        channels="required",
        parameters=_spectral_size,
    )
)
