"""The answer ``decode`` gives first: ``OK`` or ``PROBLEM``, in one line, with the reasons.

A token is a PROBLEM (exit 1) when any check fails (expired or not yet valid at ``--at``
included), a signature does not verify, the signing key is not among the keys given with
``--keys``, the verifying certificate was expired or not yet valid at ``--at``, or the token is of
a kind nothing can check offline (opaque, web ticket, encrypted). An unsigned token passes only
as the outer layer of an S2S token whose actor is signed (the token checks say so). Without
``--keys`` a signed token's signature is "not checked": a note that says which document would
verify it, not a problem. A certificate that expires within 30 days of ``--at`` is a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from analyzer.oauth.checks import Check
from analyzer.oauth.keys import SignatureResult, SigningKey, x5t_to_hex
from analyzer.oauth.principals import WELL_KNOWN_APPS, parse_principal
from analyzer.oauth.tokens import DecodedToken, iso_utc
from analyzer.report.key_hints import KeyHint, key_hint

__all__ = [
    "CERT_WARN_DAYS",
    "Reason",
    "Verdict",
    "certificate_notes",
    "judge",
    "span",
    "with_server_answer",
]

CERT_WARN_DAYS = 30
_UNCHECKABLE = {
    "opaque": "opaque token (not a JWT)",
    "cwt": "Lync / Skype for Business web ticket (cwt=)",
    "jwe": "encrypted token (JWE)",
    "empty": "empty token",
}


@dataclass(frozen=True, slots=True)
class Reason:
    """One reason behind a verdict: a stable ``id`` and a sentence for people."""

    id: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "message": self.message}


@dataclass(frozen=True, slots=True)
class Verdict:
    """``ok`` and the one-line text; ``problems`` make it fail, ``notes`` do not."""

    ok: bool
    line: str
    problems: tuple[Reason, ...] = ()
    notes: tuple[Reason, ...] = ()
    key_hint: KeyHint | None = None

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``verdict`` ok|problem, the line, the exit code and its reasons."""
        return {
            "verdict": "ok" if self.ok else "problem",
            "line": self.line,
            "exit_code": self.exit_code,
            "exit_reasons": [r.to_dict() for r in self.problems],
            "notes": [r.to_dict() for r in self.notes],
            "key_hint": (
                {"url": self.key_hint.url, "text": self.key_hint.text} if self.key_hint else None
            ),
        }


def judge(
    token: DecodedToken,
    checks: list[Check],
    signatures: list[tuple[str, DecodedToken, SignatureResult]],
    *,
    at: float,
    at_given: bool,
    keys_given: bool,
) -> Verdict:
    """The verdict on ``token`` from its ``checks`` and per-layer ``signatures``
    (``(prefix, layer, result)``, prefix ``""`` or ``"actor-"``) at time ``at``."""
    ref = "--at" if at_given else "now"
    problems: list[Reason] = []
    if token.format in _UNCHECKABLE:
        problems.append(
            Reason("not-checkable", f"{_UNCHECKABLE[token.format]}: nothing to check offline")
        )
    problems += [_check_reason(c, token, at, ref) for c in checks if c.ok is False]

    sig_problems, notes, sig_phrase, hint = _signature_reasons(signatures, at, ref, keys_given)
    problems = sig_problems + problems  # a forged or unverifiable token is the headline

    if problems:
        parts = [r.message for r in problems]
        if sig_phrase and not any("signature" in r.id or "key" in r.id for r in problems):
            parts.append(sig_phrase)
        parts += [n.message for n in notes if n.id.endswith("certificate-expiring")]
        line = "PROBLEM: " + "; ".join(parts)
    else:
        parts = [_who(token)]
        if sig_phrase:
            parts.append(sig_phrase)
        until = _valid_until(token)
        if until:
            parts.append(f"valid until {until}")
        line = "OK: " + ", ".join(parts)
        warnings = [n.message for n in notes if n.id.endswith("certificate-expiring")]
        if warnings:
            line += "; warning: " + "; ".join(warnings)
    return Verdict(not problems, line, tuple(problems), tuple(notes), hint)


def with_server_answer(verdict: Verdict, answers: list[str]) -> Verdict:
    """``verdict`` with the server's ``x-ms-diagnostics`` answers (pasted with the request)
    added as problems: a server that says it rejected the token outranks an offline OK."""
    if not answers:
        return verdict
    reasons = tuple(Reason("ms-diagnostics", f"the server answered {a}") for a in answers)
    problems = verdict.problems + reasons
    if verdict.ok:
        line = "PROBLEM: " + "; ".join(r.message for r in reasons)
        line += " (offline the token looks fine: " + verdict.line.removeprefix("OK: ") + ")"
    else:
        line = verdict.line + "; " + "; ".join(r.message for r in reasons)
    return replace(verdict, ok=False, line=line, problems=problems)


def certificate_notes(
    key: SigningKey, at: float, ref: str, prefix: str = ""
) -> tuple[list[Reason], list[Reason]]:
    """(problems, warnings) about the verifying certificate's validity at ``at``: expired or not
    yet valid is a problem, expiring within ``CERT_WARN_DAYS`` a warning."""
    problems: list[Reason] = []
    notes: list[Reason] = []
    name = _cert_label(key)
    if key.not_after is not None and key.not_after < at:
        problems.append(
            Reason(
                f"{prefix}certificate-expired",
                f"signing certificate {name} expired {span(at - key.not_after)} before {ref} "
                f"({iso_utc(key.not_after)})",
            )
        )
    elif key.not_before is not None and key.not_before > at:
        problems.append(
            Reason(
                f"{prefix}certificate-not-yet-valid",
                f"signing certificate {name} is valid only from {iso_utc(key.not_before)}, "
                f"{span(key.not_before - at)} after {ref}",
            )
        )
    elif key.not_after is not None and key.not_after - at <= CERT_WARN_DAYS * 86400:
        notes.append(
            Reason(
                f"{prefix}certificate-expiring",
                f"signing certificate {name} expires {span(key.not_after - at)} after {ref} "
                f"({iso_utc(key.not_after)})",
            )
        )
    return problems, notes


def span(seconds: float) -> str:
    """A duration for people: ``45 s``, ``12 min``, ``2 h 10 min``, ``3 days 4 h``."""
    seconds = abs(int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 3600:
        return f"{minutes} min"
    if seconds < 86400:
        rest = minutes % 60
        return f"{hours} h" + (f" {rest} min" if rest else "")
    rest = hours % 24
    return f"{days} day{'s' if days != 1 else ''}" + (f" {rest} h" if rest else "")


# -- helpers -------------------------------------------------------------------------------
def _signature_reasons(
    signatures: list[tuple[str, DecodedToken, SignatureResult]],
    at: float,
    ref: str,
    keys_given: bool,
) -> tuple[list[Reason], list[Reason], str, KeyHint | None]:
    """(problems, notes, phrase for the line, key hint) from each layer's signature result."""
    problems: list[Reason] = []
    notes: list[Reason] = []
    phrase = ""
    hint: KeyHint | None = None
    for prefix, layer, result in signatures:
        label = "actor token" if prefix else "token"
        if result.status == "bad-signature":
            message = f"{label} signature does not verify: {result.detail}"
            if result.key is not None and result.key.thumbprint:
                message += f" [thumbprint {result.key.thumbprint}]"
            problems.append(Reason(f"{prefix}bad-signature", message))
        elif result.status == "unknown-key":
            hint = key_hint(layer)
            if keys_given:
                missing = (
                    f"signing key {_key_ident(layer)} is not among the keys given"
                    if layer.x5t or layer.kid
                    else "names no key and none of the keys given verifies it"
                )
                problems.append(Reason(f"{prefix}unknown-key", f"{label} {missing}; {hint.text}"))
            else:
                phrase = f"signature not checked (no key: {hint.text})"
                notes.append(Reason(f"{prefix}signature-not-checked", phrase))
        elif result.status == "verified" and result.key is not None:
            phrase = f"signature verified ({layer.alg}, {_key_name(result.key)})"
            cert_problems, cert_notes = certificate_notes(result.key, at, ref, prefix)
            problems += cert_problems
            notes += cert_notes
    return problems, notes, phrase, hint


def _check_reason(check: Check, token: DecodedToken, at: float, ref: str) -> Reason:
    """A failed check as a sentence; the time checks say how far off ``--at`` is."""
    prefix = "actor-" if check.id.startswith("actor-") else ""
    layer = token.actor_token if prefix and token.actor_token is not None else token
    label = "actor token " if prefix else ""
    base = check.id.removeprefix(prefix)
    if base == "expired" and layer.exp is not None:
        return Reason(
            check.id,
            f"{label}expired {span(at - layer.exp)} before {ref} (exp {iso_utc(layer.exp)})",
        )
    if base == "not-yet-valid" and layer.nbf is not None:
        return Reason(
            check.id,
            f"{label}not valid until {span(layer.nbf - at)} after {ref} (nbf {iso_utc(layer.nbf)})",
        )
    return Reason(check.id, f"{check.id}: {check.message}")


def _who(token: DecodedToken) -> str:
    """``Skype for Business / Lync -> Exchange@contoso.com (mail.contoso.com)``; an actor from
    another issuer (ACS in hybrid) is named too: ``Exchange via Microsoft STS (...) -> ...``."""
    issuer = _issuer_name(token.iss)
    actor = token.actor_token
    if actor is not None and actor.iss and _issuer_name(actor.iss) != issuer:
        issuer += f" via {_issuer_name(actor.iss)}"
    return f"{issuer} -> {_audience_name(token.aud)}"


def _issuer_name(iss: str | None) -> str:
    if not iss:
        return "(no issuer)"
    principal = parse_principal(iss, role="issuer")
    if principal.app_id_kind == "url":
        return iss
    return principal.app_name or iss


def _audience_name(aud: str | None) -> str:
    if not aud:
        return "(no audience)"
    if "@" not in aud or "://" in aud:
        return WELL_KNOWN_APPS.get(aud.lower(), aud)
    principal = parse_principal(aud, role="audience")
    text = (principal.app_name or principal.app_id) + f"@{principal.realm}"
    return text + (f" ({principal.host})" if principal.host else "")


def _valid_until(token: DecodedToken) -> str | None:
    ends = [t.exp for t in (token, token.actor_token) if t is not None and t.exp is not None]
    return iso_utc(min(ends)) if ends else None


def _key_ident(layer: DecodedToken) -> str:
    """How the token names its key: ``thumbprint <hex> (x5t <b64url>)`` or ``kid ...``."""
    if layer.x5t:
        hexed = x5t_to_hex(layer.x5t)
        return f"thumbprint {hexed} (x5t {layer.x5t})" if hexed else f"x5t {layer.x5t}"
    return f"kid {layer.kid}"


def _key_name(key: SigningKey) -> str:
    thumb = key.thumbprint
    parts = [f"thumbprint {thumb}" if thumb else key.describe()]
    cn = _common_name(key.subject)
    if cn:
        parts.append(f"CN={cn}")
    return ", ".join(parts)


def _cert_label(key: SigningKey) -> str:
    cn = _common_name(key.subject)
    thumb = key.thumbprint or key.describe()
    return f"{thumb} (CN={cn})" if cn else thumb


def _common_name(subject: str | None) -> str | None:
    for part in (subject or "").split(","):
        name, _, value = part.partition("=")
        if name.strip().upper() == "CN":
            return value.strip()
    return None
