"""Every core on one capture: workers split the connections, the parent merges their records.

Worker k of n reads the whole chain of capture files (the native record walk is cheap) and
follows only the TCP connections ``flows.tcp.shard_of`` gives it - by the unordered 4-tuple,
tunnel id included - so both directions and all packets of a connection meet in one worker, and
a connection that crosses from one ring-buffer file into the next is still one connection. The
other connections are stepped over (their packets absorbed by the walk). Workers hand back
records, not packets (``engine.Parts``); the parent merges them in request order, numbers the
events from 1 and works out tokens, handshakes, verdicts and findings on the whole, exactly as
one process would: the output is byte-identical to ``--jobs 1``.

What every worker sees alike (packets, bytes, link types, encapsulations, the reader's warnings)
is taken from worker 0; what belongs to connections (TCP/HTTP/TLS connections, gaps, evictions,
their warnings) is added up.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from multiprocessing.connection import Connection

from analyzer.engine import AnalysisResult, Engine, Parts, analyze_paths, assemble
from analyzer.model import CaptureStats
from analyzer.sources.kinds import input_kind

#: Below this many bytes of input a second process costs more than it saves.
MIN_PARALLEL_BYTES = 64 << 20
#: CaptureStats counters that belong to connections: summed over the workers.
PER_CONNECTION = ("tcp_connections", "http_connections", "tls_connections", "gaps", "evicted")


def default_jobs() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def analyze_parallel(
    paths: Iterable[str],
    jobs: int,
    *,
    key_files: Iterable[str] = (),
    reveal_secrets: bool = False,
    tls_keylog: str | None = None,
) -> AnalysisResult:
    """``analyze_paths`` on ``jobs`` processes (one when that cannot pay off: small input,
    ``jobs`` 1, a TLS key log, which tshark reads per file in one pass, or inputs that are not
    packet captures - archives and converted formats are read whole, once). One chain of
    captures: every process walks it and follows its share of the connections. Several: a
    process per chain (``cluster.plan``), so no file is walked twice."""
    paths = [str(p) for p in paths]
    key_files = list(key_files)
    if not worth_it(paths, jobs, tls_keylog):
        return analyze_paths(
            paths, key_files=key_files, reveal_secrets=reveal_secrets, tls_keylog=tls_keylog
        )
    from analyzer import cluster

    if len(cluster.chains(paths)) == 1:
        return assemble(merge(read_sharded(paths, jobs)), key_files, reveal_secrets)
    # Many captures: a task per chain (ring-buffer files stay together), each chain split by
    # connection only when there are fewer chains than processes - as on a Dask cluster.
    # An unreadable input stops the run as it stops one process (a cluster skips it instead).
    tasks = cluster.plan(paths, jobs, {p: os.path.getsize(p) for p in paths})
    with _fork_pool(jobs) as pool:
        parts = list(pool.map(partial(cluster.read_task, skip_unreadable=False), tasks))
    return assemble(cluster.merge_tasks(tasks, parts), key_files, reveal_secrets)


def worth_it(paths: list[str], jobs: int, tls_keylog: str | None = None) -> bool:
    """Would ``jobs`` processes pay off? Not for one job, a TLS key log, small input, or inputs
    that are not packet capture files (archives and converted formats are read whole, once)."""
    if jobs <= 1 or tls_keylog:
        return False
    if not all(os.path.isfile(p) and input_kind(p) == "capture" for p in paths):
        return False
    return sum(os.path.getsize(p) for p in paths) >= MIN_PARALLEL_BYTES


def read_sharded(paths: list[str], jobs: int) -> list[Parts]:
    """Each worker's ``Parts``, in worker order: shards 1.. from processes forked here, shard 0
    read here meanwhile (its records then need no pickling, and one process fewer is started).
    A Dask cluster runs ``cluster.read_task`` instead.

    Plain forks, not a process pool: a pool hands each task to its process through a feeder
    thread, which waits for the interpreter lock while this process reads its own shard (20-70
    ms on 1 GB); a fork starts reading at once, with its arguments already in memory."""
    context = multiprocessing.get_context("fork")
    workers = []
    try:
        for k in range(1, jobs):
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(target=_shard_worker, args=(sender, paths, k, jobs))
            process.start()
            sender.close()
            workers.append((process, receiver))
        first = read_shard(paths, 0, jobs)
        return [first, *(_shard_result(process, receiver) for process, receiver in workers)]
    finally:
        # a worker still running is stopped before its pipe is closed, so it never meets a
        # closed pipe (and prints nothing) when this process failed or was interrupted first
        for process, receiver in workers:
            if process.is_alive():
                process.terminate()
            process.join()
            receiver.close()


def _shard_worker(sender: Connection, paths: list[str], k: int, n: int) -> None:
    """In a forked process: send back shard k's ``Parts``, or the exception that stopped it."""
    try:
        outcome: tuple[bool, object] = (True, read_shard(paths, k, n))
    except BaseException as exc:  # handed to the parent, which raises it
        outcome = (False, exc)
    try:
        sender.send(outcome)
    except OSError:
        pass  # the parent stopped listening: it failed or was interrupted, and says so itself
    except Exception as exc:  # an exception that does not pickle
        sender.send((False, RuntimeError(f"worker {k} of {n}: {exc!r}")))
    finally:
        sender.close()


def _shard_result(process: multiprocessing.process.BaseProcess, receiver: Connection) -> Parts:
    """The ``Parts`` a forked shard worker sent, or its exception raised here."""
    try:
        ok, value = receiver.recv()
    except EOFError:
        process.join()
        raise RuntimeError(
            f"a --jobs worker process ended without a result (exit code {process.exitcode})"
        ) from None
    if not ok:
        raise value  # type: ignore[misc]
    return value  # type: ignore[return-value]


def _fork_pool(jobs: int) -> ProcessPoolExecutor:
    """``jobs`` forked worker processes: they inherit the loaded modules, nothing is re-imported."""
    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("fork"))


def read_shard(paths: list[str], k: int, n: int) -> Parts:
    """Worker k of n: read every file in order, follow its share of the connections."""
    engine = Engine(shard=(k, n))
    for path in paths:
        engine.read_file(path)
    return engine.parts()


def merge(parts: list[Parts]) -> Parts:
    """One reading's ``Parts`` from the workers' (worker 0 first)."""
    first = parts[0]
    captures = []
    for i, stats in enumerate(first.captures):
        merged = _copy(stats)
        for other in parts[1:]:
            theirs = other.captures[i]
            for name in PER_CONNECTION:
                setattr(merged, name, getattr(merged, name) + getattr(theirs, name))
            for warning in theirs.warnings:
                if warning not in merged.warnings:
                    merged.warn(warning)
        captures.append(merged)
    return Parts(
        [e for p in parts for e in p.events],
        captures,
        [t for p in parts for t in p.tls],
        [n for p in parts for n in p.not_inspected],
        {k: v for p in parts for k, v in p.inputs.items()},
    )


def _copy(stats: CaptureStats) -> CaptureStats:
    from dataclasses import replace

    copy = replace(stats)
    copy.warnings = list(stats.warnings)
    return copy
