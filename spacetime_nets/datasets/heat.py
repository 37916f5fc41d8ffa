"""Operator learning for the 1-D heat equation with homogeneous Dirichlet conditions."""

from __future__ import annotations

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
    _out_bytes,
    _package,
)

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
    ``time`` is at most ``ln(1 / eps) / pi^2`` of ``dtype`` (1.61 in float32): later the solution
    is zero to that precision.

    Args:
        n: the number of samples (split three ways).
        grid_size: the nodes per function (``>= 3``).
        time: the time ``t > 0`` of the target solution ``u(t)``.
        seed: seeds the coefficients ``a_m`` and the split.
        modes: the number of sine modes of ``u0`` (``>= 1``, fewer than
            ``refine * (grid_size - 1)``).
        splits: train / val / test fractions.
        dtype: floating dtype of ``x``, ``y`` and ``meta["nodes"]``.
        refine: how many times finer the solver's grid is than the nodes (``>= 1``).

    Returns:
        A regression [`DatasetSplits`][spacetime_nets.datasets.DatasetSplits] with
            ``in_features == out_features == grid_size``.
    """
    n = check_int("n", n, 1)
    grid_size = check_int("grid_size", grid_size, 3)
    time = _check_real("time", time, positive=True)
    seed = _check_seed(seed)
    modes = check_int("modes", modes, 1)
    splits = _check_splits(splits)
    dtype = _check_dtype(dtype)
    refine = check_int("refine", refine, 1)
    # the slowest mode decays as exp(-pi^2 time): past the dtype's precision the targets are
    # rounding noise of a solution that is zero to that precision
    eps = float(torch.finfo(dtype).eps)
    t_max = math.log(1.0 / eps) / math.pi**2
    if time > t_max:
        raise ValueError(
            f"time: expected at most {t_max:.3g} (the solution decays as exp(-pi^2 time) and is "
            f"zero to {dtype} precision after that), got {time:g}"
        )
    fine_intervals = refine * (grid_size - 1)
    if modes >= fine_intervals:
        raise ValueError(
            f"modes: expected fewer than refine * (grid_size - 1) = {fine_intervals} so the fine "
            f"grid resolves every mode, got modes={modes}"
        )
    # the sine basis and its solutions [modes, F], the coefficients, and the implicit solver's
    # banded factors (F * modes unknowns, bandwidth modes)
    fine_nodes = fine_intervals + 1
    _check_bytes(
        8.0 * (6 * modes * fine_nodes + 4.0 * fine_nodes * modes * modes + n * modes)
        + _out_bytes(n, grid_size, grid_size, dtype),
        {"n": n, "grid_size": grid_size, "modes": modes, "refine": refine},
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
        blame={"time": time},
        meta={
            "nodes": nodes,
            "time": time,
            "modes": modes,
            "refine": refine,
            "domain": [(0.0, 1.0)],
        },
    )
