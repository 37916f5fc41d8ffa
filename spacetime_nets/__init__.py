"""spacetime_nets: continuous space-time neural networks on moving grids, and the
variable-width ResNets they define."""

from .export import VariableWidthResNet, from_resnet, to_resnet
from .fields import ACTIVATIONS, FORMS, form_is_homogeneous
from .integrate import METHODS, Discretization, Trajectory, integrate
from .kernels import BasisKernel, FunctionKernel, Kernel, NeuralKernel, NodalKernel
from .models import NeuralODE, SpaceTimeNet

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "FORMS",
    "METHODS",
    "BasisKernel",
    "Discretization",
    "FunctionKernel",
    "Kernel",
    "NeuralKernel",
    "NeuralODE",
    "NodalKernel",
    "SpaceTimeNet",
    "Trajectory",
    "VariableWidthResNet",
    "form_is_homogeneous",
    "from_resnet",
    "integrate",
    "to_resnet",
]
