"""The per-epoch history of a run, the state callbacks see, and the callback hooks."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._io import atomic_write_text, json_safe

__all__ = ["HISTORY_FIELDS", "Callback", "History", "TrainState"]

HISTORY_FIELDS = (
    "epoch",
    "step",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "val_rel_l2",
    "val_zero_loss",
    "val_mean_rel_l2",
    "penalty",
    "turnpike",
    "control",
    "lr",
    "time",
)
"""The keys of a [`History`][spacetime_nets.training.History] record, in the order of the
columns of ``history.csv``."""


class History:
    """One record per finished epoch, a dict with the keys
    [`HISTORY_FIELDS`][spacetime_nets.training.HISTORY_FIELDS]:

    ``epoch`` (1-based), ``step`` (optimiser steps so far), ``loss`` (mean empirical risk on
    the training batches of the epoch), ``accuracy`` (training, classification only),
    ``val_loss`` / ``val_accuracy`` (after the epoch; None without validation data),
    ``val_rel_l2`` (regression targets: the mean relative error (1/N) sum_i |z_i - y_i|_2 /
    |y_i|_2 on val after the epoch), ``val_zero_loss`` and ``val_mean_rel_l2`` (the same for
    two trivial predictors, constant over the run: the loss of predicting 0, whose relative
    error is 1, and the relative error of predicting the mean training target; see
    [`baselines`][spacetime_nets.training.baselines]),
    ``penalty`` (mean of lam * int |u|^2 over the epoch's steps), ``turnpike`` (mean of
    weight * int E(x(t)) dt), ``control`` (int_0^T |u|^2 dt after the epoch), ``lr`` (the
    learning rate of the epoch's last step) and ``time`` (seconds). ``history["loss"]`` is a
    column, ``history[-1]`` a record.

    Args:
        records: the records to start from (copied), e.g. those of a checkpoint; None: empty.
    """

    fields = HISTORY_FIELDS

    def __init__(self, records: Iterable[dict] | None = None) -> None:
        self.records: list[dict] = [dict(r) for r in (records or [])]

    def append(self, record: dict) -> None:
        """Add the record of one finished epoch.

        Args:
            record: the epoch's record (copied), keyed by the names of ``fields``.
        """
        self.records.append(dict(record))

    def column(self, name: str) -> list:
        """The values of one field, epoch by epoch.

        Args:
            name: a name of [`HISTORY_FIELDS`][spacetime_nets.training.HISTORY_FIELDS].

        Returns:
            One value per record (None where a record lacks it).
        """
        if name not in self.fields:
            raise ValueError(f"name: expected one of {', '.join(self.fields)}; got {name!r}")
        return [r.get(name) for r in self.records]

    @property
    def last(self) -> dict | None:
        """The record of the last finished epoch (None before the first)."""
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
        """Write ``{"fields": [...], "records": [...]}`` (non-finite numbers as null).

        Args:
            path: the JSON file to write (atomically).

        Returns:
            The path written.
        """
        doc = {"fields": list(self.fields), "records": [json_safe(r) for r in self.records]}
        return atomic_write_text(Path(path), json.dumps(doc, indent=1))

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write one row per epoch, the columns
        [`HISTORY_FIELDS`][spacetime_nets.training.HISTORY_FIELDS] (None as empty).

        Args:
            path: the CSV file to write (atomically).

        Returns:
            The path written.
        """
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(self.fields), lineterminator="\n")
        writer.writeheader()
        for r in self.records:
            writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in self.fields})
        return atomic_write_text(Path(path), buf.getvalue())

    def save(self, out_dir: str | os.PathLike) -> None:
        """``history.json`` and ``history.csv`` in ``out_dir``.

        Args:
            out_dir: the run folder (created when missing).
        """
        out = Path(out_dir)
        self.to_json(out / "history.json")
        self.to_csv(out / "history.csv")

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> History:
        """Read a ``history.json`` written by
        [`to_json`][spacetime_nets.training.History.to_json].

        Args:
            path: the ``history.json`` file.

        Returns:
            The history of its records.

        Raises:
            ValueError: the file cannot be read or is not a history file.
        """
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
    holds the last batch's ``loss`` (objective), ``risk``, ``size`` (and ``scale``, its input
    resolution, when ``fit`` trains across ``resolutions``). Set ``stop = True`` to end
    training after the current epoch.

    Attributes:
        model: the model being trained, in place.
        optimizer: its optimiser.
        epochs: the number of epochs of the run in all.
        epoch: the current epoch, 1-based (0 before the first).
        step: the optimiser steps taken so far, over the whole run.
        step_in_epoch: the optimiser steps taken in the current epoch.
        steps_per_epoch: the optimiser steps of one epoch.
        history: the [`History`][spacetime_nets.training.History] of the finished epochs.
        batch: the last batch's ``loss``, ``risk``, ``size`` (and ``scale``).
        rank: this process's rank (0 on one process).
        world_size: the number of processes (1 without ``torchrun``).
        out_dir: the run folder, or None when nothing is written.
        stop: set it to True to end training after the current epoch.
    """

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
    """Hooks called by [`fit`][spacetime_nets.training.fit] with the
    [`TrainState`][spacetime_nets.training.TrainState];
    override any of them. A plain callable given as a callback is called at the end of every
    epoch."""

    def on_train_start(self, state: TrainState) -> None:
        """Before the first epoch (also of a resumed run).

        Args:
            state: the run's [`TrainState`][spacetime_nets.training.TrainState] (set
                ``state.stop = True`` to end training after the current epoch).
        """

    def on_epoch_start(self, state: TrainState) -> None:
        """Before the first step of an epoch.

        Args:
            state: the run's [`TrainState`][spacetime_nets.training.TrainState] (set
                ``state.stop = True`` to end training after the current epoch).
        """

    def on_batch_end(self, state: TrainState) -> None:
        """After each optimiser step.

        Args:
            state: the run's [`TrainState`][spacetime_nets.training.TrainState] (set
                ``state.stop = True`` to end training after the current epoch).
        """

    def on_epoch_end(self, state: TrainState) -> None:
        """After an epoch's record was added to the history.

        Args:
            state: the run's [`TrainState`][spacetime_nets.training.TrainState] (set
                ``state.stop = True`` to end training after the current epoch).
        """

    def on_train_end(self, state: TrainState) -> None:
        """After the last epoch.

        Args:
            state: the run's [`TrainState`][spacetime_nets.training.TrainState] (set
                ``state.stop = True`` to end training after the current epoch).
        """


class _CallableCallback(Callback):
    def __init__(self, fn: Callable[[TrainState], Any]) -> None:
        self.fn = fn

    def on_epoch_end(self, state: TrainState) -> None:
        self.fn(state)


def as_callbacks(callbacks: Iterable[Any]) -> list[Callback]:
    """Callback objects as they are; plain callables become end-of-epoch callbacks."""
    if isinstance(callbacks, (Callback, str, bytes)) or callable(callbacks):
        raise ValueError(
            f"callbacks: expected a list of Callback objects or callables, got {callbacks!r:.80}"
            + ("; wrap it in a list" if not isinstance(callbacks, (str, bytes)) else "")
        )
    try:
        items = list(callbacks)
    except TypeError:
        raise ValueError(
            f"callbacks: expected a list of Callback objects or callables, got {callbacks!r:.80}"
        ) from None
    out: list[Callback] = []
    for c in items:
        if isinstance(c, Callback):
            out.append(c)
        elif callable(c):
            out.append(_CallableCallback(c))
        else:
            raise ValueError(f"callbacks: expected Callback objects or callables, got {c!r}")
    return out


def _fmt_record(r: dict) -> str:
    parts = [f"epoch={r.get('epoch')}", f"loss={r.get('loss'):.4g}"]
    if r.get("accuracy") is not None:
        parts.append(f"accuracy={r['accuracy']:.3f}")
    if r.get("val_accuracy") is not None:
        parts.append(f"val_accuracy={r['val_accuracy']:.3f}")
    if r.get("val_rel_l2") is not None:
        parts.append(f"val_rel_l2={r['val_rel_l2']:.4g}")
    return "{" + ", ".join(parts) + "}"
