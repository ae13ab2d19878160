"""From a SIP exchange to an auth ``Event``: the credential, the challenges, the dialog.

SIP carries the same header grammar as HTTP (``Authorization`` / ``Proxy-Authorization``,
``WWW-Authenticate`` / ``Proxy-Authenticate``), read with the same parsers. Skype for Business
and Lync (MS-SIPAE) speak ``NTLM``, ``Kerberos`` and ``TLS-DSK`` as parameter lists:

    Authorization: NTLM qop="auth", realm="SIP Communications Service", opaque="6B1C3A24",
        targetname="fe01.contoso.com", gssapi-data="TlRMTVNTUAAD...", version=4

``gssapi-data`` carries the security token (an NTLM message, a Kerberos AP-REQ / AP-REP, TLS
handshake records for TLS-DSK), decoded here as the HTTP blobs are; ``opaque`` names the security
association the server set up, and messages signed in it add ``crand``, ``cnum`` and
``response``. An exchange is an event when its request carries a credential, or its response a
challenge or a 401 / 403 / 407 (``ms-diagnostics`` alone, which SIP servers add to many answers,
does not make one).
"""

from __future__ import annotations

import struct

from analyzer.auth.challenges import describe_challenge
from analyzer.auth.extract import credential_fields, described_credential, header_credentials
from analyzer.auth.ntlm import b64decode_lenient
from analyzer.auth.schemes import (
    parse_challenges,
    read_quoted,
    split_outside_quotes,
)
from analyzer.auth.windows import WindowsCredential, decode_windows_credential
from analyzer.flows.community import TCP, UDP, community_id
from analyzer.model import Challenge, Event, evolve
from analyzer.oauth.diagnostics import parse_ms_diagnostics
from analyzer.protocols.sip import SipMessage, address_uri, uri_host
from analyzer.protocols.sip_exchange import SipExchange
from analyzer.protocols.tls import first_certificate
from analyzer.redaction import identity_fields

DENIED = (401, 403, 407)
#: MS-SIPAE schemes: a security association set up with gssapi-data, then signed messages.
SA_SCHEMES = ("ntlm", "kerberos", "tls-dsk")
_BLANK_EVENT = Event(
    event_id=0,
    ts=0.0,
    client_ip="",
    client_port=0,
    server_ip="",
    server_port=0,
    conn_id="",
    protocol="sip",
    method="",
    host=None,
    uri="",
    status=None,
)


def build_sip_event(exchange: SipExchange, event_id: int = 0) -> Event | None:
    """The auth event for a SIP ``exchange``, or None when it carries no auth material."""
    req, resp = exchange.request, exchange.response
    first = req if req is not None else resp
    if first is None:
        return None
    reasons: list[str] = []
    fields: dict = {}
    if req is not None:
        fields.update(_credential_fields(req))
        if "scheme" in fields:
            reasons.append("credential")
        fields["user_agent"] = req.header("user-agent")
    challenges: tuple[Challenge, ...] = ()
    if resp is not None:
        challenges = _challenges(resp.header_all("www-authenticate"), False) + _challenges(
            resp.header_all("proxy-authenticate"), True
        )
        if challenges:
            reasons.append("challenge")
        if resp.status in DENIED:
            reasons.append("denied")
        fields.update(_diagnostics(resp))
    if not reasons:
        return None
    if "user" in fields or "domain" in fields:
        fields.update(identity_fields(fields.get("user"), fields.get("domain")))
    number, method = first.cseq
    uri = req.uri if req is not None else ""
    return evolve(
        _BLANK_EVENT,
        event_id=event_id,
        ts=first.ts,
        frame=first.frame or None,
        client_ip=exchange.client_ip,
        client_port=exchange.client_port,
        server_ip=exchange.server_ip,
        server_port=exchange.server_port,
        conn_id=exchange.conn_id,
        community_id=community_id(
            exchange.client_ip,
            exchange.client_port,
            exchange.server_ip,
            exchange.server_port,
            UDP if exchange.transport == "udp" else TCP,
        ),
        transport=exchange.transport,
        method=req.method if req is not None else method.upper(),
        host=uri_host(uri) or uri_host(address_uri(first.header("to"))),
        uri=uri,
        status=resp.status if resp is not None else None,
        response_ts=resp.ts if resp is not None else None,
        challenges=challenges,
        reasons=tuple(reasons),
        call_id=first.call_id,
        sip_from=address_uri(first.header("from")),
        sip_to=address_uri(first.header("to")),
        cseq=f"{number} {method}".strip() if number is not None else None,
        **fields,
    )


def sip_params(text: str) -> dict[str, str]:
    """An MS-SIPAE parameter list (``qop="auth", opaque="..."``) with its raw values, names
    lowercased, the first occurrence of a name kept (``gssapi-data`` is needed whole here)."""
    out: dict[str, str] = {}
    for item in split_outside_quotes(text, ","):
        name, sep, value = item.partition("=")
        name = name.strip().lower()
        if not sep or not name or name in out:
            continue
        value = value.strip()
        out[name] = read_quoted(value, 0)[0] if value.startswith('"') else value
    return out


def _credential_fields(req: SipMessage) -> dict:
    """Event fields of the request's credential (empty when it sent none).

    Every ``Authorization`` and ``Proxy-Authorization`` value is read (RFC 3261 20.7 and 20.28
    allow several, one per realm), as HTTP reads them (``described_credential``): a request
    presenting another credential beside its token is not OAuth, whatever the header order."""
    cred, others, tokens = described_credential(header_credentials(req, proxy_too=True))
    if cred is None:
        return {}
    fields = credential_fields(cred, others, tokens)
    word = cred.scheme_name.lower()
    if word in SA_SCHEMES:
        fields.update(_association_fields(word, sip_params(cred.text)))
    return {k: v for k, v in fields.items() if v is not None}


def _association_fields(word: str, params: dict[str, str]) -> dict:
    """What an MS-SIPAE credential says: the mechanism, the security association, and what its
    gssapi-data reveals (NTLM messages and Kerberos tickets as in HTTP; TLS-DSK's client
    certificate)."""
    out: dict = {"mechanism": word, "sip_opaque": params.get("opaque") or None}
    cnum = params.get("cnum", "")
    if cnum.isascii() and cnum.isdigit() and len(cnum) <= 18:
        out["sip_cnum"] = int(cnum)
    blob = params.get("gssapi-data", "")
    if not blob:
        return out
    if word == "tls-dsk":
        out["user"] = _tls_dsk_user(blob)
        return out
    windows = decode_windows_credential("ntlm" if word == "ntlm" else "negotiate", blob)
    if windows is not None:
        out.update(_windows_fields(word, windows))
    return out


def _windows_fields(word: str, windows: WindowsCredential) -> dict:
    out: dict = {
        "ntlm_type": windows.ntlm_type,
        "ntlm_response": windows.ntlm_response,
        "workstation": windows.workstation,
        "spn": windows.spn,
        "user": windows.user,
        "domain": windows.domain,
    }
    if word == "kerberos" and windows.mechanism not in ("kerberos", "unknown"):
        out["mechanism"] = windows.mechanism  # a Kerberos header carrying something else
    return out


def _tls_dsk_user(blob: str) -> str | None:
    """The subject of the client certificate a TLS-DSK leg carries (its TLS Certificate
    handshake message), e.g. ``sip:alice@contoso.com``; None when the leg holds none."""
    data = b64decode_lenient(blob, 1 << 20)
    if not data:
        return None
    handshake = bytearray()
    pos = 0
    while pos + 5 <= len(data) and data[pos] == 22:  # handshake records only
        length = struct.unpack_from(">H", data, pos + 3)[0]
        handshake += data[pos + 5 : pos + 5 + length]
        pos += 5 + length
    pos = 0
    while pos + 4 <= len(handshake):
        mtype = handshake[pos]
        length = int.from_bytes(handshake[pos + 1 : pos + 4], "big")
        if mtype == 11:  # Certificate
            der = first_certificate(bytes(handshake[pos + 4 : pos + 4 + length]))
            return _certificate_name(der) if der else None
        pos += 4 + length
    return None


def _certificate_name(der: bytes) -> str | None:
    """The common name of a certificate (else its whole subject)."""
    from analyzer.oauth.certificates import load_der

    cert = load_der(der)
    if cert is None:
        return None
    from cryptography.x509.oid import NameOID

    try:  # the subject is parsed on first use: a hostile one raises here
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        value = names[0].value if names else cert.subject.rfc4514_string()
    except ValueError:
        return None
    return value if isinstance(value, str) and value else None


def _challenges(values: list[str], proxy: bool) -> tuple[Challenge, ...]:
    """The challenges of one header's values, each with its decoded ``details`` (an MS-SIPAE
    challenge's gssapi-data read as the HTTP NTLM / Negotiate blobs are)."""
    if not values:
        return ()
    out = []
    for challenge in parse_challenges(values, proxy=proxy):
        details = describe_challenge(challenge)
        blob = challenge.params.get("gssapi-data")
        if blob and challenge.scheme in ("ntlm", "kerberos"):
            scheme = "ntlm" if challenge.scheme == "ntlm" else "negotiate"
            details = {**details, **describe_challenge(Challenge(scheme, token68=blob))}
        out.append(evolve(challenge, details=details) if details else challenge)
    return tuple(out)


def _diagnostics(resp: SipMessage) -> dict:
    """The response's ``ms-diagnostics`` (Skype for Business's error report), parsed."""
    value = resp.header("ms-diagnostics") or resp.header("ms-diagnostics-public")
    if value is None:
        return {}
    out: dict = {"ms_diagnostics": value}
    parsed = parse_ms_diagnostics(value)
    if parsed is not None:
        out.update(
            diag_code=parsed.code,
            diag_category=parsed.category,
            diag_reason=parsed.reason,
            diag_source=parsed.source,
        )
    return out
