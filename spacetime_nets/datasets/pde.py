"""Operator learning from two partial differential equations, each solved once on a fine grid and
served at coarser resolutions by subsampling (so a coarse set is exactly the restriction of a
finer one drawn with the same seed).

- [`burgers`][spacetime_nets.datasets.burgers]: viscous Burgers ``u_t + (u^2 / 2)_x = nu u_xx`` on
  the periodic unit interval; the map ``u(0, .) -> u(time, .)``, on the periodic nodes ``j / n``,
  ``j = 0, ..., n - 1``.
- [`darcy`][spacetime_nets.datasets.darcy]: ``-div(a grad u) = 1`` on ``[0, 1]^2`` with ``u = 0`` on
  the boundary; the map from a two-valued coefficient ``a`` to ``u``, on ``s x s`` nodes ``(i, j) /
  (s - 1)`` (boundary included), flattened row-major to ``[N, s * s]``.

Initial data and coefficients come from Gaussian random fields with a Matern-like spectrum
``(1 + |omega|^2 / tau^2)^(-alpha / 2)``, drawn with the generator's own
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
    _out_bytes,
    _package,
)

__all__ = ["burgers", "darcy", "solve_burgers", "solve_darcy"]

#: Most ETDRK4 steps one Burgers solve may take (given, or picked for the advection speed); more
#: raise ValueError before the solve starts.
MAX_BURGERS_STEPS = 100_000
#: The coefficient values ``darcy`` takes: within these bounds ``a`` and ``u`` stay finite in
#: float32 (``u`` is of order ``1 / min a``).
_A_RANGE = (1e-30, 1e30)


# --------------------------------------------------------------------------------------------
# Burgers
# --------------------------------------------------------------------------------------------


def _etdrk4_coefficients(lin: np.ndarray, dt: float, points: int = 32) -> tuple[np.ndarray, ...]:
    """The ETDRK4 weights of the diagonal linear part ``lin`` (Cox and Matthews' scheme), each
    phi-function evaluated as a mean over a circle of radius one around ``dt * lin`` so that
    small ``|dt * lin|`` loses no digits to cancellation."""
    z0 = dt * lin
    roots = np.exp(1j * np.pi * (np.arange(1, points + 1) - 0.5) / points)
    z = z0[..., None] + roots
    ez = np.exp(z)
    q = dt * np.real(np.mean((np.exp(z / 2) - 1) / z, axis=-1))
    f1 = dt * np.real(np.mean((-4 - z + ez * (4 - 3 * z + z**2)) / z**3, axis=-1))
    f2 = dt * np.real(np.mean((2 + z + ez * (z - 2)) / z**3, axis=-1))
    f3 = dt * np.real(np.mean((-4 - 3 * z - z**2 + ez * (4 - z)) / z**3, axis=-1))
    return np.exp(z0), np.exp(z0 / 2), q, f1, f2, f3


def _burgers_steps(u0: np.ndarray, viscosity: float, time: float) -> int:
    """Equal ETDRK4 steps for ``time``: the explicit part must resolve advection at speed
    ``max |u0|`` up to the wavenumber where diffusion takes over (or the dealiased cut-off)."""
    fine = u0.shape[-1]
    speed = max(float(np.max(np.abs(u0))), 1e-12)
    k_cut = 2 * math.pi * (fine // 3)
    k_adv = speed / viscosity  # advection rate speed * k equals diffusion rate nu * k^2
    rate = speed * min(k_cut, k_adv)
    return max(16, math.ceil(time * max(rate, 50.0)))


def solve_burgers(
    u0: np.ndarray, viscosity: float, time: float, steps: int | None = None
) -> np.ndarray:
    """Solve ``u_t + (u^2 / 2)_x = viscosity * u_xx`` on the periodic ``[0, 1)`` up to ``time``.

    Fourier pseudo-spectral in space (products dealiased by the two-thirds rule) and the
    fourth-order exponential time differencing Runge-Kutta scheme (ETDRK4) in time, which
    integrates the stiff diffusion exactly.

    Args:
        u0: initial values ``[B, F]`` (or ``[F]``) at the nodes ``j / F``; ``F`` even.
        viscosity: ``nu > 0``.
        time: final time ``> 0``.
        steps: equal time steps; ``None`` picks enough for the advection speed ``max |u0|``.

    Returns:
        ``u(time)`` at the same nodes, ``[B, F]`` (or ``[F]``), float64.
    """
    u = _numeric("u0", u0, "an array of initial values [F] or [B, F]")
    if u.ndim not in (1, 2) or u.shape[-1] < 8 or u.shape[-1] % 2:
        raise ValueError(
            f"u0: expected shape [F] or [B, F] with F even and >= 8, got shape {u.shape}"
        )
    if not np.all(np.isfinite(u)):
        raise ValueError("u0: expected finite values, got NaN or infinity")
    viscosity = _check_real("viscosity", viscosity, positive=True)
    time = _check_real("time", time, positive=True)
    if steps is None:
        steps = _burgers_steps(u, viscosity, time)
        _check_burgers_steps(steps, viscosity, time)
    steps = _check_given_steps(steps)
    # the solver's complex work arrays: about 16 float64 numbers per value of u0
    _check_bytes(8.0 * 16 * u.size, {"u0": f"array of shape {u.shape}"})
    squeeze = u.ndim == 1
    u = np.atleast_2d(u)
    fine = u.shape[-1]
    k = np.arange(fine // 2 + 1)
    wave = 2j * np.pi * k
    keep = k <= fine // 3  # two-thirds rule
    lin = -viscosity * (2 * np.pi * k) ** 2
    e, e2, q, f1, f2, f3 = _etdrk4_coefficients(lin, time / steps)
    grad = -0.5 * wave * keep  # N(v) = -(1/2) d/dx (u^2), dealiased

    def nonlinear(v: np.ndarray) -> np.ndarray:
        w = np.fft.irfft(v, n=fine)
        return grad * np.fft.rfft(w * w)

    v = np.fft.rfft(u)
    for _ in range(steps):
        nv = nonlinear(v)
        a = e2 * v + q * nv
        na = nonlinear(a)
        b = e2 * v + q * na
        nb = nonlinear(b)
        c = e2 * a + q * (2 * nb - nv)
        nc = nonlinear(c)
        v = e * v + f1 * nv + 2 * f2 * (na + nb) + f3 * nc
    out = np.fft.irfft(v, n=fine)
    if not np.all(np.isfinite(out)):
        raise ValueError(
            f"steps: expected enough steps for a stable solve, got steps={steps}: the solution "
            f"is not finite (viscosity={viscosity!r}, time={time!r}); pass more steps or "
            f"smaller initial values"
        )
    return out[0] if squeeze else out


def _check_given_steps(steps: object) -> int:
    steps = check_int("steps", steps, 1)
    if steps > MAX_BURGERS_STEPS:
        raise ValueError(
            f"steps: expected an int >= 1 of at most {MAX_BURGERS_STEPS:,} "
            f"(spacetime_nets.datasets.pde.MAX_BURGERS_STEPS), got {steps!r}"
        )
    return steps


def _check_burgers_steps(steps: int, viscosity: float, time: float) -> None:
    """Refuse a solve whose automatic step count exceeds ``MAX_BURGERS_STEPS``."""
    if steps > MAX_BURGERS_STEPS:
        raise ValueError(
            f"time, viscosity: expected a solve of at most {MAX_BURGERS_STEPS:,} ETDRK4 steps, "
            f"got time={time!r}, viscosity={viscosity!r}, which need {steps:,} steps for the "
            "initial speed; use a shorter time or a larger viscosity"
        )


def _periodic_field(
    rng: np.random.Generator, n: int, modes: int, alpha: float, tau: float, fine: int
) -> np.ndarray:
    """``n`` draws of ``sum_{k=1}^{modes} s_k (a_k cos 2 pi k x + b_k sin 2 pi k x)`` with
    ``a_k, b_k ~ N(0, 1)`` and ``s_k = (1 + (2 pi k / tau)^2)^(-alpha / 2)``, at ``j / fine``."""
    kk = np.arange(1, modes + 1)
    scale = (1.0 + (2 * np.pi * kk / tau) ** 2) ** (-alpha / 2)
    ab = rng.standard_normal((n, 2, modes))
    spec = np.zeros((n, fine // 2 + 1), dtype=np.complex128)
    spec[:, 1 : modes + 1] = (fine / 2) * scale * (ab[:, 0] - 1j * ab[:, 1])
    return np.fft.irfft(spec, n=fine)


@functools.lru_cache(maxsize=4)
def _burgers_fine(
    n: int,
    seed: int,
    viscosity: float,
    time: float,
    fine: int,
    modes: int,
    alpha: float,
    tau: float,
    steps: int | None,
) -> tuple[np.ndarray, np.ndarray, int]:
    rng = np.random.default_rng(seed)
    u0 = _periodic_field(rng, n, modes, alpha, tau, fine)
    if steps is None:
        steps = _burgers_steps(u0, viscosity, time)
        _check_burgers_steps(steps, viscosity, time)
    u1 = solve_burgers(u0, viscosity, time, steps)
    u0.setflags(write=False)
    u1.setflags(write=False)
    return u0, u1, steps


def burgers(
    n: int = 1000,
    grid_size: int = 128,
    viscosity: float = 0.1,
    time: float = 1.0,
    seed: int = 0,
    fine: int = 1024,
    modes: int = 64,
    alpha: float = 2.5,
    tau: float = 7.0,
    splits: Sequence[float] = DEFAULT_SPLITS,
    dtype: torch.dtype = torch.float32,
    steps: int | None = None,
) -> DatasetSplits:
    """Operator learning for viscous Burgers on the periodic unit interval: ``x`` ``[n,
    grid_size]`` holds ``u(0, .)``, ``y`` ``[n, grid_size]`` holds ``u(time, .)``.

    ``u_t + (u^2 / 2)_x = viscosity * u_xx``, periodic in ``x``. The initial data is a zero-mean
    Gaussian random field ``sum_{k=1}^{modes} s_k (a_k cos 2 pi k x + b_k sin 2 pi k x)``,
    ``a_k, b_k ~ N(0, 1)``, ``s_k = (1 + (2 pi k / tau)^2)^(-alpha / 2)``. The equation is solved by
    [`solve_burgers`][spacetime_nets.datasets.solve_burgers] on ``fine`` periodic nodes and both
    functions are subsampled to the ``grid_size`` nodes ``meta["nodes"] = j / grid_size``
    (``meta["rule"] == "periodic"``); ``grid_size`` must divide ``fine``. The fine solution of the
    last few argument sets is kept in memory, so serving the same samples at another ``grid_size``
    costs no second solve.

    Args:
        n: number of samples (split by ``splits``).
        grid_size: nodes per sample served; divides ``fine``.
        viscosity: ``nu > 0``.
        time: the final time of the map ``u(0) -> u(time)``.
        seed: seeds the random field and the split.
        fine: nodes of the solve (even, ``>= 3 * modes``; 1024 by default).
        modes: Fourier modes of the initial field.
        alpha: smoothness exponent of the field's spectrum (``> 0``).
        tau: inverse length scale of the field (``> 0``).
        splits: train / val / test fractions.
        dtype: floating dtype of ``x`` and ``y``.
        steps: ETDRK4 time steps; ``None`` picks enough for the largest initial speed.

    Returns:
        A regression [`DatasetSplits`][spacetime_nets.datasets.DatasetSplits].
    """
    n = check_int("n", n, 1)
    grid_size = check_int("grid_size", grid_size, 2)
    viscosity = _check_real("viscosity", viscosity, positive=True)
    time = _check_real("time", time, positive=True)
    seed = _check_seed(seed)
    fine = check_int("fine", fine, 8)
    modes = check_int("modes", modes, 1)
    alpha = _check_real("alpha", alpha, positive=True)
    tau = _check_real("tau", tau, positive=True)
    splits = _check_splits(splits)
    dtype = _check_dtype(dtype)
    if steps is not None:
        steps = _check_given_steps(steps)
    if fine % 2:
        raise ValueError(f"fine: expected an even int, got fine={fine}")
    if fine % grid_size:
        raise ValueError(
            f"grid_size: expected a divisor of fine={fine} (the served nodes are every "
            f"(fine / grid_size)-th fine node), got grid_size={grid_size}"
        )
    if 3 * modes > fine:
        raise ValueError(
            f"modes: expected at most fine / 3 = {fine // 3} so the fine grid resolves the "
            f"initial field after dealiasing, got modes={modes}"
        )
    # u0, u(time) and the solver's complex work arrays: about 16 float64 arrays [n, fine]
    _check_bytes(
        8.0 * 16 * n * fine + _out_bytes(n, grid_size, grid_size, dtype),
        {"n": n, "fine": fine},
    )
    u0, u1, used_steps = _burgers_fine(n, seed, viscosity, time, fine, modes, alpha, tau, steps)
    stride = fine // grid_size
    nodes = torch.arange(grid_size, dtype=torch.float64) / grid_size
    return _package(
        "burgers",
        np.array(u0[:, ::stride]),
        np.array(u1[:, ::stride]),
        task="regression",
        num_classes=None,
        splits=splits,
        seed=seed,
        dtype=dtype,
        blame={"alpha": alpha, "tau": tau},
        meta={
            "nodes": nodes.to(dtype),
            "rule": "periodic",
            "domain": [(0.0, 1.0)],
            "viscosity": viscosity,
            "time": time,
            "fine": fine,
            "modes": modes,
            "alpha": alpha,
            "tau": tau,
            "steps": used_steps,
        },
    )


# --------------------------------------------------------------------------------------------
# Darcy
# --------------------------------------------------------------------------------------------


def solve_darcy(a: np.ndarray, forcing: float = 1.0) -> np.ndarray:
    """Solve ``-div(a grad u) = forcing`` on ``[0, 1]^2`` with ``u = 0`` on the boundary.

    Five-point finite differences on the nodes ``(i, j) / (F - 1)`` of ``a``; the flux through
    the face between two nodes uses the harmonic mean of their coefficients. Each sample's
    sparse system (``(F - 2)^2`` unknowns) is solved directly with ``scipy.sparse.linalg``.

    Args:
        a: positive coefficient at the nodes, ``[F, F]`` or ``[B, F, F]``, ``F >= 3``.
        forcing: the constant right-hand side.

    Returns:
        ``u`` at the same nodes, ``[F, F]`` or ``[B, F, F]``, float64, zero on the boundary.
    """
    import scipy.sparse as sp
    from scipy.sparse.linalg import spsolve

    coef = _numeric("a", a, "an array of coefficients [F, F] or [B, F, F]")
    if coef.ndim not in (2, 3) or coef.shape[-1] != coef.shape[-2] or coef.shape[-1] < 3:
        raise ValueError(
            f"a: expected shape [F, F] or [B, F, F] with F >= 3, got shape {coef.shape}"
        )
    lo, hi = _SOLVE_A_RANGE
    bad = ~(np.isfinite(coef) & (coef >= lo) & (coef <= hi))
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"a: expected finite and positive values in [{lo:g}, {hi:g}] at every node, got "
            f"{coef[where]!r} at index {where}"
        )
    forcing = _check_real("forcing", forcing, low=None)
    _check_bytes(_darcy_solve_bytes(coef.shape[-1]), {"a": f"array of shape {coef.shape}"})
    squeeze = coef.ndim == 2
    coef = coef.reshape((-1,) + coef.shape[-2:])
    f = coef.shape[-1]
    m = f - 2
    h2 = (1.0 / (f - 1)) ** 2
    idx = np.arange(m * m).reshape(m, m)
    out = np.zeros_like(coef)
    rhs = np.full(m * m, forcing * h2)
    for b in range(coef.shape[0]):
        c = coef[b]
        fx = 2 * c[1:] * c[:-1] / (c[1:] + c[:-1])  # face (i + 1/2, j): [f - 1, f]
        fy = 2 * c[:, 1:] * c[:, :-1] / (c[:, 1:] + c[:, :-1])  # face (i, j + 1/2): [f, f - 1]
        diag = fx[1:, 1:-1] + fx[:-1, 1:-1] + fy[1:-1, 1:] + fy[1:-1, :-1]  # [m, m]
        north = fx[1:-1, 1:-1]  # between interior rows i and i + 1: [m - 1, m]
        east = fy[1:-1, 1:-1]  # between interior columns j and j + 1: [m, m - 1]
        rows = np.concatenate(
            [
                idx.ravel(),
                idx[:-1].ravel(),
                idx[1:].ravel(),
                idx[:, :-1].ravel(),
                idx[:, 1:].ravel(),
            ]
        )
        cols = np.concatenate(
            [
                idx.ravel(),
                idx[1:].ravel(),
                idx[:-1].ravel(),
                idx[:, 1:].ravel(),
                idx[:, :-1].ravel(),
            ]
        )
        vals = np.concatenate(
            [diag.ravel(), -north.ravel(), -north.ravel(), -east.ravel(), -east.ravel()]
        )
        mat = sp.csc_matrix((vals, (rows, cols)), shape=(m * m, m * m))
        out[b, 1:-1, 1:-1] = spsolve(mat, rhs, permc_spec="MMD_AT_PLUS_A").reshape(m, m)
    if not np.all(np.isfinite(out)):
        raise ValueError(
            f"forcing, a: expected values giving a finite solution, got forcing={forcing!r} "
            f"and a in [{coef.min():g}, {coef.max():g}]: the solution overflows float64"
        )
    return out[0] if squeeze else out


#: The coefficient values ``solve_darcy`` takes: the face coefficients (products of two
#: values) must stay finite in float64.
_SOLVE_A_RANGE = (1e-150, 1e150)


def _darcy_solve_bytes(fine: int) -> float:
    """Bytes of one sparse direct solve on ``fine x fine`` nodes: the matrix and its LU factors
    (fill-in of a five-point matrix under minimum-degree ordering grows like N log N)."""
    unknowns = max(fine - 2, 1) ** 2
    return 8.0 * unknowns * (40 + 8 * max(1.0, math.log2(unknowns)))


def _square_bytes(n: int, fine: int, modes: int, grid_size: int, dtype: torch.dtype) -> float:
    """Bytes of ``_square_field`` and the fields solved on the unit square (the cosine
    coefficients, the half-summed series, the fields and their solutions), served at
    ``grid_size``."""
    fields = 8.0 * (n * modes * modes + n * fine * modes + 4.0 * n * fine * fine)
    return fields + _out_bytes(n, grid_size**2, grid_size**2, dtype)


def _square_field(
    rng: np.random.Generator, n: int, modes: int, alpha: float, tau: float, fine: int
) -> np.ndarray:
    """``n`` draws of ``sum_{(k, l) != 0} s_kl xi_kl cos(pi k x) cos(pi l y)`` (``k, l <
    modes``, ``xi ~ N(0, 1)``, ``s_kl = (1 + pi^2 (k^2 + l^2) / tau^2)^(-alpha / 2)``) at the
    nodes ``(i, j) / (fine - 1)``: ``[n, fine, fine]``."""
    kk = np.arange(modes)
    scale = (1.0 + np.pi**2 * (kk[:, None] ** 2 + kk[None, :] ** 2) / tau**2) ** (-alpha / 2)
    scale[0, 0] = 0.0
    xi = rng.standard_normal((n, modes, modes)) * scale
    basis = np.cos(np.pi * np.outer(np.linspace(0.0, 1.0, fine), kk))  # [fine, modes]
    return np.einsum("ik,nkl,jl->nij", basis, xi, basis, optimize=True)


@functools.lru_cache(maxsize=4)
def _darcy_fine(
    n: int,
    seed: int,
    fine: int,
    a_values: tuple[float, float],
    modes: int,
    alpha: float,
    tau: float,
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    field = _square_field(rng, n, modes, alpha, tau, fine)
    a = np.where(field >= 0.0, a_values[0], a_values[1])
    u = solve_darcy(a)
    a.setflags(write=False)
    u.setflags(write=False)
    return a, u


def _is_dyadic_plus_one(s: int) -> bool:
    return s >= 3 and ((s - 1) & (s - 2)) == 0


def _check_square_sizes(grid_size: int, fine: int) -> None:
    """``fine = 2^k + 1`` nodes per axis of the solve, ``grid_size = 2^j + 1 <= fine`` served
    (every node served is a node of the solve)."""
    if not _is_dyadic_plus_one(fine):
        raise ValueError(f"fine: expected 2^k + 1 (e.g. 33, 65, 129), got fine={fine}")
    if not _is_dyadic_plus_one(grid_size) or grid_size > fine:
        raise ValueError(
            f"grid_size: expected 2^j + 1 and at most fine={fine} (e.g. 17, 33), "
            f"got grid_size={grid_size}"
        )


def _square_regression(
    name: str,
    x_fine: np.ndarray,
    y_fine: np.ndarray,
    grid_size: int,
    splits: Sequence[float],
    seed: int,
    dtype: torch.dtype,
    meta: dict,
    blame: dict | None = None,
) -> DatasetSplits:
    """Fields ``[n, F, F]`` solved on the unit square's ``F x F`` nodes, served at every
    ``(F - 1) / (s - 1)``-th node (``s = grid_size``, boundary included) as ``[n, s * s]``
    row-major, with the layout keys of ``meta`` (nodes, grid shape, trapezoid rule, domain,
    fine) added to the set's own ``meta``."""
    n, fine = x_fine.shape[0], x_fine.shape[-1]
    stride = (fine - 1) // (grid_size - 1)
    xs = np.array(x_fine[:, ::stride, ::stride]).reshape(n, -1)
    ys = np.array(y_fine[:, ::stride, ::stride]).reshape(n, -1)
    axis = torch.linspace(0.0, 1.0, grid_size, dtype=torch.float64)
    rr, cc = torch.meshgrid(axis, axis, indexing="ij")
    nodes = torch.stack([rr.reshape(-1), cc.reshape(-1)], dim=1)
    layout = {
        "nodes": nodes.to(dtype),
        "grid_shape": (grid_size, grid_size),
        "rule": "trapezoid",
        "domain": [(0.0, 1.0), (0.0, 1.0)],
        "fine": fine,
    }
    return _package(
        name,
        xs,
        ys,
        task="regression",
        num_classes=None,
        splits=splits,
        seed=seed,
        dtype=dtype,
        meta={**layout, **meta},
        blame=blame,
    )


def darcy(
    n: int = 500,
    grid_size: int = 17,
    seed: int = 0,
    fine: int = 65,
    a_values: Sequence[float] = (12.0, 3.0),
    modes: int = 24,
    alpha: float = 2.0,
    tau: float = 3.0,
    splits: Sequence[float] = DEFAULT_SPLITS,
    dtype: torch.dtype = torch.float32,
) -> DatasetSplits:
    """Operator learning for 2-D Darcy flow: ``x`` ``[n, s * s]`` the coefficient ``a``, ``y``
    ``[n, s * s]`` the solution ``u`` of ``-div(a grad u) = 1`` on ``[0, 1]^2``, ``u = 0`` on
    the boundary (``s = grid_size``).

    ``a`` takes ``a_values[0]`` where a zero-mean Gaussian random field (``_square_field``: a cosine
    series with spectrum ``(1 + pi^2 |k|^2 / tau^2)^(-alpha / 2)``) is ``>= 0`` and ``a_values[1]``
    elsewhere. [`solve_darcy`][spacetime_nets.datasets.solve_darcy] solves on ``fine x fine`` nodes
    (``fine = 2^k + 1``) and both fields are subsampled to the ``s x s`` nodes ``(i, j) / (s - 1)``,
    ``s = 2^j + 1 <= fine`` (boundary included), flattened row-major: entry ``i * s + j`` is node
    ``(i / (s - 1), j / (s - 1))``; ``meta["grid_shape"] == (s, s)``. The fine solution of the last
    few argument sets is kept in memory.

    Args:
        n: number of samples.
        grid_size: nodes per axis served, ``2^j + 1 <= fine``.
        seed: seeds the random field and the split.
        fine: nodes per axis of the solve, ``2^k + 1``.
        a_values: the two positive coefficient values (equal values give a constant ``a``).
        modes: cosine modes per axis of the field.
        alpha: smoothness exponent of the field's spectrum (``> 0``).
        tau: inverse length scale of the field (``> 0``).
        splits: train / val / test fractions.
        dtype: floating dtype of ``x`` and ``y``.

    Returns:
        A regression [`DatasetSplits`][spacetime_nets.datasets.DatasetSplits].
    """
    n = check_int("n", n, 1)
    grid_size = check_int("grid_size", grid_size, 3)
    seed = _check_seed(seed)
    fine = check_int("fine", fine, 3)
    modes = check_int("modes", modes, 2)
    alpha = _check_real("alpha", alpha, positive=True)
    tau = _check_real("tau", tau, positive=True)
    splits = _check_splits(splits)
    dtype = _check_dtype(dtype)
    lo, hi = _A_RANGE
    msg = (
        f"a_values: expected two finite positive numbers in [{lo:g}, {hi:g}], got {a_values!r:.80}"
    )
    if isinstance(a_values, (str, bytes)) or not hasattr(a_values, "__iter__"):
        raise ValueError(msg)
    try:
        items = list(a_values)  # type: ignore[call-overload]
        if any(isinstance(v, (bool, str, bytes, np.bool_)) for v in items):
            raise ValueError(msg)
        pair = tuple(float(v) for v in items)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(msg) from None
    if len(pair) != 2 or not all(math.isfinite(v) and lo <= v <= hi for v in pair):
        raise ValueError(msg)
    _check_square_sizes(grid_size, fine)
    _check_bytes(
        _square_bytes(n, fine, modes, grid_size, dtype) + _darcy_solve_bytes(fine),
        {"n": n, "fine": fine, "modes": modes},
    )
    a, u = _darcy_fine(n, seed, fine, pair, modes, alpha, tau)  # type: ignore[arg-type]
    meta = {"a_values": pair, "modes": modes, "alpha": alpha, "tau": tau}
    return _square_regression(
        "darcy", a, u, grid_size, splits, seed, dtype, meta, blame={"a_values": a_values}
    )
