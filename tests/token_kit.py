"""Real tokens for tests: the TEST-ONLY keys in ``captures/keys`` and the capture generator's
minting functions (``captures/generate``), so the bytes are those a capture would carry."""

from __future__ import annotations

import importlib
import json
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KEYS_DIR = ROOT / "captures" / "keys"

EXO_ID = "00000002-0000-0ff1-ce00-000000000000"
SFB_ID = "00000004-0000-0ff1-ce00-000000000000"
REALM = "contoso.com"
SFB_ISS = f"{SFB_ID}@{REALM}"
EXO_AUD = f"{EXO_ID}/mail.contoso.com@{REALM}"
T0 = 1_772_442_000  # 2026-03-02T09:00:00Z, the generator's base time


@cache
def generator() -> ModuleType:
    """The capture generator (captures/generate), imported with captures/ on the path."""
    if str(ROOT / "captures") not in sys.path:
        sys.path.insert(0, str(ROOT / "captures"))
    return importlib.import_module("generate")


def generated(module: str) -> ModuleType:
    """A module of the capture generator (``ntlm``, ``kerberos``, ``tls``, ``der``, ...)."""
    generator()
    return importlib.import_module(f"generate.{module}")


@cache
def keys() -> dict[str, Any]:
    """name (exchange, sfb, acs) -> TestKey with ``private_key``, ``cert``, ``x5t``, ``der``."""
    return generator().load_keys(KEYS_DIR)


def signed(payload: dict[str, Any], key: str = "exchange", kid: bool = False) -> str:
    """An RS256 token with Microsoft's header (``x5t``; ``kid`` too when asked). RS256 signing
    is deterministic, so tokens are cached: the tests (and every mutant) sign each once."""
    return _signed(json.dumps(payload), key, kid)


@cache
def _signed(payload: str, key: str, kid: bool) -> str:
    return generator().mint_rs256(json.loads(payload), keys()[key], kid=kid)


def unsigned(payload: dict[str, Any]) -> str:
    """An ``alg none`` token with an empty signature segment."""
    return generator().mint_unsigned(payload)


def actor_claims(nbf: int | None = T0, exp: int | None = T0 + 3600, **extra: Any) -> dict[str, Any]:
    """Claims of an SfB -> Exchange actor token (None values are left out when signing)."""
    return {"aud": EXO_AUD, "iss": SFB_ISS, "nbf": nbf, "exp": exp, "nameid": SFB_ISS, **extra}


def s2s(
    nbf: int | None = T0,
    exp: int | None = T0 + 3600,
    actor: dict[str, Any] | None = None,
    **outer: Any,
) -> str:
    """An S2S bearer token: an unsigned user context around a signed actor; claims given as
    None are left out."""
    user = {"sid": "S-1-5-21-1-2-3-1104", "upn": "alice@contoso.com"}
    actor_text = signed({k: v for k, v in (actor or actor_claims()).items() if v is not None})
    claims = generator().user_context(EXO_AUD, SFB_ISS, user, actor_text, 0, 0)
    claims.update({"nbf": None if nbf is None else str(nbf)})
    claims.update({"exp": None if exp is None else str(exp)}, **outer)
    return unsigned({k: v for k, v in claims.items() if v is not None})


def sfb_token(upn: str = "alice@contoso.com") -> str:
    """An S2S token Skype for Business would send Exchange: an unsigned user context around an
    actor token signed with the SfB key (verified with ``--keys`` ``sfb.cert.pem``)."""
    actor = signed(actor_claims(), key="sfb")
    user = {"sid": "S-1-5-21-1-2-3-1104", "upn": upn}
    claims = generator().user_context(EXO_AUD, SFB_ISS, user, actor, 0, 0)
    claims.update(nbf=str(T0), exp=str(T0 + 3600))
    return unsigned(claims)


def strict_rule(client: str) -> tuple[str, ...]:
    """The README's strict rule for SfB -> Exchange EWS calls from ``client``, with the SfB
    certificate as ``--keys``: the options the verify tests judge captures by."""
    return (
        "--client", client, "--server", "mail.contoso.com", "--path", "/EWS/",
        "--issuer", "skype", "--realm", "contoso.com", "--require-signature",
        "--keys", str(KEYS_DIR / "sfb.cert.pem"),
    )  # fmt: skip
