"""Time and peak memory of reading a large HTTP archive (HAR), streamed with ijson and with the
single json.load the reader falls back to without it. Not a test.

    .venv/bin/python bench/har_large.py              # a 300 MB HAR in bench/out/, then deleted
    .venv/bin/python bench/har_large.py --size-mb 800 --keep

The archive repeats the entries of captures/archives/exchange-sfb.har (every auth scheme) with a
large text body added to each response, as browser exports of pages with scripts and images
are: most of the bytes are bodies the auth stages never keep.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SOURCE = REPO / "captures" / "archives" / "exchange-sfb.har"
RUN = (
    "import sys\n"
    "if sys.argv[1] == 'json': sys.modules['ijson'] = None\n"
    "from analyzer.cli import main\n"
    "sys.exit(main(['analyze', sys.argv[2], '--format', 'jsonl', '-o', '/dev/null']))\n"
)


def make(path: Path, size_mb: int) -> int:
    """Write a HAR of about ``size_mb`` MB; return its number of entries."""
    entries = json.loads(SOURCE.read_text(encoding="utf-8"))["log"]["entries"]
    filler = "x" * 200_000
    written = 0
    n = 0
    with path.open("w", encoding="utf-8") as out:
        out.write('{"log": {"version": "1.2", "creator": {"name": "bench"}, "entries": [')
        while written < size_mb << 20:
            entry = dict(entries[n % len(entries)])
            response = dict(entry["response"])
            response["content"] = {"mimeType": "text/html", "text": filler}
            entry["response"] = response
            text = json.dumps(entry)
            out.write(("," if n else "") + text)
            written += len(text)
            n += 1
        out.write("]}}\n")
    return n


def measure(parser: str, path: Path) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of one ``analyze`` run in a fresh interpreter."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", RUN, parser, str(path)], check=True, cwd=REPO)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return seconds, peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=300)
    parser.add_argument("--keep", action="store_true", help="keep bench/out/large.har")
    args = parser.parse_args()
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    path = out / "large.har"
    entries = make(path, args.size_mb)
    size = path.stat().st_size / (1 << 20)
    print(f"{path}: {size:.0f} MiB, {entries:,} entries")
    try:
        # RUSAGE_CHILDREN keeps the largest child so far: the smaller run goes first
        for name in ("ijson", "json"):
            seconds, peak = measure(name, path)
            rate = size / seconds
            print(f"  {name:5}: {seconds:6.1f} s, peak RSS {peak:,.0f} MiB ({rate:.0f} MiB/s)")
    finally:
        if not args.keep:
            path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
