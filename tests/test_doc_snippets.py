"""The Python examples of the how-to guides and of the getting-started page run as written.

The ``python`` code blocks of one page run in order, in one fresh interpreter, in an empty
folder (a later block may use the names of an earlier one). Conventions of the pages:

- a block whose first lines hold ``# doc-test: skip (<reason>)`` is not run (it needs CUDA or
  ``torchrun``); the reason is printed in the rendered page, so a reader sees it too;
- ``<!-- doc-test: file NAME -->`` on the line before a code block of another language (a
  JSON schedule, say) writes that block to ``NAME`` before the page's Python runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs" / "how-to").glob("*.md")) + [ROOT / "docs" / "getting-started.md"]
_FENCE = re.compile(
    r"(?:<!--\s*doc-test:\s*file\s+(?P<file>\S+)\s*-->\s*\n)?"
    r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```",
    re.M | re.S,
)
_SKIP = re.compile(r"^\s*# doc-test: skip \((?P<reason>[^)]+)\)", re.M)


def blocks(page: Path) -> tuple[list[str], dict[str, str], list[str]]:
    """(Python blocks to run, files to write, reasons of the skipped blocks) of a page."""
    run, files, skipped = [], {}, []
    for m in _FENCE.finditer(page.read_text(encoding="utf-8")):
        body = textwrap.dedent(m["body"])
        if m["file"]:
            files[m["file"]] = body
        if m["lang"] != "python":
            continue
        skip = _SKIP.search("\n".join(body.splitlines()[:3]))
        if skip:
            skipped.append(skip["reason"])
        else:
            run.append(body)
    return run, files, skipped


def test_the_extractor_reads_blocks_markers_and_files(tmp_path):
    page = tmp_path / "p.md"
    page.write_text(
        "text\n\n```python\nx = 1\n```\n\n<!-- doc-test: file s.json -->\n```json\n{}\n```\n\n"
        "1. a list\n\n    ```python\n    y = x + 1\n    ```\n\n"
        "```python\n# doc-test: skip (needs CUDA)\nimport torch\n```\n\n```bash\nls\n```\n"
    )
    run, files, skipped = blocks(page)
    assert run == ["x = 1\n", "y = x + 1\n"]
    assert files == {"s.json": "{}\n"}
    assert skipped == ["needs CUDA"]


# Pages whose examples do not run as written yet, and why (each entry names what to change).
KNOWN_GAPS: dict = {}  # page name -> a pytest mark, for a page that cannot run here yet
RUNNABLE = [
    pytest.param(p, id=p.name, marks=KNOWN_GAPS.get(p.name, ())) for p in PAGES if blocks(p)[0]
]


@pytest.mark.slow
@pytest.mark.parametrize("page", RUNNABLE)
def test_page_examples_run(page, tmp_path):
    run, files, skipped = blocks(page)
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    script = "\n\n".join(run)
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"{page.name}:\n{proc.stderr[-3000:]}"
