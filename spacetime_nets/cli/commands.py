"""The commands of the command line: each turns parsed arguments into calls of the library
(:mod:`spacetime_nets.runs`, :mod:`spacetime_nets.training`, :mod:`spacetime_nets.export`)
and prints what happened."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

from ..runs import (
    SCHEDULES,
    ModelOptions,
    RunConfig,
    load_dataset,
    make_schedule,
    parse_widths,
)
from ..runs import build_model as _build_model
from ..runs import load_run as _load_run

PROG = "spacetime-nets"
#: the files a training run keeps in its folder; no other command writes over them
RUN_FILES = ("model.json", "last.pt", "interrupted.pt", "history.json", "history.csv")


def build_model(config: dict | RunConfig, source: str | None = "model.json") -> Any:
    """The untrained model of a ``model.json`` document (see
    :func:`spacetime_nets.runs.build_model`)."""
    return _build_model(config, source)


def load_run(run: str | os.PathLike, checkpoint: str | None = None) -> tuple[Any, dict, dict]:
    """(model with the checkpoint's weights, model.json as a dict, checkpoint dict) of a run
    folder; :func:`spacetime_nets.runs.load_run` returns the same as a ``Run``."""
    r = _load_run(run, checkpoint)
    return r.model, r.config.to_dict(), r.checkpoint


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
        if args.dataset == "digits":
            raise ValueError("--samples: digits has a fixed size; leave --samples out")
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


def _train_config(args: argparse.Namespace, data) -> RunConfig:
    # the data set says where it lives: a box (digits, heat, PDE fields) and, for functions
    # sampled on a grid of their own (burgers, darcy, signals), that grid's rule
    dim = len(data.meta.get("domain", [(0.0, 1.0)]))
    function_data = "rule" in data.meta
    rule, widths = args.rule, args.widths
    if function_data:
        # the model's first grid is the grid the data live on
        shape = tuple(data.meta.get("grid_shape", (data.in_features,)))
        rule = data.meta.get("rule", rule)
        if args.rule is not None and args.rule != rule:
            raise ValueError(
                f"--rule: the {args.dataset} data live on a {rule!r} grid, got {args.rule!r}"
            )
        if widths is None:  # n_max on the data's grid, n_min one coarsening below it
            half = shape[0] // 2 if rule == "periodic" else (shape[0] - 1) // 2 + 1
            widths = f"{shape[0]},{max(half, 2)}"
        n0 = parse_widths(widths)[0]
        if n0 != shape[0]:
            raise ValueError(
                f"--widths: the {args.dataset} data have {shape[0]} nodes per axis, so n_max "
                f"must be {shape[0]}, got {widths}"
            )
    widths = parse_widths(widths if widths is not None else "16,4")
    rule = rule if rule is not None else "trapezoid"
    schedule = make_schedule(args.schedule, widths, args.steps, args.T, rule, dim, args.transfer)
    lift = args.lift
    if lift == "auto":
        lift = (
            "identity"
            if function_data
            else "cells"
            if args.dataset in ("digits", "heat")
            else "linear"
        )
    in_shape = None
    if lift == "cells" and args.dataset == "digits":
        in_shape = tuple(data.meta.get("image_shape", (8, 8)))
    readout = args.readout
    operator_data = function_data and data.task == "regression"  # burgers, darcy
    if readout == "auto":
        readout = "function" if operator_data else "quadrature"
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
    options.check()
    return RunConfig(
        in_features=data.in_features,
        out_features=1 if readout == "function" else data.out_features,
        schedule=json.loads(schedule.to_json()),
        model=options,
        task=data.task,
        dtype=args.dtype,
        dataset=_dataset_of(args),
        schedule_args={
            "spec": args.schedule,
            "widths": list(widths),
            "steps": args.steps,
            "T": args.T,
            "rule": rule,
            "transfer": args.transfer,
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
    from ..training import baselines, evaluate, load_model_state

    data = _load_data(_dataset_of(args), args.dtype)
    config = _train_config(args, data)
    model = _build_model(config, source=None)
    out = Path(args.out) if args.out else Path("runs") / args.dataset
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {out} exists and is not a folder")
    ckpt = None
    if args.resume is not None:
        ckpt = _resume_checkpoint(args.resume)
        _check_resume(config, ckpt, out)
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


def _baseline_line(split: str, base: dict) -> str:
    """The scores of the trivial predictors on ``split`` (:func:`training.baselines`)."""
    if not base:
        return f"{split} baselines: n/a"
    return (
        f"{split} baselines: predicting 0 gives loss {base['zero_loss']:.6g} (rel. L2 1); "
        f"predicting the training mean gives loss {base['mean_loss']:.6g}, rel. L2 "
        f"{base['mean_rel_l2']:.6g}"
    )


def _model_summary(model: Any) -> str:
    """A few lines before training: parameters, the grids per step, channels, multiply-adds
    per sample (:func:`spacetime_nets.adapt.model_macs`)."""
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
    return make_schedule(
        spec,
        parse_widths(given.get("widths", old.get("widths", (16, 4)))),
        int(given.get("steps", old.get("steps", 8))),
        float(given.get("T", old.get("T", 1.0))),
        given.get("rule", old.get("rule", "trapezoid")),
        int(old.get("dim", 1)),
        old.get("transfer", "linear"),
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
        shown = ", ".join("-T" if o == "T" else f"--{o}" for o in others)
        raise ValueError(f"{flag}: not with {shown} (the schedule follows the data's grid)")
    name = config.dataset.get("name")
    if not name or not _builder_takes(name, "grid_size"):
        raise ValueError(
            f"{flag}: the run's data set ({name}) is not generated on a grid of a chosen size "
            f"(these are: {_with_arg(name or '', 'grid_size')})"
        )
    if model.lift_kind != "identity":
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
    run = _load_run(args.run, args.checkpoint)
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

    from ..export import to_resnet

    _positive("--samples", args.samples)
    if not (math.isfinite(args.tol) and args.tol >= 0):
        raise ValueError(f"--tol: expected a finite number >= 0, got {args.tol!r}")
    run = _load_run(args.run, args.checkpoint)
    model = run.model
    x = _run_data(run.config, args.split).x
    if args.samples is not None:
        x = x[: args.samples]
    resnet = to_resnet(model).eval()
    suffix = ".pt2" if args.format == "export" else ".ts.pt"
    out = Path(args.out) if args.out else Path(args.run) / f"resnet{suffix}"
    if out.is_dir():
        raise ValueError(f"--out: {out} is a folder; name the file to write")
    if out.name in RUN_FILES and (out.parent / "model.json").is_file():
        raise ValueError(
            f"--out: {out} is one of the run's own files ({', '.join(RUN_FILES)}); name "
            "another file (default: resnet.pt2 in the run folder)"
        )
    _writable(out.parent)
    # written beside the target and moved over it only once the reloaded file matches
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=suffix)
    if hasattr(os, "fchmod"):  # the user's umask, not mkstemp's 0o600
        from ..training._io import umask_mode

        os.fchmod(fd, umask_mode())
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = _write_and_reload(resnet, x, tmp, args.format)
            ref, got = model(x), loaded(x)
        diff = float((ref - got).abs().max())
        if not diff <= args.tol:
            print(
                f"{PROG}: error: the exported network differs by {diff:.3e} > --tol "
                f"{args.tol:g}; {out} was not written"
                + (" (the previous file is kept)" if out.exists() else ""),
                file=sys.stderr,
            )
            return 1
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    print(
        f"wrote {out} ({args.format}, widths {resnet.widths}); max |diff| = {diff:.3e} "
        f"against the space-time net on {x.shape[0]} {args.split} samples"
    )
    return 0


def _write_and_reload(resnet, x, path: Path, fmt: str):
    import torch

    if fmt == "export":
        batch = torch.export.Dim("batch", min=1)
        try:
            prog = torch.export.export(resnet, (x,), dynamic_shapes=({0: batch},))
        except Exception:  # a static batch still exports the same network
            prog = torch.export.export(resnet, (x,))
        torch.export.save(prog, str(path))
        return torch.export.load(str(path)).module()
    traced = torch.jit.trace(resnet, (x,))
    torch.jit.save(traced, str(path))
    return torch.jit.load(str(path))


# --------------------------------------------------------------------------------------------
# schedule, demo, experiments
# --------------------------------------------------------------------------------------------


def _cmd_schedule(args: argparse.Namespace) -> int:
    sched = make_schedule(
        args.spec, parse_widths(args.widths), args.steps, args.T, args.rule, args.dim, args.transfer
    )
    print(sched.summary())
    print(f"widths: {sched.widths}")
    if args.json:
        _writable(Path(args.json).parent, "--json")
        sched.to_json(args.json)
        print(f"wrote {args.json}")
    if args.out:
        _writable(Path(args.out).parent)
        fig = sched.plot()
        fig.savefig(args.out, dpi=120)
        print(f"wrote {args.out}")
    return 0


def _cmd_compress(args: argparse.Namespace) -> int:
    from ..adapt import compress_run

    if args.tol is None or not (args.tol >= 0 and args.tol != float("inf")):
        raise ValueError(f"--tol: expected a finite number >= 0, got {args.tol}")
    _positive("--samples", args.samples)
    if not Path(args.run).is_dir():
        raise ValueError(f"run: no such run folder: {args.run}")
    if args.out:
        _writable(Path(args.out).parent, "--out")
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
        export_format=args.format,
        progress=not args.quiet,
    )
    print(summary.summary())
    for what, path in summary.files.items():
        print(f"wrote {what}: {path}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    code = run_demo()
    return 0 if code is None else int(code)
