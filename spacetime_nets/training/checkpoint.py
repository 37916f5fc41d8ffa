"""Checkpoint files: atomic writes, safe reads, and the checks that make a damaged file fail
loudly instead of training or evaluating the wrong numbers.

A checkpoint holds only tensors and plain Python data and is read with
``torch.load(weights_only=True)``: a truncated, tampered or foreign file is refused with a
ValueError and nothing in it is executed. It also holds a SHA-256 digest of the weights, the
optimiser state, the counters, the history, the running sums, the random states and the run's
description (version 2; a version-1 file's digest covers the weights, the optimiser state and
the counters): a flipped bit or an edited value in any of them is refused. A checkpoint without
a digest is refused unless the caller says it trusts the file (``trust=True``). Reading checks
that every floating weight is finite and that the counters agree with each other (finished
epochs = history records, steps of the unfinished epoch = its running sums).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import struct
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..validation import check_bool, first_nonfinite
from ._io import atomic_save, first_line, json_safe
from .distributed import model_device, unwrap
from .history import History

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "checkpoint_path",
    "load_checkpoint",
    "load_model_state",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "spacetime-nets/checkpoint"
"""The format tag of a checkpoint file (its ``"format"`` entry); another tag is refused."""
CHECKPOINT_VERSION = 2
"""The version [`save_checkpoint`][spacetime_nets.training.save_checkpoint] writes (its
``"version"`` entry); version-1 files are still read."""
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
#: what the digest covers, by version: since version 2 everything but the digest itself
_DIGESTED = {
    1: ("model", "optimizer", "epoch", "step", "step_in_epoch"),
    2: ("format", "version", *_REQUIRED_KEYS[2:]),
}


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
    (plain data), a SHA-256 digest of all of these, a format tag and a version. Only tensors
    and plain data are stored. The file is serialised in memory, then written through a
    temporary file: a full disk raises an OSError naming ``path`` and leaves a previous file
    as it was.

    A model with a NaN or infinite weight, or counters that disagree (``step`` fewer than
    ``epoch + step_in_epoch``, a history of another length than ``epoch``), is refused with a
    ValueError: a checkpoint is always a state training can continue from.

    Args:
        path: the file to write.
        model: the model (a ``DistributedDataParallel`` wrapper is unwrapped).
        optimizer: its optimiser, or None.
        epoch: finished epochs.
        step: optimiser steps taken.
        step_in_epoch: steps of the unfinished epoch.
        partial: running sums of the unfinished epoch.
        history: the records of the finished epochs.
        meta: plain data describing the run.

    Returns:
        The path written.
    """
    records = history.records if isinstance(history, History) else list(history or [])
    state = unwrap(model).state_dict()
    _check_finite_state(state, f"{path}: not written")
    doc = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model": state,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "epoch": int(epoch),
        "step": int(step),
        "step_in_epoch": int(step_in_epoch),
        "partial": dict(partial or {}),
        "rng": _rng_state(),
        "history": [json_safe(r) for r in records],
        "meta": dict(meta or {}),
    }
    _check_counters(doc, Path(path), "not written")
    doc["digest"] = _digest(doc)
    return atomic_save(doc, Path(path))


def load_checkpoint(
    path: str | os.PathLike, map_location: Any = "cpu", *, trust: bool = False
) -> dict:
    """Read and validate a checkpoint written by
    [`save_checkpoint`][spacetime_nets.training.save_checkpoint] (a folder means its ``last.pt``).
    Uses ``torch.load(weights_only=True)``: no code in the file is run.

    The digest written with the file must match what it holds (weights, optimiser state,
    counters, history, running sums, random states, meta). A file without a digest (written
    by hand, or edited and saved again without one) is refused: nothing would tell a damaged
    or edited file from a good one. Pass ``trust=True`` to read such a file anyway (every
    other check still applies); a digest that does not match is refused whatever ``trust``.

    Args:
        path: the checkpoint file or a run folder.
        map_location: where to put the tensors (default the CPU).
        trust: read a file that has no digest.

    Returns:
        The checkpoint dict.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a truncated, tampered or foreign file, a file without a digest (unless
            ``trust``), non-finite weights, or counters that disagree.
    """
    trust = check_bool("trust", trust)
    p = checkpoint_path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. the unpickler's notes on foreign files
            doc = torch.load(p, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError, zipfile.BadZipFile) as exc:
        raise ValueError(
            f"{p}: not a valid spacetime-nets checkpoint (unreadable, truncated or holding "
            f"objects other than tensors and plain data: {first_line(exc)})"
        ) from None
    except Exception as exc:  # any other failure of the restricted unpickler
        raise ValueError(
            f"{p}: not a valid spacetime-nets checkpoint ({type(exc).__name__}: {first_line(exc)})"
        ) from None
    _validate_checkpoint(doc, p, trust)
    return doc


def load_model_state(model: nn.Module, path: str | os.PathLike, *, trust: bool = False) -> dict:
    """Load the parameters and buffers of a checkpoint into ``model`` (built with the same
    construction arguments and schedule); returns the validated checkpoint dict (``trust``:
    as for [`load_checkpoint`][spacetime_nets.training.load_checkpoint]).

    Args:
        model: the model to load into, in place (a ``DistributedDataParallel`` wrapper is
            unwrapped); the tensors are read onto its device.
        path: the checkpoint file or a run folder (its ``last.pt``).
        trust: read a file that has no digest.

    Returns:
        The validated checkpoint dict, as
            [`load_checkpoint`][spacetime_nets.training.load_checkpoint] returns it.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a damaged or foreign file, or a state that does not fit ``model`` (names,
            shapes or floating dtypes).
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    doc = load_checkpoint(path, map_location=model_device(model), trust=trust)
    load_state_into(model, doc["model"], f"{checkpoint_path(path)}")
    return doc


def load_state_into(model: nn.Module, state: dict, where: str) -> None:
    """``model.load_state_dict(state)`` with a one-line ValueError when it does not fit
    (names, shapes or floating dtypes)."""
    check_state_dtypes(model, state, where)
    try:
        unwrap(model).load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        msg = " ".join(str(exc).split())
        raise ValueError(f"{where}: the checkpoint does not fit this model ({msg[:300]})") from None


def check_state_dtypes(model: nn.Module, state: dict, where: str) -> None:
    """Refuse floating values of another dtype than the model's (torch would cast them)."""
    own = unwrap(model).state_dict()
    for k, v in state.items():
        mine = own.get(k)
        if (
            isinstance(v, torch.Tensor)
            and isinstance(mine, torch.Tensor)
            and v.is_floating_point()
            and mine.is_floating_point()
            and v.dtype != mine.dtype
        ):
            raise ValueError(
                f"{where}: the checkpoint holds {v.dtype} values ({k}) and the model is "
                f"{mine.dtype}; build the model with the checkpoint's dtype"
            )


def checkpoint_path(path: str | os.PathLike) -> Path:
    """The checkpoint file ``path`` names: the file itself, or a run folder's ``last.pt``
    (FileNotFoundError when there is none).

    Args:
        path: a checkpoint file or a run folder.

    Returns:
        The checkpoint file's path.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "last.pt"
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    return p


def _validate_checkpoint(doc: Any, p: Path, trust: bool = False) -> None:
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
    if "digest" not in doc:
        if not trust:
            raise ValueError(
                f"{p}: refused, the checkpoint has no digest, so a damaged or edited file "
                "cannot be told from a good one; if you trust it, load it with "
                "load_checkpoint(path, trust=True)"
            )
    elif doc["digest"] != _digest(doc):
        covered = (
            "weights, optimiser state or counters"
            if doc["version"] < 2
            else "weights, optimiser state, counters, history, random states or meta"
        )
        raise ValueError(
            f"{p}: damaged checkpoint (the {covered} do not match the digest written with them)"
        )
    _check_counters(doc, p)
    _check_finite_state(state, f"{p}: refused")


def _check_counters(doc: dict, p: Path, verdict: str = "damaged checkpoint") -> None:
    """Finished epochs = history records (numbered 1..epoch) when there is a history; steps
    only grow; the steps of
    the unfinished epoch = those its running sums count."""
    epoch, step, within = doc["epoch"], doc["step"], doc["step_in_epoch"]
    history = doc["history"]
    problem = None
    if history and len(history) != epoch:
        problem = f"epoch = {epoch} but the history holds {len(history)} finished epochs"
    elif any(r.get("epoch") != i + 1 for i, r in enumerate(history)):
        problem = "the history's epochs are not numbered 1, 2, ..."
    elif step < within + epoch:
        problem = f"step = {step} is fewer than the {epoch} epochs and {within} steps recorded"
    elif history and isinstance(history[-1].get("step"), int) and history[-1]["step"] > step:
        problem = f"step = {step} but epoch {epoch} ended at step {history[-1]['step']}"
    elif "steps" in doc["partial"] and doc["partial"]["steps"] != within:
        problem = (
            f"step_in_epoch = {within} but the unfinished epoch counts "
            f"{doc['partial']['steps']!r:.20} steps"
        )
    if problem:
        raise ValueError(f"{p}: {verdict}, inconsistent counters ({problem})")


def _check_finite_state(state: dict, where: str) -> None:
    for k, v in state.items():
        if isinstance(v, torch.Tensor):
            bad = first_nonfinite(v)
            if bad is not None:
                raise ValueError(
                    f"{where}: the weights are not finite ({k}{list(bad)} = {float(v[bad])})"
                )


def _digest(doc: dict) -> str:
    h = hashlib.sha256()
    for key in _DIGESTED[1 if doc["version"] < 2 else 2]:
        h.update(key.encode())
        _feed(h, doc[key])
    return h.hexdigest()


def _feed(h: Any, obj: Any) -> None:
    """Hash a nest of dicts, lists, tensors and plain values in a fixed order."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(obj.shape)}".encode())
        if t.numel():
            h.update(t.view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        h.update(b"D%d" % len(obj))
        for k in sorted(obj, key=repr):
            h.update(repr(k).encode())
            _feed(h, obj[k])
    elif isinstance(obj, (list, tuple)):
        h.update(b"L%d" % len(obj))
        for v in obj:
            _feed(h, v)
    elif isinstance(obj, float):
        h.update(b"F" + struct.pack("<d", obj))
    else:
        h.update(f"V{obj!r}".encode())


@dataclass(frozen=True)
class _Generator:
    """One global random generator whose state a checkpoint keeps (under ``"rng"``).

    Attributes:
        key: the entry of the saved state that holds its main state; a state without it
            leaves the generator as it is.
        save: its entries of the saved state, ``save() -> {entry: value}`` (none when there is
            nothing to save, e.g. CUDA not initialised).
        restore: sets the generator from the saved state, ``restore(state)``.
    """

    key: str
    save: Callable[[], dict[str, Any]]
    restore: Callable[[dict], None]


def _save_torch() -> dict[str, Any]:
    return {"torch": torch.get_rng_state()}


def _restore_torch(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())


def _save_cuda() -> dict[str, Any]:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return {"cuda": [s.cpu() for s in torch.cuda.get_rng_state_all()]}
    return {}


def _restore_cuda(state: dict) -> None:
    """Only on a machine with as many CUDA devices as the one that saved the state."""
    if torch.cuda.is_available():
        cuda = list(state["cuda"])
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def _save_python() -> dict[str, Any]:
    version, words, gauss = random.getstate()
    return {
        "python": torch.tensor(words, dtype=torch.int64),
        "python_version": int(version),
        "python_gauss": gauss,
    }


def _restore_python(state: dict) -> None:
    words = tuple(int(v) for v in state["python"].tolist())
    random.setstate((state["python_version"], words, state["python_gauss"]))


def _save_numpy() -> dict[str, Any]:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        return {}
    name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (the global state)
    return {
        "numpy": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "numpy_pos": int(pos),
        "numpy_has_gauss": int(has_gauss),
        "numpy_cached_gaussian": float(cached),
    }


def _restore_numpy(state: dict) -> None:
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


_GENERATORS = (
    _Generator("torch", _save_torch, _restore_torch),
    _Generator("cuda", _save_cuda, _restore_cuda),
    _Generator("python", _save_python, _restore_python),
    _Generator("numpy", _save_numpy, _restore_numpy),
)
"""The generators a checkpoint saves and restores, in this order."""


def _rng_state() -> dict:
    state: dict[str, Any] = {}
    for gen in _GENERATORS:
        state.update(gen.save())
    return state


def set_rng_state(state: dict) -> None:
    """Restore the random states saved in a checkpoint."""
    try:
        for gen in _GENERATORS:
            if gen.key in state:
                gen.restore(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"checkpoint: damaged random state ({first_line(exc)})") from None
