"""Parquet output: a partitioned dataset per table, or one file of one table.

``-o DIR`` writes one dataset per table (``DIR/events``, ``DIR/handshakes``, ``DIR/tokens``,
``DIR/findings``, ``DIR/verdicts``, ``DIR/tls``, ``DIR/not_inspected``), partitioned hive style
by ``date`` (UTC day of the record's time) and ``input`` (the capture file or URL its connection
was read from), so a fleet's results are read a day or a sensor at a time by pandas, Dask,
DuckDB or Spark (``pd.read_parquet("DIR/events")``). ``-o FILE.parquet`` writes the chosen
table (``--table``, default events) to that one file. Both carry the schema version and the
table name in the file metadata; the dataset is written in a scratch folder and moved into place
whole (``outputs.atomic_folder``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analyzer.model import SCHEMA_VERSION

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from analyzer.engine import AnalysisResult

#: The partition columns, in folder order.
PARTITIONS = ("date", "input")
#: Per table: the field whose time gives the record's ``date``.
TIME_FIELD = {
    "events": "ts",
    "handshakes": "start_ts",
    "tokens": "first_seen",
    "findings": "first_ts",
    "verdicts": "first_ts",
    "tls": "ts",
    "not_inspected": "ts",
}
#: Event fields naming a token (``TokenRecord.fingerprint``): a token's input is its first event's.
_TOKEN_FIELDS = (
    "token_fp", "token_actor_fp", "cred_fp", "access_token_fp", "refresh_token_fp",
    "id_token_fp", "assertion_fp",
)  # fmt: skip


def write_dataset(result: AnalysisResult, folder: str | Path, reveal_secrets: bool) -> list[Path]:
    """One partitioned dataset per table in ``folder`` (which should be new or empty: the
    caller writes into a scratch folder); returns the tables' folders."""
    from analyzer.api import TABLES

    out = Path(folder)
    inputs = Inputs(result)
    written = []
    for name, (record_type, attribute) in TABLES.items():
        records = getattr(result, attribute)
        frame = _frame(records, record_type, reveal_secrets)
        frame["date"] = [_day(getattr(r, TIME_FIELD[name])) for r in records]
        frame["input"] = [inputs.of(name, r) for r in records]
        _write_partitioned(_table(frame, name), out / name)
        written.append(out / name)
    return written


def write_file(records: Sequence, record_type: type, name: str, path: Any, reveal: bool) -> None:
    """One table as one Parquet file (``path``: a name or a binary file object)."""
    import pyarrow.parquet as pq

    pq.write_table(_table(_frame(records, record_type, reveal), name), path)


class Inputs:
    """Which input each record came from: its connection's (events, handshakes, TLS, blind
    spots), or that of the first event it names (findings, tokens, verdicts). With a single
    input, every record's."""

    def __init__(self, result: AnalysisResult) -> None:
        self.by_conn = result.inputs
        paths = {c.path for c in result.captures}
        self.only = paths.pop() if len(paths) == 1 else None
        self.events = {e.event_id: e.conn_id for e in result.events}
        self.handshakes = {h.handshake_id: h.conn_id for h in result.handshakes}
        self.tokens: dict[str, str] = {}
        self.pairs: dict[tuple, str] = {}
        for e in result.events:  # in time order: the first event wins
            for name in _TOKEN_FIELDS:
                fp = getattr(e, name)
                if fp is not None:
                    self.tokens.setdefault(fp, e.conn_id)
            self.pairs.setdefault((e.client_ip, e.server_ip, e.server_port, e.host), e.conn_id)

    def of(self, table: str, record: Any) -> str | None:
        return self._conn_input(self._conn(table, record))

    def _conn(self, table: str, record: Any) -> str | None:
        if table in ("events", "handshakes", "tls", "not_inspected"):
            return record.conn_id
        if table == "findings":
            if record.event_ids:
                return self.events.get(record.event_ids[0])
            if record.handshake_ids:
                return self.handshakes.get(record.handshake_ids[0])
            return None
        if table == "tokens":
            return self.tokens.get(record.fingerprint)
        key = (record.client_ip, record.server_ip, record.server_port, record.host)
        return self.pairs.get(key)  # verdicts

    def _conn_input(self, conn_id: str | None) -> str | None:
        found = self.by_conn.get(conn_id) if conn_id is not None else None
        return found if found is not None else self.only


def _day(ts: float | None) -> str | None:
    """The UTC date of ``ts`` (None for no time or one no calendar can show)."""
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d")
    except (OverflowError, OSError, ValueError):
        return None


def _frame(records: Sequence, record_type: type, reveal: bool) -> pd.DataFrame:
    from analyzer.report.frames import to_frame

    frame = to_frame(records, record_type, reveal_secrets=reveal).copy()
    for name in frame.columns:  # nested values as JSON text: one Arrow type per column
        if frame[name].dtype == object:
            frame[name] = frame[name].map(
                lambda v: v if v is None or isinstance(v, str) else json.dumps(v, default=str)
            )
    return frame


def _table(frame: pd.DataFrame, name: str) -> pa.Table:
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    metadata = dict(table.schema.metadata or {})
    metadata[b"oauth_traffic_analyzer.schema_version"] = str(SCHEMA_VERSION).encode()
    metadata[b"oauth_traffic_analyzer.table"] = name.encode()
    return table.replace_schema_metadata(metadata)


def _write_partitioned(table: pa.Table, folder: Path) -> None:
    """``table`` under ``folder/date=.../input=.../part-0.parquet``; a table without rows as
    one empty file, so the dataset still reads back with its columns."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    if table.num_rows == 0:
        pq.write_table(table, folder / "part-0.parquet")
        return
    keys = pa.schema([(name, pa.string()) for name in PARTITIONS])
    table = table.cast(_string_partitions(table))
    ds.write_dataset(
        table,
        folder,
        format="parquet",
        partitioning=ds.partitioning(keys, flavor="hive"),
        basename_template="part-{i}.parquet",
        existing_data_behavior="overwrite_or_ignore",
    )


def _string_partitions(table: pa.Table) -> pa.Schema:
    """The table's schema with the partition columns as strings (an all-null column is not)."""
    import pyarrow as pa

    schema = table.schema
    for name in PARTITIONS:
        i = schema.get_field_index(name)
        schema = schema.set(i, pa.field(name, pa.string()))
    return schema
