"""Fiddler session archives (``.saz``): the same traffic gives the same events as its capture, and
what real archives hold (BOMs, local times, growing session numbers, tunnels, compressed bodies)
is read as Fiddler meant it."""

from __future__ import annotations

import gzip
import json
import sys
import zlib
from pathlib import Path

import pytest
from archive_kit import (
    BUNDLED,
    CAPTURES,
    HYBRID,
    SAZ_ONLY,
    analysis,
    events,
    make_saz,
    meta,
    verify_results,
    write_saz,
)

from analyzer.model import to_dict

SCENARIOS = sorted(p.stem for p in HYBRID.glob("*.pcap"))
T_LOCAL = "2026-03-02T16:00:01.1234567+01:00"  # 15:00:01.1234567 UTC
T_UTC = 1772463601.1234567


@pytest.mark.parametrize("name", BUNDLED)
def test_same_events_as_the_capture(name: str, tmp_path: Path) -> None:
    pcap = CAPTURES / name
    saz = write_saz(pcap, tmp_path / "trace.saz")
    wire, archived = analysis(pcap), analysis(saz)
    assert events(archived, SAZ_ONLY) == events(wire, SAZ_ONLY)
    assert {e.source for e in archived.events} == {"saz"}
    assert [to_dict(v) for v in archived.verdicts] == [to_dict(v) for v in wire.verdicts]
    # TLS certificate findings rest on handshakes, which an archive does not hold
    assert [(f.rule_id, f.event_ids) for f in archived.findings] == [
        (f.rule_id, f.event_ids) for f in wire.findings if not f.rule_id.startswith("tls-")
    ]
    assert [to_dict(t) for t in archived.tokens] == [to_dict(t) for t in wire.tokens]


@pytest.mark.parametrize("name", SCENARIOS)
def test_verify_answers_as_on_the_capture(name: str, tmp_path: Path) -> None:
    pcap = HYBRID / f"{name}.pcap"
    saz = write_saz(pcap, tmp_path / f"{name}.saz")
    for extra in ((), ("--partial",)):
        assert verify_results(saz, *extra) == verify_results(pcap, *extra), (name, extra)


def test_an_undecrypted_tunnel_is_not_inspected(tmp_path: Path) -> None:
    saz = write_saz(HYBRID / "tls-blind.pcap", tmp_path / "blind.saz")
    tunnels = [n for n in analysis(saz).not_inspected if n.kind == "connect-tunnel"]
    assert len(tunnels) == 3
    assert {(n.host, n.server_ip, n.server_port, n.client_ip) for n in tunnels} == {
        ("mail.contoso.com", "10.1.0.10", 443, "10.1.0.20")
    }


def test_committed_archives_are_what_the_generator_writes(tmp_path: Path) -> None:
    from archive_kit import generator

    written = generator().archives.write_archives(tmp_path)
    for path in written:
        assert (CAPTURES / "archives" / path.name).read_bytes() == path.read_bytes(), path.name
    again = generator().archives.write_archives(tmp_path / "again")
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in written]


# -- what real archives hold ----------------------------------------------------------------------
BEARER_GET = b"GET https://mail.contoso.com/EWS/Exchange.asmx HTTP/1.1\r\n"
BEARER_GET += b"Host: mail.contoso.com\r\nAuthorization: Bearer \r\n\r\n"
CHALLENGE = (
    b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer client_id="00000002-0000-0ff1-'
    b'ce00-000000000000", trusted_issuers="00000001-0000-0000-c000-000000000000@*"\r\n'
    b"Content-Length: 0\r\n\r\n"
)


def test_fiddler_conventions(tmp_path: Path) -> None:
    """BOM, local time with 7 digits and an offset, absolute URI, a bare Bearer, mixed storage."""
    saz = make_saz(
        tmp_path / "t.saz",
        {
            "raw/1_c.txt": BEARER_GET,
            "raw/1_s.txt": CHALLENGE,
            "raw/1_m.xml": meta(
                T_LOCAL,
                "2026-03-02T16:00:01.223456+01:00",
                x_clientip="::ffff:10.1.0.20",
                x_clientport="50111",
                x_hostip="10.1.0.10",
            ),
            "_index.htm": b"<html></html>",
        },
        deflated=frozenset({"raw/1_s.txt", "raw/1_m.xml"}),
    )
    result = analysis(saz)
    (e,) = result.events
    assert e.ts == T_UTC
    assert e.response_ts == 1772463601.223456
    assert (e.client_ip, e.client_port, e.server_ip, e.server_port) == (
        "10.1.0.20",
        50111,
        "10.1.0.10",
        443,
    )
    assert (e.uri, e.host, e.transport, e.source, e.protocol) == (
        "/EWS/Exchange.asmx",
        "mail.contoso.com",
        "tls",
        "saz",
        "http/1.1",
    )
    assert (e.scheme, e.cred_fp, e.token_format) == ("bearer", "e3b0c44298fc", "empty")
    assert e.challenges[0].scheme == "bearer"
    assert result.captures[0].file_format == "saz"
    assert result.captures[0].exchanges == 1
    assert result.captures[0].warnings == []


def test_session_numbers_of_growing_width_are_read_in_number_order(tmp_path: Path) -> None:
    entries = {}
    for n in (1, 2, 10, 11):  # stored as 1, 2, 10, 11: "10" sorts before "2" as text
        request = f"GET http://web.test/{n} HTTP/1.1\r\nHost: web.test\r\n\r\n".encode()
        entries[f"raw/{n}_c.txt"] = request
        entries[f"raw/{n}_s.txt"] = b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: NTLM\r\n\r\n"
    entries["raw/001_c.txt"] = b"GET http://web.test/dup HTTP/1.1\r\nHost: web.test\r\n\r\n"
    result = analysis(make_saz(tmp_path / "w.saz", entries))
    assert [e.uri for e in result.events] == ["/1", "/2", "/10", "/11"]
    times = [e.ts for e in result.events]
    assert times == sorted(times) and len(set(times)) == 4
    warnings = " ".join(result.captures[0].warnings)
    assert "two entries for one session part" in warnings
    assert "without timers (no raw/NN_m.xml): their times are unknown" in warnings


def test_times_with_six_digits_and_no_offset(tmp_path: Path) -> None:
    entries = {
        "raw/1_c.txt": b"GET http://web.test/a HTTP/1.1\r\nHost: web.test\r\n\r\n",
        "raw/1_s.txt": b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic\r\n\r\n",
        "raw/1_m.xml": meta("2026-03-02T15:00:01.123456"),
    }
    result = analysis(make_saz(tmp_path / "t.saz", entries))
    assert result.events[0].ts == 1772463601.123456
    assert any("without a UTC offset, taken as UTC" in w for w in result.captures[0].warnings)


def test_websocket_logs_are_left_out_and_said_so(tmp_path: Path) -> None:
    entries = {
        "raw/1_c.txt": b"GET http://web.test/ws HTTP/1.1\r\nHost: web.test\r\n"
        b"Authorization: Basic dTpw\r\nUpgrade: websocket\r\n\r\n",
        "raw/1_s.txt": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
        "raw/1_m.xml": meta(T_LOCAL),
        "raw/1_w.txt": b"\x81\x05hello",
    }
    result = analysis(make_saz(tmp_path / "ws.saz", entries))
    assert [e.scheme for e in result.events] == ["basic"]
    assert any("1 WebSocket message logs" in w for w in result.captures[0].warnings)


def test_tunnels_with_and_without_decrypted_sessions(tmp_path: Path) -> None:
    connect = b"CONNECT mail.contoso.com:443 HTTP/1.1\r\nHost: mail.contoso.com:443\r\n\r\n"
    established = b"HTTP/1.1 200 Connection Established\r\n\r\n"
    flags = {"x_clientip": "10.1.0.20", "x_hostip": "10.1.0.10"}
    entries = {
        # decrypted: a session on the tunnel's client connection
        "raw/1_c.txt": connect,
        "raw/1_s.txt": established,
        "raw/1_m.xml": meta(T_LOCAL, x_clientport="50001", **flags),
        "raw/2_c.txt": BEARER_GET,
        "raw/2_s.txt": CHALLENGE,
        "raw/2_m.xml": meta(T_LOCAL, x_clientport="50001", **flags),
        # never decrypted
        "raw/3_c.txt": connect,
        "raw/3_s.txt": established,
        "raw/3_m.xml": meta(T_LOCAL, x_clientport="50002", **flags),
    }
    result = analysis(make_saz(tmp_path / "t.saz", entries))
    (blind,) = result.not_inspected
    assert (blind.kind, blind.client_port, blind.host, blind.server_port) == (
        "connect-tunnel",
        50002,
        "mail.contoso.com",
        443,
    )
    assert len(result.events) == 1  # the CONNECTs carry no credential


def test_sessions_on_one_client_connection_share_its_id(tmp_path: Path) -> None:
    """The legs of an NTLM handshake pair up by x-clientport, not by session."""
    type1 = b"TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAKAGFKAAAADw=="
    entries = {}
    for n, port in ((1, "50001"), (2, "50001"), (3, "50002")):
        entries[f"raw/{n}_c.txt"] = (
            b"GET http://web.test/a HTTP/1.1\r\nHost: web.test\r\nAuthorization: NTLM "
            + type1
            + b"\r\n\r\n"
        )
        entries[f"raw/{n}_s.txt"] = b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: NTLM\r\n\r\n"
        entries[f"raw/{n}_m.xml"] = meta(
            f"2026-03-02T16:00:0{n}.0000000+01:00", x_clientport=port, x_clientip="10.0.0.5"
        )
    ids = [e.conn_id for e in analysis(make_saz(tmp_path / "n.saz", entries)).events]
    assert ids[0] == ids[1] != ids[2]


def token_response() -> bytes:
    return json.dumps(
        {"token_type": "Bearer", "expires_in": "3599", "access_token": "abc.def"}
    ).encode()


TOKEN_REQUEST = (
    b"POST https://login.contoso.test/tenant/oauth2/token HTTP/1.1\r\nHost: login.contoso.test\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 40\r\n\r\n"
    b"grant_type=client_credentials&client_id=a"
)


def _token_saz(tmp_path: Path, coding: bytes, body: bytes, chunked: bool = False) -> Path:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    if coding:
        head += b"Content-Encoding: " + coding + b"\r\n"
    if chunked:
        head += b"Transfer-Encoding: chunked\r\n"
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    return make_saz(
        tmp_path / "token.saz",
        {
            "raw/1_c.txt": TOKEN_REQUEST,
            "raw/1_s.txt": head + b"\r\n" + body,
            "raw/1_m.xml": meta(T_LOCAL),
        },
    )


@pytest.mark.parametrize(
    ("coding", "encode", "chunked"),
    [
        (b"", lambda b: b, True),
        (b"gzip", gzip.compress, False),
        (b"gzip", gzip.compress, True),
        (b"deflate", zlib.compress, False),
    ],
)
def test_bodies_fiddler_stored_compressed_or_chunked(
    tmp_path: Path, coding: bytes, encode, chunked: bool
) -> None:
    saz = _token_saz(tmp_path, coding, encode(token_response()), chunked)
    (e,) = analysis(saz).events
    assert (e.grant_type, e.token_type, e.expires_in) == ("client_credentials", "Bearer", "3599")
    assert e.access_token_fp is not None


def test_brotli_bodies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    brotli = pytest.importorskip("brotli")
    saz = _token_saz(tmp_path, b"br", brotli.compress(token_response()))
    (e,) = analysis(saz).events
    assert e.access_token_fp is not None
    monkeypatch.setitem(sys.modules, "brotli", None)  # as if it were not installed
    result = analysis(saz)
    assert result.events[0].access_token_fp is None
    assert any("install the brotli package" in w for w in result.captures[0].warnings)


def test_a_request_cut_short_is_lost_not_guessed(tmp_path: Path) -> None:
    cut = b"GET http://mail.contoso.com/EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\n"
    cut += b"Authorization: Bearer eyJ0eXAiOiJKV1QiLCJhbGci"
    entries = {"raw/1_c.txt": cut, "raw/1_m.xml": meta(T_LOCAL, x_hostip="10.1.0.10")}
    result = analysis(make_saz(tmp_path / "cut.saz", entries))
    assert result.events == []
    (lost,) = result.not_inspected
    assert (lost.kind, lost.host, lost.server_ip) == (
        "request-lost",
        "mail.contoso.com",
        "10.1.0.10",
    )


def test_a_response_body_is_kept_only_as_the_wire_path_keeps_it(tmp_path: Path) -> None:
    """An EWS SOAP body is not kept (the policies decide), a metadata document is."""
    document = json.dumps({"issuer": "00000004@contoso.com", "keys": []}).encode()
    entries = {
        "raw/1_c.txt": b"GET http://sfb.test/metadata/json/1 HTTP/1.1\r\nHost: sfb.test\r\n\r\n",
        "raw/1_s.txt": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + document,
        "raw/1_m.xml": meta(T_LOCAL),
    }
    result = analysis(make_saz(tmp_path / "m.saz", entries))
    assert result.events[0].document == document.decode()


def test_blind_spot_lines_say_how_to_see_inside(tmp_path: Path) -> None:
    from analyzer.analysis.coverage import blind_spot_lines

    saz = write_saz(HYBRID / "tls-blind.pcap", tmp_path / "blind.saz")
    tunnels = analysis(saz).not_inspected
    assert blind_spot_lines(tunnels) == [
        "3 CONNECT tunnels to mail.contoso.com:443 (10.1.0.10) not decrypted by Fiddler: turn on "
        "Tools > Options > HTTPS > Decrypt HTTPS traffic (the client must trust Fiddler's root "
        "certificate) and capture again"
    ]
    assert blind_spot_lines(tunnels[:1])[0].startswith("1 CONNECT tunnel to mail.contoso.com")


def test_a_session_known_only_by_its_answer_is_a_request_lost(tmp_path: Path) -> None:
    # no request file, no metadata: it may have been any request - a blind spot everywhere
    saz = make_saz(
        tmp_path / "orphan.saz",
        {
            "raw/1_c.txt": b"GET http://mail.contoso.com/EWS/ HTTP/1.1\r\nHost: mail.contoso.com"
            b"\r\nAuthorization: Bearer x\r\n\r\n",
            "raw/1_s.txt": b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            "raw/2_s.txt": b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        },
    )
    result = analysis(saz)
    assert [(n.kind, n.server_ip, n.server_port) for n in result.not_inspected] == [
        ("request-lost", "", 0)
    ]


@pytest.mark.parametrize("port", ["", "50001"])
@pytest.mark.parametrize("decrypted_after", [1, 3])
def test_one_decrypted_session_vouches_for_one_tunnel_only(
    tmp_path: Path, port: str, decrypted_after: int
) -> None:
    # two tunnels to one target (without client ports, or one client port reused an hour
    # later); one decrypted session came through one of them - the one it follows - so the
    # other is not inspected
    connect = b"CONNECT mail.contoso.com:443 HTTP/1.1\r\nHost: mail.contoso.com:443\r\n\r\n"
    established = b"HTTP/1.1 200 Connection Established\r\n\r\n"
    flags = {"x_clientip": "10.1.0.20", "x_hostip": "10.1.0.10"}
    if port:
        flags["x_clientport"] = port
    later = "2026-03-02T17:00:01.1234567+01:00"  # an hour after T_LOCAL
    times = {1: T_LOCAL, 3: later}
    entries = {
        "raw/1_c.txt": connect,
        "raw/1_s.txt": established,
        "raw/1_m.xml": meta(T_LOCAL, **flags),
        "raw/2_c.txt": BEARER_GET,
        "raw/2_s.txt": CHALLENGE,
        "raw/2_m.xml": meta(times[decrypted_after], **flags),
        "raw/3_c.txt": connect,
        "raw/3_s.txt": established,
        "raw/3_m.xml": meta(later, **flags),
    }
    result = analysis(make_saz(tmp_path / "t.saz", entries))
    (blind,) = result.not_inspected
    undecrypted = 3 if decrypted_after == 1 else 1
    assert (blind.kind, blind.ts) == ("connect-tunnel", T_UTC + (3600 if undecrypted == 3 else 0))


def test_tunnels_opened_together_need_a_decrypted_session_each(tmp_path: Path) -> None:
    connect = b"CONNECT mail.contoso.com:443 HTTP/1.1\r\nHost: mail.contoso.com:443\r\n\r\n"
    established = b"HTTP/1.1 200 Connection Established\r\n\r\n"
    flags = {"x_clientip": "10.1.0.20", "x_hostip": "10.1.0.10"}
    entries = {}
    for n in (1, 2):
        entries[f"raw/{n}_c.txt"] = connect
        entries[f"raw/{n}_s.txt"] = established
        entries[f"raw/{n}_m.xml"] = meta(T_LOCAL, **flags)
    entries.update({"raw/3_c.txt": BEARER_GET, "raw/3_s.txt": CHALLENGE})
    entries["raw/3_m.xml"] = meta(T_LOCAL, **flags)
    result = analysis(make_saz(tmp_path / "t.saz", entries))
    assert [n.kind for n in result.not_inspected] == ["connect-tunnel"]
