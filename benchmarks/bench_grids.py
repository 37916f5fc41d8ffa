"""Time building long grid schedules and all their transfers (goal: under 1 s each).

Cases, each a 1,000-step schedule built from scratch together with ``schedule.transfers()``:

- ``from_function``: widths from a smooth profile between 2 and 256, for each transfer kind;
- ``from_widths``: random widths in 2..256 (seed 0), for each transfer kind;
- ``moving``: drifting nodes (``GridSchedule.moving``) with widths up to 256, for each kind.

Every case is timed ``--repeats`` times with ``time.perf_counter`` and the median is reported.

Usage: ``python benchmarks/bench_grids.py [--steps 1000] [--max-width 256] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

try:
    from grids import TRANSFER_KINDS, GridSchedule
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from grids import TRANSFER_KINDS, GridSchedule

GOAL_S = 1.0


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
    args = parser.parse_args(argv)
    if args.steps < 1 or args.max_width < 2 or args.repeats < 1:
        parser.error("need --steps >= 1, --max-width >= 2 and --repeats >= 1")
    threads_before = torch.get_num_threads()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        return _run(args.steps, args.max_width, args.repeats)
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


if __name__ == "__main__":
    main()
