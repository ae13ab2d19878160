"""Decode one captured frame: link layer, tunnels, then IPv4/IPv6, then the TCP or UDP header.

This is the general (slower) path. ``pcapfile`` handles the overwhelmingly common frame shape
(Ethernet or raw IP, IPv4 without options, TCP) inline and sends everything else here. Live capture
can use :class:`LinkDecoder` directly on frame bytes.

Tunnels are taken apart and the innermost TCP/UDP packet is returned: GRE (checksum, key and
sequence fields; carrying IPv4, IPv6, Ethernet, MPLS, WCCP), ERSPAN types I, II and III, VXLAN
(UDP 4789, 8472 and the ports of :func:`set_vxlan_ports`), VXLAN-GPE (4790), GENEVE (6081),
MPLS label stacks (on Ethernet, in IP and in UDP 6635; IP or pseudowire Ethernet after the
stack), PPPoE sessions, IP-in-IP, IPv6-in-IPv4, IPv4/IPv6-in-IPv6, EtherIP and GTP-U G-PDUs,
the tags that wrap an Ethernet frame (802.1ah PBB, Cisco VN-Tag, 802.1BR E-Tag, Cisco MetaData
/ TrustSec SGT, HSR) and integrity-only MACsec, nested up to ``MAX_DEPTH`` layers; IPv4 and IPv6
authentication headers are stepped over. IPv4 and IPv6 fragments are put back together
(``analyzer.sources.ipfrag``), at any depth. Each layer read is counted in
``stats.encapsulations`` (ids in ``stats.tunnel_ids``); packets of an encapsulation not read
(an unknown GRE protocol, GTP-C, L2TP, IPsec ESP, encrypted MACsec, an EtherType not read that
is not a known non-IP protocol, ...) are counted by name in ``stats.unread_encapsulations`` with
one warning per name, never dropped in silence.

Flow keys and tunnel ids: two tenants may use the same inner addresses. A tunnel id that both
directions of a connection share and that tells tenants or mirror sessions apart (the VNI of
VXLAN, VXLAN-GPE and GENEVE, the GRE key, the ERSPAN session) is appended to *both* packed
addresses of the packet as a 5-byte tag (kind, 32-bit id), one per such layer, outer first. So
an address is 4 or 16 bytes plus 5 per tag, and its length modulo 5 (4: IPv4, 1: IPv6) tells
which: :func:`inner_address` and :func:`tunnel_text` take it apart. Ids that differ by direction
(GTP-U TEIDs, MPLS labels) or identify nothing beyond the inner addresses (PPPoE sessions) are
counted, not keyed.

Counters count headers read at any depth: a VXLAN packet adds one to ``ipv4`` twice (outer and
inner), to ``udp`` and to ``tcp``.

Decoding never raises on hostile bytes: a frame that cannot be parsed is counted in
``stats.undecodable`` (one warning per reason), a frame that is not IP in ``stats.non_ip``.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterable
from struct import Struct

from analyzer.model import CaptureStats
from analyzer.sources.ipfrag import LOST_REASONS, Defragmenter

# Link types (https://www.tcpdump.org/linktypes.html)
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_PPP = 9  # PPP, with or without the FF 03 of HDLC-like framing
LINKTYPE_PPP_HDLC = 50  # PPP in HDLC-like framing, or Cisco HDLC (by the first byte)
LINKTYPE_PPP_ETHER = 51  # a PPPoE session header, then PPP
LINKTYPE_C_HDLC = 104  # Cisco HDLC
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_PPP_PPPD = 166  # PPP in HDLC-like framing, a direction byte in place of FF
LINKTYPE_ERF = 197  # Endace ERF records
LINKTYPE_PPP_WITH_DIR = 204  # a direction byte, then PPP
LINKTYPE_C_HDLC_WITH_DIR = 205  # a direction byte, then Cisco HDLC
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
        LINKTYPE_PPP,
        LINKTYPE_PPP_HDLC,
        LINKTYPE_PPP_ETHER,
        LINKTYPE_C_HDLC,
        LINKTYPE_LOOP,
        LINKTYPE_LINUX_SLL,
        LINKTYPE_PPP_PPPD,
        LINKTYPE_ERF,
        LINKTYPE_PPP_WITH_DIR,
        LINKTYPE_C_HDLC_WITH_DIR,
        LINKTYPE_IPV4,
        LINKTYPE_IPV6,
        LINKTYPE_NFLOG,
        LINKTYPE_LINUX_SLL2,
    }
    | RAW_IP_TYPES
)
#: PPP protocol numbers (RFC 1661; IANA's PPP DLL protocol numbers) for what is read, and
#: names for the network-layer protocols that hide IP this decoder does not read. Numbers from
#: 0x8000 up are PPP's own negotiation (LCP, IPCP, PAP, CHAP, ...): not IP, counted quietly.
PPP_IPV4, PPP_IPV6 = 0x0021, 0x0057
PPP_MPLS = frozenset({0x0281, 0x0283})
_PPP_UNREAD = {
    0x002D: "PPP Van Jacobson compressed TCP/IP",
    0x002F: "PPP Van Jacobson uncompressed TCP/IP",
    0x003D: "PPP multilink fragments",
    0x00FB: "PPP compressed datagrams (one link)",
    0x00FD: "PPP compressed datagrams",
}
#: ERF record types (Wireshark's wiretap/erf_record.h): Ethernet (after 2 bytes of offset and
#: padding), packet-over-SONET HDLC (PPP or Cisco HDLC; the multichannel ones after a 4-byte
#: header), raw IPv4 and IPv6; provenance metadata and padding records carry no packet.
_ERF_ETHERNET = frozenset({2, 11, 16, 20})
_ERF_HDLC = frozenset({1, 10, 15, 19})
_ERF_MC_HDLC = frozenset({5, 17})
_ERF_IPV4, _ERF_IPV6 = 22, 23
_ERF_NO_PACKET = frozenset({27, 48})
_MAX_ERF_EXT = 16  # extension headers in one record; more is hostile input

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_PPPOE_SESSION = 0x8864
ETHERTYPE_TEB = 0x6558  # transparent Ethernet bridging: an Ethernet frame follows
ETHERTYPE_WCCP = 0x883E
ETHERTYPE_ERSPAN = 0x88BE  # types I and II
ETHERTYPE_ERSPAN3 = 0x22EB
ETHERTYPE_MACSEC = 0x88E5
MPLS_TYPES = frozenset({0x8847, 0x8848})  # unicast, multicast
#: Tags that wrap the rest of an Ethernet frame, by EtherType: (name, bytes of the tag after its
#: EtherType, up to the EtherType of what it carries). 802.1ah's I-TAG is followed by the
#: customer frame's MAC addresses; Cisco MetaData (TrustSec SGT) is version, length, option
#: type and the 2-byte SGT, as Wireshark's dissector reads it; HSR is path, size and sequence.
_WRAPPING_TAGS = {
    0x88E7: ("802.1ah PBB", 16),
    0x8926: ("VN-Tag", 4),
    0x893F: ("802.1BR E-Tag", 6),
    0x8909: ("Cisco MetaData", 6),
    0x892F: ("HSR", 4),
}
_MACSEC_ICV = 16  # integrity check value after the secure data (every standard cipher suite)
#: 802.1Q, 802.1ad (QinQ) and the older 0x9100 outer tag; stacked to any depth.
VLAN_TPIDS = frozenset({0x8100, 0x88A8, 0x9100})
#: EtherTypes of protocols that never carry an IP packet, counted as non-IP without a word
#: (any other EtherType not read is named as an encapsulation not read): ARP, RARP (and Cisco
#: HDLC's SLARP), LLDP, EAPOL and 802.11 pre-authentication, slow protocols (LACP), PTP,
#: Ethernet flow control, loopback, 1905.1, HomePlug (two), IPX, AppleTalk and AARP, Profinet,
#: EtherCAT, FCoE and its FIP, PPPoE discovery, Wake-on-LAN, Microsoft's LLTD, CFM, MRP, IEC
#: 61850 GOOSE and sampled values, AVTP, SRP / MVRP / MMRP, PRP supervision, RoCE, 802.11
#: TDLS, and CDP as Cisco HDLC numbers it.
_NOT_IP_ETHERTYPES = frozenset(
    {
        0x0806, 0x8035, 0x88CC, 0x888E, 0x88C7, 0x8809, 0x88F7, 0x8808, 0x9000, 0x893A,
        0x88E1, 0x8912, 0x8137, 0x809B, 0x80F3, 0x8892, 0x88A4, 0x8906, 0x8914, 0x8863,
        0x0842, 0x88D9, 0x8902, 0x88E3, 0x88B8, 0x88BA, 0x22F0, 0x22EA, 0x88F5, 0x88F6,
        0x88FB, 0x8915, 0x890D, 0x2000,
    }
)  # fmt: skip
#: What a GRE or GENEVE payload type may name for us to read it.
_CARRIED = frozenset({ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_TEB, ETHERTYPE_PPPOE_SESSION})
_CARRIED |= MPLS_TYPES
#: Ethertypes that make the bytes after an MPLS stack look like a pseudowire's Ethernet frame.
_PW_ETHERTYPES = _CARRIED | VLAN_TPIDS | {0x0806}
#: BSD address-family values meaning IPv6 (NetBSD/OpenBSD 24, FreeBSD 28, macOS 30).
AF_INET6_VALUES = frozenset({24, 28, 30})
AF_INET = 2
NFULA_PAYLOAD = 9
IPPROTO_IPIP = 4
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_IPV6 = 41
IPPROTO_GRE = 47
IPPROTO_ESP = 50
IPPROTO_AH = 51
IPPROTO_ETHERIP = 97
IPPROTO_MPLS = 137
_SERIAL_LINKS = frozenset(
    {
        LINKTYPE_PPP,
        LINKTYPE_PPP_HDLC,
        LINKTYPE_PPP_ETHER,
        LINKTYPE_C_HDLC,
        LINKTYPE_PPP_PPPD,
        LINKTYPE_ERF,
        LINKTYPE_PPP_WITH_DIR,
        LINKTYPE_C_HDLC_WITH_DIR,
    }
)
#: IP protocols that carry a tunnel this decoder does not read.
_UNREAD_IP = {115: "L2TPv3"}
#: IPsec ESP is read no further either (``_esp``), but each address pair it runs between is
#: noted, up to this many per capture; packets between any others are noted under
#: ``ESP_OTHER_PAIRS`` (no addresses: any).
MAX_ESP_PAIRS = 1024
ESP_OTHER_PAIRS = (b"", b"")
NAT_T_PORT = 4500  # IKE and ESP in UDP (RFC 3948)
#: IPv6 extension headers we step over: hop-by-hop, routing, destination options (and AH, 44 below).
_IPV6_EXT_PLAIN = frozenset({0, 43, 60})
_IPV6_FRAGMENT = 44
_IPV6_EXT = _IPV6_EXT_PLAIN | {_IPV6_FRAGMENT, IPPROTO_AH}
_MAX_IPV6_EXT = 16  # more extension headers than this is hostile input
_MAX_AH = 4  # IPv4 authentication headers in a row (one is usual)

VXLAN_PORT = 4789
#: UDP ports always read as VXLAN: IANA's 4789, and 8472, the Linux kernel's default (and
#: flannel's), which predates it: traffic there left unread would be a blind spot nobody named.
DEFAULT_VXLAN_PORTS = frozenset({VXLAN_PORT, 8472})
VXLAN_GPE_PORT = 4790
GENEVE_PORT = 6081
GTP_U_PORT = 2152
MPLS_UDP_PORT = 6635
MAX_VXLAN_PORTS = 14  # besides the default two (the native walk holds 16)
#: UDP ports (either end) of tunnels this decoder does not read; their datagrams stay UDP.
_UNREAD_UDP = {1194: "OpenVPN", 1701: "L2TP", 2123: "GTP-C", 3544: "Teredo"}
_GTP_MESSAGES = {
    1: "echo request",
    2: "echo response",
    26: "error indication",
    31: "supported extension headers notification",
    254: "end marker",
}

#: Tunnel layers one packet may be nested in; deeper packets are counted, not read.
MAX_DEPTH = 8
MAX_LABELS = 16  # MPLS label stack entries
_MAX_GTP_EXT = 16  # GTP-U extension headers
MAX_TUNNEL_IDS = 64  # distinct ids kept per encapsulation for the summary
MAX_UNREAD_NAMES = 32  # distinct names of encapsulations not read; the rest are lumped together
UNREAD_OTHER = "other encapsulations"

#: Tag kinds: the first byte of each 5-byte tunnel tag appended to a packed address.
TAG_GRE_KEY = 1
TAG_ERSPAN = 2
TAG_VXLAN = 3
TAG_GENEVE = 4
TAG_VXLAN_GPE = 5
_TAG_NAMES = {
    TAG_GRE_KEY: "GRE key",
    TAG_ERSPAN: "ERSPAN session",
    TAG_VXLAN: "VXLAN VNI",
    TAG_GENEVE: "GENEVE VNI",
    TAG_VXLAN_GPE: "VXLAN-GPE VNI",
}
TAG_LEN = 5

#: 802.3: an EtherType field of 1500 or less is the frame's length, and an LLC header follows;
#: AA AA 03 is LLC for SNAP, whose OUI 0 (RFC 1042) or 00-00-F8 (802.1H) says an EtherType
#: comes next.
_MAX_8023_LENGTH = 1500
_LLC_SNAP = b"\xaa\xaa\x03"
_SNAP_ETHERTYPE_OUIS = (b"\x00\x00\x00", b"\x00\x00\xf8")

_U16 = Struct(">H").unpack_from
_U16LE = Struct("<H").unpack_from
_U32 = Struct(">I").unpack_from
_U16X2 = Struct(">HH").unpack_from
_TAG = Struct(">BI")
_IPV4 = Struct(">2xH2xHxB2x4s4s")  # total length, flags+fragment offset, protocol, src, dst
_IPV6 = Struct(">4xHB1x16s16s")  # payload length, next header, src, dst
_TCP = Struct(">HHIIBB")  # sport, dport, seq, ack, data offset byte, flags
_UDP = Struct(">HHH")  # sport, dport, length
_GTP = Struct(">BBHI")  # flags, message type, length, TEID

#: Anything struct.unpack_from and indexing accept: the mmap of a file, a chunk, a frame.
Buffer = bytes | bytearray | memoryview | mmap.mmap

#: (proto, src, sport, dst, dport, seq, ack, flags, payload_start, payload_end), offsets into
#: the caller's buffer; a packet put together from IP fragments adds the buffer they index
#: (``payload_of``).
Decoded = tuple


_extra_vxlan_ports: frozenset[int] = frozenset()


def set_vxlan_ports(ports: Iterable[int]) -> None:
    """Read UDP datagrams to these destination ports as VXLAN too, besides 4789 and 8472, in
    every decoder made from now on (``--vxlan-port``)."""
    global _extra_vxlan_ports
    _extra_vxlan_ports = _checked_ports(ports)


def vxlan_ports() -> frozenset[int]:
    """The UDP destination ports read as VXLAN by decoders made now."""
    return _extra_vxlan_ports | DEFAULT_VXLAN_PORTS


def vxlan_ports_or_default(ports: Iterable[int] | None) -> frozenset[int]:
    """``ports`` plus the default ones, or the module's setting (:func:`vxlan_ports`) for None."""
    if ports is None:
        return vxlan_ports()
    return _checked_ports(ports) | DEFAULT_VXLAN_PORTS


def _checked_ports(ports: Iterable[int]) -> frozenset[int]:
    chosen = frozenset(int(p) for p in ports)
    bad = sorted(p for p in chosen if not 0 < p < 65536)
    if bad:
        raise ValueError(f"not a UDP port: {bad[0]}")
    if len(chosen - DEFAULT_VXLAN_PORTS) > MAX_VXLAN_PORTS:
        raise ValueError(f"at most {MAX_VXLAN_PORTS} VXLAN ports besides 4789 and 8472")
    return chosen


def inner_address(packed: bytes) -> bytes:
    """The IP address (4 or 16 bytes) of a packed flow address, without its tunnel tags."""
    return packed[:4] if len(packed) % TAG_LEN == 4 else packed[:16]


def tunnel_text(packed: bytes) -> str:
    """The tunnel ids keyed into a packed flow address, outer first ("VXLAN VNI 5001");
    "" for an address outside any keyed tunnel."""
    tags = packed[4:] if len(packed) % TAG_LEN == 4 else packed[16:]
    out = []
    for i in range(0, len(tags) - TAG_LEN + 1, TAG_LEN):
        kind, ident = _TAG.unpack_from(tags, i)
        out.append(f"{_TAG_NAMES.get(kind, f'tunnel {kind}')} {ident}")
    return " / ".join(out)


def payload_of(decoded: Decoded, buf: Buffer) -> Buffer:
    """The buffer ``decoded``'s payload offsets index: the frame's (``buf``), or the datagram
    put together from IP fragments."""
    return decoded[10] if len(decoded) > 10 else buf


def _within(whole: bytes, decoded: Decoded | None) -> Decoded | None:
    """``decoded`` of a datagram put together from fragments, with the buffer it indexes (a
    tunnelled packet inside that was itself fragmented carries its own already)."""
    if decoded is None or len(decoded) > 10:
        return decoded
    return (*decoded, memoryview(whole))


def _note_pair(
    pairs: dict[tuple[bytes, bytes], list[float]], src: bytes, dst: bytes, ts: float
) -> tuple[bytes, bytes]:
    """Count one more in ``pairs`` for the address pair (lower address first; past
    ``MAX_ESP_PAIRS`` pairs, ``ESP_OTHER_PAIRS`` stands for the rest), first seen at ``ts``;
    the pair it was counted under."""
    pair = (src, dst) if src <= dst else (dst, src)
    seen = pairs.get(pair)
    if seen is None and len(pairs) >= MAX_ESP_PAIRS:
        pair = ESP_OTHER_PAIRS
        seen = pairs.get(pair)
    if seen is None:
        pairs[pair] = seen = [ts, 0]
    seen[1] += 1
    return pair


class LinkDecoder:
    """Turns a frame into a :data:`Decoded` tuple (offsets into the caller's buffer) or None.

    Counts what it sees into ``stats`` (ipv4, ipv6, tcp, udp, non_ip, ip_fragments,
    undecodable, encapsulations) and warns once per kind of problem. ``vxlan_ports`` are the
    UDP destination ports read as VXLAN (default: 4789, 8472 and those of :func:`set_vxlan_ports`).
    IP fragments are put back together (``analyzer.sources.ipfrag``): the fragment that
    completes a datagram decodes as the whole packet; ``finish`` reports what never completed.
    """

    __slots__ = ("_defrag", "_now", "_warned", "stats", "vxlan_ports")

    def __init__(self, stats: CaptureStats, vxlan_ports: Iterable[int] | None = None) -> None:
        self.stats = stats
        self._warned: set[object] = set()
        self.vxlan_ports = vxlan_ports_or_default(vxlan_ports)
        self._defrag: Defragmenter | None = None  # made at the first fragment
        self._now = 0.0  # capture time of the frame being decoded

    def finish(self) -> None:
        """The capture ended: count and report the fragmented datagrams not put together."""
        defrag = self._defrag
        if defrag is None:
            return
        defrag.finish()
        self.stats.ip_reassembled = defrag.reassembled
        lost = sum(defrag.lost.values())
        self.stats.ip_datagrams_lost = lost
        if lost:
            why = "; ".join(f"{n:,} {LOST_REASONS[r]}" for r, n in sorted(defrag.lost.items()))
            self.stats.warn(
                f"{self.stats.path}: {lost:,} fragmented IP datagram(s) not put together ({why}): "
                "their packets are missing"
            )

    def warn_once(self, key: object, message: str) -> None:
        """Record ``message`` the first time ``key`` is seen."""
        if key not in self._warned:
            self._warned.add(key)
            self.stats.warn(message)

    def _bad(self, reason: str) -> None:
        self.stats.undecodable += 1
        self.warn_once(reason, f"undecodable packets: {reason}")

    def _unread(self, name: str) -> None:
        """Count a packet of an encapsulation not read (named; warned once per name)."""
        unread = self.stats.unread_encapsulations
        if name not in unread:
            if len(unread) >= MAX_UNREAD_NAMES:
                name = UNREAD_OTHER
            if name not in unread:
                self.stats.warn(
                    f"packets in an encapsulation not read: {name} (counted, not analysed)"
                )
        unread[name] = unread.get(name, 0) + 1

    def _enter(self, name: str, depth: int, ident: int | None = None) -> bool:
        """Count one packet entering a tunnel layer; False (counted as not read) when it is
        nested deeper than ``MAX_DEPTH``."""
        if depth >= MAX_DEPTH:
            self._unread(f"tunnels nested deeper than {MAX_DEPTH}")
            return False
        stats = self.stats
        enc = stats.encapsulations
        enc[name] = enc.get(name, 0) + 1
        if ident is not None:
            ids = stats.tunnel_ids.get(name)
            if ids is None:
                stats.tunnel_ids[name] = [ident]
            elif len(ids) < MAX_TUNNEL_IDS and ident not in ids:
                ids.append(ident)
        return True

    def decode(
        self, linktype: int, buf: Buffer, start: int, end: int, ts: float = 0.0
    ) -> Decoded | None:
        """Decode the frame ``buf[start:end]`` captured with ``linktype`` at ``ts``.

        Returns the transport tuple of the innermost TCP or UDP packet (payload bounds with link
        padding removed; addresses tagged with tunnel ids as the module docstring says), None for
        anything else (non-IP, other IP protocols, a fragment that does not complete its
        datagram, broken headers). The payload is in ``payload_of(result, buf)``.
        """
        self._now = ts
        try:
            return self._link(linktype, buf, start, end)
        except (IndexError, ValueError):  # struct.error is a ValueError subclass
            self._bad("header runs past the captured bytes")
        return None

    # -- link layer ---------------------------------------------------------------------------

    def _link(self, linktype: int, buf: Buffer, start: int, end: int) -> Decoded | None:
        if linktype == LINKTYPE_ETHERNET:
            return self._ether(buf, start, end, b"", 0)
        if linktype in RAW_IP_TYPES or linktype in (LINKTYPE_IPV4, LINKTYPE_IPV6):
            return self._by_version(buf, start, end, linktype)
        if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
            if end - start < 4:
                self._bad("loopback header shorter than 4 bytes")
                return None
            # Address family is a 4-byte integer in the capturing host's byte order (NULL) or
            # network order (LOOP). Every value of interest is < 256, so it sits in the first
            # byte (little-endian) or the last (big-endian).
            af = buf[start] or buf[start + 3]
            if af == AF_INET:
                return self._ipv4(buf, start + 4, end, b"", 0)
            if af in AF_INET6_VALUES:
                return self._ipv6(buf, start + 4, end, b"", 0)
            self.stats.non_ip += 1
            return None
        if linktype == LINKTYPE_LINUX_SLL:
            if end - start < 16:
                self._bad("Linux cooked (SLL) header shorter than 16 bytes")
                return None
            return self._ethertype(_U16(buf, start + 14)[0], buf, start + 16, end, b"", 0)
        if linktype == LINKTYPE_LINUX_SLL2:
            if end - start < 20:
                self._bad("Linux cooked v2 (SLL2) header shorter than 20 bytes")
                return None
            return self._ethertype(_U16(buf, start)[0], buf, start + 20, end, b"", 0)
        if linktype == LINKTYPE_NFLOG:
            return self._nflog(buf, start, end)
        if linktype in _SERIAL_LINKS:
            return self._serial(linktype, buf, start, end)
        self.stats.undecodable += 1
        self.warn_once(
            ("linktype", linktype),
            f"link type {linktype} is not supported: its packets are counted as undecodable",
        )
        return None

    def _serial(self, linktype: int, buf: Buffer, start: int, end: int) -> Decoded | None:
        """The serial-line and Endace link types: PPP, Cisco HDLC, their variants with a
        direction byte first, PPPoE without Ethernet, and ERF records."""
        if linktype == LINKTYPE_ERF:
            return self._erf(buf, start, end)
        if linktype == LINKTYPE_PPP_ETHER:
            return self._pppoe(buf, start, end, b"", 0)
        if linktype in (LINKTYPE_PPP_WITH_DIR, LINKTYPE_C_HDLC_WITH_DIR):
            start += 1  # the direction byte
        if linktype in (LINKTYPE_C_HDLC, LINKTYPE_C_HDLC_WITH_DIR):
            return self._cisco_hdlc(buf, start, end)
        if linktype == LINKTYPE_PPP_PPPD:
            return self._ppp(buf, start + 2, end)  # direction, then the 03 control byte
        if linktype == LINKTYPE_PPP_HDLC:
            return self._hdlc(buf, start, end)
        return self._ppp(buf, start, end)

    def _hdlc(self, buf: Buffer, off: int, end: int) -> Decoded | None:
        """HDLC framing of either kind, told apart as Wireshark does: Cisco HDLC's address byte
        is 0x0F (unicast) or 0x8F (broadcast); anything else is PPP."""
        if off < end and buf[off] in (0x0F, 0x8F):
            return self._cisco_hdlc(buf, off, end)
        return self._ppp(buf, off, end)

    def _cisco_hdlc(self, buf: Buffer, off: int, end: int) -> Decoded | None:
        """Cisco HDLC: address, control, then an EtherType (SLARP keepalives are 0x8035)."""
        if end - off < 4:
            self._bad("Cisco HDLC header cut short")
            return None
        return self._ethertype(_U16(buf, off + 2)[0], buf, off + 4, end, b"", 0)

    def _ppp(self, buf: Buffer, off: int, end: int) -> Decoded | None:
        """A PPP frame (RFC 1661): FF 03 when it keeps HDLC-like framing's address and control
        bytes (RFC 1662), then the protocol in 2 bytes, or in 1 when compressed (a protocol's
        last byte is odd, its first even: an odd first byte is the whole field)."""
        if end - off >= 2 and buf[off] == 0xFF and buf[off + 1] == 0x03:
            off += 2
        if off >= end or (not buf[off] & 1 and end - off < 2):
            self._bad("PPP header cut short")
            return None
        if buf[off] & 1:
            return self._ppp_payload(buf[off], buf, off + 1, end, b"", 0)
        return self._ppp_payload(_U16(buf, off)[0], buf, off + 2, end, b"", 0)

    def _ppp_payload(
        self, proto: int, buf: Buffer, off: int, end: int, tag: bytes, depth: int
    ) -> Decoded | None:
        """What a PPP protocol number names: IPv4, IPv6, MPLS, PPP's own negotiation (not
        IP), or a network protocol not read (named)."""
        if proto == PPP_IPV4:
            return self._ipv4(buf, off, end, tag, depth)
        if proto == PPP_IPV6:
            return self._ipv6(buf, off, end, tag, depth)
        if proto in PPP_MPLS:
            return self._mpls(buf, off, end, tag, depth)
        if proto >= 0x8000:
            self.stats.non_ip += 1
        else:
            self._unread(_PPP_UNREAD.get(proto) or f"PPP protocol 0x{proto:04x}")
        return None

    def _erf(self, buf: Buffer, start: int, end: int) -> Decoded | None:
        """An Endace ERF record (link type 197): the 16-byte record header, its 8-byte extension
        headers (while the top bit of the type, then of each one's first byte, says another
        follows), then the frame its record type names."""
        if end - start < 16:
            self._bad("ERF record header cut short")
            return None
        kind = buf[start + 8]
        more, p = kind & 0x80, start + 16
        for _ in range(_MAX_ERF_EXT):
            if not more:
                break
            if p + 8 > end:
                self._bad("ERF extension header cut short")
                return None
            more, p = buf[p] & 0x80, p + 8
        else:
            if more:
                self._bad("too many ERF extension headers")
                return None
        kind &= 0x7F
        if kind in _ERF_ETHERNET:
            return self._ether(buf, p + 2, end, b"", 0)
        if kind in _ERF_HDLC or kind in _ERF_MC_HDLC:
            return self._hdlc(buf, p + (4 if kind in _ERF_MC_HDLC else 0), end)
        if kind == _ERF_IPV4:
            return self._ipv4(buf, p, end, b"", 0)
        if kind == _ERF_IPV6:
            return self._ipv6(buf, p, end, b"", 0)
        if kind in _ERF_NO_PACKET:
            self.stats.non_ip += 1
        else:
            self._unread(f"ERF record type {kind}")
        return None

    def _ether(self, buf: Buffer, off: int, end: int, tag: bytes, depth: int) -> Decoded | None:
        if end - off < 14:
            self._bad("Ethernet frame shorter than 14 bytes")
            return None
        return self._ethertype(_U16(buf, off + 12)[0], buf, off + 14, end, tag, depth)

    def _ethertype(
        self,
        etype: int,
        buf: Buffer,
        off: int,
        end: int,
        tag: bytes,
        depth: int,
    ) -> Decoded | None:
        """Step over VLAN tags (any depth) and read what the EtherType names."""
        while etype in VLAN_TPIDS:
            if off + 4 > end:
                self._bad("VLAN tag cut short")
                return None
            etype = _U16(buf, off + 2)[0]
            off += 4
        if etype == ETHERTYPE_IPV4:
            return self._ipv4(buf, off, end, tag, depth)
        if etype == ETHERTYPE_IPV6:
            return self._ipv6(buf, off, end, tag, depth)
        if etype in MPLS_TYPES:
            return self._mpls(buf, off, end, tag, depth)
        if etype == ETHERTYPE_PPPOE_SESSION:
            return self._pppoe(buf, off, end, tag, depth)
        wrapping = _WRAPPING_TAGS.get(etype)
        if wrapping is not None:
            return self._wrapping_tag(*wrapping, buf, off, end, tag, depth)
        if etype == ETHERTYPE_MACSEC:
            return self._macsec(buf, off, end, tag, depth)
        if etype <= _MAX_8023_LENGTH and buf[off : off + 3] == _LLC_SNAP:
            # IEEE 802.3 with LLC/SNAP (some switches' mirror ports, token-ring bridges): the
            # length field, then AA AA 03 and an OUI of 0 (or 00-00-F8, bridge tunnelling)
            # before the EtherType
            if off + 8 > end or buf[off + 3 : off + 6] not in _SNAP_ETHERTYPE_OUIS:
                self.stats.non_ip += 1
                return None
            inner = _U16(buf, off + 6)[0]
            if inner <= _MAX_8023_LENGTH:  # not an EtherType: nothing IP can follow
                self.stats.non_ip += 1
                return None
            return self._ethertype(inner, buf, off + 8, min(end, off + etype), tag, depth)
        if etype <= _MAX_8023_LENGTH or etype in _NOT_IP_ETHERTYPES:
            self.stats.non_ip += 1
        else:  # it may wrap IP as the tags above do: say that it was skipped
            self._unread(f"EtherType 0x{etype:04x}")
        return None

    def _wrapping_tag(
        self, name: str, size: int, buf: Buffer, off: int, end: int, tag: bytes, depth: int
    ) -> Decoded | None:
        """A tag of ``size`` bytes (``_WRAPPING_TAGS``), then the EtherType of the frame it
        wraps: one layer, read on like any Ethernet payload."""
        p = off + size
        if p + 2 > end:
            self._bad(f"{name} tag cut short")
            return None
        if not self._enter(name, depth):
            return None
        return self._ethertype(_U16(buf, p)[0], buf, p + 2, end, tag, depth + 1)

    def _macsec(self, buf: Buffer, off: int, end: int, tag: bytes, depth: int) -> Decoded | None:
        """MACsec (802.1AE): the SecTAG (TCI and association number, short length, packet
        number, and the 8-byte secure channel id when the SC bit is set), the secure data, then
        the ICV. Integrity only (E and C bits clear), the secure data is the frame's EtherType
        and payload in the clear; encrypted, nothing in it can be read."""
        if end - off < 6:
            self._bad("MACsec SecTAG cut short")
            return None
        tci, short = buf[off], buf[off + 1] & 0x3F
        if tci & 0x80:
            self._bad("MACsec SecTAG version is not 0")
            return None
        if tci & 0x0C:  # E (encrypted) or C (changed text)
            self._unread("MACsec (encrypted)")
            return None
        p = off + (14 if tci & 0x20 else 6)
        # a short length (secure data under 48 bytes) says where the ICV begins, before any
        # padding the frame has; otherwise the ICV ends the frame
        data_end = p + short if short else end - _MACSEC_ICV
        if p + 2 > data_end or data_end + _MACSEC_ICV > end:
            self._bad("MACsec frame cut short")
            return None
        if not self._enter("MACsec", depth):
            return None
        return self._ethertype(_U16(buf, p)[0], buf, p + 2, data_end, tag, depth + 1)

    def _by_version(self, buf: Buffer, off: int, end: int, linktype: int) -> Decoded | None:
        if off >= end:
            self._bad("empty raw IP packet")
            return None
        version = buf[off] >> 4
        if version == 4 and linktype != LINKTYPE_IPV6:
            return self._ipv4(buf, off, end, b"", 0)
        if version == 6 and linktype != LINKTYPE_IPV4:
            return self._ipv6(buf, off, end, b"", 0)
        self._bad(f"raw IP packet with IP version {version} (link type {linktype})")
        return None

    def _nflog(self, buf: Buffer, start: int, end: int) -> Decoded | None:
        """Find the payload TLV (type 9) in a Linux NFLOG frame.

        Layout: family(1) version(1) resource id(2), then TLVs of length(2) type(2) value, with
        length and type in the capturing host's byte order and each TLV padded to 4 bytes.
        """
        t = start + 4
        if t + 4 > end:
            self._bad("NFLOG header cut short")
            return None
        # Types are small numbers: a nonzero low byte first means little-endian TLV headers.
        unpack = _U16LE if buf[t + 2] else _U16
        while t + 4 <= end:
            length = unpack(buf, t)[0]
            if length < 4:
                self._bad("NFLOG TLV length < 4")
                return None
            if unpack(buf, t + 2)[0] & 0x7FFF == NFULA_PAYLOAD:
                payload_end = min(t + length, end)
                return self._by_version(buf, t + 4, payload_end, LINKTYPE_NFLOG)
            t += (length + 3) & ~3
        self.stats.non_ip += 1  # no payload TLV: nothing to decode
        return None

    # -- network layer --------------------------------------------------------------------------

    def _ipv4(self, buf: Buffer, off: int, end: int, tag: bytes, depth: int) -> Decoded | None:
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
        # Total length 0 is what TCP segmentation offload captures show: use the frame.
        ip_end = min(off + total, end) if total else end
        if frag & 0x3FFF:  # more-fragments flag or a nonzero offset
            key = (4, src, dst, proto, _U16(buf, off + 4)[0], tag)
            piece = buf[off + ihl : ip_end]
            whole = self._fragment(key, (frag & 0x1FFF) * 8, bool(frag & 0x2000), piece)
            if whole is None:
                return None
            return _within(
                whole, self._ip_payload(proto, 4, src, dst, whole, 0, len(whole), tag, depth)
            )
        return self._ip_payload(proto, 4, src, dst, buf, off + ihl, ip_end, tag, depth)

    def _fragment(self, key: tuple, offset: int, more: bool, piece: Buffer) -> bytes | None:
        """Hand one IP fragment to the defragmenter: the datagram's payload when it is whole."""
        self.stats.ip_fragments += 1
        if self._defrag is None:
            self._defrag = Defragmenter(self._fragments_lost)
        return self._defrag.add(key, offset, more, bytes(piece), self._now)

    def _fragments_lost(self, key: tuple, reason: str, ts: float) -> None:
        """A fragmented datagram given up on: note its address pair (lower first) with its first
        time and datagrams in ``stats.fragments_lost``, which the engine makes blind spots -
        whatever the datagram carried (an evasion's request, say) was not read."""
        _note_pair(self.stats.fragments_lost, key[1], key[2], ts)

    def _ipv6(self, buf: Buffer, off: int, end: int, tag: bytes, depth: int) -> Decoded | None:
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
        return self._ipv6_headers(nh, src, dst, buf, p, ip_end, tag, depth, _MAX_IPV6_EXT)

    def _ipv6_headers(
        self,
        nh: int,
        src: bytes,
        dst: bytes,
        buf: Buffer,
        p: int,
        ip_end: int,
        tag: bytes,
        depth: int,
        left: int,
    ) -> Decoded | None:
        """The extension headers from ``p`` (``nh`` names the first; at most ``left`` more),
        then what the last one names."""
        for _ in range(left):
            if nh not in _IPV6_EXT:
                return self._ip_payload(nh, 6, src, dst, buf, p, ip_end, tag, depth)
            if p + 8 > ip_end:
                self._bad("IPv6 extension header cut short")
                return None
            left -= 1
            if nh in _IPV6_EXT_PLAIN:
                nh, p = buf[p], p + (buf[p + 1] + 1) * 8
            elif nh == _IPV6_FRAGMENT:
                offset_flags = _U16(buf, p + 2)[0]
                if offset_flags & 0xFFF9:  # fragment offset != 0 or more-fragments flag
                    key = (6, src, dst, buf[p], _U32(buf, p + 4)[0], tag)
                    piece = buf[p + 8 : ip_end]
                    whole = self._fragment(
                        key, offset_flags & 0xFFF8, bool(offset_flags & 1), piece
                    )
                    if whole is None:
                        return None
                    # the fragmentable part: the headers after this one, then the payload
                    found = self._ipv6_headers(
                        buf[p], src, dst, whole, 0, len(whole), tag, depth, left
                    )
                    return _within(whole, found)
                nh, p = buf[p], p + 8  # atomic fragment
            else:  # authentication header
                nh, p = buf[p], p + (buf[p + 1] + 2) * 4
        self._bad("too many IPv6 extension headers")
        return None

    def _ip_payload(
        self,
        proto: int,
        version: int,
        src: bytes,
        dst: bytes,
        buf: Buffer,
        off: int,
        end: int,
        tag: bytes,
        depth: int,
    ) -> Decoded | None:
        """What an IPv4 or IPv6 header's protocol field names: TCP/UDP, or a tunnel."""
        if proto in (IPPROTO_TCP, IPPROTO_UDP):
            return self._transport(proto, src, dst, buf, off, end, tag, depth)
        if proto == IPPROTO_AH and version == 4:
            return self._ipv4_ah(src, dst, buf, off, end, tag, depth)
        if proto == IPPROTO_IPIP:
            if self._enter("IP-in-IP" if version == 4 else "IPv4-in-IPv6", depth):
                return self._ipv4(buf, off, end, tag, depth + 1)
        elif proto == IPPROTO_IPV6:
            if self._enter("IPv6-in-IPv4" if version == 4 else "IPv6-in-IPv6", depth):
                return self._ipv6(buf, off, end, tag, depth + 1)
        elif proto == IPPROTO_GRE:
            return self._gre(buf, off, end, tag, depth)
        elif proto == IPPROTO_MPLS:
            return self._mpls(buf, off, end, tag, depth)
        elif proto == IPPROTO_ETHERIP:
            if end - off < 2:
                self._bad("EtherIP header cut short")
            elif self._enter("EtherIP", depth):
                return self._ether(buf, off + 2, end, tag, depth + 1)
        elif proto == IPPROTO_ESP:
            self._esp(src, dst, "IPsec ESP")
        elif proto in _UNREAD_IP:
            self._unread(_UNREAD_IP[proto])
        return None

    def _esp(self, src: bytes, dst: bytes, name: str) -> None:
        """Count an IPsec ESP packet as not read, and note its address pair (lower address
        first) with its first time and packets in ``stats.esp_pairs``: its payload is
        encrypted, or NULL-encrypted, which only the security association tells, so the
        engine makes each pair a blind spot, as an undecrypted TLS connection is one."""
        self._unread(name)
        if _note_pair(self.stats.esp_pairs, src, dst, self._now) == ESP_OTHER_PAIRS:
            self.warn_once(
                ESP_OTHER_PAIRS,
                f"IPsec ESP between more than {MAX_ESP_PAIRS:,} address pairs: the others are "
                "one blind spot, which covers every address",
            )

    def _ipv4_ah(
        self, src: bytes, dst: bytes, buf: Buffer, off: int, end: int, tag: bytes, depth: int
    ) -> Decoded | None:
        """IPv4 authentication headers (RFC 4302): each gives its length in 4-byte words less
        2 and names what follows it, read as an IPv4 protocol field is. AH signs, it does not
        encrypt: the packet inside is as readable as without it (IPv6 steps over it with its
        other extension headers)."""
        for _ in range(_MAX_AH):
            if end - off < 12:
                self._bad("IPv4 authentication header cut short")
                return None
            proto, off = buf[off], off + (buf[off + 1] + 2) * 4
            if off > end:
                self._bad("IPv4 authentication header cut short")
                return None
            if proto != IPPROTO_AH:
                return self._ip_payload(proto, 4, src, dst, buf, off, end, tag, depth)
        self._bad("too many IPv4 authentication headers")
        return None

    def _ip(
        self, buf: Buffer, off: int, end: int, tag: bytes, depth: int, what: str
    ) -> Decoded | None:
        """An IPv4 or IPv6 packet, by its first nibble, carried by ``what``."""
        if off >= end:
            self._bad(f"{what} packet without a payload")
            return None
        version = buf[off] >> 4
        if version == 4:
            return self._ipv4(buf, off, end, tag, depth)
        if version == 6:
            return self._ipv6(buf, off, end, tag, depth)
        self._bad(f"{what} payload is not IP (version nibble {version})")
        return None

    # -- tunnels --------------------------------------------------------------------------------

    def _gre(self, buf: Buffer, off: int, end: int, tag: bytes, depth: int) -> Decoded | None:
        """GRE (RFC 2784/2890): optional checksum, key and sequence words, then the payload
        its protocol type names (ERSPAN for 0x88BE / 0x22EB)."""
        if end - off < 4:
            self._bad("GRE header cut short")
            return None
        flags, ptype = _U16X2(buf, off)
        version = flags & 7
        if version:
            self._unread("GRE version 1 (PPTP)" if version == 1 else f"GRE version {version}")
            return None
        if flags & 0x4000:
            self._unread("GRE with source routing")
            return None
        checksum, has_key, sequenced = flags & 0x8000, flags & 0x2000, flags & 0x1000
        p = off + 4 + (4 if checksum else 0)
        key = None
        if has_key:
            if p + 4 > end:
                self._bad("GRE header cut short")
                return None
            key = _U32(buf, p)[0]
            tag += _TAG.pack(TAG_GRE_KEY, key)
            p += 4
        if sequenced:
            p += 4
        if p > end:
            self._bad("GRE header cut short")
            return None
        if ptype == ETHERTYPE_ERSPAN:
            if not sequenced:  # type I: the mirrored frame follows the GRE header directly
                if self._enter("ERSPAN I", depth):
                    return self._ether(buf, p, end, tag, depth + 1)
                return None
            return self._erspan(buf, p, end, tag, depth)
        if ptype == ETHERTYPE_ERSPAN3:
            return self._erspan(buf, p, end, tag, depth)
        if ptype == ETHERTYPE_WCCP:  # a 4-byte redirect header, unless IPv4 follows directly
            if not self._enter("GRE", depth, key):
                return None
            if p < end and buf[p] >> 4 != 4:
                p += 4
            return self._ipv4(buf, p, end, tag, depth + 1)
        if ptype not in _CARRIED:
            self._unread(f"GRE protocol 0x{ptype:04x}")
            return None
        if not self._enter("GRE", depth, key):
            return None
        if ptype == ETHERTYPE_TEB:
            return self._ether(buf, p, end, tag, depth + 1)
        return self._ethertype(ptype, buf, p, end, tag, depth + 1)

    def _erspan(self, buf: Buffer, off: int, end: int, tag: bytes, depth: int) -> Decoded | None:
        """ERSPAN type II (8-byte header, version 1) or III (12 bytes, version 2, then an
        8-byte platform subheader when its O bit is set; the frame is Ethernet or IP)."""
        if end - off < 8:
            self._bad("ERSPAN header cut short")
            return None
        version = buf[off] >> 4
        session = _U16(buf, off + 2)[0] & 0x3FF
        tag += _TAG.pack(TAG_ERSPAN, session)
        if version == 1:
            if self._enter("ERSPAN II", depth, session):
                return self._ether(buf, off + 8, end, tag, depth + 1)
            return None
        if version != 2:
            self._unread(f"ERSPAN version {version}")
            return None
        if end - off < 12:
            self._bad("ERSPAN header cut short")
            return None
        word = _U16(buf, off + 10)[0]
        frame_type = (word >> 10) & 0x1F
        p = off + (20 if word & 1 else 12)
        if p > end:
            self._bad("ERSPAN platform subheader cut short")
            return None
        if frame_type not in (0, 2):
            self._unread(f"ERSPAN III frame type {frame_type}")
            return None
        if not self._enter("ERSPAN III", depth, session):
            return None
        if frame_type == 0:
            return self._ether(buf, p, end, tag, depth + 1)
        return self._ip(buf, p, end, tag, depth + 1, "ERSPAN III")

    def _vxlan(self, buf: Buffer, off: int, end: int, tag: bytes, depth: int) -> Decoded | None:
        """VXLAN (RFC 7348): 8 bytes with the I flag and a 24-bit VNI, then Ethernet."""
        if end - off < 8:
            self._bad("VXLAN header cut short")
            return None
        if not buf[off] & 0x08:
            self._unread("VXLAN without a VNI (I flag clear)")
            return None
        vni = _U32(buf, off + 4)[0] >> 8
        if self._enter("VXLAN", depth, vni):
            return self._ether(buf, off + 8, end, tag + _TAG.pack(TAG_VXLAN, vni), depth + 1)
        return None

    def _vxlan_gpe(self, buf: Buffer, off: int, end: int, tag: bytes, depth: int) -> Decoded | None:
        """VXLAN-GPE: the VXLAN header with a next-protocol byte (IPv4, IPv6, Ethernet, MPLS)."""
        if end - off < 8:
            self._bad("VXLAN-GPE header cut short")
            return None
        nxt = buf[off + 3]
        if nxt not in (1, 2, 3, 5):
            self._unread(f"VXLAN-GPE next protocol {nxt}")
            return None
        vni = _U32(buf, off + 4)[0] >> 8
        if not self._enter("VXLAN-GPE", depth, vni):
            return None
        tag += _TAG.pack(TAG_VXLAN_GPE, vni)
        p, depth = off + 8, depth + 1
        if nxt == 1:
            return self._ipv4(buf, p, end, tag, depth)
        if nxt == 2:
            return self._ipv6(buf, p, end, tag, depth)
        if nxt == 3:
            return self._ether(buf, p, end, tag, depth)
        return self._mpls(buf, p, end, tag, depth)

    def _geneve(self, buf: Buffer, off: int, end: int, tag: bytes, depth: int) -> Decoded | None:
        """GENEVE (RFC 8926): 8 bytes plus options, a protocol type and a 24-bit VNI."""
        if end - off < 8:
            self._bad("GENEVE header cut short")
            return None
        first = buf[off]
        if first >> 6:
            self._unread(f"GENEVE version {first >> 6}")
            return None
        p = off + 8 + (first & 0x3F) * 4
        if p > end:
            self._bad("GENEVE options cut short")
            return None
        ptype = _U16(buf, off + 2)[0]
        if ptype not in _CARRIED:
            self._unread(f"GENEVE protocol 0x{ptype:04x}")
            return None
        vni = _U32(buf, off + 4)[0] >> 8
        if not self._enter("GENEVE", depth, vni):
            return None
        tag += _TAG.pack(TAG_GENEVE, vni)
        if ptype == ETHERTYPE_TEB:
            return self._ether(buf, p, end, tag, depth + 1)
        return self._ethertype(ptype, buf, p, end, tag, depth + 1)

    def _mpls(self, buf: Buffer, off: int, end: int, tag: bytes, depth: int) -> Decoded | None:
        """An MPLS label stack, then IPv4/IPv6 (by the first nibble) or a pseudowire's Ethernet
        frame (after a control word, or without one), told apart by the EtherType it has."""
        for _ in range(MAX_LABELS):
            if end - off < 4:
                self._bad("MPLS label stack cut short")
                return None
            entry = _U32(buf, off)[0]
            off += 4
            if entry & 0x100:  # bottom of stack
                break
        else:
            self._unread(f"MPLS label stack deeper than {MAX_LABELS}")
            return None
        if off >= end:
            self._bad("MPLS packet without a payload")
            return None
        nibble = buf[off] >> 4
        if nibble == 4 or nibble == 6:
            if self._enter("MPLS", depth, entry >> 12):
                return self._ip(buf, off, end, tag, depth + 1, "MPLS")
            return None
        if nibble == 0 and end - off >= 18 and _U16(buf, off + 16)[0] in _PW_ETHERTYPES:
            off += 4  # pseudowire control word
        elif not (end - off >= 14 and _U16(buf, off + 12)[0] in _PW_ETHERTYPES):
            self._unread("MPLS payload not recognised")
            return None
        if self._enter("MPLS", depth, entry >> 12):
            return self._ether(buf, off, end, tag, depth + 1)
        return None

    def _pppoe(self, buf: Buffer, off: int, end: int, tag: bytes, depth: int) -> Decoded | None:
        """A PPPoE session frame (RFC 2516): 6-byte header, then PPP carrying IPv4 or IPv6."""
        if end - off < 8:
            self._bad("PPPoE header cut short")
            return None
        session, length, proto = _U16(buf, off + 2)[0], *_U16X2(buf, off + 4)
        if not self._enter("PPPoE", depth, session):
            return None
        ppp_end = min(off + 6 + length, end) if length >= 2 else end
        return self._ppp_payload(proto, buf, off + 8, ppp_end, tag, depth + 1)

    def _gtp_u(self, buf: Buffer, off: int, end: int, tag: bytes, depth: int) -> Decoded | None:
        """GTP-U (3GPP TS 29.281): a G-PDU (type 255) carries an IP packet after the 8-byte
        header, the optional sequence word and any extension headers."""
        if end - off < 8:
            self._bad("GTP-U header cut short")
            return None
        flags, mtype, length, teid = _GTP.unpack_from(buf, off)
        if flags >> 5 != 1 or not flags & 0x10:
            self._unread("GTP'" if not flags & 0x10 else f"GTP version {flags >> 5}")
            return None
        if mtype != 255:
            self._unread(f"GTP-U {_GTP_MESSAGES.get(mtype, f'message type {mtype}')}")
            return None
        g_end = min(off + 8 + length, end)
        p = off + 8
        if flags & 0x07:  # sequence number, N-PDU number and next extension type follow
            if p + 4 > g_end:
                self._bad("GTP-U header cut short")
                return None
            nxt = buf[p + 3] if flags & 0x04 else 0
            p += 4
            for _ in range(_MAX_GTP_EXT):
                if not nxt:
                    break
                size = buf[p] * 4 if p < g_end else 0
                if not size or p + size > g_end:
                    self._bad("GTP-U extension header cut short")
                    return None
                nxt = buf[p + size - 1]
                p += size
            else:
                if nxt:
                    self._bad("too many GTP-U extension headers")
                    return None
        if self._enter("GTP-U", depth, teid):
            return self._ip(buf, p, g_end, tag, depth + 1, "GTP-U")
        return None

    # -- transport layer ------------------------------------------------------------------------

    def _transport(
        self,
        proto: int,
        src: bytes,
        dst: bytes,
        buf: Buffer,
        off: int,
        end: int,
        tag: bytes,
        depth: int,
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
            if tag:
                src, dst = src + tag, dst + tag
            return (6, src, sport, dst, dport, seq, ack, flags, min(start, end), end)
        if end - off < 8:
            self._bad("UDP header cut short")
            return None
        sport, dport, ulen = _UDP.unpack_from(buf, off)
        self.stats.udp += 1
        if 8 <= ulen <= end - off:
            end = off + ulen
        p = off + 8
        if dport in self.vxlan_ports:
            return self._vxlan(buf, p, end, tag, depth)
        if dport == GENEVE_PORT:
            return self._geneve(buf, p, end, tag, depth)
        if dport == VXLAN_GPE_PORT:
            return self._vxlan_gpe(buf, p, end, tag, depth)
        if dport == GTP_U_PORT or sport == GTP_U_PORT:
            return self._gtp_u(buf, p, end, tag, depth)
        if dport == MPLS_UDP_PORT:
            return self._mpls(buf, p, end, tag, depth)
        if (dport == NAT_T_PORT or sport == NAT_T_PORT) and end - p >= 8 and _U32(buf, p)[0]:
            self._esp(src, dst, "IPsec ESP in UDP")  # IKE starts with 4 zero bytes, ESP its SPI
            return None
        name = _UNREAD_UDP.get(dport) or _UNREAD_UDP.get(sport)
        if name is not None:
            self._unread(name)
        if tag:
            src, dst = src + tag, dst + tag
        return (17, src, sport, dst, dport, 0, 0, 0, p, end)
