"""Containers, argument checks and the stratified train / validation / test split shared by
every generator of :mod:`spacetime_nets.datasets`."""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

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
    if isinstance(value, (bool, str, bytes)):  # no silent parsing of text
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
