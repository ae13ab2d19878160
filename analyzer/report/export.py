"""Machine-readable outputs (JSON Lines, CSV), derived field by field from the record schema.

JSON Lines keep the record's fields in schema order, ``schema_version`` first. CSV is for people
with a spreadsheet: the key columns come first (for events: time, endpoints, host, uri, status,
scheme, auth_class, outcome, identity), an ISO 8601 ``time`` column stands beside the epoch
seconds, and ``schema_version`` comes last.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from analyzer.model import (
    SCHEMA_VERSION,
    CredentialRecord,
    Event,
    Finding,
    Handshake,
    NotInspected,
    PairVerdict,
    TlsConnection,
    TokenRecord,
    public_fields,
    to_dict,
)
from analyzer.report.json_text import compact_json, json_encoder
from analyzer.report.safe_text import json_cell, one_line, printable, spreadsheet_cell
from analyzer.report.times import iso_utc

#: Lines gathered before each write: a few large writes instead of one per record.
BATCH = 256

#: The key every JSON line starts with.
_LEAD = (("schema_version", SCHEMA_VERSION),)

#: The epoch-seconds field a record's ISO 8601 ``time`` column shows.
TIME_FIELD: dict[type, str] = {
    Event: "ts",
    Handshake: "start_ts",
    TokenRecord: "first_seen",
    Finding: "first_ts",
    PairVerdict: "first_ts",
    TlsConnection: "ts",
    NotInspected: "ts",
    CredentialRecord: "first_seen",
}
#: Columns that lead a CSV row, after ``time`` (``identity`` is derived, see ``who``).
_EVENT_KEYS = (
    "ts", "client_ip", "client_port", "server_ip", "server_port", "host", "uri", "status",
    "scheme", "auth_class", "outcome", "identity",
)  # fmt: skip
KEY_COLUMNS: dict[type, tuple[str, ...]] = {Event: _EVENT_KEYS}


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
    records: Iterable[Any],
    out: IO[str],
    record_type: type,
    *,
    reveal_secrets: bool = False,
    bom: bool = False,
) -> None:
    """One row per record of ``record_type``; list and dict fields as compact JSON in a cell.
    Captured text is inert in every cell (``csv_rows``), on a terminal and in a file alike.

    ``bom`` starts the file with a UTF-8 byte order mark, so Excel reads it as UTF-8."""
    writer = csv.writer(out, lineterminator="\n")
    if bom:
        out.write("\ufeff")
    writer.writerow(csv_header(record_type, reveal_secrets))
    writer.writerows(csv_rows(records, record_type, reveal_secrets))


def csv_header(record_type: type, reveal_secrets: bool = False) -> list[str]:
    """The CSV columns of ``record_type``: time, the key columns, the rest, schema_version."""
    fields = public_fields(record_type, reveal_secrets)
    lead = [c for c in KEY_COLUMNS.get(record_type, ()) if c in fields or c == "identity"]
    time = ["time"] if record_type in TIME_FIELD else []
    return [*time, *lead, *(f for f in fields if f not in lead), "schema_version"]


def csv_rows(
    records: Iterable[Any], record_type: type, reveal_secrets: bool, neutralise: bool = True
) -> Iterator[list]:
    """The rows ``csv_header`` names, one per record. Unless ``neutralise`` is off (the .xlsx
    writer stores every text cell as a string and escapes it itself), captured text is inert in
    every cell: control characters, DEL, C1, the Unicode line and paragraph separators and bidi
    controls are written as ``\\x1b`` / ``\\u202e`` (``safe_text.printable``: one cell, one line,
    nothing a terminal acts on when the file is shown), then a cell a spreadsheet would run as a
    formula gets a leading ``'`` (``safe_text.spreadsheet_cell``). List and dict cells are
    compact JSON with the same characters as JSON escapes (``safe_text.json_cell``)."""
    names = csv_header(record_type, reveal_secrets)
    time_field = TIME_FIELD.get(record_type)
    cell = _inert_cell if neutralise else _cell
    for record in records:
        row = to_dict(record, reveal_secrets)
        row["schema_version"] = SCHEMA_VERSION
        if time_field is not None:
            row["time"] = iso_utc(row.get(time_field))
        if "identity" in names:
            row["identity"] = who(record) if type(record) is Event else None
        yield [cell(row[name]) for name in names]  # KeyError: a record of another type


def who(e: Event) -> str | None:
    """The identity a person looks for: ``DOMAIN\\user``, the token's subject, or its issuer."""
    if e.user:
        return f"{e.domain}\\{e.user}" if e.domain else e.user
    return e.token_subject or e.token_iss_app or e.token_iss


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return compact_json(value) if value else ""
    return value


def _inert_cell(value: Any) -> Any:
    """A CSV cell that neither a terminal nor a spreadsheet acts on (see ``csv_rows``)."""
    if isinstance(value, str):
        return spreadsheet_cell(printable(value))
    if isinstance(value, (list, dict)):
        return json_cell(compact_json(value)) if value else ""
    return _cell(value)
