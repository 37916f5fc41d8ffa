"""Checks of the kernels (how w(t, xi, zeta) and b(t, xi) become W^k, beta^k) and of the fields.

Every kernel matrix is compared with W_ij = w(t, xi_i, zeta_j) * omega_j assembled here by
loops from an independent evaluation of w: NumPy's Legendre polynomials for the basis kernel
(orthonormality and |w|_{L^2} = |C|_F checked by Gauss-Legendre quadrature), a hand-written
MLP for the neural kernel, the callables themselves for the function kernel, and the stored
matrices for the nodal kernel. The fields part checks the activations against their formulas,
the homogeneity rule of docs/concepts.md (section 1), and f(x, a u) = a f(x, u) numerically
through one Euler step of a model (and its failure for outside + tanh and for the bottleneck).
"""

import copy
import math

import numpy as np
import pytest
import torch
from numpy.polynomial import legendre as npleg

from grids import Grid, GridSchedule
from spacetime_nets import (
    ACTIVATIONS,
    FORMS,
    BasisKernel,
    FunctionKernel,
    NeuralKernel,
    NodalKernel,
    SpaceTimeNet,
    form_is_homogeneous,
)
from spacetime_nets.fields import activation_module, get_activation
from spacetime_nets.kernels import basis_functions

BOX = [(0.0, 1.0), (0.0, 2.0)]


def legendre_orthonormal(x: np.ndarray, a: float, b: float, m: int) -> np.ndarray:
    """sqrt((2m+1)/L) P_m(2(x-a)/L - 1) with NumPy's Legendre series."""
    L = b - a
    e = np.zeros(m + 1)
    e[m] = 1.0
    return math.sqrt((2 * m + 1) / L) * npleg.legval(2.0 * (x - a) / L - 1.0, e)


def moving_pair():
    """Two different non-uniform grids (output, input) on [0, 1]."""
    sched = GridSchedule.moving([7, 5], T=1.0)
    return sched.grids[1], sched.grids[0]


# --------------------------------------------------------------------------- basis functions
def test_legendre_basis_matches_numpy_and_is_orthonormal():
    a, b, modes = -1.0, 2.0, 5
    x = torch.linspace(a, b, 13, dtype=torch.float64)
    phi = basis_functions(x, a, b, modes, "legendre")
    for m in range(modes):
        ref = legendre_orthonormal(x.numpy(), a, b, m)
        np.testing.assert_allclose(phi[:, m].numpy(), ref, rtol=0, atol=1e-12)
    g = Grid.uniform(8, (a, b), "gauss_legendre")
    P = basis_functions(g.nodes[:, 0], a, b, modes, "legendre")
    gram = P.T @ (P * g.weights[:, None])
    torch.testing.assert_close(gram, torch.eye(modes, dtype=torch.float64), rtol=0, atol=1e-12)


def test_fourier_basis_formula_and_orthonormality():
    a, b, modes = 0.5, 2.0, 6
    L = b - a
    x = torch.linspace(a, b, 11, dtype=torch.float64)
    phi = basis_functions(x, a, b, modes, "fourier").numpy()
    s = 2 * np.pi * (x.numpy() - a) / L
    expected = [
        np.full_like(s, 1 / np.sqrt(L)),
        np.sqrt(2 / L) * np.cos(s),
        np.sqrt(2 / L) * np.sin(s),
        np.sqrt(2 / L) * np.cos(2 * s),
        np.sqrt(2 / L) * np.sin(2 * s),
        np.sqrt(2 / L) * np.cos(3 * s),
    ]
    np.testing.assert_allclose(phi, np.stack(expected, 1), rtol=0, atol=1e-12)
    g = Grid.uniform(30, (a, b), "gauss_legendre")
    P = basis_functions(g.nodes[:, 0], a, b, modes, "fourier")
    gram = P.T @ (P * g.weights[:, None])
    torch.testing.assert_close(gram, torch.eye(modes, dtype=torch.float64), rtol=0, atol=1e-10)


# --------------------------------------------------------------------------- basis kernel
def test_basis_kernel_matrix_piecewise_constant_in_time():
    T, pieces, modes = 1.5, 3, 3
    kern = BasisKernel((0.0, 1.0), modes=modes, pieces=pieces, T=T).double()
    out_g, in_g = moving_pair()
    xi, zeta, om = out_g.nodes[:, 0].numpy(), in_g.nodes[:, 0].numpy(), in_g.weights.numpy()
    for t, piece in ((0.0, 0), (0.49, 0), (0.6, 1), (1.2, 2), (1.5, 2)):
        W, beta = kern(0, t, out_g.nodes, in_g.nodes, in_g.weights)
        C = kern.coeff[piece].detach().numpy()
        c = kern.bias_coeff[piece].detach().numpy()
        W_ref = np.zeros((xi.size, zeta.size))
        beta_ref = np.zeros(xi.size)
        for i in range(xi.size):
            for a in range(modes):
                pa = legendre_orthonormal(xi[i : i + 1], 0.0, 1.0, a)[0]
                beta_ref[i] += c[a] * pa
                for j in range(zeta.size):
                    for bb in range(modes):
                        pb = legendre_orthonormal(zeta[j : j + 1], 0.0, 1.0, bb)[0]
                        W_ref[i, j] += C[a, bb] * pa * pb * om[j]
        np.testing.assert_allclose(W.detach().numpy(), W_ref, rtol=0, atol=1e-12)
        np.testing.assert_allclose(beta.detach().numpy(), beta_ref, rtol=0, atol=1e-12)


def test_basis_kernel_step_k_uses_piece_k():
    """With pieces = K uniform steps, step k (starting at t_k = k T / K, as the schedule
    computes it) must use piece k, whatever the rounding of t_k."""
    for K in range(1, 40):
        for T in (1.0, 0.7, 3.0):
            kern = BasisKernel(modes=1, pieces=K, T=T)
            times = GridSchedule.constant(2, K, T=T).times.tolist()
            for k in range(K):
                assert torch.equal(kern.coefficients(times[k])[0], kern.coeff[k]), (K, T, k)
    # and through a model: the matrices of step k are phi C_k phi^T diag(omega)
    sched = GridSchedule.constant(4, 5, T=3.0, rule="gauss_legendre")
    model = SpaceTimeNet(sched, 2, 2, kernel="basis", modes=2, lift="linear").double()
    nodes, weights = sched.grids[0].nodes[:, 0].numpy(), sched.grids[0].weights.numpy()
    phi = np.stack([legendre_orthonormal(nodes, 0.0, 1.0, a) for a in (0, 1)], 1)
    for k, sm in enumerate(model.controls()):
        C = model.kernel.coeff[k].detach().numpy()
        np.testing.assert_allclose(
            sm.layers[0][0].detach().numpy(), phi @ C @ phi.T * weights, rtol=0, atol=1e-12
        )


def test_basis_kernel_smooth_in_time():
    kern = BasisKernel((0.0, 1.0), modes=2, T=2.0, time_degree=2).double()
    g = Grid.uniform(4, (0.0, 1.0), "gauss_legendre")
    for t in (0.0, 0.7, 2.0):
        tau = t / 2.0
        L = [legendre_orthonormal(np.array([tau]), 0.0, 1.0, m)[0] for m in range(3)]
        C = sum(L[m] * kern.coeff[m].detach() for m in range(3))
        phi = torch.tensor(
            np.stack([legendre_orthonormal(g.nodes[:, 0].numpy(), 0.0, 1.0, a) for a in (0, 1)], 1)
        )
        W, _ = kern(0, t, g.nodes, g.nodes, g.weights)
        torch.testing.assert_close(W, phi @ C @ phi.T * g.weights, rtol=0, atol=1e-12)


def test_basis_kernel_2d_tensor_product_ordering():
    kern = BasisKernel(BOX, modes=2, pieces=1).double()
    g = Grid.uniform((3, 4), BOX, "trapezoid")
    phi = kern.phi(g.nodes).numpy()
    x, y = g.nodes[:, 0].numpy(), g.nodes[:, 1].numpy()
    for a1 in range(2):
        for a2 in range(2):
            ref = legendre_orthonormal(x, 0.0, 1.0, a1) * legendre_orthonormal(y, 0.0, 2.0, a2)
            np.testing.assert_allclose(phi[:, a1 * 2 + a2], ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("domain", [(0.0, 1.0), BOX])
def test_basis_kernel_l2_norm_is_frobenius_norm(domain):
    """|w(t)|^2_{L^2(Omega x Omega)} = |C(t)|_F^2 (orthonormal basis); the double integral is
    computed by a Gauss-Legendre rule exact for these polynomials."""
    kern = BasisKernel(domain, modes=3, pieces=1).double()
    n = 5 if isinstance(domain, tuple) else (5, 5)
    g = Grid.uniform(n, domain, "gauss_legendre")
    W, beta = kern(0, 0.3, g.nodes, g.nodes, g.weights)
    w = W / g.weights[None, :]  # kernel values
    l2 = (g.weights[:, None] * g.weights[None, :] * w**2).sum()
    C, c = kern.coefficients(0.3)
    torch.testing.assert_close(l2, (C**2).sum(), rtol=1e-12, atol=0)
    torch.testing.assert_close((g.weights * beta**2).sum(), (c**2).sum(), rtol=1e-12, atol=0)


# --------------------------------------------------------------------------- neural kernel
def _hand_mlp(seq: torch.nn.Sequential, f: np.ndarray) -> float:
    h = f
    layers = [m for m in seq if isinstance(m, torch.nn.Linear)]
    for lin in layers[:-1]:
        h = np.tanh(lin.weight.detach().double().numpy() @ h + lin.bias.detach().double().numpy())
    out = layers[-1]
    w, b = out.weight.detach().double().numpy()[0], out.bias.detach().double().numpy()[0]
    return float(w @ h + b)


def test_neural_kernel_matches_hand_written_mlp():
    """Built in float32 and moved to float64; the domain is not dyadic, so rounded bounds
    would show."""
    lo, hi, T = 0.1, 0.7, 1.3
    gen = torch.Generator().manual_seed(0)
    kern = NeuralKernel((lo, hi), hidden=5, depth=2, T=T, generator=gen).double()
    sched = GridSchedule.moving([6, 4], T=1.0, domain=(lo, hi))
    out_g, in_g = sched.grids[1], sched.grids[0]
    t = 0.4
    W, beta = (m.detach() for m in kern(0, t, out_g.nodes, in_g.nodes, in_g.weights))

    def unit(v):
        return 2.0 * (v - lo) / (hi - lo) - 1.0

    tt = 2.0 * t / T - 1.0
    for i, xi in enumerate(out_g.nodes[:, 0].tolist()):
        for j, zeta in enumerate(in_g.nodes[:, 0].tolist()):
            w = _hand_mlp(kern.net, np.array([tt, unit(xi), unit(zeta)]))
            assert float(W[i, j]) == pytest.approx(w * float(in_g.weights[j]), rel=0, abs=1e-13)
        b = _hand_mlp(kern.bias_net, np.array([tt, unit(xi)]))
        assert float(beta[i]) == pytest.approx(b, rel=0, abs=1e-13)


def test_neural_kernel_without_bias_and_2d_shapes():
    kern = NeuralKernel(BOX, hidden=4, depth=1, bias=False).double()
    g_out = Grid.uniform((3, 2), BOX)
    g_in = Grid.uniform((2, 2), BOX)
    W, beta = kern(0, 0.0, g_out.nodes, g_in.nodes, g_in.weights)
    assert W.shape == (6, 4)
    assert torch.equal(beta, torch.zeros(6, dtype=torch.float64))


# --------------------------------------------------------------------------- function kernel
def test_function_kernel_samples_times_weights_and_horizon_rescaling():
    def w(t, xi, zeta):
        return (1.0 + t) * (xi[:, 0][:, None] - zeta[:, 0][None, :] ** 2)

    def b(t, xi):
        return math.cos(t) * xi[:, 0]

    kern = FunctionKernel(w, b, T=1.0)
    out_g, in_g = moving_pair()
    W, beta = kern(0, 0.5, out_g.nodes, in_g.nodes, in_g.weights)
    for i, xi in enumerate(out_g.nodes[:, 0].tolist()):
        assert float(beta[i]) == pytest.approx(math.cos(0.5) * xi, abs=1e-15)
        for j, zeta in enumerate(in_g.nodes[:, 0].tolist()):
            ref = 1.5 * (xi - zeta**2) * float(in_g.weights[j])
            assert float(W[i, j]) == pytest.approx(ref, abs=1e-15)
    # scaling lemma for the kernel: u_new(s) = (T / T_new) u(s T / T_new)
    kern.rescale_horizon_(2.0)
    W2, beta2 = kern(0, 1.0, out_g.nodes, in_g.nodes, in_g.weights)
    torch.testing.assert_close(W2, 0.5 * W, rtol=0, atol=1e-15)
    torch.testing.assert_close(beta2, 0.5 * beta, rtol=0, atol=1e-15)


def test_function_kernel_without_bias_and_shape_errors():
    g = Grid.uniform(4)
    kern = FunctionKernel(lambda t, xi, zeta: torch.ones(xi.shape[0], zeta.shape[0]))
    W, beta = kern(0, 0.0, g.nodes, g.nodes, g.weights)
    torch.testing.assert_close(W, g.weights.expand(4, 4))
    assert torch.equal(beta, torch.zeros(4, dtype=W.dtype))
    bad = FunctionKernel(lambda t, xi, zeta: torch.ones(zeta.shape[0], xi.shape[0] + 1))
    with pytest.raises(ValueError, match="w: must return shape"):
        bad(0, 0.0, g.nodes, g.nodes, g.weights)
    bad_b = FunctionKernel(
        lambda t, xi, zeta: torch.ones(xi.shape[0], zeta.shape[0]), lambda t, xi: torch.ones(2)
    )
    with pytest.raises(ValueError, match="b: must return shape"):
        bad_b(0, 0.0, g.nodes, g.nodes, g.weights)
    with pytest.raises(ValueError, match="w: expected a callable"):
        FunctionKernel(3.0)
    with pytest.raises(ValueError, match="b: expected a callable"):
        FunctionKernel(lambda t, xi, zeta: xi, b="no")


# --------------------------------------------------------------------------- nodal kernel
def test_nodal_kernel_stores_the_matrices():
    sched = GridSchedule.from_widths([4, 6, 3])
    kern = NodalKernel(sched, init_scale=0.5, generator=torch.Generator().manual_seed(1))
    assert kern.out_widths == [6, 3] and kern.in_widths == [4, 6]
    for k, (n_out, n_in) in enumerate(((6, 4), (3, 6))):
        W, beta = kern(k, 0.0, None, None, None)
        assert W.shape == (n_out, n_in) and beta.shape == (n_out,)
        assert W is kern.weight[k] and beta is kern.bias[k]
        assert W.abs().max() <= 0.5 / math.sqrt(n_in)
    kern.rescale_horizon_(4.0)
    W, beta = kern(1, 0.0, None, None, None)
    torch.testing.assert_close(W, kern.weight[1] * 0.25)
    no_bias = NodalKernel(out_widths=[2], in_widths=[3], bias=False)
    W, beta = no_bias(0, 0.0, None, None, None)
    assert torch.equal(beta, torch.zeros(2))
    assert len(list(no_bias.parameters())) == 1


def test_nodal_kernel_refuses_other_schedules():
    kern = NodalKernel(GridSchedule.from_widths([4, 6, 3]))
    kern.check_discretisation([6, 3], [4, 6])
    with pytest.raises(ValueError, match="made for another schedule"):
        kern.check_discretisation([6, 4], [4, 6])
    with pytest.raises(ValueError, match="made for another schedule"):
        kern.check_discretisation([6, 3, 3], [4, 6, 3])
    with pytest.raises(ValueError, match="schedule: give a GridSchedule"):
        NodalKernel(out_widths=[3])
    with pytest.raises(ValueError, match="out_widths: need one entry per step"):
        NodalKernel(out_widths=[3, 4], in_widths=[3])


def test_kernel_argument_validation():
    with pytest.raises(ValueError, match="T: expected a positive finite horizon"):
        BasisKernel(T=0.0)
    with pytest.raises(ValueError, match="T: expected a positive finite horizon"):
        FunctionKernel(lambda t, xi, zeta: xi, T=float("inf"))
    with pytest.raises(ValueError, match="basis: expected one of legendre, fourier"):
        BasisKernel(basis="chebyshev")
    for bad in ("chebyshev", None, ["legendre"]):
        with pytest.raises(ValueError, match="basis: expected one of legendre, fourier; got"):
            basis_functions(torch.zeros(3), 0.0, 1.0, 3, bad)
    with pytest.raises(ValueError, match="modes: expected an int >= 1"):
        BasisKernel(modes=0)
    with pytest.raises(ValueError, match="hidden: expected an int >= 1"):
        NeuralKernel(hidden=0)
    with pytest.raises(ValueError, match="T_new: expected a positive finite horizon"):
        BasisKernel().rescale_horizon_(-1.0)


# --------------------------------------------------------------------------- fields
def test_activations_match_their_formulas():
    z = torch.linspace(-4, 4, 41, dtype=torch.float64)
    zn = z.numpy()
    formulas = {
        "relu": np.maximum(zn, 0),
        "leaky_relu": np.where(zn > 0, zn, 0.01 * zn),
        "tanh": np.tanh(zn),
        "sigmoid": 1 / (1 + np.exp(-zn)),
        "softplus": np.log1p(np.exp(zn)),
        "gelu": zn * 0.5 * (1.0 + np.vectorize(math.erf)(zn / math.sqrt(2.0))),
        "identity": zn,
    }
    assert set(formulas) == set(ACTIVATIONS)
    for name, ref in formulas.items():
        fn, label = get_activation(name)
        assert label == name
        np.testing.assert_allclose(fn(z).numpy(), ref, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(activation_module(name)(z).numpy(), ref, rtol=1e-12, atol=1e-14)
    fn, label = get_activation(torch.sin)
    assert fn is torch.sin and label == "sin"
    with pytest.raises(ValueError, match="activation: expected one of"):
        get_activation("swish")
    with pytest.raises(ValueError, match="activation: expected a name or a callable"):
        get_activation(3)


def test_homogeneity_rule_values():
    for act in ACTIVATIONS:
        assert form_is_homogeneous("inside", act)
        assert not form_is_homogeneous("bottleneck", act)
        assert form_is_homogeneous("outside", act) == (act in ("relu", "leaky_relu", "identity"))
    # callables are probed numerically
    assert form_is_homogeneous("outside", lambda z: 3.0 * z)
    assert form_is_homogeneous("outside", torch.relu)
    assert not form_is_homogeneous("outside", torch.tanh)
    assert not form_is_homogeneous("outside", lambda z: z**2)
    assert form_is_homogeneous("inside", torch.tanh)
    with pytest.raises(ValueError, match="form: expected one of outside, inside, bottleneck"):
        form_is_homogeneous("sideways", "relu")
    with pytest.raises(ValueError, match="activation: expected one of"):
        form_is_homogeneous("outside", "swish")


def _increment(model: SpaceTimeNet, x: torch.Tensor) -> torch.Tensor:
    """(X^1 - Pi_0 X^0) / dt_0: the field of the first Euler step."""
    with torch.no_grad():
        tr = model.trajectory(x)
    sched = model.schedule
    Pi = sched.transfer(0).matrix()
    return (tr.states[1] - tr.states[0] @ Pi.T) / float(sched.dt[0])


def _scaled(model: SpaceTimeNet, a: float) -> SpaceTimeNet:
    """The same model with every control parameter (w, b) multiplied by a."""
    new = copy.deepcopy(model)
    with torch.no_grad():
        for kern in (new.kernel, new.kernel2):
            if kern is not None:
                for p in kern.parameters():
                    p.mul_(a)
    return new


@pytest.mark.parametrize(
    "form, activation, kernel, homogeneous",
    [
        ("inside", "tanh", "nodal", True),
        ("inside", "sigmoid", "nodal", True),
        ("inside", "softplus", "basis", True),
        ("outside", "relu", "nodal", True),
        ("outside", "leaky_relu", "basis", True),
        ("outside", "tanh", "nodal", False),
        ("outside", "sigmoid", "basis", False),
        ("bottleneck", "tanh", "nodal", False),
        ("bottleneck", "relu", "basis", False),
    ],
)
def test_field_homogeneity_through_one_euler_step(form, activation, kernel, homogeneous):
    sched = GridSchedule.moving([7, 9, 6], T=0.8)
    model = SpaceTimeNet(
        sched,
        7,
        2,
        kernel=kernel,
        form=form,
        activation=activation,
        lift="identity",
        seed=2,
        modes=4 if kernel == "basis" else None,  # a nodal kernel reads no modes
    ).double()
    assert model.is_homogeneous() == homogeneous == form_is_homogeneous(form, activation)
    x = torch.randn(6, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2
    f1 = _increment(model, x)
    for a in (0.3, 2.5):
        fa = _increment(_scaled(model, a), x)
        rel = float((fa - a * f1).norm() / (a * f1).norm())
        if homogeneous:
            assert rel < 1e-12
        else:
            assert rel > 1e-2


def test_forms_registry_holds_the_three_forms_and_takes_a_new_one():
    from spacetime_nets import NodalKernel, integrate
    from spacetime_nets.fields import Form, register_form

    assert tuple(FORMS) == ("outside", "inside", "bottleneck")
    # one entry makes a new form usable by the step loop: f(x) = W x + b - x (a linear decay)
    register_form(
        Form("decay", 1, lambda act, apply, ops, x: apply(ops[0], x) - x, lambda a: False)
    )
    try:
        sched = GridSchedule.constant(5, 3)
        k = NodalKernel(sched)
        x0 = torch.randn(2, 5)
        tr = integrate(x0, sched, k, form="decay")
        x = x0
        for j in range(3):
            W, b = k.weight[j].detach(), k.bias[j].detach()
            x = x + (1 / 3) * (x @ W.T + b - x)
        torch.testing.assert_close(tr.final, x, rtol=1e-5, atol=1e-6)
    finally:
        del FORMS["decay"]
