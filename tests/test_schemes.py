"""Tests for analyzer.auth.schemes: credential, challenge and x-ms-diagnostics grammar."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from shared_dir import PUBLIC, public_expected

from analyzer.auth.schemes import (
    fingerprint,
    parse_challenges,
    parse_credential,
    parse_ms_diagnostics,
)
from analyzer.model import Challenge


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# ---------------------------------------------------------------------------------- fingerprint


def test_fingerprint_str_and_bytes() -> None:
    assert fingerprint("abc") == "ba7816bf8f01"
    assert fingerprint(b"abc") == "ba7816bf8f01"
    assert fingerprint("") == "e3b0c44298fc"
    assert fingerprint("ä") == hashlib.sha256("ä".encode()).hexdigest()[:12]


def test_fingerprint_surrogateescape_maps_back_to_wire_bytes() -> None:
    raw = b"tok\xff\xfe"
    assert fingerprint(raw.decode("utf-8", "surrogateescape")) == fingerprint(raw)


# ---------------------------------------------------------------------------------- credentials


def test_basic_two_spaces_and_colon_in_password() -> None:
    cred = parse_credential("Basic  dGVzdDoxOjM0")
    assert cred is not None
    assert (cred.scheme, cred.scheme_name, cred.text) == ("basic", "Basic", "dGVzdDoxOjM0")
    assert cred.fingerprint == "d9f1d9ba104c"
    assert (cred.user, cred.domain, cred.password_len) == ("test", None, 4)
    assert "1:34" not in repr(cred.params) and cred.params == {}


def test_basic_domain_user_and_missing_padding() -> None:
    blob = b64("CONTOSO\\alice:p:w").rstrip("=")
    cred = parse_credential(f"basic {blob}")
    assert cred is not None
    assert (cred.scheme, cred.scheme_name) == ("basic", "basic")
    assert (cred.user, cred.domain, cred.password_len) == ("alice", "CONTOSO", 3)
    assert cred.text == blob


def test_basic_utf8_password_length_in_characters() -> None:
    cred = parse_credential("Basic " + b64("jörg:pässwörd"))
    assert cred is not None
    assert (cred.user, cred.password_len) == ("jörg", 8)


def test_basic_bad_base64_gives_no_user() -> None:
    cred = parse_credential("Basic not*base64!")
    assert cred is not None
    assert (cred.scheme, cred.text, cred.user, cred.password_len) == (
        "basic",
        "not*base64!",
        None,
        None,
    )
    assert cred.fingerprint == fingerprint("not*base64!")


def test_basic_without_colon_or_binary_gives_no_user() -> None:
    # A colon-less value is typically an API key: it must not surface as a user name.
    cred = parse_credential("Basic " + b64("sk-live-123456"))
    assert cred is not None and cred.user is None and cred.password_len is None
    cred = parse_credential("Basic " + base64.b64encode(b"\x00\x01:\x02").decode())
    assert cred is not None and cred.user is None


@pytest.mark.parametrize("value", ["Bearer", "Bearer ", "  bearer\t", "BEARER  "])
def test_empty_bearer_realm_discovery_probe(value: str) -> None:
    cred = parse_credential(value)
    assert cred is not None
    assert (cred.scheme, cred.text, cred.fingerprint) == ("bearer", "", "e3b0c44298fc")


def test_bearer_token() -> None:
    cred = parse_credential("Bearer mF_9.B5f-4.1JqM", source="proxy-authorization")
    assert cred is not None
    assert (cred.scheme, cred.scheme_name, cred.text) == ("bearer", "Bearer", "mF_9.B5f-4.1JqM")
    assert (cred.fingerprint, cred.source, cred.user) == (
        "b8e148545b13",
        "proxy-authorization",
        None,
    )


def test_bearer_cwt_web_ticket_kept_as_text() -> None:
    cred = parse_credential("Bearer cwt=AAEBHAEFAAAAAAAFFQAAAA==")
    assert cred is not None
    assert (cred.scheme, cred.text, cred.params) == ("bearer", "cwt=AAEBHAEFAAAAAAAFFQAAAA==", {})


def test_ntlm_and_negotiate_keep_blob() -> None:
    blob = "TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAFASgKAAAADw=="
    cred = parse_credential(f"NTLM {blob}")
    assert cred is not None
    assert (cred.scheme, cred.text, cred.fingerprint) == ("ntlm", blob, "44a1a7f08689")
    assert cred.params == {} and cred.user is None
    cred = parse_credential("Negotiate YIIGhgYGKwYBBQUCoIIGejCCBnag=")
    assert cred is not None
    assert (cred.scheme, cred.scheme_name, cred.text) == (
        "negotiate",
        "Negotiate",
        "YIIGhgYGKwYBBQUCoIIGejCCBnag=",
    )


def test_digest_params_and_redaction() -> None:
    text = (
        'username="Mufasa\\\\x", realm="http-auth@example.org", uri="/dir/index.html", '
        'algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, '
        'cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, '
        'response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", '
        'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    cred = parse_credential("Digest " + text)
    assert cred is not None
    assert (cred.scheme, cred.text, cred.fingerprint) == ("digest", text, fingerprint(text))
    assert cred.user == "Mufasa\\x"
    assert cred.params == {
        "username": "Mufasa\\x",
        "realm": "http-auth@example.org",
        "uri": "/dir/index.html",
        "algorithm": "SHA-256",
        "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        "nc": "00000001",
        "cnonce_fp": fingerprint("f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"),
        "qop": "auth",
        "response_fp": fingerprint(
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        ),
        "opaque": "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
    }


def test_digest_quoted_comma_and_escaped_quote() -> None:
    cred = parse_credential('Digest username="a\\"b,c", realm="r, s", uri="/x?a=1,2"')
    assert cred is not None
    assert cred.user == 'a"b,c'
    assert cred.params == {"username": 'a"b,c', "realm": "r, s", "uri": "/x?a=1,2"}


def test_digest_username_star_ext_value() -> None:
    cred = parse_credential("Digest username*=UTF-8''J%C3%A4s%C3%B8n%20Doe, realm=\"api\"")
    assert cred is not None
    assert cred.user == "Jäsøn Doe"


def test_unknown_scheme_kept_as_other() -> None:
    cred = parse_credential("Turbo customAuthDataHere")
    assert cred is not None
    assert (cred.scheme, cred.scheme_name, cred.text) == ("other", "Turbo", "customAuthDataHere")
    assert cred.fingerprint == "4bc02d8bc9b2"


@pytest.mark.parametrize(
    "value",
    [
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0.eyJhdWQiOiJ4In0.",
        "cwt=AAEBHAEFAAAAAAAFFQAAAA==",
        "dGVzdDoxOjM0==",
    ],
)
def test_bare_token_without_scheme(value: str) -> None:
    cred = parse_credential(f"  {value} ")
    assert cred is not None
    assert (cred.scheme, cred.scheme_name, cred.text) == ("other", "", value)
    assert cred.fingerprint == fingerprint(value)


@pytest.mark.parametrize("value", ["", "   ", "\t\r\n"])
def test_empty_value_is_none(value: str) -> None:
    assert parse_credential(value) is None


def test_sip_ntlm_credential_params_s2s_4_3() -> None:
    value = (
        'NTLM qop="auth", realm="SIP Communications Service", targetname="fe01.contoso.com", '
        'gssapi-data="TlRMTVNTUAABAAAAt4II4gAAAAAAAAAAAAAAAAAAAAAGAbEdAAAADw==", version=4'
    )
    cred = parse_credential(value)
    assert cred is not None
    assert (cred.scheme, cred.scheme_name) == ("ntlm", "NTLM")
    assert cred.text == value[len("NTLM ") :]
    assert cred.params == {
        "qop": "auth",
        "realm": "SIP Communications Service",
        "targetname": "fe01.contoso.com",
        "gssapi-data_fp": fingerprint("TlRMTVNTUAABAAAAt4II4gAAAAAAAAAAAAAAAAAAAAAGAbEdAAAADw=="),
        "version": "4",
    }


def test_sip_tls_dsk_signed_credential_s2s_4_3() -> None:
    value = (
        'TLS-DSK qop="auth", opaque="ABCD1234", realm="SIP Communications Service", '
        'targetname="fe01.contoso.com", crand="a1b2c3d4", cnum="7", '
        'response="0102030405060708090a0b0c0d0e0f10", version=4'
    )
    cred = parse_credential(value, source="proxy-authorization")
    assert cred is not None
    assert (cred.scheme, cred.scheme_name, cred.source) == (
        "other",
        "TLS-DSK",
        "proxy-authorization",
    )
    assert cred.params == {
        "qop": "auth",
        "opaque": "ABCD1234",
        "realm": "SIP Communications Service",
        "targetname": "fe01.contoso.com",
        "crand": "a1b2c3d4",
        "cnum": "7",
        "response_fp": fingerprint("0102030405060708090a0b0c0d0e0f10"),
        "version": "4",
    }


# ---------------------------------------------------------------------------------- challenges

S2S_EXO = (
    'Bearer client_id="00000002-0000-0ff1-ce00-000000000000", '
    'trusted_issuers="00000001-0000-0000-c000-000000000000@*", '
    'token_types="app_asserted_user_v1 service_asserted_app_v1", '
    'authorization_uri="https://login.windows.net/common/oauth2/authorize"'
)


def test_folded_bearer_basic_negotiate_ntlm_gives_four() -> None:
    value = (
        'Bearer client_id="00000002-0000-0ff1-ce00-000000000000", '
        'trusted_issuers="00000001-0000-0000-c000-000000000000@*,'
        '00000004-0000-0ff1-ce00-000000000000@contoso.com", '
        'token_types="app_asserted_user_v1 service_asserted_app_v1", '
        'authorization_uri="https://login.windows.net/common/oauth2/authorize",'
        'Basic Realm="",Negotiate,NTLM'
    )
    assert parse_challenges([value]) == [
        Challenge(
            "bearer",
            {
                "client_id": "00000002-0000-0ff1-ce00-000000000000",
                "trusted_issuers": "00000001-0000-0000-c000-000000000000@*,"
                "00000004-0000-0ff1-ce00-000000000000@contoso.com",
                "token_types": "app_asserted_user_v1 service_asserted_app_v1",
                "authorization_uri": "https://login.windows.net/common/oauth2/authorize",
            },
        ),
        Challenge("basic", {"realm": ""}),
        Challenge("negotiate", {}),
        Challenge("ntlm", {}),
    ]


def test_exchange_online_challenge_with_invalid_token_error_s2s_4_1() -> None:
    got = parse_challenges([S2S_EXO + ', error="invalid_token"', 'Basic Realm=""'])
    assert [c.scheme for c in got] == ["bearer", "basic"]
    assert got[0].params["error"] == "invalid_token"
    assert got[0].params["trusted_issuers"] == "00000001-0000-0000-c000-000000000000@*"
    assert got[0].params["token_types"] == "app_asserted_user_v1 service_asserted_app_v1"
    assert got[1].params == {"realm": ""}


def test_exchange_onprem_hybrid_trusted_issuers_s2s_4_1() -> None:
    value = (
        'Bearer client_id="00000002-0000-0ff1-ce00-000000000000", '
        'trusted_issuers="00000001-0000-0000-c000-000000000000@11111111-2222-3333-4444-555555555555,'
        '00000004-0000-0ff1-ce00-000000000000@contoso.com"'
    )
    (got,) = parse_challenges([value])
    assert got.params["trusted_issuers"].split(",") == [
        "00000001-0000-0000-c000-000000000000@11111111-2222-3333-4444-555555555555",
        "00000004-0000-0ff1-ce00-000000000000@contoso.com",
    ]


def test_ms_xoauth_4_6_two_headers() -> None:
    got = parse_challenges(
        [
            'Bearer client_id="00000002-0000-0ff1-ce00-000000000000", '
            'trusted_issuers="00000001-0001-0000-c000-000000000000@*"',
            'Basic Realm=""',
        ]
    )
    assert got == [
        Challenge(
            "bearer",
            {
                "client_id": "00000002-0000-0ff1-ce00-000000000000",
                "trusted_issuers": "00000001-0001-0000-c000-000000000000@*",
            },
        ),
        Challenge("basic", {"realm": ""}),
    ]


def test_sharepoint_online_no_spaces_after_commas_s2s_4_1() -> None:
    value = (
        'Bearer realm="8f3a1b2c-0000-4000-8000-000000000abc",'
        'client_id="00000003-0000-0ff1-ce00-000000000000",'
        'trusted_issuers="00000001-0000-0000-c000-000000000000@*,'
        "D3776938-3DBA-481F-A652-4BEDFCAB7CD8@*,https://sts.windows.net/*/,"
        '00000003-0000-0ff1-ce00-000000000000@90140122-8516-11e1-8eff-49304924019b",'
        'authorization_uri="https://login.windows.net/common/oauth2/authorize"'
    )
    (got,) = parse_challenges([value])
    assert got.scheme == "bearer"
    assert got.params == {
        "realm": "8f3a1b2c-0000-4000-8000-000000000abc",
        "client_id": "00000003-0000-0ff1-ce00-000000000000",
        "trusted_issuers": "00000001-0000-0000-c000-000000000000@*,"
        "D3776938-3DBA-481F-A652-4BEDFCAB7CD8@*,https://sts.windows.net/*/,"
        "00000003-0000-0ff1-ce00-000000000000@90140122-8516-11e1-8eff-49304924019b",
        "authorization_uri": "https://login.windows.net/common/oauth2/authorize",
    }


def test_ucwa_bearer_and_msrtcoauth_s2s_4_1() -> None:
    got = parse_challenges(
        [
            'Bearer trusted_issuers="00000002-0000-0ff1-ce00-000000000000@contoso.com", '
            'client_id="00000004-0000-0ff1-ce00-000000000000"',
            'MsRtcOAuth href="https://lyncweb.contoso.com/WebTicket/oauthtoken",'
            'grant_type="urn:microsoft.rtc:windows,urn:microsoft.rtc:anonmeeting,password"',
        ]
    )
    assert got == [
        Challenge(
            "bearer",
            {
                "trusted_issuers": "00000002-0000-0ff1-ce00-000000000000@contoso.com",
                "client_id": "00000004-0000-0ff1-ce00-000000000000",
            },
        ),
        Challenge(
            "msrtcoauth",
            {
                "href": "https://lyncweb.contoso.com/WebTicket/oauthtoken",
                "grant_type": "urn:microsoft.rtc:windows,urn:microsoft.rtc:anonmeeting,password",
            },
        ),
    ]


def test_spo_insufficient_claims_s2s_4_1() -> None:
    (got,) = parse_challenges(
        ['Bearer error="insufficient_claims", claims="eyJhY2Nlc3NfdG9rZW4iOnt9fQ=="']
    )
    assert got.params == {"error": "insufficient_claims", "claims": "eyJhY2Nlc3NfdG9rZW4iOnt9fQ=="}


def test_ntlm_token68_challenge() -> None:
    blob = "TlRMTVNTUAACAAAACwALADgAAAAGgooC0Nn2DM9nS9AAAAAAAAAAAA=="
    assert parse_challenges([f"NTLM {blob}"], proxy=True) == [
        Challenge("ntlm", {}, token68=blob, proxy=True)
    ]


def test_negotiate_alone_and_token68_not_param() -> None:
    assert parse_challenges(["Negotiate"]) == [Challenge("negotiate", {})]
    assert parse_challenges(["Negotiate oYG3MIG0oAMKAQChCwYJKoZIgvcSAQICooGf="]) == [
        Challenge("negotiate", {}, token68="oYG3MIG0oAMKAQChCwYJKoZIgvcSAQICooGf=")
    ]


def test_sip_ntlm_challenge_s2s_4_3() -> None:
    (got,) = parse_challenges(
        ['NTLM qop="auth", realm="SIP Communications Service", targetname="x", version=4']
    )
    assert got == Challenge(
        "ntlm",
        {"qop": "auth", "realm": "SIP Communications Service", "targetname": "x", "version": "4"},
    )


def test_sip_tls_dsk_challenge_s2s_4_3() -> None:
    (got,) = parse_challenges(
        [
            'TLS-DSK realm="SIP Communications Service", targetname="LYNC2013-SERVER.lync.loc", '
            'version=4, sts-uri="https://LYNC2013-SERVER.lync.loc:443/CertProv/'
            'CertProvisioningService.svc"'
        ]
    )
    assert got.scheme == "tls-dsk"
    assert got.params == {
        "realm": "SIP Communications Service",
        "targetname": "LYNC2013-SERVER.lync.loc",
        "version": "4",
        "sts-uri": "https://LYNC2013-SERVER.lync.loc:443/CertProv/CertProvisioningService.svc",
    }


def test_sip_kerberos_challenge_and_authentication_info_s2s_4_3() -> None:
    got = parse_challenges(
        [
            'Kerberos realm="SIP Communications Service", targetname="sip/fe01.contoso.com", '
            "version=4",
            'TLS-DSK qop="auth", opaque="9D2A1F0B", srand="3F1E2D4C", snum="1", '
            'rspauth="ab12cd34", targetname="fe01.contoso.com", '
            'realm="SIP Communications Service", version=4',
        ]
    )
    assert got[0] == Challenge(
        "kerberos",
        {
            "realm": "SIP Communications Service",
            "targetname": "sip/fe01.contoso.com",
            "version": "4",
        },
    )
    assert got[1].scheme == "tls-dsk"
    assert got[1].params == {
        "qop": "auth",
        "opaque": "9D2A1F0B",
        "srand": "3F1E2D4C",
        "snum": "1",
        "rspauth": "ab12cd34",
        "targetname": "fe01.contoso.com",
        "realm": "SIP Communications Service",
        "version": "4",
    }


def test_rfc9110_example_with_escapes_and_bws() -> None:
    got = parse_challenges(
        ['Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm = "simple"']
    )
    assert got == [
        Challenge("newauth", {"realm": "apps", "type": "1", "title": 'Login to "apps"'}),
        Challenge("basic", {"realm": "simple"}),
    ]


def test_param_names_lowercased_first_wins() -> None:
    (got,) = parse_challenges(['Digest REALM="a", Realm="b", Stale=FALSE, algorithm=MD5'])
    assert got.params == {"realm": "a", "stale": "FALSE", "algorithm": "MD5"}


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            ['Bearer realm="unterminated, Basic'],
            [Challenge("bearer", {"realm": "unterminated, Basic"})],
        ),
        ([',, ,Basic realm="x",,'], [Challenge("basic", {"realm": "x"})]),
        (['realm="orphan", Basic'], [Challenge("basic", {})]),
        (
            ['Bearer realm="x" error="invalid_token"'],
            [Challenge("bearer", {"realm": "x", "error": "invalid_token"})],
        ),
        (["", "   ", "@@@ ###", "=", '"'], []),
        # "Bearer ===" reads as a "bearer = ..." parameter with no challenge to attach it to.
        (["Bearer ===", "Basic realm"], [Challenge("basic", {}, token68="realm")]),
    ],
)
def test_malformed_challenges_best_effort(values: list[str], expected: list[Challenge]) -> None:
    assert parse_challenges(values) == expected


def test_challenge_parser_never_raises_on_garbage() -> None:
    junk = [
        '\\"' * 50,
        "\x00\x01\x02 ,=,= ;;",
        'a="' + "\\" * 1001,
        "Bearer " + "x=" * 5000,
        ", ".join(["Basic"] * 500),
        "é ü=ß",
    ]
    for item in junk:
        got = parse_challenges([item])
        assert isinstance(got, list) and len(got) <= 64


# ------------------------------------------------------------------------------ x-ms-diagnostics


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            '2000002;reason="The token has expired.";error_category="token_expired"',
            {
                "code": 2000002,
                "params": {"reason": "The token has expired.", "error_category": "token_expired"},
            },
        ),
        (
            '28020;source="pool.contoso.com";reason="No valid security token."',
            {
                "code": 28020,
                "params": {"source": "pool.contoso.com", "reason": "No valid security token."},
            },
        ),
        (
            '28029;source="fe01.contoso.com";reason="Authentication type not allowed."',
            {
                "code": 28029,
                "params": {
                    "source": "fe01.contoso.com",
                    "reason": "Authentication type not allowed.",
                },
            },
        ),
        (
            '2000009;reason="The issuer of the token is unknown. Issuer was '
            "'00000001-0000-0000-c000-000000000000@11111111-2222-3333-4444-555555555555'.\";"
            'error_category="invalid_issuer"',
            {
                "code": 2000009,
                "params": {
                    "reason": "The issuer of the token is unknown. Issuer was "
                    "'00000001-0000-0000-c000-000000000000@11111111-2222-3333-4444-555555555555'.",
                    "error_category": "invalid_issuer",
                },
            },
        ),
        (
            '2000020;reason="xms_trpid claim was not present; see docs";'
            'error_category="insufficient_claims"',
            {
                "code": 2000020,
                "params": {
                    "reason": "xms_trpid claim was not present; see docs",
                    "error_category": "insufficient_claims",
                },
            },
        ),
        (
            '2000001;error_category="invalid_token"',
            {"code": 2000001, "params": {"error_category": "invalid_token"}},
        ),
        ("4000000", {"code": 4000000, "params": {}}),
        ('reason="no code"', {"code": None, "params": {"reason": "no code"}}),
    ],
)
def test_ms_diagnostics(value: str, expected: dict) -> None:
    assert parse_ms_diagnostics(value) == expected


@pytest.mark.parametrize("value", ["", "TokenExpired|The token has expired.", ";;;", "abc"])
def test_ms_diagnostics_unparseable_is_none(value: str) -> None:
    assert parse_ms_diagnostics(value) is None


# ---------------------------------------------------------------------------------- public captures

_CRED_LINE = re.compile(rb"(?im)^((?:proxy-)?authorization):[ \t]*([^\r\n]*)\r?\n")
_CHAL_LINE = re.compile(rb"(?im)^((?:www|proxy)-authenticate):[ \t]*([^\r\n]*)\r?\n")


def _expected() -> list[dict]:
    return public_expected()["captures"]


def _records(capture: dict, kinds: tuple[str, ...]) -> list[dict]:
    rows = [r for k in kinds for r in capture.get(k, [])]
    return sorted(rows, key=lambda r: r["frame"])


def test_public_capture_credentials_match_expected() -> None:
    checked = 0
    for capture in _expected():
        rows = _records(
            capture, ("http_authorization", "http_proxy_authorization", "sip_authorization")
        )
        if not rows:
            continue
        data = (PUBLIC / capture["file"]).read_bytes()
        lines = _CRED_LINE.findall(data)
        assert len(lines) == len(rows), capture["file"]
        for (header, raw), row in zip(lines, rows, strict=True):
            source = header.decode().lower()
            cred = parse_credential(raw.decode("utf-8", "surrogateescape"), source=source)
            assert cred is not None
            assert cred.scheme_name == row["scheme"]
            assert cred.fingerprint == row["cred_fp"], (capture["file"], row["frame"])
            if "cred_len" in row:
                assert len(cred.text) == row["cred_len"]
            if "basic_user" in row:
                assert (cred.scheme, cred.user) == ("basic", row["basic_user"])
                assert cred.password_len == row["basic_password_len"]
            if "username" in row:
                assert (cred.scheme, cred.user) == ("digest", row["username"])
                assert cred.params["realm"] == row["realm"]
                assert cred.params["response_fp"] == row["response_fp"]
                assert "response" not in cred.params
            checked += 1
    assert checked == 1 + 14 + 14 + 12 + 3  # digest, 2x NTLM, SIP digest, bearer/Turbo/basic


def test_public_capture_turbo_is_other() -> None:
    for capture in _expected():
        if capture["file"] == "sv__http-auth-unrecognized__input.pcap":
            data = (PUBLIC / capture["file"]).read_bytes()
            (_header, raw), *_ = _CRED_LINE.findall(data)
            cred = parse_credential(raw.decode())
            assert cred is not None
            assert (cred.scheme, cred.scheme_name, cred.fingerprint) == (
                "other",
                "Turbo",
                "4bc02d8bc9b2",
            )
            return
    pytest.fail("capture missing from expected.json")


def test_public_capture_challenges_match_expected() -> None:
    checked = 0
    for capture in _expected():
        rows = _records(
            capture,
            ("http_www_authenticate", "http_proxy_authenticate", "sip_challenges"),
        )
        if not rows:
            continue
        data = (PUBLIC / capture["file"]).read_bytes()
        lines = _CHAL_LINE.findall(data)
        assert len(lines) == len(rows), capture["file"]
        for (header, raw), row in zip(lines, rows, strict=True):
            proxy = header.lower().startswith(b"proxy")
            (chal,) = parse_challenges([raw.decode()], proxy=proxy)
            assert chal.scheme == row["scheme"].lower()
            assert chal.proxy is proxy
            if "token_fp" in row:
                assert chal.token68 is not None
                assert fingerprint(chal.token68) == row["token_fp"]
            if "realm" in row:
                assert chal.params["realm"] == row["realm"]
            if "nonce_fp" in row:
                assert fingerprint(chal.params["nonce"]) == row["nonce_fp"]
                assert chal.params["algorithm"] == row["algorithm"]
            checked += 1
    assert checked == 1 + 7 + 17
