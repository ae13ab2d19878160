"""HTTP requests and responses built from structure, with the Authorization and challenge headers
they carry, so the expected events never depend on a parser; ``is_event`` is the analyzer's
event rule applied to what was built.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from .encoding import b64

SECRET_QUERY_NAMES = frozenset(
    {
        "access_token",
        "code",
        "client_secret",
        "refresh_token",
        "id_token",
        "assertion",
        "client_assertion",
        "password",
    }
)


def digest_response(
    user: str, realm: str, password: str, method: str, uri: str, nonce: str, nc: str, cnonce: str
) -> str:
    """The HTTP Digest ``response`` value (RFC 2617, MD5, qop=auth)."""

    def h(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = h(f"{user}:{realm}:{password}")
    ha2 = h(f"{method}:{uri}")
    return h(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")


@dataclass
class Cred:
    """The credential a request carries, as the analyzer must report it."""

    scheme: str  # bearer | basic | ntlm | negotiate | digest | other
    scheme_name: str | None
    text: str  # credential text after the scheme word
    source: str = "authorization"
    user: str | None = None
    domain: str | None = None
    password_len: int | None = None
    mechanism: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class AuthHeader:
    """An Authorization / Proxy-Authorization header line."""

    name: str
    value: str
    cred: Cred


@dataclass
class ChallengeHeader:
    """A WWW-Authenticate / Proxy-Authenticate header line and its parsed form."""

    name: str
    value: str  # as sent; may contain obsolete line folding
    parsed: dict[str, Any]


HeaderItem = tuple[str, str] | AuthHeader | ChallengeHeader


def _line(item: HeaderItem) -> tuple[str, str]:
    if isinstance(item, tuple):
        return item
    return item.name, item.value


def authorization(
    scheme_name: str,
    text: str,
    *,
    header: str = "Authorization",
    scheme: str | None = None,
    **cred_fields: Any,
) -> AuthHeader:
    """``<header>: <scheme_name> <text>`` and the credential it stands for."""
    norm = scheme or scheme_name.lower()
    source = "proxy-authorization" if header.lower() == "proxy-authorization" else "authorization"
    cred = Cred(norm, scheme_name, text, source=source, **cred_fields)
    return AuthHeader(header, f"{scheme_name} {text}", cred)


def basic(user: str, password: str, header: str = "Authorization") -> AuthHeader:
    blob = b64(f"{user}:{password}".encode())
    domain, _, name = user.rpartition("\\")
    return authorization(
        "Basic", blob, header=header, user=name, domain=domain or None, password_len=len(password)
    )


def challenge(
    scheme_name: str,
    params: Sequence[tuple[str, str, bool]] = (),
    *,
    token68: str | None = None,
    sep: str = ", ",
    header: str = "WWW-Authenticate",
    fold: str | None = None,
) -> ChallengeHeader:
    """A challenge header; params are (name, value, quoted). ``fold`` joins params instead of
    ``sep`` to produce obsolete line folding (e.g. ",\\r\\n\\t")."""
    rendered = [f'{n}="{v}"' if q else f"{n}={v}" for n, v, q in params]
    value = scheme_name
    if token68 is not None:
        value += " " + token68
    elif rendered:
        value += " " + (fold or sep).join(rendered)
    parsed: dict[str, Any] = {
        "scheme": scheme_name.lower(),
        "params": {n.lower(): v for n, v, _ in params},
    }
    if token68 is not None:
        parsed["token68"] = token68
    if header.lower() == "proxy-authenticate":
        parsed["proxy"] = True
    return ChallengeHeader(header, value, parsed)


@dataclass
class Request:
    method: str
    path: str
    headers: list[HeaderItem]
    body: bytes = b""
    query: list[tuple[str, str]] = field(default_factory=list)  # name, value as sent
    form: list[tuple[str, str]] | None = None  # decoded form fields (body is built from them)
    version: str = "HTTP/1.1"
    query_cred: Cred | None = None

    def __post_init__(self) -> None:
        if self.form is not None:
            self.body = urlencode(self.form).encode("ascii")

    def target(self, redact: bool = False) -> str:
        if not self.query:
            return self.path
        parts = [
            f"{n}={'REDACTED' if redact and n.lower() in SECRET_QUERY_NAMES else v}"
            for n, v in self.query
        ]
        return self.path + "?" + "&".join(parts)

    @property
    def cred(self) -> Cred | None:
        for item in self.headers:
            if isinstance(item, AuthHeader):
                return item.cred
        return self.query_cred

    def header(self, name: str) -> str | None:
        for item in self.headers:
            k, v = _line(item)
            if k.lower() == name.lower():
                return v
        return None

    def encode(self) -> bytes:
        lines = [f"{self.method} {self.target()} {self.version}"]
        for item in self.headers:
            k, v = _line(item)
            lines.append(f"{k}: {v.replace('{len}', str(len(self.body)))}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


@dataclass
class Response:
    status: int
    reason: str
    headers: list[HeaderItem]
    body: bytes = b""
    chunks: list[int] | None = None  # chunk sizes for Transfer-Encoding: chunked
    version: str = "HTTP/1.1"
    json_body: dict[str, Any] | None = None  # when the (decoded) body is a JSON object

    @property
    def challenges(self) -> list[dict[str, Any]]:
        return [h.parsed for h in self.headers if isinstance(h, ChallengeHeader)]

    def header(self, name: str) -> str | None:
        for item in self.headers:
            k, v = _line(item)
            if k.lower() == name.lower():
                return v
        return None

    def encoded_body(self) -> bytes:
        if self.chunks is None:
            return self.body
        out = bytearray()
        pos = 0
        for size in [*self.chunks, len(self.body)]:
            size = min(size, len(self.body) - pos)
            if size <= 0:
                break
            out += f"{size:x}\r\n".encode() + self.body[pos : pos + size] + b"\r\n"
            pos += size
        return bytes(out + b"0\r\n\r\n")

    def chunk_line_offsets(self) -> list[int]:
        """Offsets of the chunk-size lines within the encoded body."""
        body = self.encoded_body()
        out, pos = [], 0
        while True:
            out.append(pos)
            eol = body.index(b"\r\n", pos)
            size = int(body[pos:eol], 16)
            if size == 0:
                return out
            pos = eol + 2 + size + 2

    def encode(self) -> bytes:
        body = self.encoded_body()
        lines = [f"{self.version} {self.status} {self.reason}"]
        for item in self.headers:
            k, v = _line(item)
            lines.append(f"{k}: {v.replace('{len}', str(len(body)))}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def is_event(req: Request, resp: Response | None) -> bool:
    """The analyzer's event emission rule, applied to what we built."""
    if req.cred is not None:
        return True
    if req.form is not None and any(n == "grant_type" for n, _ in req.form):
        return True
    path = req.path.lower()
    if "metadata/" in path or path.endswith(
        ("/.well-known/openid-configuration", "/discovery/keys", "/discovery/v2.0/keys")
    ):
        return True
    if resp is None:
        return False
    return bool(
        resp.challenges or resp.status in (401, 403, 407) or resp.header("x-ms-diagnostics")
    )
