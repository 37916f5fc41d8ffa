"""Core speed ratios, measured side by side in one process (medians of interleaved repeats).

1. fixed grid, nodal kernel, B=256, n=64, K=20, tanh, forward+backward: SpaceTimeNet against a
   hand-written PyTorch ResNet loop with the same widths and weights (goal <= 1.05), and the
   functional ``integrate(x, schedule, kernel)`` against the same loop without lift and
   readout (goal <= 1.05);
2. NeuralODE forward+backward against torchdiffeq.odeint(method="euler") with the same steps
   and weights (goal <= 0.8);
3. a moving schedule against its fixed maximum-width schedule: time ratio over multiply-add
   ratio (goals: hourglass <= 1.2, pyramid <= 1.1). Beside each, the same ratio for hand-written
   loops with the same widths whose transfers cost nothing (a slice or a zero pad, not the
   same function): the floor that the matrix products and the activation of those widths
   leave on this machine, whatever the transfer costs;
4. the exported ResNet against the space-time net (goal: at least as fast, ratio <= 1);
5. a basis kernel applied in factored form against its dense matrices (n=1024, 8 modes; goal:
   at least 4x faster).

Run: python benchmarks/bench_core.py [--threads N] [--repeats R]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import compare, table, torch_threads  # noqa: E402

import grids  # noqa: E402
import spacetime_nets as st  # noqa: E402
from spacetime_nets.integrate import multiply_adds  # noqa: E402


def _fwd_bwd(model, x):
    def run():
        model.zero_grad(set_to_none=True)
        model(x).sum().backward()

    return run


def _row(label: str, a: float, b: float, ratio: float, goal: float) -> tuple:
    """Table row: label, the two median times, the ratio, the goal and whether it is met."""
    met = "yes" if ratio <= goal else "no"
    return (label, f"{a * 1e3:.2f} ms", f"{b * 1e3:.2f} ms", f"{ratio:.3f}", f"<= {goal:g}", met)


def case_hand_resnet(repeats: int, device: str) -> tuple:
    B, n, K = 256, 64, 20
    sched = grids.GridSchedule.constant(n, K, T=1.0)
    model = st.SpaceTimeNet(
        sched, n, 10, kernel="nodal", form="outside", activation="tanh", lift="identity", seed=0
    ).to(device)
    Ws = [w.detach().clone().requires_grad_() for w in model.kernel.weight]
    bs = [b.detach().clone().requires_grad_() for b in model.kernel.bias]
    R = model.readout_matrix().detach().clone().requires_grad_()
    rb = model.readout_bias.detach().clone().requires_grad_()
    dt = 1.0 / K
    x = torch.randn(B, n, device=device)

    def hand():
        for p in (*Ws, *bs, R, rb):
            p.grad = None
        h = x
        for W, b in zip(Ws, bs):
            h = h + dt * torch.tanh(F.linear(h, W, b))
        F.linear(h, R, rb).sum().backward()

    with torch.no_grad():  # same function
        h = x
        for W, b in zip(Ws, bs):
            h = h + dt * torch.tanh(F.linear(h, W, b))
        assert torch.allclose(F.linear(h, R, rb), model(x), atol=1e-4)
    t = compare({"spacetime": _fwd_bwd(model, x), "hand": hand}, repeats=repeats)
    r = t["spacetime"] / t["hand"]
    return _row(
        "SpaceTimeNet / hand-written ResNet loop (B=256,n=64,K=20,tanh)",
        t["spacetime"],
        t["hand"],
        r,
        1.05,
    )


def case_integrate(repeats: int, device: str) -> tuple:
    """The functional API, integrate(x, schedule, kernel), against the same hand-written loop
    (the flow alone: no lift, no readout)."""
    B, n, K = 256, 64, 20
    sched = grids.GridSchedule.constant(n, K, T=1.0)
    kern = st.SpaceTimeNet(
        sched, n, 10, kernel="nodal", form="outside", activation="tanh", lift="identity", seed=0
    ).kernel.to(device)
    Ws, bs, dt = list(kern.weight), list(kern.bias), 1.0 / K
    x = torch.randn(B, n, device=device)

    def loop():
        h = x
        for W, b in zip(Ws, bs):
            h = h + dt * torch.tanh(F.linear(h, W, b))
        return h

    def hand():
        kern.zero_grad(set_to_none=True)
        loop().sum().backward()

    def functional():
        kern.zero_grad(set_to_none=True)
        st.integrate(x, sched, kern, form="outside", activation="tanh").final.sum().backward()

    with torch.no_grad():  # same function
        got = st.integrate(x, sched, kern, form="outside", activation="tanh").final
        assert torch.allclose(got, loop(), atol=1e-5)
    t = compare({"integrate": functional, "hand": hand}, repeats=repeats)
    r = t["integrate"] / t["hand"]
    return _row(
        "integrate(x, schedule, kernel) / hand-written loop (B=256,n=64,K=20,tanh)",
        t["integrate"],
        t["hand"],
        r,
        1.05,
    )


def case_torchdiffeq(repeats: int, device: str) -> tuple:
    try:
        from torchdiffeq import odeint
    except ImportError:  # pragma: no cover
        return ("NeuralODE / torchdiffeq.odeint(euler)", "-", "-", "-", "<= 0.8", "skipped")
    B, d, K, T = 256, 64, 20, 1.0
    model = st.NeuralODE(
        d, T=T, steps=K, form="inside", activation="tanh", out_features=10, seed=0
    ).to(device)
    Ws = [w for w in model.kernel.weight]
    bs = [b for b in model.kernel.bias]
    dt = T / K
    t_grid = torch.linspace(0, T, K + 1, device=device)

    class Field(torch.nn.Module):
        def forward(self, t, x):
            k = min(int(float(t) / dt + 0.5), K - 1)  # Euler evaluates at the grid times
            return F.linear(torch.tanh(x), Ws[k], bs[k])

    field = Field()
    x = torch.randn(B, d, device=device)

    def tdq():
        model.zero_grad(set_to_none=True)
        xT = odeint(field, x, t_grid, method="euler")[-1]
        model.readout(xT).sum().backward()

    with torch.no_grad():
        ref = model.readout(odeint(field, x, t_grid, method="euler")[-1])
        assert torch.allclose(ref, model(x), atol=1e-4), float((ref - model(x)).abs().max())
    t = compare({"ours": _fwd_bwd(model, x), "torchdiffeq": tdq}, repeats=repeats)
    r = t["ours"] / t["torchdiffeq"]
    return _row(
        "NeuralODE / torchdiffeq.odeint(euler) (B=256,d=64,K=20)",
        t["ours"],
        t["torchdiffeq"],
        r,
        0.8,
    )


def _free_transfer_loop(model, x):
    """forward+backward of a hand-written Euler loop (outside form, tanh) with the model's
    widths and matrices, whose transfers are a slice or a zero pad (they cost nothing)."""
    mats = [sm.layers[0] for sm in model.controls()]
    Ws = [W.detach().clone().requires_grad_() for W, _ in mats]
    bs = [b.detach().clone().requires_grad_() for _, b in mats]
    dts = model.disc.dts

    def run():
        for p in (*Ws, *bs):
            p.grad = None
        h = x
        for W, b, dt in zip(Ws, bs, dts):
            m, n = h.shape[1], W.shape[0]
            short = h if m == n else (h[:, :n] if n < m else F.pad(h, (0, n - m)))
            h = torch.add(short, torch.tanh(F.linear(h, W, b)), alpha=dt)
        h.sum().backward()

    return run


def case_moving(repeats: int, device: str, shape: str = "hourglass") -> list[tuple]:
    B, K, n_max, n_min = 256, 20, 256, 32
    if shape == "hourglass":  # the width changes at every step
        moving = grids.GridSchedule.hourglass(n_max, n_min, K)
        label, goal = f"hourglass {n_max}->{n_min}->{n_max}", 1.2
    else:  # three stages: the width changes twice
        moving = grids.GridSchedule.pyramid(n_max, n_min, K, levels=3)
        label, goal = f"pyramid {n_max}->{n_min} (3 levels)", 1.1
    fixed = grids.GridSchedule.constant(n_max, K)
    m_mov = st.SpaceTimeNet(
        moving,
        n_max,
        10,
        kernel="nodal",
        form="outside",
        activation="tanh",
        lift="identity",
        seed=0,
    ).to(device)
    m_fix = st.SpaceTimeNet(
        fixed, n_max, 10, kernel="nodal", form="outside", activation="tanh", lift="identity", seed=0
    ).to(device)
    x = torch.randn(B, n_max, device=device)
    fns = {
        "moving": _fwd_bwd(m_mov, x),
        "fixed": _fwd_bwd(m_fix, x),
        "floor moving": _free_transfer_loop(m_mov, x),
        "floor fixed": _free_transfer_loop(m_fix, x),
    }
    t = compare(fns, repeats=repeats)
    macs = multiply_adds(m_mov.disc, "outside", "euler", B) / multiply_adds(
        m_fix.disc, "outside", "euler", B
    )
    q = t["moving"] / t["fixed"] / macs
    q_floor = t["floor moving"] / t["floor fixed"] / macs
    return [
        _row(
            f"{label} / constant {n_max} (time ratio / MAC ratio {macs:.3f})",
            t["moving"],
            t["fixed"],
            q,
            goal,
        ),
        _row(
            f"  floor: hand loops, transfers free ({label} / constant)",
            t["floor moving"],
            t["floor fixed"],
            q_floor,
            goal,
        ),
    ]


def case_pyramid(repeats: int, device: str) -> list[tuple]:
    return case_moving(repeats, device, shape="pyramid")


def case_export(repeats: int, device: str) -> tuple:
    B = 256
    sched = grids.GridSchedule.hourglass(64, 16, 20)
    model = st.SpaceTimeNet(
        sched, 64, 10, kernel="basis", form="inside", activation="tanh", lift="identity", seed=0
    ).to(device)
    resnet = st.to_resnet(model)
    x = torch.randn(B, 64, device=device)
    t = compare({"resnet": _fwd_bwd(resnet, x), "spacetime": _fwd_bwd(model, x)}, repeats=repeats)
    r = t["resnet"] / t["spacetime"]
    return _row(
        "exported ResNet / SpaceTimeNet (basis kernel, hourglass 64->16->64)",
        t["resnet"],
        t["spacetime"],
        r,
        1,
    )


def case_factored(repeats: int, device: str) -> tuple:
    B, K, n = 256, 20, 1024
    sched = grids.GridSchedule.constant(n, K)
    x = torch.randn(B, n, device=device)
    fns = {}
    for factored in (True, False):
        kern = st.BasisKernel(
            sched.domain,
            modes=8,
            pieces=K,
            factored=factored,
            generator=torch.Generator().manual_seed(0),
        )
        model = st.SpaceTimeNet(
            sched, n, 10, kernel=kern, form="inside", activation="tanh", lift="identity", seed=0
        ).to(device)
        fns["factored" if factored else "dense"] = _fwd_bwd(model, x)
    t = compare(fns, repeats=max(3, repeats // 3))
    return _row(
        f"basis kernel, factored / dense matrices (B={B},n={n},K={K},8 modes)",
        t["factored"],
        t["dense"],
        t["factored"] / t["dense"],
        0.25,
    )


def main(argv: list[str] | None = None) -> list[tuple]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    with torch_threads(args.threads):
        rows = []
        for case in (
            case_hand_resnet,
            case_integrate,
            case_torchdiffeq,
            case_moving,
            case_pyramid,
            case_export,
            case_factored,
        ):
            got = case(args.repeats, args.device)
            rows += got if isinstance(got, list) else [got]
        threads = torch.get_num_threads()
    print(
        f"device={args.device}, torch threads={threads}, "
        f"medians of {args.repeats} interleaved repeats"
    )
    print(table(rows, ("comparison (forward+backward)", "A", "B", "ratio", "goal", "met")))
    return rows


if __name__ == "__main__":
    main()
