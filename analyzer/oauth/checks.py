"""The checks an expert runs on a decoded bearer token, as structured results.

Pure functions over a ``DecodedToken`` (and, for the actor layer, its ``actor_token``): layer
rules of Microsoft S2S tokens (outer unsigned, actor signed, outer ``iss`` = actor ``nameid``),
audience form and host, validity against the packet's capture time (never the wall clock),
lifetime, required claims and principal spelling. Signatures are checked elsewhere (``keys``).
"""

from __future__ import annotations

from dataclasses import dataclass

from analyzer.oauth.principals import Principal, parse_principal, principals_equal
from analyzer.oauth.tokens import DecodedToken, iso_utc
from analyzer.report.times import format_utc

MAX_LIFETIME = 24 * 3600  # Microsoft's longest S2S lifetime (self-issued and ACS actors)
CLOCK_SKEW = 300  # seconds of clock difference tolerated, as .NET token validation does


@dataclass(frozen=True, slots=True)
class Check:
    """One check: ``ok`` is True (passed), False (failed) or None (could not be decided)."""

    id: str  # stable identifier; failed ids become the event's token_flags
    ok: bool | None
    message: str

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "ok": self.ok, "message": self.message}


def check_token(
    token: DecodedToken,
    *,
    at: float | None = None,
    host: str | None = None,
    role: str = "bearer",
) -> list[Check]:
    """Every check of ``token`` (and of its actor layer, ids prefixed ``actor-``).

    ``at`` is the capture time of the request that carried the token; ``host`` its Host header
    ("" when the request named none; None for a token that was issued or asserted rather than
    presented to that host). ``role`` ``assertion`` marks a client assertion, which carries no
    ``nameid``.
    """
    return plan_checks(token, host=host, role=role).checks(at)


@dataclass(frozen=True, slots=True)
class CheckPlan:
    """``check_token`` split at the time of use: every check that does not depend on it is
    worked out once per token, Host and role; only ``not-yet-valid`` and ``expired`` are
    decided per use (``checks(at)``, ``failed(at)``).

    ``layers`` holds, per token layer in order: the checks before its nbf / exp checks, the
    token whose nbf / exp are checked (None: no such checks), the id prefix, the checks after.
    """

    token: DecodedToken
    layers: tuple[_Layer, ...]

    def checks(self, at: float | None, until: float | None = None) -> list[Check]:
        """Every check, in ``check_token``'s order, for a use at capture time ``at``; ``until``:
        the latest time the same use may have been judged (see ``failed``)."""
        out: list[Check] = []
        for before, timed, prefix, after in self.layers:
            out += before
            if timed is not None:
                out += _use_checks(timed, at, prefix, until)
            out += after
        return out

    def failed(self, at: float | None, until: float | None = None) -> tuple[str, ...]:
        """``failed(self.checks(at, until))``, without writing the messages of the per-use
        checks. A use that spans time - a request whose head's last bytes, or a later copy of
        them, came after its first byte - is judged at its start for nbf and at ``until`` for
        exp: the server read it at some time in between, so both ends must hold."""
        out: list[str] = []
        for before, timed, prefix, after in self.layers:
            out += [c.id for c in before if c.ok is False]
            if timed is not None and at is not None:
                if timed.nbf is not None and timed.nbf - at > CLOCK_SKEW:
                    out.append(f"{prefix}not-yet-valid")
                late_at = expiry_time(at, until)
                if timed.exp is not None and late_at - timed.exp > CLOCK_SKEW:
                    out.append(f"{prefix}expired")
            out += [c.id for c in after if c.ok is False]
        return tuple(out)


#: One layer of a ``CheckPlan``: (checks before, token timed, prefix, checks after).
_Layer = tuple[tuple[Check, ...], DecodedToken | None, str, tuple[Check, ...]]


def plan_checks(token: DecodedToken, *, host: str | None = None, role: str = "bearer") -> CheckPlan:
    """The checks of ``token`` that do not depend on the time of use (see ``CheckPlan``)."""
    if token.format in ("empty", "opaque", "cwt", "jwe"):
        only = Check("structure", None, f"{token.format} token: no claims to check")
        return CheckPlan(token, (((only,), None, "", ()),))
    checks: list[Check] = [_structure(token)]
    if token.claims is None:
        return CheckPlan(token, ((tuple(checks), None, "", ()),))
    actor = token.actor_token
    checks += _layers(token)
    if actor is not None and actor.claims is not None:
        checks.append(_issuer_matches_actor(token, actor))
        checks.append(_audience_matches_actor(token, actor))
    checks += _fixed_claims_checks(token, host, prefix="", role=role)
    layers = [_layer(checks, token, "")]
    if actor is not None and actor.claims is not None:
        inner = [_structure(actor, prefix="actor-")]
        inner += _fixed_claims_checks(actor, host, prefix="actor-", role="actor")
        layers.append(_layer(inner, actor, "actor-"))
    return CheckPlan(token, tuple(layers))


def _layer(checks: list[Check], token: DecodedToken, prefix: str) -> _Layer:
    """A layer's fixed checks, then its time checks: units, nbf / exp (per use), lifetime."""
    if token.time_notes:
        checks = [*checks, Check(f"{prefix}time-units", False, "; ".join(token.time_notes))]
    return tuple(checks), token, prefix, tuple(_lifetime_check(token, prefix))


def failed(checks: list[Check]) -> tuple[str, ...]:
    """Ids of the failed checks, in order: what an event carries as ``token_flags``."""
    return tuple(c.id for c in checks if c.ok is False)


# -- individual checks ---------------------------------------------------------------------
def _structure(token: DecodedToken, prefix: str = "") -> Check:
    if token.format == "malformed" or token.problems:
        detail = "; ".join(token.problems) or "does not decode"
        return Check(f"{prefix}decodes", False, f"decoding problems: {detail}")
    return Check(f"{prefix}decodes", True, f"{token.format}, alg {token.alg or '-'}")


def _layers(token: DecodedToken) -> list[Check]:
    actor = token.actor_token
    unsigned = token.format == "jwt-unsigned"
    if actor is None:
        if "actortoken" in (token.claims or {}):
            return [Check("actor-token", False, "actortoken claim does not decode as a JWT")]
        if unsigned:
            return [Check("signed", False, "unsigned token (alg none) without a signed actor")]
        return [Check("signed", True, f"signed with {token.alg}")]
    out = [
        Check(
            "outer-unsigned",
            unsigned,
            "outer (user context) token is unsigned, as S2S requires"
            if unsigned
            else "outer token is signed: Exchange rejects it (2001 user context must be unsigned)",
        )
    ]
    actor_signed = actor.format == "jwt"
    out.append(
        Check(
            "actor-signed",
            actor_signed,
            f"actor token is signed with {actor.alg}"
            if actor_signed
            else "actor token is not signed: Exchange rejects it (2002 actor must be signed)",
        )
    )
    return out


def _issuer_matches_actor(token: DecodedToken, actor: DecodedToken) -> Check:
    if token.iss is None or actor.nameid is None:
        return Check("issuer-matches-actor", False, "outer iss or actor nameid is missing")
    ok = token.iss == actor.nameid  # case-sensitive, as Exchange compares them
    message = (
        f"outer iss equals actor nameid ({token.iss})"
        if ok
        else f"outer iss '{token.iss}' differs from actor nameid '{actor.nameid}' (Exchange 2015)"
    )
    return Check("issuer-matches-actor", ok, message)


def _audience_matches_actor(token: DecodedToken, actor: DecodedToken) -> Check:
    if token.aud is None or actor.aud is None:
        return Check("audience-matches-actor", None, "outer or actor aud is missing")
    ok = principals_equal(token.aud, actor.aud)
    message = (
        "outer and actor audiences agree"
        if ok
        else f"outer aud '{token.aud}' differs from actor aud '{actor.aud}'"
    )
    return Check("audience-matches-actor", ok, message)


def _fixed_claims_checks(
    token: DecodedToken, host: str | None, prefix: str, role: str
) -> list[Check]:
    """A layer's claim checks but the time checks (which follow them)."""
    out = [_required(token, prefix, role)]
    out += _principal_checks(token, host, prefix)
    return out


def _required(token: DecodedToken, prefix: str, role: str) -> Check:
    """iss, aud and exp; nameid for an actor or an app-only S2S token; nbf for every S2S layer
    (without it, a signed actor's life is not bounded below: see ``_lifetime_check``). A claim
    that is null or empty counts as missing: ``"exp": null`` is a token that never expires."""
    claims = token.claims or {}
    needed = ["iss", "aud", "exp"]
    s2s_alone = role == "bearer" and _is_s2s(token) and token.actor_token is None
    if role == "actor" or s2s_alone:
        needed.append("nameid")
    if "actortoken" in claims or (role == "actor" and _is_s2s(token)) or s2s_alone:
        needed.append("nbf")
    missing = [name for name in needed if _absent(claims.get(name))]
    if missing:
        return Check(f"{prefix}required-claims", False, "missing claims: " + ", ".join(missing))
    return Check(f"{prefix}required-claims", True, "iss, aud and exp present")


def _absent(value: object) -> bool:
    """A claim not there, null, or empty (a string, list or object with nothing in it)."""
    return value is None or (isinstance(value, (str, list, dict)) and not value)


def _principal_checks(token: DecodedToken, host: str | None, prefix: str) -> list[Check]:
    out: list[Check] = []
    issues: list[str] = []
    for role, value in (("issuer", token.iss), ("nameid", token.nameid)):
        if value and "@" in value:
            issues += [f"{role}: {i}" for i in parse_principal(value, role=role).issues]
    aud = _audience(token)
    if aud is not None:
        issues += [f"audience: {i}" for i in aud.issues]
    form = _audience_form(token, aud)
    if form is not None:
        out.append(Check(f"{prefix}audience-form", *form))
    if aud is not None and aud.host and host is not None:  # "": the request named no host
        request_host = _strip_port(host)
        ok = aud.host.lower() == request_host.lower()
        if ok:
            message = f"audience host {aud.host} matches Host"
        elif request_host:
            message = f"audience host '{aud.host}' is not the request's Host '{request_host}'"
        else:
            message = f"audience host '{aud.host}' cannot be matched: the request named no host"
        out.append(Check(f"{prefix}audience-host", ok, message))
    out.append(
        Check(
            f"{prefix}principals",
            not issues,
            "principal strings well formed" if not issues else "; ".join(issues),
        )
    )
    return out


def _audience_form(token: DecodedToken, aud: Principal | None) -> tuple[bool, str] | None:
    """(ok, message) of the audience's form; None when there is nothing to judge (no S2S
    principal audience, and the token is not S2S: an Entra URL or GUID audience is its own
    form). An S2S token names one audience, ``<app id>/<host>@<realm>``: any other form, or
    several audiences, leaves its host and realm unjudged (only the first would be)."""
    s2s = _is_s2s(token)
    if s2s and len(token.audiences) > 1:
        return False, f"{len(token.audiences)} audiences: an S2S token names one"
    if aud is None:
        if s2s and token.aud:
            return False, (
                f"audience '{token.aud}' is not an S2S principal (<app id>/<host>@<realm>): "
                "its host and realm cannot be judged"
            )
        return None
    if aud.app_id and aud.host and aud.realm:
        return True, "audience has principal, host and realm"
    return False, f"audience '{aud.raw}' lacks " + _missing_parts(aud)


def _use_checks(
    token: DecodedToken, at: float | None, prefix: str, until: float | None = None
) -> list[Check]:
    """The checks that depend on the time of use: not before nbf at ``at``, not after exp at
    ``until`` when later (see ``CheckPlan.failed``), with the clock skew allowed."""
    out: list[Check] = []
    if at is not None and token.nbf is not None:
        early = token.nbf - at
        out.append(
            Check(
                f"{prefix}not-yet-valid",
                early <= CLOCK_SKEW,
                f"valid from {_iso(token.nbf)}"
                + (f" ({_span(early)} after this use: clock skew)" if early > 0 else "")
                if early <= CLOCK_SKEW
                else f"used {_span(early)} before nbf {_iso(token.nbf)}",
            )
        )
    if at is not None and token.exp is not None:
        late_at = expiry_time(at, until)
        late = late_at - token.exp
        # a request whose head came again (or ended) later: said, as the time judged is not ts
        copy = f" (the request's last copy, {_iso(late_at)})" if late_at != at else ""
        out.append(
            Check(
                f"{prefix}expired",
                late <= CLOCK_SKEW,
                f"valid until {_iso(token.exp)}"
                + (f" ({_span(-late)} left)" if late < 0 else f" (used {_span(late)} after)")
                + copy
                if late <= CLOCK_SKEW
                else f"used {_span(late)} after exp {_iso(token.exp)}{copy}",
            )
        )
    return out


def expiry_time(at: float, until: float | None) -> float:
    """When a use is judged for expiry: ``until`` (its request's last copy) when later than
    ``at`` (its first byte), else ``at`` - see ``CheckPlan.failed``."""
    return until if until is not None and until > at else at


def _iso(ts: float) -> str:
    """ISO 8601 UTC for a check message; ``<invalid time ...>`` past what a date can show."""
    return iso_utc(ts) or format_utc(ts)


def _lifetime_check(token: DecodedToken, prefix: str) -> list[Check]:
    """Lifetime within (0, 24 h]; an exp at or before the start is its own failure: such a token
    is never valid, which says more than "lives too long"."""
    start = token.nbf if token.nbf is not None else token.iat
    if start is None or token.exp is None:
        return []
    life = token.exp - start
    if life <= 0:
        named = "nbf" if token.nbf is not None else "iat"
        return [
            Check(
                f"{prefix}exp-before-nbf",
                False,
                f"exp {iso_utc(token.exp)} is not after {named} {iso_utc(start)}"
                f" ({_span(life)} earlier): the token is never valid",
            )
        ]
    return [
        Check(
            f"{prefix}lifetime",
            life <= MAX_LIFETIME,
            f"lifetime {_span(life)}"
            if life <= MAX_LIFETIME
            else f"lifetime {_span(life)} is outside (0, 24 h]",
        )
    ]


# -- helpers -------------------------------------------------------------------------------
def _is_s2s(token: DecodedToken) -> bool:
    """A Microsoft S2S principal-form token (``id@realm`` issuer)."""
    return bool(token.iss and "@" in token.iss and "://" not in token.iss)


def _audience(token: DecodedToken) -> Principal | None:
    if not token.aud or "@" not in token.aud or "://" in token.aud:
        return None  # not the S2S principal form (e.g. an Entra v2 api:// or GUID audience)
    return parse_principal(token.aud, role="audience")


def _missing_parts(aud: Principal) -> str:
    parts = [name for name, value in (("host", aud.host), ("realm", aud.realm)) if not value]
    return " and ".join(parts or ["principal id"])


def _strip_port(host: str) -> str:
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _span(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
