"""An Excel workbook of one analysis: one sheet per table, the columns of the CSV export.

Written with openpyxl (the ``excel`` extra). Every text cell is forced to the string type, so a
captured value such as ``=HYPERLINK(...)`` is shown as text and never runs as a formula; numbers
(epoch times, ports, counts) stay numbers. Control characters (which openpyxl refuses, and a cell
must not hold raw: an ESC, a carriage return, a bidi override) are written escaped as ``\x1b`` /
``\u202e``, as the terminal output shows them (``safe_text.printable``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from analyzer.report.export import csv_header, csv_rows
from analyzer.report.safe_text import printable

EXCEL_EXTRA = "pip install 'oauth-traffic-analyzer[excel]' (openpyxl)"


def write_xlsx(
    tables: Iterable[tuple[str, type, list[Any]]], out: str | Path | IO[bytes], reveal: bool
) -> None:
    """Write ``(sheet name, record type, records)`` tables as one workbook to ``out``."""
    try:
        from openpyxl import Workbook
        from openpyxl.cell import WriteOnlyCell
    except ImportError as exc:
        raise RuntimeError(f"writing .xlsx needs openpyxl: {EXCEL_EXTRA}") from exc
    book = Workbook(write_only=True)
    for name, record_type, records in tables:
        sheet = book.create_sheet(title=name[:31])
        sheet.append(csv_header(record_type, reveal))
        for row in csv_rows(records, record_type, reveal, neutralise=False):
            cells = []
            for value in row:
                if isinstance(value, str):
                    value = printable(value)
                cell = WriteOnlyCell(sheet, value=value)
                if isinstance(value, str):
                    cell.data_type = "s"  # text, even when it starts with "="
                cells.append(cell)
            sheet.append(cells)
    book.save(out)
