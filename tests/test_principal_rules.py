"""Principal strings by the rules of the Microsoft S2S notes (section 2): split at the last '@'
then the last '/', ``@*`` means any realm, the app id and realm compare case-sensitively and the
host case-insensitively; and the field mistakes a user is told about, word for word."""

from __future__ import annotations

import pytest

from analyzer.oauth.principals import (
    edit_distance,
    is_guid,
    nearest_well_known,
    parse_principal,
    parse_trusted_issuers,
    principals_equal,
    resolve_app,
)

EXO = "00000002-0000-0ff1-ce00-000000000000"
SFB = "00000004-0000-0ff1-ce00-000000000000"
ACS = "00000001-0000-0000-c000-000000000000"
TENANT = "11111111-2222-3333-4444-555555555555"
TYPO = "00000002-000-0ff1-ce00-000000000000"  # the misprint from the deployment guide


def _fields(text: object, **kw: object) -> tuple:
    p = parse_principal(text, **kw)  # type: ignore[arg-type]
    return (p.app_id, p.host, p.realm, p.app_name, p.realm_kind, p.app_id_kind, p.suggestion,
            p.issues, p.family)  # fmt: skip


@pytest.mark.parametrize(
    ("text", "kw", "expected", "display"),
    [
        (f"{SFB}@contoso.com", {},
         (SFB, None, "contoso.com", "Skype for Business / Lync", "domain", "guid", None, (),
          "office-s2s"),
         "Skype for Business / Lync (00000004-…)@contoso.com"),
        (f"{SFB}/Pool.Contoso.com@*", {"role": "audience"},
         (SFB, "Pool.Contoso.com", "*", "Skype for Business / Lync", "any", "guid", None, (),
          "office-s2s"),
         "Skype for Business / Lync (00000004-…)/Pool.Contoso.com@*"),
        (f"{TYPO}@contoso.com", {"role": "issuer"},
         (TYPO, None, "contoso.com", None, "domain", "not-guid", EXO,
          ("app id is not a GUID", f"did you mean {EXO} (Exchange)?"), None),
         f"{TYPO}@contoso.com"),
        ("00000008-0000-0ff1-ce00-000000000000@contoso.com", {},
         ("00000008-0000-0ff1-ce00-000000000000", None, "contoso.com", None, "domain", "guid",
          EXO, ("unlisted first-party id (office-s2s family); did you mean "
                f"{EXO} (Exchange)?",), "office-s2s"),
         "00000008-0000-0ff1-ce00-000000000000@contoso.com"),
        (f"{SFB.upper()}@Contoso.com", {},
         (SFB.upper(), None, "Contoso.com", "Skype for Business / Lync", "domain", "guid", None,
          ("uppercase app id: S2S principals are lowercase",
           "uppercase realm: realms compare case-sensitively and S2S values are lowercase"),
          "office-s2s"),
         "Skype for Business / Lync (00000004-…)@Contoso.com"),
        (f"{ACS}@contoso.com", {},
         (ACS, None, "contoso.com", "Microsoft STS (Azure ACS / Entra ID)", "domain", "guid",
          None, ("realm is a domain where a tenant GUID is usual",), "azure-first-party"),
         "Microsoft STS (Azure ACS / Entra ID) (00000001-…)@contoso.com"),
        ("app@contoso.com", {"expect_tenant": True},
         ("app", None, "contoso.com", None, "domain", "not-guid", None,
          ("app id is not a GUID", "realm is a domain where a tenant GUID is usual"), None),
         "app@contoso.com"),
        (f"{ACS}@{TENANT}", {"expect_tenant": True},
         (ACS, None, TENANT, "Microsoft STS (Azure ACS / Entra ID)", "tenant-guid", "guid",
          None, (), "azure-first-party"),
         f"Microsoft STS (Azure ACS / Entra ID) (00000001-…)@{TENANT}"),
        (f"{SFB}%40contoso.com", {},
         (SFB, None, "contoso.com", "Skype for Business / Lync", "domain", "guid", None,
          ("principal was URL-encoded",), "office-s2s"),
         "Skype for Business / Lync (00000004-…)@contoso.com"),
        ("x%2Fhost@r", {},
         ("x", "host", "r", None, "other", "not-guid", None,
          ("principal was URL-encoded", "app id is not a GUID"), None),
         "x/host@r"),
        ("https://sts.windows.net/*/", {},
         ("https://sts.windows.net/*/", None, None, "Entra ID (Azure AD) v1 issuer URL", "none",
          "url", None, (), None),
         "Entra ID (Azure AD) v1 issuer URL <https://sts.windows.net/*/>"),
        ("https://example.com/x@y", {},
         ("https://example.com/x@y", None, None, None, "none", "url", None, (), None),
         "https://example.com/x@y"),
        ("a@b@c", {},
         ("a@b", None, "c", None, "other", "not-guid", None,
          ("more than one '@'", "app id is not a GUID"), None),
         "a@b@c"),
        ("x/@r", {},
         ("x", "", "r", None, "other", "not-guid", None,
          ("app id is not a GUID", "empty host after '/'"), None),
         "x/@r"),
        ("x/ho st@r", {},
         ("x", "ho st", "r", None, "other", "not-guid", None,
          ("whitespace inside principal", "app id is not a GUID",
           "host is not a valid hostname"), None),
         "x/ho st@r"),
        ("x@", {"role": "issuer"},
         ("x", None, "", None, "empty", "not-guid", None,
          ("app id is not a GUID", "empty realm after '@'"), None),
         "x@"),
        ("x", {"role": "issuer"},
         ("x", None, None, None, "none", "not-guid", None,
          ("app id is not a GUID", "no realm ('@<realm>' missing)"), None),
         "x"),
        ("x", {}, ("x", None, None, None, "none", "not-guid", None,
                   ("app id is not a GUID",), None), "x"),
        ("x", {"role": "bogus"}, ("x", None, None, None, "none", "not-guid", None,
                                  ("app id is not a GUID",), None), "x"),
        (f"x@{TENANT}", {}, ("x", None, TENANT, None, "tenant-guid", "not-guid", None,
                             ("app id is not a GUID",), None), f"x@{TENANT}"),
        ("x@https://r", {}, ("x", None, "https://r", None, "url", "not-guid", None,
                             ("app id is not a GUID",), None), "x@https://r"),
        ("@contoso.com", {}, ("", None, "contoso.com", None, "domain", "empty", None,
                              ("empty app id",), None), "(no app id)@contoso.com"),
        (f"{EXO}/mail.contoso.com", {"role": "resource"},
         (EXO, "mail.contoso.com", None, "Exchange", "none", "guid", None,
          ("no realm ('@<realm>' missing)",), "office-s2s"),
         "Exchange (00000002-…)/mail.contoso.com"),
        (f"{EXO}@contoso.com", {"role": "audience"},
         (EXO, None, "contoso.com", "Exchange", "domain", "guid", None,
          ("audience has no /host part (MS-XOAUTH wants <id>/<host>@<realm>)",), "office-s2s"),
         "Exchange (00000002-…)@contoso.com"),
        (f"{EXO}@contoso.com", {"role": "nameid"},
         (EXO, None, "contoso.com", "Exchange", "domain", "guid", None, (), "office-s2s"),
         "Exchange (00000002-…)@contoso.com"),
        ("00000003-0000-0000-c000-000000000000@contoso.com.", {},
         ("00000003-0000-0000-c000-000000000000", None, "contoso.com.", "Microsoft Graph",
          "domain", "guid", None, (), "azure-first-party"),
         "Microsoft Graph (00000003-…)@contoso.com."),
    ],
)  # fmt: skip
def test_parse_principal(text: str, kw: dict, expected: tuple, display: str) -> None:
    assert _fields(text, **kw) == expected
    principal = parse_principal(text, **kw)
    assert principal.display() == display
    assert principal.raw == text
    assert principal.to_dict() == {
        "raw": text,
        "app_id": expected[0],
        "host": expected[1],
        "realm": expected[2],
        "app_name": expected[3],
        "realm_kind": expected[4],
        "app_id_kind": expected[5],
        "suggestion": expected[6],
        "issues": list(expected[7]),
        "family": expected[8],
        "display": display,
    }


def test_well_known_is_case_insensitive_and_unlisted_guids_show_in_full() -> None:
    assert parse_principal(f"{EXO.upper()}@r").well_known is True
    assert parse_principal(f"{TENANT}@r").well_known is False
    assert parse_principal(f"{TENANT}@r").display() == f"{TENANT}@r"


def test_empty_and_non_text_input() -> None:
    empty = ("", None, None, None, "none", "empty", None, ("empty principal",), None)
    assert _fields("   ") == empty
    assert parse_principal("   ").raw == "   "
    assert parse_principal("   ").display() == "(empty)"
    assert _fields(None) == empty
    assert _fields(42) == empty
    assert _fields(b"\xe9@r")[:3] == ("é", None, "r")


def test_overlong_input_is_cut_at_2048_characters() -> None:
    at_limit = parse_principal("x" * 2048)
    assert (len(at_limit.raw), at_limit.issues) == (2048, ("app id is not a GUID",))
    over = parse_principal("x" * 2049)
    assert len(over.raw) == 2048
    assert over.issues == ("input cut at 2048 characters", "app id is not a GUID")


def test_parse_is_stable_across_cached_and_uncached_calls() -> None:
    text = f"{SFB}@contoso.com"
    assert parse_principal(text, role="issuer") == parse_principal(text, role="issuer")
    assert parse_principal(text) is parse_principal(text)
    long_text = "y" * 3000 + f"@{TENANT}"
    assert parse_principal(long_text).issues[0] == "input cut at 2048 characters"


# -- trusted_issuers ----------------------------------------------------------------------
def test_trusted_issuers_list_with_wildcard_realm() -> None:
    value = f'"{ACS}@*, {SFB}@contoso.com,,"'
    parsed = parse_trusted_issuers(value)
    assert [(p.app_id, p.realm, p.realm_kind) for p in parsed] == [
        (ACS, "*", "any"),
        (SFB, "contoso.com", "domain"),
    ]
    assert all(p.issues == () for p in parsed)
    assert parse_trusted_issuers(value) is not parse_trusted_issuers(value)


def test_trusted_issuers_entries_are_issuer_form() -> None:
    (entry,) = parse_trusted_issuers("just-an-id")
    assert entry.issues == ("app id is not a GUID", "no realm ('@<realm>' missing)")


def test_trusted_issuers_caps_and_odd_input() -> None:
    assert len(parse_trusted_issuers(",".join([f"{SFB}@r"] * 300))) == 256
    assert parse_trusted_issuers("") == []
    assert parse_trusted_issuers('""') == []
    assert parse_trusted_issuers('"') == [parse_principal('"', role="trusted_issuer")]
    assert parse_trusted_issuers(None) == []  # type: ignore[arg-type]
    assert [p.app_id for p in parse_trusted_issuers(b"a@r,b@r")] == ["a", "b"]  # type: ignore[arg-type]
    big = ",".join([f"{SFB}@contoso.com"] * 700)  # over the 8 KiB cached size: parsed anyway
    assert len(big) > 8 * 1024 and len(parse_trusted_issuers(big)) == 256
    huge = "a@r," + " " * (64 * 1024) + ",b@r"
    assert [p.app_id for p in parse_trusted_issuers(huge)] == ["a"]


# -- comparisons (MS-XOAUTH 3.2.5.6) --------------------------------------------------------
@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (f"{SFB}/pool.contoso.com@contoso.com", f"{SFB}/POOL.Contoso.COM@contoso.com", True),
        (f"{SFB}/pool.contoso.com@contoso.com", f"{SFB}/pool.contoso.com@Contoso.com", False),
        (f"{SFB}/pool.contoso.com@contoso.com", f"{SFB.upper()}/pool.contoso.com@contoso.com",
         False),
        (f"  {SFB}@contoso.com ", f"{SFB}@contoso.com", True),
        (f"{SFB}@contoso.com", f"{SFB}/pool@contoso.com", False),
        (f"{SFB}/pool@contoso.com", f"{SFB}/pool", False),
        (f"{SFB}", f"{SFB}", True),
        (f"{SFB}/pool", f"{SFB}/POOL", True),
        (f"{SFB}@*", f"{SFB}@contoso.com", False),
        ("https://sts.windows.net/t/", "https://sts.windows.net/t/", True),
        ("https://sts.windows.net/t/", "HTTPS://sts.windows.net/t/", False),
        ("https://a/b@c", "x/b@c", False),
        ("x/b@c", "https://a/b@c", False),
    ],
)  # fmt: skip
def test_principals_equal(a: str, b: str, equal: bool) -> None:
    assert principals_equal(a, b) is equal
    assert principals_equal(b, a) is equal


def test_principals_equal_non_text_and_overlong() -> None:
    assert principals_equal(None, "x") is False  # type: ignore[arg-type]
    assert principals_equal("x", 5) is False  # type: ignore[arg-type]
    assert principals_equal("a" * 2048 + "tail1", "a" * 2048 + "tail2") is True


# -- app ids: well-known names, suggestions, aliases ----------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (TYPO, (EXO, 1)),
        (EXO, None),
        (EXO.upper(), None),
        ("0000000-0000-0ff1-ce00-00000000000", (EXO, 2)),
        (" 00000002-0000-0FF1-ce00-00000000000X ", (EXO, 1)),
        ("00000009-0000-0ff1-ce00-000000000000", (EXO, 1)),  # tie: the earlier entry wins
        ("0000-0000-0ff1-ce00-000000000000", None),  # four characters short: too far
        ("00000002-0000-0ff1-ce00-000000000000-extra", None),
        ("ffffffff-ffff-ffff-ffff-ffffffffffff", None),
        (5, None),
    ],
)
def test_nearest_well_known(text: object, expected: tuple | None) -> None:
    assert nearest_well_known(text) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("query", "ids"),
    [
        ("Exchange", {EXO}),
        ("SKYPE_FOR-business", {SFB}),
        (EXO.upper(), {EXO}),
        (f"{EXO}/mail.contoso.com@contoso.com", {EXO}),
        (f" {EXO.upper()}@x ", {EXO}),
        ("x/y@z", set()),
        ("Power BI Service", {"00000009-0000-0000-c000-000000000000"}),
        ("Intune", {"0000000a-0000-0000-c000-000000000000"}),
        ("teams web", {"5e3ce6c0-2b1f-4285-8d4b-75ee78787346",
                       "e1829006-9cf1-4d05-8b48-2e665cb48e6a"}),
        ("teams", {"1fec8e78-bce4-4aaf-ab1b-5451cc387264", "cc15fd57-2c6c-4117-a88c-83b1d56b4bbe",
                   "5e3ce6c0-2b1f-4285-8d4b-75ee78787346",
                   "e1829006-9cf1-4d05-8b48-2e665cb48e6a"}),
        ("ms", set()),
        ("unknown", set()),
        ("self-issuing", set()),
        ("", set()),
        ("  ", set()),
        ("--", set()),
        ("https://a/b@c", set()),
        (5, set()),
    ],
)  # fmt: skip
def test_resolve_app(query: object, ids: set[str]) -> None:
    assert resolve_app(query) == ids  # type: ignore[arg-type]


def test_edit_distance_and_its_limit() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("sitting", "kitten") == 3
    assert edit_distance("kitten", "sitting", 1) == 2
    assert edit_distance("kitten", "sitting", 3) == 3
    assert edit_distance("a", "abcd", 2) == 3
    assert edit_distance("abc", "abc", 0) == 0
    assert edit_distance("", "ab") == 2
    assert edit_distance("abc", "axc", 1) == 1


def test_is_guid() -> None:
    assert is_guid(EXO.upper()) is True
    assert is_guid("{" + EXO + "}") is False
    assert is_guid(EXO + "\n") is False
    assert is_guid(EXO[:-1]) is False
    assert is_guid(5) is False


# -- hostile and unusual input --------------------------------------------------------------
def test_unhashable_arguments_never_raise() -> None:
    assert _fields(["x@r"]) == _fields(None)
    assert parse_principal("x@r", expect_tenant=[True]).realm == "r"  # type: ignore[arg-type]


def test_long_principals_keep_their_role_and_tenant_expectation() -> None:
    long_id = "y" * 3000
    audience = parse_principal(f"{long_id}@contoso.com", role="audience")
    assert audience.issues == (
        "input cut at 2048 characters",
        "app id is not a GUID",
        "audience has no /host part (MS-XOAUTH wants <id>/<host>@<realm>)",
        "no realm ('@<realm>' missing)",  # cut off with the tail
    )
    cut = parse_principal("a@contoso.com/" + "h" * 3000, role="audience")
    assert cut.issues[0] == "input cut at 2048 characters"
    tenant = parse_principal("a" * 10 + "@contoso.com" + " " * 3000, expect_tenant=True)
    assert "realm is a domain where a tenant GUID is usual" in tenant.issues
    no_host = parse_principal("a@contoso.com" + " " * 3000, role="audience")
    assert "audience has no /host part (MS-XOAUTH wants <id>/<host>@<realm>)" in no_host.issues


def test_encoded_separators_are_decoded_only_when_the_plain_one_is_absent() -> None:
    assert parse_principal("a%40b@r").issues == ("app id is not a GUID",)
    assert parse_principal("a%2Fb/h@r").issues == ("app id is not a GUID",)
    assert parse_principal("a%2Fh@r").host == "h"


def test_url_principals_keep_their_issues_and_first_host() -> None:
    spaced = parse_principal("https://sts.windows.net/ x/")
    assert spaced.issues == ("whitespace inside principal",)
    twice = parse_principal("https://sts.windows.net/t/x://other/")
    assert twice.app_name == "Entra ID (Azure AD) v1 issuer URL"


def test_uppercase_ids_are_flagged_when_they_look_like_ids() -> None:
    assert (
        "uppercase app id: S2S principals are lowercase"
        in parse_principal(f"{TYPO.upper()}@r").issues
    )
    assert (
        "uppercase app id: S2S principals are lowercase"
        in parse_principal("AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE@r").issues
    )
    assert parse_principal("SomeApp@r").issues == ("app id is not a GUID",)


def test_quoted_trusted_issuers_lose_only_their_quotes() -> None:
    (entry,) = parse_trusted_issuers('"a@r"')
    assert (entry.app_id, entry.realm) == ("a", "r")


def test_resolve_app_by_principal_without_realm_exact_name_and_short_words() -> None:
    assert resolve_app(f"{EXO}/mail.contoso.com") == {EXO}
    constant = "not an app: Exchange self-issuing token realm constant"
    assert resolve_app(constant) == {"00000002-0000-0ff1-ce00-200000000000"}
    assert resolve_app("one") == {
        "00000002-0000-0ff1-ce00-100000000002",
        "2d4d3d8e-2be3-4bef-9f87-7875a61c29de",
    }
    assert resolve_app("bi") == set()
