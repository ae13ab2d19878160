"""Handshake classes and outcomes on ``captures/classes.pcap``, one generated scenario each.

The expected handshakes come from the generator's ground truth (``classes.truth.json`` key
``classes``): auth class, outcome, the analyzer's 1-based event ids, user / domain and the Negotiate
mechanism. A meta-test checks that the bundled captures together cover every auth class and every
outcome of ``analyzer.model``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest

from analyzer.analysis.findings import RULES
from analyzer.engine import AnalysisResult, analyze_paths
from analyzer.model import AUTH_CLASSES, OUTCOMES, Event, Handshake

CAPTURES = Path(__file__).resolve().parents[1] / "captures"
NAME = "classes.pcap"
#: Classes only SIP has: the bundled captures are HTTP; tests/test_sip.py covers these.
SIP_ONLY = {"tls-dsk"}
BUNDLED = (
    "exchange-sfb.pcap",
    "messy.pcapng",
    "findings.pcap",
    "healthy-oauth.pcap",
    "small-basic.pcap",
    "classes.pcap",
)

#: Known analyzer defects, by (scenario, what): the truth is right and the analyzer is not yet.
KNOWN_BUGS: dict[tuple[int, str], str] = {}  # (scenario, aspect) -> analyzer bug, xfail


@functools.cache
def analysis(name: str) -> AnalysisResult:
    return analyze_paths([str(CAPTURES / name)])


@functools.cache
def _json(suffix: str) -> dict[str, Any]:
    return json.loads((CAPTURES / f"classes.{suffix}.json").read_text())


def cases() -> list[dict[str, Any]]:
    return _json("truth")["classes"]


def expected_events() -> list[dict[str, Any]]:
    return _json("expected")["events"]


def handshake_of(case: dict[str, Any]) -> Handshake:
    """The analyzer's handshake that starts with the scenario's first event."""
    first = case["event_ids"][0]
    return next(h for h in analysis(NAME).handshakes if h.event_ids[0] == first)


def event(event_id: int) -> Event:
    return next(e for e in analysis(NAME).events if e.event_id == event_id)


def _params(what: str) -> list[Any]:
    out = []
    for case in cases():
        bug = KNOWN_BUGS.get((case["scenario"], what))
        marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
        out.append(pytest.param(case, marks=marks, id=f"{case['scenario']}-{case['auth_class']}"))
    return out


# --- the truth file ------------------------------------------------------------------------------


def test_truth_gives_every_class_and_outcome_a_case() -> None:
    summary = [(c["scenario"], c["auth_class"], c["outcome"], c["event_ids"]) for c in cases()]
    assert summary == [
        (1, "negotiate-ntlm", "accepted", [1, 2]),
        (2, "anonymous", "challenged", [3]),
        (3, "oauth", "challenged", [4]),
        (4, "ntlm", "incomplete", [5]),
        (5, "other", "accepted", [6]),
        (6, "digest", "rejected", [7, 8]),
        (7, "kerberos", "rejected", [9]),
    ]
    assert {c["outcome"] for c in cases()} == set(OUTCOMES)
    assert {c["auth_class"] for c in cases()} >= set(AUTH_CLASSES) - {"basic", *SIP_ONLY}
    ids = sorted(i for c in cases() for i in c["event_ids"])
    assert ids == list(range(1, len(expected_events()) + 1))
    # one scenario per client/server pair; basic is covered by small-basic, exchange-sfb, messy
    pairs = {(e["client_ip"], e["server_ip"]) for e in expected_events()}
    assert len(pairs) == len(cases())


# --- handshakes against the truth -------------------------------------------------------------


def test_one_handshake_per_scenario_with_its_events() -> None:
    got = [h.event_ids for h in analysis(NAME).handshakes]
    assert got == [tuple(c["event_ids"]) for c in cases()]


@pytest.mark.parametrize("case", _params("outcome"))
def test_handshake_class_and_outcome(case: dict[str, Any]) -> None:
    hs = handshake_of(case)
    assert (hs.auth_class, hs.outcome, hs.event_ids) == (
        case["auth_class"],
        case["outcome"],
        tuple(case["event_ids"]),
    )


@pytest.mark.parametrize("case", _params("identity"))
def test_handshake_user_and_domain(case: dict[str, Any]) -> None:
    hs = handshake_of(case)
    assert (hs.user, hs.domain) == (case["user"], case["domain"])


@pytest.mark.parametrize("case", _params("mechanism"))
def test_events_carry_scheme_mechanism_and_handshake(case: dict[str, Any]) -> None:
    hs = handshake_of(case)
    for event_id in case["event_ids"]:
        want = expected_events()[event_id - 1]
        got = event(event_id)
        assert (got.scheme, got.scheme_name, got.mechanism) == (
            want["scheme"],
            want["scheme_name"],
            want["mechanism"],
        )
        if want["scheme"] in ("negotiate", "ntlm"):
            assert got.mechanism == case["mechanism"]
        # Each exchange carries its own outcome: the last one the handshake's, an earlier one
        # answered 401/407 was a challenge step (the anonymous request, an NTLM leg).
        last = event_id == hs.event_ids[-1]
        step = "challenged" if want["status"] in (401, 407) else "accepted"
        assert (got.handshake_id, got.auth_class, got.outcome) == (
            hs.handshake_id,
            hs.auth_class,
            hs.outcome if last else step,
        )


def test_scheme_details_of_each_scenario() -> None:
    by_id = {e.event_id: e for e in analysis(NAME).events}
    # 1: NTLM inside SPNEGO, three legs
    assert (by_id[1].ntlm_type, by_id[2].ntlm_type, by_id[2].ntlm_response) == (1, 3, "NTLMv2")
    assert (by_id[2].user, by_id[2].domain, by_id[2].workstation) == ("carol", "CONTOSO", "WS-0217")
    leg2 = by_id[1].challenges[0]
    assert (leg2.scheme, leg2.details["neg_state"], leg2.details["mechanism"]) == (
        "negotiate",
        "accept-incomplete",
        "ntlm",
    )
    assert leg2.details["ntlm_type"] == 2
    assert by_id[2].status == 200
    assert by_id[2].challenges[0].details["neg_state"] == "accept-completed"
    # 2 and 3: challenges nobody answered
    assert [(c.scheme, c.params) for c in by_id[3].challenges] == [("basic", {"realm": "intranet"})]
    assert (by_id[4].scheme, by_id[4].cred_len, by_id[4].cred_fp) == ("bearer", 0, "e3b0c44298fc")
    assert by_id[4].challenges[0].params["client_id"] == "00000002-0000-0ff1-ce00-000000000000"
    # 4: a type 2 and no answer
    assert (by_id[5].scheme, by_id[5].ntlm_type, by_id[5].challenges[0].details["ntlm_type"]) == (
        "ntlm",
        1,
        2,
    )
    # 5: a scheme nobody knows
    assert (by_id[6].scheme, by_id[6].scheme_name, by_id[6].status) == ("other", "Turbo", 200)
    # 6: Digest with a wrong password
    assert (by_id[8].scheme, by_id[8].user, by_id[8].status) == ("digest", "dave", 401)
    # 7: Kerberos AP-REQ answered by a SPNEGO reject carrying KRB-ERROR 41
    assert (by_id[9].mechanism, by_id[9].spn, by_id[9].domain) == (
        "kerberos",
        "HTTP/sp.contoso.com",
        "CONTOSO.COM",
    )
    reject = by_id[9].challenges[0].details
    assert (reject["neg_state"], reject["mechanism"], reject["kerberos"]) == (
        "reject",
        "kerberos",
        "KRB-ERROR",
    )


def test_no_finding_rule_fires() -> None:
    spec = _json("truth")["findings"]
    assert list(spec) == [r.rule_id for r in RULES]
    assert all(rule["event_ids"] == [] for rule in spec.values())
    assert analysis(NAME).findings == []


# --- coverage across the bundled captures -------------------------------------------------------


@functools.cache
def seen() -> tuple[set[str], set[str]]:
    handshakes = [h for name in BUNDLED for h in analysis(name).handshakes]
    return {h.auth_class for h in handshakes}, {h.outcome for h in handshakes}


@pytest.mark.parametrize("auth_class", [c for c in AUTH_CLASSES if c not in SIP_ONLY])
def test_every_auth_class_occurs_in_a_bundled_capture(auth_class: str) -> None:
    assert auth_class in seen()[0]


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_every_outcome_occurs_in_a_bundled_capture(outcome: str) -> None:
    assert outcome in seen()[1]
