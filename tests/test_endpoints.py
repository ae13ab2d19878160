"""Tests for analyzer.oauth.endpoints: OAuth material in URIs, forms, JSON and encoded bodies."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest

from analyzer.auth.schemes import fingerprint
from analyzer.oauth.endpoints import (
    SECRET_QUERY_PARAMS,
    TokenRequest,
    TokenResponse,
    decode_body,
    is_metadata_uri,
    is_token_endpoint,
    looks_like_metadata_path,
    parse_form,
    parse_token_request,
    parse_token_response,
    query_access_token,
    redact_uri,
)

TID = "11111111-2222-3333-4444-555555555555"
ASSERTION = (
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsIng1dCI6IkhlbWEyTEM0T3U0dENld3FncmZQN3pVYy1MZyJ9"
    ".eyJpc3MiOiIwMDAwMDAwMi0wMDAwLTBmZjEtY2UwMC0wMDAwMDAwMDAwMDBAMTExIn0.c2lnbmF0dXJl"
)

# ---------------------------------------------------------------------------------- URIs


def test_secret_query_params_cover_oauth_names() -> None:
    for name in (
        "access_token",
        "code",
        "client_secret",
        "refresh_token",
        "id_token",
        "assertion",
        "client_assertion",
        "password",
        "token",
        "sig",
    ):
        assert name in SECRET_QUERY_PARAMS


def test_redact_uri_keeps_names_order_and_encoding() -> None:
    uri = "/cb?state=a%2Fb&code=0.AQ%2Bx&session_state=s&access_token=eyJ.x.y&Password=p&x"
    assert redact_uri(uri) == (
        "/cb?state=a%2Fb&code=REDACTED&session_state=s&access_token=REDACTED&Password=REDACTED&x"
    )


def test_redact_uri_fragment_and_absolute_form() -> None:
    uri = "https://app.contoso.com/cb#access_token=eyJ.a.b&token_type=Bearer&expires_in=3599"
    assert redact_uri(uri) == (
        "https://app.contoso.com/cb#access_token=REDACTED&token_type=Bearer&expires_in=3599"
    )
    assert redact_uri("/blob?sv=2020&sig=abc%3D&se=2030") == "/blob?sv=2020&sig=REDACTED&se=2030"


def test_redact_uri_without_query_is_unchanged() -> None:
    for uri in ("/EWS/Exchange.asmx", "/a?b", "/a?", "*", "", "/p%20q?x=%ZZ"):
        assert redact_uri(uri) == uri


def test_query_access_token_percent_decoded() -> None:
    assert query_access_token("/api?x=1&access_token=ab%2Fc%3D%3D&access_token=second") == "ab/c=="
    assert query_access_token("/api?access_token=a+b") == "a+b"
    assert query_access_token("/api?token=zzz") is None
    assert query_access_token("/api?access_token=") is None
    assert query_access_token("/api#access_token=frag") is None


# ---------------------------------------------------------------------------------- forms


def test_parse_form_acs_jwt_bearer_request_s2s_8_1() -> None:
    body = (
        b"grant_type=http%3A%2F%2Foauth.net%2Fgrant_type%2Fjwt%2F1.0%2Fbearer"
        b"&assertion=" + ASSERTION.encode() + b"&resource=00000002-0000-0ff1-ce00-000000000000"
        b"%2Foutlook.office365.com%40" + TID.encode()
    )
    form = parse_form(body)
    assert form == {
        "grant_type": "http://oauth.net/grant_type/jwt/1.0/bearer",
        "assertion": ASSERTION,
        "resource": f"00000002-0000-0ff1-ce00-000000000000/outlook.office365.com@{TID}",
    }
    req = parse_token_request(form)
    assert req == TokenRequest(
        grant_type="http://oauth.net/grant_type/jwt/1.0/bearer",
        resource=f"00000002-0000-0ff1-ce00-000000000000/outlook.office365.com@{TID}",
        assertion=ASSERTION,
    )
    assert req is not None
    assert req.assertion_fp == fingerprint(ASSERTION)
    assert ASSERTION not in repr(req)


def test_parse_form_first_value_wins_plus_and_utf8() -> None:
    form = parse_form(b"a=1&a=2&b=x+y%2Bz&c=%C3%A4&&=noname&flag&d=%ZZ\r\n")
    assert form == {"a": "1", "b": "x y+z", "c": "ä", "flag": "", "d": "%ZZ"}


def test_parse_form_limit_and_garbage() -> None:
    body = b"&".join(b"f%d=%d" % (i, i) for i in range(1000))
    form = parse_form(body, limit=5)
    assert form == {"f0": "0", "f1": "1", "f2": "2", "f3": "3", "f4": "4"}
    assert parse_form(b"&" * 100000, limit=10) == {}
    assert parse_form(b"\xff\xfe=\x00\x01") == {"\ufffd\ufffd": "\x00\x01"}
    assert parse_form(b"") == {}


def test_token_request_client_credentials_s2s_8_2() -> None:
    form = parse_form(
        b"grant_type=client_credentials&client_id=6cc2ea04-0000-4000-8000-000000000003%40"
        + TID.encode()
        + b"&client_secret=s3cr3t%2B%3D&resource=00000003-0000-0ff1-ce00-000000000000%2F"
        b"contoso.sharepoint.com%40" + TID.encode()
    )
    assert parse_token_request(form) == TokenRequest(
        grant_type="client_credentials",
        client_id=f"6cc2ea04-0000-4000-8000-000000000003@{TID}",
        resource=f"00000003-0000-0ff1-ce00-000000000000/contoso.sharepoint.com@{TID}",
        has_client_secret=True,
    )


def test_token_request_entra_client_assertion_scope_s2s_8_3() -> None:
    form = parse_form(
        b"client_id=aaaaaaaa-0000-4000-8000-000000000001"
        b"&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default"
        b"&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
        b"&client_assertion=" + ASSERTION.encode() + b"&grant_type=client_credentials"
    )
    req = parse_token_request(form)
    assert req == TokenRequest(
        grant_type="client_credentials",
        client_id="aaaaaaaa-0000-4000-8000-000000000001",
        resource="https://graph.microsoft.com/.default",
        scope="https://graph.microsoft.com/.default",
        client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        assertion=ASSERTION,
    )


def test_token_request_password_grant_keeps_only_length() -> None:
    req = parse_token_request(
        parse_form(b"grant_type=password&username=alice%40contoso.com&password=p%C3%A4ss%3Aw")
    )
    assert req is not None
    assert (req.username, req.password_len, req.has_client_secret) == (
        "alice@contoso.com",
        6,
        False,
    )
    assert "päss:w" not in repr(req)


def test_token_request_assertion_without_grant_type() -> None:
    req = parse_token_request({"client_assertion": "eyJ.a.b"})
    assert req is not None and req.grant_type is None and req.assertion == "eyJ.a.b"


def test_not_a_token_request() -> None:
    assert parse_token_request({"user": "x", "grant_type": ""}) is None
    assert parse_token_request({}) is None


# ---------------------------------------------------------------------------------- responses


def test_token_response_acs_strings_s2s_8_1() -> None:
    body = json.dumps(
        {
            "token_type": "Bearer",
            "access_token": ASSERTION,
            "expires_in": "86399",
            "not_before": "1700000000",
            "expires_on": "1700086399",
            "resource": f"00000002-0000-0ff1-ce00-000000000000/outlook.office365.com@{TID}",
        }
    ).encode()
    resp = parse_token_response(body)
    assert resp == TokenResponse(
        token_type="Bearer",
        expires_in="86399",
        resource=f"00000002-0000-0ff1-ce00-000000000000/outlook.office365.com@{TID}",
        access_token=ASSERTION,
    )
    assert resp is not None
    assert resp.access_token_fp == fingerprint(ASSERTION)
    assert (resp.refresh_token_fp, resp.id_token_fp) == (None, None)
    assert ASSERTION not in repr(resp)


def test_token_response_entra_numbers_and_all_tokens() -> None:
    body = (
        b'\xef\xbb\xbf{"token_type":"Bearer","scope":"openid","expires_in":3599,'
        b'"ext_expires_in":3599,"access_token":"at","refresh_token":"rt","id_token":"it"}'
    )
    resp = parse_token_response(body)
    assert resp is not None
    assert (resp.expires_in, resp.scope, resp.access_token, resp.refresh_token, resp.id_token) == (
        "3599",
        "openid",
        "at",
        "rt",
        "it",
    )
    assert resp.refresh_token_fp == fingerprint("rt")


def test_token_response_error_s2s_8_1() -> None:
    body = (
        b'{"error":"invalid_grant","error_description":"AADSTS70000: Provided grant is invalid '
        b'or malformed.","error_codes":[70000]}'
    )
    assert parse_token_response(body) == TokenResponse(
        error="invalid_grant",
        error_description="AADSTS70000: Provided grant is invalid or malformed.",
    )


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html>401</html>",
        b"[1, 2]",
        b'"access_token"',
        b'{"foo": 1}',
        b'{"access_token": ',
        b'{"access_token": ["x"], "expires_in": true}',
        b'{"a":' + b"[" * 200_000 + b"]" * 200_000 + b"}",
        b'{"expires_in": ' + b"9" * 5000 + b"}",
        b'{"access_token":"' + b"a" * (1 << 20) + b'"}',
        b"\xff\xfe{\x00",
    ],
)
def test_token_response_rejects_hostile_bodies(body: bytes) -> None:
    assert parse_token_response(body) is None


# ---------------------------------------------------------------------------------- bodies


def test_decode_body_identity_and_none() -> None:
    assert decode_body(b"plain", None) == b"plain"
    assert decode_body(b"plain", "identity") == b"plain"
    assert decode_body(b"0123456789", "", limit=4) == b"0123"


def test_decode_body_gzip_and_multi_member() -> None:
    assert decode_body(gzip.compress(b'{"a":1}'), "gzip") == b'{"a":1}'
    assert decode_body(gzip.compress(b"ab") + gzip.compress(b"cd"), "x-gzip") == b"abcd"


def test_decode_body_deflate_zlib_and_raw() -> None:
    assert decode_body(zlib.compress(b"hello"), "deflate") == b"hello"
    raw = zlib.compressobj(wbits=-15)
    raw_bytes = raw.compress(b"hello raw") + raw.flush()
    assert decode_body(raw_bytes, "Deflate") == b"hello raw"


def test_decode_body_stacked_codings() -> None:
    body = gzip.compress(zlib.compress(b"twice"))
    assert decode_body(body, "deflate, gzip") == b"twice"


def test_decode_body_bomb_is_bounded() -> None:
    bomb = gzip.compress(b"\0" * (64 << 20))
    assert len(bomb) < 100_000
    out = decode_body(bomb, "gzip", limit=1 << 20)
    assert out == b"\0" * (1 << 20)


def test_decode_body_corrupt_and_unsupported() -> None:
    assert decode_body(b"not gzip at all", "gzip") is None
    assert decode_body(b"\x78\x9c garbage", "deflate") is None
    assert decode_body(b"x", "br") is None
    assert decode_body(b"x", "gzip, gzip, gzip, gzip, gzip") is None


def test_decode_body_truncated_gives_prefix() -> None:
    data = bytes(range(256)) * 64
    cut = gzip.compress(data)[: len(gzip.compress(data)) // 2]
    out = decode_body(cut, "gzip")
    assert out is not None and 0 < len(out) < len(data) and data.startswith(out)


# ---------------------------------------------------------------------------------- paths


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/autodiscover/metadata/json/1", "s2s-metadata"),
        ("/metadata/json/1", "s2s-metadata"),
        ("/_layouts/15/metadata/json/1", "s2s-metadata"),
        (f"/{TID}/metadata/json/1?realm=contoso.com", "s2s-metadata"),
        ("https://accounts.accesscontrol.windows.net/METADATA/JSON/1", "s2s-metadata"),
        ("/common/.well-known/openid-configuration", "openid-configuration"),
        (f"/{TID}/v2.0/.well-known/openid-configuration?appid=x", "openid-configuration"),
        ("/common/discovery/keys", "jwks"),
        (f"/{TID}/discovery/v2.0/keys", "jwks"),
        ("/adfs/discovery/keys", "jwks"),
        ("/oauth2/v1/keys", "jwks"),
        ("/.well-known/jwks.json", "jwks"),
        ("/federationmetadata/2007-06/FederationMetadata.xml", "federation-metadata"),
        ("/metadata/jason/1", None),
        ("/keys", None),
        ("/EWS/Exchange.asmx", None),
        ("", None),
    ],
)
def test_is_metadata_uri(path: str, kind: str | None) -> None:
    assert is_metadata_uri(path) == kind


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/metadata/jason/1", True),
        ("/autodiscover/Metadata/json/1", True),
        ("/common/discovery/keys", True),
        ("/api/metadata", False),
        ("/EWS/Exchange.asmx?metadata/x", False),
    ],
)
def test_looks_like_metadata_path(path: str, expected: bool) -> None:
    assert looks_like_metadata_path(path) is expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (f"/{TID}/oauth2/token", True),
        ("/common/oauth2/v2.0/token", True),
        (f"/{TID}/tokens/OAuth/2", True),
        ("/WebTicket/oauthtoken", True),
        ("/connect/token?x=1", True),
        ("/TOKEN", True),
        (f"https://login.microsoftonline.com/{TID}/oauth2/token", True),
        ("/oauth2/authorize", False),
        ("/tokens", False),
        ("/EWS/Exchange.asmx", False),
    ],
)
def test_is_token_endpoint(path: str, expected: bool) -> None:
    assert is_token_endpoint(path) is expected


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("http://svc:P@ss@mail.contoso.com/EWS/", "http://svc:REDACTED@mail.contoso.com/EWS/"),
        ("HTTP://svc:pw@mail.contoso.com", "HTTP://svc:REDACTED@mail.contoso.com"),
        ("http://svc@mail.contoso.com/EWS/", "http://svc@mail.contoso.com/EWS/"),  # no password
        ("/EWS/?next=http://a:b@c/", "/EWS/?next=http://a:b@c/"),  # in the query: a value
    ],
)
def test_a_password_in_an_absolute_target_is_redacted(uri: str, shown: str) -> None:
    assert redact_uri(uri) == shown
