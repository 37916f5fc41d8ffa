"""Dense kernels: how the controls w(t, xi, zeta) and b(t, xi) are stored, and their matrices.

A kernel evaluated between an output grid (nodes xi_i) and an input grid (nodes zeta_j with
quadrature weights omega_j) at time t gives

    W_ij = w(t, xi_i, zeta_j) * omega_j      [n_out, n_in]
    beta_i = b(t, xi_i)                       [n_out]

so that (W x)_i approximates int_Omega w(t, xi_i, zeta) x(zeta) dzeta. ``NodalKernel`` stores the
matrices themselves (a plain variable-width ResNet, tied to its schedule); ``BasisKernel``,
``NeuralKernel`` and ``FunctionKernel`` are defined at every point, so one model can be
discretised on any schedule.

With ``channels=c`` the kernel is a ``c x c`` matrix at every pair of points and the discrete
operator is the block matrix ``W [c n_out, c n_in]`` (channel-major: row o * n_out + i, column
c * n_in + j), acting on states ``[B, c, n]`` flattened to ``[B, c n]``.
"""

from __future__ import annotations

import math
import numbers
import weakref
from collections.abc import Callable, Sequence

import torch
from torch import nn

from grids import Domain, GridSchedule
from grids.domain import as_domain

from ..ops import Dense, LowRankOp
from ..validation import check_int

__all__ = [
    "Kernel",
    "check_scale",
    "NodalKernel",
    "BasisKernel",
    "NeuralKernel",
    "FunctionKernel",
    "basis_functions",
    "BASES",
]


class Kernel(nn.Module):
    """Base class. ``forward(k, t, out_nodes [n_out, d], in_nodes [n_in, d], in_weights [n_in])``
    returns ``(W [n_out, n_in], beta [n_out])`` for step k at time t.

    ``output_scale`` multiplies (w, b); ``T`` is the horizon the kernel's time variable spans.
    Both are changed together by ``rescale_horizon`` (the scaling lemma).

    Args:
        T: the horizon, positive and finite.
    """

    continuous: bool = True
    #: the number of channels (None: the scalar model); per step for nodal kernels
    channels: int | None = None

    def __init__(self, T: float = 1.0) -> None:
        super().__init__()
        T = float(T)
        if not (math.isfinite(T) and T > 0):
            raise ValueError(f"T: expected a positive finite horizon, got {T}")
        self.T = T
        self.output_scale = 1.0

    def channels_at(self, k: int, t: float) -> int | None:
        """Channels of step k at time t (None: the scalar model).

        Args:
            k: the step.
            t: the time t_k.

        Returns:
            The channel count c, or None.
        """
        return self.channels

    def check_channels(self, times: Sequence[float], channels: Sequence[int] | None) -> None:
        """Raise ValueError when the schedule's channel counts c_k differ from the kernel's.

        Args:
            times: the schedule's times t_0..t_K.
            channels: its channel counts c_0..c_K, or None for the scalar model.
        """
        for k, t in enumerate(times[:-1]):
            mine = self.channels_at(k, t)
            theirs = None if channels is None else channels[k]
            if mine != theirs:
                raise ValueError(
                    f"channels: step {k} (t={t:.4g}) of the schedule has {theirs} channels, "
                    f"the kernel {type(self).__name__} has {mine}"
                )

    def check_resolution(self, steps: Sequence, allow_underresolved: bool = False) -> None:
        """Raise ValueError when the kernel is finer than a grid of the schedule (``steps`` are
        ``(t_k, GridInfo of G_k)`` for k = 0..K); see the subclasses.

        Args:
            steps: ``(t_k, GridInfo)`` for each grid of the schedule.
            allow_underresolved: skip the check.
        """

    def step_op(self, k: int, t: float, out, inp):
        """The operator of step k from the input grid ``inp`` to the output grid ``out``, each
        a ``(nodes [n, d], weights [n], GridInfo)`` triple. Dense kernels: ``Dense(W, b)``.

        Args:
            k: the step.
            t: the time t_k.
            out (tuple): the output grid's ``(nodes, weights, GridInfo)``.
            inp (tuple): the input grid's ``(nodes, weights, GridInfo)``.

        Returns:
            (Dense): ``Dense(W, beta)`` of ``forward`` (subclasses may return another step
                operator of [`spacetime_nets.ops`][spacetime_nets.ops]).
        """
        W, b = self.forward(k, t, out[0], inp[0], inp[1])
        return Dense(W, b)

    def step_ops(self, steps: Sequence[tuple]) -> list:
        """The operators of several steps at once, ``steps`` holding ``(k, t, out, inp)``
        (what [`step_op`][spacetime_nets.kernels.Kernel.step_op] takes); kernels may share
        work between the steps here.

        Args:
            steps: ``(k, t, out, inp)`` for each step.

        Returns:
            One step operator per entry of ``steps``.
        """
        return [self.step_op(k, t, out, inp) for k, t, out, inp in steps]

    def check_discretisation(self, out_widths: Sequence[int], in_widths: Sequence[int]) -> None:
        """Raise ValueError when the kernel cannot be evaluated on these step shapes.

        Args:
            out_widths: the output width of each step.
            in_widths: the input width of each step.
        """

    def rescale_horizon_(self, T_new: float) -> None:
        """In place: u_new(s) = (T / T_new) u(s T / T_new) on [0, T_new].

        Multiplies ``output_scale`` by T / T_new and sets ``T`` to T_new.

        Args:
            T_new: the new horizon, positive and finite.
        """
        T_new = float(T_new)
        if not (math.isfinite(T_new) and T_new > 0):
            raise ValueError(f"T_new: expected a positive finite horizon, got {T_new}")
        self.output_scale *= self.T / T_new
        self.T = T_new

    def get_extra_state(self) -> dict:
        """The horizon and scale, saved in ``state_dict``.

        Returns:
            ``{"T": T, "output_scale": s}``.
        """
        return {"T": self.T, "output_scale": self.output_scale}

    def set_extra_state(self, state: dict) -> None:
        """Restore the horizon and scale from ``state_dict``.

        Args:
            state: the dict of ``get_extra_state``.
        """
        self.T = float(state["T"])
        self.output_scale = float(state["output_scale"])

    def extra_repr(self) -> str:
        """The line printed in the module's repr.

        Returns:
            ``T=...``.
        """
        return f"T={self.T:g}"


# --------------------------------------------------------------------------- nodal
class NodalKernel(Kernel):
    """Free matrices W^k ``[n_{k+1}, n_k]`` and biases beta^k ``[n_{k+1}]``: a plain ResNet.

    Tied to the widths (and number of steps) of the schedule it was made for. Initialised like
    ``nn.Linear`` (uniform in +-1/sqrt(n_k)) times ``init_scale``.

    Args:
        schedule: the schedule whose widths (and channels) it takes; or None with both
            ``out_widths`` and ``in_widths``.
        out_widths: n_{k+1} per step (default: from ``schedule``).
        in_widths: n_k per step (default: from ``schedule``).
        init_scale: the scale of the initial draws (finite, >= 0).
        bias: whether the steps have biases beta^k (else they are zero).
        generator: the random generator of the initial draws (None: torch's global one).
        channels: one count per step, one for every step, or None (from ``schedule``, else
            the scalar model).
    """

    continuous = False

    def __init__(
        self,
        schedule: GridSchedule | None = None,
        *,
        out_widths: Sequence[int] | None = None,
        in_widths: Sequence[int] | None = None,
        init_scale: float = 1.0,
        bias: bool = True,
        generator: torch.Generator | None = None,
        channels: Sequence[int] | int | None = None,
    ) -> None:
        super().__init__(T=schedule.T if schedule is not None else 1.0)
        init_scale = check_scale(init_scale)
        if schedule is not None:
            w = schedule.widths
            out_widths = w[1:] if out_widths is None else out_widths
            in_widths = w[:-1] if in_widths is None else in_widths
            if channels is None and schedule.channels is not None:
                channels = schedule.channels[:-1]
        if out_widths is None or in_widths is None:
            raise ValueError("schedule: give a GridSchedule, or both out_widths and in_widths")
        self.out_widths = [int(v) for v in out_widths]
        self.in_widths = [int(v) for v in in_widths]
        if len(self.out_widths) != len(self.in_widths):
            raise ValueError(
                f"out_widths: need one entry per step ({len(self.in_widths)}), got "
                f"{len(self.out_widths)}"
            )
        K = len(self.in_widths)
        if isinstance(channels, int) and not isinstance(channels, bool):
            channels = [channels] * K
        if channels is not None:
            channels = [check_int("channels", c) for c in channels]
            if len(channels) != K:
                raise ValueError(f"channels: need one count per step ({K}), got {len(channels)}")
        self.step_channels = channels
        self.weight = nn.ParameterList()
        self.bias = nn.ParameterList() if bias else None
        for k, (n_out, n_in) in enumerate(zip(self.out_widths, self.in_widths)):
            c = 1 if channels is None else channels[k]
            bound = init_scale / math.sqrt(c * n_in)
            w = (torch.rand(c * n_out, c * n_in, generator=generator) * 2 - 1) * bound
            self.weight.append(nn.Parameter(w))
            if self.bias is not None:
                b = (torch.rand(c * n_out, generator=generator) * 2 - 1) * bound
                self.bias.append(nn.Parameter(b))

    @property
    def num_steps(self) -> int:
        """K, the number of steps it has matrices for."""
        return len(self.out_widths)

    def channels_at(self, k: int, t: float) -> int | None:
        """The channel count of step k (``t`` is not read).

        Args:
            k: the step.
            t: the time t_k.

        Returns:
            c_k, or None for the scalar model.
        """
        return None if self.step_channels is None else self.step_channels[k]

    def check_discretisation(self, out_widths, in_widths) -> None:
        """Raise ValueError unless the widths are those the kernel was made for.

        Args:
            out_widths (Sequence[int]): the output width of each step.
            in_widths (Sequence[int]): the input width of each step.
        """
        if list(out_widths) != self.out_widths or list(in_widths) != self.in_widths:
            raise ValueError(
                "kernel: this NodalKernel was made for another schedule (steps "
                f"{self.num_steps}, widths {_short(self.in_widths)} -> {_short(self.out_widths)});"
                f" got steps {len(in_widths)}, widths {_short(list(in_widths))} -> "
                f"{_short(list(out_widths))}. Nodal kernels exist only on their own schedule: "
                "use a continuous kernel (basis, neural, function) to change discretisation."
            )

    def all_steps(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[(W^k, beta^k)] for every step at once (the hot path of a forward pass).

        Returns:
            One ``(W [c n_{k+1}, c n_k], beta [c n_{k+1}])`` per step, ``output_scale``
                included (zero biases without ``bias``).
        """
        ws = list(self.weight._parameters.values())
        if self.bias is None:
            bs = [w.new_zeros(w.shape[0]) for w in ws]
        else:
            bs = list(self.bias._parameters.values())
        if self.output_scale != 1.0:
            s = self.output_scale
            return [(w * s, b * s) for w, b in zip(ws, bs)]
        return list(zip(ws, bs))

    def forward(self, k, t, out_nodes, in_nodes, in_weights):
        """The free matrices of step k (the nodes and weights are not read: they are folded
        into the trained matrix).

        Args:
            k (int): the step.
            t (float): the time t_k.
            out_nodes (torch.Tensor): the output grid's nodes xi, ``[n_out, d]``.
            in_nodes (torch.Tensor): the input grid's nodes zeta, ``[n_in, d]``.
            in_weights (torch.Tensor): the input grid's quadrature weights omega, ``[n_in]``.

        Returns:
            (tuple[torch.Tensor, torch.Tensor]): ``(W, beta)``, ``W [c n_out, c n_in]`` and
                ``beta [c n_out]`` (c = 1 for the scalar model), ``output_scale`` included.
        """
        W = self.weight[k]
        b = self.bias[k] if self.bias is not None else W.new_zeros(W.shape[0])
        if self.output_scale != 1.0:
            return W * self.output_scale, b * self.output_scale
        return W, b

    def extra_repr(self) -> str:
        """The line printed in the module's repr.

        Returns:
            The steps and input widths.
        """
        return f"steps={self.num_steps}, widths={_short(self.in_widths)}"


def _short(w: list) -> str:
    return str(w) if len(w) <= 6 else f"[{w[0]}, {w[1]}, ..., {w[-1]}]"


# --------------------------------------------------------------------------- bases
def _legendre(x: torch.Tensor, a: float, b: float, modes: int) -> torch.Tensor:
    """sqrt((2m+1)/L) P_m(2(x-a)/L - 1), m = 0..modes-1, by the three-term recurrence."""
    L = b - a
    u = 2.0 * (x - a) / L - 1.0
    cols = [torch.ones_like(u)]
    if modes > 1:
        cols.append(u)
    for m in range(1, modes - 1):
        cols.append(((2 * m + 1) * u * cols[m] - m * cols[m - 1]) / (m + 1))
    # computed where x lives: no host-to-device copy (CUDA graphs can record it)
    scale = torch.sqrt((2 * torch.arange(modes, dtype=x.dtype, device=x.device) + 1) / L)
    return torch.stack(cols, dim=-1) * scale


def _fourier(x: torch.Tensor, a: float, b: float, modes: int) -> torch.Tensor:
    """1/sqrt(L), then sqrt(2/L) cos(2 pi j (x-a)/L) and sqrt(2/L) sin(2 pi j (x-a)/L)
    alternately, j = 1, 2, ..., until there are ``modes`` columns."""
    L = b - a
    s = 2.0 * math.pi * (x - a) / L
    cols = [torch.full_like(x, 1.0 / math.sqrt(L))]
    j = 1
    while len(cols) < modes:
        cols.append(math.sqrt(2.0 / L) * torch.cos(j * s))
        if len(cols) < modes:
            cols.append(math.sqrt(2.0 / L) * torch.sin(j * s))
        j += 1
    return torch.stack(cols, dim=-1)


#: the basis families: name -> f(x [n], a, b, modes) -> the orthonormal functions [n, modes]
_BASIS_FAMILIES: dict[str, Callable[[torch.Tensor, float, float, int], torch.Tensor]] = {
    "legendre": _legendre,
    "fourier": _fourier,
}

BASES = tuple(_BASIS_FAMILIES)
"""The function families of the basis kernel (`basis=`): Legendre polynomials or Fourier
modes."""


def _basis_family(basis: object) -> Callable[[torch.Tensor, float, float, int], torch.Tensor]:
    """The function builder of the family ``basis`` (ValueError naming ``basis`` otherwise)."""
    family = _BASIS_FAMILIES.get(basis) if isinstance(basis, str) else None
    if family is None:
        raise ValueError(f"basis: expected one of {', '.join(BASES)}; got {basis!r}")
    return family


def basis_functions(
    x: torch.Tensor, a: float, b: float, modes: int, basis: str = "legendre"
) -> torch.Tensor:
    """Orthonormal basis on [a, b] evaluated at ``x`` ``[n]`` -> ``[n, modes]``.

    legendre: sqrt((2m+1)/L) P_m(2(x-a)/L - 1); fourier: 1/sqrt(L), sqrt(2/L) cos(2 pi j (x-a)/L),
    sqrt(2/L) sin(2 pi j (x-a)/L), j = 1, 2, ... (L = b - a).

    Args:
        x: the points, ``[n]``.
        a: the left end of the interval.
        b: the right end.
        modes: the number of functions.
        basis: ``legendre`` or ``fourier``.

    Returns:
        ``[n, modes]``, column m the m-th function.
    """
    return _basis_family(basis)(x, a, b, modes)


def tensor_basis(nodes: torch.Tensor, domain: Domain, modes: int, basis: str) -> torch.Tensor:
    """Tensor-product basis phi_a(xi) = prod_i phi_{a_i}(xi_i): ``[n, d] -> [n, modes^d]``.

    Args:
        nodes: the points, ``[n, d]``.
        domain: the box (its interval on each axis).
        modes: the functions per axis.
        basis: ``legendre`` or ``fourier``.

    Returns:
        ``[n, modes^d]``, the last axis's index varying fastest.
    """
    out = None
    for i, (a, b) in enumerate(domain.bounds):
        phi = basis_functions(nodes[:, i], a, b, modes, basis)
        out = phi if out is None else (out[:, :, None] * phi[:, None, :]).reshape(len(nodes), -1)
    return out


class _BasisCache:
    """Basis values per node tensor, computed once (node tensors are fixed buffers)."""

    def __init__(self) -> None:
        self._store: dict[int, tuple[weakref.ref, torch.Tensor]] = {}

    def get(
        self,
        nodes: torch.Tensor,
        fn: Callable[[torch.Tensor], torch.Tensor],
        key: object = None,
    ) -> torch.Tensor:
        """``fn(nodes)``, computed once per tensor (and ``key``, when the value also depends on
        other fixed tensors)."""
        key = id(nodes) if key is None else key
        hit = self._store.get(key)
        if hit is not None and hit[0]() is nodes:
            return hit[1]
        value = fn(nodes)
        self._store[key] = (weakref.ref(nodes), value)
        if len(self._store) > 4096:
            self._store = {k: v for k, v in self._store.items() if v[0]() is not None}
        return value


def check_scale(init_scale: object) -> float:
    """``init_scale`` must be a finite real number >= 0 (a Python or NumPy real; never a bool
    or a string): the initial controls are ``init_scale`` times random draws of unit scale,
    so 0 starts from the zero field and a negative scale only flips their sign.

    Args:
        init_scale: the value of ``init_scale=``.

    Returns:
        ``init_scale`` as a Python float.
    """
    ok = isinstance(init_scale, numbers.Real) and not isinstance(init_scale, bool)
    if not ok or not math.isfinite(init_scale) or init_scale < 0:  # type: ignore[arg-type]
        raise ValueError(f"init_scale: expected a finite number >= 0, got {init_scale!r}")
    return float(init_scale)  # type: ignore[arg-type]


def check_channels_arg(channels: object) -> int | None:
    if channels is None:
        return None
    return check_int("channels", channels)


class BasisKernel(Kernel):
    """w(t, xi, zeta) = sum_{a,b} C_ab(t) phi_a(xi) phi_b(zeta), b(t, xi) = sum_a c_a(t) phi_a(xi).

    Orthonormal Legendre or Fourier bases (tensor products in 2-D, ``modes`` per axis, so
    A = modes^d functions). In t the coefficients are piecewise constant on ``pieces`` equal
    intervals of [0, T] (``time_degree=None``), or Legendre polynomials of degree
    ``time_degree`` in t (smooth in t). Because the basis is orthonormal,
    |w(t)|^2_{L^2(Omega x Omega)} = |C(t)|_F^2.

    A step applies W = Phi_out C (Phi_in * omega)^T in factored form
    ([`LowRankOp`][spacetime_nets.ops.LowRankOp], O(A (n_in + n_out)) per sample) when that
    takes fewer multiply-adds than the dense matrix (O(n_in n_out)); ``factored=True`` /
    ``False`` forces one form. Both give the same operator up to rounding.

    Args:
        domain: the box Omega, a [`Domain`][grids.domain.Domain] or its bounds.
        modes: the basis functions per axis.
        basis: ``legendre`` or ``fourier`` (one of ``BASES``).
        pieces: the pieces of [0, T] on which the coefficients are constant.
        T: the horizon the time variable spans.
        time_degree: the degree of the Legendre expansion in t (replaces ``pieces``), or None.
        init_scale: the scale of the initial coefficients (finite, >= 0).
        bias: whether b is trained (else b = 0).
        generator: the random generator of the initial draws (None: torch's global one).
        channels: the channel count c, or None for the scalar model.
        factored: force the factored (True) or dense (False) form; None picks the cheaper.
    """

    def __init__(
        self,
        domain: Domain | Sequence = (0.0, 1.0),
        modes: int = 8,
        basis: str = "legendre",
        pieces: int = 1,
        T: float = 1.0,
        time_degree: int | None = None,
        init_scale: float = 1.0,
        bias: bool = True,
        generator: torch.Generator | None = None,
        channels: int | None = None,
        factored: bool | None = None,
    ) -> None:
        super().__init__(T)
        init_scale = check_scale(init_scale)
        self.channels = check_channels_arg(channels)
        if factored not in (None, True, False):
            raise ValueError(f"factored: expected None, True or False, got {factored!r}")
        self.factored = factored
        self.domain = as_domain(domain)
        self.modes = check_int("modes", modes)
        _basis_family(basis)
        self.basis = basis
        self.time_degree = None if time_degree is None else check_int("time_degree", time_degree, 0)
        self.pieces = check_int("pieces", pieces) if time_degree is None else time_degree + 1
        A = self.modes**self.domain.dim
        self.num_functions = A
        c = self.channels
        cc = () if c is None else (c, c)
        std = init_scale / math.sqrt(A * (c or 1))
        self.coeff = nn.Parameter(torch.randn(self.pieces, *cc, A, A, generator=generator) * std)
        self.bias_coeff = (
            nn.Parameter(torch.randn(self.pieces, *cc[:1], A, generator=generator) * std)
            if bias
            else None
        )
        self._cache = _BasisCache()

    @classmethod
    def for_schedule(cls, schedule: GridSchedule, **kwargs) -> BasisKernel:
        """Piecewise constant in t on the schedule's steps (when they are uniform).

        Args:
            schedule: gives the domain, T and (by default) ``pieces`` = K.
            **kwargs (object): the other arguments of the constructor.

        Returns:
            The kernel.
        """
        kwargs.setdefault("pieces", schedule.num_steps)
        return cls(schedule.domain, T=schedule.T, **kwargs)

    def check_resolution(self, steps: Sequence, allow_underresolved: bool = False) -> None:
        """``modes`` basis functions per axis are linearly independent on a grid only when the
        axis has at least ``modes`` nodes; a coarser grid cannot tell the kernel's modes apart
        (the discrete operator then depends on the resolution, not on the kernel).

        Args:
            steps: ``(t_k, GridInfo)`` for each grid of the schedule.
            allow_underresolved: skip the check.
        """
        if allow_underresolved:
            return
        for k, (_, info) in enumerate(steps):
            for a, n in enumerate(info.shape):
                if self.modes > n:
                    raise ValueError(
                        f"modes: {self.modes} basis functions on axis {a} need at least "
                        f"{self.modes} nodes, grid {k} has {n}; use fewer modes, a "
                        "finer grid, or allow_underresolved=True"
                    )

    def phi(self, nodes: torch.Tensor) -> torch.Tensor:
        """Basis values at ``nodes`` ``[n, d]`` -> ``[n, A]`` (cached per node tensor).

        Args:
            nodes: the points, ``[n, d]``.

        Returns:
            ``[n, A]`` in the dtype of ``nodes`` (computed in float64).
        """
        return self._cache.get(
            nodes,
            lambda x: tensor_basis(x.double(), self.domain, self.modes, self.basis).to(x.dtype),
        )

    def step_ops(self, steps: Sequence[tuple]) -> list:
        """Every step's operator, with the coefficient pieces split off once: indexing C per
        step would give each step's backward a zero-filled gradient of all the pieces.

        Args:
            steps: ``(k, t, out, inp)`` for each step.

        Returns:
            One step operator per entry of ``steps``.
        """
        bias = self.bias_coeff.unbind(0) if self.bias_coeff is not None else None
        self._split = (self.coeff.unbind(0), bias)
        try:
            return super().step_ops(steps)
        finally:
            self._split = None

    def coefficients(self, t: float) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(C(t) [A, A], c(t) [A]) including ``output_scale``.

        Args:
            t: the time (clamped to [0, T]).

        Returns:
            ``(C, c)``: ``[A, A]`` and ``[A]`` (``[c, c, A, A]`` and ``[c, A]`` with channels);
                ``c`` is None without bias.
        """
        tau = min(max(t / self.T, 0.0), 1.0)
        split = getattr(self, "_split", None)
        C_pieces, c_pieces = split if split is not None else (self.coeff, self.bias_coeff)
        if self.time_degree is None:
            # at a piece boundary tau * pieces is an integer up to rounding (t_k = k T / K can
            # come out a few ulps low): without the tolerance step k would use piece k - 1
            p = min(int(tau * self.pieces + 1e-9), self.pieces - 1)
            C = C_pieces[p]
            c = c_pieces[p] if c_pieces is not None else None
        else:
            # Legendre values in t as Python floats: no tensor is moved to the device
            L = basis_functions(
                torch.tensor([tau], dtype=torch.float64), 0.0, 1.0, self.pieces, "legendre"
            )[0].tolist()
            C = sum(li * C_pieces[m] for m, li in enumerate(L))
            c = sum(li * c_pieces[m] for m, li in enumerate(L)) if c_pieces is not None else None
        if self.output_scale != 1.0:
            C = C * self.output_scale
            c = c * self.output_scale if c is not None else None
        return C, c

    def low_rank(self, t: float, out_nodes, in_nodes, in_weights) -> LowRankOp:
        """The operator at time t between two grids in factored form (``Phi_out [n_out, A]``,
        ``M [c A, c A]`` and ``c [c A]`` from C(t), c(t), ``Phi_in * omega [n_in, A]``).

        Args:
            t: the time.
            out_nodes (torch.Tensor): the output grid's nodes, ``[n_out, d]``.
            in_nodes (torch.Tensor): the input grid's nodes, ``[n_in, d]``.
            in_weights (torch.Tensor): the input grid's quadrature weights, ``[n_in]``.

        Returns:
            The [`LowRankOp`][spacetime_nets.ops.LowRankOp].
        """
        C, c = self.coefficients(t)
        ch = self.channels
        A = self.num_functions
        if ch is not None:
            C = C.permute(0, 2, 1, 3).reshape(ch * A, ch * A)  # rows (o, a), columns (p, b)
        if c is None:
            c = C.new_zeros(C.shape[0])
        phi_in = self.phi(in_nodes)
        V = self._cache.get(
            in_weights, lambda w: phi_in * w[:, None], key=(id(in_nodes), id(in_weights))
        )
        return LowRankOp(self.phi(out_nodes), C, c.reshape(-1), phi_in, V, ch)

    def use_factored(self, n_out: int, n_in: int) -> bool:
        """Whether a step between grids of these sizes runs in factored form.

        Args:
            n_out: the output grid's size.
            n_in: the input grid's size.

        Returns:
            ``factored`` when set, else whether c A (n_in + n_out) + (c A)^2 < c^2 n_in n_out.
        """
        if self.factored is not None:
            return self.factored
        c, A = self.channels or 1, self.num_functions
        return c * A * (n_in + n_out) + (c * A) ** 2 < c * c * n_in * n_out

    def step_op(self, k: int, t: float, out, inp):
        """A [`LowRankOp`][spacetime_nets.ops.LowRankOp], or the ``Dense`` matrix (see the
        class).

        Args:
            k: the step.
            t: the time t_k.
            out (tuple): the output grid's ``(nodes, weights, GridInfo)``.
            inp (tuple): the input grid's ``(nodes, weights, GridInfo)``.

        Returns:
            (LowRankOp | Dense): the step operator.
        """
        op = self.low_rank(t, out[0], inp[0], inp[1])
        if self.use_factored(out[0].shape[0], inp[0].shape[0]):
            return op
        return op.dense()

    def forward(self, k, t, out_nodes, in_nodes, in_weights):
        """The dense matrices at time t: W = Phi_out C(t) (Phi_in * omega)^T, beta =
        Phi_out c(t).

        Args:
            k (int): the step.
            t (float): the time t_k.
            out_nodes (torch.Tensor): the output grid's nodes xi, ``[n_out, d]``.
            in_nodes (torch.Tensor): the input grid's nodes zeta, ``[n_in, d]``.
            in_weights (torch.Tensor): the input grid's quadrature weights omega, ``[n_in]``.

        Returns:
            (tuple[torch.Tensor, torch.Tensor]): ``(W, beta)``, ``W [c n_out, c n_in]`` and
                ``beta [c n_out]`` (c = 1 for the scalar model), ``output_scale`` included.
        """
        return self.low_rank(t, out_nodes, in_nodes, in_weights).dense()

    def extra_repr(self) -> str:
        """The line printed in the module's repr.

        Returns:
            The basis, modes, dimension, pieces (or time degree), T and channels.
        """
        t = (
            f"pieces={self.pieces}"
            if self.time_degree is None
            else f"time_degree={self.time_degree}"
        )
        ch = "" if self.channels is None else f", channels={self.channels}"
        return f"{self.basis}, modes={self.modes}, dim={self.domain.dim}, {t}, T={self.T:g}{ch}"


class NeuralKernel(Kernel):
    """w(t, xi, zeta) = MLP(t / T, xi, zeta) and b(t, xi) = MLP_b(t / T, xi).

    Coordinates are mapped to [-1, 1] before the MLP; the output layer is scaled so that the
    integral operator has norm O(``init_scale``) whatever the resolution.

    Args:
        domain: the box Omega, a [`Domain`][grids.domain.Domain] or its bounds.
        hidden: the width of the MLPs' hidden layers.
        depth: the number of hidden layers (tanh).
        T: the horizon the time variable spans.
        init_scale: the scale of the output layers (finite, >= 0).
        bias: whether b is an MLP too (else b = 0).
        generator: the random generator of the initial weights (None: torch's global one).
        channels: the channel count c (the MLP of w then has c^2 outputs), or None.
    """

    def __init__(
        self,
        domain: Domain | Sequence = (0.0, 1.0),
        hidden: int = 32,
        depth: int = 2,
        T: float = 1.0,
        init_scale: float = 1.0,
        bias: bool = True,
        generator: torch.Generator | None = None,
        channels: int | None = None,
    ) -> None:
        super().__init__(T)
        init_scale = check_scale(init_scale)
        self.channels = check_channels_arg(channels)
        self.domain = as_domain(domain)
        d = self.domain.dim
        check_int("hidden", hidden)
        check_int("depth", depth)
        c = self.channels or 1
        self.net = _mlp(1 + 2 * d, hidden, depth, generator, init_scale / math.sqrt(c), c * c)
        self.bias_net = _mlp(1 + d, hidden, depth, generator, init_scale, c) if bias else None

    def _unit(self, x: torch.Tensor) -> torch.Tensor:
        # the bounds as Python floats: exact in every dtype (a float32 buffer moved to float64
        # would carry its rounding), and no tensor is made or moved here
        cols = [2.0 * (x[:, i] - a) / (b - a) - 1.0 for i, (a, b) in enumerate(self.domain.bounds)]
        return torch.stack(cols, dim=-1)

    def forward(self, k, t, out_nodes, in_nodes, in_weights):
        """The dense matrices at time t: W_ij = MLP(t / T, xi_i, zeta_j) omega_j, beta_i =
        MLP_b(t / T, xi_i), computed in the MLP's dtype.

        Args:
            k (int): the step.
            t (float): the time t_k.
            out_nodes (torch.Tensor): the output grid's nodes xi, ``[n_out, d]``.
            in_nodes (torch.Tensor): the input grid's nodes zeta, ``[n_in, d]``.
            in_weights (torch.Tensor): the input grid's quadrature weights omega, ``[n_in]``.

        Returns:
            (tuple[torch.Tensor, torch.Tensor]): ``(W, beta)``, ``W [c n_out, c n_in]`` and
                ``beta [c n_out]`` (c = 1 for the scalar model), ``output_scale`` included.
        """
        dtype = self.net[0].weight.dtype
        xi = self._unit(out_nodes).to(dtype)
        zeta = self._unit(in_nodes).to(dtype)
        n_out, n_in, d = xi.shape[0], zeta.shape[0], xi.shape[1]
        tt = torch.full((n_out, n_in, 1), 2.0 * t / self.T - 1.0, dtype=dtype, device=xi.device)
        feats = torch.cat(
            [tt, xi[:, None, :].expand(n_out, n_in, d), zeta[None, :, :].expand(n_out, n_in, d)],
            dim=-1,
        )
        fb = torch.cat([tt[:, 0, :], xi], dim=-1)
        if self.channels is None:
            w = self.net(feats)[..., 0] * self.output_scale
            W = w * in_weights.to(dtype)[None, :]
            if self.bias_net is None:
                return W, W.new_zeros(n_out)
            return W, self.bias_net(fb)[:, 0] * self.output_scale
        c = self.channels
        w = self.net(feats).reshape(n_out, n_in, c, c) * self.output_scale
        W = (w * in_weights.to(dtype)[None, :, None, None]).permute(2, 0, 3, 1)
        W = W.reshape(c * n_out, c * n_in)
        if self.bias_net is None:
            return W, W.new_zeros(c * n_out)
        return W, (self.bias_net(fb) * self.output_scale).T.reshape(-1)

    def extra_repr(self) -> str:
        """The line printed in the module's repr.

        Returns:
            The dimension and T.
        """
        return f"dim={self.domain.dim}, T={self.T:g}"


def _mlp(n_in, hidden, depth, generator, init_scale, n_out: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = n_in
    for _ in range(depth):
        lin = nn.Linear(width, hidden)
        _init_linear(lin, generator)
        layers += [lin, nn.Tanh()]
        width = hidden
    out = nn.Linear(width, n_out)
    _init_linear(out, generator)
    with torch.no_grad():
        out.weight.mul_(init_scale)
        out.bias.mul_(init_scale)
    layers.append(out)
    return nn.Sequential(*layers)


def _init_linear(lin: nn.Linear, generator) -> None:
    bound = 1.0 / math.sqrt(lin.in_features)
    with torch.no_grad():
        lin.weight.copy_((torch.rand(lin.weight.shape, generator=generator) * 2 - 1) * bound)
        lin.bias.copy_((torch.rand(lin.bias.shape, generator=generator) * 2 - 1) * bound)


class FunctionKernel(Kernel):
    """User callables: ``w(t, xi [n_out, d], zeta [n_in, d]) -> [n_out, n_in]`` and
    ``b(t, xi [n_out, d]) -> [n_out]`` (b = 0 when omitted). No trainable parameters.
    With ``channels=c``: ``w -> [c, c, n_out, n_in]`` (out channel, in channel) and
    ``b -> [c, n_out]``.

    Args:
        w: ``w(t, xi, zeta)``, t in the callables' own horizon ``T`` (kept when the kernel is
            rescaled).
        b: ``b(t, xi)``, or None for b = 0.
        T: the horizon of the callables' time variable.
        channels: the channel count c, or None for the scalar model.
    """

    def __init__(
        self,
        w: Callable[[float, torch.Tensor, torch.Tensor], torch.Tensor],
        b: Callable[[float, torch.Tensor], torch.Tensor] | None = None,
        T: float = 1.0,
        channels: int | None = None,
    ) -> None:
        super().__init__(T)
        self.channels = check_channels_arg(channels)
        if not callable(w):
            raise ValueError(f"w: expected a callable w(t, xi, zeta), got {w!r}")
        if b is not None and not callable(b):
            raise ValueError(f"b: expected a callable b(t, xi) or None, got {b!r}")
        self.w_fn, self.b_fn = w, b
        self._T0 = self.T

    def forward(self, k, t, out_nodes, in_nodes, in_weights):
        """The dense matrices at time t: W_ij = w(t0, xi_i, zeta_j) omega_j and beta_i =
        b(t0, xi_i), t0 = t T_0 / T the time in the callables' horizon.

        Args:
            k (int): the step.
            t (float): the time t_k.
            out_nodes (torch.Tensor): the output grid's nodes xi, ``[n_out, d]``.
            in_nodes (torch.Tensor): the input grid's nodes zeta, ``[n_in, d]``.
            in_weights (torch.Tensor): the input grid's quadrature weights omega, ``[n_in]``.

        Returns:
            (tuple[torch.Tensor, torch.Tensor]): ``(W, beta)``, ``W [c n_out, c n_in]`` and
                ``beta [c n_out]`` (c = 1 for the scalar model), ``output_scale`` included.
        """
        t0 = t * self._T0 / self.T  # time in the callables' own horizon
        w = self.w_fn(t0, out_nodes, in_nodes)
        w = torch.as_tensor(w, dtype=out_nodes.dtype, device=out_nodes.device)
        c = self.channels
        n_out, n_in = out_nodes.shape[0], in_nodes.shape[0]
        shape = (n_out, n_in) if c is None else (c, c, n_out, n_in)
        if w.shape != shape:
            what = "(n_out, n_in)" if c is None else "(c, c, n_out, n_in)"
            raise ValueError(f"w: must return shape {shape} {what}, got {tuple(w.shape)}")
        W = w * in_weights * self.output_scale
        if c is not None:
            W = W.permute(0, 2, 1, 3).reshape(c * n_out, c * n_in)
        if self.b_fn is None:
            return W, W.new_zeros(W.shape[0])
        b = torch.as_tensor(self.b_fn(t0, out_nodes), dtype=W.dtype, device=W.device)
        bshape = (n_out,) if c is None else (c, n_out)
        if b.shape != bshape:
            raise ValueError(f"b: must return shape {bshape}, got {tuple(b.shape)}")
        return W, b.reshape(-1) * self.output_scale
