"""``verify`` and the pair verdicts against the generated hybrid scenarios (``captures/hybrid``).

Every expectation comes from ``captures/hybrid/truth.json``, written by the generator from what
it put on the wire - never from the analyzer's output: the result of each policy rule (with and
without ``--partial``), every violating exchange and why, each pair's verdict class, its
handshakes per class, and the text of every verdict class.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from analyzer.analysis.handshakes import counted
from analyzer.cli import main
from analyzer.engine import AnalysisResult, analyze_paths

HYBRID = Path(__file__).resolve().parents[1] / "captures" / "hybrid"
POLICY = str(HYBRID / "policy.toml")
TRUTH = json.loads((HYBRID / "truth.json").read_text())
SCENARIOS = sorted(TRUTH["scenarios"])


@functools.cache
def analysis(name: str) -> AnalysisResult:
    return analyze_paths([str(HYBRID / f"{name}.pcap")])


def verify(capsys: pytest.CaptureFixture[str], name: str, *extra: str) -> tuple[int, dict]:
    code = main(["verify", str(HYBRID / f"{name}.pcap"), "--policy", POLICY, "--json", *extra])
    return code, json.loads(capsys.readouterr().out)


def test_the_family_covers_every_verdict_class_and_result() -> None:
    classes = {p["class"] for s in TRUTH["scenarios"].values() for p in s["pairs"]}
    assert classes == set(TRUTH["pair_classes"])
    results = {e["result"] for s in TRUTH["scenarios"].values() for e in s["expected"].values()}
    assert results == {"PASS", "FAIL", "INCONCLUSIVE"}


@pytest.mark.parametrize("name", SCENARIOS)
def test_each_rule_answers_as_the_truth_says(capsys: pytest.CaptureFixture[str], name: str) -> None:
    expected = TRUTH["scenarios"][name]["expected"]
    for extra, key in (((), "result"), (("--partial",), "partial")):
        code, data = verify(capsys, name, *extra)
        got = {r["rule"]: r["result"] for r in data["rules"]}
        assert got == {rule: want[key] for rule, want in expected.items()}, (name, extra)
        overall = "FAIL" if "FAIL" in got.values() else "INCONCLUSIVE"
        overall = overall if overall in got.values() else "PASS"
        assert data["result"] == overall
        assert code == {"PASS": 0, "FAIL": 1, "INCONCLUSIVE": 2}[overall]


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_violating_exchange_is_named_with_its_reason(
    capsys: pytest.CaptureFixture[str], name: str
) -> None:
    _, data = verify(capsys, name)
    truth = TRUTH["scenarios"][name]["violations"]
    for rule in data["rules"]:
        want = {v["event_id"]: v for v in truth if v["rule"] == rule["rule"]}
        got: dict[int, dict] = {}
        for v in rule["violations"]:
            for event_id in v["event_ids"]:  # an NTLM handshake's legs are one violation
                got[event_id] = v
        assert set(got) == set(want), (name, rule["rule"])
        for event_id, v in got.items():
            assert v["kind"] in want[event_id]["kinds"], (name, event_id, v["reason"])
        # one violation per exchange: the legs of one NTLM / Negotiate handshake count once
        units = {
            ("hs", v["handshake"]) if v["scheme"] in ("ntlm", "negotiate") else ("ev", i)
            for i, v in want.items()
        }
        assert len(rule["violations"]) == len(units), (name, rule["rule"])


@pytest.mark.parametrize("name", SCENARIOS)
def test_pair_verdict_classes_and_handshake_counts(name: str) -> None:
    result = analysis(name)
    got = {(v.client_ip, v.server_ip, v.server_port, v.host): v for v in result.verdicts}
    for pair in TRUTH["scenarios"][name]["pairs"]:
        v = got[(pair["client"], pair["server"], pair["server_port"], pair["host"])]
        assert v.verdict == pair["class"], (name, pair)
        assert v.handshake_classes == pair["handshakes"], (name, pair)


def _summary_truth(pair: dict[str, Any]) -> str:
    """The sentence each verdict class must say, built from the generator's counts."""
    handshakes = Counter(pair["handshakes"])
    by = counted(handshakes)
    cls = pair["class"]
    if cls == "oauth-only":
        return f"all {pair['exchanges']['oauth']} authenticated exchanges used OAuth"
    if cls == "oauth-with-fallback":
        fell = Counter({k: n for k, n in handshakes.items() if k != "oauth"})
        return f"and the client fell back to {counted(fell)}; all handshakes: {by}"
    if cls == "no-oauth":
        return f"no OAuth: {by}"
    if cls == "mixed":
        return f"mixed: {by}"
    if cls == "unauthenticated":
        return "challenged, but no credential was sent"
    # oauth-rejected
    oauth = pair["exchanges"]["oauth"]
    return (
        f"OAuth was attempted ({oauth} exchanges in {handshakes['oauth']} handshakes) and rejected"
    )


@pytest.mark.parametrize("name", SCENARIOS)
def test_verdict_text_of_every_class_states_the_truths_counts(name: str) -> None:
    got = {(v.client_ip, v.server_ip, v.host): v for v in analysis(name).verdicts}
    for pair in TRUTH["scenarios"][name]["pairs"]:
        v = got[(pair["client"], pair["server"], pair["host"])]
        assert _summary_truth(pair) in v.summary, (name, v.summary)


def test_fallback_text_names_every_scheme_by_handshakes() -> None:
    (v,) = [v for v in analysis("fallback-mixed").verdicts if v.client_ip == "10.1.0.20"]
    assert "fell back to kerberos (5 handshakes), ntlm (4), basic (3)" in v.summary


def test_mixed_says_where_oauth_was_never_tried() -> None:
    (v,) = [v for v in analysis("ntlm-legs").verdicts if v.client_ip == "10.1.0.20"]
    without = sum(1 for p in TRUTH["scenarios"]["ntlm-legs"]["pairs"] if p["class"] == "mixed")
    assert without == 1
    assert v.summary.startswith("mixed: ntlm (20 handshakes), oauth (20)")
    assert "the client never tried OAuth on 20 of 40 connections" in v.summary


def test_probe_and_ntlm_type1_legs_are_challenges_not_acceptances() -> None:
    truth = TRUTH["scenarios"]["ntlm-legs"]["exchanges"]
    events = {e.event_id: e for e in analysis("ntlm-legs").events}
    for x in truth:
        want = None if x["event_outcome"] == "none" else x["event_outcome"]
        assert events[x["event_id"]].outcome == want, x
    assert Counter(x["event_outcome"] for x in truth)["challenged"] >= 21


def test_metadata_failures_explain_the_inconclusive(capsys: pytest.CaptureFixture[str]) -> None:
    _, data = verify(capsys, "metadata-404")
    facts = TRUTH["scenarios"]["metadata-404"]["facts"]["failed_metadata_fetches"]
    rule = data["rules"][0]
    assert rule["result"] == "INCONCLUSIVE"
    assert facts["explanation"] in rule["reason"]


def test_cut_capture_says_which_request_was_lost(capsys: pytest.CaptureFixture[str]) -> None:
    _, data = verify(capsys, "cut")
    cut = TRUTH["scenarios"]["cut"]["facts"]["cut"]
    (blind,) = data["rules"][0]["coverage"]["not_inspected"]
    assert blind["kind"] == "request-lost"
    assert (
        cut["in_scope_because"].split("(")[1].startswith(f"{blind['client']} -> {blind['server']}")
    )
    assert any("file ends in the middle of a record" in w for w in data["warnings"])


def test_tls_blind_spots_name_the_server(capsys: pytest.CaptureFixture[str]) -> None:
    _, data = verify(capsys, "tls-blind")
    rule = data["rules"][0]
    assert [b.split(":")[0:2] for b in rule["coverage"]["blind_spots"]] == [
        ["3 TLS connections to mail.contoso.com", "443 (10.1.0.10) not inspected"]
    ]


def test_readme_hybrid_policy_passes_healthy_and_fails_each_broken_scenario(
    capsys: pytest.CaptureFixture[str],
) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "captures/hybrid/policy.toml" in readme
    for name in SCENARIOS:
        code, _ = verify(capsys, name)
        want = TRUTH["scenarios"][name]["expected"].values()
        assert (code == 0) == all(w["result"] == "PASS" for w in want), name


def test_readme_shows_the_real_output_of_the_fallback_example(
    capsys: pytest.CaptureFixture[str],
) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("For example, the NTLM\nfallback:\n\n```text\n", 1)[1].split("```", 1)[0]
    code = main(["verify", str(HYBRID / "fallback-ntlm.pcap"), "--policy", POLICY])
    assert code == 1 and capsys.readouterr().out == block


def test_findings_count_instances_per_rule_and_pair(capsys: pytest.CaptureFixture[str]) -> None:
    # bad-signature.pcap: the three users' outer tokens (alice, bob, carol) carry a tampered actor
    tokens = TRUTH["scenarios"]["bad-signature"]["tokens"]
    outers = {fp for t in tokens if t["tampered"] for fp in t["outer_fps"]}
    (f,) = [f for f in analysis("bad-signature").findings if f.rule_id == "bad-signature"]
    assert f.count == 3 and set(f.token_fps) == outers
    assert f.detail.startswith("3 times 10.1.0.20 -> mail.contoso.com (10.1.0.10:80); first: ")
    assert len(f.examples) == 3 and f.first_ts < f.last_ts and len(f.event_ids) == 6
    assert main(["analyze", str(HYBRID / "bad-signature.pcap"), "--findings"]) == 0
    out = capsys.readouterr().out
    assert out.count("    bad-signature:") == 1 and out.index("  High (") < out.index("bad-sig")


def test_allow_in_a_policy_file_relaxes_one_rule(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    capture = str(HYBRID / "untrusted-issuer.pcap")
    text = (HYBRID / "policy.toml").read_text()
    policy = tmp_path / "p.toml"
    policy.write_text(
        text.replace('path = "/EWS/"\n', 'path = "/EWS/"\nallow = ["untrusted-issuer"]\n')
    )
    assert main(["verify", capture, "--policy", POLICY]) == 1
    capsys.readouterr()
    assert main(["verify", capture, "--policy", str(policy), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["rules"][0]["relaxed"] == {"untrusted-issuer": 6}
