"""Time per step against the matrix-multiply limit of the same shapes.

One step = one forward-Euler step of the outside form with tanh on a constant grid,
X <- X + dt tanh(W X + beta), forward and backward (gradients for X, W and beta), run by the
library's step loop (``run_steps`` over ``K`` steps, per-step time = total / K). The limit is
the same chain of ``F.linear`` calls (same shapes, same weights, forward and backward, no
activation, no residual): the three matrix products of a step and nothing else. The table
reports the fraction of the limit reached (limit time / step time; 1 = only matrix products)
and the step's arithmetic rate (6 B n^2 flops per step, forward+backward).

n in {16, 64, 256, 1024}, B in {32, 256}. ``--device cuda`` synchronises around every timed
block (CUDA kernels run asynchronously).

Run: python benchmarks/bench_throughput.py [--device cpu|cuda] [--repeats 15] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))
from _timing import table, torch_threads  # noqa: E402

import grids  # noqa: E402
from spacetime_nets.integrate import Discretization, run_steps  # noqa: E402
from spacetime_nets.kernels import NodalKernel  # noqa: E402


def timed(
    fns: dict[str, Callable[[], object]],
    repeats: int = 15,
    inner: int = 5,
    warmup: int = 3,
    device: str = "cpu",
) -> dict[str, float]:
    """Median seconds per call, interleaved rounds (A B A B ...) like ``_timing.compare``, with
    the device synchronised before and after each timed block on CUDA."""
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            sync()
            samples[name].append((time.perf_counter() - t0) / inner)
    return {name: statistics.median(v) for name, v in samples.items()}


def case(n: int, B: int, K: int, repeats: int, inner: int, device: str) -> dict:
    sched = grids.GridSchedule.constant(n, K, T=1.0)
    gen = torch.Generator().manual_seed(0)
    kernel = NodalKernel(sched, generator=gen).to(device)
    disc = Discretization(sched).to(device)
    x = torch.randn(B, n, generator=gen).to(device).requires_grad_(True)
    Ws = list(kernel.weight)
    bs = list(kernel.bias)
    params = [x, *Ws, *bs]

    def zero():
        for p in params:
            p.grad = None

    def steps():
        zero()
        mats = disc.step_matrices(kernel, "outside", "euler")
        y, _ = run_steps(disc, mats, x, "outside", torch.tanh, "euler")
        y.sum().backward()

    def matmuls():
        zero()
        h = x
        for W, b in zip(Ws, bs):
            h = F.linear(h, W, b)
        h.sum().backward()

    t = timed({"step": steps, "limit": matmuls}, repeats=repeats, inner=inner, device=device)
    step, limit = t["step"] / K, t["limit"] / K
    return {
        "n": n,
        "B": B,
        "K": K,
        "step_s": step,
        "matmul_s": limit,
        "fraction": limit / step,
        "gflops": 6.0 * B * n * n / step / 1e9,
    }


def _run(args: argparse.Namespace) -> list[dict]:
    rows = [
        case(n, B, args.steps, args.repeats, args.inner, args.device)
        for B in args.batches
        for n in args.widths
    ]
    dev = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(
        f"time per step, forward+backward (Euler, outside, tanh) vs F.linear alone; "
        f"device={args.device} ({dev}), torch threads={torch.get_num_threads()}, K={args.steps} "
        f"steps per call, medians of {args.repeats} interleaved repeats"
    )
    print(
        table(
            [
                (
                    r["n"],
                    r["B"],
                    f"{r['step_s'] * 1e6:.1f}",
                    f"{r['matmul_s'] * 1e6:.1f}",
                    f"{r['fraction']:.2f}",
                    f"{r['gflops']:.1f}",
                )
                for r in rows
            ],
            ("n", "B", "step us", "matmul us", "fraction of limit", "step GFLOP/s"),
        )
    )
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[16, 64, 256, 1024])
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 256])
    ap.add_argument("--steps", type=int, default=10, help="steps per timed call (K)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--inner", type=int, default=3, help="calls per timed block")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device here")
    if args.quick:
        args.widths, args.batches, args.steps, args.repeats, args.inner = [16, 64], [32], 4, 3, 2
    with torch_threads(args.threads):
        return _run(args)


if __name__ == "__main__":
    main()
