"""What a TLS connection shows in the clear: its handshake (sans-I/O).

``TlsStream`` takes one direction's ordered bytes and reads the handshake messages that travel
unencrypted: the ClientHello (server name, offered ALPN protocols and versions), the ServerHello
(negotiated version, TLS 1.3's ``supported_versions`` included, and the chosen ALPN protocol) and,
up to TLS 1.2, the server's Certificate message (its first certificate, as DER). Messages may
span records and records may span segments; at most ``MAX_BUFFERED`` bytes per direction are
looked at, and reading stops at ChangeCipherSpec, an alert, application data or anything that is
not a handshake record, so only the first kilobytes of a connection are ever touched.

``TlsHandshake`` pairs both directions of one connection and makes its ``TlsConnection`` record.
Hostile bytes never raise: a malformed message leaves what was read before it, and the reason in
``problem``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from analyzer.model import TlsConnection

if TYPE_CHECKING:
    from analyzer.oauth.certificates import CertificateFacts

#: Bytes of one direction looked at before giving up (a certificate chain fits easily).
MAX_BUFFERED = 64 << 10
#: Largest record length a sender may use (2^14 plaintext plus the allowed expansion).
MAX_RECORD = (1 << 14) + 2048

CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA, HEARTBEAT = 20, 21, 22, 23, 24
CLIENT_HELLO, SERVER_HELLO, CERTIFICATE, SERVER_HELLO_DONE = 1, 2, 11, 14
EXT_SERVER_NAME, EXT_ALPN, EXT_SUPPORTED_VERSIONS = 0, 16, 43

_VERSIONS = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2"}
_VERSIONS[0x0304] = "TLS 1.3"


def version_name(value: int) -> str:
    """``0x0303`` -> ``"TLS 1.2"``; drafts of 1.3 and unknown values are named as such."""
    name = _VERSIONS.get(value)
    if name is not None:
        return name
    if value >> 8 == 0x7F:
        return f"TLS 1.3 (draft {value & 0xFF})"
    return f"0x{value:04x}"


def _rank(value: int) -> int:
    """Order of versions (drafts of 1.3 just below 1.3)."""
    return 0x0304 * 256 - 1 if value >> 8 == 0x7F else value * 256


def _grease(value: int) -> bool:
    """RFC 8701 GREASE values (0x?A?A): sent to keep servers honest, never a real version."""
    return value & 0x0F0F == 0x0A0A and value >> 8 == value & 0xFF


def looks_like_record(head: bytes | bytearray | memoryview) -> bool:
    """Can ``head`` begin a TLS record (a plausible type, version 3.x and length)?

    Decides whether a stream first seen in the middle (no SYN) is TLS; five bytes suffice.
    """
    if len(head) < 5:
        return False
    ctype, major, minor, length = struct.unpack_from(">BBBH", head)
    return (
        CHANGE_CIPHER_SPEC <= ctype <= HEARTBEAT
        and major == 3
        and minor <= 4
        and 0 < length <= MAX_RECORD
    )


MAX_NAME = 255  # characters of a server name or protocol kept
MAX_PROTOCOLS = 32  # ALPN protocols kept from one offer
_CONTROL = {i: f"\\x{i:02x}" for i in (*range(32), 127)}


def _text(raw: bytes) -> str:
    """Captured bytes as one safe line: non-ASCII replaced, control characters escaped, cut."""
    return raw[:MAX_NAME].decode("ascii", "replace").translate(_CONTROL)


class _Short(Exception):
    """A length field points past the end of its message."""


class _Reader:
    """Bounds-checked reads over one handshake message."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise _Short
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u24(self) -> int:
        return int.from_bytes(self.take(3), "big")

    def vector(self, size_bytes: int) -> bytes:
        n = int.from_bytes(self.take(size_bytes), "big")
        return self.take(n)

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def _extensions(r: _Reader) -> list[tuple[int, bytes]]:
    """The extensions block (absent in old hellos: no bytes left)."""
    if not r.left:
        return []
    block = _Reader(r.vector(2))
    out = []
    while block.left:
        ext_type = block.u16()
        out.append((ext_type, block.vector(2)))
    return out


@dataclass(frozen=True, slots=True)
class ClientHello:
    """What a ClientHello offers (fields it could not read are None / empty)."""

    legacy_version: int | None = None
    versions: tuple[int, ...] = ()  # supported_versions, GREASE removed
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    problem: str | None = None

    @property
    def best_version(self) -> int | None:
        """The highest version offered: supported_versions, else the legacy field."""
        if self.versions:
            return max(self.versions, key=_rank)
        return self.legacy_version


@dataclass(frozen=True, slots=True)
class ServerHello:
    """What a ServerHello settles."""

    legacy_version: int | None = None
    selected_version: int | None = None  # supported_versions (TLS 1.3)
    alpn: str | None = None
    problem: str | None = None

    @property
    def version(self) -> int | None:
        return self.selected_version if self.selected_version is not None else self.legacy_version


def parse_client_hello(body: bytes) -> ClientHello:
    """Read a ClientHello message body; malformed input gives what came before the damage."""
    got: dict = {}
    try:
        r = _Reader(body)
        got["legacy_version"] = r.u16()
        r.take(32)  # random
        r.vector(1)  # session id
        r.vector(2)  # cipher suites
        r.vector(1)  # compression methods
        for ext_type, data in _extensions(r):
            e = _Reader(data)
            if ext_type == EXT_SERVER_NAME and "sni" not in got:
                names = _Reader(e.vector(2))
                while names.left:
                    kind, name = names.u8(), names.vector(2)
                    if kind == 0:  # host_name
                        got["sni"] = _text(name)
                        break
            elif ext_type == EXT_ALPN:
                protocols = _Reader(e.vector(2))
                offered = []
                while protocols.left and len(offered) < MAX_PROTOCOLS:
                    offered.append(_text(protocols.vector(1)))
                got["alpn"] = tuple(offered)
            elif ext_type == EXT_SUPPORTED_VERSIONS:
                listed = _Reader(e.vector(1))
                versions = []
                while listed.left >= 2:
                    v = listed.u16()
                    if not _grease(v):
                        versions.append(v)
                got["versions"] = tuple(versions)
    except _Short:
        got["problem"] = "malformed ClientHello"
    return ClientHello(**got)


def parse_server_hello(body: bytes) -> ServerHello:
    """Read a ServerHello message body (a HelloRetryRequest reads the same way)."""
    got: dict = {}
    try:
        r = _Reader(body)
        got["legacy_version"] = r.u16()
        r.take(32)  # random
        r.vector(1)  # session id
        r.take(3)  # cipher suite, compression method
        for ext_type, data in _extensions(r):
            e = _Reader(data)
            if ext_type == EXT_SUPPORTED_VERSIONS:
                got["selected_version"] = e.u16()
            elif ext_type == EXT_ALPN:
                protocols = _Reader(e.vector(2))
                got["alpn"] = _text(protocols.vector(1))
    except _Short:
        got["problem"] = "malformed ServerHello"
    return ServerHello(**got)


def first_certificate(body: bytes) -> bytes | None:
    """The first (the server's own) certificate of a TLS <= 1.2 Certificate message, as DER."""
    try:
        r = _Reader(body)
        chain = _Reader(r.vector(3))
        if not chain.left:
            return None
        return chain.vector(3) or None
    except _Short:
        return None


class TlsStream:
    """One direction of a TLS connection: ordered bytes in, cleartext handshake facts out.

    ``feed`` returns whether more bytes are wanted; once it returns False the direction is
    ``done`` and its bytes can be skipped.
    """

    __slots__ = (
        "_hs",
        "_record",
        "_taken",
        "certificate",
        "client_hello",
        "done",
        "encrypted",
        "problem",
        "server_hello",
    )

    def __init__(self) -> None:
        self._record = bytearray()  # bytes of the record being assembled
        self._hs = bytearray()  # handshake bytes not yet parsed into messages
        self._taken = 0
        self.done = False
        self.encrypted = False  # reached a record that was not a cleartext handshake
        self.problem: str | None = None
        self.client_hello: ClientHello | None = None
        self.server_hello: ServerHello | None = None
        self.certificate: bytes | None = None  # DER of the first certificate

    def feed(self, data: bytes | bytearray | memoryview) -> bool:
        """Take the next ordered bytes of this direction; False once nothing more is needed."""
        if self.done:
            return False
        room = MAX_BUFFERED - self._taken
        if len(data) > room:
            data = data[:room]
        self._taken += len(data)
        self._record += data
        self._records()
        if not self.done and self._taken >= MAX_BUFFERED:
            self._stop(f"handshake not complete within {MAX_BUFFERED >> 10} KB")
        return not self.done

    def gap(self) -> None:
        """Bytes of this direction were lost: nothing after them can be framed."""
        if not self.done:
            self._stop("bytes missing from the handshake")

    def _stop(self, problem: str | None = None) -> None:
        self.done = True
        if problem is not None and self.problem is None:
            self.problem = problem
        self._record = bytearray()
        self._hs = bytearray()

    def _records(self) -> None:
        buf = self._record
        pos = 0
        while not self.done and len(buf) - pos >= 5:
            ctype, major, minor, length = struct.unpack_from(">BBBH", buf, pos)
            if not (CHANGE_CIPHER_SPEC <= ctype <= HEARTBEAT and major == 3 and minor <= 4):
                self._stop("not a TLS record")
                return
            if length > MAX_RECORD:
                self._stop("TLS record too long")
                return
            if ctype != HANDSHAKE:
                # ChangeCipherSpec, alert or application data: the rest is encrypted
                self.encrypted = True
                self._stop()
                return
            if len(buf) - pos < 5 + length:
                break
            self._hs += buf[pos + 5 : pos + 5 + length]
            pos += 5 + length
            self._messages()
        if pos and not self.done:
            del buf[:pos]

    def _messages(self) -> None:
        hs = self._hs
        pos = 0
        while not self.done and len(hs) - pos >= 4:
            mtype = hs[pos]
            length = int.from_bytes(hs[pos + 1 : pos + 4], "big")
            if length > MAX_BUFFERED:
                self._stop("handshake message too long")
                return
            if len(hs) - pos < 4 + length:
                break
            self._message(mtype, bytes(hs[pos + 4 : pos + 4 + length]))
            pos += 4 + length
        if pos and not self.done:
            del hs[:pos]

    def _message(self, mtype: int, body: bytes) -> None:
        if mtype == CLIENT_HELLO and self.client_hello is None and self.server_hello is None:
            self.client_hello = hello = parse_client_hello(body)
            self._stop(hello.problem)  # nothing later from the client is needed
        elif mtype == SERVER_HELLO and self.server_hello is None and self.client_hello is None:
            self.server_hello = hello = parse_server_hello(body)
            version = hello.version
            if hello.problem or (version is not None and _rank(version) >= _rank(0x7F00)):
                self._stop(hello.problem)  # TLS 1.3: everything after it is encrypted
        elif mtype == CERTIFICATE and self.server_hello is not None:
            self.certificate = first_certificate(body)
            self._stop(None if self.certificate else "malformed Certificate")
        elif mtype == SERVER_HELLO_DONE or self.server_hello is None:
            self._stop()  # no certificate (anonymous, PSK) or not a handshake we follow


class TlsHandshake:
    """Both directions of one TLS connection (``a``: the side that sent the first packet seen)."""

    __slots__ = ("a", "b")

    def __init__(self) -> None:
        self.a = TlsStream()
        self.b = TlsStream()

    def client_is_a(self, a_port: int, b_port: int, syn_seen: bool) -> bool:
        """Which side is the client: the ClientHello's sender, else the side without the
        ServerHello, else the opener of the connection, else the side on the higher port."""
        a, b = self.a, self.b
        if a.client_hello is not None or b.server_hello is not None:
            return True
        if b.client_hello is not None or a.server_hello is not None:
            return False
        return syn_seen or a_port >= b_port

    def record(
        self,
        conn_id: str,
        ts: float,
        a: tuple[str, int],
        b: tuple[str, int],
        syn_seen: bool,
        inspected: bool = False,
        certificate: CertificateFacts | None = None,
    ) -> TlsConnection:
        """The connection's record. ``certificate`` is the server certificate's facts (a
        ``CertificateFacts`` worked out by the caller, who may cache them), or None."""
        if self.client_is_a(a[1], b[1], syn_seen):
            client, server, c, s = a, b, self.a, self.b
        else:
            client, server, c, s = b, a, self.b, self.a
        hello, answer = c.client_hello, s.server_hello
        version = answer.version if answer is not None else None
        offered = hello.best_version if hello is not None else None
        if answer is not None and answer.alpn is not None:
            alpn: tuple[str, ...] = (answer.alpn,)
        else:
            alpn = hello.alpn if hello is not None else ()
        cert = certificate
        problem = c.problem or s.problem
        if problem is None and hello is None and answer is None:
            problem = "no handshake seen (capture began after it)"
        return TlsConnection(
            conn_id=conn_id,
            ts=ts,
            client_ip=client[0],
            client_port=client[1],
            server_ip=server[0],
            server_port=server[1],
            inspected=inspected,
            sni=hello.sni if hello is not None else None,
            version=version_name(version) if version is not None else None,
            client_version=version_name(offered) if offered is not None else None,
            alpn=alpn,
            cert_subject=cert.subject if cert is not None else None,
            cert_issuer=cert.issuer if cert is not None else None,
            cert_not_before=cert.not_before if cert is not None else None,
            cert_not_after=cert.not_after if cert is not None else None,
            cert_sha1=cert.sha1 if cert is not None else None,
            problem=problem,
        )

    def server_certificate(self, a_port: int, b_port: int, syn_seen: bool) -> bytes | None:
        """DER of the server's certificate, when its Certificate message was read."""
        server = self.b if self.client_is_a(a_port, b_port, syn_seen) else self.a
        return server.certificate
