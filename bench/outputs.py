#!/usr/bin/env python3
"""Measure the outputs on the bench capture (4,630 events): terminal vs pipe, and the HTML report.

1. ``oauth-analyzer analyze CAPTURE`` with standard output on a pseudo-terminal (120 columns,
   ``--no-pager``) and on a pipe, each run ``--repeat`` times; the medians and their ratio
   (goal: the terminal under 1.2x the pipe).
2. ``oauth-analyzer report CAPTURE``: the file's size (goal: at most 3 MB) and its biggest
   sections, then the page opened in headless Chromium at 390 and 1,400 px: the Performance API's
   navigation timings and the page's own marks (``rows-added``, ``report-ready``: every packed
   row added and every table sortable and filterable). Goal: ready in under 2 s.

Makes the capture with ``bench/make_capture.py`` when it is missing. Writes the figures to
``bench/out/outputs.json`` as well.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "bench" / "out"
DEFAULT_CAPTURE = OUT_DIR / "bench.pcap"
sys.path.insert(0, str(REPO / "tests"))

from cdp import CHROMIUM, Browser  # noqa: E402  (the tests' DevTools-protocol client)

CLI = [sys.executable, "-m", "analyzer"]


def on_pipe(capture: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        [*CLI, "analyze", str(capture), "--no-progress"], cwd=REPO, capture_output=True
    )
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    return elapsed


def on_terminal(capture: Path, columns: int = 120, rows: int = 50) -> float:
    import fcntl
    import pty
    import struct
    import termios

    start = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:
        fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        os.chdir(REPO)
        os.execv(sys.executable, [*CLI, "analyze", str(capture), "--no-progress", "--no-pager"])
    while True:
        try:
            if not os.read(fd, 1 << 16):
                break
        except OSError:
            break
    _, status = os.waitpid(pid, 0)
    elapsed = time.perf_counter() - start
    assert os.waitstatus_to_exitcode(status) == 0
    return elapsed


def report(capture: Path, out: Path) -> tuple[float, dict[str, int]]:
    start = time.perf_counter()
    proc = subprocess.run(
        [*CLI, "report", str(capture), "-o", str(out), "--no-progress"], cwd=REPO,
        capture_output=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    page = out.read_text(encoding="utf-8")
    starts = [(m.start(), m.group(1)) for m in re.finditer(r'<section id="sec-([a-z]+)"', page)]
    sizes = {}
    for i, (at, name) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(page)
        sizes[name] = end - at
    return elapsed, sizes


def browser_timings(page: Path) -> dict[int, dict[str, float]]:
    out = {}
    with Browser(timeout=120) as browser:
        for width in (390, 1400):
            browser.open(page.resolve().as_uri(), width, mobile=width < 600)
            while browser.eval("document.body.getAttribute('data-js')") != "ready":
                time.sleep(0.02)
            nav = json.loads(
                browser.eval("JSON.stringify(performance.getEntriesByType('navigation')[0])")
            )
            marks = json.loads(
                browser.eval(
                    "JSON.stringify(performance.getEntriesByType('mark').map("
                    "function (m) { return [m.name, m.startTime]; }))"
                )
            )
            rows = browser.eval("document.querySelectorAll('#events tbody tr').length")
            wide = browser.eval("document.documentElement.scrollWidth > window.innerWidth")
            out[width] = {
                "dom_content_loaded_ms": round(nav["domContentLoadedEventEnd"]),
                "load_ms": round(nav["loadEventEnd"]),
                **{f"{name}_ms": round(at) for name, at in marks},
                "event_rows": rows,
                "page_scrolls_sideways": wide,
            }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--capture", type=Path, default=DEFAULT_CAPTURE)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not args.capture.exists():
        subprocess.run([sys.executable, str(REPO / "bench" / "make_capture.py")], check=True)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    on_pipe(args.capture)  # warm the page cache
    pipe = statistics.median(on_pipe(args.capture) for _ in range(args.repeat))
    tty = statistics.median(on_terminal(args.capture) for _ in range(args.repeat))
    page = OUT_DIR / "report.html"
    seconds, sections = report(args.capture, page)
    size = page.stat().st_size
    figures: dict = {
        "pipe_s": round(pipe, 2),
        "terminal_s": round(tty, 2),
        "terminal_over_pipe": round(tty / pipe, 2),
        "report_s": round(seconds, 2),
        "report_bytes": size,
        "report_sections": sections,
    }
    print(f"analyze, piped:             {pipe:6.2f} s (median of {args.repeat})")
    print(f"analyze, terminal 120 cols: {tty:6.2f} s ({tty / pipe:.2f}x the pipe; goal < 1.2x)")
    print(f"report:                     {seconds:6.2f} s, {size / 1e6:.2f} MB (goal <= 3 MB)")
    for name, n in sorted(sections.items(), key=lambda kv: -kv[1])[:5]:
        print(f"    {name:<12} {n / 1e6:5.2f} MB")
    if CHROMIUM.exists():
        figures["chromium"] = browser_timings(page)
        for width, t in figures["chromium"].items():
            print(
                f"chromium {width:>4} px: DOMContentLoaded {t['dom_content_loaded_ms']} ms, "
                f"load {t['load_ms']} ms, ready {t.get('report-ready_ms')} ms (goal < 2,000), "
                f"{t['event_rows']} event rows, scrolls sideways: {t['page_scrolls_sideways']}"
            )
    (OUT_DIR / "outputs.json").write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
