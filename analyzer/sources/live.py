"""Live capture: packets from network interfaces as a pcapng byte stream on a file descriptor.

Two engines write the same stream. ``dumpcap`` (Wireshark's capture tool; the default when it is
on PATH) runs as a child process writing pcapng to a pipe. ``scapy`` (the fallback) reads Linux
packet sockets in a thread, with the capture filter compiled by libpcap through scapy's bindings
and run in the kernel (:mod:`analyzer.sources.afpacket`). The consumer reads :attr:`LiveCapture.fd`
like the output of ``dumpcap -w -`` whichever engine writes it.

Whatever can fail before the first packet (no permission, an unknown interface, an invalid
filter, no dumpcap) raises :class:`LiveError` from :func:`open_live`, one line for the user.

dumpcap delivers a packet up to ~0.25 s after it was captured on a quiet link (libpcap's
TPACKET_V3 blocks are handed over when full or when their timer expires; dumpcap flushes its pipe
after every batch); the scapy engine within milliseconds. dumpcap reports its packet counts only
when it exits, so :meth:`~LiveCapture.drops` of a running dumpcap capture is empty.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable
from types import TracebackType

#: The largest snapshot length dumpcap and libpcap accept.
MAX_SNAPLEN = 262144
#: How long dumpcap may take to open the interfaces and write the stream's first block.
START_SECONDS = 10.0
#: How long dumpcap runs on after stop(): libpcap's 0.25 s block timeout plus time for dumpcap
#: to write the last block, so the packets captured just before stop() are in the stream.
LINGER = 0.4
#: dumpcap's kernel buffer per interface, MiB. With its default, 2, dumpcap writing to /dev/null
#: dropped half the packets of a fast loopback transfer (frames of tens of KB); with 16, 0-6 %.
BUFFER_MB = 16
#: Pipe capacity asked for (the kernel may grant less): bursts wait there for the consumer.
PIPE_SIZE = 1 << 20
#: How long close() waits for the engine to finish its stream before it forces the end.
CLOSE_SECONDS = 5.0
_STDERR_LINES = 200  # dumpcap's messages kept (it writes a handful)
_SUMMARY = re.compile(r"Packets received/dropped on interface '(.*)': (\d+)/(\d+)")


class LiveError(Exception):
    """A capture that cannot start, said in one line with what to do about it."""


def list_interfaces() -> list[str]:
    """The network interfaces of this machine, in the kernel's order, then ``any``."""
    try:
        names = [name for _index, name in socket.if_nameindex()]
    except OSError:
        try:
            names = sorted(os.listdir("/sys/class/net"))
        except OSError:
            names = []
    return [*names, "any"]


def open_live(
    interfaces: list[str],
    bpf: str | None = None,
    engine: str | None = None,
    snaplen: int = MAX_SNAPLEN,
) -> LiveCapture:
    """Start capturing on ``interfaces`` with the capture filter ``bpf`` (libpcap syntax).

    ``engine`` None picks dumpcap when it is on PATH, else scapy. The interfaces, the filter and
    the permission to capture are checked before this returns: any problem raises
    :class:`LiveError`. The stream on the returned capture's ``fd`` starts at once.
    """
    names = list(dict.fromkeys(interfaces))
    if not names:
        raise LiveError(f"no interface to capture on (interfaces: {', '.join(list_interfaces())})")
    if not 1 <= snaplen <= MAX_SNAPLEN:
        raise LiveError(f"snapshot length {snaplen} is out of range (1 to {MAX_SNAPLEN})")
    bpf = bpf.strip() if bpf else None
    present = shutil.which("dumpcap", mode=os.F_OK)
    if engine is None:
        engine = "dumpcap" if present else "scapy"
    if engine == "dumpcap":
        if present is None:
            raise LiveError(
                "dumpcap not found: install it (apt-get install wireshark-common) or capture "
                "with --engine scapy"
            )
        dumpcap = shutil.which("dumpcap")
        if dumpcap is None:  # Debian's may be executable by group wireshark only
            raise LiveError(
                f"no permission to run {present}: run as root, or add your user to the "
                "wireshark group"
            )
        _check_names(names, lambda: _dumpcap_names(dumpcap))
        return DumpcapCapture(dumpcap, names, bpf, snaplen)
    if engine == "scapy":
        if not hasattr(socket, "AF_PACKET"):
            raise LiveError("the scapy engine reads Linux packet sockets: install dumpcap")
        _check_names(names)
        from analyzer.sources.afpacket import SocketCapture

        return SocketCapture(names, bpf, snaplen)
    raise LiveError(f"unknown capture engine {engine!r} (dumpcap, scapy)")


def _check_names(names: list[str], more: Callable[[], frozenset[str]] | None = None) -> None:
    """Refuse a name that is no interface here; ``more()`` gives names the engine adds."""
    known = list_interfaces()
    missing = [name for name in names if name not in known]
    if missing and more is not None:
        extra = more()
        missing = [name for name in missing if name not in extra]
    if missing:
        raise LiveError(f"no such interface: {', '.join(missing)} (interfaces: {', '.join(known)})")


def _dumpcap_names(dumpcap: str) -> frozenset[str]:
    """Capture sources dumpcap knows beyond the kernel's interfaces (nflog, bluetooth, ...)."""
    try:
        done = subprocess.run(
            [dumpcap, "-D"], capture_output=True, text=True, timeout=START_SECONDS, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(re.findall(r"^\d+\.\s+(\S+)", done.stdout, re.MULTILINE))


class LiveCapture(ABC):
    """A running capture: read the pcapng stream from ``fd``; stop(), read to EOF, close().

    ``fd`` belongs to the capture: read it (``os.read``, or a file object opened with
    ``closefd=False``), never close it; close() does.
    """

    engine: str  # "dumpcap" or "scapy"
    interfaces: list[str]
    fd: int  # read end of the stream; EOF soon after stop()

    @abstractmethod
    def stop(self) -> None:
        """End the capture; the stream reaches EOF soon. Idempotent, never blocks."""

    @abstractmethod
    def close(self) -> None:
        """Stop if needed and release everything: the engine ended, its fds closed."""

    @abstractmethod
    def drops(self) -> dict[str, int]:
        """Packets dropped per interface (kernel and engine), as known now; final after stop."""

    @abstractmethod
    def received(self) -> dict[str, int]:
        """Packets captured per interface, as known now; final after stop."""

    @property
    @abstractmethod
    def error(self) -> str | None:
        """Why the capture ended by itself (an interface went away, ...), or None."""

    def __enter__(self) -> LiveCapture:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class DumpcapCapture(LiveCapture):
    """``dumpcap -i IFACE -s SNAPLEN [-f BPF] ... -B 16 -n -w - -q``, its stdout the stream.

    dumpcap runs in its own process group, so a Ctrl-C at the terminal reaches only us and the
    capture ends through stop(), which loses nothing: a packet waits up to ~0.25 s in the
    kernel's block before dumpcap sees it, and dumpcap, once signalled, does not read what is
    still there. So a watcher thread sends SIGTERM :data:`LINGER` seconds after stop(); dumpcap
    then writes its statistics blocks, flushes and exits. The same thread reads dumpcap's
    stderr: its complaint when it cannot start, its per-interface counts when it exits.
    """

    engine = "dumpcap"

    def __init__(self, dumpcap: str, interfaces: list[str], bpf: str | None, snaplen: int):
        self.interfaces = interfaces
        self._dumpcap = dumpcap
        self._bpf = bpf
        self._stopping = False
        self._closed = False
        self._lines: list[str] = []
        self._counts: list[tuple[int, int]] = []  # (received, dropped) in interface order
        args = [dumpcap]
        for name in interfaces:  # -s and -f apply to the interface before them
            args += ["-i", name, "-s", str(snaplen)]
            if bpf:
                args += ["-f", bpf]
        args += ["-B", str(BUFFER_MB), "-n", "-w", "-", "-q"]
        try:
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise LiveError(f"cannot run {dumpcap}: {exc.strerror or exc}") from None
        self._wake = os.pipe()
        os.set_blocking(self._wake[1], False)
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self.fd = self._proc.stdout.fileno()
        with contextlib.suppress(OSError):  # bursts wait in the pipe, not in dumpcap's buffer
            fcntl.fcntl(self.fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        self._watcher = threading.Thread(target=self._watch, name="dumpcap-watch", daemon=True)
        self._watcher.start()
        _RUNNING.add(self)
        try:
            self._await_start()
        except BaseException:
            self._proc.kill()
            self._proc.wait()
            self._watcher.join(CLOSE_SECONDS)
            self._release()
            raise

    def _watch(self) -> None:
        """Read stderr to EOF; SIGTERM dumpcap LINGER seconds after stop() wrote to the wake
        pipe."""
        assert self._proc.stderr is not None
        err = self._proc.stderr.fileno()
        poller = select.poll()
        poller.register(err, select.POLLIN)
        poller.register(self._wake[0], select.POLLIN)
        term_at: float | None = None
        pending = b""
        while True:
            wait = None if term_at is None else max(0.0, term_at - time.monotonic()) * 1000
            for fd, _events in poller.poll(wait):
                if fd == self._wake[0]:
                    poller.unregister(fd)
                    term_at = time.monotonic() + LINGER
                    continue
                chunk = os.read(err, 4096)
                if not chunk:
                    self._line(pending)
                    return
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    self._line(line)
            if term_at is not None and time.monotonic() >= term_at:
                term_at = None
                self._terminate()

    def _line(self, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").strip()
        match = _SUMMARY.search(line)
        if match:
            self._counts.append((int(match[2]), int(match[3])))
        elif line and len(self._lines) < _STDERR_LINES:
            self._lines.append(line)

    def _terminate(self) -> None:
        if self._proc.returncode is None:
            with contextlib.suppress(OSError):
                self._proc.send_signal(signal.SIGTERM)

    def _await_start(self) -> None:
        """Return once the stream has its first bytes; raise LiveError if dumpcap gave up."""
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        deadline = time.monotonic() + START_SECONDS
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LiveError(
                    f"dumpcap did not start capturing on {', '.join(self.interfaces)} "
                    f"within {START_SECONDS:.0f} s"
                )
            events = poller.poll(left * 1000)
            if events and events[0][1] & select.POLLIN:
                return
            if events:  # hang-up without data: dumpcap exited
                break
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(CLOSE_SECONDS)
        self._watcher.join(CLOSE_SECONDS)
        raise LiveError(self._failure() or self._exit())

    def _failure(self) -> str | None:
        """dumpcap's complaint as one line (permission and filter errors say what to do)."""
        at = next((i for i, line in enumerate(self._lines) if line.startswith("dumpcap: ")), None)
        if at is None:
            return None
        said = self._lines[at].removeprefix("dumpcap: ").rstrip(".")
        detail = next(
            (m[1] for line in self._lines[at + 1 :] if (m := re.search(r"\(([^()]+)\)\.?$", line))),
            "",
        )
        if "permission" in said.lower():
            return (
                f"no permission to capture on {', '.join(self.interfaces)}: run as root, or let "
                f"dumpcap capture: setcap cap_net_raw,cap_net_admin+eip {self._dumpcap} and add "
                "your user to the wireshark group"
            )
        if "capture filter" in said.lower():
            return f'invalid capture filter "{self._bpf}": {detail or said}'
        return f"{said}: {detail}" if detail else said

    def stop(self) -> None:
        if self._stopping or self._closed:
            return
        self._stopping = True
        if self._watcher.is_alive():
            with contextlib.suppress(OSError):
                os.write(self._wake[1], b"\0")
        else:
            self._terminate()

    def close(self) -> None:
        if self._closed:
            return
        self.stop()
        _discard(self.fd, time.monotonic() + LINGER + CLOSE_SECONDS)  # dumpcap ends its stream
        try:
            self._proc.wait(CLOSE_SECONDS)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._watcher.join(CLOSE_SECONDS)
        self._release()

    def _release(self) -> None:
        self._closed = True
        _RUNNING.discard(self)
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream is not None:
                stream.close()
        for fd in self._wake:
            os.close(fd)

    def _settle(self) -> None:
        """Once dumpcap is ending (stopped, or its stream closed) wait briefly for its counts."""
        if not self._closed and (self._stopping or self._hung_up()):
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(LINGER + 2.0)
            self._watcher.join(2.0)

    def _hung_up(self) -> bool:
        """dumpcap has closed its end of the stream: it exited, or is exiting."""
        poller = select.poll()
        poller.register(self.fd, 0)  # POLLHUP is always reported
        return any(events & select.POLLHUP for _fd, events in poller.poll(0))

    def drops(self) -> dict[str, int]:
        self._settle()
        return {name: d for name, (_r, d) in zip(self.interfaces, self._counts, strict=False)}

    def received(self) -> dict[str, int]:
        self._settle()
        return {name: r for name, (r, _d) in zip(self.interfaces, self._counts, strict=False)}

    @property
    def error(self) -> str | None:
        self._settle()
        if self._proc.poll() in (None, 0):  # running, or ended by stop() (SIGTERM: status 0)
            return None
        return self._failure() or self._exit()

    def _exit(self) -> str:
        code = self._proc.returncode
        if code is not None and code < 0:
            return f"dumpcap was killed (signal {-code})"
        return f"dumpcap exited with status {code}"


_RUNNING: weakref.WeakSet[DumpcapCapture] = weakref.WeakSet()


@atexit.register
def _end_running() -> None:
    """A dumpcap left running when Python exits would capture on, unread: end it."""
    for capture in list(_RUNNING):
        capture._terminate()


def _discard(fd: int, deadline: float) -> None:
    """Read ``fd`` to EOF (or until ``deadline``), throwing the bytes away."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while (left := deadline - time.monotonic()) > 0:
        try:
            if poller.poll(left * 1000) and not os.read(fd, 1 << 16):
                return
        except BlockingIOError:
            continue
        except OSError:  # the consumer closed it already
            return
