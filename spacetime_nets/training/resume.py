"""What must match for a resume: a checkpoint continues only the run it was written by.

The optimiser (class), the model (form, activation, lift, stepper, read from its
``extra_repr``), its fixed buffers (grids, transfers: the schedule and the horizon), its dtype
and the training data (a digest of the tensors) are compared with what the checkpoint
recorded; any difference is a ValueError that names it.
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..models.base import _IDENTITY, NORMALIZER_BUFFERS
from .checkpoint import check_state_dtypes, load_checkpoint
from .data import Data


def check_compatible(old: dict, new: dict, model: nn.Module, state: dict, path: str) -> None:
    """Refuse to resume ``model`` (described by the meta ``new``) from a checkpoint with meta
    ``old`` and model ``state`` when they differ in anything but the training settings.

    Args:
        old: the checkpoint's ``meta`` (optimiser, model summary, data digest...).
        new: the same description of the run being resumed.
        model: the model to resume, as built now.
        state: the checkpoint's model ``state_dict``.
        path: the checkpoint's path, for the error messages.

    Raises:
        ValueError: another optimiser, model, dtype, normalisers, schedule or horizon, or
            other training data.
    """
    if old.get("optimizer") not in (None, new["optimizer"]):
        raise ValueError(
            f"resume: {path} was trained with the {old['optimizer']} optimiser, not "
            f"{new['optimizer']}; resume with the same optimiser or start a new run"
        )
    a, b = _summary_items(old.get("model_summary", "")), _summary_items(new["model_summary"])
    keys = [k for k in _SUMMARY_KEYS if k in a and k in b and a[k] != b[k]]
    changed = [f"{k} {a[k]} -> {b[k]}" for k in keys]
    if changed:
        raise ValueError(
            f"resume: {path} was trained with another model ({', '.join(changed)}); build "
            "the model as it was or start a new run"
        )
    check_state_dtypes(model, state, f"resume: {path}")
    _check_normalizers(model, state, path, bool(new.get("normalize")))
    _check_fixed_state(model, state, path)
    digests = (old.get("data_digest"), new["data_digest"])
    if None not in digests and digests[0] != digests[1]:
        raise ValueError(
            f"resume: {path} was trained on other data ({old.get('data_rows')} rows, now "
            f"{new['data_rows']}, or other values); use the same data set and seed, or "
            "load_model_state to start a new run from these weights"
        )


_SUMMARY_KEYS = ("form", "activation", "lift", "method", "K", "T")


def model_summary(model: nn.Module) -> str:
    """The first line of the model's ``extra_repr`` (form, activation, lift, schedule).

    Args:
        model: the model.

    Returns:
        The line, or an empty string when the model has no usable ``extra_repr``.
    """
    try:
        return model.extra_repr().splitlines()[0] if model.extra_repr() else ""
    except Exception:  # a model without a usable extra_repr: nothing to compare
        return ""


def _summary_items(text: str) -> dict[str, str]:
    return dict(re.findall(r"\b(" + "|".join(_SUMMARY_KEYS) + r")=([\w.]+)", text))


def data_digest(data: Data) -> str | None:
    """SHA-256 of the training tensors (None for a torch Dataset, which is not read twice).

    Args:
        data: the wrapped training data.

    Returns:
        The hex digest of x and y (floating values as float64, so the same data in any
            precision has one digest), or None.
    """
    if data.x is None:
        return None
    h = hashlib.sha256()
    for t in (data.x, data.y):  # floating values in float64: the same data in any precision
        t = t.detach().cpu().reshape(-1)
        t = (t.double() if t.is_floating_point() else t).contiguous()
        h.update(f"{t.dtype}{t.numel()}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _check_normalizers(model: nn.Module, state: dict, path: str, fitted: bool) -> None:
    """The scalar normalisers of a resumed run come from its checkpoint (a state without them
    had the identity). A model whose own differ (fitted again by ``normalize=True``, or set by
    hand) would train another problem: refused. A model that still has the identity and was
    not fitted takes the checkpoint's."""
    if not hasattr(model, "set_normalizers"):
        return
    own = model.state_dict()
    mine = [float(own[k]) for k in NORMALIZER_BUFFERS]
    theirs = [float(state[k]) if k in state else v for k, v in zip(NORMALIZER_BUFFERS, _IDENTITY)]
    if not fitted and tuple(mine) == _IDENTITY:
        return
    if all(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12) for a, b in zip(mine, theirs)):
        return
    names = ("x_mean", "x_std", "y_mean", "y_std")
    shown = ", ".join(f"{n} {b:.6g} -> {a:.6g}" for n, a, b in zip(names, mine, theirs) if a != b)
    how = "normalize=True gives" if fitted else "the model has"
    raise ValueError(
        f"resume: {path} was trained with other normalisers than {how} now ({shown}); "
        "resume with the run's normalize setting and training data, or start a new run"
    )


def _check_fixed_state(model: nn.Module, state: dict, path: str) -> None:
    """The buffers (grids, transfers) and extra states of the checkpoint must equal the
    model's: otherwise the checkpoint belongs to another schedule or horizon. (The scalar
    normalisers are checked by ``_check_normalizers``.)"""
    params = {n for n, _ in model.named_parameters()}
    own = model.state_dict()
    for k, v in state.items():
        if k in params or k not in own or k in NORMALIZER_BUFFERS:
            continue
        mine = own[k]
        if isinstance(v, torch.Tensor) and isinstance(mine, torch.Tensor):
            same = v.shape == mine.shape and torch.equal(v.cpu().to(mine.dtype), mine.cpu())
        else:
            same = _plain_equal(v, mine)
        if not same:
            raise ValueError(
                f"resume: {path} was trained on another schedule or horizon ({k} differs); "
                "build the model with the schedule and T of the checkpoint"
            )


def _plain_equal(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_plain_equal(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and torch.equal(a.cpu(), b.cpu().to(a.dtype))
    try:
        return bool(a == b)
    except Exception:  # incomparable values: treat as different
        return False


def remove_stale_interrupt(path: Path, step: int) -> None:
    """A finished run has gone past an ``interrupted.pt`` at or before its last step: remove
    it (a file that cannot be read as a checkpoint is left alone).

    Args:
        path: the run folder's ``interrupted.pt``.
        step: the finished run's last optimiser step.
    """
    if not path.is_file():
        return
    try:
        old = load_checkpoint(path)
    except (ValueError, OSError):
        return  # not ours to judge: leave it
    if old["step"] <= step:
        path.unlink(missing_ok=True)
