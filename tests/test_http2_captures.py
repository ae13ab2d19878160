"""HTTP/2 as captured on the wire: real loopback recordings (``tests/record_http2.py``: curl
and python-hyper's ``h2`` on both ends, cleartext with prior knowledge, ``Upgrade: h2c``, TLS
with a key log), the same read by tshark where tshark reads it, a capture begun mid-connection,
and generated captures through the native walk and the pure-Python reader alike."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import h2.config
import h2.connection
import pytest
from h2_kit import request, response
from wire_kit import T0, conversation, write_packets

from analyzer.auth.schemes import fingerprint
from analyzer.cli import main
from analyzer.engine import Engine, analyze_paths
from analyzer.flows.tcp import PURE_PYTHON_ENV
from analyzer.model import Event

DATA = Path(__file__).resolve().parent / "data" / "http2"
PRIOR, UPGRADE, NTLM, TLS = (
    DATA / "prior-knowledge.pcapng",
    DATA / "h2c-upgrade.pcapng",
    DATA / "ntlm.pcapng",
    DATA / "tls.pcapng",
)
KEYS = DATA / "tls.keys"
CURL_HOST = "127.0.0.1:18080"
TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed")


def rows(events: list[Event]) -> list[tuple]:
    return [
        (e.stream_id, e.method, e.host, e.uri, e.status, e.scheme, e.mechanism, e.user)
        for e in events
    ]


def test_prior_knowledge() -> None:
    result = analyze_paths([str(PRIOR)])
    assert rows(result.events) == [
        # curl: a 20 KB Bearer JWT, HEADERS + CONTINUATION across 14 TCP segments
        (1, "GET", CURL_HOST, "/api/me", 200, "bearer", None, None),
        # the h2 client, one connection
        (1, "GET", "mail.contoso.com", "/api/me", 401, "none", None, None),
        (3, "GET", "mail.contoso.com", "/basic", 200, "basic", None, "alice"),
        (5, "POST", "mail.contoso.com", "/oauth2/v2.0/token", 200, "none", None, None),
        (
            7,
            "GET",
            "mail.contoso.com",
            "/.well-known/openid-configuration",
            200,
            "none",
            None,
            None,
        ),
        (9, "GET", "mail.contoso.com", "/reset", None, "bearer", None, None),  # RST_STREAM
    ]
    big, probe, _, token, meta, reset = result.events
    assert {e.protocol for e in result.events} == {"http/2"}
    assert big.cred_len > 20_000 and big.token_iss and big.token_format == "jwt"
    assert probe.challenges[0].scheme == "bearer" and probe.reasons == ("challenge", "denied")
    assert token.grant_type == "client_credentials" and token.token_type == "Bearer"
    assert token.access_token_fp and token.client_id == "d3590ed6-52b3-4102-aeff-aad2292ab01c"
    assert meta.reasons == ("metadata",) and reset.outcome == "incomplete"
    assert result.not_inspected == [] and result.captures[0].warnings == []
    assert result.captures[0].http_connections == 2


def test_h2c_upgrade() -> None:
    result = analyze_paths([str(UPGRADE)])
    assert rows(result.events) == [
        (1, "GET", CURL_HOST, "/basic", 200, "basic", None, "bob"),  # the upgraded HTTP/1.1
        (3, "GET", CURL_HOST, "/api/me", 200, "bearer", None, None),
    ]
    assert [e.protocol for e in result.events] == ["http/2", "http/2"]
    assert [e.outcome for e in result.events] == ["accepted", "accepted"]


def test_ntlm_and_negotiate_are_found_and_paired() -> None:
    result = analyze_paths([str(NTLM)])
    assert rows(result.events) == [
        (1, "GET", "mail.contoso.com", "/ntlm", 401, "ntlm", "ntlm", None),
        (3, "GET", "mail.contoso.com", "/ntlm", 200, "ntlm", "ntlm", "alice"),
        (5, "GET", "mail.contoso.com", "/kerberos", 200, "negotiate", "kerberos", None),
    ]
    type1, type3, kerberos = result.events
    assert (type1.ntlm_type, type3.ntlm_type, type3.domain) == (1, 3, "CONTOSO")
    assert type1.handshake_id == type3.handshake_id and type3.auth_class == "ntlm"
    assert type3.outcome == "accepted" and kerberos.spn == "HTTP/mail.contoso.com"


@needs_tshark
def test_decrypted_http2_through_the_key_log() -> None:
    result = analyze_paths([str(TLS)], tls_keylog=str(KEYS))
    assert rows(result.events) == [
        (1, "GET", "127.0.0.1:18443", "/api/me", 200, "bearer", None, None),
        (3, "GET", "127.0.0.1:18443", "/basic", 200, "basic", None, "alice"),
    ]
    assert {(e.protocol, e.transport) for e in result.events} == {("http/2", "tls")}
    assert result.captures[0].warnings == []  # no "speak HTTP/2, which is not analysed"
    assert [t.inspected for t in result.tls] == [True] and result.not_inspected == []


@needs_tshark
def test_decrypted_http2_from_a_stream() -> None:
    """``analyze -`` / ``live`` with a key log: tshark decrypts alongside, HTTP/2 is read."""
    seen: list[Event] = []
    engine = Engine(on_event=seen.append)
    with TLS.open("rb") as stream:
        engine.read_stream(stream, "stdin", tls_keylog=str(KEYS))
    result = engine.finish()
    assert rows(seen) == rows(result.events)
    assert [(e.stream_id, e.scheme, e.transport) for e in seen] == [
        (1, "bearer", "tls"),
        (3, "basic", "tls"),
    ]


def tshark_headers(path: Path, *options: str) -> list[dict[str, str]]:
    """Every header block tshark decoded: name -> value (one dict per block)."""
    assert TSHARK is not None
    cmd = [TSHARK, "-r", str(path), "-n", *options, "-Y", "http2.header", "-T", "fields"]
    cmd += ["-e", "http2.header.name", "-e", "http2.header.value"]
    cmd += ["-E", "occurrence=a", "-E", "aggregator=\x1f"]
    out = subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout.decode()
    blocks = []
    for line in out.splitlines():
        names, _, values = line.partition("\t")
        pairs = list(zip(names.split("\x1f"), values.split("\x1f"), strict=True))
        # a packet may hold several blocks (split at pseudo-headers); a packet that starts
        # with a regular field holds the CONTINUATION of the previous one
        block: dict[str, str] = {} if pairs[0][0].startswith(":") or not blocks else blocks.pop()
        for name, value in pairs:
            if name in (":method", ":status") and block:
                blocks.append(block)
                block = {}
            block[name] = value
        blocks.append(block)
    return blocks


@needs_tshark
@pytest.mark.parametrize(
    ("path", "options"),
    [
        (PRIOR, ("-d", "tcp.port==18080,http2")),
        (NTLM, ("-d", "tcp.port==18080,http2")),
        (TLS, ("-o", f"tls.keylog_file:{KEYS}")),
    ],
    ids=["prior-knowledge", "ntlm", "tls"],
)
def test_tshark_reads_the_same_credentials_and_answers(path: Path, options: tuple) -> None:
    """Each credential, path and denial tshark decodes is in an event, with the same bytes."""
    keylog = str(KEYS) if path == TLS else None
    events = analyze_paths([str(path)], tls_keylog=keylog).events
    blocks = tshark_headers(path, *options)
    requests = [b for b in blocks if ":method" in b]
    assert requests, "tshark decoded no HTTP/2 request"
    theirs = sorted(
        fingerprint(b["authorization"].split(" ", 1)[1]) for b in requests if "authorization" in b
    )
    assert theirs == sorted(e.cred_fp for e in events if e.cred_fp)
    assert {b[":path"] for b in requests} >= {e.uri for e in events}
    denied = [b["www-authenticate"] for b in blocks if b.get(":status") == "401"]
    ours = [e.challenges[0] for e in events if e.status == 401]
    assert sorted(v.split(" ", 1)[0].lower() for v in denied) == sorted(c.scheme for c in ours)
    blobs = {v.split(" ", 1)[1] for v in denied if v.startswith("NTLM ")}
    assert blobs == {c.token68 for c in ours if c.scheme == "ntlm"}


@needs_tshark
def test_tshark_reads_the_same_upgrade() -> None:
    """tshark follows the h2c upgrade: the HTTP/1.1 request's Basic, HTTP/2 answers after it."""
    assert TSHARK is not None
    events = analyze_paths([str(UPGRADE)]).events
    cmd = [TSHARK, "-r", str(UPGRADE), "-n", "-d", "tcp.port==18080,http", "-Y", "http.upgrade"]
    cmd += ["-T", "fields", "-e", "http.authorization", "-e", "http.upgrade"]
    out = subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout.decode()
    request_line = next(line for line in out.splitlines() if line.startswith("Basic "))
    basic, upgrade = request_line.split("\t")
    assert upgrade == "h2c" and fingerprint(basic.split(" ", 1)[1]) == events[0].cred_fp
    statuses = [b[":status"] for b in tshark_headers(UPGRADE, "-d", "tcp.port==18080,http")]
    assert statuses == [str(e.status) for e in events]


def test_capture_begun_mid_connection_names_the_streams(tmp_path: Path) -> None:
    """The h2 client's connection cut before stream 5: its table is unknown from there on."""
    scapy = pytest.importorskip("scapy.all")
    full = analyze_paths([str(PRIOR)]).events
    token = next(e for e in full if e.stream_id == 5)
    packets = scapy.rdpcap(str(PRIOR))
    cut = [
        p
        for p in packets
        if p[scapy.TCP].sport != token.client_port and p[scapy.TCP].dport != token.client_port
    ]
    cut += [
        p
        for p in packets
        if token.client_port in (p[scapy.TCP].sport, p[scapy.TCP].dport)
        and float(p.time) >= token.ts
    ]
    cut.sort(key=lambda p: float(p.time))
    path = tmp_path / "mid.pcap"
    scapy.wrpcap(str(path), cut)
    result = analyze_paths([str(path)])
    assert rows(result.events) == rows(full[:1])  # curl's connection; nothing guessed
    (blind,) = result.not_inspected
    assert (blind.kind, blind.client_port, blind.server_port, blind.count) == (
        "http2",
        token.client_port,
        18080,
        3,
    )
    assert blind.detail == (
        "HTTP/2 stream(s) 5, 7, 9 not decoded: capture began mid-connection (HPACK table unknown)"
    )


def test_cli_jsonl_carries_protocol_and_stream(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    code = main(["analyze", str(NTLM), "--format", "jsonl", "-o", str(out), "--no-progress"])
    assert code == 0
    events = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(e["protocol"], e["stream_id"]) for e in events] == [("http/2", s) for s in (1, 3, 5)]


def big_bodies_capture(path: Path) -> str:
    """An ``h2`` conversation with 200 KB answers between Bearer requests, cut at MSS 1460."""
    cfg = h2.config.H2Configuration
    c = h2.connection.H2Connection(cfg(client_side=True))
    s = h2.connection.H2Connection(cfg(client_side=False))
    c.initiate_connection()
    s.initiate_connection()
    c.update_settings({4: 1 << 24})  # the client takes whole bodies at once
    c.increment_flow_control_window(1 << 24)
    flow = []

    def send(from_client: bool) -> None:
        out = (c if from_client else s).data_to_send()
        (s if from_client else c).receive_data(out)
        flow.append((from_client, out))

    send(True)
    send(False)
    send(True)
    for turn in range(4):
        sid = 2 * turn + 1
        auth = ("authorization", f"Bearer token-{turn}")
        c.send_headers(sid, request(f"/files/{turn}", auth), end_stream=True)
        send(True)
        s.send_headers(sid, response(200, ("content-type", "application/octet-stream")))
        for _ in range(15):
            s.send_data(sid, b"\xa5" * 16384)
        s.send_data(sid, b"", end_stream=True)
        send(False)
        send(True)
    return write_packets(path, conversation([f for f in flow if f[1]], 40001, T0))


def test_bodies_are_skipped_alike_by_the_native_walk_and_pure_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("scapy.all")
    path = big_bodies_capture(tmp_path / "big.pcap")
    native = analyze_paths([path]).events
    monkeypatch.setenv(PURE_PYTHON_ENV, "1")
    pure = analyze_paths([path]).events
    expected = [
        (2 * t + 1, "GET", "api.test", f"/files/{t}", 200, "bearer", None, None) for t in range(4)
    ]
    assert rows(native) == rows(pure) == expected
    assert [e.cred_fp for e in native] == [fingerprint(f"token-{t}") for t in range(4)]
