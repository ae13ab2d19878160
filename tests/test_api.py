"""The Python API: DataFrames with proper dtypes, and exports of every table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import analyzer

CAPTURES = Path(__file__).resolve().parents[1] / "captures"
SFB = CAPTURES / "exchange-sfb.pcap"
TABLES = ("events", "handshakes", "tokens", "findings", "verdicts", "tls", "not_inspected")


@pytest.fixture(scope="module")
def analysis() -> analyzer.Analysis:
    return analyzer.analyze(SFB)


def test_tables_have_proper_dtypes(analysis) -> None:
    events = analysis.events
    assert len(events) == 15
    assert str(events["ts"].dtype) == "datetime64[us, UTC]"
    assert events["ts"].iloc[0] == pd.Timestamp("2026-03-02 09:00:00.100560", tz="UTC")
    assert isinstance(events["scheme"].dtype, pd.CategoricalDtype)
    assert list(events["auth_class"].cat.categories)[:3] == ["oauth", "basic", "ntlm"]
    assert str(events["status"].dtype) == "Int64"
    assert events["status"].isna().sum() == 0
    assert events["handshake_id"].isna().sum() == 5  # metadata fetches and token endpoint calls
    handshakes = analysis.handshakes
    assert handshakes["outcome"].value_counts()["accepted"] == 4
    assert str(analysis.tokens["exp"].dtype) == "datetime64[us, UTC]"
    assert set(analysis.findings["severity"].cat.categories) == {"high", "medium", "low", "info"}
    assert analysis.verdicts["verdict"].tolist() == ["oauth-with-fallback", "no-oauth"]


def test_frames_hold_no_secrets_unless_revealed(analysis) -> None:
    assert "credential" not in analysis.events.columns
    assert "text" not in analysis.tokens.columns
    revealed = analyzer.analyze(SFB, reveal_secrets=True)
    assert revealed.events["credential"].notna().sum() == 10  # events 4-13 sent one


def test_parquet_one_file_per_table_with_schema_version(analysis, tmp_path: Path) -> None:
    paths = analysis.to_parquet(tmp_path)
    assert [p.name for p in paths] == [f"{t}.parquet" for t in TABLES]
    events = pq.read_table(tmp_path / "events.parquet")
    assert events.schema.metadata[b"oauth_traffic_analyzer.schema_version"] == b"1"
    frame = events.to_pandas()
    assert len(frame) == 15 and str(frame["ts"].dtype) == "datetime64[us, UTC]"
    challenges = json.loads(frame["challenges"].iloc[3])
    assert [c["scheme"] for c in challenges] == ["bearer", "negotiate", "ntlm"]


def test_jsonl_and_csv_exports(analysis, tmp_path: Path) -> None:
    analysis.to_jsonl(tmp_path)
    analysis.to_csv(tmp_path)
    lines = (tmp_path / "tokens.jsonl").read_text().splitlines()
    assert len(lines) == 11 and json.loads(lines[0])["schema_version"] == 1
    handshakes = pd.read_csv(tmp_path / "handshakes.csv")
    assert len(handshakes) == 6 and handshakes["schema_version"].eq(1).all()


def test_cli_parquet_needs_a_folder(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "analyzer", "analyze", str(SFB), "--format", "parquet"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 2 and "-o DIR" in proc.stderr
    proc = subprocess.run([*cmd, "-o", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0
    # a dataset per table, partitioned by date and input, replaced whole when written again
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(TABLES)
    proc = subprocess.run([*cmd, "-o", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0 and sorted(p.name for p in tmp_path.iterdir()) == sorted(TABLES)
    events = pd.read_parquet(tmp_path / "events")
    assert len(events) == 15 and set(events["input"]) == {str(SFB)}
    assert set(events["date"]) == {"2026-03-02"}
    # -o FILE.parquet: the chosen table, one file
    one = tmp_path / "tokens.parquet"
    proc = subprocess.run([*cmd, "--tokens", "-o", str(one)], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == str(one)
    assert pq.read_schema(one).metadata[b"oauth_traffic_analyzer.table"] == b"tokens"
    assert len(pd.read_parquet(one)) == 11
