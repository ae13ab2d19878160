"""Wires the stages together: capture -> TCP reassembly (and UDP flows) -> HTTP and SIP
exchanges -> auth events.

This is the one place that knows the whole chain; every stage it calls is sans-I/O except the
capture reader at the front.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, BinaryIO

from analyzer.analysis.coverage import from_tls
from analyzer.analysis.findings import Context, run_rules
from analyzer.analysis.handshakes import (
    HandshakeTracker,
    group_handshakes,
    keep_handshake_ids,
    pair_verdicts,
)
from analyzer.analysis.tokens import TokenAnalysis, load_keys
from analyzer.auth.connection_auth import ConnectionAuth
from analyzer.auth.extract import build_event, request_body_policy, response_body_policy
from analyzer.auth.sip_events import build_sip_event
from analyzer.flows.tcp import Connection, ConnectionInfo, TcpReassembler
from analyzer.flows.udp import UdpFlows, UnreadTunnel, tunnel_inside
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
    request_url,
)
from analyzer.protocols.dispatch import MAX_HELD, FirstBytes
from analyzer.protocols.http_exchange import Exchange, HttpConnection
from analyzer.protocols.sip import looks_like_sip, sip_start_after
from analyzer.protocols.sip_exchange import SipConnection, SipDatagrams, SipExchange
from analyzer.protocols.tls import looks_like_record
from analyzer.sources.archive import Archived, connection_id
from analyzer.sources.kinds import input_kind
from analyzer.sources.linklayer import GENEVE_PORT, VXLAN_GPE_PORT
from analyzer.sources.pcapfile import read_packets, read_stream
from analyzer.words import plural

if TYPE_CHECKING:
    from analyzer.oauth.certificates import CertificateFacts
    from analyzer.oauth.keys import KeyStore, SigningKey
    from analyzer.sources.tshark import FieldDecoder


def read_decrypted(
    path: str, keylog: str, stats: CaptureStats, first_frame: int = 1
) -> tuple[Iterator[tuple], FieldDecoder]:
    """``analyzer.sources.tshark.read_decrypted``, imported on first use: only ``--tls-keylog``
    runs need tshark and the subprocess / socket / tempfile machinery it loads. Also returns
    the decoder of tshark's output: which connections it decrypted, and the holes it found."""
    from analyzer.sources.tshark import FieldDecoder
    from analyzer.sources.tshark import read_decrypted as read

    decoder = FieldDecoder(first_frame)
    return read(path, keylog, stats, first_frame, decoder), decoder


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
        "inputs",
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
        inputs: dict[str, str] | None = None,
    ) -> None:
        self.events = events if events is not None else []
        # connection id -> the input its first record was read from (the partitioned Parquet
        # dataset's ``input``)
        self.inputs = inputs if inputs is not None else {}
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
    """Turns finished exchanges into events (the consumer factory for the reassembler).

    Events are numbered as their exchanges complete. ``sink``, when set, sees each event at
    that moment (a stream's view); otherwise events are only kept, for the end.
    """

    def __init__(
        self, sink: Callable[[Event], Event] | None = None, keep: int | None = None
    ) -> None:
        self.events: list[Event] = []
        self.keep = keep  # at most this many events, TLS and not-inspected records are kept
        self.dropped = 0  # records let go to stay within ``keep``
        # told each batch of records let go (``live --verify``'s judge: ``verify.Watch``)
        self.on_evict: Callable[[list], None] | None = None
        self.not_inspected: list[NotInspected] = []
        self.tls: list[TlsConnection] = []
        self.stats = CaptureStats()  # the capture being read now
        self.source: str | None = None  # its input kind (None: pcap or pcapng, as read)
        self.sink = sink
        self.completed = 0  # events numbered so far
        self.on_close: Callable[[str], None] | None = None  # told each closed connection's id
        # the connections a key log decrypted, by endpoints (text addresses, the lower first:
        # ``tshark.endpoints``) -> the capture time of each one's first packet: their TLS
        # records say inspected. By connection, not address pair: a port reused later for a
        # connection the key log does not decrypt is another connection, not inspected.
        self.decrypted: dict[tuple[str, int, str, int], list[float | None]] = {}
        # when a decrypting pass broke off (``FieldDecoder.cutoff``): a decrypted connection
        # with packets after one of these times was not read whole
        self.cutoffs: list[float] = []
        # conn id -> capture time of the last packet of each TLS connection, checked against
        # the cutoffs when the decryption has ended (``recheck_decrypted``)
        self._tls_last: dict[str, float] = {}
        # connection id -> the input (path or URL) its first record was read from
        self.inputs: dict[str, str] = {}
        self._certificates: dict[bytes, CertificateFacts | None] = {}  # DER -> facts
        self._callbacks: dict[tuple[str, str | None], Callable[[Exchange], None]] = {}
        # the logons that cover later requests on their connections: in the clear, and in TLS
        # decrypted with keys (read on a reassembler of its own, whose connections share ids)
        self.connection_auth = ConnectionAuth()
        self.tls_connection_auth = ConnectionAuth()
        # (client, server, port) of the QUIC flows seen, each a blind spot once (``_quic``)
        self._quic_seen: set[tuple[str, str, int]] = set()
        # (tunnel, outer addresses, port, inner addresses) of the unread tunnels' address
        # pairs recorded (``_tunnel_pair``)
        self._tunnels_seen: set[tuple] = set()

    def connection(self, info: ConnectionInfo) -> HttpConnection:
        self.stats.check_time(info.first_ts)
        on_exchange = self._callback(self.exchange, self.input_kind())
        return HttpConnection(
            info, on_exchange, request_body_policy, response_body_policy, self.closed,
            self.stats.warn,
        )  # fmt: skip

    def input_kind(self) -> str:
        """The ``source`` of the events read now: as set, else the capture's format (a
        connection's events keep the kind of the input it began in)."""
        if self.source is not None:
            return self.source
        return "pcapng" if self.stats.file_format.startswith("pcapng") else "pcap"

    def closed(self, conn: HttpConnection, auth: ConnectionAuth | None = None) -> None:
        """Count the connection, and remember it when part of it could not be read."""
        if self.on_close is not None:
            self.on_close(conn.conn_id)
        self._note_input(conn.conn_id)
        unseen = (auth or self.connection_auth).closed(conn.conn_id)
        if unseen is not None:
            self.not_inspected.append(unseen)
        if conn.is_http:
            self.stats.http_connections += 1
        elif conn.tls is not None:
            record = self._tls_record(conn)
            self.tls.append(record)
            if not record.inspected:
                self.stats.tls_connections += 1
                self.not_inspected.append(from_tls(record))
            # whether tshark decrypted it whole is known when its pass ends (a stream's may end
            # after this): ``recheck_decrypted``
            self._tls_last[record.conn_id] = conn.last_ts
            self._bound()
            return  # its bytes were TLS records, not requests
        elif conn.a_to_b.looks_tls or conn.b_to_a.looks_tls:
            self.stats.tls_connections += 1
            self.not_inspected.append(_not_inspected("tls", conn, 1, "TLS, not decrypted"))
        elif _not_http(conn):
            detail = "bytes that are not HTTP on an HTTP port: what they carried is unknown"
            self.not_inspected.append(_not_inspected("not-http", conn, 1, detail))
        unread = conn.h2.blind_spot() if conn.h2 is not None else None
        if unread is not None:  # HTTP/2 streams whose headers could not be decoded
            spot = _not_inspected("http2", conn, *unread)
            if conn.h2 is not None and conn.h2.host_in_doubt:  # for whichever host it named
                spot = replace(spot, host=None)
            self.not_inspected.append(spot)
        lost = conn.requests_lost
        if lost:
            detail = f"{lost} stretch(es) of request bytes lost: credentials unknown"
            self.not_inspected.append(_not_inspected("request-lost", conn, lost, detail))
        doubt = conn.answers_in_doubt
        if doubt:
            detail = (
                f"{doubt} stretch(es) of the server's bytes retransmitted with other contents: "
                "which answer the client read is unknown"
            )
            self.not_inspected.append(_not_inspected("answer-in-doubt", conn, doubt, detail))
        self._bound()

    def _note_input(self, conn_id: str) -> None:
        """Remember the input a connection's first record came from (not in a stream, whose
        memory stays bounded: its records are not written as a partitioned dataset)."""
        if self.keep is None and conn_id not in self.inputs:
            self.inputs[conn_id] = self.stats.path

    def _bound(self) -> None:
        if self.keep is not None:
            for records in (self.tls, self.not_inspected):
                if len(records) > self.keep:
                    self._trim(records)
            if len(self._tls_last) > 2 * self.keep:
                kept = {t.conn_id for t in self.tls}
                self._tls_last = {c: ts for c, ts in self._tls_last.items() if c in kept}

    def _cut(self, first_ts: float, last_ts: float) -> bool:
        """Did a decrypting pass break off while this connection went on (``cutoffs``)?"""
        return any(first_ts <= cut < last_ts for cut in self.cutoffs)

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
            inspected=self.was_decrypted(
                info.a_ip, info.a_port, info.b_ip, info.b_port, info.first_ts
            ),
            certificate=facts,
        )

    def note_decrypted(self, decoder: FieldDecoder) -> None:
        """Take the connections ``decoder`` saw yield plaintext since last asked."""
        from analyzer.sources.tshark import endpoints

        while decoder.opened:
            c_ip, c_port, s_ip, s_port, start = decoder.opened.popleft()
            key = endpoints(_ip(c_ip), c_port, _ip(s_ip), s_port)
            self.decrypted.setdefault(key, []).append(start)
        cut = decoder.cutoff
        if cut is not None and cut not in self.cutoffs:
            self.cutoffs.append(cut)

    def was_decrypted(self, a_ip: str, a_port: int, b_ip: str, b_port: int, ts: float) -> bool:
        """Did a key log decrypt the connection between these endpoints whose first packet was
        captured at ``ts``? (Not just any connection on the same address pair.)"""
        if not self.decrypted:
            return False
        from analyzer.sources.tshark import endpoints, same_start

        starts = self.decrypted.get(endpoints(a_ip, a_port, b_ip, b_port), ())
        return any(same_start(start, ts) for start in starts)

    def recheck_decrypted(self) -> None:
        """A stream decrypts alongside the cleartext read: a TLS connection that ended before
        its plaintext came back from tshark was recorded as not inspected: correct those. And
        one that went on after the decryption broke off (``cutoffs``, known only when tshark
        ended) was not read whole: a blind spot."""
        last_ts, self._tls_last = self._tls_last, {}
        if not self.decrypted:
            return
        fixed = set()
        for i, t in enumerate(self.tls):
            ends = (t.client_ip, t.client_port, t.server_ip, t.server_port)
            if not t.inspected and self.was_decrypted(*ends, t.ts):
                self.tls[i] = evolve(t, inspected=True)
                fixed.add(t.conn_id)
        if fixed:
            self.not_inspected = [
                n for n in self.not_inspected if not (n.kind == "tls" and n.conn_id in fixed)
            ]
            self.stats.tls_connections = max(0, self.stats.tls_connections - len(fixed))
        for t in self.tls:
            last = last_ts.get(t.conn_id)
            if t.inspected and last is not None and self._cut(t.ts, last):
                self.not_inspected.append(_cut_short(t))

    def finished_tls(self) -> list[TlsConnection]:
        """TLS connections in capture-time order."""
        return sorted(self.tls, key=lambda t: (t.ts, t.conn_id))

    def _callback(
        self, method: Callable[..., None], source: str | None
    ) -> Callable[[Exchange], None]:
        """``method`` with ``source`` bound, made once per input kind and shared by every
        connection (a partial each would cost 300 bytes per open connection)."""
        key = (method.__name__, source)
        callback = self._callbacks.get(key)
        if callback is None:
            callback = self._callbacks[key] = partial(method, source=source)
        return callback

    def exchange(self, exchange: Exchange, source: str | None = None) -> None:
        """Make the event of a finished exchange (if it carries auth material, or its
        connection's logon authenticated it)."""
        event_id = self.completed + 1
        event = self.connection_auth.event(exchange, build_event(exchange, event_id), event_id)
        self._add(event, source or self.input_kind())

    # -- TLS decrypted with keys (--tls-keylog) ----------------------------------------------
    def tls_connection(self, info: ConnectionInfo) -> HttpConnection:
        """``connection`` for plaintext decrypted from TLS: its events say transport "tls"."""
        self.stats.check_time(info.first_ts)
        on_exchange = self._callback(self.tls_exchange, self.input_kind())
        return HttpConnection(
            info, on_exchange, request_body_policy, response_body_policy, self.tls_closed,
            self.stats.warn,
        )  # fmt: skip

    def tls_closed(self, conn: HttpConnection) -> None:
        self.closed(conn, self.tls_connection_auth)

    def tls_exchange(self, exchange: Exchange, source: str | None = None) -> None:
        event_id = self.completed + 1
        event = build_event(exchange, event_id)
        event = self.tls_connection_auth.event(exchange, event, event_id)
        source = source or self.input_kind()
        self._add(
            evolve(event, transport="tls", source=source) if event is not None else None, source
        )

    def _add(self, event: Event | None, source: str) -> None:
        if event is None:
            return
        if event.source != source:
            event = evolve(event, source=source)
        self._note_input(event.conn_id)
        self.completed += 1
        if self.sink is not None:
            event = self.sink(event)
        self.events.append(event)
        if self.keep is not None and len(self.events) > self.keep:
            self._trim(self.events)

    def _trim(self, records: list) -> None:
        """Let the oldest tenth of ``records`` go (a stream's memory stays bounded); ``on_evict``
        hears which, so a verdict over the stream can account for what the summary lost."""
        assert self.keep is not None
        n = max(1, self.keep // 10)
        gone = records[:n]
        del records[:n]
        self.dropped += n
        if self.on_evict is not None:
            self.on_evict(gone)

    def finished_events(self) -> list[Event]:
        """Events sorted by request time, numbered from 1."""
        return numbered(self.events)

    # -- SIP ---------------------------------------------------------------------------------
    def any_connection(self, info: ConnectionInfo) -> Connection:
        """The reassembler's factory: ``connection`` (HTTP), or SIP where the first bytes say
        so (``sip_or``)."""
        return self.sip_or(info, self.connection, decrypted=False)

    def any_tls_connection(self, info: ConnectionInfo) -> Connection:
        """``any_connection`` for plaintext decrypted from TLS (SIP on 5061, or on 443 through a
        Skype for Business Edge)."""
        return self.sip_or(info, self.tls_connection, decrypted=True)

    def sip_or(
        self,
        info: ConnectionInfo,
        http: Callable[[ConnectionInfo], HttpConnection],
        *,
        decrypted: bool,
    ) -> Connection:
        """A connection read as SIP when its first bytes are a SIP start line, else by ``http``.

        Cleartext on the HTTP ports goes straight to ``http``, at no cost to bulk HTTP (bytes
        that are not HTTP there, SIP among them, are a blind spot: ``_not_http``); on any other
        port, and in decrypted TLS, the first bytes decide (SIP on 5090 or in the clear on
        443; SIP through a Skype for Business Edge on 443). On a SIP port, a connection caught
        mid-stream is SIP unless its bytes are HTTP or TLS records (``_http_or_tls``).
        """
        sip_port = info.a_port in SIP_PORTS or info.b_port in SIP_PORTS
        if not (decrypted or sip_port) and (info.a_port in HTTP_PORTS or info.b_port in HTTP_PORTS):
            return http(info)
        midstream = not info.syn_seen
        midstream_sip = sip_port and midstream

        def choose(first: bytes) -> Connection | None:
            sip = looks_like_sip(first)
            if sip is None or (not sip and len(first) < 5 and _tls_prefix(first)):
                return None  # too few bytes to tell (a TLS record header cut short)
            if sip or (midstream_sip and not _http_or_tls(first)):
                return self.sip_connection(info, decrypted)
            if midstream and not _http_or_tls(first):
                # caught mid-stream off the SIP ports: the tail of a message, then perhaps the
                # start of a SIP one (a long-lived SIP connection on 5090, say)
                if sip_start_after(first):
                    return self.sip_connection(info, decrypted)
                if len(first) < MIDSTREAM_LOOK:
                    return None
            return http(info)

        held = MIDSTREAM_LOOK if midstream else MAX_HELD
        return FirstBytes(choose, lambda: http(info), held)

    def sip_connection(self, info: ConnectionInfo, decrypted: bool) -> SipConnection:
        self.stats.check_time(info.first_ts)
        on_exchange = self.tls_sip_exchange if decrypted else self.sip_exchange
        return SipConnection(info, on_exchange, self.sip_closed)

    def sip_flow(
        self, info: ConnectionInfo, first: memoryview | bytes
    ) -> SipDatagrams | UnreadTunnel | None:
        """The UDP flows' factory: a flow whose first datagram is a SIP message, or a tunnel on
        a port not read as one (``_unread_tunnel``)."""
        if not looks_like_sip(first):
            inner = tunnel_inside(first)
            if inner is not None:
                return self._unread_tunnel(info, inner[0])
            self._quic(info, first)
            return None
        self.stats.check_time(info.first_ts)
        return SipDatagrams(info, self.sip_exchange)

    def _unread_tunnel(self, info: ConnectionInfo, name: str) -> UnreadTunnel:
        """A UDP flow whose first datagram is VXLAN or GENEVE on a port the decoder does not
        read as one: warn with what to do, and make each inner address pair it carries a blind
        spot (``_tunnel_pair``), so a verdict on those addresses is not a false PASS."""
        self.stats.check_time(info.first_ts)
        port = info.b_port  # both directions go to the tunnel's port
        warning = f"UDP port {port} between {info.a_ip} and {info.b_ip} looks like {name}: "
        warning += _tunnel_advice(name, port)
        if warning not in self.stats.warnings:
            self.stats.warn(warning)
        return UnreadTunnel(info, self._tunnel_pair)

    def _tunnel_pair(
        self, info: ConnectionInfo, inner: tuple[str, bytes, bytes], ts: float
    ) -> None:
        """Record an inner address pair of an unread tunnel flow once (lower address first,
        ports 0: either may be the client, on any port, as ``ipsec-esp``); past
        ``MAX_TUNNEL_PAIRS``, one record without addresses, which covers every scope."""
        name, src, dst = inner
        low, high = sorted((src, dst))
        outer = tuple(sorted((info.a_ip, info.b_ip)))
        key = (name, *outer, info.b_port, low, high)
        if key in self._tunnels_seen:
            return
        if len(self._tunnels_seen) >= MAX_TUNNEL_PAIRS:
            low = high = b""
            key = (name, "", "", 0, low, high)
            if key in self._tunnels_seen:
                return
        self._tunnels_seen.add(key)
        low_ip, high_ip = (_ip(low), _ip(high)) if low else ("", "")
        carried = f"between {low_ip} and {high_ip}" if low else "between other address pairs"
        port = info.b_port
        detail = (
            f"{name} in UDP port {port} between {outer[0]} and {outer[1]}, not read as {name} "
            f"({_tunnel_advice(name, port)}): what it carried {carried} is unknown"
        )
        conn_id = connection_id("unread-tunnel", info.conn_id, low_ip, high_ip)
        record = NotInspected("unread-tunnel", conn_id, ts, low_ip, 0, high_ip, 0, detail=detail)
        self.not_inspected.append(record)
        self._bound()

    def _quic(self, info: ConnectionInfo, first: memoryview | bytes) -> None:
        """QUIC on UDP 443 (HTTP/3): encrypted HTTP, a blind spot per client and server, as
        undecrypted TLS is (no key log applies: tshark is not asked to read QUIC)."""
        if info.b_port in QUIC_PORTS:
            client, server, port = info.a_ip, info.b_ip, info.b_port
        elif info.a_port in QUIC_PORTS:
            client, server, port = info.b_ip, info.a_ip, info.a_port
        else:
            return
        if not first or not first[0] & 0x40:  # QUIC's fixed bit (RFC 9000 17.2, 17.3)
            return
        key = (client, server, port)
        if key in self._quic_seen or len(self._quic_seen) >= MAX_QUIC_FLOWS:
            return
        self._quic_seen.add(key)
        detail = "QUIC (HTTP/3): encrypted, not read"
        record = NotInspected("quic", info.conn_id, info.first_ts, client, 0, server, port)
        self.not_inspected.append(evolve(record, detail=detail))
        self._bound()

    def sip_exchange(self, exchange: SipExchange) -> None:
        self._add(build_sip_event(exchange, self.completed + 1), self.input_kind())

    def tls_sip_exchange(self, exchange: SipExchange) -> None:
        event = build_sip_event(exchange, self.completed + 1)
        source = self.input_kind()
        self._add(evolve(event, transport="tls") if event is not None else None, source)

    def sip_closed(self, conn: SipConnection) -> None:
        """A SIP connection ended: remember the stretches of its bytes that were lost (to a
        hole, before the first start line of a mid-stream start, in a head that is not SIP, or
        retransmitted with other contents)."""
        if self.on_close is not None:
            self.on_close(conn.conn_id)
        self._note_input(conn.conn_id)
        lost = conn.requests_lost
        if lost:
            detail = f"{lost} stretch(es) of SIP bytes lost or in doubt: credentials unknown"
            record = _not_inspected("request-lost", conn, lost, detail)
            self.not_inspected.append(evolve(record, protocol="sip"))
            self._bound()


#: UDP ports on which QUIC is HTTP/3 (a blind spot: ``EventCollector._quic``).
QUIC_PORTS = frozenset({443})
#: Client and server pairs whose QUIC is recorded, at most.
MAX_QUIC_FLOWS = 10_000
#: Inner address pairs of tunnels on unread ports recorded one by one, at most; past it, one
#: record without addresses stands for the rest.
MAX_TUNNEL_PAIRS = 10_000

#: Bytes of a connection caught mid-stream off the SIP ports looked through for a SIP start line
#: before it is read as HTTP.
MIDSTREAM_LOOK = 4096
#: TCP ports on which cleartext connections are tried as SIP: 5060 (SIP) and 5061 (SIP over
#: TLS), and the range Skype for Business servers listen on for SIP (to 5087).
SIP_PORTS = frozenset(range(5060, 5088))


def _tunnel_advice(name: str, port: int) -> str:
    """How to have a VXLAN, VXLAN-GPE or GENEVE tunnel on UDP ``port`` read."""
    if name == "VXLAN":
        return f"pass --vxlan-port {port}"
    read_on = VXLAN_GPE_PORT if name == "VXLAN-GPE" else GENEVE_PORT
    return (
        f"{name} is read only on UDP {read_on}: rewrite the port with tcprewrite "
        f"--portmap={port}:{read_on}"
    )


def _http_or_tls(first: bytes) -> bool:
    """First bytes of HTTP/1.x or of a TLS record: not SIP, whatever the port. Any record, not
    only a handshake: a connection caught after its handshake (the usual capture of a Skype for
    Business client's one long-lived connection to its pool on 5061) starts with application
    data, which the HTTP reader records as TLS not decrypted."""
    return (
        first[:2] == b"\x16\x03"
        or looks_like_record(first[:5])
        or first.startswith(b"HTTP/")
        or b" HTTP/1." in first[:256]
    )


def _tls_prefix(first: bytes) -> bool:
    """Can these few bytes begin a TLS record header (type 20-24, then major version 3)?"""
    return 20 <= first[0] <= 24 and (len(first) < 2 or first[1] == 3)


def _both(first: Callable[[bytes], None], second: Callable[[bytes], None]) -> Callable:
    def both(chunk: bytes) -> None:
        first(chunk)
        second(chunk)

    return both


def _request_order(e: Event) -> tuple:
    return (e.ts, e.conn_id, e.client_port)


#: Server ports where a client's bytes are meant to be HTTP in the clear (web, proxies, WinRM):
#: a connection there that turns out neither HTTP nor TLS is a blind spot; on other ports it is
#: just another protocol (SMTP, LDAP, RPC ...).
HTTP_PORTS = frozenset({80, 8000, 8008, 8080, 8081, 5985})


def _not_http(conn: HttpConnection) -> bool:
    """Did the first sender of a connection where no HTTP message was read send bytes that are
    not HTTP (nor TLS, nor HTTP/2) to an HTTP port?"""
    client = conn.a_to_b  # no message read: the side that sent the first packet
    return (
        conn.info.b_port in HTTP_PORTS
        and conn.h2 is None
        and client.dead
        and not client.looks_tls
        and not client.messages_seen
        and not client.lost  # a head too long or cut short is request-lost already
    )


def _cut_short(record: TlsConnection) -> NotInspected:
    """The blind spot of a decrypted connection that went on after tshark stopped decrypting
    (it failed, or fell behind a stream): its later requests were not read."""
    detail = "decrypted only until tshark stopped: its later requests were not read"
    return evolve(from_tls(record), kind="request-lost", detail=detail)


def _not_inspected(
    kind: str, conn: HttpConnection | SipConnection, count: int, detail: str
) -> NotInspected:
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


def esp_blind_spots(captures: list[CaptureStats]) -> list[NotInspected]:
    """The blind spots IPsec ESP and fragmented datagrams given up on leave, one per address
    pair the decoder noted in each capture (``CaptureStats.esp_pairs``, ``fragments_lost``):
    ports 0, as neither names its ports, so that a scope takes either address for either end
    on any port; the pairs past the cap are one record without addresses, which covers every
    scope. Made from the captures' counters, so a parallel run, whose workers all read every
    packet, makes them once."""
    out = []
    for c in captures:
        out += _pair_spots(
            "ip-fragments",
            c.path,
            c.fragments_lost,
            "{n:,} fragmented IP datagram(s) {between} not put together: what they carried was "
            "not read",
        )
        out += _pair_spots(
            "ipsec-esp",
            c.path,
            c.esp_pairs,
            "{n:,} IPsec ESP packet(s) {between}: encrypted, or NULL-encrypted, which only the "
            "security association tells",
        )
    return out


def _pair_spots(
    kind: str, path: str, pairs: dict[tuple[bytes, bytes], list[float]], detail: str
) -> list[NotInspected]:
    """One blind spot of ``kind`` per address pair (lower first; ``(b"", b"")``: the pairs past
    the decoder's cap) with its first time and count; ``detail`` is formatted with ``n`` and
    ``between``."""
    out = []
    for (a, b), (ts, n) in pairs.items():
        low, high = (_ip(a), _ip(b)) if a else ("", "")
        between = f"between {low} and {high}" if a else "between other address pairs"
        conn_id = connection_id(kind, path, low, high)
        text = detail.format(n=int(n), between=between)
        out.append(NotInspected(kind, conn_id, ts, low, 0, high, 0, count=int(n), detail=text))
    return out


def unread_blind_spots(captures: list[CaptureStats]) -> list[NotInspected]:
    """The rest of each capture file read short of its end (``CaptureStats.unread_from``), the
    packets the capture dropped (``dropped``), and its packets that carry no time
    (``untimed_packets``): no addresses nor ports, so every scope covers them - whatever those
    bytes or packets held, or when those requests were made, is unknown."""
    out = []
    for c in captures:
        if c.dropped:
            detail = (
                f"{c.path}: {plural(c.dropped, 'packet')} dropped by the capture (its buffers "
                "overflowed: the reader or the disk fell behind): whatever they held is unknown"
            )
            conn_id = connection_id("dropped-packets", c.path)
            spot = NotInspected("dropped-packets", conn_id, c.first_ts or 0.0, "", 0, "", 0)
            out.append(evolve(spot, count=c.dropped, detail=detail))
        if c.untimed_packets:
            detail = (
                f"{c.path}: {c.untimed_packets:,} packet(s) carry no timestamp (pcapng simple "
                "packet blocks): when their requests were made, and so whether a token had "
                "expired, is unknown"
            )
            conn_id = connection_id("untimed-capture", c.path)
            spot = NotInspected("untimed-capture", conn_id, c.first_ts or 0.0, "", 0, "", 0)
            out.append(evolve(spot, count=c.untimed_packets, detail=detail))
        if c.unread_from is None:
            continue
        where = (
            f"the bytes after offset {c.unread_from:,}"
            if c.unread_from >= 0
            else "the rest of it, after the last packet converted,"  # (UNREAD_PAST_CONVERTED)
        )
        detail = f"{c.path}: {where} were not read ({c.unread_why}): whatever they held is unknown"
        conn_id = connection_id("unread-capture", c.path, str(c.unread_from))
        out.append(NotInspected("unread-capture", conn_id, c.first_ts or 0.0, "", 0, "", 0))
        out[-1] = evolve(out[-1], detail=detail)
    return out


#: Distinct tokens a stream's view remembers (decoded and verified) before starting afresh.
TOKENS_REMEMBERED = 5_000
#: Events a stream keeps for its closing summary (verdicts and findings) before it lets the
#: oldest go; counters and every event streamed out are unaffected.
STREAM_KEEP = 50_000
#: Event fields holding token text, shared between the events a stream keeps.
SHARED_TEXTS = ("credential", "access_token", "id_token", "refresh_token", "assertion")


class Engine:
    """The one engine: packets in, each event out as its exchange completes, the whole analysis
    (tokens, handshakes, verdicts, findings) at the end.

    ``analyze FILE`` runs it over files (``read_file``) and keeps every event; ``analyze -`` and
    ``live`` run it over a stream (``read_stream``) with ``on_event``, which sees each event the
    moment its exchange completes (response seen, connection closed, or idle), with the token
    and handshake fields known by then (see ``StreamView``). A stream keeps at most ``keep``
    events for its closing summary: memory is bounded by open connections and that cap, not by
    the length of the run.
    """

    def __init__(
        self,
        *,
        key_files: Iterable[str] = (),
        reveal_secrets: bool = False,
        on_event: Callable[[Event], None] | None = None,
        keep: int = STREAM_KEEP,
        idle_timeout: float = 600.0,
        shard: tuple[int, int] | None = None,
    ) -> None:
        self.key_files = list(key_files)
        self.shard = shard  # (k, n): worker k of n follows its share of the connections
        self.reveal_secrets = reveal_secrets
        self.view = StreamView(self.key_files, on_event) if on_event is not None else None
        self.collector = EventCollector(
            self.view.add if self.view is not None else None,
            keep if self.view is not None else None,
        )
        if self.view is not None:
            self.collector.on_close = self.view.handshakes.closed
        self.captures: list[CaptureStats] = []
        # Packet records of the inputs read so far: frame numbers go on counting from here, so
        # inputs read as one chain are numbered as ``mergecap -a`` of them would be
        self.frames = 0
        self.idle_timeout = idle_timeout
        self._reassembler: TcpReassembler | None = None
        self._udp = UdpFlows(self.collector.sip_flow, idle_timeout=idle_timeout, shard=shard)

    @property
    def streaming(self) -> bool:
        return self.view is not None

    def _start(self, stats: CaptureStats, source: str | None = None) -> TcpReassembler:
        """Begin one input: its packets continue the same connections as the last one's.
        ``source``: the input kind of its events (None: pcap or pcapng, as read)."""
        self.captures.append(stats)
        if self._reassembler is None:
            self._reassembler = TcpReassembler(
                self.collector.any_connection,
                stats,
                idle_timeout=self.idle_timeout,
                shard=self.shard,
            )
            self._reassembler.datagrams = self._udp.feed
        self._reassembler.stats = stats
        self.collector.stats = stats
        self.collector.source = source
        return self._reassembler

    def read_file(
        self,
        path: str,
        progress: ProgressCallback | None = None,
        tls_keylog: str | None = None,
    ) -> CaptureStats:
        """Read one input file, of the kind its first bytes say: a capture (pcap, pcapng, gzip;
        a FIFO is read as it is written), a Fiddler SAZ, an HTTP archive (HAR), or any other
        format tshark reads (converted to pcapng as a stream)."""
        path = str(path)
        kind = input_kind(path)
        if kind in ("saz", "har"):
            return self.read_archive(path, kind, tls_keylog)
        stats = CaptureStats(path=path)
        reassembler = self._start(stats, "tshark" if kind in ("etl", "other") else None)
        convert = kind in ("etl", "other")
        try:
            _read_one(
                path, stats, reassembler, progress, self.collector, tls_keylog, convert,
                self.frames + 1,
            )  # fmt: skip
        finally:
            self.frames += stats.packets
        return stats

    def read_archive(self, path: str, kind: str, tls_keylog: str | None = None) -> CaptureStats:
        """Read a Fiddler SAZ (``kind`` "saz") or an HTTP archive ("har"): their exchanges need
        no reassembly (see ``read_exchanges``). Raises ``CaptureError`` for an unreadable one."""
        from analyzer.sources.har import read_har
        from analyzer.sources.saz import read_saz

        stats = CaptureStats(path=path)
        items = read_saz(path, stats) if kind == "saz" else read_har(path, stats)
        if tls_keylog:
            stats.warn(
                f"{path}: --tls-keylog not used: the {kind.upper()}'s traffic was decrypted "
                "by the tool that recorded it"
            )
        return self.read_exchanges(items, stats, kind)

    def read_exchanges(
        self, items: Iterable[Archived | NotInspected], stats: CaptureStats, source: str
    ) -> CaptureStats:
        """Take HTTP exchanges that were recorded whole (a SAZ's sessions, a HAR's entries) and
        what their archive could not show: they enter where reassembled traffic hands over its
        exchanges, and become events like any other, with ``source`` set."""
        self.captures.append(stats)
        collector = self.collector
        collector.stats = stats
        collector.source = source
        for item in items:
            if isinstance(item, NotInspected):
                collector.not_inspected.append(item)
                continue
            exchange = item.exchange
            first = exchange.request or exchange.response
            if first is not None:
                stats.check_time(first.ts)
            if item.tls:
                collector.tls_exchange(exchange, source)
            else:
                collector.exchange(exchange, source)
        # an archive's connections never close: what its logons left unseen is said now
        for auth in (collector.connection_auth, collector.tls_connection_auth):
            collector.not_inspected.extend(auth.flush())
        return stats

    def read_stream(
        self,
        stream: BinaryIO,
        name: str,
        tee: Callable[[bytes], None] | None = None,
        progress: Callable[[CaptureStats], None] | None = None,
        tls_keylog: str | None = None,
        source: str | None = None,
    ) -> CaptureStats:
        """Read a pcap or pcapng byte stream (standard input, a live capture's pipe) as it
        arrives: the events of the packets read so far are out before the next read waits.
        ``tee`` gets every chunk read (``live --write``); ``progress`` is called after each.
        ``tls_keylog`` has tshark decrypt the stream alongside (``StreamDecryptor``): its
        plaintext is read as it comes, and what is left when the stream ends. ``source`` is
        the events' input kind: by default ``live`` for a stream named ``live:...`` (as
        ``live`` names its capture), else the stream's format (pcap or pcapng)."""
        stats = CaptureStats(path=name)
        reassembler = self._start(stats)
        self.collector.source = source or ("live" if name.startswith("live:") else None)
        decryptor = tls = None
        if tls_keylog:
            from analyzer.sources.tshark import StreamDecryptor

            decryptor = StreamDecryptor(tls_keylog, stats, first_frame=self.frames + 1)
            tls = TcpReassembler(
                self.collector.any_tls_connection, stats, idle_timeout=self.idle_timeout
            )
            tee = _both(tee, decryptor.feed) if tee is not None else decryptor.feed

        def every() -> None:
            if decryptor is not None and tls is not None:
                self._decrypted(decryptor.ready(), tls, stats, decryptor.decoder)
            if progress is not None:
                progress(stats)

        try:
            packets = read_stream(
                stream, name, stats, reassembler, every, tee, every, self.frames + 1
            )
            reassembler.run(packets)
        finally:
            self.frames += stats.packets
            if decryptor is not None and tls is not None:
                self._decrypted(decryptor.close(), tls, stats, decryptor.decoder)
                counted, gaps = stats.tcp_connections, stats.gaps
                tls.flush()
                stats.tcp_connections, stats.gaps = counted, gaps
                stats.gaps += decryptor.decoder.tcp_holes  # the ciphertext's, as tshark read it
        return stats

    def _decrypted(
        self, packets: list[tuple], tls: TcpReassembler, stats: CaptureStats, decoder: FieldDecoder
    ) -> None:
        """Read decrypted packets on their own reassembler; note which connections they are."""
        self.collector.note_decrypted(decoder)
        if not packets:
            return
        # the cleartext read counts these connections; the gaps of their plaintext are the holes
        # the decoder made (counted as the capture's TCP gaps when it found them missing)
        counted, gaps = stats.tcp_connections, stats.gaps
        tls.run(packets)
        stats.tcp_connections, stats.gaps = counted, gaps

    def finish(self) -> AnalysisResult:
        """End every open connection and work out the analysis of what was kept."""
        parts = self.parts()
        collector = self.collector
        view = self.view
        if view is None:
            return assemble(parts, self.key_files, self.reveal_secrets)
        # every key, wherever it came from (a stream's documents may no longer be kept)
        store = view.store
        tokens = TokenAnalysis(store)
        streamed = sorted(parts.events, key=_request_order)  # numbered as streamed
        events, handshakes = group_handshakes(streamed, tokens.event_fields(streamed))
        events, handshakes = keep_handshake_ids(streamed, events, handshakes)
        if collector.dropped and self.captures:
            self.captures[-1].warn(
                f"{collector.dropped} older records (events, TLS connections, blind spots) "
                "were streamed but not kept for this summary: its verdicts and findings cover "
                "the most recent ones (live --verify's answer accounts for them all)"
            )
        return _result(events, handshakes, parts, store, tokens, self.reveal_secrets)

    def parts(self) -> Parts:
        """End every open connection; what was found, before tokens and handshakes (what a
        worker of a parallel run hands back: ``analyzer.parallel``)."""
        if self._reassembler is not None:
            self._reassembler.flush()
        self._udp.flush()
        collector = self.collector
        collector.recheck_decrypted()  # a stream's decryption ends after its cleartext read
        return Parts(
            collector.events,
            self.captures,
            collector.tls,
            collector.not_inspected,
            collector.inputs,
        )


@dataclass(slots=True)
class Parts:
    """What reading found: events numbered as they completed, the inputs' counters, TLS
    connections and blind spots, in no particular order."""

    events: list[Event]
    captures: list[CaptureStats]
    tls: list[TlsConnection]
    not_inspected: list[NotInspected]
    # connection id -> the input its first record was read from
    inputs: dict[str, str] = field(default_factory=dict)


def assemble(parts: Parts, key_files: Iterable[str], reveal_secrets: bool) -> AnalysisResult:
    """The analysis of what one reading (or the merged readings of a parallel run) found:
    events in request order numbered from 1, tokens, handshakes; verdicts and findings on use."""
    events = numbered(parts.events)
    store = load_keys(events, key_files)
    tokens = TokenAnalysis(store)
    # token and handshake fields are set in one copy of each event
    events, handshakes = group_handshakes(events, tokens.event_fields(events))
    return _result(events, handshakes, parts, store, tokens, reveal_secrets)


def numbered(events: list[Event]) -> list[Event]:
    """Events sorted by request time, numbered from 1.

    Exchanges mostly finish in request order, so most events already carry their final number;
    only the ones the sort moved are copied.
    """
    ordered = sorted(events, key=_request_order)
    return [e if e.event_id == i else evolve(e, event_id=i) for i, e in enumerate(ordered, 1)]


def _result(
    events: list[Event],
    handshakes: list[Handshake],
    parts: Parts,
    store: KeyStore,
    tokens: TokenAnalysis,
    reveal_secrets: bool,
) -> AnalysisResult:
    return AnalysisResult(
        events,
        parts.captures,
        handshakes=handshakes,
        keys=len(store),
        key_warnings=list(store.warnings),
        not_inspected=sorted(
            [
                *parts.not_inspected,
                *esp_blind_spots(parts.captures),
                *unread_blind_spots(parts.captures),
            ],
            key=lambda n: (n.ts, n.conn_id, n.kind),
        ),
        tls=sorted(parts.tls, key=lambda t: (t.ts, t.conn_id)),
        signing_keys=list(store),
        derive_tokens=lambda: tokens.records(reveal_secrets),
        token_keys=tokens.verifying_keys,
        inputs=parts.inputs,
    )


class StreamView:
    """What a stream says about each event when its exchange completes, and what it keeps.

    Token fields use the keys known by then (the user's files and the metadata / JWKS documents
    already seen: a token whose key is fetched later streams as ``unknown-key`` and is verified
    in the closing summary); handshake fields come from a ``HandshakeTracker``.
    """

    def __init__(self, key_files: list[str], on_event: Callable[[Event], None]) -> None:
        self.store = load_keys((), key_files)
        self.tokens = TokenAnalysis(self.store)
        self.handshakes = HandshakeTracker()
        self.on_event = on_event
        self._texts: dict[str, str] = {}  # token text -> the one string kept for it

    def add(self, event: Event) -> Event:
        """Fill in the event and hand it out; returns it as handed out."""
        if event.document and self.store.add_document(event.document, request_url(event), event.ts):
            self._fresh()  # earlier verdicts on signatures may change
        elif self.tokens.distinct > TOKENS_REMEMBERED:
            self._fresh()  # a cache: bounded over a long run
        event = self._shared_texts(event)
        fields = self.tokens.event_fields([event])[0]
        event = evolve(event, **fields) if fields else event
        shake = self.handshakes.add(event)
        event = evolve(event, **shake) if shake else event
        self.on_event(event)
        return event

    def _fresh(self) -> None:
        self.tokens = TokenAnalysis(self.store)
        self._texts.clear()

    def _shared_texts(self, event: Event) -> Event:
        """The event with each long token text replaced by the one string kept for it: a token
        is typically sent hundreds of times, and the events kept for the summary hold it once."""
        changes = {}
        for name in SHARED_TEXTS:
            text = getattr(event, name)
            if text is not None and len(text) > 64:
                kept = self._texts.setdefault(text, text)
                if kept is not text:
                    changes[name] = kept
        return evolve(event, **changes) if changes else event


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
    engine = Engine(key_files=key_files, reveal_secrets=reveal_secrets)
    for path in paths:
        engine.read_file(str(path), progress, tls_keylog)
    return engine.finish()


def _read_one(
    path: str,
    stats: CaptureStats,
    reassembler: TcpReassembler,
    progress: ProgressCallback | None,
    collector: EventCollector,
    tls_keylog: str | None,
    convert: bool = False,
    first_frame: int = 1,
) -> None:
    every = None
    if progress is not None:

        def every() -> None:
            progress(path, stats.bytes)

    decrypted = read_decrypted(path, tls_keylog, stats, first_frame) if tls_keylog else None
    # the readers raise CaptureError for a non-capture before tshark decrypts anything
    if convert:
        from analyzer.sources.convert import read_converted  # the subprocess machinery

        packets = read_converted(path, stats, reassembler, every, first_frame)
    else:
        packets = read_packets(path, stats, reassembler, every, first_frame)
    if decrypted is not None:
        _read_tls(*decrypted, stats, collector)
    # The ciphertext of a decrypted connection is read too, for its handshake (TLS record,
    # inspected); its bytes past the handshake are skipped like any other TLS connection's.
    reassembler.run(packets)
    if progress is not None:
        progress(path, stats.bytes)


def _read_tls(
    packets: Iterable[tuple], decoder: FieldDecoder, stats: CaptureStats, collector: EventCollector
) -> None:
    """Reassemble one file's decrypted TLS connections on their own; note which connections they
    were (``decoder.opened``) so the cleartext read marks their TLS records inspected."""
    tls = TcpReassembler(collector.any_tls_connection, stats)
    counted, gaps = stats.tcp_connections, stats.gaps
    tls.run(packets)
    tls.flush()
    # the cleartext read counts these connections; their plaintext's gaps are the holes the
    # decoder made, of which those missing from the capture are its TCP gaps
    stats.tcp_connections, stats.gaps = counted, gaps + decoder.tcp_holes
    collector.note_decrypted(decoder)


def _ip(packed: bytes) -> str:
    return str(ipaddress.ip_address(bytes(packed)))
