"""``live --verify``'s judge (``verify.Watch``): each exchange judged as it completes gives the
violations ``verify`` finds in the whole capture, and a violation the summary no longer holds
still fails the run."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from analyzer.analysis.verify import FAIL, PASS, Rule, Watch, evaluate, make_rule, rules_from_policy
from analyzer.engine import AnalysisResult, Engine

HYBRID = Path(__file__).resolve().parents[1] / "captures" / "hybrid"
POLICY = rules_from_policy(tomllib.loads((HYBRID / "policy.toml").read_text()), [], False)
RULES = {
    "policy": POLICY,
    "any issuer": [make_rule(name="any issuer")],
    "skype, signed": [make_rule(name="skype", issuer="skype", require_signature=True)],
    "wrong realm": [make_rule(name="realm", realm="fabrikam.com", path="/EWS/")],
}


def _watched(path: Path, rules: list[Rule], keep: int = 100_000) -> tuple[list, AnalysisResult]:
    watch = Watch(rules)
    seen: list = []
    engine = Engine(on_event=lambda e: seen.extend(watch.event(e)), keep=keep)
    with open(path, "rb") as fh:
        engine.read_stream(fh, path.name)
    return [watch, seen], engine.finish()


@pytest.mark.parametrize("rules", RULES, ids=str)
@pytest.mark.parametrize("path", sorted(HYBRID.glob("*.pcap")), ids=lambda p: p.stem)
def test_streamed_violations_are_verifys_violations(path: Path, rules: str) -> None:
    (_watch, seen), result = _watched(path, RULES[rules])
    streamed = sorted((rule.name, v.event.event_id, v.kind, v.reason) for rule, v in seen)
    batch = sorted(
        (r.rule.name, v.event.event_id, v.kind, v.reason)
        for r in (evaluate(rule, result.events, result.captures) for rule in RULES[rules])
        for v in r.violations
    )
    assert streamed == batch


def test_ntlm_legs_are_judged_once_with_the_leg_that_ends_them() -> None:
    (_watch, seen), result = _watched(HYBRID / "ntlm-legs.pcap", RULES["any issuer"])
    judged = {v.event.event_id for _, v in seen}
    legs = {e.event_id for e in result.events if e.ntlm_type == 1 and e.status == 401}
    assert legs and not judged & legs
    assert all(v.kind == "not-oauth" for _, v in seen)


def test_a_violation_no_longer_kept_still_fails_the_run() -> None:
    rules = RULES["any issuer"]
    (watch, seen), result = _watched(HYBRID / "unsigned.pcap", rules, keep=1)
    assert seen  # the unsigned token broke the rule while streaming
    final = [evaluate(rule, result.events, result.captures) for rule in rules]
    assert [r.result for r in final] != [FAIL]  # the one event kept says nothing wrong
    settled = watch.settle(final)
    assert [r.result for r in settled] == [FAIL]
    assert settled[0].reason == (
        f"{len(seen)} exchanges broke the rule while streaming (no longer kept for this summary)"
    )


def test_settle_leaves_a_clean_stream_alone() -> None:
    rules = RULES["any issuer"]
    (watch, seen), result = _watched(HYBRID / "healthy.pcap", [make_rule(name="x", path="/EWS/")])
    final = [evaluate(rule, result.events, result.captures) for rule in watch.rules]
    assert not seen
    assert [r.result for r in watch.settle(final)] == [PASS] == [r.result for r in final]
    assert rules  # the module's rules are untouched


def test_a_stream_finds_a_named_server_by_the_address_that_served_its_name(
    tmp_path: Path,
) -> None:
    """``--server mail.test``: a later request without Host to the address that answered for
    mail.test is that server's too, while streaming as in the whole capture."""
    from wire_kit import OK, write_capture

    named = b"GET /a HTTP/1.1\r\nHost: mail.test\r\nAuthorization: Basic YTpi\r\n\r\n"
    nameless = b"GET /b HTTP/1.0\r\nAuthorization: Basic YTpi\r\n\r\n"
    path = Path(write_capture(tmp_path / "nameless.pcap", [(named, OK)], [(nameless, OK)]))
    rules = [make_rule(name="mail", server="mail.test")]
    (_watch, seen), result = _watched(path, rules)
    assert [(v.event.uri, v.kind, v.event_ids) for _, v in seen] == [
        ("/a", "not-oauth", (1,)),
        ("/b", "not-oauth", (2,)),
    ]
    (final,) = [evaluate(rule, result.events, result.captures) for rule in rules]
    assert [v.event.uri for v in final.violations] == ["/a", "/b"]


def test_settle_counts_every_violation_streamed() -> None:
    rules = RULES["any issuer"]
    (watch, seen), result = _watched(HYBRID / "untrusted-issuer.pcap", rules, keep=1)
    assert len(seen) == 6  # the six tokens of the untrusted issuer; the one kept is trusted
    settled = watch.settle([evaluate(rule, result.events, result.captures) for rule in rules])
    assert [(r.result, r.reason) for r in settled] == [
        (FAIL, "6 exchanges broke the rule while streaming (no longer kept for this summary)")
    ]
