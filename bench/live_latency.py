#!/usr/bin/env python3
"""Measure the live capture engines on loopback: start-up, per-packet delay, stop, throughput.

For each engine (dumpcap, scapy) it captures ``tcp port P`` on ``lo`` while a local client talks
to a local server, and reads the stream the way the analyzer does (``os.read`` on the fd):

- start: time for ``open_live`` to return (interfaces, filter and permission checked);
- delay: a 16-byte marker is sent every 0.1 s on a quiet link; the time from ``sendall`` until
  the marker is in the stream (median, 90th percentile, max);
- stop: time from ``stop()`` to EOF on the stream;
- bulk: ``--megabytes`` sent over one connection in 1448-byte writes (TCP_NODELAY; loopback
  still merges writes that queue up into larger segments) between two child processes, the
  stream read here as fast as possible: packets per second, stream MB/s, mean frame size, and
  the engine's received/dropped counts.

Only 127.0.0.1 is used. Needs root (or the capture capabilities). Usage:
``python bench/live_latency.py [--engines dumpcap,scapy] [--markers 30] [--megabytes 100]``
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

from analyzer.sources.live import open_live


class Reader(threading.Thread):
    """Reads the stream to EOF, noting when each awaited marker first appears."""

    def __init__(self, fd: int) -> None:
        super().__init__(daemon=True)
        self.fd, self.size, self.tail = fd, 0, b""
        self.seen: dict[bytes, float] = {}
        self.wanted: set[bytes] = set()
        self.lock = threading.Condition()
        self.eof = self.last = 0.0
        self.start()

    def run(self) -> None:
        while chunk := os.read(self.fd, 1 << 20):
            now = self.last = time.monotonic()
            self.size += len(chunk)
            window, self.tail = self.tail + chunk, chunk[-32:]
            with self.lock:
                for marker in [m for m in self.wanted if m in window]:
                    self.wanted.discard(marker)
                    self.seen[marker] = now
                    self.lock.notify_all()
        self.eof = time.monotonic()

    def expect(self, marker: bytes) -> None:
        with self.lock:
            self.wanted.add(marker)

    def wait(self, marker: bytes, timeout: float = 5.0) -> float | None:
        with self.lock:
            self.lock.wait_for(lambda: marker in self.seen, timeout)
            return self.seen.get(marker)


def transfer(port: int, megabytes: int) -> None:
    """``megabytes`` from a child process to a sink in another child, over 127.0.0.1:port."""
    code = (
        "import os, socket, sys\n"
        "c = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n"
        "c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)\n"
        "segment = os.urandom(1448)\n"
        "for _ in range(int(sys.argv[2]) * 1_000_000 // 1448):\n"
        "    c.sendall(segment)\n"
    )
    sink = (
        "import socket, sys\n"
        "s = socket.create_server(('127.0.0.1', int(sys.argv[1])))\n"
        "print(flush=True)\n"
        "c, _ = s.accept()\n"
        "while c.recv(1 << 20):\n"
        "    pass\n"
    )
    receiver = subprocess.Popen([sys.executable, "-c", sink, str(port)], stdout=subprocess.PIPE)
    assert receiver.stdout is not None
    receiver.stdout.readline()  # listening
    subprocess.run([sys.executable, "-c", code, str(port), str(megabytes)], check=True)
    receiver.wait()


def run_engine(engine: str, markers: int, megabytes: int) -> dict[str, object]:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]  # the bulk transfer's sink listens here later
    started = time.monotonic()
    capture = open_live(["lo"], bpf=f"tcp port {port}", engine=engine)
    start = time.monotonic() - started
    reader = Reader(capture.fd)
    client = socket.create_connection(("127.0.0.1", port))
    peer, _ = server.accept()
    delays = []
    for i in range(markers):
        marker = b"MARK%012d" % i
        reader.expect(marker)
        sent = time.monotonic()
        client.sendall(marker)
        seen = reader.wait(marker)
        delays.append(float("inf") if seen is None else seen - sent)
        time.sleep(0.1)
    client.close()
    peer.close()
    server.close()
    before, bulk_started = reader.size, time.monotonic()
    transfer(port, megabytes)
    while time.monotonic() - reader.last < 0.5:  # until the stream has caught up
        time.sleep(0.05)
    bulk = reader.last - bulk_started
    stopped = time.monotonic()
    capture.stop()
    reader.join(10)
    stop = reader.eof - stopped
    received, drops = capture.received().get("lo", 0), capture.drops().get("lo", 0)
    capture.close()
    delays.sort()
    return {
        "engine": engine,
        "start_s": start,
        "delay_median_s": statistics.median(delays),
        "delay_p90_s": delays[int(len(delays) * 0.9) - 1],
        "delay_max_s": delays[-1],
        "stop_to_eof_s": stop,
        "bulk_packets": received,
        "bulk_dropped": drops,
        "bulk_stream_mb_s": (reader.size - before) / bulk / 1e6,
        "bulk_packets_s": received / bulk,
        "bulk_frame_bytes": (reader.size - before) / max(received, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="dumpcap,scapy")
    parser.add_argument("--markers", type=int, default=30)
    parser.add_argument("--megabytes", type=int, default=100)
    args = parser.parse_args()
    print(
        f"{'engine':8} {'start':>7} {'delay med/p90/max (ms)':>24} {'stop':>7} "
        f"{'packets':>9} {'dropped':>8} {'pkt/s':>9} {'MB/s':>7} {'frame':>6}"
    )
    for engine in args.engines.split(","):
        r = run_engine(engine, args.markers, args.megabytes)
        delays = "/".join(
            f"{r[k] * 1000:.1f}" for k in ("delay_median_s", "delay_p90_s", "delay_max_s")
        )
        print(
            f"{engine:8} {r['start_s'] * 1000:6.0f}ms {delays:>24} "
            f"{r['stop_to_eof_s'] * 1000:5.0f}ms {r['bulk_packets']:9d} {r['bulk_dropped']:8d} "
            f"{r['bulk_packets_s']:9.0f} {r['bulk_stream_mb_s']:7.1f} {r['bulk_frame_bytes']:6.0f}"
        )


if __name__ == "__main__":
    main()
