"""The commands that read a stream: ``analyze -`` (a capture on standard input) and ``live``.

Both run the engine (``analyzer.engine.Engine``) with ``on_event``: each event is written the
moment its exchange completes, and the summary, verdicts and findings come when the stream
ends. Ctrl-C ends a stream cleanly: for ``live`` it stops the capture, the packets already
captured are read to the end, the summary is printed and the exit status is 0 (or verify's);
a second Ctrl-C gives up at once.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from typing import IO, Any

from analyzer.analysis.scope import HostsSeen, ScopeError, make_scope
from analyzer.cli import (
    PROG,
    USAGE_VERIFY,
    _error,
    _reader_gone,
    _verification,
    _verify_rules,
    _write,
    os_error_text,
    scope_values,
)
from analyzer.engine import AnalysisResult, Engine
from analyzer.model import CaptureStats, Event
from analyzer.oauth.keys import KeyFileError, KeyStore
from analyzer.report import outputs
from analyzer.report.stream import EventRows, StatusLine
from analyzer.sources.pcapfile import CaptureError

STDIN_NAME = "stdin"


def analyze_stdin(args: argparse.Namespace) -> int:
    """``analyze -``: read pcap/pcapng from standard input as it arrives."""
    _vxlan_ports(args)
    if args.captures != ["-"]:
        _error("'-' reads standard input: give it alone, not with capture files")
        return 2
    if sys.stdin is None or sys.stdin.isatty():
        _error("'-' reads a capture from standard input, e.g. tcpdump -U -w - | oauth-analyzer "
               "analyze -")  # fmt: skip
        return 2
    try:
        for path in args.keys:
            KeyStore().add_file(path)
    except KeyFileError as exc:
        _error(str(exc))
        return 2
    listing = not (args.tokens or args.findings or args.format == "parquet")
    listing = listing and not (args.credentials or args.table not in (None, "events"))
    scoped = bool(scope_values(args) or args.scheme)
    with ExitStack() as stack:
        out = _output(stack, None if args.format == "parquet" else args.output)
        rows: Callable[[Event], None] = EventRows(
            args.format, out, reveal_secrets=args.reveal_secrets, status=None
        )
        if scoped:
            rows = _only_in_scope(args, rows, lambda: _first_packet(engine))
        engine = Engine(
            key_files=args.keys,
            reveal_secrets=args.reveal_secrets,
            on_event=rows if listing else _ignore,
        )
        read = _Counted()
        try:
            # a Ctrl-C in the terminal reaches the writer too (tcpdump -w - | ...), which then
            # flushes and closes the pipe: read what it still holds; a second one gives up
            with _stop_on_signals(_reading_to_the_end, term=False):
                engine.read_stream(_stdin(), STDIN_NAME, tee=read, tls_keylog=args.tls_keylog)
        except CaptureError as exc:
            _error(str(exc))
            return 2
        except KeyboardInterrupt:  # the rest of the stream is not read: a blind spot
            if engine.captures:
                why = "a second Ctrl-C gave up reading standard input"
                _given_up(engine.captures[-1], read.bytes, why)
        except BrokenPipeError:
            return _reader_gone()
        result = engine.finish()
        if scoped:
            from analyzer.analysis.subset import narrow

            result = narrow(result, make_scope(**scope_values(args), scheme=args.scheme))
        try:
            if listing:
                _summary(result, args.format, out)
            else:
                _finish_listing(result, args, out)
        except BrokenPipeError:
            return _reader_gone()
    return 0


def live(args: argparse.Namespace) -> int:
    """``live``: capture, print events as they complete, summarise (or verify) at the end."""
    from analyzer.sources.live import LiveError, open_live
    from analyzer.sources.ringfile import RingWriter, WriteError

    usage = USAGE_VERIFY if args.verify else 2
    _vxlan_ports(args)
    rules = _verify_rules(args) if args.verify else []
    if isinstance(rules, int):
        return rules
    if not args.verify and _verify_only(args):
        _error(f"{_verify_only(args)} is a rule option: it needs --verify")
        return 2
    if args.ring and not args.write:
        _error("--ring N:MB needs --write FILE.pcapng")
        return usage
    try:
        for path in args.keys:
            KeyStore().add_file(path)
        for path, flag in ((args.output, "-o"), (args.write, "--write")):
            if path is not None:
                outputs.check_file(path, flag)
        if args.tls_keylog and not os.access(args.tls_keylog, os.R_OK):
            raise FileNotFoundError(2, "no such TLS key log, or not readable", args.tls_keylog)
    except (KeyFileError, outputs.OutputError, OSError) as exc:
        _error(os_error_text(exc) if isinstance(exc, OSError) else str(exc))
        return usage
    from analyzer.analysis.verify import Watch

    # offsets (--since +30s) count from the first packet, as for rows and for verify FILE
    watch = Watch(rules, lambda: _first_packet(engine)) if args.verify else None
    interfaces = args.interface or ["any"]
    try:
        capture = open_live(interfaces, args.bpf, args.engine)
    except LiveError as exc:
        _error(str(exc))
        return usage
    with ExitStack() as stack:
        stack.callback(capture.close)
        out = _output(stack, args.output)
        status = StatusLine(sys.stderr) if sys.stderr.isatty() else None
        rows = EventRows(args.format, out, reveal_secrets=args.reveal_secrets, status=status)
        on_event: Callable[[Event], None] = rows
        if watch is None and (scope_values(args) or args.scheme):
            try:
                on_event = _only_in_scope(args, rows, lambda: _first_packet(engine))
            except ScopeError as exc:
                _error(str(exc))
                return usage
        if watch is not None:
            shout = _violations(watch, args.json, status)
            on_event = shout if args.output is None else _both(rows, shout)
        engine = Engine(key_files=args.keys, reveal_secrets=args.reveal_secrets, on_event=on_event)
        if watch is not None:  # what the summary lets go, the verdict still accounts for
            engine.collector.on_evict = watch.evicted
        ring = None
        if args.write:
            files, megabytes = args.ring or (None, None)
            try:
                ring = RingWriter(args.write, files, megabytes)
            except OSError as exc:
                _error(os_error_text(exc))
                return usage
            stack.callback(_close_quietly, ring)
        name = f"live:{','.join(interfaces)}"
        read = _Counted(ring.write if ring else None)
        progress = _live_progress(engine, capture, args.count, status)
        stream = stack.enter_context(os.fdopen(capture.fd, "rb", buffering=0, closefd=False))
        timer = threading.Timer(args.duration, capture.stop) if args.duration else None
        with _stop_on_signals(capture.stop):
            if timer is not None:
                timer.daemon = True
                timer.start()
            try:
                stats = engine.read_stream(
                    stream,
                    name,
                    tee=read,
                    progress=progress,
                    tls_keylog=args.tls_keylog,
                )
            except CaptureError as exc:
                _error(str(exc))
                return usage
            except WriteError as exc:  # --write: a full disk ends the run, with no verdict
                _error(f"{exc}: live stopped")
                return usage
            except KeyboardInterrupt:  # the second Ctrl-C: give up at once
                stats = engine.captures[-1] if engine.captures else CaptureStats(path=name)
                _given_up(
                    stats,
                    read.bytes,
                    "a second Ctrl-C gave up reading the capture; one Ctrl-C reads what was "
                    "captured to the end",
                )
            finally:
                if timer is not None:
                    timer.cancel()
                capture.stop()
        if status is not None:
            status.clear()
        if ring is not None:
            try:
                ring.close()  # its last bytes (a ring holds back an unfinished block)
            except WriteError as exc:
                _error(f"{exc}: live stopped")
                return usage
        # the engine's counts; its statistics blocks in the stream may have told the same drops
        stats.dropped = max(stats.dropped, sum(capture.drops().values()))
        if capture.error:  # what it had captured but not yet handed over is lost
            _given_up(stats, read.bytes, f"the capture ended by itself: {capture.error}")
        capture.close()
        stats.file_format = f"live ({capture.engine})"
        result = engine.finish()
        if watch is None:
            try:
                _summary(result, args.format if args.output is None else "table", _closing(args))
            except BrokenPipeError:
                return _reader_gone()
            return 0
        results = watch.verdicts(result.events, result.captures, result.not_inspected)
        return _verification(results, args)


# -- pieces ------------------------------------------------------------------------------------
def _vxlan_ports(args: argparse.Namespace) -> None:
    if getattr(args, "vxlan_port", None):
        from analyzer.sources.linklayer import set_vxlan_ports

        set_vxlan_ports(args.vxlan_port)


def _stdin() -> IO[bytes]:
    """Standard input as bytes; unbuffered when it is a real file descriptor, so the reader
    can tell when nothing has arrived (and read what tshark decrypted meanwhile)."""
    try:
        return os.fdopen(sys.stdin.fileno(), "rb", buffering=0, closefd=False)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return sys.stdin.buffer


def _ignore(_event: Event) -> None:
    """``analyze - --tokens`` (and --findings, parquet): nothing to print per event."""


def _output(stack: ExitStack, path: str | None) -> IO[str]:
    if path is None:
        return sys.stdout
    return stack.enter_context(open(path, "w", encoding="utf-8", newline=""))


def _closing(args: argparse.Namespace) -> IO[str]:
    """Where a live run's summary goes: standard output, unless the rows went there as JSON
    Lines or CSV (then standard error, so the rows stay one format)."""
    return sys.stderr if args.output is None and args.format != "table" else sys.stdout


def _summary(result: AnalysisResult, fmt: str, out: IO[str]) -> None:
    """The closing summary: after table rows on the same output, else on standard error."""
    from analyzer.report.table import write_summary

    target = out if fmt == "table" else sys.stderr
    if fmt == "table":
        target.write("\n")
    write_summary(
        result.events,
        result.captures,
        target,
        result.verdicts,
        result.findings,
        result.not_inspected,
    )
    target.flush()


def _finish_listing(result: AnalysisResult, args: argparse.Namespace, out: IO[str]) -> None:
    """``--tokens``, ``--findings`` and parquet of a stream: written once it has ended."""
    if args.format == "parquet":
        from analyzer.cli import write_parquet

        for path in write_parquet(result, args):
            print(path)
        return
    _write(result, args, out)
    out.flush()


def _close_quietly(ring: Any) -> None:
    """Close ``--write``'s file on the way out of a run an error already ended."""
    from analyzer.sources.ringfile import WriteError

    with suppress(WriteError):
        ring.close()


class _Counted:
    """A stream's ``tee``: counts the bytes read (where reading ended) and hands them on."""

    def __init__(self, then: Callable[[bytes], None] | None = None) -> None:
        self.bytes = 0
        self._then = then

    def __call__(self, chunk: bytes) -> None:
        self.bytes += len(chunk)
        if self._then is not None:
            self._then(chunk)


def _given_up(stats: CaptureStats, offset: int, why: str) -> None:
    """The stream was not read to its end after ``offset`` bytes (``why``): warned, and the
    rest - whatever it held, the packets read but not yet analysed, those captured but never
    written - is an unread-capture blind spot for every scope, so verify cannot PASS over it
    (unless --partial). A record cut short before it (``unread_from`` set) stays the first."""
    stats.warn(f"{stats.path}: {why}; the packets read before are analysed")
    stats.unread_after(offset, why)


def _violations(watch: Any, as_json: bool, status: StatusLine | None) -> Callable[[Event], None]:
    """Judge each event as it completes; print what breaks a rule at once, one inert line each
    (the captured host, URI and reasons with their control characters escaped)."""
    import json

    from analyzer.report.safe_text import json_cell, printable

    def judge(event: Event) -> None:
        for rule, violation in watch.event(event):
            if status is not None:
                status.clear()
            if as_json:
                line = json.dumps({"rule": rule.name, **violation.to_dict()}, ensure_ascii=False)
                line = json_cell(line)
            else:
                e = violation.event
                line = (
                    f"VIOLATION {rule.name}: {violation.kind}: {violation.reason} "
                    f"(event {e.event_id}, {e.client_ip}:{e.client_port} -> "
                    f"{e.host or e.server_ip} {e.method} {e.uri})"
                )
                line = printable(line)
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    return judge


def _only_in_scope(
    args: argparse.Namespace,
    rows: Callable[[Event], None],
    start: Callable[[], float | None] = lambda: None,
) -> Callable[[Event], None]:
    """Rows for the events in the scope options (``--scheme`` included: one parser,
    ``analysis.scope.make_scope``) only; raises ScopeError. Offsets (``--since +30s``) count
    from the first packet the engine read."""
    scope = make_scope(**scope_values(args), scheme=args.scheme)
    hosts = HostsSeen()
    anchored: list = []

    def row(event: Event) -> None:
        hosts.add(event)
        if not anchored:
            first = start()
            anchored.append(scope.anchored(first if first is not None else event.ts))
        if anchored[0].matches(event, hosts.addresses()):
            rows(event)

    return row


def _first_packet(engine: Engine) -> float | None:
    """The time of the first packet the engine read (offsets such as ``--since +30s``)."""
    return engine.captures[-1].first_ts if engine.captures else None


def _both(*handlers: Callable[[Event], None]) -> Callable[[Event], None]:
    def call(event: Event) -> None:
        for handler in handlers:
            handler(event)

    return call


def _live_progress(
    engine: Engine, capture: Any, count: int | None, status: StatusLine | None
) -> Callable[[CaptureStats], None]:
    """After each chunk read: stop at --count, repaint the status line."""

    def progress(stats: CaptureStats) -> None:
        if count is not None and stats.packets >= count:
            capture.stop()
        if status is not None:
            reassembler = engine._reassembler
            # dumpcap tells its drops only when it exits; scapy's kernel counters are live
            drops = sum(capture.drops().values()) if capture.engine != "dumpcap" else None
            status.show(
                packets=stats.packets,
                nbytes=stats.bytes,
                drops=drops,
                connections=reassembler.open_connections if reassembler else 0,
                events=engine.collector.completed,
            )

    return progress


@contextmanager
def _stop_on_signals(stop: Callable[[], None], term: bool = True) -> Iterator[None]:
    """SIGINT (and SIGTERM, with ``term``) stop the capture (its packets are then read to the
    end); a second SIGINT raises KeyboardInterrupt as usual."""
    hits = []

    def handler(signum: int, _frame: Any) -> None:
        hits.append(signum)
        if len(hits) > 1 and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop()

    old_int = signal.signal(signal.SIGINT, handler)
    old_term = signal.signal(signal.SIGTERM, handler) if term else None
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


def _reading_to_the_end() -> None:
    """``analyze -``'s first Ctrl-C: say that the input is read to its end."""
    sys.stderr.write(
        f"{PROG}: reading what standard input still holds to its end (Ctrl-C again gives up)\n"
    )


_VERIFY_ONLY = (
    ("issuer", "--issuer"),
    ("realm", "--realm"),
    ("protocol", "--protocol"),
    ("require_signature", "--require-signature"),
    ("allow", "--allow"),
    ("partial", "--partial"),
    ("details", "--details"),
    ("policy", "--policy"),
    ("json", "--json"),
)


def _verify_only(args: argparse.Namespace) -> str | None:
    """The first rule option given without --verify, if any."""
    return next((flag for name, flag in _VERIFY_ONLY if getattr(args, name)), None)


__all__ = ["PROG", "analyze_stdin", "live"]
