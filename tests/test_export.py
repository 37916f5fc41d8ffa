"""Checks of the export of space-time networks to plain variable-width ResNets, and back.

``to_resnet(model)`` must compute the same function as ``model`` (1e-12 in float64, 1e-5 in
float32) on moving 1-D schedules and 2-D hourglass / pyramid schedules, for every form, every
kernel type (nodal, basis, neural, a FunctionKernel), every lift, every stepping method and
every transfer kind. The exported module is compared with a ResNet loop written here from the
kernel's matrices, transfers built here from their definitions (``numpy.interp``, a hand
bilinear on 2-D grids, the conservative D^-1 L^T D), step sizes and the lift / readout, and it
survives ``state_dict`` round trips, whole-module pickling and ``torch.export``.
``from_resnet`` must reproduce the exported function as a nodal model, and refuse modules or
schedules that do not fit.
"""

import math

import numpy as np
import pytest
import torch

from grids import TRANSFER_KINDS, GridSchedule
from spacetime_nets import (
    FORMS,
    METHODS,
    FunctionKernel,
    NeuralODE,
    SpaceTimeNet,
    VariableWidthResNet,
    from_resnet,
    to_resnet,
)

BOX = [(0.0, 1.0), (0.0, 2.0)]


LIFTS = ("cells", "linear", "identity")
KERNELS = ("nodal", "basis", "neural", "function")


def interp_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``[n_dst, n_src]``: piecewise linear interpolation from nodes ``src`` to ``dst``,
    constant outside the source range (``numpy.interp`` of each unit vector)."""
    return np.stack([np.interp(dst, src, e) for e in np.eye(src.size)], axis=1)


def transfer_ref(g_in, g_out, kind: str = "linear") -> torch.Tensor:
    """Pi from ``g_in`` to ``g_out``, by definition. ``linear``: on 1-D grids numpy.interp; on
    2-D grids the bilinear weight of source node (x_i, y_j) at target (x, y) is
    hat_i(x) * hat_j(y) (hats: the 1-D interpolation weights). ``l2``: D_out^{-1} L^T D_in
    with L the linear interpolation from g_out to g_in and D the quadrature weights."""
    if kind == "l2":
        L = transfer_ref(g_out, g_in, "linear").numpy()  # [n_in, n_out]
        w_in, w_out = g_in.weights.numpy(), g_out.weights.numpy()
        return torch.from_numpy(L.T * w_in[None, :] / w_out[:, None])
    assert kind == "linear", kind
    src, dst = g_in.nodes.numpy(), g_out.nodes.numpy()
    if src.shape[1] == 1:
        return torch.from_numpy(interp_matrix(src[:, 0], dst[:, 0]))
    xs, ys = (np.unique(src[:, a]) for a in (0, 1))
    hat_x = interp_matrix(xs, dst[:, 0])  # [n_dst, len(xs)]
    hat_y = interp_matrix(ys, dst[:, 1])
    P = np.zeros((dst.shape[0], src.shape[0]))
    for j, (x, y) in enumerate(src):
        P[:, j] = hat_x[:, np.searchsorted(xs, x)] * hat_y[:, np.searchsorted(ys, y)]
    return torch.from_numpy(P)


def function_kernel(shift: float = 0.0) -> FunctionKernel:
    """A smooth, time-dependent analytic kernel that works in any dimension."""

    def w(t, xi, zeta):
        return torch.cos(xi.sum(1)[:, None] - 2.0 * zeta.sum(1)[None, :] + shift) * (1.0 + 0.5 * t)

    def b(t, xi):
        return torch.sin(3.0 * xi.sum(1) + shift) * math.exp(-t)

    return FunctionKernel(w, b)


def kernels_for(kind: str, form: str):
    """(kernel, kernel2) arguments of SpaceTimeNet for a kernel kind."""
    if kind == "function":
        return function_kernel(), (function_kernel(0.7) if form == "bottleneck" else None)
    return kind, None


def schedule_1d(transfer_kind: str, seed: int) -> GridSchedule:
    """Even seeds: drifting nodes with random varying widths (``moving``); odd seeds: uniform
    grids of random widths (``from_widths``)."""
    rng = np.random.default_rng(seed)
    widths = [int(v) for v in rng.integers(3, 10, size=5)]
    if seed % 2 == 0:
        widths = [w + 2 for w in widths]  # the drift needs a few nodes to move
        return GridSchedule.moving(widths, T=1.3, transfer_kind=transfer_kind)
    if len(set(widths)) == 1:
        widths[-1] += 1
    return GridSchedule.from_widths(widths, T=0.9, transfer_kind=transfer_kind)


def schedule_2d(transfer_kind: str, seed: int) -> GridSchedule:
    """Even seeds: hourglass; odd seeds: pyramid, on the box [0, 1] x [0, 2]."""
    if seed % 2 == 0:
        return GridSchedule.hourglass((5, 4), (3, 3), 4, domain=BOX, transfer_kind=transfer_kind)
    return GridSchedule.pyramid((7, 5), (3, 3), 4, domain=BOX, transfer_kind=transfer_kind)


def build(schedule, kind, form, method, lift, dtype, in_features=4, seed=0):
    kernel, kernel2 = kernels_for(kind, form)
    if lift == "identity":
        in_features = schedule.widths[0]
    model = SpaceTimeNet(
        schedule,
        in_features,
        3,
        kernel=kernel,
        kernel2=kernel2,
        form=form,
        activation="tanh",
        lift=lift,
        method=method,
        modes=None if kind == "nodal" else 3,  # a nodal kernel reads no modes
        seed=seed,
    )
    return model.to(dtype)


def latin_square():
    """(method, transfer, lift) with every (method, lift) and (transfer, lift) pair once."""
    for i, method in enumerate(METHODS):
        for j, tk in enumerate(TRANSFER_KINDS):
            yield method, tk, LIFTS[(i + j) % 3]


def assert_export_matches(model, x, atol):
    with torch.no_grad():
        expected = model(x)
        got = to_resnet(model)(x)
    assert got.shape == expected.shape
    assert got.dtype == expected.dtype
    torch.testing.assert_close(got, expected, rtol=0, atol=atol)
    # not a trivially constant network
    assert expected.std() > 1e-3


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kind", KERNELS)
def test_export_equivalence_1d_moving(kind, form):
    g = torch.Generator().manual_seed(3)
    for n, (method, tk, lift) in enumerate(latin_square()):
        sched = schedule_1d(tk, seed=n)
        assert not sched.is_constant()
        for dtype, atol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
            model = build(sched, kind, form, method, lift, dtype, seed=n)
            x = torch.randn(5, model.in_features, generator=g, dtype=dtype)
            assert_export_matches(model, x, atol)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kind", KERNELS)
def test_export_equivalence_2d(kind, form):
    g = torch.Generator().manual_seed(4)
    for n, (method, tk, lift) in enumerate(latin_square()):
        sched = schedule_2d(tk, seed=n)
        for dtype, atol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
            model = build(sched, kind, form, method, lift, dtype, in_features=16, seed=n)
            x = torch.randn(4, model.in_features, generator=g, dtype=dtype)
            assert_export_matches(model, x, atol)


def test_export_structure_is_plain_resnet():
    sched = GridSchedule.moving([6, 9, 5, 7, 8], T=1.0)
    model = build(sched, "basis", "outside", "euler", "linear", torch.float64)
    net = to_resnet(model)
    assert isinstance(net, VariableWidthResNet)
    assert net.widths == sched.widths
    assert net.lift.in_features == 4 and net.head.out_features == 3
    for k, block in enumerate(net.blocks):
        (lin,) = block.layers
        assert isinstance(lin, torch.nn.Linear)
        assert (lin.in_features, lin.out_features) == (sched.widths[k], sched.widths[k + 1])
        assert block.dt == pytest.approx(float(sched.dt[k]), abs=1e-15)
        assert block.has_shortcut
        Pi = transfer_ref(sched.grids[k], sched.grids[k + 1])
        torch.testing.assert_close(block.shortcut, Pi, rtol=0, atol=1e-15)
    # nothing of the library is a submodule: only torch.nn building blocks
    for mod in net.modules():
        assert mod.__class__.__module__.startswith(("torch.", "spacetime_nets.export"))
    # a constant grid has identity shortcuts (no matrix stored)
    const = build(GridSchedule.constant(5, 3), "basis", "inside", "euler", "cells", torch.float64)
    assert not any(b.has_shortcut for b in to_resnet(const).blocks)
    # 2-D: the shortcuts are the bilinear interpolation between the tensor grids
    for sched in (schedule_2d("linear", 0), schedule_2d("linear", 1)):
        net = to_resnet(build(sched, "basis", "inside", "euler", "linear", torch.float64))
        for k, block in enumerate(net.blocks):
            Pi = transfer_ref(sched.grids[k], sched.grids[k + 1])
            if block.has_shortcut:
                torch.testing.assert_close(block.shortcut, Pi, rtol=0, atol=1e-15)
            else:  # the same grid: an identity shortcut
                torch.testing.assert_close(Pi, torch.eye(sched.widths[k], dtype=Pi.dtype))


def test_matches_hand_built_resnet_outside_relu_linear_lift():
    """X <- Pi_k X + dt_k relu(X W_k^T + beta_k), written with plain torch ops."""
    sched = GridSchedule.moving([7, 10, 6, 9, 8, 11], T=1.7)
    model = SpaceTimeNet(
        sched, 4, 3, kernel="nodal", form="outside", activation="relu", lift="linear", seed=5
    ).double()
    with torch.no_grad():
        model.lift_bias.normal_(generator=torch.Generator().manual_seed(0))
        model.readout_bias.normal_(generator=torch.Generator().manual_seed(1))
    x = torch.randn(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        X = x @ model.lift_weight.T + model.lift_bias
        for k in range(sched.num_steps):
            W, beta = model.kernel.weight[k], model.kernel.bias[k]
            Pi = transfer_ref(sched.grids[k], sched.grids[k + 1])
            X = X @ Pi.T + float(sched.dt[k]) * torch.relu(X @ W.T + beta)
        wK = sched.grids[-1].weights
        ref = X @ (model.readout_values * wK).T + model.readout_bias
        torch.testing.assert_close(model(x), ref, rtol=0, atol=1e-12)
        torch.testing.assert_close(to_resnet(model)(x), ref, rtol=0, atol=1e-12)


def test_matches_hand_built_resnet_inside_tanh_cells_lift():
    """Cells lift written from the node positions: X^0_i = x[floor(xi_i * in_features)]."""
    sched = GridSchedule.moving([9, 6, 11, 7], T=1.0, transfer_kind="l2")
    n_in = 5
    model = SpaceTimeNet(
        sched, n_in, 2, kernel="nodal", form="inside", activation="tanh", lift="cells", seed=6
    ).double()
    x = torch.randn(4, n_in, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    nodes0 = sched.grids[0].nodes[:, 0].tolist()
    cell = [min(int(math.floor(v * n_in)), n_in - 1) for v in nodes0]
    with torch.no_grad():
        X = x[:, cell]
        for k in range(sched.num_steps):
            W, beta = model.kernel.weight[k], model.kernel.bias[k]
            Pi = transfer_ref(sched.grids[k], sched.grids[k + 1], "l2")
            X = X @ Pi.T + float(sched.dt[k]) * (torch.tanh(X) @ W.T + beta)
        ref = X @ (model.readout_values * sched.grids[-1].weights).T + model.readout_bias
        torch.testing.assert_close(model(x), ref, rtol=0, atol=1e-12)
        torch.testing.assert_close(to_resnet(model)(x), ref, rtol=0, atol=1e-12)


def test_neural_ode_export():
    x = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for form in FORMS:
        for kw in ({"out_features": 2}, {"augment": 2}, {"out_features": 4, "augment": 1}):
            model = NeuralODE(3, T=1.5, steps=6, form=form, seed=1, **kw).double()
            with torch.no_grad():
                torch.testing.assert_close(to_resnet(model)(x), model(x), rtol=0, atol=1e-12)


def test_state_dict_round_trip(tmp_path):
    sched = GridSchedule.moving([6, 9, 5, 7], T=1.0, transfer_kind="l2")
    x = torch.randn(4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    model = build(sched, "neural", "inside", "heun", "linear", torch.float64, seed=1)
    net = to_resnet(model)
    torch.save(net.state_dict(), tmp_path / "resnet.pt")
    other = to_resnet(build(sched, "neural", "inside", "heun", "linear", torch.float64, seed=2))
    with torch.no_grad():
        expected = model(x)
        assert (other(x) - expected).abs().max() > 1e-3  # a different network before loading
        other.load_state_dict(torch.load(tmp_path / "resnet.pt"))
        torch.testing.assert_close(other(x), expected, rtol=0, atol=1e-12)


def test_whole_module_save_and_load(tmp_path):
    sched = GridSchedule.hourglass((5, 4), (3, 3), 4, domain=BOX)
    x = torch.randn(3, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    model = build(sched, "basis", "bottleneck", "rk4", "cells", torch.float64, in_features=16)
    torch.save(to_resnet(model), tmp_path / "resnet_module.pt")
    loaded = torch.load(tmp_path / "resnet_module.pt", weights_only=False)
    assert isinstance(loaded, VariableWidthResNet)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=1e-12)


@pytest.mark.slow
def test_torch_export_program_matches():
    sched = GridSchedule.moving([6, 9, 5, 7], T=1.0)
    x = torch.randn(4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    model = build(sched, "nodal", "outside", "euler", "linear", torch.float64)
    net = to_resnet(model).eval()
    program = torch.export.export(net, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x), rtol=0, atol=1e-12)


def test_from_resnet_reproduces_nodal_model():
    sched = GridSchedule.moving([6, 9, 5, 7, 8], T=1.2)
    x = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for form, act in (("outside", "relu"), ("inside", "tanh"), ("outside", "leaky_relu")):
        model = SpaceTimeNet(
            sched, 4, 3, kernel="nodal", form=form, activation=act, lift="linear", seed=1
        ).double()
        back = from_resnet(to_resnet(model), sched)
        assert isinstance(back, SpaceTimeNet) and not back.continuous
        assert back.form == form and back.activation_name == act
        for k in range(sched.num_steps):
            torch.testing.assert_close(back.kernel.weight[k], model.kernel.weight[k])
        with torch.no_grad():
            torch.testing.assert_close(back(x), model(x), rtol=0, atol=1e-12)


def test_from_resnet_imports_continuous_model_as_nodal():
    sched = GridSchedule.from_widths([9, 5, 9, 7], T=1.0, transfer_kind="nearest")
    x = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    model = build(sched, "basis", "inside", "euler", "cells", torch.float64)
    assert model.continuous
    back = from_resnet(to_resnet(model), sched)
    assert not back.continuous
    with torch.no_grad():
        torch.testing.assert_close(back(x), model(x), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="nodal"):
        back.with_schedule(sched)


def test_from_resnet_rejects_what_does_not_fit():
    sched = GridSchedule.moving([6, 9, 5, 7], T=1.0)
    net = to_resnet(build(sched, "nodal", "outside", "euler", "linear", torch.float64))
    with pytest.raises(ValueError, match="steps"):
        from_resnet(net, GridSchedule.moving([6, 9, 5], T=1.0))
    with pytest.raises(ValueError, match="widths"):
        from_resnet(net, GridSchedule.moving([6, 9, 5, 8], T=1.0))
    with pytest.raises(ValueError, match="dt"):
        from_resnet(net, GridSchedule.moving([6, 9, 5, 7], T=2.0))
    with pytest.raises(ValueError, match="transfer"):
        from_resnet(net, GridSchedule.moving([6, 9, 5, 7], T=1.0, transfer_kind="nearest"))
    with pytest.raises(ValueError, match="VariableWidthResNet"):
        from_resnet(torch.nn.Linear(2, 2), sched)
    heun = to_resnet(build(sched, "nodal", "outside", "heun", "linear", torch.float64))
    with pytest.raises(ValueError, match="euler"):
        from_resnet(heun, sched)
    bottle = to_resnet(build(sched, "nodal", "bottleneck", "euler", "linear", torch.float64))
    with pytest.raises(ValueError, match="outside/inside"):
        from_resnet(bottle, sched)
    with pytest.raises(ValueError, match="SpaceTimeNet or NeuralODE"):
        to_resnet(torch.nn.Linear(2, 2))


@pytest.mark.parametrize(
    ("readout", "keys"),
    [
        ("quadrature", ["linear.weight", "linear.bias"]),
        ("mean", ["pool", "linear.weight", "linear.bias"]),
        ("function", ["linear.weight", "linear.bias"]),
    ],
)
def test_channel_heads_keep_their_kind_and_state_and_only_two_kinds_come_back(readout, keys):
    from spacetime_nets.export import ChannelHead

    sched = GridSchedule.moving([9, 12, 7, 10], T=1.1)
    m = SpaceTimeNet(
        sched, None, 3, kernel="nodal", form="inside", activation="tanh", lift="identity",
        readout=readout, channels=[2, 2, 4, 3], in_channels=2, seed=0,
    ).double()  # fmt: skip
    res = to_resnet(m)
    assert isinstance(res.head, ChannelHead) and res.head.kind == readout
    assert sorted(res.head.state_dict()) == sorted(keys)
    x = torch.randn(3, 2, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(res(x), m(x), rtol=1e-12, atol=1e-12)
        if readout == "function":
            with pytest.raises(ValueError, match="with quadrature or mean heads come back"):
                from_resnet(res, sched)
        else:
            torch.testing.assert_close(from_resnet(res, sched)(x), m(x), rtol=1e-12, atol=1e-12)


def test_a_channel_head_of_another_kind_is_refused():
    from spacetime_nets.export import ChannelHead

    with pytest.raises(
        ValueError, match=r"^kind: expected one of quadrature, mean, function; got 'max'"
    ):
        ChannelHead("max", torch.nn.Linear(3, 2))


def test_export_refuses_a_network_above_the_memory_bound(monkeypatch):
    """The bound counts the dense matrices the export would build: here 4 factored basis
    operators of 64 x 64 and 4 shortcuts, 8 bytes each in float64."""
    import spacetime_nets.export as export_module

    sched = GridSchedule.hourglass(64, 40, 4)
    model = SpaceTimeNet(sched, 64, 2, kernel="basis", modes=4, lift="identity").double()
    assert all(type(sm.layers[0]).__name__ == "LowRankOp" for sm in model.controls())
    w = sched.widths
    need = 8 * sum(2 * w[k] * w[k + 1] for k in range(4))
    monkeypatch.setattr(export_module, "MAX_EXPORT_BYTES", need - 1)
    with pytest.raises(ValueError, match=r"^model: the exported ResNet would hold .*GiB"):
        to_resnet(model)
    monkeypatch.setattr(export_module, "MAX_EXPORT_BYTES", need)
    x = torch.randn(3, 64, dtype=torch.float64)
    torch.testing.assert_close(to_resnet(model)(x), model(x))
