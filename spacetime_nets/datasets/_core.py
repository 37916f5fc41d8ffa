"""Containers, argument checks and the stratified train / validation / test split shared by
every generator of [`spacetime_nets.datasets`][spacetime_nets.datasets]."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ..validation import check_real, check_seed, first_nonfinite

DEFAULT_SPLITS: tuple[float, float, float] = (0.7, 0.15, 0.15)
"""The default train / validation / test fractions of every generator."""
_SPLIT_NAMES = ("train", "val", "test")


# --------------------------------------------------------------------------------------------
# containers
# --------------------------------------------------------------------------------------------


@dataclass
class Split:
    """One part of a data set: inputs ``x`` ``[N, ...]`` and targets ``y`` ``[N, ...]``.

    A ValueError is raised when either is not a tensor with at least one dimension, or when
    their numbers of rows differ.

    Attributes:
        x: the inputs, ``[N, d]`` (features, or a function's values at the nodes).
        y: the targets, ``[N]`` class labels (``torch.long``) or ``[N, d]`` values.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        for label, t in (("x", self.x), ("y", self.y)):
            if not isinstance(t, torch.Tensor) or t.dim() == 0:
                shown = "a 0-d tensor" if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"{label}: expected a tensor [N, ...], got {shown}")
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(
                "Split: x and y must have the same number of rows, got "
                f"x.shape={tuple(self.x.shape)} and y.shape={tuple(self.y.shape)}"
            )

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def to(self, device: torch.device | str) -> Split:
        """A copy of this split with ``x`` and ``y`` on ``device``.

        Args:
            device: the target device (``"cpu"``, ``"cuda"``, a ``torch.device``).

        Returns:
            A new [`Split`][spacetime_nets.datasets.Split] (the tensors are not copied when
                already there).
        """
        return Split(self.x.to(device), self.y.to(device))

    def as_tensor_dataset(self) -> TensorDataset:
        """The split as a ``TensorDataset`` yielding ``(x[i], y[i])``.

        Returns:
            A ``torch.utils.data.TensorDataset`` over ``x`` and ``y`` (no copy).
        """
        return TensorDataset(self.x, self.y)


@dataclass
class DatasetSplits:
    """A data set split three ways, with what a model needs to know about it.

    ``task`` is ``"classification"`` (``num_classes`` set, ``out_features == num_classes``) or
    ``"regression"`` (``num_classes`` is ``None``). ``meta["split_indices"]`` maps ``"train"``,
    ``"val"`` and ``"test"`` to the ``torch.long`` row indices of each split in the data set as
    generated, before splitting; the three are disjoint and together cover ``range(N)``.

    Attributes:
        train: the training split.
        val: the validation split.
        test: the test split.
        name: the data set's name (a key of
            [`REGISTRY`][spacetime_nets.datasets.REGISTRY]).
        num_classes: the number of classes, or None for a regression set.
        in_features: the number of input features per sample ``d`` (of ``x`` ``[N, d]``).
        out_features: the number of model outputs: ``num_classes``, or the target size.
        task: ``"classification"`` or ``"regression"``.
        meta: how the set was built: its generator's arguments, ``"split_indices"``,
            ``"seed"``, ``"splits"`` and, for function data, ``"nodes"`` (and
            ``"grid_shape"`` for 2-D fields).
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

    @property
    def labelled(self) -> bool:
        """Whether the targets are class labels (``task == "classification"``,
        ``num_classes`` set)."""
        return self.num_classes is not None

    def to(self, device: torch.device | str) -> DatasetSplits:
        """A copy with the three splits on ``device`` (``meta`` is shared, not copied).

        Args:
            device: the target device (``"cpu"``, ``"cuda"``, a ``torch.device``).

        Returns:
            A new [`DatasetSplits`][spacetime_nets.datasets.DatasetSplits].
        """
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
# argument checks (the wording of ``spacetime_nets.validation``: ``name: expected X, got Y``)
# --------------------------------------------------------------------------------------------

MAX_DATA_BYTES = 4 << 30
"""Largest memory, in bytes, that building one data set may take (its float64 work arrays and
the tensors it returns, estimated from the arguments before anything is allocated): 4 GiB.
A larger request raises ValueError naming the size arguments; set
``spacetime_nets.datasets.MAX_DATA_BYTES`` to allow more."""


def _max_bytes() -> int:
    """The bound in force: ``spacetime_nets.datasets.MAX_DATA_BYTES`` (where a user raises it)."""
    package = sys.modules.get(__package__ or "")
    return int(getattr(package, "MAX_DATA_BYTES", MAX_DATA_BYTES))


def _check_bytes(need: float, args: dict[str, object]) -> None:
    """Refuse, before allocating, a data set whose estimated memory ``need`` exceeds the bound.

    Args:
        need: estimated bytes.
        args: the size arguments and their values, named in the message.
    """
    bound = _max_bytes()
    if need > bound:
        names = ", ".join(args)
        shown = ", ".join(f"{k}={v!r}" for k, v in args.items())
        raise ValueError(
            f"{names}: the data set would take about {need / 2**30:,.1f} GiB of memory to "
            f"build, above the bound of {bound / 2**30:,.3g} GiB "
            f"(spacetime_nets.datasets.MAX_DATA_BYTES); expected smaller sizes, got {shown}"
        )


def _out_bytes(n: int, x_cols: int, y_cols: int, dtype: torch.dtype) -> float:
    """Bytes of the returned set: float64 arrays, then the tensors in ``dtype`` and their
    copies in the three splits (``y_cols = 0``: class labels)."""
    item = torch.empty((), dtype=dtype).element_size()
    cols = x_cols + y_cols
    return float(n) * (cols * (8 + 2 * item) + (0 if y_cols else 3 * 8))


def _check_seed(seed: object) -> int:
    """A seed in ``[0, 2**32)``: scikit-learn's splits take no larger one."""
    try:
        s = check_seed("seed", seed)
    except ValueError:
        s = None
    if s is None or s >= 2**32:
        raise ValueError(f"seed: expected an int in [0, 2**32), got {seed!r}")
    return s


def _check_real(
    name: str,
    value: object,
    *,
    positive: bool = False,
    low: float | None = 0.0,
    high: float | None = None,
    high_open: bool = False,
) -> float:
    """A finite real number ``>= 0`` (``> 0`` with ``positive``; any sign with ``low=None``)
    and below ``high`` where one is given; text, bools and NaN are refused."""
    if isinstance(value, (str, bytes)):  # no silent parsing of text
        raise ValueError(f"{name}: expected a number, got {value!r}")
    if low is not None:
        v = check_real(name, value, positive=positive)
    else:
        if isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{name}: expected a number, got {value!r}")
        try:
            v = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"{name}: expected a number, got {value!r:.80}") from None
        if not math.isfinite(v):
            raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if high is not None and (v >= high if high_open else v > high):
        lo = "(0" if positive else "[0"
        hi = ")" if high_open else "]"
        raise ValueError(f"{name}: expected a finite number in {lo}, {high:g}{hi}, got {value!r}")
    return v


def _check_splits(splits: object) -> tuple[float, float, float]:
    msg = (
        "splits: expected three positive fractions (train, val, test) summing to 1, "
        f"got {splits!r:.80}"
    )
    if isinstance(splits, (str, bytes)) or not hasattr(splits, "__iter__"):
        raise ValueError(msg)
    try:
        items = list(splits)  # type: ignore[call-overload]
        if any(isinstance(s, (bool, str, bytes, np.bool_)) for s in items):
            raise ValueError(msg)
        parts = tuple(float(s) for s in items)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(msg) from None
    if len(parts) != 3 or not all(math.isfinite(p) and p > 0 for p in parts):
        raise ValueError(msg)
    if abs(sum(parts) - 1.0) > 1e-6:
        raise ValueError(msg)
    return parts  # type: ignore[return-value]


def _check_dtype(dtype: object) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype: expected a floating torch.dtype, got {dtype!r}")
    return dtype


def _numeric(name: str, value: object, what: str) -> np.ndarray:
    """``value`` (array-like or tensor) as a float64 array; booleans, text and other
    non-numbers are refused rather than converted."""
    if isinstance(value, torch.Tensor):
        if value.dtype == torch.bool or value.is_complex():
            raise ValueError(f"{name}: expected {what}, got a tensor of dtype {value.dtype}")
        return value.detach().cpu().double().numpy()
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected {what}, got {type(value).__name__}") from None
    if arr.dtype.kind not in "iuf":
        shown = f"{value!r:.80}" if arr.dtype.kind in "USO" else f"dtype {arr.dtype}"
        raise ValueError(f"{name}: expected {what}, got {shown}")
    return arr.astype(np.float64, copy=False)


def _split_sizes(n: int, splits: tuple[float, float, float], minimum: int) -> tuple[int, int, int]:
    n_train = int(round(n * splits[0]))
    n_val = int(round(n * splits[1]))
    n_test = n - n_train - n_val
    sizes = (n_train, n_val, n_test)
    if min(sizes) < minimum:
        what = f"{minimum} samples" if minimum > 1 else "one sample"
        raise ValueError(
            f"n: expected enough samples for each split to hold at least {what}, got n={n}: "
            f"too small for splits={splits!r} (the split sizes would be {sizes})"
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
    blame: dict[str, object] | None = None,
) -> DatasetSplits:
    """Split and package ``x``, ``y``; data that are not finite in ``dtype`` are refused with a
    message naming the arguments in ``blame`` (those that set the size of the values)."""
    n = x.shape[0]
    classification = task == "classification"
    index = _split_indices(y if classification else None, n, splits, seed)
    x_t = torch.as_tensor(np.ascontiguousarray(x), dtype=dtype)
    y_t = torch.as_tensor(np.ascontiguousarray(y), dtype=torch.long if classification else dtype)
    for part, t in (("x", x_t), ("y", y_t)):
        where = first_nonfinite(t)
        if where is not None:
            args = dict(blame or {})
            args.setdefault("dtype", dtype)
            names = ", ".join(args)
            shown = ", ".join(f"{k}={v!r}" for k, v in args.items())
            raise ValueError(
                f"{names}: expected arguments that give finite data, got {shown}: the "
                f"generated {part} is not finite in {dtype} at row {where[0]} (its value "
                f"{float(t[where]):g}); use smaller values or a wider dtype"
            )
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
