"""Negotiate tokens from the bundled captures, the capture generators and hand-made variants decode
to exactly the fields the pyasn1-based decoder returned (recorded here), and stay bounded on junk.
"""

from __future__ import annotations

import base64
import importlib
import importlib.util
import json
import random
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from shared_dir import PUBLIC, needs_public, public_captures_listed

from analyzer.auth.ntlm import SIGNATURE, parse_ntlm
from analyzer.auth.spnego import NegotiateToken, parse_negotiate, parse_negotiate_b64
from analyzer.engine import analyze_paths

ROOT = Path(__file__).resolve().parents[1]
KRB5 = "1.2.840.113554.1.2.2"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    if str(ROOT / "captures") not in sys.path:  # the capture generator lives in captures/
        sys.path.insert(0, str(ROOT / "captures"))
    return importlib.import_module("generate")


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return _load("bench_make_capture", ROOT / "bench" / "make_capture.py")


def tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + content


def krb(
    message: str,
    realm: str | None = None,
    sname: str | None = None,
    etype: int | None = 18,
    kvno: int | None = None,
    code: int | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    names = {18: "aes256-cts-hmac-sha1-96", None: None}
    return {
        "message": message,
        "realm": realm,
        "sname": sname,
        "etype": etype,
        "etype_name": names[etype],
        "kvno": kvno,
        "error_code": code,
        "error_name": error,
    }


def expect(kind: str, mechanism: str, **fields: Any) -> dict[str, Any]:
    """A NegotiateToken.to_dict() with ``ntlm`` replaced by the NTLM message type (or None)."""
    out = {
        "kind": kind,
        "mechanism": mechanism,
        "mech_types": [],
        "supported_mech": None,
        "neg_state": None,
        "kerberos": None,
        "ntlm": None,
        "problems": [],
    }
    out.update(fields)
    return out


def view(token: NegotiateToken | None, raw: bytes) -> dict[str, Any]:
    """The token's fields; an NTLM message must equal a direct decode of the one in ``raw``."""
    assert token is not None
    out = token.to_dict()
    if token.ntlm is not None:
        assert token.ntlm == parse_ntlm(raw[raw.index(SIGNATURE) :])
        out["ntlm"] = token.ntlm.type
    json.dumps(out)
    return out


AP_REQ_SP = krb("AP-REQ", "CONTOSO.COM", "HTTP/sp.contoso.com", kvno=7)
KRB_ERROR_41 = krb(
    "KRB-ERROR", "CONTOSO.COM", "HTTP/sp.contoso.com", None, None, 41, "KRB_AP_ERR_MODIFIED"
)
ALL_MECHS = ["ms-kerberos", "kerberos", "negoex", "ntlm"]


# --- tokens in the bundled captures ----------------------------------------------------------

CAPTURED = {
    "classes.pcap": [
        expect("init", "ntlm", mech_types=["ntlm"], ntlm=1),
        expect("resp", "ntlm", supported_mech="ntlm", neg_state="accept-incomplete", ntlm=2),
        expect("resp", "ntlm", ntlm=3),
        expect("resp", "unknown", neg_state="accept-completed"),
        expect("init", "kerberos", mech_types=ALL_MECHS, kerberos=AP_REQ_SP),
        expect(
            "resp",
            "kerberos",
            supported_mech="ms-kerberos",
            neg_state="reject",
            kerberos=KRB_ERROR_41,
        ),
    ],
    "exchange-sfb.pcap": [
        expect(
            "init",
            "kerberos",
            mech_types=ALL_MECHS,
            kerberos=krb("AP-REQ", "CONTOSO.COM", "HTTP/mail.contoso.com", kvno=7),
        ),
        expect(
            "resp",
            "kerberos",
            supported_mech="ms-kerberos",
            neg_state="accept-completed",
            kerberos=krb("AP-REP"),
        ),
    ],
}


def negotiate_blobs(path: Path) -> list[str]:
    """Every Negotiate credential and challenge token68 in a capture, in event order."""
    blobs = []
    for event in analyze_paths([str(path)]).events:
        if event.scheme == "negotiate" and event.credential:
            blobs.append(event.credential)
        blobs.extend(c.token68 for c in event.challenges if c.scheme == "negotiate" and c.token68)
    return blobs


@pytest.mark.parametrize("name", sorted(CAPTURED))
def test_bundled_capture_tokens(name: str) -> None:
    blobs = negotiate_blobs(ROOT / "captures" / name)
    decoded = [view(parse_negotiate_b64(b), base64.b64decode(b)) for b in blobs]
    assert decoded == CAPTURED[name]


# --- tokens built by the capture generators --------------------------------------------------


def test_generator_tokens(gen: ModuleType) -> None:
    ap_req = gen.kerberos_ap_req("CONTOSO.COM", "HTTP", "sp.contoso.com", "classes-krb")
    krb_err = gen.kerberos_error(41, "CONTOSO.COM", "HTTP", "sp.contoso.com", 1772460000)
    type1 = gen.ntlm_negotiate()
    cases = [
        (
            gen.spnego_init_krb5(ap_req),
            expect("init", "kerberos", mech_types=ALL_MECHS, kerberos=AP_REQ_SP),
        ),
        (
            gen.spnego_resp_krb5("krb-alice-aprep"),
            expect(
                "resp",
                "kerberos",
                supported_mech="ms-kerberos",
                neg_state="accept-completed",
                kerberos=krb("AP-REP"),
            ),
        ),
        (
            gen.spnego_resp(2, gen.OID_MS_KRB5, krb_err),
            expect(
                "resp",
                "kerberos",
                supported_mech="ms-kerberos",
                neg_state="reject",
                kerberos=KRB_ERROR_41,
            ),
        ),
        (gen.spnego_resp(0), expect("resp", "unknown", neg_state="accept-completed")),
        (gen.spnego_init_ntlm(type1), expect("init", "ntlm", mech_types=["ntlm"], ntlm=1)),
        (
            gen.spnego_resp(1, gen.OID_NTLM, type1),
            expect("resp", "ntlm", supported_mech="ntlm", neg_state="accept-incomplete", ntlm=1),
        ),
        (
            ap_req,
            expect(
                "krb5",
                "kerberos",
                kerberos=AP_REQ_SP,
                problems=["bare Kerberos message without GSS-API framing"],
            ),
        ),
    ]
    for raw, expected in cases:
        assert view(parse_negotiate(raw), raw) == expected
        assert view(parse_negotiate_b64(base64.b64encode(raw).decode()), raw) == expected


def test_benchmark_generator_tokens(bench: ModuleType) -> None:
    rng = random.Random(2026)
    init = bench.spnego_init(bench.kerberos_ap_req(rng, "CONTOSO.LOCAL", "web.contoso.local"))
    assert view(parse_negotiate(init), init) == expect(
        "init",
        "kerberos",
        mech_types=["ms-kerberos", "kerberos", "ntlm"],
        kerberos=krb("AP-REQ", "CONTOSO.LOCAL", "HTTP/web.contoso.local", kvno=2),
    )
    accept = bench.spnego_accept(rng)
    assert view(parse_negotiate(accept), accept) == expect(
        "resp",
        "kerberos",
        supported_mech="kerberos",
        neg_state="accept-completed",
        kerberos=krb("AP-REP"),
    )


def test_windows_smb_style_neg_token_init2() -> None:
    """The NTLM-only NegTokenInit2 with the MS-SPNG hint Windows servers send, byte for byte."""
    raw = bytes.fromhex(
        "604806062b0601050502a03e303ca00e300c060a2b06010401823702020aa32a3028a0261b246e6f745f"
        "646566696e65645f696e5f5246433431373840706c656173655f69676e6f7265"
    )
    assert view(parse_negotiate(raw), raw) == expect("init", "ntlm", mech_types=["ntlm"])


# --- broken variants of a generated token ----------------------------------------------------


def ap_rep(etype: bytes) -> bytes:
    enc = tlv(0x30, tlv(0xA0, tlv(0x02, etype)) + tlv(0xA2, tlv(0x04, b"\x99" * 20)))
    body = tlv(0xA0, b"\x02\x01\x05") + tlv(0xA1, b"\x02\x01\x0f") + tlv(0xA2, enc)
    return tlv(0x6F, tlv(0x30, body))


def krb5_frame(message: bytes, tok_id: bytes = b"\x02\x00") -> bytes:
    return tlv(0x60, bytes.fromhex("06092a864886f712010202") + tok_id + message)


def test_broken_variants(gen: ModuleType) -> None:
    init = gen.spnego_init_krb5(
        gen.kerberos_ap_req("CONTOSO.COM", "HTTP", "sp.contoso.com", "classes-krb")
    )
    resp = gen.spnego_resp_krb5("krb-alice-aprep")
    err = gen.kerberos_error(41, "CONTOSO.COM", "HTTP", "sp.contoso.com", 1772460000)
    failed_ap_req = krb("AP-REQ", etype=None)
    failed_krb_error = krb("KRB-ERROR", etype=None)
    unknown = "unknown"
    cases = {
        "cut by one byte": (init[:-1], expect(unknown, unknown, problems=[FRAME_CUT])),
        "cut in the mechanism list": (init[:40], expect(unknown, unknown, problems=[FRAME_CUT])),
        "trailing bytes": (
            init + b"\x00\x00",
            expect(
                "init",
                "kerberos",
                mech_types=ALL_MECHS,
                kerberos=AP_REQ_SP,
                problems=["GSS-API frame: 2 trailing bytes"],
            ),
        ),
        "realm as UTF8String": (
            init.replace(b"\x1b\x0bCONTOSO.COM", b"\x0c\x0bCONTOSO.COM"),
            expect(
                "init",
                "kerberos",
                mech_types=ALL_MECHS,
                kerberos=failed_ap_req,
                problems=["AP-REQ: malformed DER or unexpected tag"],
            ),
        ),
        "indefinite length": (
            b"\xa1\x80\x30\x03\xa0\x01\x0a\x00\x00",
            expect(unknown, unknown, problems=[MALFORMED]),
        ),
        "KRB-ERROR time not ASCII": (
            gen.spnego_resp(2, gen.OID_MS_KRB5, err.replace(b"Z", b"\xda", 1)),
            expect(
                "resp",
                "kerberos",
                supported_mech="ms-kerberos",
                neg_state="reject",
                kerberos=failed_krb_error,
                problems=["KRB-ERROR: malformed DER or unexpected tag"],
            ),
        ),
        "mechanism OID cut inside an arc": (
            b"\x60\x04\x06\x02\x2a\x86",
            expect(unknown, unknown, problems=["GSS-API frame: no mechanism OID (truncated)"]),
        ),
        "length longer than the content": (
            b"\xa1\x7f" + resp[2:],
            expect(unknown, unknown, problems=[MALFORMED]),
        ),
        "non-minimal length (BER) is tolerated": (
            b"\xa1\x82\x00" + resp[2:],
            expect(
                "resp",
                "kerberos",
                supported_mech="ms-kerberos",
                neg_state="accept-completed",
                kerberos=krb("AP-REP"),
            ),
        ),
        # Deliberately stricter than pyasn1, which read this 9-octet INTEGER as 18.
        "integer over 8 octets": (
            tlv(0xA1, tlv(0x30, tlv(0xA2, tlv(0x04, krb5_frame(ap_rep(bytes(8) + b"\x12")))))),
            expect(
                "resp",
                "kerberos",
                kerberos=krb("AP-REP", etype=None),
                problems=["AP-REP: malformed DER or unexpected tag"],
            ),
        ),
        # pyasn1 decoded this and then raised ValueError turning the etype into text.
        "2001-octet etype": (
            ap_rep(b"\x01" + bytes(2000)),
            expect(
                "krb5",
                "kerberos",
                kerberos=krb("AP-REP", etype=None),
                problems=[
                    "bare Kerberos message without GSS-API framing",
                    "AP-REP: malformed DER or unexpected tag",
                ],
            ),
        ),
    }
    for name, (raw, expected) in cases.items():
        assert view(parse_negotiate(raw), raw) == expected, name


FRAME_CUT = "GSS-API frame: truncated"
MALFORMED = "SPNEGO token: malformed DER or unexpected tag"


def test_every_prefix_and_many_mutations_stay_bounded(gen: ModuleType) -> None:
    ap_req = gen.kerberos_ap_req("CONTOSO.COM", "HTTP", "sp.contoso.com", "prefix")
    samples = [
        gen.spnego_init_krb5(ap_req),
        gen.spnego_resp_krb5("prefix"),
        gen.spnego_resp(2, KRB5, gen.kerberos_error(7, "R", "HTTP", "h", 1772460000)),
    ]
    rng = random.Random(4178)
    for sample in samples:
        for cut in range(len(sample)):
            token = parse_negotiate(sample[:cut])
            assert token is None or token.problems, cut
        for _ in range(300):
            mutated = bytearray(sample)
            for _ in range(rng.randint(1, 3)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            token = parse_negotiate(bytes(mutated))
            if token is not None:
                json.dumps(token.to_dict())


# --- public captures -------------------------------------------------------------------------


def _public_with_negotiate() -> list[str]:
    names = []
    for capture in public_captures_listed():
        counts = capture.get("counts", {})
        headers = {
            **counts.get("http_authorization", {}),
            **counts.get("http_www_authenticate", {}),
        }
        if any(scheme.lower() == "negotiate" for scheme in headers):
            names.append(capture["file"])
    return names


@needs_public("expected.json")
@pytest.mark.skipif(not _public_with_negotiate(), reason="no public capture carries Negotiate")
@pytest.mark.parametrize("name", _public_with_negotiate() or ["none"])
def test_public_capture_tokens_decode_cleanly(name: str) -> None:
    blobs = negotiate_blobs(PUBLIC / name)
    assert blobs
    for blob in blobs:
        token = parse_negotiate_b64(blob)
        assert token is not None and token.problems == (), name
        assert token.kind in ("init", "resp", "krb5", "ntlm")
