"""messy.pcapng: two interfaces (Ethernet with 802.1Q/QinQ at microseconds, Linux SLL2 at
nanoseconds) full of TCP and HTTP awkwardness: odd segment splits, out-of-order and retransmitted
segments, pipelining, chunked token response, obsolete line folding, mid-stream start, sequence
wrap, IPv6, proxy auth, query-string token, TLS noise, RST and FIN closes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..capture import Capture
from ..constants import MS, SEC, T0, T0_S, TENANT, US
from ..encoding import b64, b64url, det_guid, http_date, json_bytes, prng
from ..keys import TestKey
from ..messages import (
    AuthHeader,
    Cred,
    HeaderItem,
    Request,
    Response,
    authorization,
    basic,
    challenge,
    digest_response,
)
from ..tls import tls_client_hello
from ..tokens import mint_rs256
from ..wire import C, Conn, Host, S, ether, qinq, sll2, vlan

T_MESSY = T0 + 3600 * SEC  # 10:00:00Z


def entra_token(key: TestKey, label: str, aud: str, iat: int, lifetime: int, **claims: Any) -> str:
    oid = det_guid("oid/" + label)
    payload = {
        "aud": aud,
        "iss": f"https://sts.windows.net/{TENANT}/",
        "iat": iat,
        "nbf": iat,
        "exp": iat + lifetime,
        "aio": b64url(prng("aio/" + label, 48)),
        "appid": det_guid("app/" + label),
        "oid": oid,
        "sub": b64url(prng("sub/" + label, 32)),
        "tid": TENANT,
        "uti": b64url(prng("uti/" + label, 16)),
        "ver": "1.0",
        **claims,
    }
    return mint_rs256(payload, key, kid=True)


def cuts_to_sizes(cuts: Sequence[int]) -> list[int]:
    """Segment lengths that end exactly at the given byte offsets."""
    out, prev = [], 0
    for cut in cuts:
        out.append(cut - prev)
        prev = cut
    return out


def build_messy(keys: dict[str, TestKey]) -> Capture:
    cap = Capture(
        "messy.pcapng",
        "Two-interface pcapng (Ethernet with 802.1Q/QinQ at microsecond resolution, Linux SLL2 "
        "at nanosecond resolution) full of TCP and HTTP awkwardness: odd segment splits, "
        "out-of-order and retransmitted segments, pipelining, chunked token response, obsolete "
        "line folding, odd header case, mid-stream start, sequence wrap, IPv6, proxy auth, "
        "query-string token, TLS noise, RST and FIN closes.",
    )
    ka = keys["acs"]
    app_aud = "api://contoso-inventory"
    iat = T0_S + 3600 - 600
    tok1 = cap.token(
        entra_token(ka, "tok1", app_aud, iat, 3900, upn="dave@contoso.com", scp="Items.Read"),
        "bearer",
        ka,
        note="M1 r1",
    )
    tok2 = cap.token(
        entra_token(
            ka, "tok2", app_aud, iat + 5, 3900, upn="erin@contoso.com", scp="Items.Read Items.Write"
        ),
        "bearer",
        ka,
        note="M1 r2/r3",
    )
    tok3 = cap.token(
        entra_token(
            ka, "tok3", app_aud, iat - 7200, 3600, upn="frank@contoso.com", scp="Items.Read"
        ),
        "bearer",
        ka,
        note="M1 r5, expired",
    )
    tok4 = cap.token(
        entra_token(ka, "tok4", "api://contoso-orders", iat + 30, 3900, roles=["Orders.Write"]),
        "bearer",
        ka,
        note="M3 seq wrap",
    )
    tok5 = cap.token(
        entra_token(
            ka,
            "tok5",
            "https://graph.contoso.local",
            iat + 40,
            3900,
            upn="gina@contoso.com",
            scp="User.Read",
        ),
        "bearer",
        ka,
        note="M7 query string",
    )

    # interface 0: Ethernet, microseconds ----------------------------------------------------------
    v100 = vlan(100)
    cl1 = Host("192.168.100.21", "02:00:00:64:00:15", ttl=64)
    app = Host("192.168.100.80", "02:00:00:64:00:50", ttl=64)
    app_hdrs = [("Content-Type", "application/json; charset=utf-8"), ("Server", "Kestrel")]

    def app_resp(
        status: int, reason: str, t: int, body: bytes, extra: Sequence[HeaderItem] = ()
    ) -> Response:
        return Response(
            status,
            reason,
            [("Content-Length", "{len}"), *app_hdrs, ("Date", http_date(t)), *extra],
            body,
        )

    # M1: VLAN 100, port 8080, keep-alive, odd splits, out of order, dup, odd case, pipelining.
    c = Conn(cap, 0, v100, cl1, 51000, app, 8080, 0x1A2B3C4D, 0x5E6F7081)
    t = c.open(T_MESSY + 10 * MS, rtt=150 * US)
    ua = "python-requests/2.32.3"
    r1 = Request(
        "GET",
        "/api/v1/profile",
        [
            ("Host", "app.contoso.local:8080"),
            authorization("Bearer", tok1),
            ("Accept", "application/json"),
            ("User-Agent", ua),
            ("Connection", "keep-alive"),
        ],
    )
    raw = r1.encode()
    in_name = raw.index(b"Authorization") + 5
    in_value = raw.index(tok1.encode()) + 300
    cr_lf = raw.index(b"application/json\r\n") + len(b"application/json\r")
    sizes = cuts_to_sizes([in_name, in_value, cr_lf, len(raw)])
    t, e1 = cap.exchange(
        c,
        t + 200 * US,
        r1,
        app_resp(200, "OK", t, b'{"name":"Dave","id":7}'),
        "head split inside 'Authorization', inside the token, between CR and LF; "
        "segments 3 and 2 swapped, segment 3 duplicated",
        req_sizes=sizes,
        req_plan=[0, 2, 1, 2, 3],
    )
    r2 = Request(
        "GET",
        "/api/v1/items",
        [
            ("Host", "app.contoso.local:8080"),
            authorization("Bearer", tok2, header="aUTHORIZATION"),
            ("User-Agent", ua),
            ("Accept", "*/*"),
        ],
        query=[("page", "2"), ("size", "50")],
    )
    t, e2 = cap.exchange(
        c,
        t + 80 * MS,
        r2,
        app_resp(200, "OK", t, b'{"items":[],"page":2}'),
        "header name in odd case: aUTHORIZATION",
    )
    # A pipelined pair in one segment: short opaque (reference) tokens so both fit in one MSS.
    ref_ok = cap.token(b64url(prng("ref-token-ok", 32)), "bearer", None, note="M1 r3 opaque")
    ref_old = cap.token(b64url(prng("ref-token-old", 32)), "bearer", None, note="M1 r4 opaque")
    r3 = Request(
        "GET",
        "/api/v1/items/17",
        [("Host", "app.contoso.local:8080"), authorization("Bearer", ref_ok), ("User-Agent", ua)],
    )
    r4 = Request(
        "GET",
        "/api/v1/items/18",
        [("Host", "app.contoso.local:8080"), authorization("Bearer", ref_old), ("User-Agent", ua)],
    )

    def expired_401(t: int, when: str) -> Response:
        return Response(
            401,
            "Unauthorized",
            [
                ("Content-Length", "0"),
                ("Server", "Kestrel"),
                ("Date", http_date(t)),
                challenge(
                    "Bearer",
                    [
                        ("realm", "app.contoso.local", True),
                        ("error", "invalid_token", True),
                        ("error_description", f"The token expired at '{when}'", True),
                    ],
                ),
            ],
        )

    resp3 = app_resp(200, "OK", t, b'{"id":17,"name":"widget"}')
    resp4 = expired_401(t + 90 * MS, "03/02/2026 09:12:00")
    pair = r3.encode() + r4.encode()
    assert len(pair) <= 1460
    req_ts, last = c.send(C, t + 90 * MS, pair)
    resp_ts, last = c.send(S, last + 3 * MS, resp3.encode() + resp4.encode())
    e3 = cap.record(c, r3, resp3, req_ts, resp_ts, "pipelined pair, first (both in one segment)")
    e4 = cap.record(c, r4, resp4, req_ts, resp_ts, "pipelined pair, second: expired -> 401")
    r5 = Request(
        "GET",
        "/api/v1/items/19",
        [("Host", "app.contoso.local:8080"), authorization("Bearer", tok3), ("User-Agent", ua)],
    )
    t, e5 = cap.exchange(
        c, last + 40 * MS, r5, expired_401(last, "03/02/2026 08:50:00"), "expired JWT -> 401"
    )
    r6 = Request("GET", "/health", [("Host", "app.contoso.local:8080"), ("User-Agent", ua)])
    t, none_event = cap.exchange(c, t + 50 * MS, r6, app_resp(200, "OK", t, b'{"ok":true}'))
    assert none_event is None
    t = c.close(C, t + 20 * MS)
    cap.handshake("bearer", "success", [e1], "split head")
    cap.handshake("bearer", "success", [e2, e3], "odd-case header, pipelined")
    cap.handshake("bearer", "failure", [e4], "expired reference token")
    cap.handshake("bearer", "failure", [e5], "expired JWT")

    # M2: QinQ 200/300, proxy 3128: 407, Proxy-Authorization Basic, overlap retransmit, RST.
    cl2 = Host("10.20.30.41", "02:00:00:c8:00:29", ttl=128)
    proxy = Host("10.20.0.5", "02:00:00:c8:00:05", ttl=64)
    c = Conn(cap, 0, qinq(200, 300), cl2, 53210, proxy, 3128, 0x00C0FFEE, 0x0BADF00D)
    t = c.open(T_MESSY + 400 * MS, rtt=220 * US)
    firefox = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"

    def proxied(path: str, auth: AuthHeader | None) -> Request:
        hdrs: list[HeaderItem] = [
            ("Host", "www.example.org"),
            ("User-Agent", firefox),
            ("Accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
        ]
        if auth:
            hdrs.append(auth)
        hdrs.append(("Proxy-Connection", "keep-alive"))
        return Request("GET", "http://www.example.org" + path, hdrs)

    denied = b"<html><body><h1>ERROR: Cache Access Denied</h1></body></html>\n"
    resp = Response(
        407,
        "Proxy Authentication Required",
        [
            ("Server", "squid/5.7"),
            ("Mime-Version", "1.0"),
            ("Date", http_date(t)),
            ("Content-Type", "text/html;charset=utf-8"),
            ("Content-Length", "{len}"),
            ("X-Squid-Error", "ERR_CACHE_ACCESS_DENIED 0"),
            ("Vary", "Accept-Language"),
            challenge("Basic", [("realm", "Contoso Proxy", True)], header="Proxy-Authenticate"),
            ("X-Cache", "MISS from proxy01"),
            ("Via", "1.1 proxy01 (squid/5.7)"),
            ("Connection", "keep-alive"),
        ],
        denied,
    )
    t, p1 = cap.exchange(c, t + 100 * US, proxied("/", None), resp, "proxy asks for credentials")
    page = (
        b"<!doctype html>\n<html><head><title>Example Domain</title></head><body>\n"
        + b"".join(
            b"<p>Paragraph %04d of the example page, padding for segments.</p>\n" % i
            for i in range(48)
        )
        + b"</body></html>\n"
    )
    resp = Response(
        200,
        "OK",
        [
            ("Content-Type", "text/html; charset=UTF-8"),
            ("Date", http_date(t + 30 * MS)),
            ("Content-Length", "{len}"),
            ("X-Cache", "MISS from proxy01"),
            ("Via", "1.1 proxy01 (squid/5.7)"),
            ("Connection", "keep-alive"),
        ],
        page,
    )
    t, p2 = cap.exchange(
        c,
        t + 40 * MS,
        proxied("/", basic("bob", "Tr0ub4dor&3", header="Proxy-Authorization")),
        resp,
        "Proxy-Authorization Basic; response has an overlapping retransmission",
        resp_plan=[0, 1, (1000, 2460), 2],
        think=30 * MS,
    )
    req = proxied("/favicon.ico", basic("bob", "Tr0ub4dor&3", header="Proxy-Authorization"))
    req_ts, last = c.send(C, t + 20 * MS, req.encode())
    p3 = cap.record(c, req, None, req_ts, None, "no response: the client resets the connection")
    c.reset(C, last + 3 * MS)
    cap.handshake("basic", "success", [p1, p2], "407 then Proxy-Authorization Basic")
    cap.handshake("basic", "incomplete", [p3], "request without response (RST)")

    # M3: VLAN 100, sequence numbers wrap past 2**32 in both directions.
    cl3 = Host("192.168.100.22", "02:00:00:64:00:16", ttl=64)
    api = Host("192.168.100.81", "02:00:00:64:00:51", ttl=64)
    c = Conn(cap, 0, v100, cl3, 50000, api, 80, 2**32 - 1200, 2**32 - 150)
    t = c.open(T_MESSY + 900 * MS, rtt=120 * US)
    order = json_bytes(
        {"orderId": 90210, "lines": [{"sku": f"SKU-{i:05d}", "qty": i % 7 + 1} for i in range(60)]}
    )
    req = Request(
        "POST",
        "/orders",
        [
            ("Host", "api.contoso.local"),
            authorization("Bearer", tok4),
            ("Content-Type", "application/json"),
            ("Content-Length", "{len}"),
            ("User-Agent", "okhttp/4.12.0"),
        ],
        order,
    )
    resp = Response(
        201,
        "Created",
        [
            ("Content-Type", "application/json"),
            ("Location", "/orders/90210"),
            ("Date", http_date(t)),
            ("Content-Length", "{len}"),
        ],
        b'{"orderId":90210,"status":"accepted"}',
    )
    assert len(req.encode()) > 1200
    t, e_wrap = cap.exchange(
        c, t + 100 * US, req, resp, "client and server sequence numbers wrap past 2**32"
    )
    t = c.close(C, t + 15 * MS)
    cap.handshake("bearer", "success", [e_wrap], "sequence wrap")

    # M4: untagged, TLS ClientHello to 443 and random bytes back: must yield nothing.
    cl4 = Host("192.168.100.23", "02:00:00:64:00:17", ttl=64)
    web = Host("93.184.215.14", "02:00:00:64:00:01", ttl=55)
    c = Conn(cap, 0, ether, cl4, 50110, web, 443, 0x77001122, 0x33445566)
    t = c.open(T_MESSY + 1300 * MS, rtt=11 * MS)
    _, last = c.send(C, t + 100 * US, tls_client_hello("www.example.com"))
    _, last = c.send(S, last + 11 * MS, prng("tls-noise", 2100))
    c.reset(C, last + 2 * MS)

    # interface 1: Linux SLL2, nanoseconds ---------------------------------------------------------
    me = Host("10.9.0.15", "02:00:00:09:00:0f", ttl=64)
    jitter = 123  # ns, so the interface's nanosecond resolution shows

    # M5: capture starts mid-stream (no SYN): tail of an earlier response, then a full request.
    lync = Host("10.9.0.80", "02:00:00:09:00:50", ttl=128)
    c = Conn(cap, 1, sll2(me), me, 41022, lync, 80, 0x4000_0000, 0x6000_0000)
    t = T_MESSY + 200 * MS + jitter
    c.send(S, t, b'ayName":"Bob Martinez","uri":"sip:bob@contoso.com"}]}}', ack=True)
    cwt = "cwt=" + b64(prng("cwt", 180))
    req = Request(
        "GET",
        "/ucwa/oauth/v1/applications/101459302145/people/contacts",
        [
            ("Host", "lyncweb.contoso.com"),
            ("Accept", "application/json"),
            authorization("Bearer", cwt),
            ("X-Ms-Origin", "https://lyncweb.contoso.com"),
            ("User-Agent", "UCWA Samples"),
        ],
    )
    resp = Response(
        200,
        "OK",
        [
            ("Cache-Control", "no-cache"),
            ("Content-Type", "application/json"),
            ("Server", "Microsoft-IIS/10.0"),
            ("X-MS-Server-Fqdn", "sfbfe01.contoso.com"),
            ("X-Powered-By", "ASP.NET"),
            ("Date", http_date(t)),
            ("Content-Length", "{len}"),
        ],
        b'{"_embedded":{"contact":[]}}',
    )
    t, e_mid = cap.exchange(
        c, t + 40 * MS, req, resp, "capture starts mid-stream; web-ticket (cwt=) bearer"
    )
    t = c.close(C, t + 10 * MS)
    cap.handshake("bearer", "success", [e_mid], "Lync web ticket")

    # M6: IPv6, Digest with an obs-folded challenge.
    me6 = Host("2001:db8:10::21", me.mac, ttl=64)
    files6 = Host("2001:db8:10::80", "02:00:00:09:00:80", ttl=64)
    c = Conn(cap, 1, sll2(me6), me6, 41100, files6, 80, 0x0A0B0C0D, 0x01020304)
    t = c.open(T_MESSY + 600 * MS + jitter, rtt=95 * US)
    realm, nonce = "files@contoso.local", b64url(prng("nonce", 24))
    opaque = prng("opaque", 16).hex()
    uri = "/dav/q1-report.docx"
    folded = challenge(
        "Digest",
        [
            ("realm", realm, True),
            ("nonce", nonce, True),
            ("algorithm", "MD5", False),
            ("qop", "auth", True),
            ("opaque", opaque, True),
        ],
        fold=",\r\n\t",
    )
    dav_ua = "Microsoft-WebDAV-MiniRedir/10.0.19045"

    def dav(auth: AuthHeader | None) -> Request:
        hdrs: list[HeaderItem] = [("User-Agent", dav_ua), ("Host", "files.contoso.local")]
        if auth:
            hdrs.append(auth)
        return Request("GET", uri, [*hdrs, ("Connection", "Keep-Alive")])

    resp = Response(
        401,
        "Unauthorized",
        [
            ("Date", http_date(t)),
            ("Server", "Apache/2.4.58 (Debian)"),
            folded,
            ("Content-Length", "{len}"),
            ("Content-Type", "text/html; charset=iso-8859-1"),
        ],
        b"<html><body>401 Unauthorized</body></html>\n",
    )
    t, d1 = cap.exchange(c, t + 100 * US, dav(None), resp, "Digest challenge with obs-fold")
    cnonce = prng("cnonce", 8).hex()
    answer = digest_response(
        "carol", realm, "carol-digest-pw", "GET", uri, nonce, "00000001", cnonce
    )
    text = (
        f'username="carol", realm="{realm}", nonce="{nonce}", uri="{uri}", algorithm=MD5, '
        f'response="{answer}", opaque="{opaque}", qop=auth, nc=00000001, cnonce="{cnonce}"'
    )
    resp = Response(
        200,
        "OK",
        [
            ("Date", http_date(t)),
            ("Server", "Apache/2.4.58 (Debian)"),
            ("Content-Length", "{len}"),
            ("Content-Type", "application/octet-stream"),
        ],
        prng("docx", 900),
    )
    t, d2 = cap.exchange(
        c,
        t + 5 * MS,
        dav(authorization("Digest", text, user="carol")),
        resp,
        "Digest response over IPv6",
    )
    t = c.close(C, t + 10 * MS)
    cap.handshake("digest", "success", [d1, d2], "Digest over IPv6")

    # M7: access_token in the query string.
    graph = Host("10.9.0.81", "02:00:00:09:00:51", ttl=64)
    c = Conn(cap, 1, sll2(me), me, 41030, graph, 80, 0x12121212, 0x34343434)
    t = c.open(T_MESSY + 1100 * MS + jitter, rtt=130 * US)
    q = Request(
        "GET",
        "/v1.0/me",
        [("Host", "graph.contoso.local"), ("User-Agent", "curl/8.5.0"), ("Accept", "*/*")],
        query=[("access_token", tok5), ("$select", "displayName")],
        query_cred=Cred("bearer", "access_token", tok5, source="query"),
    )
    resp = Response(
        200,
        "OK",
        [("Content-Type", "application/json"), ("Date", http_date(t)), ("Content-Length", "{len}")],
        b'{"displayName":"Gina"}',
    )
    t, e_q = cap.exchange(c, t + 100 * US, q, resp, "access_token in the query string")
    t = c.close(S, t + 10 * MS)
    cap.handshake("bearer", "success", [e_q], "query-string token")

    # M8: token endpoint with a chunked JSON response split inside chunk-size lines.
    login = Host("20.190.151.68", "02:00:00:09:00:01", ttl=113)
    c = Conn(cap, 1, sll2(me), me, 41040, login, 80, 0x55AA55AA, 0x66BB66BB)
    t = c.open(T_MESSY + 1500 * MS + jitter, rtt=8 * MS)
    client_id = det_guid("native-app")
    scope = "https://graph.microsoft.com/.default offline_access openid"
    code = "0.AXkA" + b64url(prng("auth-code", 300))
    form = [
        ("client_id", client_id),
        ("scope", scope),
        ("code", code),
        ("redirect_uri", "http://localhost:8400/"),
        ("grant_type", "authorization_code"),
        ("client_secret", "Qx8~" + b64url(prng("secret", 27))),
    ]
    req = Request(
        "POST",
        f"/{TENANT}/oauth2/v2.0/token",
        [
            ("Host", "login.microsoftonline.com"),
            ("User-Agent", "python-requests/2.32.3"),
            ("Accept", "application/json"),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Content-Length", "{len}"),
        ],
        form=form,
    )
    t_iss = T0_S + 3600 + 2
    access = cap.token(
        entra_token(
            ka,
            "tok6",
            "https://graph.microsoft.com",
            t_iss,
            4232,
            upn="hank@contoso.com",
            scp="User.Read",
        ),
        "access_token",
        ka,
        in_response=True,
        note="M8 token response",
    )
    id_tok = cap.token(
        entra_token(
            ka, "tok7", client_id, t_iss, 3600, name="Hank", preferred_username="hank@contoso.com"
        ),
        "id_token",
        ka,
        in_response=True,
        note="M8 id_token",
    )
    refresh = "0.AXkA" + b64url(prng("refresh", 600))
    cap.token(refresh, "refresh_token", None, in_response=True, note="opaque refresh token")
    tok_json = {
        "token_type": "Bearer",
        "scope": scope,
        "expires_in": 4232,
        "ext_expires_in": 4232,
        "access_token": access,
        "refresh_token": refresh,
        "id_token": id_tok,
    }
    body = json_bytes(tok_json)
    resp = Response(
        200,
        "OK",
        [
            ("Cache-Control", "no-store, no-cache"),
            ("Pragma", "no-cache"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Type", "application/json; charset=utf-8"),
            ("Expires", "-1"),
            ("x-ms-request-id", det_guid("m8")),
            ("Date", http_date(t)),
        ],
        body,
        chunks=[700, 1300, 900],
        json_body=tok_json,
    )
    raw_resp = resp.encode()
    head_end = raw_resp.index(b"\r\n\r\n") + 4
    lines = [head_end + i for i in resp.chunk_line_offsets()]
    size_line_2 = raw_resp[lines[2] : raw_resp.index(b"\r\n", lines[2])]
    resp_sizes = cuts_to_sizes(
        [
            head_end - 1,  # response head cut between its final CR and LF
            lines[1] + 2,  # inside the second chunk-size line
            lines[2] + len(size_line_2) + 1,  # between CR and LF of the third chunk-size line
        ]
    )
    t, e_tok = cap.exchange(
        c,
        t + 100 * US,
        req,
        resp,
        "authorization_code grant; chunked JSON",
        resp_sizes=resp_sizes,
        think=120 * MS,
    )
    t = c.close(S, t + 30 * MS)
    cap.handshake("oauth-token-endpoint", "success", [e_tok], "authorization_code grant")
    return cap
