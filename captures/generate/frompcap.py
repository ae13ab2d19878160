"""The HTTP exchanges of a generated capture, read back from its pcap bytes, so the same traffic
can be written as a Fiddler SAZ or a HAR (``archives``).

A small reader of its own (classic pcap; Ethernet with 802.1Q, NULL or raw IP links; IPv4 and
IPv6; TCP in sequence-number order; HTTP/1.x framed by Content-Length or chunked encoding),
sharing no code with the analyzer, for the clean captures this package writes. It keeps what an
archive can hold: each request and response as sent, the capture time of each one's first byte,
the endpoints, TLS connections it cannot read (a SAZ records those as CONNECT tunnels, with the
ClientHello's server name), and a request cut short by the end of the file.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass, field

_PCAP = {b"\xd4\xc3\xb2\xa1": ("<", 1_000), b"\xa1\xb2\xc3\xd4": (">", 1_000)}
_PCAP |= {b"\x4d\x3c\xb2\xa1": ("<", 1), b"\xa1\xb2\x3c\x4d": (">", 1)}
_LENGTH = re.compile(rb"(?im)^content-length:[ \t]*(\d+)[ \t]*\r?$")
_CHUNKED = re.compile(rb"(?im)^transfer-encoding:[^\r\n]*chunked")


@dataclass
class Message:
    """One HTTP message as it went over the wire."""

    data: bytes
    ts_ns: int  # capture time of the packet holding its first byte


@dataclass
class WireExchange:
    """A request and its response (None when none came) on one TCP connection."""

    client: tuple[str, int]
    server: tuple[str, int]
    request: Message
    response: Message | None
    complete: bool = True  # False: the capture ends inside the request's head


@dataclass
class TlsTunnel:
    """A TLS connection the capture cannot read: where it went, its server name, and when."""

    client: tuple[str, int]
    server: tuple[str, int]
    sni: str | None
    ts_ns: int


@dataclass
class _Direction:
    data: bytearray = field(default_factory=bytearray)
    isn: int | None = None
    starts: list[tuple[int, int]] = field(default_factory=list)  # (offset, ts_ns) of segments

    def add(self, seq: int, payload: bytes, ts_ns: int) -> None:
        if self.isn is None:
            self.isn = seq
        offset = (seq - self.isn) % (1 << 32)
        if offset > len(self.data):
            return  # a hole: these captures have none
        if offset + len(payload) > len(self.data):
            self.starts.append((offset, ts_ns))
            self.data[offset:] = payload
        # a retransmission of bytes already held changes nothing

    def time_of(self, offset: int) -> int:
        best = self.starts[0][1]
        for start, ts in self.starts:
            if start > offset:
                break
            best = ts
        return best


@dataclass
class _Connection:
    client: tuple[str, int]
    server: tuple[str, int]
    first_ns: int
    up: _Direction = field(default_factory=_Direction)
    down: _Direction = field(default_factory=_Direction)


def read_exchanges(blob: bytes) -> tuple[list[WireExchange], list[TlsTunnel]]:
    """Every HTTP exchange of a pcap (in request-time order) and every TLS connection."""
    connections = _connections(blob)
    exchanges: list[WireExchange] = []
    tunnels: list[TlsTunnel] = []
    for conn in connections:
        if conn.up.data[:1] == b"\x16":
            hello_ts = conn.up.starts[0][1] if conn.up.starts else conn.first_ns
            tunnels.append(TlsTunnel(conn.client, conn.server, _sni(bytes(conn.up.data)), hello_ts))
            continue
        exchanges += _http(conn)
    exchanges.sort(key=lambda x: x.request.ts_ns)
    return exchanges, tunnels


def _connections(blob: bytes) -> list[_Connection]:
    order, units = _PCAP[blob[:4]]
    (link,) = struct.unpack_from(order + "I", blob, 20)
    pos = 24
    found: dict[tuple, _Connection] = {}
    out: list[_Connection] = []
    while pos + 16 <= len(blob):
        sec, frac, caplen, _ = struct.unpack_from(order + "IIII", blob, pos)
        frame = blob[pos + 16 : pos + 16 + caplen]
        pos += 16 + caplen  # a record cut by the end of the file is read as far as it goes
        packet = _tcp(frame, link)
        if packet is None:
            continue
        src, dst, seq, flags, payload = packet
        ts_ns = sec * 1_000_000_000 + frac * units
        key = (src, dst)
        conn = found.get(key) or found.get((dst, src))
        if flags & 0x02 and not flags & 0x10:  # a SYN: a new connection from src
            conn = _Connection(src, dst, ts_ns)
            found[key] = found[(dst, src)] = conn
            out.append(conn)
            conn.up.isn = (seq + 1) % (1 << 32)
            continue
        if conn is None:
            conn = _Connection(src, dst, ts_ns)
            found[key] = found[(dst, src)] = conn
            out.append(conn)
        side = conn.up if src == conn.client else conn.down
        if flags & 0x02:  # SYN-ACK
            side.isn = (seq + 1) % (1 << 32)
        elif payload:
            side.add(seq, payload, ts_ns)
    return out


def _tcp(frame: bytes, link: int) -> tuple | None:
    try:
        return _parse_tcp(frame, link)
    except (IndexError, struct.error):
        return None  # too short for its headers (the record the file was cut in)


def _parse_tcp(frame: bytes, link: int) -> tuple | None:
    if link == 1:
        ethertype, at = struct.unpack_from(">H", frame, 12)[0], 14
        while ethertype in (0x8100, 0x88A8):
            ethertype, at = struct.unpack_from(">H", frame, at + 2)[0], at + 4
    elif link == 0:
        ethertype = 0x86DD if struct.unpack_from("<I", frame)[0] in (24, 28, 30) else 0x0800
        at = 4
    else:
        ethertype, at = (0x86DD if frame[0] >> 4 == 6 else 0x0800), 0
    if ethertype == 0x0800 and frame[at + 9] == 6:
        ihl = (frame[at] & 0x0F) * 4
        (total,) = struct.unpack_from(">H", frame, at + 2)
        src_ip = str(ipaddress.IPv4Address(frame[at + 12 : at + 16]))
        dst_ip = str(ipaddress.IPv4Address(frame[at + 16 : at + 20]))
        tcp, end = at + ihl, at + total
    elif ethertype == 0x86DD and frame[at + 6] == 6:
        (plen,) = struct.unpack_from(">H", frame, at + 4)
        src_ip = str(ipaddress.IPv6Address(frame[at + 8 : at + 24]))
        dst_ip = str(ipaddress.IPv6Address(frame[at + 24 : at + 40]))
        tcp, end = at + 40, at + 40 + plen
    else:
        return None
    sport, dport, seq, _, offset, flags = struct.unpack_from(">HHIIBB", frame, tcp)
    payload = frame[tcp + (offset >> 4) * 4 : end]
    return (src_ip, sport), (dst_ip, dport), seq, flags, payload


def _http(conn: _Connection) -> list[WireExchange]:
    requests = _split(conn.up, is_request=True, methods=[])
    methods = [r[0].data.split(b" ", 1)[0] for r in requests]
    responses = _split(conn.down, is_request=False, methods=methods)
    out = []
    for i, (request, complete) in enumerate(requests):
        response = responses[i][0] if i < len(responses) else None
        out.append(WireExchange(conn.client, conn.server, request, response, complete))
    return out


def _split(
    direction: _Direction, is_request: bool, methods: list[bytes]
) -> list[tuple[Message, bool]]:
    """The messages of one direction, each with whether its head was complete."""
    data = bytes(direction.data)
    pos = 0
    out: list[tuple[Message, bool]] = []
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            out.append((Message(data[pos:], direction.time_of(pos)), False))
            break
        head = data[pos : end + 4]
        status = b"" if is_request else head[9:12]
        method = methods[len(out)] if len(out) < len(methods) else b""
        no_body = status[:1] == b"1" or status in (b"204", b"304") or method == b"HEAD"
        if not is_request and no_body:
            size = 0
        elif _CHUNKED.search(head):
            size = _chunked_size(data, end + 4)
        else:
            length = _LENGTH.search(head)
            size = int(length.group(1)) if length else (0 if is_request else len(data) - end - 4)
        stop = end + 4 + size
        message = Message(data[pos:stop], direction.time_of(pos))
        if not is_request and status[:1] == b"1":
            pos = stop  # an interim response: the real answer follows
            continue
        out.append((message, True))
        pos = stop
    return out


def _chunked_size(data: bytes, start: int) -> int:
    pos = start
    while True:
        nl = data.index(b"\r\n", pos)
        size = int(data[pos:nl].split(b";")[0], 16)
        pos = nl + 2 + size + 2
        if size == 0:
            return pos - start


def _sni(hello: bytes) -> str | None:
    """The server_name of a ClientHello at the start of ``hello``."""
    try:
        at = 5 + 4 + 2 + 32  # record header, handshake header, version, random
        at += 1 + hello[at]  # session id
        (n,) = struct.unpack_from(">H", hello, at)
        at += 2 + n  # cipher suites
        at += 1 + hello[at]  # compression methods
        (total,) = struct.unpack_from(">H", hello, at)
        at += 2
        end = at + total
        while at + 4 <= end:
            kind, size = struct.unpack_from(">HH", hello, at)
            if kind == 0:
                (length,) = struct.unpack_from(">H", hello, at + 7)
                return hello[at + 9 : at + 9 + length].decode("ascii")
            at += 4 + size
    except (IndexError, struct.error, UnicodeDecodeError):
        return None
    return None
