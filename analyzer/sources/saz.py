"""Fiddler session archives (``.saz``): each session an HTTP exchange, straight to the auth stages.

A SAZ is a zip of ``raw/NN_c.txt`` (the request as Fiddler received it, request line in absolute
form), ``raw/NN_s.txt`` (the response) and ``raw/NN_m.xml`` (session metadata: timers in local time
with a UTC offset, the client's address and port, the server's address, flags), plus
``raw/NN_w.txt`` WebSocket logs (not read: WebSocket messages carry no HTTP authentication),
``_index.htm`` and ``[Content_Types].xml``. Archives seen in the field vary: session numbers of
growing width (``1_c``, ``01_c``, ``001_c``), ``_m.xml`` with a byte-order mark, timers with 6 or 7
fractional digits, stored and deflated entries mixed, no ``_m.xml`` at all, CONNECT tunnels that
were never decrypted, brotli bodies.

Sessions on one client connection (the ``x-clientip`` / ``x-clientport`` flags, with the server's
``x-hostip`` and port) share a connection id, so the legs of an NTLM or Negotiate handshake pair
up. A CONNECT tunnel through which no decrypted session came is recorded as not inspected.

Nothing in the archive is ever written to disk (its names are only matched, so ``../`` names are
harmless), every entry is read with a size cap (zip bombs), and a password-protected, damaged or
truncated archive is one error line.
"""

from __future__ import annotations

import calendar
import html
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from analyzer.model import CaptureStats, NotInspected
from analyzer.protocols.http1 import MAX_HEAD, HttpMessage, parse_head
from analyzer.protocols.http_exchange import Exchange
from analyzer.sources.archive import (
    Archived,
    Warnings,
    connection_id,
    host_port,
    http_version,
    iso_time,
    keep_bodies,
    plain_body,
    plain_ip,
    port_number,
    split_target,
)
from analyzer.sources.pcapfile import CaptureError

#: Stored bytes read of one request or response: a head (256 KiB at most) and the body the
#: auth stages keep (1 MiB decoded); anything past this is not needed.
MAX_MESSAGE = 4 << 20
MAX_META = 1 << 20  # bytes of one _m.xml
MAX_TOTAL = 8 << 30  # bytes decompressed from one archive, all entries together
MAX_SESSIONS = 1_000_000
BOMB_RATIO = 100  # an entry expanding more than this, past MAX_MESSAGE, looks like a zip bomb
RESAVE = (
    "open it in Fiddler and save it again without a password (File > Save > All Sessions, "
    "type 'Session Archive Zip', not 'Password-Protected SAZ'; in Fiddler Everywhere, export "
    "the sessions as SAZ without a password)"
)
_NAME = re.compile(r"raw[/\\](\d{1,9})_([csmw])\.(?:txt|xml)", re.IGNORECASE)
_TIMERS = re.compile(r"<SessionTimers\b([^>]*)>", re.IGNORECASE)
_FLAG = re.compile(r"<SessionFlag\b([^>]*)>", re.IGNORECASE)
_ATTR = re.compile(r"([\w:.-]+)\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_AES = 99  # WinZip AES: the compression method an AES-encrypted entry declares
#: Timers that date the response, best first (Fiddler's client side, then its server side).
_RESPONSE_TIMERS = ("ClientBeginResponse", "ServerBeginResponse", "GotResponseHeaders")


@dataclass(slots=True)
class _Session:
    """The entries of one session number."""

    number: int
    parts: dict[str, zipfile.ZipInfo] = field(default_factory=dict)  # c, s, m, w


@dataclass(slots=True)
class _Meta:
    timers: dict[str, str] = field(default_factory=dict)
    flags: dict[str, str] = field(default_factory=dict)  # names lowercase


@dataclass(slots=True)
class _Tunnel:
    """A CONNECT session, to be judged once every session has been read."""

    record: NotInspected
    client: tuple[str, int] | None  # the client connection's endpoint, when Fiddler noted it


def read_saz(path: str, stats: CaptureStats) -> Iterator[Archived | NotInspected]:
    """Yield the exchanges of a SAZ (in session order) and what it could not show.

    The archive is opened and checked before this returns: a damaged, truncated or
    password-protected archive, or a zip that is not a SAZ, raises :class:`CaptureError`.
    """
    stats.path = path
    stats.file_format = "saz"
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise CaptureError(
            f"{path}: a damaged or truncated zip archive, not readable as a Fiddler SAZ ({exc}): "
            "save the sessions again in Fiddler"
        ) from None
    try:
        sessions = _sessions(path, archive, stats)
    except BaseException:
        archive.close()
        raise
    return _read(path, archive, sessions, stats)


def _sessions(path: str, archive: zipfile.ZipFile, stats: CaptureStats) -> list[_Session]:
    """The archive's sessions by number, after the checks that make it unreadable."""
    infos = archive.infolist()
    if any(i.flag_bits & 0x1 or i.compress_type == _AES for i in infos):
        raise CaptureError(f"{path}: a password-protected (encrypted) SAZ: {RESAVE}")
    found: dict[int, _Session] = {}
    ignored = 0
    warnings = Warnings(stats)
    for info in infos:
        m = _NAME.fullmatch(info.filename)
        if m is None:
            if info.filename not in ("_index.htm", "[Content_Types].xml") and not info.is_dir():
                ignored += 1
            continue
        number, part = int(m.group(1)), m.group(2).lower()
        session = found.get(number)
        if session is None:
            if len(found) >= MAX_SESSIONS:
                warnings.add(f"more than {MAX_SESSIONS:,} sessions: the rest not read")
                break
            session = found[number] = _Session(number)
        if part in session.parts:
            warnings.add("two entries for one session part: the first read", info.filename)
            continue
        session.parts[part] = info
    if not any("c" in s.parts for s in found.values()):
        raise CaptureError(
            f"{path}: a zip archive but not a Fiddler SAZ (no raw/NN_c.txt request entries)"
        )
    if ignored:
        stats.warn(f"{path}: {ignored:,} entries that are not SAZ sessions ignored")
    websockets = sum("w" in s.parts for s in found.values())
    if websockets:
        stats.warn(
            f"{path}: {websockets:,} WebSocket message logs (raw/NN_w.txt) not read: "
            "WebSocket messages carry no HTTP authentication"
        )
    warnings.flush()
    return [found[n] for n in sorted(found)]


def _read(
    path: str, archive: zipfile.ZipFile, sessions: list[_Session], stats: CaptureStats
) -> Iterator[Archived | NotInspected]:
    reader = _Reader(path, archive, stats)
    out: list[Archived | NotInspected] = []
    tunnels: list[_Tunnel] = []
    try:
        for session in sessions:
            if reader.total > MAX_TOTAL:
                stats.warn(
                    f"{path}: stopped after {MAX_TOTAL >> 30} GiB decompressed (a zip bomb?): "
                    f"sessions from {session.number} on not read"
                )
                break
            item, tunnel = reader.session(session)
            if item is not None:
                out.append(item)
            if tunnel is not None:
                tunnels.append(tunnel)
        reader.finish()
    finally:
        archive.close()
    out += _undecrypted(tunnels, out)
    yield from out


class _Reader:
    """Reads sessions one by one: caps, times, connection ids and warnings."""

    def __init__(self, path: str, archive: zipfile.ZipFile, stats: CaptureStats) -> None:
        self.path = path
        self.archive = archive
        self.stats = stats
        self.warnings = Warnings(stats)
        self.total = 0  # bytes decompressed so far
        self.first_ts: dict[tuple, float] = {}  # connection key -> its first request time
        self.last_ts: float | None = None  # the previous session's request time
        self.untimed = 0  # sessions dated by the archive entry's time
        self.tunnel_exchange: Archived | None = None  # the CONNECT exchange of the last tunnel

    # -- one session --------------------------------------------------------------------------
    def session(self, session: _Session) -> tuple[Archived | NotInspected | None, _Tunnel | None]:
        """The session's exchange (or what is known of a request that was cut short), and its
        tunnel when it is a CONNECT."""
        number = session.number
        meta = self._meta(session)
        ts = self._request_time(session, meta)
        flags = meta.flags
        client = (plain_ip(flags.get("x-clientip")), _port(flags.get("x-clientport")))
        server_ip = plain_ip(flags.get("x-hostip"))
        raw = self._entry(session.parts.get("c"), MAX_MESSAGE)
        request, request_body = _message(raw, ts, True) if raw else (None, b"")
        if request is None:
            self.warnings.add("session without a readable request: its credentials are unknown")
            return self._lost(number, ts, client, server_ip, raw), None
        self.stats.exchanges += 1
        scheme, host, port, origin = split_target(request.uri)
        connect = request.method == "CONNECT"
        if connect:
            host, port = self._connect_target(request.uri, number)
        else:
            request.uri = origin
        if host is None:
            host = request.header("host")
            port = host_port(host, 443 if scheme == "https" else 80)
        server = (server_ip, port or 80)
        key = (client, server) if client[1] else (client, server, (host or "").lower())
        first = self.first_ts.setdefault(key, ts)
        conn_id = connection_id("saz", repr(key), f"{first:.6f}")
        response, response_body = self._response(session, meta, ts)
        request_body = plain_body(request, request_body, self._warn(number))
        if response is not None:
            response_body = plain_body(response, response_body, self._warn(number))
        keep_bodies(request, response, request_body, response_body)
        exchange = Exchange(
            conn_id, *client, *server, request, response, persistent=bool(client[1])
        )
        archived = Archived(exchange, tls=scheme == "https")
        if not connect:
            return archived, None
        detail = f"session {number}: CONNECT tunnel not decrypted by Fiddler"
        record = NotInspected(
            "connect-tunnel", conn_id, ts, *client, *server, host=host, detail=detail
        )
        return archived, _Tunnel(record, client if client[1] else None)

    def _connect_target(self, uri: str, number: int) -> tuple[str, int]:
        """The host and port a CONNECT names (``srv:8443``, ``[v6]:443``). A port that is not
        one (``²``, ``99999999``, 5,000 digits, none at all) is a garbled field: said once, and
        the tunnel taken to go to 443."""
        host, sep, port_text = uri.rpartition(":")
        if not sep:
            host = uri
        port = port_number(port_text) if sep else None
        if port is None:
            self.warnings.add(
                "CONNECT target without a usable port (not 1-65535): 443 assumed",
                f"session {number}",
            )
            return host, 443
        return host, port

    def _lost(
        self,
        number: int,
        ts: float,
        client: tuple[str, int],
        server_ip: str,
        raw: bytes,
    ) -> NotInspected:
        """A session whose request was cut short (or missing): counted, never guessed. When
        nothing at all is known of it (no request, no client port, no server address), the
        record names no endpoint and so covers every scope: it may have been any request."""
        if not raw and not server_ip and not client[1]:
            detail = f"session {number}: no readable request and nothing known of it"
            return NotInspected(
                "request-lost", f"saz-session-{number}", ts, "", 0, "", 0, detail=detail
            )
        host = _partial_host(raw)
        conn_id = connection_id("saz-lost", *client, server_ip, number)
        detail = f"session {number}: request cut short, its credentials are unknown"
        port = host_port(host, 80)
        return NotInspected(
            "request-lost", conn_id, ts, *client, server_ip, port, host=host, detail=detail
        )

    def _response(
        self, session: _Session, meta: _Meta, request_ts: float
    ) -> tuple[HttpMessage | None, bytes]:
        raw = self._entry(session.parts.get("s"), MAX_MESSAGE)
        if not raw:
            return None, b""
        ts = request_ts
        for name in _RESPONSE_TIMERS:
            when, _ = iso_time(meta.timers.get(name, ""))
            if when is not None and when >= request_ts:
                ts = when
                break
        response, body = _message(raw, ts, False)
        if response is None:
            self.warnings.add(
                "response not readable as HTTP: left out", f"session {session.number}"
            )
        return response, body

    # -- times ----------------------------------------------------------------------------------
    def _request_time(self, session: _Session, meta: _Meta) -> float:
        """ClientBeginRequest in UTC; without it, the previous session's time (or the archive
        entry's time), a microsecond per session later, so session order is kept."""
        for name in ("ClientBeginRequest", "ClientConnected", "GotRequestHeaders"):
            when, zoned = iso_time(meta.timers.get(name, ""))
            if when is not None:
                if not zoned:
                    self.warnings.add("session times without a UTC offset, taken as UTC")
                self.last_ts = when
                return when
        self.untimed += 1
        if self.last_ts is None:
            info = session.parts.get("c") or next(iter(session.parts.values()))
            self.last_ts = _zip_time(info)
        self.last_ts += 1e-6
        return self.last_ts

    # -- entries --------------------------------------------------------------------------------
    def _meta(self, session: _Session) -> _Meta:
        raw = self._entry(session.parts.get("m"), MAX_META)
        return _parse_meta(raw) if raw else _Meta()

    def _entry(self, info: zipfile.ZipInfo | None, cap: int) -> bytes:
        """The first ``cap`` bytes of an entry (b"" when absent or unreadable)."""
        if info is None:
            return b""
        if info.file_size > cap and info.file_size > BOMB_RATIO * max(1, info.compress_size):
            self.warnings.add(
                f"entries expanding over {BOMB_RATIO} times (a zip bomb?) read to "
                f"{cap >> 20} MiB only",
                info.filename,
            )
        try:
            with self.archive.open(info) as fh:
                data = fh.read(cap)
        except Exception as exc:  # BadZipFile, zlib.error, EOFError...: one damaged entry
            self.warnings.add(f"entries not readable ({_why(exc)})", info.filename)
            return b""
        self.total += len(data)
        return data

    def _warn(self, number: int) -> Callable[[str], None]:
        def warn(why: str) -> None:
            self.warnings.add(why, f"session {number}")

        return warn

    def finish(self) -> None:
        if self.untimed:
            self.stats.warn(
                f"{self.path}: {self.untimed:,} sessions without timers (no raw/NN_m.xml): their "
                "times are unknown; they are dated by the archive's file times (when it was "
                "saved, in an unknown zone) and kept in session order, so token lifetimes "
                "checked against them are approximate"
            )
        self.warnings.flush()


def _message(raw: bytes, ts: float, request: bool) -> tuple[HttpMessage | None, bytes]:
    """A stored message's head (None when it is not a complete HTTP head) and its body."""
    m = _HEAD_END.search(raw, 0, MAX_HEAD + 4)
    if m is None:
        return None, b""
    message = parse_head(raw[: m.start()], ts)
    if message is None or message.is_request != request:
        return None, b""
    message.version = http_version(message.version)
    return message, raw[m.end() :]


def _parse_meta(raw: bytes) -> _Meta:
    """Timers and flags of an ``_m.xml`` (UTF-8 with or without a BOM, or UTF-16), read with
    patterns, not an XML parser: a damaged file still gives what it holds, and there are no
    entities to expand."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = raw.decode("utf-16", "replace")
    else:
        text = raw.decode("utf-8-sig", "replace")
    meta = _Meta()
    m = _TIMERS.search(text)
    if m is not None:
        meta.timers = _attributes(m.group(1))
    for m in _FLAG.finditer(text):
        attrs = _attributes(m.group(1))
        if "N" in attrs:
            meta.flags[attrs["N"].lower()] = attrs.get("V", "")
    return meta


def _attributes(text: str) -> dict[str, str]:
    return {m[0]: html.unescape(m[1] if m[1] or not m[2] else m[2]) for m in _ATTR.findall(text)}


def _undecrypted(tunnels: list[_Tunnel], items: list[Archived | NotInspected]) -> list:
    """The records of the tunnels no decrypted (https) session came through.

    A decrypted session came through a tunnel on its client connection when Fiddler recorded
    the client's port, else to its target host and port: through the latest such tunnel opened
    before it (a client port reused an hour later is another tunnel), and among tunnels opened
    together, through the one that has carried fewest so far - so two tunnels to one target
    are not both vouched for by one session."""
    opened: dict[tuple, list[list]] = {}  # key -> [[tunnel, sessions carried], ...]
    for tunnel in tunnels:
        opened.setdefault(_tunnel_key(tunnel), []).append([tunnel, 0])
    sessions = [
        (item.exchange.request.ts, key)
        for item in items
        if isinstance(item, Archived) and item.tls and item.exchange.request is not None
        for key in _keys(item.exchange)
    ]
    for ts, key in sorted(sessions):
        before = [c for c in opened.get(key, ()) if c[0].record.ts - _CLOCK_SLACK <= ts]
        if before:
            latest = max(c[0].record.ts for c in before)
            together = [c for c in before if c[0].record.ts >= latest - _CLOCK_SLACK]
            min(together, key=lambda c: c[1])[1] += 1
    return [c[0].record for carried in opened.values() for c in carried if not c[1]]


def _tunnel_key(tunnel: _Tunnel) -> tuple:
    if tunnel.client is not None:
        return ("client", *tunnel.client)
    record = tunnel.record
    return ("target", (record.host or "").lower(), record.server_port)


#: Seconds a decrypted session may be dated before its tunnel (Fiddler's timers round).
_CLOCK_SLACK = 1.0


def _keys(x: Exchange) -> list[tuple]:
    """What ties a decrypted session to its tunnel: its client endpoint, its target."""
    keys: list[tuple] = []
    if x.client_port:
        keys.append(("client", x.client_ip, x.client_port))
    host = x.request.header("host") if x.request is not None else None
    name = (host or "").rsplit(":", 1)[0].lower() if host else ""
    keys.append(("target", name, x.server_port))
    return keys


def _partial_host(raw: bytes) -> str | None:
    m = re.search(rb"(?im)^host:[ \t]*([^\r\n]{1,255})", raw[:MAX_HEAD])
    return m.group(1).decode("latin-1").strip() if m else None


def _port(text: str | None) -> int:
    """A client port of the session's flags; 0 (unknown) when garbled."""
    return port_number(text) or 0


def _zip_time(info: zipfile.ZipInfo) -> float:
    """An entry's modification time (a DOS time: local, zone unknown; taken as UTC)."""
    try:
        return float(calendar.timegm((*info.date_time, 0, 0, 0)))
    except (ValueError, OverflowError):
        return 0.0


def _why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
