"""The capture files, written with ``struct``: classic pcap (microseconds) and pcapng (one interface
per link layer, each with its own timestamp resolution).
"""

from __future__ import annotations

import struct

from .constants import SEC, US
from .wire import Frame


def write_pcap(frames: list[Frame], linktype: int) -> bytes:
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))
    for f in frames:
        assert f.ts_ns % US == 0
        sec, usec = divmod(f.ts_ns // US, 1_000_000)
        out += struct.pack("<IIII", sec, usec, len(f.data), len(f.data)) + f.data
    return bytes(out)


def _pcapng_option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)


def _pcapng_block(block_type: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", block_type, total) + body + struct.pack("<I", total)


def write_pcapng(frames: list[Frame], interfaces: list[tuple[int, int, str]]) -> bytes:
    """Hand-written pcapng: SHB, one IDB per (linktype, tsresol exponent, name), EPBs."""
    # shb_userappl names the generator as it was first written; kept so the bytes stay the same.
    shb_opts = _pcapng_option(4, b"oauth-traffic-analyzer captures/generate.py")
    out = bytearray(
        _pcapng_block(
            0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + shb_opts + b"\x00" * 4
        )
    )
    for linktype, tsresol, name in interfaces:
        opts = _pcapng_option(2, name.encode()) + _pcapng_option(9, bytes([tsresol]))
        out += _pcapng_block(1, struct.pack("<HHI", linktype, 0, 262144) + opts + b"\x00" * 4)
    for f in frames:
        tsresol = interfaces[f.iface][1]
        units = 10**tsresol
        assert (f.ts_ns * units) % SEC == 0
        ts = f.ts_ns * units // SEC
        pad = b"\x00" * (-len(f.data) % 4)
        body = struct.pack("<IIIII", f.iface, ts >> 32, ts & 0xFFFFFFFF, len(f.data), len(f.data))
        out += _pcapng_block(6, body + f.data + pad)
    return bytes(out)
