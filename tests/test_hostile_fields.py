"""Hostile field values a reviewer found crashing whole runs: digits ``int()`` refuses, capture
dates pandas cannot hold, control characters openpyxl refuses.

``str.isdigit()`` is true for ``²`` (0xb2 in a Latin-1 header) and for a string of any length;
``int()`` refuses both ``²`` and over 4,300 digits. Captures dated outside 1677-2262 made pandas
raise ``OutOfBoundsDatetime`` in the charts, and an ESC in a URI made openpyxl raise
``IllegalCharacterError``. Every input is real bytes (scapy packets, zip archives, JSON) read
through the real pipeline and command line: each gives a warning or one error line and the run
goes on, never a traceback.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
import sys
from pathlib import Path

import pandas as pd
import pytest
from archive_kit import analysis, har, har_entry, make_saz, meta, run
from h2_kit import HEADERS, Peer, request, settings
from matplotlib.figure import Figure
from sip_kit import Dialog, leg, offer, udp_capture
from test_hostile_input import basic_get, write_pcapng
from wire_kit import OK, T0, connection, conversation, write_capture, write_packets

from analyzer.api import Analysis
from analyzer.engine import analyze_paths
from analyzer.protocols.sip import parse_head
from analyzer.report import charts
from analyzer.sources.archive import host_port, port_number

scapy = pytest.importorskip("scapy.all")

SUP = "²"  # isdigit() but not int()
LONG = "9" * 5000  # isdigit() but past int()'s 4,300 digits
BASIC = b"Authorization: Basic YWxpY2U6cGFzc3dvcmQxMjM=\r\n"  # alice
NO_TRACEBACK = "Traceback"


# -- SIP: CSeq and Content-Length ----------------------------------------------------------------
def sip_head(cseq: bytes = b"1", length: bytes = b"0") -> bytes:
    return (
        b"REGISTER sip:contoso.com SIP/2.0\r\nCall-ID: c1\r\nCSeq: " + cseq + b" REGISTER\r\n"
        b"Content-Length: " + length + b"\r\n\r\n"
    )


@pytest.mark.parametrize("digits", [b"\xb2", SUP.encode(), b"\xb2" * 5, b"12345678901"])
def test_sip_cseq_that_is_no_number_is_garbled(digits: bytes) -> None:
    message = parse_head(sip_head(cseq=digits), T0)
    assert message is not None and message.cseq == (None, "REGISTER")
    assert message.body_length == 0


def test_sip_cseq_of_ten_ascii_digits_is_read() -> None:
    assert parse_head(sip_head(cseq=b"1234567890"), T0).cseq == (1234567890, "REGISTER")


@pytest.mark.parametrize("digits", [b"\xb2", SUP.encode(), b"1234567890123", b"-1"])
def test_sip_content_length_that_is_no_number_is_garbled(digits: bytes) -> None:
    message = parse_head(sip_head(length=digits), T0)
    assert message is not None and message.body_length == -1
    assert parse_head(sip_head(length=b"123456789012"), T0).body_length == 123456789012


@pytest.mark.parametrize("sup", [b"\xb2", SUP.encode()], ids=["latin-1", "utf-8"])
def test_sip_capture_with_superscript_cseq_and_length_is_read(tmp_path: Path, sup: bytes) -> None:
    dialog = Dialog("callid123456")
    register = dialog.request([leg("NTLM", "")])
    answer = dialog.response(401, "Unauthorized", offer())
    cseq = udp_capture(
        tmp_path / "cseq.pcap",
        [
            (0, register.replace(b"CSeq: 1 REGISTER", b"CSeq: " + sup + b" REGISTER")),
            (1, answer.replace(b"CSeq: 1 REGISTER", b"CSeq: " + sup + b" REGISTER")),
        ],
    )
    length = udp_capture(
        tmp_path / "length.pcap",
        [(0, register.replace(b"Content-Length: 0", b"Content-Length: " + sup)), (1, answer)],
    )
    for path in (cseq, length):
        result = analyze_paths([path])
        assert [(e.method, e.status, e.scheme, e.outcome) for e in result.events] == [
            ("REGISTER", 401, "ntlm", "rejected")
        ]
        code, out, err = run("analyze", path, "--no-progress")
        assert code == 0 and NO_TRACEBACK not in err and "REGISTER" in out


# -- HTTP/2: :status -----------------------------------------------------------------------------
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def literal(name: bytes, value: bytes) -> bytes:
    """An HPACK literal field without indexing, neither part Huffman-coded: raw bytes."""
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def h2_capture(path: Path, status: bytes) -> str:
    auth = ("authorization", "Basic YWxpY2U6cGFzc3dvcmQxMjM=")
    client = PREFACE + settings() + Peer().headers(1, request("/x", auth), end=True)
    server = settings() + Peer().block(HEADERS, 1, literal(b":status", status), end=True)
    return write_packets(path, conversation([(True, client), (False, server)], 40001, T0))


@pytest.mark.parametrize(
    ("status", "code"),
    [(b"\xb2\xb2\xb2", None), ("²²²".encode(), None), ("4²1".encode(), None), (b"401", 401)],
    ids=["latin-1", "utf-8", "mixed", "plain"],
)
def test_h2_status_of_superscript_digits_is_no_status(
    tmp_path: Path, status: bytes, code: int | None
) -> None:
    path = h2_capture(tmp_path / "h2.pcap", status)
    result = analyze_paths([path])
    # an answer whose status cannot be read accepted nothing: no status, never "accepted"
    outcome = "incomplete" if code is None else "rejected"
    assert [(e.protocol, e.uri, e.status, e.user, e.outcome) for e in result.events] == [
        ("http/2", "/x", code, "alice", outcome)
    ]
    code_, _, err = run("analyze", path, "--no-progress")
    assert code_ == 0 and NO_TRACEBACK not in err


# -- SAZ: client port, Host port, CONNECT port ---------------------------------------------------
M = meta("2026-03-02T10:00:00.0000000+01:00", "2026-03-02T10:00:00.1000000+01:00")
OK401 = (
    b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="r"\r\nContent-Length: 0\r\n\r\n'
)
TUNNEL = b"HTTP/1.1 200 Connection Established\r\n\r\n"
PROXY_401 = b'HTTP/1.1 407 Proxy Auth\r\nProxy-Authenticate: Basic realm="p"\r\n\r\n'


def saz_request(line: bytes, host: bytes = b"srv", extra: bytes = b"") -> bytes:
    return line + b"\r\nHost: " + host + b"\r\n" + extra + b"\r\n"


def saz_warnings(path: Path) -> list[str]:
    return analysis(path).captures[0].warnings


def test_port_number() -> None:
    assert [port_number(t) for t in ("1", "80", "65535", "00443")] == [1, 80, 65535, 443]
    for text in (None, "", "0", "65536", "99999999", LONG, SUP, "²²", "٨٠", " 80", "8_0", "-1"):
        assert port_number(text) is None, text
    assert host_port("srv:\xb2", 80) == 80 and host_port(f"srv:{LONG}", 443) == 443
    assert host_port("srv:8080", 80) == 8080 and host_port("[2001:db8::1]:8443", 443) == 8443


@pytest.mark.parametrize("port", ["&#178;", SUP, LONG, "65536", "0"])
def test_saz_client_port_that_is_no_port_is_unknown(tmp_path: Path, port: str) -> None:
    flags = {"x_clientport": port, "x_clientip": "10.0.0.1"}
    path = make_saz(
        tmp_path / "client.saz",
        {
            "raw/01_c.txt": saz_request(b"GET http://srv/x HTTP/1.1", extra=BASIC),
            "raw/01_s.txt": OK401,
            "raw/01_m.xml": meta("2026-03-02T10:00:00.0000000+01:00", **flags),
        },
    )
    result = analysis(path)
    assert [
        (e.client_ip, e.client_port, e.server_port, e.user, e.status) for e in result.events
    ] == [("10.0.0.1", 0, 80, "alice", 401)]  # 0: the client port is unknown
    code, _, err = run("analyze", str(path), "--no-progress")
    assert code == 0 and NO_TRACEBACK not in err


@pytest.mark.parametrize("port", [b"\xb2", SUP.encode(), LONG.encode(), b"65536"])
def test_saz_host_port_that_is_no_port_is_the_default(tmp_path: Path, port: bytes) -> None:
    path = make_saz(
        tmp_path / "host.saz",
        {
            "raw/01_c.txt": saz_request(b"GET /x HTTP/1.1", b"srv:" + port, BASIC),
            "raw/01_s.txt": OK401,
            "raw/01_m.xml": M,
        },
    )
    assert [(e.host, e.server_port, e.user) for e in analysis(path).events] == [
        ("srv:" + port.decode("latin-1"), 80, "alice")
    ]
    code, _, err = run("report", str(path), "-o", str(tmp_path / "r.html"), "--no-progress")
    assert code == 0 and NO_TRACEBACK not in err


GARBLED_CONNECT = "CONNECT target without a usable port (not 1-65535): 443 assumed (session 1)"


@pytest.mark.parametrize(
    "target",
    [b"srv:\xb2", "srv:²".encode(), b"srv:" + LONG.encode(), b"srv:99999999", b"srv:0", b"srv"],
    ids=["latin-1", "utf-8", "5000-digits", "99999999", "zero", "none"],
)
def test_saz_connect_port_that_is_no_port_is_a_garbled_field(tmp_path: Path, target: bytes) -> None:
    path = make_saz(
        tmp_path / "connect.saz",
        {
            "raw/01_c.txt": saz_request(b"CONNECT " + target + b" HTTP/1.1", b"srv:443", BASIC),
            "raw/01_s.txt": PROXY_401,
            "raw/01_m.xml": meta(
                "2026-03-02T10:00:00.0000000+01:00",
                x_clientport="50000",
                x_clientip="10.0.0.1",
                x_hostip="10.0.0.2",
            ),
        },
    )
    result = analysis(path)
    assert [(e.method, e.server_ip, e.server_port, e.user) for e in result.events] == [
        ("CONNECT", "10.0.0.2", 443, "alice")
    ]
    assert [(n.kind, n.host, n.server_port) for n in result.not_inspected] == [
        ("connect-tunnel", "srv", 443)
    ]
    assert result.captures[0].warnings == [f"{path}: {GARBLED_CONNECT}"]
    code, out, err = run("analyze", str(path), "--no-progress", "--format", "jsonl")
    assert code == 0 and NO_TRACEBACK not in err
    assert [json.loads(line)["server_port"] for line in out.splitlines()] == [443]


@pytest.mark.parametrize(("target", "port"), [(b"srv:1", 1), (b"srv:65535", 65535)])
def test_saz_connect_ports_at_their_limits_are_ports(
    tmp_path: Path, target: bytes, port: int
) -> None:
    path = make_saz(
        tmp_path / "connect.saz",
        {
            "raw/01_c.txt": saz_request(b"CONNECT " + target + b" HTTP/1.1", target, BASIC),
            "raw/01_s.txt": TUNNEL,
            "raw/01_m.xml": M,
        },
    )
    result = analysis(path)
    assert [n.server_port for n in result.not_inspected] == [port]
    assert [e.server_port for e in result.events] == [port]
    assert result.captures[0].warnings == []


# -- HAR: response.status ------------------------------------------------------------------------
def har_with_status(path: Path, status: str) -> Path:
    entry = har_entry(
        "http://srv/x",
        "2026-03-02T10:00:00.000Z",
        [("Authorization", "Basic YWxpY2U6cGFzc3dvcmQxMjM=")],
        status=401,
    )
    path.write_bytes(har([entry]).replace(b'"status": 401', b'"status": ' + status.encode()))
    return path


@pytest.mark.parametrize(
    ("status", "says"),
    [
        ('"²"', "is not a number"),
        ('"\\u00b2\\u00b2\\u00b2"', "is not a number"),
        ('"--401"', "is not a number"),
        (f'"{LONG}"', "is out of range"),
        ('"1234567890123456789"', "is out of range"),
        ("1e300", "is out of range"),
    ],
)
def test_har_status_that_is_no_number_skips_its_entry(
    tmp_path: Path, parser: str, status: str, says: str
) -> None:
    path = har_with_status(tmp_path / "status.har", status)
    assert saz_warnings(path) == [
        f"{path}: entries skipped for wrong types: response.status {says} (entry 1)",
        f"{path}: no HTTP entries in the archive",
    ]
    code, _, err = run("analyze", str(path), "--no-progress")
    assert code == 0 and NO_TRACEBACK not in err


@pytest.mark.parametrize("status", ['" 401 "', '"401"', "401.0", "401"])
def test_har_status_as_digits_is_read(tmp_path: Path, parser: str, status: str) -> None:
    path = har_with_status(tmp_path / "status.har", status)
    assert [(e.status, e.user) for e in analysis(path).events] == [(401, "alice")]


@pytest.mark.parametrize("status", ["NaN", "Infinity", "-Infinity"])
def test_har_status_nan_read_by_json_skips_its_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: str
) -> None:
    monkeypatch.setitem(sys.modules, "ijson", None)  # json.load reads NaN and Infinity
    path = har_with_status(tmp_path / "status.har", status)
    assert saz_warnings(path)[0] == (
        f"{path}: entries skipped for wrong types: response.status is not a number (entry 1)"
    )


def test_har_integer_of_5000_digits_is_one_error_line(tmp_path: Path, parser: str) -> None:
    path = har_with_status(tmp_path / "status.har", LONG)
    code, out, err = run("analyze", str(path), "--no-progress")
    assert (code, out) == (2, "")
    why = "parse error: integer overflow" if parser == "ijson" else "integer overflow"
    assert err == (
        f"oauth-analyzer: error: {path}: not valid JSON ({why}): the HTTP archive is damaged "
        "or cut short\n"
    )


# -- verify --server: the port -------------------------------------------------------------------
@pytest.mark.parametrize("port", [SUP, "²²", "٤٤٣", "9" * 40, LONG])
def test_verify_server_port_that_is_no_port_is_one_error_line(tmp_path: Path, port: str) -> None:
    path = write_capture(tmp_path / "a.pcap", [(basic_get("alice"), OK)])
    code, out, err = run("verify", path, "--server", f"srv:{port}")
    assert (code, out) == (3, "")  # verify's usage error
    assert err == f"oauth-analyzer: error: server 'srv:{port}': bad port '{port}'\n"


# -- charts of captures dated outside 1677-2262 --------------------------------------------------
def dated_capture(path: Path, when: dt.datetime) -> str:
    """Two Basic exchanges (one rejected), shifted by if_tsoffset to ``when``."""
    offset = round(when.replace(tzinfo=dt.timezone.utc).timestamp() - T0)
    exchanges = [(basic_get("alice"), OK401), (basic_get("bob"), OK)]
    return write_pcapng(path, connection(exchanges, 40001, T0), offset)


def chart_notes(fig: Figure) -> list[str]:
    ax = fig.axes[0]
    return [ax.get_title(loc="right")] + [t.get_text() for t in ax.texts]


@pytest.mark.parametrize("year", [1600, 1677, 2263, 2300, 9999])
def test_report_and_charts_of_a_capture_dated_out_of_pandas_nanoseconds(
    tmp_path: Path, year: int
) -> None:
    path = dated_capture(tmp_path / f"y{year}.pcapng", dt.datetime(year, 6, 1, 12))
    report = tmp_path / "r.html"
    code, _, err = run("report", path, "-o", str(report), "--no-progress")
    assert code == 0 and NO_TRACEBACK not in err
    page = report.read_text(encoding="utf-8")
    for name in ("timeline", "classes_over_time"):
        assert f'id="chart-{name}"' in page
    assert "chart not drawn" not in page and "chart left out" not in page
    code, _, err = run("analyze", path, "--charts", str(tmp_path / "c"), "--format", "jsonl")
    assert code == 0 and err.endswith(f"wrote 6 chart files to {tmp_path / 'c'}\n"), err
    result = Analysis(analyze_paths([path]))
    assert result.events["ts"].dt.year.tolist() == [year, year]
    fig = charts.timeline(result)
    low, high = fig.axes[0].get_xlim()
    first, last = (charts._to_days(e.ts) for e in result.result.events)
    assert low < first < last < high
    assert chart_notes(fig) == [""]
    charts.figure_bytes(fig, "svg")


def test_chart_seconds_keep_every_year_a_frame_holds() -> None:
    times = pd.Series(
        pd.to_datetime([-11676096000e6, 0, 10413792000e6, None], unit="us", utc=True)
    )  # 1600-01-01, 1970-01-01, 2300-01-01, NaT
    seconds = charts._seconds(times)
    assert seconds[:3].tolist() == [-11676096000.0, 0.0, 10413792000.0]
    assert pd.isna(seconds[3])


def test_charts_at_the_last_second_of_year_9999(tmp_path: Path) -> None:
    entry = har_entry(
        "http://srv/x",
        "9999-12-31T23:59:59Z",
        [("Authorization", "Basic YWxpY2U6cGFzc3dvcmQxMjM=")],
        status=401,
        response_headers=[("WWW-Authenticate", 'Basic realm="r"')],
        timings={"wait": 1e12},
    )
    path = tmp_path / "y9999.har"
    path.write_bytes(har([entry]))
    report = tmp_path / "r.html"
    code, _, err = run("report", str(path), "-o", str(report), "--no-progress")
    assert code == 0 and NO_TRACEBACK not in err
    page = report.read_text(encoding="utf-8")
    assert 'id="chart-timeline"' in page and 'id="chart-classes_over_time"' in page
    assert "chart not drawn" not in page
    folder = tmp_path / "c"
    code, _, err = run("analyze", str(path), "--charts", str(folder), "--format", "jsonl")
    assert code == 0 and NO_TRACEBACK not in err
    assert len(list(folder.iterdir())) == 6


def test_exchanges_a_chart_cannot_place_are_said_to_be_left_out(tmp_path: Path) -> None:
    # if_tsoffset 10**15 s: past year 9999, a time no frame holds (NaT)
    lost = write_pcapng(
        tmp_path / "lost.pcapng",
        connection([(basic_get("alice"), OK401), (basic_get("bob"), OK)], 40001, T0),
        10**15,
    )
    report = tmp_path / "r.html"
    code, _, err = run("report", lost, "-o", str(report), "--no-progress")
    assert code == 0 and NO_TRACEBACK not in err
    page = report.read_text(encoding="utf-8")
    assert (
        re.findall(r"<p class=\"muted\">([^<]*)", page).count(
            "timeline: chart left out: 2 exchanges not shown (time out of range)"
        )
        == 1
    )
    assert "classes_over_time: chart left out: 2 exchanges not shown (time out of range)" in page
    # with a capture of its own time, the charts are drawn and say what they leave out
    plain = write_capture(tmp_path / "plain.pcap", [(basic_get("carol"), OK)])
    both = Analysis(analyze_paths([plain, lost]))
    assert both.events["ts"].isna().tolist() == [False, True, True]
    assert [charts.unplaced(name, both) for name in charts.CHARTS] == [2, 2, 0]
    assert chart_notes(charts.timeline(both)) == ["2 exchanges not shown (time out of range)"]
    assert chart_notes(charts.classes_over_time(both)) == [
        "2 exchanges not shown (time out of range)"
    ]
    alone = Analysis(analyze_paths([lost]))
    assert chart_notes(charts.timeline(alone)) == [
        "",
        "2 exchanges not shown (time out of range)",
    ]
    code, _, err = run("report", plain, lost, "-o", str(report), "--no-progress")
    assert code == 0 and NO_TRACEBACK not in err
    assert 'id="chart-timeline"' in report.read_text(encoding="utf-8")


def test_token_uses_a_chart_cannot_place_are_said_to_be_left_out(tmp_path: Path) -> None:
    # an opaque token has no nbf, exp or iat: its only use, at a time no frame holds, was the
    # one time its axis had (NaN limits: the chart was not drawn)
    bearer = b"GET /a HTTP/1.1\r\nHost: web.test\r\nAuthorization: Bearer opaque-0123456789\r\n\r\n"
    lost = write_pcapng(tmp_path / "lost.pcapng", connection([(bearer, OK)], 40001, T0), 10**15)
    result = Analysis(analyze_paths([lost]))
    assert result.tokens[["role", "format"]].values.tolist() == [["bearer", "opaque"]]
    fig = charts.token_validity(result)
    assert chart_notes(fig) == ["1 use not shown (time out of range)"]
    assert "<svg" in charts.figure_bytes(fig, "svg").decode()
    report = tmp_path / "r.html"
    code, _, err = run("report", lost, "-o", str(report), "--no-progress")
    assert code == 0 and NO_TRACEBACK not in err
    page = report.read_text(encoding="utf-8")
    assert 'id="chart-token_validity"' in page and "chart not drawn" not in page


def test_a_chart_that_cannot_be_drawn_leaves_a_file_that_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_: Analysis) -> None:
        raise ValueError("year 10000 is out of range")

    monkeypatch.setitem(charts.CHARTS, "timeline", broken)
    path = write_capture(tmp_path / "a.pcap", [(basic_get("alice"), OK)])
    written = charts.save_charts(Analysis(analyze_paths([path])), tmp_path / "c")
    assert [p.name for p in written] == [
        "timeline.png",
        "timeline.svg",
        "classes_over_time.png",
        "classes_over_time.svg",
        "token_validity.png",
        "token_validity.svg",
    ]
    svg = (tmp_path / "c" / "timeline.svg").read_text(encoding="utf-8")
    assert "chart not drawn (ValueError)" in html.unescape(svg)


# -- Excel: control characters -------------------------------------------------------------------
def test_excel_writes_control_characters_of_a_capture_escaped(tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    request = (
        b"GET /a\x1b]0;PWNED\x07\x1b[31mRED\x1b[0m\x1b[2J\x7f\xc2\x9b HTTP/1.1\r\n"
        b"Host: web\x1b[2J\x01.test\r\n" + BASIC + b"\r\n"
    )
    path = write_capture(tmp_path / "markup.pcap", [(request, OK)])
    out = tmp_path / "markup.xlsx"
    code, _, err = run("analyze", path, "--excel", "-o", str(out), "--no-progress")
    assert code == 0 and NO_TRACEBACK not in err
    book = openpyxl.load_workbook(out)
    text = [
        value
        for sheet in book
        for row in sheet.iter_rows(values_only=True)
        for value in row
        if isinstance(value, str)
    ]
    assert [v for v in text if re.search("[\x00-\x1f\x7f-\x9f]", v)] == []
    sheet = book["events"]
    row = {h.value: c.value for h, c in zip(sheet[1], sheet[2], strict=True)}
    assert row["uri"] == "/a\\x1b]0;PWNED\\x07\\x1b[31mRED\\x1b[0m\\x1b[2J\\x7f\u00c2\\x9b"
    assert row["host"] == "web\\x1b[2J\\x01.test"
    assert row["user"] == "alice"


def test_excel_escapes_every_control_character_and_keeps_the_rest(tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    from analyzer.model import Event, evolve
    from analyzer.report.excel import write_xlsx

    path = write_capture(tmp_path / "a.pcap", [(basic_get("alice"), OK)])
    event = analyze_paths([path]).events[0]
    controls = "".join(map(chr, range(32))) + "\x7f\x85\x9f\u2028\u202e\u2066"
    hostile = evolve(event, uri="/" + controls, host="=1+2", user="Jos\u00e9 \u2026 DOMAIN\\u")
    out = tmp_path / "x.xlsx"
    write_xlsx([("events", Event, [hostile])], out, False)
    sheet = openpyxl.load_workbook(out)["events"]
    row = {h.value: c for h, c in zip(sheet[1], sheet[2], strict=True)}
    escaped = "".join(f"\\x{n:02x}" for n in range(32))
    assert row["uri"].value == f"/{escaped}\\x7f\\x85\\x9f\\u2028\\u202e\\u2066"
    assert (row["host"].value, row["host"].data_type) == ("=1+2", "s")  # text, not a formula
    assert row["user"].value == "Jos\u00e9 \u2026 DOMAIN\\u"  # printable text stays as it was


# -- digits int() would take, or refuse, that a field must not -----------------------------------
@pytest.mark.parametrize(("cnum", "read"), [("7", 7), (SUP, None), ("\xb2", None), ("1_0", None)])
def test_sip_cnum_is_ascii_digits_only(cnum: str, read: int | None) -> None:
    from analyzer.auth.sip_events import _association_fields

    assert _association_fields("ntlm", {"cnum": cnum}).get("sip_cnum") == read


@pytest.mark.parametrize(
    ("value", "length"),
    [("12", 12), (" 12 , 12", 12), ("1_000", 0), ("+5", 0), ("\u0663", 0), (SUP, 0), ("", 0)],
)
def test_http_content_length_is_ascii_digits_only(value: str, length: int) -> None:
    from analyzer.protocols.http1 import _length

    assert _length(value) == length


def test_http_content_length_past_what_int_reads_is_absurd() -> None:
    from analyzer.protocols.http1 import MAX_LENGTH, _length

    assert _length("9" * 4000) == int("9" * 4000)
    assert _length("9" * 5000) == MAX_LENGTH + 1
