"""A pasted ``x-ms-diagnostics`` value explained for the admin who must fix it.

:func:`analyzer.oauth.diagnostics.parse_ms_diagnostics` says what the code and category mean;
this adds what to do about each category (which side to look at, which cmdlet shows the setting)
and the one-line verdict ``decode`` prints first. Every diagnostics value is an error report, so
its verdict is always a PROBLEM (exit 1).
"""

from __future__ import annotations

from typing import IO, Any

from analyzer.oauth.diagnostics import MsDiagnostic

__all__ = ["ADVICE", "advice", "diagnostic_line", "diagnostic_to_dict", "write_diagnostic"]

_REFRESH = (
    "refresh the receiver's copy of the sender's auth metadata (Exchange: Set-PartnerApplication "
    "<name> -RefreshAuthMetadata, or Set-AuthServer <name> -RefreshAuthMetadata for ACS / Entra)"
)

#: error_category (lowercase) -> what to do. Keyed on the category text, like the meanings.
ADVICE: dict[str, str] = {
    "invalid_signature": (
        "The receiver does not hold the certificate the sender signs with: "
        + _REFRESH
        + "; check that the sender's current signing certificate (Exchange: Get-AuthConfig, "
        "CurrentCertificateThumbprint) is the one published. Verify a captured token with "
        "'oauth-analyzer decode --keys <metadata or .cer>'."
    ),
    "invalid_token": (
        "Decode the token the sender presented ('oauth-analyzer decode') and fix what its checks "
        "flag: signed outer token, unsigned actor, issuer not equal to the actor's nameid, "
        "audience without host or realm."
    ),
    "token_expired": (
        "Compare both servers' clocks (w32tm /query /status) and the token's nbf / exp; the "
        "sender must mint a new token (a cached one outlived its lifetime)."
    ),
    "invalid_resource": (
        "The token's audience must name this server as the sender reaches it: check the host in "
        "the aud claim against the URL the sender uses (Autodiscover / EWS URL), and http vs "
        "https when SSL is offloaded."
    ),
    "invalid_tenant": (
        "The realm in the token must be the receiver's realm: compare Get-AuthConfig | fl Realm "
        "(Exchange) or Get-CsOAuthConfiguration (Skype for Business) with the token's iss / aud."
    ),
    "invalid_user": (
        "The user in the token (upn, smtp, sip, nameid) must exist exactly once on the receiver: "
        "look for a missing mailbox or duplicate SMTP / SIP addresses."
    ),
    "invalid_client": (
        "Register the sender as a partner application on the receiver (Exchange: "
        "Configure-EnterprisePartnerApplication.ps1 or New-PartnerApplication; Skype for "
        "Business: New-CsPartnerApplication) and check its ApplicationIdentifier."
    ),
    "internal_error": (
        "Look in the receiving server's event log at that time: a directory lookup or "
        "certificate access failed there."
    ),
    "invalid_grant": (
        "The token does not allow this call: check the partner application's role assignments "
        "and the scope it was issued for."
    ),
    "invalid_certificate": (
        "The receiver cannot find the signing certificate: "
        + _REFRESH
        + "; check that the sender's auth certificate is published and not expired."
    ),
    "invalid_issuer": (
        "Trust the issuer on the receiver: it must match a partner application or auth server "
        "exactly (Exchange: Get-PartnerApplication, Get-AuthServer; Skype for Business: "
        "Get-CsPartnerApplication, Get-CsOAuthServer)."
    ),
    "oauth_not_available": (
        "Enable OAuth on the receiving virtual directory (Exchange: "
        "Set-WebServicesVirtualDirectory -OAuthAuthentication $true, then iisreset)."
    ),
    "insufficient_claims": (
        "The client must get a token with the claims the service requires (the reason names "
        "them); check the tenant's access policies."
    ),
    "no_valid_security_token": (
        "The client sent no usable token: it must sign in again or get a web ticket; check that "
        "the pool accepts OAuth (Get-CsOAuthConfiguration) and its certificates."
    ),
    "authentication_type_not_allowed": (
        "The pool does not allow that authentication type: check Get-CsWebServiceConfiguration "
        "and the client's sign-in method."
    ),
    "probe": "Nothing to do: an internal probe, not an error.",
}

_PRODUCTS = {
    "exchange": "Exchange",
    "skype": "Skype for Business",
    "entra": "Microsoft 365 / Entra ID",
}


def advice(diag: MsDiagnostic) -> str:
    """What to do about ``diag``; a general pointer when its category is unknown."""
    if diag.category and diag.category.lower() in ADVICE:
        return ADVICE[diag.category.lower()]
    return (
        "Unknown category: read the reason text, and look in the answering server's event log "
        "at that time."
    )


def diagnostic_line(diag: MsDiagnostic) -> str:
    """``PROBLEM: x-ms-diagnostics 2000002 token_expired (Exchange): The token has expired.``"""
    head = "x-ms-diagnostics" + (f" {diag.code}" if diag.code is not None else "")
    if diag.error_name:
        head += f" {diag.error_name}"
    if diag.category:
        head += f" {diag.category}"
    if diag.product in _PRODUCTS:
        head += f" ({_PRODUCTS[diag.product]})"
    said = diag.reason or diag.meaning or "no reason given"
    return f"PROBLEM: {head}: {said}"


def diagnostic_to_dict(diag: MsDiagnostic) -> dict[str, Any]:
    """The parsed value, its advice and the verdict, JSON-ready."""
    line = diagnostic_line(diag)
    return {
        "kind": "x-ms-diagnostics",
        "verdict": "problem",
        "line": line,
        "exit_code": 1,
        "exit_reasons": [{"id": "ms-diagnostics", "message": line.removeprefix("PROBLEM: ")}],
        "diagnostic": diag.to_dict(),
        "advice": advice(diag),
    }


def write_diagnostic(diag: MsDiagnostic, out: IO[str], *, verdict: bool = True) -> None:
    """Explain ``diag`` for people: the verdict line (unless ``verdict`` is False), then code,
    category, meaning, the detailed error the reason matches, and what to do."""
    from analyzer.report.safe_text import terminal_safe

    out = terminal_safe(out)
    if verdict:
        out.write(diagnostic_line(diag) + "\n\n")
    rows = [
        ("code", str(diag.code) if diag.code is not None else None),
        ("error", diag.error_name),
        ("category", diag.category),
        ("product", _PRODUCTS.get(diag.product or "")),
        ("reason", diag.reason),
        ("source", diag.source),
        ("meaning", diag.meaning),
    ]
    if diag.detail_code is not None:
        args = f" ({', '.join(diag.detail_args)})" if diag.detail_args else ""
        rows.append(("detail", f"Exchange error {diag.detail_code}: {diag.detail}{args}"))
    rows += [("note", note) for note in diag.notes]
    rows.append(("what to do", advice(diag)))
    for name, value in rows:
        if value:
            out.write(f"  {name:<10} {value}\n")
