"""Write a live capture's stream to disk: one file, or a ring of files like dumpcap's ``-b``.

:class:`RingWriter` takes the stream's bytes exactly as read from the capture's fd, cut anywhere.
Without a ring the file is those bytes. With a ring it cuts at a block (pcapng) or record (pcap)
boundary once a file has passed its size, starts each new file with the stream's section header
and interface descriptions (pcapng) or file header (pcap) so that every file is a capture on its
own, and deletes the oldest files beyond the count. Ring files are named as dumpcap names them:
``NAME_00001_20260302090000.pcapng`` (number, local time the file was started). The writer holds
at most one unfinished block in memory.
"""

from __future__ import annotations

import io
import os
import time
from struct import Struct
from types import TracebackType

#: A block or record claiming more than this is corrupt (the capture readers' limit too).
MAX_BLOCK = 256 << 20

_PCAP_MAGICS = {  # magic as stored -> byte order
    b"\xd4\xc3\xb2\xa1": "<",
    b"\xa1\xb2\xc3\xd4": ">",
    b"\x4d\x3c\xb2\xa1": "<",
    b"\xa1\xb2\x3c\x4d": ">",
}
_SHB = b"\x0a\x0d\x0d\x0a"
_BOMS = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
_IDB = 1
_PACKET_BLOCKS = frozenset({2, 3, 6})  # obsolete, simple and enhanced packet blocks
_PCAP_HEADER, _PCAP_RECORD = 24, 16
_U32 = {order: Struct(order + "I").unpack_from for order in "<>"}
_BLOCK = {order: Struct(order + "II").unpack_from for order in "<>"}
# What a unit of the stream is to the ring: a section start (SHB, pcap file header), an
# interface description (kept for the next files), a packet, or anything else (statistics, ...).
# A new file starts only before a section or a packet: statistics stay with their packets.
_START, _INTERFACE, _PACKET, _OTHER = 0, 1, 2, 3


class WriteError(Exception):
    """The capture could not be written (no such folder, disk full, ...): one line."""


class RingWriter:
    """Write the stream to ``path``; with ``megabytes``, to a ring of at most ``files`` files
    (all of them when ``files`` is None) of about that size each."""

    def __init__(self, path: str, files: int | None = None, megabytes: float | None = None):
        if files is not None and megabytes is None:
            raise ValueError("a ring of files needs a file size")
        if (files is not None and files < 1) or (megabytes is not None and megabytes <= 0):
            raise ValueError("a ring needs at least one file and a positive size")
        self._path = path
        self._ring = megabytes is not None
        self._limit = int((megabytes or 0) * 1_000_000)
        self._keep = files
        self._number = 0
        self._closed = False
        self._failed = False  # a write failed: nothing more is written
        #: The files written and still kept, oldest first.
        self.paths: list[str] = []
        self._pending = bytearray()  # the start of a unit not complete yet
        self._offset = 0  # where in the stream _pending starts
        self._order = ""  # "" until the stream's first unit told its format
        self._pcap = False
        self._headers: list[bytes] = []  # what each new file starts with
        self._size = 0  # bytes in the current file, written or about to be
        self._holds_data = False  # the current file has more than headers
        self._fh = self._open(self._next_name() if self._ring else path)

    def write(self, chunk: bytes) -> None:
        """Append stream bytes (any cut). Raises WriteError when the disk refuses them."""
        if not self._ring:
            self._put(chunk)
            return
        self._pending += chunk
        self._cut(self._pending)

    @property
    def pending(self) -> int:
        """Bytes held back: the start of a block not complete yet."""
        return len(self._pending)

    def close(self) -> None:
        """Write what is left (a stream cut inside a block keeps its partial block) and close."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._pending and not self._failed:
                self._put(self._pending)
                self._pending.clear()
        finally:
            self._fh.close()

    def __enter__(self) -> RingWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _cut(self, buf: bytearray) -> None:
        """Write the complete units at the start of ``buf`` (and drop them from it), starting
        new files where due."""
        pos = run = 0  # the next unit; the first byte not yet written
        try:
            while (unit := self._unit(buf, pos, len(buf))) is not None:
                size, kind = unit
                if self._size > self._limit and self._holds_data and kind in (_START, _PACKET):
                    self._put(buf[run:pos])
                    run = pos
                    self._rotate(fresh_section=kind == _START)
                if kind == _START:
                    self._headers = [_unbounded(buf[pos : pos + size], self._pcap)]
                elif kind == _INTERFACE:
                    self._headers.append(bytes(buf[pos : pos + size]))
                else:
                    self._holds_data = True
                self._size += size
                pos += size
        finally:  # also when the stream turns out damaged: what came before it is kept
            self._put(buf[run:pos])
            del buf[:pos]
            self._offset += pos

    def _unit(self, buf: bytearray, pos: int, end: int) -> tuple[int, int] | None:
        """(length, kind) of the unit at ``pos`` if it is complete, else None."""
        if not self._order:
            if end - pos < 12:
                return None
            self._identify(buf)
        if self._pcap:
            if not self._headers:  # the file header
                return (_PCAP_HEADER, _START) if end - pos >= _PCAP_HEADER else None
            if end - pos < _PCAP_RECORD:
                return None
            size = _PCAP_RECORD + _U32[self._order](buf, pos + 8)[0]
            kind = _PACKET
        else:
            if end - pos < 12:
                return None
            kind = _OTHER
            if buf[pos : pos + 4] == _SHB:
                order = _BOMS.get(bytes(buf[pos + 8 : pos + 12]))
                if order is None:
                    raise self._corrupt("a bad section header", pos)
                self._order = order
                kind = _START
            btype, size = _BLOCK[self._order](buf, pos)
            if btype == _IDB:
                kind = _INTERFACE
            elif btype in _PACKET_BLOCKS:
                kind = _PACKET
            if size < 12 or size & 3:
                raise self._corrupt(f"a block of length {size}", pos)
        if size > MAX_BLOCK:
            raise self._corrupt(f"a block of length {size}", pos)
        return (size, kind) if pos + size <= end else None

    def _corrupt(self, what: str, pos: int) -> WriteError:
        return WriteError(
            f"cannot cut the capture into ring files: {what} at byte {self._offset + pos}"
        )

    def _identify(self, buf: bytearray) -> None:
        magic = bytes(buf[:4])
        if magic in _PCAP_MAGICS:
            self._order, self._pcap = _PCAP_MAGICS[magic], True
        elif magic == _SHB and bytes(buf[8:12]) in _BOMS:
            self._order = _BOMS[bytes(buf[8:12])]
        else:
            raise WriteError("cannot cut the capture into ring files: not a pcap or pcapng stream")

    def _rotate(self, fresh_section: bool) -> None:
        """Close the current file and start the next; the oldest beyond the count go."""
        self._fh.close()
        self._fh = self._open(self._next_name())
        while self._keep is not None and len(self.paths) > self._keep:
            old = self.paths.pop(0)
            try:
                os.remove(old)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise WriteError(f"cannot remove {old}: {exc.strerror or exc}") from None
        self._size = 0
        self._holds_data = False
        if not fresh_section:
            for header in self._headers:
                self._put(header)
                self._size += len(header)

    def _next_name(self) -> str:
        self._number += 1
        root, ext = os.path.splitext(self._path)
        return f"{root}_{self._number:05d}_{time.strftime('%Y%m%d%H%M%S')}{ext}"

    def _open(self, path: str) -> io.FileIO:
        try:
            fh = io.FileIO(path, "wb")  # unbuffered: a full disk fails the write that hit it
        except OSError as exc:
            raise WriteError(f"cannot write {path}: {exc.strerror or exc}") from None
        self.paths.append(path)
        return fh

    def _put(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[self._fh.write(view) :]
        except OSError as exc:
            self._failed = True
            raise WriteError(f"cannot write {self._fh.name}: {exc.strerror or exc}") from None


def _unbounded(header: bytearray, pcap: bool) -> bytes:
    """A section header to repeat at the start of a file: a pcapng section length, if the
    stream gave one, becomes "unknown" (-1), as it no longer matches."""
    copy = bytearray(header)
    if not pcap and len(copy) >= 24:
        copy[16:24] = b"\xff" * 8
    return bytes(copy)
