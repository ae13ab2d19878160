"""The shortcuts taken for speed give exactly what the plain code gave.

``evolve`` against ``dataclasses.replace``; the quoted-string scanners against the
character-by-character loops they replaced (every string over a small alphabet); header parsing
with the whitespace bytes where ``bytes.strip()`` and ``str.strip()`` disagree; the cached
principal, path and time helpers.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import pickle
from urllib.parse import urlsplit

import pytest

from analyzer.auth.extract import _path
from analyzer.auth.schemes import read_quoted, split_outside_quotes
from analyzer.model import Challenge, Event, Handshake, evolve, public_fields, to_dict
from analyzer.oauth.endpoints import is_metadata_uri, is_token_endpoint, looks_like_metadata_path
from analyzer.oauth.principals import parse_principal, parse_trusted_issuers
from analyzer.oauth.tokens import iso_utc
from analyzer.protocols.http1 import parse_head

EVENT = Event(
    event_id=0, ts=1.5, client_ip="10.0.0.1", client_port=50000, server_ip="10.0.0.2",
    server_port=80, conn_id="C1", protocol="http/1.1", method="GET", host="mail",
    uri="/ews", status=401, challenges=(Challenge("bearer", {"realm": "x"}),),
    reasons=("challenge",), credential="secret",
)  # fmt: skip


def test_evolve_matches_dataclasses_replace() -> None:
    changed = evolve(EVENT, event_id=7, outcome="rejected", token_flags=("expired",))
    assert type(changed) is Event  # a frozen Event, not the writable twin it was filled in
    assert pickle.loads(pickle.dumps(changed)) == changed
    assert changed == dataclasses.replace(
        EVENT, event_id=7, outcome="rejected", token_flags=("expired",)
    )
    assert (changed.event_id, changed.outcome, changed.credential) == (7, "rejected", "secret")
    assert EVENT.event_id == 0 and EVENT.outcome is None  # the original is untouched
    same = evolve(EVENT)
    assert same == EVENT and same is not EVENT
    with pytest.raises(dataclasses.FrozenInstanceError):
        changed.event_id = 8  # type: ignore[misc]
    with pytest.raises(TypeError):
        evolve(EVENT, no_such_field=1)
    challenge = evolve(EVENT.challenges[0], details={"realm": "x"})
    assert challenge == Challenge("bearer", {"realm": "x"}, details={"realm": "x"})
    hs = Handshake(1, "oauth", "accepted", 1.0, 2.0, "C1", "a", "b", 80, None, (1,), 1)
    assert evolve(hs, reason="ok") == dataclasses.replace(hs, reason="ok")


def test_records_pickle_and_copy_as_their_field_values() -> None:
    """A forked worker hands its events back pickled: the rebuilt records equal the originals,
    are of the record's own (frozen) class, nested records included, and copy like them."""
    hs = Handshake(1, "oauth", "accepted", 1.0, 2.0, "C1", "a", "b", 80, None, (1,), 1)
    for record in (EVENT, EVENT.challenges[0], hs):
        for again in (
            pickle.loads(pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)),
            copy.copy(record),
            copy.deepcopy(record),
        ):
            assert again == record and type(again) is type(record)
            assert [getattr(again, f.name) for f in dataclasses.fields(record)] == [
                getattr(record, f.name) for f in dataclasses.fields(record)
            ]
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(again, dataclasses.fields(record)[1].name, 8)
    rebuilt = pickle.loads(pickle.dumps(EVENT))
    assert type(rebuilt.challenges[0]) is Challenge and rebuilt.credential == "secret"


def test_public_fields_and_to_dict() -> None:
    names = public_fields(Event)
    names.append("mutated")  # callers get their own list
    assert "mutated" not in public_fields(Event)
    assert "credential" not in public_fields(Event)
    revealed = public_fields(Event, reveal_secrets=True)
    assert revealed[revealed.index("credential") :][:5] == [
        "credential", "assertion", "access_token", "refresh_token", "id_token",
    ]  # fmt: skip
    row = to_dict(EVENT)
    assert list(row) == public_fields(Event)
    assert row["challenges"] == [{"scheme": "bearer", "params": {"realm": "x"}}]
    assert row["reasons"] == ["challenge"] and row["token_flags"] == []
    assert to_dict(EVENT, reveal_secrets=True)["credential"] == "secret"


def _split_reference(s: str, sep: str) -> list[str]:
    """The character loop ``split_outside_quotes`` used to be."""
    parts, start, i, in_quote = [], 0, 0, False
    while i < len(s):
        c = s[i]
        if in_quote:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                in_quote = False
        elif c == '"':
            in_quote = True
        elif c == sep:
            parts.append(s[start:i])
            start = i + 1
        i += 1
    parts.append(s[start:])
    return parts


def _quoted_reference(s: str, i: int) -> tuple[str, int]:
    """The character loop ``read_quoted`` used to be."""
    out, i = [], i + 1
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            out.append(s[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    return "".join(out), len(s)


def _all_strings(alphabet: str, longest: int) -> list[str]:
    return [
        "".join(chars)
        for n in range(longest + 1)
        for chars in itertools.product(alphabet, repeat=n)
    ]


def test_quoted_string_scanners_match_the_character_loops() -> None:
    assert split_outside_quotes('a="x,y", b=z,"open, end', ",") == ['a="x,y"', " b=z", '"open, end']
    assert split_outside_quotes('a="\\",", b', ",") == ['a="\\","', " b"]
    assert read_quoted('"a\\"b" rest', 0) == ('a"b', 6)
    assert read_quoted('"open\\', 0) == ("open\\", 6)
    for s in _all_strings('"\\,;a', 6):
        assert split_outside_quotes(s, ",") == _split_reference(s, ","), s
        assert split_outside_quotes(s, ";") == _split_reference(s, ";"), s
        for i in range(len(s) + 1):
            assert read_quoted(s, i) == _quoted_reference(s, i), (s, i)


def test_header_parsing_strips_ascii_whitespace_only() -> None:
    raw = (
        b"GET /x HTTP/1.1\r\n"
        b"\x0bHost\x0c: \xa0mail\x85 \t\r\n"  # \xa0 and \x85 are Unicode spaces, not ASCII
        b"X-Sep\x1c: v\r\n"
        b"no colon here\r\n"
        b"\r\n"
        b"Folded: a\r\n"
        b" \x0b b \r\n"
        b"\tc\r\n"
        b"Empty:\r"
    )
    msg = parse_head(raw, 2.0)
    assert msg is not None
    assert (msg.method, msg.uri, msg.version, msg.ts) == ("GET", "/x", "1.1", 2.0)
    assert msg.headers == [
        ("host", "\xa0mail\x85"),
        ("x-sep\x1c", "v"),
        ("folded", "a b c"),
        ("empty", ""),
    ]
    response = parse_head(b"HTTP/1.0 401 Unauthorized\nWWW-Authenticate: NTLM", 3.0)
    assert response is not None
    assert (response.status, response.reason, response.version) == (401, "Unauthorized", "1.0")
    assert response.headers == [("www-authenticate", "NTLM")]


def test_path_shortcut_matches_urlsplit() -> None:
    uris = [
        "/ews/exchange.asmx?id=1#f", "/a#b?c", "/", "/x?", "//host/p?q", "/a\tb?c", "/a\nb",
        "http://h/p?q", "*", "", "?q", "/%2F?x=/y", "/a:b?c:d",
    ]  # fmt: skip
    for uri in uris:
        assert _path(uri) == (urlsplit(uri).path or uri), uri
    assert _path("/a\tb?c") == "/ab"


def test_cached_helpers_answer_like_uncached_ones() -> None:
    for _ in range(2):  # the second round is answered from the caches
        assert is_metadata_uri("/autodiscover/metadata/json/1?x=1") == "s2s-metadata"
        assert looks_like_metadata_path("/metadata/jason/1") is True
        assert is_token_endpoint("/OAuth2/V2.0/Token/") is True
        assert is_metadata_uri(None) is None  # type: ignore[arg-type]
        assert iso_utc(1700000000) == iso_utc(1700000000.0) == "2023-11-14T22:13:20Z"
        assert iso_utc(float("nan")) is None and iso_utc(1e20) is None
    spaced = parse_principal("00000002-0000-0ff1-ce00-000000000000@contoso\u2028.com")
    assert "whitespace inside principal" in spaced.issues
    plain = parse_principal("00000002-0000-0ff1-ce00-000000000000@contoso.com", role="issuer")
    assert plain is parse_principal(
        "00000002-0000-0ff1-ce00-000000000000@contoso.com", role="issuer"
    )
    assert plain.app_name == "Exchange" and plain.issues == ()
    listed = parse_trusted_issuers("00000001-0000-0000-c000-000000000000@*, a@b")
    listed.append(plain)  # each call gets its own list
    assert [
        p.raw for p in parse_trusted_issuers("00000001-0000-0000-c000-000000000000@*, a@b")
    ] == [
        "00000001-0000-0000-c000-000000000000@*",
        " a@b",
    ]
