"""Handshake classification, word for word: the cases the bundled captures do not reach.

Each test writes the exchanges it needs as real packets (scapy, or ``sip_kit``'s datagrams) and
reads what a user reads: the events' ``handshake_id`` / ``auth_class`` / ``outcome``, the
``Handshake`` and ``PairVerdict`` records of ``analyze_paths``, the fields a stream hands out.
Every test works out its own analysis: a result shared between tests (a module fixture) is
computed inside whichever test runs first, and mutation testing would credit only that one.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from sip_kit import ALICE, DIGEST_AUTH, Dialog, many_udp_capture, ntlm_register, udp_frames
from token_kit import T0 as TOKEN_T0
from token_kit import generator, signed
from wire_kit import OK, T0, Exchange, connection, write_capture, write_packets

from analyzer.analysis.handshakes import group_handshakes
from analyzer.engine import AnalysisResult, Engine, analyze_paths
from analyzer.model import Event

DENIED = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"
FORBIDDEN = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"


def get(auth: str | None = None, host: str | None = "web.test", path: str = "/ews") -> bytes:
    """A GET (HTTP/1.1 with a Host, HTTP/1.0 without one when ``host`` is None)."""
    lines = [f"GET {path} HTTP/1.1" if host is not None else f"GET {path} HTTP/1.0"]
    if host is not None:
        lines.append(f"Host: {host}")
    if auth is not None:
        lines.append(f"Authorization: {auth}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def challenge(*offers: str) -> bytes:
    """A 401 offering ``offers`` (``WWW-Authenticate`` values)."""
    head = "HTTP/1.1 401 Unauthorized\r\n" + "".join(f"WWW-Authenticate: {o}\r\n" for o in offers)
    return (head + "Content-Length: 0\r\n\r\n").encode()


def basic(user: str, password: str = "pw") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def fp(text: str) -> str:
    """A token's fingerprint as the records show it: 12 hex of SHA-256 over its text."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def analysis(tmp_path: Path, *connections: list[Exchange]) -> AnalysisResult:
    """The analysis of one capture of ``connections`` (10.9.9.1 -> 10.9.9.2:80, a second
    apart)."""
    return analyze_paths([write_capture(tmp_path / "c.pcap", *connections)])


def fields(e: Event) -> tuple[int | None, str | None, str | None]:
    return e.handshake_id, e.auth_class, e.outcome


def token(sub: str) -> str:
    return signed({"iss": "https://sts.test/", "aud": "a", "sub": sub, "exp": TOKEN_T0 + 3600})


# -- classes ------------------------------------------------------------------------------------
def test_negotiate_with_an_unreadable_mechanism_is_class_other(tmp_path: Path) -> None:
    """A Negotiate blob that is neither Kerberos nor NTLM: mechanism ``unknown``, class
    ``other`` (not dropped as if no credential had been sent)."""
    result = analysis(tmp_path, [(get("Negotiate AAAA"), OK)])
    (event,) = result.events
    assert (event.scheme, event.mechanism, fields(event)) == (
        "negotiate",
        "unknown",
        (1, "other", "accepted"),
    )
    assert [(h.auth_class, h.outcome, h.event_ids) for h in result.handshakes] == [
        ("other", "accepted", (1,))
    ]
    (verdict,) = result.verdicts
    assert (verdict.verdict, verdict.classes, verdict.summary) == (
        "no-oauth",
        {"other": 1},
        "no OAuth: other (1 handshake)",
    )


def test_an_anonymous_401_without_a_challenge_still_opens_a_handshake(tmp_path: Path) -> None:
    result = analysis(tmp_path, [(get(), DENIED)])
    assert [(h.auth_class, h.outcome, h.reason) for h in result.handshakes] == [
        (
            "anonymous",
            "challenged",
            "anonymous request answered 401 offering no scheme; no credential followed",
        )
    ]
    assert [fields(e) for e in result.events] == [(1, "anonymous", "challenged")]


def test_an_anonymous_request_refused_403_is_a_rejected_step(tmp_path: Path) -> None:
    """403 is no challenge: the anonymous request that got it was refused, and the Basic
    credential that followed on the connection was accepted, in one handshake."""
    result = analysis(tmp_path, [(get(), FORBIDDEN), (get(basic("alice")), OK)])
    assert [fields(e) for e in result.events] == [
        (1, "basic", "rejected"),
        (1, "basic", "accepted"),
    ]
    assert [(h.auth_class, h.outcome, h.event_ids) for h in result.handshakes] == [
        ("basic", "accepted", (1, 2))
    ]


def test_a_token_request_before_a_bearer_call_is_no_handshake_step(tmp_path: Path) -> None:
    """A token-endpoint call on the connection is not a handshake step; the calls after it on
    the same connection still are."""
    form = b"grant_type=client_credentials&client_id=app&scope=api"
    post = (
        b"POST /oauth2/v2.0/token HTTP/1.1\r\nHost: web.test\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        + f"Content-Length: {len(form)}\r\n\r\n".encode()
        + form
    )
    issued = token("app")
    body = f'{{"token_type": "Bearer", "expires_in": 3599, "access_token": "{issued}"}}'.encode()
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    result = analysis(tmp_path, [(post, answer), (get(f"Bearer {issued}"), OK)])
    assert [(e.method, e.scheme, fields(e)) for e in result.events] == [
        ("POST", "none", (None, None, None)),
        ("GET", "bearer", (1, "oauth", "accepted")),
    ]
    assert [(h.auth_class, h.event_ids, h.token_fps) for h in result.handshakes] == [
        ("oauth", (2,), (fp(issued),))
    ]


# -- what a handshake record holds --------------------------------------------------------------
def test_a_handshake_lists_each_token_it_presented_once_in_order(tmp_path: Path) -> None:
    first, second = token("one"), token("two")
    result = analysis(
        tmp_path,
        [(get(f"Bearer {first}"), OK), (get(f"Bearer {first}"), OK), (get(f"Bearer {second}"), OK)],
        [(get(basic("alice")), OK)],
    )
    assert [(h.auth_class, h.event_ids, h.token_fps) for h in result.handshakes] == [
        ("oauth", (1, 2, 3), (fp(first), fp(second))),
        ("basic", (4,), ()),
    ]


def test_a_handshake_names_its_first_user_with_that_users_domain(tmp_path: Path) -> None:
    """Two Basic identities on one keep-alive connection: the handshake names the first, and
    the domain is the first identity's (it gave none), not the second's."""
    result = analysis(tmp_path, [(get(basic("alice")), OK), (get(basic("CONTOSO\\bob")), OK)])
    assert [(e.user, e.domain) for e in result.events] == [("alice", None), ("bob", "CONTOSO")]
    (handshake,) = result.handshakes
    assert (handshake.event_ids, handshake.user, handshake.domain) == ((1, 2), "alice", None)


def test_events_that_already_carry_token_fields_group_the_same(tmp_path: Path) -> None:
    """``group_handshakes`` on events as a result holds them (token fields set, no
    ``token_fields`` list): the same events and handshakes, token fingerprints read from the
    events; a ``token_fields`` list of the wrong length is refused."""
    tok = token("one")
    result = analysis(tmp_path, [(get(f"Bearer {tok}"), OK)], [(get(basic("alice")), OK)])
    assert result.handshakes[0].token_fps == (fp(tok),)
    assert group_handshakes(result.events) == (result.events, result.handshakes)
    with pytest.raises(ValueError, match=r"^token_fields must hold one dict per event$"):
        group_handshakes(result.events, [{}])


# -- multi-leg schemes ----------------------------------------------------------------------------
def ntlm_legs() -> tuple[str, str, str]:
    """NTLM NEGOTIATE, CHALLENGE and AUTHENTICATE, base64, computed by the capture generator."""
    from sip_kit import ntlm_blobs

    type1, type2, type3 = (base64.b64encode(m).decode() for m in ntlm_blobs())
    return type1, type2, type3


def test_a_new_ntlm_negotiate_message_restarts_the_handshake(tmp_path: Path) -> None:
    """The client answers the server's CHALLENGE with a new NEGOTIATE: the first handshake is
    left incomplete and the second one (NEGOTIATE, AUTHENTICATE) is accepted."""
    type1, type2, type3 = ntlm_legs()
    leg = challenge(f"NTLM {type2}")
    result = analysis(
        tmp_path,
        [(get(f"NTLM {type1}"), leg), (get(f"NTLM {type1}"), leg), (get(f"NTLM {type3}"), OK)],
    )
    assert [(h.auth_class, h.outcome, h.event_ids) for h in result.handshakes] == [
        ("ntlm", "incomplete", (1,)),
        ("ntlm", "accepted", (2, 3)),
    ]
    assert [fields(e) for e in result.events] == [
        (1, "ntlm", "incomplete"),
        (2, "ntlm", "challenged"),
        (2, "ntlm", "accepted"),
    ]


def test_a_kerberos_ticket_refused_then_another_accepted_are_two_handshakes(
    tmp_path: Path,
) -> None:
    """A 401 without a continuation token ends a Kerberos handshake: the next ticket on the
    connection starts another one."""
    gen = generator()
    tickets = [
        base64.b64encode(
            gen.spnego_init_krb5(gen.kerberos_ap_req("CONTOSO.COM", "HTTP", "web.test", label))
        ).decode()
        for label in ("first", "second")
    ]
    result = analysis(
        tmp_path,
        [
            (get(f"Negotiate {tickets[0]}"), challenge("Negotiate")),
            (get(f"Negotiate {tickets[1]}"), OK),
        ],
    )
    assert [(h.auth_class, h.outcome, h.event_ids, h.domain) for h in result.handshakes] == [
        ("kerberos", "rejected", (1,), "CONTOSO.COM"),
        ("kerberos", "accepted", (2,), "CONTOSO.COM"),
    ]


# -- pair verdicts --------------------------------------------------------------------------------
def test_a_mixed_pair_that_tried_oauth_on_every_connection_says_nothing_more(
    tmp_path: Path,
) -> None:
    result = analysis(tmp_path, [(get("Bearer abc.def.ghi"), OK), (get(basic("alice")), OK)])
    (verdict,) = result.verdicts
    assert (verdict.verdict, verdict.summary) == ("mixed", "mixed: basic (1 handshake), oauth (1)")


def test_a_pair_verdict_counts_times_and_signatures_of_its_own_handshakes(
    tmp_path: Path,
) -> None:
    first, second = token("one"), token("two")
    result = analysis(
        tmp_path,
        [(get(f"Bearer {first}"), OK)],
        [(get(f"Bearer {second}"), OK), (get(f"Bearer {second}"), OK)],
    )
    (verdict,) = result.verdicts
    one, two = result.handshakes
    assert (one.start_ts, one.end_ts, two.start_ts, two.end_ts) == (
        pytest.approx(T0 + 0.03),
        pytest.approx(T0 + 0.04),
        pytest.approx(T0 + 1.03),
        pytest.approx(T0 + 1.06),
    )
    assert (verdict.handshakes, verdict.exchanges, verdict.first_ts, verdict.last_ts) == (
        2,
        3,
        one.start_ts,
        two.end_ts,
    )
    assert verdict.signatures == {"unknown-key": 3}
    assert verdict.protocol == "http"


def test_a_handshake_that_names_another_host_counts_every_exchange_in_its_pair(
    tmp_path: Path,
) -> None:
    """Basic accepted for a.test, then for b.test on the same keep-alive connection: one
    handshake, in the pair of its first request's Host, which counts both exchanges; a filter
    that keeps only the second exchange keeps it in that pair (it used to leave the pair
    without exchanges: "challenged, but no credential was sent")."""
    from analyzer import analyze

    auth = basic("alice")
    path = write_capture(
        tmp_path / "hosts.pcap", [(get(auth, "a.test"), OK), (get(auth, "b.test", "/other"), OK)]
    )
    whole = analyze(path).result
    assert [(h.host, h.event_ids) for h in whole.handshakes] == [("a.test", (1, 2))]
    assert [(v.host, v.verdict, v.exchanges, v.classes) for v in whole.verdicts] == [
        ("a.test", "no-oauth", 2, {"basic": 2})
    ]
    narrowed = analyze(path).where(path="/other").result
    assert [e.event_id for e in narrowed.events] == [2]
    assert [(v.host, v.verdict, v.exchanges, v.summary) for v in narrowed.verdicts] == [
        ("a.test", "no-oauth", 1, "no OAuth: basic (1 handshake)")
    ]


def pairs(tmp_path: Path, *connections: tuple[str, str, bytes]) -> list[tuple]:
    """The pairs of a capture whose connections (client, server, request answered 200) open a
    second apart, in the order the verdicts list them."""
    packets = [
        connection([(request, OK)], 40001 + i, T0 + i, client=client, server=server)
        for i, (client, server, request) in enumerate(connections)
    ]
    result = analyze_paths([write_packets(tmp_path / "pairs.pcap", *packets)])
    return [(v.client_ip, v.server_ip, v.host) for v in result.verdicts]


def test_pairs_are_listed_by_client_then_server(tmp_path: Path) -> None:
    auth = get(basic("alice"))
    assert pairs(
        tmp_path,
        ("10.9.9.1", "10.9.9.3", auth),
        ("10.9.9.1", "10.9.9.2", auth),
        ("10.9.9.5", "10.9.9.2", auth),
    ) == [
        ("10.9.9.1", "10.9.9.2", "web.test"),
        ("10.9.9.1", "10.9.9.3", "web.test"),
        ("10.9.9.5", "10.9.9.2", "web.test"),
    ]


def test_pairs_of_one_server_are_listed_by_host_without_host_first(tmp_path: Path) -> None:
    auth = basic("alice")
    hosts = ["b.test", "a.test", "10.9.9.2", "", None]
    got = pairs(tmp_path, *(("10.9.9.1", "10.9.9.2", get(auth, host)) for host in hosts))
    assert [host for _, _, host in got] == [None, "", "10.9.9.2", "a.test", "b.test"]


def test_a_port_and_host_that_carried_http_and_sip_say_both(tmp_path: Path) -> None:
    """SIP over UDP to port 80 and HTTP to the same address, port and Host: one pair."""
    from sip_kit import CLIENT, SERVER

    http = connection([(get(basic("alice")), OK)], 40001, T0, client=CLIENT, server=SERVER)
    register = Dialog("both-0001", uri="sip:web.test")
    sip = [(0, register.request([DIGEST_AUTH])), (1, register.response(200, "OK"))]
    path = write_packets(tmp_path / "both.pcap", http, udp_frames(sip, port=80, t0=T0 + 5))
    result = analyze_paths([path])
    assert [(e.protocol, e.server_port, e.host) for e in result.events] == [
        ("http/1.1", 80, "web.test"),
        ("sip", 80, "web.test"),
    ]
    (verdict,) = result.verdicts
    assert (verdict.protocol, verdict.classes) == ("http+sip", {"basic": 1, "digest": 1})


# -- SIP ---------------------------------------------------------------------------------------
def sip_analysis(tmp_path: Path, messages: list[tuple[int, bytes]]) -> AnalysisResult:
    from sip_kit import udp_capture

    return analyze_paths([udp_capture(tmp_path / "sip.pcap", messages)])


def test_a_sip_credential_accepted_after_a_refused_one_extends_the_new_handshake(
    tmp_path: Path,
) -> None:
    """Digest refused, then accepted twice on one Call-ID: the refusal is a handshake of its
    own, the two accepted exchanges another one."""
    reg = Dialog("digest-0001")
    offer = 'WWW-Authenticate: Digest realm="contoso.com", nonce="5f3a9c", algorithm=MD5'
    messages = [
        (0, reg.request([DIGEST_AUTH])),
        (1, reg.response(401, "Unauthorized", [offer])),
        (0, reg.request([DIGEST_AUTH])),
        (1, reg.response(200, "OK")),
        (0, reg.request([DIGEST_AUTH])),
        (1, reg.response(200, "OK")),
    ]
    result = sip_analysis(tmp_path, messages)
    assert [(h.auth_class, h.outcome, h.event_ids) for h in result.handshakes] == [
        ("digest", "rejected", (1,)),
        ("digest", "accepted", (2, 3)),
    ]


def test_a_message_signed_in_an_association_joins_it_not_its_dialogs_challenge(
    tmp_path: Path,
) -> None:
    """After an NTLM sign-in, a SUBSCRIBE is challenged anonymously, then sent again signed in
    the association: the signed one belongs to the sign-in's handshake, and the challenge stays
    a handshake of its own."""
    from sip_kit import offer
    from sip_kit import signed as sign

    opaque = "4A5B6C7D"
    sub = Dialog("sub-0002", "SUBSCRIBE", ALICE)
    messages = [
        *ntlm_register(opaque, subscribe=False),
        (0, sub.request(["Event: presence"])),
        (1, sub.response(401, "Unauthorized", offer())),
        (0, sub.request([sign("NTLM", opaque, 2), "Event: presence"])),
        (1, sub.response(200, "OK")),
    ]
    result = sip_analysis(tmp_path, messages)
    assert [(h.auth_class, h.outcome, h.event_ids) for h in result.handshakes] == [
        ("ntlm", "accepted", (1, 2, 3, 5)),
        ("anonymous", "challenged", (4,)),
    ]


def test_a_stream_keeps_the_10000_most_recently_used_sip_dialogs(tmp_path: Path) -> None:
    """A stream holds the open SIP handshake of at most 10,000 associations or Call-IDs: the
    10,001st evicts the one used longest ago, whose next exchange opens a new handshake, while
    one used again meanwhile carries on. The closing summary groups the whole capture and is
    not capped."""
    dialogs: dict[int, Dialog] = {}
    messages: list[tuple[int, bytes]] = []
    for i in [*range(10_000), 0, 10_000, 0, 1]:
        dialog = dialogs.setdefault(i, Dialog(f"cap-{i:05d}"))
        messages += [
            (0, dialog.request(["Authorization: Basic YTpi"])),
            (1, dialog.response(200, "OK")),
        ]
    path = many_udp_capture(tmp_path / "dialogs.pcap", messages)
    seen: list[Event] = []
    engine = Engine(on_event=seen.append)
    with open(path, "rb") as fh:
        engine.read_stream(fh, "dialogs.pcap")
    result = engine.finish()
    assert len(seen) == 10_004
    assert [(e.call_id, fields(e)) for e in seen[9_999:]] == [
        ("cap-09999", (10_000, "basic", "accepted")),
        ("cap-00000", (1, "basic", "accepted")),  # 10,000 open: none evicted yet
        ("cap-10000", (10_001, "basic", "accepted")),  # evicts cap-00001, not cap-00000
        ("cap-00000", (1, "basic", "accepted")),
        ("cap-00001", (10_002, "basic", "accepted")),
    ]
    assert len(result.handshakes) == 10_001
    assert [h.event_ids for h in result.handshakes[:2]] == [
        (1, 10_001, 10_003),
        (2, 10_004),
    ]
