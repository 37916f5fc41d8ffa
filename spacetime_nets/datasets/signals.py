"""Classification of continuous functions on ``[0, 1]``, sampled at any resolution.

Each sample is a continuous function ``f(t) = A * T_c(0.5 + (t - 0.5 - d) / s) + b (t - 0.5) +
e + g(t)``: the template ``T_c`` of its class ``c`` shifted by ``d``, stretched by ``s``, scaled
by ``A``, sheared by the trend ``b``, offset by ``e``, plus a smooth correlated noise ``g`` (a
random trigonometric polynomial). The random numbers of a sample do not depend on where it is
evaluated, so the same seed gives the same functions, hence the same data set, at every
resolution: a set on ``2 n - 1`` nodes restricted to every other node is the set on ``n``.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    _numeric,
    _out_bytes,
    _package,
)

__all__ = ["SIGNAL_CLASSES", "signal_templates", "signals"]

SIGNAL_CLASSES: tuple[str, ...] = (
    "bump",
    "two bumps",
    "sine",
    "double sine",
    "step",
    "tent",
    "plateau",
    "chirp",
    "damped wave",
    "dipole",
)
"""The ten class templates, in label order."""

_NOISE_MODES = 12


def signal_templates(t: np.ndarray) -> np.ndarray:
    """The ten templates evaluated at ``t`` (any shape, any real values): ``[10, *t.shape]``.

    Each is continuous on the real line and of order one on ``[0, 1]``.

    Args:
        t: the points, an array of real numbers of any shape.

    Returns:
        A float64 array ``[10, *t.shape]``: row ``c`` is the template of class ``c``
            ([`SIGNAL_CLASSES`][spacetime_nets.datasets.SIGNAL_CLASSES]``[c]``).
    """
    t = _numeric("t", t, "an array of real numbers")
    c = t - 0.5
    return np.stack(
        [
            np.exp(-((c / 0.12) ** 2)),
            np.exp(-(((t - 0.3) / 0.07) ** 2)) + np.exp(-(((t - 0.7) / 0.07) ** 2)),
            np.sin(2 * np.pi * t),
            np.sin(4 * np.pi * t),
            np.tanh(c / 0.06),
            np.maximum(0.0, 1.0 - np.abs(c) / 0.25),
            0.5 * (np.tanh((t - 0.3) / 0.03) - np.tanh((t - 0.7) / 0.03)),
            np.sin(2 * np.pi * (2 * t + 3 * t**2)) * np.exp(-((c / 0.45) ** 2)),
            np.exp(-3 * np.abs(t - 0.2)) * np.cos(6 * np.pi * (t - 0.2)),
            -2.33 * (c / 0.1) * np.exp(-((c / 0.1) ** 2)),
        ]
    )


def _check_nodes(nodes: object) -> np.ndarray:
    pts = _numeric("nodes", nodes, "a 1-D array of points in [0, 1]")
    if pts.ndim != 1 or pts.size < 2:
        raise ValueError(
            f"nodes: expected a 1-D array of at least two points in [0, 1], got shape {pts.shape}"
        )
    bad = ~(np.isfinite(pts) & (pts >= 0.0) & (pts <= 1.0))
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise ValueError(f"nodes: expected finite points in [0, 1], got nodes[{j}]={pts[j]!r}")
    return pts


def signals(
    n: int = 2000,
    grid_size: int | None = None,
    seed: int = 0,
    noise: float = 0.2,
    white_noise: float = 0.0,
    nodes: Sequence[float] | np.ndarray | torch.Tensor | None = None,
    splits: Sequence[float] = DEFAULT_SPLITS,
    dtype: torch.dtype = torch.float32,
) -> DatasetSplits:
    """Ten classes of continuous functions on ``[0, 1]`` (see the module docstring): ``x``
    ``[n, m]`` the functions at ``m`` nodes, ``y`` ``[n]`` the class
    ([`SIGNAL_CLASSES`][spacetime_nets.datasets.SIGNAL_CLASSES]).

    Per sample: shift ``d ~ U(-0.12, 0.12)``, stretch ``s ~ U(0.8, 1.25)``, amplitude ``A ~
    U(0.6, 1.4)``, trend ``b ~ U(-1, 1)``, offset ``e ~ U(-0.5, 0.5)``, and noise ``g(t) =
    noise * sum_{k=1}^{12} w_k (p_k cos 2 pi k t + q_k sin 2 pi k t)``, ``p, q ~ N(0, 1)``, ``w_k
    proportional to 1 / (1 + (k / 4)^2)`` with ``sum w_k^2 = 1`` (so ``g(t)`` has standard
    deviation ``noise``). With ``white_noise > 0`` every sample value also gets independent
    Gaussian measurement noise of that standard deviation, as a sensor gives at its sampling
    rate (drawn per node, so it is not the same function at another resolution: to compare
    resolutions, resample one set). Classes are balanced (counts differ by at most one).

    Args:
        n: number of samples.
        grid_size: nodes of the default grid ``linspace(0, 1, grid_size)`` (end points
            included; 65 when neither ``grid_size`` nor ``nodes`` is given).
        seed: seeds every random number and the split.
        noise: standard deviation of the smooth noise (``>= 0``).
        white_noise: standard deviation of the white measurement noise per node (``>= 0``).
        nodes: explicit evaluation points in ``[0, 1]`` (1-D); then ``grid_size`` is left out
            or equals ``len(nodes)``.
        splits: train / val / test fractions.
        dtype: floating dtype of ``x``.

    Returns:
        A classification [`DatasetSplits`][spacetime_nets.datasets.DatasetSplits] with
            ``meta["nodes"]`` the evaluation points.
    """
    n = check_int("n", n, 1)
    seed = _check_seed(seed)
    noise = _check_real("noise", noise)
    white_noise = _check_real("white_noise", white_noise)
    splits = _check_splits(splits)
    dtype = _check_dtype(dtype)
    if nodes is None:
        grid_size = 65 if grid_size is None else check_int("grid_size", grid_size, 2)
        m = grid_size
    else:
        pts = _check_nodes(nodes)
        if grid_size is not None and check_int("grid_size", grid_size, 2) != pts.size:
            raise ValueError(
                f"grid_size: expected None or len(nodes)={pts.size} (give one of them), got "
                f"{grid_size!r}"
            )
        m = pts.size
    # warped, templates, noise and their sums: about 10 float64 arrays [n, m]
    _check_bytes(80.0 * n * m + _out_bytes(n, m, 0, dtype), {"n": n, "grid_size": grid_size or m})
    if nodes is None:
        pts = np.linspace(0.0, 1.0, m)
        rule = "trapezoid"
    else:
        rule = None
    classes = len(SIGNAL_CLASSES)
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % classes).astype(np.int64)
    shift = rng.uniform(-0.12, 0.12, n)
    stretch = rng.uniform(0.8, 1.25, n)
    amp = rng.uniform(0.6, 1.4, n)
    trend = rng.uniform(-1.0, 1.0, n)
    offset = rng.uniform(-0.5, 0.5, n)
    pq = rng.standard_normal((n, 2, _NOISE_MODES))
    k = np.arange(1, _NOISE_MODES + 1)
    w = 1.0 / (1.0 + (k / 4.0) ** 2)
    w = w / np.sqrt(np.sum(w**2))
    warped = 0.5 + (pts[None, :] - 0.5 - shift[:, None]) / stretch[:, None]  # [n, m]
    x = np.empty((n, pts.size))
    for c in range(classes):
        rows = np.flatnonzero(y == c)
        x[rows] = signal_templates(warped[rows])[c]
    phase = 2 * np.pi * np.outer(pts, k)  # [m, K]
    g = (pq[:, 0] * w) @ np.cos(phase).T + (pq[:, 1] * w) @ np.sin(phase).T  # [n, m]
    x = amp[:, None] * x + trend[:, None] * (pts[None, :] - 0.5) + offset[:, None] + noise * g
    if white_noise > 0:
        # its own stream: the smooth part stays the same whatever white_noise is
        x = x + white_noise * np.random.default_rng([seed, 1]).standard_normal(x.shape)
    return _package(
        "signals",
        x,
        y,
        task="classification",
        num_classes=classes,
        splits=splits,
        seed=seed,
        dtype=dtype,
        blame={"noise": noise, "white_noise": white_noise},
        meta={
            "nodes": torch.as_tensor(pts, dtype=torch.float64).to(dtype),
            "rule": rule,
            "domain": [(0.0, 1.0)],
            "noise": noise,
            "white_noise": white_noise,
            "class_names": SIGNAL_CLASSES,
            "class_counts": tuple(int(c) for c in np.bincount(y, minlength=classes)),
        },
    )
