"""One-dimensional quadrature rules: nodes and weights on an interval [a, b].

This is the only module that talks to torchquad. torchquad builds the nodes and, through its
composite rules applied to unit vectors, the weights of the uniform rules; nothing here is ever
called inside a forward pass. Rules on arbitrary (moving, non-uniform) nodes are computed here,
because torchquad's Newton-Cotes rules assume uniform spacing.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "RULES",
    "NODE_RULES",
    "rule_degree",
    "check_n",
    "nearest_valid_n",
    "uniform_rule",
    "nodes_rule",
]

#: rules for ``Grid.uniform``
RULES = ("trapezoid", "simpson", "boole", "gauss_legendre", "midpoint")
#: rules for ``Grid.from_nodes`` (arbitrary increasing nodes)
NODE_RULES = ("trapezoid",)


def rule_degree(rule: str, n: int) -> int:
    """Highest polynomial degree the rule integrates exactly with ``n`` nodes per axis."""
    return {
        "trapezoid": 1,
        "midpoint": 1,
        "simpson": 3,
        "boole": 5,
        "gauss_legendre": 2 * n - 1,
    }[check_rule(rule)]


def check_rule(rule: str, allowed: tuple[str, ...] = RULES, name: str = "rule") -> str:
    if not isinstance(rule, str) or rule not in allowed:
        raise ValueError(f"{name}: expected one of {', '.join(allowed)}; got {rule!r}")
    return rule


def _valid(rule: str, n: int) -> bool:
    if rule == "trapezoid":
        return n >= 2
    if rule == "simpson":
        return n >= 3 and n % 2 == 1
    if rule == "boole":
        return n >= 5 and (n - 1) % 4 == 0
    return n >= 1


def nearest_valid_n(rule: str, n: int) -> int:
    """The valid node count for ``rule`` closest to ``n`` (the larger one on a tie)."""
    check_rule(rule)
    for delta in range(0, 8):
        for cand in (n + delta, n - delta):
            if cand >= 1 and _valid(rule, cand):
                return cand
    raise AssertionError("unreachable")  # pragma: no cover


def check_n(rule: str, n: object, name: str = "n") -> int:
    """Validate a per-axis node count for ``rule``; raise ValueError naming the nearest valid n."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise ValueError(f"{name}: expected a positive int, got {n!r}")
    n = int(n)
    if n <= 0:
        raise ValueError(f"{name}: expected a positive int, got {n}")
    if not _valid(rule, n):
        need = {
            "trapezoid": "at least 2 nodes",
            "simpson": "an odd number of nodes >= 3",
            "boole": "n = 4k + 1 nodes (5, 9, 13, ...)",
        }[rule]
        raise ValueError(
            f"{name}: rule {rule!r} needs {need}, got {n}; nearest valid n is "
            f"{nearest_valid_n(rule, n)}"
        )
    return n


_INTEGRATORS: dict[str, object] = {}


def _integrator(rule: str):
    if rule not in _INTEGRATORS:
        import torchquad  # local: keeps torchquad off the import path of everything else

        cls = {
            "trapezoid": torchquad.Trapezoid,
            "simpson": torchquad.Simpson,
            "boole": torchquad.Boole,
            "gauss_legendre": torchquad.GaussLegendre,
        }[rule]
        _INTEGRATORS[rule] = cls()
    return _INTEGRATORS[rule]


def uniform_rule(rule: str, n: int, a: float, b: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes ``[n]`` and weights ``[n]`` (float64) of a composite rule with ``n`` nodes on [a, b].

    Newton-Cotes rules (trapezoid, Simpson, Boole) use equispaced nodes including the end
    points; ``gauss_legendre`` uses the Legendre roots mapped to [a, b]; ``midpoint`` uses the
    centres of ``n`` equal cells, each with weight (b - a) / n.
    """
    check_rule(rule)
    n = check_n(rule, n)
    if rule == "midpoint":
        h = (b - a) / n
        nodes = a + h * (torch.arange(n, dtype=torch.float64) + 0.5)
        return nodes, torch.full((n,), h, dtype=torch.float64)
    integ = _integrator(rule)
    domain = torch.tensor([[a, b]], dtype=torch.float64)
    if rule == "gauss_legendre":
        roots, w = integ._cached_points_and_weights(n)
        roots = torch.as_tensor(roots, dtype=torch.float64)
        nodes = integ._resize_roots(domain[0], roots)
        unit = torch.diag(torch.as_tensor(w, dtype=torch.float64))
        weights = integ._apply_composite_rule(unit, 1, None, domain)
        return nodes, weights
    points, hs, n_per_dim = integ.calculate_grid(n, domain)
    if n_per_dim != n:  # torchquad adjusts n silently; refuse rather than change the grid
        raise ValueError(f"n: torchquad would use {n_per_dim} nodes instead of {n} for {rule!r}")
    nodes = points.reshape(-1).to(torch.float64)
    # the composite rule applied to unit vectors e_j gives the weight of node j
    weights = integ._apply_composite_rule(torch.eye(n, dtype=torch.float64), 1, hs, domain)
    return nodes, weights.to(torch.float64)


def nodes_rule(nodes: torch.Tensor, a: float, b: float, rule: str = "trapezoid") -> torch.Tensor:
    """Weights ``[n]`` for arbitrary increasing nodes ``[n]`` in [a, b].

    ``trapezoid``: the integral of the piecewise-linear interpolant of the nodal values,
    extended as a constant to [a, x_1] and [x_n, b]; w_j = (x_{j+1} - x_{j-1}) / 2 in the
    interior (which is also the length of the cell of x_j). Exact on constants always and on
    linear functions when x_1 = a and x_n = b.
    """
    check_rule(rule, NODE_RULES)
    x = nodes.to(torch.float64)
    n = x.numel()
    if n == 1:
        return torch.tensor([b - a], dtype=torch.float64)
    left = torch.cat([torch.tensor([a], dtype=torch.float64), (x[1:] + x[:-1]) / 2])
    right = torch.cat([(x[1:] + x[:-1]) / 2, torch.tensor([b], dtype=torch.float64)])
    return right - left
