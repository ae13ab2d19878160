#!/usr/bin/env python3
"""Benchmark live capture: how fast can traffic on ``lo`` go before a capture drops packets or
misses an auth exchange, and does the analyzer's memory stay flat over a long run.

Load: ``bench/make_capture.py`` writes a capture (bulk HTTP downloads with Basic, Bearer with
JWT and S2S tokens, NTLM and Negotiate exchanges spread through it, 3000 per GB) for each offered
rate, sized so that replaying it takes ``--seconds``. ``tcprewrite --pnat`` moves every address
into 127.0.0.0/8 (clients 127.20.x.x, servers 127.80.1.x) and fixes the checksums; this script
then reads every frame back and refuses to replay a file holding any address outside
127.0.0.0/8. ``tcpreplay --mbps R -i lo`` sends it. The frames keep their non-zero MAC addresses,
so the kernel hands them to packet sockets (the captures) but drops them before IP: no RST
answers, no socket is involved. The generator runs on one core (``taskset``), the capture on the
other, so the capture has one core for itself and its children (the analyzer shares it with its
dumpcap).

Contenders, each capturing ``lo`` with the filter :data:`BPF`:

- ``dumpcap``: ``dumpcap -i lo -f BPF -w /dev/null``, the floor: capture and nothing else;
- ``tshark``: ``tshark -i lo -f BPF -Y http.authorization -T fields -e http.authorization``;
- ``tshark-nobody``: the same with ``-o http.desegment_body:FALSE`` (run.py's fair baseline);
- ``live-dumpcap`` / ``live-scapy``: ``oauth-analyzer live -i lo --bpf BPF --format jsonl -o F
  --engine dumpcap|scapy``.

For each contender the offered rate steps up (``--rates``) until a step fails. A step passes
when the capture dropped nothing, received every packet sent (where it says), found every
Authorization header of the truth file (the ``cred_fp`` multiset, as run.py checks it) and went
idle within ``--max-lag`` seconds after the replay ended (tshark never drops: its dumpcap
writes to a temporary file, so it falls behind instead). Per step: packets/s, Mbit/s,
events/s, CPU (user+sys of the child and its children, from ``os.wait4``, and the share of a
core while the traffic flowed), peak RSS (``ru_maxrss``).

``--long S`` then runs ``live --engine dumpcap`` for S seconds at a rate it sustained (half its
best, or ``--long-rate``), on fresh captures of distinct seeds, sampling the analyzer's VmRSS.

Prints a table, the best sustained rate of each contender and the ratios; writes
``bench/out/live.json``. Needs root, ``tcpreplay``/``tcprewrite``, ``dumpcap``, 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import hashlib
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import compile_package, event_fps, project_python

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "bench" / "out"
LOG_DIR = OUT_DIR / "live"  # stderr of every capture run, tcpreplay's report
RESULT_JSON = OUT_DIR / "live.json"
IFACE = "lo"  # the only interface this script sends on
PNAT = "10.0.0.0/8:127.0.0.0/8"  # make_capture.py's 10.20.x.x / 10.80.1.x into loopback
BPF = "tcp and (net 127.20.0.0/16 or net 127.80.1.0/24)"
SNAPLEN = 262144  # what ``live`` gives dumpcap
AUTH_PER_GB = 3000  # auth scenarios per 10^9 bytes, as bench.pcap has them
MB = 1e6
RATES = (10, 25, 50, 100, 250, 500, 1000, 2000, 4000)  # Mbit/s
QUICK_RATES = (10, 50, 250, 1000, 4000)
ENGINES = ("dumpcap", "tshark", "tshark-nobody", "live-dumpcap", "live-scapy")
OURS = ("live-dumpcap", "live-scapy")
IDLE_WINDOW = 0.5  # s: the capture is idle when it used < IDLE_SHARE of a core for 2 windows
IDLE_SHARE = 0.05
SETTLE = 1.0  # s after the packet socket appears, for the filter and the reader to be in place
START_LIMIT = 30.0  # s for a capture to open its packet socket
EXIT_LIMIT = 60.0  # s for a capture to exit after SIGINT before it is killed
CLK_TCK = os.sysconf("SC_CLK_TCK")
BUSY_WARN = 10.0  # % of the capture core taken by other processes that makes a step suspect

_children: list[subprocess.Popen[bytes]] = []  # every process group this run started
_tshark_logs: list[Path] = []  # their "File:" lines name tshark's temporary capture files


# -- load ----------------------------------------------------------------------------------------
@dataclass(slots=True)
class Workload:
    """Capture files replayed in one go, with what they hold."""

    files: list[Path]
    packets: int = 0
    frame_bytes: int = 0
    cred_fps: Counter[str] = field(default_factory=Counter)

    @property
    def auth(self) -> int:
        return sum(self.cred_fps.values())

    @property
    def size(self) -> int:
        return sum(f.stat().st_size for f in self.files)


def make_workload(tmp: Path, tag: str, gb: float, seed: int, chunk_gb: float) -> Workload:
    """Write ``gb`` of loopback traffic as chunks of at most ``chunk_gb`` (seeds seed, seed+1,
    ...): each made by make_capture.py, rewritten into 127.0.0.0/8, then checked."""
    work = Workload(files=[])
    chunks = max(1, math.ceil(gb / chunk_gb - 1e-9))
    for i in range(chunks):
        part = gb / chunks
        raw, lo = tmp / f"{tag}-{i}.raw.pcap", tmp / f"{tag}-{i}.pcap"
        auth = max(20, round(part * AUTH_PER_GB))
        gen = [sys.executable, str(REPO / "bench" / "make_capture.py"), str(raw)]
        gen += ["--size-gb", f"{part:.4f}", "--auth", str(auth), "--seed", str(seed + i)]
        done = subprocess.run(gen, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"make_capture.py failed:\n{done.stdout}{done.stderr}")
        truth_file = raw.with_name(raw.name + ".truth.json")
        truth = json.loads(truth_file.read_text())
        rewrite = ["tcprewrite", f"--pnat={PNAT}", "--fixcsum", "-i", str(raw), "-o", str(lo)]
        subprocess.run(rewrite, check=True, capture_output=True)
        raw.unlink()
        truth_file.unlink()
        packets, frame_bytes = loopback_only(lo)
        if packets != truth["packets"]:
            raise SystemExit(f"{lo}: {packets} packets after tcprewrite, {truth['packets']} before")
        work.files.append(lo)
        work.packets += packets
        work.frame_bytes += frame_bytes
        work.cred_fps.update(truth["cred_fps"])
    return work


def loopback_only(path: Path) -> tuple[int, int]:
    """Frames and frame bytes of a classic little-endian pcap; raises SystemExit when a frame
    is not IPv4 from and to 127.0.0.0/8. The guard that keeps this script's traffic local.
    Reads blocks rather than mmapping the file: mapped pages would count in this process's
    RSS, and that peak is passed on to every child it starts (exec keeps ``ru_maxrss``)."""
    rec = struct.Struct("<IIII")
    n = total = 0
    with open(path, "rb") as f:
        if f.read(24)[:4] != b"\xd4\xc3\xb2\xa1":
            raise SystemExit(f"{path}: not a little-endian microsecond pcap")
        data, pos = b"", 0
        while True:
            more = f.read(1 << 22)
            data, pos = data[pos:] + more, 0
            while pos + 16 <= len(data):
                frame = pos + 16
                incl = rec.unpack_from(data, pos)[2]
                if frame + incl > len(data):
                    break
                if data[frame + 12 : frame + 14] != b"\x08\x00" or not (
                    data[frame + 26] == 127 and data[frame + 30] == 127
                ):
                    raise SystemExit(f"{path}: frame {n + 1} is not IPv4 in 127.0.0.0/8; not sent")
                pos = frame + incl
                n += 1
                total += incl
            if not more:
                break
        if pos != len(data):
            raise SystemExit(f"{path}: cut short after frame {n}")
    return n, total


@dataclass(slots=True)
class Replay:
    """tcpreplay's own report of one run."""

    packets: int = 0
    nbytes: int = 0
    seconds: float = 0.0
    mbps: float = 0.0
    pps: float = 0.0
    failed: int = 0


def replay(work: Workload, mbps: float, cpu: int, niceness: int, log: Path) -> Replay:
    """``tcpreplay -i lo --mbps R`` over the workload's files, pinned to ``cpu``. Small
    workloads are preloaded into memory so reading the file does not pace the sender."""
    argv = ["tcpreplay", "-i", IFACE, f"--mbps={mbps:g}"]
    if work.size < 3e9:
        argv.append("--preload-pcap")
    argv += [str(f) for f in work.files]
    with open(log, "wb") as out:
        proc = spawn(argv, cpu, niceness, out, out)
        code = proc.wait()
    text = log.read_text(errors="replace")
    if code != 0:
        raise SystemExit(f"tcpreplay failed (exit {code}), see {log}")
    rep = Replay()
    if m := re.search(r"Actual: (\d+) packets \((\d+) bytes\) sent in ([\d.]+) seconds", text):
        rep.packets, rep.nbytes, rep.seconds = int(m[1]), int(m[2]), float(m[3])
    if m := re.search(r"Rated: [\d.]+ Bps, ([\d.]+) Mbps, ([\d.]+) pps", text):
        rep.mbps, rep.pps = float(m[1]), float(m[2])
    if m := re.search(r"Failed packets:\s+(\d+)", text):
        rep.failed = int(m[1])
    return rep


# -- processes -----------------------------------------------------------------------------------
def spawn(
    argv: list[str], cpu: int, niceness: int, stdout: IO[bytes], stderr: IO[bytes]
) -> subprocess.Popen:
    """Start ``argv`` pinned to core ``cpu`` in a session of its own: a Ctrl-C on the terminal
    reaches only this script, which then ends the whole group.

    ``niceness`` (when not 0) is set twice: with ``nice`` for the process, and on the session's
    autogroup. With autogroups on (Debian's default) the scheduler first shares a core between
    sessions, so a process's own niceness only counts against its own session."""
    nice = ["nice", "-n", str(niceness)] if niceness else []
    proc = subprocess.Popen(
        ["taskset", "-c", str(cpu), *nice, *argv],
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        cwd=REPO,
        start_new_session=True,
    )
    _children.append(proc)
    if niceness:
        with contextlib.suppress(OSError):  # no autogroups: plain nice is enough
            Path(f"/proc/{proc.pid}/autogroup").write_text(str(niceness))
    return proc


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def reap(proc: subprocess.Popen, limit: float) -> tuple[int, resource.struct_rusage]:
    """Wait for ``proc`` (killing its group after ``limit`` seconds); exit code and rusage.
    The rusage covers the process and the children it waited for (tshark's and live's
    dumpcap): CPU is their sum, ``ru_maxrss`` the largest of them."""
    killer = threading.Timer(limit, kill_group, (proc.pid,))
    killer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        killer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped: keep Popen quiet
    return proc.returncode, usage


def group_members(pgid: int) -> list[int]:
    """Processes still in process group ``pgid`` (left behind once its leader exited)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{name}/stat").read_text()
            if int(stat[stat.rindex(")") + 2 :].split()[2]) == pgid:
                found.append(int(name))
    return found


def cleanup() -> None:
    """End every process group this run started and remove tshark's leftover files."""
    for proc in _children:
        kill_group(proc.pid)
        if proc.returncode is None:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(proc.pid, 0)
                proc.returncode = -signal.SIGKILL
    for log in _tshark_logs:  # tshark removes its file on exit, not when it is killed
        with contextlib.suppress(OSError):
            for name in re.findall(r'File: "?(/tmp/wireshark_[^"\s]+)', log.read_text()):
                Path(name).unlink(missing_ok=True)


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc/PID/task/TID/children."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        with contextlib.suppress(OSError, ValueError):
            for task in os.listdir(f"/proc/{p}/task"):
                children = Path(f"/proc/{p}/task/{task}/children").read_text()
                todo += [int(c) for c in children.split()]
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """utime+stime (and that of their reaped children) of ``pids``, in seconds."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            ticks += sum(int(x) for x in fields[11:15])
    return ticks / CLK_TCK


def packet_sockets() -> set[str]:
    """Inodes of the open packet sockets (/proc/net/packet), as ``socket:[INODE]`` links."""
    lines = Path("/proc/net/packet").read_text().splitlines()[1:]
    return {f"socket:[{line.split()[-1]}]" for line in lines if line.split()}


def has_packet_socket(pid: int) -> bool:
    """Whether ``pid`` or a descendant holds a packet socket: it is capturing."""
    sockets = packet_sockets()
    for p in tree(pid):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{p}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{p}/fd/{fd}") in sockets:
                        return True
    return False


class StartError(Exception):
    """A capture that exited, or opened no packet socket, before the traffic began."""


def wait_capturing(proc: subprocess.Popen, err: Path) -> None:
    """Return once ``proc``'s tree has a packet socket open (plus SETTLE seconds); raise
    StartError with its last words when it gave up first."""
    deadline = time.monotonic() + START_LIMIT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if has_packet_socket(proc.pid):
            time.sleep(SETTLE)
            if proc.poll() is None:
                return
            break
        time.sleep(0.05)
    tail = err.read_text(errors="replace").strip().splitlines()[-3:]
    raise StartError("did not start: " + " / ".join(tail or ["no message"]))


def wait_idle(pid: int, limit: float) -> float:
    """Seconds until ``pid``'s tree went idle (under IDLE_SHARE of a core for two IDLE_WINDOWs
    in a row): how far the capture lagged behind the traffic. ``limit`` when it never did."""
    t0 = time.monotonic()
    last, quiet_since = cpu_seconds(tree(pid)), None
    while (now := time.monotonic()) - t0 < limit:
        time.sleep(IDLE_WINDOW)
        cpu = cpu_seconds(tree(pid))
        idle = cpu - last < IDLE_SHARE * IDLE_WINDOW
        last = cpu
        if not idle:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif time.monotonic() - quiet_since >= 2 * IDLE_WINDOW:
            return quiet_since - t0
    return limit


def core_busy(cpu: int) -> float:
    """Seconds core ``cpu`` has been busy since boot (/proc/stat: all but idle and iowait)."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            ticks = [int(x) for x in line.split()[1:]]
            return (sum(ticks[:8]) - ticks[3] - ticks[4]) / CLK_TCK
    return 0.0


def softnet_drops() -> int:
    """Packets the kernel's per-CPU backlog dropped (second column of /proc/net/softnet_stat):
    loss before any capture sees them, which would void a step."""
    total = 0
    for line in Path("/proc/net/softnet_stat").read_text().splitlines():
        total += int(line.split()[1], 16)
    return total


class TreeWatch(threading.Thread):
    """Watches a capture's process tree until it is stopped: each program's peak VmHWM, and
    the top process's VmRSS every ``every`` seconds (does its memory stay flat?).

    VmHWM is the peak of the program itself. ``ru_maxrss`` from wait4 is not: exec keeps the
    high-water mark of the process image it replaces, so a child forked from this script
    starts with this script's RSS as its floor."""

    def __init__(self, pid: int, every: float) -> None:
        super().__init__(name="tree-watch", daemon=True)
        self.pid, self.every = pid, every
        self.peaks: dict[str, float] = {}  # program name -> peak VmHWM, MB
        self.samples: list[tuple[float, float]] = []  # (seconds since begin(), VmRSS MB)
        self._halt = threading.Event()
        self._t0: float | None = None

    def begin(self) -> None:
        """The capture runs: start the VmRSS samples (peaks are watched from the spawn on)."""
        self._t0 = time.monotonic()

    def run(self) -> None:
        due = 0.0
        while not self._halt.is_set():
            for pid in tree(self.pid):
                status = proc_status(pid)
                name = status.get("Name", "?")
                if "VmHWM" in status and name not in ("taskset", "nice"):  # not yet exec'd
                    self.peaks[name] = max(self.peaks.get(name, 0.0), status["VmHWM"])
            t0 = self._t0
            if t0 is not None and time.monotonic() - t0 >= due:
                rss = proc_status(self.pid).get("VmRSS")
                if rss is not None:
                    self.samples.append((round(time.monotonic() - t0, 1), round(rss, 1)))
                due += self.every
            self._halt.wait(0.2)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def proc_status(pid: int) -> dict[str, Any]:
    """Name, VmRSS and VmHWM (MB) from /proc/PID/status; empty once the process is gone
    (a zombie has a name but no memory lines)."""
    out: dict[str, Any] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key == "Name":
                out[key] = value.strip()
            elif key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024 / MB
    return out


# -- contenders ----------------------------------------------------------------------------------
def analyzer_cmd(given: str | None) -> list[str]:
    """``--analyzer``, else this checkout's console script, else ``python -m analyzer``."""
    if given:
        return [given]
    script = REPO / ".venv" / "bin" / "oauth-analyzer"
    return [str(script)] if script.exists() else [project_python(), "-m", "analyzer"]


def contender_argv(engine: str, analyzer: str | None = None) -> list[str]:
    """The command of one contender; ``{out}`` stands for the file of its findings (tshark
    writes them on standard output)."""
    if engine == "dumpcap":
        capture = ["-i", IFACE, "-s", str(SNAPLEN), "-f", BPF, "-B", str(dumpcap_buffer_mb())]
        return ["dumpcap", *capture, "-n", "-w", os.devnull, "-q"]
    if engine in ("tshark", "tshark-nobody"):
        prefs = ["-o", "http.desegment_body:FALSE"] if engine == "tshark-nobody" else []
        fields = ["-T", "fields", "-e", "http.authorization"]
        return ["tshark", "-i", IFACE, "-f", BPF, *prefs, "-Y", "http.authorization", *fields]
    if engine in OURS:
        tail = ["live", "-i", IFACE, "--bpf", BPF, "--format", "jsonl", "-o", "{out}"]
        return [*analyzer_cmd(analyzer), *tail, "--engine", engine.removeprefix("live-")]
    raise ValueError(engine)


@functools.cache
def dumpcap_buffer_mb() -> int:
    """The kernel buffer (MiB) ``live``'s dumpcap engine asks for, so that the bare dumpcap
    row differs from it only in what reads the packets; dumpcap's default, 2, before it had one."""
    probe = "from analyzer.sources.live import BUFFER_MB; print(BUFFER_MB)"
    done = subprocess.run([project_python(), "-c", probe], capture_output=True, text=True, cwd=REPO)
    return int(done.stdout) if done.returncode == 0 and done.stdout.strip().isdigit() else 2


def tshark_fps(path: Path) -> Counter[str]:
    """cred_fp of every Authorization value tshark printed (values of one packet are joined
    with commas; base64 credentials hold none)."""
    fps: Counter[str] = Counter()
    for line in path.read_text(encoding="latin-1").splitlines():
        for value in filter(None, line.split(",")):
            cred = value.strip().partition(" ")[2]
            fps[hashlib.sha256(cred.encode("latin-1")).hexdigest()[:12]] += 1
    return fps


def count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def number(pattern: str, text: str) -> int | None:
    m = re.search(pattern, text)
    return int(m[1].replace(",", "")) if m else None


def parse_counts(engine: str, err: str) -> tuple[int | None, int | None]:
    """Packets received and dropped as the contender reports them on stderr (None: unknown).
    ``live`` states drops only when there were some."""
    if engine == "dumpcap":
        m = re.search(r"Packets received/dropped on interface '[^']*': (\d+)/(\d+)", err)
        return (int(m[1]), int(m[2])) if m else (None, None)
    if engine.startswith("tshark"):
        return None, number(r"(\d+) packets? dropped", err) or 0
    received = number(r"Read \d+ capture\(s\): ([\d,]+) packets", err)
    dropped = number(r"([\d,]+) packets dropped by the capture", err)
    return received, (dropped or 0) if received is not None else None


# -- one measurement -----------------------------------------------------------------------------
@dataclass(slots=True)
class Step:
    """One contender at one offered rate."""

    engine: str
    target_mbps: float
    seconds: float = 0.0  # the replay's duration
    sent: int = 0
    mbps: float = 0.0
    pps: float = 0.0
    received: int | None = None
    dropped: int | None = None
    backlog_drops: int = 0
    auth_sent: int = 0
    auth_seen: int | None = None
    missing: int | None = None
    extra: int | None = None
    events: int | None = None
    lag: float = 0.0
    cpu_s: float = 0.0  # user+sys from wait4, whole life
    core_pct: float = 0.0  # share of one core from the replay's start until idle
    others_pct: float = 0.0  # share of the capture core that other processes (and IRQs) took
    rss_mb: float = 0.0  # the largest program's peak VmHWM
    rss_peaks: dict[str, float] = field(default_factory=dict)  # per program
    ru_maxrss_mb: float = 0.0  # from wait4: includes this script's RSS at the exec
    exit: int = 0
    ok: bool = False
    notes: list[str] = field(default_factory=list)
    rss_samples: list[tuple[float, float]] = field(default_factory=list)

    @property
    def events_per_s(self) -> float | None:
        return self.events / self.seconds if self.events is not None and self.seconds else None


def measure(
    engine: str, work: Workload, mbps: float, tag: str, tmp: Path, args: argparse.Namespace
) -> Step:
    """Start the contender on the capture core, replay ``work`` at ``mbps`` on the other,
    wait until the contender is idle, stop it with SIGINT and judge what it reported."""
    out = tmp / f"{tag}.out"
    err_path = LOG_DIR / f"{tag}.err"
    out_path = out if engine.startswith("tshark") else LOG_DIR / f"{tag}.stdout"
    argv = [a.replace("{out}", str(out)) for a in contender_argv(engine, args.analyzer)]
    step = Step(engine, mbps, auth_sent=work.auth)
    if engine.startswith("tshark"):
        _tshark_logs.append(err_path)
    with open(err_path, "wb") as err, open(out_path, "wb") as stdout:
        proc = spawn(argv, args.cap_cpu, args.nice, stdout, err)
        watch = TreeWatch(proc.pid, args.sample)
        watch.start()
        try:
            wait_capturing(proc, err_path)
        except StartError as exc:
            kill_group(proc.pid)
            step.exit, _ = reap(proc, EXIT_LIMIT)
            watch.stop()
            step.notes.append(str(exc))
            return step
        watch.begin()
        backlog = softnet_drops()
        cpu0, busy0, t0 = cpu_seconds(tree(proc.pid)), core_busy(args.cap_cpu), time.monotonic()
        rep = replay(work, mbps, args.gen_cpu, args.nice, LOG_DIR / f"{tag}.tcpreplay")
        step.lag = wait_idle(proc.pid, args.drain_limit)
        cpu1, busy1, t1 = cpu_seconds(tree(proc.pid)), core_busy(args.cap_cpu), time.monotonic()
        step.backlog_drops = softnet_drops() - backlog
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGINT)
        try:
            step.exit, usage = reap(proc, EXIT_LIMIT)
        finally:
            watch.stop()
    step.rss_samples, step.rss_peaks = watch.samples, watch.peaks
    step.rss_mb = max(watch.peaks.values(), default=0.0)
    left = group_members(proc.pid)
    if left:
        step.notes.append(f"left {len(left)} process(es) running after it exited")
        kill_group(proc.pid)
    step.seconds, step.sent, step.mbps, step.pps = rep.seconds, rep.packets, rep.mbps, rep.pps
    step.cpu_s = usage.ru_utime + usage.ru_stime
    busy = rep.seconds + step.lag  # the traffic, then catching up
    step.core_pct = 100 * (cpu1 - cpu0) / busy if busy > 0 else 0.0
    step.others_pct = max(0.0, 100 * (busy1 - busy0 - (cpu1 - cpu0)) / max(t1 - t0, 1e-3))
    step.ru_maxrss_mb = usage.ru_maxrss * 1024 / MB
    said = err_path.read_text(errors="replace")
    if out_path != out:  # live prints its summary on stdout when the rows go to -o FILE
        said += out_path.read_text(errors="replace")
    judge(step, engine, said, out, work, rep, args.max_lag)
    out.unlink(missing_ok=True)
    return step


def judge(
    step: Step, engine: str, err: str, out: Path, work: Workload, rep: Replay, max_lag: float
) -> None:
    """Fill in counts and findings and decide whether the step passed."""
    step.received, step.dropped = parse_counts(engine, err)
    if engine.startswith("tshark"):
        got = tshark_fps(out) if out.exists() else Counter()
        step.events = sum(got.values())
    elif engine in OURS:
        got, _schemes, _no_fp = event_fps(out) if out.exists() else (Counter(), None, 0)
        step.events = count_lines(out)
    else:
        got = None
    if got is not None:
        step.auth_seen = sum(got.values())
        step.missing = sum((work.cred_fps - got).values())
        step.extra = sum((got - work.cred_fps).values())
    problems = []
    if step.exit not in (0, -signal.SIGINT):
        problems.append(f"exit {step.exit}")
    if rep.failed or rep.packets != work.packets:
        problems.append(f"tcpreplay sent {rep.packets} of {work.packets} ({rep.failed} failed)")
    if step.backlog_drops:
        problems.append(f"kernel backlog dropped {step.backlog_drops} before any capture")
    if step.dropped is None:
        problems.append("no drop count reported")
    elif step.dropped:
        problems.append(f"{step.dropped} dropped")
    if step.received is not None and step.received < rep.packets:
        problems.append(f"received {step.received} of {rep.packets}")
    if step.missing:
        problems.append(f"{step.missing} of {work.auth} auth headers missed")
    if step.lag > max_lag:
        problems.append(f"lagged {step.lag:.1f} s")
    step.notes += problems
    step.ok = not problems


# -- sweep and long run --------------------------------------------------------------------------
def step_gb(mbps: float, seconds: float, cap_gb: float) -> float:
    """Bytes (10^9) that take ``seconds`` to send at ``mbps``, at most ``cap_gb``."""
    return min(cap_gb, mbps * 1e6 * seconds / 8 / 1e9)


def sweep(args: argparse.Namespace, tmp: Path, steps: list[Step]) -> None:
    """Each rate in turn (one workload, made once), every contender that has not failed yet;
    appends to ``steps`` as it goes (an interrupted run still reports what it measured)."""
    failed: set[str] = set()
    for mbps in args.rates:
        engines = [e for e in args.engines if e not in failed or args.all_rates]
        if not engines:
            break
        gb = step_gb(mbps, args.seconds, args.step_gb_max)
        print(f"\n{mbps:g} Mbit/s: making {gb * 1000:.0f} MB of loopback traffic ...", flush=True)
        work = make_workload(tmp, f"r{mbps:g}", gb, args.seed, args.step_gb_max)
        print(f"  {work.packets:,} packets, {work.auth} Authorization headers", flush=True)
        for engine in engines:
            step = measure(engine, work, mbps, f"{engine}-{mbps:g}", tmp, args)
            steps.append(step)
            print("  " + row(step), flush=True)
            if not step.ok:
                failed.add(engine)
        for f in work.files:
            f.unlink(missing_ok=True)


def long_rate(args: argparse.Namespace, steps: list[Step]) -> float:
    """``--long-rate``, else half the best rate ``live --engine dumpcap`` sustained (100 when
    the sweep did not run it), at most what ``--long-gb-max`` of traffic allows."""
    if args.long_rate:
        return args.long_rate
    best = best_step(steps, "live-dumpcap")
    rate = best.target_mbps / 2 if best else 100.0
    return min(rate, args.long_gb_max * 8e9 / 1e6 / args.long)


def long_run(args: argparse.Namespace, tmp: Path, rate: float) -> Step:
    """``live --engine dumpcap`` for ``--long`` seconds at ``rate``, VmRSS sampled."""
    gb = rate * 1e6 * args.long / 8 / 1e9
    print(f"\nlong run: {args.long:g} s at {rate:g} Mbit/s, making {gb:.1f} GB ...", flush=True)
    work = make_workload(tmp, "long", gb, args.seed + 1000, args.step_gb_max)
    print(f"  {work.packets:,} packets, {work.auth} Authorization headers", flush=True)
    step = measure("live-dumpcap", work, rate, f"long-live-dumpcap-{rate:g}", tmp, args)
    for f in work.files:
        f.unlink(missing_ok=True)
    print("  " + row(step))
    print_rss(step.rss_samples)
    return step


def print_rss(samples: list[tuple[float, float]]) -> None:
    """First, middle and last VmRSS samples and the largest: is memory flat?"""
    if not samples:
        print("  no RSS samples")
        return
    picks = {"first": samples[0], "middle": samples[len(samples) // 2], "last": samples[-1]}
    shown = ", ".join(f"{k} {mb:.1f} MB at {t:.0f} s" for k, (t, mb) in picks.items())
    peak = max(samples, key=lambda s: s[1])
    print(f"  analyzer VmRSS, {len(samples)} samples: {shown}")
    growth = samples[-1][1] - samples[0][1]
    print(f"  max {peak[1]:.1f} MB at {peak[0]:.0f} s; last - first {growth:+.1f} MB")


# -- report --------------------------------------------------------------------------------------
HEADER = (
    f"{'contender':<14}{'offered':>8}{'Mbit/s':>9}{'kpps':>8}{'received':>11}{'dropped':>11}"
    f"{'auth':>13}{'events/s':>9}{'lag s':>7}{'CPU s':>7}{'core %':>7}{'other %':>8}"
    f"{'RSS MB':>8}  result"
)


def row(s: Step) -> str:
    """One table line for a step."""
    recv = f"{s.received:,}" if s.received is not None else "-"
    drop = f"{s.dropped:,}" if s.dropped is not None else "-"
    auth = f"{s.auth_seen}/{s.auth_sent}" if s.auth_seen is not None else "-"
    eps = f"{s.events_per_s:.0f}" if s.events_per_s is not None else "-"
    result = "ok" if s.ok else "FAIL: " + "; ".join(s.notes)
    if s.ok and s.notes:
        result += " (" + "; ".join(s.notes) + ")"
    return (
        f"{s.engine:<14}{s.target_mbps:>8g}{s.mbps:>9.1f}{s.pps / 1e3:>8.1f}{recv:>11} {drop:>10}"
        f"{auth:>13}{eps:>9}{s.lag:>7.1f}{s.cpu_s:>7.1f}{s.core_pct:>7.0f}{s.others_pct:>8.0f}"
        f"{s.rss_mb:>8.0f}  {result}"
    )


def best_step(steps: list[Step], engine: str) -> Step | None:
    """The passing step of ``engine`` with the highest offered rate."""
    good = [s for s in steps if s.engine == engine and s.ok]
    return max(good, key=lambda s: s.target_mbps) if good else None


def best_text(steps: list[Step], engine: str, rates: list[float]) -> tuple[str, float | None]:
    """How the best rate reads (``>=`` when the top rate passed, ``<`` when none did)."""
    best = best_step(steps, engine)
    ran = [s for s in steps if s.engine == engine]
    if not ran:
        return "not run", None
    if best is None:
        return f"< {min(s.target_mbps for s in ran):g} Mbit/s", None
    bound = ">= " if best.target_mbps == max(rates) else ""
    return f"{bound}{best.target_mbps:g} Mbit/s", best.target_mbps


def report(steps: list[Step], args: argparse.Namespace) -> dict[str, Any]:
    """Print the table, each contender's best sustained rate and the ratios; return them."""
    print("\n" + HEADER)
    for s in steps:
        print(row(s))
    shared = [s for s in steps if s.others_pct >= BUSY_WARN and not s.ok]
    if shared:  # idle time others fill is harmless; a failure while sharing the core is suspect
        print(
            f"warning: in {len(shared)} failed step(s) other processes took >= {BUSY_WARN:g} % "
            "of the capture core (column 'other %'): the contender may have failed for want of it"
        )
    print("\nhighest offered rate with no drop, no missed auth header and no lag:")
    best: dict[str, Any] = {}
    for engine in args.engines:
        text, rate = best_text(steps, engine, args.rates)
        b = best_step(steps, engine)
        line = f"  {engine:<14} {text}"
        if b is not None:
            eps = f", {b.events_per_s:.0f} events/s" if b.events_per_s is not None else ""
            line += (
                f": {b.pps:,.0f} packets/s, {b.mbps:.1f} Mbit/s{eps}, {b.core_pct:.0f} % of a "
                f"core, {b.cpu_s:.1f} CPU s, peak RSS {b.rss_mb:.0f} MB"
            )
        print(line)
        best[engine] = {"text": text, "mbps": rate, "step": asdict(b) if b else None}
    ratios = {}
    print()
    for ours in (e for e in OURS if e in args.engines):
        for base in ("dumpcap", "tshark", "tshark-nobody"):
            a, b = best[ours]["mbps"], best.get(base, {}).get("mbps")
            if a is None or b is None:
                continue
            ratios[f"{ours}/{base}"] = a / b
            top = max(args.rates)  # a contender that passed the top rate has a lower bound
            bound = {(True, False): ">= ", (False, True): "<= "}.get((a == top, b == top), "")
            if a == top and b == top:
                bound = "~ "  # both bounds: no ratio known
            print(f"  {ours} / {base}: {bound}{a / b:.2f}x the sustained rate")
        for base in ("dumpcap", "tshark", "tshark-nobody"):
            cpu = cpu_ratio(steps, ours, base)
            if cpu is not None:
                ratios[f"{ours}/{base} cpu"] = cpu[1]
                print(f"  {ours} / {base}: {cpu[1]:.1f}x the CPU at {cpu[0]:g} Mbit/s")
    return {"best": best, "ratios": ratios}


def cpu_ratio(steps: list[Step], a: str, b: str) -> tuple[float, float] | None:
    """(rate, core-share ratio) at the highest rate where both ``a`` and ``b`` passed."""
    ok = {(s.engine, s.target_mbps): s for s in steps if s.ok}
    common = [r for (e, r) in ok if e == a and (b, r) in ok]
    if not common:
        return None
    rate = max(common)
    base = ok[(b, rate)].core_pct
    return (rate, ok[(a, rate)].core_pct / base) if base > 0 else None


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "loadavg": os.getloadavg(),
        "tools": {t: tool_version(t) for t in ("tcpreplay", "dumpcap", "tshark")},
    }


def tool_version(tool: str) -> str | None:
    if not shutil.which(tool):
        return None
    done = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False)
    first = (done.stdout or done.stderr).splitlines()
    return first[0].strip() if first else None


# -- entry ---------------------------------------------------------------------------------------
def preflight(args: argparse.Namespace) -> None:
    """Refuse to start without root, the tools, two cores and ``lo``."""
    if os.geteuid() != 0:
        raise SystemExit("needs root: capturing and tcpreplay on lo open packet sockets")
    tools = ["taskset", "tcpreplay", "tcprewrite"]
    tools += ["dumpcap"] if set(args.engines) - {"live-scapy"} else []  # tshark's too
    tools += ["tshark"] if any(e.startswith("tshark") for e in args.engines) else []
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)} (apt-get install tcpreplay tshark)")
    if (os.cpu_count() or 1) < 2 or args.gen_cpu == args.cap_cpu:
        raise SystemExit("needs two cores: one for the generator, one for the capture")
    if not Path(f"/sys/class/net/{IFACE}").exists():
        raise SystemExit(f"no {IFACE} interface")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short sweep, no long run (smoke test)")
    ap.add_argument("--engines", help=f"comma list of {', '.join(ENGINES)} (default: all)")
    ap.add_argument("--rates", help="comma list of offered rates in Mbit/s, rising")
    ap.add_argument("--seconds", type=float, help="replay time of one step (10; --quick 3)")
    ap.add_argument("--long", type=float, help="long-run seconds (600; --quick 0; 0 skips)")
    ap.add_argument("--long-rate", type=float, help="long-run Mbit/s (half live-dumpcap's best)")
    ap.add_argument("--long-gb-max", type=float, default=20.0, help="long-run traffic cap, GB")
    ap.add_argument("--sample", type=float, default=5.0, help="RSS sampling interval, s")
    ap.add_argument("--max-lag", type=float, default=2.0, help="idle this soon after the replay")
    ap.add_argument("--drain-limit", type=float, default=120.0, help="give up waiting, s")
    ap.add_argument("--step-gb-max", type=float, default=2.0, help="largest capture file, GB")
    ap.add_argument("--all-rates", action="store_true", help="go on after a failed step")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--gen-cpu", type=int, default=0, help="core of tcpreplay")
    ap.add_argument("--cap-cpu", type=int, default=1, help="core of the capture")
    ap.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness of tcpreplay and the capture, e.g. -10 on a machine other work shares",
    )
    ap.add_argument("--keep", action="store_true", help="keep the generated captures")
    ap.add_argument("--analyzer", help="oauth-analyzer to run (default: this checkout's .venv)")
    args = ap.parse_args(argv)
    args.engines = args.engines.split(",") if args.engines else list(ENGINES)
    unknown = [e for e in args.engines if e not in ENGINES]
    if unknown:
        ap.error(f"unknown engine(s) {', '.join(unknown)}; choose from {', '.join(ENGINES)}")
    rates = args.rates.split(",") if args.rates else (QUICK_RATES if args.quick else RATES)
    args.rates = sorted(float(r) for r in rates)
    args.seconds = args.seconds or (3.0 if args.quick else 10.0)
    args.long = args.long if args.long is not None else (0.0 if args.quick else 600.0)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    preflight(args)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    compile_package()
    tmp = Path(tempfile.mkdtemp(prefix="live-", dir=OUT_DIR))
    started = datetime.datetime.now(datetime.timezone.utc)
    info = machine()
    print(f"{started:%Y-%m-%d %H:%M} UTC, {info['cpus']} CPUs, load {info['loadavg'][0]:.2f}")
    nice = f", nice {args.nice}" if args.nice else ""
    print(f"generator on core {args.gen_cpu}, captures on core {args.cap_cpu}{nice}; filter: {BPF}")
    previous = signal.signal(signal.SIGTERM, _interrupt)
    steps: list[Step] = []
    long_step = None
    interrupted = False
    try:
        sweep(args, tmp, steps)
        if args.long > 0:
            long_step = long_run(args, tmp, long_rate(args, steps))
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up; the steps measured so far follow", file=sys.stderr)
        interrupted = True
    finally:
        cleanup()
        signal.signal(signal.SIGTERM, previous)
        if args.keep:
            print(f"captures kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    summary = report(steps, args)
    if long_step is not None:
        print(f"\nlong run ({args.long:g} s):\n  " + row(long_step))
        print_rss(long_step.rss_samples)
    if steps or long_step:  # an early Ctrl-C leaves the last run's file alone
        write_json(started, info, args, steps, summary, long_step)
    return 130 if interrupted else 0


def write_json(
    started: datetime.datetime,
    info: dict[str, Any],
    args: argparse.Namespace,
    steps: list[Step],
    summary: dict[str, Any],
    long_step: Step | None,
) -> None:
    info["loadavg_end"] = os.getloadavg()
    record = {
        "date": started.isoformat(timespec="seconds"),
        "machine": info,
        "filter": BPF,
        "args": vars(args),
        "steps": [asdict(s) for s in steps],
        **summary,
        "long": asdict(long_step) if long_step else None,
    }
    RESULT_JSON.write_text(json.dumps(record, indent=1) + "\n")
    print(f"\nwrote {RESULT_JSON.relative_to(REPO)}")


def _interrupt(_signum: int, _frame: Any) -> None:
    """SIGTERM ends the run as Ctrl-C does: children killed, temporary files removed."""
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
