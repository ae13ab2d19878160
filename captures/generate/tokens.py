"""JWTs as the captures carry them: RS256 with Microsoft's header order, unsigned outer tokens,
S2S claims, tampering after signing, and the signature check the truth files record.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from .constants import EXCHANGE_ID, REALM
from .encoding import b64url
from .keys import TestKey


def mint_rs256(payload: dict[str, Any], key: TestKey, kid: bool = False) -> str:
    """A signed JWT with Microsoft's header order: typ, alg, x5t (+ kid for STS tokens)."""
    headers: dict[str, Any] = {"x5t": key.x5t}
    if kid:
        headers["kid"] = key.x5t
    return jwt.encode(
        payload, key.private_key, algorithm="RS256", headers=headers, sort_headers=False
    )


def mint_unsigned(payload: dict[str, Any]) -> str:
    """An unsigned outer token: header {"typ":"JWT","alg":"none"}, empty third segment."""
    return jwt.encode(payload, None, algorithm="none", sort_headers=False)


def user_context(
    aud: str, iss: str, user: dict[str, str], actor: str, nbf: int, exp: int
) -> dict[str, Any]:
    """Claims of an S2S outer (user context) token for ``user``, carrying ``actor``."""
    return {
        "aud": aud,
        "iss": iss,
        "nbf": str(nbf),
        "exp": str(exp),
        "nameid": user["sid"],
        "nii": "urn:office:idp:activedirectory",
        "upn": user["upn"],
        "smtp": user["upn"],
        "sip": user["upn"],
        "actortoken": actor,
    }


def jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    head, body = token.split(".")[:2]
    return json.loads(_unb64url(head)), json.loads(_unb64url(body))


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def tamper(token: str, **changes: Any) -> str:
    """Change claims of a signed token after signing, keeping header and signature."""
    head, body, sig = token.split(".")
    claims = json.loads(_unb64url(body))
    claims.update(changes)
    new_body = b64url(json.dumps(claims, separators=(",", ":")).encode())
    return f"{head}.{new_body}.{sig}"


def rs256_valid(token: str, key: TestKey) -> bool:
    head, body, sig = token.split(".")
    try:
        key.cert.public_key().verify(  # type: ignore[union-attr]
            _unb64url(sig), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature:
        return False
    return True


def app_token(key: TestKey, issuer: str, aud_host: str, nbf: int, exp: int) -> str:
    """An app-only S2S token (the signed actor token used alone, microsoft-s2s.md Example C)."""
    payload = {
        "aud": f"{EXCHANGE_ID}/{aud_host}@{REALM}",
        "iss": issuer,
        "nbf": str(nbf),
        "exp": str(exp),
        "nameid": issuer,
    }
    return mint_rs256(payload, key)
