"""Secret-shaped text masked where it enters the records.

People paste tokens into the user field of Basic, and tokens carry other tokens in their claims.
Such a value is masked by what it looks like, wherever it sits: known prefixes and shapes (JWT,
GitHub ``ghp_``/``gho_``/``ghs_``/``ghu_``/``ghr_``, Stripe ``sk_live_``/``sk_test_``, AWS
``AKIA``, Slack ``xox?-``, base64 / base64url / hex blobs of 32 bytes or more), and by entropy only
for strings without ``@`` or ``\\``, so ``alice@contoso.com`` and ``CONTOSO\\alice`` stay
readable. A masked value stays recognisable and traceable: ``ghp_…(40 chars, fp 1a2b3c4d5e6f)``,
the fingerprint being ``cred_fp``'s (first 12 hex of SHA-256).
"""

from __future__ import annotations

import math
import re
from collections import Counter

from analyzer.auth.memo import Memo
from analyzer.auth.schemes import fingerprint

#: Shorter text is never masked: the shortest shape below (an AWS key id) has 20 characters.
MIN_SECRET_CHARS = 20
#: Text without a known shape is judged by its entropy from this length on: shorter random keys
#: are too easily confused with names such as ``SPFarmSvc_Prod01_Contoso``.
MIN_RANDOM_CHARS = 32

_PREFIXED = re.compile(
    r"(?:gh[pousr]_|github_pat_)[A-Za-z0-9_]{20,}"
    r"|[sr]k_(?:live|test)_[A-Za-z0-9]{10,}"
    r"|(?:AKIA|ASIA)[A-Z0-9]{16}"
    r"|xox[a-z]-[A-Za-z0-9-]{10,}"
    r"|eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"  # a JWT (signed or not)
)
_PREFIXES = re.compile(r"gh[pousr]_|github_pat_|[sr]k_(?:live|test)_|AKIA|ASIA|xox[a-z]-|eyJ")
_HEX_BLOB = re.compile(r"[0-9A-Fa-f]{64,}")  # 32 bytes and more
_BASE64_BLOB = re.compile(r"[A-Za-z0-9+/_-]{43,}=*")  # 32 bytes and more, either alphabet
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9+/=_.~-]+")  # what a random key is made of (no ':', ' ')
_HEX = re.compile(r"[0-9A-Fa-f]+")
#: a GUID (tenant, object and group ids fill claims lists): 17 symbols, too few to be random
_GUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_BLOB_ENTROPY = 4.2  # bits per character: random base64 of 43+ chars has ~4.7, words ~3.9
_ENTROPY_SHARE = 0.85  # of the most a string of its length can have (log2 of its length)

#: value -> its masked form ("" when it is not secret-shaped): identities repeat per exchange.
_MASKED = Memo(4096, 1 << 20)


def mask_secret(value: str) -> str:
    """``value``, or its masked form when it looks like a secret (see the module docstring)."""
    if len(value) < MIN_SECRET_CHARS:
        return value
    masked = _MASKED.get(value)
    if masked is None:
        masked = _mask(value) if looks_secret(value) else ""
        _MASKED.put(value, masked, len(value) + len(masked))
    return masked or value


def looks_secret(value: str) -> bool:
    """Does ``value`` hold a credential: a known prefix or shape, a long blob, or (without
    ``@`` or ``\\``) a random-looking run of key characters?"""
    if len(value) < MIN_SECRET_CHARS or _GUID.fullmatch(value):
        return False
    if _PREFIXED.search(value) or _HEX_BLOB.search(value):
        return True
    if "://" in value:  # a URL: its path may look like base64; secrets in queries are redact_uri's
        return False
    for blob in _BASE64_BLOB.findall(value):
        if _entropy_reaches(blob, _BLOB_ENTROPY):
            return True
    if "@" in value or "\\" in value or not _TOKEN_CHARS.fullmatch(value):
        return False
    if not (any(c.isdigit() for c in value) and any(c.isalpha() for c in value)):
        return False
    if _HEX.fullmatch(value):  # a key in hex (16 bytes and more): too few symbols to judge
        return len(value) >= 32
    n = len(value)
    return n >= MIN_RANDOM_CHARS and _entropy_reaches(value, _ENTROPY_SHARE * math.log2(min(n, 64)))


def _mask(value: str) -> str:
    prefix = _PREFIXES.match(value)
    shown = prefix.group() if prefix else ""
    return f"{shown}\u2026({len(value)} chars, fp {fingerprint(value)})"


def _entropy_reaches(text: str, bits: float) -> bool:
    """Has ``text`` at least ``bits`` of entropy per character? Text of k distinct characters
    has at most log2(k), so most identifiers (a GUID: 17 symbols, 4.09 bits at most) are
    settled without counting (claims lists are full of them)."""
    return math.log2(len(set(text))) >= bits and _entropy(text) >= bits


def _entropy(text: str) -> float:
    """Shannon entropy of ``text`` in bits per character."""
    n = len(text)
    return -sum(k / n * math.log2(k / n) for k in Counter(text).values())


def identity_fields(user: str | None, domain: str | None) -> dict[str, str | None]:
    """Event fields for the identity a credential reveals: ``user`` and ``domain`` masked when
    secret-shaped, the raw text then kept in the secret ``raw_user`` / ``raw_domain`` fields
    (written only with ``--reveal-secrets``). Empty when nothing needs masking."""
    out: dict[str, str | None] = {}
    for name, value in (("user", user), ("domain", domain)):
        if value is not None and len(value) >= MIN_SECRET_CHARS:
            masked = mask_secret(value)
            if masked is not value:
                out[name] = masked
                out[f"raw_{name}"] = value
    return out
