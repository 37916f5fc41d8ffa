"""torch.compile on a fixed schedule: graph breaks in the step loop, and compiled vs eager time.

Cases (B=256, n=64, K=20, tanh, outside form, lift="identity", forward Euler, constant grid):
a nodal kernel and a Legendre basis kernel (8 modes, piecewise constant in t).

For each: ``torch._dynamo.explain(model)(x)`` (graph count, graph-break count and reasons: the
goal is one graph and no break), the one-off compile time of the first compiled
forward+backward, a check that the compiled model gives the eager outputs and gradients, and the
median forward+backward time compiled / eager (interleaved repeats). "compiled graphs" counts
the graphs dynamo compiled over the whole run (1: no recompilation while timing).

Skips with a message only when a named capability is missing here: no torch.compile, no C/C++
compiler for inductor on CPU, no CUDA device for ``--device cuda``, no working Triton for
inductor on a GPU. Any other exception (a library error, a tracing failure) propagates.

Run: python benchmarks/bench_compile.py [--backend inductor] [--repeats 15] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))
from _timing import compare, table, torch_threads  # noqa: E402

import grids  # noqa: E402
import spacetime_nets as st  # noqa: E402
from spacetime_nets.accel import compile_unavailable  # noqa: E402

#: exception class names (torch._inductor.exc) that mean a missing capability of the machine,
#: not a failure of the library: anything else is re-raised
MISSING_CAPABILITY = {
    "InvalidCxxCompiler": "no working C/C++ compiler for inductor",
    "TritonMissing": "no working Triton installation for inductor on a GPU",
    "GPUTooOldForTriton": "the GPU is too old for Triton",
}


def missing_capability(exc: BaseException) -> str | None:
    """The missing capability named by ``exc`` or by an exception it wraps (dynamo wraps
    backend errors), or None when ``exc`` is some other error."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        for cls in type(e).__mro__:
            if cls.__name__ in MISSING_CAPABILITY:
                first = str(e).splitlines()[0] if str(e) else ""
                return f"{MISSING_CAPABILITY[cls.__name__]} ({cls.__name__}: {first})"
        todo += [e.__cause__, e.__context__, getattr(e, "inner_exception", None)]
    return None


def make_model(kernel: str, n: int, K: int, device: str) -> st.SpaceTimeNet:
    sched = grids.GridSchedule.constant(n, K, T=1.0)
    return st.SpaceTimeNet(
        sched,
        n,
        10,
        kernel=kernel,
        form="outside",
        activation="tanh",
        lift="identity",
        modes=None if kernel == "nodal" else 8,  # a nodal kernel reads no modes
        seed=0,
    ).to(device)


def _grads(model, fn, x):
    model.zero_grad(set_to_none=True)
    out = fn(x)
    out.sum().backward()
    return out.detach(), [p.grad.detach().clone() for p in model.parameters()]


def run_case(kernel, B, n, K, backend, repeats, device) -> dict:
    torch._dynamo.reset()
    model = make_model(kernel, n, K, device)
    x = torch.randn(B, n, generator=torch.Generator().manual_seed(0)).to(device)
    ex = torch._dynamo.explain(model)(x)
    reasons = sorted({str(getattr(b, "reason", b)).splitlines()[0] for b in ex.break_reasons})
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    compiled = torch.compile(model, backend=backend)
    t0 = time.perf_counter()
    out_c, g_c = _grads(model, compiled, x)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    compile_s = time.perf_counter() - t0
    out_e, g_e = _grads(model, model, x)
    same = torch.allclose(out_c, out_e, rtol=1e-4, atol=1e-5) and all(
        torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(g_c, g_e)
    )
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def fwd_bwd(fn):
        def run():
            model.zero_grad(set_to_none=True)
            fn(x).sum().backward()
            sync()

        return run

    t = compare({"eager": fwd_bwd(model), "compiled": fwd_bwd(compiled)}, repeats=repeats)
    graphs_compiled = int(counters["stats"]["unique_graphs"])  # > 1: recompiled while timing
    return {
        "kernel": kernel,
        "B": B,
        "n": n,
        "K": K,
        "backend": backend,
        "graph_count": ex.graph_count,
        "graph_break_count": ex.graph_break_count,
        "break_reasons": reasons,
        "graphs_compiled": graphs_compiled,
        "compile_s": compile_s,
        "same": bool(same),
        "eager_s": t["eager"],
        "compiled_s": t["compiled"],
        "ratio": t["compiled"] / t["eager"],
    }


def _run(args: argparse.Namespace) -> list[dict]:
    why = compile_unavailable(args.backend, args.device)
    if why is not None:
        print(f"bench_compile: skipped: {why}")
        return [{"skipped": why}]
    rows = []
    for kernel in args.kernels:
        try:
            rows.append(
                run_case(
                    kernel,
                    args.batch,
                    args.width,
                    args.steps,
                    args.backend,
                    args.repeats,
                    args.device,
                )
            )
        except Exception as e:
            why = missing_capability(e)
            if why is None:
                raise  # a library or tracing error is a failure, not a skip
            rows.append({"kernel": kernel, "skipped": why})
    print(
        f"torch.compile (backend={args.backend}) of SpaceTimeNet, B={args.batch}, n={args.width},"
        f" K={args.steps}, tanh, outside, constant grid; device={args.device}, torch "
        f"{torch.__version__}, threads={torch.get_num_threads()}, medians of {args.repeats} "
        "interleaved repeats"
    )
    trows = []
    for r in rows:
        if "skipped" in r:
            trows.append((r["kernel"], "-", "-", "-", "-", "-", "-", "-", "-", r["skipped"]))
            continue
        trows.append(
            (
                r["kernel"],
                r["graph_count"],
                r["graph_break_count"],
                r["graphs_compiled"],
                f"{r['compile_s']:.1f}",
                "yes" if r["same"] else "NO",
                f"{r['eager_s'] * 1e3:.2f}",
                f"{r['compiled_s'] * 1e3:.2f}",
                f"{r['ratio']:.3f}",
                "; ".join(r["break_reasons"]) or "-",
            )
        )
    print(
        table(
            trows,
            (
                "kernel",
                "graphs",
                "breaks",
                "compiled graphs",
                "compile s",
                "same out+grad",
                "eager ms",
                "compiled ms",
                "compiled/eager",
                "break reasons",
            ),
        )
    )
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--backend",
        default="inductor",
        help="torch.compile backend (inductor; aot_eager checks tracing only)",
    )
    ap.add_argument("--kernels", nargs="+", default=["nodal", "basis"])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="seconds-long smoke run (small K, n)")
    args = ap.parse_args(argv)
    if args.quick:
        args.batch, args.width, args.steps, args.repeats = 32, 16, 3, 3
    try:
        with torch_threads(args.threads):
            return _run(args)
    finally:
        if hasattr(torch, "_dynamo"):
            torch._dynamo.reset()  # drop the compiled graphs


if __name__ == "__main__":
    main()
