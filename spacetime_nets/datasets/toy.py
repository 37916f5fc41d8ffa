"""Two-dimensional toy classification sets: circles, annuli, xor, chessboard, moons.

Features ``x`` ``[N, 2]``, labels ``y`` ``[N]`` (``torch.long``), stratified splits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..validation import check_int
from ._core import (
    DEFAULT_SPLITS,
    DatasetSplits,
    _check_bytes,
    _check_dtype,
    _check_real,
    _check_seed,
    _check_splits,
    _out_bytes,
    _package,
)


def _draw_exact(
    sample: Callable[[np.ndarray], np.ndarray],
    valid: Callable[[np.ndarray], np.ndarray],
    count: int,
    dtype: torch.dtype,
    blame: dict[str, object],
) -> np.ndarray:
    """``count`` points from ``sample(rows)``, each row redrawn until, rounded to ``dtype``, it
    passes ``valid`` (so labels fixed by construction hold exactly for the stored values);
    ValueError naming the arguments in ``blame`` when 100 draws leave some row invalid (cells
    too small for ``dtype`` to hold a point strictly inside)."""
    pts = sample(np.arange(count))
    for _ in range(100):
        rounded = torch.from_numpy(pts).to(dtype).double().numpy()
        bad = np.flatnonzero(~valid(rounded))
        if bad.size == 0:
            return rounded
        pts[bad] = sample(bad)
    names = ", ".join(blame)
    shown = ", ".join(f"{k}={v!r}" for k, v in blame.items())
    raise ValueError(
        f"{names}: expected cells that {dtype} can hold points strictly inside, got {shown}: "
        f"{bad.size} points could not be drawn inside their cells"
    )


def _add_noise(x: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    if noise > 0:
        x = x + noise * rng.standard_normal(x.shape)
    return x


def _shuffle(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    perm = rng.permutation(x.shape[0])
    return x[perm], y[perm]


def _toy_bytes(n: int, dtype: torch.dtype) -> float:
    """Bytes of a 2-D point set of ``n`` points: the float64 draws, their shuffled and noisy
    copies, and the returned tensors."""
    return 8.0 * 2 * 8 * n + _out_bytes(n, 2, 0, dtype)


def _radius(v: object) -> float:
    if isinstance(v, (bool, str, bytes, np.bool_)):
        raise TypeError
    return float(v)  # type: ignore[arg-type]


def _balanced_counts(n: int, k: int) -> list[int]:
    """``n`` split into ``k`` counts differing by at most one, the larger ones first."""
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def _ring(rng: np.random.Generator, count: int, r0: float, r1: float) -> np.ndarray:
    """``count`` points uniform in area in the ring ``r0 <= |p| <= r1`` (a disk if ``r0 == 0``).

    The radius is drawn by inverting the area CDF ``(r^2 - r0^2) / (r1^2 - r0^2)``.
    """
    u = rng.random(count)
    r = np.sqrt(r0**2 + u * (r1**2 - r0**2))
    theta = rng.uniform(0.0, 2.0 * math.pi, count)
    return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)


# --------------------------------------------------------------------------------------------
# 2-D toy classification sets
# --------------------------------------------------------------------------------------------


def circles(
    n: int = 300,
    seed: int = 0,
    noise: float = 0.0,
    splits: Sequence[float] = DEFAULT_SPLITS,
    dtype: torch.dtype = torch.float32,
) -> DatasetSplits:
    """Two concentric classes in the plane: ``x`` ``[n, 2]``, ``y`` ``[n]`` in ``{0, 1}``.

    Class 0 is uniform (in area) in the disk ``r <= 0.5`` with ``n // 3`` points, class 1 uniform
    in the ring ``1 <= r <= 1.5`` with the other ``n - n // 3`` (twice as many when ``3 | n``).
    ``noise > 0`` adds ``N(0, noise^2)`` to each coordinate after the labels are fixed.

    Args:
        n: the number of points (split three ways).
        seed: seeds the points, the noise and the split.
        noise: the standard deviation of the Gaussian noise added to each coordinate
            (``>= 0``).
        splits: train / val / test fractions.
        dtype: floating dtype of ``x``.

    Returns:
        A classification [`DatasetSplits`][spacetime_nets.datasets.DatasetSplits] with 2 classes.
    """
    n = check_int("n", n, 1)
    seed = _check_seed(seed)
    noise = _check_real("noise", noise)
    splits = _check_splits(splits)
    dtype = _check_dtype(dtype)
    _check_bytes(_toy_bytes(n, dtype), {"n": n})
    rng = np.random.default_rng(seed)
    n_inner = n // 3
    n_outer = n - n_inner
    x = np.concatenate([_ring(rng, n_inner, 0.0, 0.5), _ring(rng, n_outer, 1.0, 1.5)])
    y = np.concatenate([np.zeros(n_inner, np.int64), np.ones(n_outer, np.int64)])
    x, y = _shuffle(x, y, rng)
    x = _add_noise(x, noise, rng)
    radii = ((0.0, 0.5), (1.0, 1.5))
    return _package(
        "circles",
        x,
        y,
        task="classification",
        num_classes=2,
        splits=splits,
        seed=seed,
        dtype=dtype,
        meta={"radii": radii, "noise": noise, "class_counts": (n_inner, n_outer)},
        blame={"noise": noise},
    )


def annuli(
    n: int = 300,
    seed: int = 0,
    noise: float = 0.0,
    splits: Sequence[float] = DEFAULT_SPLITS,
    dtype: torch.dtype = torch.float32,
    radii: Sequence[tuple[float, float]] = ((0.0, 0.5), (1.0, 1.5), (2.0, 2.5)),
) -> DatasetSplits:
    """Concentric annuli, one class each: ``x`` ``[n, 2]``, ``y`` ``[n]`` in ``{0, ..., k-1}``.

    Class ``k`` is uniform (in area) in ``radii[k][0] <= r <= radii[k][1]`` (by default
    ``[0, 0.5]``, ``[1, 1.5]``, ``[2, 2.5]``); the class counts differ by at most one.
    ``noise > 0`` adds ``N(0, noise^2)`` to each coordinate after the labels are fixed.

    Args:
        n: the number of points (split three ways).
        seed: seeds the points, the noise and the split.
        noise: the standard deviation of the Gaussian noise added to each coordinate
            (``>= 0``).
        splits: train / val / test fractions.
        dtype: floating dtype of ``x``.
        radii: the ``(r0, r1)`` bounds of each class's annulus, at least two, increasing and
            disjoint, ``0 <= r0 < r1``.

    Returns:
        A classification [`DatasetSplits`][spacetime_nets.datasets.DatasetSplits] with
            ``len(radii)`` classes.
    """
    n = check_int("n", n, 1)
    seed = _check_seed(seed)
    noise = _check_real("noise", noise)
    splits = _check_splits(splits)
    dtype = _check_dtype(dtype)
    try:
        if isinstance(radii, (str, bytes)):
            raise TypeError
        rings = tuple((_radius(a), _radius(b)) for a, b in radii)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(
            f"radii: expected a sequence of (r0, r1) pairs of numbers, got radii={radii!r:.80}"
        ) from None
    ok = len(rings) >= 2 and all(0 <= a < b and math.isfinite(b) for a, b in rings)
    ok = ok and all(rings[k][1] < rings[k + 1][0] for k in range(len(rings) - 1))
    if not ok:
        raise ValueError(
            "radii: expected at least two increasing, disjoint (r0, r1) pairs with "
            f"0 <= r0 < r1, got radii={radii!r:.80}"
        )
    _check_bytes(_toy_bytes(n, dtype) + 8.0 * 4 * len(rings), {"n": n})
    rng = np.random.default_rng(seed)
    counts = _balanced_counts(n, len(rings))
    x = np.concatenate([_ring(rng, c, a, b) for c, (a, b) in zip(counts, rings, strict=True)])
    y = np.repeat(np.arange(len(rings), dtype=np.int64), counts)
    x, y = _shuffle(x, y, rng)
    x = _add_noise(x, noise, rng)
    return _package(
        "annuli",
        x,
        y,
        task="classification",
        num_classes=len(rings),
        splits=splits,
        seed=seed,
        dtype=dtype,
        meta={"radii": rings, "noise": noise, "class_counts": tuple(counts)},
        blame={"noise": noise, "radii": radii},
    )


def xor(
    n: int = 200,
    seed: int = 0,
    noise: float = 0.0,
    splits: Sequence[float] = DEFAULT_SPLITS,
    dtype: torch.dtype = torch.float32,
    margin: float = 0.0,
) -> DatasetSplits:
    """The XOR problem on ``[-1, 1]^2``: ``x`` ``[n, 2]``, ``y = (x1 > 0) xor (x2 > 0)`` ``[n]``.

    Each quadrant gets ``n // 4`` uniform points (the first ``n % 4`` of the quadrants
    ``(+,+), (+,-), (-,-), (-,+)`` one more), so the class counts differ by at most one. A
    ``margin`` in ``[0, 2)`` empties the bands ``|x1| < margin / 2`` and ``|x2| < margin / 2``
    (a band of total width ``margin`` around each axis). ``noise > 0`` adds ``N(0, noise^2)`` to
    each coordinate after the labels are fixed.

    Args:
        n: the number of points (split three ways).
        seed: seeds the points, the noise and the split.
        noise: the standard deviation of the Gaussian noise added to each coordinate
            (``>= 0``).
        splits: train / val / test fractions.
        dtype: floating dtype of ``x``.
        margin: the total width of the empty band around each axis, in ``[0, 2)``.

    Returns:
        A classification [`DatasetSplits`][spacetime_nets.datasets.DatasetSplits] with 2 classes.
    """
    n = check_int("n", n, 1)
    seed = _check_seed(seed)
    noise = _check_real("noise", noise)
    margin = _check_real("margin", margin, high=2.0, high_open=True)
    splits = _check_splits(splits)
    dtype = _check_dtype(dtype)
    _check_bytes(_toy_bytes(n, dtype), {"n": n})
    rng = np.random.default_rng(seed)
    half = margin / 2.0
    quadrants = ((1.0, 1.0), (1.0, -1.0), (-1.0, -1.0), (-1.0, 1.0))
    xs, ys = [], []
    for count, signs in zip(_balanced_counts(n, 4), quadrants, strict=True):
        s = np.asarray(signs)

        def sample(rows: np.ndarray, s: np.ndarray = s) -> np.ndarray:
            return s * rng.uniform(half, 1.0, (rows.size, 2))

        def valid(p: np.ndarray, s: np.ndarray = s) -> np.ndarray:
            return np.all((s * p >= half) & (s * p > 0) & (np.abs(p) <= 1.0), axis=1)

        xs.append(_draw_exact(sample, valid, count, dtype, {"margin": margin, "dtype": dtype}))
        ys.append(np.full(count, int(signs[0] != signs[1]), dtype=np.int64))
    return _two_classes("xor", xs, ys, rng, noise, splits, seed, dtype, {"margin": margin})


def chess(
    n: int = 400,
    squares: int = 4,
    seed: int = 0,
    noise: float = 0.0,
    splits: Sequence[float] = DEFAULT_SPLITS,
    dtype: torch.dtype = torch.float32,
) -> DatasetSplits:
    """A chessboard on ``[0, 1]^2``: ``x`` ``[n, 2]``, ``y`` ``[n]`` the parity of the cell.

    With ``squares = s`` the cell of ``x`` is ``(i, j) = (floor(s x1), floor(s x2))`` and the
    label is ``(i + j) % 2``. Each class gets ``n // 2`` points (class 0 the extra one when ``n``
    is odd), spread over the cells of its colour as evenly as possible (in a random order),
    uniform within each cell. ``noise > 0`` adds ``N(0, noise^2)`` after the labels are fixed.

    Args:
        n: the number of points (split three ways).
        squares: the cells per side of the board (``>= 2``).
        seed: seeds the points, the noise and the split.
        noise: the standard deviation of the Gaussian noise added to each coordinate
            (``>= 0``).
        splits: train / val / test fractions.
        dtype: floating dtype of ``x``.

    Returns:
        A classification [`DatasetSplits`][spacetime_nets.datasets.DatasetSplits] with 2 classes.
    """
    n = check_int("n", n, 1)
    squares = check_int("squares", squares, 2)
    seed = _check_seed(seed)
    noise = _check_real("noise", noise)
    splits = _check_splits(splits)
    dtype = _check_dtype(dtype)
    # the cells of the board (indices, parity, the shuffled cells of each colour)
    _check_bytes(_toy_bytes(n, dtype) + 8.0 * 8 * squares * squares, {"n": n, "squares": squares})
    rng = np.random.default_rng(seed)
    ii, jj = np.meshgrid(np.arange(squares), np.arange(squares), indexing="ij")
    cells = np.stack([ii.ravel(), jj.ravel()], axis=1)
    parity = cells.sum(axis=1) % 2
    xs, ys = [], []
    for label, count in enumerate(_balanced_counts(n, 2)):
        own = cells[parity == label]
        chosen = np.resize(rng.permutation(own), (count, 2)) if count else own[:0]

        def sample(rows: np.ndarray, chosen: np.ndarray = chosen) -> np.ndarray:
            return (chosen[rows] + rng.random((rows.size, 2))) / squares

        def valid(p: np.ndarray, chosen: np.ndarray = chosen) -> np.ndarray:
            return np.all(np.floor(p * squares) == chosen, axis=1)

        pts = _draw_exact(sample, valid, count, dtype, {"squares": squares, "dtype": dtype})
        xs.append(pts)
        ys.append(np.full(count, label, dtype=np.int64))
    return _two_classes("chess", xs, ys, rng, noise, splits, seed, dtype, {"squares": squares})


def moons(
    n: int = 300,
    seed: int = 0,
    noise: float = 0.1,
    splits: Sequence[float] = DEFAULT_SPLITS,
    dtype: torch.dtype = torch.float32,
) -> DatasetSplits:
    """Two interleaving half circles (``sklearn.datasets.make_moons``): ``x`` ``[n, 2]``,
    ``y`` ``[n]`` in ``{0, 1}`` with ``n // 2`` points of class 0 and ``n - n // 2`` of class 1;
    ``noise`` is the standard deviation of the Gaussian noise added by scikit-learn.

    Args:
        n: the number of points (split three ways).
        seed: seeds scikit-learn's draw (``random_state``) and the split.
        noise: the standard deviation of the Gaussian noise added to each coordinate
            (``>= 0``).
        splits: train / val / test fractions.
        dtype: floating dtype of ``x``.

    Returns:
        A classification [`DatasetSplits`][spacetime_nets.datasets.DatasetSplits] with 2 classes.
    """
    from sklearn.datasets import make_moons

    n = check_int("n", n, 1)
    seed = _check_seed(seed)
    noise = _check_real("noise", noise)
    splits = _check_splits(splits)
    dtype = _check_dtype(dtype)
    _check_bytes(_toy_bytes(n, dtype), {"n": n})
    x, y = make_moons(n_samples=n, shuffle=True, noise=noise, random_state=seed)
    y = y.astype(np.int64)
    counts = (int((y == 0).sum()), int((y == 1).sum()))
    return _package(
        "moons",
        x,
        y,
        task="classification",
        num_classes=2,
        splits=splits,
        seed=seed,
        dtype=dtype,
        meta={"noise": noise, "class_counts": counts},
        blame={"noise": noise},
    )


def _two_classes(name, xs, ys, rng, noise, splits, seed, dtype, meta: dict) -> DatasetSplits:
    """Shuffle the per-class blocks ``xs``/``ys``, add the input noise and package a binary
    classification set (the class counts go into ``meta``)."""
    x, y = _shuffle(np.concatenate(xs), np.concatenate(ys), rng)
    x = _add_noise(x, noise, rng)
    counts = (int((y == 0).sum()), int((y == 1).sum()))
    return _package(
        name,
        x,
        y,
        task="classification",
        num_classes=2,
        splits=splits,
        seed=seed,
        dtype=dtype,
        meta={**meta, "noise": noise, "class_counts": counts},
        blame={"noise": noise},
    )
