"""Machine-readable outputs (JSON Lines, CSV), derived field by field from the record schema."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import IO, Any

from analyzer.model import SCHEMA_VERSION, Event, public_fields, to_dict


def write_jsonl(events: Iterable[Event], out: IO[str], *, reveal_secrets: bool = False) -> None:
    """One JSON object per event per line; ``schema_version`` leads each line."""
    for event in events:
        row = {"schema_version": SCHEMA_VERSION, **to_dict(event, reveal_secrets)}
        out.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
        out.write("\n")


def write_csv(events: Iterable[Event], out: IO[str], *, reveal_secrets: bool = False) -> None:
    """One row per event; list fields (challenges, reasons) as compact JSON in their cell."""
    names = ["schema_version", *public_fields(Event, reveal_secrets)]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    for event in events:
        row = {"schema_version": SCHEMA_VERSION, **to_dict(event, reveal_secrets)}
        writer.writerow([_cell(row[name]) for name in names])


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")) if value else ""
    return value
