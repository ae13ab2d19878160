"""Small encoders: base64, the project's 12-digit fingerprint, label-derived "random" bytes and
GUIDs, dates, compact JSON. Deterministic, so the same label always gives the same bytes.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import hashlib
import json
import uuid
from typing import Any

from .constants import SEC


def b64url(data: bytes) -> str:
    """Base64url without padding (JWT segments, x5t)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64(data: bytes) -> str:
    """Standard base64 with padding (HTTP auth blobs, certificate values)."""
    return base64.b64encode(data).decode("ascii")


def fp12(text: str | bytes) -> str:
    """The project's fingerprint: first 12 hex digits of SHA-256."""
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return hashlib.sha256(raw).hexdigest()[:12]


def prng(label: str, n: int) -> bytes:
    """``n`` reproducible pseudo-random bytes derived from ``label``."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{label}/{counter}".encode()).digest()
        counter += 1
    return bytes(out[:n])


def det_guid(label: str) -> str:
    """A reproducible version-4-looking GUID."""
    return str(uuid.UUID(bytes=prng("guid/" + label, 16), version=4))


def http_date(ts_ns: int) -> str:
    """RFC 7231 date of a capture time."""
    return email.utils.formatdate(ts_ns // SEC, usegmt=True)


def iso_z(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()
