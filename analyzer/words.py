"""The words every text output shares: counts with their plural, endpoints, one glossary.

Glossary (README "Words"): an **event** is one row, an HTTP exchange (request and response) that
carries authentication material; an **authenticated exchange** is one that sent a credential,
counted once per NTLM / Negotiate handshake in verdicts; a **handshake** is challenge ->
credentials -> outcome on one connection; a **pair** is one client -> server (and Host). The
**scheme** is what a request sent (``bearer``, ``basic``, ``ntlm``, ``negotiate``, ...); the
**class** is what its handshake turned out to be (``oauth``, ``kerberos``, ``negotiate-ntlm``, ...).
"""

from __future__ import annotations

#: Irregular plurals of the nouns the outputs count.
_IRREGULAR = {"entry": "entries", "stretch": "stretches", "match": "matches", "is": "are"}


def plural(n: int, noun: str, many: str | None = None) -> str:
    """``1 capture``, ``2 captures``, ``1,234 events``: a count with its noun in the right form."""
    return f"{n:,} {noun if n == 1 else many or _IRREGULAR.get(noun, noun + 's')}"


def endpoint(ip: str, port: int | None) -> str:
    """``10.0.0.1:80``, ``[2001:db8::1]:443``; the address alone without a port; ``-`` for an
    unknown address (an HTTP archive does not record the browser's)."""
    if not ip:
        return "-"
    if port is None:
        return ip
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
