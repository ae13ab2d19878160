"""Tests for the capture reader (analyzer.sources.pcapfile) and frame decoder (linklayer).

Captures are built here as bytes (struct-packed pcap / pcapng records around hand-made frames),
some with scapy, and read back through ``read_packets``; values are compared exactly.
"""

from __future__ import annotations

import gzip
import os
import random
import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from shared_dir import PUBLIC, public_expected

from analyzer.model import CaptureStats
from analyzer.sources import pcapfile
from analyzer.sources.linklayer import LinkDecoder
from analyzer.sources.pcapfile import CaptureError, read_packets

T0 = 1_700_000_000

# --------------------------------------------------------------------------------------------
# Frame builders
# --------------------------------------------------------------------------------------------

A4, B4 = socket.inet_aton("10.0.0.1"), socket.inet_aton("10.0.0.2")
A6 = socket.inet_pton(socket.AF_INET6, "2001:db8::1")
B6 = socket.inet_pton(socket.AF_INET6, "2001:db8::2")
MACS = bytes.fromhex("001122334455") + bytes.fromhex("66778899aabb")


def tcp(
    payload: bytes = b"",
    sport: int = 40000,
    dport: int = 80,
    seq: int = 1000,
    ack: int = 2000,
    flags: int = 0x18,
    options: bytes = b"",
) -> bytes:
    doff = (20 + len(options)) // 4
    head = struct.pack(">HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, 65535, 0, 0)
    return head + options + payload


def udp(payload: bytes = b"", sport: int = 5060, dport: int = 5061) -> bytes:
    return struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload


def ipv4(
    l4: bytes,
    proto: int = 6,
    src: bytes = A4,
    dst: bytes = B4,
    options: bytes = b"",
    frag: int = 0x4000,
    total: int | None = None,
) -> bytes:
    ihl = 5 + len(options) // 4
    if total is None:
        total = 4 * ihl + len(l4)
    head = struct.pack(">BBHHHBBH4s4s", 0x40 | ihl, 0, total, 7, frag, 64, proto, 0, src, dst)
    return head + options + l4


def ipv6(l4: bytes, nh: int = 6, ext: bytes = b"", src: bytes = A6, dst: bytes = B6) -> bytes:
    head = struct.pack(">IHBB16s16s", 0x60000000, len(ext) + len(l4), nh, 64, src, dst)
    return head + ext + l4


def eth(l3: bytes, etype: int = 0x0800, tags: Iterable[tuple[int, int]] = ()) -> bytes:
    out = MACS
    for tpid, vid in tags:
        out += struct.pack(">HH", tpid, vid)
    return out + struct.pack(">H", etype) + l3


def sll(l3: bytes, proto: int = 0x0800) -> bytes:
    return struct.pack(">HHH8sH", 0, 1, 6, MACS[:6] + b"\0\0", proto) + l3


def sll2(l3: bytes, proto: int = 0x0800) -> bytes:
    return struct.pack(">HHIHBB8s", proto, 0, 2, 1, 0, 6, MACS[:6] + b"\0\0") + l3


def ppp(l3: bytes, framing: bytes = b"", compressed: bool = False) -> bytes:
    """A PPP frame: ``framing`` (FF 03, Cisco HDLC's, a direction byte), then the protocol
    for ``l3``'s IP version in 2 bytes (1 when ``compressed``)."""
    proto = 0x57 if l3[0] >> 4 == 6 else 0x21
    return framing + (bytes([proto]) if compressed else struct.pack(">H", proto)) + l3


def chdlc(l3: bytes, first: bytes = b"\x0f\x00") -> bytes:
    """A Cisco HDLC frame: address (0x0F unicast), control, then the EtherType."""
    return first + struct.pack(">H", 0x86DD if l3[0] >> 4 == 6 else 0x0800) + l3


def erf(frame: bytes, kind: int = 2, extensions: int = 0) -> bytes:
    """An ERF record (link type 197): the 16-byte header (little-endian timestamp, type with
    the extension bit, flags, lengths), ``extensions`` 8-byte extension headers, then for
    Ethernet types the 2 bytes of offset and padding before ``frame``."""
    size = 16 + 8 * extensions + len(frame)
    head = struct.pack("<Q", 0) + struct.pack(
        ">BBHHH", kind | (0x80 if extensions else 0), 4, size, 0, len(frame)
    )
    ext = b"".join(
        bytes([0x84 if i < extensions - 1 else 0x04]) + b"\0" * 7 for i in range(extensions)
    )
    return head + ext + (b"\0\0" if kind in (2, 11, 16, 20) else b"") + frame


def nflog(l3: bytes, order: str = "<", family: int = 2) -> bytes:
    """NFLOG frame: header, a prefix TLV (type 10), then the payload TLV (type 9)."""

    def tlv(kind: int, value: bytes) -> bytes:
        raw = struct.pack(order + "HH", 4 + len(value), kind) + value
        return raw + b"\0" * (-len(raw) % 4)

    return struct.pack(">BBH", family, 0, 0) + tlv(10, b"log-prefix\0") + tlv(9, l3)


# --------------------------------------------------------------------------------------------
# Capture file builders
# --------------------------------------------------------------------------------------------


def pcap(
    frames: Iterable[bytes | tuple],
    linktype: int = 1,
    order: str = "<",
    nano: bool = False,
    snaplen: int = 65535,
) -> bytes:
    """A pcap file; a frame may be (frame, sec, frac) or (frame, sec, frac, original length)."""
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for i, item in enumerate(frames):
        frame, sec, frac, orig = (
            (*item, None)[:4] if isinstance(item, tuple) else (item, T0 + i, 0, None)
        )
        orig = len(frame) if orig is None else orig
        out.append(struct.pack(order + "IIII", sec, frac, len(frame), orig) + frame)
    return b"".join(out)


def _pad4(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def block(btype: int, body: bytes, order: str = "<") -> bytes:
    body = _pad4(body)
    blen = 12 + len(body)
    return struct.pack(order + "II", btype, blen) + body + struct.pack(order + "I", blen)


def option(code: int, value: bytes, order: str = "<") -> bytes:
    return _pad4(struct.pack(order + "HH", code, len(value)) + value)


def shb(order: str = "<") -> bytes:
    body = struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1)
    return block(0x0A0D0D0A, body + option(4, b"test", order) + option(0, b"", order), order)


def idb(
    linktype: int,
    order: str = "<",
    snaplen: int = 0,
    tsresol: int | None = None,
    tsoffset: int | None = None,
) -> bytes:
    opts = option(2, b"eth0", order)
    if tsresol is not None:
        opts += option(9, bytes([tsresol]), order)
    if tsoffset is not None:
        opts += option(14, struct.pack(order + "q", tsoffset), order)
    opts += option(0, b"", order)
    return block(1, struct.pack(order + "HHI", linktype, 0, snaplen) + opts, order)


def epb(ifid: int, ts: int, frame: bytes, order: str = "<", orig: int | None = None) -> bytes:
    orig = len(frame) if orig is None else orig
    head = struct.pack(order + "IIIII", ifid, ts >> 32, ts & 0xFFFFFFFF, len(frame), orig)
    return block(6, head + _pad4(frame) + option(1, b"\0\0\0\0", order), order)


def spb(frame: bytes, order: str = "<") -> bytes:
    return block(3, struct.pack(order + "I", len(frame)) + frame, order)


def opb(ifid: int, ts: int, frame: bytes, order: str = "<") -> bytes:
    head = struct.pack(order + "HHIIII", ifid, 0, ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame))
    return block(2, head + frame, order)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def read(tmp_path: Path, data: bytes, name: str = "c.pcap") -> tuple[list[tuple], CaptureStats]:
    path = tmp_path / name
    path.write_bytes(data)
    stats = CaptureStats()
    packets = [(*p[:9], bytes(p[9])) for p in read_packets(str(path), stats)]
    return packets, stats


def only(tmp_path: Path, data: bytes, name: str = "c.pcap") -> tuple:
    packets, _ = read(tmp_path, data, name)
    assert len(packets) == 1, packets
    return packets[0]


HTTP = b"GET / HTTP/1.1\r\nHost: example\r\nAuthorization: Bearer abc\r\n\r\n"
TCP4 = (6, A4, 40000, B4, 80, 1000, 2000, 0x18, HTTP)  # expected tuple without the timestamp
TCP6 = (6, A6, 40000, B6, 80, 1000, 2000, 0x18, HTTP)

# --------------------------------------------------------------------------------------------
# pcap record format
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_pcap_byte_orders_and_resolutions(tmp_path: Path, order: str, nano: bool) -> None:
    frac = 250_000_000 if nano else 250_000
    data = pcap([(eth(ipv4(tcp(HTTP))), T0, frac)], order=order, nano=nano)
    packets, stats = read(tmp_path, data)
    assert packets == [(T0 + 0.25, *TCP4)]
    assert stats.file_format == "pcap"
    assert stats.packets == 1 and stats.ipv4 == 1 and stats.tcp == 1
    assert stats.bytes == 14 + 40 + len(HTTP)
    assert stats.link_types == {1: 1}
    assert stats.warnings == []


def test_captures_without_packets(tmp_path: Path) -> None:
    for data, name in [(pcap([]), "c.pcap"), (shb() + idb(1), "c.pcapng")]:
        packets, stats = read(tmp_path, data, name)
        assert packets == [] and stats.packets == 0 and stats.warnings == []


def test_pcap_many_packets_in_order(tmp_path: Path) -> None:
    frames = [(eth(ipv4(tcp(b"x" * i, seq=i))), T0 + i, 500_000) for i in range(50)]
    packets, stats = read(tmp_path, pcap(frames))
    assert [p[6] for p in packets] == list(range(50))
    assert [p[0] for p in packets] == [T0 + i + 0.5 for i in range(50)]
    assert [len(p[9]) for p in packets] == list(range(50))
    assert stats.packets == 50 and stats.tcp == 50 and stats.ipv4 == 50


def test_payload_is_memoryview_of_capture(tmp_path: Path) -> None:
    path = tmp_path / "c.pcap"
    path.write_bytes(pcap([eth(ipv4(tcp(HTTP)))]))
    packet = next(iter(read_packets(str(path), CaptureStats())))
    assert isinstance(packet[9], memoryview)
    assert bytes(packet[9]) == HTTP


def test_ethernet_padding_dropped(tmp_path: Path) -> None:
    frame = eth(ipv4(tcp(b"hi")))
    padded = frame + b"\0" * (60 - len(frame)) + b"FCS!"  # minimum frame size plus an FCS
    assert only(tmp_path, pcap([padded]))[1:] == (6, A4, 40000, B4, 80, 1000, 2000, 0x18, b"hi")
    # The same through the general decoder (a VLAN tag keeps it off the fast path).
    tagged = eth(ipv4(tcp(b"hi")), tags=[(0x8100, 10)]) + b"\0" * 10
    assert only(tmp_path, pcap([tagged]))[9] == b"hi"


def test_pure_ack_and_tcp_options(tmp_path: Path) -> None:
    mss = b"\x02\x04\x05\xb4\x01\x01\x04\x02"  # 8 bytes of options: data offset 7
    packets, stats = read(
        tmp_path,
        pcap(
            [
                eth(ipv4(tcp(flags=0x10))),
                eth(ipv4(tcp(HTTP, options=mss, flags=0x02))),
            ]
        ),
    )
    assert packets[0][8:] == (0x10, b"")
    assert packets[1][8:] == (0x02, HTTP)
    assert stats.tcp == 2


def test_tso_total_length_zero_uses_frame(tmp_path: Path) -> None:
    frame = eth(ipv4(tcp(HTTP), total=0))
    assert only(tmp_path, pcap([frame]))[9] == HTTP


def test_udp_ipv4_and_ipv6(tmp_path: Path) -> None:
    frames = [eth(ipv4(udp(b"REGISTER sip:x"), proto=17)) + b"\0" * 8]
    frames.append(eth(ipv6(udp(b"v6 datagram"), nh=17), etype=0x86DD))
    packets, stats = read(tmp_path, pcap(frames))
    assert [p[1:] for p in packets] == [
        (17, A4, 5060, B4, 5061, 0, 0, 0, b"REGISTER sip:x"),
        (17, A6, 5060, B6, 5061, 0, 0, 0, b"v6 datagram"),
    ]
    assert (stats.udp, stats.tcp, stats.ipv4, stats.ipv6) == (2, 0, 1, 1)


# --------------------------------------------------------------------------------------------
# IPv4 / IPv6 details
# --------------------------------------------------------------------------------------------


def test_ipv4_options(tmp_path: Path) -> None:
    options = b"\x94\x04\x00\x00" + b"\x01\x01\x01\x00"  # router alert, NOPs, end of list
    packet = only(tmp_path, pcap([eth(ipv4(tcp(HTTP), options=options)) + b"\0" * 6]))
    assert packet[1:] == TCP4


def test_ipv4_fragments_of_datagrams_never_completed_are_counted_and_warned(tmp_path: Path) -> None:
    frames = [
        eth(ipv4(tcp(HTTP), frag=0x2000)),  # first fragment: more-fragments set
        eth(ipv4(b"tail of the datagram", frag=0x0010)),  # offset 16 * 8
        eth(ipv4(b"last", proto=17, frag=0x0020)),
        eth(ipv4(tcp(HTTP))),  # DF only: a whole packet
    ]
    packets, stats = read(tmp_path, pcap(frames))
    assert [p[1:] for p in packets] == [TCP4]
    assert stats.ip_fragments == 3
    assert stats.ipv4 == 4 and stats.tcp == 1
    assert sum("fragment" in w for w in stats.warnings) == 1


def _ext(nh: int, length_units: int = 0) -> bytes:
    """A hop-by-hop / routing / destination options header of (length_units + 1) * 8 bytes."""
    return (
        bytes([nh, length_units])
        + b"\x01"
        + bytes([4 + 8 * length_units])
        + b"\0" * (4 + 8 * length_units)
    )


def test_ipv6_extension_headers(tmp_path: Path) -> None:
    # hop-by-hop(0) -> routing(43) -> fragment(44, atomic) -> AH(51) -> dest opts(60) -> TCP
    routing = bytes([44, 0, 0, 0]) + b"\0" * 4
    fragment = bytes([51, 0]) + struct.pack(">HI", 0, 99)
    ah = bytes([60, 4, 0, 0]) + struct.pack(">II", 0x100, 1) + b"\xaa" * 12  # (4 + 2) * 4 bytes
    ext = _ext(43) + routing + fragment + ah + _ext(6, 1)
    packets, stats = read(tmp_path, pcap([eth(ipv6(tcp(HTTP), nh=0, ext=ext), etype=0x86DD)]))
    assert [p[1:] for p in packets] == [TCP6]
    assert stats.ipv6 == 1 and stats.ip_fragments == 0


def test_ipv6_fragments_of_a_datagram_never_completed_are_counted(tmp_path: Path) -> None:
    first = bytes([6, 0]) + struct.pack(">HI", 0x0001, 5)  # offset 0, more fragments
    later = bytes([6, 0]) + struct.pack(">HI", 0x00A8, 5)  # offset 21, last
    frames = [
        eth(ipv6(tcp(HTTP), nh=44, ext=first), etype=0x86DD),
        eth(ipv6(b"rest", nh=44, ext=later), etype=0x86DD),
    ]
    packets, stats = read(tmp_path, pcap(frames))
    assert packets == []
    assert stats.ip_fragments == 2 and stats.ipv6 == 2
    assert sum("fragment" in w for w in stats.warnings) == 1


def test_ipv6_other_protocols_not_yielded(tmp_path: Path) -> None:
    icmp6 = eth(ipv6(b"\x80\0\0\0\0\0\0\0", nh=58), etype=0x86DD)
    no_next = eth(ipv6(b"", nh=59), etype=0x86DD)
    packets, stats = read(tmp_path, pcap([icmp6, no_next]))
    assert packets == [] and stats.ipv6 == 2 and stats.undecodable == 0


def test_ipv6_with_scapy_extension_headers(tmp_path: Path) -> None:
    scapy = pytest.importorskip("scapy.all")
    pkt = (
        scapy.Ether(src="00:11:22:33:44:55", dst="66:77:88:99:aa:bb")
        / scapy.Dot1AD(vlan=5)
        / scapy.Dot1Q(vlan=7)
        / scapy.IPv6(src="2001:db8::1", dst="2001:db8::2")
        / scapy.IPv6ExtHdrHopByHop()
        / scapy.IPv6ExtHdrRouting()
        / scapy.IPv6ExtHdrDestOpt()
        / scapy.TCP(sport=40000, dport=80, seq=1000, ack=2000, flags="PA")
        / scapy.Raw(HTTP)
    )
    path = tmp_path / "scapy.pcap"
    scapy.wrpcap(str(path), [pkt])
    stats = CaptureStats()
    packets = [(*p[1:9], bytes(p[9])) for p in read_packets(str(path), stats)]
    assert packets == [TCP6]


# --------------------------------------------------------------------------------------------
# Link types
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tags",
    [
        [(0x8100, 100)],
        [(0x88A8, 200), (0x8100, 100)],
        [(0x9100, 300), (0x88A8, 200), (0x8100, 100)],
    ],
    ids=["802.1Q", "QinQ", "triple"],
)
def test_vlan_tags(tmp_path: Path, tags: list[tuple[int, int]]) -> None:
    v4 = eth(ipv4(tcp(HTTP)), tags=tags)
    v6 = eth(ipv6(tcp(HTTP)), etype=0x86DD, tags=tags)
    packets, _ = read(tmp_path, pcap([v4, v6]))
    assert [p[1:] for p in packets] == [TCP4, TCP6]


def snap(l3: bytes, etype: int = 0x0800, oui: bytes = b"\0\0\0", pad: int = 0) -> bytes:
    """An IEEE 802.3 frame: the length field, then LLC AA AA 03, SNAP (OUI, EtherType) and
    ``l3``, padded with ``pad`` zero bytes that the length leaves out."""
    body = b"\xaa\xaa\x03" + oui + struct.pack(">H", etype) + l3
    return MACS + struct.pack(">H", len(body)) + body + b"\0" * pad


def test_802_3_llc_snap_frames(tmp_path: Path) -> None:
    frames = [
        snap(ipv4(tcp(HTTP))),
        snap(ipv6(tcp(HTTP)), etype=0x86DD, pad=30),  # the padding is not payload
        snap(ipv4(tcp(HTTP)), oui=b"\0\0\xf8"),  # 802.1H bridge tunnelling
        MACS + struct.pack(">HH", 0x8100, 7) + snap(ipv4(tcp(HTTP)))[12:],  # VLAN, then 802.3
        snap(ipv4(tcp(HTTP)), oui=b"\0\x0c\x29"),  # a vendor's protocol: not IP
        MACS + struct.pack(">H", 38) + b"\x42\x42\x03" + b"\0" * 35,  # spanning tree
        snap(ipv4(tcp(HTTP)))[:20],  # cut inside SNAP
        # SNAP naming a length, not an EtherType, 6,000 times over: no layer to recurse into
        MACS + struct.pack(">H", 1500) + (b"\xaa\xaa\x03\0\0\0" + struct.pack(">H", 1500)) * 6000,
    ]
    packets, stats = read(tmp_path, pcap(frames))
    assert [p[1:] for p in packets] == [TCP4, TCP6, TCP4, TCP4]
    assert (stats.non_ip, stats.undecodable) == (4, 0)


@pytest.mark.parametrize(
    ("linktype", "wrap4", "wrap6"),
    [
        (113, sll, lambda l3: sll(l3, 0x86DD)),
        (276, sll2, lambda l3: sll2(l3, 0x86DD)),
        (101, lambda l3: l3, lambda l3: l3),
        (12, lambda l3: l3, lambda l3: l3),
        (14, lambda l3: l3, lambda l3: l3),
        (0, lambda l3: struct.pack("<I", 2) + l3, lambda l3: struct.pack("<I", 30) + l3),
        (0, lambda l3: struct.pack(">I", 2) + l3, lambda l3: struct.pack(">I", 24) + l3),
        (0, lambda l3: struct.pack("<I", 2) + l3, lambda l3: struct.pack("<I", 28) + l3),
        (108, lambda l3: struct.pack(">I", 2) + l3, lambda l3: struct.pack(">I", 24) + l3),
        (239, nflog, lambda l3: nflog(l3, family=10)),
        (239, lambda l3: nflog(l3, ">"), lambda l3: nflog(l3, ">", 10)),
        (9, ppp, ppp),
        (9, lambda l3: ppp(l3, b"\xff\x03"), lambda l3: ppp(l3, b"\xff\x03", True)),
        (50, lambda l3: ppp(l3, b"\xff\x03"), lambda l3: ppp(l3, b"\xff\x03")),
        (50, chdlc, lambda l3: chdlc(l3, b"\x8f\x00")),
        (51, lambda l3: struct.pack(">BBHH", 0x11, 0, 7, len(l3) + 2) + ppp(l3), None),
        (104, chdlc, chdlc),
        (166, lambda l3: ppp(l3, b"\x01\x03"), lambda l3: ppp(l3, b"\x00\x03")),
        (204, lambda l3: ppp(l3, b"\x01"), lambda l3: ppp(l3, b"\x00\xff\x03", True)),
        (205, lambda l3: b"\x01" + chdlc(l3), lambda l3: b"\x00" + chdlc(l3)),
        (197, lambda l3: erf(eth(l3)), lambda l3: erf(eth(l3, etype=0x86DD), kind=11)),
        (197, lambda l3: erf(l3, kind=22, extensions=2), lambda l3: erf(l3, kind=23)),
        (197, lambda l3: erf(ppp(l3, b"\xff\x03"), kind=1), lambda l3: erf(chdlc(l3), kind=10)),
        (197, lambda l3: erf(b"\0" * 4 + chdlc(l3), kind=5), lambda l3: erf(ppp(l3), kind=19)),
    ],
    ids=[
        "sll",
        "sll2",
        "raw101",
        "raw12",
        "raw14",
        "null-le",
        "null-be",
        "null-freebsd",
        "loop",
        "nflog-le",
        "nflog-be",
        "ppp",
        "ppp-ff03",
        "ppp-hdlc",
        "ppp-hdlc-cisco",
        "pppoe-no-ethernet",
        "cisco-hdlc",
        "ppp-pppd",
        "ppp-with-dir",
        "cisco-hdlc-with-dir",
        "erf-ethernet",
        "erf-ip-extension-headers",
        "erf-pos-hdlc",
        "erf-multichannel-hdlc",
    ],
)
def test_link_types_ipv4_and_ipv6(
    tmp_path: Path,
    linktype: int,
    wrap4: Callable[[bytes], bytes],
    wrap6: Callable[[bytes], bytes] | None,
) -> None:
    wrap6 = wrap6 or wrap4
    frames = [wrap4(ipv4(tcp(HTTP))), wrap6(ipv6(tcp(HTTP))), wrap4(ipv4(udp(b"u"), proto=17))]
    packets, stats = read(tmp_path, pcap(frames, linktype=linktype))
    assert [p[1:] for p in packets] == [TCP4, TCP6, (17, A4, 5060, B4, 5061, 0, 0, 0, b"u")]
    assert stats.link_types == {linktype: 3}
    assert (stats.ipv4, stats.ipv6, stats.tcp, stats.udp) == (2, 1, 2, 1)
    assert stats.undecodable == 0 and stats.warnings == []


def test_raw_ipv4_and_ipv6_link_types(tmp_path: Path) -> None:
    assert only(tmp_path, pcap([ipv4(tcp(HTTP))], linktype=228))[1:] == TCP4
    assert only(tmp_path, pcap([ipv6(tcp(HTTP))], linktype=229))[1:] == TCP6
    # An IPv6 packet on the IPv4-only link type is undecodable, not misread.
    packets, stats = read(tmp_path, pcap([ipv6(tcp(HTTP))], linktype=228))
    assert packets == [] and stats.undecodable == 1


def test_non_ip_frames_counted(tmp_path: Path) -> None:
    arp = eth(b"\x00\x01\x08\x00\x06\x04\x00\x01" + b"\0" * 20, etype=0x0806)
    lldp = eth(b"\x02\x07" + b"\0" * 40, etype=0x88CC)
    loop_other = struct.pack("<I", 7) + b"\0" * 30  # NULL link, unknown address family
    packets, stats = read(tmp_path, pcap([arp, lldp]))
    assert packets == [] and stats.non_ip == 2 and stats.packets == 2
    packets, stats = read(tmp_path, pcap([loop_other], linktype=0))
    assert packets == [] and stats.non_ip == 1


def test_unknown_ethertypes_are_named_not_read(tmp_path: Path) -> None:
    """An EtherType not read may wrap IP (a vendor's tag, a local experiment): it is named
    as an encapsulation not read, once per EtherType; protocols that carry no IP stay quiet."""
    quiet = [0x0806, 0x8863, 0x88CC, 0x888E, 0x8809, 0x88F7, 0x88D9, 0x8137, 0x8892, 0x8914]
    frames = [eth(b"\0" * 46, etype=t) for t in quiet]
    frames.append(MACS + struct.pack(">H", 38) + b"\x42\x42\x03" + b"\0" * 35)  # STP
    frames += [eth(ipv4(tcp(HTTP)), etype=0x88B5)] * 2 + [eth(ipv4(tcp(HTTP)), etype=0x1234)]
    frames.append(eth(ipv4(tcp(HTTP)), etype=0x88B6, tags=[(0x8100, 5)]))
    packets, stats = read(tmp_path, pcap(frames))
    assert packets == [] and stats.non_ip == len(quiet) + 1 and stats.undecodable == 0
    assert stats.unread_encapsulations == {
        "EtherType 0x88b5": 2,
        "EtherType 0x1234": 1,
        "EtherType 0x88b6": 1,
    }
    assert stats.warnings == [
        f"packets in an encapsulation not read: EtherType 0x{t} (counted, not analysed)"
        for t in ("88b5", "1234", "88b6")
    ]


def test_serial_links_name_what_they_do_not_read(tmp_path: Path) -> None:
    """PPP's negotiation, SLARP keepalives and ERF metadata are not IP (quietly); a PPP
    protocol or ERF record type that may hide IP is named once; cut headers are undecodable."""
    quiet = [
        (9, b"\xff\x03\xc0\x21" + b"\x01" * 20),  # LCP
        (9, b"\x80\x21" + b"\x01" * 20),  # IPCP
        (104, b"\x8f\x00\x80\x35" + b"\0" * 20),  # SLARP
        (104, b"\x8f\x00\x20\x00" + b"\0" * 20),  # CDP
        (197, erf(b"\0" * 24, kind=27)),  # provenance metadata
    ]
    unread = [
        (9, b"\x00\x3d" + b"\0" * 30),  # multilink
        (50, b"\xff\x03\x00\x2d" + b"\0" * 30),  # Van Jacobson
        (204, b"\x01\x00\x2b" + b"\0" * 30),  # IPX
        (197, erf(b"\0" * 52, kind=3)),  # ATM
    ]
    cut = [(9, b"\xff\x03"), (9, b"\x00"), (104, b"\x0f\x00\x08"), (197, b"\0" * 15)]
    cut += [(197, erf(b"", kind=22, extensions=2)[:30]), (197, erf(b"\0" * 30, kind=2)[:20])]
    cut.append((197, erf(b"\0" * 8, kind=22, extensions=20)))  # more extension headers
    stats = CaptureStats()
    decoder = LinkDecoder(stats)
    for linktype, frame in quiet + unread + cut:
        assert decoder.decode(linktype, frame, 0, len(frame)) is None, frame
    assert stats.non_ip == len(quiet) and stats.undecodable == len(cut)
    assert stats.unread_encapsulations == {
        "PPP multilink fragments": 1,
        "PPP Van Jacobson compressed TCP/IP": 1,
        "PPP protocol 0x002b": 1,
        "ERF record type 3": 1,
    }


def test_unsupported_link_type_warns_once(tmp_path: Path) -> None:
    packets, stats = read(tmp_path, pcap([b"\x08\x02" + b"\0" * 40] * 3, linktype=105))
    assert packets == []
    assert stats.packets == 3 and stats.undecodable == 3 and stats.link_types == {105: 3}
    assert len(stats.warnings) == 1 and "link type 105" in stats.warnings[0]


def test_broken_headers_are_undecodable(tmp_path: Path) -> None:
    frames = [
        eth(ipv4(tcp(HTTP)))[:20],  # IPv4 header cut (but not marked as snaplen-cut)
        eth(b"\x45" + b"\0" * 3),  # IPv4 header shorter than 20 bytes
        eth(b"\x43" + b"\0" * 40),  # IHL 3
        eth(ipv4(tcp(HTTP)[:10])),  # TCP header cut
        eth(ipv4(b"\0" * 12 + b"\x30" + b"\0" * 7)),  # TCP data offset 3
        eth(b"\x60" + b"\0" * 10, etype=0x86DD),  # IPv6 header cut
        b"\0" * 10,  # shorter than an Ethernet header
        eth(ipv4(b"", proto=17)),  # UDP header missing
    ]
    packets, stats = read(tmp_path, pcap(frames))
    assert packets == []
    assert stats.undecodable == len(frames) and stats.packets == len(frames)
    assert stats.tcp == 0 and stats.udp == 0


def test_fast_path_matches_general_decoder(tmp_path: Path) -> None:
    """Frames the inline fast path takes decode the same through LinkDecoder."""
    frames = [
        eth(ipv4(tcp(HTTP))),
        eth(ipv4(tcp(flags=0x11, seq=0xFFFFFFFF, ack=0x80000000))),
        eth(ipv4(tcp(b"x" * 1460, sport=1, dport=65535))) + b"\0" * 4,
        eth(ipv4(tcp(b"abc", options=b"\x01" * 40))),
    ]
    packets, _ = read(tmp_path, pcap(frames))
    stats = CaptureStats()
    decoder = LinkDecoder(stats)
    for frame, packet in zip(frames, packets, strict=True):
        r = decoder.decode(1, frame, 0, len(frame))
        assert r is not None
        assert (*r[:8], frame[r[8] : r[9]]) == packet[1:]
    raw_packets, _ = read(tmp_path, pcap([f[14:] for f in frames], linktype=101))
    assert [p[1:] for p in raw_packets] == [p[1:] for p in packets]


def test_other_ip_payloads_and_odd_link_frames(tmp_path: Path) -> None:
    icmp = eth(ipv4(b"\x08\x00" + b"\0" * 30, proto=1))
    too_many_ext = eth(ipv6(tcp(HTTP), nh=0, ext=_ext(0) * 16 + _ext(6)), etype=0x86DD)
    packets, stats = read(tmp_path, pcap([icmp, too_many_ext]))
    assert packets == [] and stats.ipv4 == 1 and stats.ipv6 == 1 and stats.undecodable == 1
    no_payload_tlv = struct.pack(">BBH", 2, 0, 0) + struct.pack("<HH", 8, 10) + b"pfx\0"
    zero_length_tlv = struct.pack(">BBH", 2, 0, 0) + struct.pack("<HH", 0, 9) + b"\0" * 8
    packets, stats = read(tmp_path, pcap([no_payload_tlv, zero_length_tlv], linktype=239))
    assert packets == [] and stats.non_ip == 1 and stats.undecodable == 1


FULL_FRAMES = {
    1: eth(ipv6(tcp(HTTP), nh=0, ext=_ext(60) + _ext(6)), etype=0x86DD, tags=[(0x8100, 1)]),
    113: sll(ipv4(tcp(HTTP), options=b"\x01" * 8)),
    276: sll2(ipv4(udp(b"datagram"), proto=17)),
    101: ipv4(tcp(HTTP)),
    228: ipv4(tcp(HTTP)),
    229: ipv6(tcp(HTTP)),
    0: struct.pack("<I", 30) + ipv6(udp(b"x"), nh=17),
    108: struct.pack(">I", 2) + ipv4(tcp(HTTP)),
    239: nflog(ipv4(tcp(HTTP))),
    9: ppp(ipv4(tcp(HTTP)), b"\xff\x03"),
    50: chdlc(ipv6(tcp(HTTP))),
    51: struct.pack(">BBHH", 0x11, 0, 7, 0) + ppp(ipv4(tcp(HTTP))),
    104: chdlc(ipv4(tcp(HTTP))),
    166: ppp(ipv4(tcp(HTTP)), b"\x01\x03", compressed=True),
    197: erf(eth(ipv4(tcp(HTTP))), extensions=3),
    204: ppp(ipv6(tcp(HTTP)), b"\x00"),
    205: b"\x01" + chdlc(ipv4(tcp(HTTP))),
}


@pytest.mark.parametrize("linktype", sorted(FULL_FRAMES))
def test_hostile_frames_never_raise(tmp_path: Path, linktype: int) -> None:
    """Every prefix of a valid frame, and random bytes, decode to a result or a count."""
    full = FULL_FRAMES[linktype]
    rng = random.Random(linktype)
    frames = [full[:n] for n in range(len(full) + 1)]
    frames += [rng.randbytes(rng.randrange(0, 120)) for _ in range(300)]
    frames += [full[:8] + rng.randbytes(len(full) - 8) for _ in range(300)]
    packets, stats = read(tmp_path, pcap(frames, linktype=linktype))
    assert stats.packets == len(frames)
    assert len(packets) == stats.tcp + stats.udp
    decoder = LinkDecoder(CaptureStats())
    whole = decoder.decode(linktype, full, 0, len(full))
    assert whole is not None and whole[4] in (80, 5061)
    expected = (*whole[:8], full[whole[8] : whole[9]])
    assert expected in [p[1:] for p in packets]
    for frame in frames:
        decoder.decode(linktype, frame, 0, len(frame))
        decoder.decode(linktype, memoryview(frame), 0, len(frame))


# --------------------------------------------------------------------------------------------
# pcapng
# --------------------------------------------------------------------------------------------


def two_interface_pcapng(order: str = "<") -> bytes:
    """Ethernet (microseconds) and raw IPv4 (nanoseconds) interfaces, all packet block kinds."""
    return b"".join(
        [
            shb(order),
            idb(1, order, snaplen=65535),
            idb(228, order, tsresol=9),
            epb(0, (T0 + 1) * 10**6 + 500_000, eth(ipv4(tcp(HTTP, seq=1))), order),
            block(0x00000BAD, b"custom block, unknown to us", order),
            block(0x40000BAD, b"another custom block", order),
            block(5, struct.pack(order + "III", 0, 0, 0), order),  # interface statistics
            epb(1, (T0 + 2) * 10**9 + 250_000_000, ipv4(tcp(HTTP, seq=2)), order),
            spb(eth(ipv4(tcp(HTTP, seq=3))), order),  # interface 0, time of the last packet
            opb(0, (T0 + 3) * 10**6 + 125_000, eth(ipv4(tcp(HTTP, seq=4))), order),
            epb(0, (T0 + 4) * 10**6, eth(ipv6(tcp(HTTP, seq=5)), etype=0x86DD), order),
        ]
    )


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng_interfaces_and_block_kinds(tmp_path: Path, order: str) -> None:
    packets, stats = read(tmp_path, two_interface_pcapng(order), "c.pcapng")
    assert [(p[0], p[6]) for p in packets] == [
        (T0 + 1.5, 1),
        (T0 + 2.25, 2),
        (T0 + 2.25, 3),  # simple packet block: last seen time
        (T0 + 3.125, 4),
        (T0 + 4.0, 5),
    ]
    assert [p[2] for p in packets] == [A4, A4, A4, A4, A6]
    assert all(p[9] == HTTP for p in packets)
    assert stats.file_format == "pcapng"
    # the two custom blocks are records too: Wireshark numbers them as frames (2 and 3)
    frames = [p[10] for p in read_packets(str(tmp_path / "c.pcapng"), CaptureStats())]
    assert frames == [1, 4, 5, 6, 7]
    assert stats.packets == 7 and stats.tcp == 5 and stats.ipv4 == 4 and stats.ipv6 == 1
    assert stats.link_types == {1: 4, 228: 1}
    # the simple packet block is dated by the packet before it: said, and counted
    assert stats.untimed_packets == 1 and stats.warnings == [
        f"{stats.path}: packets without a timestamp (pcapng simple packet blocks) are dated by "
        "the packet before them"
    ]


def test_pcapng_tsresol_power_of_two_and_tsoffset(tmp_path: Path) -> None:
    data = b"".join(
        [
            shb(),
            idb(1, tsresol=0x80 | 20),  # 2^-20 seconds
            idb(1, tsoffset=T0),  # microseconds, seconds offset
            epb(0, (T0 << 20) + (1 << 19), eth(ipv4(tcp(HTTP)))),
            epb(1, 7_750_000, eth(ipv4(tcp(HTTP)))),
        ]
    )
    packets, _ = read(tmp_path, data, "c.pcapng")
    assert [p[0] for p in packets] == [T0 + 0.5, T0 + 7.75]


def test_pcapng_sections_switch_byte_order(tmp_path: Path) -> None:
    data = b"".join(
        [
            shb("<"),
            idb(1, "<"),
            epb(0, T0 * 10**6, eth(ipv4(tcp(HTTP, seq=1))), "<"),
            shb(">"),
            idb(101, ">", tsresol=3),  # interface 0 again, now raw IP in milliseconds
            epb(0, (T0 + 1) * 1000 + 500, ipv4(tcp(HTTP, seq=2)), ">"),
        ]
    )
    packets, stats = read(tmp_path, data, "c.pcapng")
    assert [(p[0], p[6]) for p in packets] == [(T0, 1), (T0 + 1.5, 2)]
    assert stats.link_types == {1: 1, 101: 1}


def test_pcapng_undeclared_interface(tmp_path: Path) -> None:
    data = shb() + idb(1) + epb(3, 0, eth(ipv4(tcp(HTTP)))) + epb(0, 0, eth(ipv4(tcp(HTTP))))
    packets, stats = read(tmp_path, data, "c.pcapng")
    assert len(packets) == 1
    assert stats.packets == 2 and stats.undecodable == 1 and stats.tcp == 1
    assert any("interface 3" in w for w in stats.warnings)


def test_pcapng_written_by_scapy(tmp_path: Path) -> None:
    scapy = pytest.importorskip("scapy.all")
    pkts = []
    for i in range(3):
        p = scapy.Ether() / scapy.IP(src="10.0.0.1", dst="10.0.0.2") / scapy.TCP(seq=i) / HTTP
        p.time = T0 + i + 0.5
        pkts.append(p)
    path = tmp_path / "scapy.pcapng"
    with scapy.PcapNgWriter(str(path)) as writer:
        for p in pkts:
            writer.write(p)
    stats = CaptureStats()
    packets = list(read_packets(str(path), stats))
    assert [(p[0], p[6], bytes(p[9])) for p in packets] == [
        (T0 + i + 0.5, i, HTTP) for i in range(3)
    ]
    assert stats.file_format == "pcapng"


# --------------------------------------------------------------------------------------------
# Damaged captures
# --------------------------------------------------------------------------------------------


def test_snaplen_cut_packets(tmp_path: Path) -> None:
    full = eth(ipv4(tcp(HTTP)))
    frames = [
        (full[:70], T0, 0, len(full)),  # cut inside the payload
        (full[:60], T0, 0, len(full)),
        (full, T0, 0, len(full) + 4),  # only the FCS was cut
    ]
    packets, stats = read(tmp_path, pcap(frames, snaplen=70))
    assert [p[9] for p in packets] == [HTTP[:16], HTTP[:6], HTTP]
    assert stats.truncated_packets == 3 and stats.tcp == 3
    assert sum("snapshot length" in w for w in stats.warnings) == 1


def test_snaplen_cut_inside_tcp_options(tmp_path: Path) -> None:
    full = eth(ipv4(tcp(HTTP, options=b"\x01" * 20)))
    packets, stats = read(tmp_path, pcap([(full[:60], T0, 0, len(full))]))
    assert [p[8:] for p in packets] == [(0x18, b"")]
    assert stats.truncated_packets == 1


@pytest.mark.parametrize("cut", [3, 16 + 20], ids=["in-header", "in-data"])
def test_truncated_last_record(tmp_path: Path, cut: int) -> None:
    data = pcap([eth(ipv4(tcp(HTTP)))] * 3)
    record = 16 + 14 + 40 + len(HTTP)
    packets, stats = read(tmp_path, data[: 24 + 2 * record + cut])
    assert len(packets) == 2
    assert "truncated" in stats.warnings[0]
    # a record cut inside its data is still a packet seen (its IPv4 header is cut: undecodable)
    assert (stats.packets, stats.undecodable) == ((2, 0) if cut == 3 else (3, 1))


def test_truncated_last_record_keeps_what_it_holds(tmp_path: Path) -> None:
    # The file ends inside the third record's TCP payload: its first bytes are delivered like a
    # snaplen-cut packet, so a request head begun there can be reported lost, not silently gone.
    data = pcap([eth(ipv4(tcp(HTTP)))] * 3)
    record = 16 + 14 + 40 + len(HTTP)
    packets, stats = read(tmp_path, data[: 24 + 2 * record + 16 + 54 + 10])
    assert [bytes(p[9]) for p in packets] == [HTTP, HTTP, HTTP[:10]]
    assert stats.packets == 3 and "file ends in the middle of a record" in stats.warnings[0]


def test_truncated_pcapng_block(tmp_path: Path) -> None:
    data = shb() + idb(1) + epb(0, 0, eth(ipv4(tcp(HTTP)))) * 2
    packets, stats = read(tmp_path, data[:-10], "c.pcapng")
    assert len(packets) == 1 and stats.packets == 1
    assert len(stats.warnings) == 1 and "truncated" in stats.warnings[0]


def test_absurd_record_length_stops(tmp_path: Path) -> None:
    good = pcap([eth(ipv4(tcp(HTTP)))])
    bad = struct.pack("<IIII", T0, 0, 0xFFFFFF00, 0xFFFFFF00) + b"\0" * 100
    packets, stats = read(tmp_path, good + bad)
    assert len(packets) == 1
    assert len(stats.warnings) == 1 and "claims 4294967040 bytes" in stats.warnings[0]
    # Same when streamed: nothing is buffered for it.
    packets, stats = read(tmp_path, gzip.compress(good + bad), "c.pcap.gz")
    assert len(packets) == 1 and "claims" in stats.warnings[0]


@pytest.mark.parametrize("blen", [0x7FFFFFF0, 13, 8])
def test_bad_pcapng_block_length_stops(tmp_path: Path, blen: int) -> None:
    data = shb() + idb(1) + epb(0, 0, eth(ipv4(tcp(HTTP))))
    bad = struct.pack("<II", 0x0BAD, blen) + b"\0" * 64
    packets, stats = read(tmp_path, data + bad, "c.pcapng")
    assert len(packets) == 1
    assert len(stats.warnings) == 1 and f"invalid length {blen}" in stats.warnings[0]


def test_pcapng_packet_block_with_oversized_caplen(tmp_path: Path) -> None:
    bad = bytearray(epb(0, 0, eth(ipv4(tcp(HTTP)))))
    struct.pack_into("<I", bad, 20, 5000)  # captured length beyond the block
    data = shb() + idb(1) + bytes(bad) + epb(0, 0, eth(ipv4(tcp(HTTP))))
    packets, stats = read(tmp_path, data, "c.pcapng")
    assert len(packets) == 1 and stats.packets == 2 and stats.undecodable == 1


def test_pcapng_damage_inside_blocks(tmp_path: Path) -> None:
    frame = eth(ipv4(tcp(HTTP)))
    bad_option_idb = block(1, struct.pack("<HHI", 1, 0, 0) + struct.pack("<HH", 9, 200) + b"\x09")
    data = b"".join(
        [
            shb(),
            spb(frame),  # before any interface
            bad_option_idb,  # option longer than the block: ignored, default microseconds
            epb(0, 1_500_000, frame[:60], orig=len(frame)),  # snaplen-cut
            block(3, b""),  # simple packet block too short to hold a length
            opb(0, 2_000_000, frame[:30] + b"\xff" * 4),  # cut inside the TCP header
            epb(0, 3_000_000, frame),
            b"\0" * 7,  # trailing bytes too few for a block header
        ]
    )
    packets, stats = read(tmp_path, data, "c.pcapng")
    assert [(p[0], p[9]) for p in packets] == [(1.5, HTTP[:6]), (3.0, HTTP)]
    assert stats.packets == 5 and stats.truncated_packets == 1
    assert stats.undecodable == 3  # no interface, short block, cut TCP header
    assert any("interface 0" in w for w in stats.warnings)
    assert any("truncated" in w for w in stats.warnings)


def test_pcapng_bad_second_section(tmp_path: Path) -> None:
    second = bytearray(shb())
    second[8:12] = b"\1\2\3\4"
    data = shb() + idb(1) + epb(0, 0, eth(ipv4(tcp(HTTP)))) + bytes(second) + b"\0" * 40
    packets, stats = read(tmp_path, data, "c.pcapng")
    assert len(packets) == 1 and any("byte-order magic" in w for w in stats.warnings)


def test_record_length_cap_applies_across_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a tiny cap the sliding bound is exercised often; longer records stop the read."""
    monkeypatch.setattr(pcapfile, "MAX_RECORD", 300)
    small = [eth(ipv4(tcp(b"x" * 100, seq=i))) for i in range(30)]
    big = eth(ipv4(tcp(b"y" * 400)))
    packets, stats = read(tmp_path, pcap([*small, big, small[0]]))
    assert [p[6] for p in packets] == list(range(30))
    assert "claims 454 bytes" in stats.warnings[-1]
    blocks = shb() + idb(1) + b"".join(epb(0, i, f) for i, f in enumerate(small))
    packets, stats = read(tmp_path, blocks + epb(0, 99, big), "c.pcapng")
    assert [p[6] for p in packets] == list(range(30))
    assert "invalid length" in stats.warnings[-1]


def test_payload_views_survive_page_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages behind the read position are unmapped; views held by the consumer stay valid."""
    monkeypatch.setattr(pcapfile, "_WINDOW", 4096)
    payloads = [bytes([i]) * 1000 for i in range(100)]
    path = tmp_path / "c.pcap"
    path.write_bytes(pcap([eth(ipv4(tcp(p, seq=i))) for i, p in enumerate(payloads)]))
    packets = list(read_packets(str(path), CaptureStats()))
    assert [bytes(p[9]) for p in packets] == payloads
    path.write_bytes(
        shb() + idb(1) + b"".join(epb(0, i, eth(ipv4(tcp(p)))) for i, p in enumerate(payloads))
    )
    packets = list(read_packets(str(path), CaptureStats()))
    assert [bytes(p[9]) for p in packets] == payloads


@pytest.mark.parametrize("kind", ["pcap", "pcapng", "gzip"])
def test_stats_grow_during_long_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """Counts reach the stats every window, so a progress display can follow a big file."""
    monkeypatch.setattr(pcapfile, "_WINDOW", 4096)
    frames = [eth(ipv4(tcp(b"z" * 946, seq=i))) for i in range(40)] + [eth(ipv4(udp(b"u"), 17))]
    data = {
        "pcap": pcap(frames),
        "pcapng": shb() + idb(1) + b"".join(epb(0, i, f) for i, f in enumerate(frames)),
        "gzip": gzip.compress(pcap(frames)),
    }[kind]
    path = tmp_path / "c.cap"
    path.write_bytes(data)
    stats = CaptureStats()
    seen = [stats.packets for _ in read_packets(str(path), stats)]
    assert 0 < seen[20] < 21 and seen == sorted(seen)
    assert (stats.packets, stats.tcp, stats.udp, stats.ipv4) == (41, 40, 1, 41)
    assert stats.bytes == sum(map(len, frames)) and stats.link_types == {1: 41}


def test_pcap_version_and_fcs_bits(tmp_path: Path) -> None:
    data = bytearray(pcap([eth(ipv4(tcp(HTTP))) + b"FCS!"]))
    struct.pack_into("<HH", data, 4, 3, 0)  # version 3.0
    struct.pack_into("<I", data, 20, 1 | 0x1 << 28 | 0x2 << 26)  # Ethernet with the FCS bits set
    packets, stats = read(tmp_path, bytes(data))
    assert [p[9] for p in packets] == [HTTP]
    assert stats.link_types == {1: 1}
    assert stats.warnings == [f"{tmp_path / 'c.pcap'}: unexpected pcap version 3; reading anyway"]


# --------------------------------------------------------------------------------------------
# Compressed and streamed input
# --------------------------------------------------------------------------------------------


def test_gzip_detected_by_magic(tmp_path: Path) -> None:
    plain = pcap([eth(ipv4(tcp(HTTP, seq=i))) for i in range(20)])
    expected, _ = read(tmp_path, plain)
    packets, stats = read(tmp_path, gzip.compress(plain), "no-extension")
    assert packets == expected and stats.file_format == "pcap.gz"
    packets, stats = read(tmp_path, gzip.compress(two_interface_pcapng()), "x.pcap")
    assert len(packets) == 5 and stats.file_format == "pcapng.gz"
    assert stats.link_types == {1: 4, 228: 1}


@pytest.mark.parametrize("chunk", [1, 7, 100, 4096])
def test_gzip_chunk_boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    """Records split across reads at every possible offset come out whole."""
    frames = [eth(ipv4(tcp(HTTP[: i * 3], seq=i))) for i in range(25)]
    plain_pcap = pcap(frames)
    plain_ng = two_interface_pcapng() + b"".join(epb(0, i, f) for i, f in enumerate(frames))
    expected_pcap, _ = read(tmp_path, plain_pcap)
    expected_ng, _ = read(tmp_path, plain_ng, "c.pcapng")
    monkeypatch.setattr(pcapfile, "CHUNK", chunk)
    packets, stats = read(tmp_path, gzip.compress(plain_pcap), "c.gz")
    assert packets == expected_pcap and stats.packets == 25 and stats.warnings == []
    packets, stats = read(tmp_path, gzip.compress(plain_ng), "c.gz")
    # 25 + 5 packets and two custom blocks, which Wireshark counts as frames
    assert packets == expected_ng and stats.packets == 32 and stats.untimed_packets == 1
    assert stats.warnings == [
        f"{stats.path}: packets without a timestamp (pcapng simple packet blocks) are dated by "
        "the packet before them"
    ]


def test_gzip_larger_than_a_chunk(tmp_path: Path) -> None:
    frames = [eth(ipv4(tcp(bytes([i % 251]) * 1400, seq=i))) for i in range(1500)]  # ~2.2 MB
    packets, stats = read(tmp_path, gzip.compress(pcap(frames), compresslevel=1), "big.gz")
    assert [p[6] for p in packets] == list(range(1500))
    assert all(p[9] == bytes([i % 251]) * 1400 for i, p in enumerate(packets))
    assert stats.bytes == sum(map(len, frames))


def test_gzip_truncated_stream(tmp_path: Path) -> None:
    rng = random.Random(7)
    frames = [eth(ipv4(tcp(rng.randbytes(300), seq=i))) for i in range(50)]  # incompressible
    compressed = gzip.compress(pcap(frames))
    packets, stats = read(tmp_path, compressed[: len(compressed) // 2], "cut.gz")
    assert 10 < len(packets) < 40
    assert [p[6] for p in packets] == list(range(len(packets)))
    assert any("compressed stream ends early" in w for w in stats.warnings)
    assert any("truncated" in w for w in stats.warnings)


def test_gzip_multiple_members(tmp_path: Path) -> None:
    data = pcap([eth(ipv4(tcp(HTTP, seq=i))) for i in range(6)])
    members = gzip.compress(data[:100]) + gzip.compress(data[100:250]) + gzip.compress(data[250:])
    packets, stats = read(tmp_path, members, "multi.gz")
    assert [p[6] for p in packets] == list(range(6)) and stats.warnings == []


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_fifo_is_streamed(tmp_path: Path, compress: bool) -> None:
    """A pipe (``verify /dev/stdin``, a named pipe) cannot seek: a gzip-compressed capture on
    one is read from the bytes already read, not from a seek back (which failed: "File or
    stream is not seekable")."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes here")
    data = pcap([eth(ipv4(tcp(HTTP, seq=i))) for i in range(10)])
    if compress:
        data = gzip.compress(data)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_bytes, args=(data,))
    writer.start()
    stats = CaptureStats()
    try:
        packets = list(read_packets(str(fifo), stats))
    finally:
        writer.join(timeout=10)
    assert [p[6] for p in packets] == list(range(10)) and stats.packets == 10


def test_stats_flushed_when_consumer_stops_early(tmp_path: Path) -> None:
    path = tmp_path / "c.pcap"
    path.write_bytes(pcap([eth(ipv4(tcp(HTTP)))] * 10))
    stats = CaptureStats()
    packets = read_packets(str(path), stats)
    for _ in range(3):
        next(packets)
    packets.close()  # type: ignore[attr-defined]
    assert stats.packets == 3 and stats.tcp == 3 and stats.link_types == {1: 3}


# --------------------------------------------------------------------------------------------
# Not captures
# --------------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match=r"nope\.pcap: no such file"):
        read_packets(str(tmp_path / "nope.pcap"), CaptureStats())


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="is a directory"):
        read_packets(str(tmp_path), CaptureStats())


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty file"),
        (bytes(range(256)) * 4, "unknown magic 0x00010203"),
        (b"\xd4\xc3\xb2\xa1\x02\x00", "too short: 6 bytes"),
        (b"\x0a\x0d\x0d\x0a" + b"\0" * 40, "byte-order magic"),
        (gzip.compress(b"hello, not a capture"), "gzip-compressed, unknown magic 0x68656c6c"),
        (gzip.compress(b""), "gzip-compressed, empty file"),
        (b"\x1f\x8b\x08\x00garbage that is not deflate", "bad gzip data"),
    ],
    ids=["empty", "random", "short-pcap", "bad-bom", "gzip-text", "gzip-empty", "gzip-corrupt"],
)
def test_not_a_capture(tmp_path: Path, data: bytes, why: str) -> None:
    path = tmp_path / "x.pcap"
    path.write_bytes(data)
    with pytest.raises(CaptureError) as info:
        read_packets(str(path), CaptureStats())
    message = str(info.value)
    assert message.startswith(f"{path}: not a pcap or pcapng capture (")
    assert why in message and "\n" not in message


def test_unreadable_file(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root can read anything")
    path = tmp_path / "secret.pcap"
    path.write_bytes(pcap([]))
    path.chmod(0)
    with pytest.raises(CaptureError, match="cannot read"):
        read_packets(str(path), CaptureStats())


# --------------------------------------------------------------------------------------------
# Public captures and tshark
# --------------------------------------------------------------------------------------------


def _public() -> dict[str, dict]:
    return {c["file"]: c for c in public_expected()["captures"]}


ENCAPSULATION_LINKTYPE = {"ether": 1, "null": 0, "rawip4": 228, "nflog": 239}


def test_public_capture_packet_counts() -> None:
    captures = _public()
    assert len(captures) >= 10
    for name, info in captures.items():
        stats = CaptureStats()
        yielded = sum(1 for _ in read_packets(str(PUBLIC / name), stats))
        assert stats.packets == info["packets"], name
        assert stats.file_format == info["file_type"], name
        assert stats.link_types == {ENCAPSULATION_LINKTYPE[info["encapsulation"]]: stats.packets}
        assert yielded == stats.tcp + stats.udp, name
        assert stats.undecodable == 0 and stats.warnings == [], name


def test_public_capture_contents() -> None:
    _public()
    sip = [p for p in read_packets(str(PUBLIC / "ndpi__sip.pcap"), CaptureStats()) if p[1] == 17]
    assert any(bytes(p[9]).startswith(b"REGISTER sip:sip.cybercity.dk") for p in sip)
    for name, needle in [
        ("zeek__basic-auth-with-colon.pcap", b"Authorization: Basic  dGVzdDoxOjM0"),
        ("sv__http-auth-bearer__input.pcap", b"Bearer mF_9.B5f-4.1JqM"),
        ("zeek__nflog-http.pcap", b"GET /"),
        ("ndpi__webdav.pcap", b"Authorization: NTLM "),
    ]:
        payloads = b"".join(bytes(p[9]) for p in read_packets(str(PUBLIC / name), CaptureStats()))
        assert needle in payloads, name


def _tshark(path: Path, *fields: str) -> list[list[str]]:
    args = ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "separator=|"]
    for f in fields:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True).stdout
    return [line.split("|") for line in out.splitlines()]


needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")


@needs_tshark
def test_pcapng_timestamps_match_tshark() -> None:
    _public()
    for name in ["lek__tls-works-dump.pcapng", "ndpi__webdav.pcap"]:
        path = PUBLIC / name
        theirs = [float(row[0]) for row in _tshark(path, "frame.time_epoch")]
        ours = [p[0] for p in read_packets(str(path), CaptureStats())]
        assert len(ours) == len(theirs), name
        assert max(abs(a - b) for a, b in zip(ours, theirs, strict=True)) < 1e-6, name


@needs_tshark
def test_synthetic_pcapng_matches_tshark(tmp_path: Path) -> None:
    """tshark agrees with us on time resolution, offsets, link types and payload sizes."""
    data = two_interface_pcapng() + b"".join(
        [
            idb(276, tsresol=0x80 | 16, tsoffset=-5),
            epb(2, ((T0 + 9) << 16) + (3 << 14), sll2(ipv4(tcp(b"sll2 data", seq=9)))),
            idb(1, tsresol=6),
            epb(
                3, (T0 + 10) * 10**6 + 1, eth(ipv4(udp(b"datagram"), proto=17), tags=[(0x8100, 3)])
            ),
        ]
    )
    path = tmp_path / "synthetic.pcapng"
    path.write_bytes(data)
    rows = _tshark(path, "frame.time_epoch", "ip.src", "ipv6.src", "tcp.len", "udp.length")
    rows = [row for row in rows if row[3] or row[4]]  # tshark lists custom blocks as frames too
    ours = list(read_packets(str(path), CaptureStats()))
    assert len(ours) == len(rows) == 7
    for packet, (ts, ip_src, ip6_src, tcp_len, udp_len) in zip(ours, rows, strict=True):
        if ts:  # tshark gives simple packet blocks no time; we use the previous packet's
            assert abs(packet[0] - float(ts)) < 1e-6
        src = socket.inet_ntop(
            socket.AF_INET6 if len(packet[2]) == 16 else socket.AF_INET, packet[2]
        )
        assert src == (ip_src or ip6_src)
        assert len(packet[9]) == int(tcp_len if packet[1] == 6 else int(udp_len) - 8)
