"""X.509 certificate facts and the expiry rule, shared by signing keys and TLS server certificates.

One place reads a certificate (``cryptography``, imported on first use: a run without a
certificate never loads it) and says what an admin compares with Windows' certificate store and
``Get-AuthConfig``: subject, issuer, validity, and the SHA-1 thumbprint both as hex and as the
base64url ``x5t`` that tokens name. One rule says when a certificate needs attention: expired at
the capture time, or expiring within ``EXPIRY_WINDOW`` of it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from analyzer.oauth.tokens import b64url
from analyzer.words import plural

if TYPE_CHECKING:
    from cryptography import x509

#: A certificate expiring within this many seconds of the capture needs renewing now.
EXPIRY_WINDOW = 30 * 86400.0


@dataclass(frozen=True, slots=True)
class CertificateFacts:
    """What a certificate says about itself (names in RFC 4514, times in epoch seconds)."""

    subject: str | None
    issuer: str | None
    not_before: float | None
    not_after: float | None
    sha1: str  # hex SHA-1 thumbprint of the DER, upper case (Windows' "Thumbprint")
    x5t: str  # the same digest, base64url without padding (a JWT header's x5t)
    x5t_s256: str  # base64url SHA-256 of the DER (x5t#S256)


def load_der(der: bytes | None) -> x509.Certificate | None:
    """The certificate in ``der``, or None when it is not one."""
    if not der:
        return None
    from cryptography import x509

    try:
        return x509.load_der_x509_certificate(bytes(der))
    except (ValueError, x509.InvalidVersion):  # InvalidVersion is no ValueError
        return None


def facts_of(cert: x509.Certificate) -> CertificateFacts:
    """The facts of a loaded certificate (fields it cannot read are None)."""
    from cryptography.hazmat.primitives import serialization

    der = cert.public_bytes(serialization.Encoding.DER)
    sha1 = hashlib.sha1(der).digest()  # a thumbprint, not a security hash
    return CertificateFacts(
        subject=_name(cert, "subject"),
        issuer=_name(cert, "issuer"),
        not_before=_when(cert, "not_valid_before_utc"),
        not_after=_when(cert, "not_valid_after_utc"),
        sha1=sha1.hex().upper(),
        x5t=b64url(sha1),
        x5t_s256=b64url(hashlib.sha256(der).digest()),
    )


def certificate_facts(der: bytes | None) -> CertificateFacts | None:
    """The facts of the DER certificate ``der``; None when it cannot be read. Never raises."""
    cert = load_der(der)
    if cert is None:
        return None
    try:
        return facts_of(cert)
    except (ValueError, TypeError):  # pragma: no cover - a certificate that loaded re-encodes
        return None


def expiry(not_after: float | None, at: float | None) -> str | None:
    """``"expired"`` when ``not_after`` is before ``at``, ``"expiring"`` when it falls within
    ``EXPIRY_WINDOW`` after it, else None (also when either time is unknown)."""
    if not_after is None or at is None:
        return None
    if not_after < at:
        return "expired"
    if not_after - at <= EXPIRY_WINDOW:
        return "expiring"
    return None


def expiry_text(not_after: float, at: float) -> str:
    """``not_after`` relative to the capture time ``at``, for a person ("expired 3 days before
    the capture", "expires 12 days after the capture")."""
    days = (not_after - at) / 86400.0
    if days < 0:
        return f"expired {_days(-days)} before the capture"
    return f"expires {_days(days)} after the capture"


def _days(days: float) -> str:
    if days < 1:
        hours = days * 24
        return plural(round(hours), "hour") if hours >= 1 else "less than an hour"
    return plural(round(days), "day")


_CONTROL = {i: f"\\x{i:02x}" for i in (*range(32), 127)}


def _name(cert: x509.Certificate, which: str) -> str | None:
    """A name in RFC 4514 form, control characters escaped (certificates are captured input)."""
    try:
        return getattr(cert, which).rfc4514_string().translate(_CONTROL)
    except (ValueError, TypeError, AttributeError):
        return None


def _when(cert: x509.Certificate, which: str) -> float | None:
    try:
        return getattr(cert, which).timestamp()
    except (ValueError, TypeError, AttributeError, OverflowError):
        return None
