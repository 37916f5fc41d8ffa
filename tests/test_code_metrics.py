"""tests/code_metrics.py counts what it says, on snippets counted by hand."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "code_metrics", Path(__file__).with_name("code_metrics.py")
)
cm = importlib.util.module_from_spec(spec)
sys.modules["code_metrics"] = cm  # dataclasses look their module up there
spec.loader.exec_module(cm)

SNIPPET = '''"""A module docstring
on two lines."""

X = 1
"""An attribute's docstring."""


def f(a, b, c, d, e, g, names):
    """A function's docstring."""
    # a comment
    if a == "x" or "y" != b:  # two
        return 1

    if c in ("p", "q") and d not in "abc":  # two more
        return 2
    if e == 1 or g in names:  # no string literal: none
        return 3
    return "a" == g == "b"  # a chain: two
'''


def test_string_comparisons_and_code_lines_of_a_snippet():
    tree = ast.parse(SNIPPET)
    assert cm.string_comparisons(tree) == 6
    # code: X = 1, def, the three ifs, the four returns
    assert cm.code_lines(SNIPPET, tree) == {4, 8, 11, 12, 14, 15, 16, 17, 18}


def test_measure_counts_long_functions_by_code_lines(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(cm.LONG))  # LONG lines + def = LONG + 1
    doc = '    """' + "\n".join(["doc"] * 100) + '"""\n'  # a long docstring does not count
    (pkg / "m.py").write_text(
        f"def long():\n{body}\n\n\ndef short():\n{doc}    return 0\n", encoding="utf-8"
    )
    m = cm.measure(tmp_path, ("pkg",))
    assert m.files == 1 and m.code_lines == cm.LONG + 3
    assert [w.split()[-1] for w in m.long_functions] == ["long"]
    assert m.string_comparisons == 0 and m.per_1000 == 0.0
