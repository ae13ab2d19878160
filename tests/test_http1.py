"""HTTP/1.x parsing and request/response pairing, fed raw bytes."""

from __future__ import annotations

from analyzer.flows.tcp import ConnectionInfo
from analyzer.protocols.http1 import HttpMessage, HttpStream, parse_head
from analyzer.protocols.http_exchange import Exchange, HttpConnection


def feed_all(
    stream: HttpStream, data: bytes, step: int | None = None, ts: float = 1.0
) -> list[HttpMessage]:
    """Feed ``data`` in pieces of ``step`` bytes (all at once when None), honouring ``skip``."""
    out: list[HttpMessage] = []
    pos = 0
    step = step or len(data)
    while pos < len(data):
        piece = data[pos : pos + step]
        pos += len(piece)
        if stream.skip >= len(piece):
            stream.skip -= len(piece)
            continue
        if stream.skip:
            piece = piece[stream.skip :]
            stream.skip = 0
        out += stream.data(piece, ts)
    return out


REQUEST = (
    b"POST /EWS/Exchange.asmx HTTP/1.1\r\n"
    b"Host: mail.contoso.com\r\n"
    b"aUTHORIZATION: Bearer abc.def.\r\n"
    b"X-Dup: one\r\n"
    b"x-dup: two\r\n"
    b"Content-Length: 10\r\n"
    b"\r\n"
    b"0123456789"
)


def test_request_head_headers_case_and_repeats() -> None:
    (msg,) = feed_all(HttpStream(), REQUEST)
    assert msg.is_request and msg.method == "POST" and msg.uri == "/EWS/Exchange.asmx"
    assert msg.version == "1.1"
    assert msg.header("authorization") == "Bearer abc.def."
    assert msg.header_all("x-dup") == ["one", "two"]
    assert msg.body is None  # not kept by default


def test_split_at_every_byte_gives_the_same_result() -> None:
    whole = feed_all(HttpStream(), REQUEST * 2)
    bytewise = feed_all(HttpStream(), REQUEST * 2, step=1)
    assert [(m.method, m.headers) for m in whole] == [(m.method, m.headers) for m in bytewise]
    assert len(whole) == 2


def test_body_kept_when_policy_asks_and_skipped_otherwise() -> None:
    stream = HttpStream(body_policy=lambda m: 4)
    (msg,) = feed_all(stream, REQUEST, step=7)
    assert msg.body == b"0123" and msg.body_truncated
    stream = HttpStream()
    feed_all(stream, REQUEST[:-10])
    assert stream.skip == 10  # the reassembler will drop the body without copying it


def test_obsolete_line_folding_joins_values() -> None:
    msg = parse_head(
        b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer client_id="x",\r\n'
        b'  trusted_issuers="a@b"\r\nContent-Length: 0',
        2.0,
    )
    assert msg is not None and msg.status == 401
    assert msg.header("www-authenticate") == 'Bearer client_id="x", trusted_issuers="a@b"'


def test_chunked_response_kept_and_next_response_parsed() -> None:
    body = b'{"access_token":"x"}'
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunked += b"5;ext=1\r\n" + body[:5] + b"\r\n" + f"{len(body) - 5:x}".encode() + b"\r\n"
    chunked += body[5:] + b"\r\n0\r\nX-Trailer: 1\r\n\r\n"
    data = chunked + b"HTTP/1.1 204 No Content\r\n\r\n"
    for step in (None, 1, 3):
        msgs = feed_all(HttpStream(body_policy=lambda m: 1000), data, step=step)
        assert [m.status for m in msgs] == [200, 204]
        assert msgs[0].body == body


def test_chunked_body_skipped_without_keeping() -> None:
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    data += b"HTTP/1.1 401 No\r\nContent-Length: 0\r\n\r\n"
    msgs = feed_all(HttpStream(), data, step=2)
    assert [(m.status, m.body) for m in msgs] == [(200, None), (401, None)]


def test_close_delimited_body_ends_at_close() -> None:
    stream = HttpStream(body_policy=lambda m: 100)
    assert feed_all(stream, b"HTTP/1.0 200 OK\r\n\r\npart one ") == []
    feed_all(stream, b"part two")
    (msg,) = stream.close(3.0)
    assert msg.body == b"part one part two" and not msg.body_truncated


def test_head_and_no_body_statuses() -> None:
    stream = HttpStream(request_method=lambda: "HEAD")
    msgs = feed_all(
        stream, b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"
    )
    assert len(msgs) == 2 and stream.skip == 0
    msgs = feed_all(
        HttpStream(),
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\nHTTP/1.1 401 X\r\n\r\n",
    )
    assert [m.status for m in msgs] == [304, 401]


def test_non_http_streams_are_abandoned_at_once() -> None:
    tls = bytes.fromhex("160301020001000200") + b"\x03\x03" + bytes(32)
    for data in (tls, b"SSH-2.0-OpenSSH_9.2\r\n", b"220 smtp.example ESMTP\r\n", b"EHLO me\r\n"):
        stream = HttpStream()
        assert feed_all(stream, data) == []
        assert stream.dead, data


def test_midstream_hunts_for_the_next_message() -> None:
    stream = HttpStream(midstream=True)
    data = b"tail of some earlier body\r\n" + REQUEST
    (msg,) = feed_all(stream, data, step=5)
    assert msg.uri == "/EWS/Exchange.asmx"


def test_midstream_gives_up_after_the_hunt_limit() -> None:
    stream = HttpStream(midstream=True)
    feed_all(stream, b"\x00" * 300_000, step=1460)
    assert stream.dead


def test_message_timestamp_is_the_packet_with_its_first_byte() -> None:
    stream = HttpStream()
    first = REQUEST + b"GET /second HTTP/1.1\r\nHo"
    assert len(stream.data(first, 1.0)) == 1
    (msg,) = stream.data(b"st: x\r\n\r\n", 2.0)
    assert msg.uri == "/second" and msg.ts == 1.0


def test_gap_inside_kept_body_keeps_framing() -> None:
    stream = HttpStream(body_policy=lambda m: 100)
    stream.data(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", 1.0)
    assert stream.gap(4, 1.1) == []
    msgs = stream.data(b"xyzGET / HTTP/1.1\r\n\r\n", 1.2)
    # The body after the hole is not kept (it would be corrupt); the next request still parses.
    assert [(m.method, m.body, m.body_truncated) for m in msgs] == [
        ("POST", b"abc", True),
        ("GET", None, False),
    ]


def _connection(data_a: list[bytes], data_b: list[bytes]) -> list[Exchange]:
    exchanges: list[Exchange] = []
    info = ConnectionInfo("10.0.0.1", 5000, "10.0.0.2", 8080, 1.0, True)
    conn = HttpConnection(info, exchanges.append, lambda m: 0, lambda q, m: 0)
    for chunk in data_a:
        feed_all(conn.a_to_b, chunk)
    for chunk in data_b:
        feed_all(conn.b_to_a, chunk)
    conn.finish(9.0)
    return exchanges


def test_pipelined_requests_pair_in_order_with_interim_responses() -> None:
    reqs = b"".join(
        f"{method} /{i} HTTP/1.1\r\n\r\n".encode()
        for i, method in enumerate(("GET", "GET", "HEAD", "GET"), 1)
    )
    resps = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        b"HTTP/1.1 401 No\r\nContent-Length: 0\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"  # answer to HEAD: no body follows
    )
    exchanges = _connection([reqs], [resps])
    pairs = [(e.request.uri, e.response.status if e.response else None) for e in exchanges]
    assert pairs == [("/1", 200), ("/2", 401), ("/3", 200), ("/4", None)]
    assert exchanges[0].client_ip == "10.0.0.1" and exchanges[0].server_port == 8080


def test_client_found_by_content_not_by_first_packet() -> None:
    exchanges = _connection([b"HTTP/1.1 401 X\r\n\r\n"], [b"GET / HTTP/1.1\r\n\r\n"])
    # The response came first (no request seen yet), then the request went unanswered.
    assert [(e.request is None, e.response is None) for e in exchanges] == [
        (True, False),
        (False, True),
    ]
    assert {e.client_ip for e in exchanges} == {"10.0.0.2"}


def test_midstream_body_tail_without_newline_then_response_in_next_segment() -> None:
    stream = HttpStream(midstream=True)
    assert stream.data(b'ayName":"Bob"}]}}', 1.0) == []
    (msg,) = stream.data(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1.1)
    assert (msg.status, msg.ts, msg.after_gap) == (200, 1.1, True)
