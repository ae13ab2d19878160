"""The Community ID (v1) of a connection: the flow hash Zeek, Suricata, Arkime and Security Onion
print, so an event can be looked up in their logs.

Computed with the maintained ``communityid`` package (https://github.com/corelight/pycommunityid),
once per connection: the hash is the same for both directions of a flow.
"""

from __future__ import annotations

from functools import lru_cache

import communityid

TCP = 6
UDP = 17
_HASHER = communityid.CommunityID(seed=0)


@lru_cache(maxsize=1 << 16)
def community_id(
    client_ip: str, client_port: int, server_ip: str, server_port: int, proto: int = TCP
) -> str | None:
    """``1:<base64 SHA-1>`` for a TCP (or ``proto``: ``UDP``) flow; None when an address is not
    an IP address (a HAR entry does not record the browser's address)."""
    try:
        flow = communityid.FlowTuple(proto, client_ip, server_ip, client_port, server_port)
        # hash + render is what CommunityID.calc does, without its per-call log formatting
        return _HASHER.render(_HASHER.hash(flow.in_nbo().in_order()))
    except (communityid.error.FlowTupleError, ValueError, TypeError):
        return None
