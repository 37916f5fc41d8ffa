"""The flow plumbing shared by ``SpaceTimeNet`` and ``NeuralODE``: a Discretization,
kernel(s), form, activation and stepper; the step loop, trajectories, the scaling lemma; input
checks."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from grids import GridSchedule

from ..fields import FORMS, check_form, form_is_homogeneous, get_activation, norm_reads
from ..integrate import (
    Discretization,
    StepMatrices,
    Trajectory,
    check_checkpoint,
    check_method,
    multiply_adds,
    run_steps,
)
from ..validation import check_int, check_seed

#: The scalar normalisers of a flow model, buffers of shape ``[]`` (identity by default):
#: inputs enter as (x - in_shift) / in_scale, outputs leave as z * out_scale + out_shift.
NORMALIZER_BUFFERS = ("in_shift", "in_scale", "out_shift", "out_scale")
_IDENTITY = (0.0, 1.0, 0.0, 1.0)

#: The most memory, in bytes, that a model may need for its parameters plus the states of
#: one sample (inputs, every X^k and hidden state, in the default dtype): 64 GiB. Training
#: needs at least four times the parameter bytes (parameters, gradients, two Adam moments), so
#: a larger model fits on no single accelerator or ordinary host; a request above it (a
#: mistyped ``out_features=10**12`` or ``channels=2**40``) raises ValueError naming the
#: argument before anything is allocated, instead of failing in the allocator or overflowing
#: torch's size computation. Raise this module attribute
#: (``spacetime_nets.models.base.MAX_MODEL_BYTES = ...``) to allow larger models.
MAX_MODEL_BYTES = 1 << 36


def _generator(seed: object) -> torch.Generator | None:
    """A generator seeded with ``seed`` (:func:`~spacetime_nets.validation.check_seed`: an int
    in [0, 2**63), NumPy integers too), or None (torch's global generator) for None."""
    if seed is None:
        return None
    return torch.Generator().manual_seed(check_seed("seed", seed))


def _check_features(name: str, v: object) -> int:
    """A positive int (Python or NumPy/torch integer scalar, never a bool or a float) as a
    Python int."""
    try:
        return check_int(name, v, 1)
    except ValueError:
        raise ValueError(f"{name}: expected a positive int, got {v!r}") from None


class FlowModel(nn.Module):
    """Shared plumbing: a Discretization, kernel(s), form, activation, stepping method.

    The base of [`SpaceTimeNet`][spacetime_nets.models.SpaceTimeNet] and
    [`NeuralODE`][spacetime_nets.models.NeuralODE], which build it (it is not built on its
    own) and add the lift and the readout: ``model(x)`` is lift -> K steps of the flow ->
    readout, with the scalar normalisers around it.
    """

    disc: Discretization

    def _setup_flow(self, form, activation, method, checkpoint):
        for name, v in zip(NORMALIZER_BUFFERS, _IDENTITY):
            self.register_buffer(name, torch.tensor(v))
        self.form = check_form(form)
        self.act, self.activation_name = get_activation(activation)
        self.activation = activation
        self.method = check_method(method)
        self.checkpoint = check_checkpoint(checkpoint)

    @property
    def two_operators(self) -> bool:
        """Whether the form has two step operators per step (``bottleneck``: W1 to a hidden
        grid, W2 back), so the model holds ``kernel2`` and a hidden grid."""
        return FORMS[self.form].operators == 2

    @property
    def schedule(self) -> GridSchedule:
        """The [`GridSchedule`][grids.schedule.GridSchedule] the model is discretised on."""
        return self.disc.schedule

    # ------------------------------------------------------------------ scalar normalisers
    def set_normalizers(
        self,
        x_mean: float = 0.0,
        x_std: float = 1.0,
        y_mean: float = 0.0,
        y_std: float = 1.0,
    ) -> FlowModel:
        """Standardise inputs and targets by scalars, inside the model: the flow sees
        (x - x_mean) / x_std and the model returns z * y_std + y_mean, so ``model(x)`` takes
        and returns raw units (one number each, so they hold at every resolution). Stored as
        the buffers ``NORMALIZER_BUFFERS`` (saved in checkpoints, kept by
        ``with_schedule`` / ``at_resolution``, exported by ``to_resnet``); the defaults are
        the identity. ``training.fit(..., normalize=True)`` sets them from the training
        split. Returns the model.

        Args:
            x_mean: the input shift.
            x_std: the input scale (> 0).
            y_mean: the output shift.
            y_std: the output scale (> 0).

        Returns:
            The model itself, changed in place.
        """
        vals = []
        for name, v in (("x_mean", x_mean), ("x_std", x_std), ("y_mean", y_mean), ("y_std", y_std)):
            if isinstance(v, torch.Tensor) and v.numel() == 1:
                v = v.item()
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{name}: expected a finite number, got {v!r}")
            if name.endswith("std") and not v > 0:
                raise ValueError(f"{name}: expected a scale > 0, got {v!r}")
            vals.append(float(v))
        with torch.no_grad():
            for name, v in zip(NORMALIZER_BUFFERS, vals):
                getattr(self, name).fill_(v)
        return self

    @property
    def normalizers(self) -> dict[str, float]:
        """The scalar normalisers ``{"x_mean", "x_std", "y_mean", "y_std"}`` (see
        [`set_normalizers`][spacetime_nets.models.FlowModel.set_normalizers]; all four are the
        identity 0, 1, 0, 1 unless set)."""
        keys = ("x_mean", "x_std", "y_mean", "y_std")
        return {k: float(getattr(self, n)) for k, n in zip(keys, NORMALIZER_BUFFERS)}

    def _standardize(self, x: torch.Tensor) -> torch.Tensor:
        """(x - in_shift) / in_scale (exact for the identity)."""
        return (x - self.in_shift) / self.in_scale

    def _destandardize(self, z: torch.Tensor) -> torch.Tensor:
        """z * out_scale + out_shift (exact for the identity)."""
        return z * self.out_scale + self.out_shift

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a state written before the normalisers existed had none: the identity
        for name, v in zip(NORMALIZER_BUFFERS, _IDENTITY):
            if prefix + name not in state_dict:
                own = getattr(self, name)
                state_dict[prefix + name] = torch.full_like(own, v)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def T(self) -> float:
        """The horizon t_K of the schedule."""
        return self.disc.times[-1]

    @property
    def times(self) -> list[float]:
        """The times t_0 = 0, ..., t_K = T."""
        return list(self.disc.times)

    def is_homogeneous(self) -> bool:
        """The exact homogeneity rule of this form and activation (docs/concepts.md). With a
        channel normalisation only the inside form stays homogeneous (W sigma(N(x)) + b is
        linear in (W, b)); N(a z) ~ N(z) makes the outside form scale-invariant instead.

        Returns:
            Whether f(x, a u) = a f(x, u) for every a > 0.
        """
        if getattr(self, "norm_layer", None) is not None and norm_reads(self.form) >= 0:
            return False  # sigma reads an operator's output: N undoes the scaling
        return form_is_homogeneous(self.form, self.activation)

    def controls(self) -> list[StepMatrices]:
        """The per-step matrices (W, beta) of the flow with their grids' weights (and each
        step's channel normalisation N_k, where the model has one).

        Returns:
            One [`StepMatrices`][spacetime_nets.integrate.StepMatrices] per step, K in all,
                built from the kernels now (differentiable in their parameters).
        """
        return self.disc.step_matrices(
            self.kernel, self.form, self.method, self.kernel2, getattr(self, "norm_layer", None)
        )

    def _flow(self, x0: torch.Tensor, keep_states: bool, mats: list | None = None):
        mats = self.controls() if mats is None else mats
        return run_steps(
            self.disc, mats, x0, self.form, self.act, self.method, self.checkpoint, keep_states
        )

    def _trajectory(self, x0: torch.Tensor) -> Trajectory:
        mats = self.controls()  # built once: stepped with, then counted
        final, states = self._flow(x0, keep_states=True, mats=mats)
        return Trajectory(
            states=states,
            times=list(self.disc.times),
            final=final,
            stats={
                "widths": list(self.disc.widths),
                "steps": self.disc.num_steps,
                "multiply_adds": multiply_adds(
                    self.disc, self.form, self.method, x0.shape[0], mats
                ),
                "method": self.method,
            },
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """lift -> flow -> readout: ``[B, in] -> [B, out]``.

        Args:
            x: the inputs, ``[B, in]``, in the model's dtype and on its device.

        Returns:
            The outputs, ``[B, out]``.
        """
        self._check_input(x, self.input_size)
        final, _ = self._flow(self.lift(x), keep_states=False)
        return self.readout(final)

    def trajectory(self, x: torch.Tensor) -> Trajectory:
        """The states X^k ``[B, n_k]`` (``[B, c_k, n_k]`` with channels) at every time t_k,
        after the lift.

        Args:
            x: the inputs, ``[B, in]``.

        Returns:
            The [`Trajectory`][spacetime_nets.integrate.Trajectory] (states, times, final
                state, statistics).
        """
        self._check_input(x, self.input_size)
        return self._trajectory(self.lift(x))

    def rescale_horizon(self, T_new: float):
        """The scaling lemma: the same network on [0, T_new], time grid stretched by T_new / T
        and controls multiplied by T / T_new (a copy). Outputs are unchanged when the field is
        homogeneous ([`form_is_homogeneous`][spacetime_nets.fields.form_is_homogeneous]).

        Args:
            T_new: the new horizon.

        Returns:
            (FlowModel): the new model, of the same class; this one is unchanged.
        """
        T = self.T
        new = copy.deepcopy(self)
        sched = self.schedule
        scaled = GridSchedule(
            sched.times * (float(T_new) / T), sched.grids, sched.transfer_kind, sched.channels
        )
        for kern in (new.kernel, new.kernel2):
            if kern is not None:
                if not kern.continuous:
                    kern.T = T  # a nodal kernel has no time variable: it spans the model's [0, T]
                kern.rescale_horizon_(T_new)
        if getattr(new, "norm_layer", None) is not None:
            new.norm_layer.T = float(T_new)  # gamma(t), beta(t) stretched in time, not scaled
        new._rebind(scaled)
        return new

    def _rebind(self, schedule: GridSchedule) -> None:
        raise NotImplementedError

    def _check_input(self, x: torch.Tensor, n: int) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            got = f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x: expected a tensor [batch, {n}], got {got}")
        if x.shape[1] != n:
            raise ValueError(f"x: expected {n} features, got shape {tuple(x.shape)}")
        _check_dtype(x, self)
        _check_device(x, self)
        _check_finite(x)


def _check_dtype(x: torch.Tensor, model: nn.Module) -> None:
    """The input must be in the model's floating dtype (no silent casts)."""
    ref = next(model.parameters(), None)
    dtype = ref.dtype if ref is not None else torch.get_default_dtype()
    if x.dtype != dtype:
        raise ValueError(
            f"x: expected dtype {dtype} (the model's), got {x.dtype}; convert the input with "
            f"x.to({dtype}) or the model with model.to({x.dtype})"
            if x.dtype.is_floating_point
            else f"x: expected dtype {dtype} (the model's), got {x.dtype} (not a real "
            "floating dtype)"
        )


def _model_device(model: nn.Module) -> torch.device | None:
    """The device of the model's first parameter (or buffer; None when it has neither)."""
    ref = next(model.parameters(), None)
    if ref is None:
        ref = next(model.buffers(), None)
    return None if ref is None else ref.device


def _check_device(x: torch.Tensor, model: nn.Module) -> None:
    """The input must be on the model's device (no silent copies): ``x.device`` against a
    parameter's device, metadata only (no host sync, nothing is moved)."""
    device = _model_device(model)
    if device is not None and x.device != device:
        raise ValueError(
            f"x: expected a tensor on {device} (the model's device), got one on {x.device}; "
            f"move the input with x.to('{device}') or the model with model.to('{x.device}')"
        )


def _check_finite(x: torch.Tensor) -> None:
    """NaN/inf input raises a ValueError on the CPU, where reading the flag costs no device
    sync. On accelerators (and under torch.compile) nothing is checked, since that would need
    a host sync in every forward pass: a non-finite input then gives non-finite outputs, and
    ``training.fit`` stops on the first non-finite loss."""
    if x.device.type == "cpu" and not torch.compiler.is_compiling():
        # x - x is +0 at every finite entry and NaN at inf / NaN, so one subtraction and one
        # sum tell whether anything is bad (isfinite's comparisons cost several times more)
        d = x.detach()  # no autograd record of the check
        if bool(torch.sum(d - d) != 0):
            bad = ~torch.isfinite(x)
            idx = tuple(int(v) for v in bad.nonzero()[0])
            where = ", ".join(map(str, idx))
            raise ValueError(f"x: input must be finite, got {float(x[idx])} at [{where}]")
