"""What a verdict says it could not see, word for word: the blind-spot records and sentences of
``verify`` (text and ``--json``), and the capture's damage every verdict carries.

These are the lines an admin reads before signing off a PASS, so their counts, nouns and fields
are pinned exactly (each test killed mutants of ``analysis/coverage.py`` that nothing else did).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analyzer.analysis.coverage import TOP_SERVERS, Coverage, from_tls
from analyzer.analysis.verify import evaluate, make_rule
from analyzer.cli import main
from analyzer.engine import analyze_paths
from analyzer.model import CaptureStats, NotInspected, TlsConnection

TLS_CAPTURE = Path(__file__).resolve().parents[1] / "captures" / "healthy-oauth-tls.pcapng"


def _tls(version: str | None) -> TlsConnection:
    return TlsConnection("Cabc", 1772442000.5, "10.0.0.1", 50123, "10.0.0.2", 443, sni="web.test",
                         version=version)  # fmt: skip


def test_an_undecrypted_tls_connection_is_named_by_its_own_fields() -> None:
    for version, detail in (("TLS 1.2", "TLS 1.2, not decrypted"), (None, "not decrypted")):
        record = from_tls(_tls(version))
        assert record == NotInspected(
            kind="tls", conn_id="Cabc", ts=1772442000.5, client_ip="10.0.0.1",
            client_port=50123, server_ip="10.0.0.2", server_port=443, host="web.test",
            count=1, detail=detail,
        )  # fmt: skip


def test_the_capture_s_tls_blind_spots_in_verify_json(capsys: pytest.CaptureFixture) -> None:
    result = analyze_paths([str(TLS_CAPTURE)])
    tls = [t for t in result.tls if not t.inspected]
    assert tls and [from_tls(t) for t in tls] == [
        n for n in result.not_inspected if n.kind == "tls"
    ]
    main(["verify", str(TLS_CAPTURE), "--json"])
    rules = json.loads(capsys.readouterr().out)["rules"]
    shown = rules[0]["coverage"]["not_inspected"]
    assert [(n["conn_id"], n["ts"], n["client"]) for n in shown] == [
        (t.conn_id, t.ts, f"{t.client_ip}:{t.client_port}") for t in tls
    ]


def _lost(i: int, count: int = 1) -> NotInspected:
    return NotInspected("request-lost", f"C{i}", 1.0, "10.0.0.1", 40000 + i, f"10.0.1.{i}", 80,
                        count=count)  # fmt: skip


def test_request_bytes_lost_sentence() -> None:
    assert Coverage(not_inspected=[_lost(1, count=2)]).blind_spots() == [
        "request bytes lost 2 times on 1 connection to 10.0.1.1:80: those requests' "
        "credentials are unknown"
    ]


def test_text_lists_the_top_servers_json_lists_every_one() -> None:
    coverage = Coverage(not_inspected=[_lost(i) for i in range(1, TOP_SERVERS + 6)])
    text = coverage.blind_spots()
    assert len(text) == TOP_SERVERS + 1
    assert text[-1] == "... and 5 more to 5 other servers not inspected"
    assert len(coverage.to_dict()["blind_spots"]) == TOP_SERVERS + 5
    assert coverage.blind_spots(limit=3)[-1] == "... and 22 more to 22 other servers not inspected"


def test_damage_is_said_with_counts_and_the_capture_s_name() -> None:
    cut = CaptureStats(path="cut.pcap", dropped=1, gaps=2, truncated_packets=3, evicted=1)
    cut.warnings = ["odd link type", "cut.pcap: ends in the middle of a record"]
    plain = CaptureStats(dropped=2, gaps=1, truncated_packets=1, evicted=2)
    outcome = evaluate(make_rule(name="r"), [], [cut, plain])
    assert outcome.coverage.damage == [
        "cut.pcap: 1 packet dropped by the capture: traffic missed",
        "cut.pcap: 2 TCP gaps: bytes missing from the capture",
        "cut.pcap: 3 packets cut by the snap length",
        "cut.pcap: 1 connection dropped (idle or over the buffer cap)",
        "cut.pcap: odd link type",
        "cut.pcap: ends in the middle of a record",
        "capture: 2 packets dropped by the capture: traffic missed",
        "capture: 1 TCP gap: bytes missing from the capture",
        "capture: 1 packet cut by the snap length",
        "capture: 2 connections dropped (idle or over the buffer cap)",
    ]
