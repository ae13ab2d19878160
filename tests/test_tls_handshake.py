"""The TLS inventory: what a TLS connection shows in the clear (analyzer.protocols.tls) and how it
reaches the pipeline (``AnalysisResult.tls``).

Handshakes are real: in-memory OpenSSL sessions (``ssl.MemoryBIO``) with certificates made here,
wrapped in TCP with scapy; plus Lekensteyn's public TLS 1.2 capture, checked against tshark.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import shutil
import ssl
import struct
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap
from tls_kit import MemoryTls, contexts

from analyzer.engine import analyze_paths
from analyzer.flows import tcp
from analyzer.model import to_dict
from analyzer.protocols.tls import (
    MAX_BUFFERED,
    TlsHandshake,
    TlsStream,
    looks_like_record,
    parse_client_hello,
    version_name,
)

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = ROOT.parent / "shared" / "captures" / "public"
LEK = PUBLIC / "lek__tls-works-dump.pcapng"
LEK_KEYS = PUBLIC / "lek__tls-works-premaster.txt"
T0 = 1_772_442_000.0  # 2026-03-02 09:00 UTC
DAY = 86400.0

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
needs_lek = pytest.mark.skipif(not LEK.is_file(), reason="public captures not available")
needs_native = pytest.mark.skipif(tcp.GrantTable is None, reason="native walk not built")


# -- real handshakes -------------------------------------------------------------------------
def make_identity(
    tmp: Path, cn: str, not_after: float, san_names: int = 0
) -> tuple[Path, Path, bytes]:
    """A self-signed certificate and key for ``cn`` (files for OpenSSL) and its DER."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TEST KEY"),
        ]
    )
    names = [x509.DNSName(cn)] + [x509.DNSName(f"alias{i}.{cn}") for i in range(san_names)]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime.fromtimestamp(T0 - 300 * DAY, dt.UTC))
        .not_valid_after(dt.datetime.fromtimestamp(not_after, dt.UTC))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / f"{cn}.crt", tmp / f"{cn}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path, cert.public_bytes(serialization.Encoding.DER)


def handshake(
    cert: Path,
    key: Path,
    sni: str | None,
    tls12: bool,
    alpn: list[str] | None = None,
) -> list[tuple[int, bytes]]:
    """One real TLS handshake plus a little application data, run in memory; its flights as
    (0 = client / 1 = server, bytes)."""
    client, server = contexts(cert, key)
    if tls12:
        client.maximum_version = ssl.TLSVersion.TLSv1_2
    if alpn:
        client.set_alpn_protocols(alpn)
        server.set_alpn_protocols(alpn[-1:])
    tls = MemoryTls(client, server, sni)
    tls.client.write(b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret\r\n\r\n")
    tls.pump()
    tls.server.read(1 << 16)
    tls.server.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" + b"x" * 30000)
    tls.pump()
    return tls.flights


class Flow:
    """One TCP connection as Ethernet/IPv4 frames, cut into segments of ``mss`` bytes."""

    def __init__(self, client: tuple[str, int], server: tuple[str, int], t: float = T0) -> None:
        self.frames: list = []
        self.ends = (client, server)
        self.seq = [1000, 900_000]
        self.t = t

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

    def send(self, side: int, data: bytes, mss: int = 1460) -> None:
        for at in range(0, len(data), mss):
            self._send(side, "PA", data[at : at + mss])

    def close(self) -> Flow:
        self._send(0, "FA")
        self._send(1, "FA")
        self._send(0, "A")
        return self


def write(tmp: Path, frames: list, name: str = "tls.pcap") -> Path:
    path = tmp / name
    wrpcap(str(path), frames)
    return path


def tls_of(path: Path, **kwargs) -> list:
    return analyze_paths([str(path)], **kwargs).tls


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, bytes]:
    return make_identity(tmp_path_factory.mktemp("pki"), "mail.contoso.com", T0 + 12 * DAY)


# -- the parser on its own -------------------------------------------------------------------
def test_tls12_handshake_gives_sni_version_alpn_and_the_server_certificate(identity) -> None:
    cert, key, der = identity
    flights = handshake(cert, key, "mail.contoso.com", tls12=True, alpn=["h2", "http/1.1"])
    tls = TlsHandshake()
    for side, data in flights:
        (tls.a if side == 0 else tls.b).feed(data)
    assert tls.a.done and tls.b.done
    assert tls.b.certificate == der
    rec = tls.record("C1", T0, ("10.0.0.5", 50000), ("10.0.0.10", 443), True)
    assert (rec.client_ip, rec.server_ip, rec.server_port) == ("10.0.0.5", "10.0.0.10", 443)
    assert (rec.sni, rec.version, rec.client_version) == ("mail.contoso.com", "TLS 1.2", "TLS 1.2")
    assert rec.alpn == ("http/1.1",)  # the server's choice, not the client's offer
    assert (rec.inspected, rec.problem) == (False, None)


def test_tls13_offers_alpn_and_hides_the_certificate(identity) -> None:
    cert, key, _ = identity
    flights = handshake(cert, key, "mail.contoso.com", tls12=False, alpn=["h2", "http/1.1"])
    tls = TlsHandshake()
    first_server_flight = True
    for side, data in flights:
        stream = tls.a if side == 0 else tls.b
        wanted = stream.feed(data)
        if side == 1 and first_server_flight:
            first_server_flight = False
            assert not wanted  # the ServerHello says 1.3: everything after it is encrypted
    assert tls.b.certificate is None and tls.b.encrypted is False
    rec = tls.record("C1", T0, ("10.0.0.5", 50000), ("10.0.0.10", 443), True)
    assert (rec.sni, rec.version, rec.client_version) == ("mail.contoso.com", "TLS 1.3", "TLS 1.3")
    # 1.3 sends the chosen protocol encrypted: the client's offer is all there is
    assert rec.alpn == ("h2", "http/1.1") and rec.cert_sha1 is None


def test_a_client_hello_fed_byte_by_byte_reads_the_same(identity) -> None:
    cert, key, _ = identity
    hello = handshake(cert, key, "autodiscover.contoso.com", tls12=False, alpn=["h2"])[0][1]
    whole, split = TlsStream(), TlsStream()
    assert not whole.feed(hello)
    for i in range(len(hello)):
        wanted = split.feed(hello[i : i + 1])
        assert wanted == (i < len(hello) - 1)
    assert split.client_hello == whole.client_hello
    assert whole.client_hello is not None
    assert whole.client_hello.sni == "autodiscover.contoso.com"
    assert whole.client_hello.alpn == ("h2",)
    assert 0x0304 in whole.client_hello.versions


def test_a_certificate_spanning_several_records_is_reassembled(tmp_path: Path) -> None:
    cert, key, der = make_identity(tmp_path, "big.contoso.com", T0 + 400 * DAY, san_names=900)
    assert len(der) > 20_000  # more than one 16 KB record
    flights = handshake(cert, key, "big.contoso.com", tls12=True)
    server = TlsStream()
    for side, data in flights:
        if side == 1:
            for at in range(0, len(data), 1000):
                server.feed(data[at : at + 1000])
    assert server.certificate == der and server.problem is None


def test_reading_stops_at_the_cap() -> None:
    stream = TlsStream()
    record = b"\x16\x03\x03\x40\x00" + (b"\x0b" + (1 << 20).to_bytes(3, "big")).ljust(0x4000, b"\0")
    assert not stream.feed(record)  # a Certificate message longer than the cap
    assert stream.problem == "handshake message too long"
    endless = TlsStream()
    fragment = b"\x16\x03\x03\x40\x00" + bytes(0x4000)  # HelloRequest(0)s, never a hello
    wanted = True
    fed = 0
    while wanted:
        wanted = endless.feed(fragment)
        fed += len(fragment)
        assert fed <= MAX_BUFFERED + len(fragment)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x03", "malformed ClientHello"),
        (b"\x16\x03\xff\x00\x01", "not a TLS record"),
        (b"\x16\x03\x03\xff\xff", "TLS record too long"),
        (b"\x16\x03\x01\x00\x04\x09\x00\x00\x00", None),  # an unknown message: nothing to say
    ],
)
def test_garbage_after_16_03_stops_with_a_reason(data: bytes, problem: str | None) -> None:
    stream = TlsStream()
    assert stream.feed(data) is False
    assert stream.problem == problem


def test_hostile_mutations_of_real_handshakes_never_raise(identity) -> None:
    cert, key, _ = identity
    flights = handshake(cert, key, "mail.contoso.com", tls12=True, alpn=["h2", "http/1.1"])
    client = flights[0][1]
    server = b"".join(d for side, d in flights if side == 1)[:4000]
    rng = random.Random(7)
    for _ in range(3000):
        a, b = bytearray(client), bytearray(server)
        for buf in (a, b):
            for _ in range(rng.randint(1, 4)):
                buf[rng.randrange(5, len(buf))] = rng.randrange(256)
        cut = rng.randrange(5, len(b))
        tls = TlsHandshake()
        tls.a.feed(bytes(a))
        tls.b.feed(bytes(b[:cut]))
        tls.b.feed(bytes(b[cut:]))
        rec = tls.record("C", T0, ("10.0.0.5", 50000), ("10.0.0.10", 443), True)
        assert rec.conn_id == "C"
    # a truncated ClientHello keeps the fields read before the damage
    hello = parse_client_hello(client[9 : len(client) - 3])
    assert hello.legacy_version == 0x0303 and hello.problem == "malformed ClientHello"


def test_hostile_names_are_made_safe_to_print() -> None:
    name = b"mail\n[HIGH] forged\x1b[31m" + b"x" * 400
    ext = struct.pack(">HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    protocols = b"".join(bytes([2]) + b"h\x07" for _ in range(100))
    alpn = struct.pack(">HHH", 16, len(protocols) + 2, len(protocols)) + protocols
    exts = ext + alpn
    body = b"\x03\x03" + bytes(32) + b"\x00\x00\x02\x13\x01\x01\x00"
    body += struct.pack(">H", len(exts)) + exts
    hello = parse_client_hello(body)
    assert hello.problem is None and hello.sni is not None
    assert hello.sni.startswith("mail\\x0a[HIGH] forged\\x1b[31mxxx")
    assert "\n" not in hello.sni and len(hello.sni) < 300
    assert len(hello.alpn) == 32 and hello.alpn[0] == "h\\x07"


def test_versions_and_record_shapes_are_named() -> None:
    assert [version_name(v) for v in (0x0300, 0x0301, 0x0303, 0x0304, 0x7F17, 0x1234)] == [
        "SSL 3.0",
        "TLS 1.0",
        "TLS 1.2",
        "TLS 1.3",
        "TLS 1.3 (draft 23)",
        "0x1234",
    ]
    assert looks_like_record(b"\x17\x03\x03\x00\x20")
    assert not looks_like_record(b"\x17\x03\x03\x00")  # too short to tell
    assert not looks_like_record(b"GET / HTTP/1.1")
    assert not looks_like_record(b"\x17\x03\x03\x50\x00")  # longer than any record


# -- through the pipeline --------------------------------------------------------------------
def tls12_capture(tmp: Path, identity, mss: int = 1460, shuffle: bool = False) -> Path:
    cert, key, _ = identity
    flow = Flow(("10.1.0.20", 50123), ("10.1.0.10", 443)).open()
    for side, data in handshake(cert, key, "mail.contoso.com", tls12=True):
        flow.send(side, data, mss)
    flow.close()
    frames = flow.frames
    if shuffle:  # every data frame of each flight in reverse order
        frames = frames[:3] + list(reversed(frames[3:-3])) + frames[-3:]
    return write(tmp, frames)


def test_pipeline_lists_a_tls12_connection_with_its_certificate(tmp_path, identity) -> None:
    _, _, der = identity
    result = analyze_paths([str(tls12_capture(tmp_path, identity))])
    (rec,) = result.tls
    assert (rec.client_ip, rec.client_port, rec.server_ip, rec.server_port) == (
        "10.1.0.20",
        50123,
        "10.1.0.10",
        443,
    )
    assert (rec.ts, rec.inspected, rec.sni, rec.version) == (
        T0,
        False,
        "mail.contoso.com",
        "TLS 1.2",
    )
    assert rec.cert_subject == "O=TEST KEY,CN=mail.contoso.com"
    assert rec.cert_issuer == rec.cert_subject
    assert rec.cert_not_after == T0 + 12 * DAY
    assert rec.cert_sha1 == hashlib.sha1(der).hexdigest().upper()
    assert rec.conn_id.startswith("C") and rec.problem is None
    stats = result.captures[0]
    assert (stats.tcp_connections, stats.http_connections, stats.tls_connections) == (1, 0, 1)
    assert result.events == []


def test_small_and_out_of_order_segments_read_the_same(tmp_path, identity) -> None:
    want = to_dict(tls_of(tls12_capture(tmp_path, identity))[0])
    small = to_dict(tls_of(tls12_capture(tmp_path, identity, mss=50))[0])
    shuffled = to_dict(tls_of(tls12_capture(tmp_path, identity, mss=200, shuffle=True))[0])
    assert want["cert_sha1"] and want["sni"] == "mail.contoso.com"
    assert small == want
    assert shuffled == want


def test_a_client_hello_split_inside_the_record_header(tmp_path, identity) -> None:
    cert, key, _ = identity
    flow = Flow(("10.1.0.20", 50125), ("10.1.0.10", 443)).open()
    flights = handshake(cert, key, "mail.contoso.com", tls12=True)
    hello = flights[0][1]
    flow.send(0, hello[:1])  # one byte, then two, then the rest
    flow.send(0, hello[1:3])
    flow.send(0, hello[3:])
    for side, data in flights[1:]:
        flow.send(side, data)
    (rec,) = tls_of(write(tmp_path, flow.close().frames))
    assert (rec.sni, rec.version, rec.problem) == ("mail.contoso.com", "TLS 1.2", None)
    assert rec.cert_sha1 is not None


def test_a_tls13_connection_has_no_certificate(tmp_path, identity) -> None:
    cert, key, _ = identity
    flow = Flow(("10.1.0.20", 50124), ("10.1.0.10", 8443)).open()
    for side, data in handshake(cert, key, "sfbpool01.contoso.com", tls12=False):
        flow.send(side, data)
    (rec,) = tls_of(write(tmp_path, flow.close().frames))
    assert (rec.sni, rec.version, rec.server_port, rec.cert_sha1) == (
        "sfbpool01.contoso.com",
        "TLS 1.3",
        8443,
        None,
    )


def test_connections_seen_from_the_middle(tmp_path, identity) -> None:
    cert, key, _ = identity
    flights = handshake(cert, key, "mail.contoso.com", tls12=True)
    # 1: the capture began after the SYN, before the ClientHello: everything is still read
    late = Flow(("10.1.0.21", 50200), ("10.1.0.10", 443))
    for side, data in flights:
        late.send(side, data)
    # 2: the capture began after the handshake: only application data records
    after = Flow(("10.1.0.10", 443), ("10.1.0.22", 50300), t=T0 + 5)  # server speaks first
    app = [(side, data) for side, data in flights[-2:]]
    for side, data in app:
        after.send(1 - side, data)
    result = analyze_paths([str(write(tmp_path, late.frames + after.frames))])
    first, second = result.tls
    assert (first.sni, first.version, first.client_port) == ("mail.contoso.com", "TLS 1.2", 50200)
    assert first.cert_sha1 is not None
    # without a hello, the side on the higher port is taken as the client
    assert (second.client_ip, second.server_ip, second.server_port) == (
        "10.1.0.22",
        "10.1.0.10",
        443,
    )
    assert (second.sni, second.version, second.problem) == (
        None,
        None,
        "no handshake seen (capture began after it)",
    )
    assert result.captures[0].tls_connections == 2


def test_garbage_after_16_03_on_the_wire_gives_a_record_with_the_reason(tmp_path) -> None:
    rng = random.Random(3)
    frames: list = []
    for i, head in enumerate((b"\x16\x03\x01\x00\x30", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc")):
        flow = Flow(("10.1.0.60", 44000 + i), ("10.1.0.10", 443), t=T0 + i).open()
        flow.send(0, head + bytes(rng.randrange(256) for _ in range(3000)), mss=700)
        flow.send(1, bytes(rng.randrange(256) for _ in range(2000)))
        frames += flow.close().frames
    result = analyze_paths([str(write(tmp_path, frames))])
    assert [(t.client_port, t.sni, t.version) for t in result.tls] == [
        (44000, None, None),
        (44001, None, None),
    ]
    assert all(t.problem for t in result.tls)
    assert result.captures[0].tls_connections == 2 and result.events == []


def test_tls_next_to_http_leaves_http_alone(tmp_path, identity) -> None:
    cert, key, _ = identity
    plain = Flow(("10.1.0.30", 41000), ("10.1.0.80", 80)).open()
    plain.send(0, b"GET / HTTP/1.1\r\nHost: intranet\r\nAuthorization: Basic ZGVtbzpkZW1v\r\n\r\n")
    plain.send(1, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    tls = Flow(("10.1.0.30", 41001), ("10.1.0.80", 443), t=T0 + 1).open()
    for side, data in handshake(cert, key, "intranet", tls12=False):
        tls.send(side, data)
    result = analyze_paths([str(write(tmp_path, plain.close().frames + tls.close().frames))])
    assert [(e.scheme, e.server_port) for e in result.events] == [("basic", 80)]
    assert [(t.sni, t.server_port) for t in result.tls] == [("intranet", 443)]
    stats = result.captures[0]
    assert (stats.tcp_connections, stats.http_connections, stats.tls_connections) == (2, 1, 1)


def test_many_connections_come_out_in_time_order(tmp_path, identity) -> None:
    cert, key, _ = identity
    frames: list = []
    flows = []
    for i in range(5):
        flow = Flow(("10.1.0.40", 42000 + i), ("10.1.0.10", 443), t=T0 + 10 - i).open()
        for side, data in handshake(cert, key, f"host{i}.contoso.com", tls12=False):
            flow.send(side, data)
        flows.append(flow.close())
    for flow in flows:
        frames += flow.frames
    frames.sort(key=lambda f: f.time)
    got = tls_of(write(tmp_path, frames))
    assert [t.sni for t in got] == [f"host{i}.contoso.com" for i in (4, 3, 2, 1, 0)]
    assert [t.ts for t in got] == sorted(t.ts for t in got)


@needs_native
def test_native_walk_and_pure_python_agree(tmp_path, identity, monkeypatch) -> None:
    cert, key, _ = identity
    frames: list = []
    for i, tls12 in enumerate((True, False, True)):
        flow = Flow(("10.1.0.50", 43000 + i), ("10.1.0.10", 443), t=T0 + i).open()
        for side, data in handshake(cert, key, "mail.contoso.com", tls12=tls12):
            flow.send(side, data, mss=300 if i == 2 else 1460)
        frames += flow.close().frames
    path = write(tmp_path, frames)
    got = {}
    for pure in ("1", "0"):
        monkeypatch.setenv(tcp.PURE_PYTHON_ENV, pure)
        result = analyze_paths([str(path)])
        got[pure] = ([to_dict(t) for t in result.tls], to_dict(result.captures[0]))
    assert got["0"] == got["1"]
    assert [t["version"] for t in got["0"][0]] == ["TLS 1.2", "TLS 1.3", "TLS 1.2"]
    assert all(t["sni"] == "mail.contoso.com" for t in got["0"][0])


# -- Lekensteyn's public capture, against tshark ---------------------------------------------
def tshark_fields(path: Path, *fields: str) -> list[list[str]]:
    cmd = ["tshark", "-r", str(path), "-n", "-Y", "tls.handshake.type == 11", "-T", "fields"]
    for name in fields:
        cmd += ["-e", name]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


@needs_tshark
@needs_lek
def test_lek_versions_and_certificates_match_tshark() -> None:
    rows = tshark_fields(LEK, "tcp.srcport", "tls.handshake.version", "tls.handshake.certificate")
    want = {
        int(port): (version, hashlib.sha1(bytes.fromhex(certs.split(",")[0])).hexdigest().upper())
        for port, version, certs in rows
    }
    got = tls_of(LEK)
    assert len(got) == len(want) == 6
    for rec in got:
        version, sha1 = want[rec.server_port]
        assert version_name(int(version.split(",")[0], 16)) == rec.version == "TLS 1.2"
        assert rec.cert_sha1 == sha1
        assert rec.sni is None  # the capture's ClientHellos carry no server_name
        assert rec.client_ip == "127.0.0.1" and rec.inspected is False
    assert {r.cert_subject for r in got} == {
        "CN=*.local.al.lekensteyn.nl",
        "OU=EC,CN=al.lekensteyn.nl",
    }


@needs_tshark
@needs_lek
def test_lek_connections_decrypted_with_the_key_log_are_inspected() -> None:
    result = analyze_paths([str(LEK)], tls_keylog=str(LEK_KEYS))
    assert [t.inspected for t in result.tls] == [True] * 6
    assert all(t.cert_sha1 for t in result.tls)
    stats = result.captures[0]
    assert (stats.tcp_connections, stats.http_connections, stats.tls_connections) == (6, 6, 0)
