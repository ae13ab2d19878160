"""QUIC (HTTP/3) to a server in scope is a blind spot, as undecrypted TLS is.

A review (round 5) sent QUIC between the client and the Exchange server on UDP 443 beside one
good OAuth call over TCP: ``verify`` PASSed, though encrypted HTTP to the server went unread
(IIS on Windows Server 2022 serves HTTP/3, and browsers use it when offered). Real pcaps
written with scapy: QUIC long- and short-header datagrams (RFC 9000 17.2, 17.3) and a good
OAuth call from ``wire_kit``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import token_kit
from wire_kit import CLIENT, OK, SERVER, T0, conversation

from analyzer.cli import main

RULE = ["--client", CLIENT, "--server", "mail.contoso.com", "--path", "/EWS/"]
GOOD = (
    "POST /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nContent-Length: 0\r\n"
    f"Authorization: Bearer {token_kit.sfb_token()}\r\n\r\n"
).encode()
INITIAL = bytes([0xC3, 0, 0, 0, 1, 8]) + os.urandom(8) + bytes([0]) + os.urandom(40)  # v1
SHORT = bytes([0x43]) + os.urandom(40)  # after the handshake: a short header


def capture(tmp_path: Path, datagrams: list[tuple[str, str, int, int, bytes]]) -> str:
    """The good OAuth call over TCP, then UDP ``datagrams`` (src, dst, sport, dport, bytes)."""
    import scapy.all as scapy

    packets = conversation([(True, GOOD), (False, OK)], 40001, T0)
    for i, (src, dst, sport, dport, payload) in enumerate(datagrams):
        packet = scapy.Ether() / scapy.IP(src=src, dst=dst) / scapy.UDP(sport=sport, dport=dport)
        packet = packet / payload
        packet.time = T0 + 1 + i * 0.01
        packets.append(packet)
    path = tmp_path / "quic.pcap"
    scapy.wrpcap(str(path), packets)
    return str(path)


def verify(capsys: pytest.CaptureFixture[str], path: str) -> tuple[int, str]:
    code = main(["verify", path, *RULE])
    return code, capsys.readouterr().out


def test_quic_to_the_server_is_a_blind_spot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = [
        (CLIENT, SERVER, 50001, 443, INITIAL),
        (SERVER, CLIENT, 443, 50001, INITIAL),
        (CLIENT, SERVER, 50001, 443, SHORT),
        (CLIENT, SERVER, 50002, 443, SHORT),  # another flow of the same client: one line
    ]
    code, out = verify(capsys, capture(tmp_path, flow))
    assert code == 2 and out.startswith("INCONCLUSIVE"), out
    assert (
        f"blind spot: QUIC (HTTP/3) from 1 client to {SERVER}:443 not inspected: encrypted, "
        "and no key log applies; turn HTTP/3 off for the capture"
    ) in out


def test_a_capture_begun_after_the_handshake_shows_it_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only short headers, the server's first."""
    code, out = verify(capsys, capture(tmp_path, [(SERVER, CLIENT, 443, 50001, SHORT)]))
    assert code == 2 and "QUIC (HTTP/3) from 1 client" in out, out


@pytest.mark.parametrize(
    "datagram",
    [
        (CLIENT, SERVER, 50001, 443, bytes([0x00]) + os.urandom(40)),  # no fixed bit: not QUIC
        (CLIENT, SERVER, 50001, 4433, INITIAL),  # another port
        (CLIENT, "10.9.9.77", 50001, 443, INITIAL),  # another server, out of scope
        (CLIENT, SERVER, 50001, 443, b""),  # empty
    ],
)
def test_what_is_not_quic_to_the_server_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], datagram: tuple
) -> None:
    code, out = verify(capsys, capture(tmp_path, [datagram]))
    assert code == 0 and out.startswith("PASS"), out
