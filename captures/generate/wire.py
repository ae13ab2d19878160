"""On the wire: hosts, link layers (Ethernet, 802.1Q, QinQ, Linux SLL2, NULL) and TCP connections
that emit frames with consistent sequence and acknowledgement numbers (scapy builds the headers).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
from scapy.packet import Packet, Raw

from .constants import US

if TYPE_CHECKING:  # a Conn adds its frames to a Capture, which imports this module
    from .capture import Capture


@dataclass
class Host:
    ip: str
    mac: str
    ttl: int = 128
    ip_id: int = 0x2000

    def next_id(self) -> int:
        self.ip_id = (self.ip_id + 1) & 0xFFFF
        return self.ip_id


Link = Callable[[Host, Host, Packet], bytes]


def ether(src: Host, dst: Host, l3: Packet) -> bytes:
    return bytes(Ether(src=src.mac, dst=dst.mac) / l3)


def vlan(vid: int, prio: int = 0) -> Link:
    def link(src: Host, dst: Host, l3: Packet) -> bytes:
        return bytes(Ether(src=src.mac, dst=dst.mac) / Dot1Q(vlan=vid, prio=prio) / l3)

    return link


def qinq(outer: int, inner: int) -> Link:
    def link(src: Host, dst: Host, l3: Packet) -> bytes:
        frame = Ether(src=src.mac, dst=dst.mac, type=0x88A8) / Dot1AD(vlan=outer)
        return bytes(frame / Dot1Q(vlan=inner) / l3)

    return link


def sll2(local: Host, ifindex: int = 2) -> Link:
    """Linux "cooked" v2 header (LINKTYPE_LINUX_SLL2) as captured on ``local``."""

    def link(src: Host, dst: Host, l3: Packet) -> bytes:
        proto = 0x86DD if isinstance(l3, IPv6) else 0x0800
        pkttype = 4 if src is local else 0  # PACKET_OUTGOING / PACKET_HOST
        mac = bytes.fromhex(src.mac.replace(":", ""))
        head = struct.pack(">HHIHBB", proto, 0, ifindex, 1, pkttype, 6) + mac + b"\x00\x00"
        return head + bytes(l3)

    return link


def null_loopback(src: Host, dst: Host, l3: Packet) -> bytes:
    return struct.pack("<I", 2) + bytes(l3)  # LINKTYPE_NULL, AF_INET in host (little) order


@dataclass
class Frame:
    ts_ns: int
    iface: int
    data: bytes
    order: int


SYN_OPTIONS = [
    ("MSS", 1460),
    ("NOP", None),
    ("WScale", 8),
    ("NOP", None),
    ("NOP", None),
    ("SAckOK", b""),
]

C, S = 0, 1  # sides of a connection: client, server
Plan = Sequence[int | tuple[int, int]]  # segment indices, or (start, end) byte ranges to resend


class Conn:
    """One TCP connection: emits frames with consistent sequence/ack numbers."""

    def __init__(
        self,
        cap: Capture,
        iface: int,
        link: Link,
        client: Host,
        cport: int,
        server: Host,
        sport: int,
        c_isn: int,
        s_isn: int,
    ) -> None:
        self.cap, self.iface, self.link = cap, iface, link
        self.hosts = (client, server)
        self.ports = (cport, sport)
        self.nxt = [c_isn, s_isn]
        self.v6 = ":" in client.ip

    @property
    def endpoints(self) -> tuple[str, int, str, int]:
        return self.hosts[C].ip, self.ports[C], self.hosts[S].ip, self.ports[S]

    def pkt(
        self,
        side: int,
        t: int,
        flags: str,
        payload: bytes = b"",
        seq_no: int | None = None,
        options: list[Any] | None = None,
    ) -> None:
        src, dst = self.hosts[side], self.hosts[1 - side]
        seq_no = self.nxt[side] if seq_no is None else seq_no
        ack = self.nxt[1 - side] if "A" in flags else 0
        window = 64240 if "S" in flags else (1026 if side == C else 8212)
        tcp = TCP(
            sport=self.ports[side],
            dport=self.ports[1 - side],
            seq=seq_no % 2**32,
            ack=ack % 2**32,
            flags=flags,
            window=window,
            options=options or [],
        )
        if self.v6:
            l3: Packet = IPv6(src=src.ip, dst=dst.ip, hlim=src.ttl) / tcp
        else:
            l3 = IP(src=src.ip, dst=dst.ip, ttl=src.ttl, id=src.next_id(), flags="DF") / tcp
        if payload:
            l3 = l3 / Raw(payload)
        self.cap.add(t, self.iface, self.link(src, dst, l3))

    def open(self, t: int, rtt: int = 300 * US) -> int:
        self.pkt(C, t, "S", options=SYN_OPTIONS)
        self.nxt[C] += 1
        self.pkt(S, t + rtt, "SA", options=SYN_OPTIONS)
        self.nxt[S] += 1
        self.pkt(C, t + rtt + 60 * US, "A")
        return t + rtt + 60 * US

    def send(
        self,
        side: int,
        t: int,
        data: bytes,
        sizes: Sequence[int] = (),
        plan: Plan | None = None,
        gap: int = 40 * US,
        ack: bool = True,
    ) -> tuple[int, int]:
        """Send ``data``; returns (time of the first packet carrying byte 0, time of the last).

        ``sizes`` fixes the first segment lengths (the rest is cut at MSS 1460); ``plan`` lists
        what to put on the wire in order: segment indices (repeat one for an exact duplicate) or
        (start, end) byte ranges of ``data`` (an overlapping retransmission).
        """
        bounds = []
        pos = 0
        for size in sizes:
            bounds.append((pos, min(pos + size, len(data))))
            pos += size
        while pos < len(data):
            bounds.append((pos, min(pos + 1460, len(data))))
            pos += 1460
        base = self.nxt[side]
        first_ts: int | None = None
        for step in plan if plan is not None else range(len(bounds)):
            start, end = bounds[step] if isinstance(step, int) else step
            flags = "PA" if end == len(data) else "A"
            self.pkt(side, t, flags, data[start:end], seq_no=base + start)
            if start == 0 and first_ts is None:
                first_ts = t
            last = t
            t += gap
        self.nxt[side] = base + len(data)
        if ack:
            self.pkt(1 - side, last + 180 * US, "A")
        assert first_ts is not None
        return first_ts, last

    def close(self, side: int, t: int) -> int:
        self.pkt(side, t, "FA")
        self.nxt[side] += 1
        self.pkt(1 - side, t + 250 * US, "FA")
        self.nxt[1 - side] += 1
        self.pkt(side, t + 500 * US, "A")
        return t + 500 * US

    def reset(self, side: int, t: int) -> int:
        self.pkt(side, t, "RA")
        return t
