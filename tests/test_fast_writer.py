"""The compiled writers give exactly the text of the plain ones they replaced.

``json_encoder`` / ``to_json`` against ``json.dumps`` of the dict the plain ``to_dict`` made, the
compiled ``to_dict`` against that plain one, and ``write_jsonl`` / ``write_csv`` against the plain
loops: on every record of every capture in ``captures/`` (secrets revealed or not), and on crafted
records holding what the fast paths must not get wrong: escapes, non-ASCII, lone surrogates, NaN
and infinities, huge ints, bools where ints belong, subclasses, unexpected types, nested
challenges, values json refuses (the same error must come out).
"""

from __future__ import annotations

import csv
import dataclasses
import enum
import io
import json
import math
from collections import namedtuple
from pathlib import Path
from typing import Any

import pytest

from analyzer.engine import AnalysisResult, analyze_paths
from analyzer.model import (
    SCHEMA_VERSION,
    Challenge,
    Event,
    Finding,
    Handshake,
    PairVerdict,
    TokenRecord,
    public_fields,
    to_dict,
)
from analyzer.report.export import TIME_FIELD, csv_header, who, write_csv, write_jsonl
from analyzer.report.json_text import json_encoder, to_json
from analyzer.report.times import iso_utc

REPO = Path(__file__).resolve().parents[1]
CAPTURES = REPO / "captures"
KEYS = sorted(str(p) for p in (CAPTURES / "keys").glob("*.cert.pem"))
LEAD = (("schema_version", SCHEMA_VERSION),)

#: The writers' JSON settings, as the plain writers used them.
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


# ------------------------------------------------------------------------ the plain references


def plain_to_dict(record: Any, reveal_secrets: bool = False) -> dict[str, Any]:
    """``to_dict`` as it was before it was compiled."""
    names = [
        f.name
        for f in dataclasses.fields(record)
        if not f.metadata.get("internal") and (reveal_secrets or not f.metadata.get("secret"))
    ]
    out = {name: getattr(record, name) for name in names}
    for name, value in out.items():
        if isinstance(value, tuple):
            out[name] = [v.to_dict() if hasattr(v, "to_dict") else v for v in value]
    return out


def plain_json(record: Any, reveal_secrets: bool = False) -> str:
    return json.dumps(
        plain_to_dict(record, reveal_secrets), ensure_ascii=False, separators=(",", ":")
    )


def plain_jsonl(records: list[Any], reveal_secrets: bool = False) -> str:
    out = io.StringIO()
    for record in records:
        row = {"schema_version": SCHEMA_VERSION}
        row.update(plain_to_dict(record, reveal_secrets))
        out.write(_dumps(row) + "\n")
    return out.getvalue()


def plain_csv(records: list[Any], record_type: type, reveal_secrets: bool = False) -> str:
    def cell(value: Any) -> Any:
        if value is None:
            return ""
        if isinstance(value, (list, dict)):
            return _dumps(value) if value else ""
        return value

    out = io.StringIO()
    names = csv_header(record_type, reveal_secrets)  # time, key columns, the rest, version
    assert sorted(names) == sorted(
        ["schema_version", *public_fields(record_type, reveal_secrets)]
        + (["time"] if record_type in TIME_FIELD else [])
        + (["identity"] if record_type is Event else [])
    )
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    for record in records:
        row = {"schema_version": SCHEMA_VERSION, **plain_to_dict(record, reveal_secrets)}
        if record_type in TIME_FIELD:
            row["time"] = iso_utc(row.get(TIME_FIELD[record_type]))
        if record_type is Event:
            row["identity"] = who(record) if isinstance(record, Event) else None
        writer.writerow([cell(row[name]) for name in names])
    return out.getvalue()


def outcome(make: Any) -> tuple[str, Any]:
    """("ok", text) or ("error", (type, message)): what calling ``make()`` gave."""
    try:
        return "ok", make()
    except Exception as exc:  # the same exception must come out of both paths
        return "error", (type(exc), str(exc))


def assert_same(record: Any) -> None:
    """Every fast path writes ``record`` exactly as the plain path does (or fails the same way)."""
    for reveal in (False, True):
        want = outcome(lambda: plain_json(record, reveal))  # noqa: B023
        assert outcome(lambda: to_json(record, reveal)) == want  # noqa: B023
        encode = json_encoder(type(record), reveal, lead=LEAD, end="\n")
        want_line = outcome(
            lambda: (
                _dumps({"schema_version": SCHEMA_VERSION, **plain_to_dict(record, reveal)})  # noqa: B023
                + "\n"
            )
        )
        assert outcome(lambda: encode(record)) == want_line  # noqa: B023
        if want[0] == "ok":  # the dicts: same keys in the same order, same JSON
            fast = to_dict(record, reveal)
            assert list(fast) == list(plain_to_dict(record, reveal))
            assert _dumps(fast) == want[1]


# ------------------------------------------------------------------------------ real captures


@pytest.fixture(scope="module")
def results() -> list[AnalysisResult]:
    captures = sorted(str(p) for p in CAPTURES.glob("*.pcap*"))
    assert len(captures) >= 5
    found = [analyze_paths([path], reveal_secrets=True) for path in captures]
    found.append(analyze_paths(captures, key_files=KEYS, reveal_secrets=True))
    return found


def _tables(result: AnalysisResult) -> list[tuple[type, list[Any]]]:
    return [
        (Event, result.events),
        (TokenRecord, result.tokens),
        (Finding, result.findings),
        (Handshake, result.handshakes),
        (PairVerdict, result.verdicts),
    ]


def test_every_record_of_the_captures(results: list[AnalysisResult]) -> None:
    seen: dict[type, int] = {}
    for result in results:
        for record_type, records in _tables(result):
            for record in records:
                assert_same(record)
            seen[record_type] = seen.get(record_type, 0) + len(records)
        for stats in result.captures:
            assert to_json(stats) == plain_json(stats)
    assert all(seen[t] > 0 for t in (Event, TokenRecord, Finding, Handshake, PairVerdict))
    assert any(e.challenges and e.credential for r in results for e in r.events)


def test_jsonl_and_csv_writers_on_the_captures(results: list[AnalysisResult]) -> None:
    for result in results:
        for record_type, records in _tables(result):
            for reveal in (False, True):
                out = io.StringIO()
                write_jsonl(records, out, reveal_secrets=reveal)
                assert out.getvalue() == plain_jsonl(records, reveal)
                out = io.StringIO()
                write_csv(records, out, record_type, reveal_secrets=reveal)
                assert out.getvalue() == plain_csv(records, record_type, reveal)


def test_secrets_written_only_when_revealed(results: list[AnalysisResult]) -> None:
    events = [e for r in results for e in r.events if e.credential]
    assert events
    hidden, shown = io.StringIO(), io.StringIO()
    write_jsonl(events, hidden)
    write_jsonl(events, shown, reveal_secrets=True)
    assert '"credential":' not in hidden.getvalue()
    assert all(json.dumps(e.credential) in shown.getvalue() for e in events)


def test_batches_of_many_lines() -> None:
    events = [
        _event(event_id=i, uri=f"/n/{i}", reasons=("challenge",) * (i % 3)) for i in range(700)
    ]
    out = io.StringIO()
    write_jsonl(events, out)
    assert out.getvalue() == plain_jsonl(events)
    assert out.getvalue().count("\n") == 700


# ---------------------------------------------------------------------------- crafted records

AWKWARD_TEXT = [
    "",
    "plain",
    'quote " backslash \\ slash /',
    "control \x00\x01\x08\x09\x0a\x0c\x0d\x1f\x7f end",
    "non-ASCII é ß ø 中文 😀 \u2028\u2029 \ufeff",
    "lone surrogates \ud800 \udfff \udbff\udc00",
    "x" * 5000,
]
AWKWARD_FLOATS = [0.0, -0.0, 1.0, 0.1 + 0.2, 1e300, 5e-324, -1e-7, 1710234000.007947]
NON_FINITE = [math.nan, math.inf, -math.inf]


class Text(str):
    """A str subclass (written as its characters)."""


class Listed(str):
    """A str subclass with a ``to_dict``: in a tuple field, ``to_dict`` must call it."""

    def to_dict(self) -> dict[str, str]:
        return {"listed": str(self)}


class Port(enum.IntEnum):
    HTTPS = 443


class Ratio(float):
    pass


Pair = namedtuple("Pair", "a b")


def _event(**changes: Any) -> Event:
    base = Event(
        event_id=1, ts=1.5, client_ip="10.0.0.1", client_port=50000, server_ip="10.0.0.2",
        server_port=80, conn_id="C1", protocol="http/1.1", method="GET", host="mail",
        uri="/ews", status=401,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)


def test_awkward_strings_everywhere() -> None:
    for text in AWKWARD_TEXT:
        assert_same(
            _event(
                client_ip=text, host=text, uri=text, user=text, token_iss=text, outcome=text,
                reasons=(text, text), token_flags=(text,), credential=text, id_token=text,
                challenges=(Challenge(text, {text: text}, token68=text, details={"k": [text]}),),
            )
        )  # fmt: skip
        assert_same(Finding(text, "high", text, text, text, token_fps=(text,)))


def test_numbers() -> None:
    for number in AWKWARD_FLOATS + NON_FINITE:
        assert_same(_event(ts=number, response_ts=number, token_nbf=number, token_exp=-number))
        assert_same(_event(status=number, event_id=number))  # a float where an int belongs
    for number in [0, -1, 2**63, 10**30, -(10**40), True, False, Port.HTTPS]:
        assert_same(_event(event_id=number, server_port=number, ts=number, response_ts=number))
    assert_same(_event(ts=Ratio(2.5), response_ts=Ratio(math.nan), status=Port.HTTPS))
    huge = 10**5000  # past int_max_str_digits: json raises, and so must the fast path
    assert_same(_event(event_id=huge))
    assert_same(_event(token_exp=huge))


def test_none_and_empty() -> None:
    nulls = {f.name: None for f in dataclasses.fields(Event)}
    assert_same(Event(**nulls))
    assert_same(_event(challenges=(), reasons=(), token_flags=(), host=None, status=None))
    assert_same(Handshake(1, "oauth", "accepted", 1.0, 2.0, "C1", "a", "b", 80, None, (), 0))
    assert_same(PairVerdict("a", "b", 80, None, "no-oauth", "", 0))
    assert_same(TokenRecord("fp", "bearer", "jwt"))


def test_unexpected_types_in_fields() -> None:
    assert_same(_event(client_ip=Text("10.0.0.9"), host=Text("é"), uri=7, method=None))
    assert_same(_event(user=("a", "b"), domain=["x", 1], workstation={"k": "v"}, spn=b"x"[0]))
    assert_same(_event(reasons=["a", "b"], token_flags=Pair("x", "y")))
    assert_same(_event(reasons=(Text("a"), "b"), token_flags=(Listed("x"), "y")))
    assert_same(_event(reasons=("a", None, 1, 2.5, True, ("n", ("m",)), {"d": ()})))
    assert_same(_event(reasons="not a tuple", token_flags=None, challenges=None))
    assert_same(_event(challenges=[Challenge("bearer")], status=True, client_port=False))
    hs = Handshake(1, "oauth", "accepted", 1.0, 2.0, "C1", "a", "b", 80, None, (1, 2), 2)
    for probe in (True, False, None, 1, 0.0):
        assert_same(dataclasses.replace(hs, probe=probe, event_ids=(probe, probe)))


def test_nested_values() -> None:
    challenges = (
        Challenge("bearer", {"realm": "r", "scope": "s"}, details={"realm": "r"}),
        Challenge("ntlm", token68="TlRMTVNTUAACAAAA", proxy=True),
        Challenge(
            "msrtcoauth",
            {"grantType": "urn:x"},
            details={
                "trusted_issuers": [{"raw": "a@*", "realm": None, "issues": []}, {"n": math.nan}],
                7: "int key",
                2.5: "float key",
                None: "none key",
                True: "bool key",
            },
        ),
    )
    assert_same(_event(challenges=challenges))
    token = TokenRecord(
        "fp", "bearer", "jwt", nbf=1.0, exp=math.inf, outer_fps=("a", "b"),
        checks=({"id": "exp", "ok": False, "message": "é"}, {"id": "nbf", "ok": True}),
        header={"alg": "RS256", "x5t": None, "n": [1, 2.5, -0.0]},
        claims={"aud": ["a", "b"], "exp": 10**20, "nested": {"deep": [[{"x": "\x00"}]]}},
        clients=("10.0.0.1",), text="secret.token.text",
    )  # fmt: skip
    assert_same(token)
    verdict = PairVerdict(
        "a", "b", 443, "h", "oauth-with-fallback", "s", 3, classes={"oauth": 2, "ntlm": 1},
        fallbacks=({"handshake": 1, "to": "ntlm"},), issuers=("skype@contoso",),
        signatures={"verified": 2}, first_ts=1.0, last_ts=None,
    )  # fmt: skip
    assert_same(verdict)


def test_values_json_refuses_raise_the_same_error() -> None:
    loop: list[Any] = []
    loop.append(loop)
    for bad in (object(), b"bytes", {("tuple", "key"): 1}, loop, {1, 2}):
        assert outcome(lambda: to_json(_event(user=bad)))[0] == "error"  # noqa: B023
        assert_same(_event(user=bad))
        assert_same(_event(challenges=(Challenge("basic", details={"x": bad}),)))
        assert_same(_event(reasons=("ok", bad)))
    assert outcome(lambda: to_json(_event(challenges=(Challenge("b", details={"x": loop}),))))[
        1
    ] == (ValueError, "Circular reference detected")


def test_repeated_values_are_written_alike() -> None:
    """The remembered texts: the same values many times, and a full cache emptied on the way."""
    events = [_event(event_id=i, host=f"h{i % 50}", uri=f"/{i}", reasons=(f"r{i % 9}",))
              for i in range(20000)]  # fmt: skip
    out = io.StringIO()
    write_jsonl(events, out)
    assert out.getvalue() == plain_jsonl(events)


@dataclasses.dataclass
class Odd:
    """Not slotted or frozen, a field named like the lead key, annotations of every sort."""

    schema_version: Any = "mine"
    b: bool = True
    items: list[Any] = dataclasses.field(default_factory=list)
    maybe: int | str | None = None
    pairs: tuple[int, ...] = (1, 2)
    text: str = dataclasses.field(default="hidden", metadata={"secret": True})
    note: str = dataclasses.field(default="never", metadata={"internal": True})


@dataclasses.dataclass(frozen=True)
class Nothing:
    pass


def test_other_record_types_and_the_lead() -> None:
    for odd in (Odd(), Odd(None, False, [1, "a"], "s", (), "t"), Odd(maybe=5, items=[math.nan])):
        assert_same(odd)
        line = json_encoder(Odd, lead=LEAD, end="\n")(odd)
        assert json.loads(line)["schema_version"] == odd.schema_version  # the field wins
        assert line.startswith('{"schema_version":')
        out = io.StringIO()
        write_jsonl([odd], out)
        assert out.getvalue() == plain_jsonl([odd])
    assert_same(Nothing())
    assert json_encoder(Nothing, lead=(("a", 1), ("b", "\n{}")), end="!")(Nothing()) == (
        '{"a":1,"b":"\\n{}"}!'
    )
    assert to_dict(Nothing()) == {} and to_json(Nothing()) == "{}"
    with pytest.raises(TypeError):
        to_json(object())
    with pytest.raises(TypeError):
        to_dict("not a record")


def test_csv_with_mixed_record_types() -> None:
    records = [_event(), Finding("r", "high", "t", "d", "e")]
    out = io.StringIO()
    with pytest.raises(KeyError):  # a Finding has no Event columns: an error, as before
        write_csv(records, out, Event)
    with pytest.raises(KeyError):
        plain_csv(records, Event)
    assert out.getvalue() == plain_csv(records[:1], Event)  # the rows before it were written


def test_capture_records_take_the_compiled_path(
    results: list[AnalysisResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No record of the captures falls back to the plain path (that would only be slow)."""
    for result in results:
        for record_type, records in _tables(result):
            for reveal in (False, True):
                encode = json_encoder(record_type, reveal, lead=LEAD, end="\n")
                with monkeypatch.context() as m:
                    m.setitem(encode.__globals__, "slow", _no_fallback)
                    for record in records:
                        encode(record)


def _no_fallback(record: Any) -> str:
    raise AssertionError(f"plain path taken for {record!r}")


def test_jsonl_mixed_types_and_an_error_midway() -> None:
    mixed = [_event(), Finding("r", "high", "t", "d", "e"), _event(event_id=2), Nothing()]
    out = io.StringIO()
    write_jsonl(mixed, out, reveal_secrets=True)
    assert out.getvalue() == plain_jsonl(mixed, True)
    out = io.StringIO()
    with pytest.raises(TypeError):  # not a record: the lines before it are written, as before
        write_jsonl([*mixed, "not a record"], out)
    assert out.getvalue() == plain_jsonl(mixed)
