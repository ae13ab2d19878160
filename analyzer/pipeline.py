"""Wires the stages together: capture -> TCP reassembly -> HTTP exchanges -> auth events.

This is the one place that knows the whole chain; every stage it calls is sans-I/O except the
capture reader at the front.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from analyzer.analysis.findings import Context, run_rules
from analyzer.analysis.handshakes import group_handshakes, pair_verdicts
from analyzer.analysis.tokens import TokenAnalysis, load_keys
from analyzer.auth.extract import build_event, request_body_policy, response_body_policy
from analyzer.capture.pcapfile import read_packets
from analyzer.flows.tcp import ConnectionInfo, TcpReassembler
from analyzer.model import (
    CaptureStats,
    Event,
    Finding,
    Handshake,
    PairVerdict,
    TokenRecord,
    evolve,
)
from analyzer.protocols.http_exchange import Exchange, HttpConnection


def read_decrypted(path: str, keylog: str, stats: CaptureStats) -> Iterator[tuple]:
    """``analyzer.capture.tshark.read_decrypted``, imported on first use: only ``--tls-keylog``
    runs need tshark and the subprocess / socket / tempfile machinery it loads."""
    from analyzer.capture.tshark import read_decrypted as read

    return read(path, keylog, stats)


#: Called now and then with (path, bytes read so far in this file).
ProgressCallback = Callable[[str, int], None]


@dataclass(slots=True)
class AnalysisResult:
    """Events in capture-time order, plus what each capture file looked like."""

    events: list[Event] = field(default_factory=list)
    captures: list[CaptureStats] = field(default_factory=list)
    tokens: list[TokenRecord] = field(default_factory=list)
    handshakes: list[Handshake] = field(default_factory=list)
    verdicts: list[PairVerdict] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    keys: int = 0  # signing keys available (captured documents and key files)
    key_warnings: list[str] = field(default_factory=list)


class EventCollector:
    """Turns finished exchanges into events (the consumer factory for the reassembler)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.stats = CaptureStats()  # the capture being read now

    def connection(self, info: ConnectionInfo) -> HttpConnection:
        return HttpConnection(
            info, self.exchange, request_body_policy, response_body_policy, self.closed
        )

    def closed(self, conn: HttpConnection) -> None:
        if conn.is_http:
            self.stats.http_connections += 1
        elif conn.a_to_b.looks_tls or conn.b_to_a.looks_tls:
            self.stats.tls_connections += 1

    def exchange(self, exchange: Exchange) -> None:
        event = build_event(exchange, len(self.events) + 1)  # numbered as if already in order
        if event is not None:
            self.events.append(event)

    # -- TLS decrypted with keys (--tls-keylog) ----------------------------------------------
    def tls_connection(self, info: ConnectionInfo) -> HttpConnection:
        """``connection`` for plaintext decrypted from TLS: its events say transport "tls"."""
        return HttpConnection(
            info, self.tls_exchange, request_body_policy, response_body_policy, self.closed
        )

    def tls_exchange(self, exchange: Exchange) -> None:
        event = build_event(exchange, len(self.events) + 1)
        if event is not None:
            self.events.append(evolve(event, transport="tls"))

    def finished_events(self) -> list[Event]:
        """Events sorted by request time, numbered from 1.

        Exchanges mostly finish in request order, so most events already carry their final
        number; only the ones the sort moved are copied.
        """
        ordered = sorted(self.events, key=lambda e: (e.ts, e.conn_id, e.client_port))
        return [e if e.event_id == i else evolve(e, event_id=i) for i, e in enumerate(ordered, 1)]


def analyze_paths(
    paths: Iterable[str],
    *,
    key_files: Iterable[str] = (),
    reveal_secrets: bool = False,
    progress: ProgressCallback | None = None,
    tls_keylog: str | None = None,
) -> AnalysisResult:
    """Read every capture in ``paths`` (in order, as one stream of packets) and collect events,
    their decoded tokens, and the token table.

    ``key_files`` add signing keys (PEM/DER certificates, JWKS, metadata JSON) to those found in
    the captures. Raises ``CaptureError`` for a file that cannot be read as a capture and
    ``KeyFileError`` for an unusable key file.

    ``tls_keylog`` (a key log, or a PEM RSA private key) has tshark decrypt each file's TLS
    connections first; their plaintext is analysed as well (events with transport "tls") and their
    ciphertext skipped in the cleartext read. No tshark raises ``CaptureError``.
    """
    collector = EventCollector()
    result = AnalysisResult()
    reassembler: TcpReassembler | None = None
    for path in paths:
        stats = CaptureStats(path=str(path))
        result.captures.append(stats)
        if reassembler is None:
            reassembler = TcpReassembler(collector.connection, stats)
        reassembler.stats = stats
        collector.stats = stats
        _read_one(str(path), stats, reassembler, progress, collector, tls_keylog)
    if reassembler is not None:
        reassembler.flush()
    events = collector.finished_events()
    store = load_keys(events, key_files)
    tokens = TokenAnalysis(store)
    # token and handshake fields are set in one copy of each event
    result.events, result.handshakes = group_handshakes(events, tokens.event_fields(events))
    result.tokens = tokens.records(reveal_secrets)
    result.verdicts = pair_verdicts(result.events, result.handshakes)
    result.findings = run_rules(
        Context(result.events, result.handshakes, result.tokens, result.verdicts)
    )
    result.keys = len(store)
    result.key_warnings = list(store.warnings)
    return result


def _read_one(
    path: str,
    stats: CaptureStats,
    reassembler: TcpReassembler,
    progress: ProgressCallback | None,
    collector: EventCollector,
    tls_keylog: str | None,
) -> None:
    every = None
    if progress is not None:

        def every() -> None:
            progress(path, stats.bytes)

    decrypted = read_decrypted(path, tls_keylog, stats) if tls_keylog else None
    # read_packets raises CaptureError for a non-capture before tshark runs
    packets = read_packets(path, stats, reassembler, every)
    skip = _read_tls(decrypted, stats, collector) if decrypted is not None else set()
    for key in skip:
        reassembler.ignored[key] = math.inf  # ciphertext of a decrypted connection
    reassembler.run(packets)
    for key in skip:
        reassembler.ignored.pop(key, None)
    if progress is not None:
        progress(path, stats.bytes)


def _read_tls(packets: Iterable[tuple], stats: CaptureStats, collector: EventCollector) -> set:
    """Reassemble one file's decrypted TLS connections on their own; return their 4-tuples (both
    directions) so the cleartext read skips their ciphertext."""
    keys: set[tuple] = set()

    def noted() -> Iterable[tuple]:
        for p in packets:
            if p[8] & 0x02:  # the synthetic SYN / SYN-ACK that opens each connection
                keys.add((p[2], p[3], p[4], p[5]))
            yield p

    tls = TcpReassembler(collector.tls_connection, stats)
    tls.run(noted())
    tls.flush()
    return keys
