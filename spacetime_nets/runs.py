"""A training run described once: [`RunConfig`][spacetime_nets.runs.RunConfig] is the content
of a run folder's ``model.json`` (model construction, data set, schedule, training settings),
with [`build_model`][spacetime_nets.runs.build_model] to construct its model and
[`load_run`][spacetime_nets.runs.load_run] to read a run folder back with the trained weights.

A run folder written by ``spacetime-nets train`` (or by a script, see
docs/how-to/distributed.md) holds ``model.json``, ``last.pt`` and ``history.{json,csv}``::

    config, data = RunConfig.for_dataset("circles", schedule, ModelOptions(kernel="basis"))
    config.write("runs/circles")              # model.json
    model = build_model(config)               # an untrained SpaceTimeNet
    training.fit(model, data.train, data.val, ..., out_dir="runs/circles")
    run = load_run("runs/circles")            # run.model, run.config, run.checkpoint

The file is strict: an unknown key, a dtype other than float32/float64 or a name outside the
library's lists is refused with a ValueError naming the file.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grids import RULES as _RULES
from grids import TRANSFER_KINDS
from grids.schedule import SCHEDULE_BUILDERS
from grids.schedule import SCHEDULES as _SCHEDULES

from . import kernels as _kernels
from . import models as _models
from .models.options import _check_applicable
from .validation import check_bool, check_choice, check_int, check_real, check_seed

if TYPE_CHECKING:  # pragma: no cover
    from grids import GridSchedule

    from .models import SpaceTimeNet

__all__ = [
    "BASES",
    "DTYPES",
    "KERNELS",
    "LIFTS",
    "MAX_MODEL_BYTES",
    "MODEL_FORMAT",
    "MODEL_VERSION",
    "READOUTS",
    "RULES",
    "SCHEDULES",
    "TRANSFERS",
    "ModelOptions",
    "Run",
    "RunConfig",
    "build_model",
    "load_dataset",
    "load_run",
    "make_schedule",
    "parse_widths",
]

MODEL_FORMAT = "spacetime-nets/model"
"""The format tag of a ``model.json`` file (its ``"format"`` entry); another tag is refused."""
MODEL_VERSION = 2
"""The newest ``model.json`` version this library writes and reads (2: the model options
default to `SpaceTimeNet`'s own; version 1 documents read with the defaults they were written
with, ``_V1_DEFAULTS``)."""
SCHEDULES = _SCHEDULES
"""The schedule shapes by name (a live view of ``grids.schedule.SCHEDULE_BUILDERS``)."""
# the library's own lists (one home each), re-exported for the command line's choices
KERNELS = _models.KERNELS
"""The kernel names of a run's model (`spacetime_nets.models.KERNELS`)."""
READOUTS = _models.READOUTS
"""The readout names of a run's model (`spacetime_nets.models.READOUTS`)."""
LIFTS = _models.LIFTS
"""The lift names of a run's model (`spacetime_nets.models.LIFTS`)."""
BASES = _kernels.BASES
"""The basis kernel's function families (`spacetime_nets.kernels.BASES`)."""
TRANSFERS = TRANSFER_KINDS
"""The transfer kinds of a run's schedule (`grids.transfer.TRANSFER_KINDS`)."""
RULES = _RULES
"""The quadrature rule names of a run's schedule: a live view of the keys of
`grids.quadrature.QUADRATURE_RULES`."""
DTYPES = ("float32", "float64")
"""The floating dtypes a run may have (``RunConfig.dtype``)."""
MAX_MODEL_BYTES = 4 << 30
"""The largest model [`build_model`][spacetime_nets.runs.build_model] allocates (its nodal
weights, estimated from the widths before anything is allocated); raise it as a module
attribute for bigger models."""
_KEYS = (
    "format",
    "version",
    "class",
    "in_features",
    "out_features",
    "task",
    "dtype",
    "kwargs",
    "dataset",
    "schedule_args",
    "schedule",
    "training",
    "normalizers",
)
_NORMALIZER_KEYS = ("x_mean", "x_std", "y_mean", "y_std")
TASKS = ("classification", "regression")
_DATASET_KEYS = ("name", "seed", "kwargs")
_SCHEDULE_ARG_KEYS = ("spec", "widths", "steps", "T", "rule", "transfer", "dim")
_TRAINING_KEYS = (
    "epochs",
    "batch_size",
    "optimizer",
    "lr",
    "lr_schedule",
    "loss",
    "p",
    "weight_decay",
    "normalize",
    "lam",
    "turnpike",
    "seed",
    "resolutions",
)
#: the training settings that define the objective: a resume may not change them (absent in
#: an older model.json: the value given here, the one the run had)
_OBJECTIVE_DEFAULTS = {"loss": None, "p": None, "lam": 0.0, "turnpike": None, "weight_decay": 0.0}
KERNEL_OPTIONS = _models.KERNEL_OPTIONS
"""The construction options that only some kernels read, `{option: kernel names}`
(`spacetime_nets.models.KERNEL_OPTIONS`; None in a run: not given, the kernel's default)."""
#: SpaceTimeNet's keyword defaults: the one source of ModelOptions' (and so the CLI's) defaults
_MODEL_DEFAULTS = {
    name: p.default
    for name, p in inspect.signature(_models.SpaceTimeNet.__init__).parameters.items()
    if p.default is not inspect.Parameter.empty
}
#: the option defaults of a version-1 model.json (read for keys such a document leaves out)
_V1_DEFAULTS = {"form": "inside", "activation": "tanh", "lift": "linear"}
#: kernel options a model.json once held for every kernel, with these values
_UNREAD_DEFAULTS = {"basis": "legendre", "modes": 8}


@dataclass
class ModelOptions:
    """The construction arguments of [`SpaceTimeNet`][spacetime_nets.models.SpaceTimeNet] besides
    its schedule and feature counts (see its docstring); stored as ``kwargs`` in model.json.
    A new constructor option is one new field here. The defaults are `SpaceTimeNet`'s own
    (read from its signature: ``inside``, ``tanh``, the ``cells`` lift, ``euler``, the
    ``quadrature`` readout), except ``seed``: 0, so that a run is reproducible.

    None means "not given" (the model's default): ``modes`` (basis 8, conv 3, spectral 8),
    ``basis`` (``legendre`` for the basis kernel), ``radius`` (conv: 0.1), ``pointwise``.
    An option the chosen kernel does not read (``KERNEL_OPTIONS``: ``radius`` with a basis
    kernel, ``modes`` with a nodal one ...) or ``in_shape`` without the ``cells`` lift is
    refused by [`check`][spacetime_nets.runs.ModelOptions.check], naming the option and the
    kernel; only the options that apply reach [`SpaceTimeNet`][spacetime_nets.models.SpaceTimeNet].

    Attributes:
        kernel: the kernel, a name of ``KERNELS`` (``nodal``, ``basis``, ``neural``,
            ``conv``, ``spectral``, or a kind added with
            [`register_kernel_kind`][spacetime_nets.models.register_kernel_kind]).
        form: ``outside``, ``inside`` or ``bottleneck``.
        activation: a name of ``spacetime_nets.fields.ACTIVATIONS``.
        lift: ``cells``, ``linear`` or ``identity``.
        method: a registered stepper (``euler`` ...).
        in_shape: ``lift="cells"`` only: cells per axis (None: the model's default).
        modes: basis, neural, conv and spectral kernels only: functions or frequencies per
            axis (None: the kernel's default).
        basis: basis kernel only: ``legendre`` or ``fourier`` (None: ``legendre``).
        init_scale: the scale of the initial controls (finite, >= 0).
        seed: the seed of the initialisation.
        readout: ``quadrature``, ``mean``, ``pool``, ``function`` or another name of
            ``READOUTS`` (added with
            [`register_readout`][spacetime_nets.models.register_readout]).
        channels: an int or ``[c_0, ..., c_K]`` channels per step (None: a scalar model).
        in_channels: input features per node (channel models).
        radius: conv kernel only: the physical radius (a number, per axis, or per step).
        radius_spacings: conv kernel only: the radius in grid spacings instead.
        pointwise: conv and spectral kernels only: add the pointwise channel mix (None: the
            kernel's default).
        norm: None, ``instance`` or ``group`` channel normalisation.
        norm_groups: ``norm="group"`` only: the number of groups.
        head_hidden: the mean or pool readout only: the hidden width of its MLP head.
        coordinates: channel models with ``lift="identity"``: the lift also sees the
            coordinates.
    """

    kernel: str = _MODEL_DEFAULTS["kernel"]
    form: str = _MODEL_DEFAULTS["form"]
    activation: str = _MODEL_DEFAULTS["activation"]
    lift: str = _MODEL_DEFAULTS["lift"]
    method: str = _MODEL_DEFAULTS["method"]
    in_shape: tuple[int, ...] | None = None
    modes: int | None = None
    basis: str | None = None
    init_scale: float = _MODEL_DEFAULTS["init_scale"]
    seed: int = 0
    readout: str = _MODEL_DEFAULTS["readout"]
    channels: int | list[int] | None = None
    in_channels: int = _MODEL_DEFAULTS["in_channels"]
    radius: float | list[float] | None = None
    radius_spacings: float | None = None
    pointwise: bool | None = None
    norm: str | None = None
    norm_groups: int | None = None
    head_hidden: int | None = None
    coordinates: bool = _MODEL_DEFAULTS["coordinates"]

    def check(self) -> ModelOptions:
        """Refuse names outside the library's lists, non-finite or negative numbers and options
        the chosen kernel or lift does not read; converts NumPy scalars to Python numbers and
        fills ``basis`` (``legendre``) for a basis kernel.

        Returns:
            This object, checked and normalised in place.

        Raises:
            ValueError: naming the option, what was expected and what came.
        """
        from .fields import ACTIVATIONS, FORMS
        from .integrate import METHODS

        check_choice("kernel", self.kernel, KERNELS)
        check_choice("form", self.form, FORMS)
        check_choice("activation", self.activation, tuple(ACTIVATIONS))
        check_choice("lift", self.lift, LIFTS)
        check_choice("method", self.method, METHODS)
        # options of another kernel or lift: the model's own refusal, before it is built
        given = {name: getattr(self, name) for name in KERNEL_OPTIONS}
        given.update(in_shape=self.in_shape, hidden_width=None, kernel2=None)
        _check_applicable(self.kernel, None, self.form, self.lift, given)
        if self.basis is not None:
            check_choice("basis", self.basis, BASES)
        elif self.kernel in KERNEL_OPTIONS["basis"]:  # a kind that reads basis: its default
            self.basis = "legendre"
        if self.modes is not None:
            self.modes = check_int("modes", self.modes, 1)
        self.seed = check_seed("seed", self.seed)
        check_choice("readout", self.readout, READOUTS)
        self.in_channels = check_int("in_channels", self.in_channels, 1)
        if isinstance(self.channels, (list, tuple)):
            if not self.channels:
                raise ValueError("channels: expected an int >= 1 or a non-empty list, got []")
            self.channels = [check_int("channels", c, 1) for c in self.channels]
        elif self.channels is not None:
            self.channels = check_int("channels", self.channels, 1)
        if _models.KERNEL_REGISTRY[self.kernel].needs_channels and self.channels is None:
            raise ValueError(f"channels: a {self.kernel} kernel needs --channels")
        if self.radius is not None:
            self.radius = _check_radius(self.radius)
        if self.radius_spacings is not None:
            self.radius_spacings = check_real("radius_spacings", self.radius_spacings, True)
        if self.norm is not None:
            from .fields import NORMS

            check_choice("norm", self.norm, NORMS)
        if self.norm_groups is not None:
            self.norm_groups = check_int("norm_groups", self.norm_groups, 1)
        if self.head_hidden is not None:
            self.head_hidden = check_int("head_hidden", self.head_hidden, 1)
        self.coordinates = check_bool("coordinates", self.coordinates)
        if self.pointwise is not None:
            self.pointwise = check_bool("pointwise", self.pointwise)
        self.init_scale = check_real("init_scale", self.init_scale)
        if self.in_shape is not None:
            if isinstance(self.in_shape, (str, bytes)) or not isinstance(
                self.in_shape, (list, tuple)
            ):
                raise ValueError(f"in_shape: expected a list of ints >= 1, got {self.in_shape!r}")
            self.in_shape = tuple(check_int("in_shape", v, 1) for v in self.in_shape)
        return self

    def model_kwargs(self) -> dict:
        """The keyword arguments of [`SpaceTimeNet`][spacetime_nets.models.SpaceTimeNet]: the
        options that were given (None, "not given", is left out, so the model's own default holds).

        Returns:
            A new dict, field name -> value, without the None fields.
        """
        kwargs = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        if "in_shape" in kwargs:
            kwargs["in_shape"] = tuple(kwargs["in_shape"])
        return kwargs


def _check_radius(value: Any) -> float | list:
    """A conv radius: a positive finite number, a per-axis list of them, or a list with one
    of those per step."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError("radius: expected a positive number or a non-empty list, got []")
        out: list = []
        for r in value:
            if isinstance(r, (list, tuple)):
                if not r:
                    raise ValueError(f"radius: expected positive numbers, got {value!r:.80}")
                out.append([check_real("radius", v, positive=True) for v in r])
            else:
                out.append(check_real("radius", r, positive=True))
        return out
    return check_real("radius", value, positive=True)


@dataclass
class RunConfig:
    """Everything needed to rebuild a run's model and data (the ``model.json`` of a run).

    Attributes:
        in_features: inputs per sample.
        out_features: model outputs ``m`` per sample.
        schedule: the grid schedule as its JSON document (``GridSchedule.to_json``).
        model: the construction options.
        task: ``classification`` or ``regression``.
        dtype: ``float32`` or ``float64``.
        dataset: ``{"name", "seed", "kwargs"}`` of ``datasets.load`` (empty: not a bundled set).
        schedule_args: how the schedule was asked for (builder, widths, steps, T, rule,
            transfer, dim), used to build another discretisation for ``evaluate``.
        training: the settings of the training run (epochs, batch size, optimiser, lr ...).
        normalizers: the model's scalar normalisers ``{"x_mean", "x_std", "y_mean",
            "y_std"}`` (``SpaceTimeNet.set_normalizers``; written by ``train`` when it
            standardised the data), or None (the identity). The checkpoint holds the same
            values; [`load_run`][spacetime_nets.runs.load_run] refuses a pair that disagrees.
    """

    in_features: int
    out_features: int
    schedule: dict
    model: ModelOptions = field(default_factory=ModelOptions)
    task: str = "classification"
    dtype: str = "float32"
    dataset: dict = field(default_factory=dict)
    schedule_args: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    normalizers: dict | None = None

    # ------------------------------------------------------------------------ model.json

    def to_dict(self) -> dict:
        """The model.json document.

        Returns:
            A JSON-ready dict with the format tag, the version, the class, the fields and
                ``kwargs`` (the model options; ``normalizers`` only when set).
        """
        kwargs = dataclasses.asdict(self.model)
        if kwargs["in_shape"] is not None:
            kwargs["in_shape"] = list(kwargs["in_shape"])
        return {
            "format": MODEL_FORMAT,
            "version": MODEL_VERSION,
            "class": "SpaceTimeNet",
            "in_features": self.in_features,
            "out_features": self.out_features,
            "task": self.task,
            "dtype": self.dtype,
            "kwargs": kwargs,
            "dataset": dict(self.dataset),
            "schedule_args": dict(self.schedule_args),
            "schedule": self.schedule,
            "training": dict(self.training),
            **({"normalizers": dict(self.normalizers)} if self.normalizers is not None else {}),
        }

    @classmethod
    def from_dict(cls, doc: Any, source: str = "model.json") -> RunConfig:
        """Read a model.json document; a ValueError naming ``source`` when it is not one.

        Args:
            doc: the parsed JSON document (a dict).
            source: the name of the file it came from, for the error messages.

        Returns:
            The checked [`RunConfig`][spacetime_nets.runs.RunConfig].

        Raises:
            ValueError: another format or a newer version, an unknown key or option, or a
                value outside the library's lists.
        """
        try:
            if not isinstance(doc, dict):
                raise ValueError(f"expected a JSON object, found {type(doc).__name__}")
            if doc.get("format") != MODEL_FORMAT:
                raise ValueError(f"format tag {doc.get('format')!r:.60}")
            version = doc.get("version")
            if isinstance(version, bool) or not isinstance(version, int) or version < 1:
                raise ValueError(f"version: expected an int >= 1, got {version!r:.20}")
            if version > MODEL_VERSION:
                raise ValueError(f"version {version!r:.20} is not supported")
            if doc.get("class") != "SpaceTimeNet":
                raise ValueError(f"unknown model class {doc.get('class')!r:.60}")
            unknown = sorted(set(doc) - set(_KEYS))
            if unknown:
                raise ValueError(f"unknown keys {', '.join(map(repr, unknown))}")
            kwargs = doc.get("kwargs")
            if not isinstance(kwargs, dict):
                raise ValueError("kwargs must be an object")
            names = {f.name for f in dataclasses.fields(ModelOptions)}
            extra = sorted(set(kwargs) - names)
            if extra:
                raise ValueError(f"unknown model options {', '.join(map(repr, extra))}")
            kwargs = dict(kwargs)
            if version == 1:  # the option defaults of that version, for keys left out
                kwargs = {**_V1_DEFAULTS, **kwargs}
            # written before unread options were refused: the defaults then, dropped where
            # the kernel does not read them
            kernel = kwargs.get("kernel", _MODEL_DEFAULTS["kernel"])
            for option, written in _UNREAD_DEFAULTS.items():
                if kwargs.get(option) == written and kernel not in KERNEL_OPTIONS[option]:
                    kwargs[option] = None
            options = _checked_options(kwargs)
            for key in ("dataset", "schedule_args", "training", "schedule"):
                if not isinstance(doc.get(key, {}), dict):
                    raise ValueError(f"{key} must be an object")
            if "schedule" not in doc:
                raise ValueError("no schedule")
            _check_schedule_doc(doc["schedule"])
            config = cls(
                in_features=check_int("in_features", doc.get("in_features"), 1),
                out_features=check_int("out_features", doc.get("out_features"), 1),
                schedule=doc["schedule"],
                model=options,
                task=check_choice("task", doc.get("task", "classification"), TASKS),
                dtype=check_choice("dtype", doc.get("dtype", "float32"), DTYPES),
                dataset=_check_dataset(doc.get("dataset") or {}),
                schedule_args=_check_schedule_args(doc.get("schedule_args") or {}),
                training=_check_training(doc.get("training") or {}),
                normalizers=_check_normalizers(doc.get("normalizers")),
            )
        except (ValueError, TypeError) as exc:
            text = " ".join(str(exc).split())
            raise ValueError(f"{source}: not a usable model description ({text})") from None
        return config

    def write(self, folder: str | os.PathLike) -> Path:
        """Write ``folder/model.json`` atomically; returns its path.

        Args:
            folder: the run folder (created when missing).

        Returns:
            The path of ``model.json``.
        """
        from .training._io import atomic_write_text

        text = json.dumps(self.to_dict(), indent=1, default=_plain)
        return atomic_write_text(Path(folder) / "model.json", text)

    @classmethod
    def read(cls, folder: str | os.PathLike) -> RunConfig:
        """Read ``folder/model.json`` (FileNotFoundError when there is none).

        Args:
            folder: the run folder.

        Returns:
            The checked [`RunConfig`][spacetime_nets.runs.RunConfig].

        Raises:
            FileNotFoundError: the folder holds no ``model.json``.
            ValueError: malformed JSON or not a usable model description.
        """
        path = Path(folder) / "model.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: is {folder} a folder written by 'train'?")
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: malformed JSON ({' '.join(str(exc).split())})") from None
        return cls.from_dict(doc, str(path))

    # ------------------------------------------------------------------------ comparisons

    def resume_conflicts(self, new: RunConfig) -> list[str]:
        """What differs between this (stored) run and ``new`` and may not change on resume:
        the model (every construction option but ``init_scale``), the features, dtype,
        schedule, data set, optimiser and the scales of ``--multires`` (``resolutions``,
        absent = None = off), the objective (``loss``, ``p``, ``lam``, ``turnpike``,
        ``weight_decay``) and ``normalize``. Each item reads ``"--option old -> new"``.

        Args:
            new: the description of the run that would resume this one.

        Returns:
            One line per difference (empty: the resume may go on).
        """
        out = []
        a, b = dataclasses.asdict(self.model), dataclasses.asdict(new.model)
        for k in a:
            if k != "init_scale" and a[k] != b[k]:
                out.append(f"--{k.replace('_', '-')} {a[k]} -> {b[k]}")
        if self.dtype != new.dtype:
            out.append(f"--dtype {self.dtype} -> {new.dtype}")
        if self.dataset != new.dataset:
            out.append(
                f"--dataset/--samples/--seed {_short(self.dataset)} -> {_short(new.dataset)}"
            )
        if (self.in_features, self.out_features) != (new.in_features, new.out_features):
            out.append("the data's feature counts")
        if self.schedule != new.schedule:
            old_args, new_args = self.schedule_args, new.schedule_args
            keys = [k for k in ("spec", "widths", "steps", "T", "rule", "transfer")
                    if old_args.get(k) != new_args.get(k)]  # fmt: skip
            shown = ", ".join(f"{k} {old_args.get(k)} -> {new_args.get(k)}" for k in keys)
            out.append(f"the schedule ({shown or 'its grids'})")
        old_opt, new_opt = self.training.get("optimizer"), new.training.get("optimizer")
        if old_opt is not None and new_opt is not None and old_opt != new_opt:
            out.append(f"--optimizer {old_opt} -> {new_opt}")
        old_res, new_res = self.training.get("resolutions"), new.training.get("resolutions")
        if old_res != new_res:
            out.append(f"--multires {_scales(old_res)} -> {_scales(new_res)}")
        for key, default in _OBJECTIVE_DEFAULTS.items():
            was, now = self.training.get(key, default), new.training.get(key, default)
            if was != now:
                out.append(f"--{key.replace('_', '-')} {_setting(was)} -> {_setting(now)}")
        old_n, new_n = bool(self.training.get("normalize")), bool(new.training.get("normalize"))
        if old_n != new_n:
            on = {True: "--normalize", False: "--no-normalize"}
            out.append(f"{on[old_n]} -> {on[new_n]}")
        return out

    @classmethod
    def for_dataset(
        cls,
        name: str,
        schedule: GridSchedule,
        model: ModelOptions | None = None,
        *,
        seed: int = 0,
        dtype: str = "float32",
        **data_kwargs: Any,
    ) -> tuple[RunConfig, Any]:
        """The description of a run on a bundled data set, and the data set itself.

        Args:
            name: a name of ``datasets.REGISTRY``.
            schedule: the [`GridSchedule`][grids.schedule.GridSchedule] of the model.
            model: the construction options (default ``ModelOptions(seed=seed)``).
            seed: the seed of the data set (and of the model's initialisation, unless
                ``model`` sets another).
            dtype: ``float32`` or ``float64``.
            **data_kwargs: further arguments of ``datasets.load`` (``n=...``).

        Returns:
            ``(config, data)`` with ``data`` the loaded ``DatasetSplits``.
        """
        dataset = {"name": name, "seed": check_seed("seed", seed), "kwargs": dict(data_kwargs)}
        data = load_dataset(dataset, check_choice("dtype", dtype, DTYPES))
        options = (model or ModelOptions(seed=seed)).check()
        config = cls(
            in_features=data.in_features,
            out_features=data.out_features,
            schedule=json.loads(schedule.to_json()),
            model=options,
            task=data.task,
            dtype=dtype,
            dataset=dataset,
            schedule_args={"dim": schedule.dim},
        )
        return config, data

    def load_data(self) -> Any:
        """The run's bundled data set (``DatasetSplits``), in the run's dtype.

        Returns:
            The [`DatasetSplits`][spacetime_nets.datasets.DatasetSplits] of ``dataset``.

        Raises:
            ValueError: the run names no bundled data set.
        """
        if not self.dataset.get("name"):
            raise ValueError(
                "model.json names no bundled data set (a run on other data); evaluate it with "
                "spacetime_nets.training.evaluate on that data"
            )
        return load_dataset(self.dataset, self.dtype)

    def build_schedule(self) -> GridSchedule:
        """The [`GridSchedule`][grids.schedule.GridSchedule] of the run.

        Returns:
            The schedule rebuilt from its JSON document ``schedule``.
        """
        from grids import GridSchedule

        return GridSchedule.from_json(json.dumps(self.schedule))


def load_dataset(dataset: dict, dtype: str = "float32") -> Any:
    """``datasets.load`` of a ``{"name", "seed", "kwargs"}`` description, in ``dtype``.

    Args:
        dataset: ``{"name", "seed", "kwargs"}``: a name of
            [`REGISTRY`][spacetime_nets.datasets.REGISTRY], the seed (default 0) and the
            generator's further arguments.
        dtype: ``float32`` or ``float64``.

    Returns:
        The [`DatasetSplits`][spacetime_nets.datasets.DatasetSplits].
    """
    import torch

    from . import datasets

    name = dataset.get("name")
    if name not in datasets.REGISTRY:
        raise ValueError(f"--dataset: expected one of {', '.join(datasets.REGISTRY)}; got {name!r}")
    kwargs = dataset.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise ValueError(f"dataset kwargs: expected an object, got {kwargs!r:.60}")
    return datasets.load(
        name, seed=int(dataset.get("seed", 0)), dtype=getattr(torch, dtype), **kwargs
    )


def _check_normalizers(doc: Any) -> dict | None:
    """model.json's ``normalizers``: None, or finite numbers under the four keys with
    positive scales."""
    if doc is None:
        return None
    if not isinstance(doc, dict) or set(doc) != set(_NORMALIZER_KEYS):
        raise ValueError(f"normalizers must be an object with keys {', '.join(_NORMALIZER_KEYS)}")
    out = {}
    for k in _NORMALIZER_KEYS:
        v = doc[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"normalizers.{k} must be a finite number, got {v!r:.40}")
        if k.endswith("std") and not v > 0:
            raise ValueError(f"normalizers.{k} must be > 0, got {v!r}")
        out[k] = float(v)
    return out


def _plain(value: Any) -> Any:
    """json.dumps' fallback: NumPy and torch scalars as Python numbers."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _setting(value: Any) -> str:
    return "unset" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _checked_options(kwargs: dict) -> ModelOptions:
    """``ModelOptions(**kwargs).check()``; a wrong type of a field is a ValueError naming it."""
    options = ModelOptions(**kwargs)
    for name in ("kernel", "form", "activation", "lift", "method", "readout", "basis", "norm"):
        value = getattr(options, name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name}: expected a name (a string), got {value!r:.40}")
    return options.check()


def _check_schedule_doc(doc: dict) -> None:
    from grids import GridSchedule

    try:
        GridSchedule.from_json(json.dumps(doc))
    except (ValueError, TypeError, KeyError) as exc:
        text = " ".join(str(exc).split())
        raise ValueError(f"schedule: not a usable schedule ({text})") from None


def _unknown(section: str, doc: dict, keys: Sequence[str]) -> None:
    extra = sorted(str(k) for k in set(doc) - set(keys))
    if extra:
        raise ValueError(
            f"{section}: unknown keys {', '.join(map(repr, extra))} (expected some of "
            f"{', '.join(keys)})"
        )


def _check_dataset(doc: dict) -> dict:
    """model.json's ``dataset``: ``{}`` (not a bundled set) or ``{"name", "seed",
    "kwargs"}`` with a name of ``datasets.REGISTRY`` and keyword arguments its generator
    takes."""
    import inspect

    from . import datasets

    _unknown("dataset", doc, _DATASET_KEYS)
    out = dict(doc)
    name = doc.get("name")
    if name is None:
        return out
    if not isinstance(name, str) or name not in datasets.REGISTRY:
        raise ValueError(
            f"dataset.name: expected one of {', '.join(datasets.REGISTRY)}; got {name!r:.60}"
        )
    if "seed" in doc:
        out["seed"] = check_seed("dataset.seed", doc["seed"])
    kwargs = doc.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise ValueError(f"dataset.kwargs: expected an object, got {kwargs!r:.60}")
    params = inspect.signature(datasets.REGISTRY[name]).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    accepted = [k for k in params if k not in ("seed", "dtype")]
    for key in kwargs:
        if not takes_any and (key not in params or key in ("seed", "dtype")):
            raise ValueError(
                f"dataset.kwargs: the {name} generator takes no argument {key!r:.40} (it "
                f"takes {', '.join(accepted) or 'none'})"
            )
    return out


def _check_schedule_args(doc: dict) -> dict:
    """model.json's ``schedule_args`` (how the schedule was asked for): each key optional."""
    _unknown("schedule_args", doc, _SCHEDULE_ARG_KEYS)
    out = dict(doc)
    spec = doc.get("spec")
    if spec is not None and not isinstance(spec, str):
        raise ValueError(f"schedule_args.spec: expected a builder name or a path, got {spec!r:.40}")
    if doc.get("widths") is not None:
        w = doc["widths"]
        if not isinstance(w, list) or not 1 <= len(w) <= 2:
            raise ValueError(f"schedule_args.widths: expected [n_max, n_min], got {w!r:.40}")
        out["widths"] = [check_int("schedule_args.widths", v, 1) for v in w]
    if doc.get("steps") is not None:
        out["steps"] = check_int("schedule_args.steps", doc["steps"], 1)
    if doc.get("T") is not None:
        out["T"] = check_real("schedule_args.T", doc["T"], positive=True)
    if doc.get("rule") is not None:
        check_choice("schedule_args.rule", doc["rule"], RULES)
    if doc.get("transfer") is not None:
        check_choice("schedule_args.transfer", doc["transfer"], TRANSFERS)
    if doc.get("dim") is not None:
        out["dim"] = check_int("schedule_args.dim", doc["dim"], 1)
    return out


def _check_training(doc: dict) -> dict:
    """model.json's ``training`` (the settings of the training run): each key optional."""
    from .objectives import LOSSES
    from .training import LR_SCHEDULES, OPTIMIZERS
    from .training.multires import check_resolutions

    _unknown("training", doc, _TRAINING_KEYS)
    out = dict(doc)

    def given(key: str) -> bool:
        return doc.get(key) is not None

    for key in ("epochs", "batch_size"):
        if given(key):
            out[key] = check_int(f"training.{key}", doc[key], 1)
    if given("seed"):
        out["seed"] = check_seed("training.seed", doc["seed"])
    if given("optimizer"):
        check_choice("training.optimizer", doc["optimizer"], OPTIMIZERS)
    if given("lr_schedule"):
        check_choice("training.lr_schedule", doc["lr_schedule"], LR_SCHEDULES)
    if given("loss"):
        check_choice("training.loss", doc["loss"], LOSSES)
    for key, positive in (("lr", True), ("p", True), ("weight_decay", False), ("lam", False),
                          ("turnpike", False)):  # fmt: skip
        if given(key):
            out[key] = check_real(f"training.{key}", doc[key], positive=positive)
    if given("normalize"):
        out["normalize"] = check_bool("training.normalize", doc["normalize"])
    if given("resolutions"):
        try:
            out["resolutions"] = check_resolutions(doc["resolutions"])
        except ValueError as exc:
            raise ValueError(f"training.{exc}") from None
    return out


def _scales(res: Any) -> str:
    """``--multires`` as typed (``0.5,1,2``), or ``off``."""
    if res is None:
        return "off"
    if isinstance(res, list) and all(isinstance(s, (int, float)) for s in res):
        return ",".join(f"{s:g}" for s in res)
    return repr(res)


def _short(d: dict) -> str:
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


# ---------------------------------------------------------------------------- construction


def parse_widths(text: str | Sequence[int]) -> tuple[int, ...]:
    """``"16,4"`` -> (16, 4): n_max, n_min (one value: both). Each must be a positive int.

    Args:
        text: ``"n_max,n_min"`` (``x`` also separates), one value, or a sequence of ints.

    Returns:
        One or two positive ints, as given.
    """
    if isinstance(text, str):
        parts = [s.strip() for s in text.replace("x", ",").split(",")]
        try:
            vals = tuple(int(s) for s in parts)
        except ValueError:
            raise ValueError(
                f"--widths: expected n_max,n_min as positive integers, got {text!r}"
            ) from None
    else:
        vals = tuple(int(v) for v in text)
    if not 1 <= len(vals) <= 2:
        raise ValueError(f"--widths: expected one or two values n_max,n_min, got {text!r}")
    if any(v < 1 for v in vals):
        raise ValueError(f"--widths: every width must be a positive integer, got {text!r}")
    return vals


def make_schedule(
    spec: str,
    widths: Sequence[int] | str = (16, 4),
    steps: int = 8,
    T: float = 1.0,
    rule: str = "trapezoid",
    dim: int | None = 1,
    transfer: str = "linear",
):
    """A [`GridSchedule`][grids.schedule.GridSchedule] on [0, 1] (``dim`` 1) or [0, 1]^2 (``dim`` 2,
    widths per axis: 16,4 means 16x16 -> 4x4) from a builder name of
    [`SCHEDULES`][spacetime_nets.runs.SCHEDULES] with widths (n_max, n_min), or from a schedule JSON
    file (``spec`` is its path; ``dim`` None: the file's own dimension, a builder's 1).

    Args:
        spec: a builder name of [`SCHEDULES`][spacetime_nets.runs.SCHEDULES] or the path of
            a schedule JSON file.
        widths: (n_max, n_min) nodes per axis, or their text ``"16,4"`` (a builder only).
        steps: the number of steps K (a builder only).
        T: the horizon (a builder only).
        rule: the quadrature rule of the grids, a name of ``RULES`` (a builder only).
        dim: the dimension of the domain; for a file, the dimension it must have (None:
            the file's own).
        transfer: the transfer between grids, a name of ``TRANSFERS`` (a builder only).

    Returns:
        schedule (grids.GridSchedule): the schedule, built or read.

    Raises:
        ValueError: a bad argument, a schedule too large (``MAX_MODEL_BYTES``), or a file
            that is missing, unreadable or of another dimension.
    """
    from grids import GridSchedule

    widths = parse_widths(widths)
    hi, lo = widths[0], widths[-1]
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"--steps: expected a positive integer, got {steps!r}")
    if not (isinstance(T, (int, float)) and math.isfinite(T) and T > 0):
        raise ValueError(f"-T: expected a finite horizon > 0, got {T!r}")
    check_choice("--rule", rule, RULES)
    check_choice("--transfer", transfer, TRANSFERS)
    path = Path(spec)
    if spec in SCHEDULES:
        dim = 1 if dim is None else check_int("--dim", dim, 1)
        domain: Any = (0.0, 1.0) if dim == 1 else [(0.0, 1.0)] * dim
        _check_size(hi, lo, steps, dim)
        return SCHEDULE_BUILDERS[spec].build((hi, lo), steps, T, domain, rule, transfer)
    if not path.is_file():
        why = "a folder" if path.is_dir() else "no such file"
        raise ValueError(
            f"--schedule: expected one of {', '.join(SCHEDULES)} or a schedule JSON file, got "
            f"{spec!r} ({why})"
        )
    try:
        sched = GridSchedule.from_json(path)
    except ValueError as exc:
        raise ValueError(f"--schedule {spec}: {exc}") from None
    except (OSError, UnicodeError) as exc:
        raise ValueError(f"--schedule {spec}: cannot read the file ({exc})") from None
    if dim is not None and sched.dim != dim:
        raise ValueError(
            f"--schedule {spec}: a {dim}-D schedule is needed here (the data set's, or "
            f"--dim), the file holds a {sched.dim}-D one"
        )
    return sched


def _check_size(hi: int, lo: int, steps: int, dim: int) -> None:
    """Refuse, before any allocation, a schedule whose dense (nodal) weights alone would
    exceed ``MAX_MODEL_BYTES`` in float32."""
    _estimate(steps * (hi**dim) ** 2 * 4, f"--widths {hi},{lo} with --steps {steps}")


def _estimate(nbytes: int, what: str) -> None:
    if nbytes > MAX_MODEL_BYTES:
        raise ValueError(
            f"{what}: the weights would take about {nbytes / 2**30:,.1f} GiB, above the bound "
            f"of {MAX_MODEL_BYTES / 2**30:g} GiB (spacetime_nets.runs.MAX_MODEL_BYTES); use "
            "smaller widths or fewer steps"
        )


def build_model(config: RunConfig | dict, source: str | None = "model.json") -> SpaceTimeNet:
    """The untrained [`SpaceTimeNet`][spacetime_nets.models.SpaceTimeNet] of a run, in its dtype.

    Args:
        config: a [`RunConfig`][spacetime_nets.runs.RunConfig] or a model.json document.
        source: the name used in error messages (None: the constructor's own message).

    Returns:
        The model (on the CPU).
    """
    import torch

    from .models import SpaceTimeNet

    where = source or "model.json"
    if not isinstance(config, RunConfig):
        config = RunConfig.from_dict(config, where)
    try:
        schedule = config.build_schedule()
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: not a usable schedule ({' '.join(str(exc).split())})") from None
    widths = list(schedule.widths)
    kind = _models.KERNEL_REGISTRY.get(config.model.kernel)
    if kind is not None and not kind.continuous:  # nodal: dense matrices on the schedule
        dense = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
        itemsize = getattr(torch, config.dtype).itemsize
        _estimate(dense * itemsize, f"{where}: the model")
    kwargs = config.model.model_kwargs()  # options not given stay the model's defaults
    try:
        in_f = check_int("in_features", config.in_features, 1)  # NumPy ints too
        out_f = check_int("out_features", config.out_features, 1)
        model = SpaceTimeNet(schedule, in_f, out_f, **kwargs)
        model = model.to(dtype=getattr(torch, config.dtype))
        if config.normalizers is not None:
            model.set_normalizers(**config.normalizers)
        return model
    except ValueError as exc:
        if source is None:
            raise
        raise ValueError(f"{where}: not a usable model description ({exc})") from None
    except (RuntimeError, MemoryError) as exc:  # an allocation the estimate did not foresee
        raise ValueError(f"{where}: the model does not fit in memory ({exc})") from None


@dataclass
class Run:
    """A trained run read back by [`load_run`][spacetime_nets.runs.load_run].

    Attributes:
        model: the trained model, with the checkpoint's weights, in eval mode.
        config: the run's [`RunConfig`][spacetime_nets.runs.RunConfig] (its ``model.json``).
        checkpoint: the validated checkpoint dict (as
            [`load_checkpoint`][spacetime_nets.training.load_checkpoint] returns it).
        path: the run folder.
    """

    model: Any
    config: RunConfig
    checkpoint: dict
    path: Path


def load_run(run: str | os.PathLike, checkpoint: str | os.PathLike | None = None) -> Run:
    """Read a run folder: its model.json, the model with the checkpoint's weights (in eval
    mode), and the validated checkpoint.

    Args:
        run: the folder written by ``train`` (or by a script that wrote model.json).
        checkpoint: a file name in the folder or a path (default ``last.pt``).

    Returns:
        A [`Run`][spacetime_nets.runs.Run]; FileNotFoundError or ValueError (naming the file)
            otherwise.
    """
    from .training import load_model_state

    folder = Path(run)
    if not folder.is_dir():
        raise FileNotFoundError(f"run folder not found: {folder}")
    config = RunConfig.read(folder)
    model = build_model(config, str(folder / "model.json"))
    ckpt = Path(checkpoint) if checkpoint else folder / "last.pt"
    if checkpoint and not ckpt.exists() and (folder / checkpoint).exists():
        ckpt = folder / checkpoint
    doc = load_model_state(model, ckpt)
    if config.normalizers is not None:
        have = model.normalizers
        if any(
            not math.isclose(have[k], config.normalizers[k], rel_tol=1e-6, abs_tol=1e-12)
            for k in _NORMALIZER_KEYS
        ):
            raise ValueError(
                f"{folder / 'model.json'}: its normalizers {config.normalizers} disagree with "
                f"those of the checkpoint {ckpt} ({have}); the two files belong to different runs"
            )
    model.eval()
    return Run(model=model, config=config, checkpoint=doc, path=folder)
