"""MkDocs hook: serve MathJax from the site itself, so the mathematics renders offline.

The MathJax 3 files come from the Python package ``django-static-mathjax`` (installed with
the ``docs`` extra: ``pip install -e '.[docs]'``, done by ``make docs``). The build adds to
the site ``javascripts/mathjax/tex-svg.js`` (TeX input, SVG output: no font files to fetch)
and the TeX extensions that MathJax loads on demand (``input/tex/extensions/*.js``, found
relative to the script). No page references a script on another host.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

DIST = "django-static-mathjax"
SITE_DIR = "javascripts/mathjax"  # where the files land in the site (see mkdocs.yml)


def mathjax_root() -> Path:
    """The ``es5`` folder of the installed MathJax distribution."""
    try:
        dist = importlib.metadata.distribution(DIST)
    except importlib.metadata.PackageNotFoundError:
        raise PluginError(
            f"MathJax for the offline docs: the package {DIST} is not installed "
            "(pip install -e '.[docs]')"
        ) from None
    root = Path(str(dist.locate_file("mathjax/static/mathjax/es5")))
    if not (root / "tex-svg.js").is_file():
        raise PluginError(f"MathJax for the offline docs: {root / 'tex-svg.js'} is missing")
    return root


def on_files(files: Files, config) -> Files:
    root = mathjax_root()
    sources = [root / "tex-svg.js", *sorted((root / "input/tex/extensions").glob("*.js"))]
    for path in sources:
        uri = f"{SITE_DIR}/{path.relative_to(root).as_posix()}"
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files
