"""HTTP/2 bytes for tests: frames laid out by hand (RFC 9113 section 4.1), header blocks encoded
with the ``hpack`` library (one encoder per direction, as a real peer keeps it)."""

from __future__ import annotations

import struct

from hpack import Encoder

from analyzer.protocols.http2_frames import (
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    PADDED,
    PING,
    PRIORITY_FLAG,
    PUSH_PROMISE,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
)


def frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    """One frame: 24-bit length, type, flags, 31-bit stream id, payload."""
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([ftype, flags])
        + struct.pack(">I", sid)
        + payload
    )


class Peer:
    """One side of a connection: its HPACK encoder and the frames it sends."""

    def __init__(self) -> None:
        self.encoder = Encoder()

    def headers(
        self,
        sid: int,
        fields: list[tuple[str, str]],
        *,
        end: bool = False,
        pad: int = 0,
        priority: bool = False,
        split: int = 0,
        huffman: bool = True,
    ) -> bytes:
        """HEADERS (padded / with priority if asked), the block cut into CONTINUATION frames
        of ``split`` bytes when ``split`` is given."""
        block = self.encoder.encode(fields, huffman=huffman)
        return self.block(HEADERS, sid, block, end=end, pad=pad, priority=priority, split=split)

    def block(
        self,
        ftype: int,
        sid: int,
        block: bytes,
        *,
        end: bool = False,
        pad: int = 0,
        priority: bool = False,
        split: int = 0,
        prefix: bytes = b"",
    ) -> bytes:
        """An encoded header block as HEADERS or PUSH_PROMISE (``prefix``: the promised
        stream id) plus CONTINUATION frames."""
        pieces = [block[i : i + split] for i in range(0, len(block), split)] if split else [block]
        flags = END_STREAM if end else 0
        head = prefix
        if priority:
            flags |= PRIORITY_FLAG
            head = struct.pack(">IB", 3, 15) + head
        if pad:
            flags |= PADDED
            head = bytes([pad]) + head
        last = len(pieces) == 1
        out = frame(
            ftype, flags | (END_HEADERS if last else 0), sid, head + pieces[0] + b"\0" * pad
        )
        for i, piece in enumerate(pieces[1:], 2):
            out += frame(CONTINUATION, END_HEADERS if i == len(pieces) else 0, sid, piece)
        return out

    def push(self, sid: int, promised: int, fields: list[tuple[str, str]]) -> bytes:
        block = self.encoder.encode(fields)
        return self.block(PUSH_PROMISE, sid, block, prefix=struct.pack(">I", promised))


def data(sid: int, payload: bytes, *, end: bool = False, pad: int = 0) -> bytes:
    flags = (END_STREAM if end else 0) | (PADDED if pad else 0)
    body = bytes([pad]) + payload + b"\0" * pad if pad else payload
    return frame(DATA, flags, sid, body)


def settings(*pairs: tuple[int, int], ack: bool = False) -> bytes:
    return frame(SETTINGS, 1 if ack else 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def rst(sid: int, code: int = 8) -> bytes:
    return frame(RST_STREAM, 0, sid, struct.pack(">I", code))


def goaway(last: int, code: int = 0) -> bytes:
    return frame(GOAWAY, 0, 0, struct.pack(">II", last, code))


def ping() -> bytes:
    return frame(PING, 0, 0, b"12345678")


def window_update(sid: int, increment: int = 1 << 20) -> bytes:
    return frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", increment))


def request(path: str, *extra: tuple[str, str], method: str = "GET") -> list[tuple[str, str]]:
    """Request pseudo-headers for api.test plus ``extra`` fields."""
    return [
        (":method", method),
        (":scheme", "http"),
        (":authority", "api.test"),
        (":path", path),
        *extra,
    ]


def response(status: int, *extra: tuple[str, str]) -> list[tuple[str, str]]:
    return [(":status", str(status)), *extra]
