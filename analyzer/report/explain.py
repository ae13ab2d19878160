"""``oauth-analyzer decode``: one token explained for a person, or as JSON for machines."""

from __future__ import annotations

import json
from typing import IO, Any

from analyzer.oauth.checks import Check, check_token
from analyzer.oauth.keys import KeyStore, verify_token
from analyzer.oauth.principals import parse_principal
from analyzer.oauth.tokens import DecodedToken, iso_utc
from analyzer.report.times import format_utc

PRINCIPAL_CLAIMS = {"iss": "issuer", "aud": "audience", "nameid": "nameid", "actor": "nameid"}
TIME_CLAIMS = ("iat", "nbf", "exp")


def clean_token_text(text: str) -> str:
    """Accept what people paste: a bare token, ``Bearer <token>`` or a whole header line."""
    text = text.strip()
    if ":" in text.split(" ", 1)[0] and text.lower().startswith(
        ("authorization:", "proxy-authorization:")
    ):
        text = text.split(":", 1)[1].strip()
    if text[:7].lower() == "bearer ":
        text = text[7:].strip()
    return text


def explain(
    token: DecodedToken,
    store: KeyStore,
    *,
    at: float,
    at_label: str,
    host: str | None,
    reveal_secrets: bool,
) -> dict[str, Any]:
    """Everything ``decode`` reports, as one JSON-ready dict."""
    checks = check_token(token, at=at, host=host)
    out: dict[str, Any] = {
        "fingerprint": token.fingerprint,
        "format": token.format,
        "size": token.size,
        "checked_at": iso_utc(at),
        "checked_at_source": at_label,
        "token": token.to_dict(reveal_secrets=reveal_secrets),
        "signature": verify_token(token, store).to_dict(),
        "checks": [c.to_dict() for c in checks],
    }
    if token.actor_token is not None:
        out["actor_signature"] = verify_token(token.actor_token, store).to_dict()
    return out


def write_explanation(
    token: DecodedToken,
    store: KeyStore,
    out: IO[str],
    *,
    at: float,
    at_label: str,
    host: str | None,
    reveal_secrets: bool,
    as_json: bool,
) -> None:
    """Write the explanation of ``token`` to ``out`` (text for people, or JSON)."""
    if as_json:
        data = explain(
            token, store, at=at, at_label=at_label, host=host, reveal_secrets=reveal_secrets
        )
        out.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        return
    out.write(f"Token fp={token.fingerprint}: {_format_name(token)}, {token.size:,} characters\n")
    if token.problems:
        out.write("Problems: " + "; ".join(token.problems) + "\n")
    _layer(token, "Outer token" if token.actor_token else "Token", out)
    if token.actor_token is not None:
        out.write("\n")
        _layer(token.actor_token, f"Actor token fp={token.actor_fp}", out)
    out.write("\nSignature\n")
    for label, layer in (("token", token), ("actor", token.actor_token)):
        if layer is not None:
            result = verify_token(layer, store)
            out.write(f"  {label:<6} {result.status}: {result.detail}\n")
            if result.key is not None:
                out.write(f"         key from {result.key.source.location}\n")
    out.write(f"\nChecks (times checked at {iso_utc(at)}, {at_label})\n")
    for check in check_token(token, at=at, host=host):
        out.write(f"  {_mark(check)} {check.id}: {check.message}\n")
    if reveal_secrets and token.text:
        out.write(f"\nToken text\n  {token.text}\n")


def _layer(token: DecodedToken, title: str, out: IO[str]) -> None:
    out.write(f"{title}\n")
    if token.header is not None:
        out.write(f"  header  {json.dumps(token.header, ensure_ascii=False)}\n")
    claims = token.to_dict(reveal_secrets=False).get("claims") or {}
    if not claims:
        out.write("  (no claims to show)\n")
        return
    width = max(8, *(len(name) for name in claims))
    start = token.nbf if token.nbf is not None else token.iat
    for name, value in claims.items():
        line = f"  {name:<{width}} {_value(value)}"
        note = _claim_note(name, value, token, start)
        out.write(line + (f"\n  {'':<{width}}   = {note}" if note else "") + "\n")


def _claim_note(name: str, value: Any, token: DecodedToken, start: float | None) -> str | None:
    if name in PRINCIPAL_CLAIMS and isinstance(value, str) and "@" in value:
        principal = parse_principal(value, role=PRINCIPAL_CLAIMS[name])
        text = principal.display()
        if principal.realm_kind not in ("none",):
            text += f" [realm: {principal.realm_kind}]"
        if principal.issues:
            text += " !! " + "; ".join(principal.issues)
        return text
    if name in TIME_CLAIMS:
        seconds = getattr(token, name)
        if seconds is None:
            return None
        text = iso_utc(seconds) or format_utc(seconds)
        if name == "exp" and start is not None:
            text += f" ({_hours(seconds - start)} after {'nbf' if token.nbf else 'iat'})"
        elif name == "nbf" and token.iat is not None:
            text += f" ({_hours(seconds - token.iat)} after iat)"
        return text
    return None


def _format_name(token: DecodedToken) -> str:
    names = {
        "jwt": f"signed JWT ({token.alg})",
        "jwt-unsigned": "unsigned JWT (alg none)",
        "jwe": f"encrypted JWT (JWE, {token.enc or 'enc ?'})",
        "cwt": "Lync / Skype for Business web ticket (cwt=)",
        "opaque": "opaque token (not a JWT)",
        "empty": "empty (the realm-discovery probe)",
        "malformed": "malformed JWT",
    }
    return names.get(token.format, token.format)


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 120 else text[:117] + "..."


def _hours(seconds: float) -> str:
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 3600:
        return f"{sign}{seconds / 60:.0f} min"
    return f"{sign}{seconds / 3600:.1f} h"


def _mark(check: Check) -> str:
    return {True: "[ok]  ", False: "[FAIL]", None: "[--]  "}[check.ok]
