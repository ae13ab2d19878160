"""SIP in captures: Skype for Business sign-ins over UDP, TCP and decrypted TLS, read end to end.

Captures are generated here (``sip_kit``: NTLM, Kerberos and TLS-DSK legs as MS-SIPAE carries
them, and Digest) and checked against what was sent and against tshark's reading of the same
file; the public ``ndpi__sip.pcap`` (a softphone's Digest REGISTERs and INVITEs over UDP) against
the ground truth tshark recorded for it in ``expected.json``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import sip_kit as kit
from shared_dir import needs_public, public_expected, require_public
from test_tls import Flow, memory_tls

from analyzer.auth.schemes import fingerprint
from analyzer.cli import main
from analyzer.engine import Engine, analyze_paths
from analyzer.model import Event, to_dict
from analyzer.report.html import render_html

NDPI = "ndpi__sip.pcap"
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")


def sfb_messages() -> list[kit.Message]:
    return kit.ntlm_register() + kit.kerberos_register() + kit.tls_dsk_register()


def everything() -> list[kit.Message]:
    return sfb_messages() + kit.digest_register()


def summary(events: list[Event]) -> list[tuple]:
    """What a capture's events say, whatever carried them."""
    return [
        (e.method, e.status, e.scheme, e.mechanism, e.user, e.domain, e.cred_fp, e.handshake_id)
        for e in events
    ]


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sip")
    msgs = everything()
    return {
        "udp": Path(kit.udp_capture(root / "udp.pcap", msgs)),
        "tcp-split": Path(kit.tcp_capture(root / "split.pcap", msgs, segment=200)),
        "tcp-coalesced": Path(kit.tcp_capture(root / "coalesced.pcap", msgs, coalesce=True)),
        "tcp-5070": Path(kit.tcp_capture(root / "5070.pcap", msgs, port=5070)),
    }


@pytest.fixture(scope="module")
def udp(captures: dict[str, Path]):
    return analyze_paths([str(captures["udp"])])


# -- what the events say ---------------------------------------------------------------------
def test_every_exchange_with_auth_material_is_an_event(udp) -> None:
    assert [(e.method, e.status, e.scheme, e.scheme_name) for e in udp.events] == [
        ("REGISTER", 401, "none", None),
        ("REGISTER", 401, "ntlm", "NTLM"),
        ("REGISTER", 200, "ntlm", "NTLM"),
        ("SUBSCRIBE", 200, "ntlm", "NTLM"),
        ("SERVICE", 200, "ntlm", "NTLM"),
        ("REGISTER", 401, "none", None),
        ("REGISTER", 401, "other", "Kerberos"),
        ("REGISTER", 200, "other", "Kerberos"),
        ("REGISTER", 401, "none", None),
        ("REGISTER", 401, "other", "TLS-DSK"),
        ("REGISTER", 401, "other", "TLS-DSK"),
        ("REGISTER", 200, "other", "TLS-DSK"),
        ("REGISTER", 401, "none", None),
        ("REGISTER", 200, "digest", "Digest"),
    ]
    first = udp.events[0]
    assert (first.protocol, first.transport, first.host, first.uri) == (
        "sip",
        "udp",
        "contoso.com",
        "sip:contoso.com",
    )
    assert (first.client_ip, first.client_port, first.server_ip, first.server_port) == (
        kit.CLIENT,
        5060,
        kit.SERVER,
        5060,
    )
    assert (first.call_id, first.cseq, first.sip_from, first.sip_to) == (
        "ntlm-reg-0001",
        "1 REGISTER",
        kit.ALICE,
        kit.ALICE,
    )
    assert first.user_agent.startswith("UCCAPI/16.0")
    assert [c.scheme for c in first.challenges] == ["ntlm", "kerberos", "tls-dsk"]
    assert first.challenges[2].params["sts-uri"].endswith("/CertProv/CertProvisioningService.svc")


def test_the_ntlm_legs_are_decoded_from_gssapi_data(udp) -> None:
    type1, type3, subscribe, service = udp.events[1:5]
    assert (type1.mechanism, type1.ntlm_type, type1.sip_opaque) == ("ntlm", 1, None)
    ntlm2 = type1.challenges[0]
    assert ntlm2.params["opaque"] == "4A5B6C7D"
    assert ntlm2.details["ntlm_type"] == 2
    assert ntlm2.details["target_info"]["DnsComputerName"] == kit.FE
    assert (type3.ntlm_type, type3.user, type3.domain, type3.workstation) == (
        3,
        "alice",
        "CONTOSO",
        "WS042",
    )
    assert (type3.ntlm_response, type3.sip_opaque, type3.sip_cnum) == ("NTLMv2", "4A5B6C7D", 1)
    assert [(e.sip_opaque, e.sip_cnum, e.ntlm_type) for e in (subscribe, service)] == [
        ("4A5B6C7D", 2, None),
        ("4A5B6C7D", 3, None),
    ]
    assert subscribe.call_id != type3.call_id  # another dialog, the same association


def test_kerberos_and_tls_dsk_legs_name_what_they_carry(udp) -> None:
    ap_req, krb_signed = udp.events[6:8]
    assert (ap_req.mechanism, ap_req.spn, ap_req.domain) == (
        "kerberos",
        f"sip/{kit.FE}",
        "CONTOSO.COM",
    )
    assert ap_req.challenges[0].details == {"mechanism": "kerberos", "kerberos": "AP-REP"}
    assert (krb_signed.mechanism, krb_signed.sip_cnum) == ("kerberos", 1)
    hello, certificate, finished = udp.events[9:12]
    assert {e.mechanism for e in (hello, certificate, finished)} == {"tls-dsk"}
    assert (hello.user, certificate.user) == (None, kit.ALICE)  # the client certificate's CN
    assert (hello.sip_opaque, certificate.sip_opaque) == (None, "77665544")


def test_secrets_stay_out_of_the_records(udp) -> None:
    rows = [to_dict(e) for e in udp.events]
    assert all("credential" not in row for row in rows)
    assert not any("TlRMTVNTUAAD" in str(row) for row in rows)  # the type 3 message itself
    assert udp.events[13].user == "bob" and udp.events[13].cred_len


# -- handshakes and verdicts -----------------------------------------------------------------
def test_each_sign_in_is_one_handshake_in_its_security_association(udp) -> None:
    assert [(h.auth_class, h.outcome, h.event_ids) for h in udp.handshakes] == [
        ("ntlm", "accepted", (1, 2, 3, 4, 5)),  # offer, legs, and the signed SUBSCRIBE / SERVICE
        ("kerberos", "accepted", (6, 7, 8)),
        ("tls-dsk", "accepted", (9, 10, 11, 12)),
        ("digest", "accepted", (13, 14)),
    ]
    ntlm = udp.handshakes[0]
    assert (ntlm.user, ntlm.domain, ntlm.offered) == (
        "alice",
        "CONTOSO",
        ("ntlm", "kerberos", "tls-dsk"),
    )
    assert [e.outcome for e in udp.events[:5]] == [
        "challenged",
        "challenged",
        "accepted",
        "accepted",
        "accepted",
    ]
    (verdict,) = udp.verdicts
    assert (verdict.protocol, verdict.verdict, verdict.host) == ("sip", "no-oauth", "contoso.com")
    assert verdict.handshake_classes == {"digest": 1, "kerberos": 1, "ntlm": 1, "tls-dsk": 1}
    assert verdict.classes == {"digest": 1, "kerberos": 1, "ntlm": 3, "tls-dsk": 1}


def test_an_association_spans_connections_and_a_new_one_starts_afresh(tmp_path: Path) -> None:
    """The signed SUBSCRIBE on a second connection still belongs to the association its
    REGISTER set up; a second sign-in (new opaque) is a handshake of its own."""
    reg = kit.ntlm_register(subscribe=False)
    later = kit.Dialog("ntlm-sub-0002", "SUBSCRIBE", kit.ALICE)
    sub = [
        (0, later.request([kit.signed("NTLM", "4A5B6C7D", 2)])),
        (1, later.response(200, "OK")),
    ]
    again = kit.ntlm_register(opaque="0BADF00D", subscribe=False)
    paths = [
        kit.tcp_capture(tmp_path / "1.pcap", reg),
        kit.udp_capture(tmp_path / "2.pcap", sub, t0=kit.T0 + 60),
        kit.udp_capture(tmp_path / "3.pcap", again, t0=kit.T0 + 120),
    ]
    result = analyze_paths(paths)
    assert [(h.auth_class, h.outcome, len(h.event_ids)) for h in result.handshakes] == [
        ("ntlm", "accepted", 4),
        ("ntlm", "accepted", 3),
    ]
    assert len({e.conn_id for e in result.events if e.handshake_id == 1}) == 2


def test_a_refused_sign_in_is_rejected(tmp_path: Path) -> None:
    reg = kit.Dialog("ntlm-bad-0001")
    type1, type2, type3 = kit.ntlm_blobs(password="wrong")
    msgs = [
        (0, reg.request([kit.leg("NTLM", kit.b64(type1))])),
        (1, reg.response(401, "Unauthorized", [kit.server_leg("NTLM", kit.b64(type2), "01")])),
        (0, reg.request([kit.leg("NTLM", kit.b64(type3), "01")])),
        (1, reg.response(403, "Forbidden", ['ms-diagnostics: 4001;reason="Bad password"'])),
    ]
    result = analyze_paths([kit.udp_capture(tmp_path / "bad.pcap", msgs)])
    assert [(h.auth_class, h.outcome) for h in result.handshakes] == [("ntlm", "rejected")]
    assert (result.events[-1].diag_code, result.events[-1].diag_reason) == (4001, "Bad password")


# -- the same sign-ins over TCP, and where SIP is looked for ----------------------------------
@pytest.mark.parametrize("name", ["tcp-split", "tcp-coalesced", "tcp-5070"])
def test_tcp_framing_finds_what_udp_finds(captures: dict[str, Path], udp, name: str) -> None:
    result = analyze_paths([str(captures[name])])
    assert summary(result.events) == summary(udp.events)
    assert {e.transport for e in result.events} == {"tcp"}
    assert len({e.conn_id for e in result.events}) == 1
    assert result.captures[0].tcp_connections == 1


def test_a_connection_caught_mid_stream_on_a_sip_port(tmp_path: Path) -> None:
    msgs = kit.digest_register()
    path = kit.tcp_capture(tmp_path / "mid.pcap", [(0, b"a body cut short\r\n"), *msgs], syn=False)
    result = analyze_paths([path])
    assert [(e.method, e.status, e.scheme) for e in result.events] == [
        ("REGISTER", 401, "none"),
        ("REGISTER", 200, "digest"),
    ]
    # what came before the first start line may have ended a head that carried a credential
    assert [(n.kind, n.protocol) for n in result.not_inspected] == [("request-lost", "sip")]


def test_http_and_tls_on_sip_ports_stay_what_they_are(tmp_path: Path) -> None:
    http = (
        b"GET /x HTTP/1.1\r\nHost: web\r\nAuthorization: Basic YTpi\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    )
    path = kit.tcp_capture(tmp_path / "http.pcap", [(0, http[0]), (1, http[1])], port=5060)
    (event,) = analyze_paths([path]).events
    assert (event.protocol, event.scheme, event.user) == ("http/1.1", "basic", "a")
    frames: list = []
    tls = Flow(frames, (kit.CLIENT, 50300), (kit.SERVER, 5061)).open()
    for side, data in memory_tls([(b"REGISTER", b"SIP/2.0 200 OK")]):
        tls.send(side, data)
    tls.close()
    from scapy.utils import wrpcap

    wrpcap(str(tmp_path / "tls.pcap"), frames)
    result = analyze_paths([str(tmp_path / "tls.pcap")])
    assert result.events == []
    assert [(t.server_port, t.inspected) for t in result.tls] == [(5061, False)]


def test_a_stream_groups_sip_as_the_file_analysis_does(captures: dict[str, Path], udp) -> None:
    streamed: list[Event] = []
    engine = Engine(on_event=streamed.append)
    with open(captures["udp"], "rb") as fh:
        engine.read_stream(fh, "udp.pcap")
    result = engine.finish()
    # streamed as known then (the offer was "anonymous" until a credential answered it) ...
    assert [e.handshake_id for e in streamed] == [e.handshake_id for e in udp.events]
    assert [e.auth_class for e in streamed[:2]] == ["anonymous", "ntlm"]
    # ... and the closing summary is the file analysis's
    assert [(e.handshake_id, e.auth_class, e.outcome) for e in result.events] == [
        (e.handshake_id, e.auth_class, e.outcome) for e in udp.events
    ]
    assert [v.summary for v in result.verdicts] == [v.summary for v in udp.verdicts]


# -- decrypted TLS (5061, and 443 as through an Edge server) ----------------------------------
@needs_tshark
def test_sip_over_decrypted_tls(tmp_path: Path, udp) -> None:
    msgs = kit.ntlm_register()
    pairs = [(msgs[i][1], msgs[i + 1][1]) for i in range(0, len(msgs), 2)]
    keylog = tmp_path / "sip.keys"
    frames: list = []
    for port, client_port in ((5061, 50401), (443, 50402)):
        flow = Flow(frames, (kit.CLIENT, client_port), (kit.SERVER, port)).open()
        for side, data in memory_tls(pairs, keylog=keylog):
            flow.send(side, data)
        flow.close()
    from scapy.utils import wrpcap

    path = tmp_path / "sip-tls.pcap"
    wrpcap(str(path), frames)
    result = analyze_paths([str(path)], tls_keylog=str(keylog))
    by_port = {port: [e for e in result.events if e.server_port == port] for port in (5061, 443)}
    for events in by_port.values():
        assert {(e.protocol, e.transport) for e in events} == {("sip", "tls")}
        assert [e.cred_fp for e in events] == [e.cred_fp for e in udp.events[:5]]
    assert [t.inspected for t in result.tls] == [True, True]
    assert not result.not_inspected


# -- tshark's reading of the same files ------------------------------------------------------
def tshark_credentials(path: Path) -> list[tuple[str, str]]:
    """(header, value) of every SIP Authorization / Proxy-Authorization tshark finds."""
    wanted = "sip.Authorization or sip.Proxy-Authorization"
    fields = ["-e", "sip.Authorization", "-e", "sip.Proxy-Authorization"]
    out = subprocess.run(
        ["tshark", "-r", str(path), "-Y", wanted, "-T", "fields", "-E", "occurrence=a", *fields],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    found = []
    for line in out.splitlines():
        auth, proxy = line.split("\t")
        found += [("authorization", auth)] if auth else [("proxy-authorization", proxy)]
    return found


@needs_tshark
@pytest.mark.parametrize("name", ["udp", "tcp-split", "tcp-coalesced"])
def test_tshark_finds_the_same_credentials(captures: dict[str, Path], name: str) -> None:
    theirs = [(h, fingerprint(v.split(" ", 1)[1])) for h, v in tshark_credentials(captures[name])]
    ours = [(e.auth_header, e.cred_fp) for e in analyze_paths([str(captures[name])]).events]
    assert theirs == [x for x in ours if x[0] is not None]
    assert len(theirs) == 10


# -- the public capture ----------------------------------------------------------------------
@needs_public(NDPI, "expected.json")
def test_the_public_softphone_capture_matches_its_ground_truth() -> None:
    (truth,) = [c for c in public_expected()["captures"] if c["file"] == NDPI]
    result = analyze_paths([str(require_public(NDPI) / NDPI)])
    creds = [e for e in result.events if e.scheme != "none"]
    assert [(e.auth_header, e.cred_fp, e.user, e.cseq) for e in creds] == [
        (t["header"].lower(), t["cred_fp"], t["username"], t["cseq"])
        for t in truth["sip_authorization"]
    ]
    challenges = [c for e in result.events for c in e.challenges]
    assert len(challenges) == truth["counts"]["sip_challenges"]["Digest"]
    assert {e.protocol for e in result.events} == {"sip"}
    # the INVITE to voip.brujula.net ended 408 with no challenge: not an event
    assert [e.method for e in result.events].count("INVITE") == 6
    (verdict,) = result.verdicts
    assert (verdict.verdict, verdict.host, verdict.protocol) == (
        "no-oauth",
        "sip.cybercity.dk",
        "sip",
    )


@needs_tshark
@needs_public(NDPI)
def test_the_public_capture_as_tshark_reads_it() -> None:
    path = require_public(NDPI) / NDPI
    theirs = [(h, fingerprint(v.split(" ", 1)[1])) for h, v in tshark_credentials(path)]
    ours = [(e.auth_header, e.cred_fp) for e in analyze_paths([str(path)]).events]
    assert theirs == [x for x in ours if x[0] is not None]


# -- outputs ---------------------------------------------------------------------------------
def test_sip_in_the_text_html_and_pandas_outputs(
    captures: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", str(captures["udp"])]) == 0
    text = capsys.readouterr().out
    assert "-> SIP contoso.com (10.20.0.5:5060): NO-OAUTH" in text
    import analyzer

    analysis = analyzer.analyze(captures["udp"])
    page = render_html(analysis, with_charts=False)
    assert "SIP contoso.com" in page and "tls-dsk" in page
    frame = analysis.events  # pandas: UDP is a transport, the association's number an integer
    assert list(frame["transport"].unique()) == ["udp"]
    assert str(frame["sip_cnum"].dtype) == "Int64" and frame["sip_cnum"].max() == 3


def test_the_fast_datagram_writer_writes_what_scapy_writes(tmp_path: Path) -> None:
    """``many_udp_capture`` (packed by hand, for tens of thousands of datagrams) writes the IPv4
    / UDP bytes and times ``udp_capture`` writes through scapy, odd lengths and both
    directions included: the SIP-cap test rests on it."""
    from scapy.utils import rdpcap

    messages = [(0, b"OPTIONS sip:x SIP/2.0\r\n\r\n"), (1, b"SIP/2.0 200 OK\r\n\r\n!"), (0, b"")]
    fast = rdpcap(kit.many_udp_capture(tmp_path / "fast.pcap", messages, 5061, 40000))
    slow = rdpcap(kit.udp_capture(tmp_path / "slow.pcap", messages, 5061, 40000))
    assert [bytes(p)[14:] for p in fast] == [bytes(p)[14:] for p in slow]
    assert [round(float(p.time), 6) for p in fast] == [round(float(p.time), 6) for p in slow]
    assert len(fast) == 3
