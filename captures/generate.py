#!/usr/bin/env python3
"""Deterministic generator of the bundled sample captures (described in captures/README.md).

Run from the repository root::

    python captures/generate.py              # rewrite every capture + .expected.json + .truth.json
    python captures/generate.py --out DIR    # write them to DIR instead (the test does this)
    python captures/generate.py --new-keys   # regenerate the TEST-ONLY keys in captures/keys/

Every output is byte-identical from run to run: timestamps, ISNs, ports and identifiers are fixed,
"random" bytes come from SHA-256 of a label, RS256 (RSASSA-PKCS1-v1_5) signatures are deterministic
for a fixed key, and gzip bodies use the small fixed-Huffman deflate encoder below so the result
does not depend on the zlib build. Only ``--new-keys`` is random, and its output is committed.

Scapy only builds the IP/TCP/link headers; the pcap and pcapng files are written with ``struct``.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import email.utils
import gzip
import hashlib
import hmac
import json
import struct
import sys
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.x509.oid import NameOID
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
from scapy.packet import Packet, Raw

HERE = Path(__file__).resolve().parent
KEYS_DIR = HERE / "keys"
KEYS_REL = "captures/keys"

US = 1_000  # nanoseconds per microsecond
MS = 1_000_000
SEC = 1_000_000_000
#: 2026-03-02T09:00:00Z, the base time of every capture (nanoseconds since the epoch).
T0 = 1_772_442_000 * SEC
T0_S = T0 // SEC

EXCHANGE_ID = "00000002-0000-0ff1-ce00-000000000000"
SFB_ID = "00000004-0000-0ff1-ce00-000000000000"
ACS_ID = "00000001-0000-0000-c000-000000000000"
TENANT = "11111111-2222-3333-4444-555555555555"
REALM = "contoso.com"
TYPO_EXCHANGE_ID = "00000002-000-0ff1-ce00-000000000000"  # the misprint from the field notes

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


# ---------------------------------------------------------------------------------------------
# Small encoders
# ---------------------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    """Base64url without padding (JWT segments, x5t)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64(data: bytes) -> str:
    """Standard base64 with padding (HTTP auth blobs, certificate values)."""
    return base64.b64encode(data).decode("ascii")


def fp12(text: str | bytes) -> str:
    """The project's fingerprint: first 12 hex digits of SHA-256."""
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return hashlib.sha256(raw).hexdigest()[:12]


def prng(label: str, n: int) -> bytes:
    """``n`` reproducible pseudo-random bytes derived from ``label``."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{label}/{counter}".encode()).digest()
        counter += 1
    return bytes(out[:n])


def det_guid(label: str) -> str:
    """A reproducible version-4-looking GUID."""
    return str(uuid.UUID(bytes=prng("guid/" + label, 16), version=4))


def http_date(ts_ns: int) -> str:
    """RFC 7231 date of a capture time."""
    return email.utils.formatdate(ts_ns // SEC, usegmt=True)


def iso_z(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- deflate (fixed Huffman, greedy LZ77) + gzip: reproducible whatever zlib is installed ------

_LEN_BASE = (3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99)
_LEN_BASE += (115, 131, 163, 195, 227, 258)
_LEN_EXTRA = (0,) * 8 + (1,) * 4 + (2,) * 4 + (3,) * 4 + (4,) * 4 + (5,) * 4 + (0,)
_DIST_BASE = (1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769)
_DIST_BASE += (1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577)
_DIST_EXTRA = tuple(max(0, i // 2 - 1) for i in range(30))


class _BitWriter:
    def __init__(self) -> None:
        self.acc = 0
        self.count = 0
        self.out = bytearray()

    def bits(self, value: int, n: int) -> None:
        self.acc |= value << self.count
        self.count += n
        while self.count >= 8:
            self.out.append(self.acc & 0xFF)
            self.acc >>= 8
            self.count -= 8

    def code(self, code: int, n: int) -> None:
        self.bits(int(f"{code:0{n}b}"[::-1], 2), n)  # Huffman codes are sent MSB first

    def literal(self, sym: int) -> None:
        if sym < 144:
            self.code(0x30 + sym, 8)
        elif sym < 256:
            self.code(0x190 + sym - 144, 9)
        elif sym < 280:
            self.code(sym - 256, 7)
        else:
            self.code(0xC0 + sym - 280, 8)

    def done(self) -> bytes:
        if self.count:
            self.out.append(self.acc & 0xFF)
        return bytes(self.out)


def _bucket(value: int, bases: Sequence[int]) -> int:
    idx = 0
    for i, base in enumerate(bases):
        if base <= value:
            idx = i
    return idx


def deflate_fixed(data: bytes) -> bytes:
    """Raw deflate (RFC 1951) in one fixed-Huffman block with greedy LZ77 matching."""
    w = _BitWriter()
    w.bits(1, 1)  # BFINAL
    w.bits(1, 2)  # BTYPE = fixed Huffman
    chains: dict[bytes, list[int]] = {}

    def remember(pos: int) -> None:
        if pos + 3 <= len(data):
            chains.setdefault(data[pos : pos + 3], []).append(pos)

    i = 0
    while i < len(data):
        best_len = best_dist = 0
        for j in reversed(chains.get(data[i : i + 3], [])[-32:]):
            if i - j > 32768:
                break
            n = 0
            while n < 258 and i + n < len(data) and data[j + n] == data[i + n]:
                n += 1
            if n > best_len:
                best_len, best_dist = n, i - j
        if best_len >= 3:
            k = _bucket(best_len, _LEN_BASE)
            w.literal(257 + k)
            w.bits(best_len - _LEN_BASE[k], _LEN_EXTRA[k])
            d = _bucket(best_dist, _DIST_BASE)
            w.code(d, 5)
            w.bits(best_dist - _DIST_BASE[d], _DIST_EXTRA[d])
            for pos in range(i, i + best_len):
                remember(pos)
            i += best_len
        else:
            w.literal(data[i])
            remember(i)
            i += 1
    w.literal(256)
    return w.done()


def gzip_bytes(data: bytes) -> bytes:
    """A gzip member (RFC 1952) as IIS writes it: mtime 0, XFL 4, OS 0 (FAT)."""
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\x00"
    trailer = struct.pack("<II", zlib.crc32(data) & 0xFFFFFFFF, len(data) & 0xFFFFFFFF)
    return header + deflate_fixed(data) + trailer


# --- DER (just what SPNEGO / Kerberos need) ----------------------------------------------------


def der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + content


def der_int(value: int) -> bytes:
    return der(0x02, value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True))


def der_oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        out += bytes(reversed(chunk))
    return der(0x06, bytes(out))


def der_gstr(text: str) -> bytes:
    return der(0x1B, text.encode("ascii"))  # KerberosString = GeneralString


def seq(*items: bytes) -> bytes:
    return der(0x30, b"".join(items))


def ctx(n: int, content: bytes) -> bytes:
    return der(0xA0 + n, content)


OID_SPNEGO = "1.3.6.1.5.5.2"
OID_MS_KRB5 = "1.2.840.48018.1.2.2"
OID_KRB5 = "1.2.840.113554.1.2.2"
OID_NEGOEX = "1.3.6.1.4.1.311.2.2.30"
OID_NTLM = "1.3.6.1.4.1.311.2.2.10"


def _krb_enc_data(etype: int, cipher: bytes, kvno: int | None = None) -> bytes:
    kv = ctx(1, der_int(kvno)) if kvno is not None else b""
    return seq(ctx(0, der_int(etype)), kv, ctx(2, der(0x04, cipher)))


def kerberos_ap_req(realm: str, service: str, host: str, label: str) -> bytes:
    """A Kerberos AP-REQ (RFC 4120 5.5.1) whose ticket names ``service/host@realm``.

    The encrypted parts are reproducible filler (nobody can decrypt them without the service key).
    """
    sname = seq(ctx(0, der_int(2)), ctx(1, seq(der_gstr(service), der_gstr(host))))
    ticket = der(
        0x61,
        seq(
            ctx(0, der_int(5)),
            ctx(1, der_gstr(realm)),
            ctx(2, sname),
            ctx(3, _krb_enc_data(18, prng(label + "/ticket", 1138), kvno=7)),
        ),
    )
    ap_options = der(0x03, b"\x00\x20\x00\x00\x00")  # mutual-required
    return der(
        0x6E,
        seq(
            ctx(0, der_int(5)),
            ctx(1, der_int(14)),
            ctx(2, ap_options),
            ctx(3, ticket),
            ctx(4, _krb_enc_data(18, prng(label + "/authenticator", 179))),
        ),
    )


def spnego_init_krb5(ap_req: bytes) -> bytes:
    """GSS-API InitialContextToken carrying a SPNEGO NegTokenInit with a Kerberos mechToken."""
    krb_token = der(0x60, der_oid(OID_KRB5) + b"\x01\x00" + ap_req)
    mech_types = seq(
        der_oid(OID_MS_KRB5), der_oid(OID_KRB5), der_oid(OID_NEGOEX), der_oid(OID_NTLM)
    )
    neg_token_init = ctx(0, seq(ctx(0, mech_types), ctx(2, der(0x04, krb_token))))
    return der(0x60, der_oid(OID_SPNEGO) + neg_token_init)


def spnego_resp_krb5(label: str) -> bytes:
    """SPNEGO NegTokenResp (accept-completed) with a Kerberos AP-REP as responseToken."""
    ap_rep = der(
        0x6F,
        seq(ctx(0, der_int(5)), ctx(1, der_int(15)), ctx(2, _krb_enc_data(18, prng(label, 118)))),
    )
    krb_token = der(0x60, der_oid(OID_KRB5) + b"\x02\x00" + ap_rep)
    return ctx(
        1,
        seq(ctx(0, der(0x0A, b"\x00")), ctx(1, der_oid(OID_MS_KRB5)), ctx(2, der(0x04, krb_token))),
    )


# --- NTLM (MS-NLMP), with a genuine NTLMv2 response, session key and MIC ----------------------


def md4(data: bytes) -> bytes:
    """MD4 (RFC 1320); hashlib often lacks it on OpenSSL 3."""

    def rotl(v: int, s: int) -> int:
        v &= 0xFFFFFFFF
        return ((v << s) | (v >> (32 - s))) & 0xFFFFFFFF

    rounds: tuple[tuple[Callable[[int, int, int], int], int, tuple[int, ...], tuple[int, ...]], ...]
    rounds = (
        (lambda x, y, z: (x & y) | (~x & z), 0, tuple(range(16)), (3, 7, 11, 19)),
        (
            lambda x, y, z: (x & y) | (x & z) | (y & z),
            0x5A827999,
            (0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15),
            (3, 5, 9, 13),
        ),
        (
            lambda x, y, z: x ^ y ^ z,
            0x6ED9EBA1,
            (0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15),
            (3, 9, 11, 15),
        ),
    )
    msg = data + b"\x80" + b"\x00" * ((55 - len(data)) % 64) + struct.pack("<Q", len(data) * 8)
    state = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476]
    for off in range(0, len(msg), 64):
        x = struct.unpack("<16I", msg[off : off + 64])
        st = list(state)
        for fn, const, order, shifts in rounds:
            for j in range(16):
                t, a, b, c = (-j) % 4, (1 - j) % 4, (2 - j) % 4, (3 - j) % 4
                st[t] = rotl(st[t] + fn(st[a], st[b], st[c]) + x[order[j]] + const, shifts[j % 4])
        state = [(s + v) & 0xFFFFFFFF for s, v in zip(state, st, strict=True)]
    return struct.pack("<4I", *state)


def rc4(key: bytes, data: bytes) -> bytes:
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) % 256
        s[i], s[j] = s[j], s[i]
    out = bytearray()
    i = j = 0
    for byte in data:
        i = (i + 1) % 256
        j = (j + s[i]) % 256
        s[i], s[j] = s[j], s[i]
        out.append(byte ^ s[(s[i] + s[j]) % 256])
    return bytes(out)


def hmac_md5(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.md5).digest()


NTLM_FLAGS_NEGOTIATE = 0xE2088297
NTLM_FLAGS_CHALLENGE = 0xE2898215
NTLM_VERSION = struct.pack("<BBHBBBB", 10, 0, 17763, 0, 0, 0, 15)  # Windows 10 / 2019, rev 15


def _utf16(text: str) -> bytes:
    return text.encode("utf-16-le")


def _av_pairs(pairs: Sequence[tuple[int, bytes]]) -> bytes:
    return b"".join(struct.pack("<HH", av_id, len(v)) + v for av_id, v in pairs) + b"\x00" * 4


def filetime(seconds: int) -> bytes:
    return struct.pack("<Q", (seconds + 11_644_473_600) * 10_000_000)


def ntlm_negotiate() -> bytes:
    """NTLM NEGOTIATE_MESSAGE (type 1) as Windows HTTP clients send it."""
    empty = struct.pack("<HHI", 0, 0, 40)
    return (
        b"NTLMSSP\x00" + struct.pack("<II", 1, NTLM_FLAGS_NEGOTIATE) + empty + empty + NTLM_VERSION
    )


def ntlm_target_info(
    ts_seconds: int, computer: str = "MAIL", dns_computer: str = "mail.contoso.com"
) -> bytes:
    return _av_pairs(
        [
            (2, _utf16("CONTOSO")),
            (1, _utf16(computer)),
            (4, _utf16("contoso.com")),
            (3, _utf16(dns_computer)),
            (5, _utf16("contoso.com")),
            (7, filetime(ts_seconds)),
        ]
    )


def ntlm_challenge(
    server_challenge: bytes, target_info: bytes, flags: int = NTLM_FLAGS_CHALLENGE
) -> bytes:
    """NTLM CHALLENGE_MESSAGE (type 2) from a CONTOSO server (mail.contoso.com by default)."""
    target = _utf16("CONTOSO")
    head = 56
    return (
        b"NTLMSSP\x00"
        + struct.pack("<I", 2)
        + struct.pack("<HHI", len(target), len(target), head)
        + struct.pack("<I", flags)
        + server_challenge
        + b"\x00" * 8
        + struct.pack("<HHI", len(target_info), len(target_info), head + len(target))
        + NTLM_VERSION
        + target
        + target_info
    )


@dataclass(frozen=True)
class NtlmAuth:
    """Inputs of an NTLMv2 AUTHENTICATE_MESSAGE."""

    domain: str
    user: str
    password: str
    workstation: str
    spn: str
    client_challenge: bytes
    exported_session_key: bytes


def ntlm_authenticate(a: NtlmAuth, type1: bytes, type2: bytes) -> bytes:
    """NTLM AUTHENTICATE_MESSAGE (type 3) with an NTLMv2 response and a MIC, computed for real."""
    server_challenge = type2[24:32]
    ti_len, _, ti_off = struct.unpack_from("<HHI", type2, 40)
    server_pairs = type2[ti_off : ti_off + ti_len][:-4]  # drop MsvAvEOL
    ts_value = server_pairs[server_pairs.index(b"\x07\x00\x08\x00") + 4 :][:8]
    client_pairs = (
        server_pairs
        + struct.pack("<HHI", 6, 4, 2)  # MsvAvFlags: MIC present
        + struct.pack("<HH", 10, 16)
        + b"\x00" * 16  # MsvAvChannelBindings (none: plain HTTP)
        + struct.pack("<HH", 9, len(_utf16(a.spn)))
        + _utf16(a.spn)
        + b"\x00" * 4
    )
    blob = b"\x01\x01" + b"\x00" * 6 + ts_value + a.client_challenge + b"\x00" * 4
    blob += client_pairs + b"\x00" * 4
    nt_hash = md4(_utf16(a.password))
    ntowf2 = hmac_md5(nt_hash, _utf16(a.user.upper() + a.domain))
    nt_proof = hmac_md5(ntowf2, server_challenge + blob)
    nt_response = nt_proof + blob
    lm_response = b"\x00" * 24  # Z(24) when the server sent MsvAvTimestamp
    session_base_key = hmac_md5(ntowf2, nt_proof)
    enc_session_key = rc4(session_base_key, a.exported_session_key)
    payload_parts = [
        _utf16(a.domain),
        _utf16(a.user),
        _utf16(a.workstation),
        lm_response,
        nt_response,
        enc_session_key,
    ]
    offset = 88
    fields = []
    for part in payload_parts:
        fields.append(struct.pack("<HHI", len(part), len(part), offset))
        offset += len(part)
    dom_f, user_f, ws_f, lm_f, nt_f, key_f = fields
    head = b"NTLMSSP\x00" + struct.pack("<I", 3) + lm_f + nt_f + dom_f + user_f + ws_f + key_f
    head += struct.pack("<I", NTLM_FLAGS_CHALLENGE) + NTLM_VERSION
    body = b"".join(payload_parts)
    unsigned = head + b"\x00" * 16 + body
    mic = hmac_md5(a.exported_session_key, type1 + type2 + unsigned)
    return head + mic + body


#: NTLMv1 without extended session security, as a pre-Vista client (no VERSION structure) sends
#: it: UNICODE, OEM, REQUEST_TARGET, NTLM, ALWAYS_SIGN, (TARGET_TYPE_DOMAIN, TARGET_INFO,) 128, 56;
#: no NEGOTIATE_EXTENDED_SESSIONSECURITY (0x00080000), no KEY_EXCH, no SIGN/SEAL. The server's
#: type 2 offers no ESS either and carries its VERSION.
NTLM_V1_NEGOTIATE = 0xA0008207
NTLM_V1_CHALLENGE = 0xA2818205
NTLM_V1_AUTHENTICATE = 0xA0808205
assert not (NTLM_V1_NEGOTIATE | NTLM_V1_CHALLENGE | NTLM_V1_AUTHENTICATE) & 0x00080000


def ntlm_negotiate_v1() -> bytes:
    """NEGOTIATE_MESSAGE (type 1) without a VERSION field (32-byte header, empty fields)."""
    empty = struct.pack("<HHI", 0, 0, 32)
    return b"NTLMSSP\x00" + struct.pack("<II", 1, NTLM_V1_NEGOTIATE) + empty + empty


def des_block(key7: bytes, block: bytes) -> bytes:
    """DES-ECB of one 8-byte block under a 56-bit key (expanded with odd parity bits)."""
    bits = int.from_bytes(key7, "big")
    key8 = bytearray()
    for i in range(8):
        byte = ((bits >> (49 - 7 * i)) & 0x7F) << 1
        key8.append(byte | (bin(byte).count("1") % 2 == 0))
    encryptor = Cipher(TripleDES(bytes(key8) * 3), modes.ECB()).encryptor()  # K1=K2=K3: DES
    return encryptor.update(block) + encryptor.finalize()


def ntlmv1_response(password: str, server_challenge: bytes) -> bytes:
    """The 24-byte NTLMv1 NT response: DESL(NTOWFv1(password), server challenge) (MS-NLMP 3.3.1)."""
    key = md4(_utf16(password)) + b"\x00" * 5
    return b"".join(des_block(key[i : i + 7], server_challenge) for i in (0, 7, 14))


def ntlm_authenticate_v1(
    domain: str, user: str, password: str, workstation: str, type2: bytes
) -> bytes:
    """NTLM AUTHENTICATE_MESSAGE (type 3) with an NTLMv1 response and no MIC.

    The LM field repeats the NT response (what Windows sends with NoLMHash / NoLMResponseNTLMv1),
    so both are 24 bytes; no session key is exchanged.
    """
    nt = ntlmv1_response(password, type2[24:32])
    payload_parts = [_utf16(domain), _utf16(user), _utf16(workstation), nt, nt, b""]
    offset = 64  # header without VERSION and MIC
    fields = []
    for part in payload_parts:
        fields.append(struct.pack("<HHI", len(part), len(part), offset))
        offset += len(part)
    dom_f, user_f, ws_f, lm_f, nt_f, key_f = fields
    head = b"NTLMSSP\x00" + struct.pack("<I", 3) + lm_f + nt_f + dom_f + user_f + ws_f + key_f
    head += struct.pack("<I", NTLM_V1_AUTHENTICATE)
    return head + b"".join(payload_parts)


# --- HTTP Digest (RFC 2617, MD5, qop=auth) ------------------------------------------------------


def digest_response(
    user: str, realm: str, password: str, method: str, uri: str, nonce: str, nc: str, cnonce: str
) -> str:
    def h(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = h(f"{user}:{realm}:{password}")
    ha2 = h(f"{method}:{uri}")
    return h(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")


# ---------------------------------------------------------------------------------------------
# Test keys (RSA + self-signed certificates, committed under captures/keys/)
# ---------------------------------------------------------------------------------------------

KEY_SPECS = {
    # name: (RSA bits, certificate subject CN)
    "exchange": (2048, "Microsoft Exchange Server Auth Certificate"),
    "sfb": (8192, "sfbpool01.contoso.com"),
    "acs": (2048, "accounts.accesscontrol.windows.net"),
}


@dataclass(frozen=True)
class TestKey:
    """One TEST-ONLY signing key and its self-signed certificate."""

    name: str
    private_key: rsa.RSAPrivateKey
    cert: x509.Certificate

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def x5t(self) -> str:
        return b64url(hashlib.sha1(self.der).digest())

    @property
    def cert_file(self) -> str:
        return f"{KEYS_REL}/{self.name}.cert.pem"


def new_keys(keys_dir: Path = KEYS_DIR) -> None:
    """Create fresh TEST-ONLY keys and certificates (random; run once, then commit)."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    for name, (bits, cn) in KEY_SPECS.items():
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TEST KEY - oauth-traffic-analyzer"),
            ]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc))
            .not_valid_after(dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        (keys_dir / f"{name}.key.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        (keys_dir / f"{name}.cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def load_keys(keys_dir: Path = KEYS_DIR) -> dict[str, TestKey]:
    keys = {}
    for name in KEY_SPECS:
        private = serialization.load_pem_private_key(
            (keys_dir / f"{name}.key.pem").read_bytes(),
            password=None,
            unsafe_skip_rsa_key_validation=True,  # our own keys; the check costs seconds
        )
        assert isinstance(private, rsa.RSAPrivateKey)
        cert = x509.load_pem_x509_certificate((keys_dir / f"{name}.cert.pem").read_bytes())
        keys[name] = TestKey(name, private, cert)
    return keys


# ---------------------------------------------------------------------------------------------
# Tokens
# ---------------------------------------------------------------------------------------------


def mint_rs256(payload: dict[str, Any], key: TestKey, kid: bool = False) -> str:
    """A signed JWT with Microsoft's header order: typ, alg, x5t (+ kid for STS tokens)."""
    headers: dict[str, Any] = {"x5t": key.x5t}
    if kid:
        headers["kid"] = key.x5t
    return jwt.encode(
        payload, key.private_key, algorithm="RS256", headers=headers, sort_headers=False
    )


def mint_unsigned(payload: dict[str, Any]) -> str:
    """An unsigned outer token: header {"typ":"JWT","alg":"none"}, empty third segment."""
    return jwt.encode(payload, None, algorithm="none", sort_headers=False)


def user_context(
    aud: str, iss: str, user: dict[str, str], actor: str, nbf: int, exp: int
) -> dict[str, Any]:
    """Claims of an S2S outer (user context) token for ``user``, carrying ``actor``."""
    return {
        "aud": aud,
        "iss": iss,
        "nbf": str(nbf),
        "exp": str(exp),
        "nameid": user["sid"],
        "nii": "urn:office:idp:activedirectory",
        "upn": user["upn"],
        "smtp": user["upn"],
        "sip": user["upn"],
        "actortoken": actor,
    }


def jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    head, body = token.split(".")[:2]
    return json.loads(_unb64url(head)), json.loads(_unb64url(body))


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def tamper(token: str, **changes: Any) -> str:
    """Change claims of a signed token after signing, keeping header and signature."""
    head, body, sig = token.split(".")
    claims = json.loads(_unb64url(body))
    claims.update(changes)
    new_body = b64url(json.dumps(claims, separators=(",", ":")).encode())
    return f"{head}.{new_body}.{sig}"


def rs256_valid(token: str, key: TestKey) -> bool:
    head, body, sig = token.split(".")
    try:
        key.cert.public_key().verify(  # type: ignore[union-attr]
            _unb64url(sig), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# HTTP messages (built from structure, so the expected events never depend on a parser)
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Link layers, TCP connections, capture container
# ---------------------------------------------------------------------------------------------


@dataclass
class Host:
    ip: str
    mac: str
    ttl: int = 128
    ip_id: int = 0x2000

    def next_id(self) -> int:
        self.ip_id = (self.ip_id + 1) & 0xFFFF
        return self.ip_id


Link = Callable[[Host, Host, Packet], bytes]


def ether(src: Host, dst: Host, l3: Packet) -> bytes:
    return bytes(Ether(src=src.mac, dst=dst.mac) / l3)


def vlan(vid: int, prio: int = 0) -> Link:
    def link(src: Host, dst: Host, l3: Packet) -> bytes:
        return bytes(Ether(src=src.mac, dst=dst.mac) / Dot1Q(vlan=vid, prio=prio) / l3)

    return link


def qinq(outer: int, inner: int) -> Link:
    def link(src: Host, dst: Host, l3: Packet) -> bytes:
        frame = Ether(src=src.mac, dst=dst.mac, type=0x88A8) / Dot1AD(vlan=outer)
        return bytes(frame / Dot1Q(vlan=inner) / l3)

    return link


def sll2(local: Host, ifindex: int = 2) -> Link:
    """Linux "cooked" v2 header (LINKTYPE_LINUX_SLL2) as captured on ``local``."""

    def link(src: Host, dst: Host, l3: Packet) -> bytes:
        proto = 0x86DD if isinstance(l3, IPv6) else 0x0800
        pkttype = 4 if src is local else 0  # PACKET_OUTGOING / PACKET_HOST
        mac = bytes.fromhex(src.mac.replace(":", ""))
        head = struct.pack(">HHIHBB", proto, 0, ifindex, 1, pkttype, 6) + mac + b"\x00\x00"
        return head + bytes(l3)

    return link


def null_loopback(src: Host, dst: Host, l3: Packet) -> bytes:
    return struct.pack("<I", 2) + bytes(l3)  # LINKTYPE_NULL, AF_INET in host (little) order


@dataclass
class Frame:
    ts_ns: int
    iface: int
    data: bytes
    order: int


SYN_OPTIONS = [
    ("MSS", 1460),
    ("NOP", None),
    ("WScale", 8),
    ("NOP", None),
    ("NOP", None),
    ("SAckOK", b""),
]

C, S = 0, 1  # sides of a connection: client, server
Plan = Sequence[int | tuple[int, int]]  # segment indices, or (start, end) byte ranges to resend


class Conn:
    """One TCP connection: emits frames with consistent sequence/ack numbers."""

    def __init__(
        self,
        cap: Capture,
        iface: int,
        link: Link,
        client: Host,
        cport: int,
        server: Host,
        sport: int,
        c_isn: int,
        s_isn: int,
    ) -> None:
        self.cap, self.iface, self.link = cap, iface, link
        self.hosts = (client, server)
        self.ports = (cport, sport)
        self.nxt = [c_isn, s_isn]
        self.v6 = ":" in client.ip

    @property
    def endpoints(self) -> tuple[str, int, str, int]:
        return self.hosts[C].ip, self.ports[C], self.hosts[S].ip, self.ports[S]

    def pkt(
        self,
        side: int,
        t: int,
        flags: str,
        payload: bytes = b"",
        seq_no: int | None = None,
        options: list[Any] | None = None,
    ) -> None:
        src, dst = self.hosts[side], self.hosts[1 - side]
        seq_no = self.nxt[side] if seq_no is None else seq_no
        ack = self.nxt[1 - side] if "A" in flags else 0
        window = 64240 if "S" in flags else (1026 if side == C else 8212)
        tcp = TCP(
            sport=self.ports[side],
            dport=self.ports[1 - side],
            seq=seq_no % 2**32,
            ack=ack % 2**32,
            flags=flags,
            window=window,
            options=options or [],
        )
        if self.v6:
            l3: Packet = IPv6(src=src.ip, dst=dst.ip, hlim=src.ttl) / tcp
        else:
            l3 = IP(src=src.ip, dst=dst.ip, ttl=src.ttl, id=src.next_id(), flags="DF") / tcp
        if payload:
            l3 = l3 / Raw(payload)
        self.cap.add(t, self.iface, self.link(src, dst, l3))

    def open(self, t: int, rtt: int = 300 * US) -> int:
        self.pkt(C, t, "S", options=SYN_OPTIONS)
        self.nxt[C] += 1
        self.pkt(S, t + rtt, "SA", options=SYN_OPTIONS)
        self.nxt[S] += 1
        self.pkt(C, t + rtt + 60 * US, "A")
        return t + rtt + 60 * US

    def send(
        self,
        side: int,
        t: int,
        data: bytes,
        sizes: Sequence[int] = (),
        plan: Plan | None = None,
        gap: int = 40 * US,
        ack: bool = True,
    ) -> tuple[int, int]:
        """Send ``data``; returns (time of the first packet carrying byte 0, time of the last).

        ``sizes`` fixes the first segment lengths (the rest is cut at MSS 1460); ``plan`` lists
        what to put on the wire in order: segment indices (repeat one for an exact duplicate) or
        (start, end) byte ranges of ``data`` (an overlapping retransmission).
        """
        bounds = []
        pos = 0
        for size in sizes:
            bounds.append((pos, min(pos + size, len(data))))
            pos += size
        while pos < len(data):
            bounds.append((pos, min(pos + 1460, len(data))))
            pos += 1460
        base = self.nxt[side]
        first_ts: int | None = None
        for step in plan if plan is not None else range(len(bounds)):
            start, end = bounds[step] if isinstance(step, int) else step
            flags = "PA" if end == len(data) else "A"
            self.pkt(side, t, flags, data[start:end], seq_no=base + start)
            if start == 0 and first_ts is None:
                first_ts = t
            last = t
            t += gap
        self.nxt[side] = base + len(data)
        if ack:
            self.pkt(1 - side, last + 180 * US, "A")
        assert first_ts is not None
        return first_ts, last

    def close(self, side: int, t: int) -> int:
        self.pkt(side, t, "FA")
        self.nxt[side] += 1
        self.pkt(1 - side, t + 250 * US, "FA")
        self.nxt[1 - side] += 1
        self.pkt(side, t + 500 * US, "A")
        return t + 500 * US

    def reset(self, side: int, t: int) -> int:
        self.pkt(side, t, "RA")
        return t


@dataclass
class TokenInfo:
    text: str
    layer: str
    key: TestKey | None
    tampered: bool = False
    note: str = ""
    in_response: bool = False


class Capture:
    """Frames, events and ground truth of one capture file."""

    def __init__(self, name: str, description: str) -> None:
        self.name = name
        self.description = description
        self.frames: list[Frame] = []
        self.events: list[dict[str, Any]] = []
        self.tokens: list[TokenInfo] = []
        self.handshakes: list[tuple[str, str, list[int], str]] = []  # kind, outcome, events, note
        self.truth_extra: dict[str, Any] = {}
        self.texts: list[tuple[bytes, bytes]] = []  # per event: request bytes, response head+body
        self.findings: dict[str, dict[str, Any]] = {}  # rule id -> events that fire / stay silent

    def add(self, ts: int, iface: int, data: bytes) -> None:
        self.frames.append(Frame(ts, iface, data, len(self.frames)))

    def token(
        self,
        text: str,
        layer: str,
        key: TestKey | None,
        *,
        tampered: bool = False,
        note: str = "",
        in_response: bool = False,
    ) -> str:
        """Register a token for the truth file (actor tokens are linked to their outer tokens
        automatically); returns the token text."""
        self.tokens.append(TokenInfo(text, layer, key, tampered, note, in_response))
        return text

    def record(
        self,
        conn: Conn,
        req: Request,
        resp: Response | None,
        req_ts: int,
        resp_ts: int | None,
        note: str,
    ) -> int:
        """Add the event of one exchange (it must qualify); returns its provisional number."""
        assert is_event(req, resp), note
        self.events.append(build_event(conn, req, resp, req_ts, resp_ts, note))
        self.texts.append((req.encode(), b"" if resp is None else _resp_text(resp)))
        return len(self.events) - 1

    def exchange(
        self,
        conn: Conn,
        t: int,
        req: Request,
        resp: Response | None,
        note: str = "",
        *,
        req_sizes: Sequence[int] = (),
        req_plan: Plan | None = None,
        resp_sizes: Sequence[int] = (),
        resp_plan: Plan | None = None,
        think: int = 4 * MS,
    ) -> tuple[int, int | None]:
        """Send a request and its response on ``conn``; returns (end time, event number)."""
        req_ts, last = conn.send(C, t, req.encode(), req_sizes, req_plan)
        resp_ts = None
        if resp is not None:
            resp_ts, last = conn.send(S, last + think, resp.encode(), resp_sizes, resp_plan)
        event = self.record(conn, req, resp, req_ts, resp_ts, note) if is_event(req, resp) else None
        return last, event

    def handshake(self, kind: str, outcome: str, events: list[int | None], note: str) -> None:
        self.handshakes.append((kind, outcome, [e for e in events if e is not None], note))

    def expect(
        self,
        rule_id: str,
        fire: Sequence[int | None],
        silent: Sequence[int | None] = (),
        note: str = "",
    ) -> None:
        """Ground truth for a finding rule: the events it must flag and events it must not."""
        self.findings[rule_id] = {
            "fire": [e for e in fire if e is not None],
            "silent": [e for e in silent if e is not None],
            "note": note,
        }


def _resp_text(resp: Response) -> bytes:
    """Response head plus the decoded (unchunked, uncompressed) body, for token look-ups."""
    body = resp.body
    if resp.header("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    return resp.encode().split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n" + body


def build_event(
    conn: Conn, req: Request, resp: Response | None, req_ts: int, resp_ts: int | None, note: str
) -> dict[str, Any]:
    """The expected Event fields of one exchange (field names of analyzer/model.py)."""
    cred = req.cred
    form = dict(req.form or [])
    is_token_req = "grant_type" in form
    js = resp.json_body if (resp is not None and is_token_req) else None
    cip, cport, sip, sport = conn.endpoints
    extra: dict[str, Any] = {"note": note}
    if cred is not None:
        extra["auth_header"] = cred.source
        extra.update(cred.extra)

    def tok_fp(name: str) -> str | None:
        return fp12(js[name]) if js and isinstance(js.get(name), str) else None

    assertion = form.get("assertion") or form.get("client_assertion")
    return {
        "ts": req_ts / SEC,
        "client_ip": cip,
        "client_port": cport,
        "server_ip": sip,
        "server_port": sport,
        "protocol": req.version.lower(),
        "method": req.method,
        "host": req.header("Host"),
        "uri": req.target(redact=True),
        "status": None if resp is None else resp.status,
        "response_ts": None if resp_ts is None else resp_ts / SEC,
        "scheme": "none" if cred is None else cred.scheme,
        "scheme_name": None if cred is None else cred.scheme_name,
        "mechanism": None if cred is None else cred.mechanism,
        "user": None if cred is None else cred.user,
        "domain": None if cred is None else cred.domain,
        "password_len": None if cred is None else cred.password_len,
        "cred_fp": None if cred is None else fp12(cred.text),
        "challenges": [] if resp is None else resp.challenges,
        "ms_diagnostics": None if resp is None else resp.header("x-ms-diagnostics"),
        "user_agent": req.header("User-Agent"),
        "grant_type": form.get("grant_type") if is_token_req else None,
        "client_id": form.get("client_id") if is_token_req else None,
        "resource": (form.get("resource") or form.get("scope")) if is_token_req else None,
        "assertion_fp": fp12(assertion) if assertion else None,
        "token_type": js.get("token_type") if js else None,
        "expires_in": str(js["expires_in"]) if js and "expires_in" in js else None,
        "access_token_fp": tok_fp("access_token"),
        "refresh_token_fp": tok_fp("refresh_token"),
        "id_token_fp": tok_fp("id_token"),
        "oauth_error": js.get("error") if js else None,
        "extra": extra,
    }


# ---------------------------------------------------------------------------------------------
# Capture 1: exchange-sfb.pcap
# ---------------------------------------------------------------------------------------------

EWS_UA = "ExchangeServicesClient/15.00.0913.015"
OUTLOOK_UA = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)"
NS_SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
NS_M = "http://schemas.microsoft.com/exchange/services/2006/messages"
NS_T = "http://schemas.microsoft.com/exchange/services/2006/types"

ALICE = {"sid": "S-1-5-21-3623811015-3361044348-30300820-1104", "upn": "alice.johnson@contoso.com"}
BOB = {"sid": "S-1-5-21-3623811015-3361044348-30300820-1117", "upn": "bob.martinez@contoso.com"}


def soap_request(operation: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<soap:Envelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:m="{NS_M}" '
        f'xmlns:t="{NS_T}" xmlns:soap="{NS_SOAP}"><soap:Header>'
        '<t:RequestServerVersion Version="Exchange2013" /></soap:Header>'
        f"<soap:Body>{operation}</soap:Body></soap:Envelope>"
    ).encode()


def soap_response(body: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<s:Envelope xmlns:s="{NS_SOAP}"><s:Header><h:ServerVersionInfo MajorVersion="15" '
        'MinorVersion="2" MajorBuildNumber="1544" MinorBuildNumber="4" Version="V2017_07_11" '
        f'xmlns:h="{NS_T}" xmlns="{NS_T}" xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"/></s:Header>'
        '<s:Body xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xmlns:xsd="http://www.w3.org/2001/XMLSchema">{body}</s:Body></s:Envelope>'
    ).encode()


def get_folder(smtp: str, folder: str = "conversationhistory") -> bytes:
    return soap_request(
        "<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape>"
        f'<m:FolderIds><t:DistinguishedFolderId Id="{folder}"><t:Mailbox>'
        f"<t:EmailAddress>{smtp}</t:EmailAddress></t:Mailbox></t:DistinguishedFolderId>"
        "</m:FolderIds></m:GetFolder>"
    )


def get_folder_response(label: str) -> bytes:
    folder_id = b64(prng("folder/" + label, 70))
    change_key = b64(prng("ck/" + label, 19))
    return soap_response(
        f'<m:GetFolderResponse xmlns:m="{NS_M}" xmlns:t="{NS_T}"><m:ResponseMessages>'
        '<m:GetFolderResponseMessage ResponseClass="Success"><m:ResponseCode>NoError'
        f'</m:ResponseCode><m:Folders><t:Folder><t:FolderId Id="{folder_id}" '
        f'ChangeKey="{change_key}"/></t:Folder></m:Folders></m:GetFolderResponseMessage>'
        "</m:ResponseMessages></m:GetFolderResponse>"
    )


def create_item(smtp: str, peer: str) -> bytes:
    return soap_request(
        '<m:CreateItem MessageDisposition="SaveOnly"><m:SavedItemFolderId>'
        '<t:DistinguishedFolderId Id="conversationhistory"><t:Mailbox>'
        f"<t:EmailAddress>{smtp}</t:EmailAddress></t:Mailbox></t:DistinguishedFolderId>"
        "</m:SavedItemFolderId><m:Items><t:Message><t:ItemClass>IPM.Note.Microsoft.Conversation"
        f"</t:ItemClass><t:Subject>Conversation with {peer}</t:Subject>"
        '<t:Body BodyType="HTML">&lt;div&gt;[09:00] Bob: can you join the 9:30 review?&lt;/div&gt;'
        "&lt;div&gt;[09:01] Alice: yes, on my way&lt;/div&gt;</t:Body>"
        f"<t:From><t:Mailbox><t:EmailAddress>{smtp}</t:EmailAddress></t:Mailbox></t:From>"
        "<t:IsRead>true</t:IsRead></t:Message></m:Items></m:CreateItem>"
    )


def create_item_response(label: str) -> bytes:
    item_id = b64(prng("item/" + label, 106))
    change_key = b64(prng("ick/" + label, 19))
    return soap_response(
        f'<m:CreateItemResponse xmlns:m="{NS_M}" xmlns:t="{NS_T}"><m:ResponseMessages>'
        '<m:CreateItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError'
        f'</m:ResponseCode><m:Items><t:Message><t:ItemId Id="{item_id}" ChangeKey="{change_key}"/>'
        "</t:Message></m:Items></m:CreateItemResponseMessage></m:ResponseMessages>"
        "</m:CreateItemResponse>"
    )


def find_item_inbox() -> bytes:
    return soap_request(
        '<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape>'
        '<t:AdditionalProperties><t:FieldURI FieldURI="item:Subject"/></t:AdditionalProperties>'
        '</m:ItemShape><m:IndexedPageItemView MaxEntriesReturned="1" Offset="0" '
        'BasePoint="Beginning"/>'
        '<m:ParentFolderIds><t:DistinguishedFolderId Id="inbox"/></m:ParentFolderIds></m:FindItem>'
    )


def find_item_response() -> bytes:
    item_id = b64(prng("inbox-item", 106))
    return soap_response(
        f'<m:FindItemResponse xmlns:m="{NS_M}" xmlns:t="{NS_T}"><m:ResponseMessages>'
        '<m:FindItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError'
        '</m:ResponseCode><m:RootFolder IndexedPagingOffset="1" TotalItemsInView="42" '
        f'IncludesLastItemInRange="false"><t:Items><t:Message><t:ItemId Id="{item_id}" '
        'ChangeKey="CQAAABYAAAD"/><t:Subject>Quarterly numbers</t:Subject></t:Message>'
        "</t:Items></m:RootFolder></m:FindItemResponseMessage></m:ResponseMessages>"
        "</m:FindItemResponse>"
    )


def oof_request(smtp: str) -> bytes:
    return soap_request(
        f'<GetUserOofSettingsRequest xmlns="{NS_M}"><Mailbox xmlns="{NS_T}">'
        f"<Address>{smtp}</Address></Mailbox></GetUserOofSettingsRequest>"
    )


def oof_response() -> bytes:
    return soap_response(
        f'<GetUserOofSettingsResponse xmlns="{NS_M}"><ResponseMessage ResponseClass="Success">'
        "<ResponseCode>NoError</ResponseCode></ResponseMessage>"
        f'<OofSettings xmlns="{NS_T}"><OofState>Disabled</OofState>'
        "<ExternalAudience>All</ExternalAudience><Duration><StartTime>2026-03-02T09:00:00"
        "</StartTime><EndTime>2026-03-03T09:00:00</EndTime></Duration><InternalReply>"
        "<Message/></InternalReply><ExternalReply><Message/></ExternalReply></OofSettings>"
        "<AllowExternalOof>All</AllowExternalOof></GetUserOofSettingsResponse>"
    )


def exchange_metadata(key: TestKey) -> dict[str, Any]:
    """Exchange's auth metadata document (microsoft-s2s.md 5.2)."""
    return {
        "id": "_" + det_guid("exchange-metadata"),
        "version": "1.0",
        "name": "Exchange",
        "realm": REALM,
        "serviceName": EXCHANGE_ID,
        "issuer": f"{EXCHANGE_ID}@{REALM}",
        "allowedAudiences": [f"{EXCHANGE_ID}@{REALM}"],
        "keys": [
            {
                "usage": "signing",
                "keyinfo": {"x5t": key.x5t},
                "keyvalue": {"type": "x509Certificate", "value": b64(key.der)},
            }
        ],
        "endpoints": [
            {
                "location": "https://mail.contoso.com/autodiscover/metadata/json/1",
                "protocol": "OAuth2",
                "usage": "metadata",
            }
        ],
    }


def sfb_metadata(key: TestKey) -> dict[str, Any]:
    """SfB's document: same shape as Exchange's (the real one is not documented, [U])."""
    return {
        "id": "_" + det_guid("sfb-metadata"),
        "version": "1.0",
        "name": "Lync",
        "realm": REALM,
        "serviceName": SFB_ID,
        "issuer": f"{SFB_ID}@{REALM}",
        "allowedAudiences": [f"{SFB_ID}@{REALM}"],
        "keys": [
            {
                "usage": "signing",
                "keyinfo": {"x5t": key.x5t},
                "keyvalue": {"type": "x509Certificate", "value": b64(key.der)},
            }
        ],
        "endpoints": [
            {
                "location": "https://sfbpool01.contoso.com/metadata/json/1",
                "protocol": "OAuth2",
                "usage": "metadata",
            }
        ],
    }


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class ExchangeWorld:
    """The hosts and header habits of the on-premises Exchange / SfB lab."""

    def __init__(self, cap: Capture) -> None:
        self.cap = cap
        # Fresh hosts per build: they carry IP-ID counters, which must restart on every run.
        self.exchange = Host("10.1.0.10", "00:15:5d:01:00:0a")
        self.sfb = Host("10.1.0.20", "00:15:5d:01:00:14")
        self.client = Host("10.1.0.50", "00:15:5d:01:00:32")
        self.acs = Host("20.190.128.10", "00:15:5d:01:00:01", ttl=112)  # via the gateway

    def conn(self, client: Host, cport: int, server: Host, sport: int = 80) -> Conn:
        isn = int.from_bytes(prng(f"isn/{cport}", 8), "big")
        return Conn(self.cap, 0, ether, client, cport, server, sport, isn >> 32, isn & 0xFFFFFFFF)

    def ex_headers(
        self,
        t: int,
        label: str,
        content_type: str | None = "text/xml; charset=utf-8",
        cookie: bool = False,
        extra: Sequence[HeaderItem] = (),
        fqdn: str = "mail.contoso.com",
        netbios: str = "MAIL",
    ) -> list[HeaderItem]:
        """Headers Exchange 2019's front end puts on an EWS response."""
        out: list[HeaderItem] = [("Cache-Control", "private")]
        if content_type:
            out.append(("Content-Type", content_type))
        out += [("Server", "Microsoft-IIS/10.0"), ("request-id", det_guid("rid/" + label))]
        out += list(extra)
        out += [
            ("X-CalculatedBETarget", fqdn),
            ("X-DiagInfo", netbios),
            ("X-BEServer", netbios),
            ("X-AspNet-Version", "4.0.30319"),
        ]
        if cookie:
            out.append(
                ("Set-Cookie", "exchangecookie=" + prng("xc/" + label, 16).hex() + "; path=/")
            )
        out += [
            ("X-Powered-By", "ASP.NET"),
            ("X-FEServer", netbios),
            ("Date", http_date(t)),
            ("Content-Length", "{len}"),
        ]
        return out

    def ews_request(
        self,
        body: bytes,
        auth: AuthHeader | None,
        anchor: str,
        label: str,
        cookie: str | None = None,
        ua: str = EWS_UA,
        path: str = "/EWS/Exchange.asmx",
        host: str = "mail.contoso.com",
    ) -> Request:
        headers: list[HeaderItem] = [
            ("Content-Type", "text/xml; charset=utf-8"),
            ("User-Agent", ua),
            ("Accept", "text/xml"),
            ("X-AnchorMailbox", anchor),
            ("X-PreferServerAffinity", "true"),
            ("client-request-id", det_guid("crid/" + label)),
            ("return-client-request-id", "true"),
        ]
        if auth is not None:
            headers.append(auth)
        headers += [("Host", host)]
        if cookie:
            headers.append(("Cookie", cookie))
        headers += [("Content-Length", "{len}"), ("Accept-Encoding", "gzip,deflate")]
        return Request("POST", path, headers, body)


def build_exchange_sfb(keys: dict[str, TestKey]) -> Capture:
    cap = Capture(
        "exchange-sfb.pcap",
        "On-premises Exchange 2019 (mail.contoso.com) and Skype for Business 2019 "
        "(sfbpool01.contoso.com), realm contoso.com, plain HTTP as if decrypted: metadata "
        "documents, S2S realm discovery, outer+actor tokens, rejected (expired, tampered) tokens "
        "with x-ms-diagnostics, NTLM fallback, Basic and Kerberos clients, ACS token endpoint.",
    )
    w = ExchangeWorld(cap)
    kx, ks, ka = keys["exchange"], keys["sfb"], keys["acs"]
    ex_aud = f"{EXCHANGE_ID}/mail.contoso.com@{REALM}"
    sfb_iss = f"{SFB_ID}@{REALM}"
    bearer_params = [
        ("client_id", EXCHANGE_ID, True),
        ("trusted_issuers", f"{ACS_ID}@*,{sfb_iss}", True),
        ("token_types", "app_asserted_user_v1 service_asserted_app_v1", True),
    ]
    neg, ntlm = challenge("Negotiate"), challenge("NTLM")
    backend_cookie = f"X-BackEndCookie={ALICE['sid']}=" + b64(prng("becookie", 96)).rstrip("=")

    # --- S2S tokens -------------------------------------------------------------------------------
    nbf, now_exp = T0_S - 300, T0_S - 300 + 24 * 3600

    def sfb_actor(nbf: int, exp: int) -> dict[str, Any]:
        return {
            "aud": ex_aud,
            "iss": sfb_iss,
            "nbf": str(nbf),
            "exp": str(exp),
            "nameid": sfb_iss,
            "trustedfordelegation": "true",
        }

    def sfb_outer(user: dict[str, str], actor: str, nbf: int, exp: int) -> dict[str, Any]:
        return user_context(ex_aud, sfb_iss, user, actor, nbf, exp)

    actor = cap.token(
        mint_rs256(sfb_actor(nbf, now_exp), ks),
        "actor",
        ks,
        note="SfB self-issued actor token (24 h)",
    )
    outer_alice = mint_unsigned(sfb_outer(ALICE, actor, nbf, nbf + 8 * 3600))
    outer_bob = mint_unsigned(sfb_outer(BOB, actor, nbf + 3, nbf + 3 + 8 * 3600))
    for outer, who in ((outer_alice, "alice"), (outer_bob, "bob")):
        cap.token(outer, "outer", None, note=f"SfB user context for {who}")
    old_nbf = T0_S - 3 * 86400
    actor_old = mint_rs256(sfb_actor(old_nbf, old_nbf + 86400), ks)
    outer_old = mint_unsigned(sfb_outer(ALICE, actor_old, old_nbf, old_nbf + 8 * 3600))
    actor_t_signed = mint_rs256(sfb_actor(nbf + 60, nbf + 60 + 86400), ks)
    actor_bad = tamper(actor_t_signed, exp=str(nbf + 60 + 30 * 86400))
    outer_bad = mint_unsigned(sfb_outer(BOB, actor_bad, nbf + 60, nbf + 60 + 8 * 3600))

    # --- a. metadata documents (+ h. gzip) --------------------------------------------------------
    c = w.conn(w.sfb, 52301, w.exchange)
    t = c.open(T0 + 100 * MS)
    req = Request(
        "GET",
        "/autodiscover/metadata/json/1",
        [
            ("Host", "mail.contoso.com"),
            ("Accept-Encoding", "gzip, deflate"),
            ("Connection", "Keep-Alive"),
        ],
    )
    doc = json_bytes(exchange_metadata(kx))
    resp = Response(
        200,
        "OK",
        w.ex_headers(
            t + 5 * MS,
            "meta-ex",
            "text/json; charset=utf-8",
            extra=[("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")],
        ),
        gzip_bytes(doc),
    )
    t, e_meta_ex = cap.exchange(
        c, t + 200 * US, req, resp, "SfB fetches Exchange's auth metadata (gzip, text/json)"
    )
    t = c.close(C, t + 40 * MS)
    cap.truth_extra["metadata_documents"] = [
        {
            "url": "http://mail.contoso.com/autodiscover/metadata/json/1",
            "issuer": f"{EXCHANGE_ID}@{REALM}",
            "x5t": [kx.x5t],
            "cert_file": kx.cert_file,
            "content_encoding": "gzip",
        },
        {
            "url": "http://sfbpool01.contoso.com/metadata/json/1",
            "issuer": sfb_iss,
            "x5t": [ks.x5t],
            "cert_file": ks.cert_file,
            "content_encoding": None,
        },
    ]

    # Exchange fetches SfB's metadata: first with the typo from the field notes (h.), then right.
    c = w.conn(w.exchange, 27811, w.sfb)
    t = c.open(T0 + 500 * MS)
    sfb_head = [("Server", "Microsoft-IIS/10.0"), ("X-MS-Server-Fqdn", "sfbfe01.contoso.com")]
    req = Request(
        "GET",
        "/metadata/jason/1",
        [("Host", "sfbpool01.contoso.com"), ("Connection", "Keep-Alive")],
    )
    not_found = (
        b'<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" '
        b'"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">\r\n<html xmlns="http://www.w3.org/'
        b'1999/xhtml">\r\n<head>\r\n<meta http-equiv="Content-Type" content="text/html; '
        b'charset=iso-8859-1"/>\r\n<title>404 - File or directory not found.</title>\r\n</head>'
        b'\r\n<body>\r\n<div id="header"><h1>Server Error</h1></div>\r\n<div id="content">'
        b"\r\n <h2>404 - File or directory not found.</h2>\r\n <h3>The resource you are looking "
        b"for might have been removed, had its name changed, or is temporarily unavailable.</h3>"
        b"\r\n</div>\r\n</body>\r\n</html>\r\n"
    )
    resp = Response(
        404,
        "Not Found",
        [
            ("Content-Type", "text/html"),
            *sfb_head,
            ("X-Powered-By", "ASP.NET"),
            ("Date", http_date(t + 3 * MS)),
            ("Content-Length", "{len}"),
        ],
        not_found,
    )
    t, e_typo = cap.exchange(
        c, t + 200 * US, req, resp, "metadata URL typo (/metadata/jason/1) -> 404"
    )
    req = Request(
        "GET", "/metadata/json/1", [("Host", "sfbpool01.contoso.com"), ("Connection", "Keep-Alive")]
    )
    resp = Response(
        200,
        "OK",
        [
            ("Cache-Control", "no-cache"),
            ("Content-Type", "application/json; charset=utf-8"),
            *sfb_head,
            ("X-Content-Type-Options", "nosniff"),
            ("X-Powered-By", "ASP.NET"),
            ("Date", http_date(t + 700 * MS)),
            ("Content-Length", "{len}"),
        ],
        json_bytes(sfb_metadata(ks)),
    )
    t, e_meta_sfb = cap.exchange(
        c, t + 700 * MS, req, resp, "Exchange fetches SfB's auth metadata (corrected URL)"
    )
    t = c.close(C, t + 30 * MS)
    cap.handshake("metadata", "failure", [e_typo], "metadata fetch with the /jason/ typo: 404")
    cap.truth_extra["failed_metadata_fetches"] = {
        "events": [e_typo],
        "url": "http://sfbpool01.contoso.com/metadata/jason/1",
        "status": 404,
    }
    cap.handshake("metadata", "success", [e_meta_ex], "Exchange metadata (gzip)")
    cap.handshake("metadata", "success", [e_meta_sfb], "SfB metadata")

    # --- b./c. realm discovery, then S2S calls for two users --------------------------------------
    c = w.conn(w.sfb, 52302, w.exchange)
    t = c.open(T0 + 2 * SEC)
    body = get_folder(ALICE["upn"])
    req = w.ews_request(body, authorization("Bearer", ""), ALICE["upn"], "probe")
    resp = Response(
        401,
        "Unauthorized",
        w.ex_headers(t, "probe", None, extra=[challenge("Bearer", bearer_params), neg, ntlm]),
    )
    t, e_probe = cap.exchange(c, t + 300 * US, req, resp, "S2S realm discovery (empty Bearer)")
    calls = [
        (
            outer_alice,
            ALICE,
            get_folder(ALICE["upn"]),
            get_folder_response("alice"),
            "alice GetFolder",
        ),
        (
            outer_alice,
            ALICE,
            create_item(ALICE["upn"], "Bob Martinez"),
            create_item_response("alice"),
            "alice CreateItem (conversation history)",
        ),
        (outer_bob, BOB, get_folder(BOB["upn"]), get_folder_response("bob"), "bob GetFolder"),
    ]
    s2s_events: list[int | None] = [e_probe]
    for i, (token, user, body, answer, note) in enumerate(calls):
        label = f"s2s{i}"
        cookie = None if i == 0 else f"ClientId={prng('cid', 16).hex().upper()}; " + backend_cookie
        req = w.ews_request(body, authorization("Bearer", token), user["upn"], label, cookie)
        set_cookie = (
            []
            if i
            else [
                (
                    "Set-Cookie",
                    f"ClientId={prng('cid', 16).hex().upper()}; "
                    "expires=Tue, 02-Mar-2027 09:00:02 GMT; path=/; HttpOnly",
                ),
                (
                    "Set-Cookie",
                    backend_cookie + "; expires=Wed, 01-Apr-2026 09:00:02 GMT; path=/EWS; HttpOnly",
                ),
            ]
        )
        resp = Response(
            200,
            "OK",
            w.ex_headers(
                t,
                label,
                cookie=False,
                extra=[("client-request-id", det_guid("crid/" + label)), *set_cookie],
            ),
            answer,
        )
        t, ev = cap.exchange(
            c, t + 600 * MS, req, resp, f"S2S outer+actor token: {note}", think=22 * MS
        )
        s2s_events.append(ev)
    t = c.close(C, t + 2 * SEC)
    cap.handshake(
        "oauth-s2s", "success", s2s_events, "realm discovery then SfB -> Exchange app+user tokens"
    )

    # --- d. expired token, NTLM fallback on the same connection -----------------------------------
    c = w.conn(w.sfb, 52303, w.exchange)
    t = c.open(T0 + 6 * SEC)
    body = get_folder(ALICE["upn"])
    cap.token(outer_old, "outer", None, note="expired SfB user context (alice)")
    cap.token(actor_old, "actor", ks, note="expired SfB actor")
    req = w.ews_request(body, authorization("Bearer", outer_old), ALICE["upn"], "expired")
    diag = '2000002;reason="The token has expired.";error_category="token_expired"'
    resp = Response(
        401,
        "Unauthorized",
        w.ex_headers(
            t,
            "expired",
            None,
            extra=[
                ("x-ms-diagnostics", diag),
                challenge("Bearer", [*bearer_params, ("error", "invalid_token", True)]),
                neg,
                ntlm,
            ],
        ),
    )
    t, e_exp = cap.exchange(c, t + 300 * US, req, resp, "expired outer+actor token rejected")
    cap.handshake("oauth-s2s", "failure", [e_exp], "token_expired (x-ms-diagnostics 2000002)")
    type1 = ntlm_negotiate()
    type2 = ntlm_challenge(prng("ntlm-server-challenge", 8), ntlm_target_info(T0_S + 6))
    auth = NtlmAuth(
        "CONTOSO",
        "svc-sfb",
        "Sfb-Service-2026!",
        "SFBPOOL01",
        "HTTP/mail.contoso.com",
        prng("ntlm-client-challenge", 8),
        prng("ntlm-session-key", 16),
    )
    type3 = ntlm_authenticate(auth, type1, type2)
    ntlm_extra = {"ntlm_user": "svc-sfb", "ntlm_domain": "CONTOSO", "workstation": "SFBPOOL01"}
    req = w.ews_request(
        body,
        authorization("NTLM", b64(type1), mechanism="ntlm", extra={"ntlm_message": 1}),
        ALICE["upn"],
        "ntlm1",
    )
    resp = Response(
        401,
        "Unauthorized",
        w.ex_headers(t, "ntlm1", None, extra=[challenge("NTLM", token68=b64(type2))]),
    )
    t, e_n1 = cap.exchange(c, t + 2 * MS, req, resp, "NTLM fallback: type 1 -> type 2")
    req = w.ews_request(
        body,
        authorization(
            "NTLM", b64(type3), mechanism="ntlm", extra={"ntlm_message": 3, **ntlm_extra}
        ),
        ALICE["upn"],
        "ntlm3",
    )
    resp = Response(
        200,
        "OK",
        w.ex_headers(
            t,
            "ntlm3",
            extra=[("client-request-id", det_guid("crid/ntlm3")), ("Persistent-Auth", "true")],
        ),
        get_folder_response("alice-ntlm"),
    )
    t, e_n3 = cap.exchange(
        c, t + 2 * MS, req, resp, "NTLM type 3 (CONTOSO\\svc-sfb) -> 200", think=18 * MS
    )
    t = c.close(C, t + SEC)
    cap.handshake("ntlm", "success", [e_n1, e_n3], "NTLMv2 fallback after the expired token")
    cap.truth_extra["ntlm"] = {
        "events": [e_n1, e_n3],
        "domain": "CONTOSO",
        "user": "svc-sfb",
        "workstation": "SFBPOOL01",
        "password": "Sfb-Service-2026! (test value)",
        "server_challenge": type2[24:32].hex(),
        "ntlmv2": True,
        "mic": True,
        "target_spn": "HTTP/mail.contoso.com",
    }

    # --- e. tampered actor token ------------------------------------------------------------------
    c = w.conn(w.sfb, 52304, w.exchange)
    t = c.open(T0 + 9 * SEC)
    cap.token(outer_bad, "outer", None, note="user context (bob) wrapping a tampered actor")
    cap.token(
        actor_bad, "actor", ks, tampered=True, note="actor exp extended by 30 days after signing"
    )
    req = w.ews_request(
        get_folder(BOB["upn"]), authorization("Bearer", outer_bad), BOB["upn"], "tampered"
    )
    diag = '2000000;reason="The token has an invalid signature.";error_category="invalid_signature"'
    resp = Response(
        401,
        "Unauthorized",
        w.ex_headers(
            t,
            "tampered",
            None,
            extra=[
                ("x-ms-diagnostics", diag),
                challenge("Bearer", [*bearer_params, ("error", "invalid_token", True)]),
                neg,
                ntlm,
            ],
        ),
    )
    t, e_bad = cap.exchange(c, t + 300 * US, req, resp, "tampered actor token rejected")
    t = c.close(C, t + 300 * MS)
    cap.handshake("oauth-s2s", "failure", [e_bad], "invalid_signature (x-ms-diagnostics 2000000)")

    # --- f. Basic and Kerberos clients ------------------------------------------------------------
    c = w.conn(w.client, 49731, w.exchange)
    t = c.open(T0 + 12 * SEC)
    req = Request(
        "GET",
        "/owa/healthcheck.htm",
        [
            ("Host", "mail.contoso.com"),
            ("User-Agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"),
            ("Connection", "Keep-Alive"),
        ],
    )
    resp = Response(
        200,
        "OK",
        [
            ("Content-Type", "text/html"),
            ("Server", "Microsoft-IIS/10.0"),
            ("X-FEServer", "MAIL"),
            ("Date", http_date(t)),
            ("Content-Length", "{len}"),
        ],
        b"200 OK<br/>MAIL.contoso.com",
    )
    t, none_event = cap.exchange(c, t + 300 * US, req, resp, "health check, no auth (no event)")
    assert none_event is None
    basic_password = "Spring2026!Alice"
    req = w.ews_request(
        find_item_inbox(),
        basic("CONTOSO\\alice", basic_password),
        "alice.johnson@contoso.com",
        "basic",
        path="/ews/exchange.asmx",
    )
    resp = Response(
        200,
        "OK",
        w.ex_headers(
            t, "basic", cookie=True, extra=[("client-request-id", det_guid("crid/basic"))]
        ),
        find_item_response(),
    )
    t, e_basic = cap.exchange(c, t + 400 * MS, req, resp, "Basic CONTOSO\\alice", think=30 * MS)
    t = c.close(C, t + 500 * MS)
    cap.handshake("basic", "success", [e_basic], "Basic over plain HTTP")

    c = w.conn(w.client, 49732, w.exchange)
    t = c.open(T0 + 13 * SEC)
    ap_req = kerberos_ap_req("CONTOSO.COM", "HTTP", "mail.contoso.com", "krb-alice")
    neg_init = b64(spnego_init_krb5(ap_req))
    neg_resp = b64(spnego_resp_krb5("krb-alice-aprep"))
    req = w.ews_request(
        oof_request(ALICE["upn"]),
        authorization(
            "Negotiate",
            neg_init,
            mechanism="kerberos",
            extra={"krb_realm": "CONTOSO.COM", "krb_sname": "HTTP/mail.contoso.com"},
        ),
        ALICE["upn"],
        "krb",
        ua=OUTLOOK_UA,
    )
    resp = Response(
        200,
        "OK",
        w.ex_headers(
            t,
            "krb",
            extra=[
                challenge("Negotiate", token68=neg_resp),
                ("Persistent-Auth", "true"),
                ("client-request-id", det_guid("crid/krb")),
            ],
        ),
        oof_response(),
    )
    t, e_krb = cap.exchange(
        c, t + 300 * US, req, resp, "Negotiate/Kerberos (SPNEGO AP-REQ)", think=25 * MS
    )
    t = c.close(C, t + 400 * MS)
    cap.handshake("kerberos", "success", [e_krb], "SPNEGO Kerberos with mutual auth NegTokenResp")
    cap.truth_extra["kerberos"] = {
        "events": [e_krb],
        "realm": "CONTOSO.COM",
        "sname": "HTTP/mail.contoso.com",
        "etype": 18,
    }

    # --- g. ACS token endpoint --------------------------------------------------------------------
    c = w.conn(w.exchange, 27812, w.acs)
    t = c.open(T0 + 15 * SEC, rtt=9 * MS)
    acs_aud = f"{ACS_ID}/accounts.accesscontrol.windows.net@{TENANT}"
    exo_resource = f"{EXCHANGE_ID}/outlook.office365.com@{TENANT}"
    a_nbf = T0_S + 15
    assertion = cap.token(
        mint_rs256(
            {
                "aud": acs_aud,
                "iss": f"{EXCHANGE_ID}@{TENANT}",
                "nbf": str(a_nbf),
                "exp": str(a_nbf + 600),
            },
            kx,
        ),
        "assertion",
        kx,
        note="Exchange's self-signed assertion to ACS",
    )
    acs_iss = f"{ACS_ID}@{TENANT}"
    oid = det_guid("exchange-sp-oid")
    access = cap.token(
        mint_rs256(
            {
                "aud": exo_resource,
                "iss": acs_iss,
                "iat": a_nbf,
                "nbf": a_nbf,
                "exp": a_nbf + 86400,
                "identityprovider": acs_iss,
                "nameid": f"{EXCHANGE_ID}@{TENANT}",
                "oid": oid,
                "sub": oid,
                "trustedfordelegation": "true",
            },
            ka,
            kid=True,
        ),
        "access_token",
        ka,
        in_response=True,
        note="ACS-issued actor token for Exchange Online",
    )

    def acs_request(assertion: str, label: str) -> Request:
        return Request(
            "POST",
            f"/{TENANT}/tokens/OAuth/2",
            [
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("client-request-id", det_guid("crid/" + label)),
                ("return-client-request-id", "true"),
                ("Host", "accounts.accesscontrol.windows.net"),
                ("Content-Length", "{len}"),
                ("Connection", "Keep-Alive"),
            ],
            form=[
                ("grant_type", "http://oauth.net/grant_type/jwt/1.0/bearer"),
                ("assertion", assertion),
                ("resource", exo_resource),
            ],
        )

    def acs_headers(t: int, label: str) -> list[HeaderItem]:
        return [
            ("Cache-Control", "no-cache, no-store"),
            ("Pragma", "no-cache"),
            ("Content-Type", "application/json; charset=utf-8"),
            ("Expires", "-1"),
            ("Server", "Microsoft-IIS/10.0"),
            ("x-ms-request-id", det_guid("acs/" + label)),
            ("client-request-id", det_guid("crid/" + label)),
            ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
            ("X-Content-Type-Options", "nosniff"),
            ("Date", http_date(t)),
            ("Content-Length", "{len}"),
        ]

    ok = {
        "token_type": "Bearer",
        "access_token": access,
        "expires_in": "86399",
        "not_before": str(a_nbf),
        "expires_on": str(a_nbf + 86400),
        "resource": exo_resource,
    }
    resp = Response(200, "OK", acs_headers(t, "acs1"), json_bytes(ok), json_body=ok)
    t, e_acs = cap.exchange(
        c,
        t + 200 * US,
        acs_request(assertion, "acs1"),
        resp,
        "ACS JWT-bearer grant -> actor token for EXO",
        think=60 * MS,
    )
    bad_assertion = cap.token(
        mint_rs256(
            {
                "aud": acs_aud,
                "iss": f"{TYPO_EXCHANGE_ID}@{TENANT}",
                "nbf": str(a_nbf + 2),
                "exp": str(a_nbf + 602),
            },
            kx,
        ),
        "assertion",
        kx,
        note="issuer with the malformed principal id from the field notes",
    )
    err = {
        "error": "invalid_grant",
        "error_description": f"The issuer '{TYPO_EXCHANGE_ID}@{TENANT}' of the assertion is not "
        f"a known service principal.\r\nTrace ID: {det_guid('trace')}\r\nCorrelation ID: "
        f"{det_guid('corr')}\r\nTimestamp: {iso_z(a_nbf + 2).replace('T', ' ')}",
    }
    resp = Response(400, "Bad Request", acs_headers(t, "acs2"), json_bytes(err), json_body=err)
    t, e_acs_bad = cap.exchange(
        c,
        t + 2 * SEC,
        acs_request(bad_assertion, "acs2"),
        resp,
        "ACS rejects an assertion whose issuer id is malformed",
        think=55 * MS,
    )
    t = c.close(S, t + 5 * SEC)
    cap.handshake("oauth-token-endpoint", "success", [e_acs], "jwt-bearer grant at ACS")
    cap.handshake("oauth-token-endpoint", "failure", [e_acs_bad], "invalid_grant")
    cap.truth_extra["malformed_principals"] = {
        "events": [e_acs_bad],
        "value": f"{TYPO_EXCHANGE_ID}@{TENANT}",
        "where": "iss claim of the assertion JWT",
        "likely_meant": EXCHANGE_ID,
    }
    return cap


# ---------------------------------------------------------------------------------------------
# Capture 2: messy.pcapng
# ---------------------------------------------------------------------------------------------

T_MESSY = T0 + 3600 * SEC  # 10:00:00Z


def entra_token(key: TestKey, label: str, aud: str, iat: int, lifetime: int, **claims: Any) -> str:
    oid = det_guid("oid/" + label)
    payload = {
        "aud": aud,
        "iss": f"https://sts.windows.net/{TENANT}/",
        "iat": iat,
        "nbf": iat,
        "exp": iat + lifetime,
        "aio": b64url(prng("aio/" + label, 48)),
        "appid": det_guid("app/" + label),
        "oid": oid,
        "sub": b64url(prng("sub/" + label, 32)),
        "tid": TENANT,
        "uti": b64url(prng("uti/" + label, 16)),
        "ver": "1.0",
        **claims,
    }
    return mint_rs256(payload, key, kid=True)


def tls_client_hello(sni: str) -> bytes:
    """A TLS 1.3-capable ClientHello record (bytes only; nothing follows it)."""
    suites = bytes.fromhex("130213031301c02cc030c02bc02fcca9cca8c024c028c023c027009f009e")
    name = sni.encode()
    sni_ext = struct.pack(">HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    alpn = b"\x02h2\x08http/1.1"
    alpn_ext = struct.pack(">HHH", 16, len(alpn) + 2, len(alpn)) + alpn
    versions = struct.pack(">HHB", 43, 5, 4) + b"\x03\x04\x03\x03"
    groups = struct.pack(">HHH", 10, 8, 6) + b"\x00\x1d\x00\x17\x00\x18"
    sigalgs_list = bytes.fromhex("0804040104030805050108060601")
    sigalgs = struct.pack(">HHH", 13, len(sigalgs_list) + 2, len(sigalgs_list)) + sigalgs_list
    share = struct.pack(">HH", 0x1D, 32) + prng("x25519", 32)
    key_share = struct.pack(">HHH", 51, len(share) + 2, len(share)) + share
    exts = sni_ext + alpn_ext + versions + groups + sigalgs + key_share
    body = (
        b"\x03\x03"
        + prng("client-random", 32)
        + b"\x20"
        + prng("session-id", 32)
        + struct.pack(">H", len(suites))
        + suites
        + b"\x01\x00"
        + struct.pack(">H", len(exts))
        + exts
    )
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack(">H", len(hs)) + hs


def cuts_to_sizes(cuts: Sequence[int]) -> list[int]:
    """Segment lengths that end exactly at the given byte offsets."""
    out, prev = [], 0
    for cut in cuts:
        out.append(cut - prev)
        prev = cut
    return out


def build_messy(keys: dict[str, TestKey]) -> Capture:
    cap = Capture(
        "messy.pcapng",
        "Two-interface pcapng (Ethernet with 802.1Q/QinQ at microsecond resolution, Linux SLL2 "
        "at nanosecond resolution) full of TCP and HTTP awkwardness: odd segment splits, "
        "out-of-order and retransmitted segments, pipelining, chunked token response, obsolete "
        "line folding, odd header case, mid-stream start, sequence wrap, IPv6, proxy auth, "
        "query-string token, TLS noise, RST and FIN closes.",
    )
    ka = keys["acs"]
    app_aud = "api://contoso-inventory"
    iat = T0_S + 3600 - 600
    tok1 = cap.token(
        entra_token(ka, "tok1", app_aud, iat, 3900, upn="dave@contoso.com", scp="Items.Read"),
        "bearer",
        ka,
        note="M1 r1",
    )
    tok2 = cap.token(
        entra_token(
            ka, "tok2", app_aud, iat + 5, 3900, upn="erin@contoso.com", scp="Items.Read Items.Write"
        ),
        "bearer",
        ka,
        note="M1 r2/r3",
    )
    tok3 = cap.token(
        entra_token(
            ka, "tok3", app_aud, iat - 7200, 3600, upn="frank@contoso.com", scp="Items.Read"
        ),
        "bearer",
        ka,
        note="M1 r5, expired",
    )
    tok4 = cap.token(
        entra_token(ka, "tok4", "api://contoso-orders", iat + 30, 3900, roles=["Orders.Write"]),
        "bearer",
        ka,
        note="M3 seq wrap",
    )
    tok5 = cap.token(
        entra_token(
            ka,
            "tok5",
            "https://graph.contoso.local",
            iat + 40,
            3900,
            upn="gina@contoso.com",
            scp="User.Read",
        ),
        "bearer",
        ka,
        note="M7 query string",
    )

    # interface 0: Ethernet, microseconds ----------------------------------------------------------
    v100 = vlan(100)
    cl1 = Host("192.168.100.21", "02:00:00:64:00:15", ttl=64)
    app = Host("192.168.100.80", "02:00:00:64:00:50", ttl=64)
    app_hdrs = [("Content-Type", "application/json; charset=utf-8"), ("Server", "Kestrel")]

    def app_resp(
        status: int, reason: str, t: int, body: bytes, extra: Sequence[HeaderItem] = ()
    ) -> Response:
        return Response(
            status,
            reason,
            [("Content-Length", "{len}"), *app_hdrs, ("Date", http_date(t)), *extra],
            body,
        )

    # M1: VLAN 100, port 8080, keep-alive, odd splits, out of order, dup, odd case, pipelining.
    c = Conn(cap, 0, v100, cl1, 51000, app, 8080, 0x1A2B3C4D, 0x5E6F7081)
    t = c.open(T_MESSY + 10 * MS, rtt=150 * US)
    ua = "python-requests/2.32.3"
    r1 = Request(
        "GET",
        "/api/v1/profile",
        [
            ("Host", "app.contoso.local:8080"),
            authorization("Bearer", tok1),
            ("Accept", "application/json"),
            ("User-Agent", ua),
            ("Connection", "keep-alive"),
        ],
    )
    raw = r1.encode()
    in_name = raw.index(b"Authorization") + 5
    in_value = raw.index(tok1.encode()) + 300
    cr_lf = raw.index(b"application/json\r\n") + len(b"application/json\r")
    sizes = cuts_to_sizes([in_name, in_value, cr_lf, len(raw)])
    t, e1 = cap.exchange(
        c,
        t + 200 * US,
        r1,
        app_resp(200, "OK", t, b'{"name":"Dave","id":7}'),
        "head split inside 'Authorization', inside the token, between CR and LF; "
        "segments 3 and 2 swapped, segment 3 duplicated",
        req_sizes=sizes,
        req_plan=[0, 2, 1, 2, 3],
    )
    r2 = Request(
        "GET",
        "/api/v1/items",
        [
            ("Host", "app.contoso.local:8080"),
            authorization("Bearer", tok2, header="aUTHORIZATION"),
            ("User-Agent", ua),
            ("Accept", "*/*"),
        ],
        query=[("page", "2"), ("size", "50")],
    )
    t, e2 = cap.exchange(
        c,
        t + 80 * MS,
        r2,
        app_resp(200, "OK", t, b'{"items":[],"page":2}'),
        "header name in odd case: aUTHORIZATION",
    )
    # A pipelined pair in one segment: short opaque (reference) tokens so both fit in one MSS.
    ref_ok = cap.token(b64url(prng("ref-token-ok", 32)), "bearer", None, note="M1 r3 opaque")
    ref_old = cap.token(b64url(prng("ref-token-old", 32)), "bearer", None, note="M1 r4 opaque")
    r3 = Request(
        "GET",
        "/api/v1/items/17",
        [("Host", "app.contoso.local:8080"), authorization("Bearer", ref_ok), ("User-Agent", ua)],
    )
    r4 = Request(
        "GET",
        "/api/v1/items/18",
        [("Host", "app.contoso.local:8080"), authorization("Bearer", ref_old), ("User-Agent", ua)],
    )

    def expired_401(t: int, when: str) -> Response:
        return Response(
            401,
            "Unauthorized",
            [
                ("Content-Length", "0"),
                ("Server", "Kestrel"),
                ("Date", http_date(t)),
                challenge(
                    "Bearer",
                    [
                        ("realm", "app.contoso.local", True),
                        ("error", "invalid_token", True),
                        ("error_description", f"The token expired at '{when}'", True),
                    ],
                ),
            ],
        )

    resp3 = app_resp(200, "OK", t, b'{"id":17,"name":"widget"}')
    resp4 = expired_401(t + 90 * MS, "03/02/2026 09:12:00")
    pair = r3.encode() + r4.encode()
    assert len(pair) <= 1460
    req_ts, last = c.send(C, t + 90 * MS, pair)
    resp_ts, last = c.send(S, last + 3 * MS, resp3.encode() + resp4.encode())
    e3 = cap.record(c, r3, resp3, req_ts, resp_ts, "pipelined pair, first (both in one segment)")
    e4 = cap.record(c, r4, resp4, req_ts, resp_ts, "pipelined pair, second: expired -> 401")
    r5 = Request(
        "GET",
        "/api/v1/items/19",
        [("Host", "app.contoso.local:8080"), authorization("Bearer", tok3), ("User-Agent", ua)],
    )
    t, e5 = cap.exchange(
        c, last + 40 * MS, r5, expired_401(last, "03/02/2026 08:50:00"), "expired JWT -> 401"
    )
    r6 = Request("GET", "/health", [("Host", "app.contoso.local:8080"), ("User-Agent", ua)])
    t, none_event = cap.exchange(c, t + 50 * MS, r6, app_resp(200, "OK", t, b'{"ok":true}'))
    assert none_event is None
    t = c.close(C, t + 20 * MS)
    cap.handshake("bearer", "success", [e1], "split head")
    cap.handshake("bearer", "success", [e2, e3], "odd-case header, pipelined")
    cap.handshake("bearer", "failure", [e4], "expired reference token")
    cap.handshake("bearer", "failure", [e5], "expired JWT")

    # M2: QinQ 200/300, proxy 3128: 407, Proxy-Authorization Basic, overlap retransmit, RST.
    cl2 = Host("10.20.30.41", "02:00:00:c8:00:29", ttl=128)
    proxy = Host("10.20.0.5", "02:00:00:c8:00:05", ttl=64)
    c = Conn(cap, 0, qinq(200, 300), cl2, 53210, proxy, 3128, 0x00C0FFEE, 0x0BADF00D)
    t = c.open(T_MESSY + 400 * MS, rtt=220 * US)
    firefox = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"

    def proxied(path: str, auth: AuthHeader | None) -> Request:
        hdrs: list[HeaderItem] = [
            ("Host", "www.example.org"),
            ("User-Agent", firefox),
            ("Accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
        ]
        if auth:
            hdrs.append(auth)
        hdrs.append(("Proxy-Connection", "keep-alive"))
        return Request("GET", "http://www.example.org" + path, hdrs)

    denied = b"<html><body><h1>ERROR: Cache Access Denied</h1></body></html>\n"
    resp = Response(
        407,
        "Proxy Authentication Required",
        [
            ("Server", "squid/5.7"),
            ("Mime-Version", "1.0"),
            ("Date", http_date(t)),
            ("Content-Type", "text/html;charset=utf-8"),
            ("Content-Length", "{len}"),
            ("X-Squid-Error", "ERR_CACHE_ACCESS_DENIED 0"),
            ("Vary", "Accept-Language"),
            challenge("Basic", [("realm", "Contoso Proxy", True)], header="Proxy-Authenticate"),
            ("X-Cache", "MISS from proxy01"),
            ("Via", "1.1 proxy01 (squid/5.7)"),
            ("Connection", "keep-alive"),
        ],
        denied,
    )
    t, p1 = cap.exchange(c, t + 100 * US, proxied("/", None), resp, "proxy asks for credentials")
    page = (
        b"<!doctype html>\n<html><head><title>Example Domain</title></head><body>\n"
        + b"".join(
            b"<p>Paragraph %04d of the example page, padding for segments.</p>\n" % i
            for i in range(48)
        )
        + b"</body></html>\n"
    )
    resp = Response(
        200,
        "OK",
        [
            ("Content-Type", "text/html; charset=UTF-8"),
            ("Date", http_date(t + 30 * MS)),
            ("Content-Length", "{len}"),
            ("X-Cache", "MISS from proxy01"),
            ("Via", "1.1 proxy01 (squid/5.7)"),
            ("Connection", "keep-alive"),
        ],
        page,
    )
    t, p2 = cap.exchange(
        c,
        t + 40 * MS,
        proxied("/", basic("bob", "Tr0ub4dor&3", header="Proxy-Authorization")),
        resp,
        "Proxy-Authorization Basic; response has an overlapping retransmission",
        resp_plan=[0, 1, (1000, 2460), 2],
        think=30 * MS,
    )
    req = proxied("/favicon.ico", basic("bob", "Tr0ub4dor&3", header="Proxy-Authorization"))
    req_ts, last = c.send(C, t + 20 * MS, req.encode())
    p3 = cap.record(c, req, None, req_ts, None, "no response: the client resets the connection")
    c.reset(C, last + 3 * MS)
    cap.handshake("basic", "success", [p1, p2], "407 then Proxy-Authorization Basic")
    cap.handshake("basic", "incomplete", [p3], "request without response (RST)")

    # M3: VLAN 100, sequence numbers wrap past 2**32 in both directions.
    cl3 = Host("192.168.100.22", "02:00:00:64:00:16", ttl=64)
    api = Host("192.168.100.81", "02:00:00:64:00:51", ttl=64)
    c = Conn(cap, 0, v100, cl3, 50000, api, 80, 2**32 - 1200, 2**32 - 150)
    t = c.open(T_MESSY + 900 * MS, rtt=120 * US)
    order = json_bytes(
        {"orderId": 90210, "lines": [{"sku": f"SKU-{i:05d}", "qty": i % 7 + 1} for i in range(60)]}
    )
    req = Request(
        "POST",
        "/orders",
        [
            ("Host", "api.contoso.local"),
            authorization("Bearer", tok4),
            ("Content-Type", "application/json"),
            ("Content-Length", "{len}"),
            ("User-Agent", "okhttp/4.12.0"),
        ],
        order,
    )
    resp = Response(
        201,
        "Created",
        [
            ("Content-Type", "application/json"),
            ("Location", "/orders/90210"),
            ("Date", http_date(t)),
            ("Content-Length", "{len}"),
        ],
        b'{"orderId":90210,"status":"accepted"}',
    )
    assert len(req.encode()) > 1200
    t, e_wrap = cap.exchange(
        c, t + 100 * US, req, resp, "client and server sequence numbers wrap past 2**32"
    )
    t = c.close(C, t + 15 * MS)
    cap.handshake("bearer", "success", [e_wrap], "sequence wrap")

    # M4: untagged, TLS ClientHello to 443 and random bytes back: must yield nothing.
    cl4 = Host("192.168.100.23", "02:00:00:64:00:17", ttl=64)
    web = Host("93.184.215.14", "02:00:00:64:00:01", ttl=55)
    c = Conn(cap, 0, ether, cl4, 50110, web, 443, 0x77001122, 0x33445566)
    t = c.open(T_MESSY + 1300 * MS, rtt=11 * MS)
    _, last = c.send(C, t + 100 * US, tls_client_hello("www.example.com"))
    _, last = c.send(S, last + 11 * MS, prng("tls-noise", 2100))
    c.reset(C, last + 2 * MS)

    # interface 1: Linux SLL2, nanoseconds ---------------------------------------------------------
    me = Host("10.9.0.15", "02:00:00:09:00:0f", ttl=64)
    jitter = 123  # ns, so the interface's nanosecond resolution shows

    # M5: capture starts mid-stream (no SYN): tail of an earlier response, then a full request.
    lync = Host("10.9.0.80", "02:00:00:09:00:50", ttl=128)
    c = Conn(cap, 1, sll2(me), me, 41022, lync, 80, 0x4000_0000, 0x6000_0000)
    t = T_MESSY + 200 * MS + jitter
    c.send(S, t, b'ayName":"Bob Martinez","uri":"sip:bob@contoso.com"}]}}', ack=True)
    cwt = "cwt=" + b64(prng("cwt", 180))
    req = Request(
        "GET",
        "/ucwa/oauth/v1/applications/101459302145/people/contacts",
        [
            ("Host", "lyncweb.contoso.com"),
            ("Accept", "application/json"),
            authorization("Bearer", cwt),
            ("X-Ms-Origin", "https://lyncweb.contoso.com"),
            ("User-Agent", "UCWA Samples"),
        ],
    )
    resp = Response(
        200,
        "OK",
        [
            ("Cache-Control", "no-cache"),
            ("Content-Type", "application/json"),
            ("Server", "Microsoft-IIS/10.0"),
            ("X-MS-Server-Fqdn", "sfbfe01.contoso.com"),
            ("X-Powered-By", "ASP.NET"),
            ("Date", http_date(t)),
            ("Content-Length", "{len}"),
        ],
        b'{"_embedded":{"contact":[]}}',
    )
    t, e_mid = cap.exchange(
        c, t + 40 * MS, req, resp, "capture starts mid-stream; web-ticket (cwt=) bearer"
    )
    t = c.close(C, t + 10 * MS)
    cap.handshake("bearer", "success", [e_mid], "Lync web ticket")

    # M6: IPv6, Digest with an obs-folded challenge.
    me6 = Host("2001:db8:10::21", me.mac, ttl=64)
    files6 = Host("2001:db8:10::80", "02:00:00:09:00:80", ttl=64)
    c = Conn(cap, 1, sll2(me6), me6, 41100, files6, 80, 0x0A0B0C0D, 0x01020304)
    t = c.open(T_MESSY + 600 * MS + jitter, rtt=95 * US)
    realm, nonce = "files@contoso.local", b64url(prng("nonce", 24))
    opaque = prng("opaque", 16).hex()
    uri = "/dav/q1-report.docx"
    folded = challenge(
        "Digest",
        [
            ("realm", realm, True),
            ("nonce", nonce, True),
            ("algorithm", "MD5", False),
            ("qop", "auth", True),
            ("opaque", opaque, True),
        ],
        fold=",\r\n\t",
    )
    dav_ua = "Microsoft-WebDAV-MiniRedir/10.0.19045"

    def dav(auth: AuthHeader | None) -> Request:
        hdrs: list[HeaderItem] = [("User-Agent", dav_ua), ("Host", "files.contoso.local")]
        if auth:
            hdrs.append(auth)
        return Request("GET", uri, [*hdrs, ("Connection", "Keep-Alive")])

    resp = Response(
        401,
        "Unauthorized",
        [
            ("Date", http_date(t)),
            ("Server", "Apache/2.4.58 (Debian)"),
            folded,
            ("Content-Length", "{len}"),
            ("Content-Type", "text/html; charset=iso-8859-1"),
        ],
        b"<html><body>401 Unauthorized</body></html>\n",
    )
    t, d1 = cap.exchange(c, t + 100 * US, dav(None), resp, "Digest challenge with obs-fold")
    cnonce = prng("cnonce", 8).hex()
    answer = digest_response(
        "carol", realm, "carol-digest-pw", "GET", uri, nonce, "00000001", cnonce
    )
    text = (
        f'username="carol", realm="{realm}", nonce="{nonce}", uri="{uri}", algorithm=MD5, '
        f'response="{answer}", opaque="{opaque}", qop=auth, nc=00000001, cnonce="{cnonce}"'
    )
    resp = Response(
        200,
        "OK",
        [
            ("Date", http_date(t)),
            ("Server", "Apache/2.4.58 (Debian)"),
            ("Content-Length", "{len}"),
            ("Content-Type", "application/octet-stream"),
        ],
        prng("docx", 900),
    )
    t, d2 = cap.exchange(
        c,
        t + 5 * MS,
        dav(authorization("Digest", text, user="carol")),
        resp,
        "Digest response over IPv6",
    )
    t = c.close(C, t + 10 * MS)
    cap.handshake("digest", "success", [d1, d2], "Digest over IPv6")

    # M7: access_token in the query string.
    graph = Host("10.9.0.81", "02:00:00:09:00:51", ttl=64)
    c = Conn(cap, 1, sll2(me), me, 41030, graph, 80, 0x12121212, 0x34343434)
    t = c.open(T_MESSY + 1100 * MS + jitter, rtt=130 * US)
    q = Request(
        "GET",
        "/v1.0/me",
        [("Host", "graph.contoso.local"), ("User-Agent", "curl/8.5.0"), ("Accept", "*/*")],
        query=[("access_token", tok5), ("$select", "displayName")],
        query_cred=Cred("bearer", "access_token", tok5, source="query"),
    )
    resp = Response(
        200,
        "OK",
        [("Content-Type", "application/json"), ("Date", http_date(t)), ("Content-Length", "{len}")],
        b'{"displayName":"Gina"}',
    )
    t, e_q = cap.exchange(c, t + 100 * US, q, resp, "access_token in the query string")
    t = c.close(S, t + 10 * MS)
    cap.handshake("bearer", "success", [e_q], "query-string token")

    # M8: token endpoint with a chunked JSON response split inside chunk-size lines.
    login = Host("20.190.151.68", "02:00:00:09:00:01", ttl=113)
    c = Conn(cap, 1, sll2(me), me, 41040, login, 80, 0x55AA55AA, 0x66BB66BB)
    t = c.open(T_MESSY + 1500 * MS + jitter, rtt=8 * MS)
    client_id = det_guid("native-app")
    scope = "https://graph.microsoft.com/.default offline_access openid"
    code = "0.AXkA" + b64url(prng("auth-code", 300))
    form = [
        ("client_id", client_id),
        ("scope", scope),
        ("code", code),
        ("redirect_uri", "http://localhost:8400/"),
        ("grant_type", "authorization_code"),
        ("client_secret", "Qx8~" + b64url(prng("secret", 27))),
    ]
    req = Request(
        "POST",
        f"/{TENANT}/oauth2/v2.0/token",
        [
            ("Host", "login.microsoftonline.com"),
            ("User-Agent", "python-requests/2.32.3"),
            ("Accept", "application/json"),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Content-Length", "{len}"),
        ],
        form=form,
    )
    t_iss = T0_S + 3600 + 2
    access = cap.token(
        entra_token(
            ka,
            "tok6",
            "https://graph.microsoft.com",
            t_iss,
            4232,
            upn="hank@contoso.com",
            scp="User.Read",
        ),
        "access_token",
        ka,
        in_response=True,
        note="M8 token response",
    )
    id_tok = cap.token(
        entra_token(
            ka, "tok7", client_id, t_iss, 3600, name="Hank", preferred_username="hank@contoso.com"
        ),
        "id_token",
        ka,
        in_response=True,
        note="M8 id_token",
    )
    refresh = "0.AXkA" + b64url(prng("refresh", 600))
    cap.token(refresh, "refresh_token", None, in_response=True, note="opaque refresh token")
    tok_json = {
        "token_type": "Bearer",
        "scope": scope,
        "expires_in": 4232,
        "ext_expires_in": 4232,
        "access_token": access,
        "refresh_token": refresh,
        "id_token": id_tok,
    }
    body = json_bytes(tok_json)
    resp = Response(
        200,
        "OK",
        [
            ("Cache-Control", "no-store, no-cache"),
            ("Pragma", "no-cache"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Type", "application/json; charset=utf-8"),
            ("Expires", "-1"),
            ("x-ms-request-id", det_guid("m8")),
            ("Date", http_date(t)),
        ],
        body,
        chunks=[700, 1300, 900],
        json_body=tok_json,
    )
    raw_resp = resp.encode()
    head_end = raw_resp.index(b"\r\n\r\n") + 4
    lines = [head_end + i for i in resp.chunk_line_offsets()]
    size_line_2 = raw_resp[lines[2] : raw_resp.index(b"\r\n", lines[2])]
    resp_sizes = cuts_to_sizes(
        [
            head_end - 1,  # response head cut between its final CR and LF
            lines[1] + 2,  # inside the second chunk-size line
            lines[2] + len(size_line_2) + 1,  # between CR and LF of the third chunk-size line
        ]
    )
    t, e_tok = cap.exchange(
        c,
        t + 100 * US,
        req,
        resp,
        "authorization_code grant; chunked JSON",
        resp_sizes=resp_sizes,
        think=120 * MS,
    )
    t = c.close(S, t + 30 * MS)
    cap.handshake("oauth-token-endpoint", "success", [e_tok], "authorization_code grant")
    return cap


# ---------------------------------------------------------------------------------------------
# Capture 3: small-basic.pcap
# ---------------------------------------------------------------------------------------------


def build_small_basic() -> Capture:
    cap = Capture("small-basic.pcap", "One Basic exchange over loopback (linktype NULL).")
    lo = Host("127.0.0.1", "00:00:00:00:00:00", ttl=64)
    lo_server = Host("127.0.0.1", "00:00:00:00:00:00", ttl=64)
    c = Conn(cap, 0, null_loopback, lo, 51000, lo_server, 8000, 0x10000000, 0x20000000)
    t = c.open(T0 + 7200 * SEC, rtt=40 * US)
    req = Request(
        "GET",
        "/private",
        [
            ("Host", "localhost:8000"),
            ("User-Agent", "curl/8.5.0"),
            basic("demo", "demo-password"),
            ("Accept", "*/*"),
        ],
    )
    resp = Response(
        200,
        "OK",
        [
            ("Server", "SimpleHTTP/0.6 Python/3.11.7"),
            ("Date", http_date(t)),
            ("Content-Type", "text/plain"),
            ("Content-Length", "{len}"),
        ],
        b"hello, demo\n",
    )
    t, e = cap.exchange(c, t + 50 * US, req, resp, "Basic demo:<13-char password>", think=300 * US)
    c.close(C, t + MS)
    cap.handshake("basic", "success", [e], "Basic over loopback")
    return cap


# ---------------------------------------------------------------------------------------------
# Capture 4: findings.pcap
# ---------------------------------------------------------------------------------------------

T_FIND = T0 + 3 * 3600 * SEC  # 12:00:00Z
T_FIND_S = T_FIND // SEC
SHAREPOINT_ID = "00000003-0000-0ff1-ce00-000000000000"
CAROL = {"sid": "S-1-5-21-3623811015-3361044348-30300820-1123", "upn": "carol.nguyen@contoso.com"}

#: Every rule of analyzer/analysis/findings.py. The truth of findings.pcap and healthy-oauth.pcap
#: lists each one, the rules that must stay silent included.
RULE_IDS = (
    "cleartext-basic",
    "cleartext-bearer",
    "token-expired-use",
    "token-not-yet-valid",
    "token-multiple-clients",
    "unsigned-token",
    "bad-signature",
    "untrusted-issuer",
    "audience-host-mismatch",
    "oauth-fallback",
    "metadata-fetch-failed",
    "malformed-principal",
    "ntlmv1",
    "long-lived-token",
    "token-exp-before-nbf",
    "token-endpoint-error",
    "tls-certificate-expired",
    "tls-certificate-expiring",
    "signing-certificate-expired",
    "signing-certificate-expiring",
    "signing-key-unused",
    "signing-key-unpublished",
)


def finish_findings(cap: Capture, silent: Sequence[int | None] = ()) -> None:
    """Put the finding truth in RULE_IDS order; rules not expected to fire get ``silent``."""
    for rule_id in RULE_IDS:
        if rule_id not in cap.findings:
            cap.expect(rule_id, [], silent, "must stay silent on this capture")
    cap.findings = {rule_id: cap.findings[rule_id] for rule_id in RULE_IDS}


class Lab(ExchangeWorld):
    """Exchange-style header habits, with hosts made on demand: one address pair per scenario."""

    def __init__(self, cap: Capture, label: str) -> None:
        super().__init__(cap)
        self.label = label
        self.hosts: dict[str, Host] = {}

    def host(self, ip: str) -> Host:
        if ip not in self.hosts:
            _, b, c, d = (int(x) for x in ip.split("."))
            self.hosts[ip] = Host(ip, f"00:15:5d:{b:02x}:{c:02x}:{d:02x}")
        return self.hosts[ip]

    def link(self, client_ip: str, cport: int, server_ip: str, sport: int = 80) -> Conn:
        isn = int.from_bytes(prng(f"isn/{self.label}/{cport}", 8), "big")
        client, server = self.host(client_ip), self.host(server_ip)
        return Conn(self.cap, 0, ether, client, cport, server, sport, isn >> 32, isn & 0xFFFFFFFF)


def exchange_bearer(trusted: str, error: bool = False) -> ChallengeHeader:
    """Exchange's Bearer challenge (microsoft-s2s.md 4.1), with error="invalid_token" on a bad
    token."""
    params = [
        ("client_id", EXCHANGE_ID, True),
        ("trusted_issuers", trusted, True),
        ("token_types", "app_asserted_user_v1 service_asserted_app_v1", True),
    ]
    if error:
        params.append(("error", "invalid_token", True))
    return challenge("Bearer", params)


def app_token(key: TestKey, issuer: str, aud_host: str, nbf: int, exp: int) -> str:
    """An app-only S2S token (the signed actor token used alone, microsoft-s2s.md Example C)."""
    payload = {
        "aud": f"{EXCHANGE_ID}/{aud_host}@{REALM}",
        "iss": issuer,
        "nbf": str(nbf),
        "exp": str(exp),
        "nameid": issuer,
    }
    return mint_rs256(payload, key)


def sfb_metadata_fetch(
    cap: Capture, lab: Lab, link: tuple[str, int, str], start: int, key: TestKey
) -> int | None:
    """An Exchange server fetches SfB's auth metadata: GET /metadata/json/1 -> 200.

    ``link`` is (Exchange address, its port, SfB pool address)."""
    c = lab.link(*link)
    t = c.open(start)
    req = Request(
        "GET", "/metadata/json/1", [("Host", "sfbpool01.contoso.com"), ("Connection", "Keep-Alive")]
    )
    resp = Response(
        200,
        "OK",
        [
            ("Cache-Control", "no-cache"),
            ("Content-Type", "application/json; charset=utf-8"),
            ("Server", "Microsoft-IIS/10.0"),
            ("X-MS-Server-Fqdn", "sfbfe01.contoso.com"),
            ("X-Content-Type-Options", "nosniff"),
            ("X-Powered-By", "ASP.NET"),
            ("Date", http_date(t + 4 * MS)),
            ("Content-Length", "{len}"),
        ],
        json_bytes(sfb_metadata(key)),
    )
    t, event = cap.exchange(c, t + 200 * US, req, resp, "Exchange fetches SfB's auth metadata")
    c.close(C, t + 30 * MS)
    cap.handshake("metadata", "success", [event], "SfB metadata")
    return event


def build_findings(keys: dict[str, TestKey]) -> Capture:
    cap = Capture(
        "findings.pcap",
        "One scenario per finding rule, each between its own client and server addresses, plus "
        "look-alike cases that must not fire: token before nbf (2 h, and 60 s inside the clock "
        "skew), one token from two clients, an alg-none token, an issuer the server does not "
        "trust (and one it does), an audience naming another host (and one differing only in "
        "case), NTLMv1 (and NTLMv2), a 7-day token. Plain HTTP as if decrypted.",
    )
    lab = Lab(cap, "findings")
    ks, kx = keys["sfb"], keys["exchange"]
    sfb_iss = f"{SFB_ID}@{REALM}"
    trusted_std = f"{ACS_ID}@*,{sfb_iss}"
    neg, ntlm = challenge("Negotiate"), challenge("NTLM")

    def sec(n: float) -> int:
        return T_FIND + int(n * SEC)

    def ews(
        c: Conn,
        t: int,
        host: str,
        auth: AuthHeader,
        label: str,
        note: str,
        *,
        denied: Sequence[HeaderItem] | None = None,
        user: dict[str, str] = ALICE,
        body: bytes | None = None,
        answer: bytes | None = None,
    ) -> tuple[int, int | None]:
        """One EWS POST to ``host``: 200 with a SOAP answer, or 401 with ``denied`` headers."""
        netbios = host.split(".")[0].upper()
        req = lab.ews_request(body or get_folder(user["upn"]), auth, user["upn"], label, host=host)
        fqdn = host.lower()
        if denied is None:
            crid = ("client-request-id", det_guid("crid/" + label))
            headers = lab.ex_headers(t, label, extra=[crid], fqdn=fqdn, netbios=netbios)
            resp = Response(200, "OK", headers, answer or get_folder_response(label))
            return cap.exchange(c, t + 300 * US, req, resp, note, think=21 * MS)
        headers = lab.ex_headers(t, label, None, extra=list(denied), fqdn=fqdn, netbios=netbios)
        return cap.exchange(c, t + 300 * US, req, Response(401, "Unauthorized", headers), note)

    # 1. metadata: ex01 fetches SfB's document, so the SfB key's x5t resolves in this capture.
    e_meta = sfb_metadata_fetch(cap, lab, ("10.2.2.11", 27901, "10.2.0.20"), sec(0.1), ks)

    # 2. token-not-yet-valid: sfbfe01's clock runs 2 h fast, its app token's nbf is 2 h ahead.
    early = cap.token(
        app_token(ks, sfb_iss, "ex02.contoso.com", T_FIND_S + 2 + 7200, T_FIND_S + 2 + 93600),
        "bearer",
        ks,
        note="app-only SfB token used 2 h before its nbf",
    )
    c = lab.link("10.2.1.21", 50101, "10.2.2.12")
    t = c.open(sec(2))
    denied = [exchange_bearer(trusted_std, error=True), neg, ntlm]
    t, e_early = ews(
        c,
        t,
        "ex02.contoso.com",
        authorization("Bearer", early),
        "nbf",
        "2 h before nbf -> 401",
        denied=denied,
    )
    c.close(C, t + 200 * MS)
    cap.handshake("oauth-s2s", "failure", [e_early], "token not yet valid")

    # 3. NEGATIVE: 60 s before nbf is inside the 5-minute clock skew -> accepted.
    skew = cap.token(
        app_token(ks, sfb_iss, "ex03.contoso.com", T_FIND_S + 4 + 60, T_FIND_S + 4 + 86460),
        "bearer",
        ks,
        note="app-only SfB token used 60 s before its nbf (inside the clock skew)",
    )
    c = lab.link("10.2.1.22", 50102, "10.2.2.13")
    t = c.open(sec(4))
    t, e_skew = ews(
        c, t, "ex03.contoso.com", authorization("Bearer", skew), "skew", "60 s before nbf -> 200"
    )
    c.close(C, t + 200 * MS)
    cap.handshake("oauth-s2s", "success", [e_skew], "nbf 60 s ahead: clock skew tolerated")

    # 4. token-multiple-clients: one token from sfbfe03, then replayed from another address.
    shared = cap.token(
        app_token(ks, sfb_iss, "ex04.contoso.com", T_FIND_S - 300, T_FIND_S - 300 + 86400),
        "bearer",
        ks,
        note="valid app-only SfB token presented from 10.2.1.31 and 10.2.1.32",
    )
    replayed: list[int | None] = []
    for client, port, start, label in (
        ("10.2.1.31", 50103, 6, "shared1"),
        ("10.2.1.32", 50104, 7, "shared2"),
    ):
        c = lab.link(client, port, "10.2.2.14")
        t = c.open(sec(start))
        t, ev = ews(
            c,
            t,
            "ex04.contoso.com",
            authorization("Bearer", shared),
            label,
            f"same token from {client} -> 200",
        )
        c.close(C, t + 200 * MS)
        replayed.append(ev)
    cap.handshake("oauth-s2s", "success", replayed[:1], "token from its owner")
    cap.handshake("oauth-s2s", "success", replayed[1:], "the same token from another address")

    # 5. unsigned-token: an alg-none token without actortoken, accepted by a careless API.
    forged = cap.token(
        mint_unsigned(
            {
                "aud": "api://contoso-hr",
                "iss": f"https://sts.windows.net/{TENANT}/",
                "iat": T_FIND_S + 8,
                "nbf": T_FIND_S + 8,
                "exp": T_FIND_S + 8 + 3600,
                "appid": det_guid("app/forged"),
                "roles": ["HR.Admin"],
                "sub": b64url(prng("sub/forged", 32)),
                "tid": TENANT,
                "upn": "mallory@contoso.com",
                "ver": "1.0",
            }
        ),
        "bearer",
        None,
        note="hand-made alg-none token (no actortoken) the HR API wrongly accepts",
    )
    c = lab.link("10.2.1.41", 51000, "10.2.2.15")
    t = c.open(sec(9))
    req = Request(
        "GET",
        "/api/employees/1042",
        [
            ("Host", "hr-api.contoso.com"),
            ("User-Agent", "curl/8.5.0"),
            authorization("Bearer", forged),
            ("Accept", "application/json"),
        ],
    )
    resp = Response(
        200,
        "OK",
        [
            ("Content-Length", "{len}"),
            ("Content-Type", "application/json; charset=utf-8"),
            ("Server", "Kestrel"),
            ("Date", http_date(t)),
        ],
        b'{"id":1042,"name":"Alice Johnson","salary":"REDACTED-TEST-VALUE"}',
    )
    t, e_forged = cap.exchange(c, t + 150 * US, req, resp, "alg-none token accepted -> 200")
    c.close(C, t + 20 * MS)
    cap.handshake("bearer", "success", [e_forged], "unsigned token accepted")

    # 6. untrusted-issuer: ex05 trusts only SfB; SharePoint sends it an app-only token.
    sp_iss = f"{SHAREPOINT_ID}@{REALM}"
    sp_token = cap.token(
        app_token(kx, sp_iss, "ex05.contoso.com", T_FIND_S + 11 - 300, T_FIND_S + 11 + 12 * 3600),
        "bearer",
        kx,
        note="SharePoint app-only token (the exchange TEST key stands in for the farm's "
        "certificate; no metadata for it in this capture)",
    )
    c = lab.link("10.2.1.51", 50105, "10.2.2.16")
    t = c.open(sec(11))
    only_sfb = exchange_bearer(sfb_iss)
    t, e_sp_probe = ews(
        c,
        t,
        "ex05.contoso.com",
        authorization("Bearer", ""),
        "sp-probe",
        "realm discovery: trusted_issuers lists SfB only",
        denied=[only_sfb, neg, ntlm],
    )
    diag = (
        f"2000001;reason=\"The issuer of the token is unknown. Issuer was '{sp_iss}'.\";"
        'error_category="invalid_token"'
    )
    t, e_sp = ews(
        c,
        t + 30 * MS,
        "ex05.contoso.com",
        authorization("Bearer", sp_token),
        "sp-token",
        "SharePoint issuer not trusted -> 401",
        denied=[("x-ms-diagnostics", diag), exchange_bearer(sfb_iss, error=True), neg, ntlm],
    )
    c.close(C, t + 200 * MS)
    cap.handshake("oauth-s2s", "failure", [e_sp_probe, e_sp], "issuer not in trusted_issuers")

    # 7. audience-host-mismatch: the token names autodiscover.contoso.com, Host is mail.
    wrong_aud = cap.token(
        app_token(ks, sfb_iss, "autodiscover.contoso.com", T_FIND_S - 300, T_FIND_S + 86100),
        "bearer",
        ks,
        note="aud host autodiscover.contoso.com sent to mail.contoso.com",
    )
    c = lab.link("10.2.1.61", 50106, "10.2.2.17")
    t = c.open(sec(14))
    diag = (
        '2000003;reason="The hostname component of the audience claim value is invalid. '
        "Expected 'mail.contoso.com'. Actual 'autodiscover.contoso.com'.\";"
        'error_category="invalid_resource"'
    )
    t, e_aud = ews(
        c,
        t,
        "mail.contoso.com",
        authorization("Bearer", wrong_aud),
        "aud",
        "aud host autodiscover.contoso.com, Host mail.contoso.com -> 401 (4002)",
        denied=[("x-ms-diagnostics", diag), exchange_bearer(trusted_std, error=True), neg, ntlm],
    )
    c.close(C, t + 200 * MS)
    cap.handshake("oauth-s2s", "failure", [e_aud], "invalid_resource (audience host)")

    # 8. NEGATIVE: audience host equal to Host but for case (MAIL.contoso.com) -> accepted.
    case_aud = cap.token(
        app_token(ks, sfb_iss, "mail.contoso.com", T_FIND_S - 300, T_FIND_S + 86100),
        "bearer",
        ks,
        note="aud host mail.contoso.com sent with Host MAIL.contoso.com",
    )
    c = lab.link("10.2.1.62", 50107, "10.2.2.18")
    t = c.open(sec(16))
    t, e_case = ews(
        c,
        t,
        "MAIL.contoso.com",
        authorization("Bearer", case_aud),
        "aud-case",
        "Host differs from the aud host only in case -> 200",
    )
    c.close(C, t + 200 * MS)
    cap.handshake("oauth-s2s", "success", [e_case], "host names compared case-insensitively")

    # 9. NEGATIVE: trusted issuer (S2S outer + actor from SfB), twice from the same client.
    aud7 = f"{EXCHANGE_ID}/ex07.contoso.com@{REALM}"
    actor = cap.token(
        mint_rs256(
            {
                "aud": aud7,
                "iss": sfb_iss,
                "nbf": str(T_FIND_S - 300),
                "exp": str(T_FIND_S - 300 + 86400),
                "nameid": sfb_iss,
                "trustedfordelegation": "true",
            },
            ks,
        ),
        "actor",
        ks,
        note="SfB actor token (24 h) for ex07",
    )
    outer = cap.token(
        mint_unsigned(
            user_context(aud7, sfb_iss, ALICE, actor, T_FIND_S - 300, T_FIND_S - 300 + 8 * 3600)
        ),
        "outer",
        None,
        note="SfB user context for alice, used twice from one address",
    )
    c = lab.link("10.2.1.52", 50108, "10.2.2.19")
    t = c.open(sec(18))
    t, e_tr_probe = ews(
        c,
        t,
        "ex07.contoso.com",
        authorization("Bearer", ""),
        "tr-probe",
        "realm discovery: trusted_issuers lists ACS and SfB",
        denied=[exchange_bearer(trusted_std), neg, ntlm],
    )
    t, e_tr1 = ews(
        c,
        t + 30 * MS,
        "ex07.contoso.com",
        authorization("Bearer", outer),
        "tr1",
        "trusted SfB issuer -> 200",
    )
    t, e_tr2 = ews(
        c,
        t + 400 * MS,
        "ex07.contoso.com",
        authorization("Bearer", outer),
        "tr2",
        "same token again from the same client -> 200",
        body=create_item(ALICE["upn"], "Carol Nguyen"),
        answer=create_item_response("tr2"),
    )
    c.close(C, t + 200 * MS)
    cap.handshake("oauth-s2s", "success", [e_tr_probe, e_tr1, e_tr2], "trusted issuer")

    # 10. ntlmv1: a legacy client answers with a 24-byte NT response and no ESS.
    def iis_401(t: int, extra: Sequence[HeaderItem]) -> Response:
        return Response(
            401,
            "Unauthorized",
            [
                ("Content-Type", "text/html"),
                ("Server", "Microsoft-IIS/10.0"),
                *extra,
                ("X-Powered-By", "ASP.NET"),
                ("Date", http_date(t)),
                ("Content-Length", "{len}"),
            ],
            b"<html><body><h1>401 - Unauthorized</h1></body></html>",
        )

    def iis_200(t: int, page: bytes) -> Response:
        return Response(
            200,
            "OK",
            [
                ("Content-Type", "text/html"),
                ("Server", "Microsoft-IIS/10.0"),
                ("X-Powered-By", "ASP.NET"),
                ("Date", http_date(t)),
                ("Content-Length", "{len}"),
            ],
            page,
        )

    def ntlm_dance(
        c: Conn,
        t: int,
        host: str,
        path: str,
        ua: str,
        blobs: tuple[bytes, bytes, bytes],
        ident: dict[str, str],
        label: str,
    ) -> tuple[list[int | None], int]:
        """Anonymous GET -> 401 NTLM; type 1 -> 401 type 2; type 3 -> 200. Returns the three
        events and the end time."""
        type1, type2, type3 = blobs

        def get(auth: AuthHeader | None) -> Request:
            hdrs: list[HeaderItem] = [
                ("Accept", "text/html, */*"),
                ("User-Agent", ua),
                ("Host", host),
            ]
            if auth is not None:
                hdrs.append(auth)
            return Request("GET", path, [*hdrs, ("Connection", "Keep-Alive")])

        t, e0 = cap.exchange(
            c, t, get(None), iis_401(t, [neg, ntlm]), f"{label}: anonymous -> 401 NTLM"
        )
        auth1 = authorization("NTLM", b64(type1), mechanism="ntlm", extra={"ntlm_message": 1})
        resp = iis_401(t, [challenge("NTLM", token68=b64(type2))])
        t, e1 = cap.exchange(c, t + 2 * MS, get(auth1), resp, f"{label}: type 1 -> type 2")
        auth3 = authorization(
            "NTLM", b64(type3), mechanism="ntlm", extra={"ntlm_message": 3, **ident}
        )
        page = b"<html><body>Welcome, " + ident["ntlm_user"].encode() + b"</body></html>"
        t, e3 = cap.exchange(
            c, t + 2 * MS, get(auth3), iis_200(t, page), f"{label}: type 3 -> 200", think=9 * MS
        )
        return [e0, e1, e3], t

    v1_type1 = ntlm_negotiate_v1()
    v1_type2 = ntlm_challenge(
        prng("ntlmv1-server-challenge", 8),
        ntlm_target_info(T_FIND_S + 21, "INTRANET", "intranet.contoso.com"),
        NTLM_V1_CHALLENGE,
    )
    v1_type3 = ntlm_authenticate_v1("CONTOSO", "kiosk", "Kiosk-Legacy-1", "LEGACY-XP01", v1_type2)
    c = lab.link("10.2.1.71", 1042, "10.2.3.10")
    t = c.open(sec(21))
    v1_events, t = ntlm_dance(
        c,
        t + 200 * US,
        "intranet.contoso.com",
        "/hr/timesheets/",
        "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 5.1; Trident/4.0)",
        (v1_type1, v1_type2, v1_type3),
        {"ntlm_user": "kiosk", "ntlm_domain": "CONTOSO", "workstation": "LEGACY-XP01"},
        "NTLMv1",
    )
    c.close(C, t + 300 * MS)
    cap.handshake("ntlm", "success", v1_events, "NTLMv1 (24-byte NT response, no ESS)")
    cap.truth_extra["ntlmv1"] = {
        "events": [v1_events[2]],
        "domain": "CONTOSO",
        "user": "kiosk",
        "workstation": "LEGACY-XP01",
        "password": "Kiosk-Legacy-1 (test value)",
        "server_challenge": v1_type2[24:32].hex(),
        "nt_response_len": 24,
        "extended_session_security": False,
    }

    # 11. NEGATIVE: NTLMv2 from a current Windows client.
    v2_type1 = ntlm_negotiate()
    v2_type2 = ntlm_challenge(
        prng("ntlmv2-portal-challenge", 8),
        ntlm_target_info(T_FIND_S + 23, "PORTAL", "portal.contoso.com"),
    )
    v2_auth = NtlmAuth(
        "CONTOSO",
        "dave",
        "Dave-Portal-2026!",
        "WS-0142",
        "HTTP/portal.contoso.com",
        prng("ntlmv2-portal-client-challenge", 8),
        prng("ntlmv2-portal-session-key", 16),
    )
    v2_type3 = ntlm_authenticate(v2_auth, v2_type1, v2_type2)
    c = lab.link("10.2.1.72", 49880, "10.2.3.11")
    t = c.open(sec(23))
    v2_events, t = ntlm_dance(
        c,
        t + 200 * US,
        "portal.contoso.com",
        "/sites/finance/",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/122.0.0.0 Safari/537.36 Edg/122.0.0.0",
        (v2_type1, v2_type2, v2_type3),
        {"ntlm_user": "dave", "ntlm_domain": "CONTOSO", "workstation": "WS-0142"},
        "NTLMv2",
    )
    c.close(C, t + 300 * MS)
    cap.handshake("ntlm", "success", v2_events, "NTLMv2 with MIC")

    # 12. long-lived-token: a correctly signed app token valid for 7 days.
    week = cap.token(
        app_token(ks, sfb_iss, "ex08.contoso.com", T_FIND_S - 300, T_FIND_S - 300 + 7 * 86400),
        "bearer",
        ks,
        note="valid, correctly signed app-only token with a 7-day lifetime",
    )
    c = lab.link("10.2.1.81", 50109, "10.2.2.20")
    t = c.open(sec(26))
    t, e_week = ews(
        c, t, "ex08.contoso.com", authorization("Bearer", week), "week", "7-day token -> 200"
    )
    c.close(C, t + 200 * MS)
    cap.handshake("oauth-s2s", "success", [e_week], "7-day token accepted")

    # 13. token-exp-before-nbf: a signed app token whose exp is 100 s before its nbf, both
    # within the clock skew of its use (so neither expired nor not-yet-valid fires).
    never = cap.token(
        app_token(ks, sfb_iss, "ex08.contoso.com", T_FIND_S + 228, T_FIND_S + 128),
        "bearer",
        ks,
        note="correctly signed app-only token whose exp precedes its nbf by 100 s",
    )
    c = lab.link("10.2.1.82", 50221, "10.2.2.20")
    t = c.open(sec(28))
    t, e_never = ews(
        c, t, "ex08.contoso.com", authorization("Bearer", never), "never", "never valid, yet 200"
    )
    c.close(C, t + 200 * MS)
    cap.handshake("oauth-s2s", "success", [e_never], "token never valid, accepted anyway")

    # --- what the finding rules must say --------------------------------------------------------
    bearer = [
        *(e_early, e_skew, *replayed, e_forged, e_sp, e_aud, e_case, e_tr1, e_tr2, e_week),
        e_never,
    ]
    cap.expect(
        "cleartext-bearer",
        bearer,
        [e_sp_probe, e_tr_probe],
        "every presented bearer token (plain HTTP); the empty realm-discovery probes are not",
    )
    cap.expect("token-not-yet-valid", [e_early], [e_skew], "2 h early fires; 60 s is clock skew")
    cap.expect(
        "token-multiple-clients",
        replayed,
        [e_tr1, e_tr2, e_sp_probe, e_tr_probe],
        "one token from two addresses; a token reused by one client does not count, nor do the "
        "empty realm-discovery probes sent by two clients (they carry no token)",
    )
    cap.expect(
        "unsigned-token",
        [e_forged],
        [e_tr1, e_tr2],
        "alg none without actortoken; the S2S outer token (signed actor) is fine",
    )
    cap.expect(
        "untrusted-issuer",
        [e_sp],
        [e_sp_probe, e_tr_probe, e_tr1, e_tr2, e_early, e_aud],
        "SharePoint issuer vs trusted_issuers=SfB; SfB tokens to servers that trust SfB are fine",
    )
    cap.expect(
        "audience-host-mismatch",
        [e_aud],
        [e_case],
        "autodiscover vs mail fires; MAIL.contoso.com vs mail.contoso.com does not",
    )
    cap.expect("ntlmv1", [v1_events[2]], [v2_events[2]], "type 3 with a 24-byte NT response")
    cap.expect(
        "long-lived-token",
        [e_week],
        [e_tr1, e_tr2, *replayed, e_never],
        "7 days fires; 24 h and 8 h do not, nor a negative lifetime",
    )
    cap.expect(
        "token-exp-before-nbf",
        [e_never],
        [e_week, e_tr1],
        "exp 100 s before nbf; sane tokens not",
    )
    cap.expect("metadata-fetch-failed", [], [e_meta], "the metadata fetch succeeded")
    finish_findings(cap)
    return cap


# ---------------------------------------------------------------------------------------------
# Capture 5: healthy-oauth.pcap
# ---------------------------------------------------------------------------------------------

T_HEALTHY = T0 + 4 * 3600 * SEC  # 13:00:00Z
T_HEALTHY_S = T_HEALTHY // SEC


def build_healthy(keys: dict[str, TestKey]) -> Capture:
    cap = Capture(
        "healthy-oauth.pcap",
        "Skype for Business -> Exchange S2S OAuth working as designed (the exchange-sfb lab on a "
        "good day), plain HTTP as if decrypted: Exchange fetches SfB's metadata, SfB probes the "
        "realm, then 6 EWS calls with SfB-signed actor tokens for three users, all 200.",
    )
    lab = Lab(cap, "healthy")
    ks = keys["sfb"]
    sfb_iss = f"{SFB_ID}@{REALM}"
    ex_aud = f"{EXCHANGE_ID}/mail.contoso.com@{REALM}"
    nbf = T_HEALTHY_S - 300
    e_meta = sfb_metadata_fetch(
        cap, lab, ("10.1.0.10", 27821, "10.1.0.20"), T_HEALTHY + 100 * MS, ks
    )
    actor = cap.token(
        mint_rs256(
            {
                "aud": ex_aud,
                "iss": sfb_iss,
                "nbf": str(nbf),
                "exp": str(nbf + 86400),
                "nameid": sfb_iss,
                "trustedfordelegation": "true",
            },
            ks,
        ),
        "actor",
        ks,
        note="SfB self-issued actor token (24 h)",
    )
    outers = {}
    for i, (who, user) in enumerate((("alice", ALICE), ("bob", BOB), ("carol", CAROL))):
        outers[who] = cap.token(
            mint_unsigned(user_context(ex_aud, sfb_iss, user, actor, nbf + i, nbf + i + 8 * 3600)),
            "outer",
            None,
            note=f"SfB user context for {who}",
        )
    users = {"alice": ALICE, "bob": BOB, "carol": CAROL}
    neg, ntlm = challenge("Negotiate"), challenge("NTLM")
    bearer_params = exchange_bearer(f"{ACS_ID}@*,{sfb_iss}")

    def call(c: Conn, t: int, who: str, create: bool, label: str) -> tuple[int, int | None]:
        user = users[who]
        body = create_item(user["upn"], "Alice Johnson") if create else get_folder(user["upn"])
        answer = create_item_response(label) if create else get_folder_response(label)
        req = lab.ews_request(body, authorization("Bearer", outers[who]), user["upn"], label)
        crid = ("client-request-id", det_guid("crid/" + label))
        resp = Response(200, "OK", lab.ex_headers(t, label, extra=[crid]), answer)
        what = "CreateItem" if create else "GetFolder"
        return cap.exchange(c, t, req, resp, f"S2S {who} {what} -> 200", think=19 * MS)

    c = lab.link("10.1.0.20", 52311, "10.1.0.10")
    t = c.open(T_HEALTHY + 2 * SEC)
    req = lab.ews_request(
        get_folder(ALICE["upn"]), authorization("Bearer", ""), ALICE["upn"], "h-probe"
    )
    resp = Response(
        401, "Unauthorized", lab.ex_headers(t, "h-probe", None, extra=[bearer_params, neg, ntlm])
    )
    t, e_probe = cap.exchange(c, t + 300 * US, req, resp, "S2S realm discovery (empty Bearer)")
    calls: list[int | None] = []
    for who, create, label in (("alice", False, "h1"), ("alice", True, "h2"), ("bob", False, "h3")):
        t, ev = call(c, t + 500 * MS, who, create, label)
        calls.append(ev)
    c.close(C, t + SEC)
    cap.handshake("oauth-s2s", "success", [e_probe, *calls], "realm discovery, then 3 calls")
    c = lab.link("10.1.0.20", 52312, "10.1.0.10")
    t = c.open(T_HEALTHY + 40 * SEC)
    second: list[int | None] = []
    for who, create, label in (("bob", True, "h4"), ("carol", False, "h5"), ("carol", True, "h6")):
        t, ev = call(c, t + 300 * MS, who, create, label)
        second.append(ev)
    c.close(C, t + SEC)
    cap.handshake("oauth-s2s", "success", second, "3 more calls on a new connection")
    everything = [e_meta, e_probe, *calls, *second]
    cap.expect(
        "cleartext-bearer",
        [*calls, *second],
        [e_meta, e_probe],
        "only because the sample is plain HTTP; the TLS recording covers the real deployment",
    )
    finish_findings(cap, everything)
    return cap


# ---------------------------------------------------------------------------------------------
# Capture 6: classes.pcap
# ---------------------------------------------------------------------------------------------

T_CLASSES = T0 + 5 * 3600 * SEC  # 14:00:00Z
T_CLASSES_S = T_CLASSES // SEC
KRB_AP_ERR_MODIFIED = 41


def spnego_init_ntlm(type1: bytes) -> bytes:
    """GSS-API InitialContextToken: SPNEGO NegTokenInit offering only NTLMSSP, with type 1."""
    mech_types = seq(der_oid(OID_NTLM))
    neg_token_init = ctx(0, seq(ctx(0, mech_types), ctx(2, der(0x04, type1))))
    return der(0x60, der_oid(OID_SPNEGO) + neg_token_init)


def spnego_resp(state: int | None, mech: str | None = None, token: bytes | None = None) -> bytes:
    """SPNEGO NegTokenResp (RFC 4178 4.2.2): negState (0 accept-completed, 1 accept-incomplete,
    2 reject), supportedMech and responseToken, each only when given."""
    parts = b""
    if state is not None:
        parts += ctx(0, der(0x0A, bytes([state])))
    if mech is not None:
        parts += ctx(1, der_oid(mech))
    if token is not None:
        parts += ctx(2, der(0x04, token))
    return ctx(1, seq(parts))


def kerberos_error(code: int, realm: str, service: str, host: str, stime: int) -> bytes:
    """A Kerberos KRB-ERROR (RFC 4120 5.9.1) from ``service/host@realm`` in its GSS framing
    (RFC 4121 4.1, TOK_ID 03 00), as a server puts it in a SPNEGO responseToken."""
    when = dt.datetime.fromtimestamp(stime, dt.timezone.utc).strftime("%Y%m%d%H%M%SZ")
    sname = seq(ctx(0, der_int(2)), ctx(1, seq(der_gstr(service), der_gstr(host))))
    krb_error = der(
        0x7E,
        seq(
            ctx(0, der_int(5)),
            ctx(1, der_int(30)),
            ctx(4, der(0x18, when.encode("ascii"))),
            ctx(5, der_int(0)),
            ctx(6, der_int(code)),
            ctx(9, der_gstr(realm)),
            ctx(10, sname),
        ),
    )
    return der(0x60, der_oid(OID_KRB5) + b"\x03\x00" + krb_error)


def build_classes() -> Capture:
    cap = Capture(
        "classes.pcap",
        "One handshake per auth class and outcome the analyzer reports, each between its own "
        "client and server: Negotiate/NTLM accepted, an anonymous request challenged, a lone "
        "realm-discovery probe, NTLM abandoned after the type 2, an unknown scheme accepted, "
        "Digest with a wrong password, Kerberos rejected. Plain HTTP as if decrypted.",
    )
    lab = Lab(cap, "classes")
    edge = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    edge += "Chrome/122.0.0.0 Safari/537.36 Edg/122.0.0.0"
    cases: list[dict[str, Any]] = []

    def sec(n: float) -> int:
        return T_CLASSES + int(n * SEC)

    def get(host: str, path: str, ua: str, auth: AuthHeader | None) -> Request:
        hdrs: list[HeaderItem] = [("Accept", "text/html, */*"), ("User-Agent", ua), ("Host", host)]
        if auth is not None:
            hdrs.append(auth)
        return Request("GET", path, [*hdrs, ("Connection", "Keep-Alive")])

    def page(
        t: int, status: int, server: str, extra: Sequence[HeaderItem], body: bytes
    ) -> Response:
        reason = {200: "OK", 401: "Unauthorized"}[status]
        headers: list[HeaderItem] = [("Content-Type", "text/html"), ("Server", server), *extra]
        headers += [("Date", http_date(t)), ("Content-Length", "{len}")]
        return Response(status, reason, headers, body)

    def denied(t: int, server: str, extra: Sequence[HeaderItem]) -> Response:
        return page(t, 401, server, extra, b"<html><body><h1>401 - Unauthorized</h1></body></html>")

    def case(
        n: int,
        auth_class: str,
        outcome: str,
        events: list[int | None],
        mechanism: str | None,
        note: str,
        user: str | None = None,
        domain: str | None = None,
    ) -> None:
        ids = [e for e in events if e is not None]
        cap.handshake(auth_class, outcome, ids, note)
        cases.append(
            {
                "scenario": n,
                "auth_class": auth_class,
                "outcome": outcome,
                "event_ids": [e + 1 for e in ids],
                "user": user,
                "domain": domain,
                "mechanism": mechanism,
                "note": note,
            }
        )

    iis = "Microsoft-IIS/10.0"

    # 1. negotiate-ntlm accepted: NTLM inside SPNEGO, three legs on one connection.
    type1 = ntlm_negotiate()
    type2 = ntlm_challenge(
        prng("classes-spnego-challenge", 8),
        ntlm_target_info(T_CLASSES_S, "APPS", "apps.contoso.com"),
    )
    carol = NtlmAuth(
        "CONTOSO",
        "carol",
        "Carol-Apps-2026!",
        "WS-0217",
        "HTTP/apps.contoso.com",
        prng("classes-spnego-client-challenge", 8),
        prng("classes-spnego-session-key", 16),
    )
    type3 = ntlm_authenticate(carol, type1, type2)
    c = lab.link("10.3.1.11", 50201, "10.3.2.11")
    t = c.open(sec(0.1))
    host, path = "apps.contoso.com", "/timesheets/"
    auth = authorization(
        "Negotiate", b64(spnego_init_ntlm(type1)), mechanism="ntlm", extra={"ntlm_message": 1}
    )
    leg2 = challenge("Negotiate", token68=b64(spnego_resp(1, OID_NTLM, type2)))
    t, n1 = cap.exchange(
        c,
        t + 200 * US,
        get(host, path, edge, auth),
        denied(t, iis, [leg2]),
        "SPNEGO NegTokenInit [NTLM] + type 1 -> 401 NegTokenResp accept-incomplete + type 2",
    )
    ident = {"ntlm_user": "carol", "ntlm_domain": "CONTOSO", "workstation": "WS-0217"}
    auth = authorization(
        "Negotiate",
        b64(spnego_resp(None, token=type3)),
        mechanism="ntlm",
        extra={"ntlm_message": 3, **ident},
    )
    done = challenge("Negotiate", token68=b64(spnego_resp(0)))
    ok = page(
        t, 200, iis, [done, ("Persistent-Auth", "true")], b"<html><body>Timesheets</body></html>"
    )
    t, n3 = cap.exchange(
        c,
        t + 2 * MS,
        get(host, path, edge, auth),
        ok,
        "NegTokenResp + type 3 (CONTOSO\\carol, NTLMv2) -> 200 accept-completed",
        think=9 * MS,
    )
    c.close(C, t + 300 * MS)
    case(
        1,
        "negotiate-ntlm",
        "accepted",
        [n1, n3],
        "ntlm",
        "NTLM inside SPNEGO: init + type 1, accept-incomplete + type 2, type 3 -> 200",
        "carol",
        "CONTOSO",
    )

    # 2. anonymous challenged: the server asks for Basic, the client never answers.
    c = lab.link("10.3.1.12", 50202, "10.3.2.12")
    t = c.open(sec(1))
    basic_ch = challenge("Basic", [("realm", "intranet", True)])
    req = get("intranet.contoso.com", "/", "curl/8.5.0", None)
    resp = page(t, 401, "Apache/2.4.58 (Debian)", [basic_ch], b"<html><body>401</body></html>\n")
    t, a1 = cap.exchange(c, t + 200 * US, req, resp, "anonymous GET -> 401 Basic, no retry")
    c.close(C, t + 20 * MS)
    case(2, "anonymous", "challenged", [a1], None, "401 Basic, the client never sends credentials")

    # 3. oauth challenged: the realm-discovery probe alone.
    c = lab.link("10.3.1.13", 50203, "10.3.2.13")
    t = c.open(sec(2))
    probe = lab.ews_request(
        get_folder(ALICE["upn"]),
        authorization("Bearer", ""),
        ALICE["upn"],
        "c-probe",
        host="ex09.contoso.com",
    )
    bearer_ch = exchange_bearer(f"{ACS_ID}@*,{SFB_ID}@{REALM}")
    resp = Response(
        401,
        "Unauthorized",
        lab.ex_headers(
            t,
            "c-probe",
            None,
            extra=[bearer_ch, challenge("Negotiate"), challenge("NTLM")],
            fqdn="ex09.contoso.com",
            netbios="EX09",
        ),
    )
    t, o1 = cap.exchange(c, t + 300 * US, probe, resp, "realm-discovery probe, nothing follows")
    c.close(C, t + 100 * MS)
    case(
        3,
        "oauth",
        "challenged",
        [o1],
        None,
        "realm-discovery probe (empty Bearer) answered 401, nothing follows",
    )

    # 4. ntlm incomplete: type 1 -> type 2, then the client closes without a type 3.
    c = lab.link("10.3.1.14", 50204, "10.3.2.14")
    t = c.open(sec(3))
    host, path = "files.contoso.com", "/share/"
    type2_files = ntlm_challenge(
        prng("classes-files-challenge", 8),
        ntlm_target_info(T_CLASSES_S + 3, "FILES", "files.contoso.com"),
    )
    auth = authorization("NTLM", b64(type1), mechanism="ntlm", extra={"ntlm_message": 1})
    leg2 = challenge("NTLM", token68=b64(type2_files))
    t, i1 = cap.exchange(
        c,
        t + 200 * US,
        get(host, path, edge, auth),
        denied(t, iis, [leg2]),
        "NTLM type 1 -> 401 type 2; the client gives up",
    )
    c.close(C, t + 40 * MS)
    case(
        4,
        "ntlm",
        "incomplete",
        [i1],
        "ntlm",
        "type 1 -> 401 type 2, then the client closes (FIN) without a type 3",
    )

    # 5. other accepted: a scheme the analyzer does not know.
    c = lab.link("10.3.1.15", 50205, "10.3.2.15")
    t = c.open(sec(4))
    req = Request(
        "GET",
        "/api/v2/status",
        [
            ("Host", "turbo.contoso.com"),
            ("User-Agent", "TurboClient/3.1"),
            authorization("Turbo", "0123456789abcdef", scheme="other"),
            ("Accept", "application/json"),
        ],
    )
    resp = Response(
        200,
        "OK",
        [("Content-Type", "application/json"), ("Date", http_date(t)), ("Content-Length", "{len}")],
        b'{"status":"green"}',
    )
    t, x1 = cap.exchange(c, t + 200 * US, req, resp, "Authorization: Turbo -> 200")
    c.close(C, t + 10 * MS)
    case(5, "other", "accepted", [x1], None, "unknown scheme Turbo -> 200")

    # 6. digest rejected: challenge, then a response computed from the wrong password.
    c = lab.link("10.3.1.16", 50206, "10.3.2.16")
    t = c.open(sec(5))
    host, path, realm = "wiki.contoso.com", "/private/roadmap", "wiki@contoso.com"
    nonce, opaque = b64(prng("classes-digest-nonce", 24)), prng("classes-digest-opaque", 16).hex()
    digest_ch = challenge(
        "Digest",
        [
            ("realm", realm, True),
            ("qop", "auth", True),
            ("nonce", nonce, True),
            ("opaque", opaque, True),
            ("algorithm", "MD5", False),
        ],
    )
    apache = "Apache/2.4.58 (Debian)"
    t, d1 = cap.exchange(
        c,
        t + 200 * US,
        get(host, path, "curl/8.5.0", None),
        denied(t, apache, [digest_ch]),
        "anonymous GET -> 401 Digest",
    )
    cnonce = prng("classes-digest-cnonce", 8).hex()
    answer = digest_response(
        "dave", realm, "Dave-Wiki-2025!", "GET", path, nonce, "00000001", cnonce
    )
    text = (
        f'username="dave", realm="{realm}", nonce="{nonce}", uri="{path}", algorithm=MD5, '
        f'response="{answer}", opaque="{opaque}", qop=auth, nc=00000001, cnonce="{cnonce}"'
    )
    auth = authorization("Digest", text, user="dave")
    t, d2 = cap.exchange(
        c,
        t + 3 * MS,
        get(host, path, "curl/8.5.0", auth),
        denied(t, apache, [digest_ch]),
        "Digest dave with the wrong password -> 401 again",
    )
    c.close(C, t + 10 * MS)
    case(
        6,
        "digest",
        "rejected",
        [d1, d2],
        None,
        "Digest challenge, response from the wrong password -> 401",
        "dave",
    )

    # 7. kerberos rejected: the server cannot decrypt the ticket (KRB_AP_ERR_MODIFIED).
    c = lab.link("10.3.1.17", 50207, "10.3.2.17")
    t = c.open(sec(6))
    host = "sp.contoso.com"
    ap_req = kerberos_ap_req("CONTOSO.COM", "HTTP", host, "classes-krb")
    krb_err = kerberos_error(KRB_AP_ERR_MODIFIED, "CONTOSO.COM", "HTTP", host, T_CLASSES_S + 6)
    auth = authorization(
        "Negotiate",
        b64(spnego_init_krb5(ap_req)),
        mechanism="kerberos",
        extra={"krb_realm": "CONTOSO.COM", "krb_sname": f"HTTP/{host}"},
    )
    reject = challenge("Negotiate", token68=b64(spnego_resp(2, OID_MS_KRB5, krb_err)))
    t, k1 = cap.exchange(
        c,
        t + 200 * US,
        get(host, "/sites/hr/", edge, auth),
        denied(t, iis, [reject]),
        "SPNEGO Kerberos AP-REQ -> 401 NegTokenResp reject + KRB-ERROR 41",
    )
    c.close(C, t + 30 * MS)
    case(
        7,
        "kerberos",
        "rejected",
        [k1],
        "kerberos",
        "SPNEGO reject with KRB-ERROR 41 KRB_AP_ERR_MODIFIED; domain = the ticket realm, "
        "in clear in the AP-REQ",
        None,
        "CONTOSO.COM",
    )

    # Scenarios run one after another, so provisional event numbers are already final.
    assert [e["ts"] for e in cap.events] == sorted(e["ts"] for e in cap.events)
    cap.truth_extra["classes"] = cases
    finish_findings(cap, list(range(len(cap.events))))  # no rule has anything to say here
    return cap


# ---------------------------------------------------------------------------------------------
# Capture 7: certificates.pcap
# ---------------------------------------------------------------------------------------------

T_CERTS = T0 + 6 * 3600 * SEC  # 15:00:00Z
T_CERTS_S = T_CERTS // SEC
DAY_S = 86400

#: Certificates of the certificates.pcap story, made from the TEST keys (name: key, CN, days
#: before / after the capture it is valid). The token-signing ones are committed next to the
#: keys (``keys/<name>.cert.pem``, written by ``--new-keys``) so the truth tests can read them.
DERIVED_CERTS: dict[str, tuple[str, str, int, int]] = {
    "exchange-expiring": ("exchange", "Microsoft Exchange Server Auth Certificate", 355, 10),
    "exchange-next": ("acs", "Microsoft Exchange Server Auth Certificate", 1, 1825),
    "sfb-expired": ("acs", "sfbpool01.contoso.com", 733, -3),
    "sfb-renewed": ("acs", "sfbpool01.contoso.com", 3, 730),
}
#: TLS server certificates (in the capture only).
TLS_CERTS: dict[str, tuple[str, str, int, int]] = {
    "mail-tls": ("exchange", "mail.contoso.com", 345, 20),
    "sfb-tls": ("acs", "sfbpool01.contoso.com", 370, -5),
}


def derived_cert(keys: dict[str, TestKey], spec: tuple[str, str, int, int]) -> x509.Certificate:
    """A certificate for one TEST key with the validity the story needs. Deterministic: fixed
    serial and dates, and RSA PKCS#1 v1.5 signatures do not use randomness."""
    key_name, cn, before, after = spec
    key = keys[key_name].private_key
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TEST KEY - oauth-traffic-analyzer"),
        ]
    )
    start = dt.datetime.fromtimestamp(T_CERTS_S - before * DAY_S, dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(prng(f"serial/{cn}/{before}", 8), "big") >> 1)
        .not_valid_before(start)
        .not_valid_after(dt.datetime.fromtimestamp(T_CERTS_S + after * DAY_S, dt.timezone.utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def derived_keys(keys: dict[str, TestKey]) -> dict[str, TestKey]:
    """The signing identities of certificates.pcap: a TEST key with one of ``DERIVED_CERTS``."""
    out = {}
    for name, spec in DERIVED_CERTS.items():
        cert = derived_cert(keys, spec)
        path = KEYS_DIR / f"{name}.cert.pem"
        if path.is_file():  # the committed copy must be this very certificate
            assert x509.load_pem_x509_certificate(path.read_bytes()) == cert, path
        out[name] = TestKey(name, keys[spec[0]].private_key, cert)
    return out


def write_derived_certs(keys: dict[str, TestKey], keys_dir: Path = KEYS_DIR) -> None:
    for name, spec in DERIVED_CERTS.items():
        pem = derived_cert(keys, spec).public_bytes(serialization.Encoding.PEM)
        (keys_dir / f"{name}.cert.pem").write_bytes(pem)


def tls_record(ctype: int, body: bytes) -> bytes:
    return struct.pack(">BHH", ctype, 0x0303, len(body)) + body


def tls_message(mtype: int, body: bytes) -> bytes:
    return bytes([mtype]) + len(body).to_bytes(3, "big") + body


def tls_server_flight(label: str, cert_der: bytes | None) -> bytes:
    """A server's first flight: TLS 1.2 (ServerHello, Certificate, ServerKeyExchange,
    ServerHelloDone) when ``cert_der`` is given, else a TLS 1.3 ServerHello, ChangeCipherSpec and
    the encrypted rest. Random parts are SHA-256 of labels."""
    if cert_der is not None:
        exts = bytes.fromhex("ff01000100") + bytes.fromhex("00170000")
        version_ext = b""
    else:
        exts = struct.pack(">HHHH", 51, 36, 0x1D, 32) + prng(f"{label}/share", 32)
        version_ext = struct.pack(">HHH", 43, 2, 0x0304)
    exts += version_ext
    hello = (
        b"\x03\x03"
        + prng(f"{label}/random", 32)
        + b"\x20"
        + prng(f"{label}/session", 32)
        + (b"\xc0\x2f" if cert_der is not None else b"\x13\x02")
        + b"\x00"
        + struct.pack(">H", len(exts))
        + exts
    )
    if cert_der is None:
        return (
            tls_record(22, tls_message(2, hello))
            + tls_record(20, b"\x01")
            + tls_record(23, prng(f"{label}/encrypted", 1100))
        )
    entry = len(cert_der).to_bytes(3, "big") + cert_der
    certificate = len(entry).to_bytes(3, "big") + entry
    key_exchange = b"\x03\x00\x1d\x20" + prng(f"{label}/ske", 32) + b"\x08\x04\x01\x00"
    key_exchange += prng(f"{label}/ske-sig", 256)
    flight = (
        tls_message(2, hello)
        + tls_message(11, certificate)
        + tls_message(12, key_exchange)
        + tls_message(14, b"")
    )
    return tls_record(22, flight)


def tls_connection(
    lab: Lab,
    link: tuple[str, int, str, int],
    start: int,
    sni: str,
    cert_der: bytes | None,
) -> int:
    """One HTTPS connection nobody decrypted: handshake in the clear, then encrypted records."""
    c = lab.link(*link)
    label = f"tls/{link[1]}"
    t = c.open(start)
    _, t = c.send(C, t + 200 * US, tls_client_hello(sni))
    _, t = c.send(S, t + 2 * MS, tls_server_flight(label, cert_der))
    if cert_der is not None:
        finish = tls_record(22, tls_message(16, b"\x20" + prng(f"{label}/cke", 32)))
        finish += tls_record(20, b"\x01") + tls_record(22, prng(f"{label}/fin-c", 40))
        _, t = c.send(C, t + 2 * MS, finish)
        _, t = c.send(S, t + 2 * MS, tls_record(20, b"\x01") + tls_record(22, prng(label, 40)))
    _, t = c.send(C, t + 3 * MS, tls_record(23, prng(f"{label}/request", 1800)))
    _, t = c.send(S, t + 20 * MS, tls_record(23, prng(f"{label}/response", 3000)))
    return c.close(C, t + 50 * MS)


def metadata_fetch(
    cap: Capture,
    lab: Lab,
    link: tuple[str, int, str],
    start: int,
    host: str,
    path: str,
    doc: dict[str, Any],
    note: str,
) -> int | None:
    """GET of an auth metadata document -> 200 (plain HTTP, as if decrypted)."""
    c = lab.link(*link)
    t = c.open(start)
    req = Request("GET", path, [("Host", host), ("Connection", "Keep-Alive")])
    resp = Response(
        200,
        "OK",
        [
            ("Content-Type", "application/json; charset=utf-8"),
            ("Date", http_date(t + 4 * MS)),
            ("Content-Length", "{len}"),
        ],
        json_bytes(doc),
    )
    t, event = cap.exchange(c, t + 200 * US, req, resp, note)
    c.close(C, t + 30 * MS)
    cap.handshake("metadata", "success", [event], note)
    return event


def with_keys(doc: dict[str, Any], *published: TestKey) -> dict[str, Any]:
    """A metadata document publishing exactly ``published`` (in that order)."""
    keys = [
        {
            "usage": "signing",
            "keyinfo": {"x5t": key.x5t},
            "keyvalue": {"type": "x509Certificate", "value": b64(key.der)},
        }
        for key in published
    ]
    return {**doc, "keys": keys}


def build_certificates(keys: dict[str, TestKey]) -> Capture:
    cap = Capture(
        "certificates.pcap",
        "Certificates that are about to break S2S, plain HTTP as if decrypted, plus HTTPS nobody "
        "decrypted: Exchange's auth certificate expires in 10 days (its metadata also publishes "
        "an unused next certificate); Skype for Business renewed its certificate but its metadata "
        "still publishes the old one, expired 3 days ago; the TLS certificate of mail.contoso.com "
        "expires in 20 days and that of sfbpool01.contoso.com expired 5 days ago (TLS 1.2); one "
        "TLS 1.3 connection shows no certificate.",
    )
    lab = Lab(cap, "certificates")
    derived = derived_keys(keys)
    ex_iss, sfb_iss = f"{EXCHANGE_ID}@{REALM}", f"{SFB_ID}@{REALM}"
    exchange_ip, sfb_ip = "10.30.0.10", "10.30.0.20"
    ex_expiring, ex_next = derived["exchange-expiring"], derived["exchange-next"]
    sfb_expired, sfb_renewed = derived["sfb-expired"], derived["sfb-renewed"]

    def sec(n: float) -> int:
        return T_CERTS + int(n * SEC)

    # 1. SfB reads Exchange's metadata: the current certificate (10 days left) and the next one.
    e_ex_meta = metadata_fetch(
        cap,
        lab,
        (sfb_ip, 51001, exchange_ip),
        sec(0.1),
        "mail.contoso.com",
        "/autodiscover/metadata/json/1",
        with_keys(exchange_metadata(keys["exchange"]), ex_expiring, ex_next),
        "SfB fetches Exchange's metadata: current certificate expires in 10 days, next published",
    )
    # 2. Exchange calls SfB with app tokens signed with the expiring certificate.
    ex_calls: list[int | None] = []
    c = lab.link(exchange_ip, 51002, sfb_ip)
    t = c.open(sec(2))
    for i in range(2):
        nbf = T_CERTS_S + 2 + i - 300
        payload = {
            "aud": f"{SFB_ID}/sfbpool01.contoso.com@{REALM}",
            "iss": ex_iss,
            "nbf": str(nbf),
            "exp": str(nbf + 86400),
            "nameid": ex_iss,
        }
        token = cap.token(
            mint_rs256(payload, ex_expiring),
            "bearer",
            ex_expiring,
            note=f"Exchange app token {i + 1}, signed with the certificate that expires in 10 days",
        )
        req = Request(
            "GET",
            f"/ucwa/oauth/v1/applications/{1000 + i}",
            [("Host", "sfbpool01.contoso.com"), authorization("Bearer", token)],
        )
        resp = Response(
            200,
            "OK",
            [("Content-Type", "application/json"), ("Content-Length", "{len}")],
            b'{"id":"' + str(1000 + i).encode() + b'"}',
        )
        t, event = cap.exchange(c, t + 300 * MS, req, resp, f"Exchange -> SfB app call {i + 1}")
        ex_calls.append(event)
    c.close(C, t + SEC)
    cap.handshake("oauth-s2s", "success", ex_calls, "Exchange app calls to SfB")

    # 3. Exchange reads SfB's metadata: only the old certificate, expired 3 days ago.
    e_sfb_meta = metadata_fetch(
        cap,
        lab,
        (exchange_ip, 51003, sfb_ip),
        sec(10),
        "sfbpool01.contoso.com",
        "/metadata/json/1",
        with_keys(sfb_metadata(keys["sfb"]), sfb_expired),
        "Exchange fetches SfB's metadata: still the old certificate, expired 3 days ago",
    )
    # 4. SfB calls Exchange with app tokens signed with its renewed, unpublished certificate.
    sfb_calls: list[int | None] = []
    c = lab.link(sfb_ip, 51004, exchange_ip)
    t = c.open(sec(12))
    for i in range(2):
        nbf = T_CERTS_S + 12 + i - 300
        token = cap.token(
            app_token(sfb_renewed, sfb_iss, "mail.contoso.com", nbf, nbf + 86400),
            "bearer",
            sfb_renewed,
            note=f"SfB app token {i + 1}, signed with the renewed certificate nobody published",
        )
        req = lab.ews_request(
            get_folder(ALICE["upn"]),
            authorization("Bearer", token),
            ALICE["upn"],
            f"c{i}",
        )
        resp = Response(200, "OK", lab.ex_headers(t, f"c{i}"), get_folder_response(f"c{i}"))
        t, event = cap.exchange(c, t + 300 * MS, req, resp, f"SfB -> Exchange app call {i + 1}")
        sfb_calls.append(event)
    c.close(C, t + SEC)
    cap.handshake("oauth-s2s", "success", sfb_calls, "SfB app calls to Exchange")

    # 5-7. HTTPS nobody decrypted.
    mail_tls = derived_cert(keys, TLS_CERTS["mail-tls"]).public_bytes(serialization.Encoding.DER)
    sfb_tls = derived_cert(keys, TLS_CERTS["sfb-tls"]).public_bytes(serialization.Encoding.DER)
    mail, pool = "mail.contoso.com", "sfbpool01.contoso.com"
    tls_connection(lab, (sfb_ip, 51005, exchange_ip, 443), sec(20), mail, mail_tls)
    tls_connection(lab, (exchange_ip, 51006, sfb_ip, 443), sec(21), pool, sfb_tls)
    tls_connection(lab, ("10.30.0.40", 51007, exchange_ip, 443), sec(22), mail, None)

    to_mail = [e_ex_meta, *sfb_calls]  # events that went to mail.contoso.com
    to_sfb = [*ex_calls, e_sfb_meta]
    everything = [*to_mail, *to_sfb]
    cap.expect(
        "cleartext-bearer",
        [*ex_calls, *sfb_calls],
        [e_ex_meta, e_sfb_meta],
        "only because the sample is plain HTTP",
    )
    cap.expect("tls-certificate-expired", to_sfb, to_mail, "sfbpool01.contoso.com's certificate")
    cap.expect("tls-certificate-expiring", to_mail, to_sfb, "mail.contoso.com's certificate")
    cap.expect(
        "signing-certificate-expired",
        [e_sfb_meta],
        [e_ex_meta, *ex_calls, *sfb_calls],
        "SfB's published certificate; its tokens use another one",
    )
    cap.expect(
        "signing-certificate-expiring",
        [e_ex_meta, *ex_calls],
        [e_sfb_meta, *sfb_calls],
        "Exchange's certificate: the metadata that publishes it and the tokens it signs",
    )
    cap.expect(
        "signing-key-unused",
        [e_ex_meta, e_sfb_meta],
        [*ex_calls, *sfb_calls],
        "Exchange's next certificate and SfB's expired one: the documents that publish them",
    )
    cap.expect(
        "signing-key-unpublished",
        sfb_calls,
        [e_ex_meta, e_sfb_meta, *ex_calls],
        "SfB signs with a certificate its metadata does not publish",
    )
    finish_findings(cap, everything)
    return cap


# ---------------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------------


def write_pcap(frames: list[Frame], linktype: int) -> bytes:
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))
    for f in frames:
        assert f.ts_ns % US == 0
        sec, usec = divmod(f.ts_ns // US, 1_000_000)
        out += struct.pack("<IIII", sec, usec, len(f.data), len(f.data)) + f.data
    return bytes(out)


def _pcapng_option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)


def _pcapng_block(block_type: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", block_type, total) + body + struct.pack("<I", total)


def write_pcapng(frames: list[Frame], interfaces: list[tuple[int, int, str]]) -> bytes:
    """Hand-written pcapng: SHB, one IDB per (linktype, tsresol exponent, name), EPBs."""
    shb_opts = _pcapng_option(4, b"oauth-traffic-analyzer captures/generate.py")
    out = bytearray(
        _pcapng_block(
            0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + shb_opts + b"\x00" * 4
        )
    )
    for linktype, tsresol, name in interfaces:
        opts = _pcapng_option(2, name.encode()) + _pcapng_option(9, bytes([tsresol]))
        out += _pcapng_block(1, struct.pack("<HHI", linktype, 0, 262144) + opts + b"\x00" * 4)
    for f in frames:
        tsresol = interfaces[f.iface][1]
        units = 10**tsresol
        assert (f.ts_ns * units) % SEC == 0
        ts = f.ts_ns * units // SEC
        pad = b"\x00" * (-len(f.data) % 4)
        body = struct.pack("<IIIII", f.iface, ts >> 32, ts & 0xFFFFFFFF, len(f.data), len(f.data))
        out += _pcapng_block(6, body + f.data + pad)
    return bytes(out)


def _token_truth(
    tok: TokenInfo, uses: list[int], when: float | None, parents: list[str]
) -> dict[str, Any]:
    """The truth record of one token (``when``: capture time it was first seen)."""
    entry: dict[str, Any] = {"fingerprint": fp12(tok.text), "layer": tok.layer}
    is_jwt = tok.text.startswith("eyJ") and tok.text.count(".") == 2
    header, claims = jwt_parts(tok.text) if is_jwt else ({}, {})
    entry["format"] = (
        ("jwt-unsigned" if header.get("alg") == "none" else "jwt") if is_jwt else "opaque"
    )
    entry["alg"] = header.get("alg")
    entry["x5t"] = header.get("x5t")
    entry["kid"] = header.get("kid")
    for name in ("iss", "aud", "nbf", "exp"):
        entry[name] = claims.get(name)
    entry["signing_key"] = tok.key.cert_file if tok.key else None
    entry["signature_valid"] = rs256_valid(tok.text, tok.key) if tok.key else None
    if tok.key:
        assert entry["signature_valid"] == (not tok.tampered), tok.note
    exp = claims.get("exp")
    entry["expired"] = None if exp is None or when is None else int(exp) < when
    entry["tampered"] = tok.tampered
    entry["actor_fp"] = fp12(claims["actortoken"]) if "actortoken" in claims else None
    entry["outer_fps"] = [fp12(p) for p in parents]
    entry["events"] = uses
    entry["seen_in"] = "response body" if tok.in_response else "request"
    entry["claims"] = {
        k: (f"<actor token {fp12(v)}>" if k == "actortoken" else v) for k, v in claims.items()
    }
    entry["note"] = tok.note
    return entry


def finish(cap: Capture, keys: dict[str, TestKey]) -> tuple[bytes, bytes, list[Frame]]:
    """Sort frames and events; return (expected.json, truth.json, frames)."""
    frames = sorted(cap.frames, key=lambda f: (f.ts_ns, f.order))
    order = sorted(range(len(cap.events)), key=lambda i: (cap.events[i]["ts"], i))
    renumber = {old: new for new, old in enumerate(order)}
    events = [cap.events[i] for i in order]
    texts = [cap.texts[i] for i in order]
    expected = {"capture": cap.name, "description": cap.description, "events": events}

    def carried_by(tok: TokenInfo) -> list[int]:
        raw = tok.text.encode()
        return [i for i, (rq, rs) in enumerate(texts) if raw in (rs if tok.in_response else rq)]

    def outers_of(actor: str) -> list[str]:
        return [
            o.text
            for o in cap.tokens
            if o.layer == "outer" and jwt_parts(o.text)[1].get("actortoken") == actor
        ]

    tokens = []
    for tok in cap.tokens:
        parents = outers_of(tok.text) if tok.layer == "actor" else []
        if parents:
            uses = sorted({i for p in parents for i in carried_by(TokenInfo(p, "outer", None))})
        else:
            uses = carried_by(tok)
        assert uses, tok.note
        when = events[uses[0]]["response_ts" if tok.in_response else "ts"]
        tokens.append(_token_truth(tok, uses, when, parents))
    truth = {
        "capture": cap.name,
        "keys": {
            k.name: {
                "cert_file": k.cert_file,
                "key_file": f"{KEYS_REL}/{k.name}.key.pem",
                "x5t": k.x5t,
                "bits": k.private_key.key_size,
            }
            for k in keys.values()
        },
        "tokens": tokens,
        "handshakes": [
            {"kind": k, "outcome": o, "events": evs, "note": n}
            for k, o, evs, n in sorted(
                ((k, o, sorted(renumber[e] for e in evs), n) for k, o, evs, n in cap.handshakes),
                key=lambda h: h[2],
            )
        ],
        **_renumber_extra(cap.truth_extra, renumber),
    }
    if cap.findings:
        truth["findings"] = {
            rule_id: {
                "event_ids": sorted(renumber[e] + 1 for e in spec["fire"]),
                "negative_event_ids": sorted(renumber[e] + 1 for e in spec["silent"]),
                "note": spec["note"],
            }
            for rule_id, spec in cap.findings.items()
        }
    return (
        (json.dumps(expected, indent=2) + "\n").encode(),
        (json.dumps(truth, indent=2) + "\n").encode(),
        frames,
    )


def _renumber_extra(extra: dict[str, Any], renumber: dict[int, int]) -> dict[str, Any]:
    out = {}
    for key, value in extra.items():
        if isinstance(value, dict) and "events" in value:
            value = {**value, "events": [renumber[e] for e in value["events"]]}
        out[key] = value
    return out


def generate(out_dir: Path) -> dict[str, int]:
    """Write every capture and its JSON files to ``out_dir``; returns events per capture."""
    keys = load_keys()
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for cap, writer in (
        (build_exchange_sfb(keys), lambda fr: write_pcap(fr, 1)),
        (build_messy(keys), lambda fr: write_pcapng(fr, [(1, 6, "eth0"), (276, 9, "any")])),
        (build_small_basic(), lambda fr: write_pcap(fr, 0)),
        (build_findings(keys), lambda fr: write_pcap(fr, 1)),
        (build_healthy(keys), lambda fr: write_pcap(fr, 1)),
        (build_classes(), lambda fr: write_pcap(fr, 1)),
        (build_certificates(keys), lambda fr: write_pcap(fr, 1)),
    ):
        expected, truth, frames = finish(cap, keys)
        stem = cap.name.rsplit(".", 1)[0]
        (out_dir / cap.name).write_bytes(writer(frames))
        (out_dir / f"{stem}.expected.json").write_bytes(expected)
        (out_dir / f"{stem}.truth.json").write_bytes(truth)
        counts[cap.name] = len(cap.events)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: captures/)")
    parser.add_argument(
        "--new-keys",
        action="store_true",
        help="regenerate the TEST-ONLY keys in captures/keys/ first",
    )
    args = parser.parse_args(argv)
    if args.new_keys:
        new_keys()
        write_derived_certs(load_keys())
    for name, n in generate(args.out).items():
        print(f"{name}: {n} events")
    return 0


if __name__ == "__main__":
    sys.exit(main())
