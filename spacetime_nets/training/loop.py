"""The training loop: [`fit`][spacetime_nets.training.fit] checks its arguments and the data,
then runs a ``_Trainer``, a small object holding the state of one run (model, optimiser, counters,
running sums, history) with one method per stage: restore, epoch, step, checkpoint.

Each step minimises J = E(x(T)) + lam * int_0^T |u(t)|^2 dt [+ weight * int_0^T E(x(t)) dt]
(docs/concepts.md) on one mini-batch. The samples are shuffled with a generator seeded with
``seed + epoch``, so a resumed run takes exactly the steps of an uninterrupted one; with
``resolutions`` the same generator then draws each batch's input resolution (``multires``).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..accel import GRAPH_MODE, check_compile_mode, check_precision, compile_model, mixed_precision
from ..objectives import l2_control
from ..validation import check_bool, check_choice, check_int, check_real, check_seed
from ._io import check_path, first_line
from .checkpoint import (
    load_checkpoint,
    load_state_into,
    save_checkpoint,
    set_rng_state,
)
from .data import (
    Data,
    check_data,
    is_class_labels,
    model_outputs,
    normalizer_stats,
    resolve_loss,
)
from .distributed import (
    all_reduce_sum,
    epoch_order,
    model_dtype,
    resolve_device,
    setup_distributed,
    teardown_distributed,
    wrap_data_parallel,
)
from .history import Callback, History, TrainState, as_callbacks
from .multires import MultiResolution, check_model, check_resolutions, epoch_scales
from .objective import (
    LR_SCHEDULES,
    Objective,
    baselines,
    evaluate_checked,
    make_optimizer,
    set_lr,
)
from .progress import (
    defer_sigint,
    empty_partial,
    epoch_record,
    postfix,
    postfix_record,
    progress_bar,
)
from .resume import check_compatible, data_digest, model_summary, remove_stale_interrupt

__all__ = ["TrainingDiverged", "fit"]


#: what a divergence stopped, by what became non-finite (``what`` of ``TrainingDiverged``)
_DIVERGED_STOPS: dict[str, str] = {
    "loss": "stopped before the update",
    "weights": "no checkpoint written with them",
}


class TrainingDiverged(RuntimeError):
    """The training objective (or, after an update, the weights) became NaN or infinite. No
    step was taken with it and no checkpoint was written after it; ``checkpoint`` is the last
    good one (or None).

    Args:
        epoch: the epoch it happened in (1-based).
        step: the step within that epoch (1-based).
        global_step: the step's 1-based number over the whole run.
        value: the non-finite value met (the objective's, or NaN for the weights).
        checkpoint: the path of the last good checkpoint, or None when none was written.
        what: what became non-finite, ``"loss"`` (the objective, found before the update) or
            ``"weights"`` (found after it); it words the message.
    """

    def __init__(
        self,
        epoch: int,
        step: int,
        global_step: int,
        value: float,
        checkpoint: str | None = None,
        what: str = "loss",
    ) -> None:
        self.epoch, self.step, self.global_step = epoch, step, global_step
        self.value, self.checkpoint = value, checkpoint
        where = f"last good checkpoint: {checkpoint}" if checkpoint else "no checkpoint written"
        stop = _DIVERGED_STOPS.get(what, _DIVERGED_STOPS["weights"])
        super().__init__(
            f"training diverged: the {what} is {value} at epoch {epoch}, step {step} "
            f"(global step {global_step}); {stop}; {where}"
        )


@dataclass(frozen=True)
class _Options:
    epochs: int
    batch_size: int
    optimizer: Any
    lr: float
    loss: str
    p: float | None
    lam: float
    turnpike: float | None
    out_dir: Path | None
    seed: int
    progress: bool
    checkpoint_every: int
    grad_clip: float | None
    lr_schedule: str
    compile: str | None = None
    precision: str = "fp32"
    resolutions: list[float] | None = None
    weight_decay: float = 0.0
    normalize: bool = False


def fit(
    model: nn.Module,
    train: Any,
    val: Any = None,
    *,
    epochs: int,
    batch_size: int,
    optimizer: str | torch.optim.Optimizer | Callable[..., torch.optim.Optimizer] = "adam",
    lr: float = 1e-2,
    loss: str | None = None,
    p: float | None = None,
    lam: float = 0.0,
    turnpike: float | None = None,
    device: str | torch.device = "auto",
    out_dir: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    callbacks: Sequence[Callback | Callable[[TrainState], Any]] = (),
    seed: int = 0,
    progress: bool = True,
    checkpoint_every: int = 1,
    grad_clip: float | None = None,
    lr_schedule: str | None = None,
    compile: str | bool | None = None,
    precision: str = "fp32",
    resolutions: Sequence[float] | None = None,
    weight_decay: float = 0.0,
    normalize: bool = False,
) -> History:
    """Train ``model`` in place on ``train`` (x ``[N, in]``, y ``[N]`` class labels or
    ``[N, m]`` targets: a pair of tensors, a ``datasets.Split`` or a torch Dataset) for
    ``epochs`` epochs of shuffled mini-batches of ``batch_size`` (the global batch).

    Each step minimises E(outputs, y) + lam * int_0^T |u|^2 dt (+ turnpike * int_0^T E(x(t)) dt,
    trapezoid in t, from one ``model.trajectory(x)`` pass with outputs = readout(final)).
    ``loss`` is a name of ``objectives.LOSSES`` (default cross_entropy for integer labels, mse
    otherwise; ``p`` for ``lp`` and ``rel_lp``; ``rel_l2`` is the relative error
    |z - y|_2 / |y|_2 of operator learning). ``optimizer``: "adam", "adamw", "sgd",
    "rmsprop" (with ``lr`` and ``weight_decay``), an Optimizer over the model's parameters,
    or a callable params -> Optimizer. ``weight_decay`` lam_wd is torch's own argument of the
    named optimiser: for adam, sgd and rmsprop the L2 term lam_wd * w added to the gradient
    (coupled, as ``torch.optim.Adam(weight_decay=...)``), for adamw the decoupled decay
    w <- w - lr * lam_wd * w. It acts on every trainable parameter, unlike ``lam``, which
    weighs the control cost int_0^T |u|^2 dt of the flow only.
    ``lr_schedule``: None / "constant", or "cosine" (decay to 0 over all the steps).

    ``normalize=True`` standardises inputs and targets by scalars of the training split,
    inside the model (``model.set_normalizers``, a SpaceTimeNet or NeuralODE): the flow sees
    (x - mean(x)) / std(x) and the model returns z * std(y) + mean(y), mean and std (unbiased)
    over every entry of every training row (targets only when they are not class labels), so
    ``model(x)``, the loss, the metrics, ``evaluate`` and the exported network all stay in raw
    units, and one number each holds at every resolution. On ``resume`` the normalisers come
    from the checkpoint; a run whose training data would give others is refused.

    After every epoch with ``val`` data and regression targets, the history records ``val_rel_l2``
    (the mean relative L2 error (1/N) sum_i |z_i - y_i| / |y_i| on val) and, computed once, the
    scores of two trivial predictors on val ([`baselines`][spacetime_nets.training.baselines]):
    ``val_zero_loss`` (the loss of predicting 0) and ``val_mean_rel_l2`` (the relative L2 error of
    predicting the mean training target).

    The whole of ``train`` and ``val`` is checked before the first update (real floating,
    finite inputs; integer labels in range or finite targets of the output's shape): a bad
    row raises a ValueError naming its index in the data set.

    With ``out_dir``: history.json / history.csv after every epoch, ``last.pt`` every
    ``checkpoint_every`` epochs and at the end (atomic writes); Ctrl-C writes ``interrupted.pt``
    with the state after the last completed step and re-raises (the KeyboardInterrupt's
    ``checkpoint`` attribute is its path); a finished run removes an ``interrupted.pt`` it has gone
    past. ``resume`` (a checkpoint or a run folder) continues to exactly the parameters of an
    uninterrupted run with the same seed; a new ``lr`` is applied (with a warning), another
    optimiser, another model (form, activation, lift, schedule, dtype) or other training data is
    refused with a ValueError. A NaN or infinite objective raises
    [`TrainingDiverged`][spacetime_nets.training.TrainingDiverged] before the update; no checkpoint
    is written after it. Under torchrun (WORLD_SIZE > 1) the model is trained with
    DistributedDataParallel, each process taking batch_size // world_size samples per step; only
    rank 0 writes files and shows progress.

    ``resolutions`` (scales of the input size, e.g. ``[0.5, 1, 2]``; None: off) trains one
    model across input resolutions, for a ``SpaceTimeNet`` with ``lift="identity"`` whose
    inputs are functions sampled on its input grid G (G_0, or the grid ``at_resolution``
    set) of n nodes per axis. Each batch gets a scale s drawn from the list (uniformly, by
    the epoch's shuffling generator after its permutation: reproducible, and exact on
    resume); its inputs are resampled by linear interpolation to the uniform grid G_s of
    n_s = round(s (n - 1)) + 1 nodes per axis (trapezoid, simpson, boole; round(s n) for the
    other rules) and the model is called as ``model(x_s, input_grid=G_s)``, which moves them
    back onto G_0 (the ``galerkin`` transfer). The parameters are the model's own, trained in
    place (``at_resolution`` would train a copy): what is trained across resolutions is the
    input side. A scale < 1 gives the model inputs that lost detail, which is what makes it
    robust at low resolution; a scale > 1 gives finer samples of the same interpolant, averaged back
    onto G_0. The targets, the loss and the validation pass are those at the training
    resolution. ``callbacks`` see the scale of the last batch as ``state.batch["scale"]``.
    Not with ``turnpike`` or ``compile="cuda-graphs"``.

    Args:
        model: the model, trained in place (moved to ``device``).
        train: training data, x ``[N, in]`` and y ``[N]`` (labels) or ``[N, m]`` (targets).
        val: validation data of the same kind, evaluated after every epoch (or None).
        epochs: the number of epochs in all (a resumed run counts those already done).
        batch_size: the global mini-batch size.
        optimizer: a name of [`OPTIMIZERS`][spacetime_nets.training.OPTIMIZERS], an Optimizer or a
            callable params -> Optimizer.
        lr: the learning rate of a named optimiser (also applied on resume).
        loss: a name of ``objectives.LOSSES`` (None: chosen from the targets).
        p: the exponent of the ``lp`` loss.
        lam: the weight of the control cost int_0^T |u|^2 dt (>= 0).
        turnpike: the weight of int_0^T E(x(t)) dt, or None.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a torch.device.
        out_dir: the run folder for checkpoints and history files (None: nothing written).
        resume: a checkpoint file or run folder to continue.
        callbacks: [`Callback`][spacetime_nets.training.Callback] objects or callables (called after
            every epoch).
        seed: the shuffling seed (epoch e uses seed + e).
        progress: show a progress bar per epoch.
        checkpoint_every: epochs between ``last.pt`` writes.
        grad_clip: the largest gradient norm, or None.
        lr_schedule: None / ``"constant"`` or ``"cosine"``.
        compile: None (eager), a ``torch.compile`` mode (``"default"``, ``"reduce-overhead"``
            ...) or ``"cuda-graphs"`` (forward and backward recorded per input shape on CUDA;
            eager elsewhere), for the objective's forward and backward
            ([`compile_model`][spacetime_nets.accel.compile_model]).
        precision: ``"fp32"`` or ``"bf16"`` (autocast; parameters and grids stay float32,
            [`mixed_precision`][spacetime_nets.accel.mixed_precision]).
        resolutions: a non-empty list of positive scales of the input size, one drawn per
            batch (None: every batch as it is stored).
        weight_decay: the named optimiser's weight decay (>= 0; see above).
        normalize: fit the model's scalar normalisers on ``train`` before the first step.

    Returns:
        The [`History`][spacetime_nets.training.History] (one record per epoch, including resumed
            ones).
    """
    opts = _Options(
        epochs=check_int("epochs", epochs, 1),
        batch_size=check_int("batch_size", batch_size, 1),
        optimizer=optimizer,
        lr=check_real("lr", lr, positive=True),
        loss="",
        p=p,
        lam=check_real("lam", lam),
        turnpike=None if turnpike is None else check_real("turnpike", turnpike),
        out_dir=check_path("out_dir", out_dir),
        seed=check_seed("seed", seed),
        progress=check_bool("progress", progress),
        checkpoint_every=check_int("checkpoint_every", checkpoint_every, 1),
        grad_clip=None if grad_clip is None else check_real("grad_clip", grad_clip, True),
        lr_schedule=check_choice(
            "lr_schedule", "constant" if lr_schedule is None else lr_schedule, LR_SCHEDULES
        ),
        compile=check_compile_mode(compile, "compile"),
        precision=check_precision(precision),
        resolutions=check_resolutions(resolutions),
        weight_decay=check_real("weight_decay", weight_decay),
        normalize=check_bool("normalize", normalize),
    )
    if resume is not None:
        check_path("resume", resume)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if turnpike is not None and not (hasattr(model, "trajectory") and hasattr(model, "readout")):
        raise ValueError("turnpike: the model needs trajectory(x) and readout(final)")
    if lam and not hasattr(model, "controls"):
        raise ValueError("lam: the control penalty needs a model with controls() (a flow model)")
    if opts.resolutions is not None:
        check_model(model)
        if turnpike is not None:
            raise ValueError(
                "resolutions: not with turnpike (the turnpike cost reads the trajectory of "
                "inputs on the model's first grid)"
            )
        if opts.compile == GRAPH_MODE:
            raise ValueError(
                "resolutions: not with compile='cuda-graphs' (its graphs take tensors only); "
                "use a torch.compile mode or none"
            )
    cbs = as_callbacks(callbacks)
    train_data = Data(train, "train")
    val_data = Data(val, "val") if val is not None else None
    loss, p = resolve_loss(loss, train_data.peek_targets(), p)
    opts = _replace(opts, loss=loss, p=p)
    out_features = model_outputs(model)
    for d in (train_data, val_data):
        if d is not None:
            check_data(d, model_dtype(model), out_features, loss)
    resume_doc = load_checkpoint(resume) if resume is not None else None
    if opts.normalize:
        if not hasattr(model, "set_normalizers"):
            raise ValueError(
                f"normalize: the model ({type(model).__name__}) has no scalar normalisers "
                "(set_normalizers); SpaceTimeNet and NeuralODE have them, or standardise the "
                "data yourself"
            )
        model.set_normalizers(*normalizer_stats(train_data))

    dev = resolve_device(device)
    rank, world, dev, created = setup_distributed(dev)
    try:
        if opts.batch_size % world:
            raise ValueError(
                f"batch_size: the global batch {opts.batch_size} must be divisible by the "
                f"number of processes {world}"
            )
        trainer = _Trainer(model, train_data, val_data, opts, cbs, dev, rank, world)
        if resume_doc is not None:
            trainer.restore(resume_doc, str(resume))
        return trainer.run()
    finally:
        teardown_distributed(created)


def _replace(opts: _Options, **kw: Any) -> _Options:
    from dataclasses import replace

    return replace(opts, **kw)


class _Trainer:
    """The state of one run and its stages. ``run`` is the loop over epochs."""

    def __init__(
        self,
        model: nn.Module,
        train: Data,
        val: Data | None,
        opts: _Options,
        callbacks: list[Callback],
        dev: torch.device,
        rank: int,
        world: int,
    ) -> None:
        self.opts, self.callbacks, self.dev, self.rank, self.world = (
            opts,
            callbacks,
            dev,
            rank,
            world,
        )
        self.model, self.train, self.val = model, train, val
        digest = data_digest(train)
        model.to(dev)
        self.dtype = model_dtype(model)
        train.to(dev)
        self.opt = make_optimizer(opts.optimizer, model, opts.lr, opts.weight_decay)
        self.base_lrs = [g["lr"] for g in self.opt.param_groups]
        self.meta = {
            "seed": opts.seed,
            "batch_size": opts.batch_size,
            "world_size": world,
            "loss": opts.loss,
            "lam": opts.lam,
            "turnpike": opts.turnpike,
            "epochs": opts.epochs,
            "lr_schedule": opts.lr_schedule,
            "model_class": type(model).__name__,
            "optimizer": type(self.opt).__name__,
            "lr": self.base_lrs[0],
            "model_summary": model_summary(model),
            "data_rows": len(train),
            "data_digest": digest,
            "resolutions": opts.resolutions,
            "weight_decay": opts.weight_decay,
            "normalize": opts.normalize,
        }
        self.history = History()
        self.done_epochs, self.step, self.skip, self.partial = 0, 0, 0, empty_partial()
        self.local_batch = opts.batch_size // world
        shard = len(train) if world == 1 else math.ceil(len(train) / world)
        self.steps_per_epoch = math.ceil(shard / self.local_batch)
        self.total_steps = opts.epochs * self.steps_per_epoch
        self.writer = rank == 0 and opts.out_dir is not None
        self.last_good: str | None = None
        self.objective = wrap_data_parallel(
            Objective(model, opts.loss, opts.p, opts.lam, opts.turnpike), dev, world
        )
        if opts.compile == GRAPH_MODE and world > 1:
            raise ValueError("compile: 'cuda-graphs' is for one process; use 'reduce-overhead'")
        self.objective = compile_model(self.objective, opts.compile)
        self.precision = mixed_precision(opts.precision, dev, model)
        self.classify = is_class_labels(train.peek_targets())
        self.multires: MultiResolution | None = None
        self.scales: torch.Tensor | None = None  # the scale index of each step of the epoch
        if opts.resolutions is not None:
            self.multires = MultiResolution(model, opts.resolutions, dev, self.dtype)
            self.multires.check_input(train.raw(torch.arange(1))[0])
        # the trivial predictors' scores on val, once (regression targets only)
        self.baselines: dict = {}
        if val is not None and rank == 0 and not self.classify:
            self.baselines = baselines(train, val, opts.loss, opts.p)

    # ---------------------------------------------------------------------------- resume

    def restore(self, doc: dict, path: str) -> None:
        """Continue from a checkpoint: refuse what would silently train another problem,
        apply the new learning rate, restore counters, history and random states."""
        old, new = doc["meta"], self.meta
        check_compatible(old, new, self.model, doc["model"], path)
        load_state_into(self.model, doc["model"], f"resume: {path}")
        if doc["optimizer"] is not None:
            try:
                self.opt.load_state_dict(doc["optimizer"])
            except (ValueError, KeyError, RuntimeError, TypeError) as exc:
                raise ValueError(
                    f"resume: the optimiser state does not fit ({first_line(exc)})"
                ) from None
            for group, base in zip(self.opt.param_groups, self.base_lrs):
                group["lr"] = base  # the rate asked for now, not the stored one
        if old.get("lr") is not None and old["lr"] != new["lr"]:
            warnings.warn(
                f"resume: learning rate {old['lr']:g} -> {new['lr']:g} (the new rate is applied)",
                stacklevel=4,
            )
        # a checkpoint written before resolutions / weight_decay existed had neither
        old = {"resolutions": None, "weight_decay": 0.0, **old}
        for key in ("seed", "batch_size", "loss", "lam", "turnpike", "resolutions", "weight_decay"):
            if key in old and old[key] != new[key]:
                warnings.warn(
                    f"resume: {key} was {old[key]!r} in the checkpoint and is {new[key]!r} "
                    "now; the run will not match an uninterrupted one",
                    stacklevel=4,
                )
        epoch, step, skip = doc["epoch"], doc["step"], doc["step_in_epoch"]
        if skip > self.steps_per_epoch:  # equal: interrupted after the epoch's last step
            raise ValueError(
                f"resume: {path} is at step {skip} of an epoch that has {self.steps_per_epoch} "
                "steps (inconsistent counters or another batch size)"
            )
        if epoch >= self.opts.epochs:
            raise ValueError(
                f"epochs: {path} has already finished {epoch} epochs; ask for more than {epoch} "
                "to train further"
            )
        self.done_epochs, self.step, self.skip = epoch, step, skip
        self.partial = {**empty_partial(), **doc["partial"]}
        self.history = History(doc["history"])
        set_rng_state(doc["rng"])
        self.last_good = path

    # ---------------------------------------------------------------------------- the loop

    def run(self) -> History:
        """Train the remaining epochs; returns the history."""
        out = self.opts.out_dir
        if self.writer:
            out.mkdir(parents=True, exist_ok=True)
        self.state = TrainState(
            model=self.model,
            optimizer=self.opt,
            epochs=self.opts.epochs,
            epoch=self.done_epochs,
            step=self.step,
            history=self.history,
            rank=self.rank,
            world_size=self.world,
            out_dir=out,
        )
        if self.writer and self.history.records:
            # a resumed run: the history files say what the checkpoint holds (a run killed
            # between the checkpoint and the history files left them one epoch behind)
            self.history.save(out)
        for cb in self.callbacks:
            cb.on_train_start(self.state)
        self.model.train()
        try:
            while self.done_epochs < self.opts.epochs and not self.state.stop:
                self._epoch(self.done_epochs)
        except KeyboardInterrupt as exc:
            if self.writer and _weights_finite(self.model):
                exc.checkpoint = str(self._snapshot(out / "interrupted.pt"))
                self.history.save(out)
            raise
        if self.writer:
            remove_stale_interrupt(out / "interrupted.pt", self.step)
        for cb in self.callbacks:
            cb.on_train_end(self.state)
        return self.history

    def _epoch(self, e: int) -> None:
        """Epoch ``e`` (0-based; shuffle seed = seed + e), from step ``skip`` on."""
        opts, state = self.opts, self.state
        order = epoch_order(len(self.train), opts.seed, e, self.rank, self.world)
        lb = self.local_batch
        batches = [order[i : i + lb] for i in range(0, len(order), lb)]
        if self.multires is not None:  # the same on every process: drawn after randperm(N)
            n_scales = len(self.multires.levels)
            self.scales = epoch_scales(len(self.train), opts.seed, e, len(batches), n_scales)
        state.epoch, state.steps_per_epoch, state.step_in_epoch = e + 1, len(batches), self.skip
        for cb in self.callbacks:
            cb.on_epoch_start(state)
        bar = progress_bar(
            opts.progress and self.rank == 0, len(batches), self.skip, e, opts.epochs
        )
        t0 = time.perf_counter() - self.partial["time"]
        try:
            for j in range(self.skip, len(batches)):
                self._step(e, j, batches[j], t0, bar)
            record = self._record(e, t0)
            if bar is not None:
                bar.set_postfix(postfix_record(record), refresh=True)
        finally:
            if bar is not None:
                bar.close()
        with defer_sigint():
            self.history.append(record)
            self.done_epochs, self.skip, self.partial = e + 1, 0, empty_partial()
        for cb in self.callbacks:
            cb.on_epoch_end(state)
        if self.writer:
            done = self.done_epochs
            if done % opts.checkpoint_every == 0 or done == opts.epochs or state.stop:
                if not _weights_finite(self.model):
                    self.history.save(opts.out_dir)
                    raise TrainingDiverged(
                        done, len(batches), self.step, float("nan"), self.last_good, "weights"
                    )
                # last.pt first, then the history files, with Ctrl-C held until both are
                # written: the checkpoint (which holds the history too) is never behind
                # history.json, and an interrupt cannot fall between the two
                with defer_sigint():
                    self.last_good = str(self._snapshot(opts.out_dir / "last.pt"))
                    self.history.save(opts.out_dir)
            else:
                self.history.save(opts.out_dir)

    def _step(self, e: int, j: int, idx: torch.Tensor, t0: float, bar: Any) -> None:
        """One optimiser step on the rows ``idx``; nothing changes when J is not finite."""
        opts, opt, model = self.opts, self.opt, self.model
        x, y = self.train.batch(idx, self.dev, self.dtype)
        grids: dict = {}
        if self.multires is not None:
            level = int(self.scales[j])
            x, grids = self.multires.resample(x, level)
        opt.zero_grad(set_to_none=True)
        with self.precision:
            total, risk, pen, tp, out = self.objective(x, y, **grids)
        classify = is_class_labels(y) and out.dim() == 2
        correct = (out.argmax(-1) == y).sum() if classify else risk.new_zeros(())
        stats = torch.stack(
            [
                total.detach(),
                risk.detach() * len(y),
                risk.new_tensor(float(len(y))),
                correct.to(risk.dtype),
                pen.detach(),
                tp.detach(),
            ]
        ).double()
        all_reduce_sum(stats, self.world)
        value = float(stats[0]) / self.world
        if not math.isfinite(value):
            raise TrainingDiverged(e + 1, j + 1, self.step + 1, value, self.last_good)
        total.backward()
        if opts.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), opts.grad_clip)
        set_lr(opt, self.base_lrs, opts.lr_schedule, self.step, self.total_steps)
        partial = self.partial
        with defer_sigint():
            opt.step()
            self.step, self.skip = self.step + 1, j + 1
            partial["risk_sum"] += float(stats[1])
            partial["count"] += int(stats[2])
            partial["correct"] += int(stats[3])
            partial["penalty_sum"] += float(stats[4]) / self.world
            partial["turnpike_sum"] += float(stats[5]) / self.world
            partial["steps"] += 1
            partial["time"] = time.perf_counter() - t0
        state = self.state
        state.step, state.step_in_epoch = self.step, self.skip
        state.batch = {"loss": value, "risk": float(stats[1] / stats[2]), "size": len(y)}
        if self.multires is not None:
            state.batch["scale"] = self.multires.resolutions[level]
        if bar is not None:
            bar.update(1)
            bar.set_postfix(postfix(partial, classify=is_class_labels(y)), refresh=False)
        for cb in self.callbacks:
            cb.on_batch_end(state)

    def _record(self, e: int, t0: float) -> dict:
        """The history record of epoch ``e`` (with the validation pass)."""
        record = epoch_record(e + 1, self.step, self.partial, time.perf_counter() - t0)
        record["lr"] = float(self.opt.param_groups[0]["lr"])
        if not self.classify:
            record["accuracy"] = None
        if self.val is not None:
            bs = max(self.local_batch, 1024)
            v = evaluate_checked(self.model, self.val, self.opts.loss, bs, self.dev, self.opts.p)
            record["val_loss"], record["val_accuracy"] = v["loss"], v["accuracy"]
            record["val_rel_l2"] = v["rel_l2"]
            record["val_zero_loss"] = self.baselines.get("zero_loss")
            record["val_mean_rel_l2"] = self.baselines.get("mean_rel_l2")
        with torch.no_grad():
            has = hasattr(self.model, "controls")
            record["control"] = float(l2_control(self.model)) if has else None
        return record

    def _snapshot(self, path: Path) -> Path:
        return save_checkpoint(
            path,
            self.model,
            self.opt,
            epoch=self.done_epochs,
            step=self.step,
            step_in_epoch=self.skip,
            partial=self.partial,
            history=self.history,
            meta=self.meta,
        )


def _weights_finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters() if p.is_floating_point())
