"""A schedule shape registered from outside the library, as one ``ScheduleBuilder`` entry, is
taken by run files and the command line (``--schedule NAME``), with the width and rule checks
of its entry."""

from __future__ import annotations

import pytest

from grids import Grid, GridSchedule
from grids.schedule import SCHEDULE_BUILDERS, SCHEDULES, ScheduleBuilder, register_schedule_builder
from spacetime_nets.cli import main
from spacetime_nets.runs import make_schedule


def _step_down(widths, steps, T, domain, rule, transfer_kind) -> GridSchedule:
    """n_max on the first half of the steps, n_min on the rest: one drop in the middle."""
    hi, lo = widths[0], widths[-1]
    half = steps // 2
    grids = [Grid.uniform(hi, domain, rule)] * (half + 1)
    grids += [Grid.uniform(lo, domain, rule)] * (steps - half)
    times = [T * k / steps for k in range(steps + 1)]
    return GridSchedule(times, grids, transfer_kind)


@pytest.fixture()
def step_down():
    assert "step_down" not in SCHEDULE_BUILDERS
    register_schedule_builder(ScheduleBuilder("step_down", _step_down))
    yield "step_down"
    del SCHEDULE_BUILDERS["step_down"]


def test_a_registered_shape_is_a_schedule_of_run_files(step_down):
    assert step_down in SCHEDULES
    sched = make_schedule(step_down, (9, 5), steps=4, T=2.0, rule="simpson", transfer="l2")
    assert sched.widths == [9, 9, 9, 5, 5] and sched.T == 2.0
    assert sched.grids[0].rule == "simpson" and sched.transfer_kind == "l2"


def test_a_registered_shape_is_taken_by_the_command_line(step_down, tmp_path, capsys):
    assert main(["schedule", step_down, "--widths", "16,4", "--steps", "4"]) == 0
    assert "widths: [16, 16, 16, 4, 4]" in capsys.readouterr().out
    # its entry says it goes between two widths: one is refused, naming the shape
    assert main(["schedule", step_down, "--widths", "16"]) == 2
    assert f"the {step_down} schedule goes between two widths" in capsys.readouterr().err
    out = tmp_path / "run"
    argv = ["train", "--samples", "60", "--schedule", step_down, "--widths", "8,4", "--steps",
            "2", "--epochs", "1", "--quiet", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert main(["evaluate", str(out)]) == 0
