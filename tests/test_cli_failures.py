"""Failure paths of the command line: each ends with one line ``spacetime-nets: error: ...``
and its documented exit code (1 the run failed, 2 bad input, 130 interrupted), and none of
them destroys a run folder or an export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from spacetime_nets.cli import main
from spacetime_nets.cli.parser import COMMANDS
from spacetime_nets.runs import RunConfig, load_run
from spacetime_nets.training import load_checkpoint

TINY = ["--samples", "60", "--steps", "2", "--batch-size", "16", "--quiet"]
BASE = ["train", "--dataset", "circles", "--widths", "6,3", *TINY]


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("spacetime-nets: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli-failures") / "run"
    assert main([*BASE, "--epochs", "1", "--out", str(out)]) == 0
    return out


@pytest.fixture()
def run_dir(trained, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


# ------------------------------------------------------------------------------ resume


@pytest.mark.parametrize(
    "change, named",
    [
        (["--widths", "8,4"], "the schedule"),
        (["--activation", "relu"], "--activation tanh -> relu"),
        (["--form", "outside"], "--form inside -> outside"),
        (["-T", "2"], "T 1.0 -> 2.0"),
        (["--dtype", "float64"], "--dtype float32 -> float64"),
        (["--seed", "3"], "--seed"),
        (["--optimizer", "rmsprop"], "--optimizer adam -> rmsprop"),
    ],
)
def test_a_resume_with_other_settings_is_refused_and_the_run_survives(
    run_dir, change, named, capsys
):
    before = (run_dir / "model.json").read_bytes()
    code = main([*BASE, "--epochs", "2", "--out", str(run_dir), "--resume", str(run_dir), *change])
    assert code == 2
    assert named in one_error_line(capsys.readouterr().err)
    assert (run_dir / "model.json").read_bytes() == before
    assert main(["evaluate", str(run_dir), "--json"]) == 0  # still a usable run
    assert json.loads(capsys.readouterr().out)["epoch"] == 1


def test_a_resume_applies_a_new_learning_rate_and_says_so(run_dir, capsys):
    args = [*BASE, "--epochs", "2", "--out", str(run_dir), "--resume", str(run_dir)]
    assert main([*args, "--lr", "1e-3"]) == 0
    err = capsys.readouterr().err
    assert "learning rate 0.01 -> 0.001 (the new rate is applied)" in err
    ckpt = load_checkpoint(run_dir)
    assert [r["lr"] for r in ckpt["history"]] == pytest.approx([1e-2, 1e-3])
    assert RunConfig.read(run_dir).training["lr"] == 1e-3


def test_a_checkpoint_that_does_not_fit_is_refused_before_model_json_is_written(
    run_dir, tmp_path, capsys
):
    other = tmp_path / "other"
    assert main([*BASE, "--epochs", "1", "--widths", "8,4", "--out", str(other)]) == 0
    before = (run_dir / "model.json").read_bytes()
    code = main([*BASE, "--epochs", "2", "--widths", "8,4", "--out", str(run_dir),
                 "--resume", str(run_dir / "last.pt")])  # fmt: skip
    assert code == 2
    one_error_line(capsys.readouterr().err)
    assert (run_dir / "model.json").read_bytes() == before


def test_an_interrupted_checkpoint_is_not_overwritten_by_accident(run_dir, capsys):
    (run_dir / "last.pt").rename(run_dir / "interrupted.pt")
    assert main([*BASE, "--epochs", "1", "--out", str(run_dir)]) == 2
    assert "interrupted.pt" in one_error_line(capsys.readouterr().err)
    assert (run_dir / "interrupted.pt").is_file()


def test_a_start_that_fails_its_checks_leaves_the_run_folder_as_it_was(run_dir, capsys):
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    argv = ["train", "--dataset", "heat", "--loss", "cross_entropy", *TINY, "--epochs", "1"]
    assert main([*argv, "--out", str(run_dir), "--overwrite"]) == 2
    assert "cross_entropy needs integer class labels" in one_error_line(capsys.readouterr().err)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before


def test_ctrl_c_during_start_up_promises_no_checkpoint(tmp_path, monkeypatch, capsys):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch.optim, "Adam", interrupted)  # inside fit, before the first step
    out = tmp_path / "run"
    assert main([*BASE, "--epochs", "1", "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "no checkpoint was written" in err and "--resume" not in err
    assert not (out / "interrupted.pt").exists()


# ------------------------------------------------------------------------------ damaged runs


def test_a_checkpoint_with_nan_weights_is_refused(run_dir, capsys):
    doc = torch.load(run_dir / "last.pt", weights_only=True)
    doc["model"]["readout_bias"][0] = float("nan")
    doc.pop("digest")
    torch.save(doc, run_dir / "last.pt")
    # without its digest the file is refused before its weights are read
    assert main(["evaluate", str(run_dir)]) == 2
    assert "no digest" in one_error_line(capsys.readouterr().err)
    # signed again (as a buggy trainer would), the NaN weight itself is refused
    from spacetime_nets.training.checkpoint import _digest

    doc["digest"] = _digest(doc)
    torch.save(doc, run_dir / "last.pt")
    assert main(["evaluate", str(run_dir)]) == 2
    assert "not finite" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    "edit, named",
    [
        (lambda d: d.update(dtype="int64"), "dtype"),
        (lambda d: d.update(colour="blue"), "unknown keys 'colour'"),
        (lambda d: d["kwargs"].update(activaton="relu"), "unknown model options 'activaton'"),
        (lambda d: d["kwargs"].update(init_scale=float("nan")), "init_scale"),
        (lambda d: d.update(out_features=0), "out_features"),
    ],
)
def test_a_bad_model_json_is_one_line(run_dir, edit, named, capsys):
    doc = json.loads((run_dir / "model.json").read_text())
    edit(doc)
    (run_dir / "model.json").write_text(json.dumps(doc))
    assert main(["evaluate", str(run_dir)]) == 2
    assert named in one_error_line(capsys.readouterr().err)


def test_model_json_round_trips_and_builds_the_model_described(trained):
    from grids import GridSchedule
    from spacetime_nets import SpaceTimeNet
    from spacetime_nets.runs import build_model

    config = RunConfig.read(trained)
    assert RunConfig.from_dict(config.to_dict()) == config
    doc = json.loads((trained / "model.json").read_text())
    assert config.to_dict() == doc
    # the same model built by hand from the documented construction arguments
    sched = GridSchedule.hourglass(6, 3, 2, T=1.0, rule="trapezoid")
    by_hand = SpaceTimeNet(sched, 2, 2, kernel="nodal", form="inside", activation="tanh",
                           lift="linear", seed=0)  # fmt: skip
    built = build_model(config)
    x = torch.randn(7, 2)
    with torch.no_grad():
        assert torch.equal(built(x), by_hand(x))


# ------------------------------------------------------------------------------ export


def test_a_failed_export_keeps_the_previous_file(run_dir, monkeypatch, capsys):
    import spacetime_nets.export as export

    target = run_dir / "resnet.pt2"
    target.write_bytes(b"the previous, verified export")
    real = export.to_resnet

    def wrong(model):
        resnet = real(model)
        with torch.no_grad():
            for p in resnet.parameters():
                p.add_(1.0)
        return resnet

    monkeypatch.setattr(export, "to_resnet", wrong)
    assert main(["export", str(run_dir)]) == 1
    assert "previous file is kept" in one_error_line(capsys.readouterr().err)
    assert target.read_bytes() == b"the previous, verified export"
    assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".")) == []


def test_a_verified_export_replaces_the_previous_file(run_dir, capsys):
    target = run_dir / "resnet.pt2"
    target.write_bytes(b"old")
    assert main(["export", str(run_dir)]) == 0
    model = load_run(run_dir).model
    x = torch.randn(5, 2)
    with torch.no_grad():
        assert torch.allclose(torch.export.load(str(target)).module()(x), model(x), atol=1e-5)


@pytest.mark.parametrize(
    "argv, named",
    [
        (["--tol", "-1"], "--tol"),
        (["--tol", "nan"], "--tol"),
        (["--samples", "0"], "--samples"),
    ],
)
def test_bad_export_options_are_one_line(run_dir, argv, named, capsys):
    assert main(["export", str(run_dir), *argv]) == 2
    assert named in one_error_line(capsys.readouterr().err)


def test_export_to_a_folder_or_an_unwritable_place_is_one_line(run_dir, tmp_path, capsys):
    assert main(["export", str(run_dir), "--out", str(tmp_path)]) == 2
    assert "is a folder" in one_error_line(capsys.readouterr().err)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["export", str(run_dir), "--out", str(blocker / "net.pt2")]) == 2
    assert "cannot write" in one_error_line(capsys.readouterr().err)
    # a mistyped folder is not created
    missing = tmp_path / "no-such-folder"
    assert main(["export", str(run_dir), "--out", str(missing / "net.pt2")]) == 2
    assert "does not exist" in one_error_line(capsys.readouterr().err)
    assert not missing.exists()


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "argv, named",
    [
        (["--widths", "100000,4"], "GiB"),
        (["-T", "0"], "-T"),
        (["-T", "nan"], "-T"),
        (["--init-scale", "nan"], "--init-scale"),
        (["--lr", "0"], "--lr"),
        (["--device", "cuda:7"], "device"),
        (["--batch-size", "0"], "--batch-size"),
    ],
)
def test_bad_train_options_are_one_line(argv, named, tmp_path, capsys):
    assert main([*BASE, "--epochs", "1", "--out", str(tmp_path / "r"), *argv]) == 2
    assert named in one_error_line(capsys.readouterr().err)


def test_train_out_that_is_a_file_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main([*BASE, "--epochs", "1", "--out", str(blocker)]) == 2
    assert "not a folder" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    "argv, named",
    [
        (["turnpike", "--dt", "0"], "--dt"),
        (["turnpike", "--Ts", "0"], "--Ts"),
        (["asymptotics", "--n", "0"], "--n"),
        (["turnpike", "--fast", "--Ts", "3"], "--fast"),
        (["asymptotics", "--fast", "--n", "30", "--steps", "4"], "--n, --steps"),
    ],
)
def test_experiment_options_are_checked_before_running(argv, named, tmp_path, capsys):
    pytest.importorskip("spacetime_nets.experiments")
    assert main([*argv, "--out", str(tmp_path / "x")]) == 2
    assert named in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "x").exists()


def test_the_fast_environment_variable_counts_as_fast(tmp_path, monkeypatch, capsys):
    pytest.importorskip("spacetime_nets.experiments")
    monkeypatch.setenv("SPACETIME_FAST", "1")
    assert main(["turnpike", "--dt", "0.1", "--out", str(tmp_path / "x")]) == 2
    assert "SPACETIME_FAST=1" in one_error_line(capsys.readouterr().err)


def test_an_unexpected_error_is_one_line_with_exit_1(run_dir, monkeypatch, capsys):
    import spacetime_nets.training as training

    def broken(*a, **k):
        raise TypeError("something nobody foresaw")

    monkeypatch.setattr(training, "evaluate", broken)
    assert main(["evaluate", str(run_dir)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "TypeError: something nobody foresaw" in line and "SPACETIME_NETS_DEBUG" in line


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_has_examples(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and f"spacetime-nets {command}" in text.split("examples:")[1]
