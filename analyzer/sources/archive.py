"""What the archive readers (Fiddler SAZ, HTTP archive HAR) share: exchanges from stored messages.

An archive stores each request and response whole, already reassembled, and HTTPS already
decrypted by the proxy or browser that recorded it. Its exchanges therefore skip TCP and enter
where the wire path hands over finished exchanges (``protocols.http_exchange.Exchange``). Their
bodies are kept exactly as the wire path keeps them (the same policies and caps,
``auth.extract``), so the same traffic gives the same events however it was recorded. Stored
bodies are unchunked and decompressed first: gzip and deflate always, brotli when the ``brotli``
package is installed (``pip install brotli``; without it such a body is not read, and a warning
says so).
"""

from __future__ import annotations

import calendar
import datetime
import hashlib
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from analyzer.auth.extract import request_body_policy, response_body_policy
from analyzer.model import CaptureStats
from analyzer.oauth.endpoints import decode_body as _decode_standard
from analyzer.protocols.http1 import HttpMessage
from analyzer.protocols.http_exchange import Exchange

#: Most decoded body bytes ever produced from one stored body (the policies keep far less).
DECODED_CAP = 4 << 20
BROTLI_MISSING = "brotli-compressed bodies are not decoded: install the brotli package to read them"
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
_ISO_TIME = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:[.,](\d{1,12}))?"
    r"(Z|z|[+-]\d\d:?\d\d)?"
)


def connection_id(*parts: object) -> str:
    """A short stable connection id (``C`` + 11 hex digits, as the TCP reassembler makes them)
    from what identifies a connection in an archive."""
    text = "|".join(str(p) for p in parts)
    return "C" + hashlib.sha1(text.encode()).hexdigest()[:11]


def plain_ip(text: str | None) -> str:
    """An address as events show it: brackets and IPv4-mapped IPv6 (``::ffff:10.0.0.1``, as
    Fiddler writes client addresses) removed; ``""`` when absent or not an address."""
    if not text:
        return ""
    text = text.strip().strip("[]")
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return ""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def split_target(target: str) -> tuple[str, str | None, int | None, str]:
    """A request target as ``(scheme, host, port, origin-form)``.

    An absolute URL (Fiddler stores every request line that way, a HAR every ``url``) becomes
    its path and query, which is what the server received; an origin-form target is kept with
    no scheme (``""``) or host. The port is the URL's, else the scheme's default.
    """
    if target.startswith("/") or "://" not in target[:16]:
        return "", None, None, target
    try:
        parts = urlsplit(target)
        port = parts.port
    except ValueError:
        return "", None, None, target
    scheme = parts.scheme.lower()
    origin = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, parts.hostname, port or _DEFAULT_PORTS.get(scheme), origin


def port_number(text: str | None) -> int | None:
    """The TCP port ``text`` names (ASCII digits, 1 to 65535), else None: a garbled field.

    ``isdigit`` alone would pass ``²`` (0xb2 in a Latin-1 header) and a 5,000-digit string,
    both of which ``int`` refuses."""
    if not text or not (text.isascii() and text.isdigit() and len(text) <= 5):
        return None
    return int(text) if 0 < int(text) < 65536 else None


def host_port(host: str | None, default: int) -> int:
    """The port of a Host header value (``host:8080``, ``[v6]:8443``), else ``default``."""
    if not host:
        return default
    _, sep, port = host.rpartition(":")
    single = host.count(":") == 1 or host.startswith("[")  # not a bare IPv6 address
    number = port_number(port) if sep and single else None
    return default if number is None else number


def unchunk(body: bytes) -> tuple[bytes, bool]:
    """The data of a chunked body, and whether it was complete (a last chunk was seen)."""
    out = bytearray()
    pos = 0
    while pos < len(body):
        nl = body.find(b"\n", pos)
        if nl < 0:
            break
        match = _CHUNK_SIZE.match(body, pos)
        if match is None:
            break
        size = int(match.group(), 16)
        pos = nl + 1
        if size == 0:
            return bytes(out), True
        out += body[pos : pos + size]
        if pos + size > len(body):
            break
        pos += size
        if body.startswith(b"\r\n", pos):
            pos += 2
        elif body.startswith(b"\n", pos):
            pos += 1
    return bytes(out), False


def decompress(body: bytes, coding: str, limit: int = DECODED_CAP) -> tuple[bytes | None, str]:
    """Undo a ``Content-Encoding`` (gzip, deflate, brotli, identity; several in order).

    Returns ``(decoded, "")``, or ``(None, why)`` for corrupt data, an unknown coding, or brotli
    without the ``brotli`` package. At most ``limit`` bytes come out (zip and gzip bombs stay
    bounded).
    """
    codings = [c.strip().lower() for c in coding.split(",") if c.strip()]
    data: bytes | None = body
    for name in reversed(codings):
        if data is None:
            break
        if name in ("br", "brotli"):
            data, why = _unbrotli(data, limit)
            if data is None:
                return None, why
        elif name != "identity":
            data = _decode_standard(data, name, limit)
            if data is None:
                return None, f"{name}-encoded body could not be decoded"
    return (data[:limit] if data is not None else None), ""


def _unbrotli(data: bytes, limit: int) -> tuple[bytes | None, str]:
    try:
        import brotli
    except ImportError:
        return None, BROTLI_MISSING
    try:
        out = brotli.Decompressor().process(data, output_buffer_limit=limit)
    except brotli.error as exc:
        return None, f"br-encoded body could not be decoded ({exc})"
    return out[:limit], ""


def drop_headers(message: HttpMessage, names: tuple[str, ...]) -> None:
    """Remove headers that no longer describe the kept body (it was unchunked or decoded)."""
    message.headers[:] = [(k, v) for k, v in message.headers if k not in names]
    message._first = None  # the lookup cache is rebuilt on the next header() call


@dataclass(slots=True)
class Archived:
    """One exchange an archive holds, and whether it went over TLS (an ``https`` URL the
    recorder decrypted): its event's ``transport`` is then ``tls``."""

    exchange: Exchange
    tls: bool


def iso_time(text: str) -> tuple[float | None, bool]:
    """Epoch seconds of an ISO 8601 time as recorders write it (``2026-03-02T16:00:01.1234567
    +01:00``, ``...Z``, any number of fractional digits), and whether it named its zone (a time
    without one is taken as UTC). ``(None, False)`` when it is not such a time or out of range.

    The fraction is added as ``digits / 10**n``, as capture readers add theirs, so a time with
    the same digits gives the same float as the packet that carried it.
    """
    m = _ISO_TIME.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None:
        return None, False
    year, month, day, hour, minute, second, frac, zone = m.groups()
    try:
        whole = calendar.timegm(
            (int(year), int(month), int(day), int(hour), int(minute), int(second), 0, 0, 0)
        )
        datetime.date(int(year), int(month), int(day))  # timegm accepts February 31st
    except (ValueError, OverflowError):
        return None, False
    if int(hour) > 23 or int(minute) > 59 or int(second) > 60:
        return None, False
    if zone and zone not in ("Z", "z"):
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        whole -= sign * (int(digits[:2]) * 3600 + int(digits[2:4]) * 60)
    fraction = int(frac) / 10 ** len(frac) if frac else 0.0
    return whole + fraction, bool(zone)


def http_version(text: str) -> str:
    """``HttpMessage.version`` for a version as archives write it: ``1.1``, ``2`` for HTTP/2
    in any spelling (``2.0``, ``h2``, ``http/2.0+quic/46``), ``3`` for HTTP/3."""
    text = text.strip().lower().removeprefix("http/")
    if text.startswith(("2", "h2")):
        return "2"
    if text.startswith(("3", "h3")):
        return "3"
    return "1.0" if text.startswith("1.0") else "1.1"


def plain_body(
    message: HttpMessage, stored: bytes, warn: Callable[[str], None], decoded: bool = False
) -> bytes:
    """The body of a stored message with transfer and content codings undone.

    ``decoded``: the recorder may have decoded it already (a HAR's ``content.text``): a body that
    does not decode is taken as it stands. A SAZ body is stored as received, so a body that does
    not decode is kept encoded (the auth stages then skip it), with a warning.
    """
    body = stored
    if "chunked" in (message.header("transfer-encoding") or "").lower() and not decoded:
        body, complete = unchunk(body)
        if not complete:
            message.body_truncated = True
        drop_headers(message, ("transfer-encoding",))
    coding = message.header("content-encoding")
    if coding and body:
        plain, why = decompress(body, coding)
        if plain is not None:
            body = plain
        elif not decoded:
            warn(why)
            return body
        drop_headers(message, ("content-encoding",))
    return body


def keep_bodies(
    request: HttpMessage | None,
    response: HttpMessage | None,
    request_body: bytes,
    response_body: bytes,
) -> None:
    """Keep what the wire path would keep of each body (``auth.extract``'s policies)."""
    if request is not None:
        request.body = _kept(request, request_body, request_body_policy(request))
    if response is not None:
        response.body = _kept(response, response_body, response_body_policy(request, response))


def _kept(message: HttpMessage, body: bytes, cap: int) -> bytes | None:
    if cap <= 0 or not body:
        return None  # as on the wire: a skipped or empty body is not kept
    if len(body) > cap:
        message.body_truncated = True
    return body[:cap]


class Warnings:
    """Warnings of one archive, each kind said once with how often it happened (a trace of
    10,000 sessions with the same oddity gives one line, not 10,000)."""

    def __init__(self, stats: CaptureStats) -> None:
        self.stats = stats
        self.counts: dict[str, int] = {}
        self.first: dict[str, str] = {}

    def add(self, kind: str, where: str = "") -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if where and kind not in self.first:
            self.first[kind] = where

    def flush(self) -> None:
        for kind, n in self.counts.items():
            first = self.first.get(kind)
            if n > 1:
                where = f" ({n:,} times, first in {first})" if first else f" ({n:,} times)"
            else:
                where = f" ({first})" if first else ""
            self.stats.warn(f"{self.stats.path}: {kind}{where}")
        self.counts.clear()
        self.first.clear()
