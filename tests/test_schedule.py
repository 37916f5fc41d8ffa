"""Checks of ``grids.GridSchedule``: builders, transfers, refinement, JSON, plot, dtype, errors.

Widths of the named shapes (ramp, hourglass, pyramid) are compared with values worked out by
hand from their documented profiles; times with ``numpy.linspace``; moving-node positions with
a closed-form map; refinement with the widths rule in the ``refine`` docstring. Bad input must
raise ValueError naming the argument and the offending value.
"""

import json

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from grids import Grid, GridSchedule, Transfer, cluster_map

DOM = (-1.5, 2.0)
BOX = [(-1.0, 2.0), (0.5, 1.5)]


def check_times(s, steps, T):
    assert s.num_steps == steps and len(s) == steps
    assert s.times.shape == (steps + 1,)
    assert s.dt.shape == (steps,)
    assert s.T == pytest.approx(T)
    np.testing.assert_allclose(s.times.numpy(), np.linspace(0.0, T, steps + 1), atol=1e-14)
    np.testing.assert_allclose(s.dt.numpy(), np.full(steps, T / steps), rtol=1e-12)


# --------------------------------------------------------------------------- builders


def test_constant():
    s = GridSchedule.constant(9, steps=10, T=2.0, domain=DOM, rule="simpson")
    check_times(s, 10, 2.0)
    assert s.widths == [9] * 11
    assert s.is_constant()
    assert s.domain.bounds == (DOM,) and s.dim == 1
    assert s.dtype == torch.float64
    assert all(p.identity for p in s.transfers())
    x = torch.randn(4, 9, dtype=torch.float64)
    assert torch.equal(s.transfer(3)(x), x)


def test_constant_2d():
    s = GridSchedule.constant((5, 3), steps=4, domain=BOX)
    assert s.widths == [15] * 5 and s.dim == 2
    assert s.grids[0].nodes.shape == (15, 2)


def test_from_widths():
    widths = [4, 8, 8, 3, 16]
    s = GridSchedule.from_widths(widths, T=3.0, domain=DOM)
    check_times(s, 4, 3.0)
    assert s.widths == widths
    assert not s.is_constant()
    for g, n in zip(s.grids, widths, strict=True):
        np.testing.assert_allclose(g.nodes[:, 0].numpy(), np.linspace(*DOM, n), atol=1e-14)


def test_from_widths_given_times():
    t = [0.0, 0.1, 0.5, 2.0]
    s = GridSchedule.from_widths([3, 5, 7, 9], times=t, domain=DOM, rule="simpson")
    np.testing.assert_allclose(s.times.numpy(), t)
    np.testing.assert_allclose(s.dt.numpy(), [0.1, 0.4, 1.5])
    assert s.T == 2.0 and s.widths == [3, 5, 7, 9]


def test_from_widths_2d():
    s = GridSchedule.from_widths([(3, 4), (5, 2), (2, 2)], domain=BOX)
    assert s.widths == [12, 10, 4]
    assert [g.shape for g in s.grids] == [(3, 4), (5, 2), (2, 2)]


def test_from_function():
    s = GridSchedule.from_function(lambda t: 3 + int(round(4 * t)), steps=8, T=2.0, domain=DOM)
    check_times(s, 8, 2.0)
    # t_k = k / 4, n_k = 3 + round(k)
    assert s.widths == [3 + k for k in range(9)]


def test_ramp():
    s = GridSchedule.ramp(5, 45, steps=4, T=2.0, domain=DOM)
    check_times(s, 4, 2.0)
    assert s.widths == [5, 15, 25, 35, 45]


def test_ramp_snaps_to_valid_widths():
    s = GridSchedule.ramp(5, 13, steps=3, rule="simpson")
    # linear profile 5, 7.67, 10.33, 13, rounded to 5, 8, 10, 13, then snapped to odd counts
    # (the larger on a tie): the widths in between snap, the given ones are kept
    assert s.widths == [5, 9, 11, 13]
    # a given width the rule does not take is refused, not moved
    with pytest.raises(ValueError, match=r"n_start: .* simpson rule .* nearest is 5\), got 4"):
        GridSchedule.ramp(4, 12, steps=4, rule="simpson")
    s = GridSchedule.ramp(5, 21, steps=4, rule="boole")
    # 5, 9, 13, 17, 21 are all of the form 4k + 1
    assert s.widths == [5, 9, 13, 17, 21]


def test_ramp_2d():
    s = GridSchedule.ramp((3, 9), (9, 3), steps=2, domain=BOX)
    assert [g.shape for g in s.grids] == [(3, 9), (6, 6), (9, 3)]


def test_hourglass():
    s = GridSchedule.hourglass(33, 9, steps=10, T=4.0, domain=DOM)
    check_times(s, 10, 4.0)
    # profile p = 1 - |2 t / T - 1|; n = 33 - 24 p, rounded
    assert s.widths == [33, 28, 23, 19, 14, 9, 14, 19, 23, 28, 33]
    k = int(np.argmin(s.widths))
    assert float(s.times[k]) == pytest.approx(2.0)  # narrowest at T / 2
    assert s.widths == s.widths[::-1]


def test_pyramid():
    s = GridSchedule.pyramid(64, 8, steps=9, T=1.0, domain=DOM, levels=3)
    check_times(s, 9, 1.0)
    w = s.widths
    assert w[0] == 64 and w[-1] == 8
    assert all(a >= b for a, b in zip(w[:-1], w[1:], strict=True))  # non-increasing
    assert sorted(set(w), reverse=True) == [64, 23, 8]  # geometric: sqrt(64 * 8) ~ 22.6
    assert w.count(64) == 3 and w.count(23) == 3


def test_pyramid_levels_must_be_positive():
    with pytest.raises(ValueError, match=r"levels: expected a positive int, got 0"):
        GridSchedule.pyramid(64, 8, steps=9, levels=0)


def test_moving_default_map():
    s = GridSchedule.moving(17, steps=6, T=1.5, domain=DOM)
    check_times(s, 6, 1.5)
    assert s.widths == [17] * 7
    # tau = 0: equispaced; end points stay on the boundary; nodes cluster towards the centre
    np.testing.assert_allclose(s.grids[0].nodes[:, 0].numpy(), np.linspace(*DOM, 17), atol=1e-14)
    centre_gap = []
    for g in s.grids:
        x = g.nodes[:, 0].numpy()
        assert x[0] == pytest.approx(DOM[0], abs=1e-14)
        assert x[-1] == pytest.approx(DOM[1], abs=1e-14)
        assert np.all(np.diff(x) > 0)
        assert float(g.weights.sum()) == pytest.approx(3.5, rel=1e-13)
        centre_gap.append(x[9] - x[8])
    assert all(a > b for a, b in zip(centre_gap[:-1], centre_gap[1:], strict=True))
    assert not s.is_constant()


def test_moving_custom_map_and_widths():
    lo, hi = 0.0, 2.0

    def phi(tau, s):
        u = (s - lo) / (hi - lo)
        return lo + (hi - lo) * u ** (1.0 + tau)

    widths = [5, 9, 7, 3]
    s = GridSchedule.moving(widths, T=1.0, domain=(lo, hi), phi=phi)
    assert s.widths == widths and s.num_steps == 3
    for k, (g, n) in enumerate(zip(s.grids, widths, strict=True)):
        ref = 2.0 * np.linspace(0.0, 1.0, n) ** (1.0 + k / 3)
        np.testing.assert_allclose(g.nodes[:, 0].numpy(), ref, atol=1e-14)
        # non-uniform trapezoid weights: compare integral of x with numpy.trapezoid
        x = g.nodes[:, 0].numpy()
        assert float(g.integrate(g.nodes[:, 0])) == pytest.approx(np.trapezoid(x, x))


def test_moving_2d():
    s = GridSchedule.moving([(5, 4)] * 4, domain=BOX)
    assert s.widths == [20] * 4 and s.dim == 2
    for g in s.grids:
        assert float(g.weights.sum()) == pytest.approx(3.0, rel=1e-13)


@pytest.mark.parametrize("center", [0.5, 0.3, 0.8])
def test_cluster_map_fixes_end_points(center):
    phi = cluster_map(0.6, center)
    s = torch.linspace(-1.5, 2.0, 11, dtype=torch.float64)
    for tau in (0.0, 0.5, 1.0):
        x = phi(tau, s)
        assert float(x[0]) == pytest.approx(-1.5, abs=1e-14)
        assert float(x[-1]) == pytest.approx(2.0, abs=1e-14)
        assert bool((x[1:] > x[:-1]).all())
    # the map gathers nodes on the side of the chosen centre (exactly at it for 0.5)
    x = phi(1.0, torch.linspace(0.0, 1.0, 101, dtype=torch.float64)).numpy()
    j = int(np.argmin(np.diff(x)))
    densest = (x[j] + x[j + 1]) / 2
    if center == 0.5:
        assert abs(densest - 0.5) < 0.01
    else:
        assert np.sign(densest - 0.5) == np.sign(center - 0.5)
    GridSchedule.moving(9, steps=4, phi=phi)  # a valid schedule for any centre


def test_cluster_map_rejects_bad_strength():
    with pytest.raises(ValueError, match=r"strength: .*got 1\.0"):
        cluster_map(1.0)


def test_moving_phi_errors_name_step():
    def bad(tau, s):
        return s * (1.0 + tau)  # leaves the domain for tau > 0

    with pytest.raises(ValueError, match=r"phi: at step 1 .*lies outside the domain"):
        GridSchedule.moving(5, steps=2, phi=bad)


def test_moving_errors():
    with pytest.raises(ValueError, match=r"steps: required when widths is a single int"):
        GridSchedule.moving(5)
    with pytest.raises(ValueError, match=r"widths: need steps \+ 1 = 4 entries, got 3"):
        GridSchedule.moving([5, 5, 5], steps=3)


# --------------------------------------------------------------------------- transfers


@pytest.mark.parametrize("kind", ["linear", "nearest", "l2"])
def test_transfer_cached_and_shaped(kind):
    s = GridSchedule.from_widths([4, 9, 9, 3, 6], domain=DOM, transfer_kind=kind)
    p = s.transfer(0)
    assert isinstance(p, Transfer) and p.kind == kind
    assert s.transfer(0) is p
    ps = s.transfers()
    assert len(ps) == 4 and ps[0] is p
    assert all(a is b for a, b in zip(ps, s.transfers(), strict=True))
    for k, q in enumerate(ps):
        assert q.matrix().shape == (s.widths[k + 1], s.widths[k])
        assert q(torch.ones(s.widths[k], dtype=torch.float64)).shape == (s.widths[k + 1],)
    assert ps[1].identity and not ps[0].identity


def test_transfer_index_out_of_range():
    s = GridSchedule.constant(5, steps=3)
    for k in (-1, 3):
        with pytest.raises(ValueError, match=rf"k: expected 0 <= k < 3, got {k}"):
            s.transfer(k)


# --------------------------------------------------------------------------- refine


@pytest.mark.parametrize(
    "rule, widths, fine",
    [
        ("trapezoid", [3, 5, 2], lambda n, w: (n - 1) * w + 1),
        ("simpson", [3, 5, 9], lambda n, w: (n - 1) * w + 1),
        ("boole", [5, 9, 5], lambda n, w: (n - 1) * w + 1),
        ("midpoint", [3, 5, 2], lambda n, w: n * w),
        ("gauss_legendre", [3, 5, 2], lambda n, w: n * w),
    ],
)
@pytest.mark.parametrize("width, depth", [(2, 2), (3, 1), (1, 3), (2, 3)])
def test_refine_uniform(rule, widths, fine, width, depth):
    s = GridSchedule.from_widths(widths, T=2.0, domain=DOM, rule=rule, times=[0.0, 0.5, 2.0])
    r = s.refine(width=width, depth=depth)
    K = s.num_steps
    assert r.num_steps == K * depth
    # substeps inside step k use refined grid k; the last time carries refined grid K
    expected = [fine(widths[k], width) for k in range(K) for _ in range(depth)]
    expected.append(fine(widths[-1], width))
    assert r.widths == expected
    # the refined times contain the original ones, and split every step into equal substeps
    np.testing.assert_allclose(r.times.numpy()[::depth], s.times.numpy(), rtol=0, atol=1e-14)
    dt = np.repeat(s.dt.numpy() / depth, depth)
    np.testing.assert_allclose(r.dt.numpy(), dt, rtol=1e-12)
    for g in r.grids:
        assert g.rule == rule and g.domain == s.domain


def test_refine_node_grids_split_gaps():
    s = GridSchedule.moving([4, 6], T=1.0, domain=DOM)
    r = s.refine(width=3, depth=2)
    assert r.widths == [10, 10, 16]
    for coarse, fine in ((s.grids[0], r.grids[0]), (s.grids[1], r.grids[2])):
        x, y = coarse.nodes[:, 0].numpy(), fine.nodes[:, 0].numpy()
        np.testing.assert_allclose(y[::3], x, atol=1e-14)  # original nodes kept
        ref = np.concatenate(
            [np.linspace(a, b, 4)[:-1] for a, b in zip(x[:-1], x[1:], strict=True)]
        )
        np.testing.assert_allclose(y[:-1], ref, atol=1e-14)
    np.testing.assert_allclose(r.times.numpy(), [0.0, 0.5, 1.0], atol=1e-15)


def test_refine_2d_and_identity():
    s = GridSchedule.from_widths([(3, 5), (5, 2)], domain=BOX)
    r = s.refine(2, 1)
    assert [g.shape for g in r.grids] == [(5, 9), (9, 3)]
    same = s.refine(1, 1)
    assert same.same_as(s)


@pytest.mark.parametrize(
    "name, kw, shown", [("width", {"width": 0}, "0"), ("depth", {"depth": 1.5}, "1.5")]
)
def test_refine_bad_factors(name, kw, shown):
    s = GridSchedule.constant(5, steps=2)
    with pytest.raises(ValueError, match=rf"{name}: expected a positive int, got {shown}"):
        s.refine(**kw)


# --------------------------------------------------------------------------- JSON


SCHEDULES = {
    "constant": lambda: GridSchedule.constant(9, steps=5, T=2.0, domain=DOM, rule="simpson"),
    "widths_l2": lambda: GridSchedule.from_widths([4, 8, 3], domain=DOM, transfer_kind="l2"),
    "gauss_2d": lambda: GridSchedule.ramp(
        (3, 4), (6, 2), steps=3, domain=BOX, rule="gauss_legendre"
    ),
    "times": lambda: GridSchedule.from_widths([3, 5, 7], times=[0.0, 0.1, 0.7], domain=DOM),
    "moving": lambda: GridSchedule.moving(
        [5, 9, 17, 9], T=1.3, domain=DOM, transfer_kind="nearest"
    ),
    "moving_2d": lambda: GridSchedule.moving([(6, 5)] * 4, domain=BOX),
}


def assert_exactly_equal(a, b):
    assert a.same_as(b, tol=0.0)
    assert a.transfer_kind == b.transfer_kind
    assert torch.equal(a.times, b.times)
    for ga, gb in zip(a.grids, b.grids, strict=True):
        assert ga.rule == gb.rule and ga.is_uniform == gb.is_uniform
        assert torch.equal(ga.nodes, gb.nodes)
        assert torch.equal(ga.weights, gb.weights)


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_json_round_trip_text(name):
    s = SCHEDULES[name]()
    text = s.to_json()
    doc = json.loads(text)
    assert doc["version"] == 1 and len(doc["grid_index"]) == s.num_steps + 1
    r = GridSchedule.from_json(text)
    assert r.same_as(s)
    assert r.widths == s.widths and r.transfer_kind == s.transfer_kind
    assert_exactly_equal(r, s)  # floats survive JSON exactly, moving nodes included


@pytest.mark.parametrize("name", ["constant", "moving"])
def test_json_round_trip_file(name, tmp_path):
    s = SCHEDULES[name]()
    path = tmp_path / "schedule.json"
    text = s.to_json(path)
    assert path.read_text() == text
    for src in (path, str(path)):
        assert_exactly_equal(GridSchedule.from_json(src), s)


def test_json_shares_repeated_grids():
    s = GridSchedule.constant(9, steps=50)
    doc = json.loads(s.to_json())
    assert len(doc["grids"]) == 1 and doc["grid_index"] == [0] * 51


def test_json_changed_schedule_is_not_same():
    s = SCHEDULES["moving"]()
    doc = json.loads(s.to_json())
    doc["grids"][1]["nodes"][0][2] += 1e-3
    assert not GridSchedule.from_json(json.dumps(doc)).same_as(s)


def _doc(**changes):
    doc = json.loads(GridSchedule.from_widths([4, 8, 3], domain=DOM).to_json())
    doc.update(changes)
    return json.dumps(doc)


def test_json_malformed():
    with pytest.raises(ValueError, match=r"source: malformed JSON \(.* at line 1\)"):
        GridSchedule.from_json('{"version": 1, "times": [0, 1')


def test_json_not_an_object_or_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"source: no such file and not JSON text: .*nope\.json"):
        GridSchedule.from_json(str(tmp_path / "nope.json"))
    with pytest.raises(ValueError, match=r"source: no such file .*'\[1, 2\]'"):
        GridSchedule.from_json("[1, 2]")


@pytest.mark.parametrize("version, shown", [(2, "2"), ("1", "'1'"), (None, "None")])
def test_json_wrong_version(version, shown):
    with pytest.raises(ValueError, match=rf"version: expected 1, got {shown}"):
        GridSchedule.from_json(_doc(version=version))


@pytest.mark.parametrize(
    "entry, msg",
    [
        ({"domain": [[-1.5, 2.0]], "n": 4, "rule": "simpson"}, r"n: rule 'simpson'.*got 4"),
        ({"domain": [[-1.5, 2.0]], "n": 0}, r"n: expected a positive int, got 0"),
        ({"domain": [[2.0, -1.5]], "n": 5}, r"domain: side 0 is reversed.*\(2\.0, -1\.5\)"),
        ({"domain": [[-1.5, 2.0]], "nodes": [[0.0, 3.0]]}, r"nodes: node 1 = 3\.0 lies outside"),
        ({"domain": [[-1.5, 2.0]], "n": 5, "m": 1}, r"unknown keys \['m'\]"),
        ({"domain": [[-1.5, 2.0]], "n": 5, "rule": "foo"}, r"rule: expected one of .*got 'foo'"),
        ("oops", r"expected an object .*got 'oops'"),
    ],
)
def test_json_bad_grid_entry(entry, msg):
    doc = json.loads(_doc())
    doc["grids"][1] = entry
    with pytest.raises(ValueError, match=rf"grids\[1\].*{msg}"):
        GridSchedule.from_json(json.dumps(doc))


def test_json_bad_index_and_times():
    with pytest.raises(
        ValueError, match=r"grid_index: expected indices into grids, got \[0, 7, 2\]"
    ):
        GridSchedule.from_json(_doc(grid_index=[0, 7, 2]))
    with pytest.raises(ValueError, match=r"times: must increase, got t\[2\]=0\.5 <= t\[1\]=0\.5"):
        GridSchedule.from_json(_doc(times=[0.0, 0.5, 0.5]))
    with pytest.raises(ValueError, match=r"source: missing key 'times'"):
        doc = json.loads(_doc())
        del doc["times"]
        GridSchedule.from_json(json.dumps(doc))


# --------------------------------------------------------------------------- plot, to


@pytest.mark.parametrize("name", ["widths_l2", "moving", "moving_2d"])
def test_plot(name):
    s = SCHEDULES[name]()
    fig = s.plot()
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_ydata(), s.widths)


def test_to_float32():
    s = GridSchedule.from_widths([4, 8, 3], T=2.0, domain=DOM, transfer_kind="l2")
    p0 = s.transfer(0)
    f = s.to(dtype=torch.float32)
    assert f.dtype == torch.float32 and f.times.dtype == torch.float32
    assert all(g.nodes.dtype == torch.float32 and g.weights.dtype == torch.float32 for g in f.grids)
    assert f.widths == s.widths and f.transfer_kind == "l2"
    assert f.transfer(0).coeff.dtype == torch.float32  # cached transfer converted
    assert f.transfer(1).coeff.dtype == torch.float32  # new transfer built in float32
    x = torch.rand(4)
    torch.testing.assert_close(f.transfer(0)(x), (p0.matrix() @ x.double()).float())
    np.testing.assert_allclose(f.times.numpy(), [0.0, 1.0, 2.0])
    assert s.dtype == torch.float64 and s.grids[0].nodes.dtype == torch.float64
    r = f.refine(2, 2)
    assert r.dtype == torch.float32 and r.grids[-1].weights.dtype == torch.float32


def test_summary_and_repr():
    s = GridSchedule.from_widths([4, 8, 3], domain=DOM)
    text = s.summary()
    assert "K=2" in text and "4 ->     8" in text and "8 ->     3" in text
    assert "widths=[4, 8, 3]" in repr(s)


# --------------------------------------------------------------------------- bad input


def test_times_not_increasing():
    g = Grid.uniform(5)
    with pytest.raises(ValueError, match=r"times: must increase, got t\[2\]=0\.25 <= t\[1\]=0\.5"):
        GridSchedule([0.0, 0.5, 0.25], [g, g, g])


def test_times_not_starting_at_zero():
    g = Grid.uniform(5)
    with pytest.raises(ValueError, match=r"times: must start at t\[0\]=0, got t\[0\]=0\.1"):
        GridSchedule([0.1, 0.5], [g, g])
    with pytest.raises(ValueError, match=r"times: must start at t\[0\]=0, got t\[0\]=0\.1"):
        GridSchedule.from_widths([5, 5], times=[0.1, 0.5])


def test_times_nan_and_too_short():
    g = Grid.uniform(5)
    with pytest.raises(ValueError, match=r"times: t\[1\]=nan is not finite"):
        GridSchedule([0.0, float("nan")], [g, g])
    with pytest.raises(
        ValueError, match=r"times: expected at least 2 increasing times, got shape \(1,\)"
    ):
        GridSchedule([0.0], [g])


def test_grid_count_and_domain_mismatch():
    g = Grid.uniform(5)
    with pytest.raises(ValueError, match=r"grids: need one grid per time \(3 for 2 steps\), got 2"):
        GridSchedule([0.0, 0.5, 1.0], [g, g])
    with pytest.raises(ValueError, match=r"grids\[1\]: every grid must share one domain"):
        GridSchedule([0.0, 1.0], [g, Grid.uniform(5, (0, 2))])
    with pytest.raises(ValueError, match=r"grids\[0\]: expected a grids.Grid, got int"):
        GridSchedule([0.0, 1.0], [3, g])


def test_bad_transfer_kind():
    with pytest.raises(ValueError, match=r"transfer_kind: expected one of .*got 'cubic'"):
        GridSchedule.constant(5, steps=2, transfer_kind="cubic")


@pytest.mark.parametrize(
    "widths, k, shown", [([4, 0, 4], 1, "0"), ([4, 4, -2], 2, "-2"), ([2.5, 4], 0, "2.5")]
)
def test_widths_not_positive(widths, k, shown):
    with pytest.raises(ValueError, match=rf"widths: entry {k} must be a positive int, got {shown}"):
        GridSchedule.from_widths(widths)


def test_widths_invalid_for_rule_named():
    with pytest.raises(
        ValueError, match=r"widths: entry 1: n: rule 'simpson'.*got 4; nearest valid n is 5"
    ):
        GridSchedule.from_widths([5, 4, 5], rule="simpson")
    with pytest.raises(ValueError, match=r"widths: need at least 2 entries .*got \[5\]"):
        GridSchedule.from_widths([5])


@pytest.mark.parametrize(
    "build",
    [
        lambda steps: GridSchedule.constant(5, steps=steps),
        lambda steps: GridSchedule.from_function(lambda t: 5, steps=steps),
        lambda steps: GridSchedule.ramp(3, 9, steps=steps),
        lambda steps: GridSchedule.hourglass(9, 3, steps=steps),
        lambda steps: GridSchedule.pyramid(9, 3, steps=steps),
        lambda steps: GridSchedule.moving(5, steps=steps),
    ],
)
@pytest.mark.parametrize("steps, shown", [(0, "0"), (-1, "-1"), (2.0, "2.0")])
def test_bad_steps(build, steps, shown):
    with pytest.raises(ValueError, match=rf"steps: expected a positive int, got {shown}"):
        build(steps)


@pytest.mark.parametrize(
    "T, shown", [(0.0, "0.0"), (-1, "-1.0"), (float("inf"), "inf"), (float("nan"), "nan")]
)
@pytest.mark.parametrize(
    "build",
    [
        lambda T: GridSchedule.constant(5, steps=2, T=T),
        lambda T: GridSchedule.from_widths([5, 5], T=T),
        lambda T: GridSchedule.hourglass(9, 3, steps=4, T=T),
        lambda T: GridSchedule.moving(5, steps=2, T=T),
    ],
)
def test_bad_horizon(build, T, shown):
    with pytest.raises(ValueError, match=rf"T: expected a positive finite horizon, got {shown}"):
        build(T)


def test_shape_bad_counts():
    with pytest.raises(ValueError, match=r"n_start: expected positive ints, got 0"):
        GridSchedule.ramp(0, 9, steps=2)
    with pytest.raises(ValueError, match=r"n_end: expected 2 counts, got \(3, 3, 3\)"):
        GridSchedule.ramp((3, 3), (3, 3, 3), steps=2, domain=BOX)
