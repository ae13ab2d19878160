"""Captures appended to one another are read whole: ``cat a.pcap b.pcap`` (or ``tcpdump -w - >>
trace.pcap`` run twice) leaves the second file's header where a record should start.

A review found ``verify`` passing such a file: the reader took the second header for a record
claiming an impossible length, warned "stopped reading this file" and never read the second
capture, which held an NTLM exchange in scope. The reader now knows a pcap header (either byte
order, micro- or nanoseconds) or a pcapng section header there and reads on with its byte order,
link type, snap length and time resolution - with the native walk and with the pure-Python
reader, from a mapped file and from a stream read in chunks of any size.

The captures are real packets written with scapy, joined by plain byte concatenation; the
counts asserted are exactly those that went in.
"""

from __future__ import annotations

import base64
import gzip
import json
import struct
from pathlib import Path
from typing import Any

import pytest
import token_kit
from wire_kit import CLIENT, T0, conversation

from analyzer import analyze
from analyzer.cli import main
from analyzer.sources import pcapfile

STRICT = token_kit.strict_rule(CLIENT)
BEARER = (
    "POST /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\n"
    f"Authorization: Bearer {token_kit.sfb_token()}\r\nContent-Length: 0\r\n\r\n"
).encode()
PASSWORD = base64.b64encode(b"CONTOSO\\svc-sfb:P@ssw0rd").decode()
BASIC = (
    "POST /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\n"
    f"Authorization: Basic {PASSWORD}\r\nContent-Length: 0\r\n\r\n"
).encode()
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
# a body of many segments, which the native walk absorbs right up to the next file's header
BIG = b"HTTP/1.1 200 OK\r\nContent-Length: 30000\r\n\r\n" + b"x" * 30000


def first() -> list[Any]:
    """The first capture: an OAuth call to EWS answered with a long body (17 packets)."""
    return conversation([(True, BEARER), (False, BIG)], 40001, T0)


def second(t0: float = T0 + 5) -> list[Any]:
    """The appended capture: a Basic logon to EWS in scope (7 packets)."""
    return conversation([(True, BASIC), (False, OK)], 40002, t0)


def pcap(tmp_path: Path, name: str, packets: list[Any], **options: Any) -> bytes:
    """The bytes of a pcap of ``packets`` (scapy's PcapWriter: endianness, nano, linktype)."""
    from scapy.utils import PcapWriter

    path = tmp_path / name
    with PcapWriter(str(path), **options) as writer:
        for packet in packets:
            writer.write(packet)
    return path.read_bytes()


def pcapng(tmp_path: Path, name: str, packets: list[Any]) -> bytes:
    from scapy.utils import PcapNgWriter

    path = tmp_path / name
    with PcapNgWriter(str(path)) as writer:
        for packet in packets:
            writer.write(packet)
    return path.read_bytes()


def raw_ip(packets: list[Any]) -> list[Any]:
    """The same packets without their Ethernet header (a raw-IP link)."""
    out = []
    for packet in packets:
        inner = packet.payload.copy()
        inner.time = packet.time
        out.append(inner)
    return out


def write(tmp_path: Path, name: str, *parts: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(b"".join(parts))
    return str(path)


def verify(capsys: pytest.CaptureFixture[str], path: str) -> tuple[int, dict]:
    code = main(["verify", path, *STRICT, "--json"])
    return code, json.loads(capsys.readouterr().out)


def read(path: str) -> tuple[list[Any], Any]:
    result = analyze(path, keys=[str(token_kit.KEYS_DIR / "sfb.cert.pem")]).result
    (stats,) = result.captures
    return result.events, stats


def alone(tmp_path: Path, name: str, data: bytes) -> list[tuple[str, int, int, float]]:
    """(scheme, client port, frame, time) of each exchange of one capture read by itself."""
    events, _ = read(write(tmp_path, name, data))
    return [(e.scheme, e.client_port, e.frame, e.ts) for e in events]


def assert_whole(tmp_path: Path, *parts: bytes) -> Any:
    """The captures ``parts`` joined are read whole: each one's exchanges as when read alone,
    frames numbered on across them, every packet counted, and nothing warned but the
    appending."""
    expected = []
    frames = 0
    for i, part in enumerate(parts):
        events, stats = read(write(tmp_path, f"part{i}", part))
        expected += [(e.scheme, e.client_port, frames + e.frame, e.ts) for e in events]
        frames += stats.packets
    events, stats = read(write(tmp_path, "joined", *parts))
    got = [(e.scheme, e.client_port, e.frame, e.ts) for e in events]
    assert got == expected
    assert stats.packets == stats.tcp == frames
    assert [w.split(": ", 1)[1][:24] for w in stats.warnings] == ["another capture appended"]
    return stats


def test_the_first_capture_alone_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], reader: str
) -> None:
    path = write(tmp_path, "a.pcap", pcap(tmp_path, "a0.pcap", first()))
    code, _ = verify(capsys, path)
    assert code == 0
    events, stats = read(path)
    assert len(events) == 1 and stats.packets == len(first()) and stats.warnings == []


@pytest.mark.parametrize(
    ("first_options", "second_options"),
    [
        ({}, {}),  # little-endian microseconds twice: cat of two tcpdump files
        ({"endianness": "<"}, {"endianness": ">"}),
        ({"endianness": ">"}, {"endianness": "<"}),
        ({"endianness": ">"}, {"endianness": ">", "nano": True}),
        ({"endianness": "<", "nano": True}, {"endianness": "<"}),
        ({}, {"endianness": ">", "nano": True}),
    ],
)
def test_pcap_after_pcap_in_any_byte_order_and_resolution(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    reader: str,
    first_options: dict,
    second_options: dict,
) -> None:
    a = pcap(tmp_path, "a.pcap", first(), **first_options)
    b = pcap(tmp_path, "b.pcap", second(), **second_options)
    stats = assert_whole(tmp_path, a, b)
    assert stats.link_types == {1: len(first()) + len(second())}
    assert stats.warnings == [
        f"{stats.path}: another capture appended at offset {len(a)} (its own file header, as "
        "cat or tcpdump -w - >> leave): read on with its header; Wireshark stops there"
    ]
    code, out = verify(capsys, stats.path)
    assert code == 1, out  # the appended Basic logon is judged: not OAuth
    (rule,) = out["rules"]
    assert [v["kind"] for v in rule["violations"]] == ["not-oauth"]
    assert rule["coverage"]["exchanges"] == 2


def test_the_appended_capture_brings_its_link_type(tmp_path: Path, reader: str) -> None:
    """Ethernet, then raw IP (link type 101) in the other byte order, then Ethernet again."""
    third = conversation([(True, BEARER), (False, OK)], 40003, T0 + 9)
    a = pcap(tmp_path, "a.pcap", first())
    b = pcap(tmp_path, "b.pcap", raw_ip(second()), linktype=101, endianness=">")
    c = pcap(tmp_path, "c.pcap", third)
    stats = assert_whole(tmp_path, a, b, c)
    assert stats.link_types == {1: len(first()) + len(third), 101: len(second())}


def test_a_pcapng_appended_to_a_pcap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], reader: str
) -> None:
    a = pcap(tmp_path, "a.pcap", first(), endianness=">")
    stats = assert_whole(tmp_path, a, pcapng(tmp_path, "b.pcapng", second()))
    assert verify(capsys, stats.path)[0] == 1


def test_a_pcap_appended_to_a_pcapng(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], reader: str
) -> None:
    a = pcapng(tmp_path, "a.pcapng", first())
    stats = assert_whole(tmp_path, a, pcap(tmp_path, "b.pcap", second(), endianness=">", nano=True))
    assert verify(capsys, stats.path)[0] == 1


def test_pcap_pcapng_pcap_pcapng(tmp_path: Path, reader: str) -> None:
    """The formats alternate: each switch back and forth keeps every count."""
    parts = [
        pcap(tmp_path, "1.pcap", first()),
        pcapng(tmp_path, "2.pcapng", second()),
        pcap(tmp_path, "3.pcap", conversation([(True, BEARER), (False, OK)], 40003, T0 + 9)),
        pcapng(tmp_path, "4.pcapng", conversation([(True, BASIC), (False, OK)], 40004, T0 + 12)),
        pcap(tmp_path, "5.pcap", conversation([(True, BASIC), (False, BIG)], 40005, T0 + 15)),
    ]
    stats = assert_whole(tmp_path, *parts)
    assert len(read(stats.path)[0]) == 5


@pytest.mark.parametrize("chunk", [1, 7, 23, 1000, 1 << 20])
@pytest.mark.parametrize("second_format", ["pcap", "pcapng"])
def test_a_stream_read_in_chunks_of_any_size(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reader: str,
    chunk: int,
    second_format: str,
) -> None:
    """gzip-compressed captures are read as a stream, in chunks: a header split across two
    chunks is waited for, and the next chunk goes to the loop of the format reached."""
    a = pcap(tmp_path, "a.pcap", first())
    if second_format == "pcap":
        b = pcap(tmp_path, "b.pcap", second(), endianness=">", nano=True)
    else:
        b = pcapng(tmp_path, "b.pcapng", second())
    c = pcap(tmp_path, "c.pcap", conversation([(True, BEARER), (False, OK)], 40003, T0 + 9))
    expected = []
    frames = 0
    for part in (a, b, c):
        events, stats = read(write(tmp_path, "part", part))
        expected += [(e.client_port, frames + e.frame, e.ts) for e in events]
        frames += stats.packets
    monkeypatch.setattr(pcapfile, "CHUNK", chunk)
    path = tmp_path / "abc.pcap.gz"
    path.write_bytes(gzip.compress(a + b + c))
    events, stats = read(str(path))
    assert [(e.client_port, e.frame, e.ts) for e in events] == expected
    assert len(expected) == 3
    assert stats.packets == stats.tcp == frames
    assert stats.file_format == "pcap.gz"
    assert [w.split(": ", 1)[1][:24] for w in stats.warnings] == ["another capture appended"]


def test_a_header_cut_by_the_end_of_the_file_is_a_truncated_file(
    tmp_path: Path, reader: str
) -> None:
    """Only the start of a second header (the copy was cut short): a normal capture ending."""
    a = pcap(tmp_path, "a.pcap", first())
    b = pcap(tmp_path, "b.pcap", second())
    for keep in (4, 16, 20):
        events, stats = read(write(tmp_path, f"cut{keep}.pcap", a, b[:keep]))
        assert len(events) == 1 and stats.packets == len(first())
        assert stats.warnings == [
            f"{stats.path}: file ends in the middle of a record ({keep} bytes left over); "
            "the capture is truncated"
        ]


def test_a_record_claiming_an_impossible_length_still_stops(tmp_path: Path, reader: str) -> None:
    """Not a header: a record claiming 2 GiB is corrupt, and the rest is not read (warned)."""
    a = pcap(tmp_path, "a.pcap", first())
    junk = struct.pack("<IIII", int(T0) + 5, 0, 0x7FFFFFFF, 0x7FFFFFFF) + b"\0" * 64
    events, stats = read(write(tmp_path, "junk.pcap", a, junk, pcap(tmp_path, "b", second())))
    assert len(events) == 1 and stats.packets == len(first())
    assert stats.warnings == [
        f"{stats.path}: record at offset {len(a)} claims {0x7FFFFFFF} bytes; "
        "stopped reading this file"
    ]
    assert stats.unread_from == len(a)


def test_the_rest_a_corrupt_record_leaves_unread_is_a_blind_spot(
    tmp_path: Path, reader: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """What follows a record that cannot be one was in the file but never read: the verdict
    cannot PASS over it (the good call before it is all that was read), whatever the scope."""
    a = pcap(tmp_path, "a.pcap", first())
    junk = struct.pack("<IIII", int(T0) + 5, 0, 0x7FFFFFFF, 0x7FFFFFFF) + b"\0" * 64
    path = write(tmp_path, "junk.pcap", a, junk, pcap(tmp_path, "b", second())[24:])
    code, data = verify(capsys, path)
    (rule,) = data["rules"]
    assert (code, rule["result"]) == (2, "INCONCLUSIVE")
    (spot,) = [n for n in rule["coverage"]["not_inspected"] if n["kind"] == "unread-capture"]
    assert (spot["client"], spot["server"]) == (":0", ":0")  # no addresses: any traffic
    assert rule["coverage"]["blind_spots"] == [
        f"{path}: the bytes after offset {len(a):,} were not read (record at offset {len(a)} "
        f"claims {0x7FFFFFFF} bytes): whatever they held is unknown; repair the file (pcapfix) "
        "or capture again"
    ]
    whole = write(tmp_path, "whole.pcap", a)  # the same file without the junk: PASS
    assert verify(capsys, whole)[0] == 0


def test_a_record_that_only_begins_like_a_header_is_a_record(tmp_path: Path, reader: str) -> None:
    """A pcap magic where a record starts, but not version 2: read as the record it is (and
    the next ones), not as another capture."""
    a = pcap(tmp_path, "a.pcap", first())
    b = bytearray(pcap(tmp_path, "b.pcap", second()))
    b[4:6] = struct.pack("<H", 7)  # version 7.4: no pcap header
    events, stats = read(write(tmp_path, "odd.pcap", a, bytes(b)))
    assert len(events) == 1 and stats.packets > len(first())
    assert not [w for w in stats.warnings if "another capture appended" in w]
