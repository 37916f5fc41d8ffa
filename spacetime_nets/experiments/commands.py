"""The two command-line experiments, ``asymptotics`` and ``turnpike``: their options, the
check of those options, and the runs that write the tables and figures."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .. import datasets, plotting, theory
from ..fullbatch import FULLBATCH_OPTIMIZERS
from ..tables import format_arc, format_table, write_csv
from .models import MODELS, make_model
from .sweeps import SWEEP_COLUMNS, horizon_sweep, scaling_check
from .turnpike import TURNPIKE_COLUMNS, train_turnpike

__all__ = [
    "EXPERIMENT_DATASETS",
    "FAST_SIZES",
    "check_args",
    "add_asymptotics_args",
    "run_asymptotics",
    "add_turnpike_args",
    "run_turnpike",
    "main",
]

EXPERIMENT_DATASETS = ("circles", "annuli", "xor")
"""The data sets the experiments' ``--datasets`` option takes (names of
[`spacetime_nets.datasets.REGISTRY`][spacetime_nets.datasets.REGISTRY])."""


@contextlib.contextmanager
def _torch_threads(n: int = 1):
    """Run with ``n`` intra-op threads, restoring the previous setting: the models here are
    tiny, and threads only add synchronisation (and spinning when the machine is busy)."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _fast(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "fast", False)) or os.environ.get("SPACETIME_FAST", "") == "1"


FAST_SIZES = ("Ts", "n", "steps", "max_iter", "augment", "modes", "outer", "waist", "dt")
"""The options whose values the fast mode (``--fast`` or ``SPACETIME_FAST=1``) replaces by its
own sizes."""


def check_args(args: argparse.Namespace, command: str) -> None:
    """Refuse options an experiment cannot run with, before any work.

    Sizes must be positive integers (``augment`` >= 0), ``lam``, ``tol``, ``init_scale`` and
    ``scaling_T`` finite and >= 0, ``dt``, ``threshold`` and every T positive. In fast mode
    (``--fast`` or ``SPACETIME_FAST=1``) a size option set to anything but its default is
    refused: the fast mode would replace it silently.

    Args:
        args: the parsed options of
            [`add_asymptotics_args`][spacetime_nets.experiments.add_asymptotics_args] /
            [`add_turnpike_args`][spacetime_nets.experiments.add_turnpike_args].
        command: ``"asymptotics"`` or ``"turnpike"``.

    Raises:
        ValueError: naming the option, what was expected and what came.
    """
    from ..validation import check_int, check_real

    entry = _COMMANDS.get(command) if isinstance(command, str) else None
    if entry is None:
        raise ValueError(f"command: expected asymptotics or turnpike, got {command!r}")
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
    if _fast(args):
        defaults = vars(entry.add_args(argparse.ArgumentParser()).parse_args([]))
        changed = [
            "--" + d.replace("_", "-")
            for d in FAST_SIZES
            if d in defaults and hasattr(args, d) and getattr(args, d) != defaults[d]
        ]
        if changed:
            source = "--fast" if getattr(args, "fast", False) else "SPACETIME_FAST=1"
            raise ValueError(
                f"{source} chooses its own sizes and would ignore {', '.join(changed)}; drop "
                f"{source} or those options"
            )


def _common_args(
    parser: argparse.ArgumentParser, out: str, Ts: list[float], lam: float, max_iter: int
) -> None:
    parser.add_argument("--out", default=out, help=f"output folder (default {out})")
    parser.add_argument(
        "--fast", action="store_true", help="tiny sizes (tests); also SPACETIME_FAST=1"
    )
    parser.add_argument("--Ts", type=float, nargs="+", default=Ts, help="horizons T")
    parser.add_argument("--lam", type=float, default=lam, help="control penalty lambda")
    parser.add_argument(
        "--datasets", nargs="+", default=None, choices=EXPERIMENT_DATASETS, help="data sets"
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", type=int, default=90, help="points generated (70%% train)")
    parser.add_argument("--augment", type=int, default=6, help="NeuralODE extra dimensions")
    parser.add_argument("--modes", type=int, default=8, help="basis functions of the kernel")
    parser.add_argument("--outer", type=int, default=16, help="hourglass outer width")
    parser.add_argument("--waist", type=int, default=10, help="hourglass waist width")
    parser.add_argument(
        "--max-iter", type=int, default=max_iter, help="optimiser iterations per fit"
    )
    parser.add_argument("--tol", type=float, default=1e-10, help="stopping tolerance")
    parser.add_argument("--optimizer", default="lbfgs", choices=FULLBATCH_OPTIMIZERS)


def add_asymptotics_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``python -m spacetime_nets asymptotics``.

    Args:
        parser: the (sub)parser to add the options to.

    Returns:
        ``parser``, with the options added.
    """
    _common_args(parser, "runs/asymptotics", [1.0, 2.0, 4.0, 8.0, 16.0, 32.0], 1e-3, max_iter=3000)
    parser.add_argument("--steps", type=int, default=16, help="Euler steps K (every T)")
    parser.add_argument(
        "--cold-start",
        action="store_true",
        help="start every T from the base model (default: from the previous T's minimiser)",
    )
    parser.add_argument(
        "--scaling-T",
        type=float,
        default=8.0,
        help="T of the scaling-lemma check on the first data set (0: skip)",
    )
    return parser


def add_turnpike_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of ``python -m spacetime_nets turnpike``.

    Args:
        parser: the (sub)parser to add the options to.

    Returns:
        ``parser``, with the options added.
    """
    _common_args(parser, "runs/turnpike", [5.0, 10.0, 20.0], 1e-2, max_iter=2500)
    parser.add_argument("--dt", type=float, default=0.3125, help="step size (K = T / dt)")
    parser.add_argument("--loss", default="l2", choices=("l1", "l2", "mse"))
    parser.add_argument("--threshold", type=float, default=1e-2)
    parser.add_argument("--init-scale", type=float, default=0.1, help="initial control size")
    return parser


def _dataset(name: str, n: int, seed: int) -> datasets.DatasetSplits:
    return datasets.load(name, seed=seed, n=n, dtype=torch.float64)


def _print(text: str) -> None:
    print(text, flush=True)


def run_asymptotics(args: argparse.Namespace) -> int:
    """ERM horizon sweeps (and the scaling check) for every data set x model; writes
    ``asymptotics.csv`` (one row per T), ``asymptotics_summary.csv`` (slope, T*l2 ratio),
    ``scaling.csv``, ``asymptotics_<data>.png`` and ``trajectories_<data>_<model>.png``.

    The options are checked first ([`check_args`][spacetime_nets.experiments.check_args]); the
    tables are printed as they are made. Runs with one torch thread.

    Args:
        args: the options of
            [`add_asymptotics_args`][spacetime_nets.experiments.add_asymptotics_args] (``out``,
            ``Ts``, ``lam``, ``datasets``, ``models``, the sizes...).

    Returns:
        The exit code, 0.

    Raises:
        ValueError: bad options.
    """
    with _torch_threads(1):
        return _run_asymptotics(args)


def _run_asymptotics(args: argparse.Namespace) -> int:
    check_args(args, "asymptotics")
    fast = _fast(args)
    names = args.datasets or (["circles"] if fast else ["circles", "xor"])
    Ts = [1.0, 2.0, 4.0] if fast else list(args.Ts)
    n = 24 if fast else args.n
    steps = 4 if fast else args.steps
    max_iter = 15 if fast else args.max_iter
    aug, modes = (2, 3) if fast else (args.augment, args.modes)
    outer, waist = (6, 4) if fast else (args.outer, args.waist)
    os.makedirs(args.out, exist_ok=True)
    all_rows, summary_rows, scaling_rows = [], [], []
    t_start = time.perf_counter()
    for dname in names:
        ds = _dataset(dname, n, args.seed)
        sweeps = {}
        for mname in args.models:
            base = make_model(
                mname,
                ds.in_features,
                ds.out_features,
                1.0,
                steps,
                augment=aug,
                modes=modes,
                outer=outer,
                waist=waist,
                seed=args.seed,
            )
            sw = horizon_sweep(
                lambda T, base=base: theory.rescale_horizon(base, T),
                ds,
                Ts,
                args.lam,
                loss="mse",
                optimizer=args.optimizer,
                max_iter=max_iter,
                tol=args.tol,
                seed=args.seed,
                warm_start=not args.cold_start,
            )
            sweeps[mname] = sw
            _print(f"\n== {dname} / {mname}\n{sw.summary()}")
            for r in sw.rows:
                all_rows.append({"dataset": dname, "model": mname, **r})
            summary_rows.append(
                {
                    "dataset": dname,
                    "model": mname,
                    "lam": args.lam,
                    "slope": sw.slope,
                    "T_l2_ratio": sw.T_l2_ratio,
                    "error_T_min": sw.errors[0],
                    "error_T_max": sw.errors[-1],
                    "met_slope": bool(sw.slope <= -0.9 or sw.errors[-1] <= 1e-6),
                    "met_T_l2": bool(sw.T_l2_ratio <= 3.0),
                }
            )
            fig = plotting.plot_trajectories(
                sw.models[-1], ds.train.x, ds.train.y, f"{dname} / {mname}, T={Ts[-1]:g}"
            )
            plotting.save_figure(fig, os.path.join(args.out, f"trajectories_{dname}_{mname}.png"))
            scaling_T = 2.0 if fast else args.scaling_T
            if scaling_T > 0 and dname == names[0]:
                chk = scaling_check(
                    theory.rescale_horizon(base, scaling_T),
                    ds,
                    args.lam,
                    loss="mse",
                    max_iter=30 if fast else max(5000, max_iter),
                    tol=1e-13,
                )
                scaling_rows.append({"dataset": dname, "model": mname, **chk.row()})
        fig = plotting.plot_asymptotics(sweeps, f"ERM on {dname}, lam={args.lam:g}")
        plotting.save_figure(fig, os.path.join(args.out, f"asymptotics_{dname}.png"))
    cols = ["dataset", "model", *SWEEP_COLUMNS]
    write_csv(os.path.join(args.out, "asymptotics.csv"), all_rows, cols)
    scols = list(summary_rows[0]) if summary_rows else ["dataset", "model"]
    write_csv(os.path.join(args.out, "asymptotics_summary.csv"), summary_rows, scols)
    _print("\n== summary: slope of log(error) vs log(T), max/min of T * int |u_T|^2")
    _print(format_table(summary_rows, scols))
    if scaling_rows:
        kcols = list(scaling_rows[0])
        write_csv(os.path.join(args.out, "scaling.csv"), scaling_rows, kcols)
        _print("\n== scaling lemma: training at (T, lam) vs (1, lam / T)")
        _print(format_table(scaling_rows, kcols))
    _print(f"\nwrote {args.out} in {time.perf_counter() - t_start:.1f} s")
    return 0


def run_turnpike(args: argparse.Namespace) -> int:
    """Turnpike vs ERM profiles for every data set x model; writes ``turnpike.csv`` (fitted
    mu, hitting times per problem and T), ``turnpike_summary.csv``,
    ``turnpike_profiles_<data>_<model>.csv``, ``turnpike_<data>_<model>.png`` and
    ``trajectories_<data>_<model>.png``.

    The options are checked first ([`check_args`][spacetime_nets.experiments.check_args]); the
    tables are printed as they are made. Runs with one torch thread.

    Args:
        args: the options of
            [`add_turnpike_args`][spacetime_nets.experiments.add_turnpike_args] (``out``,
            ``Ts``, ``lam``, ``dt``, ``loss``, ``threshold``, the sizes...).

    Returns:
        The exit code, 0.

    Raises:
        ValueError: bad options.
    """
    with _torch_threads(1):
        return _run_turnpike(args)


def _run_turnpike(args: argparse.Namespace) -> int:
    check_args(args, "turnpike")
    fast = _fast(args)
    names = args.datasets or ["circles"]
    Ts = [1.0, 2.0] if fast else list(args.Ts)
    dt = 0.25 if fast else args.dt  # 3 points on the common arc [0.2, 0.8]
    n = 24 if fast else args.n
    max_iter = 15 if fast else args.max_iter
    aug, modes = (2, 3) if fast else (args.augment, args.modes)
    outer, waist = (6, 4) if fast else (args.outer, args.waist)
    os.makedirs(args.out, exist_ok=True)
    rows, summary_rows = [], []
    profile_files = []
    t_start = time.perf_counter()
    for dname in names:
        ds = _dataset(dname, n, args.seed)
        for mname in args.models:

            def build(T: float, mname: str = mname, ds=ds) -> nn.Module:
                steps = max(1, round(T / dt))
                return make_model(
                    mname,
                    ds.in_features,
                    ds.out_features,
                    T,
                    steps,
                    augment=aug,
                    modes=modes,
                    outer=outer,
                    waist=waist,
                    init_scale=args.init_scale,
                    seed=args.seed,
                )

            res = train_turnpike(
                build,
                ds,
                Ts,
                args.lam,
                loss=args.loss,
                threshold=args.threshold,
                optimizer=args.optimizer,
                max_iter=max_iter,
                tol=args.tol,
                seed=args.seed,
            )
            _print(f"\n== {dname} / {mname}\n{res.summary()}")
            for r in res.rows:
                rows.append({"dataset": dname, "model": mname, **r})
            erm_hits = [pr.t_hit for pr in res.erm]
            summary_rows.append(
                {
                    "dataset": dname,
                    "model": mname,
                    "lam": args.lam,
                    "loss": args.loss,
                    # rates fitted on one arc for every T (common_arc); own arcs: diagnostic
                    "common_arc": format_arc(res.common_window),
                    "mu_min": min(pr.mu_common for pr in res.tp),
                    "mu_max": max(pr.mu_common for pr in res.tp),
                    "mu_ratio": res.mu_ratio("tp", "mu_common"),
                    "mu_u_ratio": res.mu_ratio("tp", "mu_u_common"),
                    "t_hit_tp": " ".join(_fmt_hit(pr.t_hit) for pr in res.tp),
                    "t_hit_spread_tp": res.t_hit_spread("tp"),
                    "t_hit_erm": " ".join(_fmt_hit(t) for t in erm_hits),
                    # never reached: t_hit > T, so T is a lower bound for the ratio
                    "erm_min_t_hit_over_T": min(
                        (t if t is not None else T) / T for t, T in zip(erm_hits, Ts)
                    ),
                    "mu_own_arc_ratio": res.mu_ratio("tp", "mu"),
                }
            )
            path = os.path.join(args.out, f"turnpike_profiles_{dname}_{mname}.csv")
            res.profiles_to_csv(path)
            profile_files.append(path)
            fig = plotting.plot_turnpike(
                res, f"{dname} / {mname}: loss {args.loss}, lam={args.lam:g}"
            )
            plotting.save_figure(fig, os.path.join(args.out, f"turnpike_{dname}_{mname}.png"))
            fig = plotting.plot_trajectories(
                res.models["tp"][-1],
                ds.train.x,
                ds.train.y,
                f"{dname} / {mname}, turnpike, T={Ts[-1]:g}",
            )
            plotting.save_figure(fig, os.path.join(args.out, f"trajectories_{dname}_{mname}.png"))
    cols = ["dataset", "model", *TURNPIKE_COLUMNS]
    write_csv(os.path.join(args.out, "turnpike.csv"), rows, cols)
    scols = list(summary_rows[0]) if summary_rows else ["dataset", "model"]
    write_csv(os.path.join(args.out, "turnpike_summary.csv"), summary_rows, scols)
    _print(
        "\n== summary: turnpike rates mu (fitted on common_arc, the same arc for every T; "
        "mu_own_arc_ratio: fits on each T's middle arc, a diagnostic) and times to reach the "
        "threshold"
    )
    _print(format_table(summary_rows, scols))
    _print(f"\nwrote {args.out} in {time.perf_counter() - t_start:.1f} s")
    return 0


def _fmt_hit(t: float | None) -> str:
    return "never" if t is None else f"{t:.3g}"


@dataclass(frozen=True)
class _Command:
    """One experiment of the command line.

    Attributes:
        help: its line in the command line's help.
        add_args: adds its options to a parser and returns the parser.
        run: runs it with the parsed options, ``run(args) -> exit code``.
    """

    help: str
    add_args: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]
    run: Callable[[argparse.Namespace], int]


_COMMANDS: dict[str, _Command] = {
    "asymptotics": _Command("ERM: error against T", add_asymptotics_args, run_asymptotics),
    "turnpike": _Command("turnpike profiles against t", add_turnpike_args, run_turnpike),
}
"""The experiments, by command name."""


def main(argv: list[str] | None = None) -> int:
    """``python -m spacetime_nets.experiments asymptotics|turnpike [options]``.

    Args:
        argv: the command line without the program name (None: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 success, 2 bad options (one line on stderr).
    """
    parser = argparse.ArgumentParser(prog="spacetime_nets.experiments")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, entry in _COMMANDS.items():
        entry.add_args(sub.add_parser(name, help=entry.help))
    args = parser.parse_args(argv)
    try:
        check_args(args, args.command)
    except ValueError as exc:  # bad options: one line and exit code 2, as the CLI
        print(f"{parser.prog} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return _COMMANDS[args.command].run(args)
