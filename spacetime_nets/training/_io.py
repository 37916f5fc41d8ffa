"""Atomic file writes and JSON-safe records, shared by the history and checkpoint modules."""

from __future__ import annotations

import contextlib
import io
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import torch


def umask_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file: 0o666 less the umask
    (``tempfile.mkstemp`` makes 0o600 files, which a colleague or a service could not read).

    Returns:
        The permission bits, e.g. ``0o644`` under the usual umask ``0o022``.
    """
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _temp_beside(path: Path, mode: str, write: Callable[[IO], None], sync: bool) -> str:
    """Write a temporary file in ``path``'s folder with the user's umask; returns its name. A
    failure removes it and raises."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"newline": ""})) as f:
            if hasattr(os, "fchmod"):  # POSIX
                os.fchmod(f.fileno(), umask_mode())
            write(f)
            f.flush()
            if sync:
                os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def _not_written(exc: OSError, path: Path) -> OSError:
    """``exc`` again (same errno), naming ``path`` and saying nothing was replaced."""
    err = OSError(
        exc.errno, f"{exc.strerror or first_line(exc)}; not written, any previous file is kept"
    )
    err.filename = str(path)
    return err


def _atomic(path: Path, mode: str, write: Callable[[IO], None], sync: bool) -> Path:
    """Write through a temporary file in the same folder, then ``os.replace``: a reader sees
    the old file or the new one, never a half-written one. The file gets the user's umask.

    Any failure (a full disk, a read-only folder, an interrupt) removes the temporary file and
    leaves the previous file as it was; an OSError is raised again as an OSError of the same
    kind (errno) that names ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(_temp_beside(path, mode, write, sync), path)
    except OSError as exc:
        raise _not_written(exc, path) from None
    return path


def atomic_write_files(contents: Mapping[Path, bytes]) -> list[Path]:
    """Write several files as one: each to a temporary file beside it and, only once all are
    written, each renamed over its target. A failure while writing (a full disk) leaves every
    target as it was and no temporary file; the OSError names the file it met.

    Args:
        contents: the bytes to write, by target path (written in this order).

    Returns:
        The target paths, in the order of ``contents``.
    """
    temps: list[str] = []
    paths = [Path(p) for p in contents]
    current = paths[0] if paths else Path()
    try:
        for path, data in zip(paths, contents.values(), strict=True):
            current = path
            temps.append(_temp_beside(path, "wb", lambda f, d=data: f.write(d), sync=True))
        for path, tmp in zip(paths, temps, strict=True):
            current = path
            os.replace(tmp, path)
        temps = []
    except OSError as exc:
        raise _not_written(exc, current) from None
    finally:
        for tmp in temps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return paths


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (flushed to disk before the rename).

    Args:
        path: the file to write (its folder is created when missing).
        data: the bytes to write.

    Returns:
        ``path``.
    """
    return _atomic(path, "wb", lambda f: f.write(data), sync=True)


def atomic_save(obj: Any, path: Path) -> Path:
    """``torch.save`` to ``path`` atomically. The object is serialised in memory first, so
    torch's own writer never meets the disk: a full disk is an OSError naming ``path``, not an
    error (or an abort) inside torch.

    Args:
        obj: what to save (anything ``torch.save`` takes).
        path: the file to write.

    Returns:
        ``path`` as a Path.
    """
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(Path(path), buf.getvalue())


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically.

    Args:
        path: the file to write (its folder is created when missing).
        text: the text to write (no newline translation).

    Returns:
        ``path`` as a Path.
    """
    return _atomic(Path(path), "w", lambda f: f.write(text), sync=False)


def check_path(name: str, value: object) -> Path | None:
    """None, or a file or folder name (a str or an ``os.PathLike``) as a Path; anything else
    (a number, a bool, an empty string) is a ValueError naming the argument.

    Args:
        name: the argument's name, for the error message.
        value: the value given.

    Returns:
        None when ``value`` is None, else ``Path(value)``.
    """
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        try:
            path = Path(value)
        except TypeError:  # an os.PathLike whose __fspath__ gives no str
            path = None
        if path is not None and str(value) != "":
            return path
    raise ValueError(f"{name}: expected a path (str or os.PathLike), got {value!r:.80}")


def json_safe(record: dict) -> dict:
    """One-element tensors as numbers, non-finite floats as None, keys as strings.

    Args:
        record: one history record (or any flat dict).

    Returns:
        A new dict that ``json.dump`` writes as standard JSON.
    """
    out = {}
    for k, v in record.items():
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        out[str(k)] = v
    return out


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters).

    Args:
        exc: the exception.

    Returns:
        The line, or the exception's class name when the message is empty.
    """
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
