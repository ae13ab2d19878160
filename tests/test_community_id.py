"""Every event carries the Community ID v1 of its connection, as other tools print it."""

from __future__ import annotations

from pathlib import Path

import pytest

import analyzer
from analyzer.flows.community import community_id

SFB = Path(__file__).resolve().parents[1] / "captures" / "exchange-sfb.pcap"


@pytest.mark.parametrize(
    ("client", "client_port", "server", "server_port", "expected"),
    [  # the published vectors of the Community ID spec (seed 0)
        ("128.232.110.120", 34855, "66.35.250.204", 80, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
        ("66.35.250.204", 80, "128.232.110.120", 34855, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
        (
            "2001:470:e5bf:dead:4957:2174:e82c:4887",
            63943,
            "2607:f8b0:400c:c03::1a",
            25,
            "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
        ),
    ],
)
def test_community_id_matches_the_spec_vectors(
    client: str, client_port: int, server: str, server_port: int, expected: str
) -> None:
    assert community_id(client, client_port, server, server_port) == expected


def test_not_an_address_gives_none() -> None:
    assert community_id("mail.contoso.com", 80, "10.0.0.1", 50000) is None


def test_every_event_carries_its_connection_community_id() -> None:
    events = analyzer.analyze(SFB).result.events
    assert events
    for e in events:
        assert e.community_id == community_id(
            e.client_ip, e.client_port, e.server_ip, e.server_port
        )
    by_conn = {}
    for e in events:
        by_conn.setdefault(e.conn_id, set()).add(e.community_id)
    assert all(len(ids) == 1 for ids in by_conn.values())
    assert events[0].community_id == "1:ZE51IKBh0fGe3N2iv4rUCBxTIbY="
