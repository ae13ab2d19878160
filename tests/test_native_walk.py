"""Tests for the native record walk (analyzer/sources/_walk.c) and its reassembler contract.

The walk must change nothing but speed: every capture gives the same events and the same counters
with it as with the pure-Python reader (``OAUTH_ANALYZER_PURE_PYTHON=1``). Bulk captures come from
``bench/make_capture.py`` (small sizes), rewritten here into the other layouts the walk reads:
big-endian pcap, raw-IP links, pcapng with micro- and nanosecond clocks.
"""

from __future__ import annotations

import gzip
import json
import random
import shutil
import socket
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from shared_dir import PUBLIC, needs_public

from analyzer.engine import EventCollector, analyze_paths
from analyzer.flows import tcp
from analyzer.model import CaptureStats, to_dict
from analyzer.sources.pcapfile import read_packets

REPO = Path(__file__).resolve().parents[1]
CAPTURES = REPO / "captures"

needs_native = pytest.mark.skipif(tcp.GrantTable is None, reason="native walk not built")


def _analyze(
    path: Path, pure: bool, monkeypatch: pytest.MonkeyPatch, keylog: Path | None = None
) -> tuple[list, list]:
    """(events as dicts, capture counters and TLS connections) of one capture in one mode."""
    with monkeypatch.context() as m:
        m.setenv(tcp.PURE_PYTHON_ENV, "1" if pure else "0")
        result = analyze_paths([str(path)], tls_keylog=str(keylog) if keylog else None)
    events = [to_dict(e, reveal_secrets=True) for e in result.events]
    counters = [to_dict(s) for s in result.captures] + [to_dict(t) for t in result.tls]
    return events, counters


def _same_both_ways(
    path: Path, monkeypatch: pytest.MonkeyPatch, keylog: Path | None = None
) -> list:
    native = _analyze(path, False, monkeypatch, keylog)
    pure = _analyze(path, True, monkeypatch, keylog)
    assert native[1] == pure[1]
    assert native[0] == pure[0]
    return native[0]


# --------------------------------------------------------------------------------------------
# Captures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bulk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~12 MB of keep-alive bulk transfer with 80 auth exchanges (classic little-endian pcap)."""
    out = tmp_path_factory.mktemp("bulk") / "bulk.pcap"
    make = [sys.executable, str(REPO / "bench" / "make_capture.py"), str(out)]
    subprocess.run(
        [*make, "--size-gb", "0.012", "--auth", "80", "--seed", "7"],
        check=True,
        capture_output=True,
    )
    return out


def _records(path: Path) -> tuple[bytes, list[tuple[int, int, int, int, bytes]]]:
    data = path.read_bytes()
    assert data[:4] == b"\xd4\xc3\xb2\xa1"
    out, pos = [], 24
    while pos + 16 <= len(data):
        s, us, caplen, olen = struct.unpack_from("<IIII", data, pos)
        out.append((s, us, caplen, olen, data[pos + 16 : pos + 16 + caplen]))
        pos += 16 + caplen
    return data[:24], out


def _big_endian(src: Path, dst: Path) -> Path:
    head, records = _records(src)
    fields = struct.unpack("<IHHiIII", head)
    parts = [struct.pack(">IHHiIII", *fields)]
    for s, us, caplen, olen, frame in records:
        parts.append(struct.pack(">IIII", s, us, caplen, olen) + frame)
    dst.write_bytes(b"".join(parts))
    return dst


def _raw_ip(src: Path, dst: Path) -> Path:
    """The same packets on a raw-IP link (linktype 101): Ethernet headers dropped."""
    head, records = _records(src)
    magic, major, minor, zone, sig, snap, _link = struct.unpack("<IHHiIII", head)
    parts = [struct.pack("<IHHiIII", magic, major, minor, zone, sig, snap, 101)]
    for s, us, caplen, olen, frame in records:
        parts.append(struct.pack("<IIII", s, us, caplen - 14, olen - 14) + frame[14:])
    dst.write_bytes(b"".join(parts))
    return dst


def _pcapng(src: Path, dst: Path, nanoseconds: bool) -> Path:
    """The same packets as pcapng enhanced packet blocks, interleaved with other blocks."""
    _head, records = _records(src)
    parts = [struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28)]
    resol = struct.pack("<HHB3x", 9, 1, 9 if nanoseconds else 6) + struct.pack("<HH", 0, 0)
    idb = struct.pack("<HHI", 1, 0, 0) + resol
    parts.append(struct.pack("<II", 1, 12 + len(idb)) + idb + struct.pack("<I", 12 + len(idb)))
    for i, (s, us, caplen, _olen, frame) in enumerate(records):
        ticks = (s * 1_000_000 + us) * (1000 if nanoseconds else 1)
        pad = b"\0" * (-caplen % 4)
        blen = 32 + caplen + len(pad)
        body = struct.pack("<IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, caplen, caplen)
        parts.append(struct.pack("<II", 6, blen) + body + frame + pad + struct.pack("<I", blen))
        if i % 500 == 250:  # an unknown block now and then: the walk stops, Python skips it
            parts.append(struct.pack("<III", 0x0BAD, 16, 0) + struct.pack("<I", 16))
    dst.write_bytes(b"".join(parts))
    return dst


def _gzipped(src: Path, dst: Path) -> Path:
    dst.write_bytes(gzip.compress(src.read_bytes(), compresslevel=1))
    return dst


def _truth(path: Path) -> Counter:
    truth = json.loads(Path(str(path) + ".truth.json").read_text())
    return Counter(truth["cred_fps"])


# --------------------------------------------------------------------------------------------
# Same events, same counters, with and without the walk
# --------------------------------------------------------------------------------------------


@needs_native
@pytest.mark.parametrize(
    "layout", ["pcap", "big-endian", "raw-ip", "pcapng-us", "pcapng-ns", "gzip"]
)
def test_bulk_capture_same_with_and_without_walk(
    bulk: Path, layout: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = {
        "pcap": lambda: bulk,
        "big-endian": lambda: _big_endian(bulk, tmp_path / "be.pcap"),
        "raw-ip": lambda: _raw_ip(bulk, tmp_path / "raw.pcap"),
        "pcapng-us": lambda: _pcapng(bulk, tmp_path / "us.pcapng", nanoseconds=False),
        "pcapng-ns": lambda: _pcapng(bulk, tmp_path / "ns.pcapng", nanoseconds=True),
        "gzip": lambda: _gzipped(bulk, tmp_path / "bulk.pcap.gz"),  # read in chunks, not mapped
    }[layout]()
    events = _same_both_ways(path, monkeypatch)
    fps = Counter(e["cred_fp"] for e in events if e["cred_fp"] and e["scheme"] != "none")
    assert fps == _truth(bulk)


class _CountingReassembler(tcp.TcpReassembler):
    """A reassembler that counts the packets absorbed in Python (``absorb`` returning True)."""

    def __init__(self, stats: CaptureStats) -> None:
        super().__init__(EventCollector().connection, stats)
        self.absorbed_in_python = 0

    def absorb(self, key: tuple, seq: int, ack: int, flags: int, size: int, ts: float) -> bool:
        taken = super().absorb(key, seq, ack, flags, size, ts)
        self.absorbed_in_python += taken
        return taken


def _reading(path: Path, pure: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int, int]:
    """(packets read, packets handed to the reassembler, packets absorbed in Python)."""
    with monkeypatch.context() as m:
        m.setenv(tcp.PURE_PYTHON_ENV, "1" if pure else "0")
        stats = CaptureStats()
        reassembler = _CountingReassembler(stats)
    n = 0
    for packet in read_packets(str(path), stats, reassembler):
        n += 1
        reassembler.run([packet])
    reassembler.flush()
    return stats.packets, n, reassembler.absorbed_in_python


@needs_native
def test_walk_absorbs_the_bulk(bulk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both modes hand the reassembler the same packets; with the walk, the bulk body segments
    and bare ACKs are absorbed in C, not one by one in Python."""
    packets, native, native_in_python = _reading(bulk, False, monkeypatch)
    _, pure, pure_in_python = _reading(bulk, True, monkeypatch)
    assert native == pure
    assert packets > 12_000
    assert native < packets // 4  # bulk body segments and bare ACKs never surface
    assert pure_in_python > packets // 2
    assert native_in_python < packets // 10


@needs_native
@pytest.mark.parametrize(
    "name",
    sorted(p.name for p in CAPTURES.iterdir() if p.suffix in (".pcap", ".pcapng")),
)
def test_bundled_captures_same_with_and_without_walk(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = CAPTURES / name
    keylog = path.with_suffix(".keys")
    if keylog.exists():  # TLS: undecrypted the consumers give up (dead grants); then decrypted
        assert not _same_both_ways(path, monkeypatch)
        if shutil.which("tshark") is None:
            pytest.skip("tshark is needed to decrypt")
        assert _same_both_ways(path, monkeypatch, keylog)
    else:
        assert _same_both_ways(path, monkeypatch)


@needs_native
@needs_public
def test_public_captures_same_with_and_without_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    names = sorted(
        p.name for p in PUBLIC.iterdir() if p.suffix in (".pcap", ".pcapng", ".cap", ".gz")
    )
    assert names
    for name in names:
        _same_both_ways(PUBLIC / name, monkeypatch)


# --------------------------------------------------------------------------------------------
# The grant table
# --------------------------------------------------------------------------------------------


def _key(i: int) -> tuple[bytes, int, bytes, int]:
    return (socket.inet_aton(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"), i % 60000 + 1024,
            socket.inet_aton("192.0.2.7"), 443)  # fmt: skip


def test_a_native_walk_built_for_other_code_is_not_used() -> None:
    """A build older than the code (take() giving back four values, not five) crashed verify
    mid-capture ("not enough values to unpack"): the pure-Python reader serves instead."""
    from types import SimpleNamespace

    assert tcp.native_grant_table(SimpleNamespace(GrantTable=dict)) is None  # no ABI: old
    assert tcp.native_grant_table(SimpleNamespace(GrantTable=dict, ABI=1)) is None
    assert tcp.native_grant_table(SimpleNamespace(GrantTable=dict, ABI=tcp.WALK_ABI)) is dict


@needs_native
def test_the_built_walk_speaks_this_codes_interface() -> None:
    from analyzer.sources import _walk

    assert _walk.ABI == tcp.WALK_ABI and tcp.GrantTable is _walk.GrantTable


@needs_native
def test_grant_table_behaves_like_a_dict() -> None:
    """Random grants and takes (through growth and deletions mid-run) against a dict model."""
    table, model = tcp.GrantTable(), {}
    rng = random.Random(5)
    for step in range(20_000):
        key = _key(rng.randrange(3000))
        if rng.random() < 0.55:
            seq, skip, dead = rng.randrange(1 << 32), rng.randrange(1 << 62), rng.random() < 0.2
            table.grant(*key, seq, skip, dead)
            model[key] = (seq, 0, None, dead, None)
        else:
            assert table.take(*key) == model.pop(key, None), step
        assert len(table) == len(model)
    assert dict(table.take_all()) == model
    assert len(table) == 0
    assert table.take_all() == []


@needs_native
def test_grant_table_refuses_what_it_cannot_hold() -> None:
    table = tcp.GrantTable()
    v6 = socket.inet_pton(socket.AF_INET6, "2001:db8::1")
    with pytest.raises(ValueError):
        table.grant(v6, 1, v6, 2, 0, 0, False)
    assert table.take(v6, 1, v6, 2) is None  # never granted, so nothing to take
    with pytest.raises(TypeError):
        table.grant(b"\1\2\3\4", 1)
    with pytest.raises(OverflowError):
        table.grant(b"\1\2\3\4", 1, b"\1\2\3\5", 2, -1, 0, False)
    with pytest.raises(TypeError):
        tcp.GrantTable(1)


def _frame(seq: int, payload: bytes, flags: int = 0x10) -> bytes:
    key = _key(1)
    tcp_head = struct.pack(">HHIIBBHHH", key[1], key[3], seq, 1, 0x50, flags, 65535, 0, 0)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0x4000, 64, 6, 0, key[0],
                     key[2])  # fmt: skip
    return b"\0" * 12 + b"\x08\x00" + ip + tcp_head + payload


def _pcap_records(frames: list[bytes]) -> bytes:
    return b"".join(
        struct.pack("<IIII", 1_700_000_000, i, len(f), len(f)) + f for i, f in enumerate(frames)
    )


@needs_native
def test_walk_stops_where_python_must_look() -> None:
    table = tcp.GrantTable()
    key = _key(1)
    body = _pcap_records(
        [
            _frame(100, b"x" * 10),  # absorbed: 10 of 25 skipped bytes
            _frame(110, b""),  # a bare ACK: absorbed
            _frame(110, b"y" * 15),  # absorbed: the rest of the skip
            _frame(125, b"GET / HTTP/1.1\r\n\r\n"),  # bytes the consumer wants: stop here
        ]
    )
    assert table.walk_pcap(body, 0, len(body), False, 14, 1e6) == (0, 0)  # no grants yet
    table.grant(*key, 100, 25, False)
    stop = 3 * 16 + len(_frame(0, b"x" * 10)) + len(_frame(0, b"")) + len(_frame(0, b"y" * 15))
    assert table.walk_pcap(body, 0, len(body), False, 14, 1e6) == (stop, 3)
    # the latest acknowledgement number absorbed comes back (what the peer's bytes reached)
    assert table.take(*key) == (125, 25, 1_700_000_000 + 2 / 1e6, False, 1)
    table.grant(*key, 100, 10, False)  # a segment without the ACK flag tells of none
    no_ack = _pcap_records([_frame(100, b"x" * 10, flags=0)])
    assert table.walk_pcap(no_ack, 0, len(no_ack), False, 14, 1e6) == (len(no_ack), 1)
    assert table.take(*key) == (110, 10, 1_700_000_000.0, False, None)
    # A limit inside the second record stops the walk after the first.
    table.grant(*key, 100, 25, False)
    first = 16 + len(_frame(0, b"x" * 10))
    assert table.walk_pcap(body, 0, first + 20, False, 14, 1e6) == (first, 1)
    # Out of order, a FIN, or a wrong sequence number: not absorbed.
    for frame in (_frame(999, b"z"), _frame(110, b"", flags=0x11)):
        rec = _pcap_records([frame])
        assert table.walk_pcap(rec, 0, len(rec), False, 14, 1e6) == (0, 0)


@needs_native
def test_walk_survives_hostile_input() -> None:
    """Garbage, lies about lengths, positions outside the buffer: a stop, never a crash."""
    table = tcp.GrantTable()
    table.grant(*_key(1), 100, 1 << 40, False)
    rng = random.Random(9)
    good = _pcap_records([_frame(100 + 10 * i, b"x" * 10) for i in range(20)])
    for _ in range(3000):
        data = bytearray(good)
        for _ in range(rng.randrange(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        cut = bytes(data[: rng.randrange(len(data) + 1)])
        pos = rng.choice([0, rng.randrange(-50, len(cut) + 50)])
        lim = rng.choice([len(cut), rng.randrange(-10, len(cut) + 5000)])
        end, walked = table.walk_pcap(cut, pos, lim, rng.random() < 0.5, 14, 1e6)
        assert walked == 0 or pos <= end <= len(cut)
        end, walked, _, _ = table.walk_pcapng(cut, pos, lim, False, 0, rng.choice([0, 14]), 10**6)
        assert walked == 0 or pos <= end <= len(cut)
        table.take_all()
        table.grant(*_key(1), 100, 1 << 40, False)


@needs_native
def test_pcapng_timestamps_round_like_python() -> None:
    """The walk's ticks / units is Python's correctly rounded int / int, whatever the sizes."""
    rng = random.Random(11)
    frame = _frame(100, b"")
    units = [10**6, 10**9, 10**7, 10**12, 2**32, 2**50, 2**60, 3, 10**19]
    cases = [(rng.randrange(1 << 64), rng.choice(units)) for _ in range(4000)]
    cases += [((1_700_000_000 * 10**9 + i) * 1, 10**9) for i in range(2000)]
    cases += [(2**53 + 1, 1), (2**64 - 1, 3), (0, 10**9), (1, 10**19)]
    table, done = tcp.GrantTable(), 0
    for ticks, div in cases:
        table.grant(*_key(1), 100, 0, False)
        body = struct.pack("<IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame))
        block = struct.pack("<II", 6, 32 + len(frame)) + body + frame + struct.pack("<I", 0)
        _, walked, _, _ = table.walk_pcapng(block, 0, len(block), False, 0, 14, div)
        got = table.take(*_key(1))
        done += walked
        if walked:  # values it cannot do exactly stop the walk (Python reads them instead)
            assert got[2] == ticks / div, (ticks, div)
        else:
            assert ticks // div == 0 or ticks // div >= 1 << 53
    assert done > 5000


def _mangled(records: list, rng: random.Random) -> list:
    """The records with some dropped, duplicated, swapped and bit-flipped (in their headers)."""
    out = []
    for rec in records:
        roll = rng.random()
        if roll < 0.01:
            continue  # lost
        if roll < 0.02:
            out.append(rec)  # retransmitted
        out.append(rec)
    for _ in range(len(out) // 100):  # reordered
        i = rng.randrange(len(out) - 1)
        out[i], out[i + 1] = out[i + 1], out[i]
    for _ in range(len(out) // 200):  # damaged: a byte of the IP or TCP header
        i = rng.randrange(len(out))
        s, us, caplen, olen, frame = out[i]
        frame = bytearray(frame)
        frame[rng.randrange(14, min(len(frame), 66))] ^= 1 << rng.randrange(8)
        out[i] = (s, us, caplen, olen, bytes(frame))
    return out


@needs_native
@pytest.mark.parametrize("seed", range(6))
def test_damaged_bulk_capture_same_with_and_without_walk(
    bulk: Path, seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loss, retransmission, reordering and damaged headers: the walk stops where it must and
    the events and counters match the pure-Python reader's exactly."""
    head, records = _records(bulk)
    records = _mangled(records, random.Random(seed))
    path = tmp_path / "damaged.pcap"
    path.write_bytes(
        head + b"".join(struct.pack("<IIII", s, us, c, o) + f for s, us, c, o, f in records)
    )
    assert _same_both_ways(path, monkeypatch)
