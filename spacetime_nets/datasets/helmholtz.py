"""Operator learning for the 2-D Helmholtz equation with a fixed wavenumber on a non-periodic box,
solved once on a fine grid and served at coarser resolutions by subsampling (so a coarse set is
exactly the restriction of a finer one drawn with the same seed).

- ``helmholtz``: ``-lap u - k^2 u = f`` on ``[0, 1]^2`` with ``u = 0`` on the boundary; the
  map from a random forcing ``f`` to ``u``, on ``s x s`` nodes ``(i, j) / (s - 1)`` (boundary
  included), flattened row-major to ``[N, s * s]``, as for [`darcy`][spacetime_nets.datasets.darcy].

The solution operator is global: its Green's function oscillates with wavelength ``2 pi / k`` and
decays only like ``r^(-1/2)``, so every node of ``u`` depends on the forcing everywhere in the box.
The forcing is the Gaussian random field of [`darcy`][spacetime_nets.datasets.darcy] (a cosine
series with spectrum ``(1 + pi^2 |k|^2 / tau^2)^(-alpha / 2)``), drawn with the generator's own
``numpy.random.default_rng(seed)``; the global random state is never read or changed.
"""

from __future__ import annotations

import functools
import math
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
)
from .pde import _check_square_sizes, _square_bytes, _square_field, _square_regression

__all__ = ["helmholtz", "solve_helmholtz"]

#: ``k^2`` must differ from every Dirichlet eigenvalue by at least this fraction of ``k^2``.
_RESONANCE_GAP = 0.01
#: nodes per wavelength ``2 pi / k`` the fine grid must have at least.
_NODES_PER_WAVELENGTH = 8


def _laplacian_eigenvalues(f: int) -> np.ndarray:
    """The eigenvalues ``4 (F - 1)^2 sin^2(pi p / (2 (F - 1)))``, ``p = 1, ..., F - 2``, of the
    1-D three-point ``-d^2/dx^2`` with zero end values on the nodes ``i / (F - 1)``."""
    p = np.arange(1, f - 1)
    return (2.0 * (f - 1) * np.sin(np.pi * p / (2 * (f - 1)))) ** 2


def _resonance(wavenumber: float, f: int) -> str | None:
    """Why ``k = wavenumber`` is too close to resonance on ``F`` nodes per axis, or ``None``:
    ``k^2`` must stay ``_RESONANCE_GAP`` (relative) away from the eigenvalues of the
    five-point Dirichlet Laplacian on the grid and from those of ``-lap`` itself,
    ``pi^2 (p^2 + q^2)``, ``1 <= p, q <= F - 2``."""
    k2 = wavenumber * wavenumber
    if k2 == 0.0:
        return None
    mu = _laplacian_eigenvalues(f)
    p = np.arange(1, f - 1, dtype=np.float64)
    for what, one in (
        (f"of the five-point Laplacian on {f} x {f} nodes", mu),
        ("of -lap on [0, 1]^2, pi^2 (p^2 + q^2)", (np.pi * p) ** 2),
    ):
        lam = one[:, None] + one[None, :]
        gap = np.abs(lam - k2)
        pq = np.unravel_index(int(np.argmin(gap)), gap.shape)
        if gap[pq] < _RESONANCE_GAP * k2:
            return (
                f"k^2 = {k2:.6g} lies within {_RESONANCE_GAP:.0%} of {lam[pq]:.6g}, the "
                f"Dirichlet eigenvalue of mode (p, q) = ({pq[0] + 1}, {pq[1] + 1}) {what}; pick "
                "a wavenumber between two eigenvalues"
            )
    return None


def solve_helmholtz(f: np.ndarray, wavenumber: float = 0.0) -> np.ndarray:
    """Solve ``-lap u - wavenumber^2 u = f`` on ``[0, 1]^2`` with ``u = 0`` on the boundary.

    Five-point finite differences on the nodes ``(i, j) / (F - 1)`` of ``f`` (second order);
    the discrete operator is diagonal in the sine basis, so each system is solved exactly by a
    type-I discrete sine transform (``scipy.fft.dstn``) of the interior values, a division by
    the eigenvalues ``mu_p + mu_q - wavenumber^2`` and the inverse transform. The values of
    ``f`` on the boundary do not enter. ``wavenumber = 0`` is the Poisson problem.

    Args:
        f: forcing at the nodes, ``[F, F]`` or ``[B, F, F]``, ``F >= 3``.
        wavenumber: ``k >= 0``; ``k^2`` must stay 1% away from every Dirichlet eigenvalue of
            the grid's Laplacian and of ``-lap`` (else the problem is near resonance).

    Returns:
        ``u`` at the same nodes, ``[F, F]`` or ``[B, F, F]``, float64, zero on the boundary.
    """
    from scipy.fft import dstn, idstn

    rhs = _numeric("f", f, "an array of forcing values [F, F] or [B, F, F]")
    if rhs.ndim not in (2, 3) or rhs.shape[-1] != rhs.shape[-2] or rhs.shape[-1] < 3:
        raise ValueError(
            f"f: expected shape [F, F] or [B, F, F] with F >= 3, got shape {rhs.shape}"
        )
    if not np.all(np.isfinite(rhs)):
        raise ValueError("f: expected finite values at every node, got NaN or infinity")
    wavenumber = _check_real("wavenumber", wavenumber)
    size = rhs.shape[-1]
    why = _resonance(wavenumber, size)
    if why is not None:
        raise ValueError(
            f"wavenumber: expected a value away from resonance, got wavenumber={wavenumber!r}, "
            f"which is near resonance: {why}"
        )
    # the transforms' work arrays: a few copies of f
    _check_bytes(8.0 * 4 * rhs.size, {"f": f"array of shape {rhs.shape}"})
    mu = _laplacian_eigenvalues(size)
    symbol = mu[:, None] + mu[None, :] - wavenumber * wavenumber
    out = np.zeros_like(rhs)
    spec = dstn(rhs[..., 1:-1, 1:-1], type=1, axes=(-2, -1), norm="ortho")
    out[..., 1:-1, 1:-1] = idstn(spec / symbol, type=1, axes=(-2, -1), norm="ortho")
    if not np.all(np.isfinite(out)):
        raise ValueError(
            "f: expected values giving a finite solution, got values up to "
            f"{np.abs(rhs).max():g}: the solution overflows float64"
        )
    return out


@functools.lru_cache(maxsize=4)
def _helmholtz_fine(
    n: int,
    seed: int,
    fine: int,
    wavenumber: float,
    modes: int,
    alpha: float,
    tau: float,
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    f = _square_field(rng, n, modes, alpha, tau, fine)
    u = solve_helmholtz(f, wavenumber)
    f.setflags(write=False)
    u.setflags(write=False)
    return f, u


def helmholtz(
    n: int = 500,
    grid_size: int = 17,
    seed: int = 0,
    fine: int = 65,
    wavenumber: float = 10.5,
    modes: int = 24,
    alpha: float = 2.0,
    tau: float = 3.0,
    splits: Sequence[float] = DEFAULT_SPLITS,
    dtype: torch.dtype = torch.float32,
) -> DatasetSplits:
    """Operator learning for the 2-D Helmholtz equation: ``x`` ``[n, s * s]`` the forcing
    ``f``, ``y`` ``[n, s * s]`` the solution ``u`` of ``-lap u - k^2 u = f`` on ``[0, 1]^2``,
    ``u = 0`` on the boundary (``s = grid_size``, ``k = wavenumber``).

    ``f`` is the zero-mean Gaussian random field of [`darcy`][spacetime_nets.datasets.darcy] (a
    cosine series with spectrum ``(1 + pi^2 |k|^2 / tau^2)^(-alpha / 2)``), itself, not thresholded.
    The default ``k = 10.5`` puts ``k^2 = 110.25`` between the Dirichlet eigenvalues ``10 pi^2`` and
    ``13 pi^2``: the operator is indefinite (the six modes ``sin(p pi x) sin(q pi y)`` with ``p^2 +
    q^2 <= 10`` respond with their sign flipped) and global (its Green's function oscillates with
    wavelength ``2 pi / k ~ 0.6`` and barely decays across the box).
    [`solve_helmholtz`][spacetime_nets.datasets.solve_helmholtz] solves on ``fine x fine`` nodes
    (``fine = 2^k + 1``) and both fields are subsampled to the ``s x s`` nodes ``(i, j) / (s - 1)``,
    ``s = 2^j + 1 <= fine`` (boundary included), flattened row-major: entry ``i * s + j`` is node
    ``(i / (s - 1), j / (s - 1))``; ``meta["grid_shape"] == (s, s)``. The fine solution of the last
    few argument sets is kept in memory.

    Args:
        n: number of samples.
        grid_size: nodes per axis served, ``2^j + 1 <= fine``.
        seed: seeds the random field and the split.
        fine: nodes per axis of the solve, ``2^k + 1``, with at least 8 nodes per wavelength
            (``wavenumber <= pi (fine - 1) / 4``).
        wavenumber: ``k >= 0`` (``0``: the Poisson problem ``-lap u = f``); ``k^2`` must stay
            1% away from every Dirichlet eigenvalue of ``-lap`` and of its five-point
            discretisation on ``fine`` nodes.
        modes: cosine modes per axis of the forcing.
        alpha: smoothness exponent of the forcing's spectrum (``> 0``).
        tau: inverse length scale of the forcing (``> 0``).
        splits: train / val / test fractions.
        dtype: floating dtype of ``x`` and ``y``.

    Returns:
        A regression [`DatasetSplits`][spacetime_nets.datasets.DatasetSplits] with
            ``in_features == out_features == s * s``.
    """
    n = check_int("n", n, 1)
    grid_size = check_int("grid_size", grid_size, 3)
    seed = _check_seed(seed)
    fine = check_int("fine", fine, 3)
    wavenumber = _check_real("wavenumber", wavenumber)
    modes = check_int("modes", modes, 2)
    alpha = _check_real("alpha", alpha, positive=True)
    tau = _check_real("tau", tau, positive=True)
    splits = _check_splits(splits)
    dtype = _check_dtype(dtype)
    _check_square_sizes(grid_size, fine)
    limit = 2 * math.pi * (fine - 1) / _NODES_PER_WAVELENGTH
    if wavenumber > limit:
        raise ValueError(
            f"wavenumber: expected at most pi (fine - 1) / 4 = {limit:.4g} so the fine grid has "
            f"{_NODES_PER_WAVELENGTH} nodes per wavelength, got wavenumber={wavenumber!r}"
        )
    why = _resonance(wavenumber, fine)
    if why is not None:
        raise ValueError(
            f"wavenumber: expected a value away from resonance, got wavenumber={wavenumber!r}, "
            f"which is near resonance: {why}"
        )
    _check_bytes(
        _square_bytes(n, fine, modes, grid_size, dtype), {"n": n, "fine": fine, "modes": modes}
    )
    f, u = _helmholtz_fine(n, seed, fine, wavenumber, modes, alpha, tau)
    meta = {"wavenumber": wavenumber, "modes": modes, "alpha": alpha, "tau": tau}
    return _square_regression(
        "helmholtz", f, u, grid_size, splits, seed, dtype, meta, blame={"wavenumber": wavenumber}
    )
