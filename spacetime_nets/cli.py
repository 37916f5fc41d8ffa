"""Command line: ``spacetime-nets <command>`` (also ``python -m spacetime_nets``).

Commands: ``train`` a space-time net on a bundled data set, ``evaluate`` a trained run (on
another schedule, for continuous kernels), ``export`` it to a plain ResNet file and check it,
draw a ``schedule``, run the ``asymptotics`` and ``turnpike`` experiments, or the ``demo``.

The commands are thin: a run is described by :class:`spacetime_nets.runs.RunConfig` (the
run folder's ``model.json``), built by :func:`spacetime_nets.runs.build_model` and read back
by :func:`spacetime_nets.runs.load_run`.

Every failure ends with one line ``spacetime-nets: error: ...`` on stderr and an exit code:
0 success, 1 the run failed (divergence, an export that does not match, an unexpected error),
2 bad input (arguments, files, a resume that does not fit), 130 interrupted. Set
``SPACETIME_NETS_DEBUG=1`` to see the traceback of an unexpected error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .runs import (
    BASES,
    DTYPES,
    KERNELS,
    LIFTS,
    MODEL_FORMAT,
    MODEL_VERSION,
    RULES,
    SCHEDULES,
    TRANSFERS,
    ModelOptions,
    RunConfig,
    make_schedule,
    parse_widths,
)
from .runs import build_model as _build_model
from .runs import load_run as _load_run

PROG = "spacetime-nets"
EXPORT_FORMATS = ("export", "torchscript")
SPLITS = ("train", "val", "test")
LIFT_CHOICES = ("auto", *LIFTS)
_EXPERIMENTS = ("asymptotics", "turnpike")
_COMMANDS = ("train", "evaluate", "export", "schedule", *_EXPERIMENTS, "demo")
# the options the experiments' --fast replaces by its own sizes
_FAST_SIZES = ("Ts", "n", "steps", "max_iter", "augment", "modes", "outer", "waist", "dt")

__all__ = [
    "EXPORT_FORMATS",
    "MODEL_FORMAT",
    "MODEL_VERSION",
    "SCHEDULES",
    "SPLITS",
    "build_model",
    "build_parser",
    "load_run",
    "main",
    "make_schedule",
    "parse_widths",
]


class _UsageError(Exception):
    """A command-line mistake found by argparse."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error becomes one line and exit code 2 (raised to :func:`main`)."""

    def error(self, message: str):  # type: ignore[override]
        raise _UsageError(f"{message} (see '{self.prog} --help')")


class _Fmt(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except where the help already names one or there is none; keeps the
    line breaks of the examples."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or any(action.default is v for v in (None, False, argparse.SUPPRESS)):
            return text
        return super()._get_help_string(action)


# --------------------------------------------------------------------------------------------
# runs (the library functions, with the signatures this module has always had)
# --------------------------------------------------------------------------------------------


def build_model(config: dict | RunConfig, source: str | None = "model.json"):
    """The untrained model of a ``model.json`` document (see
    :func:`spacetime_nets.runs.build_model`)."""
    return _build_model(config, source)


def load_run(run: str | os.PathLike, checkpoint: str | None = None):
    """(model with the checkpoint's weights, model.json as a dict, checkpoint dict) of a run
    folder; :func:`spacetime_nets.runs.load_run` returns the same as a ``Run``."""
    r = _load_run(run, checkpoint)
    return r.model, r.config.to_dict(), r.checkpoint


def _dataset_dim(name: str) -> int:
    return 2 if name == "digits" else 1


def _load_data(dataset: dict, dtype: str = "float32"):
    import torch

    from . import datasets

    name = dataset.get("name")
    if name not in datasets.DATASETS:
        raise ValueError(f"--dataset: expected one of {', '.join(datasets.DATASETS)}; got {name!r}")
    return datasets.load(
        name, seed=int(dataset.get("seed", 0)), dtype=getattr(torch, dtype), **dataset["kwargs"]
    )


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


def _dataset_of(args: argparse.Namespace) -> dict:
    data_kw = {}
    if args.samples is not None:
        if args.dataset == "digits":
            raise ValueError("--samples: digits has a fixed size; leave --samples out")
        data_kw["n"] = args.samples
    return {"name": args.dataset, "seed": args.seed, "kwargs": data_kw}


def _train_config(args: argparse.Namespace, data) -> RunConfig:
    dim = _dataset_dim(args.dataset)
    widths = parse_widths(args.widths)
    schedule = make_schedule(
        args.schedule, widths, args.steps, args.T, args.rule, dim, args.transfer
    )
    lift = args.lift
    if lift == "auto":
        lift = "cells" if args.dataset in ("digits", "heat") else "linear"
    in_shape = None
    if lift == "cells" and args.dataset == "digits":
        in_shape = tuple(data.meta.get("image_shape", (8, 8)))
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
    )
    options.check()
    return RunConfig(
        in_features=data.in_features,
        out_features=data.out_features,
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
            "rule": args.rule,
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
            "lam": args.lam,
            "turnpike": args.turnpike,
            "seed": args.seed,
        },
    )


def _resume_checkpoint(resume: str) -> Path:
    p = Path(resume)
    if p.is_dir():
        p = p / "last.pt"
    if not p.is_file():
        raise FileNotFoundError(f"--resume: checkpoint not found: {p}")
    return p


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
    from .training import evaluate, load_model_state

    data = _load_data(_dataset_of(args), args.dtype)
    config = _train_config(args, data)
    model = build_model(config, source=None)
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
        if args.resume is None:  # starting again: a previous run's checkpoints no longer fit
            for name in ("last.pt", "interrupted.pt"):
                (out / name).unlink(missing_ok=True)
        _writable(out)
        config.write(out)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="resume: learning rate")
            history = _fit_from_args(args, model, data, out, config.training["loss"], ckpt)
    except KeyboardInterrupt as exc:
        where = getattr(exc, "checkpoint", None)
        if where:
            _note(
                f"interrupted; the state after the last completed step is in {where} "
                f"(continue with --resume {where})"
            )
        else:
            _note("interrupted before the first step; no checkpoint was written")
        return 130
    if _is_rank0():
        last = history.last or {}
        test = evaluate(model, data.test, config.training["loss"])
        _print(
            f"epoch {last.get('epoch')}: train {_metrics(last.get('loss'), last.get('accuracy'))}"
            f" | val {_metrics(last.get('val_loss'), last.get('val_accuracy'))}"
            f" | test {_metrics(test['loss'], test['accuracy'])}"
        )
        _print(f"wrote {out / 'last.pt'}, {out / 'model.json'}, {out / 'history.csv'}")
    return 0


def _writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ValueError(f"--out: cannot write to {folder} ({exc.strerror or exc})") from None


def _fit_from_args(args, model, data, out: Path, loss: str | None, ckpt: Path | None):
    from .training import fit

    return fit(
        model,
        data.train,
        data.val,
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        loss=loss,
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
    )


def _metrics(loss: float | None, acc: float | None) -> str:
    text = "loss -" if loss is None else f"loss {loss:.4g}"
    return text + ("" if acc is None else f" accuracy {acc:.4f}")


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
        raise ValueError(
            "--schedule: the run was trained on a schedule file; name a builder "
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
    if not config.dataset.get("name"):
        raise ValueError(
            "model.json names no bundled data set (a run written by a script); evaluate it "
            "with spacetime_nets.training.evaluate on its own data"
        )
    data = _load_data({"kwargs": {}, **config.dataset}, config.dtype)
    return getattr(data, split)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .training import evaluate, resolve_device

    _positive("--batch-size", args.batch_size)
    run = _load_run(args.run, args.checkpoint)
    model, config = run.model, run.config
    sched = _new_schedule(args, config)
    if sched is not None:
        model = model.with_schedule(sched)
    split = _run_data(config, args.split)
    model.to(resolve_device(args.device))
    res = evaluate(model, split, config.training.get("loss"), args.batch_size)
    res.update(
        {
            "split": args.split,
            "epoch": run.checkpoint["epoch"],
            "widths": model.schedule.widths,
            "steps": model.schedule.num_steps,
        }
    )
    if args.json:
        print(json.dumps(res))
    else:
        w = res["widths"]
        shown = w if len(w) <= 10 else [*w[:3], "...", *w[-3:]]
        print(
            f"{args.split} ({res['n']} samples, epoch {res['epoch']}, {res['steps']} steps, "
            f"widths {shown}): {_metrics(res['loss'], res['accuracy'])}"
        )
    return 0


def _positive(name: str, v: int | None) -> None:
    if v is not None and v < 1:
        raise ValueError(f"{name}: expected a positive integer, got {v}")


def _cmd_export(args: argparse.Namespace) -> int:
    import torch

    from .export import to_resnet

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
    _writable(out.parent)
    # written beside the target and moved over it only once the reloaded file matches
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=suffix)
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
        _writable(Path(args.json).parent)
        sched.to_json(args.json)
        print(f"wrote {args.json}")
    if args.out:
        _writable(Path(args.out).parent)
        fig = sched.plot()
        fig.savefig(args.out, dpi=120)
        print(f"wrote {args.out}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    code = run_demo()
    return 0 if code is None else int(code)


class _Unset:
    """The default of an option --fast replaces, so that an explicit value can be told apart."""

    def __init__(self, value: Any) -> None:
        self.value = value


def _fast_guard(parser: argparse.ArgumentParser, run) -> Any:
    """Wrap an experiment's run function: --fast (or SPACETIME_FAST=1) together with an
    explicit size option is refused instead of the size being silently replaced."""
    dests = [d for d in _FAST_SIZES if parser.get_default(d) is not None]
    parser.set_defaults(**{d: _Unset(parser.get_default(d)) for d in dests})

    def guarded(args: argparse.Namespace) -> int:
        explicit = [d for d in dests if not isinstance(getattr(args, d), _Unset)]
        for d in dests:
            if isinstance(getattr(args, d), _Unset):
                setattr(args, d, getattr(args, d).value)
        fast = getattr(args, "fast", False) or os.environ.get("SPACETIME_FAST", "") == "1"
        if fast and explicit:
            source = "--fast" if getattr(args, "fast", False) else "SPACETIME_FAST=1"
            names = ", ".join("--" + d.replace("_", "-") for d in explicit)
            raise ValueError(
                f"{source} chooses its own sizes and would ignore {names}; drop {source} or "
                "those options"
            )
        _check_experiment_args(args)
        return int(run(args) or 0)

    return guarded


def _check_experiment_args(args: argparse.Namespace) -> None:
    from .validation import check_int, check_real

    for name in ("n", "steps", "max_iter", "modes", "outer", "waist"):
        if hasattr(args, name):
            check_int("--" + name.replace("_", "-"), getattr(args, name), 1)
    if hasattr(args, "augment"):
        check_int("--augment", args.augment, 0)
    for name in ("lam", "tol", "init_scale", "scaling_T"):
        if getattr(args, name, None) is not None:
            check_real("--" + name.replace("_", "-"), getattr(args, name))
    for name in ("dt", "threshold"):
        if getattr(args, name, None) is not None:
            check_real("--" + name, getattr(args, name), positive=True)
    for T in getattr(args, "Ts", None) or ():
        check_real("--Ts", T, positive=True)


# --------------------------------------------------------------------------------------------
# the parser
# --------------------------------------------------------------------------------------------


def _add_schedule_args(p: argparse.ArgumentParser, defaults: bool = True) -> None:
    d = (lambda v: v) if defaults else (lambda v: None)
    p.add_argument(
        "--widths",
        default=d("16,4"),
        metavar="N_MAX,N_MIN",
        help="widths of the schedule: n_max,n_min (per axis in 2-D: 16,4 means 16x16 -> 4x4)",
    )
    p.add_argument("--steps", type=int, default=d(8), help="number of time steps K (layers)")
    p.add_argument("-T", "--horizon", dest="T", type=float, default=d(1.0), help="horizon T")
    p.add_argument("--rule", default=d("trapezoid"), choices=RULES, help="quadrature rule")


def _schedule_spec_help() -> str:
    return f"a builder ({', '.join(SCHEDULES)}) or the path of a schedule JSON file"


_EXAMPLES = {
    "train": """examples:
  spacetime-nets train --dataset circles --schedule hourglass --widths 16,4 --steps 8 \\
      --epochs 20 --out runs/circles
  spacetime-nets train --dataset circles --widths 16,4 --steps 8 --epochs 40 --lr 1e-3 \\
      --out runs/circles --resume runs/circles      # continue with a lower learning rate""",
    "evaluate": """examples:
  spacetime-nets evaluate runs/circles                       # test split, last.pt
  spacetime-nets evaluate runs/circles --split val --json
  spacetime-nets evaluate runs/circles --widths 32,8 --steps 16   # finer grids (basis kernels)""",
    "export": """examples:
  spacetime-nets export runs/circles                         # runs/circles/resnet.pt2
  spacetime-nets export runs/circles --format torchscript --out resnet.ts.pt --tol 1e-5""",
    "schedule": """examples:
  spacetime-nets schedule hourglass --widths 32,8 --steps 12 --out hourglass.png
  spacetime-nets schedule pyramid --dim 2 --widths 16,4 --steps 6 --json pyramid.json""",
    "asymptotics": """examples:
  spacetime-nets asymptotics --out runs/asymptotics
  spacetime-nets asymptotics --fast --out runs/asymptotics-quick   # a few seconds""",
    "turnpike": """examples:
  spacetime-nets turnpike --out runs/turnpike
  spacetime-nets turnpike --Ts 5 10 --dt 0.25 --out runs/turnpike-short""",
    "demo": """examples:
  spacetime-nets demo                       # writes runs/demo/
  SPACETIME_FAST=1 spacetime-nets demo      # two epochs only""",
}


def _add(sub, name: str, help: str, description: str) -> argparse.ArgumentParser:
    return sub.add_parser(
        name, help=help, description=description, epilog=_EXAMPLES[name], formatter_class=_Fmt
    )


def _train_parser(sub) -> None:
    from .datasets import DATASETS
    from .fields import ACTIVATIONS, FORMS
    from .integrate import METHODS
    from .objectives import LOSSES
    from .training import LR_SCHEDULES, OPTIMIZERS

    p = _add(
        sub,
        "train",
        "train a space-time net on a bundled data set",
        "Train a SpaceTimeNet (lift -> flow on a grid schedule -> quadrature readout). "
        "2-D point sets use the interval [0, 1] and a linear lift; the 8x8 digits use "
        "[0, 1]^2 and the cells lift. Writes last.pt, model.json and history.{json,csv} "
        "to --out. Run under torchrun for data-parallel training. With --resume, the model, "
        "data set, schedule, dtype and optimiser must be those of the run (else exit 2); a "
        "new --lr is applied.",
    )
    p.add_argument("--dataset", default="circles", choices=DATASETS, help="data set")
    p.add_argument(
        "--samples", type=int, help="number of samples of a synthetic data set (its default)"
    )
    p.add_argument("--schedule", default="hourglass", help=_schedule_spec_help())
    _add_schedule_args(p)
    p.add_argument("--transfer", default="linear", choices=TRANSFERS, help="Pi_k kind")
    p.add_argument("--kernel", default="nodal", choices=KERNELS, help="kernel storage")
    p.add_argument("--modes", type=int, default=8, help="basis functions per axis (basis)")
    p.add_argument("--basis", default="legendre", choices=BASES, help="basis family")
    p.add_argument("--form", default="inside", choices=FORMS, help="vector field form")
    p.add_argument(
        "--activation", default="tanh", choices=tuple(ACTIVATIONS), help="activation sigma"
    )
    p.add_argument("--method", default="euler", choices=METHODS, help="time stepper")
    p.add_argument(
        "--lift",
        default="auto",
        choices=LIFT_CHOICES,
        help="input lift (auto: cells for digits and heat, linear otherwise)",
    )
    p.add_argument("--init-scale", type=float, default=1.0, help="scale of the initial kernel")
    p.add_argument("--dtype", default="float32", choices=DTYPES, help="floating type")
    p.add_argument(
        "--loss",
        default="auto",
        choices=("auto", *LOSSES),
        help="auto: cross_entropy for classes, mse for regression",
    )
    p.add_argument("--optimizer", default="adam", choices=OPTIMIZERS, help="optimiser")
    p.add_argument("--epochs", type=int, default=20, help="number of epochs (in all, on resume)")
    p.add_argument("--batch-size", type=int, default=64, help="global batch size")
    p.add_argument("--lr", type=float, default=1e-2, help="learning rate")
    p.add_argument(
        "--lr-schedule", default="constant", choices=LR_SCHEDULES, help="learning-rate schedule"
    )
    p.add_argument("--lam", type=float, default=0.0, help="weight of int_0^T |u|^2 dt")
    p.add_argument(
        "--turnpike", type=float, default=None, help="weight of int_0^T E(x(t)) dt (turnpike)"
    )
    p.add_argument("--grad-clip", type=float, default=None, help="clip the gradient norm")
    p.add_argument("--checkpoint-every", type=int, default=1, help="epochs between checkpoints")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out", default=None, help="output folder (default runs/<dataset>)")
    p.add_argument("--seed", type=int, default=0, help="seed of data, initialisation, shuffling")
    p.add_argument("--resume", default=None, help="checkpoint file or run folder to continue")
    p.add_argument("--overwrite", action="store_true", help="start again in an existing --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_train)


def _evaluate_parser(sub) -> None:
    p = _add(
        sub,
        "evaluate",
        "evaluate a trained run on a data split",
        "Evaluate the model of a run folder on a split of its data set. --schedule, "
        "--widths, --steps, -T or --rule discretise it on another schedule (resolution "
        "transfer; continuous kernels only); unset ones come from the training run.",
    )
    p.add_argument("run", help="run folder written by 'train'")
    p.add_argument("--checkpoint", default=None, help="checkpoint file (default <run>/last.pt)")
    p.add_argument("--split", default="test", choices=SPLITS, help="data split")
    p.add_argument("--schedule", default=None, help=_schedule_spec_help())
    _add_schedule_args(p, defaults=False)
    p.add_argument("--batch-size", type=int, default=1024, help="evaluation batch size")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_evaluate)


def _export_parser(sub) -> None:
    p = _add(
        sub,
        "export",
        "export a trained run to a plain ResNet file and verify it",
        "Write the trained model as a plain variable-width ResNet (torch.export program or "
        "TorchScript), reload the file and compare it with the space-time net on a data "
        "split. The file replaces --out only when max |diff| <= --tol; otherwise exit code 1 "
        "and a previous file is kept.",
    )
    p.add_argument("run", help="run folder written by 'train'")
    p.add_argument("--checkpoint", default=None, help="checkpoint file (default <run>/last.pt)")
    p.add_argument(
        "--format",
        default="export",
        choices=EXPORT_FORMATS,
        help="export: torch.export program (torch.export.save); torchscript: traced module",
    )
    p.add_argument(
        "--out", default=None, help="output file (default <run>/resnet.pt2 or resnet.ts.pt)"
    )
    p.add_argument("--split", default="test", choices=SPLITS, help="comparison data")
    p.add_argument("--samples", type=int, default=None, help="compare on the first N samples")
    p.add_argument("--tol", type=float, default=1e-4, help="largest accepted max |diff| (>= 0)")
    p.set_defaults(func=_cmd_export)


def _schedule_parser(sub) -> None:
    p = _add(
        sub,
        "schedule",
        "print a grid schedule and draw it",
        "Print the widths and a per-step summary of a schedule; save a picture.",
    )
    p.add_argument("spec", nargs="?", default="hourglass", help=_schedule_spec_help())
    _add_schedule_args(p)
    p.add_argument("--dim", type=int, default=1, choices=(1, 2), help="1: [0,1]; 2: [0,1]^2")
    p.add_argument("--transfer", default="linear", choices=TRANSFERS, help="Pi_k kind")
    p.add_argument("--out", default=None, help="PNG file for the picture")
    p.add_argument("--json", default=None, help="also save the schedule JSON here")
    p.set_defaults(func=_cmd_schedule)


def _experiment_parser(sub, name: str, load: bool) -> None:
    helps = {
        "asymptotics": "large-time asymptotics: training error and control norms against T",
        "turnpike": "turnpike experiment: exponential decay of the risk and controls in t",
    }
    p = _add(sub, name, helps[name], helps[name] + ". --fast (or SPACETIME_FAST=1) runs "
             "tiny sizes and cannot be combined with explicit sizes.")  # fmt: skip
    if not load:
        return
    try:
        from . import experiments
    except Exception as exc:  # the experiments module is optional here
        message = f"{name}: the experiments module is not available ({type(exc).__name__}: {exc})"

        def unavailable(args: argparse.Namespace) -> int:
            raise ValueError(message)

        p.set_defaults(func=unavailable)
        return
    getattr(experiments, f"add_{name}_args")(p)
    p.set_defaults(func=_fast_guard(p, getattr(experiments, f"run_{name}")))


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser. ``command`` names the sub-command about to run: only that one of
    the experiment commands imports its module (so the others start fast)."""
    parser = _Parser(
        prog=PROG,
        description="Continuous space-time neural networks and the variable-width ResNets "
        "they define.",
        epilog="'spacetime-nets <command> --help' describes each command, with examples.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    _train_parser(sub)
    _evaluate_parser(sub)
    _export_parser(sub)
    _schedule_parser(sub)
    for name in _EXPERIMENTS:
        _experiment_parser(sub, name, load=command == name)
    p = _add(sub, "demo", "run the built-in demo", "Run the built-in demo (as make demo).")
    p.set_defaults(func=_cmd_demo)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    for a in argv:
        if a in _COMMANDS:
            return a
    return None


def _error(exc: BaseException | str) -> None:
    text = exc if isinstance(exc, str) else (" ".join(str(exc).split()) or type(exc).__name__)
    print(f"{PROG}: error: {text}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit code:
    0 success, 1 failure of the run (divergence, an export that does not match, an unexpected
    error), 2 bad input, 130 interrupted."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        from .training import TrainingDiverged

        parser = build_parser(_command_of(argv))
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except _UsageError as exc:
        _error(exc)
        return 2
    except TrainingDiverged as exc:
        _error(exc)
        return 1
    except (ValueError, FileNotFoundError) as exc:
        _error(exc)
        return 2
    except OSError as exc:
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        _error(f"{exc.strerror or exc}{where}")
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        _error("out of memory; use smaller widths, fewer steps or a smaller --batch-size")
        return 1
    except Exception as exc:  # an unexpected failure: one line, the traceback on request
        if os.environ.get("SPACETIME_NETS_DEBUG") == "1":
            traceback.print_exc()
        _error(
            f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]} (set "
            "SPACETIME_NETS_DEBUG=1 for the traceback)"
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
