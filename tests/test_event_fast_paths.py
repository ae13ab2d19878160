"""The shortcuts taken to turn exchanges into events faster give exactly what the plain code gave.

Strict-then-lenient base64 against the lenient decoder alone; the regex-free scheme split against
the regex; the bracket count that skips the JSON depth walk; the check plan against every check
written out; one copy per event in post-processing against enrich-then-group; the memos of
credentials, challenges and request targets against the parsers; the token cache keyed by text.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import itertools
import json
import re
import struct
from pathlib import Path
from typing import Any

import pytest

from analyzer.analysis.handshakes import group_handshakes
from analyzer.analysis.tokens import TokenAnalysis, load_keys
from analyzer.auth import extract
from analyzer.auth.challenges import describe_challenge
from analyzer.auth.memo import Memo
from analyzer.auth.ntlm import b64decode_lenient, parse_ntlm
from analyzer.auth.schemes import (
    _KNOWN_SCHEMES,
    _SCHEME_WORD,
    _TOKEN_FULL,
    _split_scheme,
    parse_challenges,
    parse_credential,
)
from analyzer.engine import analyze_paths
from analyzer.model import Event, evolve
from analyzer.oauth.checks import check_token, failed, plan_checks
from analyzer.oauth.endpoints import (
    is_metadata_uri,
    is_token_endpoint,
    looks_like_metadata_path,
    query_access_token,
    redact_uri,
)
from analyzer.oauth.tokens import TokenDecoder, decode_token, json_depth
from analyzer.protocols.http1 import parse_head
from analyzer.protocols.http_exchange import Exchange

CAPTURES = Path(__file__).resolve().parents[1] / "captures"


# ------------------------------------------------------------------------------------ base64
_WHITESPACE = re.compile(r"\s+")


def lenient_only(text: Any, max_bytes: int) -> bytes | None:
    """The decoder as it was before the strict fast path: the reference."""
    if not isinstance(text, str):
        return None
    compact = _WHITESPACE.sub("", text).rstrip("=")
    if not compact or len(compact) > (max_bytes * 4) // 3 + 4 or len(compact) % 4 == 1:
        return None
    try:
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def test_strict_then_lenient_base64_gives_the_lenient_bytes() -> None:
    cases = {
        "TlRMTVNTUAABAAAA": b"NTLMSSP\x00\x01\x00\x00\x00",  # valid, no padding needed
        "QUJD": b"ABC",
        "QQ==": b"A",  # padded
        "QQ": b"A",  # unpadded
        "QUI": b"AB",
        "QQ=": b"A",  # short padding
        "QQ===": b"A",  # excess padding
        " QU\r\nJD\t": b"ABC",  # whitespace-laden
        "Q U J D": b"ABC",
        "QR==": b"A",  # non-zero bits past the end: tolerated by both
        "+/+/": b"\xfb\xff\xbf",
        "-_-_": None,  # url-safe alphabet is not standard base64
        "QQ==QQ==": None,  # padding in the middle
        "a": None,  # one character over a multiple of four
        "abcde": None,
        "!!!!": None,  # junk
        "QUJ\u00e9": None,  # not ASCII
        "": None,
        "====": None,
        "   ": None,
    }
    for text, expected in cases.items():
        assert b64decode_lenient(text, 1024) == expected, text
        assert lenient_only(text, 1024) == expected, text
    assert b64decode_lenient(b"QUJD", 1024) is None  # type: ignore[arg-type]
    assert b64decode_lenient(None, 1024) is None  # type: ignore[arg-type]
    # the size bound holds on both paths: 8 bytes fit, 9 do not
    assert b64decode_lenient(base64.b64encode(bytes(8)).decode(), 8) == bytes(8)
    assert b64decode_lenient(base64.b64encode(bytes(12)).decode(), 8) is None
    # every length and padding variant of real base64, plus whitespace and url-safe forms
    for n in range(0, 40):
        data = bytes((i * 37 + n) % 256 for i in range(n))
        padded = base64.b64encode(data).decode()
        variants = [
            padded,
            padded.rstrip("="),
            padded + "=",
            " ".join(padded[i : i + 5] for i in range(0, len(padded), 5)),
            "\n" + padded + "\n",
            base64.urlsafe_b64encode(data).decode(),
        ]
        for text in variants:
            assert b64decode_lenient(text, 64) == lenient_only(text, 64), (n, text)
        if n:
            assert b64decode_lenient(padded, 64) == data


# ------------------------------------------------------------------------------ scheme split
_SCHEME_SPLIT = re.compile(r"(\S+)(?:\s+(.*))?\Z", re.DOTALL)


def split_with_regex(value: str) -> tuple[str, str]:
    """``_split_scheme`` as it was, with the regex: the reference."""
    stripped = value.strip(" \t\r\n")
    m = _SCHEME_SPLIT.match(stripped)
    if not m:
        return "", ""
    first, rest = m.group(1), m.group(2)
    if not _TOKEN_FULL.match(first):
        return "", stripped
    if rest is None:
        if first.lower() in _KNOWN_SCHEMES or _SCHEME_WORD.match(first):
            return first, ""
        return "", first
    return first, rest.strip(" \t\r\n")


def test_scheme_split_matches_the_regex() -> None:
    # \x0b, \x1c, \x85 and \u3000 are whitespace to str.split and to \s, not to the OWS strip
    alphabet = ["B", "=", ".", " ", "\t", "\n", "\x0b", "\x1c", "\x85", "\u3000"]
    count = 0
    for size in range(6):
        for chars in itertools.product(alphabet, repeat=size):
            value = "".join(chars)
            assert _split_scheme(value) == split_with_regex(value), repr(value)
            count += 1
    assert count == 111111
    assert _split_scheme("Bearer  abc def \x0b") == ("Bearer", "abc def \x0b")
    assert _split_scheme("Bearer \x0b") == ("Bearer", "")
    assert _split_scheme("\x0bBearer x") == ("", "")
    assert _split_scheme("eyJhbGciOiJub25lIn0.e30.") == ("", "eyJhbGciOiJub25lIn0.e30.")


def test_basic_with_control_characters_names_no_user() -> None:
    def basic(pair: str) -> tuple:
        cred = parse_credential("Basic " + base64.b64encode(pair.encode()).decode())
        assert cred is not None
        return cred.user, cred.domain, cred.password_len

    assert basic("CONTOSO\\alice:Spring2026!") == ("alice", "CONTOSO", 11)
    assert basic("al\x7fice:pw") == (None, None, None)  # DEL
    assert basic("alice:p\tw") == (None, None, None)  # a C0 control anywhere
    assert basic("alice:p\x80w") == ("alice", None, 3)  # C1 is not a control here


# ------------------------------------------------------------------------------- JSON depth
def jwt(claims_json: str) -> str:
    def seg(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return seg(b'{"alg":"none"}') + "." + seg(claims_json.encode()) + "."


def nested(levels: int) -> str:
    """A claims object ``levels`` deep: {"a": [[...[1]...]]}."""
    return '{"a":' + "[" * (levels - 1) + "1" + "]" * (levels - 1) + "}"


def test_json_depth_walk_and_its_bracket_shortcut() -> None:
    assert [json_depth(v) for v in (5, "x", None, [], {}, [[], [[]]])] == [0, 0, 0, 1, 1, 3]
    assert json_depth({"a": [{"b": 1}, 2], "c": {}}) == 3
    assert json_depth(json.loads(nested(64))) == 64
    decoder = TokenDecoder()
    assert decoder(jwt(nested(64))).claims is not None
    too_deep = decoder(jwt(nested(65)))
    assert too_deep.format == "malformed"
    assert "claims: JSON nested too deeply (> 64 levels)" in too_deep.problems
    # brackets inside strings count towards the shortcut, but the walk then finds the real depth
    text = '{"note": "' + "{[" * 100 + '", "iss": "x"}'
    token = decoder(jwt(text))
    assert token.problems == () and token.iss == "x"


# ------------------------------------------------------------------------------- check plan
def unsigned_token(claims: dict) -> str:
    def seg(obj: Any) -> str:
        raw = json.dumps(obj, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{seg({'typ': 'JWT', 'alg': 'none'})}.{seg(claims)}."


EXCHANGE = "00000002-0000-0ff1-ce00-000000000000"
REALM = "72f988bf-86f1-41af-91ab-2d7cd011db47"
AUD = f"{EXCHANGE}/mail.contoso.com@{REALM}"
NBF, EXP = 1_700_000_000, 1_700_003_600


def test_check_plan_gives_check_token_for_every_time_of_use() -> None:
    actor = unsigned_token(
        {"aud": AUD, "iss": f"{EXCHANGE}@{REALM}", "nameid": f"{EXCHANGE}@{REALM}",
         "nbf": NBF, "exp": EXP + 100_000}
    )  # fmt: skip
    tokens = [
        unsigned_token({"aud": AUD, "iss": "x@y", "nbf": NBF, "exp": EXP}),
        unsigned_token(
            {"aud": AUD, "iss": f"{EXCHANGE}@{REALM}", "nbf": NBF, "exp": EXP, "actortoken": actor}
        ),
        unsigned_token({"aud": "api://x", "iss": "https://sts", "iat": NBF, "exp": str(EXP)}),
        unsigned_token({"aud": AUD, "nbf": 133_000_000_000_000_000, "exp": 1_700_000_000_000}),
        unsigned_token({"iss": "x"}),  # no times at all
        "opaque-token",
        "",
    ]
    times = [None, NBF - 301, NBF - 300, NBF, EXP, EXP + 300, EXP + 301, EXP + 200_000]
    for text in tokens:
        token = decode_token(text)
        for host in (None, "mail.contoso.com", "other.contoso.com"):
            for role in ("bearer", "access-token", "assertion"):
                plan = plan_checks(token, host=host, role=role)
                for at in times:
                    checks = check_token(token, at=at, host=host, role=role)
                    assert plan.checks(at) == checks
                    assert plan.failed(at) == failed(checks), (text, host, role, at)

    simple = plan_checks(decode_token(tokens[0]), host="mail.contoso.com")
    ids = [c.id for c in simple.checks(EXP + 301)]
    assert ids == [
        "decodes", "signed", "required-claims", "audience-form", "audience-host", "principals",
        "not-yet-valid", "expired", "lifetime",
    ]  # fmt: skip
    fixed = ("signed", "required-claims", "principals")  # alg none; no nameid; "x" not a GUID
    assert simple.failed(EXP + 301) == (*fixed, "expired")
    assert simple.failed(NBF - 301) == (*fixed, "not-yet-valid")
    assert simple.failed(EXP + 300) == fixed  # within the clock skew
    assert simple.failed(None) == fixed

    layered = plan_checks(decode_token(tokens[1]))  # an unsigned actor: "decodes" fails too
    assert [c.id for c in layered.checks(NBF)][-7:] == [
        "actor-decodes", "actor-required-claims", "actor-audience-form", "actor-principals",
        "actor-not-yet-valid", "actor-expired", "actor-lifetime",
    ]  # fmt: skip
    assert layered.failed(EXP + 301) == ("decodes", "actor-signed", "expired", "actor-lifetime")
    assert layered.failed(EXP + 100_301) == (
        "decodes", "actor-signed", "expired", "actor-expired", "actor-lifetime",
    )  # fmt: skip
    units = plan_checks(decode_token(tokens[3]))  # FILETIME nbf, millisecond exp
    assert [c.id for c in units.checks(NBF)][-4:] == [
        "time-units", "not-yet-valid", "expired", "lifetime",
    ]  # fmt: skip
    assert units.failed(NBF) == ("signed", "required-claims", "time-units", "lifetime")


# ------------------------------------------------------------------- one copy per event
HANDSHAKE_FIELDS = ("handshake_id", "auth_class", "outcome")


def unenriched(events: list[Event]) -> list[Event]:
    """The events as the collector made them: token and handshake fields back to defaults."""
    defaults = {
        f.name: f.default
        for f in dataclasses.fields(Event)
        if (f.name.startswith("token_") and f.name != "token_type") or f.name in HANDSHAKE_FIELDS
    }
    return [evolve(e, **defaults) for e in events]


@pytest.mark.parametrize(
    ("capture", "keys"),
    [
        ("exchange-sfb.pcap", ["keys/acs.cert.pem"]),
        ("findings.pcap", []),
        ("messy.pcapng", []),
        ("healthy-oauth.pcap", []),
        ("classes.pcap", []),
    ],
)
def test_one_copy_per_event_matches_enrich_then_group(capture: str, keys: list[str]) -> None:
    key_files = [str(CAPTURES / k) for k in keys]
    result = analyze_paths([str(CAPTURES / capture)], key_files=key_files)
    raw = unenriched(result.events)
    tokens = TokenAnalysis(load_keys(raw, key_files))
    two_steps = group_handshakes(tokens.enrich(raw))
    assert two_steps == (result.events, result.handshakes)
    assert any(e.token_fp for e in result.events) or capture == "classes.pcap"
    assert any(h.token_fps for h in result.handshakes) or capture == "classes.pcap"
    # the merged form by hand, and the plain form on events that already carry token fields
    fields = TokenAnalysis(load_keys(raw, key_files)).event_fields(raw)
    assert group_handshakes(raw, fields) == two_steps
    assert group_handshakes(tokens.enrich(raw)) == two_steps
    with pytest.raises(ValueError):
        group_handshakes(raw, fields[:-1])


# ------------------------------------------------------------------------------- memos
def test_memo_is_bounded_in_entries_and_characters() -> None:
    memo = Memo(max_entries=2, max_chars=10)
    memo.put("a", 1, 3)
    memo.put("b", 2, 3)
    assert (memo.get("a"), memo.get("b"), len(memo)) == (1, 2, 2)
    memo.put("c", 3, 3)  # a third entry: starts over
    assert (memo.get("a"), memo.get("c"), len(memo), memo.chars) == (None, 3, 1, 3)
    memo.put("d", 4, 8)  # 3 + 8 characters: starts over
    assert (memo.get("c"), memo.get("d"), memo.chars) == (None, 4, 8)
    memo.put("e", 5, 11)  # larger than the whole budget: not kept, nothing dropped
    assert (memo.get("e"), memo.get("d")) == (None, 4)
    memo.clear()
    assert (len(memo), memo.chars) == (0, 0)


def head(text: str) -> Any:
    message = parse_head(text.replace("\n", "\r\n").encode("latin-1"), 1.0)
    assert message is not None
    return message


def test_credential_memo_gives_what_the_parser_gives() -> None:
    values = [
        ("Bearer " + unsigned_token({"iss": "x"}), "authorization"),
        ("Basic YWxpY2U6cHc=", "authorization"),
        ("Basic YWxpY2U6cHc=", "proxy-authorization"),  # the source is part of the key
        ("NTLM TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAKAGFKAAAADw==", "authorization"),
        ('Digest username="carol", response="abc"', "authorization"),
        ("  ", "authorization"),
    ]
    for value, header in values:
        first = extract._header_credential(value, header)
        again = extract._header_credential("".join(value), header)  # an equal, new string
        assert first == parse_credential(value, source=header) == again
        if first is not None:
            assert (first is again) == (first.scheme in ("bearer", "basic")), value
    assert extract._header_credential("  ", "authorization") is None


def test_challenge_memo_gives_what_parse_and_describe_give() -> None:
    ntlm_type2 = base64.b64encode(
        b"NTLMSSP\x00\x02\x00\x00\x00" + struct.pack("<HHI", 0, 0, 48) + struct.pack("<I", 1)
        + bytes(8) + bytes(8) + struct.pack("<HHI", 4, 4, 48) + b"\x00\x00\x00\x00"
    ).decode()  # fmt: skip
    cases = [
        (["Negotiate", "NTLM"], False),
        (
            [
                'Bearer realm="r", client_id="00000003-0000-0ff1-ce00-000000000000", '
                'trusted_issuers="00000001-0000-0000-c000-000000000000@*"',
                "NTLM",
            ],
            False,
        ),
        (['Basic realm="Restricted"'], True),
        ([f"NTLM {ntlm_type2}"], False),
        (['MsRtcOAuth href="https://sfb/oauth",grant_type="urn:x,urn:y"'], False),
    ]
    for values, proxy in cases:
        expected = tuple(
            dataclasses.replace(c, details=describe_challenge(c))
            for c in parse_challenges(values, proxy=proxy)
        )
        first = extract._challenges(values, proxy)
        again = extract._challenges([str(v) for v in values], proxy)
        assert first == expected == again
        blob = any(c.token68 for c in first)
        assert (first is again) == (not blob)
    assert extract._challenges([], False) == ()
    type2 = extract._challenges([f"NTLM {ntlm_type2}"], False)[0]
    assert type2.details["ntlm_type"] == 2


def test_request_target_facts_match_the_functions() -> None:
    targets = [
        "/ews/exchange.asmx",
        "/api/items?access_token=abc%2Bdef&x=1",
        "/x?code=secret#access_token=t",
        "/metadata/json/1",
        "/metadata/jason/1",
        "/.well-known/openid-configuration?p=1",
        "/oauth2/v2.0/token",
        "http://sts.contoso.com/adfs/oauth2/token",
        "//host/path",
        "/a\tb?access_token=x",
        "",
        "*",
        "/" + "a" * 5000,
        "/" + "a" * 600_000,  # over the memo's whole budget: not kept, same answers
    ]
    for uri in targets:
        facts = extract._uri_facts(uri)
        path = extract._path(uri)
        assert facts == (
            redact_uri(uri),
            query_access_token(uri),
            bool(is_metadata_uri(path)),
            looks_like_metadata_path(path),
            is_token_endpoint(path),
            extract._authority(uri),
        ), uri
        assert (extract._uri_facts(uri) is facts) == (len(uri) < 100_000)


def test_build_event_uses_the_memos_and_copies_nothing_it_need_not() -> None:
    token = unsigned_token({"iss": "x"})
    request = head(
        f"GET /api/items?access_token={token} HTTP/1.1\nHost: api\nAuthorization: Bearer {token}\n"
    )
    response = head('HTTP/1.1 401 Unauthorized\nWWW-Authenticate: Bearer realm="r"\n')
    exchange = Exchange("C1", "10.0.0.1", 50000, "10.0.0.2", 80, request, response)
    first = extract.build_event(exchange, 3)
    second = extract.build_event(exchange, 4)
    assert first is not None and second is not None
    assert evolve(first, event_id=4) == second
    assert first.challenges is second.challenges  # the same described challenges, kept once
    assert (first.scheme, first.auth_header, first.credential) == ("bearer", "authorization", token)
    assert first.uri == "/api/items?access_token=REDACTED"
    assert first.reasons == ("credential", "challenge", "denied")
    assert first.challenges[0].details == {"realm": "r"}
    # an Event made by __init__ from the same values is equal (the blank-copy build is faithful)
    assert Event(**{f.name: getattr(first, f.name) for f in dataclasses.fields(Event)}) == first
    query_only = Exchange(
        "C2", "10.0.0.1", 50001, "10.0.0.2", 80, head("GET /x?access_token=q1 HTTP/1.1\n"), None
    )
    event = extract.build_event(query_only)
    assert event is not None
    assert (event.auth_header, event.credential, event.status) == ("query", "q1", None)


# ------------------------------------------------------------------------------- tokens
def test_token_cache_is_keyed_by_the_text() -> None:
    decoder = TokenDecoder()
    text = unsigned_token({"iss": "x", "n": 1})
    copy = "".join([text[:10], text[10:]])
    assert copy == text and copy is not text
    first = decoder(text)
    assert decoder(copy) is first
    assert decoder.cache_info()[:2] == (1, 1)
    assert decoder(unsigned_token({"iss": "x", "n": 2})) is not first


# --------------------------------------------------------------------------------- NTLM
def test_av_pairs_read_as_before() -> None:
    def pair(av_id: int, value: bytes) -> bytes:
        return struct.pack("<HH", av_id, len(value)) + value

    def challenge_message(info: bytes) -> bytes:
        target = "CONTOSO".encode("utf-16-le")
        return (
            b"NTLMSSP\x00" + struct.pack("<I", 2)
            + struct.pack("<HHI", len(target), len(target), 48)
            + struct.pack("<I", 0x00800001) + bytes(8) + bytes(8)
            + struct.pack("<HHI", len(info), len(info), 48 + len(target)) + target + info
        )  # fmt: skip

    info = (
        pair(2, "CONTOSO".encode("utf-16-le"))
        + pair(1, "SRV".encode("utf-16-le") + b"\x41")  # odd length: the last byte dropped
        + pair(3, b"\x00\xd8\x41\x00")  # a lone surrogate, replaced
        + pair(2, "AGAIN".encode("utf-16-le"))  # a duplicate, reported
        + pair(6, struct.pack("<I", 2))
        + pair(7, struct.pack("<Q", 133_000_000_000_000_000))
        + pair(99, b"xyz")
        + pair(0, b"")
        + b"\x01\x02"  # bytes after MsvAvEOL
    )
    parsed = parse_ntlm(challenge_message(info))
    assert parsed is not None
    assert parsed.target_name == "CONTOSO"
    assert parsed.target_info == {
        "NbDomainName": "CONTOSO",
        "NbComputerName": "SRV",
        "DnsComputerName": "\ufffdA",
        "Flags": "0x00000002 (MIC)",
        "Timestamp": "2022-06-18T04:26:40Z",
        "AvId99": "3 bytes",
    }
    assert parsed.problems == ("duplicate AV pair NbDomainName", "2 bytes after MsvAvEOL")
    overrun = parse_ntlm(challenge_message(pair(2, b"X\x00") + struct.pack("<HH", 1, 16) + b"abc"))
    assert overrun is not None and overrun.target_info == {"NbDomainName": "X"}
    assert overrun.problems == ("AV pair 1 runs past the end of the list",)
    no_eol = parse_ntlm(challenge_message(pair(2, b"X\x00") + b"\x00"))
    assert no_eol is not None and no_eol.problems == ("AV pair list ends without MsvAvEOL",)
