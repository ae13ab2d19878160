"""A fleet of captures on a Dask cluster (``analyzer.cluster``): a LocalCluster of two worker
processes on loopback reads ten generated captures and a ring-buffer chain, and the merged
result is what one process gives; missing and corrupt inputs are named and skipped; ``s3://``
inputs are read from a local moto server through s3fs, ``gs://`` inputs from a local
gcp-storage-emulator through gcsfs; the partitioned Parquet dataset reads back with pandas as the
JSON Lines output reads. One cluster serves the whole module."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from analyzer import cluster, parallel
from analyzer.cli import main
from analyzer.engine import AnalysisResult, analyze_paths
from analyzer.report.export import write_jsonl

REPO = Path(__file__).resolve().parents[1]
SFB = REPO / "captures" / "exchange-sfb.pcap"


def _jsonl(result: AnalysisResult) -> str:
    out = io.StringIO()
    for records in (
        result.events, result.handshakes, result.tokens, result.findings, result.verdicts,
        result.tls, result.not_inspected,
    ):  # fmt: skip
        write_jsonl(records, out)
    return out.getvalue()


def _counters(result: AnalysisResult) -> list[tuple]:
    return [
        (c.path, c.file_format, c.packets, c.bytes, c.tcp_connections, c.http_connections,
         c.tls_connections, c.gaps, c.evicted, sorted(c.warnings))
        for c in result.captures
    ]  # fmt: skip


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Ten generated captures (bulk downloads and a few dozen auth exchanges each), then the
    bundled Exchange capture cut into two ring-buffer files named as dumpcap names them."""
    folder = tmp_path_factory.mktemp("fleet")
    paths = []
    for seed in range(10):
        out = folder / f"sensor{seed}.pcap"
        make = [sys.executable, str(REPO / "bench" / "make_capture.py"), str(out)]
        make += ["--size-gb", "0.001", "--auth", "12", "--seed", str(seed)]
        subprocess.run(make, check=True, capture_output=True)
        paths.append(str(out))
    return paths + _ring(folder)


def _ring(folder: Path) -> list[str]:
    data = SFB.read_bytes()
    header, records, pos = data[:24], [], 24
    while pos < len(data):
        caplen = struct.unpack_from("<I", data, pos + 8)[0]
        records.append(data[pos : pos + 16 + caplen])
        pos += 16 + caplen
    half = len(records) // 2
    paths = []
    # given out of order: the chain is read in number order
    for number, chunk in ((2, records[half:]), (1, records[:half])):
        path = folder / f"edge_{number:05}_2026030209{number:02}00.pcap"
        path.write_bytes(header + b"".join(chunk))
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",  # any free port: never a clash with another cluster
            worker_dashboard_address=None,
        ) as local,
        distributed.Client(local) as dask_client,
    ):
        yield dask_client


@pytest.fixture(scope="module")
def local(fleet: list[str]) -> AnalysisResult:
    """One process, one engine: the captures, then the ring chain in number order."""
    return analyze_paths(fleet[:10] + sorted(fleet[10:]))


def test_ring_files_form_one_chain_other_inputs_stand_alone(fleet: list[str]) -> None:
    groups = cluster.chains(fleet)
    assert groups == [[p] for p in fleet[:10]] + [sorted(fleet[10:])]
    dumpcap = ["d/a_00002_20260101000100.pcap", "b.pcap", "d/a_00001_20260101000000.pcap"]
    assert cluster.chains(dumpcap) == [[dumpcap[2], dumpcap[0]], ["b.pcap"]]
    tcpdump = ["t.pcap10", "t.pcap", "t.pcap2", "x/t.pcap1", "u.pcap", "v.pcapng1"]
    assert cluster.chains(tcpdump) == [
        ["t.pcap", "t.pcap2", "t.pcap10"], ["x/t.pcap1"], ["u.pcap"], ["v.pcapng1"]
    ]  # fmt: skip


def test_cluster_result_is_the_local_result(
    fleet: list[str], client, local: AnalysisResult
) -> None:
    ordered = fleet[:10] + sorted(fleet[10:])
    here = cluster.analyze_many(fleet)
    there = cluster.analyze_many(fleet, client)
    assert len(local.events) > 100 and local.tokens and local.findings
    assert _jsonl(there) == _jsonl(here) == _jsonl(local)
    assert _counters(there) == _counters(here) == _counters(local)
    assert [c.path for c in there.captures] == ordered
    assert cluster.failures(there) == []
    # the chain's connection that crosses the file boundary is one connection
    whole = analyze_paths([str(SFB)])
    chain = cluster.analyze_many(fleet[10:], client)
    assert _jsonl(chain) == _jsonl(whole)


def test_shards_of_one_chain_on_the_cluster(
    fleet: list[str], client, local: AnalysisResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parallel, "MIN_PARALLEL_BYTES", 0)
    tasks = cluster.plan(fleet, 2, {}, shards=3)
    assert len(tasks) == 33 and {t.shards for t in tasks} == {3}
    seen: dict[str, int] = {}
    there = cluster.analyze_many(fleet, client, shards=3, progress=seen.__setitem__)
    assert _jsonl(there) == _jsonl(local)
    assert _counters(there) == _counters(local)
    # every task reported: each input's bytes counted once in all
    assert seen == {p: os.path.getsize(p) // 3 * 3 for p in fleet}


def test_missing_and_corrupt_inputs_are_named_and_skipped(
    fleet: list[str], client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corrupt = tmp_path / "corrupt.pcap"
    corrupt.write_bytes(b"\x00\x01garbage, not a capture" * 100)
    missing = str(tmp_path / "gone.pcap")
    inputs = [*fleet[:3], missing, *fleet[4:6], str(corrupt), *fleet[7:10]]
    kept = [p for i, p in enumerate(fleet[:10]) if i not in (3, 6)]
    out = tmp_path / "events.jsonl"
    address = client.scheduler.address
    code = main(["analyze", *inputs, "--dask", address, "--format", "jsonl", "-o", str(out)])
    assert code == 0
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines
    assert lines[0] == f"oauth-analyzer: warning: {missing}: no such file (skipped)"
    assert lines[1].startswith(f"oauth-analyzer: warning: {corrupt}: not a pcap or pcapng capture")
    assert lines[1].endswith("(skipped)")
    expected = io.StringIO()
    write_jsonl(analyze_paths(kept).events, expected)
    assert out.read_text() == expected.getvalue()


def test_verify_and_report_from_the_merged_result(
    fleet: list[str], client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address = client.scheduler.address
    local_code = main(["verify", *fleet, "--json", "--partial"])
    local_out = capsys.readouterr().out
    code = main(["verify", *fleet, "--json", "--partial", "--dask", address])
    assert (code, capsys.readouterr().out) == (local_code, local_out)
    assert json.loads(local_out)["result"] in ("PASS", "FAIL", "INCONCLUSIVE")
    page = tmp_path / "fleet.html"
    assert main(["report", *fleet, "-o", str(page), "--dask", address]) == 0
    assert "sensor9.pcap" in page.read_text()


def test_scheduler_address_from_the_environment(
    fleet: list[str], client, local: AnalysisResult, monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", client.scheduler.address)
    out = tmp_path / "events.jsonl"
    assert main(["analyze", *fleet[:10], "--format", "jsonl", "-o", str(out)]) == 0
    expected = io.StringIO()
    write_jsonl(analyze_paths(fleet[:10]).events, expected)
    assert out.read_text() == expected.getvalue()


def test_partitioned_parquet_reads_back_as_the_jsonl(
    fleet: list[str], client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address = client.scheduler.address
    folder = tmp_path / "dataset"
    assert (
        main(["analyze", *fleet, "--dask", address, "--format", "parquet", "-o", str(folder)]) == 0
    )
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["events", "handshakes", "tokens", "findings", "verdicts", "tls", "not_inspected"]
    )
    # the local command line reads the files in the order given: the chain in number order
    chained = fleet[:10] + sorted(fleet[10:])
    assert main(["analyze", *chained, "--format", "jsonl", "-o", str(tmp_path / "e.jsonl")]) == 0
    capsys.readouterr()
    rows = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    frame = pd.read_parquet(folder / "events").sort_values("event_id").reset_index(drop=True)
    assert len(frame) == len(rows) > 100
    # hive folders: date=YYYY-MM-DD/input=<the path as given>
    assert {p.name for p in (folder / "events").iterdir()} == {"date=2024-03-12", "date=2026-03-02"}
    conn_input = {}
    for path in fleet:
        for e in analyze_paths([path]).events:
            conn_input.setdefault(e.conn_id, path)
    for name in ("event_id", "conn_id", "client_ip", "client_port", "host", "uri", "scheme",
                 "cred_fp", "auth_class", "outcome", "token_fp"):  # fmt: skip
        column = frame[name].astype(object).where(frame[name].notna(), None).tolist()
        assert column == [r[name] for r in rows], name
    ts = (frame["ts"] - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    assert ts.round(6).tolist() == [round(r["ts"], 6) for r in rows]
    # each event's input is the file its connection was read from (both halves of the chain
    # hold connections of the Exchange capture: its first half's for those it began in)
    for conn, got in zip(frame["conn_id"], frame["input"], strict=True):
        if conn_input[conn] not in fleet[10:]:
            assert got == conn_input[conn]
        else:
            assert got in fleet[10:]


def _read_from_a_bucket(fs, scheme: str, options: dict, fleet: list[str], client) -> None:
    """Put ten fleet files in a bucket ``captures`` of the object store ``fs`` and read them
    as ``scheme://`` URLs here and on the workers, with an absent one among them: the result is
    what the local files give, and the absent URL is named."""
    fs.mkdir("captures")
    urls = []
    for path in fleet[:10]:
        url = f"{scheme}://captures/fleet/{Path(path).name}"
        fs.put(path, url)
        urls.append(url)
    here = cluster.analyze_many(urls, storage_options=options)
    expected = analyze_paths(fleet[:10])
    assert _jsonl(here) == _jsonl(expected)
    assert [c.path for c in here.captures] == urls
    # the workers read the bucket themselves
    absent = f"{scheme}://captures/fleet/absent.pcap"
    there = cluster.analyze_many([*urls, absent], client, storage_options=options)
    assert _jsonl(there) == _jsonl(expected)
    assert cluster.failures(there) == [f"{absent}: no such file"]


def test_s3_inputs_from_a_local_moto_server(fleet: list[str], client) -> None:
    moto_server = pytest.importorskip("moto.server")
    s3fs = pytest.importorskip("s3fs")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        options = {"endpoint_url": f"http://{host}:{port}", "key": "testing", "secret": "testing"}
        _read_from_a_bucket(s3fs.S3FileSystem(**options), "s3", options, fleet, client)
    finally:
        server.stop()


def test_gs_inputs_from_a_local_gcs_emulator(fleet: list[str], client) -> None:
    """In a process of its own (``_gs_in_a_bucket``): gcsfs leaves gRPC threads running, and a
    process with them cannot fork safely - a later ``--jobs`` test's worker died of SIGSEGV
    ("Other threads are currently calling into gRPC, skipping fork() handlers")."""
    pytest.importorskip("gcp_storage_emulator.server")
    pytest.importorskip("gcsfs")
    run = subprocess.run(
        [sys.executable, __file__, client.scheduler.address, *fleet],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def _gs_in_a_bucket(address: str, fleet: list[str]) -> None:
    from distributed import Client
    from gcp_storage_emulator.server import create_server
    from gcsfs import GCSFileSystem

    server = create_server("127.0.0.1", 0, in_memory=True)
    server.start()
    try:
        port = server._api._httpd.server_port  # port 0: the one the OS gave (no public getter)
        # gcsfs asks each bucket's layout over gRPC before it opens a file, and the emulator
        # serves only the JSON API: at the first refusal gcsfs goes on with the JSON API, as it
        # would after 60 s of retries without retry_timeout
        options = {"endpoint_url": f"http://127.0.0.1:{port}", "token": "anon", "retry_timeout": 0}
        with Client(address) as client:
            _read_from_a_bucket(GCSFileSystem(**options), "gs", options, fleet, client)
    finally:
        server.stop()


def test_tls_decrypted_on_the_workers_one_task_per_file(
    client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parallel, "MIN_PARALLEL_BYTES", 0)
    path = str(REPO / "captures" / "healthy-oauth-tls.pcapng")
    keys = str(REPO / "captures" / "healthy-oauth-tls.keys")
    here = analyze_paths([path], tls_keylog=keys)
    there = cluster.analyze_many([path], client, tls_keylog=keys, shards=2)
    assert [e.transport for e in there.events].count("tls") == 8
    assert _jsonl(there) == _jsonl(here)
    assert _counters(there) == _counters(here)


def test_a_cluster_started_with_dasks_own_commands(
    fleet: list[str], local: AnalysisResult, tmp_path: Path
) -> None:
    """``dask scheduler`` and ``dask worker`` on loopback, the command line in its own process
    (the paths are absolute: the workers run in another folder)."""
    bin_dir = Path(sys.executable).parent
    info = tmp_path / "scheduler.json"
    common = ["--host", "127.0.0.1", "--no-dashboard"]
    scheduler = subprocess.Popen(
        [str(bin_dir / "dask"), "scheduler", *common, "--port", "0", "--scheduler-file", str(info)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    worker = None
    try:
        for _ in range(300):  # hang guard
            if info.exists() and info.read_text().strip().endswith("}"):
                break
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        worker = subprocess.Popen(
            [
                str(bin_dir / "dask"),
                "worker",
                address,
                *common,
                "--nworkers",
                "2",
                "--nthreads",
                "1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=tmp_path,
        )
        out = tmp_path / "events.jsonl"
        command = [str(bin_dir / "oauth-analyzer"), "analyze", *fleet[:10], *sorted(fleet[10:])]
        command += ["--dask", address, "--format", "jsonl", "-o", str(out)]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        expected = io.StringIO()
        write_jsonl(local.events, expected)
        assert out.read_text() == expected.getvalue()
    finally:
        for process in (worker, scheduler):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)


def test_file_urls_streamed_and_fetched_for_tshark() -> None:
    """A URL input is read as a stream; with a key log it is fetched for tshark first. Either
    way the events are the local file's and name the URL as their input."""
    path = REPO / "captures" / "healthy-oauth-tls.pcapng"
    keys = str(REPO / "captures" / "healthy-oauth-tls.keys")
    url = path.as_uri()
    for keylog in (None, keys):
        here = analyze_paths([str(path)], tls_keylog=keylog)
        there = cluster.analyze_many([url], tls_keylog=keylog)
        assert _jsonl(there) == _jsonl(here)
        assert [c.path for c in there.captures] == [url]
        assert set(there.inputs.values()) == {url}


if __name__ == "__main__":  # test_gs_inputs_from_a_local_gcs_emulator's own process
    _gs_in_a_bucket(sys.argv[1], sys.argv[2:])
