"""Checks of the models: ``NeuralODE`` and ``SpaceTimeNet`` (lift -> flow -> readout).

NeuralODE is compared with Euler loops written here and with ``torchdiffeq.odeint`` driven by a
piecewise-constant-in-time vector field; augmentation, fixed readouts and the scaling lemma
(for horizons T != 1) are checked. For SpaceTimeNet: the cells lift against cell indices worked
out from node positions, the quadrature readout against the orthonormality of the basis,
checkpointing of the forward pass, ``with_schedule`` copies, and ``torch.autograd.gradcheck``
(inputs and parameters) for every form and every kernel type. Bad arguments must raise
ValueErrors that say what is wrong.
"""

import copy
import math

import numpy as np
import pytest
import torch
from torch.func import functional_call
from torchdiffeq import odeint

from grids import Grid, GridSchedule
from spacetime_nets import (
    FORMS,
    BasisKernel,
    FunctionKernel,
    NeuralKernel,
    NeuralODE,
    NodalKernel,
    SpaceTimeNet,
)
from spacetime_nets.kernels import tensor_basis

BOX = [(0.0, 1.0), (0.0, 2.0)]


def randn(*shape, seed=0):
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- NeuralODE
@pytest.mark.parametrize("form", ["inside", "outside"])
def test_neural_ode_is_a_hand_written_euler_resnet(form):
    model = NeuralODE(3, T=1.7, steps=6, form=form, activation="tanh", out_features=2, seed=1)
    model = model.double()
    x = randn(5, 3)
    dt = 1.7 / 6
    with torch.no_grad():
        h = x.clone()
        for k in range(6):
            W, b = model.kernel.weight[k], model.kernel.bias[k]
            if form == "inside":
                h = h + dt * (torch.tanh(h) @ W.T + b)
            else:
                h = h + dt * torch.tanh(h @ W.T + b)
        ref = h @ model.readout_weight.T + model.readout_bias
        torch.testing.assert_close(model(x), ref, rtol=0, atol=1e-12)


def test_neural_ode_bottleneck_hand_written():
    model = NeuralODE(2, T=1.0, steps=4, form="bottleneck", activation="relu", hidden_width=5)
    model = model.double()
    x = randn(4, 2, seed=1)
    with torch.no_grad():
        h = x.clone()
        for k in range(4):
            W1, b1 = model.kernel.weight[k], model.kernel.bias[k]
            W2, b2 = model.kernel2.weight[k], model.kernel2.bias[k]
            assert W1.shape == (5, 2) and W2.shape == (2, 5)
            h = h + 0.25 * (torch.relu(h @ W1.T + b1) @ W2.T + b2)
        torch.testing.assert_close(model(x), h, rtol=0, atol=1e-12)


def test_neural_ode_augment_pads_zeros_and_identity_readout():
    model = NeuralODE(3, steps=3, augment=2).double()
    x = randn(4, 3)
    tr = model.trajectory(x)
    assert tr.states[0].shape == (4, 5)
    assert torch.equal(tr.states[0][:, :3], x)
    assert torch.equal(tr.states[0][:, 3:], torch.zeros(4, 2, dtype=torch.float64))
    out = model(x)
    assert out.shape == (4, 5)  # no readout: the whole augmented state
    torch.testing.assert_close(out, tr.final, rtol=0, atol=0)
    assert tr.final[:, 3:].abs().max() > 0  # the padding is part of the dynamics


def test_neural_ode_fixed_readout_is_buffers():
    fixed = NeuralODE(3, out_features=2, fixed_readout=True)
    names = {n for n, _ in fixed.named_parameters()}
    buffers = {n for n, _ in fixed.named_buffers()}
    assert "readout_weight" in buffers and "readout_bias" in buffers
    assert "readout_weight" not in names and "readout_bias" not in names
    assert all(n.startswith("kernel.") for n in names)
    trained = NeuralODE(3, out_features=2)
    assert {"readout_weight", "readout_bias"} <= {n for n, _ in trained.named_parameters()}


class PiecewiseField(torch.nn.Module):
    """v(t, x) = W_k tanh(x) + b_k on [t_k, t_{k+1}) (inside form)."""

    def __init__(self, model: NeuralODE) -> None:
        super().__init__()
        self.times = torch.tensor(model.times, dtype=torch.float64)
        self.Ws = [w.detach() for w in model.kernel.weight]
        self.bs = [b.detach() for b in model.kernel.bias]

    def forward(self, t, x):
        k = int(torch.searchsorted(self.times, t.reshape(1), right=True)) - 1
        k = min(max(k, 0), len(self.Ws) - 1)
        return torch.tanh(x) @ self.Ws[k].T + self.bs[k]


def test_neural_ode_matches_torchdiffeq_euler():
    model = NeuralODE(4, T=2.0, steps=8, form="inside", activation="tanh", out_features=3, seed=2)
    model = model.double()
    x = randn(6, 4, seed=3)
    t = torch.tensor(model.times, dtype=torch.float64)
    with torch.no_grad():
        sol = odeint(PiecewiseField(model), x, t, method="euler")
        ref = sol[-1] @ model.readout_weight.T + model.readout_bias
        torch.testing.assert_close(model(x), ref, rtol=0, atol=1e-12)
        tr = model.trajectory(x)
        for k in range(9):
            torch.testing.assert_close(tr.states[k], sol[k], rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "make",
    [
        lambda: NeuralODE(3, T=2.0, steps=5, form="inside", out_features=2, seed=0),
        lambda: NeuralODE(3, T=0.5, steps=4, form="outside", activation="relu", seed=0),
        lambda: SpaceTimeNet(
            GridSchedule.moving([5, 7, 6], T=2.0),
            3,
            2,
            kernel="nodal",
            form="inside",
            activation="tanh",
            method="heun",
            seed=0,
        ),
        lambda: SpaceTimeNet(
            GridSchedule.moving([5, 7, 6], T=3.0),
            3,
            2,
            kernel="basis",
            form="outside",
            activation="relu",
            seed=0,
            modes=4,
        ),
    ],
    ids=["ode-inside-T2", "ode-outside-relu-T0.5", "nodal-heun-T2", "basis-relu-T3"],
)
def test_scaling_lemma_on_other_horizons(make):
    """K steps of size T/K with u_k equal K steps of size T_new/K with (T/T_new) u_k."""
    model = make().double()
    T = model.T
    x = randn(4, 3, seed=4)
    for T_new in (1.0, 4.5):
        new = model.rescale_horizon(T_new)
        assert new.T == pytest.approx(T_new)
        assert new.times == pytest.approx([t * T_new / T for t in model.times])
        for a, b in zip(model.controls(), new.controls()):
            torch.testing.assert_close(b.layers[0][0], a.layers[0][0] * (T / T_new))
            torch.testing.assert_close(b.layers[0][1], a.layers[0][1] * (T / T_new))
        with torch.no_grad():
            torch.testing.assert_close(new(x), model(x), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- SpaceTimeNet parts
def test_cells_lift_2d_follows_node_positions():
    sched = GridSchedule.hourglass((5, 7), (3, 3), 2, domain=BOX)
    model = SpaceTimeNet(
        sched, 6, 2, kernel="basis", lift="cells", in_shape=(2, 3), modes=3
    ).double()
    x = randn(3, 6)
    nodes = sched.grids[0].nodes.numpy()
    cols = []
    for px, py in nodes:
        cx = min(int(math.floor(px / 1.0 * 2)), 1)
        cy = min(int(math.floor(py / 2.0 * 3)), 2)
        cols.append(cx * 3 + cy)
    torch.testing.assert_close(model.lift(x), x[:, cols], rtol=0, atol=0)
    M, a0 = model.lift_matrix()
    torch.testing.assert_close(x @ M.T + a0, x[:, cols], rtol=0, atol=0)


def test_continuous_readout_is_the_l2_inner_product():
    """x(T) = phi_b on an exact Gauss-Legendre grid: (P x)_c = <p_c, phi_b> + beta_c = R_cb +
    beta_c, because the basis is orthonormal."""
    sched = GridSchedule.constant(6, 2, rule="gauss_legendre", domain=(0.0, 2.0))
    model = SpaceTimeNet(sched, 3, 4, kernel="basis", modes=3, lift="linear").double()
    with torch.no_grad():
        model.readout_bias.copy_(torch.tensor([0.5, -1.0, 0.0, 2.0]))
    nodes = sched.grids[-1].nodes
    phi = tensor_basis(nodes, sched.domain, 3, "legendre")  # [n, 3]
    out = model.readout(phi.T)  # three states, one per basis function
    ref = model.readout_coeff.T + model.readout_bias
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


def test_nodal_readout_is_values_times_weights():
    sched = GridSchedule.moving([6, 8, 7], T=1.0)
    model = SpaceTimeNet(sched, 3, 2, kernel="nodal").double()
    state = randn(5, 7)
    w = sched.grids[-1].weights
    ref = state @ (model.readout_values * w).T + model.readout_bias
    torch.testing.assert_close(model.readout(state), ref, rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match="nodal readout lives on the final grid"):
        model.readout_matrix(0)


@pytest.mark.parametrize("form", FORMS)
def test_model_checkpointing_changes_nothing(form):
    widths = [6, 8, 5, 7, 9, 6, 8, 5, 7, 9, 6, 8, 7]
    sched = GridSchedule.from_widths(widths, T=1.0)
    x = randn(4, 3, seed=1)
    outs = []
    for checkpoint in (None, 5):
        model = SpaceTimeNet(
            sched,
            3,
            2,
            kernel="basis",
            form=form,
            activation="tanh",
            lift="linear",
            modes=3,
            seed=7,
            checkpoint=checkpoint,
        ).double()
        xx = x.clone().requires_grad_(True)
        y = model(xx)
        grads = torch.autograd.grad((y**2).sum(), [xx, *model.parameters()])
        outs.append((y.detach(), grads))
    assert torch.equal(outs[0][0], outs[1][0])
    for a, b in zip(outs[0][1], outs[1][1]):
        assert torch.equal(a, b)


def test_with_schedule_shares_no_tensors():
    sched = GridSchedule.moving([6, 8, 7], T=1.0)
    model = SpaceTimeNet(sched, 3, 2, kernel="neural", form="inside").double()
    x = randn(3, 3)
    same = model.with_schedule(sched)
    with torch.no_grad():
        torch.testing.assert_close(same(x), model(x), rtol=0, atol=0)
        before = model(x).clone()
        for p in same.parameters():
            p.add_(1.0)
        torch.testing.assert_close(model(x), before, rtol=0, atol=0)
    ptrs = {p.data_ptr() for p in model.parameters()}
    assert not ptrs & {p.data_ptr() for p in same.parameters()}
    fine = model.with_schedule(GridSchedule.constant(11, 4))
    assert fine.schedule.widths == [11] * 5 and model.schedule.widths == [6, 8, 7]


def _interp_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``[n_dst, n_src]`` linear interpolation, constant outside (numpy.interp per column)."""
    return np.stack([np.interp(dst, src, e) for e in np.eye(src.size)], axis=1)


def test_refine_of_a_continuous_model_resamples_the_same_functions():
    """refine() of a FunctionKernel model against an Euler loop written here on the finer
    schedule: the analytic w, b at the fine nodes and times, the cells lift from the node
    positions and transfers by numpy.interp (no library code path but the schedule's grids)."""

    def w_np(t, xi, zeta):
        return np.cos(2.0 * xi[:, None] - zeta[None, :] + t)

    def b_np(t, xi):
        return 0.3 * np.sin(5.0 * xi) * (1.0 - t)

    kernel = FunctionKernel(
        lambda t, xi, zeta: torch.cos(2.0 * xi[:, 0][:, None] - zeta[:, 0][None, :] + t),
        lambda t, xi: 0.3 * torch.sin(5.0 * xi[:, 0]) * (1.0 - t),
    )
    sched = GridSchedule.moving([6, 8, 5, 7], T=1.2)
    n_in = 5
    model = SpaceTimeNet(
        sched, n_in, 2, kernel=kernel, form="outside", activation="tanh", lift="cells"
    ).double()
    fine_model = model.refine(width=2, depth=2)
    fine = fine_model.schedule
    assert fine.num_steps == 2 * sched.num_steps and fine.widths[0] > sched.widths[0]
    x = randn(4, n_in, seed=3)
    X = None
    times = fine.times.numpy()
    for k in range(fine.num_steps):
        g_in, g_out = fine.grids[k], fine.grids[k + 1]
        zeta, om = g_in.nodes[:, 0].numpy(), g_in.weights.numpy()
        xi = g_out.nodes[:, 0].numpy()
        if X is None:  # cells lift: X^0_i = x[floor(xi_i * n_in)]
            cell = np.minimum(np.floor(zeta * n_in).astype(int), n_in - 1)
            X = x.numpy()[:, cell]
        W, c = w_np(times[k], xi, zeta) * om, b_np(times[k], xi)
        Pi = _interp_matrix(zeta, xi)
        X = X @ Pi.T + (times[k + 1] - times[k]) * np.tanh(X @ W.T + c)
    with torch.no_grad():
        got = fine_model.trajectory(x).final.numpy()
        coarse = model.trajectory(x).final.numpy()
    np.testing.assert_allclose(got, X, rtol=0, atol=1e-12)
    assert got.shape != coarse.shape  # a finer discretisation, not the coarse one


# --------------------------------------------------------------------------- gradcheck
def _kernels(kind: str, domain, form: str):
    gen = torch.Generator().manual_seed(0)

    def one(shift):
        if kind == "neural":
            return NeuralKernel(domain, hidden=3, depth=1, generator=gen)
        if kind == "basis":
            return BasisKernel(domain, modes=2, pieces=2, generator=gen)
        return FunctionKernel(
            lambda t, xi, zeta: torch.cos(xi.sum(1)[:, None] - zeta.sum(1)[None, :] + shift),
            lambda t, xi: torch.sin(xi.sum(1) + t),
        )

    if kind == "nodal":
        return "nodal", None
    return one(0.0), (one(0.5) if form == "bottleneck" else None)


@pytest.mark.parametrize(
    "kind", ["nodal", "basis", pytest.param("neural", marks=pytest.mark.slow), "function"]
)
@pytest.mark.parametrize("form", FORMS)
def test_gradcheck_inputs_and_parameters(form, kind):
    sched = GridSchedule.moving([4, 5, 3], T=1.0)
    method = "heun" if kind in ("basis", "function") else "euler"
    k1, k2 = _kernels(kind, sched.domain, form)
    model = SpaceTimeNet(
        sched,
        3,
        2,
        kernel=k1,
        kernel2=k2,
        form=form,
        activation="softplus" if form == "outside" else "tanh",
        lift="linear",
        method=method,
        seed=1,
    ).double()
    x = randn(2, 3, seed=2).requires_grad_(True)
    assert torch.autograd.gradcheck(model, (x,))
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for _, p in model.named_parameters())
    xd = x.detach()

    def as_function_of_parameters(*ps):
        return functional_call(model, dict(zip(names, ps)), (xd,))

    assert torch.autograd.gradcheck(as_function_of_parameters, params)


def test_gradcheck_neural_ode_and_2d_cells():
    node = NeuralODE(2, steps=3, form="bottleneck", out_features=2, hidden_width=3).double()
    assert torch.autograd.gradcheck(node, (randn(2, 2).requires_grad_(True),))
    sched = GridSchedule.hourglass((3, 3), (2, 2), 2, domain=BOX)
    net = SpaceTimeNet(sched, 4, 2, kernel="basis", form="inside", activation="tanh", modes=2)
    net = net.double()
    assert torch.autograd.gradcheck(net, (randn(2, 4).requires_grad_(True),))


# --------------------------------------------------------------------------- bad input
def test_model_errors_are_value_errors_naming_the_argument():
    sched = GridSchedule.moving([5, 7, 6], T=1.0)
    model = SpaceTimeNet(sched, 4, 2)
    with pytest.raises(ValueError, match=r"x: expected 4 features, got shape \(3, 5\)"):
        model(torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"x: expected a tensor \[batch, 4\]"):
        model(torch.zeros(4))
    with pytest.raises(ValueError, match=r"x: expected a tensor \[batch, 4\]"):
        model.trajectory([[0.0] * 4])
    other = NodalKernel(GridSchedule.moving([5, 8, 6], T=1.0))
    with pytest.raises(ValueError, match="made for another schedule"):
        SpaceTimeNet(sched, 4, 2, kernel=other)
    with pytest.raises(ValueError, match="form: expected one of outside, inside, bottleneck"):
        SpaceTimeNet(sched, 4, 2, form="across")
    with pytest.raises(ValueError, match="activation: expected one of"):
        SpaceTimeNet(sched, 4, 2, activation="swish")
    with pytest.raises(ValueError, match="kernel: expected one of nodal, basis, neural"):
        SpaceTimeNet(sched, 4, 2, kernel="wavelet")
    with pytest.raises(ValueError, match="lift: expected one of cells, linear, identity"):
        SpaceTimeNet(sched, 4, 2, lift="conv")
    with pytest.raises(ValueError, match="method: expected one of euler, midpoint, heun"):
        SpaceTimeNet(sched, 4, 2, method="leapfrog")
    with pytest.raises(ValueError, match="checkpoint: expected None or a positive int"):
        SpaceTimeNet(sched, 4, 2, checkpoint=0)
    with pytest.raises(
        ValueError, match="readout: expected one of quadrature, mean, pool, function"
    ):
        SpaceTimeNet(sched, 4, 2, readout="max")
    with pytest.raises(ValueError, match="in_features: expected a positive int"):
        SpaceTimeNet(sched, 0, 2)
    with pytest.raises(ValueError, match="in_features: lift='identity' needs in_features = n_0"):
        SpaceTimeNet(sched, 4, 2, lift="identity")
    with pytest.raises(ValueError, match="schedule: expected a grids.GridSchedule"):
        SpaceTimeNet([5, 7, 6], 4, 2)
    nodal = SpaceTimeNet(sched, 4, 2, kernel="nodal")
    with pytest.raises(ValueError, match="nodal SpaceTimeNet exists only on its own schedule"):
        nodal.with_schedule(sched)
    basis = SpaceTimeNet(sched, 4, 2, kernel="basis", modes=4)
    with pytest.raises(ValueError, match="schedule: domain must be"):
        basis.with_schedule(GridSchedule.constant(5, 2, domain=(0.0, 2.0)))
    with pytest.raises(ValueError, match="schedule: expected a grids.GridSchedule"):
        basis.with_schedule("fine")
    k = BasisKernel()
    with pytest.raises(ValueError, match="kernel2: the bottleneck form needs a second, distinct"):
        SpaceTimeNet(sched, 4, 2, kernel=k, kernel2=k, form="bottleneck")
    heun = SpaceTimeNet(sched, 4, 2, kernel="nodal", method="heun")
    with pytest.raises(ValueError, match="refine: nodal refinement supports"):
        heun.refine()


def test_cells_lift_2d_needs_in_shape():
    sched = GridSchedule.hourglass((5, 4), (3, 3), 2, domain=BOX)
    with pytest.raises(ValueError, match=r"in_shape: a 2-D domain with in_features=10 \(not a"):
        SpaceTimeNet(sched, 10, 2, lift="cells")
    SpaceTimeNet(sched, 10, 2, lift="cells", in_shape=(2, 5))
    SpaceTimeNet(sched, 9, 2, lift="cells")  # a perfect square: 3 x 3 cells
    with pytest.raises(ValueError, match="in_shape: expected 2 positive cell counts"):
        SpaceTimeNet(sched, 10, 2, lift="cells", in_shape=(3, 3))


def test_neural_ode_errors():
    with pytest.raises(ValueError, match="dim: expected a positive int"):
        NeuralODE(0)
    with pytest.raises(ValueError, match="augment: expected an int >= 0"):
        NeuralODE(2, augment=-1)
    with pytest.raises(ValueError, match="steps: expected a positive int"):
        NeuralODE(2, steps=0)
    with pytest.raises(ValueError, match="form: expected one of"):
        NeuralODE(2, form="diagonal")
    with pytest.raises(ValueError, match="out_features: expected a positive int"):
        NeuralODE(2, out_features=0)
    with pytest.raises(ValueError, match=r"x: expected 2 features"):
        NeuralODE(2)(torch.zeros(3, 3))


def test_grid_and_schedule_of_a_neural_ode_have_unit_weights():
    model = NeuralODE(3, T=1.0, steps=2, augment=1)
    nodes, weights = model.disc.grid(0)
    assert torch.equal(weights, torch.ones(4))
    assert np.allclose(nodes[:, 0].numpy(), [0.5, 1.5, 2.5, 3.5])
    assert isinstance(model.schedule.grids[0], Grid)
    node = copy.deepcopy(model)
    assert node.schedule.widths == [4, 4, 4]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_input_is_refused(bad):
    sched = GridSchedule.constant(5, 3)
    models = [
        SpaceTimeNet(sched, 3, 2, kernel="basis", lift="linear", seed=0, modes=4),
        NeuralODE(3, T=1.0, steps=3, out_features=2, seed=0),
    ]
    x = torch.zeros(4, 3)
    x[2, 1] = bad
    for m in models:
        with pytest.raises(ValueError, match=r"x: input must be finite.*\[2, 1\]"):
            m(x)
        with pytest.raises(ValueError, match="x: input must be finite"):
            m.trajectory(x)


def test_extreme_finite_inputs_are_accepted():
    """Finite inputs at the ends of the float32 range (whose plain sum overflows) pass the
    finiteness check."""
    model = NeuralODE(3, T=1.0, steps=2, out_features=2, seed=0)
    big = torch.finfo(torch.float32).max
    tiny = torch.finfo(torch.float32).smallest_normal / 4  # subnormal
    x = torch.tensor([[big, big, -big], [tiny, -tiny, 0.0]])
    assert model(x).shape == (2, 2)
