"""Decode one captured frame: link layer, then IPv4/IPv6, then the TCP or UDP header.

This is the general (slower) path. ``pcapfile`` handles the overwhelmingly common frame shape
(Ethernet or raw IP, IPv4 without options, TCP) inline and sends everything else here. Live capture
can use :class:`LinkDecoder` directly on frame bytes.

Decoding never raises on hostile bytes: a frame that cannot be parsed is counted in
``stats.undecodable`` (one warning per reason), a frame that is not IP in ``stats.non_ip``.
"""

from __future__ import annotations

import mmap
from struct import Struct

from analyzer.model import CaptureStats

# Link types (https://www.tcpdump.org/linktypes.html)
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_NFLOG = 239
LINKTYPE_LINUX_SLL2 = 276
#: Raw IP (version taken from the first nibble); 12 and 14 are DLT_RAW values some systems write.
RAW_IP_TYPES = frozenset({101, 12, 14})
SUPPORTED_LINKTYPES = frozenset(
    {
        LINKTYPE_NULL,
        LINKTYPE_ETHERNET,
        LINKTYPE_LOOP,
        LINKTYPE_LINUX_SLL,
        LINKTYPE_IPV4,
        LINKTYPE_IPV6,
        LINKTYPE_NFLOG,
        LINKTYPE_LINUX_SLL2,
    }
    | RAW_IP_TYPES
)

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
#: 802.1Q, 802.1ad (QinQ) and the older 0x9100 outer tag; stacked to any depth.
VLAN_TPIDS = frozenset({0x8100, 0x88A8, 0x9100})
#: BSD address-family values meaning IPv6 (NetBSD/OpenBSD 24, FreeBSD 28, macOS 30).
AF_INET6_VALUES = frozenset({24, 28, 30})
AF_INET = 2
NFULA_PAYLOAD = 9
IPPROTO_TCP = 6
IPPROTO_UDP = 17
#: IPv6 extension headers we step over: hop-by-hop, routing, destination options (and AH, 44 below).
_IPV6_EXT_PLAIN = frozenset({0, 43, 60})
_IPV6_FRAGMENT = 44
_IPV6_AH = 51
_MAX_IPV6_EXT = 16  # more extension headers than this is hostile input

_U16 = Struct(">H").unpack_from
_U16LE = Struct("<H").unpack_from
_IPV4 = Struct(">2xH2xHxB2x4s4s")  # total length, flags+fragment offset, protocol, src, dst
_IPV6 = Struct(">4xHB1x16s16s")  # payload length, next header, src, dst
_TCP = Struct(">HHIIBB")  # sport, dport, seq, ack, data offset byte, flags
_UDP = Struct(">HHH")  # sport, dport, length

#: Anything struct.unpack_from and indexing accept: the mmap of a file, a chunk, a frame.
Buffer = bytes | bytearray | memoryview | mmap.mmap

#: (proto, src, sport, dst, dport, seq, ack, flags, payload_start, payload_end)
Decoded = tuple[int, bytes, int, bytes, int, int, int, int, int, int]

FRAGMENT_WARNING = "IP fragments are not reassembled: fragmented packets are counted and skipped"


class LinkDecoder:
    """Turns a frame into a :data:`Decoded` tuple (offsets into the caller's buffer) or None.

    Counts what it sees into ``stats`` (ipv4, ipv6, tcp, udp, non_ip, ip_fragments,
    undecodable) and warns once per kind of problem.
    """

    __slots__ = ("_warned", "stats")

    def __init__(self, stats: CaptureStats) -> None:
        self.stats = stats
        self._warned: set[object] = set()

    def warn_once(self, key: object, message: str) -> None:
        """Record ``message`` the first time ``key`` is seen."""
        if key not in self._warned:
            self._warned.add(key)
            self.stats.warn(message)

    def _bad(self, reason: str) -> None:
        self.stats.undecodable += 1
        self.warn_once(reason, f"undecodable packets: {reason}")

    def decode(self, linktype: int, buf: Buffer, start: int, end: int) -> Decoded | None:
        """Decode the frame ``buf[start:end]`` captured with ``linktype``.

        Returns the transport tuple for TCP and UDP (payload bounds with link padding removed),
        None for anything else (non-IP, other IP protocols, fragments, broken headers).
        """
        try:
            version, off = self._network(linktype, buf, start, end)
            if version == 4:
                return self._ipv4(buf, off, end)
            if version == 6:
                return self._ipv6(buf, off, end)
        except (IndexError, ValueError):  # struct.error is a ValueError subclass
            self._bad("header runs past the captured bytes")
        return None

    # -- link layer ---------------------------------------------------------------------------

    def _network(self, linktype: int, buf: Buffer, start: int, end: int) -> tuple[int, int]:
        """(IP version 4/6, offset of the IP header); version 0 when done (counted already)."""
        if linktype == LINKTYPE_ETHERNET:
            if end - start < 14:
                self._bad("Ethernet frame shorter than 14 bytes")
                return 0, 0
            return self._ethertype(_U16(buf, start + 12)[0], buf, start + 14, end)
        if linktype in RAW_IP_TYPES or linktype in (LINKTYPE_IPV4, LINKTYPE_IPV6):
            return self._by_version(buf, start, end, linktype)
        if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
            if end - start < 4:
                self._bad("loopback header shorter than 4 bytes")
                return 0, 0
            # Address family is a 4-byte integer in the capturing host's byte order (NULL) or
            # network order (LOOP). Every value of interest is < 256, so it sits in the first
            # byte (little-endian) or the last (big-endian).
            af = buf[start] or buf[start + 3]
            if af == AF_INET:
                return 4, start + 4
            if af in AF_INET6_VALUES:
                return 6, start + 4
            self.stats.non_ip += 1
            return 0, 0
        if linktype == LINKTYPE_LINUX_SLL:
            if end - start < 16:
                self._bad("Linux cooked (SLL) header shorter than 16 bytes")
                return 0, 0
            return self._ethertype(_U16(buf, start + 14)[0], buf, start + 16, end)
        if linktype == LINKTYPE_LINUX_SLL2:
            if end - start < 20:
                self._bad("Linux cooked v2 (SLL2) header shorter than 20 bytes")
                return 0, 0
            return self._ethertype(_U16(buf, start)[0], buf, start + 20, end)
        if linktype == LINKTYPE_NFLOG:
            return self._nflog(buf, start, end)
        self.stats.undecodable += 1
        self.warn_once(
            ("linktype", linktype),
            f"link type {linktype} is not supported: its packets are counted as undecodable",
        )
        return 0, 0

    def _ethertype(self, etype: int, buf: Buffer, off: int, end: int) -> tuple[int, int]:
        """Step over VLAN tags (any depth) and map the EtherType to an IP version."""
        while etype in VLAN_TPIDS:
            if off + 4 > end:
                self._bad("VLAN tag cut short")
                return 0, 0
            etype = _U16(buf, off + 2)[0]
            off += 4
        if etype == ETHERTYPE_IPV4:
            return 4, off
        if etype == ETHERTYPE_IPV6:
            return 6, off
        self.stats.non_ip += 1
        return 0, 0

    def _by_version(self, buf: Buffer, off: int, end: int, linktype: int) -> tuple[int, int]:
        if off >= end:
            self._bad("empty raw IP packet")
            return 0, 0
        version = buf[off] >> 4
        if (version == 4 and linktype != LINKTYPE_IPV6) or (
            version == 6 and linktype != LINKTYPE_IPV4
        ):
            return version, off
        self._bad(f"raw IP packet with IP version {version} (link type {linktype})")
        return 0, 0

    def _nflog(self, buf: Buffer, start: int, end: int) -> tuple[int, int]:
        """Find the payload TLV (type 9) in a Linux NFLOG frame.

        Layout: family(1) version(1) resource id(2), then TLVs of length(2) type(2) value, with
        length and type in the capturing host's byte order and each TLV padded to 4 bytes.
        """
        t = start + 4
        if t + 4 > end:
            self._bad("NFLOG header cut short")
            return 0, 0
        # Types are small numbers: a nonzero low byte first means little-endian TLV headers.
        unpack = _U16LE if buf[t + 2] else _U16
        while t + 4 <= end:
            length = unpack(buf, t)[0]
            if length < 4:
                self._bad("NFLOG TLV length < 4")
                return 0, 0
            if unpack(buf, t + 2)[0] & 0x7FFF == NFULA_PAYLOAD:
                payload_end = min(t + length, end)
                return self._by_version(buf, t + 4, payload_end, LINKTYPE_NFLOG)
            t += (length + 3) & ~3
        self.stats.non_ip += 1  # no payload TLV: nothing to decode
        return 0, 0

    # -- network layer --------------------------------------------------------------------------

    def _ipv4(self, buf: Buffer, off: int, end: int) -> Decoded | None:
        if end - off < 20:
            self._bad("IPv4 header cut short")
            return None
        vihl = buf[off]
        ihl = (vihl & 0x0F) * 4
        if vihl >> 4 != 4 or ihl < 20:
            self._bad("bad IPv4 version or header length")
            return None
        if off + ihl > end:
            self._bad("IPv4 options cut short")
            return None
        total, frag, proto, src, dst = _IPV4.unpack_from(buf, off)
        if total and total < ihl:
            self._bad("IPv4 total length smaller than its header")
            return None
        self.stats.ipv4 += 1
        if frag & 0x3FFF:  # more-fragments flag or a nonzero offset
            self.stats.ip_fragments += 1
            self.warn_once("fragment", FRAGMENT_WARNING)
            return None
        # Total length 0 is what TCP segmentation offload captures show: use the frame.
        ip_end = off + total if total else end
        return self._transport(proto, src, dst, buf, off + ihl, min(ip_end, end))

    def _ipv6(self, buf: Buffer, off: int, end: int) -> Decoded | None:
        if end - off < 40:
            self._bad("IPv6 header cut short")
            return None
        if buf[off] >> 4 != 6:
            self._bad("bad IPv6 version")
            return None
        plen, nh, src, dst = _IPV6.unpack_from(buf, off)
        self.stats.ipv6 += 1
        p = off + 40
        ip_end = min(p + plen, end) if plen else end  # 0: jumbogram or offload
        for _ in range(_MAX_IPV6_EXT):
            if nh in (IPPROTO_TCP, IPPROTO_UDP):
                return self._transport(nh, src, dst, buf, p, ip_end)
            if p + 8 > ip_end:
                if nh in _IPV6_EXT_PLAIN or nh in (_IPV6_FRAGMENT, _IPV6_AH):
                    self._bad("IPv6 extension header cut short")
                return None
            if nh in _IPV6_EXT_PLAIN:
                nh, p = buf[p], p + (buf[p + 1] + 1) * 8
            elif nh == _IPV6_FRAGMENT:
                offset_flags = _U16(buf, p + 2)[0]
                if offset_flags & 0xFFF9:  # fragment offset != 0 or more-fragments flag
                    self.stats.ip_fragments += 1
                    self.warn_once("fragment", FRAGMENT_WARNING)
                    return None
                nh, p = buf[p], p + 8  # atomic fragment
            elif nh == _IPV6_AH:
                nh, p = buf[p], p + (buf[p + 1] + 2) * 4
            else:
                return None  # ICMPv6, ESP, no next header, ...: not TCP/UDP
        self._bad("too many IPv6 extension headers")
        return None

    # -- transport layer ------------------------------------------------------------------------

    def _transport(
        self, proto: int, src: bytes, dst: bytes, buf: Buffer, off: int, end: int
    ) -> Decoded | None:
        if proto == IPPROTO_TCP:
            if end - off < 20:
                self._bad("TCP header cut short")
                return None
            sport, dport, seq, ack, doff, flags = _TCP.unpack_from(buf, off)
            hlen = (doff >> 2) & 0x3C
            if hlen < 20:
                self._bad("TCP data offset < 5")
                return None
            self.stats.tcp += 1
            start = off + hlen
            return (6, src, sport, dst, dport, seq, ack, flags, min(start, end), end)
        if proto == IPPROTO_UDP:
            if end - off < 8:
                self._bad("UDP header cut short")
                return None
            sport, dport, ulen = _UDP.unpack_from(buf, off)
            self.stats.udp += 1
            if 8 <= ulen <= end - off:
                end = off + ulen
            return (17, src, sport, dst, dport, 0, 0, 0, off + 8, end)
        return None
