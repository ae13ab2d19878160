"""What SIP changes in handshake analysis: the key a handshake lives under, its legs, its class.

An HTTP handshake lives on one TCP connection. A SIP one (MS-SIPAE) lives in a security
association: the server names it (``opaque``) in the 401 / 407 that carries its first token, the
client repeats it in every later credential, and signs each later message in it (``cnum``), on
whatever connection - or over UDP, where there is no connection at all. So SIP events are grouped
by association; an event that names none (an anonymous request, Digest, Basic, Bearer) by its
dialog or registration (Call-ID). A challenge to an anonymous request is adopted by the
association that the next credential of the same Call-ID opens.
"""

from __future__ import annotations

from analyzer.model import Event

#: SIP credential mechanisms with an auth class of their own (NTLM is already "ntlm").
SIP_CLASSES = {"kerberos": "kerberos", "tls-dsk": "tls-dsk"}
#: Schemes whose challenges carry the next leg of the association in ``gssapi-data``.
LEG_SCHEMES = ("ntlm", "kerberos", "tls-dsk")


def sip_class(event: Event) -> str:
    """The auth class of a SIP credential whose scheme word is not an HTTP one."""
    return SIP_CLASSES.get(event.mechanism or "", "other")


def sip_continues(event: Event) -> bool:
    """A SIP 401 / 407 carrying the next leg of a security association (a non-empty
    ``gssapi-data``: an NTLM CHALLENGE, a Kerberos AP-REP, TLS-DSK handshake records)."""
    return any(
        c.scheme in LEG_SCHEMES
        and c.params.get("gssapi-data")
        and c.details.get("neg_state") != "reject"
        for c in event.challenges
    )


def association_key(event: Event) -> tuple:
    """The key of the handshake a SIP event belongs to: the security association its credential
    names, or else the one its response opens (``opens``), or else its Call-ID (``call_key``)."""
    opaque = event.sip_opaque or opens(event)
    if opaque:
        return ("sa", event.client_ip, event.server_ip, opaque)
    return call_key(event)


def opens(event: Event) -> str | None:
    """The association a SIP event's response opens: the ``opaque`` of its challenge when the
    credential named none (the first leg)."""
    if event.sip_opaque:
        return None
    return next((c.params["opaque"] for c in event.challenges if c.params.get("opaque")), None)


def call_key(event: Event) -> tuple:
    """The dialog or registration a SIP event belongs to (its connection without a Call-ID)."""
    return ("call", event.client_ip, event.server_ip, event.call_id or event.conn_id)
