"""TLS decryption through tshark: decrypted plaintext flows through our reassembly and HTTP parsing.

Captures used: Lekensteyn's public TLS test capture (6 HTTPS GETs, TLS 1.2, NSS key log), the
recorded ``captures/healthy-oauth-tls.pcapng`` (TLS 1.3, SfB -> Exchange S2S OAuth), and captures
built here from real in-memory OpenSSL sessions (``ssl.MemoryBIO``) wrapped in TCP with scapy.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap
from shared_dir import PUBLIC, needs_public
from tls_kit import MemoryTls, contexts

from analyzer.cli import main
from analyzer.engine import AnalysisResult, analyze_paths
from analyzer.flows.tcp import ConnectionInfo, TcpReassembler
from analyzer.model import CaptureStats
from analyzer.protocols.http_exchange import Exchange, HttpConnection
from analyzer.sources.pcapfile import CaptureError
from analyzer.sources.tshark import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    TSHARK_MISSING,
    FieldDecoder,
    read_decrypted,
    tshark_command,
)

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "captures"
KEYS = CAPTURES / "keys"
LEK = PUBLIC / "lek__tls-works-dump.pcapng"
LEK_KEYS = PUBLIC / "lek__tls-works-premaster.txt"
HEALTHY = CAPTURES / "healthy-oauth-tls.pcapng"
HEALTHY_KEYS = CAPTURES / "healthy-oauth-tls.keys"
LO = b"\x7f\x00\x00\x01"

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
needs_lek = needs_public(LEK.name, LEK_KEYS.name)


# -- helpers ---------------------------------------------------------------------------------
def http_exchanges(packets: list[tuple]) -> tuple[list[Exchange], CaptureStats]:
    """Every HTTP exchange (auth or not) our reassembler and parser find in ``packets``."""
    found: list[Exchange] = []
    stats = CaptureStats()

    def factory(info: ConnectionInfo) -> HttpConnection:
        return HttpConnection(info, found.append, lambda m: 0, lambda q, m: 0)

    reassembler = TcpReassembler(factory, stats)
    reassembler.run(packets)
    reassembler.flush()
    return found, stats


def field_line(
    *,
    ts: str = "100.5",
    stream: str = "0",
    src: str = "10.0.0.1",
    src6: str = "",
    sport: str = "50000",
    dst: str = "10.0.0.2",
    dst6: str = "",
    dport: str = "443",
    flags: str = "0x0018",
    ctype: str = "23",
    hs: str = "",
    data: str = "",
    frame: str = "7",
) -> bytes:
    """One line of tshark's output, in ``FIELDS`` order."""
    fields = (ts, stream, src, src6, sport, dst, dst6, dport, flags, ctype, hs, data, frame)
    return ("\t".join(fields) + "\n").encode()


def memory_tls(
    requests: list[tuple[bytes, bytes]],
    *,
    tls12_rsa: bool = False,
    keylog: Path | None = None,
) -> list[tuple[int, bytes]]:
    """Run one real TLS session in memory (server: the exchange TEST key); return its flights as
    (side 0 = client / 1 = server, bytes) in sending order."""
    client, server = contexts(KEYS / "exchange.cert.pem", KEYS / "exchange.key.pem")
    if tls12_rsa:  # RSA key exchange: decryptable with the server's private key alone
        for ctx in (server, client):
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            ctx.set_ciphers("AES128-GCM-SHA256")
    if keylog is not None:
        client.keylog_filename = str(keylog)
    tls = MemoryTls(client, server, "api.contoso.com")
    for request, response in requests:
        tls.exchange(request, response)
    return tls.flights


class Flow:
    """One TCP connection written as Ethernet/IPv4 frames: handshake, data (MSS 1460), FINs."""

    def __init__(self, frames: list, client: tuple[str, int], server: tuple[str, int]) -> None:
        self.frames = frames
        self.ends = (client, server)
        self.seq = [1000, 9000]
        self.t = 1_772_442_000.0 + len(frames)

    def _send(self, side: int, flags: str, data: bytes = b"") -> None:
        (sip, sport), (dip, dport) = self.ends[side], self.ends[1 - side]
        frame = (
            Ether()
            / IP(src=sip, dst=dip)
            / TCP(sport=sport, dport=dport, seq=self.seq[side], ack=self.seq[1 - side], flags=flags)
        )
        if data:
            frame = frame / data
        frame.time = self.t
        self.t += 0.001
        self.frames.append(frame)
        self.seq[side] += len(data) + (1 if "S" in flags or "F" in flags else 0)

    def open(self) -> Flow:
        self._send(0, "S")
        self._send(1, "SA")
        self._send(0, "A")
        return self

    def send(self, side: int, data: bytes) -> None:
        for at in range(0, len(data), 1460):
            self._send(side, "PA", data[at : at + 1460])

    def close(self) -> None:
        self._send(0, "FA")
        self._send(1, "FA")
        self._send(0, "A")


REQUEST = (
    b"GET /api/v1/me HTTP/1.1\r\nHost: api.contoso.com\r\n"
    b"Authorization: Bearer opaque-token-123456\r\n\r\n"
)
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
BASIC = b"GET /private HTTP/1.1\r\nHost: intranet\r\nAuthorization: Basic ZGVtbzpkZW1v\r\n\r\n"


def mixed_capture(tmp_path: Path, tls12_rsa: bool = False) -> tuple[Path, Path]:
    """A capture with a cleartext Basic exchange and an HTTPS Bearer exchange; (pcap, key log)."""
    keylog = tmp_path / "session.keys"
    frames: list = []
    plain = Flow(frames, ("10.0.0.5", 41000), ("10.0.0.80", 80)).open()
    plain.send(0, BASIC)
    plain.send(1, RESPONSE)
    plain.close()
    tls = Flow(frames, ("10.0.0.6", 42000), ("10.0.0.43", 443)).open()
    for side, data in memory_tls([(REQUEST, RESPONSE)], tls12_rsa=tls12_rsa, keylog=keylog):
        tls.send(side, data)
    tls.close()
    path = tmp_path / "mixed.pcap"
    wrpcap(str(path), frames)
    return path, keylog


# -- the tshark field decoder (no tshark needed) ---------------------------------------------
def test_decoder_opens_at_the_client_hello_even_when_the_server_speaks_first() -> None:
    d = FieldDecoder()
    hello = field_line(ts="100.25", ctype="22", hs="1")
    assert d.line(hello) == []
    banner = field_line(
        ts="100.75", src="10.0.0.2", sport="443", dst="10.0.0.1", dport="50000", data="6869"
    )
    c, s = b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02"
    assert d.line(banner) == [
        (100.25, 6, c, 50000, s, 443, 0, 0, SYN, b"", 7),
        (100.25, 6, s, 443, c, 50000, 0, 1, SYN | ACK, b"", 7),
        (100.75, 6, s, 443, c, 50000, 1, 1, ACK | PSH, b"hi", 7),
    ]
    reply = field_line(ts="101.0", data="6a6b,6c", frame="9")  # two records in one frame
    assert d.line(reply) == [(101.0, 6, c, 50000, s, 443, 1, 3, ACK | PSH, b"jkl", 9)]
    fin = field_line(ts="102.0", flags="0x0011", ctype="", data="")
    assert d.line(fin) == [(102.0, 6, c, 50000, s, 443, 4, 3, ACK | PSH | FIN, b"", 7)]
    rst = field_line(
        ts="103.0",
        src="10.0.0.2",
        sport="443",
        dst="10.0.0.1",
        dport="50000",
        flags="0x0004",
        ctype="",
    )
    assert d.line(rst) == [(103.0, 6, s, 443, c, 50000, 3, 4, ACK | PSH | RST, b"", 7)]
    assert (d.seen, d.decrypted, d.bad_lines) == (1, 1, 0)


def test_decoder_without_client_hello_takes_the_first_speaker_as_client_and_reads_ipv6() -> None:
    d = FieldDecoder()
    preface = b"PRI * HTTP/2.0".hex()
    out = d.line(field_line(src="", src6="2001:db8::1", dst="", dst6="2001:db8::2", data=preface))
    c = bytes.fromhex("20010db8000000000000000000000001")
    assert [p[2] for p in out] == [c, bytes.fromhex("20010db8000000000000000000000002"), c]
    assert out[2][9] == b"PRI * HTTP/2.0"


def test_decoder_ignores_what_is_not_tls_and_counts_broken_lines() -> None:
    d = FieldDecoder()
    assert d.line(field_line(ctype="", data="4745540a")) == []  # data.data of a non-TLS frame
    assert d.line(field_line(stream="7", flags="0x0011", ctype="")) == []  # FIN, never TLS
    assert d.line(field_line(ctype="22", hs="1")) == []  # ClientHello: known, nothing to say
    assert d.line(b"1.0\t0\n") == []
    assert d.line(field_line(data="zz")) == []
    assert d.line(field_line(flags="0x0011", ctype="")) == []  # FIN before any plaintext
    assert (d.seen, d.decrypted, d.bad_lines) == (1, 0, 2)


def test_command_line_uses_the_key_log_or_the_rsa_key(tmp_path: Path) -> None:
    keylog = tmp_path / "keys.txt"
    keylog.write_text("CLIENT_RANDOM 00 00\n")
    cmd = tshark_command("in.pcap", str(keylog), "/usr/bin/tshark")
    assert cmd[:5] == ["/usr/bin/tshark", "-r", "in.pcap", "-n", "-Q"]
    assert f"tls.keylog_file:{keylog}" in cmd
    assert cmd[cmd.index("http") - 1 : cmd.index("http") + 1] == ["--disable-protocol", "http"]
    assert cmd[cmd.index("-Y") + 1] == (
        "tls or tcp.flags.fin == 1 or tcp.flags.reset == 1 or tcp.analysis.ack_lost_segment"
    )
    rsa = tshark_command("in.pcap", str(KEYS / "exchange.key.pem"))
    assert f'uat:rsa_keys:"{KEYS / "exchange.key.pem"}",""' in rsa
    assert not any(a.startswith("tls.keylog_file:") for a in rsa)


def test_missing_tshark_is_a_one_line_error(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a folder without tshark
    with pytest.raises(CaptureError) as err:
        read_decrypted(str(HEALTHY), str(HEALTHY_KEYS), CaptureStats())
    assert str(err.value) == TSHARK_MISSING
    assert main(["analyze", str(HEALTHY), "--tls-keylog", str(HEALTHY_KEYS)]) == 2
    assert capsys.readouterr().err == f"oauth-analyzer: error: {TSHARK_MISSING}\n"


@needs_tshark
def test_missing_key_file_is_a_capture_error(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match=r"nope\.keys: no such TLS key file$"):
        read_decrypted(str(HEALTHY), str(tmp_path / "nope.keys"), CaptureStats())


# -- Lekensteyn's public capture: 6 HTTPS GETs, TLS 1.2 --------------------------------------
@needs_tshark
@needs_lek
def test_lek_decrypts_six_get_exchanges_with_synthetic_tcp() -> None:
    stats = CaptureStats()
    packets = list(read_decrypted(str(LEK), str(LEK_KEYS), stats))
    assert stats.warnings == []
    assert stats.packets == 0  # counting packets is read_packets' job
    # frame numbers are tshark's: the SYNs are made at the first plaintext (frame 10)
    assert packets[0] == (1379190381.992903, 6, LO, 40347, LO, 4434, 0, 0, SYN, b"", 10)
    assert packets[1] == (1379190381.992903, 6, LO, 4434, LO, 40347, 0, 1, SYN | ACK, b"", 10)
    request = b"GET / HTTP/1.1\r\nHost: exp-rc4-md5.local.al.lekensteyn.nl:4434\r\n\r\n"
    assert packets[2] == (1379190381.998033, 6, LO, 40347, LO, 4434, 1, 1, ACK | PSH, request, 10)
    assert packets[3][10] == 11
    assert packets[3][:9] == (1379190381.998157, 6, LO, 4434, LO, 40347, 1, 66, ACK | PSH)
    assert packets[3][9].startswith(b"HTTP/1.1 200 OK\r\nServer: nginx/1.4.2\r\n")
    response_len = len(packets[3][9])
    assert packets[4] == (
        1379190381.998242,
        6,
        LO,
        4434,
        LO,
        40347,
        1 + response_len,
        66,
        ACK | PSH | FIN,
        b"",
        12,
    )
    exchanges, rstats = http_exchanges(packets)
    assert [(x.request.method, x.request.uri, x.response.status) for x in exchanges] == [
        ("GET", "/", 200)
    ] * 6
    assert [x.server_port for x in exchanges] == [4434, 4435, 4436, 4479, 4483, 4491]
    assert (rstats.tcp_connections, rstats.gaps) == (6, 0)


@needs_tshark
@needs_lek
def test_lek_connection_counts_with_and_without_the_key_log() -> None:
    clear = analyze_paths([str(LEK)]).captures[0]
    assert (clear.tcp_connections, clear.http_connections, clear.tls_connections) == (6, 0, 6)
    result = analyze_paths([str(LEK)], tls_keylog=str(LEK_KEYS))
    stats = result.captures[0]
    assert (stats.tcp_connections, stats.http_connections, stats.tls_connections) == (6, 6, 0)
    assert (stats.packets, result.events, stats.warnings) == (90, [], [])


@needs_tshark
@needs_lek
def test_a_wrong_key_log_decrypts_nothing_and_says_so() -> None:
    stats = CaptureStats()
    assert list(read_decrypted(str(LEK), str(HEALTHY_KEYS), stats)) == []
    assert stats.warnings == [
        "TLS: none of the 6 TLS connection(s) could be decrypted with healthy-oauth-tls.keys "
        "(wrong or incomplete key log, or a key for another server?)"
    ]
    result = analyze_paths([str(LEK)], tls_keylog=str(HEALTHY_KEYS))
    assert result.captures[0].tls_connections == 6  # still counted as unreadable


@needs_tshark
@needs_lek
def test_a_cut_capture_decrypts_what_is_there_and_reports_tshark_failing(tmp_path: Path) -> None:
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(LEK.read_bytes()[:15000])
    stats = analyze_paths([str(cut)], tls_keylog=str(LEK_KEYS)).captures[0]
    assert (stats.tcp_connections, stats.http_connections, stats.tls_connections) == (4, 4, 0)
    assert stats.warnings[0] == (
        f'tshark failed on this file (exit 2): tshark: The file "{cut}" appears to have been cut '
        "short in the middle of a packet."
    )


# -- the recorded capture: SfB -> Exchange S2S OAuth over TLS 1.3 ----------------------------
@pytest.fixture(scope="module")
def healthy() -> AnalysisResult:
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed")
    return analyze_paths([str(HEALTHY)], tls_keylog=str(HEALTHY_KEYS))


COMPARED = (
    "client_ip",
    "client_port",
    "server_ip",
    "server_port",
    "protocol",
    "method",
    "host",
    "uri",
    "status",
    "scheme",
    "scheme_name",
    "cred_fp",
    "ms_diagnostics",
    "user_agent",
)


def test_healthy_tls_events_equal_the_expected_file(healthy: AnalysisResult) -> None:
    expected = json.loads((CAPTURES / "healthy-oauth-tls.expected.json").read_text())["events"]
    assert len(healthy.events) == len(expected) == 8
    for event, want in zip(healthy.events, expected, strict=True):
        assert {k: getattr(event, k) for k in COMPARED} == {k: want[k] for k in COMPARED}
        sent = [{k: v for k, v in c.to_dict().items() if k != "details"} for c in event.challenges]
        assert sent == want["challenges"]  # as sent (the decoded view is not in the file)
        assert abs(event.ts - want["ts"]) < 0.05  # expected ts is the client's clock
        assert event.transport == "tls"
    stats = healthy.captures[0]
    assert (stats.tcp_connections, stats.http_connections, stats.tls_connections) == (3, 3, 0)
    assert stats.warnings == []


def test_healthy_tls_tokens_verify_against_the_captured_metadata(healthy: AnalysisResult) -> None:
    bearer = [e for e in healthy.events if e.scheme == "bearer" and e.cred_len]
    assert len(bearer) == 5
    assert {e.token_signature for e in bearer} == {"verified"}
    assert {e.token_actor_iss for e in bearer} == {
        "00000004-0000-0ff1-ce00-000000000000@contoso.com"
    }
    assert [e.status for e in healthy.events] == [200, 200, 401, 200, 200, 200, 200, 200]
    assert not [f.rule_id for f in healthy.findings if f.rule_id.startswith("cleartext-")]


VERIFY = [
    "--client",
    "127.0.0.1",
    "--server",
    "mail.contoso.com",
    "--issuer",
    "skype",
    "--realm",
    "contoso.com",
    "--require-signature",
]


@needs_tshark
def test_verify_passes_with_the_key_log_and_is_inconclusive_without(capsys) -> None:
    assert main(["verify", str(HEALTHY), "--tls-keylog", str(HEALTHY_KEYS), *VERIFY]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "PASS"
    assert "all 5 authenticated exchanges used OAuth as required" in out
    assert main(["verify", str(HEALTHY), *VERIFY]) == 2
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "INCONCLUSIVE"
    # the TLS connections name mail.contoso.com (SNI): in scope, and not inspected; so is the
    # one naming another server on the same address (any name there reaches the same site)
    assert "3 connections in scope could not be read" in out
    assert "2 TLS connections to mail.contoso.com:8443 (127.0.0.1) not inspected" in out
    assert "1 TLS connection to sfbpool01.contoso.com:8444 (127.0.0.1) not inspected" in out


def test_without_the_key_log_nothing_is_readable() -> None:
    result = analyze_paths([str(HEALTHY)])
    stats = result.captures[0]
    assert (result.events, stats.tls_connections, stats.http_connections) == ([], 3, 0)


# -- captures built here: cleartext and TLS side by side; RSA key exchange -------------------
@needs_tshark
def test_cleartext_and_decrypted_connections_are_both_analysed_once(tmp_path: Path) -> None:
    path, keylog = mixed_capture(tmp_path)
    result = analyze_paths([str(path)], tls_keylog=str(keylog))
    got = [(e.client_port, e.scheme, e.transport, e.uri, e.status) for e in result.events]
    assert got == [
        (41000, "basic", "tcp", "/private", 200),
        (42000, "bearer", "tls", "/api/v1/me", 200),
    ]
    stats = result.captures[0]
    assert (stats.tcp_connections, stats.http_connections, stats.tls_connections) == (2, 2, 0)
    rules = sorted(f.rule_id for f in result.findings if f.rule_id.startswith("cleartext-"))
    assert rules == ["cleartext-basic"]
    clear = analyze_paths([str(path)])
    assert [(e.scheme, e.transport) for e in clear.events] == [("basic", "tcp")]
    assert clear.captures[0].tls_connections == 1


@needs_tshark
def test_rsa_private_key_decrypts_rsa_key_exchange(tmp_path: Path) -> None:
    path, _ = mixed_capture(tmp_path, tls12_rsa=True)
    stats = CaptureStats()
    packets = list(read_decrypted(str(path), str(KEYS / "exchange.key.pem"), stats))
    assert stats.warnings == []
    assert [p[9] for p in packets if p[9]] == [REQUEST, RESPONSE]
    assert [(p[3], p[5], p[6], p[8]) for p in packets] == [
        (42000, 443, 0, SYN),
        (443, 42000, 0, SYN | ACK),
        (42000, 443, 1, ACK | PSH),
        (443, 42000, 1, ACK | PSH),
        (42000, 443, 1 + len(REQUEST), ACK | PSH | FIN),
        (443, 42000, 1 + len(RESPONSE), ACK | PSH | FIN),
    ]


def test_tshark_failing_after_closing_its_output_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tshark may close stdout a moment before it exits with an error: that is a failure to
    report, not a consumer that stopped early (the process is waited for, not killed)."""
    fake = tmp_path / "bin" / "tshark"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nexec 1>&-\nsleep 0.3\necho "tshark: it broke" >&2\nexit 2\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    stats = CaptureStats()
    keylog = tmp_path / "keys.txt"
    keylog.write_text("")
    capture = Path(__file__).resolve().parents[1] / "captures" / "small-basic.pcap"
    assert list(read_decrypted(str(capture), str(keylog), stats)) == []
    assert stats.warnings == ["tshark failed on this file (exit 2): tshark: it broke"]
