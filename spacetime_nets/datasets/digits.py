"""The 8x8 handwritten digits, served at their own resolution or refined by interpolation, and
the pixel geometry of images on the unit square."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..validation import check_int
from ._core import (
    DEFAULT_SPLITS,
    DatasetSplits,
    _check_bytes,
    _check_dtype,
    _check_seed,
    _check_splits,
    _out_bytes,
    _package,
)

__all__ = ["digits", "pixel_centres", "refine_matrix", "resample_images"]


def refine_matrix(size: int, scale: int, interpolation: str = "bilinear") -> np.ndarray:
    """The ``[size * scale, size]`` matrix taking the values of ``size`` cells of ``[0, 1]`` to
    the values at the centres of ``size * scale`` cells.

    ``"nearest"``: each fine cell takes the value of the coarse cell containing it (the same
    piecewise-constant function). ``"bilinear"``: the piecewise-linear interpolant through the
    coarse cell centres ``(i + 0.5) / size``, constant beyond the first and last centre.
    Applied along both axes of an image it is bilinear interpolation.

    Args:
        size: coarse cells (``>= 1``).
        scale: refinement factor (``>= 1``).
        interpolation: ``"bilinear"`` or ``"nearest"``.

    Returns:
        A float64 array whose rows sum to one.
    """
    size = check_int("size", size, 1)
    scale = check_int("scale", scale, 1)
    build = _INTERPOLATIONS.get(interpolation) if isinstance(interpolation, str) else None
    if build is None:
        raise ValueError(
            f"interpolation: expected one of {', '.join(_INTERPOLATIONS)}, "
            f"got interpolation={interpolation!r}"
        )
    _check_bytes(8.0 * 3 * size * size * scale, {"size": size, "scale": scale})
    return build(size, scale)


def _nearest(size: int, scale: int) -> np.ndarray:
    """Each fine cell takes the value of the coarse cell that contains it."""
    fine = size * scale
    out = np.zeros((fine, size))
    rows = np.arange(fine)
    out[rows, rows // scale] = 1.0
    return out


def _bilinear(size: int, scale: int) -> np.ndarray:
    """The piecewise-linear interpolant through the coarse cell centres, constant past the
    first and last one."""
    fine = size * scale
    out = np.zeros((fine, size))
    rows = np.arange(fine)
    pos = np.clip((rows + 0.5) / scale - 0.5, 0.0, size - 1.0)  # in coarse-centre units
    lo = np.minimum(np.floor(pos).astype(np.int64), max(size - 2, 0))
    frac = pos - lo
    if size == 1:
        out[:, 0] = 1.0
        return out
    out[rows, lo] = 1.0 - frac
    out[rows, lo + 1] += frac
    return out


_INTERPOLATIONS: dict[str, Callable[[int, int], np.ndarray]] = {
    "bilinear": _bilinear,
    "nearest": _nearest,
}
"""The interpolations `refine_matrix` takes: name -> ``(size, scale) -> matrix``."""


def digits(
    seed: int = 0,
    splits: Sequence[float] = DEFAULT_SPLITS,
    dtype: torch.dtype = torch.float32,
    scale: int = 1,
    interpolation: str = "bilinear",
) -> DatasetSplits:
    """The 1797 8x8 handwritten digits bundled with scikit-learn: ``x`` ``[N, 64 * scale^2]``
    in ``[0, 1]`` (pixel / 16, row-major), ``y`` ``[N]`` in ``{0, ..., 9}``.

    Pixel ``(r, c)`` is the cell ``[r/8, (r+1)/8) x [c/8, (c+1)/8)`` of the domain ``[0, 1]^2``
    (``meta["domain"]``, ``meta["image_shape"] == (8, 8)``); see
    [`resample_images`][spacetime_nets.datasets.resample_images]. Only ``seed`` (through the
    stratified split) changes the result. ``scale > 1`` serves the same images on ``8 scale x 8
    scale`` pixels (``meta["image_shape"]``), interpolated by
    [`refine_matrix`][spacetime_nets.datasets.refine_matrix] along both axes, for
    resolution-transfer studies; the split is the same at every scale.

    Args:
        seed: seeds the stratified split.
        splits: train / val / test fractions.
        dtype: floating dtype of ``x``.
        scale: pixels per original pixel along each axis (``>= 1``).
        interpolation: ``"bilinear"`` or ``"nearest"`` (used when ``scale > 1``).

    Returns:
        A classification [`DatasetSplits`][spacetime_nets.datasets.DatasetSplits] with 10
            classes.
    """
    from sklearn.datasets import load_digits

    seed = _check_seed(seed)
    splits = _check_splits(splits)
    dtype = _check_dtype(dtype)
    scale = check_int("scale", scale, 1)
    side = 8 * scale
    # the 1797 images, their half-refined and refined copies
    _check_bytes(
        8.0 * 1797 * (side * side * 2 + side * 8) + _out_bytes(1797, side * side, 0, dtype),
        {"scale": scale},
    )
    refine = refine_matrix(8, scale, interpolation)
    raw = load_digits()
    images = np.asarray(raw.images, dtype=np.float64) / 16.0
    if scale > 1:
        images = np.einsum("ir,nrc,jc->nij", refine, images, refine)
    side = 8 * scale
    x = images.reshape(len(images), -1)
    y = np.asarray(raw.target, dtype=np.int64)
    meta = {
        "image_shape": (side, side),
        "domain": [(0.0, 1.0), (0.0, 1.0)],
        "class_counts": tuple(int(c) for c in np.bincount(y, minlength=10)),
    }
    if scale > 1:
        meta["scale"] = scale
        meta["interpolation"] = interpolation
    return _package(
        "digits",
        x,
        y,
        task="classification",
        num_classes=10,
        splits=splits,
        seed=seed,
        dtype=dtype,
        meta=meta,
    )


def _check_image_shape(image_shape: object) -> tuple[int, int]:
    msg = f"image_shape: expected a pair of positive ints (h, w), got image_shape={image_shape!r}"
    try:
        h, w = image_shape  # type: ignore[misc]
        if isinstance(h, (bool, np.bool_)) or isinstance(w, (bool, np.bool_)):
            raise TypeError
        h, w = operator.index(h), operator.index(w)
    except (TypeError, ValueError):
        raise ValueError(msg) from None
    if h < 1 or w < 1:
        raise ValueError(msg)
    return h, w


def pixel_centres(image_shape: tuple[int, int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The centres of the pixels of an ``h x w`` image on ``[0, 1]^2``, ``[h * w, 2]``.

    Row ``r * w + c`` is ``((r + 0.5) / h, (c + 0.5) / w)``: row-major, matching flattened images.

    Args:
        image_shape: the image's ``(h, w)`` in pixels (positive ints).
        dtype: the floating dtype of the result.

    Returns:
        The pixel centres, ``[h * w, 2]``, the first coordinate along the rows.
    """
    h, w = _check_image_shape(image_shape)
    dtype = _check_dtype(dtype)
    _check_bytes(8.0 * 8 * h * w, {"image_shape": (h, w)})
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

    Args:
        x: the images, ``[N, h * w]``, flattened row-major.
        image_shape: the images' ``(h, w)`` in pixels.
        nodes: the points to sample at, ``[n, 2]`` in ``[0, 1]^2`` (first coordinate along
            the rows).

    Returns:
        The images' values at the nodes, ``[N, n]``.
    """
    h, w = _check_image_shape(image_shape)
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != h * w:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x: expected a tensor of shape [N, {h * w}] (h * w), got x.shape={shape}")
    if not isinstance(nodes, torch.Tensor) or nodes.dim() != 2 or nodes.shape[1] != 2:
        shape = tuple(nodes.shape) if isinstance(nodes, torch.Tensor) else type(nodes).__name__
        raise ValueError(f"nodes: expected a tensor of shape [n, 2], got nodes.shape={shape}")
    if nodes.dtype == torch.bool or nodes.is_complex():
        raise ValueError(f"nodes: expected real coordinates, got a tensor of dtype {nodes.dtype}")
    _check_bytes(
        float(x.shape[0]) * nodes.shape[0] * x.element_size() + 8.0 * 6 * nodes.shape[0],
        {"x": f"{x.shape[0]} images", "nodes": f"{nodes.shape[0]} nodes"},
    )
    pts = nodes.detach().to(device=x.device, dtype=torch.float64)
    if pts.numel() and not bool(((pts >= 0) & (pts <= 1)).all()):
        bad = pts[~((pts >= 0) & (pts <= 1)).all(dim=1)][0].tolist()
        raise ValueError(f"nodes: expected points in [0, 1]^2, got a node at {bad}")
    r = torch.floor(pts[:, 0] * h).long().clamp_(0, h - 1)
    c = torch.floor(pts[:, 1] * w).long().clamp_(0, w - 1)
    return x[:, r * w + c]
