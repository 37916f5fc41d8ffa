"""Run every benchmark in turn and print all their tables (``make bench``).

Order: grids, core, memory, compile, throughput, peers, conv, adapt, workloads, ucr. Each
script runs in its own process (no thread setting, compiled graph or allocator state carries
from one to the next).
``--quick`` is passed to the scripts that have it; the others get short settings instead.

Run: python benchmarks/run_all.py [--quick] [--only memory compile] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: name -> (script, arguments in place of --quick for scripts without it)
BENCHMARKS = {
    "grids": ("bench_grids.py", ["--steps", "100", "--repeats", "1"]),
    "core": ("bench_core.py", ["--repeats", "3"]),
    "memory": ("bench_memory.py", None),
    "compile": ("bench_compile.py", None),
    "throughput": ("bench_throughput.py", None),
    "peers": ("bench_peers.py", None),
    "conv": ("bench_conv.py", None),
    "adapt": ("bench_adapt.py", None),
    "workloads": ("bench_workloads.py", None),
    "ucr": ("bench_ucr.py", None),
}


def has_flag(script: Path, flag: str) -> bool:
    return f'"{flag}"' in script.read_text(encoding="utf-8")


def plan(names: list[str], quick: bool, threads: int) -> list[tuple[str, list[str]]]:
    """(name, command) for each benchmark to run."""
    out = []
    for name in names:
        script, short = BENCHMARKS[name]
        path = HERE / script
        cmd = [sys.executable, str(path)]
        if quick:
            cmd += ["--quick"] if has_flag(path, "--quick") or short is None else short
        if threads:
            cmd += ["--threads", str(threads)]
        out.append((name, cmd))
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="seconds-long smoke run of each")
    ap.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    ap.add_argument("--threads", type=int, default=0, help="torch threads for every script")
    args = ap.parse_args(argv)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    rows = []
    for name, cmd in plan(args.only, args.quick, args.threads):
        print(f"\n=== {name}: python benchmarks/{Path(cmd[1]).name} {' '.join(cmd[2:])}")
        sys.stdout.flush()
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, cwd=str(ROOT), env=env).returncode
        rows.append({"name": name, "returncode": rc, "seconds": time.perf_counter() - t0})
    print("\n=== summary")
    for r in rows:
        status = "ok" if r["returncode"] == 0 else f"FAILED (exit {r['returncode']})"
        print(f"{r['name']:<11} {r['seconds']:7.1f} s  {status}")
    return rows


if __name__ == "__main__":
    sys.exit(0 if all(r["returncode"] == 0 for r in main()) else 1)
