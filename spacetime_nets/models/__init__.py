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
from .neural_ode import NeuralODE
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
]
