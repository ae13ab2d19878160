"""The writer behind ``live --write FILE --ring N:MB``: one file equal to the stream, or a ring of
files that each read as a capture and together hold the stream's packets."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from analyzer.model import CaptureStats
from analyzer.sources.pcapfile import read_packets
from analyzer.sources.ringfile import RingWriter, WriteError

CAPTURES = Path(__file__).resolve().parents[1] / "captures"
SOURCES = ["messy.pcapng", "healthy-oauth-tls.pcapng", "small-basic.pcap"]


def feed(writer: RingWriter, data: bytes, seed: int = 7) -> None:
    """Write ``data`` in random chunks (single bytes among them), then close."""
    rng = random.Random(seed)
    at = 0
    while at < len(data):
        size = rng.choice((1, 3, rng.randint(1, 200), rng.randint(1, 5000)))
        writer.write(data[at : at + size])
        at += size
    writer.close()


def read(path: str | Path) -> list[tuple]:
    """Each packet as (time, ports, payload); the file must read without a warning."""
    stats = CaptureStats()
    got = [(p[0], p[3], p[5], bytes(p[9])) for p in read_packets(str(path), stats)]
    assert stats.warnings == []
    return got


def tiny(data: bytes, parts: int) -> float:
    """A ring file size (MB) that cuts ``data`` into about ``parts`` files."""
    return len(data) / parts / 1_000_000


@pytest.mark.parametrize("source", SOURCES)
def test_without_a_ring_the_file_is_the_stream(source: str, tmp_path: Path) -> None:
    data = (CAPTURES / source).read_bytes()
    out = tmp_path / source
    writer = RingWriter(str(out))
    feed(writer, data)
    assert writer.paths == [str(out)]
    assert out.read_bytes() == data


@pytest.mark.parametrize("source", SOURCES)
def test_ring_files_each_read_and_together_are_the_capture(source: str, tmp_path: Path) -> None:
    data = (CAPTURES / source).read_bytes()
    writer = RingWriter(str(tmp_path / source), megabytes=tiny(data, 6))
    feed(writer, data)
    assert len(writer.paths) >= 5
    union = []
    for path in writer.paths:
        head = Path(path).read_bytes()[:4]
        assert head == data[:4]  # every file starts with the stream's own header
        union += read(path)
    assert union == read(CAPTURES / source)


def test_ring_keeps_only_the_newest_files(tmp_path: Path) -> None:
    data = (CAPTURES / "messy.pcapng").read_bytes()
    writer = RingWriter(str(tmp_path / "keep.pcapng"), files=3, megabytes=tiny(data, 8))
    feed(writer, data)
    assert len(writer.paths) == 3
    assert sorted(str(p) for p in tmp_path.iterdir()) == writer.paths
    kept = [packet for path in writer.paths for packet in read(path)]
    whole = read(CAPTURES / "messy.pcapng")
    assert 0 < len(kept) < len(whole) and kept == whole[-len(kept) :]


def test_ring_files_are_named_as_dumpcap_names_them(tmp_path: Path) -> None:
    data = (CAPTURES / "small-basic.pcap").read_bytes()
    writer = RingWriter(str(tmp_path / "auth.pcap"), megabytes=tiny(data, 3))
    feed(writer, data)
    names = [Path(path).name for path in writer.paths]
    assert all(re.fullmatch(r"auth_\d{5}_\d{14}\.pcap", name) for name in names)
    assert [name[5:10] for name in names] == [f"{i:05d}" for i in range(1, len(names) + 1)]


def test_a_new_section_starts_a_file_with_its_own_interfaces(tmp_path: Path) -> None:
    """Two sections (different interfaces) in one stream: files after the second section's
    header carry its interfaces, not the first's."""
    first = (CAPTURES / "messy.pcapng").read_bytes()
    second = (CAPTURES / "healthy-oauth-tls.pcapng").read_bytes()
    both = tmp_path / "both.pcapng"
    both.write_bytes(first + second)
    writer = RingWriter(str(tmp_path / "ring.pcapng"), megabytes=tiny(first + second, 10))
    feed(writer, first + second)
    assert [packet for path in writer.paths for packet in read(path)] == read(both)


def test_memory_holds_at_most_one_unfinished_block(tmp_path: Path) -> None:
    data = (CAPTURES / "messy.pcapng").read_bytes()
    largest = 0
    at = 0
    while at < len(data):  # the largest block of the capture
        size = int.from_bytes(data[at + 4 : at + 8], "little")
        largest, at = max(largest, size), at + size
    writer = RingWriter(str(tmp_path / "m.pcapng"), megabytes=tiny(data, 4))
    for at in range(0, len(data), 500):
        writer.write(data[at : at + 500])
        assert writer.pending < largest
    writer.close()


def test_a_cut_stream_keeps_its_last_partial_block(tmp_path: Path) -> None:
    data = (CAPTURES / "messy.pcapng").read_bytes()[:-10]
    writer = RingWriter(str(tmp_path / "cut.pcapng"), megabytes=tiny(data, 3))
    feed(writer, data)
    assert sum(Path(path).stat().st_size for path in writer.paths) > len(data)  # + headers
    assert Path(writer.paths[-1]).read_bytes().endswith(data[-100:])


def test_write_errors_are_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder" / "x.pcapng"
    first = re.escape(str(missing.parent / "x_00001_"))
    with pytest.raises(WriteError, match=rf"^cannot write {first}\d{{14}}\.pcapng: No such file"):
        RingWriter(str(missing), files=2, megabytes=1)
    with pytest.raises(WriteError, match=f"^cannot write {re.escape(str(missing))}: No such file"):
        RingWriter(str(missing))
    full = RingWriter("/dev/full")
    with pytest.raises(WriteError, match=r"^cannot write /dev/full: No space left on device$"):
        full.write(b"\0" * 100)
    full.close()


def test_a_writer_that_failed_writes_nothing_more(tmp_path: Path) -> None:
    """A ring holding back an unfinished block whose file fails (the disk filled): closing it
    writes nothing more, so the run that reports the failure ends without a second one."""
    import io

    data = (CAPTURES / "messy.pcapng").read_bytes()
    ring = RingWriter(str(tmp_path / "r.pcapng"), megabytes=1)
    ring.write(data[:-10])  # the last block held back, unfinished
    assert ring.pending
    ring._fh.close()
    ring._fh = io.FileIO("/dev/full", "wb")  # the disk is full from here on
    with pytest.raises(WriteError, match="No space left on device"):
        ring.write(data[-10:] + data[:100])
    ring.close()


def test_a_stream_that_is_no_capture_cannot_be_cut(tmp_path: Path) -> None:
    writer = RingWriter(str(tmp_path / "x.pcapng"), megabytes=1)
    with pytest.raises(WriteError, match="not a pcap or pcapng stream"):
        writer.write(b"this is not a packet capture at all")
    writer.close()


def test_a_ring_needs_a_size(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs a file size"):
        RingWriter(str(tmp_path / "x.pcapng"), files=3)
    with pytest.raises(ValueError, match="positive size"):
        RingWriter(str(tmp_path / "x.pcapng"), files=0, megabytes=1)


def test_a_damaged_stream_is_named_where_it_breaks(tmp_path: Path) -> None:
    data = bytearray((CAPTURES / "messy.pcapng").read_bytes())
    second = int.from_bytes(data[4:8], "little")  # the first interface block starts here
    data[second + 4 : second + 8] = (13).to_bytes(4, "little")
    writer = RingWriter(str(tmp_path / "x.pcapng"), megabytes=1)
    writer.write(bytes(data[: second + 4]))  # the section header is written by now
    with pytest.raises(WriteError, match=f"a block of length 13 at byte {second}$"):
        writer.write(bytes(data[second + 4 :]))
    writer.close()
    assert Path(writer.paths[0]).read_bytes() == data  # kept as it came, once
