"""Writers for a stream (``analyze -``, ``live``): each event the moment its exchange completes.

Every row is flushed as written, so a reader at the other end of a pipe (``jq``, a terminal)
sees it at once; the closing summary is written by the table writers when the stream ends.
A status line (packets, megabytes, drops, open connections, events, elapsed time) is kept on a
terminal's standard error, and cleared before each row when both go to the same terminal.
"""

from __future__ import annotations

import csv
import time
from typing import IO, Any

from analyzer.model import SCHEMA_VERSION, Event
from analyzer.report.export import csv_header, csv_rows
from analyzer.report.json_text import json_encoder
from analyzer.report.layout import fit, render
from analyzer.report.table import EVENT_COLUMNS, PIPE_WIDTH, event_cells

#: Seconds between two repaints of the status line.
STATUS_EVERY = 0.5


class EventRows:
    """Writes one event per row in ``fmt`` (``jsonl``, ``csv`` or ``table``), flushed."""

    def __init__(
        self, fmt: str, out: IO[str], *, reveal_secrets: bool = False, status: StatusLine | None
    ) -> None:
        self.fmt = fmt
        self.out = out
        self.reveal_secrets = reveal_secrets
        self.status = status
        self.count = 0
        self._encode = json_encoder(
            Event, reveal_secrets, lead=(("schema_version", SCHEMA_VERSION),), end="\n"
        )
        self._csv = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
        self._fitted = fit(EVENT_COLUMNS, [STREAM_WIDTHS], _width(out)) if fmt == "table" else None

    def __call__(self, event: Event) -> None:
        if self.status is not None:
            self.status.clear()
        if self.count == 0:
            self._header()
        self.count += 1
        if self.fmt == "jsonl":
            self.out.write(self._encode(event))
        elif self._csv is not None:
            self._csv.writerows(csv_rows([event], Event, self.reveal_secrets))
        elif self._fitted is not None:
            lines = render(self._fitted, EVENT_COLUMNS, [event_cells(event)])
            next(lines)  # the header, written once
            self.out.write("\n".join(lines) + "\n")
        self.out.flush()

    def _header(self) -> None:
        if self._csv is not None:
            self._csv.writerow(csv_header(Event, self.reveal_secrets))
        elif self._fitted is not None:
            self.out.write("Events, as their exchanges complete (times UTC)\n")
            self.out.write(next(render(self._fitted, EVENT_COLUMNS, [])) + "\n")


#: Column widths a stream lays its rows out for (it cannot wait to see the widest cell).
STREAM_WIDTHS = [
    "12345", "2026-03-02 09:00:00.000", "255.255.255.255:65535", "255.255.255.255:65535",
    "x" * 40, "401", "negotiate-ntlm", "x" * 60, "x" * 80,
]  # fmt: skip


def _width(out: IO[str]) -> int:
    """A terminal's width, else the 160 columns of piped text."""
    if out.isatty():
        from analyzer.report.pager import terminal_width

        return terminal_width(out)
    return PIPE_WIDTH


class StatusLine:
    """One line on a terminal, repainted at most every ``STATUS_EVERY`` seconds."""

    def __init__(self, err: IO[str]) -> None:
        self.err = err
        self.started = time.monotonic()
        self._painted = 0.0
        self._shown = False

    def show(self, **counts: Any) -> None:
        now = time.monotonic()
        if now - self._painted < STATUS_EVERY:
            return
        self._painted = now
        text = status_text(elapsed=now - self.started, **counts)
        self.err.write("\r\x1b[K" + text)
        self.err.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self.err.write("\r\x1b[K")
            self.err.flush()
            self._shown = False
            self._painted = 0.0  # repaint at the next chance


def status_text(
    *, packets: int, nbytes: int, drops: int | None, connections: int, events: int, elapsed: float
) -> str:
    """``12,345 packets, 18.2 MB, 0 dropped, 12 open connections, 7 events, 0:01:05``."""
    minutes, seconds = divmod(int(elapsed), 60)
    hours, minutes = divmod(minutes, 60)
    dropped = "drops told at stop" if drops is None else f"{drops:,} dropped"
    return (
        f"{packets:,} packets, {nbytes / 1e6:.1f} MB, {dropped}, {connections:,} open "
        f"connections, {events:,} events, {hours}:{minutes:02}:{seconds:02}"
    )
