"""Command line: ``spacetime-nets <command>`` (also ``python -m spacetime_nets``).

Commands: ``train`` a space-time net on a bundled data set, ``evaluate`` a trained run (on
another schedule, for continuous kernels), ``export`` it to a plain ResNet file and check it,
draw a ``schedule``, run the ``asymptotics`` and ``turnpike`` experiments, or the ``demo``.

The commands are thin: a run is described by
[`RunConfig`][spacetime_nets.runs.RunConfig] (the run folder's ``model.json``), built by
[`build_model`][spacetime_nets.runs.build_model] and read back by
[`load_run`][spacetime_nets.runs.load_run].

Every failure ends with one line ``spacetime-nets: error: ...`` on stderr and an exit code:
0 success, 1 the run failed (divergence, an export that does not match, an unexpected error),
2 bad input (arguments, files, a resume that does not fit), 130 interrupted. Set
``SPACETIME_NETS_DEBUG=1`` to see the traceback of an unexpected error.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names loaded lazily below, for type checkers and the API reference
    from ..runs import (
        MODEL_FORMAT,
        MODEL_VERSION,
        SCHEDULES,
        load_run,
        make_schedule,
        parse_widths,
    )
    from .commands import build_model
    from .parser import EXPORT_FORMATS, SPLITS, build_parser

PROG = "spacetime-nets"

__all__ = [
    "EXPORT_FORMATS",
    "MODEL_FORMAT",
    "MODEL_VERSION",
    "SCHEDULES",
    "SPLITS",
    "build_model",
    "build_parser",
    "load_run",
    "main",
    "make_schedule",
    "parse_widths",
]

# imported on first use, so that importing the command line is quick and an interrupt while
# the library loads is handled by main
_LAZY = {
    "MODEL_FORMAT": "..runs",
    "MODEL_VERSION": "..runs",
    "SCHEDULES": "..runs",
    "make_schedule": "..runs",
    "parse_widths": "..runs",
    "build_model": ".commands",
    "load_run": "..runs",
    "EXPORT_FORMATS": ".parser",
    "SPLITS": ".parser",
    "build_parser": ".parser",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _command_of(argv: Sequence[str]) -> str | None:
    from .parser import COMMANDS

    for a in argv:
        if a in COMMANDS:
            return a
    return None


def _error(exc: BaseException | str) -> None:
    text = exc if isinstance(exc, str) else (" ".join(str(exc).split()) or type(exc).__name__)
    print(f"{PROG}: error: {text}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit code:
    0 success, 1 failure of the run (divergence, an export that does not match, an unexpected
    error), 2 bad input, 130 interrupted (Ctrl-C at any point, while the library still loads
    too).

    Every failure is reported as one line ``spacetime-nets: error: ...`` on stderr (set
    ``SPACETIME_NETS_DEBUG=1`` for the traceback of an unexpected error).

    Args:
        argv: the command line without the program name, e.g. ``["train", "--dataset",
            "circles"]`` (None: ``sys.argv[1:]``).

    Returns:
        The exit code: 0, 1, 2 or 130 as above.
    """
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from ..training import TrainingDiverged
    from .parser import _UsageError, build_parser

    try:
        parser = build_parser(_command_of(argv))
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except _UsageError as exc:
        _error(exc)
        return 2
    except TrainingDiverged as exc:
        _error(exc)
        return 1
    except (ValueError, FileNotFoundError) as exc:
        _error(exc)
        return 2
    except OSError as exc:
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        _error(f"{exc.strerror or exc}{where}")
        return 2
    except MemoryError:
        _error("out of memory; use smaller widths, fewer steps or a smaller --batch-size")
        return 1
    except Exception as exc:  # an unexpected failure: one line, the traceback on request
        if os.environ.get("SPACETIME_NETS_DEBUG") == "1":
            traceback.print_exc()
        _error(
            f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]} (set "
            "SPACETIME_NETS_DEBUG=1 for the traceback)"
        )
        return 1
