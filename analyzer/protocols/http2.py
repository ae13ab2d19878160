"""One HTTP/2 connection, both directions (sans-I/O): frames in, request/response pairs out.

``Http2Connection`` owns a ``FrameReader`` per direction (``client``, ``server``) and pairs what
they read by stream id into ``HttpMessage`` objects like HTTP/1.x's: pseudo-headers become the
request line (``:method``, ``:path``; ``:authority`` becomes ``host`` when no ``host`` field was
sent) and the status (``:status``); bodies are kept only as far as the same body policies as
HTTP/1.x ask, and skipped otherwise. A pair goes out (``on_exchange(request, response,
stream_id)``) when its response is complete, or as soon as its head is there when its body is not
kept; a stream reset, refused by GOAWAY, or still open when the connection ends goes out with
what it has (a request without a response).

Streams whose header blocks could not be decoded (the capture began mid-connection, an HPACK
error) and directions whose frames could no longer be followed are remembered, never guessed:
``blind_spot`` names them for the record of what was not inspected.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass

from analyzer.protocols.http1 import HttpMessage
from analyzer.protocols.http2_frames import (
    SETTINGS_HEADER_TABLE_SIZE,
    FrameReader,
    Headers,
    parse_settings,
)

MAX_STREAMS = 1000  # streams followed at once; beyond, the oldest goes out as it stands
MAX_NAMED = 10  # stream ids a blind spot names; the rest are counted
MAX_UNREAD = 10_000  # unreadable streams remembered (their count goes on past it)

#: (request, response, stream id) of a finished stream.
ExchangeCallback = Callable[["HttpMessage | None", "HttpMessage | None", int], None]
RequestBodyPolicy = Callable[[HttpMessage], int]
ResponseBodyPolicy = Callable[["HttpMessage | None", HttpMessage], int]


@dataclass(slots=True)
class _Stream:
    """What one stream has shown so far."""

    request: HttpMessage | None = None
    response: HttpMessage | None = None
    request_seen: bool = False  # the request's header block came (readable or not)
    response_unread: bool = False  # the response's header block could not be decoded
    request_done: bool = False  # END_STREAM from the client
    response_done: bool = False  # END_STREAM from the server
    request_room: int = 0  # request body bytes still to keep
    response_room: int = 0
    request_body: bytearray | None = None
    response_body: bytearray | None = None
    emitted: bool = False


class Http2Connection:
    """Both directions of one HTTP/2 connection, paired into exchanges by stream id.

    ``table_known``: the connection start was captured (or an ``Upgrade: h2c`` preceded the
    frames), so both HPACK tables are known from the first header block on.
    """

    def __init__(
        self,
        on_exchange: ExchangeCallback,
        request_body: RequestBodyPolicy,
        response_body: ResponseBodyPolicy,
        *,
        table_known: bool,
    ) -> None:
        self.on_exchange = on_exchange
        self.request_body = request_body
        self.response_body = response_body
        self.client = FrameReader(self, True, table_known=table_known)
        self.server = FrameReader(self, False, table_known=table_known)
        self.host: str | None = None  # the :authority of the latest request
        self.streams: dict[int, _Stream] = {}
        self._last_client_stream = 0  # highest stream id the client opened
        self._unread: dict[int, str] = {}  # stream id -> why its headers are unknown
        # a request named two hosts (:authority and host): which one it was for is unknown
        self.host_in_doubt = False
        self._unread_more = 0  # unreadable streams past MAX_UNREAD
        self._lost: list[str] = []  # directions whose frames could not be followed, and why

    # -- the connection's life ---------------------------------------------------------------
    def upgrade(self, request: HttpMessage) -> None:
        """An HTTP/1.1 request upgraded with ``Upgrade: h2c``: it is stream 1, its answer comes
        in frames. Its ``HTTP2-Settings`` are the client's first SETTINGS."""
        self.streams[1] = _Stream(request=request, request_seen=True, request_done=True)
        self._last_client_stream = 1
        self.host = request.header("host") or self.host
        settings = _settings_header(request.header("http2-settings"))
        if settings:
            self.settings(True, settings)

    def finish(self) -> None:
        """The connection ended: every stream still open goes out with what it has."""
        for sid, stream in list(self.streams.items()):
            if not stream.emitted:
                self._emit(sid, stream)
        self.streams.clear()

    def blind_spot(self) -> tuple[int, str] | None:
        """(streams, detail) of what could not be read on this connection, or None."""
        parts = []
        by_reason: dict[str, list[int]] = {}
        for sid, reason in self._unread.items():
            by_reason.setdefault(reason, []).append(sid)
        for reason, sids in by_reason.items():
            named = ", ".join(map(str, sids[:MAX_NAMED]))
            more = len(sids) - MAX_NAMED
            named += f" and {more} more" if more > 0 else ""
            parts.append(f"stream(s) {named} not decoded: {reason}")
        if self._unread_more:
            parts.append(f"{self._unread_more} more stream(s) not decoded")
        parts += self._lost
        if not parts:
            return None
        count = len(self._unread) + self._unread_more
        return max(count, 1), "HTTP/2 " + "; ".join(parts)

    # -- FrameHandler ------------------------------------------------------------------------
    def preface(self) -> None:
        self.client.saw_preface()
        self.server.saw_preface()

    def settings(self, from_client: bool, settings: list[tuple[int, int]]) -> None:
        """A side's SETTINGS: its header table size bounds what the other side's encoder uses."""
        other = self.server if from_client else self.client
        for key, value in settings:
            if key == SETTINGS_HEADER_TABLE_SIZE:
                other.allow_table_size(value)

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
        if from_client:
            self._client_headers(stream_id, headers, end, ts, frame, last_ts)
        else:
            self._server_headers(stream_id, headers, end, ts, frame)

    def push_promise(
        self, stream_id: int, promised: int, headers: Headers | None, ts: float, frame: int = 0
    ) -> None:
        """A pushed request: the response on the ``promised`` stream answers it."""
        if headers is None:
            self._note_unread(promised or stream_id, self.server.problem)
            return
        if promised and promised not in self.streams:
            self._make_room()
            request = _message(True, headers, ts, frame)
            self.streams[promised] = _Stream(request=request, request_seen=True, request_done=True)

    def body_room(self, from_client: bool, stream_id: int, size: int) -> int:
        stream = self.streams.get(stream_id)
        if stream is None or stream.emitted:
            return 0
        room = stream.request_room if from_client else stream.response_room
        if not room:
            message = stream.request if from_client else stream.response
            if message is not None and message.body is not None:
                message.body_truncated = True  # kept up to the cap; more came
        return room

    def body(self, from_client: bool, stream_id: int, chunk: bytes, more: int) -> int:
        stream = self.streams.get(stream_id)
        if stream is None:
            return 0
        if from_client:
            room, kept, message = stream.request_room, stream.request_body, stream.request
        else:
            room, kept, message = stream.response_room, stream.response_body, stream.response
        if kept is None or message is None:
            return 0
        kept += chunk[:room]
        if len(chunk) + more > room:
            message.body_truncated = True
        room = max(0, room - len(chunk))
        if from_client:
            stream.request_room = room
        else:
            stream.response_room = room
        return room

    def body_lost(self, from_client: bool, stream_id: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None:
            message = stream.request if from_client else stream.response
            if message is not None:
                message.body_truncated = True

    def end_stream(self, from_client: bool, stream_id: int, ts: float) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        if from_client:
            stream.request_done = True
            _settle_body(stream.request, stream.request_body)
        else:
            stream.response_done = True
        self._progress(stream_id, stream)

    def reset(self, stream_id: int, ts: float) -> None:
        stream = self.streams.pop(stream_id, None)
        if stream is not None and not stream.emitted:
            self._emit(stream_id, stream)

    def goaway(self, from_client: bool, last_stream_id: int, ts: float) -> None:
        """The server will not process the client's streams past ``last_stream_id``."""
        if from_client:
            return
        for sid in [s for s in self.streams if s > last_stream_id and s % 2]:
            self.reset(sid, ts)

    def lost(self, from_client: bool, reason: str) -> None:
        side = "client -> server" if from_client else "server -> client"
        later = "requests" if from_client else "responses"
        self._lost.append(f"{side} frames not followed after {reason}: later {later} not read")

    # -- internals ---------------------------------------------------------------------------
    def resent(self, stream_id: int, ts: float) -> None:
        """The client's header block on ``stream_id`` came again at ``ts``: until the server
        answers, it may have read the request only from that copy (its ``last_ts``)."""
        stream = self.streams.get(stream_id)
        request = stream.request if stream is not None else None
        if request is None or stream.response is not None or stream.emitted or ts <= request.ts:
            return
        if request.last_ts is None or ts > request.last_ts:
            request.last_ts = ts

    def _client_headers(
        self,
        sid: int,
        headers: Headers | None,
        end: bool,
        ts: float,
        frame: int,
        last_ts: float | None = None,
    ) -> None:
        stream = self.streams.get(sid)
        if stream is None:
            if sid <= self._last_client_stream:
                # trailers of a stream already gone out - or a new request on a stream id used
                # already or lower (a protocol error a server may serve all the same)
                if headers is None or any(name == ":method" for name, _ in headers):
                    self._note_unread(sid, "a request on a stream id already used or passed")
                return
            self._make_room()
            stream = self.streams[sid] = _Stream()
            self._last_client_stream = sid
        if not stream.request_seen:
            stream.request_seen = True
            if headers is None:
                self._note_unread(sid, self.client.problem)
            else:
                if _repeats_pseudo(headers):
                    # malformed (RFC 9113 8.3): which :path or :authority the server took is
                    # unknown - read as the first, and said
                    self._note_unread(sid, "a pseudo-header sent twice")
                elif _authority_conflict(headers):
                    # malformed too (RFC 9113 8.3.1): a server may route by either name, so
                    # the blind spot is for any host (``host_in_doubt``)
                    self._note_unread(sid, "a host field that names another host than :authority")
                    self.host_in_doubt = True
                request = stream.request = _message(True, headers, ts, frame)
                request.last_ts = last_ts
                self.host = request.header("host") or self.host
                room = self.request_body(request)
                if room > 0:
                    stream.request_room = room
                    stream.request_body = bytearray()
                    request.body = b""
        elif headers is None:
            self._note_unread(sid, self.client.problem)  # trailers: HPACK lost from here on
        elif any(name == ":method" for name, _ in headers):  # trailers carry no pseudo-header
            self._note_unread(sid, "a request on a stream id already used or passed")
        elif any(name.lower() in _CREDENTIAL_FIELDS for name, _ in headers):
            # a credential in trailers: not read as one here, and a server may take it
            self._note_unread(sid, "a credential sent in trailers")
        if end:
            stream.request_done = True
            _settle_body(stream.request, stream.request_body)
            self._progress(sid, stream)

    def _server_headers(
        self, sid: int, headers: Headers | None, end: bool, ts: float, frame: int
    ) -> None:
        stream = self.streams.get(sid)
        if stream is None:
            if sid % 2 == 0 or sid <= self._last_client_stream:
                if headers is None:
                    self._note_unread(sid, self.server.problem)
                return  # a finished stream's trailers, or a push whose promise was not seen
            self._make_room()
            stream = self.streams[sid] = _Stream()
            self._last_client_stream = sid
        if headers is None:
            self._note_unread(sid, self.server.problem)
            if stream.response is None:
                stream.response_unread = True
        elif stream.response is None and not stream.response_unread:
            response = _message(False, headers, ts, frame)
            if not 100 <= response.status < 200:  # an interim 1xx: the final answer follows
                stream.response = response
                _settle_body(stream.request, stream.request_body)
                room = self.response_body(stream.request, response)
                if room > 0:
                    stream.response_room = room
                    stream.response_body = bytearray()
                    response.body = b""
        if end:
            stream.response_done = True
        self._progress(sid, stream)

    def _progress(self, sid: int, stream: _Stream) -> None:
        """Emit a stream whose answer is complete (or whose body nobody keeps); forget it once
        both sides are done."""
        if not stream.emitted and (
            stream.response_unread
            or (stream.response is not None and (stream.response_done or not stream.response_room))
        ):
            self._emit(sid, stream)
        if stream.emitted and stream.response_done:
            self.streams.pop(sid, None)

    def _emit(self, sid: int, stream: _Stream) -> None:
        stream.emitted = True
        _settle_body(stream.request, stream.request_body)
        _settle_body(stream.response, stream.response_body)
        if stream.response is None and stream.request is not None and self.server.dead:
            self._note_unread(sid, "its response was in frames that could not be followed")
        if stream.request is not None or stream.response is not None:
            self.on_exchange(stream.request, stream.response, sid)

    def _make_room(self) -> None:
        """Keep at most ``MAX_STREAMS`` streams: the oldest goes out as it stands."""
        if len(self.streams) >= MAX_STREAMS:
            sid = next(iter(self.streams))
            stream = self.streams.pop(sid)
            if not stream.emitted:
                self._emit(sid, stream)

    def _note_unread(self, sid: int, reason: str) -> None:
        if sid in self._unread:
            return
        if len(self._unread) < MAX_UNREAD:
            self._unread[sid] = reason
        else:
            self._unread_more += 1


def _settle_body(message: HttpMessage | None, kept: bytearray | None) -> None:
    """Hand the body kept so far to its message."""
    if message is not None and kept is not None:
        message.body = bytes(kept)


#: Fields that carry a credential (a trailer holding one is a blind spot, not ignored).
_CREDENTIAL_FIELDS = frozenset({"authorization", "proxy-authorization"})


def _repeats_pseudo(headers: Headers) -> bool:
    """Does a header list send a pseudo-header (``:path``, ...) more than once?"""
    names = [name for name, _ in headers if name.startswith(":")]
    return len(names) != len(set(names))


def _authority_conflict(headers: Headers) -> bool:
    """Do ``:authority`` and a ``host`` field name different hosts (case and a trailing dot
    aside)? Which one the server routed by is unknown."""
    authority = next((v for n, v in headers if n == ":authority"), None)
    if authority is None:
        return False
    norm = authority.strip().lower().rstrip(".")
    return any(n.lower() == "host" and v.strip().lower().rstrip(".") != norm for n, v in headers)


def _message(is_request: bool, headers: Headers, ts: float, frame: int = 0) -> HttpMessage:
    """An ``HttpMessage`` from a decoded header list (pseudo-headers become its start line)."""
    pseudo: dict[str, str] = {}
    fields = []
    for name, value in headers:
        if name.startswith(":"):
            pseudo.setdefault(name, value)
        else:
            fields.append((name.lower(), value))
    if is_request:
        method = pseudo.get(":method", "").upper()
        authority = pseudo.get(":authority")
        uri = pseudo.get(":path") or (authority if method == "CONNECT" else "") or ""
        if authority is not None and not any(name == "host" for name, _ in fields):
            fields.insert(0, ("host", authority))
        message = HttpMessage(True, ts, "2", method, uri, headers=fields, frame=frame)
    else:
        status = pseudo.get(":status", "")
        code = int(status) if status.isascii() and status.isdigit() and len(status) == 3 else 0
        message = HttpMessage(False, ts, "2", status=code, headers=fields, frame=frame)
    message._first = dict(reversed(fields))
    return message


def _settings_header(value: str | None) -> list[tuple[int, int]]:
    """The SETTINGS an ``HTTP2-Settings`` header carries (base64url, unpadded)."""
    if not value:
        return []
    try:
        raw = base64.urlsafe_b64decode(value.strip() + "=" * (-len(value.strip()) % 4))
    except (binascii.Error, ValueError):
        return []
    return parse_settings(raw)
