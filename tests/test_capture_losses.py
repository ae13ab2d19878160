"""What the capture lost is a blind spot for every verdict, never only a warning.

A review (round 6, streaming paths) found four false PASSes, all the same shape: the tool knew
packets had been lost, said so in a warning, and ``verify`` answered PASS over them.

- Packets dropped by the capture: ``live --verify`` whose dumpcap dropped thousands of packets
  passed with a "packets dropped" warning; a pcapng whose interface statistics block records
  drops (``isb_ifdrop``, as dumpcap, ``live --write`` and the scapy engine write it) passed
  without a word, the reader never looked at those blocks.
- A second Ctrl-C gave up reading ``live``'s capture and still passed.
- dumpcap killed mid-capture (what it had captured but not written is lost) passed.
- A file or stream cut inside a record's header passed, while one cut inside the packet's
  data was INCONCLUSIVE.

Dropped packets are now a ``dropped-packets`` blind spot, the rest are ``unread-capture`` ones:
no addresses nor ports, so every scope covers them, and ``verify`` is INCONCLUSIVE unless
``--partial``. The captures are real packets written with scapy, their pcapng blocks written
here; live's stream comes from a capture engine stand-in on a pipe (the engine's own behaviour,
dumpcap killed by a signal, is in test_live_command.py).
"""

from __future__ import annotations

import gzip
import io
import struct
from pathlib import Path
from typing import Any

import pytest
from test_capture import block, epb, idb, option, shb
from test_concatenated_captures import BASIC, STRICT, first, pcap, second, verify, write
from wire_kit import T0

from analyzer.cli import main
from analyzer.model import CaptureStats
from analyzer.sources.pcapfile import read_packets, read_stream

UNKNOWN = (1 << 64) - 1  # a counter its writer could not tell


def isb(ifid: int, ifdrop: int | None = None, osdrop: int | None = None, order: str = "<") -> bytes:
    """An interface statistics block with isb_ifrecv and the drop counters given."""
    ts = int(T0 * 1e6) + 10_000_000
    opts = option(4, struct.pack(order + "Q", 1000), order)
    for code, value in ((5, ifdrop), (7, osdrop)):
        if value is not None:
            opts += option(code, struct.pack(order + "Q", value), order)
    head = struct.pack(order + "III", ifid, ts >> 32, ts & 0xFFFFFFFF)
    return block(5, head + opts + option(0, b"", order), order)


def pcapng(packets: list[Any], *after: bytes) -> bytes:
    """One section, one Ethernet interface (microseconds), the packets, then ``after``."""
    blocks = [epb(0, round(float(p.time) * 1e6), bytes(p)) for p in packets]
    return shb() + idb(1) + b"".join(blocks) + b"".join(after)


def streamed(data: bytes, chunk: int = 7) -> CaptureStats:
    """The stats of ``data`` read as a stream arriving ``chunk`` bytes at a time."""

    class Trickle(io.RawIOBase):
        pos = 0

        def readable(self) -> bool:
            return True

        def read1(self, size: int = -1) -> bytes:
            piece = data[self.pos : self.pos + chunk]
            self.pos += len(piece)
            return piece

        read = read1

    stats = CaptureStats()
    for _ in read_stream(Trickle(), "stdin", stats):  # type: ignore[arg-type]
        pass
    return stats


def read(path: str) -> CaptureStats:
    stats = CaptureStats()
    for _ in read_packets(path, stats):
        pass
    return stats


def kinds(rule: dict) -> list[str]:
    return sorted(n["kind"] for n in rule["coverage"]["not_inspected"])


# -- dropped packets told by a pcapng's interface statistics ---------------------------------
def test_drops_a_statistics_block_tells_are_a_blind_spot_for_every_scope(
    tmp_path: Path, reader: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only a compliant call was kept; 5,000 packets were not: INCONCLUSIVE, --partial PASS."""
    path = write(tmp_path, "drops.pcapng", pcapng(first(), isb(0, ifdrop=5000)))
    code, data = verify(capsys, path)
    (rule,) = data["rules"]
    assert (code, rule["result"], kinds(rule)) == (2, "INCONCLUSIVE", ["dropped-packets"])
    (spot,) = rule["coverage"]["not_inspected"]
    assert (spot["client"], spot["server"], spot["count"]) == (":0", ":0", 5000)
    assert rule["coverage"]["blind_spots"] == [
        f"{path}: 5,000 packets dropped by the capture (its buffers overflowed: the reader or "
        "the disk fell behind): whatever they held is unknown; give the capture a bigger buffer "
        "(dumpcap -B), a capture filter that keeps only the servers in question, or a faster "
        "disk, and capture again"
    ]
    assert main(["verify", path, *STRICT, "--partial"]) == 0
    capsys.readouterr()
    # the same capture whose statistics say nothing was dropped, or that has none: PASS
    for after in (isb(0, ifdrop=0, osdrop=0), isb(0, ifdrop=UNKNOWN), b""):
        path = write(tmp_path, "kept.pcapng", pcapng(first(), after))
        assert verify(capsys, path)[0] == 0


def test_each_drop_is_counted_once(tmp_path: Path, reader: str) -> None:
    """The counters are cumulative: an interface's later block repeats its earlier drops.
    Interfaces, and sections (interfaces are numbered per section), add up; isb_osdrop counts
    too; a counter its writer could not tell (all ones) counts nothing. A stream arriving a
    few bytes at a time counts the same."""
    section = pcapng(
        first(),
        isb(0, ifdrop=10),
        isb(0, ifdrop=25, osdrop=UNKNOWN),
        isb(0, ifdrop=20),  # never fewer than told before
    )
    big = shb(">") + idb(1, ">") + idb(1, ">") + isb(0, ifdrop=2, order=">")
    big += isb(1, osdrop=3, order=">")
    data = section + big
    assert read(write(tmp_path, "twice.pcapng", data)).dropped == 25 + 5
    assert streamed(data).dropped == 30


# -- a record cut by the end of the file or stream -------------------------------------------
RECORD = 16  # a pcap record's header
HEADERS = 14 + 20 + 20  # Ethernet, IPv4, TCP


@pytest.mark.parametrize(
    ("kept", "blind"),
    [
        (8, "unread-capture"),  # inside the record's header: the packet is not even begun
        (RECORD + 14 + 6, "unread-capture"),  # inside its IP header: which connection, unknown
        (RECORD + HEADERS + 10, "request-lost"),  # inside its data: the connection's head lost
    ],
)
def test_a_record_cut_anywhere_is_not_a_pass(
    tmp_path: Path, reader: str, capsys: pytest.CaptureFixture[str], kept: int, blind: str
) -> None:
    """The file ends ``kept`` bytes into the record of the packet holding a Basic logon (in
    scope): whatever the cut, the verdict cannot PASS. Cut before its headers were read, the
    packet is an unread-capture blind spot from its record on (every scope); cut after, its
    connection is known and the request head begun there is lost."""
    logon = second()[:4]  # the handshake, then the Basic request
    assert bytes(logon[-1].payload.payload.payload) == BASIC
    whole = pcap(tmp_path, "whole.pcap", first() + logon)
    start = len(whole) - RECORD - len(bytes(logon[-1]))
    path = write(tmp_path, "cut.pcap", whole[: start + kept])
    code, data = verify(capsys, path)
    (rule,) = data["rules"]
    assert (code, rule["result"], kinds(rule)) == (2, "INCONCLUSIVE", [blind])
    assert main(["verify", path, *STRICT, "--partial"]) == 0
    capsys.readouterr()
    unread = start if blind == "unread-capture" else None
    assert read(path).unread_from == unread
    assert streamed(whole[: start + kept]).unread_from == unread
    if unread is not None:
        assert rule["coverage"]["blind_spots"] == [
            f"{path}: the bytes after offset {start:,} were not read (the file ends {kept} "
            "bytes into a record): whatever they held is unknown; repair the file (pcapfix) or "
            "capture again"
        ]


@pytest.mark.parametrize("kept", [4, 12, 40])
def test_a_pcapng_block_cut_anywhere_is_a_blind_spot(
    tmp_path: Path, reader: str, capsys: pytest.CaptureFixture[str], kept: int
) -> None:
    data = pcapng(first() + second()[:4])
    start = len(data) - len(epb(0, 0, bytes(second()[3])))
    path = write(tmp_path, "cut.pcapng", data[: start + kept])
    code, result = verify(capsys, path)
    assert (code, kinds(result["rules"][0])) == (2, ["unread-capture"])
    assert read(path).unread_from == start
    assert streamed(data[: start + kept], chunk=5).unread_from == start


def test_gzip_data_that_cannot_be_decompressed_leaves_the_rest_unread(
    tmp_path: Path, reader: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The records before it are whole; what the damaged member held is unknown."""
    good = pcap(tmp_path, "a.pcap", first())
    path = write(tmp_path, "bad.pcap.gz", gzip.compress(good), b"\x1f\x8b\x08junk" * 8)
    code, data = verify(capsys, path)
    assert (code, kinds(data["rules"][0])) == (2, ["unread-capture"])
    assert read(path).unread_from == len(good)
