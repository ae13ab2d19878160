"""Fit a table to a width: columns kept by priority, long cells wrapped, never squeezed to nothing.

Every column gets its natural width (its widest cell, up to a cap). When the row is too wide,
wrapping columns give way first, least important first, down to their minimum; then the least
important columns move below their row, as ``name: value`` lines. A column kept in the grid is
always at least its minimum wide, so no column collapses to zero characters, and nothing is lost.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from analyzer.report.safe_text import printable

GAP = 2  # spaces between columns
BELOW = 4  # how far in the columns moved below their row start
INDENT = 2  # spaces before the first column
#: A line width meaning "no limit" (``--wide``).
UNLIMITED = 1 << 30


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its header, importance (0 = most), and how narrow it may get."""

    name: str
    priority: int
    min_width: int = 0  # 0: its natural width (a column that never wraps)
    max_width: int | None = None  # natural width cap (longer cells wrap, or are cut)
    wrap: bool = False  # long cells continue on the next lines


@dataclass(frozen=True, slots=True)
class Fitted:
    """The columns kept, in table order, with their widths; the ones left out."""

    columns: tuple[Column, ...]
    widths: tuple[int, ...]
    dropped: tuple[str, ...]


def safe_rows(rows: Sequence[Sequence[str]]) -> list[list[str]]:
    """Cells of captured text as data: control characters and ANSI sequences escaped."""
    return [[printable(cell) for cell in row] for row in rows]


def fit(columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int) -> Fitted:
    """Choose widths so that a row fits in ``width`` characters (``UNLIMITED``: natural)."""
    rows = safe_rows(rows)
    natural = []
    for i, c in enumerate(columns):
        widest = max((len(r[i]) for r in rows), default=0)
        cap = c.max_width if c.max_width is not None and width < UNLIMITED else None
        natural.append(max(len(c.name), min(widest, cap) if cap else widest))
    keep = list(range(len(columns)))
    by_need = sorted(keep, key=lambda i: -columns[i].priority)  # least important first
    while True:
        widths = {i: natural[i] for i in keep}
        over = INDENT + sum(widths.values()) + GAP * (len(keep) - 1) - width
        if over > 0:  # wrapping columns give way first, each in proportion to its slack
            slack = {
                i: widths[i] - max(columns[i].min_width, len(columns[i].name))
                for i in keep
                if columns[i].wrap
            }
            total = sum(v for v in slack.values() if v > 0)
            if total >= over:
                need = over
                for i in by_need:  # rounding leftovers go to the least important first
                    if slack.get(i, 0) > 0:
                        give = min(slack[i], -(-need * slack[i] // total), over)
                        widths[i] -= give
                        over -= give
            else:
                over -= total
                for i, v in slack.items():
                    widths[i] -= max(v, 0)
        if over <= 0 or len(keep) == 1:
            break
        keep.remove(next(i for i in by_need if i in keep))  # then the least important goes
    return Fitted(
        tuple(columns[i] for i in keep),
        tuple(widths[i] for i in keep),
        tuple(columns[i].name for i in range(len(columns)) if i not in keep),
    )


def render(
    fitted: Fitted,
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    paint: Callable[[str, str, str], str] | None = None,
) -> Iterator[str]:
    """The header and each row as lines; ``paint(column, cell text, padded)`` may colour a cell.
    Cells are escaped (``safe_text.printable``) before they are padded or painted."""
    rows = safe_rows(rows)
    index = {c.name: i for i, c in enumerate(columns)}
    picks = [index[c.name] for c in fitted.columns]
    below = [(c.name, index[c.name]) for c in columns if c.name in fitted.dropped]
    head = _line([c.name for c in fitted.columns], fitted.widths, None, fitted.columns)
    if below:
        head += "\n" + " " * (INDENT + BELOW) + " | ".join(name for name, _ in below)
    yield head
    width = INDENT + sum(fitted.widths) + GAP * (len(fitted.widths) - 1)
    for row in rows:
        cells = [row[i] for i in picks]
        if all(len(cell) <= w for cell, w in zip(cells, fitted.widths, strict=True)):
            yield _line(cells, fitted.widths, paint, fitted.columns)
        else:
            parts = [_wrap(cell, w) for cell, w in zip(cells, fitted.widths, strict=True)]
            for n in range(max(len(p) for p in parts)):
                line = [p[n] if n < len(p) else "" for p in parts]
                yield _line(line, fitted.widths, paint, fitted.columns)
        for name, i in below:
            if row[i] and row[i] != "-":
                yield from wrap_text(f"{name}: {row[i]}", width, INDENT + BELOW, 2)


def _line(
    cells: Sequence[str],
    widths: Sequence[int],
    paint: Callable[[str, str, str], str] | None,
    columns: Sequence[Column],
) -> str:
    padded = [cell.ljust(w) for cell, w in zip(cells, widths, strict=True)]
    if paint is not None:
        padded = [
            paint(c.name, cell, text) if cell else text
            for c, cell, text in zip(columns, cells, padded, strict=True)
        ]
    return (" " * INDENT + (" " * GAP).join(padded)).rstrip()


def _wrap(text: str, width: int) -> list[str]:
    if len(text) <= width:
        return [text]
    return textwrap.wrap(text, width, break_on_hyphens=False) or [""]


def wrap_text(text: str, width: int, indent: int = INDENT, hanging: int = 4) -> list[str]:
    """One long line of prose wrapped to ``width``: the first line at ``indent``, the rest
    ``hanging`` further in."""
    if width >= UNLIMITED or len(text) + indent <= width:
        return [" " * indent + text]
    return textwrap.wrap(
        text,
        max(width, indent + hanging + 20),
        initial_indent=" " * indent,
        subsequent_indent=" " * (indent + hanging),
        break_on_hyphens=False,
    )
