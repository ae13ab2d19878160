"""The text summary: what was read, events per client -> server pair, verdicts, findings, events.

One writer for a pipe, a log file and a terminal: lines fit ``width`` (160 characters in a pipe,
the terminal's width on a terminal, no limit with ``--wide``); a ``Style`` may colour it
(``report.terminal``). Times are UTC, said once; dates are shown when the events span more than
a day.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import IO

from analyzer.analysis.coverage import blind_spot_lines
from analyzer.model import (
    SCHEMES,
    SEVERITIES,
    CaptureStats,
    Event,
    Finding,
    Handshake,
    NotInspected,
    PairVerdict,
    TokenRecord,
)
from analyzer.report.cells import class_text, identity_text, notes_text, request_text
from analyzer.report.layout import Column, fit, render, wrap_text
from analyzer.report.safe_text import printable, terminal_safe
from analyzer.report.times import format_utc
from analyzer.sources.linklayer import MAX_TUNNEL_IDS
from analyzer.words import endpoint, plural

#: Line width of text written to a pipe or file (``--wide``: no limit).
PIPE_WIDTH = 160
_DAY = 86400.0
#: What the ids of each encapsulation are called in the summary (one, several).
_ID_NAMES = {
    "VXLAN": ("VNI", "VNIs"),
    "VXLAN-GPE": ("VNI", "VNIs"),
    "GENEVE": ("VNI", "VNIs"),
    "GRE": ("key", "keys"),
    "ERSPAN II": ("session", "sessions"),
    "ERSPAN III": ("session", "sessions"),
    "GTP-U": ("TEID", "TEIDs"),
    "MPLS": ("label", "labels"),
    "PPPoE": ("session", "sessions"),
}
_HEX_IDS = frozenset({"GTP-U", "PPPoE"})  # shown in hex, as tshark shows them
_IDS_SHOWN = 5

#: The events list, most important column first where the width runs short.
EVENT_COLUMNS = (
    Column("#", 0),
    Column("time", 1),
    Column("client", 2),
    Column("server", 3),
    Column("request", 4, min_width=20, max_width=60, wrap=True),
    Column("status", 5),
    Column("class", 6),
    Column("identity", 7, min_width=40, max_width=70, wrap=True),
    Column("notes", 8, min_width=40, max_width=90, wrap=True),
)


class Style:
    """How text is shown: plain here; ``report.terminal.AnsiStyle`` adds colour."""

    def heading(self, text: str) -> str:
        return text

    def verdict(self, text: str, verdict: str) -> str:
        return text

    def severity(self, text: str, severity: str) -> str:
        return text

    def warning(self, text: str) -> str:
        return text

    def cell(self, column: str, text: str, padded: str) -> str:
        return padded


PLAIN = Style()


def write_table(
    events: list[Event],
    captures: list[CaptureStats],
    out: IO[str],
    verdicts: list[PairVerdict] = (),
    findings: list[Finding] = (),
    not_inspected: list[NotInspected] = (),
    *,
    width: int = PIPE_WIDTH,
    style: Style = PLAIN,
    summary_only: bool = False,
    reveal: bool = False,
) -> None:
    """Write the summary of one analysis, then (unless ``summary_only``) every event. Captured
    text is data: in plain output every control character and ANSI sequence is escaped
    (``safe_text``); with colour, the cells and the styled texts are."""
    out = terminal_safe(out, colour=style is not PLAIN)
    write_summary(events, captures, out, verdicts, findings, not_inspected, width, style)
    if not summary_only:
        write_events(events, out, width, style, reveal)


def write_summary(
    events: list[Event],
    captures: list[CaptureStats],
    out: IO[str],
    verdicts: list[PairVerdict] = (),
    findings: list[Finding] = (),
    not_inspected: list[NotInspected] = (),
    width: int = PIPE_WIDTH,
    style: Style = PLAIN,
) -> None:
    """Inputs, blind spots, pairs, verdicts and findings (``-q``; a stream's closing summary)."""
    out = terminal_safe(out, colour=style is not PLAIN)
    write_captures(captures, out, width, style)
    write_uninspected(not_inspected, out, width, style)
    _pairs(events, out, width, style)
    write_verdicts(verdicts, out, width, style)
    write_findings(findings, out, width=width, style=style)


def write_captures(
    captures: list[CaptureStats], out: IO[str], width: int = PIPE_WIDTH, style: Style = PLAIN
) -> None:
    """What was read: packets, connections, and what the capture lost."""
    packets = sum(c.packets for c in captures)
    conns = sum(c.tcp_connections for c in captures)
    http = sum(c.http_connections for c in captures)
    archived = sum(c.exchanges for c in captures)
    out.write(
        style.heading(f"Read {plural(len(captures), 'capture')}")
        + f": {plural(packets, 'packet')}, {plural(conns, 'TCP connection')}, "
        f"{http:,} carrying HTTP"
        + (f"; {plural(archived, 'archived HTTP exchange')} (SAZ, HAR)" if archived else "")
        + "\n"
    )
    for c in captures:
        extra = []
        if c.dropped:
            extra.append(f"{plural(c.dropped, 'packet')} dropped by the capture")
        if c.ip_datagrams_lost:
            extra.append(
                f"{plural(c.ip_datagrams_lost, 'fragmented IP datagram')} not put together"
            )
        if c.truncated_packets:
            extra.append(f"{plural(c.truncated_packets, 'packet')} cut by the snap length")
        if c.gaps:
            extra.append(plural(c.gaps, "TCP gap"))
        if c.tls_connections:
            extra.append(
                f"{plural(c.tls_connections, 'TLS connection')} unreadable without --tls-keylog"
            )
        read = plural(c.exchanges, "exchange") if c.exchanges else plural(c.packets, "packet")
        line = f"{printable(c.path)}: {c.file_format or '?'}, {read}"  # one line, any file name
        _prose(line + (f" ({'; '.join(extra)})" if extra else ""), out, width)
        for text in encapsulation_lines(c):
            _prose(text, out, width, indent=4)
        for warning in c.warnings:
            _prose(style.warning("warning") + f": {printable(warning)}", out, width, indent=4)
    out.write("\n")


def encapsulation_lines(c: CaptureStats) -> list[str]:
    """The tunnels a capture's packets came in, with their ids, and those not read, e.g.
    ``encapsulations: VXLAN 1,204 packets (VNI 5001), ERSPAN II 88 packets (session 7)``."""
    lines = []
    if c.encapsulations:
        parts = []
        for name, n in _by_count(c.encapsulations):
            ids = c.tunnel_ids.get(name)
            if ids and name in _ID_NAMES:
                one, several = _ID_NAMES[name]
                shown = ", ".join(hex(i) if name in _HEX_IDS else str(i) for i in ids[:_IDS_SHOWN])
                if len(ids) > _IDS_SHOWN:
                    plus = "+" if len(ids) >= MAX_TUNNEL_IDS else ""
                    shown += f" and {len(ids) - _IDS_SHOWN}{plus} more"
                parts.append(f"{_packets(name, n)} ({one if len(ids) == 1 else several} {shown})")
            else:
                parts.append(_packets(name, n))
        lines.append("encapsulations: " + ", ".join(parts))
    if c.unread_encapsulations:
        parts = [_packets(name, n) for name, n in _by_count(c.unread_encapsulations)]
        lines.append("encapsulations not read (counted, not analysed): " + ", ".join(parts))
    return lines


def _by_count(counts: dict[str, int]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def _packets(name: str, n: int) -> str:
    return f"{name} {plural(n, 'packet')}"


def write_uninspected(
    not_inspected: list[NotInspected], out: IO[str], width: int = PIPE_WIDTH, style: Style = PLAIN
) -> None:
    """The blind spots: traffic not inspected (undecrypted TLS, lost request bytes), per server."""
    lines = blind_spot_lines(not_inspected)
    if not lines:
        return
    out.write(style.heading("Not inspected") + "\n")
    for line in lines:
        _prose(style.warning(printable(line)), out, width)  # a captured host: one line, inert
    out.write("\n")


def write_verdicts(
    verdicts: list[PairVerdict], out: IO[str], width: int = PIPE_WIDTH, style: Style = PLAIN
) -> None:
    """One line per client -> server pair: is OAuth really in use?"""
    if not verdicts:
        return
    out.write(style.heading("Verdicts") + "\n")
    for v in verdicts:
        word = style.verdict(v.verdict.upper(), v.verdict)
        text = f"{v.client_ip} -> {pair_server(v)}: {v.verdict.upper()} - {v.summary}"
        lines = wrap_text(text, width)
        lines[0] = lines[0].replace(v.verdict.upper(), word, 1)
        out.write("\n".join(lines) + "\n")
    out.write("\n")


def pair_server(v: PairVerdict) -> str:
    """``mail.contoso.com (10.1.0.10:80)``: the Host (or address) and the endpoint; ``SIP``
    before it for a SIP pair."""
    server = f"{v.host or v.server_ip} ({endpoint(v.server_ip, v.server_port)})"
    return f"SIP {server}" if v.protocol == "sip" else server


def write_findings(
    findings: list[Finding],
    out: IO[str],
    explain: bool = False,
    width: int = PIPE_WIDTH,
    style: Style = PLAIN,
) -> None:
    """Findings grouped by severity (as in the HTML report), with their evidence event ids."""
    out.write(style.heading(f"Findings ({len(findings):,})") + "\n")
    if not findings:
        out.write("  (none)\n\n")
        return
    for severity in SEVERITIES:
        group = [f for f in findings if f.severity == severity]
        if not group:
            continue
        title = f"{severity.capitalize()} ({len(group)})"
        out.write("  " + style.severity(title, severity) + "\n")
        for f in group:
            _prose(f"{f.rule_id}: {f.detail} ({evidence(f.event_ids)})", out, width, indent=4)
            if explain:
                _prose(f"{f.title}. {f.explanation}", out, width, indent=8, hanging=0)
    out.write("\n")


def evidence(event_ids: tuple[int, ...], shown: int = 10) -> str:
    """``events 1,2,3 (+294 more)``: a few ids in text; JSON and the HTML keep all of them."""
    if not event_ids:
        return "no event"
    head = ",".join(str(i) for i in event_ids[:shown])
    more = f" (+{len(event_ids) - shown:,} more)" if len(event_ids) > shown else ""
    return ("event " if len(event_ids) == 1 else "events ") + head + more


def _pairs(events: list[Event], out: IO[str], width: int, style: Style) -> None:
    counts: dict[tuple[str, str, str], Counter[str]] = defaultdict(Counter)
    for e in events:
        pair = (e.client_ip or "-", endpoint(e.server_ip, e.server_port), e.host or "-")
        # a request a connection's earlier logon covered sent no credential of its own
        counts[pair]["none" if e.auth_header == "connection" else e.scheme] += 1
    out.write(style.heading(f"Events by client -> server, per scheme sent ({len(events):,})"))
    out.write("\n")
    if not events:
        out.write("  (no authentication material found)\n\n")
        return
    used = [s for s in SCHEMES if any(c[s] for c in counts.values())]
    columns = [
        Column("client", 0),
        Column("server", 1),
        Column("host", 2, min_width=12, max_width=50, wrap=True),
        Column("events", 3),
        *(Column(s, 4 + i) for i, s in enumerate(used)),
    ]
    rows = [
        [client, server, host, f"{sum(c.values()):,}", *(f"{c[s]:,}" for s in used)]
        for (client, server, host), c in sorted(counts.items())
    ]
    grid(columns, rows, out, width, style)
    out.write("\n")


def write_events(
    events: list[Event],
    out: IO[str],
    width: int = PIPE_WIDTH,
    style: Style = PLAIN,
    reveal: bool = False,
) -> None:
    """Every event in time order, fitted to ``width``."""
    if not events:
        return
    day = format_utc(events[0].ts)[:10]
    dated = spans_days(events) or day.startswith("<")  # an invalid time shows as it is
    when = "" if dated else f" on {day}"
    out.write(style.heading(f"Events ({len(events):,}), times UTC{when}") + "\n")
    if reveal and any(e.password is not None for e in events):
        out.write("  Secrets shown (--reveal-secrets): Basic passwords in the identity column\n")
    rows = [event_cells(e, dated=dated, reveal=reveal) for e in events]
    grid(list(EVENT_COLUMNS), rows, out, width, style)


def spans_days(events: Sequence[Event]) -> bool:
    """Do the events span more than a day (so times need their date)?"""
    times = [e.ts for e in events]
    return bool(times) and max(times) - min(times) > _DAY


def event_cells(e: Event, *, dated: bool = True, reveal: bool = False) -> list[str]:
    """One event as the table's cells (the events list, and a stream's rows)."""
    return [
        str(e.event_id),
        format_utc(e.ts, date=dated),
        endpoint(e.client_ip, e.client_port),
        endpoint(e.server_ip, e.server_port),
        request_text(e),
        "-" if e.status is None else str(e.status),
        class_text(e),
        identity_text(e, reveal),
        notes_text(e),
    ]


def write_tokens(
    tokens: list[TokenRecord], out: IO[str], width: int = PIPE_WIDTH, style: Style = PLAIN
) -> None:
    """One line per distinct token: who issued it for whom, validity, signature, use."""
    out.write(style.heading(f"Tokens ({len(tokens):,} distinct), times UTC") + "\n")
    if not tokens:
        out.write("  (no tokens found)\n")
        return
    columns = [
        Column("fp", 0),
        Column("role", 6, min_width=14, max_width=40, wrap=True),
        Column("format", 7),
        Column("issuer", 1, min_width=24, max_width=50, wrap=True),
        Column("audience", 2, min_width=24, max_width=50, wrap=True),
        Column("valid", 4),
        Column("signature", 3),
        Column("uses", 5),
        Column("flags", 8, min_width=16, max_width=60, wrap=True),
    ]
    rows = [
        [
            t.fingerprint,
            t.role + (f" of {','.join(t.outer_fps)}" if t.outer_fps else ""),
            t.format,
            _named(t.iss_app, t.iss),
            _named(t.aud_app, t.aud, t.aud_host),
            _validity(t.nbf, t.exp),
            t.signature or "-",
            f"{t.uses:,}",
            ", ".join(t.flags),
        ]
        for t in tokens
    ]
    grid(columns, rows, out, width, style)
    for t in tokens:
        if t.key_source:
            _prose(f"{t.fingerprint} {t.signature}: key from {t.key_source}", out, width)


def write_handshakes(
    handshakes: list[Handshake], out: IO[str], width: int = PIPE_WIDTH, style: Style = PLAIN
) -> None:
    """One line per handshake: class, outcome, endpoints, its events and why."""
    out.write(style.heading(f"Handshakes ({len(handshakes):,}), times UTC") + "\n")
    if not handshakes:
        out.write("  (none)\n")
        return
    columns = [
        Column("#", 0),
        Column("start", 1),
        Column("class", 2),
        Column("outcome", 3),
        Column("client", 4),
        Column("server", 5, min_width=14, max_width=50, wrap=True),
        Column("events", 6, min_width=8, max_width=30, wrap=True),
        Column("reason", 7, min_width=20, max_width=90, wrap=True),
    ]
    rows = [
        [
            str(h.handshake_id),
            format_utc(h.start_ts),
            h.auth_class,
            h.outcome,
            h.client_ip,
            f"{h.host or h.server_ip} ({endpoint(h.server_ip, h.server_port)})",
            ",".join(str(i) for i in h.event_ids),
            h.reason,
        ]
        for h in handshakes
    ]
    grid(columns, rows, out, width, style)


def _named(app: str | None, raw: str | None, host: str | None = None) -> str:
    if raw is None:
        return "-"
    if app is None:
        return raw if len(raw) <= 40 else raw[:37] + "..."
    realm = raw.rsplit("@", 1)[1] if "@" in raw else ""
    return f"{app}" + (f" ({host})" if host else "") + (f"@{realm}" if realm else "")


def _validity(nbf: float | None, exp: float | None) -> str:
    start = format_utc(nbf, -1) if nbf is not None else "?"
    end = format_utc(exp, -1) if exp is not None else "?"
    return f"{start} - {end}" if nbf is not None or exp is not None else "-"


def grid(
    columns: list[Column], rows: list[list[str]], out: IO[str], width: int, style: Style
) -> None:
    fitted = fit(columns, rows, width)
    paint = None if style is PLAIN else style.cell
    out.write("\n".join(render(fitted, columns, rows, paint)) + "\n")


def _prose(text: str, out: IO[str], width: int, indent: int = 2, hanging: int = 4) -> None:
    out.write("\n".join(wrap_text(text, width, indent, hanging)) + "\n")
