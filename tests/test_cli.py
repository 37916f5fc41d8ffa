"""The command line: train -> evaluate -> export, schedules, and one-line errors (exit 2)."""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from grids import GridSchedule
from spacetime_nets import SpaceTimeNet
from spacetime_nets.cli import load_run, main
from spacetime_nets.cli.parser import COMMANDS, build_parser
from spacetime_nets.datasets import load
from spacetime_nets.training import evaluate, load_checkpoint

TINY = ["--samples", "60", "--steps", "2", "--epochs", "1", "--batch-size", "16", "--quiet"]


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("spacetime-nets: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "nodal"
    code = main(["train", "--dataset", "circles", "--schedule", "hourglass", "--widths", "6,3",
                 "--out", str(out), *TINY])  # fmt: skip
    assert code == 0
    return out


def test_train_writes_checkpoint_model_json_and_history(run_dir):
    for name in ("last.pt", "model.json", "history.json", "history.csv"):
        assert (run_dir / name).is_file(), name
    cfg = json.loads((run_dir / "model.json").read_text())
    sched = GridSchedule.from_json(json.dumps(cfg["schedule"]))
    assert sched.widths[0] == 6 and sched.num_steps == 2
    assert cfg["kwargs"]["lift"] == "linear" and cfg["dataset"]["name"] == "circles"
    assert load_checkpoint(run_dir)["epoch"] == 1


def test_evaluate_prints_the_metrics_of_the_checkpoint(run_dir, capsys):
    assert main(["evaluate", str(run_dir), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    model = load_run(run_dir).model
    data = load("circles", seed=0, n=60)
    ref = evaluate(model, data.test)
    assert res["n"] == len(data.test) and res["split"] == "test"
    assert res["loss"] == pytest.approx(ref["loss"]) and res["accuracy"] == ref["accuracy"]
    assert main(["evaluate", str(run_dir), "--split", "val"]) == 0
    assert "val (" in capsys.readouterr().out


def test_export_program_reloads_and_matches(run_dir, tmp_path, capsys):
    path = tmp_path / "net.pt2"
    assert main(["export", str(run_dir), "--out", str(path)]) == 0
    out = capsys.readouterr().out
    assert "max |diff|" in out
    model = load_run(run_dir).model
    x = load("circles", seed=0, n=60).test.x
    prog = torch.export.load(str(path)).module()
    with torch.no_grad():
        assert (prog(x) - model(x)).abs().max() < 1e-5


def test_export_torchscript(run_dir, tmp_path, capsys):
    path = tmp_path / "net.ts"
    assert main(["export", str(run_dir), "--format", "torchscript", "--out", str(path)]) == 0
    assert "max |diff|" in capsys.readouterr().out
    model = load_run(run_dir).model
    x = load("circles", seed=0, n=60).test.x
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated
        assert (torch.jit.load(str(path))(x) - model(x)).abs().max() < 1e-5


def test_resume_from_the_cli(run_dir, tmp_path, capsys):
    copy = tmp_path / "again"
    shutil.copytree(run_dir, copy)
    # an existing checkpoint is not overwritten by accident
    assert main(["train", "--widths", "6,3", "--out", str(copy), *TINY]) == 2
    assert "already holds a checkpoint" in one_error_line(capsys.readouterr().err)
    args = ["train", "--widths", "6,3", "--out", str(copy), *TINY]
    args[args.index("--epochs") + 1] = "2"
    assert main([*args, "--resume", str(copy)]) == 0
    ckpt = load_checkpoint(copy)
    assert ckpt["epoch"] == 2 and len(ckpt["history"]) == 2


def test_schedule_command_and_resolution_transfer(tmp_path, capsys):
    png, js = tmp_path / "s.png", tmp_path / "s.json"
    code = main(["schedule", "ramp", "--widths", "8,4", "--steps", "2", "--out", str(png),
                 "--json", str(js)])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    sched = GridSchedule.from_json(js)
    assert f"widths: {sched.widths}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a continuous (basis) model trained on that file, evaluated on a finer schedule
    run = tmp_path / "basis"
    no_steps = [a for a in TINY if a not in ("--steps", "2")]  # the file fixes the steps
    code = main(["train", "--schedule", str(js), "--kernel", "basis", "--modes", "3",
                 "--out", str(run), *no_steps])  # fmt: skip
    assert code == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    same = json.loads(capsys.readouterr().out)
    assert same["widths"] == sched.widths
    assert main(["evaluate", str(run), "--schedule", "ramp", "--widths", "16,8", "--json"]) == 0
    fine = json.loads(capsys.readouterr().out)
    assert fine["widths"][0] > sched.widths[0]
    # the expectation, built without the CLI: the trained parameters of the checkpoint in a
    # model constructed here, discretised on the same finer schedule through the Python API
    state = load_checkpoint(run / "last.pt")["model"]
    trained = SpaceTimeNet(sched, 2, 2, kernel="basis", form="inside", activation="tanh",
                           lift="linear", modes=3, seed=123)  # fmt: skip
    trained.load_state_dict(state)
    finer = GridSchedule.ramp(16, 8, 2, T=1.0, rule="trapezoid", transfer_kind="galerkin")
    assert finer.widths == fine["widths"]
    test = load("circles", seed=0, n=60).test
    for model, got in ((trained, same), (trained.with_schedule(finer), fine)):
        ref = evaluate(model.eval(), test)
        assert got["loss"] == pytest.approx(ref["loss"], rel=1e-5, abs=1e-7)
        assert got["accuracy"] == ref["accuracy"]
    # the check can fail: an untrained model of the same construction misses it by far
    fresh = SpaceTimeNet(sched, 2, 2, kernel="basis", form="inside", activation="tanh",
                         lift="linear", modes=3, seed=123)  # fmt: skip
    untrained = evaluate(fresh.with_schedule(finer).eval(), test)
    assert abs(untrained["loss"] - fine["loss"]) > 1e-3
    # a file-based run needs a builder name to build another schedule
    assert main(["evaluate", str(run), "--widths", "16,8"]) == 2
    assert "--schedule" in one_error_line(capsys.readouterr().err)


def test_nodal_models_refuse_resolution_transfer(run_dir, capsys):
    assert main(["evaluate", str(run_dir), "--widths", "12,6"]) == 2
    assert "nodal" in one_error_line(capsys.readouterr().err)


@pytest.fixture()
def tampered_run(run_dir, tmp_path) -> Path:
    bad = tmp_path / "tampered"
    shutil.copytree(run_dir, bad)
    (bad / "last.pt").write_bytes(pickle.dumps({"format": "spacetime-nets/checkpoint"}))
    return bad


@pytest.mark.parametrize(
    "case, expect",
    [
        ("unknown_dataset", "invalid choice"),
        ("malformed_schedule", "malformed JSON"),
        ("zero_width", "--widths"),
        ("missing_checkpoint", "not found"),
        ("tampered_checkpoint", "not a valid spacetime-nets checkpoint"),
        ("unknown_command", "invalid choice"),
        ("bad_epochs", "epochs"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(case, expect, tmp_path, tampered_run, capsys):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"times": [0, 1], ')
    out = str(tmp_path / "out")
    argv = {
        "unknown_dataset": ["train", "--dataset", "mnist-ish", "--out", out],
        "malformed_schedule": ["train", "--schedule", str(bad_json), "--out", out],
        "zero_width": ["train", "--widths", "16,0", "--out", out],
        "missing_checkpoint": ["evaluate", str(tmp_path / "no-such-run")],
        "tampered_checkpoint": ["evaluate", str(tampered_run)],
        "unknown_command": ["fly"],
        "bad_epochs": ["train", "--epochs", "0", "--out", out, *TINY[:2]],
    }[case]
    assert main(argv) == 2
    assert expect in one_error_line(capsys.readouterr().err)


def test_subprocess_error_has_no_traceback(tampered_run):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "spacetime_nets", "export", str(tampered_run)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr
    assert "not a valid spacetime-nets checkpoint" in one_error_line(proc.stderr)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_texts(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert "usage: spacetime-nets" in capsys.readouterr().out


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    # the parser's own sub-commands are the list the tests run over, none missing or extra
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(sub.choices) == set(COMMANDS)
    for name in COMMANDS:
        assert re.search(rf"^\s+{name}\s", text, re.M), name


@pytest.mark.parametrize("command", ["asymptotics", "turnpike"])
def test_experiment_commands_help(command, capsys):
    pytest.importorskip("spacetime_nets.experiments")
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert f"spacetime-nets {command}" in capsys.readouterr().out


def test_train_takes_radius_spacings_norm_and_head(tmp_path):
    """The new model options reach model.json and the model load_run rebuilds, which equals
    one built by hand with the same arguments; a bad value is refused before training."""
    out = tmp_path / "conv"
    code = main(["train", "--dataset", "signals", "--schedule", "pyramid", "--widths", "65,17",
                 "--kernel", "conv", "--channels", "4", "--radius-spacings", "2.5",
                 "--norm", "group", "--norm-groups", "2", "--readout", "mean",
                 "--head-hidden", "8", "--out", str(out), *TINY, "--samples", "80"])  # fmt: skip
    assert code == 0
    cfg = json.loads((out / "model.json").read_text())["kwargs"]
    assert cfg["radius_spacings"] == 2.5 and cfg["norm"] == "group"
    assert cfg["norm_groups"] == 2 and cfg["head_hidden"] == 8
    run = load_run(out)
    model, config = run.model, run.config.to_dict()
    sched = GridSchedule.from_json(json.dumps(config["schedule"]))
    assert sched.transfer_kind == "galerkin"  # the default now: coarsening filters
    hand = SpaceTimeNet(sched, None, 10, kernel="conv", form="inside", activation="tanh",
                        lift="identity", readout="mean",
                        channels=4, radius_spacings=2.5, norm="group", norm_groups=2,
                        head_hidden=8)  # fmt: skip
    assert [r[0] for r in model.kernel.radii] == pytest.approx([r[0] for r in hand.kernel.radii])
    hand.load_state_dict(load_checkpoint(out / "last.pt")["model"])
    x = load("signals", seed=0, n=80).test.x
    with torch.no_grad():
        torch.testing.assert_close(model(x), hand(x))
    code = main(["train", "--dataset", "signals", "--kernel", "conv", "--channels", "4",
                 "--norm", "group", "--norm-groups", "3", "--out", str(tmp_path / "bad"),
                 *TINY, "--samples", "80"])  # fmt: skip
    assert code != 0 and not (tmp_path / "bad" / "last.pt").exists()


def test_train_model_flags_default_to_the_run_file_options():
    """One source of defaults for a run: the parser's model flags take ModelOptions' values."""
    import dataclasses

    from spacetime_nets.cli import build_parser
    from spacetime_nets.runs import ModelOptions

    args = build_parser().parse_args(["train", "--dataset", "circles"])
    defaults = {f.name: f.default for f in dataclasses.fields(ModelOptions)}
    for name in ("kernel", "form", "activation", "method", "init_scale"):
        assert getattr(args, name) == defaults[name], name
