"""The probe of bad inputs, faults and misuses (``tests/probe.py``) in the suite: every case is
classified automatically, and any raw error, silently accepted bad input or lost file fails."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = Path(__file__).with_name("probe.py")


@pytest.mark.slow
def test_the_probe_finds_no_raw_error_no_silent_case_and_no_lost_file(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, str(PROBE)], capture_output=True, text=True, env=env, timeout=1500
    )
    out = proc.stdout
    counts = re.search(
        r"(\d+) cases: clear (\d+), ok (\d+), raw (\d+), silent (\d+), loss (\d+)", out
    )
    assert counts, f"no summary line:\n{out[-2000:]}\n{proc.stderr[-2000:]}"
    total, clear, ok, raw, silent, loss = map(int, counts.groups())
    # a probe of this breadth: bad inputs, valid ones and faults
    assert total >= 500 and clear >= 400 and ok >= 50, counts.group(0)
    assert (raw, silent, loss) == (0, 0, 0), out[-6000:]
    assert proc.returncode == 0, proc.stderr[-2000:]


def _probe_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("probe", PROBE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["probe"] = module  # dataclasses look the module up by name
    spec.loader.exec_module(module)
    return module


def _fail(exc: BaseException):
    def run():
        raise exc

    return run


@pytest.mark.parametrize(
    "expect, run, verdict",
    [
        ("bad", lambda: None, "silent"),  # a bad input accepted
        ("bad", _fail(ValueError("radius: expected a positive number, got -1")), "clear"),
        ("bad", _fail(ValueError("expected a positive number, got -1")), "raw"),  # unnamed
        ("bad", _fail(ValueError("radius_spacings: expected ...")), "raw"),  # another argument
        ("bad", _fail(RuntimeError("radius: storage overflow")), "raw"),  # from inside torch
        ("bad", _fail(OverflowError("radius: too large")), "raw"),
        ("good", _fail(ValueError("radius: expected ...")), "raw"),  # a valid input refused
        ("good", lambda: 1, "ok"),
        ("either", lambda: 1, "ok"),
        ("either", _fail(ValueError("radius: not in float32")), "clear"),
    ],
)
def test_the_probe_classifies_each_outcome(expect, run, verdict):
    probe = _probe_module()
    case = probe.Case("g", "case", expect, ("radius",), run=run)
    assert probe.classify_api(case).verdict == verdict
