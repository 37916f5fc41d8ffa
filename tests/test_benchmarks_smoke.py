"""Plumbing of the benchmark scripts: each ``main(["--quick"])`` runs and returns finite numbers.

No timing is asserted (timings depend on the machine). Tests marked ``cuda`` run the same
scripts on a GPU (``benchmarks/gpu_check.py`` runs them there)."""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))
    try:
        yield lambda name: importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))


def _finite(*values) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


@pytest.mark.slow
def test_memory_quick(bench):
    rows = bench("bench_memory").main(["--quick", "--threads", "1"])
    assert [r["steps"] for r in rows] == [10, 50]
    for r in rows:
        assert r["same_result"], r
        assert r["plain_bytes"] > 0 and r["checkpointed_bytes"] >= 0
        assert _finite(r["memory_ratio"], r["time_ratio"], r["plain"]["time_s"])


def test_compile_quick(bench):
    mod = bench("bench_compile")
    why = mod.compile_unavailable("aot_eager", "cpu")
    if why is not None:  # only a named missing capability (no torch.compile here) skips
        pytest.skip(why)
    rows = mod.main(["--quick", "--backend", "aot_eager", "--kernels", "nodal"])
    (row,) = rows
    assert "skipped" not in row, row  # aot_eager needs no compiler: nothing may be skipped
    assert row["graph_count"] >= 1 and row["graph_break_count"] == 0, row["break_reasons"]
    assert row["same"]
    assert _finite(row["eager_s"], row["compiled_s"], row["ratio"])


def test_compile_library_error_fails_instead_of_skipping(bench, monkeypatch):
    """An exception from the library inside a case reaches the caller; it is not a "skip"."""
    mod = bench("bench_compile")

    def broken(*args, **kwargs):
        raise RuntimeError("deliberate library failure")

    monkeypatch.setattr(mod, "make_model", broken)
    with pytest.raises(RuntimeError, match="deliberate library failure"):
        mod.main(["--quick", "--backend", "aot_eager", "--kernels", "nodal"])


def test_compile_skips_only_a_named_missing_capability(bench, monkeypatch):
    mod = bench("bench_compile")
    from torch._inductor.exc import InvalidCxxCompiler

    def no_compiler(*args, **kwargs):
        try:
            raise InvalidCxxCompiler()
        except InvalidCxxCompiler as inner:  # wrapped, as dynamo wraps backend errors
            raise RuntimeError("backend failed") from inner

    monkeypatch.setattr(mod, "run_case", no_compiler)
    (row,) = mod.main(["--quick", "--backend", "aot_eager", "--kernels", "nodal"])
    assert "C/C++ compiler" in row["skipped"] and "InvalidCxxCompiler" in row["skipped"]
    assert mod.missing_capability(ValueError("widths")) is None
    if not torch.cuda.is_available():
        assert "no CUDA device" in mod.compile_unavailable("inductor", "cuda")


def test_throughput_quick(bench):
    rows = bench("bench_throughput").main(["--quick", "--threads", "1"])
    assert len(rows) == 2
    for r in rows:
        assert _finite(r["step_s"], r["matmul_s"], r["fraction"]) and r["step_s"] > 0


def test_peers_quick(bench):
    rows = bench("bench_peers").main(["--quick", "--threads", "1"])
    candidates = {r[1] for r in rows}
    assert {"SpaceTimeNet", "hand-written loop"} <= candidates
    assert any(c.startswith("torchquad.") for c in candidates)
    for r in rows:
        assert _finite(float(r[3]), float(r[4]))
        if r[5] != "-":
            # same work: euler peers match exactly, rk4 (3/8 rule) and quadrature to O(1e-5)
            assert float(r[5]) < 1e-3, r


def test_run_all_plan(bench):
    mod = bench("run_all")
    steps = dict(mod.plan(list(mod.BENCHMARKS), quick=True, threads=1))
    assert list(steps) == [
        "grids",
        "core",
        "memory",
        "compile",
        "throughput",
        "peers",
        "conv",
        "adapt",
        "workloads",
        "ucr",
    ]
    for cmd in steps.values():
        assert Path(cmd[1]).exists(), cmd
        assert cmd[-2:] == ["--threads", "1"]
    assert "--quick" in steps["memory"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_gpu_check_without_cuda(bench, capsys):
    assert bench("gpu_check").main([]) == 0
    assert "no CUDA device" in capsys.readouterr().out


def test_gpu_check_verdicts(bench):
    """The target verdicts read the right rows: B=256 only, the worst value of the widths a
    target covers, bf16 against float32 at the same width; "not measured" without rows."""
    mod = bench("gpu_check")

    def row(n, B=256, **kw):
        return {"n": n, "B": B, **kw}

    tables = {
        "cuda-graphs": [
            row(64, compiled_s=20e-6),
            row(256, compiled_s=28e-6),
            row(1024, compiled_s=90e-6),  # wider than the target covers
            row(16, B=32, compiled_s=99e-6),  # another batch size
        ],
        "float32": [
            row(1024, roofline=0.3, step_s=4e-3),
            row(2048, roofline=0.62, step_s=10e-3),
            row(4096, roofline=0.55, step_s=40e-3),
        ],
        "bf16": [row(1024, step_s=2e-3), row(2048, step_s=8e-3), row(4096, step_s=20e-3)],
    }
    got = {t: (m, ok) for t, m, ok in mod.verdicts(tables)}
    assert list(got.values()) == [
        ("worst 28.0 us at n=256", "yes"),
        ("worst 55.0% at n=4096", "yes"),
        ("worst 1.25x at n=2048", "no"),  # 10 / 8 ms
    ]
    assert [ok for _, _, ok in mod.verdicts({})] == ["not measured"] * 3
    # the key names of real rows (the cuda-graphs mode runs eagerly on the CPU)
    real = bench("bench_throughput").main(
        ["--quick", "--threads", "1", "--widths", "16", "--batches", "256", "--compile",
         "cuda-graphs"]
    )  # fmt: skip
    (target, measured, ok), *_ = mod.verdicts({"cuda-graphs": real})
    assert measured == f"worst {real[0]['compiled_s'] * 1e6:.1f} us at n=16"
    assert ok == ("yes" if real[0]["compiled_s"] <= 30e-6 else "no")


# --------------------------------------------------------------------------- on a GPU
@pytest.mark.cuda
@cuda
def test_spacetimenet_on_cuda_matches_cpu():
    import grids
    import spacetime_nets as st

    sched = grids.GridSchedule.hourglass(32, 8, 12)
    x = torch.randn(16, 32, generator=torch.Generator().manual_seed(0))
    for checkpoint in (None, 4):
        model = st.SpaceTimeNet(
            sched,
            32,
            3,
            kernel="basis",
            form="outside",
            activation="tanh",
            lift="identity",
            modes=6,
            seed=0,
            checkpoint=checkpoint,
        ).double()
        out_cpu = model(x.double())
        out_cpu.square().sum().backward()
        g_cpu = [p.grad.clone() for p in model.parameters()]
        model.zero_grad(set_to_none=True)
        model.cuda()
        out_gpu = model(x.double().cuda())
        out_gpu.square().sum().backward()
        assert torch.allclose(out_gpu.cpu(), out_cpu, atol=1e-10)
        for a, p in zip(g_cpu, model.parameters()):
            assert torch.allclose(p.grad.cpu(), a, atol=1e-9)


@pytest.mark.cuda
@cuda
def test_throughput_quick_cuda(bench):
    rows = bench("bench_throughput").main(["--quick", "--device", "cuda"])
    for r in rows:
        assert _finite(r["step_s"], r["matmul_s"], r["fraction"])


@pytest.mark.cuda
@cuda
def test_memory_quick_cuda(bench):
    rows = bench("bench_memory").main(["--quick", "--device", "cuda"])
    for r in rows:
        assert r["same_result"] and r["plain"]["peak_device_bytes"] > 0


def test_ucr_without_aeon_prints_a_note_and_runs_nothing(bench, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "aeon", None)  # import aeon now raises ImportError
    assert bench("bench_ucr").main(["--quick"]) == []
    assert "aeon is not installed" in capsys.readouterr().out


def test_ucr_quick_with_the_torch_models(bench):
    pytest.importorskip("aeon", reason="aeon (the [bench] extra) ships the UCR sets")
    rows = bench("bench_ucr").main(
        ["--quick", "--sets", "BasicMotions", "--models", "ResNet", "ours", "--threads", "1"]
    )
    assert [r["model"] for r in rows] == ["ResNet", "ours"]
    for r in rows:
        assert len(r["acc"]) == 3 and all(a is None or 0.0 <= a <= 100.0 for a in r["acc"])
        assert r["acc"][0] is not None and _finite(r["seconds"])
