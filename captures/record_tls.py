#!/usr/bin/env python3
"""Record ``healthy-oauth-tls.pcapng``: a real loopback HTTPS capture of a healthy SfB -> Exchange
S2S OAuth flow, with the TLS key log that decrypts it and the events the analyzer must find.

Run by hand from the repository root (needs dumpcap with capture rights on ``lo``, and ports 8443
and 8444 free)::

    python captures/record_tls.py             # rewrites captures/healthy-oauth-tls.*
    python captures/record_tls.py --out DIR   # writes them to DIR instead

What happens: dumpcap captures ``lo`` (tcp port 8443 or 8444); two ``http.server`` HTTPS servers
play Exchange (8443, ``mail.contoso.com``) and Skype for Business (8444, ``sfbpool01.contoso.com``)
with a self-signed certificate made here; an ``http.client`` client, with ``SSLKEYLOGFILE`` set,
connects to 127.0.0.1 (SNI and Host name the servers; MSS 1460, so the 3.5 KB requests span
TCP segments) and does, on separate connections:

1. Exchange fetches SfB's auth metadata ``GET /metadata/json/1`` (the SfB key's certificate);
2. SfB fetches Exchange's ``GET /autodiscover/metadata/json/1``;
3. SfB probes the realm (``Bearer`` with no token -> 401 Bearer challenge naming SfB among the
   trusted issuers), then sends 5 EWS POSTs on the same connection, each with an unsigned outer
   token carrying an RS256 actor token signed by ``keys/sfb.key.pem``; Exchange checks the actor
   signature against the certificate from step 1, the audience and the times -> 200.

Content is deterministic, bytes are not: TLS randomness, ephemeral ports and timestamps change on
every run, and token times are taken from the clock (valid at recording time: outer 8 h, actor
24 h). ``ts`` / ``response_ts`` in the expected file are the client's clock when it sent the
request / read the response (within a few ms of the capture's times). TEST keys only.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import http.client
import json
import os
import select
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.x509.oid import NameOID

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from generate import (  # noqa: E402 - the sibling package, found through the path set above
    ACS_ID,
    ALICE,
    BOB,
    EXCHANGE_ID,
    REALM,
    SFB_ID,
    Capture,
    ExchangeWorld,
    Request,
    Response,
    authorization,
    challenge,
    create_item,
    create_item_response,
    exchange_metadata,
    find_item_inbox,
    find_item_response,
    finish,
    get_folder,
    get_folder_response,
    http_date,
    json_bytes,
    load_keys,
    mint_rs256,
    mint_unsigned,
    oof_request,
    oof_response,
    sfb_metadata,
    user_context,
)

NAME = "healthy-oauth-tls"
EXCHANGE_PORT, SFB_PORT = 8443, 8444
EXCHANGE_HOST, SFB_HOST = "mail.contoso.com", "sfbpool01.contoso.com"
LOOPBACK = "127.0.0.1"
SFB_ISS = f"{SFB_ID}@{REALM}"
EX_AUD = f"{EXCHANGE_ID}/{EXCHANGE_HOST}@{REALM}"
EWS = "/EWS/Exchange.asmx"
#: Ethernet-sized segments (loopback's own MSS is ~64 KB): TLS records then span TCP segments.
MSS = 1460


# ---------------------------------------------------------------------------------------------
# The servers
# ---------------------------------------------------------------------------------------------


def server_certificate(folder: Path) -> tuple[Path, Path]:
    """A throwaway self-signed P-256 certificate for both server names; (cert, key) files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, EXCHANGE_HOST),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TEST KEY - oauth-traffic-analyzer"),
        ]
    )
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(EXCHANGE_HOST), x509.DNSName(SFB_HOST)]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "server.cert.pem", folder / "server.key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


App = Callable[[str, str, Message, bytes], Response]


class _Handler(BaseHTTPRequestHandler):
    """Reads a request, asks the server's app for the Response, writes its exact bytes."""

    protocol_version = "HTTP/1.1"  # keep-alive

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        server: _Server = self.server  # type: ignore[assignment]
        resp = server.app(self.command, self.path, self.headers, body)
        server.served.append(resp)
        self.wfile.write(resp.encode())
        self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, app: App, context: ssl.SSLContext) -> None:
        super().__init__((LOOPBACK, port), _Handler)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.app = app
        self.served: list[Response] = []  # every response, in order (the client reads them back)


class ExchangeApp:
    """Exchange 2019 as far as this flow needs: its metadata, and EWS behind S2S OAuth."""

    def __init__(self, world: ExchangeWorld, exchange_doc: dict[str, Any]) -> None:
        self.world = world
        self.doc = exchange_doc
        self.partner_certs: list[x509.Certificate] = []  # from SfB's metadata (step 1)

    def __call__(self, method: str, path: str, headers: Message, body: bytes) -> Response:
        t = time.time_ns()
        w = self.world
        if path == "/autodiscover/metadata/json/1" and method == "GET":
            head = w.ex_headers(t, "meta-ex", "text/json; charset=utf-8")
            return Response(200, "OK", head, json_bytes(self.doc))
        if path.lower() != EWS.lower() or method != "POST":
            return Response(404, "Not Found", w.ex_headers(t, "404", None))
        auth = headers.get("Authorization") or ""
        crid = headers.get("client-request-id") or ""
        scheme, _, token = auth.partition(" ")
        problem = self.check(token.strip()) if scheme.lower() == "bearer" and token.strip() else ""
        if scheme.lower() != "bearer" or not token.strip() or problem:
            bearer = [
                ("client_id", EXCHANGE_ID, True),
                ("trusted_issuers", f"{ACS_ID}@*,{SFB_ISS}", True),
                ("token_types", "app_asserted_user_v1 service_asserted_app_v1", True),
            ]
            if problem:
                bearer.append(("error", "invalid_token", True))
            challenges = [challenge("Bearer", bearer), challenge("Negotiate"), challenge("NTLM")]
            return Response(401, "Unauthorized", w.ex_headers(t, "probe", None, extra=challenges))
        op, answer = soap_answer(body, crid)
        extra = [("client-request-id", crid)] if crid else []
        return Response(200, "OK", w.ex_headers(t, crid or op, extra=extra), answer)

    def check(self, outer: str) -> str:
        """Why an S2S outer+actor token is not acceptable ('' when it is)."""
        try:
            claims = jwt.decode(outer, options={"verify_signature": False})
            actor = claims["actortoken"]
            actor_claims = jwt.decode(actor, options={"verify_signature": False})
        except (jwt.PyJWTError, KeyError, TypeError):
            return "unreadable token"
        now = time.time()
        for c in (claims, actor_claims):
            if c.get("aud") != EX_AUD or c.get("iss") != SFB_ISS:
                return "audience or issuer"
            if not float(c["nbf"]) - 300 <= now <= float(c["exp"]) + 300:
                return "expired or not yet valid"
        if not any(rs256_ok(actor, cert) for cert in self.partner_certs):
            return "actor signature"
        return ""


def soap_answer(body: bytes, label: str) -> tuple[str, bytes]:
    """The EWS operation a SOAP request asks for, and Exchange's answer to it."""
    if b"<m:GetFolder>" in body:
        return "GetFolder", get_folder_response(label)
    if b"<m:CreateItem " in body:
        return "CreateItem", create_item_response(label)
    if b"<m:FindItem " in body:
        return "FindItem", find_item_response()
    return "GetUserOofSettings", oof_response()


def rs256_ok(token: str, cert: x509.Certificate) -> bool:
    head, body, sig = token.split(".")
    try:
        cert.public_key().verify(  # type: ignore[union-attr, call-arg]
            base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)),
            f"{head}.{body}".encode(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def sfb_app(doc: dict[str, Any]) -> App:
    """The SfB pool: serves its auth metadata document, nothing else."""

    def app(method: str, path: str, headers: Message, body: bytes) -> Response:
        t = time.time_ns()
        head = [("Server", "Microsoft-IIS/10.0"), ("X-MS-Server-Fqdn", "sfbfe01.contoso.com")]
        if path != "/metadata/json/1" or method != "GET":
            return Response(404, "Not Found", [*head, ("Content-Length", "{len}")])
        return Response(
            200,
            "OK",
            [
                ("Cache-Control", "no-cache"),
                ("Content-Type", "application/json; charset=utf-8"),
                *head,
                ("X-Content-Type-Options", "nosniff"),
                ("X-Powered-By", "ASP.NET"),
                ("Date", http_date(t)),
                ("Content-Length", "{len}"),
            ],
            json_bytes(doc),
        )

    return app


# ---------------------------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------------------------


@dataclass
class Endpoints:
    """What ``generate.Capture.record`` reads of a connection."""

    endpoints: tuple[str, int, str, int]


class Client:
    """An http.client HTTPS client that records each exchange as an expected event."""

    def __init__(self, cap: Capture, context: ssl.SSLContext, servers: dict[int, _Server]):
        self.cap = cap
        self.context = context
        self.servers = servers

    def connect(self, host: str, port: int) -> tuple[http.client.HTTPSConnection, Endpoints]:
        conn = http.client.HTTPSConnection(host, port, context=self.context, timeout=10)

        def to_loopback(address: tuple[str, int], timeout: float, *_: Any) -> socket.socket:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, MSS)
            sock.settimeout(timeout)
            sock.connect((LOOPBACK, address[1]))
            return sock

        conn._create_connection = to_loopback  # type: ignore[attr-defined]  # SNI stays `host`
        conn.connect()
        assert conn.sock is not None
        client_port = conn.sock.getsockname()[1]
        return conn, Endpoints((LOOPBACK, client_port, LOOPBACK, port))

    def send(
        self, conn: http.client.HTTPSConnection, where: Endpoints, req: Request, note: str
    ) -> Response:
        """Send ``req`` byte for byte as ``Request.encode`` renders it; check the answer."""
        server = self.servers[where.endpoints[3]]
        before = len(server.served)
        sent_at = time.time_ns()
        conn.putrequest(req.method, req.target(), skip_host=True, skip_accept_encoding=True)
        for item in req.headers:
            name, value = item if isinstance(item, tuple) else (item.name, item.value)
            conn.putheader(name, value.replace("{len}", str(len(req.body))))
        conn.endheaders(req.body or None)
        answer = conn.getresponse()
        data = answer.read()
        read_at = time.time_ns()
        resp = server.served[before]
        assert answer.status == resp.status and data == resp.encoded_body(), note
        self.cap.record(where, req, resp, sent_at, read_at, note)  # type: ignore[arg-type]
        return resp


# ---------------------------------------------------------------------------------------------
# Capture and flow
# ---------------------------------------------------------------------------------------------


class Dumpcap:
    """dumpcap on ``lo`` for the two server ports, started and stopped by this script only."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Dumpcap:
        dumpcap = shutil.which("dumpcap")
        if dumpcap is None:
            raise SystemExit("dumpcap not found: install wireshark-common / tshark")
        port_filter = f"tcp port {EXCHANGE_PORT} or tcp port {SFB_PORT}"
        cmd = [dumpcap, "-i", "lo", "-f", port_filter, "-w", str(self.out), "-q"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert self.proc.stderr is not None
        deadline, said = time.monotonic() + 10, b""
        while b"Capturing on" not in said:
            ready, _, _ = select.select([self.proc.stderr], [], [], 0.2)
            if ready:
                said += os.read(self.proc.stderr.fileno(), 4096)
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"dumpcap did not start: {said.decode(errors='replace')}")
        time.sleep(0.3)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        time.sleep(0.5)  # let the last segments reach the capture
        self.proc.terminate()
        self.proc.wait(timeout=10)


def flow(client: Client, exchange: ExchangeApp, world: ExchangeWorld) -> None:
    """The healthy S2S flow (module docstring, steps 1-3)."""
    keys = load_keys()
    ks = keys["sfb"]

    # 1. Exchange reads SfB's metadata and trusts its signing certificate from then on.
    conn, where = client.connect(SFB_HOST, SFB_PORT)
    req = Request("GET", "/metadata/json/1", [("Host", SFB_HOST), ("Connection", "Keep-Alive")])
    resp = client.send(conn, where, req, "Exchange fetches SfB's auth metadata")
    conn.close()
    for key in json.loads(resp.body)["keys"]:
        der = base64.b64decode(key["keyvalue"]["value"])
        exchange.partner_certs.append(x509.load_der_x509_certificate(der))

    # 2. SfB reads Exchange's metadata.
    time.sleep(0.2)
    conn, where = client.connect(EXCHANGE_HOST, EXCHANGE_PORT)
    req = Request(
        "GET",
        "/autodiscover/metadata/json/1",
        [("Host", EXCHANGE_HOST), ("Connection", "Keep-Alive")],
    )
    client.send(conn, where, req, "SfB fetches Exchange's auth metadata")
    conn.close()

    # 3. Realm discovery, then five EWS calls with outer + actor tokens, one connection.
    nbf = int(time.time()) - 300
    actor = mint_rs256(
        {
            "aud": EX_AUD,
            "iss": SFB_ISS,
            "nbf": str(nbf),
            "exp": str(nbf + 24 * 3600),
            "nameid": SFB_ISS,
            "trustedfordelegation": "true",
        },
        ks,
    )

    def outer(user: dict[str, str], shift: int) -> str:
        start = nbf + shift
        return mint_unsigned(user_context(EX_AUD, SFB_ISS, user, actor, start, start + 8 * 3600))

    tokens = {"alice": outer(ALICE, 0), "bob": outer(BOB, 1)}
    users = {"alice": ALICE, "bob": BOB}
    time.sleep(0.3)
    conn, where = client.connect(EXCHANGE_HOST, EXCHANGE_PORT)
    smtp = ALICE["upn"]
    probe = world.ews_request(get_folder(smtp), authorization("Bearer", ""), smtp, "tls-probe")
    resp = client.send(conn, where, probe, "S2S realm discovery (empty Bearer)")
    assert resp.status == 401
    calls = [
        ("alice", get_folder(ALICE["upn"]), "GetFolder"),
        ("alice", create_item(ALICE["upn"], "Bob Martinez"), "CreateItem"),
        ("bob", get_folder(BOB["upn"]), "GetFolder"),
        ("alice", find_item_inbox(), "FindItem"),
        ("bob", oof_request(BOB["upn"]), "GetUserOofSettings"),
    ]
    for i, (who, body, op) in enumerate(calls, 1):
        time.sleep(0.15)
        upn = users[who]["upn"]
        req = world.ews_request(body, authorization("Bearer", tokens[who]), upn, f"tls{i}")
        resp = client.send(conn, where, req, f"S2S outer+actor token: {who} {op} -> 200")
        assert resp.status == 200, (op, resp.status)
    conn.close()


def record(out_dir: Path) -> int:
    """Record the capture into ``out_dir``; returns the number of expected events."""
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = load_keys()
    cap = Capture(
        f"{NAME}.pcapng",
        "Recorded live on loopback: Skype for Business -> Exchange S2S OAuth working as designed, "
        "over HTTPS (TLS 1.3; decrypt with healthy-oauth-tls.keys). Exchange (127.0.0.1:8443, "
        "mail.contoso.com) and SfB (127.0.0.1:8444, sfbpool01.contoso.com): Exchange fetches "
        "SfB's metadata, SfB fetches Exchange's, realm discovery (empty Bearer -> 401), then 5 "
        "EWS calls with SfB-signed actor tokens, all 200. ts/response_ts are the client's clock "
        "(approximate, within a few ms).",
    )
    world = ExchangeWorld(cap)
    exchange = ExchangeApp(world, exchange_metadata(keys["exchange"]))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cert_file, key_file = server_certificate(tmp)
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(cert_file, key_file)
        keylog = tmp / f"{NAME}.keys"
        os.environ["SSLKEYLOGFILE"] = str(keylog)  # what a user would do; picked up below
        client_ctx = ssl.create_default_context(cafile=str(cert_file))
        assert client_ctx.keylog_filename == str(keylog)
        pcap = tmp / f"{NAME}.pcapng"
        servers = {
            EXCHANGE_PORT: _Server(EXCHANGE_PORT, exchange, server_ctx),
            SFB_PORT: _Server(SFB_PORT, sfb_app(sfb_metadata(keys["sfb"])), server_ctx),
        }
        threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers.values()]
        try:
            with Dumpcap(pcap):
                for thread in threads:
                    thread.start()
                flow(Client(cap, client_ctx, servers), exchange, world)
        finally:
            for server in servers.values():
                server.shutdown()
                server.server_close()
        expected, _truth, _frames = finish(cap, keys)
        for src, name in ((pcap, f"{NAME}.pcapng"), (keylog, f"{NAME}.keys")):
            shutil.copyfile(src, out_dir / name)
            (out_dir / name).chmod(0o644)
        (out_dir / f"{NAME}.expected.json").write_bytes(expected)
    return len(cap.events)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: captures/)")
    args = parser.parse_args(argv)
    n = record(args.out)
    print(f"{NAME}.pcapng: {n} events; key log {NAME}.keys")
    return 0


if __name__ == "__main__":
    sys.exit(main())
