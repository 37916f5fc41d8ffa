"""Code metrics of the library (``spacetime_nets/`` and ``grids/``), printed by
``python tests/code_metrics.py [ROOT]`` and quoted in docs/design.md:

- **string comparisons**: comparisons ``==``, ``!=``, ``in``, ``not in`` with a string literal
  on either side (or a tuple, list or set of string literals on the right of ``in``): the
  dispatch on names that registries replace. Given per 1,000 code lines;
- **code lines**: lines that hold code, not blank, not only a comment, not inside a docstring;
- **long functions**: functions and methods of more than 60 code lines (docstrings and
  comments left out);
- **complex functions**: McCabe complexity above 10, as ruff's rule C901 counts it (needs
  ruff, a development dependency).
"""

from __future__ import annotations

import ast
import io
import json
import shutil
import subprocess
import sys
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("spacetime_nets", "grids")
LONG = 60
COMPLEX = 10


@dataclass
class Metrics:
    """The counts over a set of files."""

    files: int = 0
    code_lines: int = 0
    string_comparisons: int = 0
    long_functions: list[str] = field(default_factory=list)
    complex_functions: list[str] | None = None  # None: ruff not installed

    @property
    def per_1000(self) -> float:
        """String comparisons per 1,000 code lines."""
        return 1000.0 * self.string_comparisons / max(self.code_lines, 1)


def _is_str(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _str_collection(node: ast.AST) -> bool:
    return (
        isinstance(node, (ast.Tuple, ast.List, ast.Set))
        and bool(node.elts)
        and all(_is_str(e) for e in node.elts)
    )


def string_comparisons(tree: ast.AST) -> int:
    """The comparisons with a string literal (see the module docstring) in ``tree``."""
    count = 0
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        left = node.left
        for op, right in zip(node.ops, node.comparators):
            if isinstance(op, (ast.Eq, ast.NotEq)) and (_is_str(left) or _is_str(right)):
                count += 1
            elif isinstance(op, (ast.In, ast.NotIn)) and (
                _is_str(left) or _is_str(right) or _str_collection(right)
            ):
                count += 1
            left = right
    return count


def code_lines(source: str, tree: ast.AST) -> set[int]:
    """The numbers of the lines holding a token other than a comment, outside docstrings."""
    doc_lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and _is_str(body[0].value):
                doc_lines.update(range(body[0].lineno, body[0].end_lineno + 1))
        if isinstance(node, ast.Expr) and _is_str(node.value):  # attribute docstrings
            doc_lines.update(range(node.lineno, node.end_lineno + 1))
    lines: set[int] = set()
    skip = (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in skip or tok.type == tokenize.ENDMARKER:
            continue
        lines.update(range(tok.start[0], tok.end[0] + 1))
    return lines - doc_lines


def complex_functions(root: Path, packages: tuple[str, ...] = PACKAGES) -> list[str] | None:
    """The functions ruff's C901 rule (McCabe complexity) finds above ``COMPLEX`` under the
    packages, as ``path:line``; None when ruff is not installed."""
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        return None
    cmd = [ruff, "check", "--no-cache", "--isolated", "--select", "C901", "--output-format",
           "json", "--config", f"lint.mccabe.max-complexity={COMPLEX}"]  # fmt: skip
    proc = subprocess.run(
        cmd + [str(root / p) for p in packages], capture_output=True, text=True, check=False
    )
    return [
        f"{Path(d['filename']).relative_to(root)}:{d['location']['row']}"
        for d in json.loads(proc.stdout or "[]")
    ]


def measure(root: Path, packages: tuple[str, ...] = PACKAGES) -> Metrics:
    """The metrics of every ``.py`` file under ``root/<package>`` for each package."""
    root = root.resolve()
    m = Metrics()
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            source = path.read_text(encoding="utf-8")
            tree = ast.parse(source)
            rel = path.relative_to(root)
            m.files += 1
            lines = code_lines(source, tree)
            m.code_lines += len(lines)
            m.string_comparisons += string_comparisons(tree)
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    where = f"{rel}:{node.lineno} {node.name}"
                    span = range(node.lineno, node.end_lineno + 1)
                    if sum(1 for i in span if i in lines) > LONG:
                        m.long_functions.append(where)
    m.complex_functions = complex_functions(root, packages)
    return m


def main(argv: list[str] | None = None) -> Metrics:
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0]) if args else Path(__file__).resolve().parents[1]
    m = measure(root)
    print(f"files: {m.files}, code lines: {m.code_lines}")
    print(f"string comparisons: {m.string_comparisons} ({m.per_1000:.1f} per 1,000 code lines)")
    print(f"functions over {LONG} lines: {len(m.long_functions)}")
    c = (
        "not measured (ruff not installed)"
        if m.complex_functions is None
        else len(m.complex_functions)
    )
    print(f"functions of complexity over {COMPLEX} (ruff C901): {c}")
    return m


if __name__ == "__main__":
    main()
