"""small-basic.pcap: one Basic exchange over loopback (linktype NULL), the smallest capture."""

from __future__ import annotations

from ..capture import Capture
from ..constants import MS, SEC, T0, US
from ..encoding import http_date
from ..messages import Request, Response, basic
from ..wire import C, Conn, Host, null_loopback


def build_small_basic() -> Capture:
    cap = Capture("small-basic.pcap", "One Basic exchange over loopback (linktype NULL).")
    lo = Host("127.0.0.1", "00:00:00:00:00:00", ttl=64)
    lo_server = Host("127.0.0.1", "00:00:00:00:00:00", ttl=64)
    c = Conn(cap, 0, null_loopback, lo, 51000, lo_server, 8000, 0x10000000, 0x20000000)
    t = c.open(T0 + 7200 * SEC, rtt=40 * US)
    req = Request(
        "GET",
        "/private",
        [
            ("Host", "localhost:8000"),
            ("User-Agent", "curl/8.5.0"),
            basic("demo", "demo-password"),
            ("Accept", "*/*"),
        ],
    )
    resp = Response(
        200,
        "OK",
        [
            ("Server", "SimpleHTTP/0.6 Python/3.11.7"),
            ("Date", http_date(t)),
            ("Content-Type", "text/plain"),
            ("Content-Length", "{len}"),
        ],
        b"hello, demo\n",
    )
    t, e = cap.exchange(c, t + 50 * US, req, resp, "Basic demo:<13-char password>", think=300 * US)
    c.close(C, t + MS)
    cap.handshake("basic", "success", [e], "Basic over loopback")
    return cap
