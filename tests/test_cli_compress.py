"""``spacetime-nets compress``: writes a schedule within the tolerance and a ResNet that runs."""

from __future__ import annotations

import json

import pytest
import torch


@pytest.fixture(scope="module")
def run(cli, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    p = cli("train", "--dataset", "digits", "--kernel", "basis", "--modes", "4", "--schedule",
            "pyramid", "--widths", "16,8", "--steps", "4", "--epochs", "4", "--out", str(out),
            "--quiet")  # fmt: skip
    assert p.returncode == 0, p.stderr
    return out


@pytest.mark.slow
def test_compress_stays_within_tol_on_the_calibration_split(cli, run):
    p = cli("compress", str(run), "--tol", "2", "--split", "val")
    assert p.returncode == 0, p.stderr
    folder = run / "compressed"
    summary = json.loads((folder / "compress.json").read_text())
    assert summary["macs_after"] <= summary["macs_before"]
    # independent check: the evaluate command on the written schedule, against the original
    before = cli("evaluate", str(run), "--split", "val", "--json")
    after = cli("evaluate", str(run), "--split", "val", "--json", "--schedule",
                str(folder / "schedule.json"))  # fmt: skip
    assert before.returncode == 0 and after.returncode == 0, after.stderr
    acc0 = json.loads(before.stdout)["accuracy"]
    acc1 = json.loads(after.stdout)["accuracy"]
    assert 100 * (acc0 - acc1) <= 2 + 1e-9
    resnet = torch.export.load(folder / "resnet.pt2").module()
    assert resnet(torch.zeros(3, 64)).shape == (3, 10)


@pytest.mark.slow
def test_compress_refuses_bad_arguments_in_one_line(cli, run, tmp_path):
    for args, text in [
        (["--tol", "-1"], "--tol: expected a finite number >= 0"),
        (["--tol", "nan"], "--tol: expected a finite number >= 0"),
        (["--tol", "1", "--samples", "0"], "--samples: expected a positive integer"),
        (["--tol", "1", "--recover", "-1"], "--recover: expected epochs >= 0"),
        # auto is accuracy for the digits labels: a norm of the output change would be unused
        (["--tol", "1", "--norm", "rms"], "--norm: applies to metric='output' only"),
        (["--tol", "1", "--norm", "max", "--metric", "predictions"], "with metric='predictions'"),
    ]:
        p = cli("compress", str(run), *args)
        assert p.returncode == 2 and text in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
    p = cli("compress", str(tmp_path / "missing"), "--tol", "1")
    assert p.returncode == 2 and "no such run folder" in p.stderr


@pytest.mark.slow
def test_compress_with_recovery_ships_a_resnet_within_tol(cli, run, tmp_path):
    from spacetime_nets import datasets

    out = tmp_path / "small"
    p = cli("compress", str(run), "--tol", "2", "--split", "val", "--recover", "1",
            "--out", str(out), "--quiet")  # fmt: skip
    assert p.returncode == 0, p.stderr
    summary = json.loads((out / "compress.json").read_text())
    assert summary["recoveries"] >= 1 and summary["recover_epochs"] == summary["recoveries"]
    assert summary["parameters_changed"] is True
    # independent check: the shipped ResNet against the trained model's own evaluation
    before = cli("evaluate", str(run), "--split", "val", "--json")
    acc0 = json.loads(before.stdout)["accuracy"]
    val = datasets.load("digits", seed=0).val
    resnet = torch.export.load(out / "resnet.pt2").module()
    with torch.no_grad():
        acc1 = float((resnet(val.x).argmax(-1) == val.y).double().mean())
    assert 100 * (acc0 - acc1) <= 2 + 1e-9


@pytest.mark.slow
def test_compress_reduces_the_channels_of_a_conv_run(tmp_path):
    """A conv run: compress drops channels (the default), says the weights changed, and the
    shipped ResNet stays within --tol of the trained model on the calibration split."""
    from spacetime_nets.cli import main
    from spacetime_nets.runs import load_dataset, load_run

    out = tmp_path / "conv"
    code = main(["train", "--dataset", "signals", "--samples", "200", "--kernel", "conv",
                 "--channels", "8", "--form", "bottleneck", "--activation", "gelu",
                 "--radius-spacings", "2.5", "--steps", "2", "--epochs", "3", "--quiet",
                 "--out", str(out)])  # fmt: skip
    assert code == 0
    small = tmp_path / "small"
    code = main(["compress", str(out), "--metric", "output", "--norm", "rms", "--tol", "0.5",
                 "--split", "val", "--out", str(small), "--quiet"])  # fmt: skip
    assert code == 0
    summary = json.loads((small / "compress.json").read_text())
    assert summary["channels_before"] == 8 and summary["channels_after"] < 8
    assert summary["parameters_changed"] is True
    run = load_run(out)
    val = load_dataset(run.config.dataset, run.config.dtype).val
    resnet = torch.export.load(small / "resnet.pt2").module()
    with torch.no_grad():
        d = resnet(val.x) - run.model(val.x)
    assert float(d.double().square().mean().sqrt()) <= 0.5 + 1e-6
