"""HTTP/1.x fed in pieces, and the shortcuts taken for speed.

A head split at any byte (or two) across feeds gives exactly the messages the whole head gives,
dated by the feed that held its first byte; the text parser, the header-name cache and the header
index give what the line-by-line bytes parser they replaced gave; ``TcpReassembler.run`` hands
in-order segments to consumers exactly as ``feed`` does.
"""

from __future__ import annotations

import re

from analyzer.flows.tcp import ACK, FIN, SYN, ConnectionInfo, TcpReassembler
from analyzer.model import CaptureStats
from analyzer.protocols import http1
from analyzer.protocols.http1 import MAX_LINE, HttpMessage, HttpStream, parse_head

# -- the parser this module's text parser replaced, kept as the reference --------------------
_WS = " \t\n\r\x0b\x0c"
_REF_REQUEST = re.compile(rb"([A-Za-z][A-Za-z0-9_\-]{0,31}) +(\S{1,16000}) +HTTP/(\d)\.(\d)\s*$")
_REF_STATUS = re.compile(rb"HTTP/(\d)\.(\d) +(\d{3})(?: ([^\r\n]*))?\s*$")


def reference_head(raw: bytes) -> tuple | None:
    """(is_request, version, method, uri, status, reason, headers) the old way, or None."""
    start, _, rest = raw.partition(b"\n")
    start = start.rstrip(b"\r")
    m = _REF_REQUEST.match(start)
    if m:
        method, uri, major, minor = m.groups()
        version = f"{major[0] - 48}.{minor[0] - 48}"
        head = [True, version, method.decode().upper(), uri.decode("latin-1"), 0, ""]
    else:
        m = _REF_STATUS.match(start)
        if not m:
            return None
        major, minor, status, reason = m.groups()
        version = f"{major[0] - 48}.{minor[0] - 48}"
        head = [False, version, "", "", int(status), (reason or b"").decode("latin-1")]
    headers: list[tuple[str, str]] = []
    for line in rest.decode("latin-1").split("\n") if rest else ():
        line = line.rstrip("\r")
        if not line:
            continue
        if line[0] in " \t":
            if headers:
                name, value = headers[-1]
                headers[-1] = (name, f"{value} {line.strip(_WS)}".strip())
            continue
        name, sep, value = line.partition(":")
        if sep:
            headers.append((name.strip(_WS).lower(), value.strip(" \t")))
    return (*head, headers)


def parsed(raw: bytes) -> tuple | None:
    msg = parse_head(raw, 1.0)
    if msg is None:
        return None
    return (msg.is_request, msg.version, msg.method, msg.uri, msg.status, msg.reason, msg.headers)


def key(msg: HttpMessage) -> tuple:
    return (
        msg.is_request, msg.ts, msg.version, msg.method, msg.uri, msg.status, msg.reason,
        msg.headers, msg.body, msg.body_truncated, msg.after_gap,
    )  # fmt: skip


def feed(pieces: list[tuple[bytes, float]], **kwargs) -> tuple[list[tuple], HttpStream]:
    """Feed (bytes, ts) pieces, honouring ``skip``; the finished messages and the stream."""
    stream = HttpStream(**kwargs)
    out: list[HttpMessage] = []
    for piece, ts in pieces:
        if stream.skip and stream.skip >= len(piece):
            stream.skip -= len(piece)
            continue
        if stream.skip:
            piece, stream.skip = piece[stream.skip :], 0
        out += stream.data(piece, ts)
    return [key(m) for m in out], stream


TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + "A" * 300 + ".sig"
STREAMS = [
    # keep-alive requests, the second pipelined behind a body
    (
        b"POST /token HTTP/1.1\r\nHost: login\r\nAuthorization: Bearer " + TOKEN.encode()
        + b"\r\nContent-Length: 5\r\n\r\nabcde"
        b"GET /x?y=1 HTTP/1.1\r\nhost:  a \t\r\nX-Dup: 1\r\nx-dup: 2\r\n\r\n"
    ),
    # bare LF, obs-fold, a field without colon, an empty value, a head ended by CRLF LF
    (
        b"HTTP/1.1 401 Unauthorized\nWWW-Authenticate: Bearer realm=\"r\",\n"
        b'  client_id="c"\nno colon\nEmpty:\r\nContent-Length: 0\r\n\n'
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
    ),
    # chunked response (kept), chunk-size CRLFs anywhere, then a 304 with a length it ignores
    (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n"
        b"4;x=y\r\nwiki\r\n5\r\npedia\r\n0\r\nT: 1\r\n\r\n"
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n"
        b"HTTP/1.1 200 OK\r\n\r\nclose-delimited"
    ),
]  # fmt: skip


def test_head_split_at_every_byte_gives_the_whole_heads_messages() -> None:
    for data in STREAMS:
        whole, _ = feed([(data, 1.0)], body_policy=lambda m: 100)
        assert whole
        for i in range(1, len(data)):
            got, _ = feed([(data[:i], 1.0), (data[i:], 2.0)], body_policy=lambda m: 100)
            # Each message is dated by the feed that held its first byte.
            assert [k[:1] + k[2:] for k in got] == [k[:1] + k[2:] for k in whole], i
            assert all(k[1] in (1.0, 2.0) for k in got)


def test_timestamps_follow_the_first_byte_across_feeds() -> None:
    data = STREAMS[0]
    second = data.index(b"GET /x")
    for i in range(1, len(data)):
        got, _ = feed([(data[:i], 1.0), (data[i:], 2.0)])
        assert [k[1] for k in got] == [1.0, 1.0 if second < i else 2.0], i


def test_head_split_at_every_pair_of_bytes() -> None:
    data = b"GET /a HTTP/1.1\r\nA: 1\r\n\r\nGET /b HTTP/1.1\nB: 2\n\n"
    whole, _ = feed([(data, 1.0)])
    assert [(k[4], k[7]) for k in whole] == [("/a", [("a", "1")]), ("/b", [("b", "2")])]
    for i in range(1, len(data)):
        for j in range(i, len(data)):
            pieces = [(data[:i], 1.0), (data[i:j], 2.0), (data[j:], 3.0)]
            got, _ = feed(pieces)
            assert [k[2:] for k in got] == [k[2:] for k in whole], (i, j)
            starts = (0, data.index(b"GET /b"))
            assert [k[1] for k in got] == [1.0 if s < i else 2.0 if s < j else 3.0 for s in starts]


def test_terminators_earliest_of_crlfcrlf_and_lflf() -> None:
    # LF LF before CRLF CRLF ends the head there; LF CR LF ends nothing. "B: 2" then loses the
    # sync, and the hunt for the next message runs at once over the bytes already buffered (it
    # used to wait for the next feed: a request after junk in the last segment was lost).
    data = b"GET / HTTP/1.1\r\nA: 1\n\nB: 2\r\n\r\nGET /2 HTTP/1.1\nC: 3\n\r\nD: 4\r\n\r\n"
    whole, stream = feed([(data, 1.0)])
    assert feed([(data, 1.0), (b"", 2.0)])[0] == whole
    assert [(k[1], k[4], k[7], k[10]) for k in whole] == [
        (1.0, "/", [("a", "1")], False),
        (1.0, "/2", [("c", "3"), ("d", "4")], True),
    ]
    assert not stream.dead and not stream._hunting
    for i in range(1, len(data)):
        assert feed([(data[:i], 1.0), (data[i:], 1.0), (b"", 1.0)])[0] == whole, i
    for step in (1, 2, 3):
        pieces = [(data[p : p + step], 1.0) for p in range(0, len(data), step)]
        assert feed(pieces)[0] == whole


def test_long_head_without_end_is_abandoned_or_resynced() -> None:
    line = b"GET / HTTP/1.1\r\nX: " + b"y" * (MAX_LINE + 10)
    pieces = [(line[p : p + 1460], 1.0) for p in range(0, len(line), 1460)]
    got, stream = feed(pieces)
    assert got == [] and not stream.dead  # a line break was seen: it may still end
    no_break = b"GET /" + b"y" * (MAX_LINE + 10)
    got, stream = feed([(no_break[p : p + 1000], 1.0) for p in range(0, len(no_break), 1000)])
    assert got == [] and stream.dead  # the first message: not HTTP after all
    got, stream = feed([(b"GET / HTTP/1.1\r\n\r\n", 1.0)] + [(b"z" * 1000, 1.0)] * 20)
    assert len(got) == 1 and not stream.dead and stream._hunting  # later: hunt for the next


HEADS = [
    b"GET /x HTTP/1.1\r\n\x0bHost\x0c: \xa0mail\x85 \t\r\nX-Sep\x1c: v\r\nno colon\r\n\r\n"
    b"Folded: a\r\n \x0b b \r\n\tc\r\nEmpty:\r",
    b"HTTP/1.0 401 Unauthorized\nWWW-Authenticate: NTLM",
    b"HTTP/1.1 200 OK\r\r\nA: x\r \r\nB: \r x\r\nC:\t\r\r\nD: y \r\n",
    b"get /lower HTTP/1.0 \x0b\r\n: no name\r\nName With Space : v : w\r\n\r\n\r\nAfter: blank",
    b" GET / HTTP/1.1",
    b"HTTP/1.1 200\r\n\tfold-first: x\r\nA: 1",
    b"HTTP/1.1 999 \xe9t\xe9\r\n\xc0\xc9: \xe0\r\n",
    b"HTTP/1.1 2000 no\r\n",
    b"GET / HTTP/1.1\r\nA:1\r\n\r\n",
    b"",
]


def test_text_parser_matches_the_bytes_reference() -> None:
    for raw in HEADS:
        assert parsed(raw) == reference_head(raw), raw
    starts = (b"GET /%s HTTP/1.1", b"HTTP/1.1 200 O%sK", b"HTTP/1.1 200%s", b"GET / HTTP/1.%s")
    fields = (b"\r\nN%s: v\r\nM: %sw%s\r\n%sL: x", b"\n%s\n%s: %s\n%s")
    for c in range(256):
        ch = bytes([c])
        for start in starts:
            raw = start.replace(b"%s", ch) + b"\r\nA: b"
            assert parsed(raw) == reference_head(raw), raw
        for f in fields:
            raw = b"HTTP/1.1 200 OK" + f.replace(b"%s", ch)
            assert parsed(raw) == reference_head(raw), raw


def test_exact_values_of_a_parsed_head() -> None:
    msg = parse_head(HEADS[2], 4.0)
    assert msg is not None
    assert (msg.status, msg.reason, msg.version, msg.ts) == (200, "OK", "1.1", 4.0)
    assert msg.headers == [("a", "x\r"), ("b", "\r x"), ("c", ""), ("d", "y")]
    msg = parse_head(HEADS[3], 5.0)
    assert msg is not None and (msg.method, msg.uri, msg.version) == ("GET", "/lower", "1.0")
    assert msg.headers == [("", "no name"), ("name with space", "v : w"), ("after", "blank")]
    msg = parse_head(HEADS[5], 6.0)
    assert msg is not None and msg.headers == [("a", "1")]  # a fold with nothing to continue
    assert parse_head(HEADS[4], 1.0) is None and parse_head(HEADS[7], 1.0) is None


def test_header_index_first_value_and_all_values() -> None:
    msg = parse_head(b"GET / HTTP/1.1\r\nX-Dup: 1\r\nHost: h\r\nx-dup: 2\r\nX-DUP:3", 1.0)
    assert msg is not None
    assert msg.header("x-dup") == "1" and msg.header("host") == "h"
    assert msg.header("X-Dup") is None and msg.header("missing") is None
    assert msg.header_all("x-dup") == ["1", "2", "3"] and msg.header_all("missing") == []
    built = HttpMessage(False, 1.0, "1.1", headers=[("a", "1"), ("b", "2"), ("a", "3")])
    assert built.header("a") == "1" and built.header_all("a") == ["1", "3"]
    assert built.header("b") == "2" and built.header_all("c") == []
    assert built == HttpMessage(False, 1.0, "1.1", headers=[("a", "1"), ("b", "2"), ("a", "3")])
    assert "_first" not in repr(built)


def test_name_cache_stays_bounded_and_changes_nothing() -> None:
    names = [f"X-Name-{i}" for i in range(http1._NAMES_MAX + 50)] + ["Y" * 100]
    raw = b"GET / HTTP/1.1\r\n" + "\r\n".join(f"{n}: {i}" for i, n in enumerate(names)).encode()
    for _ in range(2):  # cold and warm cache
        msg = parse_head(raw, 1.0)
        assert msg is not None
        assert msg.headers == [(n.lower(), str(i)) for i, n in enumerate(names)]
        assert len(http1._NAMES) <= http1._NAMES_MAX
        assert "Y" * 100 not in http1._NAMES  # long names are not cached
    assert parsed(raw) == reference_head(raw)


# -- TcpReassembler.run: in-order segments delivered inline, exactly as feed does -------------
class Consumer:
    """Records calls; asks to skip ``skip_after`` bytes after every delivery."""

    def __init__(self, skip_after: int, dies_after: int = -1) -> None:
        self.skip = 0
        self.dead = False
        self.skip_after = skip_after
        self.dies_after = dies_after
        self.log: list[tuple] = []

    def data(self, data, ts: float, frame: int = 0) -> None:
        self.log.append(("data", bytes(data), ts))
        self.skip = self.skip_after
        if len(self.log) == self.dies_after:
            self.dead = True

    def gap(self, nbytes: int, ts: float) -> None:
        self.log.append(("gap", nbytes, ts))

    def close(self, ts: float) -> None:
        self.log.append(("close", ts))


class Both:
    def __init__(self, info: ConnectionInfo, skip_after: int) -> None:
        self.a_to_b = Consumer(skip_after)
        self.b_to_a = Consumer(skip_after + 1, dies_after=3)
        self.finished: float | None = None

    def finish(self, ts: float) -> None:
        self.finished = ts


def _packets() -> list[tuple]:
    c, s = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    psh = 0x18
    out = [
        (0.0, 6, c, 4000, s, 80, 100, 0, SYN, b""),
        (0.1, 6, s, 80, c, 4000, 900, 101, SYN | ACK, b""),
    ]
    seq_c, seq_s, ts = 101, 901, 1.0
    for i in range(12):
        data = bytes([65 + i]) * (3 + i)
        if i == 5:  # out of order: the next segment first, then this one
            nxt = bytes([90]) * 4
            out.append((ts, 6, c, 4000, s, 80, seq_c + len(data), 0, psh, nxt))
            out.append((ts + 0.01, 6, c, 4000, s, 80, seq_c, 0, psh, data))
            seq_c += len(data) + len(nxt)
        else:
            out.append((ts, 6, c, 4000, s, 80, seq_c, 0, psh, data))
            seq_c += len(data)
        out.append((ts + 0.02, 6, s, 80, c, 4000, seq_s, seq_c, psh, data[::-1]))
        out.append((ts + 0.03, 6, c, 4000, s, 80, seq_c, seq_s, ACK, b""))  # bare ACK
        out.append((ts + 0.04, 6, c, 4000, s, 80, seq_c - 2, 0, psh, b"zz"))  # retransmission
        seq_s += len(data)
        ts += 1.0
    out.append((ts, 6, c, 4000, s, 80, seq_c, 0, FIN | ACK, b"end"))
    out.append((ts + 0.1, 6, s, 80, c, 4000, seq_s, 0, FIN | ACK, b""))
    out.append((ts + 0.2, 17, c, 53, s, 53, 0, 0, 0, b"udp"))
    return [(*p, frame) for frame, p in enumerate(out, 1)]  # numbered as a capture's frames


def _logs(use_run: bool, skip_after: int) -> list:
    made: list[Both] = []

    def factory(info: ConnectionInfo) -> Both:
        made.append(Both(info, skip_after))
        return made[-1]

    r = TcpReassembler(factory, CaptureStats())
    packets = _packets()
    if use_run:
        r.run(packets)
    else:
        for p in packets:
            if p[1] == 6:
                r.feed(p[0], p[2], p[3], p[4], p[5], p[6], p[7], p[8], memoryview(p[9]), p[10])
    r.flush()
    return [(b.a_to_b.log, b.b_to_a.log, b.finished) for b in made]


def test_run_delivers_in_order_segments_as_feed_does() -> None:
    for skip_after in (0, 2, 5, 40):
        via_run = _logs(True, skip_after)
        assert via_run == _logs(False, skip_after)
        ((a_log, b_log, finished),) = via_run
        assert a_log[0][:2] == ("data", b"AAA") and finished is not None
        assert len(b_log) == 4 and b_log[-1][0] == "close"  # dead after its third delivery
