"""``make demo``: a variable-width SpaceTimeNet with a continuous (Legendre basis) kernel on a
coarsening pyramid schedule over [0, 1]^2, trained on the 8x8 digits; then evaluated on a twice
finer schedule (resolution transfer) and exported to a plain ResNet."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from grids import GridSchedule

from . import datasets
from .export import to_resnet
from .models import SpaceTimeNet

__all__ = ["run_demo", "demo_schedule", "demo_model"]


def demo_schedule() -> GridSchedule:
    """16x16 -> 8x8 midpoint grids on [0, 1]^2, 6 Euler steps over T = 3, conservative (l2)
    transfers so coarsening averages the state instead of sampling it.

    Returns:
        The demo's [`GridSchedule`][grids.schedule.GridSchedule] (a two-level pyramid).
    """
    return GridSchedule.pyramid(
        (16, 16),
        (8, 8),
        steps=6,
        T=3.0,
        domain=[(0.0, 1.0), (0.0, 1.0)],
        rule="midpoint",
        levels=2,
        transfer_kind="l2",
    )


def demo_model(schedule: GridSchedule, seed: int = 0) -> SpaceTimeNet:
    """inside form, tanh, 8 x 8 Legendre modes; the image enters as the piecewise-constant
    function of its pixels (cells lift), the readout integrates against learned p_c.

    Args:
        schedule: the schedule the model is built on (e.g.
            [`demo_schedule`][spacetime_nets.demo.demo_schedule]), over [0, 1]^2.
        seed: the seed of the initialisation.

    Returns:
        An untrained [`SpaceTimeNet`][spacetime_nets.models.SpaceTimeNet] for the digits:
            inputs ``[B, 64]`` (8x8 images, row-major), outputs ``[B, 10]`` class scores.
    """
    return SpaceTimeNet(
        schedule,
        64,
        10,
        kernel="basis",
        form="inside",
        activation="tanh",
        lift="cells",
        in_shape=(8, 8),
        modes=8,
        seed=seed,
    )


def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(-1) == y).float().mean())


def trajectory_figure(model: SpaceTimeNet, image: torch.Tensor):
    """One digit through the grids: the state X^k reshaped to each grid's (n_x, n_y).

    Args:
        model: the demo model (a scalar SpaceTimeNet on a 2-D schedule).
        image: one image, ``[64]`` (8x8, row-major).

    Returns:
        figure (matplotlib.figure.Figure): the input and the state at a few times.
    """
    from matplotlib.figure import Figure

    traj = model.trajectory(image[None])
    sched = model.schedule
    ks = sorted({0, 1, sched.num_steps // 2, sched.num_steps - 1, sched.num_steps})
    fig = Figure(figsize=(2.3 * (len(ks) + 1), 2.6), layout="constrained")
    axes = fig.subplots(1, len(ks) + 1)
    axes[0].imshow(image.reshape(8, 8).detach().cpu().numpy(), cmap="gray_r")
    axes[0].set_title("input 8x8")
    for ax, k in zip(axes[1:], ks):
        shape = sched.grids[k].shape
        ax.imshow(traj.states[k][0].detach().reshape(shape).cpu().numpy(), cmap="viridis")
        ax.set_title(f"t={traj.times[k]:.2g}, {shape[0]}x{shape[1]}")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def run_demo(
    out_dir: str | os.PathLike = "runs/demo", epochs: int | None = None, fast: bool | None = None
) -> int:
    """Train the demo model on the digits, evaluate it on a twice finer schedule, export it.

    Writes ``schedule.png``, ``training.png``, ``trajectory.png``, the run's checkpoint and
    history, ``resnet_state.pt`` and ``summary.json`` (the printed figures: test accuracy,
    resolution-transfer accuracy, widths, max |ResNet - model|) into ``out_dir``.

    Args:
        out_dir: output folder.
        epochs: training epochs (default 60; 2 in fast mode).
        fast: a seconds-long run for smoke tests (default: ``SPACETIME_FAST=1`` in the
            environment).

    Returns:
        0 (the exit code of ``spacetime-nets demo``).
    """
    from .training import fit

    if fast is None:
        fast = os.environ.get("SPACETIME_FAST") == "1"
    epochs = epochs if epochs is not None else (2 if fast else 60)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    data = datasets.load("digits", seed=0)
    schedule = demo_schedule()
    print(
        f"schedule: {schedule.num_steps} steps on [0, T={schedule.T:g}], grids "
        f"{' -> '.join('x'.join(map(str, g.shape)) for g in schedule.grids)}"
    )
    print(f"widths n_k: {schedule.widths}")
    schedule.plot().savefig(out / "schedule.png", dpi=110)
    model = demo_model(schedule)
    print(f"parameters: {sum(p.numel() for p in model.parameters())}")
    t0 = time.perf_counter()
    history = fit(
        model,
        data.train,
        data.val,
        epochs=epochs,
        batch_size=64,
        optimizer="adam",
        lr=1e-2,
        lr_schedule="cosine",
        out_dir=out,
        seed=0,
        device="cpu",
    )
    train_s = time.perf_counter() - t0
    model.eval()
    acc = _accuracy(model, data.test.x, data.test.y)
    print(f"training time: {train_s:.1f} s")
    print(f"test accuracy: {acc:.3f}")

    fine = model.with_schedule(schedule.refine(width=2, depth=1))
    acc_fine = _accuracy(fine, data.test.x, data.test.y)
    print(
        f"resolution transfer to a twice finer schedule (first grid {schedule.widths[0]} -> "
        f"{fine.schedule.widths[0]} nodes, last grid {schedule.widths[-1]} -> "
        f"{fine.schedule.widths[-1]}, {schedule.num_steps} -> {fine.schedule.num_steps} steps; "
        f"images resampled on the finer grid): test accuracy {acc_fine:.3f} "
        f"({100 * (acc_fine - acc):+.1f} points)"
    )

    resnet = to_resnet(model)
    with torch.no_grad():
        diff = float((resnet(data.test.x) - model(data.test.x)).abs().max())
    torch.save(resnet.state_dict(), out / "resnet_state.pt")
    print(
        f"exported ResNet: {len(resnet.blocks)} blocks, widths {resnet.widths}, "
        f"max |difference| {diff:.2e}"
    )

    summary = {
        "epochs": epochs,
        "train_seconds": train_s,
        "test_accuracy": acc,
        "transfer_accuracy": acc_fine,
        "widths": list(schedule.widths),
        "transfer_widths": list(fine.schedule.widths),
        "export_max_diff": diff,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    _plot_history(history, out / "training.png")
    trajectory_figure(model, data.test.x[0]).savefig(out / "trajectory.png", dpi=110)
    print(f"plots written to {out}/ (schedule.png, training.png, trajectory.png)")
    return 0


def _plot_history(history, path: Path) -> None:
    from matplotlib.figure import Figure

    rows = history.rows if hasattr(history, "rows") else history
    ep = [r["epoch"] for r in rows]
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    a, b = fig.subplots(1, 2)
    a.plot(ep, [r["loss"] for r in rows], label="train")
    if rows and rows[0].get("val_loss") is not None:
        a.plot(ep, [r["val_loss"] for r in rows], label="validation")
    a.set_yscale("log")
    a.set_xlabel("epoch")
    a.set_title("loss")
    a.legend()
    b.plot(ep, [r["accuracy"] for r in rows], label="train")
    if rows and rows[0].get("val_accuracy") is not None:
        b.plot(ep, [r["val_accuracy"] for r in rows], label="validation")
    b.set_xlabel("epoch")
    b.set_title("accuracy")
    b.legend()
    fig.savefig(path, dpi=110)
