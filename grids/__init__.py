"""grids: quadrature grids, moving grid schedules and transfers between grids.

Pure numerics; no training logic. ``spacetime_nets`` builds on it, never the other way round.
"""

from .domain import Domain
from .grid import Grid
from .quadrature import (
    NODE_RULES,
    QUADRATURE_RULES,
    RULES,
    QuadratureRule,
    get_rule,
    nearest_valid_n,
    register_rule,
    rule_degree,
)
from .schedule import GridSchedule, cluster_map
from .transfer import TRANSFER_KINDS, Transfer, make_transfer

__all__ = [
    "Domain",
    "Grid",
    "GridSchedule",
    "Transfer",
    "make_transfer",
    "cluster_map",
    "RULES",
    "NODE_RULES",
    "QUADRATURE_RULES",
    "QuadratureRule",
    "get_rule",
    "register_rule",
    "TRANSFER_KINDS",
    "nearest_valid_n",
    "rule_degree",
]
