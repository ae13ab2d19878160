"""``oauth-analyzer live`` on loopback, with real servers and clients (curl, requests).

Each test starts ``live`` on ``lo`` with a BPF for its server's port, warms up until a first
event shows (the capture is then running), drives Basic, NTLM and Bearer exchanges, and checks
what ``live`` printed while running, what it printed when stopped, and that the capture it
wrote (``--write``) analysed offline gives the same events. Capturing needs root (CI runs as
root); elsewhere the tests skip.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from loopback_server import (
    curl_basic,
    curl_ntlm,
    https_bearer,
    requests_bearer,
    s2s_token,
    serving,
)

REPO = Path(__file__).resolve().parents[1]
WAIT = 30.0  # seconds: a hang guard, not a timing goal (bench/live.py measures those)

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="capturing on lo needs root"),
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed"),
]
ENGINES = [
    pytest.param(
        "dumpcap",
        marks=pytest.mark.skipif(shutil.which("dumpcap") is None, reason="dumpcap missing"),
    ),
    "scapy",
]


class Live:
    """One ``live`` run in a child process, its event rows in a file."""

    def __init__(self, tmp: Path, port: int, *options: str) -> None:
        self.rows = tmp / "events.jsonl"
        self.rows.touch()
        cmd = [sys.executable, "-m", "analyzer", "live", "-i", "lo", "--bpf", f"tcp port {port}"]
        self.proc = subprocess.Popen(
            [*cmd, *options],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        self.port = port

    def lines(self) -> list[dict]:
        text = self.rows.read_text()
        return [json.loads(line) for line in text.splitlines() if line.endswith("}")]

    def wait_for(self, found: Callable[[list[dict]], bool]) -> list[dict]:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            rows = self.lines()
            if found(rows):
                return rows
            if self.proc.poll() is not None:
                raise AssertionError(f"live ended early: {self.proc.communicate()}")
            time.sleep(0.05)
        raise AssertionError(f"not seen within {WAIT} s; rows so far: {self.lines()}")

    def warm_up(self) -> None:
        """Basic requests until one shows: the capture is running from then on."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            curl_basic(self.port, user="warmup")
            try:
                self.wait_for_quick(lambda rows: any(r["user"] == "warmup" for r in rows))
                return
            except TimeoutError:
                continue
        raise AssertionError(f"live never showed an event: {self.stop()}")

    def wait_for_quick(self, found: Callable[[list[dict]], bool]) -> None:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if found(self.lines()):
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"live ended early: {self.proc.communicate()}")
            time.sleep(0.05)
        raise TimeoutError

    def stop_when_done(self) -> tuple[int, str, str]:
        """Wait for ``live`` to end by itself (--duration, --count)."""
        out, err = self.proc.communicate(timeout=WAIT)
        return self.proc.returncode, out, err

    def stop(self, signum: int = signal.SIGINT) -> tuple[int, str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            out, err = self.proc.communicate(timeout=WAIT)
        finally:
            self.proc.kill()
        return self.proc.returncode, out, err


def _identity(row: dict) -> tuple:
    return (row["method"], row["uri"], row["status"], row["scheme"], row["user"], row["cred_fp"])


@pytest.mark.parametrize("engine", ENGINES)
def test_live_prints_each_exchange_as_it_completes(tmp_path: Path, engine: str) -> None:
    written = tmp_path / "seen.pcapng"
    with serving() as port:
        live = Live(tmp_path, port, "--engine", engine, "--format", "jsonl", "-o",
                    str(tmp_path / "events.jsonl"), "--write", str(written))  # fmt: skip
        try:
            live.warm_up()
            curl_basic(port)
            live.wait_for(lambda rows: any(r["user"] == "alice" for r in rows))
            curl_ntlm(port)
            live.wait_for(lambda rows: any(r["user"] == "bob" for r in rows))
            assert requests_bearer(port, s2s_token()) == 200
            rows = live.wait_for(lambda rows: any(r["scheme"] == "bearer" for r in rows))
        finally:
            code, out, err = live.stop()
    assert code == 0, err
    alice = next(r for r in rows if r["user"] == "alice")
    assert (alice["scheme"], alice["status"], alice["outcome"]) == ("basic", 200, "accepted")
    ntlm = [r for r in rows if r["uri"] == "/ntlm"]
    assert [(r["ntlm_type"], r["status"], r["outcome"]) for r in ntlm] == [
        (1, 401, "challenged"),
        (3, 200, "accepted"),
    ]
    assert (ntlm[1]["domain"], ntlm[1]["user"]) == ("CONTOSO", "bob")
    bearer = next(r for r in rows if r["scheme"] == "bearer")
    assert bearer["token_iss"] == "00000004-0000-0ff1-ce00-000000000000@contoso.com"
    assert (bearer["auth_class"], bearer["outcome"]) == ("oauth", "accepted")
    assert "Secret-Pa55" not in live.rows.read_text()
    # The closing summary: what was read, the verdicts, the capture engine and its drops.
    assert f"live:lo: live ({engine})" in out
    assert "Verdicts" in out and "NO-OAUTH" in out and "OAUTH-ONLY" in out
    # What --write kept, analysed offline, gives the same exchanges.
    offline = subprocess.run(
        [sys.executable, "-m", "analyzer", "analyze", str(written), "--format", "jsonl"],
        capture_output=True, text=True, cwd=REPO, check=True,
    )  # fmt: skip
    found = [json.loads(line) for line in offline.stdout.splitlines()]
    assert sorted(map(_identity, found)) == sorted(map(_identity, live.lines()))


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark decrypts TLS")
def test_live_decrypts_https_with_a_key_log_written_while_it_runs(tmp_path: Path) -> None:
    keylog = tmp_path / "keys.log"
    keylog.touch()  # the client writes its keys while live runs
    token = s2s_token()
    with serving() as port, serving(tmp_path) as tls_port:
        both = f"tcp port {port} or tcp port {tls_port}"
        live = Live(tmp_path, port, "--format", "jsonl", "-o", str(tmp_path / "events.jsonl"),
                    "--tls-keylog", str(keylog), "--bpf", both)  # fmt: skip
        try:
            live.warm_up()
            assert https_bearer(tls_port, token, keylog) == 200
            rows = live.wait_for(lambda rows: any(r["transport"] == "tls" for r in rows))
        finally:
            code, out, err = live.stop()
    assert code == 0, err
    tls = [r for r in rows if r["transport"] == "tls"]
    assert [(r["method"], r["uri"], r["status"], r["host"]) for r in tls] == [
        ("POST", "/EWS/Exchange.asmx", 200, "mail.contoso.com")
    ]
    assert tls[0]["token_iss"] == "00000004-0000-0ff1-ce00-000000000000@contoso.com"
    assert "not inspected" not in out  # the TLS connection was read, not a blind spot


def test_live_verify_prints_violations_at_once_and_exits_with_verify_status(
    tmp_path: Path,
) -> None:
    with serving() as port:
        live = Live(tmp_path, port, "--verify", "--format", "jsonl", "-o",
                    str(tmp_path / "events.jsonl"))  # fmt: skip
        try:
            live.warm_up()
            assert requests_bearer(port, s2s_token()) == 200
            live.wait_for(lambda rows: any(r["scheme"] == "bearer" for r in rows))
        finally:
            code, out, err = live.stop(signal.SIGTERM)
    assert code == 1, err
    violations = [line for line in out.splitlines() if line.startswith("VIOLATION")]
    assert violations and all("not-oauth: not OAuth: basic as warmup" in v for v in violations)
    assert "FAIL" in out


def test_live_verify_judges_sip_when_asked(tmp_path: Path) -> None:
    """``--protocol sip`` reaches live's rule as it reaches verify's: a REGISTER signed with
    Digest over UDP fails it, and the warm-up's Basic over HTTP, which a SIP rule does not
    judge, is no violation."""
    import socket

    from sip_kit import Dialog

    digest = (
        'Authorization: Digest username="alice", realm="contoso.com", nonce="1", '
        'uri="sip:contoso.com", response="00"'
    )
    with (
        serving() as port,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client,
    ):
        server.bind(("127.0.0.1", 0))
        server.settimeout(WAIT)
        sip = server.getsockname()[1]
        rows = str(tmp_path / "events.jsonl")
        live = Live(tmp_path, port, "--bpf", f"tcp port {port} or udp port {sip}", "--verify",
                    "--protocol", "sip", "--format", "jsonl", "-o", rows)  # fmt: skip
        try:
            live.warm_up()
            register = Dialog("live-sip-0001")
            deadline = time.monotonic() + WAIT
            while not any(r["scheme"] == "digest" for r in live.lines()):
                assert time.monotonic() < deadline, "live never showed the REGISTER"
                client.sendto(register.request([digest]), ("127.0.0.1", sip))
                _, where = server.recvfrom(65535)
                server.sendto(register.response(200, "OK"), where)
                time.sleep(0.3)
        finally:
            code, out, err = live.stop(signal.SIGTERM)
    assert code == 1, out + err
    violations = [line for line in out.splitlines() if line.startswith("VIOLATION")]
    assert violations and all("not OAuth: digest as alice" in v for v in violations), out
    assert "warmup" not in "".join(violations)


def test_live_verify_counts_offsets_from_the_first_packet(tmp_path: Path) -> None:
    """``--until +2s`` ends two seconds after the first packet, as ``verify`` of the same bytes
    counts it: a quiet link before it (here 3 s) does not shift the window, so logons just
    after the first packet fail the rule (counted from live's start, none would be in it)."""
    with serving() as port:
        live = Live(tmp_path, port, "--verify", "--until", "+2s", "--format", "jsonl", "-o",
                    str(tmp_path / "events.jsonl"))  # fmt: skip
        try:
            time.sleep(3.0)  # live has started; its link is quiet
            live.warm_up()  # the first packets
            curl_basic(port)
            live.wait_for(lambda rows: any(r["user"] == "alice" for r in rows))
        finally:
            code, out, err = live.stop(signal.SIGTERM)
    assert code == 1, out + err
    assert "not-oauth: not OAuth: basic as alice" in out


@pytest.mark.parametrize(("options", "code"), [(["--verify"], 3), ([], 2)])
def test_live_stops_in_one_line_when_its_write_fails(options: list[str], code: int) -> None:
    """A full disk under ``--write`` ends the run with one line; under ``--verify`` with 3 (the
    run could not finish), never 0 or 1 as if the traffic had been judged."""
    done = subprocess.run(
        [sys.executable, "-m", "analyzer", "live", "-i", "lo", "--bpf", "tcp port 9",
         "--duration", "10", "--write", "/dev/full", *options],
        capture_output=True, text=True, cwd=REPO, timeout=WAIT,
    )  # fmt: skip
    assert done.returncode == code, done.stderr
    assert done.stderr == (
        "oauth-analyzer: error: cannot write /dev/full: No space left on device: live stopped\n"
    )


@pytest.mark.skipif(shutil.which("dumpcap") is None, reason="dumpcap missing")
def test_live_verify_over_a_capture_killed_midway_is_inconclusive(tmp_path: Path) -> None:
    """dumpcap killed (the OOM killer, a crash) after a compliant call: what it had captured
    but not written is lost, so the rule cannot PASS on the call it did write."""
    with serving() as port:
        live = Live(tmp_path, port, "--verify", "--format", "jsonl", "-o",
                    str(tmp_path / "events.jsonl"))  # fmt: skip
        try:
            deadline = time.monotonic() + WAIT
            while not any(r["scheme"] == "bearer" for r in live.lines()):
                assert time.monotonic() < deadline, "live never showed the compliant call"
                assert requests_bearer(port, s2s_token()) == 200
                time.sleep(0.3)
            children = Path(f"/proc/{live.proc.pid}/task/{live.proc.pid}/children").read_text()
            names = {int(pid): Path(f"/proc/{pid}/comm").read_text().strip() for pid in
                     children.split()}  # fmt: skip
            (dumpcap,) = [pid for pid, name in names.items() if name == "dumpcap"]
            os.kill(dumpcap, signal.SIGKILL)
            code, out, err = live.stop_when_done()  # the stream ends: live ends by itself
        finally:
            live.proc.kill()
    assert code == 2, err
    # (killed while writing a block, its stream may also end inside a record: warned too)
    assert out.splitlines()[-1].startswith("INCONCLUSIVE (warning: damaged capture: ")
    assert "live:lo: the capture ended by itself: dumpcap was killed (signal 9)" in out
    assert "blind spot: live:lo: the bytes after offset" in out


def test_live_stops_by_itself_after_a_duration(tmp_path: Path) -> None:
    with serving() as port:
        live = Live(tmp_path, port, "--duration", "3", "--format", "jsonl", "-o",
                    str(tmp_path / "events.jsonl"))  # fmt: skip
        try:
            live.warm_up()
            code, out, err = live.stop_when_done()
        finally:
            live.proc.kill()
    assert code == 0, err
    assert "Read 1 capture: " in out


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["-i", "nosuch0"], "lo"),
        (["-i", "lo", "--bpf", "tcp port ***"], "***"),
        (["-i", "lo", "--ring", "3:10"], "--ring N:MB needs --write"),
        (["-i", "lo", "--issuer", "skype"], "--issuer is a rule option: it needs --verify"),
        (["-i", "lo", "--verify", "--scheme", "ntlm"], "verify does not take --scheme"),
    ],
)
def test_live_refuses_bad_usage_in_one_line(options: list[str], says: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "analyzer", "live", *options],
        capture_output=True, text=True, cwd=REPO, timeout=WAIT,
    )  # fmt: skip
    assert done.returncode in (2, 3)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], done.stderr
    assert "Traceback" not in done.stderr
