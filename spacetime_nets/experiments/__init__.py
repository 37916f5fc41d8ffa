"""Reproductions of the large-time claims (docs/concepts.md, large-time behaviour), as
command-line experiments.

``asymptotics``: ERM at a fixed lam for a range of horizons T; the training error should decay
at least like 1/T (log-log slope <= -1) with T * int_0^T |u_T|^2 bounded; plus a check of the
scaling lemma on trained models, (T, lam) against (1, lam / T).

``turnpike``: the integral cost E(x(T)) + int_0^T E(x(t)) dt + lam int_0^T |u|^2 for several T;
E(x(t)) and |u(t)| should decay like C exp(-mu t) with C, mu independent of T, so the time to
reach a small risk does not grow with T, while for ERM it does. The rates are fitted on one arc
common to every T ([0.2, 0.8] x the shortest horizon); fits on each T's own middle arc are
kept as a diagnostic column only (on long horizons that arc lies on the risk's lam-floor).

Both write CSV tables and PNG figures into ``--out`` and print the summary tables. Models:

- ``ode-inside-tanh``: NeuralODE, f = W tanh(x) + b, state R^{2 + augment};
- ``ode-outside-relu``: NeuralODE, f = relu(W x + b);
- ``st-basis-hourglass``: SpaceTimeNet with a Legendre basis kernel (inside, tanh) on a moving
  hourglass schedule of Omega = [0, 1] (widths wide -> narrow -> wide, nodes drifting).

The readout (and the lift) are fixed at their random initialisation and only the controls are
trained, as in the theory; classification targets are one-hot, so the losses attain 0.

Layout: ``sweeps`` ([`horizon_sweep`][spacetime_nets.experiments.horizon_sweep],
[`scaling_check`][spacetime_nets.experiments.scaling_check]) and ``turnpike``
([`train_turnpike`][spacetime_nets.experiments.train_turnpike]) are the drivers, which train
with [`train_objective`][spacetime_nets.fullbatch.train_objective] and write their tables with
[`spacetime_nets.tables`][spacetime_nets.tables]; ``models`` builds the models above
([`make_model`][spacetime_nets.experiments.make_model]); ``commands`` holds the two commands'
options and runs. ``python -m spacetime_nets.experiments`` runs the commands without the
``spacetime-nets`` entry point.
"""

from __future__ import annotations

from .commands import (
    EXPERIMENT_DATASETS,
    FAST_SIZES,
    add_asymptotics_args,
    add_turnpike_args,
    check_args,
    main,
    run_asymptotics,
    run_turnpike,
)
from .models import MODELS, hourglass_widths, make_model
from .sweeps import SWEEP_COLUMNS, ScalingCheck, SweepResult, horizon_sweep, scaling_check
from .turnpike import TURNPIKE_COLUMNS, TurnpikeResult, train_turnpike

__all__ = [
    "SWEEP_COLUMNS",
    "SweepResult",
    "horizon_sweep",
    "ScalingCheck",
    "scaling_check",
    "TURNPIKE_COLUMNS",
    "TurnpikeResult",
    "train_turnpike",
    "MODELS",
    "EXPERIMENT_DATASETS",
    "FAST_SIZES",
    "check_args",
    "hourglass_widths",
    "make_model",
    "add_asymptotics_args",
    "run_asymptotics",
    "add_turnpike_args",
    "run_turnpike",
    "main",
]
