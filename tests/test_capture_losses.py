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
import json
import os
import signal
import struct
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from test_capture import block, epb, idb, option, shb
from test_concatenated_captures import BASIC, STRICT, first, pcap, second, verify, write
from wire_kit import T0

from analyzer.cli import main
from analyzer.model import CaptureStats
from analyzer.sources import live as live_source
from analyzer.sources.live import LiveCapture
from analyzer.sources.pcapfile import read_packets, read_stream

UNKNOWN = (1 << 64) - 1  # a counter its writer could not tell
WAIT = 30.0  # seconds: a hang guard only


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


def test_a_malformed_drop_counter_is_warned_about(tmp_path: Path) -> None:
    """A drop counter of 4 bytes, or one whose value runs past its block: unread, and said so
    (before, skipped without a word: review 7, I2 and I3); the well-formed one beside is
    counted."""
    ts = int(T0 * 1e6) + 10_000_000
    head = struct.pack("<III", 0, ts >> 32, ts & 0xFFFFFFFF)
    short = block(5, head + option(5, struct.pack("<I", 7)) + option(7, struct.pack("<Q", 3)))
    overrun = block(5, head + struct.pack("<HH", 5, 64) + struct.pack("<Q", 9))
    warning = (
        "an interface statistics block whose drop counter is malformed (not 8 bytes, or past "
        "the block): packets the capture dropped may not all be counted"
    )
    for name, after, dropped in (("short", short, 3), ("overrun", overrun, 0)):
        path = write(tmp_path, f"{name}.pcapng", pcapng(first(), after))
        stats = read(path)
        assert stats.warnings == [f"{path}: {warning}"], name
        assert stats.dropped == dropped, name
    assert read(write(tmp_path, "fine.pcapng", pcapng(first(), isb(0, ifdrop=2)))).warnings == []


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


# -- analyze - and live: a stream given up on, a capture that failed ---------------------------
class _Stdin:
    """Standard input that gives ``pieces`` one read each, a SIGINT (Ctrl-C) to this process
    after each of the first ``ctrl_c`` of them, then the end of the input (or, ``stuck``, the
    Ctrl-Cs and no end: the writer goes on)."""

    def __init__(self, *pieces: bytes, ctrl_c: int = 0, stuck: bool = False) -> None:
        given = list(pieces)
        sent = [0]

        class Raw(io.RawIOBase):
            def readable(self) -> bool:
                return True

            def readinto(self, buffer: Any) -> int:
                if sent[0] < ctrl_c and (stuck or len(given) < len(pieces)):
                    sent[0] += 1
                    os.kill(os.getpid(), signal.SIGINT)  # handled here, between two reads
                if not given:
                    assert not stuck, "read on after the second Ctrl-C"
                    return 0
                piece = given.pop(0)
                buffer[: len(piece)] = piece
                return len(piece)

        self.buffer = io.BufferedReader(Raw())

    def isatty(self) -> bool:
        return False


def test_analyze_stdin_given_up_by_a_second_ctrl_c_leaves_the_rest_unread(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The writer goes on after the first Ctrl-C (it did not get it): the second gives up."""
    data = pcap(tmp_path, "a.pcap", first())
    monkeypatch.setattr("sys.stdin", _Stdin(data, b"", ctrl_c=2, stuck=True))
    assert main(["analyze", "-"]) == 0  # a stream: Ctrl-C ends it with the summary
    captured = capsys.readouterr()
    assert "Verdicts" in captured.out
    assert (
        f"stdin: the bytes after offset {len(data):,} were not read (a second Ctrl-C gave up "
        "reading standard input): whatever they held is unknown"
    ) in captured.out
    assert "reading what standard input still holds to its end" in captured.err


def test_analyze_stdin_reads_to_the_end_after_one_ctrl_c(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """One Ctrl-C (in a terminal the writer gets it too, and closes the pipe once flushed):
    what the input still holds is read, the Basic logon after it included; no blind spot."""
    data = pcap(tmp_path, "a.pcap", first())
    half = len(data) // 2
    monkeypatch.setattr("sys.stdin", _Stdin(data[:half], data[half:], ctrl_c=1))
    assert main(["analyze", "-", "--format", "jsonl"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith(
        "oauth-analyzer: reading what standard input still holds to its end (Ctrl-C again "
        "gives up)\n"
    )
    assert "were not read" not in captured.err  # the summary
    whole = main(["analyze", str(tmp_path / "a.pcap"), "--format", "jsonl"])
    assert whole == 0 and capsys.readouterr().out == captured.out


class PipeCapture(LiveCapture):
    """A capture engine's stand-in: ``data`` on a pipe, as dumpcap or the scapy engine writes
    its stream, then the end of the stream (``end``) or none; the drops and the failure it
    reports. ``stopped`` is set by stop() (live's first Ctrl-C)."""

    engine = "scapy"

    def __init__(self, data: bytes, drops: int = 0, error: str | None = None, end: bool = True):
        self.interfaces = ["lo"]
        self.fd, self._out = os.pipe()
        self._drops, self._error = drops, error
        self.stopped = threading.Event()
        self._writer = threading.Thread(target=self._write, args=(data, end), daemon=True)
        self._writer.start()

    def _write(self, data: bytes, end: bool) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._out, view) :]
        if end:
            os.close(self._out)
            self._out = -1

    def stop(self) -> None:
        self.stopped.set()

    def close(self) -> None:
        self.stopped.set()
        self._writer.join(WAIT)
        for fd in (self.fd, self._out):
            if fd >= 0:
                os.close(fd)
        self.fd = self._out = -1

    def drops(self) -> dict[str, int]:
        return {"lo": self._drops}

    def received(self) -> dict[str, int]:
        return {}

    @property
    def error(self) -> str | None:
        return self._error


def live_verify(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    capture: PipeCapture,
    *options: str,
) -> tuple[int, dict]:
    """``live --verify --json`` (the strict rule) over ``capture``: exit status, verdict."""
    monkeypatch.setattr(live_source, "open_live", lambda *_args: capture)
    rows = tmp_path / "rows.jsonl"
    code = main(["live", "-i", "lo", "--verify", "--json", *STRICT, "--format", "jsonl",
                 "-o", str(rows), *options])  # fmt: skip
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(("told", "reported"), [(7, 7), (0, 9), (7, 9), (9, 0)])
def test_live_counts_each_dropped_packet_once(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    told: int,
    reported: int,
) -> None:
    """The engine reports its drops when it stops, and its stream's statistics blocks tell
    them too (``told``): the drops are the engine's count, or the stream's when it told more;
    never the two added."""
    capture = PipeCapture(pcapng(first(), isb(0, ifdrop=told)), drops=reported)
    code, data = live_verify(monkeypatch, capsys, tmp_path, capture)
    (rule,) = data["rules"]
    (spot,) = rule["coverage"]["not_inspected"]
    assert (code, spot["kind"], spot["count"]) == (2, "dropped-packets", max(told, reported))
    capture = PipeCapture(pcapng(first(), isb(0, ifdrop=told)), drops=reported)
    assert live_verify(monkeypatch, capsys, tmp_path, capture, "--partial")[0] == 0


def test_live_without_drops_or_failure_passes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    capture = PipeCapture(pcapng(first(), isb(0, ifdrop=0)))
    code, data = live_verify(monkeypatch, capsys, tmp_path, capture)
    assert (code, data["result"], data["rules"][0]["coverage"]["not_inspected"]) == (0, "PASS", [])


def test_live_capture_that_failed_leaves_the_rest_unread(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The engine ended by itself (dumpcap killed): what it had captured but not written is
    lost, whatever its stream held before."""
    data = pcapng(first())
    capture = PipeCapture(data, error="dumpcap was killed (signal 9)")
    code, result = live_verify(monkeypatch, capsys, tmp_path, capture)
    (rule,) = result["rules"]
    assert (code, kinds(rule)) == (2, ["unread-capture"])
    assert rule["coverage"]["blind_spots"] == [
        f"live:lo: the bytes after offset {len(data):,} were not read (the capture ended by "
        "itself: dumpcap was killed (signal 9)): whatever they held is unknown; repair the file "
        "(pcapfix) or capture again"
    ]
    capture = PipeCapture(data, error="dumpcap was killed (signal 9)")
    assert live_verify(monkeypatch, capsys, tmp_path, capture, "--partial")[0] == 0


def test_live_second_ctrl_c_leaves_the_rest_unread(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Ctrl-C once (the capture stops; its stream would be read to its end), then again before
    the stream ended: live gives up at once, and what it did not read may be anything."""
    # the compliant call, then a Basic logon's handshake: its request would have come next
    capture = PipeCapture(pcapng(first() + second()[:3]), end=False)
    rows = tmp_path / "rows.jsonl"

    def press_twice() -> None:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and "bearer" not in _text(rows):
            time.sleep(0.01)  # the compliant call was read: live is in its stream
        os.kill(os.getpid(), signal.SIGINT)
        if capture.stopped.wait(WAIT):
            os.kill(os.getpid(), signal.SIGINT)

    presser = threading.Thread(target=press_twice, daemon=True)
    presser.start()
    code, data = live_verify(monkeypatch, capsys, tmp_path, capture)
    presser.join(WAIT)
    (rule,) = data["rules"]
    assert (code, rule["result"], kinds(rule)) == (2, "INCONCLUSIVE", ["unread-capture"])
    assert "a second Ctrl-C gave up reading the capture" in rule["coverage"]["blind_spots"][0]
    assert rule["coverage"]["exchanges"] == 1  # what was read before is analysed


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def test_the_first_point_nothing_was_read_past_stands() -> None:
    """A record cut short, then the stream given up on further on (a second Ctrl-C): the blind
    spot names where reading first stopped."""
    stats = CaptureStats(path="stdin")
    stats.unread_after(1_000, "the file ends 8 bytes into a record")
    stats.unread_after(5_000, "a second Ctrl-C gave up reading standard input")
    assert (stats.unread_from, stats.unread_why) == (1_000, "the file ends 8 bytes into a record")
