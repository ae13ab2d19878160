#!/usr/bin/env python3
"""Write a large, realistic HTTP/1.1 capture (classic pcap) plus its ground truth, fast.

Mostly bulk transfer — keep-alive connections between ~50 client/server pairs downloading 1-50 MB
responses (Content-Length and chunked) in 1448-byte segments, the client ACKing every second
segment — with a few thousand authentication exchanges spread evenly through it: Basic, NTLM
3-leg, Negotiate (Kerberos and NTLM), Bearer with 2-6 KB JWT-shaped tokens whose request head spans
2-5 segments, and bare 401 challenges. Everything is derived from ``--seed``.

Frames are packed with ``struct`` and written straight to a buffered file (scapy would be ~100x
slower); IPv4 and TCP checksums are computed arithmetically and are valid.

Besides ``OUT`` it writes ``OUT.truth.json``: the number of Authorization headers and the sorted
list of their ``cred_fp`` values (first 12 hex digits of SHA-256 over the credential text after the
scheme word and one space), packet and byte counts, and per-scheme / per-scenario counts.

Usage: ``python bench/make_capture.py OUT.pcap --size-gb 1.0 [--auth 3000] [--seed 1]``
"""

from __future__ import annotations

import argparse
import base64
import email.utils
import hashlib
import json
import math
import random
import struct
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

MSS = 1448  # payload per full segment (1460 minus the 12-byte timestamp option)
MASK32 = 0xFFFFFFFF
START_EPOCH = 1_710_234_000  # 2024-03-12 09:00:00 UTC
LINK_BPS = 800_000_000  # pace of the capture clock
BULK_SLOTS = 10  # concurrent bulk-transfer connections
API_SLOTS = 2  # concurrent connections carrying auth exchanges
API_IDLE_US = 8_000_000  # keep-alive timeout of an idle API connection
POOL_SIZE = 1 << 22  # random body bytes every download is sliced from
PIECE = 1 << 16  # body bytes handed to the segmenter at a time
REC_OVERHEAD = 16  # pcap record header
FIN, SYN, PSH, ACK = 0x01, 0x02, 0x08, 0x10

PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
RECORD = struct.Struct("<IIII")
# Ethernet + IPv4 + TCP with NOP,NOP,Timestamps (32-byte TCP header): the shape of all but SYNs.
FRAME_TS = struct.Struct("!6s6sHBBHHHBBH4s4sHHIIBBHHHBBBBII")
# Ethernet + IPv4 + TCP with MSS,SACK_PERM,Timestamps,NOP,WScale (40-byte TCP header): SYNs.
FRAME_SYN = struct.Struct("!6s6sHBBHHHBBH4s4sHHIIBBHHH" + "HHHHIIHH")
OPT_TS_SUM = 0x0101 + 0x080A
OPT_SYN_SUM = 0x0204 + 0x05B4 + 0x0402 + 0x080A + 0x0103 + 0x0307


def _csum(total: int) -> int:
    """Internet checksum from a plain integer sum of 16-bit words (2**16 == 1 mod 0xFFFF)."""
    r = total % 0xFFFF
    return 0xFFFF - r if r else 0


def _payload_sum(payload: bytes) -> int:
    """Sum of the payload's 16-bit big-endian words, modulo 0xFFFF (odd length: zero-padded)."""
    v = int.from_bytes(payload, "big")
    return v << 8 if len(payload) & 1 else v


def cred_fp(text: str) -> str:
    """The analyzer's ``cred_fp``: first 12 hex digits of SHA-256 over the credential text."""
    return hashlib.sha256(text.encode("latin-1")).hexdigest()[:12]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# ----------------------------------------------------------------------------------------------
# TCP frames


@dataclass(slots=True)
class Side:
    """One direction of a TCP connection: addresses, next sequence number, IP id, TS clock."""

    dst_mac: bytes
    src_mac: bytes
    src: bytes
    dst: bytes
    sport: int
    dport: int
    ttl: int
    win: int
    seq: int
    ip_id: int
    ts_base: int
    ip_const: int = 0
    tcp_const: int = 0

    def __post_init__(self) -> None:
        words = sum(struct.unpack("!HHHH", self.src + self.dst))
        self.ip_const = 0x4500 + 0x4000 + (self.ttl << 8 | 6) + words
        self.tcp_const = words + 6 + self.sport + self.dport


def frame(me: Side, peer: Side, flags: int, payload: bytes, now_ms: int) -> bytes:
    """An Ethernet/IPv4/TCP frame from ``me`` to ``peer`` with valid checksums; advances ``me``."""
    n = len(payload)
    ack = peer.seq if flags & ACK else 0
    tsval = (me.ts_base + now_ms) & MASK32
    ipid = me.ip_id
    me.ip_id = (ipid + 1) & 0xFFFF
    seq = me.seq
    if flags & SYN:
        tsecr = (peer.ts_base + now_ms) & MASK32 if flags & ACK else 0
        tcp_len = 40 + n
        tsum = me.tcp_const + OPT_SYN_SUM + tcp_len + seq + ack + (0xA000 | flags) + me.win
        tcsum = _csum(tsum + tsval + tsecr + _payload_sum(payload))
        hdr = FRAME_SYN.pack(
            me.dst_mac, me.src_mac, 0x0800, 0x45, 0, 20 + tcp_len, ipid, 0x4000, me.ttl, 6,
            _csum(me.ip_const + 20 + tcp_len + ipid), me.src, me.dst,
            me.sport, me.dport, seq, ack, 0xA0, flags, me.win, tcsum, 0,
            0x0204, 0x05B4, 0x0402, 0x080A, tsval, tsecr, 0x0103, 0x0307,
        )  # fmt: skip
    else:
        tsecr = (peer.ts_base + now_ms - 1) & MASK32
        tcp_len = 32 + n
        tsum = me.tcp_const + OPT_TS_SUM + tcp_len + seq + ack + (0x8000 | flags) + me.win
        tcsum = _csum(tsum + tsval + tsecr + _payload_sum(payload))
        hdr = FRAME_TS.pack(
            me.dst_mac, me.src_mac, 0x0800, 0x45, 0, 20 + tcp_len, ipid, 0x4000, me.ttl, 6,
            _csum(me.ip_const + 20 + tcp_len + ipid), me.src, me.dst,
            me.sport, me.dport, seq, ack, 0x80, flags, me.win, tcsum, 0,
            1, 1, 8, 10, tsval, tsecr,
        )  # fmt: skip
    me.seq = (seq + n + (1 if flags & (SYN | FIN) else 0)) & MASK32
    return hdr + payload


def segments(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """Cut a byte stream given in pieces into MSS-sized segments (the last may be short)."""
    rest = b""
    for piece in pieces:
        data = rest + piece if rest else piece
        n = len(data)
        i = 0
        while n - i >= MSS:
            yield data[i : i + MSS]
            i += MSS
        rest = data[i:]
    if rest:
        yield rest


# ----------------------------------------------------------------------------------------------
# HTTP messages


@dataclass(slots=True)
class Exchange:
    """One request and its response. The response body is literal bytes or ``bulk`` pool bytes."""

    request: bytes
    head: bytes
    body: bytes = b""
    bulk: int = 0
    chunked: bool = False
    seed: int = 0  # pool offset and chunk sizes of a bulk body


def response_pieces(ex: Exchange, pool: bytes) -> Iterator[bytes]:
    """The response as byte pieces: head, then the body (pool slices, chunk-framed if chunked)."""
    yield ex.head + ex.body
    if not ex.bulk:
        return
    rng = random.Random(ex.seed)
    off = rng.randrange(POOL_SIZE)
    left = ex.bulk
    while left:
        n = min(left, rng.randrange(8192, PIECE) if ex.chunked else PIECE)
        data = pool[off : off + n]
        off = (off + n) % POOL_SIZE
        left -= n
        yield b"%x\r\n%b\r\n" % (n, data) if ex.chunked else data
    if ex.chunked:
        yield b"0\r\n\r\n"


def wire_estimate(n: int) -> int:
    """Approximate pcap bytes that carrying an n-byte message costs (segments plus ACKs)."""
    segs = -(-n // MSS)
    return n + segs * (66 + REC_OVERHEAD) + (segs // 2 + 1) * (66 + REC_OVERHEAD)


def http_date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


@dataclass(slots=True)
class Pair:
    """A client/server pair: who talks to whom and how the server presents itself."""

    client_ip: bytes
    server_ip: bytes
    client_mac: bytes
    server_mac: bytes
    host: str
    port: int
    server: str
    user_agent: str
    next_port: int


# ----------------------------------------------------------------------------------------------
# Credentials


def der(tag: int, content: bytes) -> bytes:
    """A DER TLV."""
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(raw))) + raw + content


def der_int(v: int) -> bytes:
    return der(0x02, v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big"))


OID_SPNEGO = bytes.fromhex("2b0601050502")
OID_MS_KRB5 = bytes.fromhex("2a864882f712010202")
OID_KRB5 = bytes.fromhex("2a864886f712010202")
OID_NTLMSSP = bytes.fromhex("2b06010401823702020a")


def gs(text: str) -> bytes:
    """A DER GeneralString (Kerberos realm and name components)."""
    return der(0x1B, text.encode())


def kerberos_ap_req(rng: random.Random, realm: str, host: str) -> bytes:
    """A GSS-API wrapped Kerberos AP-REQ for HTTP/host with random ciphertext (PAC-sized ticket)."""
    sname = der(0x30, der(0xA0, der_int(2)) + der(0xA1, der(0x30, gs("HTTP") + gs(host))))
    enc_ticket = der(
        0x30,
        der(0xA0, der_int(18))
        + der(0xA1, der_int(rng.randrange(2, 9)))
        + der(0xA2, der(0x04, rng.randbytes(rng.randrange(900, 1400)))),
    )
    ticket = der(
        0x61,
        der(
            0x30,
            der(0xA0, der_int(5)) + der(0xA1, gs(realm)) + der(0xA2, sname) + der(0xA3, enc_ticket),
        ),
    )
    authenticator = der(
        0x30, der(0xA0, der_int(18)) + der(0xA2, der(0x04, rng.randbytes(rng.randrange(180, 240))))
    )
    ap_req = der(
        0x6E,
        der(
            0x30,
            der(0xA0, der_int(5))
            + der(0xA1, der_int(14))
            + der(0xA2, der(0x03, b"\x00\x20\x00\x00\x00"))
            + der(0xA3, ticket)
            + der(0xA4, authenticator),
        ),
    )
    return der(0x60, der(0x06, OID_KRB5) + b"\x01\x00" + ap_req)


def spnego_init(mech_token: bytes) -> bytes:
    """SPNEGO NegTokenInit offering MS-Kerberos, Kerberos and NTLM, carrying ``mech_token``."""
    mechs = der(0x30, der(0x06, OID_MS_KRB5) + der(0x06, OID_KRB5) + der(0x06, OID_NTLMSSP))
    body = der(0xA0, der(0x30, der(0xA0, mechs) + der(0xA2, der(0x04, mech_token))))
    return der(0x60, der(0x06, OID_SPNEGO) + body)


def spnego_accept(rng: random.Random) -> bytes:
    """SPNEGO NegTokenResp accept-completed with a Kerberos AP-REP (mutual authentication)."""
    enc_part = der(0x30, der(0xA0, der_int(18)) + der(0xA2, der(0x04, rng.randbytes(100))))
    ap_rep = der(
        0x6F, der(0x30, der(0xA0, der_int(5)) + der(0xA1, der_int(15)) + der(0xA2, enc_part))
    )
    token = der(0x60, der(0x06, OID_KRB5) + b"\x02\x00" + ap_rep)
    return der(
        0xA1,
        der(
            0x30,
            der(0xA0, der(0x0A, b"\x00"))
            + der(0xA1, der(0x06, OID_KRB5))
            + der(0xA2, der(0x04, token)),
        ),
    )


NTLM_FLAGS = 0xE2088297
NTLM_VERSION = bytes((10, 0)) + struct.pack("<H", 19041) + b"\x00\x00\x00\x0f"


def ntlm_negotiate() -> bytes:
    """NTLM type 1 (NEGOTIATE), as Windows sends it: no domain or workstation supplied."""
    return b"NTLMSSP\0" + struct.pack("<II", 1, NTLM_FLAGS) + bytes(16) + NTLM_VERSION


def _av_pairs(domain: str, server: str, dns_domain: str, ts: int) -> bytes:
    out = b""
    for av_id, text in ((2, domain), (1, server), (4, dns_domain), (3, f"{server}.{dns_domain}")):
        raw = text.encode("utf-16-le")
        out += struct.pack("<HH", av_id, len(raw)) + raw
    out += struct.pack("<HHQ", 7, 8, ts) + struct.pack("<HH", 0, 0)
    return out


def ntlm_challenge(rng: random.Random, domain: str, server: str, dns_domain: str, ts: int) -> bytes:
    """NTLM type 2 (CHALLENGE) with a random server challenge and target info."""
    target = domain.encode("utf-16-le")
    info = _av_pairs(domain, server, dns_domain, ts)
    off = 56
    return (
        b"NTLMSSP\0"
        + struct.pack("<IHHI", 2, len(target), len(target), off)
        + struct.pack("<I", NTLM_FLAGS)
        + rng.randbytes(8)
        + bytes(8)
        + struct.pack("<HHI", len(info), len(info), off + len(target))
        + NTLM_VERSION
        + target
        + info
    )


def ntlm_authenticate(
    rng: random.Random, domain: str, user: str, workstation: str, info: bytes, ts: int
) -> bytes:
    """NTLM type 3 (AUTHENTICATE) with an NTLMv2 response shaped like the real thing."""
    lm = bytes(24)
    blob = b"\x01\x01" + bytes(6) + struct.pack("<Q", ts) + rng.randbytes(8) + bytes(4)
    nt = rng.randbytes(16) + blob + info + bytes(4)
    fields = [
        lm,
        nt,
        domain.encode("utf-16-le"),
        user.encode("utf-16-le"),
        workstation.encode("utf-16-le"),
        rng.randbytes(16),
    ]
    off = 88
    bufs = b""
    payload = b""
    for f in fields:
        bufs += struct.pack("<HHI", len(f), len(f), off + len(payload))
        payload += f
    return (
        b"NTLMSSP\0"
        + struct.pack("<I", 3)
        + bufs
        + struct.pack("<I", NTLM_FLAGS)
        + NTLM_VERSION
        + rng.randbytes(16)
        + payload
    )


def guid(rng: random.Random) -> str:
    h = rng.randbytes(16).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


TENANTS = ("72f988bf-86f1-41af-91ab-2d7cd011db47", "b5c1a7e2-3f0d-4c55-9e8a-6d1f2c3b4a59")
AUDIENCES = (
    "https://graph.microsoft.com",
    "00000003-0000-0ff1-ce00-000000000000",
    "https://outlook.office365.com",
    "api://inventory-service",
)


def jwt_token(rng: random.Random, now: int, user: str, realm: str) -> str:
    """A JWT-shaped bearer token of 2-6 KB: Entra v1/v2 user token or Microsoft S2S app+user."""
    target = rng.randrange(2048, 6144)
    kind = rng.random()
    if kind < 0.2:  # S2S: unsigned outer token carrying a signed actor token
        actor_hdr = {"typ": "JWT", "alg": "RS256", "x5t": b64url(rng.randbytes(20))}
        actor = {
            "aud": f"00000002-0000-0ff1-ce00-000000000000/mail.{realm}@{realm}",
            "iss": f"00000004-0000-0ff1-ce00-000000000000@{realm}",
            "nbf": now - 300,
            "exp": now + 86100,
            "nameid": f"00000004-0000-0ff1-ce00-000000000000@{realm}",
            "trustedfordelegation": "true",
        }
        actor_tok = ".".join(
            (
                b64url(json.dumps(actor_hdr).encode()),
                b64url(json.dumps(actor).encode()),
                b64url(rng.randbytes(256)),
            )
        )
        header = {"typ": "JWT", "alg": "none"}
        claims = {
            "aud": actor["aud"],
            "iss": actor["nameid"],
            "nbf": now - 300,
            "exp": now + 3300,
            "nameid": "S-1-5-21-"
            + "-".join(str(rng.randrange(10**9, 4 * 10**9)) for _ in range(3))
            + f"-{rng.randrange(1100, 9000)}",
            "nii": "urn:office:idp:activedirectory",
            "upn": f"{user}@{realm}",
            "smtp": f"{user}@{realm}",
            "sip": f"{user}@{realm}",
            "actortoken": actor_tok,
        }
        signature = b""
    else:
        tid = rng.choice(TENANTS)
        header = {"typ": "JWT", "alg": "RS256", "kid": b64url(rng.randbytes(20))}
        header["x5t"] = header["kid"]
        v2 = kind > 0.7
        claims = {
            "aud": rng.choice(AUDIENCES),
            "iss": f"https://login.microsoftonline.com/{tid}/v2.0"
            if v2
            else f"https://sts.windows.net/{tid}/",
            "iat": now - 600,
            "nbf": now - 600,
            "exp": now + 3000,
            "acr": "1",
            "aio": b64url(rng.randbytes(48)),
            "amr": ["pwd", "mfa"],
            "appid": guid(rng),
            "appidacr": "0",
            "idtyp": "user",
            "name": user.replace(".", " ").title(),
            "oid": guid(rng),
            "scp": "openid profile email User.Read Files.ReadWrite.All Sites.Read.All",
            "sub": b64url(rng.randbytes(32)),
            "tid": tid,
            "unique_name": f"{user}@{realm}",
            "upn": f"{user}@{realm}",
            "uti": b64url(rng.randbytes(16)),
            "ver": "2.0" if v2 else "1.0",
            "wids": [guid(rng)],
        }
        signature = rng.randbytes(256)
    fixed = len(b64url(json.dumps(header).encode())) + len(b64url(signature)) + 2
    body = json.dumps(claims)
    groups: list[str] = []
    while (len(body) + 40 * len(groups)) * 4 // 3 + fixed < target:
        groups.append(guid(rng))
    if groups:
        claims["groups"] = groups
    parts = (json.dumps(header).encode(), json.dumps(claims).encode(), signature)
    return ".".join(b64url(p) for p in parts)


# ----------------------------------------------------------------------------------------------
# Traffic plan


USERS = tuple(
    f"{a}.{b}"
    for a in ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")
    for b in ("smith", "jones", "lee", "novak", "garcia")
)
BULK_PATHS = (
    ("/downloads/ubuntu-22.04-{n}.iso", "application/octet-stream"),
    ("/backups/db-2024-03-{n}.tar.gz", "application/gzip"),
    ("/media/training-video-{n}.bin", "application/x-iso9660-image"),
    ("/repo/pool/main/pkg-{n}.deb", "application/vnd.debian.binary-package"),
    ("/artifacts/build-{n}/dist.zip", "application/zip"),
)
SMALL_PATHS = (
    ("/static/app-{n}.wasm", "application/wasm"),
    ("/fonts/ui-{n}.woff2", "font/woff2"),
    ("/cache/blob-{n}", "application/octet-stream"),
)
IIS_401_BODY = (
    b'<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" '
    b'"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">\r\n'
    b'<html xmlns="http://www.w3.org/1999/xhtml">\r\n<head>\r\n'
    b'<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1"/>\r\n'
    b"<title>401 - Unauthorized: Access is denied due to invalid credentials.</title>\r\n"
    b'</head>\r\n<body>\r\n<div id="header"><h1>Server Error</h1></div>\r\n<div id="content">'
    b"\r\n <h2>401 - Unauthorized: Access is denied due to invalid credentials.</h2>\r\n <h3>You "
    b"do not have permission to view this directory or page using the credentials that you "
    b"supplied.</h3>\r\n</div>\r\n</body>\r\n</html>\r\n"
)


@dataclass(slots=True)
class Truth:
    """Ground truth accumulated while planning."""

    creds: list[tuple[str, str]] = field(default_factory=list)  # (scheme, cred_fp)
    literal: int = 0  # occurrences of the case-sensitive "Authorization: "
    challenges: int = 0  # 401 responses
    scenarios: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    connections: int = 0


class Planner:
    """Hands out work to connections: bulk downloads until the byte budget is spent, and auth
    scenarios as soon as the bytes written say one is due, so they spread evenly over the file."""

    def __init__(self, rng: random.Random, target: int, auth_total: int, truth: Truth) -> None:
        self.rng = rng
        self.target = target
        self.auth_total = auth_total
        self.truth = truth
        self.committed = 0  # estimated pcap bytes of all work handed out
        self.auth_issued = 0
        self.auth_bytes = 0
        self.written = 0  # set by the writer
        self.now = float(START_EPOCH)  # set by the writer
        self.force_auth = False
        self.names = 0
        self.tokens: dict[int, tuple[str, int]] = {}  # pair id -> (token, uses left)
        self.basic_pw = {u: b64url(rng.randbytes(9)) for u in USERS}

    # -- budget

    def _auth_reserve(self) -> int:
        # running mean, pulled towards a prior until enough scenarios were seen (downloads are rare)
        avg = (self.auth_bytes + 30_000 * 100) // (self.auth_issued + 100)
        return (self.auth_total - self.auth_issued) * avg

    def bulk_left(self) -> bool:
        return self.committed + self._auth_reserve() < self.target

    def auth_due(self) -> bool:
        if self.auth_issued >= self.auth_total:
            return False
        due_at = (self.auth_issued + 1) * self.target // (self.auth_total + 1)
        return self.force_auth or self.written >= due_at

    def auth_left(self) -> bool:
        return self.auth_issued < self.auth_total

    # -- messages

    def _request(
        self,
        pair: Pair,
        method: str,
        uri: str,
        auth: tuple[str, str] | None = None,
        body: bytes = b"",
        accept: str = "application/json",
        lower: bool = False,
    ) -> bytes:
        lines = [f"{method} {uri} HTTP/1.1", f"Host: {pair.host}", f"User-Agent: {pair.user_agent}"]
        lines.append(f"Accept: {accept}")
        if auth is not None:
            scheme, text = auth
            name = "authorization" if lower else "Authorization"
            lines.append(f"{name}: {scheme} {text}")
            self.truth.creds.append((scheme.lower(), cred_fp(text)))
            self.truth.literal += not lower
        lines += ["Accept-Encoding: gzip, deflate", "Connection: keep-alive"]
        if body:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        lines.append(f"X-Request-Id: {guid(self.rng)}")
        self.truth.requests += 1
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    def _head(self, pair: Pair, status: str, headers: list[str]) -> bytes:
        lines = [f"HTTP/1.1 {status}", f"Date: {http_date(self.now)}", f"Server: {pair.server}"]
        lines += headers
        if status.startswith("401"):
            self.truth.challenges += 1
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _small(
        self, pair: Pair, status: str, headers: list[str], body: bytes, ctype: str = "text/html"
    ) -> tuple[bytes, bytes]:
        head = [f"Content-Type: {ctype}", f"Content-Length: {len(body)}", *headers]
        return self._head(pair, status, head), body

    def _json_body(self) -> bytes:
        n = self.rng.randrange(2, 40)
        items = ",".join(
            f'{{"id":"{guid(self.rng)}","name":"item-{self.rng.randrange(10**6)}","size":'
            f"{self.rng.randrange(10**7)}}}"
            for _ in range(n)
        )
        return f'{{"value":[{items}]}}'.encode()

    def _ok_json(self, pair: Pair, extra: list[str] | None = None) -> tuple[bytes, bytes]:
        return self._small(
            pair, "200 OK", extra or [], self._json_body(), "application/json; charset=utf-8"
        )

    def _unauthorized(self, pair: Pair, challenges: list[str]) -> tuple[bytes, bytes]:
        hdrs = [f"WWW-Authenticate: {c}" for c in challenges]
        return self._small(pair, "401 Unauthorized", hdrs, IIS_401_BODY)

    def _name(self) -> int:
        self.names += 1
        return self.names

    # -- jobs

    def bulk_job(self, pair: Pair) -> list[Exchange] | None:
        """One download (75 % 1-50 MB, the rest 2-300 KB), or None once the budget is spent."""
        if not self.bulk_left():
            return None
        rng = self.rng
        big = rng.random() < 0.75
        lo, hi = (1 << 20, 50 << 20) if big else (2 << 10, 300 << 10)
        size = int(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        room = (self.target - self.committed - self._auth_reserve()) * MSS // (MSS + 120)
        size = max(4096, min(size, room))
        chunked = big and rng.random() < 0.2
        path, ctype = rng.choice(BULK_PATHS if big else SMALL_PATHS)
        uri = path.format(n=self._name())
        req = self._request(pair, "GET", uri, accept="*/*")
        length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
        head = self._head(
            pair,
            "200 OK",
            [
                f"Content-Type: {ctype}",
                length,
                f'ETag: "{rng.randbytes(8).hex()}"',
                "Accept-Ranges: bytes",
                "Keep-Alive: timeout=15, max=100",
            ],
        )
        ex = Exchange(req, head, bulk=size, chunked=chunked, seed=rng.randrange(1 << 62))
        self.committed += wire_estimate(len(req)) + wire_estimate(len(head) + size)
        return [ex]

    def auth_job(self, pair: Pair, pair_id: int) -> list[Exchange] | None:
        """The next auth scenario if one is due, else None."""
        if not self.auth_due():
            return None
        rng = self.rng
        r = rng.random()
        if r < 0.35:
            kind, exchanges = "bearer", self._bearer(pair, pair_id)
        elif r < 0.50:
            kind, exchanges = "basic", self._basic(pair)
        elif r < 0.65:
            kind, exchanges = "ntlm", self._ntlm(pair, "NTLM")
        elif r < 0.75:
            kind, exchanges = "negotiate-kerberos", self._kerberos(pair)
        elif r < 0.80:
            kind, exchanges = "negotiate-ntlm", self._ntlm(pair, "Negotiate")
        else:
            kind, exchanges = "challenge-only", self._challenge_only(pair)
        self.truth.scenarios[kind] += 1
        self.auth_issued += 1
        cost = sum(
            wire_estimate(len(e.request)) + wire_estimate(len(e.head) + len(e.body) + e.bulk)
            for e in exchanges
        )
        self.auth_bytes += cost
        self.committed += cost
        return exchanges

    def _api_uri(self) -> str:
        rng = self.rng
        return rng.choice(
            (
                f"/api/v2/items?page={rng.randrange(1, 50)}",
                f"/EWS/Exchange.asmx?id={rng.randrange(10**6)}",
                f"/_api/web/lists/getbytitle('Docs{rng.randrange(20)}')/items",
                f"/odata/Orders({rng.randrange(10**5)})",
                "/autodiscover/autodiscover.json/v1.0/user@contoso.com?Protocol=EWS",
            )
        )

    def _bearer(self, pair: Pair, pair_id: int) -> list[Exchange]:
        rng = self.rng
        now = int(self.now)
        user = rng.choice(USERS)
        realm = "contoso.com"
        out: list[Exchange] = []
        cached = self.tokens.get(pair_id)
        if cached is not None and cached[1] > 0 and rng.random() < 0.1:
            # the cached token was revoked: 401 invalid_token, then a fresh one
            req = self._request(pair, "GET", self._api_uri(), ("Bearer", cached[0]))
            head, body = self._unauthorized(
                pair,
                ['Bearer error="invalid_token", error_description="The access token has expired"'],
            )
            out.append(Exchange(req, head, body))
            cached = None
        if cached is None or cached[1] <= 0:
            cached = (jwt_token(rng, now, user, realm), rng.randrange(1, 12))
        token, uses = cached
        self.tokens[pair_id] = (token, uses - 1)
        lower = rng.random() < 0.03  # some clients send lowercase header names
        if rng.random() < 0.03:  # an authenticated download
            size = rng.randrange(256 << 10, 3 << 20)
            uri = f"/files/export-{self._name()}.bin"
            req = self._request(pair, "GET", uri, ("Bearer", token), accept="*/*", lower=lower)
            hdrs = ["Content-Type: application/octet-stream", f"Content-Length: {size}"]
            head = self._head(pair, "200 OK", hdrs)
            out.append(Exchange(req, head, bulk=size, seed=rng.randrange(1 << 62)))
        elif rng.random() < 0.3:
            body = json.dumps({"name": f"item-{self._name()}", "qty": rng.randrange(100)}).encode()
            req = self._request(pair, "POST", "/api/v2/items", ("Bearer", token), body, lower=lower)
            out.append(Exchange(req, *self._ok_json(pair)))
        else:
            req = self._request(pair, "GET", self._api_uri(), ("Bearer", token), lower=lower)
            out.append(Exchange(req, *self._ok_json(pair)))
        return out

    def _basic(self, pair: Pair) -> list[Exchange]:
        rng = self.rng
        user = rng.choice(USERS)
        login = f"CONTOSO\\{user}" if rng.random() < 0.3 else user
        text = b64(f"{login}:{self.basic_pw[user]}".encode("latin-1"))
        out: list[Exchange] = []
        if rng.random() < 0.3:
            req = self._request(pair, "GET", "/admin/status")
            head, body = self._unauthorized(pair, [f'Basic realm="{pair.host}"'])
            out.append(Exchange(req, head, body))
        req = self._request(pair, "GET", "/admin/status", ("Basic", text))
        out.append(Exchange(req, *self._ok_json(pair)))
        return out

    def _ntlm(self, pair: Pair, scheme: str) -> list[Exchange]:
        rng = self.rng
        ts = int((self.now + 11_644_473_600) * 10_000_000)
        uri = self._api_uri()
        out: list[Exchange] = []
        if rng.random() < 0.5:
            req = self._request(pair, "GET", uri)
            head, body = self._unauthorized(pair, ["Negotiate", "NTLM"])
            out.append(Exchange(req, head, body))
        server = pair.host.split(".")[0].upper()
        info = _av_pairs("CONTOSO", server, "contoso.local", ts)
        challenge = ntlm_challenge(rng, "CONTOSO", server, "contoso.local", ts)
        req = self._request(pair, "GET", uri, (scheme, b64(ntlm_negotiate())))
        head, body = self._unauthorized(pair, [f"{scheme} {b64(challenge)}"])
        out.append(Exchange(req, head, body))
        user = rng.choice(USERS)
        ws = f"WS-{rng.randrange(1000, 9999)}"
        auth = ntlm_authenticate(rng, "CONTOSO", user, ws, info, ts)
        req = self._request(pair, "GET", uri, (scheme, b64(auth)))
        out.append(Exchange(req, *self._ok_json(pair, ["Persistent-Auth: true"])))
        return out

    def _kerberos(self, pair: Pair) -> list[Exchange]:
        rng = self.rng
        uri = self._api_uri()
        out: list[Exchange] = []
        if rng.random() < 0.5:
            req = self._request(pair, "GET", uri)
            head, body = self._unauthorized(pair, ["Negotiate", "NTLM"])
            out.append(Exchange(req, head, body))
        token = spnego_init(kerberos_ap_req(rng, "CONTOSO.LOCAL", pair.host))
        req = self._request(pair, "GET", uri, ("Negotiate", b64(token)))
        mutual = f"WWW-Authenticate: Negotiate {b64(spnego_accept(rng))}"
        out.append(Exchange(req, *self._ok_json(pair, [mutual])))
        return out

    def _challenge_only(self, pair: Pair) -> list[Exchange]:
        rng = self.rng
        tid = rng.choice(TENANTS)
        exchange_online = (
            'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/'
            'authorize", client_id="00000002-0000-0ff1-ce00-000000000000"'
        )
        sharepoint = (
            f'Bearer realm="{tid}",client_id="00000003-0000-0ff1-ce00-000000000000",'
            'trusted_issuers="00000001-0000-0000-c000-000000000000@*,https://sts.windows.net/*/",'
            'authorization_uri="https://login.windows.net/common/oauth2/authorize"'
        )
        options = (
            [exchange_online, f'Basic realm="{pair.host}"'],
            [sharepoint, "NTLM"],
            ["Negotiate", "NTLM"],
            ['Basic realm="Restricted"'],
            [f'Bearer realm="{pair.host}", scope="api://inventory-service/.default"'],
        )
        req = self._request(pair, "GET", self._api_uri())
        head, body = self._unauthorized(pair, rng.choice(options))
        return [Exchange(req, head, body)]


# ----------------------------------------------------------------------------------------------
# Connections and the scheduler


def _random_state(rng: random.Random) -> dict[str, int]:
    """Initial sequence number, IP id and TCP timestamp clock of a new connection side."""
    return {
        "seq": rng.getrandbits(32),
        "ip_id": rng.getrandbits(16),
        "ts_base": rng.getrandbits(32),
    }


class Clock:
    """Capture time in microseconds, advanced by the writer as frames go out."""

    __slots__ = ("us",)

    def __init__(self) -> None:
        self.us = START_EPOCH * 1_000_000


def connection(
    pair: Pair,
    pair_id: int,
    planner: Planner,
    clock: Clock,
    rng: random.Random,
    pool: bytes,
    api: bool,
    first: list[Exchange],
) -> Iterator[bytes | None]:
    """Frames of one keep-alive connection: handshake, exchanges, close. ``None`` means idle."""
    cport = pair.next_port
    pair.next_port = 32768 + (cport - 32768 + rng.randrange(1, 40)) % 28000
    planner.truth.connections += 1
    c = Side(pair.server_mac, pair.client_mac, pair.client_ip, pair.server_ip, cport, pair.port,
             ttl=64, win=2058, **_random_state(rng))  # fmt: skip
    s = Side(pair.client_mac, pair.server_mac, pair.server_ip, pair.client_ip, pair.port, cport,
             ttl=62, win=509, **_random_state(rng))  # fmt: skip
    yield frame(c, s, SYN, b"", clock.us // 1000)
    yield frame(s, c, SYN | ACK, b"", clock.us // 1000)
    yield frame(c, s, ACK, b"", clock.us // 1000)

    def send(me: Side, peer: Side, pieces: Iterator[bytes], ack_last: bool) -> Iterator[bytes]:
        unacked = 0
        segs = segments(pieces)
        prev = next(segs)
        for seg in segs:
            yield frame(me, peer, ACK, prev, clock.us // 1000)
            unacked += 1
            if unacked == 2:
                yield frame(peer, me, ACK, b"", clock.us // 1000)
                unacked = 0
            prev = seg
        yield frame(me, peer, PSH | ACK, prev, clock.us // 1000)
        if unacked or ack_last:
            yield frame(peer, me, ACK, b"", clock.us // 1000)

    job: list[Exchange] | None = first
    served = 0
    limit = rng.randrange(1, 6) if not api else rng.randrange(5, 60)
    idle_since = clock.us
    server_closes = False
    while job is not None:
        for ex in job:
            yield from send(c, s, iter((ex.request,)), False)
            yield from send(s, c, response_pieces(ex, pool), True)
        served += 1
        if served >= limit:
            break
        job = None
        idle_since = clock.us
        while job is None:
            job = planner.auth_job(pair, pair_id) if api else planner.bulk_job(pair)
            if job is not None or not api or not planner.auth_left():
                break
            if clock.us - idle_since > API_IDLE_US:
                server_closes = True
                break
            yield None
    a, b = (s, c) if server_closes else (c, s)
    yield frame(a, b, FIN | ACK, b"", clock.us // 1000)
    yield frame(b, a, FIN | ACK, b"", clock.us // 1000)
    yield frame(a, b, ACK, b"", clock.us // 1000)


def make_pairs(rng: random.Random, count: int = 50) -> list[Pair]:
    servers = [
        ("files{:02d}.contoso.local", "nginx/1.24.0"),
        ("mail.contoso.com", "Microsoft-IIS/10.0"),
        ("sharepoint.contoso.local", "Microsoft-IIS/10.0"),
        ("api.fabrikam.example", "nginx/1.22.1"),
        ("repo.contoso.local", "Apache/2.4.57 (Debian)"),
        ("intranet.contoso.local", "Microsoft-IIS/10.0"),
    ]
    agents = (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/122.0.0.0 Safari/537.36 Edg/122.0.0.0",
        "curl/8.4.0",
        "python-requests/2.31.0",
        "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17328; Pro)",
        "Wget/1.21.3",
        "Java-http-client/17.0.9",
    )
    pairs: list[Pair] = []
    seen: set[tuple[int, int]] = set()
    while len(pairs) < count:
        ci, si = rng.randrange(1, 36), rng.randrange(0, 14)
        if (ci, si) in seen:
            continue
        seen.add((ci, si))
        name, server = servers[si % len(servers)]
        pairs.append(
            Pair(
                client_ip=bytes((10, 20, ci // 16, 10 + ci)),
                server_ip=bytes((10, 80, 1, 20 + si)),
                client_mac=bytes((0x00, 0x15, 0x5D, 0x14, 0x00, ci)),
                server_mac=bytes((0x00, 0x1C, 0x73, 0x50, 0x01, si)),
                host=name.format(si),
                port=8080 if si % 7 == 3 else 80,
                server=server,
                user_agent=agents[ci % len(agents)],
                next_port=rng.randrange(32768, 60000),
            )
        )
    return pairs


@dataclass(slots=True)
class Result:
    packets: int
    frame_bytes: int
    file_bytes: int
    truth: Truth


def write_capture(path: Path, size_gb: float, auth: int, seed: int) -> Result:
    """Write the capture at ``path``; return counts and the ground truth."""
    rng = random.Random(seed)
    pool_rng = random.Random(seed ^ 0x5EED)
    pool = pool_rng.randbytes(POOL_SIZE + PIECE)
    truth = Truth()
    target = int(size_gb * 1e9)
    planner = Planner(rng, target, auth, truth)
    pairs = make_pairs(rng)
    clock = Clock()
    bulk: list[Iterator[bytes | None]] = []
    api: list[Iterator[bytes | None]] = []
    packets = 0
    written = len(PCAP_HEADER)
    pack_rec = RECORD.pack

    def open_conn(is_api: bool) -> Iterator[bytes | None] | None:
        pid = rng.randrange(len(pairs))
        pair = pairs[pid]
        job = planner.auth_job(pair, pid) if is_api else planner.bulk_job(pair)
        if job is None:
            return None
        return connection(pair, pid, planner, clock, rng, pool, is_api, job)

    with open(path, "wb", buffering=1 << 24) as f:
        f.write(PCAP_HEADER)
        write = f.write
        while True:
            while len(bulk) < BULK_SLOTS and planner.bulk_left():
                conn = open_conn(False)
                if conn is None:
                    break
                bulk.append(conn)
            if not bulk and not planner.bulk_left():
                planner.force_auth = True  # the tail: nothing left to wait for
            while len(api) < API_SLOTS and planner.auth_due():
                conn = open_conn(True)
                if conn is None:
                    break
                api.append(conn)
            n_bulk = len(bulk)
            if n_bulk + len(api) == 0:
                break
            i = rng.randrange(n_bulk + len(api))
            group, idx = (bulk, i) if i < n_bulk else (api, i - n_bulk)
            gen = group[idx]
            for _ in range(rng.randrange(1, 24)):
                fr = next(gen, False)
                if fr is False:
                    group.pop(idx)
                    break
                if fr is None:  # idle keep-alive connection
                    clock.us += 50
                    break
                n = len(fr)
                clock.us += n * 8_000_000 // LINK_BPS + rng.randrange(3)
                us = clock.us
                write(pack_rec(us // 1_000_000, us % 1_000_000, n, n))
                write(fr)
                packets += 1
                written += n + REC_OVERHEAD
            planner.written = written
            planner.now = clock.us / 1e6
    frame_bytes = written - len(PCAP_HEADER) - packets * REC_OVERHEAD
    return Result(packets, frame_bytes, written, truth)


def truth_record(res: Result, size_gb: float, auth: int, seed: int) -> dict[str, object]:
    """The sidecar JSON: counts and the sorted cred_fp list of every Authorization header."""
    t = res.truth
    by_scheme = Counter(s for s, _ in t.creds)
    return {
        "generator": "bench/make_capture.py",
        "seed": seed,
        "size_gb": size_gb,
        "auth_scenarios": auth,
        "packets": res.packets,
        "bytes": res.file_bytes,
        "frame_bytes": res.frame_bytes,
        "connections": t.connections,
        "http_requests": t.requests,
        "authorization_headers": len(t.creds),
        "authorization_literal_matches": t.literal,
        "challenge_401_responses": t.challenges,
        "by_scheme": dict(sorted(by_scheme.items())),
        "scenarios": dict(sorted(t.scenarios.items())),
        "cred_fps": sorted(fp for _, fp in t.creds),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="pcap to write (truth goes to OUT.truth.json)")
    ap.add_argument("--size-gb", type=float, default=1.0, help="target size in 10^9 bytes")
    ap.add_argument("--auth", type=int, default=3000, help="number of auth scenarios")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res = write_capture(args.out, args.size_gb, args.auth, args.seed)
    record = truth_record(res, args.size_gb, args.auth, args.seed)
    truth_path = args.out.with_name(args.out.name + ".truth.json")
    truth_path.write_text(json.dumps(record, indent=1) + "\n")
    dt = time.perf_counter() - t0
    mb = res.file_bytes / 1e6
    print(
        f"wrote {args.out}: {mb:.1f} MB, {res.packets} packets, "
        f"{record['authorization_headers']} Authorization headers, "
        f"{res.truth.connections} connections in {dt:.1f} s ({mb / dt:.0f} MB/s); "
        f"truth in {truth_path}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
