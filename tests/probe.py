# ruff: noqa: E501 - the case tables read best one case per line
"""A probe of bad inputs, faults and misuses, tried as a new user would.

Every case is a call of the library or a command line, marked with what it must do:

- ``bad``: refuse with one clear error that names the argument (a ValueError, TypeError or
  OSError from the library whose message contains one of the case's words; on the command line
  exit 2 with a last line ``spacetime-nets: error: ...`` containing one of the words, and no
  traceback);
- ``good``: work;
- ``either``: work, or refuse clearly (inputs a user may reasonably expect either way, e.g. a
  float64 batch for a float32 model).

Each outcome is classified automatically:

- ``clear``: a bad (or either) case refused as above;
- ``ok``: a good (or either) case that worked;
- ``raw``: an error that does not name the argument, an exception type from inside Python or
  torch (RuntimeError, IndexError, KeyError, OverflowError, MemoryError, ...), a traceback or
  an "unexpected error" on the command line, a good case that failed, or a case that ran past
  its time;
- ``silent``: a bad case that was accepted;
- ``loss``: a command that failed and changed, removed or left behind a file in a run folder
  (the sha256 of every file is compared), or a fault (a full disk) that replaced a good file or
  left a temporary file.

Run ``python tests/probe.py`` for the counts and the list of failing cases (``-v`` for all);
``tests/test_probe.py`` runs it in the suite and fails on any raw, silent or loss case.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

NAN, INF = float("nan"), float("inf")
CLEAR_TYPES = (ValueError, TypeError, OSError)
CASE_SECONDS = 60


@dataclass
class Case:
    """One probe: ``run()`` does the call; ``expect`` is 'bad', 'good' or 'either'."""

    group: str
    name: str
    expect: str
    words: tuple[str, ...] = ()
    run: Callable[[], object] | None = None
    argv: tuple[str, ...] | None = None
    runs: tuple[str, ...] = ()  # run folders the command gets a fresh copy of
    fault: bool = False


@dataclass
class Outcome:
    case: Case
    verdict: str
    detail: str = ""


@dataclass
class Probe:
    cases: list[Case] = field(default_factory=list)

    def api(self, group: str, name: str, expect: str, run: Callable, *words: str) -> None:
        self.cases.append(Case(group, name, expect, tuple(words), run=run))

    def cli(self, name: str, expect: str, argv: Sequence[str], *words: str, runs=()) -> None:
        self.cases.append(
            Case("cli", name, expect, tuple(words), argv=tuple(argv), runs=tuple(runs))
        )


# ------------------------------------------------------------------------ classification
class _Timeout(BaseException):
    pass


def _alarm(signum, frame):  # pragma: no cover - only on a hang
    raise _Timeout()


def _names(message: str, words: Sequence[str]) -> bool:
    """Whether ``message`` names one of ``words`` as a whole word (short names such as ``n``
    or ``T`` case-sensitively)."""
    for w in words:
        flags = 0 if len(w) <= 2 else re.IGNORECASE
        if re.search(rf"(?<![A-Za-z0-9_]){re.escape(w)}(?![A-Za-z0-9_])", message, flags):
            return True
    return False


def classify_api(case: Case) -> Outcome:
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_SECONDS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with (
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                case.run()
    except _Timeout:
        return Outcome(case, "raw", f"ran past {CASE_SECONDS} s")
    except CLEAR_TYPES as exc:
        msg = f"{type(exc).__name__}: {exc}"
        if case.expect == "good":
            return Outcome(case, "raw", "a valid input failed: " + msg)
        raw_type = isinstance(exc, (OverflowError, MemoryError)) or type(exc).__module__ not in (
            "builtins",
        )
        if not raw_type and _names(str(exc), case.words):
            return Outcome(case, "clear", msg)
        return Outcome(case, "raw", msg)
    except Exception as exc:  # noqa: BLE001 - the point is to see them all
        return Outcome(case, "raw", f"{type(exc).__name__}: {exc}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    if case.expect == "bad":
        return Outcome(case, "silent", "accepted")
    return Outcome(case, "ok")


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _cli_verdict(case: Case, rc: int, err: str) -> Outcome:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    detail = f"exit {rc}: {last[:300]}"
    if "Traceback" in err or "unexpected error" in err:
        return Outcome(case, "raw", detail)
    if rc == 0:
        return Outcome(case, "silent" if case.expect == "bad" else "ok", detail)
    if case.expect == "good":
        return Outcome(case, "raw", "a valid command failed: " + detail)
    if rc == 2 and "error:" in last and _names(last, case.words):
        return Outcome(case, "clear", detail)
    return Outcome(case, "raw", detail)


def _copy_runs(case: Case, fixtures: dict[str, Path], work: Path) -> dict[str, Path]:
    """A fresh copy in ``work`` of each run folder the case names: {name: copy}."""
    copies = {}
    for name in case.runs:
        dst = work / name
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(fixtures[name], dst)
        copies[name] = dst
    return copies


def classify_cli(case: Case, fixtures: dict[str, Path], work: Path) -> Outcome:
    from spacetime_nets.cli import main

    copies = _copy_runs(case, fixtures, work)
    slots: dict[str, str] = {"tmp": str(work), **{n: str(p) for n, p in copies.items()}}
    for key, path in fixtures.items():
        slots.setdefault(key, str(path))
    argv = [a.format(**slots) for a in case.argv]
    before = {n: _digest(p) for n, p in copies.items()}
    out, err = io.StringIO(), io.StringIO()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_SECONDS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    rc = main(argv)
                except SystemExit as exc:
                    rc = exc.code if isinstance(exc.code, int) else 2
    except _Timeout:
        return Outcome(case, "raw", f"ran past {CASE_SECONDS} s")
    except BaseException as exc:  # noqa: BLE001
        return Outcome(case, "raw", f"escaped main: {type(exc).__name__}: {exc}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    outcome = _cli_verdict(case, rc, err.getvalue())
    if rc != 0 or case.expect == "bad":
        for n, p in copies.items():
            after = _digest(p) if p.exists() else {}
            if after != before[n]:
                changed = sorted(set(after.items()) ^ set(before[n].items()))
                return Outcome(case, "loss", f"{outcome.detail}; run {n} changed: {changed[:3]}")
    return outcome


# ------------------------------------------------------------------------ faults: a full disk
FAULT_SCRIPT = textwrap.dedent(
    """
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    limit = int(sys.argv[1])
    from spacetime_nets.cli import main
    import torch  # imported before the limit, as the command line has done by then
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    sys.exit(main(sys.argv[2:]))
    """
)


def classify_fault(case: Case, fixtures: dict[str, Path], work: Path) -> Outcome:
    """Run ``case.argv`` in a child process whose files may not grow beyond 512 bytes (what a
    full disk does to a write); the target must be refused with its name, good files kept and
    no temporary file left."""
    copies = _copy_runs(case, fixtures, work)
    slots = {"tmp": str(work), **{n: str(p) for n, p in copies.items()}}
    argv = [a.format(**slots) for a in case.argv]
    watched = [*copies.values(), work / "out"]
    (work / "out").mkdir(exist_ok=True)
    keep = work / "out" / "good.bin"
    keep.write_bytes(b"a good file\n")
    before = {str(p): _digest(p) for p in watched}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", FAULT_SCRIPT, "512", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    outcome = _cli_verdict(case, proc.returncode, proc.stderr)
    if proc.returncode < 0:
        return Outcome(case, "raw", f"killed by signal {-proc.returncode}: {proc.stderr[-300:]}")
    for p in watched:
        after = _digest(p)
        old = before[str(p)]
        lost = {k for k, v in old.items() if after.get(k) != v}
        new = set(after) - set(old)
        if lost or (proc.returncode != 0 and new):
            return Outcome(case, "loss", f"{outcome.detail}; {p}: changed {lost}, new {new}")
    return outcome


# ------------------------------------------------------------------------ the cases
def _bad_ints(huge: bool = True) -> list:
    vals = ["a", True, 1.5, -1, 0, NAN, None]
    return vals + ([10**12] if huge else [])


def _bad_reals() -> list:
    return ["a", True, NAN, INF, -1.0]


def model_cases(p: Probe) -> None:
    from grids import GridSchedule
    from spacetime_nets import SpaceTimeNet

    sched = GridSchedule.hourglass(16, 8, 2)  # resolves the basis kernel's 8 default modes
    csched = GridSchedule.constant(16, 2)
    box = GridSchedule.constant((8, 8), 2, domain=((0, 1), (0, 1)))

    def stn(**kw):
        args = {"in_features": 2, "out_features": 3, **kw}
        return lambda: SpaceTimeNet(sched, **args)

    def conv(**kw):
        args = {"in_features": 16, "out_features": 3, "kernel": "conv", "channels": 4}
        args.update(lift="identity", readout="mean")
        args.update(kw)
        return lambda: SpaceTimeNet(csched, **args)

    def spec(**kw):
        args = {"in_features": 16, "out_features": 3, "kernel": "spectral", "channels": 4}
        args.update(lift="identity", readout="mean", modes=4)
        args.update(kw)
        return lambda: SpaceTimeNet(csched, **args)

    g = "SpaceTimeNet"
    for arg in ("in_features", "out_features"):
        for v in ["a", True, 0, -1, 1.5, NAN, 10**12]:
            p.api(g, f"{arg}={v!r}", "bad", stn(**{arg: v}), arg)
        p.api(g, f"{arg}=np.int64(3)", "good", stn(**{arg: np.int64(3)}))
    for arg, vals in {
        "kernel": ["bogus", 3, None],
        "form": ["bogus", 3, None],
        "activation": ["bogus", 3, None],
        "lift": ["bogus", None, 2],
        "readout": ["bogus", None],
        "method": ["bogus", None, 4],
        "norm": ["bogus", 3],
    }.items():
        for v in vals:
            p.api(g, f"{arg}={v!r}", "bad", stn(**{arg: v}), arg)
    for v in ["a", -1, 1.5, True, 0]:
        p.api(g, f"checkpoint={v!r}", "bad", stn(checkpoint=v), "checkpoint")
    p.api(g, "checkpoint=1", "good", stn(checkpoint=1))
    for v in ["a", NAN, INF, True, -1.0]:
        p.api(g, f"init_scale={v!r}", "bad", stn(init_scale=v), "init_scale")
    for v in ["a", 1.5, -1, True, 2**70]:
        p.api(g, f"seed={v!r}", "bad", stn(seed=v), "seed")
    p.api(g, "seed=np.int64(3)", "good", stn(seed=np.int64(3)))
    # kernels and their options
    for v in ["a", 0, -1, 1.5, True, NAN]:
        p.api(g, f"basis modes={v!r}", "bad", stn(kernel="basis", modes=v), "modes")
    p.api(g, "basis modes=np.int64(4)", "good", stn(kernel="basis", modes=np.int64(4)))
    p.api(g, "basis basis='bogus'", "bad", stn(kernel="basis", basis="bogus"), "basis")
    p.api(g, "basis basis='fourier'", "good", stn(kernel="basis", basis="fourier"))
    # arguments that do not apply to the chosen variant
    inapplicable = {
        "nodal radius": stn(kernel="nodal", radius=0.1),
        "basis radius": stn(kernel="basis", radius=0.1),
        "neural radius": stn(kernel="neural", radius=0.1),
        "nodal radius_spacings": stn(kernel="nodal", radius_spacings=2.0),
        "nodal modes": stn(kernel="nodal", modes=4),
        "neural basis": stn(kernel="neural", basis="fourier"),
        "nodal basis": stn(kernel="nodal", basis="fourier"),
        "basis pointwise": stn(kernel="basis", pointwise=True),
        "nodal pointwise": stn(kernel="nodal", pointwise=True),
        "hidden_width without bottleneck": stn(hidden_width=4),
        "kernel2 without bottleneck": stn(kernel2="nodal"),
        "norm_groups without norm": conv(norm_groups=2),
        "head_hidden with quadrature": stn(head_hidden=8),
        "in_shape with identity lift": conv(in_shape=(16,)),
        "in_shape with linear lift": stn(lift="linear", in_shape=(2,)),
        "conv basis": conv(basis="fourier"),
        "spectral radius": spec(radius=0.1),
        "coordinates without channels": stn(coordinates=True),
        "in_channels without channels": stn(in_channels=2),
    }
    for name, fn in inapplicable.items():
        # the option named: the second word after a kernel's name, else the first
        words = name.split()
        word = (
            words[1] if words[0] in ("nodal", "basis", "neural", "conv", "spectral") else words[0]
        )
        p.api(g, name, "bad", fn, word)
    for v in ["yes", 1, "no"]:
        p.api(g, f"pointwise={v!r}", "bad", conv(pointwise=v), "pointwise")
        p.api(
            g,
            f"allow_underresolved={v!r}",
            "bad",
            conv(allow_underresolved=v),
            "allow_underresolved",
        )
        p.api(g, f"coordinates={v!r}", "bad", conv(coordinates=v), "coordinates")
    p.api(g, "conv pointwise=np.bool_(True)", "good", conv(pointwise=np.bool_(True)))
    for v in [1e300, -0.1, 0.0, NAN, INF, "a", True]:
        p.api(g, f"conv radius={v!r}", "bad", conv(radius=v), "radius")
        p.api(g, f"conv radius_spacings={v!r}", "bad", conv(radius_spacings=v), "radius_spacings")
    p.api(
        g, "conv radius and radius_spacings", "bad", conv(radius=0.1, radius_spacings=2.0), "radius"
    )
    for v in [0, -1, "a", 1.5, True, 2**40, [4, 4, 4, 4, 4]]:
        p.api(g, f"conv channels={v!r}", "bad", conv(channels=v), "channels")
    p.api(g, "conv channels=np.int64(4)", "good", conv(channels=np.int64(4)))
    for v in [0, -1, "a", 1.5, True, 10**6]:
        p.api(
            g, f"conv in_channels={v!r}", "bad", conv(in_channels=v), "in_channels", "in_features"
        )
    for v in [0, -1, "a", 1.5, True]:
        p.api(g, f"spectral modes={v!r}", "bad", spec(modes=v), "modes")
        p.api(g, f"conv norm_groups={v!r}", "bad", conv(norm="group", norm_groups=v), "norm_groups")
        p.api(g, f"conv head_hidden={v!r}", "bad", conv(head_hidden=v), "head_hidden")
    p.api(g, "spectral modes=20 (under-resolved)", "bad", spec(modes=20), "modes")
    p.api(
        g,
        "spectral modes=20 allow_underresolved",
        "either",
        spec(modes=20, allow_underresolved=True),
        "modes",
    )
    for v in [0, -1, "a", (3, 3), (4, 5)]:
        p.api(
            g,
            f"cells in_shape={v!r}",
            "bad",
            lambda v=v: SpaceTimeNet(box, 16, 3, lift="cells", in_shape=v),
            "in_shape",
        )
    for v in [0, "a", -2]:
        p.api(
            g,
            f"bottleneck hidden_width={v!r}",
            "bad",
            stn(form="bottleneck", hidden_width=v),
            "hidden_width",
        )
    p.api(g, "bottleneck hidden_width=4", "good", stn(form="bottleneck", hidden_width=4))
    p.api(g, "schedule='8'", "bad", lambda: SpaceTimeNet("8", 2, 3), "schedule")
    p.api(g, "simple basis call", "good", lambda: SpaceTimeNet(sched, 2, 3, kernel="basis"))
    p.api(g, "conv model", "good", conv())
    p.api(g, "spectral model", "good", spec())


def forward_cases(p: Probe) -> None:
    from grids import GridSchedule
    from spacetime_nets import NeuralODE, SpaceTimeNet, to_resnet

    sched = GridSchedule.hourglass(16, 8, 2)
    csched = GridSchedule.constant(16, 2)
    box = GridSchedule.constant((17, 17), 2, domain=((0, 1), (0, 1)))  # resolves radius 0.1
    models = {
        "scalar": (SpaceTimeNet(sched, 2, 3), 2),
        "basis": (SpaceTimeNet(sched, 2, 3, kernel="basis"), 2),
        "conv": (
            SpaceTimeNet(csched, 16, 3, kernel="conv", channels=4, lift="identity", readout="mean"),
            16,
        ),
        "spectral": (
            SpaceTimeNet(
                csched,
                16,
                3,
                kernel="spectral",
                channels=4,
                lift="identity",
                readout="mean",
                modes=4,
            ),
            16,
        ),
        "conv 2-D": (
            SpaceTimeNet(
                box, 289, 289, kernel="conv", channels=3, lift="identity", readout="function"
            ),
            289,
        ),
        "multichannel": (
            SpaceTimeNet(
                csched,
                32,
                3,
                kernel="conv",
                channels=4,
                in_channels=2,
                lift="identity",
                readout="mean",
            ),
            (2, 16),
        ),
        "node": (NeuralODE(2, 3, hidden=4, steps=2) if _has_node_hidden() else NeuralODE(2, 3), 2),
    }
    for name, (model, d) in list(models.items()):
        if name != "node":
            models[f"exported {name}"] = (to_resnet(model).eval(), d)
    for name, (model, d) in models.items():
        g = f"forward {name}"
        s = d if isinstance(d, tuple) else (d,)  # the shape of one sample
        wrong = (*s[:-1], s[-1] + 1)
        x = torch.randn(5, *s)
        p.api(g, "a batch", "good", lambda m=model, x=x: m(x))
        p.api(g, "an empty batch", "good", lambda m=model, x=x: _empty(m, x))
        p.api(g, "a wrong width", "bad", lambda m=model, w=wrong: m(torch.randn(5, *w)), "x")
        p.api(
            g,
            "one sample without its batch axis",
            "bad",
            lambda m=model, s=s: m(torch.randn(*s)),
            "x",
        )
        p.api(g, "a 3-D input", "bad", lambda m=model, s=s: m(torch.randn(2, 5, *s)), "x")
        p.api(
            g,
            "an int tensor",
            "either",
            lambda m=model, s=s: m(torch.ones(5, *s, dtype=torch.int64)),
            "x",
            "dtype",
        )
        p.api(
            g,
            "float64",
            "either",
            lambda m=model, s=s: m(torch.randn(5, *s, dtype=torch.float64)),
            "x",
            "dtype",
        )
        p.api(
            g,
            "a meta tensor",
            "bad",
            lambda m=model, s=s: m(torch.empty(5, *s, device="meta")),
            "device",
        )
        p.api(
            g, "a numpy array", "either", lambda m=model, s=s: m(np.zeros((5, *s), np.float32)), "x"
        )


def _has_node_hidden() -> bool:
    import inspect

    from spacetime_nets import NeuralODE

    ps = inspect.signature(NeuralODE).parameters
    return "hidden" in ps and "steps" in ps


def _empty(model, x):
    y = model(x[:0])
    if y.shape[0] != 0:
        raise AssertionError(f"an empty batch gave {tuple(y.shape)}")
    return y


def grid_cases(p: Probe, tmp: Path) -> None:
    from grids import Grid, GridSchedule, make_transfer

    g = "Grid"
    for v in _bad_ints():
        p.api(g, f"uniform n={v!r}", "bad", lambda v=v: Grid.uniform(v), "n")
    p.api(g, "uniform n=np.int64(5)", "good", lambda: Grid.uniform(np.int64(5)))
    p.api(g, "uniform simpson n=4", "bad", lambda: Grid.uniform(4, rule="simpson"), "n")
    for v in [(1.0, 0.0), (0.0, NAN), "a", (0.0,), (0.0, INF), ((0, 1), (0, 1), (0, 1)), None]:
        p.api(g, f"uniform domain={v!r}", "bad", lambda v=v: Grid.uniform(5, v), "domain")
    for v in ["bogus", 3, None]:
        p.api(g, f"uniform rule={v!r}", "bad", lambda v=v: Grid.uniform(5, rule=v), "rule")
    for v in [[0.5, 0.2, 0.9], [0.1, NAN], [0.1, 2.0], "a", [], [[0.1, 0.2]], None]:
        p.api(g, f"from_nodes nodes={v!r}", "bad", lambda v=v: Grid.from_nodes(v), "nodes")
    p.api(g, "from_nodes np array", "good", lambda: Grid.from_nodes(np.array([0.0, 0.3, 1.0])))
    gs = "GridSchedule"
    for v in _bad_ints():
        p.api(gs, f"constant steps={v!r}", "bad", lambda v=v: GridSchedule.constant(5, v), "steps")
    p.api(gs, "constant steps=np.int64(2)", "good", lambda: GridSchedule.constant(5, np.int64(2)))
    for v in _bad_reals() + [0.0]:
        p.api(gs, f"constant T={v!r}", "bad", lambda v=v: GridSchedule.constant(5, 2, T=v), "T")
    # a finite horizon is a valid schedule (in float64); a model refuses what its dtype cannot hold
    p.api(gs, "constant T=1e300", "either", lambda: GridSchedule.constant(5, 2, T=1e300), "T")
    for v in ["bogus", 3]:
        p.api(
            gs,
            f"constant transfer_kind={v!r}",
            "bad",
            lambda v=v: GridSchedule.constant(5, 2, transfer_kind=v),
            "transfer_kind",
        )
    for v in [8, [8], [8, "a"], [8, 0], [8, True], [8, 1.5], "88", None, [8, [4, 4]]]:
        p.api(gs, f"from_widths({v!r})", "bad", lambda v=v: GridSchedule.from_widths(v), "widths")
    p.api(
        gs,
        "from_widths([8, np.int64(4)])",
        "good",
        lambda: GridSchedule.from_widths([8, np.int64(4)]),
    )
    for v in [[0.0, 0.5], [0.0, 0.6, 0.3], [0.0, NAN, 1.0], "a"]:
        p.api(
            gs,
            f"from_widths times={v!r}",
            "bad",
            lambda v=v: GridSchedule.from_widths([8, 6, 4], times=v),
            "times",
        )
    for builder in ("ramp", "hourglass", "pyramid"):
        fn = getattr(GridSchedule, builder)
        for v in ["a", 0, -1, 1.5, True, None, 10**12]:
            p.api(
                gs,
                f"{builder} first width={v!r}",
                "bad",
                lambda fn=fn, v=v: fn(v, 4, 2),
                {"ramp": "n_start", "hourglass": "n_outer", "pyramid": "n_base"}[builder],
            )
        p.api(
            gs,
            f"{builder} np.int64",
            "good",
            lambda fn=fn: fn(np.int64(9), np.int64(5), np.int64(2)),
        )
    for v in [0, -1, "a", True]:
        p.api(
            gs,
            f"pyramid levels={v!r}",
            "bad",
            lambda v=v: GridSchedule.pyramid(16, 4, 3, levels=v),
            "levels",
        )
    p.api(
        gs,
        "moving phi -> None",
        "bad",
        lambda: GridSchedule.moving(8, 2, phi=lambda t, s: None),
        "phi",
    )
    p.api(
        gs,
        "moving phi -> wrong size",
        "bad",
        lambda: GridSchedule.moving(8, 2, phi=lambda t, s: s[:3]),
        "phi",
    )
    p.api(
        gs,
        "moving phi -> decreasing",
        "bad",
        lambda: GridSchedule.moving(8, 2, phi=lambda t, s: s.flip(0)),
        "phi",
    )
    p.api(
        gs,
        "moving phi -> nan",
        "bad",
        lambda: GridSchedule.moving(8, 2, phi=lambda t, s: s * NAN),
        "phi",
    )
    p.api(gs, "moving phi='a'", "bad", lambda: GridSchedule.moving(8, 2, phi="a"), "phi")
    p.api(
        gs,
        "moving widths mismatch",
        "bad",
        lambda: GridSchedule.moving([8, 8], 3),
        "widths",
        "steps",
    )
    p.api(gs, "moving no steps", "bad", lambda: GridSchedule.moving(8), "steps")
    p.api(gs, "moving np.int64", "good", lambda: GridSchedule.moving(np.int64(8), np.int64(2)))
    base = GridSchedule.hourglass(8, 4, 2)
    for v in [0, -1, "a", 1.5, True, [4, 4], [4, 0, 4]]:
        p.api(gs, f"with_channels({v!r})", "bad", lambda v=v: base.with_channels(v), "channels")
    p.api(gs, "with_channels(np.int64(4))", "good", lambda: base.with_channels(np.int64(4)))
    for v in [0, -1, "a"]:
        p.api(gs, f"refine(width={v!r})", "bad", lambda v=v: base.refine(width=v), "width")
    for v in ["bogus", 3, None]:
        p.api(
            gs,
            f"make_transfer kind={v!r}",
            "bad",
            lambda v=v: make_transfer(Grid.uniform(5), Grid.uniform(3), v),
            "kind",
        )
    # schedule files
    good = json.loads(base.to_json())
    files = _corrupt_schedules(good)
    for name, text in files.items():
        f = tmp / f"sched-{len(p.cases)}.json"
        f.write_text(text)
        p.api(
            gs,
            f"from_json {name}",
            "bad",
            lambda f=f: GridSchedule.from_json(f),
            f.name,
            "schedule",
        )
    p.api(
        gs,
        "from_json missing file",
        "bad",
        lambda: GridSchedule.from_json(tmp / "nope.json"),
        "nope.json",
    )
    p.api(
        gs,
        "from_json a folder",
        "bad",
        lambda: GridSchedule.from_json(tmp),
        str(tmp.name),
        "schedule",
    )
    ok = tmp / "good-sched.json"
    ok.write_text(base.to_json())
    p.api(gs, "from_json good", "good", lambda: GridSchedule.from_json(ok))
    p.api(
        gs,
        "to_json into a missing folder",
        "bad",
        lambda: base.to_json(tmp / "no" / "s.json"),
        "s.json",
        "no",
    )


def _corrupt_schedules(good: dict) -> dict[str, str]:
    out = {"not json": "{ widths: ", "a list": "[1, 2]", "empty": ""}

    def variant(name, fn):
        d = json.loads(json.dumps(good))
        try:
            fn(d)
        except (KeyError, IndexError, TypeError):
            return
        out[name] = json.dumps(d)

    keys = list(good)
    for k in keys:
        variant(f"without {k}", lambda d, k=k: d.pop(k))
        variant(f"{k} a string", lambda d, k=k: d.__setitem__(k, "a"))
        variant(f"{k} null", lambda d, k=k: d.__setitem__(k, None))
        if isinstance(good[k], list) and good[k]:
            variant(f"{k} with a bool", lambda d, k=k: d[k].__setitem__(0, True))
            variant(f"{k} with a negative", lambda d, k=k: d[k].__setitem__(0, -1))
            variant(f"{k} with a nan", lambda d, k=k: d[k].__setitem__(0, NAN))
            variant(f"{k} empty", lambda d, k=k: d.__setitem__(k, []))
    return out


def dataset_cases(p: Probe) -> None:
    from spacetime_nets import datasets

    small = {
        "circles": dict(n=60),
        "moons": dict(n=60),
        "xor": dict(n=60),
        "signals": dict(n=80, grid_size=16),
        "burgers": dict(n=60, grid_size=16, fine=64, modes=8),
        "darcy": dict(n=60, grid_size=9, fine=17, modes=4),
        "helmholtz": dict(n=60, grid_size=9, fine=17, modes=4),
        "heat": dict(n=60, grid_size=16),
    }
    for name, base in small.items():
        fn = getattr(datasets, name)
        g = f"datasets.{name}"

        def call(fn=fn, base=base, **kw):
            return lambda: fn(**{**base, **kw})

        p.api(g, "small", "good", call())
        p.api(g, "n as np.int64", "good", call(n=np.int64(base.get("n", 60))))
        for v in ["a", True, 1.5, -1, 0, None, 10**12]:
            p.api(g, f"n={v!r}", "bad", call(n=v), "n")
        for v in ["a", 1.5, -1, True, 2**70]:
            p.api(g, f"seed={v!r}", "bad", call(seed=v), "seed")
        for v in [(0.5, 0.5), (1.0, 0.0, 0.0), "a", (0.7, 0.2, 0.2), (NAN, 0.5, 0.5)]:
            p.api(g, f"splits={v!r}", "bad", call(splits=v), "splits")
        for v in [torch.int64, "float32", None]:
            p.api(g, f"dtype={v!r}", "bad", call(dtype=v), "dtype")
        if "grid_size" in base:
            for v in ["a", 0, -1, 1.5, True, 10**8]:
                p.api(g, f"grid_size={v!r}", "bad", call(grid_size=v), "grid_size")
    for name in ("circles", "moons", "xor", "signals"):
        fn = getattr(datasets, name)
        for v in ["a", NAN, INF, -1.0, 1e300]:
            base = small[name]
            p.api(
                f"datasets.{name}",
                f"noise={v!r}",
                "bad",
                lambda fn=fn, v=v, b=base: fn(**b, noise=v),
                "noise",
            )
    dbase = small["darcy"]
    for v in [(1e300, 1.0), (0.0, 1.0), (-1.0, 2.0), (NAN, 1.0), (1.0,), "a", (1.0, 1e-300)]:
        p.api(
            "datasets.darcy",
            f"a_values={v!r}",
            "bad",
            lambda v=v: datasets.darcy(**dbase, a_values=v),
            "a_values",
        )
    for v in [0.0, -0.1, NAN, "a"]:
        p.api(
            "datasets.burgers",
            f"viscosity={v!r}",
            "bad",
            lambda v=v: datasets.burgers(**small["burgers"], viscosity=v),
            "viscosity",
        )
    for v in [-1.0, NAN, "a", 1e300]:
        p.api(
            "datasets.heat",
            f"time={v!r}",
            "bad",
            lambda v=v: datasets.heat(**small["heat"], time=v),
            "time",
        )
    for v in ["a", NAN, -1.0, 1e300]:
        p.api(
            "datasets.helmholtz",
            f"wavenumber={v!r}",
            "bad",
            lambda v=v: datasets.helmholtz(**small["helmholtz"], wavenumber=v),
            "wavenumber",
        )
    for v in [0, -1, "a", 1.5]:
        p.api(
            "datasets.digits", f"scale={v!r}", "bad", lambda v=v: datasets.digits(scale=v), "scale"
        )
    p.api(
        "datasets.load",
        "unknown name",
        "bad",
        lambda: datasets.load("bogus"),
        "bogus",
        "name",
        "data set",
    )
    p.api(
        "datasets.load",
        "unknown argument",
        "bad",
        lambda: datasets.load("circles", bogus=1),
        "bogus",
    )


def training_cases(p: Probe, tmp: Path) -> None:
    from grids import GridSchedule
    from spacetime_nets import SpaceTimeNet
    from spacetime_nets.training import fit

    sched = GridSchedule.hourglass(8, 4, 2)
    torch.manual_seed(0)
    x = torch.randn(40, 2)
    y = (x[:, 0] > 0).long()
    yr = torch.randn(40, 3)

    def run(data=None, **kw):
        def go():
            model = SpaceTimeNet(sched, 2, 3 if data is None else 3)
            opts = {"epochs": 1, "batch_size": 20, "progress": False, "device": "cpu", **kw}
            return fit(model, data if data is not None else (x, y), **opts)

        return go

    g = "fit"
    p.api(g, "a small run", "good", run())
    p.api(g, "np.int64 epochs", "good", run(epochs=np.int64(1), batch_size=np.int64(20)))
    for arg in ("epochs", "batch_size", "checkpoint_every"):
        for v in ["a", True, 1.5, -1, 0, None]:
            p.api(g, f"{arg}={v!r}", "bad", run(**{arg: v}), arg)
    for arg in ("lr", "lam", "weight_decay"):
        for v in ["a", True, NAN, INF, -1.0]:
            p.api(g, f"{arg}={v!r}", "bad", run(**{arg: v}), arg)
    p.api(g, "lr=0", "bad", run(lr=0.0), "lr")
    for v in ["a", NAN, -1.0, 0.0]:
        p.api(g, f"grad_clip={v!r}", "bad", run(grad_clip=v), "grad_clip")
        p.api(g, f"turnpike={v!r}", "bad" if v != 0.0 else "either", run(turnpike=v), "turnpike")
    for arg, vals in {
        "optimizer": ["bogus", 3],
        "loss": ["bogus", 3],
        "lr_schedule": ["bogus", 3],
        "precision": ["bogus", "fp16x"],
        "compile": ["bogus", 3],
        "device": ["bogus", "cuda:7", 3],
    }.items():
        for v in vals:
            p.api(
                g, f"{arg}={v!r}", "bad", run(**{arg: v}), arg, "cuda" if arg == "device" else arg
            )
    for v in ["a", 1.5, -1, True, 2**70]:
        p.api(g, f"seed={v!r}", "bad", run(seed=v), "seed")
    for v in ["yes", 1]:
        p.api(g, f"normalize={v!r}", "bad", run(normalize=v), "normalize")
        p.api(g, f"progress={v!r}", "bad", run(progress=v), "progress")
    for v in [3, "a", [3]]:
        p.api(g, f"callbacks={v!r}", "bad", run(callbacks=v), "callback")
    for v in [[0.0], [-1.0], ["a"], "a", [NAN]]:
        p.api(g, f"resolutions={v!r}", "bad", run(resolutions=v), "resolutions")
    p.api(g, "p without lp", "bad", run(p=3.0), "p")
    p.api(g, "loss=lp p=-1", "bad", run(data=(x, yr), loss="lp", p=-1.0), "p")
    p.api(
        g,
        "cross_entropy on real targets",
        "bad",
        run(data=(x, yr), loss="cross_entropy"),
        "loss",
        "y",
        "target",
    )
    p.api(
        g,
        "rel_l2 on zero targets",
        "bad",
        run(data=(x, torch.zeros(40, 3)), loss="rel_l2"),
        "zero",
        "target",
        "y",
    )
    p.api(g, "x and y lengths differ", "bad", run(data=(x, y[:30])), "x", "y", "length", "samples")
    p.api(
        g,
        "NaN in x",
        "bad",
        run(data=(x.clone().index_fill_(0, torch.tensor([3]), NAN), y)),
        "x",
        "nan",
        "finite",
    )
    p.api(
        g,
        "NaN in y",
        "bad",
        run(data=(x, yr.clone().index_fill_(0, torch.tensor([3]), NAN))),
        "y",
        "nan",
        "finite",
    )
    p.api(g, "labels out of range", "bad", run(data=(x, y + 5)), "label", "y", "class")
    p.api(g, "negative labels", "bad", run(data=(x, y - 1)), "label", "y", "class")
    p.api(g, "empty train", "bad", run(data=(x[:0], y[:0])), "train", "empty", "sample")
    p.api(g, "x wrong width", "bad", run(data=(torch.randn(40, 5), y)), "x", "in_features", "width")
    p.api(g, "train not data", "bad", run(data="a"), "train")
    p.api(g, "val not data", "bad", run(val="a"), "val")
    p.api(g, "out_dir is a file", "bad", run(out_dir=__file__), "out_dir", Path(__file__).name)
    p.api(g, "resume missing", "bad", run(resume=tmp / "missing.pt"), "resume", "missing.pt")
    bad_ckpt = tmp / "bad.pt"
    bad_ckpt.write_bytes(b"not a checkpoint")
    p.api(
        g, "resume not a checkpoint", "bad", run(resume=bad_ckpt), "resume", "bad.pt", "checkpoint"
    )


def export_and_adapt_cases(p: Probe, tmp: Path) -> None:
    from grids import GridSchedule
    from spacetime_nets import SpaceTimeNet, from_resnet, to_resnet
    from spacetime_nets.adapt import compress

    sched = GridSchedule.hourglass(8, 4, 2)
    model = SpaceTimeNet(sched, 2, 3)
    x = torch.randn(50, 2)
    y = (x[:, 0] > 0).long()
    g = "export"
    p.api(g, "to_resnet('a')", "bad", lambda: to_resnet("a"), "model")
    p.api(
        g, "to_resnet(Linear)", "bad", lambda: to_resnet(torch.nn.Linear(2, 3)), "model", "Linear"
    )
    p.api(g, "to_resnet", "good", lambda: to_resnet(model))
    res = to_resnet(model)
    p.api(
        g,
        "from_resnet wrong schedule",
        "bad",
        lambda: from_resnet(res, GridSchedule.constant(5, 3)),
        "schedule",
    )
    p.api(g, "from_resnet('a')", "bad", lambda: from_resnet("a", sched), "module")
    g = "compress"

    # compress needs a continuous kernel, which can be discretised on other schedules
    cmodel = SpaceTimeNet(GridSchedule.hourglass(16, 8, 2), 2, 3, kernel="basis", modes=4)

    def cmp(data=(x, y), **kw):
        opts = {"tol": 0.5, "max_evaluations": 30, **kw}
        return lambda: compress(cmodel, data, **opts)

    p.api(g, "a small search", "good", cmp())
    for v in ["a", NAN, -1.0, INF, True]:
        p.api(g, f"tol={v!r}", "bad", cmp(tol=v), "tol")
    for v in ["bogus", 3]:
        p.api(g, f"cost={v!r}", "bad", cmp(cost=v), "cost")
        p.api(g, f"metric={v!r}", "bad", cmp(metric=v), "metric")
        p.api(g, f"norm={v!r}", "bad", cmp(norm=v), "norm")
    p.api(g, "cost -> nan", "bad", cmp(cost=lambda m: NAN), "cost")
    p.api(g, "cost -> 'cheap'", "bad", cmp(cost=lambda m: "cheap"), "cost")
    p.api(g, "cost -> -1", "bad", cmp(cost=lambda m: -1.0), "cost")
    for arg in ("min_nodes", "max_evaluations", "batch_size"):
        for v in [0, -1, "a", 1.5]:
            p.api(g, f"{arg}={v!r}", "bad", cmp(**{arg: v}), arg)
    p.api(
        g,
        "labels out of range (accuracy)",
        "bad",
        cmp(data=(x, y + 7), metric="accuracy"),
        "label",
        "y",
        "class",
    )
    p.api(g, "NaN in x", "bad", cmp(data=(x.clone().fill_(NAN), y)), "x", "nan", "finite", "data")
    p.api(g, "data='a'", "bad", cmp(data="a"), "data")
    p.api(g, "model='a'", "bad", lambda: compress("a", (x, y), 0.5), "model")
    p.api(g, "a nodal model", "bad", lambda: compress(model, (x, y), 0.5), "model", "nodal")
    for v in ["yes", 3]:
        p.api(g, f"fewer_steps={v!r}", "bad", cmp(fewer_steps=v), "fewer_steps")


def integrate_cases(p: Probe) -> None:
    from grids import GridSchedule
    from spacetime_nets import NodalKernel, integrate

    sched = GridSchedule.constant(6, 2)
    k = NodalKernel.from_schedule(sched) if hasattr(NodalKernel, "from_schedule") else None
    if k is None:
        from spacetime_nets import SpaceTimeNet

        k = SpaceTimeNet(sched, 6, 1, lift="linear").kernel
    x0 = torch.randn(3, 6)
    g = "integrate"
    p.api(g, "valid", "good", lambda: integrate(x0, sched, k))
    for arg, vals in {
        "form": ["bogus", 3],
        "activation": ["bogus", 3],
        "method": ["bogus", None],
    }.items():
        for v in vals:
            p.api(
                g,
                f"{arg}={v!r}",
                "bad",
                lambda arg=arg, v=v: integrate(x0, sched, k, **{arg: v}),
                arg,
            )
    p.api(g, "x0 wrong width", "bad", lambda: integrate(torch.randn(3, 7), sched, k), "x0", "x")
    p.api(g, "schedule='a'", "bad", lambda: integrate(x0, "a", k), "schedule")
    p.api(g, "kernel='a'", "bad", lambda: integrate(x0, sched, "a"), "kernel")
    for v in [0, -1, "a"]:
        p.api(
            g,
            f"checkpoint={v!r}",
            "bad",
            lambda v=v: integrate(x0, sched, k, checkpoint=v),
            "checkpoint",
        )


# ------------------------------------------------------------------------ command line
def cli_cases(p: Probe) -> None:
    tiny = ["--samples", "60", "--epochs", "1", "--steps", "2", "--widths", "8,4", "--quiet"]
    conv = [
        "--dataset", "signals", "--samples", "80", "--grid-size", "32", "--kernel", "conv",
        "--channels", "4", "--steps", "2", "--widths", "32,16", "--epochs", "1", "--quiet",
    ]  # fmt: skip

    def train(name, expect, extra, *words, base=tiny, runs=()):
        p.cli(
            f"train {name}",
            expect,
            ["train", *base, *extra, "--out", "{tmp}/new"],
            *words,
            runs=runs,
        )

    train("tiny", "good", [])
    train("conv", "good", [], base=conv)
    numbers = {
        "--samples": ["0", "-1", "a", "1e300", "1.5"],
        "--steps": ["0", "-1", "a", "1.5"],
        "-T": ["0", "-1", "nan", "inf", "a"],
        "--epochs": ["0", "-1", "a", "1.5"],
        "--batch-size": ["0", "-1", "a"],
        "--lr": ["0", "-1", "nan", "inf", "a"],
        "--weight-decay": ["-1", "nan", "a"],
        "--lam": ["-1", "nan", "inf", "a"],
        "--turnpike": ["-1", "nan", "a"],
        "--grad-clip": ["0", "-1", "nan", "a"],
        "--checkpoint-every": ["0", "-1", "a"],
        "--seed": ["-1", "a", "1.5", str(2**70)],
        "--init-scale": ["-1", "nan", "a"],
        "--widths": ["a", "8", "0,4", "8,4,2,1,1", "8,-4", "1e300,4"],
        "--splits": ["0.5,0.5", "a", "1,0,0", "0.7,0.2,0.2"],
        "--device": ["bogus", "cuda:9"],
    }
    for opt, vals in numbers.items():
        for v in vals:
            train(f"{opt} {v}", "bad", [opt, v], opt.lstrip("-"), opt)
    conv_numbers = {
        "--radius": ["0", "-1", "nan", "1e300", "a"],
        "--radius-spacings": ["0", "-1", "nan", "1e300"],
        "--channels": ["0", "-1", "a", str(2**40)],
        "--modes": ["0", "-1", "a"],
        "--grid-size": ["0", "1", "-1", "a", str(10**8)],
        "--norm-groups": ["0", "3"],
        "--head-hidden": ["0", "-1"],
    }
    for opt, vals in conv_numbers.items():
        for v in vals:
            extra = [opt, v] + (["--norm", "group"] if opt == "--norm-groups" else [])
            extra += ["--readout", "mean"] if opt == "--head-hidden" else []
            train(f"conv {opt} {v}", "bad", extra, opt.lstrip("-"), opt, base=conv)
    inapplicable = {
        "--radius with nodal": ["--radius", "0.2"],
        "--radius-spacings with nodal": ["--radius-spacings", "2"],
        "--modes with nodal": ["--modes", "4"],
        "--channels with nodal": ["--channels", "4"],
        "--pointwise with nodal": ["--pointwise"],
        "--coordinates on points": ["--coordinates"],
        "--norm with nodal": ["--norm", "instance"],
        "--norm-groups without --norm": ["--norm-groups", "2"],
        "--head-hidden with quadrature": ["--head-hidden", "8"],
        "--readout function on labels": ["--readout", "function"],
        "--basis with nodal": ["--basis", "fourier"],
        "--grid-size on circles": ["--grid-size", "16"],
        "--p without lp": ["--p", "3"],
        "--loss rel_l2 on labels": ["--loss", "rel_l2"],
        "--loss cross_entropy with mse data?": ["--loss", "mse"],
    }
    for name, extra in inapplicable.items():
        word = extra[0]
        expect = "either" if name.endswith("?") else "bad"
        train(name.rstrip("?"), expect, extra, word.lstrip("-"), word)
    train(
        "conv --readout function on labels", "bad", ["--readout", "function"], "readout", base=conv
    )
    train("conv --basis fourier", "bad", ["--basis", "fourier"], "basis", base=conv)
    train("conv --pointwise ok", "good", ["--pointwise"], base=conv)
    # --schedule FILE next to schedule-shaping options
    for opt, v in [("--widths", "8,4"), ("--steps", "3"), ("-T", "2"), ("--rule", "simpson")]:
        p.cli(
            f"train --schedule FILE {opt}",
            "bad",
            ["train", "--samples", "60", "--epochs", "1", "--quiet", "--schedule", "{sched}", opt, v,
             "--out", "{tmp}/new"],
            opt.lstrip("-"), opt, "schedule",
        )  # fmt: skip
    p.cli(
        "train --schedule FILE",
        "good",
        ["train", "--samples", "60", "--epochs", "1", "--quiet", "--schedule", "{sched}", "--out", "{tmp}/new"],
    )  # fmt: skip
    p.cli(
        "train --schedule missing",
        "bad",
        ["train", *tiny, "--schedule", "{tmp}/nope.json"],
        "nope.json",
        "schedule",
    )
    p.cli("train --schedule a folder", "bad", ["train", *tiny, "--schedule", "{tmp}"], "schedule")
    p.cli(
        "train --out an existing run",
        "bad",
        ["train", *tiny, "--out", "{run}"],
        "out",
        "overwrite",
        "run",
        runs=("run",),
    )
    p.cli(
        "train --out a file",
        "bad",
        ["train", *tiny, "--out", "{run}/last.pt"],
        "out",
        "last.pt",
        runs=("run",),
    )
    # resume with changed settings (the fixture run's own settings, then one changed)
    own = ["--samples", "60", "--steps", "2", "--widths", "8,4"]
    for opt, v in [("--lam", "0.5"), ("--turnpike", "0.1"), ("--loss", "mse"), ("--weight-decay", "0.1"),
                   ("--dataset", "moons"), ("--kernel", "basis"), ("--widths", "12,4"), ("--seed", "5"),
                   ("--optimizer", "sgd"), ("--samples", "90")]:  # fmt: skip
        p.cli(
            f"train --resume {opt}",
            "bad",
            ["train", "--resume", "{run}", "--epochs", "2", "--quiet", *own, opt, v],
            opt.lstrip("-"), opt,
            runs=("run",),
        )  # fmt: skip
    # the step rules (like the learning rate) may change: they do not change the problem
    p.cli("train --resume --grad-clip", "either",
          ["train", "--resume", "{run}", "--epochs", "2", "--quiet", *own, "--grad-clip", "1"],
          "grad-clip", runs=("run",))  # fmt: skip
    p.cli(
        "train --resume",
        "good",
        ["train", "--resume", "{run}", "--epochs", "2", "--quiet", *own],
        runs=("run",),
    )
    p.cli(
        "train --resume without the run's settings",
        "bad",
        ["train", "--resume", "{run}", "--epochs", "2", "--quiet"],
        "resume", "samples",
        runs=("run",),
    )  # fmt: skip
    p.cli("train --resume missing", "bad", ["train", "--resume", "{tmp}/nope"], "nope", "resume")
    # evaluate
    ev = ["evaluate", "{run}"]
    p.cli("evaluate", "good", ev, runs=("run",))
    p.cli("evaluate conv", "good", ["evaluate", "{crun}"], runs=("crun",))
    p.cli("evaluate missing run", "bad", ["evaluate", "{tmp}/nope"], "nope")
    for opt, v in [("--split", "bogus"), ("--batch-size", "0"), ("--batch-size", "a"), ("--device", "bogus"),
                   ("--checkpoint", "{tmp}/nope.pt"), ("--steps", "0"), ("--widths", "a"), ("-T", "nan"),
                   ("--resolution", "40"), ("--resolution", "0")]:  # fmt: skip
        words = (opt.lstrip("-"), opt) + (("nope.pt",) if "nope" in v else ())
        if opt == "--resolution" and v == "40":
            words += ("circles", "function")
        p.cli(f"evaluate {opt} {v}", "bad", [*ev, opt, v], *words, runs=("run",))
    for opt, v in [("--resolution", "0"), ("--resolution", "-3"), ("--resolution", str(10**8)),
                   ("--grid-shape", "16"), ("--radius", "1")]:  # fmt: skip
        p.cli(
            f"evaluate conv {opt} {v}",
            "bad",
            ["evaluate", "{crun}", opt, v],
            opt.lstrip("-"),
            opt,
            runs=("crun",),
        )
    p.cli(
        "evaluate conv --resolution 64",
        "good",
        ["evaluate", "{crun}", "--resolution", "64"],
        runs=("crun",),
    )
    for opt, v in [("--widths", "8,4"), ("--steps", "3"), ("--rule", "simpson")]:
        p.cli(
            f"evaluate --schedule FILE {opt}", "bad", [*ev, "--schedule", "{sched}", opt, v],
            opt.lstrip("-"), opt, "schedule", runs=("run",),
        )  # fmt: skip
    for name in _model_json_edits():
        p.cli(
            f"evaluate model.json {name}",
            "bad",
            ["evaluate", f"{{{name}}}"],
            "model.json",
            runs=(name,),
        )
    p.cli("evaluate truncated last.pt", "bad", ["evaluate", "{trunc}"], "last.pt", runs=("trunc",))
    # export
    ex = ["export", "{run}"]
    p.cli("export", "good", [*ex, "--out", "{tmp}/r.pt2"], runs=("run",))
    p.cli(
        "export torchscript",
        "good",
        [*ex, "--format", "torchscript", "--out", "{tmp}/r.ts.pt"],
        runs=("run",),
    )
    for f in ("last.pt", "model.json", "history.json", "history.csv"):
        p.cli(
            f"export --out RUN/{f}", "bad", [*ex, "--out", f"{{run}}/{f}"], f, "out", runs=("run",)
        )
    for opt, v in [("--tol", "-1"), ("--tol", "nan"), ("--samples", "0"), ("--samples", "a"),
                   ("--split", "bogus"), ("--format", "bogus"), ("--out", "{tmp}"),
                   ("--out", "{tmp}/no/such/dir/r.pt2"), ("--checkpoint", "{tmp}/nope.pt")]:  # fmt: skip
        words = (opt.lstrip("-"), opt, v.split("/")[-1])
        p.cli(f"export {opt} {v}", "bad", [*ex, opt, v], *words, runs=("run",))
    # compress
    cp = ["compress", "{crun}", "--quiet"]  # a continuous (conv) kernel can be compressed
    p.cli("compress", "good", [*cp, "--tol", "5", "--out", "{tmp}/cmp"], runs=("crun",))
    p.cli("compress a nodal run", "bad", ["compress", "{run}", "--quiet", "--tol", "5"],
          "nodal", "kernel", runs=("run",))  # fmt: skip
    for opt, v in [("--tol", "-1"), ("--tol", "nan"), ("--tol", "a"), ("--samples", "0"),
                   ("--metric", "bogus"), ("--norm", "bogus"), ("--out", "{crun}/last.pt"),
                   ("--out", "{run}")]:  # fmt: skip
        extra = [opt, v] + ([] if opt == "--tol" else ["--tol", "5"])
        p.cli(
            f"compress {opt} {v}", "bad", [*cp, *extra], opt.lstrip("-"), opt, "out",
            runs=("crun", "run"),
        )  # fmt: skip
    # the run's own folder: its files are left alone, the three outputs go beside them
    p.cli("compress --out {crun}", "either", [*cp, "--tol", "5", "--out", "{crun}"], "out",
          runs=("crun",))  # fmt: skip
    p.cli("compress --metric accuracy on functions", "bad",
          ["compress", "{frun}", "--quiet", "--tol", "5", "--metric", "accuracy"], "metric", "accuracy",
          runs=("frun",))  # fmt: skip
    # schedule
    p.cli("schedule", "good", ["schedule", "hourglass", "--widths", "8,4", "--steps", "2"])
    p.cli("schedule --json", "good", ["schedule", "ramp", "--json", "{tmp}/s.json"])
    for spec, extra, words in [
        ("bogus", [], ("bogus", "spec", "schedule")),
        ("hourglass", ["--widths", "a"], ("widths",)),
        ("hourglass", ["--steps", "0"], ("steps",)),
        ("hourglass", ["-T", "-1"], ("T",)),
        ("hourglass", ["--rule", "simpson", "--widths", "8,4"], ("widths", "simpson", "n")),
        ("hourglass", ["--json", "{tmp}"], ("json",)),
        ("hourglass", ["--json", "{tmp}/no/such/s.json"], ("json", "s.json")),
        ("hourglass", ["--out", "{tmp}/no/such/s.png"], ("out", "s.png")),
        ("{sched}", ["--widths", "8,4"], ("widths",)),
        ("{sched}", ["--steps", "3"], ("steps",)),
        ("{sched}", ["--dim", "2"], ("dim",)),
        ("moving", ["--widths", "8,4"], ("widths",)),
        ("{tmp}/nope.json", [], ("nope.json", "schedule", "spec")),
    ]:
        p.cli(f"schedule {spec} {' '.join(extra)}", "bad", ["schedule", spec, *extra], *words)
    # experiments (fast sizes)
    for cmd in ("asymptotics", "turnpike"):
        for opt, v in [("--Ts", "-1"), ("--Ts", "nan"), ("--lam", "-1"), ("--n", "0"), ("--augment", "-1"),
                       ("--modes", "0"), ("--outer", "0"), ("--max-iter", "0"), ("--tol", "-1"),
                       ("--seed", "-1")]:  # fmt: skip
            p.cli(
                f"{cmd} {opt} {v}",
                "bad",
                [cmd, "--fast", "--out", "{tmp}/exp", opt, v],
                opt.lstrip("-"),
                opt,
            )
    p.cli("unknown command", "bad", ["bogus"], "bogus", "command")


def _model_json_edits() -> dict[str, Callable[[dict], None]]:
    def set_path(path: Sequence[str], value):
        def edit(d: dict) -> None:
            node = d
            for k in path[:-1]:
                node = node[k]
            node[path[-1]] = value

        return edit

    return {
        "mj_radius_str": _edit_first_key(("radius",), "0.1"),
        "mj_task": set_path(("task",), "bogus"),
        "mj_dataset_arg": _edit_dataset_args({"bogus": 1}),
        "mj_widths_neg": _edit_first_key(("widths",), [-8, 4]),
        "mj_steps_str": _edit_first_key(("steps",), "2"),
        "mj_version": set_path(("version",), 999),
        "mj_not_json": None,
        "mj_empty": None,
        "mj_kernel": _edit_first_key(("kernel",), "bogus"),
        "mj_dataset": _edit_first_key(("dataset",), "bogus"),
        "mj_lr_nan": _edit_first_key(("lr",), "nan"),
        "mj_activation": _edit_first_key(("activation",), 3),
    }


def _edit_first_key(keys: Sequence[str], value):
    def edit(d) -> bool:
        if isinstance(d, dict):
            for k in list(d):
                if k in keys:
                    d[k] = value
                    return True
                if edit(d[k]):
                    return True
        return False

    return edit


def _edit_dataset_args(extra: dict):
    def edit(d: dict) -> None:
        for key in ("dataset_args", "data_args", "dataset_kwargs"):
            if isinstance(d.get(key), dict):
                d[key].update(extra)
                return
        for v in d.values():
            if isinstance(v, dict):
                for key in ("args", "kwargs", "options"):
                    if isinstance(v.get(key), dict) and "name" in v:
                        v[key].update(extra)
                        return
        d.setdefault("data", {}).update(extra) if isinstance(d.get("data"), dict) else None
        d["dataset_args"] = extra

    return edit


def fault_cases(p: Probe) -> None:
    full = [
        ("export --out new", ["export", "{run}", "--out", "{tmp}/out/r.pt2"], ("r.pt2", "space", "large")),
        ("export --out over a good file", ["export", "{run}", "--out", "{tmp}/out/good.bin"],
         ("good.bin", "space", "large")),
        ("export torchscript", ["export", "{run}", "--format", "torchscript", "--out", "{tmp}/out/r.ts.pt"],
         ("r.ts.pt", "space", "large")),
        ("schedule --json over a good file", ["schedule", "hourglass", "--widths", "64,8", "--steps", "12",
                                              "--json", "{tmp}/out/good.bin"], ("good.bin", "space", "large")),
        ("train --resume", ["train", "--resume", "{run}", "--epochs", "3", "--quiet", "--samples", "60",
                            "--steps", "2", "--widths", "8,4"],
         ("last.pt", "history", "model.json", "space", "large")),
        ("compress --out", ["compress", "{crun}", "--tol", "5", "--quiet", "--out", "{tmp}/out/c"],
         ("space", "large", "compress")),
    ]  # fmt: skip
    for name, argv, words in full:
        runs = ("crun",) if "{crun}" in argv else ("run",)
        p.cases.append(
            Case("full disk", name, "bad", words, argv=tuple(argv), runs=runs, fault=True)
        )


# ------------------------------------------------------------------------ fixtures and driver
def make_fixtures(work: Path) -> dict[str, Path]:
    """Two small trained runs (points with labels; conv on signals), a schedule file, and run
    copies with a broken model.json or checkpoint."""
    from grids import GridSchedule
    from spacetime_nets.cli import main

    fx = work / "fixtures"
    fx.mkdir()
    quiet = contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO())
    runs = {
        "run": ["--samples", "60", "--epochs", "1", "--steps", "2", "--widths", "8,4"],
        "crun": ["--dataset", "signals", "--samples", "80", "--grid-size", "32", "--kernel", "conv",
                 "--channels", "4", "--steps", "2", "--widths", "32,16", "--epochs", "1"],
        "frun": ["--dataset", "heat", "--samples", "80", "--grid-size", "16", "--steps", "2",
                 "--widths", "16,8", "--epochs", "1", "--kernel", "basis", "--modes", "4"],
    }  # fmt: skip
    out: dict[str, Path] = {}
    with quiet[0], quiet[1]:
        for name, args in runs.items():
            rc = main(["train", *args, "--quiet", "--out", str(fx / name)])
            if rc != 0:
                raise RuntimeError(f"fixture run {name} failed with exit {rc}")
            out[name] = fx / name
    sched = fx / "sched.json"
    GridSchedule.hourglass(8, 4, 2).to_json(sched)
    out["sched"] = sched
    for name, edit in _model_json_edits().items():
        dst = fx / name
        shutil.copytree(out["run"], dst)
        mj = dst / "model.json"
        if name == "mj_not_json":
            mj.write_text("{ not json")
        elif name == "mj_empty":
            mj.write_text("")
        else:
            d = json.loads(mj.read_text())
            edit(d)
            mj.write_text(json.dumps(d))
        out[name] = dst
    trunc = fx / "trunc"
    shutil.copytree(out["run"], trunc)
    data = (trunc / "last.pt").read_bytes()
    (trunc / "last.pt").write_bytes(data[: len(data) // 2])
    out["trunc"] = trunc
    return out


def build(tmp: Path) -> Probe:
    p = Probe()
    model_cases(p)
    forward_cases(p)
    grid_cases(p, tmp)
    dataset_cases(p)
    training_cases(p, tmp)
    export_and_adapt_cases(p, tmp)
    integrate_cases(p)
    cli_cases(p)
    fault_cases(p)
    return p


def _safe(build_fn: Callable[[Probe], None], p: Probe, group: str) -> None:
    try:
        build_fn(p)
    except Exception as exc:  # noqa: BLE001 - a probe that cannot even set up is a finding

        def fail(exc: Exception = exc) -> None:
            raise exc

        p.cases.append(Case(group, "set-up", "good", run=fail))


def run_probe(select: str | None = None, verbose: bool = False) -> list[Outcome]:
    """Build every case, run those whose group or name contains ``select``, classify them."""
    torch.set_num_threads(1)
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "build").mkdir()
        p = Probe()
        for fn, group in [
            (model_cases, "SpaceTimeNet"),
            (forward_cases, "forward"),
            (lambda q: grid_cases(q, tmp / "build"), "grids"),
            (dataset_cases, "datasets"),
            (lambda q: training_cases(q, tmp / "build"), "fit"),
            (lambda q: export_and_adapt_cases(q, tmp / "build"), "export"),
            (integrate_cases, "integrate"),
            (cli_cases, "cli"),
            (fault_cases, "full disk"),
        ]:
            _safe(fn, p, group)
        cases = [c for c in p.cases if select is None or select in f"{c.group} {c.name}"]
        fixtures = make_fixtures(tmp) if any(c.argv for c in cases) else {}
        for i, case in enumerate(cases):
            work = tmp / f"case{i}"
            work.mkdir()
            if case.fault:
                o = classify_fault(case, fixtures, work)
            elif case.argv is not None:
                o = classify_cli(case, fixtures, work)
            else:
                o = classify_api(case)
            outcomes.append(o)
            shutil.rmtree(work, ignore_errors=True)
            if verbose:
                print(f"{o.verdict:6} {case.group} | {case.name} | {o.detail[:200]}", flush=True)
    return outcomes


def summary(outcomes: Sequence[Outcome]) -> str:
    counts = Counter(o.verdict for o in outcomes)
    lines = [
        f"{len(outcomes)} cases: "
        + ", ".join(f"{k} {counts.get(k, 0)}" for k in ("clear", "ok", "raw", "silent", "loss"))
    ]
    for o in outcomes:
        if o.verdict in ("raw", "silent", "loss"):
            lines.append(f"  {o.verdict:6} {o.case.group} | {o.case.name} | {o.detail[:240]}")
    return "\n".join(lines)


if __name__ == "__main__":
    args = sys.argv[1:]
    verbose = "-v" in args
    rest = [a for a in args if a != "-v"]
    result = run_probe(rest[0] if rest else None, verbose=verbose)
    print(summary(result))
    sys.exit(1 if any(o.verdict in ("raw", "silent", "loss") for o in result) else 0)
