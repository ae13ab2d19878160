"""A TCP connection whose first bytes choose the protocol that reads it (SIP or HTTP).

The reassembler asks for a connection's consumers when it opens, before any byte has arrived.
``FirstBytes`` stands in until the first bytes of either direction are in, asks ``choose`` which
connection should read them (``analyzer.protocols.sip_exchange.SipConnection``,
``analyzer.protocols.http_exchange.HttpConnection``, ...), replays the bytes it held, and then
passes every call on. Each side keeps the chosen consumer's ``skip`` and ``dead`` as its own, so
the reassembler and the native walk drop unwanted bytes exactly as they would for that consumer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from analyzer.flows.tcp import Connection, StreamConsumer

#: First bytes of a connection -> the connection to read it, or None while they are too few.
Chooser = Callable[[bytes], "Connection | None"]
#: Bytes held for the choice; a chooser that still cannot tell by then must decide on these.
MAX_HELD = 64


class _Side:
    """One direction: holds bytes until the choice, then forwards to the chosen consumer."""

    __slots__ = ("_frame", "_held", "_ts", "dead", "owner", "skip", "target", "to_b")

    def __init__(self, owner: FirstBytes, to_b: bool) -> None:
        self.owner = owner
        self.to_b = to_b
        self.skip = 0
        self.dead = False
        self.target: StreamConsumer | None = None
        self._held = bytearray()
        self._ts = 0.0  # capture time and frame number of the first held byte
        self._frame = 0

    def data(self, data: memoryview | bytes, ts: float, frame: int = 0) -> None:
        target = self.target
        if target is None:
            if not self._held:
                self._ts = ts
                self._frame = frame
            self._held += data
            self.owner.choose_now(self, force=len(self._held) >= MAX_HELD)
            return
        target.data(data, ts, frame)
        self._mirror(target)

    def gap(self, nbytes: int, ts: float) -> None:
        if self.target is None:
            self.owner.choose_now(self, force=True)
        assert self.target is not None
        self.target.gap(nbytes, ts)
        self._mirror(self.target)

    def close(self, ts: float) -> None:
        if self.target is None:
            self.owner.choose_now(self, force=True)
        assert self.target is not None
        self.target.close(ts)
        self._mirror(self.target)

    def bind(self, target: StreamConsumer) -> None:
        """The choice is made: replay what was held, forward the rest."""
        self.target = target
        if self._held:
            held, self._held = bytes(self._held), bytearray()
            target.data(held, self._ts, self._frame)
        self._mirror(target)

    def _mirror(self, target: StreamConsumer) -> None:
        """Take over what the chosen consumer wants dropped (the reassembler reads it here)."""
        if target.skip:
            self.skip += target.skip
            target.skip = 0
        if target.dead:
            self.dead = True


class FirstBytes:
    """The reassembler's ``Connection`` until the first bytes choose the real one."""

    def __init__(self, choose: Chooser, default: Callable[[], Connection]) -> None:
        self.choose = choose
        self.default = default  # the connection for a direction that ends or breaks unread
        self.a_to_b = _Side(self, True)
        self.b_to_a = _Side(self, False)
        self.chosen: Connection | None = None

    def choose_now(self, side: _Side, *, force: bool) -> None:
        """Let ``side``'s held bytes choose (or, with ``force``, the default when they cannot)."""
        if self.chosen is not None:
            return
        chosen = self.choose(bytes(side._held)) if side._held else None
        if chosen is None and not force:
            return
        self.chosen = chosen if chosen is not None else self.default()
        self.a_to_b.bind(self.chosen.a_to_b)
        self.b_to_a.bind(self.chosen.b_to_a)

    def finish(self, ts: float) -> None:
        if self.chosen is None:
            self.chosen = self.default()
        self.chosen.finish(ts)
