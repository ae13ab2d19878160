#!/usr/bin/env python3
"""Record the real HTTP/2 captures of ``tests/test_http2_captures.py`` on loopback.

Run by hand from the repository root, as root (dumpcap on ``lo``), with curl built with nghttp2,
ports 18080 and 18443 free, and the test extras installed (the ``h2`` library)::

    .venv/bin/python tests/record_http2.py          # rewrites tests/data/http2/

An ``h2`` (python-hyper) server on 127.0.0.1 answers cleartext HTTP/2 with prior knowledge and
``Upgrade: h2c`` on 18080 and HTTP/2 over TLS (ALPN h2, a throwaway self-signed certificate) on
18443; its listening sockets advertise MSS 1460, so the clients' big header blocks span TCP
segments. It announces SETTINGS_HEADER_TABLE_SIZE 1024 (curl's encoder must answer with a dynamic
table size update), shrinks its own encoder's table to 256 bytes before its third answer on a
connection (a size update in its header block), pads the DATA of token responses, and resets
``/reset`` with RST_STREAM. The clients, each on one connection per capture:

- ``prior-knowledge.pcapng``: ``curl --http2-prior-knowledge``: ``/api/me`` without credentials
  (401 Bearer challenge), with a 20 KB Bearer JWT (HEADERS + CONTINUATION), Basic on ``/basic``,
  a client-credentials token POST (form body; padded JSON answer), the OpenID configuration, and
  ``/reset`` (RST_STREAM): streams 1, 3, 5, 7, 9, 11;
- ``h2c-upgrade.pcapng``: ``curl --http2``: Basic on the upgraded request (stream 1), then Bearer
  (stream 3);
- ``ntlm.pcapng``: an ``h2`` client with prior knowledge: NTLM type 1 (401 with type 2), type 3
  (200), then Negotiate with a Kerberos ticket (200): streams 1, 3, 5; its HEADERS carry the
  PRIORITY flag;
- ``tls.pcapng`` + ``tls.keys``: ``curl --http2`` over TLS 1.3 with ``SSLKEYLOGFILE``: Bearer on
  ``/api/me`` and Basic on ``/basic`` (streams 1, 3).

Tokens are signed with the TEST key ``captures/keys/exchange.key.pem``; NTLM and Kerberos blobs
come from the capture generator. Bytes differ on every run (ports, times, TLS randomness); what
the tests check does not.
"""

from __future__ import annotations

import base64
import datetime as dt
import importlib
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
from pathlib import Path
from types import ModuleType

import h2.config
import h2.connection
import h2.events
import h2.settings
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from token_kit import T0, generator, signed  # noqa: E402

OUT = HERE / "data" / "http2"
LOOPBACK = "127.0.0.1"
CLEAR_PORT, TLS_PORT = 18080, 18443
BASE = f"http://{LOOPBACK}:{CLEAR_PORT}"
MSS = 1460
USERS = {"alice": "Spring2026!Alice", "bob": "Tr0ub4dor&3"}
CLIENT_SECRET = "h2-client-secret-2026"

Answer = tuple[int, list[tuple[str, str]], bytes] | None  # None: reset the stream


def bearer(size: int = 0) -> str:
    """An RS256 JWT for Exchange (``pad`` grows it to about ``size`` characters)."""
    claims = {
        "aud": "https://outlook.office365.com",
        "iss": "https://sts.windows.net/11111111-2222-3333-4444-555555555555/",
        "nbf": T0,
        "exp": T0 + 10 * 365 * 86400,
        "appid": "d3590ed6-52b3-4102-aeff-aad2292ab01c",
        "upn": "alice@contoso.com",
    }
    token = signed(claims)
    if size > len(token):
        claims["pad"] = "x" * (size - len(token))
        token = signed(claims)
    return token


def app(method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
    """What the server answers: Bearer, Basic, NTLM and Negotiate checks, a token endpoint."""
    auth = headers.get("authorization", "")
    scheme, _, blob = auth.partition(" ")
    json_type = ("content-type", "application/json; charset=utf-8")
    server = ("server", "Microsoft-IIS/10.0")
    if path == "/reset":
        return None
    if path == "/api/me":
        if scheme.lower() == "bearer" and blob.count(".") == 2:
            return 200, [json_type, server], b'{"displayName":"Alice Wood"}'
        challenge = 'Bearer realm="contoso.com", authorization_uri="https://login.test/authorize"'
        return 401, [server, ("www-authenticate", challenge)], b""
    if path == "/basic":
        if scheme.lower() == "basic":
            return 200, [("content-type", "text/plain"), server], b"hello"
        return 401, [server, ("www-authenticate", 'Basic realm="h2"')], b""
    if path == "/ntlm":
        message = base64.b64decode(blob) if scheme == "NTLM" else b""
        if message[8:9] == b"\x01":
            return 401, [server, ("www-authenticate", f"NTLM {b64(type2())}")], b""
        return 200, [("content-type", "text/plain"), server], b"ntlm ok"
    if path == "/kerberos":
        kerberos = _module("kerberos")
        answer = b64(kerberos.spnego_resp_krb5("h2-kerberos"))
        return 200, [server, ("www-authenticate", f"Negotiate {answer}")], b"kerberos ok"
    if path == "/oauth2/v2.0/token" and method == "POST":
        issued = {"token_type": "Bearer", "expires_in": 3599, "access_token": bearer()}
        return 200, [json_type, ("cache-control", "no-store"), server], json.dumps(issued).encode()
    if path == "/.well-known/openid-configuration":
        doc = {"issuer": "https://login.test/", "jwks_uri": "https://login.test/keys"}
        return 200, [json_type, server], json.dumps(doc).encode()
    return 404, [server], b""


def _module(name: str) -> ModuleType:
    """A module of the capture generator (``generate.ntlm``, ``generate.kerberos``)."""
    generator()
    return importlib.import_module(f"generate.{name}")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def type1() -> bytes:
    return _module("ntlm").ntlm_negotiate()


def type2() -> bytes:
    ntlm = _module("ntlm")
    return ntlm.ntlm_challenge(b"\x11\x22\x33\x44\x55\x66\x77\x88", ntlm.ntlm_target_info(T0))


def type3() -> bytes:
    ntlm = _module("ntlm")
    auth = ntlm.NtlmAuth(
        domain="CONTOSO",
        user="alice",
        password=USERS["alice"],
        workstation="WS01",
        spn="HTTP/mail.contoso.com",
        client_challenge=b"\x01\x02\x03\x04\x05\x06\x07\x08",
        exported_session_key=b"\x10" * 16,
    )
    return ntlm.ntlm_authenticate(auth, type1(), type2())


def kerberos_token() -> bytes:
    kerberos = _module("kerberos")
    ap_req = kerberos.kerberos_ap_req("CONTOSO.COM", "HTTP", "mail.contoso.com", "h2-ticket")
    return kerberos.spnego_init_krb5(ap_req)


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------


class H2Server:
    """An ``h2`` server on one port: prior knowledge and h2c upgrade, or TLS with ALPN h2."""

    def __init__(self, port: int, context: ssl.SSLContext | None = None) -> None:
        self.context = context
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, MSS)
        self.sock.bind((LOOPBACK, port))
        self.sock.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.sock.close()

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(sock,), daemon=True).start()

    def _connection(self, sock: socket.socket) -> None:
        if self.context is not None:
            sock = self.context.wrap_socket(sock, server_side=True)
        config = h2.config.H2Configuration(client_side=False, header_encoding="latin-1")
        conn = h2.connection.H2Connection(config)
        data = b""
        if self.context is None:
            while b"\r\n\r\n" not in data:
                data += sock.recv(65536)
        streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        if data.startswith(b"PRI"):
            conn.initiate_connection()
        elif data:
            head, _, data = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ")
            fields = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
            sock.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
            )
            conn.initiate_upgrade_connection(fields["http2-settings"].encode())
            fields.update({":method": method, ":path": path})
            streams[1] = (fields, bytearray())
        else:
            conn.initiate_connection()
        conn.update_settings({h2.settings.SettingCodes.HEADER_TABLE_SIZE: 1024})
        sock.sendall(conn.data_to_send())
        answered = 0
        if 1 in streams:
            self._answer(conn, 1, *streams.pop(1))
            answered += 1
            sock.sendall(conn.data_to_send())
        while True:
            if data:
                events = conn.receive_data(data)
                for event in events:
                    if isinstance(event, h2.events.RequestReceived):
                        streams[event.stream_id] = (dict(event.headers), bytearray())
                    elif isinstance(event, h2.events.DataReceived):
                        streams[event.stream_id][1].extend(event.data)
                        conn.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                    elif isinstance(event, h2.events.StreamEnded):
                        answered += 1
                        if answered == 3:
                            conn.encoder.header_table_size = 256  # a size update follows
                        self._answer(conn, event.stream_id, *streams.pop(event.stream_id))
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        sock.sendall(conn.data_to_send())
                        sock.close()
                        return
                out = conn.data_to_send()
                if out:
                    sock.sendall(out)
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                sock.close()
                return

    @staticmethod
    def _answer(
        conn: h2.connection.H2Connection, sid: int, headers: dict[str, str], body: bytearray
    ) -> None:
        answer = app(headers.get(":method", ""), headers.get(":path", ""), headers, bytes(body))
        if answer is None:
            conn.reset_stream(sid, error_code=8)  # CANCEL
            return
        status, fields, content = answer
        head = [(":status", str(status)), *fields, ("content-length", str(len(content)))]
        conn.send_headers(sid, head, end_stream=not content)
        if content:
            pad = 16 if headers.get(":path", "").endswith("/token") else None
            conn.send_data(sid, content, end_stream=True, pad_length=pad)


def server_context(folder: Path) -> ssl.SSLContext:
    """A TLS server context with a throwaway self-signed certificate, ALPN h2."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api.contoso.test")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    context.set_alpn_protocols(["h2"])
    return context


# ---------------------------------------------------------------------------------------------
# Clients and capture
# ---------------------------------------------------------------------------------------------


def curl(*args: str, env: dict[str, str] | None = None) -> None:
    """curl with every transfer's output dropped (``-o`` for each ``--next`` segment)."""
    cmd = ["curl", "-s", "-o", "/dev/null"]
    for arg in args:
        cmd += [arg, "-o", "/dev/null"] if arg == "--next" else [arg]
    subprocess.run(cmd, check=False, timeout=30, env=env)


def prior_knowledge() -> None:
    """curl with a 20 KB Bearer token, then an ``h2`` client's sequence on a second
    connection (curl 7.88 cannot reuse a prior-knowledge connection)."""
    pk = "--http2-prior-knowledge"
    curl(pk, "-H", f"Authorization: Bearer {bearer(20_000)}", f"{BASE}/api/me")
    time.sleep(0.1)
    form = (
        "grant_type=client_credentials&client_id=d3590ed6-52b3-4102-aeff-aad2292ab01c"
        f"&client_secret={CLIENT_SECRET}&scope=https%3A%2F%2Foutlook.office365.com%2F.default"
    )
    basic = b64(f"alice:{USERS['alice']}".encode())
    h2_client(
        [
            ("GET", "/api/me", None, b""),
            ("GET", "/basic", f"Basic {basic}", b""),
            ("POST", "/oauth2/v2.0/token", None, form.encode()),
            ("GET", "/.well-known/openid-configuration", None, b""),
            ("GET", "/reset", f"Bearer {bearer()}", b""),
        ]
    )


def upgrade() -> None:
    curl(
        "--http2", "-u", f"bob:{USERS['bob']}", f"{BASE}/basic",
        "--next", "--http2", "-H", f"Authorization: Bearer {bearer()}", f"{BASE}/api/me",
    )  # fmt: skip


def ntlm() -> None:
    h2_client(
        [
            ("GET", "/ntlm", f"NTLM {b64(type1())}", b""),
            ("GET", "/ntlm", f"NTLM {b64(type3())}", b""),
            ("GET", "/kerberos", f"Negotiate {b64(kerberos_token())}", b""),
        ],
        priority=True,
    )


Request = tuple[str, str, "str | None", bytes]  # method, path, Authorization, body


def h2_client(requests: list[Request], priority: bool = False) -> None:
    """An ``h2`` client with prior knowledge: ``requests`` one after the other (each waits for
    its answer, a reset included) on one connection; HEADERS with the PRIORITY flag if asked."""
    sock = socket.create_connection((LOOPBACK, CLEAR_PORT))
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    for i, (method, path, auth, body) in enumerate(requests):
        sid = 2 * i + 1
        head = [
            (":method", method),
            (":path", path),
            (":scheme", "http"),
            (":authority", "mail.contoso.com"),
            ("user-agent", "h2-test-client"),
        ]
        if auth is not None:
            head.append(("authorization", auth))
        if body:
            head.append(("content-type", "application/x-www-form-urlencoded"))
        conn.send_headers(sid, head, end_stream=not body, priority_weight=200 if priority else None)
        if body:
            conn.send_data(sid, body, end_stream=True)
        sock.sendall(conn.data_to_send())
        done = False
        while not done:
            data = sock.recv(65536)
            if not data:
                return
            for event in conn.receive_data(data):
                if isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                    done = done or event.stream_id == sid
            sock.sendall(conn.data_to_send())
    conn.close_connection()
    sock.sendall(conn.data_to_send())
    sock.close()


def tls_client(keylog: Path) -> None:
    env = dict(os.environ, SSLKEYLOGFILE=str(keylog))
    url = f"https://{LOOPBACK}:{TLS_PORT}"
    curl(
        "--http2", "-k", "-H", f"Authorization: Bearer {bearer()}", f"{url}/api/me",
        "--next", "--http2", "-k", "-u", f"alice:{USERS['alice']}", f"{url}/basic",
        env=env,
    )  # fmt: skip


class Dumpcap:
    """dumpcap on ``lo`` for the two server ports, started and stopped by this script only."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Dumpcap:
        dumpcap = shutil.which("dumpcap")
        if dumpcap is None:
            raise SystemExit("dumpcap not found: install wireshark-common / tshark")
        port_filter = f"tcp port {CLEAR_PORT} or tcp port {TLS_PORT}"
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


def record(name: str, client: Callable[[], None]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / name
        with Dumpcap(raw):
            client()
        os.chmod(raw, 0o644)
        shutil.copyfile(raw, OUT / name)
    print(f"wrote {OUT / name} ({(OUT / name).stat().st_size} bytes)")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        servers = [H2Server(CLEAR_PORT), H2Server(TLS_PORT, server_context(folder))]
        try:
            record("prior-knowledge.pcapng", prior_knowledge)
            record("h2c-upgrade.pcapng", upgrade)
            record("ntlm.pcapng", ntlm)
            keylog = folder / "tls.keys"
            record("tls.pcapng", lambda: tls_client(keylog))
            shutil.copyfile(keylog, OUT / "tls.keys")
        finally:
            for server in servers:
                server.close()


if __name__ == "__main__":
    main()
