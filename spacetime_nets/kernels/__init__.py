"""Kernels: how the controls w(t, xi, zeta) and b(t, xi) are stored, and their step operators.

Dense kernels (``NodalKernel``, ``BasisKernel``, ``NeuralKernel``, ``FunctionKernel``) give the
matrices W_ij = w(t, xi_i, zeta_j) omega_j; stationary kernels (``ConvKernel``,
``SpectralKernel``) give convolutions and FFT operators. All but the nodal one are defined at
every point, so one model can be discretised on any schedule.
"""

from .dense import (
    BASES,
    BasisKernel,
    FunctionKernel,
    Kernel,
    NeuralKernel,
    NodalKernel,
    basis_functions,
    check_scale,
    tensor_basis,
)
from .stationary import ConvKernel, PiecewiseKernel, SpectralKernel, window

__all__ = [
    "Kernel",
    "NodalKernel",
    "BasisKernel",
    "NeuralKernel",
    "FunctionKernel",
    "ConvKernel",
    "SpectralKernel",
    "PiecewiseKernel",
    "basis_functions",
    "tensor_basis",
    "window",
    "check_scale",
    "BASES",
]
