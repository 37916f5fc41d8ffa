"""The same work done by peers: SpaceTimeNet against a hand-written loop, torchdiffeq, torchquad.

Part 1, a fixed-width ResNet / neural ODE (B=256, n=64, K=20 steps on [0, 1], outside form
with tanh, piecewise-constant controls W_k, beta_k, identity lift, linear readout), forward
and backward, the same weights everywhere:

- SpaceTimeNet (nodal kernel, constant grid), forward Euler: the reference;
- a hand-written ResNet loop (h = h + dt tanh(F.linear(h, W_k, b_k)));
- ``torchdiffeq.odeint(method="euler")`` on the same time grid (the field picks the control of
  the step that contains t; ``perturb`` makes the stage times fall inside their step);
- SpaceTimeNet with ``method="rk4"`` against ``torchdiffeq.odeint(method="rk4")`` (torchdiffeq's
  rk4 is the 3/8 rule: the same four stages, slightly different weights, so outputs agree to
  O(dt^4), not exactly).

Part 2, the space-time layer with a continuous (Legendre basis) kernel on a small problem:
SpaceTimeNet with quadrature weights folded into precomputed matrices W^k, against a dense
torchquad integral inside every step (``Trapezoid`` / ``GaussLegendre``, N = n points:
int w(t_k, xi_i, zeta) x(zeta) dzeta per output node xi_i, the kernel and the state evaluated
at torchquad's sample points, the state by linear interpolation between the grid nodes),
once per output node and once for all output nodes in one vectorised call. It shows why the
library computes nodes and weights once per schedule and never calls torchquad in a step.

Ratios are times divided by the SpaceTimeNet time of the same work (medians of interleaved
repeats in one process).

Run: python benchmarks/bench_peers.py [--repeats 15] [--quick]
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))
from _timing import compare, table, torch_threads  # noqa: E402

import grids  # noqa: E402
import spacetime_nets as st  # noqa: E402
from spacetime_nets.kernels import basis_functions  # noqa: E402


def _fwd_bwd(model, x):
    def run():
        model.zero_grad(set_to_none=True)
        model(x).sum().backward()

    return run


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


# --------------------------------------------------------------------------- part 1
class _PiecewiseField(torch.nn.Module):
    """f(t, x) = tanh(x W_k^T + b_k) with k the step of the time grid that contains t."""

    def __init__(self, Ws, bs, t_grid):
        super().__init__()
        self.Ws, self.bs, self.t_grid = Ws, bs, t_grid
        self.K = len(Ws)

    def forward(self, t, x):
        k = int(torch.searchsorted(self.t_grid, t.reshape(1), right=True)) - 1
        k = min(max(k, 0), self.K - 1)
        return torch.tanh(F.linear(x, self.Ws[k], self.bs[k]))


def part_resnet(B: int, n: int, K: int, repeats: int) -> list[tuple]:
    try:
        from torchdiffeq import odeint
    except ImportError:  # pragma: no cover
        odeint = None
    sched = grids.GridSchedule.constant(n, K, T=1.0)
    x = torch.randn(B, n, generator=torch.Generator().manual_seed(0))
    rows = []
    for method in ("euler", "rk4"):
        model = st.SpaceTimeNet(
            sched,
            n,
            10,
            kernel="nodal",
            form="outside",
            activation="tanh",
            lift="identity",
            method=method,
            seed=0,
        )
        Ws = list(model.kernel.weight)
        bs = list(model.kernel.bias)
        R, rb = model.readout_values, model.readout_bias
        w_last = model.disc.grid(K)[1]
        dt = 1.0 / K
        t_grid = sched.times.to(torch.float32)
        params = [*Ws, *bs, R, rb]

        def readout(h, R=R, rb=rb, w_last=w_last):
            return F.linear(h, R * w_last, rb)

        fns = {"SpaceTimeNet": _fwd_bwd(model, x)}
        notes = {"SpaceTimeNet": f"nodal kernel, constant grid, {method}"}
        outs = {}
        with torch.no_grad():
            ref = model(x)
        if method == "euler":

            def hand(Ws=Ws, bs=bs, readout=readout, dt=dt):
                h = x
                for W, b in zip(Ws, bs):
                    h = h + dt * torch.tanh(F.linear(h, W, b))
                return readout(h)

            fns["hand-written loop"] = _call_bwd(hand, params)
            notes["hand-written loop"] = "h = h + dt tanh(F.linear(h, W_k, b_k))"
            with torch.no_grad():
                outs["hand-written loop"] = hand()
        if odeint is not None:
            field = _PiecewiseField(Ws, bs, t_grid)

            def tdq(field=field, method=method, readout=readout, t_grid=t_grid):
                y = odeint(field, x, t_grid, method=method, options={"perturb": True})
                return readout(y[-1])

            name = f"torchdiffeq.odeint({method})"
            fns[name] = _call_bwd(tdq, params)
            notes[name] = "same grid and controls" + (", 3/8 rule" if method == "rk4" else "")
            with torch.no_grad():
                outs[name] = tdq()
        t = compare(fns, repeats=repeats)
        base = t["SpaceTimeNet"]
        for name, sec in t.items():
            diff = "-" if name == "SpaceTimeNet" else f"{_max_diff(outs[name], ref):.1e}"
            rows.append(
                (
                    f"ResNet B={B} n={n} K={K} ({method})",
                    name,
                    notes[name],
                    f"{sec * 1e3:.2f}",
                    f"{sec / base:.2f}",
                    diff,
                )
            )
    return rows


def _call_bwd(fn, params):
    def run():
        for p in params:
            p.grad = None
        fn().sum().backward()

    return run


# --------------------------------------------------------------------------- part 2
def _interp(nodes: torch.Tensor, values: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of ``values`` [B, n] on ``nodes`` [n] at points q [N] -> [N, B]."""
    i = torch.searchsorted(nodes, q).clamp(1, nodes.numel() - 1)
    x0, x1 = nodes[i - 1], nodes[i]
    lam = ((q - x0) / (x1 - x0)).clamp(0.0, 1.0)
    return (values[:, i - 1] * (1 - lam) + values[:, i] * lam).T


def _dense_flow(model, x0, rule: str, vectorised: bool):
    """The outside-form Euler flow with every integral done by torchquad inside the step."""
    import torchquad

    integ = torchquad.Trapezoid() if rule == "trapezoid" else torchquad.GaussLegendre()
    kern = model.kernel
    (a, b) = kern.domain.bounds[0]
    disc = model.disc
    domain = [[a, b]]
    x = x0
    for k, dt in enumerate(disc.dts):
        C, c = kern.coefficients(disc.times[k])
        nodes_in = disc.grid(k)[0][:, 0]
        nodes_out = disc.grid(k + 1)[0][:, 0]
        phi_out = basis_functions(nodes_out, a, b, kern.modes, kern.basis)  # [n_out, A]
        n = nodes_in.numel()
        state = x

        if vectorised:

            def f(p, state=state, C=C, phi_out=phi_out, nodes_in=nodes_in):
                z = p[:, 0].to(state.dtype)  # GaussLegendre hands float64 points
                w = (phi_out @ C) @ basis_functions(z, a, b, kern.modes, kern.basis).T  # [o, N]
                return w.T[:, :, None] * _interp(nodes_in, state, z)[:, None, :]  # [N, o, B]

            integral = integ.integrate(f, dim=1, N=n, integration_domain=domain, backend="torch")
            integral = integral.T  # [B, n_out]
        else:
            cols = []
            for i in range(phi_out.shape[0]):

                def f(p, i=i, state=state, C=C, phi_out=phi_out, nodes_in=nodes_in):
                    z = p[:, 0].to(state.dtype)
                    w = phi_out[i] @ C @ basis_functions(z, a, b, kern.modes, kern.basis).T
                    return w[:, None] * _interp(nodes_in, state, z)  # [N, B]

                cols.append(
                    integ.integrate(f, dim=1, N=n, integration_domain=domain, backend="torch")
                )
            integral = torch.stack(cols, dim=1)  # [B, n_out]
        x = disc.transfer(k, x) + dt * torch.tanh(integral + phi_out @ c)
    return x


def part_quadrature(B: int, n: int, K: int, modes: int, repeats: int) -> list[tuple]:
    try:
        import torchquad  # noqa: F401
    except ImportError:  # pragma: no cover
        return [("space-time layer", "torchquad", "not installed", "-", "-", "-")]
    rows = []
    x = torch.randn(B, n, generator=torch.Generator().manual_seed(0))
    for rule in ("trapezoid", "gauss_legendre"):
        sched = grids.GridSchedule.constant(n, K, T=1.0, rule=rule)
        model = st.SpaceTimeNet(
            sched,
            n,
            4,
            kernel="basis",
            form="outside",
            activation="tanh",
            lift="identity",
            modes=modes,
            seed=0,
        )
        with torch.no_grad():
            ref = model(x)
        fns = {"SpaceTimeNet": _fwd_bwd(model, x)}
        notes = {"SpaceTimeNet": "W^k = phi C_k phi^T omega, once per forward"}
        outs = {}
        cls = "Trapezoid" if rule == "trapezoid" else "GaussLegendre"
        for vec in (False, True):
            name = f"torchquad.{cls} " + ("(all nodes, 1 call)" if vec else "(per node)")

            def dense(vec=vec, rule=rule, model=model):
                return model.readout(_dense_flow(model, x, rule, vec))

            fns[name] = _call_bwd(dense, list(model.parameters()))
            calls = K if vec else K * n
            notes[name] = f"{calls} integrate calls per forward"
            with torch.no_grad():
                outs[name] = dense()
        t = compare(fns, repeats=repeats, inner=1, warmup=1)
        base = t["SpaceTimeNet"]
        for name, sec in t.items():
            diff = "-" if name == "SpaceTimeNet" else f"{_max_diff(outs[name], ref):.1e}"
            rows.append(
                (
                    f"space-time layer B={B} n={n} K={K} ({rule})",
                    name,
                    notes[name],
                    f"{sec * 1e3:.2f}",
                    f"{sec / base:.1f}",
                    diff,
                )
            )
    return rows


def _run(args: argparse.Namespace) -> list[tuple]:
    if args.quick:
        big, small, reps, qreps = (32, 16, 4), (8, 8, 2, 4), 3, 2
    else:
        big, small, reps, qreps = (256, 64, 20), (32, 16, 4, 6), args.repeats, 5
    rows = part_resnet(*big, reps)
    with warnings.catch_warnings():  # torchquad (through autoray) copy-constructs tensors
        warnings.filterwarnings("ignore", message="To copy construct from a tensor")
        rows += part_quadrature(*small, qreps)
    print(
        f"peers on the same work, forward+backward, CPU, torch threads={torch.get_num_threads()};"
        f" ratio = time / SpaceTimeNet time of the same work; max |diff| of the outputs"
    )
    print(table(rows, ("work", "candidate", "how", "ms", "ratio", "max |diff|")))
    for r in rows:
        if r[4] != "-" and not math.isfinite(float(r[4])):
            raise RuntimeError(f"bench_peers: non-finite ratio in {r}")
    return rows


def main(argv: list[str] | None = None) -> list[tuple]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    args = ap.parse_args(argv)
    with torch_threads(args.threads):
        return _run(args)


if __name__ == "__main__":
    main()
