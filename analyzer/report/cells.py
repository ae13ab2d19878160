"""One event as the short texts every view shows: request, class, identity, notes.

The terminal table, a stream's rows and the HTML report use these, so an event reads the same
everywhere.
"""

from __future__ import annotations

from analyzer.model import Challenge, Event

#: Characters of a request target shown before it is cut (the full text is in the exports).
MAX_URI = 200


def request_text(e: Event, limit: int = MAX_URI) -> str:
    """``POST /EWS/Exchange.asmx`` (the target cut at ``limit`` characters)."""
    uri = e.uri if len(e.uri) <= limit else e.uri[: limit - 3] + "..."
    return f"{e.method} {uri}".strip() or "(response only)"


def scheme_text(e: Event) -> str:
    """The credential scheme sent: ``bearer``, ``other(Turbo)``, ``bearer(access_token)``, ``-``;
    ``ntlm(connection)`` for a request its connection's NTLM logon covered."""
    if e.scheme == "none":
        return "-"
    if e.auth_header == "connection":  # no credential: the connection's logon covered it
        return f"{e.scheme}(connection)"
    if e.scheme == "other" or e.auth_header in ("query", "form"):
        return f"{e.scheme}({e.scheme_name or e.auth_header})"
    return e.scheme


def class_text(e: Event) -> str:
    """The handshake's auth class, or ``-`` for an exchange outside any handshake."""
    return e.auth_class or "-"


def identity_text(e: Event, reveal: bool = False) -> str:
    """Who the credential speaks for: the token's issuer -> audience, or the user.

    With ``reveal`` a Basic credential shows as ``user:password`` (``--reveal-secrets``)."""
    if e.token_format and e.token_format not in ("empty", "opaque", "cwt"):
        issuer = e.token_iss_app or e.token_iss or "?"
        audience = e.token_aud_app or e.token_aud or "?"
        realm = f"@{e.token_realm}" if e.token_realm else ""
        return f"{issuer} -> {audience}{realm} [{e.token_signature}] fp={e.token_fp}"
    if reveal and e.password is not None:
        who = f"{e.domain}\\{e.user}" if e.domain else e.user or ""
        return f"{who} password={e.password}"
    if e.user:
        who = f"{e.domain}\\{e.user}" if e.domain else e.user
        return f"{who} fp={e.cred_fp}" if e.cred_fp else who
    if e.scheme == "bearer" and e.cred_len == 0:
        return "empty bearer (probe)"
    return f"fp={e.cred_fp}" if e.cred_fp else ""


def notes_text(e: Event) -> str:
    """What else the exchange says: token problems, offers, diagnostics, token endpoint."""
    notes = []
    if e.auth_header == "connection":
        notes.append("no credential sent: covered by its connection's earlier logon")
    if e.token_flags:
        notes.append("token " + ", ".join(e.token_flags))
    if e.challenges:
        notes.append("offers " + ", ".join(_challenge(c) for c in e.challenges))
    if e.diag_code is not None or e.ms_diagnostics:
        what = e.diag_category or e.ms_diagnostics
        notes.append(f"x-ms-diagnostics {e.diag_code} {what}".replace("None ", ""))
    if e.grant_type:
        notes.append(f"token request grant_type={e.grant_type}")
    if e.oauth_error:
        notes.append(f"error={e.oauth_error}")
    if e.access_token_fp:
        notes.append(f"issued token fp={e.access_token_fp}")
    if "metadata" in e.reasons:
        notes.append("metadata document" if e.status and e.status < 300 else "metadata fetch")
    return "; ".join(notes)


def _challenge(c: Challenge) -> str:
    name = c.scheme.capitalize() if c.scheme != "ntlm" else "NTLM"
    detail = c.params.get("client_id") or c.params.get("realm")
    return f"{name}({detail})" if detail else name
