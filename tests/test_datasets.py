"""Tests for spacetime_nets.datasets: shapes, determinism, the geometry of each data set, the
splits, image resampling and the heat-equation targets, each against an independent reference."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from spacetime_nets import datasets as D

# Small instances of every data set, so that the whole file stays fast.
SMALL = {
    "circles": {"n": 90},
    "annuli": {"n": 90},
    "xor": {"n": 80},
    "chess": {"n": 80},
    "moons": {"n": 80},
    "digits": {},
    "heat": {"n": 40, "grid_size": 17},
}


def _all(d: D.DatasetSplits) -> tuple[torch.Tensor, torch.Tensor]:
    """All rows of the three splits, concatenated."""
    x = torch.cat([d.train.x, d.val.x, d.test.x])
    y = torch.cat([d.train.y, d.val.y, d.test.y])
    return x, y


def _tensors(d: D.DatasetSplits) -> list[torch.Tensor]:
    return [t for s in (d.train, d.val, d.test) for t in (s.x, s.y)]


def _radii(x: torch.Tensor) -> np.ndarray:
    return np.hypot(x[:, 0].double().numpy(), x[:, 1].double().numpy())


@pytest.fixture(scope="module")
def raw_digits():
    return load_digits()


# --------------------------------------------------------------------------------------------
# shapes, dtypes, containers
# --------------------------------------------------------------------------------------------


def test_registry_lists_every_dataset():
    assert set(D.DATASETS) == set(SMALL)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_shapes_and_dtypes(name):
    d = D.load(name, **SMALL[name])
    assert isinstance(d, D.DatasetSplits)
    assert d.name == name
    expected_n = {"digits": 1797}.get(name, SMALL[name].get("n"))
    assert len(d.train) + len(d.val) + len(d.test) == expected_n == len(d)
    for split in (d.train, d.val, d.test):
        assert split.x.dtype == torch.float32
        assert split.x.dim() == 2 and split.x.shape[1] == d.in_features
        assert split.x.shape[0] == split.y.shape[0] == len(split) > 0
        if d.task == "classification":
            assert split.y.dtype == torch.long and split.y.dim() == 1
            assert int(split.y.min()) >= 0 and int(split.y.max()) < d.num_classes
        else:
            assert split.y.dtype == torch.float32
            assert split.y.shape[1] == d.out_features
    dims = {
        "circles": (2, 2, 2),
        "annuli": (2, 3, 3),
        "xor": (2, 2, 2),
        "chess": (2, 2, 2),
        "moons": (2, 2, 2),
        "digits": (64, 10, 10),
        "heat": (17, None, 17),
    }[name]
    assert (d.in_features, d.num_classes, d.out_features) == dims
    assert d.task == ("regression" if name == "heat" else "classification")
    assert d.labelled == (name != "heat")  # class labels: integer targets, num_classes set


@pytest.mark.parametrize("name", sorted(SMALL))
def test_dtype_argument(name):
    d = D.load(name, dtype=torch.float64, **SMALL[name])
    assert d.train.x.dtype == torch.float64
    assert d.test.y.dtype == (torch.float64 if name == "heat" else torch.long)


def test_split_container():
    d = D.circles(n=60, seed=1)
    ds = d.train.as_tensor_dataset()
    assert isinstance(ds, torch.utils.data.TensorDataset)
    assert len(ds) == len(d.train) == 42
    xi, yi = ds[5]
    assert torch.equal(xi, d.train.x[5]) and torch.equal(yi, d.train.y[5])
    moved = d.to("cpu")
    assert moved.train.x.device.type == "cpu" and torch.equal(moved.val.y, d.val.y)
    assert d.test.to(torch.device("cpu")).x.device.type == "cpu"
    with pytest.raises(ValueError, match="same number of rows"):
        D.Split(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))


def test_load_passes_arguments_through():
    a = D.load("chess", seed=3, n=50, squares=3)
    b = D.chess(n=50, squares=3, seed=3)
    assert all(torch.equal(s, t) for s, t in zip(_tensors(a), _tensors(b), strict=True))
    assert a.meta["squares"] == 3


# --------------------------------------------------------------------------------------------
# determinism and global random state
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SMALL))
def test_deterministic_given_seed(name):
    a = D.load(name, seed=7, **SMALL[name])
    b = D.load(name, seed=7, **SMALL[name])
    c = D.load(name, seed=8, **SMALL[name])
    assert all(torch.equal(s, t) for s, t in zip(_tensors(a), _tensors(b), strict=True))
    assert not torch.equal(a.train.x, c.train.x)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_global_rng_untouched(name):
    torch_state = torch.random.get_rng_state()
    np_state = np.random.get_state()  # noqa: NPY002 (the global state is what is checked)
    py_state = random.getstate()
    D.load(name, seed=5, **SMALL[name])
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    after = np.random.get_state()  # noqa: NPY002
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1])
    assert after[2:] == np_state[2:]
    assert random.getstate() == py_state


# --------------------------------------------------------------------------------------------
# splits
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SMALL))
def test_splits_disjoint_and_cover(name):
    d = D.load(name, seed=2, **SMALL[name])
    n = len(d)
    parts = [d.meta["split_indices"][k] for k in ("train", "val", "test")]
    assert [len(p) for p in parts] == [len(d.train), len(d.val), len(d.test)]
    joined = torch.cat(parts)
    assert torch.equal(torch.sort(joined).values, torch.arange(n))
    if name != "digits":  # continuous data: every generated row is distinct
        x, _ = _all(d)
        assert torch.unique(x, dim=0).shape[0] == n


def test_split_sizes_follow_fractions():
    d = D.xor(n=200, splits=(0.5, 0.3, 0.2))
    assert (len(d.train), len(d.val), len(d.test)) == (100, 60, 40)
    d = D.circles(n=300)
    assert (len(d.train), len(d.val), len(d.test)) == (210, 45, 45)


@pytest.mark.parametrize("name", ["circles", "annuli", "chess", "digits"])
def test_splits_are_stratified(name):
    d = D.load(name, seed=4, **SMALL[name])
    _, y = _all(d)
    k = d.num_classes
    total = torch.bincount(y, minlength=k).double() / len(y)
    for split in (d.train, d.val, d.test):
        counts = torch.bincount(split.y, minlength=k).double()
        assert torch.all((counts - len(split) * total).abs() <= 1.0 + 1e-9)


def test_digits_splits_cover_sklearn_data(raw_digits):
    d = D.digits(seed=0)
    x, y = _all(d)
    assert x.shape[0] == raw_digits.data.shape[0] == 1797
    # the same multiset of (image, label) rows as scikit-learn's data, independent of the order
    ours = np.column_stack([np.rint(x.double().numpy() * 16), y.numpy()])
    ref = np.column_stack([raw_digits.data, raw_digits.target])
    assert np.array_equal(ours[np.lexsort(ours.T[::-1])], ref[np.lexsort(ref.T[::-1])])


# --------------------------------------------------------------------------------------------
# geometry of the toy sets
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "counts"), [(300, [100, 200]), (301, [100, 201])])
def test_circles_class_counts(n, counts):
    _, y = _all(D.circles(n=n))
    assert torch.bincount(y).tolist() == counts


def test_circles_radii_and_area_uniformity():
    x, y = _all(D.circles(n=3000, seed=3))
    r = _radii(x)
    inner, outer = r[y.numpy() == 0], r[y.numpy() == 1]
    assert inner.max() <= 0.5 + 1e-6
    assert outer.min() >= 1.0 - 1e-6 and outer.max() <= 1.5 + 1e-6
    # uniform in area: half the disk's area lies inside r = 0.5 / sqrt(2) (uniform-in-r: 71%)
    assert abs(np.mean(inner <= 0.5 / math.sqrt(2)) - 0.5) < 0.06
    # 45% of the ring's area lies in 1 <= r <= 1.25 (uniform-in-r: 50%)
    assert abs(np.mean(outer <= 1.25) - 0.45) < 0.035
    # angles cover the circle evenly: each quadrant holds about a quarter of the points
    quadrant = (x[:, 0] > 0).long() * 2 + (x[:, 1] > 0).long()
    assert torch.all((torch.bincount(quadrant, minlength=4) / 3000 - 0.25).abs() < 0.04)


def test_circles_noise_moves_points():
    clean, _ = _all(D.circles(n=300, seed=0))
    noisy, _ = _all(D.circles(n=300, seed=0, noise=0.2))
    assert _radii(noisy).max() > 1.5 + 1e-3 or _radii(noisy).min() < 0.0 + 1e-3
    assert not torch.equal(clean, noisy)


@pytest.mark.parametrize(("n", "counts"), [(300, [100, 100, 100]), (301, [101, 100, 100])])
def test_annuli_counts_and_radii(n, counts):
    x, y = _all(D.annuli(n=n, seed=1))
    assert torch.bincount(y).tolist() == counts
    r = _radii(x)
    for k, (lo, hi) in enumerate([(0.0, 0.5), (1.0, 1.5), (2.0, 2.5)]):
        rk = r[y.numpy() == k]
        assert rk.min() >= lo - 1e-6 and rk.max() <= hi + 1e-6


def test_annuli_custom_radii():
    x, y = _all(D.annuli(n=100, radii=[(0.0, 1.0), (3.0, 4.0)]))
    r = _radii(x)
    assert torch.bincount(y).tolist() == [50, 50]
    assert r[y.numpy() == 0].max() <= 1.0 + 1e-6 and r[y.numpy() == 1].min() >= 3.0 - 1e-6


@pytest.mark.parametrize("margin", [0.0, 0.4])
def test_xor_labels_quadrants_and_margin(margin):
    d = D.xor(n=200, seed=2, margin=margin)
    x, y = _all(d)
    xn = x.double().numpy()
    expected = np.logical_xor(xn[:, 0] > 0, xn[:, 1] > 0).astype(np.int64)
    assert np.array_equal(y.numpy(), expected)
    assert np.all(np.abs(xn) <= 1.0)
    assert np.all(np.abs(xn) >= margin / 2)
    quadrant = (xn[:, 0] > 0).astype(int) * 2 + (xn[:, 1] > 0).astype(int)
    assert np.bincount(quadrant, minlength=4).tolist() == [50, 50, 50, 50]
    assert torch.bincount(y).tolist() == [100, 100]


def test_xor_margin_is_tight():
    # the points reach close to the band edge: the margin is not larger than asked
    x, _ = _all(D.xor(n=2000, seed=0, margin=0.4))
    assert float(x.abs().min()) < 0.2 + 0.01
    assert float(x.abs().max()) > 1.0 - 0.01


@pytest.mark.parametrize("squares", [2, 3, 4])
def test_chess_parity_and_balance(squares):
    x, y = _all(D.chess(n=400, squares=squares, seed=6))
    xn = x.double().numpy()
    assert np.all((xn >= 0) & (xn < 1))
    cells = np.floor(xn * squares).astype(np.int64)
    assert np.array_equal(y.numpy(), cells.sum(axis=1) % 2)
    assert torch.bincount(y).tolist() == [200, 200]
    # every cell is used
    assert len({tuple(c) for c in cells}) == squares * squares


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_labels_exact_in_low_precision(dtype):
    # coarse rounding moves many points across cell edges; the stored values must still agree
    x, y = _all(D.chess(n=400, squares=3, seed=0, dtype=dtype))
    assert x.dtype == dtype
    cells = np.floor(x.double().numpy() * 3).astype(np.int64)
    assert np.array_equal(y.numpy(), cells.sum(axis=1) % 2)
    x, y = _all(D.xor(n=400, seed=0, margin=0.3, dtype=dtype))
    xn = x.double().numpy()
    assert np.array_equal(y.numpy(), np.logical_xor(xn[:, 0] > 0, xn[:, 1] > 0))
    assert np.all(np.abs(xn) >= 0.15) and np.all(np.abs(xn) <= 1.0)


def test_moons_balance_and_reference():
    from sklearn.datasets import make_moons

    d = D.moons(n=300, seed=3, noise=0.1)
    x, y = _all(d)
    assert torch.bincount(y).tolist() == [150, 150]
    ref_x, ref_y = make_moons(n_samples=300, noise=0.1, random_state=3)
    ours = np.column_stack([x.double().numpy(), y.numpy()])
    ref = np.column_stack([ref_x.astype(np.float32).astype(np.float64), ref_y])
    assert np.array_equal(ours[np.lexsort(ours.T[::-1])], ref[np.lexsort(ref.T[::-1])])


# --------------------------------------------------------------------------------------------
# digits and image resampling
# --------------------------------------------------------------------------------------------


def test_digits_values_and_layout(raw_digits):
    d = D.digits(seed=1)
    x, _ = _all(d)
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert d.meta["image_shape"] == (8, 8)
    assert [tuple(map(float, b)) for b in d.meta["domain"]] == [(0.0, 1.0), (0.0, 1.0)]
    idx = d.meta["split_indices"]["test"]
    for j in (0, 17, len(idx) - 1):
        image = raw_digits.images[int(idx[j])] / 16.0
        assert np.array_equal(d.test.x[j].double().numpy().reshape(8, 8), image)
        assert int(d.test.y[j]) == int(raw_digits.target[int(idx[j])])
    assert len(d.train) == 1258 and len(d.val) == 270 and len(d.test) == 269


def test_pixel_centres():
    expected = torch.tensor(
        [[0.25, 1 / 6], [0.25, 0.5], [0.25, 5 / 6], [0.75, 1 / 6], [0.75, 0.5], [0.75, 5 / 6]],
        dtype=torch.float64,
    )
    got = D.pixel_centres((2, 3), dtype=torch.float64)
    assert got.shape == (6, 2)
    assert torch.allclose(got, expected, rtol=0, atol=1e-15)
    assert D.pixel_centres((8, 8)).dtype == torch.float32


def test_resample_at_pixel_centres_is_identity():
    x = D.digits(seed=0).val.x
    out = D.resample_images(x, (8, 8), D.pixel_centres((8, 8)))
    assert torch.equal(out, x)


def test_resample_to_finer_grid_replicates_pixels(raw_digits):
    x = torch.as_tensor(raw_digits.data[:25] / 16.0)
    c = (np.arange(16) + 0.5) / 16
    nodes = torch.as_tensor(np.stack(np.meshgrid(c, c, indexing="ij"), -1).reshape(-1, 2))
    out = D.resample_images(x, (8, 8), nodes).numpy()
    for i in range(25):
        expected = np.kron(raw_digits.images[i] / 16.0, np.ones((2, 2)))
        assert np.array_equal(out[i].reshape(16, 16), expected)


def test_resample_arbitrary_nodes_and_boundaries():
    h, w = 3, 5
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, h * w, generator=gen)
    nodes = torch.rand(50, 2, generator=gen, dtype=torch.float64)
    corners = torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.5, 0.999]])
    nodes = torch.cat([nodes, corners.double()])
    out = D.resample_images(x, (h, w), nodes)
    images = x.numpy().reshape(4, h, w)
    for k, (s, t) in enumerate(nodes.tolist()):
        r, c = min(int(s * h), h - 1), min(int(t * w), w - 1)
        assert np.array_equal(out[:, k].numpy(), images[:, r, c])
    # the first coordinate is the row: (1, 0) is the bottom-left pixel, (0, 1) the top-right
    assert torch.equal(out[:, -3], x[:, (h - 1) * w])
    assert torch.equal(out[:, -2], x[:, w - 1])
    assert torch.equal(out[:, -4], x[:, h * w - 1])


def test_resample_keeps_gradients():
    x = torch.rand(2, 4, dtype=torch.float64, requires_grad=True)
    out = D.resample_images(x, (2, 2), torch.tensor([[0.1, 0.1], [0.2, 0.3], [0.9, 0.9]]))
    out.sum().backward()
    assert x.grad.tolist() == [[2.0, 0.0, 0.0, 1.0]] * 2


def test_resample_errors():
    x = torch.zeros(2, 64)
    with pytest.raises(ValueError, match=r"nodes: expected points in \[0, 1\]\^2"):
        D.resample_images(x, (8, 8), torch.tensor([[0.5, 1.2]]))
    with pytest.raises(ValueError, match=r"x: expected a tensor of shape \[N, 16\]"):
        D.resample_images(x, (4, 4), torch.tensor([[0.5, 0.5]]))
    with pytest.raises(ValueError, match=r"nodes: expected a tensor of shape \[n, 2\]"):
        D.resample_images(x, (8, 8), torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match=r"image_shape=\(0, 8\)"):
        D.pixel_centres((0, 8))


# --------------------------------------------------------------------------------------------
# heat equation
# --------------------------------------------------------------------------------------------


def _sine_basis(nodes: np.ndarray, modes: int) -> np.ndarray:
    return np.sin(np.pi * np.outer(nodes, np.arange(1, modes + 1)))  # [G, modes]


@pytest.mark.parametrize(
    ("grid_size", "time", "modes"), [(64, 0.05, 8), (33, 0.01, 5), (17, 0.002, 3)]
)
def test_heat_against_closed_form(grid_size, time, modes):
    d = D.heat(n=64, grid_size=grid_size, time=time, modes=modes, seed=1, dtype=torch.float64)
    x, y = _all(d)
    x, y = x.numpy(), y.numpy()
    nodes = np.linspace(0.0, 1.0, grid_size)
    assert np.allclose(d.meta["nodes"].numpy(), nodes, rtol=0, atol=1e-15)
    assert d.meta["time"] == time
    basis = _sine_basis(nodes, modes)
    # recover the sine coefficients of u0 from x; x must lie in the span of the first modes
    coeffs, *_ = np.linalg.lstsq(basis, x.T, rcond=None)
    assert np.abs(basis @ coeffs - x.T).max() < 1e-12
    decay = np.exp(-((np.arange(1, modes + 1) * np.pi) ** 2) * time)
    reference = (basis @ (decay[:, None] * coeffs)).T
    assert np.abs(y - reference).max() <= 1e-3 * np.abs(reference).max()
    assert np.linalg.norm(y - reference) <= 1e-3 * np.linalg.norm(reference)
    assert np.all(x[:, [0, -1]] == 0) and np.all(np.abs(y[:, [0, -1]]) < 1e-12)


def test_heat_coefficient_distribution():
    d = D.heat(n=512, grid_size=64, modes=8, seed=0)
    x, _ = _all(d)
    nodes = np.linspace(0.0, 1.0, 64)
    coeffs, *_ = np.linalg.lstsq(_sine_basis(nodes, 8), x.double().numpy().T, rcond=None)
    m = np.arange(1, 9)
    scaled_var = (coeffs**2).mean(axis=1) * m**2  # a_m ~ N(0, 1 / m^2): about 1 for every m
    assert np.all(np.abs(scaled_var - 1.0) < 0.25)
    assert np.all(np.abs(coeffs.mean(axis=1) * m) < 0.2)


def test_heat_default_shapes():
    d = D.heat(n=100)
    assert d.train.x.shape == (70, 64) and d.train.y.shape == (70, 64)
    assert d.num_classes is None and d.task == "regression"


# --------------------------------------------------------------------------------------------
# bad arguments
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda: D.circles(n=0), r"n: expected .* got 0"),
        (lambda: D.xor(n=-5), r"n: expected an int >= 1, got -5"),
        (lambda: D.chess(n=2.5), r"n: expected an int >= 1, got 2\.5"),
        (lambda: D.annuli(noise=-0.1), r"noise: expected .* got -0\.1"),
        (lambda: D.moons(noise=-1.0), r"noise: expected a finite number >= 0, got -1\.0"),
        (lambda: D.circles(splits=(0.5, 0.5, 0.5)), r"summing to 1, got \(0\.5, 0\.5, 0\.5"),
        (
            lambda: D.xor(splits=(1.0, 0.0, 0.0)),
            r"splits: expected three positive .* got \(1\.0, 0\.0, 0\.0\)",
        ),
        (
            lambda: D.chess(splits=(1.2, -0.1, -0.1)),
            r"splits: expected .* got \(1\.2, -0\.1, -0\.1\)",
        ),
        (lambda: D.digits(splits=(0.8, 0.2)), r"splits: expected .* got \(0\.8, 0\.2\)"),
        (lambda: D.heat(n=0), r"n: expected an int >= 1, got 0"),
        (lambda: D.heat(time=0.0), r"time: expected a finite number > 0, got 0\.0"),
        (lambda: D.heat(grid_size=2), r"grid_size: expected an int >= 3, got 2"),
        (lambda: D.heat(modes=0), r"modes: expected an int >= 1, got 0"),
        (lambda: D.heat(grid_size=3, refine=1, modes=2), r"modes: expected fewer .* got modes=2"),
        (lambda: D.xor(margin=2.0), r"margin: expected a finite number in \[0, 2\), got 2\.0"),
        (lambda: D.chess(squares=1), r"squares: expected an int >= 2, got 1"),
        (
            lambda: D.annuli(radii=[(0, 1), (0.5, 2)]),
            r"radii: expected .* got radii=\[\(0, 1\), \(0\.5, 2\)\]",
        ),
        (lambda: D.circles(seed=-1), r"seed: expected an int in \[0, 2\*\*32\), got -1"),
        (
            lambda: D.circles(dtype=torch.long),
            r"dtype: expected a floating torch\.dtype, got torch\.int64",
        ),
        (lambda: D.circles(n=5), r"n: expected enough samples .* got n=5: too small"),
    ],
)
def test_bad_arguments(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_unknown_name():
    with pytest.raises(
        ValueError, match=r"name: expected one of circles, annuli.*got name='mnist'"
    ):
        D.load("mnist")


def test_signals_white_noise_is_independent_per_node_with_the_given_deviation():
    """white_noise adds N(0, s^2) per node on top of the same smooth functions: the difference
    to the noiseless set has standard deviation s, no correlation between neighbours, and the
    same draw for the same seed; a negative or non-finite value is refused."""
    base = D.signals(n=400, grid_size=65, seed=3)
    noisy = D.signals(n=400, grid_size=65, seed=3, white_noise=0.5)
    again = D.signals(n=400, grid_size=65, seed=3, white_noise=0.5)
    e = (noisy.train.x - base.train.x).double().numpy()
    assert abs(e.std() - 0.5) < 0.01 and abs(e.mean()) < 0.01
    corr = np.corrcoef(e[:, 1:].ravel(), e[:, :-1].ravel())[0, 1]
    assert abs(corr) < 0.02
    assert torch.equal(noisy.train.x, again.train.x)
    assert noisy.meta["white_noise"] == 0.5
    for bad in (-0.1, float("inf"), "0.1"):
        with pytest.raises(ValueError, match="white_noise: expected a (finite )?number"):
            D.signals(n=100, white_noise=bad)
