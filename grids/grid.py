"""Grid: nodes xi_j in a box Omega with quadrature weights omega_j > 0."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .domain import Domain, as_domain
from .quadrature import NODE_RULES, RULES, check_n, check_rule, nodes_rule, uniform_rule

__all__ = ["Grid"]


class Grid:
    """A quadrature grid on a box: ``nodes`` ``[n, dim]``, ``weights`` ``[n]``.

    Every grid is a tensor product of 1-D node sets ``axes`` (one ``[n_i]`` tensor per
    dimension), flattened in row-major order (the last axis varies fastest), so that
    ``integrate(f(nodes)) = sum_j omega_j f(xi_j) ~ int_Omega f``.
    Build grids with :meth:`uniform` or :meth:`from_nodes`.
    """

    def __init__(
        self,
        axes: Sequence[torch.Tensor],
        axis_weights: Sequence[torch.Tensor],
        domain: Domain,
        rule: str,
        uniform: bool,
    ) -> None:
        self.domain = domain
        self.rule = rule
        self.is_uniform = uniform
        self.axes = tuple(axes)
        self.axis_weights = tuple(axis_weights)
        self.shape = tuple(int(a.numel()) for a in self.axes)
        mesh = torch.meshgrid(*self.axes, indexing="ij")
        self.nodes = torch.stack([m.reshape(-1) for m in mesh], dim=-1)
        w = self.axis_weights[0]
        for wi in self.axis_weights[1:]:
            w = torch.outer(w, wi).reshape(-1)
        self.weights = w

    # ------------------------------------------------------------------ builders
    @classmethod
    def uniform(
        cls,
        n: int | Sequence[int],
        domain: Domain | Sequence = (0.0, 1.0),
        rule: str = "trapezoid",
    ) -> Grid:
        """Grid of a standard rule: ``n`` nodes on an interval, or ``(nx, ny)`` on a box.

        Rules: ``trapezoid``, ``simpson`` (odd n), ``boole`` (n = 4k + 1), ``gauss_legendre``,
        ``midpoint``. An ``n`` the rule cannot take raises ValueError naming the nearest valid n.
        """
        dom = as_domain(domain)
        rule = check_rule(rule, RULES)
        counts = _counts(n, dom.dim)
        axes, weights = [], []
        for i, (ni, (a, b)) in enumerate(zip(counts, dom.bounds)):
            label = "n" if dom.dim == 1 else f"n[{i}]"
            x, w = uniform_rule(rule, check_n(rule, ni, label), a, b)
            axes.append(x)
            weights.append(w)
        return cls(axes, weights, dom, rule, uniform=True)

    @classmethod
    def from_nodes(
        cls,
        nodes: torch.Tensor | Sequence,
        domain: Domain | Sequence = (0.0, 1.0),
        rule: str = "trapezoid",
    ) -> Grid:
        """Grid on arbitrary strictly increasing nodes, weights computed here.

        1-D: ``nodes`` ``[n]`` (or ``[n, 1]``). 2-D: a pair ``(x_nodes, y_nodes)`` of 1-D node
        sets whose tensor product is the grid. Nodes must be finite and lie in the domain.
        """
        dom = as_domain(domain)
        rule = check_rule(rule, NODE_RULES)
        if dom.dim == 1:
            sets = [nodes]
        else:
            if isinstance(nodes, torch.Tensor) or len(nodes) != dom.dim:
                raise ValueError(
                    f"nodes: a {dom.dim}-D domain needs a sequence of {dom.dim} 1-D node sets "
                    f"(one per axis), got {_describe(nodes)}"
                )
            sets = list(nodes)
        axes, weights = [], []
        for i, (s, (a, b)) in enumerate(zip(sets, dom.bounds)):
            label = "nodes" if dom.dim == 1 else f"nodes[{i}]"
            x = _check_nodes(s, a, b, label)
            axes.append(x)
            weights.append(nodes_rule(x, a, b, rule))
        return cls(axes, weights, dom, rule, uniform=False)

    # ------------------------------------------------------------------ properties
    @property
    def n(self) -> int:
        """Number of nodes."""
        return int(self.nodes.shape[0])

    @property
    def dim(self) -> int:
        """Dimension of the box."""
        return self.domain.dim

    @property
    def device(self) -> torch.device:
        return self.nodes.device

    @property
    def dtype(self) -> torch.dtype:
        return self.nodes.dtype

    @property
    def spacing(self) -> float:
        """Mesh size h: the largest gap between neighbouring nodes on any axis."""
        gaps = [float((a[1:] - a[:-1]).max()) for a in self.axes if a.numel() > 1]
        return max(gaps) if gaps else max(b - a for a, b in self.domain.bounds)

    def integrate(self, values: torch.Tensor) -> torch.Tensor:
        """Quadrature ``sum_j omega_j values[..., j]``: ``[..., n] -> [...]``."""
        if values.shape[-1] != self.n:
            raise ValueError(
                f"values: last dimension must be the grid size {self.n}, got shape "
                f"{tuple(values.shape)}"
            )
        return values @ self.weights.to(values.dtype)

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Grid:
        """A copy with every tensor on ``device`` and/or in ``dtype``."""
        new = object.__new__(Grid)
        new.domain, new.rule, new.is_uniform, new.shape = (
            self.domain,
            self.rule,
            self.is_uniform,
            self.shape,
        )
        new.axes = tuple(a.to(device=device, dtype=dtype) for a in self.axes)
        new.axis_weights = tuple(w.to(device=device, dtype=dtype) for w in self.axis_weights)
        new.nodes = self.nodes.to(device=device, dtype=dtype)
        new.weights = self.weights.to(device=device, dtype=dtype)
        return new

    def same_as(self, other: Grid, tol: float = 1e-12) -> bool:
        """True when both grids have the same domain, shape and nodes (to ``tol``)."""
        return (
            self.domain == other.domain
            and self.shape == other.shape
            and all(
                torch.allclose(a.cpu().double(), b.cpu().double(), atol=tol, rtol=0)
                for a, b in zip(self.axes, other.axes)
            )
        )

    # ------------------------------------------------------------------ serialisation
    def to_json(self) -> dict:
        d = {"domain": self.domain.to_json(), "rule": self.rule}
        if self.is_uniform:
            d["n"] = list(self.shape) if self.dim > 1 else self.shape[0]
        else:
            d["nodes"] = [a.double().cpu().tolist() for a in self.axes]
        return d

    @classmethod
    def from_json_dict(cls, d: dict, name: str = "grid") -> Grid:
        if not isinstance(d, dict):
            raise ValueError(
                f"{name}: expected an object with 'domain' and 'n' or 'nodes', got {d!r}"
            )
        unknown = set(d) - {"domain", "rule", "n", "nodes"}
        if unknown:
            raise ValueError(f"{name}: unknown keys {sorted(unknown)}")
        if "domain" not in d:
            raise ValueError(f"{name}: missing 'domain'")
        domain = as_domain(d["domain"], name=f"{name}.domain")
        rule = d.get("rule", "trapezoid")
        if ("n" in d) == ("nodes" in d):
            raise ValueError(f"{name}: needs exactly one of 'n' or 'nodes', got keys {sorted(d)}")
        try:
            if "n" in d:
                n = d["n"]
                return cls.uniform(tuple(n) if isinstance(n, list) else n, domain, rule)
            nodes = d["nodes"]
            if not isinstance(nodes, list) or len(nodes) != domain.dim:
                raise ValueError(f"nodes: expected {domain.dim} lists of nodes, got {nodes!r:.80}")
            nodes = nodes[0] if domain.dim == 1 else nodes
            return cls.from_nodes(nodes, domain, rule)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None

    def __repr__(self) -> str:
        kind = "uniform" if self.is_uniform else "nodes"
        shape = self.shape[0] if self.dim == 1 else self.shape
        return f"Grid({kind}, n={shape}, rule={self.rule!r}, domain={self.domain})"


def _counts(n: object, dim: int) -> tuple:
    if dim == 1:
        if isinstance(n, (tuple, list)):
            if len(n) != 1:
                raise ValueError(f"n: an interval takes one int, got {n!r}")
            return (n[0],)
        return (n,)
    if isinstance(n, (tuple, list)):
        if len(n) != dim:
            raise ValueError(f"n: a {dim}-D domain needs {dim} counts, got {n!r}")
        return tuple(n)
    raise ValueError(f"n: a {dim}-D domain needs a tuple of {dim} counts, got {n!r}")


def _describe(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)}"
    return repr(x)[:80]


def _check_nodes(s: object, a: float, b: float, name: str) -> torch.Tensor:
    try:
        x = torch.as_tensor(s, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(
            f"{name}: expected a 1-D sequence of numbers, got {_describe(s)}"
        ) from None
    if x.dim() == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.dim() != 1 or x.numel() == 0:
        raise ValueError(f"{name}: expected a non-empty 1-D set of nodes, got {_describe(s)}")
    bad = ~torch.isfinite(x)
    if bad.any():
        j = int(bad.nonzero()[0])
        raise ValueError(f"{name}: node {j} is not finite ({float(x[j])})")
    out = (x < a) | (x > b)
    if out.any():
        j = int(out.nonzero()[0])
        raise ValueError(f"{name}: node {j} = {float(x[j])} lies outside the domain [{a}, {b}]")
    if x.numel() > 1:
        d = x[1:] - x[:-1]
        if (d <= 0).any():
            j = int((d <= 0).nonzero()[0])
            raise ValueError(
                f"{name}: nodes must increase strictly, got node {j + 1} = {float(x[j + 1])} "
                f"<= node {j} = {float(x[j])}"
            )
    if not math.isfinite(float(x.sum())):  # pragma: no cover - guarded above
        raise ValueError(f"{name}: nodes must be finite")
    return x
