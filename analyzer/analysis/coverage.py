"""What an answer rests on, and what it could not see: the exchanges inspected and their time
range, the traffic in scope that was not read (``NotInspected``), and the capture's damage. The
verdicts of ``verify``, the terminal summary and the HTML banner all say it the same way."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from analyzer.model import CaptureStats, NotInspected

TOP_SERVERS = 10  # servers listed in text before "... and N more"


@dataclass
class Coverage:
    """What a rule's answer rests on, and what it could not see."""

    exchanges: int = 0  # authenticated exchanges in scope, inspected
    unanswered: int = 0  # of which no response was captured
    first_ts: float | None = None
    last_ts: float | None = None
    not_inspected: list[NotInspected] = field(default_factory=list)  # in scope
    damage: list[str] = field(default_factory=list)  # the capture's, for every rule

    def blind_spots(self, limit: int = TOP_SERVERS) -> list[str]:
        """One line per server (the first ``limit``): what in scope was not read, and what to
        do about it."""
        groups: dict[tuple, list[NotInspected]] = {}
        for n in self.not_inspected:
            groups.setdefault((n.kind, n.host, n.server_ip, n.server_port), []).append(n)
        out = []
        for (kind, host, ip, port), group in groups.items():
            where = f"{host or ip}:{port}" + (f" ({ip})" if host else "")
            if kind == "tls":
                out.append(
                    f"{len(group)} TLS connection(s) to {where} not inspected: pass --tls-keylog, "
                    "or capture with Fiddler / a decrypting proxy"
                )
            else:
                lost = sum(n.count for n in group)
                out.append(
                    f"request bytes lost {lost} time(s) on {len(group)} connection(s) to "
                    f"{where}: those requests' credentials are unknown"
                )
        if len(out) > limit:
            out = [*out[:limit], f"... and {len(out) - limit} more server(s) (--json lists all)"]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "exchanges": self.exchanges,
            "unanswered": self.unanswered,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "not_inspected": [
                {
                    "kind": n.kind,
                    "conn_id": n.conn_id,
                    "ts": n.ts,
                    "client": f"{n.client_ip}:{n.client_port}",
                    "server": f"{n.server_ip}:{n.server_port}",
                    "host": n.host,
                    "count": n.count,
                }
                for n in self.not_inspected
            ],
            "blind_spots": self.blind_spots(limit=len(self.not_inspected)),
            "damage": list(self.damage),
        }


def damage(captures: list[CaptureStats]) -> list[str]:
    """What the capture lost, in words: every verdict on it carries these as warnings."""
    out = []
    for c in captures:
        name = c.path or "capture"
        if c.gaps:
            out.append(f"{name}: {c.gaps:,} TCP gap(s): bytes missing from the capture")
        if c.truncated_packets:
            out.append(f"{name}: {c.truncated_packets:,} packet(s) cut by the snap length")
        if c.evicted:
            out.append(f"{name}: {c.evicted:,} connection(s) dropped (idle or over the buffer cap)")
        out += [f"{name}: {w}" if not w.startswith(name) else w for w in c.warnings]
    return out
