"""Tests for analyzer.oauth.principals: Microsoft S2S principal names and well-known app ids.

Principal strings are the examples of docs/microsoft-s2s.md (sections 1, 2, 4.1, 8, 9 and the
field notes); GUIDs such as the tenant 11111111-… are the doc's own invented placeholders.
"""

from __future__ import annotations

import pytest

from analyzer.oauth.principals import (
    APP_ALIASES,
    WELL_KNOWN_APPS,
    Principal,
    edit_distance,
    is_guid,
    nearest_well_known,
    parse_principal,
    parse_trusted_issuers,
    principals_equal,
    resolve_app,
)

EXO = "00000002-0000-0ff1-ce00-000000000000"
SPO = "00000003-0000-0ff1-ce00-000000000000"
SFB = "00000004-0000-0ff1-ce00-000000000000"
ACS = "00000001-0000-0000-c000-000000000000"
TID = "11111111-2222-3333-4444-555555555555"
FARM = "52aa6841-0000-4000-8000-000000000001"

# Every id named in section 1 of the doc (table and the paragraph after it).
SECTION_1_IDS = [
    ACS,
    EXO,
    SPO,
    SFB,
    "00000005-0000-0ff1-ce00-000000000000",
    "00000006-0000-0ff1-ce00-000000000000",
    "00000007-0000-0ff1-ce00-000000000000",
    "00000007-0000-0000-c000-000000000000",
    "00000002-0000-0000-c000-000000000000",
    "00000003-0000-0000-c000-000000000000",
    "00000005-0000-0000-c000-000000000000",
    "00000008-0000-0000-c000-000000000000",
    "00000009-0000-0000-c000-000000000000",
    "0000000a-0000-0000-c000-000000000000",
    "0000000b-0000-0000-c000-000000000000",
    "0000000c-0000-0000-c000-000000000000",
    "00000011-0000-0000-c000-000000000000",
    "00000012-0000-0000-c000-000000000000",
    "00000015-0000-0000-c000-000000000000",
    *(f"00000002-0000-0ff1-ce00-10000000000{n}" for n in range(2, 10)),
    "00000002-0000-0ff1-ce00-200000000000",
    "1fec8e78-bce4-4aaf-ab1b-5451cc387264",
    "cc15fd57-2c6c-4117-a88c-83b1d56b4bbe",
    "5e3ce6c0-2b1f-4285-8d4b-75ee78787346",
    "e1829006-9cf1-4d05-8b48-2e665cb48e6a",
    "48ac35b8-9aa8-4d74-927d-1f4a14a0b239",
    "5d661950-3475-41cd-a2c3-d671a3162bc1",
    "bc59ab01-8403-45c6-8796-ac3ef710b3e3",
    "47629505-c2b6-4a80-adb1-9b3a3d233b7b",
    "a0c73c16-a7e3-4564-9a95-2bdf47383716",
    "d3590ed6-52b3-4102-aeff-aad2292ab01c",
    "797f4846-ba00-4fd7-ba43-dac1f8f63013",
    "00000001-0001-0000-c000-000000000000",
    "00000001-0002-0000-c000-000000000000",
    "D3776938-3DBA-481F-A652-4BEDFCAB7CD8",
    "90140122-8516-11e1-8eff-49304924019b",
    "39624784-6cbe-4a60-afbe-9f46d10fdb27",
    "00f82732-f451-4a01-918c-0e9896e784f9",
    "7557eb47-c689-4224-abcf-aef9bd7573df",
    "00b41c95-dab0-4487-9791-b9d2c32c80f2",
    "fb78d390-0c51-40cd-8e17-fdbfab77341b",
    "2d4d3d8e-2be3-4bef-9f87-7875a61c29de",
]


# ------------------------------------------------------------------------------ the id table


def test_every_section_1_id_is_well_known_and_keys_are_lowercase_guids() -> None:
    for app_id in SECTION_1_IDS:
        assert app_id.lower() in WELL_KNOWN_APPS, app_id
    assert len(WELL_KNOWN_APPS) == len(SECTION_1_IDS)
    for key, name in WELL_KNOWN_APPS.items():
        assert key == key.lower() and is_guid(key) and name


def test_table_names_and_labels() -> None:
    assert WELL_KNOWN_APPS[EXO] == "Exchange"
    assert WELL_KNOWN_APPS[SPO] == "SharePoint"
    assert WELL_KNOWN_APPS[SFB] == "Skype for Business / Lync"
    assert WELL_KNOWN_APPS["00000007-0000-0ff1-ce00-000000000000"] == "Exchange Online Protection"
    assert WELL_KNOWN_APPS["00000007-0000-0000-c000-000000000000"] == "Dynamics CRM (Dataverse)"
    assert WELL_KNOWN_APPS["00000002-0000-0ff1-ce00-200000000000"].startswith("not an app:")
    assert WELL_KNOWN_APPS["d3776938-3dba-481f-a652-4bedfcab7cd8"] == (
        "unknown (listed among SharePoint Online trusted issuers)"
    )
    assert WELL_KNOWN_APPS["00000002-0000-0ff1-ce00-100000000002"] == (
        "OneDrive (consumer-side partner known to Exchange)"
    )
    for uncertain in (
        "00000001-0001-0000-c000-000000000000",
        "00000001-0002-0000-c000-000000000000",
    ):
        assert WELL_KNOWN_APPS[uncertain].startswith("unknown (probably")


def test_aliases_point_at_known_ids() -> None:
    for alias, ids in APP_ALIASES.items():
        assert alias == alias.lower() and ids, alias
        assert all(i in WELL_KNOWN_APPS for i in ids), alias


# ------------------------------------------------------------------------------ small helpers


def test_is_guid() -> None:
    assert is_guid(EXO)
    assert is_guid("D3776938-3DBA-481F-A652-4BEDFCAB7CD8")
    assert not is_guid("00000002-000-0ff1-ce00-000000000000")
    assert not is_guid("{" + EXO + "}")
    assert not is_guid(EXO + "\n")
    assert not is_guid("0000000g-0000-0ff1-ce00-000000000000")
    assert not is_guid("")
    assert not is_guid(None)


def test_edit_distance() -> None:
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3
    assert edit_distance("abc", "abc") == 0
    assert edit_distance("00000002-000-0ff1-ce00-000000000000", EXO) == 1
    assert edit_distance("abcdef", "uvwxyz", limit=2) == 3
    assert edit_distance("a", "abcdefgh", limit=2) == 3


def test_nearest_well_known() -> None:
    # The id printed with a digit missing in the deployment guide (field notes).
    assert nearest_well_known("00000002-000-0ff1-ce00-000000000000") == (EXO, 1)
    assert nearest_well_known("00000002-0000-Off1-ce00-000000000000") == (EXO, 1)  # letter O
    assert nearest_well_known("00000003-0000-0ff1-ce00-00000000000") == (SPO, 1)
    assert nearest_well_known("00000004-0000-0ff1-ce00-0000000000ab") == (SFB, 2)
    assert nearest_well_known("00000004-0000-0ff1-ce00-000000000abc") is None  # distance 3
    assert nearest_well_known(EXO) is None
    assert nearest_well_known(EXO.upper()) is None  # well known in any case
    assert nearest_well_known(FARM) is None
    assert nearest_well_known("") is None
    assert nearest_well_known("x" * 10_000) is None
    # A tie goes to the earlier table entry: Exchange before its consumer-side partners.
    assert nearest_well_known("00000002-0000-0ff1-ce00-100000000000") == (EXO, 1)


# ------------------------------------------------------------------------------ parse_principal


def test_issuer_form() -> None:
    p = parse_principal(f"{EXO}@contoso.com")
    assert p == Principal(
        raw=f"{EXO}@contoso.com",
        app_id=EXO,
        host=None,
        realm="contoso.com",
        app_name="Exchange",
        realm_kind="domain",
        app_id_kind="guid",
        suggestion=None,
        issues=(),
        family="office-s2s",
    )
    assert p.well_known
    assert p.display() == "Exchange (00000002-…)@contoso.com"


def test_audience_form_section_2() -> None:
    p = parse_principal(f"{SFB}/lyncpool01.contoso.com@contoso.com", role="audience")
    assert (p.app_id, p.host, p.realm) == (SFB, "lyncpool01.contoso.com", "contoso.com")
    assert (p.app_name, p.realm_kind, p.issues) == ("Skype for Business / Lync", "domain", ())
    assert (
        p.display() == "Skype for Business / Lync (00000004-…)/lyncpool01.contoso.com@contoso.com"
    )


def test_any_realm_and_acs_issuer() -> None:
    p = parse_principal(f"{ACS}@*", role="trusted_issuer")
    assert (p.realm, p.realm_kind, p.issues) == ("*", "any", ())
    assert p.app_name == "Microsoft STS (Azure ACS / Entra ID)"
    assert p.family == "azure-first-party"
    assert p.display() == "Microsoft STS (Azure ACS / Entra ID) (00000001-…)@*"


def test_spn_without_realm() -> None:
    # Service principal name registered on the Microsoft 365 side (section 2.3): no '@'.
    p = parse_principal(f"{EXO}/mail.contoso.com")
    assert (p.app_id, p.host, p.realm, p.realm_kind, p.issues) == (
        EXO,
        "mail.contoso.com",
        None,
        "none",
        (),
    )
    # The same string where an audience is expected lacks a realm.
    assert parse_principal(f"{EXO}/mail.contoso.com", role="audience").issues == (
        "no realm ('@<realm>' missing)",
    )


def test_bare_client_id_is_not_flagged_without_a_role() -> None:
    p = parse_principal(SPO)
    assert (p.app_id, p.host, p.realm, p.realm_kind, p.issues) == (SPO, None, None, "none", ())
    assert p.display() == "SharePoint (00000003-…)"


def test_example_a_exchange_to_sfb() -> None:
    aud = parse_principal(f"{SFB}/sfbpool01.contoso.com@contoso.com", role="audience")
    iss = parse_principal(f"{EXO}@contoso.com", role="issuer")
    nameid = parse_principal(f"{EXO}@contoso.com", role="nameid")
    assert (aud.app_name, aud.host, aud.realm, aud.issues) == (
        "Skype for Business / Lync",
        "sfbpool01.contoso.com",
        "contoso.com",
        (),
    )
    assert (iss.app_name, iss.issues) == ("Exchange", ())
    assert nameid == iss  # the nameid of a self-issued actor is its issuer


def test_example_b_hybrid_acs_actor() -> None:
    aud = parse_principal(f"{EXO}/outlook.office365.com@{TID}", role="audience")
    assert (aud.app_name, aud.host, aud.realm, aud.realm_kind, aud.issues) == (
        "Exchange",
        "outlook.office365.com",
        TID,
        "tenant-guid",
        (),
    )
    iss = parse_principal(f"{ACS}@{TID}", role="issuer")
    assert (iss.app_name, iss.realm_kind, iss.issues) == (
        "Microsoft STS (Azure ACS / Entra ID)",
        "tenant-guid",
        (),
    )
    assert iss.display() == f"Microsoft STS (Azure ACS / Entra ID) (00000001-…)@{TID}"


def test_example_c_sharepoint_high_trust() -> None:
    aud = parse_principal(f"{SPO}/sp2019.contoso.com@{FARM}", role="audience")
    assert (aud.app_name, aud.host, aud.realm_kind, aud.issues) == (
        "SharePoint",
        "sp2019.contoso.com",
        "tenant-guid",
        (),
    )
    iss = parse_principal(f"e9134021-0000-4000-8000-000000000002@{FARM}", role="issuer")
    assert (iss.app_name, iss.app_id_kind, iss.suggestion, iss.issues, iss.family) == (
        None,
        "guid",
        None,
        (),
        None,
    )
    assert iss.display() == f"e9134021-0000-4000-8000-000000000002@{FARM}"


def test_acs_sts_principal_with_host_section_8() -> None:
    p = parse_principal(f"{ACS}/accounts.accesscontrol.windows.net@{TID}", role="audience")
    assert (p.app_id, p.host, p.realm, p.issues) == (
        ACS,
        "accounts.accesscontrol.windows.net",
        TID,
        (),
    )


def test_url_encoded_resource_section_8() -> None:
    p = parse_principal(f"{EXO}%2Foutlook.office365.com%40{TID}", role="resource")
    assert (p.app_id, p.host, p.realm) == (EXO, "outlook.office365.com", TID)
    assert p.issues == ("principal was URL-encoded",)


def test_malformed_id_from_the_field_notes() -> None:
    p = parse_principal("00000002-000-0ff1-ce00-000000000000@contoso.com")
    assert (p.app_id_kind, p.app_name, p.suggestion, p.realm) == (
        "not-guid",
        None,
        EXO,
        "contoso.com",
    )
    assert p.issues == (
        "app id is not a GUID",
        "did you mean 00000002-0000-0ff1-ce00-000000000000 (Exchange)?",
    )
    assert p.display() == "00000002-000-0ff1-ce00-000000000000@contoso.com"


def test_guid_close_to_a_well_known_id() -> None:
    p = parse_principal(f"00000004-0000-0ff1-ce00-00000000000a@{TID}")
    assert (p.app_id_kind, p.suggestion, p.family) == ("guid", SFB, None)
    assert p.issues == (
        "did you mean 00000004-0000-0ff1-ce00-000000000000 (Skype for Business / Lync)?",
    )


def test_unlisted_office_family_id_is_suggested_softly() -> None:
    p = parse_principal("00000008-0000-0ff1-ce00-000000000000@contoso.com")
    assert (p.app_name, p.suggestion, p.family) == (None, EXO, "office-s2s")
    assert p.issues == (
        "unlisted first-party id (office-s2s family); "
        "did you mean 00000002-0000-0ff1-ce00-000000000000 (Exchange)?",
    )


def test_uppercase_well_known_id() -> None:
    p = parse_principal("00000002-0000-0FF1-CE00-000000000000@contoso.com")
    assert (p.app_name, p.suggestion) == ("Exchange", None)
    assert p.issues == ("uppercase app id: S2S principals are lowercase",)
    assert p.display() == "Exchange (00000002-…)@contoso.com"


def test_domain_realm_flagged_only_where_a_tenant_is_expected() -> None:
    # On-prem Exchange / SfB realms are domains: fine.
    assert parse_principal(f"{SFB}@contoso.com", role="issuer").issues == ()
    # The caller says a tenant GUID belongs here (ACS / Entra context).
    assert parse_principal(f"{SFB}@contoso.com", expect_tenant=True).issues == (
        "realm is a domain where a tenant GUID is usual",
    )
    # The ACS principal's realm is always the tenant id.
    assert parse_principal(f"{ACS}@contoso.com").issues == (
        "realm is a domain where a tenant GUID is usual",
    )
    assert parse_principal(f"{ACS}@{TID}", expect_tenant=True).issues == ()


def test_realm_kinds() -> None:
    kinds = {
        f"{EXO}@*": "any",
        f"{EXO}@{TID}": "tenant-guid",
        f"{EXO}@contoso.com": "domain",
        f"{EXO}@https://contoso.com/": "url",
        f"{EXO}@": "empty",
        EXO: "none",
        f"{EXO}@CONTOSO": "other",
    }
    for text, kind in kinds.items():
        assert parse_principal(text).realm_kind == kind, text


def test_uppercase_and_empty_realm_issues() -> None:
    assert parse_principal(f"{EXO}@Contoso.com").issues == (
        "uppercase realm: realms compare case-sensitively and S2S values are lowercase",
    )
    assert parse_principal(f"{EXO}@").issues == ("empty realm after '@'",)


def test_audience_without_host() -> None:
    p = parse_principal(f"{EXO}@contoso.com", role="audience")
    assert p.issues == ("audience has no /host part (MS-XOAUTH wants <id>/<host>@<realm>)",)


def test_slash_before_at_with_empty_host() -> None:
    p = parse_principal(f"{SFB}/@contoso.com")
    assert (p.app_id, p.host, p.realm, p.app_name) == (
        SFB,
        "",
        "contoso.com",
        "Skype for Business / Lync",
    )
    assert p.issues == ("empty host after '/'",)


def test_last_at_and_last_slash_rule() -> None:
    p = parse_principal("a/b/c@d@e")
    assert (p.app_id, p.host, p.realm) == ("a/b", "c@d", "e")
    assert p.issues == (
        "more than one '@'",
        "app id is not a GUID",
        "host is not a valid hostname",
    )


def test_non_guid_app_names_are_not_forced_into_suggestions() -> None:
    p = parse_principal("OwaWac@contoso.com")  # Exchange WAC callback appctxsender
    assert (p.app_id_kind, p.suggestion, p.issues) == ("not-guid", None, ("app id is not a GUID",))


def test_url_entry() -> None:
    p = parse_principal("https://sts.windows.net/*/", role="trusted_issuer")
    assert p == Principal(
        raw="https://sts.windows.net/*/",
        app_id="https://sts.windows.net/*/",
        host=None,
        realm=None,
        app_name="Entra ID (Azure AD) v1 issuer URL",
        realm_kind="none",
        app_id_kind="url",
        suggestion=None,
        issues=(),
        family=None,
    )
    assert p.display() == "Entra ID (Azure AD) v1 issuer URL <https://sts.windows.net/*/>"
    other = parse_principal("https://idp.example.org/tenant/")
    assert (other.app_id_kind, other.app_name, other.display()) == (
        "url",
        None,
        "https://idp.example.org/tenant/",
    )


def test_to_dict() -> None:
    p = parse_principal("00000002-000-0ff1-ce00-000000000000@contoso.com")
    assert p.to_dict() == {
        "raw": "00000002-000-0ff1-ce00-000000000000@contoso.com",
        "app_id": "00000002-000-0ff1-ce00-000000000000",
        "host": None,
        "realm": "contoso.com",
        "app_name": None,
        "realm_kind": "domain",
        "app_id_kind": "not-guid",
        "suggestion": EXO,
        "issues": ["app id is not a GUID", f"did you mean {EXO} (Exchange)?"],
        "family": None,
        "display": "00000002-000-0ff1-ce00-000000000000@contoso.com",
    }


@pytest.mark.parametrize(
    "junk",
    [
        "",
        "   ",
        "@",
        "@@@",
        "/",
        "////@",
        "/@/",
        "\x00\xff@\x01",
        "ä@ö",
        "💥/💥@💥",
        "%40%2F%zz",
        '"' * 50,
        "a" * 100_000,
        "0" * 36 + "@" + "1" * 50_000,
        None,
        12345,
        b"00000002-0000-0ff1-ce00-000000000000@contoso.com",
    ],
)
def test_junk_never_raises(junk: object) -> None:
    p = parse_principal(junk)  # type: ignore[arg-type]
    assert isinstance(p, Principal)
    assert len(p.raw) <= 2048
    assert isinstance(p.display(), str)
    assert isinstance(p.to_dict(), dict)
    assert isinstance(p.issues, tuple)


def test_junk_specific_readings() -> None:
    assert parse_principal("").issues == ("empty principal",)
    assert parse_principal(None).issues == ("empty principal",)  # type: ignore[arg-type]
    at = parse_principal("@")
    assert (at.app_id, at.realm, at.app_id_kind, at.realm_kind) == ("", "", "empty", "empty")
    assert at.issues == ("empty app id", "empty realm after '@'")
    long = parse_principal("a" * 100_000)
    assert long.issues[0] == "input cut at 2048 characters"
    assert len(long.app_id) == 2048
    raw = parse_principal(b"00000002-0000-0ff1-ce00-000000000000@contoso.com")
    assert (raw.app_name, raw.realm) == ("Exchange", "contoso.com")


# ------------------------------------------------------------------------------ trusted_issuers


def test_trusted_issuers_sharepoint_online_no_spaces() -> None:
    value = (
        "00000001-0000-0000-c000-000000000000@*,D3776938-3DBA-481F-A652-4BEDFCAB7CD8@*,"
        "https://sts.windows.net/*/,"
        "00000003-0000-0ff1-ce00-000000000000@90140122-8516-11e1-8eff-49304924019b"
    )
    got = parse_trusted_issuers(value)
    assert [(p.app_id, p.realm, p.app_id_kind, p.realm_kind) for p in got] == [
        (ACS, "*", "guid", "any"),
        ("D3776938-3DBA-481F-A652-4BEDFCAB7CD8", "*", "guid", "any"),
        ("https://sts.windows.net/*/", None, "url", "none"),
        (SPO, "90140122-8516-11e1-8eff-49304924019b", "guid", "tenant-guid"),
    ]
    assert [p.issues for p in got] == [
        (),
        ("uppercase app id: S2S principals are lowercase",),
        (),
        (),
    ]
    assert got[1].app_name == "unknown (listed among SharePoint Online trusted issuers)"
    assert (
        got[1].display()
        == "unknown (listed among SharePoint Online trusted issuers) (D3776938-…)@*"
    )


def test_trusted_issuers_exchange_hybrid_with_space() -> None:
    got = parse_trusted_issuers(f"{ACS}@{TID}, {SFB}@contoso.com")
    assert [(p.app_name, p.realm) for p in got] == [
        ("Microsoft STS (Azure ACS / Entra ID)", TID),
        ("Skype for Business / Lync", "contoso.com"),
    ]
    assert all(p.issues == () for p in got)


def test_trusted_issuers_single_entries_section_2_and_4() -> None:
    for value, name in [
        (f"{SFB}@contoso.com", "Skype for Business / Lync"),  # Exchange trusting on-prem SfB
        (f"{EXO}@contoso.com", "Exchange"),  # UCWA challenge, SfB trusting Exchange
        (f"{ACS}@*", "Microsoft STS (Azure ACS / Entra ID)"),  # Exchange Online
    ]:
        (p,) = parse_trusted_issuers(value)
        assert (p.app_name, p.issues) == (name, ())
    (xoauth,) = parse_trusted_issuers('"00000001-0001-0000-c000-000000000000@*"')  # quoted
    assert xoauth.app_name == WELL_KNOWN_APPS["00000001-0001-0000-c000-000000000000"]
    (china,) = parse_trusted_issuers("00000001-0002-0000-c000-000000000000@*")
    assert china.app_name.startswith("unknown (probably sovereign-cloud ACS")


def test_trusted_issuers_junk() -> None:
    assert parse_trusted_issuers("") == []
    assert parse_trusted_issuers(",,, ,") == []
    assert parse_trusted_issuers(None) == []  # type: ignore[arg-type]
    assert len(parse_trusted_issuers("a@*," * 10_000)) == 256
    (no_realm,) = parse_trusted_issuers(f"{EXO},")
    assert no_realm.issues == ("no realm ('@<realm>' missing)",)


# ------------------------------------------------------------------------------ equality


def test_principals_equal_case_rules() -> None:
    base = f"{SFB}/lyncpool01.contoso.com@contoso.com"
    assert principals_equal(base, base)
    assert principals_equal(base, f"{SFB}/LyncPool01.Contoso.COM@contoso.com")  # host: no case
    assert not principals_equal(base, f"{SFB.upper()}/lyncpool01.contoso.com@contoso.com")
    assert not principals_equal(base, f"{SFB}/lyncpool01.contoso.com@Contoso.com")  # realm: case
    assert not principals_equal(base, f"{SFB}@contoso.com")
    assert principals_equal(f" {EXO}@contoso.com ", f"{EXO}@contoso.com")
    assert not principals_equal(f"{EXO}@contoso.com", EXO)
    assert principals_equal("https://sts.windows.net/*/", "https://sts.windows.net/*/")
    assert not principals_equal("https://sts.windows.net/*/", "https://STS.windows.net/*/")
    assert not principals_equal(None, EXO)  # type: ignore[arg-type]
    assert principals_equal("", "")


# ------------------------------------------------------------------------------ resolve_app


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("skype", {SFB}),
        ("Lync", {SFB}),
        ("SfB", {SFB}),
        ("Skype for Business", {SFB}),
        ("Exchange", {EXO}),
        ("exchange online", {EXO}),
        ("sharepoint", {SPO}),
        ("00000004-0000-0ff1-ce00-000000000000", {SFB}),
        ("00000004-0000-0FF1-CE00-000000000000", {SFB}),
        ("D3776938-3DBA-481F-A652-4BEDFCAB7CD8", {"d3776938-3dba-481f-a652-4bedfcab7cd8"}),
        (f"{SFB}/lyncpool01.contoso.com@contoso.com", {SFB}),
        ("acs", {ACS}),
        ("Azure ACS", {ACS}),
        ("sts", {ACS}),
        ("graph", {"00000003-0000-0000-c000-000000000000"}),
        ("Microsoft Graph", {"00000003-0000-0000-c000-000000000000"}),
        ("aad-graph", {"00000002-0000-0000-c000-000000000000"}),
        ("crm", {"00000007-0000-0000-c000-000000000000"}),
        ("Dataverse", {"00000007-0000-0000-c000-000000000000"}),
        ("intune", {"0000000a-0000-0000-c000-000000000000"}),
        ("workflow", {"00000005-0000-0000-c000-000000000000"}),
        ("yammer", {"00000005-0000-0ff1-ce00-000000000000"}),
        ("Power BI", {"00000009-0000-0000-c000-000000000000"}),
        (
            "teams",
            {
                "1fec8e78-bce4-4aaf-ab1b-5451cc387264",
                "cc15fd57-2c6c-4117-a88c-83b1d56b4bbe",
                "5e3ce6c0-2b1f-4285-8d4b-75ee78787346",
                "e1829006-9cf1-4d05-8b48-2e665cb48e6a",
            },
        ),
        (
            "Microsoft Teams Web Client",
            {"5e3ce6c0-2b1f-4285-8d4b-75ee78787346", "e1829006-9cf1-4d05-8b48-2e665cb48e6a"},
        ),
        ("OneNote", {"2d4d3d8e-2be3-4bef-9f87-7875a61c29de"}),
        ("nonsense-product", set()),
        ("", set()),
        ("  ", set()),
        ("--", set()),
        ("ab", set()),
        (FARM, set()),
        (f"{FARM}@contoso.com", set()),
        ("https://sts.windows.net/*/", set()),
    ],
)
def test_resolve_app(query: str, expected: set[str]) -> None:
    assert resolve_app(query) == expected


def test_resolve_app_substring_of_names() -> None:
    # Not an alias: falls back to product names containing the words.
    assert resolve_app("consumer-side partner") == {
        f"00000002-0000-0ff1-ce00-10000000000{n}" for n in range(2, 10)
    }
    assert resolve_app(None) == set()  # type: ignore[arg-type]
