"""A stream's writers: one row per event as it completes, flushed; the status line's words."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from analyzer.engine import analyze_paths
from analyzer.report.stream import EventRows, StatusLine, status_text

CAPTURE = Path(__file__).resolve().parents[1] / "captures" / "exchange-sfb.pcap"
EVENTS = analyze_paths([str(CAPTURE)]).events


class _Counting(io.StringIO):
    """Counts flushes: every row must reach the reader at once."""

    flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_jsonl_rows_are_the_batch_lines_one_flush_each() -> None:
    out = _Counting()
    rows = EventRows("jsonl", out, status=None)
    for e in EVENTS[:3]:
        rows(e)
    lines = out.getvalue().splitlines()
    assert [json.loads(line)["event_id"] for line in lines] == [1, 2, 3]
    assert out.flushes == 3
    assert "credential" not in lines[0]  # secrets stay out unless revealed


def test_csv_rows_have_one_header_then_a_row_per_event() -> None:
    out = _Counting()
    rows = EventRows("csv", out, status=None)
    for e in EVENTS[:2]:
        rows(e)
    table = list(csv.reader(io.StringIO(out.getvalue())))
    assert table[0][:3] == ["time", "ts", "client_ip"]  # the export's columns: key ones first
    assert table[0][-1] == "schema_version"
    event_id = table[0].index("event_id")
    assert [r[event_id] for r in table[1:]] == ["1", "2"]


def test_table_rows_name_the_columns_once() -> None:
    out = _Counting()
    rows = EventRows("table", out, status=None)
    for e in EVENTS[:2]:
        rows(e)
    text = out.getvalue().splitlines()
    assert text[0] == "Events, as their exchanges complete (times UTC)"
    assert text[1].split() == ["#", "time", "client", "server", "request", "status", "class"]
    assert text[2].split() == ["identity", "|", "notes"]  # below each row, within 160 columns
    assert text[3].split()[:2] == ["1", "2026-03-02"]
    assert max(len(line) for line in text) <= 160


def test_status_text_counts_and_elapsed_time() -> None:
    assert status_text(
        packets=12345, nbytes=18_200_000, drops=0, connections=12, events=7, elapsed=3725.9
    ) == ("12,345 packets, 18.2 MB, 0 dropped, 12 open connections, 7 events, 1:02:05")
    assert "drops told at stop" in status_text(
        packets=0, nbytes=0, drops=None, connections=0, events=0, elapsed=0
    )


def test_status_line_is_cleared_before_a_row() -> None:
    err = io.StringIO()
    status = StatusLine(err)
    status.show(packets=1, nbytes=1, drops=0, connections=1, events=0)
    assert err.getvalue().startswith("\r\x1b[K1 packets")
    out = io.StringIO()
    EventRows("jsonl", out, status=status)(EVENTS[0])
    assert err.getvalue().endswith("\r\x1b[K")  # the line was wiped before the row went out
    status.show(packets=2, nbytes=1, drops=0, connections=1, events=1)
    assert err.getvalue().endswith(
        "2 packets, 0.0 MB, 0 dropped, 1 open connections, 1 events, 0:00:00"
    )
