"""Property-based fuzzing of every decoder that takes outside bytes (hypothesis).

Each test states a decoder's contract and lets hypothesis look for input that breaks it: the
decoder returns a result (of its documented shape) or raises only its documented error, within a
time bound (hypothesis ``deadline``, per example) and a memory bound (``tracemalloc`` peak over
the whole test). Strategies build inputs the way the wire does - captures from records and
blocks, frames from headers, HTTP from lines, tokens from base64url JSON, DER from tag-length-value
trees - and mix in raw junk, so the examples reach deep into each parser rather than dying at
the first magic number.

Budget: ``FUZZ_EXAMPLES`` examples per test (default 100: under a minute for the module);
``FUZZ_DEADLINE_MS`` per example (default 2000). Runs are derandomized (the same examples each
run, so the suite stays deterministic); ``FUZZ_SEED=random`` explores afresh. A longer, coverage-
guided campaign over the whole pipeline is ``bench/fuzz.py``.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import struct
import sys
import tracemalloc
import zlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from analyzer.auth import der, spnego  # noqa: E402
from analyzer.auth.challenges import describe_challenge  # noqa: E402
from analyzer.auth.ntlm import SIGNATURE, NtlmMessage, parse_ntlm, parse_ntlm_b64  # noqa: E402
from analyzer.auth.schemes import parse_challenges, parse_credential  # noqa: E402
from analyzer.flows.tcp import TcpReassembler  # noqa: E402
from analyzer.model import CaptureStats  # noqa: E402
from analyzer.oauth.diagnostics import MsDiagnostic, parse_ms_diagnostics  # noqa: E402
from analyzer.oauth.endpoints import decode_body, parse_token_response  # noqa: E402
from analyzer.oauth.keys import STATUSES, KeyFileError, KeyStore, verify_token  # noqa: E402
from analyzer.oauth.tokens import FORMATS, TokenDecoder  # noqa: E402
from analyzer.protocols.http1 import MAX_HEAD, MAX_LINE, HttpMessage, HttpStream  # noqa: E402
from analyzer.sources.linklayer import LinkDecoder  # noqa: E402
from analyzer.sources.pcapfile import CaptureError, read_packets, read_stream  # noqa: E402

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
DEADLINE = timedelta(milliseconds=int(os.environ.get("FUZZ_DEADLINE_MS", "2000")))
MEMORY_MB = 256  # peak traced allocation of one test, all its examples together (in a full
# run lazily built state of earlier tests can land here; test_caps.py holds the 400 MB ceiling
# per process in fresh processes)

fuzz = settings(
    max_examples=EXAMPLES,
    deadline=DEADLINE,
    derandomize=os.environ.get("FUZZ_SEED") != "random",
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)


@pytest.fixture(autouse=True)
def memory_bound() -> Iterator[None]:
    """Every example of the test together may not need more than MEMORY_MB at once."""
    tracemalloc.start()
    try:
        yield
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_MB << 20, f"peak {peak >> 20} MB"


_SCRATCH: list[Path] = []


def _scratch(factory: pytest.TempPathFactory) -> Path:
    """One folder for the examples' files (each example overwrites the last one's)."""
    if not _SCRATCH:
        _SCRATCH.append(factory.mktemp("fuzz"))
    return _SCRATCH[0]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- building blocks -----------------------------------------------------------------------------
u8, u16, u32 = (st.integers(0, (1 << n) - 1) for n in (8, 16, 32))
junk = st.binary(max_size=256)
EDGE32 = st.sampled_from([0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFF0])
any32 = st.one_of(u32, EDGE32)


@st.composite
def ipv4_tcp(draw: st.DrawFn, payload: bytes | None = None) -> bytes:
    """An IPv4 header (options sometimes), a TCP header (any flags and offsets) and a payload."""
    ihl = draw(st.sampled_from([5, 5, 5, 6, 15, 4, 0]))
    options = draw(st.binary(min_size=max(0, ihl - 5) * 4, max_size=max(0, ihl - 5) * 4))
    body = payload if payload is not None else draw(junk)
    doff = draw(st.sampled_from([5, 5, 8, 15, 4, 0]))
    tcp_opts = draw(st.binary(min_size=max(0, doff - 5) * 4, max_size=max(0, doff - 5) * 4))
    tcp = struct.pack(
        ">HHIIBBHHH", draw(u16), draw(u16), draw(any32), draw(any32), doff << 4, draw(u8), 0, 0, 0
    )
    total = draw(st.one_of(st.just(20 + len(options) + len(tcp) + len(tcp_opts) + len(body)), u16))
    frag = draw(st.sampled_from([0, 0, 0x4000, 0x2000, 0x0001, 0xFFFF]))
    proto = draw(st.sampled_from([6, 6, 6, 17, 1, 0]))
    ip = struct.pack(
        ">BBHHHBBH4s4s", 0x40 | ihl, 0, total, 0, frag, 64, proto, 0, b"\n\0\0\1", b"\n\0\0\2"
    )
    return ip + options + tcp + tcp_opts + body


@st.composite
def ipv6_tcp(draw: st.DrawFn) -> bytes:
    body = draw(ipv4_tcp())[20:]  # a TCP header and payload
    nh = draw(st.sampled_from([6, 17, 0, 43, 44, 51, 60, 58, 59]))
    ext = draw(st.binary(max_size=64))
    plen = draw(st.one_of(st.just(len(ext) + len(body)), u16))
    return (
        struct.pack(">IHBB16s16s", 0x60000000, plen, nh, 64, b"\0" * 15 + b"\1", b"\0" * 16)
        + ext
        + body
    )


@st.composite
def frame(draw: st.DrawFn) -> tuple[int, bytes]:
    """(link type, frame): Ethernet (with VLAN tags), raw IP, loopback, SLL, SLL2, NFLOG, other."""
    ip = draw(st.one_of(ipv4_tcp(), ipv6_tcp(), junk))
    linktype = draw(st.sampled_from([1, 1, 1, 101, 12, 14, 228, 229, 0, 108, 113, 276, 239, 147]))
    if linktype == 1:
        vlans = draw(st.lists(st.sampled_from([b"\x81\x00", b"\x88\xa8", b"\x91\x00"]), max_size=3))
        etype = (
            b"\x86\xdd"
            if ip[:1] and ip[0] >> 4 == 6
            else draw(st.sampled_from([b"\x08\x00", b"\x08\x06", b"\x86\xdd"]))
        )
        head = b"\0" * 12 + b"".join(v + b"\0\0" for v in vlans)
        return linktype, head[:12] + (vlans[0] if vlans else etype) + b"".join(
            b"\0\0" + (vlans[i + 1] if i + 1 < len(vlans) else etype) for i in range(len(vlans))
        ) + ip
    if linktype in (0, 108):
        af = draw(
            st.sampled_from(
                [b"\x02\0\0\0", b"\0\0\0\x02", b"\x1e\0\0\0", b"\x18\0\0\0", b"\x07\0\0\0"]
            )
        )
        return linktype, af + ip
    if linktype == 113:
        return linktype, b"\0" * 14 + draw(st.sampled_from([b"\x08\x00", b"\x86\xdd"])) + ip
    if linktype == 276:
        return linktype, draw(st.sampled_from([b"\x08\x00", b"\x86\xdd"])) + b"\0" * 18 + ip
    if linktype == 239:
        tlvs = draw(st.lists(st.tuples(st.integers(0, 20), st.binary(max_size=12)), max_size=3))
        body = b"".join(
            struct.pack("<HH", len(v) + 4, t) + v + b"\0" * (-len(v) % 4) for t, v in tlvs
        )
        return linktype, b"\x02\0\0\0" + body + struct.pack("<HH", len(ip) + 4, 9) + ip
    return linktype, ip


# -- captures: pcap records, pcapng blocks -------------------------------------------------------
@st.composite
def pcap_file(draw: st.DrawFn) -> bytes:
    order = draw(st.sampled_from(["<", ">"]))
    nano = draw(st.booleans())
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    records = draw(st.lists(frame(), max_size=12))
    linktype = (
        records[0][0]
        if records and draw(st.booleans())
        else draw(st.sampled_from([1, 101, 0, 113, 276, 239, 999]))
    )
    out = struct.pack(
        order + "IHHiIII",
        magic,
        draw(st.sampled_from([2, 2, 1])),
        4,
        0,
        0,
        draw(st.sampled_from([65535, 0, 64])),
        linktype,
    )
    for _lt, data in records:
        caplen = draw(st.one_of(st.just(len(data)), st.integers(0, len(data) + 64), EDGE32))
        olen = draw(st.one_of(st.just(len(data)), u32))
        ts = draw(st.one_of(st.just(1_772_442_000), u32))
        out += struct.pack(order + "IIII", ts, draw(u32), caplen, olen) + data
    cut = draw(st.integers(0, 40))
    return out[: len(out) - cut] if draw(st.booleans()) else out


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


@st.composite
def pcapng_file(draw: st.DrawFn) -> bytes:
    order = draw(st.sampled_from(["<", ">"]))

    def block(kind: int, body: bytes, length: int | None = None) -> bytes:
        body = _pad4(body)
        n = 12 + len(body) if length is None else length
        return struct.pack(order + "II", kind, n) + body + struct.pack(order + "I", n)

    def option(code: int, value: bytes) -> bytes:
        return _pad4(struct.pack(order + "HH", code, len(value)) + value)

    shb = struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1)
    out = block(0x0A0D0D0A, shb)
    for _ in range(draw(st.integers(0, 10))):
        kind = draw(
            st.sampled_from(["idb", "epb", "epb", "epb", "spb", "opb", "shb", "other", "raw"])
        )
        if kind == "idb":
            opts = b""
            for _ in range(draw(st.integers(0, 3))):
                code = draw(st.sampled_from([9, 14, 2, 0, 0xFFFF]))
                value = draw(
                    st.one_of(
                        st.binary(min_size=1, max_size=1), st.binary(min_size=8, max_size=8), junk
                    )
                )
                opts += option(code, value)
            linktype = draw(st.sampled_from([1, 101, 228, 229, 0, 113, 276, 239, 4242]))
            out += block(1, struct.pack(order + "HHI", linktype, 0, draw(u32)) + opts)
        elif kind in ("epb", "opb"):
            _lt, data = draw(frame())
            ifid = draw(st.one_of(st.integers(0, 3), u32))
            hi, lo = draw(u32), draw(u32)
            caplen = draw(st.one_of(st.just(len(data)), EDGE32, st.integers(0, len(data) + 64)))
            if kind == "epb":
                head = struct.pack(order + "IIIII", ifid, hi, lo, caplen, draw(u32))
                out += block(6, head + _pad4(data))
            else:
                head = struct.pack(order + "HHIIII", ifid & 0xFFFF, 0, hi, lo, caplen, draw(u32))
                out += block(2, head + _pad4(data))
        elif kind == "spb":
            _lt, data = draw(frame())
            out += block(
                3, struct.pack(order + "I", draw(st.one_of(st.just(len(data)), u32))) + data
            )
        elif kind == "shb":
            bom = draw(st.sampled_from([0x1A2B3C4D, 0x4D3C2B1A, 0]))
            out += block(0x0A0D0D0A, struct.pack(order + "IHHq", bom, 1, 0, -1))
        elif kind == "other":
            out += block(draw(u32), draw(junk), draw(st.one_of(st.none(), u32)))
        else:
            out += draw(junk)
    cut = draw(st.integers(0, 40))
    return out[: len(out) - cut] if draw(st.booleans()) else out


capture_bytes = st.one_of(
    pcap_file(),
    pcapng_file(),
    st.binary(max_size=512),
    pcap_file().map(gzip.compress),
    st.tuples(st.one_of(pcap_file(), pcapng_file()), st.integers(0, 2000)).map(
        lambda t: t[0][: t[1]]
    ),
)


def _drain(packets: Iterator[tuple]) -> int:
    n = 0
    for p in packets:
        ts, proto, src, sport, dst, dport, _seq, _ack, _flags, payload = p
        assert proto in (6, 17) and len(src) in (4, 16) and len(dst) == len(src)
        assert 0 <= sport < 65536 and 0 <= dport < 65536 and isinstance(ts, float)
        bytes(payload)  # the view is readable
        n += 1
    return n


@fuzz
@given(capture_bytes)
def test_read_packets_from_a_file(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = _scratch(tmp_path_factory) / "fuzz.pcap"
    path.write_bytes(data)
    stats = CaptureStats()
    try:
        packets = read_packets(str(path), stats)
    except CaptureError:
        return
    assert _drain(packets) <= stats.packets
    assert len(stats.warnings) <= 100


@fuzz
@given(capture_bytes, st.integers(1, 4096))
def test_read_stream_in_any_chunking(data: bytes, chunk: int) -> None:
    """A stream that arrives a few bytes at a time gives what the whole file gives, and says
    the same of what it lost."""

    class Trickle(io.RawIOBase):
        def __init__(self) -> None:
            self.pos = 0

        def readable(self) -> bool:
            return True

        def read1(self, size: int = -1) -> bytes:
            piece = data[self.pos : self.pos + min(chunk, size if size > 0 else chunk)]
            self.pos += len(piece)
            return piece

        read = read1

    whole, trickled = CaptureStats(), CaptureStats()
    try:
        expected = [_key(p) for p in read_stream(io.BytesIO(data), "whole", whole)]
    except CaptureError:
        with pytest.raises(CaptureError):
            list(read_stream(Trickle(), "trickled", trickled))  # type: ignore[arg-type]
        return
    got = [_key(p) for p in read_stream(Trickle(), "trickled", trickled)]  # type: ignore[arg-type]
    assert got == expected
    # what was lost is the same too: where reading stopped (a file's offset), the drops told
    assert (trickled.unread_from, trickled.dropped) == (whole.unread_from, whole.dropped)


def _key(p: tuple) -> tuple:
    return (*p[:9], bytes(p[9]))


# -- link layers ---------------------------------------------------------------------------------
@fuzz
@given(
    st.one_of(frame(), st.tuples(st.integers(-5, 300), junk)), st.integers(0, 8), st.integers(0, 8)
)
def test_link_decoder(lt_frame: tuple[int, bytes], before: int, after: int) -> None:
    linktype, data = lt_frame
    buf = b"\xee" * before + data + b"\xee" * after
    stats = CaptureStats()
    got = LinkDecoder(stats).decode(linktype, buf, before, before + len(data))
    if got is not None:
        proto, src, _sport, dst, _dport, _seq, _ack, _flags, start, end = got
        assert proto in (6, 17) and len(src) == len(dst) and len(src) in (4, 16)
        assert before <= start <= end <= before + len(data)


# -- TCP reassembly ------------------------------------------------------------------------------
class Recorder:
    """A consumer that records what it is given: (offset, bytes) and gaps."""

    def __init__(self, skip_plan: list[int] | None = None) -> None:
        self.skip = 0
        self.dead = False
        self.offset = 0
        self.chunks: list[tuple[int, bytes]] = []
        self.frames: list[int] = []  # the frame number given with each chunk
        self.gaps: list[tuple[int, int]] = []
        self.closed = 0
        self.skip_plan = list(skip_plan or [])

    def data(self, data: memoryview | bytes, ts: float, frame: int = 0) -> None:
        self.chunks.append((self.offset, bytes(data)))
        self.frames.append(frame)
        self.offset += len(data)
        if self.skip_plan:
            self.skip = self.skip_plan.pop(0)
            self.offset += self.skip

    def gap(self, nbytes: int, ts: float) -> None:
        self.gaps.append((self.offset, nbytes))
        self.offset += nbytes

    def close(self, ts: float) -> None:
        self.closed += 1


class Pair:
    def __init__(self, skip_plan: list[int] | None = None) -> None:
        self.a_to_b = Recorder(skip_plan)
        self.b_to_a = Recorder()
        self.finished = 0

    def finish(self, ts: float) -> None:
        self.finished += 1


A, B = b"\n\0\0\1", b"\n\0\0\2"


@st.composite
def shuffled_stream(draw: st.DrawFn) -> tuple[bytes, int, list[tuple[int, bytes, int]], bool]:
    """A stream, its ISN (wrap-around included), and its segments in any order with duplicates
    and overlapping retransmissions; sometimes a FIN among them."""
    stream = draw(st.binary(min_size=1, max_size=3000))
    isn = draw(st.one_of(u32, st.sampled_from([0xFFFFFFFF, 0xFFFFF000, 0])))
    cuts = sorted(
        set(draw(st.lists(st.integers(1, len(stream) - 1), max_size=30)) if len(stream) > 1 else [])
    )
    bounds = [0, *cuts, len(stream)]
    segments = [
        (bounds[i], stream[bounds[i] : bounds[i + 1]], 0x18) for i in range(len(bounds) - 1)
    ]
    for _ in range(draw(st.integers(0, 5))):  # overlapping retransmissions
        start = draw(st.integers(0, len(stream) - 1))
        end = draw(st.integers(start + 1, len(stream)))
        segments.append((start, stream[start:end], 0x18))
    segments += draw(st.lists(st.sampled_from(segments), max_size=5))  # duplicates
    fin = draw(st.booleans())
    if fin:
        segments.append((len(stream), b"", 0x11))
    order = draw(st.permutations(segments))
    return stream, isn, order, fin


def _feed_all(r: TcpReassembler, isn: int, segments: list, ts0: float = 100.0) -> None:
    r.feed(ts0, A, 40000, B, 80, isn, 0, 0x02, b"")  # SYN
    r.feed(ts0, B, 80, A, 40000, 7, (isn + 1) % (1 << 32), 0x12, b"")  # SYN-ACK
    for i, (off, payload, flags) in enumerate(segments):
        seq = (isn + 1 + off) % (1 << 32)
        r.feed(ts0 + 0.001 * (i + 1), A, 40000, B, 80, seq, 8, flags, payload, i + 3)


def _delivered(rec: Recorder, size: int) -> bytearray:
    """The stream as delivered, gaps as None-bytes ('?'); checks offsets are contiguous."""
    out = bytearray()
    events = sorted([(o, d) for o, d in rec.chunks] + [(o, b"?" * n) for o, n in rec.gaps])
    for off, data in events:
        assert off == len(out), (off, len(out))
        out += data
    return out


@fuzz
@given(shuffled_stream(), st.sampled_from([1 << 20, 64, 1000]))
def test_tcp_any_order_delivers_the_stream(case: tuple, cap: int) -> None:
    stream, isn, segments, _fin = case
    pairs: list[Pair] = []

    def factory(info: Any) -> Pair:
        pairs.append(Pair())
        return pairs[-1]

    r = TcpReassembler(factory, CaptureStats(), max_pending_bytes=cap)
    _feed_all(r, isn, segments)
    r.flush()
    (pair,) = pairs
    rec = pair.a_to_b
    got = _delivered(rec, len(stream))
    assert len(got) <= len(stream)
    for i, byte in enumerate(got):  # every delivered byte is the stream's byte at its offset
        if i not in {o + k for o, n in rec.gaps for k in range(n)}:
            assert byte == stream[i]
    if cap >= len(stream):  # nothing had to be given up: the whole stream, no gaps
        assert bytes(got) == stream and rec.gaps == []
    assert rec.closed == 1 and pair.finished == 1
    # each chunk came with the frame number of the segment (fed as frame i + 3) it was cut from
    for (off, data), frame in zip(rec.chunks, rec.frames, strict=True):
        seg_off, seg_payload, _flags = segments[frame - 3]
        assert seg_off <= off and off + len(data) <= seg_off + len(seg_payload)


@fuzz
@given(shuffled_stream(), st.lists(st.integers(0, 500), max_size=10))
def test_tcp_skipping_consumer_sees_the_rest(case: tuple, plan: list[int]) -> None:
    """A consumer that skips bodies gets the bytes after each skip, wherever they come from."""
    stream, isn, segments, _fin = case
    pairs: list[Pair] = []

    def factory(info: Any) -> Pair:
        pairs.append(Pair(plan))
        return pairs[-1]

    r = TcpReassembler(factory, CaptureStats())
    _feed_all(r, isn, segments)
    r.flush()
    rec = pairs[0].a_to_b
    for off, data in rec.chunks:
        assert stream[off : off + len(data)] == data
    assert rec.gaps == []


packet = st.tuples(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([A, B, b"\n\0\0\3"]),
    st.sampled_from([80, 40000, 0]),
    st.sampled_from([A, B]),
    st.sampled_from([80, 40000]),
    any32,
    any32,
    u8,
    st.binary(max_size=64),
)


@fuzz
@given(st.lists(packet, max_size=60), st.integers(1, 4))
def test_tcp_random_segments_never_crash(packets: list, max_connections: int) -> None:
    opened: list[Pair] = []

    def factory(info: Any) -> Pair:
        opened.append(Pair())
        return opened[-1]

    r = TcpReassembler(
        factory, CaptureStats(), max_pending_bytes=100, max_connections=max_connections
    )
    for p in packets:
        r.feed(*p)
        assert r.open_connections <= max_connections
    r.flush()
    assert all(p.finished == 1 for p in opened)


# -- HTTP/1.x ------------------------------------------------------------------------------------
http_token = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1, max_size=12
)
header_line = st.one_of(
    st.builds(lambda n, v: f"{n}: {v}", http_token, st.text(max_size=40)),
    st.sampled_from(
        [
            "Transfer-Encoding: chunked",
            "Content-Length: 0",
            "Content-Length: 5",
            "Content-Length: 99999999999999999999999",
            "Content-Length: -1",
            "Content-Length: 1, 2",
            "Content-Encoding: gzip",
            "Content-Type: application/x-www-form-urlencoded",
            "Authorization: Basic YWxpY2U6cHc=",
            "Authorization: Bearer eyJhbGciOiJub25lIn0.e30.",
            " folded continuation",
            "\tfolded",
            "no colon here",
            "",
        ]
    ),
)
start_line = st.one_of(
    st.builds(
        lambda m, u: f"{m} {u} HTTP/1.1",
        st.sampled_from(["GET", "POST", "HEAD", "CONNECT", "PRI", "x"]),
        st.text(max_size=20).map(lambda s: "/" + s.replace(" ", "")),
    ),
    st.builds(
        lambda s: f"HTTP/1.1 {s} Reason", st.sampled_from([100, 101, 200, 204, 304, 401, 999])
    ),
    st.sampled_from(["PRI * HTTP/2.0", "HTTP/1.0 200", "GET / HTTP/9.9", "\x16\x03\x01\x00\x05"]),
)
chunk = st.one_of(
    st.binary(max_size=20).map(lambda b: b"%x\r\n" % len(b) + b + b"\r\n"),
    st.sampled_from(
        [
            b"0\r\n\r\n",
            b"0\r\nTrailer: x\r\n\r\n",
            b"f" * 40 + b"\r\n",
            b"1000000000000000\r\n",
            b"zz\r\n",
            b"5;ext=1\r\n",
        ]
    ),
)


@st.composite
def http_bytes(draw: st.DrawFn) -> bytes:
    out = b""
    for _ in range(draw(st.integers(1, 4))):
        lines = [draw(start_line), *draw(st.lists(header_line, max_size=8))]
        eol = draw(st.sampled_from(["\r\n", "\n"]))
        out += (eol.join(lines) + eol + eol).encode("utf-8", "surrogatepass")
        out += b"".join(draw(st.lists(st.one_of(chunk, junk), max_size=4)))
    return out


@fuzz
@given(
    st.one_of(http_bytes(), junk),
    st.lists(st.integers(1, 64), min_size=1, max_size=20),
    st.booleans(),
)
def test_http_stream_heads_bodies_chunks(data: bytes, cuts: list[int], midstream: bool) -> None:
    """Any bytes in any feeding: messages or nothing, buffers bounded, the same messages however
    the bytes were cut."""

    hunted = []  # lost sync: hunting treats the start of a feed as a line start

    def run(pieces: list[bytes]) -> list[tuple]:
        stream = HttpStream(midstream=midstream, body_policy=lambda m: 64)
        out: list[HttpMessage] = []
        for i, piece in enumerate(pieces):
            if stream._hunting and stream.messages_seen:
                hunted.append(i)
            n = stream.skip
            if n:  # what the reassembler would drop
                drop = min(n, len(piece))
                stream.skip -= drop
                piece = piece[drop:]
            if piece:
                out += stream.data(piece, float(i))
            assert len(stream._buf) <= MAX_HEAD + MAX_LINE + len(piece) + 64
            if stream.dead:
                break
        out += stream.close(99.0)
        for m in out:
            assert isinstance(m, HttpMessage)
            assert m.body is None or len(m.body) <= 64
        return [(m.is_request, m.method, m.uri, m.status, m.headers, m.body) for m in out]

    whole = run([data])
    pieces, pos = [], 0
    for size in cuts * (len(data) // max(sum(cuts), 1) + 1):
        if pos >= len(data):
            break
        pieces.append(data[pos : pos + size])
        pos += size
    chunked = run(pieces)
    if not midstream and not hunted:
        assert chunked == whole


@fuzz
@given(
    st.one_of(
        st.binary(max_size=300),
        st.binary(max_size=2000).map(gzip.compress),
        st.binary(max_size=2000).map(zlib.compress),
    ),
    st.sampled_from(
        [
            "gzip",
            "x-gzip",
            "deflate",
            "identity",
            "br",
            "gzip, gzip",
            "gzip,deflate,identity,gzip,gzip",
            None,
        ]
    ),
    st.integers(0, 4096),
)
def test_decode_body_bounded(body: bytes, coding: str | None, limit: int) -> None:
    got = decode_body(body, coding, limit)
    assert got is None or (isinstance(got, bytes) and len(got) <= limit)


# -- challenges, credentials, x-ms-diagnostics ---------------------------------------------------
param_value = st.one_of(
    st.text(max_size=30), st.just('"quoted \\" value"'), st.just('"unterminated')
)
challenge_text = st.one_of(
    st.text(max_size=200),
    st.builds(
        lambda scheme, params: scheme + " " + ", ".join(f"{k}={v}" for k, v in params),
        st.sampled_from(["Bearer", "MsRtcOAuth", "NTLM", "Negotiate", "Basic", "Digest", "X"]),
        st.lists(
            st.tuples(
                st.sampled_from(
                    [
                        "realm",
                        "client_id",
                        "trusted_issuers",
                        "authorization_uri",
                        "error",
                        "x",
                        "charset*",
                    ]
                ),
                param_value,
            ),
            max_size=6,
        ),
    ),
)


@fuzz
@given(st.lists(challenge_text, max_size=4), st.booleans(), st.data())
def test_challenges_and_credentials(values: list[str], proxy: bool, data: st.DataObject) -> None:
    if data.draw(st.booleans()):
        scheme = data.draw(st.sampled_from(["NTLM", "Negotiate"]))
        blob = data.draw(st.one_of(ntlm_message(), der_tree()))
        values.append(f"{scheme} {base64.b64encode(blob).decode()}")
    for challenge in parse_challenges(values, proxy):
        assert isinstance(describe_challenge(challenge), dict)
        json.dumps(challenge.to_dict(), ensure_ascii=False)
    for value in values:
        credential = parse_credential(value)
        assert credential is None or credential.scheme in (
            "bearer",
            "basic",
            "ntlm",
            "negotiate",
            "digest",
            "other",
        )


diagnostics_text = st.one_of(
    st.text(max_size=200),
    st.builds(
        lambda code, fields: f"{code};" + ";".join(f'{k}="{v}"' for k, v in fields),
        st.one_of(st.integers(-5, 10**12), st.text(max_size=5)),
        st.lists(
            st.tuples(
                st.sampled_from(["reason", "error_category", "source", "x"]), st.text(max_size=40)
            ),
            max_size=4,
        ),
    ),
    st.builds(lambda n, m: f"{n}|{m}", st.text(max_size=20), st.text(max_size=40)),
)


@fuzz
@given(diagnostics_text)
def test_ms_diagnostics(value: str) -> None:
    got = parse_ms_diagnostics(value)
    if got is not None:
        assert isinstance(got, MsDiagnostic)
        json.dumps(got.to_dict(), ensure_ascii=False)


# -- NTLM ----------------------------------------------------------------------------------------
@st.composite
def ntlm_message(draw: st.DrawFn) -> bytes:
    """NTLMSSP: signature, a type, then fields (len, maxlen, offset) pointing anywhere."""
    kind = draw(st.sampled_from([1, 2, 3, 3, 0, 7]))
    fields = b"".join(
        struct.pack(
            "<HHI",
            draw(st.one_of(u16, st.integers(0, 64))),
            0,
            draw(st.one_of(u32, st.integers(0, 200))),
        )
        for _ in range(6)
    )
    flags = draw(st.one_of(u32, st.sampled_from([0xE2888215, 0x00000001, 0x02000000])))
    tail = draw(st.binary(max_size=200))
    if kind == 3 and draw(st.booleans()):  # an NTLMv2 blob with AV pairs in the NT response
        pairs = b"".join(
            struct.pack("<HH", draw(st.integers(0, 10)), len(v)) + v
            for v in draw(st.lists(st.binary(max_size=16), max_size=5))
        )
        tail += b"\x01\x01" + b"\0" * 26 + pairs + b"\0\0\0\0"
    return (SIGNATURE + struct.pack("<I", kind) + fields + struct.pack("<I", flags) + tail)[
        : draw(st.integers(0, 600))
    ]


@fuzz
@given(st.one_of(ntlm_message(), junk.map(lambda b: SIGNATURE + b)))
def test_ntlm(data: bytes) -> None:
    got = parse_ntlm(data)
    if not data.startswith(SIGNATURE):
        assert got is None
        return
    assert isinstance(got, NtlmMessage)
    json.dumps(got.to_dict(), ensure_ascii=False)
    assert parse_ntlm_b64(base64.b64encode(data).decode()) == got


# -- SPNEGO / Kerberos DER -----------------------------------------------------------------------
TAGS = [
    0x60,
    0xA0,
    0xA1,
    0xA2,
    0xA3,
    0xA4,
    0x30,
    0x06,
    0x04,
    0x02,
    0x0A,
    0x03,
    0x1B,
    0x18,
    0x6E,
    0x6F,
    0x7E,
    0x61,
    0x1F,
    0x80,
]


def _tlv(tag: int, content: bytes, length: int | None) -> bytes:
    n = len(content) if length is None else length
    if n < 0x80:
        head = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        head = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + head + content


def der_tree() -> st.SearchStrategy[bytes]:
    """Tag-length-value trees over the tags SPNEGO and Kerberos use; lengths sometimes wrong."""
    leaf = st.one_of(
        st.builds(
            _tlv,
            st.sampled_from([0x06]),
            st.sampled_from(
                [
                    bytes.fromhex("2b0601050502"),
                    bytes.fromhex("2a864886f712010202"),
                    bytes.fromhex("2b06010401823702020a"),
                    b"\x80",
                    b"",
                ]
            ),
            st.none(),
        ),
        st.builds(
            _tlv,
            st.sampled_from(TAGS),
            st.binary(max_size=12),
            st.one_of(st.none(), st.integers(0, 300)),
        ),
        st.sampled_from(
            [
                b"\x04\x80",
                b"\x30\x89" + b"\xff" * 9,
                b"\x02\x00",
                b"\x1f\xff\xff\xff\x7f\x00",
                b"NTLMSSP\x00\x01\x00\x00\x00",
            ]
        ),
    )
    return st.recursive(
        leaf,
        lambda children: st.builds(
            lambda tag, kids, length: _tlv(tag, b"".join(kids), length),
            st.sampled_from(TAGS),
            st.lists(children, max_size=4),
            st.one_of(st.none(), st.none(), st.integers(0, 500)),
        ),
        max_leaves=20,
    )


@fuzz
@given(st.one_of(der_tree(), junk, der_tree().map(lambda b: b"\x60" + b[1:])))
def test_spnego_and_kerberos(data: bytes) -> None:
    got = spnego.parse_negotiate(data)
    if got is not None:
        assert isinstance(got, spnego.NegotiateToken)
        json.dumps(got.to_dict(), ensure_ascii=False)


@fuzz
@given(
    st.one_of(der_tree(), junk),
    st.sampled_from(
        [
            spnego.AP_REQ,
            spnego.AP_REP,
            spnego.KRB_ERROR,
            spnego.TICKET,
            spnego.PRINCIPAL_NAME,
            spnego.NEG_HINTS,
            spnego.MIC_OR_HINTS,
            spnego.OID,
            spnego.INTEGER,
            spnego.BIT_STRING,
            spnego.KERBEROS_TIME,
        ]
    ),
)
def test_der_raises_only_der_error(data: bytes, spec: der.Spec) -> None:
    try:
        _value, end = der.decode(data, spec)
    except der.DerError:
        return
    assert 0 < end <= len(data)


# -- tokens and keys -----------------------------------------------------------------------------
json_value = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False),
        st.text(max_size=20),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=15,
)
CLAIM_NAMES = [
    "iss",
    "aud",
    "exp",
    "nbf",
    "iat",
    "appid",
    "azp",
    "nameid",
    "upn",
    "actortoken",
    "refresh_token",
    "ctx",
    "tid",
    "sub",
]
claims = st.dictionaries(
    st.one_of(st.sampled_from(CLAIM_NAMES), st.text(max_size=8)),
    st.one_of(
        json_value, st.floats(), st.sampled_from([1e15, 1e300, -1e20, "1772442000", "\ud800"])
    ),
    max_size=8,
)
header = st.fixed_dictionaries(
    {"alg": st.sampled_from(["none", "RS256", "HS256", "ES256", "EdDSA", "", "NONE"])},
    optional={
        "typ": st.just("JWT"),
        "kid": st.text(max_size=10),
        "x5t": st.text(max_size=30),
        "crit": json_value,
        "enc": st.text(max_size=6),
    },
)


def _segment(value: Any) -> str:
    return b64url(json.dumps(value).encode("utf-8", "surrogatepass"))


@st.composite
def token_text(draw: st.DrawFn, depth: int = 0) -> str:
    kind = draw(st.sampled_from(["jws", "jws", "jwe", "text", "cwt", "parts"]))
    if kind == "text":
        return draw(st.text(max_size=200))
    if kind == "cwt":
        return "cwt=" + draw(st.text(max_size=40))
    if kind == "parts":
        return ".".join(draw(st.lists(st.text("eyJ0123456789-_=+/.AZaz", max_size=30), max_size=7)))
    body = draw(claims)
    if depth < 2 and draw(st.booleans()):
        body["actortoken"] = draw(token_text(depth + 1))  # nested actor tokens
    head = _segment(draw(header))
    if kind == "jwe":
        return ".".join(
            [head, *draw(st.lists(st.text("abc-_", max_size=10), min_size=4, max_size=4))]
        )
    return f"{head}.{_segment(body)}.{draw(st.sampled_from(['', 'c2ln', '!!', b64url(bytes(64))]))}"


@fuzz
@given(token_text())
def test_decode_token(text: str) -> None:
    decoder = TokenDecoder()
    token = decoder(text)
    assert token.format in FORMATS
    json.dumps(token.to_dict(), ensure_ascii=False).encode("utf-8")  # a lone surrogate fails here
    assert verify_token(token, _STORE).status in STATUSES
    actor, depth = token.actor_token, 0
    while actor is not None:
        depth += 1
        actor = actor.actor_token
    assert depth <= 1  # an actor's own actortoken is never decoded


_STORE = KeyStore()
jwk = st.fixed_dictionaries(
    {"kty": st.sampled_from(["RSA", "EC", "OKP", "oct", "rsa", 7])},
    optional={
        "n": st.text("AQIDBAUGBwgJ-_", max_size=40),
        "e": st.sampled_from(["AQAB", "Aw", "", "AA"]),
        "crv": st.sampled_from(["P-256", "Ed25519", "X25519", "nope"]),
        "x": st.text("AQIDBA", max_size=44),
        "y": st.text("AQIDBA", max_size=44),
        "kid": json_value,
        "x5t": json_value,
        "x5c": st.lists(st.text(max_size=40), max_size=2),
        "d": st.just("secret"),
    },
)
document = st.one_of(
    st.builds(lambda keys: {"keys": keys}, st.lists(st.one_of(jwk, json_value), max_size=4)),
    st.builds(
        lambda keys, iss: {"issuer": iss, "keys": keys},
        st.lists(
            st.fixed_dictionaries(
                {
                    "keyinfo": st.fixed_dictionaries({"x5t": json_value}),
                    "keyvalue": st.fixed_dictionaries(
                        {
                            "type": st.just("x509Certificate"),
                            "value": st.text("MIIBCg+/=", max_size=60),
                        }
                    ),
                }
            ),
            max_size=3,
        ),
        json_value,
    ),
    st.builds(lambda uri: {"jwks_uri": uri, "issuer": "x"}, json_value),
    json_value,
)


@fuzz
@given(
    st.one_of(document.map(lambda d: json.dumps(d)), st.text(max_size=300), st.binary(max_size=300))
)
def test_key_documents(text: str | bytes) -> None:
    store = KeyStore(max_keys=8)
    n = store.add_document(text, "http://sts.test/keys", 1772442000.0)
    assert 0 <= n <= 8 and len(store) <= 8 and len(store.warnings) <= 201


@fuzz
@given(
    st.one_of(
        document.map(lambda d: json.dumps(d).encode()),
        st.binary(max_size=400),
        st.binary(max_size=200).map(
            lambda b: (
                b"-----BEGIN CERTIFICATE-----\n"
                + base64.encodebytes(b)
                + b"-----END CERTIFICATE-----\n"
            )
        ),
        st.binary(max_size=200).map(lambda b: b"\x30" + b),
    )
)
def test_key_files(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = _scratch(tmp_path_factory) / "key"
    path.write_bytes(data)
    try:
        assert KeyStore().add_file(path) >= 0  # an OpenID configuration: its jwks_uri, 0 keys
    except KeyFileError as exc:
        assert "\n" not in str(exc)


@fuzz
@given(
    st.one_of(
        st.binary(max_size=400),
        document.map(lambda d: json.dumps(d).encode()),
        st.builds(
            lambda v: json.dumps({"access_token": v, "expires_in": v, "error": v}).encode(),
            json_value,
        ),
    )
)
def test_token_responses(body: bytes) -> None:
    got = parse_token_response(body)
    if got is not None:
        json.dumps(
            vars(got) if hasattr(got, "__dict__") else repr(got), ensure_ascii=False, default=str
        )


# -- policy TOML ---------------------------------------------------------------------------------
def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if value == value and abs(value) != float("inf") else "nan"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


rule_table = st.dictionaries(
    st.sampled_from(
        [
            "name",
            "client",
            "server",
            "host",
            "path",
            "user",
            "since",
            "until",
            "issuer",
            "realm",
            "require_signature",
            "allow",
            "partial",
            "scheme",
            "bogus",
        ]
    ),
    st.one_of(
        st.text(max_size=20),
        st.booleans(),
        st.integers(),
        st.lists(st.text(max_size=10), max_size=3),
        st.sampled_from(
            [
                "10.0.0.0/8",
                "mail.test:443",
                "2026-03-02T09:00:00Z",
                "00000002-0000-0ff1-ce00-000000000000@*",
                "@",
                "::1",
            ]
        ),
    ),
    max_size=6,
)


@fuzz
@given(
    st.one_of(
        st.lists(rule_table, max_size=3).map(
            lambda rules: "".join(
                "[[rule]]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in r.items())
                for r in rules
            )
        ),
        st.text(max_size=200),
    )
)
def test_policy_toml(text: str) -> None:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    from analyzer.analysis.verify import PolicyError, Rule, rules_from_policy

    try:
        rules = rules_from_policy(tomllib.loads(text))
    except (tomllib.TOMLDecodeError, PolicyError) as exc:
        assert "\n" not in str(exc) or isinstance(exc, tomllib.TOMLDecodeError)
        return
    assert rules and all(isinstance(r, Rule) for r in rules)
    for r in rules:
        r.describe()


# -- the regression files bench/fuzz.py keeps are small captures too -----------------------------
def test_fuzz_budget_is_configurable() -> None:
    assert fuzz.max_examples == EXAMPLES and EXAMPLES > 0
    assert Path(__file__).name == "test_fuzz_decoders.py"
