"""Hostile captures too big to write to disk, made on the fly, and a runner that measures them.

``python tests/caps_kit.py SCENARIO SIZE`` streams the scenario's capture through the real
engine (``Engine.read_stream`` over a raw stream whose bytes are generated as they are read: a
200 MB header is never held twice, nor once), works out the whole analysis, and prints one JSON
line: CPU seconds, peak RSS (``resource.getrusage``) and what the analysis said. The tests in
``test_caps.py`` run it in a subprocess, so each measurement starts from a fresh process.
"""

from __future__ import annotations

import io
import json
import resource
import struct
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

T0 = 1772442000
CLIENT, SERVER = b"\x0a\x09\x09\x01", b"\x0a\x09\x09\x02"
SEGMENT = 65000  # TCP payload per packet (an IPv4 packet holds at most 65535 bytes)
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
_ETH = b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\x08\x00"


def frame(src: bytes, sport: int, dst: bytes, dport: int, seq: int, ack: int, flags: int,
          payload: bytes = b"") -> bytes:  # fmt: skip
    """Ethernet / IPv4 / TCP around ``payload``."""
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0x4000, 64, 6, 0, src, dst)
    tcp = struct.pack(">HHIIBBHHH", sport, dport, seq % (1 << 32), ack % (1 << 32), 0x50, flags,
                      65535, 0, 0)  # fmt: skip
    return _ETH + ip + tcp + payload


def record(ts: float, data: bytes) -> bytes:
    sec = int(ts)
    return struct.pack("<IIII", sec, int((ts - sec) * 1e6), len(data), len(data)) + data


def connection(sport: int, request: Iterable[bytes], response: Iterable[bytes], t: float,
               client: bytes = CLIENT) -> Iterator[bytes]:  # fmt: skip
    """pcap records of one connection: handshake, the request's pieces, the response's, FINs.
    Pieces longer than SEGMENT are cut into segments as they are generated."""
    c, s = 1000, 5000
    yield record(t, frame(client, sport, SERVER, 80, c, 0, 0x02))
    yield record(t, frame(SERVER, 80, client, sport, s, c + 1, 0x12))
    c, s = c + 1, s + 1
    for side, pieces in ((0, request), (1, response)):
        for piece in pieces:
            for at in range(0, len(piece), SEGMENT):
                part = piece[at : at + SEGMENT]
                t += 0.0001
                if side == 0:
                    yield record(t, frame(client, sport, SERVER, 80, c, s, 0x18, part))
                    c += len(part)
                else:
                    yield record(t, frame(SERVER, 80, client, sport, s, c, 0x18, part))
                    s += len(part)
    yield record(t, frame(client, sport, SERVER, 80, c, s, 0x11))
    yield record(t, frame(SERVER, 80, client, sport, s, c + 1, 0x11))
    yield record(t, frame(client, sport, SERVER, 80, c + 1, s + 1, 0x10))


class Generated(io.RawIOBase):
    """A raw stream whose bytes come from an iterator of pieces, produced as they are read."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self._pieces = iter(pieces)
        self._left = b""
        self.total = 0

    def readable(self) -> bool:
        return True

    def read1(self, size: int = -1) -> bytes:
        size = size if size > 0 else 1 << 20
        parts, have = [self._left], len(self._left)
        while have < size:
            piece = next(self._pieces, None)
            if piece is None:
                break
            parts.append(piece)
            have += len(piece)
        data = b"".join(parts)
        out, self._left = data[:size], data[size:]
        self.total += len(out)
        return out

    read = read1


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def _filler(nbytes: int, unit: bytes = b"A" * (1 << 20)) -> Iterator[bytes]:
    while nbytes > 0:
        yield unit[:nbytes]
        nbytes -= len(unit)


def _bearer_after(sport: int, t: float) -> Iterator[bytes]:
    """A normal exchange on the next connection: the run goes on after the hostile one."""
    request = b"GET /after HTTP/1.1\r\nHost: web.test\r\nAuthorization: Basic YWxpY2U6cHc=\r\n\r\n"
    yield from connection(sport, [request], [OK], t)


# -- scenarios: SIZE -> the capture's pieces -----------------------------------------------------
def header(mb: int) -> Iterator[bytes]:
    """An Authorization header of ``mb`` MB (it ends: CRLF CRLF follows), then a normal exchange."""
    yield PCAP_HEADER
    head = b"GET /big HTTP/1.1\r\nHost: web.test\r\nAuthorization: Bearer "
    request = [head, *_filler(mb << 20), b"\r\n\r\n"]
    yield from connection(40001, request, [OK], T0)
    yield from _bearer_after(40002, T0 + 1)


def headless(mb: int) -> Iterator[bytes]:
    """A request head of ``mb`` MB that never ends (no blank line, no line end at all)."""
    yield PCAP_HEADER
    request = [b"GET /endless HTTP/1.1\r\nHost: web.test\r\nX-Filler: ", *_filler(mb << 20)]
    yield from connection(40001, request, [], T0)
    yield from _bearer_after(40002, T0 + 1)


def _many_clients(
    n: int, packets: Callable[[int, bytes, int, float], list[bytes]]
) -> Iterator[bytes]:
    """A capture of ``n`` connections from many clients (``packets`` gives connection i's
    frames), written in batches, then a normal exchange."""
    yield PCAP_HEADER
    batch: list[bytes] = []
    for i in range(n):
        client = struct.pack(">I", 0x0A000000 + (i >> 16))
        t = T0 + i / 100_000
        batch += [record(t, f) for f in packets(i, client, i & 0xFFFF, t)]
        if len(batch) >= 4096:
            yield b"".join(batch)
            batch = []
    yield b"".join(batch)
    yield from _bearer_after(40002, T0 + n / 100_000 + 1)


def syn(n: int) -> Iterator[bytes]:
    """``n`` half-open connections (SYN, SYN-ACK, nothing more), then a normal exchange."""
    return _many_clients(n, lambda i, client, sport, t: [
        frame(client, sport, SERVER, 80, 1000 + i, 0, 0x02),
        frame(SERVER, 80, client, sport, 7, 1001 + i, 0x12),
    ])  # fmt: skip


def open_heads(n: int) -> Iterator[bytes]:
    """``n`` connections that each send the start of a request head and then nothing more
    (never answered, never closed), then a normal exchange."""
    head = b"GET /slow HTTP/1.1\r\nHost: web.test\r\nUser-Agent: slowloris\r\n"
    return _many_clients(n, lambda i, client, sport, t: [
        frame(client, sport, SERVER, 80, 1000, 0, 0x02),
        frame(SERVER, 80, client, sport, 7, 1001, 0x12),
        frame(client, sport, SERVER, 80, 1001, 8, 0x18, head),
    ])  # fmt: skip


def _crc32_of_zeros(n: int) -> int:
    """CRC-32 of ``n`` zero bytes without computing over them: zlib's crc32_combine (operator
    matrices over GF(2), squared for each bit of n)."""

    def times(matrix: list[int], vec: int) -> int:
        out, i = 0, 0
        while vec:
            if vec & 1:
                out ^= matrix[i]
            vec >>= 1
            i += 1
        return out

    def square(matrix: list[int]) -> list[int]:
        return [times(matrix, matrix[i]) for i in range(32)]

    odd = [0xEDB88320] + [1 << i for i in range(31)]  # the operator for one zero bit
    even = square(odd)  # two zero bits
    odd = square(even)  # four zero bits
    crc = 0xFFFFFFFF
    while n:
        even = square(odd)
        if n & 1:
            crc = times(even, crc)
        n >>= 1
        if not n:
            break
        odd = square(even)
        if n & 1:
            crc = times(odd, crc)
        n >>= 1
    return crc ^ 0xFFFFFFFF


def gzip_bomb(gb: int) -> tuple[int, Callable[[], Iterator[bytes]]]:
    """(compressed size, a generator of the bytes) of a valid gzip member that inflates to
    ``gb`` GiB of zeros. Full flushes make every 16 MiB block compress to the same bytes, so the
    stream is built by repetition, never by deflating gigabytes."""
    unit = 16 << 20
    blocks = (gb << 30) // unit
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = z.compress(bytes(unit)) + z.flush(zlib.Z_FULL_FLUSH)
    again = z.compress(bytes(unit)) + z.flush(zlib.Z_FULL_FLUSH)
    assert z.compress(bytes(unit)) + z.flush(zlib.Z_FULL_FLUSH) == again
    end = z.flush()
    size = blocks * unit
    trailer = struct.pack("<II", _crc32_of_zeros(size), size & 0xFFFFFFFF)
    head = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"

    def pieces() -> Iterator[bytes]:
        yield head + first
        for _ in range(blocks - 1):
            yield again
        yield end + trailer

    return len(head) + len(first) + (blocks - 1) * len(again) + len(end) + 8, pieces


def gzip(gb: int) -> Iterator[bytes]:
    """A token-endpoint answer and a metadata document, each a ``gb`` GiB gzip bomb."""
    size, pieces = gzip_bomb(gb)
    yield PCAP_HEADER
    form = b"grant_type=client_credentials&client_id=app&client_secret=s3cret"
    token_request = (
        b"POST /oauth2/token HTTP/1.1\r\nHost: login.test\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: " + str(len(form)).encode() + b"\r\n\r\n" + form
    )
    metadata_request = b"GET /metadata/json/1 HTTP/1.1\r\nHost: sts.test\r\n\r\n"
    for sport, request, kind in (
        (40001, token_request, b"application/json"),
        (40003, metadata_request, b"application/json"),
    ):
        answer = (
            b"HTTP/1.1 200 OK\r\nContent-Type: " + kind + b"\r\nContent-Encoding: gzip\r\n"
            b"Content-Length: " + str(size).encode() + b"\r\n\r\n"
        )
        yield from connection(sport, [request], [answer, *pieces()], T0 + sport - 40000)
    yield from _bearer_after(40002, T0 + 9)


def json_deep(depth: int) -> Iterator[bytes]:
    """JSON nested ``depth`` deep as a metadata document, a JWKS and a token response, and
    (as deep as a token may be long) in a bearer token's claims."""
    import base64

    yield PCAP_HEADER
    deep = b'{"keys":' + b"[" * depth + b"]" * depth + b"}"
    for sport, path in ((40001, b"/metadata/json/1"), (40003, b"/discovery/keys")):
        request = b"GET " + path + b" HTTP/1.1\r\nHost: sts.test\r\n\r\n"
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(deep)).encode() + b"\r\n\r\n"
        yield from connection(sport, [request], [answer, deep], T0 + sport - 40000)
    form = b"grant_type=client_credentials&client_id=app"
    token_request = (
        b"POST /oauth2/token HTTP/1.1\r\nHost: login.test\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: " + str(len(form)).encode() + b"\r\n\r\n" + form
    )
    body = b'{"access_token":' + b"[" * depth + b"]" * depth + b"}"
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    yield from connection(40004, [token_request], [answer, body], T0 + 5)
    claims_depth = min(depth, 20_000)  # a token is decoded up to 64 KiB of text
    claims = b'{"iss":"i@x","ctx":' + b"[" * claims_depth + b"]" * claims_depth + b"}"
    token = b"eyJhbGciOiJub25lIn0." + base64.urlsafe_b64encode(claims).rstrip(b"=") + b"."
    bearer = b"GET /api HTTP/1.1\r\nHost: web.test\r\nAuthorization: Bearer " + token + b"\r\n\r\n"
    yield from connection(40005, [bearer], [OK], T0 + 6)
    yield from _bearer_after(40002, T0 + 9)


def _block(kind: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return struct.pack("<II", kind, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))


def interfaces(n: int) -> Iterator[bytes]:
    """A pcapng section declaring ``n`` interfaces (each with a timestamp resolution and
    offset option), then a normal exchange whose packets go round all of them."""
    yield _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    options = struct.pack("<HHB3x", 9, 1, 6) + struct.pack("<HHq", 14, 8, 0) + b"\0" * 4
    idb = _block(1, struct.pack("<HHI", 1, 0, 262144) + options)
    for at in range(0, n, 4096):
        yield idb * min(4096, n - at)
    records = b"".join(_bearer_after(40002, T0))
    pos, i = 0, 0
    while pos < len(records):
        sec, usec, caplen, _olen = struct.unpack_from("<IIII", records, pos)
        data = records[pos + 16 : pos + 16 + caplen]
        micros = sec * 1_000_000 + usec
        head = struct.pack("<IIIII", (i * 7919) % n, micros >> 32, micros & 0xFFFFFFFF, caplen,
                           caplen)  # fmt: skip
        yield _block(6, head + data)
        pos += 16 + caplen
        i += 1


SCENARIOS: dict[str, Callable[[int], Iterator[bytes]]] = {
    "interfaces": interfaces,
    "header": header,
    "headless": headless,
    "syn": syn,
    "open": open_heads,
    "gzip": gzip,
    "json": json_deep,
}


def measure(scenario: str, size: int) -> dict:
    from analyzer.engine import Engine
    from analyzer.report.table import write_table

    stream = Generated(SCENARIOS[scenario](size))
    start_cpu, start = time.process_time(), time.monotonic()
    engine = Engine()
    stats = engine.read_stream(stream, f"{scenario}-{size}")  # type: ignore[arg-type]
    result = engine.finish()
    out = io.StringIO()
    write_table(result.events, result.captures, out, result.verdicts, result.findings,
                result.not_inspected)  # fmt: skip
    return {
        "scenario": scenario,
        "size": size,
        "bytes": stream.total,
        "cpu_s": round(time.process_time() - start_cpu, 3),
        "wall_s": round(time.monotonic() - start, 3),
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "events": [[e.uri, e.scheme, e.user, e.status] for e in result.events],
        "warnings": stats.warnings + list(result.key_warnings),
        "tcp_connections": stats.tcp_connections,
        "evicted": stats.evicted,
        "not_inspected": [[n.kind, n.count] for n in result.not_inspected],
        "keys": result.keys,
        "table_chars": len(out.getvalue()),
    }


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1], int(sys.argv[2]))))
