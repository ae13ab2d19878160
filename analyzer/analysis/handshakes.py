"""Events -> handshakes -> one verdict per client -> server pair.

A handshake lives on one connection (SIP: in one security association, see
``analysis.sip_handshakes``): an optional challenge (an anonymous request answered
401/407, or Microsoft's realm-discovery probe, an empty ``Bearer`` answered by a Bearer
challenge), then credentials, then the outcome. NTLM and Negotiate continue across exchanges
while the server answers 401 with a continuation token of the same scheme. Consecutive accepted
exchanges of the same class on a keep-alive connection extend one handshake; a rejection or a
change of class starts a new one.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from analyzer.analysis.sip_handshakes import (
    association_key,
    call_key,
    opens,
    sip_class,
    sip_continues,
)
from analyzer.model import Event, Handshake, PairVerdict, evolve

DENIED = (401, 403, 407)
CHALLENGE = (401, 407)
MULTI_LEG = frozenset({"ntlm", "negotiate-ntlm", "kerberos"})  # connection-bound, several legs


def auth_class(event: Event) -> str | None:
    """The auth class of the credential an event sent (None when it sent none)."""
    if event.scheme == "none":
        return None
    if event.scheme == "bearer":
        return "oauth"
    if event.scheme == "negotiate":
        return {"kerberos": "kerberos", "ntlm": "negotiate-ntlm"}.get(
            event.mechanism or "", "other"
        )
    if event.scheme in ("basic", "ntlm", "digest"):
        return event.scheme
    return sip_class(event) if event.protocol == "sip" else "other"


def is_probe(event: Event) -> bool:
    """Microsoft realm discovery: an empty Bearer credential."""
    return event.scheme == "bearer" and event.cred_len == 0


@dataclass(slots=True)
class _Open:
    """A handshake being built."""

    auth_class: str
    events: list[Event] = field(default_factory=list)
    probe: bool = False

    @property
    def last(self) -> Event:
        return self.events[-1]

    def credentials(self) -> list[Event]:
        return [e for e in self.events if presented(e)]


def group_handshakes(
    events: list[Event], token_fields: list[dict] | None = None
) -> tuple[list[Event], list[Handshake]]:
    """Handshakes of ``events`` (in time order), and the events with handshake fields set.

    ``token_fields`` (one dict per event, from ``TokenAnalysis.event_fields``) are set in the
    same copy of each event, so an event is copied once, not once per stage; a handshake's
    token fingerprints are read from them.
    """
    if token_fields is None:
        token_fields = [{}] * len(events)
    elif len(token_fields) != len(events):
        raise ValueError("token_fields must hold one dict per event")
    token_fps = {
        e.event_id: fields.get("token_fp")
        for e, fields in zip(events, token_fields, strict=True)
        if fields
    }
    by_conn: dict[str, list[Event]] = defaultdict(list)
    sip: list[Event] = []
    for event in events:
        if event.protocol == "sip":
            sip.append(event)
        else:
            by_conn[event.conn_id].append(event)
    groups: list[_Open] = []
    for conn_events in by_conn.values():
        groups += _group_connection(conn_events)
    groups += _group_sip(sip)
    groups.sort(key=lambda g: (g.events[0].ts, g.events[0].event_id))
    handshakes = [_finish(i, g, token_fps) for i, g in enumerate(groups, 1)]
    assigned = {}
    for hs in handshakes:
        for event_id in hs.event_ids:
            assigned[event_id] = hs
    out = []
    for event, fields in zip(events, token_fields, strict=True):
        hs = assigned.get(event.event_id)
        if hs is not None:
            fields = {
                **fields,
                "handshake_id": hs.handshake_id,
                "auth_class": hs.auth_class,
                "outcome": exchange_outcome(event, hs),
            }
        out.append(evolve(event, **fields) if fields else event)
    return out, handshakes


def exchange_outcome(event: Event, handshake: Handshake) -> str:
    """What became of this one exchange of ``handshake``.

    The handshake's last exchange carries the handshake's outcome. An earlier one was a step:
    a challenge (the anonymous request, the realm-discovery probe, an NTLM / Negotiate leg the
    server answered with its next leg), a credential the server refused (then the client tried
    again), or a call accepted on a keep-alive connection.
    """
    if event.event_id == handshake.event_ids[-1]:
        return handshake.outcome
    if event.status is None:
        return "incomplete"
    if is_continuation(event) or (event.status in CHALLENGE and not presented(event)):
        return "challenged"
    return "rejected" if event.status in DENIED else "accepted"


def presented(event: Event) -> bool:
    """The request presented a real credential (not none, not the empty realm-discovery probe)."""
    return event.scheme != "none" and not is_probe(event)


def is_continuation(event: Event) -> bool:
    """An NTLM / Negotiate leg the server answered with the next leg: one step of a handshake,
    not an authenticated exchange of its own."""
    return presented(event) and _continues(event)


def _group_connection(events: list[Event]) -> list[_Open]:
    groups: list[_Open] = []
    current: _Open | None = None
    for e in events:
        group, new = _place(current, e)
        if group is None:
            continue  # a token-endpoint call or metadata fetch: not a handshake step
        if new:
            groups.append(group)
        current = group
    return groups


def _place(current: _Open | None, e: Event) -> tuple[_Open | None, bool]:
    """The handshake ``e`` belongs to, given the connection's open one (``current``), and
    whether it is a new one; (None, False) when ``e`` is not a handshake step."""
    cls = auth_class(e)
    if cls is None:
        if e.status not in DENIED and not e.challenges:
            return None, False
        return _Open("anonymous", [e]), True
    if is_probe(e):
        return _Open("oauth", [e], probe=True), True
    if current is not None and _joins(current, e, cls):
        if current.auth_class == "anonymous":
            current.auth_class = cls
        current.events.append(e)
        return current, False
    return _Open(cls, [e]), True


class HandshakeTracker:
    """Handshakes built as a stream's events arrive, one open handshake per connection.

    ``add`` gives each event its handshake fields as known when its exchange completes: the
    handshake's id (numbered as handshakes open), its class so far, and the exchange's outcome
    so far (an NTLM / Negotiate leg answered by the next leg is "challenged"; a file analysis
    calls the last such leg of a handshake "incomplete"). Memory: per open connection, the
    handshake's last event; ``closed`` forgets a connection.
    """

    def __init__(self) -> None:
        self._open: dict[str, tuple[int, _Open]] = {}  # conn_id -> (handshake id, handshake)
        self._sip = _SipOpen()  # SIP: security association or Call-ID -> (id, handshake)
        self.opened = 0  # handshakes numbered so far

    def add(self, event: Event) -> dict:
        """The handshake fields of ``event`` (empty when it is not a handshake step)."""
        if event.protocol == "sip":
            key, held = self._sip.find(event)
        else:
            key, held = event.conn_id, self._open.get(event.conn_id)
        group, new = _place(held[1] if held else None, event)
        if group is None:
            return {}
        if new or held is None:
            self.opened += 1
            held = (self.opened, group)
        if event.protocol == "sip":
            self._sip.put(key, held)
        else:
            self._open[event.conn_id] = held
        creds = group.credentials()
        # Joining looks at the last event only (every event that joins a handshake sent a
        # credential, so the last one says whether one was sent): keep just that.
        group.events = [event]
        outcome = "challenged" if is_continuation(event) else _outcome(group, creds)[0]
        return {"handshake_id": held[0], "auth_class": group.auth_class, "outcome": outcome}

    def closed(self, conn_id: str) -> None:
        self._open.pop(conn_id, None)  # a SIP association outlives its connections

    def __len__(self) -> int:
        return len(self._open) + len(self._sip.open)


def keep_handshake_ids(
    streamed: list[Event], events: list[Event], handshakes: list[Handshake]
) -> tuple[list[Event], list[Handshake]]:
    """Give the handshakes of a finished stream the ids its events were streamed with.

    ``group_handshakes`` numbers handshakes in time order; a stream numbered them as they
    opened. ``streamed`` are the events as streamed (same order as ``events``, which
    ``group_handshakes`` returned); a handshake keeps the id its first event carried.
    """
    was = {e.event_id: e.handshake_id for e in streamed}
    used = {h for h in was.values() if h is not None}
    spare = max(used, default=0)
    ids: dict[int, int] = {}
    taken: set[int] = set()
    for hs in handshakes:
        old = was.get(hs.event_ids[0])
        if old is None or old in taken:  # grouped otherwise than while streaming
            spare += 1
            old = spare
        ids[hs.handshake_id] = old
        taken.add(old)
    out_events = [
        e if e.handshake_id is None else evolve(e, handshake_id=ids[e.handshake_id]) for e in events
    ]
    out_hs = [evolve(h, handshake_id=ids[h.handshake_id]) for h in handshakes]
    return out_events, out_hs


def _joins(current: _Open, e: Event, cls: str) -> bool:
    """Does ``e`` (a credential of class ``cls``) continue the open handshake?"""
    creds = current.credentials()
    if not creds:  # only a challenge (or the probe) so far: the credential answers it
        return not current.probe or cls == "oauth"
    if current.auth_class != cls:
        return False
    if e.ntlm_type == 1:
        return False  # an NTLM NEGOTIATE message always opens a new handshake
    if _continues(current.last):
        return True  # NTLM / Negotiate leg after a 401 carrying a continuation token
    if current.last.status is None and cls in MULTI_LEG:
        return True  # the server's continuation was not captured; the client's next leg was
    last_ok = current.last.status is not None and current.last.status not in DENIED
    return last_ok and e.status is not None and e.status not in DENIED


def _continues(e: Event) -> bool:
    """A 401/407 that carries the next leg of a multi-leg scheme (NTLM type 2, SPNEGO; in SIP
    the gssapi-data of NTLM, Kerberos and TLS-DSK)."""
    if e.status not in CHALLENGE:
        return False
    if e.protocol == "sip":
        return sip_continues(e)
    return any(
        c.token68 and c.scheme in ("ntlm", "negotiate") and c.details.get("neg_state") != "reject"
        for c in e.challenges
    )


def _group_sip(events: list[Event]) -> list[_Open]:
    """SIP handshakes, each in its security association (or Call-ID): see ``_SipOpen``."""
    groups: list[_Open] = []
    found = _SipOpen(limit=None)
    for e in events:
        key, held = found.find(e)
        group, new = _place(held[1] if held else None, e)
        if group is None:
            continue
        if new:
            groups.append(group)
        found.put(key, (0, group) if new or held is None else held)
    return groups


class _SipOpen:
    """The open SIP handshake of each security association or Call-ID (at most ``limit``).

    ``find`` gives an event's key and the handshake open under it. An event that opens an
    association (its 401 named the ``opaque``) adopts the handshake still open under its
    Call-ID when that one holds only a challenge: the anonymous request that was answered by
    the offer of schemes.
    """

    def __init__(self, limit: int | None = 10_000) -> None:
        self.open: dict[tuple, tuple[int, _Open]] = {}
        self.limit = limit

    def find(self, e: Event) -> tuple[tuple, tuple[int, _Open] | None]:
        key = association_key(e)
        opening = opens(e) is not None  # a first leg: no earlier handshake of the key continues
        held = None if opening else self.open.get(key)
        if held is None and key[0] == "sa":
            waiting = self.open.get(call_key(e))
            if waiting is not None and not waiting[1].credentials():
                del self.open[call_key(e)]
                held = waiting
        return key, held

    def put(self, key: tuple, held: tuple[int, _Open]) -> None:
        self.open.pop(key, None)
        self.open[key] = held  # the most recently used last
        if self.limit is not None and len(self.open) > self.limit:
            del self.open[next(iter(self.open))]


def _finish(handshake_id: int, group: _Open, new_fps: dict[int, str | None]) -> Handshake:
    """The handshake of ``group``; ``new_fps`` holds the token_fp of events not yet carrying it."""
    events = group.events
    first, last = events[0], events[-1]
    creds = group.credentials()
    offered = []
    for e in events:
        for c in e.challenges:
            if c.scheme not in offered:
                offered.append(c.scheme)
    outcome, reason = _outcome(group, creds)
    rejected = next((e for e in reversed(events) if e.diag_code is not None), None)
    who = next((e for e in creds if e.user), None)
    realm = next((e.domain for e in creds if e.domain), None)  # e.g. a Kerberos ticket realm
    token_fps = []
    for e in creds:
        fp = new_fps.get(e.event_id, e.token_fp)
        if fp and fp not in token_fps:
            token_fps.append(fp)
    return Handshake(
        handshake_id=handshake_id,
        auth_class=group.auth_class,
        outcome=outcome,
        start_ts=first.ts,
        end_ts=last.response_ts or last.ts,
        conn_id=first.conn_id,
        client_ip=first.client_ip,
        server_ip=first.server_ip,
        server_port=first.server_port,
        host=first.host,
        event_ids=tuple(e.event_id for e in events),
        exchanges=len(creds),
        offered=tuple(offered),
        probe=group.probe,
        user=who.user if who else None,
        domain=who.domain if who else realm,
        token_fps=tuple(token_fps),
        final_status=last.status,
        diag_code=rejected.diag_code if rejected else None,
        diag_category=rejected.diag_category if rejected else None,
        reason=reason,
    )


def _outcome(group: _Open, creds: list[Event]) -> tuple[str, str]:
    last = group.events[-1]
    if not creds:
        what = "realm-discovery probe answered" if group.probe else "anonymous request answered"
        offered = ", ".join(sorted({c.scheme for c in last.challenges})) or "no scheme"
        return "challenged", f"{what} {last.status} offering {offered}; no credential followed"
    if last.status is None:
        return "incomplete", "no response to the last credential was captured"
    if _continues(last):
        return (
            "incomplete",
            f"server sent the next {group.auth_class} leg; the client never answered",
        )
    if last.status in DENIED:
        why = f" ({last.diag_code} {last.diag_category})" if last.diag_code is not None else ""
        return "rejected", f"credential answered {last.status}{why}"
    return "accepted", f"credential answered {last.status}"


# -- pair verdicts -------------------------------------------------------------------------
def pair_verdicts(events: list[Event], handshakes: list[Handshake]) -> list[PairVerdict]:
    """One verdict per (client, server, port, Host) that took part in a handshake.

    A handshake's pair is that of its first request, and its exchanges are counted there even
    when a later request on the keep-alive connection named another Host.
    """
    key_of = lambda x: (x.client_ip, x.server_ip, x.server_port, x.host)  # noqa: E731
    hs_by_pair: dict[tuple, list[Handshake]] = defaultdict(list)
    pair_of: dict[int, tuple] = {}
    for hs in handshakes:
        hs_by_pair[key_of(hs)].append(hs)
        pair_of[hs.handshake_id] = key_of(hs)
    events_by_pair: dict[tuple, list[Event]] = defaultdict(list)
    for e in events:
        if e.handshake_id in pair_of:
            events_by_pair[pair_of[e.handshake_id]].append(e)
    ordered = sorted(hs_by_pair, key=lambda k: (k[0], k[1], k[2], k[3] is not None, k[3] or ""))
    return [_verdict(key, events_by_pair[key], hs_by_pair[key]) for key in ordered]


def _verdict(key: tuple, events: list[Event], handshakes: list[Handshake]) -> PairVerdict:
    client_ip, server_ip, server_port, host = key
    creds = [e for e in events if presented(e)]
    # One exchange per authentication: an NTLM / Negotiate leg answered by the next leg is part
    # of the exchange that finishes the handshake, not one of its own.
    exchanges = [e for e in creds if not is_continuation(e)]
    classes = Counter(auth_class(e) for e in exchanges)
    per_class = Counter(h.auth_class for h in handshakes if h.exchanges)  # sent a credential
    oauth = [h for h in handshakes if h.auth_class == "oauth"]
    accepted = [h for h in oauth if h.outcome == "accepted"]
    rejected = [h for h in oauth if h.outcome == "rejected"]
    fallbacks = _fallbacks(handshakes)
    issuers = sorted({_issuer(e) for e in creds if e.token_iss})
    signatures = Counter(e.token_signature for e in exchanges if e.token_signature)
    other = {c for c in classes if c != "oauth"}
    if not creds:
        verdict = "unauthenticated"
    elif fallbacks:
        verdict = "oauth-with-fallback"
    elif classes.get("oauth") and not other:
        verdict = "oauth-only" if accepted else "oauth-rejected"
    elif not classes.get("oauth"):
        verdict = "no-oauth"
    else:
        verdict = "mixed"
    facts = _Facts(
        classes=classes,
        handshakes=per_class,
        rejected=rejected,
        fallbacks=fallbacks,
        fell_back_to=_fell_back_to(handshakes),
        issuers=issuers,
        connections=len({e.conn_id for e in creds}),
        without_oauth=_connections_without_oauth(creds),
    )
    return PairVerdict(
        client_ip=client_ip,
        server_ip=server_ip,
        server_port=server_port,
        host=host,
        verdict=verdict,
        summary=_summary(verdict, facts),
        exchanges=len(exchanges),
        classes=dict(sorted(classes.items())),
        handshakes=len(handshakes),
        handshake_classes=dict(sorted(Counter(h.auth_class for h in handshakes).items())),
        oauth_attempted=len(oauth),
        oauth_accepted=len(accepted),
        oauth_rejected=len(rejected),
        fallbacks=tuple(fallbacks),
        issuers=tuple(issuers),
        signatures=dict(sorted(signatures.items())),
        first_ts=min(h.start_ts for h in handshakes),
        last_ts=max(h.end_ts for h in handshakes),
        protocol="+".join(sorted({e.protocol.split("/", 1)[0] for e in events})) or "http",
    )


@dataclass(frozen=True, slots=True)
class _Facts:
    """What a pair's summary sentence is made of."""

    classes: Counter  # authenticated exchanges per class
    handshakes: Counter  # handshakes that sent a credential, per class
    rejected: list[Handshake]
    fallbacks: list[dict]
    fell_back_to: Counter  # accepted non-OAuth handshakes after the first OAuth rejection
    issuers: list[str]
    connections: int  # connections that carried a credential
    without_oauth: int  # ... of which never carried an OAuth token (nor the probe)


def _fallbacks(handshakes: list[Handshake]) -> list[dict]:
    """Each OAuth rejection followed by an accepted handshake of another class."""
    out = []
    ordered = sorted(handshakes, key=lambda h: h.start_ts)
    for i, hs in enumerate(ordered):
        if hs.auth_class != "oauth" or hs.outcome != "rejected":
            continue
        for later in ordered[i + 1 :]:
            if later.auth_class == "oauth":
                break
            if later.outcome == "accepted" and later.auth_class not in ("anonymous",):
                out.append(
                    {
                        "at": later.start_ts,
                        "rejected_handshake": hs.handshake_id,
                        "fallback_handshake": later.handshake_id,
                        "to_class": later.auth_class,
                        "reason": hs.diag_category or hs.reason,
                        "diag_code": hs.diag_code,
                    }
                )
                break
    return out


def _fell_back_to(handshakes: list[Handshake]) -> Counter:
    """Accepted handshakes of other classes after the pair's first OAuth rejection."""
    ordered = sorted(handshakes, key=lambda h: (h.start_ts, h.handshake_id))
    first = next(
        (i for i, h in enumerate(ordered) if h.auth_class == "oauth" and h.outcome == "rejected"),
        None,
    )
    if first is None:
        return Counter()
    return Counter(
        h.auth_class
        for h in ordered[first + 1 :]
        if h.outcome == "accepted" and h.auth_class not in ("oauth", "anonymous")
    )


def _connections_without_oauth(creds: list[Event]) -> int:
    """Connections on which the client sent credentials but never an OAuth token or probe."""
    tried: dict[str, bool] = {}
    for e in creds:
        tried[e.conn_id] = tried.get(e.conn_id, False) or e.scheme == "bearer"
    return sum(1 for oauth in tried.values() if not oauth)


def _issuer(e: Event) -> str:
    name = e.token_iss_app or e.token_iss or "?"
    realm = e.token_iss.rsplit("@", 1)[1] if e.token_iss and "@" in e.token_iss else None
    return f"{name}@{realm}" if realm and e.token_iss_app else name


def counted(counts: Counter, unit: str = "handshake") -> str:
    """``kerberos (5 handshakes), ntlm (4), basic (3)``: most first, the unit said once."""
    ordered = sorted(counts.items(), key=lambda x: (-x[1], x[0]))
    if not ordered:
        return f"no {unit}s"
    (name, n), rest = ordered[0], ordered[1:]
    first = f"{name} ({n} {unit if n == 1 else unit + 's'})"
    return ", ".join([first, *(f"{name} ({n})" for name, n in rest)])


def _summary(verdict: str, f: _Facts) -> str:
    total = sum(f.classes.values())
    issued = f", issuer {', '.join(f.issuers)}" if f.issuers else ""
    by = counted(f.handshakes)
    if verdict == "unauthenticated":
        return "challenged, but no credential was sent"
    if verdict == "oauth-only":
        return f"all {total} authenticated exchanges used OAuth{issued}"
    if verdict == "oauth-rejected":
        oauth = f.classes.get("oauth", 0)
        return (
            f"OAuth was attempted ({oauth} exchanges in {len(f.rejected)} handshakes) and "
            f"rejected{issued}"
        )
    if verdict == "oauth-with-fallback":
        first = f.fallbacks[0]
        why = f" ({first['diag_code']} {first['reason']})" if first["diag_code"] else ""
        return (
            f"OAuth was rejected{why} and the client fell back to {counted(f.fell_back_to)}; "
            f"all handshakes: {by}"
        )
    if verdict == "no-oauth":
        return f"no OAuth: {by}"
    never = (
        f"; the client never tried OAuth on {f.without_oauth} of {f.connections} connections"
        if f.without_oauth
        else ""
    )
    return f"mixed: {by}{issued}{never}"
