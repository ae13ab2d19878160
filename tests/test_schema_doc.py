"""docs/schema.md documents exactly the fields the records have."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from analyzer.model import (
    Challenge,
    CredentialRecord,
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
    "record",
    [TokenRecord, Handshake, PairVerdict, Finding, TlsConnection, NotInspected, CredentialRecord],
)
def test_record_fields_match_the_documentation(record: type) -> None:
    public = [f.name for f in dataclasses.fields(record)]
    assert documented(record.__name__) == public


# -- docs/schema.json ------------------------------------------------------------------------
SCHEMA = DOC.with_name("schema.json")
SFB = DOC.parents[1] / "captures" / "exchange-sfb.pcap"


def test_json_schema_is_the_one_the_model_generates() -> None:
    from analyzer.report.schema import json_schema

    assert json.loads(SCHEMA.read_text(encoding="utf-8")) == json_schema(), (
        "docs/schema.json is stale: python -m analyzer.report.schema > docs/schema.json"
    )


@pytest.mark.parametrize(
    "table", ["events", "handshakes", "tokens", "findings", "verdicts", "credentials"]
)
def test_json_lines_validate_against_the_schema(table: str, capsys) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from analyzer.cli import main

    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    record = {"events": "Event", "handshakes": "Handshake", "tokens": "TokenRecord",
              "findings": "Finding", "verdicts": "PairVerdict",
              "credentials": "CredentialRecord"}[table]  # fmt: skip
    alone = {k: v for k, v in schema.items() if k != "oneOf"}
    one = jsonschema.Draft202012Validator({**alone, "$ref": f"#/$defs/{record}"})
    for reveal in ([], ["--reveal-secrets"]):
        assert main(["analyze", str(SFB), "--format", "jsonl", "--table", table, *reveal]) == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert lines
        for line in lines:
            validator.validate(line)
            one.validate(line)
            assert isinstance(line["schema_version"], int)
