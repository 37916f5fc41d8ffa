"""Channel compression (spacetime_nets.adapt.rank_channels / with_channels / compress): the
reduced model against models built by hand, the exported ResNet against the reduced model, the
tolerance with and without recovery, and the warning for a calibration set too small for tol."""

from __future__ import annotations

import warnings

import pytest
import torch

from grids import GridSchedule
from spacetime_nets import SpaceTimeNet, adapt, to_resnet
from spacetime_nets.kernels import ConvKernel

C = 6


def _model(form="bottleneck", readout="quadrature", kernel="conv", seed=0, n=17, steps=3):
    sched = GridSchedule.constant(n, steps, T=1.0, rule="trapezoid")
    kw = {"radius_spacings": 2.5, "pointwise": True} if kernel == "conv" else {"modes": 4}
    return SpaceTimeNet(
        sched, None, 3, kernel=kernel, form=form, activation="gelu", lift="identity",
        readout=readout, channels=C, in_channels=1, seed=seed, **kw,
    ).double()  # fmt: skip


def _x(n=17, batch=40, seed=1):
    g = torch.Generator().manual_seed(seed)
    # rough inputs: a smooth part plus white noise at every node
    t = torch.linspace(0, 1, n, dtype=torch.float64)
    a = torch.randn(batch, 1, generator=g, dtype=torch.float64)
    return torch.sin(3 * t + a) + 0.4 * torch.randn(batch, n, generator=g, dtype=torch.float64)


def _out(m, x):
    with torch.no_grad():
        return m.eval()(x)


@pytest.mark.parametrize(
    ("form", "readout", "kernel", "kind"),
    [
        ("bottleneck", "quadrature", "conv", "pca"),
        ("bottleneck", "mean", "spectral", "pca"),
        ("bottleneck", "pool", "conv", "select"),
        ("inside", "quadrature", "conv", "select"),
        ("outside", "function", "spectral", "select"),
    ],
)
def test_all_channels_in_a_new_basis_give_the_same_function(form, readout, kernel, kind):
    model, x = _model(form, readout, kernel), _x()
    ranking = adapt.rank_channels(model, x)
    assert ranking.kind == kind
    basis = ranking.state
    assert torch.allclose(basis.T @ basis, torch.eye(C, dtype=basis.dtype), atol=1e-10)
    same = adapt.with_channels(model, ranking, C)
    torch.testing.assert_close(_out(same, x), _out(model, x), rtol=1e-9, atol=1e-9)


def test_selected_channels_equal_a_model_built_with_the_kept_slices():
    """inside form: the reduced model against a c' = 4 model whose parameters are the kept
    rows and columns, copied by hand."""
    model, x = _model("inside", "quadrature"), _x()
    ranking = adapt.rank_channels(model, x)
    small = adapt.with_channels(model, ranking, 4)
    keep = ranking.state[:, :4].argmax(0)  # the kept channels, in the ranking's order
    ref = SpaceTimeNet(
        model.schedule.with_channels(4), None, 3, kernel="conv", form="inside",
        activation="gelu", lift="identity", channels=4, radius_spacings=2.5, pointwise=True,
    ).double()  # fmt: skip
    with torch.no_grad():
        ref.lift_weight.copy_(model.lift_weight[keep])
        ref.lift_bias.copy_(model.lift_bias[keep])
        ref.readout_coeff.copy_(model.readout_coeff[:, keep])
        ref.readout_bias.copy_(model.readout_bias)
        for p in range(model.kernel.pieces):
            ref.kernel.coeff[p].copy_(model.kernel.coeff[p][keep][:, keep])
            ref.kernel.bias_coeff[p].copy_(model.kernel.bias_coeff[p][keep])
            ref.kernel.point[p].copy_(model.kernel.point[p][keep][:, keep])
    torch.testing.assert_close(_out(small, x), _out(ref, x), rtol=1e-9, atol=1e-9)


def test_a_state_in_a_subspace_and_dead_hidden_channels_are_found_and_dropped_exactly():
    """Bottleneck: the lift and W2 write only into span(R), R a random orthonormal [c, 2]
    basis, and two hidden channels per piece are cut off from W2: the PCA basis spans R, the
    dead channels rank last, and 2 state + 4 hidden channels give the same function."""
    model, x = _model("bottleneck", "quadrature"), _x()
    g = torch.Generator().manual_seed(5)
    R = torch.linalg.qr(torch.randn(C, 2, generator=g, dtype=torch.float64))[0]
    proj = R @ R.T
    dead = {p: torch.randperm(C, generator=g)[:2] for p in range(model.kernel.pieces)}
    with torch.no_grad():
        model.lift_weight.copy_(proj @ model.lift_weight)
        model.lift_bias.copy_(proj @ model.lift_bias)
        k2 = model.kernel2
        for p in range(k2.pieces):
            k2.coeff[p].copy_(torch.einsum("ab,bim->aim", proj, k2.coeff[p]))
            k2.bias_coeff[p].copy_(proj @ k2.bias_coeff[p])
            k2.point[p].copy_(proj @ k2.point[p])
            k2.coeff[p][:, dead[p]] = 0.0
            k2.point[p][:, dead[p]] = 0.0
    ranking = adapt.rank_channels(model, x)
    P = ranking.state[:, :2]
    torch.testing.assert_close(P @ P.T, proj, atol=1e-8, rtol=0)
    assert ranking.energy[2:].sum() < 1e-12
    for p, order in enumerate(ranking.hidden):
        assert set(order[-2:].tolist()) == set(dead[p].tolist())
    small = adapt.with_channels(model, ranking, 2, hidden=4)
    assert small.schedule.channels == [2] * 4
    torch.testing.assert_close(_out(small, x), _out(model, x), rtol=1e-8, atol=1e-8)
    # the multiply-adds count the smaller operators
    assert adapt.model_macs(small) < adapt.model_macs(model) / 2


def test_map_channels_changes_the_kernel_values_by_the_two_bases():
    g = torch.Generator().manual_seed(0)
    kern = ConvKernel((0.0, 1.0), channels=C, radius=0.3, pieces=2, pointwise=True, generator=g)
    Q = torch.linalg.qr(torch.randn(C, 3, generator=g))[0]
    R = torch.linalg.qr(torch.randn(C, 4, generator=g))[0]
    delta = torch.linspace(-0.3, 0.3, 7)[:, None]
    before = [kern.kernel_values(t, delta) for t in (0.2, 0.7)]
    biases = [b.detach().clone() for b in kern.bias_coeff]
    points = [a.detach().clone() for a in kern.point]
    kern.map_channels_([Q, Q], [R, R], channels=4)
    for p, (t, k0) in enumerate(zip((0.2, 0.7), before)):
        expect = torch.einsum("or,oij,is->rsj", Q, k0, R)
        torch.testing.assert_close(kern.kernel_values(t, delta), expect, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(kern.bias_coeff[p], Q.T @ biases[p])
        torch.testing.assert_close(kern.point[p], Q.T @ points[p] @ R)
    assert kern.channels_at(0, 0.2) == 4
    with pytest.raises(ValueError, match="channels: needed"):
        kern.map_channels_([torch.eye(3)] * 2, [torch.eye(4)[:, :2]] * 2)


@pytest.mark.parametrize("form", ["bottleneck", "inside"])
def test_compressed_channels_export_to_an_equal_resnet(form):
    model, x = _model(form, "quadrature"), _x()
    small, info = adapt.compress(model, x, 0.05, metric="output", norm="rms")
    assert info.channels_after < C  # the search did reduce the channels
    with torch.no_grad():
        torch.testing.assert_close(to_resnet(small)(x), small(x), rtol=1e-5, atol=1e-5)
    assert info.macs_after == adapt.model_macs(small) < info.macs_before


def test_without_recovery_the_change_never_exceeds_tol():
    model, x = _model(), _x(batch=60)
    y0 = _out(model, x)
    for tol in (0.01, 0.05, 0.2):
        small, info = adapt.compress(model, x, tol, metric="output", norm="max")
        measured = float((_out(small, x) - y0).abs().max())
        assert measured <= tol
        assert info.error == pytest.approx(measured, rel=1e-9, abs=1e-12)


def test_with_recovery_the_reported_change_is_measured_after_it():
    model, x = _model(), _x(batch=60)
    y0 = _out(model, x)
    fitted = _x(batch=120, seed=7)  # the recovery's own inputs
    small, info = adapt.compress(
        model, x, 0.05, metric="output", norm="rms", recover_epochs=3, recover_data=fitted
    )
    assert info.recoveries >= 1 and info.recover_epochs == 3 * info.recoveries
    measured = float((_out(small, x) - y0).square().mean().sqrt())
    assert info.error == pytest.approx(measured, rel=1e-9, abs=1e-12)
    assert measured <= 0.05
    assert any(m.startswith("recovery 1") for m in info.moves)
    # the given model is left alone
    torch.testing.assert_close(_out(model, x), y0)


def _labels(model, x):
    y = _out(model, x).argmax(-1)
    y[::3] = (y[::3] + 1) % 3
    return y


def test_a_tolerance_below_one_calibration_sample_warns():
    model, x = _model(), _x(batch=40)  # one sample: 2.5 points
    y = _labels(model, x)
    with pytest.warns(UserWarning, match="below one sample of the 40-sample"):
        adapt.compress(model, (x, y), 1.0, metric="accuracy", channels=False, fewer_steps=False)


@pytest.mark.parametrize(("metric", "tol"), [("accuracy", 2.5), ("accuracy", 0.0), ("output", 0.1)])
def test_no_warning_when_the_tolerance_is_resolved(metric, tol):
    model, x = _model(), _x(batch=40)
    data = (x, _labels(model, x))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adapt.compress(model, data, tol, metric=metric, channels=False, fewer_steps=False)


def test_channel_compression_refuses_what_it_cannot_reduce():
    model, x = _model(), _x()
    ranking = adapt.rank_channels(model, x)
    with pytest.raises(ValueError, match="channels: expected at most"):
        adapt.with_channels(model, ranking, C + 1)
    with pytest.raises(ValueError, match="hidden: applies to the bottleneck"):
        inside = _model("inside")
        adapt.with_channels(inside, adapt.rank_channels(inside, x), 3, hidden=3)
    with pytest.raises(ValueError, match="ranking: expected a ChannelRanking"):
        adapt.with_channels(_model(), "pca", 3)
    for kw, text in [
        ({"recover_epochs": -1}, "recover_epochs: expected an int >= 0"),
        ({"recover_lr": 0}, "recover_lr: expected a finite number > 0"),
        ({"min_channels": 0}, "min_channels: expected an int >= 1"),
        ({"recover_epochs": 1, "recover_data": torch.randn(5, 9)}, "recover_data: x: expected"),
        ({"recover_epochs": 1, "recover_data": "x"}, "recover_data: expected a tensor"),
    ]:
        with pytest.raises(ValueError, match=text):
            adapt.compress(model, x, 0.1, **kw)
    with pytest.raises(ValueError, match="needs a SpaceTimeNet with channels"):
        sched = GridSchedule.constant(9, 2, T=1.0)
        adapt.rank_channels(SpaceTimeNet(sched, 4, 2, kernel="basis", modes=3), x)


def test_a_model_with_fewer_hidden_than_state_channels_ranks_and_reduces_again():
    """A reduced bottleneck (4 state, 5 hidden channels) is a model like any other: ranked,
    reduced further, and equal to itself at its own counts."""
    model, x = _model(), _x()
    first = adapt.with_channels(model, adapt.rank_channels(model, x), 4, hidden=5)
    assert adapt.hidden_count(first) == 5
    ranking = adapt.rank_channels(first, x)
    assert [len(h) for h in ranking.hidden] == [5] * first.kernel.pieces
    same = adapt.with_channels(first, ranking, 4, hidden=5)
    torch.testing.assert_close(_out(same, x), _out(first, x), rtol=1e-9, atol=1e-9)
    assert adapt.with_channels(first, ranking, 3).schedule.channels == [3] * 4
    with pytest.raises(ValueError, match=r"hidden: expected at most 5"):
        adapt.with_channels(first, ranking, 3, hidden=6)


def _resample(x, n):
    """Rows of ``x`` (on linspace(0, 1, m)) at n nodes by linear interpolation (the same
    functions), or every other node for the coarser grid."""
    m = x.shape[1]
    if n < m:
        return x[:, :: (m - 1) // (n - 1)]
    src = torch.linspace(0, 1, m, dtype=x.dtype)
    dst = torch.linspace(0, 1, n, dtype=x.dtype)
    j = torch.clamp(torch.searchsorted(src, dst, right=True) - 1, 0, m - 2)
    w = (dst - src[j]) / (src[j + 1] - src[j])
    return x[:, j] * (1 - w) + x[:, j + 1] * w


@pytest.mark.parametrize("rough", [False, True])
def test_a_reduced_model_is_the_same_function_at_every_resolution(rough):
    """Reducing the channels acts on coefficients only: at 0.5x, 2x and 4x the reduced model
    equals the model moved there and then reduced, and it changes across resolutions as the
    trained model does, for smooth and for noisy inputs."""
    model = _model(n=33)
    g = torch.Generator().manual_seed(3)
    t = torch.linspace(0, 1, 33, dtype=torch.float64)
    x = torch.sin(3 * t + torch.randn(20, 1, generator=g, dtype=torch.float64))
    if rough:
        x = x + 0.4 * torch.randn(20, 33, generator=g, dtype=torch.float64)
    ranking = adapt.rank_channels(model, x)
    small = adapt.with_channels(model, ranking, 3, hidden=4)
    y_small, y_model = _out(small, x), _out(model, x)
    for n in (17, 65, 129):
        xn = _resample(x, n)
        moved = _out(small.at_resolution(n), xn)
        other = _out(adapt.with_channels(model.at_resolution(n), ranking, 3, hidden=4), xn)
        torch.testing.assert_close(moved, other, rtol=1e-10, atol=1e-10)
        change = float((moved - y_small).norm() / y_small.norm())
        ref = float((_out(model.at_resolution(n), xn) - y_model).norm() / y_model.norm())
        assert change <= 1.1 * ref + 1e-3, (n, change, ref)


def test_a_pca_ranking_is_refused_where_the_flow_does_not_commute_with_a_rotation():
    """STATE_BASES names the two bases; a rotated (``pca``) basis needs a bottleneck form and
    a readout linear in the state, a ``select`` ranking goes everywhere."""
    from spacetime_nets.adapt.channels import STATE_BASES

    assert STATE_BASES == ("pca", "select") and isinstance(STATE_BASES, tuple)
    model, x = _model("inside"), _x()
    ranking = adapt.rank_channels(model, x)
    assert ranking.kind == "select"
    rotated = adapt.ChannelRanking("pca", ranking.state, ranking.energy, ranking.hidden)
    with pytest.raises(ValueError, match="^ranking: a 'pca' ranking needs a bottleneck form"):
        adapt.with_channels(model, rotated, 3)
    assert adapt.with_channels(model, ranking, 3).schedule.channels[0] == 3
