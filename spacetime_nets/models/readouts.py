"""The readouts ``SpaceTimeNet(readout=...)`` builds by name: adding a readout is one entry.

A [`Readout`][spacetime_nets.models.Readout] makes its parameters, maps the final state to the
outputs, exports itself as the head of the
[`VariableWidthResNet`][spacetime_nets.export.VariableWidthResNet], counts its multiply-adds
and its parameters (for the size check that runs before anything is allocated), and maps its
weights when [`adapt.with_channels`][spacetime_nets.adapt.with_channels] changes the state's
channel basis. ``READOUT_REGISTRY`` holds them; ``READOUTS`` is a live view of it, so a
readout registered after import is taken by the model, ``runs.ModelOptions``, the command
line's ``--readout``, export and the cost model alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from grids import GridSchedule
from grids.registry import NamesView

from ..ops import pointwise

if TYPE_CHECKING:
    from .spacetime import SpaceTimeNet

__all__ = [
    "Readout",
    "ReadoutRequest",
    "READOUT_REGISTRY",
    "READOUTS",
    "register_readout",
]


@dataclass(frozen=True)
class ReadoutRequest:
    """What a readout's ``build`` and ``parameters`` receive.

    Attributes:
        schedule: the grid schedule (with the channel counts of a channel model).
        out_features: the outputs (classes, targets, or output channels of a function).
        continuous: whether every kernel is continuous (a readout function p_c then lives in
            the lift and readout basis of ``basis_size`` functions; else as values on G_K).
        basis_size: A = m^d, the functions of the lift and readout basis.
        head_hidden: the hidden width H of an MLP head (None: none).
        generator: the random generator of the initialisation (None: torch's global one;
            ``parameters`` receives None).
    """

    schedule: GridSchedule
    out_features: int
    continuous: bool
    basis_size: int
    head_hidden: int | None = None
    generator: torch.Generator | None = None

    @property
    def channels(self) -> int | None:
        """c_K, the final state's channels (None: the scalar model)."""
        ch = self.schedule.channels
        return None if ch is None else ch[-1]


@dataclass(frozen=True)
class Readout:
    """One readout of ``SpaceTimeNet(readout=name)``: the map from the final state X^K
    ``[B, c_K, n_K]`` (``[B, n_K]`` for the scalar model) to the outputs.

    Attributes:
        name: the name ``readout=`` (and ``--readout``) takes.
        build: the parameters, ``build(ReadoutRequest) -> {name: nn.Parameter}``, set on the
            model under those names (in this order: the initialisation draws from the
            request's generator).
        apply: the outputs before de-standardisation, ``apply(model, state, k)`` for the state
            on G_k: ``[B, out]``, or ``[B, out, n_k]`` for a readout with ``function``.
        export: the exported ResNet's head, ``export(model) -> nn.Module``; it maps
            ``[B, c_K, n_K]`` to the outputs (a
            [`ChannelHead`][spacetime_nets.export.ChannelHead] also gets the input's number
            of dimensions).
        multiply_adds: its multiply-adds per sample, ``multiply_adds(model) -> int``.
        parameters: its parameter count for the size check, ``parameters(ReadoutRequest) ->
            [(argument, elements, what)]`` with the argument that makes them large.
        map_channels: ``map_channels(model, P)`` sets the weights for the state X P^T of the
            channel basis P ``[c, r]`` (R -> R P); None: the channel count is kept.
        scalar: whether the scalar model (no channels) takes it.
        function: whether it answers a function on G_K (``out_features`` output channels
            per node, moved to ``output_grid`` by linear interpolation).
        head: whether it takes ``head_hidden`` (an MLP head of that hidden width).
        channel_linear: whether it is linear in the state's channels, so that the state may
            be rotated (a PCA channel basis); otherwise channels are only selected.
        matrix: whether it is a quadrature functional (P x)_o = sum_j R_oj x_j + beta_o with a
            [`readout_matrix`][spacetime_nets.models.SpaceTimeNet.readout_matrix].
    """

    name: str
    build: Callable[[ReadoutRequest], dict[str, nn.Parameter]]
    apply: Callable[[SpaceTimeNet, torch.Tensor, int], torch.Tensor]
    export: Callable[[SpaceTimeNet], nn.Module]
    multiply_adds: Callable[[SpaceTimeNet], int]
    parameters: Callable[[ReadoutRequest], Sequence[tuple[str, int, str]]]
    map_channels: Callable[[SpaceTimeNet, torch.Tensor], None] | None = None
    scalar: bool = False
    function: bool = False
    head: bool = False
    channel_linear: bool = True
    matrix: bool = False


READOUT_REGISTRY: dict[str, Readout] = {}
"""The readouts, by name: `{name: Readout}` (`register_readout` adds one)."""

READOUTS: Sequence[str] = NamesView(READOUT_REGISTRY)
"""The readouts of `SpaceTimeNet(readout=...)`: a live view of the keys of `READOUT_REGISTRY`.
quadrature: (P x)_o = sum_c int p_oc x_c + beta_o; mean: a linear map (or, with head_hidden, a
one-hidden-layer GELU MLP) of the channel means; pool: the same of the channel means of
sigma(x) (global average pooling after the activation, as in CNNs); function:
y(xi) = Q x(T, xi) + q pointwise (operator learning)."""


def register_readout(readout: Readout) -> Readout:
    """Add ``readout`` to ``READOUT_REGISTRY``: ``SpaceTimeNet(readout=readout.name)``,
    ``runs.ModelOptions``, the command line, export and the cost model take it from then on.

    Args:
        readout: the entry; one of the same name is replaced.

    Returns:
        ``readout``.

    Raises:
        ValueError: when ``readout`` is not a `Readout`, has no name, or one of its functions
            is not callable.
    """
    if not isinstance(readout, Readout):
        raise ValueError(f"readout: expected a Readout, got {type(readout).__name__}")
    if not isinstance(readout.name, str) or not readout.name:
        raise ValueError(f"readout {readout.name!r}: name must be a non-empty string")
    fns = {
        "build": readout.build,
        "apply": readout.apply,
        "export": readout.export,
        "multiply_adds": readout.multiply_adds,
        "parameters": readout.parameters,
    }
    for field, fn in fns.items():
        if not callable(fn):
            raise ValueError(f"readout {readout.name!r}: {field} must be callable, got {fn!r}")
    if readout.map_channels is not None and not callable(readout.map_channels):
        raise ValueError(f"readout {readout.name!r}: map_channels must be callable or None")
    READOUT_REGISTRY[readout.name] = readout
    return readout


# --------------------------------------------------------------------------- shared pieces
def _uniform(shape: tuple[int, ...], fan_in: int, gen: torch.Generator | None) -> torch.Tensor:
    """U(-1, 1) / sqrt(fan_in) of ``shape``."""
    return (torch.rand(*shape, generator=gen) * 2 - 1) / math.sqrt(fan_in)


def _bias(out: int) -> nn.Parameter:
    return nn.Parameter(torch.zeros(out))


def _put(model: SpaceTimeNet, name: str, value: torch.Tensor) -> None:
    """Replace the parameter ``name`` of ``model`` by ``value`` (same requires_grad)."""
    old = getattr(model, name)
    setattr(model, name, nn.Parameter(value.contiguous(), old.requires_grad))


def _linear(W: torch.Tensor, b: torch.Tensor) -> nn.Linear:
    from ..export import _linear as linear

    return linear(W, b)


# --------------------------------------------------------------------------- quadrature
def _quadrature_build(req: ReadoutRequest) -> dict[str, nn.Parameter]:
    """p_oc in the basis (continuous: ``[out, c_K, A]``) or as values on G_K (nodal:
    ``[out, c_K, n_K]``), without the channel axis for the scalar model; beta ``[out]``."""
    gen, out, cK = req.generator, req.out_features, req.channels
    shape = (out,) if cK is None else (out, cK)
    c = 1 if cK is None else cK
    if req.continuous:
        A = req.basis_size
        coeff = torch.randn(*shape, A, generator=gen) / math.sqrt(A * c)
        params = {"readout_coeff": nn.Parameter(coeff)}
    else:
        nK = req.schedule.widths[-1]
        vol = req.schedule.domain.volume
        values = (torch.rand(*shape, nK, generator=gen) * 2 - 1) * math.sqrt(nK / c) / vol
        params = {"readout_values": nn.Parameter(values)}
    return {**params, "readout_bias": _bias(out)}


def _quadrature_apply(model: SpaceTimeNet, state: torch.Tensor, k: int) -> torch.Tensor:
    return torch.nn.functional.linear(state.flatten(1), model.readout_matrix(k), model.readout_bias)


def _quadrature_export(model: SpaceTimeNet) -> nn.Module:
    head = _linear(model.readout_matrix(), model.readout_bias)
    if not model.channel_mode:
        return head
    from ..export import ChannelHead

    return ChannelHead("quadrature", head)


def _per_node_macs(model: SpaceTimeNet) -> int:
    """out c_K n_K: a quadrature functional per output, or a pointwise map at every node."""
    ch = model.schedule.channels
    return model.out_features * (1 if ch is None else ch[-1]) * model.schedule.widths[-1]


def _quadrature_parameters(req: ReadoutRequest) -> list[tuple[str, int, str]]:
    per = req.basis_size if req.continuous else req.schedule.widths[-1]
    per_out = (req.channels or 1) * per + 1
    return [("out_features", req.out_features * per_out, "the readout's weights")]


def _quadrature_map_channels(model: SpaceTimeNet, P: torch.Tensor) -> None:
    name = "readout_coeff" if hasattr(model, "readout_coeff") else "readout_values"
    _put(model, name, torch.einsum("oca,cr->ora", getattr(model, name), P))


# --------------------------------------------------------------------------- mean and pool
def _pooled_build(req: ReadoutRequest) -> dict[str, nn.Parameter]:
    """``Linear(c_K, out)``, or ``Linear(c_K, H) -> GELU -> Linear(H, out)`` with
    ``head_hidden`` H."""
    gen, out, cK, H = req.generator, req.out_features, req.channels, req.head_hidden
    if H is None:
        return {
            "readout_weight": nn.Parameter(_uniform((out, cK), cK, gen)),
            "readout_bias": _bias(out),
        }
    return {
        "head_weight": nn.Parameter(_uniform((H, cK), cK, gen)),
        "head_bias": _bias(H),
        "readout_weight": nn.Parameter(_uniform((out, H), H, gen)),
        "readout_bias": _bias(out),
    }


def _pooled_head(model: SpaceTimeNet, means: torch.Tensor) -> torch.Tensor:
    """The head on the pooled features ``[B, c_K] -> [B, out]``."""
    F = torch.nn.functional
    if getattr(model, "head_hidden", None) is not None:
        means = F.gelu(F.linear(means, model.head_weight, model.head_bias))
    return F.linear(means, model.readout_weight, model.readout_bias)


def _pooled_apply(after_activation: bool) -> Callable:
    def apply(model: SpaceTimeNet, state: torch.Tensor, k: int) -> torch.Tensor:
        """m_c = (1/|Omega|) sum_j omega_j z_cj with z = x (mean) or sigma(x) (pool)."""
        _, w = model.disc.grid(k)
        z = model.act(state) if after_activation else state
        return _pooled_head(model, (z * w).sum(-1) / model.domain.volume)

    return apply


def _pooled_export(after_activation: bool) -> Callable:
    def export(model: SpaceTimeNet) -> nn.Module:
        from ..export import ChannelHead
        from ..fields import activation_module

        _, w = model.disc.grid(model.schedule.num_steps)
        mlp = _linear(model.readout_weight, model.readout_bias)
        if getattr(model, "head_hidden", None) is not None:
            mlp = nn.Sequential(_linear(model.head_weight, model.head_bias), nn.GELU(), mlp)
        act = activation_module(model.activation) if after_activation else None
        return ChannelHead("mean", mlp, pool=(w / model.domain.volume).clone(), act=act)

    return export


def _pooled_macs(model: SpaceTimeNet) -> int:
    """c_K n_K for the means, then the head: c_K out, or c_K H + H out."""
    cK, nK, out = model.schedule.channels[-1], model.schedule.widths[-1], model.out_features
    H = getattr(model, "head_hidden", None)
    return cK * nK + (cK * out if H is None else cK * H + H * out)


def _pooled_parameters(req: ReadoutRequest) -> list[tuple[str, int, str]]:
    cK, out, H = req.channels, req.out_features, req.head_hidden
    if H is None:
        return [("out_features", out * (cK + 1), "the readout's weights")]
    return [
        ("head_hidden", H * (cK + 1), "the head's hidden layer"),
        ("out_features", out * (H + 1), "the readout's weights"),
    ]


def _pooled_map_channels(model: SpaceTimeNet, P: torch.Tensor) -> None:
    first = "head_weight" if getattr(model, "head_hidden", None) is not None else "readout_weight"
    _put(model, first, getattr(model, first) @ P)


# --------------------------------------------------------------------------- function
def _function_build(req: ReadoutRequest) -> dict[str, nn.Parameter]:
    """Q ``[out, c_K]`` and q ``[out]``: y(xi) = Q x(T, xi) + q at every node."""
    cK, out = req.channels, req.out_features
    return {
        "readout_weight": nn.Parameter(_uniform((out, cK), cK, req.generator)),
        "readout_bias": _bias(out),
    }


def _function_apply(model: SpaceTimeNet, state: torch.Tensor, k: int) -> torch.Tensor:
    return pointwise(state, model.readout_weight, model.readout_bias)


def _function_export(model: SpaceTimeNet) -> nn.Module:
    from ..export import ChannelHead

    W = model.readout_weight
    conv = nn.Conv1d(W.shape[1], W.shape[0], 1, device=W.device, dtype=W.dtype)
    with torch.no_grad():
        conv.weight.copy_(W[..., None])
        conv.bias.copy_(model.readout_bias)
    cells = model.lift_entry.cells
    return ChannelHead("function", conv, grid_shape=model.schedule.grids[-1].shape, cells=cells)


def _function_parameters(req: ReadoutRequest) -> list[tuple[str, int, str]]:
    return [("out_features", req.out_features * (req.channels + 1), "the readout's weights")]


def _weight_map_channels(model: SpaceTimeNet, P: torch.Tensor) -> None:
    _put(model, "readout_weight", model.readout_weight @ P)


register_readout(
    Readout(
        "quadrature",
        _quadrature_build,
        _quadrature_apply,
        _quadrature_export,
        _per_node_macs,
        _quadrature_parameters,
        _quadrature_map_channels,
        scalar=True,
        matrix=True,
    )
)
for _name, _after in (("mean", False), ("pool", True)):
    register_readout(
        Readout(
            _name,
            _pooled_build,
            _pooled_apply(_after),
            _pooled_export(_after),
            _pooled_macs,
            _pooled_parameters,
            _pooled_map_channels,
            head=True,
            channel_linear=not _after,
        )
    )
register_readout(
    Readout(
        "function",
        _function_build,
        _function_apply,
        _function_export,
        _per_node_macs,
        _function_parameters,
        _weight_map_channels,
        function=True,
    )
)
