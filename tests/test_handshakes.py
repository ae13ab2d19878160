"""Handshakes and pair verdicts on the bundled and public captures."""

from __future__ import annotations

from pathlib import Path

import pytest
from shared_dir import PUBLIC, needs_public

from analyzer.engine import analyze_paths

CAPTURES = Path(__file__).resolve().parents[1] / "captures"


@pytest.fixture(scope="module")
def sfb():
    return analyze_paths([str(CAPTURES / "exchange-sfb.pcap")])


def test_sfb_handshakes(sfb) -> None:
    summary = [(h.auth_class, h.outcome, h.event_ids, h.probe) for h in sfb.handshakes]
    assert summary[:5] == [
        ("oauth", "accepted", (4, 5, 6, 7), True),  # realm discovery, then three token uses
        ("oauth", "rejected", (8,), False),  # expired token
        ("ntlm", "accepted", (9, 10), False),  # the fallback
        ("oauth", "rejected", (11,), False),  # tampered actor
        ("basic", "accepted", (12,), False),
    ]
    probe = sfb.handshakes[0]
    assert probe.offered == ("bearer", "negotiate", "ntlm")
    assert (sfb.handshakes[1].diag_code, sfb.handshakes[1].diag_category) == (
        2000002,
        "token_expired",
    )
    assert sfb.handshakes[4].user == "alice" and sfb.handshakes[4].domain == "CONTOSO"


def test_events_carry_their_handshake(sfb) -> None:
    by_id = {e.event_id: e for e in sfb.events}
    # the NTLM type-1 leg was answered 401 with the next leg: a challenge, not "accepted"
    assert (by_id[9].handshake_id, by_id[9].auth_class, by_id[9].outcome) == (
        3,
        "ntlm",
        "challenged",
    )
    assert (by_id[10].handshake_id, by_id[10].outcome) == (3, "accepted")
    # the realm-discovery probe was answered 401 too; the token that followed was accepted
    assert (by_id[4].status, by_id[4].outcome, by_id[5].outcome) == (401, "challenged", "accepted")
    assert by_id[1].handshake_id is None  # a metadata fetch is not a handshake
    assert by_id[14].handshake_id is None  # nor is a token-endpoint call


def test_fallback_verdict_names_the_reason(sfb) -> None:
    verdict = next(v for v in sfb.verdicts if v.client_ip == "10.1.0.20")
    assert verdict.verdict == "oauth-with-fallback"
    # NTLM's two legs are one authenticated exchange, one handshake
    assert verdict.classes == {"ntlm": 1, "oauth": 5}
    assert verdict.handshake_classes == {"ntlm": 1, "oauth": 3}
    assert (verdict.oauth_attempted, verdict.oauth_accepted, verdict.oauth_rejected) == (3, 1, 2)
    (fallback,) = verdict.fallbacks
    assert (fallback["to_class"], fallback["diag_code"], fallback["reason"]) == (
        "ntlm",
        2000002,
        "token_expired",
    )
    assert "token_expired" in verdict.summary and "ntlm" in verdict.summary
    assert verdict.issuers == ("Skype for Business / Lync@contoso.com",)


def test_anonymous_challenge_then_credentials_on_the_same_connection() -> None:
    messy = analyze_paths([str(CAPTURES / "messy.pcapng")])
    proxy = [h for h in messy.handshakes if h.server_port == 3128]
    assert [(h.auth_class, h.outcome, h.event_ids) for h in proxy] == [
        ("basic", "accepted", (7, 8)),  # 407 challenge, then Proxy-Authorization
        ("basic", "incomplete", (9,)),  # the client reset the connection before an answer
    ]
    digest = next(h for h in messy.handshakes if h.auth_class == "digest")
    assert (digest.outcome, digest.offered, digest.user) == ("accepted", ("digest",), "carol")


@needs_public
def test_public_ntlm_without_server_answers_is_incomplete_not_dropped() -> None:
    result = analyze_paths([str(PUBLIC / "csl__http-ntlm.pcap")])
    outcomes = [(h.auth_class, h.outcome, len(h.event_ids)) for h in result.handshakes]
    assert len(outcomes) == 8
    assert outcomes.count(("ntlm", "incomplete", 2)) == 5
    # the image fetches on the logged-on connection extend its handshakes (see auth_header
    # "connection"): the second logon's unanswered legs, then a keep-alive run
    assert outcomes[:2] == [("ntlm", "accepted", 2), ("ntlm", "accepted", 6)]
    assert outcomes[-1] == ("ntlm", "accepted", 3)
    assert sum(len(h.event_ids) for h in result.handshakes) == len(result.events) == 21


@needs_public
def test_public_webdav_three_legs_per_connection() -> None:
    result = analyze_paths([str(PUBLIC / "ndpi__webdav.pcap")])
    assert len(result.handshakes) == 7
    assert all(h.auth_class == "ntlm" and len(h.event_ids) == 2 for h in result.handshakes)
    assert all(h.offered == ("ntlm",) for h in result.handshakes)
    rejected = [h for h in result.handshakes if h.outcome == "rejected"]
    assert [h.final_status for h in rejected] == [403]
    (verdict,) = result.verdicts
    assert verdict.verdict == "no-oauth" and verdict.classes == {"ntlm": 7}


@needs_public
def test_public_basic_and_digest_classes() -> None:
    basic = analyze_paths([str(PUBLIC / "zeek__basic-auth-with-colon.pcap")])
    assert [(h.auth_class, h.outcome, h.user) for h in basic.handshakes] == [
        ("basic", "accepted", "test")
    ]
    digest = analyze_paths([str(PUBLIC / "ark__http-digestauth.pcap")])
    assert [(h.auth_class, h.outcome) for h in digest.handshakes] == [("digest", "incomplete")]
    challenge = analyze_paths([str(PUBLIC / "sv__bug-130__input.pcap")])
    assert [(h.auth_class, h.outcome) for h in challenge.handshakes] == [
        ("anonymous", "challenged")
    ]
    assert challenge.verdicts[0].verdict == "unauthenticated"


def test_each_outcome_says_why_in_words(tmp_path) -> None:
    """The reason of every outcome, as the handshake table and the report print it."""
    captures = CAPTURES / "hybrid"
    classes = analyze_paths([str(CAPTURES / "classes.pcap")])
    assert [(h.auth_class, h.outcome, h.reason) for h in classes.handshakes] == [
        ("negotiate-ntlm", "accepted", "credential answered 200"),
        (
            "anonymous",
            "challenged",
            "anonymous request answered 401 offering basic; no credential followed",
        ),
        (
            "oauth",
            "challenged",
            "realm-discovery probe answered 401 offering bearer, negotiate, ntlm; "
            "no credential followed",
        ),
        ("ntlm", "incomplete", "server sent the next ntlm leg; the client never answered"),
        ("other", "accepted", "credential answered 200"),
        ("digest", "rejected", "credential answered 401"),
        ("kerberos", "rejected", "credential answered 401"),
    ]
    fallback = analyze_paths([str(captures / "fallback-ntlm.pcap")])
    assert [h.reason for h in fallback.handshakes if h.outcome == "rejected"] == [
        "credential answered 401 (2000002 token_expired)"
    ]
    # the capture ends after the 10th request and before its answer
    cut = tmp_path / "cut.pcap"
    cut.write_bytes((captures / "healthy.pcap").read_bytes()[:44000])
    result = analyze_paths([str(cut)])
    (last,) = [h for h in result.handshakes if h.outcome == "incomplete"]
    assert last.reason == "no response to the last credential was captured"
    assert [(e.status, e.outcome) for e in result.events][-2:] == [
        (200, "accepted"),
        (None, "incomplete"),
    ]


@pytest.mark.parametrize(
    ("iss", "shown"),
    [
        ("https://sts.windows.net/x/", "https://sts.windows.net/x/"),
        (
            "11111111-2222-3333-4444-555555555555@contoso.com",
            "11111111-2222-3333-4444-555555555555@contoso.com",
        ),
        (
            "00000004-0000-0ff1-ce00-000000000000@contoso.com",
            "Skype for Business / Lync@contoso.com",
        ),
    ],
)
def test_a_pairs_issuer_is_named_by_product_and_realm_or_as_written(
    tmp_path: Path, iss: str, shown: str
) -> None:
    from token_kit import T0, signed
    from wire_kit import OK, write_capture

    token = signed({"iss": iss, "aud": "a", "nbf": T0, "exp": T0 + 3600})
    head = b"GET /ews HTTP/1.1\r\nHost: web.test\r\nAuthorization: Bearer "
    path = write_capture(tmp_path / "iss.pcap", [(head + token.encode() + b"\r\n\r\n", OK)])
    (verdict,) = analyze_paths([path]).verdicts
    assert verdict.issuers == (shown,)
    assert verdict.summary == f"all 1 authenticated exchanges used OAuth, issuer {shown}"


def test_a_pair_verdict_counts_and_times_its_handshakes(sfb) -> None:
    verdict = next(v for v in sfb.verdicts if v.client_ip == "10.1.0.20")
    mine = [h for h in sfb.handshakes if h.client_ip == "10.1.0.20"]
    assert verdict.handshakes == len(mine) == 4
    assert verdict.first_ts == min(h.start_ts for h in mine)
    assert verdict.last_ts == max(h.end_ts for h in mine)
    # per OAuth exchange: four tokens verified, the tampered actor's fails
    assert verdict.signatures == {"bad-signature": 1, "verified": 4}
    assert verdict.protocol == "http"  # HTTP/1.1, named without its version


def test_a_refused_attempt_after_an_oauth_rejection_is_no_fallback(tmp_path: Path) -> None:
    """OAuth refused, then Basic refused too: the client tried another scheme but did not get
    in with it, so no fallback is reported (only an accepted scheme is one)."""
    from wire_kit import write_capture

    denied = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    head = b"GET /ews HTTP/1.1\r\nHost: web.test\r\nAuthorization: "
    bearer = head + b"Bearer abc.def.ghi\r\n\r\n"
    basic = head + b"Basic YTpi\r\n\r\n"
    refused = analyze_paths(
        [write_capture(tmp_path / "refused.pcap", [(bearer, denied)], [(basic, denied)])]
    )
    (verdict,) = refused.verdicts
    assert (verdict.verdict, verdict.fallbacks) == ("mixed", ())
    assert "oauth-fallback" not in {f.rule_id for f in refused.findings}
    taken = analyze_paths(
        [write_capture(tmp_path / "taken.pcap", [(bearer, denied)], [(basic, ok)])]
    )
    (verdict,) = taken.verdicts
    basic_hs = next(h for h in taken.handshakes if h.auth_class == "basic")
    assert verdict.verdict == "oauth-with-fallback"
    assert [(f["to_class"], f["at"]) for f in verdict.fallbacks] == [("basic", basic_hs.start_ts)]


def _pair_of(tmp_path: Path, *connections: list) -> object:
    from wire_kit import write_capture

    (verdict,) = analyze_paths([write_capture(tmp_path / "pair.pcap", *connections)]).verdicts
    return verdict


DENIED = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
BEARER = b"GET /ews HTTP/1.1\r\nHost: web.test\r\nAuthorization: Bearer abc.def.ghi\r\n\r\n"
BASIC = b"GET /ews HTTP/1.1\r\nHost: web.test\r\nAuthorization: Basic YTpi\r\n\r\n"


def test_fell_back_to_counts_only_accepted_other_schemes_after_the_first_rejection(
    tmp_path: Path,
) -> None:
    verdict = _pair_of(
        tmp_path,
        [(BASIC, DENIED)],  # before any OAuth: neither counted
        [(BEARER, OK)],
        [(BASIC, OK)],
        [(BEARER, DENIED)],  # the first OAuth rejection
        [(BASIC, DENIED)],  # refused: not a fallback
        [(BASIC, OK)],  # the fallback
        [(BEARER, OK)],  # OAuth again: not a fallback
    )
    assert verdict.verdict == "oauth-with-fallback"
    assert verdict.summary == (
        "OAuth was rejected and the client fell back to basic (1 handshake); all handshakes: "
        "basic (4 handshakes), oauth (3)"
    )


def test_mixed_counts_the_connections_that_never_tried_oauth(tmp_path: Path) -> None:
    verdict = _pair_of(tmp_path, [(BEARER, OK), (BASIC, OK)], [(BASIC, OK)], [(BASIC, OK)])
    assert verdict.verdict == "mixed"
    assert verdict.summary == (
        "mixed: basic (3 handshakes), oauth (1); the client never tried OAuth on 2 of 3 connections"
    )


def test_a_challenge_without_a_credential_is_unauthenticated(tmp_path: Path) -> None:
    offer = b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="x"\r\n'
    get = b"GET /ews HTTP/1.1\r\nHost: web.test\r\n\r\n"
    verdict = _pair_of(tmp_path, [(get, offer + b"Content-Length: 0\r\n\r\n")])
    assert (verdict.verdict, verdict.summary) == (
        "unauthenticated",
        "challenged, but no credential was sent",
    )


def test_every_issuer_of_a_pair_is_named(tmp_path: Path) -> None:
    from token_kit import T0, signed

    def bearer(iss: str) -> bytes:
        token = signed({"iss": iss, "aud": "a", "nbf": T0, "exp": T0 + 3600})
        head = b"GET /ews HTTP/1.1\r\nHost: web.test\r\nAuthorization: Bearer "
        return head + token.encode() + b"\r\n\r\n"

    verdict = _pair_of(
        tmp_path,
        [(bearer("00000004-0000-0ff1-ce00-000000000000@contoso.com"), OK)],
        [(bearer("https://sts.windows.net/x/"), OK)],
    )
    assert verdict.summary == (
        "all 2 authenticated exchanges used OAuth, issuer Skype for Business / Lync@contoso.com, "
        "https://sts.windows.net/x/"
    )
