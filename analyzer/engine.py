"""Wires the stages together: capture -> TCP reassembly -> HTTP exchanges -> auth events.

This is the one place that knows the whole chain; every stage it calls is sans-I/O except the
capture reader at the front.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from analyzer.analysis.coverage import from_tls
from analyzer.analysis.findings import Context, run_rules
from analyzer.analysis.handshakes import group_handshakes, pair_verdicts
from analyzer.analysis.tokens import TokenAnalysis, load_keys
from analyzer.auth.extract import build_event, request_body_policy, response_body_policy
from analyzer.flows.tcp import ConnectionInfo, TcpReassembler
from analyzer.model import (
    CaptureStats,
    Event,
    Finding,
    Handshake,
    NotInspected,
    PairVerdict,
    TlsConnection,
    TokenRecord,
    evolve,
)
from analyzer.protocols.http_exchange import Exchange, HttpConnection
from analyzer.sources.pcapfile import read_packets

if TYPE_CHECKING:
    from analyzer.oauth.certificates import CertificateFacts
    from analyzer.oauth.keys import SigningKey


def read_decrypted(path: str, keylog: str, stats: CaptureStats) -> Iterator[tuple]:
    """``analyzer.sources.tshark.read_decrypted``, imported on first use: only ``--tls-keylog``
    runs need tshark and the subprocess / socket / tempfile machinery it loads."""
    from analyzer.sources.tshark import read_decrypted as read

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
        "_token_keys",
        "_tokens",
        "_verdicts",
        "captures",
        "events",
        "handshakes",
        "key_warnings",
        "keys",
        "not_inspected",
        "signing_keys",
        "tls",
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
        not_inspected: list[NotInspected] | None = None,
        tls: list[TlsConnection] | None = None,
        signing_keys: list[SigningKey] | None = None,
        *,
        derive_tokens: Callable[[], list[TokenRecord]] | None = None,
        token_keys: Callable[[], dict[str, SigningKey]] | None = None,
    ) -> None:
        self.events = events if events is not None else []
        self.captures = captures if captures is not None else []
        self.handshakes = handshakes if handshakes is not None else []
        self.keys = keys  # signing keys available (captured documents and key files)
        self.key_warnings = key_warnings if key_warnings is not None else []
        # what was seen but could not be read: undecrypted TLS, lost request bytes
        self.not_inspected = not_inspected if not_inspected is not None else []
        # every TLS connection, in capture-time order (inspected: decrypted with --tls-keylog)
        self.tls = tls if tls is not None else []
        # the signing keys themselves (thumbprint, subject, validity, where they came from)
        self.signing_keys = signing_keys if signing_keys is not None else []
        self._token_keys = token_keys  # token fingerprint -> verifying key, once tokens are known
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
            tokens = self.tokens  # verifies every token: token_keys is complete after it
            context = Context(
                self.events,
                self.handshakes,
                tokens,
                self.verdicts,
                tls=self.tls,
                keys=self.signing_keys,
                token_keys=self._token_keys() if self._token_keys is not None else {},
            )
            self._findings = run_rules(context)
        return self._findings


class EventCollector:
    """Turns finished exchanges into events (the consumer factory for the reassembler)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.not_inspected: list[NotInspected] = []
        self.tls: list[TlsConnection] = []
        self.stats = CaptureStats()  # the capture being read now
        # 4-tuples (text addresses, both directions) of the connections a key log decrypted:
        # their TLS records say inspected
        self.decrypted: set[tuple[str, int, str, int]] = set()
        self._certificates: dict[bytes, CertificateFacts | None] = {}  # DER -> facts

    def connection(self, info: ConnectionInfo) -> HttpConnection:
        self.stats.check_time(info.first_ts)
        return HttpConnection(
            info, self.exchange, request_body_policy, response_body_policy, self.closed,
            self.stats.warn,
        )  # fmt: skip

    def closed(self, conn: HttpConnection) -> None:
        """Count the connection, and remember it when part of it could not be read."""
        if conn.is_http:
            self.stats.http_connections += 1
        elif conn.tls is not None:
            record = self._tls_record(conn)
            self.tls.append(record)
            if not record.inspected:
                self.stats.tls_connections += 1
                self.not_inspected.append(from_tls(record))
            return  # its bytes were TLS records, not requests
        elif conn.a_to_b.looks_tls or conn.b_to_a.looks_tls:
            self.stats.tls_connections += 1
            self.not_inspected.append(_not_inspected("tls", conn, 1, "TLS, not decrypted"))
        elif conn.a_to_b.http2 or conn.b_to_a.http2:
            detail = "HTTP/2 (cleartext, prior knowledge): not read yet"
            self.not_inspected.append(_not_inspected("http2", conn, 1, detail))
        lost = conn.requests_lost
        if lost:
            detail = f"{lost} stretch(es) of request bytes lost: credentials unknown"
            self.not_inspected.append(_not_inspected("request-lost", conn, lost, detail))

    def _tls_record(self, conn: HttpConnection) -> TlsConnection:
        info = conn.info
        assert conn.tls is not None
        der = conn.tls.server_certificate(info.a_port, info.b_port, info.syn_seen)
        facts = None
        if der is not None:
            if der not in self._certificates:
                from analyzer.oauth.certificates import certificate_facts

                self._certificates[der] = certificate_facts(der)
            facts = self._certificates[der]
        return conn.tls.record(
            conn.conn_id,
            info.first_ts,
            (info.a_ip, info.a_port),
            (info.b_ip, info.b_port),
            info.syn_seen,
            inspected=(info.a_ip, info.a_port, info.b_ip, info.b_port) in self.decrypted,
            certificate=facts,
        )

    def finished_tls(self) -> list[TlsConnection]:
        """TLS connections in capture-time order."""
        return sorted(self.tls, key=lambda t: (t.ts, t.conn_id))

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


def _not_inspected(kind: str, conn: HttpConnection, count: int, detail: str) -> NotInspected:
    info = conn.info
    a = (info.a_ip, info.a_port)
    b = (info.b_ip, info.b_port)
    client, server = (b, a) if conn.client_is_a is False else (a, b)
    return NotInspected(
        kind=kind,
        conn_id=conn.conn_id,
        ts=info.first_ts,
        client_ip=client[0],
        client_port=client[1],
        server_ip=server[0],
        server_port=server[1],
        host=conn.host,
        count=count,
        detail=detail,
    )


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
    tls = collector.finished_tls()
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
        not_inspected=sorted(collector.not_inspected, key=lambda n: (n.ts, n.conn_id, n.kind)),
        tls=tls,
        signing_keys=list(store),
        derive_tokens=lambda: tokens.records(reveal_secrets),
        token_keys=tokens.verifying_keys,
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
    keys = _read_tls(decrypted, stats, collector) if decrypted is not None else set()
    # The ciphertext of a decrypted connection is read too, for its handshake (TLS record,
    # inspected); its bytes past the handshake are skipped like any other TLS connection's.
    collector.decrypted |= {(_ip(k[0]), k[1], _ip(k[2]), k[3]) for k in keys}
    reassembler.run(packets)
    if progress is not None:
        progress(path, stats.bytes)


def _read_tls(packets: Iterable[tuple], stats: CaptureStats, collector: EventCollector) -> set:
    """Reassemble one file's decrypted TLS connections on their own; return their 4-tuples (both
    directions) so the cleartext read marks their TLS records inspected."""
    keys: set[tuple] = set()

    def noted() -> Iterable[tuple]:
        for p in packets:
            if p[8] & 0x02:  # the synthetic SYN / SYN-ACK that opens each connection
                keys.add((p[2], p[3], p[4], p[5]))
            yield p

    tls = TcpReassembler(collector.tls_connection, stats)
    counted = stats.tcp_connections
    tls.run(noted())
    tls.flush()
    stats.tcp_connections = counted  # the cleartext read counts these connections
    return keys


def _ip(packed: bytes) -> str:
    return str(ipaddress.ip_address(bytes(packed)))
