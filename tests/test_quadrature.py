"""Checks of the 1-D quadrature rules behind ``grids.Grid.uniform``.

Every rule in ``grids.RULES`` is compared with exact integrals in closed form and with
independent references (``numpy.linspace``, ``numpy.polynomial.legendre.leggauss``, hand-built
weights): positive weights summing to |Omega|, exactness up to the documented degree and
failure one degree above, convergence orders, the node-count validation (messages name the
argument and the offending value), and that building grids neither prints anything (torchquad
stays silent) nor changes torch's default dtype.
"""

import math
import subprocess
import sys

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
]


def exact_monomial(p, a, b):
    """int_a^b x^p dx in closed form."""
    return (b ** (p + 1) - a ** (p + 1)) / (p + 1)


def integrate_monomial(grid, p):
    return float(grid.integrate(grid.nodes[:, 0] ** p))


def test_rule_list_and_degrees():
    assert set(RULES) == {"trapezoid", "midpoint", "simpson", "boole", "gauss_legendre"}
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


def test_torchquad_prints_nothing(capfd, monkeypatch):
    # a fresh integrator cache, so that torchquad objects are created inside the capture
    monkeypatch.setattr(quad, "_INTEGRATORS", {})
    capfd.readouterr()
    Grid.uniform(9, (A, B), "simpson")
    Grid.uniform(6, (A, B), "gauss_legendre")
    Grid.uniform(9, (A, B), "boole")
    Grid.uniform((5, 4), [(0, 1), (-1, 1)], "gauss_legendre")
    out, err = capfd.readouterr()
    assert out == ""
    assert err == ""


def test_torchquad_silent_and_dtype_kept_in_fresh_interpreter():
    """First import of torchquad happens inside grids; nothing may be printed."""
    code = (
        "import torch\n"
        "before = torch.get_default_dtype()\n"
        "from grids import Grid\n"
        "Grid.uniform(9, (-1.5, 2.0), 'simpson')\n"
        "Grid.uniform(6, (-1.5, 2.0), 'gauss_legendre')\n"
        "after = torch.get_default_dtype()\n"
        "assert after == before, (before, after)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""
    assert res.stderr == ""


@pytest.mark.parametrize("default", [torch.float32, torch.float64])
def test_default_dtype_unchanged(default, monkeypatch):
    monkeypatch.setattr(quad, "_INTEGRATORS", {})
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
