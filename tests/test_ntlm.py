"""NTLMSSP decoding: messages built byte by byte with struct, plus the real ones in the captures."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from shared_dir import PUBLIC, needs_public, public_expected

from analyzer.auth.ntlm import filetime_iso, flag_names, parse_ntlm, parse_ntlm_b64
from analyzer.engine import analyze_paths

ROOT = Path(__file__).resolve().parents[1]
SFB_PCAP = ROOT / "captures" / "exchange-sfb.pcap"
SFB_TRUTH = ROOT / "captures" / "exchange-sfb.truth.json"

SIG = b"NTLMSSP\x00"
UNICODE, OEM, REQUEST_TARGET = 0x1, 0x2, 0x4
NTLM, DOMAIN_SUPPLIED, WORKSTATION_SUPPLIED = 0x200, 0x1000, 0x2000
ALWAYS_SIGN, ESS, TARGET_INFO, VERSION = 0x8000, 0x80000, 0x800000, 0x2000000
KEY_EXCH, N128, N56 = 0x40000000, 0x20000000, 0x80000000
VERSION_10 = struct.pack("<BBH3xB", 10, 0, 19041, 15)
SERVER_CHALLENGE = bytes.fromhex("0123456789abcdef")
CLIENT_CHALLENGE = bytes.fromhex("a1a2a3a4a5a6a7a8")
NT_PROOF = bytes.fromhex("deadbeefcafebabe0011223344556677")
SESSION_KEY = bytes.fromhex("5e55104b5e55104b5e55104b5e55104b")
MIC = bytes.fromhex("31c31c31c31c31c31c31c31c31c31c31")
TIMESTAMP = 133_000_000_000_000_000  # FILETIME 2022-06-18T04:26:40Z


def u16(text: str) -> bytes:
    return text.encode("utf-16-le")


def av_pairs(*pairs: tuple[int, bytes], eol: bool = True) -> bytes:
    out = b"".join(struct.pack("<HH", av_id, len(value)) + value for av_id, value in pairs)
    return out + (struct.pack("<HH", 0, 0) if eol else b"")


def layout(parts: list[bytes], start: int) -> tuple[list[bytes], bytes]:
    """(Len, MaxLen, Offset) headers for ``parts`` laid out one after another from ``start``."""
    headers, offset = [], start
    for part in parts:
        headers.append(struct.pack("<HHI", len(part), len(part), offset))
        offset += len(part)
    return headers, b"".join(parts)


def negotiate(flags: int, domain: bytes = b"", workstation: bytes = b"", version: bool = True):
    head_len = 40 if version else 32
    (dom_f, ws_f), payload = layout([domain, workstation], head_len)
    head = SIG + struct.pack("<II", 1, flags) + dom_f + ws_f
    return head + (VERSION_10 if version else b"") + payload


def challenge(flags: int, target: bytes, info: bytes, challenge_bytes: bytes = SERVER_CHALLENGE):
    (target_f, info_f), payload = layout([target, info], 56)
    return (
        SIG
        + struct.pack("<I", 2)
        + target_f
        + struct.pack("<I", flags)
        + challenge_bytes
        + bytes(8)
        + info_f
        + VERSION_10
        + payload
    )


def authenticate(
    flags: int,
    lm: bytes,
    nt: bytes,
    domain: bytes,
    user: bytes,
    workstation: bytes,
    key: bytes = b"",
    mic: bool = True,
) -> bytes:
    """AUTHENTICATE_MESSAGE with VERSION (and the 16-byte MIC slot when ``mic``)."""
    head_len = 88 if mic else 72
    fields, payload = layout([lm, nt, domain, user, workstation, key], head_len)
    head = SIG + struct.pack("<I", 3) + b"".join(fields) + struct.pack("<I", flags) + VERSION_10
    return head + (MIC if mic else b"") + payload


def ntlmv2_response(pairs: bytes) -> bytes:
    client_blob = (
        b"\x01\x01"
        + bytes(6)
        + struct.pack("<Q", TIMESTAMP)
        + CLIENT_CHALLENGE
        + bytes(4)
        + pairs
        + bytes(4)
    )
    return NT_PROOF + client_blob


V2_PAIRS = av_pairs(
    (2, u16("CONTOSO")),
    (1, u16("MAIL")),
    (7, struct.pack("<Q", TIMESTAMP)),
    (6, struct.pack("<I", 0x2)),
    (10, bytes(16)),
    (9, u16("HTTP/mail.contoso.com")),
)
V2_FLAGS = UNICODE | REQUEST_TARGET | NTLM | ALWAYS_SIGN | ESS | TARGET_INFO | VERSION | N128 | N56


# --- NEGOTIATE ---------------------------------------------------------------------------------


def test_negotiate_with_oem_domain_workstation_and_version() -> None:
    flags = UNICODE | OEM | NTLM | DOMAIN_SUPPLIED | WORKSTATION_SUPPLIED | VERSION
    msg = parse_ntlm(negotiate(flags, b"CONTOSO", b"WS01"))
    assert msg is not None
    assert msg.type == 1
    assert msg.flags == flags
    assert msg.flag_names == (
        "NEGOTIATE_UNICODE",
        "NEGOTIATE_OEM",
        "NEGOTIATE_NTLM",
        "NEGOTIATE_OEM_DOMAIN_SUPPLIED",
        "NEGOTIATE_OEM_WORKSTATION_SUPPLIED",
        "NEGOTIATE_VERSION",
    )
    assert msg.unicode is True
    assert (msg.domain, msg.workstation) == ("CONTOSO", "WS01")
    assert msg.version == "10.0.19041 (NTLM rev 15)"
    assert msg.user is None and msg.response is None and msg.challenge_fp is None
    assert msg.problems == ()


def test_negotiate_without_names_or_version() -> None:
    msg = parse_ntlm(negotiate(OEM | NTLM | ESS, version=False))
    assert msg is not None
    assert (msg.domain, msg.workstation, msg.version) == (None, None, None)
    assert msg.unicode is False
    assert msg.problems == ()


def test_negotiate_version_flag_without_room_is_not_read() -> None:
    # Flag set, but the 32-byte header ends where the payload starts: no VERSION field.
    msg = parse_ntlm(negotiate(OEM | VERSION | DOMAIN_SUPPLIED, b"DOM", version=False))
    assert msg is not None
    assert msg.version is None
    assert msg.domain == "DOM"


def test_short_legacy_negotiate_has_only_flags() -> None:
    msg = parse_ntlm(SIG + struct.pack("<II", 1, NTLM | OEM))
    assert msg is not None
    assert (msg.type, msg.flags, msg.problems) == (1, NTLM | OEM, ())


def test_flag_names_cover_reserved_bits() -> None:
    assert flag_names(0x8 | 0x80000000) == ("RESERVED_0x00000008", "NEGOTIATE_56")


# --- CHALLENGE ---------------------------------------------------------------------------------


def test_challenge_unicode_with_av_pairs() -> None:
    info = av_pairs(
        (2, u16("CONTOSO")),
        (1, u16("MAIL")),
        (4, u16("contoso.com")),
        (3, u16("mail.contoso.com")),
        (5, u16("contoso.com")),
        (7, struct.pack("<Q", TIMESTAMP)),
        (6, struct.pack("<I", 0x5)),
        (8, bytes(48)),
        (42, b"\x01\x02\x03"),
    )
    flags = V2_FLAGS | 0x10000
    msg = parse_ntlm(challenge(flags, u16("CONTOSO"), info))
    assert msg is not None
    assert msg.type == 2
    assert msg.target_name == "CONTOSO"
    assert msg.target_info == {
        "NbDomainName": "CONTOSO",
        "NbComputerName": "MAIL",
        "DnsDomainName": "contoso.com",
        "DnsComputerName": "mail.contoso.com",
        "DnsTreeName": "contoso.com",
        "Timestamp": "2022-06-18T04:26:40Z",
        "Flags": "0x00000005 (CONSTRAINED, UNTRUSTED_SPN)",
        "SingleHost": "48 bytes",
        "AvId42": "3 bytes",
    }
    assert msg.challenge_fp == hashlib.sha256(SERVER_CHALLENGE).hexdigest()[:12]
    assert msg.version == "10.0.19041 (NTLM rev 15)"
    assert "TARGET_TYPE_DOMAIN" in msg.flag_names
    assert msg.problems == ()
    assert SERVER_CHALLENGE.hex() not in json.dumps(msg.to_dict()) + repr(msg)


def test_challenge_oem_target_name() -> None:
    msg = parse_ntlm(challenge(OEM | NTLM | TARGET_INFO, b"WORKGROUP", av_pairs((1, u16("NAS")))))
    assert msg is not None
    assert msg.unicode is False
    assert msg.target_name == "WORKGROUP"
    assert msg.target_info == {"NbComputerName": "NAS"}


def test_challenge_av_list_problems() -> None:
    no_eol = challenge(V2_FLAGS, u16("X"), av_pairs((1, u16("A")), eol=False))
    msg = parse_ntlm(no_eol)
    assert msg is not None
    assert msg.target_info == {"NbComputerName": "A"}
    assert msg.problems == ("AV pair list ends without MsvAvEOL",)
    overrun = challenge(V2_FLAGS, u16("X"), struct.pack("<HH", 1, 200) + u16("AB"))
    msg = parse_ntlm(overrun)
    assert msg is not None
    assert msg.target_info == {}
    assert msg.problems == ("AV pair 1 runs past the end of the list",)


def test_old_short_challenge_without_target_info() -> None:
    data = SIG + struct.pack("<I", 2) + struct.pack("<HHI", 0, 0, 32)
    data += struct.pack("<I", OEM | NTLM) + SERVER_CHALLENGE
    msg = parse_ntlm(data)
    assert msg is not None
    assert (msg.type, msg.target_name, msg.target_info, msg.version) == (2, "", {}, None)
    assert msg.challenge_fp == hashlib.sha256(SERVER_CHALLENGE).hexdigest()[:12]
    assert msg.problems == ()


# --- AUTHENTICATE ------------------------------------------------------------------------------


def test_authenticate_ntlmv2_unicode_with_mic() -> None:
    nt = ntlmv2_response(V2_PAIRS)
    names = (u16("CONTOSO"), u16("svc-sfb"), u16("SFB01"))
    data = authenticate(V2_FLAGS | KEY_EXCH, bytes(24), nt, *names, key=SESSION_KEY)
    msg = parse_ntlm(data)
    assert msg is not None
    assert msg.type == 3
    assert (msg.domain, msg.user, msg.workstation) == ("CONTOSO", "svc-sfb", "SFB01")
    assert msg.response == "NTLMv2"
    assert (msg.lm_response_len, msg.nt_response_len) == (24, len(nt))
    assert msg.has_mic is True
    assert msg.version == "10.0.19041 (NTLM rev 15)"
    assert msg.target_info == {
        "NbDomainName": "CONTOSO",
        "NbComputerName": "MAIL",
        "Timestamp": "2022-06-18T04:26:40Z",
        "Flags": "0x00000002 (MIC)",
        "ChannelBindings": "none (all zeros)",
        "TargetName": "HTTP/mail.contoso.com",
    }
    assert msg.problems == ()
    # Nothing secret survives: not the proof, the session key, the MIC or the client challenge.
    shown = json.dumps(msg.to_dict()) + repr(msg)
    for secret in (NT_PROOF, SESSION_KEY, MIC, CLIENT_CHALLENGE):
        assert secret.hex() not in shown
        assert base64.b64encode(secret).decode()[:12] not in shown


def test_authenticate_channel_bindings_present_and_no_mic() -> None:
    pairs = av_pairs((10, b"\x11" * 16), (9, u16("HTTP/web")))
    data = authenticate(V2_FLAGS, bytes(24), ntlmv2_response(pairs), u16("D"), u16("u"), u16("w"))
    msg = parse_ntlm(data)
    assert msg is not None
    assert msg.target_info == {"ChannelBindings": "present", "TargetName": "HTTP/web"}
    assert msg.has_mic is False


def test_authenticate_mic_flag_without_room() -> None:
    nt = ntlmv2_response(av_pairs((6, struct.pack("<I", 2))))
    msg = parse_ntlm(authenticate(V2_FLAGS, bytes(24), nt, u16("D"), u16("u"), b"", mic=False))
    assert msg is not None
    assert msg.has_mic is False
    assert msg.problems == ("MsvAvFlags announces a MIC but the header has no room for it",)


def test_authenticate_ntlmv1_oem() -> None:
    lm, nt = bytes(range(24)), bytes(range(100, 124))
    flags = OEM | NTLM | ALWAYS_SIGN
    msg = parse_ntlm(authenticate(flags, lm, nt, b"EXAMPLE", b"bob", b"PC-7", mic=False))
    assert msg is not None
    assert msg.unicode is False
    assert (msg.domain, msg.user, msg.workstation) == ("EXAMPLE", "bob", "PC-7")
    assert (msg.response, msg.lm_response_len, msg.nt_response_len) == ("NTLMv1", 24, 24)
    assert msg.target_info == {}
    assert msg.problems == ()


def test_authenticate_ntlmv1_extended_session_security() -> None:
    lm = CLIENT_CHALLENGE + bytes(16)
    flags = UNICODE | NTLM | ESS
    msg = parse_ntlm(authenticate(flags, lm, bytes(range(24)), u16("EX"), u16("al"), u16("W")))
    assert msg is not None
    assert msg.response == "NTLMv1-ESS"
    # Same bytes without the ESS flag: plain NTLMv1.
    msg = parse_ntlm(authenticate(UNICODE | NTLM, lm, bytes(range(24)), b"", u16("al"), b""))
    assert msg is not None
    assert msg.response == "NTLMv1"
    # ESS flag, but the LM field is a real LM response: not ESS.
    lm_real = bytes(range(1, 25))
    msg = parse_ntlm(authenticate(flags, lm_real, bytes(range(24)), b"", u16("al"), b""))
    assert msg is not None
    assert msg.response == "NTLMv1"


@pytest.mark.parametrize("lm", [b"", b"\x00"])
def test_authenticate_anonymous(lm: bytes) -> None:
    msg = parse_ntlm(authenticate(UNICODE | NTLM | 0x800, lm, b"", b"", b"", u16("KIOSK")))
    assert msg is not None
    assert (msg.response, msg.user, msg.domain, msg.workstation) == ("anonymous", "", "", "KIOSK")
    assert (msg.lm_response_len, msg.nt_response_len) == (len(lm), 0)
    assert "ANONYMOUS" in msg.flag_names
    assert msg.problems == ()


def test_authenticate_lm_only_and_odd_lengths() -> None:
    msg = parse_ntlm(authenticate(OEM | NTLM, bytes(range(24)), b"", b"D", b"old", b"W95"))
    assert msg is not None
    assert msg.response == "LM-only"
    msg = parse_ntlm(authenticate(OEM | NTLM, bytes(24), bytes(20), b"D", b"u", b"w"))
    assert msg is not None
    assert msg.response == "unknown"
    assert msg.problems == ("NT response of 20 bytes fits neither NTLMv1 nor NTLMv2",)
    msg = parse_ntlm(authenticate(OEM | NTLM, b"", b"", b"D", b"someone", b"w"))
    assert msg is not None
    assert msg.response == "empty"
    assert msg.problems == ("empty responses with a non-empty user name",)


def test_authenticate_field_outside_buffer() -> None:
    data = bytearray(authenticate(V2_FLAGS, bytes(24), bytes(24), u16("DOM"), u16("u"), u16("w")))
    struct.pack_into("<HHI", data, 36, 10, 10, 5000)  # UserNameFields -> past the end
    msg = parse_ntlm(bytes(data))
    assert msg is not None
    assert (msg.domain, msg.user, msg.workstation) == ("DOM", None, "w")
    assert msg.problems == ("user field (10 bytes at 5000) points outside the message",)


def test_authenticate_odd_unicode_length() -> None:
    msg = parse_ntlm(authenticate(V2_FLAGS, bytes(24), bytes(24), u16("DOM") + b"X", u16("u"), b""))
    assert msg is not None
    assert msg.domain == "DOM"
    assert msg.problems == ("domain: odd length 7 for a UTF-16 string",)


def test_legacy_authenticate_without_flags_guesses_encoding() -> None:
    fields, payload = layout([bytes(24), bytes(range(24)), u16("DOM"), u16("joe"), u16("PC")], 52)
    data = SIG + struct.pack("<I", 3) + b"".join(fields) + payload  # 52-byte header
    msg = parse_ntlm(data)
    assert msg is not None
    assert (msg.flags, msg.unicode, msg.user, msg.domain) == (0, True, "joe", "DOM")
    assert msg.response == "NTLMv1"
    assert msg.problems == ("no NegotiateFlags field; string encoding guessed",)


def test_oem_strings_that_are_not_utf8_fall_back_to_latin1() -> None:
    msg = parse_ntlm(authenticate(OEM | NTLM, bytes(24), bytes(24), b"D", b"J\xf6rg", b"W"))
    assert msg is not None
    assert msg.user == "Jörg"


# --- entry points and junk ---------------------------------------------------------------------


def test_not_ntlmssp_is_none() -> None:
    assert parse_ntlm(b"") is None
    assert parse_ntlm(b"NTLMSSP") is None
    assert parse_ntlm(b"\x60\x82\x01\x00") is None
    assert parse_ntlm("NTLMSSP\x00") is None  # type: ignore[arg-type]
    assert parse_ntlm_b64("") is None
    assert parse_ntlm_b64("not base64 at all!") is None
    assert parse_ntlm_b64("A") is None
    assert parse_ntlm_b64(base64.b64encode(b"Basic stuff").decode()) is None
    assert parse_ntlm_b64(None) is None  # type: ignore[arg-type]


def test_b64_padding_and_whitespace_are_lenient() -> None:
    data = negotiate(UNICODE | NTLM | VERSION)
    text = base64.b64encode(data + b"\x00").decode()  # length not a multiple of 3: has padding
    for variant in (text, text.rstrip("="), " " + text + "\r\n", text + "=="):
        msg = parse_ntlm_b64(variant)
        assert msg is not None and msg.type == 1, variant


def test_truncated_and_unknown_headers() -> None:
    msg = parse_ntlm(SIG + b"\x03")
    assert msg is not None
    assert (msg.type, msg.problems) == (0, ("truncated: no message type",))
    msg = parse_ntlm(SIG + struct.pack("<I", 7))
    assert msg is not None
    assert (msg.type, msg.problems) == (7, ("unknown message type 7",))
    msg = parse_ntlm(SIG + struct.pack("<I", 3) + bytes(20))
    assert msg is not None
    assert msg.problems == ("truncated: AUTHENTICATE header shorter than 52 bytes",)
    msg = parse_ntlm(SIG + struct.pack("<I", 2) + bytes(10))
    assert msg is not None
    assert msg.problems == ("truncated: CHALLENGE header shorter than 32 bytes",)


def test_timestamps_out_of_range_do_not_raise() -> None:
    assert filetime_iso(0) == "1601-01-01T00:00:00Z"
    assert filetime_iso(2**64 - 1) == "invalid (0xffffffffffffffff)"


def test_junk_never_raises() -> None:
    rng = random.Random(1234)
    samples = [
        negotiate(UNICODE | NTLM | VERSION | DOMAIN_SUPPLIED, b"D", b"W"),
        challenge(V2_FLAGS, u16("CONTOSO"), V2_PAIRS),
        authenticate(V2_FLAGS, bytes(24), ntlmv2_response(V2_PAIRS), u16("D"), u16("u"), u16("w")),
    ]
    count = 0
    for sample in samples:
        for cut in range(len(sample) + 1):
            msg = parse_ntlm(sample[:cut])
            assert (msg is None) == (cut < 8)
            count += 1
        for _ in range(300):
            mutated = bytearray(sample)
            for _ in range(rng.randint(1, 8)):
                mutated[rng.randrange(8, len(mutated))] = rng.randrange(256)
            msg = parse_ntlm(bytes(mutated))
            assert msg is not None
            json.dumps(msg.to_dict())
            count += 1
    for _ in range(300):
        junk = SIG + rng.randbytes(rng.randrange(0, 200))
        assert parse_ntlm(junk) is not None
    big = parse_ntlm(SIG + struct.pack("<I", 1) + bytes(70_000))
    assert big is not None
    assert big.problems[0] == "message of 70012 bytes cut to 65536"
    assert count > 900


# --- real messages: the bundled capture and public ones ----------------------------------------


def _blobs(pcap: Path) -> list[str]:
    """Every NTLMSSP base64 blob in a capture: credentials, then challenge token68s, in order."""
    out = []
    for event in analyze_paths([str(pcap)]).events:
        texts = [event.credential] + [c.token68 for c in event.challenges]
        out.extend(t for t in texts if t and t.startswith("TlRMTVNTUA"))
    return out


def test_exchange_sfb_capture_matches_truth() -> None:
    truth = json.loads(SFB_TRUTH.read_text())["ntlm"]
    messages = [parse_ntlm_b64(blob) for blob in _blobs(SFB_PCAP)]
    assert [m.type for m in messages if m] == [1, 2, 3]
    type1, type2, type3 = messages
    assert type1 is not None and type2 is not None and type3 is not None
    assert type1.version == "10.0.17763 (NTLM rev 15)"
    expected_fp = hashlib.sha256(bytes.fromhex(truth["server_challenge"])).hexdigest()[:12]
    assert type2.challenge_fp == expected_fp
    assert type2.target_name == "CONTOSO"
    assert type2.target_info["DnsComputerName"] == "mail.contoso.com"
    assert (type3.domain, type3.user, type3.workstation) == (
        truth["domain"],
        truth["user"],
        truth["workstation"],
    )
    assert type3.response == ("NTLMv2" if truth["ntlmv2"] else "NTLMv1")
    assert type3.has_mic is truth["mic"]
    assert type3.target_info["TargetName"] == truth["target_spn"]
    assert type3.target_info["Timestamp"] == type2.target_info["Timestamp"]
    assert (type3.lm_response_len, type3.nt_response_len) == (24, 256)
    assert all(m.problems == () for m in messages if m)
    shown = json.dumps([m.to_dict() for m in messages if m])
    assert truth["server_challenge"] not in shown
    assert truth["password"] not in shown


def _expected(name: str) -> dict:
    return next(c for c in public_expected()["captures"] if c["file"] == name)


def _users(messages: list) -> set[str]:
    return {f"{m.domain}\\{m.user}@{m.workstation}" for m in messages if m.type == 3}


@needs_public("csl__http-ntlm.pcap")
def test_public_csl_http_ntlm() -> None:
    expected = _expected("csl__http-ntlm.pcap")
    messages = [parse_ntlm_b64(blob) for blob in _blobs(PUBLIC / "csl__http-ntlm.pcap")]
    assert all(m is not None for m in messages)
    assert len(messages) == expected["ntlmssp"]["messages"] == 14
    assert sorted(m.type for m in messages) == [1] * 7 + [3] * 7
    assert _users(messages) == set(expected["ntlmssp"]["users"])
    type3 = [m for m in messages if m.type == 3]
    assert {(m.response, m.version, m.has_mic) for m in type3} == {
        ("NTLMv1-ESS", "5.1.2600 (NTLM rev 15)", False)
    }


@needs_public("ndpi__webdav.pcap")
def test_public_ndpi_webdav() -> None:
    expected = _expected("ndpi__webdav.pcap")
    messages = [parse_ntlm_b64(blob) for blob in _blobs(PUBLIC / "ndpi__webdav.pcap")]
    assert all(m is not None for m in messages)
    assert len(messages) == expected["ntlmssp"]["messages"] == 21
    assert _users(messages) == set(expected["ntlmssp"]["users"])
    type2 = [m for m in messages if m.type == 2]
    assert len(type2) == 7
    assert {m.target_name for m in type2} == {"DLP-TEST-R5"}
    first = type2[0]
    assert first.unicode is False
    assert first.version == "10.0.20348 (NTLM rev 15)"
    assert {k: v for k, v in first.target_info.items() if k != "Timestamp"} == {
        "NbDomainName": "DLP-TEST-R5",
        "NbComputerName": "DLP-TEST-R5",
        "DnsDomainName": "DLP-TEST-R5",
        "DnsComputerName": "DLP-TEST-R5",
    }
    assert first.target_info["Timestamp"] == "2024-07-11T08:28:14Z"
    assert len({m.challenge_fp for m in type2}) == 7
    type3 = [m for m in messages if m.type == 3]
    assert {(m.response, m.unicode, m.nt_response_len) for m in type3} == {("NTLMv2", False, 168)}


@needs_public("ndpi__webdav.pcap")
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_public_webdav_agrees_with_tshark() -> None:
    pcap = PUBLIC / "ndpi__webdav.pcap"
    fields = ["ntlmssp.auth.username", "ntlmssp.auth.domain", "ntlmssp.auth.hostname"]
    cmd = ["tshark", "-r", str(pcap), "-Y", "ntlmssp", "-T", "fields"]
    for name in fields:
        cmd += ["-e", name]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    theirs = [tuple(line.split("\t")) for line in out.splitlines() if line.strip()]
    ours = [
        (m.user, m.domain, m.workstation)
        for m in (parse_ntlm_b64(blob) for blob in _blobs(pcap))
        if m is not None and m.type == 3
    ]
    assert len(theirs) == 7
    assert ours == theirs
