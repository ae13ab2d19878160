"""Which key verifies a token, and what a user is told: keys named by ``x5t`` (any spelling of
the thumbprint) or by ``kid`` (a JWK id, or a thumbprint), tokens naming no key, algorithm
confusion, and the warnings of the documents and files the keys come from. Tokens are signed
with the TEST-ONLY keys in captures/keys (EC and EdDSA keys are made here: none is shipped)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from token_kit import KEYS_DIR, actor_claims, keys, signed, unsigned

from analyzer.oauth.keys import (
    MAX_WARNINGS,
    KeyFileError,
    KeySource,
    KeyStore,
    thumbprint_forms,
    verify_token,
    x5t_to_hex,
)
from analyzer.oauth.tokens import decode_token

URL = "https://mail.contoso.com/autodiscover/metadata/json/1"
ISSUER = "00000002-0000-0ff1-ce00-000000000000@contoso.com"


def tp(x5t: str) -> str:
    """`` (thumbprint HEX)``: the hex SHA-1 Windows shows, decoded here from the base64url x5t."""
    import base64

    raw = base64.urlsafe_b64decode(x5t + "=" * (-len(x5t) % 4))
    return f" (thumbprint {raw.hex().upper()})" if len(raw) == 20 else ""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def metadata(*names: str, **entry: Any) -> str:
    """An S2S metadata document with the certificates of the named test keys."""
    entries = [
        {"usage": "signing", "keyinfo": {"x5t": keys()[n].x5t},
         "keyvalue": {"type": "x509Certificate", "value": b64(keys()[n].der)}, **entry}
        for n in names
    ]  # fmt: skip
    return json.dumps({"id": "_x", "issuer": ISSUER, "keys": entries})


def store_with(*names: str) -> KeyStore:
    store = KeyStore()
    assert store.add_metadata_document(metadata(*names), URL, 1000.0) == len(names)
    return store


def rsa_jwk(name: str, **extra: Any) -> dict[str, Any]:
    numbers = keys()[name].private_key.public_key().public_numbers()
    n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
    return {"kty": "RSA", "n": b64u(n), "e": b64u(numbers.e.to_bytes(3, "big")), **extra}


def kid_token(kid: str, key: str = "exchange", alg: str = "RS256") -> str:
    """A token whose header names its key by ``kid`` only."""
    private = keys()[key].private_key
    return jwt.encode(actor_claims(), private, algorithm=alg, headers={"kid": kid})


def verdict(text: str, store: KeyStore) -> tuple[str, str]:
    result = verify_token(decode_token(text), store)
    return result.status, result.detail


def ex_x5t() -> str:
    return keys()["exchange"].x5t


# -- x5t: the certificate thumbprint, in any spelling --------------------------------------
def test_metadata_key_verifies_a_token_naming_its_x5t() -> None:
    store = store_with("exchange")
    result = verify_token(decode_token(signed(actor_claims())), store)
    assert result.status == "verified"
    assert result.detail == (
        f"RS256 verified with RSA-2048 x5t={ex_x5t()}{tp(ex_x5t())} (s2s-metadata {URL})"
    )
    assert result.key is not None and result.key.to_dict() == {
        "family": "RSA",
        "key_size": 2048,
        "curve": None,
        "x5t": ex_x5t(),
        "x5t_s256": result.key.x5t_s256,
        "kid": None,
        "subject": "O=TEST KEY - oauth-traffic-analyzer,CN=Microsoft Exchange Server Auth "
        "Certificate",
        "issuer": "O=TEST KEY - oauth-traffic-analyzer,CN=Microsoft Exchange Server Auth "
        "Certificate",
        "not_before": "2025-01-01T00:00:00Z",
        "not_after": "2030-01-01T00:00:00Z",
        "usage": "signing",
        "metadata_issuer": ISSUER,
        "source": {"kind": "capture", "location": URL, "ts": 1000.0, "document": "s2s-metadata"},
    }
    assert result.to_dict()["status"] == "verified"
    assert result.key.thumbprint == x5t_to_hex(ex_x5t())
    assert len(result.key.x5t_s256 or "") == 43


def test_thumbprint_spellings_all_find_the_key() -> None:
    store = store_with("exchange")
    x5t = ex_x5t()
    hexed = x5t_to_hex(x5t)
    assert hexed is not None and len(hexed) == 40 and hexed == hexed.upper()
    colons = ":".join(hexed[i : i + 2] for i in range(0, 40, 2))
    spaced = " ".join(hexed[i : i + 2].lower() for i in range(0, 40, 2))
    padded = base64.b64encode(base64.urlsafe_b64decode(x5t + "=")).decode()
    for spelling in (x5t, hexed, hexed.lower(), colons, spaced, padded, f" {x5t} "):
        assert [k.x5t for k in store.find(x5t=spelling)] == [x5t], spelling
        assert [k.x5t for k in store.find(kid=spelling)] == [x5t], spelling
    assert store.find(x5t=hexed[:-2]) == []


def test_thumbprint_forms() -> None:
    hexed = x5t_to_hex(ex_x5t())
    assert thumbprint_forms(ex_x5t()) == [ex_x5t()]
    assert thumbprint_forms(hexed) == [hexed, ex_x5t()]  # type: ignore[list-item]
    assert thumbprint_forms("ab+/cd==") == ["ab-_cd"]
    sha256_hex = "AB" * 32
    assert thumbprint_forms(sha256_hex)[1] == b64u(bytes.fromhex(sha256_hex))
    assert thumbprint_forms("zz" * 20) == ["zz" * 20]
    assert x5t_to_hex("not base64!") is None
    assert x5t_to_hex(b64u(b"short")) is None


def test_unknown_x5t_is_an_unknown_key() -> None:
    store = store_with("exchange")
    acs = keys()["acs"].x5t
    assert verdict(signed(actor_claims(), key="acs"), store) == (
        "unknown-key",
        f"no key with x5t={acs}{tp(acs)} among 1 loaded key(s)",
    )
    assert verdict(signed(actor_claims()), KeyStore()) == (
        "unknown-key",
        f"no key with x5t={ex_x5t()}{tp(ex_x5t())} among 0 loaded key(s)",
    )


def test_named_key_that_does_not_verify_is_a_bad_signature() -> None:
    store = store_with("exchange")
    # signed with the ACS key but naming the Exchange certificate
    forged = jwt.encode(
        actor_claims(), keys()["acs"].private_key, algorithm="RS256",
        headers={"x5t": ex_x5t()},
    )  # fmt: skip
    result = verify_token(decode_token(forged), store)
    assert result.status == "bad-signature"
    assert result.key is not None and result.key.x5t == ex_x5t()
    assert result.detail == (
        "RS256 signature does not match 1 key(s) named by the token "
        f"(RSA-2048 x5t={ex_x5t()}{tp(ex_x5t())})"
    )


def test_several_keys_the_right_one_verifies() -> None:
    store = store_with("acs", "exchange")
    assert len(store) == 2
    assert verdict(signed(actor_claims()), store)[0] == "verified"
    assert verdict(signed(actor_claims(), key="acs"), store)[0] == "verified"


# -- kid: a JWK id, or a thumbprint ---------------------------------------------------------
def test_kid_names_a_jwk_but_x5t_never_does() -> None:
    store = KeyStore()
    jwks = json.dumps({"keys": [rsa_jwk("exchange", kid="key-1", use="sig")]})
    assert store.add_jwks(jwks, "https://login/jwks", 5.0) == 1
    key = next(iter(store))
    assert (key.kid, key.x5t, key.usage, key.describe()) == (
        "key-1",
        None,
        "sig",
        "RSA-2048 kid=key-1",
    )
    assert verdict(kid_token("key-1"), store) == (
        "verified",
        "RS256 verified with RSA-2048 kid=key-1 (jwks https://login/jwks)",
    )
    named_by_x5t = jwt.encode(
        actor_claims(), keys()["exchange"].private_key, algorithm="RS256",
        headers={"x5t": "key-1"},
    )  # fmt: skip
    assert verdict(named_by_x5t, store) == (
        "unknown-key",
        "no key with x5t=key-1 among 1 loaded key(s)",
    )
    assert verdict(kid_token("key-2"), store) == (
        "unknown-key",
        "no key with kid=key-2 among 1 loaded key(s)",
    )
    assert store.find(kid="KEY-1") == []  # a kid is compared exactly


def test_kid_holding_a_thumbprint_finds_the_certificate() -> None:
    store = store_with("exchange")
    assert verdict(kid_token(ex_x5t()), store)[0] == "verified"
    assert verdict(kid_token(x5t_to_hex(ex_x5t()) or ""), store)[0] == "verified"
    both = signed(actor_claims(), kid=True)
    header = decode_token(both)
    assert (header.x5t, header.kid) == (ex_x5t(), ex_x5t())
    assert verdict(both, store)[0] == "verified"
    assert len(store.find(x5t=ex_x5t(), kid=ex_x5t())) == 1  # one key, found twice


def test_wrong_x5t_right_kid_still_finds_the_key() -> None:
    store = KeyStore()
    store.add_jwks(json.dumps({"keys": [rsa_jwk("exchange", kid="k")]}), "j", None)
    text = jwt.encode(
        actor_claims(), keys()["exchange"].private_key, algorithm="RS256",
        headers={"x5t": "nope", "kid": "k"},
    )  # fmt: skip
    assert verdict(text, store)[0] == "verified"
    assert verify_token(decode_token(text), store).detail.endswith("(jwks j)")


# -- tokens that name no key ----------------------------------------------------------------
def test_token_naming_no_key_tries_every_fitting_key() -> None:
    text = jwt.encode(actor_claims(), keys()["acs"].private_key, algorithm="RS256")
    assert verdict(text, store_with("exchange", "acs"))[0] == "verified"
    assert verdict(text, store_with("exchange")) == (
        "unknown-key",
        "token names no key and none of 1 RS256-capable keys fits",
    )
    assert verdict(text, KeyStore()) == (
        "unknown-key",
        "no keys loaded (token names no x5t/kid)",
    )
    result = verify_token(decode_token(text), store_with("exchange"))
    assert result.key is None


# -- algorithms come from the key -----------------------------------------------------------
def test_hmac_token_naming_an_rsa_key_is_algorithm_confusion() -> None:
    store = store_with("exchange")
    pem = keys()["exchange"].cert.public_bytes(serialization.Encoding.PEM)
    text = jwt.api_jws.PyJWS().encode(
        json.dumps(actor_claims()).encode(), b"x" * 32, algorithm="HS256",
        headers={"x5t": ex_x5t()},
    )  # fmt: skip
    result = verify_token(decode_token(text), store)
    assert (result.status, result.detail) == (
        "bad-signature",
        "token alg HS256 does not fit an RSA key (algorithm confusion?)",
    )
    assert result.key is not None
    assert pem  # the public key an attacker would use as the HMAC secret
    unnamed = jwt.api_jws.PyJWS().encode(b"{}", b"x" * 32, algorithm="HS256")
    result = verify_token(decode_token(unnamed), store)
    assert (result.status, result.key) == ("bad-signature", None)


def _ec_store(curve: ec.EllipticCurve, kid: str) -> tuple[KeyStore, ec.EllipticCurvePrivateKey]:
    private = ec.generate_private_key(curve)
    numbers = private.public_key().public_numbers()
    size = (curve.key_size + 7) // 8
    jwk = {
        "kty": "EC", "crv": {256: "P-256", 384: "P-384"}[curve.key_size], "kid": kid,
        "x": b64u(numbers.x.to_bytes(size, "big")), "y": b64u(numbers.y.to_bytes(size, "big")),
    }  # fmt: skip
    store = KeyStore()
    assert store.add_jwks(json.dumps({"keys": [jwk]}), "ec", None) == 1
    return store, private


def test_ec_keys_verify_their_curve_only() -> None:
    store, private = _ec_store(ec.SECP256R1(), "p256")
    good = jwt.encode(actor_claims(), private, algorithm="ES256", headers={"kid": "p256"})
    assert verdict(good, store) == ("verified", "ES256 verified with EC P-256 kid=p256 (jwks ec)")
    store384, private384 = _ec_store(ec.SECP384R1(), "p384")
    wrong = jwt.encode(actor_claims(), private384, algorithm="ES384", headers={"kid": "p384"})
    assert verdict(wrong, store384)[0] == "verified"
    mislabelled = jwt.encode(actor_claims(), private, algorithm="ES256", headers={"kid": "p384"})
    assert verdict(mislabelled, store384) == (
        "bad-signature",
        "token alg ES256 needs another curve than the key's (EC P-384 kid=p384)",
    )
    assert next(iter(store)).to_dict()["curve"] == "P-256"
    assert next(iter(store)).to_dict()["key_size"] is None


def test_eddsa_key_verifies() -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    store = KeyStore()
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64u(raw), "kid": "ed"}
    assert store.add_jwks(json.dumps({"keys": [jwk]}), "okp", None) == 1
    text = jwt.encode(actor_claims(), private, algorithm="EdDSA", headers={"kid": "ed"})
    assert verdict(text, store) == ("verified", "EdDSA verified with OKP Ed25519 kid=ed (jwks okp)")
    rs = jwt.encode(actor_claims(), keys()["exchange"].private_key, "RS256", headers={"kid": "ed"})
    assert verdict(rs, store) == (
        "bad-signature",
        "token alg RS256 does not fit an OKP key (algorithm confusion?)",
    )


# -- tokens that are not signed JWTs --------------------------------------------------------
def test_unsigned_and_undecodable_tokens() -> None:
    store = store_with("exchange")
    assert verdict(unsigned(actor_claims()), store) == ("unsigned", "unsigned token (alg none)")
    head, body, _sig = signed(actor_claims()).split(".")
    assert verdict(f"{head}.{body}.", store) == ("unsigned", "unsigned token (empty signature)")
    assert verdict("opaque-value", store) == ("not-checked", "opaque token: nothing to verify")
    no_alg = b64u(b'{"typ":"JWT"}') + f".{body}.{_sig}"
    assert verdict(no_alg, store) == ("bad-signature", "header has no alg")
    bad_sig = f"{head}.{body}.!!!!"
    status, detail = verdict(bad_sig, store)
    assert status == "bad-signature"
    assert detail in ("signature segment did not decode",) or detail.startswith("RS256 signature")
    tampered = f"{head}.{b64u(json.dumps({**actor_claims(), 'nameid': 'x'}).encode())}.{_sig}"
    assert verdict(tampered, store)[0] == "bad-signature"


# -- documents ------------------------------------------------------------------------------
def test_metadata_property_names_are_case_insensitive() -> None:
    doc = json.dumps({
        "Issuer": ISSUER,
        "Keys": [{"Usage": "signing", "KeyInfo": {"X5T": ex_x5t()},
                  "KeyValue": {"Type": "x509Certificate", "Value": b64(keys()["exchange"].der)}}],
    })  # fmt: skip
    store = KeyStore()
    assert store.add_document(doc, URL, 7.0) == 1
    key = next(iter(store))
    assert (key.usage, key.metadata_issuer, key.source.document) == (
        "signing",
        ISSUER,
        "s2s-metadata",
    )
    assert store.warnings == []


def test_metadata_warnings() -> None:
    store = KeyStore()
    wrong = keys()["acs"].x5t
    doc = json.dumps({"keys": [
        "nope",
        {"keyinfo": {"x5t": wrong}, "keyvalue": {"value": b64(keys()["exchange"].der)}},
        {"keyvalue": {"value": "bm90IGEgY2VydA=="}},
        {"keyvalue": b64(keys()["acs"].der)},
    ]})  # fmt: skip
    assert store.add_metadata_document(doc, "m", None) == 2
    assert store.warnings == [
        "m: keys[0]: not an object",
        f"m: keys[1]: stated x5t {wrong} differs from the certificate's {ex_x5t()}",
        "m: keys[2]: keyvalue is not a base64 DER certificate",
    ]
    # the stated x5t still finds the Exchange key, next to the certificate that really has it
    assert {k.x5t for k in store.find(x5t=wrong)} == {ex_x5t(), wrong}
    assert store.add_metadata_document(json.dumps({"keys": 3}), "n", None) == 0
    assert store.warnings[-1] == "n: metadata document has no keys list"


def test_document_sniffing_and_its_warnings() -> None:
    store = KeyStore()
    oidc = json.dumps({"issuer": "https://sts", "jwks_uri": "https://sts/keys"})
    assert store.add_document(oidc, "o", None) == 0
    assert store.add_document(oidc, "o2", None) == 0
    assert store.jwks_uris == ["https://sts/keys"]
    assert store.add_document(json.dumps({"keys": [{"kty": "RSA", "n": "", "e": ""}]}), "j", 0) == 0
    assert store.add_document("{not json", "a", None) == 0
    assert store.add_document("[1, 2]", "b", None) == 0
    assert store.add_document(json.dumps({"keys": [{"use": "sig"}]}), "c", None) == 0
    assert store.add_document(json.dumps({"hello": 1}), "d", None) == 0
    assert store.add_document(b"\xef\xbb\xbf" + metadata("exchange").encode(), "e", None) == 1
    assert store.add_document(b"x" * (1 << 20 + 1), "f", None) == 0
    assert store.add_document(" " * ((1 << 20) + 1), "g", None) == 0
    assert store.add_document(42, "h", None) == 0  # type: ignore[arg-type]
    assert store.warnings == [
        "j: keys[0]: no usable key (kty 'RSA')",
        "a: not JSON; no keys read",
        "b: JSON is not an object; no keys read",
        "c: key document holds no usable keys",
        "d: not a JWKS, S2S metadata or OpenID configuration document",
        f"f: document too large ({1 << 21} bytes); ignored",
        f"g: document too large ({(1 << 20) + 1} chars); ignored",
        "h: document is not text; ignored",
    ]


def test_jwks_warnings() -> None:
    store = KeyStore()
    private_jwk = rsa_jwk("exchange", kid="p", d="secret")
    bad_e = {**rsa_jwk("acs"), "e": b64u(b"\x01")}
    mismatch = {**rsa_jwk("exchange"), "x5c": [b64(keys()["acs"].der)]}
    doc = json.dumps({"keys": [
        private_jwk, {"kty": "oct", "k": "c2VjcmV0"}, {"kty": "XYZ"}, bad_e, mismatch, 7,
        {"kty": "EC", "crv": "P-999", "x": "AA", "y": "AA"},
        {"kty": "OKP", "crv": "X25519", "x": b64u(b"\x01" * 32)},
        {"kty": "RSA", "x5c": ["bm90"]},
    ]})  # fmt: skip
    assert store.add_jwks(doc, "J", None) == 1
    assert store.warnings == [
        "J: keys[0]: holds private or secret key material; only public parts used",
        "J: keys[1]: holds private or secret key material; only public parts used",
        "J: keys[1]: symmetric (oct) key ignored",
        "J: keys[2]: no usable key (kty 'XYZ')",
        "J: keys[3]: implausible RSA parameters ignored",
        "J: keys[4]: x5c certificate and key parameters disagree; key skipped",
        "J: keys[5]: not an object",
        "J: keys[6]: EC curve 'P-999' unsupported or coordinates missing",
        "J: keys[7]: OKP curve 'X25519' cannot sign",
        "J: keys[8]: x5c[0] is not a base64 DER certificate",
    ]
    assert store.add_jwks(json.dumps({"nokeys": 1}), "K", None) == 0
    assert store.warnings[-1] == "K: JWKS has no keys list"


def test_jwks_certificate_gives_the_thumbprint() -> None:
    store = KeyStore()
    jwk = {**rsa_jwk("exchange", kid="c"), "x5c": [b64(keys()["exchange"].der)]}
    assert store.add_jwks(json.dumps({"keys": [jwk]}), "J", None) == 1
    assert [k.x5t for k in store.find(x5t=ex_x5t())] == [ex_x5t()]
    assert [k.kid for k in store.find(kid="c")] == ["c"]


def test_same_key_twice_is_stored_once_first_source_wins() -> None:
    store = KeyStore()
    store.add_metadata_document(metadata("exchange"), "first", 1.0)
    store.add_metadata_document(metadata("exchange"), "second", 2.0)
    assert len(store) == 1
    assert next(iter(store)).source.location == "first"
    assert store.find() == list(store)


def test_store_is_bounded() -> None:
    store = KeyStore(max_keys=1)
    assert store.add_metadata_document(metadata("exchange", "acs"), "m", None) == 1
    assert len(store) == 1
    assert store.warnings == ["key store full (1 keys); further keys dropped"]
    noisy = KeyStore()
    for i in range(MAX_WARNINGS + 5):
        noisy.add_document("x", f"d{i}", None)
    assert len(noisy.warnings) == MAX_WARNINGS + 1
    assert noisy.warnings[-1] == "further warnings suppressed"
    long = KeyStore()
    long.add_document("x", "u" * 400, None)
    assert len(long.warnings[0]) == 300


# -- key files ------------------------------------------------------------------------------
def test_key_files(tmp_path: Path) -> None:
    store = KeyStore()
    assert store.add_file(KEYS_DIR / "exchange.cert.pem") == 1
    key = next(iter(store))
    assert (key.source.kind, key.source.document, key.source.ts) == ("file", "pem", None)
    assert key.x5t == ex_x5t()
    der = tmp_path / "acs.cer"
    der.write_bytes(keys()["acs"].der)
    assert store.add_file(der) == 1
    b64file = tmp_path / "sfb.b64"
    b64file.write_text(b64(keys()["sfb"].der) + "\n")
    assert store.add_file(b64file) == 1
    assert {k.source.document for k in store} == {"pem", "der"}
    public = tmp_path / "pub.pem"
    public.write_bytes(
        keys()["exchange"]
        .private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert KeyStore().add_file(public) == 1
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [rsa_jwk("exchange", kid="f")]}))
    assert KeyStore().add_file(jwks) == 1


def test_unusable_key_files_say_why(tmp_path: Path) -> None:
    cases = {
        "private.pem": (KEYS_DIR / "exchange.key.pem").read_bytes(),
        "empty.pem": b" \r\n",
        "junk.bin": b"\x00\x01garbage",
        "nokeys.json": json.dumps({"keys": []}).encode(),
        "list.json": b"[1]",
    }
    messages = {}
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(KeyFileError) as info:
            KeyStore().add_file(path)
        messages[name] = str(info.value).removeprefix(f"{path}: ")
    assert messages == {
        "private.pem": "no certificate or public key in the PEM data (only a private key: "
        "give the certificate or public key)",
        "empty.pem": "file is empty",
        "junk.bin": "not a PEM/DER certificate or public key, a JWKS or an S2S metadata document",
        "nokeys.json": "key document holds no usable keys",
        "list.json": "JSON is not an object; no keys read",
    }
    with pytest.raises(KeyFileError, match=r"nope\.pem: cannot read"):
        KeyStore().add_file(tmp_path / "nope.pem")
    oidc = tmp_path / "oidc.json"
    oidc.write_text(json.dumps({"jwks_uri": "https://x/keys"}))
    store = KeyStore()
    assert store.add_file(oidc) == 0
    assert store.jwks_uris == ["https://x/keys"]


# -- where each key came from, as the token table shows it ----------------------------------
def _only(store: KeyStore) -> Any:
    (key,) = store
    return key


def test_key_sources_name_kind_place_time_and_document() -> None:
    store = KeyStore()
    store.add_document(metadata("exchange"), URL, 12.5)
    assert _only(store).source == KeySource("capture", URL, 12.5, "s2s-metadata")
    store = KeyStore()
    store.add_document(json.dumps({"keys": [rsa_jwk("acs", kid="a")]}), "https://j", 3.0)
    assert _only(store).source == KeySource("capture", "https://j", 3.0, "jwks")
    store = KeyStore()
    store.add_jwks(json.dumps({"keys": [rsa_jwk("acs", kid="a")]}), "https://j", 4.0)
    assert _only(store).source == KeySource("capture", "https://j", 4.0, "jwks")


def test_metadata_without_issuer_text_and_with_bare_keyvalue() -> None:
    der = b64(keys()["acs"].der)
    doc = {"issuer": 5, "keys": [{"keyinfo": "not-a-dict", "keyvalue": der, "usage": 7}]}
    store = KeyStore()
    assert store.add_metadata_document(json.dumps(doc), "m", None) == 1
    key = _only(store)
    assert (key.metadata_issuer, key.usage, key.x5t) == (None, None, keys()["acs"].x5t)
    assert store.warnings == []


def test_metadata_with_a_bare_public_key_keeps_the_stated_thumbprint() -> None:
    spki = (
        keys()["exchange"]
        .private_key.public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    doc = {"issuer": ISSUER, "keys": [
        {"usage": "signing", "keyinfo": {"x5t": "stated-x5t"}, "keyvalue": {"value": b64(spki)}},
    ]}  # fmt: skip
    store = KeyStore()
    assert store.add_metadata_document(json.dumps(doc), "m", 1.0) == 1
    key = _only(store)
    assert (key.x5t, key.usage, key.metadata_issuer, key.subject) == (
        "stated-x5t", "signing", ISSUER, None,
    )  # fmt: skip
    assert key.source == KeySource("capture", "m", 1.0, "s2s-metadata")
    assert verdict(jwt.encode(actor_claims(), keys()["exchange"].private_key, "RS256",
                              headers={"x5t": "stated-x5t"}), store)[0] == "verified"  # fmt: skip


def test_jwk_fields_are_kept() -> None:
    jwk = {**rsa_jwk("exchange"), "kid": "k1", "use": "sig", "x5t": "t1", "x5t#S256": "s1"}
    store = KeyStore()
    assert store.add_jwks(json.dumps({"keys": [jwk]}), "J", None) == 1
    key = _only(store)
    assert (key.kid, key.usage, key.x5t, key.x5t_s256) == ("k1", "sig", "t1", "s1")
    assert store.find(x5t="t1") == [key] == store.find(x5t="s1") == store.find(kid="k1")
    cert_jwk = {**jwk, "x5c": [b64(keys()["exchange"].der)]}
    store = KeyStore()
    assert store.add_jwks(json.dumps({"keys": [cert_jwk, cert_jwk]}), "J", None) == 2
    key = _only(store)
    assert (key.kid, key.usage, key.x5t) == ("k1", "sig", ex_x5t())
    assert store.find(x5t="t1") == [key] and store.find(x5t="s1") == [key]
    differs = f"stated x5t t1 differs from the certificate's {ex_x5t()}"
    assert store.warnings == [f"J: keys[0]: {differs}", f"J: keys[1]: {differs}"]


def test_jwk_private_parts_each_warn() -> None:
    for name in ("d", "p", "q", "k"):
        store = KeyStore()
        store.add_jwks(json.dumps({"keys": [{**rsa_jwk("acs"), name: "AQ"}]}), "J", None)
        assert store.warnings == [
            "J: keys[0]: holds private or secret key material; only public parts used"
        ], name
    store = KeyStore()
    store.add_jwks(json.dumps({"keys": [{"n": "AQ", "e": "AQAB"}]}), "J", None)
    assert store.warnings == ["J: keys[0]: no usable key (kty None)"]
    store = KeyStore()
    store.add_jwks(json.dumps({"keys": [{**rsa_jwk("acs"), "x5c": []}]}), "J", None)
    assert (len(store), store.warnings) == (1, [])
    store = KeyStore()
    store.add_jwks(json.dumps({"keys": [{**rsa_jwk("acs"), "x5c": [5]}]}), "J", None)
    assert (len(store), store.warnings) == (1, [])


def test_jwks_uris_are_capped_at_100() -> None:
    store = KeyStore()
    for i in range(105):
        store.add_document(json.dumps({"jwks_uri": f"https://sts/{i}"}), "o", None)
    assert len(store.jwks_uris) == 100 and store.jwks_uris[-1] == "https://sts/99"


def test_pem_files_with_several_blocks(tmp_path: Path) -> None:
    cert = keys()["exchange"].cert.public_bytes(serialization.Encoding.PEM)
    acs_public = keys()["acs"].private_key.public_key()
    public = acs_public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pkcs1 = acs_public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    private = (KEYS_DIR / "sfb.key.pem").read_bytes()
    x509_label = cert.replace(b"CERTIFICATE-----", b"X509 CERTIFICATE-----")
    broken = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    broken_public = b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
    other = b"-----BEGIN DH PARAMETERS-----\nAAAA\n-----END DH PARAMETERS-----\n"
    path = tmp_path / "bundle.pem"
    path.write_bytes(private + private + broken + broken_public + other + public + cert)
    store = KeyStore()
    assert store.add_file(path) == 2
    assert {k.source for k in store} == {KeySource("file", str(path), None, "pem")}
    assert store.warnings == [
        f"{path}: unreadable CERTIFICATE block",
        f"{path}: unreadable PUBLIC KEY block",
        f"{path}: PEM block 'DH PARAMETERS' ignored",
        f"{path}: 2 private key block(s) ignored (never loaded)",
    ]
    for label_file, data in (("x509.pem", x509_label), ("pkcs1.pem", pkcs1)):
        one = tmp_path / label_file
        one.write_bytes(data)
        assert KeyStore().add_file(one) == 1, label_file


def test_der_and_base64_files(tmp_path: Path) -> None:
    spki = (
        keys()["acs"]
        .private_key.public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    der = tmp_path / "acs.der"
    der.write_bytes(spki)
    store = KeyStore()
    assert store.add_file(der) == 1
    assert _only(store).source == KeySource("file", str(der), None, "der")
    bom = tmp_path / "bom.b64"
    bom.write_bytes(b"\xef\xbb\xbf \r\n" + b64(keys()["acs"].der).encode() + b"\r\n")
    store = KeyStore()
    assert store.add_file(bom) == 1
    assert _only(store).source == KeySource("file", str(bom), None, "der")


def test_files_with_keys_that_cannot_sign(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import x25519

    public = x25519.X25519PrivateKey.generate().public_key()
    path = tmp_path / "x25519.der"
    path.write_bytes(
        public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(KeyFileError) as info:
        KeyStore().add_file(path)
    assert str(info.value) == f"{path}: unsupported key type X25519PublicKey"


def test_file_size_cap(tmp_path: Path) -> None:
    from analyzer.oauth.keys import FILE_CAP

    at_cap = tmp_path / "at.bin"
    with at_cap.open("wb") as fh:
        fh.truncate(FILE_CAP)
    with pytest.raises(KeyFileError) as info:
        KeyStore().add_file(at_cap)
    assert "too large" not in str(info.value)
    over = tmp_path / "over.bin"
    with over.open("wb") as fh:
        fh.truncate(FILE_CAP + 1)
    with pytest.raises(KeyFileError) as info:
        KeyStore().add_file(over)
    assert str(info.value) == f"{over}: too large for a key file (> {FILE_CAP} bytes)"


def test_json_files_name_their_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(KeyFileError) as info:
        KeyStore().add_file(bad)
    assert str(info.value) == f"{bad}: not JSON; no keys read"
    meta = tmp_path / "meta.json"
    meta.write_text(metadata("acs"))
    store = KeyStore()
    assert store.add_file(meta) == 1
    assert _only(store).source == KeySource("file", str(meta), None, "s2s-metadata")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [rsa_jwk("acs", kid="z")]}))
    store = KeyStore()
    store.add_file(jwks)
    assert _only(store).source == KeySource("file", str(jwks), None, "jwks")


def test_signature_result_to_dict() -> None:
    result = verify_token(decode_token(signed(actor_claims())), store_with("exchange"))
    data = result.to_dict()
    assert (data["status"], data["detail"]) == ("verified", result.detail)
    assert data["key"] == result.key.to_dict()  # type: ignore[union-attr]
    unknown = verify_token(decode_token(signed(actor_claims())), KeyStore()).to_dict()
    assert unknown == {
        "status": "unknown-key",
        "detail": f"no key with x5t={ex_x5t()}{tp(ex_x5t())} among 0 loaded key(s)",
        "key": None,
    }


# -- property names: matched case-insensitively, the exact spelling first -------------------
def _shadowed(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with every property shadowed by an UPPERCASE spelling holding null: the exact
    spelling must win over a case-insensitive match."""
    return {**{name.upper(): None for name in obj}, **obj}


def test_metadata_exact_property_names_win_over_other_spellings() -> None:
    entry = _shadowed({
        "usage": "signing",
        "keyinfo": _shadowed({"x5t": ex_x5t()}),
        "keyvalue": _shadowed({"type": "x509Certificate", "value": b64(keys()["exchange"].der)}),
    })  # fmt: skip
    doc = _shadowed({"issuer": ISSUER, "keys": [entry]})
    store = KeyStore()
    assert store.add_document(json.dumps(doc), "m", 1.0) == 1
    key = _only(store)
    assert (key.usage, key.metadata_issuer, key.source.document) == (
        "signing",
        ISSUER,
        "s2s-metadata",
    )
    assert store.warnings == []
    only_keyvalue = _shadowed({"keyvalue": b64(keys()["acs"].der)})
    store = KeyStore()
    assert store.add_document(json.dumps({"keys": [only_keyvalue]}), "n", None) == 1
    only_keyinfo = _shadowed({"keyinfo": {"x5t": "t"}})
    store = KeyStore()
    assert store.add_document(json.dumps({"keys": [only_keyinfo]}), "o", None) == 0
    assert store.warnings == ["o: keys[0]: keyvalue is not a base64 DER certificate"]


def test_jwk_exact_property_names_win_over_other_spellings() -> None:
    jwk = {**rsa_jwk("exchange"), "kid": "k1", "use": "sig", "x5t": "t1", "x5t#S256": "s1",
           "x5c": [b64(keys()["exchange"].der)]}  # fmt: skip
    doc = _shadowed({"keys": [{**_shadowed(jwk), "x5t#s256": None}]})
    store = KeyStore()
    assert store.add_document(json.dumps(doc), "J", 2.0) == 1
    key = _only(store)
    assert (key.kid, key.usage, key.source.document) == ("k1", "sig", "jwks")
    assert store.find(x5t="t1") == [key] == store.find(x5t="s1")
    for name in ("d", "p", "q", "k"):
        store = KeyStore()
        store.add_jwks(json.dumps({"keys": [_shadowed({**rsa_jwk("acs"), name: "AQ"})]}), "J", 0)
        assert store.warnings == [
            "J: keys[0]: holds private or secret key material; only public parts used"
        ], name


def test_curve_names_use_the_exact_property() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    numbers = private.public_key().public_numbers()
    jwk = _shadowed({"kty": "EC", "crv": "P-256", "x": b64u(numbers.x.to_bytes(32, "big")),
                     "y": b64u(numbers.y.to_bytes(32, "big"))})  # fmt: skip
    store = KeyStore()
    assert store.add_jwks(json.dumps({"keys": [jwk]}), "E", None) == 1
    raw = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    okp = _shadowed({"kty": "OKP", "crv": "Ed25519", "x": b64u(raw)})
    assert KeyStore().add_jwks(json.dumps({"keys": [okp]}), "O", None) == 1


def test_openid_configuration_exact_jwks_uri(tmp_path: Path) -> None:
    oidc = json.dumps(_shadowed({"issuer": "https://sts", "jwks_uri": "https://sts/keys"}))
    store = KeyStore()
    assert store.add_document(oidc, "o", None) == 0
    assert (store.jwks_uris, store.warnings) == (["https://sts/keys"], [])
    path = tmp_path / "oidc.json"
    path.write_text(oidc)
    assert store.add_file(path) == 0  # already known: still a usable file
