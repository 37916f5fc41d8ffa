"""Atomic file writes and JSON-safe records, shared by the history and checkpoint modules."""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch


def umask_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file: 0o666 less the umask
    (``tempfile.mkstemp`` makes 0o600 files, which a colleague or a service could not read)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _atomic(path: Path, mode: str, write: Callable[[IO], None], sync: bool) -> Path:
    """Write through a temporary file in the same folder, then ``os.replace``: a reader sees
    the old file or the new one, never a half-written one. The file gets the user's umask."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):  # POSIX
            os.fchmod(fd, umask_mode())
        with os.fdopen(fd, mode, **({} if "b" in mode else {"newline": ""})) as f:
            write(f)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def atomic_save(obj: Any, path: Path) -> Path:
    """``torch.save`` to ``path`` atomically (flushed to disk before the rename)."""
    return _atomic(path, "wb", lambda f: torch.save(obj, f), sync=True)


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return _atomic(path, "w", lambda f: f.write(text), sync=False)


def json_safe(record: dict) -> dict:
    """One-element tensors as numbers, non-finite floats as None, keys as strings."""
    out = {}
    for k, v in record.items():
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[str(k)] = v
    return out


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters)."""
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
