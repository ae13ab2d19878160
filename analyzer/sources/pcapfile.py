"""Read pcap and pcapng captures fast: records in, decoded TCP/UDP packet tuples out.

Uncompressed files are mmapped and walked with precompiled ``struct`` unpackers at fixed offsets;
payloads are yielded as zero-copy memoryview slices of the mapping (valid for as long as the
consumer holds them; copy what you keep). gzip-compressed captures (detected by their magic
bytes, not their name) and non-seekable files are read in bounded chunks through the same loops.

The common frame (Ethernet or raw IP, IPv4 without options, TCP) is decoded inline in the record
loops with one ``unpack_from`` and a handful of comparisons; every other frame (VLAN-tagged,
IPv6, tunnelled, ...) goes through :class:`analyzer.sources.linklayer.LinkDecoder`, and its TCP
packets are offered to the reassembler's ``absorb`` just the same.

Counters and warnings go into the caller's :class:`~analyzer.model.CaptureStats`. The hot-loop
counters are added when the iterator is exhausted or closed.
"""

from __future__ import annotations

import contextlib
import io
import mmap
import os
import select
import stat
import zlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from struct import Struct
from struct import error as StructError
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from analyzer.model import CaptureStats
from analyzer.sources.linklayer import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    RAW_IP_TYPES,
    Buffer,
    LinkDecoder,
    payload_of,
)

if TYPE_CHECKING:
    from analyzer.sources._walk import GrantTable

#: Records claiming more than this many bytes are corrupt: stop instead of buffering them.
MAX_RECORD = 256 << 20
#: Seconds a stream may stay silent before its reader's ``idle`` hook runs.
IDLE_EVERY = 0.25
#: Read size for streamed (gzip / non-seekable) captures.
CHUNK = 1 << 20
_GZIP_INPUT = 256 << 10  # compressed bytes read at a time
#: Every this many bytes the record loops re-check lengths, unmap pages already read and add
#: their counts to the stats (so a progress display can follow a long file).
_WINDOW = 8 << 20

_PCAP_MAGICS = {  # magic as stored -> (byte order, timestamp fraction units per second)
    b"\xd4\xc3\xb2\xa1": ("<", 1e6),
    b"\xa1\xb2\xc3\xd4": (">", 1e6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e9),
    b"\xa1\xb2\x3c\x4d": (">", 1e9),
}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_PCAPNG_SHB = 0x0A0D0D0A  # reads the same in both byte orders
_PCAPNG_BOMS = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
_GZIP_MAGIC = b"\x1f\x8b"
_PCAP_HEADER = 24  # file header
_PCAP_RECORD = 16  # record header
_EPB_HEADER = 28  # enhanced packet block up to the packet data
_BLOCK_IDB, _BLOCK_OPB, _BLOCK_SPB, _BLOCK_ISB, _BLOCK_EPB = 1, 2, 3, 5, 6
#: Interface statistics options counting packets the capture lost: isb_ifdrop (the interface,
#: or the capture engine's buffers: dumpcap's count) and isb_osdrop (the operating system).
_ISB_DROPS = (5, 7)
_UNKNOWN_COUNT = (1 << 64) - 1  # a counter the writer could not tell
#: pcapng blocks that are not packets but that Wireshark (4.0) shows as frames of their own, so
#: they take a frame number: systemd journal export, custom blocks (copyable or not), and
#: sysdig event blocks (v1, v2, v2 large). Counted as packets (as Wireshark counts them), never
#: decoded.
_RECORD_BLOCKS = frozenset({9, 0x00000BAD, 0x40000BAD, 0x204, 0x216, 0x221})

# Inline fast path. One unpack reads Ethernet type + IPv4 header (no options) + TCP header:
#   word(ethertype, ver/ihl, tos), total length, word(flags/fragment, ttl, proto), src, dst,
#   sport, dport, seq, ack, data-offset byte, flags.
# ``word >> 8 == 0x080045`` is "IPv4, 20-byte header"; ``fp & 0x3FFF00FF == 6`` is "TCP and not
# a fragment" (more-fragments bit and offset zero; don't-fragment may be set).
_ETH_IP_TCP = Struct(">IH2xI2x4s4sHHIIBB")
_IP_TCP = Struct(">BxH2xI2x4s4sHHIIBB")  # the same from the IP header on (raw IP links)
_NEVER = 1 << 62  # a frame length no frame has: disables a fast path


def _payload_offsets(ip_at: int) -> tuple[int, ...]:
    """Per TCP data-offset byte: payload offset from the record start, IP header at ``ip_at``.

    Offsets below 5 words (malformed) map to a huge value so the fast path's bounds check fails
    and the general decoder counts the packet.
    """
    return tuple(ip_at + 20 + ((b >> 2) & 0x3C) if b >= 0x50 else _NEVER for b in range(256))


_PCAP_ETH_PAYLOAD = _payload_offsets(_PCAP_RECORD + 14)
_PCAP_RAW_PAYLOAD = _payload_offsets(_PCAP_RECORD)
_EPB_ETH_PAYLOAD = _payload_offsets(_EPB_HEADER + 14)
_EPB_RAW_PAYLOAD = _payload_offsets(_EPB_HEADER)

_PCAP_REC = {o: Struct(o + "IIII").unpack_from for o in "<>"}
_PCAP_HDR = {o: Struct(o + "4xHHiIII").unpack_from for o in "<>"}  # major minor zone sig snap link
_EPB = {o: Struct(o + "IIIIIII").unpack_from for o in "<>"}
_BLOCK = {o: Struct(o + "II").unpack_from for o in "<>"}
_IDB = {o: Struct(o + "HxxI").unpack_from for o in "<>"}  # link type, snaplen
_OPT = {o: Struct(o + "HH").unpack_from for o in "<>"}
_OPB = {o: Struct(o + "HxxIIII").unpack_from for o in "<>"}  # if id, ts hi, ts lo, cap, orig
_U32 = {o: Struct(o + "I").unpack_from for o in "<>"}
_I64 = {o: Struct(o + "q").unpack_from for o in "<>"}
_U64 = {o: Struct(o + "Q").unpack_from for o in "<>"}
#: A pcap file header's magic as the first word of a record or block read in each byte order.
_PCAP_HEADS = {o: frozenset(_U32[o](m)[0] for m in _PCAP_MAGICS) for o in "<>"}
#: The same and a pcapng section header's: what may begin a capture appended to a pcap file.
_HEADS = {o: _PCAP_HEADS[o] | {_PCAPNG_SHB} for o in "<>"}
#: What a record loop reading a capture appended to another returns as its need when a header
#: of the other format hands the rest back to the loop it runs for.
_SWITCH = -1

#: The tunnels the native walk takes apart, by its shape number: (the encapsulation's name in
#: ``CaptureStats.encapsulations`` under an outer IPv4 / IPv6 header, carried in UDP). The
#: decoder names the same packets the same (analyzer.sources.linklayer).
_WALK_SHAPES = {
    1: (("VXLAN", "VXLAN"), True),
    2: (("GENEVE", "GENEVE"), True),
    3: (("GRE", "GRE"), False),
    4: (("ERSPAN I", "ERSPAN I"), False),
    5: (("ERSPAN II", "ERSPAN II"), False),
    6: (("ERSPAN III", "ERSPAN III"), False),
    7: (("IP-in-IP", "IPv4-in-IPv6"), False),
}

#: (ts, proto, src, sport, dst, dport, seq, ack, flags, payload, frame)
Packet = tuple[float, int, bytes, int, bytes, int, int, int, int, memoryview, int]
# A record loop yields packets and returns (offset reached, bytes needed there; 0 = stop).
_Scan = Generator[Packet, None, tuple[int, int]]
_ScanFn = Callable[[Buffer, int, "_Reader", bool], _Scan]


class Flows(Protocol):
    """What the reader needs of the TCP reassembler to absorb packets (``TcpReassembler``)."""

    grants: GrantTable | None  # directions the native walk absorbs for; None: pure Python

    def absorb(self, key: tuple, seq: int, ack: int, flags: int, size: int, ts: float) -> bool: ...


class CaptureError(Exception):
    """A missing or unreadable file, or one that is not a pcap/pcapng capture."""


@dataclass(slots=True)
class _Interface:
    """One pcapng interface (or the single link of a pcap file)."""

    linktype: int
    # Timestamp units per second. pcapng keeps an int: int / int division is correctly rounded
    # even for nanosecond counts beyond 2**53, where int / float would lose the last digits.
    div: float = 1_000_000
    tsoffset: int = 0  # seconds added to every timestamp (pcapng if_tsoffset)
    snaplen: int = 0

    def fast_minimums(self) -> tuple[int, int]:
        """Smallest frame the (Ethernet, raw IPv4) fast paths take on this link; _NEVER = off.

        The fast paths leave out ``tsoffset`` (almost always 0): links that have one go slow.
        """
        if self.tsoffset:
            return _NEVER, _NEVER
        if self.linktype == LINKTYPE_ETHERNET:
            return 54, _NEVER  # 14 + 20 + 20
        if self.linktype == LINKTYPE_IPV4 or self.linktype in RAW_IP_TYPES:
            return _NEVER, 40
        return _NEVER, _NEVER


@dataclass(slots=True)
class _Reader:
    """State of one capture being read, kept between the chunks of a streamed file."""

    path: str
    stats: CaptureStats
    decoder: LinkDecoder
    order: str = "<"  # byte order of the pcap file / current pcapng section
    iface: _Interface = field(default_factory=lambda: _Interface(-1))  # pcap only
    ifaces: list[_Interface] = field(default_factory=list)  # pcapng: current section
    last_ts: float = 0.0  # for pcapng simple packet blocks, which carry no timestamp
    flows: Flows | None = None  # the TCP reassembler, for absorbing packets
    progress: Callable[[], None] | None = None  # called as the counts grow (every 8 MiB)
    # Packet records consumed before the current record loop began (the loops number theirs
    # from here): frame numbers as Wireshark gives them, continued across chunks of a stream.
    frames: int = 0
    # The record loop of the format at the current offset: a capture appended to one of the
    # other format switches it, and a streamed file's next chunk goes to it.
    scan: _ScanFn | None = None
    # Offset in the file (or stream) of the record loops' ``data[0]``: a streamed file's chunks
    # start further on, and what is said about an offset names the file's.
    offset: int = 0
    # pcapng: sections begun, and the packets each interface's statistics blocks said it had
    # dropped by then (cumulative counters, per section and interface id): each drop counted once.
    section: int = 0
    drops: dict[tuple[int, int], int] = field(default_factory=dict)

    def add_counts(self, packets: int, slow: int, nbytes: int) -> None:
        """Add a record loop's tallies. The fast paths' packets are IPv4 TCP; those the native
        walk took out of a tunnel also had the tunnel's headers, which it tallied by shape."""
        stats = self.stats
        stats.packets += packets
        stats.bytes += nbytes
        stats.ipv4 += packets - slow
        stats.tcp += packets - slow
        grants = self.flows.grants if self.flows is not None else None
        if grants is not None:
            for outer_v6, shape, n in grants.encapsulated():
                names, udp = _WALK_SHAPES[shape]
                enc = stats.encapsulations
                enc[names[outer_v6]] = enc.get(names[outer_v6], 0) + n
                if outer_v6:
                    stats.ipv6 += n
                else:
                    stats.ipv4 += n
                if udp:
                    stats.udp += n
        if self.progress is not None:
            self.progress()

    def count_linktype(self, linktype: int, n: int) -> None:
        if n:
            links = self.stats.link_types
            links[linktype] = links.get(linktype, 0) + n

    def truncated(self) -> None:
        self.stats.truncated_packets += 1
        self.decoder.warn_once(
            "snaplen",
            f"{self.path}: packets cut short by the snapshot length (captured < original "
            "length); their captured bytes are used",
        )

    def cut_short(self, left: int, pos: int | None) -> None:
        """The data ends ``left`` bytes into the record at ``pos``: warned, and the record is
        lost (``lost``) unless ``pos`` is None (the caller read what it kept)."""
        self.stats.warn(
            f"{self.path}: file ends in the middle of a record ({left} bytes left over); "
            "the capture is truncated"
        )
        if pos is not None:
            self.lost(pos, left)

    def lost(self, pos: int, left: int) -> None:
        """The record at ``pos``, cut ``left`` bytes in by the end of the data, was not read:
        which connection its packet was on, and what it held, is unknown - a blind spot for
        every scope, as the rest of a file not read (``unread_from``)."""
        self.unread(pos, f"the file ends {left} bytes into a record")

    def appended(self, pos: int) -> None:
        self.decoder.warn_once(
            "appended",
            f"{self.path}: another capture appended at offset {pos} (its own file header, as "
            "cat or tcpdump -w - >> leave): read on with its header; Wireshark stops there",
        )

    def untimed(self) -> None:
        """A packet without a timestamp (a pcapng simple packet block): dated by the packet
        before it, so when its requests were made is unknown (a blind spot)."""
        self.stats.untimed_packets += 1
        self.decoder.warn_once(
            "untimed",
            f"{self.path}: packets without a timestamp (pcapng simple packet blocks) are dated "
            "by the packet before them",
        )

    def stop(self, why: str, offset: int) -> None:
        """Reading ends at ``offset``, short of the file's end: the rest is a blind spot."""
        self.stats.warn(f"{self.path}: {why}; stopped reading this file")
        self.unread(offset, why)

    def unread(self, pos: int, why: str) -> None:
        """The file from ``pos`` (in the data the record loop reads) on was not read."""
        self.stats.unread_after(self.offset + pos, why)

    def at(self, pos: int) -> int:
        """The file's offset of ``pos`` in the data the record loop reads."""
        return self.offset + pos

    def statistics(self, data: Buffer, pos: int, blen: int, order: str) -> None:
        """An interface statistics block: the packets its interface had dropped by then
        (``_isb_drops``) that no earlier block of the interface told are added to
        ``stats.dropped``, a blind spot for every scope."""
        ifid, dropped, unread = _isb_drops(data, pos, blen, order)
        if unread:
            self.decoder.warn_once(
                "malformed drop counter",
                f"{self.stats.path}: an interface statistics block whose drop counter is "
                "malformed (not 8 bytes, or past the block): packets the capture dropped may "
                "not all be counted",
            )
        if dropped is None:
            return
        key = (self.section, ifid)
        before = self.drops.get(key, 0)
        if dropped > before:
            self.drops[key] = dropped
            self.stats.dropped += dropped - before

    def bad_interface(self, ifid: int) -> None:
        self.stats.undecodable += 1
        self.decoder.warn_once(
            ("ifid", ifid), f"{self.path}: packets on undeclared interface {ifid} skipped"
        )


def read_packets(
    path: str,
    stats: CaptureStats,
    flows: Flows | None = None,
    progress: Callable[[], None] | None = None,
    first_frame: int = 1,
) -> Iterator[Packet]:
    """Yield one tuple per TCP or UDP packet, in file order.

    ``flows`` is the TCP reassembler the packets go to. When given, the reader absorbs, without
    yielding them, the packets the reassembler would only count: an in-order segment of body
    bytes its consumer skips, or a bare ACK (the contract is in ``analyzer.flows.tcp``). With the
    native walk built, runs of such packets never reach Python; without it each costs a dict
    lookup and a few additions. The reassembler takes back what the walk absorbed for a
    direction before it looks at that direction's next packet. ``progress`` is called each time
    ``stats`` grows (every 8 MiB of file and at the end), e.g. to move a progress bar.

    Each tuple is ``(ts, proto, src, sport, dst, dport, seq, ack, flags, payload, frame)``:
    epoch seconds, 6 or 17, packed 4- or 16-byte addresses, ports, TCP sequence/ack numbers and
    flag byte (0 for UDP), the transport payload as a memoryview with link padding removed, and
    the frame number as Wireshark shows it: the packet's position among the file's records
    (pcap records; pcapng enhanced, simple and obsolete packet blocks and the few other blocks
    Wireshark shows as frames, ``_RECORD_BLOCKS``; not section, interface, name resolution,
    statistics or other blocks), counted from ``first_frame`` (1; more to go on counting after
    earlier files), the packets absorbed or not decoded included.

    The file is opened and identified before this returns: a missing, unreadable or non-capture
    file raises :class:`CaptureError` right here. Damage inside the file (cut records, bad
    headers, unknown link types) is counted in ``stats`` and reported with ``stats.warn``.
    """
    stats.path = path
    fh = _open(path)
    try:
        head = fh.read(64)
        if head[:2] == _GZIP_MAGIC:
            # the bytes read go back in front (not a seek: a pipe, /dev/stdin, cannot)
            gz = _Gunzip(_Chunks(_Prefixed(head, _Chunks(fh, None, None)), None, None))
            head = gz.read(max(CHUNK, 64))
            if gz.problem and not head:
                raise CaptureError(f"{path}: not a pcap or pcapng capture ({gz.problem})")
            reader, start, scan = _identify(path, stats, head, "gzip-compressed, ")
            reader.flows, reader.progress = flows, progress
            reader.frames = first_frame - 1
            stats.file_format += ".gz"
            return _stream(gz, fh.close, head, start, scan, reader)
        reader, start, scan = _identify(path, stats, head, "")
        reader.flows, reader.progress = flows, progress
        reader.frames = first_frame - 1
        data = _map(fh)
        if data is None:  # a pipe, or a file system that cannot mmap: stream it
            return _stream(fh, fh.close, head, start, scan, reader)
        fh.close()  # the mapping keeps its own reference to the file
        return scan(data, start, reader, True)
    except BaseException:
        fh.close()
        raise


def read_stream(
    stream: BinaryIO,
    name: str,
    stats: CaptureStats,
    flows: Flows | None = None,
    progress: Callable[[], None] | None = None,
    tee: Callable[[bytes], None] | None = None,
    idle: Callable[[], None] | None = None,
    first_frame: int = 1,
) -> Iterator[Packet]:
    """``read_packets`` for a byte stream that arrives over time: standard input, a pipe from
    ``tcpdump -U -w -`` or ``ssh host tcpdump``, a live capture engine's output.

    Each read takes what has arrived (``read1``: one system call), so the packets of every
    complete record are yielded before the reader waits for more; the same record loops (and
    native walk) as for files run over the chunks. ``name`` labels warnings (e.g. "-").
    ``tee`` is given every chunk as read (to keep a copy of the capture). ``idle`` is called
    every ``IDLE_EVERY`` seconds while nothing arrives (for a stream with a file descriptor
    and no buffer of its own: a pipe opened unbuffered). A stream that ends inside a record
    gives a warning and the packets before it. Frames are numbered from ``first_frame`` (the
    count from the start of the stream: the number in a copy written by ``tee``). Raises
    :class:`CaptureError` when the first bytes are not a capture.
    """
    stats.path = name
    src = _Chunks(stream, tee, idle)
    head = b""
    while len(head) < 64:
        chunk = src.read(CHUNK)
        if not chunk:
            break
        head += chunk
    if head[:2] == _GZIP_MAGIC:
        gz = _Gunzip(_Chunks(_Prefixed(head, src), None, None))
        head = gz.read(64)
        if gz.problem and not head:
            raise CaptureError(f"{name}: not a pcap or pcapng capture ({gz.problem})")
        reader, start, scan = _identify(name, stats, head, "gzip-compressed, ")
        reader.flows, reader.progress = flows, progress
        reader.frames = first_frame - 1
        stats.file_format += ".gz"
        return _stream(gz, _nothing, head, start, scan, reader)
    reader, start, scan = _identify(name, stats, head, "")
    reader.flows, reader.progress = flows, progress
    reader.frames = first_frame - 1
    return _stream(src, _nothing, head, start, scan, reader)


class _Chunks:
    """``read(n)`` that returns what one system call gives (never waits for ``n`` bytes)."""

    def __init__(
        self, stream: Any, tee: Callable[[bytes], None] | None, idle: Callable[[], None] | None
    ) -> None:
        self._read = getattr(stream, "read1", None) or stream.read
        self._tee = tee
        self._idle = idle
        self._fd: int | None = None
        if idle is not None and isinstance(stream, io.RawIOBase):  # no buffer to hide data
            with contextlib.suppress(OSError, ValueError):
                self._fd = stream.fileno()

    def read(self, size: int) -> bytes:
        if self._fd is not None and self._idle is not None:
            while not select.select([self._fd], [], [], IDLE_EVERY)[0]:
                self._idle()
        chunk = self._read(size)
        if chunk and self._tee is not None:
            self._tee(chunk)
        return chunk or b""


class _Prefixed:
    """A stream that first gives back bytes already read from it."""

    def __init__(self, first: bytes, rest: _Chunks) -> None:
        self._first = first
        self._rest = rest

    def read1(self, size: int) -> bytes:
        if self._first:
            out, self._first = self._first[:size], self._first[size:]
            return out
        return self._rest.read(size)


def _nothing() -> None:
    """The stream belongs to the caller: nothing to close."""


def _open(path: str) -> BinaryIO:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CaptureError(f"{path}: no such file") from None
    except OSError as exc:
        raise CaptureError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise CaptureError(f"{path}: is a directory, not a capture file")
    try:
        return open(path, "rb")
    except OSError as exc:
        raise CaptureError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _map(fh: BinaryIO) -> mmap.mmap | None:
    """mmap a regular file read-only, or None when that is not possible."""
    try:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return None
        data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return None
    if hasattr(data, "madvise"):
        with contextlib.suppress(OSError):
            data.madvise(mmap.MADV_SEQUENTIAL)
    return data


def _identify(
    path: str, stats: CaptureStats, head: bytes, what: str
) -> tuple[_Reader, int, _ScanFn]:
    """Recognise the format from the first bytes: (reader state, first record offset, loop)."""

    def not_a_capture(why: str) -> CaptureError:
        return CaptureError(f"{path}: not a pcap or pcapng capture ({what}{why})")

    if not head:
        raise not_a_capture("empty file")
    reader = _Reader(path, stats, LinkDecoder(stats))
    magic = head[:4]
    if magic in _PCAP_MAGICS:
        if len(head) < _PCAP_HEADER:
            raise not_a_capture(f"too short: {len(head)} bytes")
        order, div = _PCAP_MAGICS[magic]
        major, _minor, _zone, _sigfigs, snaplen, link = _PCAP_HDR[order](head)
        if major != 2:
            stats.warn(f"{path}: unexpected pcap version {major}; reading anyway")
        reader.order = order
        # The upper bits of the link-type field may carry FCS information: keep the type.
        reader.iface = _Interface(link & 0xFFFF, div, 0, snaplen)
        stats.file_format = "pcap"
        reader.scan = _scan_pcap
        return reader, _PCAP_HEADER, _scan_pcap
    if magic == _PCAPNG_MAGIC:
        if len(head) < _EPB_HEADER:
            raise not_a_capture(f"too short: {len(head)} bytes")
        if head[8:12] not in _PCAPNG_BOMS:
            raise not_a_capture("pcapng section header without a valid byte-order magic")
        stats.file_format = "pcapng"
        reader.scan = _scan_pcapng
        return reader, 0, _scan_pcapng
    raise not_a_capture(f"unknown magic 0x{magic.hex()}")


def _file_header(data: Buffer, pos: int) -> str | None:
    """Does another capture's file header start at ``pos`` (a capture appended to this one)?
    ``"pcap"`` (a pcap magic, either byte order, micro- or nanoseconds, and version 2) or
    ``"pcapng"`` (a section header with a byte-order magic); ``""`` when the bytes begin like
    one but end before it could be told; None when it is not one.

    Called only where a record loop does not take a record as it stands (the header read as a
    record is not an IPv4 TCP frame, or claims more bytes than there are): never per record."""
    magic = bytes(data[pos : pos + 4])
    if magic in _PCAP_MAGICS:
        if len(data) < pos + _PCAP_HEADER:
            return ""
        major, minor = _PCAP_HDR[_PCAP_MAGICS[magic][0]](data, pos)[:2]
        return "pcap" if major == 2 and minor <= 4 else None
    if magic == _PCAPNG_MAGIC:
        if len(data) < pos + 12:
            return ""
        return "pcapng" if bytes(data[pos + 8 : pos + 12]) in _PCAPNG_BOMS else None
    return None


def _enter_pcap(reader: _Reader, data: Buffer, pos: int) -> None:
    """Read on with the pcap file header at ``pos``: its byte order, link type, snap length and
    time resolution (as ``_identify`` does for the first)."""
    order, div = _PCAP_MAGICS[bytes(data[pos : pos + 4])]
    _major, _minor, _zone, _sigfigs, snaplen, link = _PCAP_HDR[order](data, pos)
    reader.order = order
    reader.iface = _Interface(link & 0xFFFF, div, 0, snaplen)


class _Gunzip:
    """Decompress a gzip file (any number of members) in bounded pieces.

    A damaged or cut stream ends the data early and leaves a one-line ``problem``; what was
    decompressed before that is kept.
    """

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._z = zlib.decompressobj(wbits=31)
        self._input = b""  # compressed bytes not yet given to zlib
        self._in_member = False  # fed a member that has not ended yet
        self._done = False
        self.problem: str | None = None

    def read(self, size: int) -> bytes:
        """Up to ``size`` decompressed bytes; b"" at the end of the data."""
        parts: list[bytes] = []
        have = 0
        while have < size and not self._done:
            if not self._input:
                self._input = self._fh.read(_GZIP_INPUT)
                if not self._input:
                    self._done = True
                    if self._in_member:
                        self.problem = "compressed stream ends early"
                    break
            try:
                out = self._z.decompress(self._input, size - have)
            except zlib.error as exc:
                self.problem = f"bad gzip data: {exc}"
                self._done = True
                break
            self._in_member = True
            self._input = self._z.unconsumed_tail
            if self._z.eof:  # a member ended: another may follow
                self._input = self._z.unused_data + self._input
                self._z = zlib.decompressobj(wbits=31)
                self._in_member = False
            parts.append(out)
            have += len(out)
        return b"".join(parts)


class _Source(Protocol):
    def read(self, size: int, /) -> bytes: ...


def _stream(
    src: _Source,
    close: Callable[[], None],
    buf: bytes,
    pos: int,
    scan: _ScanFn,
    reader: _Reader,
) -> Iterator[Packet]:
    """Run a record loop over a file read in chunks: holds at most one record plus a chunk."""
    try:
        while True:
            pos, need = yield from (reader.scan or scan)(buf, pos, reader, False)
            if not need:
                return
            parts = [buf[pos:]]
            have = len(parts[0])
            eof = False
            while have < need:
                chunk = src.read(CHUNK)
                if not chunk:
                    eof = True
                    break
                parts.append(chunk)
                have += len(chunk)
            buf = b"".join(parts)
            reader.offset += pos
            pos = 0
            if eof:
                problem = getattr(src, "problem", None)
                if problem:
                    reader.stats.warn(f"{reader.path}: {problem}; read what came before")
                yield from (reader.scan or scan)(buf, 0, reader, True)
                if problem:  # the rest of the file could not be decompressed: not read
                    reader.unread(len(buf), problem)
                return
    finally:
        close()


def _scan_pcap(data: Buffer, pos: int, reader: _Reader, final: bool, nested: bool = False) -> _Scan:
    """Walk pcap records in ``data`` from ``pos``; return where it stopped and what it needs.

    ``final`` means no more bytes will come: a record cut by the end of ``data`` is reported as a
    truncated file instead of asking for more.

    A capture appended to this one (``cat a.pcap b.pcap``, ``tcpdump -w - >> file``) begins with
    its own file header where a record should start. It is looked for only where a record is
    not taken on the fast path (``_file_header``): the loop goes on with that header's byte
    order, link type, snap length and time resolution, or reads a pcapng one with
    ``_scan_pcapng``. ``nested``: this loop reads pcap appended to a pcapng scan, and hands back
    to it (need ``_SWITCH``, ``pos`` at the section header) at the next pcapng section.
    """
    reader.scan = _scan_pcap
    size = len(data)
    mv = memoryview(data)
    eth = _ETH_IP_TCP.unpack_from
    rawip = _IP_TCP.unpack_from
    eth_payload = _PCAP_ETH_PAYLOAD
    raw_payload = _PCAP_RAW_PAYLOAD
    decode = reader.decoder.decode
    maxrec = MAX_RECORD
    window = min(_WINDOW, maxrec)
    # Records ending before ``lim`` cannot be absurdly long, so one comparison per record
    # checks both that and the end of the data. Crossing it slides the window forward.
    lim = min(size, pos + window)
    mapped = isinstance(data, mmap.mmap)
    released = 0  # pages of the mapping before this were handed back
    # Counts already added to stats (at each window slide, so progress shows mid-file).
    done_n = done_slow = 0
    done_pos = pos
    n = nslow = need = 0
    flows = reader.flows
    absorb = flows.absorb if flows is not None else None
    grants = flows.grants if flows is not None else None
    if grants is not None:
        grants.set_vxlan_ports(reader.decoder.vxlan_ports)
    base = reader.frames  # frame number of the record before the first one here
    lt = reader.iface.linktype
    try:
        while True:  # once per file header: this file's, then each one appended to it
            rec = _PCAP_REC[reader.order]
            heads = _HEADS[reader.order]  # a file header's magic, read as a record's seconds
            iface = reader.iface
            lt = iface.linktype
            div = iface.div
            eth_min, raw_min = iface.fast_minimums()
            walk = None
            if grants is not None and min(eth_min, raw_min) < _NEVER:
                walk = grants.walk_pcap
            ip_at = 14 if eth_min < _NEVER else 0
            big = reader.order == ">"
            at = -1  # offset of a file header met where a record should start
            while True:  # n: records consumed (read in the finally block)
                if walk is not None:  # absorb what the native walk can; stop where Python must
                    pos, k = walk(data, pos, lim, big, ip_at, div)
                    n += k
                n += 1
                try:
                    s, frac, caplen, olen = rec(data, pos)
                except StructError:  # fewer than 16 bytes left
                    n -= 1
                    if not final:
                        need = _PCAP_RECORD
                    elif pos < size:
                        reader.cut_short(size - pos, pos)
                    break
                e = pos + 16 + caplen
                if e > lim:
                    if (
                        (caplen > maxrec or (final and e > size))
                        and s in heads
                        and _file_header(data, pos) is not None
                    ):
                        at = pos
                        n -= 1
                        break
                    if caplen > maxrec:
                        reader.stop(f"record at offset {reader.at(pos)} claims {caplen} bytes", pos)
                        n -= 1
                        break
                    if e > size:
                        if not final:
                            need = _PCAP_RECORD + caplen
                            n -= 1
                            break
                        if size - pos <= 16:
                            reader.cut_short(size - pos, pos)
                            n -= 1
                            break
                        # What the cut record kept is read like a snaplen-cut packet: a request
                        # head begun in it then shows as lost, instead of vanishing unseen. Not
                        # decoded, the packet is lost, whatever connection it was on.
                        reader.cut_short(size - pos, None)
                        nslow += 1
                        ts = s + frac / div
                        r = decode(lt, data, pos + 16, size, ts)
                        if r is None:
                            reader.lost(pos, size - pos)
                        pos = size
                        if r is not None:
                            yield (ts, *r[:8], payload_of(r, mv)[r[8] : r[9]], base + n)
                        break
                    lim = min(size, e + window)
                    if mapped:
                        released = _release(data, released, pos)
                    k = n - 1 - done_n  # records before this one not yet counted
                    reader.add_counts(k, nslow - done_slow, pos - done_pos - 16 * k)
                    reader.count_linktype(lt, k)
                    done_n, done_slow, done_pos = n - 1, nslow, pos
                if caplen < olen:
                    if s in heads and _file_header(data, pos) is not None:
                        at = pos
                        n -= 1
                        break
                    reader.truncated()
                # IPv4 with a 20-byte header, TCP, not a fragment, headers inside the frame.
                if caplen >= eth_min:
                    w, tlen, fp, src, dst, sp, dp, seq, ack, off, flags = eth(data, pos + 28)
                    a = pos + eth_payload[off]
                    q = pos + 30 + tlen
                    fast = w >> 8 == 0x080045
                elif caplen >= raw_min:
                    w, tlen, fp, src, dst, sp, dp, seq, ack, off, flags = rawip(data, pos + 16)
                    a = pos + raw_payload[off]
                    q = pos + 16 + tlen
                    fast = w == 0x45
                else:
                    fast = False
                pos = e
                if fast and fp & 0x3FFF00FF == 6 and a <= q <= e:
                    ts = s + frac / div
                    # absorb what the reassembler would only count
                    if absorb is not None and absorb(
                        (src, sp, dst, dp), seq, ack, flags, q - a, ts
                    ):
                        continue
                    yield (ts, 6, src, sp, dst, dp, seq, ack, flags, mv[a:q], base + n)
                    continue
                if s in heads and _file_header(data, e - 16 - caplen) is not None:
                    at = pos = e - 16 - caplen
                    n -= 1
                    break
                nslow += 1
                ts = s + frac / div
                r = decode(lt, data, e - caplen, e, ts)
                if r is not None:
                    # tunnelled, VLAN-tagged, ...: absorbed as above (and granted to the walk)
                    if (
                        r[0] == 6
                        and absorb is not None
                        and absorb(r[1:5], r[5], r[6], r[7], r[9] - r[8], ts)
                    ):
                        continue
                    yield (ts, *r[:8], payload_of(r, mv)[r[8] : r[9]], base + n)
            if at < 0:
                break
            # Another capture's file header: count what came before it under this one's link.
            k = n - done_n
            reader.add_counts(k, nslow - done_slow, at - done_pos - 16 * k)
            reader.count_linktype(lt, k)
            done_n, done_slow, done_pos = n, nslow, at
            pos = at
            kind = _file_header(data, at)
            if not kind:  # the header is cut by the end of what was read
                if not final:
                    need = _PCAP_HEADER
                elif at < size:
                    reader.cut_short(size - at, at)
                break
            reader.appended(at)
            if kind == "pcapng":
                if nested:
                    need = _SWITCH  # back to the pcapng loop this one runs for
                    break
                reader.frames = base + n
                pos, need = yield from _scan_pcapng(data, at, reader, final, nested=True)
                base = reader.frames - n
                done_pos = pos
                if need != _SWITCH:
                    break  # the end, or more bytes wanted (the pcapng loop goes on with them)
                need = 0
                reader.scan = _scan_pcap
            _enter_pcap(reader, data, pos)
            pos = done_pos = pos + _PCAP_HEADER
            lim = min(size, pos + window)
    finally:
        k = n - done_n
        reader.add_counts(k, nslow - done_slow, pos - done_pos - 16 * k)
        reader.count_linktype(lt, k)
        reader.frames = base + n
        if final and not nested:
            reader.decoder.finish()
    return pos, need


def _scan_pcapng(
    data: Buffer, pos: int, reader: _Reader, final: bool, nested: bool = False
) -> _Scan:
    """Walk pcapng blocks in ``data`` from ``pos``; return where it stopped and what it needs.

    A pcap capture appended (its file header where a block should start) is read with
    ``_scan_pcap``; ``nested``: this loop reads pcapng appended to a pcap scan, and hands back to
    it (need ``_SWITCH``, ``pos`` at the pcap file header) at the next pcap one."""
    reader.scan = _scan_pcapng
    size = len(data)
    mv = memoryview(data)
    eth = _ETH_IP_TCP.unpack_from
    rawip = _IP_TCP.unpack_from
    eth_payload = _EPB_ETH_PAYLOAD
    raw_payload = _EPB_RAW_PAYLOAD
    decode = reader.decoder.decode
    order = reader.order
    epb = _EPB[order]
    block = _BLOCK[order]
    ifaces = reader.ifaces
    nif = len(ifaces)
    maxrec = MAX_RECORD
    window = min(_WINDOW, maxrec)
    lim = min(size, pos + window)  # as in _scan_pcap
    mapped = isinstance(data, mmap.mmap)
    released = 0
    done_n = done_slow = done_bytes = 0  # already added to stats
    # Interface of the last enhanced packet block, held in locals until the interface changes.
    cur = -1
    lt = -1
    div: float = 1_000_000
    tsoff = 0
    eth_min = raw_min = _NEVER
    last = -1  # offset of the last fast-path packet block (the time of simple packet blocks)
    n = nbytes = nslow = 0
    run0 = 0  # n when the current interface run began (for per-link-type packet counts)
    need = 0
    flows = reader.flows
    absorb = flows.absorb if flows is not None else None
    grants = flows.grants if flows is not None else None
    walk = grants.walk_pcapng if grants is not None else None
    if grants is not None:
        grants.set_vxlan_ports(reader.decoder.vxlan_ports)
    walkable = False  # the native walk can take the current interface's packets
    ip_at = 0
    big = order == ">"
    base = reader.frames  # frame number of the block before the first one here
    try:
        while True:
            if walkable:  # absorb what the native walk can; stop where Python must look
                pos, k, nb, at = walk(data, pos, lim, big, cur, ip_at, div)
                if k:
                    n += k
                    nbytes += nb
                    last = at
            try:
                bt, blen, ifid, hi, lo, caplen, olen = epb(data, pos)
            except StructError:  # fewer than 28 bytes left: not an enhanced packet
                bt = blen = caplen = 0
            nxt = pos + blen
            if bt == 6 and caplen + 32 <= blen and nxt <= lim:
                if ifid != cur:
                    if ifid >= nif:
                        n += 1
                        run0 += 1
                        nslow += 1
                        reader.bad_interface(ifid)
                        pos = nxt
                        continue
                    reader.count_linktype(lt, n - run0)
                    run0 = n
                    cur = ifid
                    i = ifaces[ifid]
                    lt, div, tsoff = i.linktype, i.div, i.tsoffset
                    eth_min, raw_min = i.fast_minimums()
                    walkable = (
                        walk is not None
                        and min(eth_min, raw_min) < _NEVER
                        and isinstance(div, int)  # the walk divides integers as Python does
                        and 0 < div < 1 << 64
                    )
                    ip_at = 14 if eth_min < _NEVER else 0
                last = pos
                n += 1
                nbytes += caplen
                if caplen < olen:
                    reader.truncated()
                e = pos + 28 + caplen
                if caplen >= eth_min:
                    w, tlen, fp, src, dst, sp, dp, seq, ack, off, flags = eth(data, pos + 40)
                    a = pos + eth_payload[off]
                    q = pos + 42 + tlen
                    fast = w >> 8 == 0x080045
                elif caplen >= raw_min:
                    w, tlen, fp, src, dst, sp, dp, seq, ack, off, flags = rawip(data, pos + 28)
                    a = pos + raw_payload[off]
                    q = pos + 28 + tlen
                    fast = w == 0x45
                else:
                    fast = False
                pos = nxt
                if fast and fp & 0x3FFF00FF == 6 and a <= q <= e:
                    ts = ((hi << 32) | lo) / div
                    # absorb what the reassembler would only count
                    if absorb is not None and absorb(
                        (src, sp, dst, dp), seq, ack, flags, q - a, ts
                    ):
                        continue
                    yield (ts, 6, src, sp, dst, dp, seq, ack, flags, mv[a:q], base + n)
                    continue
                nslow += 1
                ts = ((hi << 32) | lo) / div + tsoff
                r = decode(lt, data, e - caplen, e, ts)
                if r is not None:
                    # tunnelled, VLAN-tagged, ...: absorbed as above (and granted to the walk)
                    got = r[9] - r[8]
                    if (
                        r[0] == 6
                        and absorb is not None
                        and absorb(r[1:5], r[5], r[6], r[7], got, ts)
                    ):
                        continue
                    yield (ts, *r[:8], payload_of(r, mv)[r[8] : r[9]], base + n)
                continue

            # Any other block, and enhanced packet blocks the fast path did not take.
            if pos + 12 > size:
                if not final:
                    need = 12
                elif pos < size:
                    reader.cut_short(size - pos, pos)
                break
            bt = block(data, pos)[0]
            if bt in _PCAP_HEADS[order] and (kind := _file_header(data, pos)) is not None:
                # a pcap capture appended: count what came before, then read it
                reader.add_counts(n - done_n, nslow - done_slow, nbytes - done_bytes)
                reader.count_linktype(lt, n - run0)
                done_n, done_slow, done_bytes, run0 = n, nslow, nbytes, n
                if last >= 0:
                    reader.last_ts = _epb_time(data, last, order, ifaces)
                    last = -1
                if not kind:  # its header is cut by the end of what was read
                    if not final:
                        need = _PCAP_HEADER
                    else:
                        reader.cut_short(size - pos, pos)
                    break
                reader.appended(pos)
                if nested:
                    need = _SWITCH  # back to the pcap loop this one runs for
                    break
                _enter_pcap(reader, data, pos)
                reader.frames = base + n
                pos, need = yield from _scan_pcap(data, pos + _PCAP_HEADER, reader, final, True)
                base = reader.frames - n
                if need != _SWITCH:
                    break  # the end, or more bytes wanted (the pcap loop goes on with them)
                need = 0
                reader.scan = _scan_pcapng
                walkable = False  # the section header at pos sets the rest afresh
                continue
            if bt == _PCAPNG_SHB:  # a new section may switch byte order
                bom = bytes(data[pos + 8 : pos + 12])
                if bom not in _PCAPNG_BOMS:
                    reader.stop(
                        f"pcapng section header at offset {reader.at(pos)} has a bad byte-order "
                        "magic",
                        pos,
                    )
                    break
                order = _PCAPNG_BOMS[bom]
                epb = _EPB[order]
                block = _BLOCK[order]
                big = order == ">"
            blen = block(data, pos)[1]
            if blen < 12 or blen & 3 or blen > maxrec:
                reader.stop(
                    f"pcapng block at offset {reader.at(pos)} has an invalid length {blen}", pos
                )
                break
            nxt = pos + blen
            if nxt > size:
                if final:
                    reader.cut_short(size - pos, pos)
                else:
                    need = blen
                break
            if nxt > lim:
                lim = min(size, nxt + window)
                if mapped:
                    released = _release(data, released, pos)
                reader.add_counts(n - done_n, nslow - done_slow, nbytes - done_bytes)
                reader.count_linktype(lt, n - run0)
                done_n, done_slow, done_bytes, run0 = n, nslow, nbytes, n
            if bt == _PCAPNG_SHB:  # interfaces are numbered per section
                reader.count_linktype(lt, n - run0)
                run0 = n
                cur = -1
                walkable = False
                last = -1
                reader.order = order
                reader.last_ts = 0.0
                reader.section += 1
                ifaces = reader.ifaces = []
                nif = 0
            elif bt == _BLOCK_IDB:
                if blen >= 20:
                    ifaces.append(_parse_idb(data, pos, blen, order))
                    nif += 1
            elif bt in (_BLOCK_EPB, _BLOCK_OPB, _BLOCK_SPB):
                if last >= 0:  # keep the fast path's last timestamp before it goes stale
                    reader.last_ts = _epb_time(data, last, order, ifaces)
                    last = -1
                n += 1
                run0 += 1
                nslow += 1
                pkt = _slow_packet(data, pos, blen, bt, order, ifaces, reader)
                if pkt is not None:
                    plt, ts, p, plen, olen = pkt
                    nbytes += plen
                    reader.count_linktype(plt, 1)
                    if plen < olen:
                        reader.truncated()
                    r = decode(plt, data, p, p + plen, ts)
                    if r is not None:
                        pos = nxt
                        yield (ts, *r[:8], payload_of(r, mv)[r[8] : r[9]], base + n)
                        continue
            elif bt == _BLOCK_ISB:  # rare: once per interface when a capture ends
                reader.statistics(data, pos, blen, order)
            elif bt in _RECORD_BLOCKS:  # a frame in Wireshark, though not a packet
                n += 1
                run0 += 1
                nslow += 1
            pos = nxt
    finally:
        if last >= 0:
            reader.last_ts = _epb_time(data, last, order, ifaces)
        reader.add_counts(n - done_n, nslow - done_slow, nbytes - done_bytes)
        reader.count_linktype(lt, n - run0)
        reader.frames = base + n
        if final and not nested:
            reader.decoder.finish()
    return pos, need


def _release(data: mmap.mmap, done: int, upto: int) -> int:
    """Unmap the pages of ``data`` before ``upto`` (from ``done``) to keep RSS bounded.

    The file stays in the page cache, and payload views still held by the consumer fault
    their pages back in on access, so this only drops the process's mapping of them.
    """
    upto -= upto % mmap.PAGESIZE
    if upto > done:
        with contextlib.suppress(OSError, ValueError):
            data.madvise(mmap.MADV_DONTNEED, done, upto - done)
        return upto
    return done


def _parse_idb(data: Buffer, pos: int, blen: int, order: str) -> _Interface:
    """An interface description block: link type, snaplen, if_tsresol (9), if_tsoffset (14)."""
    linktype, snaplen = _IDB[order](data, pos + 8)
    iface = _Interface(linktype, 1_000_000, 0, snaplen)
    for code, v, length in _options(data, pos + 16, pos + blen - 4, order):
        if code == 9 and length >= 1:
            res = data[v]
            # High bit clear: units of 10^-n seconds; set: 2^-n. Cap nonsense exponents.
            iface.div = 2 ** min(res & 0x7F, 64) if res & 0x80 else 10 ** min(res, 30)
        elif code == 14 and length >= 8:
            iface.tsoffset = _I64[order](data, v)[0]
    return iface


def _options(data: Buffer, o: int, end: int, order: str) -> Iterator[tuple[int, int, int]]:
    """(code, offset of the value, length) of each option of a block, from ``o`` up to ``end``
    (where the block's trailing length begins), until opt_endofopt; an option whose value runs
    past the block ends the list, given with length -1 (its value unreadable)."""
    opt = _OPT[order]
    while o + 4 <= end:
        code, length = opt(data, o)
        if code == 0:
            return
        v = o + 4
        if v + length > end:
            yield code, v, -1
            return
        yield code, v, length
        o = v + ((length + 3) & ~3)


def _isb_drops(data: Buffer, pos: int, blen: int, order: str) -> tuple[int, int | None, bool]:
    """(interface id, packets dropped since the capture began, whether a drop counter could not
    be read) of the interface statistics block at ``pos``: isb_ifdrop plus isb_osdrop; None
    when it tells neither. A counter not 8 bytes long, or running past the block, is unread."""
    if blen < 24:
        return 0, None, False
    ifid = _U32[order](data, pos + 8)[0]
    u64 = _U64[order]
    dropped = None
    unread = False
    for code, v, length in _options(data, pos + 20, pos + blen - 4, order):
        if code not in _ISB_DROPS:
            continue
        if length != 8:
            unread = True
            continue
        count = u64(data, v)[0]
        if count != _UNKNOWN_COUNT:
            dropped = (dropped or 0) + count
    return ifid, dropped, unread


def _epb_time(data: Buffer, pos: int, order: str, ifaces: list[_Interface]) -> float:
    """Timestamp of the enhanced packet block at ``pos`` (its interface already validated)."""
    _bt, _blen, ifid, hi, lo, _cap, _orig = _EPB[order](data, pos)
    i = ifaces[ifid]
    return ((hi << 32) | lo) / i.div + i.tsoffset


def _slow_packet(
    data: Buffer,
    pos: int,
    blen: int,
    bt: int,
    order: str,
    ifaces: list[_Interface],
    reader: _Reader,
) -> tuple[int, float, int, int, int] | None:
    """(link type, ts, data offset, captured length, original length) of a packet block.

    Handles simple (3) and obsolete (2) packet blocks and the enhanced ones (6) the fast path
    left alone. None when the block is unusable (counted and warned).
    """
    if blen < (16 if bt == _BLOCK_SPB else 32):
        reader.stats.undecodable += 1
        reader.decoder.warn_once("shortblock", f"{reader.path}: packet blocks too short skipped")
        return None
    if bt == _BLOCK_SPB:
        ifid, p = 0, pos + 12
        olen = _U32[order](data, pos + 8)[0]
        caplen = min(olen, blen - 16)
    else:
        if bt == _BLOCK_EPB:
            _b, _l, ifid, hi, lo, caplen, olen = _EPB[order](data, pos)
        else:
            ifid, hi, lo, caplen, olen = _OPB[order](data, pos + 8)
        p = pos + _EPB_HEADER
    if ifid >= len(ifaces):
        reader.bad_interface(ifid)
        return None
    iface = ifaces[ifid]
    if bt == _BLOCK_SPB:
        if iface.snaplen:
            caplen = min(caplen, iface.snaplen)
        reader.untimed()
        return iface.linktype, reader.last_ts, p, caplen, olen
    if caplen + 32 > blen:
        reader.stats.undecodable += 1
        reader.decoder.warn_once(
            "badcaplen",
            f"{reader.path}: packet blocks whose captured length exceeds the block skipped",
        )
        return None
    ts = ((hi << 32) | lo) / iface.div + iface.tsoffset
    reader.last_ts = ts
    return iface.linktype, ts, p, caplen, olen
