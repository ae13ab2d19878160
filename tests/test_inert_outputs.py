"""Captured text and file names stay inert text in CSV and in error and warning lines.

CSV is read with ``cat`` as often as with a spreadsheet, and printed to a terminal by
``--format csv`` and ``analyze -``: every cell has its control characters (tab, CR, LF too),
DEL, C1 controls, Unicode line separators and bidi controls escaped as the table shows them
(``\\x1b``, ``\\u202e``), then a cell that starts like a formula gets a leading ``'``; list and
dict cells are JSON of the same value with those characters as ``\\uNNNN``. A file name is text
the user did not choose either (a capture named ``x<LF><ESC>[2J...``): every error and warning
line that quotes one is one line, with the same escapes.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from wire_kit import OK, write_capture

from analyzer.cli import main
from analyzer.engine import analyze_paths

REPO = Path(__file__).resolve().parents[1]
#: What no output line may hold raw: C0 but the line feed, DEL, C1, U+2028/9, bidi controls.
UNSAFE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


def ntlm_type3(user: str) -> bytes:
    """An NTLM AUTHENTICATE message naming ``user`` (UTF-16, no domain, no responses)."""
    name = user.encode("utf-16-le")
    fields = b"".join(struct.pack("<HHI", n, n, 64) for n in (0, 0, 0, len(name), 0, 0))
    return b"NTLMSSP\x00" + struct.pack("<I", 3) + fields + struct.pack("<I", 0xE2888215) + name


def ntlm_request(user: str) -> bytes:
    blob = base64.b64encode(ntlm_type3(user))
    return b"GET /n HTTP/1.1\r\nHost: srv\r\nAuthorization: NTLM " + blob + b"\r\n\r\n"


def bearer_request() -> bytes:
    claims = {
        "iss": "evil\u202etxt.exe\x9b",
        "aud": "=cmd",
        "exp": 2_000_000_000,
        "n": "\u2066\x7f",
    }
    segments = [json.dumps({"alg": "none"}).encode(), json.dumps(claims).encode()]
    token = b".".join(base64.urlsafe_b64encode(s).rstrip(b"=") for s in segments) + b"."
    return b"GET /t HTTP/1.1\r\nHost: srv\r\nAuthorization: Bearer " + token + b"\r\n\r\n"


def hostile_capture(path: Path) -> str:
    request = (
        b"GET /a\x1b[2J\x9b=b HTTP/1.1\r\nHost: h\x1b]0;PWNED\x07\r\nUser-Agent: =cmd\x7f\r\n\r\n"
    )
    challenge = (
        b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="r\x1b[2J\x9b\x7f"\r\n'
        b"Content-Length: 0\r\n\r\n"
    )
    return write_capture(
        path,
        [(request, challenge)],
        [(ntlm_request("\x1b[2J\u202eevil\x9b\r\n"), OK)],
        [(ntlm_request("\t=1+1"), OK)],  # a control character first, a formula after it
        [(bearer_request(), OK)],
    )


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> str:
    return hostile_capture(tmp_path_factory.mktemp("inert") / "hostile.pcap")


# -- CSV -----------------------------------------------------------------------------------------
EVENT_CELLS = [
    {
        "host": "h\\x1b]0;PWNED\\x07",
        "uri": "/a\\x1b[2J\\x9b=b",
        "user": "",
        "identity": "",
        "user_agent": "'=cmd\\x7f",
        "challenges": '[{"scheme":"basic","params":{"realm":"r\\u001b[2J\\u009b\\u007f"}}]',
    },
    {
        "host": "srv",
        "uri": "/n",
        "user": "\\x1b[2J\\u202eevil\\x9b\\x0d\\x0a",
        "identity": "\\x1b[2J\\u202eevil\\x9b\\x0d\\x0a",
        "user_agent": "",
        "challenges": "",
    },
    {
        "host": "srv",
        "uri": "/n",
        "user": "\\x09=1+1",  # escaped first: it no longer starts like a formula
        "identity": "\\x09=1+1",
        "user_agent": "",
        "challenges": "",
    },
    {
        "host": "srv",
        "uri": "/t",
        "user": "",
        "identity": "evil\\u202etxt.exe\\x9b",
        "user_agent": "",
        "challenges": "",
    },
]


def cells(text: str, names: list[str]) -> list[dict[str, str]]:
    return [{n: row[n] for n in names} for row in csv.DictReader(io.StringIO(text))]


def assert_inert(text: str) -> None:
    assert UNSAFE.findall(text) == []


def test_csv_cells_escape_what_a_terminal_or_a_spreadsheet_would_act_on(
    capture: str, capsys: pytest.CaptureFixture
) -> None:
    assert main(["analyze", capture, "--format", "csv"]) == 0
    text = capsys.readouterr().out
    assert_inert(text)
    assert len(text.splitlines()) == 5  # a header and one line per event
    assert cells(text, list(EVENT_CELLS[0])) == EVENT_CELLS
    # the exact values are in JSON Lines; the JSON of a list cell is the same value
    assert main(["analyze", capture, "--format", "jsonl"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["user"] for r in records] == [None, "\x1b[2J\u202eevil\x9b\r\n", "\t=1+1", None]
    assert records[0]["host"] == "h\x1b]0;PWNED\x07" and records[0]["uri"] == "/a\x1b[2J\x9b=b"
    first = next(csv.DictReader(io.StringIO(text)))
    assert json.loads(first["challenges"]) == records[0]["challenges"]


def test_csv_files_excel_csv_and_a_stream_are_escaped_alike(
    capture: str, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["analyze", capture, "--format", "csv"]) == 0
    shown = capsys.readouterr().out
    assert main(["analyze", capture, "--format", "csv", "-o", str(tmp_path / "e.csv")]) == 0
    assert (tmp_path / "e.csv").read_text(encoding="utf-8") == shown
    assert main(["analyze", capture, "--excel", "-o", str(tmp_path / "x.csv")]) == 0
    assert (tmp_path / "x.csv").read_text(encoding="utf-8") == "\ufeff" + shown
    monkeypatch.setattr(sys, "stdin", _Stdin(Path(capture).read_bytes()))
    assert main(["analyze", "-", "--format", "csv"]) == 0
    streamed = capsys.readouterr()
    assert streamed.out == shown  # analyze - writes the same rows as they complete
    assert_inert(streamed.err)  # and its closing summary is inert too


def test_csv_of_tokens_escapes_claims_in_text_and_json_cells(
    capture: str, capsys: pytest.CaptureFixture
) -> None:
    assert main(["analyze", capture, "--tokens", "--format", "csv"]) == 0
    text = capsys.readouterr().out
    assert_inert(text)
    (row,) = csv.DictReader(io.StringIO(text))
    assert (row["iss"], row["aud"]) == ("evil\\u202etxt.exe\\x9b", "'=cmd")
    assert row["claims"] == (
        '{"iss":"evil\\u202etxt.exe\\u009b","aud":"=cmd","exp":2000000000,"n":"\\u2066\\u007f"}'
    )
    assert json.loads(row["claims"])["n"] == "\u2066\x7f"


class _Stdin:
    """Standard input holding ``data`` (not a terminal)."""

    def __init__(self, data: bytes) -> None:
        self.buffer = io.BufferedReader(io.BytesIO(data))

    def isatty(self) -> bool:
        return False


def on_a_terminal(*args: str) -> tuple[int, bytes]:
    """Run the command line with its standard output and error on a pseudo-terminal."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "analyzer", *args],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        cwd=REPO,
    )
    os.close(follower)
    out = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 60)  # a hang guard only
        if not ready:
            proc.kill()
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the command closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    return proc.wait(timeout=60), out


def test_csv_on_a_terminal_shows_escapes_and_runs_nothing(capture: str) -> None:
    code, out = on_a_terminal("analyze", capture, "--format", "csv", "--no-pager")
    assert code == 0
    text = out.decode("utf-8").replace("\r\n", "\n")
    assert_inert(text)
    assert "h\\x1b]0;PWNED\\x07,/a\\x1b[2J\\x9b=b," in text


# -- error and warning lines ---------------------------------------------------------------------
NAME = "x\n\x1b[2J\x1b]0;PWN\x07<img src=x onerror=alert(9)>\u202e=cmd.pcap"
SHOWN = "x\\x0a\\x1b[2J\\x1b]0;PWN\\x07<img src=x onerror=alert(9)>\\u202e=cmd.pcap"


def test_an_error_naming_a_hostile_file_is_one_inert_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / f"{NAME}.empty").write_bytes(b"")
    (tmp_path / f"{NAME}.bad").write_bytes(bytes(range(256)) * 4)
    cases = [
        (["analyze", NAME], 2, f"{SHOWN}: no such file"),
        (["verify", NAME], 3, f"{SHOWN}: no such file"),
        (["report", NAME, "-o", "r.html"], 2, f"{SHOWN}: no such file"),
        (["decode", f"@{NAME}"], 2, f"{SHOWN}: cannot read (No such file or directory)"),
        (["analyze", f"{NAME}.empty"], 2,
         f"{SHOWN}.empty: not a pcap or pcapng capture (empty file)"),
        (["analyze", "-", "--keys", NAME], 2, f"{SHOWN}: cannot read (No such file or directory)"),
    ]  # fmt: skip
    for argv, code, says in cases:
        assert main(argv) == code, argv
        assert capsys.readouterr().err == f"oauth-analyzer: error: {says}\n", argv
    assert main(["analyze", f"{NAME}.bad"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"oauth-analyzer: error: {SHOWN}.bad: not a pcap or pcapng capture")
    assert err.count("\n") == 1 and err.endswith("\n")
    assert_inert(err)  # a quoted tool's complaint (editcap names the file too) included


def test_warnings_naming_a_damaged_hostile_file_are_one_inert_line_each(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    whole = Path(hostile_capture(tmp_path / "whole.pcap")).read_bytes()
    Path(NAME).write_bytes(whole[:-60])  # 10 bytes of the last record (16 + 54 bytes) left
    damage = (
        f"{SHOWN}: file ends in the middle of a record (10 bytes left over); the capture is "
        "truncated"
    )
    assert main(["analyze", NAME, "--summary", "--wide"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1:3] == [f"  {SHOWN}: pcap, 31 packets", f"    warning: {damage}"]
    assert main(["verify", NAME]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert f"             warning: {damage}" in lines
    assert lines[-1] == f"FAIL (warning: damaged capture: {damage})"
    url = f"file://{tmp_path}/{NAME}.missing"
    assert main(["analyze", url, "--format", "jsonl"]) == 0
    shown_url = f"file://{tmp_path}/{SHOWN}.missing"
    err = capsys.readouterr().err  # one line, whatever the reader's reason quotes
    assert err.startswith(f"oauth-analyzer: warning: {shown_url}: ")
    assert err.endswith(": no such file (skipped)\n") and err.count("\n") == 1
    assert_inert(err)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="the crosscheck runs tshark")
def test_the_crosscheck_line_of_a_hostile_file_is_one_inert_line(
    capture: str, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copy(capture, NAME)
    assert main(["analyze", NAME, "--crosscheck", "--format", "jsonl", "-o", os.devnull]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"oauth-analyzer: crosscheck {SHOWN}: tshark")
    assert err.count("\n") == 1
    assert_inert(err)


# -- live --verify -------------------------------------------------------------------------------
def test_a_live_violation_line_is_inert(capture: str, capsys: pytest.CaptureFixture) -> None:
    from analyzer.stream_commands import _violations

    event = analyze_paths([capture]).events[0]
    violation = SimpleNamespace(
        event=event,
        kind="not-oauth",
        reason="not OAuth: basic\u202e\x9b",
        to_dict=lambda: {"uri": event.uri, "reason": "not OAuth: basic\u202e\x9b"},
    )
    rule = SimpleNamespace(name="r\x1b[2J")
    watch = SimpleNamespace(event=lambda _event: [(rule, violation)])
    _violations(watch, False, None)(event)
    assert capsys.readouterr().out == (
        "VIOLATION r\\x1b[2J: not-oauth: not OAuth: basic\\u202e\\x9b (event 1, 10.9.9.1:40001 "
        "-> h\\x1b]0;PWNED\\x07 GET /a\\x1b[2J\\x9b=b)\n"
    )
    _violations(watch, True, None)(event)
    line = capsys.readouterr().out
    assert line == (
        '{"rule": "r\\u001b[2J", "uri": "/a\\u001b[2J\\u009b=b", '
        '"reason": "not OAuth: basic\\u202e\\u009b"}\n'
    )
    assert json.loads(line)["reason"] == "not OAuth: basic\u202e\x9b"


# -- blind spots ---------------------------------------------------------------------------------
def tls_to(server_name: bytes) -> bytes:
    """A TLS ClientHello naming ``server_name`` (SNI): a connection nothing can read."""
    from scapy.layers.tls.extensions import ServerName, TLS_Ext_ServerName
    from scapy.layers.tls.handshake import TLSClientHello
    from scapy.layers.tls.record import TLS

    names = TLS_Ext_ServerName(servernames=[ServerName(servername=server_name)])
    return bytes(TLS(msg=[TLSClientHello(ext=[names])]))


def test_a_blind_spot_naming_a_hostile_server_is_one_inert_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    basic = b"GET / HTTP/1.1\r\nHost: srv\r\nAuthorization: Basic YTpi\r\n\r\n"
    capture = write_capture(
        tmp_path / "tls.pcap", [(tls_to(b"a\nb\x1b[31mred"), None)], [(basic, OK)]
    )
    said = (
        "1 TLS connection to a\\x0ab\\x1b[31mred:80 (10.9.9.2) not inspected: pass "
        "--tls-keylog, or capture with Fiddler / a decrypting proxy"
    )
    assert main(["verify", capture]) == 1
    assert f"             blind spot: {said}" in capsys.readouterr().out.splitlines()
    assert main(["analyze", capture, "--summary", "--wide"]) == 0
    assert f"  {said}" in capsys.readouterr().out.splitlines()


def test_blind_spot_lines_escape_a_raw_host_in_colour_too() -> None:
    """A host the readers did not escape (an HTTP/2 :authority may hold any byte): one inert
    line in the summary, coloured or not, and in verify's coverage."""
    from analyzer.analysis.coverage import Coverage
    from analyzer.analysis.verify import RuleResult
    from analyzer.model import NotInspected
    from analyzer.report.table import write_summary
    from analyzer.report.terminal import AnsiStyle
    from analyzer.report.verification import write_verification

    spot = NotInspected(
        kind="tls", conn_id="C1", ts=1772442000.0, client_ip="10.9.9.1", client_port=40001,
        server_ip="10.9.9.2", server_port=443, host="a\nb\x1b[31mred",
    )  # fmt: skip
    said = (
        "1 TLS connection to a\\x0ab\\x1b[31mred:443 (10.9.9.2) not inspected: pass "
        "--tls-keylog, or capture with Fiddler / a decrypting proxy"
    )
    plain, coloured, style = io.StringIO(), io.StringIO(), AnsiStyle()
    write_summary([], [], plain, not_inspected=[spot], width=1000)
    write_summary([], [], coloured, not_inspected=[spot], width=1000, style=style)
    assert plain.getvalue().splitlines()[2:4] == ["Not inspected", f"  {said}"]
    assert coloured.getvalue().splitlines()[2:4] == [  # its own colour stays, the captured is text
        style.heading("Not inspected"),
        f"  {style.warning(said)}",
    ]
    rule = SimpleNamespace(name="all", describe=lambda: "all traffic")
    coverage = Coverage(not_inspected=[spot])
    result = RuleResult(rule, "INCONCLUSIVE", reason="nothing inspected", coverage=coverage)  # type: ignore[arg-type]
    out = io.StringIO()
    write_verification([result], "INCONCLUSIVE", out)
    assert out.getvalue().splitlines() == [
        "INCONCLUSIVE all: all traffic",
        "             nothing inspected",
        f"             blind spot: {said}",
        "INCONCLUSIVE",
    ]


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        ("/caps/mail.pcap", "reading mail.pcap"),
        ("/caps/x\x1b[2J\x1b]0;PWN\x07.pcap", "reading x\\x1b[2J\\x1b]0;PWN\\x07.pcap"),
        ("/caps/[bold red]boo[blink].pcap", "reading [bold red]boo[blink].pcap"),
    ],
)
def test_the_progress_bar_names_a_file_inertly(path: str, shown: str) -> None:
    """The bar's description is rich markup: a file's name is escaped for both the terminal and
    rich, and renders as the name itself."""
    from rich.console import Console
    from rich.text import Text

    from analyzer.report.progress import reading_label

    console = Console(record=True, width=200, force_terminal=False)
    console.print(Text.from_markup(reading_label(path)))
    assert console.export_text().rstrip("\n") == shown


def test_jsonl_lines_escape_what_json_leaves_raw_and_keep_the_values(
    capture: str, tmp_path: Path
) -> None:
    """JSON escapes C0 itself; DEL, C1 and the bidi controls it leaves raw are written as
    \\uNNNN, so the lines are inert on a terminal and still read back to the captured values."""
    for table in ("events", "tokens"):
        out = tmp_path / f"{table}.jsonl"
        argv = ["analyze", capture, "--format", "jsonl", "-o", str(out), "--no-progress"]
        assert main([*argv, "--table", table] if table != "events" else argv) == 0
        text = out.read_text(encoding="utf-8")
        assert not UNSAFE.search(text)
        rows = [json.loads(line) for line in text.splitlines()]
        assert len(rows) == 4 if table == "events" else rows
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert events[1]["user"] == "\x1b[2J\u202eevil\x9b\r\n"  # the captured value, unchanged
    tokens = (tmp_path / "tokens.jsonl").read_text()
    assert "evil\\u202etxt.exe\\u009b" in tokens
    from analyzer.report.safe_text import one_line

    assert one_line('{"a":"d\x7fel"}') == '{"a":"d\\u007fel"}'  # DEL in an ASCII line too
