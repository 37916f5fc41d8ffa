"""Training across input resolutions (``fit(resolutions=...)``, ``train --multires``): the
scales follow the run's seeded generator, one scale of 1 is the ordinary run bit for bit, a
batch at scale 0.5 reaches the model as np.interp of its rows, a resumed run is exact, bad
arguments and models are refused, and the command line parses, stores and guards the flag."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch

from grids import Grid, GridSchedule
from spacetime_nets import SpaceTimeNet
from spacetime_nets.cli import main
from spacetime_nets.cli.parser import build_parser
from spacetime_nets.runs import RunConfig
from spacetime_nets.training import Callback, fit, load_checkpoint
from spacetime_nets.training.multires import MultiResolution, scaled_size

N, BATCH, N0 = 40, 8, 9  # five steps per epoch; 9 trapezoid nodes (8 cells) on [0, 1]


def make_model(dtype=torch.float32, rule="trapezoid", n0=N0, in_channels=1, **kw):
    sched = GridSchedule.pyramid(n0, 5, steps=2, T=1.0, levels=2, rule=rule)
    kw.setdefault("lift", "identity")
    in_features = None if kw["lift"] == "identity" else n0
    model = SpaceTimeNet(sched, in_features, 3, kernel="conv", form="inside", activation="tanh",
                         channels=3, in_channels=in_channels, radius_spacings=2.0, seed=0,
                         **kw)  # fmt: skip
    return model.to(dtype=dtype)


def make_data(dtype=torch.float32, n0=N0):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, n0, generator=g, dtype=torch.float64).cumsum(-1) / 3
    return x.to(dtype), (x.mean(-1) > 0).long() + (x[:, 0] > 0).long()


def run(model, data, **kw):
    kw.setdefault("batch_size", BATCH)
    kw.setdefault("progress", False)
    kw.setdefault("device", "cpu")
    kw.setdefault("lr", 1e-2)
    return fit(model, data, **kw)


class Scales(Callback):
    """Records the scale of every step."""

    def __init__(self) -> None:
        self.seen: list[float] = []

    def on_batch_end(self, state):
        self.seen.append(state.batch["scale"])


def params(model):
    return [p.detach().clone() for p in model.parameters()]


# ------------------------------------------------------------------------ the drawn scales


def test_the_scales_follow_the_seeded_generator():
    res = [0.5, 1, 2]
    a, b, c = Scales(), Scales(), Scales()
    run(make_model(), make_data(), epochs=3, seed=5, resolutions=res, callbacks=[a])
    run(make_model(), make_data(), epochs=3, seed=5, resolutions=res, callbacks=[b])
    run(make_model(), make_data(), epochs=3, seed=6, resolutions=res, callbacks=[c])
    # by hand: the epoch's shuffling generator (seed + epoch) after its permutation of N rows
    steps = math.ceil(N / BATCH)
    expected = []
    for e in range(3):
        g = torch.Generator().manual_seed(5 + e)
        torch.randperm(N, generator=g)
        expected += [float(res[i]) for i in torch.randint(3, (steps,), generator=g)]
    assert a.seen == expected == b.seen
    assert c.seen != a.seen
    assert set(a.seen) == {0.5, 1.0, 2.0}


def test_one_scale_of_1_is_the_ordinary_run_bit_for_bit():
    m1, m2 = make_model(), make_model()
    h1 = run(m1, make_data(), epochs=2, resolutions=None)
    h2 = run(m2, make_data(), epochs=2, resolutions=[1])
    assert all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters()))
    assert h1["loss"] == h2["loss"]


def test_the_model_is_trained_in_place():
    model = make_model()
    before = {id(p) for p in model.parameters()}
    w0 = params(model)
    run(model, make_data(), epochs=1, resolutions=[0.5, 2])
    assert {id(p) for p in model.parameters()} == before
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), w0))


# ------------------------------------------------------------------------ what the model reads


def _recording(model):
    """Record the inputs and keywords of every forward call of ``model``."""
    calls = []
    inner = model.forward

    def forward(x, *args, **kw):
        calls.append((x.detach().clone(), kw))
        return inner(x, *args, **kw)

    model.forward = forward
    return calls


def test_a_batch_at_scale_half_reads_the_np_interp_of_its_rows():
    model = make_model(torch.float64)
    x, y = make_data(torch.float64)
    calls = _recording(model)
    run(model, (x, y), epochs=1, batch_size=N, seed=3, resolutions=[0.5])
    (seen, kw), = calls  # fmt: skip
    grid = kw["input_grid"]
    # trapezoid: round(0.5 * (9 - 1)) + 1 = 5 nodes, end points included
    src, dst = np.linspace(0, 1, N0), np.linspace(0, 1, 5)
    np.testing.assert_allclose(grid.nodes[:, 0].numpy(), dst, rtol=0, atol=1e-15)
    order = torch.randperm(N, generator=torch.Generator().manual_seed(3))
    want = np.stack([np.interp(dst, src, row) for row in x[order].numpy()])
    np.testing.assert_allclose(seen.numpy(), want, rtol=0, atol=1e-14)
    assert "output_grid" not in kw


def test_midpoint_grids_scale_the_node_count_and_extrapolate_constantly():
    assert scaled_size(9, 0.5, "trapezoid") == 5 and scaled_size(9, 2, "trapezoid") == 17
    assert scaled_size(10, 0.5, "midpoint") == 5 and scaled_size(10, 2, "midpoint") == 20
    model = make_model(torch.float64, rule="midpoint", n0=10)
    x = make_data(torch.float64, n0=10)[0][:4]
    mr = MultiResolution(model, [0.5, 2.0], torch.device("cpu"), torch.float64)
    src = (np.arange(10) + 0.5) / 10
    for level, n in ((0, 5), (1, 20)):
        xs, kw = mr.resample(x, level)
        dst = (np.arange(n) + 0.5) / n
        np.testing.assert_allclose(kw["input_grid"].nodes[:, 0].numpy(), dst, atol=1e-15)
        want = np.stack([np.interp(dst, src, row) for row in x.numpy()])
        np.testing.assert_allclose(xs.numpy(), want, rtol=0, atol=1e-14)


def test_channel_inputs_are_resampled_channel_by_channel():
    model = make_model(torch.float64, in_channels=2)
    x = torch.randn(6, 2, N0, dtype=torch.float64)
    mr = MultiResolution(model, [0.5], torch.device("cpu"), torch.float64)
    xs, kw = mr.resample(x, 0)
    src, dst = np.linspace(0, 1, N0), np.linspace(0, 1, 5)
    want = np.stack([[np.interp(dst, src, c) for c in row] for row in x.numpy()])
    np.testing.assert_allclose(xs.numpy(), want, rtol=0, atol=1e-14)
    # the model answers on these inputs as on the same values moved to G_0 by itself
    ref = model(xs, input_grid=Grid.uniform(5))
    torch.testing.assert_close(model(xs, **kw), ref, rtol=0, atol=0)


def test_a_function_readout_is_compared_on_its_own_grid():
    sched = GridSchedule.constant(N0, 2)
    model = SpaceTimeNet(sched, None, 1, kernel="conv", form="inside", activation="tanh",
                         lift="identity", readout="function", channels=3, radius_spacings=2.0,
                         seed=0)  # fmt: skip
    x = make_data()[0]
    h = run(model, (x, x.flip(-1)), epochs=1, resolutions=[0.5, 2])
    assert math.isfinite(h[-1]["loss"])


# ------------------------------------------------------------------------ resume


class InterruptAt(Callback):
    def __init__(self, epoch: int, step: int) -> None:
        self.epoch, self.step = epoch, step

    def on_batch_end(self, state):
        if (state.epoch, state.step_in_epoch) == (self.epoch, self.step):
            raise KeyboardInterrupt


def test_a_resumed_run_takes_the_steps_of_an_uninterrupted_one(tmp_path):
    res = [0.5, 1, 2]
    whole = make_model()
    run(whole, make_data(), epochs=3, resolutions=res)
    with pytest.raises(KeyboardInterrupt):
        run(make_model(), make_data(), epochs=3, resolutions=res, out_dir=tmp_path,
            callbacks=[InterruptAt(2, 3)])  # fmt: skip
    doc = load_checkpoint(tmp_path / "interrupted.pt")
    assert doc["meta"]["resolutions"] == [0.5, 1.0, 2.0]
    resumed = make_model()
    rec = Scales()
    run(resumed, make_data(), epochs=3, resolutions=res, out_dir=tmp_path,
        resume=tmp_path / "interrupted.pt", callbacks=[rec])  # fmt: skip
    assert all(torch.equal(p, q) for p, q in zip(whole.parameters(), resumed.parameters()))
    assert len(rec.seen) == 2 + 5  # the rest of epoch 2, then epoch 3


def test_resuming_with_other_scales_warns(tmp_path):
    run(make_model(), make_data(), epochs=1, resolutions=[0.5, 1], out_dir=tmp_path)
    with pytest.warns(UserWarning, match="resolutions was"):
        run(make_model(), make_data(), epochs=2, resolutions=None, resume=tmp_path)


# ------------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    "bad",
    [[], "0.5,1", 0.5, [0.0], [-1], [float("nan")], [float("inf")], [True], ["1"], [1, None]],
)
def test_bad_resolutions_are_refused(bad):
    with pytest.raises(ValueError, match="^resolutions: "):
        run(make_model(), make_data(), epochs=1, resolutions=bad)


def test_a_scale_that_leaves_fewer_than_two_nodes_is_refused():
    with pytest.raises(ValueError, match=r"resolutions: the scale 0.05 gives 1 node"):
        run(make_model(), make_data(), epochs=1, resolutions=[1, 0.05])


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"lift": "cells"}, "lift='identity'"),
        ({"turnpike": 0.1}, "not with turnpike"),
        ({"compile": "cuda-graphs"}, "not with compile='cuda-graphs'"),
    ],
)
def test_models_and_settings_that_cannot_take_resampled_inputs_are_refused(kw, match):
    model = make_model(lift=kw.pop("lift", "identity"))
    with pytest.raises(ValueError, match="^resolutions: .*" + match):
        run(model, make_data(), epochs=1, resolutions=[0.5, 1], **kw)


def test_a_model_other_than_a_spacetime_net_is_refused():
    model = torch.nn.Linear(N0, 3)
    with pytest.raises(ValueError, match="^resolutions: .*got Linear"):
        run(model, make_data(), epochs=1, resolutions=[1])


def test_inputs_not_on_the_first_grid_are_refused():
    x, y = make_data()
    with pytest.raises(ValueError, match=r"^resolutions: the inputs must be values"):
        run(make_model(in_channels=2), (x, y), epochs=1, resolutions=[0.5])


# ------------------------------------------------------------------------ the command line


def test_the_flag_parses_to_a_list_and_defaults_to_none():
    args = build_parser("train").parse_args(["train", "--multires", "0.5, 1,2"])
    assert args.multires == [0.5, 1.0, 2.0]
    assert build_parser("train").parse_args(["train"]).multires is None


@pytest.mark.parametrize("text", ["", "0.5,,2", "a,b", "0", "1,-2", "nan", "1,inf"])
def test_bad_flag_text_is_a_usage_error_naming_the_flag(text, capsys):
    assert main(["train", "--multires", text]) == 2
    err = capsys.readouterr().err
    assert "argument --multires" in err and "Traceback" not in err


SIGNALS = ["train", "--dataset", "signals", "--samples", "70", "--schedule", "constant",
           "--steps", "1", "--kernel", "conv", "--channels", "2", "--batch-size", "16",
           "--quiet"]  # fmt: skip


def test_the_cli_stores_the_scales_and_refuses_a_resume_that_changes_them(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*SIGNALS, "--epochs", "1", "--multires", "0.5,1", "--out", str(out)]) == 0
    doc = json.loads((out / "model.json").read_text())
    assert doc["training"]["resolutions"] == [0.5, 1.0]
    assert load_checkpoint(out / "last.pt")["meta"]["resolutions"] == [0.5, 1.0]
    capsys.readouterr()
    for flag, shown in ((["--multires", "0.5,2"], "0.5,1 -> 0.5,2"), ([], "0.5,1 -> off")):
        argv = [*SIGNALS, "--epochs", "2", *flag, "--out", str(out), "--resume", str(out)]
        assert main(argv) == 2
        assert f"--multires {shown}" in capsys.readouterr().err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        argv = [*SIGNALS, "--epochs", "2", "--multires", "0.5,1", "--out", str(out),
                "--resume", str(out)]  # fmt: skip
        assert main(argv) == 0
    assert load_checkpoint(out / "last.pt")["epoch"] == 2


def test_the_cli_refuses_multires_for_a_model_without_the_identity_lift(tmp_path, capsys):
    argv = ["train", "--dataset", "circles", "--widths", "6,3", "--steps", "2", "--samples",
            "40", "--epochs", "1", "--quiet", "--multires", "0.5,1", "--out",
            str(tmp_path / "c")]  # fmt: skip
    assert main(argv) == 2
    assert "--multires: training across resolutions needs" in capsys.readouterr().err


def test_resume_conflicts_compare_the_stored_scales():
    def config(res):
        training = {} if res == "absent" else {"resolutions": res}
        return RunConfig(in_features=9, out_features=3, schedule={}, training=training)

    assert config("absent").resume_conflicts(config(None)) == []
    assert config([0.5, 1.0]).resume_conflicts(config([0.5, 1.0])) == []
    assert config(None).resume_conflicts(config([2.0])) == ["--multires off -> 2"]
