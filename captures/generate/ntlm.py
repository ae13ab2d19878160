"""NTLM (MS-NLMP) messages computed for real: NTLMv2 with session key and MIC, NTLMv1 without
extended session security, and the MD4/RC4/HMAC-MD5/DES they need (hashlib often lacks MD4).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes


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
