"""SIP over TCP that cannot be read must be a blind spot, and SIP wherever it is must be read.

A review found ``verify --protocol sip`` passing over SIP it had not read:

- a Skype for Business client's TLS connection to its pool on 5061 caught after its handshake
  (only application-data records): read as SIP, nothing found, no blind spot - the same bytes
  on 443 were a TLS blind spot;
- a cleartext connection caught inside a REGISTER head: the head's ``Authorization: NTLM`` line
  was dropped while hunting for a start line, uncounted;
- a segment retransmitted with other bytes on a SIP-port connection (SIP, or HTTP read through
  the first-bytes dispatcher): only a warning, where HTTP on port 80 is INCONCLUSIVE;
- cleartext SIP over TCP off 5060-5087 (5090, 443): handed to the HTTP reader, unread, unsaid;
- a request line with two spaces, which lenient servers read: not taken for SIP at all.

Real pcaps written with scapy (``sip_kit``) go through ``analyze`` and ``verify``, with the native
walk and with the pure-Python reader.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sip_kit as kit
from test_expiry_at_last_copy import EXP, OK, REQ, flags
from test_expiry_at_last_copy import write as write_segments
from token_kit import actor_claims, signed

from analyzer.analysis.verify import FAIL, INCONCLUSIVE, PASS, evaluate, make_rule
from analyzer.engine import analyze_paths


def token() -> str:
    return signed(actor_claims(nbf=int(kit.T0) - 60, exp=int(kit.T0) + 3600), key="sfb")


def ntlm_leg() -> str:
    return kit.leg("NTLM", kit.b64(kit.ntlm_blobs()[2]), "4A5B6C7D")


def judge(*paths: Path | str) -> str:
    """``verify --protocol sip``'s result for these captures together."""
    result = analyze_paths([str(p) for p in paths])
    rule = make_rule(protocol="sip")
    return evaluate(rule, result.events, result.captures, result.not_inspected).result


@pytest.fixture(scope="module")
def bearer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Bearer REGISTER over UDP: what passes alone, and what the blind spots sit beside."""
    path = tmp_path_factory.mktemp("sip") / "bearer.pcap"
    return Path(kit.udp_capture(path, kit.bearer_register(token())))


def spots(path: Path | str) -> list[tuple[str, str, int]]:
    return [(n.kind, n.protocol, n.server_port) for n in analyze_paths([str(path)]).not_inspected]


def with_copy(path: str, index: int, payload: bytes, later: float = 0.0002) -> str:
    """The capture at ``path`` with frame ``index`` sent again ``later`` seconds after, same
    sequence number, carrying ``payload`` (other bytes: a conflicting retransmission)."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import rdpcap, wrpcap

    frames = list(rdpcap(path))
    first = frames[index]
    tcp = first[TCP]
    copy = (
        Ether()
        / IP(src=first[IP].src, dst=first[IP].dst)
        / TCP(sport=tcp.sport, dport=tcp.dport, seq=tcp.seq, ack=tcp.ack, flags="PA")
        / payload
    )
    copy.time = float(first.time) + later
    frames.insert(index + 1, copy)
    wrpcap(path, frames)
    return path


def same_length(headers: list[str], like: bytes, call_id: str) -> bytes:
    """A REGISTER of ``call_id`` sending ``headers``, padded to the length of ``like``."""
    short = kit.Dialog(call_id).request([*headers, "X-Pad: "])
    pad = "a" * (len(like) - len(short))
    return kit.Dialog(call_id).request([*headers, f"X-Pad: {pad}"])


# -- SIP over TLS caught mid-connection ------------------------------------------------------
APP_DATA = kit.gen("tls").tls_record(23, b"\x17" * 600)


@pytest.mark.parametrize("port", [5061, 443])
def test_tls_caught_after_its_handshake_is_tls_not_decrypted(
    tmp_path: Path, bearer: Path, reader: str, port: int
) -> None:
    records = [(0, APP_DATA), (1, APP_DATA), (0, APP_DATA), (1, APP_DATA)]
    path = kit.tcp_capture(tmp_path / "mid.pcap", records, port=port, syn=False)
    result = analyze_paths([path])
    assert spots(path) == [("tls", None, port)]
    assert [(t.server_port, t.inspected) for t in result.tls] == [(port, False)]
    assert result.events == []
    assert judge(bearer) == PASS
    assert judge(bearer, path) == INCONCLUSIVE


def test_a_record_header_cut_short_waits_for_its_rest(tmp_path: Path, bearer: Path) -> None:
    """Three bytes of a record header cannot tell TLS from anything: the choice waits."""
    records = [(0, APP_DATA[:3]), (0, APP_DATA[3:]), (1, APP_DATA)]
    path = kit.tcp_capture(tmp_path / "cut.pcap", records, port=5061, syn=False)
    assert spots(path) == [("tls", None, 5061)]
    assert judge(bearer, path) == INCONCLUSIVE


# -- cleartext SIP caught mid-connection -----------------------------------------------------
def midstream(tmp_path: Path, first: bytes) -> str:
    """A connection on 5060 caught mid-stream: ``first`` (what was left of a message begun
    before the capture), then a Bearer REGISTER and its 200."""
    reg = kit.Dialog("mid-0002")
    msgs = [(0, first), (0, reg.request([f"Authorization: Bearer {token()}"]))]
    msgs.append((1, reg.response(200, "OK")))
    return kit.tcp_capture(tmp_path / "mid.pcap", msgs, syn=False)


def test_bytes_before_the_first_start_line_are_lost(tmp_path: Path, reader: str) -> None:
    """The capture begins inside a REGISTER head whose Authorization: NTLM line it holds."""
    head = kit.Dialog("mid-0001").request([ntlm_leg()])
    path = midstream(tmp_path, head[head.index(b"Authorization:") :])
    assert spots(path) == [("request-lost", "sip", 5060)]
    assert [e.scheme for e in analyze_paths([path]).events] == ["bearer"]
    assert judge(path) == INCONCLUSIVE


@pytest.mark.parametrize("first", [b"\r\n\r\n", b"\r\n"], ids=["keep-alive", "crlf"])
def test_keep_alives_before_the_first_start_line_are_nothing_lost(
    tmp_path: Path, first: bytes
) -> None:
    path = midstream(tmp_path, first)
    assert spots(path) == []
    assert judge(path) == PASS


def test_a_midstream_connection_that_never_starts_a_message_is_lost(tmp_path: Path) -> None:
    path = kit.tcp_capture(tmp_path / "tail.pcap", [(0, b"the tail of a body")], syn=False)
    assert spots(path) == [("request-lost", "sip", 5060)]


# -- retransmissions with other contents -----------------------------------------------------
def test_a_sip_request_retransmitted_with_other_bytes_is_a_blind_spot(
    tmp_path: Path, reader: str
) -> None:
    """The REGISTER's first copy carries the token, a same-length copy Digest: the registrar
    may have read either."""
    reg = kit.Dialog("conflict-0001")
    first = reg.request([f"Authorization: Bearer {token()}"])
    other = same_length([kit.DIGEST_AUTH], first, "conflict-0001")
    path = kit.tcp_capture(tmp_path / "c.pcap", [(0, first), (1, reg.response(200, "OK"))])
    with_copy(path, 3, other)  # frame 3: the client's first data segment
    assert spots(path) == [("request-lost", "sip", 5060)]
    assert [e.scheme for e in analyze_paths([path]).events] == ["bearer"]  # the first copy
    assert judge(path) == INCONCLUSIVE


def test_a_sip_answer_retransmitted_with_other_bytes_is_a_blind_spot(tmp_path: Path) -> None:
    """Either side sends requests in SIP: the server's stretch in doubt counts as well."""
    reg = kit.Dialog("conflict-0002")
    msgs = [(0, reg.request([f"Authorization: Bearer {token()}"])), (1, reg.response(200, "OK"))]
    path = kit.tcp_capture(tmp_path / "c.pcap", msgs)
    with_copy(path, 4, kit.Dialog("conflict-0002").response(401, "Unauthorized"))
    assert spots(path) == [("request-lost", "sip", 5060)]
    assert judge(path) == INCONCLUSIVE


def test_http_on_a_sip_port_gets_its_conflicts_and_later_copies(
    tmp_path: Path, reader: str
) -> None:
    """HTTP on 5080 is read through the first-bytes dispatcher, which passes the reassembler's
    hooks on: a conflicting copy leaves the request in doubt, a later copy dates its expiry."""
    basic = b"Authorization: Basic " + b"QUxJQ0U6UGFzc3cwcmQh"
    other = REQ.replace(REQ[REQ.index(b"Authorization") : REQ.index(b"\r\nContent")], basic)
    other = other.replace(
        b"\r\n\r\n", b"\r\nX: " + b"a" * (len(REQ) - len(other) - 5) + b"\r\n\r\n"
    )
    assert len(other) == len(REQ)
    segments = [(EXP - 600, True, 0, REQ), (EXP - 599, True, 0, other), (EXP - 598, False, 0, OK)]
    path = write_segments(tmp_path / "conflict.pcap", segments, port=5080)
    assert spots(path) == [("request-lost", None, 5080)]
    late = [(EXP - 600, True, 0, REQ), (EXP + 400, True, 0, REQ), (EXP + 400.05, False, 0, OK)]
    path = write_segments(tmp_path / "late.pcap", late, port=5080)
    assert flags(path, reader) == [("GET", ("expired", "actor-expired"))]


# -- SIP off the SIP ports, and lenient spacing ----------------------------------------------
@pytest.mark.parametrize("port", [5090, 443, 8443])
def test_cleartext_sip_on_any_tcp_port_is_read(tmp_path: Path, reader: str, port: int) -> None:
    path = kit.tcp_capture(tmp_path / "sip.pcap", kit.ntlm_register(subscribe=False), port=port)
    result = analyze_paths([path])
    assert {(e.protocol, e.server_port) for e in result.events} == {("sip", port)}
    assert [e.scheme for e in result.events if e.scheme != "none"] == ["ntlm", "ntlm"]
    assert judge(path) == FAIL


@pytest.mark.parametrize(("port", "syn"), [(5060, True), (5090, True), (5090, False)])
def test_sip_after_many_keep_alives_is_read(
    tmp_path: Path, reader: str, port: int, syn: bool
) -> None:
    """A connection that opens with more keep-alive line breaks than the bytes the first-bytes
    choice waits for (RFC 5626 pings), then a Digest REGISTER: the line breaks do not count,
    or it was read as HTTP, unread and unsaid, and verify passed (review 7: S1, S2)."""
    reg = kit.Dialog("crlf-0001")
    msgs = [
        (0, b"\r\n\r\n" * 40),
        (0, reg.request([kit.DIGEST_AUTH])),
        (1, reg.response(200, "OK")),
    ]
    path = kit.tcp_capture(tmp_path / "crlf.pcap", msgs, port=port, syn=syn)
    result = analyze_paths([path])
    assert [(e.protocol, e.scheme) for e in result.events] == [("sip", "digest")]
    assert judge(path) == FAIL


@pytest.mark.parametrize("answered", [True, False])
def test_sip_caught_mid_stream_off_the_sip_ports_is_read(
    tmp_path: Path, reader: str, answered: bool
) -> None:
    """On 5090, caught after a message began: its tail (an SDP body), then a Digest REGISTER
    (answered, or not: then the client's bytes alone must tell). Only a first start line made
    it SIP there, so it was read as HTTP (review 7: S3)."""
    reg = kit.Dialog("mid-5090")
    tail = b"v=0\r\no=- 0 0 IN IP4 10.20.0.9\r\ns=session\r\nc=IN IP4 10.20.0.9\r\n"
    msgs = [(0, tail), (0, reg.request([kit.DIGEST_AUTH]))]
    if answered:
        msgs.append((1, reg.response(200, "OK")))
    path = kit.tcp_capture(tmp_path / "mid.pcap", msgs, port=5090, syn=False)
    result = analyze_paths([path])
    assert [(e.protocol, e.scheme) for e in result.events] == [("sip", "digest")]
    assert spots(path) == [("request-lost", "sip", 5090)]  # the tail: what it held is unknown
    assert judge(path) == FAIL


def test_http_off_the_http_ports_stays_http(tmp_path: Path) -> None:
    msgs = [(0, REQ), (1, OK)]
    path = kit.tcp_capture(tmp_path / "http.pcap", msgs, port=8443)
    (event,) = analyze_paths([path]).events
    assert (event.protocol, event.scheme, event.server_port) == ("http/1.1", "bearer", 8443)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_a_request_line_with_several_spaces_is_read(tmp_path: Path, transport: str) -> None:
    reg = kit.Dialog("spaces-0001")
    head = reg.request([ntlm_leg()]).replace(b"REGISTER sip:", b"REGISTER  sip:", 1)
    head = head.replace(b" SIP/2.0\r\n", b"  SIP/2.0\r\n", 1)
    answer = reg.response(200, "OK").replace(b"SIP/2.0 200", b"SIP/2.0  200", 1)
    msgs = [(0, head), (1, answer)]
    capture = kit.udp_capture if transport == "udp" else kit.tcp_capture
    path = capture(tmp_path / "spaces.pcap", msgs)
    (event,) = analyze_paths([path]).events
    assert (event.method, event.status, event.scheme) == ("REGISTER", 200, "ntlm")
    assert judge(path) == FAIL
