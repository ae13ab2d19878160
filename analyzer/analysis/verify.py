"""``verify``: did every authenticated exchange in scope use OAuth the way the policy says?

A policy rule scopes exchanges by client and server (address, network or Host name) and asks
for OAuth, optionally from a given issuer (id or product name), in a realm, with a verified
signature. PASS when every exchange in scope complies, FAIL with every one that does not,
INCONCLUSIVE when nothing in scope could be inspected.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from analyzer.model import CaptureStats, Event
from analyzer.oauth.principals import is_guid, parse_principal, resolve_app

PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"
RULE_KEYS = {"name", "client", "server", "issuer", "realm", "require_signature"}
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class PolicyError(ValueError):
    """A policy that cannot be applied (bad address, unknown issuer, unknown key)."""


@dataclass(frozen=True)
class Rule:
    """One verification rule."""

    name: str = "rule"
    client_nets: tuple[Network, ...] = ()
    server_nets: tuple[Network, ...] = ()
    server_hosts: tuple[str, ...] = ()
    issuer_ids: frozenset[str] = frozenset()  # lowercase app ids
    issuer_label: str | None = None
    realm: str | None = None
    require_signature: bool = False

    def describe(self) -> str:
        parts = []
        if self.client_nets:
            parts.append("from " + ", ".join(str(n) for n in self.client_nets))
        servers = [str(n) for n in self.server_nets] + list(self.server_hosts)
        if servers:
            parts.append("to " + ", ".join(servers))
        if self.issuer_label:
            parts.append(f"issuer {self.issuer_label}")
        if self.realm:
            parts.append(f"realm {self.realm}")
        if self.require_signature:
            parts.append("signature verified")
        return "; ".join(parts) or "all traffic"


@dataclass
class Violation:
    event: Event
    reason: str

    def to_dict(self) -> dict[str, Any]:
        e = self.event
        return {
            "event_id": e.event_id,
            "ts": e.ts,
            "client": f"{e.client_ip}:{e.client_port}",
            "server": f"{e.server_ip}:{e.server_port}",
            "host": e.host,
            "auth_class": e.auth_class,
            "status": e.status,
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule.name,
            "scope": self.rule.describe(),
            "result": self.result,
            "in_scope": self.in_scope,
            "compliant": self.compliant,
            "reason": self.reason,
            "violations": [v.to_dict() for v in self.violations],
        }


def make_rule(
    *,
    name: str = "rule",
    client: str | list[str] | None = None,
    server: str | list[str] | None = None,
    issuer: str | None = None,
    realm: str | None = None,
    require_signature: bool = False,
) -> Rule:
    """Build a rule from command-line or policy-file values; raises ``PolicyError``."""
    client_nets = tuple(_network(c) for c in _listed(client))
    server_nets: list[Network] = []
    server_hosts: list[str] = []
    for value in _listed(server):
        try:
            server_nets.append(_network(value))
        except PolicyError:
            server_hosts.append(value.lower())
    ids: frozenset[str] = frozenset()
    if issuer:
        ids = frozenset(resolve_app(issuer))
        if not ids:
            raise PolicyError(f"issuer {issuer!r}: not an app id or a known product name")
    if not isinstance(require_signature, bool):
        raise PolicyError("require_signature must be true or false")
    return Rule(
        name=name,
        client_nets=client_nets,
        server_nets=tuple(server_nets),
        server_hosts=tuple(server_hosts),
        issuer_ids=ids,
        issuer_label=issuer,
        realm=realm,
        require_signature=require_signature,
    )


def rules_from_policy(data: dict[str, Any]) -> list[Rule]:
    """Rules from a parsed policy file (``[[rule]]`` tables); raises ``PolicyError``."""
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
            raise PolicyError(f"rule {i}: unknown keys {', '.join(sorted(unknown))}")
        rules.append(make_rule(**{"name": f"rule {i}", **entry}))
    return rules


def evaluate(rule: Rule, events: list[Event], captures: list[CaptureStats]) -> RuleResult:
    """Check every authenticated exchange in the rule's scope."""
    scope = [e for e in events if _authenticated(e) and _in_scope(rule, e)]
    result = RuleResult(rule, PASS, in_scope=len(scope))
    if not scope:
        result.result = INCONCLUSIVE
        result.reason = _nothing_in_scope(rule, events, captures)
        return result
    for e in scope:
        problem = _violation(rule, e)
        if problem is None:
            result.compliant += 1
        else:
            result.violations.append(Violation(e, problem))
    if result.violations:
        result.result = FAIL
        result.reason = f"{len(result.violations)} of {len(scope)} exchanges break the rule"
    else:
        result.reason = f"all {len(scope)} authenticated exchanges used OAuth as required"
    return result


def overall(results: list[RuleResult]) -> str:
    """FAIL beats INCONCLUSIVE beats PASS."""
    outcomes = {r.result for r in results}
    for worst in (FAIL, INCONCLUSIVE):
        if worst in outcomes:
            return worst
    return PASS


# -- helpers -------------------------------------------------------------------------------
def _listed(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise PolicyError(f"expected a string or a list of strings, got {value!r}")


def _network(value: str) -> Network:
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        raise PolicyError(f"{value!r} is not an IP address or network") from exc


def _authenticated(e: Event) -> bool:
    return e.scheme != "none" and not (e.scheme == "bearer" and not e.cred_len)


def _in_scope(rule: Rule, e: Event) -> bool:
    if rule.client_nets and not _in_nets(e.client_ip, rule.client_nets):
        return False
    if rule.server_nets or rule.server_hosts:
        host = (e.host or "").lower().rsplit(":", 1)[0] if e.host else ""
        by_ip = _in_nets(e.server_ip, rule.server_nets)
        if not by_ip and host not in rule.server_hosts:
            return False
    return True


def _in_nets(address: str, nets: tuple[Network, ...]) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip.version == n.version and ip in n for n in nets)


def _violation(rule: Rule, e: Event) -> str | None:
    if e.auth_class != "oauth" and e.scheme != "bearer":
        return f"not OAuth: {e.auth_class or e.scheme}" + (f" as {e.user}" if e.user else "")
    if e.status in (401, 403):
        why = f" (x-ms-diagnostics {e.diag_code} {e.diag_category})" if e.diag_code else ""
        return f"OAuth token rejected by the server: {e.status}{why}"
    if rule.issuer_ids:
        issuers = [i for i in (e.token_iss, e.token_actor_iss) if i]
        if not issuers:
            return f"token issuer cannot be read ({e.token_format} token)"
        if not any(_app_id(i) in rule.issuer_ids for i in issuers):
            return f"issuer {e.token_iss} is not {rule.issuer_label}"
    if rule.realm and e.token_realm != rule.realm:
        return f"realm {e.token_realm or '(none)'} is not {rule.realm}"
    if rule.require_signature and e.token_signature != "verified":
        return f"signature {e.token_signature or 'not checked'}, verification required"
    return None


def _app_id(principal: str) -> str:
    app_id = parse_principal(principal).app_id.lower()
    return app_id if is_guid(app_id) else principal.lower()


def _nothing_in_scope(rule: Rule, events: list[Event], captures: list[CaptureStats]) -> str:
    authenticated = sum(1 for e in events if _authenticated(e))
    tls = sum(c.tls_connections for c in captures)
    parts = [f"no authenticated exchange matches {rule.describe()}"]
    if authenticated:
        parts.append(f"{authenticated} authenticated exchange(s) elsewhere in the capture")
    else:
        parts.append("the capture holds no readable authentication at all")
    if tls:
        parts.append(
            f"{tls} TLS connection(s) could not be read: capture behind the TLS terminator or "
            "decrypt with a key log"
        )
    return "; ".join(parts)
