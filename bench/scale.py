#!/usr/bin/env python3
"""Benchmark the ways past one core, in one run: ``--jobs``, a Dask cluster, and pyshark's cost.

Makes what is missing (``bench/make_capture.py``): the 1 GB capture ``bench/out/bench.pcap`` and
ten 100 MB captures ``bench/out/fleet/sensorN.pcap`` (seeds 1-10, 300 auth scenarios each: the
1 GB capture's density). Then times, each file warmed
into the page cache first, with the 1-minute load average before each run beside its figure:

1. on the 1 GB capture: the bare regex scan (``Authorization: `` over the mmapped file, as
   ``bench/run.py``), then ``analyze --format jsonl`` with ``--jobs 1`` and ``--jobs 2``;
2. on the ten files: ``analyze`` with ``--jobs 1`` and ``--jobs 2``, and ``--dask`` against a
   ``LocalCluster`` of 2 worker processes (1 thread each) started here beforehand (its start-up is
   reported apart: a cluster is long-lived); the events of every run must be byte-identical.
   The command line pays for importing Dask on every run (timed apart); so the same comparison
   is also made from Python with a connected client, ``analyze_many`` against
   ``analyze_parallel(paths, 2)``, where that cost is paid once;
3. a projection of 1 TB on a 32-worker cluster: the tasks of the ten files are timed alone on
   the 2-worker cluster (per-worker throughput = bytes / (task wall time x 2)), then the
   client's merge and analysis (``engine.assemble`` and the findings), which is scaled
   linearly with the events (assumes storage feeding 32 workers at that rate, and one client);
4. pyshark against calling tshark directly for ``--crosscheck``'s question (the HTTP/1.x
   Authorization headers, display filter ``http.authorization``) on one 100 MB file.

Prints a table and writes ``bench/out/scale.json``. ``--repeat N`` takes the median of N runs.
Usage: ``.venv/bin/python bench/scale.py [--repeat 3] [--skip-pyshark]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from run import DEFAULT_CAPTURE, OUT_DIR, REPO, regex_scan, warm  # noqa: E402

FLEET = OUT_DIR / "fleet"
FLEET_FILES = 10
FLEET_GB = 0.1
PROJECTED_BYTES = 1e12
PROJECTED_WORKERS = 32
MB = 1e6


def python() -> str:
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv if venv.exists() else sys.executable)


def make(path: Path, size_gb: float, seed: int) -> None:
    """A capture of ``size_gb`` with auth exchanges as dense as the 1 GB one's (3,000 a GB)."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [python(), str(BENCH / "make_capture.py"), str(path), "--size-gb", str(size_gb)]
    cmd += ["--auth", str(round(3000 * size_gb)), "--seed", str(seed)]
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL)


def load() -> float:
    return round(os.getloadavg()[0], 2)


def timed(argv: list[str], out: Path, repeat: int) -> dict:
    """Median wall time of ``argv`` (run ``repeat`` times), with the load before each run."""
    seconds, loads = [], []
    for _ in range(repeat):
        loads.append(load())
        t0 = time.perf_counter()
        proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
        seconds.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stderr}")
    return {
        "seconds": round(statistics.median(seconds), 3),
        "runs": [round(s, 3) for s in seconds],
        "load": loads,
        "output": str(out),
    }


def analyze(inputs: list[Path], out: Path, *extra: str) -> list[str]:
    script = REPO / ".venv" / "bin" / "oauth-analyzer"
    head = [str(script)] if script.exists() else [python(), "-m", "analyzer"]
    return [*head, "analyze", *map(str, inputs), "--format", "jsonl", "-o", str(out), *extra]


def same(*paths: Path) -> bool:
    first = paths[0].read_bytes()
    return all(p.read_bytes() == first for p in paths[1:])


def one_capture(repeat: int) -> dict:
    make(DEFAULT_CAPTURE, 1.0, 1)
    warm(DEFAULT_CAPTURE)
    size = DEFAULT_CAPTURE.stat().st_size
    scans = []
    for _ in range(repeat):
        before = load()
        seconds, count = regex_scan(DEFAULT_CAPTURE, rb"Authorization: ")
        scans.append((seconds, before))
    scan = sorted(scans)[len(scans) // 2]
    runs = {}
    for jobs in (1, 2):
        out = OUT_DIR / f"scale-jobs{jobs}.jsonl"
        runs[f"jobs {jobs}"] = timed(
            analyze([DEFAULT_CAPTURE], out, "--jobs", str(jobs)), out, repeat
        )
    identical = same(*(Path(r["output"]) for r in runs.values()))
    return {
        "capture": str(DEFAULT_CAPTURE),
        "bytes": size,
        "regex scan": {"seconds": round(scan[0], 3), "load": [scan[1]], "matches": count},
        **runs,
        "identical": identical,
        "jobs 1 / scan": round(runs["jobs 1"]["seconds"] / scan[0], 2),
        "jobs 2 / scan": round(runs["jobs 2"]["seconds"] / scan[0], 2),
        "speed-up": round(runs["jobs 1"]["seconds"] / runs["jobs 2"]["seconds"], 2),
    }


def fleet(repeat: int) -> dict:
    files = [FLEET / f"sensor{i}.pcap" for i in range(1, FLEET_FILES + 1)]
    for i, path in enumerate(files, 1):
        make(path, FLEET_GB, i)
    for path in files:
        warm(path)
    size = sum(p.stat().st_size for p in files)
    runs = {}
    for jobs in (1, 2):
        out = OUT_DIR / f"scale-fleet-jobs{jobs}.jsonl"
        runs[f"jobs {jobs}"] = timed(analyze(files, out, "--jobs", str(jobs)), out, repeat)
    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",  # any free port: never a clash with another cluster
            worker_dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        start = time.perf_counter() - t0
        out = OUT_DIR / "scale-fleet-dask.jsonl"
        runs["dask 2 workers"] = timed(
            analyze(files, out, "--dask", cluster.scheduler_address), out, repeat
        )
        merge = client_merge(files, client)
        api = through_api(files, client, repeat)
    identical = same(*(Path(r["output"]) for r in runs.values()))
    dask = runs["dask 2 workers"]["seconds"]
    per_worker = size / (merge["tasks seconds"] * 2)  # the workers' reading alone
    events = Path(runs["dask 2 workers"]["output"]).read_bytes().count(b"\n")
    # 1 TB: the workers' share at the measured per-worker rate, then the client's merge of
    # events scaled by the bytes (events per byte as in these captures)
    scale = PROJECTED_BYTES / size
    reading = PROJECTED_BYTES / (per_worker * PROJECTED_WORKERS)
    merging = merge["merge seconds"] * scale
    return {
        "files": [str(p) for p in files],
        "bytes": size,
        "events": events,
        **runs,
        "identical": identical,
        "cluster start-up seconds": round(start, 2),
        "dask / jobs 2": round(dask / runs["jobs 2"]["seconds"], 2),
        "import distributed seconds": import_seconds("distributed", repeat),
        "api": api,
        "per-worker MB/s": round(per_worker / MB, 1),
        **merge,
        "projection 1 TB, 32 workers": {
            "reading seconds": round(reading),
            "client merge seconds": round(merging),
            "total minutes": round((reading + merging) / 60, 1),
            "events": round(events * scale),
        },
    }


def through_api(files: list[Path], client, repeat: int) -> dict:
    """The same analysis from Python, where a cluster's user works (a notebook or a service
    holding a connected ``Client``): ``analyze_many(files, client)`` against
    ``analyze_parallel(files, 2)`` in this process, findings included, nothing written. Here
    neither pays for starting Python nor importing Dask (``import distributed`` alone is timed
    apart), so the ratio is what going distributed costs each run."""
    from analyzer import cluster, parallel

    paths = [str(p) for p in files]

    def median(run) -> dict:
        seconds, loads = [], []
        for _ in range(repeat):
            loads.append(load())
            t0 = time.perf_counter()
            run().findings  # noqa: B018 - verdicts and findings too
            seconds.append(time.perf_counter() - t0)
        return {"seconds": round(statistics.median(seconds), 3), "load": loads}

    jobs2 = median(lambda: parallel.analyze_parallel(paths, 2))
    dask = median(lambda: cluster.analyze_many(paths, client))
    return {
        "analyze_parallel 2": jobs2,
        "analyze_many dask 2 workers": dask,
        "dask / jobs 2": round(dask["seconds"] / jobs2["seconds"], 2),
    }


def import_seconds(module: str, repeat: int) -> float:
    """Median wall time of ``python -c 'import module'`` less that of ``python -c pass``."""

    def median(code: str) -> float:
        seconds = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            subprocess.run([python(), "-c", code], check=True)
            seconds.append(time.perf_counter() - t0)
        return statistics.median(seconds)

    return round(median(f"import {module}") - median("pass"), 3)


def client_merge(files: list[Path], client) -> dict:
    """Time the parts of a cluster run apart: the tasks on the workers, then the merge and
    analysis in this process (``engine.assemble`` and the findings)."""
    from analyzer import cluster
    from analyzer.engine import assemble

    paths = [str(p) for p in files]
    tasks = cluster.plan(paths, cluster.workers_of(client), {p: os.path.getsize(p) for p in paths})
    t0 = time.perf_counter()
    parts = cluster.run_tasks(tasks, client)
    t1 = time.perf_counter()
    result = assemble(cluster.merge_tasks(tasks, parts), [], False)
    result.findings  # noqa: B018 - tokens, verdicts and findings too
    t2 = time.perf_counter()
    return {"tasks seconds": round(t1 - t0, 3), "merge seconds": round(t2 - t1, 3)}


def pyshark_cost(path: Path) -> dict:
    """``--crosscheck``'s question asked through pyshark and through tshark -T fields."""
    import shutil

    if shutil.which("tshark") is None:
        return {"skipped": "tshark not installed"}
    from analyzer.sources.crosscheck import DISPLAY_FILTER, tshark_fingerprints

    before = load()
    t0 = time.perf_counter()
    found = tshark_fingerprints(str(path))
    through_pyshark = time.perf_counter() - t0
    before_direct = load()
    t0 = time.perf_counter()
    cmd = ["tshark", "-r", str(path), "-Y", DISPLAY_FILTER, "-T", "fields"]
    proc = subprocess.run([*cmd, "-e", "http.authorization"], capture_output=True, text=True)
    direct = time.perf_counter() - t0
    lines = [line for line in proc.stdout.splitlines() if line]
    return {
        "capture": str(path),
        "headers": len(found),
        "headers (tshark direct)": sum(len(line.split(",")) for line in lines),
        "pyshark seconds": round(through_pyshark, 2),
        "tshark direct seconds": round(direct, 2),
        "pyshark / direct": round(through_pyshark / direct, 2),
        "load": [before, before_direct],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    ap.add_argument("--skip-pyshark", action="store_true", help="leave out the pyshark figure")
    args = ap.parse_args(argv)
    report = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}",
        "load at start": list(os.getloadavg()),
        "one capture": one_capture(args.repeat),
        "ten files": fleet(args.repeat),
    }
    if not args.skip_pyshark:
        report["pyshark"] = pyshark_cost(FLEET / "sensor1.pcap")
    (OUT_DIR / "scale.json").write_text(json.dumps(report, indent=2) + "\n")
    print_report(report)
    return 0 if report["one capture"]["identical"] and report["ten files"]["identical"] else 1


def print_report(r: dict) -> None:
    one, ten = r["one capture"], r["ten files"]
    print(f"{r['when']}  {r['machine']}  load at start {r['load at start']}")
    print(f"\n1 GB capture ({one['bytes'] / MB:,.0f} MB), identical output: {one['identical']}")
    for name in ("regex scan", "jobs 1", "jobs 2"):
        print(f"  {name:<16} {one[name]['seconds']:>8.2f} s   load {one[name]['load']}")
    print(f"  jobs 1 / scan {one['jobs 1 / scan']}x, jobs 2 / scan {one['jobs 2 / scan']}x, "
          f"speed-up {one['speed-up']}x")  # fmt: skip
    print(f"\nten files ({ten['bytes'] / MB:,.0f} MB, {ten['events']:,} events), identical "
          f"output: {ten['identical']}")  # fmt: skip
    for name in ("jobs 1", "jobs 2", "dask 2 workers"):
        print(f"  {name:<16} {ten[name]['seconds']:>8.2f} s   load {ten[name]['load']}")
    print(f"  dask / jobs 2 {ten['dask / jobs 2']}x (the command line: 'import distributed' alone "
          f"takes {ten['import distributed seconds']} s); cluster start-up "
          f"{ten['cluster start-up seconds']} s (not in the figure)")  # fmt: skip
    api = ten["api"]
    print(f"  from Python with a connected client: analyze_many "
          f"{api['analyze_many dask 2 workers']['seconds']:.2f} s, analyze_parallel(2) "
          f"{api['analyze_parallel 2']['seconds']:.2f} s: {api['dask / jobs 2']}x")  # fmt: skip
    print(f"  per worker {ten['per-worker MB/s']} MB/s; tasks {ten['tasks seconds']} s, "
          f"client merge {ten['merge seconds']} s")  # fmt: skip
    p = ten["projection 1 TB, 32 workers"]
    print(f"\nprojection, 1 TB on 32 workers: {p['total minutes']} min (reading "
          f"{p['reading seconds']} s, client merge {p['client merge seconds']} s, "
          f"~{p['events']:,} events)")  # fmt: skip
    if "pyshark" in r:
        s = r["pyshark"]
        if "skipped" in s:
            print(f"\npyshark: skipped ({s['skipped']})")
        else:
            print(f"\npyshark vs tshark -T fields on {Path(s['capture']).name}: "
                  f"{s['pyshark seconds']} s vs {s['tshark direct seconds']} s "
                  f"({s['pyshark / direct']}x), {s['headers']} headers "
                  f"({s['headers (tshark direct)']} direct), load {s['load']}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
