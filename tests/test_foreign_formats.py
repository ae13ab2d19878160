"""Captures in formats only Wireshark's tools read (Network Monitor, snoop, Endace ERF, modified
pcap), converted to pcapng as a stream: the same events as the pcap they were made from. Without
the tools, and for a Windows ``.etl`` trace, one error line that says what to do."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from archive_kit import CAPTURES, HYBRID, analysis, events, run, verify_results

from analyzer.sources.kinds import input_kind, is_etl

EDITCAP = shutil.which("editcap")
needs_editcap = pytest.mark.skipif(EDITCAP is None, reason="editcap (tshark) not installed")
#: The cut scenario: editcap drops the record the pcap was cut in when it writes the .cap, so the
#: Network Monitor file itself no longer holds the lost request bytes.
NOT_IN_A_CAP = ("cut",)
SCENARIOS = sorted(p.stem for p in HYBRID.glob("*.pcap") if p.stem not in NOT_IN_A_CAP)


def convert(pcap: Path, out: Path, file_type: str) -> Path:
    assert EDITCAP is not None
    subprocess.run([EDITCAP, "-F", file_type, str(pcap), str(out)], check=True, capture_output=True)
    return out


def erf(pcap: Path, out: Path) -> Path:
    """An Endace ERF file (Ethernet records) of a classic pcap, written by hand: editcap cannot
    write ERF from Ethernet. ERF has no magic: only tshark can tell it is one."""
    blob = pcap.read_bytes()
    records = bytearray()
    pos = 24
    while pos + 16 <= len(blob):
        sec, usec, caplen, _ = struct.unpack_from("<IIII", blob, pos)
        frame = blob[pos + 16 : pos + 16 + caplen]
        pos += 16 + caplen
        body = b"\x00\x00" + frame  # offset and padding of an ERF Ethernet record
        size = 16 + len(body) + (-(16 + len(body)) % 8)
        stamp = (sec << 32) | ((usec << 32) // 1_000_000)
        records += struct.pack("<Q", stamp) + struct.pack(">BBHHH", 2, 0x04, size, 0, len(frame))
        records += body + b"\x00" * (size - 16 - len(body))
    out.write_bytes(bytes(records))
    return out


@needs_editcap
@pytest.mark.parametrize("file_type", ["netmon2", "snoop", "modpcap", "erf"])
def test_same_events_as_the_pcap(file_type: str, tmp_path: Path) -> None:
    pcap = CAPTURES / "exchange-sfb.pcap"
    out = tmp_path / f"trace.{file_type}"
    foreign = erf(pcap, out) if file_type == "erf" else convert(pcap, out, file_type)
    assert input_kind(str(foreign)) == "other"
    wire, converted = analysis(pcap), analysis(foreign)
    assert events(converted, frozenset({"source"})) == events(wire, frozenset({"source"}))
    assert {e.source for e in converted.events} == {"tshark"}
    assert converted.captures[0].file_format.startswith("tshark (")
    assert converted.captures[0].packets == wire.captures[0].packets
    assert converted.captures[0].warnings == []


@needs_editcap
def test_network_monitor_1_keeps_milliseconds(tmp_path: Path) -> None:
    pcap = CAPTURES / "exchange-sfb.pcap"
    old = convert(pcap, tmp_path / "t1.cap", "netmon1")
    times = frozenset({"source", "ts", "response_ts", "conn_id"})  # conn ids include the time
    wire, converted = analysis(pcap), analysis(old)
    assert events(converted, times) == events(wire, times)
    for a, b in zip(converted.events, wire.events, strict=True):
        assert a.ts == pytest.approx(b.ts, abs=1e-3)


@needs_editcap
def test_network_monitor_names_its_format(tmp_path: Path) -> None:
    cap = convert(CAPTURES / "exchange-sfb.pcap", tmp_path / "t.cap", "netmon2")
    code, out, _ = run("analyze", str(cap))
    assert code == 0
    assert "tshark (Microsoft Network Monitor 2.x capture), 136 packets" in out


@needs_editcap
@pytest.mark.parametrize("name", SCENARIOS)
def test_verify_answers_as_on_the_pcap(name: str, tmp_path: Path) -> None:
    pcap = HYBRID / f"{name}.pcap"
    cap = convert(pcap, tmp_path / f"{name}.cap", "netmon2")
    for extra in ((), ("--partial",)):
        assert verify_results(cap, *extra) == verify_results(pcap, *extra), (name, extra)


@needs_editcap
def test_a_converted_capture_cut_short_is_inconclusive(tmp_path: Path) -> None:
    """A Sniffer file cut inside its last record, a Basic request: the converter drops that
    record with a complaint, and the request vanished - verify passed on the Bearer exchange
    before it (review 8: C1). What the converter did not reach is a blind spot now."""
    from test_tcp_damage import BASIC, BEARER, OK, STRICT, T0, Wire, request, write

    wire = Wire(40002, T0 + 2).exchange((request(BEARER), OK)).send(True, request(BASIC))
    sniffer = convert(Path(write(tmp_path / "w.pcap", wire.out)), tmp_path / "w.enc", "ngsniffer")
    assert run("verify", str(sniffer), *STRICT)[0] == 1  # whole: the Basic request is read
    cut = tmp_path / "cut.enc"
    cut.write_bytes(sniffer.read_bytes()[:-60])
    code, out, _ = run("verify", str(cut), *STRICT)
    assert code == 2 and out.splitlines()[-1].startswith("INCONCLUSIVE"), out
    assert (
        f"{cut}: the rest of it, after the last packet converted, were not read (converter: " in out
    )


def test_without_wireshark_one_line_names_the_format(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cap = tmp_path / "trace.cap"
    cap.write_bytes(b"GMBU\x00\x02" + b"\x00" * 200)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code, out, err = run("analyze", str(cap))
    assert code == 2 and out == ""
    (line,) = err.splitlines()
    assert "Microsoft Network Monitor 2.x capture" in line
    assert "apt-get install tshark" in line
    assert "Traceback" not in err


def _etl_header() -> bytes:
    """The start of an ETW trace: a WMI_BUFFER_HEADER (64 KiB buffer), then the system trace
    header of the log file header event (version 2, 64-bit system header, flags 0xC0, hook 0)."""
    buffer = struct.pack("<IIII", 0x10000, 0x10000, 0x2A0, 1) + b"\x00" * 56
    return buffer + bytes([2, 0, 2, 0xC0]) + struct.pack("<HH", 0x160, 0) + b"\x00" * 400


def test_an_etl_trace_is_one_line_on_how_to_convert_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etl = tmp_path / "PktMon.etl"
    etl.write_bytes(_etl_header())
    assert is_etl(etl.read_bytes())
    assert input_kind(str(etl)) == "etl"
    for path in (None, str(tmp_path / "empty")):  # with tshark (it cannot read it), without
        if path is not None:
            monkeypatch.setenv("PATH", path)
        code, _, err = run("analyze", str(etl))
        (line,) = err.splitlines()
        assert code == 2
        assert "pktmon etl2pcap" in line and "Windows event trace" in line


def test_a_file_nothing_reads_is_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"this is not a capture of any kind\n" * 10)
    code, _, err = run("analyze", str(junk))
    (line,) = err.splitlines()
    assert code == 2 and "Traceback" not in err
    assert "not a pcap or pcapng capture" in line
    assert "first bytes 0x7468697320697320" in line
