"""What an answer rests on, and what it could not see: the exchanges inspected and their time
range, the traffic in scope that was not read (``NotInspected``), and the capture's damage. The
verdicts of ``verify``, the terminal summary and the HTML banner all say it the same way."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from analyzer.model import CaptureStats, NotInspected, TlsConnection
from analyzer.words import plural

TOP_SERVERS = 20  # servers listed in text before "... and N more"
#: What to do about TLS that was not read.
TLS_ADVICE = "pass --tls-keylog, or capture with Fiddler / a decrypting proxy"
#: What to do about a proxy trace's tunnels, and a browser's sanitized HTTP archive.
TUNNEL_ADVICE = (
    "turn on Tools > Options > HTTPS > Decrypt HTTPS traffic (the client must trust Fiddler's "
    "root certificate) and capture again"
)
SANITIZED_ADVICE = "export the HAR again with sensitive data"
#: What to do about IPsec ESP.
ESP_ADVICE = "capture inside the IPsec tunnel (on either host, or past the gateway)"
UNREAD_ADVICE = "repair the file (pcapfix) or capture again"
UNTIMED_ADVICE = "capture with a tool that writes enhanced packet blocks (dumpcap, tcpdump)"
DROPS_ADVICE = (
    "give the capture a bigger buffer (dumpcap -B), a capture filter that keeps only the "
    "servers in question, or a faster disk, and capture again"
)
QUIC_ADVICE = (
    "turn HTTP/3 off for the capture (IIS: the EnableHttp3 registry value; a browser: "
    "--disable-quic) so the traffic goes over TLS, which a key log decrypts"
)


def from_tls(t: TlsConnection) -> NotInspected:
    """The blind spot an undecrypted TLS connection leaves, named by its SNI."""
    version = f"{t.version}, " if t.version else ""
    return NotInspected(
        kind="tls",
        conn_id=t.conn_id,
        ts=t.ts,
        client_ip=t.client_ip,
        client_port=t.client_port,
        server_ip=t.server_ip,
        server_port=t.server_port,
        host=t.sni,
        detail=f"{version}not decrypted",
    )


def blind_spot_lines(not_inspected: list[NotInspected], limit: int = TOP_SERVERS) -> list[str]:
    """One sentence per kind and server, most connections first: what was not read and what to
    do about it ("12 TLS connections to mail.contoso.com:443 (10.1.0.10) not inspected: ...").
    A server is named by SNI or Host when known, else by its address; past ``limit`` servers,
    one line counts the rest."""
    groups: dict[tuple[str, str], list[NotInspected]] = {}
    for n in not_inspected:
        groups.setdefault((n.kind, _where(n)), []).append(n)
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    out = []
    for (kind, where), group in ordered[:limit]:
        conns = plural(len(group), f"{(kind == 'tls' and 'TLS ') or ''}connection")
        if kind == "tls":
            out.append(f"{conns} to {where} not inspected: {TLS_ADVICE}")
        elif kind == "http2":
            streams = sum(n.count for n in group)
            out.append(
                f"{conns} to {where} not inspected: {streams:,} HTTP/2 stream(s) whose headers "
                "could not be decoded (see the not-inspected details)"
            )
        elif kind == "connect-tunnel":
            tunnels = f"{len(group):,} CONNECT tunnel" + ("s" if len(group) != 1 else "")
            out.append(f"{tunnels} to {where} not decrypted by Fiddler: {TUNNEL_ADVICE}")
        elif kind == "not-http":
            out.append(
                f"{conns} to {where} not inspected: bytes that are not HTTP (nor TLS) on an "
                "HTTP port, whatever they carried is unknown"
            )
        elif kind == "answer-in-doubt":
            out.append(
                f"answers on {conns} to {where} retransmitted with other contents: which one "
                "the client read (a logon refused or accepted) is unknown"
            )
        elif kind == "connection-auth-unseen":
            sent = sum(n.count for n in group)
            out.append(
                f"{plural(sent, 'request')} to {where} sent without a credential and not "
                f"refused on {conns} whose NTLM / Negotiate logon was not seen (begun before "
                "the capture, its answer not captured, or an archive that does not name "
                "connections): see the not-inspected details"
            )
        elif kind == "unread-capture":
            out += [f"{n.detail}; {UNREAD_ADVICE}" for n in group]
        elif kind == "untimed-capture":
            out += [f"{n.detail}; {UNTIMED_ADVICE}" for n in group]
        elif kind == "dropped-packets":
            out += [f"{n.detail}; {DROPS_ADVICE}" for n in group]
        elif kind == "quic":
            out.append(
                f"QUIC (HTTP/3) from {plural(len(group), 'client')} to {where} not inspected: "
                f"encrypted, and no key log applies; {QUIC_ADVICE}"
            )
        elif kind == "ip-fragments":
            datagrams = plural(sum(n.count for n in group), "fragmented IP datagram")
            out.append(
                f"{datagrams} {where} not put together: whatever they carried is unknown "
                "(see the capture's warnings for why)"
            )
        elif kind == "ipsec-esp":
            packets = plural(sum(n.count for n in group), "IPsec ESP packet")
            out.append(
                f"{packets} {where} not inspected: encrypted, or NULL-encrypted, which only "
                f"the security association tells; {ESP_ADVICE}"
            )
        elif kind == "unread-tunnel":
            # "VXLAN in UDP port 9999 between A and B, not read as VXLAN (pass --vxlan-port 9999)"
            tunnels = "; ".join(sorted({n.detail.partition("): ")[0] + ")" for n in group}))
            out.append(f"traffic {where} not inspected: it went in {tunnels}")
        elif kind == "sanitized":
            n = sum(r.count for r in group)
            entries = f"{n:,} HAR entr" + ("ies" if n != 1 else "y")
            out.append(f"{entries} to {where} with credentials removed: {SANITIZED_ADVICE}")
        else:
            lost = sum(n.count for n in group)
            out.append(
                f"request bytes lost {plural(lost, 'time')} on {conns} to {where}: "
                "those requests' credentials are unknown"
            )
    rest = ordered[limit:]
    if rest:
        n = sum(len(group) for _, group in rest)
        out.append(f"... and {n:,} more to {plural(len(rest), 'other server')} not inspected")
    return out


def _where(n: NotInspected) -> str:
    """The server a blind spot went to, by name when known (``mail.contoso.com:443
    (10.1.0.10)``); for IPsec ESP, which has no ports nor server, the two addresses."""
    if n.kind in ("unread-capture", "untimed-capture", "dropped-packets"):
        return n.detail.partition(":")[0]  # the file
    if n.kind in ("ipsec-esp", "ip-fragments", "unread-tunnel"):
        if not n.server_ip:
            return "between other address pairs"
        return f"between {n.client_ip} and {n.server_ip}"
    port = f"{n.server_port}"
    return f"{n.host}:{port} ({n.server_ip})" if n.host else f"{n.server_ip}:{port}"


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
        """``blind_spot_lines`` of what in scope was not inspected."""
        return blind_spot_lines(self.not_inspected, limit)

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
                    "paths": list(n.paths),
                }
                for n in self.not_inspected
            ],
            "blind_spots": blind_spot_lines(self.not_inspected, limit=len(self.not_inspected)),
            "damage": list(self.damage),
        }


def damage(captures: list[CaptureStats]) -> list[str]:
    """What the capture lost, in words: every verdict on it carries these as warnings."""
    out = []
    for c in captures:
        name = c.path or "capture"
        if c.dropped:
            out.append(
                f"{name}: {plural(c.dropped, 'packet')} dropped by the capture: traffic missed"
            )
        if c.gaps:
            out.append(f"{name}: {plural(c.gaps, 'TCP gap')}: bytes missing from the capture")
        if c.truncated_packets:
            out.append(f"{name}: {plural(c.truncated_packets, 'packet')} cut by the snap length")
        if c.evicted:
            out.append(
                f"{name}: {plural(c.evicted, 'connection')} dropped (idle or over the buffer cap)"
            )
        out += [f"{name}: {w}" if not w.startswith(name) else w for w in c.warnings]
    return out
