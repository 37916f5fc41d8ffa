"""The documentation site builds with ``mkdocs build --strict`` (no warnings)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _missing() -> list[str]:
    names = ["mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"]
    out = []
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            out.append(name)
    return out


MISSING = _missing()


@pytest.mark.skipif(
    bool(MISSING),
    reason=f"the docs extras are not installed (pip install -e '.[docs]'): {', '.join(MISSING)}",
)
def test_docs_build_strict(tmp_path):
    env = dict(os.environ)
    env["NO_MKDOCS_2_WARNING"] = "1"
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict"]
    cmd += ["-f", str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")]
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "reference" / "grids.schedule" / "index.html").is_file()
