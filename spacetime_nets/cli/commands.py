"""The commands of the command line: each turns parsed arguments into calls of the library
([`spacetime_nets.runs`][spacetime_nets.runs], [`spacetime_nets.training`][spacetime_nets.training],
[`spacetime_nets.export`][spacetime_nets.export]) and prints what happened."""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grids.schedule import SCHEDULE_BUILDERS

from ..models import LIFT_REGISTRY, READOUT_REGISTRY
from ..runs import (
    SCHEDULES,
    ModelOptions,
    RunConfig,
    load_dataset,
    load_run,
    make_schedule,
    parse_widths,
)
from ..runs import build_model as _build_model

PROG = "spacetime-nets"
#: the files a training run keeps in its folder; no other command writes over them
RUN_FILES = ("model.json", "last.pt", "interrupted.pt", "history.json", "history.csv")


def build_model(config: dict | RunConfig, source: str | None = "model.json") -> Any:
    """The untrained model of a ``model.json`` document (see
    [`spacetime_nets.runs.build_model`][spacetime_nets.runs.build_model]).

    Args:
        config: a model.json document (a dict) or a
            [`RunConfig`][spacetime_nets.runs.RunConfig].
        source: the name used in error messages (None: the constructor's own message).

    Returns:
        The untrained [`SpaceTimeNet`][spacetime_nets.models.SpaceTimeNet], in the run's
            dtype, on the CPU.
    """
    return _build_model(config, source)


def _load_data(dataset: dict, dtype: str = "float32"):
    return load_dataset(dataset, dtype)


def _is_rank0() -> bool:
    return int(os.environ.get("RANK", "0") or 0) == 0


def _print(*a: Any) -> None:
    if _is_rank0():
        print(*a, flush=True)


def _note(text: str) -> None:
    if _is_rank0():
        print(f"{PROG}: {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------------


def _builder_takes(name: str, arg: str) -> bool:
    """Whether the data set ``name``'s generator takes the keyword ``arg``."""
    import inspect

    from ..datasets import REGISTRY

    return arg in inspect.signature(REGISTRY[name]).parameters


def _with_arg(name: str, arg: str) -> str:
    """The data sets whose generator takes ``arg`` (for messages)."""
    from ..datasets import REGISTRY

    return ", ".join(n for n in REGISTRY if _builder_takes(n, arg))


def _dataset_of(args: argparse.Namespace) -> dict:
    data_kw: dict[str, Any] = {}
    if args.samples is not None:
        if not _builder_takes(args.dataset, "n"):
            raise ValueError(
                f"--samples: {args.dataset} has a fixed size; leave --samples out (these take "
                f"it: {_with_arg(args.dataset, 'n')})"
            )
        data_kw["n"] = args.samples
    if getattr(args, "grid_size", None) is not None:
        if not _builder_takes(args.dataset, "grid_size"):
            raise ValueError(
                f"--grid-size: the {args.dataset} data are not generated on a grid of a "
                f"chosen size (these are: {_with_arg(args.dataset, 'grid_size')})"
            )
        data_kw["grid_size"] = args.grid_size
    if getattr(args, "splits", None) is not None:
        data_kw["splits"] = list(args.splits)
    return {"name": args.dataset, "seed": args.seed, "kwargs": data_kw}


_SCHEDULE_FLAGS = {
    "widths": "--widths",
    "steps": "--steps",
    "T": "-T",
    "rule": "--rule",
    "transfer": "--transfer",
}


def _given_schedule_options(args: argparse.Namespace) -> dict[str, Any]:
    """The schedule-shaping options given on the command line (None: not given)."""
    return {k: getattr(args, k) for k in _SCHEDULE_FLAGS if getattr(args, k, None) is not None}


def _check_schedule_options(spec: str, given: dict[str, Any]) -> None:
    """Refuse a schedule option that the chosen schedule would not read: any of them next to
    a schedule file (it fixes grids, steps, horizon, rule and transfers), two widths for a
    shape of one width (``constant``, ``moving``: n on every step) and one for a shape of two,
    ``--rule`` for a shape that places its own nodes (``moving``)."""
    if spec not in SCHEDULES:
        if given:
            flags = ", ".join(_SCHEDULE_FLAGS[k] for k in given)
            raise ValueError(
                f"{_SCHEDULE_FLAGS[next(iter(given))]}: the schedule file {spec} fixes the "
                f"grids, steps, horizon, rule and transfers, so {flags} would be ignored; drop "
                f"{flags}, or name a builder ({', '.join(SCHEDULES)}) instead of the file"
            )
        return
    builder = SCHEDULE_BUILDERS[spec]
    if builder.widths == 2 and given.get("widths") is not None:
        w = parse_widths(given["widths"])
        if len(w) != 2:
            raise ValueError(
                f"--widths: the {spec} schedule goes between two widths, n_max,n_min (e.g. "
                f"16,4), got {given['widths']}; for one width on every step use --schedule "
                "constant"
            )
    if builder.widths == 1 and given.get("widths") is not None:
        w = parse_widths(given["widths"])
        if len(set(w)) > 1:
            raise ValueError(
                f"--widths: the {spec} schedule keeps one width n on every step, so n_min "
                f"would be ignored; give one value such as {w[0]}, got {given['widths']}"
            )
    if not builder.takes_rule and given.get("rule") is not None:
        raise ValueError(
            f"--rule: the {spec} schedule places its own nodes (no quadrature rule to choose), "
            f"so --rule {given['rule']} would be ignored; drop --rule"
        )


#: a library message starting with one of these argument names is about this option
_TRAIN_FLAGS = {
    "T": "-T",
    "lr": "--lr",
    "weight_decay": "--weight-decay",
    "lam": "--lam",
    "turnpike": "--turnpike",
    "grad_clip": "--grad-clip",
    "checkpoint_every": "--checkpoint-every",
    "batch_size": "--batch-size",
    "epochs": "--epochs",
    "p": "--p",
    "loss": "--loss",
    "resolutions": "--multires",
    "optimizer": "--optimizer",
    "lr_schedule": "--lr-schedule",
    "device": "--device",
    "compile": "--compile",
    "precision": "--precision",
    "kernel": "--kernel",
    "form": "--form",
    "activation": "--activation",
    "lift": "--lift",
    "method": "--method",
    "modes": "--modes",
    "basis": "--basis",
    "init_scale": "--init-scale",
    "readout": "--readout",
    "channels": "--channels",
    "radius": "--radius",
    "radius_spacings": "--radius-spacings",
    "pointwise": "--pointwise",
    "norm": "--norm",
    "norm_groups": "--norm-groups",
    "head_hidden": "--head-hidden",
    "coordinates": "--coordinates",
}


#: the data sets' argument names as the options of ``train`` that set them
_DATA_FLAGS = {"n": "--samples", "grid_size": "--grid-size", "splits": "--splits", "seed": "--seed"}


#: compress_run's arguments that are compress flags (its messages name them by the flag)
_COMPRESS_FLAGS = {"norm": "--norm", "metric": "--metric", "split": "--split"}


def _as_flag(exc: ValueError, flags: dict[str, str] = _TRAIN_FLAGS) -> ValueError:
    """A library message ``"radius: ..."`` (or ``"n, grid_size: ..."``) as the command line's
    ``"--radius: ..."``."""
    head, sep, rest = str(exc).partition(":")
    names = [n.strip() for n in head.split(",")]
    if sep and all(n in flags for n in names):
        return ValueError(f"{', '.join(flags[n] for n in names)}:{rest}")
    return exc


def _check_train_numbers(args: argparse.Namespace) -> None:
    """The numbers of ``train`` that the library reads as floats of the run's dtype: finite
    and representable there (a learning rate of 1e300 overflows float32 in the first step)."""
    import torch

    from ..validation import check_int, check_seed

    if args.samples is not None:
        check_int("--samples", args.samples, 1)
    if args.grid_size is not None:
        check_int("--grid-size", args.grid_size, 1)
    check_seed("--seed", args.seed)
    if args.seed >= 2**32:  # the data generators' range
        raise ValueError(f"--seed: expected an int in [0, 2**32), got {args.seed}")
    big = float(torch.finfo(getattr(torch, args.dtype)).max)
    for name in ("lr", "weight_decay", "lam", "turnpike", "grad_clip", "init_scale", "p",
                 "radius", "radius_spacings", "T"):  # fmt: skip
        v = getattr(args, name, None)
        if v is not None and math.isfinite(v) and abs(v) > big:
            flag = _TRAIN_FLAGS[name]
            raise ValueError(
                f"{flag}: expected a number representable in {args.dtype} (at most "
                f"{big:.3g}), got {v:g}"
            )


def _train_config(args: argparse.Namespace, data) -> RunConfig:
    # the data set says where it lives: a box (digits, heat, PDE fields) and, for functions
    # sampled on a grid of their own (burgers, darcy, signals), that grid's rule
    on_box = "domain" in data.meta  # values over a box (cells, fields), not plain features
    dim = len(data.meta["domain"]) if on_box else 1
    function_data = "rule" in data.meta
    spec = args.schedule
    given = _given_schedule_options(args)
    _check_schedule_options(spec, given)
    from_file = spec not in SCHEDULES
    rule, widths = args.rule, args.widths
    if function_data:
        # the model's first grid is the grid the data live on
        shape = tuple(data.meta.get("grid_shape", (data.in_features,)))
        rule = data.meta.get("rule", rule)
        if args.rule is not None and args.rule != rule:
            raise ValueError(
                f"--rule: the {args.dataset} data live on a {rule!r} grid, got {args.rule!r}"
            )
        if widths is None and not from_file:  # n_max on the data's grid, n_min one coarser
            from grids.quadrature import get_rule

            ends = get_rule(rule).end_points  # n nodes span n - 1 cells, else n
            half = (shape[0] - 1) // 2 + 1 if ends else shape[0] // 2
            one = SCHEDULE_BUILDERS[spec].widths == 1
            widths = f"{shape[0]}" if one else f"{shape[0]},{max(half, 2)}"
        if not from_file:
            n0 = parse_widths(widths)[0]
            if n0 != shape[0]:
                raise ValueError(
                    f"--widths: the {args.dataset} data have {shape[0]} nodes per axis, so "
                    f"n_max must be {shape[0]}, got {widths}"
                )
    widths = parse_widths(widths if widths is not None else "16,4")
    rule = rule if rule is not None else "trapezoid"
    steps = args.steps if args.steps is not None else 8
    T = args.T if args.T is not None else 1.0
    transfer = args.transfer if args.transfer is not None else "galerkin"
    schedule = make_schedule(spec, widths, steps, T, rule, dim, transfer)
    lift = args.lift
    if lift == "auto":
        lift = "identity" if function_data else "cells" if on_box else "linear"
    in_shape = None
    if LIFT_REGISTRY[lift].cells and "image_shape" in data.meta:  # cells of an image
        in_shape = tuple(data.meta["image_shape"])
    readout = args.readout
    operator_data = function_data and not data.labelled  # burgers, darcy
    if readout == "auto":
        readout = "function" if operator_data else "quadrature"
    answers_function = getattr(READOUT_REGISTRY.get(readout), "function", False)
    if answers_function and data.labelled:
        raise ValueError(
            f"--readout: {readout!r} predicts a function on the last grid, but the "
            f"{args.dataset} data have class labels (classification); choose quadrature, mean "
            "or pool"
        )
    normalize = operator_data if args.normalize is None else bool(args.normalize)
    weight_decay = args.weight_decay
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"--weight-decay: expected a finite number >= 0, got {weight_decay!r}")
    options = ModelOptions(
        kernel=args.kernel,
        form=args.form,
        activation=args.activation,
        lift=lift,
        method=args.method,
        in_shape=in_shape,
        modes=args.modes,
        basis=args.basis,
        init_scale=args.init_scale,
        seed=args.seed,
        readout=readout,
        channels=args.channels,
        radius=args.radius,
        radius_spacings=args.radius_spacings,
        pointwise=args.pointwise,
        norm=args.norm,
        norm_groups=args.norm_groups,
        head_hidden=args.head_hidden,
        coordinates=args.coordinates,
    )
    try:
        options.check()
    except ValueError as exc:
        raise _as_flag(exc) from None
    return RunConfig(
        in_features=data.in_features,
        out_features=1 if answers_function else data.out_features,
        schedule=json.loads(schedule.to_json()),
        model=options,
        task=data.task,
        dtype=args.dtype,
        dataset=_dataset_of(args),
        schedule_args={
            "spec": spec,
            "widths": None if from_file else list(widths),
            "steps": schedule.num_steps,
            "T": float(schedule.T),
            "rule": None if from_file else rule,
            "transfer": None if from_file else transfer,
            "dim": dim,
        },
        training={
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "optimizer": args.optimizer,
            "lr": args.lr,
            "lr_schedule": args.lr_schedule,
            "loss": None if args.loss == "auto" else args.loss,
            "p": args.p,
            "weight_decay": weight_decay,
            "normalize": normalize,
            "lam": args.lam,
            "turnpike": args.turnpike,
            "seed": args.seed,
            "resolutions": args.multires,
        },
    )


def _resume_checkpoint(resume: str) -> Path:
    from ..training.checkpoint import checkpoint_path

    try:
        return checkpoint_path(resume)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"--resume: {exc}") from None


def _check_resume(config: RunConfig, ckpt: Path, out: Path) -> None:
    """Refuse a resume whose settings change the problem; announce a new learning rate."""
    for folder in dict.fromkeys((out, ckpt.parent)):
        if (folder / "model.json").is_file():
            stored = RunConfig.read(folder)
            break
    else:
        return
    conflicts = stored.resume_conflicts(config)
    if conflicts:
        raise ValueError(
            f"--resume: {ckpt} was trained with other settings ({'; '.join(conflicts)}); "
            "resume with the settings of the run, or start a new --out"
        )
    old_lr, new_lr = stored.training.get("lr"), config.training.get("lr")
    if old_lr is not None and old_lr != new_lr:
        _note(f"resume: learning rate {old_lr:g} -> {new_lr:g} (the new rate is applied)")


def _cmd_train(args: argparse.Namespace) -> int:
    try:
        return _train(args)
    except ValueError as exc:
        raise _as_flag(exc) from None


def _train(args: argparse.Namespace) -> int:
    from ..training import baselines, evaluate, load_model_state

    if args.resume is not None and args.overwrite:
        raise ValueError(
            "--overwrite: not with --resume (--resume continues the run, --overwrite starts "
            "it again); give one of them"
        )
    _check_train_numbers(args)
    try:
        data = _load_data(_dataset_of(args), args.dtype)
    except ValueError as exc:
        raise _as_flag(exc, _DATA_FLAGS) from None
    config = _train_config(args, data)
    out = Path(args.out) if args.out else Path("runs") / args.dataset
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {out} exists and is not a folder")
    ckpt = None
    if args.resume is not None:  # changed settings are named before the model is built
        ckpt = _resume_checkpoint(args.resume)
        _check_resume(config, ckpt, out)
    model = _build_model(config, source=None)
    if ckpt is not None:
        load_model_state(model, ckpt)  # refuses a checkpoint of another model: nothing written
    else:
        held = [out / n for n in ("last.pt", "interrupted.pt") if (out / n).exists()]
        if held and not args.overwrite:
            raise ValueError(
                f"--out: {out} already holds a checkpoint; pass --resume {held[0]} to continue "
                "it, --overwrite to start again, or another --out"
            )
    if _is_rank0():
        _writable(out)
        _print(_model_summary(model))
    start = _start_run(config, out, fresh=args.resume is None)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="resume: learning rate")
            warnings.showwarning = _show_warning  # one line each, not the source line
            history = _fit_from_args(args, model, data, out, config, ckpt, start)
    except KeyboardInterrupt as exc:
        where = getattr(exc, "checkpoint", None)
        if where:
            _note(
                f"interrupted; the state after the last completed step is in {where} "
                f"(continue with --resume {where})"
            )
        else:
            again = f" ({ckpt} is unchanged)" if ckpt else ""
            _note(f"interrupted; no checkpoint was written{again}")
        return 130
    if _is_rank0():
        last = history.last or {}
        loss, p = config.training["loss"], config.training.get("p")
        test = evaluate(model, data.test, loss, p=p)
        val = _metrics(last.get("val_loss"), last.get("val_accuracy"), last.get("val_rel_l2"))
        _print(
            f"epoch {last.get('epoch')}: train {_metrics(last.get('loss'), last.get('accuracy'))}"
            f" | val {val} | test {_metrics(test['loss'], test['accuracy'], test['rel_l2'])}"
        )
        if test["rel_l2"] is not None:
            _print(_baseline_line("test", baselines(data.train, data.test, loss, p)))
        _print(f"wrote {out / 'last.pt'}, {out / 'model.json'}, {out / 'history.csv'}")
    return 0


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    _note(f"warning: {' '.join(str(message).split())}")


def _baseline_line(split: str, base: dict) -> str:
    """The scores of the trivial predictors on ``split``
    ([`baselines`][spacetime_nets.training.baselines])."""
    if not base:
        return f"{split} baselines: n/a"
    return (
        f"{split} baselines: predicting 0 gives loss {base['zero_loss']:.6g} (rel. L2 1); "
        f"predicting the training mean gives loss {base['mean_loss']:.6g}, rel. L2 "
        f"{base['mean_rel_l2']:.6g}"
    )


def _model_summary(model: Any) -> str:
    """A few lines before training: parameters, the grids per step, channels, multiply-adds
    per sample ([`model_macs`][spacetime_nets.adapt.model_macs])."""
    from ..adapt import model_macs

    sched = model.schedule
    params = sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())
    kernel = type(model.kernel).__name__
    lines = [
        f"model: {type(model).__name__}, {kernel}, form {model.form}, "
        f"activation {model.activation_name}, {model.method}, {sched.num_steps} steps, "
        f"T = {float(sched.T):g}",
        f"  parameters: {params:,} (a complex weight counts as two)",
        "  grids G_0..G_K: " + " ".join("x".join(map(str, g.shape)) for g in sched.grids),
    ]
    if sched.channels is not None:
        lines.append("  channels c_0..c_K: " + " ".join(map(str, sched.channels)))
    lines.append(f"  multiply-adds per sample: {model_macs(model):,}")
    return "\n".join(lines)


def _start_run(config: RunConfig, out: Path, fresh: bool):
    """A callback ``fit`` calls once the data, the arguments and a resumed checkpoint have
    been checked, before the first step: only then does the run folder change (model.json
    written; when starting again, the previous run's checkpoints removed)."""
    from ..training import Callback

    class StartRun(Callback):
        def on_train_start(self, state) -> None:
            if state.rank != 0:
                return
            if fresh:
                for name in ("last.pt", "interrupted.pt"):
                    (out / name).unlink(missing_ok=True)
            if config.training.get("normalize"):
                # fitted by fit (or read from the resumed checkpoint): model.json carries them
                config.normalizers = state.model.normalizers
                n = config.normalizers
                _print(
                    f"normalisers (training split): inputs mean {n['x_mean']:.6g}, std "
                    f"{n['x_std']:.6g}; targets mean {n['y_mean']:.6g}, std {n['y_std']:.6g}"
                )
            config.write(out)

    return StartRun()


def _writable(folder: Path, option: str = "--out") -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ValueError(f"{option}: cannot write to {folder} ({exc.strerror or exc})") from None


def _fit_from_args(args, model, data, out: Path, config: RunConfig, ckpt: Path | None, start: Any):
    from ..training import fit

    loss, normalize = config.training["loss"], config.training["normalize"]
    return fit(
        model,
        data.train,
        data.val,
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        loss=loss,
        p=args.p,
        weight_decay=args.weight_decay,
        normalize=normalize,
        lam=args.lam,
        turnpike=args.turnpike,
        device=args.device,
        out_dir=out,
        resume=ckpt,
        seed=args.seed,
        progress=not args.quiet,
        checkpoint_every=args.checkpoint_every,
        grad_clip=args.grad_clip,
        lr_schedule=args.lr_schedule,
        compile=args.compile,
        precision=args.precision,
        resolutions=args.multires,
        callbacks=[start],
    )


def _metrics(loss: float | None, acc: float | None, rel: float | None = None) -> str:
    text = "loss -" if loss is None else f"loss {loss:.6g}"
    text += "" if acc is None else f" accuracy {acc:.4f}"
    return text + ("" if rel is None else f" rel. L2 {rel:.6g}")


# --------------------------------------------------------------------------------------------
# evaluate, export
# --------------------------------------------------------------------------------------------


def _new_schedule(args: argparse.Namespace, config: RunConfig):
    """The schedule asked for by evaluate's --schedule/--widths/--steps/-T/--rule (the missing
    ones from the training run), or None when none of them is given."""
    given = {
        k: getattr(args, k)
        for k in ("schedule", "widths", "steps", "T", "rule")
        if getattr(args, k) is not None
    }
    if not given:
        return None
    old = dict(config.schedule_args)
    spec = given.get("schedule", old.get("spec"))
    if spec not in SCHEDULES and "schedule" not in given:
        how = "on a schedule file" if spec else "on a schedule that names no builder"
        raise ValueError(
            f"--schedule: the run was trained {how}; name a builder "
            f"({', '.join(SCHEDULES)}) or another schedule JSON file"
        )
    _check_schedule_options(spec, {k: v for k, v in given.items() if k != "schedule"})
    widths = given.get("widths", old.get("widths") or (16, 4))
    if spec in SCHEDULE_BUILDERS and SCHEDULE_BUILDERS[spec].widths == 1 and "widths" not in given:
        widths = parse_widths(widths)[:1]  # the run's n (its n_min was never read)
    return make_schedule(
        spec,
        parse_widths(widths),
        int(given.get("steps", old.get("steps") or 8)),
        float(given.get("T", old.get("T") or 1.0)),
        given.get("rule", old.get("rule") or "trapezoid"),
        int(old.get("dim") or 1),
        # absent: a run from before the option (linear then); None: a schedule file's run,
        # which gets the builders' default as train gives it
        old.get("transfer", "linear") or "galerkin",
    )


def _run_data(config: RunConfig, split: str):
    return getattr(config.load_data(), split)


def _at_resolution(args: argparse.Namespace, config: RunConfig, model: Any):
    """evaluate's --resolution N / --grid-shape S S: (the model moved there by
    ``at_resolution``, the run's data set generated at that size, the size), or (model,
    None, None) when neither is given."""
    if args.resolution is None and args.grid_shape is None:
        return model, None, None
    flag = "--resolution" if args.resolution is not None else "--grid-shape"
    if args.resolution is not None and args.grid_shape is not None:
        raise ValueError("--resolution: give --resolution (1-D) or --grid-shape (2-D), not both")
    others = [
        o for o in ("schedule", "widths", "steps", "T", "rule") if getattr(args, o) is not None
    ]
    if others:
        shown = ", ".join(_TRAIN_FLAGS.get(o, f"--{o}") for o in others)
        raise ValueError(f"{flag}: not with {shown} (the schedule follows the data's grid)")
    name = config.dataset.get("name")
    if not name or not _builder_takes(name, "grid_size"):
        raise ValueError(
            f"{flag}: the run's data set ({name}) is not generated on a grid of a chosen size "
            f"(these are: {_with_arg(name or '', 'grid_size')})"
        )
    if not model.lift_entry.function:
        raise ValueError(
            f"{flag}: the model reads its input through the {model.lift_kind!r} lift, not as a "
            "function on a grid (lift identity), so it has no other input resolution"
        )
    dim = model.schedule.dim
    if args.resolution is not None:
        if dim != 1:
            raise ValueError(f"{flag}: the run's data are {dim}-D; use --grid-shape S S")
        size, target = args.resolution, args.resolution
    else:
        if dim != 2:
            raise ValueError(f"{flag}: the run's data are 1-D; use --resolution N")
        s1, s2 = args.grid_shape
        if s1 != s2:
            raise ValueError(
                f"{flag}: the {name} generator serves square grids (one grid_size per axis), "
                f"got {s1} x {s2}"
            )
        size, target = s1, (s1, s2)
    _positive(flag, size)
    kwargs = {**(config.dataset.get("kwargs") or {}), "grid_size": size}
    try:
        data = load_dataset({**config.dataset, "kwargs": kwargs}, config.dtype)
    except ValueError as exc:
        raise ValueError(f"{flag} {size}: the {name} generator refuses it ({exc})") from None
    try:
        moved = model.at_resolution(target)
    except ValueError as exc:
        raise ValueError(f"{flag} {size}: the model cannot move there ({exc})") from None
    return moved, data, target


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ..training import baselines, evaluate, resolve_device

    _positive("--batch-size", args.batch_size)
    run = load_run(args.run, args.checkpoint)
    model, config = run.model, run.config
    model, data, size = _at_resolution(args, config, model)
    sched = _new_schedule(args, config) if size is None else None
    if sched is not None:
        model = model.with_schedule(sched)
    data = data if data is not None else config.load_data()
    split = getattr(data, args.split)
    model.to(resolve_device(args.device))
    loss, p = config.training.get("loss"), config.training.get("p")
    res = evaluate(model, split, loss, args.batch_size, p=p)
    base = baselines(data.train, split, loss, p) if res["rel_l2"] is not None else {}
    grid = model.input_grid or model.schedule.grids[0]
    res.update(
        {
            "split": args.split,
            "epoch": run.checkpoint["epoch"],
            "widths": model.schedule.widths,
            "steps": model.schedule.num_steps,
            "input_shape": list(grid.shape),
            "baselines": base,
        }
    )
    if args.json:
        print(json.dumps(res))
    else:
        w = res["widths"]
        shown = w if len(w) <= 10 else [*w[:3], "...", *w[-3:]]
        at = "" if size is None else f", inputs on {'x'.join(map(str, grid.shape))} nodes"
        print(
            f"{args.split} ({res['n']} samples, epoch {res['epoch']}, {res['steps']} steps, "
            f"widths {shown}{at}): {_metrics(res['loss'], res['accuracy'], res['rel_l2'])}"
        )
        if res["rel_l2"] is not None:
            print(_baseline_line(args.split, base))
    return 0


def _positive(name: str, v: int | None) -> None:
    if v is not None and v < 1:
        raise ValueError(f"{name}: expected a positive integer, got {v}")


def _cmd_export(args: argparse.Namespace) -> int:
    import torch

    from ..export import get_save_format, resnet_bytes, resnet_from_bytes, to_resnet
    from ..training._io import atomic_write_bytes

    _positive("--samples", args.samples)
    if not (math.isfinite(args.tol) and args.tol >= 0):
        raise ValueError(f"--tol: expected a finite number >= 0, got {args.tol!r}")
    run = load_run(args.run, args.checkpoint)
    model = run.model
    x = _run_data(run.config, args.split).x
    if args.samples is not None:
        x = x[: args.samples]
    resnet = to_resnet(model).eval()
    suffix = get_save_format(args.format).suffix
    out = _output_file(args.out or str(Path(args.run) / f"resnet{suffix}"), "--out")
    # serialised and read back in memory; written (atomically) only once it matches
    with torch.no_grad():
        data = resnet_bytes(resnet, x, format=args.format)
        loaded = resnet_from_bytes(data, f"--out: the program for {out}")
        diff = float((model(x) - loaded(x)).abs().max())
    if not diff <= args.tol:
        print(
            f"{PROG}: error: the exported network differs by {diff:.3e} > --tol "
            f"{args.tol:g}; {out} was not written"
            + (" (the previous file is kept)" if out.exists() else ""),
            file=sys.stderr,
        )
        return 1
    atomic_write_bytes(out, data)
    print(
        f"wrote {out} ({args.format}, widths {resnet.widths}); max |diff| = {diff:.3e} "
        f"against the space-time net on {x.shape[0]} {args.split} samples"
    )
    return 0


# --------------------------------------------------------------------------------------------
# schedule, demo, experiments
# --------------------------------------------------------------------------------------------


def _output_file(path: str, option: str, others: Sequence[str] = ()) -> Path:
    """A file a command writes: not a folder, not one of a run folder's own files, not the
    path of another output of the same command; its folder must exist (a mistyped folder is
    not created) and be writable."""
    out = Path(path)
    if out.parent.exists() and not out.parent.is_dir():
        raise ValueError(f"{option}: cannot write {out}, {out.parent} is a file, not a folder")
    if not out.parent.is_dir():
        raise ValueError(
            f"{option}: the folder {out.parent} does not exist; create it first or name "
            "another file"
        )
    if out.is_dir():
        raise ValueError(f"{option}: {out} is a folder; name the file to write")
    if out.name in RUN_FILES and (out.parent / "model.json").is_file():
        raise ValueError(
            f"{option}: {out} is one of the run's own files ({', '.join(RUN_FILES)}) in "
            f"{out.parent}; name another file"
        )
    for other in others:
        if other and Path(other).resolve() == out.resolve():
            raise ValueError(f"{option}: {out} is also the path of another output; name another")
    _writable(out.parent, option)
    return out


def _cmd_schedule(args: argparse.Namespace) -> int:
    from ..training._io import atomic_write_text

    spec = args.spec
    given = _given_schedule_options(args)
    _check_schedule_options(spec, given)
    if spec in SCHEDULES:
        default_widths = "16" if SCHEDULE_BUILDERS[spec].widths == 1 else "16,4"
        dim = args.dim if args.dim is not None else 1
    else:
        default_widths, dim = "16,4", args.dim  # None: the file's own
    json_out = _output_file(args.json, "--json", [args.out]) if args.json else None
    png_out = _output_file(args.out, "--out") if args.out else None
    sched = make_schedule(
        spec,
        parse_widths(args.widths or default_widths),
        args.steps if args.steps is not None else 8,
        args.T if args.T is not None else 1.0,
        args.rule or "trapezoid",
        dim,
        args.transfer or "galerkin",
    )
    print(sched.summary())
    print(f"widths: {sched.widths}")
    if json_out is not None:
        atomic_write_text(json_out, sched.to_json())
        print(f"wrote {json_out}")
    if png_out is not None:
        fig = sched.plot()
        _save_figure(fig, png_out)
        print(f"wrote {png_out}")
    return 0


def _save_figure(fig: Any, path: Path) -> None:
    """Save a figure to ``path`` (PNG unless its suffix names another format): drawn in memory,
    then written atomically, so a failing write leaves a previous file as it was."""
    import matplotlib.pyplot as plt

    from ..training._io import atomic_write_bytes

    fmt = path.suffix.lstrip(".").lower() or "png"
    buf = io.BytesIO()
    try:
        fig.savefig(buf, dpi=120, format=fmt)
    except ValueError as exc:  # a suffix matplotlib has no writer for
        raise ValueError(f"--out: cannot write {path} ({exc})") from None
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _cmd_compress(args: argparse.Namespace) -> int:
    from ..adapt import compress_run

    if args.tol is None or not (args.tol >= 0 and args.tol != float("inf")):
        raise ValueError(f"--tol: expected a finite number >= 0, got {args.tol}")
    _positive("--samples", args.samples)
    if args.recover < 0:
        raise ValueError(f"--recover: expected epochs >= 0, got {args.recover}")
    if not Path(args.run).is_dir():
        raise ValueError(f"run: no such run folder: {args.run}")
    if args.out:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out: {out} exists and is not a folder")
        if (out / "model.json").is_file() and out.resolve() != Path(args.run).resolve():
            raise ValueError(f"--out: {out} is the folder of another run; name another folder")
        _writable(out.parent, "--out")
    try:
        summary = compress_run(
            args.run,
            args.tol,
            args.out,
            metric=args.metric,
            split=args.split,
            samples=args.samples,
            checkpoint=args.checkpoint,
            norm=args.norm,
            fewer_steps=not args.keep_steps,
            channels=not args.keep_channels,
            recover_epochs=args.recover,
            export_format=args.format,
            progress=not args.quiet,
        )
    except ValueError as exc:
        raise _as_flag(exc, _COMPRESS_FLAGS) from None
    print(summary.summary())
    for what, path in summary.files.items():
        print(f"wrote {what}: {path}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    code = run_demo()
    return 0 if code is None else int(code)
