"""Real workloads side by side: operator learning against FNO, classification against CNNs,
and zero-shot resolution transfer, on data the project generates itself.

Tasks (``spacetime_nets.datasets``), each trained at one resolution and tested on the same test
samples at 1x, 2x and 4x that resolution:

- ``burgers``: u(0, .) -> u(1, .) of viscous Burgers (nu = 0.1), periodic nodes j / n, trained
  at n = 64, tested at 64, 128, 256; metric: mean relative L2 error (lower is better).
- ``darcy``: a -> u of -div(a grad u) = 1, s x s nodes with the boundary, trained at s = 17,
  tested at 17, 33, 65; mean relative L2 error.
- ``helmholtz``: f -> u of -lap u - k^2 u = f (k = 10.5, u = 0 on the boundary: an indefinite,
  global operator), on the same grids as darcy; mean relative L2 error.
- ``signals``: ten classes of continuous functions, trained on 65 nodes of [0, 1], tested on 33,
  65, 129, 257 nodes; accuracy in percent (higher is better).
- ``noisy-signals``: the same functions with white measurement noise (standard deviation 0.3)
  at every one of 40 nodes, as a sensor gives. The test signals at 0.5x (20 nodes), 2x (79)
  and 4x (157) are the 1x test signals resampled by linear interpolation (at 2x and 4x: the
  same functions). Ours is a three-stage pyramid (40 -> 20 -> 10 nodes) here; ``ours-before``
  is the same pyramid with
  the previous release's discretisation (sampled taps, lumped l2 transfers, every grid refined
  at another resolution), and ``ours-multires`` the same model as ours trained across input
  resolutions (each batch at 0.5x or 1x, drawn at random; see ``fit(resolutions=...)``), both
  trained in the same run.
- ``digits``: the 8x8 digits, tested at 8x8, 16x16, 32x32 (bilinear); accuracy in percent.

Models, all trained in the same run on the same data with the same budget (Adam, the same
learning rate, cosine decay, batch size and epochs; relative L2 loss for operators and
cross-entropy for classes; inputs and targets standardised by scalars of the training set, which
does not depend on the resolution):

- ``FNO``: ``neuralop.models.FNO`` (operator tasks; skipped with a note if ``neuraloperator``
  is not installed: ``pip install -e ".[bench]"``);
- ``CNN``: a plain convolutional ResNet (``nn.Conv1d`` / ``nn.Conv2d``; circular padding on the
  periodic task), global average pooling for classes. At 2x and 4x its kernels see the finer
  grid as is, so they cover a half and a quarter of the physical extent they were trained on;
- ``MLP``: a plain fully connected network; tied to its input size, so ``n/a`` at 2x and 4x;
- ``ours``: ``SpaceTimeNet`` (spectral kernel for the operators: periodic for Burgers, of
  period twice the box for Darcy and Helmholtz, applied by zero-padded FFTs; conv kernel for
  signals and digits), moved to each test resolution by ``at_resolution`` / ``with_schedule``;
- ``ours-local``: on Darcy and Helmholtz, the local conv kernel the benchmark used before
  (bottleneck form, radius three spacings, four steps), for comparison;
- ``ours-hourglass``: the same conv kernel on an hourglass schedule (17 -> 5 -> 17 nodes per
  axis in six steps, radius three spacings of each grid): global reach from coarse grids;
- ``ours-resnet``: the plain-torch ResNet ``to_resnet`` exports from the trained ``ours``,
  exported again at every test resolution; its s/epoch is one training epoch of the exported
  network (the cost of the plain form), its errors those of the exported network.

Columns: parameters, median seconds per training epoch, and the metric at 0.5x (where the task
has it), 1x, 2x, 4x; a closing block checks the targets (operators: error at 1x <= FNO's and
error ratio 2x / 1x, 4x / 1x <= FNO's + 0.1; classes: accuracy at 1x >= the CNN's and at 0.5x,
2x, 4x within 1 point of our own 1x; cost: ours <= 1.5x the CNN's s/epoch).

A second table, **consistency vs schedule, radius and input roughness**, trains small conv
models (constant and pyramid schedules, radius 1.5, 2, 3, 4, 6 grid spacings) on the noisy
signals, once with the previous discretisation and once with the current one, and prints the
relative change of their outputs, ||y(2x) - y(1x)|| / ||y(1x)||, on the test signals
interpolated to 2x, for smooth inputs (the noiseless functions) and noisy ones.

Run: python benchmarks/bench_workloads.py [--quick] [--tasks burgers darcy] [--epochs 20]
     [--threads 2] [--device cpu] [--no-consistency]
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))
from _timing import table, torch_threads  # noqa: E402

from spacetime_nets import datasets as D  # noqa: E402

TASKS = ("burgers", "darcy", "helmholtz", "signals", "noisy-signals", "digits")
MODELS = (
    "FNO",
    "CNN",
    "MLP",
    "ours",
    "ours-local",
    "ours-hourglass",
    "ours-before",
    "ours-multires",
    "ours-resnet",
)
#: input scales of ``ours-multires`` (one drawn per training batch)
MULTIRES = (0.5, 1.0)
#: standard deviation of the white measurement noise of ``noisy-signals``
WHITE_NOISE = 0.3
OPERATOR_TASKS = ("burgers", "darcy", "helmholtz")


# --------------------------------------------------------------------------------------------
# data: one training resolution, the same test samples at three resolutions
# --------------------------------------------------------------------------------------------


@dataclass
class Task:
    """A workload: training split at the base resolution, test splits at 1x, 2x, 4x."""

    name: str
    kind: str  # "operator" or "classification"
    dim: int  # 1 or 2 spatial dimensions
    sizes: tuple[int, int, int]  # nodes per axis at 1x, 2x, 4x
    train: D.Split
    tests: list[D.Split]
    num_classes: int | None = None
    periodic: bool = False
    meta: dict = field(default_factory=dict)
    half: tuple[int, D.Split] | None = None  # nodes and test split at 0.5x, where there is one


def _sizes(name: str, quick: bool) -> tuple[int, int, int]:
    if name == "burgers":
        return (32, 64, 128) if quick else (64, 128, 256)
    if name in ("darcy", "helmholtz"):
        return (5, 9, 17) if quick else (17, 33, 65)
    if name == "signals":
        return (17, 33, 65) if quick else (65, 129, 257)
    if name == "noisy-signals":
        return (17, 33, 65) if quick else (40, 79, 157)
    return (8, 16, 32)  # digits


def resample(split: D.Split, n: int) -> D.Split:
    """The 1-D samples of ``split`` (on linspace(0, 1, m)) at ``n`` nodes by linear
    interpolation."""
    import numpy as np

    x = split.x.double().numpy()
    src, dst = np.linspace(0.0, 1.0, x.shape[1]), np.linspace(0.0, 1.0, n)
    out = np.stack([np.interp(dst, src, row) for row in x])
    return D.Split(torch.as_tensor(out, dtype=split.x.dtype), split.y)


def make_task(name: str, quick: bool, seed: int = 0) -> Task:
    """Generate ``name`` at its three resolutions (the same samples and split at each)."""
    sizes = _sizes(name, quick)
    splits = (0.8, 0.04, 0.16)
    if name == "burgers":
        kw = {"n": 60 if quick else 1250, "seed": seed, "splits": splits}
        if quick:
            kw.update(fine=128, modes=8)
        sets = [D.burgers(grid_size=s, **kw) for s in sizes]
        kind, dim, classes = "operator", 1, None
    elif name in ("darcy", "helmholtz"):
        kw = {"n": 60 if quick else 1250, "seed": seed, "splits": splits}
        kw["fine"] = sizes[-1]
        make = D.darcy if name == "darcy" else D.helmholtz
        sets = [make(grid_size=s, **kw) for s in sizes]
        kind, dim, classes = "operator", 2, None
    elif name == "signals":
        kw = {"n": 100 if quick else 2500, "seed": seed, "splits": (0.7, 0.1, 0.2)}
        sets = [D.signals(grid_size=s, **kw) for s in sizes]
        kind, dim, classes = "classification", 1, 10
        half = (sizes[0] + 1) // 2
        half_split = (half, D.signals(grid_size=half, **kw).test)
    elif name == "noisy-signals":
        kw = {"n": 100 if quick else 2500, "seed": seed, "splits": (0.7, 0.1, 0.2)}
        base = D.signals(grid_size=sizes[0], white_noise=WHITE_NOISE, **kw)
        sets = [base]
        tests = [base.test] + [resample(base.test, s) for s in sizes[1:]]
        kind, dim, classes = "classification", 1, 10
        half = (sizes[0] + 1) // 2
        half_split = (half, resample(base.test, half))
    elif name == "digits":
        sets = [D.digits(seed=seed, scale=s // 8, splits=(0.7, 0.1, 0.2)) for s in sizes]
        if quick:
            for d in sets:
                d.train = D.Split(d.train.x[:100], d.train.y[:100])
                d.test = D.Split(d.test.x[:50], d.test.y[:50])
        kind, dim, classes = "classification", 2, 10
    else:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {name!r}")
    if name != "noisy-signals":
        tests = [d.test for d in sets]
    if name not in ("signals", "noisy-signals"):
        half_split = None
    return Task(
        name=name,
        kind=kind,
        dim=dim,
        sizes=sizes,
        train=sets[0].train,
        tests=tests,
        num_classes=classes,
        periodic=name == "burgers",
        meta=sets[0].meta,
        half=half_split,
    )


# --------------------------------------------------------------------------------------------
# models: every one maps flattened samples [B, d] to [B, d] (operators) or [B, classes]
# --------------------------------------------------------------------------------------------


class OnGrid(nn.Module):
    """Reshape flattened samples ``[B, n]`` / ``[B, s * s]`` to ``[B, 1, n]`` / ``[B, 1, s,
    s]`` for ``body``, standardise them by training-set scalars, and flatten an operator's
    output back (de-standardised). The resolution is read from the input at every call."""

    def __init__(self, body: nn.Module, dim: int, operator: bool, stats: tuple[float, ...]):
        super().__init__()
        self.body, self.dim, self.operator = body, dim, operator
        self.register_buffer("stats", torch.tensor(stats, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, d = x.shape
        z = (x - self.stats[0]) / self.stats[1]
        if self.dim == 1:
            z = z.view(b, 1, d)
        else:
            s = math.isqrt(d)
            z = z.view(b, 1, s, s)
        out = self.body(z)
        if not self.operator:
            return out
        return out.reshape(b, -1) * self.stats[3] + self.stats[2]


class Flat(nn.Module):
    """``body`` on standardised flat samples (the MLP)."""

    def __init__(self, body: nn.Module, operator: bool, stats: tuple[float, ...]):
        super().__init__()
        self.body, self.operator = body, operator
        self.register_buffer("stats", torch.tensor(stats, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body((x - self.stats[0]) / self.stats[1])
        return out * self.stats[3] + self.stats[2] if self.operator else out


class ConvResNet(nn.Module):
    """Pointwise lift to ``width`` channels, ``blocks`` residual blocks ``h + conv(gelu(conv
    h))`` (kernel ``k``), then a pointwise projection (operators) or global average pooling and
    a linear layer (classes)."""

    def __init__(
        self, dim: int, width: int, blocks: int, k: int, out: int, pool: bool, periodic: bool
    ):
        super().__init__()
        conv = nn.Conv1d if dim == 1 else nn.Conv2d
        mode = "circular" if periodic else "zeros"
        self.lift = conv(1, width, 1)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                conv(width, width, k, padding=k // 2, padding_mode=mode),
                nn.GELU(),
                conv(width, width, k, padding=k // 2, padding_mode=mode),
            )
            for _ in range(blocks)
        )
        self.pool = pool
        if pool:
            self.head = nn.Linear(width, out)
        else:
            self.head = nn.Sequential(conv(width, 2 * width, 1), nn.GELU(), conv(2 * width, out, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lift(x)
        for block in self.blocks:
            h = h + block(F.gelu(h))
        if self.pool:
            return self.head(F.gelu(h).flatten(2).mean(dim=2))
        return self.head(F.gelu(h))


def _stats(task: Task) -> tuple[float, float, float, float]:
    x = task.train.x.double()
    if task.kind == "operator":
        y = task.train.y.double()
        return (float(x.mean()), float(x.std()), float(y.mean()), float(y.std()))
    return (float(x.mean()), float(x.std()), 0.0, 1.0)


def _out(task: Task) -> int:
    return task.num_classes if task.kind == "classification" else 1


def build_fno(task: Task, quick: bool) -> nn.Module:
    """``neuralop.models.FNO`` (ImportError when neuraloperator is not installed)."""
    from neuralop.models import FNO

    if task.dim == 1:
        modes, width = (8, 16) if quick else (16, 32)
        body = FNO(n_modes=(modes,), in_channels=1, out_channels=1, hidden_channels=width)
    else:
        modes, width = (4, 8) if quick else (8, 24)
        body = FNO(n_modes=(modes, modes), in_channels=1, out_channels=1, hidden_channels=width)
    return OnGrid(body, task.dim, True, _stats(task))


def build_cnn(task: Task, quick: bool) -> nn.Module:
    width = 8 if quick else 32
    k = 5 if task.dim == 1 else 3
    body = ConvResNet(
        task.dim,
        width,
        blocks=2 if quick else 4,
        k=k,
        out=_out(task),
        pool=task.kind == "classification",
        periodic=task.periodic,
    )
    return OnGrid(body, task.dim, task.kind == "operator", _stats(task))


def build_mlp(task: Task, quick: bool) -> nn.Module:
    d = task.train.x.shape[1]
    hidden = 32 if quick else (512 if task.kind == "operator" else 256)
    out = d if task.kind == "operator" else task.num_classes
    body = nn.Sequential(
        nn.Linear(d, hidden),
        nn.GELU(),
        nn.Linear(hidden, hidden),
        nn.GELU(),
        nn.Linear(hidden, out),
    )
    return Flat(body, task.kind == "operator", _stats(task))


# --------------------------------------------------------------------------------------------
# our model: the only place that touches the SpaceTimeNet API
# --------------------------------------------------------------------------------------------


class OursUnavailable(RuntimeError):
    """The installed spacetime_nets lacks what the ``ours`` rows need (named in the message)."""


def _ours_schedule(
    task: Task, size: int, steps: int, pyramid: bool = False, waist: int | None = None
):
    from grids import GridSchedule

    if waist is not None:  # 2-D operators: size -> waist -> size nodes per axis
        dom = ((0.0, 1.0), (0.0, 1.0))
        return GridSchedule.hourglass((size, size), (waist, waist), steps=steps, domain=dom)

    if task.dim == 1:
        rule = "periodic" if task.periodic else "trapezoid"
        if pyramid:  # three stages: n, about n / 2, about n / 4 nodes
            return GridSchedule.pyramid(size, size // 4, steps=steps, T=1.0, levels=3, rule=rule)
        return GridSchedule.constant(n=size, steps=steps, T=1.0, domain=(0.0, 1.0), rule=rule)
    rule = "midpoint" if task.name == "digits" else "trapezoid"
    return GridSchedule.constant(
        n=(size, size), steps=steps, T=1.0, domain=((0.0, 1.0), (0.0, 1.0)), rule=rule
    )


#: Our model per task: kernel, vector-field form ("bottleneck": two kernels per step, like a
#: CNN's residual block; default "inside"), state channels, steps, kernel modes, and for the
#: conv kernel the radius in grid spacings of each step's grid (``radius_spacings``: a
#: physical radius from then on, spanning two and four times as many taps at 2x and 4x), the
#: pointwise channel mix, a pyramid schedule and whether the lift sees the coordinates.
OURS: dict[str, dict] = {
    "burgers": {"kernel": "spectral", "channels": 32, "steps": 4, "modes": 16},
    "darcy": {"kernel": "spectral", "channels": 24, "steps": 4, "modes": 8, "coordinates": True},
    "helmholtz": {
        "kernel": "spectral",
        "channels": 24,
        "steps": 4,
        "modes": 8,
        "coordinates": True,
    },
    "signals": {
        "kernel": "conv",
        "form": "bottleneck",
        "channels": 32,
        "steps": 4,
        "modes": 3,
        "spacings": 3,
        "pointwise": True,
    },
    "noisy-signals": {
        "kernel": "conv",
        "form": "bottleneck",
        "channels": 32,
        "steps": 6,
        "modes": 3,
        "spacings": 2.5,
        "pointwise": True,
        "pyramid": True,
    },
    "digits": {
        "kernel": "conv",
        "form": "bottleneck",
        "channels": 24,
        "steps": 4,
        "modes": 3,
        "spacings": 2,
        "pointwise": True,
    },
}


#: ``ours-local``: the local conv kernel on the 2-D operators (the benchmark's earlier choice)
OURS_LOCAL: dict = {
    "kernel": "conv",
    "form": "bottleneck",
    "channels": 24,
    "steps": 4,
    "modes": 3,
    "spacings": 3,
    "pointwise": True,
}


def build_ours(
    task: Task, quick: bool, before: bool = False, opts: dict | None = None
) -> nn.Module:
    """SpaceTimeNet on the task's training grid with the settings of :data:`OURS` (or
    ``opts``); ``OursUnavailable`` when the installed API lacks the channel kernels.
    ``before``: the previous release's discretisation (sampled taps, l2 transfers, every grid
    refined by ``at``)."""
    import spacetime_nets as st

    opts = dict(OURS[task.name] if opts is None else opts)
    steps = (3 if opts.get("pyramid") else 2) if quick else opts["steps"]
    waist = opts.get("waist")
    if waist is not None and quick:
        waist = 3
    sched = _ours_schedule(task, task.sizes[0], steps, opts.get("pyramid", False), waist)
    if before:
        sched = type(sched)(sched.times, sched.grids, "l2", sched.channels)
    kw = {
        "in_features": None,
        "out_features": _out(task),
        "form": opts.get("form", "inside"),
        "activation": "gelu",
        "lift": "identity",
        "readout": "function" if task.kind == "operator" else "quadrature",
        "channels": 8 if quick else opts["channels"],
        "in_channels": 1,
        "kernel": opts["kernel"],
        "modes": (min(opts["modes"], 8) if task.dim == 1 else 3) if quick else opts["modes"],
        "seed": 0,
    }
    if opts.get("coordinates"):  # the lift sees xi too (FNO's grid embedding does the same)
        kw["coordinates"] = True
    if opts["kernel"] == "conv":
        kw["radius_spacings"] = opts["spacings"]
        if "pointwise" in opts:
            kw["pointwise"] = opts["pointwise"]
    try:
        body = st.SpaceTimeNet(sched, **kw)
        if before:
            body = _with_sampled_taps(body)
    except TypeError as err:  # an API without channels / stationary kernels
        raise OursUnavailable(f"SpaceTimeNet({kw['kernel']!r} kernel): {err}") from err
    except ValueError as err:
        if str(err).startswith("kernel:"):
            raise OursUnavailable(f"SpaceTimeNet({kw['kernel']!r} kernel): {err}") from err
        raise
    return OursGrid(body, task, "scale" if before else "keep", _stats(task))


def _with_sampled_taps(model: nn.Module) -> nn.Module:
    """``model`` with every conv kernel switched to sampled taps (same parameters; the tap
    cache is keyed by the kind of taps)."""
    for kern in (model.kernel, model.kernel2):
        if kern is not None and hasattr(kern, "taps"):
            kern.taps = "sampled"
    return model


#: ``ours-hourglass``: the local conv kernel on an hourglass 17 -> 13 -> 9 -> 5 -> 9 -> 13 -> 17
#: nodes per axis, three spacings of each grid (a radius of 0.75 at the waist): the cheap
#: global path of a multiscale schedule
OURS_HOURGLASS: dict = {**OURS_LOCAL, "steps": 6, "waist": 5}


def build_ours_hourglass(task: Task, quick: bool) -> nn.Module:
    """The conv kernel on the hourglass of :data:`OURS_HOURGLASS` (2-D operator tasks)."""
    if task.kind != "operator" or task.dim != 2:
        raise OursUnavailable("only the 2-D operator tasks")
    return build_ours(task, quick, opts=OURS_HOURGLASS)


def build_ours_local(task: Task, quick: bool) -> nn.Module:
    """The local conv kernel of :data:`OURS_LOCAL` (2-D operator tasks only)."""
    if task.kind != "operator" or task.dim != 2:
        raise OursUnavailable("only the 2-D operator tasks")
    return build_ours(task, quick, opts=OURS_LOCAL)


def build_ours_multires(task: Task, quick: bool) -> nn.Module:
    """Ours trained across input resolutions (1-D tasks with a pyramid schedule only)."""
    if not OURS[task.name].get("pyramid"):
        raise OursUnavailable("only tasks with a pyramid schedule")
    model = build_ours(task, quick)
    model.train_scales = MULTIRES
    return model


def build_ours_before(task: Task, quick: bool) -> nn.Module:
    """Ours with the previous release's discretisation (tasks with a pyramid only)."""
    if not OURS[task.name].get("pyramid"):
        raise OursUnavailable("only tasks with a pyramid schedule")
    return build_ours(task, quick, before=True)


class OursGrid(nn.Module):
    """SpaceTimeNet with the standardisation of the peers; ``at(size)`` is the same trained
    model for inputs of ``size`` nodes per axis (``at_resolution`` with ``stages``)."""

    def __init__(self, body: nn.Module, task: Task, stages: str, stats: tuple[float, ...]):
        super().__init__()
        self.body, self.task, self.stages = body, task, stages
        self.register_buffer("stats", torch.tensor(stats, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, d = x.shape
        z = (x - self.stats[0]) / self.stats[1]
        if self.task.dim == 2:
            s = math.isqrt(d)
            z = z.view(b, 1, s, s)
        if self.task.dim == 1 and d != getattr(self.body, "in_features", d):  # resampled batch
            from grids import Grid

            out = self.body(z, input_grid=Grid.uniform(d))
        else:
            out = self.body(z)
        if self.task.kind == "classification":
            return out
        return out.reshape(b, -1) * self.stats[3] + self.stats[2]

    def at(self, size: int) -> OursGrid:
        if size == self.task.sizes[0]:
            return self
        body = self.body.at_resolution(size, stages=self.stages)
        return OursGrid(body, self.task, self.stages, tuple(self.stats.tolist()))

    def exported(self) -> OursGrid:
        """The same wrapper around ``to_resnet`` of the body (plain torch modules)."""
        from spacetime_nets import to_resnet

        return OursGrid(to_resnet(self.body), self.task, self.stages, tuple(self.stats.tolist()))


BUILDERS: dict[str, Callable[[Task, bool], nn.Module]] = {
    "FNO": build_fno,
    "CNN": build_cnn,
    "MLP": build_mlp,
    "ours": build_ours,
    "ours-local": build_ours_local,
    "ours-hourglass": build_ours_hourglass,
    "ours-before": build_ours_before,
    "ours-multires": build_ours_multires,
}


# --------------------------------------------------------------------------------------------
# training and evaluation, the same for every model
# --------------------------------------------------------------------------------------------


def _to(model: nn.Module, device: torch.device) -> nn.Module:
    """``model.to(device)``, skipped when every tensor is already there."""
    tensors = [*model.parameters(), *model.buffers()]
    if any(t.device != device for t in tensors):
        model.to(device)
    return model


def relative_l2(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample ``||pred - y|| / ||y||`` over the nodes, ``[B]``."""
    return (pred - y).flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1).clamp_min(1e-12)


def _loss(task: Task, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if task.kind == "operator":
        return relative_l2(pred, y).mean()
    return F.cross_entropy(pred, y)


@dataclass
class Budget:
    epochs: int
    batch: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4


def train(
    model: nn.Module, task: Task, budget: Budget, device: torch.device, seed: int = 0
) -> list[float]:
    """Adam with cosine decay; returns the wall seconds of each epoch."""
    _to(model, device).train()
    opt = torch.optim.Adam(model.parameters(), lr=budget.lr, weight_decay=budget.weight_decay)
    steps_per_epoch = math.ceil(len(task.train) / budget.batch)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, budget.epochs * steps_per_epoch)
    x, y = task.train.x.to(device), task.train.y.to(device)
    gen = torch.Generator().manual_seed(seed)
    times = []
    scales = getattr(model, "train_scales", None)
    for _ in range(budget.epochs):
        perm = torch.randperm(len(x), generator=gen).to(device)
        t0 = time.perf_counter()
        for i in range(0, len(x), budget.batch):
            idx = perm[i : i + budget.batch]
            opt.zero_grad(set_to_none=True)
            xb = x[idx]
            if scales is not None:  # this batch at a random input scale
                s = scales[int(torch.randint(len(scales), (1,), generator=gen))]
                if s != 1.0:
                    n = round(s * (xb.shape[1] - 1)) + 1
                    xb = resample(D.Split(xb.cpu(), y[idx].cpu()), n).x.to(device)
            loss = _loss(task, model(xb), y[idx])
            loss.backward()
            opt.step()
            sched.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    model.eval()
    return times


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, split: D.Split, device: torch.device) -> float:
    """Mean relative L2 error (operators) or accuracy in percent (classes) on ``split``."""
    _to(model, device).eval()
    outs = []
    for i in range(0, len(split), 256):
        outs.append(model(split.x[i : i + 256].to(device)).cpu())
    pred = torch.cat(outs)
    if task.kind == "operator":
        return float(relative_l2(pred, split.y).mean())
    return 100.0 * float((pred.argmax(dim=1) == split.y).double().mean())


def count_params(model: nn.Module) -> int:
    """Real parameters; a complex entry counts twice."""
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())


def run_model(name: str, task: Task, budget: Budget, quick: bool, device: torch.device) -> list:
    """Train ``name`` on ``task`` and return its row(s) (``ours`` also gives ``ours-resnet``)."""
    torch.manual_seed(0)
    model = BUILDERS[name](task, quick)
    times = train(model, task, budget, device)
    row = {
        "task": task.name,
        "model": name,
        "params": count_params(model),
        "s_epoch": statistics.median(times[1:] if len(times) > 1 else times),
        "metric": "rel. L2" if task.kind == "operator" else "acc. %",
    }
    row["scores"] = [
        _score(name, model, task, size, split, device) for size, split in _resolutions(task)
    ]
    rows = [row]
    if name == "ours":
        rows.append(_exported_row(model, task, budget, device, row))
    return rows


def _resolutions(task: Task) -> list[tuple[int | None, D.Split | None]]:
    """(nodes, test split) at 0.5x (None, None where the task has none), 1x, 2x, 4x."""
    return [task.half or (None, None), *zip(task.sizes, task.tests)]


def _score(name, model, task, size, split, device) -> float | None:
    if split is None or (name == "MLP" and size != task.sizes[0]):
        return None  # no such split, or tied to its input size
    try:
        return evaluate(model.at(size) if name.startswith("ours") else model, task, split, device)
    except ValueError as err:  # a size the discretisation refuses (under-resolved)
        print(f"  {name} at {size} nodes: n/a ({str(err)[:90]})")
        return None


def _exported_row(model: OursGrid, task: Task, budget: Budget, device, row) -> dict:
    scores = []
    for size, split in _resolutions(task):
        try:
            exported = model.at(size).exported() if split is not None else None
        except ValueError:  # inputs coarser than G_0 go through a transfer export omits
            exported = None
        scores.append(None if exported is None else evaluate(exported, task, split, device))
    plain = copy.deepcopy(model.exported())
    times = train(plain, task, Budget(2, budget.batch, budget.lr, budget.weight_decay), device)
    return {
        "task": task.name,
        "model": "ours-resnet",
        "params": count_params(model.exported()),
        "s_epoch": statistics.median(times),
        "metric": row["metric"],
        "scores": scores,
    }


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def _fmt(v: float | None, kind: str) -> str:
    if v is None:
        return "n/a"
    return f"{v:.4f}" if kind == "rel. L2" else f"{v:.1f}"


def render(rows: list[dict]) -> str:
    header = ("task", "model", "params", "s/epoch", "metric", "0.5x", "1x", "2x", "4x")
    out = []
    for r in rows:
        if "skipped" in r:
            out.append(
                (r["task"], r["model"], "-", "-", "-", "skipped: " + r["skipped"], "", "", "")
            )
            continue
        s = r["scores"]
        out.append(
            (
                r["task"],
                r["model"],
                f"{r['params']:,}",
                f"{r['s_epoch']:.3f}",
                r["metric"],
                *(_fmt(v, r["metric"]) for v in s),
            )
        )
    return table(out, header)


def targets(rows: list[dict]) -> list[str]:
    """One line per issue target with the measured margin (positive: met)."""
    by = {(r["task"], r["model"]): r for r in rows if "skipped" not in r}
    lines = []
    for task in sorted({r["task"] for r in rows}):
        ours = by.get((task, "ours"))
        cnn = by.get((task, "CNN"))
        if ours is None:
            continue
        s = ours["scores"][1:]
        if task in OPERATOR_TASKS and (task, "FNO") in by:
            f = by[(task, "FNO")]["scores"][1:]
            lines.append(
                f"{task}: error 1x ours {s[0]:.4f} vs FNO {f[0]:.4f}: margin {f[0] - s[0]:+.4f}"
            )
            for j, lab in ((1, "2x"), (2, "4x")):
                ro, rf = s[j] / s[0], f[j] / f[0]
                lines.append(
                    f"{task}: ratio {lab}/1x ours {ro:.3f} vs FNO {rf:.3f} + 0.1: "
                    f"margin {rf + 0.1 - ro:+.3f}"
                )
        if task not in OPERATOR_TASKS and cnn is not None:
            c = cnn["scores"]
            lines.append(
                f"{task}: accuracy 1x ours {s[0]:.1f} vs CNN {c[1]:.1f}: "
                f"margin {s[0] - c[1]:+.1f} points"
            )
            for j, lab in ((0, "0.5x"), (2, "2x"), (3, "4x")):
                v = ours["scores"][j]
                if v is None:
                    continue
                lines.append(
                    f"{task}: accuracy {lab} ours {v:.1f} vs own 1x {s[0]:.1f} - 1: "
                    f"margin {v - s[0] + 1:+.1f} points (CNN at {lab}: {_fmt(c[j], 'acc. %')})"
                )
        if cnn is not None:
            ratio = ours["s_epoch"] / cnn["s_epoch"]
            lines.append(f"{task}: cost ours / CNN {ratio:.2f}x vs 1.5x: margin {1.5 - ratio:+.2f}")
    return lines


# --------------------------------------------------------------------------------------------
# consistency vs schedule, radius and input roughness
# --------------------------------------------------------------------------------------------

CONSISTENCY_SPACINGS = (1.5, 2.0, 3.0, 4.0, 6.0)


def consistency(quick: bool, seed: int = 0) -> list[dict]:
    """Train small conv models on the noisy signals (constant and pyramid schedules, each
    radius of :data:`CONSISTENCY_SPACINGS`, previous and current discretisation) and measure
    the relative change of their outputs between 1x and 2x on smooth and noisy test inputs
    (interpolated to 2x)."""
    import spacetime_nets as st
    from grids import GridSchedule
    from spacetime_nets.training import fit

    n, samples, epochs = (17, 120, 1) if quick else (33, 1000, 4)
    kw = {"n": samples, "seed": seed, "splits": (0.7, 0.1, 0.2)}
    noisy = D.signals(grid_size=n, white_noise=WHITE_NOISE, **kw)
    smooth = D.signals(grid_size=n, **kw).test.x
    inputs = {"smooth": smooth, "noisy": noisy.test.x}
    fine = {k: resample(D.Split(v, noisy.test.y), 2 * n - 1).x for k, v in inputs.items()}
    rows = []
    for shape in ("constant", "pyramid"):
        for sp in CONSISTENCY_SPACINGS:
            row: dict = {"schedule": shape, "spacings": sp}
            for version in ("before", "now"):
                kind = "galerkin" if version == "now" else "l2"
                if shape == "pyramid":
                    sched = GridSchedule.pyramid(n, (n - 1) // 4 + 1, steps=3, transfer_kind=kind)
                else:
                    sched = GridSchedule.constant(n, 3)
                torch.manual_seed(seed)
                model = st.SpaceTimeNet(
                    sched,
                    None,
                    10,
                    kernel="conv",
                    form="inside",
                    activation="gelu",
                    lift="identity",
                    channels=8,
                    radius_spacings=sp,
                    seed=seed,
                    allow_underresolved=version == "before",
                )
                if version == "before":
                    model = _with_sampled_taps(model)
                fit(model, noisy.train, epochs=epochs, batch_size=32, lr=1e-2, progress=False)
                at2 = model.at_resolution(2 * n - 1, stages="keep" if version == "now" else "scale")
                with torch.no_grad():
                    for name, x in inputs.items():
                        y1, y2 = model(x), at2(fine[name])
                        row[f"{name} {version}"] = float((y2 - y1).norm() / y1.norm())
            rows.append(row)
    return rows


def render_consistency(rows: list[dict]) -> str:
    cols = ("smooth before", "smooth now", "noisy before", "noisy now")
    header = ("schedule", "radius (h)", *cols)
    body = [
        (r["schedule"], f"{r['spacings']:g}", *(f"{100 * r[c]:.2f} %" for c in cols)) for r in rows
    ]
    return table(body, header)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, seconds in all")
    ap.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    ap.add_argument("--models", nargs="+", choices=list(BUILDERS), default=list(BUILDERS))
    ap.add_argument("--epochs", type=int, default=None, help="epochs (default 20; quick: 1)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (0: leave; 1 is steadiest on a shared machine)",
    )
    ap.add_argument("--device", default="cpu", help="torch device of the models and data")
    ap.add_argument(
        "--no-consistency", action="store_true", help="skip the consistency table (CPU only)"
    )
    args = ap.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
    epochs = args.epochs if args.epochs is not None else (1 if args.quick else 20)
    budget = Budget(epochs, args.batch, args.lr)
    device = torch.device(args.device)
    rows: list[dict] = []
    with torch_threads(args.threads):
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
        print(f"budget: Adam lr {budget.lr}, cosine, batch {budget.batch}, {budget.epochs} epochs")
        for name in args.tasks:
            t0 = time.perf_counter()
            task = make_task(name, args.quick)
            print(
                f"{name}: {len(task.train)} train / {len(task.tests[0])} test samples at "
                f"{task.sizes} nodes per axis, generated in {time.perf_counter() - t0:.1f} s"
            )
            for model in args.models:
                if model == "FNO" and task.kind != "operator":
                    continue
                try:
                    new = run_model(model, task, budget, args.quick, device)
                    rows += new
                    for r in new:
                        scores = ", ".join(_fmt(v, r["metric"]) for v in r["scores"])
                        print(f"  {r['model']}: {r['s_epoch']:.3f} s/epoch, {scores}")
                except ImportError as err:
                    if model != "FNO" or "neuralop" not in str(err):
                        raise
                    rows.append({"task": name, "model": model, "skipped": "neuraloperator absent"})
                except OursUnavailable as err:
                    rows.append({"task": name, "model": model, "skipped": str(err)[:60]})
                sys.stdout.flush()
    print()
    print(render(rows))
    lines = targets(rows)
    if lines:
        print("\ntargets (margin > 0: met)")
        print("\n".join(lines))
    if not args.no_consistency:
        with torch_threads(args.threads):
            t0 = time.perf_counter()
            cons = consistency(args.quick)
        print(
            "\nconsistency: relative output change ||y(2x) - y(1x)|| / ||y(1x)|| of trained "
            f"models, inputs interpolated to 2x ({time.perf_counter() - t0:.0f} s)"
        )
        print(render_consistency(cons))
        rows += [{"consistency": r} for r in cons]
    return rows


if __name__ == "__main__":
    main()
