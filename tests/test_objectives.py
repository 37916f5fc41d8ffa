"""Objectives of docs/concepts.md (section 2) against hand-written sums on tiny models."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from grids import GridSchedule
from spacetime_nets import BasisKernel, NeuralODE, SpaceTimeNet, objectives

DT = torch.float64


def _f64(model):
    """The model in float64 with its grid buffers rebuilt from the (float64) schedule."""
    model = model.double()
    return model.rescale_horizon(model.T)


def _hourglass(K: int, T: float, outer: int = 7, waist: int = 4) -> GridSchedule:
    widths = [round(outer + (waist - outer) * (1 - abs(2 * k / K - 1))) for k in range(K + 1)]
    return GridSchedule.moving(widths, T=T)


# --------------------------------------------------------------------------- loss_per_sample
def test_loss_per_sample_distances_by_hand():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 3, generator=g, dtype=DT)
    y = torch.randn(5, 3, generator=g, dtype=DT)
    for i in range(5):
        d = [float(z[i, j] - y[i, j]) for j in range(3)]
        l1 = sum(abs(v) for v in d)
        l2 = math.sqrt(sum(v * v for v in d))
        l3 = sum(abs(v) ** 3 for v in d) ** (1 / 3)
        mse = sum(v * v for v in d) / 3
        assert objectives.loss_per_sample(z, y, "l1")[i].item() == pytest.approx(l1, rel=1e-14)
        assert objectives.loss_per_sample(z, y, "l2")[i].item() == pytest.approx(l2, rel=1e-14)
        assert objectives.loss_per_sample(z, y, "lp", p=3)[i].item() == pytest.approx(l3, rel=1e-13)
        assert objectives.loss_per_sample(z, y, "mse")[i].item() == pytest.approx(mse, rel=1e-14)
    ref = F.mse_loss(z, y, reduction="none").mean(-1)
    torch.testing.assert_close(objectives.loss_per_sample(z, y, "mse"), ref, rtol=1e-14, atol=0)
    assert objectives.empirical_risk(z, y, "l1").item() == pytest.approx(
        float((z - y).abs().sum(-1).mean()), rel=1e-14
    )


def test_loss_per_sample_class_labels_are_one_hot():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(6, 4, generator=g, dtype=DT)
    labels = torch.tensor([0, 3, 1, 2, 2, 0])
    onehot = F.one_hot(labels, 4).to(DT)
    for loss in ("mse", "l1", "l2"):
        a = objectives.loss_per_sample(z, labels, loss)
        b = objectives.loss_per_sample(z, onehot, loss)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    ce = objectives.loss_per_sample(z, labels, "cross_entropy")
    torch.testing.assert_close(ce, F.cross_entropy(z, labels, reduction="none"))
    for i in range(6):  # -log softmax(z)_y by hand
        lse = math.log(sum(math.exp(float(v)) for v in z[i]))
        assert ce[i].item() == pytest.approx(lse - float(z[i, labels[i]]), rel=1e-13)
    # cross entropy against the one-hot distribution (soft-label form of torch)
    soft = F.cross_entropy(z, onehot, reduction="none")
    torch.testing.assert_close(ce, soft)


def test_loss_per_sample_rejects_bad_input():
    z = torch.zeros(3, 2, dtype=DT)
    with pytest.raises(ValueError, match="loss"):
        objectives.loss_per_sample(z, z, "huber")
    with pytest.raises(ValueError, match="p"):
        objectives.loss_per_sample(z, z, "lp", p=0.5)
    with pytest.raises(ValueError, match="class indices"):
        objectives.loss_per_sample(z, z, "cross_entropy")
    with pytest.raises(ValueError, match="shape"):
        objectives.loss_per_sample(z, torch.zeros(3, 3, dtype=DT), "mse")


# --------------------------------------------------------------------------- control costs
def _hand_l2_nodal_ode(model) -> float:
    """sum_k dt_k (|W_k|_F^2 + |b_k|^2) over every kernel, with explicit loops."""
    times = model.times
    total = 0.0
    for kern in (model.kernel, model.kernel2):
        if kern is None:
            continue
        s = kern.output_scale
        for k in range(len(times) - 1):
            dt = times[k + 1] - times[k]
            W, b = kern.weight[k].detach(), kern.bias[k].detach()
            acc = 0.0
            for i in range(W.shape[0]):
                for j in range(W.shape[1]):
                    acc += (s * float(W[i, j])) ** 2
                acc += (s * float(b[i])) ** 2
            total += dt * acc
    return total


@pytest.mark.parametrize("form", ["inside", "outside", "bottleneck"])
def test_l2_control_neural_ode_by_hand(form):
    m = NeuralODE(2, T=1.7, steps=4, form=form, activation="relu", augment=1, seed=3).double()
    got = objectives.l2_control(m).item()
    assert got == pytest.approx(_hand_l2_nodal_ode(m), rel=1e-13)
    m2 = m.rescale_horizon(0.6)  # output_scale != 1 enters squared
    assert objectives.l2_control(m2).item() == pytest.approx(_hand_l2_nodal_ode(m2), rel=1e-13)
    norms = objectives.control_norms(m)
    assert len(norms) == 4 and all(float(n.detach()) > 0 for n in norms)


def test_l2_control_nodal_moving_schedule_quadrature_by_hand():
    """On grids: |w|^2 = sum_ij om_out_i om_in_j w_ij^2 with w_ij = W_ij / om_in_j, and
    |b|^2 = sum_i om_out_i b_i^2; weighted by dt_k."""
    sched = _hourglass(5, 2.0)
    m = _f64(SpaceTimeNet(sched, 2, 2, kernel="nodal", form="inside", lift="linear", seed=0))
    total = 0.0
    for k in range(sched.num_steps):
        dt = float(sched.times[k + 1] - sched.times[k])
        w_in = sched.grids[k].weights
        w_out = sched.grids[k + 1].weights
        W, b = m.kernel.weight[k].detach(), m.kernel.bias[k].detach()
        acc = 0.0
        for i in range(W.shape[0]):
            for j in range(W.shape[1]):
                acc += float(w_out[i]) * float(w_in[j]) * (float(W[i, j]) / float(w_in[j])) ** 2
            acc += float(w_out[i]) * float(b[i]) ** 2
        total += dt * acc
    assert objectives.l2_control(m).item() == pytest.approx(total, rel=1e-12)


def _coefficient_norm(kern: BasisKernel, times: list[float]) -> float:
    """sum_k dt_k (|C_k|_F^2 + |c_k|^2): the exact int_0^T |w|^2 + |b|^2 for an orthonormal
    basis and coefficients piecewise constant on the steps (pieces = steps)."""
    total = 0.0
    s = kern.output_scale
    for k in range(len(times) - 1):
        dt = times[k + 1] - times[k]
        C, c = kern.coeff[k].detach(), kern.bias_coeff[k].detach()
        acc = sum((s * float(v)) ** 2 for v in C.reshape(-1))
        acc += sum((s * float(v)) ** 2 for v in c)
        total += dt * acc
    return total


@pytest.mark.parametrize("form", ["inside", "outside"])
def test_l2_control_basis_kernel_is_exact_and_resolution_independent(form):
    """Gauss-Legendre grids with n >= modes nodes integrate products of the Legendre basis
    exactly, so the quadrature norm of the kernel is its coefficient norm for every n."""
    modes, K, T = 4, 8, 1.5
    values = []
    for n in (modes, modes + 3, 2 * modes + 5):
        sched = GridSchedule.constant(n, K, T=T, rule="gauss_legendre")
        kern = BasisKernel((0.0, 1.0), modes=modes, pieces=K, T=T, generator=torch.Generator())
        torch.manual_seed(0)
        with torch.no_grad():
            kern.coeff.copy_(torch.randn(kern.coeff.shape))
            kern.bias_coeff.copy_(torch.randn(kern.bias_coeff.shape))
        m = _f64(SpaceTimeNet(sched, 3, 2, kernel=kern, form=form, lift="linear", seed=0))
        values.append(objectives.l2_control(m).item())
        ref = _coefficient_norm(m.kernel, m.times)
        assert values[-1] == pytest.approx(ref, rel=1e-10)
    assert max(values) - min(values) <= 1e-10 * max(values)
    # the same model moved to another resolution (with_schedule) keeps its cost
    fine = m.with_schedule(GridSchedule.constant(11, K, T=T, rule="gauss_legendre"))
    assert objectives.l2_control(fine).item() == pytest.approx(values[0], rel=1e-10)


def test_l2_control_basis_kernel_too_few_nodes_is_not_exact():
    """The reference can fail: with fewer nodes than modes the quadrature norm is wrong."""
    modes, K = 5, 4
    sched = GridSchedule.constant(2, K, rule="gauss_legendre")
    m = _f64(
        SpaceTimeNet(
            sched,
            2,
            2,
            kernel="basis",
            modes=modes,
            lift="linear",
            seed=0,
            allow_underresolved=True,
        )
    )
    ref = _coefficient_norm(m.kernel, m.times)
    assert abs(objectives.l2_control(m).item() - ref) > 1e-3 * ref


@pytest.mark.parametrize("K,T", [(20, 1.0), (30, 5.0), (10, 3.7)])
def test_l2_control_basis_kernel_uses_every_piece(K, T):
    """Step k uses piece k: at step starts t_k / T * K is k up to rounding, never k - 1."""
    modes = 3
    sched = GridSchedule.constant(modes, K, T=T, rule="gauss_legendre")
    m = _f64(SpaceTimeNet(sched, 2, 2, kernel="basis", modes=modes, lift="linear", seed=0))
    ref = _coefficient_norm(m.kernel, m.times)
    assert objectives.l2_control(m).item() == pytest.approx(ref, rel=1e-10)


# --------------------------------------------------------------------------- time integrals
def _hand_euler_inside_tanh(m: NeuralODE, x: torch.Tensor) -> list[list[list[float]]]:
    """States x_i(t_k) of x' = W tanh(x) + b by explicit Euler loops (augmented with zeros)."""
    D = m.dim + m.augment
    s = m.kernel.output_scale
    out = []
    for i in range(x.shape[0]):
        state = [float(v) for v in x[i]] + [0.0] * m.augment
        path = [list(state)]
        for k in range(len(m.times) - 1):
            dt = m.times[k + 1] - m.times[k]
            W, b = m.kernel.weight[k].detach(), m.kernel.bias[k].detach()
            th = [math.tanh(v) for v in state]
            state = [
                state[r] + dt * s * (sum(float(W[r, c]) * th[c] for c in range(D)) + float(b[r]))
                for r in range(D)
            ]
            path.append(list(state))
        out.append(path)
    return out


def _hand_readout(m: NeuralODE, state: list[float]) -> list[float]:
    P, p0 = m.readout_weight.detach(), m.readout_bias.detach()
    return [
        sum(float(P[c, j]) * state[j] for j in range(len(state))) + float(p0[c])
        for c in range(P.shape[0])
    ]


def test_turnpike_cost_and_risk_profile_by_hand():
    m = NeuralODE(2, T=2.5, steps=5, form="inside", activation="tanh", out_features=2, augment=1)
    m = m.double()
    g = torch.Generator().manual_seed(4)
    x = torch.randn(4, 2, generator=g, dtype=DT)
    labels = torch.tensor([0, 1, 1, 0])
    paths = _hand_euler_inside_tanh(m, x)
    times = m.times
    risks = []
    for k in range(len(times)):
        acc = 0.0
        for i in range(4):
            z = _hand_readout(m, paths[i][k])
            tgt = [1.0 if c == int(labels[i]) else 0.0 for c in range(2)]
            acc += math.sqrt(sum((z[c] - tgt[c]) ** 2 for c in range(2)))
        risks.append(acc / 4)
    integral = 0.0
    for k in range(len(times) - 1):
        integral += 0.5 * (times[k + 1] - times[k]) * (risks[k] + risks[k + 1])
    got = objectives.turnpike_cost(m, x, labels, loss="l2").item()
    assert got == pytest.approx(integral, rel=1e-12)
    prof = objectives.risk_profile(m, x, labels, loss="l2")
    assert prof.shape == (len(times),)
    for k in range(len(times)):
        assert prof[k].item() == pytest.approx(risks[k], rel=1e-12)
    # the end point of the profile is the empirical risk of the outputs
    assert prof[-1].item() == pytest.approx(
        objectives.empirical_risk(m(x), labels, "l2").item(), rel=1e-13
    )


def test_tracking_cost_by_hand_neural_ode():
    m = NeuralODE(2, T=1.2, steps=3, form="inside", activation="tanh", augment=1).double()
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 2, generator=g, dtype=DT)
    xbar = torch.randn(3, 3, generator=g, dtype=DT)
    paths = _hand_euler_inside_tanh(m, x)
    times = m.times
    total = 0.0
    for i in range(3):
        vals = [sum((paths[i][k][j] - float(xbar[i, j])) ** 2 for j in range(3)) for k in range(4)]
        for k in range(3):
            total += 0.5 * (times[k + 1] - times[k]) * (vals[k] + vals[k + 1])
    got = objectives.tracking_cost(m, x, xbar).item()
    assert got == pytest.approx(total / 3, rel=1e-12)


def test_tracking_cost_moving_schedule_uses_each_grid_weights():
    sched = _hourglass(4, 1.0)
    m = _f64(SpaceTimeNet(sched, 2, 2, kernel="nodal", form="inside", lift="linear", seed=1))
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 2, generator=g, dtype=DT)
    with torch.no_grad():
        traj = m.trajectory(x)
    xbar = [torch.randn(2, n, generator=g, dtype=DT) for n in sched.widths]
    vals = []
    for k, s in enumerate(traj.states):
        w = sched.grids[k].weights
        acc = 0.0
        for i in range(2):
            for j in range(s.shape[1]):
                acc += float(w[j]) * (float(s[i, j]) - float(xbar[k][i, j])) ** 2
        vals.append(acc / 2)
    ref = sum(
        0.5 * (m.times[k + 1] - m.times[k]) * (vals[k] + vals[k + 1]) for k in range(len(vals) - 1)
    )
    assert objectives.tracking_cost(m, x, xbar).item() == pytest.approx(ref, rel=1e-12)
    with pytest.raises(ValueError, match="xbar"):
        objectives.tracking_cost(m, x, xbar[:-1] + [torch.zeros(2, 1, dtype=DT)])


def test_trapezoid_in_time():
    t = [0.0, 0.5, 2.0, 2.25]
    v = [torch.tensor(1.0), torch.tensor(3.0), torch.tensor(-1.0), torch.tensor(0.0)]
    ref = 0.5 * 0.5 * 4.0 + 0.5 * 1.5 * 2.0 + 0.5 * 0.25 * (-1.0)
    assert float(objectives.trapezoid_in_time(v, t)) == pytest.approx(ref, rel=1e-15)
    with pytest.raises(ValueError, match="values"):
        objectives.trapezoid_in_time(v[:3], t)
