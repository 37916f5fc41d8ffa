"""``NeuralODE``: the finite-width neural ODE (a discrete Omega with unit weights)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from grids import Grid, GridSchedule

from ..fields import DEFAULT_ACTIVATION, DEFAULT_FORM
from ..integrate import Discretization
from ..kernels import NodalKernel
from ..validation import check_bool, check_int
from .base import FlowModel, _check_features, _generator

__all__ = ["NeuralODE"]


class NeuralODE(FlowModel):
    """x'(t) = f(x(t), u(t)) in R^{dim + augment}, controls piecewise constant on ``steps``
    Euler steps of [0, T], output P x(T) with an affine readout P (trained unless
    ``fixed_readout``; the identity when ``out_features`` is None). Forward Euler makes it a
    ResNet: x^{k+1} = x^k + dt f(x^k, u_k). The state lives on a discrete Omega = {1..D} with
    unit weights, so it shares the stepping code of
    [`SpaceTimeNet`][spacetime_nets.models.SpaceTimeNet].

    Args:
        dim: the input dimension d.
        T: the horizon.
        steps: K, the number of Euler steps (the ResNet's depth).
        form: the vector field: ``inside`` (W sigma(x) + b), ``outside`` (sigma(W x + b)) or
            ``bottleneck`` (W2 sigma(W1 x + b1) + b2); a registered form name.
        activation: sigma, a registered name or a callable.
        out_features: the outputs of the affine readout P, or None for no readout (the
            state x(T) itself, ``[B, dim + augment]``).
        augment: zero coordinates appended to the input (the state has dim + augment).
        fixed_readout: keep the readout at its random initial value (buffers, not trained).
        method: the stepper, a registered name (``euler`` is the ResNet).
        checkpoint: recompute segments of this many steps in the backward pass (None: keep
            the graph).
        hidden_width: the bottleneck's hidden width (None: dim + augment).
        init_scale: the scale of the initial controls (finite, >= 0).
        seed: seeds the initial draws (an int in [0, 2**63)); None uses torch's global
            generator.
    """

    def __init__(
        self,
        dim: int,
        T: float = 1.0,
        steps: int = 10,
        form: str = DEFAULT_FORM,
        activation: str | Callable = DEFAULT_ACTIVATION,
        out_features: int | None = None,
        augment: int = 0,
        *,
        fixed_readout: bool = False,
        method: str = "euler",
        checkpoint: int | None = None,
        hidden_width: int | None = None,
        init_scale: float = 1.0,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.dim = _check_features("dim", dim)
        self.input_size = self.dim
        self.augment = check_int("augment", augment, 0)
        steps = _check_features("steps", steps)
        self._setup_flow(form, activation, method, checkpoint)
        fixed_readout = check_bool("fixed_readout", fixed_readout)
        # options of another variant: refused, not ignored
        if hidden_width is not None and not self.two_operators:
            raise ValueError(
                f"hidden_width: applies to form='bottleneck' only, got hidden_width="
                f"{hidden_width!r} with form={self.form!r} (leave hidden_width out)"
            )
        if fixed_readout and out_features is None:
            raise ValueError(
                "fixed_readout: applies to a model with a readout (out_features=...), got "
                "fixed_readout=True with out_features=None"
            )
        D = self.dim + self.augment
        omega = Grid.uniform(D, (0.0, float(D)), "midpoint")  # unit weights
        schedule = GridSchedule(
            torch.linspace(0.0, float(T), steps + 1, dtype=torch.float64),
            [omega] * (steps + 1),
        )
        gen = _generator(seed)
        widths = [D] * steps
        if self.two_operators:
            h = D if hidden_width is None else _check_features("hidden_width", hidden_width)
            self.kernel = NodalKernel(
                out_widths=[h] * steps, in_widths=widths, init_scale=init_scale, generator=gen
            )
            self.kernel2 = NodalKernel(
                out_widths=widths, in_widths=[h] * steps, init_scale=init_scale, generator=gen
            )
            hidden = [Grid.uniform(h, (0.0, float(h)), "midpoint")] * steps
        else:
            self.kernel = NodalKernel(
                out_widths=widths, in_widths=widths, init_scale=init_scale, generator=gen
            )
            self.kernel2 = None
            hidden = None
        self._hidden = hidden
        # in the parameters' dtype, like SpaceTimeNet (the schedule itself is float64)
        ref = next(self.kernel.parameters())
        self.disc = Discretization(schedule, hidden).to(dtype=ref.dtype)
        self.out_features = out_features
        if out_features is not None:
            out_features = _check_features("out_features", out_features)
            self.out_features = out_features
            bound = 1.0 / math.sqrt(D)
            w = (torch.rand(out_features, D, generator=gen) * 2 - 1) * bound
            b = (torch.rand(out_features, generator=gen) * 2 - 1) * bound
            if fixed_readout:
                self.register_buffer("readout_weight", w)
                self.register_buffer("readout_bias", b)
            else:
                self.readout_weight = nn.Parameter(w)
                self.readout_bias = nn.Parameter(b)
        self.fixed_readout = fixed_readout

    def lift(self, x: torch.Tensor) -> torch.Tensor:
        """(x - in_shift) / in_scale
        ([`set_normalizers`][spacetime_nets.models.FlowModel.set_normalizers]), padded with
        ``augment`` zeros: ``[B, dim] -> [B, dim + augment]``.

        Args:
            x: the inputs, ``[B, dim]``.

        Returns:
            The initial state x(0), ``[B, dim + augment]``.
        """
        x = self._standardize(x)
        if self.augment:
            return torch.cat([x, x.new_zeros(x.shape[0], self.augment)], dim=1)
        return x

    def readout(self, xT: torch.Tensor, k: int | None = None) -> torch.Tensor:
        """P x(T) (the state itself without ``out_features``), then z * out_scale +
        out_shift: ``[B, dim + augment] -> [B, out]``.

        Args:
            xT: a state, ``[B, dim + augment]``.
            k: not read (the readout is the same at every time).

        Returns:
            The outputs, ``[B, out]`` (``[B, dim + augment]`` without ``out_features``).
        """
        if self.out_features is None:
            return self._destandardize(xT)
        z = torch.nn.functional.linear(xT, self.readout_weight, self.readout_bias)
        return self._destandardize(z)

    def readout_along(self, states: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The readout of every state of a trajectory, P x(t_k).

        Args:
            states: the states x(t_k), ``[B, dim + augment]`` each.

        Returns:
            One output ``[B, out]`` per state.
        """
        return [self.readout(s) for s in states]

    def _rebind(self, schedule: GridSchedule) -> None:
        ref = next(self.parameters())
        self.disc = Discretization(schedule, self._hidden).to(device=ref.device, dtype=ref.dtype)
