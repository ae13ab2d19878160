#!/usr/bin/env python3
"""Soak the streaming engine: millions of auth exchanges through ``analyze -``, memory sampled.

A stream has no end to wait for, so what it keeps must not grow with its length. This script
writes an endless pcap stream to ``oauth-analyzer analyze - --format jsonl -o /dev/null``:
short HTTP/1.1 connections (SYN, SYN-ACK, request, response, FIN both ways), each from a new
client port, carrying Basic credentials or S2S-shaped Bearer tokens (a new token every
``--token-every`` exchanges, as tokens are renewed), answered 200 or 401. Every second it samples
the analyzer's resident memory (``VmRSS``) and prints it with the exchanges written so far; at
the end it prints the samples at the start, middle and end, the peak, and the growth over the
second half of the run (a flat run grows by a few MB at most, whatever its length).

Usage: ``python bench/soak.py [--exchanges 2000000] [--seconds 600] [--token-every 50]``
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
RECORD = struct.Struct("<IIII")
ETH_IP_TCP = struct.Struct("!6s6sHBBHHHBBH4s4sHHIIBBHHH")
SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01
SERVER = bytes([10, 9, 0, 1])
START = 1_767_225_600  # 2026-01-01 UTC


def frame(src: bytes, sport: int, dst: bytes, dport: int, seq: int, ack: int, flags: int,
          payload: bytes, ts_us: int) -> bytes:  # fmt: skip
    """One Ethernet/IPv4/TCP pcap record (checksums left zero: the reader does not check)."""
    total = 40 + len(payload)
    head = ETH_IP_TCP.pack(
        b"\x02" * 6, b"\x04" * 6, 0x0800, 0x45, 0, total, 0, 0, 64, 6, 0, src, dst,
        sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, flags, 65535, 0, 0,
    )  # fmt: skip
    data = head + payload
    return RECORD.pack(ts_us // 1_000_000, ts_us % 1_000_000, len(data), len(data)) + data


def token(n: int) -> str:
    """An S2S-shaped unsigned JWT, different for every ``n``."""

    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    claims = {
        "aud": "00000002-0000-0ff1-ce00-000000000000/mail.contoso.com@contoso.com",
        "iss": "00000004-0000-0ff1-ce00-000000000000@contoso.com",
        "nbf": START - 60 + n,
        "exp": START + 3600 + n,
        "nameid": f"S-1-5-21-{n}",
    }
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def connection(i: int, ts_us: int, bearer: str | None) -> bytes:
    """One exchange on its own connection; client address and port vary with ``i``."""
    client = bytes([10, 1, (i >> 16) & 0xFF, (i >> 8) & 0xFF])
    sport = 1024 + (i % 60000)
    if bearer is not None:
        auth = f"Bearer {bearer}"
        path = "/EWS/Exchange.asmx"
    else:
        auth = "Basic " + base64.b64encode(f"user{i % 997}:Secret-{i}".encode()).decode()
        path = "/basic"
    request = (
        f"GET {path} HTTP/1.1\r\nHost: mail.contoso.com\r\nAuthorization: {auth}\r\n\r\n"
    ).encode()
    status = b"200 OK" if i % 7 else b"401 Unauthorized"
    response = b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\n\r\nok"
    c, s = 1000, 5000
    c_end, s_end = c + 1 + len(request), s + 1 + len(response)
    steps = [  # (from client?, seq, ack, flags, payload, microseconds after the SYN)
        (True, c, 0, SYN, b"", 0),
        (False, s, c + 1, SYN | ACK, b"", 50),
        (True, c + 1, s + 1, PSH | ACK, request, 100),
        (False, s + 1, c_end, PSH | ACK, response, 900),
        (True, c_end, s_end, FIN | ACK, b"", 1000),
        (False, s_end, c_end + 1, FIN | ACK, b"", 1100),
    ]
    parts = []
    for from_client, seq, ack, flags, payload, after in steps:
        ends = (client, sport, SERVER, 80) if from_client else (SERVER, 80, client, sport)
        parts.append(frame(*ends, seq, ack, flags, payload, ts_us + after))
    return b"".join(parts)


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--exchanges", type=int, default=2_000_000, help="stop after this many")
    ap.add_argument("--seconds", type=float, default=600.0, help="or after this long")
    ap.add_argument("--token-every", type=int, default=50, help="exchanges per Bearer token")
    ap.add_argument("--batch", type=int, default=2000, help="exchanges per write")
    args = ap.parse_args(argv)

    cmd = [sys.executable, "-m", "analyzer", "analyze", "-", "--format", "jsonl", "-o",
           os.devnull]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    assert proc.stdin is not None
    samples: list[tuple[float, int, float]] = []  # (seconds, exchanges written, RSS MB)
    started = time.monotonic()
    next_sample = started
    written = 0
    ts_us = START * 1_000_000
    try:
        proc.stdin.write(PCAP_HEADER)
        while written < args.exchanges and time.monotonic() - started < args.seconds:
            chunk = []
            for i in range(written, written + args.batch):
                bearer = token(i // args.token_every) if i % 2 else None
                chunk.append(connection(i, ts_us, bearer))
                ts_us += 2_000
            proc.stdin.write(b"".join(chunk))
            written += args.batch
            now = time.monotonic()
            if now >= next_sample:
                rss = rss_mb(proc.pid)
                if rss is not None:
                    samples.append((now - started, written, rss))
                    print(f"{now - started:7.1f} s  {written:>10,} exchanges  {rss:7.1f} MB RSS",
                          flush=True)  # fmt: skip
                next_sample = now + 1.0
        proc.stdin.close()
        proc.wait(timeout=600)
        err = proc.stderr.read() if proc.stderr is not None else b""
    except (KeyboardInterrupt, BrokenPipeError):
        proc.kill()
        raise
    elapsed = time.monotonic() - started
    print(f"\nwrote {written:,} exchanges in {elapsed:.1f} s ({written / elapsed:,.0f}/s); "
          f"analyzer exit {proc.returncode}")  # fmt: skip
    if samples:
        half = samples[len(samples) // 2]
        last = samples[-1]
        print(f"RSS: first {samples[0][2]:.1f} MB, middle {half[2]:.1f} MB, last {last[2]:.1f} MB,"
              f" peak {max(s[2] for s in samples):.1f} MB; growth over the second half "
              f"{last[2] - half[2]:+.1f} MB")  # fmt: skip
    tail = err.decode(errors="replace").strip().splitlines()[:6]
    print("\n".join(tail))
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
