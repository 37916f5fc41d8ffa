"""The documentation site builds with ``mkdocs build --strict`` (no warnings) and works
offline: no page loads a script from another host; MathJax is served from the site."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _missing() -> list[str]:
    names = ["mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", "mathjax"]
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


@pytest.mark.slow
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
    site = tmp_path / "site"
    assert (site / "index.html").is_file()
    assert (site / "reference" / "grids.schedule" / "index.html").is_file()
    check_offline(site)
    check_every_public_name_is_rendered(site)


def check_every_public_name_is_rendered(site: Path) -> None:
    """Every name in the ``__all__`` of a module that a reference page documents has an entry
    on that page (an anchor ``module.name``, or ``module.<submodule>.name`` for a function
    shadowed by its module's name), so a re-export griffe cannot see (a lazy import, a
    function named like its submodule) does not vanish from the reference."""
    missing = []
    for page in sorted((ROOT / "docs" / "reference").glob("*.md")):
        text = page.read_text(encoding="utf-8")
        if re.search(r"^\s+members:\s*false\s*$", text, re.M):
            continue  # a package page: its names are documented on their modules' pages
        for line in text.splitlines():
            if not line.startswith("::: "):
                continue
            name = line[4:].strip()
            html = site / "reference" / page.stem / "index.html"
            try:
                module = importlib.import_module(name)
            except ImportError:  # an object's path (module.function)
                continue
            ids = set(re.findall(r'id="([\w.]+)"', html.read_text(encoding="utf-8")))
            for member in getattr(module, "__all__", []):
                found = f"{name}.{member}" in ids or any(
                    i.startswith(f"{name}.") and i.endswith(f".{member}") for i in ids
                )
                if not found:
                    missing.append(f"{name}.{member} ({page.name})")
    assert not missing, "public names without an entry in the reference: " + ", ".join(missing)


class _Scripts(HTMLParser):
    """The ``src`` of every ``<script>`` of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            src = dict(attrs).get("src")
            if src is not None:
                self.sources.append(src)


def _external(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.scheme or parts.netloc) or url.startswith("//")


def check_offline(site: Path) -> None:
    """Every page's scripts are files of the site; the mathematics pages load MathJax from
    it, and the file is there (not a stub)."""
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 10
    mathjax_pages = 0
    for page in pages:
        parser = _Scripts()
        parser.feed(page.read_text(encoding="utf-8"))
        for src in parser.sources:
            assert not _external(src), f"{page.relative_to(site)} loads {src}"
            path = src.split("?")[0]  # 404.html uses root-relative paths
            target = (site / path[1:] if path.startswith("/") else page.parent / path).resolve()
            assert target.is_file(), f"{page.relative_to(site)}: {src} is not in the site"
            if target.name == "tex-svg.js":
                mathjax_pages += 1
                assert target.stat().st_size > 1_000_000  # the whole MathJax component
    assert mathjax_pages == len(pages)
    concepts = (site / "concepts" / "index.html").read_text(encoding="utf-8")
    assert 'class="arithmatex"' in concepts  # the mathematics is there for MathJax
    # extensions MathJax loads on demand lie beside it, under the path it derives itself
    assert (site / "javascripts/mathjax/input/tex/extensions/boldsymbol.js").is_file()


def test_check_offline_catches_an_external_script(tmp_path):
    """The offline check is not vacuous: a page with a CDN script fails it."""
    site = tmp_path / "site"
    for i in range(12):
        page = site / f"p{i}" / "index.html"
        page.parent.mkdir(parents=True)
        page.write_text('<script src="https://cdn.example.org/mathjax/tex-svg.js"></script>')
    with pytest.raises(AssertionError, match="loads https://cdn"):
        check_offline(site)
