"""HTTP/2 reading, h11 style: bytes in (frames laid out by hand, header blocks encoded with the
``hpack`` library or written by the ``h2`` library), exchanges and blind spots out."""

from __future__ import annotations

import h2.config
import h2.connection
import pytest
from h2_kit import Peer, data, goaway, ping, request, response, rst, settings, window_update

from analyzer.auth.extract import build_event, request_body_policy, response_body_policy
from analyzer.flows.tcp import ConnectionInfo
from analyzer.protocols.http1 import HttpStream
from analyzer.protocols.http2 import MAX_STREAMS
from analyzer.protocols.http2_frames import (
    MAX_HEADER_BLOCK,
    PREFACE,
    SETTINGS_HEADER_TABLE_SIZE,
    looks_like_frames,
)
from analyzer.protocols.http_exchange import Exchange, HttpConnection

TOKEN_FORM = b"grant_type=client_credentials&client_id=app&client_secret=s3cret"
TOKEN_JSON = b'{"access_token":"eyJhbGciOiJub25lIn0.e30.","token_type":"Bearer","expires_in":3599}'


class Wire:
    """An ``HttpConnection`` fed segment by segment, as the reassembler would: each
    direction's ``skip`` honoured (skipped bytes never reach ``data``), ``dead`` respected."""

    def __init__(self, syn: bool = True, piece: int = 0) -> None:
        info = ConnectionInfo("10.0.0.1", 50000, "10.0.0.2", 80, 1.0, syn)
        self.exchanges: list[Exchange] = []
        self.conn = HttpConnection(
            info, self.exchanges.append, request_body_policy, response_body_policy
        )
        self.piece = piece  # cut every segment into pieces of this size (0: whole)
        self.ts = 1.0
        self.skipped = 0  # bytes dropped by ``skip``, never handed to a consumer

    def send(self, from_client: bool, payload: bytes) -> None:
        stream = self.conn.a_to_b if from_client else self.conn.b_to_a
        self.ts += 0.01
        size = self.piece or len(payload) or 1
        for i in range(0, len(payload), size):
            chunk = payload[i : i + size]
            if stream.skip >= len(chunk):
                stream.skip -= len(chunk)
                self.skipped += len(chunk)
                continue
            if stream.skip:
                self.skipped += stream.skip
                chunk = chunk[stream.skip :]
                stream.skip = 0
            if not stream.dead:
                stream.data(chunk, self.ts)

    def client(self, *payloads: bytes) -> None:
        self.send(True, b"".join(payloads))

    def server(self, *payloads: bytes) -> None:
        self.send(False, b"".join(payloads))

    def finish(self) -> list[Exchange]:
        for stream in (self.conn.a_to_b, self.conn.b_to_a):
            stream.close(self.ts)
        self.conn.finish(self.ts)
        return self.exchanges

    def blind_spot(self) -> tuple[int, str] | None:
        assert self.conn.h2 is not None
        return self.conn.h2.blind_spot()


def started(piece: int = 0) -> tuple[Wire, Peer, Peer]:
    """A connection past both prefaces (client preface + SETTINGS, server SETTINGS + ACK)."""
    wire, client, server = Wire(piece=piece), Peer(), Peer()
    wire.client(PREFACE, settings((4, 65535)), window_update(0))
    wire.server(settings((3, 100)), settings(ack=True))
    wire.client(settings(ack=True))
    return wire, client, server


def summary(exchanges: list[Exchange]) -> list[tuple]:
    out = []
    for x in exchanges:
        req, resp = x.request, x.response
        out.append(
            (
                x.stream_id,
                req.method if req else None,
                req.uri if req else None,
                req.header("authorization") if req else None,
                resp.status if resp else None,
            )
        )
    return out


# -- prior knowledge, pairing, events -----------------------------------------------------------
@pytest.mark.parametrize("piece", [0, 1, 7])
def test_prior_knowledge_pairs_streams_and_makes_http2_events(piece: int) -> None:
    wire, client, server = started(piece)
    wire.client(client.headers(1, request("/a", ("authorization", "Bearer abc.def")), end=True))
    wire.client(client.headers(3, request("/b", ("authorization", "Basic YWxpY2U6cHc=")), end=True))
    # answers in the other order; the server's table carries the challenge across responses
    challenge = ("www-authenticate", 'Bearer realm="contoso"')
    wire.server(server.headers(3, response(401, challenge), end=True))
    wire.server(server.headers(1, response(401, challenge), end=True))
    exchanges = wire.finish()
    assert summary(exchanges) == [
        (3, "GET", "/b", "Basic YWxpY2U6cHc=", 401),
        (1, "GET", "/a", "Bearer abc.def", 401),
    ]
    events = [build_event(x) for x in exchanges]
    assert [(e.protocol, e.stream_id, e.scheme, e.host, e.user) for e in events] == [
        ("http/2", 3, "basic", "api.test", "alice"),
        ("http/2", 1, "bearer", "api.test", None),
    ]
    assert events[1].challenges[0].params == {"realm": "contoso"}
    assert wire.conn.client_is_a and wire.conn.is_http and wire.blind_spot() is None


def test_h2_library_conversation_is_read_whole_with_bodies_skipped() -> None:
    """Bytes written by the ``h2`` library (Huffman, dynamic table), a big body skipped."""
    cfg = h2.config.H2Configuration
    c = h2.connection.H2Connection(cfg(client_side=True))
    s = h2.connection.H2Connection(cfg(client_side=False))
    wire = Wire(piece=1000)
    c.initiate_connection()
    s.initiate_connection()
    for turn in range(2):
        c.send_headers(
            2 * turn + 1,
            request("/mail", ("authorization", f"Bearer token{turn}"), ("user-agent", "h2")),
            end_stream=True,
        )
        out = c.data_to_send()
        wire.client(out)
        s.receive_data(out)
        s.send_headers(2 * turn + 1, response(200, ("content-type", "text/html")))
        s.send_data(2 * turn + 1, b"x" * 16000, end_stream=True)
        out = s.data_to_send()
        wire.server(out)
        c.receive_data(out)
    exchanges = wire.finish()
    assert summary(exchanges) == [
        (1, "GET", "/mail", "Bearer token0", 200),
        (3, "GET", "/mail", "Bearer token1", 200),
    ]
    assert exchanges[0].request.header("user-agent") == "h2"
    assert exchanges[0].response.body is None  # not kept
    assert wire.skipped >= 30000  # the reassembler dropped the bodies without copying them


def test_token_request_form_and_padded_json_answer_are_kept() -> None:
    wire, client, server = started(piece=5)
    form = ("content-type", "application/x-www-form-urlencoded")
    wire.client(
        client.headers(1, request("/oauth2/v2.0/token", form, method="POST")),
        data(1, TOKEN_FORM[:20], pad=3),
        data(1, TOKEN_FORM[20:], end=True, pad=200),
    )
    wire.server(
        server.headers(1, response(200, ("content-type", "application/json"))),
        data(1, TOKEN_JSON[:30], pad=9),
        ping(),
        data(1, TOKEN_JSON[30:], end=True, pad=1),
    )
    (x,) = wire.finish()
    assert x.request.body == TOKEN_FORM and x.response.body == TOKEN_JSON
    assert not x.request.body_truncated and not x.response.body_truncated
    event = build_event(x)
    assert (event.grant_type, event.client_id, event.token_type) == (
        "client_credentials",
        "app",
        "Bearer",
    )
    assert event.access_token_fp and event.reasons == ("token-request",)


def test_kept_body_is_capped_and_marked_truncated() -> None:
    wire, client, server = started()
    wire.client(client.headers(1, request("/oauth2/token"), end=True))
    wire.server(server.headers(1, response(200, ("content-type", "application/json"))))
    wire.server(*(data(1, b"a" * 16384) for _ in range(70)), data(1, b"", end=True))
    (x,) = wire.finish()
    assert len(x.response.body) == 1 << 20 and x.response.body_truncated


def test_interim_response_and_trailers_are_not_the_answer() -> None:
    wire, client, server = started()
    wire.client(client.headers(1, request("/a", ("authorization", "Bearer t")), end=True))
    wire.server(server.headers(1, response(100)))
    wire.server(server.headers(1, response(401, ("www-authenticate", "Bearer"))))
    wire.server(data(1, b"denied"), server.headers(1, [("grpc-status", "0")], end=True))
    wire.client(client.headers(3, request("/b", ("authorization", "Bearer u")), end=True))
    wire.server(server.headers(3, response(200), end=True))
    assert summary(wire.finish()) == [
        (1, "GET", "/a", "Bearer t", 401),
        (3, "GET", "/b", "Bearer u", 200),
    ]


# -- header blocks: CONTINUATION, padding, priority, table size ---------------------------------
def test_continuation_padding_and_priority_flags() -> None:
    wire, client, server = started(piece=3)
    big = "Bearer " + "x" * 40000
    wire.client(
        client.headers(
            1, request("/big", ("authorization", big)), end=True, pad=17, priority=True, split=16384
        )
    )
    wire.server(server.headers(1, response(200), end=True, pad=255, split=1))
    (x,) = wire.finish()
    assert x.request.header("authorization") == big and x.response.status == 200


def test_dynamic_table_size_updates_and_settings_bound_the_decoder() -> None:
    wire, client, server = started()
    auth = ("authorization", "Bearer abc")
    wire.client(client.headers(1, request("/1", auth), end=True))
    client.encoder.header_table_size = 0  # a size update to 0 empties the table, then 256
    client.encoder.header_table_size = 256
    wire.client(client.headers(3, request("/2", auth), end=True))
    # the client allows the server a 64 KiB table: the server's encoder grows its table to it
    wire.client(settings((SETTINGS_HEADER_TABLE_SIZE, 65536)))
    server.encoder.header_table_size = 65536
    wire.server(server.headers(1, response(401, ("x-big", "y" * 5000)), end=True))
    wire.server(server.headers(3, response(401, ("x-big", "y" * 5000)), end=True))
    assert summary(wire.finish()) == [
        (1, "GET", "/1", "Bearer abc", 401),
        (3, "GET", "/2", "Bearer abc", 401),
    ]
    assert wire.blind_spot() is None


def test_table_size_beyond_what_settings_allowed_is_an_hpack_error() -> None:
    wire, client, server = started()
    server.encoder.header_table_size = 65536  # the client never allowed more than 4096
    wire.client(
        client.headers(1, request("/1"), end=True), client.headers(3, request("/2"), end=True)
    )
    wire.server(
        server.headers(1, response(401), end=True), server.headers(3, response(401), end=True)
    )
    exchanges = wire.finish()
    assert summary(exchanges) == [(1, "GET", "/1", None, None), (3, "GET", "/2", None, None)]
    count, detail = wire.blind_spot()
    assert count == 2 and "stream(s) 1, 3 not decoded: HPACK error" in detail


def test_oversized_header_block_is_named_not_guessed() -> None:
    wire, client, server = started()
    huge = ("authorization", "Bearer " + "z" * (MAX_HEADER_BLOCK + 10))
    wire.client(client.headers(1, request("/huge", huge), end=True, split=16384, huffman=False))
    wire.client(client.headers(3, request("/next", ("authorization", "Bearer n")), end=True))
    wire.server(
        server.headers(1, response(200), end=True), server.headers(3, response(200), end=True)
    )
    exchanges = wire.finish()
    assert [x.request for x in exchanges] == [None, None]  # the answers alone, no wrong heads
    count, detail = wire.blind_spot()
    assert count == 2 and "header block over 256 KiB" in detail


# -- resets, GOAWAY, pushes, caps ---------------------------------------------------------------
def test_reset_and_goaway_send_requests_out_unanswered() -> None:
    wire, client, server = started()
    for sid in (1, 3, 5, 7):
        wire.client(
            client.headers(sid, request(f"/{sid}", ("authorization", "Bearer r")), end=True)
        )
    wire.server(rst(1), server.headers(3, response(200), end=True), goaway(3))
    exchanges = summary(wire.exchanges)  # out as soon as their fate is known
    assert exchanges == [
        (1, "GET", "/1", "Bearer r", None),
        (3, "GET", "/3", "Bearer r", 200),
        (5, "GET", "/5", "Bearer r", None),
        (7, "GET", "/7", "Bearer r", None),
    ]
    wire.client(rst(9))  # a reset of a stream never seen is nothing
    assert len(wire.finish()) == 4


def test_server_push_pairs_with_its_promise() -> None:
    wire, client, server = started()
    wire.client(client.headers(1, request("/page"), end=True))
    wire.server(server.push(1, 2, request("/pushed.js")))
    wire.server(server.headers(1, response(200), end=True))
    wire.server(server.headers(2, response(401, ("www-authenticate", "Bearer")), end=True))
    assert summary(wire.finish()) == [
        (1, "GET", "/page", None, 200),
        (2, "GET", "/pushed.js", None, 401),
    ]


def test_open_streams_are_capped() -> None:
    wire, client, _ = started()
    for i in range(MAX_STREAMS + 5):
        wire.client(client.headers(2 * i + 1, request("/s"), end=True))
    assert len(wire.exchanges) == 5  # the oldest went out unanswered to make room
    assert len(wire.conn.h2.streams) == MAX_STREAMS
    assert len(wire.finish()) == MAX_STREAMS + 5


# -- detection: h2c upgrade, server first, not HTTP/2 -------------------------------------------
def test_h2c_upgrade_makes_the_request_stream_1() -> None:
    cfg = h2.config.H2Configuration
    c = h2.connection.H2Connection(cfg(client_side=True))
    s = h2.connection.H2Connection(cfg(client_side=False))
    wire = Wire(piece=11)
    token = c.initiate_upgrade_connection()
    upgrade = (
        b"GET /api HTTP/1.1\r\nHost: api.test\r\nAuthorization: Basic Ym9iOnB3\r\n"
        b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: "
        + token
        + b"\r\n\r\n"
    )
    wire.client(upgrade)
    s.initiate_upgrade_connection(token)
    s.send_headers(1, response(401, ("www-authenticate", "Basic realm=x")), end_stream=True)
    wire.server(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
        + s.data_to_send()
    )
    c.send_headers(3, request("/next", ("authorization", "Bearer after")), end_stream=True)
    wire.client(c.data_to_send())
    out = wire.finish()
    assert summary(out) == [
        (1, "GET", "/api", "Basic Ym9iOnB3", 401),
        (3, "GET", "/next", "Bearer after", None),
    ]
    assert [build_event(x).protocol for x in out] == ["http/2", "http/2"]


def test_upgrade_to_something_else_is_not_http2() -> None:
    wire = Wire()
    wire.client(
        b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nAuthorization: Bearer w\r\n\r\n"
    )
    wire.server(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello")
    (x,) = wire.finish()
    assert (x.stream_id, x.response.status) == (None, 101) and wire.conn.h2 is None


def test_server_settings_before_the_client_preface() -> None:
    wire, client, server = Wire(), Peer(), Peer()
    wire.server(settings((3, 100)))  # a server speaks first (TLS 1.3, h2 servers do)
    wire.client(PREFACE[:10])
    wire.client(
        PREFACE[10:],
        settings(),
        client.headers(1, request("/x", ("authorization", "Bearer s")), end=True),
    )
    wire.server(settings(ack=True), server.headers(1, response(200), end=True))
    assert summary(wire.finish()) == [(1, "GET", "/x", "Bearer s", 200)]
    assert wire.conn.client_is_a is True


def test_http1_then_binary_is_not_http2() -> None:
    wire = Wire()
    wire.client(b"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer one\r\n\r\n")
    wire.server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    wire.client(settings())  # garbage after HTTP/1.1: not a reason to read HTTP/2
    assert wire.conn.h2 is None and len(wire.finish()) == 1


@pytest.mark.parametrize(
    ("first", "verdict"),
    [
        (b"GET / HTTP/1.1\r\n", False),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", False),
        (settings((3, 100)), True),
        (settings((3, 100))[:7], None),
        (settings() + ping(), True),
        (settings()[:-1] + b"\x05", False),  # SETTINGS on stream 5
        (b"\x00\x00\x05\x07\x00\x00\x00\x00\x00abcde", False),  # GOAWAY shorter than 8
        (b"\x00\x40\x00\x00\x00\x00\x00\x00\x01" + b"d" * 100, None),  # a DATA frame, cut
        (bytes(range(256)) * 300, False),
    ],
)
def test_looks_like_frames(first: bytes, verdict: bool | None) -> None:
    assert looks_like_frames(first) is verdict


def test_a_stream_without_hooks_still_gives_up_on_the_preface() -> None:
    stream = HttpStream()
    assert stream.data(PREFACE + settings(), 1.0) == [] and stream.dead


# -- a capture begun mid-connection, HPACK errors, lost bytes -----------------------------------
def test_mid_connection_start_names_the_streams_and_resyncs_on_a_table_reset() -> None:
    client, server = Peer(), Peer()
    auth = ("authorization", "Bearer before")
    client.encoder.encode(request("/earlier", auth))  # sent before the capture began
    server.encoder.encode(response(200, ("server", "iis")))
    wire = Wire(syn=False)
    wire.client(client.headers(5, request("/earlier", auth), end=True))
    wire.server(server.headers(5, response(200, ("server", "iis")), end=True))
    wire.client(client.headers(7, request("/two", auth), end=True))
    client.encoder.header_table_size = 0  # the client empties its table: readable again
    client.encoder.header_table_size = 4096
    wire.client(client.headers(9, request("/three", ("authorization", "Bearer after")), end=True))
    wire.server(
        server.headers(7, response(200), end=True), server.headers(9, response(401), end=True)
    )
    exchanges = wire.finish()
    assert summary(exchanges) == [(9, "GET", "/three", "Bearer after", None)]
    count, detail = wire.blind_spot()
    assert count == 3
    assert detail == (
        "HTTP/2 stream(s) 5, 7, 9 not decoded: capture began mid-connection (HPACK table unknown)"
    )
    assert wire.conn.client_is_a is True  # the higher port is the client


def test_hpack_error_loses_the_rest_of_that_direction_only() -> None:
    wire, client, server = started()
    wire.client(client.headers(1, request("/ok", ("authorization", "Bearer a")), end=True))
    wire.client(client.block(1, 3, b"\xff\xff\xff\xff\x0f", end=True))  # index far past the table
    wire.client(client.headers(5, request("/lost", ("authorization", "Bearer c")), end=True))
    wire.server(server.headers(1, response(200), end=True))
    wire.server(server.headers(3, response(401, ("www-authenticate", "Bearer")), end=True))
    wire.server(server.headers(5, response(200), end=True))
    exchanges = wire.finish()
    assert summary(exchanges) == [
        (1, "GET", "/ok", "Bearer a", 200),
        (3, None, None, None, 401),
        (5, None, None, None, 200),
    ]
    count, detail = wire.blind_spot()
    assert count == 2 and detail.startswith("HTTP/2 stream(s) 3, 5 not decoded: HPACK error")


def test_lost_bytes_inside_a_kept_body_keep_the_framing() -> None:
    wire, client, server = started()
    wire.client(client.headers(1, request("/oauth2/token"), end=True))
    wire.server(server.headers(1, response(200)))
    frame = data(1, TOKEN_JSON, end=True)
    wire.server(frame[:20])
    wire.conn.b_to_a.gap(10, 2.0)
    wire.server(frame[30:])
    wire.client(client.headers(3, request("/after", ("authorization", "Bearer g")), end=True))
    wire.server(server.headers(3, response(200), end=True))
    exchanges = wire.finish()
    assert (
        exchanges[0].response.body_truncated
        and exchanges[0].response.body == TOKEN_JSON[:11] + TOKEN_JSON[21:]
    )
    assert summary(exchanges)[1] == (3, "GET", "/after", "Bearer g", 200)
    assert wire.blind_spot() is None


def test_lost_frames_end_the_direction_and_say_so() -> None:
    wire, client, _ = started()
    wire.client(client.headers(1, request("/a", ("authorization", "Bearer a")), end=True))
    wire.conn.b_to_a.gap(500, 2.0)
    assert wire.conn.b_to_a.dead and wire.conn.b_to_a.skip == 0
    wire.conn.a_to_b.gap(100, 2.0)
    exchanges = wire.finish()
    assert summary(exchanges) == [(1, "GET", "/a", "Bearer a", None)]
    assert wire.conn.requests_lost == 1  # the engine's request-lost blind spot
    count, detail = wire.blind_spot()
    assert count == 1
    assert "server -> client frames not followed after 500 bytes lost" in detail
    assert (
        "stream(s) 1 not decoded: its response was in frames that could not be followed" in detail
    )


def test_protocol_violations_stop_the_reader() -> None:
    wire, client, _ = started()
    wire.client(
        client.headers(1, request("/a"), split=5)[:30], data(1, b"x")
    )  # CONTINUATION expected
    assert wire.conn.a_to_b.dead
    assert "a header block was not continued" in wire.blind_spot()[1]


def test_header_block_cut_by_the_end_of_the_capture_is_a_lost_request() -> None:
    wire, client, _ = started()
    frames = client.headers(1, request("/cut", ("authorization", "Bearer c")), end=True)
    wire.client(frames[:-3])
    assert wire.finish() == [] and wire.conn.requests_lost == 1


def test_mangled_frames_never_raise() -> None:
    """Bytes flipped, cut, inserted and repeated in a conversation using every frame kind: the
    reader gives up or names blind spots, it never raises."""
    import random

    rng = random.Random(2026)
    client, server = Peer(), Peer()
    upstream, downstream = [PREFACE, settings((4, 65535))], [settings((1, 8192))]
    for i in range(4):
        sid = 2 * i + 1
        auth = ("authorization", f"Bearer t{i}")
        upstream.append(
            client.headers(sid, request(f"/{i}", auth), pad=i, priority=i == 1, split=7)
        )
        upstream.append(data(sid, b"grant_type=x", end=True, pad=3))
        downstream.append(server.push(sid, 2 * sid, request("/pushed")) if i == 2 else b"")
        downstream.append(server.headers(sid, response(200, ("x-a", "b")), pad=2))
        downstream.append(data(sid, b'{"access_token":"x"}', end=True, pad=1))
    upstream += [rst(3), ping()]
    downstream.append(goaway(5))
    sent = b"".join(upstream), b"".join(downstream)
    for _ in range(400):
        mangled = []
        for original in sent:
            buf = bytearray(original)
            for _ in range(rng.randint(1, 5)):
                i = rng.randrange(len(buf))
                roll = rng.random()
                if roll < 0.5:
                    buf[i] = rng.randrange(256)
                elif roll < 0.75:
                    del buf[i : i + rng.randint(1, 20)]
                else:
                    buf[i:i] = buf[rng.randrange(len(buf)) :][:40]
            mangled.append(bytes(buf))
        wire = Wire(syn=rng.random() < 0.8, piece=rng.choice([0, 1, 13]))
        wire.client(mangled[0])
        wire.server(mangled[1])
        for exchange in wire.finish():
            build_event(exchange)
        if wire.conn.h2 is not None:
            wire.conn.h2.blind_spot()
