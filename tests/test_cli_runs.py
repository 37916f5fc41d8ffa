"""The command line's runs end to end: exit codes 1 (diverged, export over tolerance) and 130
(SIGINT to a child process), the demo and both experiment commands in their fast mode, with
checks of the numbers they write."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from spacetime_nets.cli import load_run, main
from spacetime_nets.datasets import load
from spacetime_nets.training import evaluate, load_checkpoint

TINY = ["--dataset", "circles", "--widths", "6,3", "--steps", "2", "--samples", "60",
        "--batch-size", "16", "--quiet"]  # fmt: skip


def _error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("spacetime-nets: error: "), err
    assert "Traceback" not in err
    return lines[-1]


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _num(text: str) -> float:
    return float(text) if text not in ("", "nan") else math.nan


# --------------------------------------------------------------------------- exit code 1
def test_divergence_exits_1_without_a_checkpoint(tmp_path, capsys):
    """A learning rate of 1e30 sends the parameters to ~1e30 after one step: the next loss is
    not finite, training stops before the update."""
    out = tmp_path / "diverged"
    code = main(["train", *TINY, "--epochs", "3", "--lr", "1e30", "--out", str(out)])
    assert code == 1
    assert "diverged" in _error_line(capsys.readouterr().err)
    assert not (out / "last.pt").exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "circles"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 0
    return out


def test_export_over_tolerance_exits_1(trained, tmp_path, monkeypatch, capsys):
    """An exported network that differs from the space-time net by 1e-2 (a shifted output
    bias) is refused at --tol 1e-4, and accepted at --tol 1."""
    from spacetime_nets import export

    honest = export.to_resnet

    def shifted(model, *args, **kwargs):
        net = honest(model, *args, **kwargs)
        with torch.no_grad():
            last = [p for p in net.parameters() if p.dim() == 1][-1]
            last.add_(1e-2)
        return net

    monkeypatch.setattr(export, "to_resnet", shifted)
    path = tmp_path / "net.pt2"
    assert main(["export", str(trained), "--out", str(path), "--tol", "1e-4"]) == 1
    line = _error_line(capsys.readouterr().err)
    assert "differs by 1.000e-02" in line
    assert main(["export", str(trained), "--out", str(path), "--tol", "1"]) == 0
    assert "max |diff| = 1.000e-02" in capsys.readouterr().out


# --------------------------------------------------------------------------- exit code 130
@pytest.mark.slow
def test_sigint_to_a_training_process_exits_130_with_a_usable_checkpoint(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "spacetime_nets", "train", *TINY, "--epochs", "100000",
           "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (out / "last.pt").exists():  # the first epoch's checkpoint: it is training
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    ckpt = load_checkpoint(out / "interrupted.pt")
    assert ckpt["epoch"] >= 1 and ckpt["epoch"] < 100000
    for key, value in ckpt["model"].items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            assert torch.isfinite(value).all(), key
    # usable: the model loads and evaluates, and training continues from it
    model = load_run(out, "interrupted.pt").model
    res = evaluate(model, load("circles", seed=0, n=60).test)
    assert math.isfinite(res["loss"]) and 0 <= res["accuracy"] <= 1
    more = ckpt["epoch"] + 1
    args = ["train", *TINY, "--epochs", str(more), "--out", str(out)]
    assert main([*args, "--resume", str(out / "interrupted.pt")]) == 0
    done = load_checkpoint(out / "last.pt")
    assert done["epoch"] == more and len(done["history"]) == more


# --------------------------------------------------------------------------- demo
def test_demo_fast_mode(tmp_path, monkeypatch, capsys):
    """SPACETIME_FAST=1: two epochs. The printed accuracy is that of the saved checkpoint
    recomputed here, and the exported ResNet matches the model."""
    from spacetime_nets import demo

    monkeypatch.setenv("SPACETIME_FAST", "1")
    out = tmp_path / "demo"
    assert demo.run_demo(out) == 0
    text = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 2
    for name in ("schedule.png", "training.png", "trajectory.png", "last.pt", "resnet_state.pt"):
        assert (out / name).stat().st_size > 0, name
    model = demo.demo_model(demo.demo_schedule())
    model.load_state_dict(load_checkpoint(out / "last.pt")["model"])
    model.eval()
    test = load("digits", seed=0).test
    with torch.no_grad():
        acc = float((model(test.x).argmax(-1) == test.y).float().mean())
    assert summary["test_accuracy"] == pytest.approx(acc, abs=1e-12)
    assert f"test accuracy: {acc:.3f}" in text
    assert acc > 0.3  # ten classes: chance is 0.1; two epochs already learn
    assert 0 <= summary["transfer_accuracy"] <= 1
    assert summary["transfer_widths"][0] > summary["widths"][0]
    first, last = summary["widths"][0], summary["widths"][-1]
    fine_first, fine_last = summary["transfer_widths"][0], summary["transfer_widths"][-1]
    assert f"first grid {first} -> {fine_first} nodes, last grid {last} -> {fine_last}" in text
    assert summary["export_max_diff"] < 1e-4


# --------------------------------------------------------------------------- experiments
def test_asymptotics_command_fast(tmp_path, capsys):
    out = tmp_path / "asym"
    code = main(["asymptotics", "--fast", "--models", "ode-inside-tanh", "--out", str(out)])
    assert code == 0
    rows = _rows(out / "asymptotics.csv")
    assert [float(r["T"]) for r in rows] == [1.0, 2.0, 4.0]
    lam = 1e-3
    for r in rows:
        err, l2, T = float(r["error"]), float(r["l2_control"]), float(r["T"])
        assert math.isfinite(err) and err >= 0 and l2 >= 0
        # the columns agree with each other: J = E + lam int |u|^2, T int |u|^2
        assert float(r["objective"]) == pytest.approx(err + lam * l2, rel=1e-9)
        assert float(r["T_l2_control"]) == pytest.approx(T * l2, rel=1e-12)
        assert 0 <= float(r["accuracy"]) <= 1
    # the summary's slope is the least-squares slope of log error against log T
    (s,) = _rows(out / "asymptotics_summary.csv")
    Ts = np.array([float(r["T"]) for r in rows])
    errs = np.array([float(r["error"]) for r in rows])
    slope = np.polyfit(np.log(Ts), np.log(errs), 1)[0]
    assert float(s["slope"]) == pytest.approx(slope, rel=1e-6, abs=1e-9)
    assert float(s["T_l2_ratio"]) >= 1.0
    assert (out / "asymptotics_circles.png").stat().st_size > 0
    assert "slope" in capsys.readouterr().out


def test_turnpike_command_fast(tmp_path, capsys):
    out = tmp_path / "tp"
    code = main(["turnpike", "--fast", "--models", "ode-outside-relu", "--out", str(out)])
    assert code == 0
    rows = _rows(out / "turnpike.csv")
    profiles = _rows(out / "turnpike_profiles_circles_ode-outside-relu.csv")
    assert [(r["problem"], float(r["T"])) for r in rows] == [
        ("tp", 1.0), ("erm", 1.0), ("tp", 2.0), ("erm", 2.0)
    ]  # fmt: skip
    arc = (0.2 * 1.0, 0.8 * 1.0)  # the common arc: [0.2, 0.8] x the shortest horizon
    fitted = 0
    for r in rows:
        assert r["common_arc"] == "[0.2, 0.8]"
        prof = [p for p in profiles if p["problem"] == r["problem"] and p["T"] == r["T"]]
        t = np.array([float(p["t"]) for p in prof])
        risk = np.array([float(p["risk"]) for p in prof])
        assert t[0] == 0 and t[-1] == pytest.approx(float(r["T"]))
        assert np.all(np.isfinite(risk)) and np.all(risk >= 0)
        assert float(r["final_error"]) == pytest.approx(risk[-1], rel=1e-12)
        hit = _num(r["t_hit"])
        if not math.isnan(hit):
            assert 0 <= hit <= float(r["T"])
            assert _num(r["t_hit_over_T"]) == pytest.approx(hit / float(r["T"]))
        # the reported rate: a least-squares fit of log E on the common arc, redone here
        keep = (t >= arc[0] - 1e-12) & (t <= arc[1] + 1e-12) & (risk > 0)
        if keep.sum() >= 2:
            mu = -np.polyfit(t[keep], np.log(risk[keep]), 1)[0]
            assert _num(r["mu_common"]) == pytest.approx(mu, rel=1e-6, abs=1e-9)
            fitted += 1
    assert fitted >= 2  # at least the turnpike rows have points on the arc
    (s,) = _rows(out / "turnpike_summary.csv")
    assert s["common_arc"] == "[0.2, 0.8]"
    text = capsys.readouterr().out
    assert "common arc t in [0.2, 0.8]" in text


# --------------------------------------------------------------------------- files written
@pytest.mark.parametrize("name", ["last.pt", "model.json", "history.csv"])
def test_export_refuses_to_write_over_the_runs_own_files(trained, name, capsys):
    target = trained / name
    before = target.read_bytes()
    assert main(["export", str(trained), "--out", str(target)]) == 2
    assert "one of the run's own files" in capsys.readouterr().err
    assert target.read_bytes() == before


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_run_files_follow_the_umask(umask, tmp_path):
    old = os.umask(umask)
    try:
        out = tmp_path / "run"
        assert main(["train", *TINY, "--epochs", "1", "--out", str(out), "--quiet"]) == 0
        assert main(["export", str(out), "--out", str(out / "net.pt2")]) == 0
    finally:
        os.umask(old)
    want = 0o666 & ~umask
    for name in ("last.pt", "model.json", "history.json", "history.csv", "net.pt2"):
        assert (out / name).stat().st_mode & 0o777 == want, name


def test_schedule_json_is_written_atomically(tmp_path, monkeypatch):
    from grids import GridSchedule

    path = tmp_path / "s.json"
    good = GridSchedule.constant(5, 2)
    good.to_json(path)
    before = path.read_text()

    real_fdopen = os.fdopen

    class FullDisk:  # writes half of the text, then fails as a full disk does
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, text):
            self.f.write(text[: len(text) // 2])
            self.f.flush()
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: FullDisk(real_fdopen(fd, *a, **k)))
    with pytest.raises(OSError, match="No space left"):
        GridSchedule.constant(9, 3).to_json(path)
    monkeypatch.undo()
    assert path.read_text() == before  # the previous file, not a truncated one
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]  # no temporary left behind
