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
