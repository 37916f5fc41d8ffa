"""Vector fields ("forms") of the flow and their activations.

outside:     f(x, u) = sigma(W x + beta)
inside:      f(x, u) = W sigma(x) + beta
bottleneck:  f(x, u) = W2 sigma(W1 x + beta1) + beta2

with the integral operators folded into the step operators W (quadrature weights included).
:data:`FORMS` is a registry: a form is one :class:`Form` entry (its field, how many operators
a step needs, and its homogeneity rule), used by the step loop and by exported ResNets alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Form",
    "FORMS",
    "register_form",
    "ACTIVATIONS",
    "HOMOGENEOUS_ACTIVATIONS",
    "get_activation",
    "activation_module",
    "form_is_homogeneous",
    "check_form",
]

Apply = Callable[[object, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Form:
    """A vector field f(x, u) built from ``operators`` step operators.

    ``field(act, apply, ops, x)`` evaluates it, ``apply(op, x)`` applying one operator (so the
    same formula serves the step loop and exported blocks). ``homogeneous(activation)`` is the
    exact rule for f(x, a u) = a f(x, u), a > 0.
    """

    name: str
    operators: int
    field: Callable[[Callable, Apply, Sequence, torch.Tensor], torch.Tensor]
    homogeneous: Callable[[str | Callable], bool]


#: the registered forms, by name
FORMS: dict[str, Form] = {}


def register_form(form: Form) -> Form:
    """Add a form to :data:`FORMS` (one entry is all a new form needs)."""
    if form.operators not in (1, 2):
        raise ValueError(f"form {form.name!r}: operators must be 1 or 2, got {form.operators}")
    FORMS[form.name] = form
    return form


def _sigma_is_homogeneous(activation: str | Callable) -> bool:
    if isinstance(activation, str):
        get_activation(activation)
        return activation in HOMOGENEOUS_ACTIVATIONS
    return _probe_positive_homogeneity(activation)


register_form(
    Form(
        "outside",
        1,
        lambda act, apply, ops, x: act(apply(ops[0], x)),
        _sigma_is_homogeneous,
    )
)
register_form(Form("inside", 1, lambda act, apply, ops, x: apply(ops[0], act(x)), lambda a: True))
register_form(
    Form(
        "bottleneck",
        2,
        lambda act, apply, ops, x: apply(ops[1], act(apply(ops[0], x))),
        lambda a: False,  # degree 2 in (W1, W2)
    )
)

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "leaky_relu": F.leaky_relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "softplus": F.softplus,
    "gelu": F.gelu,
    "identity": lambda z: z,
}

#: sigma(a z) = a sigma(z) for every a > 0
HOMOGENEOUS_ACTIVATIONS = ("relu", "leaky_relu", "identity")

_MODULES = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
    "gelu": nn.GELU,
    "identity": nn.Identity,
}


def check_form(form: str) -> str:
    if not isinstance(form, str) or form not in FORMS:
        raise ValueError(f"form: expected one of {', '.join(FORMS)}; got {form!r}")
    return form


def get_activation(
    activation: str | Callable[[torch.Tensor], torch.Tensor],
) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """Return ``(sigma, name)`` for a name in :data:`ACTIVATIONS` or a callable."""
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation: expected one of {', '.join(ACTIVATIONS)} or a callable; "
                f"got {activation!r}"
            )
        return ACTIVATIONS[activation], activation
    if callable(activation):
        return activation, getattr(activation, "__name__", type(activation).__name__)
    raise ValueError(f"activation: expected a name or a callable, got {activation!r}")


def activation_module(activation: str | Callable) -> nn.Module:
    """A plain ``torch.nn`` module computing the activation (for exported ResNets)."""
    if isinstance(activation, str):
        get_activation(activation)
        return _MODULES[activation]()
    if isinstance(activation, nn.Module):
        return activation
    return _Lambda(activation)


class _Lambda(nn.Module):
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fn(z)


def form_is_homogeneous(form: str, activation: str | Callable) -> bool:
    """Exact rule: is f(x, a u) = a f(x, u) for all a > 0? inside: always; outside: only for
    positively homogeneous sigma (relu, leaky_relu, identity); bottleneck: never (degree 2).
    A callable activation is judged by a numerical probe (see ``theory.is_homogeneous``)."""
    return FORMS[check_form(form)].homogeneous(activation)


def _probe_positive_homogeneity(fn: Callable, trials: int = 5) -> bool:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(256, generator=g, dtype=torch.float64) * 3
    for a in torch.linspace(0.1, 7.0, trials, dtype=torch.float64):
        lhs, rhs = fn(a * z), a * fn(z)
        if not torch.allclose(lhs, rhs, rtol=1e-9, atol=1e-12):
            return False
    return True
