"""Faster steps on accelerators: compiled and graph-captured models, and bf16 mixed precision.

A forward pass of a space-time net is a loop of K steps X^{k+1} = Pi_k X^k + dt_k f(W^k, X^k)
whose products are small at moderate widths: on a GPU each step then costs kernel launches and
Python dispatch rather than arithmetic. Two ways to remove that overhead, both behind
[`compile_model`][spacetime_nets.accel.compile_model]:

- ``torch.compile`` (modes ``"default"``, ``"reduce-overhead"``, ``"max-autotune"``,
  ``"max-autotune-no-cudagraphs"``): the whole lift -> K steps -> readout becomes one traced
  graph with fused kernels, forward and backward (AOTAutograd). ``"reduce-overhead"`` also
  replays it as a CUDA graph on a GPU; on the CPU it behaves as ``"default"``.
- ``"cuda-graphs"``: no compiler, the model's own kernels recorded once as a CUDA graph per
  input shape with ``torch.cuda.make_graphed_callables`` (forward and backward as two
  graphs) and replayed. On any other device the model runs eagerly
  ([`GraphedModule`][spacetime_nets.accel.GraphedModule] says why in ``fallback_reason``).

Changing batch sizes. ``torch.compile`` with ``dynamic=None`` re-traces once with a symbolic
batch size when a second shape arrives; ``dynamic=False`` compiles one graph per shape. The
``"cuda-graphs"`` path records one graph per distinct input signature (shapes, dtypes,
``.train()``/``.eval()``, grad mode, autocast state), at most ``max_graphs`` of them: a
training epoch needs two (full batches and the last, shorter one). Inputs are never padded.

Mixed precision. [`mixed_precision`][spacetime_nets.accel.mixed_precision] is ``torch.autocast``
with ``bfloat16``: matrix products run in bf16 while the parameters, the grid buffers (nodes,
quadrature weights, transfers) and the state's residual sums stay float32, and the gradients are
float32. bf16 has float32's exponent range, so no loss scaling is needed; ``"fp16"`` is refused.
"""

from __future__ import annotations

import contextlib
import importlib
import shutil
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = [
    "PRECISIONS",
    "COMPILE_MODES",
    "GRAPH_MODE",
    "check_precision",
    "check_compile_mode",
    "mixed_precision",
    "compile_unavailable",
    "compile_model",
    "GraphedModule",
    "TrainStep",
    "train_step",
]


@dataclass(frozen=True)
class _Precision:
    """One value of ``precision``: the dtype the forward pass computes its products in.

    Attributes:
        name: the value of ``precision``.
        autocast_dtype: the dtype of the eligible products under ``torch.autocast``; None: no
            autocast, everything runs in the parameters' dtype.
        needs_loss_scaling: the dtype's exponent range is too narrow for small gradients
            without a loss scale (a GradScaler); such a precision is refused, as the training
            step scales no loss.
    """

    name: str
    autocast_dtype: torch.dtype | None
    needs_loss_scaling: bool


_PRECISION_TABLE: dict[str, _Precision] = {
    p.name: p
    for p in (
        _Precision("fp32", autocast_dtype=None, needs_loss_scaling=False),
        _Precision("bf16", autocast_dtype=torch.bfloat16, needs_loss_scaling=False),
        _Precision("fp16", autocast_dtype=torch.float16, needs_loss_scaling=True),
    )
}

PRECISIONS = tuple(name for name, p in _PRECISION_TABLE.items() if not p.needs_loss_scaling)
"""The accepted values of `precision`: float32 everywhere, or bf16 products under autocast."""
COMPILE_MODES = (
    "default",
    "reduce-overhead",
    "max-autotune",
    "max-autotune-no-cudagraphs",
    "cuda-graphs",
)
"""The accepted compile modes: those of `torch.compile`, and `GRAPH_MODE` (the explicit
CUDA-graph path)."""
GRAPH_MODE = "cuda-graphs"
"""The compile mode that captures the model in CUDA graphs (`GraphedModule`) and uses no
compiler."""


# ------------------------------------------------------------------------ argument checks
def check_precision(precision: str) -> str:
    """``precision`` if it is one of ``PRECISIONS``, else a ValueError naming the choices.

    Args:
        precision: ``"fp32"`` or ``"bf16"`` (``"fp16"`` is refused with a reason).

    Returns:
        ``precision``.
    """
    _lookup_precision(precision)
    return precision


def _lookup_precision(precision: object) -> _Precision:
    """The table entry of an accepted ``precision``; the ValueErrors of ``check_precision``."""
    spec = _PRECISION_TABLE.get(precision) if isinstance(precision, str) else None
    if spec is not None and spec.needs_loss_scaling:
        raise ValueError(
            f"precision: {spec.name!r} is not supported (its narrow exponent range needs loss "
            "scaling); use 'bf16' or 'fp32'"
        )
    if spec is None:
        raise ValueError(f"precision: expected one of {', '.join(PRECISIONS)}; got {precision!r}")
    return spec


def check_compile_mode(mode: str | bool | None, name: str = "mode") -> str | None:
    """None / False (eager), True (``"default"``) or one of ``COMPILE_MODES``; the
    ValueError names the argument ``name``.

    Args:
        mode: the requested mode.
        name: the argument named in the error message.

    Returns:
        None for eager, else the mode's name (True gives ``"default"``).
    """
    if mode is None or mode is False:
        return None
    if mode is True:
        return "default"
    if not isinstance(mode, str) or mode not in COMPILE_MODES:
        raise ValueError(
            f"{name}: expected None or one of {', '.join(COMPILE_MODES)}; got {mode!r}"
        )
    return mode


def _device_of(obj: nn.Module | torch.device | str | torch.Tensor) -> torch.device:
    if isinstance(obj, torch.Tensor):
        return obj.device
    if isinstance(obj, nn.Module):
        t = next(obj.parameters(), None)
        if t is None:
            t = next(obj.buffers(), None)
        return t.device if t is not None else torch.device("cpu")
    try:
        return torch.device(obj)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device: expected a torch.device, a device string, a tensor or a module; got {obj!r}"
        ) from None


def _float_dtypes(module: nn.Module) -> set[torch.dtype]:
    return {t.dtype for t in module.parameters() if t.is_floating_point()}


# ------------------------------------------------------------------------ mixed precision
class mixed_precision(contextlib.ContextDecorator):  # noqa: N801 - used like torch.autocast
    """Run matrix products in bf16 (``precision="bf16"``) or leave everything float32.

    ``precision="bf16"`` enters ``torch.autocast(device.type, torch.bfloat16,
    cache_enabled=False)``: eligible products ``y = W x`` take bf16 operands (8 significant
    bits, unit roundoff 2^-8) and accumulate in float32 inside the kernel; the parameters, the
    grid buffers and the residual update X + dt f(X) stay float32 (the step loop keeps the state
    in float32; a float32 state plus a bf16 increment promotes to float32). The step operators
    W^k and the L2 control penalty are computed with autocast off, in float32, and rounded to
    bf16 only where an operator is applied. Use it around the forward pass and
    the loss, not around ``backward()`` (autograd replays the casts itself). Works as a
    decorator too.

    Args:
        precision: ``"fp32"`` (nothing changes) or ``"bf16"``.
        device: where the model runs: a device, a device string, a tensor or the model (its
            first parameter's device).
        model: optional; with ``"bf16"`` its floating parameters must be float32 (autocast
            leaves float64 products alone, so a float64 model would silently stay float64).

    Raises:
        ValueError: an unknown precision, a device without bf16 autocast, or a model whose
            parameters are not float32.
    """

    def __init__(
        self,
        precision: str = "fp32",
        device: nn.Module | torch.device | str | torch.Tensor = "cpu",
        model: nn.Module | None = None,
    ) -> None:
        self.precision = precision  # checked: the property looks the entry up
        self.device = _device_of(device)
        self._ctx: contextlib.AbstractContextManager | None = None
        dtype = self._spec.autocast_dtype
        if dtype is None:
            return
        name, kind = self._spec.name, self.device.type
        if not torch.amp.is_autocast_available(kind):
            raise ValueError(f"precision: {name!r} autocast is not available on device {kind!r}")
        if (
            dtype is torch.bfloat16
            and kind == "cuda"
            and torch.cuda.is_available()
            and not torch.cuda.is_bf16_supported()
        ):
            raise ValueError(f"precision: {name!r} is not supported by this CUDA device")
        if model is not None:
            dtypes = _float_dtypes(model)
            if dtypes - {torch.float32}:
                got = ", ".join(sorted(str(d) for d in dtypes))
                raise ValueError(
                    f"precision: {name!r} needs a float32 model (master weights), got {got}"
                )

    @property
    def precision(self) -> str:
        """The precision's name (one of ``PRECISIONS``); setting it checks the name.

        Returns:
            ``"fp32"`` or ``"bf16"``.
        """
        return self._spec.name

    @precision.setter
    def precision(self, value: str) -> None:
        self._spec = _lookup_precision(value)

    def __enter__(self) -> mixed_precision:
        if self._ctx is not None:
            raise RuntimeError("mixed_precision: this context is already entered (not reentrant)")
        self._ctx = _autocast(self._spec, self.device.type)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        ctx, self._ctx = self._ctx, None
        if ctx is not None:
            ctx.__exit__(*exc)

    @property
    def enabled(self) -> bool:
        """True when products run in a narrower dtype under autocast (bf16)."""
        return self._spec.autocast_dtype is not None

    def __repr__(self) -> str:
        return f"mixed_precision({self.precision!r}, device={str(self.device)!r})"


# ------------------------------------------------------------------------ torch.compile
def _no_cxx_compiler() -> str | None:
    """Why inductor cannot generate CPU code here (no C/C++ compiler on PATH), or None."""
    if any(shutil.which(c) for c in ("g++", "c++", "clang++", "cc", "gcc")):
        return None
    return "no C/C++ compiler on PATH (inductor needs one for CPU code)"


def _no_triton() -> str | None:
    """Why inductor cannot generate GPU code here (Triton not importable), or None."""
    try:
        importlib.import_module("triton")
    except ImportError:
        return "no Triton installation (inductor needs it on a GPU)"
    return None


_INDUCTOR_TOOLCHAINS: dict[str, Callable[[], str | None]] = {
    "cpu": _no_cxx_compiler,
    "cuda": _no_triton,
}
"""Per device type, the check of what inductor needs to generate code for it: it returns
the missing piece in one line, or None. Device types not listed are not checked."""


def compile_unavailable(backend: str | None = "inductor", device: Any = "cpu") -> str | None:
    """Why ``torch.compile`` with ``backend`` cannot run on ``device`` here, or None.

    Checks what is known before compiling: torch.compile and dynamo present, a CUDA device for
    ``cuda``, a C/C++ compiler on PATH for inductor on the CPU, Triton for inductor on a GPU.

    Args:
        backend: the ``torch.compile`` backend (None: inductor).
        device: where the model runs: a device, a device string, a tensor or a module.

    Returns:
        The reason in one line, or None when nothing known stands in the way.
    """
    backend = backend or "inductor"
    dev = _device_of(device)
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile"
    try:
        importlib.import_module("torch._dynamo")
    except (ImportError, RuntimeError) as e:  # pragma: no cover - broken install, new Python
        return f"torch._dynamo unavailable: {type(e).__name__}: {e}"
    if dev.type == "cuda" and not torch.cuda.is_available():
        return f"no CUDA device (torch {torch.__version__})"
    toolchain = _INDUCTOR_TOOLCHAINS.get(dev.type) if backend == "inductor" else None
    return None if toolchain is None else toolchain()


def compile_model(
    model: nn.Module,
    mode: str | bool | None = "default",
    *,
    dynamic: bool | None = None,
    backend: str | None = None,
    fullgraph: bool = False,
    max_graphs: int | None = None,
    strict: bool = False,
) -> nn.Module:
    """A faster drop-in for ``model`` that shares its parameters (build optimisers from either).

    ``mode=None`` returns ``model`` itself. A ``torch.compile`` mode returns the compiled
    module: lift, all K steps and the readout in one graph, forward and backward.
    ``"cuda-graphs"`` returns a [`GraphedModule`][spacetime_nets.accel.GraphedModule] (CUDA graphs
    without a compiler, eager elsewhere). ``.train()`` / ``.eval()`` reach the wrapped model;
    checkpointed models (``checkpoint=m``) and models with channels are supported by both paths.

    Args:
        model: the module to accelerate.
        mode: None / False (eager), True (``"default"``) or one of ``COMPILE_MODES``.
        dynamic: ``torch.compile``'s shape policy: None (re-trace once with a symbolic batch
            size on the second shape), True (symbolic from the start), False (one graph per
            shape).
        backend: ``torch.compile`` backend (default: inductor); ``"aot_eager"`` traces without
            generating code (a check of the capture). Not allowed with ``"cuda-graphs"``.
        fullgraph: make a graph break an error instead of a split.
        max_graphs: ``"cuda-graphs"`` only: the most input signatures kept recorded
            (default 8).
        strict: when torch.compile cannot run here
            ([`compile_unavailable`][spacetime_nets.accel.compile_unavailable]), raise a
            RuntimeError instead of warning and returning ``model`` unchanged.

    Returns:
        ``model``, a compiled module, or a [`GraphedModule`][spacetime_nets.accel.GraphedModule].

    Raises:
        ValueError: a bad argument (model not a Module, unknown mode, ...).
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    mode = check_compile_mode(mode)
    if dynamic is not None and not isinstance(dynamic, bool):
        raise ValueError(f"dynamic: expected None, True or False; got {dynamic!r}")
    if backend is not None and not (isinstance(backend, str) or callable(backend)):
        raise ValueError(f"backend: expected a backend name or callable, got {backend!r}")
    if mode is None:
        return model
    if mode == GRAPH_MODE:
        for name, value, unset in (
            ("backend", backend, None),
            ("dynamic", dynamic, None),
            ("fullgraph", fullgraph, False),
        ):
            if value != unset:
                raise ValueError(f"{name}: the 'cuda-graphs' mode uses no compiler; got {value!r}")
        return GraphedModule(model, max_graphs=8 if max_graphs is None else max_graphs)
    if max_graphs is not None:
        raise ValueError(f"max_graphs: only for mode='cuda-graphs', got mode={mode!r}")
    why = compile_unavailable(backend if isinstance(backend, str) else None, _device_of(model))
    if why is not None:
        if strict:
            raise RuntimeError(f"compile_model: torch.compile cannot run here: {why}")
        warnings.warn(
            f"compile_model: running eagerly, torch.compile cannot run here: {why}",
            RuntimeWarning,
            stacklevel=2,
        )
        return model
    torch_mode = None if mode == "default" else mode
    return torch.compile(
        model, mode=torch_mode, dynamic=dynamic, backend=backend or "inductor", fullgraph=fullgraph
    )


# ------------------------------------------------------------------------ CUDA graphs
class _Entry(nn.Module):
    """One recorded signature: ``make_graphed_callables`` replaces this wrapper's forward (not
    the model's), and the model's parameters are the graph's extra inputs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args: torch.Tensor) -> Any:
        return self.model(*args)


def _autocast_key(device_type: str) -> tuple:
    try:
        if torch.is_autocast_enabled(device_type):
            return (True, torch.get_autocast_dtype(device_type))
    except (AttributeError, TypeError, RuntimeError):  # pragma: no cover - old torch
        pass
    return (False, None)


class GraphedModule(nn.Module):
    """``model`` replayed from CUDA graphs, one recording per input signature.

    On a CUDA device the first call with a new signature (argument shapes, dtypes and
    ``requires_grad``, ``.train()``/``.eval()``, grad and inference mode, autocast state)
    records the model's forward and, with grad enabled, its backward through
    ``torch.cuda.make_graphed_callables`` (a few warm-up passes on a side stream first);
    later calls copy the arguments into the recorded inputs and replay: one launch for the
    whole lift -> K steps -> readout, one for its backward. The outputs are copied out of the
    graph's static buffers, so a result survives the next call. At most ``max_graphs``
    signatures are kept (the least recently used is dropped). The parameters are the graph's
    inputs by address: an optimiser may update them in place, and ``.to(...)`` through the
    wrapper records again, but replacing a parameter tensor of the wrapped model itself
    (``model.load_state_dict(..., assign=True)``, ``model.to(...)``) needs
    [`reset`][spacetime_nets.accel.GraphedModule.reset].

    Elsewhere (the CPU, or CUDA tensors without a CUDA runtime) every call runs ``model``
    eagerly, with the same results: ``captured`` is False and ``fallback_reason`` says why.
    A model whose forward cannot be recorded (CUDA refuses an operation while capturing, e.g.
    a copy from host memory) runs eagerly for that signature, with a RuntimeWarning and the
    reason in ``fallback_reason``; any other error propagates. Positional tensor arguments
    only (keyword arguments raise a ValueError). The wrapper's ``state_dict`` keys carry a
    ``model.`` prefix: save ``model.state_dict()``.

    Args:
        model: the module to replay (its parameters are shared, not copied).
        max_graphs: the most input signatures kept recorded (>= 1).
    """

    def __init__(self, model: nn.Module, max_graphs: int = 8) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise ValueError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        if isinstance(max_graphs, bool) or not isinstance(max_graphs, int) or max_graphs < 1:
            raise ValueError(f"max_graphs: expected a positive int, got {max_graphs!r}")
        self.model = model
        self.max_graphs = max_graphs
        self._graphs: OrderedDict[tuple, _Entry | None] = OrderedDict()  # None: eager
        self.fallback_reason: str | None = None

    @property
    def captured(self) -> bool:
        """True once a call has been recorded as a CUDA graph."""
        return self.num_graphs > 0

    @property
    def num_graphs(self) -> int:
        """The signatures recorded now (not counting those that run eagerly)."""
        return sum(e is not None for e in self._graphs.values())

    def reset(self) -> None:
        """Drop every recording (after replacing parameters or changing the model)."""
        self._graphs.clear()

    def _apply(self, fn, recurse=True):
        # .to() / .double() / .cuda() through the wrapper give the parameters new addresses:
        # a recording would replay the old ones, so every signature is recorded again
        self.reset()
        return super()._apply(fn, recurse)

    def _why_eager(self, args: tuple) -> str | None:
        dev = args[0].device if args else _device_of(self.model)
        if dev.type != "cuda":
            return f"CUDA graphs need a CUDA device; the inputs are on {dev.type!r}"
        if not torch.cuda.is_available():  # pragma: no cover - CUDA tensors imply a runtime
            return "no CUDA runtime"
        return None

    def forward(self, *args: torch.Tensor, **kwargs: Any) -> Any:
        """``model(*args)``, replayed from the recording of this signature on a CUDA device
        (recorded first when new), run eagerly elsewhere.

        Args:
            *args: the model's positional tensor arguments.
            **kwargs: refused (a ValueError): a recording takes positional tensors only.

        Returns:
            The model's output (tensors copied out of the graph's buffers).
        """
        if kwargs:
            raise ValueError(
                f"GraphedModule takes positional tensors only; got keywords {sorted(kwargs)}"
            )
        bad = [type(a).__name__ for a in args if not isinstance(a, torch.Tensor)]
        if bad:
            raise ValueError(f"GraphedModule takes positional tensors only; got {', '.join(bad)}")
        why = self._why_eager(args)
        if why is not None:
            self.fallback_reason = why
            return self.model(*args)
        dev = args[0].device
        key = (
            self.model.training,
            torch.is_grad_enabled(),
            torch.is_inference_mode_enabled(),
            _autocast_key(dev.type),
            tuple((tuple(a.shape), a.dtype, a.requires_grad, str(a.device)) for a in args),
        )
        if key in self._graphs:
            entry = self._graphs[key]
            self._graphs.move_to_end(key)
        else:
            entry = self._record(args)
            self._graphs[key] = entry
            while len(self._graphs) > self.max_graphs:
                self._graphs.popitem(last=False)
        if entry is None:
            return self.model(*args)
        out = entry(*args)
        # static output buffers are overwritten by the next replay: hand out copies
        return torch.utils._pytree.tree_map(
            lambda t: t.clone() if isinstance(t, torch.Tensor) else t, out
        )

    def _record(self, args: tuple) -> _Entry | None:
        entry = _Entry(self.model)
        entry.train(self.model.training)
        samples = tuple(a.detach().clone().requires_grad_(a.requires_grad) for a in args)
        try:
            # unused parameters (a frozen piece, a kernel the schedule never reaches) get no
            # gradient instead of failing the recording
            return torch.cuda.make_graphed_callables(entry, samples, allow_unused_input=True)
        except RuntimeError as exc:
            if "captur" not in str(exc).lower():
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self.fallback_reason = f"the forward could not be recorded: {first}"
            warnings.warn(
                f"GraphedModule: running eagerly for input shapes "
                f"{[tuple(a.shape) for a in args]}: {self.fallback_reason}",
                RuntimeWarning,
                stacklevel=3,
            )
            return None

    def extra_repr(self) -> str:
        """The line printed in the module's repr.

        Returns:
            ``max_graphs=..., recorded=...`` (recorded: the signatures seen, eager ones too).
        """
        return f"max_graphs={self.max_graphs}, recorded={len(self._graphs)}"


# ------------------------------------------------------------------------ training step
def _autocast(precision: _Precision, device_type: str) -> contextlib.AbstractContextManager:
    """The context of ``mixed_precision`` as plain torch objects (traceable by dynamo)."""
    if precision.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type, precision.autocast_dtype, cache_enabled=False)


class _LossOf(nn.Module):
    """``loss_fn(model(x), y)``: the forward under the precision of the step (on the device
    of ``x``), the loss in the model's dtype."""

    def __init__(self, model: nn.Module, loss_fn: Callable, precision: _Precision) -> None:
        super().__init__()
        self.model, self.loss_fn, self.precision = model, loss_fn, precision

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with _autocast(self.precision, x.device.type):
            out = self.model(x)
        ref = next(self.model.parameters(), None)
        if ref is not None and out.is_floating_point() and out.dtype != ref.dtype:
            out = out.to(ref.dtype)  # the loss in the master dtype
        return self.loss_fn(out, y)


class TrainStep:
    """One optimiser step ``loss = loss_fn(model(x), y); loss.backward(); optimizer.step()``,
    compiled or graph-captured per [`compile_model`][spacetime_nets.accel.compile_model], under
    [`mixed_precision`][spacetime_nets.accel.mixed_precision].

    Calling it with ``(x, y)`` returns the loss as a detached 0-d tensor (no host sync). The
    forward pass and the loss run under the precision context and, for a compile mode, as one
    traced graph with its backward; the optimiser step stays eager, so learning-rate changes
    between steps take effect. See [`train_step`][spacetime_nets.accel.train_step].

    Args:
        model: the model (its parameters are the optimiser's).
        loss_fn: ``loss_fn(outputs, targets) -> 0-d tensor``, computed in the model's dtype.
        optimizer: built over ``model.parameters()``.
        compile: None (eager) or a mode of [`compile_model`][spacetime_nets.accel.compile_model].
        precision: ``"fp32"`` or ``"bf16"``
            ([`mixed_precision`][spacetime_nets.accel.mixed_precision] around forward and loss).
        dynamic: passed to [`compile_model`][spacetime_nets.accel.compile_model].
        backend: passed to [`compile_model`][spacetime_nets.accel.compile_model].
        grad_clip: clip the global gradient norm to this value (> 0) before the update; None
            for no clipping.

    Raises:
        ValueError: for a bad argument, or a precision the model's device or dtype cannot
            take.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        optimizer: torch.optim.Optimizer,
        *,
        compile: str | bool | None = None,
        precision: str = "fp32",
        dynamic: bool | None = None,
        backend: str | None = None,
        grad_clip: float | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise ValueError(f"loss_fn: expected a callable, got {type(loss_fn).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError(
                f"optimizer: expected a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        if grad_clip is not None and not (
            isinstance(grad_clip, (int, float))
            and not isinstance(grad_clip, bool)
            and grad_clip > 0
        ):
            raise ValueError(f"grad_clip: expected None or a positive number, got {grad_clip!r}")
        self.model, self.optimizer, self.grad_clip = model, optimizer, grad_clip
        mixed_precision(precision, model, model)  # checks precision, device and dtype now
        self.precision = precision
        self.mode = check_compile_mode(compile)
        self.loss_module = _LossOf(model, loss_fn, _lookup_precision(precision))
        self.runner = compile_model(self.loss_module, self.mode, dynamic=dynamic, backend=backend)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.runner(x, y)
        loss.backward()
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        return loss.detach()


def train_step(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    *,
    compile: str | bool | None = None,
    precision: str = "fp32",
    dynamic: bool | None = None,
    backend: str | None = None,
    grad_clip: float | None = None,
) -> TrainStep:
    """A callable ``step(x, y) -> loss`` that trains ``model`` by one optimiser step.

    Args:
        model: the model (its parameters are the optimiser's).
        loss_fn: ``loss_fn(outputs, targets) -> 0-d tensor``, computed in the model's dtype.
        optimizer: built over ``model.parameters()``.
        compile: None (eager) or a mode of [`compile_model`][spacetime_nets.accel.compile_model]
            (``"reduce-overhead"``, ``"cuda-graphs"``, ...): forward, loss and backward compiled or
            captured.
        precision: ``"fp32"`` or ``"bf16"``
            ([`mixed_precision`][spacetime_nets.accel.mixed_precision] around forward and loss).
        dynamic: passed to [`compile_model`][spacetime_nets.accel.compile_model].
        backend: passed to [`compile_model`][spacetime_nets.accel.compile_model].
        grad_clip: clip the global gradient norm to this value before the update.

    Returns:
        A [`TrainStep`][spacetime_nets.accel.TrainStep].

    Example:
        >>> step = train_step(model, torch.nn.functional.mse_loss, opt,
        ...                   compile="reduce-overhead", precision="bf16")  # doctest: +SKIP
        >>> for x, y in loader:                                             # doctest: +SKIP
        ...     loss = step(x, y)
    """
    return TrainStep(
        model,
        loss_fn,
        optimizer,
        compile=compile,
        precision=precision,
        dynamic=dynamic,
        backend=backend,
        grad_clip=grad_clip,
    )
