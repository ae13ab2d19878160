"""Text output of ``oauth-analyzer verify``: per rule the result, its reason, the violations
grouped by kind (each exchange only with ``--details``), what was relaxed, the coverage and the
capture's damage; then the verdict line, with a warning when the capture was damaged."""

from __future__ import annotations

from typing import IO

from analyzer.analysis.verify import RuleResult, warnings
from analyzer.report.safe_text import printable, terminal_safe
from analyzer.report.times import format_utc
from analyzer.words import plural

INDENT = " " * 13


def write_verification(
    results: list[RuleResult], verdict: str, out: IO[str], details: bool = False
) -> None:
    """One block per rule, then the verdict (with the capture's damage as a warning). Captured
    text (hosts, URIs, reasons quoting claims) is written with its control characters escaped."""
    out = terminal_safe(out)
    for r in results:
        out.write(f"{r.result:<12} {r.rule.name}: {r.rule.describe()}\n")
        out.write(f"{INDENT}{r.reason}\n")
        for g in r.groups():
            span = _clock(g["first_ts"])
            if g["last_ts"] != g["first_ts"]:
                span += f" .. {_clock(g['last_ts'])}"
            out.write(f"{INDENT}  {g['count']} x {g['kind']} ({span})\n")
            for reason in g["reasons"]:
                out.write(f"{INDENT}      {printable(reason)}\n")
            if g["more_reasons"]:
                out.write(f"{INDENT}      ... and {plural(g['more_reasons'], 'other reason')}\n")
        if details:
            for v in r.violations:
                e = v.event
                ids = ",".join(str(i) for i in v.event_ids or (e.event_id,))
                line = (
                    f"  {_time(e.ts)}  {e.client_ip}:{e.client_port} -> {e.server_ip}:"
                    f"{e.server_port} ({e.host or '-'}) {e.method} {e.uri}  "
                    f"{e.auth_class or e.scheme}: {v.kind}: {v.reason}  [event {ids}]"
                )
                out.write(printable(line) + "\n")
        elif r.violations:
            out.write(f"{INDENT}(--details lists each of the {len(r.violations)} exchanges)\n")
        for rule_id, n in r.relaxed.items():
            out.write(f"{INDENT}relaxed on purpose: {rule_id} on {plural(n, 'exchange')} (allow)\n")
        _coverage(r, out)
    damage = warnings(results)
    more = f"; and {len(damage) - 1} more, see above" if len(damage) > 1 else ""
    suffix = f" (warning: damaged capture: {printable(damage[0])}{more})" if damage else ""
    out.write(f"{verdict}{suffix}\n")


def _coverage(r: RuleResult, out: IO[str]) -> None:
    c = r.coverage
    if c.exchanges:
        span = f"{_time(c.first_ts)} .. {_time(c.last_ts)} UTC"
        unanswered = f", {c.unanswered} without a captured response" if c.unanswered else ""
        out.write(
            f"{INDENT}coverage: {plural(c.exchanges, 'exchange')} inspected, {span}{unanswered}\n"
        )
    for line in c.blind_spots():  # they name captured hosts, and damage a capture's file
        out.write(f"{INDENT}blind spot: {printable(line)}\n")
    for line in c.damage:
        out.write(f"{INDENT}warning: {printable(line)}\n")


def _time(ts: float | None) -> str:
    return format_utc(ts, 0)


def _clock(ts: float) -> str:
    return format_utc(ts, 0, date=False)
