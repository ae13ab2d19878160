"""Captures in formats we do not read ourselves, converted by Wireshark's tools as a stream into
the native reader.

Anything that is not pcap, pcapng, gzip or an archive (``sources.kinds``) - Network Monitor
``.cap``, snoop, Endace ERF, the modified pcap formats and the rest of what Wireshark knows - goes
through ``editcap -F pcapng FILE -`` (or ``tshark -r FILE -F pcapng -w -`` when editcap is
missing): its standard output is read by ``pcapfile.read_stream`` as it comes, so the native walk,
TCP reassembly and every later stage apply unchanged, and nothing is written to disk. An ``.etl``
trace (pktmon, ``netsh trace``, Message Analyzer) is recognised by its header: the tshark here
cannot read it, so the user is told to convert it on Windows with ``pktmon etl2pcap``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import IO

from analyzer.model import CaptureStats
from analyzer.sources.kinds import is_etl, named
from analyzer.sources.pcapfile import CaptureError, Flows, Packet, read_stream

INSTALL = (
    "install Wireshark's command-line tools to read it (Debian / Ubuntu: apt-get install "
    "tshark; Windows / macOS: Wireshark, with its folder on PATH), or convert it to pcapng "
    "where Wireshark is installed: editcap -F pcapng IN OUT.pcapng"
)
ETL = (
    "a Windows event trace (.etl, from pktmon, netsh trace or Message Analyzer), which the "
    "tshark here cannot read: convert it on Windows with 'pktmon etl2pcap FILE.etl --out "
    "FILE.pcapng' (newer builds: 'pktmon pcapng FILE.etl -o FILE.pcapng') and analyse the pcapng"
)
_STDERR_KEEP = 4096  # bytes of the converter's error output kept for a failure message
#: ``CaptureStats.unread_from`` of a file the converter gave up on: where in the original it
#: stopped is unknown, only that it was after the last packet it converted.
UNREAD_PAST_CONVERTED = -1
_PEEK = 4096  # bytes of converted output read ahead, to see the link type
LINKTYPE_ERF = 197


def read_converted(
    path: str,
    stats: CaptureStats,
    flows: Flows | None = None,
    progress: Callable[[], None] | None = None,
    first_frame: int = 1,
) -> Iterator[Packet]:
    """``read_packets`` for a capture in a format only Wireshark's tools read: converted to
    pcapng as a stream (one packet block per record of the original, so frame numbers are the
    ones Wireshark shows for the original file). Raises :class:`CaptureError` (before
    returning) when neither editcap nor tshark is installed, or when they cannot read the file
    (for an ``.etl`` trace: how to convert it with pktmon)."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    etl = is_etl(head) or path.lower().endswith(".etl")
    what = named(head)  # a format we can name by its magic, or ""
    command = converter(path)
    if command is None:
        if etl:
            raise CaptureError(f"{path}: {ETL}")
        if what:
            raise CaptureError(f"{path}: a {what}, not pcap or pcapng: {INSTALL}")
        raise CaptureError(
            f"{path}: not a pcap or pcapng capture, a SAZ or a HAR (first bytes "
            f"0x{head[:8].hex()}); if it is another capture format, {INSTALL}"
        )
    proc, errors, first = _start(command)
    erf = _link_type(first) == LINKTYPE_ERF and "editcap" in os.path.basename(command[0])
    if erf:
        # Endace ERF records keep their ERF header in pcapng; written as Ethernet, editcap
        # gives each record's frame alone (ERF captures are of Ethernet links).
        _stop(proc)
        what = "Endace ERF capture"
        proc, errors, first = _start([*command[:-2], "-T", "ether", path, "-"])
    stream = _Prefixed(first, proc.stdout)
    try:
        packets = read_stream(stream, path, stats, flows, progress, first_frame=first_frame)
    except CaptureError:
        _stop(proc)
        problem = errors.text()
        detail = f" ({problem})" if problem else ""
        if etl:
            unreadable = ETL
        elif what:
            unreadable = f"a {what} that tshark could not convert{detail}"
        else:
            unreadable = (
                f"not a pcap or pcapng capture, a SAZ or a HAR, and not a format tshark "
                f"converts either (first bytes 0x{head[:8].hex()}){detail}"
            )
        raise CaptureError(f"{path}: {unreadable}") from None
    except BaseException:
        _stop(proc)
        raise
    stats.file_format = f"tshark ({what or 'converted to pcapng'})"
    return _packets(packets, proc, errors, path, stats)


def _start(command: list[str]) -> tuple[subprocess.Popen, _Drain, bytes]:
    """Run the converter; return it, its error reader, and the first bytes it wrote (enough
    for the pcapng section header and first interface block)."""
    proc = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    errors = _Drain(proc)
    assert proc.stdout is not None
    first = b""
    while len(first) < _PEEK:
        chunk = proc.stdout.read1(_PEEK)
        if not chunk:
            break
        first += chunk
    return proc, errors, first


def _link_type(head: bytes) -> int | None:
    """The link type of the first interface of a pcapng stream (None when not there)."""
    if len(head) < 12 or head[:4] != b"\x0a\x0d\x0d\x0a":
        return None
    order = "<" if head[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    (shb_length,) = struct.unpack_from(order + "I", head, 4)
    if len(head) < shb_length + 10:
        return None
    block_type, _, link = struct.unpack_from(order + "IIH", head, shb_length)
    return link if block_type == 1 else None


class _Prefixed:
    """The converter's output with the bytes already peeked at put back in front."""

    def __init__(self, first: bytes, rest: IO[bytes]) -> None:
        self._first = first
        self._rest = rest

    def read1(self, size: int = -1) -> bytes:
        if self._first:
            out, self._first = self._first, b""
            return out
        return self._rest.read1(size)  # type: ignore[attr-defined]

    read = read1


def converter(path: str) -> list[str] | None:
    """The command that writes ``path`` as pcapng on standard output, or None without tools."""
    editcap = shutil.which("editcap")
    if editcap is not None:
        return [editcap, "-F", "pcapng", path, "-"]
    tshark = shutil.which("tshark")
    if tshark is not None:
        return [tshark, "-n", "-r", path, "-F", "pcapng", "-w", "-"]
    return None


def _packets(
    packets: Iterator[Packet],
    proc: subprocess.Popen,
    errors: _Drain,
    path: str,
    stats: CaptureStats,
) -> Iterator[Packet]:
    """The converted packets; once they end, what the converter complained about (a file cut
    short, a damaged record: what came before is kept) as a warning. The converter stopped
    short of the end then, so the rest of the file is a blind spot for every scope (an
    ``unread-capture``): a packet it could not convert may have held a request."""
    read_all = False
    try:
        yield from packets
        read_all = True
    finally:
        code = _stop(proc)
        problem = errors.text()
        if problem or code not in (0, None):
            said = problem or f"exit status {code}"
            stats.warn(f"{path}: converting to pcapng: {said}")
            if read_all:  # (not when the reading stopped first)
                # where in the original it stopped is not known: past its last packet converted
                stats.unread_after(UNREAD_PAST_CONVERTED, f"converter: {said}")


def _stop(proc: subprocess.Popen) -> int | None:
    """End the converter (when it is still writing) and return its exit status."""
    if proc.stdout is not None:
        proc.stdout.close()
    if proc.poll() is None:
        proc.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        return proc.wait(timeout=10)
    proc.kill()
    return proc.wait()


class _Drain:
    """Reads the converter's standard error in the background (so it never blocks on a full
    pipe) and keeps its first bytes for a message."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self._kept = bytearray()
        self._thread = threading.Thread(target=self._run, args=(proc,), daemon=True)
        self._thread.start()

    def _run(self, proc: subprocess.Popen) -> None:
        assert proc.stderr is not None
        with contextlib.suppress(OSError, ValueError):
            for chunk in iter(lambda: proc.stderr.read(4096), b""):
                if len(self._kept) < _STDERR_KEEP:
                    self._kept += chunk[: _STDERR_KEEP - len(self._kept)]

    def text(self) -> str:
        self._thread.join(timeout=5)
        lines = self._kept.decode("utf-8", "replace").splitlines()
        lines = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("Running as user")]
        return " ".join(lines)[:300]
