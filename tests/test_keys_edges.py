"""Key store edges a verdict leans on: a signature check that raises reads as "does not verify",
the fully-specified EdDSA algorithms match only their own curve, key sizes and JWK parameters at
their exact bounds, size caps at their exact boundary, and a refused key file says why in one line
that names the file once (even when its name holds ': ').

Keys and certificates are made here; tokens are signed by pyjwt, the library a client would use.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa, x25519
from cryptography.x509.oid import NameOID

from analyzer.oauth.keys import (
    DOCUMENT_CAP,
    FILE_CAP,
    MAX_RSA_BITS,
    MAX_WARNINGS,
    MIN_RSA_BITS,
    KeyFileError,
    KeyStore,
    thumbprint_forms,
    verify_token,
)
from analyzer.oauth.tokens import decode_token

JWKS_URL = "https://login.example/keys"
METADATA_URL = "https://mail.contoso.com/autodiscover/metadata/json/1"


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw(public: Any) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def spki_der(public: Any) -> bytes:
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def certificate(public: Any, signer: Any, name: str = "Edge") -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(7)
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=365))
        .sign(signer, hashes.SHA256())
    )


def rsa_jwk(n: int, e: int, kid: str = "r") -> dict[str, Any]:
    length = (n.bit_length() + 7) // 8
    return {
        "kty": "RSA",
        "kid": kid,
        "n": b64u(n.to_bytes(length, "big")),
        "e": b64u(e.to_bytes((e.bit_length() + 7) // 8, "big")),
    }


def odd_modulus(bits: int) -> int:
    """Any odd number of exactly ``bits`` bits: a public modulus nobody can sign with."""
    return (1 << (bits - 1)) | 0x5A5A5A5A5A5A5A5B


def jwks_store(*keys: dict[str, Any]) -> tuple[KeyStore, int]:
    store = KeyStore()
    return store, store.add_jwks(json.dumps({"keys": list(keys)}), JWKS_URL, 1.0)


# -- verifying ------------------------------------------------------------------------------


def test_a_check_that_raises_is_a_bad_signature_never_verified() -> None:
    """PS512 over a 512-bit key: the hash and salt do not fit, and the library raises instead of
    answering; the token must read as a bad signature, not as verified."""
    store, added = jwks_store(rsa_jwk(odd_modulus(512), 65537, kid="small"))
    assert added == 1
    header = b64u(json.dumps({"alg": "PS512", "kid": "small"}).encode())
    body = b64u(json.dumps({"iss": "x"}).encode())
    token = decode_token(f"{header}.{body}.{b64u(bytes(64))}")
    result = verify_token(token, store)
    assert result.status == "bad-signature"
    assert result.detail.startswith("PS512 signature does not match 1 key(s) named by the token")


@pytest.mark.parametrize(
    ("alg", "signer", "expected"),
    [
        ("Ed25519", "ed25519", "verified"),
        ("Ed448", "ed448", "verified"),
        ("EdDSA", "ed448", "verified"),
        ("Ed448", "ed25519", "bad-signature"),
        ("Ed25519", "ed448", "bad-signature"),
    ],
)
def test_fully_specified_eddsa_algorithms_fit_only_their_curve(
    alg: str, signer: str, expected: str
) -> None:
    """RFC 9864's Ed25519 and Ed448 name the curve: a key on the other curve does not fit."""
    private = (
        ed25519.Ed25519PrivateKey.generate()
        if signer == "ed25519"
        else ed448.Ed448PrivateKey.generate()
    )
    crv = "Ed25519" if signer == "ed25519" else "Ed448"
    store, added = jwks_store(
        {"kty": "OKP", "crv": crv, "kid": "k", "x": b64u(raw(private.public_key()))}
    )
    assert added == 1
    [key] = store
    assert key.curve == crv
    header = b64u(json.dumps({"alg": alg, "kid": "k", "typ": "JWT"}).encode())
    body = b64u(b'{"iss":"x"}')
    signature = private.sign(f"{header}.{body}".encode())
    result = verify_token(decode_token(f"{header}.{body}.{b64u(signature)}"), store)
    assert result.status == expected
    if expected == "bad-signature":
        assert result.detail == (
            f"token alg {alg} needs another curve than the key's (OKP {crv} kid=k)"
        )
    else:
        assert result.detail == f"{alg} verified with OKP {crv} kid=k (jwks {JWKS_URL})"


def test_ed448_jwk_is_read() -> None:
    public = ed448.Ed448PrivateKey.generate().public_key()
    store, added = jwks_store({"kty": "OKP", "crv": "Ed448", "x": b64u(raw(public))})
    assert added == 1
    assert [k.describe() for k in store] == ["OKP Ed448 no id"]


def test_crit_is_shown_cut_at_80_characters() -> None:
    store, _ = jwks_store(rsa_jwk(odd_modulus(2048), 65537))
    names = [f"ext{i:02}" for i in range(20)]  # "ext00, ext01, ..." is 118 characters
    header = b64u(json.dumps({"alg": "RS256", "crit": names}).encode())
    token = decode_token(f"{header}.{b64u(b'{}')}.{b64u(b'sig')}")
    result = verify_token(token, store)
    shown = ", ".join(names)[:80]
    assert len(shown) == 80
    assert result.detail == f"header marks extensions critical (crit: {shown}): refused"


# -- key sizes and JWK parameters at their bounds ----------------------------------------------


@pytest.mark.parametrize(
    ("bits", "read"), [(MIN_RSA_BITS - 1, False), (MIN_RSA_BITS, True), (MAX_RSA_BITS, True)]
)
def test_rsa_sizes_at_the_bounds(bits: int, read: bool) -> None:
    store, added = jwks_store(rsa_jwk(odd_modulus(bits), 65537))
    assert added == int(read)
    expected = [] if read else [f"{JWKS_URL}: keys[0]: RSA key of {bits} bits ignored"]
    assert store.warnings == expected


@pytest.mark.parametrize(
    ("n_bits", "e", "read"),
    [
        (MAX_RSA_BITS + 1, 65537, False),
        (2048, 3, True),
        (2048, 2, False),
        (2048, (1 << 64) - 1, True),
        (2048, 1 << 64, False),
    ],
)
def test_implausible_jwk_rsa_parameters(n_bits: int, e: int, read: bool) -> None:
    store, added = jwks_store(rsa_jwk(odd_modulus(n_bits), e))
    assert added == int(read)
    expected = [] if read else [f"{JWKS_URL}: keys[0]: implausible RSA parameters ignored"]
    assert store.warnings == expected


def test_jwk_with_a_missing_half_says_so() -> None:
    """An RSA key with n but no e, an EC key with x but no y: no key, and a plain reason."""
    ec_public = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    half_rsa = {"kty": "RSA", "n": rsa_jwk(odd_modulus(2048), 3)["n"]}
    half_ec = {"kty": "EC", "crv": "P-256", "x": b64u(ec_public.x.to_bytes(32, "big"))}
    store, added = jwks_store(half_rsa, half_ec)
    assert added == 0
    assert store.warnings == [
        f"{JWKS_URL}: keys[0]: no usable key (kty 'RSA')",
        f"{JWKS_URL}: keys[1]: EC curve 'P-256' unsupported or coordinates missing",
    ]


def test_warnings_name_where_the_key_was() -> None:
    """A key refused in a captured metadata document is named by document and position."""
    small = rsa.RSAPublicNumbers(65537, odd_modulus(MIN_RSA_BITS - 1)).public_key()
    x448 = x25519.X25519PrivateKey.generate().public_key()
    signer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    doc = {
        "issuer": "00000002-0000-0ff1-ce00-000000000000@contoso.com",
        "keys": [
            {"usage": "signing", "keyvalue": {"value": base64.b64encode(spki_der(small)).decode()}},
            {
                "usage": "signing",
                "keyvalue": {
                    "value": base64.b64encode(
                        certificate(x448, signer).public_bytes(serialization.Encoding.DER)
                    ).decode()
                },
            },
        ],
    }
    store = KeyStore()
    assert store.add_metadata_document(json.dumps(doc), METADATA_URL, 2.0) == 0
    assert store.warnings == [
        f"{METADATA_URL}: keys[0]: RSA key of {MIN_RSA_BITS - 1} bits ignored",
        f"{METADATA_URL}: keys[1]: unsupported key type X25519PublicKey",
    ]
    assert store.add_jwks("not json", JWKS_URL, 3.0) == 0
    assert store.add_metadata_document(b"[1]", METADATA_URL, 4.0) == 0
    assert store.warnings[2:] == [
        f"{JWKS_URL}: not JSON; no keys read",
        f"{METADATA_URL}: JSON is not an object; no keys read",
    ]


# -- documents and files at their caps ---------------------------------------------------------


def _padded_jwks(size: int) -> bytes:
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    doc = json.dumps({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": b64u(raw(public))}]})
    return doc.encode() + b" " * (size - len(doc))


def test_a_document_of_exactly_the_cap_is_read() -> None:
    store = KeyStore()
    assert store.add_jwks(_padded_jwks(DOCUMENT_CAP), JWKS_URL, 1.0) == 1
    assert store.add_jwks(_padded_jwks(DOCUMENT_CAP).decode(), "text", 1.0) == 1
    assert store.warnings == []
    assert store.add_jwks(_padded_jwks(DOCUMENT_CAP + 1), "big", 1.0) == 0
    assert store.warnings == [f"big: document too large ({DOCUMENT_CAP + 1} bytes); ignored"]


def test_a_document_given_as_text_may_start_with_a_byte_order_mark() -> None:
    store = KeyStore()
    text = "\ufeff" + _padded_jwks(200).decode()
    assert store.add_jwks(text, JWKS_URL, 1.0) == 1
    assert store.warnings == []


def test_a_key_file_of_exactly_the_cap_is_read(tmp_path: Path) -> None:
    """The cap counts the file's bytes: the PEM at the very end of a file of FILE_CAP bytes is
    read; one byte more and the file is refused."""
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    exact = tmp_path / "exact.pem"
    exact.write_bytes(b"\n" * (FILE_CAP - len(pem)) + pem)
    assert KeyStore().add_file(exact) == 1
    over = tmp_path / "over.pem"
    over.write_bytes(b"\n" * (FILE_CAP + 1 - len(pem)) + pem)
    with pytest.raises(KeyFileError) as info:
        KeyStore().add_file(over)
    assert str(info.value) == f"{over}: too large for a key file (> {FILE_CAP} bytes)"


def test_a_key_file_that_never_ends_is_refused() -> None:
    """/dev/zero (size 0 to stat) is read one byte past the cap, never to its end."""
    with pytest.raises(KeyFileError) as info:
        KeyStore().add_file("/dev/zero")
    assert str(info.value) == f"/dev/zero: too large for a key file (> {FILE_CAP} bytes)"


# -- key files ---------------------------------------------------------------------------------


def test_a_pem_file_counts_every_key_it_holds(tmp_path: Path) -> None:
    signer = ec.generate_private_key(ec.SECP256R1())
    cert = certificate(signer.public_key(), signer)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    path = tmp_path / "both.pem"
    path.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + other.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    store = KeyStore()
    assert store.add_file(path) == 2
    assert [k.describe().split(" x5t=")[0] for k in store] == ["EC P-256", "RSA-2048 no id"]


def test_a_pem_file_without_keys_gives_no_private_key_hint(tmp_path: Path) -> None:
    path = tmp_path / "request.pem"
    path.write_bytes(
        b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
    )
    store = KeyStore()
    with pytest.raises(KeyFileError) as info:
        store.add_file(path)
    assert str(info.value) == f"{path}: no certificate or public key in the PEM data"
    assert store.warnings == [f"{path}: PEM block 'CERTIFICATE REQUEST' ignored"]


def test_refused_der_files_say_why_naming_the_file_once(tmp_path: Path) -> None:
    """The file's name holds ': ' (as a Windows export may): the reason follows it once."""
    small = rsa.RSAPublicNumbers(65537, odd_modulus(MIN_RSA_BITS - 1)).public_key()
    signer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    folder = tmp_path / "keys: old"
    folder.mkdir()
    public_file = folder / "small.der"
    public_file.write_bytes(spki_der(small))
    cert_file = folder / "x25519.cer"
    cert_file.write_bytes(
        certificate(x25519.X25519PrivateKey.generate().public_key(), signer).public_bytes(
            serialization.Encoding.DER
        )
    )
    bad_json = folder / "broken.json"
    bad_json.write_text('{"keys": [}')
    expected = {
        public_file: f"{public_file}: RSA key of {MIN_RSA_BITS - 1} bits ignored",
        cert_file: f"{cert_file}: unsupported key type X25519PublicKey",
        bad_json: f"{bad_json}: not JSON; no keys read",
    }
    for path, message in expected.items():
        with pytest.raises(KeyFileError) as info:
            KeyStore().add_file(path)
        assert str(info.value) == message


def test_a_refused_file_keeps_its_reason_when_the_warnings_are_full(tmp_path: Path) -> None:
    store = KeyStore()
    for i in range(MAX_WARNINGS + 1):
        store.add_jwks("[]", f"doc{i}", None)
    assert store.warnings[-1] == "further warnings suppressed"
    bad_json = tmp_path / "broken.json"
    bad_json.write_text('{"keys": [}')
    with pytest.raises(KeyFileError) as info:
        store.add_file(bad_json)
    assert str(info.value) == f"{bad_json}: not a JSON object"


def test_a_certificate_whose_key_cannot_be_read_is_refused(tmp_path: Path) -> None:
    """The certificate parses, its public key point is not on the curve: no key, one line."""
    signer = ec.generate_private_key(ec.SECP256R1())
    cert_der = certificate(signer.public_key(), signer).public_bytes(serialization.Encoding.DER)
    point = signer.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    assert cert_der.count(point) == 1
    broken = cert_der.replace(point, b"\x04" + bytes(range(1, 65)))
    path = tmp_path / "broken.cer"
    path.write_bytes(broken)
    store = KeyStore()
    with pytest.raises(KeyFileError) as info:
        store.add_file(path)
    assert str(info.value) == f"{path}: certificate public key not readable"
    assert len(store) == 0


# -- thumbprints ------------------------------------------------------------------------------


def test_thumbprint_forms_keep_a_trailing_x_and_read_separated_hex() -> None:
    x5t = "A" * 26 + "X"
    assert thumbprint_forms(x5t + "=") == [x5t]
    thumb = bytes(range(20))
    colons = ":".join(f"{b:02X}" for b in thumb)
    for spelled in (colons, colons + ":", " ".join(f"{b:02x}" for b in thumb)):
        assert thumbprint_forms(spelled) == [spelled, b64u(thumb)]


def test_describe_a_key_without_any_id(tmp_path: Path) -> None:
    public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    path = tmp_path / "bare.pem"
    path.write_bytes(
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    )
    store = KeyStore()
    assert store.add_file(path) == 1
    assert [k.describe() for k in store] == ["RSA-2048 no id"]
