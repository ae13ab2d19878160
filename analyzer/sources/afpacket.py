"""The ``scapy`` live engine: Linux packet sockets read by a thread into a pcapng pipe.

Used when dumpcap is missing or not wanted. The capture filter is compiled by libpcap (through
scapy's ctypes bindings) for the socket's link type and attached to the socket, so the kernel
drops what it rejects; frames are copied into pcapng blocks as bytes, never dissected.

Interfaces framed as Ethernet (Ethernet, loopback) are read raw: link type 1. Every other
interface, and ``any``, is read "cooked" as libpcap does: the kernel strips the link header, a
Linux SLL header (link type 113) is built from the socket address, and the filter's loads are
moved off that header (onto the kernel's packet-type and protocol fields where they read those).
On loopback each packet passes twice, outgoing then incoming; instructions put before the filter
reject the outgoing copy in the kernel (libpcap skips it after reading it). scapy's own listening
socket is not used: it hands both loopback copies over without the packet type that tells them
apart, and it cannot listen on ``any``.

Drops are the kernel's (PACKET_STATISTICS, read every half second and at the end); received
counts the frames written to the stream. Both end the stream as Interface Statistics Blocks.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import select
import socket
import sys
import threading
import time
from dataclasses import dataclass
from struct import Struct

from analyzer.sources.linklayer import LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL
from analyzer.sources.live import CLOSE_SECONDS, LiveCapture, LiveError

# linux/if_ether.h, linux/if_packet.h, asm/socket.h, linux/if_arp.h
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP, PACKET_MR_PROMISC = 1, 1
PACKET_STATISTICS = 6
PACKET_AUXDATA = 8
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
SO_TIMESTAMPNS = 35
ARPHRD_ETHER, ARPHRD_LOOPBACK = 1, 772
TP_STATUS_VLAN_VALID, TP_STATUS_VLAN_TPID_VALID = 0x10, 0x40
# BPF instruction classes and addressing modes, and the kernel's ancillary loads (linux/filter.h)
BPF_LD, BPF_LDX = 0x00, 0x01
BPF_ABS, BPF_IND, BPF_MSH = 0x20, 0x40, 0xA0
SKF_AD_OFF, SKF_AD_PROTOCOL, SKF_AD_PKTTYPE, SKF_AD_IFINDEX = -0x1000, 0, 4, 8
BPF_LD_W_ABS, BPF_JEQ_K, BPF_RET_K = 0x20, 0x15, 0x06
SLL_LEN = 16

#: Kernel receive buffer per socket: bursts wait there while the thread writes the pipe.
RCVBUF = 8 << 20
#: Pipe capacity asked for (the kernel may grant less): bursts wait there for the consumer.
PIPE_SIZE = 1 << 20
POLL_MS = 500  # the thread wakes at least this often to read the drop counters
BATCH, BATCH_BYTES = 512, 1 << 20  # read from one socket at a time, then written to the pipe
DRAIN = 100_000  # at most this many frames still read from each socket after stop()

_AUX = Struct("=IIIHHHH")  # tpacket_auxdata: status, len, snaplen, mac, net, vlan tci, vlan tpid
_TIMESPEC = Struct("@ll")
_PROMISC = Struct("=iHH8s")  # packet_mreq: ifindex, type, address length, address
_STATS = Struct("=II")  # tpacket_stats: packets, drops (the kernel resets them on each read)
_ANCILLARY = socket.CMSG_SPACE(_AUX.size) + socket.CMSG_SPACE(_TIMESPEC.size)
_SLL = Struct(">HHH8sH")  # packet type, ARPHRD type, address length, address, protocol
_TAG = Struct(">HH")
_EPB = Struct("<IIIIIII")  # type, length, interface, time high, time low, captured, original
_U32 = Struct("<I").pack
_PADS = (b"", b"\0", b"\0\0", b"\0\0\0")
_END = b"\0\0\0\0"  # opt_endofopt
_APP = b"oauth-traffic-analyzer (scapy engine)"


@dataclass(slots=True, eq=False)
class _Tap:
    """One interface's socket and its counts."""

    name: str
    sock: socket.socket
    linktype: int
    buf: bytearray  # receive buffer, reused: frames are copied out of it
    received: int = 0
    dropped: int = 0


class SocketCapture(LiveCapture):
    """Packet sockets on ``interfaces``, read by one thread writing pcapng into an os.pipe()."""

    engine = "scapy"

    def __init__(self, interfaces: list[str], bpf: str | None, snaplen: int):
        self.interfaces = interfaces
        self._taps: list[_Tap] = []
        self._stopping = False
        self._closed = False
        self._error: str | None = None
        try:
            for name in interfaces:
                self._taps.append(_open_tap(name, bpf, snaplen))
            self.fd, self._out = os.pipe()
            with contextlib.suppress(OSError):
                fcntl.fcntl(self._out, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
            self._wake = os.pipe()
            os.set_blocking(self._wake[1], False)
            os.write(self._out, _header(self._taps, bpf, snaplen))
        except BaseException:
            for tap in self._taps:
                tap.sock.close()
            raise
        self._thread = threading.Thread(target=self._run, name="live-capture", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._stopping or self._closed:
            return
        self._stopping = True
        with contextlib.suppress(OSError):
            os.write(self._wake[1], b"\0")

    def close(self) -> None:
        if self._closed:
            return
        self.stop()
        with contextlib.suppress(OSError):  # a writer blocked on the full pipe gets EPIPE
            os.close(self.fd)
        self._thread.join(CLOSE_SECONDS)
        self._closed = True
        for tap in self._taps:
            tap.sock.close()
        for fd in self._wake:
            os.close(fd)

    def drops(self) -> dict[str, int]:
        self._settle()
        return {tap.name: tap.dropped for tap in self._taps}

    def received(self) -> dict[str, int]:
        self._settle()
        return {tap.name: tap.received for tap in self._taps}

    @property
    def error(self) -> str | None:
        return self._error

    def _settle(self) -> None:
        if self._stopping:
            self._thread.join(2.0)

    def _run(self) -> None:
        """Copy frames into the pipe until stop(), then what the sockets still hold, the
        statistics blocks, and EOF."""
        live = {tap.sock.fileno(): (ifid, tap) for ifid, tap in enumerate(self._taps)}
        poller = select.poll()
        for fd in (*live, self._wake[0]):
            poller.register(fd, select.POLLIN)
        counted = time.monotonic()
        try:
            while live and not self._stopping:
                for fd, _events in poller.poll(POLL_MS):
                    if fd in live and self._pump(*live[fd]) < 0:
                        poller.unregister(fd)
                        del live[fd]
                if time.monotonic() - counted >= POLL_MS / 1000:
                    self._count()
                    counted = time.monotonic()
            for ifid, tap in live.values():  # what the kernel holds already
                left = DRAIN
                while left > 0 and (n := self._pump(ifid, tap)) > 0:
                    left -= n
            self._count()
            self._write([_statistics(self._taps)])
        except OSError:  # the consumer closed the stream
            pass
        finally:
            os.close(self._out)

    def _pump(self, ifid: int, tap: _Tap) -> int:
        """Move a batch of waiting frames into the pipe: how many, or -1 if the socket failed."""
        out: list[bytes] = []
        n = self._read(ifid, tap, out)
        self._write(out)
        return n

    def _read(self, ifid: int, tap: _Tap, out: list[bytes]) -> int:
        """Append waiting frames as EPB pieces (up to a batch): how many, -1 on a socket error."""
        view = memoryview(tap.buf)
        buffers = [tap.buf]
        cooked = tap.linktype == LINKTYPE_LINUX_SLL
        frames = taken = 0
        while frames < BATCH and taken < BATCH_BYTES:
            try:
                n, ancillary, _flags, address = tap.sock.recvmsg_into(
                    buffers, _ANCILLARY, socket.MSG_DONTWAIT
                )
            except BlockingIOError:
                break
            except OSError as exc:  # the interface went away
                self._error = f"capture on {tap.name} ended: {exc.strerror or exc}"
                return -1
            frames += 1
            ts, length, tag = 0, n, None
            for level, kind, data in ancillary:
                if level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= _AUX.size:
                    status, length, _snap, _mac, _net, tci, tpid = _AUX.unpack_from(data)
                    if status & TP_STATUS_VLAN_VALID:
                        tag = (tpid if status & TP_STATUS_VLAN_TPID_VALID else 0x8100, tci)
                elif kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
                    sec, nsec = _TIMESPEC.unpack_from(data)
                    ts = sec * 1_000_000_000 + nsec
            frame = _frame(view[:n], tag, address if cooked else None)
            size = len(frame)
            blen = 32 + size + (-size & 3)
            ts = ts or time.time_ns()
            out += (
                _EPB.pack(6, blen, ifid, ts >> 32, ts & 0xFFFFFFFF, size, length + size - n),
                frame,
                _PADS[-size & 3] + _U32(blen),
            )
            tap.received += 1
            taken += blen
        return frames

    def _write(self, pieces: list[bytes]) -> None:
        if not pieces:
            return
        view = memoryview(b"".join(pieces))
        while view:
            view = view[os.write(self._out, view) :]

    def _count(self) -> None:
        for tap in self._taps:
            with contextlib.suppress(OSError):
                raw = tap.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS.size)
                tap.dropped += _STATS.unpack(raw)[1]


def _open_tap(name: str, bpf: str | None, snaplen: int) -> _Tap:
    """A packet socket on ``name`` (``any``: every interface) with ``bpf`` in the kernel."""
    cooked = _hatype(name) not in (ARPHRD_ETHER, ARPHRD_LOOPBACK)
    linktype = LINKTYPE_LINUX_SLL if cooked else LINKTYPE_ETHERNET
    program = (
        compile_filter(bpf, linktype, snaplen, cooked) if bpf else [(BPF_RET_K, 0, 0, snaplen)]
    )
    program = _without_loopback_twins(name) + program
    kind = socket.SOCK_DGRAM if cooked else socket.SOCK_RAW
    try:
        # A named interface's socket hears nothing until bound (protocol 0), so no frame slips
        # in before the filter. "any" is never bound: what it heard before rejecting everything
        # is emptied out, then the filter goes on (libpcap's way).
        protocol = socket.htons(ETH_P_ALL) if name == "any" else 0
        sock = socket.socket(socket.AF_PACKET, kind, protocol)
    except PermissionError:
        raise LiveError(
            f"no permission to capture on {name}: run as root, or give Python the capture "
            f"capability: setcap cap_net_raw+eip {os.path.realpath(sys.executable)}"
        ) from None
    except OSError as exc:
        raise LiveError(f"cannot open a packet socket for {name}: {exc.strerror}") from None
    try:
        if name == "any":
            _attach(sock, [(BPF_RET_K, 0, 0, 0)])
            with contextlib.suppress(BlockingIOError):
                while True:
                    sock.recv(1, socket.MSG_DONTWAIT)
        _attach(sock, program)
        if name != "any":
            sock.bind((name, ETH_P_ALL))
            mreq = _PROMISC.pack(socket.if_nametoindex(name), PACKET_MR_PROMISC, 0, b"")
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
        except PermissionError:  # without CAP_NET_ADMIN: as much as net.core.rmem_max allows
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError as exc:
        sock.close()
        raise LiveError(f"cannot capture on {name}: {exc.strerror or exc}") from None
    return _Tap(name, sock, linktype, bytearray(max(snaplen - SLL_LEN, 1) if cooked else snaplen))


def _hatype(name: str) -> int | None:
    """The interface's ARPHRD type (1 Ethernet, 772 loopback, ...); None for ``any``."""
    try:
        with open(f"/sys/class/net/{name}/type", encoding="ascii") as fh:
            return int(fh.read())
    except (OSError, ValueError):
        return None


def compile_filter(
    expr: str, linktype: int, snaplen: int, cooked: bool = False
) -> list[tuple[int, int, int, int]]:
    """libpcap's BPF program for ``expr`` on ``linktype``: (code, jt, jf, k) per instruction.

    ``cooked``: the program will run on a cooked socket (no link header): it is rewritten as
    libpcap's ``fix_program`` does. Raises LiveError quoting libpcap's message.
    """
    try:
        from scapy.libs import winpcapy as pcap
    except (ImportError, OSError):
        raise LiveError(
            "cannot compile the capture filter: libpcap is missing (apt-get install libpcap0.8)"
        ) from None
    handle = pcap.pcap_open_dead(linktype, snaplen)
    program = pcap.bpf_program()
    try:
        if pcap.pcap_compile(handle, ctypes.byref(program), expr.encode(), 1, -1) < 0:
            why = (pcap.pcap_geterr(handle) or b"").decode("utf-8", "replace")
            raise LiveError(f'invalid capture filter "{expr}": {why}')
        insns = [(i.code, i.jt, i.jf, i.k) for i in program.bf_insns[: program.bf_len]]
        pcap.pcap_freecode(ctypes.byref(program))
    finally:
        pcap.pcap_close(handle)
    return _uncook(expr, insns) if cooked else insns


def _uncook(expr: str, insns: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Move a program compiled for Linux SLL onto a cooked socket, whose data starts after the
    (absent) SLL header: later offsets shrink by 16, the packet type and protocol fields become
    the kernel's ancillary loads, and any other header field cannot be filtered in the kernel."""
    fixed = []
    for code, jt, jf, k in insns:
        loads = code & 0x07 in (BPF_LD, BPF_LDX) and code & 0xE0 in (BPF_ABS, BPF_IND, BPF_MSH)
        if loads and k >= 0:  # negative: an ancillary load already
            if k >= SLL_LEN:
                k -= SLL_LEN
            elif k == 0:
                k = SKF_AD_OFF + SKF_AD_PKTTYPE
            elif k == 14:
                k = SKF_AD_OFF + SKF_AD_PROTOCOL
            else:
                raise LiveError(
                    f'capture filter "{expr}" reads link-layer fields the kernel does not keep '
                    "on a cooked capture (any, non-Ethernet interfaces): capture with dumpcap"
                )
        fixed.append((code, jt, jf, k))
    return fixed


def _without_loopback_twins(name: str) -> list[tuple[int, int, int, int]]:
    """Kernel filter instructions to put first: reject loopback's outgoing copy of each packet
    (the incoming copy follows), so it costs neither a read nor room in the socket's buffer."""
    outgoing = [
        (BPF_LD_W_ABS, 0, 0, SKF_AD_OFF + SKF_AD_PKTTYPE),
        (BPF_JEQ_K, 0, 1, socket.PACKET_OUTGOING),
        (BPF_RET_K, 0, 0, 0),
    ]
    if name != "any":
        return outgoing if _hatype(name) == ARPHRD_LOOPBACK else []
    try:
        loopback = socket.if_nametoindex("lo")
    except OSError:
        return []
    return [
        (BPF_LD_W_ABS, 0, 0, SKF_AD_OFF + SKF_AD_IFINDEX),
        (BPF_JEQ_K, 0, len(outgoing), loopback),
        *outgoing,
    ]


def _attach(sock: socket.socket, insns: list[tuple[int, int, int, int]]) -> None:
    from scapy.libs.structures import bpf_insn, sock_fprog

    array = (bpf_insn * len(insns))(*(bpf_insn(*insn) for insn in insns))
    program = sock_fprog(len(insns), ctypes.cast(array, ctypes.POINTER(bpf_insn)))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(program))


def _frame(data: memoryview, tag: tuple[int, int] | None, address: tuple | None) -> bytes:
    """The frame as libpcap writes it: Ethernet with the VLAN tag the kernel took off put back
    after the addresses; or, for a cooked socket (``address`` from recvmsg), a Linux SLL header
    built from the address, then the tag, then the packet."""
    if address is not None:
        _name, protocol, pkttype, hatype, hwaddr = address
        head = (pkttype, hatype, len(hwaddr), hwaddr[:8])
        if tag is None:
            return _SLL.pack(*head, protocol) + data
        return _SLL.pack(*head, tag[0]) + _TAG.pack(tag[1], protocol) + data
    if tag is None:
        return bytes(data)
    return b"".join((data[:12], _TAG.pack(*tag), data[12:]))


def _option(code: int, value: bytes) -> bytes:
    return Struct("<HH").pack(code, len(value)) + value + _PADS[-len(value) & 3]


def _block(kind: int, body: bytes) -> bytes:
    size = 12 + len(body)
    return _U32(kind) + _U32(size) + body + _U32(size)


def _header(taps: list[_Tap], bpf: str | None, snaplen: int) -> bytes:
    """Section header, then one interface description per tap (nanosecond timestamps)."""
    shb = Struct("<IHHq").pack(0x1A2B3C4D, 1, 0, -1) + _option(4, _APP) + _END
    blocks = [_block(0x0A0D0D0A, shb)]
    for tap in taps:
        options = _option(2, tap.name.encode()) + _option(9, b"\x09")
        if bpf:
            options += _option(11, b"\0" + bpf.encode())
        blocks.append(_block(1, Struct("<HHI").pack(tap.linktype, 0, snaplen) + options + _END))
    return b"".join(blocks)


def _statistics(taps: list[_Tap]) -> bytes:
    """One Interface Statistics Block per tap: isb_ifrecv (passed the filter), isb_ifdrop."""
    ts = time.time_ns()
    blocks = []
    for ifid, tap in enumerate(taps):
        body = Struct("<III").pack(ifid, ts >> 32, ts & 0xFFFFFFFF)
        body += _option(4, Struct("<Q").pack(tap.received + tap.dropped))
        body += _option(5, Struct("<Q").pack(tap.dropped)) + _END
        blocks.append(_block(5, body))
    return b"".join(blocks)
