"""One-dimensional quadrature rules: nodes and weights on an interval [a, b].

Every uniform rule is built in O(n) time and memory:

- Newton-Cotes rules (trapezoid, Simpson, Boole) and ``midpoint`` / ``periodic`` from their
  closed forms per panel (a repeating weight pattern, no matrix);
- ``gauss_legendre`` (one global n-point rule) by Newton's method on P_n(cos theta) per node:
  the three-term recurrence (scipy's compiled ``eval_legendre``) near the end points and for
  n <= 200, and Stieltjes' asymptotic series of P_n in the interior of [-1, 1] for larger n,
  so that each node costs O(1) there (the rules: docs/concepts.md, section 3).

The tests compare every rule with torchquad's public integrators for moderate n; nothing here
is called inside a forward pass. Rules on arbitrary (moving, non-uniform) nodes are computed
here too (``nodes_rule``).

Memory: no grid may take more than ``MAX_GRID_BYTES`` (1 GiB by default); a request that
would exceed it raises ValueError before anything is allocated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ._checks import as_int, as_real
from .registry import NamesView

__all__ = [
    "QuadratureRule",
    "QUADRATURE_RULES",
    "register_rule",
    "get_rule",
    "RULES",
    "NODE_RULES",
    "MAX_GRID_BYTES",
    "rule_degree",
    "check_n",
    "check_grid_bytes",
    "gauss_legendre_unit",
    "nearest_valid_n",
    "uniform_rule",
    "nodes_rule",
]


@dataclass(frozen=True)
class QuadratureRule:
    """One uniform rule on [a, b]: everything the library asks of it, in one entry.

    Attributes:
        name: the name ``Grid.uniform``, the builders and the command line take.
        nodes_weights: ``(n, a, b) -> (nodes [n], weights [n])`` as float64 NumPy arrays,
            in O(n).
        degree: ``n -> `` the highest polynomial degree integrated exactly with n nodes.
        valid: ``n -> `` whether the rule takes n nodes per axis.
        sizes: the node counts it takes, in words, for error messages.
        end_points: the nodes include a and b (refining keeps them: n -> (n - 1) w + 1).
        equispaced: the nodes are equally spaced (convolutions can read them as a lattice).
        periodic: nodes a + j (b - a) / n, j < n, for (b - a)-periodic functions.
    """

    name: str
    nodes_weights: Callable[[int, float, float], tuple[np.ndarray, np.ndarray]]
    degree: Callable[[int], int]
    valid: Callable[[int], bool] = lambda n: n >= 1
    sizes: str = "at least 1 node"
    end_points: bool = False
    equispaced: bool = False
    periodic: bool = False


QUADRATURE_RULES: dict[str, QuadratureRule] = {}
"""Every uniform quadrature rule, by name: `{name: QuadratureRule}` (`register_rule` adds
one; grids, schedules, transfers, the models and the command line read it at each use)."""


def register_rule(rule: QuadratureRule) -> QuadratureRule:
    """Add ``rule`` to ``QUADRATURE_RULES``: grids, schedules, transfers, the models and
    the command line take its name from then on.

    Args:
        rule: the rule; one of the same name is replaced.

    Returns:
        ``rule``, so that the call can wrap its definition.

    Raises:
        ValueError: when ``rule`` is not a [`QuadratureRule`][grids.quadrature.QuadratureRule].
    """
    if not isinstance(rule, QuadratureRule):
        raise ValueError(f"rule: expected a QuadratureRule, got {type(rule).__name__}")
    QUADRATURE_RULES[rule.name] = rule
    return rule


def get_rule(name: str, argument: str = "rule") -> QuadratureRule:
    """The registered rule ``name`` (ValueError naming ``argument`` otherwise).

    Args:
        name: a registered rule name, e.g. ``"trapezoid"``.
        argument: the argument named in the error message.

    Returns:
        The [`QuadratureRule`][grids.quadrature.QuadratureRule] registered as ``name``.
    """
    return QUADRATURE_RULES[check_rule(name, RULES, argument)]


RULES: Sequence[str] = NamesView(QUADRATURE_RULES)
"""The rule names `Grid.uniform` accepts: a live view of the keys of `QUADRATURE_RULES` (a
rule registered later is included)."""
NODE_RULES = ("trapezoid",)
"""The rule names `Grid.from_nodes` accepts (arbitrary increasing nodes)."""

MAX_GRID_BYTES = 1 << 30
"""Largest memory, in bytes, that one grid may take: nodes `[N, d]` and weights `[N]` in
float64, 8 (d + 1) N bytes for N = n_1 ... n_d nodes (the 1-D set-up needs about 128 bytes
per node of the longest axis on top). Larger requests raise ValueError before allocating;
raise this module attribute (`grids.quadrature.MAX_GRID_BYTES = ...`) to allow them."""

# bytes per node of the 1-D set-up: float64 nodes and weights plus numpy work arrays
_SETUP_BYTES_PER_NODE = 16 * 8


def rule_degree(rule: str, n: int) -> int:
    """Highest polynomial degree the rule integrates exactly with ``n`` nodes per axis.

    ``periodic`` is exact on constants only among polynomials (degree 0); what it integrates
    exactly are the trigonometric polynomials of degree < n on the period (b - a).

    Args:
        rule: a registered rule name.
        n: the node count per axis (one the rule takes).

    Returns:
        The degree: e.g. 1 for ``trapezoid``, 3 for ``simpson``, 2 n - 1 for
            ``gauss_legendre``.
    """
    entry = get_rule(rule)
    return entry.degree(check_n(rule, n))


def check_rule(rule: str, allowed: Sequence[str] | None = None, name: str = "rule") -> str:
    """``rule`` if it is one of ``allowed`` (default: every registered rule).

    Args:
        rule: the rule name to check.
        allowed: the names accepted; None for every registered rule.
        name: the argument named in the error message.

    Returns:
        ``rule``.

    Raises:
        ValueError: when ``rule`` is not a string among ``allowed``.
    """
    allowed = tuple(RULES if allowed is None else allowed)
    if not isinstance(rule, str) or rule not in allowed:
        raise ValueError(f"{name}: expected one of {', '.join(allowed)}; got {rule!r}")
    return rule


def _valid(rule: str, n: int) -> bool:
    return QUADRATURE_RULES[rule].valid(n)


def nearest_valid_n(rule: str, n: int) -> int:
    """The valid node count for ``rule`` closest to ``n`` (the larger one on a tie).

    Args:
        rule: a registered rule name.
        n: the wanted node count.

    Returns:
        The nearest count >= 1 that ``rule`` takes.

    Raises:
        ValueError: when the rule takes no count within 4096 of ``n``.
    """
    check_rule(rule)
    n = as_int("n", n)
    for delta in range(0, 1 << 12):  # a registered rule may take sparse sizes
        for cand in (n + delta, n - delta):
            if cand >= 1 and _valid(rule, cand):
                return cand
    raise ValueError(f"rule: {rule!r} takes no node count within 4096 of {n}")


def check_n(rule: str, n: object, name: str = "n") -> int:
    """Validate a per-axis node count for ``rule``; raise ValueError naming the nearest valid n.

    Python, NumPy and torch integers are accepted; bools, floats and strings are refused.

    Args:
        rule: a registered rule name.
        n: the node count per axis.
        name: the argument named in the error message.

    Returns:
        ``n`` as a Python int.
    """
    check_rule(rule)
    n = as_int(name, n)
    if not _valid(rule, n):
        need = QUADRATURE_RULES[rule].sizes
        raise ValueError(
            f"{name}: rule {rule!r} needs {need}, got {n}; nearest valid n is "
            f"{nearest_valid_n(rule, n)}"
        )
    return n


def check_grid_bytes(counts: tuple[int, ...], name: str = "n") -> int:
    """Bytes a grid with ``counts`` nodes per axis takes; ValueError above ``MAX_GRID_BYTES``.

    A grid of N = prod(counts) nodes in d = len(counts) dimensions stores nodes ``[N, d]`` and
    weights ``[N]`` in float64 (8 (d + 1) N bytes) and needs about 128 bytes per node of its
    longest axis while its 1-D rules are built.

    Args:
        counts: nodes per axis ``(n_1, ..., n_d)``.
        name: the argument named in the error message.

    Returns:
        The estimated bytes, at most ``MAX_GRID_BYTES``.

    Raises:
        ValueError: when the estimate exceeds ``MAX_GRID_BYTES`` (checked before allocating).
    """
    total = math.prod(int(c) for c in counts)
    need = 8 * (len(counts) + 1) * total + _SETUP_BYTES_PER_NODE * max(counts)
    if need > MAX_GRID_BYTES:
        shape = counts[0] if len(counts) == 1 else tuple(counts)
        raise ValueError(
            f"{name}: a grid of {shape} nodes ({total:,} in all) would take about "
            f"{need / 2**20:,.0f} MiB, above the bound of {MAX_GRID_BYTES / 2**20:,.0f} MiB "
            f"(grids.quadrature.MAX_GRID_BYTES); use fewer nodes or raise the bound"
        )
    return need


def uniform_rule(rule: str, n: int, a: float, b: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes ``[n]`` and weights ``[n]`` (float64) of a composite rule with ``n`` nodes on [a, b].

    Newton-Cotes rules (trapezoid, Simpson, Boole) use equispaced nodes including the end
    points, with the weights h/2 (1, 2, ..., 2, 1), h/3 (1, 4, 2, 4, ..., 4, 1) and
    2h/45 (7, 32, 12, 32, 14, ..., 32, 7); ``gauss_legendre`` uses the n roots of the Legendre
    polynomial P_n mapped to [a, b]; ``midpoint`` uses the centres of ``n`` equal cells, each
    with weight (b - a) / n; ``periodic`` uses a + j (b - a) / n, j = 0..n-1 (no duplicate end
    point), each with weight (b - a) / n: the trapezoid rule of a (b - a)-periodic function,
    exact on trigonometric polynomials of degree < n. O(n) time and memory; ValueError when
    the grid would exceed ``MAX_GRID_BYTES``.

    Args:
        rule: a registered rule name.
        n: the node count (one the rule takes).
        a: the left end point.
        b: the right end point, ``b > a``.

    Returns:
        ``(nodes, weights)``, two float64 tensors ``[n]``, the nodes increasing.
    """
    entry = get_rule(rule)
    n = check_n(rule, n)
    a, b = _check_interval(a, b)
    check_grid_bytes((n,))
    nodes, weights = entry.nodes_weights(n, a, b)
    return torch.from_numpy(np.asarray(nodes, np.float64)), torch.from_numpy(
        np.asarray(weights, np.float64)
    )


# --------------------------------------------------------------------------- the rules
def _cells(shift: float) -> Callable:
    """n equal cells of [a, b], a node at ``shift`` of each (midpoint 1/2, periodic 0)."""

    def nodes_weights(n: int, a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
        h = (b - a) / n
        return a + h * (np.arange(n, dtype=np.float64) + shift), np.full(n, h)

    return nodes_weights


def _newton_cotes(pattern: Callable[[int, float], np.ndarray]) -> Callable:
    """Equispaced nodes with both end points, weights from a per-panel ``pattern(n, h)``."""

    def nodes_weights(n: int, a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
        return np.linspace(a, b, n), pattern(n, (b - a) / (n - 1))

    return nodes_weights


def _trapezoid_weights(n: int, h: float) -> np.ndarray:
    w = np.full(n, h)
    w[0] = w[-1] = h / 2
    return w


def _simpson_weights(n: int, h: float) -> np.ndarray:
    w = np.empty(n)
    w[1::2] = 4.0 * h / 3  # panel midpoints
    w[0::2] = 2.0 * h / 3  # panel ends, shared by two panels
    w[0] = w[-1] = h / 3
    return w


def _boole_weights(n: int, h: float) -> np.ndarray:
    # panels of 4 cells, pattern 7, 32, 12, 32, (7 + 7 at shared ends)
    w = np.empty(n)
    c = 2.0 * h / 45
    w[1::2] = 32.0 * c
    w[2::4] = 12.0 * c
    w[0::4] = 14.0 * c
    w[0] = w[-1] = 7.0 * c
    return w


def _gauss_legendre(n: int, a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    t, w = gauss_legendre_unit(n)
    return (a + b) / 2 + ((b - a) / 2) * t, ((b - a) / 2) * w


# --------------------------------------------------------------------------- Gauss-Legendre
#: below this n every node uses the recurrence (O(n^2) work, under a millisecond)
_GL_RECURRENCE_N = 200
#: nodes with u = 2 n sin(theta) below the first bound use the recurrence; the others use the
#: interior series, in bands (each band sums as many terms as its smallest u needs)
_GL_BANDS = (50.0, 400.0)


def gauss_legendre_unit(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``[n]`` (increasing) and weights ``[n]`` of the n-point Gauss-Legendre rule on
    [-1, 1], in O(n) time and memory for large n.

    The nodes are x_k = cos(theta_k) for the roots theta_k of P_n(cos theta); the weights are
    w_k = 2 / (d/dtheta P_n(cos theta_k))^2 (= 2 / ((1 - x_k^2) P_n'(x_k)^2)). The rule is
    symmetric by construction: only theta <= pi/2 is computed and mirrored. Nodes are accurate
    to about an ulp and weights to about 1e-15 relative (checked against mpmath).

    Args:
        n: number of nodes, ``n >= 1``.

    Returns:
        ``(nodes, weights)``, two float64 numpy arrays of shape ``[n]``.
    """
    n = check_n("gauss_legendre", n)
    check_grid_bytes((n,))
    if n == 1:
        return np.zeros(1), np.full(1, 2.0)
    half = (n + 1) // 2  # roots with theta_k <= pi/2, k = 1..half (the middle one is pi/2)
    k = np.arange(1, half + 1, dtype=np.float64)
    # Tricomi's first-order estimate, then Newton in theta
    x0 = (1.0 - (n - 1) / (8.0 * n**3)) * np.cos(np.pi * (4.0 * k - 1.0) / (4.0 * n + 2.0))
    theta = np.arccos(np.clip(x0, -1.0, 1.0))
    if n % 2 == 1:
        theta[-1] = np.pi / 2
    dp = np.empty(half)
    u = 2.0 * n * np.sin(theta)
    if n <= _GL_RECURRENCE_N:
        u[:] = 0.0  # all by the recurrence
    edges = (0.0, *_GL_BANDS, np.inf)
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        band = (u >= lo) & (u < hi)
        if band.any():
            pfun = _legendre_recurrence if i == 0 else _legendre_stieltjes
            theta[band], dp[band] = _newton(theta[band], n, pfun)
    if n % 2 == 1:
        theta[-1] = np.pi / 2  # exact by symmetry; Newton leaves it there up to rounding
    x_half = np.cos(theta)  # decreasing from near 1 to >= 0
    w_half = 2.0 / dp**2
    if n % 2 == 1:
        x_half[-1] = 0.0
        nodes = np.concatenate([-x_half, x_half[-2::-1]])
        weights = np.concatenate([w_half, w_half[-2::-1]])
    else:
        nodes = np.concatenate([-x_half, x_half[::-1]])
        weights = np.concatenate([w_half, w_half[::-1]])
    return nodes, weights


def _newton(theta: np.ndarray, n: int, pfun, max_iter: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Roots of P_n(cos theta) near ``theta`` and d/dtheta P_n there, by Newton's method.

    Stops once every step is below 4e-16 theta (relative): the derivative from that last
    evaluation is then within ~cot(theta) 4e-16 theta <= 4e-16 (relative) of its value at the
    root, so no further evaluation is needed.
    """
    theta = theta.copy()
    for _ in range(max_iter):
        p, dp = pfun(theta, n)
        step = p / dp
        theta -= step
        if np.all(np.abs(step) <= 4e-16 * theta):
            break
    return theta, dp


def _legendre_recurrence(theta: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """P_n(cos theta) and d/dtheta P_n(cos theta) by the three-term recurrence (O(n) a point),
    for 0 < theta <= pi/2: d/dtheta P_n(cos theta) = -n (P_{n-1}(x) - x P_n(x)) / sin(theta).

    Near x = 1 the rounded x~ = fl(cos theta) misses cos theta by r = (1 - x~) - 2 sin^2(theta/2)
    (1 - x~ is exact there), which the recurrence would see magnified by P_n' ~ n^2; one Taylor
    step P(cos theta) = P(x~) + P'(x~) r removes it, so theta (and the weight) keep their
    relative accuracy even for the nodes closest to +-1.
    """
    from scipy.special import eval_legendre  # compiled recurrence

    s2 = 2.0 * np.sin(theta / 2) ** 2  # 1 - cos(theta), accurate for small theta
    x = 1.0 - s2
    r = np.where(x >= 0.5, (1.0 - x) - s2, 0.0)
    one_minus_x2 = (1.0 - x) * (1.0 + x)
    p = eval_legendre(n, x)
    q = eval_legendre(n - 1, x)
    # (1 - x^2) P_n' = n (P_{n-1} - x P_n) and (1 - x^2) P_{n-1}' = n (x P_{n-1} - P_n)
    p, q = p + n * (q - x * p) / one_minus_x2 * r, q + n * (x * q - p) / one_minus_x2 * r
    c = np.cos(theta)
    return p, -n * (q - c * p) / np.sin(theta)


def _legendre_stieltjes(theta: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """P_n(cos theta) and its theta-derivative by Stieltjes' series (interior of (0, pi)):

    P_n(cos theta) = C_n sum_m h_m cos(alpha_m) / (2 sin theta)^(m + 1/2),
    alpha_m = (n + m + 1/2) theta - (m + 1/2) pi / 2, h_0 = 1,
    h_{m+1} = h_m (m + 1/2)^2 / ((m + 1) (n + m + 3/2)), C_n = (4 / pi) prod_j j / (j + 1/2).

    Terms shrink like m! / (2 n sin theta)^m until m ~ 2 n sin theta: with 2 n sin theta >= 50
    about 20 terms reach double precision, with 2 n sin theta >= 400 about 8, so each node
    costs O(1).
    """
    s = 2.0 * np.sin(theta)
    cos_t = np.cos(theta)
    sin_t = s / 2.0
    alpha = (n + 0.5) * theta - np.pi / 4
    ca, sa = np.cos(alpha), np.sin(alpha)
    power = 1.0 / np.sqrt(s)  # (2 sin theta)^-(m + 1/2)
    p = np.zeros_like(theta)
    dp = np.zeros_like(theta)
    h = 1.0
    inv_smin = 1.0 / float(s.min())
    bound = 1.0  # h_m / (min 2 sin theta)^m: the largest relative size of term m
    for m in range(60):
        p += h * ca * power
        dp -= h * power * ((n + m + 0.5) * sa + (m + 0.5) * ca * cos_t * 2.0 / s)
        # alpha_{m+1} = alpha_m + theta - pi/2: rotate (cos, sin) by that angle
        ca, sa = ca * sin_t + sa * cos_t, sa * sin_t - ca * cos_t
        h *= (m + 0.5) ** 2 / ((m + 1) * (n + m + 1.5))
        power = power / s
        bound *= (m + 0.5) ** 2 / ((m + 1) * (n + m + 1.5)) * inv_smin
        if bound < 1e-17:
            break
    return _stieltjes_constant(n) * p, _stieltjes_constant(n) * dp


_C_CACHE: dict[int, float] = {}


def _stieltjes_constant(n: int) -> float:
    """C_n = (4 / pi) prod_{j=1..n} j / (j + 1/2), summed in logarithms without cancellation."""
    if n not in _C_CACHE:
        j = np.arange(1, n + 1, dtype=np.float64)
        _C_CACHE[n] = 4.0 / math.pi * math.exp(math.fsum(np.log1p(-0.5 / (j + 0.5))))
    return _C_CACHE[n]


def nodes_rule(nodes: torch.Tensor, a: float, b: float, rule: str = "trapezoid") -> torch.Tensor:
    """Weights ``[n]`` for arbitrary increasing nodes ``[n]`` in [a, b].

    ``trapezoid``: the integral of the piecewise-linear interpolant of the nodal values,
    extended as a constant to [a, x_1] and [x_n, b]; w_j = (x_{j+1} - x_{j-1}) / 2 in the
    interior (which is also the length of the cell of x_j). Exact on constants always and on
    linear functions when x_1 = a and x_n = b.

    Args:
        nodes: finite, strictly increasing nodes ``[n]`` (or ``[n, 1]``) in [a, b].
        a: the left end point.
        b: the right end point, ``b > a``.
        rule: the rule, one of ``NODE_RULES`` (only ``trapezoid``).

    Returns:
        The weights, a float64 tensor ``[n]`` summing to b - a.
    """
    from .grid import _check_nodes

    check_rule(rule, NODE_RULES)
    a, b = _check_interval(a, b)
    x = _check_nodes(nodes, a, b, "nodes")
    n = x.numel()
    if n == 1:
        return torch.tensor([b - a], dtype=torch.float64)
    left = torch.cat([torch.tensor([a], dtype=torch.float64), (x[1:] + x[:-1]) / 2])
    right = torch.cat([(x[1:] + x[:-1]) / 2, torch.tensor([b], dtype=torch.float64)])
    return right - left


def _check_interval(a: object, b: object) -> tuple[float, float]:
    """The end points of an interval: two finite numbers with ``a < b``."""
    a = as_real("a", a)
    b = as_real("b", b)
    if not a < b:
        raise ValueError(f"b: expected an end point above a = {a}, got {b}")
    return a, b


register_rule(QuadratureRule(
    "trapezoid", _newton_cotes(_trapezoid_weights), lambda n: 1, lambda n: n >= 2,
    "at least 2 nodes", end_points=True, equispaced=True,
))  # fmt: skip
register_rule(QuadratureRule(
    "simpson", _newton_cotes(_simpson_weights), lambda n: 3, lambda n: n >= 3 and n % 2 == 1,
    "an odd number of nodes >= 3", end_points=True, equispaced=True,
))  # fmt: skip
register_rule(QuadratureRule(
    "boole", _newton_cotes(_boole_weights), lambda n: 5, lambda n: n >= 5 and (n - 1) % 4 == 0,
    "n = 4k + 1 nodes (5, 9, 13, ...)", end_points=True, equispaced=True,
))  # fmt: skip
register_rule(QuadratureRule("gauss_legendre", _gauss_legendre, lambda n: 2 * n - 1))
register_rule(QuadratureRule("midpoint", _cells(0.5), lambda n: 1, equispaced=True))
# exact on constants only among polynomials; on trigonometric polynomials of degree < n
register_rule(QuadratureRule("periodic", _cells(0.0), lambda n: 0, equispaced=True, periodic=True))
