"""The lifts of ``SpaceTimeNet(lift=...)``: how an input becomes the state X^0 on G_0.

A lift is a [`Lift`][spacetime_nets.models.Lift] entry of ``LIFT_REGISTRY``, the facts about
the input that the model, export, the cost model, adapt and the command line read: whether the
input is a function sampled on G_0 (it then follows the grid: ``at_resolution``, ``input_grid``
and series of any length), cell values gathered onto G_0 (``in_shape``), or features mapped by
a learned linear map. ``LIFTS`` is a live view of the registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from grids.registry import NamesView

__all__ = ["Lift", "LIFT_REGISTRY", "LIFTS"]


@dataclass(frozen=True)
class Lift:
    """One lift of ``SpaceTimeNet(lift=name)``.

    Attributes:
        name: the name ``lift=`` (and ``--lift``) takes.
        scalar: whether the scalar model (no channels) takes it.
        channels: whether channel models take it (their pointwise ``c_0 x c_in`` map L
            follows it).
        cells: the input holds the values of ``in_shape`` equal cells of Omega per input
            channel, gathered onto the nodes of G_0 (x_j on the cell of node j).
        function: the input is a function sampled on G_0 (``[B, c_in, n_0]``): it follows the
            grid (``in_features`` = n_0 c_in on every schedule), may arrive on another grid
            (``input_grid``, ``at_resolution`` below G_0, series of any length) and may carry
            the coordinates (``coordinates=True``).
        learned: the scalar model's learned linear map x -> sum_j x_j a_j + a_0 (functions
            a_j in the basis for continuous kernels, values on G_0 for nodal ones).
    """

    name: str
    scalar: bool = True
    channels: bool = True
    cells: bool = False
    function: bool = False
    learned: bool = False


LIFT_REGISTRY: dict[str, Lift] = {
    "cells": Lift("cells", cells=True),
    "linear": Lift("linear", channels=False, learned=True),
    "identity": Lift("identity", function=True),
}
"""The lifts, by name: `{name: Lift}`."""

LIFTS: Sequence[str] = NamesView(LIFT_REGISTRY)
"""The lifts of `SpaceTimeNet(lift=...)`: a live view of the keys of `LIFT_REGISTRY`
(`linear`: the scalar model only)."""
