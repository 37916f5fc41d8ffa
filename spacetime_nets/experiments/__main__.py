"""``python -m spacetime_nets.experiments asymptotics|turnpike [options]``."""

import sys

from . import main

sys.exit(main())
