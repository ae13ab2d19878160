"""The same traffic as a capture, written as the files admins hand over instead: a Fiddler session
archive (``.saz``) and an HTTP archive (``.har``).

``saz_bytes`` writes what Fiddler Classic writes when it decrypts as a proxy: per session
``raw/NN_c.txt`` (request line in absolute form), ``raw/NN_s.txt`` and ``raw/NN_m.xml`` (timers in
local time, UTC+01:00, with 7 fractional digits; a byte-order mark; the ``x-clientip``,
``x-clientport`` and ``x-hostip`` flags), session numbers as wide as the session count, stored and
deflated entries mixed; a TLS connection becomes a CONNECT tunnel that was not decrypted, and a
request cut short by the end of the capture a session with a partial request and no response.
``har_bytes`` writes what a browser exports (HAR 1.2: response bodies decoded, in base64 when not
text; ``serverIPAddress``; ``connection``; timings). Both are byte-identical from run to run: the
zip is written here, entry times fixed, deflate by the package's own encoder.

Run ``python captures/generate --archives`` to rewrite ``captures/archives/`` from the committed
captures (see ``ARCHIVED``).
"""

from __future__ import annotations

import base64
import gzip
import json
import struct
import zlib
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qsl

from .constants import HERE
from .deflate import deflate_fixed
from .frompcap import Message, TlsTunnel, WireExchange, read_exchanges

#: Captures written as archives into captures/archives/ (every auth scheme; the S2S scenario).
ARCHIVED = ("exchange-sfb.pcap", "hybrid/healthy.pcap")
#: Fiddler writes session timers in the machine's local time with its offset.
LOCAL = timezone(timedelta(hours=1))
_ZIP_TIME = (2026, 3, 2, 17, 0, 0)  # every entry's modification time (DOS time, local)
_CONTENT_TYPES = (
    b'<?xml version="1.0" encoding="utf-8" ?>\r\n'
    b'<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    b'<Default Extension="htm" ContentType="text/html" />'
    b'<Default Extension="xml" ContentType="application/xml" />'
    b'<Default Extension="txt" ContentType="text/plain" /></Types>'
)


def saz_bytes(exchanges: Sequence[WireExchange], tunnels: Sequence[TlsTunnel] = ()) -> bytes:
    """A Fiddler SAZ of ``exchanges`` and ``tunnels``, sessions in time order."""
    sessions = sorted(
        [(x.request.ts_ns, 0, x) for x in exchanges] + [(t.ts_ns, 1, t) for t in tunnels],
        key=lambda s: (s[0], s[1]),
    )
    width = len(str(len(sessions)))
    entries: list[tuple[str, bytes, bool]] = [("[Content_Types].xml", _CONTENT_TYPES, True)]
    for n, (_, _, session) in enumerate(sessions, 1):
        number = f"{n:0{width}d}"
        deflated = n % 2 == 0  # stored and deflated entries mixed, as real archives have them
        if isinstance(session, TlsTunnel):
            request, response, meta = _tunnel(session, n)
        else:
            request, response, meta = _session(session, n)
        entries.append((f"raw/{number}_c.txt", request, deflated))
        if response is not None:
            entries.append((f"raw/{number}_s.txt", response, not deflated))
        entries.append((f"raw/{number}_m.xml", meta, True))
    return zip_bytes(entries)


def har_bytes(exchanges: Sequence[WireExchange], creator: str = "WebInspector") -> bytes:
    """An HTTP archive (HAR 1.2) of the complete ``exchanges``, as a browser exports it."""
    entries = [_har_entry(x) for x in exchanges if x.complete]
    log = {
        "log": {
            "version": "1.2",
            "creator": {"name": creator, "version": "537.36"},
            "pages": [],
            "entries": entries,
        }
    }
    return (json.dumps(log, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def write_archives(out_dir: Path, captures: Path = HERE) -> list[Path]:
    """Write the SAZ and HAR of every capture in ``ARCHIVED`` to ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in ARCHIVED:
        exchanges, tunnels = read_exchanges((captures / name).read_bytes())
        stem = Path(name).stem
        blobs = {".saz": saz_bytes(exchanges, tunnels), ".har": har_bytes(exchanges)}
        for suffix, blob in blobs.items():
            path = out_dir / f"{stem}{suffix}"
            path.write_bytes(blob)
            written.append(path)
    return written


# -- SAZ -------------------------------------------------------------------------------------
def _session(x: WireExchange, n: int) -> tuple[bytes, bytes | None, bytes]:
    """Request (absolute-form request line, as Fiddler stores it), response, metadata."""
    head, sep, body = x.request.data.partition(b"\r\n\r\n")
    line, _, rest = head.partition(b"\r\n")
    method, target, version = [*line.split(b" ", 2), b"", b""][:3]
    host = _header(head, b"host") or x.server[0].encode()
    if target.startswith(b"/"):
        target = b"http://" + host + target
    request = b" ".join((method, target, version)) + b"\r\n" + rest + sep + body
    if not x.complete:
        request = x.request.data  # cut short: no complete head for Fiddler to rewrite either
    timers = {"ClientConnected": x.request.ts_ns, "ClientBeginRequest": x.request.ts_ns}
    if x.response is not None:
        timers["ServerBeginResponse"] = x.response.ts_ns
        timers["ClientBeginResponse"] = x.response.ts_ns
    response = x.response.data if x.response is not None else None
    return request, response, _meta(n, timers, x.client, x.server[0])


def _tunnel(t: TlsTunnel, n: int) -> tuple[bytes, bytes, bytes]:
    """A CONNECT session Fiddler passed through without decrypting it."""
    target = f"{t.sni or t.server[0]}:{t.server[1]}".encode()
    request = b"CONNECT " + target + b" HTTP/1.1\r\nHost: " + target + b"\r\n\r\n"
    body = (
        b"This is a CONNECT tunnel, through which encrypted HTTPS traffic flows.\r\n"
        b"HTTPS decryption is not enabled for this host.\r\n"
    )
    response = (
        b"HTTP/1.1 200 Connection Established\r\nFiddlerGateway: Direct\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    timers = {"ClientConnected": t.ts_ns, "ClientBeginRequest": t.ts_ns}
    timers["ClientBeginResponse"] = t.ts_ns
    return request, response, _meta(n, timers, t.client, t.server[0], bits=0x1000)


def _meta(
    n: int, timers: dict[str, int], client: tuple[str, int], host_ip: str, bits: int = 0
) -> bytes:
    stamps = " ".join(f'{k}="{_local_time(v)}"' for k, v in timers.items())
    flags = (("x-clientip", f"::ffff:{client[0]}"), ("x-clientport", str(client[1])))
    flags += (("x-hostip", host_ip), ("x-processinfo", "w3wp:4242"))
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        f'<Session SID="{n}" BitFlags="{bits:x}">',
        f'  <SessionTimers {stamps} GatewayTime="0" DNSTime="0" TCPConnectTime="0" />',
        "  <PipeInfo />",
        "  <SessionFlags>",
        *(f'    <SessionFlag N="{k}" V="{v}" />' for k, v in flags),
        "  </SessionFlags>",
        "</Session>",
    ]
    return b"\xef\xbb\xbf" + "\r\n".join(lines).encode()


def _local_time(ts_ns: int) -> str:
    """A time as Fiddler writes it: local, 7 fractional digits, with the UTC offset."""
    seconds, ns = divmod(ts_ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, LOCAL)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ns // 100:07d}+01:00"


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name:
            return value.strip()
    return None


def zip_bytes(entries: Sequence[tuple[str, bytes, bool]]) -> bytes:
    """A zip archive of (name, data, deflate?) entries, written byte for byte here."""
    out = bytearray()
    central = bytearray()
    dos_time = (_ZIP_TIME[3] << 11) | (_ZIP_TIME[4] << 5) | (_ZIP_TIME[5] // 2)
    dos_date = ((_ZIP_TIME[0] - 1980) << 9) | (_ZIP_TIME[1] << 5) | _ZIP_TIME[2]
    for name, data, deflated in entries:
        stored = deflate_fixed(data) if deflated else data
        method = 8 if deflated else 0
        crc = zlib.crc32(data)
        fields = (20, 0, method, dos_time, dos_date, crc, len(stored), len(data))
        raw_name = name.encode("utf-8")
        offset = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, *fields, len(raw_name), 0)
        out += raw_name + stored
        central += struct.pack("<IH", 0x02014B50, 20) + struct.pack("<HHHHHIII", *fields)
        central += struct.pack("<HHHHHII", len(raw_name), 0, 0, 0, 0, 0, offset) + raw_name
    end = struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), len(out), 0
    )
    return bytes(out + central + end)


# -- HAR -------------------------------------------------------------------------------------
def _har_entry(x: WireExchange) -> dict:
    head, _, body = x.request.data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = [*lines[0].split(" ", 2), "", ""][:3]
    headers = _har_headers(lines[1:])
    host = next((v for k, v in headers if k.lower() == "host"), x.server[0])
    url = f"http://{host}{target}" if target.startswith("/") else target
    query = target.partition("?")[2]
    request: dict = {
        "method": method,
        "url": url,
        "httpVersion": version,
        "headers": [{"name": k, "value": v} for k, v in headers],
        "queryString": [{"name": k, "value": v} for k, v in parse_qsl(query)],
        "cookies": [],
        "headersSize": len(head) + 4,
        "bodySize": len(body),
    }
    if body:
        mime = next((v for k, v in headers if k.lower() == "content-type"), "")
        request["postData"] = {"mimeType": mime, "text": body.decode("utf-8")}
    start = x.request.ts_ns
    wait = (x.response.ts_ns - start) / 1e6 if x.response is not None else 0.0
    return {
        "startedDateTime": _utc_time(start),
        "time": round(wait, 3),
        "request": request,
        "response": _har_response(x.response),
        "cache": {},
        "timings": {"blocked": 0, "dns": -1, "ssl": -1, "connect": -1, "send": 0,
                    "wait": wait, "receive": 0},
        "serverIPAddress": x.server[0],
        "connection": str(x.client[1]),
    }  # fmt: skip


def _har_response(message: Message | None) -> dict:
    if message is None:
        return {"status": 0, "statusText": "", "httpVersion": "", "headers": [], "cookies": [],
                "content": {"size": 0, "mimeType": "x-unknown"}, "redirectURL": "",
                "headersSize": -1, "bodySize": -1, "_error": "net::ERR_EMPTY_RESPONSE"}  # fmt: skip
    head, _, body = message.data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, status, reason = [*lines[0].split(" ", 2), "", ""][:3]
    headers = _har_headers(lines[1:])
    names = {k.lower(): v for k, v in headers}
    if "chunked" in names.get("transfer-encoding", "").lower():
        body = _unchunk(body)
    if names.get("content-encoding", "").lower() == "gzip":
        body = gzip.decompress(body)  # a browser stores the decoded body
    content: dict = {"size": len(body), "mimeType": names.get("content-type", "x-unknown")}
    if body:
        try:
            content["text"] = body.decode("utf-8")
        except UnicodeDecodeError:
            content["text"] = base64.b64encode(body).decode()
            content["encoding"] = "base64"
    return {
        "status": int(status),
        "statusText": reason,
        "httpVersion": version,
        "headers": [{"name": k, "value": v} for k, v in headers],
        "cookies": [],
        "content": content,
        "redirectURL": names.get("location", ""),
        "headersSize": len(head) + 4,
        "bodySize": len(message.data) - len(head) - 4,
    }


def _har_headers(lines: list[str]) -> list[tuple[str, str]]:
    out = []
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            out.append((name.strip(), value.strip()))
    return out


def _unchunk(body: bytes) -> bytes:
    out, pos = bytearray(), 0
    while True:
        nl = body.index(b"\r\n", pos)
        size = int(body[pos:nl].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += body[nl + 2 : nl + 2 + size]
        pos = nl + 2 + size + 2


def _utc_time(ts_ns: int) -> str:
    """``startedDateTime`` in UTC, to the microsecond (browsers write milliseconds; the
    microseconds keep the events' order and times identical to the capture's)."""
    seconds, ns = divmod(ts_ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ns // 1000:06d}Z"
