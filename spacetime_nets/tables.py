"""Result tables: rows (dicts keyed by column name) as aligned plain text and as CSV files.

The experiments (``spacetime_nets.experiments``) print their summaries with
[`format_table`][spacetime_nets.tables.format_table] and write them with
[`write_csv`][spacetime_nets.tables.write_csv]; floats go to the CSV files with
``repr`` (every digit, so a value read back is the value computed) and to the screen with six
significant digits.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from typing import Any

__all__ = ["format_value", "format_table", "write_csv", "format_arc"]


def format_value(v: Any) -> str:
    """A table cell: floats with 6 significant digits (``%.6g``), anything else by ``str``.

    Args:
        v: the value of the cell.

    Returns:
        The cell's text.
    """
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def format_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """The ``columns`` of ``rows`` as right-aligned plain text, one header line then one line
    per row (a missing entry is an empty cell).

    Args:
        rows: one dict per row.
        columns: the keys to show, in order.

    Returns:
        The table, lines joined by newlines.
    """
    cells = [[format_value(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def write_csv(path: str | os.PathLike, rows: Sequence[dict], columns: Sequence[str]) -> None:
    """Write the ``columns`` of ``rows`` to the CSV file ``path`` (its folder is created);
    floats are written with ``repr``, so they read back exactly.

    Args:
        path: the file to write.
        rows: one dict per row; keys outside ``columns`` are left out.
        columns: the header, in order.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: (repr(r[c]) if isinstance(r[c], float) else r[c]) for c in columns})


def format_arc(window: tuple[float, float] | None) -> str:
    """``"[a, b]"`` for a time window (t_a, t_b) with 4 significant digits; ``""`` for None.

    Args:
        window: the window ``(t_a, t_b)``, or None.

    Returns:
        The cell's text.
    """
    return "" if window is None else f"[{window[0]:.4g}, {window[1]:.4g}]"
