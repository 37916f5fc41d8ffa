"""The construction options of [`SpaceTimeNet`][spacetime_nets.models.SpaceTimeNet], checked
before anything is built: kernel names or instances, options that the chosen variants do not
read (refused, naming both), the values of the bottleneck's hidden grid and of the conv
radius, and the memory the model's parameters and one sample's states would take."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch

from grids import GridSchedule
from grids.quadrature import check_grid_bytes

from ..fields import FORMS
from ..kernels import BasisKernel, Kernel
from ..ops import GridInfo
from ..validation import check_int
from . import base as _base
from .kernel_kinds import KERNEL_OPTIONS, KERNEL_REGISTRY, KERNELS, SizeRequest
from .lifts import LIFT_REGISTRY
from .readouts import READOUT_REGISTRY, ReadoutRequest

#: options of the forms with two step operators only (None: not given)
_TWO_OPERATOR_OPTIONS = ("hidden_width", "kernel2")
#: the conv ``radius`` when neither ``radius`` nor ``radius_spacings`` is given
_DEFAULT_RADIUS = 0.1


def _show(value: object) -> str:
    """A short repr for messages: a built kernel by its class name (a module's repr spans
    lines)."""
    if isinstance(value, Kernel):
        return f"<a built {type(value).__name__}>"
    return repr(value)


def _check_kernel_arg(name: str, kernel: object) -> str | Kernel:
    """A kernel name of :data:`KERNELS` or a :class:`~spacetime_nets.kernels.Kernel`."""
    if isinstance(kernel, Kernel) or (isinstance(kernel, str) and kernel in KERNELS):
        return kernel
    raise ValueError(
        f"{name}: expected one of {', '.join(KERNELS)} or a Kernel instance; got {kernel!r}"
    )


def _sets_lift_basis(kernel: Kernel) -> bool:
    """Whether ``modes`` sets the lift and readout basis of a model on the built ``kernel``:
    a continuous, non-stationary kernel without a basis of its own (neural, function)."""
    return (
        kernel.continuous
        and not getattr(kernel, "stationary", False)
        and not isinstance(kernel, BasisKernel)
    )


#: the options a built kernel still reads (it took the others when it was made), and when
_BUILT_KERNEL_READS = {"modes": _sets_lift_basis}


def _reads(kernel: str | Kernel, option: str) -> bool:
    """Whether ``kernel`` (a name, or a built Kernel) reads the construction ``option`` of
    ``KERNEL_OPTIONS``: a kind's entry lists its options; a built kernel reads only those of
    ``_BUILT_KERNEL_READS``, where they apply to it."""
    if isinstance(kernel, str):
        return option in KERNEL_REGISTRY[kernel].options
    reads = _BUILT_KERNEL_READS.get(option)
    return reads is not None and reads(kernel)


def _check_applicable(
    kernel: str | Kernel,
    kernel2: str | Kernel | None,
    form: str,
    lift: str,
    given: dict[str, object],
) -> None:
    """Refuse an option given (not None) that the chosen variant does not read: a kernel
    option (:data:`KERNEL_OPTIONS`) that neither kernel reads (the bottleneck's two kernels),
    ``hidden_width`` / ``kernel2`` without ``form="bottleneck"``, ``in_shape`` without
    ``lift="cells"``. The message names the option, the variant and the value."""
    two = FORMS[form].operators == 2
    for name in _TWO_OPERATOR_OPTIONS:
        v = given[name]
        if v is not None and not two:
            needs = " or ".join(repr(n) for n, f in FORMS.items() if f.operators == 2)
            raise ValueError(
                f"{name}: applies to form={needs} only, got {name}={_show(v)} with "
                f"form={form!r} (leave {name} out)"
            )
    if given["in_shape"] is not None and not LIFT_REGISTRY[lift].cells:
        raise ValueError(
            f"in_shape: applies to the cells lift only, got in_shape={given['in_shape']!r} "
            f"with lift={lift!r} (leave in_shape out)"
        )
    kernels = [kernel]
    got = f"kernel={_show(kernel)}"
    if two:
        k2 = kernel if kernel2 is None else kernel2
        kernels.append(k2)
        got += f" and kernel2={_show(k2)}"
    for name, names in KERNEL_OPTIONS.items():
        v = given[name]
        if v is None or any(_reads(k, name) for k in kernels):
            continue
        which = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
        built = (
            "; a built kernel took its options when it was made"
            if any(isinstance(k, Kernel) for k in kernels)
            else ""
        )
        raise ValueError(
            f"{name}: applies to {which} kernels only, got {name}={v!r} with {got}"
            f"{built} (leave {name} out)"
        )


def _check_hidden_width(value: object, d: int) -> int | tuple[int, ...]:
    """The bottleneck's hidden grid: an int >= 1 (nodes of a 1-D grid) or ``d`` of them (per
    axis), within ``grids.quadrature.MAX_GRID_BYTES``."""
    want = "an int >= 1" if d == 1 else f"a tuple of {d} ints >= 1 (nodes per axis)"
    seq = isinstance(value, (list, tuple))
    vals = tuple(value) if seq else (value,)  # type: ignore[arg-type]
    if len(vals) != d or (not seq and d > 1):
        raise ValueError(f"hidden_width: expected {want}, got {value!r}")
    try:
        counts = tuple(check_int("hidden_width", v, 1) for v in vals)
    except ValueError:
        raise ValueError(f"hidden_width: expected {want}, got {value!r}") from None
    check_grid_bytes(counts, name="hidden_width")
    return counts if seq else counts[0]


def _radius(schedule: GridSchedule, radius, spacings) -> float | Sequence:
    """The conv kernel's radius argument: ``radius`` as given (None: 0.1), or ``spacings``
    times each step grid's spacing per axis (a list, one per step), r_k = s h_k.

    ``spacings`` s is the number of taps on each side of a node in every step's convolution,
    so it is at most max_k n_{k,a}, the most nodes of a step grid on axis a: on that grid the
    window then spans the whole box (n h = L on midpoint and periodic grids, L + h with end
    nodes), and more taps than any grid has nodes only add work (a huge s, 1e300, would ask
    for that many)."""
    if spacings is None:
        return _DEFAULT_RADIUS if radius is None else radius
    if radius is not None:
        raise ValueError("radius_spacings: give radius or radius_spacings, not both")
    if isinstance(spacings, bool) or not isinstance(spacings, numbers.Real):
        raise ValueError(f"radius_spacings: expected a positive number, got {spacings!r}")
    if not (math.isfinite(spacings) and spacings > 0):
        raise ValueError(f"radius_spacings: expected a positive finite number, got {spacings!r}")
    s = float(spacings)
    steps = schedule.grids[:-1]
    for a in range(schedule.dim):
        most = max(g.shape[a] for g in steps)
        if s > most:
            raise ValueError(
                f"radius_spacings: expected at most {most}, the most nodes of a step grid on "
                f"axis {a} (radius_spacings taps on each side of a node span that whole grid), "
                f"got {spacings!r}"
            )
    out = []
    for k, g in enumerate(steps):
        if not g.is_uniform:
            raise ValueError(
                f"radius_spacings: grid {k} is not uniform (no single spacing); give radius"
            )
        h = GridInfo.of(g).h
        out.append(tuple(s * v for v in h) if g.dim > 1 else s * h[0])
    return out


def _size_terms(
    schedule: GridSchedule,
    kernels: Sequence[str | Kernel],
    *,
    form: str,
    method: str,
    lift: str,
    readout: str,
    in_features: int,
    in_channels: int,
    out_features: int,
    modes: int | None,
    head_hidden: int | None,
    hidden_nodes: int | None,
    pointwise: bool | None,
) -> dict[str, tuple[int, str]]:
    """Elements a model needs (its parameters and one sample's states), per argument that
    sets them: ``{argument: (elements, what)}``, in Python ints (nothing overflows). Every
    parameter of the kernels made by name, the lift and the readout is counted (the channel
    normalisation's 2 sum_k c_k aside, fewer than the states); work buffers of the forward
    pass are not.

    With K steps, widths n_k, channels c_k (1 for the scalar model), d axes, A = m^d lift /
    readout functions and H = ``hidden_nodes`` of the bottleneck:

    - ``in_features``: one input sample (in_features), a linear lift (in_features A, or
      n_0 in_features for a nodal model);
    - ``channels`` (``schedule`` for the scalar model): the states sum_k c_k n_k, the kernels'
      coefficients (the ``parameters`` of their kinds' entries; nodal: sum_k c_k^2 n_out
      n_in; basis: K c^2 A^2; conv: sum_k c_k^2 m^d; spectral: 2 sum_k c_k^2 prod(modes per
      axis); neural: an MLP with c^2 outputs) and the pointwise lift c_0 (c_in + d);
    - ``modes``: the kernel terms instead when m^d outweighs c^2;
    - ``hidden_width``: the hidden states sum_k c_k H and the nodal kernels' H factors;
    - ``out_features`` and ``head_hidden``: the readout, as its entry's ``parameters``
      counts it (quadrature: out c_K A continuous, out c_K n_K nodal; mean, pool, function:
      out c_K, or with a hidden layer H (c_K + out)).
    """
    ch = schedule.channels
    K, d = schedule.num_steps, schedule.dim
    c = list(ch) if ch is not None else [1] * (K + 1)
    n = schedule.widths
    state_arg = "schedule" if ch is None else "channels"
    terms: dict[str, list] = {}

    def add(arg: str, elements: int, what: str) -> None:
        entry = terms.setdefault(arg, [0, []])
        entry[0] += elements
        entry[1].append(what)

    kinds = [KERNEL_REGISTRY[k] if isinstance(k, str) else k for k in kernels]
    continuous = all(k.continuous for k in kinds)
    first = kinds[0]
    if isinstance(first, BasisKernel):
        m_basis = first.modes
    elif getattr(first, "stationary", False):
        m_basis = 8
    else:
        m_basis = modes or 8
    A = m_basis**d
    add("in_features", in_features, "one input sample")
    if LIFT_REGISTRY[lift].learned:
        add("in_features", in_features * (A + 1 if continuous else n[0] + 1), "the linear lift")
    if ch is not None:
        add(state_arg, c[0] * (in_channels + d + 1), "the pointwise lift")
    add(state_arg, sum(ck * nk for ck, nk in zip(c, n)), "one sample's states")
    if hidden_nodes is not None:
        add("hidden_width", sum(ck * hidden_nodes for ck in c[:-1]), "one sample's hidden states")
    for j, kern in enumerate(kernels):
        kind = KERNEL_REGISTRY[kern] if isinstance(kern, str) else None
        if kind is None or kind.parameters is None:
            continue  # built already (or a kind without an estimate)
        m = modes if modes is not None else kind.default_modes
        req = SizeRequest(schedule, j == 0, form, method, m, pointwise, hidden_nodes)
        size, arg, what = kind.parameters(req)
        add(arg, size, what)
    request = ReadoutRequest(schedule, out_features, continuous, A, head_hidden)
    for arg, elements, what in READOUT_REGISTRY[readout].parameters(request):
        add(arg, elements, what)
    return {k: (v[0], ", ".join(v[1])) for k, v in terms.items()}


def _check_size(terms: dict[str, tuple[int, str]], shown: dict[str, str]) -> None:
    """Refuse a model whose parameters and one sample's states (:func:`_size_terms`) exceed
    :data:`spacetime_nets.models.base.MAX_MODEL_BYTES` in the default dtype, before anything
    is allocated, naming the argument that contributes most (``shown``: how to show it)."""
    itemsize = torch.finfo(torch.get_default_dtype()).bits // 8
    total = itemsize * sum(e for e, _ in terms.values())
    bound = _base.MAX_MODEL_BYTES
    if total <= bound:
        return
    arg, (elements, what) = max(terms.items(), key=lambda kv: kv[1][0])
    raise ValueError(
        f"{arg}: expected a model that fits in memory (parameters and one sample's states "
        f"within spacetime_nets.models.base.MAX_MODEL_BYTES = {bound} bytes), got "
        f"{shown.get(arg, arg)}: about {total:.3g} bytes in all, {itemsize * elements:.3g} "
        f"of them for {what}"
    )
