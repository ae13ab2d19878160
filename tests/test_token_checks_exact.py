"""Token checks, principal names and token records word for word: the joined time-unit notes,
which claim a never-valid token's lifetime starts from, the nearest well-known app id a typo
is told (an edit distance that counts insertions at cost 1), how a hand-built principal with a
name shows its id, which queries ``resolve_app`` does not match by part of a product name, the
key a certificate finding says verified a token (only a verified one), and a token record's
decoding problems. Tokens signed with the TEST-ONLY keys (``token_kit``), small captures of
real packets (``wire_kit``)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from token_kit import EXO_AUD, KEYS_DIR, SFB_ISS, T0, actor_claims, signed
from wire_kit import OK, write_capture

from analyzer.engine import analyze_paths
from analyzer.oauth.checks import check_token
from analyzer.oauth.keys import KeyStore
from analyzer.oauth.principals import (
    Principal,
    edit_distance,
    nearest_well_known,
    parse_principal,
    resolve_app,
)
from analyzer.oauth.tokens import decode_token

HOST = "mail.contoso.com"
TEAMS = "1fec8e78-bce4-4aaf-ab1b-5451cc387264"  # Microsoft Teams (client)
EXO = "00000002-0000-0ff1-ce00-000000000000"
SFB = "00000004-0000-0ff1-ce00-000000000000"


def _checks(**claims: object) -> dict[str, tuple[bool | None, str]]:
    """id -> (ok, message) of a signed token with ``claims`` over a complete S2S set."""
    base: dict[str, object] = {"aud": EXO_AUD, "iss": SFB_ISS, "nameid": SFB_ISS}
    base.update(claims)
    token = decode_token(signed({k: v for k, v in base.items() if v is not None}))
    return {c.id: (c.ok, c.message) for c in check_token(token, host=HOST)}


# -- time units and the start of a lifetime -----------------------------------------------
def test_time_unit_notes_are_joined_with_a_semicolon() -> None:
    checks = _checks(nbf=T0 * 1000, exp=(T0 + 3600) * 1000)
    assert checks["time-units"] == (
        False,
        "nbf looks like unix milliseconds; exp looks like unix milliseconds",
    )


def test_a_never_valid_token_without_nbf_names_iat() -> None:
    checks = _checks(iat=T0, exp=T0 - 600)
    assert checks["exp-before-nbf"] == (
        False,
        "exp 2026-03-02T08:50:00Z is not after iat 2026-03-02T09:00:00Z (10 min earlier):"
        " the token is never valid",
    )


def test_a_never_valid_token_with_nbf_names_nbf() -> None:
    checks = _checks(nbf=T0, iat=T0 - 3600, exp=T0 - 600)
    assert checks["exp-before-nbf"] == (
        False,
        "exp 2026-03-02T08:50:00Z is not after nbf 2026-03-02T09:00:00Z (10 min earlier):"
        " the token is never valid",
    )


# -- the nearest well-known app id --------------------------------------------------------
def test_edit_distance_of_empty_strings_is_zero() -> None:
    assert edit_distance("", "") == 0
    assert edit_distance("", "", 2) == 0
    assert edit_distance("a", "") == 1


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("abcd", "xabc", 2),  # one insertion, one deletion: not four substitutions
        ("xabc", "abcd", 2),
        ("abcde", "abxcde", 1),  # one insertion
        ("ab", "abcd", 2),  # two insertions cost two
        ("abcd", "ab", 2),
    ],
)
def test_edit_distance_counts_each_insertion_once(a: str, b: str, distance: int) -> None:
    assert edit_distance(a, b) == distance


def test_a_shifted_app_id_is_suggested_at_distance_two() -> None:
    # a character added in front and the last one lost: one insertion and one deletion
    shifted = "z" + TEAMS[:-1]
    assert nearest_well_known(shifted) == (TEAMS, 2)
    principal = parse_principal(f"{shifted}@contoso.com")
    assert principal.suggestion == TEAMS
    assert principal.issues == (
        "app id is not a GUID",
        f"did you mean {TEAMS} (Microsoft Teams (client))?",
    )


def test_an_app_id_with_two_characters_too_many_is_at_distance_two() -> None:
    assert nearest_well_known(TEAMS[:5] + "zz" + TEAMS[5:]) == (TEAMS, 2)
    assert nearest_well_known(TEAMS[:5] + TEAMS[7:]) == (TEAMS, 2)


# -- display ------------------------------------------------------------------------------
def test_a_named_principal_shows_its_id_whole_unless_it_is_well_known() -> None:
    hand_built = Principal(
        raw="contoso-app@contoso.com",
        app_id="contoso-app",
        host=None,
        realm="contoso.com",
        app_name="Contoso App",
        realm_kind="domain",
        app_id_kind="not-guid",
    )
    assert hand_built.display() == "Contoso App (contoso-app)@contoso.com"
    assert parse_principal(f"{SFB}@contoso.com").display() == (
        "Skype for Business / Lync (00000004-…)@contoso.com"
    )


# -- resolve_app: no part-of-a-name match for a principal-like query ----------------------
@pytest.mark.parametrize("query", ["exch@", "@exch", "exch/", "/exch", "skyp@", "skyp/host"])
def test_a_query_with_at_or_slash_is_not_matched_by_part_of_a_name(query: str) -> None:
    assert resolve_app(query) == set()


def test_the_same_words_without_at_or_slash_match_by_part_of_a_name() -> None:
    assert resolve_app("skyp") == {
        SFB,  # Skype for Business / Lync
        "48ac35b8-9aa8-4d74-927d-1f4a14a0b239",  # Skype and Teams Tenant Admin API
        "39624784-6cbe-4a60-afbe-9f46d10fdb27",  # Teams and Skype for Business Administration
        "00f82732-f451-4a01-918c-0e9896e784f9",  # Skype for Business Application Configuration
        "7557eb47-c689-4224-abcf-aef9bd7573df",  # Skype for Business (client app)
    }
    assert resolve_app("exch") == {EXO}  # an alias, before any part of a name


# -- token records and the keys that verified them ----------------------------------------
def _request(token: str) -> bytes:
    return (
        b"GET /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\n"
        b"Authorization: Bearer " + token.encode() + b"\r\n\r\n"
    )


def _with_x5t(token: str, x5t: str) -> str:
    """``token`` with its header naming another key: the signature no longer matches."""
    head, payload, signature = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    header["x5t"] = x5t
    head = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    return f"{head}.{payload}.{signature}"


def test_a_key_named_by_a_badly_signed_token_verifies_none(tmp_path: Path) -> None:
    cert = KEYS_DIR / "exchange-expiring.cert.pem"
    store = KeyStore()
    store.add_file(cert)
    (key,) = list(store)
    token = _with_x5t(signed(actor_claims()), key.x5t)
    path = write_capture(tmp_path / "bad.pcap", [(_request(token), OK)])
    result = analyze_paths([path], key_files=[str(cert)])
    (record,) = result.tokens
    assert (record.signature, record.signature_detail) == (
        "bad-signature",
        f"RS256 signature does not match 1 key(s) named by the token (RSA-2048 x5t={key.x5t}"
        f" (thumbprint {key.thumbprint}))",
    )
    (finding,) = [f for f in result.findings if f.rule_id == "signing-certificate-expiring"]
    assert finding.detail == (
        f"signing certificate {key.thumbprint} (O=TEST KEY - oauth-traffic-analyzer,"
        "CN=Microsoft Exchange Server Auth Certificate) expires 10 days after the capture;"
        f" published by {cert}; verifies 0 captured tokens"
    )
    assert finding.event_ids == ()


def test_a_token_record_carries_its_decoding_problems(tmp_path: Path) -> None:
    good = signed(actor_claims())
    head, payload, signature = good.split(".")
    broken = f"{head}.{payload}.{signature[:-1]}!"
    path = write_capture(tmp_path / "two.pcap", [(_request(good), OK), (_request(broken), OK)])
    records = analyze_paths([path]).tokens
    assert [(r.signature, r.problems) for r in records] == [
        ("unknown-key", ()),
        ("bad-signature", ("signature: bad base64url",)),
    ]
