"""Data parallel training: two CPU processes (gloo) give the parameters of one process with
the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist

from spacetime_nets.cli import main
from spacetime_nets.training import load_checkpoint

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available in this torch build",
)

# circles: 210 training samples, global batch 30 -> 7 steps per epoch, 15 samples per process
ARGS = ["train", "--dataset", "circles", "--schedule", "hourglass", "--widths", "6,3",
        "--steps", "2", "--epochs", "2", "--batch-size", "30", "--lam", "0.01",
        "--turnpike", "0.1", "--device", "cpu", "--quiet"]  # fmt: skip


def test_two_processes_match_one(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    ddp_out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           "-m", "spacetime_nets", *ARGS, "--out", str(ddp_out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert main([*ARGS, "--out", str(tmp_path / "single")]) == 0

    a = load_checkpoint(ddp_out / "last.pt")
    b = load_checkpoint(tmp_path / "single" / "last.pt")
    assert a["meta"]["world_size"] == 2 and b["meta"]["world_size"] == 1
    assert a["step"] == b["step"] == 14
    for key, va in a["model"].items():
        if isinstance(va, torch.Tensor) and va.is_floating_point():
            assert torch.allclose(va, b["model"][key], rtol=0, atol=1e-5), key
    for ra, rb in zip(a["history"], b["history"]):
        for field in ("loss", "accuracy", "penalty", "turnpike", "val_loss"):
            assert ra[field] == pytest.approx(rb[field], abs=1e-5), field
    # only rank 0 wrote: one set of files, no temporary leftovers
    names = sorted(p.name for p in ddp_out.iterdir())
    assert names == ["history.csv", "history.json", "last.pt", "model.json"]
