"""Bad inputs to models: every unsupported dtype and a non-finite init_scale give a clear
ValueError naming the argument and the model's dtype (no raw torch error, no silent cast)."""

from __future__ import annotations

import pytest
import torch

from grids import GridSchedule
from spacetime_nets import NeuralODE, SpaceTimeNet


@pytest.mark.parametrize(
    "dtype",
    [
        torch.int64,
        torch.int32,
        torch.bool,
        torch.float16,
        torch.bfloat16,
        torch.complex64,
        torch.float64,
    ],
)
def test_inputs_of_another_dtype_are_refused_naming_the_models(dtype):
    sched = GridSchedule.constant(9, 2)
    models = [
        SpaceTimeNet(sched, 9, 2, kernel="basis", modes=4, seed=0),
        SpaceTimeNet(
            sched,
            None,
            2,
            kernel="conv",
            lift="identity",
            readout="mean",
            channels=3,
            radius=0.3,
            seed=0,
        ),
        NeuralODE(9, steps=2, out_features=2, seed=0),
    ]
    x = torch.ones(2, 9).to(dtype)
    for m in models:
        with pytest.raises(ValueError, match=r"x: expected dtype torch.float32 \(the model's\)"):
            m(x)
    m64 = models[0].double()
    with pytest.raises(ValueError, match=r"x: expected dtype torch.float64"):
        m64(torch.ones(2, 9))


@pytest.mark.parametrize("kernel", ["nodal", "basis", "neural", "conv", "spectral"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "1"])
def test_non_finite_init_scale_is_refused(kernel, bad):
    rule = "periodic" if kernel == "spectral" else "trapezoid"
    sched = GridSchedule.constant(17 if rule == "trapezoid" else 16, 2, rule=rule)
    extra = {"channels": 2, "lift": "identity", "readout": "mean", "modes": 3}
    kw = extra if kernel in ("conv", "spectral") else {"modes": 4}
    if kernel == "conv":
        kw = {**kw, "radius": 0.3}  # radius and modes only where the kernel reads them
    elif kernel == "nodal":
        kw = {}
    with pytest.raises(ValueError, match="init_scale: expected a finite number"):
        SpaceTimeNet(
            sched,
            None if kernel in ("conv", "spectral") else 17,
            2,
            kernel=kernel,
            init_scale=bad,
            **kw,
        )
