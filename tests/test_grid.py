"""Checks of ``grids.Grid``: non-uniform node grids, tensor-product boxes, integration, dtype.

References are independent of the code under test: ``numpy.trapezoid`` on the same nodes,
closed-form integrals of separable polynomials, ``numpy.linspace`` / hand-written products for
the row-major node order. Bad node sets must raise ValueError naming the argument and value;
``Grid.to`` takes torch's positional and keyword conventions and refuses anything else.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from grids import RULES, Domain, Grid, rule_degree

BOX = [(-1.0, 2.0), (0.5, 1.5)]  # a non-unit, non-square box


def f_smooth(x):
    return np.sin(3.0 * x) + x**2 - 0.5 * x


def interior_nodes(a, b, max_size=25):
    """Strategy: a sorted list of distinct points strictly inside (a, b)."""
    return st.lists(
        st.floats(a, b, exclude_min=True, exclude_max=True, allow_subnormal=False),
        min_size=0,
        max_size=max_size,
        unique=True,
    ).map(sorted)


def exact_monomial(p, a, b):
    return (b ** (p + 1) - a ** (p + 1)) / (p + 1)


# --------------------------------------------------------------------------- from_nodes, 1-D


@settings(max_examples=50, deadline=None)
@given(inner=interior_nodes(-1.5, 2.0))
def test_from_nodes_matches_numpy_trapezoid(inner):
    x = np.array([-1.5, *inner, 2.0])
    g = Grid.from_nodes(torch.tensor(x), (-1.5, 2.0))
    assert g.n == x.size and not g.is_uniform
    np.testing.assert_array_equal(g.nodes[:, 0].numpy(), x)
    val = float(g.integrate(torch.from_numpy(f_smooth(x))))
    assert val == pytest.approx(np.trapezoid(f_smooth(x), x), rel=1e-12, abs=1e-12)
    # and exact on linear functions when the end points are nodes
    lin = float(g.integrate(torch.from_numpy(3.0 - 2.0 * x)))
    assert lin == pytest.approx(3.0 * 3.5 - (2.0**2 - 1.5**2), abs=1e-12)


def test_from_nodes_weights_by_hand():
    x = [0.0, 0.1, 0.4, 0.5, 1.0]
    g = Grid.from_nodes(x)
    np.testing.assert_allclose(g.weights.numpy(), [0.05, 0.2, 0.2, 0.3, 0.25], atol=1e-15)


@settings(max_examples=50, deadline=None)
@given(inner=interior_nodes(0.0, 1.0).filter(lambda v: len(v) >= 1))
def test_from_nodes_constant_extension_when_end_points_are_not_nodes(inner):
    x = np.array(inner)
    g = Grid.from_nodes(x.tolist(), (0.0, 1.0))
    assert float(g.weights.sum()) == pytest.approx(1.0, abs=1e-13)  # exact on constants
    fx = f_smooth(x)
    # piecewise-linear interpolant, extended by the end values to [0, x_1] and [x_n, 1]
    xe = np.concatenate([[0.0], x, [1.0]])
    fe = np.concatenate([[fx[0]], fx, [fx[-1]]])
    val = float(g.integrate(torch.from_numpy(fx)))
    assert val == pytest.approx(np.trapezoid(fe, xe), rel=1e-12, abs=1e-12)


def test_constant_extension_not_exact_on_linear():
    # the documented limitation: without end point nodes, linear functions are not integrated
    # exactly (so the previous test does distinguish the two behaviours)
    g = Grid.from_nodes([0.25, 0.5])
    val = float(g.integrate(g.nodes[:, 0]))
    assert val == pytest.approx(0.25 * 0.25 + (0.5**2 - 0.25**2) / 2 + 0.5 * 0.5, abs=1e-15)
    assert abs(val - 0.5) > 1e-3


def test_from_nodes_single_node():
    g = Grid.from_nodes([0.3], (-1.0, 2.0))
    assert g.n == 1
    np.testing.assert_allclose(g.weights.numpy(), [3.0])
    assert g.spacing == pytest.approx(3.0)


def test_from_nodes_accepts_column():
    g = Grid.from_nodes(torch.tensor([[0.0], [0.5], [1.0]]))
    assert g.nodes.shape == (3, 1)
    np.testing.assert_allclose(g.weights.numpy(), [0.25, 0.5, 0.25])


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")
def test_tensor_subclasses_are_tensors():
    """A torch.nn.Parameter is read like the tensor it holds, as nodes and as a bound."""
    nodes = torch.tensor([0.0, 0.25, 1.0], dtype=torch.float64)
    g = Grid.from_nodes(torch.nn.Parameter(nodes.clone()))
    assert g.same_as(Grid.from_nodes(nodes))
    assert Domain((torch.nn.Parameter(torch.tensor(-1.0)), 2.0)) == Domain((-1.0, 2.0))


def test_spacing_is_largest_gap():
    g = Grid.from_nodes([0.0, 0.1, 0.45, 0.5, 1.0])
    assert g.spacing == pytest.approx(0.5)
    g2 = Grid.from_nodes(([0.0, 0.2, 1.0], [0.0, 0.9, 1.0]), [(0, 1), (0, 1)])
    assert g2.spacing == pytest.approx(0.9)


# --------------------------------------------------------------------------- 2-D boxes


@pytest.mark.parametrize(
    "rule, n",
    [
        ("trapezoid", (5, 4)),
        ("midpoint", (6, 3)),
        ("simpson", (7, 5)),
        ("boole", (9, 5)),
        ("gauss_legendre", (4, 3)),
        ("periodic", (6, 3)),
    ],
)
def test_2d_separable_polynomials(rule, n):
    (ax, bx), (ay, by) = BOX
    g = Grid.uniform(n, BOX, rule)
    assert g.nodes.shape == (n[0] * n[1], 2)
    assert g.weights.shape == (n[0] * n[1],)
    assert g.shape == n and g.dim == 2
    assert float(g.weights.sum()) == pytest.approx(3.0, rel=1e-13)
    dx, dy = rule_degree(rule, n[0]), rule_degree(rule, n[1])
    x, y = g.nodes[:, 0], g.nodes[:, 1]
    for p in range(dx + 1):
        for q in range(dy + 1):
            exact = exact_monomial(p, ax, bx) * exact_monomial(q, ay, by)
            val = float(g.integrate(x**p * y**q))
            assert val == pytest.approx(exact, rel=1e-12, abs=1e-12), (p, q)
    # one degree too many on the first axis is not exact
    p = dx + 1
    val = float(g.integrate(x**p))
    assert abs(val - exact_monomial(p, ax, bx) * (by - ay)) > 1e-6


def test_2d_row_major_order():
    g = Grid.uniform((4, 3), BOX, "trapezoid")
    xs = np.linspace(-1.0, 2.0, 4)
    ys = np.linspace(0.5, 1.5, 3)
    hx, hy = 1.0, 0.5
    wx = hx * np.array([0.5, 1, 1, 0.5])
    wy = hy * np.array([0.5, 1, 0.5])
    nodes = g.nodes.numpy()
    for i in range(4):
        for j in range(3):
            r = i * 3 + j  # the last axis varies fastest
            np.testing.assert_allclose(nodes[r], [xs[i], ys[j]], atol=1e-14)
            assert g.weights[r].item() == pytest.approx(wx[i] * wy[j], rel=1e-14)
    # reshaping to the grid shape gives the [nx, ny] table f(x_i, y_j)
    f = g.nodes[:, 0] * 10 + g.nodes[:, 1]
    table = f.reshape(4, 3).numpy()
    np.testing.assert_allclose(table, xs[:, None] * 10 + ys[None, :], atol=1e-13)


def test_2d_from_nodes_matches_nested_numpy_trapezoid():
    xs = np.array([-1.0, -0.3, 0.2, 1.1, 2.0])
    ys = np.array([0.5, 0.6, 1.2, 1.5])
    g = Grid.from_nodes((xs.tolist(), torch.tensor(ys)), BOX)
    assert g.nodes.shape == (20, 2) and g.shape == (5, 4)
    fx = np.exp(xs)[:, None] * np.cos(ys)[None, :] + xs[:, None] * ys[None, :] ** 2
    ref = np.trapezoid(np.trapezoid(fx, ys, axis=1), xs)
    vals = torch.from_numpy(fx.reshape(-1))
    assert float(g.integrate(vals)) == pytest.approx(ref, rel=1e-13)


def test_2d_single_int_rejected():
    with pytest.raises(ValueError, match=r"n: a 2-D domain needs a tuple of 2 counts, got 5"):
        Grid.uniform(5, BOX)
    with pytest.raises(ValueError, match=r"n: a 2-D domain needs 2 counts, got \(5, 5, 5\)"):
        Grid.uniform((5, 5, 5), BOX)


def test_2d_from_nodes_needs_one_set_per_axis():
    with pytest.raises(ValueError, match=r"nodes: a 2-D domain needs .*tensor of shape \(3,\)"):
        Grid.from_nodes(torch.tensor([0.0, 0.5, 1.0]), BOX)
    with pytest.raises(
        ValueError, match=r"nodes\[1\]: node 0 = 0\.0 lies outside .*\[0\.5, 1\.5\]"
    ):
        Grid.from_nodes(([0.0, 1.0], [0.0, 1.0]), BOX)


# --------------------------------------------------------------------------- integrate, to


@pytest.mark.parametrize("batch", [(), (3,), (2, 5)])
def test_integrate_shapes(batch):
    g = Grid.uniform(9, (0.0, 2.0), "simpson")
    c = torch.arange(1, math.prod(batch) + 1, dtype=torch.float64).reshape(batch)
    values = c[..., None] * g.nodes[:, 0] ** 3  # c * x^3, integral c * 4
    out = g.integrate(values)
    assert out.shape == batch
    torch.testing.assert_close(out, 4.0 * c, rtol=1e-13, atol=1e-13)


def test_integrate_wrong_size_rejected():
    g = Grid.uniform(5)
    with pytest.raises(ValueError, match=r"values: .*grid size 5, got shape \(2, 4\)"):
        g.integrate(torch.ones(2, 4, dtype=torch.float64))


def test_integrate_float32_values():
    g = Grid.uniform(9, (0.0, 2.0), "simpson")
    out = g.integrate(g.nodes[:, 0].float() ** 2)
    assert out.dtype == torch.float32
    assert float(out) == pytest.approx(8.0 / 3.0, rel=1e-6)


@pytest.mark.parametrize("rule", RULES)
def test_to_float32(rule):
    n = 9 if rule != "gauss_legendre" else 4
    g = Grid.uniform((n, n), BOX, rule)
    h = g.to(dtype=torch.float32)
    assert h.dtype == torch.float32
    assert h.nodes.dtype == torch.float32 and h.weights.dtype == torch.float32
    assert all(a.dtype == torch.float32 for a in h.axes)
    assert all(w.dtype == torch.float32 for w in h.axis_weights)
    torch.testing.assert_close(h.nodes, g.nodes.float())
    torch.testing.assert_close(h.weights, g.weights.float())
    assert h.shape == g.shape and h.domain == g.domain and h.rule == g.rule
    assert g.nodes.dtype == torch.float64  # the original is untouched
    assert h.same_as(g, tol=1e-6)
    assert h.device == torch.device("cpu")


def test_to_takes_torch_positional_conventions():
    g = Grid.uniform((5, 4), BOX, "periodic")
    ref32 = torch.zeros(1, dtype=torch.float32)
    for h in (
        g.to(torch.float32),
        g.to("cpu", torch.float32),
        g.to(torch.device("cpu"), torch.float32),
        g.to("cpu", dtype=torch.float32),
        g.to(device="cpu", dtype=torch.float32),
        g.to(ref32),
    ):
        assert h.dtype == torch.float32 and h.weights.dtype == torch.float32
        assert h.device == torch.device("cpu")
        torch.testing.assert_close(h.nodes, g.nodes.float())
    for h in (g.to("cpu"), g.to(torch.device("cpu")), g.to(device="cpu"), g.to()):
        assert h.dtype == torch.float64 and torch.equal(h.nodes, g.nodes)


@pytest.mark.parametrize(
    "args, kwargs, msg",
    [
        ((torch.int64,), {}, r"^dtype: grids need a floating dtype, got torch\.int64$"),
        ((), {"dtype": torch.bool}, r"^dtype: grids need a floating dtype"),
        ((), {"dtype": "float32"}, r"^dtype: expected a torch\.dtype, got 'float32'$"),
        (("nonsense",), {}, r"^device: not a torch device: 'nonsense'$"),
        ((3.5,), {}, r"^to: expected a device \(torch\.device, str or index\), a dtype .*3\.5"),
        ((torch.float32, torch.float64), {}, r"^to: dtype given twice"),
        ((torch.float32, "cpu"), {}, r"^to: expected \(device, dtype\) in that order"),
        (("cpu", "cpu"), {}, r"^to: expected \(device, dtype\) in that order"),
        (("cpu", torch.float32, True), {}, r"^to: expected at most \(device, dtype\), got 3"),
        ((), {"non_blocking": True}, r"^to: unexpected keyword\(s\) non_blocking"),
        ((torch.zeros(1),), {"dtype": torch.float32}, r"^to: a tensor argument takes no"),
        ((), {"device": 1.5}, r"^device: expected a torch\.device, str or index, got 1\.5$"),
    ],
)
def test_to_rejects_what_torch_would_not_take(args, kwargs, msg):
    g = Grid.uniform(5)
    with pytest.raises(ValueError, match=msg):
        g.to(*args, **kwargs)


def test_same_as():
    a = Grid.uniform(5, (0, 1))
    assert a.same_as(Grid.from_nodes([0, 0.25, 0.5, 0.75, 1.0]))
    assert not a.same_as(Grid.uniform(6, (0, 1)))
    assert not a.same_as(Grid.uniform(5, (0, 2)))
    assert not a.same_as(Grid.from_nodes([0, 0.25, 0.5, 0.76, 1.0]))


def test_domain_properties():
    d = Domain(BOX)
    assert d.dim == 2 and d.volume == pytest.approx(3.0)
    assert d.lower == (-1.0, 0.5) and d.upper == (2.0, 1.5)
    assert Domain((0, 1)) == Domain([(0.0, 1.0)])


@pytest.mark.parametrize(
    "d",
    [
        {"domain": [[-1.0, 2.0]], "n": 9, "rule": "simpson"},
        {"domain": BOX, "n": [5, 3], "rule": "gauss_legendre"},
        {"domain": [[0.0, 1.0]], "nodes": [[0.0, 0.1, 0.7, 1.0]]},
    ],
)
def test_grid_json_dict_round_trip(d):
    g = Grid.from_json_dict(d)
    h = Grid.from_json_dict(g.to_json())
    assert h.same_as(g, tol=0.0)
    assert torch.equal(h.weights, g.weights) and h.rule == g.rule


# --------------------------------------------------------------------------- bad nodes


def test_nan_node():
    with pytest.raises(ValueError, match=r"nodes: node 1 is not finite \(nan\)"):
        Grid.from_nodes([0.0, math.nan, 1.0])


def test_inf_node():
    with pytest.raises(ValueError, match=r"nodes: node 2 is not finite \(inf\)"):
        Grid.from_nodes([0.0, 0.5, math.inf])


@pytest.mark.parametrize("x, j, v", [([0.0, 0.5, 1.5], 2, "1.5"), ([-0.25, 0.5], 0, "-0.25")])
def test_out_of_domain_node(x, j, v):
    with pytest.raises(ValueError, match=rf"nodes: node {j} = {v} lies outside the domain"):
        Grid.from_nodes(x, (0.0, 1.0))


@pytest.mark.parametrize(
    "x, msg",
    [
        ([0.0, 0.5, 0.3, 1.0], r"node 2 = 0\.3 <= node 1 = 0\.5"),
        ([0.0, 0.5, 0.5, 1.0], r"node 2 = 0\.5 <= node 1 = 0\.5"),
        ([1.0, 0.0], r"node 1 = 0\.0 <= node 0 = 1\.0"),
    ],
)
def test_non_increasing_nodes(x, msg):
    with pytest.raises(ValueError, match=rf"nodes: nodes must increase strictly, got {msg}"):
        Grid.from_nodes(x)


def test_empty_or_bad_node_sets():
    with pytest.raises(ValueError, match=r"nodes: expected a non-empty 1-D set of nodes"):
        Grid.from_nodes([])
    with pytest.raises(ValueError, match=r"nodes: expected a 1-D sequence of numbers, got 'abc'"):
        Grid.from_nodes("abc")


def test_from_nodes_unknown_rule():
    with pytest.raises(ValueError, match=r"rule: expected one of trapezoid; got 'simpson'"):
        Grid.from_nodes([0.0, 0.5, 1.0], rule="simpson")
