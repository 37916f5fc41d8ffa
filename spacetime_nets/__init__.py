"""spacetime_nets: continuous space-time neural networks on moving grids, and the
variable-width ResNets they define."""

from .export import VariableWidthResNet, from_resnet, to_resnet
from .fields import ACTIVATIONS, FORMS, form_is_homogeneous
from .integrate import METHODS, Discretization, Trajectory, integrate
from .kernels import BasisKernel, FunctionKernel, Kernel, NeuralKernel, NodalKernel
from .models import NeuralODE, SpaceTimeNet

__version__ = "0.1.0"

_SUBMODULES = (
    "objectives",
    "datasets",
    "theory",
    "training",
    "experiments",
    "plotting",
    "cli",
    "adapt",
    "accel",
    "runs",
    "fullbatch",
    "tables",
    "validation",
)


def __getattr__(name: str):
    """Submodules with heavier imports (scikit-learn, tqdm, matplotlib) load on first use."""
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'spacetime_nets' has no attribute {name!r}")


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
