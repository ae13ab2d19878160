"""Hostile input found already: captures that crashed a whole run or leaked a secret.

Each capture is written with scapy (real bytes on real TCP connections) and read through the real
pipeline and command line; the assertions name the exact events, warnings and output text.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from analyzer.cli import main
from analyzer.flows import tcp
from analyzer.pipeline import analyze_paths

scapy = pytest.importorskip("scapy.all")

T0 = 1772442000.0  # 2026-03-02 09:00:00 UTC
CLIENT, SERVER = "10.9.9.1", "10.9.9.2"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

Exchange = tuple[bytes, bytes | None]  # request bytes, response bytes (None: no answer)


def connection(
    exchanges: Sequence[Exchange], sport: int, t0: float, client: str = CLIENT
) -> list[Any]:
    """Packets of one TCP connection to SERVER:80 carrying ``exchanges`` in order, 10 ms apart."""
    packets = []

    def seg(outbound: bool, flags: str, seq: int, ack: int, payload: bytes = b"") -> None:
        src, dst, sp, dp = (client, SERVER, sport, 80) if outbound else (SERVER, client, 80, sport)
        packet = scapy.Ether() / scapy.IP(src=src, dst=dst)
        packet = packet / scapy.TCP(sport=sp, dport=dp, flags=flags, seq=seq, ack=ack)
        packets.append(packet / payload if payload else packet)

    c, s = 1000, 5000
    seg(True, "S", c, 0)
    seg(False, "SA", s, c + 1)
    c, s = c + 1, s + 1
    seg(True, "A", c, s)
    for request, response in exchanges:
        seg(True, "PA", c, s, request)
        c += len(request)
        if response is not None:
            seg(False, "PA", s, c, response)
            s += len(response)
    seg(True, "FA", c, s)
    seg(False, "FA", s, c + 1)
    seg(True, "A", c + 1, s + 1)
    for i, packet in enumerate(packets):
        packet.time = t0 + i * 0.01
    return packets


def write_capture(path: Path, *connections: Sequence[Exchange]) -> str:
    """One pcap with each connection from its own client port, a second apart."""
    packets = []
    for i, exchanges in enumerate(connections):
        packets += connection(exchanges, 40001 + i, T0 + i)
    scapy.wrpcap(str(path), packets)
    return str(path)


def basic_get(
    user: str, password: str = "pw", extra: bytes = b"", host: bytes = b"web.test"
) -> bytes:
    credential = base64.b64encode(f"{user}:{password}".encode())
    head = b"GET /a HTTP/1.1\r\n" + (b"Host: " + host + b"\r\n" if host else b"")
    return head + b"Authorization: Basic " + credential + b"\r\n" + extra + b"\r\n"


@pytest.fixture(params=["native", "pure"])
def walk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run the test with the native record walk and with the pure-Python reader."""
    if request.param == "native" and tcp.GrantTable is None:
        pytest.skip("native walk not built")
    monkeypatch.setenv(tcp.PURE_PYTHON_ENV, "1" if request.param == "pure" else "0")
    yield request.param


# -- 1. absurd body lengths ----------------------------------------------------------------------
HUGE_LENGTH = b"12345678901234567890123"  # 23 digits: past 2**64
HUGE_CHUNK = b"f" * 40  # 40 hex digits


def absurd_lengths_capture(path: Path) -> str:
    return write_capture(
        path,
        [  # a response whose Content-Length is absurd, then the next exchange
            (
                basic_get("alice"),
                b"HTTP/1.1 200 OK\r\nContent-Length: " + HUGE_LENGTH + b"\r\n\r\n",
            ),
            (basic_get("bob"), OK),
        ],
        [  # a chunk size of 40 hex digits
            (
                basic_get("carol"),
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + HUGE_CHUNK + b"\r\n",
            ),
            (basic_get("dave"), OK),
        ],
        [  # a request whose Content-Length is absurd
            (basic_get("erin", extra=b"Content-Length: " + HUGE_LENGTH + b"\r\n"), OK),
            (basic_get("frank"), OK),
        ],
    )


def test_absurd_lengths_skip_one_body_not_the_capture(tmp_path: Path, walk: str) -> None:
    path = absurd_lengths_capture(tmp_path / "lengths.pcap")
    result = analyze_paths([path])
    got = [(e.user, e.client_port, e.status) for e in result.events]
    assert got == [
        ("alice", 40001, 200),
        ("bob", 40001, 200),
        ("carol", 40002, 200),
        ("dave", 40002, 200),
        ("erin", 40003, 200),
        ("frank", 40003, 200),
    ]
    conn = {e.client_port: e.conn_id for e in result.events}
    tail = "body skipped, reading resumed at the next message"
    assert result.captures[0].warnings == [
        f"{conn[40001]} {SERVER}:80 -> {CLIENT}:40001: 1 HTTP message(s) with an absurd body "
        f"length (first: Content-Length 12345678901234567890123); {tail}",
        f"{conn[40002]} {SERVER}:80 -> {CLIENT}:40002: 1 HTTP message(s) with an absurd body "
        f"length (first: chunk size {'f' * 40}); {tail}",
        f"{conn[40003]} {CLIENT}:40003 -> {SERVER}:80: 1 HTTP message(s) with an absurd body "
        f"length (first: Content-Length 12345678901234567890123); {tail}",
    ]


def test_absurd_lengths_every_command_goes_on(
    tmp_path: Path, walk: str, capsys: pytest.CaptureFixture
) -> None:
    path = absurd_lengths_capture(tmp_path / "lengths.pcap")
    assert main(["analyze", path]) == 0
    out = capsys.readouterr().out
    assert out.count("with an absurd body length") == 3
    assert "NO-OAUTH - no OAuth: 6 basic" in out
    assert main(["analyze", path, "--format", "jsonl"]) == 0
    assert capsys.readouterr().out.count('"scheme":"basic"') == 6
    assert main(["verify", path, "--json"]) == 1
    assert '"result": "FAIL"' in capsys.readouterr().out
    report = tmp_path / "report.html"
    assert main(["report", path, "-o", str(report)]) == 0
    assert "with an absurd body length (first: chunk size" in report.read_text(encoding="utf-8")


# -- 2. a pair without Host next to one with it --------------------------------------------------
def test_pair_without_host_sorts_first_in_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = write_capture(
        tmp_path / "nohost.pcap",
        [(basic_get("alice"), OK)],
        [(basic_get("bob", host=b""), OK)],
    )
    verdicts = analyze_paths([path]).verdicts
    assert [(v.host, v.verdict, v.exchanges) for v in verdicts] == [
        (None, "no-oauth", 1),
        ("web.test", "no-oauth", 1),
    ]
    assert main(["analyze", path]) == 0
    out = capsys.readouterr().out
    assert (
        "Verdicts\n"
        f"  {CLIENT} -> {SERVER} ({SERVER}:80): NO-OAUTH - no OAuth: 1 basic\n"
        f"  {CLIENT} -> web.test ({SERVER}:80): NO-OAUTH - no OAuth: 1 basic\n"
    ) in out
    for extra in (["--format", "jsonl"], ["--format", "csv"], ["--findings"], ["--tokens"]):
        assert main(["analyze", path, *extra]) == 0
    capsys.readouterr()
    assert main(["analyze", path, "--format", "parquet", "-o", str(tmp_path / "pq")]) == 0
    assert main(["report", path, "-o", str(tmp_path / "r.html")]) == 0
    capsys.readouterr()
    assert main(["verify", path]) == 1
    assert capsys.readouterr().out.startswith("FAIL         command line: all traffic\n")


# -- 3. lone surrogates in token claims ----------------------------------------------------------
def b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def unsigned_jwt(claims_json: bytes) -> bytes:
    """An alg-none JWT whose claims are exactly ``claims_json`` (escapes kept as written)."""
    return b64url(b'{"alg":"none","typ":"JWT"}') + b"." + b64url(claims_json) + b"."


SURROGATE_CLAIMS = (
    rb'{"iss":"issuer\ud800x","aud":"https://web.test/","upn":"eve\udfff@contoso.com",'
    rb'"nbf":1772440000,"exp":1772445600,"\udc00key":["\ud83d\ude00","\ud800"]}'
)


def surrogate_capture(path: Path) -> str:
    bearer = b"Authorization: Bearer " + unsigned_jwt(SURROGATE_CLAIMS) + b"\r\n"
    form = b"grant_type=client_credentials&client_id=app"
    answer = rb'{"error":"invalid_client\udbff","error_description":"bad \udc80 secret"}'
    return write_capture(
        path,
        [(b"GET /a HTTP/1.1\r\nHost: web.test\r\n" + bearer + b"\r\n", OK)],
        [
            (
                b"POST /oauth2/token HTTP/1.1\r\nHost: login.test\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: " + str(len(form)).encode() + b"\r\n\r\n" + form,
                b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(answer)).encode() + b"\r\n\r\n" + answer,
            )
        ],
    )


def test_lone_surrogates_become_replacement_characters(tmp_path: Path) -> None:
    result = analyze_paths([surrogate_capture(tmp_path / "surrogate.pcap")])
    bearer, token_call = result.events
    assert bearer.token_iss == "issuer\ufffdx"
    assert bearer.token_subject == "eve\ufffd@contoso.com"
    assert token_call.oauth_error == "invalid_client\ufffd"
    (token,) = result.tokens
    assert token.claims is not None
    assert token.claims["\ufffdkey"] == ["\U0001f600", "\ufffd"]  # a real pair stays whole


def test_lone_surrogates_reach_every_writer(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """capsys encodes to UTF-8 strictly, as a real terminal or pipe does."""
    path = surrogate_capture(tmp_path / "surrogate.pcap")
    outputs = {}
    for name, extra in {
        "table": [],
        "jsonl": ["--format", "jsonl"],
        "csv": ["--format", "csv"],
        "tokens": ["--tokens"],
        "tokens-jsonl": ["--tokens", "--format", "jsonl"],
        "tokens-csv": ["--tokens", "--format", "csv"],
        "findings": ["--findings"],
        "revealed": ["--format", "jsonl", "--reveal-secrets"],
    }.items():
        assert main(["analyze", path, *extra]) == 0, name
        outputs[name] = capsys.readouterr().out
    assert "bearer  issuer\ufffdx -> https://web.test/ [unsigned]" in outputs["table"]
    assert '"token_iss":"issuer\ufffdx"' in outputs["jsonl"]
    assert "issuer\ufffdx" in outputs["csv"] and "issuer\ufffdx" in outputs["tokens-csv"]
    assert '"\ufffdkey":["\U0001f600","\ufffd"]' in outputs["tokens-jsonl"]
    assert main(["analyze", path, "--format", "parquet", "-o", str(tmp_path / "pq")]) == 0
    report = tmp_path / "r.html"
    assert main(["report", path, "-o", str(report)]) == 0
    assert "issuer\ufffdx" in report.read_text(encoding="utf-8")
    assert main(["verify", path, "--json"]) == 0
    assert main(["verify", path]) == 0
    capsys.readouterr()
    assert main(["decode", unsigned_jwt(SURROGATE_CLAIMS).decode(), "--at", "1772442000"]) == 0
    assert "eve\ufffd@contoso.com" in capsys.readouterr().out


def test_lone_surrogates_in_the_rich_summary(tmp_path: Path) -> None:
    from analyzer.report.terminal import write_rich

    result = analyze_paths([surrogate_capture(tmp_path / "surrogate.pcap")])
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8", newline="")
    write_rich(result.events, result.captures, result.verdicts, result.findings, out)
    out.flush()
    assert "issuer\ufffdx" in raw.getvalue().decode("utf-8")
