"""Checks that dtype and device changes reach every tensor of a model.

``.to(torch.float64)`` must convert every floating parameter and buffer (integer index buffers
keep their dtype), give float64-exact grids and transfers (the schedule's own values, not
widened float32 roundings), and a forward pass must produce and leave everything in the
model's dtype and device. On the ``meta`` device (shapes, no values) every model kind runs its
forward, backward and control penalty: the proof without a GPU that none of them reads a value
back to the host or mixes a host tensor in (both raise there). The ``cuda`` test (skipped
without a GPU) moves models to the GPU and checks every tensor, the outputs and the export
equivalence there.
"""

import pytest
import torch

from grids import GridSchedule
from spacetime_nets import FunctionKernel, NeuralODE, SpaceTimeNet, to_resnet
from spacetime_nets.objectives import l2_control

BOX = [(0.0, 1.0), (0.0, 2.0)]


def function_kernel(shift=0.0) -> FunctionKernel:
    return FunctionKernel(
        lambda t, xi, zeta: torch.cos(xi.sum(1)[:, None] - zeta.sum(1)[None, :] + shift),
        lambda t, xi: torch.sin(xi.sum(1)) * (1.0 - t),
    )


def all_models():
    """A varied set: every kernel type, the three forms, 1-D and 2-D, three methods."""
    moving = GridSchedule.moving([6, 9, 5, 7], T=1.0, transfer_kind="l2")
    box = GridSchedule.hourglass((5, 4), (3, 3), 4, domain=BOX)
    return {
        "nodal-outside-cells": SpaceTimeNet(moving, 4, 2, kernel="nodal", seed=0),
        "nodal-bottleneck-linear": SpaceTimeNet(
            moving, 4, 2, kernel="nodal", form="bottleneck", lift="linear", hidden_width=3
        ),
        "basis-inside-heun-2d": SpaceTimeNet(
            box, 16, 3, kernel="basis", form="inside", activation="tanh", method="heun", modes=3
        ),
        "neural-outside-rk4": SpaceTimeNet(
            moving, 4, 2, kernel="neural", activation="softplus", lift="linear", method="rk4"
        ),
        "function-bottleneck-2d": SpaceTimeNet(
            box,
            20,
            2,
            kernel=function_kernel(),
            kernel2=function_kernel(0.5),
            form="bottleneck",
            lift="identity",
        ),
        "neural-ode": NeuralODE(3, steps=4, out_features=2, augment=1, fixed_readout=True),
    }


def tensors(model: torch.nn.Module):
    yield from model.named_parameters()
    yield from model.named_buffers()


def assert_everything(model, device: torch.device, dtype: torch.dtype):
    seen = 0
    for name, t in tensors(model):
        seen += 1
        assert t.device == device, (name, t.device)
        if t.is_floating_point():
            assert t.dtype == dtype, (name, t.dtype)
        else:
            assert t.dtype == torch.long, (name, t.dtype)
    assert seen > 3
    # the step matrices the flow will use
    for sm in model.controls():
        for W, b in sm.layers:
            assert W.dtype == dtype and b.dtype == dtype
            assert W.device == device and b.device == device


def inputs(model, dtype, device="cpu"):
    n = model.in_features if isinstance(model, SpaceTimeNet) else model.dim
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, n, generator=g, dtype=dtype).to(device)


@pytest.mark.parametrize("name", list(all_models()))
def test_to_float64_converts_every_tensor_and_forward_keeps_it(name):
    model = all_models()[name]
    assert_everything(model, torch.device("cpu"), torch.float32)
    model = model.to(torch.float64)
    assert_everything(model, torch.device("cpu"), torch.float64)
    x = inputs(model, torch.float64)
    y = model(x)
    assert y.dtype == torch.float64
    tr = model.trajectory(x)
    assert all(s.dtype == torch.float64 for s in tr.states)
    assert_everything(model, torch.device("cpu"), torch.float64)  # nothing changed by forward
    net = to_resnet(model)
    assert all(t.dtype == torch.float64 for _, t in tensors(net))
    with torch.no_grad():
        torch.testing.assert_close(net(x), y, rtol=0, atol=1e-12)
    back = model.to(torch.float32)
    assert_everything(back, torch.device("cpu"), torch.float32)
    assert back(x.float()).dtype == torch.float32


def test_float64_grids_are_exact_after_building_in_float32():
    sched = GridSchedule.moving([9, 6, 11, 7], T=1.0, transfer_kind="l2")
    model = SpaceTimeNet(sched, 5, 2, kernel="basis", modes=4).to(torch.float64)
    for k in range(sched.num_steps + 1):
        nodes, weights = model.disc.grid(k)
        assert torch.equal(nodes, sched.grids[k].nodes)
        assert torch.equal(weights, sched.grids[k].weights)
    for k in range(sched.num_steps):
        assert torch.equal(model.disc.transfer_matrix(k), sched.transfer(k).matrix())
    # the same holds after a round trip through float32
    again = model.float().double()
    assert torch.equal(again.disc.grid(2)[1], sched.grids[2].weights)


def test_float32_and_float64_models_agree_to_float32_accuracy():
    sched = GridSchedule.moving([6, 9, 5, 7], T=1.0)
    single = SpaceTimeNet(sched, 4, 2, kernel="neural", form="inside", activation="tanh", seed=1)
    double = SpaceTimeNet(sched, 4, 2, kernel="neural", form="inside", activation="tanh", seed=1)
    double = double.double()
    x = inputs(double, torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(single(x.float()).double(), double(x), rtol=0, atol=1e-5)


def accelerator_models():
    """all_models() and the models with channels: stationary kernels on periodic grids,
    factored basis kernels, checkpointed steps."""
    periodic = GridSchedule.constant(16, 3, rule="periodic")
    moving = GridSchedule.hourglass(16, 8, 4)
    return {
        **all_models(),
        "conv-channels": SpaceTimeNet(
            periodic, 16, 2, kernel="conv", channels=3, radius=0.2, seed=0
        ),
        "spectral-channels": SpaceTimeNet(
            periodic, 16, 2, kernel="spectral", modes=3, channels=3, seed=0
        ),
        "basis-channels-checkpoint": SpaceTimeNet(
            moving, 16, 2, kernel="basis", modes=3, channels=2, checkpoint=2, seed=0
        ),
    }


@pytest.mark.parametrize("name", list(accelerator_models()))
def test_forward_backward_and_penalty_never_read_values_back(name):
    """GPU-ready without a GPU: on the meta device a host read (``.item()``, ``bool(t)``) or a
    host tensor mixed into the computation raises, so the whole training computation of each
    model kind runs there and gives the CPU run's shapes and dtypes."""
    model = accelerator_models()[name]
    x = inputs(model, torch.float32)
    y_cpu = model(x)
    meta = model.to("meta")
    y = meta(x.to("meta"))
    assert y.device.type == "meta" and y.shape == y_cpu.shape and y.dtype == y_cpu.dtype
    (y.sum() + l2_control(meta)).backward()
    for pname, prm in meta.named_parameters():
        assert prm.grad is not None and prm.grad.device.type == "meta", pname
        assert prm.grad.shape == prm.shape, pname


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", list(all_models()))
def test_cuda_moves_everything_and_export_matches(name):
    cuda = torch.device("cuda", torch.cuda.current_device())
    cpu_model = all_models()[name].double()
    model = all_models()[name].double()
    model.load_state_dict(cpu_model.state_dict())
    model = model.to(cuda)
    assert_everything(model, cuda, torch.float64)
    x = inputs(model, torch.float64)
    y = model(x.to(cuda))
    assert y.device == cuda
    assert all(s.device == cuda for s in model.trajectory(x.to(cuda)).states)
    assert_everything(model, cuda, torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(y.cpu(), cpu_model(x), rtol=0, atol=1e-10)
        net = to_resnet(model)
        assert all(t.device == cuda for _, t in tensors(net))
        torch.testing.assert_close(net(x.to(cuda)), y, rtol=0, atol=1e-12)
    single = model.float()
    assert_everything(single, cuda, torch.float32)
    assert single(x.float().to(cuda)).device == cuda
