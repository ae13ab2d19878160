"""``verify``: did every authenticated exchange in scope use OAuth the way the policy says?

A rule scopes exchanges (``analysis.scope``) and asks for OAuth, optionally from given issuers
(app id, product name, or ``<id>[/<host>]@<realm>`` exactly as tokens print them), in given
realms, with a verified signature. An admin signs off on the answer, so it errs towards
INCONCLUSIVE, never towards PASS:

- FAIL lists every exchange that breaks the rule: not OAuth, refused by the server, the wrong
  issuer or realm, or a credential with a serious problem (unsigned, bad signature, expired yet
  accepted, not yet valid, never valid, untrusted issuer) unless the rule relaxes it (``allow``).
- INCONCLUSIVE when nothing in scope could be inspected, or when traffic in scope could not be
  read (undecrypted TLS, lost request bytes) - unless ``partial`` and something was inspected.
- PASS states its coverage: how many exchanges, over what time, and the capture's damage.

A rule judges HTTP unless it names its protocols (``--protocol sip``, a policy's ``protocol``):
Skype for Business users rightly sign in to SIP with NTLM, Kerberos or TLS-DSK, so SIP is judged
only when asked.

The legs of one NTLM / Negotiate handshake are one exchange here, as in the pair verdicts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from analyzer.analysis.coverage import Coverage, damage
from analyzer.analysis.credentials import CREDENTIAL_RULES, TrustedIssuers, problems
from analyzer.analysis.handshakes import DENIED, is_continuation, presented
from analyzer.analysis.scope import (
    HostsSeen,
    Scope,
    ScopeError,
    addresses_by_host,
    bare_host,
    event_accounts,
    ip_literal,
    listed,
    make_scope,
    request_path,
    served,
)
from analyzer.model import CaptureStats, Event, NotInspected
from analyzer.oauth.principals import (
    APP_ALIASES,
    STS_APP_IDS,
    WELL_KNOWN_APPS,
    is_guid,
    parse_principal,
    resolve_app_exact,
)
from analyzer.words import plural

PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"
SCOPE_KEYS = ("client", "server", "host", "path", "user", "since", "until")
RULE_KEYS = {
    "name",
    *SCOPE_KEYS,
    "protocol",
    "issuer",
    "realm",
    "require_signature",
    "allow",
    "partial",
}
#: What a rule's ``protocol`` may name: every HTTP version, SIP, or one HTTP version exactly.
PROTOCOLS = ("http", "sip")
DEFAULT_PROTOCOLS = ("http",)
#: Violation kinds, in the order they are judged and listed.
KINDS = (
    "not-oauth",
    "unsigned",
    "bad-signature",
    "expired",
    "not-yet-valid",
    "never-valid",
    "untrusted-issuer",
    "rejected",
    "invalid-token",
    "wrong-issuer",
    "wrong-realm",
    "signature-not-verified",
)
SERVERS_SEEN = 10  # servers listed when nothing matches a scope
_KIND_OF_RULE = {
    "unsigned-token": "unsigned",
    "bad-signature": "bad-signature",
    "token-expired-use": "expired",
    "token-not-yet-valid": "not-yet-valid",
    "token-exp-before-nbf": "never-valid",
    "untrusted-issuer": "untrusted-issuer",
}


#: Failed token checks (``oauth.checks`` ids, also ``actor-`` prefixed) that void a rule's claim
#: about the token (issuer, realm, signature), and what each means; with the finding id that
#: ``allow`` relaxes it by, where a finding reports it.
_INVALID_CHECKS = {
    "issuer-matches-actor": (
        "the unsigned outer token's iss is not the signed actor token's nameid",
        None,
    ),
    "audience-matches-actor": ("the outer and actor tokens name different audiences", None),
    "decodes": ("a claim cannot be read (of the wrong type: see decode)", None),
    "required-claims": ("a required claim is missing (iss, aud, exp, nameid or nbf)", None),
    "time-units": ("its time claims cannot be read as times", None),
    "audience-form": ("its audience is not one <app id>/<host>@<realm> principal", None),
    "principals": ("its principal strings are malformed", "malformed-principal"),
    "audience-host": ("its audience names another host", "audience-host-mismatch"),
    "lifetime": ("its lifetime is over 24 hours", "long-lived-token"),
}
#: The checks that the two layers of an S2S token name the same parties.
_LAYER_CHECKS = {"issuer-matches-actor", "audience-matches-actor"}
#: The checks that a token's claims are sound, judged after its issuer, realm and signature.
_CLAIM_CHECKS = set(_INVALID_CHECKS) - _LAYER_CHECKS
#: Finding ids ``allow`` may name: the credential problems, and the token checks above.
RELAXABLE = (*CREDENTIAL_RULES, *(f for _, f in _INVALID_CHECKS.values() if f))
#: Token flags that void a verified signature: its certificate was not valid at the time of use.
_KEY_NOT_VALID = {
    "signing-certificate-expired": "the certificate of the key that signed it had expired",
    "signing-certificate-not-yet-valid": "the certificate of the key that signed it was not yet "
    "valid",
}


class PolicyError(ValueError):
    """A policy that cannot be applied (bad address, unknown issuer, unknown key)."""


@dataclass(frozen=True, slots=True)
class IssuerSpec:
    """One accepted issuer: app ids, and the host and realm when the user named them."""

    text: str
    app_ids: frozenset[str]  # lower case
    host: str | None = None
    realm: str | None = None  # compared case-sensitively, as Microsoft's servers do; * = any

    def matches(self, principal: str) -> bool:
        p = parse_principal(principal)
        if p.app_id.lower() not in self.app_ids:
            return False
        if self.realm not in (None, "*") and p.realm != self.realm:
            return False
        return self.host is None or (p.host or "").lower() == self.host


def parse_issuer(value: str) -> IssuerSpec:
    """``skype``, ``00000004-…``, ``00000004-…@contoso.com`` or ``<id>/<host>@<realm>``."""
    text = value.strip()
    if text.count("@") > 1:
        raise PolicyError(f"issuer {value!r}: more than one @ (<id>[/<host>]@<realm>)")
    name, host, realm = text, None, None
    head, at, tail = text.rpartition("@") if "@" in text else (text, "", "")
    whole = resolve_app_exact(head)
    if whole and "/" in head and not is_guid(head.split("/", 1)[0].strip()):
        # a product name holding a "/" ("Skype for Business / Lync[@realm]"), not <id>/<host>
        if at and not tail.strip():
            raise PolicyError(f"issuer {value!r}: empty realm after @ (use @* for any realm)")
        return IssuerSpec(text, frozenset(whole), None, tail.strip() if at else None)
    if "@" in text or "/" in text:
        p = parse_principal(text)
        name, host, realm = p.app_id, (p.host.lower() if p.host else None), p.realm
        if "@" in text and not realm:
            raise PolicyError(f"issuer {value!r}: empty realm after @ (use @* for any realm)")
    ids = resolve_app_exact(name)
    if not ids and is_guid(name):
        ids = {name.lower()}
    if not ids:
        known = ", ".join(sorted({a for a in APP_ALIASES if "-" not in a}))
        raise PolicyError(
            f"issuer {value!r}: not an app id or a known product name (known names: {known}; "
            "or an app id, optionally as <id>@<realm>)"
        )
    return IssuerSpec(text, frozenset(ids), host, realm)


@dataclass(frozen=True)
class Rule:
    """One verification rule."""

    name: str = "rule"
    scope: Scope = field(default_factory=Scope)
    issuers: tuple[IssuerSpec, ...] = ()
    realms: tuple[str, ...] = ()
    require_signature: bool = False
    allow: frozenset[str] = frozenset()  # finding ids relaxed on purpose
    partial: bool = False  # PASS what was inspected even when in-scope traffic was not
    protocols: tuple[str, ...] = ()  # "http", "sip", "http/1.1", ...; empty: DEFAULT_PROTOCOLS

    def judges(self, e: Event) -> bool:
        """Is ``e`` of a protocol this rule judges?"""
        return self.judges_protocol(e.protocol)

    def judges_protocol(self, protocol: str) -> bool:
        """Does this rule judge ``protocol`` (``http/1.1``, ``sip``, ...)?"""
        return any(
            protocol == p or protocol.startswith(p + "/")
            for p in self.protocols or DEFAULT_PROTOCOLS
        )

    def describe(self) -> str:
        parts = [] if self.scope.describe() == "all traffic" else [self.scope.describe()]
        if self.protocols:
            parts.append("protocol " + ", ".join(self.protocols))
        if self.issuers:
            parts.append("issuer " + " or ".join(i.text for i in self.issuers))
        if self.realms:
            parts.append("realm " + " or ".join(self.realms))
        if self.require_signature:
            parts.append("signature verified")
        return "; ".join(parts) or "all traffic"


@dataclass
class Violation:
    """One exchange (for NTLM / Negotiate: one handshake's legs) that breaks a rule."""

    event: Event
    kind: str  # one of KINDS
    reason: str
    event_ids: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        e = self.event
        return {
            "event_id": e.event_id,
            "event_ids": list(self.event_ids or (e.event_id,)),
            "ts": e.ts,
            "client": f"{e.client_ip}:{e.client_port}",
            "server": f"{e.server_ip}:{e.server_port}",
            "host": e.host,
            "uri": e.uri,
            "auth_class": e.auth_class,
            "status": e.status,
            "kind": self.kind,
            "reason": self.reason,
        }


@dataclass
class RuleResult:
    rule: Rule
    result: str
    in_scope: int = 0
    compliant: int = 0
    violations: list[Violation] = field(default_factory=list)
    reason: str = ""
    coverage: Coverage = field(default_factory=Coverage)
    relaxed: dict[str, int] = field(default_factory=dict)  # allowed finding id -> exchanges

    def groups(self) -> list[dict[str, Any]]:
        """Violations by kind: how many, when, and a few distinct reasons."""
        out = []
        for kind in KINDS:
            group = [v for v in self.violations if v.kind == kind]
            if not group:
                continue
            reasons = list(dict.fromkeys(v.reason for v in group))
            out.append(
                {
                    "kind": kind,
                    "count": len(group),
                    "first_ts": min(v.event.ts for v in group),
                    "last_ts": max(v.event.ts for v in group),
                    "reasons": reasons[:3],
                    "more_reasons": max(0, len(reasons) - 3),
                }
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule.name,
            "scope": self.rule.describe(),
            "result": self.result,
            "in_scope": self.in_scope,
            "compliant": self.compliant,
            "reason": self.reason,
            "partial": self.rule.partial,
            "relaxed": dict(self.relaxed),
            "coverage": self.coverage.to_dict(),
            "violation_groups": self.groups(),
            "violations": [v.to_dict() for v in self.violations],
        }


def make_rule(
    *,
    name: str = "rule",
    issuer: str | list[str] | None = None,
    realm: str | list[str] | None = None,
    require_signature: bool = False,
    allow: str | list[str] | None = None,
    partial: bool = False,
    protocol: str | list[str] | None = None,
    **scope: Any,
) -> Rule:
    """Build a rule from command-line or policy-file values; raises ``PolicyError``."""
    try:
        protocols = tuple(p.lower() for p in listed(protocol, "protocol"))
        built_scope = make_scope(**scope)
        issuers = tuple(parse_issuer(i) for i in listed(issuer, "issuer"))
        realms = tuple(listed(realm, "realm"))
        allowed = frozenset(listed(allow, "allow"))
    except ScopeError as exc:
        raise PolicyError(str(exc)) from exc
    # an issuer or realm given empty (",", " ", []) must not quietly drop the constraint
    for what, given, got in (("issuer", issuer, issuers), ("realm", realm, realms)):
        if given is not None and not got:
            raise PolicyError(f"{what}: empty (name at least one, or leave the {what} out)")
    odd_realms = [r for r in realms if any(c.isspace() for c in r)]
    if odd_realms:
        raise PolicyError(f"realm {odd_realms[0]!r}: a realm holds no spaces")
    unknown = allowed - set(RELAXABLE)
    if unknown:
        raise PolicyError(
            f"allow: unknown finding id(s) {', '.join(sorted(unknown))} "
            f"(these can be relaxed: {', '.join(RELAXABLE)})"
        )
    odd = [p for p in protocols if p not in PROTOCOLS and not p.startswith("http/")]
    if odd:
        raise PolicyError(
            f"protocol: unknown {', '.join(odd)} (known: http, sip, or one HTTP version such "
            "as http/1.1)"
        )
    if built_scope.paths and protocols and all(p == "sip" for p in protocols):
        # a path narrows HTTP requests only (Scope.matches): it would narrow nothing here
        raise PolicyError(
            "path: a SIP request has no path, and this rule judges SIP only (leave the path "
            "out, or judge http too)"
        )
    for flag, value in (("require_signature", require_signature), ("partial", partial)):
        if not isinstance(value, bool):
            raise PolicyError(f"{flag} must be true or false")
    return Rule(
        name=name,
        scope=built_scope,
        issuers=issuers,
        realms=realms,
        require_signature=require_signature,
        allow=allowed,
        partial=partial,
        protocols=protocols,
    )


def rules_from_policy(
    data: dict[str, Any], allow: list[str] | None = None, partial: bool = False
) -> list[Rule]:
    """Rules from a parsed policy file (``[[rule]]`` tables); raises ``PolicyError``.

    ``allow`` and ``partial`` from the command line apply to every rule, on top of its own.
    """
    entries = data.get("rule")
    if not isinstance(entries, list) or not entries:
        raise PolicyError("the policy needs at least one [[rule]] table")
    unknown_top = set(data) - {"rule"}
    if unknown_top:
        raise PolicyError(f"unknown policy keys: {', '.join(sorted(unknown_top))}")
    rules = []
    for i, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            raise PolicyError(f"rule {i} is not a table")
        unknown = set(entry) - RULE_KEYS
        if unknown:
            raise PolicyError(
                f"rule {i}: unknown keys {', '.join(sorted(unknown))} "
                f"(known: {', '.join(sorted(RULE_KEYS))})"
            )
        values = {"name": f"rule {i}", **entry}
        try:
            values["allow"] = [*listed(entry.get("allow"), "allow"), *(allow or [])]
        except ScopeError as exc:
            raise PolicyError(f"rule {i}: {exc}") from exc
        values["partial"] = entry.get("partial", False) or partial
        try:
            rules.append(make_rule(**values))
        except PolicyError as exc:
            raise PolicyError(f"rule {i}: {exc}") from exc
    return rules


def evaluate(
    rule: Rule,
    events: list[Event],
    captures: list[CaptureStats],
    not_inspected: list[NotInspected] | None = None,
    *,
    hosts: dict[str, frozenset[str]] | None = None,
    trust: TrustedIssuers | None = None,
) -> RuleResult:
    """Judge every authenticated exchange in the rule's scope, and say what could not be seen.

    ``hosts`` and ``trust``: what a stream learnt from events no longer in ``events`` (a host
    name's addresses, the servers' trusted issuers: ``Watch``), used with what ``events`` say.
    """
    judged = [e for e in events if rule.judges(e)]
    host_ips = addresses_by_host(judged)  # a SIP domain names no HTTP server, nor the reverse
    host_ips = _with_server_names(_joined(host_ips, hosts or {}), not_inspected or [])
    in_scope = [e for e in judged if rule.scope.matches(e, host_ips)]
    units = _exchanges([e for e in in_scope if presented(e)])
    blind = [
        n
        for n in not_inspected or []
        if rule.scope.covers(n, host_ips)
        and (n.protocol is None or rule.judges_protocol(n.protocol))
    ]
    result = RuleResult(rule, PASS, in_scope=len(units))
    result.coverage = Coverage(
        exchanges=len(units),
        unanswered=sum(1 for unit in units if unit[-1].status is None),
        first_ts=min((u[0].ts for u in units), default=None),
        last_ts=max((u[-1].ts for u in units), default=None),
        not_inspected=blind,
        damage=damage(captures),
    )
    trust = trust if trust is not None else TrustedIssuers(events)
    relaxed: Counter = Counter()
    for unit in units:
        kind, reason, allowed = _judge(rule, unit[-1], trust)
        relaxed.update(allowed)
        if kind is None:
            result.compliant += 1
        else:
            ids = tuple(e.event_id for e in unit)
            result.violations.append(Violation(unit[-1], kind, reason, ids))
    result.relaxed = dict(sorted(relaxed.items()))
    if not units:
        result.result = INCONCLUSIVE
        # what the rule's endpoints saw outside its paths and times explains the empty scope too
        around = replace(rule.scope, paths=(), since=None, until=None)
        seen = [e for e in judged if around.matches(e, host_ips)]
        result.reason = _nothing_inspected(rule, events, seen, blind, not_inspected or [])
    elif result.violations:
        result.result = FAIL
        result.reason = f"{len(result.violations)} of {len(units)} exchanges break the rule"
    elif blind and not rule.partial:
        result.result = INCONCLUSIVE
        result.reason = (
            f"all {len(units)} inspected exchanges used OAuth as required, but traffic in scope "
            "was not inspected (see below); pass --partial to accept what was inspected"
        )
    else:
        result.reason = f"all {len(units)} authenticated exchanges used OAuth as required"
        if blind:
            result.reason += " (partial: traffic in scope was not inspected, see below)"
    return result


def _with_server_names(
    host_ips: dict[str, frozenset[str]], not_inspected: list[NotInspected]
) -> dict[str, frozenset[str]]:
    """``host_ips`` with the addresses undecrypted TLS reached by server name (SNI): a server
    seen only through TLS still tells which address serves its name, so a cleartext request
    there under its short name or address stays in a scope naming it."""
    out = dict(host_ips)
    for n in not_inspected:
        if n.kind == "tls" and n.host:
            name = bare_host(n.host)
            out[name] = out.get(name, frozenset()) | {n.server_ip}
    return out


def warnings(results: list[RuleResult]) -> list[str]:
    """The capture's damage, once: every rule carries the same lines."""
    return list(dict.fromkeys(line for r in results for line in r.coverage.damage))


def overall(results: list[RuleResult]) -> str:
    """FAIL beats INCONCLUSIVE beats PASS."""
    outcomes = {r.result for r in results}
    for worst in (FAIL, INCONCLUSIVE):
        if worst in outcomes:
            return worst
    return PASS


#: Server addresses a ``Watch`` remembers per rule for records let go out of its scope that a
#: host name's address learnt later could bring into it; past this many, any is taken to.
MAYBE_ADDRESSES = 10_000
#: Signature states that a signing key fetched later may change (to verified, or to bad).
_KEY_PENDING = frozenset({"unknown-key", "untrusted-key"})


@dataclass
class _Lost:
    """What the records a stream let go (``EventCollector.on_evict``) mean for one rule."""

    violations: int = 0  # exchanges streamed as violations
    found: int = 0  # exchanges that broke it, judged only when let go
    compliant: int = 0  # exchanges judged compliant
    blind: int = 0  # blind spots in its scope
    # the server of each compliant token use -> the last event id when its first was let go: a
    # trusted_issuers list the server gives after that may make those uses violations
    first_use: dict[tuple[str, int], int] = field(default_factory=dict)
    # the first (lowest) event id of a compliant token use whose signature awaited a key
    first_unverified: int | None = None
    # address -> records out of scope when let go that a host name's address may bring in
    maybe: Counter = field(default_factory=Counter)
    maybe_overflow: bool = False


class Watch:
    """``verify`` over a stream (``live --verify``): each exchange judged the moment it completes.

    It judges with what was seen so far: the Host names' addresses and the servers' trusted
    issuers of earlier events, the token fields as streamed. The closing ``verdicts`` judge the
    events the stream kept with all the Watch learnt (``evaluate``: its ``hosts`` and ``trust``),
    which has the last word on them: a token whose key came later is verified there.

    A stream keeps only its most recent records (``Engine``'s ``keep``). What it lets go
    (``evicted``) is settled at once, per rule, in counters (memory stays bounded):

    - an exchange streamed as a violation, or found to be one now (in scope by a host name's
      address learnt since, an NTLM / Negotiate attempt never finished), fails the rule;
    - a blind spot in scope makes it INCONCLUSIVE (PASS with ``partial``), as a kept one does;
    - an exchange judged compliant, or a record out of scope, that what is learnt later could
      change (a server's trusted issuers, a signing key, a host name's address) makes it
      INCONCLUSIVE if that happens.
    """

    def __init__(self, rules: list[Rule], start: Callable[[], float | None] = lambda: None):
        """``start``: the time of the stream's first packet, which offsets (``--since +30s``)
        count from; asked when the first record arrives."""
        self.rules = rules
        self._start = start
        self._anchored = not any(r.scope.relative for r in rules)
        self.trust = TrustedIssuers()
        self.hosts = [HostsSeen() for _ in rules]  # per rule: of the protocols it judges
        self._names: dict[str, set[str]] = {}  # TLS server names of blind spots let go
        self._flagged: dict[int, list[int]] = {}  # kept event id -> the rules it broke
        self._open: set[int] = set()  # handshakes whose last leg seen was a continuation
        self._last = 0  # the last event id seen
        self._trust_changed: dict[tuple[str, int], int] = {}  # server -> event id of the change
        self._keys_seen = 0  # the last event id that carried a key document
        self.lost = [_Lost() for _ in rules]

    def event(self, e: Event) -> list[tuple[Rule, Violation]]:
        """The rules ``e`` breaks (empty for a compliant, out-of-scope or non-credential one).
        An NTLM / Negotiate leg answered by the next leg is judged with the leg that ends it."""
        self._anchor(e.ts)
        self._learn(e)
        if not presented(e):
            return []
        if is_continuation(e):
            if e.handshake_id is not None:
                self._open.add(e.handshake_id)
            return []
        if e.handshake_id is not None:
            self._open.discard(e.handshake_id)  # the handshake ended: judged with this leg
        out = []
        for i, rule in enumerate(self.rules):
            if not rule.judges(e) or not rule.scope.matches(e, self.hosts[i].addresses()):
                continue
            kind, reason, _allowed = _judge(rule, e, self.trust)
            if kind is not None:
                self._flagged.setdefault(e.event_id, []).append(i)
                out.append((rule, Violation(e, kind, reason, (e.event_id,))))
        return out

    def evicted(self, records: list) -> None:
        """Records the stream let go (events, blind spots; TLS records are ignored): settle what
        each means for every rule with what is known now (see the class)."""
        if not records:
            return
        self._anchor(records[0].ts)
        for n in records:
            if isinstance(n, NotInspected) and n.kind == "tls" and n.host:
                self._names.setdefault(bare_host(n.host), set()).add(n.server_ip)
        for i, rule in enumerate(self.rules):
            known = self._known(i)
            for record in records:
                if isinstance(record, Event):
                    self._evicted_event(i, rule, record, known)
                elif isinstance(record, NotInspected):
                    self._evicted_spot(i, rule, record, known)
        for record in records:
            if isinstance(record, Event):
                self._flagged.pop(record.event_id, None)
                if is_continuation(record) and record.handshake_id is not None:
                    self._open.discard(record.handshake_id)

    def verdicts(
        self, events: list[Event], captures: list[CaptureStats], not_inspected: list[NotInspected]
    ) -> list[RuleResult]:
        """Each rule's answer: the kept records judged with all the Watch learnt (``evaluate``),
        settled with what was let go (``settle``)."""
        self._anchor(None)
        results = [
            evaluate(rule, events, captures, not_inspected, hosts=self._known(i), trust=self.trust)
            for i, rule in enumerate(self.rules)
        ]
        return self.settle(results, not_inspected)

    def settle(
        self, results: list[RuleResult], not_inspected: list[NotInspected] | None = None
    ) -> list[RuleResult]:
        """The closing results (of the kept records, in rule order) with what was let go: FAIL
        for violations no longer kept, INCONCLUSIVE for what can no longer be judged."""
        for i, r in enumerate(results):
            lost = self.lost[i]
            broke = lost.violations + lost.found
            if broke and r.result == FAIL:
                r.reason += f"; {_broke(lost)}"
            elif broke:
                r.result = FAIL
                r.reason = _broke(lost)
            elif r.result != FAIL:
                hosts = _with_server_names(self._known(i), not_inspected or [])
                _unsure(r, self._unsure(i, hosts), lost)
                if r.result == PASS:
                    r.reason += self._cleared(i, r)
        return results

    # -- what the Watch learns and when --------------------------------------------------------
    def _anchor(self, fallback: float | None) -> None:
        """Anchor offsets (``--since +30s``) at the first packet, once it has been read."""
        if self._anchored:
            return
        first = self._start()
        first = fallback if first is None else first  # nothing read: offsets match nothing
        self.rules = [replace(r, scope=r.scope.anchored(first)) for r in self.rules]
        self._anchored = True

    def _learn(self, e: Event) -> None:
        self._last = e.event_id
        before = self.trust.entries(e)
        self.trust.add(e)
        if self.trust.entries(e) != before:
            self._trust_changed[(e.server_ip, e.server_port)] = e.event_id
        if e.document:
            self._keys_seen = e.event_id
        for i, rule in enumerate(self.rules):
            if rule.judges(e):
                self.hosts[i].add(e)

    def _known(self, i: int) -> dict[str, frozenset[str]]:
        """Host name -> addresses, for rule ``i``: of its events, and of TLS server names."""
        names = {name: frozenset(ips) for name, ips in self._names.items()}
        return _joined(self.hosts[i].addresses(), names)

    # -- records let go ------------------------------------------------------------------------
    def _evicted_event(
        self, i: int, rule: Rule, e: Event, known: dict[str, frozenset[str]]
    ) -> None:
        if not presented(e) or not rule.judges(e):
            return
        lost = self.lost[i]
        if i in self._flagged.get(e.event_id, ()):
            lost.violations += 1
            return
        if not rule.scope.matches(e, known):
            self._maybe(lost, rule, e, known)
            return
        if is_continuation(e) and e.handshake_id is not None and e.handshake_id not in self._open:
            return  # judged with the leg that ended its handshake
        kind, _reason, _allowed = _judge(rule, e, self.trust)
        if kind is not None:
            lost.found += 1
            return
        lost.compliant += 1
        lost.first_use.setdefault((e.server_ip, e.server_port), self._last)
        if e.token_signature in _KEY_PENDING and lost.first_unverified is None:
            lost.first_unverified = e.event_id

    def _evicted_spot(
        self, i: int, rule: Rule, n: NotInspected, known: dict[str, frozenset[str]]
    ) -> None:
        if n.protocol is not None and not rule.judges_protocol(n.protocol):
            return
        if rule.scope.covers(n, known):
            self.lost[i].blind += 1
        else:
            self._maybe(self.lost[i], rule, n, known)

    def _maybe(self, lost: _Lost, rule: Rule, record: Event | NotInspected, known: dict) -> None:
        """Remember the addresses of a record out of scope that a host name could bring in,
        were any of its addresses found to serve one of the rule's names."""
        names = _scope_names(rule)
        if not names:
            return  # its scope does not depend on what is learnt
        addresses = _addresses(record)
        worst = {name: known.get(name, frozenset()) | addresses for name in names}
        if isinstance(record, Event):
            could = rule.scope.matches(record, worst)
        else:
            could = rule.scope.covers(record, worst)
        if not could:
            return
        for address in addresses:
            if address in lost.maybe or len(lost.maybe) < MAYBE_ADDRESSES:
                lost.maybe[address] += 1
            else:
                lost.maybe_overflow = True

    # -- settling ------------------------------------------------------------------------------
    def _unsure(self, i: int, hosts: dict[str, frozenset[str]]) -> list[str]:
        """Why what was let go can no longer be judged for rule ``i`` ([] when it can)."""
        lost, why = self.lost[i], []
        names = _scope_names(self.rules[i])
        came_in = sum(
            n
            for address, n in lost.maybe.items()
            if any(served(address, hosts.get(name, frozenset())) for name in names)
        )
        if came_in or (lost.maybe_overflow and any(hosts.get(name) for name in names)):
            what = plural(came_in, "record") if came_in else "records"
            why.append(
                f"{what} out of scope when streamed, at an address later seen to serve a host "
                "name of the scope, were streamed but not kept for this summary: they cannot be "
                "judged"
            )
        trust = any(self._trust_changed.get(s, 0) > seen for s, seen in lost.first_use.items())
        keys = lost.first_unverified is not None and self._keys_seen > lost.first_unverified
        if trust or keys:
            what = "a server's trusted issuers" if trust else "a signing key"
            why.append(
                "exchanges judged compliant while streaming were streamed but not kept for this "
                f"summary, and {what} seen after them may change that: they cannot be judged "
                "again"
            )
        return why

    def _cleared(self, i: int, r: RuleResult) -> str:
        """What a PASS says of exchanges printed as violations while streaming that the closing
        judgement, knowing more (a signing key fetched after their use), finds compliant."""
        failed = {eid for v in r.violations for eid in v.event_ids}
        cleared = [eid for eid, rules in self._flagged.items() if i in rules and eid not in failed]
        if not cleared:
            return ""
        verb = "complies" if len(cleared) == 1 else "comply"
        return (
            f" ({plural(len(cleared), 'exchange')} printed as a violation while streaming "
            f"{verb} with what was seen later, such as a signing key fetched after its use)"
        )


def _broke(lost: _Lost) -> str:
    """Why a rule fails on exchanges no longer kept."""
    parts = []
    if lost.violations:
        parts.append(f"{lost.violations} exchanges broke the rule while streaming")
    if lost.found:
        parts.append(
            f"{lost.found} broke it as judged when the stream let them go (in scope by a host "
            "name's address learnt later, or an NTLM / Negotiate attempt never finished)"
        )
    return "; ".join(parts) + " (no longer kept for this summary)"


def _unsure(r: RuleResult, why: list[str], lost: _Lost) -> None:
    """Fold into ``r`` (PASS or INCONCLUSIVE) what the stream let go: ``why`` it can no longer
    be judged, the blind spots in its scope, how many exchanges were judged compliant."""
    lines = list(why)
    if lost.blind:
        lines.append(
            f"{plural(lost.blind, 'blind spot')} in scope (traffic not inspected) "
            f"{'was' if lost.blind == 1 else 'were'} streamed but not kept for this summary"
        )
    if r.result == PASS and (why or (lost.blind and not r.rule.partial)):
        r.result = INCONCLUSIVE
        r.reason = "; ".join(lines)
        if not why:
            r.reason += "; pass --partial to accept what was inspected"
    elif lines:
        r.reason += "; " + "; ".join(lines)
    if lost.compliant:
        r.reason += (
            f"; {plural(lost.compliant, 'exchange')} judged compliant while streaming "
            f"{'is' if lost.compliant == 1 else 'are'} no longer kept for this summary"
        )


def _scope_names(rule: Rule) -> set[str]:
    """The host names a rule's scope depends on learning the addresses of."""
    return {s.host for s in rule.scope.servers if s.host} | set(rule.scope.hosts)


def _addresses(record: Event | NotInspected) -> frozenset[str]:
    """The addresses that could serve a host name of a scope for ``record``: its server's, an
    IP literal it named as its host, and either end of a record without ports."""
    found = {record.server_ip}
    if isinstance(record, NotInspected) and not (record.client_port or record.server_port):
        found.add(record.client_ip)
    literal = ip_literal(bare_host(record.host)) if record.host else None
    if literal is not None:
        found.add(str(literal))
    return frozenset(a for a in found if a)


def _joined(
    a: dict[str, frozenset[str]], b: dict[str, frozenset[str]]
) -> dict[str, frozenset[str]]:
    """Host name -> addresses of both maps."""
    if not b:
        return a
    out = dict(a)
    for name, ips in b.items():
        out[name] = out.get(name, frozenset()) | ips
    return out


# -- judging one exchange ------------------------------------------------------------------
def _exchanges(creds: list[Event]) -> list[list[Event]]:
    """Credential events as exchanges: an NTLM / Negotiate leg answered by the next leg joins
    the exchange that continues its handshake."""
    units: list[list[Event]] = []
    waiting: dict[int | None, list[Event]] = {}
    for e in creds:
        key = e.handshake_id if e.handshake_id is not None else -e.event_id
        legs = waiting.pop(key, [])
        if is_continuation(e):
            waiting[key] = [*legs, e]
        else:
            units.append([*legs, e])
    units += waiting.values()  # a handshake the client never finished is an attempt all the same
    units.sort(key=lambda u: (u[-1].ts, u[-1].event_id))
    return units


def _judge(rule: Rule, e: Event, trust: TrustedIssuers) -> tuple[str | None, str, list[str]]:
    """(violation kind or None, reason, finding ids relaxed by ``allow``) for one exchange."""
    if e.scheme != "bearer":
        who = f"{e.domain}\\{e.user}" if e.domain and e.user else e.user
        what = f"not OAuth: {e.auth_class or e.scheme}"
        if e.scheme == "other" and e.scheme_name:
            what += f" ({e.scheme_name})"
        what += f" as {who}" if who else ""
        if e.auth_header == "connection":
            what += f" (no credential sent: the connection's earlier {e.scheme} logon covered it)"
        elif rule.scope.users and event_accounts(e) is None:
            what += " (its user cannot be read, so --user keeps it: it may be the account)"
        return "not-oauth", what, []
    found = problems(e, trust)
    relaxed = [p.rule_id for p in found if p.rule_id in rule.allow]
    serious = [p for p in found if p.rule_id not in rule.allow]
    answered = _answer(e)
    if serious:
        text = "; ".join(p.text for p in serious)
        if e.status in DENIED:
            text += f"; {answered}"
        return _KIND_OF_RULE[serious[0].rule_id], text, relaxed
    if e.status in DENIED:
        return "rejected", f"OAuth token refused: {answered}{_diagnosis(e)}", relaxed
    if not (rule.issuers or rule.realms or rule.require_signature):
        return None, "", relaxed
    # the rule vouches for the token: first, that its two layers name the same parties (the
    # issuer and realm judged next are read from them), last that its claims are sound
    invalid, _ = _invalid_token(e, rule.allow, _LAYER_CHECKS)  # no finding relaxes these
    if invalid:
        return "invalid-token", invalid, relaxed
    if rule.issuers:
        kind, why = _issuer_problem(rule, e)
        if kind:
            return kind, why, relaxed
    if rule.realms:
        wrong = _wrong_realm(rule.realms, e)
        if wrong is not None:
            return "wrong-realm", wrong, relaxed
    if rule.require_signature:
        why = _signature_problem(e)
        if why:
            return "signature-not-verified", why, relaxed
    invalid, allowed = _invalid_token(e, rule.allow, _CLAIM_CHECKS)
    relaxed += allowed
    if invalid:
        return "invalid-token", invalid, relaxed
    elsewhere = _audience_elsewhere(rule, e)
    if elsewhere and "audience-host-mismatch" in rule.allow:
        relaxed.append("audience-host-mismatch")
    elif elsewhere:
        return "invalid-token", elsewhere, relaxed
    return None, "", relaxed


def _audience_elsewhere(rule: Rule, e: Event) -> str:
    """Why the audience of ``e``'s token names another server than the rule's (when the rule
    names its servers or virtual hosts by name): a request reaches the named server by its
    address whatever Host it sends (``ScopeSpec``), so a token minted for another host, sent
    there with that Host or none, must not pass as a token for this server. "" otherwise."""
    names = {s.host for s in rule.scope.servers if s.host} | set(rule.scope.hosts)
    host = (e.token_aud_host or "").lower()
    if not names or not host or host in names:
        return ""
    listed = " or ".join(sorted(names))
    return (
        f"token: its audience names host {host}, not {listed} (if that is another name of the "
        "same server, name it too: --server / --host)"
    )


def _invalid_token(e: Event, allow: frozenset[str], checks: set[str]) -> tuple[str, list[str]]:
    """(what the failed ``checks`` of ``e``'s token say, "" if none failed; finding ids that
    ``allow`` relaxed)."""
    reasons, relaxed = [], []
    for flag in e.token_flags:
        actor = flag.startswith("actor-")
        check = flag.removeprefix("actor-")
        if check not in checks:
            continue
        text, finding = _INVALID_CHECKS[check]
        if finding is not None and finding in allow:
            relaxed.append(finding)
            continue
        reasons.append(("actor token: " if actor else "token: ") + text)
    return "; ".join(dict.fromkeys(reasons)), list(dict.fromkeys(relaxed))


def _answer(e: Event) -> str:
    diag = f" (x-ms-diagnostics {e.diag_code} {e.diag_category})" if e.diag_code else ""
    return f"server answered {e.status}{diag}"


def _diagnosis(e: Event) -> str:
    """What the tool itself sees wrong with a refused token, when it sees something."""
    flags = set(e.token_flags)
    notes = []
    if {"expired", "actor-expired"} & flags:
        notes.append("the token had expired")
    if "audience-host" in flags:
        notes.append(f"its audience names {e.token_aud_host}, not {e.host}")
    elif "actor-audience-host" in flags:  # the event does not carry the actor's audience
        notes.append(f"its actor token's audience names another host than {e.host}")
    if e.token_signature == "unknown-key":
        notes.append("no key to check its signature here")
    return f"; {', '.join(notes)}" if notes else ""


def _issuer_problem(rule: Rule, e: Event) -> tuple[str | None, str]:
    principals = _signed_issuers(e)
    if not principals:
        return "wrong-issuer", f"token issuer cannot be read ({e.token_format} token)"
    if any(spec.matches(p) for spec in rule.issuers for p in principals):
        return None, ""
    wanted = " or ".join(i.text for i in rule.issuers)
    shown = e.token_actor_iss or e.token_iss
    if e.token_iss and e.token_iss not in principals and _matches(rule, e.token_iss):
        return "wrong-issuer", (
            f"issuer {shown} is not {wanted}: only the unsigned outer token names "
            f"{e.token_iss}, and an actor token signed by another app than Microsoft's token "
            "service speaks for its own issuer alone"
        )
    same_app = [
        (spec, p)
        for spec in rule.issuers
        for p in principals
        if parse_principal(p).app_id.lower() in spec.app_ids
    ]
    if same_app:
        spec, p = same_app[0]
        got = parse_principal(p)
        if spec.realm not in (None, "*") and got.realm != spec.realm:
            return "wrong-realm", f"issuer {p}: {_realm_problem((spec.realm,), got.realm)}"
        return "wrong-issuer", f"issuer {p}: host {got.host or '(none)'} is not {spec.host}"
    return "wrong-issuer", f"issuer {shown} is not {wanted}"


def _signed_issuers(e: Event) -> list[str]:
    """The issuers a signature can stand behind: a single token's own; for an S2S token, its
    signed actor's, and the outer token's only when that actor was issued by Microsoft's token
    service (ACS / Entra), which issues actor tokens naming another app (the outer issuer,
    checked equal to the actor's nameid). An app's self-issued actor speaks for that app: an
    Exchange-signed actor naming Skype for Business is no Skype for Business token."""
    if not e.token_actor_iss:
        return [e.token_iss] if e.token_iss else []
    sts = "@" in e.token_actor_iss and (
        parse_principal(e.token_actor_iss).app_id.lower() in STS_APP_IDS
    )
    return [e.token_actor_iss, e.token_iss] if sts and e.token_iss else [e.token_actor_iss]


def _matches(rule: Rule, principal: str) -> bool:
    return any(spec.matches(principal) for spec in rule.issuers)


def _wrong_realm(wanted: tuple[str, ...], e: Event) -> str | None:
    """Why ``e``'s token is not of the realms ``wanted`` (None when it is): the realm of every
    principal it names - its issuer, the signed actor's issuer, its audience - must be one."""
    realms: list[str | None] = []
    for value in (e.token_iss, e.token_actor_iss, e.token_aud):
        if value and "@" in value and "://" not in value:
            realms.append(parse_principal(value).realm)
        elif value and value == e.token_aud:
            # an audience in no realm (a URL, a bare id) is not in one
            return f"its audience {value} names no realm: {_realm_problem(wanted, None)}"
    wrong = [r for r in realms if r not in wanted]
    if wrong or not realms:
        return _realm_problem(wanted, wrong[0] if wrong else None)
    return None


def _realm_problem(wanted: tuple[str, ...], realm: str | None) -> str:
    text = f"realm {realm or '(none)'} is not {' or '.join(wanted)}"
    if realm and any(realm.lower() == w.lower() for w in wanted):
        text += " (realms compare case-sensitively, as Exchange and SharePoint do)"
    return text


def _signature_problem(e: Event) -> str:
    """Why ``e``'s signature does not count as verified ("" when it does)."""
    status = e.token_signature or "not checked"
    if status == "verified":
        void = [text for flag, text in _KEY_NOT_VALID.items() if flag in e.token_flags]
        return f"signature verified, but {void[0]} at this use" if void else ""
    if status == "unsigned":
        return "token is unsigned, verification required"
    if status == "untrusted-key":
        return (
            f"signature verifies only with a key nothing ties to the issuer (from "
            f"{e.token_key_source or 'a captured document'}): pass --keys with the issuer's "
            "certificate, or capture the issuer's own metadata" + _metadata_hint(e)
        )
    if status != "unknown-key":
        return f"signature {status}, verification required"
    return (
        "no key to verify the signature: pass --keys with the issuer's certificate, or capture "
        "its metadata fetch" + _metadata_hint(e)
    )


def _metadata_hint(e: Event) -> str:
    """Where the issuer of ``e``'s token publishes its keys, when its principal says so."""
    issuer = e.token_actor_iss or e.token_iss
    if not issuer or "@" not in issuer:
        return ""
    p = parse_principal(issuer)
    app = p.app_id.lower()
    if app == "00000001-0000-0000-c000-000000000000" and p.realm:
        return f" (https://accounts.accesscontrol.windows.net/{p.realm}/metadata/json/1)"
    if app == "00000004-0000-0ff1-ce00-000000000000":
        return f" (https://<the Skype for Business pool of {p.realm}>/metadata/json/1)"
    if app == "00000002-0000-0ff1-ce00-000000000000":
        return f" (https://autodiscover.{p.realm}/autodiscover/metadata/json/1)"
    name = WELL_KNOWN_APPS.get(app)
    return f" ({name}'s metadata document)" if name else ""


# -- explaining an empty scope ---------------------------------------------------------------
def _nothing_inspected(
    rule: Rule,
    events: list[Event],
    in_scope: list[Event],
    blind: list[NotInspected],
    not_inspected: list[NotInspected],
) -> str:
    """Why there is nothing to judge, from what was seen: the scope's own unauthenticated
    traffic first, then blind spots, then what else the capture holds."""
    parts = [f"no authenticated exchange matches {rule.describe()}"]
    failed = Counter(
        (request_path(e.uri), e.status)
        for e in in_scope
        if "metadata" in e.reasons and (e.status is None or e.status >= 400)
    )
    issued = any(e.access_token_fp for e in in_scope)
    for (path, status), n in failed.most_common(3):
        answer = f"failed with {status}" if status is not None else "got no answer"
        parts.append(f"{n} metadata {'fetches' if n > 1 else 'fetch'} to {path} {answer}")
    errors = Counter(e.oauth_error for e in in_scope if e.oauth_error)
    for error, n in errors.most_common(3):
        parts.append(f"{plural(n, 'token request')} refused with {error}")
    if (failed or errors) and not issued:
        parts[-1] += ": no token was ever issued"
    challenged = [e for e in in_scope if e.scheme == "none" and e.challenges]
    probes = [e for e in in_scope if e.scheme == "bearer" and not presented(e)]
    if challenged or probes:
        offered = sorted({c.scheme for e in challenged + probes for c in e.challenges})
        parts.append(
            f"{plural(len(challenged) + len(probes), 'request')} "
            f"{'was' if len(challenged) + len(probes) == 1 else 'were'} challenged "
            f"(offering {', '.join(offered) or 'nothing'}) and no credential followed"
        )
    if blind:
        parts.append(f"{plural(len(blind), 'connection')} in scope could not be read")
    elsewhere_blind = Counter(n.kind for n in not_inspected if n not in blind)
    if elsewhere_blind["tls"]:
        parts.append(
            f"{plural(elsewhere_blind['tls'], 'TLS connection')} could not be read and may hold "
            "it: "
            "capture behind the TLS terminator or decrypt with --tls-keylog"
        )
    scoped = {e.event_id for e in in_scope}
    others = [
        e for e in events if presented(e) and not is_continuation(e) and e.event_id not in scoped
    ]
    elsewhere = [e for e in others if rule.judges(e)]
    unjudged = Counter(e.protocol.split("/", 1)[0] for e in others if not rule.judges(e))
    if elsewhere:
        parts.append(
            f"{plural(len(elsewhere), 'authenticated exchange')} elsewhere; servers seen: "
            + _servers_seen(elsewhere)
        )
    elif not in_scope and not unjudged:
        parts.append("the capture holds no readable authentication at all")
    for protocol, n in sorted(unjudged.items()):
        parts.append(
            f"{n} authenticated {protocol.upper()} exchange(s) not judged by this rule "
            f'(judge them with --protocol {protocol}, or protocol = "{protocol}" in a policy)'
        )
    return "; ".join(parts)


def _servers_seen(events: list[Event]) -> str:
    """The top servers by exchanges, named as ``--server`` accepts them."""
    counts = Counter(
        (bare_host(e.host) if e.host else None, e.server_ip, e.server_port) for e in events
    )
    shown = [
        f"{host + ' ' if host else ''}{ip}:{port} ({n})"
        for (host, ip, port), n in counts.most_common(SERVERS_SEEN)
    ]
    more = f", and {len(counts) - SERVERS_SEEN} more" if len(counts) > SERVERS_SEEN else ""
    return ", ".join(shown) + more
