"""HTTP/1.x message parsing for one direction of a TCP stream (sans-I/O, like h11).

``HttpStream.data`` takes ordered bytes and returns finished message heads (with their bodies when
the owner asked to keep them). HTTP is recognised by content, on any port: a stream whose first
bytes cannot start a request or status line is abandoned at once (``dead``). Body bytes nobody needs
are not copied: the stream sets ``skip`` and the reassembler drops them.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_HEAD = 256 * 1024  # Microsoft S2S tokens make heads of tens of KB; anything bigger is not HTTP
MAX_LINE = 16 * 1024  # request/status line or chunk-size line
HUNT_LIMIT = 256 * 1024  # bytes searched for a message start after a gap or a mid-stream start
UNBOUNDED = 1 << 62  # "skip until close"
_ASCII_SPACE = " \t\n\r\x0b\x0c"  # what bytes.strip() removes

_REQUEST_LINE = re.compile(rb"([A-Za-z][A-Za-z0-9_\-]{0,31}) +(\S{1,16000}) +HTTP/(\d)\.(\d)\s*$")
_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) +(\d{3})(?: ([^\r\n]*))?\s*$")
_METHOD_PREFIX = re.compile(rb"[A-Za-z][A-Za-z0-9_\-]{0,31}( |$)")
_MESSAGE_START = re.compile(
    rb"(?:^|\n)((?:[A-Z][A-Z0-9_\-]{2,31} \S+ HTTP/1\.[01]\r?\n)|(?:HTTP/1\.[01] \d{3}[ \r\n]))"
)


@dataclass(slots=True)
class HttpMessage:
    """A request or response head, plus its body when it was kept."""

    is_request: bool
    ts: float  # capture time of the packet holding the message's first byte
    version: str  # "1.0" / "1.1"
    method: str = ""
    uri: str = ""
    status: int = 0
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)  # (lowercase name, value)
    body: bytes | None = None  # kept body (capped), None when the body was skipped
    body_truncated: bool = False
    after_gap: bool = False  # first message after lost bytes: earlier messages may be missing

    def header(self, name: str) -> str | None:
        """First value of a header (name lowercase)."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        """Every value of a (possibly repeated) header."""
        return [value for key, value in self.headers if key == name]


#: Decides, for a finished head, how many body bytes to keep (0 = skip the body).
BodyPolicy = Callable[[HttpMessage], int]
#: For a response head: the method of the request it answers (None when unknown).
MethodLookup = Callable[[], "str | None"]


def _never_keep(_message: HttpMessage) -> int:
    return 0


def parse_head(raw: bytes, ts: float) -> HttpMessage | None:
    """Parse a complete head (start line + headers, without the blank line). None if not HTTP."""
    start, _, rest = raw.partition(b"\n")
    start = start.rstrip(b"\r")
    m = _REQUEST_LINE.match(start)
    if m:
        method, uri, major, minor = m.groups()
        msg = HttpMessage(
            True,
            ts,
            f"{major[0] - 48}.{minor[0] - 48}",  # one ASCII digit each
            method=method.decode("ascii").upper(),
            uri=uri.decode("latin-1"),
        )
    else:
        m = _STATUS_LINE.match(start)
        if not m:
            return None
        major, minor, status, reason = m.groups()
        msg = HttpMessage(
            False,
            ts,
            f"{major[0] - 48}.{minor[0] - 48}",
            status=int(status),
            reason=(reason or b"").decode("latin-1"),
        )
    if rest:
        _parse_fields(rest.decode("latin-1"), msg.headers)
    return msg


def _parse_fields(text: str, headers: list[tuple[str, str]]) -> None:
    """Append the header fields of ``text`` (the head after its start line, decoded as latin-1,
    one character per byte) to ``headers``. Decoding once up front is what makes this cheap; the
    stripping below uses the ASCII whitespace that ``bytes.strip()`` knows, not Unicode's."""
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if not line:
            continue
        if line[0] in " \t":
            if headers:  # obsolete line folding: continue the previous value
                name, value = headers[-1]
                headers[-1] = (name, f"{value} {line.strip(_ASCII_SPACE)}".strip())
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        headers.append((name.strip(_ASCII_SPACE).lower(), value.strip(" \t")))


class HttpStream:
    """Parser state for one direction of a connection.

    ``role`` is "request", "response" or "" (decided by the first bytes). ``midstream`` streams
    (no SYN seen) may begin inside a body, so they hunt for a message start before giving up.
    """

    def __init__(
        self,
        *,
        midstream: bool = False,
        body_policy: BodyPolicy = _never_keep,
        request_method: MethodLookup | None = None,
        on_messages: Callable[[list[HttpMessage]], None] | None = None,
    ) -> None:
        self.skip = 0
        self.on_messages = on_messages
        self.dead = False
        self.role = ""
        self.body_policy = body_policy
        self.request_method = request_method
        self._buf = bytearray()
        self._base = 0  # count of bytes that ever left _buf: the buffer offset of _buf[0]
        self._marks: deque[tuple[int, float]] = deque()  # (buffer offset, capture ts) per feed
        self._expect_crlf = False  # a chunk's data ended; its CRLF is still to come
        self._hunting = midstream
        self._after_gap = midstream
        self._hunted = 0
        self._state = "head"  # head | body | chunk-size | chunk-data | chunk-trailer | close-body
        self._current: HttpMessage | None = None
        self._remaining = 0  # body bytes left in the current message / chunk
        self._keep = 0  # body bytes we still want to keep
        self._body = bytearray()
        self.messages_seen = 0
        self.looks_tls = False

    # -- consumer interface ------------------------------------------------------------------
    def data(self, data: memoryview | bytes, ts: float) -> list[HttpMessage]:
        """Feed ordered bytes; return the messages they completed."""
        if self.dead:
            return []
        self._marks.append((self._base + len(self._buf), ts))
        self._buf += data
        out: list[HttpMessage] = []
        self._run(out, ts)
        return self._emit(out)

    def gap(self, nbytes: int, ts: float) -> list[HttpMessage]:
        """Bytes were lost: finish what can be finished, then hunt for the next message."""
        out: list[HttpMessage] = []
        if self._state == "body" and self._current is not None and nbytes <= self._remaining:
            # The hole is inside a body we keep: the body is damaged but framing still holds.
            self._remaining -= nbytes
            self._current.body_truncated = True
            self._keep = 0
            self._run(out, ts)
            return self._emit(out)
        self._finish_current(out, truncated=True)
        self._reset_to_hunt()
        return self._emit(out)

    def close(self, ts: float) -> list[HttpMessage]:
        """End of stream: a close-delimited or cut-short message is finished as it stands."""
        out: list[HttpMessage] = []
        if self._state != "head":
            self._finish_current(out, truncated=self._state != "close-body")
        self._state = "head"
        self._consume(len(self._buf))
        self.dead = True
        return self._emit(out)

    def _emit(self, out: list[HttpMessage]) -> list[HttpMessage]:
        if out and self.on_messages is not None:
            self.on_messages(out)
        return out

    # -- state machine -----------------------------------------------------------------------
    def _run(self, out: list[HttpMessage], ts: float) -> None:
        while not self.dead:
            state = self._state
            if state == "head":
                if not self._parse_head(out, ts):
                    return
            elif state in ("body", "chunk-data"):
                if not self._take_body(out):
                    return
            elif state == "chunk-size":
                if not self._parse_chunk_size(out):
                    return
            elif state == "chunk-trailer":
                if not self._parse_trailer(out):
                    return
            else:  # close-body: everything until close belongs to the body
                self._keep_bytes(len(self._buf))
                self._consume(len(self._buf))
                return
            if not self._buf:
                return

    def _parse_head(self, out: list[HttpMessage], ts: float) -> bool:
        buf = self._buf
        if self._hunting and not self._hunt():
            return False
        if not self.messages_seen and not self._plausible_start(buf):
            self._give_up()
            return False
        end = buf.find(b"\r\n\r\n")
        sep = 4
        if end < 0:
            end = buf.find(b"\n\n")
            sep = 2
        else:
            lf = buf.find(b"\n\n", 0, end)
            if lf >= 0:
                end, sep = lf, 2
        if end < 0:
            if len(buf) > MAX_HEAD or (b"\n" not in buf[:MAX_LINE] and len(buf) > MAX_LINE):
                self._lost_sync()
            return False
        msg = parse_head(bytes(buf[:end]), self._head_ts())
        self._consume(end + sep)
        if msg is None:
            self._lost_sync()
            return False
        self.messages_seen += 1
        msg.after_gap, self._after_gap = self._after_gap, False
        if not self.role:
            self.role = "request" if msg.is_request else "response"
        self._start_body(msg, out)
        return True

    def _consume(self, nbytes: int) -> None:
        """Drop ``nbytes`` from the front of the buffer."""
        if nbytes:
            del self._buf[:nbytes]
            self._base += nbytes

    def _head_ts(self) -> float:
        """Capture time of the packet that delivered the first buffered byte."""
        marks = self._marks
        while len(marks) > 1 and marks[1][0] <= self._base:
            marks.popleft()
        return marks[0][1] if marks else 0.0

    def _plausible_start(self, buf: bytearray) -> bool:
        """Can these first bytes begin an HTTP/1.x message? (Decides quickly for non-HTTP.)"""
        if not _could_start_message(bytes(buf[:40])):
            return False
        nl = buf.find(b"\n", 0, MAX_LINE)
        if nl < 0:
            return True  # the start line is not complete yet
        line = bytes(buf[:nl]).rstrip(b"\r")
        return bool(_REQUEST_LINE.match(line) or _STATUS_LINE.match(line))

    def _hunt(self) -> bool:
        """Look for a request or status line start; drop what comes before it."""
        buf = self._buf
        m = _MESSAGE_START.search(buf)
        if m is None:
            # Keep a short last line (a start line may be split across segments); otherwise
            # drop it all, so the next segment's first byte counts as a line start.
            last_nl = buf.rfind(b"\n")
            if last_nl >= 0:
                drop = len(buf) if len(buf) - last_nl - 1 > 64 else last_nl + 1
            else:
                drop = 0 if len(buf) < 64 and _could_start_message(bytes(buf)) else len(buf)
            self._hunted += drop
            self._consume(drop)
            if self._hunted > HUNT_LIMIT:
                self._give_up()
            return False
        self._hunted += m.start(1)
        self._consume(m.start(1))
        self._hunting = False
        return True

    def _start_body(self, msg: HttpMessage, out: list[HttpMessage]) -> None:
        framing, length = self._framing(msg)
        if framing == "none":
            out.append(msg)
            return
        if framing == "tunnel":
            out.append(msg)
            self._give_up()
            return
        keep = max(0, self.body_policy(msg))
        self._current = msg
        self._keep = keep
        self._body = bytearray()
        if keep:
            msg.body = b""
        if framing == "length":
            self._state = "body"
            self._remaining = length
            if not keep:
                out.append(msg)
                self._current = None
                self._state = "head"
                self._set_skip(length)
        elif framing == "chunked":
            self._state = "chunk-size"
            if not keep:
                out.append(msg)
                self._current = None
        else:  # close-delimited
            self._state = "close-body"
            if not keep:
                out.append(msg)
                self._current = None
                self._set_skip(UNBOUNDED)

    def _framing(self, msg: HttpMessage) -> tuple[str, int]:
        """How the body of ``msg`` is delimited: none, length, chunked, close or tunnel."""
        te = (msg.header("transfer-encoding") or "").lower()
        if msg.is_request:
            if "chunked" in te:
                return "chunked", 0
            length = _content_length(msg)
            return ("length", length) if length else ("none", 0)
        method = self.request_method() if self.request_method else None
        status = msg.status
        if status == 101 or (method == "CONNECT" and 200 <= status < 300):
            return "tunnel", 0
        if method == "HEAD" or 100 <= status < 200 or status in (204, 304):
            return "none", 0
        if "chunked" in te:
            return "chunked", 0
        if msg.header("content-length") is not None:
            length = _content_length(msg)
            return ("length", length) if length else ("none", 0)
        return "close", 0

    def _set_skip(self, nbytes: int) -> None:
        """Skip ``nbytes`` of body: drop what is buffered now, let the reassembler drop the rest."""
        buffered = min(nbytes, len(self._buf))
        self._consume(buffered)
        self.skip = nbytes - buffered

    def _keep_bytes(self, nbytes: int) -> None:
        if self._current is None or not nbytes:
            return
        take = min(nbytes, self._keep)
        if take:
            self._body += self._buf[:take]
            self._keep -= take
        if take < nbytes:
            self._current.body_truncated = True

    def _take_body(self, out: list[HttpMessage]) -> bool:
        n = min(self._remaining, len(self._buf))
        self._keep_bytes(n)
        self._consume(n)
        self._remaining -= n
        if self._remaining:
            return False
        if self._state == "chunk-data":
            self._state = "chunk-size"
            self._expect_crlf = True
            return True
        self._finish_current(out)
        self._state = "head"
        return True

    def _parse_chunk_size(self, out: list[HttpMessage]) -> bool:
        buf = self._buf
        if self._expect_crlf:
            if len(buf) < 2 and buf[:1] in (b"", b"\r"):
                return False
            if buf[:2] == b"\r\n":
                self._consume(2)
            elif buf[:1] == b"\n":
                self._consume(1)
            self._expect_crlf = False
        nl = buf.find(b"\n")
        if nl < 0:
            if len(buf) > MAX_LINE:
                self._lost_sync()
            return False
        line = bytes(buf[:nl]).split(b";", 1)[0].strip()
        self._consume(nl + 1)
        try:
            size = int(line, 16)
        except ValueError:
            self._lost_sync()
            return False
        if size == 0:
            self._state = "chunk-trailer"
            return True
        self._remaining = size
        self._state = "chunk-data"
        if self._current is None:  # body not kept: skip the chunk without copying it
            self._state = "chunk-size"
            self._expect_crlf = True
            self._remaining = 0
            self._set_skip(size)
        return True

    def _parse_trailer(self, out: list[HttpMessage]) -> bool:
        buf = self._buf
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                if len(buf) > MAX_HEAD:
                    self._lost_sync()
                return False
            line = bytes(buf[:nl]).strip()
            self._consume(nl + 1)
            if not line:
                self._finish_current(out)
                self._state = "head"
                self._expect_crlf = False
                return True

    def _finish_current(self, out: list[HttpMessage], truncated: bool = False) -> None:
        msg = self._current
        if msg is None:
            return
        msg.body = bytes(self._body)
        if truncated:
            msg.body_truncated = True
        out.append(msg)
        self._current = None
        self._body = bytearray()

    def _lost_sync(self) -> None:
        if self.messages_seen:
            self._reset_to_hunt()
        else:
            self._give_up()

    def _reset_to_hunt(self) -> None:
        self._state = "head"
        self._current = None
        self._hunting = True
        self._after_gap = True
        self._hunted = 0
        self.skip = 0

    def _give_up(self) -> None:
        if not self.messages_seen and self._buf[:1] == b"\x16" and self._buf[1:2] == b"\x03":
            self.looks_tls = True  # a TLS handshake record: encrypted, not "not HTTP"
        self.dead = True
        self._consume(len(self._buf))
        self._marks.clear()
        self._state = "head"
        self.skip = 0


def _could_start_message(head: bytes) -> bool:
    """Can ``head`` be the beginning of a request or status line?"""
    return (
        head.startswith(b"HTTP/")
        or b"HTTP/".startswith(head[:5])
        or _METHOD_PREFIX.match(head) is not None
    )


def _content_length(msg: HttpMessage) -> int:
    value = msg.header("content-length")
    if value is None:
        return 0
    try:
        length = int(value.split(",")[0].strip())
    except ValueError:
        return 0
    return max(0, length)
