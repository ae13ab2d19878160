"""Every event names the kind of input it was read from (``Event.source``), and keeps it when
several inputs of different kinds are read in one run."""

from __future__ import annotations

import io
from pathlib import Path

from analyzer.engine import Engine, analyze_paths

CAPTURES = Path(__file__).resolve().parents[1] / "captures"


def test_pcap_and_pcapng_files_say_so() -> None:
    assert {e.source for e in analyze_paths([str(CAPTURES / "exchange-sfb.pcap")]).events} == {
        "pcap"
    }
    assert {e.source for e in analyze_paths([str(CAPTURES / "messy.pcapng")]).events} == {"pcapng"}


def test_each_event_keeps_the_kind_of_its_own_file() -> None:
    result = analyze_paths([str(CAPTURES / "messy.pcapng"), str(CAPTURES / "exchange-sfb.pcap")])
    kinds = {e.source for e in result.events}
    assert kinds == {"pcap", "pcapng"}
    assert [c.file_format for c in result.captures] == ["pcapng", "pcap"]


def test_streams_are_their_format_and_a_live_capture_is_live() -> None:
    data = (CAPTURES / "exchange-sfb.pcap").read_bytes()
    for name, want in (("-", "pcap"), ("live:lo", "live")):
        seen = []
        engine = Engine(on_event=seen.append)
        engine.read_stream(io.BytesIO(data), name)
        result = engine.finish()
        assert {e.source for e in seen} == {want}, name
        assert {e.source for e in result.events} == {want}, name
    engine = Engine(on_event=lambda e: None)
    engine.read_stream(io.BytesIO(data), "pipe", source="live")
    assert {e.source for e in engine.finish().events} == {"live"}
