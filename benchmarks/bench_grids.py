"""Time building long grid schedules and all their transfers (goal: under 1 s each), and the
set-up time and peak memory of wide 1-D grids of every rule (goal: 10^5 nodes in < 1 s, < 50 MB).

Schedule cases, each a 1,000-step schedule built from scratch with ``schedule.transfers()``:

- ``from_function``: widths from a smooth profile between 2 and 256, for each transfer kind;
- ``from_widths``: random widths in 2..256 (seed 0), for each transfer kind;
- ``moving``: drifting nodes (``GridSchedule.moving``) with widths up to 256, for each kind.

Wide grids: ``Grid.uniform(n, (0, 1), rule)`` for every rule in ``grids.RULES`` and every n in
``--grid-sizes`` (10^k + 1 nodes, which every rule accepts), then a 3-grid schedule of widths
n, (n + 1) / 2, n with its transfers (each kind) for the largest n. Peak memory is the rise of
the process's resident set (Linux: ``VmHWM`` after resetting it through
``/proc/self/clear_refs``, so torch and numpy allocations both count); elsewhere it falls back
to ``tracemalloc`` (numpy and Python allocations only), and the column header says which.

Every case is timed ``--repeats`` times with ``time.perf_counter`` and the median is reported.

Usage: ``python benchmarks/bench_grids.py [--steps 1000] [--max-width 256] [--repeats 5]
[--grid-sizes 1001,10001,100001] [--only schedules|grids]``.
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

try:
    from grids import RULES, TRANSFER_KINDS, Grid, GridSchedule
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from grids import RULES, TRANSFER_KINDS, Grid, GridSchedule

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import proc_status_kib, reset_peak_rss  # noqa: E402

GOAL_S = 1.0
GOAL_MB = 50.0
GRID_SIZES = (1001, 10001, 100001)


def smooth_width(max_width: int) -> Callable[[float], int]:
    """A smooth profile over t in [0, 1] through max_width, 2, max_width, 2 (at t = 0, 1/3, ...)."""

    def width(t: float) -> int:
        s = 0.5 + 0.5 * math.cos(3.0 * math.pi * t)
        return int(round(2 + (max_width - 2) * s))

    return width


def random_widths(steps: int, max_width: int, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    return [int(v) for v in rng.integers(2, max_width + 1, size=steps + 1)]


def moving_widths(steps: int, max_width: int) -> list[int]:
    """Widths from max_width / 4 up to max_width and back, in a few plateaus."""
    lo = max(2, max_width // 4)
    return [
        int(round(lo + (max_width - lo) * math.sin(math.pi * k / steps) ** 2))
        for k in range(steps + 1)
    ]


def build_cases(steps: int, max_width: int) -> list[tuple[str, str, Callable[[], GridSchedule]]]:
    cases = []
    rand = random_widths(steps, max_width)
    mov = moving_widths(steps, max_width)
    for kind in TRANSFER_KINDS:
        cases.append(
            (
                "from_function",
                kind,
                lambda kind=kind: GridSchedule.from_function(
                    smooth_width(max_width), steps=steps, transfer_kind=kind
                ),
            )
        )
    for kind in TRANSFER_KINDS:
        cases.append(
            (
                "from_widths",
                kind,
                lambda kind=kind: GridSchedule.from_widths(rand, transfer_kind=kind),
            )
        )
    for kind in TRANSFER_KINDS:
        cases.append(
            ("moving", kind, lambda kind=kind: GridSchedule.moving(mov, transfer_kind=kind))
        )
    return cases


def time_case(build: Callable[[], GridSchedule], repeats: int) -> tuple[float, GridSchedule]:
    times = []
    schedule = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        schedule = build()
        schedule.transfers()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), schedule


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Run the benchmark, print the table, and return one dict per case."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="time steps K (default 1000)")
    parser.add_argument("--max-width", type=int, default=256, help="largest width (default 256)")
    parser.add_argument("--repeats", type=int, default=5, help="timings per case (median)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: the work is small and threads only add noise; "
        "0 keeps torch's default)",
    )
    parser.add_argument(
        "--grid-sizes",
        default=",".join(str(n) for n in GRID_SIZES),
        help="node counts of the wide 1-D grids, comma-separated (default 1001,10001,100001)",
    )
    parser.add_argument(
        "--only", choices=("schedules", "grids"), default=None, help="run one of the two parts"
    )
    args = parser.parse_args(argv)
    if args.steps < 1 or args.max_width < 2 or args.repeats < 1:
        parser.error("need --steps >= 1, --max-width >= 2 and --repeats >= 1")
    try:
        sizes = [int(v) for v in args.grid_sizes.split(",") if v.strip()]
    except ValueError:
        parser.error(f"--grid-sizes: expected comma-separated ints, got {args.grid_sizes!r}")
    if not sizes or min(sizes) < 5 or any((n - 1) % 4 for n in sizes):
        parser.error("--grid-sizes: every size must be 4k + 1 >= 5 (valid for every rule)")
    threads_before = torch.get_num_threads()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        rows = []
        if args.only in (None, "schedules"):
            rows += _run(args.steps, args.max_width, args.repeats)
        if args.only in (None, "grids"):
            rows += _run_wide(sizes, args.repeats)
        return rows
    finally:
        torch.set_num_threads(threads_before)  # leave a calling script's setting alone


def _run(steps: int, max_width: int, repeats: int) -> list[dict]:
    # warm-up: imports, torchquad and first torch kernels are not part of the timings
    GridSchedule.from_widths([3, 5, 4]).transfers()
    GridSchedule.moving([3, 5, 4]).transfers()

    rows = []
    header = (
        f"{'schedule':<14} {'transfer':<8} {'K':>5} {'widths':>9} {'median s':>9}  < {GOAL_S:g} s"
    )
    print(
        f"build {steps}-step schedule + all transfers, median of {repeats} "
        f"(torch threads: {torch.get_num_threads()})"
    )
    print(header)
    print("-" * len(header))
    for name, kind, build in build_cases(steps, max_width):
        median, s = time_case(build, repeats)
        w = s.widths
        row = {
            "schedule": name,
            "transfer": kind,
            "steps": s.num_steps,
            "min_width": min(w),
            "max_width": max(w),
            "median_s": median,
            "ok": median < GOAL_S,
        }
        rows.append(row)
        print(
            f"{name:<14} {kind:<8} {s.num_steps:>5} {min(w):>4}..{max(w):<4}"
            f"{median:>9.3f}  {'yes' if row['ok'] else 'NO'}"
        )
    return rows


# --------------------------------------------------------------------------- wide grids
def _can_reset_peak() -> bool:
    return reset_peak_rss() and proc_status_kib("VmHWM") is not None


def _release_free_memory() -> None:
    """Hand freed heap memory back to the system (glibc ``malloc_trim``), so that the resident
    set before a case counts live memory only; a no-op where it is unavailable."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_memory_mb(build: Callable[[], object]) -> tuple[float, str]:
    """Peak memory (MB, 10^6 bytes) that ``build()`` adds while it runs, and how it was read."""
    _release_free_memory()
    if _can_reset_peak():
        before = proc_status_kib("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # VmHWM := VmRSS
        out = build()
        peak = proc_status_kib("VmHWM")
        del out
        return max(0, peak - before) * 1024 / 1e6, "rss"
    import tracemalloc

    tracemalloc.start()
    try:
        out = build()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    del out
    return peak / 1e6, "tracemalloc"


def wide_cases(sizes: Sequence[int]) -> list[tuple[str, int, Callable[[], object]]]:
    cases = []
    for rule in RULES:
        for n in sizes:
            cases.append((rule, n, lambda rule=rule, n=n: Grid.uniform(n, (0.0, 1.0), rule)))
    n = max(sizes)
    for kind in TRANSFER_KINDS:

        def schedule(kind=kind, n=n):
            s = GridSchedule.from_widths([n, (n + 1) // 2, n], transfer_kind=kind)
            s.transfers()
            return s

        cases.append((f"schedule+{kind}", n, schedule))
    return cases


def _run_wide(sizes: Sequence[int], repeats: int) -> list[dict]:
    for rule in RULES:  # warm-up: first calls load scipy.special and torch kernels
        Grid.uniform(9, (0.0, 1.0), rule)
    rows = []
    cases = wide_cases(sizes)
    how = "rss" if _can_reset_peak() else "tracemalloc"
    header = (
        f"{'grid':<18} {'n':>7} {'median s':>9} {'peak MB':>8} ({how})  "
        f"< {GOAL_S:g} s  < {GOAL_MB:g} MB"
    )
    print(f"\nwide 1-D grids on (0, 1): set-up time (median of {repeats}) and peak memory")
    print(header)
    print("-" * len(header))
    for name, n, build in cases:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = build()
            times.append(time.perf_counter() - t0)
            del out
        median = statistics.median(times)
        peak, how = peak_memory_mb(build)
        row = {
            "grid": name,
            "n": n,
            "median_s": median,
            "peak_mb": peak,
            "memory": how,
            "ok": median < GOAL_S and peak < GOAL_MB,
        }
        rows.append(row)
        print(
            f"{name:<18} {n:>7} {median:>9.4f} {peak:>8.1f}{'':>{len(how) + 3}}  "
            f"{'yes' if median < GOAL_S else 'NO':>6}  {'yes' if peak < GOAL_MB else 'NO':>7}"
        )
    return rows


if __name__ == "__main__":
    main()
