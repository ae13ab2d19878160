"""A real HTTP server on 127.0.0.1 that authenticates as an Exchange front end would, and the
real clients (curl, requests) the live-capture tests drive against it.

- ``GET /basic``: Basic (401 ``WWW-Authenticate: Basic`` without it);
- ``POST /EWS/Exchange.asmx``: Bearer (an S2S-shaped JWT) answered 200; an empty or missing
  credential gets 401 with a Bearer challenge naming Exchange's app id and trusted issuers;
- ``GET /ntlm``: NTLM: a type 1 gets 401 with a type 2 challenge, a type 3 gets 200.
"""

from __future__ import annotations

import base64
import datetime
import http.client
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt

KEYS = Path(__file__).resolve().parents[1] / "captures" / "keys"
EXCHANGE = "00000002-0000-0ff1-ce00-000000000000"
SFB = "00000004-0000-0ff1-ce00-000000000000"
REALM = "contoso.com"


def ntlm_type2() -> bytes:
    """A minimal NTLM CHALLENGE message (unicode, NTLM, request target; no target info)."""
    flags = 0x00000001 | 0x00000004 | 0x00000200 | 0x00008000
    empty = struct.pack("<HHI", 0, 0, 48)
    return (
        b"NTLMSSP\0"
        + struct.pack("<I", 2)
        + empty
        + struct.pack("<I", flags)
        + (b"\x01\x23\x45\x67\x89\xab\xcd\xef" + b"\0" * 8 + empty)
    )


def s2s_token(now: float | None = None) -> str:
    """An S2S actor token as Skype for Business sends it to Exchange (RS256, test key)."""
    now = time.time() if now is None else now
    claims = {
        "aud": f"{EXCHANGE}/mail.contoso.com@{REALM}",
        "iss": f"{SFB}@{REALM}",
        "nbf": int(now) - 60,
        "exp": int(now) + 3600,
        "nameid": f"{SFB}@{REALM}",
        "identityprovider": f"{SFB}@{REALM}",
    }
    key = (KEYS / "sfb.key.pem").read_bytes()
    return jwt.encode(claims, key, algorithm="RS256", headers={"x5t": "test"})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_args: object) -> None:  # quiet
        pass

    def _answer(self, status: int, headers: dict[str, str] | None = None) -> None:
        body = b"ok\n" if status == 200 else b"denied\n"
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization", "")
        if self.path.startswith("/basic"):
            if auth.startswith("Basic "):
                self._answer(200)
            else:
                self._answer(401, {"WWW-Authenticate": 'Basic realm="contoso"'})
        elif self.path.startswith("/ntlm"):
            blob = base64.b64decode(auth[5:]) if auth.startswith("NTLM ") else b""
            if blob[8:12] == struct.pack("<I", 3):
                self._answer(200)
            elif blob[8:12] == struct.pack("<I", 1):
                challenge = base64.b64encode(ntlm_type2()).decode()
                self._answer(401, {"WWW-Authenticate": f"NTLM {challenge}"})
            else:
                self._answer(401, {"WWW-Authenticate": "NTLM"})
        else:
            self._answer(200)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and auth[7:].strip():
            self._answer(200)
        else:
            challenge = (
                f'Bearer client_id="{EXCHANGE}", trusted_issuers="{SFB}@{REALM}", '
                'token_types="app_asserted_user_v1 service_asserted_app_v1"'
            )
            self._answer(401, {"WWW-Authenticate": challenge})


@contextmanager
def serving(tls_dir: Path | None = None) -> Iterator[int]:
    """Run the server on 127.0.0.1; yields its port. With ``tls_dir``, it speaks HTTPS with a
    self-signed certificate for mail.contoso.com written there."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    if tls_dir is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*_self_signed(tls_dir))
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _self_signed(folder: Path) -> tuple[str, str]:
    """A certificate and key for mail.contoso.com (TEST only), as PEM files in ``folder``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.contoso.com")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "server.crt", folder / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_file), str(key_file)


def https_bearer(port: int, token: str, keylog: Path) -> int:
    """An EWS POST over HTTPS (SNI mail.contoso.com), its TLS keys written to ``keylog``."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.keylog_filename = str(keylog)
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
    try:
        conn.sock = context.wrap_socket(
            socket.create_connection(("127.0.0.1", port), timeout=30),
            server_hostname="mail.contoso.com",
        )
        headers = {"Authorization": f"Bearer {token}", "Host": "mail.contoso.com"}
        conn.request("POST", "/EWS/Exchange.asmx", body=b"<soap/>", headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def curl_basic(port: int, user: str = "alice", password: str = "Secret-Pa55") -> None:
    subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-u", f"{user}:{password}", "--basic",
         f"http://127.0.0.1:{port}/basic"],
        check=True, timeout=30,
    )  # fmt: skip


def curl_ntlm(port: int, user: str = "CONTOSO\\bob", password: str = "Secret-Pa55") -> None:
    subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "--ntlm", "-u", f"{user}:{password}",
         f"http://127.0.0.1:{port}/ntlm"],
        check=True, timeout=30,
    )  # fmt: skip


def requests_bearer(port: int, token: str) -> int:
    import requests

    url = f"http://127.0.0.1:{port}/EWS/Exchange.asmx"
    headers = {"Authorization": f"Bearer {token}", "Host": "mail.contoso.com"}
    return requests.post(url, data=b"<soap/>", headers=headers, timeout=30).status_code
