"""``verify`` and SIP: not judged unless asked (``--protocol sip``, a policy's ``protocol``).

Skype for Business users rightly sign in to SIP with NTLM, Kerberos or TLS-DSK
(docs: decisions), so a capture of healthy OAuth between servers must not FAIL because it also
holds SIP sign-ins; asked about SIP, verify judges it like HTTP.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sip_kit as kit
from token_kit import actor_claims, signed

from analyzer.analysis.verify import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    PolicyError,
    Watch,
    evaluate,
    make_rule,
    rules_from_policy,
)
from analyzer.cli import main
from analyzer.engine import analyze_paths

HEALTHY = Path(__file__).resolve().parents[1] / "captures" / "healthy-oauth.pcap"


@pytest.fixture(scope="module")
def sfb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sip") / "sfb.pcap"
    msgs = kit.ntlm_register() + kit.kerberos_register() + kit.tls_dsk_register()
    return Path(kit.tcp_capture(path, msgs))


@pytest.fixture(scope="module")
def bearer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sip") / "bearer.pcap"
    token = signed(actor_claims(nbf=int(kit.T0) - 60, exp=int(kit.T0) + 3600), key="sfb")
    return Path(kit.udp_capture(path, kit.bearer_register(token)))


def judge(paths: list[Path], **rule) -> object:
    result = analyze_paths([str(p) for p in paths])
    return evaluate(make_rule(**rule), result.events, result.captures, result.not_inspected)


def test_sip_alone_is_not_judged_by_default_and_verify_says_how_to_ask(sfb: Path) -> None:
    outcome = judge([sfb])
    assert outcome.result == INCONCLUSIVE and outcome.in_scope == 0
    assert "5 authenticated SIP exchange(s) not judged by this rule" in outcome.reason
    assert "--protocol sip" in outcome.reason
    assert "holds no readable authentication" not in outcome.reason


def test_sip_sign_ins_beside_healthy_oauth_do_not_fail_it(sfb: Path) -> None:
    alone = judge([HEALTHY])
    beside = judge([HEALTHY, sfb])
    assert alone.result == beside.result == PASS
    assert beside.in_scope == alone.in_scope


def test_asked_about_sip_verify_judges_every_sign_in(sfb: Path) -> None:
    outcome = judge([sfb], protocol="sip")
    assert (outcome.result, outcome.in_scope) == (FAIL, 5)
    assert [(v.kind, v.reason, v.event_ids) for v in outcome.violations] == [
        ("not-oauth", "not OAuth: ntlm as CONTOSO\\alice", (2, 3)),  # the legs: one exchange
        ("not-oauth", "not OAuth: ntlm", (4,)),  # signed in the association
        ("not-oauth", "not OAuth: ntlm", (5,)),
        ("not-oauth", "not OAuth: kerberos (Kerberos)", (7, 8)),
        ("not-oauth", "not OAuth: tls-dsk (TLS-DSK)", (10, 11, 12)),
    ]
    both = judge([HEALTHY, sfb], protocol="http, sip")
    assert both.result == FAIL and both.in_scope == judge([HEALTHY]).in_scope + 5


def test_an_oauth_token_over_sip_passes_when_sip_is_judged(bearer: Path) -> None:
    outcome = judge([bearer], protocol="sip")
    assert (outcome.result, outcome.in_scope, outcome.compliant) == (PASS, 1, 1)
    assert judge([bearer]).result == INCONCLUSIVE


def test_a_policy_names_the_protocol_and_rejects_unknown_ones() -> None:
    (rule,) = rules_from_policy({"rule": [{"protocol": "sip", "server": "10.20.0.5"}]})
    assert rule.protocols == ("sip",)
    assert rule.describe() == "to 10.20.0.5; protocol sip"
    with pytest.raises(PolicyError, match="protocol: unknown smtp"):
        make_rule(protocol="smtp")
    assert make_rule(protocol="HTTP/1.1").protocols == ("http/1.1",)


def test_a_stream_judges_sip_only_when_asked(sfb: Path) -> None:
    events = analyze_paths([str(sfb)]).events
    default, asked = Watch([make_rule()]), Watch([make_rule(name="sip", protocol="sip")])
    assert not [v for e in events for v in default.event(e)]
    assert len([v for e in events for v in asked.event(e)]) == 5


def test_the_command_line_flag(sfb: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(sfb)]) == 2
    assert main(["verify", str(sfb), "--protocol", "sip"]) == 1
    assert main(["verify", str(sfb), "--protocol", "xmpp"]) == 3
    assert "protocol: unknown xmpp" in capsys.readouterr().err


def test_lost_sip_bytes_only_blind_a_rule_that_judges_sip(tmp_path: Path, bearer: Path) -> None:
    """A SIP connection with a hole is a blind spot for SIP, not for HTTP."""
    from scapy.utils import rdpcap, wrpcap

    token = signed(actor_claims(nbf=int(kit.T0) - 60, exp=int(kit.T0) + 3600), key="sfb")
    msgs = kit.bearer_register(token) + kit.digest_register()
    whole = kit.tcp_capture(tmp_path / "whole.pcap", msgs, segment=300, t0=kit.T0 + 600)
    frames = list(rdpcap(whole))
    sizes = [len(bytes(f["TCP"].payload)) for f in frames]
    hole = max(i for i, f in enumerate(frames) if sizes[i] and f["IP"].src == kit.CLIENT) - 1
    wrpcap(str(tmp_path / "hole.pcap"), frames[:hole] + frames[hole + 1 :])
    result = analyze_paths([str(tmp_path / "hole.pcap")])
    (lost,) = result.not_inspected
    assert (lost.kind, lost.protocol, lost.server_port) == ("request-lost", "sip", 5060)
    paths = [HEALTHY, bearer, tmp_path / "hole.pcap"]
    assert judge(paths).result == PASS  # HTTP: the SIP hole is not its blind spot
    sip = judge([bearer, tmp_path / "hole.pcap"], protocol="sip")
    assert sip.result == INCONCLUSIVE and sip.coverage.not_inspected == [lost]


# -- every credential a SIP request presents (RFC 3261 20.7: one Authorization per realm) -----
def token() -> str:
    return signed(actor_claims(nbf=int(kit.T0) - 60, exp=int(kit.T0) + 3600), key="sfb")


def ntlm_leg() -> str:
    return kit.leg("NTLM", kit.b64(kit.ntlm_blobs()[2]), "4A5B6C7D")


def registered(tmp_path: Path, headers: list[str], *, tcp: bool = False) -> Path:
    """A capture of one REGISTER sending ``headers`` and its 200."""
    reg = kit.Dialog("two-auth-0001")
    msgs = [(0, reg.request(headers)), (1, reg.response(200, "OK"))]
    path = tmp_path / "reg.pcap"
    return Path(kit.tcp_capture(path, msgs) if tcp else kit.udp_capture(path, msgs))


@pytest.mark.parametrize(
    ("headers", "scheme", "others"),
    [
        pytest.param(lambda: [f"Authorization: Bearer {token()}", ntlm_leg()], "ntlm", ["bearer"],
                     id="bearer-then-ntlm"),
        pytest.param(lambda: [f"Authorization: Bearer {token()}", kit.DIGEST_AUTH], "digest",
                     ["bearer"], id="bearer-then-digest"),
        pytest.param(lambda: ["Authorization: Bearer", ntlm_leg()], "ntlm", ["bearer"],
                     id="empty-bearer-then-ntlm"),
        pytest.param(lambda: ["Authorization:", ntlm_leg()], "ntlm", [], id="empty-then-ntlm"),
        pytest.param(
            lambda: [f"Authorization: Bearer {token()}", "Proxy-" + ntlm_leg()], "ntlm",
            ["bearer"], id="bearer-plus-proxy-ntlm",
        ),
        pytest.param(lambda: [kit.DIGEST_AUTH, f"Authorization: Bearer {token()}"], "digest",
                     ["bearer"], id="digest-then-bearer"),
    ],
)  # fmt: skip
def test_a_credential_beside_the_token_is_not_oauth_whatever_the_order(
    tmp_path: Path, headers, scheme: str, others: list[str]
) -> None:
    """Every Authorization and Proxy-Authorization value is read, as in HTTP: the event is the
    credential that is not a token, the token is listed beside it, and verify fails it."""
    path = registered(tmp_path, headers())
    (event,) = analyze_paths([str(path)]).events
    assert event.scheme == scheme
    assert [named.split()[0] for named in event.also_presented] == others
    assert judge([path], protocol="sip").result == FAIL


def test_every_authorization_header_is_read_over_tcp_too(tmp_path: Path) -> None:
    path = registered(tmp_path, [f"Authorization: Bearer {token()}", ntlm_leg()], tcp=True)
    (event,) = analyze_paths([str(path)]).events
    assert (event.scheme, event.mechanism, event.user) == ("ntlm", "ntlm", "alice")
    assert event.other_tokens == (token(),)  # decoded into the token table all the same
    assert judge([path], protocol="sip").result == FAIL


def test_the_same_token_sent_twice_is_still_oauth(tmp_path: Path) -> None:
    value = f"Authorization: Bearer {token()}"
    path = registered(tmp_path, [value, value, "Proxy-" + value])
    (event,) = analyze_paths([str(path)]).events
    assert (event.scheme, event.also_presented) == ("bearer", ())
    assert judge([path], protocol="sip").result == PASS


# -- --path and SIP: a SIP request has no path ------------------------------------------------
def test_a_path_narrows_http_and_leaves_every_sip_exchange_judged(sfb: Path) -> None:
    """``--path /EWS/`` with ``--protocol http,sip``: SIP's Request-URI (``sip:contoso.com``)
    is no path, so ruling SIP out by it would drop every SIP sign-in in silence - a PASS."""
    ews = judge([HEALTHY], path="/EWS/")
    both = judge([HEALTHY, sfb], protocol="http,sip", path="/EWS/")
    assert both.result == FAIL and both.in_scope == ews.in_scope + 5
    assert {v.event.protocol for v in both.violations} == {"sip"}
    assert judge([HEALTHY, sfb], protocol="http,sip", path="/nothing/").in_scope == 5
    (rule,) = rules_from_policy({"rule": [{"protocol": ["http", "sip"], "path": "/EWS/"}]})
    result = analyze_paths([str(HEALTHY), str(sfb)])
    policy = evaluate(rule, result.events, result.captures, result.not_inspected)
    assert (policy.result, policy.in_scope) == (FAIL, both.in_scope)


def test_a_path_in_a_rule_that_judges_sip_only_is_refused(
    sfb: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It would narrow nothing: say so rather than ignore it."""
    message = "path: a SIP request has no path, and this rule judges SIP only"
    with pytest.raises(PolicyError, match=message):
        make_rule(protocol="sip", path="/EWS/")
    with pytest.raises(PolicyError, match=f"rule 1: {message}"):
        rules_from_policy({"rule": [{"protocol": "sip", "path": "/EWS/"}]})
    assert main(["verify", str(sfb), "--protocol", "sip", "--path", "/EWS/"]) == 3
    assert capsys.readouterr().err.startswith(f"oauth-analyzer: error: {message}")
    assert main(["verify", str(sfb), "--protocol", "http,sip", "--path", "/EWS/"]) == 1
    assert make_rule(protocol="http/1.1", path="/EWS/").scope.paths == ("/ews/",)


def test_analyze_keeps_sip_exchanges_under_a_path(
    sfb: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The scope options mean the same in every command: --path narrows HTTP only."""
    assert main(["analyze", str(sfb), "--format", "jsonl", "--path", "/EWS/"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == len(analyze_paths([str(sfb)]).events) > 0


# -- --host and SIP: a SIP domain is no TLS server name --------------------------------------
def tls_to_the_pool(path: Path, server_ip: str = kit.SERVER) -> Path:
    """An undecrypted TLS connection to ``server_ip``:5061 named by the pool's FQDN (SNI), as
    a Skype for Business client's SIP connection is."""
    tls = kit.gen("tls")
    hello = tls.tls_client_hello(kit.FE)
    flight = tls.tls_server_flight("sip-5061", kit.client_certificate(f"CN={kit.FE}"))
    data = tls.tls_record(23, b"\x17" * 600)
    msgs = [(0, hello), (1, flight), (0, data), (1, data)]
    kit.tcp_capture(path, msgs, 5061, t0=kit.T0 + 5)
    if server_ip != kit.SERVER:
        from scapy.layers.inet import IP
        from scapy.utils import rdpcap, wrpcap

        frames = list(rdpcap(str(path)))
        for f in frames:
            for field in ("src", "dst"):
                if f[IP].getfieldval(field) == kit.SERVER:
                    f[IP].setfieldval(field, server_ip)
            del f[IP].chksum
        wrpcap(str(path), frames)
    return path


def test_a_sip_domain_covers_undecrypted_tls_to_the_servers_its_requests_reached(
    tmp_path: Path, bearer: Path
) -> None:
    """``--protocol sip --host contoso.com``: the REGISTER for sip:contoso.com went to
    10.20.0.5, so the TLS connection to 10.20.0.5:5061 (SNI fe01.contoso.com) may carry more
    of them: INCONCLUSIVE, not PASS; TLS to another address stays out."""
    pool = tls_to_the_pool(tmp_path / "pool.pcap")
    (spot,) = analyze_paths([str(pool)]).not_inspected
    assert (spot.kind, spot.host, spot.server_ip) == ("tls", kit.FE, kit.SERVER)
    outcome = judge([bearer, pool], protocol="sip", host="contoso.com")
    assert (outcome.result, outcome.in_scope) == (INCONCLUSIVE, 1)
    assert outcome.coverage.not_inspected == [spot]
    assert judge([bearer, pool], protocol="sip", host="contoso.com", partial=True).result == PASS
    assert judge([bearer, pool], protocol="sip", server="contoso.com").result == INCONCLUSIVE
    elsewhere = tls_to_the_pool(tmp_path / "elsewhere.pcap", "10.20.0.99")
    assert judge([bearer, elsewhere], protocol="sip", host="contoso.com").result == PASS
    # another SIP domain's requests reached no server: nothing of it was inspected
    other = judge([bearer, pool], protocol="sip", host="fabrikam.com")
    assert (other.result, other.in_scope, other.coverage.not_inspected) == (INCONCLUSIVE, 0, [])


def test_a_sip_domain_widens_no_http_host() -> None:
    """An HTTP --host is one virtual host: TLS named otherwise at its address stays out of it.
    Only SIP requests for the host make its addresses cover a blind spot named otherwise, and
    only under a rule that judges SIP; an exchange is matched by its own name all the same."""
    from dataclasses import replace

    from analyzer.analysis.scope import addresses_by_host, make_scope
    from analyzer.model import Event, NotInspected

    http = Event(1, 1.0, "10.1.0.20", 5000, "10.1.0.10", 443, "C1", "http/1.1", "GET",
                 "mail.contoso.com", "/EWS/", 200, scheme="bearer")  # fmt: skip
    sip = Event(2, 1.0, "10.1.0.20", 5001, "10.1.0.10", 5061, "C2", "sip", "REGISTER",
                "mail.contoso.com", "sip:mail.contoso.com", 200, scheme="bearer")  # fmt: skip
    spot = NotInspected("tls", "C3", 1.0, "10.1.0.20", 5002, "10.1.0.10", 443, host="other")
    scope = make_scope(host="mail.contoso.com")
    assert not scope.covers(spot, addresses_by_host([http]))
    assert scope.covers(spot, addresses_by_host([http, sip]))
    assert not scope.matches(replace(http, host="other"), addresses_by_host([http, sip]))
    # no Host header can stand for a SIP domain's addresses
    forged = replace(http, host="SIP mail.contoso.com")
    assert not scope.covers(spot, addresses_by_host([forged]))
    for protocol, covered in (("http", []), ("http,sip", [spot]), ("sip", [spot])):
        rule = make_rule(protocol=protocol, host="mail.contoso.com")
        assert evaluate(rule, [http, sip], [], [spot]).coverage.not_inspected == covered
