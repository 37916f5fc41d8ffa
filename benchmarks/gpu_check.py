"""GPU readiness: the test suite's CUDA tests, then the throughput (and memory) tables on CUDA.

1. ``pytest -m cuda`` over the test files that use the ``cuda`` marker;
2. ``bench_throughput.py --device cuda`` (the same table as on CPU), then again with
   ``--compile reduce-overhead``, ``--compile cuda-graphs`` and ``--precision bf16``;
3. ``bench_memory.py --device cuda`` (peak ``torch.cuda.max_memory_allocated``), unless
   ``--skip-memory``.

Without a CUDA device it says so and exits 0. Runs from a plain checkout: it puts the
repository root on ``sys.path`` (and on ``PYTHONPATH`` for pytest and the memory children), so
the package need not be installed.

Run: python benchmarks/gpu_check.py [--quick] [--skip-memory]
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

    tp_args = ["--device", "cuda", "--repeats", str(args.repeats)]
    tp_args += ["--quick"] if args.quick else []
    for extra in ([], ["--compile", "reduce-overhead"], ["--compile", "cuda-graphs"],
                  ["--precision", "bf16"]):  # fmt: skip
        print(f"gpu_check: bench_throughput {' '.join(tp_args + extra)}", flush=True)
        bench_throughput.main(tp_args + extra)
    if not args.skip_memory:
        import bench_memory

        bench_memory.main(["--device", "cuda"] + (["--quick"] if args.quick else []))
    if rc != 0:
        print(f"gpu_check: the cuda tests failed (pytest exit code {rc})")
    return rc


if __name__ == "__main__":
    sys.exit(main())
