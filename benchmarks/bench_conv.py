"""Stationary kernels against the plain PyTorch blocks they run as, side by side in one process
(medians of interleaved repeats, forward + backward, same weights, outputs checked equal first).

1. ``kernel="conv"``: a SpaceTimeNet (pointwise lift, K steps X <- X + dt kappa * gelu(X) of a
   windowed continuous convolution on one equispaced grid, quadrature readout) against the same
   network written by hand with ``nn.Conv1d``: a 1x1 lift, K ``nn.Conv1d(c, c, taps)`` blocks
   y = x + dt conv(gelu(x)), an ``nn.Linear`` head; same channels, taps, steps, batch (goal:
   ratio <= 1.2);
2. ``kernel="spectral"``: the same with an FNO-like kernel on a periodic grid, against an FFT
   block written by hand (``rfft``, the lowest modes multiplied by complex c x c weights,
   ``irfft``, plus a pointwise 1x1 channel mix with bias) (goal: ratio <= 1.2).

The ratio is (space-time net time) / (hand-written time). The space-time net rebuilds its taps
(or spectral weights) from its continuous parameters in every forward pass; that cost is part of
what is measured.

Run: python benchmarks/bench_conv.py [--quick] [--threads N] [--repeats R] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
from _timing import compare, table, torch_threads  # noqa: E402

from grids import GridSchedule  # noqa: E402
from spacetime_nets import SpaceTimeNet  # noqa: E402

GOAL = 1.2

#: (batch, nodes, channels, steps, radius or modes) of the full and the quick run
SIZES = {
    "full": {"B": 32, "n": 256, "c": 32, "K": 8, "radius": 0.016, "modes": 16},
    "quick": {"B": 8, "n": 32, "c": 4, "K": 2, "radius": 0.1, "modes": 4},
}


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


class HandConvResNet(nn.Module):
    """1x1 lift -> K blocks y = x + dt conv(gelu(x)) -> Linear head, in plain torch."""

    def __init__(self, cin: int, c: int, n: int, taps: int, steps: int, out: int, dt: float):
        super().__init__()
        self.lift = nn.Conv1d(cin, c, 1)
        self.convs = nn.ModuleList(
            nn.Conv1d(c, c, taps, padding=(taps - 1) // 2) for _ in range(steps)
        )
        self.head = nn.Linear(c * n, out)
        self.dt = dt

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lift(x)
        for conv in self.convs:
            h = h + self.dt * conv(F.gelu(h))
        return self.head(h.flatten(1))


class HandFFTBlock(nn.Module):
    """y = irfft(K_m rfft(x)_m for the lowest M modes) + A x + b: ``[B, c, n] -> [B, c, n]``."""

    def __init__(self, c: int, modes: int, n: int):
        super().__init__()
        self.n, self.modes = n, modes
        self.weight = nn.Parameter(torch.zeros(c, c, modes, dtype=torch.cfloat))
        self.mix = nn.Conv1d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xh = torch.fft.rfft(x, dim=-1)[..., : self.modes]
        yh = torch.einsum("bim,oim->bom", xh, self.weight)
        return torch.fft.irfft(yh, n=self.n, dim=-1) + self.mix(x)


class HandFNO(nn.Module):
    """1x1 lift -> K blocks y = x + dt fft_block(gelu(x)) -> Linear head, in plain torch."""

    def __init__(self, cin: int, c: int, n: int, modes: int, steps: int, out: int, dt: float):
        super().__init__()
        self.lift = nn.Conv1d(cin, c, 1)
        self.blocks = nn.ModuleList(HandFFTBlock(c, modes, n) for _ in range(steps))
        self.head = nn.Linear(c * n, out)
        self.dt = dt

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lift(x)
        for block in self.blocks:
            h = h + self.dt * block(F.gelu(h))
        return self.head(h.flatten(1))


@torch.no_grad()
def _copy_ends(hand: nn.Module, model: SpaceTimeNet) -> None:
    hand.lift.weight.copy_(model.lift_weight[..., None])
    hand.lift.bias.copy_(model.lift_bias)
    hand.head.weight.copy_(model.readout_matrix())
    hand.head.bias.copy_(model.readout_bias)


def _model(rule: str, kernel: str, sz: dict, device: str, **kw) -> SpaceTimeNet:
    sched = GridSchedule.constant(sz["n"], sz["K"], T=1.0, rule=rule)
    return SpaceTimeNet(
        sched,
        None,
        10,
        kernel=kernel,
        form="inside",
        activation="gelu",
        lift="identity",
        readout="quadrature",
        channels=sz["c"],
        seed=0,
        **kw,
    ).to(device)


def _time_pair(model: nn.Module, hand: nn.Module, x: torch.Tensor, repeats: int, device: str):
    with torch.no_grad():
        ref, got = model(x), hand(x)
        err = float((ref - got).abs().max() / ref.abs().max().clamp_min(1e-30))
        if not err < 1e-4:
            raise AssertionError(f"the hand-written network differs: relative error {err:.3g}")

    def run(net):
        def go():
            net.zero_grad(set_to_none=True)
            net(x).sum().backward()
            _sync(device)

        return go

    t = compare({"spacetime": run(model), "hand": run(hand)}, repeats=repeats)
    return t["spacetime"], t["hand"], err


def case_conv(sz: dict, repeats: int, device: str) -> dict:
    """Conv kernel on a midpoint grid (equal weights, zero padding) against nn.Conv1d blocks."""
    model = _model("midpoint", "conv", sz, device, radius=sz["radius"])
    ops = [sm.layers[0] for sm in model.controls()]
    taps = ops[0].taps.shape[-1]
    dt = model.schedule.T / sz["K"]
    hand = HandConvResNet(1, sz["c"], sz["n"], taps, sz["K"], 10, dt).to(device)
    _copy_ends(hand, model)
    with torch.no_grad():
        for conv, op in zip(hand.convs, ops):
            conv.weight.copy_(op.taps)
            conv.bias.copy_(op.bias)
    x = torch.randn(sz["B"], 1, sz["n"], device=device)
    ts, th, err = _time_pair(model, hand, x, repeats, device)
    return {
        "case": "conv",
        "taps": taps,
        "spacetime_s": ts,
        "hand_s": th,
        "ratio": ts / th,
        "max_rel_err": err,
    }


def case_spectral(sz: dict, repeats: int, device: str) -> dict:
    """Spectral kernel on a periodic grid against a hand-written rfft/irfft block."""
    model = _model("periodic", "spectral", sz, device, modes=sz["modes"])
    ops = [sm.layers[0] for sm in model.controls()]
    dt = model.schedule.T / sz["K"]
    hand = HandFNO(1, sz["c"], sz["n"], sz["modes"], sz["K"], 10, dt).to(device)
    _copy_ends(hand, model)
    with torch.no_grad():
        for block, op in zip(hand.blocks, ops):
            # the operator's quadrature scale (prod(h) n) folded into the complex weights
            block.weight.copy_(torch.view_as_complex(op.weight.contiguous()) * op.scale)
            block.mix.weight.copy_(op.point[..., None])
            block.mix.bias.copy_(op.bias)
    x = torch.randn(sz["B"], 1, sz["n"], device=device)
    ts, th, err = _time_pair(model, hand, x, repeats, device)
    return {
        "case": "spectral",
        "modes": sz["modes"],
        "spacetime_s": ts,
        "hand_s": th,
        "ratio": ts / th,
        "max_rel_err": err,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, two repeats (smoke run)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 15)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    sz = SIZES["quick" if args.quick else "full"]
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 15)
    with torch_threads(args.threads):
        rows = [case_conv(sz, repeats, args.device), case_spectral(sz, repeats, args.device)]
        threads = torch.get_num_threads()
    print(
        f"B={sz['B']}, n={sz['n']}, channels={sz['c']}, steps={sz['K']}, gelu, inside form, "
        f"forward+backward; device={args.device}, torch threads={threads}, repeats={repeats}"
    )
    labels = {
        "conv": f"conv ({rows[0]['taps']} taps) / nn.Conv1d ResNet",
        "spectral": f"spectral ({sz['modes']} modes) / hand FFT block",
    }
    out = []
    for r in rows:
        met = "yes" if r["ratio"] <= GOAL else "no"
        out.append(
            (
                labels[r["case"]],
                f"{r['spacetime_s'] * 1e3:.2f} ms",
                f"{r['hand_s'] * 1e3:.2f} ms",
                f"{r['ratio']:.3f}",
                f"<= {GOAL:g}",
                met,
            )
        )
    print(table(out, ("case", "space-time", "hand", "ratio", "goal", "met")))
    for r in rows:
        print(f"ratio {r['case']}: {r['ratio']:.4f}")
    return rows


if __name__ == "__main__":
    main()
