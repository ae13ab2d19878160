"""The Python API: ``analyze(paths) -> Analysis``, with every table as a pandas DataFrame."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import pandas as pd

from analyzer.engine import AnalysisResult, analyze_paths
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
)
from analyzer.report.export import write_csv, write_jsonl
from analyzer.report.frames import to_frame

#: Table name -> (record type, attribute of AnalysisResult).
TABLES = {
    "events": (Event, "events"),
    "handshakes": (Handshake, "handshakes"),
    "tokens": (TokenRecord, "tokens"),
    "findings": (Finding, "findings"),
    "verdicts": (PairVerdict, "verdicts"),
    "tls": (TlsConnection, "tls"),
    "not_inspected": (NotInspected, "not_inspected"),
}


class Analysis:
    """One analysis: the records (``result``) and the same data as DataFrames."""

    def __init__(self, result: AnalysisResult, *, reveal_secrets: bool = False) -> None:
        self.result = result
        self.reveal_secrets = reveal_secrets

    @cached_property
    def events(self) -> pd.DataFrame:
        return self._frame("events")

    @cached_property
    def handshakes(self) -> pd.DataFrame:
        return self._frame("handshakes")

    @cached_property
    def tokens(self) -> pd.DataFrame:
        return self._frame("tokens")

    @cached_property
    def findings(self) -> pd.DataFrame:
        return self._frame("findings")

    @cached_property
    def verdicts(self) -> pd.DataFrame:
        return self._frame("verdicts")

    @cached_property
    def tls(self) -> pd.DataFrame:
        """One row per TLS connection (SNI, version, certificate; ``inspected`` if decrypted)."""
        return self._frame("tls")

    @cached_property
    def credentials(self) -> pd.DataFrame:
        """One row per distinct credential: scheme, identity or issuer, first and last use,
        clients, servers and outcomes (``oauth-analyzer analyze --credentials``)."""
        from analyzer.analysis.credential_view import credential_records

        records = credential_records(self.result.events)
        return to_frame(records, CredentialRecord, reveal_secrets=self.reveal_secrets)

    def where(self, **filters: str | list[str]) -> Analysis:
        """The analysis narrowed as the command line's filters narrow it: ``client``,
        ``server``, ``host``, ``path``, ``user``, ``scheme``, ``since``, ``until`` (times as ISO
        8601, epoch seconds or offsets into the capture such as ``"+30s"``). Raises
        ``analyzer.analysis.scope.ScopeError`` for a value that cannot be used."""
        from analyzer.analysis.scope import make_scope
        from analyzer.analysis.subset import narrow

        return Analysis(
            narrow(self.result, make_scope(**filters)), reveal_secrets=self.reveal_secrets
        )

    def to_excel(self, path: str | Path) -> Path:
        """One ``.xlsx`` workbook, a sheet per table (and ``credentials``), the columns of the
        CSV export; text cells are never formulas. Needs openpyxl (the ``excel`` extra)."""
        from analyzer.analysis.credential_view import credential_records
        from analyzer.report.excel import write_xlsx

        tables = [(n, t, getattr(self.result, a)) for n, (t, a) in TABLES.items()]
        tables.append(("credentials", CredentialRecord, credential_records(self.result.events)))
        write_xlsx(tables, path, self.reveal_secrets)
        return Path(path)

    @cached_property
    def not_inspected(self) -> pd.DataFrame:
        """What was seen but not read (undecrypted TLS, lost request bytes): the blind spots
        every verdict counts."""
        return self._frame("not_inspected")

    def to_jsonl(self, folder: str | Path) -> list[Path]:
        """One ``<table>.jsonl`` per table in ``folder``."""
        return self._write(folder, "jsonl")

    def to_csv(self, folder: str | Path) -> list[Path]:
        """One ``<table>.csv`` per table in ``folder``."""
        return self._write(folder, "csv")

    def to_parquet(self, folder: str | Path) -> list[Path]:
        """One ``<table>.parquet`` per table in ``folder``, schema version in the file metadata."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for name in TABLES:
            frame = _flatten(self._frame(name))
            table = pa.Table.from_pandas(frame, preserve_index=False)
            metadata = dict(table.schema.metadata or {})
            metadata[b"oauth_traffic_analyzer.schema_version"] = str(SCHEMA_VERSION).encode()
            metadata[b"oauth_traffic_analyzer.table"] = name.encode()
            path = out / f"{name}.parquet"
            pq.write_table(table.replace_schema_metadata(metadata), path)
            paths.append(path)
        return paths

    def to_dataset(self, folder: str | Path) -> list[Path]:
        """A Parquet dataset per table in ``folder`` (``folder/events``, ...), partitioned hive
        style by ``date`` and ``input`` as ``analyze --format parquet -o DIR`` writes it;
        written in a scratch folder and moved into place whole (a table's old dataset is
        replaced)."""
        from analyzer.report.dataset import write_dataset
        from analyzer.report.outputs import atomic_folder

        with atomic_folder(folder) as scratch:
            written = write_dataset(self.result, scratch, self.reveal_secrets)
        return [Path(folder) / p.name for p in written]

    def _frame(self, name: str) -> pd.DataFrame:
        record_type, attribute = TABLES[name]
        records = getattr(self.result, attribute)
        return to_frame(records, record_type, reveal_secrets=self.reveal_secrets)

    def _write(self, folder: str | Path, fmt: str) -> list[Path]:
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, (record_type, attribute) in TABLES.items():
            path = out / f"{name}.{fmt}"
            with path.open("w", encoding="utf-8", newline="") as fh:
                records = getattr(self.result, attribute)
                if fmt == "jsonl":
                    write_jsonl(records, fh, reveal_secrets=self.reveal_secrets)
                else:
                    write_csv(records, fh, record_type, reveal_secrets=self.reveal_secrets)
            paths.append(path)
        return paths


def analyze(
    paths: str | Path | list[str | Path],
    *,
    keys: list[str] | tuple[str, ...] = (),
    tls_keylog: str | None = None,
    reveal_secrets: bool = False,
) -> Analysis:
    """Analyze one capture or several (read in order as one stream).

    ``keys`` adds signing-key files; ``tls_keylog`` decrypts HTTPS through tshark.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    result = analyze_paths(
        [str(p) for p in paths],
        key_files=list(keys),
        tls_keylog=tls_keylog,
        reveal_secrets=reveal_secrets,
    )
    return Analysis(result, reveal_secrets=reveal_secrets)


def _flatten(frame: pd.DataFrame) -> pd.DataFrame:
    """Nested values (lists of dicts, dicts) as JSON text, so every column has one Arrow type."""
    frame = frame.copy()
    for name in frame.columns:
        if frame[name].dtype == object:
            frame[name] = frame[name].map(
                lambda v: v if v is None or isinstance(v, str) else json.dumps(v, default=str)
            )
    return frame
