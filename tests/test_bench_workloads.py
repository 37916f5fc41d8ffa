"""Smoke test of benchmarks/bench_workloads.py: ``--quick`` trains every peer it can import on
every task and prints one table of finite, in-range numbers. No timing is asserted."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
HAS_NEURALOP = importlib.util.find_spec("neuralop") is not None


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("bench_workloads")
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def quick(bench):
    return bench.main(["--quick", "--threads", "1"])


def _has_channel_kernels() -> bool:
    from spacetime_nets import SpaceTimeNet

    return "channels" in inspect.signature(SpaceTimeNet).parameters


def test_quick_table_has_every_row_with_sane_numbers(bench, quick, capsys):
    rows = {(r["task"], r["model"]): r for r in quick if "consistency" not in r}
    for task in bench.TASKS:
        for model in ("CNN", "MLP"):
            assert (task, model) in rows, (task, model)
    for task in bench.OPERATOR_TASKS:
        fno = rows[(task, "FNO")]
        if HAS_NEURALOP:
            assert "skipped" not in fno, fno
        else:
            assert fno["skipped"] == "neuraloperator absent"
    for task in bench.TASKS:
        ours = rows[(task, "ours")]
        if _has_channel_kernels():
            assert "skipped" not in ours, ours
            assert (task, "ours-resnet") in rows
    assert "skipped" not in rows[("noisy-signals", "ours-before")]
    assert "skipped" not in rows[("noisy-signals", "ours-multires")]
    for task in ("darcy", "helmholtz"):
        assert "skipped" not in rows[(task, "ours-local")]
        assert "skipped" not in rows[(task, "ours-hourglass")]
    for (task, model), r in rows.items():
        if "skipped" in r:
            # an absent optional peer, or the previous discretisation on a task without pyramid
            assert model in (
                "FNO",
                "ours",
                "ours-local",
                "ours-hourglass",
                "ours-before",
                "ours-multires",
            ), r
            continue
        assert r["params"] > 0 and math.isfinite(r["s_epoch"]) and r["s_epoch"] > 0
        scores = r["scores"]
        assert len(scores) == 4 and scores[1] is not None  # 0.5x, 1x, 2x, 4x
        if model == "MLP":
            assert scores[2:] == [None, None] and scores[0] is None  # tied to its input size
        if task in ("signals", "noisy-signals") and model in ("CNN", "ours"):
            assert scores[0] is not None
        for v in scores:
            if v is None:
                continue
            if r["metric"] == "acc. %":
                assert 0.0 <= v <= 100.0
            else:
                assert math.isfinite(v) and v > 0


def test_render_prints_one_line_per_row(bench, quick):
    rows = [r for r in quick if "consistency" not in r]
    text = bench.render(rows)
    lines = text.splitlines()
    assert lines[0].split()[:6] == ["task", "model", "params", "s/epoch", "metric", "0.5x"]
    assert len(lines) == 2 + len(rows)
    assert "n/a" in text


def test_consistency_rows_cover_schedules_radii_and_inputs(bench, quick):
    cons = [r["consistency"] for r in quick if "consistency" in r]
    assert {(r["schedule"], r["spacings"]) for r in cons} == {
        (s, sp) for s in ("constant", "pyramid") for sp in bench.CONSISTENCY_SPACINGS
    }
    for r in cons:
        for key in ("smooth before", "smooth now", "noisy before", "noisy now"):
            assert math.isfinite(r[key]) and r[key] >= 0.0
    assert len(bench.render_consistency(cons).splitlines()) == 2 + len(cons)


def test_resample_is_linear_interpolation(bench):
    import torch

    from spacetime_nets import datasets as D

    split = D.Split(torch.tensor([[0.0, 2.0, 4.0], [1.0, 1.0, -1.0]]), torch.tensor([0, 1]))
    out = bench.resample(split, 5)
    want = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 0.0, -1.0]])
    torch.testing.assert_close(out.x, want)
    assert torch.equal(out.y, split.y)


def test_relative_l2_against_a_hand_computation(bench):
    import torch

    pred = torch.tensor([[3.0, 4.0], [1.0, 1.0]])
    y = torch.tensor([[0.0, 5.0], [1.0, 0.0]])
    got = bench.relative_l2(pred, y)
    want = torch.tensor([math.hypot(3.0, 1.0) / 5.0, 1.0])
    torch.testing.assert_close(got, want)


def test_bad_epochs_is_refused(bench):
    with pytest.raises(ValueError, match="--epochs must be >= 1, got 0"):
        bench.main(["--quick", "--epochs", "0", "--tasks", "digits", "--models", "MLP"])
