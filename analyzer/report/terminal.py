"""The ``analyze`` summary on a terminal, drawn with rich: verdicts, findings, pairs, events.

Used only when standard output is a terminal; logs, pipes and tests get the plain, stable text
of ``table.write_table`` instead.
"""

from __future__ import annotations

from typing import IO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from analyzer.analysis.coverage import blind_spot_lines
from analyzer.model import CaptureStats, Event, Finding, NotInspected, PairVerdict
from analyzer.report.safe_text import printable
from analyzer.report.table import _identity, _notes, _scheme
from analyzer.report.times import format_utc

VERDICT_STYLE = {
    "oauth-only": "bold green",
    "oauth-with-fallback": "bold yellow",
    "oauth-rejected": "bold red",
    "no-oauth": "bold red",
    "mixed": "bold yellow",
    "unauthenticated": "dim",
}
SEVERITY_STYLE = {"high": "bold red", "medium": "yellow", "low": "cyan", "info": "dim"}
OUTCOME_STYLE = {
    "accepted": "green",
    "rejected": "red",
    "challenged": "yellow",
    "incomplete": "dim",
}


def write_rich(
    events: list[Event],
    captures: list[CaptureStats],
    verdicts: list[PairVerdict],
    findings: list[Finding],
    out: IO[str],
    not_inspected: list[NotInspected] = (),
) -> None:
    """Render the summary with colours and tables sized to the terminal."""
    console = Console(file=out, highlight=False)
    packets = sum(c.packets for c in captures)
    console.print(
        f"[bold]oauth-traffic-analyzer[/]: {len(captures)} capture(s), {packets:,} packets, "
        f"{len(events):,} auth events"
    )
    for c in captures:
        for warning in c.warnings:  # captured text: never read as markup or control codes
            console.print(Text.assemble("  ", ("warning", "yellow"), ": ", printable(warning)))
        if c.tls_connections and not not_inspected:
            console.print(
                f"  [yellow]{c.tls_connections} TLS connection(s) unreadable[/]: "
                "decrypt with --tls-keylog to see inside"
            )
    for line in blind_spot_lines(not_inspected):
        console.print(Text.assemble("  ", (printable(line), "yellow")))
    console.print()
    for v in verdicts:
        style = VERDICT_STYLE.get(v.verdict, "")
        line = Text.assemble(
            (f"{v.verdict.upper():<20}", style),
            printable(
                f" {v.client_ip} -> {v.host or v.server_ip} ({v.server_ip}:{v.server_port}): "
            ),
            printable(v.summary),
        )
        console.print(line)
    if verdicts:
        console.print()
    console.print(f"[bold]Findings[/] ({len(findings)})")
    for f in findings:
        ids = ",".join(str(i) for i in f.event_ids)
        console.print(
            Text.assemble(
                (f"  {f.severity.upper():<7}", SEVERITY_STYLE.get(f.severity, "")),
                (f"{f.rule_id}", "bold"),
                printable(f": {f.detail} (events {ids})"),
            )
        )
    console.print()
    table = Table(title="Events", title_justify="left", show_lines=False, expand=True)
    widths = {"request": 34, "identity": 44}
    for name in ("#", "time (UTC)", "client", "server", "request", "status", "class", "identity"):
        table.add_column(
            name, no_wrap=True, overflow="ellipsis", max_width=widths.get(name), min_width=None
        )
    table.add_column("notes", overflow="fold", min_width=30)
    for e in events:
        outcome = Text(e.auth_class or _scheme(e), OUTCOME_STYLE.get(e.outcome or "", ""))
        table.add_row(
            str(e.event_id),
            format_utc(e.ts, date=False),
            f"{e.client_ip}:{e.client_port}",
            f"{e.server_ip}:{e.server_port}",
            printable(f"{e.method} {e.uri}".strip()),
            "-" if e.status is None else str(e.status),
            outcome,
            printable(_identity(e)),
            printable(_notes(e)),
        )
    console.print(table)
