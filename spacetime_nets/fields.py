"""Vector fields ("forms") of the flow and their activations.

outside:     f(x, u) = sigma(W x + beta)
inside:      f(x, u) = W sigma(x) + beta
bottleneck:  f(x, u) = W2 sigma(W1 x + beta1) + beta2

with the integral operators folded into the step operators W (quadrature weights included).
``FORMS`` is a registry: a form is one [`Form`][spacetime_nets.fields.Form] entry (its field,
how many operators a step needs, its homogeneity rule, and where its activation's argument
lives), used by the step loop and by exported ResNets alike.

Channel normalisation by quadrature ([`ChannelNorm`][spacetime_nets.fields.ChannelNorm],
[`quadrature_norm`][spacetime_nets.fields.quadrature_norm]) acts on the argument of sigma in
every form, so a normalised field is the same formula with sigma replaced by sigma o N_k:

outside:     f(x, u) = sigma(N_k(W x + beta))
inside:      f(x, u) = W sigma(N_k(x)) + beta
bottleneck:  f(x, u) = W2 sigma(N_k(W1 x + beta1)) + beta2
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from grids.registry import FieldView, NamesView

__all__ = [
    "Form",
    "FORMS",
    "register_form",
    "Activation",
    "ACTIVATION_REGISTRY",
    "register_activation",
    "ACTIVATIONS",
    "HOMOGENEOUS_ACTIVATIONS",
    "get_activation",
    "activation_module",
    "activation_name",
    "form_is_homogeneous",
    "check_form",
    "DEFAULT_FORM",
    "DEFAULT_ACTIVATION",
    "NORMS",
    "NORM_EPS",
    "ChannelNorm",
    "NormOp",
    "quadrature_norm",
    "quadrature_stats",
    "check_norm",
    "norm_reads",
    "normed",
]

Apply = Callable[[object, torch.Tensor], torch.Tensor]

DEFAULT_FORM = "inside"
"""The form of every model and of `integrate` when none is given: W sigma(x) + b, the
workhorse (homogeneous for every sigma; with ReLU the outside form's states only grow)."""
DEFAULT_ACTIVATION = "tanh"
"""The activation of every model and of `integrate` when none is given."""


@dataclass(frozen=True)
class Form:
    """A vector field f(x, u) built from ``operators`` step operators.

    ``field(act, apply, ops, x)`` evaluates it, ``apply(op, x)`` applying one operator (so the
    same formula serves the step loop and exported blocks). ``homogeneous(activation)`` is the
    exact rule for f(x, a u) = a f(x, u), a > 0. ``act_reads`` says which tensor the
    activation reads, so that a channel normalisation of that tensor knows its grid: -1 the
    state x itself (on the step's input grid), i >= 0 the output of operator i (on that
    operator's output grid); None (not declared) leaves the form without normalisation.

    Attributes:
        name: the name ``form=`` takes.
        operators: the step operators per step, 1 or 2 (W, or W1 and W2).
        field: ``field(act, apply, ops, x) -> f(x, u)``, with ``ops`` the step's operators.
        homogeneous: ``homogeneous(activation) -> bool``, the exact homogeneity rule.
        act_reads: which tensor the activation reads (-1 the state, i >= 0 the output of
            operator i), or None.
    """

    name: str
    operators: int
    field: Callable[[Callable, Apply, Sequence, torch.Tensor], torch.Tensor]
    homogeneous: Callable[[str | Callable], bool]
    act_reads: int | None = None


FORMS: dict[str, Form] = {}
"""The registered vector-field forms, by name: `{name: Form}` (`register_form` adds one)."""


def register_form(form: Form) -> Form:
    """Add a form to ``FORMS`` (one entry is all a new form needs).

    Args:
        form: the form; one of the same name is replaced.

    Returns:
        ``form``.

    Raises:
        ValueError: when ``form.operators`` is not 1 or 2.
    """
    if form.operators not in (1, 2):
        raise ValueError(f"form {form.name!r}: operators must be 1 or 2, got {form.operators}")
    FORMS[form.name] = form
    return form


def _sigma_is_homogeneous(activation: str | Callable) -> bool:
    if isinstance(activation, str):
        get_activation(activation)
        return ACTIVATION_REGISTRY[activation].homogeneous
    return _probe_positive_homogeneity(activation)


register_form(
    Form(
        "outside",
        1,
        lambda act, apply, ops, x: act(apply(ops[0], x)),
        _sigma_is_homogeneous,
        act_reads=0,
    )
)
register_form(
    Form(
        "inside",
        1,
        lambda act, apply, ops, x: apply(ops[0], act(x)),
        lambda a: True,
        act_reads=-1,
    )
)
register_form(
    Form(
        "bottleneck",
        2,
        lambda act, apply, ops, x: apply(ops[1], act(apply(ops[0], x))),
        lambda a: False,  # degree 2 in (W1, W2)
        act_reads=0,
    )
)


@dataclass(frozen=True)
class Activation:
    """One activation sigma: its ``name``, the function ``fn`` applied in the flow, the plain
    ``torch.nn`` ``module`` class an exported ResNet uses, and whether it is positively
    homogeneous, sigma(a z) = a sigma(z) for every a > 0 (the scaling lemma's condition).

    Attributes:
        name: the name ``activation=`` takes.
        fn: sigma, applied elementwise.
        module: the ``torch.nn`` module class computing sigma (built without arguments).
        homogeneous: whether sigma(a z) = a sigma(z) for every a > 0.
    """

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    module: type[nn.Module]
    homogeneous: bool = False


ACTIVATION_REGISTRY: dict[str, Activation] = {}
"""Every activation, by name: `{name: Activation}` (`register_activation` adds one)."""


def register_activation(activation: Activation) -> Activation:
    """Add ``activation`` to ``ACTIVATION_REGISTRY``: models, ``ModelOptions``, the
    command line, the homogeneity rules and the export take its name from then on.

    Args:
        activation: the entry; one of the same name is replaced.

    Returns:
        ``activation``.

    Raises:
        ValueError: when ``activation`` is not an
            [`Activation`][spacetime_nets.fields.Activation].
    """
    if not isinstance(activation, Activation):
        raise ValueError(f"activation: expected an Activation, got {type(activation).__name__}")
    ACTIVATION_REGISTRY[activation.name] = activation
    return activation


ACTIVATIONS: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] = FieldView(
    ACTIVATION_REGISTRY, "fn"
)
"""The activations' functions, `{name: fn}`: a live view of `ACTIVATION_REGISTRY`."""
HOMOGENEOUS_ACTIVATIONS: Sequence[str] = NamesView(ACTIVATION_REGISTRY, lambda a: a.homogeneous)
"""The names of the positively homogeneous activations, sigma(a z) = a sigma(z) for every
a > 0: a live view of `ACTIVATION_REGISTRY`."""

for _entry in (
    Activation("relu", torch.relu, nn.ReLU, homogeneous=True),
    Activation("leaky_relu", F.leaky_relu, nn.LeakyReLU, homogeneous=True),
    Activation("tanh", torch.tanh, nn.Tanh),
    Activation("sigmoid", torch.sigmoid, nn.Sigmoid),
    Activation("softplus", F.softplus, nn.Softplus),
    Activation("gelu", F.gelu, nn.GELU),
    Activation("identity", lambda z: z, nn.Identity, homogeneous=True),
):
    register_activation(_entry)


def activation_name(module: nn.Module) -> str | None:
    """The registered name whose module class ``module`` is an instance of (None: none).

    Args:
        module: an activation module, e.g. ``nn.ReLU()`` (its exact class is compared).

    Returns:
        The activation's name, or None.
    """
    for entry in ACTIVATION_REGISTRY.values():
        if type(module) is entry.module:
            return entry.name
    return None


def check_form(form: str) -> str:
    """``form`` if it names a registered form, else a ValueError naming the registered ones.

    Args:
        form: the form's name.

    Returns:
        ``form``.
    """
    if not isinstance(form, str) or form not in FORMS:
        raise ValueError(f"form: expected one of {', '.join(FORMS)}; got {form!r}")
    return form


def get_activation(
    activation: str | Callable[[torch.Tensor], torch.Tensor],
) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """Return ``(sigma, name)`` for a name in ``ACTIVATIONS`` or a callable.

    Args:
        activation: a registered name or a callable sigma.

    Returns:
        ``(sigma, name)``; a callable's name is its ``__name__`` (else its class name).

    Raises:
        ValueError: for an unknown name or anything else.
    """
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
    """A plain ``torch.nn`` module computing the activation (for exported ResNets).

    Args:
        activation: a registered name, an ``nn.Module`` (returned as it is) or a callable.

    Returns:
        The registered module class's instance, the module, or a module wrapping the callable.
    """
    if isinstance(activation, str):
        get_activation(activation)
        return ACTIVATION_REGISTRY[activation].module()
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
    A callable activation is judged by a numerical probe (see ``theory.is_homogeneous``).

    Args:
        form: a registered form name.
        activation: a registered activation name or a callable.

    Returns:
        Whether the form's field is homogeneous of degree 1 in the controls.
    """
    return FORMS[check_form(form)].homogeneous(activation)


def _probe_positive_homogeneity(fn: Callable, trials: int = 5) -> bool:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(256, generator=g, dtype=torch.float64) * 3
    for a in torch.linspace(0.1, 7.0, trials, dtype=torch.float64):
        lhs, rhs = fn(a * z), a * fn(z)
        if not torch.allclose(lhs, rhs, rtol=1e-9, atol=1e-12):
            return False
    return True


# --------------------------------------------------------------------------- normalisation
def _instance_groups(norm_groups: int | None, channels: Sequence[int]) -> None:
    """instance: each channel its own group, so ``norm_groups`` may not be given."""
    if norm_groups is not None:
        raise ValueError(
            f"norm_groups: applies to norm='group' only, got norm='instance' and "
            f"norm_groups={norm_groups!r}"
        )


def _group_groups(norm_groups: int | None, channels: Sequence[int]) -> int:
    """group: ``norm_groups`` groups, a positive int dividing every channel count."""
    chans = sorted(set(channels))
    ok = isinstance(norm_groups, int) and not isinstance(norm_groups, bool) and norm_groups >= 1
    if not ok or any(c % norm_groups for c in chans):
        raise ValueError(
            f"norm_groups: norm='group' needs a positive int dividing every channel count of "
            f"the steps {list(channels)} (a divisor of {math.gcd(*chans)}); got {norm_groups!r}"
        )
    return norm_groups


#: the channel normalisations: name -> groups(norm_groups, channels), which checks
#: ``norm_groups`` against the steps' channel counts and returns the number of groups
#: (None: one per channel)
_NORM_GROUPS: dict[str, Callable[[int | None, Sequence[int]], int | None]] = {
    "instance": _instance_groups,
    "group": _group_groups,
}

NORMS = tuple(_NORM_GROUPS)
"""The channel normalisations of `SpaceTimeNet(norm=...)` (None: no normalisation)."""

NORM_EPS = 1e-5
"""Added to the variance before the square root (a resolution-free number: s^2 is an
integral)."""


def quadrature_norm(
    z: torch.Tensor,
    p: torch.Tensor,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    groups: int,
    eps: float = NORM_EPS,
) -> torch.Tensor:
    """Channel normalisation by quadrature, ``z [B, c, n] -> [B, c, n]``.

    For each sample b and each of the ``groups`` groups G of c / groups consecutive channels,
    with p = omega / sum(omega) ``[n]`` (the grid's quadrature weights over |Omega|; every rule
    integrates constants exactly, so sum(omega) = |Omega|):

        mu_bG     = (1/|G|) sum_{c in G} sum_j p_j z_bcj
                  ~ (1/|G|) sum_{c in G} (1/|Omega|) int_Omega z_bc,
        s^2_bG    = (1/|G|) sum_{c in G} sum_j p_j (z_bcj - mu_bG)^2
                  ~ (1/|G|) sum_{c in G} (1/|Omega|) int_Omega (z_bc - mu_bG)^2,
        N(z)_bcj  = gamma_c (z_bcj - mu_bG) / sqrt(s^2_bG + eps) + beta_c,

    gamma, beta ``[c]``. The statistics are integrals over Omega, so the same numbers (to the
    quadrature error) on every grid that resolves z. Tensor operations only (no host
    synchronisation); the weighted sums are elementwise products, so under autocast they are
    taken in p's precision, not rounded like a matrix product.

    Args:
        z: the tensor to normalise, ``[B, c, n]``.
        p: omega / sum(omega), ``[n]``.
        gamma: the scales, ``[c]``.
        beta: the shifts, ``[c]``.
        groups: the number of groups g (dividing c).
        eps: added to s^2 before the square root.

    Returns:
        N(z), ``[B, c, n]``.
    """
    d, _, var = _centred(z, p, groups)
    y = (d * torch.rsqrt(var + eps)).reshape(z.shape[0], z.shape[1], z.shape[-1])
    return torch.addcmul(beta[:, None], y, gamma[:, None])


def quadrature_stats(
    z: torch.Tensor, p: torch.Tensor, groups: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu ``[B, groups]``, s^2 ``[B, groups]``) of
    [`quadrature_norm`][spacetime_nets.fields.quadrature_norm] for ``z [B, c, n]`` and
    ``p = omega / sum(omega) [n]``: the group means of (1/|Omega|) int z_c and of
    (1/|Omega|) int (z_c - mu)^2 by the grid's quadrature.

    Args:
        z: the tensor, ``[B, c, n]``.
        p: omega / sum(omega), ``[n]``.
        groups: the number of groups g (dividing c).

    Returns:
        ``(mu, s2)``, each ``[B, groups]``.
    """
    _, mu, var = _centred(z, p, groups)
    return mu[..., 0, 0], var[..., 0, 0]


def _centred(z: torch.Tensor, p: torch.Tensor, groups: int):
    """(z - mu ``[B, g, c / g, n]``, mu, s^2 ``[B, g, 1, 1]``), two passes (the variance of
    the centred values, no cancellation)."""
    B, c, n = z.shape[0], z.shape[1], z.shape[-1]
    zg = z.reshape(B, groups, c // groups, n)
    mu = (zg * p).sum(-1).mean(-1)[..., None, None]
    d = zg - mu
    var = (d * d * p).sum(-1).mean(-1)[..., None, None]
    return d, mu, var


@dataclass
class NormOp:
    """One step's normalisation: ``p [n]`` (omega / sum(omega) of the grid sigma's argument
    lives on), ``gamma``, ``beta`` ``[c]``, the number of groups and eps. Calling it applies
    [`quadrature_norm`][spacetime_nets.fields.quadrature_norm]; ``tensors`` / ``rebuild``
    serve checkpointed recomputation like the step operators'.

    Attributes:
        p: omega / sum(omega) of the grid, ``[n]``.
        gamma: the scales, ``[c]``.
        beta: the shifts, ``[c]``.
        groups: the number of groups.
        eps: added to the variance.
    """

    p: torch.Tensor
    gamma: torch.Tensor
    beta: torch.Tensor
    groups: int
    eps: float = NORM_EPS

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return quadrature_norm(z, self.p, self.gamma, self.beta, self.groups, self.eps)

    def tensors(self) -> list[torch.Tensor]:
        """The trainable tensors, for checkpointed recomputation.

        Returns:
            ``[gamma, beta]``.
        """
        return [self.gamma, self.beta]

    def rebuild(self, tensors: Sequence[torch.Tensor]) -> NormOp:
        """The same normalisation with other trainable tensors.

        Args:
            tensors: ``[gamma, beta]``, in the order of ``tensors()``.

        Returns:
            A new ``NormOp`` with this one's ``p``, groups and eps.
        """
        return NormOp(self.p, tensors[0], tensors[1], self.groups, self.eps)


def normed(act: Callable[[torch.Tensor], torch.Tensor], norm: NormOp | None) -> Callable:
    """sigma o N (sigma itself when ``norm`` is None): the activation of a normalised field.

    Args:
        act: sigma.
        norm: the step's normalisation, or None.

    Returns:
        z -> sigma(N(z)), or ``act`` itself.
    """
    if norm is None:
        return act
    return lambda z: act(norm(z))


def norm_reads(form: str) -> int:
    """Which tensor sigma reads in ``form`` (``Form.act_reads``: -1 the state, i >= 0 the
    output of operator i), so that a channel normalisation knows its grid; a ValueError for a
    form that does not declare it.

    Args:
        form: a registered form name.

    Returns:
        -1 or the index of the operator.
    """
    reads = FORMS[form].act_reads
    if reads is None:
        raise ValueError(
            f"norm: the form {form!r} does not declare which tensor its activation reads "
            "(Form.act_reads), so it cannot be normalised; use a registered form that does "
            "(outside, inside, bottleneck)"
        )
    return reads


def check_norm(
    norm: str | None, norm_groups: int | None, channels: Sequence[int] | None
) -> int | None:
    """Validate ``norm`` / ``norm_groups`` against the steps' channel counts ``[c_0, ...,
    c_{K-1}]`` (None: the scalar model). Returns the number of groups (None: per channel, or
    no normalisation); raises ValueError naming the argument, what was expected and what came.

    Args:
        norm: None, ``"instance"`` or ``"group"``.
        norm_groups: the number of groups, with ``"group"`` only (dividing every channel
            count).
        channels: the channel count of each step, or None for the scalar model.

    Returns:
        ``norm_groups`` for ``"group"``, else None.
    """
    if norm is None:
        if norm_groups is not None:
            raise ValueError(
                f"norm_groups: applies to norm='group' only, got norm=None and "
                f"norm_groups={norm_groups!r}"
            )
        return None
    groups = _NORM_GROUPS.get(norm) if isinstance(norm, str) else None
    if groups is None:
        raise ValueError(f"norm: expected None or one of {', '.join(NORMS)}; got {norm!r}")
    if channels is None:
        raise ValueError(
            f"norm: {norm!r} normalises channels and needs a state with channels "
            "(channels=...); got the scalar model (channels=None)"
        )
    return groups(norm_groups, channels)


class ChannelNorm(nn.Module):
    """The learned channel normalisation of a flow: on a grid with weights omega at time t,
    N_t(z) = [`quadrature_norm`][spacetime_nets.fields.quadrature_norm]
    (z, omega / sum(omega), gamma(t), beta(t), g).

    gamma(t), beta(t) in R^{c(t)} are piecewise constant on ``pieces`` equal intervals of
    [0, T] (one per step of the schedule the model is built on, like the stationary kernels'
    coefficients): a model moved to another schedule (``with_schedule``, ``at_resolution``,
    ``refine``) keeps them, step k using the piece that holds t_k. Initially gamma = 1,
    beta = 0. ``T`` follows the horizon in ``rescale_horizon`` (the pieces are stretched in
    time; gamma and beta are not controls and are not scaled).

    Args:
        kind: ``instance`` (g = c_k groups: each channel its own) or ``group`` (``groups``
            groups of c_k / g consecutive channels; g = 1 is a layer norm).
        channels: c of each piece ``[c_0, ..., c_{P-1}]``.
        groups: the number of groups (``group`` only).
        T: the horizon the pieces span.
        eps: added to the variance.
    """

    def __init__(
        self,
        kind: str,
        channels: Sequence[int],
        groups: int | None = None,
        T: float = 1.0,
        eps: float = NORM_EPS,
    ) -> None:
        super().__init__()
        self.kind = kind
        self.groups = check_norm(kind, groups, list(channels))
        self.piece_channels = [int(c) for c in channels]
        self.pieces = len(self.piece_channels)
        self.T = float(T)
        self.eps = float(eps)
        self.gamma = nn.ParameterList([nn.Parameter(torch.ones(c)) for c in self.piece_channels])
        self.beta = nn.ParameterList([nn.Parameter(torch.zeros(c)) for c in self.piece_channels])

    def piece(self, t: float) -> int:
        """The piece holding time t (t_k = k T / K may come out a few ulps low).

        Args:
            t: the time, clamped to [0, T].

        Returns:
            The piece's index, ``floor(P t / T)`` (with a tolerance), at most P - 1.
        """
        tau = min(max(t / self.T, 0.0), 1.0)
        return min(int(tau * self.pieces + 1e-9), self.pieces - 1)

    def channels_at(self, t: float) -> int:
        """The channel count of the piece holding t.

        Args:
            t: the time.

        Returns:
            c of that piece.
        """
        return self.piece_channels[self.piece(t)]

    def groups_for(self, c: int) -> int:
        """Groups of a c-channel state: c (instance) or the fixed g (group).

        Args:
            c: the channel count.

        Returns:
            The number of groups.
        """
        return c if self.groups is None else self.groups

    def step_op(self, t: float, weights: torch.Tensor) -> NormOp:
        """The normalisation at time t on a grid with weights ``omega [n]``.

        Args:
            t: the time (picks the piece).
            weights: the quadrature weights omega ``[n]`` of the grid sigma's argument lives
                on.

        Returns:
            The step's [`NormOp`][spacetime_nets.fields.NormOp].
        """
        j = self.piece(t)
        c = self.piece_channels[j]
        return NormOp(
            weights / weights.sum(), self.gamma[j], self.beta[j], self.groups_for(c), self.eps
        )

    def get_extra_state(self) -> dict:
        """The horizon, saved in ``state_dict`` (it changes with ``rescale_horizon``).

        Returns:
            ``{"T": T}``.
        """
        return {"T": self.T}

    def set_extra_state(self, state: dict) -> None:
        """Restore the horizon from ``state_dict``.

        Args:
            state: ``{"T": T}`` of ``get_extra_state``.
        """
        self.T = float(state["T"])

    def extra_repr(self) -> str:
        """The line printed in the module's repr.

        Returns:
            The kind, the groups (for ``group``), the pieces, T and eps.
        """
        g = "" if self.groups is None else f", groups={self.groups}"
        return f"kind={self.kind}{g}, pieces={self.pieces}, T={self.T:g}, eps={self.eps:g}"
