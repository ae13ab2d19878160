"""IP fragments are put back together, so a request sent in fragmented datagrams is read (and
judged) like any other; what cannot be put together is counted and warned about.

Real bytes: TCP connections written with scapy and fragmented with scapy's own ``fragment`` /
``fragment6`` (as a small-MTU link or a tunnel would), in order, reversed and overlapping.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import token_kit
from wire_kit import CLIENT, SERVER, T0, connection

from analyzer.cli import main
from analyzer.engine import analyze_paths
from analyzer.parallel import analyze_parallel
from analyzer.sources import ipfrag
from analyzer.sources.ipfrag import Defragmenter

scapy = pytest.importorskip("scapy.all")

BASIC = "Basic Q09OVE9TT1xzdmMtc2ZiOlBAc3N3MHJk"  # CONTOSO\svc-sfb:P@ssw0rd
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
STRICT = token_kit.strict_rule(CLIENT)


def ether() -> Any:
    """An Ethernet header with both addresses given (scapy would ARP for a missing one)."""
    return scapy.Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def ews(auth: str) -> bytes:
    head = "POST /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nContent-Length: 0\r\n"
    return f"{head}Authorization: {auth}\r\n\r\n".encode()


def good() -> list[Any]:
    """A connection carrying a good SfB token, not fragmented: the control."""
    return connection([(ews(f"Bearer {token_kit.sfb_token()}"), OK)], 40001, T0)


def basic(t0: float = T0 + 1) -> list[Any]:
    """A Basic call with a long header (so its datagram needs fragments on a small MTU)."""
    padding = "X-Padding: " + "p" * 600
    request = ews(BASIC).replace(b"\r\n\r\n", f"\r\n{padding}\r\n\r\n".encode())
    return connection([(request, OK)], 40002, t0)


def fragmented(packets: list[Any], size: int = 200, order: str = "in") -> list[Any]:
    """``packets`` with every client data packet cut into IPv4 fragments of ``size`` bytes, in
    order or reversed (the last fragment first, as some stacks send them)."""
    out = []
    for p in packets:
        if scapy.Raw in p and p[scapy.TCP].dport == 80:
            pieces = scapy.fragment(p[scapy.IP], fragsize=size)
            if order == "reversed":
                pieces = pieces[::-1]
            for i, piece in enumerate(pieces):
                frame = ether() / piece
                frame.time = float(p.time) + i * 1e-4
                out.append(frame)
        else:
            out.append(p)
    return out


def disagreeing(packets: list[Any]) -> list[Any]:
    """``packets`` fragmented (200 bytes), with a second copy of the second fragment carrying
    other bytes at the same offset: the overlap evasion, which stacks resolve differently."""
    pieces = fragmented(packets, size=200)
    data = [i for i, p in enumerate(pieces) if scapy.IP in p and p[scapy.IP].flags.MF]
    forged = pieces[data[1]].copy()
    forged[scapy.Raw].load = b"Z" * len(forged[scapy.Raw].load)  # same offset, other bytes
    pieces.insert(data[1] + 1, forged)
    return pieces


def write(path: Path, *connections: list[Any]) -> str:
    scapy.wrpcap(str(path), [p for packets in connections for p in packets])
    return str(path)


def summary(path: str) -> tuple[list[tuple], Any]:
    result = analyze_paths([path])
    events = [(e.client_port, e.scheme, e.user, e.status, e.uri) for e in result.events]
    return events, result.captures[0]


def verify(capsys: pytest.CaptureFixture[str], path: str) -> tuple[int, dict]:
    code = main(["verify", path, *STRICT, "--json"])
    return code, json.loads(capsys.readouterr().out)


WHOLE = [
    (40001, "bearer", None, 200, "/EWS/Exchange.asmx"),
    (40002, "basic", "svc-sfb", 200, "/EWS/Exchange.asmx"),
]


@pytest.mark.parametrize("order", ["in", "reversed"])
def test_a_fragmented_request_reads_as_the_whole_one(tmp_path: Path, order: str) -> None:
    path = write(tmp_path / "f.pcap", good(), fragmented(basic(), order=order))
    events, stats = summary(path)
    assert events == WHOLE
    # 91 + 40 + 600 + 13 bytes of TCP and HTTP in 200-byte pieces
    assert (stats.ip_fragments, stats.ip_reassembled, stats.ip_datagrams_lost) == (4, 1, 0)
    assert not [w for w in stats.warnings if "fragment" in w]


def test_datagrams_interleaved_are_told_apart_by_their_ids(tmp_path: Path) -> None:
    one, two = basic(), [q.copy() for q in basic()]
    for q in two:
        q[scapy.TCP].sport = 40003 if q[scapy.TCP].sport == 40002 else q[scapy.TCP].sport
        q[scapy.TCP].dport = 40003 if q[scapy.TCP].dport == 40002 else q[scapy.TCP].dport
    for packets, ident in ((one, 7), (two, 8)):
        for q in packets:
            q[scapy.IP].id = ident
    first, second = fragmented(one), fragmented(two)
    woven = [q for pair in zip(first, second, strict=True) for q in pair]
    events, stats = summary(write(tmp_path / "w.pcap", woven))
    assert sorted(events) == [WHOLE[1], (40003, *WHOLE[1][1:])]  # same time: any order
    assert (stats.ip_reassembled, stats.ip_datagrams_lost) == (2, 0)


def test_verify_judges_what_came_in_fragments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # before, the fragments were skipped and the good call alone PASSed
    path = write(tmp_path / "f.pcap", good(), fragmented(basic()))
    code, data = verify(capsys, path)
    assert (code, data["result"], data["rules"][0]["in_scope"]) == (1, "FAIL", 2)
    assert data["rules"][0]["violation_groups"][0]["reasons"] == [
        "not OAuth: basic as CONTOSO\\svc-sfb"
    ]


def test_ipv6_fragments_too(tmp_path: Path) -> None:
    packets = []
    six_of = {CLIENT: "2001:db8::1", SERVER: "2001:db8::2"}
    for p in basic():
        ip = p[scapy.IP]
        header = scapy.IPv6(src=six_of[ip.src], dst=six_of[ip.dst])
        six = ether() / header / ip.payload
        if scapy.Raw in p and p[scapy.TCP].dport == 80:
            six = ether() / header / scapy.IPv6ExtHdrFragment() / ip.payload
            for i, piece in enumerate(scapy.fragment6(six[scapy.IPv6], 300)):
                frame = ether() / piece
                frame.time = float(p.time) + i * 1e-4
                packets.append(frame)
            continue
        six.time = p.time
        packets.append(six)
    events, stats = summary(write(tmp_path / "f6.pcap", packets))
    assert events == [WHOLE[1]]
    assert (stats.ip_reassembled, stats.ip_datagrams_lost) == (1, 0) and stats.ip_fragments >= 3


def test_a_fragmented_tunnel_is_taken_apart_after_reassembly(tmp_path: Path) -> None:
    # VXLAN without path MTU discovery: the outer UDP datagram is fragmented, the inner packet
    # (a whole TCP segment) is inside once the fragments are put together
    packets = []
    for p in basic():
        outer = scapy.IP(src="192.0.2.1", dst="192.0.2.2") / scapy.UDP(sport=50000, dport=4789)
        tunnelled = outer / scapy.VXLAN(vni=42) / p
        for i, piece in enumerate(scapy.fragment(tunnelled, fragsize=400)):
            frame = ether() / piece
            frame.time = float(p.time) + i * 1e-4
            packets.append(frame)
    events, stats = summary(write(tmp_path / "vx.pcap", packets))
    assert events == [WHOLE[1]]
    assert stats.encapsulations == {"VXLAN": len(basic())}
    assert stats.ip_reassembled == 1


def test_overlapping_fragments_that_disagree_are_dropped_and_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "o.pcap", good(), disagreeing(basic()))
    events, stats = summary(path)
    assert events == WHOLE[:1]
    assert (stats.ip_reassembled, stats.ip_datagrams_lost) == (0, 1)
    assert [w for w in stats.warnings if "fragment" in w] == [
        f"{path}: 1 fragmented IP datagram(s) not put together "
        f"(1 {ipfrag.LOST_REASONS['conflict']}): their packets are missing"
    ]


def test_a_datagram_missing_a_piece_is_counted_at_the_end(tmp_path: Path) -> None:
    pieces = fragmented(basic(), size=200)
    last = max(i for i, p in enumerate(pieces) if scapy.IP in p and p[scapy.IP].frag)
    del pieces[last]
    path = write(tmp_path / "m.pcap", pieces)
    events, stats = summary(path)
    assert events == []
    assert (stats.ip_reassembled, stats.ip_datagrams_lost) == (0, 1)
    assert ipfrag.LOST_REASONS["incomplete"] in " ".join(stats.warnings)


def test_parallel_reading_agrees(tmp_path: Path) -> None:
    path = write(tmp_path / "f.pcap", good(), fragmented(basic(), order="reversed"))
    one = analyze_paths([path])
    two = analyze_parallel([path], jobs=2)
    assert two.events == one.events
    assert len(one.events) == 2


# -- the bounds ----------------------------------------------------------------------------------
def test_pieces_in_any_order_with_repeats_make_one_payload() -> None:
    d = Defragmenter()
    key = (4, b"a", b"b", 6, 1, b"")
    assert d.add(key, 16, False, b"C" * 4, 0.0) is None
    assert d.add(key, 0, True, b"A" * 8, 0.0) is None
    assert d.add(key, 0, True, b"A" * 8, 0.0) is None  # a repeat agrees: kept
    assert d.add(key, 8, True, b"B" * 8, 0.0) == b"A" * 8 + b"B" * 8 + b"C" * 4
    assert (d.reassembled, d.lost, d.pending, d.held) == (1, {}, {}, 0)


@pytest.mark.parametrize(
    ("pieces", "lost"),
    [
        ([(0, True, b"A" * 8), (0, False, b"B" * 8)], "conflict"),  # same place, other bytes
        ([(8, False, b"A" * 8), (0, False, b"B" * 8)], "conflict"),  # two different ends
        ([(0, True, b"A" * 16), (8, False, b"A" * 4)], "conflict"),  # bytes past the end
        ([(8, False, b"A" * 8), (0, True, b"B" * 24)], "conflict"),  # a piece past the end
        # a second end past the first (a stack keeps one or the other), then the start
        ([(8, False, b"B" * 8), (16, False, b"C" * 8), (0, True, b"A" * 8)], "conflict"),
        # a piece past the end that agrees with the bytes it overlaps
        ([(8, False, b"B" * 8), (0, True, b"A" * 8 + b"B" * 8 + b"X" * 8)], "conflict"),
        ([(65528, True, b"A" * 16)], "oversized"),
        ([(0, True, b"A" * 8)], "incomplete"),
    ],
)
def test_what_is_given_up_on(pieces: list, lost: str) -> None:
    d = Defragmenter()
    for offset, more, data in pieces:
        assert d.add((4, b"a", b"b", 6, 1, b""), offset, more, data, 0.0) is None
    d.finish()
    assert (d.lost, d.reassembled, d.pending, d.held) == ({lost: 1}, 0, {}, 0)


def test_the_oldest_datagram_goes_when_the_bounds_are_reached() -> None:
    d = Defragmenter()
    for ident in range(ipfrag.MAX_DATAGRAMS + 1):
        d.add((4, b"a", b"b", 6, ident, b""), 0, True, b"x" * 8, 0.0)
    assert len(d.pending) == ipfrag.MAX_DATAGRAMS and d.lost == {"evicted": 1}
    assert (4, b"a", b"b", 6, 0, b"") not in d.pending
    # the evicted datagram's next piece goes with it (not a new datagram evicting another)
    assert d.add((4, b"a", b"b", 6, 0, b""), 8, False, b"y" * 8, 0.0) is None
    assert (4, b"a", b"b", 6, 0, b"") not in d.pending and d.lost == {"evicted": 1}
    big = Defragmenter()
    for ident in range(ipfrag.MAX_PENDING_BYTES // 60000 + 1):
        big.add((4, b"a", b"b", 6, ident, b""), 0, True, b"x" * 60000, 0.0)
    assert big.held <= ipfrag.MAX_PENDING_BYTES and big.lost == {"evicted": 1}


def test_the_rest_of_a_dropped_datagram_is_dropped_with_it() -> None:
    d = Defragmenter()
    key = (4, b"a", b"b", 6, 1, b"")
    d.add(key, 0, True, b"A" * 8, 0.0)
    d.add(key, 0, True, b"B" * 8, 0.0)  # conflict: dropped
    assert d.add(key, 8, False, b"C" * 8, 1.0) is None  # its end: not a new datagram
    d.finish()
    assert d.lost == {"conflict": 1}
    assert d.add(key, 0, False, b"D" * 8, ipfrag.TIMEOUT) is None  # the timeout: still gone
    # the same id long after is a new datagram (ids wrap around)
    assert d.add(key, 0, False, b"D" * 8, ipfrag.TIMEOUT + 2) == b"D" * 8


def test_a_datagram_not_completed_in_time_is_given_up() -> None:
    d = Defragmenter()
    key = (4, b"a", b"b", 6, 1, b"")
    d.add(key, 0, True, b"A" * 8, 0.0)
    assert d.add(key, 8, False, b"B" * 8, ipfrag.TIMEOUT + 1) is None  # a new datagram's end
    assert d.lost == {"timeout": 1} and len(d.pending) == 1


# -- edges: real fragments through the defragmenter ---------------------------------------------
def ip_piece(offset: int, data: bytes, more: bool, ident: int = 9) -> Any:
    """One IPv4 fragment (UDP) of datagram ``ident`` carrying ``data`` at ``offset``."""
    flags = "MF" if more else 0
    return scapy.IP(src=CLIENT, dst=SERVER, id=ident, proto=17, flags=flags, frag=offset // 8) / (
        scapy.Raw(data)
    )


def feed(d: Defragmenter, packets: list[Any], ts: float = 0.0) -> list[bytes | None]:
    """Hand each IPv4 fragment's bytes to ``d`` as the link decoder does (key, offset in bytes,
    more-fragments flag, payload); what each returned."""
    out = []
    for p in packets:
        raw = bytes(p[scapy.IP])
        ihl, total = (raw[0] & 0x0F) * 4, int.from_bytes(raw[2:4], "big")
        frag = int.from_bytes(raw[6:8], "big")
        key = (4, raw[12:16], raw[16:20], raw[9], int.from_bytes(raw[4:6], "big"), b"")
        out.append(d.add(key, (frag & 0x1FFF) * 8, bool(frag & 0x2000), raw[ihl:total], ts))
    return out


def sip_datagram(size: int, ident: int = 9) -> Any:
    """A UDP datagram whose IP payload is ``size`` bytes."""
    body = (b"INVITE sip:ews@contoso.com SIP/2.0\r\n" * (size // 36 + 1))[: size - 8]
    udp = scapy.UDP(sport=5060, dport=5060) / scapy.Raw(body)
    return scapy.IP(src=CLIENT, dst=SERVER, id=ident) / udp


def test_a_datagram_sent_again_in_other_fragments_is_put_together() -> None:
    # the same datagram cut at 16 and at 24 bytes (a retransmission on another path): pieces
    # overlap at other offsets and agree; a longer piece at an offset replaces the shorter
    dgram = sip_datagram(64)
    small, large = scapy.fragment(dgram, fragsize=16), scapy.fragment(dgram, fragsize=24)
    assert (len(small), len(large)) == (4, 3)
    d = Defragmenter()
    held = []
    for piece in (small[0], large[0], large[1], small[1], small[2]):
        assert feed(d, [piece]) == [None]
        held.append(d.held)
    assert held == [16, 24, 48, 64, 80]  # the bytes it keeps, each once
    assert feed(d, [small[3]]) == [bytes(dgram)[20:]]
    assert (d.reassembled, d.lost, d.pending, d.held) == (1, {}, {}, 0)


def test_a_last_fragment_seen_twice_or_empty_is_still_the_end() -> None:
    # sent last-first, the last fragment captured twice (a SPAN port and a tap)
    dgram = sip_datagram(40)
    pieces = scapy.fragment(dgram, fragsize=16)[::-1]
    d = Defragmenter()
    assert feed(d, [pieces[0], *pieces]) == [None, None, None, bytes(dgram)[20:]]
    # an empty last fragment, sent first, then one piece with more-fragments up to it
    assert feed(d, [ip_piece(16, b"", False), ip_piece(0, b"A" * 16, True)]) == [None, b"A" * 16]
    assert (d.reassembled, d.lost, d.pending, d.held) == (2, {}, {}, 0)


def test_the_largest_datagram_is_put_together_and_a_byte_more_is_not() -> None:
    head, tail = b"H" * 32768, b"T" * 32760
    for last, expect in ((b"E" * 7, head + tail + b"E" * 7), (b"E" * 8, None)):
        d = Defragmenter()
        pieces = [
            ip_piece(0, head, True),
            ip_piece(32768, tail, True),
            ip_piece(65528, last, False),
        ]
        assert feed(d, pieces)[-1] == expect
        assert d.lost == ({} if expect else {"oversized": 1})
    assert len(head + tail + b"E" * 7) == ipfrag.MAX_DATAGRAM


def test_a_datagram_in_more_fragments_than_allowed_is_oversized() -> None:
    fits = scapy.fragment(sip_datagram(8 * ipfrag.MAX_FRAGMENTS), fragsize=8)
    assert len(fits) == ipfrag.MAX_FRAGMENTS
    d = Defragmenter()
    assert feed(d, fits)[-1] == bytes(sip_datagram(8 * ipfrag.MAX_FRAGMENTS))[20:]
    over = scapy.fragment(sip_datagram(8 * ipfrag.MAX_FRAGMENTS + 8, ident=10), fragsize=8)
    assert feed(d, over) == [None] * len(over)  # the last piece is one too many
    d.finish()
    assert (d.reassembled, d.lost, d.pending, d.held) == (1, {"oversized": 1}, {}, 0)


def test_a_ping_of_death_sent_last_first_is_dropped_whole() -> None:
    # its last piece reaches past 65,535 bytes: the pieces after it are dropped with it, not
    # taken for a new datagram
    pieces = [
        ip_piece(65520, b"X" * 24, False),
        ip_piece(0, b"X" * 32768, True),
        ip_piece(32768, b"X" * 32752, True),
    ]
    d = Defragmenter()
    assert feed(d, pieces) == [None, None, None]
    d.finish()
    assert (d.lost, d.pending, d.held) == ({"oversized": 1}, {}, 0)


def test_a_datagram_is_waited_for_exactly_the_timeout() -> None:
    d = Defragmenter()
    assert feed(d, [ip_piece(0, b"A" * 8, True)], 0.0) == [None]
    assert feed(d, [ip_piece(8, b"B" * 8, False)], ipfrag.TIMEOUT) == [b"A" * 8 + b"B" * 8]
    assert (d.lost, d.reassembled) == ({}, 1)


def test_a_datagram_times_out_while_one_given_up_on_is_still_remembered() -> None:
    d = Defragmenter()
    assert feed(d, [ip_piece(0, b"A" * 8, True, ident=1)], 0.0) == [None]
    conflict = [ip_piece(0, b"B" * 8, True, ident=2), ip_piece(0, b"C" * 8, True, ident=2)]
    assert feed(d, conflict, 30.0) == [None, None]
    # past the timeout for datagram 1, not for the one given up on: 1 is dropped all the same
    assert feed(d, [ip_piece(8, b"A" * 8, False, ident=1)], 61.0) == [None]
    assert d.lost == {"conflict": 1, "timeout": 1}
    assert feed(d, [ip_piece(8, b"C" * 8, False, ident=2)], 61.0) == [None]  # still given up


def test_datagrams_given_up_on_are_remembered_up_to_the_bound() -> None:
    d = Defragmenter()
    n = ipfrag.MAX_DATAGRAMS + 1
    for ident in range(n):
        assert feed(d, [ip_piece(65528, b"X" * 16, True, ident=ident)]) == [None]
    assert d.lost == {"oversized": n}
    # the oldest is forgotten past the bound: its id is a new datagram; the next is not
    assert feed(d, [ip_piece(0, b"D" * 8, False, ident=0)]) == [b"D" * 8]
    assert feed(d, [ip_piece(0, b"D" * 8, False, ident=1)]) == [None]
    assert len(d.given_up) == ipfrag.MAX_DATAGRAMS


def test_the_bytes_held_may_reach_the_bound_not_pass_it() -> None:
    d = Defragmenter()
    big = b"x" * 65528
    n = ipfrag.MAX_PENDING_BYTES // len(big)
    for ident in range(n):
        d.add((4, b"a", b"b", 17, ident, b""), 0, True, big, 0.0)
    rest = ipfrag.MAX_PENDING_BYTES - n * len(big)
    d.add((4, b"a", b"b", 17, n, b""), 0, True, b"y" * rest, 0.0)
    assert (d.held, d.lost, len(d.pending)) == (ipfrag.MAX_PENDING_BYTES, {}, n + 1)
    d.add((4, b"a", b"b", 17, n, b""), rest, True, b"y" * 8, 0.0)  # 8 bytes past it
    assert d.lost == {"evicted": 1} and (4, b"a", b"b", 17, 0, b"") not in d.pending
    assert d.held == ipfrag.MAX_PENDING_BYTES + 8 - len(big)


def test_each_datagram_given_up_on_is_counted(tmp_path: Path) -> None:
    connections = []
    for port, ident in ((40002, 7), (40003, 8)):
        packets = [q.copy() for q in basic()]
        for q in packets:
            q[scapy.IP].id = ident
            for field in ("sport", "dport"):
                if getattr(q[scapy.TCP], field) == 40002:
                    setattr(q[scapy.TCP], field, port)
        connections.append(disagreeing(packets))
    path = write(tmp_path / "o2.pcap", good(), *connections)
    events, stats = summary(path)
    assert events == WHOLE[:1]
    assert (stats.ip_reassembled, stats.ip_datagrams_lost) == (0, 2)
    assert [w for w in stats.warnings if "fragment" in w] == [
        f"{path}: 2 fragmented IP datagram(s) not put together "
        f"(2 {ipfrag.LOST_REASONS['conflict']}): their packets are missing"
    ]


def test_a_datagram_given_up_on_is_a_blind_spot_for_verify(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The evasion above hid a Basic request in fragments that disagree: whatever they carried
    was not read, so verify cannot PASS on the good call alone (it was a warning only)."""
    code, data_out = verify(capsys, write(tmp_path / "o.pcap", good(), disagreeing(basic())))
    (rule,) = data_out["rules"]
    assert (code, rule["result"]) == (2, "INCONCLUSIVE")
    src, dst = sorted((basic()[3][scapy.IP].src, basic()[3][scapy.IP].dst))
    assert (
        f"1 fragmented IP datagram between {src} and {dst} not put together: whatever they "
        "carried is unknown (see the capture's warnings for why)"
    ) in rule["coverage"]["blind_spots"]
    whole = fragmented(basic(), size=200)  # the same fragments, none forged: read, judged
    code, data_out = verify(capsys, write(tmp_path / "w.pcap", good(), whole))
    assert code == 1 and data_out["rules"][0]["coverage"]["blind_spots"] == []


def test_a_fragment_captured_twice_after_its_datagram_is_a_copy(tmp_path: Path) -> None:
    """A SPAN port and a tap both copy a frame: the second copy of a fragment, after its
    datagram was put together, is dropped as a copy, not taken for a new datagram that never
    completes (which warned "still missing pieces" over a capture that missed nothing)."""
    key = (4, b"a", b"b", 6, 1, b"")
    d = Defragmenter()
    assert d.add(key, 0, True, b"A" * 8, 0.0) is None
    assert d.add(key, 8, False, b"B" * 8, 0.1) == b"A" * 8 + b"B" * 8
    assert d.add(key, 8, False, b"B" * 8, 0.2) is None  # the last piece again
    assert d.add(key, 0, True, b"A" * 8, 0.3) is None  # and the first
    d.finish()
    assert (d.lost, d.reassembled, d.repeats, d.pending) == ({}, 1, 2, {})
    pieces = fragmented(basic(), size=200)
    twice = [p for piece in pieces for p in (piece, piece.copy())]
    events, stats = summary(write(tmp_path / "twice.pcap", good(), twice))
    assert events == WHOLE[:2] and stats.ip_datagrams_lost == 0
    assert not [w for w in stats.warnings if "fragment" in w]


def test_an_id_used_again_for_other_bytes_is_a_new_datagram() -> None:
    """Within the time a datagram is remembered, a fragment with the same id but other bytes
    (or a last piece ending elsewhere) starts a new datagram: ids wrap at high rates."""
    key = (4, b"a", b"b", 6, 1, b"")
    d = Defragmenter()
    d.add(key, 0, True, b"A" * 8, 0.0)
    assert d.add(key, 8, False, b"B" * 8, 0.1) == b"A" * 8 + b"B" * 8
    assert d.add(key, 0, True, b"C" * 8, 1.0) is None  # other bytes: a new datagram
    assert d.add(key, 8, False, b"D" * 8, 1.1) == b"C" * 8 + b"D" * 8
    assert d.add(key, 8, True, b"D" * 8, 1.2) is None  # same bytes, but not the end now
    assert d.add(key, 16, False, b"E" * 8, 1.3) is None
    d.finish()
    assert (d.reassembled, d.repeats, d.lost) == (2, 0, {"incomplete": 1})
    late = Defragmenter()
    late.add(key, 0, True, b"A" * 8, 0.0)
    late.add(key, 8, False, b"B" * 8, 0.1)
    later = ipfrag.TIMEOUT + 1
    assert late.add(key, 8, False, b"B" * 8, later) is None  # forgotten: a new datagram
    late.finish()
    assert (late.repeats, late.lost) == (0, {"incomplete": 1})


def test_what_is_given_up_on_is_told_with_its_key() -> None:
    told: list[tuple] = []
    key = (4, b"a", b"b", 6, 1, b"")
    d = Defragmenter(lambda k, reason, ts: told.append((k, reason, ts)))
    d.add(key, 0, True, b"A" * 8, 5.0)
    d.add(key, 0, True, b"B" * 8, 6.0)  # conflict
    other = (4, b"a", b"c", 6, 2, b"")
    d.add(other, 0, True, b"A" * 8, 7.0)
    d.finish()  # incomplete, dated by its first piece
    assert told == [(key, "conflict", 6.0), (other, "incomplete", 7.0)]


def test_a_request_lost_in_fragments_with_nothing_after_it_is_a_blind_spot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Basic request's datagram misses a piece and nothing follows it on the connection
    (no answer, no FIN, the capture ends): TCP sees no hole, so only the datagram given up on
    says that something in scope was not read."""
    handshake_and_request = basic()[:4]
    pieces = fragmented(handshake_and_request, size=200)
    del pieces[-1]  # the request's last fragment
    code, data_out = verify(capsys, write(tmp_path / "end.pcap", good(), pieces))
    (rule,) = data_out["rules"]
    assert (code, rule["result"]) == (2, "INCONCLUSIVE"), rule
    assert [line for line in rule["coverage"]["blind_spots"] if "fragmented" in line] != []
    assert not [line for line in rule["coverage"]["blind_spots"] if "request bytes" in line]


def _kept(d: Defragmenter) -> int:
    """The bytes the remembered datagrams hold, counted afresh (``done_bytes`` must agree)."""
    return sum(len(payload) for _, payload in d.done.values())


def test_datagrams_remembered_stay_within_the_bounds_and_are_counted() -> None:
    """Datagrams put together are remembered for copies of their fragments: at most
    MAX_DATAGRAMS of them and MAX_PENDING_BYTES of payload (exactly that much stays), the
    oldest going first, and their bytes counted right through completion, replacement by a new
    datagram under the same id, and expiry."""
    d = Defragmenter()
    for ident in range(ipfrag.MAX_DATAGRAMS + 1):
        key = (4, b"a", b"b", 6, ident, b"")
        d.add(key, 0, True, b"x" * 8, 0.0)
        d.add(key, 8, False, b"y" * 8, 0.0)
    assert len(d.done) == ipfrag.MAX_DATAGRAMS and d.done_bytes == _kept(d)
    assert (4, b"a", b"b", 6, 0, b"") not in d.done  # the oldest went
    half = ipfrag.MAX_PENDING_BYTES // 512 // 2  # 512 datagrams fill the bytes exactly
    big = Defragmenter()
    for ident in range(512):
        key = (4, b"a", b"b", 6, ident, b"")
        big.add(key, 0, True, b"x" * half, 0.0)
        big.add(key, half, False, b"y" * half, 0.0)
    assert big.done_bytes == ipfrag.MAX_PENDING_BYTES == _kept(big) and len(big.done) == 512
    key = (4, b"a", b"b", 6, 512, b"")
    big.add(key, 0, True, b"x" * 8, 0.0)
    big.add(key, 8, False, b"y" * 8, 0.0)  # one more: the oldest goes
    assert len(big.done) == 512 and big.done_bytes == _kept(big) <= ipfrag.MAX_PENDING_BYTES
    assert (4, b"a", b"b", 6, 0, b"") not in big.done
    small = Defragmenter()
    key = (4, b"a", b"b", 6, 1, b"")
    small.add(key, 0, True, b"A" * 8, 0.0)
    small.add(key, 8, False, b"B" * 8, 0.0)
    assert small.done_bytes == 16 == _kept(small)
    small.add(key, 0, True, b"C" * 8, 1.0)  # a new datagram under the id: the old forgotten
    assert small.done_bytes == 0 == _kept(small)
    small.add(key, 8, False, b"D" * 24, 1.0)
    assert small.done_bytes == 32 == _kept(small)
    small.add((4, b"a", b"b", 6, 2, b""), 0, True, b"E" * 8, 1.0 + ipfrag.TIMEOUT + 1)
    assert small.done == {} and small.done_bytes == 0  # expired


def test_a_copy_exactly_at_the_timeout_is_still_a_copy_and_waiting_ones_expire_too() -> None:
    key = (4, b"a", b"b", 6, 1, b"")
    d = Defragmenter()
    d.add(key, 0, True, b"A" * 8, 0.0)
    d.add(key, 8, False, b"B" * 8, 0.0)
    assert d.add(key, 8, False, b"B" * 8, ipfrag.TIMEOUT) is None and d.repeats == 1
    # a datagram left waiting times out even while a newer one is still remembered
    e = Defragmenter()
    waiting = (4, b"a", b"c", 6, 7, b"")
    e.add(waiting, 0, True, b"W" * 8, 0.0)
    e.add(key, 0, True, b"A" * 8, 50.0)
    e.add(key, 8, False, b"B" * 8, 50.0)  # remembered at 50 s
    e.add((4, b"a", b"b", 6, 2, b""), 0, True, b"E" * 8, ipfrag.TIMEOUT + 1)
    assert e.lost == {"timeout": 1} and waiting not in e.pending
