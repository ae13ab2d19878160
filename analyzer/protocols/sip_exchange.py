"""Pairs SIP requests with their final responses, over TCP connections and UDP flows.

SIP is not request-then-response on a connection the way HTTP/1.x is: both ends send requests
(a registrar's NOTIFY rides the connection its client opened), a request may be answered by
provisional responses (1xx) before its final one, and over UDP a request is retransmitted until
answered. A response is paired with its request by the transaction it names (RFC 3261 17: the
top Via's ``branch``, Call-ID and CSeq); provisional responses are skipped, retransmissions are
counted and not repeated. ACK has no response (it ends an INVITE transaction): it is not an
exchange. Requests never answered go out without a response when their connection ends, or
over UDP once their transaction has timed out.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from analyzer.flows.tcp import ConnectionInfo
from analyzer.protocols.sip import SipMessage, SipStream, parse_datagram, uri_host

MAX_PENDING = 1000  # unanswered transactions kept per connection or flow
DONE_KEPT = 256  # finished transactions remembered, so their retransmissions are recognised
#: A UDP transaction silent this long is over (64 * T1, RFC 3261 17.1.1.2 timer B) ...
TRANSACTION_TIMEOUT = 32.0
#: ... or, once a provisional response came, this long (a call may ring for minutes: timer C).
PROCEEDING_TIMEOUT = 200.0
EXPIRY_CHECK = 5.0  # seconds of capture time between looks for timed-out transactions


@dataclass(slots=True)
class SipExchange:
    """A request and its final response (either may be missing), on one connection or flow."""

    conn_id: str
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    transport: str  # tcp or udp (the engine marks decrypted TLS)
    request: SipMessage | None
    response: SipMessage | None
    retransmissions: int = 0  # copies of the request seen again (UDP)


@dataclass(slots=True)
class _Pending:
    request: SipMessage
    from_a: bool
    retransmissions: int = 0
    last_ts: float = 0.0  # the latest sign of life: the request, a retransmission, a 1xx
    proceeding: bool = False  # a provisional response came
    ports: tuple[int, int] | None = None  # (sender's, receiver's) port of the request datagram

    def deadline(self) -> float:
        return self.last_ts + (PROCEEDING_TIMEOUT if self.proceeding else TRANSACTION_TIMEOUT)


class SipTransactions:
    """Both directions of one connection or UDP flow (``info``: ``a`` sent the first packet),
    paired into exchanges handed to ``on_exchange``."""

    def __init__(
        self, info: ConnectionInfo, transport: str, on_exchange: Callable[[SipExchange], None]
    ) -> None:
        self.info = info
        self.conn_id = info.conn_id
        self.transport = transport
        self.on_exchange = on_exchange
        self.pending: OrderedDict[tuple, _Pending] = OrderedDict()
        self.done: OrderedDict[tuple, None] = OrderedDict()
        self.messages = 0
        self.client_is_a: bool | None = None  # the side that sent the first request was "a"
        self.host: str | None = None  # the latest request's domain, for blind-spot records
        self._next_check = 0.0

    def messages_from(
        self, from_a: bool, messages: list[SipMessage], ports: tuple[int, int] | None = None
    ) -> None:
        """Take the messages one side sent (in order); ``ports`` are (sender's, receiver's)
        when they may differ from the connection's (UDP)."""
        for msg in messages:
            self.messages += 1
            key = msg.transaction()
            if msg.is_request:
                self._request(msg, key, from_a, ports)
            elif msg.status >= 200:
                self._response(msg, key, from_a, ports)
            else:
                known = self.pending.get(key)
                if known is not None:
                    known.proceeding = True
                    known.last_ts = msg.ts

    def expire(self, now: float) -> None:
        """Give up on the transactions that timed out by ``now`` (looked at every few seconds)."""
        if now < self._next_check:
            return
        self._next_check = now + EXPIRY_CHECK
        for key in [k for k, p in self.pending.items() if p.deadline() < now]:
            self._finish(key, None)

    def finish(self) -> None:
        """The connection or flow ended: unanswered requests go out without a response."""
        while self.pending:
            self._finish(next(iter(self.pending)), None)

    def _request(
        self, msg: SipMessage, key: tuple, from_a: bool, ports: tuple[int, int] | None
    ) -> None:
        if self.client_is_a is None:
            self.client_is_a = from_a
        self.host = uri_host(msg.uri) or self.host
        if msg.method == "ACK":
            return
        known = self.pending.get(key)
        if known is not None:
            known.retransmissions += 1
            known.last_ts = msg.ts
            return
        if key in self.done:
            return  # a retransmission after the answer
        self.pending[key] = _Pending(msg, from_a, last_ts=msg.ts, ports=ports)
        if len(self.pending) > MAX_PENDING:
            self._finish(next(iter(self.pending)), None)

    def _response(
        self, msg: SipMessage, key: tuple, from_a: bool, ports: tuple[int, int] | None
    ) -> None:
        if key in self.pending:
            self._finish(key, msg)
        elif key not in self.done:
            self._remember(key)
            # its request was not seen: the response went from the server to the client
            self._emit(None, msg, not from_a, 0, ports[::-1] if ports else None)

    def _finish(self, key: tuple, response: SipMessage | None) -> None:
        pending = self.pending.pop(key)
        self._remember(key)
        self._emit(
            pending.request, response, pending.from_a, pending.retransmissions, pending.ports
        )

    def _remember(self, key: tuple) -> None:
        self.done[key] = None
        if len(self.done) > DONE_KEPT:
            self.done.popitem(last=False)

    def _emit(
        self,
        request: SipMessage | None,
        response: SipMessage | None,
        client_is_a: bool,
        retransmissions: int,
        ports: tuple[int, int] | None,
    ) -> None:
        info = self.info
        a = (info.a_ip, info.a_port)
        b = (info.b_ip, info.b_port)
        client, server = (a, b) if client_is_a else (b, a)
        if ports is not None:
            client, server = (client[0], ports[0]), (server[0], ports[1])
        self.on_exchange(
            SipExchange(
                self.conn_id, *client, *server, self.transport, request, response, retransmissions
            )
        )


class SipConnection:
    """A TCP connection (or decrypted TLS) carrying SIP: the reassembler's ``Connection``."""

    def __init__(
        self,
        info: ConnectionInfo,
        on_exchange: Callable[[SipExchange], None],
        on_close: Callable[[SipConnection], None] | None = None,
    ) -> None:
        self.info = info
        self.conn_id = info.conn_id
        self.on_close = on_close
        self.transactions = SipTransactions(info, "tcp", on_exchange)
        midstream = not info.syn_seen
        feed = self.transactions.messages_from
        self.a_to_b = SipStream(partial(feed, True), midstream=midstream)
        self.b_to_a = SipStream(partial(feed, False), midstream=midstream)

    @property
    def client_is_a(self) -> bool | None:
        return self.transactions.client_is_a

    @property
    def host(self) -> str | None:
        return self.transactions.host

    @property
    def requests_lost(self) -> int:
        """Stretches of either side's bytes that could not be read: in SIP both sides send
        requests, so either may have held a credential."""
        return self.a_to_b.lost + self.b_to_a.lost

    def finish(self, ts: float) -> None:
        self.transactions.finish()
        if self.on_close is not None:
            self.on_close(self)


class SipDatagrams:
    """A UDP flow carrying SIP: each datagram is one message (an ``analyzer.flows.udp.Flow``)."""

    def __init__(self, info: ConnectionInfo, on_exchange: Callable[[SipExchange], None]) -> None:
        self.info = info
        self.transactions = SipTransactions(info, "udp", on_exchange)

    def datagram(
        self,
        from_a: bool,
        payload: memoryview | bytes,
        ts: float,
        ports: tuple[int, int],
        frame: int = 0,
    ) -> None:
        msg = parse_datagram(payload, ts, frame)
        if msg is not None:
            self.transactions.messages_from(from_a, [msg], ports)
        if self.transactions.pending:
            self.transactions.expire(ts)

    def finish(self) -> None:
        self.transactions.finish()
