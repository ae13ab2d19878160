"""Decrypted TLS as a packet source: tshark decrypts, we get each direction's plaintext in order.

One tshark pass over the capture, with the key log (NSS ``SSLKEYLOGFILE`` format) or the server's
RSA private key, prints one line per frame that carries TLS or ends a connection: time, TCP stream
index, endpoints, TCP flags, whether it holds a ClientHello, and the decrypted application data of
every TLS record completed in that frame (``data.data``, hex). HTTP, HTTP/2 and the heuristic
sub-dissectors of TLS are disabled, so tshark hands every decrypted record, whole and exactly once,
to its plain "data" dissector. With HTTP enabled, TLS re-assembles records for HTTP and hands the
same bytes over again. (TLS on ports tshark maps to another protocol, e.g. 993 to IMAP, goes to
that dissector and yields nothing here; none of those is HTTP.)

:func:`read_decrypted` turns those lines into the tuples :func:`~analyzer.sources.pcapfile.
read_packets` yields, with synthetic TCP, so :class:`~analyzer.flows.tcp.TcpReassembler` reads
them unchanged: a SYN and SYN-ACK when a connection first yields plaintext (timed at its
ClientHello), sequence numbers that are each direction's plaintext byte offsets, and the FIN/RST
tshark saw. A record's time and frame number are those of the frame that completed it (tshark's
``frame.number``: the packet Wireshark shows the decrypted request in).

Rejected alternatives: the export-PDU tap (``-U "OSI layer 7"``) exports only records a
sub-dissector claimed, and exports bytes again each time HTTP asks TLS to re-assemble; ``-z
follow,tls,raw`` buffers whole streams inside tshark until the end and drops timestamps; pyshark
builds Python objects per packet.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from analyzer.model import CaptureStats
from analyzer.sources.pcapfile import CaptureError

TSHARK_MISSING = "tshark not found: install it (apt-get install tshark) to decrypt TLS"

#: One output line (one frame's fields) longer than this is skipped with a warning.
MAX_LINE = 16 << 20
#: Connections tracked at once; beyond this the oldest tenth are forgotten.
MAX_STREAMS = 100_000

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
SEQ_MOD = 1 << 32

#: The ``-T fields`` columns, in output order.
FIELDS = (
    "frame.time_epoch",
    "tcp.stream",
    "ip.src",
    "ipv6.src",
    "tcp.srcport",
    "ip.dst",
    "ipv6.dst",
    "tcp.dstport",
    "tcp.flags",
    "tls.record.content_type",
    "tls.handshake.type",
    "data.data",
    "frame.number",
    # the accounting of ciphertext (see ``FieldDecoder``); a line without them (a shorter field
    # list) is read as before and tells of no hole
    "tcp.seq",
    "tcp.len",
    "tcp.ack",
    "tcp.time_relative",
    "tls.record.length",
)
#: Fields of a line without the accounting columns.
BASE_FIELDS = 13
#: What a hole in a direction's plaintext counts for in its synthetic sequence numbers: how much
#: plaintext was lost is unknown (records lost whole or in part), so it is made larger than any
#: body the HTTP reader could think it falls inside (it then hunts for the next message and counts
#: the stretch lost, as for a cleartext gap); eight of them still fit in half the sequence space.
HOLE = 1 << 28
#: Dissectors that would claim decrypted bytes before the "data" dissector: HTTP (by port 443 or
#: ALPN), HTTP/2, SIP (by port 5061), and the heuristic sub-dissectors registered on TLS in
#: tshark 4.0.
DISABLED = ("http", "http2", "sip", "rdpmt", "mq", "5gli", "fix", "credssp", "aim")
_PREFS = (
    "tcp.calculate_timestamps:TRUE",  # tcp.time_relative: when each connection began
    "tcp.desegment_tcp_streams:TRUE",
    "tcp.reassemble_out_of_order:TRUE",
    "tls.desegment_ssl_records:TRUE",
    "tls.desegment_ssl_application_data:TRUE",
)
_FILTER = "tls or tcp.flags.fin == 1 or tcp.flags.reset == 1 or tcp.analysis.ack_lost_segment"
_STDERR_KEEP = 4096  # bytes of tshark's stderr read back for a failure message

Packet = tuple[float, int, bytes, int, bytes, int, int, int, int, bytes, int]


def tshark_command(path: str, secret: str, tshark: str = "tshark") -> list[str]:
    """The tshark command line that prints decrypted records of ``path``.

    ``secret`` is a key log file, or a PEM RSA private key file (detected by its content: RSA key
    exchange only, no forward secrecy).
    """
    cmd = [tshark, "-r", path, "-n", "-Q"]
    for pref in _PREFS:
        cmd += ["-o", pref]
    if _is_private_key(secret):
        cmd += ["-o", f'uat:rsa_keys:"{_uat_escape(secret)}",""']
    else:
        cmd += ["-o", f"tls.keylog_file:{secret}"]
    for proto in DISABLED:
        cmd += ["--disable-protocol", proto]
    cmd += ["-Y", _FILTER, "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,"]
    for name in FIELDS:
        cmd += ["-e", name]
    return cmd


def read_decrypted(
    path: str,
    keylog: str,
    stats: CaptureStats,
    first_frame: int = 1,
    decoder: FieldDecoder | None = None,
) -> Iterator[Packet]:
    """Yield the decrypted TLS connections of ``path`` as synthetic TCP packet tuples.

    Tuples have ``read_packets``' shape: ``(ts, 6, src, sport, dst, dport, seq, ack, flags,
    payload, frame)``, frame numbers counted from ``first_frame`` as ``read_packets`` counts.
    Checks run before this returns: no tshark, or an unreadable capture or key file, raise
    :class:`CaptureError`. A key log that decrypts nothing, or tshark failing on the file, only
    adds warnings to ``stats``; packet and byte counters are left to ``read_packets``.
    ``decoder`` (made here when not given) is the :class:`FieldDecoder` that reads tshark's
    output: the caller reads which connections it decrypted, and the holes it found, from it.
    """
    tshark = shutil.which("tshark")
    if tshark is None:
        raise CaptureError(TSHARK_MISSING)
    for what, name in (("capture", path), ("TLS key file", keylog)):
        if not os.path.isfile(name):
            raise CaptureError(f"{name}: no such {what}")
        if not os.access(name, os.R_OK):
            raise CaptureError(f"{name}: {what} not readable")
    if decoder is None:
        decoder = FieldDecoder(first_frame)
    return _run(tshark_command(path, keylog, tshark), keylog, stats, decoder)


@dataclass(slots=True)
class _Side:
    """One direction of a stream (by its sender): plaintext numbering, ciphertext accounting."""

    sent: int = 0  # plaintext bytes so far, with ``HOLE`` for each stretch that yielded none
    tls_end: int = 1  # tshark's relative sequence number past the TLS records it dissected
    acked: int = 0  # the highest relative number the peer acknowledged
    fin: int | None = None  # relative sequence number of this side's FIN
    rst: int | None = None  # and of its RST
    open_hole: bool = False  # a hole that no packet of this side went past yet
    closed: bool = False  # a FIN of this side was handed on


@dataclass(slots=True)
class _Stream:
    """What we know of one TCP stream (tshark's ``tcp.stream`` index) that carried TLS."""

    client: tuple[bytes, int] | None = None  # sender of the ClientHello
    server: tuple[bytes, int] | None = None  # its peer (known once it yielded plaintext)
    hello_ts: float | None = None
    start: float | None = None  # capture time of its first packet (SYN), as tshark counts it
    opened: bool = False  # SYN / SYN-ACK emitted: it yielded plaintext
    sides: dict[tuple[bytes, int], _Side] = field(default_factory=dict)  # by sender
    last: tuple[float, int] = (0.0, 0)  # time and frame of its latest line
    undecrypted: int = 0  # its TLS records of application data tshark could not decrypt
    holes: int = 0  # stretches of its ciphertext that the capture lacks or tshark never read

    def side(self, end: tuple[bytes, int]) -> _Side:
        got = self.sides.get(end)
        if got is None:
            got = self.sides[end] = _Side()
        return got


class FieldDecoder:
    """Turns tshark's field lines (``FIELDS``, tab-separated) into packet tuples.

    Sans-I/O: :meth:`line` takes one output line and returns the tuples it stands for;
    :meth:`finish`, at the end of the output, the last ones.

    Holes. Each direction's plaintext is numbered by its byte offsets, so a stretch of its
    ciphertext that yielded no plaintext would leave no trace. Two kinds are counted, and each
    becomes a hole of ``HOLE`` bytes in that direction's synthetic sequence numbers, at the
    point it was found: the reassembler then reports a gap, and the HTTP reader counts the
    stretch lost (a client's: a request-lost blind spot), as for a cleartext TCP gap.

    - TLS records of application data that tshark dissected but could not decrypt (TLS 1.3: a
      record with no inner content type; TLS 1.2: more application-data records than
      plaintexts in the frame).
    - TCP bytes tshark never dissected as TLS records: the capture lacks them (a TCP gap; tshark
      then reads nothing more of that direction) or they could not be framed. The records'
      lengths add up to where the dissected bytes end (``tls.record.length``, from tshark's
      relative sequence number 1); the direction's FIN, its RST, or the highest number its peer
      acknowledged say where its bytes ended. Counted when the direction ends (FIN), the
      connection is reset, or the output ends; a segment that came late (reordered, or
      retransmitted) and was read by then is no hole. A FIN the capture missed takes one number.

    A hole no later packet of its direction went past (the last bytes of a direction, before
    an RST or the end of the capture) is carried by a synthetic FIN, so the reassembler sees it.

    Each connection that yielded plaintext is listed in ``opened`` with the capture time of its
    first packet (``tcp.time_relative`` 0), so that the cleartext read can tell which of the
    connections on a reused address pair it is (:func:`connection_key`).
    """

    def __init__(self, first_frame: int = 1) -> None:
        self.frames = first_frame - 1  # added to tshark's frame numbers (a file in a chain)
        self.streams: dict[int, _Stream] = {}
        self.seen = 0  # connections with TLS
        self.decrypted = 0  # connections that yielded plaintext
        self.bad_lines = 0
        # (client address, port, server address, port, start time) of each connection that
        # yielded plaintext, in the order they did; start None when tshark gave no time
        # (a deque: a stream's reader thread appends while the reading side takes them)
        self.opened: deque[tuple[bytes, int, bytes, int, float | None]] = deque()
        self.tcp_holes = 0  # holes of the capture (TCP gaps) in connections that yielded plaintext
        self.undecrypted = 0  # records not decrypted in connections that yielded plaintext
        self.damaged = 0  # connections that yielded plaintext and had either
        self.last_ts: float | None = None  # capture time of the latest frame tshark printed
        # tshark stopped before the end of the capture (it failed, or fell behind a stream):
        # what the capture holds after ``last_ts`` was not decrypted (see ``cutoff``)
        self.broken = False

    @property
    def cutoff(self) -> float | None:
        """When the pass broke off: a decrypted connection with packets after this time was
        not read whole (its later requests are unknown). None when the pass read it all."""
        if not self.broken:
            return None
        return self.last_ts if self.last_ts is not None else float("-inf")

    def line(self, raw: bytes) -> list[Packet]:
        """Tuples for one frame: none, its data/FIN/RST, or SYN + SYN-ACK + data on first data."""
        f = raw.rstrip(b"\r\n").split(b"\t")
        if len(f) != len(FIELDS) and len(f) != BASE_FIELDS:
            self.bad_lines += 1
            return []
        try:
            ts = float(f[0])
            index = int(f[1])
            src = _address(f[2], f[3])
            dst = _address(f[5], f[6])
            sport = int(_last(f[4]))
            dport = int(_last(f[7]))
            flags = int(_last(f[8]), 16)
            items = [h for h in f[11].split(b",") if h]
            payload = b"".join(bytes.fromhex(h.decode("ascii")) for h in items)
            frame = self.frames + int(f[12])
            seq, tcp_len, ack, rel = (_number(f, i) for i in range(BASE_FIELDS, BASE_FIELDS + 4))
            lengths = [int(n) for n in f[17].split(b",") if n] if len(f) > 17 else []
        except (ValueError, OSError):
            self.bad_lines += 1
            return []
        if self.last_ts is None or ts > self.last_ts:
            self.last_ts = ts
        # a frame whose records were all undecrypted (TLS 1.3) has record lengths only
        is_tls = bool(f[9] or f[10] or lengths)
        s = self.streams.get(index)
        if s is None:
            if not is_tls:
                return []  # a FIN/RST of a connection that never showed TLS
            s = self._new(index)
            if rel is not None:
                s.start = ts - rel
        s.last = (ts, frame)
        if s.client is None and b"1" in f[10].split(b","):
            s.client, s.hello_ts = (src, sport), ts
        me, peer = s.side((src, sport)), s.side((dst, dport))
        if ack is not None and flags & ACK:
            peer.acked = max(peer.acked, int(ack))
        if is_tls:
            me.tls_end += sum(5 + n for n in lengths)
            types = [t for t in f[9].split(b",") if t]
            lost = len(lengths) - len(types) + max(0, types.count(b"23") - len(items))
            if lost > 0 and lengths:  # records tshark could not decrypt: their plaintext is a hole
                s.undecrypted += lost
                self._hole(me)
        else:
            payload = b""  # data.data of something that is not a TLS record
        if seq is not None:
            if flags & FIN and me.fin is None:
                me.fin = int(seq) + (int(tcp_len) if tcp_len is not None else 0)
            if flags & RST:
                me.rst = int(seq)
        out: list[Packet] = []
        if payload and not s.opened:
            out += self._open(s, src, sport, dst, dport, ts, frame)
        if not s.opened:
            return out
        if flags & FIN:
            self._tcp_hole(s, me)  # where its bytes end is known: what tshark never read
        if flags & RST:  # the connection ends: holes of either side, carried past
            for end in s.sides:
                self._tcp_hole(s, s.sides[end])
            out += self._carry(s, ts, frame)
        if not (payload or flags & (FIN | RST)):
            return out
        out.append(
            (
                ts,
                6,
                src,
                sport,
                dst,
                dport,
                1 + me.sent,
                1 + peer.sent,
                ACK | PSH | flags & (FIN | RST),
                payload,
                frame,
            )
        )
        me.sent += len(payload)
        if payload or flags & FIN:
            me.open_hole = False
        if flags & FIN:
            me.closed = True
        return out

    def finish(self) -> list[Packet]:
        """The output ended: count what each connection that yielded plaintext and did not end
        lacks, and carry its holes past (synthetic FINs). Also totals the damage."""
        out: list[Packet] = []
        for s in self.streams.values():
            if not s.opened:
                continue
            for side in s.sides.values():
                if not side.closed:
                    self._tcp_hole(s, side)
            out += self._carry(s, *s.last)
        for s in self.streams.values():
            self._total(s)
        self.streams.clear()
        return out

    def _hole(self, side: _Side) -> None:
        side.sent += HOLE
        side.open_hole = True

    def _tcp_hole(self, s: _Stream, side: _Side) -> None:
        """Bytes of ``side`` tshark never dissected as TLS, now that their end is known."""
        end = side.fin if side.fin is not None else max(side.acked, side.rst or 0)
        missing = (end - side.tls_end) % SEQ_MOD
        if missing >= SEQ_MOD >> 1 or (missing == 1 and side.fin is None):
            return  # nothing missing (or only the number of a FIN the capture missed)
        if missing:
            s.holes += 1
            side.tls_end = end
            self._hole(side)

    def _carry(self, s: _Stream, ts: float, frame: int) -> list[Packet]:
        """A synthetic FIN for each side of ``s`` whose hole no packet went past yet."""
        out: list[Packet] = []
        if s.client is None or s.server is None:
            return out
        for me, them in ((s.client, s.server), (s.server, s.client)):
            side, other = s.side(me), s.side(them)
            if side.open_hole and not side.closed:
                seq = 1 + side.sent
                out.append((ts, 6, *me, *them, seq, 1 + other.sent, ACK | FIN, b"", frame))
                side.open_hole, side.closed = False, True
                side.sent += 1  # the FIN takes a number: an RST after it comes past it
        return out

    def _total(self, s: _Stream) -> None:
        if s.opened:
            self.tcp_holes += s.holes
            self.undecrypted += s.undecrypted
            self.damaged += bool(s.holes or s.undecrypted)

    def _new(self, index: int) -> _Stream:
        if len(self.streams) >= MAX_STREAMS:
            for old in list(self.streams)[: MAX_STREAMS // 10]:
                self._total(self.streams.pop(old))
        s = self.streams[index] = _Stream()
        self.seen += 1
        return s

    def _open(
        self, s: _Stream, src: bytes, sport: int, dst: bytes, dport: int, ts: float, frame: int
    ) -> list[Packet]:
        """SYN and SYN-ACK for a connection about to yield its first plaintext."""
        s.opened = True
        self.decrypted += 1
        if s.client is None or s.client not in ((src, sport), (dst, dport)):
            s.client = (src, sport)  # no ClientHello seen: the first to speak is the client
        (c_ip, c_port) = s.client
        s_ip, s_port = (dst, dport) if s.client == (src, sport) else (src, sport)
        s.server = (s_ip, s_port)
        self.opened.append((c_ip, c_port, s_ip, s_port, s.start))
        t0 = s.hello_ts if s.hello_ts is not None and s.hello_ts <= ts else ts
        return [
            (t0, 6, c_ip, c_port, s_ip, s_port, 0, 0, SYN, b"", frame),
            (t0, 6, s_ip, s_port, c_ip, c_port, 0, 1, SYN | ACK, b"", frame),
        ]


def endpoints(a_ip: str, a_port: int, b_ip: str, b_port: int) -> tuple[str, int, str, int]:
    """A connection's two endpoints, the lower first: the same key from either side."""
    if (a_ip, a_port) > (b_ip, b_port):
        return (b_ip, b_port, a_ip, a_port)
    return (a_ip, a_port, b_ip, b_port)


#: How far apart two readings of a connection's first packet time may be and still name it: the
#: capture's own time, and tshark's printed time less the printed time since the connection's
#: first packet (rounding; connections on one address pair follow each other by far more).
SAME_START = 1e-4


def same_start(start: float | None, first_ts: float) -> bool:
    """Does the decrypted connection that began at ``start`` (tshark's reckoning; None when it
    gave none) name the connection the cleartext read saw begin at ``first_ts``?"""
    return start is not None and abs(start - first_ts) <= SAME_START


def _run(
    cmd: list[str], keylog: str, stats: CaptureStats, decoder: FieldDecoder
) -> Iterator[Packet]:
    long_lines = 0
    killed = False
    ended = False  # tshark closed its output: let it exit by itself
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        try:
            while True:
                raw = proc.stdout.readline(MAX_LINE)
                if not raw:
                    ended = True
                    yield from decoder.finish()
                    break
                if not raw.endswith(b"\n") and len(raw) >= MAX_LINE:
                    long_lines += 1
                    while raw and not raw.endswith(b"\n"):
                        raw = proc.stdout.readline(MAX_LINE)
                    continue
                yield from decoder.line(raw)
        finally:
            if not ended and proc.poll() is None:
                killed = True  # the consumer stopped early
                proc.kill()
            proc.stdout.close()
            code = proc.wait()
        err.seek(0)
        problem = _tshark_problem(err.read(_STDERR_KEEP))
    if code and not killed:
        decoder.broken = True
        stats.warn(f"tshark failed on this file (exit {code}): {problem or 'no message'}")
    if long_lines:
        stats.warn(f"TLS: {long_lines} frame(s) with over {MAX_LINE >> 20} MB of plaintext skipped")
    _decrypt_warnings(decoder, keylog, stats)


class StreamDecryptor:
    """tshark decrypting a capture that is still arriving (``live``, ``analyze -``).

    The capture's bytes are handed over with ``feed`` (exactly as read: tshark reads the same
    pcap/pcapng stream on its standard input, ``-r -``); a writer thread passes them on, so a slow
    tshark never stalls the cleartext read (up to ``FEED_BACKLOG`` chunks wait; beyond that the
    rest is not decrypted and a warning says so). A reader thread decodes tshark's lines
    (``-l``: flushed per packet) with :class:`FieldDecoder`; ``ready`` hands over the decrypted
    packet tuples decoded so far, ``close`` ends the input and returns the rest. tshark reads
    the key log again as new sessions appear, so keys a client writes while it runs are used.
    """

    FEED_BACKLOG = 4096

    def __init__(
        self, keylog: str, stats: CaptureStats, tshark: str | None = None, first_frame: int = 1
    ) -> None:
        tshark = tshark or shutil.which("tshark")
        if tshark is None:
            raise CaptureError(TSHARK_MISSING)
        if not os.path.isfile(keylog) or not os.access(keylog, os.R_OK):
            raise CaptureError(f"{keylog}: no such TLS key file, or not readable")
        self.keylog = keylog
        self.stats = stats
        self.decoder = FieldDecoder(first_frame)
        cmd = tshark_command("-", keylog, tshark)
        cmd.insert(1, "-l")
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        # its own session: a Ctrl-C that ends ``live`` or ``analyze -`` must not stop tshark
        # before it has decrypted what was captured up to then (the input's end stops it)
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            start_new_session=True,
        )
        self._in: queue.Queue[bytes | None] = queue.Queue(self.FEED_BACKLOG)
        self._out: queue.Queue[Packet] = queue.Queue()
        self.overflow = False
        self._writer = threading.Thread(target=self._write, daemon=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._writer.start()
        self._reader.start()

    def feed(self, chunk: bytes) -> None:
        """Hand over the next bytes of the capture (never blocks)."""
        if self.overflow:
            return
        try:
            self._in.put_nowait(chunk)
        except queue.Full:  # tshark cannot keep up
            self.overflow = True

    def ready(self) -> list[Packet]:
        """The decrypted packet tuples decoded so far (never blocks)."""
        out = []
        while True:
            try:
                out.append(self._out.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> list[Packet]:
        """End tshark's input, wait for its last lines; the packets not yet handed over."""
        self._in.put(None)
        self._writer.join()
        self._reader.join()
        code = self._proc.wait()
        self._err.seek(0)
        problem = _tshark_problem(self._err.read(_STDERR_KEEP))
        self._err.close()
        if code:
            problem = problem or "no message"
            self.stats.warn(f"tshark failed decrypting the stream (exit {code}): {problem}")
        self.decoder.broken = bool(code) or self.overflow
        if self.overflow:
            self.stats.warn("TLS: tshark fell behind the capture; the rest was not decrypted")
        for packet in self.decoder.finish():
            self._out.put(packet)
        _decrypt_warnings(self.decoder, self.keylog, self.stats)
        return self.ready()

    def _write(self) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        try:
            while (chunk := self._in.get()) is not None:
                stdin.write(chunk)
                stdin.flush()
        except OSError:  # tshark went away: its exit status says why
            pass
        finally:
            with contextlib.suppress(OSError):
                stdin.close()

    def _read(self) -> None:
        stdout = self._proc.stdout
        assert stdout is not None
        for raw in iter(lambda: stdout.readline(MAX_LINE), b""):
            if raw.endswith(b"\n"):
                for packet in self.decoder.line(raw):
                    self._out.put(packet)
            else:
                self.decoder.bad_lines += 1
        stdout.close()


def _decrypt_warnings(decoder: FieldDecoder, keylog: str, stats: CaptureStats) -> None:
    """What a decrypting pass could not do, as capture warnings. (The TCP gaps it found are
    counted in ``stats.gaps`` by the caller, which reads the plaintext on a reassembler of its
    own whose gaps are the holes it was given.)"""
    if decoder.bad_lines:
        stats.warn(f"TLS: {decoder.bad_lines} unreadable line(s) of tshark output skipped")
    if decoder.damaged:
        lost = []
        if decoder.tcp_holes:
            lost.append(
                f"{decoder.tcp_holes} stretch(es) of ciphertext missing from the capture (a TCP "
                "gap) or not read as TLS records"
            )
        if decoder.undecrypted:
            lost.append(f"{decoder.undecrypted} TLS record(s) that could not be decrypted")
        stats.warn(
            f"TLS: {decoder.damaged} decrypted connection(s) with {' and '.join(lost)}: "
            "their plaintext has a hole there (what it carried is unknown)"
        )
    name = os.path.basename(keylog)
    if decoder.seen and not decoder.decrypted:
        stats.warn(
            f"TLS: none of the {decoder.seen} TLS connection(s) could be decrypted with {name} "
            "(wrong or incomplete key log, or a key for another server?)"
        )
    elif decoder.seen > decoder.decrypted:
        stats.warn(
            f"TLS: {decoder.seen - decoder.decrypted} of {decoder.seen} TLS connection(s) gave no "
            f"plaintext with {name} (no key for their session, or no application data)"
        )


def _tshark_problem(stderr: bytes) -> str:
    """The first line of tshark's stderr that is not its routine chatter."""
    for line in stderr.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if line and not line.startswith("Running as user"):
            return line[:200]
    return ""


def _number(f: list[bytes], i: int) -> float | None:
    """Field ``i`` of a line as a number (its innermost occurrence); None when absent or empty."""
    if i >= len(f) or not f[i]:
        return None
    return float(_last(f[i]))


def _last(field: bytes) -> bytes:
    """The innermost occurrence of a field (tunnels repeat IP and port fields)."""
    return field.rsplit(b",", 1)[-1]


def _address(v4: bytes, v6: bytes) -> bytes:
    if v6:
        return socket.inet_pton(socket.AF_INET6, _last(v6).decode("ascii"))
    return socket.inet_pton(socket.AF_INET, _last(v4).decode("ascii"))


def _is_private_key(path: str) -> bool:
    """A PEM private key (use it as an RSA key) rather than a key log."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64 << 10)
    except OSError:
        return False
    return b"-----BEGIN" in head and b"PRIVATE KEY-----" in head


def _uat_escape(text: str) -> str:
    """Quote-safe text for a tshark UAT string field."""
    return text.replace("\\", "\\x5c").replace('"', "\\x22")
