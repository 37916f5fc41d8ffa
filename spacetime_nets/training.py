"""Training: the fit loop, progress, history, safe checkpoints, exact resume, data parallel.

:func:`fit` minimises the objective of MATH section 2 by mini-batch gradient steps,

    J = E(x(T)) + lam * int_0^T |u(t)|^2 dt  [+ weight * int_0^T E(x(t)) dt]

with the empirical risk E of :mod:`spacetime_nets.objectives` on each batch, the control cost
:func:`~spacetime_nets.objectives.l2_control` as an explicit penalty (never optimiser weight
decay) and, optionally, the turnpike integral computed from one ``model.trajectory(x)`` pass.

Reproducibility: the samples are shuffled with a ``torch.Generator`` seeded with
``seed + epoch`` (the rule of ``DistributedSampler``), so the order of an epoch does not depend
on what happened before it. A checkpoint holds the parameters, the optimiser state, the
counters, the random states and the history, so ``resume=`` continues to exactly the
parameters of an uninterrupted run.

Checkpoints hold only tensors and plain Python data and are read with
``torch.load(weights_only=True)``: a file that is truncated, tampered with or of another kind
is refused with a ValueError and nothing in it is executed.

Under ``torchrun`` (``WORLD_SIZE > 1``) the model is wrapped in ``DistributedDataParallel``;
``batch_size`` is the global batch, split evenly over the processes.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import pickle
import random
import signal
import tempfile
import threading
import time
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset, default_collate

from .objectives import LOSSES, empirical_risk, l2_control, turnpike_cost

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
    "evaluate",
    "fit",
    "load_checkpoint",
    "load_model_state",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "spacetime-nets/checkpoint"
CHECKPOINT_VERSION = 1
OPTIMIZERS = ("adam", "sgd", "rmsprop")
LR_SCHEDULES = ("constant", "cosine")
HISTORY_FIELDS = (
    "epoch",
    "step",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "penalty",
    "turnpike",
    "control",
    "lr",
    "time",
)
_REQUIRED_KEYS = (
    "format",
    "version",
    "model",
    "optimizer",
    "epoch",
    "step",
    "step_in_epoch",
    "partial",
    "rng",
    "history",
    "meta",
)


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------


class TrainingDiverged(RuntimeError):
    """The training objective became NaN or infinite. No step was taken with it and no
    checkpoint was written after it; ``checkpoint`` is the last good one (or None)."""

    def __init__(
        self,
        epoch: int,
        step: int,
        global_step: int,
        value: float,
        checkpoint: str | None = None,
    ) -> None:
        self.epoch, self.step, self.global_step = epoch, step, global_step
        self.value, self.checkpoint = value, checkpoint
        where = f"last good checkpoint: {checkpoint}" if checkpoint else "no checkpoint written"
        super().__init__(
            f"training diverged: the loss is {value} at epoch {epoch}, step {step} "
            f"(global step {global_step}); stopped before the update; {where}"
        )


class History:
    """One record per finished epoch, a dict with the keys :data:`HISTORY_FIELDS`:

    ``epoch`` (1-based), ``step`` (optimiser steps so far), ``loss`` (mean empirical risk on
    the training batches of the epoch), ``accuracy`` (training, classification only),
    ``val_loss`` / ``val_accuracy`` (after the epoch; None without validation data),
    ``penalty`` (mean of lam * int |u|^2 over the epoch's steps), ``turnpike`` (mean of
    weight * int E(x(t)) dt), ``control`` (int_0^T |u|^2 dt after the epoch), ``lr`` (the
    learning rate of the epoch's last step) and ``time`` (seconds). ``history["loss"]`` is a
    column, ``history[-1]`` a record.
    """

    fields = HISTORY_FIELDS

    def __init__(self, records: Iterable[dict] | None = None) -> None:
        self.records: list[dict] = [dict(r) for r in (records or [])]

    def append(self, record: dict) -> None:
        self.records.append(dict(record))

    def column(self, name: str) -> list:
        """The values of one field, epoch by epoch."""
        if name not in self.fields:
            raise ValueError(f"name: expected one of {', '.join(self.fields)}; got {name!r}")
        return [r.get(name) for r in self.records]

    @property
    def last(self) -> dict | None:
        return self.records[-1] if self.records else None

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.records)

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return self.column(key)
        return self.records[key]

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write ``{"fields": [...], "records": [...]}`` (non-finite numbers as null)."""
        doc = {"fields": list(self.fields), "records": [_json_safe(r) for r in self.records]}
        return _atomic_write_text(Path(path), json.dumps(doc, indent=1))

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write one row per epoch, the columns :data:`HISTORY_FIELDS` (None as empty)."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(self.fields), lineterminator="\n")
        writer.writeheader()
        for r in self.records:
            writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in self.fields})
        return _atomic_write_text(Path(path), buf.getvalue())

    def save(self, out_dir: str | os.PathLike) -> None:
        """``history.json`` and ``history.csv`` in ``out_dir``."""
        out = Path(out_dir)
        self.to_json(out / "history.json")
        self.to_csv(out / "history.csv")

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> History:
        try:
            doc = json.loads(Path(path).read_text())
            records = doc["records"]
            if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
                raise TypeError
        except (OSError, ValueError, KeyError, TypeError):
            raise ValueError(f"{path}: not a history.json file") from None
        return cls(records)

    def __repr__(self) -> str:
        last = self.last
        tail = f", last={_fmt_record(last)}" if last else ""
        return f"History(epochs={len(self)}{tail})"


@dataclass
class TrainState:
    """What callbacks see. ``epoch`` is the current (1-based) epoch, ``step`` the number of
    optimiser steps taken so far, ``step_in_epoch`` those of the current epoch; ``batch``
    holds the last batch's ``loss`` (objective), ``risk``, ``size``. Set ``stop = True`` to end
    training after the current epoch."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    epochs: int
    epoch: int = 0
    step: int = 0
    step_in_epoch: int = 0
    steps_per_epoch: int = 0
    history: History = field(default_factory=History)
    batch: dict = field(default_factory=dict)
    rank: int = 0
    world_size: int = 1
    out_dir: Path | None = None
    stop: bool = False


class Callback:
    """Hooks called by :func:`fit` with the :class:`TrainState`; override any of them.
    A plain callable given as a callback is called at the end of every epoch."""

    def on_train_start(self, state: TrainState) -> None: ...

    def on_epoch_start(self, state: TrainState) -> None: ...

    def on_batch_end(self, state: TrainState) -> None: ...

    def on_epoch_end(self, state: TrainState) -> None: ...

    def on_train_end(self, state: TrainState) -> None: ...


class _CallableCallback(Callback):
    def __init__(self, fn: Callable[[TrainState], Any]) -> None:
        self.fn = fn

    def on_epoch_end(self, state: TrainState) -> None:
        self.fn(state)


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


class _Data:
    """Uniform access to (x, y) pairs, ``Split`` objects and torch Datasets."""

    def __init__(self, data: Any, name: str) -> None:
        self.x = self.y = None
        self.dataset = None
        if isinstance(data, TensorDataset) and len(data.tensors) == 2:
            data = tuple(data.tensors)
        elif (
            not isinstance(data, (tuple, list))
            and isinstance(getattr(data, "x", None), torch.Tensor)
            and isinstance(getattr(data, "y", None), torch.Tensor)
        ):
            data = (data.x, data.y)
        if isinstance(data, (tuple, list)):
            if len(data) != 2 or not all(isinstance(t, torch.Tensor) for t in data):
                raise ValueError(f"{name}: expected a pair of tensors (x, y), a Split or a Dataset")
            x, y = data
            if x.dim() == 0 or y.dim() == 0 or x.shape[0] != y.shape[0]:
                raise ValueError(
                    f"{name}: x and y need the same number of rows, got shapes "
                    f"{tuple(x.shape)} and {tuple(y.shape)}"
                )
            self.x, self.y = x, y
            self.n = int(x.shape[0])
        elif isinstance(data, Dataset) and hasattr(data, "__len__"):
            self.dataset = data
            self.n = len(data)
        else:
            raise ValueError(
                f"{name}: expected (x, y) tensors, a datasets.Split or a sized torch Dataset, "
                f"got {type(data).__name__}"
            )
        if self.n == 0:
            raise ValueError(f"{name}: the data set is empty")

    def __len__(self) -> int:
        return self.n

    def peek_targets(self) -> torch.Tensor:
        if self.y is not None:
            return self.y[:1]
        return torch.as_tensor(self.dataset[0][1]).unsqueeze(0)

    def to(self, device: torch.device) -> _Data:
        if self.x is not None:
            self.x, self.y = self.x.to(device), self.y.to(device)
        return self

    def batch(
        self, idx: torch.Tensor, device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.x is not None:
            i = idx.to(self.x.device)
            x, y = self.x[i], self.y[i]
        else:
            x, y = default_collate([self.dataset[int(j)] for j in idx])[:2]
        return _cast(x, device, dtype), _cast(y, device, dtype)


def _cast(t: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    t = torch.as_tensor(t)
    if t.is_floating_point():
        return t.to(device=device, dtype=dtype)
    return t.to(device=device, dtype=torch.long)


class _Sized:
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def _is_class_labels(y: torch.Tensor) -> bool:
    return not y.is_floating_point() and not y.is_complex() and y.dtype != torch.bool


def _resolve_loss(loss: str | None, y: torch.Tensor, p: float | None) -> str:
    if loss is None:
        return "cross_entropy" if _is_class_labels(y) else "mse"
    if loss not in LOSSES:
        raise ValueError(f"loss: expected one of {', '.join(LOSSES)}; got {loss!r}")
    if loss == "lp" and (p is None or not p >= 1):
        raise ValueError(f"p: the l^p-distance loss needs p >= 1, got {p!r}")
    return loss


# --------------------------------------------------------------------------------------------
# the objective
# --------------------------------------------------------------------------------------------


class _Objective(nn.Module):
    """forward(x, y) -> (J, risk, lam * penalty, weight * turnpike, outputs ``[B, m]``)."""

    def __init__(
        self, model: nn.Module, loss: str, p: float | None, lam: float, turnpike: float | None
    ) -> None:
        super().__init__()
        self.model = model
        self.loss, self.p, self.lam, self.turnpike = loss, p, lam, turnpike

    def forward(self, x: torch.Tensor, y: torch.Tensor):
        model = self.model
        zero = x.new_zeros(())
        if self.turnpike is not None:
            traj = model.trajectory(x)
            out = model.readout(traj.final)
            tp = self.turnpike * turnpike_cost(model, x, y, self.loss, self.p, trajectory=traj)
        else:
            out = model(x)
            tp = zero
        risk = empirical_risk(out, y, self.loss, self.p)
        pen = self.lam * l2_control(model) if self.lam else zero
        return risk + pen + tp, risk, pen, tp, out


def _make_optimizer(optimizer: Any, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model: it has no trainable parameters")
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if isinstance(optimizer, str):
        if optimizer == "adam":
            return torch.optim.Adam(params, lr=lr)
        if optimizer == "sgd":
            return torch.optim.SGD(params, lr=lr)
        if optimizer == "rmsprop":
            return torch.optim.RMSprop(params, lr=lr)
        raise ValueError(
            f"optimizer: expected one of {', '.join(OPTIMIZERS)}, a torch.optim.Optimizer or a "
            f"callable params -> optimizer; got {optimizer!r}"
        )
    if callable(optimizer):
        opt = optimizer(params)
        if not isinstance(opt, torch.optim.Optimizer):
            raise ValueError(
                f"optimizer: the callable must return a torch.optim.Optimizer, got "
                f"{type(opt).__name__}"
            )
        return opt
    raise ValueError(f"optimizer: expected a name, an Optimizer or a callable, got {optimizer!r}")


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Any,
    loss: str | None = None,
    batch_size: int = 1024,
    device: str | torch.device | None = None,
    p: float | None = None,
) -> dict:
    """Mean loss and accuracy of ``model`` on ``data`` (x ``[N, in]``, y ``[N]`` labels or
    ``[N, m]`` targets; a pair, a Split or a Dataset), in batches, without gradients.

    Returns ``{"loss": float, "accuracy": float | None, "n": N}``; accuracy is the fraction of
    argmax predictions equal to the label (None for regression targets). ``loss`` defaults to
    cross_entropy for integer labels and mse otherwise. The model's mode is restored after.
    """
    data = _Data(data, "data")
    batch_size = _check_int("batch_size", batch_size, 1)
    if device is None:
        device = _model_device(model)
    device = torch.device(device)
    dtype = _model_dtype(model)
    loss = _resolve_loss(loss, data.peek_targets(), p)
    was_training = model.training
    model.eval()
    total, correct, classes = 0.0, 0, None
    try:
        for s in range(0, len(data), batch_size):
            idx = torch.arange(s, min(s + batch_size, len(data)))
            x, y = data.batch(idx, device, dtype)
            out = model(x)
            total += float(empirical_risk(out, y, loss, p)) * len(idx)
            if classes is None:
                classes = _is_class_labels(y) and out.dim() == 2
            if classes:
                correct += int((out.argmax(-1) == y).sum())
    finally:
        model.train(was_training)
    n = len(data)
    return {"loss": total / n, "accuracy": correct / n if classes else None, "n": n}


# --------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    epoch: int = 0,
    step: int = 0,
    step_in_epoch: int = 0,
    partial: dict | None = None,
    history: History | Sequence[dict] | None = None,
    meta: dict | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary file in the same folder, then ``os.replace``):
    the model's ``state_dict``, the optimiser's, ``epoch`` (finished epochs), ``step`` (optimiser
    steps), ``step_in_epoch`` and ``partial`` (running sums of an unfinished epoch), the random
    states (torch, CUDA, Python, NumPy) as tensors, the history as a list of dicts, ``meta``
    (plain data), a format tag and a version. Only tensors and plain data are stored."""
    records = history.records if isinstance(history, History) else list(history or [])
    doc = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model": _unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "epoch": int(epoch),
        "step": int(step),
        "step_in_epoch": int(step_in_epoch),
        "partial": dict(partial or {}),
        "rng": _rng_state(),
        "history": [_json_safe(r) for r in records],
        "meta": dict(meta or {}),
    }
    return _atomic_save(doc, Path(path))


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Read and validate a checkpoint written by :func:`save_checkpoint` (a folder means its
    ``last.pt``). Uses ``torch.load(weights_only=True)``: no code in the file is run. A missing
    file raises FileNotFoundError; a truncated, tampered or foreign file raises ValueError."""
    p = _checkpoint_path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. the unpickler's notes on foreign files
            doc = torch.load(p, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError, zipfile.BadZipFile) as exc:
        raise ValueError(
            f"{p}: not a valid spacetime-nets checkpoint (unreadable, truncated or holding "
            f"objects other than tensors and plain data: {_first_line(exc)})"
        ) from None
    except Exception as exc:  # any other failure of the restricted unpickler
        raise ValueError(
            f"{p}: not a valid spacetime-nets checkpoint ({type(exc).__name__}: {_first_line(exc)})"
        ) from None
    _validate_checkpoint(doc, p)
    return doc


def load_model_state(model: nn.Module, path: str | os.PathLike) -> dict:
    """Load the parameters and buffers of a checkpoint into ``model`` (built with the same
    construction arguments and schedule); returns the validated checkpoint dict."""
    doc = load_checkpoint(path, map_location=_model_device(model))
    try:
        _unwrap(model).load_state_dict(doc["model"])
    except RuntimeError as exc:
        msg = " ".join(str(exc).split())
        raise ValueError(
            f"{_checkpoint_path(path)}: the checkpoint does not fit this model ({msg[:300]})"
        ) from None
    return doc


def _checkpoint_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / "last.pt"
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    return p


def _validate_checkpoint(doc: Any, p: Path) -> None:
    bad = f"{p}: not a spacetime-nets checkpoint"
    if not isinstance(doc, dict):
        raise ValueError(f"{bad} (expected a dict, found {type(doc).__name__})")
    if doc.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{bad} (format tag {doc.get('format')!r:.60})")
    if not isinstance(doc.get("version"), int) or doc["version"] > CHECKPOINT_VERSION:
        raise ValueError(
            f"{p}: checkpoint version {doc.get('version')!r:.20} is not supported "
            f"(this library reads up to {CHECKPOINT_VERSION})"
        )
    missing = [k for k in _REQUIRED_KEYS if k not in doc]
    if missing:
        raise ValueError(f"{p}: damaged checkpoint, missing {', '.join(missing)}")
    state = doc["model"]
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise ValueError(f"{p}: damaged checkpoint (model state is not a dict of named values)")
    for k, v in state.items():
        if not isinstance(v, torch.Tensor) and not k.endswith("_extra_state"):
            raise ValueError(f"{p}: damaged checkpoint (model entry {k!r} is not a tensor)")
    for k in ("epoch", "step", "step_in_epoch"):
        if not isinstance(doc[k], int) or isinstance(doc[k], bool) or doc[k] < 0:
            raise ValueError(f"{p}: damaged checkpoint ({k} = {doc[k]!r:.40})")
    if doc["optimizer"] is not None and not isinstance(doc["optimizer"], dict):
        raise ValueError(f"{p}: damaged checkpoint (optimizer state is not a dict)")
    if not isinstance(doc["history"], list) or not all(isinstance(r, dict) for r in doc["history"]):
        raise ValueError(f"{p}: damaged checkpoint (history is not a list of records)")
    for k in ("partial", "rng", "meta"):
        if not isinstance(doc[k], dict):
            raise ValueError(f"{p}: damaged checkpoint ({k} is not a dict)")


def _atomic_save(obj: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def _atomic_write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def _rng_state() -> dict:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    version, words, gauss = random.getstate()
    state["python"] = torch.tensor(words, dtype=torch.int64)
    state["python_version"] = int(version)
    state["python_gauss"] = gauss
    try:
        import numpy as np

        name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (the global state)
        state["numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
        state["numpy_pos"], state["numpy_has_gauss"] = int(pos), int(has_gauss)
        state["numpy_cached_gaussian"] = float(cached)
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    return state


def _set_rng_state(state: dict) -> None:
    try:
        if "torch" in state:
            torch.set_rng_state(state["torch"].cpu())
        if "cuda" in state and torch.cuda.is_available():
            cuda = list(state["cuda"])
            if len(cuda) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(cuda)
        if "python" in state:
            words = tuple(int(v) for v in state["python"].tolist())
            random.setstate((state["python_version"], words, state["python_gauss"]))
        if "numpy" in state:
            import numpy as np

            np.random.set_state(  # noqa: NPY002 (the global state)
                (
                    "MT19937",
                    state["numpy"].numpy().astype(np.uint32),
                    state["numpy_pos"],
                    state["numpy_has_gauss"],
                    state["numpy_cached_gaussian"],
                )
            )
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"checkpoint: damaged random state ({_first_line(exc)})") from None


# --------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------


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
) -> History:
    """Train ``model`` in place on ``train`` (x ``[N, in]``, y ``[N]`` class labels or
    ``[N, m]`` targets: a pair of tensors, a ``datasets.Split`` or a torch Dataset) for
    ``epochs`` epochs of shuffled mini-batches of ``batch_size`` (the global batch).

    Each step minimises E(outputs, y) + lam * int_0^T |u|^2 dt (+ turnpike * int_0^T E(x(t)) dt,
    trapezoid in t, from one ``model.trajectory(x)`` pass with outputs = readout(final)).
    ``loss`` is a name of ``objectives.LOSSES`` (default cross_entropy for integer labels, mse
    otherwise; ``p`` for ``lp``). ``optimizer``: "adam", "sgd", "rmsprop" (with ``lr``), an
    Optimizer over the model's parameters, or a callable params -> Optimizer.
    ``lr_schedule``: None / "constant", or "cosine" (decay to 0 over all the steps).

    With ``out_dir``: history.json / history.csv after every epoch, ``last.pt`` every
    ``checkpoint_every`` epochs and at the end (atomic writes); Ctrl-C writes ``interrupted.pt``
    with the state after the last completed step and re-raises. ``resume`` (a checkpoint or a
    run folder) continues to exactly the parameters of an uninterrupted run with the same seed.
    A NaN or infinite objective raises :class:`TrainingDiverged` before the update; no
    checkpoint is written after it. Under torchrun (WORLD_SIZE > 1) the model is trained with
    DistributedDataParallel, each process taking batch_size // world_size samples per step;
    only rank 0 writes files and shows progress.

    Returns the :class:`History` (one record per epoch, including resumed ones).
    """
    epochs = _check_int("epochs", epochs, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    checkpoint_every = _check_int("checkpoint_every", checkpoint_every, 1)
    seed = _check_int("seed", seed, 0)
    lr = _check_real("lr", lr, positive=True)
    lam = _check_real("lam", lam)
    if turnpike is not None:
        turnpike = _check_real("turnpike", turnpike)
    if grad_clip is not None:
        grad_clip = _check_real("grad_clip", grad_clip, positive=True)
    lr_schedule = "constant" if lr_schedule is None else lr_schedule
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(
            f"lr_schedule: expected None or one of {', '.join(LR_SCHEDULES)}; got {lr_schedule!r}"
        )
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if turnpike is not None and not (hasattr(model, "trajectory") and hasattr(model, "readout")):
        raise ValueError("turnpike: the model needs trajectory(x) and readout(final)")
    if lam and not hasattr(model, "controls"):
        raise ValueError("lam: the control penalty needs a model with controls() (a flow model)")
    cbs = [c if isinstance(c, Callback) else _as_callback(c) for c in callbacks]
    train_data = _Data(train, "train")
    val_data = _Data(val, "val") if val is not None else None
    loss = _resolve_loss(loss, train_data.peek_targets(), p)
    resume_doc = load_checkpoint(resume) if resume is not None else None

    dev = _resolve_device(device)
    rank, world, dev, created = _setup_distributed(dev)
    try:
        if batch_size % world:
            raise ValueError(
                f"batch_size: the global batch {batch_size} must be divisible by the number of "
                f"processes {world}"
            )
        return _fit(
            model,
            train_data,
            val_data,
            epochs=epochs,
            batch_size=batch_size,
            optimizer=optimizer,
            lr=lr,
            loss=loss,
            p=p,
            lam=lam,
            turnpike=turnpike,
            dev=dev,
            out_dir=Path(out_dir) if out_dir is not None else None,
            resume_doc=resume_doc,
            resume_path=str(resume) if resume is not None else None,
            callbacks=cbs,
            seed=seed,
            progress=progress,
            checkpoint_every=checkpoint_every,
            grad_clip=grad_clip,
            lr_schedule=lr_schedule,
            rank=rank,
            world=world,
        )
    finally:
        if created:
            import torch.distributed as dist

            dist.destroy_process_group()


def _fit(
    model: nn.Module,
    train: _Data,
    val: _Data | None,
    *,
    epochs: int,
    batch_size: int,
    optimizer: Any,
    lr: float,
    loss: str,
    p: float | None,
    lam: float,
    turnpike: float | None,
    dev: torch.device,
    out_dir: Path | None,
    resume_doc: dict | None,
    resume_path: str | None,
    callbacks: list[Callback],
    seed: int,
    progress: bool,
    checkpoint_every: int,
    grad_clip: float | None,
    lr_schedule: str,
    rank: int,
    world: int,
) -> History:
    model.to(dev)
    dtype = _model_dtype(model)
    train.to(dev)
    opt = _make_optimizer(optimizer, model, lr)
    base_lrs = [g["lr"] for g in opt.param_groups]  # before a resumed state overwrites them
    meta = {
        "seed": seed,
        "batch_size": batch_size,
        "world_size": world,
        "loss": loss,
        "lam": lam,
        "turnpike": turnpike,
        "epochs": epochs,
        "lr_schedule": lr_schedule,
        "model_class": type(model).__name__,
    }
    history = History()
    done_epochs, step, skip, partial = 0, 0, 0, _empty_partial()
    if resume_doc is not None:
        try:
            model.load_state_dict(resume_doc["model"])
        except RuntimeError as exc:
            msg = " ".join(str(exc).split())[:300]
            raise ValueError(f"resume: the checkpoint does not fit this model ({msg})") from None
        if resume_doc["optimizer"] is not None:
            try:
                opt.load_state_dict(resume_doc["optimizer"])
            except (ValueError, KeyError, RuntimeError) as exc:
                raise ValueError(
                    f"resume: the optimiser state does not fit ({_first_line(exc)})"
                ) from None
        old = resume_doc["meta"]
        for key in ("seed", "batch_size", "loss", "lam", "turnpike"):
            if key in old and old[key] != meta[key]:
                warnings.warn(
                    f"resume: {key} was {old[key]!r} in the checkpoint and is {meta[key]!r} now; "
                    "the run will not match an uninterrupted one",
                    stacklevel=3,
                )
        done_epochs, step = resume_doc["epoch"], resume_doc["step"]
        skip = resume_doc["step_in_epoch"]
        partial = {**_empty_partial(), **resume_doc["partial"]}
        history = History(resume_doc["history"])
        _set_rng_state(resume_doc["rng"])

    objective = _Objective(model, loss, p, lam, turnpike)
    if world > 1:
        import inspect

        from torch.nn.parallel import DistributedDataParallel

        # the grids are fixed buffers, equal on every rank: no need to sync them each step
        params = inspect.signature(DistributedDataParallel).parameters
        sync = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
        wrapped: nn.Module = DistributedDataParallel(
            objective, device_ids=[dev.index] if dev.type == "cuda" else None, **{sync: False}
        )
    else:
        wrapped = objective
    local_batch = batch_size // world
    shard = len(train) if world == 1 else math.ceil(len(train) / world)
    total_steps = epochs * math.ceil(shard / local_batch)
    writer = rank == 0 and out_dir is not None
    if writer:
        out_dir.mkdir(parents=True, exist_ok=True)
    last_good = str(out_dir / "last.pt") if writer and (out_dir / "last.pt").exists() else None
    if resume_path is not None and last_good is None:
        last_good = resume_path
    state = TrainState(
        model=model,
        optimizer=opt,
        epochs=epochs,
        epoch=done_epochs,
        step=step,
        history=history,
        rank=rank,
        world_size=world,
        out_dir=out_dir,
    )

    def snapshot(path: Path) -> None:
        save_checkpoint(
            path,
            model,
            opt,
            epoch=done_epochs,
            step=step,
            step_in_epoch=skip,
            partial=partial,
            history=history,
            meta=meta,
        )

    for cb in callbacks:
        cb.on_train_start(state)
    model.train()
    try:
        while done_epochs < epochs and not state.stop:
            e = done_epochs  # 0-based index of the running epoch; shuffle seed = seed + e
            order = _epoch_order(len(train), seed, e, rank, world)
            batches = [order[i : i + local_batch] for i in range(0, len(order), local_batch)]
            state.epoch, state.steps_per_epoch, state.step_in_epoch = e + 1, len(batches), skip
            for cb in callbacks:
                cb.on_epoch_start(state)
            bar = _progress_bar(progress and rank == 0, len(batches), skip, e + 1, epochs)
            t0 = time.perf_counter() - partial["time"]
            try:
                for j in range(skip, len(batches)):
                    x, y = train.batch(batches[j], dev, dtype)
                    opt.zero_grad(set_to_none=True)
                    total, risk, pen, tp, out = wrapped(x, y)
                    correct = (
                        (out.argmax(-1) == y).sum()
                        if _is_class_labels(y) and out.dim() == 2
                        else risk.new_zeros(())
                    )
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
                    if world > 1:
                        import torch.distributed as dist

                        dist.all_reduce(stats)
                    value = float(stats[0]) / world
                    if not math.isfinite(value):
                        raise TrainingDiverged(e + 1, j + 1, step + 1, value, last_good)
                    total.backward()
                    if grad_clip is not None:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                    _set_lr(opt, base_lrs, lr_schedule, step, total_steps)
                    with _defer_sigint():
                        opt.step()
                        step, skip = step + 1, j + 1
                        partial["risk_sum"] += float(stats[1])
                        partial["count"] += int(stats[2])
                        partial["correct"] += int(stats[3])
                        partial["penalty_sum"] += float(stats[4]) / world
                        partial["turnpike_sum"] += float(stats[5]) / world
                        partial["steps"] += 1
                        partial["time"] = time.perf_counter() - t0
                    state.step, state.step_in_epoch = step, skip
                    state.batch = {
                        "loss": value,
                        "risk": float(stats[1] / stats[2]),
                        "size": len(y),
                    }
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(
                            _postfix(partial, classify=_is_class_labels(y)), refresh=False
                        )
                    for cb in callbacks:
                        cb.on_batch_end(state)
                record = _epoch_record(e + 1, step, partial, time.perf_counter() - t0)
                record["lr"] = float(opt.param_groups[0]["lr"])
                classify = _is_class_labels(train.peek_targets())
                if not classify:
                    record["accuracy"] = None
                if val is not None:
                    v = evaluate(model, val, loss, max(local_batch, 1024), dev, p)
                    record["val_loss"], record["val_accuracy"] = v["loss"], v["accuracy"]
                with torch.no_grad():
                    record["control"] = (
                        float(l2_control(model)) if hasattr(model, "controls") else None
                    )
                if bar is not None:
                    bar.set_postfix(_postfix_record(record), refresh=True)
            finally:
                if bar is not None:
                    bar.close()
            with _defer_sigint():
                history.append(record)
                done_epochs, skip, partial = e + 1, 0, _empty_partial()
            for cb in callbacks:
                cb.on_epoch_end(state)
            if writer:
                history.save(out_dir)
                if done_epochs % checkpoint_every == 0 or done_epochs == epochs or state.stop:
                    snapshot(out_dir / "last.pt")
                    last_good = str(out_dir / "last.pt")
    except KeyboardInterrupt:
        if writer:
            snapshot(out_dir / "interrupted.pt")
            history.save(out_dir)
        raise
    for cb in callbacks:
        cb.on_train_end(state)
    return history


def _as_callback(c: Any) -> Callback:
    if not callable(c):
        raise ValueError(f"callbacks: expected Callback objects or callables, got {c!r}")
    return _CallableCallback(c)


def _empty_partial() -> dict:
    return {
        "risk_sum": 0.0,
        "count": 0,
        "correct": 0,
        "penalty_sum": 0.0,
        "turnpike_sum": 0.0,
        "steps": 0,
        "time": 0.0,
    }


def _epoch_record(epoch: int, step: int, partial: dict, seconds: float) -> dict:
    n, steps = max(partial["count"], 1), max(partial["steps"], 1)
    return {
        "epoch": epoch,
        "step": step,
        "loss": partial["risk_sum"] / n,
        "accuracy": partial["correct"] / n,
        "val_loss": None,
        "val_accuracy": None,
        "penalty": partial["penalty_sum"] / steps,
        "turnpike": partial["turnpike_sum"] / steps,
        "control": None,
        "lr": None,
        "time": seconds,
    }


def _set_lr(
    opt: torch.optim.Optimizer, base: list[float], kind: str, step: int, total: int
) -> None:
    """Learning rate of the step with index ``step`` (0-based) of ``total``: left alone
    (constant), or cosine decay base * (1 + cos(pi * step / total)) / 2. A function of the step
    count only, so a resumed run uses the same rates."""
    if kind == "constant":
        return
    factor = 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))
    for group, b in zip(opt.param_groups, base):
        group["lr"] = b * factor


def _epoch_order(n: int, seed: int, epoch: int, rank: int, world: int) -> torch.Tensor:
    """The sample indices this process visits in ``epoch``: randperm(n) with a generator
    seeded ``seed + epoch``; with several processes, ``DistributedSampler``'s shard (padded
    to a multiple of the world size, then every world-th index from ``rank``)."""
    if world == 1:
        g = torch.Generator().manual_seed(seed + epoch)
        return torch.randperm(n, generator=g)
    from torch.utils.data.distributed import DistributedSampler

    sampler = DistributedSampler(
        _Sized(n), num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=False
    )
    sampler.set_epoch(epoch)
    return torch.tensor(list(iter(sampler)), dtype=torch.long)


def _progress_bar(enabled: bool, total: int, initial: int, epoch: int, epochs: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=f"epoch {epoch}/{epochs}",
        unit="step",
        leave=True,
        dynamic_ncols=True,
    )


def _postfix(partial: dict, classify: bool) -> dict:
    n = max(partial["count"], 1)
    out = {"loss": f"{partial['risk_sum'] / n:.4g}"}
    if classify:
        out["acc"] = f"{partial['correct'] / n:.3f}"
    return out


def _postfix_record(r: dict) -> dict:
    out = {"loss": f"{r['loss']:.4g}"}
    if r.get("accuracy") is not None:
        out["acc"] = f"{r['accuracy']:.3f}"
    if r.get("val_loss") is not None:
        out["val_loss"] = f"{r['val_loss']:.4g}"
    if r.get("val_accuracy") is not None:
        out["val_acc"] = f"{r['val_accuracy']:.3f}"
    return out


class _defer_sigint:
    """Hold back Ctrl-C while the parameters and the counters are updated together, so an
    interrupt never leaves a half-applied step (main thread only; elsewhere a no-op)."""

    def __enter__(self) -> _defer_sigint:
        self.received = False
        self.active = threading.current_thread() is threading.main_thread()
        if self.active:
            self.old = signal.getsignal(signal.SIGINT)
            self.active = self.old is not None  # None: a handler not set from Python
        if self.active:
            try:
                signal.signal(signal.SIGINT, self._handler)
            except (ValueError, OSError):  # pragma: no cover - no signal support
                self.active = False
        return self

    def _handler(self, signum, frame) -> None:
        self.received = True
        self.frame = frame

    def __exit__(self, *exc) -> None:
        if not self.active:
            return
        signal.signal(signal.SIGINT, self.old)
        if self.received and exc[0] is None:
            if callable(self.old):
                self.old(signal.SIGINT, self.frame)
            elif self.old == signal.SIG_DFL:
                raise KeyboardInterrupt


# --------------------------------------------------------------------------------------------
# devices and processes
# --------------------------------------------------------------------------------------------


def _resolve_device(device: str | torch.device) -> torch.device:
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: CUDA was requested but is not available")
    return dev


def _setup_distributed(dev: torch.device) -> tuple[int, int, torch.device, bool]:
    """(rank, world size, this process's device, whether the process group was created here)."""
    import torch.distributed as dist

    env_world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    available = dist.is_available()
    if available and dist.is_initialized():
        created = False
    elif env_world > 1:
        if not available:
            raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        created = True
    else:
        return 0, 1, dev, False
    rank, world = dist.get_rank(), dist.get_world_size()
    if dev.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", rank % max(torch.cuda.device_count(), 1)))
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    return rank, world, dev, created


def _unwrap(model: nn.Module) -> nn.Module:
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, nn.Module) else model


def _model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def _model_dtype(model: nn.Module) -> torch.dtype:
    for t in model.parameters():
        if t.is_floating_point():
            return t.dtype
    return torch.get_default_dtype()


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def _check_int(name: str, v: object, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {v!r}")
    return v


def _check_real(name: str, v: object, positive: bool = False) -> float:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number, got {v!r}") from None
    if isinstance(v, bool) or not math.isfinite(f) or f < 0 or (positive and f == 0):
        need = "> 0" if positive else ">= 0"
        raise ValueError(f"{name}: expected a finite number {need}, got {v!r}")
    return f


def _json_safe(record: dict) -> dict:
    out = {}
    for k, v in record.items():
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[str(k)] = v
    return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _fmt_record(r: dict) -> str:
    parts = [f"epoch={r.get('epoch')}", f"loss={r.get('loss'):.4g}"]
    if r.get("accuracy") is not None:
        parts.append(f"accuracy={r['accuracy']:.3f}")
    if r.get("val_accuracy") is not None:
        parts.append(f"val_accuracy={r['val_accuracy']:.3f}")
    return "{" + ", ".join(parts) + "}"
