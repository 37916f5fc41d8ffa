"""Channels, stationary kernels (conv, spectral), lifts/readouts and resolution transfer,
checked against NumPy re-implementations of the formulas of docs/concepts.md."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.polynomial import legendre as npleg

from grids import Grid, GridSchedule
from spacetime_nets import SpaceTimeNet, to_resnet
from spacetime_nets.kernels import BasisKernel, ConvKernel, NodalKernel, SpectralKernel
from spacetime_nets.objectives import l2_control
from spacetime_nets.ops import Dense

F64 = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- references
def np_conv_kappa(C: np.ndarray, delta: np.ndarray, r, modes: int) -> np.ndarray:
    """kappa(delta) [c, c, *delta.shape[:-1]] = r^-d prod window(delta/r) sum_m C_m psi_m."""
    d = delta.shape[-1]
    prof = None
    for a in range(d):
        u = delta[..., a] / r[a]
        win = np.where(np.abs(u) < 1, (1 - u**2) ** 2, 0.0) / r[a]
        cols = [
            math.sqrt((2 * m + 1) / 2.0) * npleg.legval(np.clip(u, -1, 1), [0] * m + [1]) * win
            for m in range(modes)
        ]
        p = np.stack(cols, axis=-1)
        prof = (
            p if prof is None else (prof[..., :, None] * p[..., None, :]).reshape(*p.shape[:-1], -1)
        )
    return np.einsum("oim,...m->oi...", C, prof)


def np_hat_average(delta: float, hl: float, hr: float, r: float, modes: int) -> np.ndarray:
    """(2 / (hl + hr)) int g_m(delta - s) hat(s) ds [modes] by exact polynomial antiderivatives
    (numpy.polynomial), g_m(u r) = (1 - u^2)^2 psi_m(u) / r on |u| < 1."""
    P = np.polynomial.Polynomial
    out = np.zeros(modes)
    u = P([delta / r, -1.0 / r])  # (delta - s) / r as a polynomial in s
    win = (1 - u * u) ** 2 / r
    pieces = [
        (max(-hl, delta - r), min(0.0, delta + r), P([1.0, 1.0 / hl])),
        (max(0.0, delta - r), min(hr, delta + r), P([1.0, -1.0 / hr])),
    ]
    for lo, hi, hat in pieces:
        if hi <= lo:
            continue
        for m in range(modes):
            leg = P(npleg.leg2poly([0] * m + [1]))
            F = (math.sqrt((2 * m + 1) / 2.0) * leg(u) * win * hat).integ()
            out[m] += F(hi) - F(lo)
    return out * 2.0 / (hl + hr)


def np_galerkin_kappa(C: np.ndarray, g: Grid, r, modes: int) -> np.ndarray:
    """The Galerkin kernel [c, c, n, n]: per axis the profile averaged against the hat of the
    input node (half-widths from the grid's axis, mirrored at the ends), tensor product over
    the axes, times the coefficients C [c, c, modes^d]."""
    prof = None
    for a, axis in enumerate(g.axes):
        z = axis.double().numpy()
        gaps = np.diff(z)
        hl = np.concatenate([gaps[:1], gaps])
        hr = np.concatenate([gaps, gaps[-1:]])
        T = np.array(
            [
                [np_hat_average(xi - zj, hl[j], hr[j], r[a], modes) for j, zj in enumerate(z)]
                for xi in z
            ]
        )  # [n_a, n_a, modes]
        prof = (
            T
            if prof is None
            else np.einsum("ijm,klq->ikjlmq", prof, T).reshape(
                prof.shape[0] * T.shape[0], prof.shape[1] * T.shape[1], -1
            )
        )
    return np.einsum("oim,...m->oi...", C, prof)


def np_dense(kappa: np.ndarray, w: np.ndarray) -> np.ndarray:
    """W [c n, c n] from kappa [c, c, n_out, n_in] and weights [n_in]."""
    c, _, n, m = kappa.shape
    return (kappa * w).transpose(0, 2, 1, 3).reshape(c * n, c * m)


def grid_delta(g: Grid, periodic: bool = False) -> np.ndarray:
    x = g.nodes.double().numpy()
    delta = x[:, None, :] - x[None, :, :]
    if periodic:
        L = np.array([b - a for a, b in g.domain.bounds])
        delta = np.mod(delta + L / 2, L) - L / 2
    return delta


# --------------------------------------------------------------------------- conv
@pytest.mark.parametrize(
    "n, rule, domain, radius",
    [
        (17, "trapezoid", (0.0, 1.0), 0.3),
        (16, "periodic", (0.0, 1.0), 0.3),
        ((9, 11), "trapezoid", ((0.0, 1.0), (0.0, 2.0)), (0.3, 0.5)),
        ((8, 10), "periodic", ((0.0, 1.0), (0.0, 2.0)), (0.3, 0.5)),
    ],
)
def test_conv_operator_equals_dense_formula(n, rule, domain, radius):
    g = Grid.uniform(n, domain, rule).to(F64)
    k = ConvKernel(
        domain, channels=3, radius=radius, modes=3, pointwise=True, generator=gen(), taps="sampled"
    )
    k = k.double()
    sched = GridSchedule.constant(n, 1, domain=domain, rule=rule).with_channels(3).to(F64)
    from spacetime_nets.integrate import Discretization

    disc = Discretization(sched).to(dtype=F64)
    p = disc._point(0)
    op = k.step_op(0, 0.0, p, p)
    assert type(op).__name__ == "ConvOp"
    x = torch.randn(4, 3, g.n, generator=gen(1), dtype=F64)
    C = k.coeff[0].detach().numpy()
    r = radius if isinstance(radius, tuple) else (radius,)
    kap = np_conv_kappa(C, grid_delta(g, rule == "periodic"), r, 3)
    W = np_dense(kap, g.weights.numpy())
    A, b = k.point[0].detach().numpy(), k.bias_coeff[0].detach().numpy()
    ref = x.numpy().reshape(4, -1) @ W.T
    ref = ref.reshape(4, 3, -1) + np.einsum("oi,bin->bon", A, x.numpy()) + b[:, None]
    np.testing.assert_allclose(op(x).detach().numpy(), ref, rtol=1e-11, atol=1e-12)
    assert np.abs(ref).max() > 1e-2
    # the same kernel on a non-equispaced grid of the same nodes takes the dense path
    g2 = Grid.from_nodes(g.axes[0] if g.dim == 1 else list(g.axes), domain)
    if rule != "periodic":
        s2 = GridSchedule([0.0, 1.0], [g2, g2]).with_channels(3).to(F64)
        d2 = Discretization(s2).to(dtype=F64)
        p2 = d2._point(0)
        op2 = k.step_op(0, 0.0, p2, p2)
        assert isinstance(op2, Dense)
        np.testing.assert_allclose(
            (x.reshape(4, -1) @ op2[0].T + op2[1]).reshape(4, 3, -1).detach().numpy(),
            ref,
            atol=1e-12,
        )


def test_conv_taps_cover_the_open_support_and_refinement_adds_taps_not_parameters():
    """Sampled taps at |m h| < r only (the window is zero at |m h| = r), every one of them
    nonzero."""
    from spacetime_nets.integrate import Discretization

    k = ConvKernel((0.0, 1.0), channels=2, radius=0.25, modes=3, generator=gen(), taps="sampled")
    n_params = sum(p.numel() for p in k.parameters())
    sizes = []
    for n in (17, 33, 65):
        s = GridSchedule.constant(n, 1).with_channels(2)
        p = Discretization(s)._point(0)
        op = k.step_op(0, 0.0, p, p)
        sizes.append(op.taps.shape[-1])
        assert float(op.taps[..., 0].detach().abs().max()) > 0.0
        h = 1.0 / (n - 1)
        edge = torch.tensor([[0.25], [-0.25]], dtype=torch.float64)
        assert float(k.kernel_values(0.0, edge).detach().abs().max()) == 0.0
        assert (op.taps.shape[-1] - 1) // 2 * h < 0.25
    assert sizes == [7, 15, 31]
    assert sum(p.numel() for p in k.parameters()) == n_params


# --------------------------------------------------------------------------- spectral
def np_spectral_dense(K: np.ndarray, g: Grid) -> np.ndarray:
    """The DFT-matrix reference: kappa(delta) = sum_m c(m_last) Re(K_m e^{2 pi i m.delta/L})."""
    x = g.nodes.double().numpy()
    L = [b - a for a, b in g.domain.bounds]
    delta = x[:, None, :] - x[None, :, :]
    d = x.shape[1]
    if d == 1:
        M = K.shape[-1]
        m = np.arange(M)
        th = 2 * np.pi * delta[..., 0, None] * m / L[0]
        mult = np.where(m == 0, 1.0, 2.0)
        kap = np.real(np.einsum("oim,pqm->oipq", K, mult * np.exp(1j * th)))
    else:
        M0, M1 = (K.shape[-2] + 1) // 2, K.shape[-1]
        m0 = np.concatenate([np.arange(M0), np.arange(-M0 + 1, 0)])
        m1 = np.arange(M1)
        th = (
            2
            * np.pi
            * (
                delta[..., 0, None, None] * m0[:, None] / L[0]
                + delta[..., 1, None, None] * m1 / L[1]
            )
        )
        mult = np.where(m1 == 0, 1.0, 2.0)[None, :]
        kap = np.real(np.einsum("oixy,pqxy->oipq", K, mult * np.exp(1j * th)))
    return np_dense(kap, g.weights.numpy())


@pytest.mark.parametrize(
    "n, domain, modes", [(16, (0.0, 2.0), 5), ((8, 10), ((0.0, 1.0), (0.0, 2.0)), (3, 4))]
)
def test_spectral_fft_equals_dft_matrix_reference(n, domain, modes):
    g = Grid.uniform(n, domain, "periodic").to(F64)
    k = SpectralKernel(domain, channels=2, modes=modes, pointwise=False, generator=gen()).double()
    sched = GridSchedule.constant(n, 1, domain=domain, rule="periodic").with_channels(2).to(F64)
    from spacetime_nets.integrate import Discretization

    p = Discretization(sched).to(dtype=F64)._point(0)
    op = k.step_op(0, 0.0, p, p)
    assert type(op).__name__ == "SpectralOp"
    x = torch.randn(3, 2, g.n, generator=gen(2), dtype=F64)
    Kc = k.weight[0].detach().numpy()
    Kc = Kc[..., 0] + 1j * Kc[..., 1]
    W = np_spectral_dense(Kc, g)
    b = k.bias_coeff[0].detach().numpy()
    ref = (x.numpy().reshape(3, -1) @ W.T).reshape(3, 2, -1) + b[:, None]
    np.testing.assert_allclose(op(x).detach().numpy(), ref, rtol=1e-10, atol=1e-12)
    # the kernel's own dense path (used off periodic grids) agrees too
    kv = k.kernel_values(0.0, torch.as_tensor(grid_delta(g))).detach().numpy()
    np.testing.assert_allclose(np_dense(kv, g.weights.numpy()), W, atol=1e-12)


def test_under_resolved_kernels_raise_unless_allowed():
    s = GridSchedule.constant(16, 2, rule="periodic")
    with pytest.raises(ValueError, match="modes: 8 on axis 0 needs more than 16 nodes"):
        SpaceTimeNet(
            s, None, 1, kernel="spectral", lift="identity", readout="function", channels=4, modes=8
        )
    m = SpaceTimeNet(
        s,
        None,
        1,
        kernel="spectral",
        lift="identity",
        readout="function",
        channels=4,
        modes=8,
        allow_underresolved=True,
    )
    assert m(torch.randn(2, 16)).shape == (2, 16)
    s = GridSchedule.constant(17, 2)
    with pytest.raises(ValueError, match="radius: 0.05 on axis 0 is under-resolved"):
        SpaceTimeNet(
            s, None, 1, kernel="conv", lift="identity", readout="function", channels=4, radius=0.05
        )
    good = SpaceTimeNet(
        s, None, 1, kernel="conv", lift="identity", readout="function", channels=4, radius=0.2
    )
    with pytest.raises(ValueError, match="under-resolved"):
        good.at_resolution(5, stages="scale")
    assert good.at_resolution(5).schedule.widths == [17, 17, 17]  # input interpolated onto G_0
    with pytest.raises(ValueError, match="modes: 6 basis functions on axis 0 need at least 6"):
        SpaceTimeNet(GridSchedule.from_widths([9, 5]), 9, 1, kernel="basis", modes=6)
    SpaceTimeNet(
        GridSchedule.from_widths([9, 5]), 9, 1, kernel="basis", modes=6, allow_underresolved=True
    )
    with pytest.raises(ValueError, match="a conv kernel needs channels"):
        SpaceTimeNet(s, None, 1, kernel="conv", lift="identity")
    with pytest.raises(ValueError, match="readout: 'function' needs a state with channels"):
        SpaceTimeNet(s, None, 1, kernel="basis", lift="identity", readout="function")


# --------------------------------------------------------------------------- whole models
def np_model_reference(model: SpaceTimeNet, x: np.ndarray) -> np.ndarray:
    """The channel model re-done in NumPy: pointwise lift, steps with dense conv/nodal
    matrices (square + transfer, or Euler at new nodes), channel padding, readout."""
    sched = model.schedule
    L, l0 = model.lift_weight.detach().numpy(), model.lift_bias.detach().numpy()
    X = np.einsum("oi,bin->bon", L, x.reshape(x.shape[0], model.in_channels, -1)) + l0[:, None]
    act = {"tanh": np.tanh, "identity": lambda z: z}[model.activation_name]
    times = sched.times.double().numpy()
    ch = sched.channels
    for k in range(sched.num_steps):
        t, dt = times[k], times[k + 1] - times[k]
        g = sched.grids[k]
        kern = model.kernel
        c = ch[k]
        if isinstance(kern, ConvKernel):
            r = kern.radius_at(float(t))
            piece = kern.piece(float(t))
            Cp = kern.coeff[piece].detach().numpy()
            if kern.taps == "galerkin":
                kap = np_galerkin_kappa(Cp, g, r, kern.modes)
            else:
                kap = np_conv_kappa(Cp, grid_delta(g), r, kern.modes)
            W = np_dense(kap, g.weights.double().numpy())
            b = np.repeat(kern.bias_coeff[piece].detach().numpy(), g.n)
            square = True
        else:
            W = kern.weight[k].detach().numpy()
            b = kern.bias[k].detach().numpy()
            square = model.method != "euler"
        n_out = g.n if square else sched.grids[k + 1].n

        def f(Z, W=W, b=b, n_out=n_out, c=c):
            B = Z.shape[0]
            if model.form == "inside":
                return (act(Z).reshape(B, -1) @ W.T + b).reshape(B, c, n_out)
            return act(Z.reshape(B, -1) @ W.T + b).reshape(B, c, n_out)

        # an own linear interpolation (np.interp on the 1-D nodes), not the library's
        src, dst = g.nodes[:, 0].double().numpy(), sched.grids[k + 1].nodes[:, 0].double().numpy()

        def pi_grid(Z, src=src, dst=dst):
            return np.stack(
                [[np.interp(dst, src, Z[i, j]) for j in range(Z.shape[1])] for i in range(len(Z))]
            )

        def pad(out, c_new=ch[k + 1]):
            if c_new > out.shape[1]:
                out = np.concatenate(
                    [out, np.zeros((out.shape[0], c_new - out.shape[1], out.shape[2]))], axis=1
                )
            return out[:, :c_new]

        def pi(Z):
            return pad(pi_grid(Z))

        if not square:  # the channel change acts on the whole step
            X = pad(pi_grid(X) + dt * f(X))
        elif model.method == "euler":
            X = pi(X + dt * f(X))
        else:  # rk4
            k1 = f(X)
            k2 = f(X + dt / 2 * k1)
            k3 = f(X + dt / 2 * k2)
            k4 = f(X + dt * k3)
            X = pi(X + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4))
    wK = sched.grids[-1].weights.double().numpy()
    if model.readout_kind == "mean":
        Q = model.readout_weight.detach().numpy()
        return (X * wK).sum(-1) @ Q.T + model.readout_bias.detach().numpy()
    if model.readout_kind == "function":
        Q = model.readout_weight.detach().numpy()
        return np.einsum("oc,bcn->bon", Q, X) + model.readout_bias.detach().numpy()[:, None]
    R = model.readout_matrix().detach().numpy()
    return X.reshape(X.shape[0], -1) @ R.T + model.readout_bias.detach().numpy()


@pytest.mark.parametrize("method", ["euler", "rk4"])
@pytest.mark.parametrize("form", ["inside", "outside"])
@pytest.mark.parametrize("kernel", ["conv", "nodal"])
def test_channel_models_match_numpy_reference(kernel, form, method):
    sched = GridSchedule.from_widths([17, 17, 9, 9, 17])
    channels = [3, 3, 5, 5, 4]  # widen at step 1, narrow (truncate) at step 3
    radius = [0.3, 0.3, 0.5, 0.5] if kernel == "conv" else None  # the nodal kernel has none
    readout = {"conv": "mean", "nodal": "quadrature"}[kernel]
    m = SpaceTimeNet(
        sched,
        None,
        2,
        kernel=kernel,
        form=form,
        activation="tanh",
        lift="identity",
        readout=readout,
        channels=channels,
        in_channels=2,
        radius=radius,
        method=method,
        seed=3,
    ).double()
    x = torch.randn(3, 2, 17, generator=gen(4), dtype=F64)
    ref = np_model_reference(m, x.numpy())
    np.testing.assert_allclose(m(x).detach().numpy(), ref, rtol=1e-10, atol=1e-11)
    assert np.abs(ref).max() > 1e-3
    # the exported ResNet (Conv1d / Linear blocks, fixed shortcuts) is the same function
    np.testing.assert_allclose(to_resnet(m)(x).detach().numpy(), ref, rtol=1e-10, atol=1e-11)
    # checkpointing changes nothing, gradients included
    m2 = SpaceTimeNet(
        sched,
        None,
        2,
        kernel=kernel,
        form=form,
        activation="tanh",
        lift="identity",
        readout=readout,
        channels=channels,
        in_channels=2,
        radius=radius,
        method=method,
        seed=3,
        checkpoint=2,
    ).double()
    g1 = torch.autograd.grad(m(x).square().sum(), list(m.parameters()))
    g2 = torch.autograd.grad(m2(x).square().sum(), list(m2.parameters()))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)


def test_channels_one_is_the_scalar_model():
    sched = GridSchedule.moving([9, 12, 7, 10], T=1.3)
    scalar = SpaceTimeNet(
        sched,
        9,
        3,
        kernel="basis",
        form="inside",
        activation="tanh",
        lift="identity",
        modes=4,
        seed=0,
    )
    chan = SpaceTimeNet(
        sched,
        9,
        3,
        kernel="basis",
        form="inside",
        activation="tanh",
        lift="identity",
        modes=4,
        seed=0,
        channels=1,
    )
    with torch.no_grad():
        chan.kernel.coeff.copy_(scalar.kernel.coeff[:, None, None])
        chan.kernel.bias_coeff.copy_(scalar.kernel.bias_coeff[:, None])
        chan.readout_coeff.copy_(scalar.readout_coeff[:, None])
        chan.readout_bias.copy_(scalar.readout_bias)
        chan.lift_weight.fill_(1.0)
        chan.lift_bias.zero_()
    x = torch.randn(5, 9, generator=gen(5))
    assert torch.equal(chan(x), scalar(x))
    torch.testing.assert_close(l2_control(chan), l2_control(scalar), rtol=1e-6, atol=0)


def test_dense_kernels_with_channels_are_block_matrices():
    """BasisKernel with channels: W[(o,i),(c,j)] = sum_ab phi_a(xi_i) C_ocab phi_b(zeta_j) w_j."""
    k = BasisKernel((0.0, 1.0), modes=3, channels=2, generator=gen()).double()
    g_in, g_out = Grid.uniform(7).to(F64), Grid.uniform(5).to(F64)
    W, b = k.forward(0, 0.0, g_out.nodes, g_in.nodes, g_in.weights)
    phi_o = k.phi(g_out.nodes).numpy()
    phi_i = k.phi(g_in.nodes).numpy()
    C = k.coeff[0].detach().numpy()
    for o in range(2):
        for c in range(2):
            blk = phi_o @ C[o, c] @ (phi_i * g_in.weights.numpy()[:, None]).T
            np.testing.assert_allclose(
                W[o * 5 : o * 5 + 5, c * 7 : c * 7 + 7].detach(), blk, atol=1e-14
            )
    assert b.shape == (10,)
    n = NodalKernel(GridSchedule.from_widths([4, 6]).with_channels([3, 2]))
    assert n.weight[0].shape == (18, 12)


def test_l2_control_of_stationary_kernels_is_the_quadrature_of_kappa_squared():
    """Conv: sum_ij w_i w_j |kappa_ij|^2 + |Omega|(|A|^2 + |b|^2), hand-summed, with kappa_ij the
    Galerkin (hat-averaged) kernel of the operator."""
    sched = GridSchedule.constant(17, 2, T=0.8)
    m = SpaceTimeNet(
        sched,
        None,
        1,
        kernel="conv",
        form="inside",
        lift="identity",
        readout="function",
        channels=2,
        radius=0.3,
        pointwise=True,
        seed=1,
    ).double()
    g = sched.grids[0]
    w = g.weights.double().numpy()
    total = 0.0
    for k, dt in enumerate([0.4, 0.4]):
        C = m.kernel.coeff[k].detach().numpy()
        kap = np_galerkin_kappa(C, g, (0.3,), m.kernel.modes)
        u2 = np.einsum("i,j,ocij->", w, w, kap**2)
        u2 += (m.kernel.point[k].detach().numpy() ** 2).sum() + (
            m.kernel.bias_coeff[k].detach().numpy() ** 2
        ).sum()
        total += dt * u2
    np.testing.assert_allclose(float(l2_control(m).detach()), total, rtol=1e-10)
    # spectral: |Omega| int |kappa|^2 on the torus = |Omega| L sum of |K|^2 over the modes
    s = GridSchedule.constant(32, 1, rule="periodic")
    sp = SpaceTimeNet(
        s,
        None,
        1,
        kernel="spectral",
        lift="identity",
        readout="function",
        channels=2,
        modes=4,
        pointwise=False,
        seed=2,
    ).double()
    with torch.no_grad():
        sp.kernel.bias_coeff[0].zero_()
        sp.kernel.weight[0][..., 0, 1] = 0.0  # K_0 real
    K = sp.kernel.weight[0].detach().numpy()
    K = K[..., 0] + 1j * K[..., 1]
    ref = (np.abs(K[..., 0]) ** 2).sum() + 2 * (np.abs(K[..., 1:]) ** 2).sum()
    np.testing.assert_allclose(float(l2_control(sp).detach()), ref, rtol=1e-10)


# --------------------------------------------------------------------------- resolution
def smooth_input(nodes: torch.Tensor) -> torch.Tensor:
    """Two smooth periodic functions on [0, 1]: ``[n, 1] -> [2, n]``."""
    x = nodes[:, 0]
    return torch.stack(
        [
            torch.sin(2 * math.pi * x) + 0.5 * torch.cos(6 * math.pi * x),
            torch.exp(torch.cos(2 * math.pi * (x - 0.4))),
        ]
    )


def test_conv_model_converges_at_second_order_under_refinement():
    """A fixed conv model (trapezoid grids, windowed kernel) evaluated on G, 2G, 4G, 8G: the
    outputs at the coarse nodes change by O(h^2) (observed order close to 2)."""
    sizes = [17, 33, 65, 129]
    sched = GridSchedule.constant(sizes[0], 3, T=1.0)
    m = SpaceTimeNet(
        sched,
        None,
        1,
        kernel="conv",
        form="inside",
        activation="tanh",
        lift="identity",
        readout="function",
        channels=4,
        in_channels=2,
        radius=0.25,
        modes=3,
        seed=0,
    ).double()
    outs = []
    for n in sizes:
        mn = m.at_resolution(n)
        g = mn.schedule.grids[0]
        y = mn(smooth_input(g.nodes.double())[None])  # [1, 1, n]
        outs.append(y[0, 0, :: (n - 1) // (sizes[0] - 1)].detach().numpy())
    errs = [np.abs(a - b).max() for a, b in zip(outs[:-1], outs[1:])]
    orders = [math.log2(a / b) for a, b in zip(errs[:-1], errs[1:])]
    assert all(1.8 < p < 2.3 for p in orders), (errs, orders)


def test_spectral_model_is_resolution_consistent_on_periodic_grids():
    sizes = [32, 64, 128]
    sched = GridSchedule.constant(sizes[0], 3, rule="periodic")
    m = SpaceTimeNet(
        sched,
        None,
        1,
        kernel="spectral",
        form="inside",
        activation="tanh",
        lift="identity",
        readout="function",
        channels=4,
        in_channels=2,
        modes=6,
        seed=0,
    ).double()
    outs = []
    for n in sizes:
        mn = m.at_resolution(n)
        y = mn(smooth_input(mn.schedule.grids[0].nodes.double())[None])
        outs.append(y[0, 0, :: n // sizes[0]].detach().numpy())
    e1, e2 = np.abs(outs[0] - outs[1]).max(), np.abs(outs[1] - outs[2]).max()
    assert e1 < 1e-5 and e2 < 1e-10 and e2 < e1 / 1000, (e1, e2)  # spectral convergence


def test_identity_lift_models_read_any_resolution():
    sched = GridSchedule.constant(9, 2)
    m = SpaceTimeNet(
        sched,
        9,
        2,
        kernel="basis",
        form="inside",
        activation="tanh",
        lift="identity",
        modes=3,
        seed=0,
    ).double()
    fine = m.with_schedule(GridSchedule.constant(33, 2))
    finer = m.with_schedule(GridSchedule.constant(129, 2))
    assert fine.in_features == 33
    g9, g33, g129 = sched.grids[0], fine.schedule.grids[0], finer.schedule.grids[0]
    f = lambda g: torch.sin(3 * g.nodes[:, 0].double())[None]  # noqa: E731
    with torch.no_grad():
        y9, y33, y129 = m(f(g9)), fine(f(g33)), finer(f(g129))
    # second order: 4x finer spacing, about 16x smaller change
    assert float((y33 - y129).abs().max()) < float((y9 - y33).abs().max()) / 8
    with pytest.raises(ValueError, match="x: expected 33 features"):
        fine(f(g9))
    # channel models: at_resolution, inputs [B, n], [B, c, n] or [B, c, nx, ny]
    s2 = GridSchedule.constant((9, 9), 2, domain=((0, 1), (0, 1)))
    cm = SpaceTimeNet(
        s2,
        None,
        3,
        kernel="conv",
        form="inside",
        lift="identity",
        readout="function",
        channels=4,
        radius=0.3,
        seed=0,
    )
    assert cm(torch.randn(2, 1, 9, 9)).shape == (2, 3, 9, 9)
    assert cm(torch.randn(2, 1, 81)).shape == (2, 3, 81)
    c17 = cm.at_resolution(17)
    assert c17(torch.randn(2, 1, 17, 17)).shape == (2, 3, 17, 17)
    out = cm(torch.randn(2, 1, 9, 9), output_grid=Grid.uniform((5, 5), ((0, 1), (0, 1))))
    assert out.shape == (2, 3, 5, 5)
    pyr = SpaceTimeNet(
        GridSchedule.pyramid(33, 9, steps=4),
        None,
        1,
        kernel="conv",
        lift="identity",
        readout="function",
        channels=2,
        radius=0.4,
    )
    assert pyr.at_resolution(65, stages="scale").schedule.widths == [65, 65, 33, 17, 17]
    assert pyr.at_resolution(65).schedule.widths == [65, 65, 17, 9, 9]  # coarse stages kept
    with pytest.raises(
        ValueError, match=r"x: expected \[B, 81\] or \[B, 1, 81\] or \[B, 1, 9, 9\]"
    ):
        cm(torch.randn(2, 1, 17, 17))


def test_schedule_channels_validate_refine_and_round_trip_json():
    s = GridSchedule.pyramid(17, 5, steps=4).with_channels([4, 4, 8, 8, 8])
    r = s.refine(2, 2)
    assert r.channels == [4, 4, 4, 4, 8, 8, 8, 8, 8]
    back = GridSchedule.from_json(s.to_json())
    assert back.channels == s.channels and back.same_as(s)
    with pytest.raises(ValueError, match="channels: expected 5 positive ints"):
        s.with_channels([4, 4, 0, 8, 8])
    import json

    doc = json.loads(s.to_json())
    doc["transfr"] = "l2"
    with pytest.raises(ValueError, match="unknown key\\(s\\) 'transfr'"):
        GridSchedule.from_json(json.dumps(doc))
    doc = json.loads(s.to_json())
    doc["transfer"] = "cubic"
    with pytest.raises(ValueError, match="transfer: expected one of"):
        GridSchedule.from_json(json.dumps(doc))
    with pytest.raises(ValueError, match="source: expected JSON text or a file path, got dict"):
        GridSchedule.from_json(doc)
    assert s.to(torch.float32).dtype == torch.float32
    assert s.to("cpu", torch.float64).dtype == torch.float64


def test_conv_model_exports_and_torch_exports():
    sched = GridSchedule.pyramid(33, 9, steps=4)
    m = SpaceTimeNet(
        sched,
        None,
        5,
        kernel="conv",
        form="inside",
        activation="gelu",
        lift="identity",
        readout="quadrature",
        channels=[4, 4, 8, 8, 8],
        radius=[0.2, 0.2, 0.4, 0.4],
        seed=0,
    )
    x = torch.randn(3, 33)
    r = to_resnet(m)
    torch.testing.assert_close(r(x), m(x), rtol=1e-5, atol=1e-5)
    assert any(isinstance(mod, torch.nn.Conv1d) for mod in r.modules())
    ep = torch.export.export(r, (x,))
    torch.testing.assert_close(ep.module()(x), m(x), rtol=1e-5, atol=1e-5)
    assert "Conv1d" in r.layer_table()
    # an exported network moves like any module (dtype and device)
    r64 = r.to(torch.float64)
    assert all(p.dtype == torch.float64 for p in r64.parameters())
    y64 = r64(x.double())
    assert y64.dtype == torch.float64
    torch.testing.assert_close(y64.float(), m(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel", ["conv", "spectral", "nodal"])
def test_scaling_lemma_holds_for_channel_models(kernel):
    """Inside form (homogeneous in the controls): K steps on [0, T] with u equal K steps on
    [0, T'] with (T / T') u, for stationary kernels and channel changes too."""
    rule = "periodic" if kernel == "spectral" else "trapezoid"
    sched = GridSchedule.constant(16 if kernel == "spectral" else 17, 4, T=2.0, rule=rule)
    m = SpaceTimeNet(
        sched,
        None,
        3,
        kernel=kernel,
        form="inside",
        activation="tanh",
        lift="identity",
        readout="mean",
        channels=[2, 2, 3, 3, 3],
        radius=0.3 if kernel == "conv" else None,  # each option only where the kernel reads it
        modes=None if kernel == "nodal" else 3,
        seed=1,
    ).double()
    x = torch.randn(4, sched.widths[0], generator=gen(6), dtype=F64)
    for T_new in (0.5, 7.0):
        new = m.rescale_horizon(T_new)
        assert new.T == pytest.approx(T_new) and new.channels == m.channels
        torch.testing.assert_close(new(x), m(x), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(
            float(l2_control(new).detach()) * T_new,
            float(l2_control(m).detach()) * 2.0,
            rtol=1e-10,
        )


@pytest.mark.parametrize("readout", ["quadrature", "mean"])
def test_from_resnet_with_channels_round_trips_a_nodal_export(readout):
    sched = GridSchedule.moving([9, 12, 7, 10], T=1.1)
    m = SpaceTimeNet(
        sched,
        None,
        3,
        kernel="nodal",
        form="inside",
        activation="tanh",
        lift="identity",
        readout=readout,
        channels=[2, 2, 4, 3],
        in_channels=2,
        seed=0,
    ).double()
    from spacetime_nets import from_resnet

    back = from_resnet(to_resnet(m), sched)
    assert back.channels == [2, 2, 4, 3]
    x = torch.randn(3, 2, 9, generator=gen(7), dtype=F64)
    torch.testing.assert_close(back(x), m(x), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="schedule: block 0 does not fit"):
        from_resnet(to_resnet(m), GridSchedule.moving([8, 12, 7, 10], T=1.1))


@pytest.mark.parametrize("shape", [32, (16, 12)])
def test_spectral_model_exports_to_an_fft_block_and_torch_exports(shape):
    dom = (0.0, 1.0) if isinstance(shape, int) else ((0.0, 1.0), (0.0, 2.0))
    sched = GridSchedule.constant(shape, 3, domain=dom, rule="periodic")
    m = SpaceTimeNet(
        sched,
        None,
        2,
        kernel="spectral",
        form="inside",
        activation="gelu",
        lift="identity",
        readout="function",
        channels=4,
        modes=4,
        seed=0,
    )
    x = torch.randn(2, 1, *((shape,) if isinstance(shape, int) else shape), generator=gen(8))
    r = to_resnet(m)
    assert "FFT" in r.layer_table()
    torch.testing.assert_close(r(x), m(x), rtol=1e-5, atol=1e-5)
    ep = torch.export.export(r, (x,))
    torch.testing.assert_close(ep.module()(x), m(x), rtol=1e-5, atol=1e-5)
    m64, x64 = m.double(), x.double()
    torch.testing.assert_close(to_resnet(m64)(x64), m64(x64), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- Galerkin taps
def test_hat_average_matches_exact_polynomial_integrals():
    """The Gauss rule of hat_average against numpy.polynomial antiderivatives, for unequal
    half-widths, offsets inside, across and outside the support, and several modes."""
    from spacetime_nets.kernels.stationary import hat_average

    rng = np.random.default_rng(3)
    for modes in (1, 3, 5):
        for r in (0.07, 0.25):
            delta = rng.uniform(-0.45, 0.45, 12)
            hl, hr = rng.uniform(0.01, 0.12, 12), rng.uniform(0.01, 0.12, 12)
            got = hat_average(
                torch.as_tensor(delta), torch.as_tensor(hl), torch.as_tensor(hr), r, modes
            ).numpy()
            ref = np.array([np_hat_average(*v, r, modes) for v in zip(delta, hl, hr)])
            np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "n, domain, radius",
    [(17, (0.0, 1.0), 0.2), ((9, 11), ((0.0, 1.0), (0.0, 2.0)), (0.3, 0.5))],
)
def test_galerkin_conv_equals_dense_path_and_numpy_reference(n, domain, radius):
    from spacetime_nets.integrate import Discretization

    g = Grid.uniform(n, domain).to(F64)
    k = ConvKernel(domain, channels=2, radius=radius, modes=3, generator=gen()).double()
    sched = GridSchedule.constant(n, 1, domain=domain).with_channels(2).to(F64)
    p = Discretization(sched).to(dtype=F64)._point(0)
    op = k.step_op(0, 0.0, p, p)
    assert type(op).__name__ == "ConvOp"
    r = radius if isinstance(radius, tuple) else (radius,)
    W = np_dense(np_galerkin_kappa(k.coeff[0].detach().numpy(), g, r, 3), g.weights.numpy())
    x = torch.randn(3, 2, g.n, generator=gen(1), dtype=F64)
    ref = (x.numpy().reshape(3, -1) @ W.T).reshape(3, 2, -1) + k.bias_coeff[0].detach().numpy()[
        :, None
    ]
    np.testing.assert_allclose(op(x).detach().numpy(), ref, rtol=1e-11, atol=1e-12)
    g2 = Grid.from_nodes(g.axes[0] if g.dim == 1 else list(g.axes), domain)
    s2 = GridSchedule([0.0, 1.0], [g2, g2]).with_channels(2).to(F64)
    p2 = Discretization(s2).to(dtype=F64)._point(0)
    Wd, bd = k.step_op(0, 0.0, p2, p2)
    got = (x.reshape(3, -1) @ Wd.T + bd).reshape(3, 2, -1).detach().numpy()
    np.testing.assert_allclose(got, ref, atol=1e-12)


def test_galerkin_dense_path_on_a_non_uniform_grid_matches_the_reference():
    from spacetime_nets.integrate import Discretization

    dom = (0.0, 1.0)
    g = Grid.from_nodes([0.0, 0.05, 0.2, 0.3, 0.34, 0.5, 0.71, 0.8, 0.93, 1.0], dom).to(F64)
    k = ConvKernel(dom, channels=2, radius=0.25, modes=4, generator=gen(4)).double()
    s = GridSchedule([0.0, 1.0], [g, g]).with_channels(2).to(F64)
    p = Discretization(s).to(dtype=F64)._point(0)
    Wd, _ = k.step_op(0, 0.0, p, p)
    W = np_dense(np_galerkin_kappa(k.coeff[0].detach().numpy(), g, (0.25,), 4), g.weights.numpy())
    np.testing.assert_allclose(Wd.detach().numpy(), W, atol=1e-12)


def _conv_outputs_on_refinements(taps: str, spacings: float, sizes):
    """One random conv operator (radius ``spacings`` spacings of the 17-node grid), applied
    to one rough input (independent normal values on 17 nodes) moved to each of ``sizes`` by
    linear interpolation (the same piecewise-linear function): outputs at the 17 nodes."""
    from grids import make_transfer
    from spacetime_nets.integrate import Discretization

    k = ConvKernel(
        (0.0, 1.0), channels=2, radius=spacings / 16, modes=3, generator=gen(), taps=taps
    ).double()
    x0 = torch.randn(3, 2, 17, generator=gen(1), dtype=F64)
    g17 = Grid.uniform(17).to(F64)
    outs = []
    for n in sizes:
        s = GridSchedule.constant(n, 1).with_channels(2).to(F64)
        p = Discretization(s).to(dtype=F64)._point(0)
        x = make_transfer(g17, s.grids[0], "linear")(x0)
        outs.append(k.step_op(0, 0.0, p, p)(x)[..., :: (n - 1) // 16].detach().numpy())
    return outs


@pytest.mark.parametrize("spacings", [1.5, 2.0, 3.0, 4.0, 6.0])
def test_galerkin_taps_are_the_same_operator_on_every_grid_for_rough_inputs(spacings):
    """Inside the box (outputs farther than r + h from an end) Galerkin taps give the same
    output for the same rough function on every nested refinement, to rounding; at the end
    nodes (the half cells) the change converges at the stated order 2. Sampled taps change
    by O(1) of their output inside the box at r = 2.5 h and below."""
    sizes = [17, 33, 65, 129, 257, 1025]
    outs = _conv_outputs_on_refinements("galerkin", spacings, sizes)
    R = int(math.ceil(spacings)) + 1
    for y in outs[1:]:
        np.testing.assert_allclose(y[..., R:-R], outs[0][..., R:-R], atol=1e-12)
    errs = [np.abs(y - outs[-1]).max() for y in outs[:-1]]
    orders = [math.log2(a / b) for a, b in zip(errs[:-1], errs[1:])]
    assert all(1.8 < p < 2.3 for p in orders), (errs, orders)
    if spacings <= 2.5:
        old = _conv_outputs_on_refinements("sampled", max(spacings, 2.0), sizes[:2])
        scale = np.abs(old[0]).max()
        assert np.abs(old[1] - old[0])[..., R:-R].max() > 0.02 * scale


def test_galerkin_operator_does_not_depend_on_the_quadrature_rule():
    """The interpolant of node values does not depend on the rule: on Simpson and Boole
    grids the Galerkin operator equals the NumPy reference weighed by the hats' measures (the
    trapezoid weights of the same nodes), and a rough function refined from 17 to 33 Simpson
    nodes gives the same output inside the box."""
    from grids import make_transfer
    from spacetime_nets.integrate import Discretization

    k = ConvKernel((0.0, 1.0), channels=2, radius=0.2, modes=3, generator=gen()).double()
    x = torch.randn(3, 2, 17, generator=gen(1), dtype=F64)
    outs = {}
    for rule in ("trapezoid", "simpson", "boole"):
        s = GridSchedule.constant(17, 1, rule=rule).with_channels(2).to(F64)
        p = Discretization(s).to(dtype=F64)._point(0)
        outs[rule] = k.step_op(0, 0.0, p, p)(x).detach().numpy()
    g = Grid.uniform(17).to(F64)  # trapezoid weights = the hats' measures
    W = np_dense(np_galerkin_kappa(k.coeff[0].detach().numpy(), g, (0.2,), 3), g.weights.numpy())
    ref = (x.numpy().reshape(3, -1) @ W.T).reshape(3, 2, -1) + k.bias_coeff[0].detach().numpy()[
        :, None
    ]
    for rule, y in outs.items():
        np.testing.assert_allclose(y, ref, rtol=1e-11, atol=1e-12, err_msg=rule)
    s33 = GridSchedule.constant(33, 1, rule="simpson").with_channels(2).to(F64)
    p33 = Discretization(s33).to(dtype=F64)._point(0)
    x33 = make_transfer(g, s33.grids[0], "linear")(x)
    y33 = k.step_op(0, 0.0, p33, p33)(x33)[..., ::2].detach().numpy()
    np.testing.assert_allclose(y33[..., 5:-5], outs["simpson"][..., 5:-5], atol=1e-12)


def test_conv_kernel_on_nodes_without_the_conv_path_warns_once_unless_allowed():
    import warnings

    gl = GridSchedule.constant(12, 2, rule="gauss_legendre")
    with pytest.warns(UserWarning, match="ConvKernel: grid 0 .* no fast path") as rec:
        SpaceTimeNet(gl, None, 1, kernel="conv", lift="identity", readout="function",
                     channels=2, radius=0.3)  # fmt: skip
    assert len([r for r in rec if "fast path" in str(r.message)]) == 1
    kern = ConvKernel.for_schedule(gl, channels=2, radius=0.3, allow_dense=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = SpaceTimeNet(gl, None, 1, kernel=kern, lift="identity", readout="function",
                         channels=2)  # fmt: skip
    assert m(torch.randn(2, 12)).shape == (2, 12)
    with pytest.raises(ValueError, match="allow_dense: expected True or False, got 'no'"):
        ConvKernel((0.0, 1.0), allow_dense="no")


def test_output_grid_interpolates_the_last_state_linearly():
    """``forward(x, output_grid=G')`` reads the function readout at the nodes of G' by linear
    interpolation of its values on the last grid (np.interp as the reference)."""
    sched = GridSchedule.constant(17, 2)
    model = SpaceTimeNet(sched, None, 1, kernel="conv", lift="identity", readout="function",
                         channels=3, radius=0.2, seed=0).double()  # fmt: skip
    x = torch.randn(4, 1, 17, dtype=torch.float64)
    target = Grid.uniform(23, (0.0, 1.0))  # nodes between the last grid's, so methods differ
    with torch.no_grad():
        on_last = model(x).numpy()
        on_target = model(x, output_grid=target).numpy()
    xi, eta = sched.grids[-1].nodes[:, 0].numpy(), target.nodes[:, 0].numpy()
    ref = np.stack([np.interp(eta, xi, row) for row in on_last.reshape(-1, 17)])
    np.testing.assert_allclose(on_target.reshape(-1, 23), ref, atol=1e-12)


@pytest.mark.parametrize("shape", [16, (8, 8)])
def test_exported_conv_on_a_periodic_grid_wraps_around(shape):
    """On a periodic grid the exported convolution pads circularly: the same function as the
    model, which is equivariant under a cyclic shift of its input (zero padding is not)."""
    d = 1 if isinstance(shape, int) else 2
    dom = (0.0, 1.0) if d == 1 else ((0.0, 1.0), (0.0, 1.0))
    sched = GridSchedule.constant(shape, 2, rule="periodic", domain=dom)
    m = SpaceTimeNet(sched, None, 1, kernel="conv", lift="identity", readout="function",
                     channels=3, radius=0.3, seed=0).double()  # fmt: skip
    dims = tuple(range(2, 2 + d))
    x = torch.randn(2, 1, *((shape,) if d == 1 else shape), dtype=torch.float64)
    r = to_resnet(m)
    with torch.no_grad():
        y = m(x)
        torch.testing.assert_close(r(x), y, rtol=1e-12, atol=1e-12)
        shifted = r(torch.roll(x, shifts=(3,) * d, dims=dims))
    torch.testing.assert_close(shifted, torch.roll(y, shifts=(3,) * d, dims=dims))


@pytest.mark.parametrize("cls", [ConvKernel, SpectralKernel])
def test_taps_reads_back_is_checked_when_set_and_survives_pickling(cls):
    """``taps`` reads back as the name given and prints in the repr; setting it later checks
    the name with the constructor's message and keeps the old rule on a bad one; a pickle
    round trip keeps it, and a kernel pickled when ``taps`` was a plain attribute loads with
    the rule of that name."""
    import pickle

    k = cls((0.0, 1.0), channels=2, taps="sampled", generator=torch.Generator().manual_seed(0))
    assert k.taps == "sampled" and "taps=sampled" in repr(k)
    k.taps = "galerkin"
    assert k.taps == "galerkin" and "taps=galerkin" in repr(k)
    with pytest.raises(ValueError, match="taps: expected one of galerkin, sampled; got 'exact'"):
        k.taps = "exact"
    assert k.taps == "galerkin"
    assert pickle.loads(pickle.dumps(k)).taps == "galerkin"
    state = dict(k.__dict__)
    del state["_taps_rule"]
    state["taps"] = "sampled"  # the layout of a kernel saved before the rule objects
    old = cls.__new__(cls)
    old.__setstate__(state)
    assert old.taps == "sampled" and "taps" not in old.__dict__
