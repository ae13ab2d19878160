"""Live capture with both engines on loopback: real HTTP servers and clients on 127.0.0.1, the
stream read while packets arrive, then parsed by our own capture reader. Nothing but loopback is
ever captured or sent to. Needs root (CI runs as root); the permission test drops to nobody."""

from __future__ import annotations

import http.server
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from analyzer.model import CaptureStats
from analyzer.sources.afpacket import (
    SKF_AD_OFF,
    SKF_AD_PKTTYPE,
    SKF_AD_PROTOCOL,
    _frame,
    compile_filter,
)
from analyzer.sources.live import LiveCapture, LiveError, list_interfaces, open_live
from analyzer.sources.pcapfile import read_packets
from analyzer.sources.ringfile import RingWriter

REPO = Path(__file__).resolve().parents[1]
HANG = 5.0  # seconds: a bound against hangs, not a performance goal (see bench/)
SYN, ACK = 0x02, 0x10

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs root")
ENGINES = [
    pytest.param(
        "dumpcap",
        marks=pytest.mark.skipif(shutil.which("dumpcap") is None, reason="dumpcap not installed"),
    ),
    "scapy",
]


class _Quiet(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def http_server() -> Iterator[int]:
    """An HTTP server on 127.0.0.1 (a free port), answering 200 to every GET."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(HANG)


def fetch(port: int, path: str) -> None:
    """GET http://127.0.0.1:port/path with urllib, never through a proxy."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}{path}", timeout=HANG) as response:
        assert response.read() == b"ok"


class StreamReader(threading.Thread):
    """Reads a capture's fd to EOF while the test runs, and lets it wait for bytes to show."""

    def __init__(self, fd: int) -> None:
        super().__init__(daemon=True)
        self.fd = fd
        self.data = bytearray()
        self.changed = threading.Condition()
        self.start()

    def run(self) -> None:
        while chunk := os.read(self.fd, 1 << 16):
            with self.changed:
                self.data += chunk
                self.changed.notify_all()

    def wait_for(self, needle: bytes, count: int = 1) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.data.count(needle) >= count, HANG)


@contextmanager
def capturing(*args: object, **kwargs: object) -> Iterator[tuple[LiveCapture, StreamReader]]:
    """open_live(...) with a reader thread; always stopped, read to EOF and closed."""
    capture = open_live(*args, **kwargs)  # type: ignore[arg-type]
    try:
        reader = StreamReader(capture.fd)
        yield capture, reader
        capture.stop()
        reader.join(HANG)
        assert not reader.is_alive(), "the stream did not reach EOF after stop()"
    finally:
        capture.stop()
        capture.close()


def packets(data: bytes, tmp_path: Path, name: str = "live.pcapng") -> tuple[list, CaptureStats]:
    """The stream read back with our capture reader."""
    path = tmp_path / name
    path.write_bytes(data)
    stats = CaptureStats()
    return list(read_packets(str(path), stats)), stats


def block_types(data: bytes) -> list[int]:
    """The pcapng block types of a (little-endian) stream, in order."""
    types, at = [], 0
    while at + 8 <= len(data):
        kind, size = struct.unpack_from("<II", data, at)
        types.append(kind)
        at += size
    return types


@pytest.mark.parametrize("engine", ENGINES)
def test_loopback_capture_holds_the_requests_and_only_the_filtered_port(
    engine: str, tmp_path: Path
) -> None:
    started = time.time()
    with http_server() as port, http_server() as other:
        with capturing(["lo"], bpf=f"tcp port {port}", engine=engine) as (capture, reader):
            assert (capture.engine, capture.interfaces) == (engine, ["lo"])
            fetch(port, "/first")
            assert reader.wait_for(b"GET /first "), "the request did not reach the stream"
            fetch(other, "/elsewhere")
            fetch(port, "/second")
            assert reader.wait_for(b"GET /second ")
        capture.stop()  # idempotent, also after close()
        capture.close()
        drops, received = capture.drops(), capture.received()

    got, stats = packets(bytes(reader.data), tmp_path)
    assert stats.warnings == []
    assert stats.link_types == {1: len(got)}  # loopback is Ethernet with zero addresses
    assert all(started <= p[0] <= time.time() for p in got)  # capture times, in seconds
    assert all(port in (p[3], p[5]) for p in got)  # the filter let nothing else through
    sent = b"".join(bytes(p[9]) for p in got if p[5] == port)
    assert sent.count(b"GET /first ") == sent.count(b"GET /second ") == 1  # no loopback twins
    assert b"/elsewhere" not in bytes(reader.data)
    assert sum(1 for p in got if p[8] & (SYN | ACK) == SYN) == 2  # one SYN per connection
    assert drops == {"lo": 0}
    assert received == {"lo": len(got)}
    kinds = block_types(bytes(reader.data))  # section, interface, packets, statistics
    assert kinds[:2] == [0x0A0D0D0A, 1] and kinds[-1] == 5 and kinds.count(6) == len(got)


@pytest.mark.parametrize("engine", ENGINES)
def test_snapshot_length_cuts_frames_and_keeps_their_length(engine: str, tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with (
            capturing(["lo"], bpf=f"tcp port {port}", engine=engine, snaplen=80) as (_c, reader),
            socket.create_connection(("127.0.0.1", port)) as client,
        ):
            client.sendall(b"x" * 1000)
            assert reader.wait_for(b"x" * 10)
    got, stats = packets(bytes(reader.data), tmp_path)
    (kept,) = [len(p[9]) for p in got if p[9]]
    assert 0 < kept <= 80 - 14 - 20 - 20  # what is left after Ethernet, IPv4 and TCP headers
    assert stats.truncated_packets == 1  # the original length was kept


def test_dumpcap_ending_by_itself_is_told(tmp_path: Path) -> None:
    if shutil.which("dumpcap") is None:
        pytest.skip("dumpcap not installed")
    with capturing(["lo"], bpf="tcp port 9", engine="dumpcap") as (capture, reader):
        assert capture.error is None
        os.kill(capture._proc.pid, signal.SIGKILL)  # type: ignore[attr-defined]
        reader.join(HANG)
        assert capture.error == "dumpcap was killed (signal 9)"


@pytest.mark.parametrize("engine", ENGINES)
def test_each_interface_has_its_link_type_and_any_is_linux_cooked(
    engine: str, tmp_path: Path
) -> None:
    with http_server() as port:
        with capturing(["lo", "any"], bpf=f"tcp port {port}", engine=engine) as (capture, reader):
            fetch(port, "/twice")
            assert reader.wait_for(b"GET /twice ", count=2)
        drops = capture.drops()

    got, stats = packets(bytes(reader.data), tmp_path)
    assert stats.warnings == []
    assert set(stats.link_types) == {1, 113}  # Ethernet (lo) and Linux SLL (any)
    assert stats.link_types[1] == stats.link_types[113]
    assert all(port in (p[3], p[5]) for p in got)
    assert b"".join(bytes(p[9]) for p in got).count(b"GET /twice ") == 2
    assert set(drops) == {"lo", "any"} and all(isinstance(n, int) for n in drops.values())


@pytest.mark.parametrize("engine", ENGINES)
def test_stop_keeps_what_was_captured_just_before(engine: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with (
            capturing(["lo"], bpf=f"tcp port {port}", engine=engine) as (capture, reader),
            socket.create_connection(("127.0.0.1", port)) as client,
        ):
            client.sendall(b"LAST WORDS")
            capture.stop()  # at once: the packet is still on its way to the engine
    assert b"LAST WORDS" in reader.data


@pytest.mark.parametrize("engine", ENGINES)
def test_close_ends_a_capture_nobody_reads(engine: str) -> None:
    """More traffic than the pipe holds, never read: close() still ends everything."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        capture = open_live(["lo"], bpf=f"tcp port {port}", engine=engine)
        try:
            with socket.create_connection(("127.0.0.1", port)) as client:
                peer, _ = server.accept()
                with peer:
                    sink = threading.Thread(target=lambda: _swallow(peer), daemon=True)
                    sink.start()
                    client.sendall(os.urandom(1 << 16) * 64)  # 4 MiB
                    client.shutdown(socket.SHUT_WR)
                    sink.join(HANG)
            time.sleep(0.3)  # let the engine fill its pipe
        finally:
            started = time.monotonic()
            capture.close()
        assert time.monotonic() - started < 3 * HANG
        capture.close()


def _swallow(sock: socket.socket) -> None:
    while sock.recv(1 << 16):
        pass


def test_ring_files_of_a_live_stream_each_read(tmp_path: Path) -> None:
    """A real stream (scapy engine: statistics blocks at the end) cut into ring files."""
    with (
        http_server() as port,
        capturing(["lo"], bpf=f"tcp port {port}", engine="scapy") as (_capture, reader),
    ):
        for i in range(5):
            fetch(port, f"/ring{i}")
        assert reader.wait_for(b"GET /ring4 ")
    whole, _stats = packets(bytes(reader.data), tmp_path)
    writer = RingWriter(str(tmp_path / "ring.pcapng"), megabytes=0.002)
    for at in range(0, len(reader.data), 1000):
        writer.write(bytes(reader.data[at : at + 1000]))
    writer.close()
    assert len(writer.paths) > 2
    parts = []
    for path in writer.paths:
        stats = CaptureStats()
        parts += list(read_packets(path, stats))
        assert stats.warnings == []
    assert [(p[0], bytes(p[9])) for p in parts] == [(p[0], bytes(p[9])) for p in whole]


@pytest.mark.parametrize("engine", ENGINES)
def test_unknown_interface_names_the_real_ones(engine: str) -> None:
    with pytest.raises(LiveError) as caught:
        open_live(["nosuch0"], engine=engine)
    message = str(caught.value)
    assert "nosuch0" in message and "lo" in message and "\n" not in message


@pytest.mark.parametrize("engine", ENGINES)
def test_invalid_filter_quotes_libpcap(engine: str) -> None:
    with pytest.raises(LiveError) as caught:
        open_live(["lo"], bpf="tcp port ***", engine=engine)
    message = str(caught.value)
    assert message == (
        'invalid capture filter "tcp port ***": can\'t parse filter expression: syntax error'
    )


NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all"]


def _as_nobody(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*NOBODY, sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )


@pytest.mark.parametrize(
    ("engine", "fix"),
    [
        pytest.param(
            None,
            "setcap cap_net_raw,cap_net_admin+eip",
            marks=pytest.mark.skipif(shutil.which("dumpcap") is None, reason="no dumpcap"),
        ),
        ("scapy", "setcap cap_net_raw+eip"),
    ],
)
def test_no_permission_says_how_to_get_it(engine: str | None, fix: str) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    if _as_nobody("import analyzer.sources.live").returncode != 0:
        pytest.skip(f"{sys.executable} or the project cannot be run by nobody")
    done = _as_nobody(
        "import sys\n"
        "from analyzer.sources.live import LiveError, open_live\n"
        f"try:\n    open_live(['lo'], engine={engine!r})\n"
        "except LiveError as exc:\n    print(exc)\n    sys.exit(3)\n"
    )
    assert done.returncode == 3, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("no permission to capture on lo: run as root")
    assert fix in lines[0]


def test_without_dumpcap_scapy_captures(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no dumpcap on PATH
    with pytest.raises(LiveError, match="dumpcap not found"):
        open_live(["lo"], engine="dumpcap")
    with capturing(["lo"], bpf="tcp port 9") as (capture, _reader):
        assert capture.engine == "scapy"


def test_a_dumpcap_we_may_not_run_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Debian's dumpcap may be executable by the wireshark group only."""
    (tmp_path / "dumpcap").write_bytes(b"")
    (tmp_path / "dumpcap").chmod(0o644)
    monkeypatch.setenv("PATH", str(tmp_path))
    for engine in ("dumpcap", None):
        with pytest.raises(LiveError) as caught:
            open_live(["lo"], engine=engine)
        assert str(caught.value) == (
            f"no permission to run {tmp_path}/dumpcap: run as root, or add your user to the "
            "wireshark group"
        )


def test_list_interfaces_has_loopback_and_any() -> None:
    names = list_interfaces()
    assert "lo" in names and names[-1] == "any"


def test_cooked_filters_read_past_the_missing_header() -> None:
    """On ``any`` the kernel filter sees no SLL header: offsets move, and the packet-type and
    protocol fields become the kernel's ancillary loads (libpcap's fix_program)."""

    def loads(program: list[tuple[int, int, int, int]]) -> list[int]:
        return [k for code, _jt, _jf, k in program if code & 0x07 in (0, 1) and code & 0xE0 == 0x20]

    assert loads(compile_filter("inbound and ip", 113, 1000)) == [0, 14]
    cooked = compile_filter("inbound and ip", 113, 1000, cooked=True)
    assert loads(cooked) == [SKF_AD_OFF + SKF_AD_PKTTYPE, SKF_AD_OFF + SKF_AD_PROTOCOL]
    assert loads(compile_filter("ip[9] == 6", 113, 1000, cooked=True)) == [SKF_AD_OFF, 9]
    with pytest.raises(LiveError, match="capture with dumpcap"):
        compile_filter("ether[2] == 0", 113, 1000, cooked=True)


def test_vlan_tags_the_kernel_took_off_are_put_back(tmp_path: Path) -> None:
    """Frames as the scapy engine rebuilds them (Ethernet, and Linux SLL from a cooked
    socket's address) with the 802.1Q tag restored, read by our reader as tagged TCP."""
    ip = bytes.fromhex("450000280001000040060000") + socket.inet_aton("127.0.0.1") * 2
    tcp = struct.pack(">HHIIBBHHH", 40000, 80, 1, 0, 0x50, SYN, 1024, 0, 0)
    ethernet = b"\0" * 12 + b"\x08\x00" + ip + tcp
    address = ("eth0", 0x0800, 0, 1, b"\x02\0\0\0\0\x01")  # host, Ethernet, its MAC
    frames = [
        (1, _frame(memoryview(ethernet), (0x8100, 7), None)),
        (113, _frame(memoryview(ip + tcp), (0x8100, 7), address)),
        (113, _frame(memoryview(ip + tcp), None, address)),
    ]
    assert frames[0][1][12:18] == b"\x81\x00\x00\x07\x08\x00"
    assert frames[1][1][14:20] == b"\x81\x00\x00\x07\x08\x00"
    for linktype, frame in frames:
        path = tmp_path / f"{linktype}.pcap"
        header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
        record = struct.pack("<IIII", 1, 0, len(frame), len(frame))
        path.write_bytes(header + record + frame)
        stats = CaptureStats()
        (packet,) = read_packets(str(path), stats)
        assert (packet[3], packet[5], packet[8]) == (40000, 80, SYN)
        assert stats.warnings == []
