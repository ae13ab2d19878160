"""Negotiate/SPNEGO/Kerberos decoding: tokens built with pyasn1 encoders, plus the captured ones."""

from __future__ import annotations

import base64
import json
import random
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pyasn1.codec.der import encoder
from pyasn1.type import char, tag, univ, useful

from analyzer.auth.spnego import parse_negotiate, parse_negotiate_b64
from analyzer.engine import analyze_paths

ROOT = Path(__file__).resolve().parents[1]
SFB_PCAP = ROOT / "captures" / "exchange-sfb.pcap"
SFB_TRUTH = ROOT / "captures" / "exchange-sfb.truth.json"

SPNEGO, KRB5, MS_KRB5 = "1.3.6.1.5.5.2", "1.2.840.113554.1.2.2", "1.2.840.48018.1.2.2"
NTLM, NEGOEX = "1.3.6.1.4.1.311.2.2.10", "1.3.6.1.4.1.311.2.2.30"
TICKET_CIPHER = b"\xc1" * 40 + b"ticket-ciphertext"
AUTH_CIPHER = b"\xa7" * 30 + b"authenticator"


# --- builders (pyasn1 values, explicit tags as in the RFC 4120 / 4178 modules) -----------------


def ctx(n: int) -> tag.Tag:
    return tag.Tag(tag.tagClassContext, tag.tagFormatConstructed, n)


def app(n: int) -> tag.Tag:
    return tag.Tag(tag.tagClassApplication, tag.tagFormatConstructed, n)


def tagged(asn1: Any, *tags: tag.Tag) -> Any:
    """``asn1`` wrapped in explicit tags, innermost first."""
    for t in tags:
        asn1 = asn1.subtype(explicitTag=t)
    return asn1


def seq(items: list[Any], *tags: tag.Tag) -> Any:
    value = tagged(univ.Sequence(), *tags)
    for i, item in enumerate(items):
        value.setComponentByPosition(i, item)
    return value


def seq_of(component: Any, items: list[Any], *tags: tag.Tag) -> Any:
    value = tagged(univ.SequenceOf(componentType=component), *tags)
    value.extend(items)
    return value


def integer(n: int, k: int) -> Any:
    return tagged(univ.Integer(n), ctx(k))


def kstr(text: str, k: int) -> Any:
    return tagged(char.GeneralString(text), ctx(k))


def principal(parts: list[str], *tags: tag.Tag) -> Any:
    names = seq_of(char.GeneralString(), [char.GeneralString(p) for p in parts], ctx(1))
    return seq([integer(2, 0), names], *tags)


def enc_data(etype: int, cipher: bytes, kvno: int | None, *tags: tag.Tag) -> Any:
    items = [integer(etype, 0)]
    if kvno is not None:
        items.append(integer(kvno, 1))
    items.append(tagged(univ.OctetString(cipher), ctx(2)))
    return seq(items, *tags)


def ap_req(realm: str, sname: list[str], etype: int, kvno: int | None) -> bytes:
    ticket = seq(
        [
            integer(5, 0),
            kstr(realm, 1),
            principal(sname, ctx(2)),
            enc_data(etype, TICKET_CIPHER, kvno, ctx(3)),
        ],
        app(1),
        ctx(3),
    )
    options = tagged(univ.BitString("00100000000000000000000000000000"), ctx(2))
    body = [
        integer(5, 0),
        integer(14, 1),
        options,
        ticket,
        enc_data(etype, AUTH_CIPHER, None, ctx(4)),
    ]
    return encoder.encode(seq(body, app(14)))


def ap_rep(etype: int) -> bytes:
    body = [integer(5, 0), integer(15, 1), enc_data(etype, b"\x99" * 20, None, ctx(2))]
    return encoder.encode(seq(body, app(15)))


def krb_error(code: int, realm: str, sname: list[str], e_text: str | None = None) -> bytes:
    items = [
        integer(5, 0),
        integer(30, 1),
        tagged(useful.GeneralizedTime("20260302090000Z"), ctx(4)),
        integer(0, 5),
        integer(code, 6),
        kstr(realm, 9),
        principal(sname, ctx(10)),
    ]
    if e_text is not None:
        items.append(kstr(e_text, 11))
    return encoder.encode(seq(items, app(30)))


def gss(oid: str, inner: bytes) -> bytes:
    """RFC 2743 InitialContextToken: [APPLICATION 0] { OID, innerContextToken }."""
    content = encoder.encode(univ.ObjectIdentifier(oid)) + inner
    return encoder.encode(tagged(univ.Any(content), app(0)))


def krb5_token(tok_id: bytes, message: bytes, oid: str = KRB5) -> bytes:
    return gss(oid, tok_id + message)


def oids(*dotted: str) -> Any:
    return seq_of(univ.ObjectIdentifier(), [univ.ObjectIdentifier(o) for o in dotted], ctx(0))


def neg_init(mechs: list[str], token: bytes | None = None, hints: bool = False) -> bytes:
    items = [oids(*mechs)]
    if token is not None:
        items.append(tagged(univ.OctetString(token), ctx(2)))
    if hints:  # MS-SPNG NegTokenInit2 negHints
        hint = kstr("not_defined_in_RFC4178@please_ignore", 0)
        items.append(seq([hint], ctx(3)))
    init = seq(items, ctx(0))
    return gss(SPNEGO, encoder.encode(init))


def neg_resp(state: int | None, mech: str | None = None, token: bytes | None = None) -> bytes:
    items = []
    if state is not None:
        items.append(tagged(univ.Enumerated(state), ctx(0)))
    if mech is not None:
        items.append(tagged(univ.ObjectIdentifier(mech), ctx(1)))
    if token is not None:
        items.append(tagged(univ.OctetString(token), ctx(2)))
    return encoder.encode(seq(items, ctx(1)))


def ntlm_negotiate() -> bytes:
    return (
        b"NTLMSSP\x00"
        + struct.pack("<II", 1, 0xE2088297)
        + struct.pack("<HHIHHI", 0, 0, 32, 0, 0, 32)
    )


def ntlm_challenge() -> bytes:
    target = "WEB".encode("utf-16-le")
    info = struct.pack("<HH", 1, len(target)) + target + b"\x00" * 4
    return (
        b"NTLMSSP\x00"
        + struct.pack("<I", 2)
        + struct.pack("<HHI", len(target), len(target), 48)
        + struct.pack("<I", 0x00808205)
        + b"\x11" * 8
        + bytes(8)
        + struct.pack("<HHI", len(info), len(info), 48 + len(target))
        + target
        + info
    )


AP_REQ = ap_req("EXAMPLE.COM", ["HTTP", "web.example.com"], 23, 3)
INIT_KRB = neg_init([MS_KRB5, KRB5, NEGOEX, NTLM], krb5_token(b"\x01\x00", AP_REQ))


# --- NegTokenInit ------------------------------------------------------------------------------


def test_init_with_kerberos_ap_req() -> None:
    token = parse_negotiate(INIT_KRB)
    assert token is not None
    assert (token.kind, token.mechanism) == ("init", "kerberos")
    assert token.mech_types == ("ms-kerberos", "kerberos", "negoex", "ntlm")
    assert token.supported_mech is None and token.neg_state is None and token.ntlm is None
    krb = token.kerberos
    assert krb is not None
    assert (krb.message, krb.realm, krb.sname) == ("AP-REQ", "EXAMPLE.COM", "HTTP/web.example.com")
    assert (krb.etype, krb.etype_name, krb.kvno) == (23, "rc4-hmac", 3)
    assert (krb.error_code, krb.error_name) == (None, None)
    assert token.problems == ()
    shown = json.dumps(token.to_dict()) + repr(token)
    assert "ticket-ciphertext" not in shown and "authenticator" not in shown.lower()
    assert TICKET_CIPHER.hex()[:16] not in shown


def test_init_with_ms_kerberos_inner_oid_and_aes() -> None:
    inner = krb5_token(b"\x01\x00", ap_req("CORP.LOCAL", ["HOST", "fs1"], 18, None), MS_KRB5)
    token = parse_negotiate(neg_init([MS_KRB5, NTLM], inner))
    assert token is not None
    krb = token.kerberos
    assert krb is not None
    assert (krb.realm, krb.sname, krb.etype_name, krb.kvno) == (
        "CORP.LOCAL",
        "HOST/fs1",
        "aes256-cts-hmac-sha1-96",
        None,
    )
    assert token.problems == ()


def test_init_with_ntlm_mech_token() -> None:
    token = parse_negotiate(neg_init([NTLM], ntlm_negotiate()))
    assert token is not None
    assert (token.kind, token.mechanism, token.mech_types) == ("init", "ntlm", ("ntlm",))
    assert token.ntlm is not None and token.ntlm.type == 1
    assert token.kerberos is None
    assert token.problems == ()


def test_init_without_mech_token_uses_first_mech() -> None:
    token = parse_negotiate(neg_init([NEGOEX, KRB5, "1.2.3.4.5"]))
    assert token is not None
    assert (token.kind, token.mechanism) == ("init", "negoex")
    assert token.mech_types == ("negoex", "kerberos", "1.2.3.4.5")
    token = parse_negotiate(neg_init(["1.2.3.4.5", NTLM]))
    assert token is not None
    assert token.mechanism == "unknown"


def test_neg_token_init2_with_hints() -> None:
    token = parse_negotiate(neg_init([MS_KRB5, KRB5, NTLM], hints=True))
    assert token is not None
    assert (token.kind, token.mechanism) == ("init", "kerberos")
    assert token.mech_types == ("ms-kerberos", "kerberos", "ntlm")
    assert token.problems == ()


def test_optimistic_token_not_for_first_mech_is_flagged() -> None:
    token = parse_negotiate(neg_init([KRB5, NTLM], ntlm_negotiate()))
    assert token is not None
    assert token.mechanism == "ntlm"
    assert token.problems == (
        "optimistic mechToken is ntlm but the first offered mech is kerberos",
    )


def test_negoex_mech_token() -> None:
    negoex = b"NEGOEXTS" + bytes(40)
    token = parse_negotiate(neg_init([NEGOEX, NTLM], negoex))
    assert token is not None
    assert (token.mechanism, token.kerberos, token.ntlm, token.problems) == (
        "negoex",
        None,
        None,
        (),
    )


# --- NegTokenResp ------------------------------------------------------------------------------


def test_resp_accept_completed_with_ap_rep() -> None:
    token = parse_negotiate(neg_resp(0, MS_KRB5, krb5_token(b"\x02\x00", ap_rep(18))))
    assert token is not None
    assert (token.kind, token.mechanism) == ("resp", "kerberos")
    assert (token.supported_mech, token.neg_state) == ("ms-kerberos", "accept-completed")
    assert token.mech_types == ()
    krb = token.kerberos
    assert krb is not None
    assert (krb.message, krb.realm, krb.sname, krb.etype, krb.kvno) == (
        "AP-REP",
        None,
        None,
        18,
        None,
    )
    assert token.problems == ()


def test_resp_accept_incomplete_with_ntlm_challenge() -> None:
    token = parse_negotiate(neg_resp(1, NTLM, ntlm_challenge()))
    assert token is not None
    assert (token.kind, token.mechanism, token.neg_state) == ("resp", "ntlm", "accept-incomplete")
    assert token.ntlm is not None
    assert (token.ntlm.type, token.ntlm.target_name) == (2, "WEB")
    assert token.ntlm.target_info == {"NbComputerName": "WEB"}
    assert token.problems == ()


@pytest.mark.parametrize(
    ("code", "name"),
    [(37, "KRB_AP_ERR_SKEW"), (41, "KRB_AP_ERR_MODIFIED"), (7, "KDC_ERR_S_PRINCIPAL_UNKNOWN")],
)
def test_resp_reject_with_krb_error(code: int, name: str) -> None:
    error = krb_error(code, "EXAMPLE.COM", ["HTTP", "web.example.com"], e_text="oops")
    token = parse_negotiate(neg_resp(2, KRB5, krb5_token(b"\x03\x00", error)))
    assert token is not None
    assert (token.kind, token.mechanism, token.neg_state) == ("resp", "kerberos", "reject")
    krb = token.kerberos
    assert krb is not None
    assert (krb.message, krb.error_code, krb.error_name) == ("KRB-ERROR", code, name)
    assert (krb.realm, krb.sname, krb.etype) == ("EXAMPLE.COM", "HTTP/web.example.com", None)
    assert token.problems == ()


def test_resp_without_mech_or_token() -> None:
    token = parse_negotiate(neg_resp(2))
    assert token is not None
    assert (token.kind, token.mechanism, token.neg_state, token.supported_mech) == (
        "resp",
        "unknown",
        "reject",
        None,
    )
    token = parse_negotiate(neg_resp(7))
    assert token is not None
    assert token.neg_state == "unknown(7)"
    token = parse_negotiate(neg_resp(3, KRB5))
    assert token is not None
    assert (token.mechanism, token.neg_state, token.supported_mech) == (
        "kerberos",
        "request-mic",
        "kerberos",
    )


def test_resp_mechanism_from_token_when_no_supported_mech() -> None:
    token = parse_negotiate(neg_resp(1, None, ntlm_challenge()))
    assert token is not None
    assert token.mechanism == "ntlm"


def test_resp_supported_mech_disagreeing_with_token() -> None:
    token = parse_negotiate(neg_resp(1, KRB5, ntlm_challenge()))
    assert token is not None
    assert token.mechanism == "kerberos"
    assert token.problems == ("supportedMech is kerberos but the responseToken is ntlm",)


# --- bare tokens -------------------------------------------------------------------------------


def test_raw_kerberos_gss_token() -> None:
    token = parse_negotiate(krb5_token(b"\x01\x00", AP_REQ))
    assert token is not None
    assert (token.kind, token.mechanism, token.mech_types) == ("krb5", "kerberos", ())
    assert token.kerberos is not None and token.kerberos.sname == "HTTP/web.example.com"
    assert token.problems == ()


def test_raw_ntlmssp_in_negotiate() -> None:
    token = parse_negotiate(ntlm_challenge())
    assert token is not None
    assert (token.kind, token.mechanism) == ("ntlm", "ntlm")
    assert token.ntlm is not None and token.ntlm.type == 2


def test_bare_kerberos_message_without_framing() -> None:
    token = parse_negotiate(AP_REQ)
    assert token is not None
    assert (token.kind, token.mechanism) == ("krb5", "kerberos")
    assert token.kerberos is not None and token.kerberos.realm == "EXAMPLE.COM"
    assert token.problems == ("bare Kerberos message without GSS-API framing",)


def test_tok_id_mismatch_and_other_messages() -> None:
    token = parse_negotiate(krb5_token(b"\x02\x00", AP_REQ))
    assert token is not None
    assert token.kerberos is not None and token.kerberos.message == "AP-REQ"
    assert token.problems == ("TOK_ID 0200 announces AP-REP but carries AP-REQ",)
    tgs_req = encoder.encode(seq([integer(5, 1), integer(12, 2)], app(12)))
    token = parse_negotiate(krb5_token(b"\x01\x00", tgs_req))
    assert token is not None
    krb = token.kerberos
    assert krb is not None
    assert (krb.message, krb.realm, krb.sname, krb.etype) == ("TGS-REQ", None, None, None)
    assert token.problems == ("TOK_ID 0100 announces AP-REQ but carries TGS-REQ",)


def test_unsupported_gss_mechanism() -> None:
    token = parse_negotiate(gss("1.2.3.4", b"\x04\x00payload"))
    assert token is not None
    assert (token.kind, token.mechanism) == ("unknown", "unknown")
    assert token.problems == ("mechanism token for unsupported mechanism 1.2.3.4",)


# --- junk ------------------------------------------------------------------------------------


def test_obvious_non_tokens_are_none() -> None:
    for data in (b"", b"hello", b"\x30\x03\x02\x01\x05", b"\xff" * 10, "text"):
        assert parse_negotiate(data) is None  # type: ignore[arg-type]
    assert parse_negotiate_b64("") is None
    assert parse_negotiate_b64("%%%") is None
    assert parse_negotiate_b64(base64.b64encode(b"plain text").decode()) is None


def test_broken_der_reports_problems() -> None:
    huge = parse_negotiate(b"\x60\x84\xff\xff\xff\xff\x06\x06\x2b\x06\x01\x05\x05\x02")
    assert huge is not None
    assert (huge.kind, huge.mechanism) == ("unknown", "unknown")
    assert huge.problems == ("GSS-API frame: truncated",)
    wrong = parse_negotiate(b"\xa0\x03\x02\x01\x05")
    assert wrong is not None
    assert wrong.problems == ("SPNEGO token: malformed DER or unexpected tag",)
    trailing = parse_negotiate(neg_resp(0, KRB5) + b"\x00\x00")
    assert trailing is not None
    assert trailing.neg_state == "accept-completed"
    assert trailing.problems == ("SPNEGO token: 2 trailing bytes",)
    oversize = parse_negotiate(b"\x60" + bytes(200_000))
    assert oversize is not None
    assert oversize.problems == ("token of 200001 bytes is over the 131072-byte limit",)


def test_junk_never_raises() -> None:
    rng = random.Random(4120)
    samples = [
        INIT_KRB,
        neg_resp(0, MS_KRB5, krb5_token(b"\x02\x00", ap_rep(18))),
        neg_resp(2, KRB5, krb5_token(b"\x03\x00", krb_error(41, "R", ["HTTP", "h"]))),
        neg_init([NTLM], ntlm_negotiate()),
    ]
    decoded = 0
    for sample in samples:
        for cut in range(len(sample)):
            token = parse_negotiate(sample[:cut])
            if token is not None:
                json.dumps(token.to_dict())
                decoded += 1
        for _ in range(150):
            mutated = bytearray(sample)
            for _ in range(rng.randint(1, 4)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            token = parse_negotiate(bytes(mutated))
            if token is not None:
                json.dumps(token.to_dict())
    for first in (0x60, 0xA0, 0xA1, 0x6E, 0x7E):
        for _ in range(100):
            parse_negotiate(bytes([first]) + rng.randbytes(rng.randrange(0, 64)))
    assert decoded > 500


# --- the bundled capture -----------------------------------------------------------------------


def _negotiate_blobs() -> tuple[list[str], list[str]]:
    """(credentials, challenge token68s) of the Negotiate exchanges in exchange-sfb.pcap."""
    creds, challenges = [], []
    for event in analyze_paths([str(SFB_PCAP)]).events:
        if event.scheme == "negotiate" and event.credential:
            creds.append(event.credential)
        challenges.extend(
            c.token68 for c in event.challenges if c.scheme == "negotiate" and c.token68
        )
    return creds, challenges


def test_exchange_sfb_kerberos_matches_truth() -> None:
    truth = json.loads(SFB_TRUTH.read_text())["kerberos"]
    creds, challenges = _negotiate_blobs()
    assert len(creds) == 1 and len(challenges) == 1
    init = parse_negotiate_b64(creds[0])
    assert init is not None
    assert (init.kind, init.mechanism) == ("init", "kerberos")
    assert init.mech_types == ("ms-kerberos", "kerberos", "negoex", "ntlm")
    krb = init.kerberos
    assert krb is not None
    assert (krb.message, krb.realm, krb.sname, krb.etype) == (
        "AP-REQ",
        truth["realm"],
        truth["sname"],
        truth["etype"],
    )
    assert (krb.etype_name, krb.kvno) == ("aes256-cts-hmac-sha1-96", 7)
    assert init.problems == ()
    resp = parse_negotiate_b64(challenges[0])
    assert resp is not None
    assert (resp.kind, resp.mechanism, resp.supported_mech, resp.neg_state) == (
        "resp",
        "kerberos",
        "ms-kerberos",
        "accept-completed",
    )
    assert resp.kerberos is not None and resp.kerberos.message == "AP-REP"
    assert resp.problems == ()


def test_exchange_sfb_ntlm_blobs_read_as_negotiate() -> None:
    events = analyze_paths([str(SFB_PCAP)]).events
    blobs = [e.credential for e in events if e.scheme == "ntlm" and e.credential]
    tokens = [parse_negotiate_b64(b) for b in blobs]
    assert [(t.kind, t.mechanism, t.ntlm.type) for t in tokens if t and t.ntlm] == [
        ("ntlm", "ntlm", 1),
        ("ntlm", "ntlm", 3),
    ]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_exchange_sfb_kerberos_agrees_with_tshark() -> None:
    cmd = ["tshark", "-r", str(SFB_PCAP), "-Y", "kerberos.realm", "-T", "fields"]
    cmd += ["-e", "kerberos.realm", "-e", "kerberos.SNameString"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    rows = [line.split("\t") for line in out.splitlines() if line.strip()]
    creds, _ = _negotiate_blobs()
    token = parse_negotiate_b64(creds[0])
    assert token is not None and token.kerberos is not None
    assert rows == [[token.kerberos.realm, token.kerberos.sname.replace("/", ",")]]
