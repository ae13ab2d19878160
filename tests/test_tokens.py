"""Tests for analyzer.oauth.tokens: decoding bearer tokens (no signature checks here)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from analyzer.oauth.tokens import (
    MAX_TOKEN_CHARS,
    DecodedToken,
    TokenDecoder,
    b64decode_lenient,
    decode_token,
    iso_utc,
)

REALM = "contoso.com"
EXCHANGE = f"00000002-0000-0ff1-ce00-000000000000@{REALM}"
SFB_AUD = f"00000004-0000-0ff1-ce00-000000000000/sfbpool01.contoso.com@{REALM}"
TENANT = "11111111-2222-3333-4444-555555555555"
X5T = "Hema2LC4Ou4tCewqgrfP7zUc-Lg"


def seg(obj: Any) -> str:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


NONE = seg({"alg": "none"})


def unsigned(payload: Any, header: Any = None) -> str:
    return f"{seg(header or {'typ': 'JWT', 'alg': 'none'})}.{seg(payload)}."


def sha12(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def signed(payload: dict[str, Any], key: Any, headers: dict[str, Any], alg: str = "RS256") -> str:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return jwt.api_jws.encode(body, key, algorithm=alg, headers={"typ": "JWT", **headers})


# --------------------------------------------------------------- section 9 examples (hand-made)

ACTOR_A = {
    "aud": SFB_AUD,
    "iss": EXCHANGE,
    "nbf": "1700000000",
    "exp": "1700086400",
    "nameid": EXCHANGE,
    "trustedfordelegation": "true",
}


def example_a(key: Any) -> tuple[str, str]:
    actor = signed(ACTOR_A, key, {"x5t": X5T})
    outer = unsigned(
        {
            "aud": SFB_AUD,
            "iss": EXCHANGE,
            "nbf": "1700000000",
            "exp": "1700028800",
            "nameid": "S-1-5-21-1111111111-2222222222-3333333333-1104",
            "nii": "urn:office:idp:activedirectory",
            "upn": "alice@contoso.com",
            "smtp": "alice@contoso.com",
            "sip": "alice@contoso.com",
            "actortoken": actor,
        }
    )
    return outer, actor


def test_example_a_outer_unsigned_with_signed_actor(rsa_key: Any) -> None:
    outer, actor = example_a(rsa_key)
    tok = decode_token(outer)
    assert tok.format == "jwt-unsigned"
    assert tok.fingerprint == sha12(outer)
    assert tok.size == len(outer)
    assert tok.header == {"typ": "JWT", "alg": "none"}
    assert (tok.alg, tok.typ, tok.kid, tok.x5t) == ("none", "JWT", None, None)
    assert tok.iss == EXCHANGE
    assert tok.aud == SFB_AUD and tok.audiences == (SFB_AUD,)
    assert tok.nameid == "S-1-5-21-1111111111-2222222222-3333333333-1104"
    assert tok.nii == "urn:office:idp:activedirectory"
    assert (tok.upn, tok.smtp, tok.sip) == ("alice@contoso.com",) * 3
    assert (tok.nbf, tok.exp, tok.iat) == (1700000000.0, 1700028800.0, None)
    assert tok.claims is not None and tok.claims["nbf"] == "1700000000"  # raw value kept
    assert tok.time_notes == ()
    assert tok.problems == ()
    assert tok.signature == b""

    inner = tok.actor_token
    assert inner is not None
    assert tok.actor_fp == inner.fingerprint == sha12(actor)
    assert inner.format == "jwt"
    assert inner.header == {"alg": "RS256", "typ": "JWT", "x5t": X5T}
    assert (inner.alg, inner.x5t) == ("RS256", X5T)
    assert inner.nameid == EXCHANGE == tok.iss  # the S2S rule: outer iss == actor nameid
    assert (inner.nbf, inner.exp) == (1700000000.0, 1700086400.0)
    assert inner.claims == ACTOR_A
    head, body, sig = actor.split(".")
    assert inner.signing_input == f"{head}.{body}".encode()
    assert inner.signature == b64decode_lenient(sig) and len(inner.signature) == 256
    assert inner.actor_token is None and inner.problems == ()


def test_example_b_acs_actor_numeric_times(rsa_key: Any) -> None:
    actor_claims = {
        "aud": f"00000002-0000-0ff1-ce00-000000000000/outlook.office365.com@{TENANT}",
        "iss": f"00000001-0000-0000-c000-000000000000@{TENANT}",
        "iat": 1700000000,
        "nbf": 1700000000,
        "exp": 1700086400,
        "identityprovider": f"00000001-0000-0000-c000-000000000000@{TENANT}",
        "nameid": f"00000002-0000-0ff1-ce00-000000000000@{TENANT}",
        "oid": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "sub": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "trustedfordelegation": "true",
    }
    actor = signed(actor_claims, rsa_key, {"x5t": X5T, "kid": X5T})
    outer = unsigned(
        {
            "aud": actor_claims["aud"],
            "iss": actor_claims["nameid"],
            "nbf": "1700000100",
            "exp": "1700028900",
            "upn": "alice@contoso.com",
            "smtp": "alice@contoso.com",
            "sip": "alice@contoso.com",
            "actortoken": actor,
        }
    )
    tok = decode_token(outer)
    assert tok.format == "jwt-unsigned" and tok.problems == ()
    assert (tok.nbf, tok.exp) == (1700000100.0, 1700028900.0)
    inner = tok.actor_token
    assert inner is not None and inner.format == "jwt"
    assert (inner.kid, inner.x5t) == (X5T, X5T)
    assert inner.iss == f"00000001-0000-0000-c000-000000000000@{TENANT}"
    assert (inner.iat, inner.nbf, inner.exp) == (1700000000.0, 1700000000.0, 1700086400.0)
    assert inner.sub == "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    assert inner.claims is not None and inner.claims["exp"] == 1700086400


def test_example_c_sharepoint_app_only(rsa_key: Any) -> None:
    farm = "52aa6841-0000-4000-8000-000000000001"
    claims = {
        "aud": f"00000003-0000-0ff1-ce00-000000000000/sp2019.contoso.com@{farm}",
        "iss": f"e9134021-0000-4000-8000-000000000002@{farm}",
        "nbf": "1700000000",
        "exp": "1700043200",
        "nameid": f"6cc2ea04-0000-4000-8000-000000000003@{farm}",
    }
    text = signed(claims, rsa_key, {"x5t": X5T})
    tok = decode_token(text)
    assert tok.format == "jwt"
    assert tok.actor_token is None and tok.actor_fp is None
    assert tok.nameid == f"6cc2ea04-0000-4000-8000-000000000003@{farm}"
    assert tok.exp == 1700043200.0
    assert iso_utc(tok.exp) == "2023-11-15T10:13:20Z"
    assert tok.problems == ()


# ---------------------------------------------------------------------------------- to_dict


def test_to_dict_replaces_actortoken_and_hides_text(rsa_key: Any) -> None:
    outer, actor = example_a(rsa_key)
    tok = decode_token(outer)
    view = tok.to_dict()
    dumped = json.dumps(view)
    assert outer not in dumped and actor not in dumped
    assert "token" not in view
    assert view["claims"]["actortoken"] == f"<actor token fp={sha12(actor)}>"
    assert view["actor_fp"] == sha12(actor)
    assert view["actor_token"]["format"] == "jwt"
    assert view["actor_token"]["claims"] == ACTOR_A
    assert view["actor_token"]["x5t"] == X5T
    assert view["nbf"] == 1700000000.0 and view["nbf_iso"] == "2023-11-14T22:13:20Z"
    assert view["exp_iso"] == "2023-11-15T06:13:20Z"
    assert view["iat"] is None and view["iat_iso"] is None
    assert view["audiences"] == [SFB_AUD]
    # the decoded claims themselves are untouched
    assert tok.claims is not None and tok.claims["actortoken"] == actor

    revealed = tok.to_dict(reveal_secrets=True)
    assert revealed["token"] == outer
    assert revealed["actor_token"]["token"] == actor
    assert revealed["claims"]["actortoken"] == f"<actor token fp={sha12(actor)}>"


def test_repr_never_shows_token_text(rsa_key: Any) -> None:
    outer, actor = example_a(rsa_key)
    tok = decode_token(outer)
    text = repr(tok)
    assert outer not in text and actor not in text
    assert "signing_input" not in text and "signature=" not in text
    assert isinstance(hash(tok), int)


def test_secret_claims_redacted_unless_revealed() -> None:
    text = unsigned({"iss": "x", "refreshtoken": "rt-secret-value", "aud": ["a", "b"]})
    view = decode_token(text).to_dict()
    assert view["claims"]["refreshtoken"] == f"<redacted fp={sha12('rt-secret-value')}>"
    assert "rt-secret-value" not in json.dumps(view)
    assert view["aud"] == "a" and view["audiences"] == ["a", "b"]
    assert decode_token(text).to_dict(True)["claims"]["refreshtoken"] == "rt-secret-value"


# ---------------------------------------------------------------------------------- times


def test_filetime_looking_exp_converted_and_labelled() -> None:
    tok = decode_token(unsigned({"nbf": "129592882368666656", "exp": 129592882368666656}))
    assert tok.time_notes == (
        "nbf looks like a Windows FILETIME",
        "exp looks like a Windows FILETIME",
    )
    assert tok.exp == pytest.approx(1314814636.8666656)
    assert tok.nbf == pytest.approx(1314814636.8666656)
    assert tok.claims == {"nbf": "129592882368666656", "exp": 129592882368666656}
    assert tok.to_dict()["exp_iso"] == "2011-08-31T18:17:16Z"


def test_millisecond_times_and_non_numeric_times() -> None:
    tok = decode_token(unsigned({"exp": 1700000000000, "nbf": "soon", "iat": True}))
    assert tok.exp == 1700000000.0
    assert tok.time_notes == ("exp looks like unix milliseconds",)
    assert tok.nbf is None and tok.iat is None
    assert tok.problems == ("nbf is not a number (string)", "iat is not a number (boolean)")
    huge = decode_token(unsigned({"exp": "1e400", "iat": 1e300}))
    assert huge.exp is None and huge.problems[0] == "exp is not a number (string)"
    assert huge.iat == pytest.approx(1e300 / 1e7 - 11_644_473_600)
    assert huge.to_dict()["iat_iso"] is None  # out of datetime range, no exception


# ---------------------------------------------------------------------------------- formats


def test_empty_cwt_opaque_and_jwe() -> None:
    empty = decode_token("")
    assert (empty.format, empty.fingerprint, empty.problems) == ("empty", "e3b0c44298fc", ())
    assert decode_token("   ").format == "empty"

    cwt = decode_token("cwt=AAEBHAEFAAAAAAAFFQAAAGhwcmluY2lwYWwx")
    assert cwt.format == "cwt" and cwt.header is None and cwt.problems == ()
    assert "token" not in cwt.to_dict()
    assert decode_token("cwt=").problems == ("empty web ticket after cwt=",)

    assert decode_token("ya29.a0AfH6SMBxyz").format == "opaque"
    assert decode_token("EwBwA8l6BAAUO9chh8cJscQLmU").format == "opaque"
    assert decode_token("abc.def.ghi").format == "opaque"

    header = {"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": "enc-1", "typ": "JWT"}
    jwe = decode_token(f"{seg(header)}.AAAA.BBBBBBBBBBBBBBBB.CCCCCCCC.DDDDDDDDDDDDDDDDDDDDDA")
    assert jwe.format == "jwe"
    assert jwe.header == header
    assert (jwe.alg, jwe.enc, jwe.kid, jwe.typ) == ("RSA-OAEP-256", "A256GCM", "enc-1", "JWT")
    assert jwe.claims is None and jwe.signing_input == b"" and jwe.problems == ()


def test_unsigned_variants_and_exchange_layer_rules(rsa_key: Any) -> None:
    none_with_sig = decode_token(f"{seg({'alg': 'none'})}.{seg({'a': 1})}.c2ln")
    assert none_with_sig.format == "jwt-unsigned"
    assert none_with_sig.problems == ("alg none but a signature is present",)

    empty_sig = decode_token(f"{seg({'alg': 'RS256', 'x5t': X5T})}.{seg({'a': 1})}.")
    assert empty_sig.format == "jwt-unsigned"
    assert empty_sig.problems == ("alg RS256 but the signature is empty",)

    no_alg = decode_token(f"{seg({'typ': 'JWT'})}.{seg({'a': 1})}.c2ln")
    assert no_alg.format == "jwt" and no_alg.problems == ("header has no alg",)

    inner_unsigned = decode_token(unsigned({"actortoken": unsigned({"nameid": "x"})}))
    assert inner_unsigned.actor_token is not None
    assert inner_unsigned.actor_token.format == "jwt-unsigned"
    assert inner_unsigned.problems == (
        "the inner actor token must be signed (Exchange error 2002)",
    )

    _, actor = example_a(rsa_key)
    outer_signed = decode_token(signed({"actortoken": actor}, rsa_key, {"x5t": X5T}))
    assert outer_signed.format == "jwt"
    assert outer_signed.problems == ("the user context must be unsigned (Exchange error 2001)",)


def test_standard_base64_alphabet_and_padding_tolerated() -> None:
    claims = {"q": "???>>>", "iss": "i"}
    raw = json.dumps(claims).encode()
    std = base64.b64encode(raw).decode()
    assert "/" in std or "+" in std
    std_header = base64.b64encode(b'{"alg":"none"}').decode()
    tok = decode_token(f"{std_header}.{std}.")
    assert tok.format == "jwt-unsigned" and tok.claims == claims and tok.problems == ()
    assert b64decode_lenient("Pz8_") == b64decode_lenient("Pz8/") == b"???"
    assert b64decode_lenient("YQ") == b64decode_lenient("YQ==") == b"a"
    assert b64decode_lenient("Y") is None and b64decode_lenient("a b") is None


def test_aud_list_appid_and_duplicate_keys() -> None:
    text = seg({"alg": "none"}) + "." + seg(b'{"iss":"a","iss":"b","aud":["x",7,{}],"azp":"c"}')
    tok = decode_token(text + ".")
    assert tok.iss == "b"
    assert tok.audiences == ("x", "7") and tok.aud == "x"
    assert tok.appid == "c"
    assert tok.problems == ("claims: duplicate key 'iss' (the last one counts)",)


# ---------------------------------------------------------------------------------- hostile


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        ("eyJhbGci!OiJub25lIn0.eyJhIjoxfQ.", ("header: bad base64url",)),
        (seg(b'{"alg":"none"') + "." + seg({"a": 1}) + ".", ("header: invalid JSON",)),
        (NONE + "." + seg(b'{"a":1') + ".", ("claims: invalid JSON",)),
        (f"{seg({'alg': 'none'})}.{seg([1, 2])}.", ("claims: not a JSON object (list)",)),
        (f"{seg([1])}.{seg({'a': 1})}.", ("header: not a JSON object (list)",)),
        (NONE + "." + seg(b"\xff\xfe") + ".", ("claims: not UTF-8",)),
        (NONE + "." + seg(b'{"a":NaN}') + ".", ("claims: invalid JSON",)),
        (
            f"{seg({'alg': 'none'})}.{seg({'a': 1})}.x.y",
            ("4 dot-separated parts (a JWT has 3, a JWE 5)",),
        ),
        (
            f"{seg({'alg': 'none'})}.{seg({'a': 1})}",
            ("2 dot-separated parts (a JWT has 3, a JWE 5)",),
        ),
    ],
)
def test_malformed_tokens(text: str, problems: tuple[str, ...]) -> None:
    tok = decode_token(text)
    assert tok.format == "malformed"
    assert tok.problems == problems
    assert tok.fingerprint == sha12(text)


def test_bad_signature_base64_keeps_format() -> None:
    tok = decode_token(f"{seg({'alg': 'RS256'})}.{seg({'a': 1})}.!!!")
    assert tok.format == "jwt" and tok.signature == b""
    assert tok.problems == ("signature: bad base64url",)


def test_oversized_and_deeply_nested_tokens_do_not_raise() -> None:
    big = seg({"alg": "none"}) + "." + "A" * 200_000 + "."
    tok = decode_token(big)
    assert tok.format == "malformed"
    assert tok.problems == (f"token too large ({len(big)} chars > {MAX_TOKEN_CHARS}); not decoded",)
    assert tok.text == "" and tok.fingerprint == sha12(big)
    assert decode_token("x" * 70_000).format == "opaque"

    deep = seg({"alg": "none"}) + "." + seg(b"[" * 100_000 + b"]" * 100_000) + "."
    assert decode_token(deep).problems[0].startswith("token too large")

    # as deep as fits under the size cap: the JSON parser's recursion guard answers
    deep_fit = seg({"alg": "none"}) + "." + seg(b"[" * 24_000 + b"]" * 24_000) + "."
    assert len(deep_fit) < MAX_TOKEN_CHARS
    tok = decode_token(deep_fit)
    assert tok.format == "malformed" and tok.problems == ("claims: JSON nested too deeply",)

    # parses, but deeper than any real token
    nested = seg({"alg": "none"}) + "." + seg({"a": json.loads("[" * 100 + "]" * 100)}) + "."
    tok = decode_token(nested)
    assert tok.problems == ("claims: JSON nested too deeply (> 64 levels)",)


@pytest.mark.parametrize(
    ("actortoken", "problem"),
    [
        ("junk", "actortoken not decodable (opaque)"),
        ("eyJhbGci!.x.y", "actortoken not decodable (malformed: header: bad base64url)"),
        (f"{seg({'alg': 'none'})}.{seg([1])}.", "actortoken not decodable "
         "(malformed: claims: not a JSON object (list))"),
        (123, "actortoken is not a string (number)"),
    ],
)  # fmt: skip
def test_junk_actortoken(actortoken: Any, problem: str) -> None:
    tok = decode_token(unsigned({"iss": "i", "actortoken": actortoken}))
    assert tok.format == "jwt-unsigned"
    assert tok.problems == (problem,)
    assert tok.iss == "i"
    json.dumps(tok.to_dict())


def test_actor_inside_actor_not_decoded() -> None:
    text = unsigned({"actortoken": unsigned({"actortoken": unsigned({"a": 1})})})
    tok = decode_token(text)
    assert tok.actor_token is not None
    assert tok.actor_token.actor_token is None
    assert "actortoken inside an actor token: not decoded" in tok.actor_token.problems


def test_non_text_input() -> None:
    raw = unsigned({"iss": "b"}).encode()
    assert decode_token(raw).iss == "b"  # type: ignore[arg-type]
    assert decode_token(None).format == "malformed"  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- cache


def test_cache_hit_and_shared_actor(rsa_key: Any) -> None:
    decoder = TokenDecoder()
    actor = signed(ACTOR_A, rsa_key, {"x5t": X5T})
    alice = unsigned({"upn": "alice@contoso.com", "actortoken": actor})
    bob = unsigned({"upn": "bob@contoso.com", "actortoken": actor})
    first = decoder(alice)
    assert decoder.cache_info() == (0, 2, 4096, 2)  # outer + actor
    assert decoder(alice) is first
    assert decoder.cache_info().hits == 1
    second = decoder(bob)
    assert second.actor_token is first.actor_token  # the actor was decoded once
    assert decoder.cache_info() == (2, 3, 4096, 3)

    decode_token.cache_clear()
    decode_token(alice)
    decode_token(alice)
    assert decode_token.cache_info().hits == 1 and decode_token.cache_info().misses == 2


def test_cache_is_bounded() -> None:
    decoder = TokenDecoder(maxsize=2)
    tokens = [unsigned({"n": n}) for n in range(3)]
    for text in tokens:
        decoder(text)
    assert decoder.cache_info().currsize == 2
    decoder(tokens[2])
    assert decoder.cache_info().hits == 1
    decoder(tokens[0])  # evicted: decoded again
    assert decoder.cache_info().misses == 4

    small_budget = TokenDecoder(max_bytes=10_000)
    for n in range(20):
        small_budget(unsigned({"n": n, "pad": "x" * 1000}))
    assert small_budget.cache_info().currsize < 5


def test_decoded_token_is_plain_frozen_dataclass() -> None:
    tok = decode_token(unsigned({"iss": "x"}))
    assert isinstance(tok, DecodedToken)
    with pytest.raises(AttributeError):
        tok.iss = "y"  # type: ignore[misc]
