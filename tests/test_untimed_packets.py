"""Packets that carry no timestamp make the capture's times unknown: a blind spot.

A pcapng simple packet block (type 3) has no timestamp. A review (round 5) wrote the metadata
fetch and the handshake as enhanced blocks at 09:00 and the Bearer request after them as simple
blocks; the token expired at 09:10. The request took the time of the packet before it, the
token was judged valid, and ``verify`` PASSed without a word. Now such packets are counted and
warned about, and they are a blind spot for every scope (INCONCLUSIVE): when their requests
were made, and so whether a token had expired, is unknown. The pcapng files are written here
block by block (RFC draft-ietf-opsawg-pcapng) around packets made with scapy.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
import token_kit
from wire_kit import CLIENT, OK, T0, conversation

from analyzer import analyze
from analyzer.cli import main

REQUEST = (
    "POST /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nContent-Length: 0\r\n"
    f"Authorization: Bearer {token_kit.sfb_token()}\r\n\r\n"
).encode()


def block(kind: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    size = len(body) + 12
    return struct.pack("<II", kind, size) + body + struct.pack("<I", size)


def pcapng(packets: list[Any], simple_from: int | None) -> bytes:
    """A pcapng of ``packets`` (Ethernet), enhanced blocks before index ``simple_from`` and
    simple blocks (no timestamp) from it on."""
    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    out += block(1, struct.pack("<HHI", 1, 0, 0))
    for i, packet in enumerate(packets):
        data = bytes(packet)
        if simple_from is not None and i >= simple_from:
            out += block(3, struct.pack("<I", len(data)) + data)
        else:
            micro = round(float(packet.time) * 1_000_000)
            head = struct.pack("<IIIII", 0, micro >> 32, micro & 0xFFFFFFFF, len(data), len(data))
            out += block(6, head + data)
    return out


def test_packets_without_a_time_are_a_blind_spot(
    tmp_path: Path, reader: str, capsys: pytest.CaptureFixture[str]
) -> None:
    packets = conversation([(True, REQUEST), (False, OK)], 40001, T0)
    path = tmp_path / "spb.pcapng"
    path.write_bytes(pcapng(packets, simple_from=3))  # the handshake timed, the rest not
    (stats,) = analyze(str(path)).result.captures
    assert stats.untimed_packets == len(packets) - 3
    code = main(["verify", str(path), *token_kit.strict_rule(CLIENT)])
    out = capsys.readouterr().out
    assert code == 2 and out.startswith("INCONCLUSIVE"), out
    assert (
        f"blind spot: {path}: {len(packets) - 3} packet(s) carry no timestamp (pcapng simple "
        "packet blocks): when their requests were made, and so whether a token had expired, "
        "is unknown"
    ) in out


def test_the_same_packets_timed_pass(
    tmp_path: Path, reader: str, capsys: pytest.CaptureFixture[str]
) -> None:
    packets = conversation([(True, REQUEST), (False, OK)], 40001, T0)
    path = tmp_path / "epb.pcapng"
    path.write_bytes(pcapng(packets, simple_from=None))
    (stats,) = analyze(str(path)).result.captures
    assert stats.untimed_packets == 0
    code = main(["verify", str(path), *token_kit.strict_rule(CLIENT)])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("PASS"), out
