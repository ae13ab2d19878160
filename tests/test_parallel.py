"""Every core on one capture (``analyzer.parallel``): workers split the connections, and the
merged result is byte for byte what one process gives - on every bundled and public capture,
on a ring-buffer chain whose connections cross from one file into the next, and with tunnels."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from shared_dir import PUBLIC

from analyzer import parallel
from analyzer.engine import AnalysisResult, analyze_paths
from analyzer.flows.tcp import shard_of
from analyzer.report.export import write_jsonl

REPO = Path(__file__).resolve().parents[1]
CAPTURES = REPO / "captures"


def _cases() -> list[Path]:
    paths = sorted(CAPTURES.glob("*.pcap")) + sorted(CAPTURES.glob("*.pcapng"))
    paths += sorted((CAPTURES / "hybrid").glob("*.pcap"))
    if PUBLIC.is_dir():
        paths += sorted(p for p in PUBLIC.iterdir() if p.suffix in (".pcap", ".pcapng"))
    return paths


def _jsonl(result: AnalysisResult) -> str:
    out = io.StringIO()
    for records in (result.events, result.tokens, result.findings, result.verdicts):
        write_jsonl(records, out)
    return out.getvalue()


def _counters(result: AnalysisResult) -> list[tuple]:
    return [
        (c.packets, c.bytes, c.tcp_connections, c.http_connections, c.tls_connections, c.gaps,
         c.evicted, sorted(c.warnings))
        for c in result.captures
    ]  # fmt: skip


@pytest.fixture(autouse=True)
def _always_parallel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "MIN_PARALLEL_BYTES", 0)  # small captures too


@pytest.mark.parametrize("path", _cases(), ids=lambda p: p.name)
def test_two_and_three_workers_give_what_one_process_gives(path: Path) -> None:
    one = analyze_paths([str(path)])
    for jobs in (2, 3):
        many = parallel.analyze_parallel([str(path)], jobs)
        assert _jsonl(many) == _jsonl(one)
        assert _counters(many) == _counters(one)
        assert many.not_inspected == one.not_inspected
        assert many.tls == one.tls


def test_a_connection_crossing_ring_files_is_one_connection(tmp_path: Path) -> None:
    data = (CAPTURES / "exchange-sfb.pcap").read_bytes()
    header, records = data[:24], []
    pos = 24
    while pos < len(data):
        caplen = struct.unpack_from("<I", data, pos + 8)[0]
        records.append(data[pos : pos + 16 + caplen])
        pos += 16 + caplen
    half = len(records) // 2
    files = []
    for i, chunk in enumerate((records[:half], records[half:])):
        path = tmp_path / f"ring_{i + 1:05}_2026030209000{i}.pcap"  # dumpcap's ring names
        path.write_bytes(header + b"".join(chunk))
        files.append(str(path))
    whole = analyze_paths([str(CAPTURES / "exchange-sfb.pcap")])
    chained = parallel.analyze_parallel(files, 2)
    assert _jsonl(chained) == _jsonl(whole)
    assert sum(c.tcp_connections for c in chained.captures) == whole.captures[0].tcp_connections


def test_many_captures_one_process_per_chain(tmp_path: Path) -> None:
    """Several captures: a task per chain (ring files together), none split by connection while
    there are chains enough to go round, so no file is walked twice; the result is what one
    process gives."""
    from analyzer import cluster

    paths = [str(p) for p in sorted(CAPTURES.glob("*.pcap"))]
    sizes = {p: Path(p).stat().st_size for p in paths}
    tasks = cluster.plan(paths, 2, sizes)
    assert [t.chain for t in tasks] == [(p,) for p in paths]
    assert {(t.shard, t.shards) for t in tasks} == {(0, 1)}
    one = analyze_paths(paths)
    for jobs in (2, 3):
        many = parallel.analyze_parallel(paths, jobs)
        assert _jsonl(many) == _jsonl(one)
        assert _counters(many) == _counters(one)


def test_both_directions_go_to_the_same_worker_and_work_is_spread() -> None:
    keys = [(bytes([10, 0, i % 256, 1]), 1024 + i, bytes([10, 9, 0, 1]), 443) for i in range(4000)]
    for n in (2, 3, 8):
        for src, sport, dst, dport in keys[:200]:
            assert shard_of((src, sport, dst, dport), n) == shard_of((dst, dport, src, sport), n)
        counts = [0] * n
        for key in keys:
            counts[shard_of(key, n)] += 1
        assert min(counts) > len(keys) / n * 0.8  # no worker left idle


def test_one_job_and_small_inputs_stay_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    called = []
    monkeypatch.setattr(parallel, "read_sharded", lambda *a: called.append(a) or [])
    path = str(CAPTURES / "small-basic.pcap")
    parallel.analyze_parallel([path], 1)
    monkeypatch.setattr(parallel, "MIN_PARALLEL_BYTES", 1 << 40)
    parallel.analyze_parallel([path], 4)
    assert called == []


def test_jobs_option_gives_the_same_lines(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    from analyzer.cli import main

    path = str(CAPTURES / "hybrid" / "fallback-mixed.pcap")
    outputs = []
    for jobs in ("1", "2"):
        assert main(["analyze", path, "--format", "jsonl", "--jobs", jobs]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and outputs[0].count("\n") == 37
    called = []
    real = parallel.read_sharded
    monkeypatch.setattr(parallel, "read_sharded", lambda *a: called.append(a) or real(*a))
    assert main(["verify", path, "--jobs", "2"]) == 1
    assert called and called[0][1] == 2  # verify read it on two processes


@pytest.mark.parametrize("damage", ["garbage-after-header", "cut-mid-record", "header-only"])
def test_a_damaged_input_among_several_fares_alike_with_one_or_two_jobs(
    damage: str, tmp_path: Path, capsys
) -> None:
    """A damaged capture among good ones: warned about and read as far as it goes, or (too short
    to be a capture) refused with one line before anything is read - the same with ``--jobs 2``,
    whose processes each read a chain, as with one process."""
    from analyzer.cli import main

    data = (CAPTURES / "small-basic.pcap").read_bytes()
    damaged = {
        "garbage-after-header": data[:24] + b"\xff" * 200 + data[24:],
        "cut-mid-record": data[: len(data) // 2 + 7],
        "header-only": data[:10],
    }[damage]
    good, bad, other = tmp_path / "a.pcap", tmp_path / "b.pcap", tmp_path / "c.pcap"
    good.write_bytes(data)
    bad.write_bytes(damaged)
    other.write_bytes((CAPTURES / "exchange-sfb.pcap").read_bytes())
    runs = []
    for jobs in ("1", "2"):
        argv = ["analyze", str(good), str(bad), str(other), "--format", "jsonl", "--jobs", jobs]
        code = main(argv)
        runs.append((code, *capsys.readouterr()))
    assert runs[0] == runs[1]
    code, out, err = runs[0]
    if damage == "header-only":
        assert (code, out) == (2, "")
        reason = "not a pcap or pcapng capture (too short: 10 bytes)"
        assert err == f"oauth-analyzer: error: {bad}: {reason}\n"
    else:
        assert code == 0 and out.count("\n") > 0


def test_a_worker_that_fails_or_dies_stops_the_run_with_its_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What stops a forked worker reaches the parent as an error (never a hang, never a result
    short of that worker's connections): its exception, or how it ended when it sent nothing."""
    import os

    path = str(CAPTURES / "exchange-sfb.pcap")
    real = parallel.read_shard

    def fails(paths: list[str], k: int, n: int):
        if k == 1:
            raise ValueError(f"worker {k} could not read {paths[0]}")
        return real(paths, k, n)

    monkeypatch.setattr(parallel, "read_shard", fails)
    with pytest.raises(ValueError, match=f"worker 1 could not read {path}"):
        parallel.analyze_parallel([path], 2)

    def dies(paths: list[str], k: int, n: int):
        if k == 2:
            os._exit(3)
        return real(paths, k, n)

    monkeypatch.setattr(parallel, "read_shard", dies)
    with pytest.raises(RuntimeError, match=r"ended without a result \(exit code 3\)"):
        parallel.analyze_parallel([path], 3)
    monkeypatch.setattr(parallel, "read_shard", real)
    assert _jsonl(parallel.analyze_parallel([path], 3)) == _jsonl(analyze_paths([path]))


def test_when_this_process_fails_first_its_workers_are_stopped_quietly(
    monkeypatch: pytest.MonkeyPatch, capfd
) -> None:
    """The parent's own shard fails while the workers still read: the parent's error is the
    one raised, and the workers are stopped without a word (no traceback from a closed pipe)."""
    import multiprocessing

    path = str(CAPTURES / "exchange-sfb.pcap")
    real = parallel.read_shard

    def parent_fails(paths: list[str], k: int, n: int):
        if k == 0:
            raise ValueError("the parent's shard failed")
        return real(paths, k, n)

    monkeypatch.setattr(parallel, "read_shard", parent_fails)
    with pytest.raises(ValueError, match="the parent's shard failed"):
        parallel.analyze_parallel([path], 3)
    out, err = capfd.readouterr()
    # (only the workers' words count: a library an earlier test loaded may log at fork, as
    # gRPC's "skipping fork() handlers" does after the gs:// test)
    assert out == "" and "Traceback" not in err and "Error" not in err
    assert multiprocessing.active_children() == []
