"""``python -m spacetime_nets``: the command line (see :mod:`spacetime_nets.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
