"""An activation registered from outside the library, as one ``Activation`` entry, is taken
by the model, its homogeneity rule, the export and import of ResNets, ``ModelOptions`` and the
command line."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grids import GridSchedule
from spacetime_nets import SpaceTimeNet, form_is_homogeneous, from_resnet, to_resnet
from spacetime_nets.cli import main
from spacetime_nets.fields import (
    ACTIVATION_REGISTRY,
    ACTIVATIONS,
    HOMOGENEOUS_ACTIVATIONS,
    Activation,
    register_activation,
)
from spacetime_nets.runs import ModelOptions


@pytest.fixture()
def silu():
    assert "silu" not in ACTIVATION_REGISTRY
    register_activation(Activation("silu", F.silu, nn.SiLU, homogeneous=False))
    yield "silu"
    del ACTIVATION_REGISTRY["silu"]


def test_a_registered_activation_steps_exports_and_imports(silu):
    assert silu in ACTIVATIONS and silu not in HOMOGENEOUS_ACTIVATIONS
    assert not form_is_homogeneous("outside", silu) and form_is_homogeneous("inside", silu)
    sched = GridSchedule.hourglass(9, 5, 2)
    model = SpaceTimeNet(sched, 2, 3, kernel="nodal", form="outside", activation=silu,
                         lift="linear", seed=0).double()  # fmt: skip
    x = torch.randn(5, 2, dtype=torch.float64)
    by_fn = SpaceTimeNet(sched, 2, 3, kernel="nodal", form="outside", activation=F.silu,
                         lift="linear", seed=0).double()  # fmt: skip
    with torch.no_grad():
        # the name steps as the function it names (the same model with the callable itself)
        torch.testing.assert_close(model(x), by_fn(x), rtol=0, atol=0)
        resnet = to_resnet(model)
        assert any(isinstance(m, nn.SiLU) for m in resnet.modules())
        torch.testing.assert_close(resnet(x), model(x))
        back = from_resnet(resnet, sched)
        assert back.activation == silu
        torch.testing.assert_close(back(x), model(x))


def test_a_registered_activation_is_taken_by_the_options_and_the_cli(silu, tmp_path):
    assert ModelOptions(activation=silu).check().activation == silu
    out = tmp_path / "run"
    assert main(["train", "--samples", "60", "--steps", "2", "--widths", "8,4", "--epochs", "1",
                 "--activation", silu, "--quiet", "--out", str(out)]) == 0  # fmt: skip
    assert main(["evaluate", str(out)]) == 0
