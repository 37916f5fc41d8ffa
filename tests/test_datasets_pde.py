"""Tests for the operator-learning and resolution-transfer data sets (burgers, darcy, signals,
digits at finer resolutions), each against an independent reference: the inviscid Burgers
solution by characteristics, the exact Cole-Hopf solution of viscous Burgers, the series solution
of the Poisson problem, an exact layered Darcy solution, and torch's own bilinear resampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq

from spacetime_nets import datasets as D
from spacetime_nets.datasets import pde as P


def _all(d: D.DatasetSplits) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows of the three splits back in the order they were generated."""
    idx = torch.cat([d.meta["split_indices"][k] for k in ("train", "val", "test")])
    order = torch.argsort(idx)
    x = torch.cat([d.train.x, d.val.x, d.test.x])[order]
    y = torch.cat([d.train.y, d.val.y, d.test.y])[order]
    return x, y


def _trig_eval(values: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The trigonometric interpolant of ``values`` (nodes ``j / F``) and its derivative at
    ``points``: exact for a band-limited function with fewer than ``F / 2`` modes."""
    f = values.shape[-1]
    c = np.fft.rfft(values) / f
    k = np.arange(c.size)
    w = np.where((k == 0) | (k == f // 2), 1.0, 2.0)
    e = np.exp(2j * np.pi * np.outer(points, k))
    val = np.real(e @ (w * c))
    der = np.real(e @ (w * c * 2j * np.pi * k))
    return val, der


# --------------------------------------------------------------------------------------------
# Burgers
# --------------------------------------------------------------------------------------------


def test_burgers_tiny_viscosity_matches_characteristics_before_the_shock():
    fine, nu = 512, 1e-5
    kw = {
        "n": 20,
        "grid_size": fine,
        "fine": fine,
        "modes": 6,
        "viscosity": nu,
        "dtype": torch.float64,
    }
    x0, _ = _all(D.burgers(time=0.01, **kw))
    u0 = x0.numpy()[:3]
    grid = np.arange(fine) / fine
    slopes = np.array([_trig_eval(u, grid)[1].min() for u in u0])
    t = 0.5 / float(-slopes.min())  # half of the earliest breaking time 1 / max(-u0')
    _, y = _all(D.burgers(time=t, **kw))
    for u, got in zip(u0, y.numpy()[:3]):
        ref = np.empty(fine)
        speed = np.abs(u).max()
        for j, xj in enumerate(grid):
            # u(x, t) = u0(xi) with xi + t u0(xi) = x (increasing in xi before the shock)
            g = lambda s, xj=xj, u=u: s + t * _trig_eval(u, np.array([s]))[0][0] - xj  # noqa: E731
            xi = brentq(g, xj - 1.1 * t * speed, xj + 1.1 * t * speed, xtol=1e-14)
            ref[j] = _trig_eval(u, np.array([xi]))[0][0]
        assert np.max(np.abs(got - ref)) < 1e-3 * speed
        assert np.max(np.abs(got - u)) > 0.05 * speed  # the solution did move


def test_burgers_matches_cole_hopf_at_the_default_viscosity():
    d = D.burgers(n=20, grid_size=256, fine=256, modes=40, dtype=torch.float64)
    x, y = _all(d)
    u0, u1 = x.numpy(), y.numpy()
    nu, t, f = d.meta["viscosity"], d.meta["time"], 256
    assert abs(u0.mean(axis=1)).max() < 1e-12  # zero-mean field: the potential is periodic
    k = np.fft.rfftfreq(f, 1.0 / f)
    uh = np.fft.rfft(u0)
    big_u = np.zeros_like(uh)
    big_u[:, 1:] = uh[:, 1:] / (2j * np.pi * k[1:])
    phi0 = np.exp(-np.fft.irfft(big_u, n=f) / (2 * nu))  # u = -2 nu phi_x / phi, phi_t = nu phi_xx
    ph = np.fft.rfft(phi0) * np.exp(-nu * (2 * np.pi * k) ** 2 * t)
    ref = -2 * nu * np.fft.irfft(2j * np.pi * k * ph, n=f) / np.fft.irfft(ph, n=f)
    assert np.linalg.norm(u1 - ref) / np.linalg.norm(ref) < 1e-5
    assert np.linalg.norm(u1 - u0) > 0.5 * np.linalg.norm(u0)


def test_burgers_subsampling_commutes_with_the_generator():
    kw = {"n": 30, "fine": 256, "modes": 16, "dtype": torch.float64, "seed": 3}
    P._burgers_fine.cache_clear()
    coarse = D.burgers(grid_size=32, **kw)
    P._burgers_fine.cache_clear()
    fine = D.burgers(grid_size=128, **kw)
    for part in ("train", "val", "test"):
        a, b = getattr(coarse, part), getattr(fine, part)
        torch.testing.assert_close(a.x, b.x[:, ::4], rtol=0, atol=0)
        torch.testing.assert_close(a.y, b.y[:, ::4], rtol=0, atol=0)
    torch.testing.assert_close(coarse.meta["nodes"], torch.arange(32, dtype=torch.float64) / 32)
    assert coarse.in_features == coarse.out_features == 32 and coarse.task == "regression"


def test_solve_burgers_converges_in_time():
    rng = np.random.default_rng(0)
    u0 = P._periodic_field(rng, 4, 16, 2.5, 7.0, 256)
    ref = P.solve_burgers(u0, 0.05, 0.5, steps=400)
    errs = [np.abs(P.solve_burgers(u0, 0.05, 0.5, steps=s) - ref).max() for s in (10, 20)]
    assert errs[1] < errs[0] / 8  # fourth order: a factor of about 16 per halving


# --------------------------------------------------------------------------------------------
# Darcy
# --------------------------------------------------------------------------------------------


def _poisson_series(nodes: np.ndarray, a: float, terms: int = 301) -> np.ndarray:
    """``u`` of ``-a lap u = 1`` on the unit square, ``u = 0`` on the boundary, at ``nodes``
    (``[s]`` per axis): ``sum_{m, n odd} 16 sin(m pi x) sin(n pi y) / (pi^4 a m n (m^2 + n^2))``."""
    m = np.arange(1, terms + 1, 2)
    s = np.sin(np.pi * np.outer(nodes, m))  # [s, M]
    coef = 16.0 / (np.pi**4 * a * np.outer(m, m) * (m[:, None] ** 2 + m[None, :] ** 2))
    return s @ coef @ s.T


@pytest.mark.parametrize("a_const", [1.0, 4.0])
def test_darcy_constant_coefficient_matches_the_series(a_const):
    errs = []
    for fine in (17, 33):
        d = D.darcy(n=10, grid_size=17, fine=fine, a_values=(a_const, a_const), dtype=torch.float64)
        x, y = _all(d)
        assert torch.all(x == a_const)
        ref = _poisson_series(np.linspace(0, 1, 17), a_const)
        err = np.abs(y.numpy().reshape(-1, 17, 17) - ref).max() / np.abs(ref).max()
        errs.append(err)
    assert errs[1] < 2e-3
    assert errs[1] < errs[0] / 3  # second order: about 4 per halving of h


def _layered_reference(xs: np.ndarray, ys: np.ndarray, cut: float, a1: float, a2: float):
    """Exact ``u`` for ``a = a1`` on ``x < cut``, ``a2`` beyond: ``u = sum_n v_n(x) sin(n pi
    y)`` (``n`` odd) where ``-(a v')' + a (n pi)^2 v = 4 / (n pi)``, ``v(0) = v(1) = 0`` and
    ``v``, ``a v'`` continuous at ``cut``; on each layer ``v`` is a constant plus two
    exponentials, written so that none overflows."""
    out = np.zeros((xs.size, ys.size))
    for n in range(1, 200, 2):
        k = n * np.pi
        f = 4.0 / k
        p1, p2 = f / (a1 * k * k), f / (a2 * k * k)
        e1, e2 = math.exp(-k * cut), math.exp(-k * (1 - cut))
        # layer 1 on [0, cut]: v = p1 + A1 e^{k (x - cut)} + B1 e^{-k x}
        # layer 2 on [cut, 1]: v = p2 + A2 e^{k (x - 1)} + B2 e^{-k (x - cut)}
        mat = np.array(
            [
                [e1, 1.0, 0.0, 0.0],  # v(0) = 0
                [0.0, 0.0, 1.0, e2],  # v(1) = 0
                [1.0, e1, -e2, -1.0],  # v continuous at cut
                [a1 * k, -a1 * k * e1, -a2 * k * e2, a2 * k],  # a v' continuous at cut
            ]
        )
        rhs = np.array([-p1, -p2, p2 - p1, 0.0])
        a1c, b1c, a2c, b2c = np.linalg.solve(mat, rhs)
        left = xs < cut
        v = np.where(
            left,
            p1 + a1c * np.exp(k * (np.minimum(xs, cut) - cut)) + b1c * np.exp(-k * xs),
            p2 + a2c * np.exp(k * (xs - 1)) + b2c * np.exp(-k * (np.maximum(xs, cut) - cut)),
        )
        out += np.outer(v, np.sin(k * ys))
    return out


def test_solve_darcy_matches_an_exact_layered_solution():
    a1, a2 = 10.0, 2.0
    errs = []
    for fine in (33, 65):
        # the jump sits on the face midway between two nodes, where the harmonic mean puts it
        cut = (math.floor(0.45 * (fine - 1)) + 0.5) / (fine - 1)
        xs = np.linspace(0, 1, fine)
        a = np.where(xs[:, None] < cut, a1, a2) * np.ones((1, fine))
        u = P.solve_darcy(a)
        ref = _layered_reference(xs, xs, cut, a1, a2)
        errs.append(np.abs(u - ref).max() / np.abs(ref).max())
    assert errs[1] < 1e-3
    assert errs[1] < errs[0] / 3  # second order


def test_darcy_fields_subsampling_and_boundary():
    kw = {"n": 12, "fine": 33, "seed": 5, "dtype": torch.float64}
    P._darcy_fine.cache_clear()
    coarse = D.darcy(grid_size=9, **kw)
    P._darcy_fine.cache_clear()
    full = D.darcy(grid_size=33, **kw)
    xc, yc = _all(coarse)
    xf, yf = _all(full)
    torch.testing.assert_close(xc.view(-1, 9, 9), xf.view(-1, 33, 33)[:, ::4, ::4], rtol=0, atol=0)
    torch.testing.assert_close(yc.view(-1, 9, 9), yf.view(-1, 33, 33)[:, ::4, ::4], rtol=0, atol=0)
    assert set(torch.unique(xf).tolist()) == {3.0, 12.0}
    grid = yf.view(-1, 33, 33)
    for edge in (grid[:, 0], grid[:, -1], grid[:, :, 0], grid[:, :, -1]):
        assert torch.all(edge == 0)
    assert torch.all(grid[:, 1:-1, 1:-1] > 0)  # maximum principle: positive forcing
    # compliance J(a) = int u_a (forcing 1) decreases as a grows: J(12) < J(a) < J(3)
    series = _poisson_series(np.linspace(0, 1, 33), 1.0)
    compliance = grid.sum(dim=(1, 2)).numpy() / 32**2
    assert np.all(compliance < 0.99 * series.sum() / 32**2 / 3.0)
    assert np.all(compliance > 1.01 * series.sum() / 32**2 / 12.0)
    assert coarse.meta["grid_shape"] == (9, 9) and coarse.in_features == 81
    torch.testing.assert_close(
        coarse.meta["nodes"][11], torch.tensor([0.125, 0.25], dtype=torch.float64)
    )


# --------------------------------------------------------------------------------------------
# signals and digits at several resolutions
# --------------------------------------------------------------------------------------------


def test_signals_at_2x_and_4x_restrict_to_the_1x_set():
    kw = {"n": 200, "seed": 11, "dtype": torch.float64}
    one, two, four = (D.signals(grid_size=g, **kw) for g in (33, 65, 129))
    for part in ("train", "val", "test"):
        a, b, c = (getattr(d, part) for d in (one, two, four))
        torch.testing.assert_close(b.x[:, ::2], a.x, rtol=0, atol=1e-12)
        torch.testing.assert_close(c.x[:, ::4], a.x, rtol=0, atol=1e-12)
        assert torch.equal(a.y, b.y) and torch.equal(a.y, c.y)
    nodes = np.sort(np.random.default_rng(0).random(17))
    explicit = D.signals(nodes=nodes, **kw)
    torch.testing.assert_close(explicit.meta["nodes"], torch.as_tensor(nodes))
    assert explicit.in_features == 17 and one.num_classes == 10 == len(D.SIGNAL_CLASSES)
    assert max(one.meta["class_counts"]) - min(one.meta["class_counts"]) <= 1


def test_signals_are_continuous_noise_is_calibrated_and_classes_learnable():
    from sklearn.linear_model import LogisticRegression

    kw = {"n": 1000, "seed": 2, "dtype": torch.float64}
    # continuity: the largest jump between neighbouring nodes halves with the spacing
    jumps = [_all(D.signals(grid_size=g, **kw))[0].diff(dim=1).abs().max() for g in (257, 513)]
    assert jumps[1] < 0.6 * jumps[0]
    # the noise is an additive field with pointwise standard deviation `noise`
    clean, y = _all(D.signals(noise=0.0, grid_size=65, **kw))
    noisy, y2 = _all(D.signals(noise=0.3, grid_size=65, **kw))
    assert torch.equal(y, y2)
    assert abs(float((noisy - clean).std()) / 0.3 - 1) < 0.1
    # a linear classifier on the clean functions is far above chance, and noise makes it harder
    scores = []
    for x in (clean, noisy):
        fit = LogisticRegression(max_iter=300).fit(x[:700].numpy(), y[:700].numpy())
        scores.append(fit.score(x[700:].numpy(), y[700:].numpy()))
    assert scores[0] > 0.5 and scores[1] < scores[0]


def test_digits_at_2x_is_bilinear_resampling():
    import torch.nn.functional as F

    base = D.digits(seed=1, dtype=torch.float64)
    twice = D.digits(seed=1, scale=2, dtype=torch.float64)
    near = D.digits(seed=1, scale=2, interpolation="nearest", dtype=torch.float64)
    assert twice.meta["image_shape"] == (16, 16) and twice.in_features == 256
    for part in ("train", "val", "test"):
        a, b, c = getattr(base, part), getattr(twice, part), getattr(near, part)
        assert torch.equal(a.y, b.y)
        ref = F.interpolate(
            a.x.view(-1, 1, 8, 8), scale_factor=2, mode="bilinear", align_corners=False
        )
        torch.testing.assert_close(b.x, ref.reshape(-1, 256), rtol=0, atol=1e-12)
        nodes = D.pixel_centres((16, 16), dtype=torch.float64)
        torch.testing.assert_close(c.x, D.resample_images(a.x, (8, 8), nodes), rtol=0, atol=0)
    assert torch.equal(D.digits(seed=1, scale=1).train.x, D.digits(seed=1).train.x)


# --------------------------------------------------------------------------------------------
# seeds, registry, validation
# --------------------------------------------------------------------------------------------

SMALL = {
    "burgers": {"n": 20, "grid_size": 32, "fine": 128, "modes": 8},
    "darcy": {"n": 20, "grid_size": 9, "fine": 17},
    "signals": {"n": 100, "grid_size": 33},
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_seeds_reproducible_and_global_state_untouched(name):
    torch.manual_seed(123)
    np.random.seed(123)  # noqa: NPY002 (the legacy global state must stay untouched)
    t_state, n_state = torch.get_rng_state(), np.random.get_state()[1].copy()  # noqa: NPY002
    a = D.load(name, seed=7, **SMALL[name])
    b = D.load(name, seed=7, **SMALL[name])
    c = D.load(name, seed=8, **SMALL[name])
    assert torch.equal(torch.get_rng_state(), t_state)
    assert np.array_equal(np.random.get_state()[1], n_state)  # noqa: NPY002
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(_all(a)[0], _all(c)[0])
    assert a.name == name and len(a) == SMALL[name]["n"]
    for split in (a.train, a.val, a.test):
        assert split.x.dtype == torch.float32 and split.x.shape[1] == a.in_features
        assert torch.isfinite(split.x).all()


def test_registry_covers_old_and_new_names():
    assert set(D.DATASETS) < set(D.REGISTRY)
    assert {"burgers", "darcy", "signals"} <= set(D.REGISTRY)
    with pytest.raises(ValueError, match=r"name: expected one of .*burgers.*got name='kdv'"):
        D.load("kdv")


@pytest.mark.parametrize(
    ("builder", "kwargs", "pattern"),
    [
        (
            D.burgers,
            {"grid_size": 100},
            r"grid_size: expected a divisor of fine=1024.*grid_size=100",
        ),
        (D.burgers, {"fine": 1023, "grid_size": 1}, r"grid_size: expected an int >= 2"),
        (D.burgers, {"fine": 128, "grid_size": 2}, r"modes: expected at most fine / 3 = 42"),
        (D.burgers, {"fine": 255}, r"fine: expected an even int, got fine=255"),
        (D.burgers, {"viscosity": 0.0}, r"viscosity: expected a finite number > 0, got 0\.0"),
        (D.burgers, {"time": -1.0}, r"time: expected a finite number > 0, got -1\.0"),
        (D.burgers, {"n": 0}, r"n: expected an int >= 1, got 0"),
        (D.darcy, {"grid_size": 16}, r"grid_size: expected 2\^j \+ 1.*got grid_size=16"),
        (D.darcy, {"grid_size": 129}, r"at most fine=65"),
        (D.darcy, {"fine": 64}, r"fine: expected 2\^k \+ 1.*got fine=64"),
        (D.darcy, {"a_values": (1.0, -2.0)}, r"a_values: expected two finite positive numbers"),
        (D.darcy, {"a_values": (1.0,)}, r"a_values: expected two"),
        (D.signals, {"noise": -0.1}, r"noise: expected a finite number >= 0, got -0\.1"),
        (
            D.signals,
            {"nodes": [0.0, 0.5, 1.5]},
            r"nodes: expected finite points in \[0, 1\], got nodes\[2\]=.*1\.5",
        ),
        (D.signals, {"nodes": [[0.0, 1.0]]}, r"nodes: expected a 1-D array"),
        (
            D.signals,
            {"nodes": [0.0, 1.0], "grid_size": 3},
            r"grid_size: expected None or len\(nodes\)=2 .* got 3",
        ),
        (D.signals, {"grid_size": 1}, r"grid_size: expected an int >= 2, got 1"),
        (D.digits, {"scale": 0}, r"scale: expected an int >= 1, got 0"),
        (D.digits, {"interpolation": "cubic"}, r"interpolation: expected one of bilinear, nearest"),
    ],
)
def test_bad_arguments_raise_clear_errors(builder, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        builder(**kwargs)


def test_solvers_reject_bad_arrays():
    with pytest.raises(ValueError, match=r"u0: expected shape \[F\] or \[B, F\] with F even"):
        D.solve_burgers(np.zeros(7), 0.1, 1.0)
    with pytest.raises(ValueError, match="u0: expected finite values"):
        D.solve_burgers(np.full(8, np.nan), 0.1, 1.0)
    with pytest.raises(ValueError, match=r"a: expected shape \[F, F\]"):
        D.solve_darcy(np.ones((4, 5)))
    with pytest.raises(ValueError, match="a: expected finite and positive"):
        D.solve_darcy(np.zeros((5, 5)))


@pytest.mark.parametrize("forcing", [True, np.True_, np.bool_(False), "1.0"])
def test_solve_darcy_refuses_a_forcing_that_is_not_a_number(forcing):
    with pytest.raises(ValueError, match=r"^forcing: expected a number, got "):
        D.solve_darcy(np.ones((5, 5)), forcing)


def test_darcy_coefficient_takes_the_first_value_where_the_random_field_is_nonnegative():
    """The documented construction, rebuilt here term by term: a = a_values[0] where
    sum_{(k, l) != 0} s_kl xi_kl cos(pi k x) cos(pi l y) >= 0 and a_values[1] elsewhere."""
    n, s, modes, alpha, tau, seed = 60, 9, 4, 2.0, 3.0, 5
    d = D.darcy(n=n, grid_size=s, fine=s, modes=modes, alpha=alpha, tau=tau, seed=seed,
                a_values=(12.0, 3.0), dtype=torch.float64)  # fmt: skip
    xi = np.random.default_rng(seed).standard_normal((n, modes, modes))
    t = np.linspace(0.0, 1.0, s)
    field = np.zeros((n, s, s))
    for k in range(modes):
        for l in range(modes):
            if k == l == 0:
                continue
            s_kl = (1.0 + math.pi**2 * (k * k + l * l) / tau**2) ** (-alpha / 2)
            cos_k, cos_l = np.cos(math.pi * k * t), np.cos(math.pi * l * t)
            field += s_kl * xi[:, k, l, None, None] * cos_k[None, :, None] * cos_l[None, None, :]
    expected = np.where(field >= 0.0, 12.0, 3.0).reshape(n, s * s)
    clear = np.abs(field.reshape(n, s * s)) > 1e-9  # nodes where rounding cannot flip the sign
    for name in ("train", "val", "test"):
        rows = d.meta["split_indices"][name].numpy()
        got = getattr(d, name).x.numpy()
        np.testing.assert_array_equal(got[clear[rows]], expected[rows][clear[rows]])
