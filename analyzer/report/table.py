"""The terminal summary: what was read, auth counts per client -> server pair, then the events.

Plain, fixed-width text so it reads the same in a terminal, a log file or a test.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import IO

from analyzer.analysis.coverage import blind_spot_lines
from analyzer.model import (
    SCHEMES,
    CaptureStats,
    Challenge,
    Event,
    Finding,
    NotInspected,
    PairVerdict,
    TokenRecord,
)
from analyzer.report.safe_text import printable, terminal_safe
from analyzer.report.times import format_utc
from analyzer.sources.linklayer import MAX_TUNNEL_IDS

MAX_URI = 48
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


def write_table(
    events: list[Event],
    captures: list[CaptureStats],
    out: IO[str],
    verdicts: list[PairVerdict] = (),
    findings: list[Finding] = (),
    not_inspected: list[NotInspected] = (),
) -> None:
    """Write the human summary of one analysis to ``out``. Captured text is data: control
    characters and ANSI sequences in it are escaped (``safe_text``), never sent to a terminal."""
    out = terminal_safe(out)
    write_summary(events, captures, out, verdicts, findings, not_inspected)
    _events(events, out)


def write_summary(
    events: list[Event],
    captures: list[CaptureStats],
    out: IO[str],
    verdicts: list[PairVerdict] = (),
    findings: list[Finding] = (),
    not_inspected: list[NotInspected] = (),
) -> None:
    """The table's summary without its list of events (a stream printed them as they came)."""
    out = terminal_safe(out)
    _captures(captures, out)
    write_uninspected(not_inspected, out)
    _pairs(events, out)
    write_verdicts(verdicts, out)
    write_findings(findings, out)


def write_uninspected(not_inspected: list[NotInspected], out: IO[str]) -> None:
    """The blind spots: traffic not inspected (undecrypted TLS, lost request bytes), per server."""
    lines = blind_spot_lines(not_inspected)
    if not lines:
        return
    out.write("Not inspected\n")
    for line in lines:
        out.write(f"  {printable(line)}\n")
    out.write("\n")


def write_verdicts(verdicts: list[PairVerdict], out: IO[str]) -> None:
    """One line per client -> server pair: is OAuth really in use?"""
    if not verdicts:
        return
    out.write("Verdicts\n")
    for v in verdicts:
        server = f"{v.host or v.server_ip} ({v.server_ip}:{v.server_port})"
        server = f"SIP {server}" if v.protocol == "sip" else server
        line = f"  {v.client_ip} -> {server}: {v.verdict.upper()} - {v.summary}"
        out.write(printable(line) + "\n")
    out.write("\n")


def write_findings(findings: list[Finding], out: IO[str], explain: bool = False) -> None:
    """Findings, most severe first, with their evidence event ids."""
    out = terminal_safe(out)
    out.write(f"Findings ({len(findings)})\n")
    if not findings:
        out.write("  (none)\n\n")
        return
    for f in findings:
        head = f"  [{f.severity.upper():<6}] {f.rule_id}"
        out.write(printable(f"{head}: {f.detail} ({evidence(f.event_ids)})") + "\n")
        if explain:
            out.write(f"           {f.title}. {f.explanation}\n")
    out.write("\n")


def evidence(event_ids: tuple[int, ...], shown: int = 10) -> str:
    """``events 1,2,3 (+294 more)``: a few ids in text; JSON and the HTML keep all of them."""
    head = ",".join(str(i) for i in event_ids[:shown])
    more = f" (+{len(event_ids) - shown} more)" if len(event_ids) > shown else ""
    return f"events {head}{more}"


def _captures(captures: list[CaptureStats], out: IO[str]) -> None:
    packets = sum(c.packets for c in captures)
    conns = sum(c.tcp_connections for c in captures)
    http = sum(c.http_connections for c in captures)
    out.write(
        f"Read {len(captures)} capture(s): {packets:,} packets, {conns:,} TCP connections, "
        f"{http:,} carrying HTTP\n"
    )
    for c in captures:
        extra = []
        if c.dropped:
            extra.append(f"{c.dropped:,} packets dropped by the capture")
        if c.ip_fragments:
            extra.append(f"{c.ip_fragments:,} IP fragments not reassembled")
        if c.truncated_packets:
            extra.append(f"{c.truncated_packets:,} packets cut by the snap length")
        if c.gaps:
            extra.append(f"{c.gaps:,} TCP gaps")
        if c.tls_connections:
            extra.append(f"{c.tls_connections:,} TLS connections unreadable without --tls-keylog")
        line = f"  {c.path}: {c.file_format or '?'}, {c.packets:,} packets"
        out.write(line + (f" ({'; '.join(extra)})" if extra else "") + "\n")
        for text in encapsulation_lines(c):
            out.write(f"    {printable(text)}\n")

        for warning in c.warnings:
            out.write(f"    warning: {printable(warning)}\n")
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
    return f"{name} {n:,} packet{'' if n == 1 else 's'}"


def _pairs(events: list[Event], out: IO[str]) -> None:
    counts: dict[tuple[str, str, str], Counter[str]] = defaultdict(Counter)
    for e in events:
        pair = (e.client_ip, f"{e.server_ip}:{e.server_port}", e.host or "-")
        counts[pair][e.scheme] += 1
    out.write(f"Auth exchanges by client -> server ({len(events):,} events)\n")
    if not events:
        out.write("  (no authentication material found)\n\n")
        return
    used = [s for s in SCHEMES if any(c[s] for c in counts.values())]
    rows = [["client", "server", "host", "events", *used]]
    for (client, server, host), c in sorted(counts.items()):
        rows.append([client, server, host, str(sum(c.values())), *(str(c[s]) for s in used)])
    _grid(rows, out)
    out.write("\n")


def _events(events: list[Event], out: IO[str]) -> None:
    if not events:
        return
    out.write("Events\n")
    _grid([list(EVENT_COLUMNS), *(event_cells(e) for e in events)], out)


#: The columns of the events list (``event_cells`` fills them).
EVENT_COLUMNS = (
    "#", "time (UTC)", "client", "server", "request", "status", "scheme", "identity", "notes",
)  # fmt: skip


def event_cells(e: Event) -> list[str]:
    """One event as the table's cells (the events list, and a stream's rows)."""
    request = f"{e.method} {_short(e.uri)}".strip() or "(response only)"
    return [
        str(e.event_id),
        format_utc(e.ts),
        f"{e.client_ip}:{e.client_port}",
        f"{e.server_ip}:{e.server_port}",
        request,
        "-" if e.status is None else str(e.status),
        _scheme(e),
        _identity(e),
        _notes(e),
    ]


def write_tokens(tokens: list[TokenRecord], out: IO[str]) -> None:
    """One line per distinct token: who issued it for whom, validity, signature, use."""
    out = terminal_safe(out)
    out.write(f"Tokens ({len(tokens):,} distinct)\n")
    if not tokens:
        out.write("  (no tokens found)\n")
        return
    rows = [
        ["fp", "role", "format", "issuer", "audience", "valid (UTC)", "signature", "uses", "flags"]
    ]
    for t in tokens:
        rows.append(
            [
                t.fingerprint,
                t.role + (f" of {','.join(t.outer_fps)}" if t.outer_fps else ""),
                t.format,
                _named(t.iss_app, t.iss),
                _named(t.aud_app, t.aud, t.aud_host),
                _validity(t.nbf, t.exp),
                t.signature or "-",
                str(t.uses),
                ",".join(t.flags),
            ]
        )
    _grid(rows, out)
    for t in tokens:
        if t.key_source:
            out.write(printable(f"  {t.fingerprint} {t.signature}: key from {t.key_source}") + "\n")


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


def _scheme(e: Event) -> str:
    if e.scheme == "none":
        return "-"
    if e.scheme == "other" or e.auth_header in ("query", "form"):
        return f"{e.scheme}({e.scheme_name or e.auth_header})"
    return e.scheme


def _identity(e: Event) -> str:
    if e.token_format and e.token_format not in ("empty", "opaque", "cwt"):
        issuer = e.token_iss_app or e.token_iss or "?"
        audience = e.token_aud_app or e.token_aud or "?"
        realm = f"@{e.token_realm}" if e.token_realm else ""
        return f"{issuer} -> {audience}{realm} [{e.token_signature}] fp={e.token_fp}"
    if e.user:
        who = f"{e.domain}\\{e.user}" if e.domain else e.user
        return f"{who} fp={e.cred_fp}" if e.cred_fp else who
    if e.scheme == "bearer" and e.cred_len == 0:
        return "empty bearer (probe)"
    return f"fp={e.cred_fp}" if e.cred_fp else ""


def _notes(e: Event) -> str:
    notes = []
    if e.token_flags:
        notes.append("token " + ", ".join(e.token_flags))
    if e.challenges:
        notes.append("offers " + ", ".join(_challenge(c) for c in e.challenges))
    if e.diag_code is not None or e.ms_diagnostics:
        what = e.diag_category or e.ms_diagnostics
        notes.append(f"x-ms-diagnostics {e.diag_code} {what}".replace("None ", ""))
    if e.grant_type:
        notes.append(f"token request grant_type={e.grant_type}")
    if e.oauth_error:
        notes.append(f"error={e.oauth_error}")
    if e.access_token_fp:
        notes.append(f"issued token fp={e.access_token_fp}")
    if "metadata" in e.reasons:
        notes.append("metadata document" if e.status and e.status < 300 else "metadata fetch")
    return "; ".join(notes)


def _challenge(c: Challenge) -> str:
    name = c.scheme.capitalize() if c.scheme != "ntlm" else "NTLM"
    detail = c.params.get("client_id") or c.params.get("realm")
    return f"{name}({detail})" if detail else name


def _short(uri: str) -> str:
    return uri if len(uri) <= MAX_URI else uri[: MAX_URI - 3] + "..."


def _grid(rows: list[list[str]], out: IO[str]) -> None:
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        out.write("  " + "  ".join(cells).rstrip() + "\n")
