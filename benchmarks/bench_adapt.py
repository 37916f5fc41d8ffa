"""Compression of three trained models, and multilevel training of the demo's
(spacetime_nets.adapt).

Models, each trained as its own benchmark trains it:

- ``demo``: the model of ``make demo`` (Legendre basis kernel, 8 x 8 modes, inside form with
  tanh, cells lift, 6 Euler steps over T = 3 on a 16x16 -> 8x8 pyramid of midpoint grids; Adam,
  lr 1e-2, cosine decay, batch 64, 60 epochs) on the digits of ``datasets.load("digits")``;
- ``digits-conv``: the digits conv model of ``bench_workloads.py`` (``OURS["digits"]``:
  bottleneck form, 24 channels, 4 steps on 8x8 midpoint grids, radius 2 spacings, pointwise
  mix; Adam lr 1e-3, weight decay 1e-4, cosine, batch 32, 20 epochs, inputs standardised) on
  the same digits splits;
- ``signals-conv``: the signals conv model of ``bench_workloads.py`` (``OURS["signals"]``: 32
  channels, 4 steps on 65 trapezoid nodes, radius 3 spacings) on its signals (2500 samples,
  70/10/20), the same budget.

Then, per model:

1. ``compress`` for a few tolerances, with three disjoint roles: the training split is the
   calibration data (and the recovery's data), the validation split chooses what to ship
   (the cheapest that loses at most 0.5 points of validation accuracy), the test split is only
   reported. Every tolerance runs without recovery and with ``recover_epochs`` per recovery.
   Goal: >= 3x fewer multiply-adds at <= 0.5 test points lost.
2. Training small: a model of about the chosen multiply-adds trained from scratch with the
   same total epochs (the reference's plus every recovery epoch): for the demo a uniform n x n
   grid, for the conv models the same schedule with fewer channels. Goal: the compressed model
   is more accurate on the test split.
3. (demo) ``multilevel_fit``: 30 epochs on 8x8 grids at every step, then 6 on the demo's
   schedule, against the 60 epochs on the demo's schedule. Goal: the fine model's final
   validation accuracy in <= 0.6x its wall time.

Timings are wall-clock seconds on one torch thread; a loaded machine slows both sides.

Usage: ``python benchmarks/bench_adapt.py [--models demo digits-conv signals-conv]
[--threads 1] [--quick] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

try:
    from _timing import table, torch_threads
except ImportError:  # imported as a module from elsewhere
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _timing import table, torch_threads

try:
    from grids import GridSchedule
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from grids import GridSchedule

from spacetime_nets import SpaceTimeNet, adapt, datasets
from spacetime_nets.demo import demo_model, demo_schedule
from spacetime_nets.training import fit

DOMAIN = [(0.0, 1.0), (0.0, 1.0)]
GOAL_RATIO, GOAL_POINTS, GOAL_TIME = 3.0, 0.5, 0.6
#: the tolerances of the sweep (RMS output change on the training split), each run without
#: recovery and with RECOVER epochs per recovery
TOLS = (0.5, 1.0, 1.5, 2.0)
RECOVER = 3
MODELS = ("demo", "digits-conv", "signals-conv")


def _acc(model: torch.nn.Module, split) -> float:
    with torch.no_grad():
        return 100.0 * float((model.eval()(split.x).argmax(-1) == split.y).double().mean())


# --------------------------------------------------------------------------------------------
# the three models: data, construction, training
# --------------------------------------------------------------------------------------------


@dataclass
class Spec:
    """A model of the benchmark: its data, how it is built (``build(size)``: the reference at
    None, a smaller model of the same family otherwise) and trained."""

    name: str
    data: object
    build: Callable[[int | None], SpaceTimeNet]
    sizes: Sequence[int]  # the sizes of the smaller family (grid nodes or channels)
    epochs: int
    fit_kwargs: dict


def _conv_model(task: str, size: int | None, seed: int) -> SpaceTimeNet:
    """``OURS[task]`` of bench_workloads as a SpaceTimeNet (``size``: fewer channels)."""
    from bench_workloads import OURS

    o = OURS[task]
    if task == "digits":
        sched = GridSchedule.constant((8, 8), o["steps"], T=1.0, domain=DOMAIN, rule="midpoint")
    else:
        sched = GridSchedule.constant(65, o["steps"], T=1.0, domain=(0.0, 1.0), rule="trapezoid")
    return SpaceTimeNet(
        sched, None, 10, kernel="conv", form=o["form"], activation="gelu", lift="identity",
        channels=size or o["channels"], in_channels=1, modes=o["modes"],
        radius_spacings=o["spacings"], pointwise=o["pointwise"], seed=seed,
    )  # fmt: skip


def specs(names: Sequence[str], seed: int, quick: bool) -> list[Spec]:
    digits = datasets.load("digits", seed=seed)
    conv_fit = dict(batch_size=32, optimizer="adam", lr=1e-3, weight_decay=1e-4,
                    lr_schedule="cosine", normalize=True)  # fmt: skip
    out = []
    for name in names:
        if name == "demo":
            out.append(Spec(
                name, digits,
                lambda n: demo_model(demo_schedule() if n is None else uniform(n), seed=seed),
                range(4, 17), 60,
                dict(batch_size=64, optimizer="adam", lr=1e-2, lr_schedule="cosine"),
            ))  # fmt: skip
        elif name == "digits-conv":
            out.append(Spec(name, digits, lambda c: _conv_model("digits", c, seed),
                            range(2, 25), 20, conv_fit))  # fmt: skip
        else:
            data = datasets.signals(grid_size=65, n=400 if quick else 2500, seed=seed,
                                    splits=(0.7, 0.1, 0.2))  # fmt: skip
            out.append(Spec(name, data, lambda c: _conv_model("signals", c, seed),
                            range(2, 33), 20, conv_fit))  # fmt: skip
    return out


def uniform(n: int, steps: int = 6) -> GridSchedule:
    """The demo's horizon and steps on one n x n midpoint grid."""
    return GridSchedule.constant(
        (n, n), steps, T=3.0, domain=DOMAIN, rule="midpoint", transfer_kind="l2"
    )


def train(spec: Spec, size: int | None, epochs: int, seed: int) -> tuple[SpaceTimeNet, float]:
    torch.manual_seed(seed)
    model = spec.build(size)
    t0 = time.perf_counter()
    fit(model, spec.data.train, spec.data.val, epochs=epochs, seed=seed, device="cpu",
        progress=False, **spec.fit_kwargs)  # fmt: skip
    return model.eval(), time.perf_counter() - t0


def same_macs(spec: Spec, macs: float) -> int:
    """The size of the smaller family whose model costs closest to ``macs``."""
    best = None
    for size in spec.sizes:
        try:
            c = adapt.model_macs(spec.build(size))
        except ValueError:  # a grid the kernel's modes under-resolve
            continue
        if best is None or abs(c - macs) < abs(best[1] - macs):
            best = (size, c)
    return best[0]


# --------------------------------------------------------------------------------------------
# 1 and 2: compression, and training small
# --------------------------------------------------------------------------------------------


def compress_model(spec: Spec, args, quick: bool) -> dict:
    data = spec.data
    epochs = 2 if quick else spec.epochs
    train(spec, None, 1, args.seed)  # warm-up: first-call costs hit no timed run
    model, t_ref = train(spec, None, epochs, args.seed)
    acc_val, acc_test = _acc(model, data.val), _acc(model, data.test)
    macs0 = adapt.model_macs(model)
    print(
        f"\n{spec.name}: {epochs} epochs in {t_ref:.1f} s, {macs0} multiply-adds per sample, "
        f"accuracy val {acc_val:.2f} / test {acc_test:.2f}"
    )
    n_cal = 256 if quick else len(data.train)
    calibration = data.train.x[:n_cal]
    rows, results = [], []
    tols = TOLS[1:2] if quick else TOLS
    for tol in tols:
        for recover in (0, 1 if quick else RECOVER):
            small, info = adapt.compress(
                model, calibration, tol, metric="output", norm="rms",
                recover_epochs=recover, recover_data=data.train.x if recover else None,
                seed=args.seed,
            )  # fmt: skip
            r = {
                "tol": tol,
                "recover": recover,
                "recover_epochs": info.recover_epochs,
                "macs": info.macs_after,
                "ratio": info.ratio,
                "val_lost": acc_val - _acc(small, data.val),
                "test_lost": acc_test - _acc(small, data.test),
                "channels": info.channels_after,
                "grids": " ".join("x".join(map(str, g.shape)) for g in small.schedule.grids),
                "evaluations": info.evaluations,
                "seconds": info.seconds,
                "model": small,
            }
            results.append(r)
            rows.append(
                (
                    f"{tol:g}", recover, r["recover_epochs"], r["macs"], f"{r['ratio']:.2f}x",
                    f"{r['val_lost']:+.2f}", f"{r['test_lost']:+.2f}", r["channels"] or "-",
                    r["grids"], r["evaluations"], f"{r['seconds']:.1f}",
                )
            )  # fmt: skip
    header = ("tol", "recover", "rec. epochs", "MACs", "fewer", "val lost", "test lost",
              "channels", "grids", "trials", "s")  # fmt: skip
    print("compress (RMS output change on the training split; points lost: positive = worse)")
    print(table(rows, header))
    ok = [r for r in results if r["val_lost"] <= GOAL_POINTS]
    out = {
        "model": spec.name,
        "epochs": epochs,
        "macs": macs0,
        "val": acc_val,
        "test": acc_test,
        "seconds": t_ref,
        "sweep": [{k: v for k, v in r.items() if k != "model"} for r in results],
    }
    if not ok:
        print("no compressed model kept the validation accuracy: goal MISSED")
        out["goal_met"] = False
        return out
    chosen = min(ok, key=lambda r: r["macs"])
    met = chosen["ratio"] >= GOAL_RATIO and chosen["test_lost"] <= GOAL_POINTS
    print(
        f"chosen (cheapest with <= {GOAL_POINTS} validation points lost): tol {chosen['tol']:g}, "
        f"recover {chosen['recover']}: {chosen['ratio']:.2f}x fewer multiply-adds (margin "
        f"{chosen['ratio'] - GOAL_RATIO:+.2f}x), {chosen['test_lost']:+.2f} test points lost "
        f"(margin {GOAL_POINTS - chosen['test_lost']:+.2f}) -> goal {'MET' if met else 'MISSED'}"
    )
    # ---- 2. the same multiply-adds, trained from scratch with the same total epochs
    size = same_macs(spec, chosen["macs"])
    total = epochs + chosen["recover_epochs"]
    small, t_small = train(spec, size, total, args.seed)
    s_test, c_test = _acc(small, data.test), acc_test - chosen["test_lost"]
    better = c_test > s_test
    print(
        f"trained small: size {size}, {adapt.model_macs(small)} multiply-adds, {total} epochs "
        f"({t_small:.1f} s): test {s_test:.2f}; compressed: test {c_test:.2f} (margin "
        f"{c_test - s_test:+.2f}) -> goal (compressed more accurate) "
        f"{'MET' if better else 'MISSED'}"
    )
    out.update(
        chosen={k: v for k, v in chosen.items() if k != "model"},
        goal_met=met,
        small={"size": size, "macs": adapt.model_macs(small), "epochs": total, "test": s_test,
               "compressed_test": c_test, "goal_met": better},
    )  # fmt: skip
    return out


# --------------------------------------------------------------------------------------------
# 3: multilevel training of the demo model
# --------------------------------------------------------------------------------------------


def multilevel(args, quick: bool) -> dict:
    data = datasets.load("digits", seed=args.seed)
    epochs = 2 if quick else 60
    coarse_epochs, fine_epochs = (1, 1) if quick else (round(epochs / 2), round(epochs / 10))
    fit_kwargs = dict(batch_size=64, optimizer="adam", lr=1e-2, lr_schedule="cosine",
                      seed=args.seed, device="cpu", progress=False)  # fmt: skip
    fine_sched = demo_schedule()
    torch.manual_seed(args.seed)
    model = demo_model(fine_sched, seed=args.seed)
    t0 = time.perf_counter()
    fit(model, data.train, data.val, epochs=epochs, **fit_kwargs)
    t_fine = time.perf_counter() - t0
    acc_val, acc_test = _acc(model, data.val), _acc(model, data.test)
    coarse = uniform(8)
    torch.manual_seed(args.seed)
    start = demo_model(fine_sched, seed=args.seed)
    t0 = time.perf_counter()
    res = adapt.multilevel_fit(
        start, data.train, data.val, levels=[coarse, fine_sched],
        epochs=[coarse_epochs, fine_epochs], **fit_kwargs,
    )  # fmt: skip
    t_ml = time.perf_counter() - t0
    ml_val, ml_test = _acc(res.model, data.val), _acc(res.model, data.test)
    ratio = t_ml / t_fine
    met = ml_val >= acc_val and ratio <= GOAL_TIME
    print(
        f"\nmultilevel: {coarse_epochs} epochs on 8x8 grids + {fine_epochs} on the demo "
        f"schedule in {t_ml:.1f} s ({ratio:.2f}x the {t_fine:.1f} s of {epochs} fine epochs): "
        f"val {ml_val:.2f} against {acc_val:.2f}, test {ml_test:.2f} against {acc_test:.2f} "
        f"-> goal (the fine validation accuracy in <= {GOAL_TIME}x the time) "
        f"{'MET' if met else 'MISSED'}"
    )
    return {
        "epochs": [coarse_epochs, fine_epochs],
        "seconds": t_ml,
        "fine_seconds": t_fine,
        "time_ratio": ratio,
        "val": ml_val,
        "fine_val": acc_val,
        "test": ml_test,
        "fine_test": acc_test,
        "goal_met": met,
    }


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: leave)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--quick", action="store_true", help="2 epochs, one tolerance on 256 samples (plumbing)"
    )
    ap.add_argument("--no-multilevel", action="store_true", help="skip the multilevel part")
    ap.add_argument("--json", default=None, help="also write the results to this file")
    args = ap.parse_args(argv)
    out: dict = {"compress": []}
    with torch_threads(args.threads):
        for spec in specs(args.models, args.seed, args.quick):
            out["compress"].append(compress_model(spec, args, args.quick))
        if not args.no_multilevel:
            out["multilevel"] = multilevel(args, args.quick)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    return out


if __name__ == "__main__":
    main()
