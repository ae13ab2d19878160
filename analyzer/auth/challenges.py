"""What a challenge offers, read the way an admin needs it: principals named, lists split."""

from __future__ import annotations

from typing import Any

from analyzer.auth.ntlm import parse_ntlm_b64
from analyzer.auth.spnego import parse_negotiate_b64
from analyzer.model import Challenge
from analyzer.oauth.principals import parse_principal, parse_trusted_issuers


def describe_challenge(challenge: Challenge) -> dict[str, Any]:
    """Decoded view of a Bearer or MsRtcOAuth challenge's parameters (empty for others)."""
    params = challenge.params
    if challenge.scheme == "bearer":
        out: dict[str, Any] = {}
        client_id = params.get("client_id")
        if client_id:
            principal = parse_principal(client_id)
            out["client_id_app"] = principal.app_name
            if principal.issues:
                out["client_id_issues"] = list(principal.issues)
        issuers = params.get("trusted_issuers", params.get("trustedissuers"))
        if issuers:
            out["trusted_issuers"] = [
                {
                    "raw": p.raw,
                    "app": p.app_name,
                    "realm": p.realm,
                    "realm_kind": p.realm_kind,
                    "issues": list(p.issues),
                }
                for p in parse_trusted_issuers(issuers)
            ]
        if params.get("token_types"):
            out["token_types"] = params["token_types"].split()
        for name in ("realm", "authorization_uri", "error", "error_description"):
            if name in params:
                out[name] = params[name]
        return out
    if challenge.scheme in ("ntlm", "negotiate") and challenge.token68:
        return _windows_challenge(challenge.scheme, challenge.token68)
    if challenge.scheme == "msrtcoauth":
        out = {"href": params.get("href")}
        if params.get("grant_type"):
            out["grant_types"] = [g.strip() for g in params["grant_type"].split(",") if g.strip()]
        return out
    return {}


def _windows_challenge(scheme: str, blob: str) -> dict[str, Any]:
    """An NTLM CHALLENGE (server names, domain) or a SPNEGO answer (state, chosen mechanism)."""
    if scheme == "ntlm":
        message = parse_ntlm_b64(blob)
        token = None
    else:
        token = parse_negotiate_b64(blob)
        message = token.ntlm if token is not None else None
    out: dict[str, Any] = {}
    if token is not None:
        out.update(mechanism=token.mechanism, neg_state=token.neg_state)
        if token.kerberos is not None:
            out["kerberos"] = token.kerberos.message
    if message is not None:
        out["ntlm_type"] = message.type
        if message.target_name:
            out["target_name"] = message.target_name
        if message.target_info:
            out["target_info"] = dict(message.target_info)
    return {k: v for k, v in out.items() if v is not None}
