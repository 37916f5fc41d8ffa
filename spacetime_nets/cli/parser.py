"""The argument parser of ``spacetime-nets``: one sub-parser per command, each with examples,
choices from the library's constants."""

from __future__ import annotations

import argparse
import math

from ..accel import COMPILE_MODES, PRECISIONS
from ..runs import (
    BASES,
    DTYPES,
    KERNELS,
    LIFTS,
    READOUTS,
    RULES,
    SCHEDULES,
    TRANSFERS,
    ModelOptions,
)
from . import commands
from .commands import PROG

EXPORT_FORMATS = ("export", "torchscript")
"""The file formats of ``export --format`` and ``compress --format``: ``torch.export``
(``.pt2``) or TorchScript (``.ts.pt``)."""
SPLITS = ("train", "val", "test")
"""The data splits a command can read (``--split``)."""
LIFT_CHOICES = ("auto", *LIFTS)
#: the model options of a run file: the source of the defaults of ``train``'s model flags
_DEFAULT = ModelOptions()
EXPERIMENTS = ("asymptotics", "turnpike")
COMMANDS = ("train", "evaluate", "export", "compress", "schedule", *EXPERIMENTS, "demo")
METRICS = ("auto", "accuracy", "predictions", "output")
NORMS = ("max", "rms")


class _UsageError(Exception):
    """A command-line mistake found by argparse."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error becomes one line and exit code 2 (raised to
    [`main`][spacetime_nets.cli.main])."""

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
# the parser
# --------------------------------------------------------------------------------------------


#: the defaults of the schedule options where a command has them (train, schedule); they are
#: filled in by the command, so that it knows which options were given (an option the chosen
#: schedule does not read is refused, never ignored)
SCHEDULE_DEFAULTS = {"widths": "16,4", "steps": 8, "T": 1.0, "rule": "trapezoid"}


def _add_schedule_args(p: argparse.ArgumentParser, defaults: bool = True) -> None:
    def d(name: str) -> str:
        if not defaults:
            return "; default: the training run's"
        return f"; default {SCHEDULE_DEFAULTS[name]}"

    p.add_argument(
        "--widths",
        default=None,
        metavar="N_MAX,N_MIN",
        help="widths of the schedule: n_max,n_min (per axis in 2-D: 16,4 means 16x16 -> 4x4; "
        "constant and moving: one width n)" + d("widths"),
    )
    p.add_argument(
        "--steps", type=int, default=None, help="number of time steps K (layers)" + d("steps")
    )
    p.add_argument("-T", "--horizon", dest="T", type=float, default=None, help="horizon T" + d("T"))
    p.add_argument(
        "--rule", default=None, choices=RULES, help="quadrature rule (not moving)" + d("rule")
    )


def parse_multires(text: str) -> list[float]:
    """``"0.5,1,2"`` -> [0.5, 1.0, 2.0]: the scales of ``--multires`` (positive finite
    numbers, comma-separated); bad text raises ``argparse.ArgumentTypeError``, which argparse
    reports as a usage error naming the flag.

    Args:
        text: the option's value as typed.

    Returns:
        The scales as floats.

    Raises:
        argparse.ArgumentTypeError: not a comma-separated list of positive finite numbers.
    """
    from ..training.multires import check_resolutions

    parts = [t.strip() for t in text.split(",")]
    try:
        values = [float(t) for t in parts]
        return check_resolutions(values)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive finite scales of the input size such as "
            f"0.5,1,2, got {text!r}"
        ) from None


def parse_splits(text: str) -> list[float]:
    """``"0.8,0.04,0.16"`` -> [0.8, 0.04, 0.16]: three positive fractions summing to 1 (else
    ``argparse.ArgumentTypeError``, a usage error naming the flag).

    Args:
        text: the option's value as typed, ``train,val,test``.

    Returns:
        The three fractions as floats.

    Raises:
        argparse.ArgumentTypeError: not three positive fractions summing to 1.
    """
    try:
        values = [float(t) for t in text.split(",")]
    except ValueError:
        values = []
    ok = len(values) == 3 and all(math.isfinite(v) and v > 0 for v in values)
    if not ok or abs(sum(values) - 1.0) > 1e-6:
        raise argparse.ArgumentTypeError(
            f"expected three positive fractions train,val,test summing to 1 such as "
            f"0.8,0.04,0.16, got {text!r}"
        )
    return values


def _schedule_spec_help() -> str:
    return f"a builder ({', '.join(SCHEDULES)}) or the path of a schedule JSON file"


_EXAMPLES = {
    "train": """examples:
  spacetime-nets train --dataset circles --schedule hourglass --widths 16,4 --steps 8 \\
      --epochs 20 --out runs/circles
  spacetime-nets train --dataset circles --widths 16,4 --steps 8 --epochs 40 --lr 1e-3 \\
      --out runs/circles --resume runs/circles      # continue with a lower learning rate
  spacetime-nets train --dataset burgers --grid-size 64 --schedule constant --steps 4 \\
      --kernel spectral --channels 32 --modes 16 --activation gelu --loss rel_l2 \\
      --lr 1e-3 --lr-schedule cosine --weight-decay 1e-4 --batch-size 32 --epochs 20 \\
      --out runs/burgers                          # inputs, targets standardised (default)
  spacetime-nets train --dataset darcy --schedule constant --steps 4 --kernel spectral \\
      --channels 24 --modes 8 --activation gelu --loss rel_l2 --lr 1e-3 --lr-schedule cosine \\
      --weight-decay 1e-4 --batch-size 32 --epochs 20 --out runs/darcy
  spacetime-nets train --dataset signals --schedule pyramid --kernel conv --channels 32 \\
      --radius 0.25 --form inside --activation gelu --epochs 20 --lr 1e-3 --out runs/signals
  spacetime-nets train --dataset signals --schedule pyramid --kernel conv --channels 32 \\
      --form inside --activation gelu --multires 0.5,1,2 --out runs/signals-multires""",
    "evaluate": """examples:
  spacetime-nets evaluate runs/circles                       # test split, last.pt
  spacetime-nets evaluate runs/circles --split val --json
  spacetime-nets evaluate runs/circles --widths 32,8 --steps 16   # finer grids (basis kernels)
  spacetime-nets evaluate runs/burgers --resolution 256      # test data generated at 256 nodes
  spacetime-nets evaluate runs/darcy --grid-shape 33 33      # ... at 33 x 33 nodes""",
    "export": """examples:
  spacetime-nets export runs/circles                         # runs/circles/resnet.pt2
  spacetime-nets export runs/circles --format torchscript --out resnet.ts.pt --tol 1e-5""",
    "compress": """examples:
  spacetime-nets compress runs/digits --tol 0.5            # lose at most 0.5 accuracy points
  spacetime-nets compress runs/heat --metric output --tol 1e-2 --out runs/heat-small
  spacetime-nets evaluate runs/digits --schedule runs/digits/compressed/schedule.json""",
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
    from ..datasets import REGISTRY
    from ..fields import ACTIVATIONS, FORMS, NORMS
    from ..integrate import METHODS
    from ..objectives import LOSSES
    from ..training import LR_SCHEDULES, OPTIMIZERS

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
    p.add_argument("--dataset", default="circles", choices=tuple(REGISTRY), help="data set")
    p.add_argument(
        "--samples", type=int, help="number of samples of a synthetic data set (its default)"
    )
    p.add_argument(
        "--grid-size",
        type=int,
        default=None,
        help="nodes per axis the data are generated at (burgers, darcy, helmholtz, heat, "
        "signals; their default)",
    )
    p.add_argument(
        "--splits",
        type=parse_splits,
        default=None,
        metavar="TRAIN,VAL,TEST",
        help="fractions of the samples in each split, e.g. 0.8,0.04,0.16 (default 0.7,0.15,0.15)",
    )
    p.add_argument("--schedule", default="hourglass", help=_schedule_spec_help())
    # burgers, darcy and signals live on their own grid: it fixes n_max and the rule
    _add_schedule_args(p)
    p.add_argument(
        "--transfer",
        default=None,
        choices=TRANSFERS,
        help="Pi_k kind (galerkin: filters where a grid coarsens, interpolates where it "
        "refines; default galerkin)",
    )
    p.add_argument("--kernel", default=_DEFAULT.kernel, choices=KERNELS, help="kernel storage")
    p.add_argument(
        "--modes",
        type=int,
        default=None,
        help="basis functions per axis (basis 8, conv 3), or spectral modes per axis (8)",
    )
    p.add_argument(
        "--channels", type=int, default=None, help="features per node (conv and spectral kernels)"
    )
    p.add_argument(
        "--radius", type=float, default=None, help="physical radius of a conv kernel (0.1)"
    )
    p.add_argument(
        "--radius-spacings",
        type=float,
        default=None,
        help="the conv radius in grid spacings of each step's grid instead of --radius",
    )
    p.add_argument(
        "--pointwise",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add the pointwise channel mix A(t) to a stationary kernel (default: spectral "
        "yes, conv no)",
    )
    p.add_argument(
        "--coordinates",
        action="store_true",
        help="the lift also sees the coordinates xi (function data with channels; what lets "
        "a translation-invariant kernel learn a box's boundary, as FNO's grid channels do)",
    )
    p.add_argument(
        "--norm",
        default=None,
        choices=NORMS,
        help="channel normalisation by quadrature inside the field",
    )
    p.add_argument("--norm-groups", type=int, default=None, help="groups of --norm group")
    p.add_argument(
        "--head-hidden",
        type=int,
        default=None,
        help="hidden width of an MLP head after the mean readout",
    )
    p.add_argument(
        "--readout",
        default="auto",
        choices=("auto", *READOUTS),
        help="auto: function for burgers/darcy, quadrature otherwise",
    )
    p.add_argument(
        "--basis", default=None, choices=BASES, help="basis family of a basis kernel (legendre)"
    )
    p.add_argument("--form", default=_DEFAULT.form, choices=FORMS, help="vector field form")
    p.add_argument(
        "--activation",
        default=_DEFAULT.activation,
        choices=tuple(ACTIVATIONS),
        help="activation sigma",
    )
    p.add_argument("--method", default=_DEFAULT.method, choices=METHODS, help="time stepper")
    p.add_argument(
        "--lift",
        default="auto",
        choices=LIFT_CHOICES,
        help="input lift (auto: identity for burgers, darcy and signals, cells for digits and "
        "heat, linear otherwise)",
    )
    p.add_argument(
        "--init-scale", type=float, default=_DEFAULT.init_scale, help="scale of the initial kernel"
    )
    p.add_argument("--dtype", default="float32", choices=DTYPES, help="floating type")
    p.add_argument(
        "--loss",
        default="auto",
        choices=("auto", *LOSSES),
        help="auto: cross_entropy for classes, mse for regression; rel_l2: the relative error "
        "|z - y| / |y| of operator learning",
    )
    p.add_argument("--p", type=float, default=None, help="the exponent of --loss lp / rel_lp")
    p.add_argument(
        "--normalize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="standardise inputs and targets by scalars of the training split, inside the "
        "model (default: on for the operator data sets burgers, darcy and helmholtz, off "
        "otherwise)",
    )
    p.add_argument("--optimizer", default="adam", choices=OPTIMIZERS, help="optimiser")
    p.add_argument("--epochs", type=int, default=20, help="number of epochs (in all, on resume)")
    p.add_argument("--batch-size", type=int, default=64, help="global batch size")
    p.add_argument("--lr", type=float, default=1e-2, help="learning rate")
    p.add_argument(
        "--weight-decay",
        type=float,
        default=0.0,
        help="weight decay of the optimiser (adam, sgd, rmsprop: L2 term in the gradient; "
        "adamw: decoupled)",
    )
    p.add_argument(
        "--lr-schedule", default="constant", choices=LR_SCHEDULES, help="learning-rate schedule"
    )
    p.add_argument("--lam", type=float, default=0.0, help="weight of int_0^T |u|^2 dt")
    p.add_argument(
        "--turnpike", type=float, default=None, help="weight of int_0^T E(x(t)) dt (turnpike)"
    )
    p.add_argument("--grad-clip", type=float, default=None, help="clip the gradient norm")
    p.add_argument(
        "--multires",
        type=parse_multires,
        default=None,
        metavar="S1,S2,...",
        help="train across input resolutions: each batch resampled (linear interpolation) to "
        "one of these scales of the input size, drawn per batch (lift identity: burgers, "
        "darcy, signals)",
    )
    p.add_argument("--checkpoint-every", type=int, default=1, help="epochs between checkpoints")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument(
        "--compile",
        nargs="?",
        const="default",
        default=None,
        choices=COMPILE_MODES,
        help="compile or graph-capture the training step (see docs/how-to/gpu.md)",
    )
    p.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="bf16: products in bfloat16 under autocast; parameters and grids stay float32",
    )
    p.add_argument("--out", default=None, help="output folder (default runs/<dataset>)")
    p.add_argument("--seed", type=int, default=0, help="seed of data, initialisation, shuffling")
    p.add_argument("--resume", default=None, help="checkpoint file or run folder to continue")
    p.add_argument("--overwrite", action="store_true", help="start again in an existing --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=commands._cmd_train)


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
    p.add_argument(
        "--resolution",
        type=int,
        default=None,
        metavar="N",
        help="1-D function data: generate the same samples at N nodes and move the model "
        "there (at_resolution)",
    )
    p.add_argument(
        "--grid-shape",
        type=int,
        nargs=2,
        default=None,
        metavar=("S1", "S2"),
        help="2-D function data (darcy): the same at S1 x S2 nodes",
    )
    p.add_argument("--batch-size", type=int, default=1024, help="evaluation batch size")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=commands._cmd_evaluate)


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
    p.set_defaults(func=commands._cmd_export)


def _compress_parser(sub) -> None:
    p = _add(
        sub,
        "compress",
        "the cheapest schedule within a tolerance, and its exported ResNet",
        "Rediscretise a trained continuous model (basis, neural, conv or spectral kernel) on "
        "the schedule with the fewest multiply-adds whose change on the calibration data "
        "stays within --tol (accuracy points, or output units), and for channel models the "
        "fewest channels, then write schedule.json, the exported plain ResNet and "
        "compress.json to --out (default <run>/compressed). Without --recover and with "
        "--keep-channels the weights do not change.",
    )
    p.add_argument("run", help="run folder written by 'train'")
    p.add_argument("--tol", type=float, required=True, help="allowed change (>= 0)")
    p.add_argument("--metric", default="auto", choices=METRICS,
                   help="auto: accuracy for classification, output otherwise")  # fmt: skip
    p.add_argument("--norm", default=None, choices=NORMS,
                   help="the output change (metric output): max or rms (default max)")  # fmt: skip
    p.add_argument("--split", default="val", choices=SPLITS, help="calibration data")
    p.add_argument("--samples", type=int, default=None, help="calibrate on the first N rows")
    p.add_argument("--checkpoint", default=None, help="checkpoint file (default <run>/last.pt)")
    p.add_argument("--keep-steps", action="store_true", help="never merge time steps")
    p.add_argument("--keep-channels", action="store_true",
                   help="never reduce the channels of a channel model")  # fmt: skip
    p.add_argument("--recover", type=int, default=0, metavar="N",
                   help="fine-tune the compressed model N epochs to the trained one's outputs "
                        "on the training split, then search on (default 0: off)")  # fmt: skip
    p.add_argument("--format", default="export", choices=EXPORT_FORMATS, help="ResNet file")
    p.add_argument("--out", default=None, help="output folder (default <run>/compressed)")
    p.add_argument("--quiet", action="store_true", help="no progress lines during the search")
    p.set_defaults(func=commands._cmd_compress)


def _schedule_parser(sub) -> None:
    p = _add(
        sub,
        "schedule",
        "print a grid schedule and draw it",
        "Print the widths and a per-step summary of a schedule; save a picture.",
    )
    p.add_argument("spec", nargs="?", default="hourglass", help=_schedule_spec_help())
    _add_schedule_args(p)
    p.add_argument(
        "--dim",
        type=int,
        default=None,
        choices=(1, 2),
        help="1: [0,1]; 2: [0,1]^2 (default 1; a schedule file's own)",
    )
    p.add_argument(
        "--transfer",
        default=None,
        choices=TRANSFERS,
        help="Pi_k kind (galerkin: filters where a grid coarsens, interpolates where it "
        "refines; default galerkin)",
    )
    p.add_argument("--out", default=None, help="PNG file for the picture")
    p.add_argument("--json", default=None, help="also save the schedule JSON here")
    p.set_defaults(func=commands._cmd_schedule)


def _experiment_parser(sub, name: str, load: bool) -> None:
    helps = {
        "asymptotics": "large-time asymptotics: training error and control norms against T",
        "turnpike": "turnpike experiment: exponential decay of the risk and controls in t",
    }
    p = _add(sub, name, helps[name], helps[name] + ". --fast (or SPACETIME_FAST=1) runs "
             "tiny sizes and cannot be combined with other sizes.")  # fmt: skip
    if not load:
        return
    try:
        from .. import experiments
    except Exception as exc:  # the experiments module is optional here
        message = f"{name}: the experiments module is not available ({type(exc).__name__}: {exc})"

        def unavailable(args: argparse.Namespace) -> int:
            raise ValueError(message)

        p.set_defaults(func=unavailable)
        return
    getattr(experiments, f"add_{name}_args")(p)
    run = getattr(experiments, f"run_{name}")  # checks its options, --fast included
    p.set_defaults(func=lambda args: int(run(args) or 0))


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser. ``command`` names the sub-command about to run: only that one of
    the experiment commands imports its module (so the others start fast).

    Args:
        command: the sub-command about to run (``train``, ``asymptotics`` ...), or None.

    Returns:
        The parser of ``spacetime-nets``, with one sub-parser per command; each sets
            ``func``, the function that runs it on the parsed arguments.
    """
    parser = _Parser(
        prog=PROG,
        description="Continuous space-time neural networks and the variable-width ResNets "
        "they define.",
        epilog="'spacetime-nets <command> --help' describes each command, with examples.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    _train_parser(sub)
    _evaluate_parser(sub)
    _export_parser(sub)
    _compress_parser(sub)
    _schedule_parser(sub)
    for name in EXPERIMENTS:
        _experiment_parser(sub, name, load=command == name)
    p = _add(sub, "demo", "run the built-in demo", "Run the built-in demo (as make demo).")
    p.set_defaults(func=commands._cmd_demo)
    return parser
