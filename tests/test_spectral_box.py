"""The spectral kernel on boxes with boundaries: a band-limited kernel of period P >= 2 L
applied as a linear (non-circular) convolution over Omega, by zero-padded FFTs, checked
against direct quadrature sums and integrals written in NumPy / SciPy."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy import integrate

from grids import GridSchedule
from spacetime_nets import SpaceTimeNet, to_resnet
from spacetime_nets.integrate import Discretization
from spacetime_nets.kernels import SpectralKernel

F64 = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def np_kappa(K: np.ndarray, delta: np.ndarray, period) -> np.ndarray:
    """kappa(delta) = sum_{|m| < M} K_m e^{2 pi i m . delta / P} (K_{-m} = conj K_m), real,
    ``[c, c, *delta.shape[:-1]]``; ``K [c, c, *modes]`` complex in the kernel's layout."""
    if delta.shape[-1] == 1:
        m = np.arange(K.shape[-1])
        th = 2 * np.pi * delta[..., 0, None] * m / period[0]
        e = np.where(m == 0, 1.0, 2.0) * np.exp(1j * th)
        return np.real(np.einsum("oim,...m->oi...", K, e))
    M0, M1 = (K.shape[-2] + 1) // 2, K.shape[-1]
    m0, m1 = np.r_[np.arange(M0), np.arange(-M0 + 1, 0)], np.arange(M1)
    th = (
        2
        * np.pi
        * (
            delta[..., 0, None, None] * m0[:, None] / period[0]
            + delta[..., 1, None, None] * m1 / period[1]
        )
    )
    e = np.where(m1 == 0, 1.0, 2.0)[None, :] * np.exp(1j * th)
    return np.real(np.einsum("oixy,...xy->oi...", K, e))


def coefficients(k: SpectralKernel, piece: int = 0) -> np.ndarray:
    w = k.weight[piece].detach().double().numpy()
    return w[..., 0] + 1j * w[..., 1]


def step_op(k: SpectralKernel, sched: GridSchedule):
    p = Discretization(sched).to(dtype=F64)._point(0)
    return k.step_op(0, 0.0, p, p)


@pytest.mark.parametrize(
    "shape, domain, modes, rule",
    [
        (17, (0.0, 2.0), 5, "trapezoid"),
        (16, (0.0, 1.0), 6, "midpoint"),
        (17, (-1.0, 1.0), 4, "simpson"),
        ((9, 11), ((0.0, 1.0), (0.0, 2.0)), (3, 4), "trapezoid"),
    ],
)
def test_box_fft_equals_direct_quadrature_sum_without_wraparound(shape, domain, modes, rule):
    sched = GridSchedule.constant(shape, 1, domain=domain, rule=rule).with_channels(2).to(F64)
    k = SpectralKernel.for_schedule(sched, modes=modes, generator=gen()).double()
    g = sched.grids[0]
    lengths = [b - a for a, b in g.domain.bounds]
    assert k.period == pytest.approx(tuple(2 * L for L in lengths))
    op = step_op(k, sched)
    assert type(op).__name__ == "SpectralOp"
    x = torch.randn(3, 2, g.n, generator=gen(1), dtype=F64)
    nodes, w = g.nodes.double().numpy(), g.weights.double().numpy()
    kap = np_kappa(coefficients(k), nodes[:, None, :] - nodes[None, :, :], k.period)
    b = k.bias_coeff[0].detach().numpy()
    A = k.point[0].detach().numpy()
    xn = x.numpy()
    ref = np.einsum("oiab,zib->zoa", kap * w, xn) + np.einsum("oi,zia->zoa", A, xn) + b[:, None]
    np.testing.assert_allclose(op(x).detach().numpy(), ref, rtol=1e-10, atol=1e-12)


def test_box_operator_converges_at_second_order_to_the_integral():
    """y(xi) = int_0^1 kappa(xi - zeta) x(zeta) dzeta for a smooth x, by scipy.integrate.quad,
    at xi = 0, 1/4, 1/2, 1 (nodes of every grid): the trapezoid rule's O(h^2)."""
    xs = [0.0, 0.25, 0.5, 1.0]

    def f(z):
        return np.exp(np.sin(3 * z)) - z

    base = GridSchedule.constant(9, 1).with_channels(1)
    k = SpectralKernel.for_schedule(base, modes=4, pointwise=False, bias=False, generator=gen(3))
    k = k.double()
    K, period = coefficients(k), k.period

    def integrand(z: float, xi: float) -> float:
        return np_kappa(K, np.array([[xi - z]]), period)[0, 0, 0] * f(z)

    opts = {"epsabs": 1e-13, "epsrel": 1e-13, "limit": 200}
    ref = [integrate.quad(integrand, 0.0, 1.0, args=(xi,), **opts)[0] for xi in xs]
    errors = []
    for n in (9, 17, 33, 65):
        sched = GridSchedule.constant(n, 1).with_channels(1).to(F64)
        op = step_op(k, sched)
        nodes = sched.grids[0].nodes[:, 0].double().numpy()
        y = op(torch.as_tensor(f(nodes))[None, None])[0, 0].detach().numpy()
        at = [int(round(xi * (n - 1))) for xi in xs]
        errors.append(max(abs(y[i] - r) for i, r in zip(at, ref)))
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert errors[-1] < 1e-3
    assert np.all(orders > 1.8), (errors, orders)


def _hat_integral(K, period, xi, nodes, values):
    """int kappa(xi - zeta) x_h(zeta) dzeta, x_h the piecewise-linear interpolant of
    ``values`` at ``nodes``: 8-point Gauss-Legendre on every cell (kappa has 4 modes, smooth
    over a cell: converged to round-off)."""
    gx, gw = np.polynomial.legendre.leggauss(12)
    total = 0.0
    for a, b, va, vb in zip(nodes[:-1], nodes[1:], values[:-1], values[1:]):
        z = (a + b) / 2 + (b - a) / 2 * gx
        xh = va + (vb - va) * (z - a) / (b - a)
        kap = np_kappa(K, (xi - z)[:, None], period)[0, 0]
        total += (b - a) / 2 * np.sum(gw * kap * xh)
    return total


def test_galerkin_taps_integrate_the_interpolant_exactly_and_nest():
    """Galerkin taps: y_i = int kappa(xi_i - zeta) x_h(zeta) dzeta, exact where x vanishes at
    the box's ends (the end hats are only O(h^2)); a rough input on 17 nodes and its linear
    interpolant on 33 nodes then give the same outputs at the common nodes."""
    s17 = GridSchedule.constant(17, 1).with_channels(1).to(F64)
    k = SpectralKernel.for_schedule(
        s17, modes=4, pointwise=False, bias=False, taps="galerkin", generator=gen(4)
    ).double()
    K = coefficients(k)
    nodes = s17.grids[0].nodes[:, 0].double().numpy()
    rough = np.random.default_rng(0).standard_normal(17)
    rough[0] = rough[-1] = 0.0
    y17 = step_op(k, s17)(torch.as_tensor(rough)[None, None])[0, 0].detach().numpy()
    ref = [_hat_integral(K, k.period, xi, nodes, rough) for xi in nodes]
    np.testing.assert_allclose(y17, ref, rtol=1e-10, atol=1e-12)
    s33 = GridSchedule.constant(33, 1).with_channels(1).to(F64)
    fine = np.interp(s33.grids[0].nodes[:, 0].numpy(), nodes, rough)
    y33 = step_op(k, s33)(torch.as_tensor(fine)[None, None])[0, 0].detach().numpy()
    np.testing.assert_allclose(y33[::2], y17, rtol=1e-10, atol=1e-12)
    # sampled taps weigh point values: the same two inputs give other outputs
    k.taps = "sampled"
    a = step_op(k, s17)(torch.as_tensor(rough)[None, None])[0, 0].detach().numpy()
    b = step_op(k, s33)(torch.as_tensor(fine)[None, None])[0, 0].detach().numpy()[::2]
    assert np.abs(a - b).max() > 1e-3 * np.abs(a).max()


@pytest.mark.parametrize("shape, taps", [(33, "sampled"), (33, "galerkin"), ((9, 13), "sampled")])
def test_box_spectral_model_exports_exactly(shape, taps):
    dom = (0.0, 1.0) if isinstance(shape, int) else ((0.0, 1.0), (0.0, 2.0))
    sched = GridSchedule.constant(shape, 3, domain=dom).with_channels(3)
    modes = 6 if isinstance(shape, int) else (3, 4)
    kern = SpectralKernel.for_schedule(sched, modes=modes, taps=taps, generator=gen(5))
    m = SpaceTimeNet(
        sched,
        None,
        2,
        kernel=kern,
        form="inside",
        activation="gelu",
        lift="identity",
        readout="function",
        channels=3,
        seed=0,
    )
    x = torch.randn(2, 1, *((shape,) if isinstance(shape, int) else shape), generator=gen(6))
    r = to_resnet(m)
    assert "FFT" in r.layer_table()
    torch.testing.assert_close(r(x), m(x), rtol=1e-5, atol=1e-5)
    # the L2 control norm is the quadrature sum over Omega x Omega, as a dense matrix gives it
    op = step_op(kern.double(), sched.to(F64))
    g = sched.grids[0].to(F64)
    nodes, w = g.nodes.numpy(), g.weights.numpy()
    kap = np_kappa(coefficients(kern), nodes[:, None, :] - nodes[None, :, :], kern.period)
    ref = ((kap**2).sum(axis=(0, 1)) * w[:, None] * w[None, :]).sum()
    A, b = kern.point[0].detach().numpy(), kern.bias_coeff[0].detach().numpy()
    ref += w.sum() * ((A**2).sum() + (b**2).sum())
    got = float(op.control_norm_sq(g.weights, g.weights).detach())
    assert got == pytest.approx(ref, rel=1e-10)


def test_box_period_and_dense_path_checks():
    box = GridSchedule.constant(17, 2)
    with pytest.raises(ValueError, match=r"period: 1 on axis 0 is below twice the box's length"):
        SpaceTimeNet(
            box,
            None,
            1,
            lift="identity",
            readout="function",
            channels=2,
            kernel=SpectralKernel((0.0, 1.0), channels=2, modes=3, pieces=2),
        )
    periodic = GridSchedule.constant(16, 2, rule="periodic")
    with pytest.raises(ValueError, match="period: 2 on axis 0 differs from the periodic box"):
        SpaceTimeNet(
            periodic,
            None,
            1,
            lift="identity",
            readout="function",
            channels=2,
            kernel=SpectralKernel((0.0, 1.0), channels=2, modes=3, pieces=2, period=2.0),
        )
    with pytest.raises(ValueError, match="period: 0.5 on axis 0 is shorter than the box"):
        SpectralKernel((0.0, 1.0), period=0.5)
    with pytest.raises(ValueError, match="taps: expected one of galerkin, sampled; got 'exact'"):
        SpectralKernel((0.0, 1.0), taps="exact")
    # modes against the padded size N = P / h = 32 at 17 nodes: 15 fit, 16 alias
    SpaceTimeNet(
        box, None, 1, kernel="spectral", lift="identity", readout="function", channels=2, modes=15
    )
    with pytest.raises(ValueError, match="modes: 16 on axis 0 needs more than 32 points"):
        SpaceTimeNet(
            box,
            None,
            1,
            kernel="spectral",
            lift="identity",
            readout="function",
            channels=2,
            modes=16,
        )
    # Gauss-Legendre nodes have no FFT path: one warning naming the fix, none when allowed
    gl = GridSchedule.constant(12, 2, rule="gauss_legendre")
    with pytest.warns(UserWarning, match="no fast path.*allow_dense=True") as rec:
        SpaceTimeNet(
            gl, None, 1, kernel="spectral", lift="identity", readout="function", channels=2, modes=3
        )
    assert len([r for r in rec if "fast path" in str(r.message)]) == 1
    kern = SpectralKernel.for_schedule(gl, channels=2, modes=3, allow_dense=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = SpaceTimeNet(gl, None, 1, kernel=kern, lift="identity", readout="function", channels=2)
    assert m(torch.randn(2, 12)).shape == (2, 12)
    with pytest.raises(ValueError, match="taps: galerkin spectral taps need the FFT path"):
        SpaceTimeNet(
            gl,
            None,
            1,
            lift="identity",
            readout="function",
            channels=2,
            kernel=SpectralKernel.for_schedule(gl, channels=2, modes=3, taps="galerkin"),
        )
