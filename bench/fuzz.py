#!/usr/bin/env python3
"""A long, coverage-guided fuzzing campaign over the whole ``analyze`` pipeline (atheris).

Each input is a capture: it is read as a stream (``Engine.read_stream`` over ``io.BytesIO``), then
every derived table is worked out (tokens, handshakes, verdicts, findings) and every text output
is rendered into memory and encoded as UTF-8 (the table, ``--tokens``, ``--findings``, JSONL and
CSV of events, tokens and findings, ``verify``'s text and JSON, the HTML report without charts).
The contract: any bytes give a result, or ``CaptureError`` for bytes that are not a capture.

Seeds: the bundled captures (``captures/*.pcap*``, ``captures/hybrid/*.pcap``) and, when present,
``../shared/captures/public/*.pcap*``. Besides libFuzzer's own mutations (with a dictionary of
HTTP and authentication words, ``bench/fuzz.dict``), a record-aware mutator rewrites the TCP
payload of one pcap record in place, so the mutated bytes reach the HTTP, auth and token parsers
through an intact capture and TCP stream instead of breaking the record framing.

Every input that raises anything else is written to ``tests/fuzz-regressions/`` (one file per
distinct crash site, named after it) and the campaign goes on; ``tests/test_fuzz_regressions.py``
runs every file there through the same pipeline. Inputs that crash the interpreter, hang
(``-timeout``) or blow the memory limit (``-rss_limit_mb``) are written there by libFuzzer
itself (``crash-``, ``timeout-``, ``oom-`` prefixes).

    pip install atheris          # once (wheels for CPython 3.8-3.11 on x86-64 Linux)
    .venv/bin/python bench/fuzz.py --minutes 30

Prints, and writes to ``bench/out/fuzz-summary.json``, the figures: executions, coverage
(libFuzzer's ``cov`` edges and ``ft`` features), corpus size, crashes, duration and the command.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
CORPUS = OUT / "fuzz-corpus"
REGRESSIONS = REPO / "tests" / "fuzz-regressions"
DICTIONARY = REPO / "bench" / "fuzz.dict"
SUMMARY = OUT / "fuzz-summary.json"
PUBLIC = REPO.parent / "shared" / "captures" / "public"
SHARED_FALLBACK = Path("/work/shared/captures/public")


def seed_files() -> list[Path]:
    """The seed captures: bundled ones, then the public ones when present."""
    seeds = sorted((REPO / "captures").glob("*.pcap*"))
    seeds += sorted((REPO / "captures" / "hybrid").glob("*.pcap"))
    for public in (PUBLIC, SHARED_FALLBACK):
        if public.is_dir():
            seeds += sorted(p for p in public.iterdir() if ".pcap" in p.name)
            break
    return seeds


# -- the pipeline under test ---------------------------------------------------------------------
def run_pipeline(data: bytes) -> None:
    """Everything ``analyze``, ``verify`` and ``report`` do with one capture, in memory."""
    from analyzer.analysis.verify import evaluate, make_rule, overall
    from analyzer.api import Analysis
    from analyzer.engine import Engine
    from analyzer.model import Event, Finding, TokenRecord
    from analyzer.report.export import write_csv, write_jsonl
    from analyzer.report.html import render_html
    from analyzer.report.table import write_findings, write_table, write_tokens
    from analyzer.report.verification import write_verification
    from analyzer.sources.pcapfile import CaptureError

    engine = Engine()
    try:
        engine.read_stream(io.BytesIO(data), "fuzz.pcap")
    except CaptureError:
        return
    result = engine.finish()
    out = io.StringIO()
    write_table(
        result.events, result.captures, out, result.verdicts, result.findings, result.not_inspected
    )
    write_tokens(result.tokens, out)
    write_findings(result.findings, out, explain=True)
    for records, kind in (
        (result.events, Event),
        (result.tokens, TokenRecord),
        (result.findings, Finding),
    ):
        write_jsonl(records, out)
        write_csv(records, out, kind)
    rule = make_rule(name="fuzz")
    results = [evaluate(rule, result.events, result.captures, result.not_inspected)]
    write_verification(results, overall(results), out, details=True)
    out.write(json.dumps([r.to_dict() for r in results], ensure_ascii=False))
    out.write(render_html(Analysis(result), with_charts=False))
    out.getvalue().encode("utf-8")  # strictly: a lone surrogate would fail every real writer


def crash_name(exc: BaseException) -> str:
    """A stable name for a crash site: exception type and the innermost analyzer frame."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/analyzer/" in f.filename]
    where = frames[-1] if frames else traceback.extract_tb(exc.__traceback__)[-1]
    module = Path(where.filename).stem
    return f"{type(exc).__name__}-{module}-{where.lineno}"


class Campaign:
    """The fuzz target: runs the pipeline, keeps one regression input per crash site."""

    def __init__(self) -> None:
        self.crashes: dict[str, str] = {}  # crash site -> saved file
        self.executions = 0

    def __call__(self, data: bytes) -> None:
        self.executions += 1
        try:
            run_pipeline(data)
        except Exception as exc:
            name = crash_name(exc)
            if name not in self.crashes:
                digest = hashlib.sha1(data).hexdigest()[:12]
                path = REGRESSIONS / f"{name}-{digest}.pcap"
                REGRESSIONS.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                (path.with_suffix(".txt")).write_text(
                    "".join(traceback.format_exception(exc))[-4000:], encoding="utf-8"
                )
                self.crashes[name] = str(path.relative_to(REPO))
                print(f"\n*** new crash {name}: saved {path}", file=sys.stderr, flush=True)


# -- a record-aware mutator ----------------------------------------------------------------------
_PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1": "<", b"\x4d\x3c\xb2\xa1": "<"}
_PCAP_MAGICS.update({b"\xa1\xb2\xc3\xd4": ">", b"\xa1\xb2\x3c\x4d": ">"})


def payload_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each Ethernet/IPv4/TCP payload of a classic pcap file (others: none)."""
    order = _PCAP_MAGICS.get(data[:4])
    if order is None or len(data) < 24:
        return []
    spans = []
    pos = 24
    rec = struct.Struct(order + "IIII")
    while pos + 16 <= len(data) and len(spans) < 100_000:
        _s, _f, caplen, _olen = rec.unpack_from(data, pos)
        start, end = pos + 16, pos + 16 + caplen
        if end > len(data):
            break
        if caplen >= 54 and data[start + 12 : start + 14] == b"\x08\x00":
            ihl = (data[start + 14] & 0x0F) * 4
            tcp = start + 14 + ihl
            if data[start + 23] == 6 and tcp + 13 < end:
                payload = tcp + ((data[tcp + 12] >> 4) * 4)
                if payload < end:
                    spans.append((payload, end))
        pos = end
    return spans


def mutate(data: bytes, max_size: int, seed: int) -> bytes:
    """Half the time mutate one TCP payload in place (length kept, so the TCP stream holds);
    otherwise, or for pcapng and non-captures, libFuzzer's own mutation of the whole input."""
    import atheris

    rng = random.Random(seed)
    spans = payload_spans(data) if rng.random() < 0.5 else []
    if not spans:
        return atheris.Mutate(data, max_size)
    start, end = rng.choice(spans)
    size = end - start
    mutated = atheris.Mutate(data[start:end], size)
    mutated = (mutated + data[start:end])[:size]
    return data[:start] + mutated + data[end:]


# -- the campaign --------------------------------------------------------------------------------
def fuzz_child(args: list[str]) -> None:
    """Runs in the child process: instrument the analyzer, then hand over to libFuzzer."""
    import atheris

    with atheris.instrument_imports(include=["analyzer"]):
        import analyzer.analysis.verify
        import analyzer.api
        import analyzer.auth.challenges
        import analyzer.auth.spnego
        import analyzer.engine
        import analyzer.oauth.keys
        import analyzer.report.export
        import analyzer.report.html
        import analyzer.report.table
        import analyzer.report.verification  # noqa: F401
    campaign = Campaign()
    atheris.Setup([sys.argv[0], *args], campaign, custom_mutator=mutate)
    atheris.Fuzz()


_STATS = re.compile(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/(\S+)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="campaign length (30)")
    parser.add_argument("--timeout", type=int, default=20, help="seconds one input may take")
    parser.add_argument("--rss-limit-mb", type=int, default=2048)
    parser.add_argument("--max-len", type=int, default=0, help="0: the largest seed")
    parser.add_argument("--fresh", action="store_true", help="start from the seeds alone")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("libfuzzer", nargs="*", help="extra libFuzzer options (-name=value)")
    args = parser.parse_args()
    if args.child:
        fuzz_child(args.libfuzzer)
        return 0
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed: .venv/bin/pip install atheris", file=sys.stderr)
        return 2
    if args.fresh and CORPUS.exists():
        shutil.rmtree(CORPUS)
    CORPUS.mkdir(parents=True, exist_ok=True)
    seeds = seed_files()
    for seed in seeds:
        shutil.copy(seed, CORPUS / seed.name)
    REGRESSIONS.mkdir(parents=True, exist_ok=True)
    max_len = args.max_len or max(p.stat().st_size for p in seeds)
    seconds = int(args.minutes * 60)
    options = [
        f"-max_total_time={seconds}",
        f"-timeout={args.timeout}",
        f"-rss_limit_mb={args.rss_limit_mb}",
        f"-max_len={max_len}",
        f"-artifact_prefix={REGRESSIONS}/",
        f"-dict={DICTIONARY}",
        "-print_final_stats=1",
        "-reload=0",
        *args.libfuzzer,
        str(CORPUS),
    ]
    shown = f"{Path(sys.executable).name} bench/fuzz.py --minutes {args.minutes:g}"
    print(f"fuzzing {len(seeds)} seed captures for {args.minutes:g} min: {shown}", flush=True)
    started = time.monotonic()
    log = OUT / "fuzz.log"
    restarts = 0
    lines: list[str] = []
    # libFuzzer stops at an interpreter crash, a hang or an out-of-memory input (after saving
    # it): start again on the grown corpus until the time is used up.
    while True:
        left = seconds - int(time.monotonic() - started)
        if left < 10:
            break
        options[0] = f"-max_total_time={left}"
        command = [sys.executable, str(Path(__file__).resolve()), "--child", "--", *options]
        with log.open("a", encoding="utf-8") as fh:
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace")
                fh.write(line)
                lines.append(line)
                if " NEW " in line or "DONE" in line or "crash" in line.lower():
                    print(line, end="", flush=True)
            code = proc.wait()
        if code == 0:
            break
        restarts += 1
    duration = time.monotonic() - started
    summary = summarise(lines, duration, restarts, shown, len(seeds))
    SUMMARY.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2))
    return 1 if summary["crash_files"] else 0


def summarise(lines: list[str], duration: float, restarts: int, command: str, seeds: int) -> dict:
    executions = cov = ft = corpus = 0
    runs = 0
    for line in lines:
        m = _STATS.match(line)
        if m:
            executions = int(m.group(1))
            cov, ft, corpus = int(m.group(2)), int(m.group(3)), int(m.group(4))
        if line.startswith("stat::number_of_executed_units:"):
            runs += int(line.split(":")[-1])
    crash_files = sorted(
        str(p.relative_to(REPO))
        for p in REGRESSIONS.iterdir()
        if p.suffix != ".txt" and p.stat().st_mtime >= time.time() - duration - 5
    )
    return {
        "command": command,
        "seeds": seeds,
        "duration_s": round(duration),
        "executions": runs or executions,
        "exec_per_s": round((runs or executions) / max(duration, 1), 1),
        "coverage_edges": cov,
        "coverage_features": ft,
        "corpus": corpus,
        "restarts": restarts,
        "crash_files": crash_files,
        "python": sys.version.split()[0],
        "atheris": _atheris_version(),
    }


def _atheris_version() -> str:
    from importlib.metadata import version

    return version("atheris")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
