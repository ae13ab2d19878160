"""A fleet of captures: per-chain and per-shard tasks, on a Dask cluster or in this process.

The inputs are grouped into chains (``chains``): the files of one ring buffer, named as dumpcap
names them (``NAME_00001_20260302090000.pcapng``) or as tcpdump ``-C`` rotates them
(``NAME.pcap``, ``NAME.pcap1``, ...), are one chain read in number order, so a connection that
crosses from one file into the next is one connection; every other input is a capture of its
own. A task reads one chain - all of it, or shard k of n of its connections
(``flows.tcp.shard_of``, as ``analyzer.parallel`` does) when there are fewer chains than workers
- and hands back records (``engine.Parts``), never packets. Tokens, handshakes, verdicts and
findings are worked out after the merge, in the calling process (``engine.assemble``).

Workers open the inputs themselves: local or shared paths, and URLs fsspec understands
(``s3://``, ``gs://``, ``file://``; a capture behind a URL is read as a stream, or fetched to a
scratch file when tshark must decrypt it). An input a worker cannot read (missing, not a capture,
cut off mid-read by an error) is skipped: the run goes on, and the input's ``CaptureStats`` says
why (``failures`` lists them). With ``--tls-keylog`` the key log's bytes travel with each task
and tshark decrypts on the worker, one process per file, as a local run does.

Dask is imported only here, and only when a client is used.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from analyzer import parallel
from analyzer.engine import AnalysisResult, Engine, Parts, assemble
from analyzer.model import CaptureStats, Event, evolve
from analyzer.parallel import merge

#: A dumpcap ring file: NAME_NNNNN_YYYYMMDDhhmmss.EXT (number, then local start time).
RING_NAME = re.compile(r"^(?P<stem>.*)_(?P<number>\d{5,})_(?P<time>\d{14})(?P<ext>\.[^/]*)$")
#: A file tcpdump -C rotated: NAME.pcap, then NAME.pcap1, NAME.pcap2, ...
ROTATED_NAME = re.compile(r"^(?P<stem>.+\.(?:pcap|pcapng|cap|dmp))(?P<number>\d*)$")
#: The warning a skipped input's CaptureStats carries (``failures`` finds it by this prefix).
SKIPPED = "skipped: "

#: Called when a task is done with (input, bytes of it that task covered).
Progress = Callable[[str, int], None]


@dataclass(frozen=True, slots=True)
class Task:
    """One unit of work: a chain of inputs, and which share of its connections to follow."""

    chain: tuple[str, ...]
    group: int = 0  # which chain of the run (shards of one chain share it)
    shard: int = 0
    shards: int = 1


def is_url(path: str) -> bool:
    """An fsspec URL (``s3://...``), not a local path."""
    return "://" in path


def chains(paths: Iterable[str]) -> list[list[str]]:
    """The inputs grouped into chains, in the order of their first file: the files of one ring
    buffer (dumpcap's NAME_NNNNN_TIME.EXT, or tcpdump -C's NAME.pcap, NAME.pcap1, ... in one
    folder) in number order; every other input alone."""
    paths = list(paths)
    rotated: set[tuple[str, str]] = set()  # tcpdump names: a chain only with a NAME.pcapN
    for path in paths:
        folder, name = path.rsplit("/", 1) if "/" in path else ("", path)
        match = ROTATED_NAME.match(name)
        if match and match["number"]:
            rotated.add((folder, match["stem"]))
    groups: dict[tuple[str, ...], list[tuple[int, str]]] = {}
    for i, path in enumerate(paths):
        folder, name = path.rsplit("/", 1) if "/" in path else ("", path)
        key: tuple[str, ...] = ("one", str(i))
        number = 0
        if match := RING_NAME.match(name):
            key, number = ("ring", folder, match["stem"], match["ext"]), int(match["number"])
        elif (match := ROTATED_NAME.match(name)) and (folder, match["stem"]) in rotated:
            key, number = ("rotated", folder, match["stem"]), int(match["number"] or 0)
        groups.setdefault(key, []).append((number, path))
    return [[p for _, p in sorted(members)] for members in groups.values()]


def plan(
    paths: list[str], workers: int, sizes: dict[str, int], shards: int | None = None
) -> list[Task]:
    """The tasks for ``workers``: one per chain when there are enough chains to go round; else
    each chain of 64 MB or more split into shards so that every worker has one (``shards`` sets
    the number for every chain)."""
    groups = chains(paths)
    if shards is None:
        shards = 1 if len(groups) >= workers else math.ceil(workers / len(groups))
    tasks = []
    for group, chain in enumerate(groups):
        n = shards if shards > 1 and _big(chain, sizes) else 1
        tasks += [Task(tuple(chain), group, k, n) for k in range(n)]
    return tasks


def _big(chain: list[str], sizes: dict[str, int]) -> bool:
    return sum(sizes.get(p, 0) for p in chain) >= parallel.MIN_PARALLEL_BYTES


def read_task(
    task: Task,
    keylog: bytes | None = None,
    storage_options: dict[str, Any] | None = None,
    skip_unreadable: bool = True,
) -> Parts:
    """Run one task (on a worker): read its chain in order, following its share of the
    connections; an input that cannot be read is skipped, with the reason on its stats (a
    cluster's inputs are seen first by its workers), or with ``skip_unreadable`` False its
    error is raised, as one local process raises it (``--jobs``).
    ``storage_options`` go to fsspec for URL inputs (e.g. ``{"endpoint_url": ...}``)."""
    from analyzer.sources.pcapfile import CaptureError

    engine = Engine(shard=(task.shard, task.shards) if task.shards > 1 else None)
    with _keylog_file(keylog) as keylog_path:
        for path in task.chain:
            try:
                _read(engine, path, keylog_path, storage_options or {})
            except (CaptureError, OSError, ValueError, EOFError, ImportError) as exc:
                if not skip_unreadable:
                    raise
                _skipped(engine, path, exc)
    return engine.parts()


def _read(engine: Engine, path: str, keylog: str | None, options: dict[str, Any]) -> None:
    if not is_url(path):
        engine.read_file(path, tls_keylog=keylog)
        return
    try:
        import fsspec
    except ImportError as exc:
        raise ImportError(
            "reading URLs needs fsspec: pip install 'oauth-traffic-analyzer[cluster]'"
        ) from exc
    if keylog is not None:  # tshark reads files: fetch the capture first
        with tempfile.TemporaryDirectory(prefix="oauth-analyzer-") as scratch:
            local = os.path.join(scratch, path.rstrip("/").rsplit("/", 1)[-1] or "capture")
            fsspec.filesystem(_protocol(path), **options).get(path, local)
            stats = engine.read_file(local, tls_keylog=keylog)
            stats.path = path  # the input as given, not the scratch copy
            inputs = engine.collector.inputs
            for conn_id in [c for c, p in inputs.items() if p == local]:
                inputs[conn_id] = path
        return
    with fsspec.open(path, "rb", **options) as stream:
        engine.read_stream(stream, path)


def _protocol(url: str) -> str:
    return url.split("://", 1)[0]


def _skipped(engine: Engine, path: str, exc: BaseException) -> None:
    """Record an input that could not be read: its CaptureStats (empty unless it failed part
    way) warns ``skipped: <path>: <reason>``."""
    reason = _reason(exc)
    line = reason if reason.startswith(path) else f"{path}: {reason}"
    stats = engine.captures[-1] if engine.captures and engine.captures[-1].path == path else None
    if stats is None:
        stats = CaptureStats(path=path)
        engine.captures.append(stats)
    stats.warn(f"{SKIPPED}{line}")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"{exc.filename or ''}: no such file".lstrip(": ")
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename or ''}: {exc.strerror}".lstrip(": ")
    return str(exc) or type(exc).__name__


class _keylog_file:
    """The key log's bytes as a scratch file for tshark (None: no key log)."""

    def __init__(self, data: bytes | None) -> None:
        self.data = data
        self.path: str | None = None

    def __enter__(self) -> str | None:
        if self.data is None:
            return None
        fd, self.path = tempfile.mkstemp(prefix="oauth-analyzer-keylog-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(self.data)
        return self.path

    def __exit__(self, *exc: object) -> None:
        if self.path is not None:
            os.unlink(self.path)


def failures(result: AnalysisResult | Parts) -> list[str]:
    """One line per input that was skipped: ``path: reason``."""
    return [w[len(SKIPPED) :] for c in result.captures for w in c.warnings if w.startswith(SKIPPED)]


def run_tasks(
    tasks: list[Task],
    client: Any = None,
    keylog: bytes | None = None,
    progress: Progress | None = None,
    storage_options: dict[str, Any] | None = None,
) -> list[Parts]:
    """Each task's Parts, in task order: on the Dask ``client``'s cluster, or here one after
    another. ``progress`` hears of each task as it finishes (Dask's ``as_completed``)."""
    done: list[Parts | None] = [None] * len(tasks)
    covered: dict[str, int] = {}

    def finished(i: int, parts: Parts) -> None:
        done[i] = parts
        if progress is not None:
            task = tasks[i]
            for path in task.chain:
                covered[path] = covered.get(path, 0) + _size(path) // task.shards
                progress(path, covered[path])

    if client is None:
        for i, task in enumerate(tasks):
            finished(i, read_task(task, keylog, storage_options))
    else:
        from distributed import as_completed

        futures = client.map(
            read_task, tasks, keylog=keylog, storage_options=storage_options, pure=False
        )
        index = {f.key: i for i, f in enumerate(futures)}
        for future in as_completed(futures):
            finished(index[future.key], future.result())
    return [p for p in done if p is not None]


def merge_tasks(tasks: list[Task], parts: list[Parts]) -> Parts:
    """One Parts for the whole run: the shards of each chain merged (``parallel.merge``), the
    chains' records put together, the inputs' stats chain by chain (``chains`` order)."""
    by_chain: dict[int, list[Parts]] = {}
    for task, part in zip(tasks, parts, strict=True):
        by_chain.setdefault(task.group, []).append(part)
    merged = [merge(shards) if len(shards) > 1 else shards[0] for shards in by_chain.values()]
    offsets = _frame_offsets(merged)
    events = [_renumbered(m.events, offset) for m, offset in zip(merged, offsets, strict=True)]
    return Parts(
        [e for chain in events for e in chain],
        [c for m in merged for c in m.captures],
        [t for m in merged for t in m.tls],
        [n for m in merged for n in m.not_inspected],
        {k: v for m in merged for k, v in m.inputs.items()},
    )


def _frame_offsets(chains: list[Parts]) -> list[int]:
    """Each chain's first frame number less one, as one process reading every input in a row
    numbers them (``mergecap -a``): the packet records of the chains before it."""
    offsets, total = [], 0
    for chain in chains:
        offsets.append(total)
        total += sum(c.packets for c in chain.captures)
    return offsets


def _renumbered(events: list[Event], offset: int) -> list[Event]:
    """``events`` of a chain read on its own, with frame numbers counted on by ``offset``."""
    if not offset:
        return events
    return [e if e.frame is None else evolve(e, frame=e.frame + offset) for e in events]


def workers_of(client: Any) -> int:
    """Threads the cluster offers (at least 1)."""
    if client is None:
        return 1
    info = client.scheduler_info()
    threads = sum(w.get("nthreads", 1) for w in info.get("workers", {}).values())
    return max(1, threads)


def analyze_many(
    paths: Iterable[str],
    client: Any = None,
    *,
    key_files: Iterable[str] = (),
    reveal_secrets: bool = False,
    tls_keylog: str | None = None,
    progress: Progress | None = None,
    shards: int | None = None,
    storage_options: dict[str, Any] | None = None,
) -> AnalysisResult:
    """Analyze many captures: on the Dask cluster of ``client`` (a ``distributed.Client``), or
    without one in this process, task after task - the same tasks, the same result.

    Inputs are local paths or fsspec URLs; ring-buffer files are read as one chain (``chains``).
    An input that cannot be read is skipped and named in ``failures(result)``.
    ``tls_keylog`` is read here and sent with each task (then a chain is never split: tshark
    decrypts each file whole). ``shards`` splits every chain of 64 MB or more by connection into
    that many tasks (default: enough to give every worker one).
    ``storage_options`` are fsspec's for URL inputs (credentials, ``endpoint_url``); without
    them fsspec's own configuration applies (``FSSPEC_S3_ENDPOINT_URL``, AWS variables).
    """
    paths = [str(p) for p in paths]
    keylog = None
    if tls_keylog is not None:
        with open(tls_keylog, "rb") as fh:
            keylog = fh.read()
    sizes = {p: _size(p) for p in paths}
    # tshark decrypts a whole file in one pass: a key log keeps every chain in one task
    tasks = plan(paths, workers_of(client), sizes, 1 if keylog is not None else shards)
    parts = run_tasks(tasks, client, keylog, progress, storage_options)
    return assemble(merge_tasks(tasks, parts), list(key_files), reveal_secrets)


def _size(path: str) -> int:
    """The input's size in bytes, when this process can see it (else 0)."""
    if is_url(path):
        return 0
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def connect(address: str) -> Any:
    """A ``distributed.Client`` of the scheduler at ``address`` (``tcp://host:8786``).
    Raises ``ImportError`` (one line for the user) when dask.distributed is not installed."""
    try:
        from distributed import Client
    except ImportError as exc:
        raise ImportError(
            "--dask needs dask.distributed: pip install 'oauth-traffic-analyzer[cluster]'"
        ) from exc

    return Client(address)
