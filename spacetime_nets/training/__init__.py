"""Training: the fit loop, progress, history, safe checkpoints, exact resume, data parallel.

[`fit`][spacetime_nets.training.fit] minimises the objective of docs/concepts.md by mini-batch
gradient steps,

    J = E(x(T)) + lam * int_0^T |u(t)|^2 dt  [+ weight * int_0^T E(x(t)) dt]

with the empirical risk E of [`spacetime_nets.objectives`][spacetime_nets.objectives] on each batch,
the control cost [`l2_control`][spacetime_nets.objectives.l2_control] as an explicit penalty
(optimiser weight decay, ``weight_decay``, is a separate option on every parameter) and, optionally,
the turnpike integral computed from one ``model.trajectory(x)`` pass.

The package has one module per concern: ``loop`` ([`fit`][spacetime_nets.training.fit] and the small
trainer object behind it), ``objective`` (the objective, optimisers, learning-rate schedules,
[`evaluate`][spacetime_nets.training.evaluate]), ``data`` (the check of a whole data set before the
first update), ``checkpoint`` (atomic, digest-checked checkpoint files), ``history``
([`History`][spacetime_nets.training.History], [`TrainState`][spacetime_nets.training.TrainState],
[`Callback`][spacetime_nets.training.Callback]), ``distributed`` (devices, ``torchrun`` processes)
and ``multires`` (training across input resolutions, ``fit(resolutions=...)``). Everything public is
importable from ``spacetime_nets.training``.

Reproducibility: the samples are shuffled with a ``torch.Generator`` seeded with
``seed + epoch`` (the rule of ``DistributedSampler``), so the order of an epoch does not depend
on what happened before it. A checkpoint holds the parameters, the optimiser state, the
counters, the random states and the history, so ``resume=`` continues to exactly the
parameters of an uninterrupted run.

Under ``torchrun`` (``WORLD_SIZE > 1``) the model is wrapped in ``DistributedDataParallel``;
``batch_size`` is the global batch, split evenly over the processes.
"""

from __future__ import annotations

from .checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
)
from .distributed import resolve_device
from .history import HISTORY_FIELDS, Callback, History, TrainState
from .loop import TrainingDiverged, fit
from .objective import LR_SCHEDULES, OPTIMIZERS, baselines, evaluate

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "HISTORY_FIELDS",
    "LR_SCHEDULES",
    "OPTIMIZERS",
    "Callback",
    "History",
    "TrainState",
    "TrainingDiverged",
    "baselines",
    "evaluate",
    "fit",
    "load_checkpoint",
    "load_model_state",
    "resolve_device",
    "save_checkpoint",
]
