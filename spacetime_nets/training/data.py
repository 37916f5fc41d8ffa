"""Training data: uniform access to (x, y) pairs, ``Split`` objects and torch Datasets, and
the check of a whole data set before the first update.

``check_data`` reads every row once: inputs must be real floating point and finite (also
after the conversion to the model's dtype), class labels integer, one per row and in
``0 .. m-1`` for a model with ``m`` outputs, regression targets floating, finite and of shape
``[N, m]``. A bad row is named by its index in the data set, not in a batch.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.data import Dataset, TensorDataset, default_collate

from ..objectives import get_loss
from ..validation import first_nonfinite

_CHUNK = 4096  # rows per collated chunk when a torch Dataset is checked
_ANY_P = 2.0  # a valid exponent, to read a loss entry's properties (p was checked before)


class Data:
    """Uniform access to (x, y) pairs, ``Split`` objects and sized torch Datasets.

    Args:
        data: a pair of tensors ``(x, y)`` with the same number of rows, a two-tensor
            ``TensorDataset``, an object with tensor attributes ``x`` and ``y`` (a
            [`Split`][spacetime_nets.datasets.Split]) or a sized torch Dataset of ``(x, y)``
            items.
        name: the data set's name in error messages (``"train"``, ``"val"``).
    """

    def __init__(self, data: Any, name: str) -> None:
        self.name = name
        self.x = self.y = None
        self.dataset = None
        if isinstance(data, TensorDataset) and len(data.tensors) == 2:
            data = tuple(data.tensors)
        elif (
            not isinstance(data, (tuple, list))
            and isinstance(getattr(data, "x", None), torch.Tensor)
            and isinstance(getattr(data, "y", None), torch.Tensor)
        ):
            data = (data.x, data.y)
        if isinstance(data, (tuple, list)):
            if len(data) != 2 or not all(isinstance(t, torch.Tensor) for t in data):
                raise ValueError(f"{name}: expected a pair of tensors (x, y), a Split or a Dataset")
            x, y = data
            if x.dim() == 0 or y.dim() == 0 or x.shape[0] != y.shape[0]:
                raise ValueError(
                    f"{name}: x and y need the same number of rows, got shapes "
                    f"{tuple(x.shape)} and {tuple(y.shape)}"
                )
            self.x, self.y = x, y
            self.n = int(x.shape[0])
        elif isinstance(data, Dataset) and hasattr(data, "__len__"):
            self.dataset = data
            self.n = len(data)
        else:
            raise ValueError(
                f"{name}: expected (x, y) tensors, a datasets.Split or a sized torch Dataset, "
                f"got {type(data).__name__}"
            )
        if self.n == 0:
            raise ValueError(f"{name}: the data set is empty")

    def __len__(self) -> int:
        return self.n

    def peek_targets(self) -> torch.Tensor:
        """The first row's target, ``[1, ...]``.

        Returns:
            The target of row 0 with a leading batch axis of size 1.
        """
        if self.y is not None:
            return self.y[:1]
        return torch.as_tensor(self.dataset[0][1]).unsqueeze(0)

    def to(self, device: torch.device) -> Data:
        """Move tensor data to ``device`` once (a Dataset is read batch by batch).

        Args:
            device: the device to move ``x`` and ``y`` to.

        Returns:
            This object, changed in place.
        """
        if self.x is not None:
            self.x, self.y = self.x.to(device), self.y.to(device)
        return self

    def raw(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows ``idx`` as they are stored (a Dataset's items collated).

        Args:
            idx: the row indices, ``[B]`` (int64).

        Returns:
            ``(x, y)``: the rows' inputs ``[B, ...]`` and targets ``[B, ...]``, in their
                stored dtypes.
        """
        if self.x is not None:
            i = idx.to(self.x.device)
            return self.x[i], self.y[i]
        x, y = default_collate([self.dataset[int(j)] for j in idx])[:2]
        return torch.as_tensor(x), torch.as_tensor(y)

    def batch(
        self, idx: torch.Tensor, device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows ``idx`` on ``device``: floating values in ``dtype``, labels as int64.

        Args:
            idx: the row indices, ``[B]`` (int64).
            device: the device of the returned tensors.
            dtype: the floating dtype of floating values (the model's).

        Returns:
            ``(x, y)``: inputs ``[B, ...]`` and targets ``[B]`` (labels) or ``[B, ...]``.
        """
        x, y = self.raw(idx)
        return _cast(x, device, dtype), _cast(y, device, dtype)

    def chunks(self):
        """(first row, x, y) over the whole data set in chunks, as stored.

        Yields:
            ``(first, x, y)``, the index of the chunk's first row, its inputs and its targets
                (all rows at once for tensor data, 4096 rows at a time for a Dataset).
        """
        if self.x is not None:
            yield 0, self.x, self.y
            return
        for s in range(0, self.n, _CHUNK):
            x, y = self.raw(torch.arange(s, min(s + _CHUNK, self.n)))
            yield s, x, y


def _cast(t: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    t = torch.as_tensor(t)
    if t.is_floating_point():
        return t.to(device=device, dtype=dtype)
    return t.to(device=device, dtype=torch.long)


def is_class_labels(y: torch.Tensor) -> bool:
    """Integer targets (not bool, not complex) are class indices.

    Args:
        y: targets of any shape.

    Returns:
        True when ``y`` holds class labels.
    """
    return not y.is_floating_point() and not y.is_complex() and y.dtype != torch.bool


def resolve_loss(loss: str | None, y: torch.Tensor, p: float | None) -> tuple[str, float | None]:
    """(the loss name, ``p`` as a float): cross_entropy for class labels and mse otherwise
    when ``loss`` is None. ``p`` may be any real number type (a NumPy scalar too); it is
    refused with a loss that does not read it (only ``lp`` and ``rel_lp`` do), where it
    would be silently ignored.

    Args:
        loss: a loss name of ``objectives.LOSSES``, or None to choose from the targets.
        y: some targets (the first row is enough), to tell labels from regression targets.
        p: the exponent of ``lp`` / ``rel_lp``, or None.

    Returns:
        ``(loss, p)``: the loss name and ``p`` as a float (or None).

    Raises:
        ValueError: an unknown loss, a relative loss with class labels, or a ``p`` the loss
            does not read or that is not a number >= 1.
    """
    if loss is None:
        loss = "cross_entropy" if is_class_labels(y) else "mse"
    entry = get_loss(loss, 2.0)  # the name only; p is checked below
    if entry.relative and is_class_labels(y):
        raise ValueError(
            f"loss: {loss} is a relative error of function targets, but the targets are class "
            "labels (against a one-hot label it is the plain distance); choose cross_entropy, "
            "mse, l2 or lp"
        )
    if p is not None:
        if not entry.needs_p:
            raise ValueError(
                f"p: only the lp and rel_lp losses read an exponent; got p={p!r} with the "
                f"{loss} loss (leave p out, or choose loss='lp' or 'rel_lp')"
            )
        if isinstance(p, bool) or isinstance(p, str):
            raise ValueError(
                f"p: the {loss} loss needs a number p >= 1 (inf: the max norm), got {p!r}"
            )
        try:
            p = float(p)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            raise ValueError(
                f"p: the {loss} loss needs a number p >= 1 (inf: the max norm), got {p!r}"
            ) from None
    get_loss(loss, p)
    return loss, p


def _where(index: tuple[int, ...], first_row: int) -> str:
    row = first_row + index[0]
    rest = f", column {', '.join(map(str, index[1:]))}" if len(index) > 1 else ""
    return f"row {row}{rest}"


def _function_readout(model: object) -> bool:
    """Whether ``model`` answers a function on a grid (its readout entry says ``function``)."""
    return bool(getattr(getattr(model, "readout_entry", None), "function", False))


def model_outputs(model: object) -> int | None:
    """The number of outputs per sample a model's targets must have, or None when it is not
    fixed (a function readout answers on the input's grid).

    Args:
        model: the model (any object; its ``out_features`` and ``readout_entry`` are read).

    Returns:
        ``model.out_features`` when it is an int, else None.
    """
    if _function_readout(model):
        return None
    out = getattr(model, "out_features", None)
    return out if isinstance(out, int) and not isinstance(out, bool) else None


def check_data(data: Data, dtype: torch.dtype, out_features: int | None, loss: str) -> None:
    """Check every row of ``data`` once, before any update (see the module docstring).

    Args:
        data: the wrapped data set.
        dtype: the model's floating dtype, the inputs are converted to.
        out_features: the number of model outputs ``m`` (None: unknown, not checked).
        loss: the loss name; cross_entropy needs class labels.

    Raises:
        ValueError: naming the data set (``train`` / ``val``), the row and what is wrong.
    """
    name = data.name
    for first, x, y in data.chunks():
        for which, t in (("x", x), ("y", y)):
            if t.is_complex():
                raise ValueError(
                    f"{name}: {which} is complex ({t.dtype}); the model computes with real "
                    f"{dtype} values"
                )
        if not x.is_floating_point():
            raise ValueError(
                f"{name}: x has dtype {x.dtype}; expected floating-point inputs (the model "
                f"computes in {dtype}; convert them with x.to({dtype}))"
            )
        bad = first_nonfinite(x)
        if bad is None and x.dtype != dtype:
            bad = first_nonfinite(x.to(dtype))
            if bad is not None:
                raise ValueError(
                    f"{name}: x at {_where(bad, first)} is {float(x[bad])!r}, which is not "
                    f"finite in the model's {dtype}"
                )
        if bad is not None:
            raise ValueError(f"{name}: x is not finite at {_where(bad, first)} ({float(x[bad])})")
        if y.dtype == torch.bool:
            raise ValueError(
                f"{name}: y is bool; give class labels as integers (y.long()) or regression "
                "targets as floats (y.float())"
            )
        entry = get_loss(loss, _ANY_P)
        if is_class_labels(y):
            _check_labels(name, y, first, out_features)
        else:
            if entry.takes_labels:
                raise ValueError(
                    f"{name}: {loss} needs integer class labels, y has dtype {y.dtype}"
                )
            _check_targets(name, y, first, out_features)
            if entry.relative:
                _check_nonzero_targets(name, y, first, loss)


def _check_labels(name: str, y: torch.Tensor, first: int, m: int | None) -> None:
    if y.dim() != 1:
        raise ValueError(
            f"{name}: class labels must have shape [N] (one label per row), got {tuple(y.shape)}"
        )
    low = y < 0
    high = (y >= m) if m is not None else torch.zeros_like(low)
    out = low | high
    if bool(out.any()):
        i = int(out.nonzero()[0, 0])
        span = f"0..{m - 1} for a model with {m} outputs" if m is not None else "labels >= 0"
        raise ValueError(
            f"{name}: label {int(y[i])} at row {first + i} is out of range (expected {span})"
        )


def _check_nonzero_targets(name: str, y: torch.Tensor, first: int, loss: str) -> None:
    """A relative loss |z - y| / |y| is undefined for a target with |y| = 0."""
    zero = y.reshape(y.shape[0], -1).abs().amax(dim=1) == 0
    if bool(zero.any()):
        i = int(zero.nonzero()[0, 0])
        raise ValueError(
            f"{name}: the target at row {first + i} is zero everywhere, so the relative error "
            f"of the {loss} loss (|z - y| / |y|) is undefined there; drop such rows or use "
            "another loss (mse)"
        )


def _check_targets(name: str, y: torch.Tensor, first: int, m: int | None) -> None:
    if m is not None and (y.dim() != 2 or y.shape[1] != m):
        raise ValueError(
            f"{name}: regression targets must have shape [N, {m}] (the model has {m} outputs), "
            f"got {tuple(y.shape)}"
        )
    bad = first_nonfinite(y)
    if bad is not None:
        raise ValueError(
            f"{name}: the target y is not finite at {_where(bad, first)} ({float(y[bad])}): "
            "bad data, not a training failure"
        )


def normalizer_stats(data: Data) -> tuple[float, float, float, float]:
    """(mean(x), std(x), mean(y), std(y)) over every entry of every row of ``data`` (the
    unbiased standard deviation, in float64), the scalars ``fit(normalize=True)`` gives the
    model's ``set_normalizers`` (see [`SpaceTimeNet`][spacetime_nets.models.SpaceTimeNet]);
    (0, 1) for class labels.

    Args:
        data: the wrapped training data, read twice in chunks.

    Returns:
        ``(x_mean, x_std, y_mean, y_std)`` as floats.

    Raises:
        ValueError: when the inputs (or the regression targets) are constant (std 0): there
            is nothing to scale by.
    """
    # [sum, sum of squares about the mean, count] of the inputs x and of the targets y; the
    # targets are left out (and kept as they are: mean 0, std 1) when they are class labels
    sums = ([0.0, 0.0, 0], [0.0, 0.0, 0])
    labels = False
    for _, x, y in data.chunks():
        labels = labels or is_class_labels(y)
        for acc, t in zip(sums, (x,) if labels else (x, y)):
            t = t.detach().double()
            acc[0] += float(t.sum())
            acc[2] += t.numel()
    for _, x, y in data.chunks():  # a second pass: the squares about the mean (no cancellation)
        for acc, t in zip(sums, (x,) if labels else (x, y)):
            acc[1] += float(((t.detach().double() - acc[0] / acc[2]) ** 2).sum())
    out = []
    scaled = zip(("inputs x", "targets y"), sums[:1] if labels else sums)
    for what, (total, sq, n) in scaled:
        mean = total / n
        std = math.sqrt(sq / (n - 1)) if n > 1 else 0.0
        if not std > 0:
            raise ValueError(
                f"normalize: the {data.name} {what} are constant ({mean:g} everywhere), so "
                "there is no scale to standardise by; leave normalize off"
            )
        out += [mean, std]
    if labels:
        out += [0.0, 1.0]
    return tuple(out)
