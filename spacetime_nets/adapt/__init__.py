"""Schedules that choose themselves: error estimates, compression, targeted refinement and
multilevel training for continuous space-time networks.

A continuous [`SpaceTimeNet`][spacetime_nets.models.SpaceTimeNet] (basis, neural, function,
conv or spectral kernels) is a function of the continuum; its grid schedule is only a
discretisation, and a cheaper or a more accurate one can be chosen after training, the way
adaptive ODE and finite-element codes choose step sizes and meshes (docs/concepts.md, sections
3 and 4):

* [`estimate_errors`][spacetime_nets.adapt.estimate_errors]: per-grid space estimates (G_k
  against its refinement) and per-step time estimates (one step against two half steps),
  Richardson-scaled, in the output's units;
* [`compress`][spacetime_nets.adapt.compress]: the cheapest schedule (per-step grid sizes,
  possibly fewer steps) whose outputs on a calibration batch stay within a tolerance of the
  trained model's;
* [`rank_channels`][spacetime_nets.adapt.rank_channels],
  [`with_channels`][spacetime_nets.adapt.with_channels]: the channel directions of a channel
  model ranked on calibration data, and the model on the leading r of them (compress uses
  them);
* [`refine_where`][spacetime_nets.adapt.refine_where]: the other way, spend a multiply-add
  budget where the estimates are largest;
* [`multilevel_fit`][spacetime_nets.adapt.multilevel_fit]: train on a coarse schedule, move
  the model up (exact resampling for continuous kernels, Net2Net-like interpolation for nodal
  ones), continue;
* [`compress_run`][spacetime_nets.adapt.compress_run]: the library side of
  ``spacetime-nets compress RUN``.

Costs are multiply-adds per sample ([`model_macs`][spacetime_nets.adapt.model_macs]); errors
are measured on a calibration batch ``x`` ``[N, in_features]`` as the largest absolute change
of any output (``norm="max"``) or its root mean square (``norm="rms"``).
"""

from ._common import METRICS, NORMS, ORDERS, SPACE_ORDER, model_macs
from .channels import STATE_BASES, ChannelRanking, hidden_count, rank_channels, with_channels
from .estimate import ErrorReport, estimate_errors, time_order
from .multilevel import MultilevelResult, multilevel_fit
from .run import compress_run
from .search import AdaptSummary, compress, refine_where

__all__ = [
    "ORDERS",
    "SPACE_ORDER",
    "NORMS",
    "METRICS",
    "ErrorReport",
    "AdaptSummary",
    "MultilevelResult",
    "model_macs",
    "time_order",
    "estimate_errors",
    "compress",
    "refine_where",
    "multilevel_fit",
    "compress_run",
    "STATE_BASES",
    "ChannelRanking",
    "rank_channels",
    "hidden_count",
    "with_channels",
]
