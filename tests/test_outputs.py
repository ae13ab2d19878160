"""What analyze, report and verify write: CSV for people, Excel, --table, filters on every
command, the credentials view, --reveal-secrets for Basic, --version and shell completion."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analyzer.cli import main

ROOT = Path(__file__).resolve().parents[1]
SFB = str(ROOT / "captures" / "exchange-sfb.pcap")
KEYS = ["time", "ts", "client_ip", "client_port", "server_ip", "server_port", "host", "uri",
        "status", "scheme", "auth_class", "outcome", "identity"]  # fmt: skip


def out_of(capsys: pytest.CaptureFixture, *args: str) -> str:
    assert main(list(args)) == 0
    return capsys.readouterr().out


# -- CSV and Excel ---------------------------------------------------------------------------
def test_csv_key_columns_first_and_pandas_reads_it_back(capsys) -> None:
    text = out_of(capsys, "analyze", SFB, "--format", "csv")
    frame = pd.read_csv(io.StringIO(text))
    assert list(frame.columns[: len(KEYS)]) == KEYS
    assert frame.columns[-1] == "schema_version" and "community_id" in frame.columns
    assert frame["time"][0] == "2026-03-02T09:00:00.100560Z"
    drift = pd.to_datetime(frame["time"]) - pd.to_datetime(frame["ts"], unit="s", utc=True)
    assert drift.abs().max() < pd.Timedelta(microseconds=1)
    assert frame.loc[11, "identity"] == "CONTOSO\\alice"
    jsonl = [
        json.loads(line)
        for line in out_of(capsys, "analyze", SFB, "--format", "jsonl").splitlines()
    ]
    assert frame["uri"].tolist() == [e["uri"] for e in jsonl]
    assert frame["event_id"].tolist() == list(range(1, 16))


@pytest.mark.parametrize("table", ["handshakes", "tokens", "findings", "verdicts", "credentials"])
def test_table_option_for_jsonl_and_csv(capsys, table: str) -> None:
    lines = out_of(capsys, "analyze", SFB, "--format", "jsonl", "--table", table).splitlines()
    rows = list(csv.DictReader(io.StringIO(out_of(capsys, "analyze", SFB, "--table", table,
                                                  "--format", "csv"))))  # fmt: skip
    assert lines and len(lines) == len(rows)
    header = list(rows[0])
    assert header[0] == "time" and header[-1] == "schema_version"
    assert all(json.loads(line)["schema_version"] == 1 for line in lines)


def test_excel_csv_has_a_byte_order_mark(tmp_path: Path) -> None:
    out = tmp_path / "events.csv"
    assert main(["analyze", SFB, "--excel", "-o", str(out)]) == 0
    data = out.read_bytes()
    assert data.startswith(b"\xef\xbb\xbftime,ts,")
    assert len(pd.read_csv(out, encoding="utf-8-sig")) == 15


def test_xlsx_one_sheet_per_table_text_never_a_formula(tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    from analyzer.engine import analyze_paths
    from analyzer.model import Event, evolve
    from analyzer.report.excel import write_xlsx

    out = tmp_path / "all.xlsx"
    assert main(["analyze", SFB, "--excel", "-o", str(out)]) == 0
    book = openpyxl.load_workbook(out)
    assert book.sheetnames == ["events", "handshakes", "tokens", "findings", "verdicts", "tls",
                               "not_inspected", "credentials"]  # fmt: skip
    events = book["events"]
    assert [c.value for c in events[1]][: len(KEYS)] == KEYS
    assert events.max_row == 16 and events["B2"].value == pytest.approx(1772442000.10056)
    # a captured value that looks like a formula stays text
    event = evolve(analyze_paths([SFB]).events[0], uri='=HYPERLINK("http://x")', host="+1")
    hostile = tmp_path / "hostile.xlsx"
    write_xlsx([("events", Event, [event])], hostile, False)
    sheet = openpyxl.load_workbook(hostile)["events"]
    row = {h.value: c for h, c in zip(sheet[1], sheet[2], strict=True)}
    assert row["uri"].value == '=HYPERLINK("http://x")' and row["uri"].data_type == "s"
    assert row["host"].data_type == "s" and row["client_port"].data_type == "n"


# -- filters on every command ----------------------------------------------------------------
def event_ids(capsys, *args: str) -> list[int]:
    text = out_of(capsys, "analyze", SFB, "--format", "jsonl", *args)
    return [json.loads(line)["event_id"] for line in text.splitlines()]


def test_filters_narrow_the_events(capsys) -> None:
    assert event_ids(capsys, "--client", "10.1.0.50") == [12, 13]
    assert event_ids(capsys, "--scheme", "ntlm") == [9, 10]
    assert event_ids(capsys, "--scheme", "kerberos,basic") == [12, 13]
    assert event_ids(capsys, "--since", "+5s", "--until", "+10s") == [8, 9, 10, 11]
    assert event_ids(capsys, "--since", "2026-03-02T09:00:12Z") == [12, 13, 14, 15]
    assert event_ids(capsys, "--path", "/metadata/") == [2, 3]
    # 13 is Kerberos: its user cannot be read (the ticket is encrypted), so it is not ruled out
    assert event_ids(capsys, "--user", "CONTOSO\\alice") == [12, 13]
    assert event_ids(capsys, "--host", "accounts.accesscontrol.windows.net") == [14, 15]


def test_filtered_summary_is_that_of_the_matching_exchanges(capsys) -> None:
    text = out_of(capsys, "analyze", SFB, "-q", "--client", "10.1.0.50")
    assert "NO-OAUTH" in text and "OAUTH-WITH-FALLBACK" not in text
    assert "Findings (1)" in text and "cleartext-basic" in text
    assert "Events by client -> server, per scheme sent (2)" in text


def test_bad_filter_is_one_line_before_reading(capsys) -> None:
    assert main(["analyze", "/no/such.pcap", "--scheme", "turbo"]) == 2
    assert capsys.readouterr().err.startswith("oauth-analyzer: error: scheme 'turbo': not a")
    assert main(["analyze", SFB, "--since", "+3x"]) == 2
    assert "an offset is + and a number" in capsys.readouterr().err


def test_report_takes_the_same_filters(tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    assert main(["report", SFB, "-o", str(out), "--client", "10.1.0.50", "--scheme", "basic"]) == 0
    page = out.read_text(encoding="utf-8")
    assert 'id="event-12"' in page and 'id="event-13"' not in page and 'id="event-8"' not in page


def test_verify_takes_offsets_and_refuses_scheme(capsys) -> None:
    assert main(["verify", SFB, "--client", "10.1.0.20", "--since", "+2s", "--until", "+4s"]) == 0
    assert "PASS" in capsys.readouterr().out
    assert main(["verify", SFB, "--client", "10.1.0.20", "--since", "+2s"]) == 1
    capsys.readouterr()
    assert main(["verify", SFB, "--scheme", "bearer"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "verify does not take --scheme" in err[0]


# -- credentials and secrets -----------------------------------------------------------------
def test_credentials_view(capsys) -> None:
    rows = [json.loads(line) for line in out_of(capsys, "analyze", SFB, "--credentials",
                                               "--format", "jsonl").splitlines()]  # fmt: skip
    assert len(rows) == 8 and len({r["cred_fp"] for r in rows}) == 8
    basic = next(r for r in rows if r["scheme"] == "basic")
    assert basic["identity"] == "CONTOSO\\alice" and basic["outcomes"] == {"accepted": 1}
    assert basic["clients"] == ["10.1.0.50"] and basic["servers"] == ["mail.contoso.com"]
    assert "password" not in basic
    text = out_of(capsys, "analyze", SFB, "--credentials")
    assert text.startswith("Credentials (8 distinct), times UTC") and "fp=490dc72c3ced" in text
    assert "Spring2026!Alice" not in text and "Secrets shown" not in text


def test_reveal_secrets_shows_basic_user_and_password_everywhere(capsys, tmp_path: Path) -> None:
    plain = out_of(capsys, "analyze", SFB, "--format", "jsonl")
    assert "Spring2026!Alice" not in plain
    jsonl = out_of(capsys, "analyze", SFB, "--format", "jsonl", "--reveal-secrets")
    basic = next(json.loads(line) for line in jsonl.splitlines() if '"basic"' in line)
    assert (basic["user"], basic["domain"], basic["password"]) == (
        "alice", "CONTOSO", "Spring2026!Alice",
    )  # fmt: skip
    table = out_of(capsys, "analyze", SFB, "--reveal-secrets", "--wide")
    assert "Secrets shown (--reveal-secrets): Basic passwords in the identity column" in table
    assert "CONTOSO\\alice password=Spring2026!Alice" in table
    creds = out_of(capsys, "analyze", SFB, "--credentials", "--reveal-secrets", "--wide")
    assert "CONTOSO\\alice password=Spring2026!Alice" in creds
    assert "Spring2026!Alice" in out_of(capsys, "analyze", SFB, "--reveal-secrets", "--format",
                                        "csv")  # fmt: skip
    report = tmp_path / "r.html"
    assert main(["report", SFB, "-o", str(report), "--reveal-secrets"]) == 0
    assert "password: Spring2026!Alice" in report.read_text(encoding="utf-8")


# -- small things ----------------------------------------------------------------------------
def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("oauth-analyzer 0.")


def complete(script: str, line: str) -> list[str]:
    """What bash completes for ``line`` (the cursor at its end) with ``script`` loaded."""
    words = line.split(" ")
    shell = (
        f"{script}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
        "_oauth_analyzer; printf '%s\\n' \"${COMPREPLY[@]}\""
    )
    proc = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_bash_completion(capsys) -> None:
    script = out_of(capsys, "completion", "bash")
    assert complete(script, "oauth-analyzer an") == ["analyze"]
    assert set(complete(script, "oauth-analyzer ")) >= {"analyze", "report", "verify", "live",
                                                        "decode", "completion"}  # fmt: skip
    assert "--reveal-secrets" in complete(script, "oauth-analyzer analyze --re")
    assert complete(script, "oauth-analyzer analyze --format j") == ["jsonl"]
    assert complete(script, "oauth-analyzer analyze --table cr") == ["credentials"]
    assert "captures/exchange-sfb.pcap" in complete(script, "oauth-analyzer analyze captures/ex")
    assert "--scheme" not in complete(script, "oauth-analyzer verify --sch")


def test_zsh_completion(capsys) -> None:
    script = out_of(capsys, "completion", "zsh")
    assert script.startswith("#compdef oauth-analyzer")
    assert "'--format[]:value:(table jsonl csv parquet)'" in script
    assert "compdef _oauth_analyzer oauth-analyzer" in script
    # an option that adds its values when given again is offered again ("*"); one value is once
    verify = next(line for line in script.splitlines() if line.startswith("    verify)"))
    for flag in ("--server", "--host", "--path", "--protocol", "--issuer", "--allow"):
        assert f" '*{flag}[]'" in verify, flag
    assert " '*--keys[]:path:_files'" in verify
    for flag in ("--since[]'", "--policy[]:path:_files'", "--json[]'"):
        assert f" '{flag}" in verify, flag


def test_completion_through_the_entry_point() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "analyzer", "completion", "bash"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "complete -o filenames -F _oauth_analyzer" in proc.stdout
