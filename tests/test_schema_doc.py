"""docs/schema.md documents exactly the fields the records have."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from analyzer.model import (
    Challenge,
    Event,
    Finding,
    Handshake,
    NotInspected,
    PairVerdict,
    TlsConnection,
    TokenRecord,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "schema.md"


def documented(section: str) -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z_0-9]+)` \|", body, flags=re.MULTILINE)


def test_event_fields_match_the_documentation() -> None:
    fields = [f.name for f in dataclasses.fields(Event) if not f.metadata.get("internal")]
    assert documented("Event") == fields


def test_challenge_fields_match_the_documentation() -> None:
    assert documented("Challenge") == [f.name for f in dataclasses.fields(Challenge)]


def test_internal_fields_are_named_in_the_documentation() -> None:
    internal = [f.name for f in dataclasses.fields(Event) if f.metadata.get("internal")]
    text = DOC.read_text(encoding="utf-8")
    for name in internal:
        assert f"`{name}`" in text


@pytest.mark.parametrize(
    "record", [TokenRecord, Handshake, PairVerdict, Finding, TlsConnection, NotInspected]
)
def test_record_fields_match_the_documentation(record: type) -> None:
    public = [f.name for f in dataclasses.fields(record)]
    assert documented(record.__name__) == public
