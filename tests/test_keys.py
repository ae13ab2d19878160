"""Tests for analyzer.oauth.keys: key stores from metadata / JWKS / files, and signature checks."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from analyzer.oauth.keys import (
    KeyFileError,
    KeySource,
    KeyStore,
    SignatureResult,
    thumbprint_forms,
    verify_token,
)
from analyzer.oauth.tokens import decode_token

REALM = "contoso.com"
EXCHANGE = f"00000002-0000-0ff1-ce00-000000000000@{REALM}"
SFB = f"00000004-0000-0ff1-ce00-000000000000@{REALM}"
SFB_AUD = f"00000004-0000-0ff1-ce00-000000000000/sfbpool01.contoso.com@{REALM}"
METADATA_URL = "https://mail.contoso.com/autodiscover/metadata/json/1"
SP_URL = "https://sp2019.contoso.com/_layouts/15/metadata/json/1"
FARM = "52aa6841-0000-4000-8000-000000000001"


@dataclass(frozen=True)
class Pki:
    rsa_a: rsa.RSAPrivateKey
    cert_a: x509.Certificate
    rsa_b: rsa.RSAPrivateKey
    cert_b: x509.Certificate
    ec_key: ec.EllipticCurvePrivateKey
    cert_ec: x509.Certificate
    ed_key: ed25519.Ed25519PrivateKey


def self_signed(key: Any, name: str) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = dt.datetime(2023, 1, 1, tzinfo=dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1000)
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )


@pytest.fixture(scope="session")
def pki() -> Pki:
    rsa_a = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_b = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    return Pki(
        rsa_a=rsa_a,
        cert_a=self_signed(rsa_a, "Microsoft Exchange Server Auth Certificate"),
        rsa_b=rsa_b,
        cert_b=self_signed(rsa_b, "Some Other Certificate"),
        ec_key=ec_key,
        cert_ec=self_signed(ec_key, "EC Signing"),
        ed_key=ed25519.Ed25519PrivateKey.generate(),
    )


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def x5t(cert: x509.Certificate) -> str:
    return b64u(hashlib.sha1(der(cert)).digest())


def seg(obj: Any) -> str:
    return b64u(json.dumps(obj, separators=(",", ":")).encode())


def signed(payload: dict[str, Any], key: Any, headers: dict[str, Any], alg: str = "RS256") -> str:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return jwt.api_jws.encode(body, key, algorithm=alg, headers={"typ": "JWT", **headers})


def exchange_metadata(cert: x509.Certificate, stated_x5t: str | None = None) -> str:
    """Section 5.2 shape, as Exchange serves it."""
    return json.dumps(
        {
            "id": "_a1b2c3d4-0000-4000-8000-000000000000",
            "version": "1.0",
            "name": "Exchange",
            "realm": REALM,
            "serviceName": "00000002-0000-0ff1-ce00-000000000000",
            "issuer": EXCHANGE,
            "allowedAudiences": [EXCHANGE],
            "keys": [
                {
                    "usage": "signing",
                    "keyinfo": {"x5t": stated_x5t or x5t(cert)},
                    "keyvalue": {
                        "type": "x509Certificate",
                        "value": base64.b64encode(der(cert)).decode(),
                    },
                }
            ],
            "endpoints": [{"location": METADATA_URL, "protocol": "OAuth2", "usage": "metadata"}],
        }
    )


def sharepoint_metadata(cert: x509.Certificate) -> str:
    """SharePoint-cased: keyValue / x509certificate / Signing, no keyinfo (names case-mixed)."""
    return json.dumps(
        {
            "Issuer": f"00000003-0000-0ff1-ce00-000000000000@{FARM}",
            "name": "SharePoint",
            "ServiceName": "00000003-0000-0ff1-ce00-000000000000",
            "Keys": [
                {
                    "Usage": "Signing",
                    "keyValue": {
                        "Type": "x509certificate",
                        "Value": base64.b64encode(der(cert)).decode(),
                    },
                }
            ],
        }
    )


def example_a(pki: Pki, key: Any = None, thumb: str | None = None) -> tuple[str, str]:
    actor = signed(
        {
            "aud": SFB_AUD,
            "iss": EXCHANGE,
            "nbf": "1700000000",
            "exp": "1700086400",
            "nameid": EXCHANGE,
            "trustedfordelegation": "true",
        },
        key or pki.rsa_a,
        {"x5t": thumb or x5t(pki.cert_a)},
    )
    outer = (
        seg({"typ": "JWT", "alg": "none"})
        + "."
        + seg(
            {
                "aud": SFB_AUD,
                "iss": EXCHANGE,
                "nbf": "1700000000",
                "exp": "1700028800",
                "smtp": "alice@contoso.com",
                "actortoken": actor,
            }
        )
        + "."
    )
    return outer, actor


# ------------------------------------------------------------------------ S2S metadata + actor


def thumb(cert: Any) -> str:
    """The hex SHA-1 thumbprint, as Windows shows a certificate."""
    return hashlib.sha1(der(cert)).hexdigest().upper()


def test_exchange_metadata_verifies_example_a_actor(pki: Pki) -> None:
    store = KeyStore()
    assert (
        store.add_metadata_document(exchange_metadata(pki.cert_a), METADATA_URL, 1700000000.5) == 1
    )
    assert len(store) == 1 and store.warnings == []
    outer, _ = example_a(pki)
    tok = decode_token(outer)
    assert verify_token(tok, store) == SignatureResult(
        "unsigned", None, "unsigned token (alg none)"
    )

    assert tok.actor_token is not None
    result = verify_token(tok.actor_token, store)
    assert result.status == "verified"
    key = result.key
    assert key is not None
    assert key.source == KeySource("capture", METADATA_URL, 1700000000.5, "s2s-metadata")
    assert key.family == "RSA" and key.usage == "signing"
    assert key.x5t == x5t(pki.cert_a)
    assert key.x5t_s256 == b64u(hashlib.sha256(der(pki.cert_a)).digest())
    assert key.metadata_issuer == EXCHANGE
    assert key.subject == key.issuer == "CN=Microsoft Exchange Server Auth Certificate"
    assert key.not_before == dt.datetime(2023, 1, 1, tzinfo=dt.timezone.utc).timestamp()
    # certificates are also named by the hex SHA-1 thumbprint Windows and Get-AuthConfig show
    thumbprint = hashlib.sha1(der(pki.cert_a)).hexdigest().upper()
    assert key.thumbprint == thumbprint
    assert result.detail == (
        f"RS256 verified with RSA-2048 x5t={x5t(pki.cert_a)} (thumbprint {thumbprint}) "
        f"(s2s-metadata {METADATA_URL})"
    )
    view = result.to_dict()
    assert view["key"]["source"]["location"] == METADATA_URL
    assert view["key"]["not_before"] == "2023-01-01T00:00:00Z"
    json.dumps(view)


def test_sharepoint_cased_metadata_without_keyinfo(pki: Pki) -> None:
    store = KeyStore()
    assert store.add_document(sharepoint_metadata(pki.cert_a), SP_URL, None) == 1
    key = store.find(x5t=x5t(pki.cert_a))[0]
    assert key.usage == "Signing"
    assert key.metadata_issuer == f"00000003-0000-0ff1-ce00-000000000000@{FARM}"
    assert key.source.document == "s2s-metadata"
    app_only = signed(
        {
            "aud": f"00000003-0000-0ff1-ce00-000000000000/sp2019.contoso.com@{FARM}",
            "iss": f"e9134021-0000-4000-8000-000000000002@{FARM}",
            "nbf": "1700000000",
            "exp": "1700043200",
            "nameid": f"6cc2ea04-0000-4000-8000-000000000003@{FARM}",
        },
        pki.rsa_a,
        {"x5t": x5t(pki.cert_a)},
    )
    result = verify_token(decode_token(app_only), store)
    assert result.status == "verified" and result.key is key
    # the actor of example A verifies against the same SharePoint-shaped document
    _, actor = example_a(pki)
    assert verify_token(decode_token(actor), store).status == "verified"


def test_stated_x5t_in_standard_base64_and_hex_lookups(pki: Pki) -> None:
    digest = hashlib.sha1(der(pki.cert_a)).digest()
    std = base64.b64encode(digest).decode()  # with '=' padding, maybe '+' or '/'
    store = KeyStore()
    assert store.add_metadata_document(exchange_metadata(pki.cert_a, std), METADATA_URL, None) == 1
    assert store.warnings == []
    assert len(store.find(x5t=std)) == 1
    assert len(store.find(x5t=x5t(pki.cert_a))) == 1
    assert len(store.find(x5t=digest.hex().upper())) == 1
    assert len(store.find(x5t=":".join(f"{b:02X}" for b in digest))) == 1
    assert store.find(kid=x5t(pki.cert_a))  # ACS uses the thumbprint as kid
    assert store.find(x5t="nope") == []
    assert thumbprint_forms("aa" * 20)[-1] == b64u(bytes.fromhex("aa" * 20))


def test_stated_x5t_that_does_not_match_is_indexed_with_warning(pki: Pki) -> None:
    store = KeyStore()
    doc = exchange_metadata(pki.cert_a, "Hema2LC4Ou4tCewqgrfP7zUc-Lg")
    assert store.add_metadata_document(doc, METADATA_URL, None) == 1
    assert store.warnings == [
        f"{METADATA_URL}: keys[0]: stated x5t Hema2LC4Ou4tCewqgrfP7zUc-Lg differs from the "
        f"certificate's {x5t(pki.cert_a)}"
    ]
    assert store.find(x5t="Hema2LC4Ou4tCewqgrfP7zUc-Lg") == store.find(x5t=x5t(pki.cert_a))


def test_same_document_twice_is_stored_once(pki: Pki) -> None:
    store = KeyStore()
    store.add_metadata_document(exchange_metadata(pki.cert_a), METADATA_URL, 1.0)
    assert store.add_metadata_document(exchange_metadata(pki.cert_a).encode(), "other", 2.0) == 1
    assert len(store) == 1
    assert store.find()[0].source.ts == 1.0  # first source wins


# ------------------------------------------------------------------------ verification outcomes


def test_tampered_actor_is_bad_signature(pki: Pki) -> None:
    store = KeyStore()
    store.add_metadata_document(exchange_metadata(pki.cert_a), METADATA_URL, None)
    _, actor = example_a(pki)
    head, body, sig = actor.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["nameid"] = f"00000007-0000-0ff1-ce00-000000000000@{REALM}"
    tampered = f"{head}.{seg(claims)}.{sig}"
    result = verify_token(decode_token(tampered), store)
    assert result.status == "bad-signature"
    assert result.key is not None and result.key.x5t == x5t(pki.cert_a)
    assert result.detail == (
        "RS256 signature does not match 1 key(s) named by the token "
        f"(RSA-2048 x5t={x5t(pki.cert_a)} (thumbprint {thumb(pki.cert_a)}))"
    )


def test_wrong_key_bad_signature_or_unknown_key(pki: Pki) -> None:
    store = KeyStore()
    store.add_metadata_document(exchange_metadata(pki.cert_a), METADATA_URL, None)
    # signed by B but claims A's thumbprint: the named key does not verify it
    _, forged = example_a(pki, key=pki.rsa_b)
    assert verify_token(decode_token(forged), store).status == "bad-signature"
    # signed by B and naming B's certificate, which the store does not hold
    _, other = example_a(pki, key=pki.rsa_b, thumb=x5t(pki.cert_b))
    result = verify_token(decode_token(other), store)
    assert result == SignatureResult(
        "unknown-key",
        None,
        f"no key with x5t={x5t(pki.cert_b)} (thumbprint {thumb(pki.cert_b)}) among 1 loaded key(s)",
    )
    # no x5t/kid at all: every key of the right family is tried
    anonymous_a = signed({"iss": "x"}, pki.rsa_a, {})
    anonymous_b = signed({"iss": "x"}, pki.rsa_b, {})
    assert verify_token(decode_token(anonymous_a), store).status == "verified"
    result = verify_token(decode_token(anonymous_b), store)
    assert result.status == "unknown-key"
    assert result.detail == "token names no key and none of 1 RS256-capable keys fits"
    assert verify_token(decode_token(anonymous_a), KeyStore()).status == "unknown-key"


def test_hs256_against_rsa_key_is_algorithm_confusion(pki: Pki) -> None:
    store = KeyStore()
    store.add_metadata_document(exchange_metadata(pki.cert_a), METADATA_URL, None)
    public_pem = pki.rsa_a.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for header in ({"alg": "HS256", "typ": "JWT", "x5t": x5t(pki.cert_a)}, {"alg": "HS256"}):
        signing_input = f"{seg(header)}.{seg({'iss': EXCHANGE, 'nameid': EXCHANGE})}"
        mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
        result = verify_token(decode_token(f"{signing_input}.{b64u(mac)}"), store)
        assert result.status == "bad-signature"
        assert result.detail == "token alg HS256 does not fit an RSA key (algorithm confusion?)"
    # RS256 naming an EC key is refused the same way
    ec_store = KeyStore()
    jwks = {"keys": [{"kty": "EC", "crv": "P-256", "kid": "ec-1", **_ec_xy(pki.ec_key)}]}
    ec_store.add_jwks(json.dumps(jwks), "https://idp/jwks", None)
    rs = signed({"a": 1}, pki.rsa_a, {"kid": "ec-1"})
    result = verify_token(decode_token(rs), ec_store)
    assert result.status == "bad-signature"
    assert result.detail == "token alg RS256 does not fit an EC key (algorithm confusion?)"


def _ec_xy(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    numbers = key.public_key().public_numbers()
    return {"x": b64u(numbers.x.to_bytes(32, "big")), "y": b64u(numbers.y.to_bytes(32, "big"))}


def test_es256_ps256_and_eddsa_verified(pki: Pki) -> None:
    rsa_numbers = pki.rsa_b.public_key().public_numbers()
    ed_raw = pki.ed_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    jwks = {
        "keys": [
            {"kty": "EC", "crv": "P-256", "kid": "ec-1", "use": "sig", **_ec_xy(pki.ec_key)},
            {
                "kty": "RSA",
                "kid": "rsa-b",
                "n": b64u(rsa_numbers.n.to_bytes(256, "big")),
                "e": "AQAB",
            },
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "x": b64u(ed_raw)},
        ]
    }
    store = KeyStore()
    assert store.add_jwks(json.dumps(jwks), "https://login.example/keys", 5.0) == 3
    assert [k.family for k in store] == ["EC", "RSA", "OKP"]
    cases = [
        ("ES256", pki.ec_key, "ec-1", "EC"),
        ("PS256", pki.rsa_b, "rsa-b", "RSA"),
        ("RS512", pki.rsa_b, "rsa-b", "RSA"),
        ("EdDSA", pki.ed_key, "ed-1", "OKP"),
    ]
    for alg, key, kid, family in cases:
        token = decode_token(signed({"sub": alg}, key, {"kid": kid}, alg=alg))
        result = verify_token(token, store)
        assert result.status == "verified", alg
        assert result.key is not None and result.key.family == family and result.key.kid == kid
        assert result.key.source == KeySource("capture", "https://login.example/keys", 5.0, "jwks")

    es384 = decode_token(
        signed({"a": 1}, ec.generate_private_key(ec.SECP384R1()), {"kid": "ec-1"}, "ES384")
    )
    result = verify_token(es384, store)
    assert result.status == "bad-signature"
    assert result.detail == "token alg ES384 needs another curve than the key's (EC P-256 kid=ec-1)"


def test_jwks_with_x5c_and_kid_only_token(pki: Pki) -> None:
    thumb = x5t(pki.cert_a)
    jwks = {
        "keys": [
            {
                "kty": "RSA",
                "use": "sig",
                "kid": thumb,
                "x5t": thumb,
                "x5c": [base64.b64encode(der(pki.cert_a)).decode()],
            }
        ]
    }
    store = KeyStore()
    assert (
        store.add_document(
            json.dumps(jwks), "https://login.microsoftonline.com/common/discovery/keys", None
        )
        == 1
    )
    key = store.find(kid=thumb)[0]
    assert key.subject == "CN=Microsoft Exchange Server Auth Certificate"
    assert key.x5t == thumb and key.kid == thumb and key.usage == "sig"
    assert key.source.document == "jwks"
    token = decode_token(signed({"iss": "acs"}, pki.rsa_a, {"kid": thumb}))
    assert token.x5t is None
    assert verify_token(token, store).status == "verified"


def test_jwks_x5c_disagreeing_with_parameters_is_skipped(pki: Pki) -> None:
    numbers = pki.rsa_b.public_key().public_numbers()
    jwks = {
        "keys": [
            {
                "kty": "RSA",
                "n": b64u(numbers.n.to_bytes(256, "big")),
                "e": "AQAB",
                "x5c": [base64.b64encode(der(pki.cert_a)).decode()],
            },
            {"kty": "oct", "k": "c2VjcmV0"},
            {"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"},
        ]
    }
    store = KeyStore()
    assert store.add_jwks(json.dumps(jwks), "jwks", None) == 0
    assert store.warnings == [
        "jwks: keys[0]: x5c certificate and key parameters disagree; key skipped",
        "jwks: keys[1]: holds private or secret key material; only public parts used",
        "jwks: keys[1]: symmetric (oct) key ignored",
        "jwks: keys[2]: bad EC key parameters (ValueError)",
    ]


def test_not_checked_formats(pki: Pki) -> None:
    store = KeyStore()
    store.add_metadata_document(exchange_metadata(pki.cert_a), METADATA_URL, None)
    texts = {
        "jwe": f"{seg({'alg': 'RSA-OAEP', 'enc': 'A256GCM'})}.AAAA.BBBB.CCCC.DDDD",
        "opaque": "EwBwA8l6BAAUO9chh8cJscQLmU",
        "cwt": "cwt=AAEBHAEFAAAAAAAFFQAAAGhwcmluY2lwYWwx",
        "malformed": "eyJhbGci!OiJub25lIn0.eyJhIjoxfQ.",
        "empty": "",
    }
    for fmt, text in texts.items():
        result = verify_token(decode_token(text), store)
        assert result == SignatureResult("not-checked", None, f"{fmt} token: nothing to verify")
    broken_sig = decode_token(f"{seg({'alg': 'RS256'})}.{seg({'a': 1})}.!!!")
    assert verify_token(broken_sig, store).detail == "signature segment did not decode"
    no_alg = decode_token(f"{seg({'typ': 'JWT'})}.{seg({'a': 1})}.c2ln")
    assert verify_token(no_alg, store) == SignatureResult(
        "bad-signature", None, "header has no alg"
    )


# ------------------------------------------------------------------------ sniffing / garbage


def test_add_document_sniffs_and_survives_garbage(pki: Pki) -> None:
    store = KeyStore()
    oidc = {
        "issuer": "https://login.microsoftonline.com/x/v2.0",
        "jwks_uri": "https://login.microsoftonline.com/x/discovery/v2.0/keys",
    }
    assert (
        store.add_document(
            json.dumps(oidc), "https://login/x/.well-known/openid-configuration", 1.0
        )
        == 0
    )
    assert store.add_document(json.dumps(oidc), "again", 2.0) == 0
    assert store.jwks_uris == ["https://login.microsoftonline.com/x/discovery/v2.0/keys"]
    assert store.warnings == []

    garbage: list[str | bytes] = [
        "not json at all",
        "[1, 2]",
        '{"hello": "world"}',
        '{"keys": []}',
        '{"keys": [1, {"keyvalue": {"value": "!!!"}}, {"keyvalue": {"value": "QUJD"}}]}',
        "[" * 100_000 + "]" * 100_000,
        b"\xff\xfe\x00garbage",
        "x" * 2_000_000,
    ]
    for doc in garbage:
        assert store.add_document(doc, "u", None) == 0
        assert store.add_metadata_document(doc, "u", None) == 0
        assert store.add_jwks(doc, "u", None) == 0
    assert len(store) == 0
    assert "u: not JSON; no keys read" in store.warnings
    assert "u: JSON is not an object; no keys read" in store.warnings
    assert "u: not a JWKS, S2S metadata or OpenID configuration document" in store.warnings
    assert "u: keys[0]: not an object" in store.warnings
    assert "u: keys[1]: keyvalue is not a base64 DER certificate" in store.warnings
    assert "u: document too large (2000000 chars); ignored" in store.warnings
    assert len(store.warnings) <= 201


# ------------------------------------------------------------------------ files


def test_add_file_pem_der_jwks_metadata(pki: Pki, tmp_path: Path) -> None:
    pem = tmp_path / "chain.pem"
    pem.write_bytes(
        b"subject=CN = whatever\n"
        + pki.cert_a.public_bytes(serialization.Encoding.PEM)
        + pki.cert_ec.public_bytes(serialization.Encoding.PEM)
    )
    public_pem = tmp_path / "ed.pub.pem"
    public_pem.write_bytes(
        pki.ed_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    cer = tmp_path / "oauth.cer"
    cer.write_bytes(der(pki.cert_b))
    b64cer = tmp_path / "oauth-b64.cer"
    b64cer.write_text(base64.encodebytes(der(pki.cert_b)).decode())
    jwks = tmp_path / "keys.json"
    jwks.write_text(
        json.dumps({"keys": [{"kty": "EC", "crv": "P-256", "kid": "e", **_ec_xy(pki.ec_key)}]})
    )
    meta = tmp_path / "metadata.json"
    meta.write_text(exchange_metadata(pki.cert_a))
    oidc = tmp_path / "openid-configuration"
    oidc.write_text(json.dumps({"jwks_uri": "https://idp/keys"}))

    store = KeyStore()
    assert store.add_file(pem) == 2
    assert [k.family for k in store] == ["RSA", "EC"]
    assert store.find()[0].source == KeySource("file", str(pem), None, "pem")
    assert store.add_file(public_pem) == 1
    assert store.add_file(cer) == 1
    assert store.find(x5t=x5t(pki.cert_b))[0].source.document == "der"
    assert store.add_file(b64cer) == 1  # same certificate: counted, stored once
    assert store.add_file(jwks) == 1  # a bare key: kept apart from chain.pem's EC certificate
    assert store.add_file(meta) == 1
    assert store.add_file(oidc) == 0
    assert store.jwks_uris == ["https://idp/keys"]
    assert len(store) == 5  # RSA + EC certs, Ed25519 key, cert B, bare EC key

    _, actor = example_a(pki)
    result = verify_token(decode_token(actor), store)
    assert result.status == "verified"
    assert result.key is not None and result.key.source.kind == "file"


def test_add_file_errors(pki: Pki, tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01\x02 this is not a key \xff")
    private = tmp_path / "key.pem"
    private.write_bytes(
        pki.rsa_a.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"\n")
    badjson = tmp_path / "bad.json"
    badjson.write_text('{"keys": [}')
    nokeys = tmp_path / "nokeys.json"
    nokeys.write_text('{"keys": []}')

    store = KeyStore()
    expected = {
        junk: f"{junk}: not a PEM/DER certificate or public key, a JWKS or an S2S metadata "
        "document",
        private: f"{private}: no certificate or public key in the PEM data "
        "(only a private key: give the certificate or public key)",
        empty: f"{empty}: file is empty",
        badjson: f"{badjson}: not JSON; no keys read",
        nokeys: f"{nokeys}: key document holds no usable keys",
        tmp_path
        / "missing.pem": f"{tmp_path / 'missing.pem'}: cannot read (No such file or directory)",
        tmp_path: f"{tmp_path}: cannot read (Is a directory)",
    }
    for path, message in expected.items():
        with pytest.raises(KeyFileError) as info:
            store.add_file(path)
        assert str(info.value) == message
        assert "\n" not in str(info.value)
    assert len(store) == 0
