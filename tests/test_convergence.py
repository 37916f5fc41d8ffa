"""Convergence of the discrete flow to independent references, and resolution independence.

1. A linear problem with a closed-form solution (docs/concepts.md (section 3), inside form, identity
   activation, w = a cos(pi xi) cos(pi zeta), b = c cos(pi xi)): the projection
   p(t) = int cos(pi zeta) x(t, zeta) dzeta obeys p' = (a p + c) / 2, so with q = a p + c,
   q(t) = q(0) e^{a t / 2} and x(T, xi) = x0(xi) + cos(pi xi) q(0) (2 / a) (e^{a T / 2} - 1);
   everything orthogonal to cos(pi xi) stays constant. Every registered stepper converges at
   the order of its tableau (Gauss-Legendre nodes, so the quadrature error is negligible).
2. A nonlinear problem (tanh, inside and outside forms) against ``scipy.integrate.solve_ivp``
   (rtol 1e-10) of the semi-discrete ODE on the same Gauss-Legendre grid; Euler ~1, Heun ~2.
   Controls are piecewise constant in time (frozen at t_k for every stage, docs/concepts.md
   section 1), so the higher-order check uses a time-independent kernel.
3. A schedule whose grid changes size at every step (alternating widths, trapezoid rule, linear
   transfer) under ``refine(width=2, depth=2)``, against a Nystrom extension of a fine solve_ivp
   reference evaluated at the final grid's nodes: the error falls at about first order.
4. Resolution independence: basis and neural models evaluated with ``with_schedule`` on
   n = 17, 33, 65, 129 nodes converge (successive differences fall by ~2 with the cells lift,
   ~4 with the linear lift); ``refine`` of a nodal model whose samples come from smooth
   kernels nearly preserves its outputs (interpolating rough random samples cannot).
"""

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from grids import Grid, GridSchedule
from spacetime_nets import (
    FunctionKernel,
    NodalKernel,
    SpaceTimeNet,
    from_resnet,
    integrate,
    to_resnet,
)
from spacetime_nets.steppers import STEPPERS


def observed_order(steps, errors) -> float:
    """Least-squares slope of log(error) against log(dt), dt ~ 1 / steps."""
    return float(np.polyfit(np.log(1.0 / np.asarray(steps)), np.log(errors), 1)[0])


# --------------------------------------------------------------------------- 1. closed form
A_COEF, C_COEF, T_LIN = 2.0, 1.0, 1.0


def linear_kernel() -> FunctionKernel:
    return FunctionKernel(
        lambda t, xi, zeta: (
            A_COEF
            * torch.cos(math.pi * xi[:, 0])[:, None]
            * torch.cos(math.pi * zeta[:, 0])[None, :]
        ),
        lambda t, xi: C_COEF * torch.cos(math.pi * xi[:, 0]),
    )


def linear_exact(xi: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """x(T, xi) for x0 = alpha xi^2 + beta (int_0^1 cos(pi z) z^2 dz = -2 / pi^2)."""
    x0 = alpha[:, None] * xi[None, :] ** 2 + beta[:, None]
    p0 = -2.0 * alpha / math.pi**2
    q0 = A_COEF * p0 + C_COEF
    growth = (2.0 / A_COEF) * (math.exp(A_COEF * T_LIN / 2.0) - 1.0)
    return x0 + np.cos(math.pi * xi)[None, :] * (q0 * growth)[:, None]


def linear_errors(method: str, steps_list) -> list[float]:
    alpha = np.array([1.0, -0.5, 2.0])
    beta = np.array([0.3, 0.0, -1.0])
    errors = []
    for K in steps_list:
        sched = GridSchedule.constant(16, K, T=T_LIN, rule="gauss_legendre")
        xi = sched.grids[0].nodes[:, 0].numpy()
        x0 = torch.tensor(alpha[:, None] * xi[None, :] ** 2 + beta[:, None])
        tr = integrate(
            x0, sched, linear_kernel(), form="inside", activation="identity", method=method
        )
        errors.append(float(np.abs(tr.final.numpy() - linear_exact(xi, alpha, beta)).max()))
    return errors


@pytest.mark.parametrize("method", sorted(STEPPERS))
def test_linear_closed_form_orders(method):
    """Every registered stepper converges at the order its tableau claims."""
    claimed = STEPPERS[method].order
    steps = [8, 16, 32, 64]
    errors = linear_errors(method, steps)
    assert all(e1 < e0 for e0, e1 in zip(errors, errors[1:]))
    order = observed_order(steps, errors)
    assert claimed - 0.3 <= order <= claimed + 0.4, (claimed, order, errors)


def test_linear_closed_form_keeps_the_orthogonal_part():
    """A state orthogonal to cos(pi xi) and with no bias is a fixed point of the flow."""
    kern = FunctionKernel(linear_kernel().w_fn)
    sched = GridSchedule.constant(12, 5, rule="gauss_legendre")
    xi = sched.grids[0].nodes[:, 0]
    x0 = torch.stack([torch.ones_like(xi), torch.cos(2 * math.pi * xi)])
    tr = integrate(x0, sched, kern, form="inside", activation="identity", method="rk4")
    torch.testing.assert_close(tr.final, x0, rtol=0, atol=1e-13)
    # while a component along cos(pi xi) moves
    moved = integrate(
        x0 + torch.cos(math.pi * xi), sched, kern, form="inside", activation="identity"
    )
    assert float((moved.final - x0 - torch.cos(math.pi * xi)).abs().max()) > 0.1


# --------------------------------------------------------------------------- 2. nonlinear
N_FINE = 24


def w_np(xi, zeta):
    return 1.5 * np.sin(np.pi * (xi[:, None] + zeta[None, :])) + 0.5 * xi[:, None] * zeta[None, :]


def b_np(t, xi, time_dependent):
    return (math.cos(2.0 * t) if time_dependent else 1.0) * (xi - 0.5)


def x0_np(xi):
    return np.stack([np.sin(2.0 * xi) + 0.5, 1.0 - xi**2])


def nonlinear_kernel(time_dependent: bool) -> FunctionKernel:
    def w(t, xi, zeta):
        xi, zeta = xi[:, 0], zeta[:, 0]
        return 1.5 * torch.sin(math.pi * (xi[:, None] + zeta[None, :])) + 0.5 * torch.outer(
            xi, zeta
        )

    def b(t, xi):
        return (math.cos(2.0 * t) if time_dependent else 1.0) * (xi[:, 0] - 0.5)

    return FunctionKernel(w, b)


def field_np(form):
    if form == "inside":
        return lambda X, W, c: np.tanh(X) @ W.T + c
    return lambda X, W, c: np.tanh(X @ W.T + c)


def solve_reference(form, T, nodes, weights, targets, time_dependent):
    """solve_ivp (DOP853, rtol 1e-10) of the semi-discrete ODE on ``nodes``, plus the Nystrom
    extension x(T, xi) = x0(xi) + int_0^T f(...)(xi) dt at the ``targets``."""
    n, m = nodes.size, targets.size
    W = w_np(nodes, nodes) * weights[None, :]
    Wt = w_np(targets, nodes) * weights[None, :]
    f = field_np(form)

    def rhs(t, y):
        Y = y.reshape(2, n + m)
        X = Y[:, :n]
        dX = f(X, W, b_np(t, nodes, time_dependent))
        dY = f(X, Wt, b_np(t, targets, time_dependent))  # the same field, read at the targets
        return np.concatenate([dX, dY], axis=1).reshape(-1)

    y0 = np.concatenate([x0_np(nodes), x0_np(targets)], axis=1).reshape(-1)
    sol = solve_ivp(rhs, (0.0, T), y0, method="DOP853", rtol=1e-10, atol=1e-12)
    assert sol.success
    Y = sol.y[:, -1].reshape(2, n + m)
    return Y[:, :n], Y[:, n:]


@pytest.mark.parametrize(
    "form, method, time_dependent, low, high",
    [
        ("inside", "euler", True, 0.8, 1.3),
        ("outside", "euler", True, 0.8, 1.3),
        ("inside", "heun", False, 1.7, 2.4),
        ("outside", "heun", False, 1.7, 2.4),
    ],
)
def test_nonlinear_against_solve_ivp(form, method, time_dependent, low, high):
    T = 1.0
    g = Grid.uniform(N_FINE, (0.0, 1.0), "gauss_legendre")
    nodes, weights = g.nodes[:, 0].numpy(), g.weights.numpy()
    ref, _ = solve_reference(form, T, nodes, weights, nodes[:0], time_dependent)
    steps = [10, 20, 40, 80]
    errors = []
    for K in steps:
        sched = GridSchedule.constant(N_FINE, K, T=T, rule="gauss_legendre")
        x0 = torch.tensor(x0_np(nodes))
        tr = integrate(
            x0,
            sched,
            nonlinear_kernel(time_dependent),
            form=form,
            activation="tanh",
            method=method,
        )
        errors.append(float(np.abs(tr.final.numpy() - ref).max()))
    order = observed_order(steps, errors)
    assert low <= order <= high, (order, errors)
    assert errors[-1] < 0.02


@pytest.mark.parametrize("form", ["inside", "outside"])
def test_grids_changing_size_every_step_converge(form):
    """Widths 9, 5, 9, 5, ... (trapezoid, linear transfer), refined by refine(2, 2)."""
    T = 1.0
    g = Grid.uniform(40, (0.0, 1.0), "gauss_legendre")
    nodes, weights = g.nodes[:, 0].numpy(), g.weights.numpy()
    sched = GridSchedule.from_widths([9, 5] * 4 + [9], T=T, rule="trapezoid")
    assert sched.transfer_kind == "linear"
    errors, dts = [], []
    for _ in range(4):
        assert len(set(sched.widths)) == 2  # the size still changes along the schedule
        xK = sched.grids[-1].nodes[:, 0].numpy()
        _, ref = solve_reference(form, T, nodes, weights, xK, time_dependent=True)
        x0 = torch.tensor(x0_np(sched.grids[0].nodes[:, 0].numpy()))
        tr = integrate(x0, sched, nonlinear_kernel(True), form=form, activation="tanh")
        errors.append(float(np.abs(tr.final.numpy() - ref).max()))
        dts.append(float(sched.dt.max()))
        sched = sched.refine(width=2, depth=2)
    ratios = [e0 / e1 for e0, e1 in zip(errors, errors[1:])]
    assert all(1.7 <= r <= 3.5 for r in ratios), (ratios, errors)
    order = float(np.polyfit(np.log(dts[1:]), np.log(errors[1:]), 1)[0])
    assert 0.8 <= order <= 1.45, (order, errors)


# --------------------------------------------------------------------------- 4. resolution
@pytest.mark.parametrize(
    "kernel, lift, form, min_ratio",
    [
        ("basis", "linear", "inside", 3.0),
        ("basis", "cells", "outside", 1.7),
        ("neural", "cells", "inside", 1.7),
        ("neural", "linear", "bottleneck", 3.0),
    ],
)
def test_resolution_independence(kernel, lift, form, min_ratio):
    """Same steps, n = 17, 33, 65, 129 (trapezoid, constant grids): outputs converge.
    Four cells, so the cell boundaries fall on nodes of every grid."""
    base = GridSchedule.constant(17, 6, T=1.0)
    model = SpaceTimeNet(
        base, 4, 3, kernel=kernel, form=form, activation="tanh", lift=lift, modes=4, seed=3
    ).double()
    x = torch.randn(8, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        outs = [model.with_schedule(GridSchedule.constant(n, 6))(x) for n in (17, 33, 65, 129)]
    diffs = [float((b - a).abs().max()) for a, b in zip(outs, outs[1:])]
    ratios = [d0 / d1 for d0, d1 in zip(diffs, diffs[1:])]
    assert all(r >= min_ratio for r in ratios), (ratios, diffs)
    assert diffs[-1] < 0.05 * float(outs[-1].abs().max())


def smooth_nodal_model(sched: GridSchedule, form: str, act: str) -> SpaceTimeNet:
    """A nodal model whose samples come from smooth kernels (a continuous model, exported)."""
    cont = SpaceTimeNet(
        sched, 4, 3, kernel="basis", form=form, activation=act, lift="linear", modes=3, seed=1
    ).double()
    return from_resnet(to_resnet(cont), sched)


@pytest.mark.parametrize("form, act", [("outside", "relu"), ("inside", "tanh")])
def test_refine_of_a_nodal_model_nearly_preserves_outputs(form, act):
    x = torch.randn(16, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for sched in (
        GridSchedule.moving([17, 25, 21, 17, 25, 21, 17, 25, 21], T=1.0),
        GridSchedule.from_widths([17, 9] * 4 + [17], T=1.0),
    ):
        model = smooth_nodal_model(sched, form, act)
        assert not model.continuous
        with torch.no_grad():
            y = model(x)
            for width, depth in ((2, 1), (1, 2), (2, 2)):
                fine = model.refine(width, depth)
                assert fine.schedule.num_steps == sched.num_steps * depth
                assert fine.kernel.weight[0].dtype == torch.float64
                rel = float((fine(x) - y).norm() / y.norm())
                assert rel < 0.05, (width, depth, rel)


def test_nodal_depth_refinement_repeats_the_step_on_a_constant_grid():
    sched = GridSchedule.constant(7, 3)
    model = SpaceTimeNet(sched, 7, 2, kernel="nodal", form="inside", lift="identity").double()
    same = model.refine(1, 1)
    x = torch.randn(4, 7, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(same(x), model(x), rtol=0, atol=1e-14)
    deep = model.refine(1, 2)
    for k in range(3):
        for j in range(2):
            torch.testing.assert_close(
                deep.kernel.weight[2 * k + j], model.kernel.weight[k], rtol=0, atol=1e-15
            )
            torch.testing.assert_close(
                deep.kernel.bias[2 * k + j], model.kernel.bias[k], rtol=0, atol=1e-15
            )
    no_bias = SpaceTimeNet(
        sched, 7, 2, kernel=_nodal_without_bias(sched), form="inside", lift="identity"
    ).double()
    refined = no_bias.refine(1, 2)
    assert refined.kernel.bias is None
    with torch.no_grad():
        assert float((refined(x) - no_bias(x)).norm() / no_bias(x).norm()) < 0.05


def _nodal_without_bias(sched):
    return NodalKernel(sched, bias=False)
