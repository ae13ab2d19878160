"""HTTP/1.x message parsing for one direction of a TCP stream (sans-I/O, like h11).

``HttpStream.data`` takes ordered bytes and returns finished message heads (with their bodies when
the owner asked to keep them). HTTP is recognised by content, on any port: a stream whose first
bytes cannot start a request or status line is abandoned at once (``dead``). Body bytes nobody needs
are not copied: the stream sets ``skip`` and the reassembler drops them.

A stream whose first bytes are a TLS record (``looks_tls``) is not HTTP either; when its owner
gave ``on_tls``, the stream hands every byte to that TLS reader until the reader has seen the
cleartext handshake, and only then gives up, so the reassembler (and the native walk) skip the
rest without the handshake being lost.

HTTP/2 is handed over the same way, when the owner gave ``on_http2``: a stream that begins with
the client preface or with HTTP/2 frames, or a ``101 Switching Protocols`` to ``h2c`` that
``on_upgrade`` accepts, passes every later byte to the HTTP/2 frame reader its owner returns,
and takes that reader's ``skip`` and ``dead`` for its own.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from analyzer.protocols.http2_frames import PREFACE, looks_like_frames
from analyzer.protocols.tls import looks_like_record

if TYPE_CHECKING:
    from analyzer.protocols.http2_frames import FrameReader
    from analyzer.protocols.tls import TlsStream

MAX_HEAD = 256 * 1024  # Microsoft S2S tokens make heads of tens of KB; anything bigger is not HTTP
MAX_LINE = 16 * 1024  # request/status line or chunk-size line
HUNT_LIMIT = 256 * 1024  # bytes searched for a message start after a gap or a mid-stream start
UNBOUNDED = 1 << 62  # "skip until close"
# Longest body or chunk believed (256 TiB): a bigger Content-Length or chunk size is hostile or
# garbage, and past 2**64 it would not even fit the native walk's counters.
MAX_LENGTH = 1 << 48
_ASCII_SPACE = " \t\n\r\x0b\x0c"  # what bytes.strip() removes
_LINE_ENDS = (b"\r", b"\n")

#: A method: any RFC 9110 token, in any case (IIS serves unknown verbs such as ``X.Y`` or
#: ``M+POST``: a narrower pattern would leave a request the server read unread).
_METHOD = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}"
_REQUEST_LINE = re.compile(rb"(" + _METHOD + rb") +(\S+) +HTTP/(\d)\.(\d)\s*$")
_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) +(\d{3})(?: ([^\r\n]*))?\s*$")
# The same two lines for a head decoded as latin-1 (one character per byte): with re.ASCII, \s \S
# and \d mean exactly what they mean in a bytes pattern.
_REQUEST_TEXT = re.compile(_REQUEST_LINE.pattern.decode("ascii"), re.ASCII)
_STATUS_TEXT = re.compile(_STATUS_LINE.pattern.decode("ascii"), re.ASCII)
#: An absolute-form request-target (RFC 9112 3.2.2), as a forward proxy gets it: a scheme
#: (RFC 3986 3.1) and "://".
ABSOLUTE_FORM = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_HEAD_END = re.compile(rb"\n\r?\n")  # how a head ends: LF LF, or LF CR LF after a CR
_METHOD_PREFIX = re.compile(_METHOD + rb"( |$)")
# Where a message starts, when hunting for one in the middle of a stream: a usual method first
# (upper case, three letters or more: fewer false starts in body bytes), else any method.
_START_LINE = re.compile(
    rb"(?:[A-Z][A-Z0-9_\-]{2,31} +\S+ +HTTP/1\.[01]\r?\n)|(?:HTTP/1\.[01] \d{3}[ \r\n])"
)
_MESSAGE_START = re.compile(rb"(?:^|\n)(" + _START_LINE.pattern + rb")")
_ANY_START_LINE = re.compile(_METHOD + rb" +\S+ +HTTP/1\.[01]\r?\n")
_ANY_MESSAGE_START = re.compile(rb"(?:^|\n)(" + _ANY_START_LINE.pattern + rb")")


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
    frame: int = 0  # frame number of the packet holding the first byte (0: not numbered)
    # Where the head lies in its TCP direction's stream (offsets as the reassembler counts them:
    # ``resent``), and the capture time of the latest packet that carried any of it - its last
    # segment, or a later copy - when later than ``ts`` (None otherwise)
    stream_start: int = 0
    stream_end: int = 0
    last_ts: float | None = None
    # First value per header name, built on the first lookup (the parser builds it at once):
    # ``headers`` is not to be changed after that.
    _first: dict[str, str] | None = field(default=None, init=False, repr=False, compare=False)

    def header(self, name: str) -> str | None:
        """First value of a header (name lowercase)."""
        first = self._first
        if first is None:
            first = self._first = _first_values(self.headers)
        return first.get(name)

    def header_all(self, name: str) -> list[str]:
        """Every value of a (possibly repeated) header."""
        first = self._first
        if first is None:
            first = self._first = _first_values(self.headers)
        if name not in first:
            return []
        return [value for key, value in self.headers if key == name]


def _first_values(headers: list[tuple[str, str]]) -> dict[str, str]:
    """Name -> first value (walking backwards, the first occurrence is written last)."""
    return dict(reversed(headers))


#: Decides, for a finished head, how many body bytes to keep (0 = skip the body).
BodyPolicy = Callable[[HttpMessage], int]
#: For a response head: the method of the request it answers (None when unknown).
MethodLookup = Callable[[], "str | None"]
#: Given a stream's first bytes (the preface, or frames): the HTTP/2 reader to hand them to.
Http2Hook = Callable[[bytes], "FrameReader | None"]
#: Given a ``101`` response to ``h2c``: the HTTP/2 reader for the bytes after it.
UpgradeHook = Callable[[HttpMessage], "FrameReader | None"]


def _never_keep(_message: HttpMessage) -> int:
    return 0


def parse_head(raw: bytes, ts: float) -> HttpMessage | None:
    """Parse a complete head (start line + headers, without the blank line). None if not HTTP."""
    return _parse_text(raw.decode("latin-1"), ts)


_NAMES: dict[str, str] = {}  # raw field name -> its stripped, lowercase form (a bounded cache)
_NAMES_MAX = 1024


def _field_name(name: str) -> str | None:
    """Header name as stored (stripped of ASCII whitespace, lowercase); None when the line starts
    with a space or tab (a folded continuation: the head goes the slow way)."""
    if name.startswith((" ", "\t")):
        return None
    key = name.strip(_ASCII_SPACE).lower()
    if len(name) <= 64:
        if len(_NAMES) >= _NAMES_MAX:
            _NAMES.clear()  # odd names filled it: start afresh with what comes now
        _NAMES[name] = key
    return key


def _parse_text(text: str, ts: float) -> HttpMessage | None:
    """``parse_head`` for a head decoded as latin-1 (one character per byte): decoded once, so
    every step below runs on ``str`` at C speed."""
    lines = text.split("\n")
    # A request/status line cannot hold "\r" but in the trailing \s*: no rstrip("\r") needed.
    # A method has no "/", so only a status line can start with "HTTP/": one regex per line.
    start = lines[0]
    if start.startswith("HTTP/"):
        m = _STATUS_TEXT.match(start)
        if not m:
            return None
        major, minor, status, reason = m.groups()
        msg = HttpMessage(False, ts, f"{major}.{minor}", "", "", int(status), reason or "")
    else:
        m = _REQUEST_TEXT.match(start)
        if not m:
            return None
        method, uri, major, minor = m.groups()
        msg = HttpMessage(True, ts, f"{major}.{minor}", method.upper(), uri)
    headers = msg.headers
    if len(lines) > 1:
        get = _NAMES.get
        append = headers.append
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                key = get(name)
                if key is None:
                    key = _field_name(name)
                    if key is None:
                        break
                append((key, value.rstrip("\r").strip(" \t")))
            elif line.startswith((" ", "\t")):
                break
        else:
            msg._first = dict(reversed(headers))
            return msg
        headers.clear()  # a folded line: start over, line by line
        _parse_fields(lines[1:], headers)
    msg._first = dict(reversed(headers))
    return msg


def _parse_fields(lines: list[str], headers: list[tuple[str, str]]) -> None:
    """Append the header fields of ``lines`` (the head after its start line, decoded as latin-1,
    one character per byte) to ``headers``, joining folded lines (obs-fold). The stripping uses
    the ASCII whitespace that ``bytes.strip()`` knows, not Unicode's."""
    for line in lines:
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

    Bytes wait in ``_buf`` only while a head, a chunk-size line or a kept body is incomplete; a
    head is searched for its end only in bytes not searched before, and parsed once.

    Slotted: a capture may hold hundreds of thousands of open connections, two streams each.
    """

    __slots__ = (
        "_after_gap",
        "_base",
        "_body",
        "_buf",
        "_current",
        "_expect_crlf",
        "_gapped",
        "_h2",
        "_hunted",
        "_hunting",
        "_keep",
        "_mark_frame",
        "_mark_off",
        "_mark_ts",
        "_marks",
        "_probing",
        "_remaining",
        "_searched",
        "_skip_set",
        "_state",
        "_tls",
        "absurd_length",
        "absurd_lengths",
        "body_policy",
        "conflicts",
        "dead",
        "looks_tls",
        "lost",
        "lost_host",
        "messages_seen",
        "on_http2",
        "on_messages",
        "on_resent",
        "on_tls",
        "on_upgrade",
        "request_method",
        "role",
        "skip",
        "unread_start",
    )

    def __init__(
        self,
        *,
        midstream: bool = False,
        body_policy: BodyPolicy = _never_keep,
        request_method: MethodLookup | None = None,
        on_messages: Callable[[list[HttpMessage]], None] | None = None,
        on_tls: Callable[[], TlsStream] | None = None,
        on_http2: Http2Hook | None = None,
        on_upgrade: UpgradeHook | None = None,
        on_resent: Callable[[int, int, float], None] | None = None,
    ) -> None:
        self.skip = 0
        # Stream bytes that never entered the buffer, for the stream offsets of heads: every
        # skip asked for (the reassembler drops them all, or a hole takes them: the reader sets
        # ``skip`` back to 0 only when nothing is left of it, or once it reads no more) and
        # every gap.
        self._skip_set = 0
        self._gapped = 0
        self.on_resent = on_resent  # told of later copies of request heads (see ``resent``)
        self.on_tls = on_tls  # makes the reader the handshake goes to, when the bytes are TLS
        self._tls: TlsStream | None = None
        self.on_http2 = on_http2
        self.on_upgrade = on_upgrade
        self._h2: FrameReader | None = None  # set once the stream turned out to be HTTP/2
        self._probing = False  # waiting for more bytes to tell whether they are HTTP/2 frames
        self.on_messages = on_messages
        self.dead = False
        self.role = ""
        self.body_policy = body_policy
        self.request_method = request_method
        self._buf = bytearray()
        self._base = 0  # count of bytes that ever left _buf: the buffer offset of _buf[0]
        # Capture time and frame number per feed: the latest feed's (buffer offset, ts, frame)
        # in _mark_off / _mark_ts / _mark_frame, earlier feeds whose bytes may still be
        # buffered in _marks (made when first needed: most streams never buffer across feeds,
        # and an empty deque costs 600 bytes).
        self._marks: deque[tuple[int, float, int]] | None = None
        self._mark_off = 0
        self._mark_ts = 0.0
        self._mark_frame = 0
        self._searched = 0  # buffer offset before which no head end starts (head state)
        self._expect_crlf = False  # a chunk's data ended; its CRLF is still to come
        self._hunting = midstream
        self._after_gap = midstream
        self._hunted = 0
        # head | body | chunk-size | chunk-data | chunk-trailer | close-body | tls
        self._state = "head"
        self._current: HttpMessage | None = None
        self._remaining = 0  # body bytes left in the current message / chunk
        self._keep = 0  # body bytes we still want to keep
        self._body = bytearray()
        # Messages whose body length was absurd (see ``_absurd``), and the first such length.
        self.absurd_lengths = 0
        self.absurd_length = ""
        self.messages_seen = 0
        self.looks_tls = False
        # Stretches of bytes that may have held message heads and could not be read: a TCP hole
        # outside a body of known length, a head cut short by the end of the stream, or bytes
        # retransmitted with other contents (``conflict``: which copy was read is unknown).
        self.lost = 0
        # The Host every lost stretch is known to have been for: each was a request head read
        # as far as a whole Host field before a TCP hole cut it, all naming this one
        # (``_note_lost``); None otherwise. Never a guess from other requests.
        self.lost_host: str | None = None
        self.conflicts = 0  # of those, stretches retransmitted with other contents
        # The stream was given up before any message was read (its first bytes, or all it
        # held after a mid-connection start, were not HTTP/1.x): unread, not lost, as other
        # protocols look the same; its connection counts it when the peer spoke HTTP.
        self.unread_start = False

    # -- consumer interface ------------------------------------------------------------------
    def data(self, data: memoryview | bytes, ts: float, frame: int = 0) -> list[HttpMessage]:
        """Feed ordered bytes (from the packet captured at ``ts``, frame number ``frame``);
        return the messages they completed."""
        if self.dead:
            return []
        if self._h2 is not None:
            self._feed_h2(data, ts, frame)
            return []
        buf = self._buf
        if buf:
            if self._marks is None:
                self._marks = deque()
            self._marks.append((self._mark_off, self._mark_ts, self._mark_frame))
            self._mark_off = self._base + len(buf)
        else:  # nothing buffered: earlier feeds can no longer date a message
            self._marks = None
            self._mark_off = self._base
        self._mark_ts = ts
        self._mark_frame = frame
        buf += data
        out: list[HttpMessage] = []
        self._run(out)
        if out and self.on_messages is not None:
            self.on_messages(out)
        return out

    def gap(self, nbytes: int, ts: float) -> list[HttpMessage]:
        """Bytes were lost: finish what can be finished, then hunt for the next message."""
        self._gapped += nbytes
        out: list[HttpMessage] = []
        if self._h2 is not None:
            if self._h2.gap(nbytes):
                self._note_lost(None)
            self._h2_done()
            return out
        if self._state == "tls":
            assert self._tls is not None
            self._tls.gap()
            self._end_tls()
            return out
        if self._state == "body" and self._current is not None and nbytes <= self._remaining:
            # The hole is inside a body we keep: the body is damaged but framing still holds.
            self._remaining -= nbytes
            self._current.body_truncated = True
            self._keep = 0
            self._run(out)
            return self._emit(out)
        if not self.dead:
            # What is buffered is cut by the hole and never joined to what follows it: a head
            # with a hole is unreadable (only a Host read whole before the hole is kept).
            self._note_lost(self._cut_head_host())
        self._drop_buffer()
        self._finish_current(out, truncated=True)
        self._reset_to_hunt()
        return self._emit(out)

    def resent(self, off: int, nbytes: int, ts: float) -> None:
        """The reassembler saw ``nbytes`` at stream offset ``off``, bytes already given here,
        again at ``ts``: passed on (``on_resent``, or the HTTP/2 reader the stream turned
        into), which dates the requests whose heads they hold - the server may have read such
        a request only from the later copy."""
        if self.dead:
            return
        if self._h2 is not None:
            self._h2.resent(off, nbytes, ts)
        elif self.on_resent is not None:
            self.on_resent(off, nbytes, ts)

    def conflict(self, ts: float) -> None:
        """The reassembler saw a retransmission whose bytes differ from the copy given here:
        the stream reads on with that first copy, but which copy the peer read is unknown, so
        the stretch counts as lost (what it carried cannot be vouched for)."""
        if not self.dead:
            self._note_lost(None)
            self.conflicts += 1

    def _note_lost(self, host: str | None) -> None:
        """Count a lost stretch; ``host``: the Host it is known to have been for, if any."""
        self.lost_host = host if not self.lost or self.lost_host == host else None
        self.lost += 1

    def _cut_head_host(self) -> str | None:
        """The Host of the request head buffered now and cut by a hole, when the bytes read
        hold its start line and a whole Host field; None otherwise. A line counts as whole only
        when a byte after its end shows that no folded continuation follows."""
        buf = self._buf
        if self._hunting or self._state != "head" or not buf:
            return None
        end = len(buf)
        while True:
            nl = buf.rfind(b"\n", 0, end)
            if nl < 0:
                return None
            if nl + 1 < len(buf) and buf[nl + 1] not in b" \t":
                break
            end = nl
        msg = _parse_text(buf[:nl].decode("latin-1"), 0.0)
        if msg is None or not msg.is_request:
            return None
        return msg.header("host") or None

    def _drop_buffer(self) -> None:
        """Forget the buffered bytes (they cannot be finished)."""
        self._consume(len(self._buf))
        self._marks = None

    def close(self, ts: float) -> list[HttpMessage]:
        """End of stream: a close-delimited or cut-short message is finished as it stands."""
        out: list[HttpMessage] = []
        if self._h2 is not None:
            if self._h2.close():
                self._note_lost(None)  # a header block cut short
            self.dead = True
            self.skip = 0
            return out
        if (
            self._state == "head"
            and not self.dead
            and not self._hunting
            and not self._probing
            and self._buf.strip()
        ):
            self._note_lost(None)  # a head begun and never finished (e.g. the capture was cut)
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
    def _run(self, out: list[HttpMessage]) -> None:
        buf = self._buf
        while not self.dead:
            state = self._state
            if state == "head":
                if not self._parse_head(out):
                    return
            elif state == "chunk-size":
                if not self._parse_chunk_size(out):
                    return
            elif state == "body" or state == "chunk-data":
                if not self._take_body(out):
                    return
            elif state == "chunk-trailer":
                if not self._parse_trailer(out):
                    return
            elif state == "tls":
                self._feed_tls()
                return
            elif state == "h2":
                return
            else:  # close-body: everything until close belongs to the body
                self._keep_bytes(len(buf))
                self._consume(len(buf))
                return
            if not buf:
                return

    def _parse_head(self, out: list[HttpMessage]) -> bool:
        buf = self._buf
        if buf.startswith(b"PRI") and self.on_http2 is not None and self._preface():
            return False
        if self._hunting:
            if not (self.messages_seen or self._hunted) and looks_like_record(buf[:5]):
                self._give_up()  # TLS first seen mid-connection: no use hunting for HTTP
                return False
            if not self.messages_seen and self._frames():
                return False
            if not self._hunt():
                return False
        if buf[:1] in _LINE_ENDS:  # empty lines before a message are ignored (RFC 9112 2.2)
            self._consume(len(buf) - len(buf.lstrip(b"\r\n")))
            if not buf:
                return False
        if not self.messages_seen and not self._plausible_start(buf):
            if self.on_tls is not None and len(buf) < 5 and _tls_prefix(buf):
                return False  # a TLS record header cut short: wait for the rest
            if self._frames():
                return False
            self._give_up(unread=True)
            return False
        # The head ends at the first CRLF CRLF or LF LF. Both show as LF [CR] LF, which a regex
        # finds at memchr speed; an LF CR LF not preceded by CR ends nothing. Bytes searched by
        # an earlier call hold no end, so only the new ones are searched.
        base = self._base
        start = self._searched - base
        if start < 0:
            start = 0
        search = _HEAD_END.search
        m = search(buf, start)
        while m is not None:
            end = m.start()
            if m.end() - end == 2:
                sep = 2
                break
            if end and buf[end - 1] == 13:  # CR before LF CR LF
                end -= 1
                sep = 4
                break
            m = search(buf, end + 1)
        else:
            size = len(buf)
            if size > MAX_HEAD or (size > MAX_LINE and buf.find(b"\n", 0, MAX_LINE) < 0):
                self._note_lost(None)  # a head too long to read: what it carried is unknown
                self._lost_sync()
            else:
                self._searched = base + size - 3  # an end may start in the last 3 bytes
            return False
        if self._mark_off <= base:
            ts, frame = self._mark_ts, self._mark_frame
        else:
            ts, frame = self._first_mark()
        text = buf[:end].decode("latin-1")
        del buf[: end + sep]
        self._base = base + end + sep
        msg = _parse_text(text, ts)
        if msg is None:
            # a head that is not a message: whatever it carried (a request the server may have
            # read, in a form this parser does not) is unknown
            if self.messages_seen:
                self._note_lost(None)
            self._lost_sync()
            return not self.dead  # hunt in what is buffered: a message may follow the junk
        if msg.method == "PRI" and msg.version == "2.0":
            self._give_up()  # the HTTP/2 preface, and nobody to hand the frames to
            return False
        self.messages_seen += 1
        msg.frame = frame
        # the head's place in the stream: buffer offsets plus the bytes that skipped the buffer
        # (every skip asked for is done by now: the reassembler skips before it delivers more)
        outside = self._skip_set + self._gapped
        msg.stream_start = base + outside
        msg.stream_end = self._base + outside
        if self._mark_ts > ts:  # the head's last bytes came in a later packet
            msg.last_ts = self._mark_ts
        msg.after_gap, self._after_gap = self._after_gap, False
        if not self.role:
            self.role = "request" if msg.is_request else "response"
        self._start_body(msg, out)
        return True

    # -- HTTP/2 -------------------------------------------------------------------------------
    def _preface(self) -> bool:
        """The buffer starts with "PRI": True when it is the HTTP/2 preface (then the stream
        is HTTP/2 from here on) or may still become it (wait for more bytes)."""
        buf = self._buf
        if len(buf) < len(PREFACE):
            return PREFACE.startswith(buf)
        if not buf.startswith(PREFACE):
            return False
        reader = self.on_http2(bytes(buf[: len(PREFACE)])) if self.on_http2 else None
        if reader is None:
            self._give_up()
        else:
            self._to_h2(reader)
        return True

    def _frames(self) -> bool:
        """First bytes that are not HTTP/1.x: True when they are HTTP/2 frames (the stream is
        handed over) or too few to tell (wait for more bytes)."""
        if self.on_http2 is None:
            return False
        verdict = looks_like_frames(self._buf)
        self._probing = verdict is None
        if verdict is None:
            return True
        if not verdict:
            return False
        reader = self.on_http2(bytes(self._buf[: len(PREFACE)]))
        if reader is None:
            return False
        self._to_h2(reader)
        return True

    def _to_h2(self, reader: FrameReader) -> None:
        """From now on every byte goes to ``reader``; the bytes buffered go first."""
        if self._mark_off <= self._base:
            ts, frame = self._mark_ts, self._mark_frame
        else:
            ts, frame = self._first_mark()
        self._h2 = reader
        reader.origin = self._base + self._skip_set + self._gapped  # its first byte's offset
        self._state = "h2"
        rest = bytes(self._buf)
        self._consume(len(rest))
        self._marks = None
        self._feed_h2(rest, ts, frame)

    def _feed_h2(self, data: memoryview | bytes, ts: float, frame: int) -> None:
        assert self._h2 is not None
        self.skip = self._h2.data(data, ts, frame)
        self._h2_done()

    def _h2_done(self) -> None:
        if self._h2 is not None and self._h2.dead:
            self.dead = True
            self.skip = 0

    def _consume(self, nbytes: int) -> None:
        """Drop ``nbytes`` from the front of the buffer."""
        if nbytes:
            del self._buf[:nbytes]
            self._base += nbytes

    def _first_mark(self) -> tuple[float, int]:
        """Capture time and frame number of the earlier feed that delivered the first
        buffered byte."""
        marks = self._marks
        if not marks:
            return 0.0, 0
        base = self._base
        while len(marks) > 1 and marks[1][0] <= base:
            marks.popleft()
        return marks[0][1], marks[0][2]

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
        """Look for a request or status line start; drop what comes before it.

        A start line begins the buffer, follows a newline, or begins a feed: a segment may
        start a message right after bytes that end mid-line (a body's tail without a newline,
        the rest of a head cut by a hole)."""
        buf = self._buf
        m = _MESSAGE_START.search(buf)
        start = m.start(1) if m is not None else -1
        feeds = self._feed_starts()
        for at in feeds:
            if (start < 0 or at < start) and _START_LINE.match(buf, at):
                start = at
                break
        if start < 0:  # no usual method: an odd one (``X.Y``, ``post``) is still a request
            m = _ANY_MESSAGE_START.search(buf)
            start = m.start(1) if m is not None else -1
            for at in feeds:
                if (start < 0 or at < start) and _ANY_START_LINE.match(buf, at):
                    start = at
                    break
        if start < 0:
            # Keep a short last line, or else the bytes from a later feed's start, when they
            # may begin a start line split across segments (the feed starts stay known); drop
            # everything else, so the next segment's first byte counts as a line start.
            drop = len(buf)
            line = buf.rfind(b"\n") + 1
            for at in (line, *(at for at in feeds if at > line)):
                if len(buf) - at <= 64 and _could_start_message(bytes(buf[at : at + 40])):
                    drop = at
                    break
            self._hunted += drop
            self._consume(drop)
            if self._hunted > HUNT_LIMIT:
                self._give_up(unread=True)
            return False
        self._hunted += start
        self._consume(start)
        self._hunting = False
        return True

    def _feed_starts(self) -> list[int]:
        """Buffer offsets, in order, where a feed's bytes begin (past the first byte): a
        segment start, which may begin a message whatever came before it. Forgets the feeds
        whose bytes are gone."""
        base, size = self._base, len(self._buf)
        marks = self._marks
        if marks:
            while len(marks) > 1 and marks[1][0] <= base:
                marks.popleft()
            starts = [off - base for off, _, _ in marks if 0 < off - base < size]
        else:
            starts = []
        if 0 < self._mark_off - base < size:
            starts.append(self._mark_off - base)
        return starts

    def _start_body(self, msg: HttpMessage, out: list[HttpMessage]) -> None:
        """Decide how the body of ``msg`` is delimited (none, length, chunked, close or tunnel)
        and set up to keep or skip it."""
        first = msg._first
        te = first.get("transfer-encoding")
        if te is not None and len(msg.headers) != len(first):  # a field may repeat: one list
            te = ", ".join(v for name, v in msg.headers if name == "transfer-encoding")
        chunked = bool(te) and "chunked" in te.lower()
        length = 0
        if msg.is_request:
            if te is not None and "content-length" in first:
                # RFC 9112 6.1: both framings sent - a smuggling attempt; which one the server
                # (or a front end) took is unknown
                self._note_lost(None)
            if chunked:
                framing = "chunked"
            else:
                value = first.get("content-length")
                length = _length(value)
                framing = "length" if length else "none"
                if value is not None and _lengths_disagree(msg, value):
                    # RFC 9112 6.3: framing unknown - the server may have taken another length,
                    # and read as a request what is read here as this one's body (or the reverse)
                    self._note_lost(None)
                if length > MAX_LENGTH:
                    out.append(msg)
                    self._absurd(msg, f"Content-Length {_shown(str(length))}")
                    return
        else:
            method = self.request_method() if self.request_method else None
            status = msg.status
            if status == 101 or (method == "CONNECT" and 200 <= status < 300):
                reader = self.on_upgrade(msg) if status == 101 and self.on_upgrade else None
                if reader is not None:
                    self._to_h2(reader)  # h2c: the answer comes as HTTP/2 frames
                    return
                out.append(msg)
                self._give_up()
                return
            if method == "HEAD" or 100 <= status < 200 or status in (204, 304):
                framing = "none"
            elif chunked:
                framing = "chunked"
            else:
                value = first.get("content-length")
                if value is not None:
                    length = _length(value)
                    framing = "length" if length else "none"
                    if length > MAX_LENGTH:
                        out.append(msg)
                        self._absurd(msg, f"Content-Length {_shown(str(length))}")
                        return
                else:
                    framing = "close"
        if framing == "none":
            out.append(msg)
            return
        keep = self.body_policy(msg)
        if keep > 0:
            self._current = msg
            self._keep = keep
            self._body = bytearray()
            msg.body = b""
            if framing == "length":
                self._state = "body"
                self._remaining = length
            elif framing == "chunked":
                self._state = "chunk-size"
            else:  # close-delimited
                self._state = "close-body"
            return
        out.append(msg)
        self._current = None
        self._keep = 0
        if framing == "length":
            self._state = "head"
            self._remaining = length
            self._set_skip(length)
        elif framing == "chunked":
            self._state = "chunk-size"
        else:
            self._state = "close-body"
            self._set_skip(UNBOUNDED)

    def _set_skip(self, nbytes: int) -> None:
        """Skip ``nbytes`` of body: drop what is buffered now, let the reassembler drop the rest."""
        buf = self._buf
        buffered = len(buf)
        if nbytes < buffered:
            buffered = nbytes
        if buffered:
            del buf[:buffered]
            self._base += buffered
        self._skip_set += nbytes - buffered  # (nothing is left to skip when a body starts)
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
        crlf = 0  # the CRLF ending the previous chunk's data
        if self._expect_crlf:
            if buf.startswith(b"\r\n"):
                crlf = 2
            elif buf.startswith(b"\n"):
                crlf = 1
            elif len(buf) < 2 and buf[:1] in (b"", b"\r"):
                return False
            self._expect_crlf = False
        nl = buf.find(b"\n", crlf)
        if nl < 0:
            self._consume(crlf)
            if len(buf) > MAX_LINE:
                return self._bad_chunk(out)
            return False
        line = buf[crlf:nl].split(b";", 1)[0].strip()
        del buf[: nl + 1]
        self._base += nl + 1
        try:
            size = int(line, 16)
        except ValueError:
            return self._bad_chunk(out)
        if size == 0:
            self._state = "chunk-trailer"
            return True
        if size > MAX_LENGTH:
            msg = self._current
            self._finish_current(out, truncated=True)
            self._absurd(msg, f"chunk size {_shown(line.decode('latin-1'))}")
            return True
        if self._current is None:  # body not kept: skip the chunk without copying it
            self._expect_crlf = True
            self._remaining = 0
            self._set_skip(size)
        else:
            self._remaining = size
            self._state = "chunk-data"
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

    def _absurd(self, msg: HttpMessage | None, what: str) -> None:
        """A body length past ``MAX_LENGTH``: the framing of this message cannot be believed.

        The message (already handed out, or None when it was not kept) is marked truncated, the
        stream counts the damage for the capture's warnings and hunts for the next message, so
        the exchanges after it still come out.
        """
        if msg is not None:
            msg.body_truncated = True
        if not self.absurd_lengths:
            self.absurd_length = what
        self.absurd_lengths += 1
        self._reset_to_hunt()

    def _bad_chunk(self, out: list[HttpMessage]) -> bool:
        """A chunk-size line that is none: where the body ends is unknown, so what follows may
        be the rest of the body or the next request (a smuggled one) - lost. Hunt on in what
        is buffered."""
        self._note_lost(None)
        self._finish_current(out, truncated=True)
        self._lost_sync()
        return not self.dead

    def _lost_sync(self) -> None:
        if self.messages_seen:
            self._reset_to_hunt()
        else:
            self._give_up(unread=True)

    def _reset_to_hunt(self) -> None:
        self._state = "head"
        self._current = None
        self._hunting = True
        self._after_gap = True
        self._hunted = 0
        self.skip = 0

    def _give_up(self, unread: bool = False) -> None:
        """Stop reading this stream. ``unread``: bytes that may have held messages are left
        unread - lost once messages were read (``lost``), else ``unread_start``."""
        buf = self._buf
        if not self.messages_seen and (buf[:2] == b"\x16\x03" or looks_like_record(buf[:5])):
            self.looks_tls = True  # a TLS record: encrypted, not "not HTTP"
            if self.on_tls is not None:
                self._tls = self.on_tls()
                self._state = "tls"
                self._feed_tls()
                return
        if unread and not self.dead and not self.lost:  # (a stretch already lost says it)
            if self.messages_seen:
                self._note_lost(None)
            else:
                self.unread_start = True
        self.dead = True
        self._consume(len(self._buf))
        self._marks = None
        self._state = "head"
        self.skip = 0

    def _feed_tls(self) -> None:
        """Hand the buffered bytes to the TLS reader; give up once it wants no more."""
        assert self._tls is not None
        buf = self._buf
        wants_more = self._tls.feed(buf)
        self._consume(len(buf))
        self._marks = None
        if not wants_more:
            self._end_tls()

    def _end_tls(self) -> None:
        self._tls = None
        self.dead = True
        self._state = "head"
        self.skip = 0


def _tls_prefix(head: bytearray) -> bool:
    """Can these few bytes begin a TLS record header (type 20-24, then major version 3)?"""
    return 20 <= head[0] <= 24 and (len(head) < 2 or head[1] == 3)


def _could_start_message(head: bytes) -> bool:
    """Can ``head`` be the beginning of a request or status line?"""
    return (
        head.startswith(b"HTTP/")
        or b"HTTP/".startswith(head[:5])
        or _METHOD_PREFIX.match(head) is not None
    )


def _lengths_disagree(msg: HttpMessage, first: str) -> bool:
    """Does ``msg`` send Content-Length values that differ (``first``: its first value)?
    Checked only when a field name repeats or the value holds a list (rare)."""
    if "," not in first and len(msg.headers) == len(msg._first or ()):
        return False
    values = {
        piece.strip()
        for name, value in msg.headers
        if name == "content-length"
        for piece in value.split(",")
    }
    return len(values) > 1


def _shown(number: str) -> str:
    """A long number for a warning: its first digits and how many there are."""
    return number if len(number) <= 48 else f"{number[:40]}... ({len(number)} digits)"


def _length(value: str | None) -> int:
    """A Content-Length value as a body length (0 when absent or unusable; may be absurdly
    large, see ``MAX_LENGTH``)."""
    if value is None:
        return 0
    digits = value.split(",")[0].strip()
    # ASCII digits only: int() would also take "1_000", "+5" and other scripts' digits
    if not (digits.isascii() and digits.isdigit()):
        return 0
    return int(digits) if len(digits) <= 4000 else MAX_LENGTH + 1  # int() stops at 4,300
