"""UDP flows: datagrams between two addresses handed, in capture order, to one handler.

Sans-I/O, like ``analyzer.flows.tcp``: ``UdpFlows.feed`` takes one datagram's fields. A flow is
made when its factory wants it (the factory sees the first datagram and may decline: RTP, DNS and
keep-alives make no flow), and is keyed by the two addresses without their ports, because a SIP
peer may answer from, or to, another port than the one a request used (RFC 3261 18.2.2): the
handler is given every datagram's ports. Flows idle for ``idle_timeout`` are finished and
forgotten, and at most ``max_flows`` are followed at once.

``tunnel_inside`` tells a datagram that holds a VXLAN or GENEVE packet on a port the decoder does
not read as one: its flow is an ``UnreadTunnel``, a blind spot named by the inner addresses.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Protocol

from analyzer.flows.tcp import ConnectionInfo, _ip_text, shard_of
from analyzer.sources.linklayer import tunnel_text


class Flow(Protocol):
    """What the factory returns: takes datagrams of one flow, then is finished."""

    def datagram(
        self,
        from_a: bool,
        payload: memoryview | bytes,
        ts: float,
        ports: tuple[int, int],
        frame: int = 0,
    ) -> None: ...

    def finish(self) -> None: ...


#: (flow info, first datagram) -> its handler, or None when the flow is not wanted.
FlowFactory = Callable[[ConnectionInfo, "memoryview | bytes"], "Flow | None"]


class _Open:
    __slots__ = ("a", "flow", "last_ts")

    def __init__(self, a: bytes, flow: Flow, ts: float) -> None:
        self.a = a  # packed address of the side that sent the first datagram
        self.flow = flow
        self.last_ts = ts


class UdpFlows:
    """Datagrams in, per-flow handlers made by ``factory``."""

    def __init__(
        self,
        factory: FlowFactory,
        *,
        idle_timeout: float = 600.0,
        max_flows: int = 100_000,
        shard: tuple[int, int] | None = None,
    ) -> None:
        self.factory = factory
        self.shard = shard  # (k, n): worker k of n keeps the flows ``shard_of`` gives it
        self.idle_timeout = idle_timeout
        self.max_flows = max_flows
        self.flows: dict[tuple[bytes, bytes], _Open] = {}  # address pair (sorted) -> flow
        self.made = 0  # flows the factory wanted
        self._next_sweep = 0.0

    def feed(
        self,
        ts: float,
        src: bytes,
        sport: int,
        dst: bytes,
        dport: int,
        payload: memoryview | bytes,
        frame: int = 0,
    ) -> None:
        """Process one captured UDP datagram (``frame``: its frame number, 0 when unknown)."""
        if not payload:
            return
        if ts >= self._next_sweep:
            self._sweep(ts)
        src, dst = bytes(src), bytes(dst)
        key = (src, dst) if src <= dst else (dst, src)
        held = self.flows.get(key)
        if held is None:
            shard = self.shard
            if shard is not None and shard_of((key[0], 0, key[1], 0), shard[1]) != shard[0]:
                return  # another worker's flow
            info = ConnectionInfo(
                _ip_text(src), sport, _ip_text(dst), dport, ts, False, tunnel_text(src)
            )
            flow = self.factory(info, payload)
            if flow is None:
                return
            if len(self.flows) >= self.max_flows:
                self._evict_oldest()
            held = self.flows[key] = _Open(src, flow, ts)
            self.made += 1
        held.last_ts = ts
        from_a = src == held.a
        held.flow.datagram(from_a, payload, ts, (sport, dport), frame)

    def flush(self) -> None:
        """Finish every flow (end of capture)."""
        flows, self.flows = self.flows, {}
        for held in flows.values():
            held.flow.finish()

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + min(self.idle_timeout / 4, 30.0)
        limit = now - self.idle_timeout
        for key in [k for k, held in self.flows.items() if held.last_ts < limit]:
            self.flows.pop(key).flow.finish()

    def _evict_oldest(self) -> None:
        ordered = sorted(self.flows, key=lambda k: self.flows[k].last_ts)
        for key in ordered[: max(1, len(ordered) // 10)]:
            self.flows.pop(key).flow.finish()


#: What a tunnel's payload may carry: Ethernet (Transparent Ethernet Bridging), IPv4, IPv6.
_TEB, _IPV4, _IPV6, _VLAN = 0x6558, 0x0800, 0x86DD, 0x8100
_U16 = struct.Struct("!H").unpack_from


#: VXLAN-GPE next protocols carrying IP: 1 IPv4, 2 IPv6 (as EtherTypes).
_GPE_NEXT = {1: 0x0800, 2: 0x86DD}


def tunnel_inside(payload: memoryview | bytes) -> tuple[str, bytes, bytes] | None:
    """The tunnel a UDP payload looks like and the inner packet's (source, destination) packed
    addresses: VXLAN (RFC 7348: the I flag, then Ethernet; the group policy extension's bits
    allowed), VXLAN-GPE (the I and P flags and a next protocol of IPv4, IPv6 or Ethernet) or GENEVE
    (RFC 8926: version 0, a protocol type of Ethernet, IPv4 or IPv6), carrying a plausible IPv4
    or IPv6 header; None for anything else. A shape, not a port: the decoder reads these only on
    their ports (VXLAN 4789, 8472 and ``--vxlan-port``; GENEVE 6081), and what they carry
    elsewhere would otherwise go unread without a word."""
    if len(payload) < 28 or payload[7]:  # both end in a reserved byte
        return None
    first = payload[0]
    if first & 0x0C == 0x08:  # the I flag (a VNI), as the decoder asks; GBP's bits allowed
        return _inner_ether("VXLAN", payload, 8)
    if first & 0x0C == 0x0C:  # VXLAN-GPE: I and P, a next protocol of IPv4, IPv6 or Ethernet
        nxt = payload[3]
        if nxt == 3:
            return _inner_ether("VXLAN-GPE", payload, 8)
        return _inner_ip("VXLAN-GPE", payload, 8, _GPE_NEXT.get(nxt, 0))
    if first >> 6 or payload[1] & 0x3F:  # GENEVE: version 0, reserved bits zero
        return None
    ptype = _U16(payload, 2)[0]
    start = 8 + (first & 0x3F) * 4
    if ptype == _TEB:
        return _inner_ether("GENEVE", payload, start)
    if ptype in (_IPV4, _IPV6):
        return _inner_ip("GENEVE", payload, start, ptype)
    return None


def _inner_ether(name: str, payload: memoryview | bytes, off: int) -> tuple | None:
    """The inner addresses behind an Ethernet header at ``off`` (one 802.1Q tag allowed)."""
    if len(payload) < off + 14:
        return None
    ethertype = _U16(payload, off + 12)[0]
    off += 14
    if ethertype == _VLAN and len(payload) >= off + 4:
        ethertype = _U16(payload, off + 2)[0]
        off += 4
    return _inner_ip(name, payload, off, ethertype)


def _inner_ip(name: str, payload: memoryview | bytes, off: int, ethertype: int) -> tuple | None:
    """``(name, source, destination)`` of a plausible IP header at ``off`` of that EtherType:
    the version its EtherType says, and an IPv4 header length of at least 20 bytes (the total
    length is not asked for: a segmentation offload leaves it 0)."""
    if ethertype == _IPV4 and len(payload) >= off + 20 and payload[off] >> 4 == 4:
        if payload[off] & 0x0F < 5:
            return None
        return name, bytes(payload[off + 12 : off + 16]), bytes(payload[off + 16 : off + 20])
    if ethertype == _IPV6 and len(payload) >= off + 40 and payload[off] >> 4 == 6:
        return name, bytes(payload[off + 8 : off + 24]), bytes(payload[off + 24 : off + 40])
    return None


class UnreadTunnel:
    """A UDP flow whose first datagram looked like a tunnel (``tunnel_inside``) on a port not
    read as one: each datagram's inner addresses go to ``on_pair``, which keeps the new pairs
    as blind spots - one outer flow carries many inner ones, any of which may be in scope."""

    __slots__ = ("info", "on_pair")

    def __init__(self, info: ConnectionInfo, on_pair: Callable[..., None]) -> None:
        self.info = info
        self.on_pair = on_pair  # (info, tunnel_inside's answer, ts)

    def datagram(
        self,
        from_a: bool,
        payload: memoryview | bytes,
        ts: float,
        ports: tuple[int, int],
        frame: int = 0,
    ) -> None:
        inner = tunnel_inside(payload)
        if inner is not None:
            self.on_pair(self.info, inner, ts)

    def finish(self) -> None:
        pass
