"""HTTP archives (``.har``, HAR 1.2) from Chrome, Edge, Firefox, Fiddler and Charles: each entry
an HTTP exchange, straight to the auth stages.

What exports do, and how it is read: Chrome lists HTTP/2 pseudo-headers (``:authority``) as
lowercase headers (they are dropped; ``:authority`` stands in for a missing Host), writes versions
like ``http/2.0+quic/46`` (``http/2``) and status 0 for blocked requests (no response); entries come
out of time order (sorted by ``startedDateTime``); Firefox capitalises header names; Fiddler starts
the file with a byte-order mark and stores bodies in base64; Charles and recorder libraries add
fields of their own (ignored) and write placeholders such as ``[REDACTED]``. A credential that is
only a placeholder is dropped, never taken for a token, and a sanitized export (which removes
``Authorization`` and cookies) is detected where the traffic shows it: a request answered with
the next leg of an NTLM / Negotiate handshake, or a request the server challenged that then
succeeds with no credential. Those entries are recorded as not inspected, so a verdict on them
is INCONCLUSIVE instead of a false PASS.

A browser does not record its own address: ``client_ip`` is empty and ``client_port`` 0.

Large archives (hundreds of MB) are parsed once, entry by entry, with ``ijson`` when it is
installed (``pip install ijson``: memory holds one entry and the exchanges, not the document);
without it, with one ``json.load`` of the file read once as text (memory holds the parsed
document, each entry let go as soon as it is converted). Either way a damaged document is one
error line.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable, Iterator
from typing import IO, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from analyzer.auth.schemes import parse_credential
from analyzer.model import CaptureStats, NotInspected
from analyzer.protocols.http1 import HttpMessage
from analyzer.protocols.http_exchange import Exchange
from analyzer.sources.archive import (
    Archived,
    Warnings,
    connection_id,
    http_version,
    iso_time,
    keep_bodies,
    plain_body,
    plain_ip,
    split_target,
)
from analyzer.sources.pcapfile import CaptureError

#: Values recorders write in place of a secret.
PLACEHOLDER = re.compile(
    r"[\[<(]?\s*(?:redacted|removed|filtered|masked|sanitized|scrubbed|omitted)\s*[\]>)]?"
    r"|[\[<]\s*(?:hidden|secret|token|password)\s*[\]>]|\*{3,}|x{4,}",
    re.IGNORECASE,
)
#: Query and form parameters whose values are credentials (a placeholder there is dropped).
SECRET_PARAMS = frozenset(
    {"access_token", "assertion", "client_assertion", "client_secret", "password", "code"}
    | {"refresh_token", "id_token"}
)
_AUTH_HEADERS = ("authorization", "proxy-authorization")
MAX_DEPTH = 64  # nesting a HAR never needs (an entry is about 5 deep)
_TOO_DEEP = f"not a usable HTTP archive (JSON nested more than {MAX_DEPTH} deep)"
_TIMINGS = ("blocked", "dns", "connect", "send", "wait")  # before the response's first byte
_MAX_DIGITS = 18  # a number field longer than this is out of range (a status has 3)
_SCHEMES = {"http": False, "https": True, "ws": False, "wss": True}
SENSITIVE_EXPORT = (
    "export it again with sensitive data (Chrome / Edge: DevTools Settings > Preferences > "
    "Network > 'Allow to generate HAR with sensitive data', then 'Export HAR (with sensitive "
    "data)'; Firefox: 'Save All As HAR')"
)


class _Bad(Exception):
    """An entry whose fields have the wrong types: skipped, with one warning per kind."""


def read_har(path: str, stats: CaptureStats) -> Iterator[Archived | NotInspected]:
    """Yield the exchanges of a HAR in request-time order, then what it could not show.

    The whole archive is parsed before this returns: a document that is not JSON, not an HTTP
    archive (no ``log.entries``) or of the wrong shape raises :class:`CaptureError`.
    """
    stats.path = path
    stats.file_format = "har"
    warnings = Warnings(stats)
    built: list[tuple[float, int, _Built]] = []
    skipped: list[NotInspected] = []
    try:
        with open(path, "rb") as fh:
            if fh.read(3) != b"\xef\xbb\xbf":
                fh.seek(0)
            for n, entry in enumerate(_entries(path, fh), 1):
                try:
                    item = _entry(entry, warnings, n)
                except _Bad as exc:
                    warnings.add(f"entries skipped for wrong types: {exc}", f"entry {n}")
                    skipped.append(_skipped(entry, n, str(exc)))
                    continue
                if item is not None:
                    built.append((item.ts, n, item))
    except OSError as exc:
        raise CaptureError(f"{path}: cannot read ({exc.strerror or exc})") from None
    built.sort(key=lambda b: (b[0], b[1]))
    out = _finish([b[2] for b in built], warnings, stats)
    warnings.flush()
    return iter(out + skipped)


def _skipped(entry: Any, n: int, why: str) -> NotInspected:
    """The blind spot an entry that could not be read leaves: a request whose credential is
    unknown. Named by its server address and time when those could be read; otherwise it
    covers every scope (a verdict cannot rule it out)."""
    ts, server_ip = 0.0, ""
    if isinstance(entry, dict):
        started = entry.get("startedDateTime")
        if isinstance(started, str):
            ts = iso_time(started)[0] or 0.0
        address = entry.get("serverIPAddress")
        if isinstance(address, str):
            server_ip = plain_ip(address)
    detail = f"HAR entry {n} could not be read ({why}): its credentials are unknown"
    # no ports: matched on its address alone, either way round (or, without one, anywhere)
    return NotInspected("request-lost", f"har-entry-{n}", ts, "", 0, server_ip, 0, detail=detail)


class _Built:
    """One entry, converted: its request and response and what identifies its connection."""

    __slots__ = ("conn", "host", "port", "request", "response", "sanitized", "server_ip", "tls")

    def __init__(
        self,
        request: HttpMessage,
        response: HttpMessage | None,
        server_ip: str,
        port: int,
        conn: str,
        tls: bool,
        sanitized: bool,
    ) -> None:
        self.request = request
        self.response = response
        self.server_ip = server_ip
        self.port = port
        self.conn = conn
        self.tls = tls
        self.sanitized = sanitized
        self.host = request.header("host")

    @property
    def ts(self) -> float:
        return self.request.ts


def _finish(
    entries: list[_Built], warnings: Warnings, stats: CaptureStats
) -> list[Archived | NotInspected]:
    """Connection ids in time order, exchanges, and a record per connection with entries whose
    credentials the export removed."""
    _mark_removed_credentials(entries)
    first: dict[tuple, float] = {}
    out: list[Archived | NotInspected] = []
    removed: dict[str, NotInspected] = {}
    for b in entries:
        key = (b.server_ip, b.port, b.conn, "" if b.conn else (b.host or "").lower())
        conn_id = connection_id("har", repr(key), f"{first.setdefault(key, b.ts):.6f}")
        exchange = Exchange(
            conn_id, "", 0, b.server_ip, b.port, b.request, b.response, persistent=bool(b.conn)
        )
        out.append(Archived(exchange, b.tls))
        stats.exchanges += 1
        if b.sanitized:
            seen = removed.get(conn_id)
            count = seen.count + 1 if seen is not None else 1
            detail = (
                f"{count} entr{'y' if count == 1 else 'ies'} whose credentials the export removed"
            )
            removed[conn_id] = NotInspected(
                "sanitized", conn_id, seen.ts if seen else b.ts, "", 0, b.server_ip, b.port,
                host=b.host, count=count, detail=detail,
            )  # fmt: skip
    if removed:
        n = sum(r.count for r in removed.values())
        stats.warn(
            f"{stats.path}: a sanitized export: {n:,} entries had their credentials removed "
            f"(counted as not inspected, never guessed); {SENSITIVE_EXPORT}"
        )
    if not entries:
        warnings.add("no HTTP entries in the archive")
    return out + list(removed.values())


def _mark_removed_credentials(entries: list[_Built]) -> None:
    """Find requests whose credential the export removed, from what the server answered: the
    next leg of an NTLM / Negotiate handshake (it answers a credential), or success on a URL
    the server had just challenged, with neither a credential nor a cookie sent."""
    challenged: set[tuple[str, str, str]] = set()
    for b in entries:
        request, response = b.request, b.response
        if response is None or _credential(request) or b.sanitized:
            continue
        key = (b.conn, request.method, f"{b.host}{request.uri}")
        if response.status in (401, 407):
            values = response.header_all("www-authenticate") + response.header_all(
                "proxy-authenticate"
            )
            if any(_continues_handshake(v) for v in values):
                b.sanitized = True
            elif values:
                challenged.add(key)
        elif key in challenged and 100 <= response.status < 400 and not request.header("cookie"):
            b.sanitized = True


def _continues_handshake(challenge: str) -> bool:
    """``NTLM <blob>`` / ``Negotiate <blob>``: a server's answer to a credential."""
    scheme, _, blob = challenge.strip().partition(" ")
    return scheme.lower() in ("ntlm", "negotiate") and len(blob.strip()) > 8


def _credential(request: HttpMessage) -> bool:
    return any(request.header(h) for h in _AUTH_HEADERS)


# -- one entry ------------------------------------------------------------------------------------
def _entry(entry: Any, warnings: Warnings, n: int) -> _Built | None:
    if not isinstance(entry, dict):
        raise _Bad("an entry is not an object")
    req = _object(entry.get("request"), "request")
    ts, _ = iso_time(_text(entry.get("startedDateTime"), "startedDateTime"))
    if ts is None:
        raise _Bad("startedDateTime is not an ISO 8601 time")
    url = _text(req.get("url"), "request.url")
    scheme, _, port, origin = split_target(url)
    if scheme not in _SCHEMES:
        warnings.add("entries that are not HTTP (data:, blob:, extensions) skipped")
        return None
    version = http_version(_text(req.get("httpVersion"), "request.httpVersion") or "HTTP/1.1")
    method = _text(req.get("method"), "request.method").upper() or "GET"
    headers, authority = _headers(req.get("headers"), "request.headers")
    if not any(k == "host" for k, _ in headers):
        host_value = authority or urlsplit(url).netloc.rpartition("@")[2]
        if host_value:
            headers.insert(0, ("host", host_value))
    sanitized = _drop_placeholder_credentials(headers)
    origin, cleaned = _drop_placeholder_params(origin)
    request = HttpMessage(True, ts, version, method, origin, headers=headers)
    body, form_cleaned = _post_body(req.get("postData"))
    sanitized = sanitized or cleaned or form_cleaned
    if _cookies_dropped(req, headers):
        warnings.add("cookies removed by the export (cookie sessions are not judged here)")
    response, response_body = _response(entry, ts, version, warnings, n)
    warn = _warner(warnings, n)
    body = plain_body(request, body, warn, decoded=True)
    if response is not None:
        response_body = plain_body(response, response_body, warn, decoded=True)
    keep_bodies(request, response, body, response_body)
    server_ip = plain_ip(_text(entry.get("serverIPAddress"), "serverIPAddress"))
    conn = _text(entry.get("connection"), "connection")
    return _Built(request, response, server_ip, port or 80, conn, _SCHEMES[scheme], sanitized)


def _response(
    entry: dict, ts: float, version: str, warnings: Warnings, n: int
) -> tuple[HttpMessage | None, bytes]:
    resp = entry.get("response")
    if resp is None:
        return None, b""
    resp = _object(resp, "response")
    status = _number(resp.get("status"), "response.status")
    if not status:
        warnings.add("requests blocked or never answered (status 0): no response")
        return None, b""
    if not 100 <= status <= 999:
        raise _Bad(f"response.status {status} is not an HTTP status")
    headers, _ = _headers(resp.get("headers"), "response.headers")
    resp_version = _text(resp.get("httpVersion"), "response.httpVersion")
    reason = _text(resp.get("statusText"), "response.statusText")
    response = HttpMessage(
        False,
        ts + _wait(entry.get("timings")),
        http_version(resp_version) if resp_version else version,
        status=int(status),
        reason=reason,
        headers=headers,
    )
    content = resp.get("content")
    body = _content(_object(content, "response.content"), warnings, n) if content else b""
    return response, body


def _content(content: dict, warnings: Warnings, n: int) -> bytes:
    text = _text(content.get("text"), "response.content.text")
    if not text:
        return b""
    if _text(content.get("encoding"), "response.content.encoding").lower() == "base64":
        try:
            return base64.b64decode(text)
        except (binascii.Error, ValueError):
            warnings.add("base64 bodies that do not decode: left out", f"entry {n}")
            return b""
    return text.encode("utf-8", "surrogatepass")


def _post_body(post: Any) -> tuple[bytes, bool]:
    """The request body from ``postData`` (``text``, else its ``params``), and whether a secret
    parameter held a placeholder (dropped)."""
    if not post:
        return b"", False
    post = _object(post, "request.postData")
    text = _text(post.get("text"), "request.postData.text")
    if not text and isinstance(post.get("params"), list):
        pairs = []
        for p in post["params"]:
            p = _object(p, "request.postData.params")
            pairs.append((_text(p.get("name"), "param name"), _text(p.get("value"), "value")))
        text = urlencode(pairs)
    if _text(post.get("encoding"), "request.postData.encoding").lower() == "base64":
        try:
            return base64.b64decode(text), False
        except (binascii.Error, ValueError):
            return b"", False
    mime = _text(post.get("mimeType"), "request.postData.mimeType").lower()
    if mime.startswith("application/x-www-form-urlencoded"):
        text, cleaned = _without_placeholders(text)
        return text.encode("utf-8"), cleaned
    return text.encode("utf-8", "surrogatepass"), False


def _drop_placeholder_credentials(headers: list[tuple[str, str]]) -> bool:
    """Remove ``Authorization`` values that are only a placeholder (``Bearer [REDACTED]``)."""
    kept = []
    dropped = False
    for name, value in headers:
        if name in _AUTH_HEADERS and _is_placeholder(value):
            dropped = True
            continue
        kept.append((name, value))
    headers[:] = kept
    return dropped


def _is_placeholder(value: str) -> bool:
    if PLACEHOLDER.fullmatch(value.strip()):
        return True
    cred = parse_credential(value, source="authorization")
    text = cred.text if cred is not None else value.partition(" ")[2]
    return bool(text.strip()) and PLACEHOLDER.fullmatch(text.strip()) is not None


def _drop_placeholder_params(target: str) -> tuple[str, bool]:
    path, sep, query = target.partition("?")
    if not sep:
        return target, False
    query, cleaned = _without_placeholders(query)
    return (f"{path}?{query}" if query else path), cleaned


def _without_placeholders(query: str) -> tuple[str, bool]:
    """A query or form string without the secret parameters whose values are placeholders
    (rebuilt only when there are some)."""
    pairs = parse_qsl(query, keep_blank_values=True)
    kept = [
        (k, v) for k, v in pairs if not (k.lower() in SECRET_PARAMS and PLACEHOLDER.fullmatch(v))
    ]
    if len(kept) == len(pairs):
        return query, False
    return urlencode(kept), True


def _cookies_dropped(req: dict, headers: list[tuple[str, str]]) -> bool:
    cookies = req.get("cookies")
    listed = isinstance(cookies, list) and len(cookies) > 0
    has_header = any(k == "cookie" for k, _ in headers)
    placeholder = any(k == "cookie" and PLACEHOLDER.fullmatch(v.strip()) for k, v in headers)
    return (listed and not has_header) or placeholder


def _headers(value: Any, what: str) -> tuple[list[tuple[str, str]], str | None]:
    """Header pairs with lowercase names, pseudo-headers left out; and ``:authority``."""
    if value is None:
        return [], None
    if not isinstance(value, list):
        raise _Bad(f"{what} is not a list")
    out = []
    authority = None
    for h in value:
        h = _object(h, what)
        name = _text(h.get("name"), f"{what} name").strip().lower()
        text = _text(h.get("value"), f"{what} value")
        if name.startswith(":"):
            if name == ":authority":
                authority = text
            continue
        if name:
            out.append((name, text.replace("\r", " ").replace("\n", " ").strip()))
    return out, authority


def _wait(timings: Any) -> float:
    """Seconds from the request's start to the response's first byte."""
    if not isinstance(timings, dict):
        return 0.0
    total = 0.0
    for name in _TIMINGS:
        v = timings.get(name)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
            total += v
    return total / 1000.0


def _object(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise _Bad(f"{what} is not an object")
    return value


def _text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise _Bad(f"{what} is not text")


def _number(value: Any, what: str) -> int:
    """A whole number of the archive (a JSON number, or digits as text); 0 for null."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise _Bad(f"{what} is not a number")
    if isinstance(value, float) and math.isfinite(value):  # json.load also gives NaN, Infinity
        value = int(value)
    elif isinstance(value, str):
        # ASCII digits only: isdigit() is also true for "²", and int() refuses it (and any
        # text of over 4,300 digits)
        text = value.strip()
        digits = text.removeprefix("-")
        if not (digits.isascii() and digits.isdigit()):
            raise _Bad(f"{what} is not a number")
        if len(digits) > _MAX_DIGITS:
            raise _Bad(f"{what} is out of range")
        value = int(text)
    if not isinstance(value, int):
        raise _Bad(f"{what} is not a number")
    if abs(value) >= 10**_MAX_DIGITS:
        raise _Bad(f"{what} is out of range")
    return value


def _warner(warnings: Warnings, n: int) -> Callable[[str], None]:
    def warn(why: str) -> None:
        warnings.add(why, f"entry {n}")

    return warn


# -- parsing --------------------------------------------------------------------------------------
def _entries(path: str, fh: IO[bytes]) -> Iterator[Any]:
    """The items of ``log.entries``, one at a time (ijson), or from one ``json.load``."""
    try:
        import ijson
    except ImportError:
        return _loaded_entries(path, fh)
    return _streamed_entries(path, fh, ijson)


def _loaded_entries(path: str, fh: IO[bytes]) -> Iterator[Any]:
    try:
        document = json.loads(fh.read())  # bytes: decoded as UTF-8 by json itself
    except UnicodeDecodeError as exc:
        raise CaptureError(f"{path}: not an HTTP archive (not UTF-8 text: {exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise CaptureError(f"{path}: {_not_json(exc.msg, exc.lineno, exc.colno)}") from None
    except ValueError:  # a number of over 4,300 digits, which int() refuses (ijson: overflow)
        raise CaptureError(f"{path}: {_not_json('integer overflow')}") from None
    except RecursionError:
        raise CaptureError(f"{path}: {_TOO_DEEP}") from None
    entries = _log_entries(path, document)
    del document
    entries.reverse()  # pop from the end: each entry is let go once converted
    return _popped(entries)


def _popped(entries: list[Any]) -> Iterator[Any]:
    while entries:
        yield entries.pop()


def _log_entries(path: str, document: Any) -> list[Any]:
    log = document.get("log") if isinstance(document, dict) else None
    if not isinstance(log, dict) or "entries" not in log:
        raise CaptureError(f"{path}: JSON, but not an HTTP archive (no log.entries)")
    if not isinstance(log["entries"], list):
        raise CaptureError(f"{path}: not a usable HTTP archive (log.entries is not a list)")
    return log["entries"]


def _streamed_entries(path: str, fh: IO[bytes], ijson: Any) -> Iterator[Any]:
    """Each ``log.entries`` item, built from ijson's events as it is read; nothing else of the
    document is built. The position is tracked here (ijson's own prefixes grow with the nesting
    depth, quadratically in memory for a hostile document), and nesting is capped."""
    from ijson.common import ObjectBuilder

    found = None  # the first event at log.entries: start_array for a usable archive
    keys: list[str | None] = []  # per open container: the current key, or "item" in an array
    try:
        events = ijson.basic_parse(fh, use_float=True)
        for event, value in events:
            if event == "map_key":
                keys[-1] = value
                continue
            if event in ("end_map", "end_array"):
                keys.pop()
                continue
            where = tuple(keys)
            if not where and event != "start_map":
                break  # the document is not an object
            if where == ("log", "entries") and found is None:
                found = event
            elif where == ("log", "entries", "item"):
                yield _built(path, event, value, events, ObjectBuilder)
                continue
            if event in ("start_map", "start_array"):
                keys.append("item" if event == "start_array" else None)
                if len(keys) > MAX_DEPTH:
                    raise CaptureError(f"{path}: {_TOO_DEEP}")
    except ijson.JSONError as exc:
        raise CaptureError(f"{path}: {_not_json(str(exc).splitlines()[0][:200])}") from None
    except UnicodeDecodeError as exc:
        raise CaptureError(f"{path}: not an HTTP archive (not UTF-8 text: {exc.reason})") from None
    if found is None:
        raise CaptureError(f"{path}: JSON, but not an HTTP archive (no log.entries)")
    if found != "start_array":
        raise CaptureError(f"{path}: not a usable HTTP archive (log.entries is not a list)")


def _built(path: str, event: str, value: Any, events: Iterator, builder_type: Any) -> Any:
    """One value from its first event on (a scalar as it is), nesting capped."""
    if event not in ("start_map", "start_array"):
        return value
    builder = builder_type()
    builder.event(event, value)
    depth = 1
    for inner, inner_value in events:
        builder.event(inner, inner_value)
        if inner in ("start_map", "start_array"):
            depth += 1
            if depth > MAX_DEPTH:
                raise CaptureError(f"{path}: {_TOO_DEEP}")
        elif inner in ("end_map", "end_array"):
            depth -= 1
            if depth == 0:
                break
    return builder.value


def _not_json(why: str, line: int | None = None, column: int | None = None) -> str:
    where = f" at line {line}, column {column}" if line is not None else ""
    return f"not valid JSON ({why}{where}): the HTTP archive is damaged or cut short"
