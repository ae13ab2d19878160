"""OAuth material carried in URLs and message bodies, as pure functions (no I/O).

Query-string redaction, form and JSON parsing for token-endpoint traffic, bounded body decoding,
and classification of metadata / token-endpoint paths. Hostile input never raises: functions
return ``None`` (or an empty result) instead. Secret fields of the dataclasses below are excluded
from ``repr`` and marked ``secret=True`` so writers drop them unless revealed.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import unquote, unquote_plus

from analyzer.auth.schemes import fingerprint
from analyzer.oauth.tokens import without_lone_surrogates

__all__ = [
    "SECRET_QUERY_PARAMS",
    "TokenRequest",
    "TokenResponse",
    "decode_body",
    "is_metadata_uri",
    "is_token_endpoint",
    "looks_like_metadata_path",
    "parse_form",
    "parse_token_request",
    "parse_token_response",
    "query_access_token",
    "redact_uri",
]

#: Query (and fragment) parameters whose values are secrets; matched case-insensitively.
SECRET_QUERY_PARAMS = frozenset(
    {
        "access_token",
        "code",
        "client_secret",
        "refresh_token",
        "id_token",
        "assertion",
        "client_assertion",
        "password",
        "passwd",
        "pwd",
        "token",
        "sig",
        "signature",
        "code_verifier",
        "api_key",
        "apikey",
        "key",
        "secret",
        "samlresponse",
        "samlrequest",
        "wresult",
        "x-amz-signature",
        "x-amz-security-token",
        "x-goog-signature",
    }
)
REDACTED = "REDACTED"

MAX_JSON_BYTES = 1 << 20  # token responses larger than this are not parsed
_MAX_FIELD_CHARS = 64 * 1024  # cap on any single string kept from a body
_MAX_CODINGS = 4  # Content-Encoding layers undone at most
_MAX_GZIP_MEMBERS = 64


def _secret() -> Any:
    return field(default=None, repr=False, metadata={"secret": True})


# --------------------------------------------------------------------------------------------
# URIs


def _redact_pairs(part: str) -> str:
    """Redact secret values in one ``a=b&c=d`` string, keeping everything else byte for byte."""
    pieces = part.split("&")
    for i, piece in enumerate(pieces):
        name, eq, _value = piece.partition("=")
        if eq and unquote_plus(name).strip().lower() in SECRET_QUERY_PARAMS:
            pieces[i] = f"{name}={REDACTED}"
    return "&".join(pieces)


def redact_uri(uri: str) -> str:
    """Replace the values of :data:`SECRET_QUERY_PARAMS` in the query (and fragment) by REDACTED,
    and the password of an absolute-form target's user information (``http://u:pw@host/``).

    Parameter names and order, the path and every other byte stay as sent (nothing is
    re-encoded). The fragment is covered too because implicit-flow redirects carry tokens there.
    """
    if not isinstance(uri, str):
        return ""
    head, hsep, fragment = uri.partition("#")
    path, qsep, query = head.partition("?")
    path = _redact_userinfo(path)
    if qsep:
        query = _redact_pairs(query)
    if hsep and "=" in fragment:
        fragment = _redact_pairs(fragment)
    return f"{path}{qsep}{query}{hsep}{fragment}"


def _redact_userinfo(path: str) -> str:
    """``scheme://user:REDACTED@host/...`` for a target that carries a password before its
    host; anything else as it is."""
    scheme, sep, rest = path.partition("://")
    if not sep:
        return path
    authority, slash, tail = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not at or ":" not in userinfo:
        return path
    user = userinfo.partition(":")[0]
    return f"{scheme}{sep}{user}:{REDACTED}@{host}{slash}{tail}"


def query_access_token(uri: str) -> str | None:
    """The first non-empty ``access_token`` query parameter, percent-decoded (RFC 6750 2.3).

    ``+`` is kept literally: tokens never contain spaces, and an unencoded ``+`` in a base64
    token is more likely than a form-encoded space.
    """
    if not isinstance(uri, str):
        return None
    query = uri.partition("#")[0].partition("?")[2]
    for piece in query.split("&"):
        name, eq, value = piece.partition("=")
        if eq and unquote(name).lower() == "access_token":
            token = unquote(value, errors="replace")
            return token or None
    return None


# --------------------------------------------------------------------------------------------
# Form bodies and token requests


def parse_form(body: bytes, limit: int = 200) -> dict[str, str]:
    """Parse an ``application/x-www-form-urlencoded`` body: first value wins, at most ``limit``.

    Names and values are percent-decoded as UTF-8 (bad bytes replaced). Pieces without a name
    are skipped. Never raises.
    """
    out: dict[str, str] = {}
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogateescape")
    if not isinstance(body, bytes | bytearray | memoryview):
        return out
    try:
        text = bytes(body).decode("latin-1").strip(" \t\r\n")
    except Exception:  # pragma: no cover - latin-1 decodes any bytes
        return out
    start = 0
    seen = 0
    n = len(text)
    while start <= n and len(out) < limit and seen < limit * 4:
        end = text.find("&", start)
        if end < 0:
            end = n
        piece = text[start:end]
        start = end + 1
        seen += 1
        if not piece:
            continue
        raw_name, _eq, raw_value = piece.partition("=")
        name = unquote_plus(raw_name, encoding="latin-1").encode("latin-1")
        value = unquote_plus(raw_value, encoding="latin-1").encode("latin-1")
        key = name.decode("utf-8", "replace")
        if key and key not in out:
            out[key] = value.decode("utf-8", "replace")[:_MAX_FIELD_CHARS]
    return out


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """What a client sent to an OAuth token endpoint (secrets reduced to flags and lengths)."""

    grant_type: str | None = None
    client_id: str | None = None
    resource: str | None = None  # resource, else scope
    scope: str | None = None
    client_assertion_type: str | None = None
    has_client_secret: bool = False
    username: str | None = None  # password grant
    password_len: int | None = None  # password grant; the password itself is not kept
    assertion: str | None = _secret()  # assertion / client_assertion JWT text (memory only)

    @property
    def assertion_fp(self) -> str | None:
        """Fingerprint of the assertion, safe to write out."""
        return fingerprint(self.assertion) if self.assertion else None


def parse_token_request(form: dict[str, str]) -> TokenRequest | None:
    """Read a token request from a parsed form, or None when it is not one.

    A form is a token request when it has ``grant_type``, ``assertion`` or ``client_assertion``.
    ``assertion`` wins over ``client_assertion`` when both are sent (on-behalf-of flow).
    """
    if not isinstance(form, dict):
        return None
    if not any(form.get(k) for k in ("grant_type", "assertion", "client_assertion")):
        return None

    def get(name: str) -> str | None:
        value = form.get(name)
        return value if isinstance(value, str) and value != "" else None

    password = form.get("password")
    return TokenRequest(
        grant_type=get("grant_type"),
        client_id=get("client_id"),
        resource=get("resource") or get("scope"),
        scope=get("scope"),
        client_assertion_type=get("client_assertion_type"),
        has_client_secret=bool(get("client_secret")),
        username=get("username"),
        password_len=len(password) if isinstance(password, str) else None,
        assertion=get("assertion") or get("client_assertion"),
    )


# --------------------------------------------------------------------------------------------
# Token responses


@dataclass(frozen=True, slots=True)
class TokenResponse:
    """What a token endpoint answered (JSON); tokens are secret and kept in memory only."""

    token_type: str | None = None
    expires_in: str | None = None  # as sent; numbers turned into their decimal text
    resource: str | None = None
    scope: str | None = None
    error: str | None = None
    error_description: str | None = None
    access_token: str | None = _secret()
    refresh_token: str | None = _secret()
    id_token: str | None = _secret()

    @property
    def access_token_fp(self) -> str | None:
        return fingerprint(self.access_token) if self.access_token else None

    @property
    def refresh_token_fp(self) -> str | None:
        return fingerprint(self.refresh_token) if self.refresh_token else None

    @property
    def id_token_fp(self) -> str | None:
        return fingerprint(self.id_token) if self.id_token else None


_RESPONSE_FIELDS = (
    "access_token",
    "refresh_token",
    "id_token",
    "token_type",
    "expires_in",
    "resource",
    "scope",
    "error",
    "error_description",
)


def _as_text(value: object) -> str | None:
    """A JSON scalar as text (strings as is, numbers in decimal), else None."""
    if isinstance(value, str):
        return value[:_MAX_FIELD_CHARS]
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return str(value)
    return None


def parse_token_response(body: bytes) -> TokenResponse | None:
    """Parse a token endpoint's JSON answer; None unless it is an object with a known field.

    Bodies over 1 MiB, non-JSON, non-object JSON and nesting deep enough to exhaust recursion
    all give None. ``expires_in`` may be a number or a string; it is kept as text.
    """
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogateescape")
    if not isinstance(body, bytes | bytearray | memoryview) or len(body) > MAX_JSON_BYTES:
        return None
    data = bytes(body).strip()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not data.startswith(b"{"):
        return None
    try:
        obj = json.loads(data)
        if b"\\u" in data:  # "\ud800" decodes to a lone surrogate: no writer could encode it
            obj = without_lone_surrogates(obj)
    except (ValueError, RecursionError, UnicodeDecodeError, TypeError):
        return None
    if not isinstance(obj, dict):
        return None
    values = {name: _as_text(obj.get(name)) for name in _RESPONSE_FIELDS}
    if all(v is None for v in values.values()):
        return None
    return TokenResponse(**values)


# --------------------------------------------------------------------------------------------
# Content-Encoding


def _inflate(data: bytes, wbits: int, limit: int) -> bytes | None:
    """Decompress ``data`` with zlib ``wbits``, at most ``limit`` output bytes; None if corrupt.

    Concatenated gzip members are followed (bounded). A truncated stream yields what was decoded.
    """
    out = bytearray()
    members = 0
    while data and len(out) < limit and members < _MAX_GZIP_MEMBERS:
        members += 1
        d = zlib.decompressobj(wbits)
        try:
            out += d.decompress(data, limit - len(out))
        except zlib.error:
            return None if members == 1 else bytes(out)  # trailing garbage after a member is fine
        if not d.eof or wbits != 31:
            break
        data = d.unused_data
    return bytes(out)


def decode_body(body: bytes, content_encoding: str | None, limit: int = 1 << 20) -> bytes | None:
    """Undo ``Content-Encoding`` (gzip, x-gzip, deflate as zlib or raw, identity).

    At most ``limit`` output bytes are produced (longer results are cut there), so decompression
    bombs stay bounded. Several codings are undone in reverse order. None for corrupt data or an
    unsupported coding (br, zstd, compress).
    """
    if isinstance(body, bytearray | memoryview):
        body = bytes(body)
    if not isinstance(body, bytes) or limit < 0:
        return None
    codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
    if len(codings) > _MAX_CODINGS:
        return None
    data: bytes | None = body
    for coding in reversed(codings):
        if data is None:
            return None
        if coding == "identity":
            continue
        if coding in ("gzip", "x-gzip"):
            data = _inflate(data, 31, limit)
        elif coding == "deflate":
            zlib_data = _inflate(data, 15, limit)
            data = zlib_data if zlib_data is not None else _inflate(data, -15, limit)
        else:
            return None
    return None if data is None else data[:limit]


# --------------------------------------------------------------------------------------------
# Paths


def _path_only(path: str) -> str:
    """The lowercased path of a request target (origin- or absolute-form), no query/fragment."""
    p = path.partition("#")[0].partition("?")[0]
    if "://" in p[:16]:
        after = p.split("://", 1)[1]
        slash = after.find("/")
        p = after[slash:] if slash >= 0 else "/"
    return p.lower()


def is_metadata_uri(path: str) -> str | None:
    """Classify a request path as a key/metadata document fetch, or None.

    ``s2s-metadata`` (ends with ``metadata/json/1``), ``openid-configuration``, ``jwks``
    (``/discovery/keys``, ``/discovery/v2.0/keys``, a ``jwks`` file, ``/keys`` under an oauth or
    discovery path) or ``federation-metadata`` (``FederationMetadata.xml``). Case-insensitive;
    the query is ignored. Typos such as ``/metadata/jason/1`` are not metadata here (see
    :func:`looks_like_metadata_path`).
    """
    if not isinstance(path, str):
        return None
    return _classify(path)[0]


def _metadata_kind(path: str) -> str | None:
    p = _path_only(path).rstrip("/")
    segments = [s for s in p.split("/") if s]
    last = segments[-1] if segments else ""
    if p.endswith("metadata/json/1"):
        return "s2s-metadata"
    if p.endswith(".well-known/openid-configuration"):
        return "openid-configuration"
    if last in ("jwks", "jwks.json", "jwks_uri"):
        return "jwks"
    if last == "keys" and any(s == "discovery" or s.startswith("oauth") for s in segments[:-1]):
        return "jwks"
    if last == "federationmetadata.xml":
        return "federation-metadata"
    return None


def looks_like_metadata_path(path: str) -> bool:
    """True for any path with a ``metadata/`` segment (or a recognised metadata document).

    Used to flag failed fetches of mistyped metadata URLs such as ``/metadata/jason/1``.
    """
    if not isinstance(path, str):
        return False
    return _classify(path)[1]


def _metadata_segment(path: str) -> bool:
    segments = _path_only(path).split("/")
    return any(s == "metadata" for s in segments[:-1])


_TOKEN_SUFFIXES = ("/token", "/tokens/oauth/2", "/webticket/oauthtoken")
_MAX_CACHED_PATH = 512  # longer paths are classified without the cache (bounded memory)


def is_token_endpoint(path: str) -> bool:
    """True for OAuth token endpoint paths (Entra v1/v2, ACS, SfB WebTicket, generic ``/token``).

    Covers ``/oauth2/token``, ``/oauth2/v2.0/token``, ``/tokens/OAuth/2``,
    ``/WebTicket/oauthtoken``, ``/connect/token`` and any path ending in ``/token``;
    case-insensitive, query ignored.
    """
    if not isinstance(path, str):
        return False
    return _classify(path)[2]


def _classify(path: str) -> tuple[str | None, bool, bool]:
    """(``is_metadata_uri``, ``looks_like_metadata_path``, ``is_token_endpoint``) of ``path``;
    cached for ordinary lengths, since every exchange asks and paths repeat."""
    if len(path) <= _MAX_CACHED_PATH:
        return _classify_cached(path)
    return _classify_uncached(path)


def _classify_uncached(path: str) -> tuple[str | None, bool, bool]:
    kind = _metadata_kind(path)
    token = _path_only(path).rstrip("/").endswith(_TOKEN_SUFFIXES)
    return kind, kind is not None or _metadata_segment(path), token


_classify_cached = lru_cache(maxsize=2048)(_classify_uncached)
