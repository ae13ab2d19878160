"""Which kind of input a file is, by its first bytes: a capture we read ourselves (pcap, pcapng,
gzip), a Fiddler session archive (zip), an HTTP archive (JSON), a Windows event trace
(``.etl``), or another capture format for tshark to convert (``sources.convert``). Only the
first 4 KiB of a regular file are read; anything else (a pipe) is left to the capture reader.
"""

from __future__ import annotations

import os
import stat
import struct

#: What the first bytes of a file say: native captures, archives, and the formats we can name
#: when they have to be converted (or cannot be, without tshark).
_NATIVE = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
_PCAPNG = b"\x0a\x0d\x0d\x0a"
_GZIP = b"\x1f\x8b"
_ZIP = (b"PK\x03\x04", b"PK\x05\x06")
_NAMED = (
    (b"GMBU", "Microsoft Network Monitor 2.x capture"),
    (b"RTSS", "Microsoft Network Monitor 1.x capture"),
    (b"snoop\x00\x00\x00", "Sun snoop capture"),
    (b"\x34\xcd\xb2\xa1", "modified (Kuznetzov) pcap capture"),
    (b"\xa1\xb2\xcd\x34", "modified (Kuznetzov) pcap capture"),
    (b"XCP\x00", "NetXray / Sniffer (Windows) capture"),
    (b"TRSNIFF data", "Sniffer (DOS) capture"),
    (b"ObserverPktBuffer", "Viavi Observer capture"),
)


def input_kind(path: str) -> str:
    """``capture`` (pcap, pcapng, gzip: read natively, as are pipes and anything not a regular
    file, which must not be read ahead), ``saz``, ``har``, or ``etl`` / ``other`` (both
    converted by tshark, when it can)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return "capture"
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return "capture"  # the capture reader says what is wrong with it
    if not head or head[:4] in _NATIVE or head[:4] == _PCAPNG or head[:2] == _GZIP:
        return "capture"
    if head[:4] in _ZIP:
        return "saz"
    if _json_document(head):
        return "har"
    return "etl" if is_etl(head) else "other"


def is_etl(head: bytes) -> bool:
    """Does this look like an ETW trace file? Its first buffer starts with a 72-byte
    WMI_BUFFER_HEADER (the buffer size first, a multiple of 1 KiB), followed by the system
    trace header of the log file header event: a version, header type 1 or 2 (32- or 64-bit
    system header), the trace-header flags 0xC0, and hook id 0 (the event-trace header)."""
    if len(head) < 80:
        return False
    (buffer_size,) = struct.unpack_from("<I", head, 0)
    plausible = 1024 <= buffer_size <= (64 << 20) and buffer_size % 1024 == 0
    header_type, flags = head[74], head[75]
    return plausible and header_type in (1, 2) and flags & 0xC0 == 0xC0 and head[78:80] == b"\0\0"


def _json_document(head: bytes) -> bool:
    """Does the file start like JSON (an object or an array, after a byte-order mark)?"""
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    return text.startswith((b"{", b"["))


def named(head: bytes) -> str:
    for magic, name in _NAMED:
        if head.startswith(magic):
            return name
    return ""
