"""Channel normalisation by quadrature (``SpaceTimeNet(norm=...)``) and the MLP head on the
channel means (``head_hidden=``): NumPy references with hand-made quadrature weights,
resolution consistency, steppers and checkpointing, export, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from grids import Grid, GridSchedule
from spacetime_nets import SpaceTimeNet, to_resnet
from spacetime_nets.export import QuadratureNorm, from_resnet
from spacetime_nets.fields import ChannelNorm, quadrature_norm, quadrature_stats
from spacetime_nets.kernels import NodalKernel

F64 = torch.float64
EPS = 1e-5


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- NumPy references
def np_trapezoid_weights(nodes: np.ndarray) -> np.ndarray:
    """Tensor trapezoid weights of a uniform box grid from its nodes ``[n, d]``, by hand: per
    axis the spacing h, halved at the two end coordinates; multiplied over the axes."""
    w = np.ones(nodes.shape[0])
    for a in range(nodes.shape[1]):
        u = np.unique(nodes[:, a])
        h = u[1] - u[0]
        end = np.isclose(nodes[:, a], u[0]) | np.isclose(nodes[:, a], u[-1])
        w *= np.where(end, h / 2, h)
    return w


def np_norm(z, w, vol, gamma, beta, groups, eps=EPS):
    """(N(z), mu [B, g], s^2 [B, g]) with mean and variance (1/|Omega|) sum_j w_j (.)_j over
    each group's channels (averaged over them)."""
    B, c, n = z.shape
    zg = z.reshape(B, groups, c // groups, n)
    mu = np.einsum("bgcn,n->bg", zg, w) / vol / (c // groups)
    d = zg - mu[..., None, None]
    var = np.einsum("bgcn,n->bg", d * d, w) / vol / (c // groups)
    y = (d / np.sqrt(var + eps)[..., None, None]).reshape(B, c, n)
    return gamma[:, None] * y + beta[:, None], mu, var


def np_gelu(z: np.ndarray) -> np.ndarray:
    return 0.5 * z * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0)))


def np_mean_head(model: SpaceTimeNet, X: np.ndarray, w: np.ndarray, vol: float) -> np.ndarray:
    """Channel means (1/|Omega|) sum_j w_j X_j, then Linear -> GELU -> Linear (or Linear)."""
    m = (X * w).sum(-1) / vol
    if model.head_hidden is not None:
        H, hb = model.head_weight.detach().numpy(), model.head_bias.detach().numpy()
        m = np_gelu(m @ H.T + hb)
    Q, q = model.readout_weight.detach().numpy(), model.readout_bias.detach().numpy()
    return m @ Q.T + q


def randomise_norm(model: SpaceTimeNet, seed: int = 5) -> None:
    """gamma ~ 1 + 0.5 N(0, 1), beta ~ 0.5 N(0, 1), so that the test sees them."""
    g = gen(seed)
    with torch.no_grad():
        for p in model.norm_layer.gamma:
            p.copy_(1 + 0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        for p in model.norm_layer.beta:
            p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def smooth_input(nodes: torch.Tensor) -> torch.Tensor:
    """Two smooth periodic functions on [0, 1]: ``[n, 1] -> [2, n]``."""
    x = nodes[:, 0]
    return torch.stack(
        [
            torch.sin(2 * math.pi * x) + 0.5 * torch.cos(6 * math.pi * x),
            torch.exp(torch.cos(2 * math.pi * (x - 0.4))),
        ]
    )


# --------------------------------------------------------------------------- the statistics
GRIDS = [
    Grid.uniform(13, (0.0, 2.0)),
    Grid.uniform((9, 7), ((0.0, 1.0), (-1.0, 2.0))),
]


@pytest.mark.parametrize("grid", GRIDS, ids=["1d", "2d"])
@pytest.mark.parametrize("groups", [6, 3, 1])
def test_norm_statistics_match_numpy_with_hand_trapezoid_weights(grid, groups):
    nodes = grid.nodes.double().numpy()
    w = np_trapezoid_weights(nodes)
    vol = math.prod(b - a for a, b in grid.domain.bounds)
    z = torch.randn(3, 6, grid.n, generator=gen(1), dtype=F64) * 2.0 + 0.7
    gamma = torch.randn(6, generator=gen(2), dtype=F64)
    beta = torch.randn(6, generator=gen(3), dtype=F64)
    ref, mu_ref, var_ref = np_norm(z.numpy(), w, vol, gamma.numpy(), beta.numpy(), groups)
    # the weights the model uses on this grid: omega / |Omega|, with omega the trapezoid rule
    kind = "instance" if groups == 6 else "group"
    cn = ChannelNorm(kind, [6], None if kind == "instance" else groups).double()
    op = cn.step_op(0.0, grid.weights.double())
    np.testing.assert_allclose(op.p.numpy(), w / vol, rtol=1e-13)
    assert op.groups == groups
    mu, var = quadrature_stats(z, op.p, groups)
    np.testing.assert_allclose(mu.numpy(), mu_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(var.numpy(), var_ref, rtol=1e-12)
    y = quadrature_norm(z, op.p, gamma, beta, groups)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-11, atol=1e-12)
    # the normalised field has mean beta-weighted and unit variance (gamma = 1, beta = 0)
    y1 = quadrature_norm(z, op.p, torch.ones(6, dtype=F64), torch.zeros(6, dtype=F64), groups)
    m1, v1 = quadrature_stats(y1, op.p, groups)
    np.testing.assert_allclose(m1.numpy(), 0.0, atol=1e-12)
    np.testing.assert_allclose(v1.numpy(), var_ref / (var_ref + EPS), rtol=1e-10)


@pytest.mark.parametrize("dim", [1, 2])
def test_norm_statistics_of_a_smooth_function_agree_under_refinement_at_order_two(dim):
    """mu and s^2 of one smooth function on G and on its 2x refinements (trapezoid): they
    are quadratures of integrals, so they change by O(h^2) (observed order close to 2)."""
    sizes = [9, 17, 33, 65]
    stats = []
    for n in sizes:
        domain = ((0.0, 1.0),) * dim
        g = Grid.uniform((n,) * dim if dim > 1 else n, domain if dim > 1 else (0.0, 1.0))
        x = g.nodes.double()
        s = x.sum(-1)
        z = torch.stack([torch.exp(s) * torch.sin(3 * x[:, 0]), torch.cos(2 * s) + x[:, -1] ** 2])
        p = g.weights.double() / g.weights.double().sum()
        mu, var = quadrature_stats(z[None], p, 1)
        stats.append(torch.cat([mu, var], -1)[0].numpy())
    errs = [np.abs(a - b).max() for a, b in zip(stats[:-1], stats[1:])]
    orders = [math.log2(a / b) for a, b in zip(errs[:-1], errs[1:])]
    assert errs[-1] < 1e-3 and all(1.8 < p < 2.2 for p in orders), (errs, orders)


# --------------------------------------------------------------------------- in the model
@pytest.mark.parametrize(
    "kernel, form, method, which",
    [
        ("nodal", "inside", "euler", "in"),  # sigma reads the state X^k on G_k
        ("nodal", "outside", "euler", "out"),  # W X on the new nodes G_{k+1}
        ("nodal", "outside", "rk4", "in"),  # RK stages on G_k
        ("conv", "outside", "euler", "in"),  # stationary kernels step on G_k
        ("nodal", "bottleneck", "euler", "hidden"),  # W1 X on the hidden grid H_k
    ],
)
def test_each_step_normalises_with_the_weights_of_the_grid_sigma_reads(kernel, form, method, which):
    sched = GridSchedule.from_widths([17, 9, 5])
    kw = {"hidden_width": 6} if form == "bottleneck" else {}
    if kernel == "conv":
        kw["radius"] = 0.3  # the conv kernel's window (the nodal kernel has none)
    m = SpaceTimeNet(
        sched,
        None,
        2,
        kernel=kernel,
        form=form,
        method=method,
        lift="identity",
        readout="mean",
        channels=2,
        norm="instance",
        seed=0,
        **kw,
    ).double()
    for k, sm in enumerate(m.controls()):
        if which == "hidden":  # the midpoint rule of 6 nodes: equal weights
            want = np.full(6, 1 / 6)
        else:
            g = sched.grids[k + (which == "out")]
            want = np_trapezoid_weights(g.nodes.double().numpy())
        np.testing.assert_allclose(sm.norm.p.numpy(), want / want.sum(), rtol=1e-13)
        assert sm.norm.gamma is m.norm_layer.gamma[k]


def np_nodal_reference(model: SpaceTimeNet, x: np.ndarray) -> np.ndarray:
    """A nodal channel model with a channel norm and the mean head, re-done in NumPy: lift,
    Euler / RK4 steps with the kernel's matrices, N_k with hand trapezoid weights of the grid
    sigma reads, np.interp transfers, channel padding, means -> MLP."""
    sched = model.schedule
    L, l0 = model.lift_weight.detach().numpy(), model.lift_bias.detach().numpy()
    X = np.einsum("oi,bin->bon", L, x) + l0[:, None]
    act = np.tanh
    times = sched.times.double().numpy()
    ch = sched.channels
    groups = model.norm_layer.groups
    for k in range(sched.num_steps):
        dt = times[k + 1] - times[k]
        g, g1 = sched.grids[k], sched.grids[k + 1]
        c = ch[k]
        W, b = model.kernel.weight[k].detach().numpy(), model.kernel.bias[k].detach().numpy()
        gam = model.norm_layer.gamma[k].detach().numpy()
        bet = model.norm_layer.beta[k].detach().numpy()
        square = model.method != "euler"
        n_out = g.n if square else g1.n
        w_in = np_trapezoid_weights(g.nodes.double().numpy())
        w_out = np_trapezoid_weights((g if square else g1).nodes.double().numpy())

        def N(Z, w, gam=gam, bet=bet, c=c):
            return np_norm(Z, w, 1.0, gam, bet, c if groups is None else groups)[0]  # |Omega| = 1

        def f(Z, W=W, b=b, n_out=n_out, c=c, w_in=w_in, w_out=w_out):
            B = Z.shape[0]
            if model.form == "inside":
                return (act(N(Z, w_in)).reshape(B, -1) @ W.T + b).reshape(B, c, n_out)
            return act(N((Z.reshape(B, -1) @ W.T + b).reshape(B, c, n_out), w_out))

        src, dst = g.nodes[:, 0].double().numpy(), g1.nodes[:, 0].double().numpy()

        def pi(Z, src=src, dst=dst, c_new=ch[k + 1]):
            Z = np.stack([[np.interp(dst, src, zc) for zc in zb] for zb in Z])
            if c_new > Z.shape[1]:
                Z = np.concatenate([Z, np.zeros((Z.shape[0], c_new - Z.shape[1], Z.shape[2]))], 1)
            return Z[:, :c_new]

        if not square:
            Y = np.stack([[np.interp(dst, src, zc) for zc in zb] for zb in X]) + dt * f(X)
            X = pi(Y, src=dst)
        else:  # rk4 on G_k, then the transfer
            k1 = f(X)
            k2 = f(X + dt / 2 * k1)
            k3 = f(X + dt / 2 * k2)
            k4 = f(X + dt * k3)
            X = pi(X + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4))
    wK = np_trapezoid_weights(sched.grids[-1].nodes.double().numpy())
    return np_mean_head(model, X, wK, 1.0)


@pytest.mark.parametrize("method", ["euler", "rk4"])
@pytest.mark.parametrize(
    "form, norm, groups", [("inside", "instance", None), ("outside", "group", 2)]
)
def test_norm_and_head_model_matches_numpy_reference_and_exports(form, norm, groups, method):
    sched = GridSchedule.from_widths([17, 9, 9, 13])
    m = SpaceTimeNet(
        sched,
        None,
        3,
        kernel="nodal",
        form=form,
        activation="tanh",
        method=method,
        lift="identity",
        readout="mean",
        channels=[4, 4, 6, 6],  # widen at step 1
        in_channels=2,
        norm=norm,
        norm_groups=groups,
        head_hidden=7,
        seed=3,
    ).double()
    randomise_norm(m)
    x = torch.randn(5, 2, 17, generator=gen(4), dtype=F64)
    ref = np_nodal_reference(m, x.numpy())
    y = m(x)
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-10, atol=1e-11)
    assert np.abs(ref).max() > 1e-2
    # the norm matters: the same model without it differs
    plain = SpaceTimeNet(
        sched, None, 3, kernel="nodal", form=form, activation="tanh", method=method,
        lift="identity", readout="mean", channels=[4, 4, 6, 6], in_channels=2, head_hidden=7,
        seed=3,
    ).double()  # fmt: skip
    assert float((plain(x) - y).abs().max().detach()) > 1e-3
    # export: plain torch blocks with QuadratureNorm before the activation, an MLP head
    r = to_resnet(m)
    assert sum(isinstance(mod, QuadratureNorm) for mod in r.modules()) == sched.num_steps
    np.testing.assert_allclose(r(x).detach().numpy(), ref, rtol=1e-10, atol=1e-11)
    assert "norm(g=" in r.layer_table()


def test_mlp_head_equals_a_hand_computation():
    """readout = Linear(H, out)(GELU(Linear(c_K, H)(means))) with means by quadrature."""
    sched = GridSchedule.pyramid(33, 9, steps=3)
    m = SpaceTimeNet(
        sched,
        None,
        4,
        kernel="conv",
        form="inside",
        activation="gelu",
        lift="identity",
        readout="mean",
        channels=[3, 3, 5, 5],
        radius=[0.2, 0.3, 0.4],
        head_hidden=6,
        seed=1,
    ).double()
    with torch.no_grad():
        m.head_bias.copy_(torch.randn(6, generator=gen(7), dtype=F64))
        m.readout_bias.copy_(torch.randn(4, generator=gen(8), dtype=F64))
    assert tuple(m.head_weight.shape) == (6, 5) and tuple(m.readout_weight.shape) == (4, 6)
    x = torch.randn(3, 33, generator=gen(2), dtype=F64)
    final = m.trajectory(x).final.detach().numpy()  # [3, 5, 9]
    wK = np_trapezoid_weights(sched.grids[-1].nodes.double().numpy())
    ref = np_mean_head(m, final, wK, 1.0)
    np.testing.assert_allclose(m(x).detach().numpy(), ref, rtol=1e-12, atol=1e-13)
    assert np.abs(ref).max() > 1e-2


def test_pool_readout_averages_the_activated_state_and_exports():
    """readout="pool": the MLP of the channel means of sigma(x(T)) (NumPy GELU, trapezoid
    weights by hand); to_resnet applies the same activation before its pooling, and
    from_resnet refuses it."""
    sched = GridSchedule.pyramid(33, 9, steps=3)
    m = SpaceTimeNet(
        sched, None, 4, kernel="conv", form="inside", activation="gelu", lift="identity",
        readout="pool", channels=[3, 3, 5, 5], radius=[0.2, 0.3, 0.4], head_hidden=6, seed=1,
    ).double()  # fmt: skip
    x = torch.randn(3, 33, generator=gen(2), dtype=F64)
    final = m.trajectory(x).final.detach().numpy()
    wK = np_trapezoid_weights(sched.grids[-1].nodes.double().numpy())
    ref = np_mean_head(m, np_gelu(final), wK, 1.0)
    np.testing.assert_allclose(m(x).detach().numpy(), ref, rtol=1e-12, atol=1e-13)
    assert np.abs(ref - np_mean_head(m, final, wK, 1.0)).max() > 1e-3  # sigma matters
    r = to_resnet(m)
    torch.testing.assert_close(r(x), m(x), rtol=1e-10, atol=1e-10)
    plain = SpaceTimeNet(
        GridSchedule.constant(9, 2), None, 2, kernel="nodal", lift="identity", readout="pool",
        channels=2,
    )  # fmt: skip
    with pytest.raises(ValueError, match="module: has a channel normalisation, an MLP head"):
        from_resnet(to_resnet(plain), GridSchedule.constant(9, 2))


# --------------------------------------------------------------------------- resolution
@pytest.mark.parametrize(
    "norm, groups, form",
    [("instance", None, "inside"), ("group", 2, "outside"), ("group", 1, "bottleneck")],
)
def test_conv_model_with_norm_is_resolution_consistent_at_second_order(norm, groups, form):
    """A fixed conv model with a channel norm (random gamma, beta) on G, 2G, 4G, 8G (n,
    2n - 1, ...; lift identity, constant schedule): outputs at the coarse nodes change by
    O(h^2), as without the norm (tests/test_channels.py)."""
    sizes = [17, 33, 65, 129]
    m = SpaceTimeNet(
        GridSchedule.constant(sizes[0], 3),
        None,
        1,
        kernel="conv",
        form=form,
        activation="tanh",
        lift="identity",
        readout="function",
        channels=4,
        in_channels=2,
        radius=0.25,
        modes=3,
        norm=norm,
        norm_groups=groups,
        seed=0,
    ).double()
    randomise_norm(m)
    outs = []
    for n in sizes:
        mn = m.at_resolution(n)
        assert mn.norm_layer is not m.norm_layer
        y = mn(smooth_input(mn.schedule.grids[0].nodes.double())[None])
        outs.append(y[0, 0, :: (n - 1) // (sizes[0] - 1)].detach().numpy())
    errs = [np.abs(a - b).max() for a, b in zip(outs[:-1], outs[1:])]
    orders = [math.log2(a / b) for a, b in zip(errs[:-1], errs[1:])]
    assert all(1.8 < p < 2.3 for p in orders), (errs, orders)
    assert errs[-1] < 1e-3 * np.abs(outs[-1]).max()


# --------------------------------------------------------------------------- steppers
def conv_norm_model(method: str, checkpoint=None, form="inside") -> SpaceTimeNet:
    m = SpaceTimeNet(
        GridSchedule.pyramid(33, 9, steps=4),
        None,
        3,
        kernel="conv",
        form=form,
        activation="gelu",
        method=method,
        lift="identity",
        readout="mean",
        channels=[4, 4, 8, 8, 8],
        radius=[0.2, 0.2, 0.4, 0.4],
        norm="group",
        norm_groups=2,
        head_hidden=5,
        checkpoint=checkpoint,
        seed=0,
    ).double()
    randomise_norm(m)
    return m


@pytest.mark.parametrize("method", ["euler", "heun", "rk4"])
def test_checkpointing_with_norm_changes_nothing_gradients_included(method):
    m, mc = conv_norm_model(method), conv_norm_model(method, checkpoint=2)
    x = torch.randn(3, 33, generator=gen(1), dtype=F64)
    torch.testing.assert_close(mc(x), m(x), rtol=1e-12, atol=1e-13)
    g1 = torch.autograd.grad(m(x).square().sum(), list(m.parameters()))
    g2 = torch.autograd.grad(mc(x).square().sum(), list(mc.parameters()))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)
    names = [n for n, _ in m.named_parameters()]
    for name, g in zip(names, g2):
        if name.startswith("norm_layer."):
            assert float(g.abs().max()) > 0, name  # gamma, beta are trained through the flow
    # the trajectory's checkpoint path (states kept) too
    t1 = m.trajectory(x).final
    t2 = mc.trajectory(x).final
    a = torch.autograd.grad(t1.sum(), list(m.norm_layer.parameters()))
    b = torch.autograd.grad(t2.sum(), list(mc.norm_layer.parameters()))
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, rtol=1e-12, atol=1e-13)


def test_norm_forward_and_backward_need_no_host_sync():
    """On the meta device a .item() or a Python bool of a tensor raises: the forward (with
    checkpointing) and the backward never read a value back."""
    m = conv_norm_model("rk4", checkpoint=2).float().to("meta")
    x = torch.randn(3, 33, device="meta")
    y = m(x)
    y.sum().backward()
    assert y.shape == (3, 3) and m.norm_layer.gamma[0].grad is not None


def test_norm_pieces_follow_time_under_refinement_and_rescaling():
    m = conv_norm_model("euler")
    fine = m.refine(width=1, depth=2)  # 8 steps: steps 2k and 2k + 1 use the pieces of step k
    for k, sm in enumerate(fine.controls()):
        torch.testing.assert_close(sm.norm.gamma, m.norm_layer.gamma[k // 2])
    # the scaling lemma: the inside form stays homogeneous in (W, b); the pieces stretch in t
    mi = SpaceTimeNet(
        GridSchedule.constant(17, 3),
        None,
        2,
        kernel="conv",
        form="inside",
        activation="tanh",
        lift="identity",
        readout="mean",
        channels=4,
        radius=0.25,
        norm="instance",
        seed=0,
    ).double()
    randomise_norm(mi)
    assert mi.is_homogeneous()
    x = torch.randn(2, 17, generator=gen(3), dtype=F64)
    r = mi.rescale_horizon(2.5)
    assert r.norm_layer.T == 2.5
    torch.testing.assert_close(r(x), mi(x), rtol=1e-12, atol=1e-13)
    mo = SpaceTimeNet(
        GridSchedule.constant(17, 3), None, 2, kernel="conv", form="outside", lift="identity",
        channels=4, radius=0.25, norm="instance", seed=0,
    )  # fmt: skip
    assert not mo.is_homogeneous()  # N(a z) ~ N(z): scale-invariant, not homogeneous
    # the state dict round-trips (gamma, beta and the horizon)
    r2 = SpaceTimeNet(
        GridSchedule.constant(17, 3, T=2.5), None, 2, kernel="conv", form="inside",
        activation="tanh", lift="identity", readout="mean", channels=4, radius=0.25,
        norm="instance", seed=1,
    ).double()  # fmt: skip
    r2.load_state_dict(r.state_dict())
    torch.testing.assert_close(r2(x), mi(x), rtol=1e-12, atol=1e-13)


# --------------------------------------------------------------------------- export
@pytest.mark.parametrize("form", ["inside", "outside", "bottleneck"])
def test_norm_and_head_models_export_exactly(form):
    m = conv_norm_model("euler", form=form)
    x = torch.randn(4, 33, generator=gen(2), dtype=F64)
    r = to_resnet(m)
    torch.testing.assert_close(r(x), m(x), rtol=1e-10, atol=1e-10)
    assert isinstance(r.head.linear, torch.nn.Sequential)
    m32, x32 = m.float(), x.float()
    r32 = to_resnet(m32)
    torch.testing.assert_close(r32(x32), m32(x32), rtol=1e-5, atol=1e-5)
    if form == "inside":
        ep = torch.export.export(r32, (x32,))
        torch.testing.assert_close(ep.module()(x32), m32(x32), rtol=1e-5, atol=1e-5)
    # a nodal export with a norm does not come back as a norm-free model
    sched = GridSchedule.constant(9, 2)
    nodal = SpaceTimeNet(
        sched, None, 2, kernel=NodalKernel(sched.with_channels(2)), lift="identity",
        readout="mean", channels=2, norm="instance",
    )  # fmt: skip
    with pytest.raises(ValueError, match="module: has a channel normalisation, an MLP head"):
        from_resnet(to_resnet(nodal), sched)


# --------------------------------------------------------------------------- validation
def test_bad_norm_and_head_arguments_raise_naming_the_argument():
    s = GridSchedule.constant(17, 2)
    kw = {"kernel": "conv", "lift": "identity", "radius": 0.25}
    with pytest.raises(
        ValueError, match=r"norm: expected None or one of instance, group; got 'batch'"
    ):
        SpaceTimeNet(s, None, 2, channels=4, norm="batch", **kw)
    with pytest.raises(ValueError, match=r"norm: 'instance' normalises channels .* got the scalar"):
        SpaceTimeNet(s, 17, 2, kernel="basis", lift="identity", norm="instance")
    with pytest.raises(ValueError, match=r"norm_groups: .*\[4, 6\] .*got 4"):
        SpaceTimeNet(s, None, 2, channels=[4, 6, 6], norm="group", norm_groups=4, **kw)
    with pytest.raises(ValueError, match=r"norm_groups: norm='group' needs .*got None"):
        SpaceTimeNet(s, None, 2, channels=4, norm="group", **kw)
    with pytest.raises(ValueError, match=r"norm_groups: .*got True"):
        SpaceTimeNet(s, None, 2, channels=4, norm="group", norm_groups=True, **kw)
    with pytest.raises(ValueError, match=r"norm_groups: applies to norm='group' only"):
        SpaceTimeNet(s, None, 2, channels=4, norm="instance", norm_groups=2, **kw)
    with pytest.raises(ValueError, match=r"norm_groups: applies to norm='group' only"):
        SpaceTimeNet(s, None, 2, channels=4, norm_groups=2, **kw)
    with pytest.raises(
        ValueError, match=r"head_hidden: applies to readout='mean' or 'pool' only .*'quadrature'"
    ):
        SpaceTimeNet(s, None, 2, channels=4, head_hidden=8, **kw)
    with pytest.raises(ValueError, match=r"head_hidden: expected a positive int, got 0"):
        SpaceTimeNet(s, None, 2, channels=4, readout="mean", head_hidden=0, **kw)
    # accepted: group counts dividing every step's channels; no change without the options
    m = SpaceTimeNet(s, None, 2, channels=[4, 6, 6], norm="group", norm_groups=2, **kw)
    assert m.norm_layer.groups == 2
    assert SpaceTimeNet(s, None, 2, channels=4, **kw).norm_layer is None
