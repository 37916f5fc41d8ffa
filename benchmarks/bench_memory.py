"""Peak memory of forward+backward over long horizons: plain autograd against checkpointing.

Work: a SpaceTimeNet with a nodal kernel on a constant schedule (B=256, n=64, tanh, outside
form, lift="identity", forward Euler) for K = 10, 100, 1000 steps, once with plain autograd and
once with ``checkpoint=m`` (segments of m ~ sqrt(K) steps recomputed in the backward pass).

Every case runs in a fresh Python process (``sys.executable`` running this file with
``--case``), so that no allocation of one case is reused by another. In that process:

1. build the schedule, the model and the input, and run one forward+backward of a two-step
   model of the same shapes and variant (starts the autograd engine, thread pools, math
   libraries and the checkpoint machinery: one-time costs that do not depend on K);
2. reset the peak resident set size (``/proc/self/clear_refs`` <- 5) and read the baseline
   ``VmRSS``; on CUDA ``torch.cuda.reset_peak_memory_stats`` and ``memory_allocated``;
3. run a single forward+backward of the model (no warm-up of that model) and read ``VmHWM``
   (on CUDA ``max_memory_allocated``): the peak increase over the baseline is reported;
4. time ``--repeats`` further forward+backward passes (median).

What is measured (``--modes``; one pair of fresh processes per K and mode):

- ``rss``: peak RSS increase with the default allocator, parameter gradients made by the
  backward pass. The strict number: it includes the gradients (the same in both variants, a
  floor no checkpointing removes: column "grads MiB") and what the allocator cannot reuse;
- ``rss-live``: the same with glibc's ``M_MMAP_THRESHOLD`` at 64 KiB (``MALLOC_MMAP_THRESHOLD_``
  in the child's environment): every state buffer is its own mapping and goes back to the OS when
  freed, so RSS follows the live tensor memory. Its times include an mmap/munmap per buffer and
  are not representative;
- ``rss-live-act``: as ``rss-live`` with the gradients allocated before the baseline (as in a
  loop with ``zero_grad(set_to_none=False)``): activations and temporaries only;
- on CUDA, ``cuda`` and ``cuda-act``: the same two ideas with ``max_memory_allocated``.

Goal: at K=1000 the checkpointed peak is <= 15% of the plain peak, for <= 1.5x the time. The
"same out" column checks that both variants give the same outputs and gradients.

Run: python benchmarks/bench_memory.py [--steps 10 100 1000] [--device cpu] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _timing import proc_status_kib, reset_peak_rss, table  # noqa: E402

MEM_GOAL = 0.15
TIME_GOAL = 1.5


# --------------------------------------------------------------------------- child process
def _rss_kib() -> tuple[int, int]:
    """(current RSS, peak RSS) in KiB."""
    rss, hwm = proc_status_kib("VmRSS"), proc_status_kib("VmHWM")
    if rss is None or hwm is None:  # not Linux: psutil for the current value, rusage for peak
        import resource

        import psutil

        rss = psutil.Process().memory_info().rss // 1024
        hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if sys.platform == "darwin":
            hwm //= 1024
    return rss, hwm


def run_case(
    steps: int,
    checkpoint: int | None,
    batch: int,
    width: int,
    device: str,
    repeats: int,
    threads: int,
    grads: str = "backward",
) -> dict:
    """One measurement (meant to run in a fresh process); returns a JSON-able dict."""
    import gc

    import torch

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import grids
    import spacetime_nets as st

    if threads:
        torch.set_num_threads(threads)
    cuda = device.startswith("cuda")

    def build(K: int, m: int | None):
        sched = grids.GridSchedule.constant(width, K, T=1.0)
        return st.SpaceTimeNet(
            sched,
            width,
            10,
            kernel="nodal",
            form="outside",
            activation="tanh",
            lift="identity",
            checkpoint=m,
            seed=0,
        ).to(device)

    model = build(steps, checkpoint)
    x = torch.randn(batch, width, generator=torch.Generator().manual_seed(0)).to(device)
    grad_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    # one-time runtime start-up (independent of K) on a separate two-step model of the same
    # shapes and the same variant: checkpointing loads its machinery on first use
    tiny = build(2, None if checkpoint is None else 1)
    tiny(x).sum().backward()
    del tiny
    gc.collect()

    preallocated = grads == "preallocated"
    if preallocated:  # as in a loop with zero_grad(set_to_none=False): grads are model state
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        gc.collect()

    def fwd_bwd():
        model.zero_grad(set_to_none=not preallocated)
        out = model(x)
        out.sum().backward()
        return out

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    reset = reset_peak_rss()
    rss0, hwm0 = _rss_kib()
    out = fwd_bwd()
    if cuda:
        torch.cuda.synchronize()
    rss1, hwm1 = _rss_kib()
    # without a reset the baseline is the earlier peak (imports): a lower bound of the increase
    peak_host = (hwm1 - (rss0 if reset else hwm0)) * 1024
    peak_dev = torch.cuda.max_memory_allocated() - base if cuda else None
    checksum = float(out.detach().double().sum())
    grad_norm = float(
        torch.sqrt(sum((p.grad.detach().double() ** 2).sum() for p in model.parameters()))
    )
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fwd_bwd()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return {
        "steps": steps,
        "checkpoint": checkpoint,
        "device": device,
        "grads": grads,
        "peak_host_bytes": peak_host,
        "peak_device_bytes": peak_dev,
        "rss_reset": reset,
        "grad_bytes": grad_bytes,
        "time_s": statistics.median(times) if times else float("nan"),
        "checksum": checksum,
        "grad_norm": grad_norm,
        "threads": torch.get_num_threads(),
    }


#: what is measured: name -> (environment of the child, parameter gradients, description)
MODES = {
    "rss": ({}, "backward", "peak RSS, default allocator, grads made by backward"),
    "rss-live": (
        {"MALLOC_MMAP_THRESHOLD_": "65536"},
        "backward",
        "peak RSS, glibc M_MMAP_THRESHOLD=64 KiB (freed buffers return to the OS: RSS follows "
        "live memory), grads made by backward",
    ),
    "rss-live-act": (
        {"MALLOC_MMAP_THRESHOLD_": "65536"},
        "preallocated",
        "as rss-live, grads allocated before the baseline (activations and temporaries only)",
    ),
    "cuda": ({}, "backward", "torch.cuda.max_memory_allocated, grads made by backward"),
    "cuda-act": ({}, "preallocated", "as cuda, grads allocated before the baseline"),
}


def _spawn(steps: int, checkpoint: int | None, mode: str, args) -> dict:
    env_extra, grads, _ = MODES[mode]
    case = {
        "steps": steps,
        "checkpoint": checkpoint,
        "batch": args.batch,
        "width": args.width,
        "device": args.device,
        "repeats": args.repeats,
        "threads": args.threads,
        "grads": grads,
    }
    cmd = [sys.executable, str(Path(__file__).resolve()), "--case", json.dumps(case)]
    env = {**os.environ, **env_extra}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT), env=env)
    if proc.returncode != 0:
        raise RuntimeError(
            f"bench_memory: case K={steps}, checkpoint={checkpoint}, mode={mode} failed:\n"
            f"{proc.stderr[-4000:]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def default_segment(steps: int) -> int:
    """m ~ sqrt(K): K/m stored boundary states plus one segment recomputed at a time."""
    return max(1, round(math.sqrt(steps)))


def _mib(b: float | None) -> str:
    return "-" if b is None else f"{b / 2**20:.1f}"


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument(
        "--checkpoint", type=int, default=0, help="segment length m (0: round(sqrt(K)) per K)"
    )
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5, help="timed passes per case (median)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--modes",
        nargs="+",
        choices=sorted(MODES),
        help="what to measure (default: rss rss-live rss-live-act on CPU, cuda cuda-act on CUDA)",
    )
    ap.add_argument(
        "--quick", action="store_true", help="seconds-long smoke run (K = 10, 50; first mode only)"
    )
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.case:  # child process: one measurement, one JSON line on stdout
        print(json.dumps(run_case(**json.loads(args.case))))
        return []
    cuda = args.device.startswith("cuda")
    modes = args.modes or (["cuda", "cuda-act"] if cuda else ["rss", "rss-live", "rss-live-act"])
    if args.quick:
        args.steps, args.repeats, modes = [10, 50], 2, modes[:1]
    rows = []
    for K in args.steps:
        m = args.checkpoint or default_segment(K)
        for mode in modes:
            key = "peak_device_bytes" if mode.startswith("cuda") else "peak_host_bytes"
            plain = _spawn(K, None, mode, args)
            ckpt = _spawn(K, m, mode, args)
            same = math.isclose(plain["checksum"], ckpt["checksum"], rel_tol=1e-6, abs_tol=1e-6)
            same = same and math.isclose(plain["grad_norm"], ckpt["grad_norm"], rel_tol=1e-6)
            mem_ratio = ckpt[key] / plain[key] if plain[key] > 0 else float("nan")
            time_ratio = ckpt["time_s"] / plain["time_s"]
            met = mem_ratio <= MEM_GOAL and time_ratio <= TIME_GOAL
            rows.append(
                {
                    "steps": K,
                    "checkpoint": m,
                    "mode": mode,
                    "plain": plain,
                    "checkpointed": ckpt,
                    "plain_bytes": plain[key],
                    "checkpointed_bytes": ckpt[key],
                    "grad_bytes": plain["grad_bytes"],
                    "memory_ratio": mem_ratio,
                    "time_ratio": time_ratio,
                    "same_result": same,
                    "goal_met": met if K >= 1000 else None,
                }
            )
    threads = rows[0]["plain"]["threads"] if rows else 0
    print(
        f"peak memory of one forward+backward (B={args.batch}, n={args.width}, nodal, tanh, "
        f"outside): plain autograd vs checkpoint=m; fresh process per case; "
        f"device={args.device}, torch threads={threads}, time = median of {args.repeats}"
    )
    for mode in modes:
        print(f"  {mode}: {MODES[mode][2]}")
    table_rows = []
    for r in rows:
        p, c = r["plain"], r["checkpointed"]
        goal = "-" if r["goal_met"] is None else ("yes" if r["goal_met"] else "no")
        table_rows.append(
            (
                r["steps"],
                r["checkpoint"],
                r["mode"],
                _mib(r["plain_bytes"]),
                _mib(r["checkpointed_bytes"]),
                _mib(r["grad_bytes"]),
                f"{r['memory_ratio']:.3f}",
                f"{p['time_s'] * 1e3:.1f}",
                f"{c['time_s'] * 1e3:.1f}",
                f"{r['time_ratio']:.2f}",
                "yes" if r["same_result"] else "NO",
                goal,
            )
        )
    print(
        table(
            table_rows,
            (
                "K",
                "m",
                "measure",
                "plain MiB",
                "ckpt MiB",
                "grads MiB",
                "mem ratio",
                "plain ms",
                "ckpt ms",
                "time ratio",
                "same out",
                f"goal K=1000 (<= {MEM_GOAL:g}, <= {TIME_GOAL:g}x)",
            ),
        )
    )
    if rows and not all(r["plain"]["rss_reset"] for r in rows if r["mode"].startswith("rss")):
        print("note: /proc/self/clear_refs unavailable: host peaks are lower bounds")
    return rows


if __name__ == "__main__":
    main()
