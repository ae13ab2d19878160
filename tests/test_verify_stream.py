"""``live --verify``'s judge (``verify.Watch``): each exchange judged as it completes gives the
violations ``verify`` finds in the whole capture, and a violation the summary no longer holds
still fails the run."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from analyzer.analysis.verify import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    Rule,
    Watch,
    evaluate,
    make_rule,
    rules_from_policy,
)
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
    # as live: offsets count from the stream's first packet
    watch = Watch(rules, lambda: engine.captures[-1].first_ts if engine.captures else None)
    seen: list = []
    engine = Engine(on_event=lambda e: seen.extend(watch.event(e)), keep=keep)
    engine.collector.on_evict = watch.evicted
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
    settled = watch.verdicts(result.events, result.captures, result.not_inspected)
    assert [(r.result, r.reason) for r in settled] == [
        (
            FAIL,
            # the one kept is judged with the trusted issuers its server listed before (no
            # longer kept either): the Watch's knowledge
            "1 of 1 exchanges break the rule; 5 exchanges broke the rule while streaming (no "
            "longer kept for this summary)",
        )
    ]


# -- what the stream lets go (Engine's keep) -------------------------------------------------
SERVER, OTHER = "10.9.9.2", "10.9.9.3"  # wire_kit's server; another, out of the rules' scope
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
ASK = b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n"
HELLO = bytes.fromhex("16030100c8010000c40303") + bytes(range(32)) + b"\x00" * 150
Conn = tuple[str, list]  # (server, the exchanges of one connection to it)


def _request(auth: str | None, host: str = "mail.test") -> bytes:
    line = f"Authorization: {auth}\r\n" if auth else ""
    return f"GET /EWS/ HTTP/1.1\r\nHost: {host}\r\n{line}\r\n".encode()


def _bearer(host: str = "mail.test", server: str = SERVER) -> Conn:
    from token_kit import s2s

    return server, [(_request(f"Bearer {s2s()}", host), OK)]


def _basic(host: str = "mail.test", server: str = SERVER) -> Conn:
    return server, [(_request("Basic YTpi", host), OK)]


def _asked(n: int, server: str = OTHER) -> list[Conn]:
    """``n`` unauthenticated requests answered 401: events that push older ones out."""
    return [(server, [(_request(None, "other.test"), ASK)]) for _ in range(n)]


def _tls(n: int = 1, server: str = OTHER) -> list[Conn]:
    """``n`` TLS connections (a ClientHello), not decrypted: blind spots."""
    return [(server, [(HELLO, None)]) for _ in range(n)]


def _stream(tmp_path: Path, rules: list[Rule], *conns: Conn, keep: int = 10) -> tuple:
    """``live --verify``'s closing verdicts over ``conns`` (a second apart) read as a stream
    that keeps ``keep`` records, and the violations it streamed."""
    from wire_kit import T0, connection, write_packets

    packets = [
        connection(exchanges, 30000 + i, T0 + i, server=server)
        for i, (server, exchanges) in enumerate(conns)
    ]
    path = Path(write_packets(tmp_path / "stream.pcap", *packets))
    (watch, seen), result = _watched(path, rules, keep)
    return watch.verdicts(result.events, result.captures, result.not_inspected), seen


def _batch(tmp_path: Path, rules: list[Rule]) -> list[str]:
    """``verify``'s answers over the same capture, read whole."""
    from analyzer.engine import analyze_paths

    result = analyze_paths([tmp_path / "stream.pcap"])
    return [evaluate(r, result.events, result.captures, result.not_inspected).result for r in rules]


def test_a_blind_spot_in_scope_let_go_leaves_the_rule_inconclusive(tmp_path: Path) -> None:
    """TLS to the ruled server, not decrypted, then a compliant call, then enough TLS elsewhere
    that the blind spot is no longer kept: INCONCLUSIVE as ``verify`` of the capture says,
    not PASS; PASS with ``--partial``, which accepts what was inspected."""
    rules = [make_rule(name="r", server=SERVER), make_rule(name="p", server=SERVER, partial=True)]
    conns = [*_tls(server=SERVER), _bearer(), *_tls(15)]
    results, seen = _stream(tmp_path, rules, *conns)
    assert not seen
    assert _batch(tmp_path, rules) == [INCONCLUSIVE, PASS]
    assert [(r.result, r.reason) for r in results] == [
        (
            INCONCLUSIVE,
            "1 blind spot in scope (traffic not inspected) was streamed but not kept for this "
            "summary; pass --partial to accept what was inspected",
        ),
        (
            PASS,
            "all 1 authenticated exchanges used OAuth as required; 1 blind spot in scope "
            "(traffic not inspected) was streamed but not kept for this summary",
        ),
    ]
    kept, _ = _stream(tmp_path, rules, *conns, keep=1000)
    assert [r.result for r in kept] == [INCONCLUSIVE, PASS]  # the blind spot kept: the same


def test_an_exchange_in_scope_by_a_name_learnt_later_fails_when_let_go(tmp_path: Path) -> None:
    """``--server mail.test``: a Basic logon sent to the server by address is out of scope
    while streaming (the name's address is not known yet); once known, the logon let go is
    judged: FAIL, as ``verify`` of the capture says, not PASS on the one call kept."""
    rules = [make_rule(name="r", server="mail.test")]
    conns = [_basic(host=SERVER), _bearer(), *_asked(15), _bearer()]
    results, seen = _stream(tmp_path, rules, *conns)
    assert not seen
    assert _batch(tmp_path, rules) == [FAIL]
    assert [(r.result, r.reason) for r in results] == [
        (
            FAIL,
            "1 broke it as judged when the stream let them go (in scope by a host name's "
            "address learnt later, or an NTLM / Negotiate attempt never finished) (no longer "
            "kept for this summary)",
        )
    ]


def test_a_record_let_go_before_its_servers_name_was_learnt_is_inconclusive(
    tmp_path: Path,
) -> None:
    """The Basic logon by address is let go before any request names mail.test: it can no
    longer be judged when the name turns out to be served there (INCONCLUSIVE, never PASS);
    at an address that never serves the name, it is out of scope for good."""
    rules = [make_rule(name="r", server="mail.test")]
    results, _ = _stream(tmp_path, rules, _basic(host=SERVER), *_asked(15), _bearer())
    assert _batch(tmp_path, rules) == [FAIL]
    assert [(r.result, r.reason) for r in results] == [
        (
            INCONCLUSIVE,
            "1 record out of scope when streamed, at an address later seen to serve a host name "
            "of the scope, were streamed but not kept for this summary: they cannot be judged",
        )
    ]
    elsewhere = _basic(host=OTHER, server=OTHER)
    results, _ = _stream(tmp_path, rules, elsewhere, *_asked(15), _bearer())
    assert [r.result for r in results] == [PASS] == _batch(tmp_path, rules)


def test_an_ntlm_attempt_never_finished_fails_when_let_go(tmp_path: Path) -> None:
    """An NTLM first leg answered with its challenge and never continued is an attempt that is
    not OAuth, judged only at the close: let go, it still fails the rule; a finished one is
    judged once, with the leg that ends it."""
    import base64

    from token_kit import generated

    ntlm = generated("ntlm")
    type1 = base64.b64encode(ntlm.ntlm_negotiate()).decode()
    type2 = base64.b64encode(ntlm.ntlm_challenge(b"\x01" * 8, b"")).decode()
    challenge = (
        f"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: NTLM {type2}\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    attempt = (SERVER, [(_request(f"NTLM {type1}"), challenge)])
    rules = [make_rule(name="r", server=SERVER)]
    results, seen = _stream(tmp_path, rules, attempt, *_asked(15), _bearer())
    assert not seen and _batch(tmp_path, rules) == [FAIL]
    assert [(r.result, r.reason) for r in results] == [
        (
            FAIL,
            "1 broke it as judged when the stream let them go (in scope by a host name's "
            "address learnt later, or an NTLM / Negotiate attempt never finished) (no longer "
            "kept for this summary)",
        )
    ]


def test_a_finished_ntlm_handshake_let_go_counts_once() -> None:
    rules = RULES["any issuer"]
    (watch, seen), result = _watched(HYBRID / "ntlm-legs.pcap", rules, keep=1)
    (final,) = watch.verdicts(result.events, result.captures, result.not_inspected)
    assert final.result == FAIL and "as judged when the stream let them go" not in final.reason
    assert watch.lost[0].violations + len(final.violations) == len(seen)


def test_a_compliant_use_let_go_before_its_server_lists_its_trusted_issuers(
    tmp_path: Path,
) -> None:
    """A token use judged compliant, let go, and then its server lists trusted issuers that do
    not name the token's: ``verify`` of the capture fails it; the stream can no longer tell."""
    listing = (
        b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer client_id="00000002-0000-0ff1-'
        b'ce00-000000000000", trusted_issuers="00000005-0000-0000-c000-000000000000@*"\r\n'
        b"Content-Length: 0\r\n\r\n"
    )
    rules = [make_rule(name="r", server=SERVER)]
    conns = [_bearer(), *_asked(15), (SERVER, [(_request(None), listing)])]
    results, seen = _stream(tmp_path, rules, *conns)
    assert not seen and _batch(tmp_path, rules) == [FAIL]
    assert [(r.result, r.reason) for r in results] == [
        (
            INCONCLUSIVE,
            "no authenticated exchange matches to 10.9.9.2; 1 request was challenged (offering "
            "bearer) and no credential followed; exchanges judged compliant while streaming "
            "were streamed but not kept for this summary, and a server's trusted issuers seen "
            "after them may change that: they cannot be judged again; 1 exchange judged "
            "compliant while streaming is no longer kept for this summary",
        )
    ]
    before = [(SERVER, [(_request(None), listing)]), *_asked(15)]
    results, _ = _stream(tmp_path, [make_rule(name="r", server=SERVER)], *before, _bearer())
    assert [r.result for r in results] == [FAIL]  # listed first: judged while streaming


def _key_fetch() -> Conn:
    """SfB's metadata document (its signing key) fetched from its pool."""
    import json

    from token_kit import generated, keys

    body = json.dumps(generated("lab").sfb_metadata(keys()["sfb"])).encode()
    request = b"GET /metadata/json/1 HTTP/1.1\r\nHost: sfbpool01.contoso.com\r\n\r\n"
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    return OTHER, [(request, answer % len(body) + body)]


def _sfb_call() -> Conn:
    from token_kit import sfb_token

    return SERVER, [(_request(f"Bearer {sfb_token()}", "mail.contoso.com"), OK)]


def test_a_violation_streamed_before_its_key_came_is_judged_again_at_the_close(
    tmp_path: Path,
) -> None:
    """A token whose signing key is fetched after its use streams as a violation (no key yet);
    still kept, the closing judgement verifies it, as ``verify`` of the capture does: PASS,
    saying why the violation printed no longer stands."""
    rules = [make_rule(name="r", issuer="skype", realm="contoso.com", require_signature=True)]
    results, seen = _stream(tmp_path, rules, _sfb_call(), _key_fetch())
    assert [v.kind for _, v in seen] == ["signature-not-verified"]
    assert _batch(tmp_path, rules) == [PASS]
    assert [(r.result, r.reason) for r in results] == [
        (
            PASS,
            "all 1 authenticated exchanges used OAuth as required (1 exchange printed as a "
            "violation while streaming complies with what was seen later, such as a signing key "
            "fetched after its use)",
        )
    ]


def test_a_compliant_use_let_go_before_its_key_came_is_inconclusive(tmp_path: Path) -> None:
    """Without a key the token's signature is unknown, which this rule accepts; its key fetched
    after it was let go could have shown a bad signature: it can no longer be judged."""
    rules = [make_rule(name="r", server=SERVER)]
    results, _ = _stream(tmp_path, rules, _sfb_call(), *_asked(15), _key_fetch(), _bearer())
    assert [(r.result, r.reason) for r in results] == [
        (
            INCONCLUSIVE,
            "exchanges judged compliant while streaming were streamed but not kept for this "
            "summary, and a signing key seen after them may change that: they cannot be judged "
            "again; 1 exchange judged compliant while streaming is no longer kept for this "
            "summary",
        )
    ]
    results, _ = _stream(tmp_path, rules, _key_fetch(), _sfb_call(), *_asked(15), _bearer())
    assert [(r.result, r.reason) for r in results] == [
        (
            PASS,
            "all 1 authenticated exchanges used OAuth as required; 1 exchange judged compliant "
            "while streaming is no longer kept for this summary",
        )
    ]


def test_offsets_count_from_the_first_packet_not_the_first_event(tmp_path: Path) -> None:
    """``--since +0.5s``: the window opens half a second after the stream's first packet (a TLS
    connection's, here), as ``verify`` of the capture opens it, not after the first exchange
    to complete (the Basic logon a second later, which is in the window)."""
    rules = [make_rule(name="r", since="+0.5s")]
    results, _ = _stream(tmp_path, rules, *_tls(server=SERVER), _basic())
    assert [r.result for r in results] == [FAIL] == _batch(tmp_path, rules)


def test_a_kept_violation_is_judged_with_the_names_learnt_from_records_let_go(
    tmp_path: Path,
) -> None:
    """The request that showed mail.test's address is let go; a Basic logon sent there by
    address, kept, is judged at the close with what the stream learnt: FAIL, not an empty
    scope."""
    rules = [make_rule(name="r", server="mail.test")]
    results, seen = _stream(tmp_path, rules, _bearer(), *_asked(15), _basic(host=SERVER))
    assert [v.kind for _, v in seen] == ["not-oauth"]
    assert [(r.result, r.reason) for r in results] == [(FAIL, "1 of 1 exchanges break the rule")]
