"""The Community ID (v1) of a connection: the flow hash Zeek, Suricata, Arkime and Security Onion
print, so an event can be looked up in their logs.

Computed with the maintained ``communityid`` package (https://github.com/corelight/pycommunityid),
once per connection: the hash is the same for both directions of a flow.
"""

from __future__ import annotations

from functools import cache, lru_cache
from typing import Any

TCP = 6
UDP = 17


@lru_cache(maxsize=1 << 16)
def community_id(
    client_ip: str, client_port: int, server_ip: str, server_port: int, proto: int = TCP
) -> str | None:
    """``1:<base64 SHA-1>`` for a TCP (or ``proto``: ``UDP``) flow; None when an address is not
    an IP address (a HAR entry does not record the browser's address)."""
    package, hasher = _package()
    try:
        flow = package.FlowTuple(proto, client_ip, server_ip, client_port, server_port)
        # hash + render is what CommunityID.calc does, without its per-call log formatting
        return hasher.render(hasher.hash(flow.in_nbo().in_order()))
    except (package.error.FlowTupleError, ValueError, TypeError):
        return None


@cache
def _package() -> tuple[Any, Any]:
    """The package and its hasher (seed 0), imported when the first event needs them: it
    brings logging and socket, which a run without events need not load."""
    import communityid

    return communityid, communityid.CommunityID(seed=0)
