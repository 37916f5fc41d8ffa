"""Checks of the factored form of basis kernels (``LowRankOp``): y = U (M V^T x + c).

References, all independent of the factored code: the kernel matrix W_ij = w(t, xi_i, zeta_j)
omega_j and the bias b(t, xi_i) assembled here by loops in NumPy from NumPy's Legendre
polynomials (scalar and channel kernels, 1-D and 2-D); the quadrature sum of the control norm
taken entry by entry over that matrix; whole models compared with a NumPy Euler loop; and the
multiply-add count written out from the shapes.
"""

import math

import numpy as np
import pytest
import torch
from numpy.polynomial import legendre as npleg

import spacetime_nets as st
from grids import Grid, GridSchedule
from spacetime_nets.kernels import BasisKernel
from spacetime_nets.ops import Dense, LowRankOp


def orthonormal_legendre(x: np.ndarray, a: float, b: float, modes: int) -> np.ndarray:
    """[n, modes]: sqrt((2m+1)/L) P_m(2(x-a)/L - 1)."""
    L = b - a
    cols = []
    for m in range(modes):
        e = np.zeros(m + 1)
        e[m] = 1.0
        cols.append(math.sqrt((2 * m + 1) / L) * npleg.legval(2 * (x - a) / L - 1, e))
    return np.stack(cols, axis=1)


def basis_np(nodes: np.ndarray, bounds, modes: int) -> np.ndarray:
    """Tensor-product basis [n, modes^d], the first axis slowest."""
    out = np.ones((nodes.shape[0], 1))
    for ax, (a, b) in enumerate(bounds):
        p = orthonormal_legendre(nodes[:, ax], a, b, modes)
        out = (out[:, :, None] * p[:, None, :]).reshape(nodes.shape[0], -1)
    return out


def reference_matrix(kern: BasisKernel, out: Grid, inp: Grid):
    """W [c n_out, c n_in] and beta [c n_out] (channel-major) by loops over the formula."""
    C = kern.coeff[0].detach().double().numpy()
    cb = kern.bias_coeff[0].detach().double().numpy()
    bounds = kern.domain.bounds
    po = basis_np(out.nodes.double().numpy(), bounds, kern.modes)
    pi = basis_np(inp.nodes.double().numpy(), bounds, kern.modes)
    om = inp.weights.double().numpy()
    if kern.channels is None:
        C, cb = C[None, None], cb[None]
    ch = C.shape[0]
    W = np.zeros((ch * out.n, ch * inp.n))
    beta = np.zeros(ch * out.n)
    for o in range(ch):
        beta[o * out.n : (o + 1) * out.n] = po @ cb[o]
        for p in range(ch):
            for i in range(out.n):
                for j in range(inp.n):
                    W[o * out.n + i, p * inp.n + j] = po[i] @ C[o, p] @ pi[j] * om[j]
    return W, beta


def grid_pair(dim: int):
    if dim == 1:
        return Grid.uniform(9, (0.0, 1.0)), Grid.uniform(13, (0.0, 1.0), rule="simpson")
    box = [(0.0, 1.0), (0.0, 2.0)]
    return Grid.uniform((5, 4), box), Grid.uniform((3, 6), box)


def step_args(g: Grid):
    return g.nodes.double(), g.weights.double()


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("channels", [None, 3])
def test_factored_operator_equals_the_kernel_matrix(dim, channels):
    out, inp = grid_pair(dim)
    box = (0.0, 1.0) if dim == 1 else [(0.0, 1.0), (0.0, 2.0)]
    kern = BasisKernel(box, modes=2, channels=channels, generator=torch.Generator().manual_seed(1))
    kern = kern.double()
    W, beta = reference_matrix(kern, out, inp)
    (on, _), (nodes_in, w_in) = step_args(out), step_args(inp)
    op = kern.low_rank(0.0, on, nodes_in, w_in)
    assert isinstance(op, LowRankOp)
    x = torch.randn(4, (channels or 1) * inp.n, dtype=torch.float64)
    ref = x.numpy() @ W.T + beta
    shaped = x if channels is None else x.view(4, channels, inp.n)
    got = op(shaped).reshape(4, -1).detach().numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    Wd, bd = op.dense()
    np.testing.assert_allclose(Wd.detach().numpy(), W, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(bd.detach().numpy(), beta, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("channels", [None, 2])
def test_factored_control_norm_is_the_quadrature_sum(channels):
    out, inp = grid_pair(1)
    kern = BasisKernel(modes=3, channels=channels, generator=torch.Generator().manual_seed(2))
    kern = kern.double()
    W, beta = reference_matrix(kern, out, inp)
    w_out = out.weights.double().numpy()
    w_in = inp.weights.double().numpy()
    c = channels or 1
    wo, wi = np.tile(w_out, c), np.tile(w_in, c)
    ref = sum(
        wo[i] * wi[j] * (W[i, j] / wi[j]) ** 2 for i in range(W.shape[0]) for j in range(W.shape[1])
    ) + float((wo * beta**2).sum())
    op = kern.low_rank(0.0, out.nodes.double(), inp.nodes.double(), inp.weights.double())
    got = op.control_norm_sq(out.weights.double(), inp.weights.double())
    assert float(got.detach()) == pytest.approx(ref, rel=1e-12)


def test_factored_and_dense_models_agree_with_a_numpy_loop():
    """A moving schedule (every step changes width) with the factored form forced on and off:
    both match an Euler loop written with NumPy's matrices, np.interp transfers, and the
    quadrature readout."""
    sched = GridSchedule.hourglass(33, 17, 4, T=1.0, transfer_kind="linear")
    x = torch.randn(5, 33, dtype=torch.float64)
    outs, grads = {}, {}
    for fac in (True, False):
        kern = BasisKernel(
            modes=4, pieces=4, generator=torch.Generator().manual_seed(3), factored=fac
        )
        m = st.SpaceTimeNet(
            sched, 33, 2, kernel=kern, form="inside", activation="tanh", lift="identity", seed=0
        ).double()
        ops = m.controls()
        assert all(isinstance(sm.layers[0], LowRankOp) == fac for sm in ops)
        y = m(x)
        y.sum().backward()
        outs[fac], grads[fac] = y.detach(), kern.coeff.grad.clone()
    # NumPy reference (piece k on step k)
    h = x.numpy()
    for k in range(4):
        g_in, g_out = sched.grids[k], sched.grids[k + 1]
        po = basis_np(g_out.nodes.double().numpy(), [(0.0, 1.0)], 4)
        pi = basis_np(g_in.nodes.double().numpy(), [(0.0, 1.0)], 4)
        C = kern.coeff[k].detach().double().numpy()
        cb = kern.bias_coeff[k].detach().double().numpy()
        W = po @ C @ (pi * g_in.weights.double().numpy()[:, None]).T
        xi_in = g_in.nodes.double().numpy()[:, 0]
        xi_out = g_out.nodes.double().numpy()[:, 0]
        shortcut = np.stack([np.interp(xi_out, xi_in, row) for row in h])
        dt = float(sched.times[k + 1] - sched.times[k])
        h = shortcut + dt * (np.tanh(h) @ W.T + po @ cb)
    ref = m.readout(torch.from_numpy(h)).detach().numpy()
    np.testing.assert_allclose(outs[True].numpy(), ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(outs[False].numpy(), ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grads[True], grads[False], rtol=1e-10, atol=1e-12)


def test_factored_channel_model_exports_and_checkpoints():
    sched = GridSchedule.constant(24, 3).with_channels(3)
    kern = BasisKernel(modes=3, pieces=3, channels=3, generator=torch.Generator().manual_seed(4))
    m = st.SpaceTimeNet(sched, 24, 2, kernel=kern, activation="tanh", channels=3).double()
    assert isinstance(m.controls()[0].layers[0], LowRankOp)
    x = torch.randn(4, 24, dtype=torch.float64)
    y = m(x)
    resnet = st.to_resnet(m)
    torch.testing.assert_close(resnet(x), y, rtol=1e-10, atol=1e-12)
    y.square().sum().backward()
    g = kern.coeff.grad.clone()
    kern.coeff.grad = None
    mc = st.SpaceTimeNet(
        sched, 24, 2, kernel=kern, activation="tanh", channels=3, checkpoint=2
    ).double()
    mc.load_state_dict(m.state_dict())
    mc(x).square().sum().backward()
    torch.testing.assert_close(kern.coeff.grad, g, rtol=1e-10, atol=1e-12)


def test_automatic_choice_follows_the_multiply_add_count():
    kern = BasisKernel(modes=8)
    A = 8
    # factored iff A (n_in + n_out) + A^2 < n_in n_out
    assert kern.use_factored(64, 64) == (A * 128 + A * A < 64 * 64)
    assert kern.use_factored(64, 64) is True
    assert kern.use_factored(9, 9) is False
    kern_c = BasisKernel(modes=4, channels=8)
    c, A = 8, 4
    assert kern_c.use_factored(10, 10) == (c * A * 20 + (c * A) ** 2 < c * c * 100)
    assert BasisKernel(modes=8, factored=False).use_factored(4096, 4096) is False
    assert BasisKernel(modes=8, factored=True).use_factored(2, 2) is True
    small = BasisKernel(modes=2, pieces=2)
    sched = GridSchedule.constant(3, 2)
    m = st.SpaceTimeNet(sched, 3, 1, kernel=small, lift="identity")
    assert isinstance(m.controls()[0].layers[0], Dense)


def test_multiply_adds_of_a_factored_step():
    sched = GridSchedule.constant(40, 2)
    kern = BasisKernel(modes=5, pieces=2)
    traj = st.integrate(torch.randn(3, 40), sched, kern, form="inside")
    A, n, B = 5, 40, 3
    assert traj.stats["multiply_adds"] == 2 * B * (A * (n + n) + A * A)


def test_factored_argument_is_checked():
    with pytest.raises(ValueError, match=r"^factored: expected None, True or False, got 'yes'"):
        BasisKernel(factored="yes")


@pytest.mark.parametrize("time_degree", [None, 2])
def test_coefficient_gradients_match_finite_differences(time_degree):
    """The step operators take the coefficient pieces from one split per forward pass; the
    gradient of every piece must still be the derivative of the loss (central differences)."""
    sched = GridSchedule.constant(12, 3).with_channels(2)
    kern = BasisKernel(
        modes=2,
        pieces=3,
        time_degree=time_degree,
        channels=2,
        generator=torch.Generator().manual_seed(5),
    )
    m = st.SpaceTimeNet(sched, 12, 1, kernel=kern, activation="tanh", channels=2).double()
    x = torch.randn(3, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    m(x).square().sum().backward()
    assert kern._split is None  # the split lives only while the operators are built
    for param in (kern.coeff, kern.bias_coeff):
        flat = param.detach().view(-1)
        for i in range(0, flat.numel(), max(1, flat.numel() // 7)):
            old = float(flat[i])
            with torch.no_grad():
                flat[i] = old + 1e-6
                up = float(m(x).square().sum())
                flat[i] = old - 1e-6
                down = float(m(x).square().sum())
                flat[i] = old
            fd = (up - down) / 2e-6
            assert float(param.grad.view(-1)[i]) == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_factored_and_dense_forms_agree_at_1x_2x_4x():
    """One trained-size model moved to 2x and 4x finer grids: at every resolution the factored
    and the dense form give the same outputs, and the outputs converge (differences 1x-2x
    larger than 2x-4x, the quadrature's second order)."""
    outs = {}
    for fac in (True, False):
        kern = BasisKernel(modes=4, pieces=4, generator=torch.Generator().manual_seed(7))
        kern.factored = fac
        base = GridSchedule.constant(17, 4)
        m = st.SpaceTimeNet(base, 4, 3, kernel=kern, activation="tanh", lift="linear", seed=1)
        m = m.double()
        x = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
        with torch.no_grad():
            outs[fac] = [m.with_schedule(GridSchedule.constant(n, 4))(x) for n in (17, 33, 65)]
    for a, b in zip(outs[True], outs[False]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    y1, y2, y4 = outs[True]
    d12, d24 = float((y2 - y1).abs().max()), float((y4 - y2).abs().max())
    assert d24 < d12 / 3, (d12, d24)
