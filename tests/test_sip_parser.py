"""SIP, sans-I/O: message heads, TCP framing, transactions, UDP flows, the first-bytes choice.

Byte strings in, messages and exchanges out, as in the HTTP parser's tests; the captures that
run the same code through the engine are in ``test_sip_capture.py``.
"""

from __future__ import annotations

import pytest

from analyzer.flows.tcp import ConnectionInfo
from analyzer.flows.udp import UdpFlows
from analyzer.protocols.dispatch import MAX_HELD, FirstBytes
from analyzer.protocols.sip import (
    SipMessage,
    SipStream,
    address_uri,
    looks_like_sip,
    parse_datagram,
    parse_head,
    uri_host,
)
from analyzer.protocols.sip_exchange import (
    TRANSACTION_TIMEOUT,
    SipConnection,
    SipDatagrams,
    SipExchange,
    SipTransactions,
)

INFO = ConnectionInfo("10.0.0.1", 5060, "10.0.0.2", 5060, 100.0, True)


def request(method: str = "REGISTER", cseq: int = 1, branch: str = "z9hG4bK1", **extra) -> bytes:
    body = extra.pop("body", b"")
    headers = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in extra.items())
    return (
        f"{method} sip:contoso.com SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 10.0.0.1:5060;branch={branch}\r\n"
        "Call-ID: abc@10.0.0.1\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"{headers}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def response(
    status: int, method: str = "REGISTER", cseq: int = 1, branch: str = "z9hG4bK1", **extra
) -> bytes:
    headers = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in extra.items())
    return (
        f"SIP/2.0 {status} Reason\r\n"
        f"Via: SIP/2.0/TCP 10.0.0.1:5060;branch={branch}\r\n"
        "Call-ID: abc@10.0.0.1\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"{headers}Content-Length: 0\r\n\r\n"
    ).encode()


def stream(midstream: bool = False) -> tuple[SipStream, list[SipMessage]]:
    got: list[SipMessage] = []
    return SipStream(got.extend, midstream=midstream), got


# -- heads -----------------------------------------------------------------------------------
def test_a_request_head_with_compact_and_folded_headers() -> None:
    raw = (
        b"INVITE sip:bob@contoso.com:5061;transport=tls SIP/2.0\r\n"
        b"v: SIP/2.0/TLS 10.0.0.1;branch=z9hG4bKx, SIP/2.0/TLS 10.0.0.9;branch=z9hG4bKy\r\n"
        b"i: call-1\r\nf: <sip:alice@contoso.com>;tag=1\r\nt: Bob <sip:bob@contoso.com>\r\n"
        b"CSeq: 7 INVITE\r\nSubject: a folded\r\n  value\r\nl: 12"
    )
    msg = parse_head(raw, 1.5)
    assert msg is not None and msg.is_request
    assert (msg.method, msg.uri, msg.ts) == (
        "INVITE",
        "sip:bob@contoso.com:5061;transport=tls",
        1.5,
    )
    assert msg.call_id == "call-1"
    assert msg.cseq == (7, "INVITE")
    assert msg.branch == "z9hG4bKx"  # the topmost Via
    assert msg.header("subject") == "a folded value"
    assert msg.body_length == 12
    assert msg.transaction() == ("z9hG4bKx", "call-1", 7, "INVITE")
    assert uri_host(msg.uri) == "contoso.com"
    assert address_uri(msg.header("to")) == "sip:bob@contoso.com"
    assert address_uri(msg.header("from")) == "sip:alice@contoso.com"


def test_a_status_line_and_what_is_not_sip() -> None:
    msg = parse_head(b"SIP/2.0 401 Unauthorized\r\nCSeq: 2 REGISTER", 0.0)
    assert msg is not None and not msg.is_request
    assert (msg.status, msg.reason, msg.cseq) == (401, "Unauthorized", (2, "REGISTER"))
    assert parse_head(b"GET / HTTP/1.1\r\nHost: x", 0.0) is None
    assert parse_head(b"SIP/2.0 abc Nope", 0.0) is None
    garbled = parse_head(b"SIP/2.0 200 OK\r\nCSeq: x\r\nContent-Length: -4", 0.0)
    assert garbled is not None and garbled.cseq == (None, "") and garbled.body_length == -1


@pytest.mark.parametrize(
    ("first", "verdict"),
    [
        (b"REGISTER sip:contoso.com SIP/2.0\r\n", True),
        (b"\r\n\r\nSIP/2.0 200 OK\r\n", True),
        (b"subscribe sips:alice@contoso.com SIP/2.0", True),
        (b"REGIS", None),
        (b"REGISTER si", None),
        (b"SIP/2.", None),
        (b"", None),
        (b"GET / HTTP/1.1\r\n", False),
        (b"HTTP/1.1 200 OK\r\n", False),
        (b"\x16\x03\x01\x02\x00\x01", False),
        (b"PRI * HTTP/2.0\r\n", False),
    ],
)
def test_first_bytes_tell_sip(first: bytes, verdict: bool | None) -> None:
    assert looks_like_sip(first) is verdict


def test_uri_and_address_forms() -> None:
    assert uri_host("sip:[2001:db8::1]:5061") == "[2001:db8::1]"
    assert uri_host("tel:+15551234") == "+15551234"
    assert uri_host("http://x") is None
    assert uri_host(None) is None
    assert address_uri('"A, B" <sip:a@b.c;transport=tls>;tag=9') == "sip:a@b.c;transport=tls"
    assert address_uri("sip:a@b.c;tag=9") == "sip:a@b.c"
    assert address_uri(None) is None


def test_a_datagram_is_one_message() -> None:
    msg = parse_datagram(request(body=b"v=0\r\n"), 3.0)
    assert msg is not None and msg.method == "REGISTER" and msg.body_length == 5
    no_blank_line = parse_datagram(b"SIP/2.0 200 OK\r\nCSeq: 1 REGISTER", 3.0)
    assert no_blank_line is not None and no_blank_line.status == 200
    for other in (b"\r\n\r\n", b"jaK\n\x00", b"\x80\x00\x12\x34" + bytes(160), b""):
        assert parse_datagram(other, 3.0) is None  # keep-alives, RTP


# -- TCP framing -----------------------------------------------------------------------------
def test_a_message_split_across_segments_and_two_in_one() -> None:
    s, got = stream()
    one, two = request(cseq=1), request("SUBSCRIBE", 2, "z9hG4bK2", body=b"<xml/>")
    s.data(one[:10], 1.0)
    s.data(one[10:40], 2.0)
    assert got == []
    s.data(one[40:] + two, 3.0)
    assert [(m.method, m.ts) for m in got] == [("REGISTER", 1.0), ("SUBSCRIBE", 3.0)]
    assert s.skip == 0  # the body was buffered with its head and dropped there


def test_a_body_beyond_the_segment_is_left_to_the_reassembler() -> None:
    s, got = stream()
    body = b"x" * 5000
    s.data(request(body=body)[:-4000], 1.0)
    assert len(got) == 1 and s.skip == 4000
    s.skip = 0  # what the reassembler does once it dropped those bytes
    s.data(b"\r\n\r\n" + response(200), 2.0)  # keep-alive CRLFs, then the next message
    assert [m.status for m in got[1:]] == [200]


def test_a_stream_that_is_not_sip_gives_up() -> None:
    s, got = stream()
    s.data(b"GET / HTTP/1.1\r\n\r\n", 1.0)
    assert s.dead and got == []
    s.data(request(), 2.0)
    assert got == []


def test_lost_bytes_make_the_stream_hunt_for_the_next_start_line() -> None:
    s, got = stream()
    s.data(request()[:30], 1.0)
    s.gap(100, 2.0)
    s.data(b"tail of something lost\r\n" + response(200), 3.0)
    assert [m.status for m in got] == [200]
    assert got[0].after_gap and s.lost == 1


def test_a_midstream_stream_starts_at_the_first_start_line() -> None:
    s, got = stream(midstream=True)
    s.data(b"rest of a body\r\n" + request(), 1.0)
    assert [m.method for m in got] == ["REGISTER"]
    assert s.lost == 1  # what it dropped may have ended a head that carried a credential


def test_what_a_midstream_start_drops_is_one_lost_stretch_keep_alives_none() -> None:
    s, got = stream(midstream=True)
    s.data(b"\r\n\r\n", 1.0)
    s.data(request(), 2.0)
    assert [m.method for m in got] == ["REGISTER"] and s.lost == 0
    s, got = stream(midstream=True)
    s.data(b'Authorization: NTLM gssapi-data="TlRMTVNTUAAD"\r\n', 1.0)  # no start line yet
    s.data(b"\r\n" + request(), 2.0)
    s.gap(10, 3.0)  # a later hole is a stretch of its own
    assert [m.method for m in got] == ["REGISTER"] and s.lost == 2
    s, _ = stream(midstream=True)
    s.data(b"a body that never ends", 1.0)
    s.close(2.0)
    assert s.lost == 1


def test_a_retransmission_with_other_bytes_is_a_lost_stretch() -> None:
    s, got = stream()
    s.data(request(), 1.0)
    s.conflict(1.1)
    assert (s.lost, s.conflicts, len(got)) == (1, 1, 1)
    s.close(2.0)
    s.conflict(2.1)  # a dead stream counts nothing
    assert s.lost == 1


@pytest.mark.parametrize("line", [b"REGISTER  sip:x SIP/2.0", b"REGISTER sip:x  SIP/2.0 \t"])
def test_start_lines_spaced_as_the_parser_allows_are_sip(line: bytes) -> None:
    head = request().replace(b"REGISTER sip:contoso.com SIP/2.0", line, 1)
    assert looks_like_sip(head) and parse_datagram(head, 1.0) is not None
    s, got = stream(midstream=True)  # and a hunt finds them
    s.data(b"junk\r\n" + head, 1.0)
    assert [m.uri for m in got] == ["sip:x"]
    assert looks_like_sip(b"SIP/2.0  200 OK\r\n") and looks_like_sip(b"REGISTER   ") is None


def test_a_head_that_never_ends_or_lies_about_its_length_is_lost() -> None:
    s, got = stream()
    s.data(b"REGISTER sip:x SIP/2.0\r\nX: " + b"a" * (300 * 1024), 1.0)
    assert s.lost == 1 and got == []
    s, got = stream()
    s.data(request().replace(b"Content-Length: 0", b"Content-Length: 99999999999"), 1.0)
    assert s.lost == 1 and got == []


def test_a_head_cut_by_the_end_of_the_stream_counts_as_lost() -> None:
    s, _ = stream()
    s.data(request()[:50], 1.0)
    s.close(2.0)
    assert s.lost == 1 and s.dead


# -- transactions ----------------------------------------------------------------------------
def transactions() -> tuple[SipTransactions, list[SipExchange]]:
    out: list[SipExchange] = []
    return SipTransactions(INFO, "udp", out.append), out


def msg(raw: bytes, ts: float) -> SipMessage:
    parsed = parse_datagram(raw, ts)
    assert parsed is not None
    return parsed


def test_a_final_response_answers_its_transaction_and_1xx_does_not() -> None:
    t, out = transactions()
    t.messages_from(True, [msg(request("INVITE"), 1.0)])
    t.messages_from(False, [msg(response(100, "INVITE"), 1.1)])
    assert out == []
    t.messages_from(False, [msg(response(407, "INVITE"), 1.2)])
    t.messages_from(True, [msg(request("ACK"), 1.3)])  # ACK has no response: no exchange
    assert [(e.request.method, e.response.status) for e in out] == [("INVITE", 407)]
    assert (out[0].client_ip, out[0].server_ip, out[0].transport) == ("10.0.0.1", "10.0.0.2", "udp")


def test_retransmissions_are_counted_once_and_a_cancel_is_its_own_transaction() -> None:
    t, out = transactions()
    invite = msg(request("INVITE"), 1.0)
    t.messages_from(True, [invite, msg(request("INVITE"), 1.5), msg(request("CANCEL"), 2.0)])
    t.messages_from(False, [msg(response(200, "CANCEL"), 2.1)])
    t.messages_from(False, [msg(response(487, "INVITE"), 2.2)])
    t.messages_from(True, [msg(request("INVITE"), 2.3)])  # late copy after the answer
    t.messages_from(False, [msg(response(487, "INVITE"), 2.4)])  # retransmitted answer
    t.finish()
    assert [(e.request.method, e.response.status, e.retransmissions) for e in out] == [
        ("CANCEL", 200, 0),
        ("INVITE", 487, 1),
    ]


def test_requests_from_either_side_and_answers_without_their_request() -> None:
    t, out = transactions()
    t.messages_from(False, [msg(request("NOTIFY", 5, "z9hG4bKn"), 1.0)])  # the server asks
    t.messages_from(True, [msg(response(200, "NOTIFY", 5, "z9hG4bKn"), 1.1)])
    t.messages_from(False, [msg(response(401, "REGISTER", 9, "z9hG4bKz"), 1.2)])
    assert [(e.client_ip, e.request is None, e.response.status) for e in out] == [
        ("10.0.0.2", False, 200),
        ("10.0.0.1", True, 401),  # its client was the side the answer went to
    ]


def test_unanswered_transactions_end_with_the_flow_or_their_timeout() -> None:
    t, out = transactions()
    t.messages_from(True, [msg(request("REGISTER", 1, "b1"), 1.0)])
    t.messages_from(True, [msg(request("INVITE", 2, "b2"), 1.0)])
    t.messages_from(False, [msg(response(180, "INVITE", 2, "b2"), 2.0)])  # ringing: proceeding
    t.expire(1.0 + TRANSACTION_TIMEOUT + 1)
    assert [(e.request.method, e.response) for e in out] == [("REGISTER", None)]
    t.finish()
    assert [e.request.method for e in out] == ["REGISTER", "INVITE"]


def test_a_udp_flow_keeps_each_datagram_s_ports() -> None:
    out: list[SipExchange] = []
    flow = SipDatagrams(INFO, out.append)
    flow.datagram(True, request(), 1.0, (40000, 5060))
    flow.datagram(False, b"\r\n\r\n", 1.05, (5060, 5060))  # a keep-alive: nothing
    flow.datagram(False, response(401), 1.1, (5060, 5060))
    assert [(e.client_port, e.server_port) for e in out] == [(40000, 5060)]


def test_udp_flows_are_made_for_sip_only_and_end_idle() -> None:
    made: list[ConnectionInfo] = []
    out: list[SipExchange] = []

    def factory(info: ConnectionInfo, first: bytes) -> SipDatagrams | None:
        if not looks_like_sip(first):
            return None
        made.append(info)
        return SipDatagrams(info, out.append)

    flows = UdpFlows(factory, idle_timeout=60.0)
    a, b = b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02"
    flows.feed(1.0, a, 6000, b, 6001, b"\x80" + bytes(100))  # RTP: no flow
    flows.feed(2.0, a, 5060, b, 5060, request())
    flows.feed(3.0, b, 5060, a, 5062, response(200))  # answered to another port: same flow
    flows.feed(4.0, a, 5060, b, 5060, request("OPTIONS", 2, "z9hG4bKo"))
    assert len(made) == 1 and made[0].a_ip == "10.0.0.1"
    assert [e.response.status if e.response else None for e in out] == [200]
    flows.feed(100.0, b, 9, a, 9, b"x")  # the sweep finishes the idle flow
    assert [e.request.method for e in out] == ["REGISTER", "OPTIONS"] and not flows.flows


def test_a_sip_connection_pairs_both_directions() -> None:
    out: list[SipExchange] = []
    closed: list[SipConnection] = []
    conn = SipConnection(INFO, out.append, closed.append)
    conn.a_to_b.data(request(), 1.0)
    conn.b_to_a.data(response(401), 1.1)
    conn.a_to_b.data(request(cseq=2, branch="z9hG4bK2")[:20], 1.2)
    conn.a_to_b.close(1.3)
    conn.finish(1.3)
    assert [e.response.status for e in out] == [401]
    assert closed == [conn] and conn.requests_lost == 1
    assert (conn.client_is_a, conn.host) == (True, "contoso.com")


# -- the first-bytes choice ------------------------------------------------------------------
class Recorder:
    """A consumer that asks to skip what follows every chunk it is given."""

    def __init__(self, skip: int = 0) -> None:
        self.skip = 0
        self.dead = False
        self.want = skip
        self.got: list[tuple[bytes, float]] = []
        self.gaps: list[int] = []
        self.closed = False

    def data(self, data: bytes, ts: float, frame: int = 0) -> None:
        self.got.append((bytes(data), ts))
        self.skip = self.want

    def gap(self, nbytes: int, ts: float) -> None:
        self.gaps.append(nbytes)

    def close(self, ts: float) -> None:
        self.closed = True
        self.dead = True


class Pair:
    def __init__(self, name: str, skip: int = 0) -> None:
        self.name = name
        self.a_to_b = Recorder(skip)
        self.b_to_a = Recorder()
        self.finished = False

    def finish(self, ts: float) -> None:
        self.finished = True


def test_the_first_bytes_choose_and_are_replayed() -> None:
    chosen: list[bytes] = []
    sip, http = Pair("sip", skip=7), Pair("http")

    def choose(first: bytes) -> Pair | None:
        chosen.append(first)
        verdict = looks_like_sip(first)
        return None if verdict is None else sip if verdict else http

    conn = FirstBytes(choose, lambda: http)
    conn.a_to_b.data(b"REGIS", 1.0)
    assert conn.chosen is None
    conn.a_to_b.data(b"TER sip:x SIP/2.0\r\n", 2.0)
    assert conn.chosen is sip and sip.a_to_b.got == [(b"REGISTER sip:x SIP/2.0\r\n", 1.0)]
    assert conn.a_to_b.skip == 7 and sip.a_to_b.skip == 0  # the reassembler reads ours
    conn.a_to_b.skip = 0
    conn.a_to_b.data(b"more", 3.0)
    conn.b_to_a.gap(10, 4.0)
    conn.b_to_a.close(5.0)
    conn.finish(5.0)
    assert sip.a_to_b.got[-1] == (b"more", 3.0) and sip.b_to_a.gaps == [10]
    assert conn.b_to_a.dead and sip.finished


class Hooked(Recorder):
    """A consumer with the reassembler's optional hooks."""

    def __init__(self) -> None:
        super().__init__()
        self.hooks: list[tuple] = []

    def conflict(self, ts: float) -> None:
        self.hooks.append(("conflict", ts))

    def resent(self, off: int, nbytes: int, ts: float) -> None:
        self.hooks.append(("resent", off, nbytes, ts))


def test_the_reassembler_s_hooks_reach_the_chosen_consumer_even_before_the_choice() -> None:
    pair = Pair("sip")
    pair.a_to_b = Hooked()
    conn = FirstBytes(lambda first: pair if len(first) > 5 else None, lambda: pair)
    conn.a_to_b.data(b"REGI", 1.0)
    conn.a_to_b.conflict(1.1)  # about held bytes: kept for the consumer to come
    conn.a_to_b.resent(0, 4, 1.2)
    conn.a_to_b.resent(0, 4, 1.4)
    conn.a_to_b.resent(0, 4, 1.3)  # only the latest copy of a stretch dates it
    assert conn.chosen is None
    conn.a_to_b.data(b"STER", 2.0)
    assert pair.a_to_b.got == [(b"REGISTER", 1.0)]
    assert pair.a_to_b.hooks == [("conflict", 1.1), ("resent", 0, 4, 1.4)]
    conn.a_to_b.conflict(3.0)
    conn.a_to_b.resent(4, 4, 3.1)
    conn.b_to_a.conflict(3.2)  # a consumer without the hooks is not told
    assert pair.a_to_b.hooks[2:] == [("conflict", 3.0), ("resent", 4, 4, 3.1)]


def test_undecided_bytes_go_to_the_default_in_the_end() -> None:
    http = Pair("http")
    conn = FirstBytes(lambda first: None, lambda: http)
    conn.a_to_b.data(b"x" * (MAX_HELD - 1), 1.0)
    assert conn.chosen is None
    conn.a_to_b.data(b"y", 2.0)
    assert conn.chosen is http and http.a_to_b.got == [(b"x" * (MAX_HELD - 1) + b"y", 1.0)]
    silent = FirstBytes(lambda first: None, lambda: Pair("default"))
    silent.finish(1.0)
    assert silent.chosen is not None and silent.chosen.finished


# -- hostile input ---------------------------------------------------------------------------
def test_a_head_fed_byte_by_byte_is_searched_once() -> None:
    """Each byte is searched for the head's end once, not once per later segment: a 200 KB head
    arriving a byte at a time costs linear time (a quadratic search would take minutes)."""
    import time

    s, got = stream()
    head = request(X_Filler="a" * 200_000)
    started = time.perf_counter()
    for i in range(len(head)):
        s.data(head[i : i + 1], 1.0)
    assert [m.method for m in got] == ["REGISTER"]
    assert time.perf_counter() - started < 20  # a hang guard; linear takes well under a second


def test_garbage_and_mangled_messages_never_raise() -> None:
    import random

    from analyzer.auth.sip_events import build_sip_event

    rng = random.Random(11)
    samples = [request(Authorization='NTLM gssapi-data="TlRMTVNTUAAD", opaque="1"'), response(401)]
    samples.append(response(401, WWW_Authenticate='Kerberos gssapi-data="YIIB", opaque="x"'))
    samples.append(request(Authorization='TLS-DSK gssapi-data="FgMDAAQLAAAA", cnum="9"'))
    for _ in range(300):
        data = bytearray(rng.choice(samples))
        for _ in range(rng.randrange(1, 8)):
            at = rng.randrange(len(data))
            data[at : at + rng.randrange(1, 4)] = bytes(rng.randrange(256) for _ in range(3))
        raw = bytes(data)
        out: list[SipExchange] = []
        conn = SipConnection(INFO, out.append)
        cut = rng.randrange(len(raw))
        conn.a_to_b.data(raw[:cut], 1.0)
        conn.a_to_b.data(raw[cut:], 1.1)
        conn.b_to_a.data(rng.choice(samples), 1.2)
        conn.finish(2.0)
        datagrams = SipDatagrams(INFO, out.append)
        datagrams.datagram(True, raw, 1.0, (1, 2))
        datagrams.finish()
        for exchange in out:
            build_sip_event(exchange)
