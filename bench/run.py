#!/usr/bin/env python3
"""Benchmark the analyzer against ``tshark -z credentials`` and a bare regex scan, in one run.

Makes the capture with ``bench/make_capture.py`` when it is missing, then times, each after a
warm-up read that puts the file in the page cache:

1. ``oauth-analyzer analyze CAPTURE --format jsonl -o bench/out/events.jsonl`` (wall time and the
   child's peak RSS from ``os.wait4``), and once more with ``OAUTH_ANALYZER_PURE_PYTHON=1`` (the
   reader without its native walk; its events must be byte-identical),
2. ``tshark -q -z credentials -r CAPTURE`` as is, and with HTTP body reassembly off (skipped with
   a note when tshark is missing),
3. an in-process ``re.finditer`` over the mmapped file: the case-sensitive literal
   ``Authorization: `` and, separately, ``(?i)authorization:``.

The analyzer and regex runs are repeated (``--repeat``, default 3) and their median is reported.
Prints a table, the ratios and the targets, and checks the analyzer's ``cred_fp`` multiset against
the capture's truth file. Exit status 0 only when that check passes (``--strict``: and the targets).
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "bench" / "out"
DEFAULT_CAPTURE = OUT_DIR / "bench.pcap"
EVENTS = OUT_DIR / "events.jsonl"
EVENTS_PURE = OUT_DIR / "events-pure.jsonl"
PURE_ENV = "OAUTH_ANALYZER_PURE_PYTHON"
MB = 1e6
TARGET_TSHARK_RATIO = 10.0  # analyzer at least this many times faster than tshark credentials
TARGET_REGEX_RATIO = 3.0  # analyzer at most this many times the case-sensitive regex scan
TARGET_RSS_MB = 400.0


@dataclass(slots=True)
class Timing:
    """One measured run."""

    name: str
    seconds: float
    rss_mb: float | None = None  # peak resident set size of the child, MB (10^6 bytes)
    returncode: int = 0
    timed_out: bool = False  # killed at the time limit: ``seconds`` is a lower bound
    note: str = ""


def truth_path(capture: Path) -> Path:
    return capture.with_name(capture.name + ".truth.json")


def warm(path: Path) -> None:
    """Read the whole file once so the timed run finds it in the page cache."""
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(1 << 24)
        while f.readinto(buf):
            pass


def run_child(
    name: str,
    argv: list[str],
    stdout: Path,
    stderr: Path,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
) -> Timing:
    """Run ``argv`` to completion (or kill it at ``timeout`` seconds); wall time and peak RSS
    (``ru_maxrss`` is KiB on Linux)."""
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=REPO, env=env)
        killer = None
        if timeout:
            killer = threading.Timer(timeout, os.kill, (proc.pid, signal.SIGKILL))
            killer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        if killer:
            killer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped: keep Popen quiet
    timed_out = proc.returncode == -signal.SIGKILL and timeout is not None
    return Timing(name, seconds, usage.ru_maxrss * 1024 / MB, proc.returncode, timed_out)


def project_python() -> str:
    """The project's venv interpreter (where the analyzer is installed), else this one."""
    python = REPO / ".venv" / "bin" / "python"
    return str(python if python.exists() else sys.executable)


def analyzer_argv(capture: Path, events: Path) -> list[str]:
    """The installed console script, or ``python -m analyzer`` when it is not installed."""
    tail = ["analyze", str(capture), "--format", "jsonl", "-o", str(events)]
    script = REPO / ".venv" / "bin" / "oauth-analyzer"
    if script.exists():
        return [str(script), *tail]
    return [project_python(), "-m", "analyzer", *tail]


def regex_scan(path: Path, pattern: bytes) -> tuple[float, int]:
    """Seconds to count matches of ``pattern`` over the mmapped file, and the count."""
    rx = re.compile(pattern)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        t0 = time.perf_counter()
        count = sum(1 for _ in rx.finditer(mm))
        return time.perf_counter() - t0, count


def count_packets(path: Path) -> int:
    """Records in a classic pcap (for captures without a truth file); 0 if not a classic pcap."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        if len(mm) < 24:
            return 0
        magic = mm[:4]
        if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
            rec = struct.Struct("<IIII")
        elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
            rec = struct.Struct(">IIII")
        else:
            return 0
        off, n, size = 24, 0, len(mm)
        while off + 16 <= size:
            off += 16 + rec.unpack_from(mm, off)[2]
            n += 1
        return n


def tshark_listing(path: Path) -> Counter[str]:
    """Rows of ``tshark -z credentials`` output, counted by its Protocol column."""
    rows: Counter[str] = Counter()
    start, end = 11, 28  # Protocol column of tshark 4.0; taken from the header line when found
    for line in path.read_text(errors="replace").splitlines():
        if "Protocol" in line and "Username" in line:
            start, end = line.index("Protocol"), line.index("Username")
        elif line[:1].isdigit():
            rows[line[start:end].strip()] += 1
    return rows


def event_fps(path: Path) -> tuple[Counter[str], Counter[str], int]:
    """cred_fp multiset of events whose scheme is not "none", their schemes, and how many of
    them lack a cred_fp. Lines that are not event records (another ``record`` kind) are skipped."""
    fps: Counter[str] = Counter()
    schemes: Counter[str] = Counter()
    no_fp = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if not isinstance(rec, dict) or "scheme" not in rec:
                continue
            if rec.get("record", rec.get("type", "event")) not in ("event", "events"):
                continue
            scheme = rec.get("scheme")
            if scheme in (None, "none"):
                continue
            schemes[str(scheme)] += 1
            if rec.get("cred_fp"):
                fps[rec["cred_fp"]] += 1
            else:
                no_fp += 1
    return fps, schemes, no_fp


def ensure_capture(args: argparse.Namespace) -> tuple[Path, bool]:
    """The capture to measure, made with make_capture.py when missing; whether this run made it."""
    capture: Path = args.capture.resolve()
    if capture == DEFAULT_CAPTURE and capture.exists() and truth_path(capture).exists():
        old = json.loads(truth_path(capture).read_text())
        wanted = {"size_gb": args.size_gb, "auth_scenarios": args.auth, "seed": args.seed}
        if any(old.get(k) != v for k, v in wanted.items()):
            print(f"{capture} was made with other parameters; making it again")
            capture.unlink()
    if capture.exists():
        return capture, False
    print(f"making {capture} ({args.size_gb} GB, {args.auth} auth scenarios) ...")
    argv = [sys.executable, str(REPO / "bench" / "make_capture.py"), str(capture)]
    argv += ["--size-gb", str(args.size_gb), "--auth", str(args.auth), "--seed", str(args.seed)]
    t0 = time.perf_counter()
    subprocess.run(argv, check=True)
    print(f"  made in {time.perf_counter() - t0:.1f} s")
    return capture, True


def median(runs: list[Timing]) -> Timing:
    """The run with the median time (a failed run wins: it must be seen)."""
    failed = [t for t in runs if t.returncode != 0]
    if failed:
        return failed[0]
    ordered = sorted(runs, key=lambda t: t.seconds)
    best = ordered[len(ordered) // 2]
    if len(runs) > 1:
        times = ", ".join(f"{t.seconds:.2f}" for t in runs)
        best.note = (best.note + "; " if best.note else "") + f"median of {times}"
    return best


def time_analyzer(capture: Path, pure: bool, repeat: int) -> Timing:
    events = EVENTS_PURE if pure else EVENTS
    env = dict(os.environ, **{PURE_ENV: "1" if pure else "0"})
    name = "analyzer (jsonl, pure Python)" if pure else "analyzer (jsonl)"
    cmd = analyzer_argv(capture, events)
    runs = []
    for _ in range(repeat):
        events.unlink(missing_ok=True)
        warm(capture)
        err = OUT_DIR / "analyzer.err"
        t = run_child(name, cmd, OUT_DIR / "analyzer.out", err, env=env)
        runs.append(t)
        if t.returncode != 0:
            t.note = f"exit {t.returncode}, see bench/out/analyzer.err"
            tail = err.read_text(errors="replace").splitlines()[-15:]
            print(f"analyzer failed: {' '.join(cmd)}", *tail, sep="\n  ", file=sys.stderr)
            break
    return median(runs)


def compile_package() -> None:
    """Write the package's bytecode once, as an installed package has it. (An editable install
    has none, and with PYTHONDONTWRITEBYTECODE set every run would recompile ~70 ms of it.)"""
    argv = [project_python(), "-m", "compileall", "-q", str(REPO / "analyzer")]
    subprocess.run(argv, cwd=REPO, capture_output=True, check=False)


def native_walk() -> bool:
    """Whether the analyzer in this checkout has its native record walk built."""
    probe = [project_python(), "-c", "import analyzer.sources._walk"]
    return subprocess.run(probe, cwd=REPO, capture_output=True).returncode == 0


def time_tshark(tshark: str, capture: Path, ooo: bool, timeout: float) -> dict[str, Timing]:
    """``tshark -z credentials`` as is, with HTTP body reassembly off (it lists the same
    credentials and is far faster), and optionally with out-of-order TCP reassembly on."""
    variants = [
        ("tshark", "tshark -z credentials", []),
        ("tshark-nobody", "tshark ... http.desegment_body:FALSE", ["http.desegment_body:FALSE"]),
    ]
    if ooo:
        variants.append(
            (
                "tshark-ooo",
                "tshark ... reassemble_out_of_order",
                ["tcp.reassemble_out_of_order:TRUE"],
            )
        )
    out: dict[str, Timing] = {}
    for key, name, prefs in variants:
        warm(capture)
        listing = OUT_DIR / f"{key}-credentials.txt"
        argv = [tshark, "-q", *(a for p in prefs for a in ("-o", p))]
        argv += ["-z", "credentials", "-r", str(capture)]
        t = run_child(name, argv, listing, OUT_DIR / f"{key}.err", timeout)
        rows = tshark_listing(listing)
        listed = ", ".join(f"{n} {p}" for p, n in sorted(rows.items()))
        t.note = f"listed {sum(rows.values())}" + (f" ({listed})" if rows else "")
        if t.timed_out:
            t.note = f"killed at the {timeout:g} s limit: time is a lower bound"
        elif t.returncode != 0:
            t.note += f"; exit {t.returncode}"
        out[key] = t
    return out


def time_regex(capture: Path, repeat: int) -> dict[str, Timing]:
    out: dict[str, Timing] = {}
    for key, name, pattern in (
        ("regex", "regex b'Authorization: '", rb"Authorization: "),
        ("regex-i", "regex b'(?i)authorization:'", rb"(?i)authorization:"),
    ):
        runs = []
        for _ in range(repeat):
            warm(capture)
            secs, count = regex_scan(capture, pattern)
            runs.append(Timing(name, secs, note=f"{count} matches"))
        out[key] = median(runs)
    return out


def fmt_row(t: Timing, size: int, packets: int) -> str:
    rate = size / MB / t.seconds if t.seconds else 0.0
    pps = packets / t.seconds if t.seconds else 0.0
    rss = f"{t.rss_mb:8.0f}" if t.rss_mb is not None else f"{'-':>8}"
    bound = ">" if t.timed_out else " "
    return f"{t.name:<38}{bound}{t.seconds:8.2f} {rate:9.1f} {pps:12,.0f} {rss}  {t.note}"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def report(timings: dict[str, Timing], size: int, packets: int) -> dict[str, bool | None]:
    """Print the table, the ratios and the targets; return each target's verdict."""
    print()
    print(f"{'run':<38} {'seconds':>8} {'MB/s':>9} {'packets/s':>12} {'RSS MB':>8}  notes")
    for t in timings.values():
        print(fmt_row(t, size, packets))
    an, rx = timings["analyzer"], timings["regex"]
    ok = an.returncode == 0 and an.seconds > 0
    print()
    ratios: dict[str, float | None] = {}
    for key in ("tshark", "tshark-nobody", "tshark-ooo"):
        ts = timings.get(key)
        if ts is None or not ok or (ts.returncode != 0 and not ts.timed_out):
            ratios[key] = None
            continue
        ratios[key] = ts.seconds / an.seconds
        print(f"{ts.name} / analyzer: {'>= ' if ts.timed_out else ''}{ratios[key]:.1f}x")
    regex_ratio = an.seconds / rx.seconds if ok and rx.seconds else None
    print("analyzer / regex b'Authorization: ': " + (f"{regex_ratio:.1f}x" if ok else "n/a"))
    tshark_ratio = ratios["tshark"]
    targets = {
        f"analyzer >= {TARGET_TSHARK_RATIO:g}x faster than tshark -z credentials": (
            None if tshark_ratio is None else tshark_ratio >= TARGET_TSHARK_RATIO
        ),
        f"analyzer <= {TARGET_REGEX_RATIO:g}x the case-sensitive regex scan": (
            None if regex_ratio is None else regex_ratio <= TARGET_REGEX_RATIO
        ),
        f"analyzer peak RSS < {TARGET_RSS_MB:g} MB": (
            an.rss_mb < TARGET_RSS_MB if ok and an.rss_mb is not None else None
        ),
    }
    for text, passed in targets.items():
        print(f"  {verdict(passed):<4}  {text}")
    return targets


def check(truth: dict | None, analyzer_ok: bool) -> bool:
    """Compare the analyzer's cred_fp multiset with the truth file; print the outcome."""
    if truth is None:
        print("correctness: FAIL (no truth file; make captures with bench/make_capture.py)")
        return False
    if not analyzer_ok or not EVENTS.exists():
        print("correctness: FAIL (the analyzer did not produce bench/out/events.jsonl)")
        return False
    want = Counter(truth["cred_fps"])
    got, schemes, no_fp = event_fps(EVENTS)
    missing = sum((want - got).values())
    extra = sum((got - want).values())
    print(f"credentials: truth    {sum(want.values())} {truth['by_scheme']}")
    print(f"             analyzer {sum(got.values()) + no_fp} {dict(sorted(schemes.items()))}")
    print(f"             missing {missing}, extra {extra}, events without cred_fp {no_fp}")
    ok = missing == 0 and extra == 0 and no_fp == 0
    print(f"correctness: {'PASS' if ok else 'FAIL'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--capture", type=Path, default=DEFAULT_CAPTURE)
    ap.add_argument("--size-gb", type=float, default=1.0, help="size of a capture made by this run")
    ap.add_argument("--auth", type=int, default=3000, help="auth scenarios in a capture made here")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep a capture this run created")
    ap.add_argument("--no-tshark", action="store_true", help="skip the tshark runs")
    ap.add_argument(
        "--tshark-ooo", action="store_true", help="also time tshark with out-of-order reassembly"
    )
    ap.add_argument(
        "--tshark-timeout",
        type=float,
        default=1800.0,
        help="kill a tshark run after this many seconds and report a lower bound (default 1800)",
    )
    ap.add_argument(
        "--repeat", type=int, default=3, help="runs of the analyzer and regex scans (median)"
    )
    ap.add_argument("--no-pure", action="store_true", help="skip the pure-Python analyzer run")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args(argv)

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    capture, created = ensure_capture(args)
    truth = json.loads(truth_path(capture).read_text()) if truth_path(capture).exists() else None
    size = capture.stat().st_size
    packets = truth["packets"] if truth else count_packets(capture)
    headers = f", {truth['authorization_headers']} Authorization headers" if truth else ""
    print(f"capture {capture}: {size / MB:.1f} MB, {packets:,} packets{headers}")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    native = native_walk()
    compile_package()
    print("native record walk: " + ("built" if native else "NOT built (pure-Python reader)"))
    repeat = max(1, args.repeat)

    timings: dict[str, Timing] = {}
    try:
        timings["analyzer"] = time_analyzer(capture, False, repeat)
        if native and not args.no_pure:
            timings["analyzer-pure"] = time_analyzer(capture, True, 1)
        tshark = shutil.which("tshark")
        if tshark and not args.no_tshark:
            timings |= time_tshark(tshark, capture, args.tshark_ooo, args.tshark_timeout)
        else:
            print("tshark: skipped (" + ("--no-tshark" if tshark else "not installed") + ")")
        timings |= time_regex(capture, repeat)
    finally:
        if created and not args.keep:
            capture.unlink(missing_ok=True)
            truth_path(capture).unlink(missing_ok=True)

    targets = report(timings, size, packets)
    print()
    if not check(truth, timings["analyzer"].returncode == 0):
        return 1
    pure = timings.get("analyzer-pure")
    if pure is not None:
        same = pure.returncode == 0 and EVENTS_PURE.read_bytes() == EVENTS.read_bytes()
        print(f"pure-Python events byte-identical to native: {'PASS' if same else 'FAIL'}")
        if not same:
            return 1
    if args.strict and any(ok is False for ok in targets.values()):
        print("strict: a target was missed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
