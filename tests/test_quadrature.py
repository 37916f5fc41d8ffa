"""Checks of the 1-D quadrature rules behind ``grids.Grid.uniform``.

Every rule in ``grids.RULES`` is compared with exact integrals in closed form and with
independent references (torchquad's public integrators, ``numpy.linspace``,
``numpy.polynomial.legendre.leggauss``, ``scipy.special``, mpmath at 30 digits, hand-built
weights): positive weights summing to |Omega|, exactness up to the documented degree and
failure one degree above, convergence orders, the node-count validation (messages name the
argument and the offending value), the memory bound (a ValueError before allocating), wide
grids of 10^5 nodes (accuracy, and peak memory in a fresh process), and that building grids
neither prints anything nor changes torch's default dtype.
"""

import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import grids
from grids import RULES, Grid, nearest_valid_n, rule_degree
from grids import quadrature as quad

A, B = -1.5, 2.0  # a non-unit interval that is not symmetric about 0

# a valid node count per rule (several for Gauss-Legendre, whose degree depends on n)
CASES = [
    ("trapezoid", 2),
    ("trapezoid", 7),
    ("midpoint", 1),
    ("midpoint", 6),
    ("simpson", 3),
    ("simpson", 9),
    ("boole", 5),
    ("boole", 13),
    ("gauss_legendre", 1),
    ("gauss_legendre", 2),
    ("gauss_legendre", 5),
    ("gauss_legendre", 8),
    ("periodic", 1),
    ("periodic", 7),
]


def exact_monomial(p, a, b):
    """int_a^b x^p dx in closed form."""
    return (b ** (p + 1) - a ** (p + 1)) / (p + 1)


def integrate_monomial(grid, p):
    return float(grid.integrate(grid.nodes[:, 0] ** p))


def test_rule_list_and_degrees():
    assert set(RULES) == {
        "trapezoid",
        "midpoint",
        "simpson",
        "boole",
        "gauss_legendre",
        "periodic",
    }
    assert rule_degree("periodic", 9) == 0
    assert rule_degree("trapezoid", 9) == 1
    assert rule_degree("midpoint", 9) == 1
    assert rule_degree("simpson", 9) == 3
    assert rule_degree("boole", 9) == 5
    assert rule_degree("gauss_legendre", 4) == 7


@pytest.mark.parametrize("rule, n", CASES)
def test_weights_positive_and_sum_to_length(rule, n):
    g = Grid.uniform(n, (A, B), rule)
    assert g.weights.shape == (n,)
    assert g.nodes.shape == (n, 1)
    assert g.weights.dtype == torch.float64 and g.nodes.dtype == torch.float64
    assert bool((g.weights > 0).all())
    assert float(g.weights.sum()) == pytest.approx(B - A, rel=1e-13)
    # nodes lie inside the interval and increase strictly
    x = g.nodes[:, 0]
    assert float(x.min()) >= A and float(x.max()) <= B
    assert bool((x[1:] > x[:-1]).all())


@settings(max_examples=40, deadline=None)
@given(
    rule_n=st.sampled_from(CASES),
    a=st.floats(-5.0, 5.0),
    length=st.floats(0.1, 6.0),
)
def test_weights_sum_on_random_intervals(rule_n, a, length):
    rule, n = rule_n
    b = a + length
    g = Grid.uniform(n, (a, b), rule)
    assert bool((g.weights > 0).all())
    assert float(g.weights.sum()) == pytest.approx(b - a, rel=1e-12)


@pytest.mark.parametrize("rule, n", CASES)
def test_exact_up_to_degree(rule, n):
    g = Grid.uniform(n, (A, B), rule)
    deg = rule_degree(rule, n)
    for p in range(deg + 1):
        exact = exact_monomial(p, A, B)
        scale = max(abs(A), abs(B)) ** (p + 1)
        assert integrate_monomial(g, p) == pytest.approx(exact, rel=0, abs=1e-13 * scale), p


@pytest.mark.parametrize("rule, n", CASES)
def test_not_exact_one_degree_above(rule, n):
    g = Grid.uniform(n, (A, B), rule)
    p = rule_degree(rule, n) + 1
    err = abs(integrate_monomial(g, p) - exact_monomial(p, A, B))
    assert err > 1e-6


@settings(max_examples=30, deadline=None)
@given(
    rule_n=st.sampled_from(CASES),
    a=st.floats(-3.0, 3.0),
    length=st.floats(0.25, 4.0),
    coeffs=st.lists(st.floats(-2.0, 2.0), min_size=16, max_size=16),
)
def test_exact_on_random_polynomials(rule_n, a, length, coeffs):
    """A random polynomial of exactly the rule's degree, on a random interval."""
    rule, n = rule_n
    b = a + length
    deg = rule_degree(rule, n)
    c = np.array(coeffs[: deg + 1])
    poly = np.polynomial.Polynomial(c)
    exact = poly.integ()(b) - poly.integ()(a)
    g = Grid.uniform(n, (a, b), rule)
    x = g.nodes[:, 0].numpy()
    val = float(g.integrate(torch.from_numpy(poly(x))))
    scale = np.abs(c).sum() * max(abs(a), abs(b), 1.0) ** (deg + 1) * length
    assert abs(val - exact) <= 1e-12 * max(scale, 1.0)


def test_newton_cotes_nodes_and_weights_by_hand():
    """Composite trapezoid / Simpson / Boole weights written out on 9 equispaced nodes."""
    n = 9
    h = (B - A) / (n - 1)
    x_ref = np.linspace(A, B, n)
    trap = h * np.array([0.5, 1, 1, 1, 1, 1, 1, 1, 0.5])
    simp = h / 3 * np.array([1, 4, 2, 4, 2, 4, 2, 4, 1])
    boole = 2 * h / 45 * np.array([7, 32, 12, 32, 14, 32, 12, 32, 7])
    for rule, w_ref in (("trapezoid", trap), ("simpson", simp), ("boole", boole)):
        g = Grid.uniform(n, (A, B), rule)
        np.testing.assert_allclose(g.nodes[:, 0].numpy(), x_ref, rtol=0, atol=1e-14)
        np.testing.assert_allclose(g.weights.numpy(), w_ref, rtol=1e-13, atol=0)


def test_midpoint_nodes_and_weights_by_hand():
    n = 7
    h = (B - A) / n
    g = Grid.uniform(n, (A, B), "midpoint")
    np.testing.assert_allclose(g.nodes[:, 0].numpy(), A + h * (np.arange(n) + 0.5), atol=1e-14)
    np.testing.assert_allclose(g.weights.numpy(), np.full(n, h), rtol=1e-14)


@pytest.mark.parametrize("n", [1, 3, 6, 11])
def test_gauss_legendre_matches_numpy(n):
    t, w = np.polynomial.legendre.leggauss(n)
    half = (B - A) / 2
    g = Grid.uniform(n, (A, B), "gauss_legendre")
    np.testing.assert_allclose(g.nodes[:, 0].numpy(), (A + B) / 2 + half * t, atol=1e-13)
    np.testing.assert_allclose(g.weights.numpy(), half * w, rtol=1e-12)


@pytest.mark.parametrize(
    "rule, ns, order",
    [
        ("trapezoid", (9, 17, 33), 2),
        ("midpoint", (8, 16, 32), 2),
        ("simpson", (9, 17, 33), 4),
        ("boole", (9, 17, 33), 6),
    ],
)
def test_convergence_order_on_smooth_function(rule, ns, order):
    """Halving h divides the error of exp on [A, B] by about 2^order."""
    exact = math.exp(B) - math.exp(A)
    errs = []
    for n in ns:
        g = Grid.uniform(n, (A, B), rule)
        errs.append(abs(float(g.integrate(torch.exp(g.nodes[:, 0]))) - exact))
    for e0, e1 in zip(errs[:-1], errs[1:], strict=True):
        rate = math.log2(e0 / e1)
        assert abs(rate - order) < 0.25, (errs, rate)


def test_gauss_legendre_converges_fast():
    exact = math.exp(B) - math.exp(A)
    g = Grid.uniform(12, (A, B), "gauss_legendre")
    assert abs(float(g.integrate(torch.exp(g.nodes[:, 0]))) - exact) < 1e-13 * exact


@pytest.mark.parametrize(
    "rule, n, expected",
    [
        ("simpson", 4, 5),  # tie 3 / 5: the larger one
        ("simpson", 6, 7),
        ("simpson", 2, 3),
        ("simpson", 1, 3),
        ("boole", 6, 5),
        ("boole", 8, 9),
        ("boole", 7, 9),  # tie 5 / 9
        ("boole", 1, 5),
        ("trapezoid", 1, 2),
        ("gauss_legendre", 4, 4),
        ("midpoint", 1, 1),
    ],
)
def test_nearest_valid_n(rule, n, expected):
    assert nearest_valid_n(rule, n) == expected


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("n, shown", [(0, "0"), (-3, "-3")])
def test_nonpositive_n_rejected(rule, n, shown):
    with pytest.raises(ValueError, match=rf"^n: .*positive int.*got {shown}$"):
        Grid.uniform(n, (A, B), rule)


@pytest.mark.parametrize("n, shown", [(2.5, "2.5"), (3.0, "3.0"), ("5", "'5'"), (True, "True")])
def test_non_int_n_rejected(n, shown):
    with pytest.raises(ValueError, match=rf"^n: .*positive int.*got {shown}$"):
        Grid.uniform(n, (A, B), "trapezoid")


def test_numpy_int_n_accepted():
    g = Grid.uniform(np.int64(5), (A, B), "simpson")
    assert g.n == 5


@pytest.mark.parametrize("n, nearest", [(4, 5), (6, 7), (10, 11)])
def test_simpson_even_n_names_nearest_valid(n, nearest):
    with pytest.raises(
        ValueError, match=rf"n: rule 'simpson'.*got {n}; nearest valid n is {nearest}"
    ):
        Grid.uniform(n, (A, B), "simpson")


@pytest.mark.parametrize("n, nearest", [(6, 5), (8, 9), (11, 13), (12, 13), (3, 5)])
def test_boole_needs_4k_plus_1(n, nearest):
    with pytest.raises(
        ValueError, match=rf"n: rule 'boole'.*4k \+ 1.*got {n}; nearest valid n is {nearest}"
    ):
        Grid.uniform(n, (A, B), "boole")


def test_trapezoid_needs_two_nodes():
    with pytest.raises(ValueError, match=r"n: rule 'trapezoid'.*got 1; nearest valid n is 2"):
        Grid.uniform(1, (A, B), "trapezoid")


def test_per_axis_count_label_in_2d():
    with pytest.raises(ValueError, match=r"n\[1\]: rule 'simpson'.*got 4; nearest valid n is 5"):
        Grid.uniform((5, 4), [(0, 1), (0, 1)], "simpson")


@pytest.mark.parametrize("rule", ["simpsons", "gauss", "", None, 3])
def test_unknown_rule(rule):
    with pytest.raises(ValueError, match=rf"^rule: expected one of .*got {rule!r}$"):
        Grid.uniform(5, (A, B), rule)


def test_reversed_domain():
    with pytest.raises(ValueError, match=r"domain: .*reversed.*\(2\.0, 1\.0\)"):
        Grid.uniform(5, (2, 1))


def test_empty_domain():
    with pytest.raises(ValueError, match=r"domain: .*empty.*\(1\.0, 1\.0\)"):
        Grid.uniform(5, (1, 1))


def test_infinite_domain():
    with pytest.raises(ValueError, match=r"domain: .*finite.*inf"):
        Grid.uniform(5, (0, math.inf))


def test_reversed_side_of_a_box_named():
    with pytest.raises(ValueError, match=r"domain: side 1 is reversed.*\(3\.0, -1\.0\)"):
        Grid.uniform((3, 3), [(0, 1), (3, -1)])


# --------------------------------------------------------------------------- side effects


def test_building_grids_prints_nothing(capfd):
    capfd.readouterr()
    Grid.uniform(9, (A, B), "simpson")
    Grid.uniform(6, (A, B), "gauss_legendre")
    Grid.uniform(9, (A, B), "boole")
    Grid.uniform((5, 4), [(0, 1), (-1, 1)], "gauss_legendre")
    out, err = capfd.readouterr()
    assert out == ""
    assert err == ""


def test_silent_and_dtype_kept_in_fresh_interpreter():
    """Importing grids and building grids prints nothing, keeps the default dtype, and loads
    neither matplotlib nor torchquad (plots import matplotlib when drawn)."""
    code = (
        "import sys\n"
        "import torch\n"
        "before = torch.get_default_dtype()\n"
        "from grids import Grid, GridSchedule\n"
        "import grids.plot\n"
        "Grid.uniform(9, (-1.5, 2.0), 'simpson')\n"
        "Grid.uniform(6, (-1.5, 2.0), 'gauss_legendre')\n"
        "Grid.uniform(301, (-1.5, 2.0), 'gauss_legendre')\n"
        "GridSchedule.from_widths([5, 9, 5]).transfers()\n"
        "after = torch.get_default_dtype()\n"
        "assert after == before, (before, after)\n"
        "loaded = [m for m in ('matplotlib', 'torchquad') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""
    assert res.stderr == ""


@pytest.mark.parametrize("default", [torch.float32, torch.float64])
def test_default_dtype_unchanged(default):
    old = torch.get_default_dtype()
    torch.set_default_dtype(default)
    try:
        for rule, n in CASES:
            g = Grid.uniform(n, (A, B), rule)
            assert torch.get_default_dtype() == default
            assert g.weights.dtype == torch.float64
    finally:
        torch.set_default_dtype(old)


def test_package_exports():
    for name in grids.__all__:
        assert hasattr(grids, name)


# --------------------------------------------------------------------------- torchquad


def torchquad_rule(rule, n, a, b):
    """Nodes and weights of torchquad's public integrator for ``rule``: integrating the
    vector-valued integrand x_i -> e_i (the rows of the identity) gives the weight of each node.
    """
    import torchquad

    torchquad.set_log_level("ERROR")
    cls = {
        "trapezoid": torchquad.Trapezoid,
        "simpson": torchquad.Simpson,
        "boole": torchquad.Boole,
        "gauss_legendre": torchquad.GaussLegendre,
    }[rule]
    seen = {}

    def unit_vectors(x):
        seen["x"] = x[:, 0].detach().clone()
        return torch.eye(x.shape[0], dtype=torch.float64)

    domain = torch.tensor([[a, b]], dtype=torch.float64)
    with warnings.catch_warnings():  # a copy-construct warning from torchquad's backend layer
        warnings.simplefilter("ignore", UserWarning)
        weights = cls().integrate(unit_vectors, dim=1, N=n, integration_domain=domain)
    return seen["x"].double(), weights.double()


@pytest.mark.parametrize(
    "rule, n, w_rtol",
    [
        ("trapezoid", 2, 1e-14),
        ("trapezoid", 101, 1e-13),
        ("trapezoid", 400, 1e-13),
        ("simpson", 3, 1e-14),
        ("simpson", 101, 1e-13),
        ("simpson", 401, 1e-13),
        ("boole", 5, 1e-14),
        ("boole", 101, 1e-13),
        ("boole", 401, 1e-13),
        ("gauss_legendre", 3, 1e-13),
        ("gauss_legendre", 64, 1e-11),
        # torchquad's Legendre roots come from an eigenvalue problem: its weights near +-1
        # lose digits as n grows (mpmath below shows ours keep them)
        ("gauss_legendre", 201, 1e-9),
        ("gauss_legendre", 400, 1e-8),
    ],
)
def test_matches_torchquad_public_api(rule, n, w_rtol):
    x_ref, w_ref = torchquad_rule(rule, n, A, B)
    g = Grid.uniform(n, (A, B), rule)
    np.testing.assert_allclose(g.axes[0].numpy(), x_ref.numpy(), rtol=0, atol=4e-15)
    np.testing.assert_allclose(g.weights.numpy(), w_ref.numpy(), rtol=w_rtol, atol=0)


@pytest.mark.parametrize("n", [1, 6, 33])
def test_periodic_is_torchquad_trapezoid_on_periodic_functions(n):
    """For f of period L, the trapezoid rule with n + 1 nodes (end nodes halved, f(b) = f(a))
    is the periodic rule with n nodes."""
    a, b = A, B
    L = b - a

    def f(x):
        u = 2 * math.pi * (x - a) / L
        return torch.exp(torch.sin(u)) + 0.3 * torch.cos(3 * u)

    x_ref, w_ref = torchquad_rule("trapezoid", n + 1, a, b)
    ref = float(w_ref @ f(x_ref))
    g = Grid.uniform(n, (a, b), "periodic")
    assert float(g.integrate(f(g.nodes[:, 0]))) == pytest.approx(ref, rel=1e-13, abs=1e-13)


# --------------------------------------------------------------------------- periodic


def test_periodic_nodes_and_weights_by_hand():
    n = 8
    h = (B - A) / n
    g = Grid.uniform(n, (A, B), "periodic")
    np.testing.assert_allclose(g.axes[0].numpy(), A + h * np.arange(n), rtol=0, atol=1e-15)
    assert float(g.axes[0][-1]) < B  # no duplicate end point
    np.testing.assert_allclose(g.weights.numpy(), np.full(n, h), rtol=1e-15)


@pytest.mark.parametrize("n", [1, 2, 5, 16, 33])
def test_periodic_exact_on_trigonometric_polynomials_below_degree_n(n):
    """int_a^b cos(2 pi k (x - a) / L + phase) dx = L [k = 0] cos(phase), exact for k < n;
    at k = n the rule sees a constant and fails."""
    L = B - A
    g = Grid.uniform(n, (A, B), "periodic")
    x = g.nodes[:, 0]
    for k in range(n):
        for phase in (0.0, 0.7):
            vals = torch.cos(2 * math.pi * k * (x - A) / L + phase)
            exact = L * math.cos(phase) if k == 0 else 0.0
            assert float(g.integrate(vals)) == pytest.approx(exact, abs=1e-12 * max(n, 1)), k
    vals = torch.cos(2 * math.pi * n * (x - A) / L)
    assert abs(float(g.integrate(vals))) > 0.5 * L


def test_periodic_converges_spectrally():
    """exp(sin) over one period: I_0(1) L; the error falls like 1 / (2^n n!), below 1e-14 by
    n = 16 (an algebraic order would only divide it by a fixed factor per doubling)."""
    from scipy.special import i0

    L = B - A
    exact = L * float(i0(1.0))
    errs = []
    for n in (4, 8, 16):
        g = Grid.uniform(n, (A, B), "periodic")
        vals = torch.exp(torch.sin(2 * math.pi * (g.nodes[:, 0] - A) / L))
        errs.append(abs(float(g.integrate(vals)) - exact))
    assert errs[0] > 1e-3 and errs[1] < 1e-6 and errs[2] < 1e-14, errs


def test_periodic_2d_tensor_grid():
    box = [(0.0, 2 * math.pi), (-1.0, 1.0)]
    g = Grid.uniform((6, 4), box, "periodic")
    assert g.shape == (6, 4) and g.n == 24
    x, y = g.nodes[:, 0], g.nodes[:, 1]
    # sin^2(x) (period pi, degree 2 < 6) times cos^2(pi y) (degree 2 < 4): pi * 1
    val = float(g.integrate(torch.sin(x) ** 2 * torch.cos(math.pi * y) ** 2))
    assert val == pytest.approx(math.pi, rel=1e-13)


# --------------------------------------------------------------------- Gauss-Legendre, large n


def mp_gauss_node(n, x0):
    """The Legendre root x = cos(theta) nearest x0 > 0 and its weight 2 / (dP_n(cos t)/dt)^2,
    with mpmath at 50 digits (Newton in theta, as x loses digits next to 1)."""
    import mpmath

    with mpmath.workdps(50):
        f = lambda t: mpmath.legendre(n, mpmath.cos(t))  # noqa: E731
        theta = mpmath.findroot(f, mpmath.acos(mpmath.mpf(float(x0))), tol=1e-40)
        c = mpmath.cos(theta)
        dp = -n * (mpmath.legendre(n - 1, c) - c * mpmath.legendre(n, c)) / mpmath.sin(theta)
        return float(c), float(2 / dp**2)


@pytest.mark.parametrize("n", [2, 7, 150, 300, 1000])
def test_gauss_legendre_against_mpmath(n):
    """Roots next to the end point and in the interior: both paths (recurrence near +-1,
    asymptotic series inside) agree with mpmath to an ulp in x and ~1e-15 in the weights
    (numpy's and scipy's weights are off by up to 1e-8 at n = 1000 next to +-1)."""
    x, w = quad.gauss_legendre_unit(n)
    # next to 1, at the first nodes of the series (2 n sin(theta) ~ 50), further in, the middle
    for k in sorted({n - 1, n - 2, n - 3, n - 8, n - 9, n - 10, n - 20, n - n // 3, n - n // 2}):
        if not 0 <= k < n or x[k] <= 0:
            continue
        xr, wr = mp_gauss_node(n, x[k])
        assert abs(x[k] - xr) <= 2.3e-16, (k, x[k], xr)
        assert w[k] == pytest.approx(wr, rel=1e-14), k


@pytest.mark.parametrize("n", [199, 200, 201, 202, 2001])
def test_gauss_legendre_matches_scipy_across_the_switch(n):
    """Around n = 200 (where the interior nodes change method) and beyond, against scipy."""
    from scipy.special import roots_legendre

    xr, wr = roots_legendre(n)
    x, w = quad.gauss_legendre_unit(n)
    np.testing.assert_allclose(x, xr, rtol=0, atol=6e-16)
    # scipy's weights are good to ~1e-13 in the middle and lose digits next to +-1
    mid = slice(n // 4, 3 * n // 4)
    np.testing.assert_allclose(w[mid], wr[mid], rtol=1e-12)
    np.testing.assert_allclose(w, wr, rtol=1e-6)
    assert np.array_equal(x, -x[::-1]) and np.array_equal(w, w[::-1])  # exact symmetry


def test_gauss_legendre_wide_grid_is_accurate():
    """10^5 nodes: the nodes are roots (residual against scipy's recurrence), the weights
    match 2 (1 - x^2) / (n P_{n-1}(x))^2 inside, oscillatory integrals are exact to rounding,
    and so are integrands crowded against x = 1 (which test the weights next to the end)."""
    from scipy.special import eval_legendre

    n = 100_001
    g = Grid.uniform(n, (-1.0, 1.0), "gauss_legendre")
    x = g.axes[0].numpy()
    w = g.weights.numpy()
    assert np.all(np.diff(x) > 0) and np.all(w > 0)
    assert float(w.sum()) == pytest.approx(2.0, rel=1e-14)
    pick = np.unique(np.r_[np.arange(30), np.linspace(0, n - 1, 60).astype(int)])
    xs = x[pick]
    p_n, p_m = eval_legendre(n, xs), eval_legendre(n - 1, xs)
    slope = n * np.abs(p_m) / (1 - xs**2)  # |P_n'| at a root
    assert np.all(np.abs(p_n) / slope < 5e-16)  # distance to the root, in x
    w_ref = 2 * (1 - xs**2) / (n * p_m) ** 2
    # at the rounded x, scipy's P_{n-1} is off by about n 1e-16 / sqrt(1 - x^2) (relative)
    inner = np.abs(xs) < 0.9
    np.testing.assert_allclose(w[pick][inner], w_ref[inner], rtol=1e-10)
    for k in (1.0, 1000.0, 90000.0):
        val = float(g.integrate(torch.cos(k * g.nodes[:, 0])))
        # a sum of 1e5 terms, and cos(k x) at nodes rounded to 1e-16 (k 1e-16 each)
        assert val == pytest.approx(2 * math.sin(k) / k, abs=1e-14 * (1 + k / 1e3))
    # int exp(-M (1 - x)) = (1 - exp(-2M)) / M: for M = 1e8 it lives on the last ~100 nodes
    # (weights with a 5% error on the first one, as the rounded-x formula gives, fail this)
    for m in (1e4, 1e6, 1e8):
        val = float(g.integrate(torch.exp(-m * (1.0 - g.nodes[:, 0]))))
        # evaluating at the rounded nodes costs about m * 1e-16 relative
        assert val * m == pytest.approx(-math.expm1(-2 * m), rel=1e-13 + 1e-16 * m)


@pytest.mark.parametrize("rule", RULES)
def test_wide_grids_of_every_rule(rule):
    """10^5 + 1 nodes: increasing, inside [A, B], positive weights summing to B - A, and the
    rule's accuracy on a smooth function (periodic: on a periodic one)."""
    n = 100_001
    g = Grid.uniform(n, (A, B), rule)
    x = g.axes[0]
    assert g.n == n and bool((x[1:] > x[:-1]).all())
    assert float(x[0]) >= A and float(x[-1]) <= B
    assert bool((g.weights > 0).all())
    assert float(g.weights.sum()) == pytest.approx(B - A, rel=1e-13)
    if rule == "periodic":
        u = 2 * math.pi * (x - A) / (B - A)
        val, exact = float(g.integrate(torch.exp(torch.sin(u)))), (B - A) * 1.2660658777520082
    else:
        val, exact = float(g.integrate(torch.exp(x))), math.exp(B) - math.exp(A)
    tol = {"trapezoid": 1e-9, "midpoint": 1e-9}.get(rule, 1e-13)
    assert val == pytest.approx(exact, rel=tol)


# --------------------------------------------------------------------------- memory


def test_memory_bound_checked_before_allocating(monkeypatch):
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"^n: a grid of \(100001, 100001\) nodes .*MiB, "):
            Grid.uniform((100_001, 100_001), [(0, 1), (0, 1)], "simpson")
        with pytest.raises(ValueError, match=r"MAX_GRID_BYTES"):
            Grid.uniform(10**12 + 1, (0, 1), "boole")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000  # nothing of the grid's size was allocated
    # the bound is the module attribute, stated in the message
    monkeypatch.setattr(quad, "MAX_GRID_BYTES", 100_000)
    with pytest.raises(ValueError, match=r"above the bound of 0 MiB"):
        Grid.uniform(1001, (0, 1), "trapezoid")
    with pytest.raises(ValueError, match=r"^shape: a grid of \(200, 200\) nodes \(40,000 in all\)"):
        Grid.from_nodes((np.linspace(0, 1, 200), np.linspace(0, 1, 200)), [(0, 1), (0, 1)])
    Grid.uniform(101, (0, 1), "gauss_legendre")  # below the bound: fine


def test_wide_grids_peak_memory_in_a_fresh_process():
    """Peak resident memory while building a 10^5-node grid of each rule, in a fresh process:
    well under 50 MB (the grid itself is 1.6 MB). Linux only (reads VmHWM)."""
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc to read the peak resident set")
    code = (
        "import gc, sys\n"
        "from grids import RULES, Grid\n"
        "def kib(field):\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith(field + ':'):\n"
        "            return int(line.split()[1])\n"
        "for rule in RULES:\n"
        "    Grid.uniform(9, (0.0, 1.0), rule)\n"
        "for rule in RULES:\n"
        "    gc.collect()\n"
        "    before = kib('VmRSS')\n"
        "    open('/proc/self/clear_refs', 'w').write('5')\n"
        "    g = Grid.uniform(100_001, (0.0, 1.0), rule)\n"
        "    print(rule, (kib('VmHWM') - before) * 1024)\n"
        "    del g\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if res.returncode != 0 and "clear_refs" in res.stderr:
        pytest.skip("cannot reset the peak resident set here")
    assert res.returncode == 0, res.stderr
    peaks = {line.split()[0]: int(line.split()[1]) for line in res.stdout.splitlines()}
    assert set(peaks) == set(RULES)
    for rule, peak in peaks.items():
        assert peak < 50_000_000, (rule, peak)
