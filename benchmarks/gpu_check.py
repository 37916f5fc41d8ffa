"""GPU readiness: the test suite's CUDA tests, the throughput tables on CUDA, and a verdict on
the GPU speed targets.

1. ``pytest -m cuda`` over the test files that use the ``cuda`` marker;
2. ``bench_throughput.py --device cuda`` at B=256: float32 eager at n = 16 ... 4096, with
   ``--compile cuda-graphs`` at n <= 256, with ``--precision bf16`` at n >= 1024, and with
   ``--compile reduce-overhead`` at n = 64, 256, 1024;
3. the targets, each met or not, from those tables: a graph-captured forward+backward step
   <= 30 us at n <= 256; >= 50% of the measured matmul peak (the roofline) at n >= 2048;
   bf16 at least 1.5x faster than float32 at n >= 1024;
4. ``bench_memory.py --device cuda`` (peak ``torch.cuda.max_memory_allocated``), unless
   ``--skip-memory``.

Without a CUDA device it says so and exits 0. Runs from a plain checkout: it puts the
repository root on ``sys.path`` (and on ``PYTHONPATH`` for pytest and the memory children), so
the package need not be installed. ``--quick`` runs every table at smoke sizes (the targets
are then mostly not measured).

Run: python benchmarks/gpu_check.py [--quick] [--skip-memory] [--skip-tests]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(ROOT), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

import torch  # noqa: E402


def cuda_test_files(tests: Path = ROOT / "tests") -> list[Path]:
    """Test files that use the ``cuda`` marker (only those are collected: the others may need
    packages a GPU machine lacks)."""
    return sorted(
        p for p in tests.glob("test_*.py") if "mark.cuda" in p.read_text(encoding="utf-8")
    )


def run_cuda_tests(quiet: bool = True) -> int:
    files = cuda_test_files()
    if not files:
        print("gpu_check: no test file uses the cuda marker")
        return 0
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-p", "no:cacheprovider"]
    cmd += ["-q"] if quiet else []
    cmd += [str(f.relative_to(ROOT)) for f in files]
    print("gpu_check:", " ".join(cmd[1:]), flush=True)
    rc = subprocess.run(cmd, cwd=str(ROOT), env=env).returncode
    if rc == 5:  # nothing collected
        print("gpu_check: no test is marked cuda")
        return 0
    return rc


#: (label, extra bench_throughput arguments, widths) of the target runs, all at B=256
RUNS = (
    ("float32", [], [16, 64, 256, 1024, 2048, 4096]),
    ("cuda-graphs", ["--compile", "cuda-graphs"], [16, 64, 256]),
    ("bf16", ["--precision", "bf16"], [1024, 2048, 4096]),
    ("reduce-overhead", ["--compile", "reduce-overhead"], [64, 256, 1024]),
)


def verdicts(tables: dict[str, list[dict]]) -> list[tuple[str, str, str]]:
    """The GPU targets from the throughput rows (``tables[label]`` as returned by
    ``bench_throughput.main``): (target, the worst measured value, "yes" / "no" / "not
    measured")."""

    def rows(label: str, keep) -> list[dict]:
        return [r for r in tables.get(label, []) if r["B"] == 256 and keep(r["n"])]

    fp32 = {r["n"]: r for r in rows("float32", lambda n: n >= 1024)}
    bf16 = [r for r in rows("bf16", lambda n: n >= 1024) if r["n"] in fp32]
    checks = [
        (
            "graph-captured step <= 30 us (n <= 256, B=256)",
            [(r["compiled_s"] * 1e6, r["n"]) for r in rows("cuda-graphs", lambda n: n <= 256)],
            max,
            "{:.1f} us",
            lambda v: v <= 30,
        ),
        (
            ">= 50% of the roofline (n >= 2048, B=256)",
            [(100 * r["roofline"], r["n"]) for r in rows("float32", lambda n: n >= 2048)],
            min,
            "{:.1f}%",
            lambda v: v >= 50,
        ),
        (
            "bf16 >= 1.5x float32 (n >= 1024, B=256)",
            [(fp32[r["n"]]["step_s"] / r["step_s"], r["n"]) for r in bf16],
            min,
            "{:.2f}x",
            lambda v: v >= 1.5,
        ),
    ]
    out = []
    for target, values, worst, fmt, ok in checks:
        if not values:
            out.append((target, "-", "not measured"))
            continue
        v, n = worst(values)
        out.append((target, f"worst {fmt.format(v)} at n={n}", "yes" if ok(v) else "no"))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="quick tables (smoke run)")
    ap.add_argument("--skip-tests", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--repeats", type=int, default=15, help="throughput repeats")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device (torch {torch.__version__}): nothing to check here")
        return 0
    props = torch.cuda.get_device_properties(0)
    print(
        f"gpu_check: {torch.cuda.get_device_name(0)}, {props.total_memory / 2**30:.0f} GiB, "
        f"torch {torch.__version__}, CUDA {torch.version.cuda}",
        flush=True,
    )
    rc = 0 if args.skip_tests else run_cuda_tests()
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), os.environ.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    import bench_throughput
    from _timing import table

    tables = {}
    for label, extra, widths in RUNS:
        tp_args = ["--device", "cuda", "--repeats", str(args.repeats), "--batches", "256"]
        tp_args += ["--quick"] if args.quick else ["--widths", *map(str, widths)]
        print(f"gpu_check: bench_throughput {' '.join(tp_args + extra)}", flush=True)
        tables[label] = bench_throughput.main(tp_args + extra)
    print(table(verdicts(tables), ("target", "measured", "met")), flush=True)
    if not args.skip_memory:
        import bench_memory

        bench_memory.main(["--device", "cuda"] + (["--quick"] if args.quick else []))
    if rc != 0:
        print(f"gpu_check: the cuda tests failed (pytest exit code {rc})")
    return rc


if __name__ == "__main__":
    sys.exit(main())
