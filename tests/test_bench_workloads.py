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
    rows = {(r["task"], r["model"]): r for r in quick}
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
    for (_task, model), r in rows.items():
        if "skipped" in r:
            assert model in ("FNO", "ours"), r  # only an absent optional peer may be skipped
            continue
        assert r["params"] > 0 and math.isfinite(r["s_epoch"]) and r["s_epoch"] > 0
        scores = r["scores"]
        assert len(scores) == 3 and scores[0] is not None
        if model == "MLP":
            assert scores[1:] == [None, None]  # tied to its input size
        for v in scores:
            if v is None:
                continue
            if r["metric"] == "acc. %":
                assert 0.0 <= v <= 100.0
            else:
                assert math.isfinite(v) and v > 0


def test_render_prints_one_line_per_row(bench, quick):
    text = bench.render(quick)
    lines = text.splitlines()
    assert lines[0].split()[:5] == ["task", "model", "params", "s/epoch", "metric"]
    assert len(lines) == 2 + len(quick)
    assert "n/a" in text


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
