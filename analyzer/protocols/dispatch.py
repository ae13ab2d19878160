"""A TCP connection whose first bytes choose the protocol that reads it (SIP or HTTP).

The reassembler asks for a connection's consumers when it opens, before any byte has arrived.
``FirstBytes`` stands in until the first bytes of either direction are in, asks ``choose`` which
connection should read them (``analyzer.protocols.sip_exchange.SipConnection``,
``analyzer.protocols.http_exchange.HttpConnection``, ...), replays the bytes it held, and then
passes every call on. Each side keeps the chosen consumer's ``skip`` and ``dead`` as its own, so
the reassembler and the native walk drop unwanted bytes exactly as they would for that consumer.
The reassembler's optional hooks (``conflict``, ``resent``) reach the chosen consumer too: told
before the choice, they wait for it (they are about held bytes, which it is given first).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from analyzer.flows.tcp import Connection, StreamConsumer

#: First bytes of a connection -> the connection to read it, or None while they are too few.
Chooser = Callable[[bytes], "Connection | None"]
#: Bytes held for the choice; a chooser that still cannot tell by then must decide on these.
#: Line breaks before the first byte of a message do not count (SIP keep-alives, RFC 5626: a
#: capture may catch a connection in a run of them), up to ``MAX_KEEPALIVE`` bytes in all
#: (a thousand pings; the held bytes are looked through again as each segment comes).
MAX_HELD = 64
MAX_KEEPALIVE = 4096


class _Side:
    """One direction: holds bytes until the choice, then forwards to the chosen consumer."""

    __slots__ = (
        "_conflicts",
        "_frame",
        "_held",
        "_resent",
        "_ts",
        "dead",
        "owner",
        "skip",
        "target",
        "to_b",
    )

    def __init__(self, owner: FirstBytes, to_b: bool) -> None:
        self.owner = owner
        self.to_b = to_b
        self.skip = 0
        self.dead = False
        self.target: StreamConsumer | None = None
        self._held: bytearray | bytes = bytearray()
        self._ts = 0.0  # capture time and frame number of the first held byte
        self._frame = 0
        # hook calls made before the choice, told to the chosen consumer once it is made: the
        # conflicts (their times), and the latest time each stretch of held bytes came again
        # (``(off, nbytes) -> ts``: a few thousand at most, as held bytes are under MAX_HELD)
        self._conflicts: list[float] | None = None
        self._resent: dict[tuple[int, int], float] | None = None

    def data(self, data: memoryview | bytes, ts: float, frame: int = 0) -> None:
        target = self.target
        if target is None:
            if not self._held:
                self._ts = ts
                self._frame = frame
            held = self._held
            held += data
            size = len(held)
            if held[:1] in (b"\r", b"\n") and size < MAX_KEEPALIVE:
                size = len(held.lstrip(b"\r\n"))
            self.owner.choose_now(self, force=size >= self.owner.max_held)
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

    def conflict(self, ts: float) -> None:
        """A retransmission brought other bytes than those given (``flows.tcp``): the chosen
        consumer counts what that leaves in doubt."""
        target = self.target
        if target is None:
            if self._conflicts is None:
                self._conflicts = []
            if len(self._conflicts) < MAX_HELD:  # bounded: each is one stretch in doubt
                self._conflicts.append(ts)
            return
        hook = getattr(target, "conflict", None)
        if hook is not None:
            hook(ts)
            self._mirror(target)

    def resent(self, off: int, nbytes: int, ts: float) -> None:
        """Bytes already given came again at ``ts`` (``flows.tcp``): the chosen consumer dates
        the requests they hold by it. Offsets are the chosen consumer's: it gets every byte."""
        target = self.target
        if target is None:
            if self._resent is None:
                self._resent = {}
            key = (off, nbytes)
            if ts > self._resent.get(key, ts - 1.0):
                self._resent[key] = ts
            return
        hook = getattr(target, "resent", None)
        if hook is not None:
            hook(off, nbytes, ts)
            self._mirror(target)

    def bind(self, target: StreamConsumer) -> None:
        """The choice is made: replay what was held and the hook calls made meanwhile, forward
        the rest."""
        self.target = target
        if self._held:
            target.data(bytes(self._held), self._ts, self._frame)
        self._held = b""  # never added to again: no buffer kept per open connection
        conflicts, self._conflicts = self._conflicts, None
        for ts in conflicts or ():
            self.conflict(ts)
        resent, self._resent = self._resent, None
        for (off, nbytes), ts in (resent or {}).items():
            self.resent(off, nbytes, ts)
        self._mirror(target)

    def _mirror(self, target: StreamConsumer) -> None:
        """Take over what the chosen consumer wants dropped (the reassembler reads it here)."""
        if target.skip:
            self.skip += target.skip
            target.skip = 0
        if target.dead:
            self.dead = True


class FirstBytes:
    """The reassembler's ``Connection`` until the first bytes choose the real one.

    Slotted, and the chooser let go once it has chosen: every TCP connection off the HTTP
    ports is one of these while it is open."""

    __slots__ = ("a_to_b", "b_to_a", "choose", "chosen", "default", "max_held")

    def __init__(
        self, choose: Chooser, default: Callable[[], Connection], max_held: int = MAX_HELD
    ) -> None:
        self.choose: Chooser | None = choose
        self.max_held = max_held  # bytes (keep-alives aside) the chooser may wait for
        # the connection for a direction that ends or breaks unread
        self.default: Callable[[], Connection] | None = default
        self.a_to_b = _Side(self, True)
        self.b_to_a = _Side(self, False)
        self.chosen: Connection | None = None

    def choose_now(self, side: _Side, *, force: bool) -> None:
        """Let ``side``'s held bytes choose (or, with ``force``, the default when they cannot)."""
        if self.chosen is not None:
            return
        assert self.choose is not None and self.default is not None
        chosen = self.choose(bytes(side._held)) if side._held else None
        if chosen is None and not force:
            return
        conn = chosen if chosen is not None else self.default()
        self._chose(conn)
        self.a_to_b.bind(conn.a_to_b)
        self.b_to_a.bind(conn.b_to_a)

    def finish(self, ts: float) -> None:
        if self.chosen is None:
            assert self.default is not None
            self._chose(self.default())
        assert self.chosen is not None
        self.chosen.finish(ts)

    def _chose(self, chosen: Connection) -> None:
        self.chosen = chosen
        self.choose = self.default = None  # their closures hold the engine's factories
