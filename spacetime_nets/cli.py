"""Command line: ``spacetime-nets <command>`` (also ``python -m spacetime_nets``).

Commands: ``train`` a space-time net on a bundled data set, ``evaluate`` a trained run (on
another schedule, for continuous kernels), ``export`` it to a plain ResNet file and check it,
draw a ``schedule``, run the ``asymptotics`` and ``turnpike`` experiments, or the ``demo``.

Bad input ends with one line ``spacetime-nets: error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PROG = "spacetime-nets"
SCHEDULES = ("constant", "ramp", "hourglass", "pyramid", "moving")
MODEL_FORMAT = "spacetime-nets/model"
MODEL_VERSION = 1
EXPORT_FORMATS = ("export", "torchscript")
_EXPERIMENTS = ("asymptotics", "turnpike")
_COMMANDS = ("train", "evaluate", "export", "schedule", *_EXPERIMENTS, "demo")

__all__ = [
    "SCHEDULES",
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


class _Fmt(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except where the help already names one or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or any(action.default is v for v in (None, False, argparse.SUPPRESS)):
            return text
        return super()._get_help_string(action)


# --------------------------------------------------------------------------------------------
# schedules, models, runs
# --------------------------------------------------------------------------------------------


def parse_widths(text: str | Sequence[int]) -> tuple[int, ...]:
    """``"16,4"`` -> (16, 4): n_max, n_min (one value: both). Each must be a positive int."""
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
    widths: Sequence[int] = (16, 4),
    steps: int = 8,
    T: float = 1.0,
    rule: str = "trapezoid",
    dim: int = 1,
    transfer: str = "linear",
):
    """A :class:`grids.GridSchedule` on [0, 1] (``dim`` 1) or [0, 1]^2 (``dim`` 2, widths per
    axis: 16,4 means 16x16 -> 4x4) from a builder name of :data:`SCHEDULES` with widths
    (n_max, n_min), or from a schedule JSON file (``spec`` is its path)."""
    from grids import GridSchedule

    widths = parse_widths(widths)
    hi, lo = widths[0], widths[-1]
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"--steps: expected a positive integer, got {steps!r}")
    domain: Any = (0.0, 1.0) if dim == 1 else [(0.0, 1.0)] * dim
    if spec in SCHEDULES:
        kw = {"T": T, "domain": domain, "transfer_kind": transfer}
        if spec == "constant":
            n = hi if dim == 1 else (hi,) * dim
            return GridSchedule.constant(n, steps, rule=rule, **kw)
        if spec == "moving":
            return GridSchedule.moving(hi, steps, **kw)
        builder = {
            "ramp": GridSchedule.ramp,
            "hourglass": GridSchedule.hourglass,
            "pyramid": GridSchedule.pyramid,
        }[spec]
        return builder(hi, lo, steps, rule=rule, **kw)
    path = Path(spec)
    if not path.is_file():
        raise ValueError(
            f"--schedule: expected one of {', '.join(SCHEDULES)} or a schedule JSON file, got "
            f"{spec!r} (no such file)"
        )
    try:
        sched = GridSchedule.from_json(path)
    except ValueError as exc:
        raise ValueError(f"--schedule {spec}: {exc}") from None
    if sched.dim != dim:
        raise ValueError(
            f"--schedule {spec}: this data set needs a {dim}-D schedule, the file holds a "
            f"{sched.dim}-D one"
        )
    return sched


def build_model(config: dict, source: str | None = "model.json"):
    """Rebuild the (untrained) model of a ``model.json`` document: its schedule and the plain
    construction arguments of :class:`~spacetime_nets.models.SpaceTimeNet`. Errors are
    ValueErrors naming ``source`` (None: the constructor's own message)."""
    import torch

    from grids import GridSchedule

    from .models import SpaceTimeNet

    try:
        if config.get("format") != MODEL_FORMAT:
            raise ValueError(f"format tag {config.get('format')!r:.60}")
        if config.get("class") != "SpaceTimeNet":
            raise ValueError(f"unknown model class {config.get('class')!r:.60}")
        schedule = GridSchedule.from_json(json.dumps(config["schedule"]))
        kwargs = dict(config["kwargs"])
        if kwargs.get("in_shape") is not None:
            kwargs["in_shape"] = tuple(kwargs["in_shape"])
        model = SpaceTimeNet(
            schedule, int(config["in_features"]), int(config["out_features"]), **kwargs
        )
        dtype = getattr(torch, str(config.get("dtype", "float32")))
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        if source is None and isinstance(exc, ValueError):
            raise
        raise ValueError(f"{source}: not a usable model description ({exc})") from None
    return model.to(dtype=dtype)


def load_run(run: str | os.PathLike, checkpoint: str | None = None):
    """(model with the checkpoint's parameters, model.json config, checkpoint dict) of a run
    folder written by ``train``; ``checkpoint`` is a file name in it or a path (default last.pt)."""
    from .training import load_model_state

    run = Path(run)
    if not run.is_dir():
        raise FileNotFoundError(f"run folder not found: {run}")
    cfg_path = run / "model.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path} not found: is {run} a folder written by 'train'?")
    try:
        config = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{cfg_path}: malformed JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{cfg_path}: expected a JSON object")
    model = build_model(config)
    ckpt = Path(checkpoint) if checkpoint else run / "last.pt"
    if checkpoint and not ckpt.exists() and (run / checkpoint).exists():
        ckpt = run / checkpoint
    doc = load_model_state(model, ckpt)
    model.eval()
    return model, config, doc


def _dataset_dim(name: str) -> int:
    return 2 if name == "digits" else 1


def _load_data(name: str, seed: int, kwargs: dict, dtype: str = "float32"):
    import torch

    from . import datasets

    if name not in datasets.DATASETS:
        raise ValueError(f"--dataset: expected one of {', '.join(datasets.DATASETS)}; got {name!r}")
    return datasets.load(name, seed=seed, dtype=getattr(torch, dtype), **kwargs)


def _is_rank0() -> bool:
    return int(os.environ.get("RANK", "0") or 0) == 0


def _print(*a: Any) -> None:
    if _is_rank0():
        print(*a, flush=True)


# --------------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------------


def _cmd_train(args: argparse.Namespace) -> int:
    from .training import evaluate

    data_kw = {}
    if args.samples is not None:
        if args.dataset == "digits":
            raise ValueError("--samples: digits has a fixed size; leave --samples out")
        data_kw["n"] = args.samples
    data = _load_data(args.dataset, args.seed, data_kw, args.dtype)
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
        in_shape = list(data.meta.get("image_shape", (8, 8)))
    loss = None if args.loss == "auto" else args.loss
    config = {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "class": "SpaceTimeNet",
        "in_features": data.in_features,
        "out_features": data.out_features,
        "task": data.task,
        "dtype": args.dtype,
        "kwargs": {
            "kernel": args.kernel,
            "form": args.form,
            "activation": args.activation,
            "lift": lift,
            "method": args.method,
            "in_shape": in_shape,
            "modes": args.modes,
            "basis": args.basis,
            "init_scale": args.init_scale,
            "seed": args.seed,
        },
        "dataset": {"name": args.dataset, "seed": args.seed, "kwargs": data_kw},
        "schedule_args": {
            "spec": args.schedule,
            "widths": list(widths),
            "steps": args.steps,
            "T": args.T,
            "rule": args.rule,
            "transfer": args.transfer,
            "dim": dim,
        },
        "schedule": json.loads(schedule.to_json()),
        "training": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "optimizer": args.optimizer,
            "lr": args.lr,
            "lr_schedule": args.lr_schedule,
            "loss": loss,
            "lam": args.lam,
            "turnpike": args.turnpike,
            "seed": args.seed,
        },
    }
    model = build_model(config, source=None)
    out = Path(args.out) if args.out else Path("runs") / args.dataset
    if (out / "last.pt").exists() and args.resume is None and not args.overwrite:
        raise ValueError(
            f"--out: {out} already holds a checkpoint; pass --resume {out} to continue it, "
            "--overwrite to start again, or another --out"
        )
    if _is_rank0():
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.json").write_text(json.dumps(config, indent=1))
    try:
        history = _fit_from_args(args, model, data, out, loss)
    except KeyboardInterrupt:
        if _is_rank0():
            print(
                f"{PROG}: interrupted; the state after the last completed step is in "
                f"{out / 'interrupted.pt'} (continue with --resume {out / 'interrupted.pt'})",
                file=sys.stderr,
            )
        return 130
    if _is_rank0():
        last = history.last or {}
        test = evaluate(model, data.test, loss)
        _print(
            f"epoch {last.get('epoch')}: train {_metrics(last.get('loss'), last.get('accuracy'))}"
            f" | val {_metrics(last.get('val_loss'), last.get('val_accuracy'))}"
            f" | test {_metrics(test['loss'], test['accuracy'])}"
        )
        _print(f"wrote {out / 'last.pt'}, {out / 'model.json'}, {out / 'history.csv'}")
    return 0


def _fit_from_args(args: argparse.Namespace, model, data, out: Path, loss: str | None):
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
        resume=args.resume,
        seed=args.seed,
        progress=not args.quiet,
        checkpoint_every=args.checkpoint_every,
        grad_clip=args.grad_clip,
        lr_schedule=args.lr_schedule,
    )


def _metrics(loss: float | None, acc: float | None) -> str:
    text = "loss -" if loss is None else f"loss {loss:.4g}"
    return text + ("" if acc is None else f" accuracy {acc:.4f}")


def _new_schedule(args: argparse.Namespace, config: dict):
    """The schedule asked for by evaluate's --schedule/--widths/--steps/-T/--rule (the missing
    ones from the training run), or None when none of them is given."""
    given = {
        k: getattr(args, k)
        for k in ("schedule", "widths", "steps", "T", "rule")
        if getattr(args, k) is not None
    }
    if not given:
        return None
    old = dict(config.get("schedule_args") or {})
    spec = given.get("schedule", old.get("spec"))
    if spec not in SCHEDULES and "schedule" not in given and len(given) > 0:
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


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .training import evaluate

    model, config, doc = load_run(args.run, args.checkpoint)
    sched = _new_schedule(args, config)
    if sched is not None:
        model = model.with_schedule(sched)
    ds = config.get("dataset") or {}
    data = _load_data(
        ds.get("name"),
        int(ds.get("seed", 0)),
        ds.get("kwargs") or {},
        config.get("dtype", "float32"),
    )
    from .training import _resolve_device

    model.to(_resolve_device(args.device))
    loss = (config.get("training") or {}).get("loss")
    res = evaluate(model, getattr(data, args.split), loss, args.batch_size)
    res.update(
        {
            "split": args.split,
            "epoch": doc["epoch"],
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


def _cmd_export(args: argparse.Namespace) -> int:
    import warnings

    import torch

    from .export import to_resnet

    if args.samples is not None and args.samples < 1:
        raise ValueError(f"--samples: expected a positive integer, got {args.samples}")
    model, config, _ = load_run(args.run, args.checkpoint)
    ds = config.get("dataset") or {}
    data = _load_data(
        ds.get("name"),
        int(ds.get("seed", 0)),
        ds.get("kwargs") or {},
        config.get("dtype", "float32"),
    )
    x = getattr(data, args.split).x
    if args.samples is not None:
        x = x[: args.samples]
    resnet = to_resnet(model).eval()
    suffix = ".pt2" if args.format == "export" else ".ts.pt"
    out = Path(args.out) if args.out else Path(args.run) / f"resnet{suffix}"
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if args.format == "export":
            batch = torch.export.Dim("batch", min=1)
            try:
                prog = torch.export.export(resnet, (x,), dynamic_shapes=({0: batch},))
            except Exception:  # a static batch still exports the same network
                prog = torch.export.export(resnet, (x,))
            torch.export.save(prog, str(out))
            loaded = torch.export.load(str(out)).module()
        else:
            traced = torch.jit.trace(resnet, (x,))
            torch.jit.save(traced, str(out))
            loaded = torch.jit.load(str(out))
        ref = model(x)
        got = loaded(x)
    diff = float((ref - got).abs().max())
    print(
        f"wrote {out} ({args.format}, widths {resnet.widths}); max |diff| = {diff:.3e} "
        f"against the space-time net on {x.shape[0]} {args.split} samples"
    )
    if not diff <= args.tol:
        print(
            f"{PROG}: error: the exported network differs by {diff:.3e} > {args.tol:g}",
            file=sys.stderr,
        )
        return 1
    return 0


def _cmd_schedule(args: argparse.Namespace) -> int:
    sched = make_schedule(
        args.spec, parse_widths(args.widths), args.steps, args.T, args.rule, args.dim, args.transfer
    )
    print(sched.summary())
    print(f"widths: {sched.widths}")
    if args.json:
        sched.to_json(args.json)
        print(f"wrote {args.json}")
    if args.out:
        fig = sched.plot()
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.out, dpi=120)
        print(f"wrote {args.out}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    code = run_demo()
    return 0 if code is None else int(code)


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
    p.add_argument(
        "--rule",
        default=d("trapezoid"),
        choices=("trapezoid", "simpson", "boole", "gauss_legendre", "midpoint"),
        help="quadrature rule of the grids",
    )


def _schedule_spec_help() -> str:
    return f"a builder ({', '.join(SCHEDULES)}) or the path of a schedule JSON file"


def _train_parser(sub) -> None:
    from .datasets import DATASETS
    from .fields import ACTIVATIONS, FORMS
    from .integrate import METHODS
    from .objectives import LOSSES
    from .training import LR_SCHEDULES, OPTIMIZERS

    p = sub.add_parser(
        "train",
        help="train a space-time net on a bundled data set",
        description=(
            "Train a SpaceTimeNet (lift -> flow on a grid schedule -> quadrature readout). "
            "2-D point sets use the interval [0, 1] and a linear lift; the 8x8 digits use "
            "[0, 1]^2 and the cells lift. Writes last.pt, model.json and history.{json,csv} "
            "to --out. Run under torchrun for data-parallel training."
        ),
        epilog=(
            "example: spacetime-nets train --dataset circles --schedule hourglass "
            "--widths 16,4 --steps 8 --epochs 20 --out runs/circles"
        ),
        formatter_class=_Fmt,
    )
    p.add_argument("--dataset", default="circles", choices=DATASETS, help="data set")
    p.add_argument(
        "--samples", type=int, help="number of samples of a synthetic data set (its default)"
    )
    p.add_argument("--schedule", default="hourglass", help=_schedule_spec_help())
    _add_schedule_args(p)
    p.add_argument(
        "--transfer", default="linear", choices=("linear", "nearest", "l2"), help="Pi_k kind"
    )
    p.add_argument(
        "--kernel", default="nodal", choices=("nodal", "basis", "neural"), help="kernel storage"
    )
    p.add_argument("--modes", type=int, default=8, help="basis functions per axis (basis)")
    p.add_argument(
        "--basis", default="legendre", choices=("legendre", "fourier"), help="basis family"
    )
    p.add_argument("--form", default="inside", choices=FORMS, help="vector field form")
    p.add_argument(
        "--activation", default="tanh", choices=tuple(ACTIVATIONS), help="activation sigma"
    )
    p.add_argument("--method", default="euler", choices=METHODS, help="time stepper")
    p.add_argument(
        "--lift",
        default="auto",
        choices=("auto", "cells", "linear", "identity"),
        help="input lift (auto: cells for digits and heat, linear otherwise)",
    )
    p.add_argument("--init-scale", type=float, default=1.0, help="scale of the initial kernel")
    p.add_argument(
        "--dtype", default="float32", choices=("float32", "float64"), help="floating type"
    )
    p.add_argument(
        "--loss",
        default="auto",
        choices=("auto", *LOSSES),
        help="auto: cross_entropy for classes, mse for regression",
    )
    p.add_argument("--optimizer", default="adam", choices=OPTIMIZERS, help="optimiser")
    p.add_argument("--epochs", type=int, default=20, help="number of epochs")
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
    p = sub.add_parser(
        "evaluate",
        help="evaluate a trained run on a data split",
        description=(
            "Evaluate the model of a run folder on a split of its data set. --schedule, "
            "--widths, --steps, -T or --rule discretise it on another schedule (resolution "
            "transfer; continuous kernels only); unset ones come from the training run."
        ),
        formatter_class=_Fmt,
    )
    p.add_argument("run", help="run folder written by 'train'")
    p.add_argument("--checkpoint", default=None, help="checkpoint file (default <run>/last.pt)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="data split")
    p.add_argument("--schedule", default=None, help=_schedule_spec_help())
    _add_schedule_args(p, defaults=False)
    p.add_argument("--batch-size", type=int, default=1024, help="evaluation batch size")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_evaluate)


def _export_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a trained run to a plain ResNet file and verify it",
        description=(
            "Write the trained model as a plain variable-width ResNet (torch.export program or "
            "TorchScript), reload the file and compare it with the space-time net on a data "
            "split: prints max |diff|, exit code 1 when it exceeds --tol."
        ),
        formatter_class=_Fmt,
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
    p.add_argument(
        "--split", default="test", choices=("train", "val", "test"), help="comparison data"
    )
    p.add_argument("--samples", type=int, default=None, help="compare on the first N samples")
    p.add_argument("--tol", type=float, default=1e-4, help="largest accepted max |diff|")
    p.set_defaults(func=_cmd_export)


def _schedule_parser(sub) -> None:
    p = sub.add_parser(
        "schedule",
        help="print a grid schedule and draw it",
        description="Print the widths and a per-step summary of a schedule; save a picture.",
        epilog="example: spacetime-nets schedule hourglass --widths 32,8 --steps 12 --out s.png",
        formatter_class=_Fmt,
    )
    p.add_argument("spec", nargs="?", default="hourglass", help=_schedule_spec_help())
    _add_schedule_args(p)
    p.add_argument("--dim", type=int, default=1, choices=(1, 2), help="1: [0,1]; 2: [0,1]^2")
    p.add_argument(
        "--transfer", default="linear", choices=("linear", "nearest", "l2"), help="Pi_k kind"
    )
    p.add_argument("--out", default=None, help="PNG file for the picture")
    p.add_argument("--json", default=None, help="also save the schedule JSON here")
    p.set_defaults(func=_cmd_schedule)


def _experiment_parser(sub, name: str, load: bool) -> None:
    helps = {
        "asymptotics": "large-time asymptotics: training error and control norms against T",
        "turnpike": "turnpike experiment: exponential decay of the risk and controls in t",
    }
    p = sub.add_parser(name, help=helps[name], description=helps[name], formatter_class=_Fmt)
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
    run = getattr(experiments, f"run_{name}")
    p.set_defaults(func=lambda args: int(run(args) or 0))


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser. ``command`` names the sub-command about to run: only that one of
    the experiment commands imports its module (so the others start fast)."""
    parser = _Parser(
        prog=PROG,
        description="Continuous space-time neural networks and the variable-width ResNets "
        "they define.",
        epilog="'spacetime-nets <command> --help' describes each command.",
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
    p = sub.add_parser("demo", help="run the built-in demo", description="Run the built-in demo.")
    p.set_defaults(func=_cmd_demo)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    for a in argv:
        if a in _COMMANDS:
            return a
    return None


def _error(exc: BaseException) -> None:
    text = " ".join(str(exc).split()) or type(exc).__name__
    print(f"{PROG}: error: {text}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit code:
    0 success, 1 failure of the run (divergence, an export that does not match), 2 bad input,
    130 interrupted."""
    from .training import TrainingDiverged

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(_command_of(argv))
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except _UsageError as exc:
        _error(exc)
        return 2
    except TrainingDiverged as exc:
        _error(exc)
        return 1
    except (ValueError, FileNotFoundError, OSError) as exc:
        _error(exc)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
