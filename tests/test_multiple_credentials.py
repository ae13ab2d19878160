"""A request presenting more than one credential is ambiguous, so ``verify`` never PASSes it.

A server may read either credential of a request that sends two (IIS joins repeated headers with
commas; others take the first or the last), so a good S2S token beside a Basic password must not
be judged by the token alone. The event describes the non-OAuth credential and lists the others
in ``also_presented``; two different tokens make scheme ``other``; the same token twice is
one credential. Real bytes: HTTP/1.1 and HTTP/2 cleartext captures written with scapy.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import token_kit
from h2_kit import Peer, response, settings
from wire_kit import T0, connection, write_packets

from analyzer import analyze
from analyzer.auth.extract import build_event
from analyzer.auth.schemes import fingerprint, split_credentials
from analyzer.cli import main
from analyzer.model import Event
from analyzer.protocols.http1 import parse_head
from analyzer.protocols.http2_frames import PREFACE
from analyzer.protocols.http_exchange import Exchange

pytest.importorskip("scapy.all")

SFB_CERT = str(token_kit.KEYS_DIR / "sfb.cert.pem")
CLIENT, SERVER = "10.1.0.20", "10.1.0.10"
STRICT = (
    "--client",
    CLIENT,
    "--server",
    "mail.contoso.com",
    "--path",
    "/EWS/",
    "--issuer",
    "skype",
    "--realm",
    "contoso.com",
    "--require-signature",
    "--keys",
    SFB_CERT,
)
BASIC = base64.b64encode(b"CONTOSO\\svc:pw").decode()
BASIC_FP = fingerprint(BASIC)
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


TOKEN = token_kit.sfb_token()
OTHER_TOKEN = token_kit.sfb_token("bob@contoso.com")


def http1(*auth_lines: str) -> bytes:
    lines = ["POST /EWS/Exchange.asmx HTTP/1.1", "Host: mail.contoso.com", *auth_lines]
    return ("\r\n".join([*lines, "Content-Length: 0", "", ""])).encode()


def capture(tmp_path: Path, request: bytes, response_bytes: bytes = OK) -> str:
    packets = connection([(request, response_bytes)], 40001, T0, client=CLIENT, server=SERVER)
    return write_packets(tmp_path / "c.pcap", packets)


def h2c_capture(tmp_path: Path, *auth: tuple[str, str]) -> str:
    """HTTP/2 with prior knowledge: one POST on stream 1 carrying ``auth`` fields."""
    client, server = Peer(), Peer()
    fields = [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "mail.contoso.com"),
        (":path", "/EWS/Exchange.asmx"),
        *auth,
    ]
    request = PREFACE + settings() + client.headers(1, fields, end=True)
    answer = settings() + server.headers(1, response(200), end=True)
    packets = connection([(request, answer)], 40001, T0, client=CLIENT, server=SERVER)
    return write_packets(tmp_path / "h2.pcap", packets)


def the_event(path: str) -> Event:
    events = analyze(path, keys=[SFB_CERT]).result.events
    assert len(events) == 1
    return events[0]


def verify(capsys: pytest.CaptureFixture[str], path: str) -> tuple[int, list[str]]:
    code = main(["verify", path, *STRICT, "--details"])
    return code, capsys.readouterr().out.splitlines()


def basic_beside_token(event: Event, protocol: str = "http/1.1") -> None:
    """The event of a request that sent TOKEN and the Basic password: the Basic credential."""
    assert (event.protocol, event.scheme, event.scheme_name, event.auth_header) == (
        protocol,
        "basic",
        "Basic",
        "authorization",
    )
    assert (event.user, event.domain, event.password_len) == ("svc", "CONTOSO", 2)
    assert (event.cred_fp, event.cred_len) == (BASIC_FP, len(BASIC))
    assert event.also_presented == (f"bearer {fingerprint(TOKEN)}",)
    assert (event.auth_class, event.outcome, event.token_fp) == ("basic", "accepted", None)
    assert event.other_tokens == (TOKEN,)  # decoded into the token table all the same


def fails_as_basic(code: int, out: list[str]) -> None:
    assert code == 1 and out[-1] == "FAIL"
    assert out[1:4] == [
        "             1 of 1 exchanges break the rule",
        "               1 x not-oauth (09:00:00)",
        "                   not OAuth: basic as CONTOSO\\svc",
    ]


# -- the token alone, and the same token twice, are OAuth ---------------------------------------
def test_a_token_alone_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = capture(tmp_path, http1(f"Authorization: Bearer {TOKEN}"))
    event = the_event(path)
    assert (event.scheme, event.cred_fp, event.also_presented) == (
        "bearer",
        fingerprint(TOKEN),
        (),
    )
    assert (event.auth_class, event.token_signature) == ("oauth", "verified")
    code, out = verify(capsys, path)
    assert code == 0 and out[-1] == "PASS"
    assert out[1] == "             all 1 authenticated exchanges used OAuth as required"


def test_the_same_token_twice_is_one_credential(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a client that adds its header twice sends one credential: whichever the server reads
    path = capture(
        tmp_path, http1(f"Authorization: Bearer {TOKEN}", f"authorization: bearer {TOKEN}")
    )
    event = the_event(path)
    assert (event.scheme, event.scheme_name, event.cred_fp, event.also_presented) == (
        "bearer",
        "Bearer",
        fingerprint(TOKEN),
        (),
    )
    assert event.token_signature == "verified"
    assert verify(capsys, path)[0] == 0


# -- a Basic password beside the token ------------------------------------------------------
def test_basic_header_after_the_token_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = capture(
        tmp_path, http1(f"Authorization: Bearer {TOKEN}", f"Authorization: Basic {BASIC}")
    )
    basic_beside_token(the_event(path))
    fails_as_basic(*verify(capsys, path))
    (token,) = [t for t in analyze(path, keys=[SFB_CERT]).result.tokens if t.role == "bearer"]
    assert (token.fingerprint, token.uses, token.clients) == (fingerprint(TOKEN), 1, (CLIENT,))
    assert main(["analyze", path, "--format", "jsonl"]) == 0
    assert TOKEN not in capsys.readouterr().out  # a secret, written only when revealed
    assert main(["analyze", path, "--format", "jsonl", "--reveal-secrets"]) == 0
    assert json.loads(capsys.readouterr().out)["other_tokens"] == [TOKEN]


def test_basic_header_before_the_token_fails_the_same_way(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = capture(
        tmp_path, http1(f"Authorization: Basic {BASIC}", f"Authorization: Bearer {TOKEN}")
    )
    basic_beside_token(the_event(path))
    fails_as_basic(*verify(capsys, path))


def test_token_and_basic_joined_in_one_header_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # what IIS makes of the two headers above, or what a client may send as one
    path = capture(tmp_path, http1(f"Authorization: Bearer {TOKEN}, Basic {BASIC}"))
    event = the_event(path)
    basic_beside_token(event)
    fails_as_basic(*verify(capsys, path))
    # the cleartext password is a finding of its own, as for any Basic request, and so is the
    # token beside it, which crossed in the clear too (it went unreported: review 8, F5)
    findings = analyze(path, keys=[SFB_CERT]).result.findings
    assert sorted(f.rule_id for f in findings) == ["cleartext-basic", "cleartext-bearer"]
    (basic,) = [f for f in findings if f.rule_id == "cleartext-basic"]
    assert basic.detail.startswith("CONTOSO\\svc: 1 request")  # the Basic credential's own user


def test_basic_beside_the_token_over_h2c_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = h2c_capture(
        tmp_path, ("authorization", f"Bearer {TOKEN}"), ("authorization", f"Basic {BASIC}")
    )
    basic_beside_token(the_event(path), protocol="http/2")
    fails_as_basic(*verify(capsys, path))


def test_the_token_alone_over_h2c_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = h2c_capture(tmp_path, ("authorization", f"Bearer {TOKEN}"))
    assert the_event(path).also_presented == ()
    assert verify(capsys, path)[0] == 0


# -- two different tokens ---------------------------------------------------------------------
def test_two_different_tokens_are_not_oauth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # each is a good token, but verify would vouch for one the server may not have read
    path = capture(
        tmp_path, http1(f"Authorization: Bearer {TOKEN}", f"Authorization: Bearer {OTHER_TOKEN}")
    )
    event = the_event(path)
    assert (event.scheme, event.scheme_name, event.cred_fp, event.also_presented) == (
        "other",
        "Bearer, Bearer",
        fingerprint(TOKEN),
        (f"bearer {fingerprint(OTHER_TOKEN)}",),
    )
    assert (event.auth_class, event.token_fp) == ("other", None)
    assert event.other_tokens == (TOKEN, OTHER_TOKEN)
    tokens = analyze(path, keys=[SFB_CERT]).result.tokens
    bearers = {t.fingerprint: (t.uses, t.signature) for t in tokens if t.role == "bearer"}
    assert bearers == {
        fingerprint(TOKEN): (1, "unsigned"),  # the outer layers: their actors are signed
        fingerprint(OTHER_TOKEN): (1, "unsigned"),
    }
    code, out = verify(capsys, path)
    assert code == 1 and out[3] == "                   not OAuth: other (Bearer, Bearer)"


# -- Proxy-Authorization: another hop's through a forward proxy, in doubt at the server --------
def test_proxy_authorization_to_a_forward_proxy_is_the_proxys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An absolute-form request (sent to a forward proxy) carries the proxy's credential
    beside the server's: the token is what the event describes."""
    head = http1(f"Proxy-Authorization: Basic {BASIC}", f"Authorization: Bearer {TOKEN}")
    head = head.replace(b"POST /EWS/", b"POST http://mail.contoso.com/EWS/", 1)
    path = capture(tmp_path, head)
    event = the_event(path)
    assert (event.scheme, event.auth_header, event.also_presented) == (
        "bearer",
        "authorization",
        (),
    )
    assert verify(capsys, path)[0] == 0


def test_proxy_authorization_sent_to_the_server_is_judged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An origin-form request (sent to the server itself, or a front end at its address that
    may take Proxy-Authorization as the logon) with NTLM there beside a Bearer token: both are
    presented, the NTLM is described, and verify fails it (it passed unmentioned)."""
    ntlm = "NTLM " + base64.b64encode(b"NTLMSSP\0\x01\0\0\0" + b"\0" * 28).decode()
    path = capture(
        tmp_path, http1(f"Authorization: Bearer {TOKEN}", f"Proxy-Authorization: {ntlm}")
    )
    event = the_event(path)
    assert (event.scheme, event.auth_header) == ("ntlm", "proxy-authorization")
    assert event.also_presented == (f"bearer {fingerprint(TOKEN)}",)
    code, out = verify(capsys, path)
    assert code == 1 and "not OAuth: ntlm" in " ".join(out)


def test_which_requests_went_to_a_forward_proxy() -> None:
    from analyzer.auth.extract import _to_a_proxy

    proxied = ("http://h/EWS/", "HTTPS://h/", "x-very-long-scheme+http://h/EWS/")
    for method, uri in [("POST", u) for u in proxied] + [("CONNECT", "h:443")]:
        request = parse_head(f"{method} {uri} HTTP/1.1\r\n\r\n".encode(), 1.0)
        assert request is not None and _to_a_proxy(request), uri
    for uri in ("/EWS/", "*", "/a?b=http://h/", "EWS/x"):
        request = parse_head(f"OPTIONS {uri} HTTP/1.1\r\n\r\n".encode(), 1.0)
        assert request is not None and not _to_a_proxy(request), uri


# -- the extractor, on parsed heads -----------------------------------------------------------
def event_of(head: str) -> Event:
    request = parse_head(head.replace("\n", "\r\n").encode(), 1.0)
    assert request is not None
    event = build_event(Exchange("C1", CLIENT, 40001, SERVER, 80, request, None), 1)
    assert event is not None
    return event


def test_every_other_credential_is_listed_in_order() -> None:
    event = event_of(
        "GET /EWS/ HTTP/1.1\nAuthorization: Bearer abc\nAuthorization: Turbo x, NTLM TlRMTVNTUAAB"
        "\nAuthorization: Bearer abc\nAuthorization: eyJhbGciOiJub25lIn0.e30.\n"
    )
    # the first non-bearer credential is described; the others follow, each once
    assert (event.scheme, event.scheme_name, event.cred_fp) == ("other", "Turbo", fingerprint("x"))
    assert event.also_presented == (
        f"bearer {fingerprint('abc')}",
        f"ntlm {fingerprint('TlRMTVNTUAAB')}",
        f"other(authorization) {fingerprint('eyJhbGciOiJub25lIn0.e30.')}",
    )


def test_a_query_token_beside_a_header_is_presented_too() -> None:
    """A server may read the query's access_token instead of the header: beside a Basic
    password, or beside another token, the request is ambiguous; the same token is one."""
    event = event_of("GET /EWS/?access_token=q1 HTTP/1.1\nAuthorization: Basic YTpi\n")
    assert (event.scheme, event.also_presented) == ("basic", (f"bearer {fingerprint('q1')}",))
    event = event_of("GET /EWS/?access_token=q1 HTTP/1.1\nAuthorization: Bearer q2\n")
    assert (event.scheme, event.scheme_name, event.auth_header) == (
        "other",
        "Bearer, access_token",
        "authorization",
    )
    event = event_of("GET /EWS/?access_token=q1 HTTP/1.1\nAuthorization: Bearer q1\n")
    assert (event.scheme, event.also_presented, event.auth_header) == (
        "bearer",
        (),
        "authorization",
    )
    event = event_of("GET /EWS/?access_token=q1 HTTP/1.1\n")
    assert (event.scheme, event.auth_header, event.cred_fp) == (
        "bearer",
        "query",
        fingerprint("q1"),
    )


# -- splitting a header value -----------------------------------------------------------------
@pytest.mark.parametrize(
    "value",
    [
        "Bearer eyJ0eXAiOiJKV1QifQ.e30.",
        "Basic dXNlcjpwdw==",
        'Digest username="a", realm="b, Basic c", nonce="n", uri="/x", response="r", qop=auth',
        "Digest username=a , algorithm = MD5, nc=00000001",
        "Bearer opaque,with,commas",
        "Bearer t,",
        ", Bearer t",
        'MsRtcOAuth href="https://x/a, b", grant-type="urn:microsoft.rtc:windows"',
    ],
)
def test_one_credential_is_returned_whole(value: str) -> None:
    assert split_credentials(value) == [value]


@pytest.mark.parametrize(
    ("value", "pieces"),
    [
        ("Bearer t, Basic dXNlcjpwdw==", ["Bearer t", " Basic dXNlcjpwdw=="]),
        ("Bearer t,Basic x,,NTLM y", ["Bearer t", "Basic x", "NTLM y"]),
        ("Bearer t , Negotiate", ["Bearer t", " Negotiate"]),
        (
            'Digest username="a", realm="r", Bearer t',
            ['Digest username="a", realm="r"', " Bearer t"],
        ),
        ("Bearer a,b, Basic x", ["Bearer a,b", " Basic x"]),
    ],
)
def test_several_credentials_are_split_where_each_begins(value: str, pieces: list[str]) -> None:
    assert split_credentials(value) == pieces


def form_post(token: str, body_token: str) -> bytes:
    body = f"access_token={body_token}".encode()
    head = [
        "POST /EWS/Exchange.asmx HTTP/1.1",
        "Host: mail.contoso.com",
        f"Authorization: Bearer {token}",
        "Content-Type: application/x-www-form-urlencoded",
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join([*head, "", ""])).encode() + body


def test_a_form_token_beside_the_header_is_presented_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # RFC 6750 lets a client send its token in a form body: a server may read that one instead
    path = capture(tmp_path, form_post(TOKEN, OTHER_TOKEN))
    event = the_event(path)
    assert (event.scheme, event.scheme_name, event.also_presented) == (
        "other",
        "Bearer, access_token",
        (f"bearer {fingerprint(OTHER_TOKEN)}",),
    )
    code, out = verify(capsys, path)
    assert code == 1 and out[3] == "                   not OAuth: other (Bearer, access_token)"
    same = capture(tmp_path, form_post(TOKEN, TOKEN))
    assert (the_event(same).scheme, the_event(same).also_presented) == ("bearer", ())
    assert verify(capsys, same)[0] == 0


# -- HTTP/2 requests a server may serve though they break the protocol ----------------------
def h2_capture(tmp_path: Path, blocks: list[tuple[int, list[tuple[str, str]]]]) -> str:
    """Prior-knowledge HTTP/2: each (stream id, fields) a request answered 200, in order."""
    client, server = Peer(), Peer()
    request_bytes = PREFACE + settings()
    answer = settings()
    for sid, fields in blocks:
        request_bytes += client.headers(sid, fields, end=True)
        answer += server.headers(sid, response(200), end=True)
    packets = connection([(request_bytes, answer)], 40001, T0, client=CLIENT, server=SERVER)
    return write_packets(tmp_path / "h2.pcap", packets)


def ews_fields(auth: str, path: str = "/EWS/Exchange.asmx") -> list[tuple[str, str]]:
    return [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "mail.contoso.com"),
        (":path", path),
        ("authorization", auth),
    ]


@pytest.mark.parametrize(
    "blocks",
    [
        [(1, ews_fields(f"Bearer {TOKEN}")), (1, ews_fields(f"Basic {BASIC}"))],  # reused id
        [(5, ews_fields(f"Bearer {TOKEN}")), (3, ews_fields(f"Basic {BASIC}"))],  # lower id
        [  # :path twice: a server keeping the last one routes it to EWS
            (1, ews_fields(f"Bearer {TOKEN}")),
            (3, [*ews_fields(f"Basic {BASIC}", "/owa/x"), (":path", "/EWS/Exchange.asmx")]),
        ],
    ],
)
def test_an_http2_request_breaking_the_protocol_is_a_blind_spot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], blocks: list
) -> None:
    path = h2_capture(tmp_path, blocks)
    code, out = verify(capsys, path)
    assert code == 2 and out[-1] == "INCONCLUSIVE"
    assert any("HTTP/2 stream(s) whose headers could not be decoded" in line for line in out)


def test_a_credential_in_http2_trailers_is_a_blind_spot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client, server = Peer(), Peer()
    fields = ews_fields(f"Bearer {TOKEN}")[:-1]  # no credential in the headers
    request_bytes = (
        PREFACE + settings() + client.headers(1, ews_fields(f"Bearer {TOKEN}"), end=True)
    )
    request_bytes += client.headers(3, fields) + client.headers(
        3, [("authorization", f"Basic {BASIC}")], end=True
    )
    answer = settings() + server.headers(1, response(200), end=True)
    answer += server.headers(3, response(200), end=True)
    packets = connection([(request_bytes, answer)], 40001, T0, client=CLIENT, server=SERVER)
    code, out = verify(capsys, write_packets(tmp_path / "t.pcap", packets))
    assert code == 2 and out[-1] == "INCONCLUSIVE"
