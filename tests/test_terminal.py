"""The terminal table through a real pseudo-terminal at 80, 120 and 200 columns, the pager, and the
plain text a pipe gets (160 columns, or unlimited with --wide; -q for the summary alone)."""

from __future__ import annotations

import fcntl
import os
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SFB = str(ROOT / "captures" / "exchange-sfb.pcap")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
CODE = "import sys; from analyzer.cli import main; sys.exit(main(sys.argv[1:]))"


def on_terminal(columns: int, *args: str, rows: int = 50, env: dict | None = None) -> str:
    """Run the CLI with standard output on a pseudo-terminal of the given size."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # child: stdout is the pseudo-terminal
        fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        os.environ.update(env or {})
        os.execv(sys.executable, [sys.executable, "-c", CODE, *args])
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")


def piped(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "analyzer", *args], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("columns", [80, 120, 200])
def test_terminal_fits_its_width(columns: int) -> None:
    shown = on_terminal(columns, "analyze", SFB, "--no-progress", "--no-pager")
    assert "\x1b[" in shown  # coloured
    plain = ANSI.sub("", shown)
    lines = plain.splitlines()
    assert max(len(line) for line in lines) <= columns
    assert "OAUTH-WITH-FALLBACK" in plain and "Findings (9)" in plain
    # the events keep their columns by priority; what does not fit moves below its row
    head = next(line for line in lines if line.startswith("  #  "))
    kept = head.split()
    assert kept[:6] == ["#", "time", "client", "server", "request", "status"][: len(kept[:6])]
    assert {"#", "time", "client", "server", "request"} <= set(kept)
    for name in ("status", "class", "identity", "notes"):
        assert name in kept or re.search(rf"^ {{6}}{name}: ", plain, re.M), name
    assert "Events (15), times UTC on 2026-03-02" in plain  # UTC said once, one day: no dates
    assert "2026-03-02 09:00" not in "\n".join(lines[lines.index(head) :])
    # every event's request is there in full, wrapped inside its column when narrow
    assert plain.count("Exchange.asmx") + plain.count("e.asmx") >= 9


def test_wide_terminal_keeps_every_column_in_the_grid() -> None:
    shown = ANSI.sub("", on_terminal(240, "analyze", SFB, "--no-progress", "--no-pager"))
    head = next(line for line in shown.splitlines() if line.startswith("  #  "))
    assert head.split() == [
        "#", "time", "client", "server", "request", "status", "class", "identity", "notes",
    ]  # fmt: skip


def test_long_output_goes_through_the_pager(tmp_path: Path) -> None:
    paged = tmp_path / "paged.txt"
    env = {"PAGER": f"cat > {paged}", "OAUTH_ANALYZER_PAGER": ""}
    shown = on_terminal(120, "analyze", SFB, "--no-progress", rows=20, env=env)
    assert "Verdicts" not in shown  # all of it went to the pager
    assert "Verdicts" in ANSI.sub("", paged.read_text())
    shown = on_terminal(120, "analyze", SFB, "--no-progress", "--no-pager", rows=20, env=env)
    assert "Verdicts" in shown


def test_pipe_lines_fit_160_columns_unless_wide() -> None:
    text = piped("analyze", SFB)
    assert "\x1b[" not in text
    assert max(len(line) for line in text.splitlines()) <= 160
    wide = piped("analyze", SFB, "--wide")
    assert max(len(line) for line in wide.splitlines()) > 160
    assert "1 capture: 136 packets, 8 TCP connections" in text  # plural right


def test_summary_only() -> None:
    text = piped("analyze", SFB, "-q")
    assert "Verdicts" in text and "Findings (9)" in text and "Read 1 capture" in text
    assert "Events by client -> server" in text
    assert "\nEvents (" not in text


def test_ipv6_endpoints_are_bracketed() -> None:
    from analyzer.words import endpoint

    assert endpoint("2001:db8::1", 443) == "[2001:db8::1]:443"
    assert endpoint("10.0.0.1", 80) == "10.0.0.1:80"


def test_dates_shown_when_events_span_days() -> None:
    import io

    import analyzer
    from analyzer.model import evolve
    from analyzer.report.table import write_events

    events = analyzer.analyze(SFB).result.events
    later = [evolve(events[-1], event_id=99, ts=events[-1].ts + 3 * 86400)]
    out = io.StringIO()
    write_events([*events, *later], out)
    text = out.getvalue()
    assert "times UTC\n" in text and "2026-03-05 09:00:17.069" in text
