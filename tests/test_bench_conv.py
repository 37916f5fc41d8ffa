"""Plumbing of ``benchmarks/bench_conv.py``: ``--quick`` runs in a fresh process, checks that
the hand-written Conv1d / FFT networks compute the space-time nets' functions, and prints
finite positive time ratios. No timing is asserted (timings depend on the machine)."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_conv_quick_prints_finite_positive_ratios():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_conv.py"), "--quick", "--threads", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    found = dict(re.findall(r"^ratio (\w+): (\S+)$", proc.stdout, flags=re.MULTILINE))
    assert set(found) == {"conv", "spectral"}, proc.stdout
    for name, text in found.items():
        value = float(text)
        assert math.isfinite(value) and value > 0, (name, text)
