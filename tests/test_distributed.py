"""Data parallel training: two CPU processes (gloo) give the parameters of one process with
the same global batch, each process taking its own half of every batch."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
import textwrap

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


@pytest.mark.slow
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


# Trains through the Python API on a Dataset that records the indices it is asked for; a
# callback cuts the record at every optimiser step. Writes rank<r>.json into argv[1].
RECORDING_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import torch
    from torch.utils.data import Dataset
    import grids
    from spacetime_nets import SpaceTimeNet, datasets
    from spacetime_nets.training import Callback, fit

    class Recorded(Dataset):
        def __init__(self, x, y):  # no .x / .y: fit would take those tensors directly
            self.inputs, self.labels, self.seen = x, y, []
        def __len__(self):
            return len(self.inputs)
        def __getitem__(self, i):
            self.seen.append(int(i))
            return self.inputs[i], self.labels[i]

    class PerStep(Callback):
        def __init__(self, data):
            self.data, self.steps, self.sizes = data, [], []
        def on_epoch_start(self, state):
            self.data.seen.clear()
        def on_batch_end(self, state):
            self.steps.append(list(self.data.seen))
            self.sizes.append(state.batch["size"])
            self.data.seen.clear()

    torch.set_num_threads(1)
    data = datasets.load("circles", seed=0)
    train = Recorded(data.train.x, data.train.y)
    model = SpaceTimeNet(grids.GridSchedule.hourglass(6, 3, 2), 2, 2, kernel="nodal",
                         form="inside", activation="tanh", lift="linear", seed=0)
    rec = PerStep(train)
    fit(model, train, epochs=2, batch_size=30, lr=1e-2, device="cpu", progress=False,
        callbacks=[rec], seed=0)
    rank = int(os.environ.get("RANK", "0"))
    doc = {"world": int(os.environ.get("WORLD_SIZE", "1")), "steps": rec.steps,
           "sizes": rec.sizes,
           "params": {k: v.detach().double().flatten().tolist()
                      for k, v in model.named_parameters()}}
    with open(os.path.join(sys.argv[1], f"rank{rank}.json"), "w") as fh:
        json.dump(doc, fh)
    """
)


@pytest.mark.slow
def test_each_process_trains_on_its_own_half_of_the_batch(tmp_path, monkeypatch):
    """The samples each rank reads at every step: disjoint halves whose union is the batch of
    the one-process run, every sample once per epoch; the parameters agree with that run."""
    script = tmp_path / "record.py"
    script.write_text(RECORDING_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    ddp.mkdir()
    single.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           str(script), str(ddp)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:  # meanwhile, the one-process run in this process
        monkeypatch.setattr(sys, "argv", [str(script), str(single)])
        for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
            monkeypatch.delenv(name, raising=False)
        runpy.run_path(str(script), run_name="__main__")
    finally:
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    r0, r1 = (json.loads((ddp / f"rank{r}.json").read_text()) for r in (0, 1))
    one = json.loads((single / "rank0.json").read_text())
    assert r0["world"] == r1["world"] == 2 and one["world"] == 1
    # 210 samples, global batch 30: 7 steps per epoch, 15 samples per process and step
    assert len(one["steps"]) == len(r0["steps"]) == len(r1["steps"]) == 14
    assert r0["sizes"] == r1["sizes"] == [15] * 14 and one["sizes"] == [30] * 14
    for step, (a, b, whole) in enumerate(zip(r0["steps"], r1["steps"], one["steps"])):
        assert len(a) == len(set(a)) == 15 and len(b) == len(set(b)) == 15, step
        assert not set(a) & set(b), step
        assert set(a) | set(b) == set(whole), step
    for epoch in range(2):
        seen = sorted(i for r in (r0, r1) for s in r["steps"][7 * epoch : 7 * epoch + 7] for i in s)
        assert seen == list(range(210)), epoch
    for key, value in one["params"].items():
        ref = torch.tensor(value)
        for r in (r0, r1):
            assert torch.allclose(torch.tensor(r["params"][key]), ref, rtol=0, atol=1e-5), key
