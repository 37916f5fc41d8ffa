"""GridSchedule: a time grid t_0 = 0 < ... < t_K = T with one spatial Grid per time."""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ._checks import as_int, as_real, is_int
from .domain import Domain, as_domain
from .grid import Grid, parse_to_args
from .quadrature import RULES, check_rule, get_rule, nearest_valid_n
from .registry import NamesView
from .transfer import TRANSFER_KINDS, Transfer, make_transfer

__all__ = [
    "GridSchedule",
    "cluster_map",
    "ScheduleBuilder",
    "SCHEDULE_BUILDERS",
    "SCHEDULES",
    "register_schedule_builder",
]

JSON_VERSION = 1
_JSON_FORMAT = "spacetime-nets/grid-schedule"
_JSON_KEYS = {"format", "version", "times", "transfer", "grids", "grid_index", "channels"}

#: Most time steps a schedule may have (a ResNet of that many layers); more raise ValueError
#: before anything is allocated. Raise this module attribute to allow more.
MAX_STEPS = 1_000_000


class GridSchedule:
    """Time grid ``times`` ``[K+1]`` and spatial grids ``grids[k]`` (G_k at t_k).

    Step k maps grid k (width n_k) to grid k + 1 (width n_{k+1}); ``transfer(k)`` is the
    shortcut Pi_k of that residual block. ``transfer_kind`` chooses Pi (linear, nearest, l2).

    ``channels`` (optional, K + 1 ints ``[c_0, ..., c_K]``) gives the number of features per
    node: step k acts on c_k channels and, where c_{k+1} != c_k, its shortcut also changes the
    channel count (zero-padding or truncation). A schedule with channels is a ResNet whose
    block k has width c_k n_k -> c_{k+1} n_{k+1}. ``None`` is the scalar model (one feature).

    Args:
        times: the times ``[K + 1]``, finite and strictly increasing from t_0 = 0.
        grids: one [`Grid`][grids.grid.Grid] per time, all on one domain (the same object may
            appear several times).
        transfer_kind: how the shortcuts Pi_k are built, one of ``TRANSFER_KINDS``.
        channels: K + 1 positive channel counts, or None for the scalar model.

    Raises:
        ValueError: for times that are not such a grid, grids that are not one per time on
            one domain, an unknown ``transfer_kind`` or channel counts that are not K + 1
            positive ints.
    """

    def __init__(
        self,
        times: torch.Tensor | Sequence[float],
        grids: Sequence[Grid],
        transfer_kind: str = "linear",
        channels: Sequence[int] | None = None,
    ) -> None:
        t = _check_times(times)
        if isinstance(grids, (Grid, str, bytes, torch.Tensor)) or not isinstance(grids, Sequence):
            raise ValueError(
                f"grids: expected a sequence of grids.Grid (one per time), got {grids!r:.80}"
            )
        grids = list(grids)
        if len(grids) != t.numel():
            raise ValueError(
                f"grids: need one grid per time ({t.numel()} for {t.numel() - 1} steps), "
                f"got {len(grids)}"
            )
        for k, g in enumerate(grids):
            if not isinstance(g, Grid):
                raise ValueError(f"grids[{k}]: expected a grids.Grid, got {type(g).__name__}")
            if g.domain != grids[0].domain:
                raise ValueError(
                    f"grids[{k}]: every grid must share one domain, got {g.domain} and "
                    f"{grids[0].domain}"
                )
        if transfer_kind not in TRANSFER_KINDS:
            raise ValueError(
                f"transfer_kind: expected one of {', '.join(TRANSFER_KINDS)}; got {transfer_kind!r}"
            )
        self.times = t.to(device=grids[0].device, dtype=grids[0].dtype)
        self.grids = grids
        self.transfer_kind = transfer_kind
        self.channels = _check_channels(channels, len(grids))
        self._transfers: dict[int, Transfer] = {}

    def with_channels(self, channels: int | Sequence[int] | None) -> GridSchedule:
        """The same times and grids with channel counts ``c_k`` (an int: the same at every
        time; ``None``: the scalar model). Shares the grids and cached transfers.

        Args:
            channels: one int for every time, K + 1 ints ``[c_0, ..., c_K]``, or None.

        Returns:
            The new schedule (this one is unchanged).
        """
        if is_int(channels):
            channels = [channels] * len(self.grids)
        new = copy.copy(self)
        new.channels = _check_channels(channels, len(self.grids))
        return new

    # ------------------------------------------------------------------ properties
    @property
    def num_steps(self) -> int:
        """K, the number of time steps (layers)."""
        return len(self.grids) - 1

    @property
    def widths(self) -> list[int]:
        """[n_0, ..., n_K]: the number of nodes of each grid (the layer widths)."""
        return [g.n for g in self.grids]

    @property
    def T(self) -> float:
        """The horizon t_K."""
        return float(self.times[-1])

    @property
    def dt(self) -> torch.Tensor:
        """Step sizes ``[K]``: dt_k = t_{k+1} - t_k."""
        return self.times[1:] - self.times[:-1]

    @property
    def domain(self) -> Domain:
        """The box Omega shared by every grid."""
        return self.grids[0].domain

    @property
    def dim(self) -> int:
        """The dimension d of the box."""
        return self.domain.dim

    @property
    def device(self) -> torch.device:
        """The device of the times and grids."""
        return self.times.device

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype of the times and grids (float64 unless moved with ``to``)."""
        return self.times.dtype

    def transfer(self, k: int) -> Transfer:
        """Pi_k: grid k -> grid k + 1 (built once, then cached).

        Args:
            k: the step, ``0 <= k < K``.

        Returns:
            The [`Transfer`][grids.transfer.Transfer] of kind ``transfer_kind``, ``[n_{k+1},
                n_k]`` as a matrix.
        """
        if not is_int(k) or not 0 <= k < self.num_steps:
            raise ValueError(f"k: expected 0 <= k < {self.num_steps}, got {k!r}")
        k = int(k)
        if k not in self._transfers:
            self._transfers[k] = make_transfer(self.grids[k], self.grids[k + 1], self.transfer_kind)
        return self._transfers[k]

    def transfers(self) -> list[Transfer]:
        """All K transfers, Pi_0 ... Pi_{K-1}.

        Returns:
            The list of K transfers, ``transfer(k)`` at index k.
        """
        return [self.transfer(k) for k in range(self.num_steps)]

    def is_constant(self) -> bool:
        """True when every grid coincides with the first (a fixed-width ResNet).

        Returns:
            Whether all grids have the nodes of grid 0 (to 1e-12).
        """
        return all(g.same_as(self.grids[0]) for g in self.grids[1:])

    def same_as(self, other: GridSchedule, tol: float = 1e-12) -> bool:
        """True when both have the same times and grids (to ``tol``).

        Args:
            other: the schedule to compare with.
            tol: the largest absolute difference between times or nodes that still counts as
                equal.

        Returns:
            Whether the step counts, times and grids agree (transfer kind and channels are
                not compared).
        """
        if not isinstance(other, GridSchedule):
            raise ValueError(f"other: expected a GridSchedule, got {type(other).__name__}")
        tol = as_real("tol", tol)
        if tol < 0:
            raise ValueError(f"tol: expected a finite number >= 0, got {tol}")
        return (
            self.num_steps == other.num_steps
            and torch.allclose(self.times.cpu().double(), other.times.cpu().double(), atol=tol)
            and all(a.same_as(b, tol) for a, b in zip(self.grids, other.grids))
        )

    def derived(self) -> dict:
        """A dict in which other packages keep what they compute from this schedule, once (a
        schedule is data: its times and grids do not change). It is not pickled or copied.

        Returns:
            The dict, the same object at every call on this schedule.
        """
        return self.__dict__.setdefault("_derived", {})

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_derived", None)
        return state

    def to(self, *args, **kwargs) -> GridSchedule:
        """A copy with times, grids and cached transfers moved, with torch's conventions:
        ``to(device)``, ``to(dtype)``, ``to(device, dtype)`` or keywords.

        Args:
            *args (object): a device, a dtype, both (in that order) or a tensor.
            **kwargs (object): ``device=`` and / or ``dtype=``.

        Returns:
            The new schedule (this one is unchanged).
        """
        device, dtype = parse_to_args(args, kwargs)
        new = GridSchedule.__new__(GridSchedule)
        new.times = self.times.to(device=device, dtype=dtype)
        new.grids = [g.to(device=device, dtype=dtype) for g in self.grids]
        new.transfer_kind = self.transfer_kind
        new.channels = self.channels
        new._transfers = {k: p.to(device=device, dtype=dtype) for k, p in self._transfers.items()}
        return new

    # ------------------------------------------------------------------ builders
    @classmethod
    def constant(
        cls,
        n: int | Sequence[int],
        steps: int,
        T: float = 1.0,
        domain: Domain | Sequence = (0.0, 1.0),
        rule: str = "trapezoid",
        transfer_kind: str = "linear",
    ) -> GridSchedule:
        """The same grid at every time: a fixed-width ResNet with ``steps`` layers.

        Args:
            n: the width, one int on an interval or one per axis on a box.
            steps: K, the number of time steps (1 to ``MAX_STEPS``).
            T: the horizon t_K (> 0); the times are uniform, t_k = k T / K.
            domain: the box, a [`Domain`][grids.domain.Domain] or its bounds.
            rule: the quadrature rule of every grid (a name of ``grids.quadrature.RULES``).
            transfer_kind: how the shortcuts Pi_k are built, one of ``TRANSFER_KINDS``.

        Returns:
            The schedule.
        """
        steps = _check_steps(steps)
        g = Grid.uniform(n, domain, rule)
        return cls(_uniform_times(steps, T), [g] * (steps + 1), transfer_kind)

    @classmethod
    def from_widths(
        cls,
        widths: Sequence[int | Sequence[int]],
        T: float | None = None,
        domain: Domain | Sequence = (0.0, 1.0),
        rule: str = "trapezoid",
        times: Sequence[float] | torch.Tensor | None = None,
        transfer_kind: str = "linear",
    ) -> GridSchedule:
        """Uniform grids of the given widths n_0..n_K (K + 1 entries) on uniform or given times.

        ``T`` is the horizon of the uniform times (1.0 when left out); with ``times`` given,
        leave ``T`` out or give ``times[-1]``.

        Args:
            widths: K + 1 widths (at least 2), each an int or one int per axis.
            T: the horizon of uniform times (None: 1.0, or ``times[-1]`` with ``times``).
            domain: the box, a [`Domain`][grids.domain.Domain] or its bounds.
            rule: the quadrature rule of every grid (a name of ``grids.quadrature.RULES``).
            times: the K + 1 times (from 0, strictly increasing), or None for uniform times.
            transfer_kind: how the shortcuts Pi_k are built, one of ``TRANSFER_KINDS``.

        Returns:
            The schedule (grids of equal widths are one shared object).
        """
        widths = _check_widths(widths)
        dom = as_domain(domain)
        for k, w in enumerate(widths):
            ws = w if isinstance(w, (tuple, list)) else (w,)
            if not ws:
                raise ValueError(f"widths: entry {k} must be a positive int, got {w!r}")
            for v in ws:
                if not is_int(v) or v <= 0:
                    raise ValueError(f"widths: entry {k} must be a positive int, got {w!r}")
        if times is None:
            t = _uniform_times(len(widths) - 1, 1.0 if T is None else T)
        else:
            t = _check_times(times)
            if t.numel() != len(widths):
                raise ValueError(
                    f"times: expected one time per width ({len(widths)}), got {t.numel()}"
                )
            if T is not None and as_real("T", T) != float(t[-1]):
                raise ValueError(
                    f"T: expected the last of the given times ({float(t[-1])}) or no T, got {T!r}"
                )
        cache: dict = {}
        grids = []
        for k, w in enumerate(widths):
            key = tuple(int(v) for v in w) if isinstance(w, (tuple, list)) else int(w)
            if key not in cache:
                try:
                    cache[key] = Grid.uniform(w, dom, rule)
                except ValueError as exc:
                    raise ValueError(f"widths: entry {k}: {exc}") from None
            grids.append(cache[key])
        return cls(t, grids, transfer_kind)

    @classmethod
    def from_function(
        cls,
        width_fn: Callable[[float], int | Sequence[int]],
        steps: int,
        T: float = 1.0,
        domain: Domain | Sequence = (0.0, 1.0),
        rule: str = "trapezoid",
        transfer_kind: str = "linear",
    ) -> GridSchedule:
        """Widths n_k = width_fn(t_k) on a uniform time grid of ``steps`` steps.

        Args:
            width_fn: t -> the width at t, a positive int (or one per axis).
            steps: K, the number of time steps.
            T: the horizon t_K (> 0); the times are uniform, t_k = k T / K.
            domain: the box, a [`Domain`][grids.domain.Domain] or its bounds.
            rule: the quadrature rule of every grid (a name of ``grids.quadrature.RULES``).
            transfer_kind: how the shortcuts Pi_k are built, one of ``TRANSFER_KINDS``.

        Returns:
            The schedule.
        """
        if not callable(width_fn):
            raise ValueError(f"width_fn: expected a function t -> width, got {width_fn!r:.80}")
        steps = _check_steps(steps)
        t = _uniform_times(steps, T)
        widths = []
        for tk in t:
            w = width_fn(float(tk))
            ws = w if isinstance(w, (tuple, list)) else (w,)
            if not ws or not all(is_int(v) and v > 0 for v in ws):
                raise ValueError(
                    f"width_fn: expected a positive int (or one per axis) at every time, got "
                    f"{w!r:.80} at t={float(tk):.6g}"
                )
            widths.append(w)
        try:
            return cls.from_widths(widths, None, domain, rule, times=t, transfer_kind=transfer_kind)
        except ValueError as exc:
            if str(exc).startswith("widths:"):
                raise ValueError(f"width_fn: {exc}") from None
            raise

    @classmethod
    def ramp(
        cls,
        n_start: int,
        n_end: int,
        steps: int,
        T: float = 1.0,
        domain: Domain | Sequence = (0.0, 1.0),
        rule: str = "trapezoid",
        transfer_kind: str = "linear",
    ) -> GridSchedule:
        """Widths varying linearly in t from ``n_start`` to ``n_end`` (per axis in 2-D).
        Widths between the given ones snap to the nearest the rule takes; the
        given ones must be widths the rule takes (e.g. odd for simpson).

        Args:
            n_start: the width at t = 0 (an int, or one per axis).
            n_end: the width at t = T.
            steps: K, the number of time steps.
            T: the horizon t_K (> 0); the times are uniform, t_k = k T / K.
            domain: the box, a [`Domain`][grids.domain.Domain] or its bounds.
            rule: the quadrature rule of every grid (a name of ``grids.quadrature.RULES``).
            transfer_kind: how the shortcuts Pi_k are built, one of ``TRANSFER_KINDS``.

        Returns:
            The schedule.
        """
        return cls._shape(
            lambda s: s, n_start, n_end, steps, T, domain, rule, transfer_kind,
            names=("n_start", "n_end"),
        )  # fmt: skip

    @classmethod
    def hourglass(
        cls,
        n_outer: int,
        n_waist: int,
        steps: int,
        T: float = 1.0,
        domain: Domain | Sequence = (0.0, 1.0),
        rule: str = "trapezoid",
        transfer_kind: str = "galerkin",
    ) -> GridSchedule:
        """Wide - narrow - wide: ``n_outer`` at t = 0 and T, ``n_waist`` at t = T / 2. The
        default transfer filters where it coarsens and interpolates where it refines.
        Widths between the given ones snap to the nearest the rule takes; the
        given ones must be widths the rule takes (e.g. odd for simpson).

        Args:
            n_outer: the width at t = 0 and t = T (an int, or one per axis).
            n_waist: the width at t = T / 2.
            steps: K, the number of time steps.
            T: the horizon t_K (> 0); the times are uniform, t_k = k T / K.
            domain: the box, a [`Domain`][grids.domain.Domain] or its bounds.
            rule: the quadrature rule of every grid (a name of ``grids.quadrature.RULES``).
            transfer_kind: how the shortcuts Pi_k are built, one of ``TRANSFER_KINDS``.

        Returns:
            The schedule.
        """
        return cls._shape(
            lambda s: 1.0 - abs(2.0 * s - 1.0),
            n_outer,
            n_waist,
            steps,
            T,
            domain,
            rule,
            transfer_kind,
            names=("n_outer", "n_waist"),
        )

    @classmethod
    def pyramid(
        cls,
        n_base: int,
        n_top: int,
        steps: int,
        T: float = 1.0,
        domain: Domain | Sequence = (0.0, 1.0),
        rule: str = "trapezoid",
        levels: int = 3,
        transfer_kind: str = "galerkin",
    ) -> GridSchedule:
        """Coarsening in ``levels`` equal stages from ``n_base`` to ``n_top`` (widths geometric);
        the default transfer integrates each finer state exactly against the coarse hats.
        Widths between the given ones snap to the nearest the rule takes; the
        given ones must be widths the rule takes (e.g. odd for simpson).

        Args:
            n_base: the width of the first stage (an int, or one per axis).
            n_top: the width of the last stage.
            steps: K, the number of time steps.
            T: the horizon t_K (> 0); the times are uniform, t_k = k T / K.
            domain: the box, a [`Domain`][grids.domain.Domain] or its bounds.
            rule: the quadrature rule of every grid (a name of ``grids.quadrature.RULES``).
            levels: the number of stages of constant width (stage i has width
                n_base (n_top / n_base)^(i / (levels - 1)), snapped).
            transfer_kind: how the shortcuts Pi_k are built, one of ``TRANSFER_KINDS``.

        Returns:
            The schedule.
        """
        levels = as_int("levels", levels)
        return cls._shape(
            lambda s: min(math.floor(s * levels), levels - 1) / max(levels - 1, 1),
            n_base,
            n_top,
            steps,
            T,
            domain,
            rule,
            transfer_kind,
            geometric=True,
            names=("n_base", "n_top"),
        )

    @classmethod
    def _shape(
        cls,
        profile,
        n0,
        n1,
        steps,
        T,
        domain,
        rule,
        transfer_kind,
        geometric=False,
        names=("n_start", "n_end"),
    ):
        steps = _check_steps(steps)
        dom = as_domain(domain)
        check_rule(rule, RULES)
        a = _per_axis(n0, dom.dim, names[0])
        b = _per_axis(n1, dom.dim, names[1])
        for name, ends in zip(names, (a, b)):  # the given widths are kept exactly or refused
            for v in ends:
                near = nearest_valid_n(rule, v)
                if near != v:
                    raise ValueError(
                        f"{name}: expected a width the {rule} rule takes (the nearest is "
                        f"{near}), got {v}"
                    )

        def width(s: float):
            p = profile(s)
            out = []
            for x, y in zip(a, b):
                v = x * (y / x) ** p if geometric else x + (y - x) * p
                # widths in between snap to the nearest width the rule takes (documented)
                out.append(nearest_valid_n(rule, max(1, round(v))))
            return tuple(out) if dom.dim > 1 else out[0]

        t = _uniform_times(steps, T)
        widths = [width(k / steps) for k in range(steps + 1)]
        try:
            return cls.from_widths(widths, None, dom, rule, times=t, transfer_kind=transfer_kind)
        except ValueError as exc:
            if str(exc).startswith("widths:"):
                shown = ", ".join(f"{nm}={v!r}" for nm, v in zip(names, (n0, n1)))
                raise ValueError(f"{names[0]}, {names[1]} ({shown}): {exc}") from None
            raise

    @classmethod
    def moving(
        cls,
        widths: int | Sequence[int],
        steps: int | None = None,
        T: float = 1.0,
        domain: Domain | Sequence = (0.0, 1.0),
        phi: Callable[[float, torch.Tensor], torch.Tensor] | None = None,
        transfer_kind: str = "linear",
    ) -> GridSchedule:
        """Grids whose nodes drift with t: xi^k_j = phi(t_k / T, s_j), s_j equispaced.

        ``phi(tau, s)`` maps the reference nodes s (a tensor on each axis's interval) at
        relative time tau in [0, 1] to increasing nodes in the same interval; the default
        [`cluster_map`][grids.schedule.cluster_map] gathers nodes towards the centre as tau
        grows. ``widths`` is one int (every step) or K + 1 ints. Weights use the non-uniform
        trapezoid rule.

        Args:
            widths: one width for every time (then ``steps`` is required) or K + 1 widths;
                each an int or one per axis.
            steps: K; with a list of widths, None or ``len(widths) - 1``.
            T: the horizon t_K (> 0); the times are uniform, t_k = k T / K.
            domain: the box, a [`Domain`][grids.domain.Domain] or its bounds.
            phi: ``phi(tau, s) -> nodes`` of the same shape as ``s`` (None:
                ``cluster_map()``).
            transfer_kind: how the shortcuts Pi_k are built, one of ``TRANSFER_KINDS``.

        Returns:
            The schedule, its grids built with [`Grid.from_nodes`][grids.grid.Grid.from_nodes].
        """
        dom = as_domain(domain)
        if is_int(widths):
            if steps is None:
                raise ValueError("steps: required when widths is a single int")
            steps = _check_steps(steps)
            widths = [widths] * (steps + 1)
        widths = _check_widths(widths)
        if steps is not None and len(widths) != _check_steps(steps) + 1:
            raise ValueError(f"widths: need steps + 1 = {steps + 1} entries, got {len(widths)}")
        steps = _check_steps(len(widths) - 1)
        if phi is None:
            phi = cluster_map()
        elif not callable(phi):
            raise ValueError(f"phi: expected a function phi(tau, s) -> nodes, got {phi!r:.80}")
        t = _uniform_times(steps, T)
        grids = []
        for k, w in enumerate(widths):
            ws = _per_axis(w, dom.dim, f"widths[{k}]")
            tau = k / steps
            axes = []
            for n, (lo, hi) in zip(ws, dom.bounds):
                s = (
                    torch.linspace(lo, hi, n, dtype=torch.float64)
                    if n > 1
                    else torch.tensor([(lo + hi) / 2], dtype=torch.float64)
                )
                axes.append(_phi_nodes(phi(tau, s), s, k, tau))
            try:
                grids.append(Grid.from_nodes(axes[0] if dom.dim == 1 else axes, dom))
            except ValueError as exc:
                raise ValueError(f"phi: at step {k} (tau={tau:.3g}): {exc}") from None
        return cls(t, grids, transfer_kind)

    # ------------------------------------------------------------------ refinement
    def refine(self, width: int = 2, depth: int = 2) -> GridSchedule:
        """A finer schedule: every step split into ``depth`` equal substeps, and every grid
        refined ``width`` times (uniform grids: (n - 1) * width + 1 nodes for end-point rules,
        n * width otherwise; node grids: each gap split into ``width`` equal gaps).

        Substeps inside step k use the refined grid k (the grid changes where it changed
        before), so the refined schedule discretises the same moving-grid problem.

        Args:
            width: the refinement factor of every grid (>= 1).
            depth: the number of substeps per step (>= 1; K depth at most ``MAX_STEPS``).

        Returns:
            The refined schedule, with K depth steps (channels kept, a change of channel count
                in the last substep of its step), on this schedule's device and dtype.
        """
        width = as_int("width", width)
        depth = as_int("depth", depth, high=max(1, MAX_STEPS // max(self.num_steps, 1)))
        refined: dict[int, Grid] = {}
        fine = []
        for g in self.grids:
            key = id(g)
            if key not in refined:
                try:
                    refined[key] = _refine_grid(g, width)
                except ValueError as exc:
                    raise ValueError(f"width: refining {g} {width} times: {exc}") from None
            fine.append(refined[key])
        t = self.times.cpu().double()
        times = [t[0:1]]
        grids = [fine[0]]
        for k in range(self.num_steps):
            sub = t[k] + (t[k + 1] - t[k]) * torch.arange(1, depth + 1, dtype=torch.float64) / depth
            times.append(sub)
            grids.extend([fine[k]] * (depth - 1) + [fine[k + 1]])
        channels = None
        if self.channels is not None:
            c = self.channels
            channels = [c[0]]
            for k in range(self.num_steps):  # a channel change stays in the step's last substep
                channels.extend([c[k]] * (depth - 1) + [c[k + 1]])
        out = GridSchedule(torch.cat(times), grids, self.transfer_kind, channels)
        return out.to(device=self.device, dtype=self.dtype)

    # ------------------------------------------------------------------ JSON
    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """JSON text of the schedule (written to ``path`` too when given, atomically).

        Args:
            path: a file to write (its folder must exist), or None to write nothing.

        Returns:
            The JSON text, which [`from_json`][grids.schedule.GridSchedule.from_json] reads
                back (each distinct grid stored once, with an index per time).
        """
        table: list[dict] = []
        index: list[int] = []
        ids: dict[int, int] = {}
        for g in self.grids:
            if id(g) not in ids:
                ids[id(g)] = len(table)
                table.append(g.to_json())
            index.append(ids[id(g)])
        doc = {
            "format": _JSON_FORMAT,
            "version": JSON_VERSION,
            "times": self.times.double().cpu().tolist(),
            "transfer": self.transfer_kind,
            "grids": table,
            "grid_index": index,
        }
        if self.channels is not None:
            doc["channels"] = list(self.channels)
        text = json.dumps(doc, indent=1)
        if path is not None:
            if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)) or not str(path):
                raise ValueError(f"path: expected a file path (str or os.PathLike), got {path!r}")
            p = Path(path)
            if p.is_dir():
                raise ValueError(f"path: {p} is a folder; expected a file path")
            if not p.parent.is_dir():
                raise ValueError(f"path: the folder {p.parent} does not exist")
            _write_atomic(p, text)
        return text

    @classmethod
    def from_json(cls, source: str | os.PathLike) -> GridSchedule:
        """Read a schedule from JSON text or a file path; every field is validated, and an error
        in a file names the file and the field.

        Args:
            source: JSON text (a string starting with ``{``) or the path of a JSON file.

        Returns:
            The schedule.

        Raises:
            ValueError: for a missing file, malformed JSON or any invalid field.
        """
        text = source
        if not isinstance(source, (str, os.PathLike)):
            raise ValueError(
                f"source: expected JSON text or a file path, got {type(source).__name__}"
                " (to build from a dict, pass json.dumps(d))"
            )
        if isinstance(source, os.PathLike) or not source.lstrip().startswith("{"):
            p = Path(source)
            if not p.is_file():
                text = str(source)  # a path in full, however long; text cut short
                shown = text if "\n" not in text and len(text) <= 4096 else text[:80] + "..."
                raise ValueError(f"source: no such file and not JSON text: {shown!r}")
            try:
                text = p.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(f"source: {p} is not UTF-8 text ({exc.reason})") from None
            except OSError as exc:
                raise ValueError(f"source: cannot read {p} ({exc.strerror or exc})") from None
            try:
                return cls._from_json_text(text)
            except ValueError as exc:
                raise ValueError(f"{p}: {exc}") from None
        return cls._from_json_text(text)

    @classmethod
    def _from_json_text(cls, text: str) -> GridSchedule:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"source: malformed JSON ({exc.msg} at line {exc.lineno})") from None
        except RecursionError:
            raise ValueError("source: malformed JSON (nested too deeply)") from None
        if not isinstance(doc, dict):
            raise ValueError(f"source: expected a JSON object, got {type(doc).__name__}")
        version = doc.get("version")
        if type(version) is not int or version != JSON_VERSION:
            raise ValueError(f"version: expected {JSON_VERSION}, got {version!r}")
        # every key has been written since the first version: a missing one is a damaged file
        for key in ("format", "times", "transfer", "grids", "grid_index"):
            if key not in doc:
                raise ValueError(f"source: missing key {key!r}")
        unknown = sorted(set(doc) - _JSON_KEYS)
        if unknown:
            raise ValueError(
                f"source: unknown key(s) {', '.join(map(repr, unknown))}; expected only "
                f"{', '.join(sorted(_JSON_KEYS))}"
            )
        if doc["format"] != _JSON_FORMAT:
            raise ValueError(f"format: expected {_JSON_FORMAT!r}, got {doc['format']!r:.60}")
        transfer = doc["transfer"]
        if not isinstance(transfer, str) or transfer not in TRANSFER_KINDS:
            raise ValueError(
                f"transfer: expected one of {', '.join(TRANSFER_KINDS)}; got {transfer!r}"
            )
        table = doc["grids"]
        if not isinstance(table, list) or not table:
            raise ValueError("grids: expected a non-empty list of grids")
        grid_objs = [Grid.from_json_dict(g, name=f"grids[{i}]") for i, g in enumerate(table)]
        times = doc["times"]
        if not isinstance(times, list) or not all(
            type(v) in (int, float) for v in times
        ):  # JSON numbers only: no booleans, strings or nested lists
            raise ValueError(f"times: expected a list of numbers, got {times!r:.80}")
        index = doc["grid_index"]
        if not isinstance(index, list):
            raise ValueError(
                f"grid_index: expected a list of indices into grids, got {index!r:.80}"
            )
        for j, i in enumerate(index):
            if type(i) is not int or not 0 <= i < len(grid_objs):
                raise ValueError(
                    f"grid_index: expected indices into grids, got {index!r:.80} (entry {j} is "
                    f"{i!r:.40}, not an int in [0, {len(grid_objs)}))"
                )
        if len(index) != len(times):
            raise ValueError(
                f"grid_index: expected one entry per time ({len(times)}), got {len(index)}"
            )
        channels = doc.get("channels")
        if channels is not None and (
            not isinstance(channels, list) or not all(type(c) is int for c in channels)
        ):
            raise ValueError(f"channels: expected a list of positive ints, got {channels!r:.80}")
        return cls(times, [grid_objs[i] for i in index], transfer, channels)

    def plot(self, ax=None):
        """Figure: widths against t, and node positions against t. See
        [`grids.plot`][grids.plot].

        The figure has two panels of its own, so ``ax`` must be left out (None): an axes
        given is refused rather than ignored.

        Args:
            ax (None): must be None.

        Returns:
            (matplotlib.figure.Figure): the figure of
                [`plot_schedule`][grids.plot.plot_schedule].
        """
        from .plot import plot_schedule

        if ax is not None:
            raise ValueError(
                f"ax: expected None (plot draws a Figure of its own with two panels), got "
                f"{type(ax).__name__}"
            )

        return plot_schedule(self)

    def summary(self) -> str:
        """A short text table: step, t_k, n_k -> n_{k+1}, transfer.

        Returns:
            The table, a header line and one line per step (with the channel counts when the
                schedule has them).
        """
        lines = [f"GridSchedule: K={self.num_steps} steps, T={self.T:g}, domain={self.domain}"]
        for k in range(self.num_steps):
            line = (
                f"  step {k:3d}  t={float(self.times[k]):8.4f}  {self.grids[k].n:5d} -> "
                f"{self.grids[k + 1].n:5d}"
            )
            if self.channels is not None:
                line += f"  channels {self.channels[k]:4d} -> {self.channels[k + 1]:4d}"
            lines.append(line)
        return "\n".join(lines)

    def __len__(self) -> int:
        return self.num_steps

    def __repr__(self) -> str:
        w = self.widths
        shown = w if len(w) <= 8 else [*w[:3], "...", *w[-3:]]
        return f"GridSchedule(K={self.num_steps}, T={self.T:g}, widths={shown})"


def _write_atomic(path: Path, text: str) -> None:
    """``text`` to ``path`` through a temporary file in the same folder and ``os.replace``
    (a full disk leaves the previous file, never a truncated one), with the user's umask."""
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        mask = os.umask(0)
        os.umask(mask)
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o666 & ~mask)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@dataclass(frozen=True)
class ScheduleBuilder:
    """A schedule shape by name, as run files and the command line ask for one:
    ``build(widths, steps, T, domain, rule, transfer_kind) -> GridSchedule`` with ``widths``
    the ``widths`` (1: one width n on every step; 2: n_max, n_min) given, per axis as ints.
    ``takes_rule``: False when the shape places its own nodes (``rule`` is not read).

    Attributes:
        name: the shape's name, as ``--schedule`` and run files give it.
        build: ``build(widths, steps, T, domain, rule, transfer_kind) -> GridSchedule``.
        widths: how many widths the shape takes: 1 (n) or 2 (n_max, n_min).
        takes_rule: whether ``build`` reads ``rule``.
    """

    name: str
    build: Callable[..., GridSchedule]
    widths: int = 2
    takes_rule: bool = True


SCHEDULE_BUILDERS: dict[str, ScheduleBuilder] = {}
"""Every named schedule shape: `{name: ScheduleBuilder}` (`register_schedule_builder` adds
one; run files and `--schedule` take its name from then on)."""


def register_schedule_builder(builder: ScheduleBuilder) -> ScheduleBuilder:
    """Add ``builder`` to ``SCHEDULE_BUILDERS`` (run files and ``--schedule`` take its
    name from then on).

    Args:
        builder: the shape; one of the same name is replaced.

    Returns:
        ``builder``.

    Raises:
        ValueError: when ``builder`` is not a
            [`ScheduleBuilder`][grids.schedule.ScheduleBuilder] with ``widths`` 1 or 2.
    """
    if not isinstance(builder, ScheduleBuilder) or builder.widths not in (1, 2):
        raise ValueError(f"builder: expected a ScheduleBuilder with widths 1 or 2, got {builder!r}")
    SCHEDULE_BUILDERS[builder.name] = builder
    return builder


SCHEDULES: Sequence[str] = NamesView(SCHEDULE_BUILDERS)
"""The names of the schedule shapes: a live view of the keys of `SCHEDULE_BUILDERS`."""


def _constant(widths, steps, T, domain, rule, transfer_kind) -> GridSchedule:
    dim = as_domain(domain).dim
    n = widths[0] if dim == 1 else (widths[0],) * dim
    return GridSchedule.constant(
        n, steps, T=T, domain=domain, rule=rule, transfer_kind=transfer_kind
    )


def _moving(widths, steps, T, domain, rule, transfer_kind) -> GridSchedule:
    return GridSchedule.moving(widths[0], steps, T=T, domain=domain, transfer_kind=transfer_kind)


def _between(shape: str) -> Callable[..., GridSchedule]:
    def build(widths, steps, T, domain, rule, transfer_kind) -> GridSchedule:
        make = getattr(GridSchedule, shape)
        return make(widths[0], widths[-1], steps, T=T, domain=domain, rule=rule,
                    transfer_kind=transfer_kind)  # fmt: skip

    return build


register_schedule_builder(ScheduleBuilder("constant", _constant, widths=1))
for _shape in ("ramp", "hourglass", "pyramid"):
    register_schedule_builder(ScheduleBuilder(_shape, _between(_shape)))
register_schedule_builder(ScheduleBuilder("moving", _moving, widths=1, takes_rule=False))


def cluster_map(strength: float = 0.6, center: float = 0.5) -> Callable:
    """phi(tau, s): nodes drift towards ``center`` (relative position in the interval) as tau
    goes 0 -> 1; monotone in s for 0 <= strength < 1, end points fixed.

    With u = (s - lo) / (hi - lo) and a = strength tau, the map is
    u -> u - a sin(2 pi (u - c)) / (2 pi), rescaled so that both end points stay put.

    Args:
        strength: how far the nodes move at tau = 1, in [0, 1).
        center: where they gather, as a relative position in [0, 1] of each interval.

    Returns:
        ``phi(tau, s) -> nodes`` for [`GridSchedule.moving`][grids.schedule.GridSchedule.moving].
    """
    s_val = as_real("strength", strength)
    if not 0.0 <= s_val < 1.0:
        raise ValueError(f"strength: expected 0 <= strength < 1, got {strength!r}")
    strength = s_val
    center = as_real("center", center)
    if not 0.0 <= center <= 1.0:
        raise ValueError(f"center: expected a relative position 0 <= center <= 1, got {center!r}")

    def phi(tau: float, s: torch.Tensor) -> torch.Tensor:
        lo, hi = float(s.min()), float(s.max())
        if hi == lo:
            return s
        u = (s - lo) / (hi - lo)
        c = center
        # u -> u - a * sin(2 pi (u - c)) / (2 pi), derivative 1 - a cos(...) > 0
        a = strength * tau
        v = u - a * torch.sin(2 * math.pi * (u - c)) / (2 * math.pi)
        v = (v - v[0]) / (v[-1] - v[0])  # pin both end points, whatever the centre
        return (lo + (hi - lo) * v).clamp(lo, hi)

    return phi


def _check_channels(channels: object, n: int) -> list[int] | None:
    if channels is None:
        return None
    if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence):
        raise ValueError(f"channels: expected None or {n} positive ints, got {channels!r:.80}")
    out = list(channels)
    if len(out) != n or not all(is_int(c) and c >= 1 for c in out):
        raise ValueError(
            f"channels: expected {n} positive ints (one per time t_0..t_K), got {out!r:.80}"
        )
    return [int(c) for c in out]


def _check_steps(steps: object) -> int:
    if not is_int(steps) or steps < 1:
        raise ValueError(f"steps: expected a positive int, got {steps!r}")
    if steps > MAX_STEPS:
        raise ValueError(
            f"steps: expected a positive int of at most {MAX_STEPS:,} "
            f"(grids.schedule.MAX_STEPS), got {steps!r}"
        )
    return int(steps)


def _check_widths(widths: object) -> list:
    """``widths`` as a list of at least 2 entries (n_0 and n_K)."""
    if (
        isinstance(widths, (str, bytes, dict, torch.Tensor))
        or is_int(widths)
        or not hasattr(widths, "__iter__")
    ):
        raise ValueError(
            f"widths: expected a list of at least 2 widths [n_0, ..., n_K] (one per time), got "
            f"{widths!r:.80}"
        )
    out = list(widths)
    if len(out) < 2:
        raise ValueError(f"widths: need at least 2 entries (n_0 and n_K), got {out!r:.80}")
    return out


def _uniform_times(steps: int, T: float) -> torch.Tensor:
    if isinstance(T, (bool, str, bytes)):
        raise ValueError(f"T: expected a positive finite horizon, got {T!r}")
    try:
        T = float(T)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"T: expected a positive finite horizon, got {T!r:.80}") from None
    if not (math.isfinite(T) and T > 0):
        raise ValueError(f"T: expected a positive finite horizon, got {T}")
    return torch.linspace(0.0, T, steps + 1, dtype=torch.float64)


def _phi_nodes(out: object, s: torch.Tensor, k: int, tau: float) -> torch.Tensor:
    """The nodes ``phi(tau, s)`` returned, checked to be ``len(s)`` real numbers."""
    where = f"phi: at step {k} (tau={tau:.3g})"
    shown = (
        f"a {out.dtype} tensor of shape {tuple(out.shape)}"
        if isinstance(out, torch.Tensor)
        else f"{out!r:.80}"
    )
    if out is None or isinstance(out, (str, bytes, bool)):
        raise ValueError(f"{where}: expected {s.numel()} nodes like s, got {shown}")
    if isinstance(out, torch.Tensor) and (out.dtype == torch.bool or out.is_complex()):
        raise ValueError(f"{where}: expected {s.numel()} real nodes like s, got {shown}")
    if not isinstance(out, torch.Tensor):
        try:
            kind = np.asarray(out).dtype.kind
        except (TypeError, ValueError):
            kind = "O"
        if kind not in "iuf":
            raise ValueError(f"{where}: expected {s.numel()} real nodes like s, got {shown}")
    try:
        x = torch.as_tensor(out, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{where}: expected {s.numel()} nodes like s, got {shown}") from None
    if tuple(x.shape) != tuple(s.shape):
        raise ValueError(
            f"{where}: expected a tensor of the shape of s {tuple(s.shape)}, got {shown}"
        )
    return x


def _check_times(times: object) -> torch.Tensor:
    try:
        t = torch.as_tensor(times, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"times: expected a 1-D sequence of numbers, got {times!r:.80}") from None
    if t.dim() != 1 or t.numel() < 2:
        raise ValueError(f"times: expected at least 2 increasing times, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        j = int((~torch.isfinite(t)).nonzero()[0])
        raise ValueError(f"times: t[{j}]={float(t[j])} is not finite")
    if float(t[0]) != 0.0:
        raise ValueError(f"times: must start at t[0]=0, got t[0]={float(t[0])}")
    d = t[1:] - t[:-1]
    if (d <= 0).any():
        k = int((d <= 0).nonzero()[0])
        raise ValueError(
            f"times: must increase, got t[{k + 1}]={float(t[k + 1])} <= t[{k}]={float(t[k])}"
        )
    return t


def _per_axis(n: object, dim: int, name: str) -> tuple[int, ...]:
    vals = tuple(n) if isinstance(n, (tuple, list)) else (n,) * dim
    if len(vals) != dim:
        raise ValueError(f"{name}: expected {dim} counts, got {n!r}")
    for v in vals:
        if not is_int(v) or v <= 0:
            raise ValueError(f"{name}: expected positive ints, got {n!r}")
    return tuple(int(v) for v in vals)


def _refine_grid(g: Grid, width: int) -> Grid:
    if width == 1:
        return g
    if g.is_uniform:
        if not get_rule(g.rule).end_points:  # n cells or n roots: n w of them
            n = tuple(s * width for s in g.shape)
        else:
            n = tuple((s - 1) * width + 1 for s in g.shape)
            n = tuple(
                nearest_valid_n(g.rule, v) if v != nearest_valid_n(g.rule, v) else v for v in n
            )
        return Grid.uniform(n if g.dim > 1 else n[0], g.domain, g.rule)
    axes = []
    for a in g.axes:
        a = a.cpu().double()
        if a.numel() == 1:
            axes.append(a)
            continue
        frac = torch.arange(width, dtype=torch.float64) / width
        inner = (a[:-1, None] + (a[1:] - a[:-1])[:, None] * frac[None, :]).reshape(-1)
        axes.append(torch.cat([inner, a[-1:]]))
    return Grid.from_nodes(axes[0] if g.dim == 1 else axes, g.domain, g.rule)
