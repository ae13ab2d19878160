"""Requests that an earlier NTLM / Negotiate handshake on their connection authenticated.

NTLM authenticates a connection, not a request, and IIS keeps a Kerberos logon for the
connection too (``authPersistNonNTLM``): once the handshake's last leg is accepted, the client
sends its next requests on that connection without an ``Authorization`` header and the server
serves them as the same user. Each is an authenticated exchange all the same, so it becomes an
event of the handshake's scheme and user, with ``auth_header`` "connection" and the reason
"connection-auth". Without them, an NTLM handshake on ``/autodiscover/`` followed by header-less
``/EWS/`` calls would leave no EWS exchange for a verdict to judge.

A connection the capture joined after it began (no SYN seen) may have been authenticated before
the capture: its requests answered without a credential and without a denial are a blind spot,
``connection-auth-unseen``, one per connection, with their paths so that a path scope can rule
it out.

Only HTTP/1.x: HTTP/2 forbids connection-bound authentication. Memory: per open connection, the
few identity fields of its handshake, or the first paths of its unseen requests; ``closed``
forgets a connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from analyzer.auth.extract import event_of, redacted_path
from analyzer.model import Event, NotInspected, evolve
from analyzer.protocols.http_exchange import Exchange

#: Schemes whose accepted handshake authenticates the connection it ran on.
CONNECTION_SCHEMES = ("ntlm", "negotiate")
#: Answers that deny a request (the connection's logon did not cover it, or is gone).
DENIED = (401, 403, 407)
REASON = "connection-auth"
UNSEEN = "connection-auth-unseen"
#: Distinct paths a blind spot lists; past them its paths are unknown (it covers any path).
MAX_PATHS = 16
#: The fields a request on an authenticated connection takes from the handshake's last leg.
_INHERITED = (
    "scheme",
    "scheme_name",
    "mechanism",
    "user",
    "domain",
    "raw_user",
    "raw_domain",
    "workstation",
)


@dataclass(slots=True)
class _Unseen:
    """Requests answered without a credential on a connection begun before the capture."""

    ts: float  # the first one's
    ends: tuple[str, int, str, int]  # client address and port, server address and port
    host: str | None  # the first one's Host
    count: int = 0
    paths: dict[str, None] = field(default_factory=dict)  # ordered, distinct
    overflowed: bool = False  # more than MAX_PATHS: its paths are unknown


class ConnectionAuth:
    """Follows the authentication of each HTTP/1.x connection as its exchanges complete."""

    __slots__ = ("_bound", "_unseen")

    def __init__(self) -> None:
        self._bound: dict[str, dict] = {}  # conn_id -> the fields its requests inherit
        self._unseen: dict[str, _Unseen] = {}

    def event(self, exchange: Exchange, event: Event | None, event_id: int) -> Event | None:
        """The event of ``exchange``: ``event`` (``build_event``'s, or None) as it is, or as a
        request its connection's logon authenticated."""
        if exchange.stream_id is not None or not exchange.persistent:
            return event
        conn_id = exchange.conn_id
        if event is not None and "credential" in event.reasons:
            self._credential(conn_id, event)
            return event
        req, resp = exchange.request, exchange.response
        status = resp.status if resp is not None else None
        if req is None or status in DENIED:
            return event
        bound = self._bound.get(conn_id)
        if bound is not None:
            if event is None:
                fields = {**bound}
                if resp is not None:
                    fields["response_content_type"] = resp.header("content-type")
                return event_of(exchange, event_id, (REASON,), fields)
            return evolve(event, reasons=(*event.reasons, REASON), **bound)
        if exchange.midstream and status is not None and 200 <= status < 400:
            self._note_unseen(exchange)
        return event

    def closed(self, conn_id: str) -> NotInspected | None:
        """Forget a finished connection: its blind spot, if requests on it were answered
        without a credential before its logon could be seen."""
        self._bound.pop(conn_id, None)
        unseen = self._unseen.pop(conn_id, None)
        if unseen is None:
            return None
        n = unseen.count
        detail = (
            f"{n} request{'s' if n != 1 else ''} answered without a credential on a connection "
            "begun before the capture: an NTLM / Negotiate logon before it may have "
            "authenticated them"
        )
        return NotInspected(
            UNSEEN,
            conn_id,
            unseen.ts,
            *unseen.ends,
            host=unseen.host,
            count=n,
            detail=detail,
            paths=() if unseen.overflowed else tuple(unseen.paths),
        )

    def __len__(self) -> int:
        return len(self._bound) + len(self._unseen)

    def _credential(self, conn_id: str, e: Event) -> None:
        """A request that sent a credential: an accepted NTLM / Negotiate logon binds the
        connection to it; a refused one (or a leg answered by the next) leaves it unbound."""
        if e.scheme not in CONNECTION_SCHEMES or e.auth_header != "authorization":
            return
        if e.status is None:
            return  # not known whether it was accepted
        if e.status in (401, 407):
            self._bound.pop(conn_id, None)
        elif e.ntlm_type != 1:  # a NEGOTIATE message answered without a challenge logs nobody on
            self._bound[conn_id] = {
                **{name: getattr(e, name) for name in _INHERITED},
                "auth_header": "connection",
            }

    def _note_unseen(self, exchange: Exchange) -> None:
        req = exchange.request
        assert req is not None
        unseen = self._unseen.get(exchange.conn_id)
        if unseen is None:
            ends = (
                exchange.client_ip,
                exchange.client_port,
                exchange.server_ip,
                exchange.server_port,
            )
            unseen = _Unseen(req.ts, ends, req.header("host"))
            self._unseen[exchange.conn_id] = unseen
        unseen.count += 1
        if not unseen.overflowed:
            unseen.paths[redacted_path(req.uri)] = None
            if len(unseen.paths) > MAX_PATHS:
                unseen.overflowed = True
                unseen.paths.clear()
