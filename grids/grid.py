"""Grid: nodes xi_j in a box Omega with quadrature weights omega_j > 0."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ._checks import as_real, numeric_array
from .domain import Domain, as_domain
from .quadrature import (
    NODE_RULES,
    RULES,
    check_grid_bytes,
    check_n,
    check_rule,
    nodes_rule,
    uniform_rule,
)

__all__ = ["Grid", "parse_to_args"]


class Grid:
    """A quadrature grid on a box: ``nodes`` ``[n, dim]``, ``weights`` ``[n]``.

    Every grid is a tensor product of 1-D node sets ``axes`` (one ``[n_i]`` tensor per
    dimension), flattened in row-major order (the last axis varies fastest), so that
    ``integrate(f(nodes)) = sum_j omega_j f(xi_j) ~ int_Omega f``.
    Build grids with [`uniform`][grids.grid.Grid.uniform] or
    [`from_nodes`][grids.grid.Grid.from_nodes]. A grid of N nodes in d dimensions takes
    8 (d + 1) N bytes (float64); more than ``grids.quadrature.MAX_GRID_BYTES`` (1 GiB by
    default) raises ValueError before anything is allocated.

    Args:
        axes: one floating 1-D node tensor ``[n_i]`` per axis.
        axis_weights: the quadrature weights of each axis, ``[n_i]`` each, matching ``axes``;
            the grid's weight of a node is the product of its axis weights.
        domain: the box the nodes lie in.
        rule: the name of the quadrature rule that made the weights (a key of
            ``grids.quadrature.RULES``).
        uniform: whether the nodes are those of the standard rule (``is_uniform``; such a
            grid is saved as its node counts, another as its nodes).

    Raises:
        ValueError: for a wrong domain, rule or flag, axes that are not one floating 1-D
            tensor per axis, weights of another shape, or a grid above the byte limit.
    """

    def __init__(
        self,
        axes: Sequence[torch.Tensor],
        axis_weights: Sequence[torch.Tensor],
        domain: Domain,
        rule: str,
        uniform: bool,
    ) -> None:
        if not isinstance(domain, Domain):
            raise ValueError(f"domain: expected a grids.Domain, got {domain!r:.80}")
        check_rule(rule, RULES)
        if not isinstance(uniform, bool):
            raise ValueError(f"uniform: expected True or False, got {uniform!r}")
        for label, seq in (("axes", axes), ("axis_weights", axis_weights)):
            if (
                isinstance(seq, (torch.Tensor, str, bytes))
                or not isinstance(seq, Sequence)
                or len(seq) != domain.dim
                or not all(
                    isinstance(a, torch.Tensor) and a.dim() == 1 and a.is_floating_point()
                    for a in seq
                )
            ):
                raise ValueError(
                    f"{label}: expected {domain.dim} floating 1-D tensors (one per axis), got "
                    f"{_describe(seq)}"
                )
        for i, (a, w) in enumerate(zip(axes, axis_weights)):
            if a.shape != w.shape or a.numel() == 0:
                raise ValueError(
                    f"axis_weights[{i}]: expected one weight per node ({a.numel()}), got "
                    f"shape {tuple(w.shape)}"
                )
        self.domain = domain
        self.rule = rule
        self.is_uniform = uniform
        self.axes = tuple(axes)
        self.axis_weights = tuple(axis_weights)
        self.shape = tuple(int(a.numel()) for a in self.axes)
        check_grid_bytes(self.shape, "n" if len(self.shape) == 1 else "shape")
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

        Rules (per axis): ``trapezoid``, ``simpson`` (odd n), ``boole`` (n = 4k + 1),
        ``gauss_legendre`` (the global n-point rule), ``midpoint`` (cell centres) and
        ``periodic`` (a + j (b - a) / n for j = 0..n-1, weights (b - a) / n: for functions of
        period b - a, exact on trigonometric polynomials of degree < n). An ``n`` the rule
        cannot take raises ValueError naming the nearest valid n. Set-up costs O(n) time and
        memory per axis; a grid above ``grids.quadrature.MAX_GRID_BYTES`` (1 GiB by default,
        8 (d + 1) N bytes for N nodes) raises ValueError before anything is allocated.

        Args:
            n: the node count on an interval, or one count per axis on a box.
            domain: the box, a `Domain` or its bounds.
            rule: the rule of every axis, one of the names above.

        Returns:
            The grid, with ``is_uniform`` True.
        """
        dom = as_domain(domain)
        rule = check_rule(rule, RULES)
        counts = _counts(n, dom.dim)
        labels = ["n" if dom.dim == 1 else f"n[{i}]" for i in range(dom.dim)]
        counts = tuple(check_n(rule, ni, label) for ni, label in zip(counts, labels))
        check_grid_bytes(counts)
        axes, weights = [], []
        for ni, (a, b) in zip(counts, dom.bounds):
            x, w = uniform_rule(rule, ni, a, b)
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

        Args:
            nodes: the nodes ``[n]`` (1-D) or one 1-D node set per axis.
            domain: the box, a `Domain` or its bounds.
            rule: how the weights are computed from the nodes, one of
                ``grids.quadrature.NODE_RULES`` (e.g. ``trapezoid``: half the neighbouring
                gaps, plus the gap to the box's end at either end).

        Returns:
            The grid, with ``is_uniform`` False.
        """
        dom = as_domain(domain)
        rule = check_rule(rule, NODE_RULES)
        if dom.dim == 1:
            sets = [nodes]
        else:
            if (
                isinstance(nodes, (torch.Tensor, str, bytes))
                or not hasattr(nodes, "__len__")
                or len(nodes) != dom.dim
            ):
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
        """The device of the nodes and weights."""
        return self.nodes.device

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype of the nodes and weights (float64 unless moved with ``to``)."""
        return self.nodes.dtype

    @property
    def spacing(self) -> float:
        """Mesh size h: the largest gap between neighbouring nodes on any axis."""
        gaps = [float((a[1:] - a[:-1]).max()) for a in self.axes if a.numel() > 1]
        return max(gaps) if gaps else max(b - a for a, b in self.domain.bounds)

    def integrate(self, values: torch.Tensor) -> torch.Tensor:
        """Quadrature ``sum_j omega_j values[..., j]``: ``[..., n] -> [...]``.

        Args:
            values: samples f(xi_j) at the nodes, ``[..., n]`` (floating or complex, on the
                grid's device).

        Returns:
            ``[...]``: the quadrature sums, approximating int_Omega f.
        """
        if not isinstance(values, torch.Tensor) or values.dim() == 0:
            raise ValueError(
                f"values: expected a tensor [..., {self.n}] (last dimension the grid size), got "
                f"{_describe(values)}"
            )
        if not (values.is_floating_point() or values.is_complex()):
            raise ValueError(f"values: expected a floating tensor, got dtype {values.dtype}")
        if values.device != self.weights.device:
            raise ValueError(
                f"values: expected a tensor on the grid's device {self.weights.device}, got one "
                f"on {values.device} (move the grid with grid.to(device))"
            )
        if values.shape[-1] != self.n:
            raise ValueError(
                f"values: last dimension must be the grid size {self.n}, got shape "
                f"{tuple(values.shape)}"
            )
        return values @ self.weights.to(values.dtype)

    def to(self, *args: object, **kwargs: object) -> Grid:
        """A copy with every tensor on ``device`` and/or in ``dtype``, with torch's conventions:
        ``to(dtype)``, ``to(device)``, ``to(device, dtype)``, ``to(tensor)`` (its device and
        dtype) or the keywords ``device=`` / ``dtype=``. The dtype must be a floating type.

        Args:
            *args: a device, a dtype, both (in that order) or a tensor.
            **kwargs: ``device=`` and / or ``dtype=``.

        Returns:
            The new grid (this one is unchanged).
        """
        device, dtype = parse_to_args(args, kwargs)
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
        """True when both grids have the same domain, shape and nodes (to ``tol``).

        Args:
            other: the grid to compare with.
            tol: the largest absolute difference between nodes that still counts as equal.

        Returns:
            Whether the grids agree (weights and rule are not compared).
        """
        if not isinstance(other, Grid):
            raise ValueError(f"other: expected a grids.Grid, got {type(other).__name__}")
        tol = as_real("tol", tol)
        if tol < 0:
            raise ValueError(f"tol: expected a finite number >= 0, got {tol}")
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
        """The grid as a JSON object, which [`from_json_dict`][grids.grid.Grid.from_json_dict]
        reads back.

        Returns:
            ``{"domain", "rule", "n"}`` for a uniform grid (``n`` an int, or a list per axis),
                ``{"domain", "rule", "nodes"}`` (one list of nodes per axis) otherwise.
        """
        d = {"domain": self.domain.to_json(), "rule": self.rule}
        if self.is_uniform:
            d["n"] = list(self.shape) if self.dim > 1 else self.shape[0]
        else:
            d["nodes"] = [a.double().cpu().tolist() for a in self.axes]
        return d

    @classmethod
    def from_json_dict(cls, d: dict, name: str = "grid") -> Grid:
        """The grid of a JSON object written by [`to_json`][grids.grid.Grid.to_json].

        Args:
            d: ``{"domain": ..., "rule": ..., "n": ...}`` or the same with ``"nodes"`` (one
                list per axis) instead of ``"n"``; ``rule`` defaults to ``trapezoid``.
            name: the prefix of error messages (where the object came from).

        Returns:
            The grid, built with [`uniform`][grids.grid.Grid.uniform] or
                [`from_nodes`][grids.grid.Grid.from_nodes].

        Raises:
            ValueError: for unknown or missing keys, or values the builders refuse.
        """
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
    if isinstance(s, (str, bytes)) or s is None:
        raise ValueError(f"{name}: expected a 1-D sequence of numbers, got {_describe(s)}")
    numeric_array(name, s, "a 1-D sequence of numbers")
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


def parse_to_args(args: tuple, kwargs: dict) -> tuple[torch.device | None, torch.dtype | None]:
    """``(device, dtype)`` from the arguments of a torch-style ``.to(...)`` call.

    Accepts ``(dtype)``, ``(device)``, ``(device, dtype)``, ``(tensor)`` (its device and dtype)
    and the keywords ``device=`` / ``dtype=``; a device is a ``torch.device``, a string such as
    ``"cpu"`` or ``"cuda:0"``, or a device index. The dtype must be a floating type (integer
    nodes and weights would lose their values).

    Args:
        args: the positional arguments of the ``.to`` call.
        kwargs: its keyword arguments.

    Returns:
        ``(device, dtype)``, either of them None when not given.

    Raises:
        ValueError: for anything torch's ``.to`` would not take, or a non-floating dtype.
    """
    kwargs = dict(kwargs)
    device = kwargs.pop("device", None)
    dtype = kwargs.pop("dtype", None)
    if kwargs:
        raise ValueError(
            f"to: unexpected keyword(s) {', '.join(sorted(kwargs))}; expected device= and/or dtype="
        )
    if len(args) > 2:
        raise ValueError(f"to: expected at most (device, dtype), got {len(args)} arguments")
    if len(args) == 1 and isinstance(args[0], torch.Tensor):
        if device is not None or dtype is not None:
            raise ValueError("to: a tensor argument takes no device= or dtype= keyword")
        return args[0].device, args[0].dtype
    for i, arg in enumerate(args):
        if isinstance(arg, torch.dtype):
            if dtype is not None:
                raise ValueError(f"to: dtype given twice ({dtype} and {arg})")
            dtype = arg
        elif isinstance(arg, (str, torch.device, int)) and not isinstance(arg, bool):
            if device is not None or i > 0:
                raise ValueError(
                    f"to: expected (device, dtype) in that order, with one device; got {args!r}"
                )
            device = arg
        else:
            raise ValueError(
                f"to: expected a device (torch.device, str or index), a dtype or a tensor, as "
                f"torch's .to takes; got {arg!r}"
            )
    if device is not None and not isinstance(device, torch.device):
        if isinstance(device, bool) or not isinstance(device, (str, int)):
            raise ValueError(f"device: expected a torch.device, str or index, got {device!r}")
        try:
            device = torch.device(device)
        except (RuntimeError, ValueError, TypeError):
            raise ValueError(f"device: not a torch device: {device!r}") from None
    if dtype is not None:
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"dtype: expected a torch.dtype, got {dtype!r}")
        if not dtype.is_floating_point:
            raise ValueError(f"dtype: grids need a floating dtype, got {dtype}")
    return device, dtype
