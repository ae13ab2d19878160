"""The finding rules against the bundled captures: each rule flags exactly its events, look-alike
cases stay silent, a healthy S2S capture raises nothing but cleartext, and every rule fires on at
least one bundled capture.

Expected events come from the generator's ground truth (``captures/*.truth.json``); event ids
are the analyzer's, 1-based in request-time order (index in ``*.expected.json`` + 1).
"""

from __future__ import annotations

import base64
import functools
import importlib
import json
import struct
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from analyzer.analysis.findings import RULES
from analyzer.engine import AnalysisResult, analyze_paths
from analyzer.model import SEVERITIES, Finding

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "captures"
BUNDLED = (
    "exchange-sfb.pcap",
    "messy.pcapng",
    "small-basic.pcap",
    "findings.pcap",
    "healthy-oauth.pcap",
    "certificates.pcap",
)
WITH_FINDING_TRUTH = ("findings.pcap", "healthy-oauth.pcap", "certificates.pcap")
RULE_IDS = [r.rule_id for r in RULES]
EMPTY_FP = "e3b0c44298fc"  # SHA-256 of "": the realm-discovery probe "Bearer "

#: Known analyzer defects, by (capture, rule): the test is right and the analyzer is not yet.
KNOWN_BUGS: dict[tuple[str, str], str] = {}  # (capture, rule) -> analyzer bug, xfail


@functools.cache
def analysis(name: str) -> AnalysisResult:
    return analyze_paths([str(CAPTURES / name)])


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0]


@functools.cache
def truth(name: str) -> dict[str, Any]:
    return json.loads((CAPTURES / f"{_stem(name)}.truth.json").read_text())


@functools.cache
def expected_events(name: str) -> list[dict[str, Any]]:
    return json.loads((CAPTURES / f"{_stem(name)}.expected.json").read_text())["events"]


def findings_of(name: str, rule_id: str) -> list[Finding]:
    return [f for f in analysis(name).findings if f.rule_id == rule_id]


def fired(name: str, rule_id: str) -> set[int]:
    return {i for f in findings_of(name, rule_id) for i in f.event_ids}


def _cases(check: str) -> list[Any]:
    """(capture, rule) pairs of the finding truth files, known analyzer bugs marked xfail."""
    out = []
    for name in WITH_FINDING_TRUTH:
        for rule_id in truth(name)["findings"]:
            bug = KNOWN_BUGS.get((name, rule_id)) if check != "positive" else None
            marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
            out.append(pytest.param(name, rule_id, marks=marks, id=f"{_stem(name)}-{rule_id}"))
    return out


# --- the truth files themselves -------------------------------------------------------------


@pytest.mark.parametrize("name", WITH_FINDING_TRUTH)
def test_finding_truth_names_every_rule(name: str) -> None:
    spec = truth(name)["findings"]
    assert list(spec) == RULE_IDS
    n = len(expected_events(name))
    for rule in spec.values():
        ids = rule["event_ids"] + rule["negative_event_ids"]
        assert all(1 <= i <= n for i in ids)
        assert not set(rule["event_ids"]) & set(rule["negative_event_ids"])


def test_findings_pcap_scenarios_are_the_ones_the_brief_asks_for() -> None:
    spec = truth("findings.pcap")["findings"]
    fire = {rule_id: rule["event_ids"] for rule_id, rule in spec.items() if rule["event_ids"]}
    assert fire == {
        "cleartext-bearer": [2, 3, 4, 5, 6, 8, 9, 10, 12, 13, 20, 21],
        "token-not-yet-valid": [2],
        "token-multiple-clients": [4, 5],
        "unsigned-token": [6],
        "untrusted-issuer": [8],
        "audience-host-mismatch": [9],
        "ntlmv1": [16],
        "long-lived-token": [20],
        "token-exp-before-nbf": [21],
    }
    events = expected_events("findings.pcap")
    # One scenario per address pair: no two scenarios share a client and server.
    pairs = {(e["client_ip"], e["server_ip"]) for e in events}
    assert len(pairs) == 14
    assert (events[8]["host"], events[9]["host"]) == ("mail.contoso.com", "MAIL.contoso.com")
    assert events[8]["ms_diagnostics"] == (
        '2000003;reason="The hostname component of the audience claim value is invalid. '
        "Expected 'mail.contoso.com'. Actual 'autodiscover.contoso.com'.\";"
        'error_category="invalid_resource"'
    )


# --- findings.pcap and healthy-oauth.pcap against their truth ----------------------------------


@pytest.mark.parametrize(("name", "rule_id"), _cases("positive"))
def test_rule_flags_every_listed_event(name: str, rule_id: str) -> None:
    want = set(truth(name)["findings"][rule_id]["event_ids"])
    assert want <= fired(name, rule_id)


@pytest.mark.parametrize(("name", "rule_id"), _cases("exact"))
def test_rule_flags_nothing_else(name: str, rule_id: str) -> None:
    want = set(truth(name)["findings"][rule_id]["event_ids"])
    assert fired(name, rule_id) == want


@pytest.mark.parametrize(("name", "rule_id"), _cases("negative"))
def test_look_alike_events_stay_silent(name: str, rule_id: str) -> None:
    negatives = set(truth(name)["findings"][rule_id]["negative_event_ids"])
    assert not fired(name, rule_id) & negatives


def test_findings_pcap_details() -> None:
    name = "findings.pcap"
    events = expected_events(name)
    fp = {i + 1: e["cred_fp"] for i, e in enumerate(events)}
    rows = {
        (f.rule_id, f.event_ids): f
        for f in analysis(name).findings
        if f.rule_id not in ("cleartext-bearer", "token-multiple-clients")
    }
    assert sorted(rows) == [
        ("audience-host-mismatch", (9,)),
        ("long-lived-token", (20,)),
        ("ntlmv1", (16,)),
        ("token-exp-before-nbf", (21,)),
        ("token-not-yet-valid", (2,)),
        ("unsigned-token", (6,)),
        ("untrusted-issuer", (8,)),
    ]
    for (rule_id, ids), f in rows.items():
        if rule_id != "ntlmv1":
            assert f.token_fps == (fp[ids[0]],), rule_id
    assert rows[("audience-host-mismatch", (9,))].detail == (
        "aud host autodiscover.contoso.com but Host mail.contoso.com; server answered 401"
    )
    assert rows[("untrusted-issuer", (8,))].detail == (
        "issuer 00000003-0000-0ff1-ce00-000000000000@contoso.com not in trusted_issuers of "
        "10.2.1.51 -> ex05.contoso.com (10.2.2.16:80); refused as expected (server answered 401)"
    )
    # a token whose exp precedes its nbf is its own finding, not a "long-lived" one
    assert rows[("token-exp-before-nbf", (21,))].detail.endswith(
        "exp precedes nbf; server answered 200"
    )
    assert rows[("ntlmv1", (16,))].detail == (
        "CONTOSO\\kiosk sent NTLMv1 to 10.2.1.71 -> intranet.contoso.com (10.2.3.10:80)"
    )
    assert rows[("token-not-yet-valid", (2,))].detail.endswith("server answered 401")
    assert rows[("unsigned-token", (6,))].detail.endswith("(jwt-unsigned); server answered 200")
    replay = [f for f in findings_of(name, "token-multiple-clients") if 4 in f.event_ids]
    assert [(f.event_ids, f.token_fps) for f in replay] == [((4, 5), (fp[4],))]
    assert replay[0].detail == f"token {fp[4]} from 10.2.1.31, 10.2.1.32"
    bearer = findings_of(name, "cleartext-bearer")
    assert sorted(f.event_ids for f in bearer) == [
        (2,),
        (3,),
        (4,),
        (5,),
        (6,),
        (8,),
        (9,),
        (10,),
        (12, 13),
        (20,),
        (21,),
    ]


def test_findings_pcap_events_carry_the_facts_the_rules_read() -> None:
    by_id = {e.event_id: e for e in analysis("findings.pcap").events}
    assert by_id[16].ntlm_response == "NTLMv1"
    assert by_id[19].ntlm_response == "NTLMv2"
    assert (by_id[16].domain, by_id[16].user) == ("CONTOSO", "kiosk")
    assert by_id[2].token_signature == by_id[3].token_signature == "verified"
    assert by_id[6].token_signature == "unsigned"
    assert by_id[12].token_actor_iss == "00000004-0000-0ff1-ce00-000000000000@contoso.com"
    assert by_id[8].token_iss == "00000003-0000-0ff1-ce00-000000000000@contoso.com"
    assert by_id[9].token_aud_host == "autodiscover.contoso.com"
    assert by_id[2].token_nbf is not None and by_id[2].token_nbf - by_id[2].ts > 7199
    assert 0 < by_id[3].token_nbf - by_id[3].ts < 61
    assert by_id[20].token_exp - by_id[20].token_nbf == 7 * 86400


def _load_generator() -> ModuleType:
    """The capture generator (captures/generate), imported with captures/ on the path."""
    if str(CAPTURES) not in sys.path:
        sys.path.insert(0, str(CAPTURES))
    return importlib.import_module("generate")


def test_ntlmv1_type3_bytes_are_a_real_ntlmv1_response() -> None:
    """Independent of the NTLM decoder: the captured type 3 is NTLMv1 without ESS, and its NT
    response is DESL(NTOWFv1(password), server challenge)."""
    gen = _load_generator()
    # MS-NLMP 4.2.2.2.1 test vector (password "Password", challenge 0123456789abcdef).
    vector = gen.ntlmv1_response("Password", bytes.fromhex("0123456789abcdef"))
    assert vector.hex() == "67c43011f30298a2ad35ece64f16331c44bdbed927841f94"
    facts = truth("findings.pcap")["ntlmv1"]
    event = next(e for e in analysis("findings.pcap").events if e.event_id == 16)
    assert facts["events"] == [15]  # expected.json index of event 16
    type3 = base64.b64decode(event.credential or "")
    assert type3[:12] == b"NTLMSSP\x00\x03\x00\x00\x00"

    def field(offset: int) -> bytes:
        length, _, at = struct.unpack_from("<HHI", type3, offset)
        return type3[at : at + length]

    lm, nt = field(12), field(20)
    flags = struct.unpack_from("<I", type3, 60)[0]
    assert len(nt) == len(lm) == 24 and not flags & 0x00080000
    password = facts["password"].split(" ")[0]
    assert nt == gen.ntlmv1_response(password, bytes.fromhex(facts["server_challenge"]))
    type2_event = next(e for e in analysis("findings.pcap").events if e.event_id == 15)
    type2 = base64.b64decode(type2_event.challenges[0].token68 or "")
    assert type2[24:32].hex() == facts["server_challenge"]
    assert not struct.unpack_from("<I", type2, 20)[0] & 0x00080000


def test_healthy_capture_only_reports_cleartext() -> None:
    result = analysis("healthy-oauth.pcap")
    assert [(f.rule_id, f.event_ids) for f in result.findings] == [
        ("cleartext-bearer", (3, 4, 5, 6, 7, 8))
    ]
    assert [e.token_signature for e in result.events[2:]] == ["verified"] * 6
    assert all(e.status == 200 for e in result.events[2:])
    assert [v.verdict for v in result.verdicts] == ["oauth-only"]


# --- exchange-sfb.pcap ---------------------------------------------------------------------------


def exchange_sfb_expectation() -> dict[str, set[int]]:
    """The events each rule must flag on exchange-sfb.pcap, derived from its truth file."""
    t = truth("exchange-sfb.pcap")
    events = expected_events("exchange-sfb.pcap")

    def ids(indexes: list[int]) -> set[int]:
        return {i + 1 for i in indexes}

    tokens = t["tokens"]
    expired = [
        i for tok in tokens if tok["layer"] == "outer" and tok["expired"] for i in tok["events"]
    ]
    tampered = [i for tok in tokens if tok["tampered"] for i in tok["events"]]
    long_lived = [
        i
        for tok in tokens
        if tok["nbf"] is not None and int(tok["exp"]) - int(tok["nbf"]) > 86400
        for i in tok["events"]
    ]
    want = {rule_id: set() for rule_id in RULE_IDS}
    want.update(
        {
            "cleartext-basic": {i + 1 for i, e in enumerate(events) if e["scheme"] == "basic"},
            "cleartext-bearer": {
                i + 1
                for i, e in enumerate(events)
                if e["scheme"] == "bearer" and e["cred_fp"] != EMPTY_FP
            },
            "token-expired-use": ids(expired),
            "bad-signature": ids(tampered),
            "oauth-fallback": ids(expired + t["ntlm"]["events"]),
            "metadata-fetch-failed": ids(t["failed_metadata_fetches"]["events"]),
            "malformed-principal": ids(t["malformed_principals"]["events"]),
            "long-lived-token": ids(long_lived),
            "token-endpoint-error": {i + 1 for i, e in enumerate(events) if e["oauth_error"]},
        }
    )
    return want


def test_exchange_sfb_expectation_is_what_the_readme_says() -> None:
    fire = {rule_id: sorted(ids) for rule_id, ids in exchange_sfb_expectation().items() if ids}
    assert fire == {
        "cleartext-basic": [12],
        "cleartext-bearer": [5, 6, 7, 8, 11],
        "token-expired-use": [8],
        "bad-signature": [11],
        "oauth-fallback": [8, 9, 10],
        "metadata-fetch-failed": [2],
        "malformed-principal": [15],
        "long-lived-token": [11],
        "token-endpoint-error": [15],
    }


@pytest.mark.parametrize("rule_id", RULE_IDS)
def test_exchange_sfb_rule_flags_exactly_its_events(rule_id: str) -> None:
    assert fired("exchange-sfb.pcap", rule_id) == exchange_sfb_expectation()[rule_id]


def test_exchange_sfb_finding_details() -> None:
    rows = {f.rule_id: f for f in analysis("exchange-sfb.pcap").findings}
    assert rows["metadata-fetch-failed"].detail == (
        "http://sfbpool01.contoso.com/metadata/jason/1 -> 404"
    )
    assert rows["oauth-fallback"].detail == (
        "10.1.0.20 -> mail.contoso.com (10.1.0.10:80): OAuth rejected (2000002 token_expired), "
        "then ntlm"
    )
    assert rows["token-endpoint-error"].detail == (
        "invalid_grant from accounts.accesscontrol.windows.net (1x)"
    )
    assert "did you mean 00000002-0000-0ff1-ce00-000000000000" in rows["malformed-principal"].detail
    assert rows["cleartext-basic"].detail.startswith("CONTOSO\\alice: 1 request ")


@pytest.mark.parametrize(
    ("name", "want"),
    [
        (
            "messy.pcapng",
            {"cleartext-basic": {8, 9}, "cleartext-bearer": {1, 2, 3, 4, 5, 6, 12, 13}}
            | {"token-expired-use": {5}},
        ),
        ("small-basic.pcap", {"cleartext-basic": {1}}),
    ],
)
def test_other_captures_raise_only_the_findings_in_the_readme(
    name: str, want: dict[str, set[int]]
) -> None:
    assert {rule_id: fired(name, rule_id) for rule_id in RULE_IDS if fired(name, rule_id)} == want


# --- every rule, every capture ------------------------------------------------------------


@pytest.mark.parametrize("rule_id", RULE_IDS)
def test_every_rule_fires_on_some_bundled_capture(rule_id: str) -> None:
    assert any(findings_of(name, rule_id) for name in BUNDLED)


@pytest.mark.parametrize("name", BUNDLED)
def test_every_finding_explains_itself_and_shows_evidence(name: str) -> None:
    result = analysis(name)
    ts = {e.event_id: e.ts for e in result.events}
    rules = {r.rule_id: r for r in RULES}
    assert result.findings
    for f in result.findings:
        rule = rules[f.rule_id]
        assert (f.severity, f.title, f.explanation) == (rule.severity, rule.title, rule.explanation)
        assert f.severity in SEVERITIES and f.title and f.explanation.strip() and f.detail.strip()
        assert f.event_ids and set(f.event_ids) <= set(ts)
        assert f.first_ts == min(ts[i] for i in f.event_ids)
    ranks = [SEVERITIES.index(f.severity) for f in result.findings]
    assert ranks == sorted(ranks)
