"""Small synthetic and bundled data sets, split into train / validation / test.

Every generator is deterministic given ``seed``: it draws from its own
``numpy.random.default_rng(seed)`` (and passes ``random_state=seed`` to scikit-learn), and never
reads or changes the global torch or numpy random state.

Classification sets hold features ``x`` of shape ``[N, d]`` in the requested floating ``dtype``
and labels ``y`` of shape ``[N]`` as ``torch.long``; their splits are stratified by class. The
regression set :func:`heat` holds ``x`` and ``y`` of shape ``[N, grid_size]``.

Images live on the unit square ``[0, 1]^2``: pixel ``(r, c)`` of an ``h x w`` image is the cell
``[r/h, (r+1)/h) x [c/w, (c+1)/w)``, so the row index runs along the *first* coordinate and the
column index along the second. Flattened images are in row-major order (index ``r * w + c``).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

__all__ = [
    "DATASETS",
    "DatasetSplits",
    "Split",
    "annuli",
    "chess",
    "circles",
    "digits",
    "heat",
    "load",
    "moons",
    "pixel_centres",
    "resample_images",
    "xor",
]

DEFAULT_SPLITS: tuple[float, float, float] = (0.7, 0.15, 0.15)
_SPLIT_NAMES = ("train", "val", "test")


# --------------------------------------------------------------------------------------------
# containers
# --------------------------------------------------------------------------------------------


@dataclass
class Split:
    """One part of a data set: inputs ``x`` ``[N, ...]`` and targets ``y`` ``[N, ...]``."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(
                "Split: x and y must have the same number of rows, got "
                f"x.shape={tuple(self.x.shape)} and y.shape={tuple(self.y.shape)}"
            )

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def to(self, device: torch.device | str) -> Split:
        """A copy of this split with ``x`` and ``y`` on ``device``."""
        return Split(self.x.to(device), self.y.to(device))

    def as_tensor_dataset(self) -> TensorDataset:
        """The split as a ``TensorDataset`` yielding ``(x[i], y[i])``."""
        return TensorDataset(self.x, self.y)


@dataclass
class DatasetSplits:
    """A data set split three ways, with what a model needs to know about it.

    ``task`` is ``"classification"`` (``num_classes`` set, ``out_features == num_classes``) or
    ``"regression"`` (``num_classes`` is ``None``). ``meta["split_indices"]`` maps ``"train"``,
    ``"val"`` and ``"test"`` to the ``torch.long`` row indices of each split in the data set as
    generated, before splitting; the three are disjoint and together cover ``range(N)``.
    """

    train: Split
    val: Split
    test: Split
    name: str
    num_classes: int | None
    in_features: int
    out_features: int
    task: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.train) + len(self.val) + len(self.test)

    def to(self, device: torch.device | str) -> DatasetSplits:
        """A copy with the three splits on ``device`` (``meta`` is shared, not copied)."""
        return DatasetSplits(
            train=self.train.to(device),
            val=self.val.to(device),
            test=self.test.to(device),
            name=self.name,
            num_classes=self.num_classes,
            in_features=self.in_features,
            out_features=self.out_features,
            task=self.task,
            meta=self.meta,
        )


# --------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {name}={value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {name}={value!r}") from None
    if v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {name}={value!r}")
    return v


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool):
        raise ValueError(f"seed must be an integer in [0, 2**32), got seed={seed!r}")
    try:
        s = operator.index(seed)
    except TypeError:
        raise ValueError(f"seed must be an integer in [0, 2**32), got seed={seed!r}") from None
    if not 0 <= s < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got seed={seed!r}")
    return s


def _check_real(
    value: object,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    interval = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
    msg = f"{name} must be a finite number in {interval}, got {name}={value!r}"
    if isinstance(value, bool):
        raise ValueError(msg)
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(msg) from None
    if not math.isfinite(v):
        raise ValueError(msg)
    if low is not None and (v <= low if low_open else v < low):
        raise ValueError(msg)
    if high is not None and (v >= high if high_open else v > high):
        raise ValueError(msg)
    return v


def _check_splits(splits: object) -> tuple[float, float, float]:
    msg = (
        "splits must be three positive fractions (train, val, test) summing to 1, "
        f"got splits={splits!r}"
    )
    try:
        parts = tuple(float(s) for s in splits)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(msg) from None
    if len(parts) != 3 or not all(math.isfinite(p) and p > 0 for p in parts):
        raise ValueError(msg)
    if abs(sum(parts) - 1.0) > 1e-6:
        raise ValueError(msg)
    return parts  # type: ignore[return-value]


def _check_dtype(dtype: object) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch.dtype, got dtype={dtype!r}")
    return dtype


def _split_sizes(n: int, splits: tuple[float, float, float], minimum: int) -> tuple[int, int, int]:
    n_train = int(round(n * splits[0]))
    n_val = int(round(n * splits[1]))
    n_test = n - n_train - n_val
    sizes = (n_train, n_val, n_test)
    if min(sizes) < minimum:
        what = f"{minimum} samples" if minimum > 1 else "one sample"
        raise ValueError(
            f"n={n} is too small for splits={splits!r}: the split sizes would be {sizes}, "
            f"and each split needs at least {what}"
        )
    return sizes


# --------------------------------------------------------------------------------------------
# splitting and packaging
# --------------------------------------------------------------------------------------------


def _split_indices(
    labels: np.ndarray | None, n: int, splits: tuple[float, float, float], seed: int
) -> dict[str, np.ndarray]:
    """Row indices of train / val / test, stratified by ``labels`` unless it is ``None``."""
    from sklearn.model_selection import train_test_split

    minimum = 1 if labels is None else int(np.unique(labels).size)
    n_train, n_val, n_test = _split_sizes(n, splits, minimum)
    idx = np.arange(n)
    train, rest = train_test_split(
        idx,
        train_size=n_train,
        test_size=n_val + n_test,
        random_state=seed,
        stratify=labels,
    )
    val, test = train_test_split(
        rest,
        train_size=n_val,
        test_size=n_test,
        random_state=seed,
        stratify=None if labels is None else labels[rest],
    )
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def _package(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    *,
    task: str,
    num_classes: int | None,
    splits: tuple[float, float, float],
    seed: int,
    dtype: torch.dtype,
    meta: dict[str, Any],
) -> DatasetSplits:
    n = x.shape[0]
    classification = task == "classification"
    index = _split_indices(y if classification else None, n, splits, seed)
    x_t = torch.as_tensor(np.ascontiguousarray(x), dtype=dtype)
    y_t = torch.as_tensor(np.ascontiguousarray(y), dtype=torch.long if classification else dtype)
    parts = {}
    index_t = {}
    for part in _SPLIT_NAMES:
        i = torch.as_tensor(index[part], dtype=torch.long)
        index_t[part] = i
        parts[part] = Split(x_t[i].clone(), y_t[i].clone())
    meta = dict(meta)
    meta["split_indices"] = index_t
    meta["seed"] = seed
    meta["splits"] = splits
    out_features = num_classes if classification else int(y.shape[1])
    return DatasetSplits(
        train=parts["train"],
        val=parts["val"],
        test=parts["test"],
        name=name,
        num_classes=num_classes,
        in_features=int(x.shape[1]),
        out_features=int(out_features),  # type: ignore[arg-type]
        task=task,
        meta=meta,
    )


def _draw_exact(
    sample: Callable[[np.ndarray], np.ndarray],
    valid: Callable[[np.ndarray], np.ndarray],
    count: int,
    dtype: torch.dtype,
) -> np.ndarray:
    """``count`` points from ``sample(rows)``, each row redrawn until, rounded to ``dtype``, it
    passes ``valid`` (so labels fixed by construction hold exactly for the stored values)."""
    pts = sample(np.arange(count))
    for _ in range(100):
        rounded = torch.from_numpy(pts).to(dtype).double().numpy()
        bad = np.flatnonzero(~valid(rounded))
        if bad.size == 0:
            return rounded
        pts[bad] = sample(bad)
    raise RuntimeError("could not draw points strictly inside their cells")  # pragma: no cover


def _add_noise(x: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    if noise > 0:
        x = x + noise * rng.standard_normal(x.shape)
    return x


def _shuffle(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    perm = rng.permutation(x.shape[0])
    return x[perm], y[perm]


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
    """
    n = _check_int(n, "n", 1)
    seed = _check_seed(seed)
    noise = _check_real(noise, "noise", low=0.0)
    splits = _check_splits(splits)
    dtype = _check_dtype(dtype)
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
    """
    n = _check_int(n, "n", 1)
    seed = _check_seed(seed)
    noise = _check_real(noise, "noise", low=0.0)
    splits = _check_splits(splits)
    dtype = _check_dtype(dtype)
    try:
        rings = tuple((float(a), float(b)) for a, b in radii)
    except (TypeError, ValueError):
        raise ValueError(
            f"radii must be a sequence of (r0, r1) pairs, got radii={radii!r}"
        ) from None
    ok = len(rings) >= 2 and all(0 <= a < b and math.isfinite(b) for a, b in rings)
    ok = ok and all(rings[k][1] < rings[k + 1][0] for k in range(len(rings) - 1))
    if not ok:
        raise ValueError(
            "radii must be at least two increasing, disjoint (r0, r1) pairs with 0 <= r0 < r1, "
            f"got radii={radii!r}"
        )
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
    """
    n = _check_int(n, "n", 1)
    seed = _check_seed(seed)
    noise = _check_real(noise, "noise", low=0.0)
    margin = _check_real(margin, "margin", low=0.0, high=2.0, high_open=True)
    splits = _check_splits(splits)
    dtype = _check_dtype(dtype)
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

        xs.append(_draw_exact(sample, valid, count, dtype))
        ys.append(np.full(count, int(signs[0] != signs[1]), dtype=np.int64))
    x, y = _shuffle(np.concatenate(xs), np.concatenate(ys), rng)
    x = _add_noise(x, noise, rng)
    counts = (int((y == 0).sum()), int((y == 1).sum()))
    return _package(
        "xor",
        x,
        y,
        task="classification",
        num_classes=2,
        splits=splits,
        seed=seed,
        dtype=dtype,
        meta={"margin": margin, "noise": noise, "class_counts": counts},
    )


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
    """
    n = _check_int(n, "n", 1)
    squares = _check_int(squares, "squares", 2)
    seed = _check_seed(seed)
    noise = _check_real(noise, "noise", low=0.0)
    splits = _check_splits(splits)
    dtype = _check_dtype(dtype)
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

        pts = _draw_exact(sample, valid, count, dtype)
        xs.append(pts)
        ys.append(np.full(count, label, dtype=np.int64))
    x, y = _shuffle(np.concatenate(xs), np.concatenate(ys), rng)
    x = _add_noise(x, noise, rng)
    counts = (int((y == 0).sum()), int((y == 1).sum()))
    return _package(
        "chess",
        x,
        y,
        task="classification",
        num_classes=2,
        splits=splits,
        seed=seed,
        dtype=dtype,
        meta={"squares": squares, "noise": noise, "class_counts": counts},
    )


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
    """
    from sklearn.datasets import make_moons

    n = _check_int(n, "n", 1)
    seed = _check_seed(seed)
    noise = _check_real(noise, "noise", low=0.0)
    splits = _check_splits(splits)
    dtype = _check_dtype(dtype)
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
    )


# --------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------


def digits(
    seed: int = 0,
    splits: Sequence[float] = DEFAULT_SPLITS,
    dtype: torch.dtype = torch.float32,
) -> DatasetSplits:
    """The 1797 8x8 handwritten digits bundled with scikit-learn: ``x`` ``[N, 64]`` in
    ``[0, 1]`` (pixel / 16, row-major), ``y`` ``[N]`` in ``{0, ..., 9}``.

    Pixel ``(r, c)`` is the cell ``[r/8, (r+1)/8) x [c/8, (c+1)/8)`` of the domain ``[0, 1]^2``
    (``meta["domain"]``, ``meta["image_shape"] == (8, 8)``); see :func:`resample_images`. Only
    ``seed`` (through the stratified split) changes the result.
    """
    from sklearn.datasets import load_digits

    seed = _check_seed(seed)
    splits = _check_splits(splits)
    dtype = _check_dtype(dtype)
    raw = load_digits()
    x = np.asarray(raw.images, dtype=np.float64).reshape(len(raw.images), -1) / 16.0
    y = np.asarray(raw.target, dtype=np.int64)
    return _package(
        "digits",
        x,
        y,
        task="classification",
        num_classes=10,
        splits=splits,
        seed=seed,
        dtype=dtype,
        meta={
            "image_shape": (8, 8),
            "domain": [(0.0, 1.0), (0.0, 1.0)],
            "class_counts": tuple(int(c) for c in np.bincount(y, minlength=10)),
        },
    )


def _check_image_shape(image_shape: object) -> tuple[int, int]:
    msg = f"image_shape must be a pair of positive integers (h, w), got image_shape={image_shape!r}"
    try:
        h, w = image_shape  # type: ignore[misc]
        h, w = operator.index(h), operator.index(w)
    except (TypeError, ValueError):
        raise ValueError(msg) from None
    if h < 1 or w < 1:
        raise ValueError(msg)
    return h, w


def pixel_centres(image_shape: tuple[int, int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The centres of the pixels of an ``h x w`` image on ``[0, 1]^2``, ``[h * w, 2]``.

    Row ``r * w + c`` is ``((r + 0.5) / h, (c + 0.5) / w)``: row-major, matching flattened images.
    """
    h, w = _check_image_shape(image_shape)
    dtype = _check_dtype(dtype)
    rows = (torch.arange(h, dtype=torch.float64) + 0.5) / h
    cols = (torch.arange(w, dtype=torch.float64) + 0.5) / w
    rr, cc = torch.meshgrid(rows, cols, indexing="ij")
    return torch.stack([rr.reshape(-1), cc.reshape(-1)], dim=1).to(dtype)


def resample_images(
    x: torch.Tensor, image_shape: tuple[int, int], nodes: torch.Tensor
) -> torch.Tensor:
    """Sample flattened images ``x`` ``[N, h * w]`` at ``nodes`` ``[n, 2]`` in ``[0, 1]^2``,
    giving ``[N, n]``.

    Each image is the piecewise-constant function whose pixel ``(r, c)`` covers
    ``[r/h, (r+1)/h) x [c/w, (c+1)/w)``; nodes on the upper boundary (coordinate 1) belong to the
    last row / column. The result keeps ``x``'s dtype and device and is differentiable in ``x``.
    """
    h, w = _check_image_shape(image_shape)
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != h * w:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a tensor of shape [N, {h * w}] (h * w), got x.shape={shape}")
    if not isinstance(nodes, torch.Tensor) or nodes.dim() != 2 or nodes.shape[1] != 2:
        shape = tuple(nodes.shape) if isinstance(nodes, torch.Tensor) else type(nodes).__name__
        raise ValueError(f"nodes must be a tensor of shape [n, 2], got nodes.shape={shape}")
    pts = nodes.detach().to(device=x.device, dtype=torch.float64)
    if pts.numel() and not bool(((pts >= 0) & (pts <= 1)).all()):
        bad = pts[~((pts >= 0) & (pts <= 1)).all(dim=1)][0].tolist()
        raise ValueError(f"nodes must lie in [0, 1]^2, got a node at {bad}")
    r = torch.floor(pts[:, 0] * h).long().clamp_(0, h - 1)
    c = torch.floor(pts[:, 1] * w).long().clamp_(0, w - 1)
    return x[:, r * w + c]


# --------------------------------------------------------------------------------------------
# operator learning
# --------------------------------------------------------------------------------------------


def _heat_propagate(
    initial: np.ndarray, time: float, refine: int, rtol: float = 1e-8, atol: float = 1e-10
) -> np.ndarray:
    """Solve ``u_t = u_xx`` on ``[0, 1]`` with ``u(0) = u(1) = 0`` up to ``time`` for each row of
    ``initial`` (``[k, F]``, values on ``F`` equispaced fine nodes, endpoints included).

    Second-order finite differences in space, ``scipy.integrate.solve_ivp`` (BDF) in time.
    """
    import scipy.sparse as sp
    from scipy.integrate import solve_ivp

    k, f = initial.shape
    m = f - 2  # interior unknowns
    h = 1.0 / (f - 1)
    ones = np.ones(m)
    lap = sp.diags([ones[:-1], -2.0 * ones, ones[:-1]], [-1, 0, 1], format="csr") / h**2
    jac = sp.kron(lap, sp.identity(k), format="csc")  # state is [m, k] flattened row-major
    y0 = np.ascontiguousarray(initial[:, 1:-1].T).ravel()

    def rhs(_t: float, y: np.ndarray) -> np.ndarray:
        return (lap @ y.reshape(m, k)).ravel()

    sol = solve_ivp(
        rhs, (0.0, time), y0, method="BDF", jac=jac, rtol=rtol, atol=atol, t_eval=[time]
    )
    if not sol.success:  # pragma: no cover
        raise RuntimeError(f"heat: the time integration failed: {sol.message}")
    out = np.zeros((k, f))
    out[:, 1:-1] = sol.y[:, -1].reshape(m, k).T
    return out


def heat(
    n: int = 512,
    grid_size: int = 64,
    time: float = 0.05,
    seed: int = 0,
    modes: int = 8,
    splits: Sequence[float] = DEFAULT_SPLITS,
    dtype: torch.dtype = torch.float32,
    refine: int = 8,
) -> DatasetSplits:
    """Operator learning for the 1-D heat equation: ``x`` ``[n, grid_size]`` holds random
    initial functions ``u0``, ``y`` ``[n, grid_size]`` the solutions ``u(time)``.

    ``u0(s) = sum_{m=1}^{modes} a_m sin(m pi s)`` with independent ``a_m ~ N(0, 1 / m^2)``; ``u``
    solves ``u_t = u_xx`` on ``[0, 1]`` with ``u(t, 0) = u(t, 1) = 0``. Both are sampled at the
    ``grid_size`` equispaced nodes ``meta["nodes"]`` (endpoints included). The target is computed
    numerically: finite differences on a grid ``refine`` times finer, integrated in time with
    ``scipy.integrate.solve_ivp`` (BDF), then restricted to the nodes. The equation is linear, so
    the solver runs once per sine mode and each sample combines those solutions with its ``a_m``.
    """
    n = _check_int(n, "n", 1)
    grid_size = _check_int(grid_size, "grid_size", 3)
    time = _check_real(time, "time", low=0.0, low_open=True)
    seed = _check_seed(seed)
    modes = _check_int(modes, "modes", 1)
    splits = _check_splits(splits)
    dtype = _check_dtype(dtype)
    refine = _check_int(refine, "refine", 1)
    fine_intervals = refine * (grid_size - 1)
    if modes >= fine_intervals:
        raise ValueError(
            f"modes must be below refine * (grid_size - 1) = {fine_intervals} so the fine grid "
            f"resolves every mode, got modes={modes}"
        )
    rng = np.random.default_rng(seed)
    m = np.arange(1, modes + 1)
    coeffs = rng.standard_normal((n, modes)) / m
    fine = np.linspace(0.0, 1.0, fine_intervals + 1)
    basis = np.sin(np.pi * np.outer(m, fine))  # [modes, F]
    basis[:, [0, -1]] = 0.0  # sin(m pi) is zero; remove its rounding error
    evolved = _heat_propagate(basis, time, refine)  # [modes, F]
    x = coeffs @ basis[:, ::refine]
    y = coeffs @ evolved[:, ::refine]
    nodes = torch.linspace(0.0, 1.0, grid_size, dtype=torch.float64).to(dtype)
    return _package(
        "heat",
        x,
        y,
        task="regression",
        num_classes=None,
        splits=splits,
        seed=seed,
        dtype=dtype,
        meta={
            "nodes": nodes,
            "time": time,
            "modes": modes,
            "refine": refine,
            "domain": [(0.0, 1.0)],
        },
    )


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------

_LOADERS: dict[str, Callable[..., DatasetSplits]] = {
    "circles": circles,
    "annuli": annuli,
    "xor": xor,
    "chess": chess,
    "moons": moons,
    "digits": digits,
    "heat": heat,
}

DATASETS: tuple[str, ...] = tuple(_LOADERS)


def load(name: str, seed: int = 0, **kwargs: Any) -> DatasetSplits:
    """The data set ``name`` (one of :data:`DATASETS`) built with ``seed`` and ``kwargs``."""
    loader = _LOADERS.get(name) if isinstance(name, str) else None
    if loader is None:
        raise ValueError(f"name must be one of {', '.join(DATASETS)}; got name={name!r}")
    return loader(seed=seed, **kwargs)
