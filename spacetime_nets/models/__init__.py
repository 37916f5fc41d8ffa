"""Models: ``SpaceTimeNet`` (lift -> space-time flow on a grid schedule -> readout) and
``NeuralODE`` (the finite-width neural ODE, a discrete Omega with unit weights)."""

from .base import FlowModel
from .neural_ode import NeuralODE
from .spacetime import KERNEL_OPTIONS, KERNELS, LIFTS, READOUTS, SpaceTimeNet

__all__ = [
    "SpaceTimeNet",
    "NeuralODE",
    "FlowModel",
    "LIFTS",
    "KERNELS",
    "KERNEL_OPTIONS",
    "READOUTS",
]
