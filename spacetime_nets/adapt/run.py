"""The library side of ``spacetime-nets compress RUN``."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import torch

from ..export import SAVE_FORMATS, get_save_format, resnet_bytes
from ..models import SpaceTimeNet
from ..training._io import atomic_write_files, check_path
from ..validation import check_int, check_real, check_seed
from ._common import (
    METRICS,
    _check_continuous,
    _function_readout,
)
from .search import (
    AdaptSummary,
    compress,
)

# --------------------------------------------------------------------------------------------
# the command line's library function
# --------------------------------------------------------------------------------------------


def compress_run(
    run_dir: str | os.PathLike,
    tol: float,
    out: str | os.PathLike | None = None,
    *,
    metric: str = "auto",
    split: str = "val",
    samples: int | None = None,
    checkpoint: str | None = None,
    norm: str | None = None,
    fewer_steps: bool = True,
    channels: bool = True,
    recover_epochs: int = 0,
    export_format: str = "export",
    progress: bool = False,
) -> AdaptSummary:
    """Compress a trained run folder (``model.json`` + checkpoint, as written by
    ``spacetime-nets train``) and write the result.

    Loads the run, takes the calibration batch from its data set (``split``, the first
    ``samples`` rows), runs [`compress`][spacetime_nets.adapt.compress] with ``tol`` and
    writes into ``out`` (default ``RUN/compressed``): ``schedule.json`` (the new grid
    schedule), ``resnet.pt2`` (``torch.export``; ``resnet.ts.pt`` for TorchScript), the
    exported plain ResNet, and ``compress.json`` (the summary, with the test metrics before
    and after). When the parameters do not change (no channel was dropped, no recovery ran:
    ``"parameters_changed": false`` in compress.json),
    ``spacetime-nets evaluate RUN --schedule OUT/schedule.json`` evaluates the compressed
    model; otherwise the exported ResNet is the compressed model (load it with
    [`load_resnet`][spacetime_nets.export.load_resnet]).

    Args:
        run_dir: the run folder.
        tol: allowed change: accuracy points (``metric="accuracy"``) or output units.
        out: output folder (created).
        metric: ``"accuracy"``, ``"predictions"``, ``"output"``, or ``"auto"`` (accuracy
            for classification, output otherwise).
        split: calibration split of the run's data set: ``"train"``, ``"val"`` or ``"test"``.
        samples: use only the first ``samples`` rows of the split (None: all).
        checkpoint: checkpoint file in the run (default ``last.pt``).
        norm: ``"max"`` or ``"rms"`` for ``metric="output"`` only (None: ``"max"``).
        fewer_steps: allow merging steps.
        channels: also reduce the channels of a channel model (see
            [`compress`][spacetime_nets.adapt.compress]).
        recover_epochs: epochs of each recovery, fitted to the trained model's outputs on
            the run's training split (0: none).
        export_format: ``"export"`` (torch.export, .pt2) or ``"torchscript"`` (.ts.pt).
        progress: print the search's progress to stderr (see
            [`compress`][spacetime_nets.adapt.compress]).

    Returns:
        The [`AdaptSummary`][spacetime_nets.adapt.AdaptSummary], with ``files`` naming what
            was written.
    """
    from .. import datasets
    from ..export import to_resnet
    from ..runs import load_run
    from ..training import evaluate

    if not isinstance(split, str) or split not in ("train", "val", "test"):
        raise ValueError(f"split: expected 'train', 'val' or 'test', got {split!r}")
    if not isinstance(export_format, str) or export_format not in SAVE_FORMATS:
        raise ValueError(
            f"export_format: expected 'export' or 'torchscript', got {export_format!r}"
        )
    program_format = get_save_format(export_format)
    if samples is not None:
        samples = check_int("samples", samples)
    if not isinstance(metric, str) or metric not in (*METRICS, "auto"):
        raise ValueError(f"metric: expected 'auto' or one of {', '.join(METRICS)}; got {metric!r}")
    check_path("run_dir", run_dir)
    dest = check_path("out", out) if out is not None else Path(run_dir) / "compressed"
    if dest.exists() and not dest.is_dir():
        raise ValueError(f"out: {dest} is a file; name a folder to write into")
    if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
        raise ValueError(f"checkpoint: expected a file name (str), got {checkpoint!r:.80}")
    tol = check_real("tol", tol)
    recover_epochs = check_int("recover_epochs", recover_epochs, 0)
    run = load_run(run_dir, checkpoint)
    model, config = run.model, run.config
    _check_continuous(model, "compress_run")
    ds = config.dataset or {}
    dtype = getattr(torch, str(config.dtype))
    name = ds.get("name")
    if name not in datasets.REGISTRY:
        raise ValueError(f"{run_dir}: model.json names no known data set ({name!r})")
    seed = check_seed(f"{run_dir}: model.json dataset seed", ds.get("seed", 0))
    data = datasets.load(name, seed=seed, dtype=dtype, **(ds.get("kwargs") or {}))
    cal = getattr(data, split)
    x, y = cal.x, cal.y
    if samples is not None:
        x, y = x[:samples], y[:samples]
    classify = y.dim() == 1 and not y.is_floating_point()
    if metric == "auto":
        metric = "accuracy" if classify else "output"
    small, summary = compress(
        model,
        (x, y),
        tol,
        metric=metric,
        norm=norm,
        fewer_steps=fewer_steps,
        channels=channels,
        recover_epochs=recover_epochs,
        recover_data=data.train.x if recover_epochs else None,
        progress=progress,
    )
    # everything is computed in memory first, then written file by file atomically: a
    # failure (a full disk) leaves no temporary file and keeps any previous file whole
    schedule_text = small.schedule.to_json()
    resnet = to_resnet(small).eval()
    program = resnet_bytes(resnet, x[:8].to(next(small.parameters()).dtype), format=export_format)
    files = {
        "schedule": str(dest / "schedule.json"),
        "resnet": str(dest / f"resnet{program_format.suffix}"),
        "summary": str(dest / "compress.json"),
    }
    loss = (config.training or {}).get("loss")
    p = (config.training or {}).get("p")
    test_before = evaluate(model, data.test, loss, p=p)
    judged = small
    if _function_readout(small):
        # a function readout answers on its own last grid: judge it on the trained one
        judged = _OnGrid(small, model.schedule.grids[-1])
    test_after = evaluate(judged, data.test, loss, p=p)
    summary.files = files
    info = summary.to_dict()
    info["test_before"], info["test_after"] = test_before, test_after
    info["parameters_changed"] = bool(
        summary.recoveries or summary.channels_after != summary.channels_before
    )
    info["files"] = files
    summary_text = json.dumps(info, indent=1, default=str)
    # the three files are written as one: all of them, or (a full disk) none, and a folder
    # made for them is removed again
    made = [q for q in (dest, *dest.parents) if not q.exists()]
    dest.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write_files(
            {
                Path(files["schedule"]): schedule_text.encode(),
                Path(files["resnet"]): program,
                Path(files["summary"]): summary_text.encode(),
            }
        )
    except OSError:
        for q in made:
            with contextlib.suppress(OSError):
                q.rmdir()
        raise
    return summary


class _OnGrid(torch.nn.Module):
    """``model(x, output_grid=grid)``: a function readout transferred to a fixed grid."""

    def __init__(self, model: SpaceTimeNet, grid) -> None:
        super().__init__()
        self.model, self.grid = model, grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, output_grid=self.grid)
