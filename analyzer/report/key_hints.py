"""Where the key that verifies a token is published, derived from the token's issuer.

``decode`` without the right key can only say "signature not checked"; this says which document
to fetch and pass with ``--keys``: the issuer's S2S ``metadata/json/1`` document (Skype for
Business / Lync pool, Exchange Autodiscover, SharePoint, Azure ACS per tenant) or the tenant's
JWKS for Entra ID. Facts: Microsoft S2S notes, section 5.1. Pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass

from analyzer.oauth.principals import is_guid, parse_principal
from analyzer.oauth.tokens import DecodedToken

__all__ = ["KeyHint", "key_hint"]

_ACS = "00000001-0000-0000-c000-000000000000"
_EXCHANGE = "00000002-0000-0ff1-ce00-000000000000"
_SHAREPOINT = "00000003-0000-0ff1-ce00-000000000000"
_SKYPE = "00000004-0000-0ff1-ce00-000000000000"
_ENTRA_HOSTS = ("sts.windows.net", "login.microsoftonline.com", "login.windows.net")


@dataclass(frozen=True, slots=True)
class KeyHint:
    """``url``: the document to fetch (may hold a ``<placeholder>``), None when unknown;
    ``text``: what to do, for the verdict line."""

    url: str | None
    text: str


def key_hint(token: DecodedToken) -> KeyHint:
    """Where to get the key for ``token`` (pass its signed layer: the actor token if any)."""
    iss = (token.iss or "").strip()
    if "://" in iss:
        return _url_issuer(iss)
    if "@" not in iss:
        return KeyHint(
            None, "pass the issuer's certificate (.cer) or metadata document with --keys"
        )
    principal = parse_principal(iss, role="issuer")
    app, realm = principal.app_id.lower(), principal.realm or ""
    if app == _ACS:
        tenant = realm if realm and realm != "*" else "<tenant id>"
        url = f"https://accounts.accesscontrol.windows.net/{tenant}/metadata/json/1"
    elif app == _SKYPE:
        url = "https://<Skype for Business pool FQDN>/metadata/json/1"
    elif app == _EXCHANGE:
        if principal.realm_kind == "domain":
            url = f"https://autodiscover.{realm.lower()}/autodiscover/metadata/json/1"
        elif is_guid(realm) or realm == "*":
            url = "https://outlook.office365.com/autodiscover/metadata/json/1"
        else:
            url = "https://<autodiscover host>/autodiscover/metadata/json/1"
    elif app == _SHAREPOINT:
        url = "https://<SharePoint web application>/_layouts/15/metadata/json/1"
    else:
        return KeyHint(
            None,
            f"pass the certificate (.cer) of issuer {principal.display()} "
            "(e.g. a SharePoint trusted security token issuer) with --keys",
        )
    return KeyHint(url, f"save {url} and pass it with --keys")


def _url_issuer(iss: str) -> KeyHint:
    """Entra ID v1 / v2 issuers publish a JWKS per tenant; others an OpenID configuration."""
    host, _, rest = iss.split("://", 1)[1].partition("/")
    parts = [p for p in rest.split("/") if p]
    tenant = parts[0] if parts and is_guid(parts[0]) else None
    if host.lower() in _ENTRA_HOSTS and tenant:
        v2 = "v2.0" in parts
        url = f"https://login.microsoftonline.com/{tenant}/discovery/{'v2.0/' if v2 else ''}keys"
        return KeyHint(url, f"save the tenant's JWKS {url} and pass it with --keys")
    url = iss.rstrip("/") + "/.well-known/openid-configuration"
    return KeyHint(url, f"save the JWKS named by {url} (jwks_uri) and pass it with --keys")
