"""Machine-readable outputs (JSON Lines, CSV), derived field by field from the record schema."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import IO, Any

from analyzer.model import SCHEMA_VERSION, public_fields, to_dict

#: ``json.dumps(row, ensure_ascii=False, separators=(",", ":"))``, made once instead of per row.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def write_jsonl(records: Iterable[Any], out: IO[str], *, reveal_secrets: bool = False) -> None:
    """One JSON object per record per line; ``schema_version`` leads each line."""
    write = out.write
    for record in records:
        row = {"schema_version": SCHEMA_VERSION}
        row.update(to_dict(record, reveal_secrets))
        write(_encode(row) + "\n")


def write_csv(
    records: Iterable[Any], out: IO[str], record_type: type, *, reveal_secrets: bool = False
) -> None:
    """One row per record of ``record_type``; list and dict fields as compact JSON in a cell."""
    names = ["schema_version", *public_fields(record_type, reveal_secrets)]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    for record in records:
        row = {"schema_version": SCHEMA_VERSION, **to_dict(record, reveal_secrets)}
        writer.writerow([_cell(row[name]) for name in names])


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")) if value else ""
    return value
