"""spacetime_nets.adapt: error estimates converge at the rates of the schemes, compress never
exceeds its tolerance, refine_where never exceeds its budget, multilevel training improves,
and bad arguments raise ValueErrors."""

from __future__ import annotations

import math

import pytest
import torch

from grids import GridSchedule
from spacetime_nets import FunctionKernel, SpaceTimeNet, adapt


# ---- closed-form kernels ---------------------------------------------------------------------
def _w_varying(t, xi, zeta):
    return (
        1.5 * torch.cos(math.pi * (xi[:, None, 0] - zeta[None, :, 0])) * (1 + 0.5 * math.sin(2 * t))
    )


def _b_varying(t, xi):
    return 0.5 * torch.sin(math.pi * xi[:, 0]) + 0.2 * t


def _w_autonomous(t, xi, zeta):
    return 1.5 * torch.cos(math.pi * (xi[:, None, 0] - zeta[None, :, 0]))


def _b_autonomous(t, xi):
    return 0.5 * torch.sin(math.pi * xi[:, 0])


def _model(n, K, method="euler", autonomous=False):
    kernel = (
        FunctionKernel(_w_autonomous, _b_autonomous)
        if autonomous
        else FunctionKernel(_w_varying, _b_varying)
    )
    sched = GridSchedule.constant(n, K, T=1.0, rule="trapezoid")
    return SpaceTimeNet(
        sched,
        3,
        2,
        kernel=kernel,
        form="inside",
        activation="tanh",
        lift="linear",
        method=method,
        modes=3,
        seed=0,
    ).double()


X = torch.randn(48, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


def _out(model, x=X):
    with torch.no_grad():
        return model(x)


def _maxdiff(a, b):
    return float((a - b).abs().max())


def _order(e_coarse, e_fine):
    return math.log2(e_coarse / e_fine)


# ---- estimates -----------------------------------------------------------------------------
def test_space_estimate_is_second_order_and_matches_the_true_error():
    ref = _out(_model(257, 4))  # the same model on a far finer grid: the space limit
    est, true = [], []
    for n in (9, 17, 33):  # trapezoid grids, h halves each time
        model = _model(n, 4)
        rep = adapt.estimate_errors(model, X)
        est.append(rep.space_total)
        true.append(_maxdiff(_out(model), ref))
        assert len(rep.space) == 5 and len(rep.time) == 4
    for a, b in zip(est[:-1], est[1:]):
        assert 1.7 < _order(a, b) < 2.3
    for e, t in zip(est[1:], true[1:]):
        assert abs(e - t) < 0.15 * t  # Richardson's factor 4/3 included


@pytest.mark.parametrize(
    ("method", "autonomous", "p"),
    [("euler", False, 1), ("heun", True, 2), ("rk4", True, 4), ("heun", False, 1)],
)
def test_time_estimate_converges_at_the_scheme_order(method, autonomous, p):
    # controls frozen at t_k make any scheme first order when w, b vary in t
    ref = _out(_model(9, 512, "rk4", autonomous))
    totals, firsts, true = [], [], []
    for K in (4, 8, 16):
        model = _model(9, K, method, autonomous)
        assert adapt.time_order(model) == p
        rep = adapt.estimate_errors(model, X)
        totals.append(rep.time_total)
        firsts.append(rep.time[0])  # the local error of the first step: O(dt^(p+1))
        true.append(_maxdiff(_out(model), ref))
    for a, b in zip(totals[:-1], totals[1:]):
        assert abs(_order(a, b) - p) < 0.3
    for a, b in zip(firsts[:-1], firsts[1:]):
        assert abs(_order(a, b) - (p + 1)) < 0.4
    assert abs(totals[-1] - true[-1]) < 0.2 * true[-1]
    assert abs(sum(rep.time) - true[-1]) < 0.3 * true[-1]


def test_basis_kernel_piecewise_on_the_steps_keeps_the_stepper_order():
    sched = GridSchedule.constant(7, 4, T=1.0)
    model = SpaceTimeNet(sched, 2, 2, kernel="basis", method="rk4", lift="linear", modes=3, seed=0)
    assert adapt.time_order(model) == 4  # pieces = steps: constant within each step


def test_report_summary_and_plot():
    rep = adapt.estimate_errors(_model(9, 3), X, norm="rms")
    text = rep.summary()
    assert "space" in text and "time" in text and text.count("\n") >= 5
    pytest.importorskip("matplotlib")
    fig = rep.plot()
    assert len(fig.axes) == 2


# ---- costs ---------------------------------------------------------------------------------
def test_model_macs_by_hand():
    n, K = 9, 4
    model = _model(n, K)  # constant grid: identity transfers, Euler, linear lift
    assert adapt.model_macs(model) == K * n * n + 2 * n + 3 * n
    heun = _model(n, K, "heun")
    assert adapt.model_macs(heun) == 2 * K * n * n + 2 * n + 3 * n


# ---- compress ------------------------------------------------------------------------------
def _basis_model(seed=0, method="euler"):
    sched = GridSchedule.from_widths([17, 17, 17, 9, 9, 9, 9], T=1.5)
    return SpaceTimeNet(
        sched,
        4,
        3,
        kernel="basis",
        form="inside",
        activation="tanh",
        lift="linear",
        modes=4,
        method=method,
        seed=seed,
    )


XB = torch.randn(80, 4, generator=torch.Generator().manual_seed(2))


def test_compress_refuses_a_norm_with_a_discrete_metric():
    """norm measures the output change: with accuracy or predictions it would be unused."""
    model = _basis_model()
    for metric in ("accuracy", "predictions"):
        with pytest.raises(ValueError, match=rf"^norm: applies to metric='output' only .*"
                           rf"norm='rms' with metric='{metric}'"):  # fmt: skip
            adapt.compress(model, (XB, torch.zeros(80, dtype=torch.long)), 1.0, metric=metric,
                           norm="rms")  # fmt: skip


@pytest.mark.parametrize(("norm", "tol"), [("max", 0.005), ("max", 0.05), ("rms", 0.02)])
def test_compress_never_exceeds_tol(norm, tol):
    model = _basis_model()
    before = model.schedule.widths
    small, info = adapt.compress(model, XB, tol, norm=norm)
    d = (_out(small, XB) - _out(model, XB)).double()
    measured = float(d.abs().max()) if norm == "max" else float(d.square().mean().sqrt())
    assert measured <= tol
    assert info.error == pytest.approx(measured, rel=1e-6, abs=1e-9)
    assert adapt.model_macs(small) == info.macs_after <= info.macs_before
    assert model.schedule.widths == before  # the given model is left alone
    assert small.schedule.T == pytest.approx(model.schedule.T)


def test_compress_saves_more_with_a_looser_tol():
    model = _basis_model()
    tight = adapt.compress(model, XB, 1e-4)[1]
    loose = adapt.compress(model, XB, 0.2)[1]
    assert loose.macs_after < tight.macs_after
    assert loose.ratio > 1.5
    assert "multiply-adds" in loose.summary()


def test_compress_accuracy_metric_never_loses_more_than_tol():
    model = _basis_model(seed=3)
    labels = _out(model, XB).argmax(-1)
    labels[::4] = (labels[::4] + 1) % 3  # a model that is 75 % right on these labels
    acc0 = float((_out(model, XB).argmax(-1) == labels).double().mean())
    for tol in (0.0, 2.0):
        small, info = adapt.compress(model, (XB, labels), tol, metric="accuracy")
        acc = float((_out(small, XB).argmax(-1) == labels).double().mean())
        assert 100 * (acc0 - acc) <= tol
        assert info.accuracy_after == pytest.approx(acc)
        # the bound is inclusive: at tol = 0 the moves that flip no sample are taken
        assert info.macs_after < info.macs_before


def test_compress_can_merge_steps_and_respects_fewer_steps_false():
    sched = GridSchedule.constant(9, 8, T=1.0)
    model = SpaceTimeNet(
        sched,
        3,
        2,
        kernel=FunctionKernel(_w_autonomous, _b_autonomous),
        form="inside",
        activation="tanh",
        lift="linear",
        modes=3,
        seed=0,
    )
    x = X.float()
    merged = adapt.compress(model, x, 0.05)[0]
    assert merged.schedule.num_steps < 8
    kept = adapt.compress(model, x, 0.05, fewer_steps=False)[0]
    assert kept.schedule.num_steps == 8


def test_compress_with_a_custom_cost():
    model = _basis_model()
    small, info = adapt.compress(model, XB, 0.05, cost=lambda m: m.schedule.num_steps)
    assert small.schedule.num_steps <= model.schedule.num_steps
    assert _maxdiff(_out(small, XB), _out(model, XB)) <= 0.05


# ---- refine_where --------------------------------------------------------------------------
def test_refine_where_never_exceeds_the_budget():
    model = _model(9, 3)
    macs0 = adapt.model_macs(model)
    for factor in (1.0, 1.3, 3.0):
        budget = macs0 * factor
        fine, info = adapt.refine_where(model, X, budget)
        assert adapt.model_macs(fine) <= budget
        assert info.macs_after == adapt.model_macs(fine)
        if factor > 2.0:
            assert info.moves and info.estimate_after < info.estimate_before
    # the refined model is closer to the converged one
    ref = _out(_model(129, 96))
    assert _maxdiff(_out(fine), ref) < _maxdiff(_out(model), ref)


def test_every_metric_has_one_entry_and_its_unit_in_the_summary():
    from spacetime_nets.adapt import search

    assert tuple(search._METRICS) == adapt.METRICS
    sched = _basis_model().schedule
    units = {"output": "(rms, output units)", "accuracy": "points", "predictions": "points"}
    for metric in adapt.METRICS:
        for kind, what in (("compress", "tol"), ("refine_where", "budget")):
            info = adapt.AdaptSummary(kind, sched, sched, 10, 5, metric, "rms", 0.5, 0.25)
            head, change = info.summary().splitlines()[:2]
            assert head.endswith(f"{what} 0.5")
            assert change.endswith(f"0.25 {units[metric]}")


# ---- multilevel training --------------------------------------------------------------------
def _xor(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=g) * 2 - 1
    y = ((x[:, 0] * x[:, 1]) > 0).long()
    return x, y


def _loss(model, data):
    from spacetime_nets.training import evaluate

    return evaluate(model, data)["loss"]


FIT = dict(batch_size=64, lr=2e-2, progress=False, device="cpu", seed=0)


def test_multilevel_fit_continuous_improves():
    train, val = _xor(), _xor(128, 1)
    coarse = GridSchedule.constant(5, 2, T=1.0)  # pieces follow the coarse steps
    model = SpaceTimeNet(coarse, 2, 2, kernel="basis", lift="linear", modes=4, seed=0)
    before = _loss(model, val)
    res = adapt.multilevel_fit(model, train, val, levels=[coarse, (2, 2)], epochs=[6, 2], **FIT)
    assert res.model.schedule.same_as(coarse.refine(2, 2))
    assert len(res.histories) == 2 and len(res.seconds) == 2
    assert _loss(res.model, val) < 0.9 * before
    assert model.schedule.same_as(coarse)  # the given model is not trained in place


def test_multilevel_fit_nodal_interpolates_between_levels():
    train, val = _xor(), _xor(128, 1)
    coarse = GridSchedule.constant(4, 2, T=1.0)
    fine = coarse.refine(2, 2)
    model = SpaceTimeNet(coarse, 2, 2, kernel="nodal", form="outside", activation="relu",
                         lift="linear", seed=0)  # fmt: skip
    before = _loss(model, val)
    res = adapt.multilevel_fit(model, train, val, levels=[coarse, fine], epochs=4, **FIT)
    assert res.model.schedule.same_as(fine)
    assert not res.model.continuous
    assert _loss(res.model, val) < 0.9 * before


def test_multilevel_fit_bad_arguments():
    model = SpaceTimeNet(GridSchedule.constant(4, 2), 2, 2, kernel="nodal", lift="linear")
    train = _xor(32)
    with pytest.raises(ValueError, match="levels"):
        adapt.multilevel_fit(model, train, levels=[], epochs=1, batch_size=8)
    with pytest.raises(ValueError, match="levels\\[1\\]"):
        adapt.multilevel_fit(model, train, levels=[model.schedule, "fine"], epochs=1, batch_size=8)
    with pytest.raises(ValueError, match="epochs"):
        adapt.multilevel_fit(model, train, levels=[model.schedule], epochs=[1, 2], batch_size=8)
    with pytest.raises(ValueError, match="batch_size"):
        adapt.multilevel_fit(model, train, levels=[model.schedule], epochs=1)
    other = GridSchedule.constant(6, 2)  # no refinement of 4 trapezoid nodes (7, 10, ...)
    with pytest.raises(ValueError, match="levels\\[1\\].*refine"):
        adapt.multilevel_fit(model, train, levels=[model.schedule, other], epochs=1, batch_size=8)


# ---- bad arguments -------------------------------------------------------------------------
def test_bad_arguments_raise_value_errors():
    model = _basis_model()
    nodal = SpaceTimeNet(GridSchedule.constant(4, 2), 4, 3, kernel="nodal", lift="linear")
    with pytest.raises(ValueError, match="continuous"):
        adapt.compress(nodal, XB, 0.1)
    with pytest.raises(ValueError, match="continuous"):
        adapt.estimate_errors(nodal, XB)
    with pytest.raises(ValueError, match="SpaceTimeNet"):
        adapt.compress(torch.nn.Linear(4, 3), XB, 0.1)
    for tol in (-0.1, float("nan"), "big"):
        with pytest.raises(ValueError, match="tol"):
            adapt.compress(model, XB, tol)
    with pytest.raises(ValueError, match="metric"):
        adapt.compress(model, XB, 0.1, metric="f1")
    with pytest.raises(ValueError, match="cost"):
        adapt.compress(model, XB, 0.1, cost="flops")
    with pytest.raises(ValueError, match="labels"):
        adapt.compress(model, XB, 0.1, metric="accuracy")
    with pytest.raises(ValueError, match="features"):
        adapt.compress(model, torch.randn(5, 7), 0.1)
    with pytest.raises(ValueError, match="data"):
        adapt.compress(model, [1, 2, 3], 0.1)
    with pytest.raises(ValueError, match="norm"):
        adapt.estimate_errors(model, XB, norm="l3")
    with pytest.raises(ValueError, match="budget"):
        adapt.refine_where(model, XB, adapt.model_macs(model) - 1)
    with pytest.raises(ValueError, match="min_nodes"):
        adapt.compress(model, XB, 0.1, min_nodes=0)


def test_the_named_norms_and_costs():
    from spacetime_nets.adapt._common import _cost_fn, _distance

    assert adapt.NORMS == ("max", "rms") and isinstance(adapt.NORMS, tuple)
    a = torch.tensor([[1.0, -3.0], [0.0, 2.0]])
    b = torch.zeros(2, 2)
    assert _distance(a, b, "max") == 3.0
    assert _distance(a, b, "rms") == pytest.approx(math.sqrt(14.0 / 4.0))
    assert _cost_fn("macs") is adapt.model_macs
    for bad in ("flops", 3, None):
        with pytest.raises(ValueError, match=r"^cost: expected 'macs' or a callable model"):
            _cost_fn(bad)


# ---- the command line's library function ----------------------------------------------------
def test_compress_run_writes_schedule_and_an_equivalent_resnet(tmp_path):
    from spacetime_nets.cli import main
    from spacetime_nets.export import load_resnet
    from spacetime_nets.runs import load_run

    run = tmp_path / "run"
    args = ["train", "--dataset", "circles", "--kernel", "basis", "--modes", "4", "--epochs", "2"]
    args += ["--samples", "200", "--widths", "9,5", "--steps", "4", "--out", str(run), "--quiet"]
    assert main(args) == 0
    info = adapt.compress_run(run, 0.05, out=tmp_path / "small", metric="output")
    sched = GridSchedule.from_json(tmp_path / "small" / "schedule.json")
    model = load_run(run).model
    small = model.with_schedule(sched)
    assert adapt.model_macs(small) == info.macs_after <= info.macs_before
    resnet = torch.export.load(info.files["resnet"]).module()
    x = torch.rand(30, 2) * 2 - 1
    with torch.no_grad():
        assert _maxdiff(resnet(x), small(x)) < 1e-4
    assert (tmp_path / "small" / "compress.json").is_file()
    with pytest.raises(ValueError, match="split"):
        adapt.compress_run(run, 0.05, split="holdout")
    with pytest.raises(ValueError, match="^export_format: expected 'export' or 'torchscript'"):
        adapt.compress_run(run, 0.05, export_format="onnx")
    ts = adapt.compress_run(
        run, 0.05, out=tmp_path / "ts", metric="output", export_format="torchscript"
    )
    assert ts.files["resnet"] == str(tmp_path / "ts" / "resnet.ts.pt")
    small = model.with_schedule(GridSchedule.from_json(tmp_path / "ts" / "schedule.json"))
    with torch.no_grad():
        assert _maxdiff(load_resnet(ts.files["resnet"])(x), small(x)) < 1e-4


def test_operator_model_keeps_the_grid_its_input_lives_on():
    # a continuous CNN (windowed conv kernel, channels) reading values on G_0 (identity lift)
    # and answering a function on G_K: outputs compare on the trained model's last grid
    sched = GridSchedule.from_widths([17, 17, 9, 9], T=1.0)
    model = SpaceTimeNet(
        sched, 17, 1, kernel="conv", channels=2, radius=0.3, lift="identity",
        readout="function", form="inside", activation="tanh", seed=0,
    )  # fmt: skip
    g = torch.Generator().manual_seed(4)
    x = torch.sin(torch.linspace(0, 3, 17))[None, :] * torch.randn(16, 1, generator=g)
    rep = adapt.estimate_errors(model, x, totals=False)
    # G_0 is the data's grid; G_1 and G_2 matter; a finer G_K only adds nodes between the
    # ones the output is compared on, whose values it leaves exactly as they were
    assert rep.space[0] == 0.0 and rep.space[1] > 0 and rep.space[2] > 0
    assert rep.space[3] < 1e-6
    small, info = adapt.compress(model, x, 0.01)
    assert small.schedule.grids[0].same_as(sched.grids[0])
    with torch.no_grad():
        d = _maxdiff(small(x, output_grid=sched.grids[-1]), model(x))
    assert d <= 0.01 and info.macs_after <= info.macs_before


@pytest.mark.parametrize("kind", ["conv", "spectral"])
def test_stationary_kernels_constant_on_the_steps_keep_the_stepper_order(kind):
    # two pieces in t: constant within every step of K = 2, 4, 8 steps, so the continuum model
    # is the same for all K and RK4's error against K = 64 must fall as dt^4
    from spacetime_nets.kernels import ConvKernel, SpectralKernel

    rule = "periodic" if kind == "spectral" else "trapezoid"
    gen = torch.Generator().manual_seed(0)
    if kind == "conv":
        kern = ConvKernel((0.0, 1.0), channels=2, radius=0.3, pieces=2, pointwise=True,
                          init_scale=2.0, generator=gen)  # fmt: skip
    else:
        kern = SpectralKernel((0.0, 1.0), channels=2, modes=4, pieces=2, init_scale=2.0,
                              generator=gen)  # fmt: skip
    kern = kern.double()
    x = torch.randn(3, 1, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def build(K: int) -> SpaceTimeNet:
        sched = GridSchedule.constant(16, K, rule=rule)
        return SpaceTimeNet(sched, None, 1, kernel=kern, form="inside", activation="tanh",
                            method="rk4", lift="identity", readout="function", channels=2,
                            seed=0).double()  # fmt: skip

    with torch.no_grad():
        ref = build(64)(x)
    with torch.no_grad():
        errs = [float((build(K)(x) - ref).abs().max()) for K in (2, 4, 8)]
    orders = [math.log2(a / b) for a, b in zip(errs[:-1], errs[1:])]
    assert all(o > 3.5 for o in orders), (errs, orders)
    assert adapt.time_order(build(4)) == 4
    smooth = ConvKernel((0.0, 1.0), channels=2, radius=0.3, time_degree=1, generator=gen)
    model = SpaceTimeNet(GridSchedule.constant(16, 4), None, 1, kernel=smooth, method="rk4",
                         lift="identity", readout="function", channels=2)  # fmt: skip
    assert adapt.time_order(model) == 1  # coefficients linear in t: frozen at t_k, first order
