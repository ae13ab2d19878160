"""UDP flows: datagrams between two addresses handed, in capture order, to one handler.

Sans-I/O, like ``analyzer.flows.tcp``: ``UdpFlows.feed`` takes one datagram's fields. A flow is
made when its factory wants it (the factory sees the first datagram and may decline: RTP, DNS and
keep-alives make no flow), and is keyed by the two addresses without their ports, because a SIP
peer may answer from, or to, another port than the one a request used (RFC 3261 18.2.2): the
handler is given every datagram's ports. Flows idle for ``idle_timeout`` are finished and
forgotten, and at most ``max_flows`` are followed at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from analyzer.flows.tcp import ConnectionInfo, _ip_text, shard_of
from analyzer.sources.linklayer import tunnel_text


class Flow(Protocol):
    """What the factory returns: takes datagrams of one flow, then is finished."""

    def datagram(
        self,
        from_a: bool,
        payload: memoryview | bytes,
        ts: float,
        ports: tuple[int, int],
        frame: int = 0,
    ) -> None: ...

    def finish(self) -> None: ...


#: (flow info, first datagram) -> its handler, or None when the flow is not wanted.
FlowFactory = Callable[[ConnectionInfo, "memoryview | bytes"], "Flow | None"]


class _Open:
    __slots__ = ("a", "flow", "last_ts")

    def __init__(self, a: bytes, flow: Flow, ts: float) -> None:
        self.a = a  # packed address of the side that sent the first datagram
        self.flow = flow
        self.last_ts = ts


class UdpFlows:
    """Datagrams in, per-flow handlers made by ``factory``."""

    def __init__(
        self,
        factory: FlowFactory,
        *,
        idle_timeout: float = 600.0,
        max_flows: int = 100_000,
        shard: tuple[int, int] | None = None,
    ) -> None:
        self.factory = factory
        self.shard = shard  # (k, n): worker k of n keeps the flows ``shard_of`` gives it
        self.idle_timeout = idle_timeout
        self.max_flows = max_flows
        self.flows: dict[tuple[bytes, bytes], _Open] = {}  # address pair (sorted) -> flow
        self.made = 0  # flows the factory wanted
        self._next_sweep = 0.0

    def feed(
        self,
        ts: float,
        src: bytes,
        sport: int,
        dst: bytes,
        dport: int,
        payload: memoryview | bytes,
        frame: int = 0,
    ) -> None:
        """Process one captured UDP datagram (``frame``: its frame number, 0 when unknown)."""
        if not payload:
            return
        if ts >= self._next_sweep:
            self._sweep(ts)
        src, dst = bytes(src), bytes(dst)
        key = (src, dst) if src <= dst else (dst, src)
        held = self.flows.get(key)
        if held is None:
            shard = self.shard
            if shard is not None and shard_of((key[0], 0, key[1], 0), shard[1]) != shard[0]:
                return  # another worker's flow
            info = ConnectionInfo(
                _ip_text(src), sport, _ip_text(dst), dport, ts, False, tunnel_text(src)
            )
            flow = self.factory(info, payload)
            if flow is None:
                return
            if len(self.flows) >= self.max_flows:
                self._evict_oldest()
            held = self.flows[key] = _Open(src, flow, ts)
            self.made += 1
        held.last_ts = ts
        from_a = src == held.a
        held.flow.datagram(from_a, payload, ts, (sport, dport), frame)

    def flush(self) -> None:
        """Finish every flow (end of capture)."""
        flows, self.flows = self.flows, {}
        for held in flows.values():
            held.flow.finish()

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + min(self.idle_timeout / 4, 30.0)
        limit = now - self.idle_timeout
        for key in [k for k, held in self.flows.items() if held.last_ts < limit]:
            self.flows.pop(key).flow.finish()

    def _evict_oldest(self) -> None:
        ordered = sorted(self.flows, key=lambda k: self.flows[k].last_ts)
        for key in ordered[: max(1, len(ordered) // 10)]:
            self.flows.pop(key).flow.finish()
