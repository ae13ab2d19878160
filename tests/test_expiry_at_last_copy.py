"""A token is judged for expiry at the latest copy of its request's head, not the first.

A review built captures where ``verify`` passed a token used after it expired: the request's
first copy went out while the token was valid, was lost past the tap, and the client's TCP
retransmitted it after the token's exp; the server read that copy and answered 200. The first
copy is all the parser reads (identical copies are dropped), so the use was dated before exp.
The same for a head whose last segment came later, and for a second tap whose clock ran
behind (its copies came first). The server read the request at some time between its first
byte and its answer, so not-before is judged at the first copy and expiry at the last one
seen before the answer; a copy after the answer changes nothing (the server had read it).

The same for HTTP/2 header blocks (per stream). Real pcaps written with scapy go through
``analyze`` and ``verify``, with the native walk and with the pure-Python reader; the
reassembler, the HTTP/1.x reader and the HTTP/2 frame reader are also fed bytes directly where a
pcap cannot place a copy (behind a hole the reader waits on, inside a kept body).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h2_kit
import pytest
import token_kit

from analyzer import analyze
from analyzer.cli import main
from analyzer.flows.tcp import ACK, SYN, ConnectionInfo, TcpReassembler
from analyzer.model import CaptureStats
from analyzer.protocols.http1 import HttpMessage
from analyzer.protocols.http2_frames import PREFACE
from analyzer.protocols.http_exchange import HttpConnection

CLIENT, SERVER = "10.1.0.20", "10.2.0.10"
T0 = float(token_kit.T0)
EXP = T0 + 3600  # the tokens' exp (clock skew allowed: 300 s)
SFB_CERT = str(token_kit.KEYS_DIR / "sfb.cert.pem")
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def token(exp: int = int(EXP)) -> str:
    """An SfB -> Exchange S2S token valid from T0 to ``exp``, its actor signed with the SfB key
    (``verify`` checks it with ``--keys sfb.cert.pem``)."""
    gen = token_kit.generator()
    actor = token_kit.signed(token_kit.actor_claims(exp=exp), key="sfb")
    user = {"sid": "S-1-5-21-1-2-3-1104", "upn": "alice@contoso.com"}
    claims = gen.user_context(token_kit.EXO_AUD, token_kit.SFB_ISS, user, actor, 0, 0)
    claims.update(nbf=str(token_kit.T0), exp=str(exp))
    return token_kit.unsigned(claims)


def request(bearer: str, method: str = "GET", body: bytes = b"") -> bytes:
    head = (
        f"{method} /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\n"
        f"Authorization: Bearer {bearer}\r\nContent-Length: {len(body)}\r\n"
    )
    if body:
        head += "Content-Type: application/octet-stream\r\n"
    return head.encode() + b"\r\n" + body


# (time, sent by the client, offset in that side's stream, bytes)
Segment = tuple[float, bool, int, bytes]


def write(path: Path, segments: list[Segment], port: int = 80) -> str:
    """One connection CLIENT:40001 -> SERVER:``port``: handshake at T0 + 1, the segments (in
    the order given, at their times, any offset: retransmissions and reordering as written),
    then FINs a second after the last."""
    import scapy.all as scapy

    isn = {True: 1000, False: 5000}
    sent = {True: 0, False: 0}  # bytes each side has sent, for the ACKs
    packets = []

    def packet(ts: float, client: bool, flags: str, off: int, payload: bytes = b"") -> None:
        src, dst, sp, dp = (
            (CLIENT, SERVER, 40001, port) if client else (SERVER, CLIENT, port, 40001)
        )
        seq = isn[client] + 1 + off if "S" not in flags else isn[client]
        ack = isn[not client] + 1 + sent[not client] if flags != "S" else 0
        tcp = scapy.TCP(sport=sp, dport=dp, flags=flags, seq=seq, ack=ack)
        p = scapy.Ether() / scapy.IP(src=src, dst=dst) / tcp
        p = p / payload if payload else p
        p.time = ts
        packets.append(p)

    packet(T0 + 1, True, "S", 0)
    packet(T0 + 1.001, False, "SA", 0)
    packet(T0 + 1.002, True, "A", 0)
    for ts, client, off, payload in segments:
        packet(ts, client, "PA", off, payload)
        sent[client] = max(sent[client], off + len(payload))
    last = max(ts for ts, *_ in segments) + 1
    packet(last, True, "FA", sent[True])
    packet(last + 0.001, False, "FA", sent[False])
    scapy.wrpcap(str(path), packets)
    return str(path)


def flags(path: str, reader: str) -> list[tuple[str, tuple[str, ...]]]:
    """(method, token_flags) per event, in order."""
    return [(e.method, e.token_flags) for e in analyze(path, keys=[SFB_CERT]).result.events]


def verify(path: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["verify", path, *token_kit.strict_rule(CLIENT)])
    return code, capsys.readouterr().out


REQ = request(token())


def test_a_head_retransmitted_after_exp_and_only_then_answered_fails(
    tmp_path: Path, reader: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path / "late-copy.pcap",
        [
            (EXP - 600, True, 0, REQ),  # valid: 10 minutes left
            (EXP + 400, True, 0, REQ),  # the copy the server read: past exp and the skew
            (EXP + 400.05, False, 0, OK),
        ],
    )
    assert flags(path, reader) == [("GET", ("expired", "actor-expired"))]
    event = analyze(path, keys=[SFB_CERT]).result.events[0]
    assert (event.ts, event.request_last_ts) == (EXP - 600, EXP + 400)  # dated by its first copy
    code, out = verify(path, capsys)
    assert code == 1 and out.startswith("FAIL") and "1 x expired" in out, out
    why = "token expired (by its request's last copy, 10:06:40 UTC; first sent 09:50:00 UTC)"
    assert f"{why}, yet accepted (200)" in out, out


def test_copies_before_exp_and_after_the_answer_change_nothing(
    tmp_path: Path, reader: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path / "copies.pcap",
        [
            (EXP - 600, True, 0, REQ),
            (EXP + 200, True, 0, REQ),  # later, but within the clock skew
            (EXP + 200.05, False, 0, OK),
            (EXP + 900, True, 0, REQ),  # after the answer: the server had read the request
        ],
    )
    assert flags(path, reader) == [("GET", ())]
    code, out = verify(path, capsys)
    assert code == 0 and out.startswith("PASS"), out


def test_a_head_whose_last_segment_came_after_exp_fails(tmp_path: Path, reader: str) -> None:
    cut = REQ.index(b"\r\n\r\n")  # the head's final CRLF comes in a second segment
    path = write(
        tmp_path / "late-end.pcap",
        [
            (EXP - 600, True, 0, REQ[:cut]),
            (EXP + 400, True, cut, REQ[cut:]),
            (EXP + 400.05, False, 0, OK),
        ],
    )
    assert flags(path, reader) == [("GET", ("expired", "actor-expired"))]
    (finding,) = [f for f in analyze(path).result.findings if f.rule_id == "token-expired-use"]
    assert finding.detail.endswith("used 1 time after exp, ACCEPTED by the server")


def test_a_head_cut_into_segments_a_moment_apart_is_not_worth_a_word(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cut = REQ.index(b"\r\n\r\n")
    start, end = (EXP + 400, True, 0, REQ[:cut]), (EXP + 400.01, True, cut, REQ[cut:])
    path = write(tmp_path / "split.pcap", [start, end, (EXP + 400.05, False, 0, OK)])
    code, out = verify(path, capsys)
    assert code == 1 and "token expired, yet accepted (200)" in out, out


def test_the_copy_dates_only_the_request_whose_head_it_holds(tmp_path: Path, reader: str) -> None:
    """Two pipelined requests, the first with a 64 KiB body the reader skips: a later copy of
    the second's head dates the second only, a later copy of the first's head the first only
    (stream offsets count the skipped body)."""
    first = request(token(), "POST", bytes(65536))
    second = request(token())
    pipelined = [
        (EXP - 600, True, 0, first[:1460]),
        *[(EXP - 599, True, i, first[i : i + 1460]) for i in range(1460, len(first), 1460)],
        (EXP - 598, True, len(first), second),
    ]
    answers = [(EXP + 400.05, False, 0, OK), (EXP + 400.06, False, len(OK), OK)]
    late = ("expired", "actor-expired")
    path = write(tmp_path / "a.pcap", [*pipelined, (EXP + 400, True, len(first), second), *answers])
    assert flags(path, reader) == [("POST", ()), ("GET", late)]
    path = write(tmp_path / "b.pcap", [*pipelined, (EXP + 400, True, 0, first[:1460]), *answers])
    assert flags(path, reader) == [("POST", late), ("GET", ())]
    body = (EXP + 400, True, 20000, first[20000:21460])  # a copy of body bytes only
    path = write(tmp_path / "c.pcap", [*pipelined, body, *answers])
    assert flags(path, reader) == [("POST", ()), ("GET", ())]


def test_a_second_tap_behind_in_time_does_not_hide_a_late_use(tmp_path: Path, reader: str) -> None:
    """Two taps merged: the slow tap's copy of every packet is dated an hour early, so the
    request's first copy falls within the token's life though the server read it after."""
    path = write(
        tmp_path / "two-taps.pcap",
        [
            (EXP + 400 - 3600, True, 0, REQ),  # the tap an hour behind
            (EXP + 400, True, 0, REQ),  # the tap on time
            (EXP + 400.05, False, 0, OK),
        ],
    )
    assert flags(path, reader) == [("GET", ("expired", "actor-expired"))]


# -- the reassembler and the parser alone: copies that come while a hole is open -------------
A_IP, B_IP = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
FIRST = b"GET /a HTTP/1.1\r\nHost: mail.contoso.com\r\nX-Pad: " + b"x" * 200 + b"\r\n\r\n"
SECOND = b"GET /b HTTP/1.1\r\nHost: mail.contoso.com\r\n\r\n"


def none(request: HttpMessage | None, response: HttpMessage) -> int:
    return 0


def last_copies(feed: list[tuple[float, int, bytes]], max_pending: int) -> dict[str, float]:
    """Client segments (time, stream offset, bytes) through a reassembler and an HTTP/1.x
    connection, then two answers: each request's path -> its ``last_ts``."""
    requests: list[HttpMessage | None] = []

    def connection(info: ConnectionInfo) -> HttpConnection:
        return HttpConnection(info, lambda e: requests.append(e.request), lambda m: 0, none)

    r = TcpReassembler(connection, CaptureStats(), max_pending_bytes=max_pending)
    r.feed(0.0, A_IP, 40000, B_IP, 80, 1000, 0, SYN, b"")
    r.feed(0.1, B_IP, 80, A_IP, 40000, 5000, 1001, SYN | ACK, b"")
    for ts, off, data in feed:
        r.feed(ts, A_IP, 40000, B_IP, 80, 1001 + off, 5001, 0x18, data)
    r.feed(9.0, B_IP, 80, A_IP, 40000, 5001, 1001 + 200, 0x18, OK + OK)
    r.flush()
    return {q.uri: q.last_ts for q in requests if q is not None and q.last_ts is not None}


def test_a_copy_of_a_segment_waiting_behind_a_hole_dates_its_request() -> None:
    # /a's end is late (t=6): the hole; /b waits behind it, and comes again at t=5
    later = len(FIRST)
    feed = [(1.0, 0, FIRST[:10]), (2.0, later, SECOND), (5.0, later, SECOND), (6.0, 10, FIRST[10:])]
    assert last_copies(feed, 4 << 20) == {"/a": 6.0, "/b": 5.0}


def test_a_longer_copy_of_a_segment_waiting_behind_a_hole_dates_its_request() -> None:
    # /b waits behind the hole; at t=5 it comes again with /c after it, in one longer segment
    later, third = len(FIRST), SECOND.replace(b"/b", b"/c")
    feed = [(1.0, 0, FIRST[:10]), (2.0, later, SECOND), (5.0, later, SECOND + third)]
    feed.append((6.0, 10, FIRST[10:]))
    assert last_copies(feed, 4 << 20) == {"/a": 6.0, "/b": 5.0}


def test_a_copy_after_a_hole_given_up_on_dates_its_request() -> None:
    # /a's end never came: given up on at once (a tiny buffer), so /a is lost and /b read; the
    # copy of /b at t=5 is found by a stream offset that counts the hole
    later = len(FIRST)
    assert last_copies([(1.0, 0, FIRST[:10]), (2.0, later, SECOND), (5.0, later, SECOND)], 8) == {
        "/b": 5.0
    }


def test_a_hole_through_a_skipped_body_counts_both() -> None:
    # a 5,000-byte body skipped: its last 4,500 bytes and the start of /b are never captured,
    # /c follows the hole and comes again at t=5
    post = b"POST /a HTTP/1.1\r\nHost: mail.contoso.com\r\nContent-Length: 5000\r\n\r\n"
    third = SECOND.replace(b"/b", b"/c")
    at = len(post) + 5000 + len(SECOND)
    feed = [(1.0, 0, post + bytes(500)), (2.0, at, third), (5.0, at, third)]
    assert last_copies(feed, 8) == {"/c": 5.0}


def test_a_copy_that_brings_new_bytes_too_dates_the_old_ones() -> None:
    # /b comes again at t=5 in one segment with the next request, /c, new then
    third = SECOND.replace(b"/b", b"/c")
    feed = [(1.0, 0, FIRST), (2.0, len(FIRST), SECOND), (5.0, len(FIRST), SECOND + third)]
    assert last_copies(feed, 4 << 20) == {"/b": 5.0}


def load_cert(path: Path) -> Any:
    from cryptography import x509

    return x509.load_pem_x509_certificate(path.read_bytes())


def test_a_signing_certificate_that_expired_before_the_last_copy(
    tmp_path: Path, reader: str
) -> None:
    """The certificate of the key that verified the token is judged like the token: at the
    request's last copy."""
    cert = token_kit.KEYS_DIR / "exchange-expiring.cert.pem"  # not after 2026-03-12 15:00Z
    not_after = 1_773_327_600.0
    claims = token_kit.actor_claims(nbf=int(not_after) - 600, exp=int(not_after) + 3000)
    exchange = token_kit.keys()["exchange"]  # the same key, in the expiring certificate
    expiring = type(exchange)("expiring", exchange.private_key, load_cert(cert))
    req = request(token_kit.generator().mint_rs256(claims, expiring))
    first, again = (not_after - 60, True, 0, req), (not_after + 60, True, 0, req)
    answer = (not_after + 60.05, False, 0, OK)
    for segments, expected in (([first, answer], ()), ([first, again, answer], ("expired",))):
        path = write(tmp_path / f"cert{len(segments)}.pcap", segments)
        (event,) = analyze(path, keys=[str(cert)]).result.events
        late = tuple(f.removeprefix("signing-certificate-") for f in event.token_flags)
        assert event.token_signature == "verified" and late == expected, event.token_flags


# -- HTTP/2: a request's header block comes again --------------------------------------------
def h2_client(body: int = 0) -> tuple[bytes, bytes, bytes, bytes]:
    """The client's bytes: the preface and SETTINGS with stream 1's request (a POST with a
    ``body``-byte body the reader skips, when asked), then stream 3's request; the server's
    SETTINGS with its answer to stream 1, then to stream 3."""
    client, server = h2_kit.Peer(), h2_kit.Peer()
    fields = [
        (":method", "POST" if body else "GET"),
        (":scheme", "http"),
        (":authority", "mail.contoso.com"),
        (":path", "/EWS/Exchange.asmx"),
        ("authorization", f"Bearer {token()}"),
    ]
    first = PREFACE + h2_kit.settings() + client.headers(1, fields, end=not body)
    for i in range(0, body, 16000):
        first += h2_kit.data(1, bytes(min(16000, body - i)), end=i + 16000 >= body)
    second = client.headers(3, [(":method", "GET"), *fields[1:]], end=True)
    answers = h2_kit.settings() + server.headers(1, h2_kit.response(200), end=True)
    return first, second, answers, server.headers(3, h2_kit.response(200), end=True)


def segments(side: bool, at: float, offset: int, data: bytes) -> list[Segment]:
    """``data`` cut into 1,460-byte segments from stream ``offset``, a millisecond apart."""
    return [
        (at + i / 1_460_000, side, offset + i, data[i : i + 1460])
        for i in range(0, len(data), 1460)
    ]


def test_an_http2_header_block_retransmitted_after_exp_fails(
    tmp_path: Path, reader: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first, _, answer_1, _ = h2_client()
    sent = segments(True, EXP - 600, 0, first)
    answer = segments(False, EXP + 400.05, 0, answer_1)
    path = write(tmp_path / "h2.pcap", [*sent, *segments(True, EXP + 400, 0, first), *answer])
    assert flags(path, reader) == [("GET", ("expired", "actor-expired"))]
    code, out = verify(path, capsys)
    assert code == 1 and "by its request's last copy, 10:06:40 UTC" in out, out
    late = segments(True, EXP + 900, 0, first)  # after the answer: changes nothing
    path = write(tmp_path / "h2-after.pcap", [*sent, *answer, *late])
    assert flags(path, reader) == [("GET", ())]


def test_an_http2_copy_dates_only_the_stream_whose_block_it_holds(
    tmp_path: Path, reader: str
) -> None:
    """Stream 1 (a POST whose 64 KB body the reader skips) and stream 3: a later copy of
    stream 3's HEADERS dates stream 3 only, of stream 1's HEADERS stream 1 only."""
    first, second, answer_1, answer_3 = h2_client(body=65536)
    sent = [*segments(True, EXP - 600, 0, first), *segments(True, EXP - 590, len(first), second)]
    answer = segments(False, EXP + 400.05, 0, answer_1 + answer_3)
    late = ("expired", "actor-expired")
    again = segments(True, EXP + 400, len(first), second)
    path = write(tmp_path / "3.pcap", [*sent, *again, *answer])
    assert flags(path, reader) == [("POST", ()), ("GET", late)]
    path = write(tmp_path / "1.pcap", [*sent, segments(True, EXP + 400, 0, first)[0], *answer])
    assert flags(path, reader) == [("POST", late), ("GET", ())]


def test_a_copy_of_body_bytes_between_two_http2_blocks_dates_neither(
    tmp_path: Path, reader: str
) -> None:
    first, second, answer_1, answer_3 = h2_client(body=65536)
    sent = [*segments(True, EXP - 600, 0, first), *segments(True, EXP - 590, len(first), second)]
    body_tail = segments(True, EXP + 400, 0, first)[-1]  # stream 1's last DATA bytes
    answer = segments(False, EXP + 400.05, 0, answer_1 + answer_3)
    path = write(tmp_path / "body.pcap", [*sent, body_tail, *answer])
    assert flags(path, reader) == [("POST", ()), ("GET", ())]


def test_an_http2_block_copied_after_its_answer_began_changes_nothing(
    tmp_path: Path, reader: str
) -> None:
    """The server's HEADERS came, the body it answers with (a metadata document, which is
    kept) still to come: it had read the request, so a later copy of its block changes
    nothing."""
    client, server = h2_kit.Peer(), h2_kit.Peer()
    fields = [
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "mail.contoso.com"),
        (":path", "/metadata/json/1"),
        ("authorization", f"Bearer {token()}"),
    ]
    first = PREFACE + h2_kit.settings() + client.headers(1, fields, end=True)
    head = h2_kit.settings() + server.headers(1, h2_kit.response(200))
    path = write(
        tmp_path / "answering.pcap",
        [
            *segments(True, EXP - 600, 0, first),
            (EXP - 599, False, 0, head),
            *segments(True, EXP + 400, 0, first),
            (EXP + 402, False, len(head), h2_kit.data(1, b"{}", end=True)),
        ],
    )
    assert flags(path, reader) == [("GET", ())]


def test_an_http2_block_whose_last_segment_came_after_exp_fails(
    tmp_path: Path, reader: str
) -> None:
    first, _, answer_1, _ = h2_client()
    start, end = segments(True, EXP - 600, 0, first)[0], segments(True, EXP + 400, 0, first)[1:]
    answer = segments(False, EXP + 400.05, 0, answer_1)
    path = write(tmp_path / "h2-late-end.pcap", [start, *end, *answer])
    assert flags(path, reader) == [("GET", ("expired", "actor-expired"))]


def test_an_h2c_upgrade_counts_the_http1_bytes_before_the_frames(
    tmp_path: Path, reader: str
) -> None:
    """The client's stream turns HTTP/2 after an HTTP/1.1 upgrade request (padded longer than
    the header block that follows, so a block placed from the wrong origin misses its copy)."""
    client, server = h2_kit.Peer(), h2_kit.Peer()
    upgrade = (
        b"GET / HTTP/1.1\r\nHost: mail.contoso.com\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nX-Pad: " + b"x" * 6000 + b"\r\n\r\n"
    )
    fields = [
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "mail.contoso.com"),
        (":path", "/EWS/Exchange.asmx"),
        ("authorization", f"Bearer {token()}"),
    ]
    frames = PREFACE + h2_kit.settings() + client.headers(3, fields, end=True)
    switched = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
    answers = switched + h2_kit.settings() + server.headers(1, h2_kit.response(200), end=True)
    answers += server.headers(3, h2_kit.response(200), end=True)
    tail = segments(True, EXP - 600, len(upgrade), frames)[-1]  # the block's last bytes
    path = write(
        tmp_path / "h2c.pcap",
        [
            *segments(True, EXP - 601, 0, upgrade),
            *segments(True, EXP - 600, len(upgrade), frames),
            (EXP + 400, True, tail[2], tail[3]),
            *segments(False, EXP + 400.05, 0, answers),
        ],
    )
    assert flags(path, reader)[-1] == ("GET", ("expired", "actor-expired"))


class Blocks:
    """A frame handler that records the streams ``resent`` names (the other callbacks ignore)."""

    def __init__(self) -> None:
        self.resent_streams: list[tuple[int, float]] = []

    def resent(self, stream_id: int, ts: float) -> None:
        self.resent_streams.append((stream_id, ts))

    def body_room(self, from_client: bool, stream_id: int, size: int) -> int:
        return 1 << 20  # keep every body: a hole inside one leaves the frames readable

    def body(self, from_client: bool, stream_id: int, chunk: bytes, more: int) -> int:
        return 1 << 20

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: 0


def test_a_hole_inside_a_kept_http2_body_counts_in_the_offsets() -> None:
    from analyzer.protocols.http2_frames import FrameReader

    client = h2_kit.Peer()
    handler = Blocks()
    reader = FrameReader(handler, True, table_known=True)
    head = PREFACE + client.headers(1, h2_kit.request("/a", method="POST"))
    body = h2_kit.data(1, bytes(5000), end=True)
    after = client.headers(3, h2_kit.request("/b"), end=True)
    reader.data(head + body[:1000], 1.0)
    assert not reader.gap(3000)  # bytes 1000-4000 of the frame never captured
    reader.data(body[4000:] + after, 2.0)
    reader.resent(len(head) + len(body), len(after), 5.0)  # stream 3's block again
    reader.resent(len(head) + 2000, 500, 6.0)  # body bytes: nobody's block
    assert handler.resent_streams == [(3, 5.0)]
