"""Damage inside TCP streams must never read as a clean capture: ``verify`` must not PASS over it.

Two cases a review found giving a false PASS:

- a **hole inside a request head** (one segment lost in the middle): the parser joined the bytes
  on both sides of the hole into one head, so the request came out with a Host made of another
  header's tail (``ntent-Type: text/xml``) and its not-inspected record with it, out of a
  ``--server`` scope. A head with a hole is unreadable: it is lost (a request-lost record naming
  only what is known for sure, the Host only when it was read whole before the hole) and the
  parser resynchronises after the hole, at a line start or a segment start;
- a **retransmission with different bytes** (first copy Bearer, second copy Basic): the first
  copy was read and the second dropped without a word. Which copy the server read is unknown:
  a capture warning names the connection and direction, and the client's stretch counts as
  lost (INCONCLUSIVE unless ``--partial``).

Identical retransmissions, resegmented copies and out-of-order segments stay clean. The
reassembler and the parser are tested alone, then real pcaps written with scapy go through
``verify`` and ``analyze``, with the native walk and with the pure-Python reader.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import token_kit

from analyzer import analyze
from analyzer.cli import main
from analyzer.flows.tcp import ACK, RECENT, SYN, ConnectionInfo, TcpReassembler
from analyzer.model import CaptureStats
from analyzer.protocols.http1 import HttpStream
from analyzer.protocols.http_exchange import HttpConnection

# -- the reassembler alone ---------------------------------------------------------------------
A_IP, B_IP = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
PSH_ACK = 0x18


class Side:
    """A consumer that records its bytes and the conflicts it was told of (and gives up on
    the bytes ``bye``)."""

    def __init__(self, hook: bool = True) -> None:
        self.skip = 0
        self.dead = False
        self.chunks: list[bytes] = []
        self.conflicts: list[float] = []
        if not hook:
            self.conflict = None  # type: ignore[assignment]

    @property
    def bytes(self) -> bytes:
        return b"".join(self.chunks)

    def data(self, data: Any, ts: float, frame: int = 0) -> None:
        self.chunks.append(bytes(data))
        self.dead = self.chunks[-1] == b"bye"

    def gap(self, nbytes: int, ts: float) -> None:
        self.chunks.append(b"<gap>")

    def close(self, ts: float) -> None:
        pass

    def conflict(self, ts: float) -> None:
        self.conflicts.append(ts)


class Pair:
    def __init__(self, hook: bool) -> None:
        self.a_to_b = Side(hook)
        self.b_to_a = Side(hook)

    def finish(self, ts: float) -> None:
        pass


def reassembler(hook: bool = True) -> tuple[TcpReassembler, Pair, CaptureStats]:
    """A reassembler past the handshake of 10.0.0.1:40000 -> 10.0.0.2:80, and the consumers
    its connection gets (at its first byte of data)."""
    pair = Pair(hook)
    stats = CaptureStats()
    r = TcpReassembler(lambda info: pair, stats)
    r.feed(0.0, A_IP, 40000, B_IP, 80, 1000, 0, SYN, b"")
    r.feed(0.1, B_IP, 80, A_IP, 40000, 5000, 1001, SYN | ACK, b"")
    return r, pair, stats


def a(r: TcpReassembler, ts: float, offset: int, data: bytes) -> None:
    """Client bytes at stream offset ``offset`` (sequence number 1001 + offset)."""
    r.feed(ts, A_IP, 40000, B_IP, 80, 1001 + offset, 5001, PSH_ACK, data)


def b(r: TcpReassembler, ts: float, offset: int, data: bytes) -> None:
    r.feed(ts, B_IP, 80, A_IP, 40000, 5001 + offset, 1001, PSH_ACK, data)


def warning(n: int, src: str = "10.0.0.1:40000", dst: str = "10.0.0.2:80") -> str:
    conn_id = ConnectionInfo("10.0.0.1", 40000, "10.0.0.2", 80, 0.0, True).conn_id
    return (
        f"{conn_id} {src} -> {dst}: {n} TCP segment(s) retransmitted with different bytes: "
        "the first copy was read, which one the receiver took is unknown"
    )


def test_identical_retransmissions_resegmented_copies_and_reordering_are_clean() -> None:
    r, p, stats = reassembler()
    a(r, 1.0, 0, b"abcdef")
    a(r, 1.1, 0, b"abcdef")  # exact duplicate
    a(r, 1.2, 3, b"defghi")  # overlaps the tail with the same bytes, adds ghi
    a(r, 1.3, 12, b"mn")  # ahead of a hole
    a(r, 1.4, 12, b"mn")  # duplicate of the buffered segment
    a(r, 1.5, 12, b"m")  # shorter copy of it
    a(r, 1.6, 12, b"mnop")  # longer copy: adds op
    a(r, 1.7, 9, b"jklm")  # fills the hole, overlaps the buffered one with the same byte
    a(r, 1.8, 0, b"abcdefghijklmnop")  # one resegmented retransmission of everything
    b(r, 1.9, 3, b"lo")  # server bytes out of order
    b(r, 2.0, 0, b"hel")
    r.flush()
    assert p.a_to_b.bytes == b"abcdefghijklmnop" and p.b_to_a.bytes == b"hello"
    assert (p.a_to_b.conflicts, p.b_to_a.conflicts, stats.warnings) == ([], [], [])


def test_a_retransmission_with_other_bytes_is_a_conflict_and_the_first_copy_is_read() -> None:
    r, p, stats = reassembler()
    a(r, 1.0, 0, b"Bearer")
    a(r, 1.1, 0, b"Basic!")  # same sequence numbers, other bytes
    a(r, 1.2, 6, b" tok")
    assert p.a_to_b.bytes == b"Bearer tok" and p.a_to_b.conflicts == [1.1]
    assert stats.warnings == []  # said when the connection ends
    r.flush()
    assert stats.warnings == [warning(1)]


def test_an_overlap_whose_old_part_differs_is_a_conflict_and_its_new_part_is_read() -> None:
    r, p, stats = reassembler()
    a(r, 1.0, 0, b"abcdef")
    a(r, 1.1, 3, b"dXfghi")
    assert p.a_to_b.bytes == b"abcdefghi" and p.a_to_b.conflicts == [1.1]
    b(r, 1.2, 0, b"HTTP")
    b(r, 1.3, 2, b"XX")  # the server's direction is counted on its own
    b(r, 1.4, 2, b"TP")
    r.flush()
    assert p.b_to_a.conflicts == [1.3]
    assert stats.warnings == [warning(1), warning(1, "10.0.0.2:80", "10.0.0.1:40000")]


def test_buffered_copies_are_compared_with_each_other() -> None:
    r, p, _ = reassembler()
    a(r, 1.0, 0, b"ab")
    a(r, 1.1, 4, b"ef")  # ahead of a hole
    a(r, 1.2, 4, b"e")  # a shorter copy, same byte
    a(r, 1.3, 4, b"X")  # a shorter copy, another byte
    a(r, 1.4, 4, b"eXgh")  # a longer copy whose overlap differs: adds gh all the same
    a(r, 1.5, 6, b"gh")
    a(r, 1.6, 7, b"Xi")  # overlaps buffered bytes from another offset: seen when delivered
    assert p.a_to_b.conflicts == [1.3, 1.4]
    a(r, 1.7, 2, b"cd")  # fills the hole
    assert p.a_to_b.bytes == b"abcdefghi" and p.a_to_b.conflicts == [1.3, 1.4, 1.6]


def test_bytes_read_on_the_in_order_path_are_compared_too() -> None:
    """``run`` hands in-order segments to the consumer itself (not through ``feed``)."""
    r, p, _ = reassembler()
    a(r, 1.0, 0, b"POST ")  # opens the connection (through feed)
    key = (A_IP, 40000, B_IP, 80)
    r.run(
        [
            (1.1, 6, *key, 1006, 5001, PSH_ACK, memoryview(b"/a HTTP/1.1"), 4),
            (1.2, 6, *key, 1006, 5001, PSH_ACK, memoryview(b"/b HTTP/1.1"), 5),
        ]
    )
    assert p.a_to_b.bytes == b"POST /a HTTP/1.1" and p.a_to_b.conflicts == [1.2]


def test_recent_bytes_are_compared_across_segments_and_older_ones_are_not() -> None:
    r, p, _ = reassembler()
    segments = [bytes([65 + i % 26]) * 1000 for i in range(3 * RECENT // 1000)]
    for i, data in enumerate(segments):
        a(r, 1.0 + i / 100, i * 1000, data)
    end = len(segments) * 1000
    a(r, 2.0, end - RECENT, b"?")  # RECENT bytes back: still kept
    a(r, 2.1, 0, b"?")  # older than twice RECENT: no longer kept, cannot be compared
    a(r, 2.2, end - 1000, segments[-1])  # the same bytes again
    assert p.a_to_b.conflicts == [2.0]
    big = b"x" * (3 * RECENT)  # a segment larger than the window is kept whole
    a(r, 3.0, end, big)
    a(r, 3.1, end, b"y")
    assert p.a_to_b.conflicts == [2.0, 3.1]


def test_bytes_the_consumer_skipped_are_not_kept_and_a_dead_consumer_compares_nothing() -> None:
    r, p, stats = reassembler()
    p.a_to_b.skip = 5  # a body nobody reads
    a(r, 1.0, 0, b"abcdefgh")
    a(r, 1.1, 0, b"XXXXXfgh")  # differs only where the bytes were skipped
    assert p.a_to_b.bytes == b"fgh" and p.a_to_b.conflicts == []
    a(r, 1.2, 0, b"abcdefgX")
    assert p.a_to_b.conflicts == [1.2]
    p.b_to_a.dead = True
    b(r, 1.3, 0, b"abc")
    b(r, 1.4, 0, b"XYZ")
    assert p.b_to_a.chunks == [] and p.b_to_a.conflicts == []
    r.flush()
    assert stats.warnings == [warning(1)]


def test_a_consumer_that_gives_up_lets_its_kept_bytes_go() -> None:
    r, p, _ = reassembler()
    a(r, 1.0, 0, b"abc")
    direction = r.dirs[(A_IP, 40000, B_IP, 80)]
    assert direction.seen == b"abc"
    a(r, 1.1, 3, b"bye")  # the consumer gives up on these: it will read nothing more
    assert p.a_to_b.dead and direction.seen is None
    a(r, 1.2, 0, b"XYZbye")
    assert p.a_to_b.conflicts == []


def test_a_consumer_without_the_hook_still_gets_the_warning() -> None:
    r, p, stats = reassembler(hook=False)
    a(r, 1.0, 0, b"abc")
    a(r, 1.1, 0, b"abd")
    a(r, 1.2, 0, b"abe")
    r.flush()
    assert p.a_to_b.bytes == b"abc" and stats.warnings == [warning(2)]


# -- the HTTP parser alone -------------------------------------------------------------------
HEAD = b"POST /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nContent-Type: text/xml\r\n"


def test_a_head_with_a_hole_is_lost_never_joined_across_it() -> None:
    stream = HttpStream()
    assert stream.data(HEAD[:50], 1.0) == []  # the Host line is cut
    assert stream.gap(20, 1.1) == []
    # the rest of the head and its body: no start line, nothing is read from them
    assert (
        stream.data(HEAD[70:] + b"Authorization: Basic eA==\r\nContent-Length: 2\r\n\r\nxy", 1.2)
        == []
    )
    assert (stream.lost, stream.lost_host, stream.messages_seen) == (1, None, 0)
    (msg,) = stream.data(b"GET /next HTTP/1.1\r\nHost: mail.contoso.com\r\n\r\n", 1.3)
    assert (msg.uri, msg.header("host"), msg.after_gap, msg.ts) == (
        "/next",
        "mail.contoso.com",
        True,
        1.3,
    )


@pytest.mark.parametrize(
    ("before", "host"),
    [
        (HEAD, "mail.contoso.com"),  # read whole, and the next line began: known
        (HEAD[: HEAD.index(b"Content")], None),  # its line ended, but it might go on (folded)
        (HEAD[: HEAD.index(b"Content")] + b" ", None),  # and it does
        (HEAD[: HEAD.index(b"Content")] + b"\tx\r\nC", "mail.contoso.com x"),
        (HEAD[: HEAD.index(b".com")], None),  # cut inside the value
        (b"POST /EWS/Exchange.asmx HTTP/1.1\r\nContent-Type: text/xml\r\nX", None),  # not yet
        (b"HTTP/1.1 401 Unauthorized\r\nHost: mail.contoso.com\r\nX", None),  # not a request
        (b"junk\r\nHost: mail.contoso.com\r\nX", None),  # no start line
        (b"POST /EWS/Exchange.asmx HTTP/1.1\r\nHost: \r\nX", None),  # empty
    ],
)
def test_the_host_of_a_head_cut_by_a_hole_only_when_read_whole(
    before: bytes, host: str | None
) -> None:
    stream = HttpStream()
    assert len(stream.data(b"GET / HTTP/1.1\r\nHost: other.contoso.com\r\n\r\n" + before, 1.0)) == 1
    stream.gap(10, 1.1)
    assert (stream.lost, stream.lost_host) == (1, host)


def test_lost_stretches_name_a_host_only_when_all_of_them_name_it() -> None:
    stream = HttpStream()
    for part in (HEAD, HEAD):
        stream.data(part, 1.0)
        stream.gap(10, 1.1)
        stream.data(b"\r\nGET / HTTP/1.1\r\n\r\n", 1.2)  # back in step
    assert (stream.lost, stream.lost_host) == (2, "mail.contoso.com")
    stream.gap(10, 1.3)  # a hole between messages: whatever it held is unknown
    assert (stream.lost, stream.lost_host) == (3, None)
    stream.data(HEAD, 1.4)
    stream.gap(10, 1.5)
    assert (stream.lost, stream.lost_host) == (4, None)
    other = HttpStream()
    other.data(HEAD.replace(b"mail", b"web"), 1.0)
    other.gap(10, 1.1)
    other.data(b"\r\n", 1.2)
    other.data(HEAD, 1.3)
    other.gap(10, 1.4)
    assert (other.lost, other.lost_host) == (2, None)


def test_a_conflict_counts_as_a_lost_stretch_without_a_host() -> None:
    stream = HttpStream()
    assert len(stream.data(HEAD + b"\r\n", 1.0)) == 1
    stream.conflict(1.1)
    assert (stream.lost, stream.lost_host) == (1, None)
    dead = HttpStream()
    dead.data(b"\x00\x01 not http", 1.0)
    dead.conflict(1.1)
    assert dead.dead and dead.lost == 0


GET_X = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"


@pytest.mark.parametrize(
    ("feeds", "first"),
    [
        # the rest of a head cut by a hole, its body's tail without a newline, then a segment
        ([b"ent-Type: text/xml\r\n\r\n<soap/>", GET_X], 1),
        ([b"tail\r\nxy", GET_X], 1),  # a short tail that could begin a start line
        ([b"tail\r\nxy", GET_X[:9], GET_X[9:]], 1),  # and the start line split
        ([b"tail\r\nxy", GET_X[:2], GET_X[2:9], GET_X[9:]], 1),  # in three
        ([b"x" * 65, GET_X], 1),  # a long tail without a newline
        ([b"<soap/>", GET_X[:9], GET_X[9:]], 1),
        ([b"tail\r\n", b"GE", GET_X[2:]], 1),  # a start line split after a line end
        # a kept line that the next feed makes too long to be a start line: kept from the feed
        ([b"tail\r\nxxxx " + b"y" * 55, GET_X[:9], GET_X[9:]], 1),
    ],
)
def test_resynchronising_at_a_segment_start(feeds: list[bytes], first: int) -> None:
    stream = HttpStream()
    stream.gap(100, 0.5)
    got = [m for i, feed in enumerate(feeds) for m in stream.data(feed, 1.0 + i)]
    assert [(m.method, m.uri, m.after_gap, m.ts) for m in got] == [("GET", "/x", True, 1.0 + first)]
    assert stream.lost == 1


def connection() -> HttpConnection:
    info = ConnectionInfo("10.1.0.20", 40002, "10.1.0.10", 80, 1.0, True)
    return HttpConnection(info, lambda e: None, lambda m: 0, lambda q, m: 0)


def test_a_blind_spot_is_named_by_a_host_read_before_the_hole_never_after() -> None:
    www = HEAD.replace(b"mail", b"www") + b"\r\n"
    conn = connection()
    conn.a_to_b.data(www, 1.0)
    conn.a_to_b.gap(100, 1.1)  # a hole between requests
    conn.a_to_b.data(HEAD + b"\r\n", 1.2)  # read after the hole: not the lost request's
    conn.finish(2.0)
    assert (conn.requests_lost, conn.host) == (1, "www.contoso.com")
    conn = connection()
    conn.a_to_b.gap(100, 1.1)  # nothing was read before the hole
    conn.a_to_b.data(HEAD + b"\r\n", 1.2)
    conn.finish(2.0)
    assert (conn.requests_lost, conn.host) == (1, None)
    conn = connection()
    conn.a_to_b.data(www, 1.0)
    conn.a_to_b.data(HEAD, 1.1)
    conn.a_to_b.gap(100, 1.2)  # this head had named its own Host before the hole
    conn.finish(2.0)
    assert (conn.requests_lost, conn.host) == (1, "mail.contoso.com")
    conn = connection()
    conn.a_to_b.data(www, 1.0)
    conn.b_to_a.data(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1.1)  # the server
    conn.b_to_a.gap(100, 1.2)  # bytes lost on the server's side: no request was lost
    conn.finish(2.0)
    assert (conn.requests_lost, conn.host) == (0, "www.contoso.com")
    conn = connection()  # an answer to no request read: the server read one not seen here
    conn.b_to_a.data(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1.0)
    conn.finish(2.0)
    assert conn.requests_lost == 1


# -- real captures through verify and analyze --------------------------------------------------
CLIENT, SERVER = "10.1.0.20", "10.1.0.10"
T0 = token_kit.T0
SFB_CERT = str(token_kit.KEYS_DIR / "sfb.cert.pem")
STRICT = (
    "--client", CLIENT, "--server", "mail.contoso.com", "--path", "/EWS/", "--issuer", "skype",
    "--realm", "contoso.com", "--require-signature", "--keys", SFB_CERT,
)  # fmt: skip
BASIC = "Basic " + base64.b64encode(b"CONTOSO\\svc-sfb:P@ssw0rd").decode()
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n<ok/>"


BEARER = "Bearer " + token_kit.sfb_token()


def request(auth: str, *extra: str) -> bytes:
    lines = [
        "POST /EWS/Exchange.asmx HTTP/1.1",
        "Host: mail.contoso.com",
        "Content-Type: text/xml; charset=utf-8",
        f"Authorization: {auth}",
        *extra,
        "Content-Length: 7",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n<soap/>").encode()


def packets(flow: list[tuple[bool, bytes]], sport: int, t0: float, mss: int = 1460) -> list[Any]:
    """One connection SFB -> Exchange:80: handshake, ``flow`` (sent by the client?, bytes) cut
    at ``mss``, FIN both ways; 10 ms apart."""
    import scapy.all as scapy

    out: list[Any] = []
    seq = {True: 1000, False: 5000}

    def seg(client: bool, flags: str, payload: bytes = b"") -> None:
        src, dst, sp, dp = (CLIENT, SERVER, sport, 80) if client else (SERVER, CLIENT, 80, sport)
        tcp = scapy.TCP(sport=sp, dport=dp, flags=flags, seq=seq[client], ack=seq[not client])
        packet = scapy.Ether() / scapy.IP(src=src, dst=dst) / tcp
        out.append(packet / payload if payload else packet)
        seq[client] += len(payload) + ("S" in flags or "F" in flags)

    seg(True, "S")
    seg(False, "SA")
    seg(True, "A")
    for client, data in flow:
        for i in range(0, len(data), mss):
            seg(client, "PA", data[i : i + mss])
    seg(True, "FA")
    seg(False, "FA")
    seg(True, "A")
    for i, packet in enumerate(out):
        packet.time = t0 + i * 0.01
    return out


def payload(packet: Any) -> bytes:
    import scapy.all as scapy

    return bytes(packet[scapy.TCP].payload)


def retransmitted(packet: Any, data: bytes, later: float) -> Any:
    """A copy of ``packet`` (same sequence number) carrying ``data``, ``later`` seconds on."""
    import scapy.all as scapy

    copy = packet.copy()
    copy[scapy.Raw].load = data
    del copy[scapy.IP].len, copy[scapy.IP].chksum, copy[scapy.TCP].chksum
    copy.time = packet.time + later
    return copy


def write(path: Path, *connections: list[Any]) -> str:
    import scapy.all as scapy

    scapy.wrpcap(str(path), [p for packets in connections for p in packets])
    return str(path)


def good_connection() -> list[Any]:
    return packets([(True, request(BEARER)), (False, OK)], 40001, T0)


def verify(capsys: pytest.CaptureFixture[str], path: str, *extra: str) -> tuple[int, dict]:
    code = main(["verify", path, *STRICT, "--json", *extra])
    return code, json.loads(capsys.readouterr().out)


def lost_record(sport: int, host: str | None) -> dict:
    info = ConnectionInfo(CLIENT, sport, SERVER, 80, T0 + 2, True)
    return {
        "kind": "request-lost",
        "conn_id": info.conn_id,
        "ts": T0 + 2,
        "client": f"{CLIENT}:{sport}",
        "server": f"{SERVER}:80",
        "host": host,
        "count": 1,
        "paths": [],
    }


def holed(tmp_path: Path, cut: bytes) -> tuple[str, list[Any]]:
    """The review's capture: a good OAuth connection, then a Basic request cut in 20-byte
    segments whose segment starting with ``cut`` is lost, answered; then a Bearer request
    on the same connection, answered."""
    second = packets(
        [(True, request(BASIC)), (False, OK), (True, request(BEARER)), (False, OK)],
        40002,
        T0 + 2,
        mss=20,
    )
    del second[next(i for i, p in enumerate(second) if payload(p).startswith(cut))]
    return write(tmp_path / "holed.pcap", good_connection(), second), second


def test_a_hole_in_a_request_head_is_inconclusive_not_a_pass(
    reader: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, second = holed(tmp_path, b"mail.contoso.com\r\nCo")  # the Host line's segment
    code, data = verify(capsys, path)
    rule = data["rules"][0]
    assert (code, data["result"], rule["result"]) == (2, "INCONCLUSIVE", "INCONCLUSIVE")
    assert rule["coverage"]["not_inspected"] == [lost_record(40002, None)]
    assert rule["coverage"]["blind_spots"] == [
        "request bytes lost 1 time on 1 connection to 10.1.0.10:80: those requests' "
        "credentials are unknown"
    ]
    assert data["warnings"] == [f"{path}: 1 TCP gap: bytes missing from the capture"]
    # the events before and after the hole are read as they were sent; nothing is made up
    # from the bytes around it (no Basic event, no Host "ntent-Type: text/xml; ...")
    events = analyze(path, keys=[SFB_CERT]).result.events
    starts = [i for i, p in enumerate(second) if payload(p) == request(BEARER)[:20]]
    frame = len(good_connection()) + 1 + starts[-1]  # numbered from 1, as tshark does
    assert [(e.client_port, e.scheme, e.host, e.uri, e.status, e.frame) for e in events] == [
        (40001, "bearer", "mail.contoso.com", "/EWS/Exchange.asmx", 200, 4),
        # its answer passed before the hole was given up (at the end): left unpaired
        (40002, "bearer", "mail.contoso.com", "/EWS/Exchange.asmx", None, frame),
    ]
    code, data = verify(capsys, path, "--partial")
    assert (code, data["result"]) == (0, "PASS")


def test_a_hole_after_the_host_line_keeps_the_host(
    reader: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = holed(tmp_path, b"; charset=utf-8\r\nAut")
    code, data = verify(capsys, path)
    assert (code, data["result"]) == (2, "INCONCLUSIVE")
    assert data["rules"][0]["coverage"]["not_inspected"] == [lost_record(40002, "mail.contoso.com")]


def conflicting(tmp_path: Path, first: str, second: str) -> str:
    """One request sent as ``first``, then a copy of its segment (same sequence number, same
    length: the shorter one padded with a header) carrying ``second``."""
    a, b = request(first), request(second)
    pad = f"X-Pad: {'p' * (abs(len(a) - len(b)) - 9)}"
    a, b = (request(first, pad), b) if len(a) < len(b) else (a, request(second, pad))
    assert len(a) == len(b)
    conn = packets([(True, a), (False, OK)], 40002, T0 + 2, mss=100_000)
    index = next(i for i, p in enumerate(conn) if payload(p) == a)
    conn.insert(index + 1, retransmitted(conn[index], b, 0.001))
    return write(tmp_path / "conflict.pcap", conn)


def conflict_warning(path: str) -> str:
    conn_id = ConnectionInfo(CLIENT, 40002, SERVER, 80, T0 + 2, True).conn_id
    return (
        f"{path}: {conn_id} {CLIENT}:40002 -> {SERVER}:80: 1 TCP segment(s) retransmitted with "
        "different bytes: the first copy was read, which one the receiver took is unknown"
    )


def test_a_retransmission_with_other_bytes_is_inconclusive_with_a_warning(
    reader: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = conflicting(tmp_path, BEARER, BASIC)
    code, data = verify(capsys, path)
    rule = data["rules"][0]
    assert (code, data["result"]) == (2, "INCONCLUSIVE")
    assert data["warnings"] == [conflict_warning(path)]
    assert rule["coverage"]["damage"] == [conflict_warning(path)]
    # named by the Host read before the conflict came to light (the first copy's)
    assert rule["coverage"]["not_inspected"] == [lost_record(40002, "mail.contoso.com")]
    (event,) = analyze(path, keys=[SFB_CERT]).result.events
    assert (event.scheme, event.host, event.status) == ("bearer", "mail.contoso.com", 200)
    code, data = verify(capsys, path, "--partial")
    assert (code, data["result"], data["warnings"]) == (0, "PASS", [conflict_warning(path)])
    # the other way round, the Basic copy is read: a FAIL, still with the warning
    path = conflicting(tmp_path, BASIC, BEARER)
    code, data = verify(capsys, path)
    assert (code, data["result"], data["warnings"]) == (1, "FAIL", [conflict_warning(path)])


def test_identical_retransmissions_and_reordered_segments_pass_clean(
    reader: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = request(BEARER)
    conn = packets([(True, data), (False, OK)], 40002, T0 + 2, mss=300)
    first = next(i for i, p in enumerate(conn) if payload(p) == data[:300])
    conn[first + 1], conn[first + 2] = conn[first + 2], conn[first + 1]  # out of order
    conn.insert(first + 3, retransmitted(conn[first], data[:300], 0.001))  # same bytes
    conn.insert(first + 4, retransmitted(conn[first], data[:900], 0.002))  # resegmented
    path = write(tmp_path / "clean.pcap", good_connection(), conn)
    code, verdict = verify(capsys, path)
    assert (code, verdict["result"], verdict["warnings"]) == (0, "PASS", [])
    assert verdict["rules"][0]["coverage"]["not_inspected"] == []
    result = analyze(path, keys=[SFB_CERT]).result
    assert [(e.client_port, e.scheme, e.status) for e in result.events] == [
        (40001, "bearer", 200),
        (40002, "bearer", 200),
    ]
    assert result.not_inspected == []


# -- stray, forged or dropped control segments, in real captures ----------------------------
class Wire:
    """One connection SFB -> Exchange:80 written segment by segment, so that a test can put a
    control segment anywhere: ``seq`` holds each side's next sequence number; 10 ms apart."""

    def __init__(self, sport: int, t0: float, handshake: bool = True) -> None:
        self.sport, self.t0 = sport, t0
        self.out: list[Any] = []
        self.seq = {True: 1001, False: 5001}
        if handshake:
            self.raw(True, "S", seq=1000, ack=0)
            self.raw(False, "SA", seq=5000)
            self.raw(True, "A")

    def raw(
        self,
        client: bool,
        flags: str,
        data: bytes = b"",
        seq: int | None = None,
        ack: int | None = None,
        **fields: Any,
    ) -> Wire:
        """One segment (at the side's next number unless ``seq``); ``fields`` go to scapy's
        TCP, or its IP header when prefixed ``ip_`` (``ip_ttl=1``)."""
        import scapy.all as scapy

        src, dst, sp, dp = (
            (CLIENT, SERVER, self.sport, 80) if client else (SERVER, CLIENT, 80, self.sport)
        )
        ip = {k[3:]: v for k, v in fields.items() if k.startswith("ip_")}
        tcp = {k: v for k, v in fields.items() if not k.startswith("ip_")}
        seq = self.seq[client] if seq is None else seq
        ack = self.seq[not client] if ack is None else ack
        packet = scapy.Ether() / scapy.IP(src=src, dst=dst, **ip)
        packet = packet / scapy.TCP(sport=sp, dport=dp, flags=flags, seq=seq, ack=ack, **tcp)
        packet = packet / data if data else packet
        packet.time = self.t0 + len(self.out) * 0.01
        self.out.append(packet)
        return self

    def send(self, client: bool, data: bytes) -> Wire:
        self.raw(client, "PA", data)
        self.seq[client] += len(data)
        return self

    def exchange(self, *pairs: tuple[bytes, bytes]) -> Wire:
        for request_, answer in pairs:
            self.send(True, request_).send(False, answer)
        return self

    def close(self) -> list[Any]:
        self.raw(True, "FA")
        self.seq[True] += 1
        self.raw(False, "FA")
        self.seq[False] += 1
        self.raw(True, "A")
        return self.out


def post(path: str, *lines: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: mail.contoso.com", *lines, "Content-Length: 0"]
    return "\r\n".join([*head, "", ""]).encode()


FAVICON = (
    b"GET /favicon.ico HTTP/1.1\r\nHost: mail.contoso.com\r\n\r\n",
    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
)
AUTODISCOVER = "/autodiscover/autodiscover.svc"
EWS = "/EWS/Exchange.asmx"


def ntlm_logon(path: str) -> list[tuple[bytes, bytes]]:
    """The legs of an NTLM logon of CONTOSO\\svc-sfb at ``path`` (computed messages)."""
    from test_connection_auth import b64, ntlm_blobs

    type1, type2, type3 = ntlm_blobs()
    challenge = f"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: NTLM {b64(type2)}\r\n"
    return [
        (
            post(path, f"Authorization: NTLM {b64(type1)}"),
            (challenge + "Content-Length: 0\r\n\r\n").encode(),
        ),
        (post(path, f"Authorization: NTLM {b64(type3)}"), OK),
    ]


def control_capture(tmp_path: Path, conn: list[Any]) -> str:
    return write(tmp_path / "control.pcap", good_connection(), conn)


def fin_warning(path: str) -> str:
    conn_id = ConnectionInfo(CLIENT, 40002, SERVER, 80, T0 + 2, True).conn_id
    return (
        f"{path}: {conn_id} {CLIENT}:40002 -> {SERVER}:80: data after a FIN: the FIN was not the "
        "end (one the receiver dropped: a bad checksum, an expired TTL, an injected segment); "
        "the bytes after it were read"
    )


def scheme_events(path: str) -> list[tuple]:
    return [
        (e.client_port, e.method, e.uri, e.scheme, e.status)
        for e in analyze(path, keys=[SFB_CERT]).result.events
    ]


def test_an_old_fin_before_an_ntlm_logon_hides_nothing(
    reader: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A client FIN five bytes behind what it sent (an old duplicate any stack discards), then
    the whole NTLM exchange at EWS on the same connection: read, a FAIL."""
    wire = Wire(40002, T0 + 2).exchange(FAVICON)
    wire.raw(True, "FA", seq=wire.seq[True] - 5)
    path = control_capture(tmp_path, wire.exchange(*ntlm_logon(EWS)).close())
    code, data = verify(capsys, path)
    assert (code, data["result"], data["warnings"]) == (1, "FAIL", [])
    assert scheme_events(path) == [
        (40001, "POST", EWS, "bearer", 200),
        (40002, "POST", EWS, "ntlm", 401),
        (40002, "POST", EWS, "ntlm", 200),
    ]


@pytest.mark.parametrize("dropped", [{"chksum": 0xDEAD}, {"ip_ttl": 1}], ids=["checksum", "ttl"])
def test_bytes_after_a_fin_the_server_dropped_are_read_with_a_warning(
    reader: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], dropped: dict
) -> None:
    """A FIN at the right number that never reached the server (a bad TCP checksum; a TTL of
    1, expiring after the capture point), then NTLM at EWS: bytes after a FIN show it was not
    the end. They are read (a FAIL) and the FIN is damage."""
    wire = Wire(40002, T0 + 2).exchange(FAVICON).raw(True, "FA", **dropped)
    path = control_capture(tmp_path, wire.exchange(*ntlm_logon(EWS)).close())
    code, data = verify(capsys, path)
    assert (code, data["result"], data["warnings"]) == (1, "FAIL", [fin_warning(path)])
    assert [e[2:] for e in scheme_events(path)[1:]] == [(EWS, "ntlm", 401), (EWS, "ntlm", 200)]


def test_a_stray_rst_and_syn_do_not_cut_calls_from_their_logon(
    reader: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An NTLM logon at autodiscover, an RST out of the window, a SYN the server answers with
    an ACK (RFC 5961), then a header-less EWS call: still the logon's connection, NTLM at EWS."""
    wire = Wire(40002, T0 + 2).exchange(*ntlm_logon(AUTODISCOVER))
    wire.raw(True, "R", seq=wire.seq[True] + 100_000, ack=0)
    wire.raw(True, "S", seq=wire.seq[True] - 1, ack=0)
    wire.raw(False, "A")
    path = control_capture(tmp_path, wire.exchange((post(EWS), OK)).close())
    code, data = verify(capsys, path)
    assert (code, data["result"], data["warnings"]) == (1, "FAIL", [])
    events = analyze(path, keys=[SFB_CERT]).result.events
    assert [(e.uri, e.scheme, e.user, e.status) for e in events[-1:]] == [
        (EWS, "ntlm", "svc-sfb", 200)
    ]


def test_a_stray_syn_does_not_make_a_connection_joined_mid_way_seen_from_its_start(
    reader: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The capture joins a connection (its logon not seen), whose client sends a SYN the
    server answers with an ACK: no SYN-ACK, no start seen; the header-less calls are a blind
    spot."""
    wire = Wire(40002, T0 + 2, handshake=False)
    wire.raw(True, "S", seq=wire.seq[True] - 1, ack=0).raw(False, "A")
    path = control_capture(tmp_path, wire.exchange((post(EWS), OK), (post(EWS), OK)).close())
    code, data = verify(capsys, path)
    spots = data["rules"][0]["coverage"]["not_inspected"]
    assert (code, data["result"]) == (2, "INCONCLUSIVE")
    assert [(n["kind"], n["count"], n["paths"]) for n in spots] == [
        ("connection-auth-unseen", 2, [EWS])
    ]


def test_a_request_on_a_syn_is_read_from_its_first_byte(
    reader: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """TCP Fast Open: a Basic request carried by the SYN, acknowledged by the SYN-ACK."""
    sent = request(BASIC)
    wire = Wire(40002, T0 + 2, handshake=False)
    wire.raw(True, "S", sent, seq=1000, ack=0)
    wire.seq[True] += len(sent)
    wire.raw(False, "SA", seq=5000).raw(True, "A").send(False, OK)
    path = control_capture(tmp_path, wire.close())
    code, data = verify(capsys, path)
    assert (code, data["result"], data["warnings"]) == (1, "FAIL", [])
    assert scheme_events(path)[1:] == [(40002, "POST", EWS, "basic", 200)]


def test_a_request_lost_before_the_fins_is_inconclusive(
    reader: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Basic request and its answer never captured, then FIN both ways: the FINs' numbers
    show the bytes that are missing."""
    wire = Wire(40002, T0 + 2).exchange((request(BEARER), OK))
    wire.send(True, request(BASIC)).send(False, OK)
    del wire.out[-2:]
    path = control_capture(tmp_path, wire.close())
    code, data = verify(capsys, path)
    assert (code, data["result"]) == (2, "INCONCLUSIVE")
    assert data["warnings"] == [f"{path}: 2 TCP gaps: bytes missing from the capture"]
    # named by the Host of the request read before the hole
    lost = lost_record(40002, "mail.contoso.com")
    assert data["rules"][0]["coverage"]["not_inspected"] == [lost]


# -- bytes lost at the very end of a stream: only the peer's ACK tells -----------------------
@pytest.mark.parametrize("acks", [["A"], ["A", "A"], ["FA"]], ids=["ack", "two-acks", "fin"])
def test_a_request_lost_at_the_end_of_the_capture_is_inconclusive(
    reader: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], acks: list[str]
) -> None:
    """A Basic request never captured, nothing of the client after it (the capture stopped
    first), but the server's acknowledgement of it was - on a bare ACK (the reader's fast
    path), a second bare ACK after a duplicate one (the native walk's), or a FIN: before,
    nothing showed a hole and verify passed on the Bearer exchange alone."""
    wire = Wire(40002, T0 + 2).exchange((request(BEARER), OK))
    if len(acks) > 1:
        wire.raw(False, "A")  # a duplicate ACK of what was captured
    wire.seq[True] += len(request(BASIC))  # sent, not captured
    wire.raw(False, acks[-1])  # the server acknowledges it
    path = control_capture(tmp_path, wire.out)
    code, data = verify(capsys, path)
    assert (code, data["result"]) == (2, "INCONCLUSIVE")
    assert data["warnings"] == [f"{path}: 1 TCP gap: bytes missing from the capture"]
    lost = lost_record(40002, "mail.contoso.com")
    assert data["rules"][0]["coverage"]["not_inspected"] == [lost]


@pytest.mark.parametrize("unseen", [0, 1], ids=["acked-what-was-seen", "acked-a-fin-not-captured"])
def test_control_an_ack_of_what_was_captured_or_of_a_lost_fin_is_no_hole(
    reader: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], unseen: int
) -> None:
    wire = Wire(40002, T0 + 2).exchange((request(BEARER), OK))
    wire.seq[True] += unseen  # a FIN takes one number: its ACK alone shows no lost bytes
    wire.raw(False, "A")
    path = control_capture(tmp_path, wire.out)
    code, data = verify(capsys, path)
    assert (code, data["result"], data["warnings"]) == (0, "PASS", [])


def test_an_answer_lost_at_the_end_leaves_its_request_unanswered(tmp_path: Path) -> None:
    """The server's side too: its answer acknowledged by the client, never captured."""
    wire = Wire(40002, T0 + 2).exchange((request(BEARER), OK)).send(True, request(BEARER))
    wire.seq[False] += len(OK)
    wire.raw(True, "A")
    path = control_capture(tmp_path, wire.out)
    result = analyze(path, keys=[SFB_CERT]).result
    assert [e.status for e in result.events] == [200, 200, None]
    assert result.captures[0].gaps == 1
    assert result.not_inspected == []  # no request lost


@pytest.mark.parametrize("last", ["duplicate-ack", "stray-rst"])
def test_a_later_packet_with_an_older_ack_number_does_not_hide_the_loss(
    reader: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], last: str
) -> None:
    """The server's ACK of the lost request, then a late duplicate ACK (reordered) or a stray
    RST out of the window (ignored) carrying the older number: the furthest ACK tells."""
    wire = Wire(40002, T0 + 2).exchange((request(BEARER), OK))
    seen = wire.seq[True]
    wire.raw(False, "A")  # (a bare ACK first: the native walk absorbs the next two)
    wire.seq[True] += len(request(BASIC))  # sent, not captured
    wire.raw(False, "A")
    if last == "duplicate-ack":
        wire.raw(False, "A", ack=seen)
    else:
        wire.raw(False, "RA", seq=wire.seq[False] + 100_000, ack=seen)
    path = control_capture(tmp_path, wire.out)
    code, data = verify(capsys, path)
    assert (code, data["result"]) == (2, "INCONCLUSIVE")
    assert data["rules"][0]["coverage"]["not_inspected"] == [lost_record(40002, "mail.contoso.com")]


def test_control_a_stray_rsts_ack_number_tells_nothing(
    reader: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An RST out of the window is ignored, and so is its ACK number (here past anything the
    client sent: taken for a loss, it made a false gap)."""
    wire = Wire(40002, T0 + 2).exchange((request(BEARER), OK))
    wire.raw(False, "RA", seq=wire.seq[False] + 100_000, ack=wire.seq[True] + 5000)
    path = control_capture(tmp_path, wire.out)
    code, data = verify(capsys, path)
    assert (code, data["result"], data["warnings"]) == (0, "PASS", [])


@pytest.mark.parametrize("end", ["ack", "fins", "rst", "client-fin"])
def test_a_connection_whose_only_request_was_lost_is_inconclusive(
    reader: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], end: str
) -> None:
    """Handshake, the one request never captured, then the server's ACK of it (and both FINs
    past it, or the client's RST after it; or only the client's FIN past it): no data was
    captured on the connection, which was only counted (review 7: T1, T1b)."""
    wire = Wire(40002, T0 + 2)
    wire.seq[True] += len(request(BASIC))  # sent, not captured
    if end == "client-fin":
        wire.raw(True, "FA")
    else:
        wire.raw(False, "A")
    if end == "fins":
        wire.close()
    elif end == "rst":
        wire.raw(True, "R")
    path = control_capture(tmp_path, wire.out)
    code, data = verify(capsys, path)
    assert (code, data["result"]) == (2, "INCONCLUSIVE")
    (spot,) = data["rules"][0]["coverage"]["not_inspected"]
    assert (spot["kind"], spot["client"]) == ("request-lost", f"{CLIENT}:40002")


def test_control_a_connection_that_carried_nothing_is_only_counted(
    reader: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wire = Wire(40002, T0 + 2)
    wire.raw(False, "A")
    path = control_capture(tmp_path, wire.close())
    code, data = verify(capsys, path)
    assert (code, data["result"], data["warnings"]) == (0, "PASS", [])


def test_the_end_of_a_request_body_acknowledged_in_the_answer_is_a_gap(
    reader: str, tmp_path: Path
) -> None:
    """The last segment of a request body lost, the answer's ACK number past it: a gap in the
    body (the head, and so the credential, was read: no request lost)."""
    body = request(BEARER)
    wire = Wire(40002, T0 + 2).send(True, body[:-4])
    wire.seq[True] += 4  # the body's last bytes, never captured
    wire.send(False, OK)
    path = control_capture(tmp_path, wire.out)
    result = analyze(path, keys=[SFB_CERT]).result
    assert [e.status for e in result.events] == [200, 200]
    assert result.captures[0].gaps == 1
    assert result.not_inspected == []
