"""Tests for analyzer.oauth.diagnostics: x-ms-diagnostics values explained.

Values follow docs/microsoft-s2s.md sections 6.1 / 6.2 (Exchange, Skype for Business, Entra) and
the failures quoted in sections 2.2, 4.1 and 7.2; reason texts are Exchange's OAuthErrors templates
with the doc's placeholder GUIDs and hosts filled in.
"""

from __future__ import annotations

import time

import pytest

from analyzer.oauth.diagnostics import (
    CATEGORY_MEANINGS,
    KNOWN_CODES,
    MsDiagnostic,
    parse_ms_diagnostics,
)

TID = "11111111-2222-3333-4444-555555555555"
ACS_ISS = f"00000001-0000-0000-c000-000000000000@{TID}"


def parse(value: str) -> MsDiagnostic:
    diag = parse_ms_diagnostics(value)
    assert diag is not None
    return diag


# ------------------------------------------------------------------------------ table


def test_known_codes_table() -> None:
    expected = {
        0: "Probe",
        2000000: "invalid_signature",
        2000001: "invalid_token",
        2000002: "token_expired",
        2000003: "invalid_resource",
        2000004: "invalid_tenant",
        2000005: "invalid_user",
        2000006: "invalid_client",
        2000007: "internal_error",
        2000008: "invalid_grant",
        2000009: "invalid_certificate",
        2000020: "insufficient_claims",
        4000000: "oauth_not_available",
        28020: "no_valid_security_token",
        28029: "authentication_type_not_allowed",
    }
    assert {code: cat for code, (cat, _) in KNOWN_CODES.items()} == expected
    for _, meaning in KNOWN_CODES.values():
        assert meaning.endswith(".") and meaning[0].isupper()
    assert "invalid_issuer" in CATEGORY_MEANINGS


@pytest.mark.parametrize(("code", "category"), [(c, v[0]) for c, v in KNOWN_CODES.items()])
def test_every_exchange_category_round_trips(code: int, category: str) -> None:
    diag = parse(f'{code};error_category="{category}"')
    assert (diag.code, diag.category, diag.reason) == (code, category, None)
    assert diag.meaning == KNOWN_CODES[code][1]
    assert diag.notes == ()


# ------------------------------------------------------------------------------ section 6.1


def test_invalid_issuer_2000009_keys_on_category_text() -> None:
    value = (
        f"2000009;reason=\"The issuer of the token is unknown. Issuer was '{ACS_ISS}'.\";"
        'error_category="invalid_issuer"'
    )
    diag = parse(value)
    assert diag == MsDiagnostic(
        raw=value,
        code=2000009,
        category="invalid_issuer",
        reason=f"The issuer of the token is unknown. Issuer was '{ACS_ISS}'.",
        source=None,
        params={
            "reason": f"The issuer of the token is unknown. Issuer was '{ACS_ISS}'.",
            "error_category": "invalid_issuer",
        },
        meaning=CATEGORY_MEANINGS["invalid_issuer"],
        product="exchange",
        detail_code=2008,
        detail="unknown token issuer (not among the trusted issuers)",
        detail_args=(ACS_ISS,),
        form="diagnostics",
        error_name=None,
        notes=(
            "error_category 'invalid_issuer' differs from 'invalid_certificate', "
            "the table name for 2000009",
        ),
    )


def test_2000009_exchange_2013_invalid_certificate() -> None:
    diag = parse('2000009;error_category="invalid_certificate"')
    assert (diag.category, diag.meaning, diag.product, diag.notes) == (
        "invalid_certificate",
        CATEGORY_MEANINGS["invalid_certificate"],
        "exchange",
        (),
    )


def test_code_only_uses_table_category() -> None:
    diag = parse("2000004")
    assert (diag.code, diag.category, diag.params, diag.product) == (
        2000004,
        "invalid_tenant",
        {},
        "exchange",
    )
    assert diag.meaning == CATEGORY_MEANINGS["invalid_tenant"]


def test_unsigned_user_context_2001() -> None:
    diag = parse(
        '2000001;reason="The user context must be unsigned.";error_category="invalid_token"'
    )
    assert (diag.category, diag.detail_code, diag.detail, diag.detail_args) == (
        "invalid_token",
        2001,
        "the user context (outer token) must be unsigned",
        (),
    )


def test_unsigned_actor_2002() -> None:
    diag = parse(
        '2000001;reason="The inner actor token must be signed.";error_category="invalid_token"'
    )
    assert (diag.detail_code, diag.detail) == (2002, "the inner actor token must be signed")


def test_issuer_nameid_mismatch_2015() -> None:
    outer_iss = "00000004-0000-0ff1-ce00-000000000000@contoso.com"
    actor_nameid = "00000002-0000-0ff1-ce00-000000000000@contoso.com"
    diag = parse(
        f"2000001;reason=\"The user-context issuer '{outer_iss}' does not match the "
        f'application-context nameid \'{actor_nameid}\'";error_category="invalid_token"'
    )
    assert diag.detail_code == 2015
    assert diag.detail_args == (outer_iss, actor_nameid)


def test_invalid_audience_2010() -> None:
    aud = "00000002-0000-0ff1-ce00-000000000000/mail.contoso.com@contoso.com"
    diag = parse(
        f"2000001;reason=\"The audience claim value is invalid '{aud}'.\";"
        'error_category="invalid_token"'
    )
    assert (diag.detail_code, diag.detail_args) == (2010, (aud,))


def test_ssl_offload_audience_host_4002() -> None:
    # 2000003 seen in the field when the audience says https but the request arrived as http.
    diag = parse(
        '2000003;reason="The hostname component of the audience claim value is invalid. '
        "Expected 'https://mail.contoso.com'. Actual 'http://mail.contoso.com'.\";"
        'error_category="invalid_resource"'
    )
    assert (diag.code, diag.category, diag.detail_code) == (2000003, "invalid_resource", 4002)
    assert diag.detail_args == ("https://mail.contoso.com", "http://mail.contoso.com")
    assert "SSL offloading" in diag.meaning


def test_token_expired_3001() -> None:
    diag = parse('2000002;reason="The token has expired.";error_category="token_expired"')
    assert (diag.category, diag.detail_code, diag.detail, diag.product) == (
        "token_expired",
        3001,
        "token expired",
        "exchange",
    )


def test_tenant_guid_is_a_domain_5001() -> None:
    # Sections 2.2 / 7.2: SfB storage connectivity against a misconfigured hybrid.
    diag = parse(
        "2000004;reason=\"The tenant for tenant guid 'contoso.com' does not exist.\";"
        'error_category="invalid_tenant"'
    )
    assert (diag.category, diag.detail_code, diag.detail_args) == (
        "invalid_tenant",
        5001,
        ("contoso.com",),
    )


def test_user_not_found_and_ambiguous_6001_6002() -> None:
    missing = parse(
        '2000005;reason="The user specified by the user-context in the token does not exist.";'
        'error_category="invalid_user"'
    )
    ambiguous = parse(
        '2000005;reason="The user specified by the user-context in the token is ambiguous.";'
        'error_category="invalid_user"'
    )
    assert (missing.detail_code, ambiguous.detail_code) == (6001, 6002)
    assert missing.meaning == KNOWN_CODES[2000005][1]


def test_unknown_application_7001() -> None:
    diag = parse(
        "2000006;reason=\"The Application Identifier '00000004-0000-0ff1-ce00-000000000000' is "
        'unknown.";error_category="invalid_client"'
    )
    assert (diag.category, diag.detail_code, diag.detail_args) == (
        "invalid_client",
        7001,
        ("00000004-0000-0ff1-ce00-000000000000",),
    )


def test_token_cannot_be_parsed_mip_sdk() -> None:
    diag = parse(
        '2000001;reason="OAuth token submitted with the request cannot be parsed.";'
        'error_category="invalid_token"'
    )
    assert (diag.detail_code, diag.detail) == (2022, "token cannot be read")


def test_signature_and_certificate_details() -> None:
    assert parse('2000000;reason="Invalid signature."').detail_code == 1001
    cert = parse('2000009;reason="The certificate with thumbprint X could not be found."')
    assert cert.detail_code == 10001


def test_oauth_not_available() -> None:
    diag = parse('4000000;error_category="oauth_not_available"')
    assert (diag.product, diag.meaning) == ("exchange", CATEGORY_MEANINGS["oauth_not_available"])


def test_backend_form() -> None:
    diag = parse("TokenExpired|The token has expired.")
    assert diag == MsDiagnostic(
        raw="TokenExpired|The token has expired.",
        code=None,
        category="token_expired",
        reason="The token has expired.",
        source=None,
        params={},
        meaning=KNOWN_CODES[2000002][1],
        product="exchange",
        detail_code=3001,
        detail="token expired",
        detail_args=(),
        form="backend",
        error_name="TokenExpired",
        notes=(),
    )


def test_backend_form_with_header_name_and_name_only() -> None:
    diag = parse("x-ms-diagnostics-from-backend: TokenExpired|The token has expired.")
    assert (diag.form, diag.error_name, diag.reason, diag.detail_code) == (
        "backend",
        "TokenExpired",
        "The token has expired.",
        3001,
    )
    # No message: the name alone is matched after splitting its words.
    bare = parse("TokenExpired|")
    assert (bare.reason, bare.detail_code, bare.category) == (None, 3001, "token_expired")


# ------------------------------------------------------------------------------ section 6.2


def test_sfb_28020() -> None:
    value = '28020;source="fe01.contoso.com";reason="No valid security token."'
    diag = parse(value)
    assert diag == MsDiagnostic(
        raw=value,
        code=28020,
        category="no_valid_security_token",
        reason="No valid security token.",
        source="fe01.contoso.com",
        params={"source": "fe01.contoso.com", "reason": "No valid security token."},
        meaning=KNOWN_CODES[28020][1],
        product="skype",
    )


def test_sfb_28029_with_header_name() -> None:
    diag = parse(
        'X-Ms-diagnostics: 28029;source="fe01.contoso.com";'
        'reason="Authentication type not allowed."'
    )
    assert (diag.code, diag.category, diag.product, diag.reason) == (
        28029,
        "authentication_type_not_allowed",
        "skype",
        "Authentication type not allowed.",
    )


def test_entra_2000020() -> None:
    diag = parse(
        '2000020;reason="xms_trpid claim was not present…";error_category="insufficient_claims"'
    )
    assert (diag.code, diag.category, diag.product, diag.detail_code) == (
        2000020,
        "insufficient_claims",
        "entra",
        None,
    )
    assert diag.reason == "xms_trpid claim was not present…"
    assert diag.meaning == KNOWN_CODES[2000020][1]


def test_sip_ms_diagnostics_unknown_code() -> None:
    diag = parse('ms-diagnostics: 1000;reason="Final response received";source="sip.contoso.com"')
    assert (diag.code, diag.category, diag.meaning, diag.product, diag.source) == (
        1000,
        None,
        None,
        None,
        "sip.contoso.com",
    )
    assert diag.notes == ("code 1000 is not in the known-code table",)


# ------------------------------------------------------------------------------ grammar


def test_quoted_semicolons_and_escapes() -> None:
    diag = parse(r'2000001;reason="a;b \"quoted\" c";error_category="invalid_token";extra=bare')
    assert diag.params == {
        "reason": 'a;b "quoted" c',
        "error_category": "invalid_token",
        "extra": "bare",
    }


def test_names_lowercased_first_wins_and_spaces() -> None:
    diag = parse(' 2000002 ; Reason = "first" ; REASON="second" ; Error_Category="token_expired" ')
    assert (diag.code, diag.reason, diag.category) == (2000002, "first", "token_expired")


def test_params_without_code() -> None:
    diag = parse('reason="Something failed";error_category="invalid_grant"')
    assert (diag.code, diag.category, diag.product) == (None, "invalid_grant", None)
    assert diag.meaning == CATEGORY_MEANINGS["invalid_grant"]


def test_unknown_category_text_kept() -> None:
    diag = parse('2000001;error_category="brand_new_category"')
    assert (diag.category, diag.meaning) == ("brand_new_category", KNOWN_CODES[2000001][1])
    assert diag.notes == (
        "error_category 'brand_new_category' differs from 'invalid_token', the table name for "
        "2000001",
    )


def test_bytes_input() -> None:
    diag = parse(b'2000002;reason="The token has expired."')  # type: ignore[arg-type]
    assert (diag.code, diag.detail_code) == (2000002, 3001)


def test_to_dict() -> None:
    diag = parse('28020;source="fe01.contoso.com";reason="No valid security token."')
    assert diag.to_dict() == {
        "raw": '28020;source="fe01.contoso.com";reason="No valid security token."',
        "code": 28020,
        "category": "no_valid_security_token",
        "reason": "No valid security token.",
        "source": "fe01.contoso.com",
        "params": {"source": "fe01.contoso.com", "reason": "No valid security token."},
        "meaning": KNOWN_CODES[28020][1],
        "product": "skype",
        "detail_code": None,
        "detail": None,
        "detail_args": [],
        "form": "diagnostics",
        "error_name": None,
        "notes": [],
    }


# ------------------------------------------------------------------------------ junk


@pytest.mark.parametrize(
    "junk",
    ["", "   ", ";", ";;;", '"', "abc", "|", "|message", "=", "1" * 5000, "\x00\xff", None, 42],
)
def test_junk_gives_none(junk: object) -> None:
    assert parse_ms_diagnostics(junk) is None  # type: ignore[arg-type]


def test_junk_that_still_parses() -> None:
    unterminated = parse('2000001;reason="never closed')
    assert (unterminated.code, unterminated.reason) == (2000001, "never closed")
    many = parse("1;" + ";".join(f"k{i}=v" for i in range(1000)))
    assert len(many.params) == 64
    huge = parse("2000001;reason=" + '"' + "x" * 1_000_000 + '"')
    assert len(huge.raw) == 16 * 1024
    assert huge.reason == "x" * (16 * 1024 - len('2000001;reason="'))


def test_hostile_reason_is_fast() -> None:
    reason = ("user context issuer '" + "a" * 50 + "' ") * 400
    value = f'2000001;reason="{reason} does not match"'
    start = time.perf_counter()
    for _ in range(20):
        parse(value)
    assert time.perf_counter() - start < 2.0
