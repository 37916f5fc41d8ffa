"""Export to plain PyTorch: a ResNet of ``nn.Linear(n_k -> n_{k+1})`` blocks with fixed
shortcut matrices Pi_k, and back (``from_resnet``)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from grids import GridSchedule

from .fields import activation_module
from .kernels import NodalKernel

__all__ = ["ResidualBlock", "VariableWidthResNet", "to_resnet", "from_resnet"]


class ResidualBlock(nn.Module):
    """y = Pi x + dt * F(x), with F of the form ``outside`` (sigma(L x)), ``inside``
    (L sigma(x)) or ``bottleneck`` (L2 sigma(L1 x)); ``heun`` and ``rk4`` blocks apply the
    Runge-Kutta step with the square layer(s) and then Pi. ``shortcut`` is None for the identity.
    """

    def __init__(
        self,
        linears: list[nn.Linear],
        dt: float,
        form: str,
        activation: nn.Module,
        shortcut: torch.Tensor | None,
        method: str = "euler",
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(linears)
        self.dt = float(dt)
        self.form = form
        self.method = method
        self.activation = activation
        self.has_shortcut = shortcut is not None
        if shortcut is not None:
            self.register_buffer("shortcut", shortcut)

    def field(self, x: torch.Tensor) -> torch.Tensor:
        first = self.layers[0]
        if self.form == "outside":
            return self.activation(F.linear(x, first.weight, first.bias))
        if self.form == "inside":
            return F.linear(self.activation(x), first.weight, first.bias)
        second = self.layers[1]
        return F.linear(
            self.activation(F.linear(x, first.weight, first.bias)), second.weight, second.bias
        )

    def _pi(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.shortcut.T if self.has_shortcut else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dt = self.dt
        if self.method == "euler":
            return torch.add(self._pi(x), self.field(x), alpha=dt)
        k1 = self.field(x)
        if self.method == "heun":
            k2 = self.field(x + dt * k1)
            return self._pi(x + (0.5 * dt) * (k1 + k2))
        k2 = self.field(x + (0.5 * dt) * k1)
        k3 = self.field(x + (0.5 * dt) * k2)
        k4 = self.field(x + dt * k3)
        return self._pi(x + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4))

    def extra_repr(self) -> str:
        return f"form={self.form}, method={self.method}, dt={self.dt:g}"


class VariableWidthResNet(nn.Module):
    """input -> Linear(in, n_0) (the lift) -> residual blocks n_k -> n_{k+1} -> Linear(n_K, out).

    Plain ``torch.nn``: it needs nothing from this library to run, save or export.
    """

    def __init__(self, lift: nn.Linear, blocks: list[ResidualBlock], head: nn.Linear) -> None:
        super().__init__()
        self.lift = lift
        self.blocks = nn.ModuleList(blocks)
        self.head = head

    @property
    def widths(self) -> list[int]:
        w = [self.lift.out_features]
        w += [
            b.layers[-1].out_features
            if b.method == "euler"
            else (b.shortcut.shape[0] if b.has_shortcut else b.layers[-1].out_features)
            for b in self.blocks
        ]
        return w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lift(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)

    def layer_table(self) -> str:
        """One line per block: index, widths, dt, shortcut kind, parameters."""
        rows = [f"lift   Linear({self.lift.in_features} -> {self.lift.out_features})"]
        for k, b in enumerate(self.blocks):
            shapes = " + ".join(f"Linear({m.in_features}->{m.out_features})" for m in b.layers)
            sc = "Pi (fixed)" if b.has_shortcut else "identity"
            n = sum(p.numel() for p in b.parameters())
            rows.append(f"block {k:3d}  {shapes:34s} dt={b.dt:.4g}  shortcut={sc:10s} params={n}")
        rows.append(f"head   Linear({self.head.in_features} -> {self.head.out_features})")
        return "\n".join(rows)


def _linear(W: torch.Tensor, b: torch.Tensor) -> nn.Linear:
    lin = nn.Linear(W.shape[1], W.shape[0], device=W.device, dtype=W.dtype)
    with torch.no_grad():
        lin.weight.copy_(W)
        lin.bias.copy_(b)
    return lin


@torch.no_grad()
def to_resnet(model: nn.Module) -> VariableWidthResNet:
    """Export a :class:`SpaceTimeNet` or :class:`NeuralODE` to a :class:`VariableWidthResNet`
    that computes the same function (the matrices W^k, beta^k, Pi_k frozen at their values)."""
    from .models import NeuralODE, SpaceTimeNet

    if isinstance(model, SpaceTimeNet):
        M, a0 = model.lift_matrix()
        lift = _linear(M, a0)
        R = model.readout_matrix()
        head = _linear(R, model.readout_bias)
    elif isinstance(model, NeuralODE):
        ref = next(model.parameters())
        D = model.dim + model.augment
        M = torch.zeros(D, model.dim, dtype=ref.dtype, device=ref.device)
        M[: model.dim].copy_(torch.eye(model.dim))
        lift = _linear(M, torch.zeros(D, dtype=ref.dtype, device=ref.device))
        if model.out_features is None:
            head = _linear(
                torch.eye(D, dtype=ref.dtype, device=ref.device),
                torch.zeros(D, dtype=ref.dtype, device=ref.device),
            )
        else:
            head = _linear(model.readout_weight, model.readout_bias)
    else:
        raise ValueError(f"model: expected a SpaceTimeNet or NeuralODE, got {type(model).__name__}")
    disc = model.disc
    blocks = []
    for k, sm in enumerate(model.controls()):
        linears = [_linear(W, b) for W, b in sm.layers]
        shortcut = None if disc.pi[k] is None else disc.transfer_matrix(k).clone()
        blocks.append(
            ResidualBlock(
                linears,
                sm.dt,
                model.form,
                activation_module(model.activation),
                shortcut,
                model.method,
            )
        )
    return VariableWidthResNet(lift, blocks, head)


def from_resnet(module: VariableWidthResNet, schedule: GridSchedule):
    """A nodal :class:`SpaceTimeNet` on ``schedule`` reproducing ``module`` (an exported
    ResNet of the euler ``outside`` or ``inside`` form): W^k, beta^k copied, the readout
    p_c = R_c / omega on G_K, the lift as a learned linear map. The schedule's widths, steps and
    transfers must match the module's blocks."""
    from .models import SpaceTimeNet

    if not isinstance(module, VariableWidthResNet):
        raise ValueError(f"module: expected a VariableWidthResNet, got {type(module).__name__}")
    blocks = list(module.blocks)
    if not isinstance(schedule, GridSchedule) or schedule.num_steps != len(blocks):
        raise ValueError(
            f"schedule: expected a GridSchedule with {len(blocks)} steps, got "
            f"{getattr(schedule, 'num_steps', schedule)!r}"
        )
    forms = {b.form for b in blocks}
    methods = {b.method for b in blocks}
    if len(forms) != 1 or methods != {"euler"} or forms & {"bottleneck"}:
        raise ValueError(f"module: needs euler blocks of one form (outside/inside), got {forms}")
    widths = module.widths
    if widths != schedule.widths:
        raise ValueError(f"schedule: widths must be {widths}, got {schedule.widths}")
    ref = module.head.weight
    for k, b in enumerate(blocks):
        if abs(b.dt - float(schedule.dt[k])) > 1e-9 * max(1.0, b.dt):
            raise ValueError(f"schedule: dt[{k}] must be {b.dt}, got {float(schedule.dt[k])}")
        pi = schedule.transfer(k)
        P = b.shortcut if b.has_shortcut else torch.eye(widths[k + 1], dtype=ref.dtype)
        if not torch.allclose(pi.matrix().to(P), P, atol=1e-6):
            raise ValueError(f"schedule: transfer {k} does not match the module's shortcut")
    act = copy.deepcopy(blocks[0].activation)
    name = {
        nn.ReLU: "relu",
        nn.LeakyReLU: "leaky_relu",
        nn.Tanh: "tanh",
        nn.Sigmoid: "sigmoid",
        nn.Softplus: "softplus",
        nn.Identity: "identity",
    }.get(type(act))
    kernel = NodalKernel(schedule)
    net = SpaceTimeNet(
        schedule,
        module.lift.in_features,
        module.head.out_features,
        kernel=kernel,
        form=blocks[0].form,
        activation=name or act,
        lift="linear",
    )
    net = net.to(device=ref.device, dtype=ref.dtype)
    with torch.no_grad():
        for k, b in enumerate(blocks):
            net.kernel.weight[k].copy_(b.layers[0].weight)
            net.kernel.bias[k].copy_(b.layers[0].bias)
        net.lift_weight.copy_(module.lift.weight)
        net.lift_bias.copy_(module.lift.bias)
        wK = net.disc.grid(schedule.num_steps)[1]
        net.readout_values.copy_(module.head.weight / wK)
        net.readout_bias.copy_(module.head.bias)
    return net
