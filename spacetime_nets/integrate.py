"""Time stepping of the space-time flow on a grid schedule.

Euler (the canonical scheme, a ResNet block per step, integral at the new nodes):

    outside:    X^{k+1} = Pi_k X^k + dt_k sigma(W^k X^k + beta^k)
    inside:     X^{k+1} = Pi_k X^k + dt_k (W^k sigma(X^k) + beta^k)
    bottleneck: X^{k+1} = Pi_k X^k + dt_k (W2^k sigma(W1^k X^k + beta1^k) + beta2^k)

Heun and RK4 take the step on G_k with square matrices, then transfer: X^{k+1} = Pi_k(RK step).
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

from .fields import check_form, get_activation
from .kernels import Kernel, NodalKernel

__all__ = ["integrate", "Trajectory", "Discretization", "METHODS", "StepMatrices"]

METHODS = ("euler", "heun", "rk4")


@dataclass
class Trajectory:
    """Result of :func:`integrate`: ``states[k]`` ``[B, n_k]`` at ``times[k]`` (k = 0..K),
    ``final`` = ``states[-1]``, and ``stats`` (widths, steps, multiply-adds, method)."""

    states: list[torch.Tensor]
    times: list[float]
    final: torch.Tensor
    stats: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.states)


@dataclass
class StepMatrices:
    """The discrete controls of one step: ``layers`` is ``[(W [n_out, n_in], beta [n_out])]``
    (two pairs for the bottleneck form), with the quadrature weights of the output and input
    grids of each pair (for control costs)."""

    dt: float
    layers: list[tuple[torch.Tensor, torch.Tensor]]
    grids: list[tuple[torch.Tensor, torch.Tensor]]  # (out_weights, in_weights) per layer


def check_method(method: str) -> str:
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}; got {method!r}")
    return method


def check_checkpoint(checkpoint: int | None) -> int | None:
    if checkpoint is None:
        return None
    if isinstance(checkpoint, bool) or not isinstance(checkpoint, int) or checkpoint < 1:
        raise ValueError(f"checkpoint: expected None or a positive int, got {checkpoint!r}")
    return checkpoint


class Discretization(nn.Module):
    """Every tensor of a :class:`grids.GridSchedule` that stepping needs, as buffers.

    Grid nodes/weights (``[n, d]``, ``[n]``), the hidden grids of the bottleneck form, and the
    transfers Pi_k in gather form. ``.to(device, dtype)`` moves them with the module; nothing is
    recomputed in the forward pass. Step sizes are Python floats (no host round trips).
    """

    def __init__(self, schedule: GridSchedule, hidden: Sequence[Grid] | None = None) -> None:
        super().__init__()
        if not isinstance(schedule, GridSchedule):
            raise ValueError(
                f"schedule: expected a grids.GridSchedule, got {type(schedule).__name__}"
            )
        self.schedule = schedule
        self.times = [float(t) for t in schedule.times.cpu()]
        self.dts = [b - a for a, b in zip(self.times[:-1], self.times[1:])]
        self.widths = schedule.widths
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
        return len(self.dts)

    def grid(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(nodes [n_k, d], weights [n_k]) of G_k."""
        i = self.grid_index[k]
        return self.nodes[i], self.weights[i]

    def hidden_grid(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = self.hidden_index[k] if self.hidden_index is not None else self.grid_index[k]
        return self.nodes[i], self.weights[i]

    def transfer(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """Pi_k applied to the last dimension of ``x``."""
        p = self.pi[k]
        if p is None:
            return x
        return apply_stencil(x, *p)

    def transfer_matrix(self, k: int) -> torch.Tensor:
        """Dense Pi_k ``[n_{k+1}, n_k]``."""
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
    ) -> list[StepMatrices]:
        """Evaluate the kernel(s) on every step: Euler uses (G_{k+1} <- G_k); Heun and RK4 use
        square matrices on G_k. The bottleneck maps G_k -> H_k -> G_{k+1} (or H_k -> G_k)."""
        if form != "bottleneck" and isinstance(kernel, NodalKernel):
            shift = 1 if method == "euler" else 0
            w = [self.weights[i] for i in self.grid_index]
            return [
                StepMatrices(dt, [wb], [(w[k + shift], w[k])])
                for k, (dt, wb) in enumerate(zip(self.dts, kernel.all_steps()))
            ]
        out = []
        for k, dt in enumerate(self.dts):
            t = self.times[k]
            x_in, w_in = self.grid(k)
            x_out, w_out = self.grid(k + 1) if method == "euler" else (x_in, w_in)
            if form == "bottleneck":
                x_h, w_h = self.hidden_grid(k)
                W1, b1 = kernel.forward(k, t, x_h, x_in, w_in)
                W2, b2 = kernel2.forward(k, t, x_out, x_h, w_h)
                out.append(StepMatrices(dt, [(W1, b1), (W2, b2)], [(w_h, w_in), (w_out, w_h)]))
            else:
                W, b = kernel.forward(k, t, x_out, x_in, w_in)
                out.append(StepMatrices(dt, [(W, b)], [(w_out, w_in)]))
        return out

    def check_kernel(self, kernel: Kernel, form: str, method: str, kernel2: Kernel | None):
        if not isinstance(kernel, Kernel):
            raise ValueError(
                f"kernel: expected a spacetime_nets Kernel, got {type(kernel).__name__}"
            )
        square = method != "euler"
        outs = self.widths[:-1] if square else self.widths[1:]
        ins = self.widths[:-1]
        if form == "bottleneck":
            if not isinstance(kernel2, Kernel):
                raise ValueError("kernel2: the bottleneck form needs a second kernel (W2, beta2)")
            hid = self.hidden_widths or ins
            kernel.check_discretisation(hid, ins)
            kernel2.check_discretisation(outs, hid)
        else:
            kernel.check_discretisation(outs, ins)


def apply_stencil(x: torch.Tensor, index: torch.Tensor, coeff: torch.Tensor) -> torch.Tensor:
    """(P x)_i = sum_r coeff[r, i] x[..., index[r, i]]: ``[..., n_src] -> [..., n_dst]``.

    One index_select per stencil column (its backward is an index_add, much cheaper than the
    scatter behind advanced indexing), fused multiply-adds in between."""
    y = torch.index_select(x, -1, index[0]) * coeff[0]
    for r in range(1, index.shape[0]):
        y = torch.addcmul(y, torch.index_select(x, -1, index[r]), coeff[r])
    return y


def _field(form: str, act: Callable, layers, x: torch.Tensor) -> torch.Tensor:
    if form == "outside":
        W, b = layers[0]
        return act(F.linear(x, W, b))
    if form == "inside":
        W, b = layers[0]
        return F.linear(act(x), W, b)
    (W1, b1), (W2, b2) = layers
    return F.linear(act(F.linear(x, W1, b1)), W2, b2)


def _step(disc: Discretization, k: int, sm: StepMatrices, x, form, act, method):
    dt = sm.dt
    if method == "euler":
        # one fused kernel for "+ dt *" (alpha), forward and backward
        return torch.add(disc.transfer(k, x), _field(form, act, sm.layers, x), alpha=dt)
    f = sm.layers
    k1 = _field(form, act, f, x)
    if method == "heun":
        k2 = _field(form, act, f, x + dt * k1)
        y = x + (0.5 * dt) * (k1 + k2)
    else:
        k2 = _field(form, act, f, x + (0.5 * dt) * k1)
        k3 = _field(form, act, f, x + (0.5 * dt) * k2)
        k4 = _field(form, act, f, x + dt * k3)
        y = x + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
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
    """The step loop shared by every model. Returns (final state, states if kept)."""
    states = [x] if keep_states else []
    K = len(mats)
    if checkpoint is None or not torch.is_grad_enabled():
        for k in range(K):
            x = _step(disc, k, mats[k], x, form, act, method)
            if keep_states:
                states.append(x)
        return x, states
    for s in range(0, K, checkpoint):
        e = min(s + checkpoint, K)
        seg = mats[s:e]
        params = [t for sm in seg for pair in sm.layers for t in pair]

        def segment(x, *tensors, s=s, seg=seg):
            it = iter(tensors)  # the step tensors as passed (detached copies when recomputed)
            for j, sm in enumerate(seg):
                layers = [(next(it), next(it)) for _ in sm.layers]
                x = _step(disc, s + j, StepMatrices(sm.dt, layers, sm.grids), x, form, act, method)
            return x

        if keep_states:
            # states inside a segment are recomputed too: store only boundaries' values
            for j, sm in enumerate(seg):
                x = _checkpoint(
                    lambda x, *_p, k=s + j, sm=sm: _step(disc, k, sm, x, form, act, method),
                    x,
                    *[t for pair in sm.layers for t in pair],
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


def _autocast(state):
    return contextlib.nullcontext() if state is None else torch.autocast(state[0], state[1])


def multiply_adds(disc: Discretization, form: str, method: str, batch: int) -> int:
    """Multiply-adds of one pass over the steps (matrix products and transfers), for ``batch``."""
    stages = {"euler": 1, "heun": 2, "rk4": 4}[method]
    total = 0
    for k in range(disc.num_steps):
        n_in, n_out = disc.widths[k], disc.widths[k + 1]
        n_f = n_out if method == "euler" else n_in
        if form == "bottleneck":
            h = disc.hidden_widths[k] if disc.hidden_widths else n_in
            mat = h * n_in + n_f * h
        else:
            mat = n_f * n_in
        pi = 0 if disc.pi[k] is None else disc.pi[k][0].numel()
        total += stages * mat + pi
    return total * batch


def integrate(
    x0: torch.Tensor,
    schedule: GridSchedule,
    kernel: Kernel,
    *,
    form: str = "outside",
    activation: str | Callable = "relu",
    method: str = "euler",
    checkpoint: int | None = None,
    kernel2: Kernel | None = None,
    hidden: Sequence[Grid] | None = None,
) -> Trajectory:
    """Integrate the space-time flow from ``x0`` ``[B, n_0]`` (values on ``schedule.grids[0]``).

    Returns a :class:`Trajectory` with ``states[k]`` ``[B, n_k]``. ``method``: ``euler``
    (canonical, a ResNet), ``heun`` or ``rk4``. ``checkpoint=m`` recomputes segments of m steps
    in the backward pass. The bottleneck form needs ``kernel2`` and optionally ``hidden`` grids.
    """
    form = check_form(form)
    act, _ = get_activation(activation)
    method = check_method(method)
    checkpoint = check_checkpoint(checkpoint)
    if not isinstance(x0, torch.Tensor) or x0.dim() != 2:
        raise ValueError(f"x0: expected a tensor [batch, n_0], got {_desc(x0)}")
    if not isinstance(schedule, GridSchedule):
        raise ValueError(f"schedule: expected a grids.GridSchedule, got {_desc(schedule)}")
    if x0.shape[1] != schedule.widths[0]:
        raise ValueError(
            f"x0: last dimension must be the first grid's width n_0={schedule.widths[0]}, "
            f"got shape {tuple(x0.shape)}"
        )
    disc = Discretization(schedule, hidden).to(device=x0.device, dtype=x0.dtype)
    disc.check_kernel(kernel, form, method, kernel2)
    mats = disc.step_matrices(kernel, form, method, kernel2)
    final, states = run_steps(disc, mats, x0, form, act, method, checkpoint, keep_states=True)
    return Trajectory(
        states=states,
        times=list(disc.times),
        final=final,
        stats={
            "widths": list(disc.widths),
            "steps": disc.num_steps,
            "multiply_adds": multiply_adds(disc, form, method, x0.shape[0]),
            "method": method,
        },
    )


def _desc(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)}"
    return type(x).__name__
