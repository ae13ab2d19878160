"""How file commands end: Ctrl-C (one line, exit 130, no partial output), a closed pipe (quiet),
and output paths checked before the capture is read (one line, at once). Real child processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "captures"
SFB = CAPTURES / "exchange-sfb.pcap"
HANG_GUARD = 60  # seconds: only so that a regression fails instead of hanging the suite


def cli(*args: str | Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "analyzer", *map(str, args)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "capture.pcap"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize(
    "command",
    [
        ["analyze", "{capture}", "--format", "jsonl", "-o", "{out}"],
        ["analyze", "{capture}", "-o", "{out}"],
        ["report", "{capture}", "-o", "{out}"],
    ],
)
def test_ctrl_c_says_one_line_writes_nothing_exits_130(tmp_path: Path, command: list[str]) -> None:
    capture = fifo(tmp_path)
    out = tmp_path / "out.file"
    args = [a.format(capture=capture, out=out) for a in command]
    proc = cli(*args, stdout=subprocess.DEVNULL)
    data = SFB.read_bytes()
    # the header, then the records again and again: over the 1 MiB a file read waits for
    stream = data + data[24:] * (2 * (1 << 20) // len(data))
    with open(capture, "wb") as writer:  # opens once the analyzer opens its end
        writer.write(stream)
        writer.flush()
        time.sleep(1.0)  # let it read them; the writer stays open, so it waits for more
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("oauth-analyzer: interrupted after ")
    assert lines[0].endswith(" packets; partial results not written")
    assert int(lines[0].split()[3].replace(",", "")) > 0
    assert list(tmp_path.iterdir()) == [capture]  # no output file, no partial file


def test_closed_pipe_exits_quietly() -> None:
    everything = sorted(p for p in CAPTURES.iterdir() if p.suffix in (".pcap", ".pcapng"))
    proc = cli("analyze", *everything, "--format", "jsonl", stdout=subprocess.PIPE)
    assert proc.stdout is not None
    first = proc.stdout.readline()  # the output is larger than a pipe holds: writing blocks
    proc.stdout.close()  # like `| head -1`
    _, err = proc.communicate(timeout=HANG_GUARD)
    assert first.startswith('{"schema_version":1,')
    assert err == ""
    assert proc.returncode == 0


def test_closed_pipe_through_a_shell() -> None:
    shell = (
        f"{sys.executable} -m analyzer analyze {SFB} {CAPTURES / 'findings.pcap'} | head -1; "
        'echo "status=${PIPESTATUS[0]}" >&2'
    )
    proc = subprocess.run(
        ["bash", "-c", shell], cwd=ROOT, capture_output=True, text=True, timeout=HANG_GUARD
    )
    assert proc.stdout.startswith("Read 2 captures")
    assert proc.stderr == "status=0\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["analyze", "{capture}", "-o", "{tmp}"], "-o {tmp}: is a folder; give a file name"),
        (
            ["analyze", "{capture}", "-o", "{tmp}/no/such.jsonl"],
            "-o {tmp}/no/such.jsonl: no such folder {tmp}/no",
        ),
        (
            ["analyze", "{capture}", "--format", "parquet", "-o", "{file}"],
            "-o {file}: exists and is not a folder",
        ),
        (
            ["analyze", "{capture}", "--charts", "{file}"],
            "--charts {file}: exists and is not a folder",
        ),
        (["report", "{capture}", "-o", "{tmp}"], "report -o {tmp}: is a folder; give a file name"),
        (
            ["report", "{capture}", "-o", "{tmp}/no/report.html"],
            "report -o {tmp}/no/report.html: no such folder {tmp}/no",
        ),
    ],
)
def test_output_paths_are_checked_before_reading(
    tmp_path: Path, args: list[str], message: str
) -> None:
    capture = fifo(tmp_path)  # reading it would block: an answer proves nothing was read
    existing = tmp_path / "existing.txt"
    existing.write_text("x")
    values = {"capture": capture, "tmp": tmp_path, "file": existing}
    proc = cli(*[a.format(**values) for a in args], stdout=subprocess.PIPE)
    out, err = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == 2
    assert err == f"oauth-analyzer: error: {message.format(**values)}\n"
    assert out == ""


def test_failed_run_leaves_no_partial_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a capture at all")
    out = tmp_path / "out.jsonl"
    proc = cli("analyze", bad, "-o", out, stdout=subprocess.PIPE)
    proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pcap"]


def test_special_files_are_written_in_place_never_replaced(tmp_path: Path) -> None:
    """-o /dev/null (or a FIFO) is written to, not renamed over."""
    target = fifo(tmp_path)
    reader = subprocess.Popen(["cat", str(target)], stdout=subprocess.PIPE)
    proc = cli("analyze", SFB, "--format", "jsonl", "-o", target, stdout=subprocess.PIPE)
    proc.communicate(timeout=HANG_GUARD)
    out, _ = reader.communicate(timeout=HANG_GUARD)
    assert proc.returncode == 0 and len(out.splitlines()) == 15
    assert target.is_fifo() and sorted(p.name for p in tmp_path.iterdir()) == [target.name]
    devnull = Path(os.devnull)
    assert main_code("analyze", SFB, "-o", str(devnull)) == 0
    assert devnull.is_char_device()


def main_code(*args: str | Path) -> int:
    from analyzer.cli import main

    return main([str(a) for a in args])


def test_progress_bar_names_its_stages(monkeypatch, tmp_path: Path) -> None:
    """On a terminal the bar shows for analyze, verify and report, naming each stage."""
    from analyzer.report import progress

    seen: list[str] = []

    class Bar:
        def __init__(self, *columns, **kwargs) -> None:
            pass

        def start(self) -> None:
            pass

        def stop(self) -> None:
            pass

        def add_task(self, description: str, **kwargs) -> int:
            seen.append(description)
            return 1

        def update(self, task: int, description: str | None = None, **kwargs) -> None:
            if description and description != seen[-1]:
                seen.append(description)

    import rich.progress

    monkeypatch.setattr(rich.progress, "Progress", Bar)
    monkeypatch.setattr(progress, "MIN_BYTES", 0)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    from analyzer.cli import main

    for command in (["analyze", str(SFB), "-o", str(tmp_path / "out.txt")],
                    ["verify", str(SFB)],
                    ["report", str(SFB), "-o", str(tmp_path / "r.html")]):  # fmt: skip
        seen.clear()
        main(command)
        assert seen[0] == "reading"
        assert "reading exchange-sfb.pcap" in seen
        assert "tokens" in seen
        if command[0] != "verify":
            assert seen[-1] == "report"
