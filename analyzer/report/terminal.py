"""The ``analyze`` summary on a terminal: the plain text of ``report.table``, fitted to the
terminal's width and coloured with ANSI codes.

Colour is added to cells already laid out, so a terminal run costs what a piped one does; long
output goes through a pager (``report.pager``).
"""

from __future__ import annotations

from typing import IO

from analyzer.model import CaptureStats, Event, Finding, NotInspected, PairVerdict
from analyzer.report.table import Style, write_table

_RESET = "\x1b[0m"
_CODES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}
VERDICT_STYLE = {
    "oauth-only": "bold green",
    "oauth-with-fallback": "bold yellow",
    "oauth-rejected": "bold red",
    "no-oauth": "bold red",
    "mixed": "bold yellow",
    "unauthenticated": "dim",
}
SEVERITY_STYLE = {"high": "bold red", "medium": "yellow", "low": "cyan", "info": "dim"}
CLASS_STYLE = {"oauth": "green", "basic": "red", "ntlm": "yellow", "negotiate-ntlm": "yellow"}


def ansi(text: str, style: str) -> str:
    """``text`` in ``style`` (space-separated names: bold, dim, red, green, yellow, cyan)."""
    codes = ";".join(_CODES[name] for name in style.split() if name in _CODES)
    return f"\x1b[{codes}m{text}{_RESET}" if codes else text


class AnsiStyle(Style):
    """Headings bold, verdicts and severities by tone, statuses and classes coloured."""

    def heading(self, text: str) -> str:
        return ansi(text, "bold")

    def verdict(self, text: str, verdict: str) -> str:
        return ansi(text, VERDICT_STYLE.get(verdict, ""))

    def severity(self, text: str, severity: str) -> str:
        return ansi(text, SEVERITY_STYLE.get(severity, ""))

    def warning(self, text: str) -> str:
        return ansi(text, "yellow")

    def cell(self, column: str, text: str, padded: str) -> str:
        if column == "status" and text[:1] in "45":
            return ansi(padded, "red")
        if column == "class" and text in CLASS_STYLE:
            return ansi(padded, CLASS_STYLE[text])
        if column == "#":
            return ansi(padded, "dim")
        return padded


def write_rich(
    events: list[Event],
    captures: list[CaptureStats],
    verdicts: list[PairVerdict],
    findings: list[Finding],
    out: IO[str],
    not_inspected: list[NotInspected] = (),
    *,
    width: int = 100,
    summary_only: bool = False,
    reveal: bool = False,
) -> None:
    """The summary as ``write_table`` writes it, ``width`` columns wide and coloured."""
    write_table(
        events,
        captures,
        out,
        verdicts,
        findings,
        not_inspected,
        width=width,
        style=AnsiStyle(),
        summary_only=summary_only,
        reveal=reveal,
    )
