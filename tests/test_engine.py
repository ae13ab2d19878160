"""The incremental engine: files, pipes and standard input through one ``Engine``.

- ``analyze FILE`` writes, byte for byte, what the batch path wrote before the engine (digests
  recorded by ``tests/record_batch_digests.py`` on every bundled and public capture).
- The same bytes read as a stream give the same events, verdicts and findings; only the
  numbering differs (a stream numbers events as they complete, handshakes as they open).
- ``analyze -`` prints an event before its writer has finished writing the capture.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import threading
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from record_batch_digests import DIGESTS, OUTPUTS, capture_files, keys_for
from shared_dir import PUBLIC, needs_public

from analyzer.cli import main
from analyzer.engine import Engine, analyze_paths
from analyzer.model import Event, to_dict

REPO = Path(__file__).resolve().parents[1]
CAPTURES = REPO / "captures"
RECORDED = json.loads(DIGESTS.read_text())
BUNDLED = sorted(name for name in RECORDED if not name.startswith("public/"))
PUBLIC_NAMES = sorted(name for name in RECORDED if name.startswith("public/"))


def _digest(path: Path, extra: list[str]) -> str:
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["analyze", str(path), "--format", "jsonl", *keys_for(path), *extra]) == 0
    return hashlib.sha256(buf.getvalue().encode()).hexdigest()


@pytest.mark.parametrize("name", BUNDLED)
def test_batch_output_is_what_the_batch_path_wrote(name: str) -> None:
    path = REPO / name
    for kind, extra in OUTPUTS.items():
        assert _digest(path, extra) == RECORDED[name][kind], f"{name}: {kind} changed"


@needs_public
def test_batch_output_on_public_captures_is_unchanged() -> None:
    found = capture_files()
    for name in PUBLIC_NAMES:
        assert name in found, f"{name} missing from {PUBLIC}"
        for kind, extra in OUTPUTS.items():
            assert _digest(found[name], extra) == RECORDED[name][kind], f"{name}: {kind}"


def _without_numbers(events: list[Event]) -> list[dict]:
    out = []
    for e in events:
        row = to_dict(e, True)
        del row["event_id"], row["handshake_id"]
        out.append(row)
    return out


def _stream(path: Path, **options) -> tuple[list[Event], object]:
    streamed: list[Event] = []
    engine = Engine(on_event=streamed.append, **options)
    with open(path, "rb") as fh:
        engine.read_stream(fh, path.name)
    return streamed, engine.finish()


def _stream_cases() -> list[Path]:
    paths = [REPO / name for name in BUNDLED if not name.endswith("-tls.pcapng")]
    if PUBLIC.is_dir():
        paths += sorted(p for p in PUBLIC.iterdir() if p.suffix in (".pcap", ".pcapng"))
    return paths


@pytest.mark.parametrize("path", _stream_cases(), ids=lambda p: p.name)
def test_a_stream_finds_what_the_file_analysis_finds(path: Path) -> None:
    batch = analyze_paths([str(path)])
    streamed, result = _stream(path)
    assert len(streamed) == len(batch.events)
    assert _without_numbers(result.events) == _without_numbers(batch.events)
    assert [v.summary for v in result.verdicts] == [v.summary for v in batch.verdicts]
    assert [(f.rule_id, f.detail, f.count) for f in result.findings] == [
        (f.rule_id, f.detail, f.count) for f in batch.findings
    ]


def test_stream_ids_stay_those_the_events_were_streamed_with() -> None:
    streamed, result = _stream(CAPTURES / "hybrid" / "ntlm-legs.pcap")
    as_streamed = {e.event_id: e.handshake_id for e in streamed}
    assert {e.event_id: e.handshake_id for e in result.events} == as_streamed
    for hs in result.handshakes:  # a handshake keeps the id its first event streamed with
        assert hs.handshake_id == as_streamed[hs.event_ids[0]]
    ids = [e.event_id for e in streamed]
    assert ids == list(range(1, len(ids) + 1))  # numbered as they completed


def test_streamed_fields_are_those_known_when_the_exchange_completed() -> None:
    streamed, result = _stream(CAPTURES / "exchange-sfb.pcap")
    final = {e.event_id: e for e in result.events}
    # The metadata documents come first here, so the tokens verify as they stream.
    assert [e.token_signature for e in streamed] == [
        final[e.event_id].token_signature for e in streamed
    ]
    # An NTLM leg answered by the next leg is one step of a handshake: challenged.
    legs = [e for e in streamed if e.scheme == "ntlm"]
    assert [(e.status, e.outcome) for e in legs] == [(401, "challenged"), (200, "accepted")]
    assert [final[e.event_id].outcome for e in legs] == ["challenged", "accepted"]


def test_a_stream_keeps_a_bounded_number_of_events_and_says_so() -> None:
    streamed, result = _stream(CAPTURES / "hybrid" / "ntlm-legs.pcap", keep=10)
    assert len(streamed) == 67  # every event went out
    assert len(result.events) <= 10
    assert result.events[-1].event_id == 67  # the most recent are kept
    assert any("older records" in w and "not kept" in w for w in result.captures[0].warnings)


# -- analyze - ----------------------------------------------------------------------------
def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "analyzer", *args]


def test_analyze_stdin_shows_an_event_before_the_writer_is_done() -> None:
    data = (CAPTURES / "exchange-sfb.pcap").read_bytes()
    half = len(data) // 2
    proc = subprocess.Popen(
        _cli("analyze", "-", "--format", "jsonl"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(data[:half])
        proc.stdin.flush()
        first: list[bytes] = []
        reader = threading.Thread(target=lambda: first.append(proc.stdout.readline()))
        reader.start()
        reader.join(timeout=60)  # a hang guard only
        assert first and first[0], "no event before the rest of the capture was written"
        assert json.loads(first[0])["event_id"] == 1
        proc.stdin.write(data[half:])
        proc.stdin.close()
        rest, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    lines = [first[0], *rest.splitlines()]
    assert [json.loads(line)["event_id"] for line in lines] == list(range(1, 16))
    text = err.decode()
    assert "Verdicts" in text and "OAUTH-WITH-FALLBACK" in text  # the summary on stderr


def test_analyze_stdin_cut_mid_record_warns_and_keeps_what_came(capsys, monkeypatch) -> None:
    data = (CAPTURES / "exchange-sfb.pcap").read_bytes()
    cut = data[: len(data) - 30]
    monkeypatch.setattr(sys, "stdin", _Stdin(cut))
    assert main(["analyze", "-"]) == 0
    out = capsys.readouterr().out
    assert "stdin: file ends in the middle of a record" in out
    assert "Verdicts" in out


def test_analyze_stdin_refuses_files_beside_it_and_non_captures(capsys, monkeypatch) -> None:
    assert main(["analyze", "-", str(CAPTURES / "small-basic.pcap")]) == 2
    assert "give it alone" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", _Stdin(b"GET / HTTP/1.1\r\n\r\n" * 10))
    assert main(["analyze", "-"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["oauth-analyzer: error: stdin: not a pcap or pcapng capture (unknown magic "
                   "0x47455420)"]  # fmt: skip


def test_analyze_stdin_tokens_come_at_the_end(capsys, monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdin", _Stdin((CAPTURES / "exchange-sfb.pcap").read_bytes()))
    assert main(["analyze", "-", "--tokens", "--format", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    batch = analyze_paths([str(CAPTURES / "exchange-sfb.pcap")])
    assert [r["fingerprint"] for r in rows] == [t.fingerprint for t in batch.tokens]


class _Stdin:
    """Standard input holding ``data`` (not a terminal)."""

    def __init__(self, data: bytes) -> None:
        self.buffer = io.BufferedReader(io.BytesIO(data))

    def isatty(self) -> bool:
        return False


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark decrypts TLS")
def test_analyze_stdin_decrypts_tls_with_a_key_log() -> None:
    capture = CAPTURES / "healthy-oauth-tls.pcapng"
    keys = CAPTURES / "healthy-oauth-tls.keys"
    batch = subprocess.run(
        _cli("analyze", str(capture), "--tls-keylog", str(keys), "--format", "jsonl"),
        capture_output=True, cwd=REPO, check=True, timeout=120,
    )  # fmt: skip
    streamed = subprocess.run(
        _cli("analyze", "-", "--tls-keylog", str(keys), "--format", "jsonl"),
        input=capture.read_bytes(), capture_output=True, cwd=REPO, check=True, timeout=120,
    )  # fmt: skip
    rows = [json.loads(line) for line in streamed.stdout.splitlines()]
    expected = [json.loads(line) for line in batch.stdout.splitlines()]
    assert len(rows) == len(expected) == 8
    assert {r["transport"] for r in rows} == {"tls"}
    drop = ("event_id", "handshake_id")
    assert sorted(
        json.dumps({k: v for k, v in r.items() if k not in drop}) for r in rows
    ) == sorted(json.dumps({k: v for k, v in r.items() if k not in drop}) for r in expected)
    assert b"not inspected" not in streamed.stderr
