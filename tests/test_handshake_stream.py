"""Handshakes as a stream sees them (``analyze -``, ``live``): each event's handshake id, class
and outcome are those of the file analysis, known when its exchange completes, and the closing
summary keeps the ids the events were streamed with."""

from __future__ import annotations

from pathlib import Path

import pytest
from shared_dir import PUBLIC, require_public
from wire_kit import OK, T0, conversation, write_packets

from analyzer.engine import AnalysisResult, Engine, analyze_paths
from analyzer.model import Event

CAPTURES = Path(__file__).resolve().parents[1] / "captures"
STREAMED = [
    "exchange-sfb.pcap",
    "messy.pcapng",
    "classes.pcap",
    "findings.pcap",
    "hybrid/fallback-ntlm.pcap",
    "hybrid/ntlm-legs.pcap",
]


def streamed(path: Path | str) -> tuple[list[Event], AnalysisResult]:
    seen: list[Event] = []
    engine = Engine(on_event=seen.append)
    with open(path, "rb") as fh:
        engine.read_stream(fh, Path(path).name)
    return seen, engine.finish()


def fields(e: Event) -> tuple:
    return e.handshake_id, e.auth_class, e.outcome


@pytest.mark.parametrize("name", STREAMED)
def test_streamed_handshake_fields_are_the_file_analysis_ones(name: str) -> None:
    """Two things only a later event can tell differ: a challenge streams as "anonymous" until a
    credential answers it, and an NTLM / Negotiate leg the client never followed streams as
    "challenged" (the file analysis calls it "incomplete")."""
    seen, result = streamed(CAPTURES / name)
    whole = analyze_paths([str(CAPTURES / name)])
    final = {e.event_id: e for e in whole.events}
    assert [fields(e) for e in result.events] == [fields(e) for e in whole.events]
    assert [h.event_ids for h in result.handshakes] == [h.event_ids for h in whole.handshakes]
    for e in seen:
        got, want = fields(e), fields(final[e.event_id])
        if got != want:
            assert got[0] == want[0], e.event_id
            if got[1] == "anonymous":  # the challenge a later credential answered
                assert (got[2], want[2]) == ("challenged", "challenged") and want[1] != got[1]
            else:
                assert (got[1:], want[2]) == ((want[1], "challenged"), "incomplete")
                assert e.event_id == final[e.event_id].event_id
                (hs,) = [h for h in whole.handshakes if h.handshake_id == want[0]]
                assert hs.event_ids[-1] == e.event_id and hs.outcome == "incomplete"
    assert {e.handshake_id for e in seen if e.handshake_id} == {
        h.handshake_id for h in result.handshakes
    }


def test_stream_changes_only_what_later_events_tell() -> None:
    """The exact differences on two captures: messy.pcapng's two challenges answered by Basic
    and Digest, classes.pcap's NTLM leg left unanswered and its Digest challenge."""
    diffs = {}
    for name in ("messy.pcapng", "classes.pcap"):
        seen, result = streamed(CAPTURES / name)
        final = {e.event_id: fields(e) for e in result.events}
        diffs[name] = {
            e.event_id: (fields(e), final[e.event_id])
            for e in seen
            if fields(e) != final[e.event_id]
        }
    assert diffs == {
        "messy.pcapng": {
            7: ((5, "anonymous", "challenged"), (5, "basic", "challenged")),
            10: ((7, "anonymous", "challenged"), (7, "digest", "challenged")),
        },
        "classes.pcap": {
            5: ((4, "ntlm", "challenged"), (4, "ntlm", "incomplete")),
            7: ((6, "anonymous", "challenged"), (6, "digest", "challenged")),
        },
    }


def _interleaved(tmp_path: Path) -> str:
    """Connection A asks first and is answered last; connection B asks and is answered in
    between: a stream sees B's handshake complete first."""
    basic = b"GET /a HTTP/1.1\r\nHost: web.test\r\nAuthorization: Basic YTpi\r\n\r\n"
    bearer = b"GET /b HTTP/1.1\r\nHost: web.test\r\nAuthorization: Bearer abc\r\n\r\n"
    a = conversation([(True, basic), (False, OK)], 40001, T0)
    b = conversation([(True, bearer), (False, OK)], 40002, T0)
    times_a = [0.0, 0.01, 0.02, 1.0, 5.0, 5.1, 5.2, 5.3]  # SYN, SYN-ACK, ACK, request, answer, FINs
    times_b = [2.0, 2.01, 2.02, 2.1, 2.2, 2.3, 2.4, 2.5]
    for packets, times in ((a, times_a), (b, times_b)):
        assert len(packets) == len(times)
        for p, t in zip(packets, times, strict=True):
            p.time = T0 + t
    return write_packets(tmp_path / "interleaved.pcap", sorted(a + b, key=lambda p: p.time))


def test_a_stream_keeps_the_handshake_ids_its_events_carried(tmp_path: Path) -> None:
    path = _interleaved(tmp_path)
    seen, result = streamed(path)
    assert [(e.uri, e.handshake_id) for e in seen] == [("/b", 1), ("/a", 2)]
    by_uri = {e.uri: e.handshake_id for e in result.events}
    assert by_uri == {"/a": 2, "/b": 1}
    assert sorted((h.auth_class, h.handshake_id) for h in result.handshakes) == [
        ("basic", 2),
        ("oauth", 1),
    ]
    # a file analysis numbers them in time order
    whole = analyze_paths([path])
    assert {e.uri: e.handshake_id for e in whole.events} == {"/a": 1, "/b": 2}


def test_a_stream_remembers_only_open_connections_and_sip_associations() -> None:
    """Memory: the tracker forgets a connection once it closes; a SIP security association
    outlives its connections (the softphone's six REGISTER / INVITE dialogs stay open)."""
    for path, still_open in ((CAPTURES / "classes.pcap", 0), (PUBLIC / "ndpi__sip.pcap", 6)):
        if not path.exists():
            require_public("ndpi__sip.pcap")
        engine = Engine(on_event=lambda e: None)
        with open(path, "rb") as fh:
            engine.read_stream(fh, path.name)
        engine.finish()
        assert engine.view is not None and len(engine.view.handshakes) == still_open, path.name


def test_handshakes_grouped_otherwise_than_streamed_get_fresh_ids() -> None:
    """``keep_handshake_ids``: each handshake keeps the id its first event was streamed with;
    one whose first event carried none, or an id another handshake already kept, is numbered
    after the largest id streamed."""
    from analyzer.analysis.handshakes import keep_handshake_ids
    from analyzer.model import evolve

    result = analyze_paths([str(CAPTURES / "classes.pcap")])
    firsts = {h.event_ids[0]: h.handshake_id for h in result.handshakes}
    assert list(firsts.values()) == [1, 2, 3, 4, 5, 6, 7]
    streamed_ids = {1: 10, 2: 20, 3: 10, 4: None}  # by handshake: 3 repeats 1's, 4 had none
    streamed = [
        evolve(e, handshake_id=streamed_ids.get(firsts.get(e.event_id, 0), 30 + e.event_id))
        if e.event_id in firsts
        else e
        for e in result.events
    ]
    events, handshakes = keep_handshake_ids(streamed, result.events, result.handshakes)
    spare = max(30 + i for i in firsts if firsts[i] > 4)
    assert [h.handshake_id for h in handshakes] == [
        10,
        20,
        spare + 1,
        spare + 2,
        *(30 + i for i in firsts if firsts[i] > 4),
    ]
    want = {h.handshake_id: h.handshake_id for h in result.handshakes}
    renumbered = dict(zip(want, (h.handshake_id for h in handshakes), strict=True))
    assert [e.handshake_id for e in events] == [
        None if e.handshake_id is None else renumbered[e.handshake_id] for e in result.events
    ]
    # nothing streamed with an id: numbered from 1, in time order
    bare = [evolve(e, handshake_id=None) for e in result.events]
    _, handshakes = keep_handshake_ids(bare, result.events, result.handshakes)
    assert [h.handshake_id for h in handshakes] == [1, 2, 3, 4, 5, 6, 7]
