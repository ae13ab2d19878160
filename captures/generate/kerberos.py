"""Kerberos and SPNEGO (Negotiate) tokens in their GSS-API framing: AP-REQ/AP-REP, KRB-ERROR,
NegTokenInit/NegTokenResp. Encrypted parts are label-derived filler: nobody can decrypt them.
"""

from __future__ import annotations

import datetime as dt

from .der import ctx, der, der_gstr, der_int, der_oid, seq
from .encoding import prng

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
