"""``spacetime-nets train`` on the function data sets (burgers, darcy, signals) with conv and
spectral kernels: the model reads the data on their own grid, and the run evaluates, exports
and compresses like any other."""

from __future__ import annotations

import json

import pytest
import torch

from spacetime_nets import datasets
from spacetime_nets.runs import load_run


@pytest.mark.slow
@pytest.mark.parametrize(
    "dataset, options",
    [
        ("burgers", ["--schedule", "constant", "--steps", "3", "--kernel", "spectral",
                     "--channels", "6", "--modes", "6"]),
        ("darcy", ["--schedule", "constant", "--steps", "2", "--kernel", "conv",
                   "--channels", "4", "--radius", "0.2"]),
        ("signals", ["--schedule", "pyramid", "--steps", "3", "--kernel", "conv",
                     "--channels", "6", "--radius", "0.25"]),
    ],
)  # fmt: skip
def test_train_evaluate_export_on_function_data(cli, dataset, options, tmp_path):
    out = tmp_path / dataset
    p = cli("train", "--dataset", dataset, "--samples", "80", *options, "--form", "inside",
            "--activation", "gelu", "--epochs", "1", "--lr", "1e-3", "--out", str(out),
            "--quiet")  # fmt: skip
    assert p.returncode == 0, p.stderr
    run = load_run(out)
    data = datasets.load(dataset, n=80, seed=0)
    assert run.model.schedule.widths[0] == data.in_features  # the data's own grid
    assert run.model.lift_kind == "identity"
    # the CLI's test metric is the library's, recomputed here on the same split
    ev = cli("evaluate", str(out), "--json")
    assert ev.returncode == 0, ev.stderr
    res = json.loads(ev.stdout)
    with torch.no_grad():
        pred = run.model(data.test.x)
    if data.task == "regression":
        assert pred.shape == data.test.y.shape  # a function on the data's own grid
        mse = float(((pred - data.test.y) ** 2).mean())
        assert res["loss"] == pytest.approx(mse, rel=1e-5)
    else:
        acc = float((pred.argmax(-1) == data.test.y).float().mean())
        assert res["accuracy"] == pytest.approx(acc, abs=1e-9)
    ex = cli("export", str(out))
    assert ex.returncode == 0, ex.stderr


@pytest.mark.slow
def test_function_data_refuse_a_grid_other_than_their_own(cli, tmp_path):
    p = cli("train", "--dataset", "burgers", "--samples", "20", "--widths", "64,32",
            "--kernel", "spectral", "--channels", "4", "--out", str(tmp_path / "b"))  # fmt: skip
    assert p.returncode == 2 and "n_max must be 128" in p.stderr, p.stderr
    p = cli("train", "--dataset", "burgers", "--samples", "20", "--rule", "trapezoid",
            "--kernel", "spectral", "--channels", "4", "--out", str(tmp_path / "b"))  # fmt: skip
    assert p.returncode == 2 and "live on a 'periodic' grid" in p.stderr, p.stderr
    p = cli("train", "--dataset", "signals", "--samples", "80", "--kernel", "conv",
            "--out", str(tmp_path / "s"))  # fmt: skip
    assert p.returncode == 2 and "needs --channels" in p.stderr, p.stderr
