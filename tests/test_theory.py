"""Homogeneity, the scaling lemma, horizon sweeps, turnpike profiles and the experiments."""

from __future__ import annotations

import argparse
import csv
import math

import numpy as np
import pytest
import torch

from grids import GridSchedule
from spacetime_nets import (
    NeuralODE,
    SpaceTimeNet,
    experiments,
    fullbatch,
    objectives,
    tables,
    theory,
)

DT = torch.float64


def _f64(model):
    """The model in float64 with its grid buffers rebuilt from the (float64) schedule."""
    model = model.double()
    return model.rescale_horizon(model.T)


def _hourglass(K: int, T: float, outer: int = 9, waist: int = 5) -> GridSchedule:
    widths = [round(outer + (waist - outer) * (1 - abs(2 * k / K - 1))) for k in range(K + 1)]
    return GridSchedule.moving(widths, T=T)


def _ode(form, act, T=2.0, steps=6, seed=0):
    return NeuralODE(
        2, T=T, steps=steps, form=form, activation=act, out_features=2, augment=2, seed=seed
    ).double()


def _st(kernel, form, act, T=2.0, K=8, seed=0):
    m = SpaceTimeNet(
        _hourglass(K, T),
        2,
        2,
        kernel=kernel,
        form=form,
        activation=act,
        lift="linear",
        modes=None if kernel == "nodal" else 4,  # a nodal kernel reads no modes
        seed=seed,
    )
    return _f64(m)


def _x(n=9, seed=0):
    return 1.5 * torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=DT)


HOMOGENEOUS = [
    ("ode", "inside", "tanh"),
    ("ode", "inside", "sigmoid"),
    ("ode", "outside", "relu"),
    ("ode", "outside", "leaky_relu"),
    ("basis", "inside", "tanh"),
    ("basis", "outside", "relu"),
    ("nodal", "inside", "sigmoid"),
    ("nodal", "outside", "leaky_relu"),
]
NON_HOMOGENEOUS = [
    ("ode", "outside", "tanh"),
    ("ode", "bottleneck", "relu"),
    ("basis", "outside", "tanh"),
    ("nodal", "bottleneck", "tanh"),
]


def _model(kind, form, act, T=2.0):
    return _ode(form, act, T) if kind == "ode" else _st(kind, form, act, T)


# --------------------------------------------------------------------------- scaling lemma
@pytest.mark.parametrize("kind,form,act", HOMOGENEOUS)
@pytest.mark.parametrize("T_new", [1.0, 0.25, 3.7, 32.0])
def test_scaling_lemma_exact(kind, form, act, T_new):
    m = _model(kind, form, act)
    x = _x()
    new = theory.rescale_horizon(m, T_new)
    assert new.T == pytest.approx(T_new, rel=1e-15)
    assert m.T == 2.0  # the original is untouched
    with torch.no_grad():
        a, b = m(x), new(x)
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12 * float(a.abs().max()))
        # int_0^T_new |v|^2 = (T / T_new) int_0^T |u|^2
        l_old, l_new = objectives.l2_control(m).item(), objectives.l2_control(new).item()
        assert l_new == pytest.approx(l_old * 2.0 / T_new, rel=1e-12)
        # the whole trajectory is time-rescaled: the same states at t_k * T_new / T
        s_old, s_new = m.trajectory(x), new.trajectory(x)
        for u, v in zip(s_old.states, s_new.states):
            torch.testing.assert_close(v, u, rtol=1e-12, atol=1e-12)
        assert np.allclose(np.array(s_new.times), np.array(s_old.times) * T_new / 2.0, rtol=1e-14)


@pytest.mark.parametrize("K,T,T_new", [(10, 3.0, 1.0), (20, 1.0, 2.0), (30, 5.0, 0.7)])
def test_scaling_lemma_exact_basis_kernel_any_step_count(K, T, T_new):
    """Piecewise-constant basis coefficients follow their steps under rescaling, whatever the
    rounding of t_k / T."""
    m = _f64(
        SpaceTimeNet(
            GridSchedule.moving([6] * (K + 1), T=T),
            2,
            2,
            kernel="basis",
            form="inside",
            activation="tanh",
            lift="linear",
            modes=3,
            seed=1,
        )
    )
    x = _x()
    with torch.no_grad():
        a, b = m(x), theory.rescale_horizon(m, T_new)(x)
    torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12 * float(a.abs().max()))


@pytest.mark.parametrize("kind,form,act", NON_HOMOGENEOUS)
def test_scaling_lemma_fails_for_non_homogeneous_fields(kind, form, act):
    m = _model(kind, form, act)
    x = _x()
    assert not theory.is_homogeneous(m)
    with pytest.raises(ValueError, match="homogeneous"):
        theory.rescale_horizon(m, 1.0)
    new = theory.rescale_horizon(m, 1.0, strict=False)
    with torch.no_grad():
        diff = float((m(x) - new(x)).abs().max())
    assert diff > 1e-3


def test_scaling_lemma_against_hand_written_resnets():
    """Independent reference: K Euler steps of size T/K with u_k against K steps of size 1/K
    with T u_k, written out with explicit loops (inside form, tanh)."""
    T, K = 3.0, 5
    m = NeuralODE(2, T=T, steps=K, form="inside", activation="tanh", augment=1, seed=2).double()
    Ws = [w.detach() for w in m.kernel.weight]
    bs = [b.detach() for b in m.kernel.bias]

    def run(x, dt, scale):
        for k in range(K):
            x = x + dt * scale * (torch.tanh(x) @ Ws[k].T + bs[k])
        return x

    x0 = torch.cat([_x(6, 3), torch.zeros(6, 1, dtype=DT)], 1)
    a = run(x0, T / K, 1.0)
    b = run(x0, 1.0 / K, T)
    torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)
    with torch.no_grad():
        torch.testing.assert_close(m(_x(6, 3)), a, rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(
            theory.rescale_horizon(m, 1.0)(_x(6, 3)), b, rtol=1e-12, atol=1e-12
        )
    # and for a non-homogeneous field the same two ResNets differ
    c = x0
    for k in range(K):
        c = c + (1.0 / K) * torch.tanh(T * (c @ Ws[k].T + bs[k]))
    d = x0
    for k in range(K):
        d = d + (T / K) * torch.tanh(d @ Ws[k].T + bs[k])
    assert float((c - d).abs().max()) > 1e-3


def test_rescale_horizon_validation():
    m = _ode("inside", "tanh")
    for bad in (0.0, -1.0, float("nan"), float("inf"), "x"):
        with pytest.raises(ValueError, match="T_new"):
            theory.rescale_horizon(m, bad)
    with pytest.raises(ValueError, match="model"):
        theory.rescale_horizon(torch.nn.Linear(2, 2), 1.0)
    theory.rescale_horizon(m, 1.0, x=_x())  # checked outputs pass
    with pytest.raises(ValueError, match="outputs differ"):
        theory.rescale_horizon(_ode("outside", "tanh"), 1.0, strict=False, x=_x())


# --------------------------------------------------------------------------- homogeneity
@pytest.mark.parametrize(
    "form,act,expected",
    [
        ("inside", "tanh", True),
        ("inside", "softplus", True),
        ("outside", "relu", True),
        ("outside", "leaky_relu", True),
        ("outside", "identity", True),
        ("outside", "tanh", False),
        ("outside", "sigmoid", False),
        ("outside", "softplus", False),
        ("bottleneck", "relu", False),
        ("bottleneck", "identity", False),
    ],
)
def test_is_homogeneous_rule_and_probe(form, act, expected):
    assert theory.is_homogeneous(form, act) is expected
    assert theory.is_homogeneous(form, act, probe=False) is expected
    assert theory.is_homogeneous(_ode(form, act)) is expected


def test_is_homogeneous_custom_activations():
    def twice_relu(z):
        return 2.0 * torch.relu(z)

    assert theory.is_homogeneous("outside", twice_relu) is True
    assert theory.is_homogeneous("outside", torch.sin) is False
    assert theory.is_homogeneous(_ode("outside", twice_relu)) is True


def test_is_homogeneous_detects_a_mislabelled_activation():
    m = _ode("outside", "relu")
    m.act = torch.tanh  # labelled relu, computes tanh
    with pytest.raises(ValueError, match="probe"):
        theory.is_homogeneous(m)
    m = _ode("outside", "tanh")
    m.act = torch.relu  # labelled tanh, computes relu
    with pytest.raises(ValueError, match="probe"):
        theory.is_homogeneous(m)
    assert theory.is_homogeneous(m, probe=False) is False


def test_is_homogeneous_probe_is_not_fooled_by_zero_controls():
    m = _ode("outside", "tanh")
    with torch.no_grad():
        for p in theory.control_parameters(m):
            p.zero_()
    assert theory.is_homogeneous(m) is False
    assert theory.is_homogeneous(_st("basis", "outside", "relu")) is True


def test_is_homogeneous_argument_errors():
    with pytest.raises(ValueError, match="activation"):
        theory.is_homogeneous("outside")
    with pytest.raises(ValueError, match="activation"):
        theory.is_homogeneous(_ode("inside", "tanh"), "tanh")
    with pytest.raises(ValueError, match="form"):
        theory.is_homogeneous("sideways", "relu")
    with pytest.raises(ValueError, match="model_or_form"):
        theory.is_homogeneous(3)


# --------------------------------------------------------------------------- fits
def test_fit_exponential_rate_recovers_mu_and_skips_the_floor():
    t = np.linspace(0, 10, 41)
    v = 3.0 * np.exp(-0.7 * t)
    v[t > 8] = 0.0  # at the floor
    mu, C, n = theory.fit_exponential_rate(t, v, (2.0, 10.0), floor=1e-14)
    assert mu == pytest.approx(0.7, rel=1e-10) and C == pytest.approx(3.0, rel=1e-10)
    assert n == int(((t >= 2) & (t <= 8)).sum())
    mu, _, n = theory.fit_exponential_rate(t, v, (9.0, 10.0), floor=1e-14)
    assert math.isnan(mu) and n == 0


def test_turnpike_profile_of_a_known_model():
    """A flow that does nothing after t = 1 (zero controls): E is constant there, |u| = 0."""
    m = NeuralODE(2, T=4.0, steps=8, form="inside", activation="tanh", out_features=2).double()
    with torch.no_grad():
        for k in range(2, 8):
            m.kernel.weight[k].zero_()
            m.kernel.bias[k].zero_()
    x, y = _x(7), torch.tensor([0, 1, 0, 1, 1, 0, 0])
    pr = theory.turnpike_profile(m, x, y, loss="l2", threshold=1e9)
    assert pr.times.shape == (9,) and pr.risk.shape == (9,) and pr.control.shape == (8,)
    assert np.all(pr.control[2:] == 0) and np.all(pr.control[:2] > 0)
    assert np.allclose(pr.risk[2:], pr.risk[2])
    assert pr.mu == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(pr.mu_u)  # every |u| in the window is at the floor
    assert pr.t_hit == 0.0
    norms = objectives.control_norms(m)
    assert pr.control[1] == pytest.approx(math.sqrt(float(norms[1].detach())), rel=1e-14)
    pr = theory.turnpike_profile(m, x, y, threshold=1e-12)
    assert pr.t_hit is None


def _floored_profile(T: float, floor: float = 1e-3) -> theory.TurnpikeProfile:
    """E(x(t)) = max(exp(-t), floor), |u(t)| = exp(-t): one decay for every T, with the risk
    on a floor (as the lam-floor of a trained profile) from t = log(1 / floor) on."""
    t = np.linspace(0.0, T, int(round(8 * T)) + 1)
    risk = np.maximum(np.exp(-t), floor)
    ctrl = np.exp(-t[:-1])
    win = (0.2 * T, 0.8 * T)
    mu, C, n = theory.fit_exponential_rate(t, risk, win, 1e-14)
    mu_u, C_u, _ = theory.fit_exponential_rate(t[:-1], ctrl, win, 1e-14)
    return theory.TurnpikeProfile(
        T=T, times=t, risk=risk, control=ctrl, mu=mu, C=C, mu_u=mu_u, C_u=C_u, t_hit=None,
        threshold=1e-4, window=win, n_fit=n, floor=1e-14,
    )  # fmt: skip


def test_turnpike_rates_are_reported_on_the_common_arc():
    """The legend and the tables give the rate fitted on one arc for all T (here mu = 1 for
    every T); the own-arc fits, which fall with T once the arc reaches the floor, are only a
    diagnostic column."""
    from spacetime_nets import plotting

    profs = [_floored_profile(T) for T in (5.0, 10.0, 20.0)]
    common = (1.0, 4.0)
    for pr in profs:
        pr.fit_common(common)
        # an independent least-squares fit of log E on the arc: slope -1 exactly
        keep = (pr.times >= 1.0 - 1e-12) & (pr.times <= 4.0 + 1e-12)
        A = np.stack([np.ones(keep.sum()), -pr.times[keep]], axis=1)
        (_, mu_ref), *_ = np.linalg.lstsq(A, np.log(pr.risk[keep]), rcond=None)
        assert pr.mu_common == pytest.approx(mu_ref, rel=1e-10)
        assert pr.mu_common == pytest.approx(1.0, rel=1e-10)
        assert pr.mu_u_common == pytest.approx(1.0, rel=1e-10)
    assert profs[-1].mu < 0.6  # the own-arc fit of T = 20 sits on the floor: misleading
    rows = [{"problem": "tp", **pr.row()} for pr in profs]
    res = experiments.TurnpikeResult(
        [5.0, 10.0, 20.0], 1e-2, "l2", 1e-4, profs, profs, rows, {}, common
    )
    assert res.mu_ratio() == pytest.approx(1.0, rel=1e-10)
    assert res.mu_ratio("tp", "mu") > 1.5
    assert experiments.TURNPIKE_COLUMNS.index("mu_common") < experiments.TURNPIKE_COLUMNS.index(
        "mu_own_arc"
    )
    assert rows[0]["common_arc"] == "[1, 4]" and rows[2]["own_arc"] == "[4, 16]"
    text = res.summary()
    assert "common arc t in [1, 4]" in text and "T=20: 1 " in text
    fig = plotting.plot_turnpike(res)
    legend = fig.axes[0].get_legend()
    assert "[1, 4]" in legend.get_title().get_text()
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["T=5, mu=1.00", "T=10, mu=1.00", "T=20, mu=1.00"]
    labels_u = [t.get_text() for t in fig.axes[2].get_legend().get_texts()]
    assert labels_u == ["T=5, mu=1.00", "T=10, mu=1.00", "T=20, mu=1.00"]


# --------------------------------------------------------------------------- training plumbing
def _tiny_data(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g, dtype=DT)
    y = (x.norm(dim=1) > 1.0).long()
    return x, y


def test_train_objective_stops_and_reports():
    m = _ode("inside", "tanh", T=1.0, steps=3)
    x, y = _tiny_data()
    params = fullbatch.freeze_all_but_controls(m, "controls")
    J = fullbatch.erm_objective(m, x, y, 1e-2, "mse")
    j0 = float(J().detach())
    info = fullbatch.train_objective(params, J, max_iter=200, tol=1e-8)
    assert info.objective < j0 and info.steps <= 200 and info.evals >= info.steps
    assert info.stop_reason in fullbatch.STOP_REASONS
    assert info.history[0] == pytest.approx(j0) and info.history[-1] <= info.history[0]
    info = fullbatch.train_objective(params, J, optimizer="adam", max_iter=5, lr=1e-3)
    assert info.steps == 5 and info.stop_reason == "max_iter"
    with pytest.raises(ValueError, match="optimizer"):
        fullbatch.train_objective(params, J, optimizer="sgd")
    assert all(not p.requires_grad for p in m.parameters() if id(p) not in map(id, params))


def test_fullbatch_names_have_one_entry_each_and_others_are_refused():
    assert tuple(fullbatch._OPTIMIZERS) == fullbatch.FULLBATCH_OPTIMIZERS
    m = _ode("inside", "tanh", T=1.0, steps=3)
    every = fullbatch.freeze_all_but_controls(m, "all")
    assert [id(p) for p in every] == [id(p) for p in m.parameters()]
    ctrl = fullbatch.freeze_all_but_controls(m, "controls")
    assert {id(p) for p in ctrl} == {id(p) for p in theory.control_parameters(m)}
    assert 0 < len(ctrl) < len(every)
    for bad in ("some", ["all"], None):
        with pytest.raises(ValueError, match="train: expected 'controls' or 'all'"):
            fullbatch.freeze_all_but_controls(m, bad)
    J = fullbatch.erm_objective(m, *_tiny_data(), 1e-2, "mse")
    for bad in (["adam"], None, 3):
        with pytest.raises(ValueError, match="optimizer: expected one of lbfgs, adam"):
            fullbatch.train_objective(ctrl, J, optimizer=bad)
    for optimizer in fullbatch.FULLBATCH_OPTIMIZERS:  # max_iter=0: J and |grad J| only
        info = fullbatch.train_objective(ctrl, J, optimizer=optimizer, max_iter=0)
        assert info.steps == 0 and info.evals == 2 and info.history == [info.objective]


def test_horizon_sweep_plumbing(tmp_path):
    base = _ode("inside", "tanh", T=1.0, steps=3)
    data = _tiny_data()
    sw = experiments.horizon_sweep(
        lambda T: theory.rescale_horizon(base, T), data, [1, 2, 4], 1e-2, max_iter=25
    )
    assert [r["T"] for r in sw.rows] == [1.0, 2.0, 4.0]
    for r in sw.rows:
        assert set(experiments.SWEEP_COLUMNS) <= set(r)
        for c in experiments.SWEEP_COLUMNS:
            if c != "stop_reason":
                assert math.isfinite(float(r[c])), c
        assert r["v_norm2"] == pytest.approx(r["T_l2_control"], rel=1e-10)
        assert r["T_l2_control"] == pytest.approx(r["T"] * r["l2_control"], rel=1e-14)
        assert r["objective"] == pytest.approx(r["error"] + 1e-2 * r["l2_control"], rel=1e-10)
    assert math.isfinite(sw.slope) and sw.T_l2_ratio >= 1.0
    assert len(sw.models) == 3 and sw.models[2].T == 4.0
    path = tmp_path / "sweep.csv"
    sw.to_csv(path)
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(experiments.SWEEP_COLUMNS) and len(rows) == 3
    assert float(rows[1]["error"]) == sw.rows[1]["error"]
    assert "slope" in sw.summary()
    # the readout stays fixed: only the controls are trained
    ro = base.readout_weight.clone()
    assert torch.equal(sw.models[0].readout_weight, ro)
    warm = experiments.horizon_sweep(
        lambda T: theory.rescale_horizon(base, T),
        data,
        [1, 2],
        1e-2,
        max_iter=5,
        warm_start=True,
    )
    assert warm.models[1].T == 2.0
    with pytest.raises(ValueError, match="increasing"):
        experiments.horizon_sweep(lambda T: base, data, [2, 1], 1e-2)
    with pytest.raises(ValueError, match="make_model"):
        experiments.horizon_sweep(lambda T: base, data, [2.0], 1e-2, max_iter=1)


def test_scaling_check_on_trained_models():
    """Training at (T, lam) and at (1, lam / T) from matching initialisations converges to the
    same minimiser in different coordinates."""
    base = NeuralODE(
        2,
        T=1.0,
        steps=3,
        form="inside",
        activation="tanh",
        out_features=2,
        augment=1,
        fixed_readout=True,
        seed=0,
    ).double()
    chk = experiments.scaling_check(
        theory.rescale_horizon(base, 4.0), _tiny_data(10), 1e-2, max_iter=3000, tol=1e-12
    )
    assert chk.T == 4.0
    assert chk.rel_objective < 1e-8
    assert chk.rel_outputs < 1e-6
    assert chk.rel_controls < 1e-6
    assert chk.lemma_objective < 1e-12 and chk.lemma_grad < 1e-6
    assert set(chk.row()) >= {"rel_objective", "rel_outputs", "rel_controls", "lemma_grad"}


def test_train_turnpike_plumbing(tmp_path):
    def build(T):
        return NeuralODE(
            2,
            T=T,
            steps=round(2 * T),
            form="inside",
            activation="tanh",
            out_features=2,
            augment=1,
            fixed_readout=True,
            init_scale=0.1,
            seed=0,
        ).double()

    res = experiments.train_turnpike(build, _tiny_data(), [1.0, 2.0], 1e-2, loss="l2", max_iter=10)
    assert [pr.T for pr in res.tp] == [1.0, 2.0] and [pr.T for pr in res.erm] == [1.0, 2.0]
    for pr in res.tp + res.erm:
        K = len(pr.times) - 1
        assert K == round(2 * pr.T) and pr.risk.shape == (K + 1,) and pr.control.shape == (K,)
        assert np.all(np.isfinite(pr.risk)) and np.all(pr.control >= 0)
    assert [r["problem"] for r in res.rows] == ["tp", "erm", "tp", "erm"]
    # the trained turnpike model: objective = E(T) + int E + lam * l2, recomputed
    m = res.models["tp"][1]
    x, y = _tiny_data()
    with torch.no_grad():
        J = (
            objectives.empirical_risk(m(x), y, "l2")
            + objectives.turnpike_cost(m, x, y, "l2")
            + 1e-2 * objectives.l2_control(m)
        )
    assert res.rows[2]["objective"] == pytest.approx(float(J), rel=1e-10)
    res.to_csv(tmp_path / "tp.csv")
    res.profiles_to_csv(tmp_path / "profiles.csv")
    with open(tmp_path / "tp.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 4
    with open(tmp_path / "profiles.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * (3 + 5)
    assert "turnpike" in res.summary().lower()
    # the reported rate of every T: fitted on [0.2, 0.8] x the shortest horizon
    assert res.common_window == pytest.approx((0.2, 0.8))
    for pr, row in zip(res.tp, res.rows[::2]):
        assert pr.common_window == res.common_window and row["common_arc"] == "[0.2, 0.8]"
        ref, _, _ = theory.fit_exponential_rate(pr.times, pr.risk, (0.2, 0.8), pr.floor)
        for a, b in (
            (row["mu_common"], pr.mu_common),
            (row["mu_own_arc"], pr.mu),
            (ref, pr.mu_common),
        ):
            assert a == b or (math.isnan(a) and math.isnan(b))


# --------------------------------------------------------------------------- experiments
def test_run_asymptotics_fast(tmp_path, capsys):
    parser = experiments.add_asymptotics_args(argparse.ArgumentParser())
    args = parser.parse_args(["--out", str(tmp_path), "--fast"])
    assert experiments.run_asymptotics(args) == 0
    for name in (
        "asymptotics.csv",
        "asymptotics_summary.csv",
        "scaling.csv",
        "asymptotics_circles.png",
        "trajectories_circles_ode-inside-tanh.png",
        "trajectories_circles_st-basis-hourglass.png",
    ):
        assert (tmp_path / name).is_file() and (tmp_path / name).stat().st_size > 0, name
    with open(tmp_path / "asymptotics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 * len(experiments.MODELS)
    assert "slope" in capsys.readouterr().out


def test_run_turnpike_fast(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPACETIME_FAST", "1")
    parser = experiments.add_turnpike_args(argparse.ArgumentParser())
    args = parser.parse_args(["--out", str(tmp_path), "--models", "ode-outside-relu"])
    assert experiments.run_turnpike(args) == 0
    for name in (
        "turnpike.csv",
        "turnpike_summary.csv",
        "turnpike_profiles_circles_ode-outside-relu.csv",
        "turnpike_circles_ode-outside-relu.png",
        "trajectories_circles_ode-outside-relu.png",
    ):
        assert (tmp_path / name).is_file() and (tmp_path / name).stat().st_size > 0, name
    with open(tmp_path / "turnpike.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and {r["problem"] for r in rows} == {"tp", "erm"}
    assert "mu" in capsys.readouterr().out


@pytest.mark.parametrize(
    "command, argv, expect",
    [
        ("turnpike", ["--dt", "0"], "--dt"),
        ("turnpike", ["--Ts", "5", "-1"], "--Ts"),
        ("asymptotics", ["--steps", "0"], "--steps"),
        ("asymptotics", ["--lam", "nan"], "--lam"),
        ("asymptotics", ["--fast", "--Ts", "1", "2"], "--fast chooses its own sizes"),
        ("turnpike", ["--fast", "--n", "50", "--dt", "0.1"], "would ignore --n, --dt"),
    ],
)
def test_experiment_options_are_checked_before_any_work(command, argv, expect, capsys):
    adder = getattr(experiments, f"add_{command}_args")
    args = adder(argparse.ArgumentParser()).parse_args(argv)
    with pytest.raises(ValueError, match=expect):
        experiments.check_args(args, command)
    assert experiments.main([command, *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expect in err[0] and "error" in err[0]


def test_fast_mode_from_the_environment_refuses_explicit_sizes(monkeypatch):
    monkeypatch.setenv("SPACETIME_FAST", "1")
    args = experiments.add_turnpike_args(argparse.ArgumentParser()).parse_args(["--dt", "0.1"])
    with pytest.raises(ValueError, match="SPACETIME_FAST=1 chooses its own sizes"):
        experiments.check_args(args, "turnpike")
    plain = experiments.add_turnpike_args(argparse.ArgumentParser()).parse_args([])
    experiments.check_args(plain, "turnpike")  # defaults are fine


def test_make_model_validates():
    with pytest.raises(ValueError, match="model"):
        experiments.make_model("resnet", 2, 2, 1.0, 4)
    m = experiments.make_model("st-basis-hourglass", 2, 2, 2.0, 8, modes=3, outer=6, waist=4)
    assert m.T == 2.0 and m.schedule.widths[4] == 4 and theory.is_homogeneous(m)


@pytest.mark.slow
def test_driver_modules_import_first_without_a_cycle():
    import subprocess
    import sys

    code = (
        "import spacetime_nets.experiments.turnpike as t, spacetime_nets.fullbatch as f; "
        "import spacetime_nets.theory as th; "
        "assert callable(th.rescale_horizon) and callable(t.train_turnpike) and "
        "callable(f.train_objective)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_tables_round_trip_and_alignment(tmp_path):
    rows = [{"T": 0.1, "name": "tp", "n": 3}, {"T": 1 / 3, "name": "erm", "n": 12}]
    path = tmp_path / "sub" / "t.csv"
    tables.write_csv(path, rows, ["T", "name"])
    with open(path, newline="") as fh:
        back = list(csv.DictReader(fh))
    assert [list(r) for r in back] == [["T", "name"]] * 2
    assert [float(r["T"]) for r in back] == [0.1, 1 / 3]  # every digit of the float
    text = tables.format_table(rows, ["name", "T", "n"])
    lines = text.splitlines()
    assert lines == ["name         T   n", "  tp       0.1   3", " erm  0.333333  12"]
    assert tables.format_arc((0.2, 0.8)) == "[0.2, 0.8]" and tables.format_arc(None) == ""


def test_drivers_seed_their_draws_without_changing_the_callers_random_state():
    from spacetime_nets.experiments import horizon_sweep

    data = _tiny_data()

    def make(T):  # a model drawn from torch's global generator
        return _ode("inside", "tanh", T=T, steps=2, seed=None)

    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = horizon_sweep(make, data, [1.0], 1e-2, max_iter=3, seed=7)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's stream is untouched
    torch.manual_seed(999)  # another caller state: the same seed gives the same sweep
    b = horizon_sweep(make, data, [1.0], 1e-2, max_iter=3, seed=7)
    assert a.rows[0]["objective"] == b.rows[0]["objective"]


def test_turnpike_result_names_the_problem_it_does_not_know():
    res = experiments.TurnpikeResult([1.0], 0.0, "l2", 1e-2, [], [], [])
    for method in (res.mu_ratio, res.t_hit_spread):
        with pytest.raises(ValueError, match="problem: expected 'tp' or 'erm', got 'ERM'"):
            method("ERM")
