"""A quadrature rule registered from outside the library, as one ``QuadratureRule`` entry, is
taken everywhere a rule is: grids, their degree and valid sizes, schedules and their
refinement, the models and the command line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grids import Grid, GridSchedule, QuadratureRule, get_rule, register_rule
from grids.quadrature import QUADRATURE_RULES, check_n, nearest_valid_n, rule_degree
from spacetime_nets import SpaceTimeNet
from spacetime_nets.cli import main


def _three_eighths(n: int, a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    """Composite Simpson 3/8: panels of three cells, weights 3h/8 (1, 3, 3, 2, ..., 3, 3, 1)."""
    h = (b - a) / (n - 1)
    w = np.full(n, 9.0 * h / 8)
    w[3::3] = 6.0 * h / 8
    w[0] = w[-1] = 3.0 * h / 8
    return np.linspace(a, b, n), w


@pytest.fixture()
def simpson38():
    assert "simpson38" not in QUADRATURE_RULES
    register_rule(
        QuadratureRule(
            "simpson38",
            _three_eighths,
            degree=lambda n: 3,
            valid=lambda n: n >= 4 and (n - 1) % 3 == 0,
            sizes="n = 3k + 1 nodes (4, 7, 10, ...)",
            end_points=True,
            equispaced=True,
        )
    )
    yield "simpson38"
    del QUADRATURE_RULES["simpson38"]


def test_a_registered_rule_builds_grids_of_its_degree(simpson38):
    g = Grid.uniform(10, (0.0, 2.0), simpson38)
    x = g.nodes[:, 0]
    assert rule_degree(simpson38, 10) == 3 and get_rule(simpson38).end_points
    for p in range(4):  # exact up to its degree: int_0^2 x^p dx = 2^(p+1) / (p+1)
        assert float(g.integrate(x**p)) == pytest.approx(2 ** (p + 1) / (p + 1), rel=1e-13)
    assert abs(float(g.integrate(x**4)) - 32 / 5) > 1e-6  # and not beyond it
    assert nearest_valid_n(simpson38, 9) == 10
    with pytest.raises(ValueError, match=r"n: rule 'simpson38' needs n = 3k \+ 1 nodes"):
        check_n(simpson38, 9)


def test_a_registered_rule_serves_schedules_models_and_the_cli(simpson38, capsys):
    sched = GridSchedule.hourglass(10, 4, 2, rule=simpson38)
    assert sched.widths == [10, 4, 10]
    fine = sched.refine(width=2)  # end points kept: (n - 1) 2 + 1 nodes
    assert fine.widths[0] == 19 and fine.grids[0].rule == simpson38
    model = SpaceTimeNet(sched, 2, 3, kernel="basis", modes=3)
    assert model(torch.randn(4, 2)).shape == (4, 3)
    assert (
        main(["schedule", "constant", "--rule", simpson38, "--widths", "10", "--steps", "2"]) == 0
    )
    assert "widths: [10, 10, 10]" in capsys.readouterr().out
