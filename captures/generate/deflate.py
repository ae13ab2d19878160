"""Raw deflate (fixed Huffman, greedy LZ77) and gzip written here, so a gzip body is the same bytes
whatever zlib build is installed.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

_LEN_BASE = (3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99)
_LEN_BASE += (115, 131, 163, 195, 227, 258)
_LEN_EXTRA = (0,) * 8 + (1,) * 4 + (2,) * 4 + (3,) * 4 + (4,) * 4 + (5,) * 4 + (0,)
_DIST_BASE = (1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769)
_DIST_BASE += (1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577)
_DIST_EXTRA = tuple(max(0, i // 2 - 1) for i in range(30))


class _BitWriter:
    def __init__(self) -> None:
        self.acc = 0
        self.count = 0
        self.out = bytearray()

    def bits(self, value: int, n: int) -> None:
        self.acc |= value << self.count
        self.count += n
        while self.count >= 8:
            self.out.append(self.acc & 0xFF)
            self.acc >>= 8
            self.count -= 8

    def code(self, code: int, n: int) -> None:
        self.bits(int(f"{code:0{n}b}"[::-1], 2), n)  # Huffman codes are sent MSB first

    def literal(self, sym: int) -> None:
        if sym < 144:
            self.code(0x30 + sym, 8)
        elif sym < 256:
            self.code(0x190 + sym - 144, 9)
        elif sym < 280:
            self.code(sym - 256, 7)
        else:
            self.code(0xC0 + sym - 280, 8)

    def done(self) -> bytes:
        if self.count:
            self.out.append(self.acc & 0xFF)
        return bytes(self.out)


def _bucket(value: int, bases: Sequence[int]) -> int:
    idx = 0
    for i, base in enumerate(bases):
        if base <= value:
            idx = i
    return idx


def deflate_fixed(data: bytes) -> bytes:
    """Raw deflate (RFC 1951) in one fixed-Huffman block with greedy LZ77 matching."""
    w = _BitWriter()
    w.bits(1, 1)  # BFINAL
    w.bits(1, 2)  # BTYPE = fixed Huffman
    chains: dict[bytes, list[int]] = {}

    def remember(pos: int) -> None:
        if pos + 3 <= len(data):
            chains.setdefault(data[pos : pos + 3], []).append(pos)

    i = 0
    while i < len(data):
        best_len = best_dist = 0
        for j in reversed(chains.get(data[i : i + 3], [])[-32:]):
            if i - j > 32768:
                break
            n = 0
            while n < 258 and i + n < len(data) and data[j + n] == data[i + n]:
                n += 1
            if n > best_len:
                best_len, best_dist = n, i - j
        if best_len >= 3:
            k = _bucket(best_len, _LEN_BASE)
            w.literal(257 + k)
            w.bits(best_len - _LEN_BASE[k], _LEN_EXTRA[k])
            d = _bucket(best_dist, _DIST_BASE)
            w.code(d, 5)
            w.bits(best_dist - _DIST_BASE[d], _DIST_EXTRA[d])
            for pos in range(i, i + best_len):
                remember(pos)
            i += best_len
        else:
            w.literal(data[i])
            remember(i)
            i += 1
    w.literal(256)
    return w.done()


def gzip_bytes(data: bytes) -> bytes:
    """A gzip member (RFC 1952) as IIS writes it: mtime 0, XFL 4, OS 0 (FAT)."""
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\x00"
    trailer = struct.pack("<II", zlib.crc32(data) & 0xFFFFFFFF, len(data) & 0xFFFFFFFF)
    return header + deflate_fixed(data) + trailer
