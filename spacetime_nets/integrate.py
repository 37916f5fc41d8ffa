"""Time stepping of the space-time flow on a grid schedule.

Euler (the canonical scheme, a ResNet block per step, integral at the new nodes):

    outside:    X^{k+1} = Pi_k X^k + dt_k sigma(W^k X^k + beta^k)
    inside:     X^{k+1} = Pi_k X^k + dt_k (W^k sigma(X^k) + beta^k)
    bottleneck: X^{k+1} = Pi_k X^k + dt_k (W2^k sigma(W1^k X^k + beta1^k) + beta2^k)

The other steppers (a registry of Butcher tableaux,
[`spacetime_nets.steppers`][spacetime_nets.steppers]) and every stationary kernel (conv,
spectral) take the step on G_k, then transfer: X^{k+1} = Pi_k(RK step). With channels the
state is ``[B, c_k, n_k]``; where c_{k+1} != c_k the shortcut also pads the new channels with
zeros (or keeps the first c_{k+1}). A channel normalisation N_k (see
[`ChannelNorm`][spacetime_nets.fields.ChannelNorm]) replaces sigma by sigma o N_k in the
field, with the weights of the grid sigma's argument lives on (``Form.act_reads``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint as _checkpoint

from grids import Grid, GridSchedule

from .fields import (
    DEFAULT_ACTIVATION,
    DEFAULT_FORM,
    FORMS,
    ChannelNorm,
    NormOp,
    check_form,
    get_activation,
    norm_reads,
    normed,
)
from .kernels import Kernel, NodalKernel
from .ops import Dense, GridInfo, StepOp, op_rebuild, op_tensors
from .steppers import STEPPER_NAMES, get_stepper, rk_step, steps_between_grids

__all__ = [
    "integrate",
    "Trajectory",
    "Discretization",
    "METHODS",
    "StepMatrices",
    "field",
    "step",
    "run_steps",
    "multiply_adds",
]

METHODS = STEPPER_NAMES
"""The registered steppers' names: a live view of the keys of
`spacetime_nets.steppers.STEPPERS` (a stepper registered later is included)."""

#: transfers with at most this many entries n_{k+1} n_k are also kept as a dense matrix and
#: applied as one product, fused with the residual (Pi x + dt f): up to about 128 x 128 that
#: beats the stencil's gathers and scatters forward and backward (bench_core's hourglass)
DENSE_TRANSFER_MAX = 16384


@dataclass
class Trajectory:
    """Result of [`integrate`][spacetime_nets.integrate.integrate]: ``states[k]`` ``[B, n_k]``
    at ``times[k]`` (k = 0..K), ``final`` = ``states[-1]``, and ``stats`` (widths, steps,
    multiply-adds, method).

    Attributes:
        states: X^k for k = 0..K, ``[B, n_k]`` (``[B, c_k, n_k]`` with channels).
        times: t_0 = 0, ..., t_K = T.
        final: X^K, the last state.
        stats: ``{"widths", "channels", "steps", "multiply_adds", "method"}``.
    """

    states: list[torch.Tensor]
    times: list[float]
    final: torch.Tensor
    stats: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.states)


@dataclass
class StepMatrices:
    """The discrete controls of one step: ``layers`` is a list of step operators (two for the
    bottleneck form): ``Dense`` pairs ``(W [c n_out, c n_in], beta [c n_out])``, ``LowRankOp``,
    ``ConvOp`` or ``SpectralOp``, with the quadrature weights of the output and input grids of
    each (for control costs). ``square``: the operators map G_k to itself and the step
    transfers after. ``norm``: the step's channel normalisation N_k (None: none), applied to
    the argument of sigma.

    Attributes:
        dt: the step size dt_k.
        layers: the step operators, one (W^k) or two (W1^k, W2^k).
        grids: ``(out_weights, in_weights)`` of each operator, ``[n_out]`` and ``[n_in]``.
        square: whether the operators map G_k to itself (the step transfers after).
        norm: the channel normalisation N_k, or None.
    """

    dt: float
    layers: list
    grids: list[tuple[torch.Tensor, torch.Tensor]]  # (out_weights, in_weights) per layer
    square: bool = False
    norm: NormOp | None = None

    def tensors(self) -> list[torch.Tensor]:
        """The step's tensors (operators, then the normalisation's gamma and beta), for
        checkpointed recomputation.

        Returns:
            The tensors, in the order ``rebuild`` takes them.
        """
        out = [t for op in self.layers for t in op_tensors(op)]
        return out + (self.norm.tensors() if self.norm is not None else [])

    def rebuild(self, tensors: Sequence[torch.Tensor]) -> StepMatrices:
        """The same step made of other tensors (in the order of
        [`tensors`][spacetime_nets.integrate.StepMatrices.tensors]).

        Args:
            tensors: one tensor for each of ``tensors()``, e.g. detached copies.

        Returns:
            A new ``StepMatrices`` with this one's dt, grids and ``square``.
        """
        it = iter(tensors)
        layers = [op_rebuild(op, [next(it) for _ in op_tensors(op)]) for op in self.layers]
        norm = None if self.norm is None else self.norm.rebuild([next(it), next(it)])
        return StepMatrices(self.dt, layers, self.grids, self.square, norm)


def check_method(method: str) -> str:
    """``method`` if it names a registered stepper, else a ValueError naming them.

    Args:
        method: the stepper's name.

    Returns:
        ``method``.
    """
    get_stepper(method)
    return method


def check_checkpoint(checkpoint: int | None) -> int | None:
    """None or a positive int (the steps per recomputed segment), else a ValueError.

    Args:
        checkpoint: the value of ``checkpoint=``.

    Returns:
        ``checkpoint``.
    """
    if checkpoint is None:
        return None
    if isinstance(checkpoint, bool) or not isinstance(checkpoint, int) or checkpoint < 1:
        raise ValueError(f"checkpoint: expected None or a positive int, got {checkpoint!r}")
    return checkpoint


class Discretization(nn.Module):
    """Every tensor of a [`GridSchedule`][grids.schedule.GridSchedule] that stepping needs, as
    buffers.

    Grid nodes/weights (``[n, d]``, ``[n]``), the hidden grids of the bottleneck form, and the
    transfers Pi_k in gather form. ``.to(device, dtype)`` moves them with the module; nothing is
    recomputed in the forward pass. Step sizes are Python floats (no host round trips).

    Args:
        schedule: the schedule (its times, grids, transfers and channel counts).
        hidden: the bottleneck form's hidden grids H_k, one per step, or None.
        allow_underresolved: skip the check that every grid resolves the kernels
            (``check_kernel``).
    """

    def __init__(
        self,
        schedule: GridSchedule,
        hidden: Sequence[Grid] | None = None,
        allow_underresolved: bool = False,
    ) -> None:
        super().__init__()
        self.allow_underresolved = bool(allow_underresolved)
        if not isinstance(schedule, GridSchedule):
            raise ValueError(
                f"schedule: expected a grids.GridSchedule, got {type(schedule).__name__}"
            )
        self.schedule = schedule
        self.times = [float(t) for t in schedule.times.cpu()]
        self.dts = [b - a for a, b in zip(self.times[:-1], self.times[1:])]
        self.widths = schedule.widths
        self.channels = schedule.channels
        ids: dict[int, int] = {}
        self.grid_index: list[int] = []
        all_grids = list(schedule.grids) + (list(hidden) if hidden is not None else [])
        for g in all_grids:
            if id(g) not in ids:
                i = ids[id(g)] = len(ids)
                self.register_buffer(f"grid{i}_nodes", g.nodes.clone())
                self.register_buffer(f"grid{i}_weights", g.weights.clone())
            self.grid_index.append(ids[id(g)])
        self.num_unique = len(ids)
        infos: dict[int, GridInfo] = {}
        for g in all_grids:  # once per distinct grid (a constant schedule repeats one)
            if ids[id(g)] not in infos:
                infos[ids[id(g)]] = GridInfo.of(g)
        self.infos = [infos[i] for i in range(len(ids))]
        K = schedule.num_steps
        self.hidden_index = self.grid_index[K + 1 :] if hidden is not None else None
        self.grid_index = self.grid_index[: K + 1]
        if hidden is not None and len(hidden) != K:
            raise ValueError(f"hidden: need one hidden grid per step ({K}), got {len(hidden)}")
        self.hidden_widths = [g.n for g in hidden] if hidden is not None else None
        self.identity: list[bool] = []
        for k in range(K):
            p = schedule.transfer(k)
            self.identity.append(p.identity)
            if not p.identity:  # stencil columns stored as contiguous rows [m, n_{k+1}]
                self.register_buffer(f"pi{k}_index", p.index.T.contiguous())
                self.register_buffer(f"pi{k}_coeff", p.coeff.T.contiguous())
                if p.n_src * p.n_dst <= DENSE_TRANSFER_MAX:
                    # narrow layers: one matrix product beats the stencil's four kernels
                    self.register_buffer(f"pi{k}_denseT", p.matrix().T.contiguous())
        # the schedule's own (float64) values: a later change of dtype converts these, so that
        # a model built in float32 and moved to float64 gets exact grids, not widened roundings
        self._exact = {
            name: buf.detach().clone()
            for name, buf in self._buffers.items()
            if buf.is_floating_point()
        }
        self._refresh()

    def _refresh(self) -> None:
        self.nodes = [getattr(self, f"grid{i}_nodes") for i in range(self.num_unique)]
        self.weights = [getattr(self, f"grid{i}_weights") for i in range(self.num_unique)]
        self.pi = [
            None if ident else (getattr(self, f"pi{k}_index"), getattr(self, f"pi{k}_coeff"))
            for k, ident in enumerate(self.identity)
        ]
        self.pi_dense = [getattr(self, f"pi{k}_denseT", None) for k in range(len(self.identity))]

    def _apply(self, fn, recurse=True):
        dtypes = {name: buf.dtype for name, buf in self._buffers.items()}
        out = super()._apply(fn, recurse)
        for name, exact in self._exact.items():
            buf = self._buffers[name]
            if buf.dtype != dtypes[name]:
                self._buffers[name] = exact.to(device=buf.device, dtype=buf.dtype)
        self._refresh()
        return out

    @property
    def num_steps(self) -> int:
        """K, the number of steps."""
        return len(self.dts)

    def grid(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(nodes [n_k, d], weights [n_k]) of G_k.

        Args:
            k: the time index, 0..K.

        Returns:
            ``(nodes, weights)``, the module's buffers.
        """
        i = self.grid_index[k]
        return self.nodes[i], self.weights[i]

    def info(self, k: int) -> GridInfo:
        """Static facts (shape, spacing, periodicity) of G_k.

        Args:
            k: the time index, 0..K.

        Returns:
            The grid's [`GridInfo`][spacetime_nets.ops.GridInfo].
        """
        return self.infos[self.grid_index[k]]

    def _point(self, k: int, hidden: bool = False):
        i = (
            (self.hidden_index[k] if self.hidden_index is not None else self.grid_index[k])
            if hidden
            else self.grid_index[k]
        )
        return self.nodes[i], self.weights[i], self.infos[i]

    def transfer(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """Pi_k applied to the last dimension of ``x``, then the channel change c_k ->
        c_{k+1} (zero-padding or truncation of dimension 1) where the schedule has one.

        Args:
            k: the step, 0..K-1.
            x: a state on G_k, ``[B, n_k]`` or ``[B, c_k, n_k]``.

        Returns:
            Pi_k x on G_{k+1}, ``[B, n_{k+1}]`` or ``[B, c_{k+1}, n_{k+1}]``.
        """
        return self.change_channels(k, self.grid_transfer(k, x))

    def grid_transfer(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """Pi_k alone, on the last dimension of ``x`` (a matrix product on narrow layers, the
        stencil on wide ones and under autocast, where a product would round the state).

        Args:
            k: the step, 0..K-1.
            x: values on G_k, ``[..., n_k]``.

        Returns:
            ``[..., n_{k+1}]`` (``x`` itself where Pi_k is the identity).
        """
        dense = self.dense_shortcut(k, x)
        if dense is not None:
            return x @ dense
        p = self.pi[k]
        return x if p is None else apply_stencil(x, *p)

    def dense_shortcut(self, k: int, x: torch.Tensor) -> torch.Tensor | None:
        """Pi_k^T ``[n_k, n_{k+1}]`` where Pi_k runs as a product on ``x`` (narrow layers), None
        where it runs as the stencil (wide layers, and under autocast, where a product would
        round the state to the low precision).

        Args:
            k: the step, 0..K-1.
            x: the state it would act on (its device type decides the autocast test).

        Returns:
            The buffer Pi_k^T ``[n_k, n_{k+1}]``, or None.
        """
        dense = self.pi_dense[k]
        if dense is None or _autocast_state(x.device.type) is not None:
            return None
        return dense

    def change_channels(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """c_k -> c_{k+1} channels on dimension 1: new channels zero, or the first kept.

        Args:
            k: the step, 0..K-1.
            x: ``[B, c_k, n]`` (or a scalar-model state, returned as it is).

        Returns:
            ``[B, c_{k+1}, n]``.
        """
        if self.channels is not None:
            c_in, c_out = self.channels[k], self.channels[k + 1]
            if c_out > c_in:
                x = F.pad(x, (0, 0, 0, c_out - c_in))
            elif c_out < c_in:
                x = x[:, :c_out]
        return x

    def transfer_matrix(self, k: int) -> torch.Tensor:
        """Dense Pi_k ``[n_{k+1}, n_k]``.

        Args:
            k: the step, 0..K-1.

        Returns:
            The matrix (the identity where Pi_k is one), in the buffers' dtype.
        """
        n_out, n_in = self.widths[k + 1], self.widths[k]
        p = self.pi[k]
        ref = self.nodes[0]
        if p is None:
            return torch.eye(n_out, dtype=ref.dtype, device=ref.device)
        index, coeff = p
        m = torch.zeros(n_out, n_in, dtype=coeff.dtype, device=coeff.device)
        return m.scatter_add_(1, index.T, coeff.T)

    def step_matrices(
        self,
        kernel: Kernel,
        form: str,
        method: str,
        kernel2: Kernel | None = None,
        norm: ChannelNorm | None = None,
    ) -> list[StepMatrices]:
        """Evaluate the kernel(s) on every step: dense kernels with Euler map G_k -> G_{k+1};
        other steppers and stationary kernels act on G_k (square). The bottleneck maps
        G_k -> H_k -> G_{k+1} (or H_k -> G_k). With ``norm``, each step also gets N_k at t_k
        with the weights of the grid sigma reads on: the step's input grid (``inside``: the
        state) or the output grid of the operator sigma follows (``outside``: G_{k+1}, or G_k
        when square; ``bottleneck``: H_k).

        Args:
            kernel: the controls (W^k, beta^k), or (W1^k, beta1^k) of the bottleneck.
            form: a registered form name.
            method: a registered stepper name.
            kernel2: the bottleneck's second kernel (W2^k, beta2^k), or None.
            norm: the model's channel normalisation, or None.

        Returns:
            One [`StepMatrices`][spacetime_nets.integrate.StepMatrices] per step, K in all.
        """
        square = not steps_between_grids(method) or getattr(kernel, "stationary", False)
        two = FORMS[form].operators == 2
        # the controls are built in the parameters' precision, also under bf16 autocast
        with without_autocast(self.weights[0].device.type):
            mats = self._step_ops(kernel, kernel2, square, two)
            if norm is not None:
                reads = norm_reads(form)
                for t, sm in zip(self.times, mats):
                    w = sm.grids[0][1] if reads < 0 else sm.grids[reads][0]
                    sm.norm = norm.step_op(t, w)
            return mats

    def _step_ops(self, kernel, kernel2, square: bool, two: bool) -> list[StepMatrices]:
        if not two and isinstance(kernel, NodalKernel):
            shift = 0 if square else 1
            w = [self.weights[i] for i in self.grid_index]
            return [
                StepMatrices(dt, [Dense(*wb)], [(w[k + shift], w[k])], square)
                for k, (dt, wb) in enumerate(zip(self.dts, kernel.all_steps()))
            ]
        first, second = [], []  # (k, t, out, in) of each operator of each step
        grids = []  # (out weights, in weights) of each operator of each step
        for k, t in enumerate(self.times[:-1]):
            p_in = self._point(k)
            p_out = p_in if square else self._point(k + 1)
            if two:
                p_h = self._point(k, hidden=True)
                first.append((k, t, p_h, p_in))
                second.append((k, t, p_out, p_h))
                grids.append([(p_h[1], p_in[1]), (p_out[1], p_h[1])])
            else:
                first.append((k, t, p_out, p_in))
                grids.append([(p_out[1], p_in[1])])
        ops = [kernel.step_ops(first)] + ([kernel2.step_ops(second)] if two else [])
        return [
            StepMatrices(dt, [o[k] for o in ops], grids[k], square) for k, dt in enumerate(self.dts)
        ]

    def check_kernel(self, kernel: Kernel, form: str, method: str, kernel2: Kernel | None):
        """Check that the kernel(s) fit this discretisation before stepping: their sizes
        (``check_discretisation``), channel counts (``check_channels``) and, unless
        ``allow_underresolved``, that every grid resolves them (``check_resolution``).

        Args:
            kernel: the first (or only) kernel.
            form: a registered form name.
            method: a registered stepper name.
            kernel2: the bottleneck's second kernel, or None.

        Raises:
            ValueError: naming what does not fit.
        """
        if not isinstance(kernel, Kernel):
            raise ValueError(
                f"kernel: expected a spacetime_nets Kernel, got {type(kernel).__name__}"
            )
        square = not steps_between_grids(method) or getattr(kernel, "stationary", False)
        outs = self.widths[:-1] if square else self.widths[1:]
        ins = self.widths[:-1]
        kernels = [kernel]
        if FORMS[form].operators == 2:
            if not isinstance(kernel2, Kernel):
                raise ValueError("kernel2: the bottleneck form needs a second kernel (W2, beta2)")
            if getattr(kernel2, "stationary", False) != getattr(kernel, "stationary", False):
                raise ValueError("kernel2: both bottleneck kernels must be stationary, or neither")
            hid = self.hidden_widths or ins
            kernel.check_discretisation(hid, ins)
            kernel2.check_discretisation(outs, hid)
            kernels.append(kernel2)
        else:
            kernel.check_discretisation(outs, ins)
        for kern in kernels:
            kern.check_channels(self.times, self.channels)
            steps = [(t, self.info(k)) for k, t in enumerate(self.times)]
            kern.check_resolution(steps, self.allow_underresolved)


def apply_stencil(x: torch.Tensor, index: torch.Tensor, coeff: torch.Tensor) -> torch.Tensor:
    """(P x)_i = sum_r coeff[r, i] x[..., index[r, i]]: ``[..., n_src] -> [..., n_dst]``.

    One index_select per stencil column (its backward is an index_add, much cheaper than the
    scatter behind advanced indexing), fused multiply-adds in between.

    Args:
        x: values on the source grid, ``[..., n_src]``.
        index: source indices, int64 ``[m, n_dst]`` (stencil columns as rows).
        coeff: their coefficients, ``[m, n_dst]``.

    Returns:
        ``[..., n_dst]``.
    """
    y = torch.index_select(x, -1, index[0]) * coeff[0]
    for r in range(1, index.shape[0]):
        y = torch.addcmul(y, torch.index_select(x, -1, index[r]), coeff[r])
    return y


def field(
    form: str, act: Callable, layers, x: torch.Tensor, norm: NormOp | None = None
) -> torch.Tensor:
    """The vector field f(X) of ``form`` with the step operators ``layers``:
    outside sigma(K X + b), inside K sigma(X) + b, bottleneck K2 sigma(K1 X + b1) + b2; with
    ``norm`` N, sigma o N in place of sigma (outside sigma(N(K X + b)), inside
    K sigma(N(X)) + b, bottleneck K2 sigma(N(K1 X + b1)) + b2).

    Args:
        form: a registered form name.
        act: sigma.
        layers (list): the step's operators (``StepMatrices.layers``).
        x: the state, ``[B, n]`` or ``[B, c, n]``.
        norm: the step's normalisation N, or None.

    Returns:
        f(X), on the output grid of the last operator.
    """
    return FORMS[form].field(normed(act, norm), _call, layers, x)


def _call(op: StepOp, x: torch.Tensor) -> torch.Tensor:
    """``op(x)``: the step's operators are StepOps already (the step loop's apply)."""
    return op(x)


def step(disc: Discretization, k: int, sm: StepMatrices, x, form: str, act, method: str):
    """One step X^k -> X^{k+1} (see the module docstring).

    Args:
        disc: the discretisation.
        k: the step, 0..K-1.
        sm: the step's operators.
        x (torch.Tensor): X^k, ``[B, n_k]`` or ``[B, c_k, n_k]``.
        form: a registered form name.
        act (Callable): sigma.
        method: a registered stepper name.

    Returns:
        (torch.Tensor): X^{k+1}, ``[B, n_{k+1}]`` or ``[B, c_{k+1}, n_{k+1}]``.
    """
    if not sm.square:
        f = field(form, act, sm.layers, x, sm.norm)
        dense = disc.dense_shortcut(k, x)
        if dense is not None:
            # Pi x + dt f in one kernel: addmm(f, x, Pi^T, beta=dt)
            if x.dim() == 2:
                return torch.addmm(f, x, dense, beta=sm.dt)
            B, c, n = x.shape[0], x.shape[1], x.shape[-1]
            m = dense.shape[1]  # explicit sizes: an empty batch B = 0 keeps its shape
            y = torch.addmm(f.reshape(B * c, m), x.reshape(B * c, n), dense, beta=sm.dt)
            return disc.change_channels(k, y.view(B, c, m))
        # the canonical Euler step: one fused kernel for "+ dt *" (alpha), forward and backward
        y = torch.add(disc.grid_transfer(k, x), f, alpha=sm.dt)
        return disc.change_channels(k, y)
    y = rk_step(lambda z: field(form, act, sm.layers, z, sm.norm), x, sm.dt, get_stepper(method))
    return disc.transfer(k, y)


def run_steps(
    disc: Discretization,
    mats: list[StepMatrices],
    x: torch.Tensor,
    form: str,
    act: Callable,
    method: str = "euler",
    checkpoint: int | None = None,
    keep_states: bool = False,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The step loop shared by every model. Returns (final state, states if kept). Under
    autocast the state, a residual sum, is kept in the grids' precision (a lift's product may
    hand it over in bf16).

    Args:
        disc: the discretisation.
        mats: the step operators, one per step.
        x: X^0, ``[B, n_0]`` or ``[B, c_0, n_0]``.
        form: a registered form name.
        act: sigma.
        method: a registered stepper name.
        checkpoint: recompute segments of this many steps in the backward pass (None: keep
            the graph).
        keep_states: whether to return every state.

    Returns:
        ``(X^K, states)``: ``states`` holds X^0..X^K when ``keep_states``, else it is empty.
    """
    if _autocast_state(x.device.type) is not None:
        x = x.to(disc.weights[0].dtype)
    states = [x] if keep_states else []
    K = len(mats)
    if checkpoint is None or not torch.is_grad_enabled():
        for k in range(K):
            x = step(disc, k, mats[k], x, form, act, method)
            if keep_states:
                states.append(x)
        return x, states
    for s in range(0, K, checkpoint):
        e = min(s + checkpoint, K)
        seg = mats[s:e]
        params = [t for sm in seg for t in sm.tensors()]

        def segment(x, *tensors, s=s, seg=seg):
            it = iter(tensors)  # the step tensors as passed (detached copies when recomputed)
            for j, sm in enumerate(seg):
                own = sm.rebuild([next(it) for _ in sm.tensors()])
                x = step(disc, s + j, own, x, form, act, method)
            return x

        if keep_states:
            # states inside a segment are recomputed too: store only boundaries' values
            for j, sm in enumerate(seg):
                x = _checkpoint(
                    lambda x, *_p, k=s + j, sm=sm: step(disc, k, sm, x, form, act, method),
                    x,
                    *sm.tensors(),
                    use_reentrant=False,
                )
                states.append(x)
        else:
            x = _Recompute.apply(segment, x, *params)
    return x, states


class _Recompute(torch.autograd.Function):
    """Checkpoint of one segment of steps: the forward runs without recording a graph and keeps
    only its input state and the step tensors; the backward recomputes the segment and
    differentiates it. Unlike ``torch.utils.checkpoint`` (non-reentrant), no per-operation graph
    is built in the forward, so the state buffers freed step by step are reused (on CPU, glibc's
    heap otherwise fragments and the peak exceeds that of plain autograd). Works with
    ``torch.autograd.grad``; not twice differentiable."""

    @staticmethod
    def forward(ctx, run, x, *tensors):
        ctx.run = run
        ctx.autocast = _autocast_state(x.device.type)
        ctx.save_for_backward(x, *tensors)
        with torch.no_grad():
            return run(x, *tensors)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        saved = ctx.saved_tensors
        need = ctx.needs_input_grad[1:]
        # on CPU, the long-lived gradient buffers first, before the recomputed activations, so
        # that they do not split the heap blocks those free again (CUDA's caching allocator
        # needs no such care)
        host = saved[0].device.type == "cpu"
        out = [
            torch.empty_like(t) if host and n and i > 0 else None
            for i, (t, n) in enumerate(zip(saved, need))
        ]
        wrt = [i for i, n in enumerate(need) if n]
        with torch.enable_grad(), _autocast(ctx.autocast):
            inputs = [t.detach().requires_grad_(n) for t, n in zip(saved, need)]
            y = ctx.run(*inputs)
            grads = torch.autograd.grad(y, [inputs[i] for i in wrt], grad, allow_unused=True)
        for i, g in zip(wrt, grads):
            out[i] = g if g is None or out[i] is None else out[i].copy_(g)
        return (None, *out)


def _autocast_state(device_type: str):
    try:
        if torch.is_autocast_enabled(device_type):
            return device_type, torch.get_autocast_dtype(device_type)
    except (AttributeError, TypeError, RuntimeError):  # torch < 2.4, or no autocast there
        pass
    return None


def without_autocast(device_type: str) -> contextlib.AbstractContextManager:
    """Autocast switched off on ``device_type`` where it is on (a no-op context otherwise):
    the controls and their costs are computed in the parameters' precision.

    Args:
        device_type: ``"cpu"``, ``"cuda"``, ...

    Returns:
        The context manager.
    """
    if _autocast_state(device_type) is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type, enabled=False)


def _autocast(state):
    return contextlib.nullcontext() if state is None else torch.autocast(state[0], state[1])


def multiply_adds(
    disc: Discretization,
    form: str,
    method: str,
    batch: int,
    mats: Sequence[StepMatrices] | None = None,
) -> int:
    """Multiply-adds of one pass over the steps (operators and transfers), for ``batch``.

    Without ``mats`` the operators are taken as scalar dense matrices; with them each operator
    counts its own work (dense: the matrix size; conv: c^2 taps n; spectral: c^2 modes plus the
    FFTs, counted as 5 c n log2 n).

    Args:
        disc: the discretisation.
        form: a registered form name.
        method: a registered stepper name (a square step counts its stages).
        batch: the batch size the count is multiplied by.
        mats: the step operators, or None.

    Returns:
        The count.
    """
    stages = get_stepper(method).stages
    total = 0
    for k in range(disc.num_steps):
        n_in, n_out = disc.widths[k], disc.widths[k + 1]
        square = mats[k].square if mats is not None else not steps_between_grids(method)
        n_f = n_in if square else n_out
        if mats is not None:
            mat = sum(_op_macs(op, n_in) for op in mats[k].layers)
        elif FORMS[form].operators == 2:
            h = disc.hidden_widths[k] if disc.hidden_widths else n_in
            mat = h * n_in + n_f * h
        else:
            mat = n_f * n_in
        c = 1 if disc.channels is None else disc.channels[k]
        pi = 0 if disc.pi[k] is None else disc.pi[k][0].numel() * c
        total += (stages if square else 1) * mat + pi
    return total * batch


def _op_macs(op, n: int) -> int:
    count = getattr(op, "multiply_adds", None)  # a StepOp (a cheap check: every integrate)
    if count is None:
        raise ValueError(f"op: unknown step operator {type(op).__name__}")
    return count(n)


def _discretization(
    schedule: GridSchedule,
    hidden: Sequence[Grid] | None,
    allow_underresolved: bool,
    device: torch.device,
    dtype: torch.dtype,
) -> Discretization:
    """The schedule's ``Discretization`` on ``device`` in ``dtype``, made once per
    schedule and kept with it (a schedule is data: its grids and times do not change), so
    that repeated ``integrate`` calls do not scan the grids again. Hidden grids are not
    keyed (a list the caller may rebuild): with them, a new one every call."""
    if hidden is not None:
        disc = Discretization(schedule, hidden, allow_underresolved)
        return disc.to(device=device, dtype=dtype)
    cache = schedule.derived()
    key = ("discretization", allow_underresolved, str(device), dtype)
    if key not in cache:
        disc = Discretization(schedule, None, allow_underresolved)
        cache[key] = disc.to(device=device, dtype=dtype)
    return cache[key]


def integrate(
    x0: torch.Tensor,
    schedule: GridSchedule,
    kernel: Kernel,
    *,
    form: str = DEFAULT_FORM,
    activation: str | Callable = DEFAULT_ACTIVATION,
    method: str = "euler",
    checkpoint: int | None = None,
    kernel2: Kernel | None = None,
    hidden: Sequence[Grid] | None = None,
    allow_underresolved: bool = False,
) -> Trajectory:
    """Integrate the space-time flow from ``x0`` (values on ``schedule.grids[0]``): ``[B, n_0]``
    for the scalar model, ``[B, c_0, n_0]`` when the schedule has channels.

    Returns a [`Trajectory`][spacetime_nets.integrate.Trajectory] with ``states[k]``
    ``[B, n_k]`` (``[B, c_k, n_k]``).

    Args:
        x0: the initial state on G_0, ``[B, n_0]`` or ``[B, c_0, n_0]``.
        schedule: times, grids and (optionally) channel counts.
        kernel: the controls (w, b) as a [`Kernel`][spacetime_nets.kernels.Kernel].
        form: a registered form (``spacetime_nets.fields.FORMS``; default ``inside``).
        activation: a name of ``spacetime_nets.fields.ACTIVATIONS`` or a callable.
        method: a registered stepper (``euler``, the canonical ResNet, ``midpoint``, ``heun``,
            ``ralston``, ``rk4``).
        checkpoint: recompute segments of this many steps in the backward pass.
        kernel2: the second kernel of the bottleneck form.
        hidden: the bottleneck's hidden grids H_k (one per step).
        allow_underresolved: skip the check that every grid resolves the kernel.

    Returns:
        The [`Trajectory`][spacetime_nets.integrate.Trajectory] (states, times, final state,
            statistics).
    """
    form = check_form(form)
    act, _ = get_activation(activation)
    method = check_method(method)
    checkpoint = check_checkpoint(checkpoint)
    if not isinstance(schedule, GridSchedule):
        raise ValueError(f"schedule: expected a grids.GridSchedule, got {_desc(schedule)}")
    c0 = None if schedule.channels is None else schedule.channels[0]
    want = "[batch, n_0]" if c0 is None else f"[batch, {c0}, n_0]"
    if not isinstance(x0, torch.Tensor) or x0.dim() != (2 if c0 is None else 3):
        raise ValueError(f"x0: expected a tensor {want}, got {_desc(x0)}")
    if x0.shape[-1] != schedule.widths[0] or (c0 is not None and x0.shape[1] != c0):
        raise ValueError(
            f"x0: expected {want} with n_0={schedule.widths[0]}, got shape {tuple(x0.shape)}"
        )
    disc = _discretization(schedule, hidden, bool(allow_underresolved), x0.device, x0.dtype)
    disc.check_kernel(kernel, form, method, kernel2)
    mats = disc.step_matrices(kernel, form, method, kernel2)
    final, states = run_steps(disc, mats, x0, form, act, method, checkpoint, keep_states=True)
    return Trajectory(
        states=states,
        times=list(disc.times),
        final=final,
        stats={
            "widths": list(disc.widths),
            "channels": None if disc.channels is None else list(disc.channels),
            "steps": disc.num_steps,
            "multiply_adds": multiply_adds(disc, form, method, x0.shape[0], mats),
            "method": method,
        },
    )


def _desc(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)}"
    return type(x).__name__
