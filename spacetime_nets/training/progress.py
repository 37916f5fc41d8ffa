"""What a run shows and records while it trains: the running sums of an epoch, its history
record, the progress bar, and the guard that keeps Ctrl-C from splitting an update."""

from __future__ import annotations

import signal
import threading
from typing import Any


def empty_partial() -> dict:
    """The running sums of an epoch before its first step.

    Returns:
        ``{"risk_sum", "count", "correct", "penalty_sum", "turnpike_sum", "steps", "time"}``,
            all zero.
    """
    return {
        "risk_sum": 0.0,
        "count": 0,
        "correct": 0,
        "penalty_sum": 0.0,
        "turnpike_sum": 0.0,
        "steps": 0,
        "time": 0.0,
    }


def epoch_record(epoch: int, step: int, partial: dict, seconds: float) -> dict:
    """The history record of a finished epoch, from its running sums; the validation
    entries, ``control`` and ``lr`` are None, filled in by the caller.

    Args:
        epoch: the epoch, 1-based.
        step: the optimiser steps taken so far, over the whole run.
        partial: the epoch's running sums (see ``empty_partial``).
        seconds: the epoch's wall-clock time.

    Returns:
        A record with the keys of [`HISTORY_FIELDS`][spacetime_nets.training.HISTORY_FIELDS]:
            ``loss`` the mean risk per sample, ``accuracy`` the fraction correct, ``penalty`` and
            ``turnpike`` the means per step.
    """
    n, steps = max(partial["count"], 1), max(partial["steps"], 1)
    return {
        "epoch": epoch,
        "step": step,
        "loss": partial["risk_sum"] / n,
        "accuracy": partial["correct"] / n,
        "val_loss": None,
        "val_accuracy": None,
        "val_rel_l2": None,
        "val_zero_loss": None,
        "val_mean_rel_l2": None,
        "penalty": partial["penalty_sum"] / steps,
        "turnpike": partial["turnpike_sum"] / steps,
        "control": None,
        "lr": None,
        "time": seconds,
    }


def progress_bar(enabled: bool, total: int, initial: int, e: int, epochs: int) -> Any:
    """A ``tqdm`` bar over the steps of one epoch, labelled ``epoch e+1/epochs``.

    Args:
        enabled: show a bar at all.
        total: the steps of the epoch.
        initial: the steps already done (a resumed epoch).
        e: the epoch, 0-based.
        epochs: the number of epochs of the run.

    Returns:
        The ``tqdm`` bar, or None when not ``enabled``.
    """
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=f"epoch {e + 1}/{epochs}",
        unit="step",
        leave=True,
        dynamic_ncols=True,
    )


def postfix(partial: dict, classify: bool) -> dict:
    """The progress bar's postfix during an epoch: the running mean loss (and accuracy).

    Args:
        partial: the epoch's running sums.
        classify: the targets are class labels (show the accuracy too).

    Returns:
        ``{"loss": str}`` and, when ``classify``, ``"acc"``, formatted for display.
    """
    n = max(partial["count"], 1)
    out = {"loss": f"{partial['risk_sum'] / n:.4g}"}
    if classify:
        out["acc"] = f"{partial['correct'] / n:.3f}"
    return out


def postfix_record(r: dict) -> dict:
    """The progress bar's postfix at the end of an epoch, from its history record.

    Args:
        r: the epoch's history record.

    Returns:
        ``loss`` and those of ``acc``, ``val_loss``, ``val_acc``, ``val_rel_l2`` and
            ``mean_pred`` (the relative error of predicting the training mean) that the record
            has, formatted for display.
    """
    out = {"loss": f"{r['loss']:.4g}"}
    if r.get("accuracy") is not None:
        out["acc"] = f"{r['accuracy']:.3f}"
    if r.get("val_loss") is not None:
        out["val_loss"] = f"{r['val_loss']:.4g}"
    if r.get("val_accuracy") is not None:
        out["val_acc"] = f"{r['val_accuracy']:.3f}"
    if r.get("val_rel_l2") is not None:
        out["val_rel_l2"] = f"{r['val_rel_l2']:.4g}"
    if r.get("val_mean_rel_l2") is not None:  # predicting the training mean, for scale
        out["mean_pred"] = f"{r['val_mean_rel_l2']:.4g}"
    return out


class defer_sigint:
    """Hold back Ctrl-C while the parameters and the counters are updated together, so an
    interrupt never leaves a half-applied step (main thread only; elsewhere a no-op)."""

    def __enter__(self) -> defer_sigint:
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
