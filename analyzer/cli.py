"""The ``oauth-analyzer`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from typing import IO

from analyzer.capture.pcapfile import CaptureError
from analyzer.pipeline import AnalysisResult, analyze_paths
from analyzer.report.export import write_csv, write_jsonl
from analyzer.report.table import write_table

PROG = "oauth-analyzer"
PROGRESS_MIN_BYTES = 32 << 20  # show a progress bar only for captures bigger than this


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Find authentication exchanges in packet captures and decode their tokens.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    analyze = sub.add_parser(
        "analyze", help="list every auth exchange in one or more captures (pcap, pcapng, gzip)"
    )
    analyze.add_argument("captures", nargs="+", metavar="CAPTURE")
    analyze.add_argument(
        "--format", choices=("table", "jsonl", "csv"), default="table", help="output format"
    )
    analyze.add_argument("-o", "--output", metavar="PATH", help="write here instead of stdout")
    analyze.add_argument(
        "--reveal-secrets",
        action="store_true",
        help="include full credentials and tokens in jsonl/csv output (off by default)",
    )
    analyze.add_argument(
        "--no-progress", action="store_true", help="never show the progress bar on stderr"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _analyze(args)
    except CaptureError as exc:
        _error(str(exc))
        return 2
    except OSError as exc:
        _error(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
        return 2
    except KeyboardInterrupt:
        return 130


def _analyze(args: argparse.Namespace) -> int:
    for path in args.captures:
        if not os.path.exists(path):
            _error(f"{path}: no such file")
            return 2
    result = _run_with_progress(args.captures, show=not args.no_progress)
    with ExitStack() as stack:
        out: IO[str] = sys.stdout
        if args.output:
            out = stack.enter_context(open(args.output, "w", encoding="utf-8", newline=""))
        try:
            _write(result, args, out)
            out.flush()
        except BrokenPipeError:
            # The reader (e.g. `| head`) went away: not an error for us.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
    return 0


def _write(result: AnalysisResult, args: argparse.Namespace, out: IO[str]) -> None:
    if args.format == "jsonl":
        write_jsonl(result.events, out, reveal_secrets=args.reveal_secrets)
    elif args.format == "csv":
        write_csv(result.events, out, reveal_secrets=args.reveal_secrets)
    else:
        write_table(result.events, result.captures, out)


def _run_with_progress(paths: list[str], show: bool) -> AnalysisResult:
    total = sum(os.path.getsize(p) for p in paths if os.path.isfile(p))
    if not (show and sys.stderr.isatty() and total >= PROGRESS_MIN_BYTES):
        return analyze_paths(paths)
    from rich.progress import BarColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    done_before: dict[str, int] = {}
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        "[progress.percentage]{task.percentage:>3.0f}%",
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=None,
        transient=True,
    ) as bar:
        task = bar.add_task("reading", total=total)

        def progress(path: str, nbytes: int) -> None:
            done_before[path] = nbytes
            bar.update(task, completed=sum(done_before.values()), description=_name(path))

        return analyze_paths(paths, progress=progress)


def _name(path: str) -> str:
    return os.path.basename(path)[:30]


def _error(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
