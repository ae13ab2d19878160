"""NTLMSSP message decoder (MS-NLMP): who authenticated, from where, and how strongly.

Pure functions over bytes. NTLM messages are little-endian structs whose variable parts are
"fields" (length, max length, offset) pointing into a payload; every field is bounds-checked and a
bad one is recorded as a problem instead of raising. Response bytes, session keys and the MIC
are never kept: only their lengths, the response kind, and a fingerprint of the server challenge.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

SIGNATURE = b"NTLMSSP\x00"
NEGOTIATE, CHALLENGE, AUTHENTICATE = 1, 2, 3

#: Bytes of one message decoded at most (real ones are a few hundred bytes).
MAX_MESSAGE = 64 * 1024
#: AV pairs read at most from one list.
MAX_AV_PAIRS = 64

# NegotiateFlags bits (MS-NLMP 2.2.2.5); names without the NTLMSSP_ prefix.
NEGOTIATE_UNICODE = 0x00000001
NEGOTIATE_EXTENDED_SESSIONSECURITY = 0x00080000
NEGOTIATE_VERSION = 0x02000000
FLAG_NAMES: dict[int, str] = {
    0x00000001: "NEGOTIATE_UNICODE",
    0x00000002: "NEGOTIATE_OEM",
    0x00000004: "REQUEST_TARGET",
    0x00000010: "NEGOTIATE_SIGN",
    0x00000020: "NEGOTIATE_SEAL",
    0x00000040: "NEGOTIATE_DATAGRAM",
    0x00000080: "NEGOTIATE_LM_KEY",
    0x00000200: "NEGOTIATE_NTLM",
    0x00000800: "ANONYMOUS",
    0x00001000: "NEGOTIATE_OEM_DOMAIN_SUPPLIED",
    0x00002000: "NEGOTIATE_OEM_WORKSTATION_SUPPLIED",
    0x00008000: "NEGOTIATE_ALWAYS_SIGN",
    0x00010000: "TARGET_TYPE_DOMAIN",
    0x00020000: "TARGET_TYPE_SERVER",
    0x00080000: "NEGOTIATE_EXTENDED_SESSIONSECURITY",
    0x00100000: "NEGOTIATE_IDENTIFY",
    0x00400000: "REQUEST_NON_NT_SESSION_KEY",
    0x00800000: "NEGOTIATE_TARGET_INFO",
    0x02000000: "NEGOTIATE_VERSION",
    0x20000000: "NEGOTIATE_128",
    0x40000000: "NEGOTIATE_KEY_EXCH",
    0x80000000: "NEGOTIATE_56",
}

# AV pair ids (MS-NLMP 2.2.2.1), named without the MsvAv prefix.
AV_EOL, AV_FLAGS, AV_TIMESTAMP, AV_SINGLE_HOST, AV_CHANNEL_BINDINGS = 0, 6, 7, 8, 10
AV_NAMES: dict[int, str] = {
    1: "NbComputerName",
    2: "NbDomainName",
    3: "DnsComputerName",
    4: "DnsDomainName",
    5: "DnsTreeName",
    6: "Flags",
    7: "Timestamp",
    8: "SingleHost",
    9: "TargetName",
    10: "ChannelBindings",
}
_AV_STRINGS = frozenset({1, 2, 3, 4, 5, 9})
#: MsvAvFlags bits.
AV_FLAG_NAMES = {0x1: "CONSTRAINED", 0x2: "MIC", 0x4: "UNTRUSTED_SPN"}
AV_FLAG_MIC = 0x2

_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=timezone.utc)
_B64_JUNK = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class NtlmMessage:
    """One decoded NTLMSSP message; strings are decoded text, secrets reduced to lengths."""

    type: int  # 1 NEGOTIATE, 2 CHALLENGE, 3 AUTHENTICATE
    flags: int
    flag_names: tuple[str, ...]
    unicode: bool
    domain: str | None = None  # type 1 (if supplied) and type 3
    user: str | None = None  # type 3
    workstation: str | None = None  # type 1 (if supplied) and type 3
    version: str | None = None  # "10.0.19041 (NTLM rev 15)"
    target_name: str | None = None  # type 2
    target_info: dict[str, str] = field(default_factory=dict)  # AV pairs (type 2, NTLMv2 blob)
    challenge_fp: str | None = None  # type 2: 12-hex SHA-256 of the server challenge
    response: str | None = None  # type 3: NTLMv2, NTLMv1, NTLMv1-ESS, anonymous, LM-only, ...
    lm_response_len: int | None = None
    nt_response_len: int | None = None
    has_mic: bool = False
    problems: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (every field; tuples as lists)."""
        return {
            "type": self.type,
            "flags": self.flags,
            "flag_names": list(self.flag_names),
            "unicode": self.unicode,
            "domain": self.domain,
            "user": self.user,
            "workstation": self.workstation,
            "version": self.version,
            "target_name": self.target_name,
            "target_info": dict(self.target_info),
            "challenge_fp": self.challenge_fp,
            "response": self.response,
            "lm_response_len": self.lm_response_len,
            "nt_response_len": self.nt_response_len,
            "has_mic": self.has_mic,
            "problems": list(self.problems),
        }


def flag_names(flags: int) -> tuple[str, ...]:
    """Names of the set NegotiateFlags bits, lowest bit first (unassigned bits as RESERVED_0x..).

    Cached: a client sends the same flags in every message.
    """
    if type(flags) is int:
        return _flag_names_cached(flags)
    return _flag_names(flags)


def _flag_names(flags: int) -> tuple[str, ...]:
    return tuple(
        FLAG_NAMES.get(1 << bit, f"RESERVED_{1 << bit:#010x}")
        for bit in range(32)
        if flags & (1 << bit)
    )


_flag_names_cached = lru_cache(maxsize=1024)(_flag_names)


def parse_ntlm_b64(text: str) -> NtlmMessage | None:
    """Decode a base64 NTLMSSP blob (padding optional); None if it is not base64 or not NTLMSSP."""
    data = b64decode_lenient(text, MAX_MESSAGE * 2)
    return None if data is None else parse_ntlm(data)


def b64decode_lenient(text: str, max_bytes: int) -> bytes | None:
    """Standard base64 with whitespace ignored and padding optional; None on junk or oversize.

    Well-formed padded base64 (what clients send) is decoded by one strict C call; only text
    that fails it (whitespace, missing padding, junk) takes the regex path. Both give the same
    bytes: text the strict decoder accepts is left unchanged by the lenient clean-up.
    """
    if not isinstance(text, str):
        return None
    if text and len(text) <= (max_bytes * 4) // 3 + 4:
        try:
            return binascii.a2b_base64(text, strict_mode=True)
        except ValueError:  # binascii.Error, or non-ASCII text
            pass
    compact = _B64_JUNK.sub("", text).rstrip("=")
    if not compact or len(compact) > (max_bytes * 4) // 3 + 4 or len(compact) % 4 == 1:
        return None
    try:
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def parse_ntlm(data: bytes) -> NtlmMessage | None:
    """Decode one NTLMSSP message; None if ``data`` does not start with the NTLMSSP signature.

    Never raises: truncated headers and fields pointing outside the message become ``problems``.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        return None
    data = bytes(data)
    if not data.startswith(SIGNATURE):
        return None
    problems: list[str] = []
    if len(data) > MAX_MESSAGE:
        problems.append(f"message of {len(data)} bytes cut to {MAX_MESSAGE}")
        data = data[:MAX_MESSAGE]
    if len(data) < 12:
        problems.append("truncated: no message type")
        return NtlmMessage(type=0, flags=0, flag_names=(), unicode=False, problems=tuple(problems))
    (msg_type,) = struct.unpack_from("<I", data, 8)
    if msg_type == NEGOTIATE:
        return _negotiate(data, problems)
    if msg_type == CHALLENGE:
        return _challenge(data, problems)
    if msg_type == AUTHENTICATE:
        return _authenticate(data, problems)
    problems.append(f"unknown message type {msg_type}")
    return NtlmMessage(
        type=msg_type, flags=0, flag_names=(), unicode=False, problems=tuple(problems)
    )


# --- the three messages ----------------------------------------------------------------------


def _negotiate(data: bytes, problems: list[str]) -> NtlmMessage:
    """NEGOTIATE_MESSAGE: flags, optional OEM domain/workstation, optional VERSION."""
    flags = _u32(data, 12)
    if flags is None:
        problems.append("truncated: no NegotiateFlags")
        flags = 0
    fields = {"domain": 16, "workstation": 24}
    present = {name: off for name, off in fields.items() if off + 8 <= len(data)}
    header_end = _header_end(data, present.values())
    strings: dict[str, str | None] = {}
    for name, off in present.items():
        raw = _field_bytes(data, off, name, problems)
        # Type 1 strings are always OEM (MS-NLMP 2.2.1.1); absent when empty.
        strings[name] = _decode(raw, False, name, problems) if raw else None
    return NtlmMessage(
        type=NEGOTIATE,
        flags=flags,
        flag_names=flag_names(flags),
        unicode=bool(flags & NEGOTIATE_UNICODE),
        domain=strings.get("domain"),
        workstation=strings.get("workstation"),
        version=_version(data, 32, flags, header_end),
        problems=tuple(problems),
    )


def _challenge(data: bytes, problems: list[str]) -> NtlmMessage:
    """CHALLENGE_MESSAGE: target name, flags, server challenge (fingerprinted), AV pairs."""
    if len(data) < 32:
        problems.append("truncated: CHALLENGE header shorter than 32 bytes")
        flags = _u32(data, 20) or 0
        return NtlmMessage(
            type=CHALLENGE,
            flags=flags,
            flag_names=flag_names(flags),
            unicode=bool(flags & NEGOTIATE_UNICODE),
            problems=tuple(problems),
        )
    (flags,) = struct.unpack_from("<I", data, 20)
    unicode = bool(flags & NEGOTIATE_UNICODE)
    offsets = [12] + ([40] if len(data) >= 48 else [])
    header_end = _header_end(data, offsets)
    raw_target = _field_bytes(data, 12, "target name", problems)
    target_name = _decode(raw_target, unicode, "target name", problems)
    target_info: dict[str, str] = {}
    if len(data) >= 48:
        raw_info = _field_bytes(data, 40, "target info", problems)
        if raw_info:
            target_info = _av_pairs(raw_info, problems)
    return NtlmMessage(
        type=CHALLENGE,
        flags=flags,
        flag_names=flag_names(flags),
        unicode=unicode,
        version=_version(data, 48, flags, header_end),
        target_name=target_name,
        target_info=target_info,
        challenge_fp=hashlib.sha256(data[24:32]).hexdigest()[:12],
        problems=tuple(problems),
    )


def _authenticate(data: bytes, problems: list[str]) -> NtlmMessage:
    """AUTHENTICATE_MESSAGE: who (domain, user, workstation) and what kind of response."""
    if len(data) < 52:
        problems.append("truncated: AUTHENTICATE header shorter than 52 bytes")
        return NtlmMessage(
            type=AUTHENTICATE, flags=0, flag_names=(), unicode=False, problems=tuple(problems)
        )
    base = {"lm": 12, "nt": 20, "domain": 28, "user": 36, "workstation": 44}
    header_end = _header_end(data, base.values())
    # Older clients end the header before EncryptedRandomSessionKey / NegotiateFlags.
    flags: int | None = None
    if header_end >= 64:
        header_end = _header_end(data, [*base.values(), 52])
        flags = _u32(data, 60) if header_end >= 64 else None
    raw = {name: _field_bytes(data, off, _LABELS[name], problems) for name, off in base.items()}
    if flags is None:
        unicode = _looks_utf16(raw["user"] or raw["domain"] or b"")
        problems.append("no NegotiateFlags field; string encoding guessed")
        flags = 0
    else:
        unicode = bool(flags & NEGOTIATE_UNICODE)
    domain = _decode(raw["domain"], unicode, "domain", problems)
    user = _decode(raw["user"], unicode, "user", problems)
    workstation = _decode(raw["workstation"], unicode, "workstation", problems)
    lm_len, nt_len = _u16(data, 12) or 0, _u16(data, 20) or 0
    response = _response_kind(raw["lm"], lm_len, nt_len, flags, user)
    target_info: dict[str, str] = {}
    if response == "NTLMv2" and raw["nt"] is not None:
        target_info = _ntlmv2_pairs(raw["nt"], problems)
    elif response == "unknown":
        problems.append(f"NT response of {nt_len} bytes fits neither NTLMv1 nor NTLMv2")
    elif response == "empty":
        problems.append("empty responses with a non-empty user name")
    has_mic = False
    av_flags = _av_flags_value(target_info)
    if av_flags is not None and av_flags & AV_FLAG_MIC:
        # The MIC sits after VERSION (offset 72..88); MsvAvFlags bit 0x2 says it was sent.
        if header_end >= 88 and len(data) >= 88:
            has_mic = True
        else:
            problems.append("MsvAvFlags announces a MIC but the header has no room for it")
    return NtlmMessage(
        type=AUTHENTICATE,
        flags=flags,
        flag_names=flag_names(flags),
        unicode=unicode,
        domain=domain,
        user=user,
        workstation=workstation,
        version=_version(data, 64, flags, header_end),
        target_info=target_info,
        response=response,
        lm_response_len=lm_len,
        nt_response_len=nt_len,
        has_mic=has_mic,
        problems=tuple(problems),
    )


_LABELS = {
    "lm": "LM response",
    "nt": "NT response",
    "domain": "domain",
    "user": "user",
    "workstation": "workstation",
}


def _response_kind(lm: bytes | None, lm_len: int, nt_len: int, flags: int, user: str | None) -> str:
    """Classify the challenge responses by their lengths (MS-NLMP 3.3.1, 3.3.2, 3.2.5.1.2)."""
    if nt_len == 0 and (lm_len == 0 or (lm_len == 1 and lm in (b"\x00", None))):
        return "anonymous" if not user else "empty"
    if nt_len > 24:
        return "NTLMv2"
    if nt_len == 24:
        # With extended session security the LM field carries the client challenge + Z(16).
        ess = flags & NEGOTIATE_EXTENDED_SESSIONSECURITY
        if ess and lm is not None and len(lm) == 24 and lm[8:] == bytes(16):
            return "NTLMv1-ESS"
        return "NTLMv1"
    if nt_len == 0 and lm_len == 24:
        return "LM-only"
    return "unknown"


def _ntlmv2_pairs(nt: bytes, problems: list[str]) -> dict[str, str]:
    """AV pairs inside an NTLMv2 response: NTProofStr(16) then NTLMv2_CLIENT_CHALLENGE."""
    # Client challenge: RespType, HiRespType, Z(6), TimeStamp(8), ChallengeFromClient(8), Z(4).
    if len(nt) < 16 + 28:
        problems.append("NTLMv2 response too short for its client challenge header")
        return {}
    if nt[16] != 1 or nt[17] != 1:
        problems.append(f"NTLMv2 response type {nt[16]}.{nt[17]} (expected 1.1)")
    return _av_pairs(nt[16 + 28 :], problems, trailing_ok=True)


# --- fields, strings, AV pairs ---------------------------------------------------------------


def _u16(data: bytes, off: int) -> int | None:
    return struct.unpack_from("<H", data, off)[0] if off + 2 <= len(data) else None


def _u32(data: bytes, off: int) -> int | None:
    return struct.unpack_from("<I", data, off)[0] if off + 4 <= len(data) else None


def _header_end(data: bytes, field_offsets: Iterable[int]) -> int:
    """Where the payload starts: the lowest offset of a non-empty field, else the message end."""
    size = end = len(data)
    for off in field_offsets:
        if off + 8 > size:
            continue
        length, _, offset = _FIELD(data, off)
        if length and offset < end:
            end = offset
    return end


def _field_bytes(data: bytes, off: int, name: str, problems: list[str]) -> bytes | None:
    """Bytes a (Len, MaxLen, Offset) field points at; None (and a problem) if out of bounds."""
    if off + 8 > len(data):
        problems.append(f"truncated: no {name} field")
        return None
    length, _, offset = _FIELD(data, off)
    if not length:
        return b""
    if offset + length > len(data):
        problems.append(f"{name} field ({length} bytes at {offset}) points outside the message")
        return None
    return data[offset : offset + length]


def _decode(raw: bytes | None, unicode: bool, name: str, problems: list[str]) -> str | None:
    """UTF-16LE when NEGOTIATE_UNICODE is set; OEM otherwise (UTF-8 if valid, else Latin-1)."""
    if raw is None:
        return None
    if unicode:
        if len(raw) % 2:
            problems.append(f"{name}: odd length {len(raw)} for a UTF-16 string")
            raw = raw[:-1]
        return _utf16(raw)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _looks_utf16(raw: bytes) -> bool:
    return bool(raw) and len(raw) % 2 == 0 and not any(raw[1::2])


def _version(data: bytes, off: int, flags: int, header_end: int) -> str | None:
    """The 8-byte VERSION structure, when flagged and the header leaves room for it."""
    if not flags & NEGOTIATE_VERSION or header_end < off + 8 or len(data) < off + 8:
        return None
    major, minor, build, revision = struct.unpack_from("<BBH3xB", data, off)
    return f"{major}.{minor}.{build} (NTLM rev {revision})"


def _av_pairs(raw: bytes, problems: list[str], trailing_ok: bool = False) -> dict[str, str]:
    """An AV_PAIR list as {name: text}; binary values are summarised, never copied."""
    out: dict[str, str] = {}
    pos = 0
    size = len(raw)
    for _ in range(MAX_AV_PAIRS):
        if pos + 4 > size:
            problems.append("AV pair list ends without MsvAvEOL")
            return out
        av_id, length = _AV_HEADER(raw, pos)
        if av_id == AV_EOL:
            if pos + 4 < size and not trailing_ok:
                problems.append(f"{size - pos - 4} bytes after MsvAvEOL")
            return out
        end = pos + 4 + length
        if end > size:
            problems.append(f"AV pair {av_id} runs past the end of the list")
            return out
        name = AV_NAMES.get(av_id) or f"AvId{av_id}"
        if name in out:
            problems.append(f"duplicate AV pair {name}")
        else:
            out[name] = _av_value(av_id, raw[pos + 4 : end])
        pos = end
    problems.append(f"more than {MAX_AV_PAIRS} AV pairs; rest ignored")
    return out


def _av_value(av_id: int, value: bytes) -> str:
    if av_id in _AV_STRINGS:
        return _utf16(value[: len(value) - len(value) % 2])
    if av_id == AV_FLAGS and len(value) == 4:
        (bits,) = struct.unpack("<I", value)
        names = [n for b, n in AV_FLAG_NAMES.items() if bits & b]
        return f"{bits:#010x}" + (f" ({', '.join(names)})" if names else "")
    if av_id == AV_TIMESTAMP and len(value) == 8:
        return filetime_iso(struct.unpack("<Q", value)[0])
    if av_id == AV_CHANNEL_BINDINGS:
        return "none (all zeros)" if not any(value) else "present"
    return f"{len(value)} bytes"


def _utf16(raw: bytes) -> str:
    """``raw.decode("utf-16-le", errors="replace")``, calling the codec directly (that name
    has no fast path in ``bytes.decode``, which goes through a Python-level codec wrapper)."""
    return _UTF16_DECODE(raw, "replace", True)[0]


_UTF16_DECODE = codecs.utf_16_le_decode
_AV_HEADER = struct.Struct("<HH").unpack_from
_FIELD = struct.Struct("<HHI").unpack_from  # a (Len, MaxLen, Offset) field


def _av_flags_value(target_info: dict[str, str]) -> int | None:
    text = target_info.get("Flags")
    if not text:
        return None
    try:
        return int(text.split()[0], 16)
    except ValueError:
        return None


def filetime_iso(filetime: int) -> str:
    """A Windows FILETIME (100 ns ticks since 1601) as ISO 8601 UTC with a Z, to the second."""
    try:
        moment = _FILETIME_EPOCH + timedelta(microseconds=filetime // 10)
    except OverflowError:
        return f"invalid ({filetime:#x})"
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
