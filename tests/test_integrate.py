"""Checks of the time stepping (``spacetime_nets.integrate``) on moving grid schedules.

The Euler, Heun and RK4 schemes of docs/concepts.md (section 4) are re-implemented here in
NumPy (kernel matrices assembled from the analytic w, b at the right nodes and times,
transfers built here from their definitions with ``numpy.interp``, not from the library's)
and compared for every form. The Trajectory result is checked
(shapes follow the widths, times equal the schedule's, multiply-add counts worked out by hand
for tiny cases), checkpointing is checked to change neither outputs nor gradients, and every
bad argument must raise a ValueError that names it.
"""

import importlib

import numpy as np
import pytest
import torch

from grids import Grid, GridSchedule
from spacetime_nets import FORMS, FunctionKernel, NodalKernel, integrate

integrate_module = importlib.import_module("spacetime_nets.integrate")


# analytic controls, in torch (for the library) and in NumPy (for the reference)
def w1_np(t, xi, zeta):
    return np.cos(2.0 * xi[:, None] - zeta[None, :] + t)


def b1_np(t, xi):
    return 0.3 * np.sin(5.0 * xi) * (1.0 - t)


def w2_np(t, xi, h):
    return np.exp(-((xi[:, None] - h[None, :]) ** 2)) * (1.0 + t)


def b2_np(t, xi):
    return xi**2 - 0.2


def kernel1() -> FunctionKernel:
    return FunctionKernel(
        lambda t, xi, zeta: torch.cos(2.0 * xi[:, 0][:, None] - zeta[:, 0][None, :] + t),
        lambda t, xi: 0.3 * torch.sin(5.0 * xi[:, 0]) * (1.0 - t),
    )


def kernel2() -> FunctionKernel:
    return FunctionKernel(
        lambda t, xi, h: torch.exp(-((xi[:, 0][:, None] - h[:, 0][None, :]) ** 2)) * (1.0 + t),
        lambda t, xi: xi[:, 0] ** 2 - 0.2,
    )


def interp_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``[n_dst, n_src]``: piecewise linear interpolation from nodes ``src`` to ``dst``,
    constant outside [src[0], src[-1]] (``numpy.interp`` of each unit vector)."""
    return np.stack([np.interp(dst, src, e) for e in np.eye(src.size)], axis=1)


def transfer_np(g_in: Grid, g_out: Grid, kind: str) -> np.ndarray:
    """Pi from ``g_in`` to ``g_out`` by definition: ``linear`` interpolates; ``l2`` is the
    conservative D_out^{-1} L^T D_in with L the interpolation from g_out back to g_in and D
    the quadrature weights (so that sum_i w_out_i (Pi x)_i = sum_j w_in_j x_j)."""
    src, dst = g_in.nodes[:, 0].numpy(), g_out.nodes[:, 0].numpy()
    if kind == "linear":
        return interp_matrix(src, dst)
    assert kind == "l2", kind
    L = interp_matrix(dst, src)  # [n_in, n_out]
    return L.T * g_in.weights.numpy()[None, :] / g_out.weights.numpy()[:, None]


def reference(x0, sched, form, method, hidden=None, kind="linear"):
    """NumPy re-implementation of docs/concepts.md (section 4) with sigma = tanh."""
    X = x0.numpy().copy()
    times = sched.times.numpy()
    for k in range(sched.num_steps):
        t, dt = times[k], times[k + 1] - times[k]
        g_in = sched.grids[k]
        g_out = sched.grids[k + 1] if method == "euler" else g_in
        zeta, om = g_in.nodes[:, 0].numpy(), g_in.weights.numpy()
        xi = g_out.nodes[:, 0].numpy()
        if form == "bottleneck":
            h, om_h = hidden.nodes[:, 0].numpy(), hidden.weights.numpy()
            W1, c1 = w1_np(t, h, zeta) * om, b1_np(t, h)
            W2, c2 = w2_np(t, xi, h) * om_h, b2_np(t, xi)

            def f(Z, W1=W1, c1=c1, W2=W2, c2=c2):
                return np.tanh(Z @ W1.T + c1) @ W2.T + c2
        else:
            W, c = w1_np(t, xi, zeta) * om, b1_np(t, xi)
            if form == "outside":

                def f(Z, W=W, c=c):
                    return np.tanh(Z @ W.T + c)
            else:

                def f(Z, W=W, c=c):
                    return np.tanh(Z) @ W.T + c

        Pi = transfer_np(sched.grids[k], sched.grids[k + 1], kind)
        if method == "euler":
            X = X @ Pi.T + dt * f(X)
            continue
        k1 = f(X)
        if method == "heun":
            Y = X + dt / 2 * (k1 + f(X + dt * k1))
        else:
            k2 = f(X + dt / 2 * k1)
            k3 = f(X + dt / 2 * k2)
            k4 = f(X + dt * k3)
            Y = X + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        X = Y @ Pi.T
    return X


@pytest.mark.parametrize("stencil", [False, True], ids=["dense-shortcut", "stencil-shortcut"])
@pytest.mark.parametrize("method", ["euler", "heun", "rk4"])
@pytest.mark.parametrize("form", FORMS)
def test_stepping_matches_numpy_reference(form, method, stencil, monkeypatch):
    """Both ways of applying Pi_k: as one dense product on narrow layers (these grids) and as
    the gather stencil of wide ones (forced here by a zero size limit)."""
    if stencil:
        monkeypatch.setattr(integrate_module, "DENSE_TRANSFER_MAX", 0)
    for kind in ("linear", "l2"):
        sched = GridSchedule.moving([7, 10, 6, 9, 8], T=1.4, transfer_kind=kind)
        x0 = torch.randn(3, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        hidden = Grid.uniform(4, (0.0, 1.0), "midpoint")
        extra = {}
        if form == "bottleneck":
            extra = {"kernel2": kernel2(), "hidden": [hidden] * sched.num_steps}
        dense = integrate_module.Discretization(sched).pi_dense
        assert all((d is None) == stencil for d in dense)
        tr = integrate(x0, sched, kernel1(), form=form, activation="tanh", method=method, **extra)
        ref = reference(x0, sched, form, method, hidden, kind)
        np.testing.assert_allclose(tr.final.numpy(), ref, rtol=0, atol=1e-12)
        assert float(np.abs(ref - ref.mean()).max()) > 1e-2


def test_trajectory_shapes_times_and_states():
    sched = GridSchedule.moving([5, 8, 4, 6, 9, 7], T=2.0)
    x0 = torch.randn(4, 5, dtype=torch.float64)
    tr = integrate(x0, sched, kernel1(), form="inside", activation="tanh")
    assert len(tr) == len(tr.states) == sched.num_steps + 1
    assert [tuple(s.shape) for s in tr.states] == [(4, n) for n in sched.widths]
    assert tr.times == sched.times.tolist()
    assert tr.states[0] is x0
    assert torch.equal(tr.final, tr.states[-1])
    assert tr.stats["widths"] == sched.widths
    assert tr.stats["steps"] == 5
    assert tr.stats["method"] == "euler"
    # the states are the ones of the reference scheme at every step, not only the last
    for k in (1, 3):
        short = GridSchedule(sched.times[: k + 1], sched.grids[: k + 1])
        ref = reference(x0, short, "inside", "euler")
        np.testing.assert_allclose(tr.states[k].numpy(), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "form, method, expected_per_sample",
    [
        # widths 3 -> 5 -> 2 on uniform grids; each linear interpolation costs 2 per target
        # step 0: W 5x3 (15) + Pi (5 targets x 2 = 10); step 1: W 2x5 (10) + Pi (2 x 2 = 4)
        ("outside", "euler", 15 + 10 + 10 + 4),
        # two stages with square matrices on G_k: 2 * 3x3 + 10, then 2 * 5x5 + 4
        ("inside", "heun", 2 * 9 + 10 + 2 * 25 + 4),
        ("inside", "rk4", 4 * 9 + 10 + 4 * 25 + 4),
        # hidden width 4: W1 4x3 + W2 5x4 + 10, then W1 4x5 + W2 2x4 + 4
        ("bottleneck", "euler", 12 + 20 + 10 + 20 + 8 + 4),
    ],
)
def test_multiply_adds_counted_by_hand(form, method, expected_per_sample):
    sched = GridSchedule.from_widths([3, 5, 2])
    extra = {}
    if form == "bottleneck":
        extra = {"kernel2": kernel2(), "hidden": [Grid.uniform(4, (0.0, 1.0), "midpoint")] * 2}
    x0 = torch.zeros(2, 3, dtype=torch.float64)
    tr = integrate(x0, sched, kernel1(), form=form, activation="tanh", method=method, **extra)
    assert tr.stats["multiply_adds"] == 2 * expected_per_sample


def test_multiply_adds_constant_grid_has_no_transfer_cost():
    sched = GridSchedule.constant(6, 4)
    tr = integrate(torch.zeros(3, 6), sched, kernel1().float(), form="outside")
    assert tr.stats["multiply_adds"] == 3 * 4 * 36


@pytest.mark.parametrize("method", ["euler", "rk4"])
@pytest.mark.parametrize("form", FORMS)
def test_checkpointing_changes_nothing(form, method):
    """K = 12 steps in segments of m = 5: same outputs, states and gradients."""
    widths = [6, 8, 5, 7, 9, 6, 8, 5, 7, 9, 6, 8, 7]
    sched = GridSchedule.from_widths(widths, T=1.2, transfer_kind="l2")
    assert sched.num_steps == 12
    gen = torch.Generator().manual_seed(1)
    results = []
    for checkpoint in (None, 5):
        torch.manual_seed(0)
        k1 = NodalKernel(
            out_widths=[4] * 12 if form == "bottleneck" else _outs(widths, method),
            in_widths=widths[:-1],
            generator=torch.Generator().manual_seed(2),
        ).double()
        extra = {}
        if form == "bottleneck":
            k2 = NodalKernel(
                out_widths=_outs(widths, method),
                in_widths=[4] * 12,
                generator=torch.Generator().manual_seed(3),
            ).double()
            extra = {"kernel2": k2, "hidden": [Grid.uniform(4, (0.0, 1.0), "midpoint")] * 12}
        gen.manual_seed(1)
        x0 = torch.randn(3, 6, dtype=torch.float64, generator=gen).requires_grad_(True)
        tr = integrate(
            x0,
            sched,
            k1,
            form=form,
            activation="tanh",
            method=method,
            checkpoint=checkpoint,
            **extra,
        )
        loss = (tr.final**2).sum() + sum((s**3).sum() for s in tr.states[1:-1])
        params = [x0, *k1.parameters(), *(extra["kernel2"].parameters() if extra else [])]
        grads = torch.autograd.grad(loss, params)
        results.append(([s.detach() for s in tr.states], grads))
    (states_a, grads_a), (states_b, grads_b) = results
    assert len(grads_a) == len(grads_b) > 1
    for a, b in zip(states_a, states_b):
        assert torch.equal(a, b)
    for a, b in zip(grads_a, grads_b):
        assert a.abs().max() > 0
        assert torch.equal(a, b)


def _outs(widths, method):
    return widths[1:] if method == "euler" else widths[:-1]


def test_integrate_rejects_bad_arguments():
    sched = GridSchedule.from_widths([4, 6, 5])
    x0 = torch.zeros(2, 4, dtype=torch.float64)
    k = kernel1()
    with pytest.raises(ValueError, match="method: expected one of euler, midpoint, heun"):
        integrate(x0, sched, k, method="leapfrog")
    with pytest.raises(ValueError, match="form: expected one of outside, inside, bottleneck"):
        integrate(x0, sched, k, form="sideways")
    with pytest.raises(ValueError, match="activation: expected one of"):
        integrate(x0, sched, k, activation="swish")
    with pytest.raises(ValueError, match="checkpoint: expected None or a positive int"):
        integrate(x0, sched, k, checkpoint=0)
    with pytest.raises(ValueError, match="checkpoint: expected None or a positive int"):
        integrate(x0, sched, k, checkpoint=True)
    with pytest.raises(ValueError, match=r"x0: expected \[batch, n_0\] with n_0=4"):
        integrate(torch.zeros(2, 5, dtype=torch.float64), sched, k)
    with pytest.raises(ValueError, match=r"x0: expected a tensor \[batch, n_0\]"):
        integrate(torch.zeros(4, dtype=torch.float64), sched, k)
    with pytest.raises(ValueError, match="kernel: expected a spacetime_nets Kernel"):
        integrate(x0, sched, torch.nn.Linear(4, 4))
    with pytest.raises(ValueError, match="kernel2: the bottleneck form needs a second kernel"):
        integrate(x0, sched, k, form="bottleneck")
    with pytest.raises(ValueError, match="hidden: need one hidden grid per step"):
        integrate(x0, sched, k, form="bottleneck", kernel2=kernel2(), hidden=[Grid.uniform(3)] * 3)
    with pytest.raises(ValueError, match="schedule: expected a grids.GridSchedule"):
        integrate(x0, [4, 6, 5], k)
    nodal = NodalKernel(sched).double()
    integrate(x0, sched, nodal)  # fits its own schedule
    with pytest.raises(ValueError, match="made for another schedule"):
        integrate(x0, GridSchedule.from_widths([4, 7, 5]), nodal)
    with pytest.raises(ValueError, match="made for another schedule"):
        integrate(x0, sched, nodal, method="heun")  # Heun needs square matrices


def test_repeated_calls_reuse_the_schedules_discretization_without_changing_results():
    import pickle

    sched = GridSchedule.hourglass(9, 5, 4, transfer_kind="linear")
    kern = NodalKernel(sched).double()
    x = torch.randn(3, 9, dtype=torch.float64)
    first = integrate(x, sched, kern, form="inside", activation="tanh").final
    cached = sched.derived()
    assert len(cached) == 1
    with torch.no_grad():  # a changed kernel is read again: only the grids' facts are kept
        kern.weight[0].mul_(2.0)
    again = integrate(x, sched, kern, form="inside", activation="tanh").final
    assert len(sched.derived()) == 1 and not torch.equal(again, first)
    fresh = pickle.loads(pickle.dumps(sched))  # the cache is not pickled...
    assert fresh.derived() == {}
    # ...and a schedule rebuilt from nothing gives the same numbers
    torch.testing.assert_close(
        integrate(x, fresh, kern, form="inside", activation="tanh").final, again, rtol=0, atol=0
    )
    # another dtype is another entry
    integrate(x.float(), sched, kern.float(), form="inside", activation="tanh")
    assert len(sched.derived()) == 2


def test_a_trajectory_builds_its_step_operators_once(monkeypatch):
    from spacetime_nets import SpaceTimeNet
    from spacetime_nets.integrate import Discretization

    calls = []
    real = Discretization.step_matrices

    def counted(self, *args, **kwargs):
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Discretization, "step_matrices", counted)
    model = SpaceTimeNet(GridSchedule.hourglass(9, 5, 4), 2, 3, kernel="basis", modes=4)
    tr = model.trajectory(torch.randn(5, 2))
    assert len(calls) == 1
    # the count is still each step's operator: 4 steps of dense or factored work, batch 5
    assert tr.stats["multiply_adds"] > 0 and tr.stats["multiply_adds"] % 5 == 0
