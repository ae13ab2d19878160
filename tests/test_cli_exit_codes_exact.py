"""The command line's exit codes and one-line errors, run in this process (``cli.main``).

verify keeps 0/1/2 for PASS/FAIL/INCONCLUSIVE, so its bad usage and unreadable input exit 3
(``USAGE_VERIFY``) where every other command exits 2; Ctrl-C exits 130 and says how far the
reading got. These were pinned only by subprocess tests, which mutation testing cannot credit;
here each branch of ``main`` and ``_verify`` is reached in-process and its output compared exactly.
"""

from __future__ import annotations

import errno
import io
import os
import re
import sys
from pathlib import Path
from typing import ClassVar

import pytest

from analyzer import cli
from analyzer.cli import INTERRUPTED, USAGE_VERIFY, main
from analyzer.engine import Engine, analyze_paths

CAPTURE = str(Path(__file__).resolve().parents[1] / "captures" / "small-basic.pcap")


def test_with_no_arguments_main_reads_the_process_arguments(
    capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["analyze", CAPTURE, "--format", "jsonl"]) == 0
    given = capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["oauth-analyzer", "analyze", CAPTURE, "--format", "jsonl"])
    assert main() == 0
    assert capsys.readouterr() == given and given.out.count("\n") > 0


def test_live_is_its_own_command(capsys) -> None:
    assert main(["live", "-i", "nosuchif0", "--duration", "0.1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("oauth-analyzer: error: no such interface: nosuchif0 (interfaces: ")


def test_a_usage_error_of_live_verify_exits_3_as_verifys_does(capsys) -> None:
    """``live --verify`` keeps 2 for INCONCLUSIVE, as ``verify`` does; plain ``live`` exits
    with argparse's 2."""
    repeated = "error: argument --since: given more than once (it takes one value)\n"
    assert main(["live", "--verify", "--since", "1", "--since", "2"]) == USAGE_VERIFY
    assert capsys.readouterr().err.endswith(repeated)
    with pytest.raises(SystemExit) as stopped:
        main(["live", "--since", "1", "--since", "2"])
    assert stopped.value.code == 2 and capsys.readouterr().err.endswith(repeated)


@pytest.mark.parametrize(("command", "code"), [("verify", USAGE_VERIFY), ("analyze", 2)])
def test_an_unreadable_capture_is_one_line_and_verify_exits_3(
    command: str, code: int, tmp_path: Path, capsys
) -> None:
    """A capture that is no capture (a usage error of the input)."""
    bad = tmp_path / "short.pcap"
    bad.write_bytes(b"abc")
    assert main([command, str(bad)]) == code
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"oauth-analyzer: error: {bad}: not a pcap or pcapng capture")
    assert err.count("\n") == 1


def test_an_os_error_is_path_and_reason_and_verify_exits_3(tmp_path: Path, capsys) -> None:
    """An OSError (a policy path that is a folder, an output that cannot be created) is one
    line, ``path: reason``: exit 3 from verify, 2 from the other commands."""
    assert main(["verify", CAPTURE, "--policy", str(tmp_path)]) == USAGE_VERIFY
    assert capsys.readouterr() == ("", f"oauth-analyzer: error: {tmp_path}: Is a directory\n")
    assert main(["analyze", CAPTURE, "--format", "jsonl", "-o", "/proc/x.jsonl"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert re.fullmatch(
        r"oauth-analyzer: error: /proc/\.x\.jsonl\.\w+\.partial: No such file or directory\n", err
    )


def test_ctrl_c_exits_130_and_says_how_many_packets_were_read(
    capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    packets = analyze_paths([CAPTURE]).captures[0].packets
    assert packets > 0
    assert main(["analyze", CAPTURE, "--format", "jsonl", "-o", os.devnull]) == 0
    assert cli._ENGINES == []  # a finished command keeps nothing it read

    def interrupted(self: Engine):
        raise KeyboardInterrupt

    monkeypatch.setattr(Engine, "finish", interrupted)  # Ctrl-C after the reading
    for _ in range(2):  # each command counts its own packets, not those of the one before
        assert main(["analyze", CAPTURE, "--format", "jsonl"]) == INTERRUPTED == 130
        assert capsys.readouterr() == (
            "",
            f"oauth-analyzer: interrupted after {packets:,} packets; partial results not written\n",
        )
    assert cli._ENGINES == []


def test_verify_dash_says_how_to_judge_a_stream(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``verify -`` reads no standard input (and no file named "-": that one is ``./-``): one
    line naming what does, exit 3."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-").write_bytes(Path(CAPTURE).read_bytes())
    assert main(["verify", "-"]) == USAGE_VERIFY
    assert capsys.readouterr() == (
        "",
        "oauth-analyzer: error: -: verify reads capture files, not standard input: judge a live "
        "stream with live --verify, or a capture piped in with verify /dev/stdin\n",
    )
    assert main(["verify", "./-"]) == 1  # the file's Basic logon


@pytest.mark.parametrize(("options", "code"), [(["--verify"], USAGE_VERIFY), ([], 2)])
def test_live_that_cannot_write_its_output_is_one_line(
    options: list[str], code: int, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OSError out of ``live`` (its rows or verdict on a full disk): one line, and under
    ``--verify`` 3 - the run could not finish, so no verdict's status."""
    from analyzer import stream_commands

    def full(_args: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(stream_commands, "live", full)
    assert main(["live", "-i", "lo", *options]) == code
    assert capsys.readouterr() == ("", "oauth-analyzer: error: No space left on device\n")


class _SeenStages(cli.Stages):
    """The progress display verify drives (it draws only on a terminal): what it was asked."""

    made: ClassVar[list[_SeenStages]] = []

    def __init__(self, paths: list[str], show: bool) -> None:
        super().__init__(paths, show)
        self.show = show
        self.names: list[str] = []
        _SeenStages.made.append(self)

    def stage(self, name: str):
        self.names.append(name)
        return super().stage(name)


def test_verify_shows_progress_unless_told_not_to_and_names_its_stages(
    capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "Stages", _SeenStages)
    _SeenStages.made.clear()
    assert main(["verify", CAPTURE, "--jobs", "1"]) in (0, 1, 2)
    assert main(["verify", CAPTURE, "--jobs", "1", "--no-progress"]) in (0, 1, 2)
    capsys.readouterr()
    shown, hidden = _SeenStages.made
    assert (shown.show, hidden.show) == (True, False)
    assert shown.names[:1] == ["tokens"] and hidden.names[:1] == ["tokens"]


def test_with_dask_a_path_missing_here_is_left_to_the_workers(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``--dask`` the workers open the inputs (a path on their shared storage need not
    exist here): verify does not refuse it up front but goes to the scheduler, whose absence
    is the error."""
    dask = pytest.importorskip("dask")
    pytest.importorskip("distributed")
    missing = str(tmp_path / "on-the-workers.pcap")
    assert main(["verify", missing]) == USAGE_VERIFY
    assert capsys.readouterr().err == f"oauth-analyzer: error: {missing}: no such file\n"
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        code = main(["verify", missing, "--dask", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == USAGE_VERIFY
    assert "no such file" not in err and "127.0.0.1:9" in err


class _FullDisk(io.StringIO):
    """Standard output on a full disk (as ``> /dev/full`` gives a command)."""

    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_verify_exits_3_on_a_scope_it_cannot_read_and_on_output_it_cannot_write(
    capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Errors that reach ``main`` from verify's reading or writing (not from its own rule
    checks): a ``--since`` that is no time, and a full disk under its report."""
    assert main(["verify", CAPTURE, "--since", "yesterday"]) == USAGE_VERIFY
    assert capsys.readouterr().err == (
        "oauth-analyzer: error: since 'yesterday': not an ISO 8601 time, epoch seconds or an "
        "offset into the capture such as +30s\n"
    )
    monkeypatch.setattr(sys, "stdout", _FullDisk())
    code = main(["verify", CAPTURE, "--json"])
    monkeypatch.undo()
    assert code == USAGE_VERIFY
    assert capsys.readouterr().err == "oauth-analyzer: error: No space left on device\n"
