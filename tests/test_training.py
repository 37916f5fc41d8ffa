"""The fit loop: learning, history files, checkpoints, exact resume, divergence, Ctrl-C."""

from __future__ import annotations

import copy
import csv
import json
import os
import pickle

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from grids import GridSchedule
from spacetime_nets import SpaceTimeNet
from spacetime_nets.datasets import Split
from spacetime_nets.objectives import l2_control, turnpike_cost
from spacetime_nets.training import (
    HISTORY_FIELDS,
    Callback,
    History,
    TrainingDiverged,
    evaluate,
    fit,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
)

N, BATCH = 48, 16  # three steps per epoch


def make_model(seed: int = 0, widths=(6, 3), steps: int = 2) -> SpaceTimeNet:
    sched = GridSchedule.hourglass(widths[0], widths[1], steps)
    return SpaceTimeNet(
        sched, 2, 2, kernel="nodal", form="inside", activation="tanh", lift="linear", seed=seed
    )


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, 2, generator=g)
    y = (x.norm(dim=1) > 1.1).long()
    return x, y


def params(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters on the CPU (fit trains on CUDA when there is one; checkpoints load on CPU)."""
    return {k: v.detach().cpu().clone() for k, v in model.named_parameters()}


def assert_same_params(a: nn.Module, b: nn.Module, atol: float = 1e-7) -> None:
    pa, pb = params(a), params(b)
    assert pa.keys() == pb.keys()
    for k in pa:
        assert torch.allclose(pa[k], pb[k], rtol=0, atol=atol), k


def assert_equal_params(a: nn.Module, b: nn.Module) -> None:
    """Bit for bit: a resumed run replays the same operations on the same values."""
    pa, pb = params(a), params(b)
    assert pa.keys() == pb.keys()
    for k in pa:
        assert torch.equal(pa[k], pb[k]), (k, (pa[k] - pb[k]).abs().max())


def run(model, data, **kw):
    kw.setdefault("epochs", 2)
    kw.setdefault("batch_size", BATCH)
    kw.setdefault("progress", False)
    kw.setdefault("lr", 0.05)
    return fit(model, data, **kw)


# -------------------------------------------------------------------------------- learning


def test_fit_lowers_the_loss(data):
    model = make_model()
    hist = run(model, data, val=data, epochs=12)
    loss = hist["loss"]
    assert len(hist) == 12 and hist[-1]["epoch"] == 12 and hist[-1]["step"] == 12 * 3
    assert loss[-1] < 0.8 * loss[0]
    assert all(0.0 <= a <= 1.0 for a in hist["accuracy"])
    assert hist[-1]["val_loss"] == pytest.approx(evaluate(model, data)["loss"])


def test_history_files_are_written_and_parse(data, tmp_path):
    model = make_model()
    hist = run(model, data, val=data, epochs=3, out_dir=tmp_path)
    doc = json.loads((tmp_path / "history.json").read_text())
    assert doc["fields"] == list(HISTORY_FIELDS)
    assert [r["epoch"] for r in doc["records"]] == [1, 2, 3]
    assert doc["records"][-1]["loss"] == pytest.approx(hist[-1]["loss"])
    with open(tmp_path / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and set(rows[0]) == set(HISTORY_FIELDS)
    assert float(rows[-1]["val_accuracy"]) == pytest.approx(hist[-1]["val_accuracy"])
    assert History.from_json(tmp_path / "history.json")["loss"] == pytest.approx(hist["loss"])
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["epoch"] == 3 and ckpt["step"] == 9 and len(ckpt["history"]) == 3
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_lam_penalty_appears_in_history(data):
    plain = run(make_model(), data, epochs=1)
    assert plain[-1]["penalty"] == 0.0
    model = make_model()
    initial = l2_control(model).item()
    hist = run(model, data, epochs=1, lam=0.1, optimizer="sgd", lr=1e-6)
    assert hist[-1]["penalty"] > 0.0
    # tiny steps: the epoch mean of lam * int |u|^2 is lam times the (unchanged) control cost
    assert hist[-1]["penalty"] == pytest.approx(0.1 * initial, rel=1e-3)
    assert hist[-1]["control"] == pytest.approx(initial, rel=1e-3)


@pytest.mark.parametrize("lam, turnpike", [(0.1, None), (0.0, 0.5)])
def test_one_full_batch_step_is_the_documented_objective(data, lam, turnpike):
    """A full-batch SGD step equals a hand-made gradient step on
    E + lam * int |u|^2 (+ turnpike * int E(x(t)) dt): explicit penalty, no weight decay."""
    x, y = data
    lr = 0.1
    model = make_model()
    ref = copy.deepcopy(model)
    loss = "cross_entropy" if turnpike is None else "l2"
    run(model, data, epochs=1, batch_size=N, optimizer="sgd", lr=lr, lam=lam,
        turnpike=turnpike, loss=loss)  # fmt: skip
    traj = ref.trajectory(x)
    out = ref.readout(traj.final)
    if loss == "cross_entropy":
        J = torch.nn.functional.cross_entropy(out, y)
    else:
        J = torch.linalg.vector_norm(out - torch.nn.functional.one_hot(y, 2), dim=-1).mean()
    J = J + lam * l2_control(ref)
    if turnpike is not None:
        J = J + turnpike * turnpike_cost(ref, x, y, loss, trajectory=traj)
    J.backward()
    with torch.no_grad():
        for p in ref.parameters():
            p -= lr * p.grad
    assert_same_params(model, ref, atol=1e-6)


def test_inputs_pairs_splits_and_datasets_train_alike(data):
    x, y = data

    class Plain(Dataset):
        def __len__(self):
            return N

        def __getitem__(self, i):
            return x[i], y[i]

    ref = make_model()
    run(ref, (x, y), epochs=1)
    for source in (Split(x, y), TensorDataset(x, y), Plain()):
        model = make_model()
        run(model, source, epochs=1)
        assert_same_params(model, ref, atol=0)


def test_optimizer_forms(data):
    a, b, c = make_model(), make_model(), make_model()
    run(a, data, epochs=1, optimizer="sgd", lr=0.05)
    run(b, data, epochs=1, optimizer=torch.optim.SGD(b.parameters(), lr=0.05))
    run(c, data, epochs=1, optimizer=lambda ps: torch.optim.SGD(ps, lr=0.05))
    assert_same_params(a, b, atol=0)
    assert_same_params(a, c, atol=0)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": -1.0}, "lr"),
        ({"lam": float("nan")}, "lam"),
        ({"loss": "hinge"}, "loss"),
        ({"optimizer": "lbfgs-ish"}, "optimizer"),
        ({"device": "tpu:7"}, "device"),
        ({"lr_schedule": "warm"}, "lr_schedule"),
    ],
)
def test_bad_arguments_are_refused(data, kw, match):
    with pytest.raises(ValueError, match=match):
        run(make_model(), data, **kw)


def test_evaluate_classification_and_regression(data):
    x, y = data
    model = make_model()
    res = evaluate(model, (x, y), batch_size=10)
    with torch.no_grad():
        out = model(x)
    assert res["n"] == N
    assert res["accuracy"] == pytest.approx(float((out.argmax(-1) == y).float().mean()))
    assert res["loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(out, y)), rel=1e-5)
    reg = evaluate(model, (x, torch.zeros(N, 2)))
    assert reg["accuracy"] is None
    assert reg["loss"] == pytest.approx(float((out**2).mean()), rel=1e-5)


def test_a_plain_callable_can_stop_training(data, tmp_path):
    seen = []

    def stop_after_two(state):
        seen.append((state.epoch, state.step, len(state.history)))
        state.stop = state.epoch >= 2

    hist = run(make_model(), data, epochs=5, out_dir=tmp_path, callbacks=[stop_after_two],
               checkpoint_every=10)  # fmt: skip
    assert len(hist) == 2 and seen == [(1, 3, 1), (2, 6, 2)]
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 2


# -------------------------------------------------------------------------------- resume


def test_resume_continues_exactly(data, tmp_path):
    full = make_model()
    h_full = run(full, data, val=data, epochs=4, out_dir=tmp_path / "full")
    part = make_model()
    run(part, data, val=data, epochs=2, out_dir=tmp_path / "part")
    resumed = make_model(seed=7)  # other initial values: everything comes from the checkpoint
    h_res = run(resumed, data, val=data, epochs=4, out_dir=tmp_path / "part",
                resume=tmp_path / "part" / "last.pt")  # fmt: skip
    assert_equal_params(resumed, full)
    assert len(h_res) == 4
    assert h_res["loss"] == h_full["loss"] and h_res["val_loss"] == h_full["val_loss"]
    assert load_checkpoint(tmp_path / "part")["epoch"] == 4


def test_load_model_state_into_a_fresh_model(data, tmp_path):
    model = make_model()
    run(model, data, epochs=1, out_dir=tmp_path)
    fresh = make_model(seed=3)
    doc = load_model_state(fresh, tmp_path / "last.pt")
    assert doc["epoch"] == 1
    model.cpu()
    with torch.no_grad():
        assert torch.equal(fresh(data[0]), model(data[0]))
    other = make_model(widths=(8, 4), steps=3)
    with pytest.raises(ValueError, match="does not fit"):
        load_model_state(other, tmp_path / "last.pt")


# -------------------------------------------------------------------------------- failures


class PoisonAtEpoch(Callback):
    """Makes the loss NaN from the start of ``epoch`` on; records the state before."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.before: dict | None = None

    def on_epoch_start(self, state):
        if state.epoch == self.epoch:
            self.before = params(state.model)
            with torch.no_grad():
                state.model.readout_bias.fill_(float("nan"))


def test_nan_stops_and_keeps_the_last_good_checkpoint(data, tmp_path):
    model = make_model()
    poison = PoisonAtEpoch(2)
    with pytest.raises(TrainingDiverged, match=r"epoch 2, step 1") as info:
        run(model, data, epochs=4, out_dir=tmp_path, callbacks=[poison])
    err = info.value
    assert isinstance(err, RuntimeError)
    assert (err.epoch, err.step, err.global_step) == (2, 1, 4)
    assert "last.pt" in str(err)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["epoch"] == 1 and ckpt["step"] == 3
    for k, v in poison.before.items():
        assert torch.equal(ckpt["model"][k], v), k
    assert not (tmp_path / "interrupted.pt").exists()
    assert len(json.loads((tmp_path / "history.json").read_text())["records"]) == 1


def test_nan_in_the_first_epoch_writes_no_checkpoint(data, tmp_path):
    model = make_model()
    with torch.no_grad():  # non-finite controls: the very first loss is not finite
        model.kernel.weight[0][0, 0] = float("inf")
    with pytest.raises(TrainingDiverged, match="epoch 1"):
        run(model, data, epochs=2, out_dir=tmp_path)
    assert not (tmp_path / "last.pt").exists()


class InterruptAt(Callback):
    def __init__(self, epoch: int, step: int) -> None:
        self.epoch, self.step = epoch, step

    def on_batch_end(self, state):
        if state.epoch == self.epoch and state.step_in_epoch == self.step:
            raise KeyboardInterrupt


def test_ctrl_c_writes_interrupted_checkpoint_and_resumes_exactly(data, tmp_path):
    model = make_model()
    cos = {"lr_schedule": "cosine"}  # the rate is a function of the step count: resumable too
    with pytest.raises(KeyboardInterrupt):
        run(model, data, epochs=3, out_dir=tmp_path, callbacks=[InterruptAt(2, 2)], **cos)
    ckpt = load_checkpoint(tmp_path / "interrupted.pt")
    assert (ckpt["epoch"], ckpt["step_in_epoch"], ckpt["step"]) == (1, 2, 5)
    for k, v in params(model).items():
        assert torch.equal(ckpt["model"][k], v), k
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    # continuing from the middle of epoch 2 gives the uninterrupted run
    resumed = make_model(seed=5)
    h = run(resumed, data, epochs=3, resume=tmp_path / "interrupted.pt", **cos)
    full = make_model()
    h_full = run(full, data, epochs=3, **cos)
    assert h_full["lr"][0] > h_full["lr"][1] > h_full["lr"][2] > 0
    assert_equal_params(resumed, full)
    assert h["loss"] == h_full["loss"] and h["lr"] == h_full["lr"]


# -------------------------------------------------------------------------------- checkpoint files


class Evil:
    """Unpickling this would create a folder: the marker that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def _valid(tmp_path, data):
    model = make_model()
    path = save_checkpoint(tmp_path / "good.pt", model, epoch=1, step=3)
    assert load_checkpoint(path)["epoch"] == 1
    return path


def test_truncated_checkpoint_is_refused(data, tmp_path):
    path = _valid(tmp_path, data)
    blob = path.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="not a valid spacetime-nets checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(ValueError):
        load_model_state(make_model(), bad)


@pytest.mark.parametrize("kind", ["pickle", "torch_save_reduce", "module_inside"])
def test_tampered_checkpoint_is_refused_and_never_executed(tmp_path, kind):
    marker = tmp_path / "code-ran"
    path = tmp_path / "tampered.pt"
    if kind == "pickle":
        path.write_bytes(pickle.dumps({"format": "x", "model": Evil(str(marker))}))
    elif kind == "torch_save_reduce":
        torch.save({"format": "spacetime-nets/checkpoint", "model": Evil(str(marker))}, path)
    else:
        torch.save({"format": "spacetime-nets/checkpoint", "model": nn.Linear(2, 2)}, path)
    with pytest.raises(ValueError, match="not a valid spacetime-nets checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "doc, match",
    [
        ({"weights": torch.zeros(3)}, "format tag"),
        ([torch.zeros(3)], "expected a dict"),
        ({"format": "spacetime-nets/checkpoint", "version": 1}, "missing"),
        ({"format": "spacetime-nets/checkpoint", "version": 99}, "version"),
    ],
)
def test_foreign_checkpoint_is_refused(tmp_path, doc, match):
    path = tmp_path / "foreign.pt"
    torch.save(doc, path)
    with pytest.raises(ValueError, match=match):
        load_checkpoint(path)


def test_missing_checkpoint_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nothing.pt")
