"""What is wrong with the credential one exchange presented: the rules ``verify`` and the
findings share, so a verdict and the findings can never disagree about the same token.

Each problem carries the id of the finding that reports it (``unsigned-token``,
``bad-signature``, ...), which is also the name ``verify --allow`` relaxes it by.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from analyzer.analysis.handshakes import presented
from analyzer.model import Event
from analyzer.oauth.principals import parse_principal, parse_trusted_issuers

#: Finding ids of the problems a credential can have, most serious first.
CREDENTIAL_RULES = (
    "unsigned-token",
    "bad-signature",
    "token-expired-use",
    "token-not-yet-valid",
    "token-exp-before-nbf",
    "untrusted-issuer",
)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a presented credential."""

    rule_id: str  # one of CREDENTIAL_RULES
    text: str  # for a person, one clause


def unsigned(e: Event) -> bool:
    """An unsigned token (or actor) that is not the outer token of a signed S2S pair."""
    return presented(e) and bool({"signed", "actor-signed"} & set(e.token_flags))


def bad_signature(e: Event) -> bool:
    return e.token_signature == "bad-signature"


def expired(e: Event) -> bool:
    return bool({"expired", "actor-expired"} & set(e.token_flags))


def not_yet_valid(e: Event) -> bool:
    return bool({"not-yet-valid", "actor-not-yet-valid"} & set(e.token_flags))


def exp_before_nbf(e: Event) -> bool:
    return bool({"exp-before-nbf", "actor-exp-before-nbf"} & set(e.token_flags))


def accepted(e: Event) -> bool:
    """The server answered the exchange with something other than a refusal."""
    return e.status is not None and e.status < 400


class TrustedIssuers:
    """The issuers each server said it trusts (``trusted_issuers`` of its Bearer challenges)."""

    def __init__(self, events: Iterable[Event] = ()) -> None:
        self._entries: dict[tuple[str, int], list[str]] = {}
        self._verdicts: dict[tuple, bool] = {}  # tokens are reused a lot
        for e in events:
            self.add(e)

    def add(self, e: Event) -> None:
        """Learn what ``e``'s Bearer challenges say (a stream learns as events arrive)."""
        for c in e.challenges:
            listed = c.params.get("trusted_issuers") if c.scheme == "bearer" else None
            if listed:
                entries = [p.raw for p in parse_trusted_issuers(listed)]
                self._entries[(e.server_ip, e.server_port)] = entries
                self._verdicts.clear()

    def entries(self, e: Event) -> list[str] | None:
        """The trusted issuers of ``e``'s server, None when it never said."""
        return self._entries.get((e.server_ip, e.server_port))

    def untrusted(self, e: Event) -> bool:
        """``e`` presented a token whose issuer its server does not list as trusted."""
        issuer = e.token_actor_iss or e.token_iss
        entries = self.entries(e)
        if not (entries and issuer and presented(e)):
            return False
        key = (e.server_ip, e.server_port, issuer)
        ok = self._verdicts.get(key)
        if ok is None:
            ok = self._verdicts[key] = any(_trusts(entry, issuer) for entry in entries)
        return not ok


def _trusts(entry: str, issuer: str) -> bool:
    want, got = parse_principal(entry), parse_principal(issuer)
    if want.app_id_kind == "url":
        # the listed URL without its wildcard, up to a path boundary: https://sts.windows.net/*/
        # trusts https://sts.windows.net/<tenant>/, not https://sts.windows.net.evil.test/
        stem, url = want.app_id.rstrip("*/").lower(), issuer.lower()
        return url == stem or url.startswith(stem + "/")
    return want.app_id.lower() == got.app_id.lower() and want.realm in ("*", got.realm)


def problems(e: Event, trust: TrustedIssuers) -> list[Problem]:
    """Every problem of the credential ``e`` presented, in ``CREDENTIAL_RULES`` order.

    An expired token counts here when the server accepted it, or when its answer was not
    captured or was a server error (5xx: it may have been accepted, the error coming after);
    a server that refused it did its job (the refusal is reported as such).
    """
    if not presented(e) or e.scheme != "bearer":
        return []
    out = []
    if unsigned(e):
        out.append(Problem("unsigned-token", f"unsigned token ({e.token_format}), not S2S"))
    if bad_signature(e):
        layer = "actor token" if e.token_actor_fp else "token"
        out.append(Problem("bad-signature", f"{layer} signature does not verify"))
    late = _late_copy(e) if expired(e) else ""
    if expired(e) and e.status is None:  # the answer was lost: it may have been accepted
        text = f"token expired{late}; the server's answer was not seen"
        out.append(Problem("token-expired-use", text))
    elif expired(e) and e.status >= 500:  # an error, not a refusal: it may have got past auth
        text = f"token expired{late}; the server answered {e.status}, an error, not a refusal"
        out.append(Problem("token-expired-use", text))
    elif expired(e) and accepted(e):
        out.append(Problem("token-expired-use", f"token expired{late}, yet accepted ({e.status})"))
    if not_yet_valid(e):
        out.append(Problem("token-not-yet-valid", "token used before its nbf (not yet valid)"))
    if exp_before_nbf(e):
        out.append(Problem("token-exp-before-nbf", "token's exp precedes its nbf: never valid"))
    if trust.untrusted(e):
        issuer = e.token_actor_iss or e.token_iss
        out.append(Problem("untrusted-issuer", f"issuer {issuer} is not in trusted_issuers"))
    return out


def _late_copy(e: Event) -> str:
    """When the request's head was last seen a second or more after its first byte (a TCP
    retransmission, a slow last segment, a second tap): both times, as expiry is judged at the
    later one."""
    last = e.request_last_ts
    if last is None or last - e.ts < 1.0:
        return ""
    return f" (by its request's last copy, {_clock(last)}; first sent {_clock(e.ts)})"


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%H:%M:%S UTC")
