"""HTTP/2 frames of one direction of a connection (sans-I/O): bytes in, frame events out.

``FrameReader.data`` takes ordered bytes and tells its ``FrameHandler`` what they held: header
blocks (HEADERS + CONTINUATION, PUSH_PROMISE) decoded with the ``hpack`` library, with one HPACK
decoder kept for the whole direction; DATA bytes for the streams whose bodies are wanted; the end
of a stream; RST_STREAM, GOAWAY and SETTINGS. It returns how many of the coming bytes it does not
need (a DATA payload nobody keeps, a PING, a WINDOW_UPDATE): the reassembler drops them without
copying (the ``skip`` contract of ``analyzer.flows.tcp``).

A reader that has not seen the connection start (no preface) does not know the sender's HPACK
dynamic table: it still follows the frames, but reports every header block as unreadable
(``None``) instead of guessing, until a block opens with a table size update to 0, which empties
the table and makes it known again. An HPACK error has the same effect for the rest of the
direction. Frames that cannot be followed (lost bytes, a frame where HTTP/2 forbids it) end the
reader (``dead``): nothing after them can be framed.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from hpack import Decoder

#: The client's connection preface (RFC 9113, section 3.4).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE = range(9)
CONTINUATION = 9
END_STREAM = ACK = 0x01
END_HEADERS = 0x04
PADDED = 0x08
PRIORITY_FLAG = 0x20
SETTINGS_HEADER_TABLE_SIZE = 0x1
_STREAM_MASK = 0x7FFFFFFF

MAX_HEADER_BLOCK = 256 * 1024  # compressed header block (HEADERS + CONTINUATION) read at most
MAX_HEADER_LIST = 1 << 20  # decoded header list (hpack counts 32 bytes more per field)
MAX_TABLE_SIZE = 1 << 20  # HPACK dynamic table a sender may use; a bigger one is not followed
MAX_CONTROL = 16 * 1024  # SETTINGS / RST_STREAM / GOAWAY payload read; longer ones are skipped
PROBE_LIMIT = 64 * 1024  # bytes ``looks_like_frames`` waits for before it decides

#: Flags each frame type defines (a frame with others set is not taken for HTTP/2 when probing).
_FLAGS = {
    DATA: END_STREAM | PADDED,
    HEADERS: END_STREAM | END_HEADERS | PADDED | PRIORITY_FLAG,
    PRIORITY: 0,
    RST_STREAM: 0,
    SETTINGS: ACK,
    PUSH_PROMISE: END_HEADERS | PADDED,
    PING: ACK,
    GOAWAY: 0,
    WINDOW_UPDATE: 0,
    CONTINUATION: END_HEADERS,
}
_ON_STREAM_ZERO = (SETTINGS, PING, GOAWAY)  # connection frames; WINDOW_UPDATE may be either
_FIXED_LENGTH = {PRIORITY: 5, RST_STREAM: 4, PING: 8, WINDOW_UPDATE: 4}

Headers = list[tuple[str, str]]


class FrameHandler(Protocol):
    """What a ``FrameReader`` reports to (its connection). ``from_client`` names the direction."""

    def preface(self) -> None: ...

    def headers(
        self,
        from_client: bool,
        stream_id: int,
        headers: Headers | None,
        end: bool,
        ts: float,
        frame: int = 0,
        last_ts: float | None = None,
    ) -> None:
        """A header block, from the frame captured at ``ts`` in (capture) frame ``frame``;
        ``last_ts``: when its last byte came, if in a later packet."""

    # Optional: ``resent(stream_id, ts)``: a client's header block came again at ``ts`` (a TCP
    # retransmission of bytes holding it; see ``FrameReader.resent``).

    def push_promise(
        self, stream_id: int, promised: int, headers: Headers | None, ts: float, frame: int = 0
    ) -> None: ...

    def body_room(self, from_client: bool, stream_id: int, size: int) -> int: ...

    def body(self, from_client: bool, stream_id: int, chunk: bytes, more: int) -> int: ...

    def body_lost(self, from_client: bool, stream_id: int) -> None: ...

    def end_stream(self, from_client: bool, stream_id: int, ts: float) -> None: ...

    def reset(self, stream_id: int, ts: float) -> None: ...

    def goaway(self, from_client: bool, last_stream_id: int, ts: float) -> None: ...

    def settings(self, from_client: bool, settings: list[tuple[int, int]]) -> None: ...

    def lost(self, from_client: bool, reason: str) -> None: ...


def _new_decoder(allowed: int) -> Decoder:
    from hpack import Decoder  # imported on first use: most captures hold no HTTP/2

    decoder = Decoder(max_header_list_size=MAX_HEADER_LIST)
    decoder.max_allowed_table_size = allowed
    return decoder


class FrameReader:
    """One direction's frames. ``from_client`` says whose they are; ``table_known`` whether the
    reader saw the sender's HPACK table from its start (the connection start was captured)."""

    def __init__(self, handler: FrameHandler, from_client: bool, *, table_known: bool) -> None:
        self.handler = handler
        self.from_client = from_client
        self.dead = False
        self.table_known = table_known
        #: Why header blocks cannot be read now (while ``table_known`` is False).
        self.problem = "" if table_known else "capture began mid-connection (HPACK table unknown)"
        # the largest table size the receiver's SETTINGS allowed (unseen: as much as we follow)
        self._allowed = 4096 if table_known else MAX_TABLE_SIZE
        self._decoder: Decoder | None = None
        self._buf = bytearray()
        self._base = 0  # count of bytes that ever left _buf
        # (offset of a feed's first byte, ts, frame number of its packet)
        self._marks: deque[tuple[int, float, int]] = deque()
        self._started = False  # the first bytes were looked at (for an optional preface)
        self._state = self._frame_header
        self._left = 0  # payload bytes of the current frame still to come
        self._ftype = self._flags = self._sid = 0
        self._ts = 0.0  # capture time of the current frame's first byte
        self._frame_no = 0  # frame number of the packet holding it
        self._pad = 0  # padding at the end of the current DATA frame
        self._end = False  # the current DATA frame ends its stream
        # the header block being gathered: stream, promised stream (PUSH_PROMISE, 0 when not
        # read) or None, END_STREAM, capture time, whether it grew too big to read
        self._block = bytearray()
        self._block_sid = 0
        self._block_promised: int | None = None
        self._block_end = False
        self._block_ts = 0.0
        self._block_frame = 0
        self._block_oversized = False
        # Stream offsets, for ``resent``: of the first byte given here (set by the reader that
        # hands the stream over), of the current frame, and bytes skipped or lost since.
        self.origin = 0
        self._frame_start = 0
        self._block_start = 0
        self._outside = 0
        # (stream offset of the block's first frame, of its end, stream id) of the latest
        # request header blocks, for ``resent`` (a client's direction only)
        self._blocks: deque[tuple[int, int, int]] | None = deque(maxlen=64) if from_client else None

    # -- consumer interface ------------------------------------------------------------------
    def data(self, data: memoryview | bytes, ts: float, frame: int = 0) -> int:
        """Feed ordered bytes (from the packet captured at ``ts``, frame number ``frame``);
        returns how many of the next bytes the reader does not need."""
        if self.dead:
            return 0
        if not self._buf:
            self._marks.clear()
        self._marks.append((self._base + len(self._buf), ts, frame))
        self._buf += data
        while not self.dead:
            skip = self._state()
            if skip is not None:
                self._outside += skip  # the reassembler drops them before any more come
                return skip
        return 0

    def gap(self, nbytes: int) -> bool:
        """Bytes were lost. True when they may have held frames (not only kept DATA bytes)."""
        if self.dead:
            return False
        if self._state == self._data_bytes and not self._buf and nbytes <= self._left - self._pad:
            self._left -= nbytes  # a hole inside a body being kept: the frames still hold
            self._outside += nbytes
            self.handler.body_lost(self.from_client, self._sid)
            return False
        self._die(f"{nbytes} bytes lost")
        return True

    def close(self) -> bool:
        """End of the direction. True when a header block was cut short by it."""
        cut = not self.dead and (
            bool(self._block_sid)
            or (self._state == self._payload and self._ftype in (HEADERS, PUSH_PROMISE))
        )
        self.dead = True
        self._buf.clear()
        return cut

    def allow_table_size(self, size: int) -> None:
        """The receiver's SETTINGS_HEADER_TABLE_SIZE: the sender's encoder may use that much."""
        self._allowed = min(MAX_TABLE_SIZE, max(self._allowed, size))
        if self._decoder is not None:
            self._decoder.max_allowed_table_size = self._allowed

    def saw_preface(self) -> None:
        """The connection start was captured: the table is known from the first block on."""
        if not self.table_known and self._decoder is None and not self._block_sid:
            self.table_known = True
            self.problem = ""

    # -- states: each returns None to go on, or the bytes to skip when the buffer ran out ----
    def _frame_header(self) -> int | None:
        buf = self._buf
        if not self._started:
            if len(buf) < len(PREFACE) and PREFACE.startswith(buf):
                return 0  # a preface cut short, or a frame header: wait
            self._started = True
            if buf.startswith(PREFACE):
                self._consume(len(PREFACE))
                self.handler.preface()
        if len(buf) < 9:
            return 0
        length = int.from_bytes(buf[:3], "big")
        ftype, flags = buf[3], buf[4]
        sid = int.from_bytes(buf[5:9], "big") & _STREAM_MASK
        self._ts, self._frame_no = self._mark_at(self._base)
        self._frame_start = self._base
        self._consume(9)
        self._ftype, self._flags, self._sid, self._left = ftype, flags, sid, length
        if self._block_sid and (ftype != CONTINUATION or sid != self._block_sid):
            return self._die("a header block was not continued by its CONTINUATION frames")
        if ftype == DATA:
            return self._start_data(length, flags, sid)
        if ftype in (HEADERS, PUSH_PROMISE, CONTINUATION):
            if not sid:
                return self._die("a header block on stream 0")
            if ftype == CONTINUATION and not self._block_sid:
                return self._die("a CONTINUATION frame without a header block")
            if len(self._block) + length > MAX_HEADER_BLOCK:
                self._block_oversized = True
                self._block.clear()
                if ftype != CONTINUATION:
                    self._open_block(0 if ftype == PUSH_PROMISE else None, flags)
                return self._skip_payload()
            self._state = self._payload
            return None
        if ftype in (SETTINGS, RST_STREAM, GOAWAY) and length <= MAX_CONTROL:
            self._state = self._payload
            return None
        return self._skip_payload()  # PRIORITY, PING, WINDOW_UPDATE, extensions, huge ones

    def _payload(self) -> int | None:
        """A whole frame payload is wanted (header block, SETTINGS, RST_STREAM, GOAWAY)."""
        left = self._left
        if len(self._buf) < left:
            return 0
        payload = bytes(self._buf[:left])
        self._consume(left)
        self._left = 0
        self._state = self._frame_header
        self._frame(payload)
        return None

    def _data_pad_length(self) -> int | None:
        if not self._buf:
            return 0
        pad = self._buf[0]
        self._consume(1)
        self._left -= 1
        if pad > self._left:
            return self._die("padding longer than its DATA frame")
        self._pad = pad
        self._state = self._data_bytes
        return None

    def _data_bytes(self) -> int | None:
        """DATA bytes of a body being kept; the padding after them is skipped."""
        data_left = self._left - self._pad
        take = min(data_left, len(self._buf))
        room = 1
        if take:
            chunk = bytes(self._buf[:take])
            self._consume(take)
            self._left -= take
            data_left -= take
            room = self.handler.body(self.from_client, self._sid, chunk, data_left)
        if data_left and room > 0:
            return 0  # the buffer is empty: wait for the rest
        return self._skip_payload()  # the padding, or the bytes past what is kept

    # -- frame handling ----------------------------------------------------------------------
    def _start_data(self, length: int, flags: int, sid: int) -> int | None:
        if not sid:
            return self._die("a DATA frame on stream 0")
        self._end = bool(flags & END_STREAM)
        self._pad = 0
        if length and self.handler.body_room(self.from_client, sid, length) > 0:
            self._state = self._data_pad_length if flags & PADDED else self._data_bytes
            return None
        return self._skip_payload()

    def _skip_payload(self) -> int | None:
        """Drop the rest of the current frame (buffered bytes now, the others by ``skip``),
        then act on its end."""
        take = min(self._left, len(self._buf))
        self._consume(take)
        skip = self._left - take
        self._left = 0
        self._state = self._frame_header
        self._frame_end()
        return skip if skip else None

    def _frame_end(self) -> None:
        """What a frame whose payload was skipped or streamed means once it is over."""
        ftype = self._ftype
        if ftype == DATA:
            if self._end:
                self._end = False
                self.handler.end_stream(self.from_client, self._sid, self._ts)
        elif ftype in (HEADERS, PUSH_PROMISE, CONTINUATION) and self._flags & END_HEADERS:
            self._close_block()

    def _frame(self, payload: bytes) -> None:
        ftype, flags, sid = self._ftype, self._flags, self._sid
        if ftype in (HEADERS, PUSH_PROMISE):
            start, end = 0, len(payload)
            if flags & PADDED:
                start = 1
                end -= payload[0] if payload else 0
            if ftype == HEADERS and flags & PRIORITY_FLAG:
                start += 5
            promised = None
            if ftype == PUSH_PROMISE:
                promised = int.from_bytes(payload[start : start + 4], "big") & _STREAM_MASK
                start += 4
            if end < start:
                self._die("padding longer than its header frame")
                return
            self._open_block(promised, flags)
            self._block += payload[start:end]
        elif ftype == CONTINUATION:
            self._block += payload
        elif ftype == SETTINGS:
            if not flags & ACK:
                self.handler.settings(self.from_client, parse_settings(payload))
            return
        elif ftype == RST_STREAM:
            if sid:
                self.handler.reset(sid, self._ts)
            return
        elif ftype == GOAWAY:
            if len(payload) >= 4:
                last = int.from_bytes(payload[:4], "big") & _STREAM_MASK
                self.handler.goaway(self.from_client, last, self._ts)
            return
        if flags & END_HEADERS:
            self._close_block()

    def _open_block(self, promised: int | None, flags: int) -> None:
        self._block_sid = self._sid
        self._block_promised = promised
        self._block_end = bool(flags & END_STREAM) and self._ftype == HEADERS
        self._block_ts = self._ts
        self._block_frame = self._frame_no
        self._block_start = self._frame_start

    def _close_block(self) -> None:
        """A header block is complete: decode it (or say it cannot be) and report it."""
        sid, promised, end, ts, frame = (
            self._block_sid,
            self._block_promised,
            self._block_end,
            self._block_ts,
            self._block_frame,
        )
        block = bytes(self._block)
        oversized = self._block_oversized
        self._block.clear()
        self._block_sid = 0
        self._block_oversized = False
        headers = None
        if oversized:
            self._table_lost(f"a header block over {MAX_HEADER_BLOCK // 1024} KiB")
        elif self.table_known or block[:1] == b"\x20":
            headers = self._decode(block)
        handler = self.handler
        if promised is not None:
            handler.push_promise(sid, promised, headers, ts, frame)
            return
        shift = self.origin + self._outside  # buffer offsets to stream offsets
        if self._blocks is not None:
            self._blocks.append((self._block_start + shift, self._base + shift, sid))
        last_ts = self._mark_at(self._base - 1)[0]  # the feed that brought the block's end
        handler.headers(
            self.from_client, sid, headers, end, ts, frame, last_ts if last_ts > ts else None
        )

    def resent(self, off: int, nbytes: int, ts: float) -> None:
        """``nbytes`` at stream offset ``off``, given here already, came again at ``ts``: the
        handler's ``resent`` is told of each request header block they hold (among the latest
        64: a retransmission comes within moments)."""
        hook = getattr(self.handler, "resent", None)
        if hook is None or self._blocks is None or self.dead:
            return
        end = off + nbytes
        for start, stop, sid in self._blocks:
            if start < end and off < stop:
                hook(sid, ts)

    def _decode(self, block: bytes) -> Headers | None:
        """Decode a header block. A block opening with a table size update to 0 makes an
        unknown table known (emptied) again."""
        from hpack import HPACKError

        if not self.table_known:
            self._decoder = None
        if self._decoder is None:
            self._decoder = _new_decoder(self._allowed)
        try:
            raw = self._decoder.decode(block, raw=True)
        except (HPACKError, ValueError, IndexError) as exc:
            self._table_lost(f"HPACK error ({exc})")
            return None
        if not self.table_known:
            self.table_known = True
            self.problem = ""
        return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in raw]

    def _table_lost(self, reason: str) -> None:
        if self.table_known:
            self.table_known = False
            self.problem = reason
        self._decoder = None

    def _die(self, reason: str) -> int:
        """The frames cannot be followed any more: give up the direction."""
        self.dead = True
        self._buf.clear()
        self._marks.clear()
        self.handler.lost(self.from_client, reason)
        return 0

    # -- buffer ------------------------------------------------------------------------------
    def _consume(self, nbytes: int) -> None:
        del self._buf[:nbytes]
        self._base += nbytes

    def _mark_at(self, offset: int) -> tuple[float, int]:
        """Capture time and frame number of the feed that delivered the byte at buffer
        ``offset``."""
        marks = self._marks
        while len(marks) > 1 and marks[1][0] <= offset:
            marks.popleft()
        return (marks[0][1], marks[0][2]) if marks else (0.0, 0)


def parse_settings(payload: bytes) -> list[tuple[int, int]]:
    """The (identifier, value) pairs of a SETTINGS payload."""
    return [
        (int.from_bytes(payload[i : i + 2], "big"), int.from_bytes(payload[i + 2 : i + 6], "big"))
        for i in range(0, len(payload) - 5, 6)
    ]


def plausible_header(length: int, ftype: int, flags: int, sid: int) -> bool:
    """Can these fields be an HTTP/2 frame header (as implementations send them)?"""
    allowed = _FLAGS.get(ftype)
    if allowed is None or flags & ~allowed or sid & ~_STREAM_MASK:
        return False
    if (ftype in _ON_STREAM_ZERO) != (sid == 0) and ftype != WINDOW_UPDATE:
        return False
    fixed = _FIXED_LENGTH.get(ftype)
    if fixed is not None and length != fixed:
        return False
    if ftype == SETTINGS:
        return length % 6 == 0 and not (flags & ACK and length)
    if ftype == GOAWAY:
        return length >= 8
    if ftype == PUSH_PROMISE:
        return length >= 4
    return True


def looks_like_frames(buf: bytes | bytearray) -> bool | None:
    """Do these first bytes of a direction read as HTTP/2 frames? None: too few bytes to tell.

    Yes when every frame header is plausible and at least two frames are complete, or one
    frame fills the bytes exactly (a server's SETTINGS alone in its first segment)."""
    off, frames, size = 0, 0, len(buf)
    while off + 9 <= size:
        length = int.from_bytes(buf[off : off + 3], "big")
        sid = int.from_bytes(buf[off + 5 : off + 9], "big")
        if not plausible_header(length, buf[off + 3], buf[off + 4], sid):
            return False
        end = off + 9 + length
        if end > size:
            break
        frames += 1
        off = end
        if frames >= 2:
            return True
    if frames and off == size:
        return True
    return None if size < PROBE_LIMIT else False
