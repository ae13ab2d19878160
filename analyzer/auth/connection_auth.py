"""Requests that an earlier NTLM / Negotiate logon on their connection authenticated.

NTLM authenticates a connection, not a request, and IIS keeps a Kerberos logon for the
connection too (``authPersistNonNTLM``): once the handshake's last leg is accepted, the client
sends its next requests on that connection without an ``Authorization`` header and the server
serves them as the same user. Each is an authenticated exchange all the same, so it becomes an
event of the handshake's scheme and user, with ``auth_header`` "connection" and the reason
"connection-auth". Without them, an NTLM handshake on ``/autodiscover/`` followed by header-less
``/EWS/`` calls would leave no EWS exchange for a verdict to judge. (An empty ``Bearer`` - the
realm-discovery probe - sends no credential either: it is taken the same way.)

Where the logon cannot be seen, requests sent without a credential and not refused (401, 403,
407) are a blind spot, ``connection-auth-unseen``, one per connection, with their paths so that
a path scope can rule it out:

- the capture joined the connection after it began (no SYN seen);
- the answer to the connection's last logon leg was not captured (a TCP hole, a capture of one
  direction only), so whether it was accepted is unknown;
- an archive that does not say which connection each entry used (a HAR without connection ids,
  a SAZ without client ports) holds an accepted or unanswered logon to the same server.

Only HTTP/1.x: HTTP/2 forbids connection-bound authentication. Memory: per open connection, the
few identity fields of its logon, or the first paths of its unseen requests; ``closed`` forgets
a connection, ``flush`` an archive's.
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
#: Why a connection's logon could not be seen, as a blind spot says it.
_WHY = {
    "midstream": "on a connection begun before the capture",
    "unanswered": "after a logon on their connection whose answer was not captured",
    "archive": "to a server an NTLM / Negotiate logon reached, in an archive that does not say "
    "which connection each entry used",
}


@dataclass(slots=True)
class _Unseen:
    """Requests sent without a credential where the logon that may cover them was not seen."""

    ts: float  # the first one's
    ends: tuple[str, int, str, int]  # client address and port, server address and port
    host: str | None  # the first one's Host
    why: str  # a key of _WHY
    count: int = 0
    paths: dict[str, None] = field(default_factory=dict)  # ordered, distinct
    overflowed: bool = False  # more than MAX_PATHS: its paths are unknown


class ConnectionAuth:
    """Follows the authentication of each HTTP/1.x connection as its exchanges complete."""

    __slots__ = ("_archive_logons", "_bound", "_unanswered", "_unseen")

    def __init__(self) -> None:
        self._bound: dict[str, dict] = {}  # conn_id -> the fields its requests inherit
        self._unanswered: set[str] = set()  # conn_ids whose last logon's answer is unknown
        self._unseen: dict[str, _Unseen] = {}
        # (server address, port) an archive's logon reached, entries not tied to connections
        self._archive_logons: set[tuple[str, int]] = set()

    def event(self, exchange: Exchange, event: Event | None, event_id: int) -> Event | None:
        """The event of ``exchange``: ``event`` (``build_event``'s, or None) as it is, or as a
        request its connection's logon authenticated."""
        req = exchange.request
        if exchange.stream_id is not None or req is None:
            return event
        if event is not None and _sent_credential(event):
            self._credential(exchange, event)
            return event
        resp = exchange.response
        status = resp.status if resp is not None else None
        if status in DENIED:
            return event
        conn_id = exchange.conn_id
        if not exchange.persistent:
            if (exchange.server_ip, exchange.server_port) in self._archive_logons:
                self._note_unseen(exchange, "archive")
            return event
        bound = self._bound.get(conn_id)
        if bound is not None:
            if event is None:
                fields = {**bound}
                if resp is not None:
                    fields["response_content_type"] = resp.header("content-type")
                return event_of(exchange, event_id, (REASON,), fields)
            return evolve(event, reasons=(*event.reasons, REASON), **bound)
        if conn_id in self._unanswered:
            self._note_unseen(exchange, "unanswered")
        elif exchange.midstream:
            self._note_unseen(exchange, "midstream")
        return event

    def closed(self, conn_id: str) -> NotInspected | None:
        """Forget a finished connection: its blind spot, if requests on it were sent without
        a credential where the logon that may cover them could not be seen."""
        self._bound.pop(conn_id, None)
        self._unanswered.discard(conn_id)
        unseen = self._unseen.pop(conn_id, None)
        return None if unseen is None else _record(conn_id, unseen)

    def flush(self) -> list[NotInspected]:
        """An archive was read to its end: the blind spots of its entries (their connections
        never close), and what it taught is forgotten."""
        out = [_record(conn_id, unseen) for conn_id, unseen in self._unseen.items()]
        self._unseen.clear()
        self._archive_logons.clear()
        return out

    def __len__(self) -> int:
        return len(self._bound) + len(self._unanswered) + len(self._unseen)

    def _credential(self, exchange: Exchange, e: Event) -> None:
        """A request that sent a credential: an accepted NTLM / Negotiate logon binds the
        connection to it, a refused one (or a leg answered by the next) leaves it unbound, and
        one whose answer was not captured leaves it unknown."""
        if e.scheme not in CONNECTION_SCHEMES or e.auth_header != "authorization":
            return
        conn_id = exchange.conn_id
        if not exchange.persistent:
            if e.status not in (401, 407):
                self._archive_logons.add((exchange.server_ip, exchange.server_port))
            return
        if e.status is None:
            if conn_id not in self._bound:
                self._unanswered.add(conn_id)
        elif e.status in (401, 407):
            self._bound.pop(conn_id, None)
            self._unanswered.discard(conn_id)
        elif e.ntlm_type != 1:  # a NEGOTIATE message answered without a challenge logs nobody on
            self._unanswered.discard(conn_id)
            self._bound[conn_id] = {
                **{name: getattr(e, name) for name in _INHERITED},
                "auth_header": "connection",
            }

    def _note_unseen(self, exchange: Exchange, why: str) -> None:
        req = exchange.request
        assert req is not None
        unseen = self._unseen.get(exchange.conn_id)
        if unseen is None:
            x = exchange
            ends = (x.client_ip, x.client_port, x.server_ip, x.server_port)
            unseen = _Unseen(req.ts, ends, req.header("host"), why)
            self._unseen[exchange.conn_id] = unseen
        unseen.count += 1
        if not unseen.overflowed:
            unseen.paths[redacted_path(req.uri)] = None
            if len(unseen.paths) > MAX_PATHS:
                unseen.overflowed = True
                unseen.paths.clear()


def _sent_credential(e: Event) -> bool:
    """Did the request send a real credential (not none, not the empty realm-discovery
    ``Bearer``, which a logged-on connection covers like no header at all)?"""
    return "credential" in e.reasons and not (e.scheme == "bearer" and e.cred_len == 0)


def _record(conn_id: str, unseen: _Unseen) -> NotInspected:
    n = unseen.count
    detail = (
        f"{n} request{'s' if n != 1 else ''} sent without a credential and not refused "
        f"{_WHY[unseen.why]}: an NTLM / Negotiate logon may have authenticated them"
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
