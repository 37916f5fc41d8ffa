"""``python -m spacetime_nets``: the command line (see :mod:`spacetime_nets.cli`)."""

import sys


def _run() -> int:
    """:func:`spacetime_nets.cli.main`; Ctrl-C while it is still being imported is reported
    as ``spacetime-nets: interrupted`` and exit code 130, as during a command."""
    try:
        from .cli import main
    except KeyboardInterrupt:
        print("spacetime-nets: interrupted", file=sys.stderr)
        return 130
    return main()


if __name__ == "__main__":
    sys.exit(_run())
