"""Shared test configuration: one torch thread (the suite's tensors are small, and worker
threads only wait on each other on a shared 2-core machine)."""

import os
import subprocess
import sys

import pytest
import torch

torch.set_num_threads(1)


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    """``spacetime-nets ARGS`` in a fresh interpreter (one OpenMP thread), output captured."""
    return subprocess.run(
        [sys.executable, "-m", "spacetime_nets", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={"OMP_NUM_THREADS": "1", **os.environ},
    )


@pytest.fixture(scope="session")
def cli():
    """The command line as a function: ``cli("train", ...)`` -> CompletedProcess."""
    return _run_cli
