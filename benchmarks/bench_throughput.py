"""Time per step against the matrix-multiply limit of the same shapes.

One step = one forward-Euler step of the outside form with tanh on a constant grid,
X <- X + dt tanh(W X + beta), forward and backward (gradients for X, W and beta), run by the
library's step loop (``run_steps`` over ``K`` steps, per-step time = total / K). The limit is
the same chain of ``F.linear`` calls (same shapes, same weights, forward and backward, no
activation, no residual): the three matrix products of a step and nothing else. The table
reports the fraction of the limit reached (limit time / step time; 1 = only matrix products)
and the step's arithmetic rate (6 B n^2 flops per step, forward+backward).

Roofline: the device's peak is measured in the same run, as the arithmetic rate of one large
float32 product (``--peak-size`` 2048: a 2048 x 2048 @ 2048 x 2048 ``F.linear``, 2 * 2048^3 flops;
sampled before the first case and after each case, the best rate of the run), and each row
reports the step's rate as a fraction of it ("% of peak"), next to the fraction of the bare
matmul chain.

``--compile [MODE]`` also times the same step loop through
:func:`spacetime_nets.accel.compile_model` (a torch.compile mode, or ``cuda-graphs``: the loop
recorded as CUDA graphs, eager on the CPU), after checking that its outputs and gradients equal
the eager ones. ``--precision bf16`` runs every forward pass (step loop, matmul chain,
compiled loop) under :func:`spacetime_nets.accel.mixed_precision` and takes a bf16 matmul as
the peak.

n in {16, 64, 256, 1024}, B in {32, 256}. ``--device cuda`` synchronises around every timed
block (CUDA kernels run asynchronously). The same script, unchanged, is the GPU benchmark.

Run: python benchmarks/bench_throughput.py [--device cpu|cuda] [--repeats 15] [--quick]
         [--compile [default|reduce-overhead|max-autotune|cuda-graphs]] [--backend inductor]
         [--peak-size 2048] [--precision fp32|bf16]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))
from _timing import table, torch_threads  # noqa: E402

import grids  # noqa: E402
from spacetime_nets import accel  # noqa: E402
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


def peak_matmul(size: int, repeats: int, device: str, dtype=torch.float32) -> dict:
    """The device's measured peak: GFLOP/s of one ``size x size @ size x size`` product
    (2 size^3 flops) issued as ``F.linear(a, b, bias)``, the call the step makes (for bf16 on
    some CPUs ``a @ b`` takes a slower path), from the fastest of ``repeats`` timed calls after
    two warm-up calls (the best rate the device reached: a peak, not a typical time)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen, dtype=dtype).to(device)
    b = torch.randn(size, size, generator=gen, dtype=dtype).to(device)
    bias = torch.zeros(size, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    for _ in range(2):
        F.linear(a, b, bias)
    best = math.inf
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        F.linear(a, b, bias)
        sync()
        best = min(best, time.perf_counter() - t0)
    return {"size": size, "seconds": best, "gflops": 2.0 * size**3 / best / 1e9}


class StepLoop(nn.Module):
    """The benchmarked step loop as a module (what :func:`accel.compile_model` compiles):
    ``x [B, n] -> X^K`` by K Euler steps of the outside form with tanh."""

    def __init__(self, disc: Discretization, kernel: NodalKernel) -> None:
        super().__init__()
        self.disc, self.kernel = disc, kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mats = self.disc.step_matrices(self.kernel, "outside", "euler")
        return run_steps(self.disc, mats, x, "outside", torch.tanh, "euler")[0]


def case(
    n: int,
    B: int,
    K: int,
    repeats: int,
    inner: int,
    device: str,
    compile_mode: str | None = None,
    backend: str | None = None,
    precision: str = "fp32",
) -> dict:
    prec = accel.mixed_precision(precision, device)  # forward passes only, not backward()
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
        with prec:
            mats = disc.step_matrices(kernel, "outside", "euler")
            y, _ = run_steps(disc, mats, x, "outside", torch.tanh, "euler")
        y.sum().backward()

    def matmuls():
        zero()
        h = x
        with prec:
            for W, b in zip(Ws, bs):
                h = F.linear(h, W, b)
        h.sum().backward()

    fns = {"step": steps, "limit": matmuls}
    compiled_info: dict = {}
    if compile_mode is not None:
        if hasattr(torch, "_dynamo"):
            torch._dynamo.reset()  # each case compiles afresh (no recompile limit reached)
        loop = StepLoop(disc, kernel)
        graphs = compile_mode == accel.GRAPH_MODE  # records per shape by itself
        fast = accel.compile_model(
            loop, compile_mode, backend=backend, dynamic=None if graphs else False
        )
        t0 = time.perf_counter()
        with prec:
            out_c = fast(x)
        g_c = torch.autograd.grad(out_c.sum(), params)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        compiled_info["compile_s"] = time.perf_counter() - t0
        with prec:
            out_e = loop(x)
        g_e = torch.autograd.grad(out_e.sum(), params)
        # bf16: fused and unfused kernels round at different places (unit roundoff 2^-8)
        tol = {"rtol": 1e-4, "atol": 1e-5} if precision == "fp32" else {"rtol": 3e-2, "atol": 3e-2}
        compiled_info["same"] = bool(
            torch.allclose(out_c, out_e, **tol)
            and all(torch.allclose(a, b, **tol) for a, b in zip(g_c, g_e))
        )

        def compiled_steps():
            zero()
            with prec:
                y = fast(x)
            y.sum().backward()

        fns["compiled"] = compiled_steps

    t = timed(fns, repeats=repeats, inner=inner, device=device)
    step, limit = t["step"] / K, t["limit"] / K
    flops = 6.0 * B * n * n
    row = {
        "n": n,
        "B": B,
        "K": K,
        "step_s": step,
        "matmul_s": limit,
        "fraction": limit / step,
        "gflops": flops / step / 1e9,
        "matmul_gflops": flops / limit / 1e9,
    }
    if compile_mode is not None:
        comp = t["compiled"] / K
        row.update(
            compiled_s=comp,
            compiled_ratio=comp / step,
            compiled_fraction=limit / comp,
            compiled_gflops=flops / comp / 1e9,
            **compiled_info,
        )
    return row


def _run(args: argparse.Namespace) -> list[dict]:
    # the peak is sampled before the first case and after every case, and the best rate of
    # the run is the roofline: on a shared machine a single early sample can be a slow one
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    samples = [peak_matmul(args.peak_size, max(3, min(args.repeats, 7)), args.device, dtype)]
    rows = []
    for B in args.batches:
        for n in args.widths:
            rows.append(
                case(
                    n,
                    B,
                    args.steps,
                    args.repeats,
                    args.inner,
                    args.device,
                    args.compile,
                    args.backend,
                    args.precision,
                )
            )
            samples.append(peak_matmul(args.peak_size, 2, args.device, dtype))
    peak = max(samples, key=lambda p: p["gflops"])
    slowest = min(p["gflops"] for p in samples)
    for r in rows:
        r["peak_gflops"] = peak["gflops"]
        r["roofline"] = r["gflops"] / peak["gflops"]
        if "compiled_gflops" in r:
            r["compiled_roofline"] = r["compiled_gflops"] / peak["gflops"]
    dev = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(
        f"time per step, forward+backward (Euler, outside, tanh) vs F.linear alone; "
        f"precision={args.precision}; device={args.device} ({dev}), torch threads="
        f"{torch.get_num_threads()}, K={args.steps} steps per call, medians of {args.repeats} "
        "interleaved repeats"
    )
    print(
        f"peak (roofline): {peak['gflops']:.1f} GFLOP/s, the fastest of a few "
        f"{peak['size']}x{peak['size']} @ {peak['size']}x{peak['size']} {args.precision} "
        "F.linear products "
        f"({peak['seconds'] * 1e3:.2f} ms), sampled {len(samples)} times during this run "
        f"(slowest sample {slowest:.1f} GFLOP/s)"
    )
    header = (
        "n",
        "B",
        "step us",
        "matmul us",
        "fraction of limit",
        "step GFLOP/s",
        "% of peak",
        "matmul % of peak",
    )
    if args.compile is not None:
        backend = args.backend or "inductor"
        print(
            f"compiled: accel.compile_model(mode={args.compile!r}"
            + ("" if args.compile == accel.GRAPH_MODE else f", backend={backend!r}, dynamic=False")
            + "), outputs and gradients checked against eager first"
        )
        header += (
            "compiled us",
            "compiled/eager",
            "compiled fraction",
            "compiled % of peak",
            "same",
            "compile s",
        )
    trows = []
    for r in rows:
        cells = [
            r["n"],
            r["B"],
            f"{r['step_s'] * 1e6:.1f}",
            f"{r['matmul_s'] * 1e6:.1f}",
            f"{r['fraction']:.2f}",
            f"{r['gflops']:.1f}",
            f"{100 * r['roofline']:.1f}",
            f"{100 * r['matmul_gflops'] / r['peak_gflops']:.1f}",
        ]
        if args.compile is not None:
            cells += [
                f"{r['compiled_s'] * 1e6:.1f}",
                f"{r['compiled_ratio']:.2f}",
                f"{r['compiled_fraction']:.2f}",
                f"{100 * r['compiled_roofline']:.1f}",
                "yes" if r["same"] else "NO",
                f"{r['compile_s']:.1f}",
            ]
        trows.append(tuple(cells))
    print(table(trows, header))
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=None, help="default 16 64 256 1024")
    ap.add_argument("--batches", type=int, nargs="+", default=None, help="default 32 256")
    ap.add_argument("--steps", type=int, default=10, help="steps per timed call (K)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--inner", type=int, default=3, help="calls per timed block")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--peak-size",
        type=int,
        default=2048,
        help="side of the square matmul whose rate is the peak",
    )
    ap.add_argument(
        "--compile",
        nargs="?",
        const="default",
        default=None,
        choices=[m for m in accel.COMPILE_MODES],
        help="also time the step loop through accel.compile_model (MODE, default: default)",
    )
    ap.add_argument(
        "--backend",
        default=None,
        help="torch.compile backend for --compile (default inductor; aot_eager traces only)",
    )
    ap.add_argument(
        "--precision",
        default="fp32",
        choices=list(accel.PRECISIONS),
        help="bf16: forward passes under accel.mixed_precision, the peak a bf16 matmul",
    )
    ap.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device here")
    if args.peak_size < 1:
        ap.error(f"--peak-size: expected a positive int, got {args.peak_size}")
    if args.compile == accel.GRAPH_MODE and args.backend is not None:
        ap.error("--backend: the cuda-graphs mode uses no compiler backend")
    if args.quick:  # explicit --widths / --batches still apply
        args.widths = args.widths or [16, 64]
        args.batches = args.batches or [32]
        args.steps, args.repeats, args.inner = 4, 3, 2
        args.peak_size = min(args.peak_size, 256)
    args.widths = args.widths or [16, 64, 256, 1024]
    args.batches = args.batches or [32, 256]
    try:
        with torch_threads(args.threads):
            return _run(args)
    finally:
        if args.compile is not None and hasattr(torch, "_dynamo"):
            torch._dynamo.reset()  # drop the compiled graphs


if __name__ == "__main__":
    main()
