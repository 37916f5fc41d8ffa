"""Operator learning through ``fit`` and the command line: the relative L2 loss, the scalar
normalisers inside the model (model.json, checkpoint, export), weight decay, the per-epoch
relative error and the trivial predictors' scores, evaluation at another resolution, and a
small Burgers run whose printed numbers are recomputed here with NumPy."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from torch import nn

from grids import GridSchedule
from spacetime_nets import NeuralODE, SpaceTimeNet, datasets, to_resnet
from spacetime_nets.adapt import compress, model_macs
from spacetime_nets.cli import main
from spacetime_nets.objectives import LOSSES, loss_per_sample, relative_error
from spacetime_nets.runs import load_run
from spacetime_nets.training import (
    baselines,
    evaluate,
    fit,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
)
from spacetime_nets.training.checkpoint import _digest

NORMS = ("in_shift", "in_scale", "out_shift", "out_scale")


def np_rel(pred, y, p=2.0) -> np.ndarray:
    """|pred_i - y_i|_p / |y_i|_p per sample, in float64 NumPy."""
    d = np.asarray(pred, dtype=np.float64).reshape(len(y), -1)
    t = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    return np.linalg.norm(d - t, ord=p, axis=1) / np.linalg.norm(t, ord=p, axis=1)


def spectral_model(n: int = 16, seed: int = 0, channels: int = 4) -> SpaceTimeNet:
    sched = GridSchedule.constant(n, 2, T=1.0, domain=(0.0, 1.0), rule="periodic")
    return SpaceTimeNet(
        sched,
        None,
        1,
        kernel="spectral",
        form="inside",
        activation="gelu",
        lift="identity",
        readout="function",
        channels=channels,
        modes=4,
        seed=seed,
    )


def smooth_pairs(n_rows: int = 40, n: int = 16, seed: int = 0):
    """x: random periodic functions; y = 3 + shift of x (a nonzero mean and scale)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / n
    a = torch.randn(n_rows, 3, 1, generator=g)
    x = sum(a[:, k] * torch.sin(2 * torch.pi * (k + 1) * t) for k in range(3)) + 0.5
    y = 3.0 + 2.0 * torch.roll(x, 2, dims=1)
    return x, y


# ------------------------------------------------------------------------------ the loss


def test_rel_l2_and_rel_lp_equal_numpy():
    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(7, 3, 5, generator=g), torch.randn(7, 3, 5, generator=g)
    got = loss_per_sample(z.flatten(1), y.flatten(1), "rel_l2")
    assert np.allclose(got.numpy(), np_rel(z, y), rtol=1e-6)
    assert np.allclose(relative_error(z, y).numpy(), np_rel(z, y), rtol=1e-6)  # [B, c, n]
    got3 = loss_per_sample(z.flatten(1), y.flatten(1), "rel_lp", p=3.0)
    assert np.allclose(got3.numpy(), np_rel(z, y, 3.0), rtol=1e-6)
    assert {"rel_l2", "rel_lp"} <= set(LOSSES)
    with pytest.raises(ValueError, match="p: the rel_lp loss needs p >= 1"):
        loss_per_sample(z.flatten(1), y.flatten(1), "rel_lp")


def test_relative_losses_refuse_zero_targets_before_training():
    x, y = smooth_pairs(12)
    y[5] = 0.0
    with pytest.raises(ValueError, match="train: the target at row 5 is zero everywhere"):
        fit(spectral_model(), (x, y), epochs=1, batch_size=4, loss="rel_l2", progress=False)
    with pytest.raises(ValueError, match="data: the target at row 5"):
        evaluate(spectral_model(), (x, y), loss="rel_l2")
    # the loss itself does not turn them into NaN (a huge value instead, never silent)
    out = relative_error(torch.ones(2, 3), torch.zeros(2, 3))
    assert not torch.isnan(out).any() and (out > 1e30).all()


# ------------------------------------------------------------------------------ normalisers


def test_normalizers_act_inside_the_model_and_are_checked():
    x, _ = smooth_pairs(6)
    plain, normed = spectral_model(), spectral_model()
    normed.set_normalizers(0.3, 2.0, -1.0, 4.0)
    with torch.no_grad():
        want = plain((x - 0.3) / 2.0) * 4.0 - 1.0
        assert torch.allclose(normed(x), want, atol=1e-6)
    assert normed.normalizers == {"x_mean": 0.30000001192092896, "x_std": 2.0,
                                  "y_mean": -1.0, "y_std": 4.0}  # fmt: skip
    for bad, match in (((0.0, 0.0), "x_std: expected a scale > 0"),
                       ((float("nan"),), "x_mean: expected a finite number")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            normed.set_normalizers(*bad)


def test_normalizers_follow_copies_and_the_export():
    d = datasets.burgers(n=12, grid_size=16, fine=64, modes=4, seed=0)
    model = spectral_model().set_normalizers(0.1, 0.5, -0.2, 0.01)
    fine = model.at_resolution(32)
    assert fine.normalizers == model.normalizers
    x32 = datasets.burgers(n=12, grid_size=32, fine=64, modes=4, seed=0).test.x
    with torch.no_grad():
        for m, x in ((model, d.test.x), (fine, x32)):
            exported = to_resnet(m)
            assert torch.allclose(exported(x), m(x), atol=1e-5)
            assert float(exported.out_scale) == pytest.approx(0.01)
        moved = model.with_schedule(GridSchedule.constant(24, 3, rule="periodic"))
        assert moved.normalizers == model.normalizers


def test_neural_ode_has_normalizers_too():
    x, y = smooth_pairs(24, n=4)
    ode = NeuralODE(4, steps=3, out_features=4, seed=0)
    fit(ode, (x, y), epochs=2, batch_size=8, normalize=True, progress=False)
    assert ode.normalizers["y_mean"] == pytest.approx(float(y.double().mean()), rel=1e-6)
    with torch.no_grad():
        assert torch.allclose(to_resnet(ode)(x), ode(x), atol=1e-5)


def test_a_state_without_normalizers_loads_as_the_identity(tmp_path):
    x, y = smooth_pairs(12)
    old = spectral_model(seed=1)
    path = save_checkpoint(tmp_path / "old.pt", old)
    doc = torch.load(path, weights_only=True)
    for k in NORMS:  # as a checkpoint written before the normalisers existed
        del doc["model"][k]
    doc["digest"] = _digest(doc)
    torch.save(doc, path)
    new = spectral_model(seed=2).set_normalizers(1.0, 2.0, 3.0, 4.0)
    load_model_state(new, path)
    assert new.normalizers == {"x_mean": 0.0, "x_std": 1.0, "y_mean": 0.0, "y_std": 1.0}
    with torch.no_grad():
        assert torch.equal(new(x), old(x))


def test_fit_normalize_uses_training_scalars_and_resume_keeps_them(tmp_path):
    x, y = smooth_pairs(40)
    train, val = (x[:32], y[:32]), (x[32:], y[32:])
    model = spectral_model()
    kw = {"batch_size": 8, "loss": "rel_l2", "progress": False, "lr": 1e-2}
    fit(model, train, val, epochs=1, normalize=True, out_dir=tmp_path / "run", **kw)
    n = model.normalizers
    xs, ys = train[0].double().numpy(), train[1].double().numpy()
    assert n["x_mean"] == pytest.approx(xs.mean(), abs=1e-6)
    assert n["x_std"] == pytest.approx(xs.std(ddof=1), rel=1e-6)
    assert n["y_mean"] == pytest.approx(ys.mean(), rel=1e-6)
    assert n["y_std"] == pytest.approx(ys.std(ddof=1), rel=1e-6)
    state = load_checkpoint(tmp_path / "run")["model"]
    assert [float(state[k]) for k in NORMS] == [n["x_mean"], n["x_std"], n["y_mean"], n["y_std"]]
    # resume: a fresh model takes them from the checkpoint, with or without normalize
    again = spectral_model()
    fit(again, train, val, epochs=2, normalize=True, out_dir=tmp_path / "run",
        resume=tmp_path / "run", **kw)  # fmt: skip
    assert again.normalizers == n
    # a run trained without them cannot continue with them (and the other way round)
    fit(spectral_model(), train, epochs=1, out_dir=tmp_path / "plain", **kw)
    with pytest.raises(ValueError, match="other normalisers.*x_mean 0 ->"):
        fit(spectral_model(), train, epochs=2, normalize=True, resume=tmp_path / "plain", **kw)
    hand = spectral_model().set_normalizers(5.0, 1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="other normalisers"):
        fit(hand, train, epochs=3, resume=tmp_path / "run", **kw)


def test_normalize_needs_a_model_with_normalizers_and_a_scale():
    x, y = smooth_pairs(12)
    with pytest.raises(ValueError, match="normalize: the model \\(Linear\\) has no scalar"):
        fit(nn.Linear(16, 16), (x, y), epochs=1, batch_size=4, normalize=True, progress=False)
    with pytest.raises(ValueError, match="normalize: the train targets y are constant"):
        fit(spectral_model(), (x, torch.ones_like(y)), epochs=1, batch_size=4,
            normalize=True, progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="normalize: expected True or False"):
        fit(spectral_model(), (x, y), epochs=1, batch_size=4, normalize="yes", progress=False)


# ------------------------------------------------------------------------------ weight decay


@pytest.mark.parametrize("name, cls", [("adam", "Adam"), ("adamw", "AdamW"), ("sgd", "SGD")])
def test_weight_decay_goes_to_the_named_optimizer(name, cls):
    x, y = smooth_pairs(12)
    seen = {}

    def grab(state):
        seen["opt"] = state.optimizer

    fit(spectral_model(), (x, y), epochs=1, batch_size=4, optimizer=name, weight_decay=0.01,
        progress=False, callbacks=[grab])  # fmt: skip
    assert type(seen["opt"]).__name__ == cls
    assert all(g["weight_decay"] == 0.01 for g in seen["opt"].param_groups)


def test_weight_decay_refuses_an_optimizer_object_and_bad_values():
    x, y = smooth_pairs(12)
    model = spectral_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="weight_decay: applies to a named optimiser"):
        fit(model, (x, y), epochs=1, batch_size=4, optimizer=opt, weight_decay=0.1,
            progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="weight_decay: expected a finite number >= 0"):
        fit(model, (x, y), epochs=1, batch_size=4, weight_decay=-1.0, progress=False)


def test_weight_decay_shrinks_the_weights_like_torch_adam():
    """fit's adam with weight_decay takes torch.optim.Adam(weight_decay=...)'s steps."""
    x, y = smooth_pairs(8)
    a, b = spectral_model(), spectral_model()
    fit(a, (x, y), epochs=1, batch_size=8, lr=1e-2, weight_decay=0.5, progress=False,
        loss="mse")  # fmt: skip
    opt = torch.optim.Adam(b.parameters(), lr=1e-2, weight_decay=0.5)
    loss = ((b(x) - y) ** 2).mean()
    loss.backward()
    opt.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-6)


# ------------------------------------------------------------------------------ metrics


def test_history_records_rel_l2_and_the_trivial_predictors():
    x, y = smooth_pairs(40)
    train, val = (x[:30], y[:30]), (x[30:], y[30:])
    model = spectral_model()
    h = fit(model, train, val, epochs=2, batch_size=8, lr=1e-2, normalize=True, progress=False)
    last = h[-1]
    with torch.no_grad():
        pred = model(val[0]).numpy()
    yv = val[1].double().numpy()
    assert last["val_rel_l2"] == pytest.approx(np_rel(pred, yv).mean(), rel=1e-5)
    ybar = train[1].double().numpy().mean(0)
    assert last["val_zero_loss"] == pytest.approx((yv**2).mean(), rel=1e-9)  # mse of 0
    assert last["val_mean_rel_l2"] == pytest.approx(
        np_rel(np.broadcast_to(ybar, yv.shape), yv).mean(), rel=1e-9
    )
    b = baselines(train, val, "rel_l2")
    assert b["zero_loss"] == pytest.approx(1.0)
    # classification: no relative error, no baselines
    labels = (x[:, 0] > 0.5).long()
    cls = SpaceTimeNet(GridSchedule.constant(16, 2), 16, 2, kernel="basis", lift="cells")
    h = fit(cls, (x, labels), (x, labels), epochs=1, batch_size=8, progress=False)
    assert h[-1]["val_rel_l2"] is None and h[-1]["val_mean_rel_l2"] is None


# ------------------------------------------------------------------------------ compress


def test_compress_reports_progress():
    x, _ = smooth_pairs(16, n=32)
    model = spectral_model(n=32).set_normalizers(0.5, 0.7, 3.0, 2.0)
    seen: list[dict] = []
    small, summary = compress(model, x, tol=1e-3, progress=seen.append)
    assert seen and seen[-1]["done"] and seen[-1]["trials"] == summary.evaluations
    assert all(s["seconds"] >= 0 for s in seen)
    assert [s["trials"] for s in seen] == sorted(s["trials"] for s in seen)
    assert small.normalizers == model.normalizers
    with pytest.raises(ValueError, match="progress: expected True, False or a callable"):
        compress(model, x, tol=1e-3, progress="loud")


# ------------------------------------------------------------------------------ the CLI

BURGERS = ["--dataset", "burgers", "--samples", "60", "--grid-size", "32", "--schedule",
           "constant", "--steps", "2", "--kernel", "spectral", "--channels", "8", "--modes", "8",
           "--activation", "gelu", "--loss", "rel_l2", "--lr", "1e-2", "--lr-schedule", "cosine",
           "--weight-decay", "1e-5", "--batch-size", "8", "--epochs", "5", "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def burgers_run(tmp_path_factory):
    """A small Burgers run by ``train`` (normalised by default) and what it printed."""
    out = tmp_path_factory.mktemp("op") / "burgers"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["train", *BURGERS, "--out", str(out)])
    assert code == 0
    return out, buf.getvalue()


def _printed(text: str, label: str) -> float:
    """The ``rel. L2`` printed for ``label`` (``val`` or ``test``) on the final line."""
    m = re.search(rf"\| {label} loss \S+ rel\. L2 (\S+)", text)
    assert m, text
    return float(m.group(1))


def test_cli_train_beats_the_trivial_predictors_and_prints_true_numbers(burgers_run):
    out, text = burgers_run
    run = load_run(out)
    data = datasets.burgers(n=60, grid_size=32, seed=0)
    with torch.no_grad():
        test_pred = run.model(data.test.x).numpy()
        val_pred = run.model(data.val.x).numpy()
    test_rel = np_rel(test_pred, data.test.y.numpy()).mean()
    val_rel = np_rel(val_pred, data.val.y.numpy()).mean()
    assert _printed(text, "test") == pytest.approx(test_rel, rel=1e-5)
    assert _printed(text, "val") == pytest.approx(val_rel, rel=1e-5)
    history = json.loads((out / "history.json").read_text())["records"]
    assert history[-1]["val_rel_l2"] == pytest.approx(val_rel, rel=1e-5)
    # clearly better than predicting 0 (rel. L2 1) and the mean training target
    ybar = data.train.y.double().numpy().mean(0)
    mean_rel = np_rel(np.broadcast_to(ybar, data.test.y.shape), data.test.y.numpy()).mean()
    assert test_rel < 0.5 and test_rel < 0.5 * mean_rel
    assert f"rel. L2 {mean_rel:.6g}" in text  # the baseline line, recomputed
    # the summary printed before training
    assert f"multiply-adds per sample: {model_macs(run.model):,}" in text
    params = sum(p.numel() * (2 if p.is_complex() else 1) for p in run.model.parameters())
    assert f"parameters: {params:,}" in text and "grids G_0..G_K: 32 32 32" in text


def test_cli_normalizers_round_trip_model_json_and_checkpoint(burgers_run, tmp_path):
    out, _ = burgers_run
    doc = json.loads((out / "model.json").read_text())
    assert doc["training"]["normalize"] is True and doc["training"]["weight_decay"] == 1e-5
    train = datasets.burgers(n=60, grid_size=32, seed=0).train
    norms = doc["normalizers"]
    assert norms["x_mean"] == pytest.approx(float(train.x.double().mean()), abs=1e-7)
    assert norms["y_std"] == pytest.approx(float(train.y.double().std()), rel=1e-6)
    state = load_checkpoint(out)["model"]
    assert [float(state[k]) for k in NORMS] == [norms[k] for k in ("x_mean", "x_std",
                                                                   "y_mean", "y_std")]  # fmt: skip
    assert load_run(out).model.normalizers == norms
    # a model.json that disagrees with its checkpoint is refused
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "last.pt").write_bytes((out / "last.pt").read_bytes())
    doc["normalizers"]["y_std"] *= 2
    (bad / "model.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="disagree with those of the checkpoint"):
        load_run(bad)


def test_cli_evaluate_and_export_equal_the_python_api(burgers_run, tmp_path, capsys):
    out, _ = burgers_run
    run = load_run(out)
    test = datasets.burgers(n=60, grid_size=32, seed=0).test
    ref = evaluate(run.model, test, "rel_l2")
    assert main(["evaluate", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["rel_l2"] == pytest.approx(ref["rel_l2"], rel=1e-9)
    assert res["loss"] == pytest.approx(ref["loss"], rel=1e-9)
    assert main(["export", str(out), "--out", str(tmp_path / "r.pt2"), "--tol", "1e-5"]) == 0
    loaded = torch.export.load(str(tmp_path / "r.pt2")).module()
    with torch.no_grad():
        got = loaded(test.x)
        assert torch.allclose(got, run.model(test.x), atol=1e-5)
    assert np_rel(got.numpy(), test.y.numpy()).mean() == pytest.approx(ref["rel_l2"], rel=1e-5)


def test_cli_evaluate_at_another_resolution(burgers_run, capsys):
    out, _ = burgers_run
    run = load_run(out)
    fine = datasets.burgers(n=60, grid_size=64, seed=0).test
    with torch.no_grad():
        want = np_rel(run.model.at_resolution(64)(fine.x).numpy(), fine.y.numpy()).mean()
    assert main(["evaluate", str(out), "--resolution", "64", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["input_shape"] == [64] and res["rel_l2"] == pytest.approx(want, rel=1e-5)
    assert main(["evaluate", str(out), "--resolution", "30"]) == 2
    assert "expected a divisor of fine" in capsys.readouterr().err
    assert main(["evaluate", str(out), "--grid-shape", "9", "9"]) == 2
    assert "use --resolution N" in capsys.readouterr().err
    assert main(["evaluate", str(out), "--resolution", "64", "--steps", "3"]) == 2
    assert "not with --steps" in capsys.readouterr().err


def test_cli_resume_keeps_the_normalize_setting(burgers_run, tmp_path, capsys):
    out, _ = burgers_run
    args = ["train", *BURGERS, "--out", str(tmp_path / "r"), "--resume", str(out)]
    assert main([*args, "--no-normalize"]) == 2
    assert "--normalize -> --no-normalize" in capsys.readouterr().err


CONV_DARCY = ["--kernel", "conv", "--form", "bottleneck", "--modes", "2", "--radius-spacings",
              "1.5", "--pointwise"]  # fmt: skip
SPECTRAL_DARCY = ["--kernel", "spectral", "--modes", "3", "--coordinates"]


@pytest.mark.parametrize("model_args", [CONV_DARCY, SPECTRAL_DARCY], ids=["conv", "spectral"])
def test_cli_darcy_on_another_grid_shape(model_args, tmp_path, capsys):
    out = tmp_path / "darcy"
    code = main(["train", "--dataset", "darcy", "--samples", "30", "--grid-size", "9",
                 "--schedule", "constant", "--steps", "2", *model_args, "--channels", "4",
                 "--activation", "gelu", "--loss", "rel_l2", "--epochs", "1",
                 "--batch-size", "8", "--quiet", "--out", str(out)])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "grids G_0..G_K: 9x9 9x9 9x9" in text
    run = load_run(out)
    if model_args is CONV_DARCY:
        assert run.config.model.pointwise is True and run.config.model.form == "bottleneck"
    else:  # the box's spectral kernel has period 2 and the lift sees (x, y)
        assert run.config.model.coordinates is True and run.model.coordinates
        assert run.model.kernel.period == (2.0, 2.0) and run.model.lift_weight.shape[1] == 3
    fine = datasets.darcy(n=30, grid_size=17, seed=0).test
    with torch.no_grad():
        want = np_rel(run.model.at_resolution((17, 17))(fine.x).numpy(), fine.y.numpy()).mean()
    assert main(["evaluate", str(out), "--grid-shape", "17", "17", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["input_shape"] == [17, 17] and res["rel_l2"] == pytest.approx(want, rel=1e-5)
    assert main(["evaluate", str(out), "--grid-shape", "17", "9"]) == 2
    assert "square grids" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--splits", "0.5,0.5"], "three positive fractions"),
        (["--dataset", "circles", "--grid-size", "8"], "--grid-size: the circles data"),
        (["--weight-decay", "-1"], "--weight-decay: expected a finite number >= 0"),
    ],
)
def test_cli_refuses_bad_operator_options(extra, message, tmp_path, capsys):
    args = ["train", *BURGERS, *extra, "--out", str(tmp_path / "x")]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_cli_compress_prints_progress(burgers_run, tmp_path, capsys):
    out, _ = burgers_run
    assert main(["compress", str(out), "--tol", "1e-3", "--out", str(tmp_path / "c")]) == 0
    err = capsys.readouterr().err
    assert re.search(r"compress: done: \d+ trials, [\d.]+ s", err), err
    assert main(["compress", str(out), "--tol", "1e-3", "--out", str(tmp_path / "d"),
                 "--quiet"]) == 0  # fmt: skip
    assert "compress:" not in capsys.readouterr().err
