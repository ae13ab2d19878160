"""``analyze --crosscheck``: tshark's Authorization headers, read through pyshark, against the
events - on the bundled captures (cleartext, one with lost segments, TLS with a key log)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from analyzer.cli import main
from analyzer.engine import analyze_paths
from analyzer.sources.crosscheck import compare, credential_fp, tshark_fingerprints

CAPTURES = Path(__file__).resolve().parents[1] / "captures"
pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")


def test_every_header_tshark_finds_is_an_event() -> None:
    path = str(CAPTURES / "findings.pcap")
    found = tshark_fingerprints(path)
    check = compare(path, found, analyze_paths([path]).events)
    assert (check.tshark, check.matched, check.missed, check.extra) == (18, 18, (), ())


def test_headers_only_the_analyzer_reassembled_are_counted_apart() -> None:
    # messy.pcapng loses and reorders segments: two requests tshark's reassembly gives up on
    path = str(CAPTURES / "messy.pcapng")
    check = compare(path, tshark_fingerprints(path), analyze_paths([path]).events)
    assert (check.tshark, check.matched, check.missed, len(check.extra)) == (6, 6, (), 2)
    assert check.line().endswith("6 of them among the events; found here only: 2")


def test_tls_headers_with_the_key_log() -> None:
    path = str(CAPTURES / "healthy-oauth-tls.pcapng")
    keys = str(CAPTURES / "healthy-oauth-tls.keys")
    assert tshark_fingerprints(path) == []  # encrypted: nothing without the key log
    found = tshark_fingerprints(path, keys)
    check = compare(path, found, analyze_paths([path], tls_keylog=keys).events)
    assert (check.tshark, check.matched, check.missed) == (6, 6, ())


def test_every_run_reads_everything_and_tshark_is_not_reported_crashed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """pyshark kills tshark at the end of its output; reaping the already exited tshark behind
    asyncio's child watcher made a run that read everything raise "TShark seems to have
    crashed (retcode: 255)" - one CI run in a few, most often with the key log."""
    tls = str(CAPTURES / "healthy-oauth-tls.pcapng")
    keys = str(CAPTURES / "healthy-oauth-tls.keys")
    plain = str(CAPTURES / "findings.pcap")
    counts = [
        (len(tshark_fingerprints(tls, keys)), len(tshark_fingerprints(plain))) for _ in range(4)
    ]
    assert counts == [(6, 18)] * 4
    assert "Unknown child process" not in caplog.text


def test_a_process_with_another_child_watcher_still_reads_everything() -> None:
    """A caller that used pyshark itself runs asyncio's SafeChildWatcher on its loop: a fresh
    loop could not start tshark under it, so pyshark is left to its usual way there (which
    replaces the watcher, as it does for any pyshark user) - and still reads everything."""
    import subprocess
    import sys

    code = (
        "import asyncio, sys\n"
        "from analyzer.sources.crosscheck import tshark_fingerprints\n"
        "loop = asyncio.new_event_loop(); asyncio.set_event_loop(loop)\n"
        "watcher = asyncio.SafeChildWatcher(); asyncio.set_child_watcher(watcher)\n"
        "watcher.attach_loop(loop)\n"
        "counts = [len(tshark_fingerprints(sys.argv[1])) for _ in range(3)]\n"
        "print(counts)\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code, str(CAPTURES / "findings.pcap")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.split() == ["[18,", "18,", "18]"], (done.stdout, done.stderr)


def test_a_header_no_event_holds_is_named() -> None:
    path = str(CAPTURES / "exchange-sfb.pcap")
    events = analyze_paths([path]).events
    found = tshark_fingerprints(path)
    dropped = events[3].cred_fp
    check = compare(path, found, [e for e in events if e.cred_fp != dropped])
    assert check.missed == (dropped,) * found.count(dropped) and check.matched == 10 - len(
        check.missed
    )
    assert credential_fp("Basic abc\\r\\n") == credential_fp("Basic abc")


def test_command_line_prints_one_line_per_file(capsys: pytest.CaptureFixture[str]) -> None:
    paths = [str(CAPTURES / "exchange-sfb.pcap"), str(CAPTURES / "findings.pcap")]
    assert main(["analyze", *paths, "--crosscheck", "--format", "jsonl", "-o", "/dev/null"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"oauth-analyzer: crosscheck {paths[0]}: tshark (via pyshark) found 10 Authorization "
        "header(s), 10 of them among the events",
        f"oauth-analyzer: crosscheck {paths[1]}: tshark (via pyshark) found 18 Authorization "
        "header(s), 18 of them among the events",
    ]


def test_the_process_signals_are_left_as_they_were() -> None:
    """pyshark's asyncio child watcher set a SIGCHLD handler and a wakeup fd for the whole
    process: later children's exits filled a pipe nobody read, and Python said so on stderr.
    Checked in a fresh interpreter (this one ran pyshark already)."""
    import subprocess
    import sys

    code = (
        "import signal, sys\n"
        "from analyzer.sources.crosscheck import tshark_fingerprints\n"
        "before = (signal.getsignal(signal.SIGCHLD), signal.set_wakeup_fd(-1))\n"
        "signal.set_wakeup_fd(before[1])\n"
        "tshark_fingerprints(sys.argv[1])\n"
        "after = (signal.getsignal(signal.SIGCHLD), signal.set_wakeup_fd(-1))\n"
        "print(before == after, before, after)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(CAPTURES / "small-basic.pcap")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.startswith("True"), (done.stdout, done.stderr)
