"""Machine-readable outputs (JSON Lines, CSV), derived field by field from the record schema."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from analyzer.model import SCHEMA_VERSION, public_fields, to_dict
from analyzer.report.json_text import compact_json, json_encoder
from analyzer.report.safe_text import one_line, spreadsheet_cell

#: Lines gathered before each write: a few large writes instead of one per record.
BATCH = 256

#: The key every JSON line starts with.
_LEAD = (("schema_version", SCHEMA_VERSION),)


def write_jsonl(records: Iterable[Any], out: IO[str], *, reveal_secrets: bool = False) -> None:
    """One JSON object per record per line; ``schema_version`` leads each line.

    Each line is ``json.dumps({"schema_version": ..., **to_dict(record)}, ensure_ascii=False,
    separators=(",", ":"))``, made by the encoder ``json_encoder`` compiles per record type, and
    lines are written BATCH at a time (those made before an error are still written). The
    Unicode line breaks JSON leaves raw (U+2028, U+2029, NEL) are escaped: one record, one line.
    """
    write = out.write
    pending: list[str] = []
    append = pending.append
    kind: type | None = None
    encode: Callable[[Any], str] = str
    try:
        for record in records:
            if type(record) is not kind:
                kind = type(record)
                encode = json_encoder(kind, reveal_secrets, lead=_LEAD, end="\n")
            append(encode(record))
            if len(pending) >= BATCH:
                chunk = "".join(pending)
                pending.clear()
                write(one_line(chunk))
    finally:
        if pending:
            write(one_line("".join(pending)))


def write_csv(
    records: Iterable[Any], out: IO[str], record_type: type, *, reveal_secrets: bool = False
) -> None:
    """One row per record of ``record_type``; list and dict fields as compact JSON in a cell.
    Text cells that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab, CR
    first) get a leading ``'``; numbers stay numbers."""
    fields = public_fields(record_type, reveal_secrets)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["schema_version", *fields])
    writer.writerows(csv_rows(records, fields, record_type, reveal_secrets))


def csv_rows(
    records: Iterable[Any], fields: list[str], record_type: type, reveal_secrets: bool
) -> Iterator[list[Any]]:
    names = ["schema_version", *fields]
    in_order = "schema_version" not in fields  # a record's dict is then the row, in order
    for record in records:
        row = to_dict(record, reveal_secrets)
        if in_order and type(record) is record_type:
            yield [
                SCHEMA_VERSION,
                *[
                    "" if v is None else spreadsheet_cell(v) if type(v) is str else _cell(v)
                    for v in row.values()
                ],
            ]
        else:
            row = {"schema_version": SCHEMA_VERSION, **row}
            yield [_cell(row[name]) for name in names]


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return compact_json(value) if value else ""
    if isinstance(value, str):
        return spreadsheet_cell(value)
    return value
