"""UCR / UEA time-series classification: a time-series ResNet, MiniRocket and ours, trained in
one process with one budget, and tested on the same test series at 1x, 2x and 0.5x resolution.

Data sets (the copies that ship inside the ``aeon`` wheel, read from disk, no network):

- ``OSULeaf``: 1 channel, length 427, 6 classes, 200 train / 242 test;
- ``ACSF1``: 1 channel, length 1460, 10 classes, 100 / 100;
- ``BasicMotions``: 6 channels, length 100, 4 classes, 40 / 40;
- ``JapaneseVowels``: 12 channels, lengths 7 to 29, 9 classes, 270 / 370. The models here take
  fixed-length input only, so each series is resampled by linear interpolation on [0, 1] onto
  the set's maximum length (over train and test; 29 nodes) before anything else. For ours
  that is what it computes from the raw series anyway (``model([x_1, x_2, ...])`` moves each
  series onto its first grid by linear interpolation); the peers need one length.

Each series lives on the nodes linspace(0, 1, L). Every channel is standardised by the scalar
mean and standard deviation of that channel over the whole training set (not per series), so
the standardisation does not depend on the resolution. The 2x test series has 2L - 1 nodes and
the 0.5x one (L + 1) // 2 nodes; both are the 1x test series linearly interpolated at those
nodes of [0, 1].

Models (all torch models: Adam with weight decay 1e-4, the same learning rate, cosine decay,
batch size and epochs; cross-entropy):

- ``ResNet``: the time-series ResNet of Wang, Yan and Oates (2017), written here in torch:
  three residual blocks of Conv1d (kernel sizes 8, 5, 3, "same" padding) + BatchNorm + ReLU
  with 64, 128, 128 filters, global average pooling and a linear head. At 2x and 0.5x it runs
  on the resampled series as is (its kernels see the finer or coarser grid);
- ``MiniRocket``: ``aeon``'s ``MiniRocketClassifier`` (10,000 kernels, ridge classifier), fit
  on the numpy arrays; no epochs, so its time column is the whole fit (after one untimed warm-up
  fit that compiles its numba code) and its parameter count is the ridge classifier's weights
  (the kernels and biases are fixed or set from quantiles, not learned). aeon refuses a test
  length other than the training one; the benchmark lifts that check (the estimator's
  ``capability:unequal_length`` tag) so that it too runs on the resampled series as is;
- ``ours``: ``SpaceTimeNet`` with the conv kernel on a pyramid schedule (:func:`build_ours`),
  moved to each test resolution by ``at_resolution`` (coarse stages kept; a coarser input is
  interpolated onto the first grid). Where that raises ``ValueError``, the column prints
  ``n/a`` and a note gives the reason.

Columns: parameters, median seconds per training epoch (MiniRocket: the whole fit), accuracy in
percent at 1x, 2x, 0.5x; a closing line gives each model's mean accuracy at 1x and its largest
loss (in points) from 1x to 2x or 0.5x over the sets.

Needs ``aeon`` (``pip install -e ".[bench]"``); without it the script prints a note and exits
with status 0 and no rows.

Run: python benchmarks/bench_ucr.py [--quick] [--sets OSULeaf BasicMotions] [--epochs 60]
     [--models ResNet ours] [--batch 16] [--lr 1e-3] [--threads 2]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# numba's default OpenMP layer leaves its worker threads spinning after MiniRocket's parallel
# loops, which slowed the torch models trained after it several times over on a 2-core machine;
# its workqueue layer does not (read when numba is first imported, so set before aeon is).
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))
from _timing import table, torch_threads  # noqa: E402

SETS = ("OSULeaf", "ACSF1", "BasicMotions", "JapaneseVowels")
MODELS = ("ResNet", "MiniRocket", "ours")
RESOLUTIONS = ("1x", "2x", "0.5x")
#: training / test series per set in a --quick run (spread over the classes)
QUICK_SAMPLES = 16


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


def resample(x: np.ndarray, n: int) -> np.ndarray:
    """``x`` [..., L] on the nodes linspace(0, 1, L), linearly interpolated at linspace(0, 1,
    n): [..., n]."""
    length = x.shape[-1]
    if length == n:
        return x.copy()
    if length == 1:
        return np.repeat(x, n, axis=-1)
    pos = np.linspace(0.0, length - 1.0, n)
    left = np.minimum(np.floor(pos).astype(np.int64), length - 2)
    w = pos - left
    return x[..., left] * (1.0 - w) + x[..., left + 1] * w


@dataclass
class UCRSet:
    """One data set, standardised: training series at 1x, test series at 1x, 2x, 0.5x."""

    name: str
    x_train: np.ndarray  # [N, C, L] float32
    y_train: np.ndarray  # [N] int64
    x_tests: list[np.ndarray]  # [M, C, n] at the nodes of RESOLUTIONS
    y_test: np.ndarray  # [M] int64
    classes: int
    notes: list[str] = field(default_factory=list)

    @property
    def channels(self) -> int:
        return self.x_train.shape[1]

    @property
    def length(self) -> int:
        return self.x_train.shape[2]

    @property
    def sizes(self) -> tuple[int, int, int]:
        return tuple(x.shape[2] for x in self.x_tests)


def resolution_sizes(length: int) -> tuple[int, int, int]:
    """Nodes at 1x, 2x (2L - 1) and 0.5x ((L + 1) // 2)."""
    return length, 2 * length - 1, (length + 1) // 2


def _read_split(name: str, split: str) -> tuple[list[np.ndarray] | np.ndarray, np.ndarray]:
    """The shipped ``<name>_<SPLIT>.ts`` of aeon's wheel; when a release no longer ships it,
    ``load_classification`` (which may try to download it)."""
    import aeon.datasets as ad

    path = os.path.join(os.path.dirname(ad.__file__), "data", name, f"{name}_{split.upper()}.ts")
    if os.path.exists(path):
        return ad.load_from_ts_file(path)
    return ad.load_classification(name, split=split)


def _as_array(series: list[np.ndarray] | np.ndarray, length: int) -> np.ndarray:
    """Equal-length [N, C, L] as is; a list of [C, L_i] each resampled onto ``length``."""
    if isinstance(series, np.ndarray) and series.ndim == 3:
        return series.astype(np.float64)
    return np.stack([resample(np.asarray(s, dtype=np.float64), length) for s in series])


def _spread(y: np.ndarray, k: int) -> np.ndarray:
    """Indices of ``k`` samples taken from the classes in turn (a --quick subset)."""
    per_class = [np.flatnonzero(y == c).tolist() for c in np.unique(y)]
    order: list[int] = []
    while len(order) < min(k, len(y)):
        for idx in per_class:
            if idx:
                order.append(idx.pop(0))
    return np.array(sorted(order[:k]), dtype=np.int64)


def load_set(name: str, quick: bool) -> UCRSet:
    """Read, relabel, resample (variable length) and standardise ``name``."""
    raw_x, raw_y = _read_split(name, "train")
    raw_xt, raw_yt = _read_split(name, "test")
    notes = []
    lengths = {np.asarray(s).shape[-1] for s in [*raw_x, *raw_xt]}
    length = max(lengths)
    if len(lengths) > 1:
        notes.append(
            f"{name}: lengths {min(lengths)}..{length}, each series linearly resampled onto "
            f"{length} nodes"
        )
    x, xt = _as_array(raw_x, length), _as_array(raw_xt, length)
    labels = np.unique(np.concatenate([np.asarray(raw_y), np.asarray(raw_yt)]))
    y = np.searchsorted(labels, np.asarray(raw_y)).astype(np.int64)
    yt = np.searchsorted(labels, np.asarray(raw_yt)).astype(np.int64)
    if quick:
        keep, keep_t = _spread(y, QUICK_SAMPLES), _spread(yt, QUICK_SAMPLES)
        x, y, xt, yt = x[keep], y[keep], xt[keep_t], yt[keep_t]
    mean = x.mean(axis=(0, 2), keepdims=True)
    std = x.std(axis=(0, 2), keepdims=True)
    std = np.where(std > 0, std, 1.0)
    x, xt = (x - mean) / std, (xt - mean) / std
    tests = [resample(xt, n).astype(np.float32) for n in resolution_sizes(length)]
    return UCRSet(name, x.astype(np.float32), y, tests, yt, len(labels), notes)


# --------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------


class ResidualBlock(nn.Module):
    """Conv1d(k=8) -> BN -> ReLU -> Conv1d(k=5) -> BN -> ReLU -> Conv1d(k=3) -> BN, plus the
    shortcut (a 1x1 Conv1d + BN where the width changes, BN otherwise), then ReLU."""

    def __init__(self, cin: int, cout: int, kernels: tuple[int, ...] = (8, 5, 3)):
        super().__init__()
        layers: list[nn.Module] = []
        width = cin
        for i, k in enumerate(kernels):
            # "same" padding, the extra zero of an even kernel on the right
            layers += [nn.ConstantPad1d(((k - 1) // 2, k // 2), 0.0), nn.Conv1d(width, cout, k)]
            layers.append(nn.BatchNorm1d(cout))
            if i < len(kernels) - 1:
                layers.append(nn.ReLU())
            width = cout
        self.body = nn.Sequential(*layers)
        if cin == cout:
            self.shortcut: nn.Module = nn.BatchNorm1d(cout)
        else:
            self.shortcut = nn.Sequential(nn.Conv1d(cin, cout, 1), nn.BatchNorm1d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class TimeSeriesResNet(nn.Module):
    """Wang et al. (2017): residual blocks of the given widths, global average pooling over
    time, a linear head. Input [B, C, L] with any L."""

    def __init__(self, cin: int, classes: int, widths: tuple[int, ...] = (64, 128, 128)):
        super().__init__()
        chans = (cin, *widths)
        self.blocks = nn.Sequential(*(ResidualBlock(a, b) for a, b in zip(chans, chans[1:])))
        self.head = nn.Linear(widths[-1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x).mean(dim=2))


def build_resnet(length: int, channels: int, classes: int, quick: bool) -> nn.Module:
    """The ResNet baseline (a narrow one in a --quick run)."""
    return TimeSeriesResNet(channels, classes, (8, 16, 16) if quick else (64, 128, 128))


class OursUnavailable(RuntimeError):
    """The installed spacetime_nets lacks what the ``ours`` rows need (named in the message)."""


def build_ours(length: int, channels: int, classes: int, quick: bool) -> nn.Module:
    """Our model, the only place that touches the SpaceTimeNet API: the conv kernel (Galerkin
    taps, the bottleneck form, radius four grid spacings of each stage) on a three-stage
    pyramid from ``length`` nodes down to a quarter (``galerkin`` transfers), a channel
    normalisation by quadrature, and global average pooling of the activated state into a
    small MLP head; input [B, channels, length] on linspace(0, 1, length), class logits out."""
    import spacetime_nets as st
    from grids import GridSchedule

    steps, width = (2, 8) if quick else (6, 32)
    sched = GridSchedule.pyramid(length, max(length // 4, 8), steps=steps, T=3.0, levels=3)
    try:
        return st.SpaceTimeNet(
            sched,
            None,
            classes,
            kernel="conv",
            form="bottleneck",
            activation="gelu",
            lift="identity",
            readout="pool",
            head_hidden=2 * width,
            norm="instance",
            channels=width,
            in_channels=channels,
            radius_spacings=4.0,
            pointwise=True,
            seed=0,
        )
    except TypeError as err:  # an API without channels / the conv kernel
        raise OursUnavailable(f"SpaceTimeNet(conv kernel): {err}") from err


def _ours_at(model: nn.Module, n: int) -> nn.Module:
    """``model`` on ``n`` input nodes (``ValueError`` when its grids cannot be scaled)."""
    if n == model.schedule.widths[0]:
        return model
    return model.at_resolution(n)


BUILDERS: dict[str, Callable[[int, int, int, bool], nn.Module]] = {
    "ResNet": build_resnet,
    "ours": build_ours,
}


# --------------------------------------------------------------------------------------------
# training and evaluation
# --------------------------------------------------------------------------------------------


@dataclass
class Budget:
    epochs: int
    batch: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4


def count_params(model: nn.Module) -> int:
    """Real parameters; a complex entry counts twice."""
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())


def train(model: nn.Module, data: UCRSet, budget: Budget, seed: int = 0) -> list[float]:
    """Adam with cosine decay and cross-entropy; returns the wall seconds of each epoch."""
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=budget.lr, weight_decay=budget.weight_decay)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    steps_per_epoch = math.ceil(len(x) / budget.batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, budget.epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    times = []
    for _ in range(budget.epochs):
        perm = torch.randperm(len(x), generator=gen)
        t0 = time.perf_counter()
        for i in range(0, len(x), budget.batch):
            idx = perm[i : i + budget.batch]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            sched.step()
        times.append(time.perf_counter() - t0)
    model.eval()
    return times


@torch.no_grad()
def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, chunk: int = 64) -> float:
    """Accuracy in percent of ``model`` on the series ``x`` [M, C, n]."""
    model.eval()
    xt = torch.from_numpy(x)
    pred = torch.cat([model(xt[i : i + chunk]).argmax(dim=1) for i in range(0, len(xt), chunk)])
    return 100.0 * float((pred.numpy() == y).mean())


def run_torch(name: str, data: UCRSet, budget: Budget, quick: bool) -> dict:
    """Train ``name`` on ``data``; its row with accuracies at every resolution."""
    torch.manual_seed(0)
    model = BUILDERS[name](data.length, data.channels, data.classes, quick)
    times = train(model, data, budget)
    row = _row(data, name, count_params(model), statistics.median(times[1:] or times), "epoch")
    for j, (n, x) in enumerate(zip(data.sizes, data.x_tests)):
        try:
            net = _ours_at(model, n) if name == "ours" else model
        except ValueError as err:
            row["notes"].append(f"{data.name} {name} {RESOLUTIONS[j]} ({n} nodes) n/a: {err}")
            continue
        row["acc"][j] = accuracy(net, x, data.y_test)
    return row


def _allow_any_length(clf: object) -> bool:
    """Lift aeon's check that test series have the training length (on the classifier and on
    its fitted transformer); False where the estimator has no such tag to set."""
    done = False
    for est in (clf, getattr(clf, "_transformer", None)):
        if est is not None and hasattr(est, "set_tags"):
            est.set_tags(**{"capability:unequal_length": True})
            done = True
    return done


def run_minirocket(data: UCRSet, threads: int, quick: bool) -> dict:
    """Fit aeon's MiniRocketClassifier (once untimed, to compile its numba code, then timed)."""
    from aeon.classification.convolution_based import MiniRocketClassifier

    kw = {"n_kernels": 840 if quick else 10_000, "n_jobs": threads, "random_state": 0}
    x = data.x_train.astype(np.float64)
    MiniRocketClassifier(**kw).fit(x, data.y_train)  # warm-up
    t0 = time.perf_counter()
    clf = MiniRocketClassifier(**kw).fit(x, data.y_train)
    seconds = time.perf_counter() - t0
    ridge = clf.estimator_
    params = int(np.size(ridge.coef_) + np.size(ridge.intercept_))
    row = _row(data, "MiniRocket", params, seconds, "fit")
    for j, (n, xt) in enumerate(zip(data.sizes, data.x_tests)):
        if j == 1 and not _allow_any_length(clf):  # after the 1x test, before the others
            row["notes"].append(f"{data.name} MiniRocket: aeon's length check not lifted")
        try:
            pred = clf.predict(xt.astype(np.float64))
        except ValueError as err:
            row["notes"].append(f"{data.name} MiniRocket {RESOLUTIONS[j]} ({n} nodes) n/a: {err}")
            continue
        row["acc"][j] = 100.0 * float((np.asarray(pred) == data.y_test).mean())
    return row


def _row(data: UCRSet, model: str, params: int, seconds: float, per: str) -> dict:
    return {
        "set": data.name,
        "model": model,
        "params": params,
        "seconds": seconds,
        "per": per,  # "epoch": median seconds per epoch; "fit": the whole fit
        "sizes": data.sizes,
        "acc": [None] * len(RESOLUTIONS),
        "notes": [],
    }


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f}"


def render(rows: list[dict]) -> str:
    header = ("set", "model", "params", "s/epoch", *RESOLUTIONS)
    out = []
    for r in rows:
        if "skipped" in r:
            out.append((r["set"], r["model"], "-", "-", "skipped: " + r["skipped"], "", ""))
            continue
        secs = f"{r['seconds']:.3f}" + (" (fit)" if r["per"] == "fit" else "")
        out.append((r["set"], r["model"], f"{r['params']:,}", secs, *map(_fmt, r["acc"])))
    return table(out, header)


def summary(rows: list[dict]) -> str:
    """Mean accuracy at 1x and the largest drop from 1x to 2x or 0.5x, per model."""
    parts = []
    for model in dict.fromkeys(r["model"] for r in rows if "skipped" not in r):
        mine = [r for r in rows if r["model"] == model and "skipped" not in r]
        at1 = [r["acc"][0] for r in mine if r["acc"][0] is not None]
        drops = [
            r["acc"][0] - v
            for r in mine
            for v in r["acc"][1:]
            if r["acc"][0] is not None and v is not None
        ]
        mean = f"{statistics.mean(at1):.1f}" if at1 else "n/a"
        worst = f"{max(drops):+.1f}" if drops else "n/a"
        parts.append(f"{model} {mean} (max loss {worst})")
    return "mean accuracy at 1x (max loss from 1x at 2x / 0.5x, points): " + "; ".join(parts)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny models and subsets, seconds")
    ap.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    ap.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    ap.add_argument("--epochs", type=int, default=None, help="epochs (default 60; quick: 2)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2, help="torch / numba threads (0: leave)")
    args = ap.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
    try:
        import aeon
    except ImportError:
        print('note: aeon is not installed (pip install -e ".[bench]"); nothing to run')
        return []
    epochs = args.epochs if args.epochs is not None else (2 if args.quick else 60)
    budget = Budget(epochs, args.batch, args.lr)
    rows: list[dict] = []
    notes: list[str] = []
    with torch_threads(args.threads):
        threads = torch.get_num_threads()
        print(f"torch {torch.__version__}, aeon {aeon.__version__}, {threads} threads")
        print(f"budget: Adam lr {budget.lr}, cosine, batch {budget.batch}, {budget.epochs} epochs")
        for name in args.sets:
            try:
                data = load_set(name, args.quick)
            except (OSError, ValueError) as err:  # not shipped and not downloadable
                notes.append(f"{name}: not loaded: {err}")
                rows += [{"set": name, "model": m, "skipped": "no data"} for m in args.models]
                continue
            notes += data.notes
            print(
                f"{name}: {len(data.x_train)} train / {len(data.y_test)} test, "
                f"{data.channels} channel(s), {data.classes} classes, nodes {data.sizes}"
            )
            for model in args.models:
                try:
                    if model == "MiniRocket":
                        row = run_minirocket(data, threads, args.quick)
                    else:
                        row = run_torch(model, data, budget, args.quick)
                except OursUnavailable as err:
                    rows.append({"set": name, "model": model, "skipped": str(err)[:60]})
                    continue
                rows.append(row)
                notes += row["notes"]
                per = "s fit" if row["per"] == "fit" else "s/epoch"
                print(f"  {model}: {row['seconds']:.3f} {per}, " + ", ".join(map(_fmt, row["acc"])))
                sys.stdout.flush()
    print()
    print(render(rows))
    for line in notes:
        print("note: " + line)
    if any("skipped" not in r for r in rows):
        print(summary(rows))
    return rows


if __name__ == "__main__":
    main()
