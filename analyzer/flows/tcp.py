"""TCP reassembly: per-direction ordered byte streams out of captured segments.

Sans-I/O: ``TcpReassembler.feed`` takes one segment's fields and hands ordered bytes to a
``StreamConsumer`` per direction. It copes with out-of-order segments, retransmissions and overlaps
(first copy wins), captures that start mid-connection, sequence wrap-around, FIN/RST, idle
connections, and a cap on buffered out-of-order bytes per direction.

A retransmission whose bytes differ from the copy already taken (an injected segment, a corrupt
capture) is damage: which copy the receiver read is unknown. Overlapping bytes are compared with
the buffered out-of-order segments and with the latest bytes handed to the consumer (at least
``RECENT`` of them, and the whole latest segment; kept per direction only once delivered, so
the in-order path adds one append of bytes the consumer reads anyway, and bytes it skips are
never kept). Each such segment is counted per direction (``_Direction.conflicts``), told to the
consumer's optional ``conflict(ts)`` hook, and named in a capture warning when the connection
ends. Bytes handed on before that window, or skipped, cannot be compared.

Consumers expose ``skip``: the number of upcoming bytes they do not need (a body being skipped). The
reassembler drops those bytes by arithmetic alone, which is what keeps bulk transfers cheap.

Directions are keyed by ``(src, sport, dst, dport)`` as the capture reader gives them. For a
tunnelled packet the packed addresses carry the tunnel ids after the inner IP address (see
``analyzer.sources.linklayer``), so two tenants with the same inner addresses stay two
connections; ``ConnectionInfo`` holds the inner addresses as text and names the tunnel.

Control segments count as a receiver counts them (RFC 9293, RFC 5961), so that a stray, forged or
dropped one ends or splits nothing the receiver went on reading. A FIN ends a direction at its
sequence number (one behind the bytes already read is an old duplicate, ignored); the connection
ends when the bytes of both directions reached their FINs, and only then are the consumers closed
(each at the time its FIN was reached): bytes at or past a FIN show it was not the end (a bad
checksum, an expired TTL, an injection) and are read, with a capture warning; bytes before it that
the capture never held are a gap when the connection ends. An RST ends the connection only at
the sender's next sequence number; its bytes are no stream data. A SYN on a live connection is
ignored unless the peer answers it with a SYN-ACK (the addresses were reused: a new connection).
A connection's start is seen (``ConnectionInfo.syn_seen``) only with a SYN-ACK; a SYN the peer
answered otherwise is left out; data on a SYN (TCP Fast Open) starts at ISN + 1 and is read when
the SYN-ACK acknowledges it (see ``_opening``).

Absorption contract (what the capture reader may do without calling ``feed``): for a direction in
``dirs`` with nothing pending, a packet without SYN/FIN/RST whose sequence number is ``next_seq`` is
either a bare ACK (only ``last_ts`` moves) or carries ``n`` bytes that the consumer skips whole
(``skip >= n``; or a dead consumer whose ``skip`` is 0): ``next_seq`` and ``next_off`` advance by
``n`` and ``skip`` drops by ``n`` (not for the dead one). The native walk does the same for the
directions in ``grants``; ``settle`` hands what it absorbed back before the reassembler looks at a
direction again: the direction of every packet it is given (``absorb``, ``feed``, ``run``), both
directions of a connection it closes or whose FIN it reaches, and every direction before it
sweeps (consumers only ever touch their own direction's state). A FIN changes nothing here: the
direction keeps its consumer until the connection ends, and in-order bytes after the FIN are
absorbed or read like any others (the reassembler sees that they went past it when it next looks
at the FIN).
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import os
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from analyzer.model import CaptureStats
from analyzer.sources.linklayer import inner_address, tunnel_text

#: The native walk's interface this code speaks (``_walk.ABI``): take() gives back five values.
WALK_ABI = 2


def native_grant_table(walk: object) -> type | None:
    """The native walk's ``GrantTable`` when the built module speaks this code's interface;
    None for a build older than the code (a checkout updated without rebuilding it: ``pip
    install -e .``), which would fail mid-capture: the pure-Python reader serves instead."""
    if getattr(walk, "ABI", None) != WALK_ABI:
        return None
    return getattr(walk, "GrantTable", None)


try:  # the native record walk; absent when the package was installed without a C compiler
    from analyzer.sources import _walk
except ImportError:  # pragma: no cover - depends on the build
    GrantTable = None
else:
    GrantTable = native_grant_table(_walk)

#: Set to 1 to run the pure-Python reader even when the native walk is built.
PURE_PYTHON_ENV = "OAUTH_ANALYZER_PURE_PYTHON"


def native_walk_available() -> bool:
    """The native walk is built and not switched off by the environment."""
    return GrantTable is not None and os.environ.get(PURE_PYTHON_ENV, "") in ("", "0")


#: Packets kept per connection that has carried no data yet (SYN, SYN-ACK, ACK, retries).
_EMBRYO_PACKETS = 6
#: Packed address lengths of the flows the native walk keys: IPv4, alone or with one tunnel tag
#: (analyzer.sources.linklayer appends 5 bytes per tunnel id).
_WALKABLE = frozenset({4, 9})

#: Bytes handed to a consumer kept per direction to compare retransmissions with (at least this
#: many, at most twice as many, and always the whole latest segment).
RECENT = 8 * 1024

SEQ_MOD = 1 << 32
HALF = 1 << 31
#: The most bytes an ACK past a stream's last captured byte is taken to say were lost at its
#: end (``_tail``): the largest TCP window (65,535 << 14).
MAX_TAIL = 1 << 30

FIN = 0x01
SYN = 0x02
RST = 0x04
ACK = 0x10


class StreamConsumer(Protocol):
    """Receives one direction's ordered bytes."""

    skip: int  # upcoming bytes the consumer does not need; the reassembler drops them
    dead: bool  # the consumer gave up (not this protocol): stop buffering for it

    def data(self, data: memoryview | bytes, ts: float, frame: int = 0) -> None:
        """Ordered bytes from the packet captured at ``ts``, frame number ``frame`` (the
        packet whose copy of these bytes was used; 0 when the source numbers no frames)."""

    def gap(self, nbytes: int, ts: float) -> None: ...

    def close(self, ts: float) -> None: ...

    # Optional: ``conflict(ts)`` is called when a retransmission brought other bytes than the
    # copy this consumer was given (the first copy is kept; see the module docstring), and
    # ``resent(off, nbytes, ts)`` when a segment brought again ``nbytes`` already given, from
    # stream offset ``off`` (the consumer's first byte is offset 0; bytes it skipped and gaps
    # count): the peer may have read them only from this later copy.


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """Endpoints of a connection as first seen (``a`` sent the first packet we saw)."""

    a_ip: str
    a_port: int
    b_ip: str
    b_port: int
    first_ts: float
    # The connection's start was seen: a SYN-ACK (the server took a SYN), not just a SYN, which
    # may be a stray one on a connection begun before the capture (see ``_opening``)
    syn_seen: bool
    # The tunnel ids that keep this connection apart from others with the same addresses
    # ("VXLAN VNI 5001"); "" outside a keyed tunnel. The addresses above are the inner ones.
    tunnel: str = ""

    @property
    def conn_id(self) -> str:
        """Short stable id of the connection, like Zeek's uid (same capture, same id)."""
        text = f"{self.a_ip}|{self.a_port}|{self.b_ip}|{self.b_port}|{self.first_ts:.6f}"
        if self.tunnel:
            text += f"|{self.tunnel}"
        return "C" + hashlib.sha1(text.encode()).hexdigest()[:11]


class Connection(Protocol):
    """What the consumer factory returns: one consumer per direction plus a close hook."""

    a_to_b: StreamConsumer
    b_to_a: StreamConsumer

    def finish(self, ts: float) -> None: ...


ConsumerFactory = Callable[[ConnectionInfo], "Connection | None"]


class _Direction:
    __slots__ = (
        "ack",
        "conflicts",
        "conn",
        "consumer",
        "false_fins",
        "fin_off",
        "fin_ts",
        "last_ts",
        "next_off",
        "next_seq",
        "peer",
        "pending",
        "pending_bytes",
        "recopied",
        "seen",
        "seen_end",
        "syn",
    )

    def __init__(self, consumer: StreamConsumer, conn: _Conn) -> None:
        self.consumer = consumer
        self.conn = conn
        self.next_seq: int | None = None  # sequence number of the next byte we expect
        # the furthest acknowledgement number this direction sent: how far the peer's bytes
        # went, which tells of bytes at the end of the peer's stream the capture lacks (``_tail``)
        self.ack: int | None = None
        self.next_off = 0  # stream offset of that byte (unbounded; immune to wrap-around)
        # stream offset -> (bytes, ts, frame) of segments that came before the bytes they follow
        self.pending: dict[int, tuple[bytes, float, int]] = {}
        self.pending_bytes = 0
        # stream offset -> capture time of the latest later copy of a buffered segment
        self.recopied: dict[int, float] | None = None
        self.fin_off: int | None = None  # stream offset of the sender's FIN (see ``_fin``)
        self.fin_ts: float | None = None  # when the bytes reached that FIN
        self.false_fins = 0  # FINs that bytes came after: not the end (see ``_at_fin``)
        # A SYN seen on this live direction that is not its own (feed arguments): a new
        # connection on the same addresses if the peer's SYN-ACK answers it (``_syn_again``).
        self.syn: tuple | None = None
        self.peer: _Direction | None = None
        self.last_ts = 0.0  # capture time of this direction's latest packet
        # The latest bytes handed to the consumer, contiguous, ending at stream offset seen_end
        # (see ``saw``); None until the first delivery.
        self.seen: bytearray | None = None
        self.seen_end = 0
        self.conflicts = 0  # segments retransmitted with bytes other than the copy delivered

    def saw(self, data: memoryview | bytes) -> None:
        """Remember ``data``, just handed to the consumer and ending at ``next_off``, to compare
        retransmissions with (the last ``RECENT`` to ``2 * RECENT`` bytes, whole segments);
        nothing once the consumer gave up (it reads no more)."""
        if self.consumer.dead:
            self.seen = None
            return
        seen = self.seen
        end = self.next_off
        if seen is not None and self.seen_end + len(data) == end:
            seen += data
            if len(seen) > 2 * RECENT:
                del seen[: len(seen) - max(RECENT, len(data))]
        else:
            self.seen = bytearray(data)
        self.seen_end = end

    def differs(self, off: int, data: memoryview | bytes) -> bool:
        """Do ``data`` (at stream offset ``off``) and the remembered bytes differ where they
        overlap? (False where nothing is remembered.)"""
        seen = self.seen
        if seen is None:
            return False
        start = self.seen_end - len(seen)
        lo = off if off > start else start
        end = off + len(data)
        hi = end if end < self.seen_end else self.seen_end
        return lo < hi and seen[lo - start : hi - start] != bytes(data[lo - off : hi - off])


class _Conn:
    __slots__ = ("a_key", "b_key", "closed", "dirs", "foreign", "handler", "info")

    def __init__(
        self,
        a_key: tuple,
        b_key: tuple,
        handler: Connection,
        ts: float,
        foreign: bool = False,
        info: ConnectionInfo | None = None,
    ) -> None:
        self.a_key = a_key
        self.b_key = b_key
        self.handler = handler
        self.info = info  # None for another worker's connection
        self.foreign = foreign  # another worker's connection (see ``TcpReassembler.shard``)
        self.closed = False  # finished (``_close_conn``): never finished twice
        a = _Direction(handler.a_to_b, self)
        b = _Direction(handler.b_to_a, self)
        a.peer, b.peer = b, a
        a.last_ts = b.last_ts = ts
        self.dirs = (a, b)

    @property
    def last_ts(self) -> float:
        """Capture time of the connection's latest packet, either way."""
        a, b = self.dirs
        return a.last_ts if a.last_ts > b.last_ts else b.last_ts


def _unseen_data(kept: list[tuple]) -> bool:
    """Do the packets of a connection that carried no captured data (an embryo: feed
    arguments) show that data went all the same: an ACK past the peer's SYN (by more than the
    one number of a FIN), or a FIN past its sender's SYN? Its only request lost, say: then it
    is opened, so that the hole is told (``_tail``, ``_close_conn``), not just counted."""
    syns = {(p[1], p[2]): p[5] for p in kept if p[7] & SYN}
    for p in kept:
        peer_isn = syns.get((p[3], p[4]))
        if p[7] & ACK and peer_isn is not None and 1 < (p[6] - peer_isn - 1) % SEQ_MOD <= MAX_TAIL:
            return True
        own_isn = syns.get((p[1], p[2]))
        if p[7] & FIN and own_isn is not None and 0 < (p[5] - own_isn - 1) % SEQ_MOD <= MAX_TAIL:
            return True
    return False


def _furthest(known: int | None, ack: int) -> int:
    """The further of two acknowledgement numbers (in sequence space): a late duplicate ACK
    with an older number must not erase what a later one said."""
    return ack if known is None or (ack - known) % SEQ_MOD < HALF else known


def _tail(d: _Direction) -> int:
    """Bytes at the end of ``d``'s stream that its peer acknowledged but the capture lacks (the
    last segments lost, with nothing of ``d`` after them to show a hole: the peer's ACK is
    what tells, as Wireshark's "ACKed unseen segment"). Not one byte alone, which is a FIN the
    capture missed, nor more than a window could hold (an ACK of another connection)."""
    peer = d.peer
    if peer is None or peer.ack is None or d.next_seq is None:
        return 0
    missing = (peer.ack - d.next_seq) % SEQ_MOD
    return missing if 1 < missing <= MAX_TAIL else 0


def shard_of(key: tuple, n: int) -> int:
    """Which of ``n`` workers follows the connection of ``key`` (src, sport, dst, dport).

    Both directions get the same answer (the endpoints are ordered first), in every process
    (CRC-32, not Python's salted ``hash``). Packed addresses carry any tunnel id (see
    ``linklayer``), so tenants with identical inner addresses may go to different workers.
    """
    src, sport, dst, dport = key
    a = src + sport.to_bytes(2, "big")
    b = dst + dport.to_bytes(2, "big")
    return zlib.crc32(a + b if a <= b else b + a) % n


class _Dead:
    """A consumer that wants nothing (another worker's connection)."""

    skip = 0
    dead = True

    def data(  # pragma: no cover - dead
        self, data: memoryview | bytes, ts: float, frame: int = 0
    ) -> None:
        pass

    def gap(self, nbytes: int, ts: float) -> None:  # pragma: no cover - dead
        pass

    def close(self, ts: float) -> None:
        pass


class _Foreign:
    """The handler of another worker's connection: both directions dead, nothing to finish."""

    a_to_b = _Dead()
    b_to_a = _Dead()

    def finish(self, ts: float) -> None:
        pass


_FOREIGN = _Foreign()


def _ip_text(packed: bytes) -> str:
    """The inner IP address of a packed flow address (tunnel tags dropped), as text."""
    return str(ipaddress.ip_address(bytes(inner_address(packed))))


def _opening(kept: list[tuple], now: tuple | None) -> tuple[bool, list[tuple]]:
    """Whether an embryo's packets (feed arguments, ``now`` the one that brought data, if any)
    show the connection's start, and which of them to replay.

    The start is seen when a SYN-ACK is: the server took a SYN. A SYN alone may be a stray one on
    a connection begun before the capture, which a stack answers with an ACK (RFC 5961 4): when
    the peer answered without a SYN-ACK, the SYNs are left out (the bytes then say where the
    stream is); when the peer was not captured, they are kept. With a SYN-ACK, the SYNs it does
    not answer are left out, and so is data on the answered SYN (TCP Fast Open) that it does not
    acknowledge: the server did not take it, and the client sends it again.
    """
    synack = next((p for p in kept if p[7] & (SYN | ACK) == SYN | ACK), None)
    if synack is None:
        senders = {(p[1], p[2]) for p in kept if p[7] & SYN}
        heard = kept if now is None else [*kept, now]
        if any((p[1], p[2]) not in senders for p in heard):
            return False, [p for p in kept if not p[7] & SYN]
        return False, kept
    server = (synack[1], synack[2])
    syns = [p for p in kept if p[7] & (SYN | ACK) == SYN and (p[1], p[2]) != server]
    answered = [p for p in syns if (synack[6] - p[5] - 1) % SEQ_MOD <= len(p[8])]
    if not answered:
        return True, kept  # the SYN it answers was not captured: replayed as they came
    syn = answered[-1]
    out = []
    for p in kept:
        if p is syn:
            if (synack[6] - p[5] - 1) % SEQ_MOD != len(p[8]):
                p = (*p[:8], b"", p[9])  # its data was not acknowledged: not taken
            out.append(p)
        elif not any(p is other for other in syns):
            out.append(p)
    return True, out


class TcpReassembler:
    """Turns TCP segments into per-direction ordered streams for consumers made by ``factory``."""

    def __init__(
        self,
        factory: ConsumerFactory,
        stats: CaptureStats,
        *,
        idle_timeout: float = 600.0,
        max_pending_bytes: int = 4 << 20,
        max_connections: int = 80_000,
        max_embryos: int = 200_000,
        shard: tuple[int, int] | None = None,
    ) -> None:
        self.factory = factory
        # (k, n): follow only the connections ``shard_of`` gives to worker k of n; the others
        # are stepped over (their consumers are dead, so the native walk absorbs them)
        self.shard = shard
        self.stats = stats
        self.idle_timeout = idle_timeout
        self.max_pending_bytes = max_pending_bytes
        self.max_connections = max_connections
        self.max_embryos = max_embryos
        self.dirs: dict[tuple, _Direction] = {}  # (src, sport, dst, dport) -> direction
        self.ignored: dict[tuple, float] = {}  # keys of connections no consumer wanted
        # Connections that have only exchanged SYN / SYN-ACK / bare ACKs so far: their packets
        # (feed arguments), keyed by the first one's direction, oldest first. The consumer is
        # made when the first byte of data comes, so a flood of half-open connections costs
        # a few hundred bytes each, not the HTTP state of a connection.
        self.embryos: dict[tuple, list[tuple]] = {}
        self._hatching = False  # replaying an embryo's packets
        self._started = False  # and they show the connection's start (``_opening``)
        self._conns = 0
        self._next_sweep = 0.0
        # Directions the native capture walk may absorb packets for (None: pure Python).
        self.grants = GrantTable() if native_walk_available() else None
        # Where ``run`` hands UDP packets: (ts, src, sport, dst, dport, payload); None skips them.
        self.datagrams: Callable[..., None] | None = None

    @property
    def open_connections(self) -> int:
        """Connections being followed now."""
        return self._conns

    # -- entry point -------------------------------------------------------------------------
    def feed(
        self,
        ts: float,
        src: bytes,
        sport: int,
        dst: bytes,
        dport: int,
        seq: int,
        ack: int,
        flags: int,
        payload: memoryview | bytes,
        frame: int = 0,
    ) -> None:
        """Process one captured TCP segment (``frame``: its frame number, 0 when unknown)."""
        if self.grants:
            self.settle(src, sport, dst, dport)
        key = (src, sport, dst, dport)
        d = self.dirs.get(key)
        if d is None:
            if key in self.ignored:
                return
            if not self._hatching and self._embryo(
                key, (ts, src, sport, dst, dport, seq, ack, flags, payload or b"", frame)
            ):
                return
            d = self.dirs.get(key) or self._open(key, ts, flags, len(payload), self._started)
            if d is None:
                return
        d.last_ts = ts
        n = len(payload)
        if ts >= self._next_sweep:
            self._sweep(ts)
        if flags & (SYN | RST):
            if flags & RST:
                self._reset(d, seq, ts)
                return  # bytes on a reset are no stream data (RFC 9293 3.5.3)
            if d.next_seq is not None:
                self._syn_again(d, (ts, src, sport, dst, dport, seq, ack, flags, payload, frame))
                return
            # data on a SYN (TCP Fast Open) starts after the SYN's own sequence number
            d.next_seq = seq = (seq + 1) % SEQ_MOD
            if flags & ACK and d.peer is not None and d.peer.next_seq is None:
                d.peer.next_seq = ack
        elif d.next_seq is None:
            if n:
                d.next_seq = seq
            if flags & ACK and d.peer is not None and d.peer.next_seq is None:
                d.peer.next_seq = ack
        if flags & ACK:  # (not an RST's, which may be a stray one, nor another connection's SYN)
            d.ack = _furthest(d.ack, ack)
        if n:
            if seq == d.next_seq and not d.pending:
                # Fast path: the next bytes, in order, nothing buffered.
                d.next_seq = (seq + n) % SEQ_MOD
                d.next_off += n
                c = d.consumer
                skip = c.skip
                if skip >= n:
                    c.skip = skip - n
                elif not c.dead:
                    if skip:
                        c.skip = 0
                        payload = payload[skip:]
                    c.data(payload, ts, frame)
                    d.saw(payload)
            else:
                self._segment(d, seq, payload, ts, frame)
        if flags & FIN:
            self._fin(d, seq, n, ts)

    def run(self, packets: Iterable[tuple]) -> None:
        """Feed every TCP packet of ``packets`` (tuples as ``read_packets`` yields them); UDP
        packets go to ``datagrams`` when it is set.

        The common case, an in-order segment with nothing buffered before it (or a bare ACK),
        is handled inline here, exactly as ``feed`` would: for bulk transfers that is nearly
        every packet, and it costs a dict lookup and a few additions (the capture reader absorbs
        most such packets before they get here); a segment the consumer wants goes straight to
        its ``data``. Everything else goes through ``feed``.
        """
        feed = self.feed
        get = self.dirs.get
        grants = self.grants
        datagrams = self.datagrams
        sweep_at = self._next_sweep
        for ts, proto, src, sport, dst, dport, seq, ack, flags, payload, frame in packets:
            if proto != 6:
                if proto == 17 and datagrams is not None:
                    datagrams(ts, src, sport, dst, dport, payload, frame)
                continue
            if grants:  # the native walk may hold this direction's grant
                self.settle(src, sport, dst, dport)
            d = get((src, sport, dst, dport))
            if d is not None and seq == d.next_seq and not flags & 7 and ts < sweep_at:
                n = len(payload)
                d.last_ts = ts
                if flags & ACK:
                    d.ack = _furthest(d.ack, ack)
                if not n:
                    continue
                if not d.pending:
                    d.next_seq = (seq + n) % SEQ_MOD
                    d.next_off += n
                    c = d.consumer
                    skip = c.skip
                    if skip >= n:
                        c.skip = skip - n
                    elif not c.dead:
                        if skip:
                            c.skip = 0
                            payload = payload[skip:]
                        c.data(payload, ts, frame)
                        d.saw(payload)
                    continue
            feed(ts, src, sport, dst, dport, seq, ack, flags, payload, frame)
            sweep_at = self._next_sweep

    def flush(self) -> None:
        """End every open connection (end of capture)."""
        self.settle_all()
        for first, kept in list(self.embryos.items()):
            # data on a SYN: read, not dropped with the embryo (one a replay's sweep let go: gone)
            if first in self.embryos and (any(p[8] for p in kept) or _unseen_data(kept)):
                self._hatch(first, kept, None)
        for conn in self._conns_open():
            self._close_conn(conn, conn.last_ts)
        self.stats.tcp_connections += len(self.embryos)
        self.embryos.clear()
        self.dirs.clear()
        self.ignored.clear()

    # -- connections without data yet ----------------------------------------------------------
    def _embryo(self, key: tuple, packet: tuple) -> bool:
        """Keep a packet of a connection that has carried no data yet; True when it was kept
        (or ended the embryo). When data comes, the kept packets are fed first (``_hatch``)."""
        embryos = self.embryos
        first = key if key in embryos else (key[2], key[3], key[0], key[1])
        kept = embryos.get(first)
        flags = packet[7]
        if packet[8] and not flags & SYN:  # data: the connection becomes real
            if kept is not None:
                self._hatch(first, kept, packet)
            return False
        if packet[8]:  # data on a SYN (TCP Fast Open): kept until the SYN-ACK tells if taken
            packet = (*packet[:8], bytes(packet[8]), packet[9])
        if kept is None:
            if not flags & SYN or flags & (FIN | RST):
                return False  # not a connection start: as before (a bare ACK opens nothing)
            if self.shard is not None and shard_of(key, self.shard[1]) != self.shard[0]:
                return False  # another worker's connection: stepped over as before
            if len(embryos) >= self.max_embryos:
                embryos = self._thin_embryos()
            embryos[key] = [packet]
            if packet[0] >= self._next_sweep:
                self._sweep(packet[0])
            return True
        if flags & RST:  # reset before any data: counted, nothing to read
            if _unseen_data([*kept, packet]):  # but data went that the capture lacks
                self._hatch(first, [*kept, packet], None)
            else:
                self._drop_embryo(first, evicted=False)
            return True
        if len(kept) < _EMBRYO_PACKETS:
            kept.append(packet)
        else:
            kept[-1] = packet  # keep the latest time
        return True

    def _hatch(self, first: tuple, kept: list[tuple], now: tuple | None) -> None:
        """Open the connection of an embryo and replay its packets, as if they had been fed;
        ``now`` is the packet that brought data (None at the end). Which packets, and whether the
        connection's start was seen, ``_opening`` says."""
        del self.embryos[first]
        outer = self._hatching, self._started  # a replayed packet's sweep may hatch another
        self._started, packets = _opening(kept, now)
        self._hatching = True
        try:
            for packet in packets:
                self.feed(*packet)
        finally:
            self._hatching, self._started = outer

    def _thin_embryos(self) -> dict[tuple, list[tuple]]:
        """Let the oldest tenth of the embryos go (a SYN flood), in one pass: a dict whose
        front was deleted piecemeal would make finding its oldest entry cost more each time."""
        embryos = self.embryos
        n = max(1, len(embryos) // 10)
        self.stats.tcp_connections += n
        self.stats.evicted += n
        self.embryos = dict(itertools.islice(embryos.items(), n, None))
        return self.embryos

    def _drop_embryo(self, first: tuple, evicted: bool) -> None:
        del self.embryos[first]
        self.stats.tcp_connections += 1
        if evicted:
            self.stats.evicted += 1

    # -- absorption (the capture reader's fast path) ----------------------------------------------
    def absorb(self, key: tuple, seq: int, ack: int, flags: int, size: int, ts: float) -> bool:
        """Take a packet whose ``size`` payload bytes the contract lets go unseen (see the module
        docstring); False when it must be fed. Settles the direction first and, with the native
        walk, grants it afterwards so that the walk absorbs its next packets."""
        d = self.dirs.get(key)
        if d is None:
            return False
        grants = self.grants
        if grants:
            self.settle(*key)
        c = d.consumer
        if seq != d.next_seq or flags & 7 or d.pending:
            return False
        if size:
            if c.skip >= size:
                c.skip -= size
            elif not c.dead:
                return False
            d.next_seq = (seq + size) & 0xFFFFFFFF
            d.next_off += size
        d.last_ts = ts
        if flags & ACK:
            d.ack = _furthest(d.ack, ack)
        if grants is not None:
            self.grant(key, d)
        return True

    def grant(self, key: tuple, d: _Direction) -> None:
        """Let the native walk absorb ``d``'s coming packets (call after ``d`` is up to date)."""
        c = d.consumer
        if d.next_seq is not None and not d.pending and len(key[0]) in _WALKABLE:
            self.grants.grant(*key, d.next_seq, c.skip, c.dead and not c.skip)

    def settle(self, src: bytes, sport: int, dst: bytes, dport: int) -> None:
        """Take back what the native walk absorbed for this direction (if it holds a grant)."""
        got = self.grants.take(src, sport, dst, dport)
        if got is not None:
            self._settled(self.dirs[(src, sport, dst, dport)], got)

    def settle_all(self) -> None:
        """Take back every grant (before the reassembler looks at many directions at once)."""
        if self.grants:
            for key, got in self.grants.take_all():
                self._settled(self.dirs[key], got)

    @staticmethod
    def _settled(d: _Direction, got: tuple[int, int, float | None, bool, int | None]) -> None:
        next_seq, consumed, last_ts, dead, ack = got
        d.next_seq = next_seq
        if ack is not None:
            d.ack = _furthest(d.ack, ack)
        if consumed:
            d.next_off += consumed
            if not dead:
                d.consumer.skip -= consumed
        if last_ts is not None:
            d.last_ts = last_ts

    # -- helpers -----------------------------------------------------------------------------
    def _open(self, key: tuple, ts: float, flags: int, n: int, started: bool) -> _Direction | None:
        """The connection of a first packet with data or a SYN (``started``: its start was seen,
        see ``_opening``); None for a bare ACK, or when the factory wants none."""
        if not n and not flags & SYN:
            return None  # a bare ACK of a connection we know nothing about
        if self._conns >= self.max_connections:
            self._evict_oldest(ts)
        src, sport, dst, dport = key
        if flags & SYN and flags & ACK:
            # We saw the SYN-ACK first: the sender is the server; name the client "a".
            src, sport, dst, dport = dst, dport, src, sport
        a_key = (src, sport, dst, dport)
        b_key = (dst, dport, src, sport)
        shard = self.shard
        if shard is not None and shard_of(a_key, shard[1]) != shard[0]:
            conn = _Conn(a_key, b_key, _FOREIGN, ts, foreign=True)
            self.dirs[a_key] = conn.dirs[0]
            self.dirs[b_key] = conn.dirs[1]
            self._conns += 1
            return self.dirs[key]
        info = ConnectionInfo(
            _ip_text(src), sport, _ip_text(dst), dport, ts, started, tunnel_text(src)
        )
        handler = self.factory(info)
        if handler is None:
            self.ignored[a_key] = ts
            self.ignored[b_key] = ts
            return None
        conn = _Conn(a_key, b_key, handler, ts, info=info)
        self.dirs[a_key] = conn.dirs[0]
        self.dirs[b_key] = conn.dirs[1]
        self._conns += 1
        self.stats.tcp_connections += 1
        return self.dirs[key]

    def _segment(
        self, d: _Direction, seq: int, payload: memoryview | bytes, ts: float, frame: int
    ) -> None:
        """Out-of-order, retransmitted or overlapping data (first copy wins: bytes already
        delivered or buffered are not taken again, and the frame given with the bytes is the
        one whose copy was used). Bytes that differ from the copy taken are a conflict."""
        diff = (seq - d.next_seq) % SEQ_MOD
        if diff >= HALF:
            diff -= SEQ_MOD  # behind what we have delivered
        off = d.next_off + diff
        n = len(payload)
        if d.consumer.dead:
            return  # nobody wants these bytes: do not buffer (or compare) them
        if off + n <= d.next_off:  # pure retransmission
            if d.differs(off, payload):
                self._conflict(d, ts)
            self._resent(d, off, n, ts)
            return
        if off > d.next_off:
            pending = d.pending
            existing = pending.get(off)
            # A longer copy of a buffered segment adds only the bytes past it: first copy wins.
            clash = False
            while existing is not None and len(existing[0]) < n:
                k = len(existing[0])
                clash = clash or existing[0] != payload[:k]
                self._recopied(d, off, ts)
                off += k
                n -= k
                payload = payload[k:]
                existing = pending.get(off)
            if existing is None:
                pending[off] = (bytes(payload), ts, frame)
                d.pending_bytes += n
            elif existing[0][:n] != payload:
                clash = True
            else:
                self._recopied(d, off, ts)
            if clash:
                self._conflict(d, ts)
            if d.pending_bytes > self.max_pending_bytes:
                self._skip_hole(d, ts)
            return
        # Overlaps what we already have: deliver only the new tail, then anything now in order.
        if d.differs(off, payload[: d.next_off - off]):
            self._conflict(d, ts)
        self._resent(d, off, d.next_off - off, ts)
        self._deliver(d, payload[d.next_off - off :], ts, frame)
        self._drain(d)

    def _conflict(self, d: _Direction, ts: float) -> None:
        """A segment brought bytes other than the copy taken: count it, tell the consumer."""
        d.conflicts += 1
        hook = getattr(d.consumer, "conflict", None)
        if hook is not None:
            hook(ts)

    @staticmethod
    def _recopied(d: _Direction, off: int, ts: float) -> None:
        """A later copy of the segment buffered at ``off``: told as ``resent`` once that
        segment is delivered (before it, no message holds its bytes)."""
        if getattr(d.consumer, "resent", None) is None:
            return
        if d.recopied is None:
            d.recopied = {}
        if ts > d.recopied.get(off, ts - 1.0):
            d.recopied[off] = ts

    @staticmethod
    def _resent(d: _Direction, off: int, n: int, ts: float) -> None:
        """Bytes already delivered came again: tell a consumer that wants to know."""
        hook = getattr(d.consumer, "resent", None)
        if hook is not None and n > 0:
            hook(off, n, ts)

    def _deliver(self, d: _Direction, data: memoryview | bytes, ts: float, frame: int) -> None:
        n = len(data)
        d.next_off += n
        d.next_seq = (d.next_seq + n) % SEQ_MOD
        c = d.consumer
        skip = c.skip
        if skip >= n:
            c.skip = skip - n
        elif not c.dead:
            if skip:
                c.skip = 0
                data = data[skip:]
            c.data(data, ts, frame)
            d.saw(data)

    def _drain(self, d: _Direction) -> None:
        """Deliver the buffered segments that are now in order (sorted once: a drain after a
        long hole walks thousands of segments, and a ``min`` per segment made it quadratic)."""
        pending = d.pending
        if not pending:
            self._maybe_closed(d, None)
            return
        for off in sorted(pending):
            if off > d.next_off:
                return
            data, ts, frame = pending.pop(off)
            d.pending_bytes -= len(data)
            if off < d.next_off and d.differs(off, data[: d.next_off - off]):
                self._conflict(d, ts)  # overlaps bytes delivered from another segment
            end = off + len(data)
            if end > d.next_off:
                self._deliver(d, data[d.next_off - off :], ts, frame)
            if d.recopied is not None and off in d.recopied:
                self._resent(d, off, len(data), d.recopied.pop(off))
        if not pending:
            d.recopied = None
        self._maybe_closed(d, None)

    def _skip_hole(self, d: _Direction, ts: float) -> None:
        """Give up waiting for missing bytes: tell the consumer, jump to the buffered data."""
        if not d.pending:
            return
        hole = min(d.pending) - d.next_off
        if hole > 0:
            self._jump(d, hole, ts)
        self._drain(d)

    def _jump(self, d: _Direction, hole: int, ts: float) -> None:
        """``hole`` bytes never captured: a gap, told to the consumer (less what it skips)."""
        self.stats.gaps += 1
        d.next_off += hole
        d.next_seq = (d.next_seq + hole) % SEQ_MOD
        c = d.consumer
        if c.skip >= hole:
            c.skip -= hole
        else:
            c.gap(hole - c.skip, ts)
            c.skip = 0

    def _reset(self, d: _Direction, seq: int, ts: float) -> None:
        """An RST ends the connection only at the sender's next sequence number (RFC 5961 3.2:
        a receiver drops an RST out of its window and answers one elsewhere in it with an ACK;
        one not at that number is ignored here too, so a forged or stray RST splits nothing)."""
        if not self._reset_in_sequence(d, seq):
            return
        for side in d.conn.dirs:
            while side.pending:
                self._skip_hole(side, ts)
        self._close_conn(d.conn, ts)

    @staticmethod
    def _reset_in_sequence(d: _Direction, seq: int) -> bool:
        """Is ``seq`` the sender's next sequence number: the next byte expected, or, as far as
        the capture shows, the one past its bytes buffered beyond a hole and past its FIN (which
        takes a number)? True when the sender's numbers are unknown."""
        if d.next_seq is None:
            return True
        diff = (seq - d.next_seq) % SEQ_MOD
        if diff == 0:
            return True
        end = d.next_off
        for off, (data, _ts, _frame) in d.pending.items():
            end = max(end, off + len(data))
        if d.fin_off is not None:
            end = max(end, d.fin_off + 1)
        return diff == end - d.next_off

    def _syn_again(self, d: _Direction, packet: tuple) -> None:
        """A SYN on a connection being followed (``packet``: the feed arguments). Its own SYN
        again, or a stray one, changes nothing: a stack answers a SYN on a live connection with an
        ACK (RFC 5961 4) and goes on. When the peer answers one with a SYN-ACK, the addresses
        were taken by a new connection (the old one's end was not captured): the old one ends
        and the new one starts with these packets."""
        flags, seq = packet[7], packet[5]
        if not flags & ACK:
            if seq != (d.next_seq - d.next_off - 1) % SEQ_MOD:  # not its own SYN again
                d.syn = (*packet[:8], bytes(packet[8]), packet[9])
            return
        syn = d.peer.syn if d.peer is not None else None
        if syn is None or (packet[6] - syn[5] - 1) % SEQ_MOD > len(syn[8]):
            return  # answers no SYN seen on this connection
        self._close_conn(d.conn, syn[0])
        self.feed(*syn)
        self.feed(*packet)

    def _fin(self, d: _Direction, seq: int, n: int, ts: float) -> None:
        """A FIN: the sender's bytes end at its sequence number. One behind the bytes already
        read is an old duplicate, which a receiver discards; two FINs at different numbers mean
        one was not the end (counted; the later end is kept)."""
        if d.next_seq is None:
            return
        diff = (seq - d.next_seq) % SEQ_MOD
        if diff >= HALF:
            diff -= SEQ_MOD
        fin_off = d.next_off + diff + n
        if fin_off < d.next_off:
            return  # behind what was read: an old duplicate
        if d.fin_off is not None and d.fin_off != fin_off:
            d.false_fins += 1
            fin_off = max(fin_off, d.fin_off)
        if fin_off != d.fin_off:
            d.fin_off, d.fin_ts = fin_off, None
        self._maybe_closed(d, ts)

    def _at_fin(self, d: _Direction) -> bool:
        """Have ``d``'s bytes reached its FIN? A FIN they went past was not the end (one the
        receiver dropped: a bad checksum, an expired TTL, an injected segment): it is forgotten."""
        fin = d.fin_off
        if fin is None or d.next_off < fin:
            return False
        if d.next_off > fin:
            self._void_fin(d)
            return False
        return True

    @staticmethod
    def _void_fin(d: _Direction) -> None:
        """Bytes came past ``d``'s FIN: count it (a capture warning) and forget it."""
        d.false_fins += 1
        d.fin_off = d.fin_ts = None

    def _maybe_closed(self, d: _Direction, ts: float | None) -> None:
        """End the connection once the bytes of both directions reached their FINs. Consumers
        are closed only then (each with the time its FIN was reached), so that bytes after a FIN
        that was not real are still read."""
        if d.fin_off is None or d.next_off < d.fin_off:
            return
        self._settle_conn(d.conn)  # the walk may have absorbed bytes of either direction
        if d.fin_ts is None:
            d.fin_ts = ts if ts is not None else d.conn.last_ts
        if all(self._at_fin(side) for side in d.conn.dirs):
            self._close_conn(d.conn, d.conn.last_ts)

    def _settle_conn(self, conn: _Conn) -> None:
        """Settle both directions: closing a connection reads and ends both."""
        if self.grants:
            self.settle(*conn.a_key)
            self.settle(*conn.b_key)

    def _close_conn(self, conn: _Conn, ts: float) -> None:
        """End a connection: what waits past holes is delivered, the consumers are closed (at
        their FINs' times where the bytes reached them, else at ``ts``), the handler finished."""
        if conn.closed:
            return
        conn.closed = True  # first: the bytes delivered past a hole may reach both FINs
        self._settle_conn(conn)
        for side in conn.dirs:
            while side.pending:
                self._skip_hole(side, ts)
            fin = side.fin_off
            if fin is not None and side.next_off < fin and not side.consumer.dead:
                self._jump(side, fin - side.next_off, ts)  # bytes before its FIN never captured
            elif fin is None and not side.consumer.dead:
                tail = _tail(side)
                if tail:
                    self._jump(side, tail, ts)  # bytes its peer acknowledged, never captured
            at_fin = self._at_fin(side) and side.fin_ts is not None
            side.consumer.close(side.fin_ts if at_fin else ts)
        self._warn_damage(conn)
        conn.handler.finish(ts)
        for key in (conn.a_key, conn.b_key):
            if self.dirs.get(key) is not None and self.dirs[key].conn is conn:
                del self.dirs[key]
        self._conns -= 1

    def _warn_damage(self, conn: _Conn) -> None:
        """A capture warning per direction that had retransmissions with other bytes, or bytes
        after a FIN."""
        info = conn.info
        if info is None:
            return
        a = f"{info.a_ip}:{info.a_port}"
        b = f"{info.b_ip}:{info.b_port}"
        for side, src, dst in ((conn.dirs[0], a, b), (conn.dirs[1], b, a)):
            if side.conflicts:
                self.stats.warn(
                    f"{info.conn_id} {src} -> {dst}: {side.conflicts} TCP segment(s) "
                    "retransmitted with different bytes: the first copy was read, which one "
                    "the receiver took is unknown"
                )
            if side.false_fins:
                self.stats.warn(
                    f"{info.conn_id} {src} -> {dst}: data after a FIN: the FIN was not the end "
                    "(one the receiver dropped: a bad checksum, an expired TTL, an injected "
                    "segment); the bytes after it were read"
                )

    def _sweep(self, now: float) -> None:
        """Close connections idle for longer than the timeout; forget old ignored keys."""
        self._next_sweep = now + min(self.idle_timeout / 4, 30.0)
        self.settle_all()
        limit = now - self.idle_timeout
        stale_embryos = [k for k, kept in self.embryos.items() if kept[-1][0] < limit]
        for first in stale_embryos:
            kept = self.embryos.get(first)
            if kept is None:
                continue  # let go by a sweep of a replay's packet (times at infinity)
            # data on a SYN, or data the capture lacks: read (then evicted below), not dropped
            if any(p[8] for p in kept) or _unseen_data(kept):
                self._hatch(first, kept, None)
            else:
                self._drop_embryo(first, evicted=True)
        stale = [conn for conn in self._conns_open() if conn.last_ts < limit]
        for conn in stale:
            self.stats.evicted += not conn.foreign
            self._close_conn(conn, conn.last_ts)
        if self.ignored:
            self.ignored = {k: t for k, t in self.ignored.items() if t >= limit}

    def _conns_open(self) -> list[_Conn]:
        """The connections followed, in the order they were opened: closing them in a set's
        order (by address) put their warnings in an order that changed from run to run."""
        return list(dict.fromkeys(d.conn for d in self.dirs.values()))

    def _evict_oldest(self, now: float) -> None:
        self.settle_all()
        conns = sorted(self._conns_open(), key=lambda c: c.last_ts)
        for conn in conns[: max(1, len(conns) // 10)]:
            self.stats.evicted += not conn.foreign
            self._close_conn(conn, conn.last_ts)
