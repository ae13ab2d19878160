"""What fuzzing found, each pinned with the smallest input that showed it.

Found by the property tests (``tests/test_fuzz_decoders.py``) or the atheris campaign
(``bench/fuzz.py``; its crash inputs are replayed by ``tests/test_fuzz_regressions.py``).
"""

from __future__ import annotations

import base64
from pathlib import Path

from wire_kit import OK, write_capture

from analyzer.engine import analyze_paths
from analyzer.protocols.http1 import HttpStream


def test_a_request_after_junk_in_the_same_segment_is_read() -> None:
    """A head that is not HTTP made the stream hunt, but only from the next feed on: a request
    right behind it in the same segment, the last one of the connection, was never read."""
    data = b"GET / HTTP/1.1\r\n\r\n0\r\n\r\nGET /b HTTP/1.1\r\n\r\n"
    stream = HttpStream()
    got = stream.data(data, 1.0) + stream.close(2.0)
    assert [(m.method, m.uri, m.after_gap) for m in got] == [
        ("GET", "/", False),
        ("GET", "/b", True),
    ]


def test_a_credential_after_junk_reaches_the_events(tmp_path: Path) -> None:
    basic = b"Authorization: Basic " + base64.b64encode(b"alice:pw") + b"\r\n"
    request = b"GET /a HTTP/1.1\r\nHost: web.test\r\n\r\nnot http\r\n\r\n"
    request += b"GET /b HTTP/1.1\r\nHost: web.test\r\n" + basic + b"\r\n"
    path = write_capture(tmp_path / "junk.pcap", [(request, OK)])
    events = analyze_paths([path]).events
    assert [(e.uri, e.user, e.scheme) for e in events] == [("/b", "alice", "basic")]


def test_empty_lines_before_a_request_are_ignored(tmp_path: Path) -> None:
    """RFC 9112 2.2: a server ignores empty lines before a request line (clients send a CRLF
    after a POST body). The parser read the CRLF as the start of a head, so the request after
    it vanished with its credential - found while building the leak test's capture."""
    stream = HttpStream()
    got = stream.data(b"\r\nGET /a HTTP/1.1\r\n\r\n\r\n\r\nGET /b HTTP/1.1\r\n\r\n", 1.0)
    assert [(m.uri, m.after_gap) for m in got] == [("/a", False), ("/b", False)]
    bearer = b"Proxy-Authorization: Bearer abc\r\n"
    path = write_capture(
        tmp_path / "crlf.pcap",
        [
            (b"GET /a HTTP/1.1\r\nHost: web.test\r\n\r\n\r\n", OK),
            (b"GET /b HTTP/1.1\r\nHost: web.test\r\n" + bearer + b"\r\n", OK),
        ],
    )
    assert [(e.uri, e.scheme) for e in analyze_paths([path]).events] == [("/b", "bearer")]


def test_a_fin_seen_before_the_data_keeps_the_connection() -> None:
    """Segments in any order: a FIN captured before the data it ends must not end the
    connection (found by the any-order property after connections without data were made
    light: the FIN dropped them, and the data then started a new, mid-stream connection)."""
    from test_fuzz_decoders import A, B, Pair

    from analyzer.flows.tcp import TcpReassembler
    from analyzer.model import CaptureStats

    pairs: list = []
    r = TcpReassembler(lambda info: pairs.append(Pair()) or pairs[-1], CaptureStats())
    r.feed(1.0, A, 40000, B, 80, 0, 0, 0x02, b"")  # SYN
    r.feed(1.0, B, 80, A, 40000, 7, 1, 0x12, b"")  # SYN-ACK
    r.feed(1.1, A, 40000, B, 80, 3, 8, 0x11, b"")  # FIN after two bytes not yet seen
    r.feed(1.2, A, 40000, B, 80, 2, 8, 0x18, b"\x01")
    r.feed(1.3, A, 40000, B, 80, 1, 8, 0x18, b"\x00")
    r.flush()
    (pair,) = pairs
    assert pair.a_to_b.chunks == [(0, b"\x00"), (1, b"\x01")] and pair.a_to_b.gaps == []
    assert pair.a_to_b.closed == 1


def test_a_certificate_of_an_unknown_x509_version_is_no_certificate() -> None:
    """Found by the campaign in a mutated TLS handshake: cryptography raises InvalidVersion,
    which is not a ValueError, for a version field of 66; it ended the run."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from analyzer.oauth.certificates import certificate_facts, load_der

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tls.test")])
    start = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1).not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=30)).sign(key, hashes.SHA256())
    )  # fmt: skip
    der = cert.public_bytes(serialization.Encoding.DER)
    odd = der.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x42", 1)
    assert odd != der
    assert load_der(der) is not None
    assert load_der(odd) is None and certificate_facts(odd) is None


def test_sip_text_that_is_not_utf8_is_read_as_latin1() -> None:
    """Found by the campaign: SIP header bytes that are not UTF-8 became lone surrogates
    (surrogateescape), which no UTF-8 writer can encode: every output of the run failed."""
    from analyzer.protocols.sip import _text

    assert _text("sip:bj\u00f6rn@x".encode()) == "sip:bj\u00f6rn@x"
    assert _text(b"sip:voi1\xa98063@sip.test") == "sip:voi1\u00a98063@sip.test"
    _text(b"\xff\xfe\xa9").encode("utf-8")
