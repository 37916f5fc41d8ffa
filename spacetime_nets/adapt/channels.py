"""Fewer channels for a channel model: a ranking of the state's channel directions and of the
bottleneck's hidden channels on calibration data, and the model that keeps the r first."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..models import SpaceTimeNet
from ..models.readouts import _put
from ..ops import apply_op
from ..validation import check_int
from ._common import _calibration


def _pca_directions(gram: torch.Tensor, total: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The eigenvectors of G, by decreasing eigenvalue, and their shares of ``total``."""
    vals, vecs = torch.linalg.eigh(gram)
    order = torch.argsort(vals, descending=True)
    return vecs[:, order], vals[order].clamp_min(0) / total


def _select_directions(gram: torch.Tensor, total: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The columns of the identity, by decreasing diagonal of G, and their shares of
    ``total``."""
    diag = torch.diagonal(gram)
    order = torch.argsort(diag, descending=True)
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    return eye[:, order], diag[order] / total


@dataclass(frozen=True)
class _StateBasis:
    """One way of reducing the state's channels (a ``ChannelRanking.kind``).

    Attributes:
        name: the ranking's ``kind``.
        rotates: whether the basis mixes the channels, which needs a flow that commutes
            with a rotation of the state (``_pca_applies``); else it selects channels.
        directions: ``directions(G, total) -> (state [c, c], energy [c])``: the basis in
            its columns, most important first, from the states' second moment G
            (float64), and the share of ``total`` = sum(diag G) along each column.
    """

    name: str
    rotates: bool
    directions: Callable[[torch.Tensor, float], tuple[torch.Tensor, torch.Tensor]]


_STATE_BASES: dict[str, _StateBasis] = {
    entry.name: entry
    for entry in (
        _StateBasis("pca", True, _pca_directions),
        _StateBasis("select", False, _select_directions),
    )
}

STATE_BASES: tuple[str, ...] = tuple(_STATE_BASES)
"""How the state's channels are reduced: `pca` (an orthonormal basis of the states' channel
directions; bottleneck forms with a readout linear in the state) or `select` (a subset of the
channels: every form, every readout)."""


@dataclass
class ChannelRanking:
    """The channel directions of a trained channel model, most important first.

    Attributes:
        kind: ``"pca"`` or ``"select"`` (see ``STATE_BASES``).
        state: ``[c, c]``, an orthonormal basis of the state channels in its columns: the
            eigenvectors of the states' second moment G = sum_k int_Omega x_k x_k^T over the
            calibration batch and every time t_k (``pca``), or the columns of the identity
            ordered by the diagonal of G (``select``).
        energy: ``[c]``, the share of sum(diag G) along each column of ``state``.
        hidden: bottleneck form only: per piece of the first kernel, the hidden channels
            ``[h]`` ordered by their contribution to the velocity,
            ||W2 (e_h sigma(z_h))||^2 summed over the batch and the steps (z = W1 x + b1);
            None for the other forms.
    """

    kind: str
    state: torch.Tensor
    energy: torch.Tensor
    hidden: list[torch.Tensor] | None

    @property
    def channels(self) -> int:
        """c, the model's channel count."""
        return self.state.shape[0]


def _check_channel_model(model: Any, what: str) -> SpaceTimeNet:
    """A channel SpaceTimeNet whose channels this module can reduce, or a ValueError."""
    if not isinstance(model, SpaceTimeNet) or not getattr(model, "channel_mode", False):
        raise ValueError(f"model: {what} needs a SpaceTimeNet with channels (channels=...)")
    counts = set(model.schedule.channels)
    if len(counts) != 1:
        raise ValueError(
            f"model: {what} needs one channel count at every step, the schedule has "
            f"{model.schedule.channels}"
        )
    kernels = [k for k in (model.kernel, model.kernel2) if k is not None]
    if not all(callable(getattr(k, "map_channels_", None)) for k in kernels):
        names = ", ".join(type(k).__name__ for k in kernels)
        raise ValueError(f"model: {what} needs conv or spectral kernels, got {names}")
    if len(kernels) == 2 and (
        kernels[0].pieces != kernels[1].pieces or kernels[0].time_degree != kernels[1].time_degree
    ):
        raise ValueError(f"model: {what} needs the bottleneck's two kernels in the same pieces")
    if getattr(model, "norm_layer", None) is not None:
        raise ValueError(f"model: {what} does not reduce a channel normalisation (norm=...)")
    if model.readout_entry.map_channels is None:
        raise ValueError(
            f"model: {what} cannot map the weights of the {model.readout_kind!r} readout (its "
            "entry has no map_channels)"
        )
    return model


def _pca_applies(model: SpaceTimeNet) -> bool:
    """A rotation of the state commutes with the flow: sigma acts on the bottleneck's
    hidden channels only, and the readout is linear in the state."""
    return model.two_operators and model.readout_entry.channel_linear


def rank_channels(model: SpaceTimeNet, data: Any, *, batch_size: int = 1024) -> ChannelRanking:
    """Rank the channel directions of ``model`` on calibration ``data`` (see
    [`ChannelRanking`][spacetime_nets.adapt.ChannelRanking]).

    Args:
        model: a channel SpaceTimeNet with conv or spectral kernels and one channel count.
        data: calibration inputs: x ``[N, in_features]``, a pair (x, y) or a Split.
        batch_size: samples per forward pass.

    Returns:
        The ranking: ``pca`` for bottleneck forms whose readout is linear in the state,
            ``select`` otherwise.
    """
    _check_channel_model(model, "rank_channels")
    batch_size = check_int("batch_size", batch_size)
    x, _ = _calibration(model, data, need_labels=False)
    c = model.schedule.channels[0]
    ref = next(model.parameters())
    gram = torch.zeros(c, c, dtype=torch.float64, device=ref.device)
    bottleneck = model.two_operators
    kern = model.kernel
    pieces = kern.pieces if kern.time_degree is None else 1
    h = hidden_count(model) if bottleneck else c
    hidden = torch.zeros(pieces, h, dtype=torch.float64, device=ref.device)
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            mats = model.controls()  # built once, for the states and the hidden channels
            times = [float(t) for t in model.disc.times[:-1]]
            for i in range(0, x.shape[0], batch_size):
                x0 = model.lift(x[i : i + batch_size])
                _, states = model._flow(x0, keep_states=True, mats=mats)
                for k, s in enumerate(states):
                    w = model.disc.grid(k)[1].to(torch.float64)
                    s = s.to(torch.float64)
                    gram += torch.einsum("bcj,bdj,j->cd", s, s, w)
                if not bottleneck:
                    continue
                for k, t in enumerate(times):
                    p = kern.piece(t) if kern.time_degree is None else 0
                    hidden[p] += _hidden_contributions(model, mats[k], states[k])
    finally:
        model.train(was)
    total = float(torch.diagonal(gram).sum()) or 1.0
    rotate = bottleneck and _pca_applies(model)
    basis = _STATE_BASES["pca"] if rotate else _STATE_BASES["select"]
    state, energy = basis.directions(gram, total)
    hid = [torch.argsort(h, descending=True) for h in hidden] if bottleneck else None
    return ChannelRanking(basis.name, state, energy, hid)


def _hidden_contributions(model: SpaceTimeNet, sm, x: torch.Tensor) -> torch.Tensor:
    """||W2 (e_h sigma(z_h))||^2 ``[c]`` per hidden channel h of one bottleneck step (z =
    W1 x + b1), by the quadrature of the output grid, summed over the batch."""
    op1, op2 = sm.layers
    s = model.act(apply_op(op1, x))
    w_out = sm.grids[1][0].to(torch.float64)
    zero = apply_op(op2, torch.zeros_like(s))
    out = torch.empty(s.shape[1], dtype=torch.float64, device=s.device)
    for h in range(s.shape[1]):
        one = torch.zeros_like(s)
        one[:, h] = s[:, h]
        d = (apply_op(op2, one) - zero).to(torch.float64)
        out[h] = (d.square() * w_out).sum()
    return out


def with_channels(
    model: SpaceTimeNet, ranking: ChannelRanking, channels: int, hidden: int | None = None
) -> SpaceTimeNet:
    """The model with ``channels`` = r state channels (and, in the bottleneck form, ``hidden``
    = h hidden channels): the state X = P Z on the r first directions P ``[c, r]`` of
    ``ranking.state``; the lift becomes P^T L, every kernel K -> P^T K P (bottleneck:
    W1 -> E_p^T W1 P and W2 -> P^T W2 E_p, E_p ``[c, h]`` the h first hidden channels of piece
    p), the readout R -> R P. Exact when the states lie in span(P) and the hidden channels
    left out are zero (r = h = c gives the same function); otherwise an approximation to be
    checked on data ([`compress`][spacetime_nets.adapt.compress] does). A bottleneck with
    h != r runs on equispaced grids (convolution and FFT paths).

    Args:
        model: the channel model the ranking was made for (left unchanged).
        ranking: [`rank_channels`][spacetime_nets.adapt.rank_channels] of ``model``.
        channels: r, 1 <= r <= c (the state channels).
        hidden: h, at most the model's hidden channels, bottleneck form only (None: r, or
            all hidden channels if there are fewer).

    Returns:
        A new SpaceTimeNet on the same grids and times with r state channels at every step.
    """
    _check_channel_model(model, "with_channels")
    c = model.schedule.channels[0]
    if not isinstance(ranking, ChannelRanking) or ranking.channels != c:
        raise ValueError(
            f"ranking: expected a ChannelRanking of this model's {c} channels, got "
            f"{type(ranking).__name__}"
            + (f" of {ranking.channels}" if isinstance(ranking, ChannelRanking) else "")
        )
    basis = _STATE_BASES.get(ranking.kind) if isinstance(ranking.kind, str) else None
    if basis is not None and basis.rotates and not _pca_applies(model):
        raise ValueError(
            f"ranking: a {basis.name!r} ranking needs a bottleneck form and a linear readout"
        )
    r = _check_count("channels", channels, c)
    new = copy.deepcopy(model)
    ref = next(model.parameters())
    P = ranking.state[:, :r].to(ref)
    kern = new.kernel
    if new.two_operators:  # W1: state -> hidden, W2: hidden -> state
        h0 = hidden_count(model)
        h = min(r, h0) if hidden is None else _check_count("hidden", hidden, h0)
        eye = torch.eye(h0, dtype=ref.dtype, device=ref.device)
        E = [eye[:, order[:h]] for order in ranking.hidden]
        E = E * kern.pieces if len(E) == 1 else E
        kern.map_channels_(E, [P] * kern.pieces, channels=r)
        new.kernel2.map_channels_([P] * kern.pieces, E, channels=r)
    else:
        if hidden is not None:
            raise ValueError(f"hidden: applies to the bottleneck form, not to {new.form!r}")
        kern.map_channels_([P] * kern.pieces, [P] * kern.pieces)
    _map_lift_readout(new, P)
    new._bind(new.schedule.with_channels(r))
    return new


def _check_count(name: str, value: object, c: int) -> int:
    v = check_int(name, value, 1)
    if v > c:
        raise ValueError(f"{name}: expected at most {c} (the model's count), got {v}")
    return v


def hidden_count(model: SpaceTimeNet) -> int | None:
    """The hidden channels of a bottleneck channel model (the first kernel's output
    channels); None for the other forms.

    Args:
        model: a channel SpaceTimeNet with conv or spectral kernels.

    Returns:
        The count, or None.
    """
    if not model.two_operators:
        return None
    return model.kernel._coefficients()[0].shape[0]


def _map_lift_readout(model: SpaceTimeNet, P: torch.Tensor) -> None:
    """Lift L -> P^T L, l -> P^T l; readout weights R -> R P on the state channels."""
    with torch.no_grad():
        _put(model, "lift_weight", P.T @ model.lift_weight)
        _put(model, "lift_bias", P.T @ model.lift_bias)
        model.readout_entry.map_channels(model, P)
