"""SIP message parsing (RFC 3261), sans-I/O: datagrams and TCP byte streams in, messages out.

SIP messages look like HTTP/1.1 ones - a start line, header fields, a blank line, a body - but the
start line names ``SIP/2.0``, header names have compact one-letter forms (``i`` for ``Call-ID``),
and both ends send requests (a server's NOTIFY travels on the connection its client opened).

- Over UDP one datagram is one message: ``parse_datagram`` reads it; nothing is reassembled.
- Over TCP (and TLS, once decrypted) messages follow each other on the stream, each framed by its
  ``Content-Length`` (RFC 3261 18.3: mandatory there). ``SipStream`` is the reassembler's
  consumer for one direction; bodies are never kept (nothing in them is authentication), so their
  bytes are left to the reassembler to drop (``skip``). Keep-alive CRLFs between messages
  (RFC 5626) are ignored; after lost bytes the stream hunts for the next start line.

``looks_like_sip`` tells from a stream's first bytes whether it is SIP at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_HEAD = 256 * 1024  # TLS-DSK certificate chains and Kerberos tickets make heads of tens of KB
HUNT_LIMIT = 256 * 1024  # bytes searched for a message start after a gap or a mid-stream start
MAX_LENGTH = 1 << 32  # a bigger Content-Length is garbage: the stream gives up
SIP_VERSION = "SIP/2.0"

#: Compact header names (RFC 3261 7.3.3, RFC 3265, RFC 3515, RFC 4028) -> the full name.
COMPACT = {
    "i": "call-id",
    "f": "from",
    "t": "to",
    "v": "via",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
    "e": "content-encoding",
    "k": "supported",
    "s": "subject",
    "o": "event",
    "u": "allow-events",
    "r": "refer-to",
    "b": "referred-by",
    "x": "session-expires",
}

_TOKEN = rb"[A-Za-z0-9.!%*_+`'~-]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") +(\S{1,8192}) +SIP/2\.0[ \t]*\r?$")
_STATUS_LINE = re.compile(rb"SIP/2\.0 +(\d{3})(?: ([^\r\n]*))?\r?$")
# What a message start looks like at a line start (hunting after lost bytes): the lines above,
# spaced as they allow (a lenient server reads ``REGISTER  sip:x SIP/2.0``).
_MESSAGE_START = re.compile(
    rb"(?:^|\n)((?:" + _TOKEN + rb" +\S+ +SIP/2\.0[ \t]*\r?\n)|(?:SIP/2\.0 +\d{3}))"
)
_HEAD_END = re.compile(rb"\r?\n\r?\n")
# First bytes of a SIP message: a method and a SIP-ish URI scheme, or the status line's version.
_SIP_START = re.compile(rb"(?:" + _TOKEN + rb" +(?:sips?|tel|urn|im|pres):|SIP/2\.0 +\d)", re.I)
_URI_HOST = re.compile(r"^(?:sips?|tel|im|pres):(?:[^@;?>]*@)?(\[[^\]]+\]|[^:;?>]+)", re.I)
_ANGLE = re.compile(r"<([^>]*)>")
# Bytes that may still become such a start once more arrive (a start line cut short).
_SIP_PREFIX = re.compile(
    rb"(?:[A-Za-z0-9.!%*_+`'~-]{0,32}(?: +[A-Za-z]{0,4})?"
    rb"|S(?:I(?:P(?:/(?:2(?:\.(?:0 *)?)?)?)?)?)?)\Z"
)


@dataclass(slots=True)
class SipMessage:
    """One SIP request or response head (bodies are never kept)."""

    is_request: bool
    ts: float  # capture time of the packet holding the message's first byte
    method: str = ""  # request method (upper case); empty for a response
    uri: str = ""  # Request-URI
    status: int = 0
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)  # (full lowercase name, value)
    body_length: int = 0
    after_gap: bool = False  # first message after lost bytes: earlier messages may be missing
    frame: int = 0  # frame number of the packet holding the first byte (0: not numbered)

    def header(self, name: str) -> str | None:
        """First value of a header (full name, lowercase)."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_all(self, name: str) -> list[str]:
        """Every value of a (possibly repeated) header."""
        return [value for key, value in self.headers if key == name]

    @property
    def cseq(self) -> tuple[int | None, str]:
        """(sequence number, method) of the CSeq header; (None, "") when absent or garbled.

        ASCII digits only: ``isdigit`` is also true for ``²`` (the 0xb2 of a Latin-1 header),
        which ``int`` refuses."""
        number, _, method = (self.header("cseq") or "").strip().partition(" ")
        plain = number.isascii() and number.isdigit() and len(number) <= 10
        return (int(number) if plain else None), method.strip()

    @property
    def call_id(self) -> str | None:
        return self.header("call-id")

    @property
    def branch(self) -> str | None:
        """The ``branch`` parameter of the topmost Via: the transaction id (RFC 3261 17.2.3)."""
        via = self.header("via")
        if via is None:
            return None
        for param in via.split(",", 1)[0].split(";")[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "branch":
                return value.strip()
        return None

    def transaction(self) -> tuple:
        """What pairs a response with its request: top Via branch, Call-ID and CSeq (its
        method being CANCEL keeps a CANCEL apart from the INVITE it cancels)."""
        number, method = self.cseq
        return (self.branch, self.call_id, number, method.upper())


def looks_like_sip(data: bytes | bytearray | memoryview) -> bool | None:
    """Do these first bytes of a stream start a SIP message (after any keep-alive line breaks)?
    None while too few to tell."""
    head = bytes(data).lstrip(b"\r\n")[:64]
    if _SIP_START.match(head):
        return True
    return None if _SIP_PREFIX.match(head) else False


def sip_start_after(data: bytes | bytearray | memoryview) -> bool:
    """Do bytes caught in the middle of a stream hold the start of a SIP message at a line
    start (the tail of one message, then the next)?"""
    return _MESSAGE_START.search(data) is not None


def uri_host(uri: str | None) -> str | None:
    """The host of a SIP URI (``sip:alice@contoso.com:5061;transport=tls`` -> contoso.com)."""
    if not uri:
        return None
    m = _URI_HOST.match(uri.strip())
    return m.group(1).lower() if m else None


def address_uri(value: str | None) -> str | None:
    """The URI of a From / To / Contact value, without display name, brackets or parameters."""
    if value is None:
        return None
    m = _ANGLE.search(value)
    uri = m.group(1) if m else value.split(";", 1)[0]
    return uri.strip() or None


def parse_head(raw: bytes, ts: float, frame: int = 0) -> SipMessage | None:
    """A head (start line and header fields, without the blank line); None when not SIP."""
    lines = raw.split(b"\n")
    start = lines[0]
    m = _STATUS_LINE.match(start)
    if m:
        msg = SipMessage(
            False, ts, status=int(m.group(1)), reason=_text(m.group(2) or b""), frame=frame
        )
    else:
        m = _REQUEST_LINE.match(start)
        if not m:
            return None
        msg = SipMessage(
            True, ts, method=_text(m.group(1)).upper(), uri=_text(m.group(2)), frame=frame
        )
    headers = msg.headers
    for raw_line in lines[1:]:
        line = _text(raw_line.rstrip(b"\r"))
        if not line:
            continue
        if line[0] in " \t":  # a folded continuation of the previous field
            if headers:
                name, value = headers[-1]
                headers[-1] = (name, f"{value} {line.strip()}".strip())
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        key = name.strip().lower()
        headers.append((COMPACT.get(key, key), value.strip()))
    length = msg.header("content-length")
    if length is not None:
        text = length.strip()
        plain = text.isascii() and text.isdigit() and len(text) <= 12  # not "²"
        msg.body_length = int(text) if plain else -1
    return msg


def parse_datagram(
    data: bytes | bytearray | memoryview, ts: float, frame: int = 0
) -> SipMessage | None:
    """The SIP message of one UDP datagram, or None when it holds none (keep-alives, STUN,
    RTP). The head may end the datagram without a blank line; the body is not read."""
    raw = bytes(data[:MAX_HEAD]).lstrip(b"\r\n")
    if not raw or not _SIP_START.match(raw):
        return None
    m = _HEAD_END.search(raw)
    return parse_head(raw[: m.start()] if m else raw, ts, frame)


#: Receives the messages one call of ``SipStream.data`` / ``gap`` / ``close`` completed.
MessageSink = Callable[[list[SipMessage]], None]


class SipStream:
    """One direction of a SIP-over-TCP stream: ordered bytes in, message heads out.

    The reassembler's consumer (``analyzer.flows.tcp.StreamConsumer``): ``skip`` is the body
    bytes still to drop, ``dead`` is set once the bytes turn out not to be SIP. A stream that
    starts mid-connection (``midstream``) hunts for a start line first; what it drops before
    one (the rest of a message begun before the capture, which may hold a credential line) is
    a lost stretch, as are bytes lost to a hole, a head that is not SIP, and bytes the peer
    retransmitted with other contents (``conflict``).
    """

    def __init__(self, on_messages: MessageSink, *, midstream: bool = False) -> None:
        self.on_messages = on_messages
        self.skip = 0
        self.dead = False
        self.messages_seen = 0
        self.lost = 0  # stretches of bytes that may have held message heads and were not read
        self.conflicts = 0  # of those, stretches retransmitted with other contents
        self._buf = bytearray()
        self._ts = 0.0  # capture time of the first buffered byte
        self._frame = 0  # and the frame number of its packet
        self._searched = 0  # bytes of _buf already searched for a head's end (none there)
        self._hunting = midstream
        self._after_gap = midstream
        # bytes dropped by the hunt under way are not counted in ``lost`` yet: a mid-stream
        # start (a hole or a bad head counted its stretch when it began the hunt)
        self._uncounted = midstream

    def data(self, data: memoryview | bytes, ts: float, frame: int = 0) -> None:
        if self.dead:
            return
        if not self._buf:
            self._ts = ts
            self._frame = frame
        self._buf += data
        out: list[SipMessage] = []
        self._run(out, ts, frame)
        if out:
            self.on_messages(out)

    def gap(self, nbytes: int, ts: float) -> None:
        """Bytes were lost: what was buffered cannot be finished; hunt for the next message."""
        if self.dead:
            return
        self.lost += 1  # the lost bytes may have held a message head
        self._buf.clear()
        self._searched = 0
        self._hunting = self._after_gap = True
        self._uncounted = False

    def conflict(self, ts: float) -> None:
        """The reassembler saw a retransmission whose bytes differ from the copy given here:
        which copy the peer read is unknown, so the stretch counts as lost (the stream reads on
        with the first copy)."""
        if not self.dead:
            self.lost += 1
            self.conflicts += 1

    def close(self, ts: float) -> None:
        """End of stream: a head begun and never finished is counted as lost, and so are
        bytes a mid-stream start never found a start line in."""
        if not self.dead and self._buf.strip(b"\r\n") and (self._uncounted or not self._hunting):
            self.lost += 1
        self._buf.clear()
        self.dead = True

    def _run(self, out: list[SipMessage], ts: float, frame: int) -> None:
        buf = self._buf
        while buf and not self.dead:
            if self._hunting and not self._hunt():
                return
            start = 0
            while start < len(buf) and buf[start] in b"\r\n":
                start += 1  # keep-alive CRLFs between messages
            if start:
                del buf[:start]
                self._ts = ts
                self._frame = frame
                self._searched = 0
                if not buf:
                    return
            if not self.messages_seen and not self._hunting:
                sip = looks_like_sip(buf)
                if sip is None:
                    return
                if not sip:
                    self._give_up()
                    return
            # only the bytes not searched before (an end is at most 4 bytes long)
            m = _HEAD_END.search(buf, max(0, self._searched - 3))
            if m is None:
                self._searched = len(buf)
                if len(buf) > MAX_HEAD:
                    self._lost_sync()
                return
            msg = parse_head(bytes(buf[: m.start()]), self._ts, self._frame)
            del buf[: m.end()]
            self._searched = 0
            if msg is None or msg.body_length < 0 or msg.body_length > MAX_LENGTH:
                self._lost_sync()
                continue
            self.messages_seen += 1
            msg.after_gap, self._after_gap = self._after_gap, False
            out.append(msg)
            body = msg.body_length
            buffered = min(body, len(buf))
            del buf[:buffered]
            self.skip = body - buffered
            self._ts = ts
            self._frame = frame

    def _hunt(self) -> bool:
        """Drop bytes up to the next line that starts a message; False while none is in sight."""
        buf = self._buf
        m = _MESSAGE_START.search(buf)
        if m is None:
            last_nl = buf.rfind(b"\n")
            keep = len(buf) - last_nl - 1 if last_nl >= 0 else len(buf)
            if keep > 512 or len(buf) > HUNT_LIMIT:
                keep = 0  # no start line is that long
            self._drop(len(buf) - keep)
            return False
        self._drop(m.start(1))
        self._hunting = self._uncounted = False
        self._searched = 0
        return True

    def _drop(self, nbytes: int) -> None:
        """Drop the first ``nbytes`` buffered while hunting; the first that are not keep-alive
        CRLFs after a mid-stream start are a lost stretch (they may end a head that carried a
        credential)."""
        if self._uncounted and self._buf[:nbytes].strip(b"\r\n"):
            self.lost += 1
            self._uncounted = False
        del self._buf[:nbytes]

    def _lost_sync(self) -> None:
        """A head that is not SIP, or too long: count it lost and hunt for the next message."""
        self.lost += 1
        self._buf.clear()
        self._searched = 0
        self._hunting = self._after_gap = True
        self._uncounted = False

    def _give_up(self) -> None:
        self.dead = True
        self.skip = 0
        self._buf.clear()


def _text(raw: bytes) -> str:
    """Header bytes as text: UTF-8 (RFC 3261 allows it); bytes that are not UTF-8 are read as
    latin-1, one character per byte (as HTTP heads are), never as lone surrogates that no
    writer could encode."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")
