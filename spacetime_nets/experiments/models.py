"""The models of the large-time experiments: NeuralODEs and a SpaceTimeNet on a moving
hourglass schedule, with the readout and the lift fixed at a seeded random draw."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from grids import GridSchedule

from ..models import NeuralODE, SpaceTimeNet

__all__ = ["MODELS", "hourglass_widths", "make_model"]


def hourglass_widths(steps: int, outer: int, waist: int) -> list[int]:
    """n_k = outer + (waist - outer) (1 - |2 k / K - 1|), k = 0..K (wide - narrow - wide).

    Args:
        steps: the number of steps K (the schedule has K + 1 grids).
        outer: the width at both ends, n_0 = n_K.
        waist: the width in the middle, n_{K/2}.

    Returns:
        The K + 1 widths n_0, ..., n_K, rounded to ints.
    """
    return [round(outer + (waist - outer) * (1 - abs(2 * k / steps - 1))) for k in range(steps + 1)]


def make_model(
    name: str,
    in_features: int,
    out_features: int,
    T: float,
    steps: int,
    *,
    augment: int = 6,
    modes: int = 8,
    outer: int = 16,
    waist: int = 10,
    init_scale: float = 1.0,
    seed: int = 0,
) -> nn.Module:
    """One of [`MODELS`][spacetime_nets.experiments.MODELS] on [0, T] with ``steps`` Euler
    steps, in float64.

    NeuralODE: state R^{in + augment}, fixed random affine readout. SpaceTimeNet: Legendre
    basis kernel with ``modes`` functions, coefficients piecewise constant on the steps,
    moving hourglass schedule ``outer -> waist -> outer`` nodes, learned-function lift and
    quadrature readout (both kept fixed by the experiments). The readout (and lift) are
    redrawn from a generator seeded ``10000 + seed``, so they are the same for every T and
    every number of steps.

    Args:
        name: a name of [`MODELS`][spacetime_nets.experiments.MODELS].
        in_features: the input dimension d of ``x`` ``[N, d]``.
        out_features: the number of outputs m.
        T: the horizon.
        steps: the number of Euler steps K.
        augment: the NeuralODE's extra state dimensions (zeros appended to the input).
        modes: the SpaceTimeNet's Legendre basis functions per kernel.
        outer: the hourglass schedule's width at both ends.
        waist: the hourglass schedule's width in the middle.
        init_scale: the scale of the controls' random initialisation.
        seed: seeds the model's initialisation and its fixed parts.

    Returns:
        A [`NeuralODE`][spacetime_nets.models.NeuralODE] or
            [`SpaceTimeNet`][spacetime_nets.models.SpaceTimeNet] in float64.

    Raises:
        ValueError: an unknown ``name``.
    """
    recipe = _RECIPES.get(name) if isinstance(name, str) else None
    if recipe is None:
        raise ValueError(f"model: expected one of {', '.join(MODELS)}; got {name!r}")
    request = _Request(
        in_features=in_features,
        out_features=out_features,
        T=T,
        steps=steps,
        augment=augment,
        modes=modes,
        outer=outer,
        waist=waist,
        init_scale=init_scale,
        seed=seed,
    )
    return _fixed_parts(recipe(request), seed)


@dataclass(frozen=True)
class _Request:
    """The arguments of [`make_model`][spacetime_nets.experiments.make_model] a recipe builds
    from (each recipe reads those it needs).

    Attributes:
        in_features: the input dimension d.
        out_features: the number of outputs m.
        T: the horizon.
        steps: the number of Euler steps K.
        augment: the NeuralODE's extra state dimensions.
        modes: the SpaceTimeNet's Legendre basis functions per kernel.
        outer: the hourglass schedule's width at both ends.
        waist: the hourglass schedule's width in the middle.
        init_scale: the scale of the controls' random initialisation.
        seed: seeds the model's initialisation.
    """

    in_features: int
    out_features: int
    T: float
    steps: int
    augment: int
    modes: int
    outer: int
    waist: int
    init_scale: float
    seed: int


def _neural_ode(form: str, activation: str, r: _Request) -> nn.Module:
    """A float64 NeuralODE of ``form`` and ``activation`` with a fixed affine readout."""
    return NeuralODE(
        r.in_features,
        T=r.T,
        steps=r.steps,
        form=form,
        activation=activation,
        out_features=r.out_features,
        augment=r.augment,
        fixed_readout=True,
        init_scale=r.init_scale,
        seed=r.seed,
    ).double()


def _hourglass_net(r: _Request) -> nn.Module:
    """A float64 SpaceTimeNet with a Legendre basis kernel on the moving hourglass schedule."""
    sched = GridSchedule.moving(hourglass_widths(r.steps, r.outer, r.waist), T=r.T)
    m = SpaceTimeNet(
        sched,
        r.in_features,
        r.out_features,
        kernel="basis",
        form="inside",
        activation="tanh",
        lift="linear",
        modes=r.modes,
        init_scale=r.init_scale,
        seed=r.seed,
    ).double()
    # rebuild the grid buffers from the float64 schedule (not float32 values cast up)
    return m.rescale_horizon(m.T)


_RECIPES: dict[str, Callable[[_Request], nn.Module]] = {
    "ode-inside-tanh": partial(_neural_ode, "inside", "tanh"),
    "ode-outside-relu": partial(_neural_ode, "outside", "relu"),
    "st-basis-hourglass": _hourglass_net,
}
"""How each model of `MODELS` is built, by name: the model before its fixed parts are
redrawn."""

MODELS = tuple(_RECIPES)
"""The model names [`make_model`][spacetime_nets.experiments.make_model] builds (see the
package docstring)."""


def _fixed_parts(model: nn.Module, seed: int) -> nn.Module:
    """Redraw the parts that are not trained (readout, lift) from their own generator, so that
    they are the same for every number of steps (every T of a sweep sees the same P)."""
    g = torch.Generator().manual_seed(10_000 + int(seed))
    with torch.no_grad():
        if isinstance(model, NeuralODE):
            W = model.readout_weight
            bound = 1.0 / W.shape[1] ** 0.5
            W.copy_((torch.rand(W.shape, generator=g, dtype=W.dtype) * 2 - 1) * bound)
            b = model.readout_bias
            b.copy_((torch.rand(b.shape, generator=g, dtype=b.dtype) * 2 - 1) * bound)
        else:
            L, R = model.lift_coeff, model.readout_coeff
            vol = model.domain.volume
            L.copy_(torch.randn(L.shape, generator=g, dtype=L.dtype) / (L.shape[0] * vol) ** 0.5)
            model.lift_bias.zero_()
            R.copy_(torch.randn(R.shape, generator=g, dtype=R.dtype) / R.shape[1] ** 0.5)
            model.readout_bias.zero_()
    return model
