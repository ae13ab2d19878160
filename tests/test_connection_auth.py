"""Requests an earlier NTLM / Negotiate logon on their connection covered are authenticated
exchanges, and ``verify`` judges them: a logon on ``/autodiscover/`` followed by header-less
``/EWS/`` calls on the same connection is NTLM at EWS, not an empty scope that PASSes. A
connection the capture joined mid-way that served requests without a credential is a blind spot
(its logon was not seen). Real bytes: HTTP/1.1 captures written with scapy, with NTLM and
Kerberos messages computed by the capture generator.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import token_kit
from token_kit import generated
from wire_kit import CLIENT, SERVER, T0, conversation, write_packets

from analyzer import analyze
from analyzer.auth.connection_auth import MAX_PATHS, ConnectionAuth
from analyzer.auth.extract import build_event
from analyzer.cli import main
from analyzer.engine import Engine
from analyzer.model import Event
from analyzer.protocols.http1 import parse_head
from analyzer.protocols.http_exchange import Exchange

pytest.importorskip("scapy.all")

SFB_CERT = str(token_kit.KEYS_DIR / "sfb.cert.pem")
STRICT = token_kit.strict_rule(CLIENT)
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
EWS = "/EWS/Exchange.asmx"
AUTODISCOVER = "/autodiscover/autodiscover.svc"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def ntlm_blobs() -> tuple[bytes, bytes, bytes]:
    """NTLM NEGOTIATE, CHALLENGE and AUTHENTICATE (CONTOSO\\svc-sfb), computed."""
    ntlm = generated("ntlm")
    type1 = ntlm.ntlm_negotiate()
    info = ntlm.ntlm_target_info(int(T0), computer="EX01", dns_computer="ex01.contoso.com")
    type2 = ntlm.ntlm_challenge(b"\x11\x22\x33\x44\x55\x66\x77\x88", info)
    auth = ntlm.NtlmAuth(
        domain="CONTOSO",
        user="svc-sfb",
        password="Passw0rd!",
        workstation="SFB01",
        spn="HTTP/mail.contoso.com",
        client_challenge=b"\x0a" * 8,
        exported_session_key=b"\x0b" * 16,
    )
    return type1, type2, ntlm.ntlm_authenticate(auth, type1, type2)


def request(path: str, *lines: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: mail.contoso.com", *lines, "Content-Length: 0"]
    return ("\r\n".join([*head, "", ""])).encode()


def answer(status: int = 200, *lines: str) -> bytes:
    reason = {
        200: "OK",
        304: "Not Modified",
        401: "Unauthorized",
        407: "Proxy Authentication Required",
    }[status]
    head = [f"HTTP/1.1 {status} {reason}", *lines, "Content-Length: 0"]
    return ("\r\n".join([*head, "", ""])).encode()


def ntlm_logon(path: str = AUTODISCOVER, accepted: bool = True) -> list[tuple[bool, bytes]]:
    """The three legs of an NTLM logon at ``path``; the last answered 200, or 401 (refused)."""
    type1, type2, type3 = ntlm_blobs()
    last = answer(200) if accepted else answer(401, "WWW-Authenticate: NTLM")
    return [
        (True, request(path, f"Authorization: NTLM {b64(type1)}")),
        (False, answer(401, f"WWW-Authenticate: NTLM {b64(type2)}")),
        (True, request(path, f"Authorization: NTLM {b64(type3)}")),
        (False, last),
    ]


def calls(path: str = EWS, n: int = 2, status: int = 200) -> list[tuple[bool, bytes]]:
    """``n`` header-less requests to ``path``, each answered ``status``."""
    out: list[tuple[bool, bytes]] = []
    for _ in range(n):
        out += [(True, request(path)), (False, answer(status))]
    return out


def oauth_call() -> list[tuple[bool, bytes]]:
    return [(True, request(EWS, f"Authorization: Bearer {token_kit.sfb_token()}")), (False, OK)]


def write(tmp_path: Path, *connections: tuple[list, bool]) -> str:
    """A capture of a good OAuth call, then each (segments, SYN seen) connection."""
    packets = [conversation(oauth_call(), 40001, T0)]
    for i, (segments, syn) in enumerate(connections):
        packets.append(conversation(segments, 40002 + i, T0 + 1 + i, syn=syn))
    return write_packets(tmp_path / "c.pcap", *packets)


def verify(capsys: pytest.CaptureFixture[str], path: str, *extra: str) -> tuple[int, dict]:
    code = main(["verify", path, *STRICT, *extra, "--json"])
    return code, json.loads(capsys.readouterr().out)


def events_of(path: str) -> list[Event]:
    return analyze(path, keys=[SFB_CERT]).result.events


# -- a logon covers the connection's later requests ----------------------------------------------
def test_header_less_calls_after_an_ntlm_logon_are_ntlm_events(tmp_path: Path) -> None:
    path = write(tmp_path, (ntlm_logon() + calls(), True))
    events = events_of(path)
    covered = [e for e in events if e.auth_header == "connection"]
    assert [(e.uri, e.status) for e in covered] == [(EWS, 200), (EWS, 200)]
    for e in covered:
        assert (e.scheme, e.scheme_name, e.user, e.domain, e.workstation) == (
            "ntlm", "NTLM", "svc-sfb", "CONTOSO", "SFB01",
        )  # fmt: skip
        assert e.reasons == ("connection-auth",)
        assert (e.cred_fp, e.cred_len, e.ntlm_type, e.credential) == (None, None, None, None)
        assert (e.auth_class, e.outcome) == ("ntlm", "accepted")
    logon = [e for e in events if e.uri == AUTODISCOVER]
    # the calls extend the logon's handshake, as keep-alive calls of a class do
    assert {e.handshake_id for e in logon + covered} == {logon[0].handshake_id}


def test_verify_fails_the_calls_the_logon_covered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, (ntlm_logon() + calls(), True))
    code, data = verify(capsys, path)
    rule = data["rules"][0]
    assert (code, data["result"], rule["in_scope"], rule["compliant"]) == (1, "FAIL", 3, 1)
    (group,) = rule["violation_groups"]
    assert (group["kind"], group["count"]) == ("not-oauth", 2)
    assert group["reasons"] == [
        "not OAuth: ntlm as CONTOSO\\svc-sfb (no credential sent: the connection's earlier ntlm "
        "logon covered it)"
    ]


def test_a_kerberos_logon_covers_the_connection_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kerberos = generated("kerberos")
    ticket = kerberos.kerberos_ap_req("CONTOSO.COM", "HTTP", "mail.contoso.com", "conn-ticket")
    offer = b64(kerberos.spnego_init_krb5(ticket))
    accept = b64(kerberos.spnego_resp_krb5("mutual"))
    logon = [
        (True, request(AUTODISCOVER, f"Authorization: Negotiate {offer}")),
        (False, answer(200, f"WWW-Authenticate: Negotiate {accept}")),
    ]
    path = write(tmp_path, (logon + calls(n=1), True))
    (covered,) = [e for e in events_of(path) if e.auth_header == "connection"]
    assert (covered.scheme, covered.mechanism, covered.auth_class) == (
        "negotiate", "kerberos", "kerberos",
    )  # fmt: skip
    code, data = verify(capsys, path)
    assert (code, data["rules"][0]["violation_groups"][0]["count"]) == (1, 1)


def test_a_refused_logon_covers_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the header-less calls after a refused logon were served anonymously: not judged
    path = write(tmp_path, (ntlm_logon(accepted=False) + calls(), True))
    assert [e for e in events_of(path) if e.auth_header == "connection"] == []
    code, data = verify(capsys, path)
    assert (code, data["result"], data["rules"][0]["in_scope"]) == (0, "PASS", 1)


def test_a_call_refused_on_a_logged_on_connection_is_a_challenge_not_covered(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, (ntlm_logon() + calls(status=401, n=1) + calls(n=1), True))
    ews = [e for e in events_of(path) if e.uri == EWS and e.client_port == 40002]
    assert [(e.status, e.scheme, e.auth_header) for e in ews] == [
        (401, "none", None),
        (200, "ntlm", "connection"),
    ]


@pytest.mark.parametrize("status", [401, 407])
def test_a_logon_refused_later_on_the_connection_ends_its_cover(
    tmp_path: Path, status: int
) -> None:
    # the connection's logon is gone once a new one is refused (by the server, or by a proxy
    # on the way): the header-less call after it was served to no one known
    type3 = ntlm_blobs()[2]
    challenge = "WWW-Authenticate: NTLM" if status == 401 else "Proxy-Authenticate: NTLM"
    relogon = [
        (True, request(EWS, f"Authorization: NTLM {b64(type3)}")),
        (False, answer(status, challenge)),
    ]
    path = write(tmp_path, (ntlm_logon() + calls(n=1) + relogon + calls(n=1), True))
    ews = [e for e in events_of(path) if e.uri == EWS and e.client_port == 40002]
    assert [(e.status, e.scheme, e.auth_header) for e in ews] == [
        (200, "ntlm", "connection"),
        (status, "ntlm", "authorization"),
    ]


def test_a_logon_on_another_connection_covers_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, (ntlm_logon(), True), (calls(), True))
    assert [e for e in events_of(path) if e.auth_header == "connection"] == []


def test_proxy_authorization_does_not_log_on_to_the_server(tmp_path: Path) -> None:
    type1, type2, type3 = ntlm_blobs()
    legs = [
        (True, request(AUTODISCOVER, f"Proxy-Authorization: NTLM {b64(type1)}")),
        (False, answer(401, f"WWW-Authenticate: NTLM {b64(type2)}")),
        (True, request(AUTODISCOVER, f"Proxy-Authorization: NTLM {b64(type3)}")),
        (False, answer(200)),
    ]
    path = write(tmp_path, (legs + calls(), True))
    assert [e for e in events_of(path) if e.auth_header == "connection"] == []


# -- a connection joined mid-way ---------------------------------------------------------------
def test_calls_on_a_connection_begun_before_the_capture_are_a_blind_spot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a 304 (a cached copy the connection's user may read) is served as much as a 200
    path = write(tmp_path, (calls(n=2) + calls(status=304, n=1), False))
    code, data = verify(capsys, path)
    rule = data["rules"][0]
    assert (code, data["result"], rule["in_scope"]) == (2, "INCONCLUSIVE", 1)
    (spot,) = rule["coverage"]["not_inspected"]
    assert (spot["kind"], spot["client"], spot["count"], spot["paths"], spot["host"]) == (
        "connection-auth-unseen", f"{CLIENT}:40002", 3, [EWS], "mail.contoso.com",
    )  # fmt: skip
    assert rule["coverage"]["blind_spots"] == [
        f"3 requests to mail.contoso.com:80 ({SERVER}) sent without a credential and not "
        "refused on 1 connection whose NTLM / Negotiate logon was not seen (begun before the "
        "capture, its answer not captured, or an archive that does not name connections): see "
        "the not-inspected details"
    ]
    code, data = verify(capsys, path, "--partial")
    assert (code, data["result"]) == (0, "PASS")


def test_a_path_scope_leaves_out_a_blind_spot_on_other_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, (calls("/owa/auth/logon.aspx", n=2), False))
    code, data = verify(capsys, path)
    assert (code, data["result"], data["rules"][0]["coverage"]["not_inspected"]) == (0, "PASS", [])


def test_a_blind_spot_with_too_many_paths_covers_every_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    many = [seg for i in range(MAX_PATHS + 3) for seg in calls(f"/owa/{i}.css", n=1)]
    for n in (MAX_PATHS + 1, MAX_PATHS + 3):  # paths past the bound do not come back
        path = write(tmp_path, (many[: 2 * n], False))
        code, data = verify(capsys, path)
        (spot,) = data["rules"][0]["coverage"]["not_inspected"]
        assert (code, spot["count"], spot["paths"]) == (2, n, [])
    fewer = write(tmp_path, (many[: 2 * MAX_PATHS], False))
    code, data = verify(capsys, fewer)
    assert (code, data["rules"][0]["coverage"]["not_inspected"]) == (0, [])


def test_mid_way_calls_that_were_refused_or_sent_a_token_are_no_blind_spot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    segments = calls(status=401, n=1) + oauth_call() * 2
    path = write(tmp_path, (segments, False))
    code, data = verify(capsys, path)
    assert (code, data["result"], data["rules"][0]["in_scope"]) == (0, "PASS", 3)


def test_a_logon_seen_mid_way_covers_the_calls_after_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, (ntlm_logon(EWS) + calls(), False))
    assert len([e for e in events_of(path) if e.auth_header == "connection"]) == 2
    code, data = verify(capsys, path)
    assert (code, data["rules"][0]["coverage"]["not_inspected"]) == (1, [])


# -- what is and is not tracked ------------------------------------------------------------------
def exchange(raw: bytes, status: int, **kw: object) -> Exchange:
    req = parse_head(raw, 1.0)
    resp = parse_head(answer(status), 1.1)
    assert req is not None and resp is not None
    return Exchange("C1", CLIENT, 40002, SERVER, 80, req, resp, **kw)  # type: ignore[arg-type]


def judged(auth: ConnectionAuth, x: Exchange) -> Event | None:
    return auth.event(x, build_event(x, 1), 1)


def test_only_real_http1_connections_carry_a_logon() -> None:
    type3 = ntlm_blobs()[2]
    logon = request(AUTODISCOVER, f"Authorization: NTLM {b64(type3)}")
    auth = ConnectionAuth()  # HTTP/2 forbids connection-bound logons
    assert judged(auth, exchange(logon, 200, stream_id=1)) is not None
    assert judged(auth, exchange(request(EWS), 200, stream_id=1)) is None
    assert len(auth) == 0
    # an archive that does not name connections: a blind spot for the server, said at its end
    auth = ConnectionAuth()
    assert judged(auth, exchange(logon, 200, persistent=False)) is not None
    assert judged(auth, exchange(request(EWS), 200, persistent=False)) is None
    refused = judged(auth, exchange(request(EWS), 401, persistent=False))
    assert refused is not None and refused.auth_header is None  # a challenge, not unseen
    (spot,) = auth.flush()
    assert (spot.kind, spot.conn_id, spot.count, spot.paths) == (
        "connection-auth-unseen", "C1", 1, (EWS,),
    )  # fmt: skip
    assert "in an archive that does not say which connection" in spot.detail
    assert (auth.flush(), len(auth)) == ([], 0)
    auth = ConnectionAuth()  # an NTLM NEGOTIATE message answered without a challenge
    judged(
        auth, exchange(request(AUTODISCOVER, f"Authorization: NTLM {b64(ntlm_blobs()[0])}"), 200)
    )
    assert judged(auth, exchange(request(EWS), 200)) is None
    judged(auth, exchange(logon, 200))
    covered = judged(auth, exchange(request(EWS), 200))
    assert covered is not None and covered.auth_header == "connection"
    assert len(auth) == 1
    assert auth.closed("C1") is None and len(auth) == 0
    assert judged(auth, exchange(request(EWS), 200)) is None  # forgotten with its connection


def test_an_engine_forgets_every_connection_it_closed(tmp_path: Path) -> None:
    # logged on; begun before the capture; a logon whose answer was lost (whose calls were
    # not answered either: their answers are the same bytes)
    lost = ntlm_logon() + calls()
    path = write_packets(
        tmp_path / "c.pcap",
        conversation(ntlm_logon() + calls(), 40002, T0),
        conversation(calls(n=2), 40003, T0 + 1, syn=False),
        without(conversation(lost, 40004, T0 + 2), lost[3][1]),
    )
    engine = Engine()
    engine.read_file(path)
    assert len(engine.collector.connection_auth) == 0
    result = engine.finish()
    assert [(n.kind, n.client_port) for n in result.not_inspected] == [
        ("connection-auth-unseen", 40003),
        ("connection-auth-unseen", 40004),
    ]


def unanswered(raw: bytes) -> Exchange:
    """``raw`` on connection C1, its answer not captured."""
    req = parse_head(raw, 1.0)
    assert req is not None
    return Exchange("C1", CLIENT, 40002, SERVER, 80, req, None)


def test_what_a_connection_holds_and_its_blind_spot_says() -> None:
    logon = request(AUTODISCOVER, f"Authorization: NTLM {b64(ntlm_blobs()[2])}")
    auth = ConnectionAuth()
    # begun before the capture: one request, one path
    assert judged(auth, exchange(request(EWS), 200, midstream=True)) is None
    assert len(auth) == 1
    spot = auth.closed("C1")
    assert spot is not None and (spot.conn_id, spot.count, spot.paths) == ("C1", 1, (EWS,))
    assert spot.detail == (
        "1 request sent without a credential and not refused on a connection begun before the "
        "capture: an NTLM / Negotiate logon may have authenticated them"
    )
    assert len(auth) == 0
    # a logon whose answer was lost, then two calls
    assert judged(auth, unanswered(logon)) is not None
    assert len(auth) == 1
    judged(auth, exchange(request(EWS), 200))
    judged(auth, exchange(request(AUTODISCOVER), 200))
    assert len(auth) == 2
    spot = auth.closed("C1")
    assert spot is not None and (spot.conn_id, spot.count, spot.paths) == (
        "C1", 2, (EWS, AUTODISCOVER),
    )  # fmt: skip
    assert spot.detail == (
        "2 requests sent without a credential and not refused after a logon on their connection "
        "whose answer was not captured: an NTLM / Negotiate logon may have authenticated them"
    )
    # closed with nothing unseen: forgotten all the same
    judged(auth, unanswered(logon))
    assert (len(auth), auth.closed("C1"), len(auth)) == (1, None, 0)
    # a new logon refused after it: the connection is known to be logged on as no one
    judged(auth, unanswered(logon))
    judged(auth, exchange(logon, 401))
    assert len(auth) == 0
    assert judged(auth, exchange(request(EWS), 200)) is None
    assert auth.closed("C1") is None
    # a new logon accepted after it: bound, no longer in doubt
    judged(auth, unanswered(logon))
    judged(auth, exchange(logon, 200))
    assert len(auth) == 1
    covered = judged(auth, exchange(request(EWS), 200))
    assert covered is not None and covered.auth_header == "connection"
    assert (auth.closed("C1"), len(auth)) == (None, 0)


@pytest.mark.parametrize("status", [401, 407])
def test_a_refused_logon_in_an_archive_is_no_blind_spot(status: int) -> None:
    # an archive that does not name connections: a logon refused (by the server, or by a
    # proxy) reached no one, so the header-less calls to that server were served anonymously
    logon = request(AUTODISCOVER, f"Authorization: NTLM {b64(ntlm_blobs()[2])}")
    auth = ConnectionAuth()
    refused = judged(auth, exchange(logon, status, persistent=False))
    assert refused is not None and refused.status == status
    assert judged(auth, exchange(request(EWS), 200, persistent=False)) is None
    assert (auth.flush(), len(auth)) == ([], 0)


# -- a logon whose outcome was not seen -----------------------------------------------------------
def without(packets: list, payload: bytes) -> list:
    """``packets`` less the one carrying ``payload`` (its bytes never reached the capture)."""
    import scapy.all as scapy

    return [p for p in packets if not (scapy.Raw in p and bytes(p[scapy.Raw]) == payload)]


def test_calls_after_a_logon_whose_answer_was_lost_are_a_blind_spot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    segments = ntlm_logon() + calls()
    packets = without(conversation(segments, 40002, T0 + 1), segments[3][1])  # the logon's 200
    path = write_packets(tmp_path / "c.pcap", conversation(oauth_call(), 40001, T0), packets)
    code, data = verify(capsys, path)
    spots = data["rules"][0]["coverage"]["not_inspected"]
    assert code == 2
    assert [(n["kind"], n["count"], n["paths"]) for n in spots] == [
        ("connection-auth-unseen", 2, [EWS])
    ]
    # the blind spot names the logon's connection
    (conn_id,) = {e.conn_id for e in events_of(path) if e.uri == AUTODISCOVER}
    assert spots[0]["conn_id"] == conn_id


def test_a_capture_of_the_client_side_only_is_a_blind_spot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import scapy.all as scapy

    one_way = [
        p for p in conversation(ntlm_logon() + calls(), 40002, T0 + 1) if p[scapy.IP].src == CLIENT
    ]
    path = write_packets(tmp_path / "c.pcap", conversation(oauth_call(), 40001, T0), one_way)
    code, data = verify(capsys, path)
    kinds = [n["kind"] for n in data["rules"][0]["coverage"]["not_inspected"]]
    assert (code, kinds) == (2, ["connection-auth-unseen"])


@pytest.mark.parametrize("status", [500, 404])
def test_mid_way_calls_answered_with_errors_are_a_blind_spot_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], status: int
) -> None:
    answer_ = f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode()
    path = write(tmp_path, ([(True, request(EWS)), (False, answer_)], False))
    code, data = verify(capsys, path)
    assert (code, data["rules"][0]["coverage"]["not_inspected"][0]["count"]) == (2, 1)


def test_an_empty_bearer_on_a_logged_on_connection_is_the_logon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the realm-discovery probe sends no credential: answered 200, the logon served it
    probe = [(True, request(EWS, "Authorization: Bearer")), (False, answer(200))]
    path = write(tmp_path, (ntlm_logon() + probe, True))
    (covered,) = [e for e in events_of(path) if e.auth_header == "connection"]
    assert (covered.scheme, covered.user, covered.status) == ("ntlm", "svc-sfb", 200)
    assert covered.reasons == ("credential", "connection-auth")
    assert verify(capsys, path)[0] == 1
    midway = write(tmp_path, (probe, False))
    code, data = verify(capsys, midway)
    assert (code, data["rules"][0]["coverage"]["not_inspected"][0]["kind"]) == (
        2,
        "connection-auth-unseen",
    )


def test_a_har_without_connection_ids_is_a_blind_spot_after_a_logon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from archive_kit import har, har_entry

    type1, type2, type3 = ntlm_blobs()
    url = "http://mail.contoso.com"
    entries = [
        har_entry(f"{url}{AUTODISCOVER}", "2026-03-02T09:00:01.000Z",
                  [("Authorization", f"NTLM {b64(type1)}")], 401,
                  [("WWW-Authenticate", f"NTLM {b64(type2)}")], method="POST"),
        har_entry(f"{url}{AUTODISCOVER}", "2026-03-02T09:00:01.100Z",
                  [("Authorization", f"NTLM {b64(type3)}")], 200, method="POST"),
        har_entry(f"{url}{EWS}", "2026-03-02T09:00:01.200Z", [], 200, method="POST"),
        har_entry(f"{url}{EWS}", "2026-03-02T09:00:01.300Z",
                  [("Authorization", f"Bearer {token_kit.sfb_token()}")], 200, method="POST"),
    ]  # fmt: skip
    for entry in entries:
        del entry["connection"]
    path = tmp_path / "a.har"
    path.write_bytes(har(entries))
    code, data = verify(capsys, str(path))
    spots = data["rules"][0]["coverage"]["not_inspected"]
    assert code == 2
    assert [(n["kind"], n["count"], n["paths"]) for n in spots] == [
        ("connection-auth-unseen", 1, [EWS])
    ]
    (conn_id,) = {e.conn_id for e in analyze(str(path)).result.events if e.uri == AUTODISCOVER}
    assert spots[0]["conn_id"] == conn_id  # the server's entries, as the archive groups them
    for entry in entries:  # with connection ids, the same call is the logon's: FAIL
        entry["connection"] = "77"
    path.write_bytes(har(entries))
    assert verify(capsys, str(path))[0] == 1


def test_a_forged_answer_to_the_logon_is_an_answer_in_doubt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a "401" with the real "200"'s sequence number, seen first: read as a refused logon, the
    # calls after it would be anonymous - but the client may have read the 200
    import scapy.all as scapy

    segments = ntlm_logon() + calls()
    packets = conversation(segments, 40002, T0 + 1)
    real = next(
        i for i, p in enumerate(packets) if scapy.Raw in p and p[scapy.Raw].load == segments[3][1]
    )
    forged = packets[real].copy()
    forged[scapy.Raw].load = segments[3][1].replace(b"200 OK", b"401 NO")
    packets.insert(real, forged)
    path = write_packets(tmp_path / "c.pcap", conversation(oauth_call(), 40001, T0), packets)
    code, data = verify(capsys, path)
    spots = data["rules"][0]["coverage"]["not_inspected"]
    assert code == 2
    assert [(n["kind"], n["client"], n["count"]) for n in spots] == [
        ("answer-in-doubt", f"{CLIENT}:40002", 1)
    ]


def test_the_table_of_schemes_sent_counts_covered_calls_as_sending_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """They sent no credential: the "per scheme sent" table says so (their scheme, ntlm, is
    the logon's and shows in the events table as ntlm(connection))."""
    path = write(tmp_path, (ntlm_logon() + calls(), True))
    assert main(["analyze", path, "--keys", SFB_CERT]) == 0
    text = capsys.readouterr().out
    table = text[text.index("per scheme sent") :].split("\n\n")[0].splitlines()
    header, rows = table[1].split(), [line.split() for line in table[2:] if line.strip()]
    (row,) = rows
    counts = dict(zip(header[3:], row[3:], strict=True))
    # the OAuth call, the logon's two legs, the two calls it covered
    assert counts == {"events": "5", "bearer": "1", "ntlm": "2", "none": "2"}, table
