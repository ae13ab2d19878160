"""The command line: outputs, secrets, and one-line errors for bad input."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from analyzer.cli import main
from analyzer.engine import analyze_paths

CAPTURES = Path(__file__).resolve().parents[1] / "captures"
SFB = str(CAPTURES / "exchange-sfb.pcap")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "analyzer", *args], capture_output=True, text=True, timeout=120
    )


def secrets_in(path: str) -> list[str]:
    """Every credential and token text the capture carries (what must never leak)."""
    out = []
    for e in analyze_paths([path]).events:
        for text in (e.credential, e.assertion, e.access_token, e.refresh_token, e.id_token):
            if text and len(text) >= 8:
                out.append(text)
    return out


@pytest.mark.parametrize("fmt", ["table", "jsonl", "csv"])
def test_no_secret_reaches_any_output_by_default(fmt: str) -> None:
    secrets = secrets_in(SFB)
    assert len(secrets) >= 10
    proc = run_cli("analyze", SFB, "--format", fmt)
    assert proc.returncode == 0
    for text in secrets:
        assert text not in proc.stdout
        assert text[:40] not in proc.stdout


def test_reveal_secrets_writes_them_on_request() -> None:
    proc = run_cli("analyze", SFB, "--format", "jsonl", "--reveal-secrets")
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    revealed = {r["credential"] for r in rows if r.get("credential")}
    assert revealed and revealed <= set(secrets_in(SFB)) | {""}


def test_csv_has_the_schema_columns_and_one_row_per_event() -> None:
    proc = run_cli("analyze", SFB, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert len(rows) == 15
    assert rows[0]["schema_version"] == "1"  # CSV cells are text
    assert "credential" not in rows[0]
    probe = rows[3]
    assert (probe["scheme"], probe["cred_len"], probe["status"]) == ("bearer", "0", "401")
    challenges = json.loads(probe["challenges"])
    assert [c["scheme"] for c in challenges] == ["bearer", "negotiate", "ntlm"]


def test_table_summarises_pairs_and_lists_events() -> None:
    proc = run_cli("analyze", SFB)
    out = proc.stdout
    assert "Events by client -> server, per scheme sent (15)" in out
    assert "10.1.0.20  10.1.0.10:80      mail.contoso.com" in out
    assert "empty bearer (probe)" in out
    assert "x-ms-diagnostics 2000002" in out


def test_output_file_option(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    assert main(["analyze", SFB, "--format", "jsonl", "-o", str(target)]) == 0
    assert len(target.read_text().splitlines()) == 15


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_missing_file_is_one_error_line(tmp_path: Path) -> None:
    line = _one_error_line(run_cli("analyze", str(tmp_path / "nope.pcap")))
    assert line.startswith("oauth-analyzer: error:") and "nope.pcap" in line


def test_directory_is_one_error_line(tmp_path: Path) -> None:
    line = _one_error_line(run_cli("analyze", str(tmp_path)))
    assert str(tmp_path) in line


def test_not_a_capture_is_one_error_line(tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_bytes(b"this is not a capture at all, just text\n" * 10)
    line = _one_error_line(run_cli("analyze", str(junk)))
    assert "not a pcap or pcapng" in line


def test_empty_file_is_one_error_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    _one_error_line(run_cli("analyze", str(empty)))


def test_truncated_capture_warns_and_keeps_going(tmp_path: Path) -> None:
    data = Path(SFB).read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) - 700])
    proc = run_cli("analyze", str(cut))
    assert proc.returncode == 0
    assert "warning:" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_gzip_capture_reads_the_same(tmp_path: Path) -> None:
    import gzip

    packed = tmp_path / "sfb.pcap.gz"
    packed.write_bytes(gzip.compress(Path(SFB).read_bytes()))
    plain = [e.cred_fp for e in analyze_paths([SFB]).events]
    assert [e.cred_fp for e in analyze_paths([str(packed)]).events] == plain
