"""``oauth-analyzer decode``: one token explained for a person, or as JSON for machines."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import IO, Any

from analyzer.oauth.checks import Check, check_token
from analyzer.oauth.diagnostics import MsDiagnostic
from analyzer.oauth.keys import KeyStore, SignatureResult, SigningKey, verify_token, x5t_to_hex
from analyzer.oauth.principals import parse_principal
from analyzer.oauth.tokens import DecodedToken, iso_utc
from analyzer.report.decode_verdict import Verdict, certificate_notes, judge
from analyzer.report.diagnostics_text import diagnostic_to_dict, write_diagnostic
from analyzer.report.paste import Pasted
from analyzer.report.times import format_utc
from analyzer.words import plural

PRINCIPAL_CLAIMS = {"iss": "issuer", "aud": "audience", "nameid": "nameid", "actor": "nameid"}
TIME_CLAIMS = ("iat", "nbf", "exp")


@dataclass(frozen=True, slots=True)
class Explained:
    """One token worked through once: checks, per-layer signatures and the verdict."""

    token: DecodedToken
    checks: list[Check]
    signatures: list[tuple[str, DecodedToken, SignatureResult]]
    verdict: Verdict


def work_out(
    token: DecodedToken,
    store: KeyStore,
    *,
    at: float,
    at_given: bool,
    host: str | None,
) -> Explained:
    """Check ``token``, verify each signed layer against ``store`` and judge the result."""
    checks = check_token(token, at=at, host=host)
    signatures = [
        (prefix, layer, verify_token(layer, store))
        for prefix, layer in (("", token), ("actor-", token.actor_token))
        if layer is not None
    ]
    verdict = judge(token, checks, signatures, at=at, at_given=at_given, keys_given=len(store) > 0)
    return Explained(token, checks, signatures, verdict)


def explain(
    done: Explained,
    *,
    at: float,
    at_label: str,
    reveal_secrets: bool,
    pasted: Pasted | None = None,
    diagnostics: list[MsDiagnostic] | None = None,
) -> dict[str, Any]:
    """Everything ``decode`` reports, as one JSON-ready dict (the verdict first)."""
    token = done.token
    out: dict[str, Any] = {**done.verdict.to_dict(), "kind": "token"}
    out.update(
        {
            "fingerprint": token.fingerprint,
            "format": token.format,
            "size": token.size,
            "found_in": pasted.origin if pasted else None,
            "request": pasted.request if pasted else None,
            "host": pasted.host if pasted else None,
            "checked_at": iso_utc(at),
            "checked_at_source": at_label,
            "token": token.to_dict(reveal_secrets=reveal_secrets),
        }
    )
    for prefix, layer, result in done.signatures:
        name = "actor_signature" if prefix else "signature"
        out[name] = {**result.to_dict(), "token_x5t": _x5t_view(layer)}
        if result.key is not None:
            out[name]["key"]["thumbprint"] = result.key.thumbprint
    out["checks"] = [c.to_dict() for c in done.checks]
    if diagnostics:
        out["diagnostics"] = [diagnostic_to_dict(d) for d in diagnostics]
    return out


def write_explanation(
    done: Explained,
    out: IO[str],
    *,
    at: float,
    at_label: str,
    reveal_secrets: bool,
    pasted: Pasted | None = None,
    diagnostics: list[MsDiagnostic] | None = None,
) -> None:
    """Write the explanation to ``out`` for people: the verdict line first. Control
    characters in the token's text are escaped (``safe_text.TerminalSafe``)."""
    from analyzer.report.safe_text import terminal_safe

    out = terminal_safe(out)
    token = done.token
    out.write(done.verdict.line + "\n\n")
    if pasted is not None and pasted.origin:
        where = pasted.origin
        if pasted.request:
            where += f" ({pasted.request}" + (f", Host {pasted.host})" if pasted.host else ")")
        out.write(f"Read from: {where}\n")
        if pasted.ignored:
            out.write(f"  ({plural(pasted.ignored, 'more credential')} in the paste not decoded)\n")
    out.write(f"Token fp={token.fingerprint}: {_format_name(token)}, {token.size:,} characters\n")
    if token.problems:
        out.write("Problems: " + "; ".join(token.problems) + "\n")
    _layer(token, "Outer token" if token.actor_token else "Token", out)
    if token.actor_token is not None:
        out.write("\n")
        _layer(token.actor_token, f"Actor token fp={token.actor_fp}", out)
    out.write("\nSignature\n")
    for prefix, _layer_token, result in done.signatures:
        label = "actor" if prefix else "token"
        out.write(f"  {label:<6} {result.status}: {result.detail}\n")
        if result.key is not None:
            _key_lines(result.key, at, out)
    hint = done.verdict.key_hint
    if hint is not None:
        out.write(f"         key: {hint.text}\n")
    out.write(f"\nChecks (times checked at {iso_utc(at)}, {at_label})\n")
    for check in done.checks:
        out.write(f"  {_mark(check)} {check.id}: {check.message}\n")
    for diag in diagnostics or ():
        out.write("\nThe server's answer (x-ms-diagnostics in the paste)\n")
        write_diagnostic(diag, out, verdict=False)
    if reveal_secrets and token.text:
        out.write(f"\nToken text\n  {token.text}\n")


def _key_lines(key: SigningKey, at: float, out: IO[str]) -> None:
    """The verifying key as Windows names it: thumbprint, subject, validity, source."""
    pad = " " * 9
    if key.thumbprint:
        out.write(f"{pad}thumbprint {key.thumbprint} (x5t {key.x5t})\n")
    if key.subject:
        out.write(f"{pad}subject    {key.subject}\n")
    if key.not_before is not None or key.not_after is not None:
        problems, notes = certificate_notes(key, at, "the check time")
        flag = "".join(f"  !! {r.message}" for r in (*problems, *notes))
        valid = f"{iso_utc(key.not_before) or '?'} .. {iso_utc(key.not_after) or '?'}"
        out.write(f"{pad}valid      {valid}{flag}\n")
    out.write(f"{pad}key from   {key.source.location}\n")


def _x5t_view(token: DecodedToken) -> dict[str, str | None] | None:
    """The token's own key reference, base64url and as a Windows hex thumbprint."""
    if not token.x5t:
        return None
    return {"x5t": token.x5t, "thumbprint": x5t_to_hex(token.x5t)}


def _layer(token: DecodedToken, title: str, out: IO[str]) -> None:
    out.write(f"{title}\n")
    if token.header is not None:
        out.write(f"  header  {json.dumps(token.header, ensure_ascii=False)}\n")
    if token.x5t:
        out.write(
            f"          x5t = thumbprint {x5t_to_hex(token.x5t) or '(not a SHA-1 thumbprint)'}\n"
        )
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
