"""What a challenge offers, read the way an admin needs it: principals named, lists split."""

from __future__ import annotations

from typing import Any

from analyzer.auth.principals import parse_principal, parse_trusted_issuers
from analyzer.model import Challenge


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
    if challenge.scheme == "msrtcoauth":
        out = {"href": params.get("href")}
        if params.get("grant_type"):
            out["grant_types"] = [g.strip() for g in params["grant_type"].split(",") if g.strip()]
        return out
    return {}
