"""Checks of the step-operator interface ``StepOp``: every kind (``Dense`` from a nodal kernel,
``LowRankOp`` from a basis kernel in factored form, ``ConvOp``, ``SpectralOp``), taken from small
models via ``model.controls()``, has the interface, and each method agrees with an independent
reference: the multiply-add count written out from the model's sizes, the exported module
against the operator itself, a rebuild from its own tensors against the original, and the
control cost of a dense operator against the quadrature sum taken entry by entry in NumPy.
"""

from __future__ import annotations

import math
from functools import cache

import pytest
import torch
from torch import nn

from grids import GridSchedule
from spacetime_nets import SpaceTimeNet
from spacetime_nets.export import ConvLayer, SpectralLayer
from spacetime_nets.kernels import BasisKernel
from spacetime_nets.ops import (
    ConvOp,
    Dense,
    LowRankOp,
    SpectralOp,
    StepOp,
    apply_op,
    op_rebuild,
    op_tensors,
)

F64 = torch.float64
MOVING = [9, 12, 7, 10]  # step 0: G_0 (9 nodes) -> G_1 (12 nodes)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@cache
def case(name: str) -> dict:
    """The operator of step 0 of a small model, its input ``x``, the node count n of the step's
    grid, the multiply-adds written out from the model's sizes, and the module type it exports
    as."""
    if name == "dense":
        m = SpaceTimeNet(GridSchedule.moving(MOVING), 9, 3, kernel="nodal", seed=0)
        x_shape, expect = (4, 9), 12 * 9  # the entries of W [n_1, n_0]
        module = nn.Linear
    elif name == "dense_channels":
        m = SpaceTimeNet(
            GridSchedule.moving(MOVING), 9, 3, kernel="nodal", lift="identity", channels=2, seed=0
        )
        x_shape, expect = (4, 2, 9), (2 * 12) * (2 * 9)  # W [c n_1, c n_0]
        module = nn.Linear
    elif name == "lowrank":
        kern = BasisKernel(modes=4, factored=True, generator=gen(1))
        m = SpaceTimeNet(GridSchedule.moving(MOVING), 9, 3, kernel=kern, lift="identity", seed=0)
        c, A = 1, 4
        x_shape, expect = (4, 9), c * A * (9 + 12) + (c * A) ** 2
        module = nn.Linear
    elif name == "lowrank_channels":
        m = SpaceTimeNet(
            GridSchedule.moving(MOVING),
            9,
            3,
            kernel="basis",
            lift="identity",
            channels=3,
            modes=4,
            seed=0,
        )
        c, A = 3, 4
        x_shape, expect = (4, 3, 9), c * A * (9 + 12) + (c * A) ** 2
        module = nn.Linear
    elif name in ("conv", "conv_periodic"):
        periodic = name == "conv_periodic"
        n = 16 if periodic else 17
        sched = GridSchedule.constant(n, 2, rule="periodic" if periodic else "trapezoid")
        m = SpaceTimeNet(
            sched, None, 1, kernel="conv", lift="identity", readout="function", channels=3,
            radius=0.3, seed=1,
        )  # fmt: skip
        # taps [c, c, k], k = 2 R + 1 (Galerkin taps, the default: |m h| < r + h, R = ceil(r / h)),
        # each at every node
        h = 1.0 / (n if periodic else n - 1)
        R = math.ceil(0.3 / h)
        x_shape, expect = (4, 3, n), 3 * 3 * (2 * R + 1) * n
        module = ConvLayer
    elif name in ("spectral", "spectral_box"):
        periodic = name == "spectral"
        n = 16 if periodic else 17
        sched = GridSchedule.constant(n, 2, rule="periodic" if periodic else "trapezoid")
        m = SpaceTimeNet(
            sched, None, 1, kernel="spectral", lift="identity", readout="function", channels=4,
            modes=4, seed=2,
        )  # fmt: skip
        x_shape, module = (4, 4, n), SpectralLayer
        expect = None  # after the operator is read: its FFT size N
    else:
        raise AssertionError(name)
    m = m.double()
    sm = m.controls()[0]
    op = sm.layers[0]
    if expect is None:  # 4 c^2 modes (complex products) + 2 FFTs 5 c N log2 N + A [c, c] at n
        N = math.prod(op.fft)
        assert N == n if periodic else N >= 2 * (n - 1)
        expect = 4 * 4 * 4 * 4 + 2 * int(5 * 4 * N * math.log2(N)) + 4 * 4 * n
    x = torch.randn(*x_shape, generator=gen(7), dtype=F64)
    return {"op": op, "x": x, "n": m.disc.widths[0], "macs": expect, "module": module, "sm": sm}


KINDS = {
    "dense": Dense,
    "dense_channels": Dense,
    "lowrank": LowRankOp,
    "lowrank_channels": LowRankOp,
    "conv": ConvOp,
    "conv_periodic": ConvOp,
    "spectral": SpectralOp,
    "spectral_box": SpectralOp,
}
NAMES = list(KINDS)


@pytest.mark.parametrize("name", NAMES)
def test_every_kind_is_a_step_op(name):
    op = case(name)["op"]
    assert type(op) is KINDS[name]
    assert isinstance(op, StepOp)


def test_a_bare_pair_is_not_a_step_op():
    W, b = torch.zeros(3, 2), torch.zeros(3)
    assert not isinstance((W, b), StepOp)
    assert isinstance(Dense(W, b), StepOp)


@pytest.mark.parametrize("name", NAMES)
def test_multiply_adds_equal_the_count_from_the_sizes(name):
    c = case(name)
    assert c["op"].multiply_adds(c["n"]) == c["macs"]


@pytest.mark.parametrize("name", NAMES)
def test_the_exported_module_computes_the_operator(name):
    c = case(name)
    op, x = c["op"], c["x"]
    mod = op.to_module()
    assert type(mod) is c["module"]
    if isinstance(mod, nn.Linear) and x.dim() == 3:  # on the flattened state
        got = mod(x.flatten(1)).view(x.shape[0], x.shape[1], -1)
    else:
        got = mod(x)
    ref = op(x)
    assert ref.shape[0] == x.shape[0] and float(ref.detach().abs().max()) > 1e-3
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)
    # the module holds copies: changing the operator's tensors afterwards leaves it alone
    assert all(p.data_ptr() != t.data_ptr() for p in mod.parameters() for t in op.tensors())


@pytest.mark.parametrize("name", NAMES)
def test_rebuild_from_its_tensors_gives_the_same_operator(name):
    c = case(name)
    op, x = c["op"], c["x"]
    ts = op.tensors()
    assert ts and all(isinstance(t, torch.Tensor) for t in ts)
    copies = [t.detach().clone() for t in ts]
    new = op.rebuild(copies)
    assert type(new) is type(op) and new is not op
    assert all(a is b for a, b in zip(new.tensors(), copies))
    torch.testing.assert_close(new(x), op(x), rtol=1e-6, atol=1e-6)
    # other tensors give another operator: rebuild uses them
    doubled = op.rebuild([2.0 * t.detach() for t in ts])
    assert not torch.allclose(doubled(x), op(x))


@pytest.mark.parametrize("name", ["dense", "dense_channels"])
def test_dense_control_norm_is_the_quadrature_sum(name):
    """sum_ij w_out_i w_in_j (W_ij / w_in_j)^2 + sum_i w_out_i beta_i^2 entry by entry, the
    grid weights repeated per channel (channel-major blocks)."""
    c = case(name)
    op, (w_out, w_in) = c["op"], c["sm"].grids[0]
    W, b = (t.detach().numpy() for t in op)
    wo, wi = w_out.numpy(), w_in.numpy()
    ch = W.shape[0] // wo.size
    assert ch == (2 if name == "dense_channels" else 1) and wo.size == 12 and wi.size == 9
    ref = 0.0
    for i in range(W.shape[0]):
        for j in range(W.shape[1]):
            ref += wo[i % wo.size] * wi[j % wi.size] * (W[i, j] / wi[j % wi.size]) ** 2
        ref += wo[i % wo.size] * b[i] ** 2
    assert ref > 1e-3
    got = op.control_norm_sq(w_out, w_in)
    assert got.dim() == 0
    assert float(got.detach()) == pytest.approx(ref, rel=1e-12)


def test_dense_unpacks_indexes_and_is_built_as_a_pair():
    W = torch.randn(3, 2, generator=gen(0), dtype=F64)
    b = torch.randn(3, generator=gen(1), dtype=F64)
    op = Dense(W, b)
    W2, b2 = op
    assert W2 is W and b2 is b and op.W is W and op.b is b
    assert op[0] is W and op[1] is b and len(op) == 2
    assert op.export_entries() == 6


def test_a_bare_pair_is_converted_once_by_the_helpers():
    """``apply_op``, ``op_tensors`` and ``op_rebuild`` take a ``(W, b)`` pair for a Dense."""
    W = torch.randn(6, 4, generator=gen(2), dtype=F64)
    b = torch.randn(6, generator=gen(3), dtype=F64)
    x = torch.randn(5, 2, 2, generator=gen(4), dtype=F64)
    ref = (x.flatten(1) @ W.T + b).view(5, 2, 3)
    torch.testing.assert_close(apply_op((W, b), x), ref)
    torch.testing.assert_close(apply_op(Dense(W, b), x), ref)
    assert all(a is t for a, t in zip(op_tensors((W, b)), (W, b)))
    new = op_rebuild((W, b), [2 * W, 2 * b])
    assert type(new) is Dense
    torch.testing.assert_close(new(x), 2 * ref)


def test_the_model_count_is_the_sum_of_the_operators():
    """``integrate``'s multiply-add stats add up ``op.multiply_adds(n_k)`` over the steps."""
    from spacetime_nets.integrate import multiply_adds

    sched = GridSchedule.constant(17, 2)
    model = SpaceTimeNet(
        sched, None, 1, kernel="conv", lift="identity", readout="function", channels=3,
        radius=0.3, seed=1,
    ).double()  # fmt: skip
    mats = model.controls()  # Euler on a constant schedule: one stage, no transfers
    want = 3 * sum(op.multiply_adds(17) for sm in mats for op in sm.layers)
    assert multiply_adds(model.disc, model.form, model.method, 3, mats) == want
