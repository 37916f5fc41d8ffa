"""Resuming and reading checkpoints never trains the wrong problem and never trusts a damaged
file: a new learning rate is applied, another optimiser, model, schedule, dtype or data set is
refused, non-finite or altered weights and inconsistent counters are refused, a checkpoint with
NaN weights is never written or reported as the last good one, and a finished run removes the
``interrupted.pt`` it has gone past."""

from __future__ import annotations

import warnings

import pytest
import torch

from grids import GridSchedule
from spacetime_nets import SpaceTimeNet
from spacetime_nets.training import (
    Callback,
    TrainingDiverged,
    fit,
    load_checkpoint,
    save_checkpoint,
)

N, BATCH = 48, 16  # three steps per epoch


def make_model(
    seed: int = 0, T: float = 1.0, activation: str = "tanh", dtype=torch.float32, transfer="linear"
):
    sched = GridSchedule.hourglass(6, 3, 2, T=T, transfer_kind=transfer)
    model = SpaceTimeNet(sched, 2, 2, kernel="nodal", form="inside", activation=activation,
                         lift="linear", seed=seed)  # fmt: skip
    return model.to(dtype=dtype)


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, 2, generator=g)
    return x, (x.norm(dim=1) > 1.1).long()


def run(model, data, **kw):
    kw.setdefault("batch_size", BATCH)
    kw.setdefault("progress", False)
    kw.setdefault("device", "cpu")
    return fit(model, data, **kw)


def params(model):
    return {k: v.detach().clone() for k, v in model.named_parameters()}


@pytest.fixture()
def one_epoch(data, tmp_path):
    """A run folder with last.pt after one epoch (adam, lr 1e-2, tanh, T = 1, float32)."""
    run(make_model(), data, epochs=1, out_dir=tmp_path)
    return tmp_path / "last.pt"


# ------------------------------------------------------------------------------ the lr


class SetLr(Callback):
    """The reference for a changed rate: an uninterrupted run whose rate is changed by hand
    at the start of an epoch."""

    def __init__(self, epoch: int, lr: float) -> None:
        self.epoch, self.lr = epoch, lr

    def on_epoch_start(self, state):
        if state.epoch == self.epoch:
            for g in state.optimizer.param_groups:
                g["lr"] = self.lr


def test_a_new_learning_rate_is_applied_on_resume(data, one_epoch):
    resumed = make_model(seed=9)
    with pytest.warns(UserWarning, match=r"learning rate 0.01 -> 0.001"):
        h = run(resumed, data, epochs=2, lr=1e-3, resume=one_epoch)
    assert h["lr"] == pytest.approx([1e-2, 1e-3])
    reference = make_model()
    run(reference, data, epochs=2, lr=1e-2, callbacks=[SetLr(2, 1e-3)])
    for k, v in params(reference).items():
        assert torch.equal(params(resumed)[k], v), k


@pytest.mark.parametrize("optimizer", ["sgd", "rmsprop"])
def test_another_optimizer_is_refused(data, one_epoch, optimizer):
    model = make_model()
    with pytest.raises(ValueError, match=r"Adam optimiser, not .*"):
        run(model, data, epochs=2, optimizer=optimizer, resume=one_epoch)


# ------------------------------------------------------------------------------ another problem


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"activation": "relu"}, "activation tanh -> relu"),
        ({"T": 2.0}, "T 1 -> 2"),
        ({"transfer": "nearest"}, r"another schedule or horizon \(disc\.pi"),
        ({"dtype": torch.float64}, "float32"),
    ],
)
def test_another_model_is_refused(data, one_epoch, kw, match):
    model = make_model(**kw)
    before = params(model)
    x, y = data
    with pytest.raises(ValueError, match=match):
        run(model, (x.to(model.lift_weight.dtype), y), epochs=2, resume=one_epoch)
    for k, v in before.items():
        assert torch.equal(params(model)[k], v), k


def test_other_data_are_refused(data, one_epoch):
    x, y = data
    with pytest.raises(ValueError, match="other data"):
        run(make_model(), (x, 1 - y), epochs=2, resume=one_epoch)


def test_a_finished_run_is_not_resumed_silently(data, one_epoch):
    with pytest.raises(ValueError, match="already finished 1 epochs"):
        run(make_model(), data, epochs=1, resume=one_epoch)


# ------------------------------------------------------------------------------ damaged files


def _rewrite(path, change, keep_digest: bool = False):
    doc = torch.load(path, weights_only=True)
    change(doc)
    if not keep_digest:
        doc.pop("digest", None)  # a file without a digest, read with trust=True below
    torch.save(doc, path)


def test_non_finite_weights_are_refused_on_load(one_epoch):
    def poison(doc):
        doc["model"]["readout_bias"][1] = float("nan")

    _rewrite(one_epoch, poison)
    with pytest.raises(ValueError, match="has no digest"):
        load_checkpoint(one_epoch)
    # trusted, the file is still checked: the NaN weight is refused
    with pytest.raises(ValueError, match=r"not finite \(readout_bias\[1\] = nan\)"):
        load_checkpoint(one_epoch, trust=True)


def test_a_model_with_nan_weights_is_not_saved(tmp_path):
    model = make_model()
    with torch.no_grad():
        model.lift_bias[0] = float("inf")
    with pytest.raises(ValueError, match="not finite"):
        save_checkpoint(tmp_path / "x.pt", model)
    assert not (tmp_path / "x.pt").exists()


def test_inconsistent_counters_are_not_saved(tmp_path):
    with pytest.raises(ValueError, match="not written, inconsistent counters"):
        save_checkpoint(tmp_path / "x.pt", make_model(), epoch=2, step=1)
    assert not (tmp_path / "x.pt").exists()


def test_a_flipped_bit_in_the_weights_is_refused(one_epoch):
    weight = load_checkpoint(one_epoch)["model"]["kernel.weight.0"]
    raw = weight.contiguous().view(torch.uint8).numpy().tobytes()
    blob = bytearray(one_epoch.read_bytes())
    at = blob.find(raw)
    assert at >= 0 and blob.find(raw, at + 1) < 0  # the tensor's bytes, stored once
    blob[at] ^= 0x01  # the lowest mantissa bit of the first entry: still a finite number
    one_epoch.write_bytes(bytes(blob))
    changed = torch.load(one_epoch, weights_only=True)["model"]["kernel.weight.0"]
    assert torch.isfinite(changed).all() and not torch.equal(changed, weight)
    with pytest.raises(ValueError, match="digest"):
        load_checkpoint(one_epoch)


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.update(epoch=1000),
        lambda d: d.update(step_in_epoch=2),
        lambda d: d.update(step=0),
    ],
    ids=["epoch", "step_in_epoch", "step"],
)
@pytest.mark.parametrize("keep_digest", [True, False])
def test_inconsistent_counters_are_refused(one_epoch, change, keep_digest):
    _rewrite(one_epoch, change, keep_digest)
    with pytest.raises(ValueError, match="digest" if keep_digest else "inconsistent counters"):
        load_checkpoint(one_epoch, trust=not keep_digest)


# ------------------------------------------------------------------------------ last good


class BreakWeightsAt(Callback):
    """After the given step the weights are NaN (an update that blew up) while the loss of
    that step was finite."""

    def __init__(self, epoch: int, step: int) -> None:
        self.epoch, self.step = epoch, step

    def on_batch_end(self, state):
        if (state.epoch, state.step_in_epoch) == (self.epoch, self.step):
            with torch.no_grad():
                state.model.readout_bias.fill_(float("nan"))


def test_nan_weights_after_an_epoch_are_never_the_last_good_checkpoint(data, tmp_path):
    with pytest.raises(TrainingDiverged, match="weights") as info:
        run(make_model(), data, epochs=3, out_dir=tmp_path, callbacks=[BreakWeightsAt(2, 3)])
    assert info.value.checkpoint == str(tmp_path / "last.pt")
    ckpt = load_checkpoint(tmp_path / "last.pt")  # finite: it loads
    assert ckpt["epoch"] == 1


def test_a_stale_checkpoint_of_another_run_is_not_reported(data, tmp_path):
    run(make_model(), data, epochs=1, out_dir=tmp_path)
    model = make_model()
    with torch.no_grad():
        model.kernel.weight[0][0, 0] = float("inf")
    with pytest.raises(TrainingDiverged) as info:
        run(model, data, epochs=1, out_dir=tmp_path)
    assert info.value.checkpoint is None
    assert "no checkpoint written" in str(info.value)


# ------------------------------------------------------------------------------ interrupts


class InterruptAt(Callback):
    def __init__(self, epoch: int, step: int) -> None:
        self.epoch, self.step = epoch, step

    def on_batch_end(self, state):
        if (state.epoch, state.step_in_epoch) == (self.epoch, self.step):
            raise KeyboardInterrupt


def test_a_successful_resume_removes_the_stale_interrupted_checkpoint(data, tmp_path):
    with pytest.raises(KeyboardInterrupt) as info:
        run(make_model(), data, epochs=3, out_dir=tmp_path, callbacks=[InterruptAt(2, 2)])
    interrupted = tmp_path / "interrupted.pt"
    assert info.value.checkpoint == str(interrupted) and interrupted.is_file()
    run(make_model(), data, epochs=3, out_dir=tmp_path, resume=interrupted)
    assert not interrupted.exists()
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 3


def test_an_interrupt_before_the_first_step_promises_no_file(data, tmp_path):
    class InterruptAtStart(Callback):
        def on_train_start(self, state):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as info, warnings.catch_warnings():
        run(make_model(), data, epochs=1, out_dir=tmp_path, callbacks=[InterruptAtStart()])
    assert getattr(info.value, "checkpoint", None) is None
    assert not (tmp_path / "interrupted.pt").exists()


def test_progress_bars_show_each_epoch_and_its_loss(data, capsys):
    run(make_model(), data, epochs=2, progress=True)
    err = capsys.readouterr().err
    assert "epoch 1/2" in err and "epoch 2/2" in err and "loss=" in err


def test_the_saved_random_states_restore_every_generator():
    import random

    import numpy as np

    from spacetime_nets.training import checkpoint

    random.seed(5)
    np.random.seed(6)  # noqa: NPY002 (the global state the checkpoint keeps)
    torch.manual_seed(7)
    state = checkpoint._rng_state()
    assert {"torch", "python", "numpy"} <= set(state)
    draws = (random.random(), float(np.random.random()), torch.rand(3).tolist())  # noqa: NPY002
    random.seed(0)
    np.random.seed(0)  # noqa: NPY002
    torch.manual_seed(0)
    checkpoint.set_rng_state(state)
    again = (random.random(), float(np.random.random()), torch.rand(3).tolist())  # noqa: NPY002
    assert again == draws
    checkpoint.set_rng_state({})  # nothing saved: every generator is left as it is
    damaged = {k: v for k, v in state.items() if k != "numpy_pos"}
    with pytest.raises(ValueError, match="damaged random state"):
        checkpoint.set_rng_state(damaged)
