"""Models: ``SpaceTimeNet`` (lift -> space-time flow on a grid schedule -> readout) and
``NeuralODE`` (the finite-width neural ODE, a discrete Omega with unit weights)."""

from .base import FlowModel
from .kernel_kinds import (
    KERNEL_CHANNELS,
    KERNEL_OPTION_NAMES,
    KERNEL_REGISTRY,
    KernelKind,
    KernelRequest,
    SizeRequest,
    register_kernel_kind,
)
from .lifts import LIFT_REGISTRY, Lift
from .neural_ode import NeuralODE
from .readouts import READOUT_REGISTRY, Readout, ReadoutRequest, register_readout
from .spacetime import KERNEL_OPTIONS, KERNELS, LIFTS, READOUTS, SpaceTimeNet

__all__ = [
    "SpaceTimeNet",
    "NeuralODE",
    "FlowModel",
    "LIFTS",
    "KERNELS",
    "KERNEL_OPTIONS",
    "KernelKind",
    "KernelRequest",
    "SizeRequest",
    "KERNEL_REGISTRY",
    "register_kernel_kind",
    "KERNEL_OPTION_NAMES",
    "KERNEL_CHANNELS",
    "READOUTS",
    "Readout",
    "ReadoutRequest",
    "READOUT_REGISTRY",
    "register_readout",
    "Lift",
    "LIFT_REGISTRY",
]
