"""Wires the stages together: capture -> TCP reassembly -> HTTP exchanges -> auth events.

This is the one place that knows the whole chain; every stage it calls is sans-I/O except the
capture reader at the front.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator

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


class AnalysisResult:
    """Events in capture-time order, what each capture file looked like, and what follows.

    The token table, the pair verdicts and the findings are worked out on first use (then kept):
    an output of events alone, such as ``analyze --format jsonl``, never pays for them.
    """

    __slots__ = (
        "_derive_tokens",
        "_findings",
        "_tokens",
        "_verdicts",
        "captures",
        "events",
        "handshakes",
        "key_warnings",
        "keys",
    )

    def __init__(
        self,
        events: list[Event] | None = None,
        captures: list[CaptureStats] | None = None,
        tokens: list[TokenRecord] | None = None,
        handshakes: list[Handshake] | None = None,
        verdicts: list[PairVerdict] | None = None,
        findings: list[Finding] | None = None,
        keys: int = 0,
        key_warnings: list[str] | None = None,
        *,
        derive_tokens: Callable[[], list[TokenRecord]] | None = None,
    ) -> None:
        self.events = events if events is not None else []
        self.captures = captures if captures is not None else []
        self.handshakes = handshakes if handshakes is not None else []
        self.keys = keys  # signing keys available (captured documents and key files)
        self.key_warnings = key_warnings if key_warnings is not None else []
        self._tokens = tokens
        self._verdicts = verdicts
        self._findings = findings
        self._derive_tokens = derive_tokens  # makes the token table when it is first asked for

    @property
    def tokens(self) -> list[TokenRecord]:
        """One row per distinct token, in order of first appearance."""
        if self._tokens is None:
            self._tokens = self._derive_tokens() if self._derive_tokens is not None else []
        return self._tokens

    @property
    def verdicts(self) -> list[PairVerdict]:
        """One verdict per client -> server pair."""
        if self._verdicts is None:
            self._verdicts = pair_verdicts(self.events, self.handshakes)
        return self._verdicts

    @property
    def findings(self) -> list[Finding]:
        """What the rules found in the events, handshakes, tokens and verdicts."""
        if self._findings is None:
            context = Context(self.events, self.handshakes, self.tokens, self.verdicts)
            self._findings = run_rules(context)
        return self._findings


class EventCollector:
    """Turns finished exchanges into events (the consumer factory for the reassembler)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.stats = CaptureStats()  # the capture being read now

    def connection(self, info: ConnectionInfo) -> HttpConnection:
        self.stats.check_time(info.first_ts)
        return HttpConnection(
            info, self.exchange, request_body_policy, response_body_policy, self.closed,
            self.stats.warn,
        )  # fmt: skip

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
        self.stats.check_time(info.first_ts)
        return HttpConnection(
            info, self.tls_exchange, request_body_policy, response_body_policy, self.closed,
            self.stats.warn,
        )  # fmt: skip

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
    captures: list[CaptureStats] = []
    reassembler: TcpReassembler | None = None
    for path in paths:
        stats = CaptureStats(path=str(path))
        captures.append(stats)
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
    events, handshakes = group_handshakes(events, tokens.event_fields(events))
    return AnalysisResult(
        events,
        captures,
        handshakes=handshakes,
        keys=len(store),
        key_warnings=list(store.warnings),
        derive_tokens=lambda: tokens.records(reveal_secrets),
    )


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
