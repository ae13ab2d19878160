"""What ``verify`` tells an admin, word for word: the scope line, the reasons (with the tool's own
diagnosis and where to get a missing key), the INCONCLUSIVE explanations, the JSON records and
the policy errors. An admin acts on these sentences, so each is pinned exactly."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from wire_kit import OK, write_capture

from analyzer.analysis.verify import PolicyError, make_rule, rules_from_policy
from analyzer.cli import main

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "captures"
HYBRID = CAPTURES / "hybrid"
POLICY = str(HYBRID / "policy.toml")
TRUTH = json.loads((HYBRID / "truth.json").read_text())
R1 = "SfB pool to Exchange EWS"
SFB_APP = "00000004-0000-0ff1-ce00-000000000000"


def verify_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    code = main(["verify", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def reasons(data: dict, rule: int = 0) -> dict[int, tuple[str, str]]:
    return {v["event_id"]: (v["kind"], v["reason"]) for v in data["rules"][rule]["violations"]}


# -- reasons -------------------------------------------------------------------------------
def test_unknown_key_says_where_the_issuers_key_is(capsys: pytest.CaptureFixture[str]) -> None:
    # certificates.pcap: SfB-issued tokens whose signing key the capture does not publish
    path = str(CAPTURES / "certificates.pcap")
    _, data = verify_json(capsys, path, "--client", "10.30.0.20", "--require-signature")
    hint = (
        "no key to verify the signature: pass --keys with the issuer's certificate, or capture "
        "its metadata fetch (https://<the Skype for Business pool of contoso.com>/metadata/json/1)"
    )
    assert reasons(data) == {
        5: ("signature-not-verified", hint),
        6: ("signature-not-verified", hint),
    }


def test_refused_tokens_carry_the_tools_own_diagnosis(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(CAPTURES / "messy.pcapng")
    _, data = verify_json(capsys, path, "--client", "192.168.100.21", "--require-signature")
    got = reasons(data)
    assert got[4] == ("rejected", "OAuth token refused: server answered 401")
    assert got[5] == (
        "rejected",
        "OAuth token refused: server answered 401; the token had expired, no key to check its "
        "signature here",
    )
    # an Entra token (URL issuer) names no metadata document to fetch
    assert got[1] == (
        "signature-not-verified",
        "no key to verify the signature: pass --keys with the issuer's certificate, or capture "
        "its metadata fetch",
    )
    assert got[3] == ("signature-not-verified", "signature not-checked, verification required")


def test_audience_host_diagnosis(capsys: pytest.CaptureFixture[str]) -> None:
    # findings.pcap event 9: aud host autodiscover.contoso.com sent to mail.contoso.com -> 401
    _, data = verify_json(capsys, str(CAPTURES / "findings.pcap"), "--client", "10.2.1.61")
    assert reasons(data)[9] == (
        "rejected",
        "OAuth token refused: server answered 401 (x-ms-diagnostics 2000003 invalid_resource); "
        "its audience names autodiscover.contoso.com, not mail.contoso.com",
    )


def test_one_violation_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    _, data = verify_json(capsys, str(HYBRID / "fallback-ntlm.pcap"), "--policy", POLICY)
    truth = next(
        v for v in TRUTH["scenarios"]["fallback-ntlm"]["violations"] if v["event_id"] == 11
    )
    assert data["rules"][0]["violations"][0] == {
        "event_id": 11,
        "event_ids": [11],
        "ts": truth["ts"],
        "client": truth["client"],
        "server": truth["server"],
        "host": "mail.contoso.com",
        "uri": "/EWS/Exchange.asmx",
        "auth_class": "oauth",
        "status": 401,
        "kind": "rejected",
        "reason": "OAuth token refused: server answered 401 (x-ms-diagnostics 2000002 "
        "token_expired); the token had expired",
    }
    ntlm = data["rules"][0]["violations"][1]
    legs = [v["event_id"] for v in TRUTH["scenarios"]["fallback-ntlm"]["violations"]][1:]
    assert (ntlm["event_id"], ntlm["event_ids"], ntlm["kind"]) == (legs[-1], legs, "not-oauth")


def test_rule_result_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    _, data = verify_json(capsys, str(HYBRID / "fallback-ntlm.pcap"), "--policy", POLICY)
    rule = {k: v for k, v in data["rules"][0].items() if k != "violations"}
    assert rule == {
        "rule": R1,
        "scope": "from 10.1.0.20/32; to mail.contoso.com; path /ews/; issuer "
        "00000004-0000-0ff1-ce00-000000000000@contoso.com; signature verified",
        "result": "FAIL",
        "in_scope": 5,
        "compliant": 3,
        "reason": "2 of 5 exchanges break the rule",
        "partial": False,
        "relaxed": {},
        "coverage": {
            "exchanges": 5,
            "unanswered": 0,
            "first_ts": 1772463605.50466,
            "last_ts": 1772463643.32752,
            "not_inspected": [],
            "blind_spots": [],
            "damage": [],
        },
        "violation_groups": [
            {
                "kind": "not-oauth",
                "count": 1,
                "first_ts": 1772463643.32752,
                "last_ts": 1772463643.32752,
                "reasons": ["not OAuth: ntlm as CONTOSO\\svc-sfb"],
                "more_reasons": 0,
            },
            {
                "kind": "rejected",
                "count": 1,
                "first_ts": 1772463643.30036,
                "last_ts": 1772463643.30036,
                "reasons": [
                    "OAuth token refused: server answered 401 (x-ms-diagnostics 2000002 "
                    "token_expired); the token had expired"
                ],
                "more_reasons": 0,
            },
        ],
    }
    assert data["result"] == "FAIL" and data["warnings"] == []


def test_blind_spot_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    _, data = verify_json(capsys, str(HYBRID / "tls-blind.pcap"), "--policy", POLICY)
    coverage = data["rules"][0]["coverage"]
    tls = TRUTH["scenarios"]["tls-blind"]["facts"]
    assert len(coverage["not_inspected"]) == 3
    first = coverage["not_inspected"][0]
    assert (first["kind"], first["server"], first["host"], first["count"]) == (
        "tls",
        "10.1.0.10:443",
        "mail.contoso.com",
        1,
    )
    assert first["client"].startswith("10.1.0.20:") and "tls" in json.dumps(tls).lower()
    assert data["rules"][0]["reason"] == (
        "all 6 inspected exchanges used OAuth as required, but traffic in scope was not "
        "inspected (see below); pass --partial to accept what was inspected"
    )
    _, data = verify_json(capsys, str(HYBRID / "tls-blind.pcap"), "--policy", POLICY, "--partial")
    assert data["rules"][0]["reason"] == (
        "all 6 authenticated exchanges used OAuth as required (partial: traffic in scope was not "
        "inspected, see below)"
    )
    assert data["rules"][0]["partial"] is True


# -- explaining INCONCLUSIVE ---------------------------------------------------------------
def test_inconclusive_explanations(capsys: pytest.CaptureFixture[str]) -> None:
    scope = (
        "no authenticated exchange matches from 10.1.0.20/32; to mail.contoso.com; path /ews/; "
        "issuer 00000004-0000-0ff1-ce00-000000000000@contoso.com; signature verified"
    )
    elsewhere = "2 authenticated exchanges elsewhere; servers seen: autodiscover-s.outlook.com "
    _, data = verify_json(capsys, str(HYBRID / "metadata-404.pcap"), "--policy", POLICY)
    facts = TRUTH["scenarios"]["metadata-404"]["facts"]["failed_metadata_fetches"]
    assert data["rules"][0]["reason"] == (
        f"{scope}; {facts['explanation']}; {elsewhere}52.96.0.10:80 (2)"
    )
    _, data = verify_json(capsys, str(HYBRID / "unauthenticated.pcap"), "--policy", POLICY)
    assert data["rules"][0]["reason"] == (
        f"{scope}; 2 requests were challenged (offering bearer, negotiate, ntlm) and no "
        f"credential followed; {elsewhere}52.96.0.10:80 (2)"
    )


def test_inconclusive_lists_the_servers_seen(capsys: pytest.CaptureFixture[str]) -> None:
    _, data = verify_json(capsys, str(CAPTURES / "healthy-oauth.pcap"), "--server", "192.0.2.9")
    assert data["rules"][0]["reason"] == (
        "no authenticated exchange matches to 192.0.2.9; 6 authenticated exchanges elsewhere; "
        "servers seen: mail.contoso.com 10.1.0.10:80 (6)"
    )
    _, data = verify_json(capsys, str(CAPTURES / "small-basic.pcap"), "--client", "192.0.2.9")
    assert data["rules"][0]["reason"] == (
        "no authenticated exchange matches from 192.0.2.9/32; 1 authenticated exchange "
        "elsewhere; servers seen: localhost 127.0.0.1:8000 (1)"
    )


def test_servers_seen_are_the_top_ten(capsys: pytest.CaptureFixture[str]) -> None:
    # findings.pcap: 14 exchanges (NTLM's legs count once) to 11 servers: ten named, then a count
    _, data = verify_json(capsys, str(CAPTURES / "findings.pcap"), "--server", "192.0.2.9")
    reason = data["rules"][0]["reason"]
    assert "; 14 authenticated exchanges elsewhere; servers seen: " in reason
    seen = reason.split("servers seen: ", 1)[1]
    assert seen.startswith("ex04.contoso.com 10.2.2.14:80 (2), ex07.contoso.com 10.2.2.19:80 (2)")
    assert len(seen.split(", and ")[0].split(", ")) == 10 and seen.endswith(", and 1 more")


# -- the scope line ------------------------------------------------------------------------
def test_the_scope_line_names_every_constraint() -> None:
    rule = make_rule(
        client="10.1.0.20, 10.2.0.0/16",
        server="mail.contoso.com:443",
        host="mail.contoso.com",
        path="/EWS/",
        user="alice@contoso.com",
        since="2026-03-02T13:00:00Z",
        until="2026-03-02T14:00:00Z",
        issuer="skype, acs",
        realm="contoso.com",
        require_signature=True,
    )
    assert rule.describe() == (
        "from 10.1.0.20/32, 10.2.0.0/16; to mail.contoso.com:443; Host mail.contoso.com; "
        "path /ews/; user alice@contoso.com; time 2026-03-02T13:00:00Z .. 2026-03-02T14:00:00Z; "
        "issuer skype or acs; realm contoso.com; signature verified"
    )
    assert make_rule().describe() == "all traffic"
    assert make_rule(since="1772456400").describe() == "time 2026-03-02T13:00:00Z .. *"
    # without a scope, the line is the rule's own constraints
    assert make_rule(protocol="http,SIP", realm="a.com,b.com").describe() == (
        "protocol http, sip; realm a.com or b.com"
    )
    assert make_rule().name == "rule"


@pytest.mark.parametrize("option", ["protocol", "issuer", "realm", "allow", "client", "path"])
def test_an_option_of_the_wrong_type_is_named(option: str) -> None:
    with pytest.raises(PolicyError) as err:
        make_rule(**{option: 3})
    assert str(err.value) == f"{option}: expected a string or a list of strings, got 3"


# -- policy errors -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"rule": []}, "the policy needs at least one [[rule]] table"),
        ({"rule": [{}], "x": 1, "y": 2}, "unknown policy keys: x, y"),
        ({"rule": ["x"]}, "rule 1 is not a table"),
        (
            {"rule": [{}, {"clinet": "a", "isuer": "b"}]},
            "rule 2: unknown keys clinet, isuer (known: allow, client, host, issuer, name, "
            "partial, "
            "path, protocol, realm, require_signature, server, since, until, user)",
        ),
        ({"rule": [{"allow": 3}]}, "rule 1: allow: expected a string or a list of strings, got 3"),
        ({"rule": [{"partial": "yes"}]}, "rule 1: partial must be true or false"),
        ({"rule": [{"require_signature": 1}]}, "rule 1: require_signature must be true or false"),
        (
            {"rule": [{"issuer": "nope"}]},
            "rule 1: issuer 'nope': not an app id or a known product name (known names: aad, "
            "acs, arm, crm, datamarket, dataverse, dynamics, eop, erp, ests, ews, exch, exchange, "
            "exo, graph, intune, lync, msgraph, office, onedrive, onenote, outlook, portal, "
            "powerbi, rms, sfb, sfbo, sharepoint, skype, sp, spo, sts, teams, workflow, yammer; "
            "or an app id, optionally as <id>@<realm>)",
        ),
        ({"rule": [{"allow": ["x"]}]}, "rule 1: allow: unknown finding id(s) x (these can be"),
        ({"rule": [{"client": "a.b"}]}, "rule 1: 'a.b' is not an IP address or network"),
    ],
)
def test_policy_errors_say_what_is_wrong(policy: dict, message: str) -> None:
    with pytest.raises(PolicyError) as err:
        rules_from_policy(policy)
    assert str(err.value).startswith(message)


def test_policy_rules_are_named_and_take_the_command_lines_allow_and_partial() -> None:
    rules = rules_from_policy(
        {"rule": [{"name": "a"}, {"allow": "unsigned-token"}]}, ["bad-signature"], True
    )
    assert [(r.name, sorted(r.allow), r.partial) for r in rules] == [
        ("a", ["bad-signature"], True),
        ("rule 2", ["bad-signature", "unsigned-token"], True),
    ]
    assert rules_from_policy({"rule": [{"partial": True}]})[0].partial is True
    assert rules_from_policy({"rule": [{}]})[0].partial is False


def test_issuer_specs_parse_exactly() -> None:
    with pytest.raises(PolicyError) as err:
        make_rule(issuer="00000004-0000-0ff1-ce00-000000000000@")
    assert str(err.value).endswith("empty realm after @ (use @* for any realm)")
    (spec,) = make_rule(issuer="00000004-0000-0ff1-ce00-000000000000/SFB.contoso.com@R").issuers
    assert (spec.host, spec.realm) == ("sfb.contoso.com", "R")
    assert spec.matches("00000004-0000-0ff1-ce00-000000000000/sfb.CONTOSO.com@R")
    assert not spec.matches("00000004-0000-0ff1-ce00-000000000000/other.contoso.com@R")
    assert not spec.matches("00000004-0000-0ff1-ce00-000000000000@R")
    (guid,) = make_rule(issuer="12345678-1234-1234-1234-123456789ABC").issuers
    assert guid.app_ids == frozenset({"12345678-1234-1234-1234-123456789abc"})


# -- blind spots by name, and what the other reasons say -----------------------------------
def test_lost_request_without_host_is_in_a_host_named_scope(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # the cut request never showed its Host, but its server answered for mail.contoso.com
    cut = tmp_path / "cut.pcap"
    cut.write_bytes((CAPTURES / "healthy-oauth.pcap").read_bytes()[:30000])
    for scope in (["--server", "mail.contoso.com"], ["--server", "mail.contoso.com:80"]):
        code, data = verify_json(capsys, str(cut), *scope, "--path", "/EWS/")
        (blind,) = data["rules"][0]["coverage"]["not_inspected"]
        assert code == 2 and (blind["kind"], blind["host"]) == ("request-lost", None)
    code, data = verify_json(capsys, str(cut), "--server", "sfbpool01.contoso.com")
    assert code == 2 and data["rules"][0]["coverage"]["not_inspected"] == []
    # --host too: at the address that served mail.contoso.com, a head without Host may be it
    code, data = verify_json(capsys, str(cut), "--host", "mail.contoso.com", "--path", "/EWS/")
    (blind,) = data["rules"][0]["coverage"]["not_inspected"]
    assert code == 2 and (blind["kind"], blind["host"]) == ("request-lost", None)
    code, data = verify_json(capsys, str(cut), "--host", "sfbpool01.contoso.com")
    assert data["rules"][0]["coverage"]["not_inspected"] == []


def test_issuer_with_a_host_and_no_realm(capsys: pytest.CaptureFixture[str]) -> None:
    healthy = str(CAPTURES / "healthy-oauth.pcap")
    sfb = "00000004-0000-0ff1-ce00-000000000000"
    _, data = verify_json(capsys, healthy, "--issuer", f"{sfb}/sfbpool01.contoso.com")
    kinds = {v for v in reasons(data).values()}
    assert kinds == {
        ("wrong-issuer", f"issuer {sfb}@contoso.com: host (none) is not sfbpool01.contoso.com")
    }


def test_realm_option_and_its_case(capsys: pytest.CaptureFixture[str]) -> None:
    healthy = str(CAPTURES / "healthy-oauth.pcap")
    _, data = verify_json(capsys, healthy, "--realm", "Contoso.com,x.org")
    assert set(reasons(data).values()) == {
        (
            "wrong-realm",
            "realm contoso.com is not Contoso.com or x.org (realms compare case-sensitively, as "
            "Exchange and SharePoint do)",
        )
    }
    assert verify_json(capsys, healthy, "--realm", "x.org,contoso.com")[0] == 0


def test_not_oauth_names_the_class_and_who(capsys: pytest.CaptureFixture[str]) -> None:
    _, data = verify_json(capsys, str(CAPTURES / "classes.pcap"))
    got = {tuple(v["event_ids"]): v["reason"] for v in data["rules"][0]["violations"]}
    assert got == {
        (1, 2): "not OAuth: negotiate-ntlm as CONTOSO\\carol",
        (5,): "not OAuth: ntlm",
        (6,): "not OAuth: other (Turbo)",
        (8,): "not OAuth: digest as dave",
        (9,): "not OAuth: kerberos",
    }
    _, data = verify_json(capsys, str(CAPTURES / "small-basic.pcap"))
    assert [v["reason"] for v in data["rules"][0]["violations"]] == ["not OAuth: basic as demo"]


def test_what_an_empty_scope_saw(capsys: pytest.CaptureFixture[str]) -> None:
    _, data = verify_json(capsys, str(CAPTURES / "exchange-sfb.pcap"), "--client", "10.1.0.10")
    assert data["rules"][0]["reason"] == (
        "no authenticated exchange matches from 10.1.0.10/32; 1 metadata fetch to "
        "/metadata/jason/1 failed with 404; 1 token request refused with invalid_grant; "
        "8 authenticated exchanges elsewhere; servers seen: mail.contoso.com 10.1.0.10:80 (8)"
    )
    _, data = verify_json(capsys, str(CAPTURES / "messy.pcapng"), "--server", "192.0.2.9")
    assert data["rules"][0]["reason"].startswith(
        "no authenticated exchange matches to 192.0.2.9; 1 TLS connection could not be read "
        "and may hold it: capture behind the TLS terminator or decrypt with --tls-keylog; 11 "
        "authenticated exchanges elsewhere; servers seen: app.contoso.local "
        "192.168.100.80:8080 (5), www.example.org 10.20.0.5:3128 (2), "
    )


def test_a_capture_without_authentication(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("scapy.all")
    get = b"GET / HTTP/1.1\r\nHost: plain.test\r\n\r\n"
    path = write_capture(tmp_path / "plain.pcap", [(get, OK)])
    code, data = verify_json(capsys, str(path))
    assert code == 2 and data["rules"][0]["reason"] == (
        "no authenticated exchange matches all traffic; the capture holds no readable "
        "authentication at all"
    )


# -- small captures: texts no bundled capture shows -------------------------------------------
def _bearer(token: str) -> bytes:
    head = b"GET /ews HTTP/1.1\r\nHost: web.test\r\nAuthorization: Bearer "
    return head + token.encode() + b"\r\n\r\n"


def test_an_unanswered_fetch_and_a_lone_challenge_explain_an_empty_scope(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fetch = b"GET /metadata/json/1 HTTP/1.1\r\nHost: sts.test\r\n\r\n"
    anonymous = b"GET /ews HTTP/1.1\r\nHost: web.test\r\n\r\n"
    challenge = (
        b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm="x"\r\n'
        b"Content-Length: 0\r\n\r\n"
    )
    path = write_capture(tmp_path / "empty.pcap", [(fetch, None)], [(anonymous, challenge)])
    code, data = verify_json(capsys, str(path))
    assert code == 2 and data["rules"][0]["reason"] == (
        "no authenticated exchange matches all traffic; 1 metadata fetch to /metadata/json/1 "
        "got no answer: no token was ever issued; 1 request was challenged (offering bearer) "
        "and no credential followed"
    )


def test_an_opaque_token_has_no_issuer_to_compare(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_capture(tmp_path / "opaque.pcap", [(_bearer("opaque-token-123"), OK)])
    code, data = verify_json(capsys, str(path), "--issuer", "skype")
    assert code == 1 and reasons(data) == {
        1: ("wrong-issuer", "token issuer cannot be read (opaque token)")
    }


@pytest.mark.parametrize(
    ("app", "where"),
    [
        (
            "00000001-0000-0000-c000-000000000000",
            " (https://accounts.accesscontrol.windows.net/contoso.com/metadata/json/1)",
        ),
        (
            "00000002-0000-0ff1-ce00-000000000000",
            " (https://autodiscover.contoso.com/autodiscover/metadata/json/1)",
        ),
        ("00000003-0000-0ff1-ce00-000000000000", " (SharePoint's metadata document)"),
        ("11111111-2222-3333-4444-555555555555", ""),
    ],
)
def test_a_missing_key_says_where_each_issuer_publishes_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, app: str, where: str
) -> None:
    from token_kit import T0, signed

    token = signed({"iss": f"{app}@contoso.com", "aud": "x", "nbf": T0, "exp": T0 + 3600})
    path = write_capture(tmp_path / "signed.pcap", [(_bearer(token), OK)])
    code, data = verify_json(capsys, str(path), "--require-signature")
    assert code == 1 and reasons(data) == {
        1: (
            "signature-not-verified",
            "no key to verify the signature: pass --keys with the issuer's certificate, or "
            "capture its metadata fetch" + where,
        )
    }


def _token_error(error: str) -> tuple[bytes, bytes]:
    """A client-credentials token request and the STS's OAuth error answer."""
    body = b"grant_type=client_credentials&client_id=x"
    request = (
        b"POST /oauth2/token HTTP/1.1\r\nHost: sts.test\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    answer = json.dumps({"error": error}).encode()
    response = (
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(answer)).encode() + b"\r\n\r\n" + answer
    )
    return request, response


def test_an_empty_scope_names_the_three_commonest_failures_of_each_kind(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Metadata fetches answered 400 and above fail (400 included); the three commonest paths
    and OAuth errors are named, and the last of them says no token was issued."""

    def fetch(path: bytes, status: bytes) -> tuple[bytes, bytes]:
        request = b"GET " + path + b" HTTP/1.1\r\nHost: sts.test\r\n\r\n"
        return request, b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n"

    path = write_capture(
        tmp_path / "failures.pcap",
        [fetch(b"/a/metadata/json/1", b"400 Bad Request")] * 2,
        [fetch(b"/b/metadata/json/1", b"404 Not Found")],
        [fetch(b"/c/metadata/json/1", b"500 Internal Server Error")],
        [fetch(b"/d/metadata/json/1", b"503 Service Unavailable")],
        [_token_error("invalid_client")] * 2,
        [_token_error("invalid_grant")],
        [_token_error("invalid_request")],
        [_token_error("unauthorized_client")],
    )
    code, data = verify_json(capsys, str(path))
    assert code == 2 and data["rules"][0]["reason"] == (
        "no authenticated exchange matches all traffic; 2 metadata fetches to "
        "/a/metadata/json/1 failed with 400; 1 metadata fetch to /b/metadata/json/1 failed with "
        "404; 1 metadata fetch to /c/metadata/json/1 failed with 500; 2 token requests refused "
        "with invalid_client; 1 token request refused with invalid_grant; 1 token request "
        "refused with invalid_request: no token was ever issued"
    )


def test_servers_seen_name_a_server_without_host_by_address_and_count_ten_exactly(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import scapy.all as scapy
    from wire_kit import connection

    basic = b"Authorization: Basic YTpi\r\n\r\n"
    packets = []
    for i in range(10):  # ten servers: the last one answers requests without Host
        host = b"Host: s%d.test\r\n" % i if i < 9 else b""
        for p in connection([(b"GET / HTTP/1.1\r\n" + host + basic, OK)], 40001 + i, 1e9 + i):
            if p.haslayer(scapy.IP):
                p[scapy.IP].dst = (
                    f"10.9.8.{i}" if p[scapy.IP].dst == "10.9.9.2" else p[scapy.IP].dst
                )
                p[scapy.IP].src = (
                    f"10.9.8.{i}" if p[scapy.IP].src == "10.9.9.2" else p[scapy.IP].src
                )
            packets.append(p)
    path = tmp_path / "ten.pcap"
    scapy.wrpcap(str(path), packets)
    _, data = verify_json(capsys, str(path), "--server", "192.0.2.9")
    seen = data["rules"][0]["reason"].split("servers seen: ", 1)[1]
    assert seen.split(", ") == [f"s{i}.test 10.9.8.{i}:80 (1)" for i in range(9)] + [
        "10.9.8.9:80 (1)"
    ]


def test_signature_requirement_names_an_unsigned_token_relaxed_by_allow(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from token_kit import T0, signed, unsigned

    plain = unsigned({"iss": "x@contoso.com", "aud": "a", "nbf": T0, "exp": T0 + 3600})
    path = write_capture(tmp_path / "unsigned.pcap", [(_bearer(plain), OK)])
    code, data = verify_json(capsys, str(path), "--require-signature", "--allow", "unsigned-token")
    assert code == 1 and reasons(data) == {
        1: ("signature-not-verified", "token is unsigned, verification required")
    }
    # an issuer without a realm names no metadata document, even a well-known app
    bare = signed({"iss": "00000002-0000-0ff1-ce00-000000000000", "aud": "x", "nbf": T0})
    path = write_capture(tmp_path / "bare.pcap", [(_bearer(bare), OK)])
    _, data = verify_json(capsys, str(path), "--require-signature")
    assert reasons(data)[1][1] == (
        "no key to verify the signature: pass --keys with the issuer's certificate, or capture "
        "its metadata fetch"
    )


DENIED = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"


def _to_mail(token: str) -> bytes:
    head = b"GET /ews HTTP/1.1\r\nHost: mail.contoso.com\r\nAuthorization: Bearer "
    return head + token.encode() + b"\r\n\r\n"


def test_a_refused_s2s_token_is_diagnosed_by_its_actor_too(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The outer token is fine; its actor expired, or names another host in its audience."""
    from token_kit import T0, actor_claims, s2s

    late = s2s(actor=actor_claims(nbf=T0 - 7200, exp=T0 - 3600))
    elsewhere = s2s(actor=actor_claims(aud=f"{EXO}/other.contoso.com@contoso.com"))
    path = write_capture(tmp_path / "actor.pcap", [(_to_mail(late), DENIED)])
    _, data = verify_json(capsys, str(path))
    assert reasons(data)[1] == (
        "rejected",
        "OAuth token refused: server answered 401; the token had expired, no key to check its "
        "signature here",
    )
    path = write_capture(tmp_path / "actor.pcap", [(_to_mail(elsewhere), DENIED)])
    _, data = verify_json(capsys, str(path))
    assert reasons(data)[1] == (
        "rejected",
        "OAuth token refused: server answered 401; its actor token's audience names another "
        "host than mail.contoso.com, no key to check its signature here",
    )


EXO = "00000002-0000-0ff1-ce00-000000000000"


def test_a_token_without_a_realm_is_not_in_a_realm(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from token_kit import T0, signed

    bare = signed({"iss": EXO, "aud": EXO, "nbf": T0, "exp": T0 + 3600})
    path = write_capture(tmp_path / "bare.pcap", [(_bearer(bare), OK)])
    code, data = verify_json(capsys, str(path), "--realm", "contoso.com")
    said = f"its audience {EXO} names no realm: realm (none) is not contoso.com"
    assert code == 1 and reasons(data) == {1: ("wrong-realm", said)}


@pytest.mark.parametrize(
    ("anonymous", "said"),
    [
        (False, "1 request was challenged (offering nothing) and no credential followed"),
        (True, "2 requests were challenged (offering basic, bearer) and no credential followed"),
    ],
)
def test_a_realm_discovery_probe_is_a_challenge_without_a_credential(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, anonymous: bool, said: str
) -> None:
    """The empty ``Bearer`` probe counts with the anonymous requests a server challenged."""
    probe = b"GET /ews HTTP/1.1\r\nHost: web.test\r\nAuthorization: Bearer\r\n\r\n"
    offer = b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm="x"\r\n'
    connections = [[(probe, offer + b"Content-Length: 0\r\n\r\n" if anonymous else DENIED)]]
    if anonymous:
        basic = b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="x"\r\n'
        get = b"GET /ews HTTP/1.1\r\nHost: web.test\r\n\r\n"
        connections.append([(get, basic + b"Content-Length: 0\r\n\r\n")])
    path = write_capture(tmp_path / "probe.pcap", *connections)
    code, data = verify_json(capsys, str(path))
    assert code == 2 and data["rules"][0]["reason"] == (
        f"no authenticated exchange matches all traffic; {said}"
    )


def test_http_left_out_of_a_sip_rule_is_named_as_http(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_capture(tmp_path / "http.pcap", [(_bearer("opaque-token-123"), OK)])
    code, data = verify_json(capsys, str(path), "--protocol", "sip")
    assert code == 2 and data["rules"][0]["reason"] == (
        "no authenticated exchange matches protocol sip; 1 authenticated HTTP exchange(s) not "
        'judged by this rule (judge them with --protocol http, or protocol = "http" in a policy)'
    )


@pytest.mark.parametrize(
    ("issuer", "reason"),
    [
        (f"{SFB_APP}@contoso.com/x", f"issuer {SFB_APP}@contoso.com: realm contoso.com is not "
         "contoso.com/x"),
        (f"{SFB_APP}/sfbpool01.contoso.com/x", f"issuer {SFB_APP}@contoso.com: host (none) is "
         "not x"),
    ],
)  # fmt: skip
def test_an_issuer_with_a_stray_slash_is_taken_as_written(
    capsys: pytest.CaptureFixture[str], issuer: str, reason: str
) -> None:
    """Text after a "/" is part of the realm or host the user wrote, never dropped (which
    would accept any realm or host)."""
    code, data = verify_json(capsys, str(CAPTURES / "healthy-oauth.pcap"), "--issuer", issuer)
    assert code == 1 and {r for _, r in reasons(data).values()} == {reason}


@pytest.mark.parametrize(
    ("issuer", "kind", "reason"),
    [
        ("exchange,sharepoint", "wrong-issuer", "issuer {iss} is not exchange or sharepoint"),
        (f"{SFB_APP}/xxxx@contoso.com", "wrong-issuer", "issuer {iss}: host (none) is not xxxx"),
        (f"{SFB_APP}/pool.contoso.com@*", "wrong-issuer",
         "issuer {iss}: host (none) is not pool.contoso.com"),
        (f"{SFB_APP}@Contoso.com", "wrong-realm",
         "issuer {iss}: realm contoso.com is not Contoso.com (realms compare case-sensitively, "
         "as Exchange and SharePoint do)"),
    ],
)  # fmt: skip
def test_the_wrong_issuer_is_named_with_what_was_wanted(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, issuer: str, kind: str, reason: str
) -> None:
    """A plain (not S2S) token of the SfB app: its own issuer is the one named."""
    from token_kit import T0, signed

    iss = f"{SFB_APP}@contoso.com"
    token = signed({"iss": iss, "aud": f"{EXO}@contoso.com", "nbf": T0, "exp": T0 + 3600})
    path = write_capture(tmp_path / "sfb.pcap", [(_bearer(token), OK)])
    code, data = verify_json(capsys, str(path), "--issuer", issuer)
    assert code == 1 and reasons(data) == {1: (kind, reason.format(iss=iss))}


def test_a_violation_group_shows_three_reasons_and_counts_the_rest(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def basic(user: str) -> bytes:
        token = base64.b64encode(f"{user}:pw".encode())
        return b"GET / HTTP/1.1\r\nHost: web.test\r\nAuthorization: Basic " + token + b"\r\n\r\n"

    users = ["ann", "bob", "cid", "dee"]
    path = write_capture(tmp_path / "four.pcap", *[[(basic(u), OK)] for u in users])
    _, data = verify_json(capsys, str(path))
    (group,) = data["rules"][0]["violation_groups"]
    assert (group["kind"], group["count"], group["more_reasons"]) == ("not-oauth", 4, 1)
    assert group["reasons"] == [f"not OAuth: basic as {u}" for u in users[:3]]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            {"allow": "x,y"},
            "allow: unknown finding id(s) x, y (these can be relaxed: unsigned-token, "
            "bad-signature, token-expired-use, token-not-yet-valid, token-exp-before-nbf, "
            "untrusted-issuer, malformed-principal, audience-host-mismatch, long-lived-token)",
        ),
        (
            {"protocol": "xmpp,ftp"},
            "protocol: unknown xmpp, ftp (known: http, sip, or one HTTP version such as http/1.1)",
        ),
    ],
)
def test_unknown_values_are_listed_with_the_known_ones(option: dict, message: str) -> None:
    with pytest.raises(PolicyError) as err:
        make_rule(**option)
    assert str(err.value) == message


def test_every_serious_problem_of_a_token_is_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from token_kit import T0, unsigned

    stale = unsigned({"iss": "x@contoso.com", "aud": "a", "nbf": T0 - 7200, "exp": T0 - 3600})
    path = write_capture(tmp_path / "stale.pcap", [(_bearer(stale), OK)])
    code, data = verify_json(capsys, str(path))
    assert code == 1 and reasons(data) == {
        1: (
            "unsigned",
            "unsigned token (jwt-unsigned), not S2S; token expired, yet accepted (200)",
        )
    }


@pytest.mark.parametrize("bound", ["--since=+1h", "--until=2026-03-02T08:00:00Z"])
def test_an_empty_time_window_is_explained_by_what_its_servers_saw_at_any_time(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, bound: str
) -> None:
    fetch = b"GET /metadata/json/1 HTTP/1.1\r\nHost: sts.test\r\n\r\n"
    gone = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
    path = write_capture(tmp_path / "fetch.pcap", [(fetch, gone)])  # at 09:00
    code, data = verify_json(capsys, str(path), bound)
    assert code == 2
    assert (
        "; 1 metadata fetch to /metadata/json/1 failed with 404: no token was ever issued"
        in (data["rules"][0]["reason"])
    )


def test_a_named_servers_nameless_requests_explain_its_empty_scope(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A request without Host to the address that answered for the name is that server's."""
    named = b"GET / HTTP/1.1\r\nHost: mail.test\r\n\r\n"
    nameless = b"GET /ews HTTP/1.0\r\n\r\n"
    offer = b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="x"\r\n'
    challenge = offer + b"Content-Length: 0\r\n\r\n"
    path = write_capture(tmp_path / "nameless.pcap", [(named, challenge)], [(nameless, challenge)])
    code, data = verify_json(capsys, str(path), "--server", "mail.test")
    assert code == 2 and data["rules"][0]["reason"] == (
        "no authenticated exchange matches to mail.test; 2 requests were challenged (offering "
        "basic) and no credential followed"
    )


def test_coverage_counts_the_exchanges_left_unanswered(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_capture(
        tmp_path / "unanswered.pcap",
        [(_bearer("opaque-token-1"), OK)],
        [(_bearer("opaque-token-2"), None)],
    )
    _, data = verify_json(capsys, str(path))
    coverage = data["rules"][0]["coverage"]
    assert (coverage["exchanges"], coverage["unanswered"]) == (2, 1)
