"""What an NTLM or Negotiate credential reveals: mechanism, identity, Kerberos service."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from analyzer.auth.ntlm import NtlmMessage, parse_ntlm_b64
from analyzer.auth.spnego import parse_negotiate_b64


@dataclass(frozen=True, slots=True)
class WindowsCredential:
    """Fields of an event that an NTLM / Negotiate blob fills in."""

    mechanism: str  # ntlm, kerberos, negoex, unknown
    ntlm_type: int | None = None  # 1, 2, 3 for NTLM messages
    user: str | None = None
    domain: str | None = None
    workstation: str | None = None
    ntlm_response: str | None = None  # NTLMv2, NTLMv1, NTLMv1-ESS, anonymous, ...
    spn: str | None = None  # Kerberos ticket service principal (travels in the clear)


@lru_cache(maxsize=4096)
def decode_windows_credential(scheme: str, text: str) -> WindowsCredential | None:
    """Decode the blob of an ``NTLM`` or ``Negotiate`` credential (None for other schemes).

    Cached: clients repeat the same NEGOTIATE message on every connection.
    """
    if scheme == "ntlm":
        return _from_ntlm("ntlm", parse_ntlm_b64(text))
    if scheme != "negotiate":
        return None
    token = parse_negotiate_b64(text)
    if token is None:
        return WindowsCredential("unknown")
    if token.ntlm is not None:
        return _from_ntlm(token.mechanism, token.ntlm)
    kerberos = token.kerberos
    if kerberos is not None:
        return WindowsCredential(token.mechanism, domain=kerberos.realm, spn=kerberos.sname)
    return WindowsCredential(token.mechanism)


def _from_ntlm(mechanism: str, message: NtlmMessage | None) -> WindowsCredential:
    if message is None:
        return WindowsCredential(mechanism)
    return WindowsCredential(
        mechanism,
        ntlm_type=message.type,
        user=message.user or None,
        domain=message.domain or None,
        workstation=message.workstation or None,
        ntlm_response=message.response if message.type == 3 else None,
    )
