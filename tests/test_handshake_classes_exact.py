"""Handshake classification, word for word: the cases the bundled captures do not reach.

Each test writes the exchanges it needs as real packets (scapy, or ``sip_kit``'s datagrams) and
reads what a user reads: the events' ``handshake_id`` / ``auth_class`` / ``outcome``, the
``Handshake`` and ``PairVerdict`` records of ``analyze_paths``, the fields a stream hands out.
Every test works out its own analysis: a result shared between tests (a module fixture) is
computed inside whichever test runs first, and mutation testing would credit only that one.
"""

from __future__ import annotations

import base64
from pathlib import Path

from wire_kit import OK, write_capture


def get(auth: str | None = None, host: str | None = "web.test", path: str = "/ews") -> bytes:
    """A GET (HTTP/1.1 with a Host, HTTP/1.0 without one when ``host`` is None)."""
    lines = [f"GET {path} HTTP/1.1" if host is not None else f"GET {path} HTTP/1.0"]
    if host is not None:
        lines.append(f"Host: {host}")
    if auth is not None:
        lines.append(f"Authorization: {auth}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def basic(user: str, password: str = "pw") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_a_handshake_that_names_another_host_counts_every_exchange_in_its_pair(
    tmp_path: Path,
) -> None:
    """Basic accepted for a.test, then for b.test on the same keep-alive connection: one
    handshake, in the pair of its first request's Host, which counts both exchanges; a filter
    that keeps only the second exchange keeps it in that pair (it used to leave the pair
    without exchanges: "challenged, but no credential was sent")."""
    from analyzer import analyze

    auth = basic("alice")
    path = write_capture(
        tmp_path / "hosts.pcap", [(get(auth, "a.test"), OK), (get(auth, "b.test", "/other"), OK)]
    )
    whole = analyze(path).result
    assert [(h.host, h.event_ids) for h in whole.handshakes] == [("a.test", (1, 2))]
    assert [(v.host, v.verdict, v.exchanges, v.classes) for v in whole.verdicts] == [
        ("a.test", "no-oauth", 2, {"basic": 2})
    ]
    narrowed = analyze(path).where(path="/other").result
    assert [e.event_id for e in narrowed.events] == [2]
    assert [(v.host, v.verdict, v.exchanges, v.summary) for v in narrowed.verdicts] == [
        ("a.test", "no-oauth", 1, "no OAuth: basic (1 handshake)")
    ]
