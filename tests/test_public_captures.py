"""Conformance over real captures published by other projects, against tshark's ground truth.

The captures live outside the repository (``../shared/captures/public``); the tests skip when that
folder is absent, as it is in a user's fresh clone, and fail when it is absent under CI
(``shared_dir.py``).
"""

from __future__ import annotations

from collections import Counter

import pytest
from shared_dir import PUBLIC, needs_public, public_captures_listed

from analyzer.auth.schemes import fingerprint
from analyzer.engine import analyze_paths

pytestmark = needs_public("expected.json")


def _captures() -> list[dict]:
    return public_captures_listed()


def _by_file(name: str) -> dict:
    return next(c for c in _captures() if c["file"] == name)


@pytest.fixture(scope="module")
def results() -> dict:
    return {c["file"]: analyze_paths([str(PUBLIC / c["file"])]) for c in _captures()}


@pytest.mark.parametrize("capture", [c["file"] for c in _captures()])
def test_every_authorization_header_found_with_scheme_endpoints_and_fingerprint(
    capture: str, results: dict
) -> None:
    truth = _by_file(capture)
    expected = Counter(
        (r["src"], r["dst"], r["method"], r["uri"], r["host"], r["scheme"], r["cred_fp"])
        for r in truth["http_authorization"] + truth["http_proxy_authorization"]
    )
    found = Counter(
        (e.client_ip, e.server_ip, e.method, e.uri, e.host, e.scheme_name, e.cred_fp)
        for e in results[capture].events
        if e.auth_header in ("authorization", "proxy-authorization") and e.protocol != "sip"
    )
    assert found == expected  # SIP's: tests/test_sip_capture.py


@pytest.mark.parametrize("capture", [c["file"] for c in _captures()])
def test_every_challenge_found(capture: str, results: dict) -> None:
    truth = _by_file(capture)
    expected = Counter(
        (r["src"], r["dst"], int(r["status"]), r["scheme"].lower(), r.get("token_fp"))
        for r in truth["http_www_authenticate"] + truth["http_proxy_authenticate"]
    )
    found = Counter(
        (
            e.server_ip,
            e.client_ip,
            e.status,
            c.scheme,
            fingerprint(c.token68) if c.token68 else None,
        )
        for e in results[capture].events
        if e.protocol != "sip"
        for c in e.challenges
    )
    assert found == expected


@pytest.mark.parametrize("capture", [c["file"] for c in _captures()])
def test_packet_counts_match(capture: str, results: dict) -> None:
    (stats,) = results[capture].captures
    assert stats.packets == _by_file(capture)["packets"]


def test_scheme_normalisation_on_public_captures(results: dict) -> None:
    turbo = [e for e in results["sv__http-auth-unrecognized__input.pcap"].events if e.cred_fp]
    assert [(e.scheme, e.scheme_name) for e in turbo] == [("other", "Turbo")]
    (basic,) = results["zeek__basic-auth-with-colon.pcap"].events
    assert (basic.scheme, basic.user, basic.password_len) == ("basic", "test", 4)
    assert basic.status == 200
    (digest,) = results["ark__http-digestauth.pcap"].events
    assert (digest.scheme, digest.user) == ("digest", "user12345678@domain.xxxx")
    assert digest.status is None
    (bearer,) = results["sv__http-auth-bearer__input.pcap"].events
    assert (bearer.scheme, bearer.cred_len) == ("bearer", 15)
    (challenge,) = results["sv__bug-130__input.pcap"].events
    assert challenge.challenges[0].params == {"realm": "Authentification user password"}


def test_captures_without_http_auth_give_no_http_events(results: dict) -> None:
    for name in ("zeek__nflog-http.pcap", "lek__tls-works-dump.pcapng", "ndpi__sip.pcap"):
        assert [e for e in results[name].events if e.protocol != "sip"] == [], name


def test_ntlm_requests_whose_answers_were_not_captured_stay_unanswered(results: dict) -> None:
    events = results["csl__http-ntlm.pcap"].events
    assert len(events) == 21
    type1 = [e for e in events if e.cred_fp == "44a1a7f08689"]  # NTLMSSP type 1 messages
    assert len(type1) == 7
    assert all(e.status is None for e in type1)


def test_sharepoint_calls_on_a_logged_on_connection_are_ntlm(results: dict) -> None:
    # the browser logs on to SharePoint on port 2239 and fetches the page's images on that
    # connection without a header: served as EXAMPLE\administrator, the logon's user
    events = results["csl__http-ntlm.pcap"].events
    covered = [e for e in events if e.auth_header == "connection"]
    assert [(e.event_id, e.status) for e in covered] == [
        (5, None), (14, 200), (15, 200), (16, 200), (17, None), (20, 200), (21, 200),
    ]  # fmt: skip
    assert {(e.client_port, e.scheme, e.domain, e.user, e.auth_class) for e in covered} == {
        (2239, "ntlm", "example", "administrator", "ntlm")
    }


def test_webdav_ntlm_three_legs_paired(results: dict) -> None:
    events = results["ndpi__webdav.pcap"].events
    assert len(events) == 14
    legs = [(e.method, e.status, [c.scheme for c in e.challenges]) for e in events[:2]]
    assert legs == [("MKCOL", 401, ["ntlm"]), ("MKCOL", 405, [])]
    assert len({e.conn_id for e in events}) == 7
