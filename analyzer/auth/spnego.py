"""Negotiate (SPNEGO) token decoder: which mechanism a Windows client or server really used.

Covers RFC 2743 GSS-API framing, RFC 4178 SPNEGO (with the MS-SPNG NegTokenInit2 variant),
the RFC 4121 Kerberos GSS token and the RFC 4120 messages in it (AP-REQ ticket realm, service
name and enctype; AP-REP; KRB-ERROR codes), plus raw NTLMSSP sent under the Negotiate scheme.
ASN.1 is read by the strict DER reader in ``analyzer.auth.der`` against the schemas below;
ciphertext, authenticators and MICs are never kept. Hostile input never raises: it yields
problems, or None for obvious non-tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analyzer.auth import der
from analyzer.auth.ntlm import SIGNATURE as NTLM_SIGNATURE
from analyzer.auth.ntlm import NtlmMessage, b64decode_lenient, parse_ntlm

#: Largest token decoded (Windows MaxTokenSize tops out at 64 KiB; PAC-heavy tickets come close).
MAX_TOKEN = 128 * 1024

OID_SPNEGO = "1.3.6.1.5.5.2"
OID_KRB5 = "1.2.840.113554.1.2.2"
OID_MS_KRB5 = "1.2.840.48018.1.2.2"
OID_NTLM = "1.3.6.1.4.1.311.2.2.10"
OID_NEGOEX = "1.3.6.1.4.1.311.2.2.30"
MECH_NAMES = {
    OID_KRB5: "kerberos",
    OID_MS_KRB5: "ms-kerberos",
    OID_NTLM: "ntlm",
    OID_NEGOEX: "negoex",
}
#: Offered/selected mech name -> the mechanism it stands for.
MECHANISMS = {"kerberos": "kerberos", "ms-kerberos": "kerberos", "ntlm": "ntlm", "negoex": "negoex"}
NEGOEX_SIGNATURE = b"NEGOEXTS"
NEG_STATES = {0: "accept-completed", 1: "accept-incomplete", 2: "reject", 3: "request-mic"}

#: RFC 4121 4.1 TOK_ID -> the Kerberos message it must carry.
TOK_IDS = {b"\x01\x00": "AP-REQ", b"\x02\x00": "AP-REP", b"\x03\x00": "KRB-ERROR"}

#: Encryption types (RFC 3961, 3962, 4757, 6803, 8009).
ETYPE_NAMES = {
    1: "des-cbc-crc",
    2: "des-cbc-md4",
    3: "des-cbc-md5",
    5: "des3-cbc-md5",
    7: "des3-cbc-sha1",
    16: "des3-cbc-sha1-kd",
    17: "aes128-cts-hmac-sha1-96",
    18: "aes256-cts-hmac-sha1-96",
    19: "aes128-cts-hmac-sha256-128",
    20: "aes256-cts-hmac-sha384-192",
    23: "rc4-hmac",
    24: "rc4-hmac-exp",
    25: "camellia128-cts-cmac",
    26: "camellia256-cts-cmac",
}

#: KRB-ERROR error-code names (RFC 4120 7.5.9; 77-81 from RFC 4556 PKINIT, 90-93 RFC 6113).
ERROR_NAMES = {
    0: "KDC_ERR_NONE",
    1: "KDC_ERR_NAME_EXP",
    2: "KDC_ERR_SERVICE_EXP",
    3: "KDC_ERR_BAD_PVNO",
    4: "KDC_ERR_C_OLD_MAST_KVNO",
    5: "KDC_ERR_S_OLD_MAST_KVNO",
    6: "KDC_ERR_C_PRINCIPAL_UNKNOWN",
    7: "KDC_ERR_S_PRINCIPAL_UNKNOWN",
    8: "KDC_ERR_PRINCIPAL_NOT_UNIQUE",
    9: "KDC_ERR_NULL_KEY",
    10: "KDC_ERR_CANNOT_POSTDATE",
    11: "KDC_ERR_NEVER_VALID",
    12: "KDC_ERR_POLICY",
    13: "KDC_ERR_BADOPTION",
    14: "KDC_ERR_ETYPE_NOSUPP",
    15: "KDC_ERR_SUMTYPE_NOSUPP",
    16: "KDC_ERR_PADATA_TYPE_NOSUPP",
    17: "KDC_ERR_TRTYPE_NOSUPP",
    18: "KDC_ERR_CLIENT_REVOKED",
    19: "KDC_ERR_SERVICE_REVOKED",
    20: "KDC_ERR_TGT_REVOKED",
    21: "KDC_ERR_CLIENT_NOTYET",
    22: "KDC_ERR_SERVICE_NOTYET",
    23: "KDC_ERR_KEY_EXPIRED",
    24: "KDC_ERR_PREAUTH_FAILED",
    25: "KDC_ERR_PREAUTH_REQUIRED",
    26: "KDC_ERR_SERVER_NOMATCH",
    27: "KDC_ERR_MUST_USE_USER2USER",
    28: "KDC_ERR_PATH_NOT_ACCEPTED",
    29: "KDC_ERR_SVC_UNAVAILABLE",
    31: "KRB_AP_ERR_BAD_INTEGRITY",
    32: "KRB_AP_ERR_TKT_EXPIRED",
    33: "KRB_AP_ERR_TKT_NYV",
    34: "KRB_AP_ERR_REPEAT",
    35: "KRB_AP_ERR_NOT_US",
    36: "KRB_AP_ERR_BADMATCH",
    37: "KRB_AP_ERR_SKEW",
    38: "KRB_AP_ERR_BADADDR",
    39: "KRB_AP_ERR_BADVERSION",
    40: "KRB_AP_ERR_MSG_TYPE",
    41: "KRB_AP_ERR_MODIFIED",
    42: "KRB_AP_ERR_BADORDER",
    44: "KRB_AP_ERR_BADKEYVER",
    45: "KRB_AP_ERR_NOKEY",
    46: "KRB_AP_ERR_MUT_FAIL",
    47: "KRB_AP_ERR_BADDIRECTION",
    48: "KRB_AP_ERR_METHOD",
    49: "KRB_AP_ERR_BADSEQ",
    50: "KRB_AP_ERR_INAPP_CKSUM",
    51: "KRB_AP_PATH_NOT_ACCEPTED",
    52: "KRB_ERR_RESPONSE_TOO_BIG",
    60: "KRB_ERR_GENERIC",
    61: "KRB_ERR_FIELD_TOOLONG",
    62: "KDC_ERROR_CLIENT_NOT_TRUSTED",
    63: "KDC_ERROR_KDC_NOT_TRUSTED",
    64: "KDC_ERROR_INVALID_SIG",
    65: "KDC_ERR_KEY_TOO_WEAK",
    66: "KDC_ERR_CERTIFICATE_MISMATCH",
    67: "KRB_AP_ERR_NO_TGT",
    68: "KDC_ERR_WRONG_REALM",
    69: "KRB_AP_ERR_USER_TO_USER_REQUIRED",
    70: "KDC_ERR_CANT_VERIFY_CERTIFICATE",
    71: "KDC_ERR_INVALID_CERTIFICATE",
    72: "KDC_ERR_REVOKED_CERTIFICATE",
    73: "KDC_ERR_REVOCATION_STATUS_UNKNOWN",
    74: "KDC_ERR_REVOCATION_STATUS_UNAVAILABLE",
    75: "KDC_ERR_CLIENT_NAME_MISMATCH",
    76: "KDC_ERR_KDC_NAME_MISMATCH",
    77: "KDC_ERR_INCONSISTENT_KEY_PURPOSE",
    78: "KDC_ERR_DIGEST_IN_CERT_NOT_ACCEPTED",
    79: "KDC_ERR_PA_CHECKSUM_MUST_BE_INCLUDED",
    80: "KDC_ERR_DIGEST_IN_SIGNED_DATA_NOT_ACCEPTED",
    81: "KDC_ERR_PUBLIC_KEY_ENCRYPTION_NOT_SUPPORTED",
    90: "KDC_ERR_PREAUTH_EXPIRED",
    91: "KDC_ERR_MORE_PREAUTH_DATA_REQUIRED",
    93: "KDC_ERR_UNKNOWN_CRITICAL_FAST_OPTIONS",
}


@dataclass(frozen=True, slots=True)
class KerberosInfo:
    """What a Kerberos GSS token says in clear text (the encrypted parts stay opaque)."""

    message: str  # AP-REQ, AP-REP, KRB-ERROR, TGS-REQ, ...
    realm: str | None  # ticket realm (AP-REQ), service realm (KRB-ERROR)
    sname: str | None  # service principal, components joined with "/"
    etype: int | None  # ticket enc-part etype (AP-REQ), enc-part etype (AP-REP)
    etype_name: str | None
    kvno: int | None
    error_code: int | None = None  # KRB-ERROR
    error_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "realm": self.realm,
            "sname": self.sname,
            "etype": self.etype,
            "etype_name": self.etype_name,
            "kvno": self.kvno,
            "error_code": self.error_code,
            "error_name": self.error_name,
        }


@dataclass(frozen=True, slots=True)
class NegotiateToken:
    """One decoded Negotiate token: its SPNEGO envelope and the mechanism token inside."""

    kind: str  # init, resp, krb5 (raw Kerberos GSS token), ntlm (raw NTLMSSP), unknown
    mechanism: str  # kerberos, ntlm, negoex, unknown: what this token carries or chooses
    mech_types: tuple[str, ...] = ()  # offered mechanisms, in order
    supported_mech: str | None = None  # NegTokenResp
    neg_state: str | None = None  # accept-completed | accept-incomplete | reject | request-mic
    kerberos: KerberosInfo | None = None
    ntlm: NtlmMessage | None = None
    problems: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (every field; nested records as dicts)."""
        return {
            "kind": self.kind,
            "mechanism": self.mechanism,
            "mech_types": list(self.mech_types),
            "supported_mech": self.supported_mech,
            "neg_state": self.neg_state,
            "kerberos": self.kerberos.to_dict() if self.kerberos else None,
            "ntlm": self.ntlm.to_dict() if self.ntlm else None,
            "problems": list(self.problems),
        }


# --- ASN.1 schemas -----------------------------------------------------------------------------
# Both modules use EXPLICIT TAGS: every [n] wraps the whole inner encoding. Sequences decode to
# tuples of their fields in order (None for an absent OPTIONAL one).

INTEGER = der.Integer(0x02)
ENUMERATED = der.Integer(0x0A)
OCTET_STRING = der.Primitive(0x04)
BIT_STRING = der.BitString(0x03)
OID = der.ObjectIdentifier(0x06)
KERBEROS_STRING = der.Primitive(0x1B)  # GeneralString
KERBEROS_TIME = der.Ascii(0x18)  # GeneralizedTime


def _field(number: int, spec: der.Spec) -> der.Field:
    return der.Field(number, spec)


def _optional(number: int, spec: der.Spec) -> der.Field:
    return der.Field(number, spec, optional=True)


#: RFC 2743 3.1 InitialContextToken: [APPLICATION 0] { thisMech OID, innerContextToken ANY }.
#: The inner token is not always one DER element (Kerberos puts a TOK_ID first), so the frame is
#: read whole and its content then split into the OID and the rest.
GSS_FRAME = der.Element(0x60)

#: RFC 4120 5.2.2 PrincipalName: (name-type, name-string).
PRINCIPAL_NAME = der.Sequence(_field(0, INTEGER), _field(1, der.SequenceOf(KERBEROS_STRING)))
#: RFC 4120 5.2.9 EncryptedData: (etype, kvno, cipher).
ENCRYPTED_DATA = der.Sequence(_field(0, INTEGER), _optional(1, INTEGER), _field(2, OCTET_STRING))
#: RFC 4120 5.3 Ticket ::= [APPLICATION 1]: (tkt-vno, realm, sname, enc-part).
TICKET = der.Explicit(
    0x61,
    der.Sequence(
        _field(0, INTEGER),
        _field(1, KERBEROS_STRING),
        _field(2, PRINCIPAL_NAME),
        _field(3, ENCRYPTED_DATA),
    ),
)
#: RFC 4120 5.5.1 AP-REQ ::= [APPLICATION 14]:
#: (pvno, msg-type, ap-options, ticket, authenticator).
AP_REQ = der.Explicit(
    0x6E,
    der.Sequence(
        _field(0, INTEGER),
        _field(1, INTEGER),
        _field(2, BIT_STRING),
        _field(3, TICKET),
        _field(4, ENCRYPTED_DATA),
    ),
)
#: RFC 4120 5.5.2 AP-REP ::= [APPLICATION 15]: (pvno, msg-type, enc-part).
AP_REP = der.Explicit(
    0x6F, der.Sequence(_field(0, INTEGER), _field(1, INTEGER), _field(2, ENCRYPTED_DATA))
)
#: RFC 4120 5.9.1 KRB-ERROR ::= [APPLICATION 30]: (pvno, msg-type, ctime, cusec, stime, susec,
#: error-code, crealm, cname, realm, sname, e-text, e-data).
KRB_ERROR = der.Explicit(
    0x7E,
    der.Sequence(
        _field(0, INTEGER),
        _field(1, INTEGER),
        _optional(2, KERBEROS_TIME),
        _optional(3, INTEGER),
        _field(4, KERBEROS_TIME),
        _field(5, INTEGER),
        _field(6, INTEGER),
        _optional(7, KERBEROS_STRING),
        _optional(8, PRINCIPAL_NAME),
        _field(9, KERBEROS_STRING),
        _field(10, PRINCIPAL_NAME),
        _optional(11, KERBEROS_STRING),
        _optional(12, OCTET_STRING),
    ),
)

#: RFC 4120 application tags; AP-REQ, AP-REP and KRB-ERROR are decoded, the others only named.
KRB_MESSAGES = {
    10: "AS-REQ",
    11: "AS-REP",
    12: "TGS-REQ",
    13: "TGS-REP",
    14: "AP-REQ",
    15: "AP-REP",
    20: "KRB-SAFE",
    21: "KRB-PRIV",
    22: "KRB-CRED",
    30: "KRB-ERROR",
}
_KRB_SPECS = {"AP-REQ": AP_REQ, "AP-REP": AP_REP, "KRB-ERROR": KRB_ERROR}
#: Any other Kerberos message: only its framing (length, trailing bytes) is checked.
KRB_OTHER = der.Element()

#: MS-SPNG 2.2.1 NegHints (NegTokenInit2 only): (hintName, hintAddress).
NEG_HINTS = der.Sequence(_optional(0, KERBEROS_STRING), _optional(1, OCTET_STRING))
#: Field [3]: mechListMIC in RFC 4178 NegTokenInit, negHints in MS-SPNG NegTokenInit2.
MIC_OR_HINTS = der.Choice(("mechListMIC", OCTET_STRING), ("negHints", NEG_HINTS))
#: RFC 4178 4.2.1 NegTokenInit: (mechTypes, reqFlags, mechToken, micOrHints, mechListMIC).
NEG_TOKEN_INIT = der.Sequence(
    _optional(0, der.SequenceOf(OID)),
    _optional(1, BIT_STRING),
    _optional(2, OCTET_STRING),
    _optional(3, MIC_OR_HINTS),
    _optional(4, OCTET_STRING),
)
#: RFC 4178 4.2.2 NegTokenResp: (negState, supportedMech, responseToken, mechListMIC).
NEG_TOKEN_RESP = der.Sequence(
    _optional(0, ENUMERATED),
    _optional(1, OID),
    _optional(2, OCTET_STRING),
    _optional(3, OCTET_STRING),
)
#: RFC 4178 4.2 NegotiationToken ::= CHOICE { [0] NegTokenInit, [1] NegTokenResp }.
NEGOTIATION_TOKEN = der.Choice(
    ("negTokenInit", der.Explicit(0xA0, NEG_TOKEN_INIT)),
    ("negTokenResp", der.Explicit(0xA1, NEG_TOKEN_RESP)),
)


# --- entry points ------------------------------------------------------------------------------


def parse_negotiate_b64(text: str) -> NegotiateToken | None:
    """Decode a base64 Negotiate blob (padding optional); None if not base64 or not a token."""
    data = b64decode_lenient(text, MAX_TOKEN)
    return None if data is None else parse_negotiate(data)


def parse_negotiate(data: bytes) -> NegotiateToken | None:
    """Decode a Negotiate token: SPNEGO init/resp, a bare Kerberos GSS token, or raw NTLMSSP.

    Returns None when ``data`` does not even start like one of those; anything that does but
    fails to decode comes back as a token with ``problems``.
    """
    if not isinstance(data, bytes | bytearray | memoryview) or not data:
        return None
    data = bytes(data)
    if data.startswith(NTLM_SIGNATURE):
        ntlm = parse_ntlm(data)
        return NegotiateToken(kind="ntlm", mechanism="ntlm", ntlm=ntlm)
    first = data[0]
    if first not in (0x60, 0xA0, 0xA1) and first - 0x60 not in KRB_MESSAGES:
        return None
    if len(data) > MAX_TOKEN:
        return NegotiateToken(
            kind="unknown",
            mechanism="unknown",
            problems=(f"token of {len(data)} bytes is over the {MAX_TOKEN}-byte limit",),
        )
    problems: list[str] = []
    if first == 0x60:
        return _framed(data, problems)
    if first in (0xA0, 0xA1):
        return _negotiation_token(data, problems)
    problems.append("bare Kerberos message without GSS-API framing")
    kerberos = _kerberos_message(data, problems)
    return NegotiateToken(
        kind="krb5", mechanism="kerberos", kerberos=kerberos, problems=tuple(problems)
    )


def _framed(data: bytes, problems: list[str]) -> NegotiateToken:
    """A GSS-API InitialContextToken: SPNEGO or a mechanism token sent directly."""
    split = _split_frame(data, problems)
    if split is None:
        return NegotiateToken(kind="unknown", mechanism="unknown", problems=tuple(problems))
    oid, inner = split
    if oid == OID_SPNEGO:
        return _negotiation_token(inner, problems, expect="negTokenInit")
    mechanism, kerberos, ntlm = _mech_token(data, problems)
    kind = "krb5" if mechanism == "kerberos" else "unknown"
    return NegotiateToken(
        kind=kind, mechanism=mechanism, kerberos=kerberos, ntlm=ntlm, problems=tuple(problems)
    )


def _negotiation_token(
    data: bytes, problems: list[str], expect: str | None = None
) -> NegotiateToken:
    """RFC 4178 NegotiationToken: [0] NegTokenInit or [1] NegTokenResp."""
    decoded = _decode(data, NEGOTIATION_TOKEN, "SPNEGO token", problems)
    if decoded is None:
        return NegotiateToken(kind="unknown", mechanism="unknown", problems=tuple(problems))
    name, body = decoded
    if expect and name != expect:
        problems.append(f"GSS-API framed SPNEGO token holds {name}, expected {expect}")
    if name == "negTokenInit":
        return _init(body, problems)
    return _resp(body, problems)


def _init(body: tuple[Any, ...], problems: list[str]) -> NegotiateToken:
    oids, _flags, mech_token, _mic_or_hints, _mic = body
    mech_types = _mech_names(oids) if oids is not None else ()
    if not mech_types:
        problems.append("NegTokenInit offers no mechanisms")
    mechanism, kerberos, ntlm = "unknown", None, None
    if mech_token is not None:
        mechanism, kerberos, ntlm = _mech_token(mech_token, problems)
        first = MECHANISMS.get(mech_types[0], "unknown") if mech_types else "unknown"
        if mech_types and mechanism not in ("unknown", first):
            problems.append(
                f"optimistic mechToken is {mechanism} but the first offered mech is {mech_types[0]}"
            )
    elif mech_types:
        mechanism = MECHANISMS.get(mech_types[0], "unknown")
    return NegotiateToken(
        kind="init",
        mechanism=mechanism,
        mech_types=mech_types,
        kerberos=kerberos,
        ntlm=ntlm,
        problems=tuple(problems),
    )


def _resp(body: tuple[Any, ...], problems: list[str]) -> NegotiateToken:
    state, supported_oid, response_token, _mic = body
    neg_state = None
    if state is not None:
        neg_state = NEG_STATES.get(state, f"unknown({state})")
    supported = _mech_names((supported_oid,))[0] if supported_oid is not None else None
    mechanism = MECHANISMS.get(supported, "unknown") if supported else "unknown"
    kerberos, ntlm = None, None
    if response_token is not None:
        carried, kerberos, ntlm = _mech_token(response_token, problems)
        if mechanism == "unknown":
            mechanism = carried
        elif carried not in ("unknown", mechanism):
            problems.append(f"supportedMech is {supported} but the responseToken is {carried}")
    return NegotiateToken(
        kind="resp",
        mechanism=mechanism,
        supported_mech=supported,
        neg_state=neg_state,
        kerberos=kerberos,
        ntlm=ntlm,
        problems=tuple(problems),
    )


# --- mechanism tokens --------------------------------------------------------------------------


def _mech_token(
    token: bytes, problems: list[str]
) -> tuple[str, KerberosInfo | None, NtlmMessage | None]:
    """(mechanism, kerberos, ntlm) for a mechToken / responseToken, judged by its content."""
    if token.startswith(NTLM_SIGNATURE):
        return "ntlm", None, parse_ntlm(token)
    if token.startswith(NEGOEX_SIGNATURE):
        return "negoex", None, None
    if not token:
        problems.append("empty mechanism token")
        return "unknown", None, None
    if token[0] != 0x60:
        if token[0] - 0x60 in KRB_MESSAGES:
            problems.append("bare Kerberos message without GSS-API framing")
            return "kerberos", _kerberos_message(token, problems), None
        problems.append("mechanism token of unknown format")
        return "unknown", None, None
    split = _split_frame(token, problems)
    if split is None:
        return "unknown", None, None
    oid, inner = split
    if MECHANISMS.get(MECH_NAMES.get(oid, "")) != "kerberos":
        problems.append(f"mechanism token for unsupported mechanism {oid}")
        return "unknown", None, None
    # RFC 4121 4.1: a two-byte TOK_ID, then the Kerberos message itself.
    tok_id, message = inner[:2], inner[2:]
    kerberos = _kerberos_message(message, problems)
    expected = TOK_IDS.get(tok_id)
    if expected is None:
        problems.append(f"unknown Kerberos TOK_ID {tok_id.hex()}")
    elif kerberos is not None and kerberos.message != expected:
        problems.append(
            f"TOK_ID {tok_id.hex()} announces {expected} but carries {kerberos.message}"
        )
    return "kerberos", kerberos, None


def _split_frame(data: bytes, problems: list[str]) -> tuple[str, bytes] | None:
    """RFC 2743 framing -> (thisMech as dotted OID, innerContextToken bytes)."""
    if not data.startswith(b"\x60"):
        problems.append("GSS-API frame: not [APPLICATION 0]")
        return None
    content = _decode(data, GSS_FRAME, "GSS-API frame", problems)
    if content is None:
        return None
    try:
        oid, stop = der.decode(content, OID)
    except der.DerError as exc:
        problems.append(f"GSS-API frame: no mechanism OID ({_why(exc)})")
        return None
    return oid, content[stop:]


def _kerberos_message(data: bytes, problems: list[str]) -> KerberosInfo | None:
    """Name a Kerberos message by its application tag; decode AP-REQ, AP-REP and KRB-ERROR."""
    # RFC 4120 messages are [APPLICATION n] with n < 31: the identifier octet is 0x60 | n.
    message = KRB_MESSAGES.get(data[0] - 0x60) if data else None
    if message is None:
        problems.append("not a Kerberos message")
        return None
    spec = _KRB_SPECS.get(message)
    if spec is None:
        _decode(data, KRB_OTHER, message, problems)
        return KerberosInfo(message, None, None, None, None, None)
    decoded = _decode(data, spec, message, problems)
    if decoded is None:
        return KerberosInfo(message, None, None, None, None, None)
    if message == "AP-REQ":
        _tkt_vno, realm, sname, (etype, kvno, _cipher) = decoded[3]  # the ticket
        return KerberosInfo(
            message, _text(realm), _principal(sname), etype, _etype_name(etype), kvno
        )
    if message == "AP-REP":
        etype, kvno, _cipher = decoded[2]  # enc-part
        return KerberosInfo(message, None, None, etype, _etype_name(etype), kvno)
    code, realm, sname = decoded[6], decoded[9], decoded[10]  # error-code, realm, sname
    return KerberosInfo(
        message,
        _text(realm),
        _principal(sname),
        None,
        None,
        None,
        error_code=code,
        error_name=ERROR_NAMES.get(code, f"unknown({code})"),
    )


# --- helpers -----------------------------------------------------------------------------------


def _decode(data: bytes, spec: der.Spec, what: str, problems: list[str]) -> Any:
    """``data`` decoded against ``spec``; None (and a problem) when it does not decode."""
    try:
        value, stop = der.decode(data, spec)
    except der.DerError as exc:
        problems.append(f"{what}: {_why(exc)}")
        return None
    if stop < len(data):
        problems.append(f"{what}: {len(data) - stop} trailing bytes")
    return value


def _why(exc: der.DerError) -> str:
    """A fixed description of a decode failure (never the exception text: it may quote bytes)."""
    if isinstance(exc, der.DerTruncated):
        return "truncated"
    return "malformed DER or unexpected tag"


def _mech_names(oids: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(MECH_NAMES.get(oid, oid) for oid in oids)


def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


def _principal(name: tuple[int, tuple[bytes, ...]]) -> str:
    return "/".join(_text(part) for part in name[1])


def _etype_name(etype: int | None) -> str | None:
    if etype is None:
        return None
    return ETYPE_NAMES.get(etype, f"unknown({etype})")
