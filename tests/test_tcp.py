"""TCP reassembly fed segment by segment: order, duplicates, overlaps, wrap-around, holes, close."""

from __future__ import annotations

from analyzer.flows.tcp import ACK, FIN, RST, SYN, ConnectionInfo, TcpReassembler, shard_of
from analyzer.model import CaptureStats

CLIENT = bytes([10, 0, 0, 1])
SERVER = bytes([10, 0, 0, 2])
PSH_ACK = 0x18


class Recorder:
    """Records what it was given; setting ``skip`` makes the reassembler drop bytes."""

    def __init__(self) -> None:
        self.skip = 0
        self.dead = False
        self.chunks: list[tuple[bytes, float]] = []
        self.frames: list[int] = []  # the frame number given with each chunk
        self.gaps: list[int] = []
        self.closed_at: float | None = None

    @property
    def data_bytes(self) -> bytes:
        return b"".join(c for c, _ in self.chunks)

    def data(self, data, ts: float, frame: int = 0) -> None:
        self.chunks.append((bytes(data), ts))
        self.frames.append(frame)

    def gap(self, nbytes: int, ts: float) -> None:
        self.gaps.append(nbytes)

    def close(self, ts: float) -> None:
        self.closed_at = ts


class Pair:
    def __init__(self, info: ConnectionInfo) -> None:
        self.info = info
        self.a_to_b = Recorder()
        self.b_to_a = Recorder()
        self.finished: float | None = None

    def finish(self, ts: float) -> None:
        self.finished = ts


def make(**kwargs) -> tuple[TcpReassembler, list[Pair], CaptureStats]:
    pairs: list[Pair] = []
    stats = CaptureStats()

    def factory(info: ConnectionInfo) -> Pair:
        pairs.append(Pair(info))
        return pairs[-1]

    return TcpReassembler(factory, stats, **kwargs), pairs, stats


def client(r: TcpReassembler, ts: float, seq: int, data: bytes = b"", flags: int = PSH_ACK) -> None:
    r.feed(ts, CLIENT, 40000, SERVER, 80, seq % (1 << 32), 0, flags, data)


def server(r: TcpReassembler, ts: float, seq: int, data: bytes = b"", flags: int = PSH_ACK) -> None:
    r.feed(ts, SERVER, 80, CLIENT, 40000, seq % (1 << 32), 0, flags, data)


def handshake(r: TcpReassembler, isn: int = 1000, server_isn: int = 5000) -> None:
    client(r, 0.0, isn, flags=SYN)
    server(r, 0.1, server_isn, flags=SYN | ACK)


def test_in_order_stream_and_endpoints() -> None:
    r, pairs, stats = make()
    handshake(r)
    client(r, 1.0, 1001, b"hello ")
    client(r, 1.1, 1007, b"world")
    server(r, 1.2, 5001, b"ok")
    (p,) = pairs
    assert p.a_to_b.data_bytes == b"hello world"
    assert p.b_to_a.data_bytes == b"ok"
    assert (p.info.a_ip, p.info.a_port, p.info.b_ip, p.info.b_port) == (
        "10.0.0.1",
        40000,
        "10.0.0.2",
        80,
    )
    assert p.info.syn_seen is True
    assert stats.tcp_connections == 1


def test_out_of_order_segments_keep_their_own_timestamps() -> None:
    r, pairs, _ = make()
    handshake(r)
    client(r, 1.0, 1001 + 5, b"56789")
    client(r, 1.1, 1001 + 10, b"ABC")
    client(r, 1.2, 1001, b"01234")
    rec = pairs[0].a_to_b
    assert rec.data_bytes == b"0123456789ABC"
    assert rec.chunks == [(b"01234", 1.2), (b"56789", 1.0), (b"ABC", 1.1)]


def test_retransmissions_and_overlaps_deliver_each_byte_once() -> None:
    r, pairs, _ = make()
    handshake(r)
    client(r, 1.0, 1001, b"abcdef")
    client(r, 1.1, 1001, b"abcdef")  # exact duplicate
    client(r, 1.2, 1004, b"defghi")  # overlaps the tail, adds ghi
    client(r, 1.3, 1013, b"mn")  # future
    client(r, 1.4, 1013, b"mn")  # duplicate of a buffered future segment
    client(r, 1.5, 1010, b"jklm")  # fills the hole and overlaps the buffered one
    assert pairs[0].a_to_b.data_bytes == b"abcdefghijklmn"


def test_each_chunk_comes_with_the_frame_whose_bytes_it_is() -> None:
    """In order, out of order, and retransmitted with other bytes: the first copy is read,
    in order or buffered (a longer copy adds only its bytes past the first), with its frame."""
    r, pairs, _ = make()
    handshake(r)
    r.feed(1.0, CLIENT, 40000, SERVER, 80, 1001, 0, PSH_ACK, b"abc", 3)
    r.feed(1.1, CLIENT, 40000, SERVER, 80, 1001, 0, PSH_ACK, b"XYZ", 4)  # already delivered
    r.feed(1.2, CLIENT, 40000, SERVER, 80, 1007, 0, PSH_ACK, b"gh", 5)  # buffered
    r.feed(1.3, CLIENT, 40000, SERVER, 80, 1007, 0, PSH_ACK, b"GHij", 6)  # adds only "ij"
    r.feed(1.4, CLIENT, 40000, SERVER, 80, 1004, 0, PSH_ACK, b"def", 7)  # fills the hole
    rec = pairs[0].a_to_b
    assert rec.chunks == [(b"abc", 1.0), (b"def", 1.4), (b"gh", 1.2), (b"ij", 1.3)]
    assert rec.frames == [3, 7, 5, 6]


def test_sequence_wrap_around() -> None:
    r, pairs, _ = make()
    isn = (1 << 32) - 4
    handshake(r, isn=isn)
    client(r, 1.0, isn + 1, b"abc")  # last bytes before the wrap
    client(r, 1.2, isn + 1 + 6, b"ghi")  # after the wrap, out of order
    client(r, 1.1, isn + 1 + 3, b"def")
    assert pairs[0].a_to_b.data_bytes == b"abcdefghi"


def test_midstream_start_learns_sequence_from_first_data_and_peer_ack() -> None:
    r, pairs, _ = make()
    r.feed(1.0, CLIENT, 40000, SERVER, 80, 777, 9000, PSH_ACK, b"GET / HTTP/1.1\r\n\r\n")
    r.feed(1.1, SERVER, 80, CLIENT, 40000, 9000, 795, PSH_ACK, b"HTTP/1.1 200 OK\r\n")
    (p,) = pairs
    assert p.info.syn_seen is False
    assert p.a_to_b.data_bytes.startswith(b"GET /")
    assert p.b_to_a.data_bytes == b"HTTP/1.1 200 OK\r\n"


def test_bare_ack_of_unknown_connection_opens_nothing() -> None:
    r, pairs, stats = make()
    client(r, 1.0, 1, b"", flags=ACK)
    assert pairs == [] and stats.tcp_connections == 0


def test_skip_drops_bytes_without_delivery_and_resumes_mid_segment() -> None:
    r, pairs, _ = make()
    made = r.factory

    def skipping(info: ConnectionInfo) -> Pair:
        pair = made(info)
        pair.a_to_b.skip = 8
        return pair

    r.factory = skipping
    handshake(r)
    assert pairs == []  # the consumers are made when the first data comes
    client(r, 1.0, 1001, b"12345")
    rec = pairs[0].a_to_b
    client(r, 1.1, 1006, b"678abc")
    assert rec.data_bytes == b"abc"
    assert rec.skip == 0


def test_hole_given_up_when_buffer_cap_exceeded() -> None:
    r, pairs, stats = make(max_pending_bytes=10)
    handshake(r)
    client(r, 1.0, 1001, b"aa")
    client(r, 1.1, 1001 + 5, b"bbbbbb")
    client(r, 1.2, 1001 + 11, b"cccccc")  # buffered bytes now 12 > 10: give up the 3-byte hole
    rec = pairs[0].a_to_b
    assert rec.gaps == [3]
    assert rec.data_bytes == b"aabbbbbbcccccc"
    assert stats.gaps == 1


def test_fin_closes_after_all_data_even_when_fin_arrives_first() -> None:
    """A direction is closed when the connection ends, at the time its bytes reached its FIN
    (until then bytes after it would show it was not the end)."""
    r, pairs, _ = make()
    handshake(r)
    client(r, 1.0, 1001 + 3, b"def", flags=PSH_ACK | FIN)
    p = pairs[0]
    client(r, 1.1, 1001, b"abc")
    assert p.a_to_b.data_bytes == b"abcdef"
    assert p.a_to_b.closed_at is None  # the FIN is reached, the server's direction still open
    server(r, 1.2, 5001, b"", flags=FIN | ACK)
    assert (p.a_to_b.closed_at, p.b_to_a.closed_at, p.finished) == (1.1, 1.2, 1.2)
    assert r.dirs == {}


def test_rst_flushes_buffered_data_and_finishes() -> None:
    r, pairs, _ = make()
    handshake(r)
    client(r, 1.0, 1001 + 4, b"late")
    server(r, 1.1, 5001, b"", flags=RST)
    p = pairs[0]
    assert p.a_to_b.gaps == [4]
    assert p.a_to_b.data_bytes == b"late"
    assert p.finished == 1.1


def test_idle_connections_are_evicted() -> None:
    r, pairs, stats = make(idle_timeout=10.0)
    handshake(r)
    client(r, 1.0, 1001, b"x")
    r.feed(100.0, bytes([10, 0, 0, 9]), 1, SERVER, 80, 1, 0, SYN, b"")
    assert pairs[0].finished == 1.0
    assert stats.evicted == 1


def test_flush_finishes_everything() -> None:
    r, pairs, _ = make()
    handshake(r)
    client(r, 1.0, 1001, b"x")
    r.flush()
    assert pairs[0].finished == 1.0
    assert pairs[0].a_to_b.closed_at == 1.0


def test_conn_id_is_stable_and_short() -> None:
    info = ConnectionInfo("10.0.0.1", 1, "10.0.0.2", 80, 1.5, True)
    assert info.conn_id == ConnectionInfo("10.0.0.1", 1, "10.0.0.2", 80, 1.5, False).conn_id
    assert info.conn_id.startswith("C") and len(info.conn_id) == 12


def test_a_connection_closed_past_a_hole_is_finished_once() -> None:
    """Closing a connection delivers what waits past a hole; when that reaches the client's FIN
    and the server had closed already, the delivery itself ends the connection. It is finished
    once (an HTTP connection finished twice recorded its blind spots twice)."""
    finished: list[float] = []
    r, pairs, _stats = make()
    handshake(r)
    server(r, 0.2, 5001, b"ok", flags=FIN | ACK)
    client(r, 0.3, 1001, b"one ")
    client(r, 0.5, 1009, b"three", flags=FIN | ACK)  # "two " (1005) never arrives
    (p,) = pairs
    p.finish = finished.append  # type: ignore[method-assign]
    r.flush()
    assert p.a_to_b.data_bytes == b"one three" and p.a_to_b.gaps == [4]
    assert len(finished) == 1 and r.open_connections == 0


# -- control segments, taken as a receiver takes them (RFC 9293, RFC 5961) -------------------
def fin_warning() -> str:
    """The warning for bytes after a FIN of 10.0.0.1:40000 (its connection began at 0.0)."""
    conn_id = ConnectionInfo("10.0.0.1", 40000, "10.0.0.2", 80, 0.0, True).conn_id
    return (
        f"{conn_id} 10.0.0.1:40000 -> 10.0.0.2:80: data after a FIN: the FIN was not the end "
        "(one the receiver dropped: a bad checksum, an expired TTL, an injected segment); the "
        "bytes after it were read"
    )


def test_a_fin_behind_the_bytes_read_is_an_old_duplicate() -> None:
    r, pairs, stats = make()
    handshake(r)
    client(r, 1.0, 1001, b"GET /a HTTP/1.1\r\n\r\n")
    client(r, 1.1, 1020 - 5, flags=FIN | ACK)  # any stack discards it
    client(r, 1.2, 1020, b"more")
    server(r, 1.3, 5001, flags=FIN | ACK)
    p = pairs[0]
    assert p.a_to_b.data_bytes == b"GET /a HTTP/1.1\r\n\r\nmore"
    assert (p.a_to_b.closed_at, p.finished) == (None, None)  # the client's bytes did not end
    client(r, 1.4, 1024, flags=FIN | ACK)
    assert (p.a_to_b.closed_at, p.b_to_a.closed_at, p.finished) == (1.4, 1.3, 1.4)
    assert stats.warnings == []


def test_bytes_after_a_fin_are_read_and_the_fin_is_a_warning() -> None:
    """A FIN at the right number that the receiver dropped (a bad checksum, an expired TTL):
    the bytes after it show it was not the end. They are read, whichever path they take."""
    r, pairs, stats = make()
    handshake(r)
    client(r, 1.0, 1001, b"one ")
    client(r, 1.1, 1005, flags=FIN | ACK)
    client(r, 1.2, 1005, b"two ")
    client(r, 1.3, 1009, flags=FIN | ACK)  # the real end
    server(r, 1.4, 5001, flags=FIN | ACK)
    p = pairs[0]
    assert p.a_to_b.data_bytes == b"one two "
    assert (p.a_to_b.closed_at, p.finished) == (1.3, 1.4)
    assert stats.warnings == [fin_warning()]
    # bytes past a FIN on the in-order path of ``run``; the server's FIN does not end the
    # connection, as the client's bytes went past its FIN
    r, pairs, stats = make()
    handshake(r)
    client(r, 1.0, 1001, b"one ", flags=PSH_ACK | FIN)
    r.run([(1.1, 6, CLIENT, 40000, SERVER, 80, 1005, 0, PSH_ACK, memoryview(b"two "), 5)])
    server(r, 1.2, 5001, flags=FIN | ACK)
    p = pairs[0]
    assert (p.a_to_b.data_bytes, p.finished, stats.warnings) == (b"one two ", None, [])
    r.flush()
    assert (p.a_to_b.closed_at, p.finished, stats.warnings) == (1.2, 1.2, [fin_warning()])


def test_a_fin_ahead_of_a_hole_that_bytes_go_past_is_not_the_end() -> None:
    r, pairs, stats = make()
    handshake(r)
    client(r, 1.0, 1001 + 4, flags=FIN | ACK)  # ends at offset 4, bytes 0-3 not seen yet
    client(r, 1.1, 1001 + 4, b"late")  # past it
    client(r, 1.2, 1001, b"one ")
    r.flush()
    assert pairs[0].a_to_b.data_bytes == b"one late" and pairs[0].a_to_b.gaps == []
    assert stats.warnings == [fin_warning()]


def test_a_reset_ends_the_connection_only_at_the_next_sequence_number() -> None:
    r, pairs, _ = make()
    handshake(r)
    client(r, 1.0, 1001, b"abc")
    client(r, 1.1, 1004 + 100_000, flags=RST)  # out of the window: dropped
    client(r, 1.2, 1004 + 10, flags=RST)  # in it, not the next number: a challenge ACK
    client(r, 1.3, 1004 - 1, flags=RST)  # behind it
    client(r, 1.4, 1004, b"def")
    p = pairs[0]
    assert (p.a_to_b.data_bytes, p.finished) == (b"abcdef", None)
    client(r, 1.5, 1007, b"bytes of a reset", flags=RST | ACK)  # the next number: the end
    assert (p.a_to_b.data_bytes, p.a_to_b.closed_at, p.finished) == (b"abcdef", 1.5, 1.5)


def test_a_reset_past_a_fin_or_past_bytes_beyond_a_hole_is_at_the_next_number() -> None:
    """A FIN takes a sequence number; bytes buffered beyond a hole were sent, so the sender's
    next number is past them."""
    r, pairs, _ = make()
    handshake(r)
    client(r, 1.0, 1001, b"abc", flags=PSH_ACK | FIN)
    server(r, 1.1, 5001, b"ok")
    server(r, 1.2, 5003 + 1, flags=RST)  # one past the server's next byte, no FIN: ignored
    assert pairs[0].finished is None
    client(r, 1.3, 1004 + 1, flags=RST)  # one past the client's FIN
    assert (pairs[0].a_to_b.closed_at, pairs[0].b_to_a.closed_at, pairs[0].finished) == (
        1.0,
        1.3,
        1.3,
    )
    r, pairs, _ = make()
    handshake(r)
    client(r, 1.0, 1001, b"ab")
    client(r, 1.1, 1001 + 4, b"ef")  # "cd" never captured
    client(r, 1.2, 1001 + 5, flags=RST)  # inside the buffered bytes: not the sender's next
    assert pairs[0].finished is None
    client(r, 1.3, 1001 + 6, flags=RST)
    assert (pairs[0].a_to_b.data_bytes, pairs[0].a_to_b.gaps, pairs[0].finished) == (
        b"abef",
        [2],
        1.3,
    )


def test_a_stray_rst_and_syn_on_a_live_connection_change_nothing() -> None:
    """An RST out of the window, then a SYN inside the connection's numbers that the server
    answers with an ACK (RFC 5961's challenge ACK): one connection, read on."""
    r, pairs, _ = make()
    handshake(r)
    client(r, 1.0, 1001, b"abc")
    client(r, 1.1, 1004 + 100_000, flags=RST)
    client(r, 1.2, 1004 - 1, flags=SYN)
    r.feed(1.3, SERVER, 80, CLIENT, 40000, 5001, 1004, ACK, b"")
    client(r, 1.4, 1004, b"def")
    client(r, 1.5, 1000, flags=SYN)  # its own SYN again
    r.feed(1.6, SERVER, 80, CLIENT, 40000, 5000, 1001, SYN | ACK, b"")  # and its SYN-ACK
    client(r, 1.7, 1007, b"ghi")
    r.flush()
    (p,) = pairs
    assert (p.a_to_b.data_bytes, p.finished) == (b"abcdefghi", 1.7)


def test_the_addresses_reused_by_a_new_connection_start_it_anew() -> None:
    """After FIN both ways (a reuse from TIME_WAIT), after a reset at the next number, and when
    the old connection's end was not captured but the server answers the new SYN with a SYN-ACK."""
    r, pairs, _ = make()

    def start(ts: float, isn: int, server_isn: int) -> None:
        client(r, ts, isn, flags=SYN)
        r.feed(ts + 0.1, SERVER, 80, CLIENT, 40000, server_isn, isn + 1, SYN | ACK, b"")

    start(0.0, 1000, 5000)
    client(r, 1.0, 1001, b"one")
    client(r, 1.1, 1004, flags=FIN | ACK)
    server(r, 1.2, 5001, flags=FIN | ACK)
    start(2.0, 70_000, 90_000)
    client(r, 2.2, 70_001, b"two")
    client(r, 2.3, 70_004, flags=RST)
    start(3.0, 123, 456)
    client(r, 3.2, 124, b"three")
    start(4.0, 555_000, 9_000_000)  # on the live connection: the SYN-ACK says it is a new one
    client(r, 4.2, 555_001, b"four")
    r.flush()
    assert [p.a_to_b.data_bytes for p in pairs] == [b"one", b"two", b"three", b"four"]
    assert [(p.info.first_ts, p.info.syn_seen, p.finished) for p in pairs] == [
        (0.0, True, 1.2),
        (2.0, True, 2.3),
        (3.0, True, 4.0),
        (4.0, True, 4.2),
    ]


def test_a_stray_syn_does_not_make_a_connection_joined_mid_way_a_started_one() -> None:
    """The capture joins a connection whose client sends a SYN the server answers with an ACK:
    no SYN-ACK, so the start was not seen; and the SYN does not say where the bytes are."""
    for isn in (999, 50_000):  # next - 1, or anywhere else
        r, pairs, _ = make()
        client(r, 1.0, isn, flags=SYN)
        r.feed(1.1, SERVER, 80, CLIENT, 40000, 5001, 1000, ACK, b"")
        client(r, 1.2, 1000, b"GET")
        server(r, 1.3, 5001, b"200")
        r.flush()
        (p,) = pairs
        assert (p.info.syn_seen, p.info.first_ts) == (False, 1.2)
        assert (p.a_to_b.data_bytes, p.a_to_b.gaps, p.b_to_a.data_bytes) == (b"GET", [], b"200")
    # only the client's side captured: its SYN gives the stream's start, not a seen start
    r, pairs, _ = make()
    client(r, 1.0, 999, flags=SYN)
    client(r, 1.1, 1000, flags=ACK)
    client(r, 1.2, 1000, b"GET")
    r.flush()
    assert (pairs[0].info.syn_seen, pairs[0].a_to_b.data_bytes) == (False, b"GET")


def test_the_syn_the_syn_ack_answers_says_where_the_stream_starts() -> None:
    r, pairs, _ = make()
    client(r, 0.0, 1000, flags=SYN)
    client(r, 0.1, 9000, flags=SYN)  # another ISN: the one the server takes
    r.feed(0.2, SERVER, 80, CLIENT, 40000, 5000, 9001, SYN | ACK, b"")
    client(r, 1.0, 9001, b"abc")
    r.flush()
    (p,) = pairs
    assert (p.a_to_b.data_bytes, p.a_to_b.gaps, p.info.syn_seen) == (b"abc", [], True)


def test_data_on_a_syn_starts_after_its_sequence_number() -> None:
    """TCP Fast Open: the SYN's own number comes first, its bytes from ISN + 1; they are read
    when the SYN-ACK acknowledges them (else the client sends them again)."""
    request = b"GET / HTTP/1.1\r\n\r\n"
    r, pairs, _ = make()
    client(r, 0.0, 1000, request, flags=SYN)
    r.feed(0.1, SERVER, 80, CLIENT, 40000, 5000, 1001 + len(request), SYN | ACK, b"")
    client(r, 0.2, 1001 + len(request), b"more")
    (p,) = pairs
    assert (p.a_to_b.data_bytes, p.info.syn_seen) == (request + b"more", True)
    r, pairs, _ = make()
    client(r, 0.0, 1000, request, flags=SYN)
    r.feed(0.1, SERVER, 80, CLIENT, 40000, 5000, 1001, SYN | ACK, b"")  # not taken
    client(r, 0.2, 1001, request)  # sent again
    r.flush()
    assert pairs[0].a_to_b.chunks == [(request, 0.2)]
    r, pairs, _ = make()  # nothing after the SYN-ACK: read at the end of the capture
    client(r, 0.0, 1000, request, flags=SYN)
    r.feed(0.1, SERVER, 80, CLIENT, 40000, 5000, 1001 + len(request), SYN | ACK, b"")
    assert pairs == []
    r.flush()
    assert (pairs[0].a_to_b.data_bytes, pairs[0].finished) == (request, 0.1)


def test_syn_data_left_at_the_end_is_read_once_when_a_replay_sweeps() -> None:
    """At the end of the capture the embryos holding data on a SYN are replayed; a replayed
    packet may sweep (times so large that adding the sweep interval changes nothing) and read
    another such embryo first: each is read once (found by the random-segment property)."""
    r, pairs, _ = make()
    late = float(1 << 58)
    r.feed(late, SERVER, 80, CLIENT, 40001, 1000, 0, SYN, b"a")
    client(r, 0.0, 1000, b"b", flags=SYN)
    r.flush()
    assert sorted(p.b_to_a.data_bytes + p.a_to_b.data_bytes for p in pairs) == [b"a", b"b"]


def test_bytes_before_a_fin_that_were_never_captured_are_a_gap() -> None:
    """The FIN says where the sender's bytes end: those the capture lost before it are a gap
    when the connection ends (no later segment showed the hole)."""
    r, pairs, stats = make()
    handshake(r)
    client(r, 1.0, 1001, b"one ")
    client(r, 1.1, 1001 + 4 + 6, flags=FIN | ACK)  # "three " lost
    server(r, 1.2, 5001, flags=FIN | ACK)
    r.flush()
    p = pairs[0]
    assert (p.a_to_b.data_bytes, p.a_to_b.gaps, p.a_to_b.closed_at, stats.gaps) == (
        b"one ",
        [6],
        1.2,
        1,
    )
    # another worker's connection: its gap is that worker's to count
    key = (CLIENT, 40000, SERVER, 80)
    r, pairs, stats = make(shard=(1 - shard_of(key, 2), 2))
    handshake(r)
    client(r, 1.0, 1001, b"one ")
    client(r, 1.1, 1001 + 4 + 6, flags=FIN | ACK)
    r.flush()
    assert (pairs, stats.gaps) == ([], 0)
