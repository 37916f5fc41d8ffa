"""A stepper registered after import, from outside the library, is one entry that everything
picks up: the model, ``runs.ModelOptions``, the command line's choices and ``adapt``'s order of
the scheme."""

from __future__ import annotations

import pytest
import torch

from grids import GridSchedule
from spacetime_nets import SpaceTimeNet, adapt
from spacetime_nets.cli import main
from spacetime_nets.integrate import METHODS
from spacetime_nets.runs import ModelOptions
from spacetime_nets.steppers import STEPPERS, ButcherTableau, register_stepper

#: Kutta's third-order method, not one of the library's own
KUTTA3 = ButcherTableau("kutta3", ((), (0.5,), (-1.0, 2.0)), (1 / 6, 2 / 3, 1 / 6), 3)


@pytest.fixture()
def kutta3():
    assert "kutta3" not in STEPPERS
    register_stepper(KUTTA3)
    yield KUTTA3.name
    del STEPPERS["kutta3"]


def test_a_registered_stepper_steps_the_flow_at_its_order(kutta3):
    from test_convergence import linear_errors, observed_order

    assert kutta3 in METHODS and adapt.ORDERS[kutta3] == 3
    # the closed-form linear problem of test_convergence, stepped by the new tableau
    steps = [8, 16, 32, 64]
    order = observed_order(steps, linear_errors(kutta3, steps))
    assert 2.7 <= order <= 3.4, order


def test_a_registered_stepper_is_taken_by_the_options_the_cli_and_adapt(kutta3, tmp_path):
    assert ModelOptions(method=kutta3).check().method == kutta3
    out = tmp_path / "run"
    argv = ["train", "--samples", "60", "--steps", "2", "--widths", "8,4", "--epochs", "1",
            "--kernel", "basis", "--modes", "4", "--method", kutta3, "--quiet",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert main(["evaluate", str(out)]) == 0
    # a basis kernel constant on the steps keeps the stepper's order in adapt's estimates
    sched = GridSchedule.constant(9, 4)
    model = SpaceTimeNet(sched, 2, 2, kernel="basis", modes=4, method=kutta3)
    assert adapt.time_order(model) == 3


def test_euler_is_a_property_of_the_tableau_not_its_name():
    """A single-stage tableau under another name takes the ResNet step between grids, exactly
    as ``euler`` does: the same function on a moving schedule, the same export and import."""
    from spacetime_nets import from_resnet, to_resnet

    register_stepper(ButcherTableau("forward", ((),), (1.0,), 1))
    try:
        sched = GridSchedule.hourglass(9, 5, 4)
        x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
        models = {
            m: SpaceTimeNet(
                sched,
                2,
                3,
                kernel="nodal",
                form="inside",
                activation="tanh",
                lift="linear",
                method=m,
                seed=1,
            )  # fmt: skip
            for m in ("euler", "forward")
        }
        assert models["forward"].kernel.weight[0].shape == (7, 9)  # W^0 maps G_0 to G_1
        with torch.no_grad():
            torch.testing.assert_close(models["forward"](x), models["euler"](x), rtol=0, atol=0)
            back = from_resnet(to_resnet(models["forward"]), sched)
            torch.testing.assert_close(back(x), models["euler"](x), rtol=1e-6, atol=1e-6)
    finally:
        del STEPPERS["forward"]
