"""Tests for analyzer.oauth.certificates: facts of a certificate and the 30-day expiry rule."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from analyzer.oauth.certificates import (
    EXPIRY_WINDOW,
    certificate_facts,
    expiry,
    expiry_text,
)
from analyzer.oauth.keys import KeyStore

KEYS = Path(__file__).resolve().parents[1] / "captures" / "keys"
DAY = 86400.0


def make_cert(cn: str, not_before: dt.datetime, not_after: dt.datetime) -> bytes:
    """A self-signed certificate (DER) with the given name and validity."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Contoso Test CA")]))
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def test_facts_of_a_test_key_match_openssl_and_the_key_store() -> None:
    pem = (KEYS / "sfb.cert.pem").read_bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    facts = certificate_facts(der)
    assert facts is not None
    openssl = subprocess.run(
        ["openssl", "x509", "-noout", "-fingerprint", "-sha1"],
        input=pem,
        capture_output=True,
        check=True,
    ).stdout.decode()
    assert facts.sha1 == openssl.split("=", 1)[1].strip().replace(":", "")
    assert facts.subject == "O=TEST KEY - oauth-traffic-analyzer,CN=sfbpool01.contoso.com"
    assert facts.issuer == facts.subject
    assert facts.not_before == dt.datetime(2025, 1, 1, tzinfo=dt.UTC).timestamp()
    assert facts.not_after == dt.datetime(2030, 1, 1, tzinfo=dt.UTC).timestamp()
    store = KeyStore()
    store.add_file(KEYS / "sfb.cert.pem")
    (key,) = list(store)
    # the key store reads certificates through the same helper
    assert (key.x5t, key.x5t_s256, key.thumbprint) == (facts.x5t, facts.x5t_s256, facts.sha1)
    assert (key.subject, key.issuer, key.not_after) == (
        facts.subject,
        facts.issuer,
        facts.not_after,
    )


@pytest.mark.parametrize("der", [b"", b"\x30\x03\x02\x01\x00", b"not a certificate", None])
def test_what_is_not_a_certificate_gives_none(der: bytes | None) -> None:
    assert certificate_facts(der) is None


def test_a_generated_certificate_reads_back() -> None:
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    der = make_cert("mail.contoso.com", start, start + dt.timedelta(days=90))
    facts = certificate_facts(der)
    assert facts is not None
    assert (facts.subject, facts.issuer) == ("CN=mail.contoso.com", "CN=Contoso Test CA")
    assert facts.not_after - facts.not_before == 90 * DAY
    assert len(facts.sha1) == 40 and facts.sha1 == facts.sha1.upper()


def test_control_characters_in_names_are_escaped() -> None:
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    der = make_cert("evil\n[HIGH] forged\x1b[31m", start, start + dt.timedelta(days=1))
    facts = certificate_facts(der)
    assert facts is not None
    assert facts.subject == "CN=evil\\x0a[HIGH] forged\\x1b[31m"


def test_expiry_rule_is_thirty_days_either_side_of_the_capture() -> None:
    at = 1_772_442_000.0
    assert EXPIRY_WINDOW == 30 * DAY
    assert expiry(at - 1, at) == "expired"
    assert expiry(at, at) == "expiring"
    assert expiry(at + 30 * DAY, at) == "expiring"
    assert expiry(at + 30 * DAY + 1, at) is None
    assert expiry(None, at) is None and expiry(at, None) is None
    assert expiry_text(at - 3 * DAY, at) == "expired 3 days before the capture"
    assert expiry_text(at + 12 * DAY, at) == "expires 12 days after the capture"
    assert expiry_text(at + 2 * 3600, at) == "expires 2 hours after the capture"
