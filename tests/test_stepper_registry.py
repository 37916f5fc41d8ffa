"""A stepper registered after import, from outside the library, is one entry that everything
picks up: the model, ``runs.ModelOptions``, the command line's choices and ``adapt``'s order of
the scheme."""

from __future__ import annotations

import pytest

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
