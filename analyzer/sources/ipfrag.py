"""IP fragments put back together (IPv4, RFC 791; IPv6 fragment headers, RFC 8200).

A request sent in fragmented IP datagrams (a VPN's small MTU, a tunnel without path MTU
discovery, or an attacker hiding from a sensor) is a request all the same: its bytes are read
like any other once its datagram is whole. The link decoder hands each fragment here; the
datagram's payload comes back when its last missing piece arrives.

Fragments are kept per datagram (addresses, protocol, identification and tunnel ids) in
arrival order of datagrams, within bounds a hostile capture cannot stretch: ``MAX_DATAGRAMS``
waiting, ``MAX_PENDING_BYTES`` held, a datagram at most 65,535 bytes, and ``TIMEOUT`` seconds
of capture time to complete. Overlapping fragments that disagree (the bytes one stack keeps and
another drops: the classic evasion) make the datagram ambiguous: it is dropped and counted, as
are datagrams evicted or never completed, so a reader knows what was not read (and, through
``on_lost``, between which addresses). A datagram put together is remembered for ``TIMEOUT``
seconds, so that a second copy of one of its fragments (a frame captured twice: a SPAN port
and a tap) is dropped as the copy it is, not taken for a new datagram that never completes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

MAX_DATAGRAMS = 1024  # datagrams waiting for pieces
MAX_PENDING_BYTES = 16 << 20  # bytes held across them
MAX_DATAGRAM = 65535  # the largest IP payload a fragment offset can reach
MAX_FRAGMENTS = 512  # pieces of one datagram (8-byte fragments of 4 KiB; hostile beyond)
TIMEOUT = 60.0  # seconds of capture time (IPv6's reassembly limit; IPv4 stacks use 15-120)

#: Why datagrams were given up on, as the warnings say it.
LOST_REASONS = {
    "conflict": "fragments overlapping with different bytes (ambiguous: each stack keeps "
    "other bytes)",
    "timeout": f"not completed within {TIMEOUT:.0f} s",
    "evicted": "evicted to stay within the reassembly bounds",
    "oversized": "larger than an IP datagram can be",
    "incomplete": "still missing pieces when the capture ended",
}


@dataclass(slots=True)
class _Datagram:
    first_ts: float
    pieces: dict[int, bytes] = field(default_factory=dict)  # offset -> bytes
    size: int = 0  # bytes held
    total: int | None = None  # payload length, known from the last fragment
    conflict: bool = False


class Defragmenter:
    """Fragments in, whole datagram payloads out; what it gave up on, counted by reason."""

    __slots__ = (
        "done",
        "done_bytes",
        "given_up",
        "held",
        "lost",
        "on_lost",
        "pending",
        "reassembled",
        "repeats",
    )

    def __init__(self, on_lost: Callable[[tuple, str, float], None] | None = None) -> None:
        self.pending: dict[tuple, _Datagram] = {}  # oldest first
        self.held = 0  # bytes across pending datagrams
        self.reassembled = 0
        self.lost: dict[str, int] = {}  # reason -> datagrams
        # datagrams dropped before their last pieces came (conflict, oversized, evicted) -> when:
        # those pieces are dropped with them, not taken for a new datagram (oldest first)
        self.given_up: dict[tuple, float] = {}
        # datagrams put together -> (when, payload), oldest first: a later copy of one of their
        # fragments is a copy (``repeats``), not the start of a new datagram
        self.done: dict[tuple, tuple[float, bytes]] = {}
        self.done_bytes = 0
        self.repeats = 0  # fragments dropped as copies of a datagram already put together
        self.on_lost = on_lost  # told (key, reason, time) of each datagram given up on

    def add(self, key: tuple, offset: int, more: bool, data: bytes, ts: float) -> bytes | None:
        """Take one fragment (``offset`` in bytes; ``more``: the more-fragments flag) of the
        datagram ``key``; its whole payload when this piece completes it, else None."""
        self._expire(ts)
        dgram = self.pending.get(key)
        if dgram is None:
            if key in self.given_up or self._repeats(key, offset, more, data):
                return None
            dgram = self.pending[key] = _Datagram(ts)
        end = offset + len(data)
        if end > MAX_DATAGRAM or len(dgram.pieces) >= MAX_FRAGMENTS:
            self._forget(key)
            self._give_up(key, "oversized", ts)
            return None
        if not more:
            if dgram.total is not None and dgram.total != end:
                dgram.conflict = True  # two different ends
            if any(at + len(piece) > end for at, piece in dgram.pieces.items()):
                dgram.conflict = True  # bytes already past the end
            dgram.total = end
        elif dgram.total is not None and end > dgram.total:
            dgram.conflict = True
        if self._overlaps_differently(dgram, offset, data):
            dgram.conflict = True
        if offset not in dgram.pieces or len(data) > len(dgram.pieces[offset]):
            old = dgram.pieces.get(offset, b"")
            dgram.pieces[offset] = bytes(data)
            dgram.size += len(data) - len(old)
            self.held += len(data) - len(old)
        whole = self._whole(dgram)
        if whole is not None or dgram.conflict:
            self._forget(key)
            if dgram.conflict:
                self._give_up(key, "conflict", ts)
                return None
            self.reassembled += 1
            self._remember(key, ts, whole)
            return whole
        while self.held > MAX_PENDING_BYTES or len(self.pending) > MAX_DATAGRAMS:
            oldest = next(iter(self.pending))
            self._forget(oldest)
            self._give_up(oldest, "evicted", ts)
        return None

    def finish(self) -> None:
        """The capture ended: datagrams still waiting will never be completed."""
        for key in list(self.pending):
            self._drop(key, "incomplete")

    # -- internals ---------------------------------------------------------------------------
    @staticmethod
    def _overlaps_differently(dgram: _Datagram, offset: int, data: bytes) -> bool:
        end = offset + len(data)
        for at, piece in dgram.pieces.items():
            lo, hi = max(at, offset), min(at + len(piece), end)
            if lo < hi and piece[lo - at : hi - at] != data[lo - offset : hi - offset]:
                return True
        return False

    @staticmethod
    def _whole(dgram: _Datagram) -> bytes | None:
        """The payload when the pieces cover 0 .. total without a hole."""
        if dgram.total is None:
            return None
        parts = []
        reached = 0
        for at in sorted(dgram.pieces):
            if at > reached:
                return None
            piece = dgram.pieces[at]
            if at + len(piece) > reached:
                parts.append(piece[reached - at :])
                reached = at + len(piece)
        if reached < dgram.total:
            return None
        return b"".join(parts)[: dgram.total]

    def _repeats(self, key: tuple, offset: int, more: bool, data: bytes) -> bool:
        """Is this fragment a copy of one of a datagram put together lately? Its bytes must be
        the datagram's at its offset, ending it if and only if it is a last fragment; other
        bytes under the same id are a new datagram, and the old one is forgotten."""
        done = self.done.get(key)
        if done is None:
            return False
        payload, end = done[1], offset + len(data)
        ends = end < len(payload) if more else end == len(payload)  # a last piece ends it
        if ends and payload[offset:end] == data:
            self.repeats += 1
            return True
        self.done_bytes -= len(payload)
        del self.done[key]
        return False

    def _remember(self, key: tuple, ts: float, payload: bytes) -> None:
        """Keep a datagram just put together (its key is not in ``done``: a new datagram under
        a remembered id starts only once ``_repeats`` forgot the old one), within the bounds."""
        self.done[key] = (ts, payload)
        self.done_bytes += len(payload)
        while self.done_bytes > MAX_PENDING_BYTES or len(self.done) > MAX_DATAGRAMS:
            oldest = next(iter(self.done))
            self.done_bytes -= len(self.done.pop(oldest)[1])

    def _expire(self, now: float) -> None:
        done = self.done
        while done:
            key = next(iter(done))
            if now - done[key][0] <= TIMEOUT:
                break
            self.done_bytes -= len(done.pop(key)[1])
        given_up = self.given_up
        while given_up:
            key = next(iter(given_up))
            if now - given_up[key] <= TIMEOUT and len(given_up) <= MAX_DATAGRAMS:
                break
            del given_up[key]
        while self.pending:
            key = next(iter(self.pending))
            if now - self.pending[key].first_ts <= TIMEOUT:
                return
            self._drop(key, "timeout")

    def _give_up(self, key: tuple, reason: str, ts: float) -> None:
        """Count a datagram dropped before its end, and drop the pieces still to come."""
        self._count(reason, key, ts)
        self.given_up.pop(key, None)
        self.given_up[key] = ts

    def _drop(self, key: tuple, reason: str) -> None:
        """Give up a datagram still waiting (its key is in ``pending``), dated by its first."""
        first_ts = self.pending[key].first_ts
        self._forget(key)
        self._count(reason, key, first_ts)

    def _forget(self, key: tuple) -> None:
        dgram = self.pending.pop(key, None)
        if dgram is not None:
            self.held -= dgram.size

    def _count(self, reason: str, key: tuple, ts: float) -> None:
        self.lost[reason] = self.lost.get(reason, 0) + 1
        if self.on_lost is not None:
            self.on_lost(key, reason, ts)
