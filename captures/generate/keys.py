"""The TEST-ONLY RSA signing keys and self-signed certificates committed under captures/keys/:
loading them, and making new ones (``--new-keys``, the generator's only random step).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from .constants import KEYS_DIR, KEYS_REL
from .encoding import b64url

KEY_SPECS = {
    # name: (RSA bits, certificate subject CN)
    "exchange": (2048, "Microsoft Exchange Server Auth Certificate"),
    "sfb": (8192, "sfbpool01.contoso.com"),
    "acs": (2048, "accounts.accesscontrol.windows.net"),
}


@dataclass(frozen=True)
class TestKey:
    """One TEST-ONLY signing key and its self-signed certificate."""

    name: str
    private_key: rsa.RSAPrivateKey
    cert: x509.Certificate

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def x5t(self) -> str:
        return b64url(hashlib.sha1(self.der).digest())

    @property
    def cert_file(self) -> str:
        return f"{KEYS_REL}/{self.name}.cert.pem"


def new_keys(keys_dir: Path = KEYS_DIR) -> None:
    """Create fresh TEST-ONLY keys and certificates (random; run once, then commit)."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    for name, (bits, cn) in KEY_SPECS.items():
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TEST KEY - oauth-traffic-analyzer"),
            ]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc))
            .not_valid_after(dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        (keys_dir / f"{name}.key.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        (keys_dir / f"{name}.cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def load_keys(keys_dir: Path = KEYS_DIR) -> dict[str, TestKey]:
    keys = {}
    for name in KEY_SPECS:
        private = serialization.load_pem_private_key(
            (keys_dir / f"{name}.key.pem").read_bytes(),
            password=None,
            unsafe_skip_rsa_key_validation=True,  # our own keys; the check costs seconds
        )
        assert isinstance(private, rsa.RSAPrivateKey)
        cert = x509.load_pem_x509_certificate((keys_dir / f"{name}.cert.pem").read_bytes())
        keys[name] = TestKey(name, private, cert)
    return keys
