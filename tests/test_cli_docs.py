"""The command-line examples of docs/how-to/cli.md run as written.

The ``bash`` (also ``sh``, ``shell``, ``console``) code blocks of the page are read in order
and each ``spacetime-nets ...`` command line (``\\`` continuations joined, ``#`` comments
dropped, ``NAME=value`` prefixes put in its environment; in a ``console`` block only the
lines after a ``$`` prompt) runs as ``python -m spacetime_nets ...`` in a process of its own,
all in one temporary folder: a later command acts on the run folders an earlier one wrote.
Every command must exit 0. On Linux each process is forked from one interpreter that has
imported torch and the package once (``run_all``: this saves seconds of imports per command
and runs the package's ``__main__`` as ``-m`` does); elsewhere each is a fresh interpreter.
Conventions of the page:

- a block whose first lines hold ``# doc-test: skip (<reason>)`` is not run (it needs CUDA,
  ``torchrun`` or several GPUs); the reason is printed in the rendered page, so a reader sees
  it too (the convention of tests/test_doc_snippets.py);
- ``# doc-test: exit N`` on the comment line just before a command says that the command is
  meant to fail with exit code ``N`` (an example of an error); it must then end with the
  one line ``spacetime-nets: error: ...`` on stderr.

To keep the test under a minute and a half on two cores, the commands run smaller than
written, and only in their sizes (every other option is passed unchanged):

- ``train``: ``--epochs N`` becomes ``--epochs ceil(N / 20)`` (20 -> 1, 40 -> 2, so a resume
  still continues past the epochs done; a command without ``--epochs``, whose default is 20,
  gets ``--epochs 1``), and ``--samples N`` becomes ``--samples min(N, 100)`` (a command
  without ``--samples`` gets ``--samples 100``, except on ``digits``, which has a fixed size);
- every command runs with ``SPACETIME_FAST=1`` in its environment, which the page documents:
  ``asymptotics`` and ``turnpike`` then take a few seconds (``train``, ``evaluate``,
  ``export``, ``compress`` and ``schedule`` ignore it).
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "how-to" / "cli.md"
SHELLS = ("bash", "sh", "shell", "console")
PROGRAM = "spacetime-nets"
SAMPLES = 100  # largest --samples of a train command here
EPOCH_DIVISOR = 20  # --epochs N runs ceil(N / 20) epochs

_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```", re.M | re.S
)
_SKIP = re.compile(r"^\s*# doc-test: skip \((?P<reason>[^)]+)\)", re.M)
_EXIT = re.compile(r"^#\s*doc-test:\s*exit\s+(?P<code>\d+)\s*$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass
class Command:
    """One documented command line: its text, the program's arguments, the environment
    variables it sets, the exit code it is meant to end with."""

    text: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    exit_code: int = 0


def commands(page: Path) -> tuple[list[Command], list[str]]:
    """(the commands of the shell blocks of ``page`` in order, reasons of skipped blocks).
    A line of a shell block that is not a ``spacetime-nets`` command raises ``ValueError``,
    so that nothing on the page goes unchecked by accident."""
    found, skipped = [], []
    for m in _FENCE.finditer(page.read_text(encoding="utf-8")):
        if m["lang"] not in SHELLS:
            continue
        body = textwrap.dedent(m["body"])
        skip = _SKIP.search("\n".join(body.splitlines()[:3]))
        if skip:
            skipped.append(skip["reason"])
            continue
        exit_code = 0
        for line in re.sub(r"\\\n", " ", body).splitlines():
            line = line.strip()
            if m["lang"] == "console":  # commands follow a prompt; other lines are output
                if not line.startswith("$ "):
                    continue
                line = line[2:].strip()
            if not line or line.startswith("#"):
                marker = _EXIT.match(line)
                if marker:
                    exit_code = int(marker["code"])
                continue
            words = shlex.split(line, comments=True)
            env = {}
            while words and _ENV.match(words[0]):
                name, _, value = words.pop(0).partition("=")
                env[name] = value
            if words[:1] == [PROGRAM]:
                argv = words[1:]
            elif words[:3] == ["python", "-m", "spacetime_nets"]:
                argv = words[3:]
            else:
                raise ValueError(
                    f"{page.name}: not a {PROGRAM} command: {line!r} (mark its block "
                    "'# doc-test: skip (<reason>)' if it cannot run here)"
                )
            found.append(Command(" ".join(line.split()), argv, env, exit_code))
            exit_code = 0
    return found, skipped


def _option(argv: list[str], name: str) -> int | None:
    """Index of the value of option ``name`` in ``argv`` (``--name V``), or None."""
    for i, word in enumerate(argv[:-1]):
        if word == name:
            return i + 1
    return None


def shrink(argv: list[str]) -> list[str]:
    """The command with smaller sizes (see the module docstring); other commands unchanged."""
    argv = list(argv)
    if argv[:1] != ["train"]:
        return argv
    assert not any(w.startswith(("--epochs=", "--samples=")) for w in argv), (
        "write '--epochs N' and '--samples N' on the page (shrink reads them so)"
    )
    i = _option(argv, "--epochs")
    if i is None:
        argv += ["--epochs", "1"]
    else:
        argv[i] = str(math.ceil(int(argv[i]) / EPOCH_DIVISOR))
    i = _option(argv, "--samples")
    if i is not None:
        argv[i] = str(min(int(argv[i]), SAMPLES))
    else:
        j = _option(argv, "--dataset")
        if j is None or argv[j] != "digits":
            argv += ["--samples", str(SAMPLES)]
    return argv


def test_the_extractor_reads_commands_markers_and_continuations(tmp_path):
    page = tmp_path / "p.md"
    page.write_text(
        "text\n\n```bash\n# a comment\nspacetime-nets train --epochs 40 \\\n"
        "    --out runs/a   # trailing comment\nSPACETIME_FAST=1 spacetime-nets demo\n```\n\n"
        "```python\nprint('not a shell block')\n```\n\n"
        "1. a list\n\n    ```console\n    $ python -m spacetime_nets evaluate runs/a\n"
        "    test (30 samples): loss 0.1\n    $ # doc-test: exit 2\n"
        "    $ spacetime-nets train --multires 0,1\n    spacetime-nets: error: ...\n    ```\n\n"
        "```bash\n# doc-test: skip (needs CUDA)\nspacetime-nets train --device cuda\n```\n"
    )
    found, skipped = commands(page)
    assert [(c.argv, c.env, c.exit_code) for c in found] == [
        (["train", "--epochs", "40", "--out", "runs/a"], {}, 0),
        (["demo"], {"SPACETIME_FAST": "1"}, 0),
        (["evaluate", "runs/a"], {}, 0),
        (["train", "--multires", "0,1"], {}, 2),
    ]
    assert skipped == ["needs CUDA"]
    page.write_text("```bash\nls runs\n```\n")
    with pytest.raises(ValueError, match="not a spacetime-nets command"):
        commands(page)


def test_shrink_changes_only_the_sizes_of_train():
    assert shrink(["train", "--dataset", "burgers", "--samples", "1250", "--epochs", "20"]) == [
        "train", "--dataset", "burgers", "--samples", "100", "--epochs", "1",
    ]  # fmt: skip
    assert shrink(["train", "--epochs", "40", "--samples", "50"])[1:] == [
        "--epochs", "2", "--samples", "50",
    ]  # fmt: skip
    assert shrink(["train", "--dataset", "digits"])[1:] == [
        "--dataset", "digits", "--epochs", "1",
    ]  # fmt: skip
    assert shrink(["train"])[1:] == ["--epochs", "1", "--samples", "100"]
    assert shrink(["evaluate", "runs/a", "--samples", "1000"]) == [
        "evaluate", "runs/a", "--samples", "1000",
    ]  # fmt: skip


# The commands run in processes forked from one interpreter that has imported the modules they
# all import (torch alone takes seconds to import: 19 fresh interpreters would triple the time).
# Each child does what ``python -m spacetime_nets ARGV`` does, from a clean state: it sets the
# command's environment, sends its output to two files and runs the package's ``__main__``.
FORK = hasattr(os, "fork") and sys.platform.startswith("linux")
PRELOAD = (
    "torch",
    "torch._dynamo",
    "sklearn.model_selection",
    "matplotlib.pyplot",
    "spacetime_nets.cli",
    "spacetime_nets.training",
    "spacetime_nets.datasets",
    "spacetime_nets.experiments",
)
_DRIVER = r"""
import importlib, json, os, runpy, sys, time, traceback

spec = json.load(open(sys.argv[1], encoding="utf-8"))
for name in spec["preload"]:
    try:
        importlib.import_module(name)
    except Exception:
        pass
results = []
for i, cmd in enumerate(spec["commands"]):
    start = time.perf_counter()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.environ.update(cmd["env"])
            for fd, suffix in ((1, "out"), (2, "err")):
                f = os.open(os.path.join(spec["logs"], f"{i}.{suffix}"), os.O_WRONLY | os.O_CREAT)
                os.dup2(f, fd)
                os.close(f)
            sys.argv = ["", *cmd["argv"]]
            runpy.run_module("spacetime_nets", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            if isinstance(exc.code, int) or exc.code is None:
                code = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    results.append({"code": code, "seconds": time.perf_counter() - start})
    if code != cmd["exit"]:
        break
with open(os.path.join(spec["logs"], "results.json"), "w", encoding="utf-8") as f:
    json.dump(results, f)
"""


def run_all(cmds: list[dict], work: Path, logs: Path, env: dict) -> list[dict]:
    """Run ``cmds`` (``argv``, ``env``, ``exit``) in order in ``work``, up to the first that
    ends with another exit code than its ``exit``; their outputs go to ``logs/<i>.out`` and
    ``logs/<i>.err``. Returns ``{"code", "seconds"}`` of each command run."""
    if FORK:
        spec = logs / "spec.json"
        spec.write_text(
            json.dumps({"commands": cmds, "logs": str(logs), "preload": PRELOAD}), "utf-8"
        )
        proc = subprocess.run(
            [sys.executable, "-c", _DRIVER, str(spec)],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, f"the driver failed:\n{proc.stderr[-3000:]}"
        return json.loads((logs / "results.json").read_text("utf-8"))
    results = []
    for i, cmd in enumerate(cmds):
        start = time.perf_counter()
        with open(logs / f"{i}.out", "w") as out, open(logs / f"{i}.err", "w") as err:
            code = subprocess.run(
                [sys.executable, "-m", "spacetime_nets", *cmd["argv"]],
                cwd=work,
                env={**env, **cmd["env"]},
                stdout=out,
                stderr=err,
                timeout=300,
            ).returncode
        results.append({"code": code, "seconds": time.perf_counter() - start})
        if code != cmd["exit"]:
            break
    return results


@pytest.mark.slow
def test_cli_page_commands_run(tmp_path):
    found, skipped = commands(PAGE)
    assert found, f"{PAGE.name}: no {PROGRAM} commands found"
    env = {
        **os.environ,
        "MPLBACKEND": "Agg",
        "PYTHONWARNINGS": "ignore",
        "OMP_NUM_THREADS": "1",
        "SPACETIME_FAST": "1",
    }
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "SPACETIME_NETS_DEBUG"):
        env.pop(name, None)
    work, logs = tmp_path / "work", tmp_path / "logs"
    work.mkdir()
    logs.mkdir()
    cmds = [{"argv": shrink(c.argv), "env": c.env, "exit": c.exit_code} for c in found]
    results = run_all(cmds, work, logs, env)
    for i, (cmd, res) in enumerate(zip(found, results)):
        print(f"{res['seconds']:5.1f} s  {cmd.text}")
        run = shlex.join([PROGRAM, *cmds[i]["argv"]])
        assert res["code"] == cmd.exit_code, (
            f"{PAGE.name}: exit code {res['code']}, expected {cmd.exit_code}:\n"
            f"  documented: {cmd.text}\n  run:        {run}\n"
            f"  (after {i} commands that passed)\n"
            f"stdout:\n{(logs / f'{i}.out').read_text()[-1500:]}\n"
            f"stderr:\n{(logs / f'{i}.err').read_text()[-3000:]}"
        )
        if cmd.exit_code:  # a failure ends with one line 'spacetime-nets: error: ...'
            last = ((logs / f"{i}.err").read_text().strip().splitlines() or [""])[-1]
            assert last.startswith(f"{PROGRAM}: error: "), f"{cmd.text}: stderr ends {last!r}"
    assert len(results) == len(found)
    total = sum(r["seconds"] for r in results)
    print(f"{len(results)} commands in {total:.0f} s, {len(skipped)} blocks skipped")
