"""Refusals of the model constructors and forward passes: every bad argument of
``SpaceTimeNet`` raises one ValueError in the library's wording ``"<argument>: expected
<what>, got <value>"``, options of another variant are refused rather than ignored, a model
too large for memory is refused before anything is allocated, and an input on another device
than the model is refused from its metadata.

References: the values the docstring states (modes 8 / 3, radius 0.1, pointwise per kernel,
the ``legendre`` basis) given explicitly, models built from Python ints, and the parameter
bytes that torch actually allocates.
"""

from __future__ import annotations

import copy
import math
import re

import numpy as np
import pytest
import torch

from grids import Grid, GridSchedule
from spacetime_nets import NeuralODE, SpaceTimeNet, runs
from spacetime_nets.kernels import BasisKernel, ConvKernel, NeuralKernel
from spacetime_nets.models import KERNEL_OPTIONS, base

SCHED = GridSchedule.hourglass(16, 8, 2)  # resolves the basis kernel's 8 default modes
LINE = GridSchedule.constant(16, 2)  # trapezoid, 16 nodes on [0, 1]: h = 1/15
BOX = GridSchedule.constant((8, 8), 2, domain=((0, 1), (0, 1)))
WIDE = GridSchedule.constant((9, 9), 2, domain=((0.0, 1.0), (0.0, 2.0)))  # extents 1 and 2


def scalar(**kw) -> SpaceTimeNet:
    return SpaceTimeNet(SCHED, **{"in_features": 2, "out_features": 3, **kw})


def conv(**kw) -> SpaceTimeNet:
    args = {"in_features": None, "out_features": 3, "kernel": "conv", "channels": 4}
    return SpaceTimeNet(LINE, **{**args, "lift": "identity", "readout": "mean", **kw})


def spectral(**kw) -> SpaceTimeNet:
    args = {"in_features": None, "out_features": 3, "kernel": "spectral", "channels": 4}
    return SpaceTimeNet(LINE, **{**args, "lift": "identity", "readout": "mean", **kw})


def same_parameters(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0, msg=key)


# --------------------------------------------------------------------------- bad values
BAD_VALUES = [
    # sizes: ints >= 1 only (no bools, floats, NaN or strings)
    *[
        (lambda v=v, a=a: scalar(**{a: v}), rf"^{a}: expected a positive int, got {shown}$")
        for a in ("in_features", "out_features")
        for v, shown in [("a", "'a'"), (True, "True"), (0, "0"), (-1, "-1"), (1.5, "1.5")]
    ],
    (
        lambda: scalar(out_features=float("nan")),
        r"^out_features: expected a positive int, got nan$",
    ),
    # init_scale: finite and >= 0
    *[
        (lambda v=v: scalar(init_scale=v), rf"^init_scale: expected a finite number >= 0, got {s}$")
        for v, s in [(-1.0, "-1.0"), (float("nan"), "nan"), (float("inf"), "inf"), ("1", "'1'")]
    ],
    (lambda: scalar(init_scale=True), r"^init_scale: expected a finite number >= 0, got True$"),
    # seed: an int in [0, 2**63)
    *[
        (lambda v=v: scalar(seed=v), rf"^seed: expected an int in \[0, 2\*\*63\), got {s}$")
        for v, s in [("a", "'a'"), (1.5, "1.5"), (-1, "-1"), (True, "True"), (2**70, str(2**70))]
    ],
    # modes and basis
    *[
        (lambda v=v: scalar(kernel="basis", modes=v), rf"^modes: expected an int >= 1, got {s}$")
        for v, s in [("a", "'a'"), (0, "0"), (1.5, "1.5"), (True, "True")]
    ],
    (
        lambda: scalar(kernel="basis", basis="bogus"),
        r"^basis: expected one of legendre, fourier; got 'bogus'$",
    ),
    # flags: True or False (a NumPy bool too), never read by truth value
    *[
        (lambda v=v, a=a: conv(**{a: v}), rf"^{a}: expected True or False, got {s}$")
        for a in ("pointwise", "allow_underresolved", "coordinates")
        for v, s in [("yes", "'yes'"), (1, "1"), ("no", "'no'")]
    ],
    (lambda: conv(allow_underresolved=None), r"^allow_underresolved: expected True or False"),
    # the cells lift's in_shape: a tuple of d ints >= 1 with the right product
    *[
        (
            lambda v=v: SpaceTimeNet(BOX, 16, 3, lift="cells", in_shape=v),
            rf"^in_shape: expected a tuple of 2 ints >= 1 \(cells per axis\), got {s}$",
        )
        for v, s in [(0, "0"), (-1, "-1"), ("a", "'a'"), ((4, "a"), r"\(4, 'a'\)")]
    ],
    (
        lambda: SpaceTimeNet(BOX, 16, 3, lift="cells", in_shape=(4, 5)),
        r"^in_shape: expected 2 positive cell counts with product 16 .*got \(4, 5\)$",
    ),
    # the bottleneck's hidden grid
    *[
        (
            lambda v=v: scalar(form="bottleneck", hidden_width=v),
            rf"^hidden_width: expected an int >= 1, got {s}$",
        )
        for v, s in [(0, "0"), ("a", "'a'"), (-2, "-2"), (1.5, "1.5"), ((4, 4), r"\(4, 4\)")]
    ],
    (
        lambda: SpaceTimeNet(BOX, 16, 3, kernel="nodal", form="bottleneck", hidden_width=4),
        r"^hidden_width: expected a tuple of 2 ints >= 1 \(nodes per axis\), got 4$",
    ),
]


@pytest.mark.parametrize("build, message", BAD_VALUES)
def test_a_bad_value_is_refused_in_one_wording(build, message):
    with pytest.raises(ValueError, match=message):
        build()


# --------------------------------------------------------------------------- other variants
INAPPLICABLE = [
    (lambda: scalar(kernel="nodal", radius=0.1), "radius", "conv", "kernel='nodal'"),
    (lambda: scalar(kernel="basis", radius=0.1), "radius", "conv", "kernel='basis'"),
    (lambda: scalar(kernel="neural", radius=0.1), "radius", "conv", "kernel='neural'"),
    (lambda: spectral(radius=0.1), "radius", "conv", "kernel='spectral'"),
    (
        lambda: scalar(kernel="nodal", radius_spacings=2.0),
        "radius_spacings",
        "conv",
        "kernel='nodal'",
    ),
    (lambda: spectral(radius_spacings=2.0), "radius_spacings", "conv", "kernel='spectral'"),
    (
        lambda: scalar(kernel="nodal", modes=4),
        "modes",
        "basis, neural, conv and spectral",
        "kernel='nodal'",
    ),
    (lambda: scalar(kernel="neural", basis="fourier"), "basis", "basis", "kernel='neural'"),
    (lambda: scalar(kernel="nodal", basis="legendre"), "basis", "basis", "kernel='nodal'"),
    (lambda: conv(basis="fourier"), "basis", "basis", "kernel='conv'"),
    (
        lambda: scalar(kernel="basis", pointwise=True),
        "pointwise",
        "conv and spectral",
        "kernel='basis'",
    ),
    (
        lambda: scalar(kernel="nodal", pointwise=False),
        "pointwise",
        "conv and spectral",
        "kernel='nodal'",
    ),
    (
        lambda: scalar(kernel="nodal", form="bottleneck", modes=4),
        "modes",
        "basis, neural, conv and spectral",
        "kernel='nodal' and kernel2='nodal'",
    ),
    (
        lambda: conv(kernel=ConvKernel(channels=4, pieces=2), radius=0.2),
        "radius",
        "conv",
        "kernel=<a built ConvKernel>; a built kernel took its options when it was made",
    ),
]


@pytest.mark.parametrize("build, option, kernels, variant", INAPPLICABLE)
def test_an_option_no_kernel_reads_is_refused_naming_it_and_the_kernel(
    build, option, kernels, variant
):
    want = (
        rf"^{option}: applies to {kernels} kernels only, got {option}=.* with "
        rf"{re.escape(variant)} \(leave {option} out\)$"
    )
    with pytest.raises(ValueError, match=want):
        build()


@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda: scalar(hidden_width=4),
            r"^hidden_width: applies to form='bottleneck' only, got hidden_width=4 with "
            r"form='inside' \(leave hidden_width out\)$",
        ),
        (
            lambda: scalar(kernel2="basis", form="inside"),
            r"^kernel2: applies to form='bottleneck' only, got kernel2='basis' with "
            r"form='inside' \(leave kernel2 out\)$",
        ),
        (
            lambda: scalar(kernel2=BasisKernel(), form="inside"),
            r"^kernel2: applies to form='bottleneck' only, got kernel2=<a built BasisKernel>",
        ),
        (
            lambda: conv(in_shape=(16,)),
            r"^in_shape: applies to the cells lift only, got in_shape=\(16,\) with "
            r"lift='identity' \(leave in_shape out\)$",
        ),
        (
            lambda: scalar(lift="linear", in_shape=(2,)),
            r"^in_shape: applies to the cells lift only, got in_shape=\(2,\) with "
            r"lift='linear'",
        ),
        (
            lambda: scalar(head_hidden=8),
            r"^head_hidden: applies to readout='mean' or 'pool' only",
        ),
    ],
)
def test_options_of_another_form_lift_or_readout_are_refused(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_an_option_is_accepted_where_a_kernel_reads_it_and_takes_effect():
    # modes: the basis kernel's functions per axis, the conv and spectral kernels' modes, the
    # neural kernel's lift and readout basis (A = modes lift functions, so [in, A])
    assert scalar(kernel="basis", modes=4).kernel.modes == 4
    assert conv(modes=5).kernel.modes == 5
    assert spectral(modes=4).kernel.modes == (4,)
    neural = scalar(kernel="neural", lift="linear", modes=5)
    assert tuple(neural.lift_coeff.shape) == (2, 5)
    assert tuple(neural.readout_coeff.shape) == (3, 5)
    # basis
    assert scalar(kernel="basis", basis="fourier").kernel.basis == "fourier"
    # radius, radius_spacings: r_k = s h_k
    assert conv(radius=0.25).kernel.radii == [(0.25,), (0.25,)]
    assert conv(radius_spacings=2.0).kernel.radii[0][0] == pytest.approx(2.0 / 15)
    # pointwise, against the opposite of each kernel's default
    assert conv(pointwise=True).kernel.point is not None
    assert spectral(pointwise=False).kernel.point is None
    # a bottleneck: an option one of its two kernels reads
    mixed = scalar(kernel="nodal", kernel2="basis", form="bottleneck", modes=4)
    assert mixed.kernel2.modes == 4
    # the other form / lift / readout options where they apply
    assert scalar(form="bottleneck", hidden_width=5).disc.widths[0] == 16
    assert SpaceTimeNet(BOX, 16, 3, lift="cells", in_shape=(2, 8)).in_shape == (2, 8)
    assert conv(head_hidden=6).head_weight.shape == (6, 4)


def test_the_option_table_lives_in_models_and_runs_uses_the_same_object():
    assert runs.KERNEL_OPTIONS is KERNEL_OPTIONS
    assert KERNEL_OPTIONS["radius"] == ("conv",)
    assert KERNEL_OPTIONS["radius_spacings"] == ("conv",)
    assert set(KERNEL_OPTIONS["modes"]) == {"basis", "neural", "conv", "spectral"}
    assert KERNEL_OPTIONS["basis"] == ("basis",)
    assert set(KERNEL_OPTIONS["pointwise"]) == {"conv", "spectral"}
    # ModelOptions refuses what the model refuses
    with pytest.raises(ValueError, match="modes: applies to .* kernels only"):
        runs.ModelOptions(kernel="nodal", modes=4).check()


# --------------------------------------------------------------------------- conv radius bounds
@pytest.mark.parametrize(
    "kw, message",
    [
        (
            {"radius": 1e300},
            r"^radius: expected at most the domain's extent on each axis \(L = 1 on axis 0\), "
            r"got 1e\+300$",
        ),
        ({"radius": 1.01}, r"^radius: expected at most the domain's extent .*got 1.01$"),
        ({"radius": [0.2, 1.5]}, r"^radius: .*\(L = 1 on axis 0\), got \[0.2, 1.5\]$"),
        ({"radius_spacings": 1e300}, r"^radius_spacings: expected at most 16, the most nodes"),
        ({"radius_spacings": 16.5}, r"^radius_spacings: expected at most 16, .*got 16.5$"),
        ({"radius": -0.1}, r"^radius: expected positive finite numbers, got -0.1$"),
        ({"radius": float("nan")}, r"^radius: expected positive finite numbers, got nan$"),
        ({"radius_spacings": 0.0}, r"^radius_spacings: expected a positive finite number"),
        ({"radius_spacings": "3"}, r"^radius_spacings: expected a positive number, got '3'$"),
        ({"radius": 0.1, "radius_spacings": 2.0}, "radius_spacings: give radius or radius_sp"),
    ],
)
def test_conv_radius_is_bounded_by_the_box_and_the_grid(kw, message):
    with pytest.raises(ValueError, match=message):
        conv(**kw)


def test_conv_radius_up_to_the_bounds_is_accepted():
    assert conv(radius=1.0).kernel.radii[0] == (1.0,)  # the extent itself
    m = conv(radius_spacings=16)  # as many taps per side as the grid has nodes
    assert m.kernel.radii[0][0] == pytest.approx(16 / 15)
    # per axis on a box of extents 1 and 2: axis 1 takes up to 2
    box = SpaceTimeNet(
        WIDE, None, 2, kernel="conv", channels=2, lift="identity", readout="mean", radius=(1, 2)
    )
    assert box.kernel.radii[0] == (1.0, 2.0)
    with pytest.raises(ValueError, match=r"\(L = 2 on axis 1\), got \(0.5, 2.5\)$"):
        SpaceTimeNet(
            WIDE,
            None,
            2,
            kernel="conv",
            channels=2,
            lift="identity",
            readout="mean",
            radius=(0.5, 2.5),
        )


# --------------------------------------------------------------------------- memory bound
@pytest.mark.parametrize(
    "build, argument, value",
    [
        (lambda: scalar(in_features=10**12), "in_features", "in_features=1000000000000"),
        (lambda: scalar(out_features=10**12), "out_features", "out_features=1000000000000"),
        (lambda: conv(channels=2**40), "channels", f"channels={2**40}"),
        (lambda: scalar(kernel="basis", modes=10**6), "modes", "modes=1000000"),
        (
            lambda: SpaceTimeNet(GridSchedule.constant(10**5, 2), 2, 3),
            "schedule",
            r"a schedule of widths \[100000, 100000, 100000\]",
        ),
    ],
)
def test_a_model_too_large_for_memory_is_refused_naming_the_argument(build, argument, value):
    message = (
        rf"^{argument}: expected a model that fits in memory \(parameters and one sample's "
        rf"states within spacetime_nets.models.base.MAX_MODEL_BYTES = {base.MAX_MODEL_BYTES} "
        rf"bytes\), got {value}: about .* bytes in all"
    )
    with pytest.raises(ValueError, match=message):
        build()


SIZED = {
    "nodal": lambda: scalar(),
    "nodal linear rk4": lambda: scalar(lift="linear", method="rk4"),
    "nodal bottleneck": lambda: scalar(form="bottleneck", hidden_width=5),
    "basis": lambda: scalar(kernel="basis", lift="linear"),
    "neural channels": lambda: SpaceTimeNet(
        SCHED, None, 3, kernel="neural", channels=3, lift="identity", readout="mean"
    ),
    "conv pointwise head": lambda: conv(pointwise=True, head_hidden=7),
    "spectral": lambda: spectral(modes=4),
    "spectral 2-D function": lambda: SpaceTimeNet(
        BOX, None, 2, kernel="spectral", channels=3, lift="identity", readout="function", modes=3
    ),
}


@pytest.mark.parametrize("name", list(SIZED))
def test_the_memory_bound_counts_at_least_every_parameter(name, monkeypatch):
    """With the bound one byte below what torch allocates for the parameters, the model is
    refused before it is built (the estimate adds the states on top); with the default it is
    built."""
    model = SIZED[name]()
    nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
    monkeypatch.setattr(base, "MAX_MODEL_BYTES", nbytes - 1)
    with pytest.raises(ValueError, match=r"expected a model that fits in memory"):
        SIZED[name]()
    monkeypatch.setattr(base, "MAX_MODEL_BYTES", 2 * nbytes + 10**6)
    SIZED[name]()


# --------------------------------------------------------------------------- NumPy sizes
def test_numpy_integers_build_the_same_model_as_python_ints():
    i64 = np.int64
    a = scalar(kernel="basis", lift="linear", modes=4, seed=7)
    b = SpaceTimeNet(
        SCHED, i64(2), i64(3), kernel="basis", lift="linear", modes=i64(4), seed=i64(7)
    )
    same_parameters(a, b)
    assert type(b.in_features) is int and type(b.out_features) is int and type(b.modes) is int
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
    # channel models: channels, in_channels, head_hidden; the bottleneck's hidden width
    c1 = conv(channels=4, in_channels=1, head_hidden=5, seed=3, in_features=16)
    c2 = conv(channels=i64(4), in_channels=i64(1), head_hidden=i64(5), seed=i64(3))
    same_parameters(c1, c2)
    xc = torch.randn(4, 16, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(c1(xc), c2(xc), rtol=0, atol=0)
    h1 = scalar(form="bottleneck", hidden_width=5, seed=1)
    h2 = scalar(form="bottleneck", hidden_width=i64(5), seed=1)
    same_parameters(h1, h2)
    assert h2.hidden_width == 5 and type(h2.hidden_width) is int
    # a NumPy bool is a bool
    assert conv(pointwise=np.bool_(True)).kernel.point is not None


def test_a_different_seed_or_size_gives_a_different_model():
    """The comparisons above can fail: another seed or another modes changes the model."""
    a = scalar(kernel="basis", lift="linear", modes=4, seed=7)
    b = scalar(kernel="basis", lift="linear", modes=4, seed=8)
    assert not torch.equal(a.kernel.coeff, b.kernel.coeff)
    assert scalar(kernel="basis", modes=6, seed=7).kernel.coeff.shape != a.kernel.coeff.shape


# --------------------------------------------------------------------------- variant defaults
@pytest.mark.parametrize(
    "build, explicit",
    [
        (lambda **kw: scalar(kernel="basis", lift="linear", **kw), {"modes": 8}),
        (lambda **kw: scalar(kernel="basis", **kw), {"basis": "legendre"}),
        (lambda **kw: scalar(kernel="neural", lift="linear", **kw), {"modes": 8}),
        (lambda **kw: conv(**kw), {"modes": 3}),
        (lambda **kw: conv(**kw), {"radius": 0.1}),
        (lambda **kw: conv(**kw), {"pointwise": False}),
        (lambda **kw: spectral(**kw), {"modes": 8}),
        (lambda **kw: spectral(**kw), {"pointwise": True}),
    ],
)
def test_a_variant_default_equals_its_documented_value(build, explicit):
    default = build(seed=11)
    given = build(seed=11, **explicit)
    same_parameters(default, given)
    x = torch.randn(3, default.in_features, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(default(x), given(x), rtol=0, atol=0)
    ((name, value),) = explicit.items()
    other = {"modes": 5, "basis": "fourier", "radius": 0.2, "pointwise": not value}[name]
    changed = build(seed=11, **{name: other})
    with torch.no_grad():
        assert not torch.allclose(default(x), changed(x))


def test_the_simple_calls_still_work():
    m = SpaceTimeNet(SCHED, 2, 3, kernel="basis")
    assert m.modes == 8 and m.basis_name == "legendre"
    assert m(torch.zeros(2, 2)).shape == (2, 3)
    assert SpaceTimeNet(SCHED, 2, 3).kernel.continuous is False


def test_kernel_instances_keep_their_own_options():
    """A built neural kernel still takes ``modes`` (its lift and readout basis) and nothing
    else; a built basis kernel takes none."""
    m = scalar(kernel=NeuralKernel(), lift="linear", modes=3)
    assert m.modes == 3 and tuple(m.lift_coeff.shape) == (2, 3)
    with pytest.raises(ValueError, match="modes: applies to .*<a built BasisKernel>"):
        scalar(kernel=BasisKernel(modes=4, pieces=2, T=SCHED.T), modes=4)


# --------------------------------------------------------------------------- devices
DEVICE_MODELS = {
    "nodal": (lambda: scalar(), (2,)),
    "basis": (lambda: scalar(kernel="basis"), (2,)),
    "conv": (lambda: conv(), (16,)),
    "spectral": (lambda: spectral(modes=4), (1, 16)),
    "two channels": (lambda: conv(in_channels=2, in_features=32), (2, 16)),
    "neural ode": (lambda: NeuralODE(2, steps=2, out_features=3), (2,)),
}


@pytest.mark.parametrize("name", list(DEVICE_MODELS))
def test_an_input_on_another_device_is_refused_naming_x_and_the_device(name):
    make, shape = DEVICE_MODELS[name]
    model = make()
    x = torch.empty(5, *shape, device="meta")
    message = r"^x: expected a tensor on cpu \(the model's device\), got one on meta; move"
    with pytest.raises(ValueError, match=message):
        model(x)
    with pytest.raises(ValueError, match=message):
        model.trajectory(x)
    # the other way round: a model on another device than a CPU input
    moved = copy.deepcopy(model).to("meta")
    with pytest.raises(ValueError, match=r"^x: expected a tensor on meta .*got one on cpu"):
        moved(torch.zeros(5, *shape))
    # the same input on the model's device runs
    assert torch.isfinite(model(torch.zeros(5, *shape))).all()


def test_the_device_check_also_guards_inputs_on_another_grid():
    m = conv(radius=0.3)
    grid = Grid.uniform(31, (0.0, 1.0))  # inputs sampled elsewhere, moved to G_0 first
    with pytest.raises(ValueError, match=r"^x: expected a tensor on cpu .*got one on meta"):
        m(torch.empty(2, 31, device="meta"), input_grid=grid)
    assert m(torch.zeros(2, 31), input_grid=grid).shape == (2, 3)


def test_sizes_stay_exact_beyond_float_precision():
    """The size check works in Python ints: a count whose bytes overflow a float64 product is
    still refused, not an OverflowError."""
    with pytest.raises(ValueError, match=r"^channels: expected a model that fits"):
        conv(channels=2**200)
    assert math.isfinite(float(base.MAX_MODEL_BYTES))


@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda: NeuralODE(3, form="inside", hidden_width=4),
            r"^hidden_width: applies to form='bottleneck' only, got hidden_width=4 with "
            r"form='inside' \(leave hidden_width out\)$",
        ),
        (
            lambda: NeuralODE(3, fixed_readout=True),
            r"^fixed_readout: applies to a model with a readout \(out_features=\.\.\.\), got "
            r"fixed_readout=True with out_features=None$",
        ),
        (lambda: NeuralODE(3, out_features=2, fixed_readout="yes"), r"^fixed_readout: "),
    ],
)
def test_neural_ode_refuses_options_of_another_variant(build, message):
    with pytest.raises(ValueError, match=message):
        build()
