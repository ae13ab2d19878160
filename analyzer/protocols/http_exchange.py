"""Pairs HTTP requests with their responses on one TCP connection (keep-alive and pipelined).

The side that sends requests is the client, whatever the ports say. Finished pairs go to the
``on_exchange`` callback; requests still unanswered when the connection ends go out without a
response, so a capture that missed the server's answers still shows every request.

A connection that speaks HTTP/2 (the client preface, frames first, or ``Upgrade: h2c`` after an
HTTP/1.1 request) is read by an ``Http2Connection``, whose pairs (by stream id) go out the same
way, with their ``stream_id``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from analyzer.flows.tcp import ConnectionInfo
from analyzer.protocols.http1 import HttpMessage, HttpStream
from analyzer.protocols.http2 import Http2Connection
from analyzer.protocols.http2_frames import PREFACE, FrameReader
from analyzer.protocols.tls import TlsHandshake, TlsStream

MAX_PENDING = 1000  # unanswered requests kept per connection before the oldest is given up


@dataclass(slots=True)
class Exchange:
    """A request and the response that answered it (either may be missing)."""

    conn_id: str
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    request: HttpMessage | None
    response: HttpMessage | None
    stream_id: int | None = None  # HTTP/2 stream; None for HTTP/1.x
    # the capture joined the connection after it began (no SYN seen): what came before is unknown
    midstream: bool = False
    # ``conn_id`` names one real connection (False: an archive that grouped its entries by
    # server, not knowing their connections), so what one request set up holds for the next
    persistent: bool = True


#: How many request-body bytes to keep for a request head (0 = skip the body).
RequestBodyPolicy = Callable[[HttpMessage], int]
#: How many response-body bytes to keep, given the request (if known) and the response head.
ResponseBodyPolicy = Callable[["HttpMessage | None", HttpMessage], int]


class _Hooks:
    """One direction's callbacks into its connection (cheaper than a ``partial`` each)."""

    __slots__ = ("conn", "from_a")

    def __init__(self, conn: HttpConnection, from_a: bool) -> None:
        self.conn = conn
        self.from_a = from_a

    def messages(self, messages: list[HttpMessage]) -> None:
        self.conn._messages(self.from_a, messages)

    def tls(self) -> TlsStream:
        return self.conn._tls_stream(self.from_a)

    def http2(self, first: bytes) -> FrameReader | None:
        return self.conn._http2_stream(self.from_a, first)

    def upgrade(self, response: HttpMessage) -> FrameReader | None:
        return self.conn._upgrade(self.from_a, response)

    def resent(self, off: int, nbytes: int, ts: float) -> None:
        self.conn._resent(self.from_a, off, nbytes, ts)


class HttpConnection:
    """Both directions of one connection, parsed as HTTP/1.x and paired into exchanges."""

    __slots__ = (
        "a_to_b",
        "b_to_a",
        "client_is_a",
        "conn_id",
        "h2",
        "host",
        "info",
        "last_ts",
        "on_close",
        "on_exchange",
        "pending",
        "request_body",
        "response_body",
        "tls",
        "unasked_answers",
        "warn",
    )

    def __init__(
        self,
        info: ConnectionInfo,
        on_exchange: Callable[[Exchange], None],
        request_body: RequestBodyPolicy,
        response_body: ResponseBodyPolicy,
        on_close: Callable[[HttpConnection], None] | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.info = info
        self.on_close = on_close
        self.warn = warn  # told what ``damage`` lists when the connection ends
        self.conn_id = info.conn_id
        self.on_exchange = on_exchange
        self.request_body = request_body
        self.response_body = response_body
        # Unanswered requests, oldest first: a list, not a deque (an empty deque costs 600 bytes
        # and pipelines are short; MAX_PENDING bounds the pop(0)).
        self.pending: list[HttpMessage] = []
        self.unasked_answers = 0  # answers to no request read (see ``requests_lost``)
        self.client_is_a: bool | None = None
        # The Host of the latest request read before any of the client's bytes were lost
        # (``_messages``); when the connection ends, the Host a lost head was read to name
        # before its hole, if known (``finish``). What it names a blind spot by.
        self.host: str | None = None
        self.tls: TlsHandshake | None = None  # set when either direction turned out to be TLS
        self.last_ts = info.first_ts  # when it ended (``finish``)
        self.h2: Http2Connection | None = None  # set when the connection turned out HTTP/2
        midstream = not info.syn_seen
        body_policy, request_method = self._body_policy, self._pending_method
        a, b = _Hooks(self, True), _Hooks(self, False)
        self.a_to_b = HttpStream(
            midstream=midstream,
            body_policy=body_policy,
            request_method=request_method,
            on_messages=a.messages,
            on_tls=a.tls,
            on_http2=a.http2,
            on_upgrade=a.upgrade,
            on_resent=a.resent,
        )
        self.b_to_a = HttpStream(
            midstream=midstream,
            body_policy=body_policy,
            request_method=request_method,
            on_messages=b.messages,
            on_tls=b.tls,
            on_http2=b.http2,
            on_upgrade=b.upgrade,
            on_resent=b.resent,
        )

    @property
    def is_http(self) -> bool:
        return self.client_is_a is not None

    @property
    def requests_lost(self) -> int:
        """Stretches of the client's bytes that could not be read (see ``HttpStream.lost``):
        requests whose credentials nobody can know. Without a parsed message, the side that
        sent the first packet is taken for the client. A client whose first bytes could not be
        read as HTTP/1.x counts too when its server answered in HTTP (an odd verb, a broken
        start line: the server may have read what this parser could not), and so does each
        answer on a connection seen from its start that answers no request read."""
        client = self._client_stream
        unread = 1 if client.unread_start and self.is_http else 0
        # answers to lost requests are no news: counted only where nothing else was lost
        return client.lost + unread or self.unasked_answers

    @property
    def answers_in_doubt(self) -> int:
        """Stretches of the server's bytes retransmitted with other contents: which answer the
        client read (a 401 or a 200 to a logon, say) is unknown."""
        server = self.a_to_b if self.client_is_a is False else self.b_to_a
        return server.conflicts

    @property
    def _client_stream(self) -> HttpStream:
        return self.b_to_a if self.client_is_a is False else self.a_to_b

    def finish(self, ts: float) -> None:
        """The connection ended: unanswered requests go out without a response. When request
        bytes were lost, ``host`` is the Host the lost heads were read to name before their
        holes (``HttpStream.lost_host``) when known, else the Host read before the first loss
        (or None): never one read after it, which the lost requests may not have had."""
        self.last_ts = ts
        if self.h2 is not None:
            self.h2.finish()
        while self.pending:
            self._emit(self.pending.pop(0), None)
        client = self._client_stream
        if client.lost and client.lost_host is not None:
            self.host = client.lost_host
        if self.warn is not None:
            for problem in self.damage():
                self.warn(problem)
        if self.on_close is not None:
            self.on_close(self)

    def damage(self) -> list[str]:
        """Warnings about this connection's HTTP framing (absurd body lengths), for the capture
        stats: what was skipped, so a reader knows the connection was not read whole."""
        info = self.info
        out = []
        for stream, src, dst in (
            (self.a_to_b, f"{info.a_ip}:{info.a_port}", f"{info.b_ip}:{info.b_port}"),
            (self.b_to_a, f"{info.b_ip}:{info.b_port}", f"{info.a_ip}:{info.a_port}"),
        ):
            if stream.absurd_lengths:
                out.append(
                    f"{self.conn_id} {src} -> {dst}: {stream.absurd_lengths} HTTP message(s) "
                    f"with an absurd body length (first: {stream.absurd_length}); body skipped, "
                    "reading resumed at the next message"
                )
        return out

    # -- internals ---------------------------------------------------------------------------
    def _tls_stream(self, from_a: bool) -> TlsStream:
        """The TLS reader for one direction (both made when the first turns out to be TLS)."""
        if self.tls is None:
            self.tls = TlsHandshake()
        return self.tls.a if from_a else self.tls.b

    def _http2_stream(self, from_a: bool, first: bytes) -> FrameReader | None:
        """The HTTP/2 reader for a direction whose first bytes are the client preface or
        frames; None when the connection already spoke HTTP/1.x without an upgrade to h2c."""
        preface = first.startswith(PREFACE)
        h2 = self.h2
        if h2 is None:
            upgrade = self._h2c_request() if preface else None
            if self.client_is_a is not None and upgrade is None:
                return None
            if preface:
                client_is_a = from_a
            elif self.info.syn_seen:
                client_is_a = not from_a  # the server's SETTINGS came before the preface
            else:
                client_is_a = self.info.a_port >= self.info.b_port  # the client's port is higher
            h2 = self._start_h2(client_is_a, preface or self.info.syn_seen or upgrade is not None)
            if upgrade is not None:
                h2.upgrade(upgrade)
        return h2.client if from_a == self.client_is_a else h2.server

    def _upgrade(self, from_a: bool, response: HttpMessage) -> FrameReader | None:
        """The HTTP/2 reader for the bytes after a ``101`` that switches to h2c."""
        if "h2c" not in (response.header("upgrade") or "").lower():
            return None
        h2 = self.h2
        if h2 is None:
            request = self._h2c_request()
            if request is None:
                return None
            h2 = self._start_h2(not from_a, True)
            h2.upgrade(request)
        return h2.client if from_a == self.client_is_a else h2.server

    def _h2c_request(self) -> HttpMessage | None:
        """The pending request that asked for ``Upgrade: h2c`` (taken out of the queue)."""
        for request in reversed(self.pending):
            if "h2c" in (request.header("upgrade") or "").lower():
                self.pending.remove(request)
                return request
        return None

    def _start_h2(self, client_is_a: bool, table_known: bool) -> Http2Connection:
        self.client_is_a = client_is_a
        self.h2 = Http2Connection(
            self._h2_exchange, self.request_body, self.response_body, table_known=table_known
        )
        return self.h2

    def _h2_exchange(
        self, request: HttpMessage | None, response: HttpMessage | None, stream_id: int
    ) -> None:
        if request is not None and not self._client_stream.lost:
            self.host = request.header("host") or self.host
        self._emit(request, response, stream_id)

    def _body_policy(self, msg: HttpMessage) -> int:
        if msg.is_request:
            return self.request_body(msg)
        return self.response_body(self.pending[0] if self.pending else None, msg)

    def _pending_method(self) -> str | None:
        return self.pending[0].method if self.pending else None

    def _messages(self, from_a: bool, messages: list[HttpMessage]) -> None:
        for msg in messages:
            if self.client_is_a is None:
                self.client_is_a = from_a == msg.is_request
            if msg.is_request:
                if not self._client_stream.lost:  # the Host a blind spot may be named by
                    self.host = msg.header("host") or self.host
                self.pending.append(msg)
                if len(self.pending) > MAX_PENDING:
                    self._emit(self.pending.pop(0), None)
            elif 100 <= msg.status < 200 and msg.status != 101:
                continue  # interim response (100 Continue): the real answer follows
            else:
                if msg.after_gap:
                    self._realign(msg)
                elif not self.pending and self.info.syn_seen and msg.status != 408:
                    # an answer to no request read: the server read one this parser did not
                    # (smuggled in a body, say) - unless it is an unasked 408 Request Timeout
                    self.unasked_answers += 1
                self._emit(self.pending.pop(0) if self.pending else None, msg)

    def _resent(self, from_a: bool, off: int, nbytes: int, ts: float) -> None:
        """Client bytes came again at ``ts``: a request still unanswered whose head they overlap
        may have been read by the server only then (its ``last_ts``; answered requests are
        out: the server had read them)."""
        if from_a != self.client_is_a:
            return
        end = off + nbytes
        for msg in self.pending:
            if msg.stream_start < end and off < msg.stream_end and ts > msg.ts:
                last = msg.last_ts
                if last is None or ts > last:
                    msg.last_ts = ts

    def _realign(self, response: HttpMessage) -> None:
        """After lost bytes, answer the latest request sent before this response.

        Responses to the older pending requests were in the lost bytes: those requests go out
        unanswered instead of being paired with answers that are not theirs.
        """
        while len(self.pending) > 1 and self.pending[1].ts <= response.ts:
            self._emit(self.pending.pop(0), None)

    def _emit(
        self,
        request: HttpMessage | None,
        response: HttpMessage | None,
        stream_id: int | None = None,
    ) -> None:
        info = self.info
        if self.client_is_a is False:
            client = (info.b_ip, info.b_port, info.a_ip, info.a_port)
        else:
            client = (info.a_ip, info.a_port, info.b_ip, info.b_port)
        midstream = not info.syn_seen
        self.on_exchange(Exchange(self.conn_id, *client, request, response, stream_id, midstream))
