"""Real packets for small test captures: TCP connections (handshake, data, FIN) written with
scapy, so a test states the HTTP it needs and gets a pcap the whole pipeline reads."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

T0 = 1772442000.0  # 2026-03-02 09:00:00 UTC
CLIENT, SERVER = "10.9.9.1", "10.9.9.2"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

Exchange = tuple[bytes, bytes | None]  # request bytes, response bytes (None: no answer)


def connection(
    exchanges: Sequence[Exchange],
    sport: int,
    t0: float,
    client: str = CLIENT,
    server: str = SERVER,
) -> list[Any]:
    """Packets of one TCP connection to ``server``:80 carrying ``exchanges`` in order, 10 ms
    apart."""
    import scapy.all as scapy

    packets = []

    def seg(outbound: bool, flags: str, seq: int, ack: int, payload: bytes = b"") -> None:
        src, dst, sp, dp = (client, server, sport, 80) if outbound else (server, client, 80, sport)
        packet = scapy.Ether() / scapy.IP(src=src, dst=dst)
        packet = packet / scapy.TCP(sport=sp, dport=dp, flags=flags, seq=seq, ack=ack)
        packets.append(packet / payload if payload else packet)

    c, s = 1000, 5000
    seg(True, "S", c, 0)
    seg(False, "SA", s, c + 1)
    c, s = c + 1, s + 1
    seg(True, "A", c, s)
    for request, response in exchanges:
        seg(True, "PA", c, s, request)
        c += len(request)
        if response is not None:
            seg(False, "PA", s, c, response)
            s += len(response)
    seg(True, "FA", c, s)
    seg(False, "FA", s, c + 1)
    seg(True, "A", c + 1, s + 1)
    for i, packet in enumerate(packets):
        packet.time = t0 + i * 0.01
    return packets


def write_capture(path: Path, *connections: Sequence[Exchange]) -> str:
    """One pcap with each connection from its own client port, a second apart."""
    import scapy.all as scapy

    packets = []
    for i, exchanges in enumerate(connections):
        packets += connection(exchanges, 40001 + i, T0 + i)
    scapy.wrpcap(str(path), packets)
    return str(path)


Segment = tuple[bool, bytes]  # (sent by the client, payload)


def conversation(
    segments: Sequence[Segment], sport: int, t0: float, *, syn: bool = True, mss: int = 1460
) -> list[Any]:
    """Packets of one TCP connection to SERVER:80 carrying ``segments`` in order (each cut at
    ``mss``), 10 ms apart; ``syn=False`` leaves out the handshake (a capture begun mid-way)."""
    import scapy.all as scapy

    packets = []
    seq = {True: 1001, False: 5001}

    def seg(outbound: bool, flags: str, payload: bytes = b"") -> None:
        src, dst, sp, dp = (CLIENT, SERVER, sport, 80) if outbound else (SERVER, CLIENT, 80, sport)
        packet = scapy.Ether() / scapy.IP(src=src, dst=dst)
        tcp = scapy.TCP(sport=sp, dport=dp, flags=flags, seq=seq[outbound], ack=seq[not outbound])
        packets.append(packet / tcp / payload if payload else packet / tcp)
        seq[outbound] += len(payload) + (1 if "S" in flags or "F" in flags else 0)

    if syn:
        seq[True] -= 1
        seq[False] -= 1
        seg(True, "S")
        seg(False, "SA")
        seg(True, "A")
    for outbound, payload in segments:
        for i in range(0, len(payload), mss):
            seg(outbound, "PA", payload[i : i + mss])
    seg(True, "FA")
    seg(False, "FA")
    seg(True, "A")
    for i, packet in enumerate(packets):
        packet.time = t0 + i * 0.01
    return packets


def write_packets(path: Path, *connections: list[Any]) -> str:
    """One pcap of the packets of ``connections`` (lists of scapy packets), in that order."""
    import scapy.all as scapy

    scapy.wrpcap(str(path), [p for packets in connections for p in packets])
    return str(path)
