"""Checks of the transfers Pi between grids (``grids.make_transfer``: linear, nearest, l2,
galerkin).

Properties checked against independent references: hand-built matrices, exact reproduction of
(multi)linear functions on hypothesis-generated node sets, constant extrapolation, a
brute-force nearest-node search, conservation of the quadrature integral by l2, the
coarse -> fine -> coarse round trip on nested grids, the identity shortcut, wrap-around between
periodic grids (``numpy.interp(period=...)`` and a brute-force distance on the circle),
``Transfer.to`` with torch's conventions, the memory bound of the padded l2 form, and the
ValueErrors for a bad kind or different domains.
"""

import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from grids import TRANSFER_KINDS, Grid, Transfer, make_transfer

BOX = [(-1.0, 2.0), (0.5, 1.5)]


def node_set(a, b, min_inner=0, max_inner=15, ends=True):
    """Strategy: a strictly increasing node list in [a, b] (with both end points if ``ends``)."""
    inner = st.lists(
        st.floats(a, b, exclude_min=True, exclude_max=True, allow_subnormal=False),
        min_size=min_inner,
        max_size=max_inner,
        unique=True,
    ).map(sorted)
    if ends:
        return inner.map(lambda v: [a, *v, b])
    return inner


def some_grids():
    """A mixed bag of 1-D grids on [-1.5, 2] (uniform rules and non-uniform nodes)."""
    dom = (-1.5, 2.0)
    return [
        Grid.uniform(5, dom, "trapezoid"),
        Grid.uniform(17, dom, "trapezoid"),
        Grid.uniform(9, dom, "simpson"),
        Grid.uniform(9, dom, "boole"),
        Grid.uniform(6, dom, "gauss_legendre"),
        Grid.uniform(7, dom, "midpoint"),
        Grid.from_nodes([-1.5, -1.0, 0.1, 0.2, 1.7, 2.0], dom),
        Grid.from_nodes([-1.2, 0.0, 1.9], dom),
        Grid.from_nodes([0.3], dom),
    ]


GRID_PAIRS = [(s, d) for s in some_grids() for d in some_grids() if not s.same_as(d)]


# --------------------------------------------------------------------------- hand-built


def test_linear_matrix_by_hand():
    src = Grid.from_nodes([0.0, 0.5, 1.0])
    dst = Grid.from_nodes([0.0, 0.25, 0.6, 1.0])
    m = make_transfer(src, dst, "linear").matrix()
    ref = torch.tensor(
        [[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.8, 0.2], [0.0, 0.0, 1.0]], dtype=torch.float64
    )
    torch.testing.assert_close(m, ref, rtol=0, atol=1e-15)


def test_nearest_matrix_by_hand():
    src = Grid.from_nodes([0.0, 0.5, 1.0])
    dst = Grid.from_nodes([0.1, 0.3, 0.7, 0.8, 1.0])
    m = make_transfer(src, dst, "nearest").matrix()
    ref = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]], dtype=torch.float64)
    torch.testing.assert_close(m, ref, rtol=0, atol=0)


def test_l2_matrix_by_hand():
    # source trapezoid weights (1/4, 1/2, 1/4), target (1/2, 1/2); L (target -> source) =
    # [[1, 0], [1/2, 1/2], [0, 1]]; P = D_dst^-1 L^T D_src = [[1/2, 1/2, 0], [0, 1/2, 1/2]]
    src = Grid.from_nodes([0.0, 0.5, 1.0])
    dst = Grid.from_nodes([0.0, 1.0])
    p = make_transfer(src, dst, "l2")
    ref = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(p.matrix(), ref, rtol=0, atol=1e-15)
    assert p.kind == "l2" and not p.identity


def test_linear_2d_matrix_by_hand():
    src = Grid.from_nodes(([0.0, 1.0], [0.0, 1.0]), [(0, 1), (0, 1)])
    dst = Grid.from_nodes(([0.25], [0.5]), [(0, 1), (0, 1)])
    m = make_transfer(src, dst, "linear").matrix()
    # bilinear weights at (0.25, 0.5) of the corners (0,0), (0,1), (1,0), (1,1) (row-major)
    ref = torch.tensor([[0.75 * 0.5, 0.75 * 0.5, 0.25 * 0.5, 0.25 * 0.5]], dtype=torch.float64)
    torch.testing.assert_close(m, ref, rtol=0, atol=1e-15)


# --------------------------------------------------------------------------- matrix vs apply


@pytest.mark.parametrize("kind", TRANSFER_KINDS)
@pytest.mark.parametrize("pair", range(0, len(GRID_PAIRS), 5))
def test_matrix_and_apply_agree(kind, pair):
    src, dst = GRID_PAIRS[pair]
    p = make_transfer(src, dst, kind)
    m = p.matrix()
    assert m.shape == (dst.n, src.n) and p.n_src == src.n and p.n_dst == dst.n
    x = torch.randn(3, 2, src.n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = p(x)
    assert y.shape == (3, 2, dst.n)
    torch.testing.assert_close(y, x @ m.T, rtol=1e-13, atol=1e-13)
    # and on a 1-D input
    torch.testing.assert_close(p(x[0, 0]), m @ x[0, 0], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("kind", TRANSFER_KINDS)
def test_matrix_and_apply_agree_2d(kind):
    src = Grid.uniform((5, 4), BOX, "trapezoid")
    dst = Grid.uniform((3, 6), BOX, "gauss_legendre")
    p = make_transfer(src, dst, kind)
    x = torch.randn(4, src.n, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(p(x), x @ p.matrix().T, rtol=1e-13, atol=1e-13)


def test_apply_wrong_size_rejected():
    p = make_transfer(Grid.uniform(5), Grid.uniform(9))
    with pytest.raises(ValueError, match=r"x: .*source grid size 5, got shape \(2, 9\)"):
        p(torch.zeros(2, 9, dtype=torch.float64))


@pytest.mark.parametrize("kind", ["linear", "nearest"])
def test_rows_sum_to_one(kind):
    for src, dst in GRID_PAIRS:
        m = make_transfer(src, dst, kind).matrix()
        torch.testing.assert_close(m.sum(1), torch.ones(dst.n, dtype=torch.float64))
        assert bool((m >= 0).all())


# --------------------------------------------------------------------------- linear


@settings(max_examples=50, deadline=None)
@given(
    xs=node_set(-1.5, 2.0),
    ys=node_set(-1.5, 2.0),
    a=st.floats(-3, 3),
    b=st.floats(-3, 3),
)
def test_linear_reproduces_linear_functions(xs, ys, a, b):
    src = Grid.from_nodes(xs, (-1.5, 2.0))
    dst = Grid.from_nodes(ys, (-1.5, 2.0))
    p = make_transfer(src, dst, "linear")
    f_src = a + b * torch.tensor(xs, dtype=torch.float64)
    f_dst = a + b * torch.tensor(ys, dtype=torch.float64)
    torch.testing.assert_close(p(f_src), f_dst, rtol=0, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    sx=node_set(-1.0, 2.0, max_inner=6),
    sy=node_set(0.5, 1.5, max_inner=6),
    dx=node_set(-1.0, 2.0, max_inner=6),
    dy=node_set(0.5, 1.5, max_inner=6),
    c=st.lists(st.floats(-2, 2), min_size=4, max_size=4),
)
def test_linear_reproduces_multilinear_functions_2d(sx, sy, dx, dy, c):
    src = Grid.from_nodes((sx, sy), BOX)
    dst = Grid.from_nodes((dx, dy), BOX)

    def f(nodes):
        x, y = nodes[:, 0], nodes[:, 1]
        return c[0] + c[1] * x + c[2] * y + c[3] * x * y

    p = make_transfer(src, dst, "linear")
    torch.testing.assert_close(p(f(src.nodes)), f(dst.nodes), rtol=0, atol=1e-12)


def test_linear_not_exact_on_quadratics():
    # shows that the reproduction tests can fail: x^2 is not reproduced between these grids
    src = Grid.uniform(5, (-1.5, 2.0))
    dst = Grid.uniform(8, (-1.5, 2.0))
    p = make_transfer(src, dst, "linear")
    err = (p(src.nodes[:, 0] ** 2) - dst.nodes[:, 0] ** 2).abs().max()
    assert float(err) > 1e-3


@settings(max_examples=40, deadline=None)
@given(
    xs=node_set(0.0, 1.0, min_inner=1, ends=False),
    ys=node_set(0.0, 1.0, ends=True),
)
def test_constant_extrapolation(xs, ys):
    """Outside the source node range, linear and nearest return the end values."""
    src = Grid.from_nodes(xs, (0.0, 1.0))
    dst = Grid.from_nodes(ys, (0.0, 1.0))
    vals = torch.tensor(np.cos(7.0 * np.array(xs)) + 2.0, dtype=torch.float64)
    yv = torch.tensor(ys, dtype=torch.float64)
    below, above = yv <= xs[0], yv >= xs[-1]
    for kind in ("linear", "nearest"):
        out = make_transfer(src, dst, kind)(vals)
        torch.testing.assert_close(out[below], vals[0].expand(int(below.sum())), rtol=0, atol=0)
        torch.testing.assert_close(out[above], vals[-1].expand(int(above.sum())), rtol=0, atol=0)


def test_constant_extrapolation_2d():
    src = Grid.from_nodes(([0.0, 1.0], [0.8, 1.2]), BOX)
    dst = Grid.from_nodes(([-1.0, 2.0], [0.5, 1.5]), BOX)
    x = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)  # f at (0,.8),(0,1.2),(1,.8),...
    out = make_transfer(src, dst, "linear")(x)
    torch.testing.assert_close(out, x, rtol=0, atol=0)  # the corners map to the corners


# --------------------------------------------------------------------------- nearest


@settings(max_examples=50, deadline=None)
@given(
    xs=node_set(-1.5, 2.0, min_inner=0, ends=False).filter(bool),
    ys=node_set(-1.5, 2.0, ends=True),
)
def test_nearest_matches_brute_force(xs, ys):
    src = Grid.from_nodes(xs, (-1.5, 2.0))
    dst = Grid.from_nodes(ys, (-1.5, 2.0))
    m = make_transfer(src, dst, "nearest").matrix().numpy()
    x, y = np.array(xs), np.array(ys)
    dist = np.abs(y[:, None] - x[None, :])
    chosen = m.argmax(1)
    assert np.all(m.max(1) == 1.0)
    # the chosen node is at the minimal distance (ties may go either way)
    np.testing.assert_array_equal(dist[np.arange(y.size), chosen], dist.min(1))
    untied = np.sort(dist, 1)[:, 1] - dist.min(1) > 1e-12 if x.size > 1 else np.ones(y.size, bool)
    np.testing.assert_array_equal(chosen[untied], dist.argmin(1)[untied])


def test_nearest_2d_brute_force():
    src = Grid.from_nodes(([-1.0, -0.2, 0.9, 2.0], [0.5, 0.7, 1.5]), BOX)
    dst = Grid.uniform((7, 5), BOX, "gauss_legendre")
    m = make_transfer(src, dst, "nearest").matrix().numpy()
    # per-axis nearest = nearest in the max / Euclidean sense on a tensor grid
    d2 = ((dst.nodes.numpy()[:, None, :] - src.nodes.numpy()[None, :, :]) ** 2).sum(-1)
    np.testing.assert_array_equal(m.argmax(1), d2.argmin(1))


# --------------------------------------------------------------------------- l2


@pytest.mark.parametrize("pair", range(len(GRID_PAIRS)))
def test_l2_conserves_integral(pair):
    src, dst = GRID_PAIRS[pair]
    p = make_transfer(src, dst, "l2")
    x = torch.randn(5, src.n, dtype=torch.float64, generator=torch.Generator().manual_seed(pair))
    lhs = (p(x) * dst.weights).sum(-1)
    rhs = (x * src.weights).sum(-1)
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(xs=node_set(0.0, 1.0, min_inner=1, ends=False), ys=node_set(0.0, 1.0, ends=False))
def test_l2_conserves_integral_random_nodes(xs, ys):
    if not ys:
        ys = [0.5]
    src = Grid.from_nodes(xs)
    dst = Grid.from_nodes(ys)
    x = torch.tensor(np.sin(5.0 * np.array(xs)) + 1.5, dtype=torch.float64)
    y = make_transfer(src, dst, "l2")(x)
    assert float((y * dst.weights).sum()) == pytest.approx(
        float((x * src.weights).sum()), rel=1e-12, abs=1e-12
    )


def test_l2_conserves_integral_2d():
    src = Grid.uniform((9, 5), BOX, "simpson")
    dst = Grid.from_nodes(([-1.0, 0.0, 0.3, 2.0], [0.5, 1.1, 1.5]), BOX)
    x = torch.randn(src.n, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    y = make_transfer(src, dst, "l2")(x)
    assert float(dst.integrate(y)) == pytest.approx(float(src.integrate(x)), rel=1e-12)


def test_linear_does_not_conserve_integral():
    # the property l2 is built for does not hold for linear (so the l2 test is meaningful)
    src = Grid.from_nodes([0.0, 0.1, 0.2, 1.0])
    dst = Grid.uniform(3)
    x = torch.tensor([0.0, 5.0, 0.0, 1.0], dtype=torch.float64)
    y = make_transfer(src, dst, "linear")(x)
    assert abs(float(dst.integrate(y)) - float(src.integrate(x))) > 1e-2


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_coarse_fine_coarse_is_identity(factor):
    coarse = Grid.uniform(5, (-1.5, 2.0))
    fine = Grid.uniform(4 * factor + 1, (-1.5, 2.0))
    up = make_transfer(coarse, fine, "linear")
    down = make_transfer(fine, coarse, "linear")
    x = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(factor))
    torch.testing.assert_close(down(up(x)), x, rtol=0, atol=1e-13)
    torch.testing.assert_close(down.matrix() @ up.matrix(), torch.eye(5, dtype=torch.float64))


def test_coarse_fine_coarse_2d_nested_node_grids():
    cx, cy = [-1.0, 0.0, 2.0], [0.5, 1.0, 1.5]
    fx, fy = [-1.0, -0.5, 0.0, 0.7, 1.4, 2.0], [0.5, 0.75, 1.0, 1.25, 1.5]
    coarse = Grid.from_nodes((cx, cy), BOX)
    fine = Grid.from_nodes((fx, fy), BOX)
    up = make_transfer(coarse, fine, "linear")
    down = make_transfer(fine, coarse, "linear")
    x = torch.randn(coarse.n, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(down(up(x)), x, rtol=0, atol=1e-13)


@pytest.mark.parametrize("kind", TRANSFER_KINDS)
def test_identity_when_grids_coincide(kind):
    a = Grid.uniform(9, (-1.5, 2.0), "trapezoid")
    b = Grid.from_nodes(np.linspace(-1.5, 2.0, 9), (-1.5, 2.0))
    p = make_transfer(a, b, kind)
    assert p.identity and p.kind == kind
    x = torch.randn(2, 9, dtype=torch.float64)
    y = p(x)
    assert torch.equal(y, x)
    torch.testing.assert_close(p.matrix(), torch.eye(9, dtype=torch.float64))
    q = make_transfer(a, Grid.uniform(8, (-1.5, 2.0)), kind)
    assert not q.identity


def test_transfer_to_dtype():
    p = make_transfer(Grid.uniform(5), Grid.uniform(7), "l2")
    q = p.to(dtype=torch.float32)
    assert isinstance(q, Transfer)
    assert q.coeff.dtype == torch.float32 and q.index.dtype == torch.long
    x = torch.rand(5)
    torch.testing.assert_close(q(x), (p.matrix() @ x.double()).float(), rtol=1e-6, atol=1e-6)


def test_transfer_to_positional_conventions():
    p = make_transfer(Grid.uniform(5), Grid.uniform(7), "linear")
    for q in (
        p.to(torch.float32),
        p.to("cpu", torch.float32),
        p.to(torch.device("cpu"), dtype=torch.float32),
        p.to(torch.zeros(1)),
    ):
        assert q.coeff.dtype == torch.float32 and q.index.dtype == torch.long
        assert q.coeff.device == torch.device("cpu")
        torch.testing.assert_close(q.matrix(), p.matrix().float())
    assert p.to("cpu").coeff.dtype == torch.float64
    with pytest.raises(ValueError, match=r"^dtype: grids need a floating dtype, got torch\.int32"):
        p.to(torch.int32)
    with pytest.raises(ValueError, match=r"^to: expected a device .*got \[1\]"):
        p.to([1])


# --------------------------------------------------------------------------- periodic grids

L_PER = 3.5  # the period of (-1.5, 2.0)


def periodic_nodes(min_size=1, max_size=12):
    """Strategy: sorted distinct nodes in [-1.5, 2.0) starting at -1.5 (as periodic grids do)."""
    return st.lists(
        st.floats(-1.5, 2.0, exclude_min=True, exclude_max=True, allow_subnormal=False),
        min_size=min_size - 1,
        max_size=max_size - 1,
        unique=True,
    ).map(lambda v: [-1.5, *sorted(v)])


def periodic_grid(nodes):
    """A grid whose rule is ``periodic`` on arbitrary nodes (uniform ones are a special case)."""
    g = Grid.from_nodes(nodes, (-1.5, 2.0))
    g.rule = "periodic"
    return g


@settings(max_examples=40, deadline=None)
@given(
    n_src=st.integers(1, 12),
    n_dst=st.integers(1, 12),
    seed=st.integers(0, 2**16),
)
def test_periodic_linear_matches_numpy_interp_with_period(n_src, n_dst, seed):
    """Between periodic grids, linear interpolation wraps around: numpy.interp(period=L)."""
    src = Grid.uniform(n_src, (-1.5, 2.0), "periodic")
    dst = Grid.uniform(n_dst, (-1.5, 2.0), "periodic")
    x = torch.randn(n_src, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    p = make_transfer(src, dst, "linear")
    ref = np.interp(dst.axes[0].numpy(), src.axes[0].numpy(), x.numpy(), period=L_PER)
    np.testing.assert_allclose(p(x).numpy(), ref, rtol=0, atol=1e-13)


@settings(max_examples=40, deadline=None)
@given(xs=periodic_nodes(2), ys=periodic_nodes(1))
def test_periodic_linear_wraps_on_arbitrary_nodes(xs, ys):
    src, dst = periodic_grid(xs), periodic_grid(ys)
    vals = np.cos(2 * np.pi * np.array(xs) / L_PER) + np.array(xs) ** 2
    p = make_transfer(src, dst, "linear")
    ref = np.interp(np.array(ys), np.array(xs), vals, period=L_PER)
    np.testing.assert_allclose(p(torch.from_numpy(vals)).numpy(), ref, rtol=0, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(xs=periodic_nodes(2), ys=periodic_nodes(1))
def test_periodic_nearest_uses_the_periodic_distance(xs, ys):
    src, dst = periodic_grid(xs), periodic_grid(ys)
    p = make_transfer(src, dst, "nearest")
    got = p.index[:, 0].numpy()
    for i, y in enumerate(ys):
        d = np.abs(np.array(xs) - y)
        d = np.minimum(d, L_PER - d)  # distance on the circle
        assert d[got[i]] <= d.min() + 1e-12, (y, xs, got[i])


@pytest.mark.parametrize("n_src, n_dst", [(8, 5), (5, 8), (7, 7 * 3), (16, 1)])
def test_periodic_l2_conserves_integral(n_src, n_dst):
    src = Grid.uniform(n_src, (-1.5, 2.0), "periodic")
    dst = Grid.uniform(n_dst, (-1.5, 2.0), "periodic")
    x = torch.randn(3, n_src, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = make_transfer(src, dst, "l2")(x)
    torch.testing.assert_close(dst.integrate(y), src.integrate(x), rtol=1e-13, atol=1e-13)


def test_periodic_2d_wraps_on_both_axes():
    box = [(0.0, 1.0), (0.0, 2.0)]
    src = Grid.uniform((4, 3), box, "periodic")
    dst = Grid.uniform((5, 7), box, "periodic")
    fa = np.array([0.3, -1.0, 2.0, 0.5])  # values along x (period 1)
    fb = np.array([1.0, 4.0, -2.0])  # values along y (period 2)
    vals = torch.from_numpy(np.outer(fa, fb).reshape(-1))
    ia = np.interp(dst.axes[0].numpy(), src.axes[0].numpy(), fa, period=1.0)
    ib = np.interp(dst.axes[1].numpy(), src.axes[1].numpy(), fb, period=2.0)
    got = make_transfer(src, dst, "linear")(vals).numpy()
    np.testing.assert_allclose(got, np.outer(ia, ib).reshape(-1), rtol=0, atol=1e-13)


def test_no_wrap_unless_both_grids_are_periodic():
    """A periodic source and a trapezoid target: constant extrapolation past the last node."""
    src = Grid.uniform(4, (0.0, 1.0), "periodic")  # nodes 0, 0.25, 0.5, 0.75
    dst = Grid.uniform(5, (0.0, 1.0), "trapezoid")  # ..., 1.0
    x = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    assert float(make_transfer(src, dst, "linear")(x)[-1]) == 4.0
    wrapped = make_transfer(src, Grid.uniform(8, (0.0, 1.0), "periodic"), "linear")(x)
    assert float(wrapped[-1]) == pytest.approx(2.5)  # halfway between node 3 (4) and node 0 (1)


# --------------------------------------------------------------------------- memory


def test_l2_padding_checked_against_the_memory_bound(monkeypatch):
    """A target node whose cell covers most of the source makes one long row; the padded form
    is refused with a ValueError stating the bound."""
    from grids import quadrature

    src = Grid.uniform(1001, (0.0, 1.0))
    dst = Grid.from_nodes([*np.linspace(0.0, 1e-3, 1000), 1.0], (0.0, 1.0))
    make_transfer(src, dst, "l2")  # fine under the default bound
    monkeypatch.setattr(quadrature, "MAX_GRID_BYTES", 1_000_000)
    with pytest.raises(ValueError, match=r"^target: the padded l2 transfer .*MAX_GRID_BYTES"):
        make_transfer(src, dst, "l2")
    make_transfer(src, dst, "linear")  # two entries a row: fine


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kind", ["cubic", "Linear", "", None])
def test_bad_kind(kind):
    with pytest.raises(
        ValueError, match=rf"^kind: expected one of linear, nearest, l2, galerkin; got {kind!r}$"
    ):
        make_transfer(Grid.uniform(5), Grid.uniform(7), kind)


@pytest.mark.parametrize("kind", [["linear"], b"linear", 3])
def test_bad_kind_of_another_type(kind):
    """A kind that is not a string (an unhashable list included) is refused like a bad name,
    by the transfer and by make_transfer."""
    want = rf"^kind: expected one of linear, nearest, l2, galerkin; got {re.escape(repr(kind))}$"
    with pytest.raises(ValueError, match=want):
        make_transfer(Grid.uniform(5), Grid.uniform(7), kind)
    with pytest.raises(ValueError, match=want):
        Transfer(torch.zeros(2, 1, dtype=torch.long), torch.ones(2, 1), 3, kind)


def test_transfer_kinds_is_the_tuple_of_names():
    assert TRANSFER_KINDS == ("linear", "nearest", "l2", "galerkin")
    assert isinstance(TRANSFER_KINDS, tuple)


def test_different_domains():
    with pytest.raises(
        ValueError,
        match=r"target: grids must share a domain, got Domain\(\(0\.0, 1\.0\)\) and "
        r"Domain\(\(0\.0, 2\.0\)\)",
    ):
        make_transfer(Grid.uniform(5, (0, 1)), Grid.uniform(5, (0, 2)))
    with pytest.raises(ValueError, match=r"target: grids must share a domain"):
        make_transfer(Grid.uniform(5, (0, 1)), Grid.uniform((5, 5), [(0, 1), (0, 1)]))


# --------------------------------------------------------------------------- galerkin


def _np_hat_integrals(src: np.ndarray, dst: np.ndarray, x: np.ndarray, fine: int = 400001):
    """int phi_i x_h dxi / int phi_i by a fine trapezoid sum of np.interp interpolants (an
    independent reference; both interpolants constant past their end nodes)."""
    lo, hi = min(src[0], dst[0]), max(src[-1], dst[-1])
    z = np.linspace(lo, hi, fine)
    xh = np.interp(z, src, x)
    out = []
    for i in range(dst.size):
        e = np.zeros(dst.size)
        e[i] = 1.0
        phi = np.interp(z, dst, e)
        out.append(np.trapezoid(phi * xh, z) / np.trapezoid(phi, z))
    return np.array(out)


@pytest.mark.parametrize(
    "src, dst",
    [
        (Grid.uniform(17, (-1.5, 2.0)), Grid.uniform(6, (-1.5, 2.0))),
        (Grid.uniform(9, (-1.5, 2.0), "midpoint"), Grid.uniform(5, (-1.5, 2.0))),
        (
            Grid.from_nodes([-1.5, -1.0, 0.1, 0.2, 1.7, 2.0], (-1.5, 2.0)),
            Grid.from_nodes([-1.2, 0.0, 1.9], (-1.5, 2.0)),
        ),
    ],
)
def test_galerkin_restriction_is_the_exact_hat_average(src, dst):
    x = np.random.default_rng(0).standard_normal(src.n)
    p = make_transfer(src, dst, "galerkin")
    got = p(torch.as_tensor(x)).numpy()
    ref = _np_hat_integrals(src.axes[0].double().numpy(), dst.axes[0].double().numpy(), x)
    np.testing.assert_allclose(got, ref, atol=1e-8)
    assert np.abs(got - make_transfer(src, dst, "l2")(torch.as_tensor(x)).numpy()).max() > 1e-3


def test_galerkin_gives_the_same_numbers_for_the_same_function_on_any_source_grid():
    """A rough function on 17 nodes, moved to nested refinements by linear interpolation (the
    same piecewise-linear function): restricted to 9 and 5 nodes, the galerkin transfer gives
    the same values from every source grid; the lumped l2 transfer does not."""
    x = torch.randn(3, 17, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    g17 = Grid.uniform(17).to(torch.float64)
    for coarse in (Grid.uniform(9), Grid.uniform(5), Grid.uniform(6)):
        coarse = coarse.to(torch.float64)
        ref = make_transfer(g17, coarse, "galerkin")(x)
        for n in (33, 65, 129):
            g = Grid.uniform(n).to(torch.float64)
            xf = make_transfer(g17, g, "linear")(x)
            torch.testing.assert_close(make_transfer(g, coarse, "galerkin")(xf), ref)
        l2 = make_transfer(Grid.uniform(65).to(torch.float64), coarse, "l2")
        xf = make_transfer(g17, Grid.uniform(65).to(torch.float64), "linear")(x)
        assert float((l2(xf) - make_transfer(g17, coarse, "l2")(x)).abs().max()) > 1e-2


def test_galerkin_interpolates_onto_finer_grids_and_keeps_constants():
    src, dst = Grid.uniform(9, BOX[0]), Grid.uniform(17, BOX[0])
    torch.testing.assert_close(
        make_transfer(src, dst, "galerkin").matrix(), make_transfer(src, dst, "linear").matrix()
    )
    for s, d in [(Grid.uniform((9, 11), BOX), Grid.uniform((5, 4), BOX))] + [
        (Grid.uniform(32, rule="periodic"), Grid.uniform(n, rule="periodic")) for n in (8, 13)
    ]:
        p = make_transfer(s, d, "galerkin")
        torch.testing.assert_close(p(torch.ones(s.n)), torch.ones(d.n))


def test_galerkin_periodic_wraps_and_2d_is_the_product_of_the_axes():
    """Periodic: the coarse hat of node 0 takes mass from both ends of the fine grid, and
    the values match a three-period unrolled reference; 2-D: the matrix is the Kronecker
    product of the two 1-D matrices."""
    s, d = Grid.uniform(16, rule="periodic"), Grid.uniform(4, rule="periodic")
    x = np.random.default_rng(1).standard_normal(16)
    got = make_transfer(s, d, "galerkin")(torch.as_tensor(x)).numpy()
    zs, zd = s.axes[0].double().numpy(), d.axes[0].double().numpy()
    big_s = np.concatenate([zs - 1, zs, zs + 1])
    big_d = np.concatenate([zd - 1, zd, zd + 1])
    ref = _np_hat_integrals(big_s, big_d, np.tile(x, 3))[4:8]
    np.testing.assert_allclose(got, ref, atol=1e-8)
    a, b = Grid.uniform((9, 7), BOX), Grid.uniform((4, 5), BOX)
    m = make_transfer(a, b, "galerkin").matrix()
    m0 = make_transfer(Grid.uniform(9, BOX[0]), Grid.uniform(4, BOX[0]), "galerkin").matrix()
    m1 = make_transfer(Grid.uniform(7, BOX[1]), Grid.uniform(5, BOX[1]), "galerkin").matrix()
    torch.testing.assert_close(m, torch.kron(m0, m1))
