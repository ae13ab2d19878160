"""Requests this parser cannot take for granted are read, or said to be unread - never dropped in
silence while the server reads them.

IIS serves any RFC 9110 token as a verb (``X.Y``, ``M+POST``), and its authentication modules
run before the verb is refused: an NTLM logon sent with an odd verb authenticates the connection
all the same. A head that is not a message, a client whose first bytes are not HTTP/1.x while
its server answers in HTTP, and Content-Length values that disagree (RFC 9112 6.3: framing
unknown) are request bytes lost. Real bytes: HTTP/1.1 connections written with scapy.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import token_kit
from wire_kit import CLIENT, T0, conversation, write_packets

from analyzer.cli import main
from analyzer.engine import analyze_paths
from analyzer.protocols.http1 import HttpStream

pytest.importorskip("scapy.all")

STRICT = token_kit.strict_rule(CLIENT)
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
NTLM_T1 = "TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAKAGFKAAAADw=="


def request(method: str, *lines: str, path: str = "/EWS/Exchange.asmx") -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: mail.contoso.com", *lines]
    return ("\r\n".join([*head, "Content-Length: 0", "", ""])).encode()


BASIC = base64.b64encode(b"CONTOSO\\svc:pw").decode()
HIDDEN = request("POST", f"Authorization: Basic {BASIC}")


def challenge() -> bytes:
    return b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: NTLM\r\nContent-Length: 0\r\n\r\n"


def write(tmp_path: Path, segments: list[tuple[bool, bytes]], syn: bool = True) -> str:
    """A good OAuth call on its own connection, then ``segments`` on another."""
    good = [(True, request("POST", f"Authorization: Bearer {token_kit.sfb_token()}")), (False, OK)]
    return write_packets(
        tmp_path / "c.pcap",
        conversation(good, 40001, T0),
        conversation(segments, 40002, T0 + 1, syn=syn),
    )


def verify(capsys: pytest.CaptureFixture[str], path: str) -> tuple[int, dict]:
    code = main(["verify", path, *STRICT, "--json"])
    return code, json.loads(capsys.readouterr().out)["rules"][0]


@pytest.mark.parametrize("method", ["X.Y", "POST!", "P~", "M+POST", "A" * 33, "post"])
def test_an_odd_verb_is_a_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], method: str
) -> None:
    path = write(tmp_path, [(True, request(method, f"Authorization: NTLM {NTLM_T1}")), (False, OK)])
    (event,) = [e for e in analyze_paths([path]).events if e.client_port == 40002]
    assert (event.method, event.scheme, event.status) == (method.upper(), "ntlm", 200)
    code, rule = verify(capsys, path)
    assert (code, rule["violation_groups"][0]["kind"]) == (1, "not-oauth")


def test_an_odd_verb_is_found_mid_connection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # joined mid-way: hunting finds a usual method first, else any method
    body_tail = (True, b"tail of a body sent before the capture began")
    ntlm = (True, request("X.Y", f"Authorization: NTLM {NTLM_T1}"))
    path = write(tmp_path, [body_tail, ntlm, (False, OK)], syn=False)
    assert verify(capsys, path)[0] == 1


@pytest.mark.parametrize(
    "first",
    [
        b"POST /EWS/Exchange.asmx HTTP/1.1\x00\r\nHost: mail.contoso.com\r\n\r\n",  # NUL
        b"POST /EWS/Exchange.asmx http/1.1\r\nHost: mail.contoso.com\r\n\r\n",  # lower case
    ],
)
def test_a_first_request_not_read_is_a_blind_spot_when_the_server_answers_http(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], first: bytes
) -> None:
    path = write(tmp_path, [(True, first), (False, challenge())])
    code, rule = verify(capsys, path)
    assert code == 2
    assert [(n["kind"], n["client"]) for n in rule["coverage"]["not_inspected"]] == [
        ("request-lost", f"{CLIENT}:40002")
    ]


def test_another_protocol_is_one_blind_spot_not_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # SMTP on port 80: neither side speaks HTTP - bytes that are not HTTP on an HTTP port,
    # said once, not again as requests lost (on other ports, another protocol says nothing)
    smtp = [(False, b"220 mail.contoso.com ESMTP\r\n"), (True, b"EHLO sfb01\r\n")]
    path = write(tmp_path, smtp)
    code, rule = verify(capsys, path)
    assert code == 2
    assert [n["kind"] for n in rule["coverage"]["not_inspected"]] == ["not-http"]


def test_a_head_that_is_not_a_message_after_one_that_was_is_lost() -> None:
    stream = HttpStream()
    stream.data(request("GET"), 1.0)
    assert stream.lost == 0
    stream.data(b"GET /EWS/ HTTP/1.1 junk\r\nAuthorization: NTLM x\r\n\r\n", 2.0)
    assert (stream.lost, stream.dead, stream.messages_seen) == (1, False, 1)
    assert [m.method for m in stream.data(request("GET"), 3.0)] == ["GET"]  # and reads on


@pytest.mark.parametrize(
    ("lengths", "lost"),
    [
        (["5", "0"], 1),
        (["0", "5"], 1),
        (["5, 0"], 1),
        (["5", "5"], 0),  # the same value twice frames the same
        (["5, 5"], 0),
    ],
)
def test_content_lengths_that_disagree_leave_the_framing_unknown(
    lengths: list[str], lost: int
) -> None:
    fields = "".join(f"Content-Length: {v}\r\n" for v in lengths)
    head = f"POST /EWS/ HTTP/1.1\r\nHost: h\r\n{fields}\r\n".encode()
    stream = HttpStream()
    stream.data(head + b"hello" + request("GET"), 1.0)
    assert stream.lost == lost


def test_a_smuggled_request_makes_the_verdict_inconclusive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hidden = HIDDEN
    head = (
        "POST /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\n"
        f"Content-Length: {len(hidden)}\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    path = write(tmp_path, [(True, head + hidden), (False, OK + OK)])
    assert verify(capsys, path)[0] == 2


def smuggled(framing: list[str], body: bytes) -> bytes:
    """A Bearer request with ``framing`` fields and ``body``, then a Basic request hidden in
    it (or after it), as one segment."""
    head = [
        "POST /EWS/Exchange.asmx HTTP/1.1",
        "Host: mail.contoso.com",
        f"Authorization: Bearer {token_kit.sfb_token()}",
        *framing,
    ]
    return ("\r\n".join([*head, "", ""])).encode() + body


@pytest.mark.parametrize(
    "framing",
    [
        ["Transfer-Encoding: identity", "Transfer-Encoding: chunked"],
        ["Transfer-Encoding: ", "Transfer-Encoding: chunked"],
        ["transfer-encoding: ,", "TRANSFER-ENCODING: chunked"],
    ],
)
def test_repeated_transfer_encoding_fields_are_one_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], framing: list[str]
) -> None:
    # RFC 9110 5.3: the fields join into "identity, chunked": the body ends at its last chunk,
    # and the Basic request after it is read (before, the first field alone was read, and the
    # Content-Length swallowed the Basic request as body)
    body = b"0\r\n\r\n" + HIDDEN
    payload = smuggled([*framing, f"Content-Length: {len(body)}"], body)
    path = write(tmp_path, [(True, payload), (False, OK + OK)])
    code, rule = verify(capsys, path)
    assert (code, rule["violation_groups"][0]["kind"]) == (1, "not-oauth")


def test_transfer_encoding_with_content_length_leaves_the_framing_unknown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = b"0\r\n\r\n" + HIDDEN
    framing = ["Transfer-Encoding: chunked", f"Content-Length: {len(body)}"]
    path = write(tmp_path, [(True, smuggled(framing, body)), (False, OK)])
    code, rule = verify(capsys, path)
    assert code in (1, 2)  # the Basic request read (chunked), and the framing said unknown
    assert [n["kind"] for n in rule["coverage"]["not_inspected"]] == ["request-lost"]


def test_a_chunk_size_that_is_none_is_lost_and_the_rest_is_hunted() -> None:
    stream = HttpStream()
    head = b"POST /EWS/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    got = stream.data(head + b"zz\r\nwhatever\r\n" + HIDDEN, 1.0)
    assert stream.lost == 1
    assert [(m.header("authorization") or "")[:5] for m in got] == ["", "Basic"]


def test_an_answer_to_no_request_read_is_a_request_lost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # two answers to one request read: the server read a second one this parser did not see
    path = write(tmp_path, [(True, request("POST", "Authorization: Bearer x")), (False, OK + OK)])
    code, rule = verify(capsys, path)
    assert code == 1 or code == 2
    assert [n["kind"] for n in rule["coverage"]["not_inspected"]] == ["request-lost"]
