"""Tokens are verified only as they should be, and hostile key material never crashes a run.

The attacks a token can carry in its own header (RFC 8725): an HMAC signed with the trusted RSA
certificate's public key as the secret (key confusion), ``alg: none`` in any spelling, ``crit``
extensions, keys of its own (``jwk``, ``x5c``) and URLs to fetch them from (``jku``, ``x5u``),
and a key named for an algorithm of another family. None of them is ever "verified"; nothing is
fetched. And certificates whose key algorithm ``cryptography`` does not know (found by the fuzzing
campaign in a mutated metadata document) are skipped with a warning wherever they come from.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import socket
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from analyzer.oauth.keys import KeyFileError, KeyStore, verify_token
from analyzer.oauth.tokens import TokenDecoder

CLAIMS = {"iss": "00000002-0000-0ff1-ce00-000000000000@contoso.com", "aud": "x", "exp": 2e9}


def seg(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def x5t(cert: x509.Certificate) -> str:
    return seg(hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).digest())


def certificate(key: Any, name: str = "Signing") -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = dt.datetime(2023, 1, 1, tzinfo=dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def cert(rsa_key: rsa.RSAPrivateKey) -> x509.Certificate:
    return certificate(rsa_key)


@pytest.fixture()
def store(cert: x509.Certificate, tmp_path: Any) -> KeyStore:
    """A store that trusts ``cert`` (given as a key file, as an admin would)."""
    path = tmp_path / "trusted.cer"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keys = KeyStore()
    assert keys.add_file(path) == 1
    return keys


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Any attempt to open a connection (a jku / x5u fetch) is recorded and refused."""
    attempts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> None:
        attempts.append(args)
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def verdict(token: str, keys: KeyStore) -> tuple[str, str]:
    result = verify_token(TokenDecoder()(token), keys)
    return result.status, result.detail


def sign_rs256(key: rsa.RSAPrivateKey, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """An RS256 JWS with exactly this header (pyjwt refuses to write some of them, e.g. crit)."""
    from cryptography.hazmat.primitives.asymmetric import padding

    signing_input = f"{seg({'typ': 'JWT', 'alg': 'RS256', **header})}.{seg(claims)}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{seg(signature)}"


# -- key confusion -------------------------------------------------------------------------------
@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
@pytest.mark.parametrize("encoding", ["pem", "der", "spki-b64"])
@pytest.mark.parametrize("named", [True, False])
def test_hmac_with_the_trusted_public_key_as_secret_is_never_verified(
    rsa_key: rsa.RSAPrivateKey,
    cert: x509.Certificate,
    store: KeyStore,
    alg: str,
    encoding: str,
    named: bool,
) -> None:
    """The classic confusion: a verifier that lets the token pick HMAC would check the MAC with
    the public key bytes it holds - and anyone can compute that MAC."""
    public = rsa_key.public_key()
    secret = {
        "pem": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "der": public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "spki-b64": cert.public_bytes(serialization.Encoding.PEM),
    }[encoding]
    header = {"typ": "JWT", "alg": alg, **({"x5t": x5t(cert)} if named else {})}
    signing_input = f"{seg(header)}.{seg(CLAIMS)}"
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    mac = hmac.new(secret, signing_input.encode(), digest).digest()
    status, detail = verdict(f"{signing_input}.{seg(mac)}", store)
    assert status == "bad-signature"
    assert detail == f"token alg {alg} does not fit an RSA key (algorithm confusion?)"


# -- alg none ------------------------------------------------------------------------------------
@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("signature", ["", "c2lnbmF0dXJl"])
def test_alg_none_is_unsigned_in_any_spelling(
    cert: x509.Certificate, store: KeyStore, alg: str, signature: str
) -> None:
    token = f"{seg({'alg': alg, 'x5t': x5t(cert)})}.{seg(CLAIMS)}.{signature}"
    status, detail = verdict(token, store)
    assert (status, detail) == ("unsigned", "unsigned token (alg none)")


def test_a_signed_algorithm_with_an_empty_signature_is_unsigned(
    rsa_key: rsa.RSAPrivateKey, cert: x509.Certificate, store: KeyStore
) -> None:
    token = sign_rs256(rsa_key, {"x5t": x5t(cert)}, CLAIMS).rsplit(".", 1)[0] + "."
    assert verdict(token, store) == ("unsigned", "unsigned token (empty signature)")


# -- crit ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("crit", "shown"),
    [
        (["exp"], "exp"),
        (["b64"], "b64"),
        (["http://example.test/ext", "x"], "http://example.test/ext, x"),
        ([], ""),
        ("b64", "str"),
    ],
)
def test_a_crit_header_is_refused_even_with_a_good_signature(
    rsa_key: rsa.RSAPrivateKey, cert: x509.Certificate, store: KeyStore, crit: Any, shown: str
) -> None:
    header = {"x5t": x5t(cert), "crit": crit, "b64": False, "exp": 1}
    token = sign_rs256(rsa_key, header, CLAIMS)
    status, detail = verdict(token, store)
    assert status == "bad-signature"
    assert detail == f"header marks extensions critical (crit: {shown}): refused"
    # the same token without crit verifies: the signature itself is good
    plain = sign_rs256(rsa_key, {"x5t": x5t(cert)}, CLAIMS)
    assert verdict(plain, store)[0] == "verified"


# -- keys and key URLs in the token itself -------------------------------------------------------
def test_jku_and_x5u_are_never_fetched_nor_trusted(
    rsa_key: rsa.RSAPrivateKey, store: KeyStore, no_network: list[Any]
) -> None:
    """An attacker's own key, announced by URL: nothing is fetched, the key is unknown."""
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    header = {
        "kid": "attacker-key",
        "jku": "https://attacker.test/jwks.json",
        "x5u": "https://attacker.test/cert.pem",
    }
    status, detail = verdict(sign_rs256(attacker, header, CLAIMS), store)
    assert status == "unknown-key"
    assert detail == "no key with kid=attacker-key among 1 loaded key(s)"
    assert no_network == []


@pytest.mark.parametrize("carrier", ["jwk", "x5c", "both"])
def test_a_key_carried_in_the_header_is_never_trusted(store: KeyStore, carrier: str) -> None:
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = attacker.public_key().public_numbers()
    jwk = {
        "kty": "RSA",
        "n": seg(numbers.n.to_bytes(256, "big")),
        "e": seg(numbers.e.to_bytes(3, "big")),
    }
    own_cert = certificate(attacker, "Attacker")
    x5c = [base64.b64encode(own_cert.public_bytes(serialization.Encoding.DER)).decode()]
    header: dict[str, Any] = {"x5t": x5t(own_cert)}
    if carrier in ("jwk", "both"):
        header["jwk"] = jwk
    if carrier in ("x5c", "both"):
        header["x5c"] = x5c
    status, _detail = verdict(sign_rs256(attacker, header, CLAIMS), store)
    assert status == "unknown-key"
    unnamed = sign_rs256(attacker, {k: v for k, v in header.items() if k != "x5t"}, CLAIMS)
    status, detail = verdict(unnamed, store)
    assert status == "unknown-key"
    assert detail == "token names no key and none of 1 RS256-capable keys fits"


# -- a key of the wrong family -------------------------------------------------------------------
def _ec_store(tmp_path: Any, curve: ec.EllipticCurve) -> tuple[ec.EllipticCurvePrivateKey, Any]:
    key = ec.generate_private_key(curve)
    path = tmp_path / "ec.cer"
    path.write_bytes(certificate(key, "EC").public_bytes(serialization.Encoding.PEM))
    keys = KeyStore()
    keys.add_file(path)
    return key, keys


@pytest.mark.parametrize("alg", ["ES256", "ES384", "EdDSA", "PS256", "RS512"])
def test_rsa_key_named_for_another_family_is_refused(
    rsa_key: rsa.RSAPrivateKey, cert: x509.Certificate, store: KeyStore, alg: str
) -> None:
    """The key decides the family: a token naming the RSA certificate with an EC or EdDSA alg is
    a bad signature; RSA algorithms of another hash or padding are tried, and fail honestly."""
    header = {"typ": "JWT", "alg": alg, "x5t": x5t(cert)}
    signing_input = f"{seg(header)}.{seg(CLAIMS)}"
    fake = seg(b"\x01" * 64)
    status, detail = verdict(f"{signing_input}.{fake}", store)
    assert status == "bad-signature"
    if alg.startswith(("ES", "Ed")):
        assert detail == f"token alg {alg} does not fit an RSA key (algorithm confusion?)"
    else:
        assert detail.startswith(f"{alg} signature does not match 1 key(s) named by the token")


def test_ec_key_refuses_rsa_and_other_curves(tmp_path: Any) -> None:
    key, keys = _ec_store(tmp_path, ec.SECP256R1())
    good = jwt.encode(CLAIMS, key, algorithm="ES256")
    assert verdict(good, keys)[0] == "verified"
    _head, body, sig = good.split(".")
    for alg, why in (
        ("RS256", "token alg RS256 does not fit an EC key (algorithm confusion?)"),
        ("ES384", "token alg ES384 needs another curve than the key's"),
        ("EdDSA", "token alg EdDSA does not fit an EC key (algorithm confusion?)"),
    ):
        token = f"{seg({'alg': alg, 'kid': 'k'})}.{body}.{sig}"
        keys_by_kid = KeyStore()
        keys_by_kid._index(b"k", keys.find()[0], [], "k")  # the EC key under kid "k"
        status, detail = verdict(token, keys_by_kid)
        assert status == "bad-signature" and detail.startswith(why), (alg, detail)


def test_ed25519_key_refuses_ecdsa(tmp_path: Any) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / "ed.pem"
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    keys = KeyStore()
    keys.add_file(path)
    token = jwt.encode(CLAIMS, key, algorithm="EdDSA")
    assert verdict(token, keys)[0] == "verified"
    _head, body, sig = token.split(".")
    forged = f"{seg({'alg': 'ES256'})}.{body}.{sig}"
    assert verdict(forged, keys) == (
        "bad-signature",
        "token alg ES256 does not fit an OKP key (algorithm confusion?)",
    )


# -- certificates with an unknown key algorithm (found by bench/fuzz.py) -------------------------
RSA_OID = bytes.fromhex("06092a864886f70d010101")  # rsaEncryption
ODD_OID = bytes.fromhex("06092a86488403a06d0101")  # same length, unknown to cryptography


def unknown_algorithm_cert(cert: x509.Certificate) -> bytes:
    der = cert.public_bytes(serialization.Encoding.DER)
    at = (
        der.index(RSA_OID, der.index(RSA_OID) + 1) if der.count(RSA_OID) > 1 else der.index(RSA_OID)
    )
    odd = der[:at] + ODD_OID + der[at + len(ODD_OID) :]
    loaded = x509.load_der_x509_certificate(odd)
    with pytest.raises(Exception, match="Unknown key type"):
        loaded.public_key()
    return odd


def test_unknown_key_algorithm_in_a_metadata_document(cert: x509.Certificate) -> None:
    odd = unknown_algorithm_cert(cert)
    value = base64.b64encode(odd).decode()
    doc = {"issuer": "x", "keys": [{"keyinfo": {"x5t": "a"}, "keyvalue": {"value": value}}]}
    keys = KeyStore()
    assert keys.add_document(json.dumps(doc), "http://sts.test/metadata/json/1", 1.0) == 0
    assert keys.warnings == [
        "http://sts.test/metadata/json/1: keys[0]: certificate public key not readable"
    ]


def test_unknown_key_algorithm_in_a_jwks_x5c(
    cert: x509.Certificate, rsa_key: rsa.RSAPrivateKey
) -> None:
    numbers = rsa_key.public_key().public_numbers()
    jwk = {
        "kty": "RSA",
        "n": seg(numbers.n.to_bytes(256, "big")),
        "e": seg(numbers.e.to_bytes(3, "big")),
        "x5c": [base64.b64encode(unknown_algorithm_cert(cert)).decode()],
    }
    keys = KeyStore()
    assert keys.add_document(json.dumps({"keys": [jwk]}), "http://sts.test/jwks", 1.0) == 1
    assert keys.warnings == [
        "http://sts.test/jwks: keys[0]: x5c[0] certificate public key not readable"
    ]


def test_unknown_key_algorithm_in_key_files(cert: x509.Certificate, tmp_path: Any) -> None:
    odd = unknown_algorithm_cert(cert)
    der_file = tmp_path / "odd.cer"
    der_file.write_bytes(odd)
    pem_file = tmp_path / "odd.pem"
    pem_file.write_bytes(
        b"-----BEGIN CERTIFICATE-----\n"
        + base64.encodebytes(odd)
        + b"-----END CERTIFICATE-----\n-----BEGIN PUBLIC KEY-----\n"
        + base64.encodebytes(odd[odd.index(ODD_OID) - 4 :])
        + b"-----END PUBLIC KEY-----\n"
    )
    for path in (der_file, pem_file):
        with pytest.raises(KeyFileError) as caught:
            KeyStore().add_file(path)
        assert str(caught.value).startswith(str(path))


def test_a_key_file_of_exactly_the_cap_is_read(cert: x509.Certificate, tmp_path: Any) -> None:
    """The size cap refuses what is over it, not what is at it (a PEM padded to the cap)."""
    from analyzer.oauth.keys import FILE_CAP

    pem = cert.public_bytes(serialization.Encoding.PEM)
    path = tmp_path / "padded.pem"
    path.write_bytes(pem + b"\n" * (FILE_CAP - len(pem)))
    assert KeyStore().add_file(path) == 1
    path.write_bytes(pem + b"\n" * (FILE_CAP + 1 - len(pem)))
    with pytest.raises(KeyFileError, match="too large for a key file"):
        KeyStore().add_file(path)
