"""Tests for the Helmholtz operator-learning set, each against an independent reference:
manufactured solutions with their measured convergence rate, a sparse five-point solve, the
Darcy solver at ``a = 1``, the served layout of :func:`darcy`, and a stencil residual."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch

from spacetime_nets import datasets as D
from spacetime_nets.datasets import pde as P

# the module (``spacetime_nets.datasets.helmholtz`` is the builder, as for ``heat``)
H = importlib.import_module("spacetime_nets.datasets.helmholtz")

K = 10.5  # the default wavenumber: k^2 between 10 pi^2 and 13 pi^2


def _all(d: D.DatasetSplits) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows of the three splits back in the order they were generated."""
    idx = torch.cat([d.meta["split_indices"][k] for k in ("train", "val", "test")])
    order = torch.argsort(idx)
    x = torch.cat([d.train.x, d.val.x, d.test.x])[order]
    y = torch.cat([d.train.y, d.val.y, d.test.y])[order]
    return x, y


def _sine_mode(x, y, k):
    """``u = sin(pi x) sin(2 pi y)`` and ``f = -lap u - k^2 u = (5 pi^2 - k^2) u``."""
    u = np.sin(np.pi * x) * np.sin(2 * np.pi * y)
    return u, (5 * np.pi**2 - k * k) * u


def _exp_poly(x, y, k):
    """``u = x (1 - x) y (1 - y) e^(x + 2 y)`` (no sine mode) and ``f = -lap u - k^2 u``."""
    g, gxx = x * (1 - x) * np.exp(x), (-x * x - 3 * x) * np.exp(x)
    h, hyy = y * (1 - y) * np.exp(2 * y), (2 - 4 * y - 4 * y * y) * np.exp(2 * y)
    u = g * h
    return u, -(gxx * h + g * hyy) - k * k * u


def _residual(u: np.ndarray, k: float) -> np.ndarray:
    """``-lap_h u - k^2 u`` at the interior nodes by the five-point stencil, ``[..., F-2, F-2]``."""
    h2 = (u.shape[-1] - 1) ** 2
    c = u[..., 1:-1, 1:-1]
    lap = u[..., 2:, 1:-1] + u[..., :-2, 1:-1] + u[..., 1:-1, 2:] + u[..., 1:-1, :-2] - 4 * c
    return -h2 * lap - k * k * c


# --------------------------------------------------------------------------------------------
# the solver
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", [_sine_mode, _exp_poly])
@pytest.mark.parametrize("k", [0.0, K])
def test_solve_helmholtz_converges_at_second_order(case, k):
    errs = []
    for size in (33, 65, 129, 257):
        xs = np.linspace(0.0, 1.0, size)
        u, f = case(xs[:, None], xs[None, :], k)
        got = H.solve_helmholtz(f, k)
        errs.append(np.abs(got - u).max() / np.abs(u).max())
    rates = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(rates > 1.9) and np.all(rates < 2.1), rates
    assert errs[-1] < 2e-3


def test_solve_helmholtz_matches_a_sparse_five_point_solve():
    import scipy.sparse as sp
    from scipy.sparse.linalg import spsolve

    size = 21  # not 2^k + 1: the solver takes any F >= 3
    m, h = size - 2, 1.0 / (size - 1)
    lap1 = sp.diags([-np.ones(m - 1), 2 * np.ones(m), -np.ones(m - 1)], [-1, 0, 1]) / h**2
    eye = sp.identity(m)
    f = np.random.default_rng(4).standard_normal((3, size, size))
    for k in (0.0, K, 15.0):
        mat = (sp.kron(lap1, eye) + sp.kron(eye, lap1) - k * k * sp.identity(m * m)).tocsc()
        got = H.solve_helmholtz(f, k)
        assert got.shape == f.shape
        for b in range(3):
            ref = spsolve(mat, f[b, 1:-1, 1:-1].ravel()).reshape(m, m)
            np.testing.assert_allclose(got[b, 1:-1, 1:-1], ref, rtol=0, atol=1e-12 * abs(ref).max())
            assert np.all(got[b, [0, -1]] == 0) and np.all(got[b, :, [0, -1]] == 0)
    # k = 0 and f = 1 is Darcy with a = 1 (a second, independent assembly)
    np.testing.assert_allclose(
        H.solve_helmholtz(np.ones((size, size))), P.solve_darcy(np.ones((size, size))), atol=1e-14
    )


def test_the_default_operator_is_indefinite_and_global():
    size = 65
    xs = np.linspace(0.0, 1.0, size)
    low = np.sin(np.pi * xs[:, None]) * np.sin(np.pi * xs[None, :])
    assert np.all(H.solve_helmholtz(low, K)[1:-1, 1:-1] < 0)  # 2 pi^2 < k^2: the sign flips
    assert np.all(H.solve_helmholtz(low, 0.0)[1:-1, 1:-1] > 0)
    point = np.zeros((size, size))
    point[32, 32] = (size - 1) ** 2  # a unit point source at the centre
    u = H.solve_helmholtz(point, K)
    far = np.hypot(xs[:, None] - 0.5, xs[None, :] - 0.5) > 0.35
    far[[0, -1]] = far[:, [0, -1]] = False
    # far from the source the response is as large as at the source (Poisson: 1/3 of it)
    assert np.abs(u[far]).max() > np.abs(u[32, 32])
    v = H.solve_helmholtz(point, 0.0)
    assert np.abs(v[far]).max() < 0.35 * np.abs(v[32, 32])


# --------------------------------------------------------------------------------------------
# the data set
# --------------------------------------------------------------------------------------------


def test_helmholtz_layout_matches_darcy_and_solves_the_equation():
    kw = {"n": 12, "fine": 33, "seed": 5, "dtype": torch.float64}
    hh, dd = D.helmholtz(grid_size=9, **kw), D.darcy(grid_size=9, **kw)
    assert hh.name == "helmholtz" and hh.task == "regression" and hh.num_classes is None
    assert hh.in_features == hh.out_features == 81 == dd.in_features
    for key in ("grid_shape", "rule", "domain", "fine", "modes", "alpha", "tau"):
        assert hh.meta[key] == dd.meta[key], key
    torch.testing.assert_close(hh.meta["nodes"], dd.meta["nodes"], rtol=0, atol=0)
    torch.testing.assert_close(
        hh.meta["nodes"][11], torch.tensor([0.125, 0.25], dtype=torch.float64)
    )
    assert hh.meta["rule"] == "trapezoid" and hh.meta["grid_shape"] == (9, 9)
    assert hh.meta["wavenumber"] == K and hh.meta["seed"] == 5
    assert [len(s) for s in (hh.train, hh.val, hh.test)] == [
        len(s) for s in (dd.train, dd.val, dd.test)
    ]

    full = D.helmholtz(grid_size=33, **kw)
    x, y = (t.numpy().reshape(-1, 33, 33) for t in _all(full))
    # x is the darcy field itself (darcy thresholds it): same seed, same draw
    ref = P._square_field(np.random.default_rng(5), 12, 24, 2.0, 3.0, 33)
    np.testing.assert_allclose(x, ref, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(
        _all(D.darcy(grid_size=33, **kw))[0].numpy() == 12.0, ref.reshape(12, -1) >= 0
    )
    assert np.all(y[:, [0, -1]] == 0) and np.all(y[:, :, [0, -1]] == 0)
    res = _residual(y, K) - x[:, 1:-1, 1:-1]
    assert np.abs(res).max() < 1e-10 * np.abs(x).max()
    assert np.abs(y).max() > 1e-3  # a real solution, not zeros


def test_helmholtz_subsampling_commutes_with_the_generator():
    kw = {"n": 12, "fine": 33, "seed": 3, "dtype": torch.float64, "wavenumber": 6.0}
    H._helmholtz_fine.cache_clear()
    coarse = D.helmholtz(grid_size=9, **kw)
    H._helmholtz_fine.cache_clear()
    mid = D.helmholtz(grid_size=17, **kw)
    for part in ("train", "val", "test"):
        a, b = getattr(coarse, part), getattr(mid, part)
        torch.testing.assert_close(
            a.x.view(-1, 9, 9), b.x.view(-1, 17, 17)[:, ::2, ::2], rtol=0, atol=0
        )
        torch.testing.assert_close(
            a.y.view(-1, 9, 9), b.y.view(-1, 17, 17)[:, ::2, ::2], rtol=0, atol=0
        )
    assert torch.equal(coarse.meta["split_indices"]["test"], mid.meta["split_indices"]["test"])


def test_helmholtz_seeds_reproducible_and_global_state_untouched():
    kw = {"n": 20, "grid_size": 9, "fine": 17}
    torch.manual_seed(123)
    np.random.seed(123)  # noqa: NPY002 (the legacy global state must stay untouched)
    t_state, n_state = torch.get_rng_state(), np.random.get_state()[1].copy()  # noqa: NPY002
    a = D.load("helmholtz", seed=7, **kw)
    H._helmholtz_fine.cache_clear()
    b = D.load("helmholtz", seed=7, **kw)
    c = D.load("helmholtz", seed=8, **kw)
    assert torch.equal(torch.get_rng_state(), t_state)
    assert np.array_equal(np.random.get_state()[1], n_state)  # noqa: NPY002
    assert torch.equal(_all(a)[0], _all(b)[0]) and torch.equal(_all(a)[1], _all(b)[1])
    assert not torch.equal(_all(a)[0], _all(c)[0])
    assert a.train.x.dtype == torch.float32 and len(a) == 20
    assert D.REGISTRY["helmholtz"] is D.helmholtz and "helmholtz" in D.__all__
    assert "solve_helmholtz" in D.__all__


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"grid_size": 16}, r"grid_size: expected 2\^j \+ 1.*got grid_size=16"),
        ({"grid_size": 129}, r"grid_size: expected .*at most fine=65"),
        ({"fine": 64}, r"fine: expected 2\^k \+ 1.*got fine=64"),
        ({"n": 0}, r"n: expected an int >= 1, got 0"),
        ({"modes": 1}, r"modes: expected an int >= 2, got 1"),
        ({"alpha": 0.0}, r"alpha: expected a finite number > 0, got 0\.0"),
        ({"seed": -1}, r"seed: expected an int in \[0, 2\*\*32\), got -1"),
        ({"wavenumber": -1.0}, r"wavenumber: expected a finite number >= 0, got -1\.0"),
        ({"wavenumber": "10"}, r"wavenumber: expected a number, got \'10\'"),
        (
            {"wavenumber": math.pi * math.sqrt(10)},
            r"wavenumber=9.93.*, which is near resonance: k\^2 = 98.69.* of 98.53.* mode "
            r"\(p, q\) = \(1, 3\) of the five-point Laplacian on 65 x 65 nodes",
        ),
        (
            {"fine": 17, "grid_size": 9, "wavenumber": 9.925},
            r"wavenumber=9.925, which is near resonance: k\^2 = 98.50.* of 98.69.* of -lap on",
        ),
        ({"fine": 17, "grid_size": 9, "wavenumber": 13.0}, r"wavenumber: expected at most .*12.57"),
        ({"splits": (0.5, 0.5)}, r"splits: expected three positive fractions"),
        ({"dtype": torch.int64}, r"dtype: expected a floating torch.dtype"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        D.helmholtz(**kwargs)


def test_solver_rejects_bad_arrays():
    with pytest.raises(ValueError, match=r"f: expected shape \[F, F\] or \[B, F, F\]"):
        D.solve_helmholtz(np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"f: expected shape"):
        D.solve_helmholtz(np.ones(5))
    with pytest.raises(ValueError, match="f: expected finite values"):
        D.solve_helmholtz(np.full((5, 5), np.inf))
    with pytest.raises(ValueError, match=r"wavenumber: expected a finite number >= 0, got nan"):
        D.solve_helmholtz(np.ones((5, 5)), float("nan"))
    # on 5 x 5 nodes the discrete eigenvalue 2 mu_1 = 64 sin^2(pi / 8) * 2 is hit exactly
    k = math.sqrt(2 * 64 * math.sin(math.pi / 8) ** 2)
    with pytest.raises(ValueError, match=r"near resonance.*five-point Laplacian on 5 x 5 nodes"):
        D.solve_helmholtz(np.ones((5, 5)), k)
