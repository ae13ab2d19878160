"""Hostile input found already: captures that crashed a whole run or leaked a secret.

Each capture is written with scapy (real bytes on real TCP connections) and read through the real
pipeline and command line; the assertions name the exact events, warnings and output text.
"""

from __future__ import annotations

import base64
import html
import importlib
import io
import json
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from wire_kit import CLIENT, OK, SERVER, T0, Exchange, connection, write_capture

from analyzer.auth.schemes import fingerprint
from analyzer.cli import main
from analyzer.engine import analyze_paths
from analyzer.flows import tcp
from analyzer.report.times import format_utc

scapy = pytest.importorskip("scapy.all")

CAPTURES = Path(__file__).resolve().parents[1] / "captures"


def basic_get(
    user: str, password: str = "pw", extra: bytes = b"", host: bytes = b"web.test"
) -> bytes:
    credential = base64.b64encode(f"{user}:{password}".encode())
    head = b"GET /a HTTP/1.1\r\n" + (b"Host: " + host + b"\r\n" if host else b"")
    return head + b"Authorization: Basic " + credential + b"\r\n" + extra + b"\r\n"


@pytest.fixture(params=["native", "pure"])
def walk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run the test with the native record walk and with the pure-Python reader."""
    if request.param == "native" and tcp.GrantTable is None:
        pytest.skip("native walk not built")
    monkeypatch.setenv(tcp.PURE_PYTHON_ENV, "1" if request.param == "pure" else "0")
    yield request.param


# -- 1. absurd body lengths ----------------------------------------------------------------------
HUGE_LENGTH = b"12345678901234567890123"  # 23 digits: past 2**64
HUGE_CHUNK = b"f" * 40  # 40 hex digits


def absurd_lengths_capture(path: Path) -> str:
    return write_capture(
        path,
        [  # a response whose Content-Length is absurd, then the next exchange
            (
                basic_get("alice"),
                b"HTTP/1.1 200 OK\r\nContent-Length: " + HUGE_LENGTH + b"\r\n\r\n",
            ),
            (basic_get("bob"), OK),
        ],
        [  # a chunk size of 40 hex digits
            (
                basic_get("carol"),
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + HUGE_CHUNK + b"\r\n",
            ),
            (basic_get("dave"), OK),
        ],
        [  # a request whose Content-Length is absurd
            (basic_get("erin", extra=b"Content-Length: " + HUGE_LENGTH + b"\r\n"), OK),
            (basic_get("frank"), OK),
        ],
    )


def test_absurd_lengths_skip_one_body_not_the_capture(tmp_path: Path, walk: str) -> None:
    path = absurd_lengths_capture(tmp_path / "lengths.pcap")
    result = analyze_paths([path])
    got = [(e.user, e.client_port, e.status) for e in result.events]
    assert got == [
        ("alice", 40001, 200),
        ("bob", 40001, 200),
        ("carol", 40002, 200),
        ("dave", 40002, 200),
        ("erin", 40003, 200),
        ("frank", 40003, 200),
    ]
    conn = {e.client_port: e.conn_id for e in result.events}
    tail = "body skipped, reading resumed at the next message"
    assert result.captures[0].warnings == [
        f"{conn[40001]} {SERVER}:80 -> {CLIENT}:40001: 1 HTTP message(s) with an absurd body "
        f"length (first: Content-Length 12345678901234567890123); {tail}",
        f"{conn[40002]} {SERVER}:80 -> {CLIENT}:40002: 1 HTTP message(s) with an absurd body "
        f"length (first: chunk size {'f' * 40}); {tail}",
        f"{conn[40003]} {CLIENT}:40003 -> {SERVER}:80: 1 HTTP message(s) with an absurd body "
        f"length (first: Content-Length 12345678901234567890123); {tail}",
    ]


def test_absurd_lengths_every_command_goes_on(
    tmp_path: Path, walk: str, capsys: pytest.CaptureFixture
) -> None:
    path = absurd_lengths_capture(tmp_path / "lengths.pcap")
    assert main(["analyze", path]) == 0
    out = capsys.readouterr().out
    assert out.count("with an absurd body length") == 3
    assert f"  {CLIENT} -> web.test ({SERVER}:80): NO-OAUTH - " in out
    assert main(["analyze", path, "--format", "jsonl"]) == 0
    assert capsys.readouterr().out.count('"scheme":"basic"') == 6
    assert main(["verify", path, "--json"]) == 1
    assert '"result": "FAIL"' in capsys.readouterr().out
    report = tmp_path / "report.html"
    assert main(["report", path, "-o", str(report)]) == 0
    assert "with an absurd body length (first: chunk size" in report.read_text(encoding="utf-8")


# -- 2. a pair without Host next to one with it --------------------------------------------------
def test_pair_without_host_sorts_first_in_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = write_capture(
        tmp_path / "nohost.pcap",
        [(basic_get("alice"), OK)],
        [(basic_get("bob", host=b""), OK)],
    )
    verdicts = analyze_paths([path]).verdicts
    assert [(v.host, v.verdict, v.exchanges) for v in verdicts] == [
        (None, "no-oauth", 1),
        ("web.test", "no-oauth", 1),
    ]
    assert main(["analyze", path]) == 0
    out = capsys.readouterr().out
    verdicts_text = out.split("Verdicts\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert [line.split(": NO-OAUTH - ")[0] for line in verdicts_text] == [
        f"  {CLIENT} -> {SERVER} ({SERVER}:80)",
        f"  {CLIENT} -> web.test ({SERVER}:80)",
    ]
    for extra in (["--format", "jsonl"], ["--format", "csv"], ["--findings"], ["--tokens"]):
        assert main(["analyze", path, *extra]) == 0
    capsys.readouterr()
    assert main(["analyze", path, "--format", "parquet", "-o", str(tmp_path / "pq")]) == 0
    assert main(["report", path, "-o", str(tmp_path / "r.html")]) == 0
    capsys.readouterr()
    assert main(["verify", path]) == 1
    assert capsys.readouterr().out.startswith("FAIL         command line: all traffic\n")


# -- 3. lone surrogates in token claims ----------------------------------------------------------
def b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def unsigned_jwt(claims_json: bytes) -> bytes:
    """An alg-none JWT whose claims are exactly ``claims_json`` (escapes kept as written)."""
    return b64url(b'{"alg":"none","typ":"JWT"}') + b"." + b64url(claims_json) + b"."


SURROGATE_CLAIMS = (
    rb'{"iss":"issuer\ud800x","aud":"https://web.test/","upn":"eve\udfff@contoso.com",'
    rb'"nbf":1772440000,"exp":1772445600,"\udc00key":["\ud83d\ude00","\ud800"]}'
)


def surrogate_capture(path: Path) -> str:
    bearer = b"Authorization: Bearer " + unsigned_jwt(SURROGATE_CLAIMS) + b"\r\n"
    form = b"grant_type=client_credentials&client_id=app"
    answer = rb'{"error":"invalid_client\udbff","error_description":"bad \udc80 secret"}'
    return write_capture(
        path,
        [(b"GET /a HTTP/1.1\r\nHost: web.test\r\n" + bearer + b"\r\n", OK)],
        [
            (
                b"POST /oauth2/token HTTP/1.1\r\nHost: login.test\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: " + str(len(form)).encode() + b"\r\n\r\n" + form,
                b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(answer)).encode() + b"\r\n\r\n" + answer,
            )
        ],
    )


def test_lone_surrogates_become_replacement_characters(tmp_path: Path) -> None:
    result = analyze_paths([surrogate_capture(tmp_path / "surrogate.pcap")])
    bearer, token_call = result.events
    assert bearer.token_iss == "issuer\ufffdx"
    assert bearer.token_subject == "eve\ufffd@contoso.com"
    assert token_call.oauth_error == "invalid_client\ufffd"
    (token,) = result.tokens
    assert token.claims is not None
    assert token.claims["\ufffdkey"] == ["\U0001f600", "\ufffd"]  # a real pair stays whole


def test_lone_surrogates_reach_every_writer(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """capsys encodes to UTF-8 strictly, as a real terminal or pipe does."""
    path = surrogate_capture(tmp_path / "surrogate.pcap")
    outputs = {}
    for name, extra in {
        "table": [],
        "jsonl": ["--format", "jsonl"],
        "csv": ["--format", "csv"],
        "tokens": ["--tokens"],
        "tokens-jsonl": ["--tokens", "--format", "jsonl"],
        "tokens-csv": ["--tokens", "--format", "csv"],
        "findings": ["--findings"],
        "revealed": ["--format", "jsonl", "--reveal-secrets"],
    }.items():
        assert main(["analyze", path, *extra]) == 0, name
        outputs[name] = capsys.readouterr().out
    assert "issuer\ufffdx -> https://web.test/ [unsigned]" in outputs["table"]
    assert '"token_iss":"issuer\ufffdx"' in outputs["jsonl"]
    assert "issuer\ufffdx" in outputs["csv"] and "issuer\ufffdx" in outputs["tokens-csv"]
    assert '"\ufffdkey":["\U0001f600","\ufffd"]' in outputs["tokens-jsonl"]
    assert main(["analyze", path, "--format", "parquet", "-o", str(tmp_path / "pq")]) == 0
    report = tmp_path / "r.html"
    assert main(["report", path, "-o", str(report)]) == 0
    assert "issuer\ufffdx" in report.read_text(encoding="utf-8")
    capsys.readouterr()
    assert main(["verify", path, "--json"]) in (0, 1)  # the unsigned token may fail a rule
    assert json.loads(capsys.readouterr().out)["result"] in ("PASS", "FAIL")
    assert main(["verify", path]) in (0, 1)
    capsys.readouterr()
    token = unsigned_jwt(SURROGATE_CLAIMS).decode()
    assert main(["decode", token, "--at", "1772442000"]) in (0, 1)  # 1: a verdict of problems
    assert "eve\ufffd@contoso.com" in capsys.readouterr().out


def test_lone_surrogates_in_the_rich_summary(tmp_path: Path) -> None:
    from analyzer.report.terminal import write_rich

    result = analyze_paths([surrogate_capture(tmp_path / "surrogate.pcap")])
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8", newline="")
    write_rich(result.events, result.captures, result.verdicts, result.findings, out)
    out.flush()
    assert "issuer\ufffdx" in raw.getvalue().decode("utf-8")


# -- 4. times out of range -----------------------------------------------------------------------
def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def _block(kind: int, body: bytes) -> bytes:
    body = _pad4(body)
    return struct.pack("<II", kind, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))


def _option(code: int, value: bytes) -> bytes:
    return _pad4(struct.pack("<HH", code, len(value)) + value)


def write_pcapng(path: Path, packets: list[Any], tsoffset: int) -> str:
    """``packets`` on one Ethernet interface whose ``if_tsoffset`` adds ``tsoffset`` seconds."""
    out = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + _option(0, b""))
    options = _option(14, struct.pack("<q", tsoffset)) + _option(0, b"")
    out += _block(1, struct.pack("<HHI", 1, 0, 0) + options)
    for packet in packets:
        micros, frame = round(float(packet.time) * 1e6), bytes(packet)
        head = struct.pack("<IIIII", 0, micros >> 32, micros & 0xFFFFFFFF, len(frame), len(frame))
        out += _block(6, head + _pad4(frame))
    path.write_bytes(out)
    return str(path)


# exp 1e15 reads as unix milliseconds: 1e12 s, year 33658; nbf far before year 1
ODD_TIMES_TOKEN = unsigned_jwt(
    b'{"iss":"i@contoso.com","aud":"https://web.test/","exp":1e15,"nbf":-99999999999,'
    b'"iat":1772440000}'
)


def odd_times_capture(path: Path, tsoffset: int) -> str:
    bearer = b"GET /a HTTP/1.1\r\nHost: web.test\r\nAuthorization: Bearer " + ODD_TIMES_TOKEN
    exchanges = [(bearer + b"\r\n\r\n", OK), (basic_get("alice"), OK)]
    return write_pcapng(path, connection(exchanges, 40001, T0), tsoffset)


def test_format_utc() -> None:
    assert format_utc(None) == "-"
    assert format_utc(T0 + 0.0304) == "2026-03-02 09:00:00.030"
    assert format_utc(T0 + 0.0304, 0) == "2026-03-02 09:00:00"
    assert format_utc(T0 + 0.0304, -1) == "2026-03-02 09:00"
    assert format_utc(T0 + 0.0304, 6, date=False) == "09:00:00.030400"
    assert format_utc(-1.5) == "1969-12-31 23:59:58.500"
    assert format_utc(1e15) == "<invalid time 1000000000000000>"
    assert format_utc(-1e15, 0, date=False) == "<invalid time -1000000000000000>"
    assert format_utc(253402300800.0) == "<invalid time 253402300800>"  # year 10000
    assert format_utc(1e300) == "<invalid time 1e+300>"
    assert format_utc(float("nan")) == "<invalid time nan>"
    assert format_utc(-float("inf")) == "<invalid time -inf>"


@pytest.mark.parametrize("tsoffset", [10**15, -(10**12)])
def test_packet_times_out_of_range_are_shown_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture, tsoffset: int
) -> None:
    path = odd_times_capture(tmp_path / "odd.pcapng", tsoffset)
    result = analyze_paths([path])
    ts = [e.ts for e in result.events]
    assert ts == [T0 + tsoffset + 0.03, T0 + tsoffset + 0.05]
    shown = format_utc(ts[0])
    assert shown == f"<invalid time {ts[0]!r}>" if ts[0] % 1 else f"<invalid time {int(ts[0])}>"
    assert main(["analyze", path]) == 0
    out = capsys.readouterr().out
    assert f"warning: {path}: packet times off by years (first at <invalid time " in out
    assert f"  1  {shown}  {CLIENT}:40001  {SERVER}:80  GET /a   200  " in out
    assert main(["analyze", path, "--tokens"]) == 0
    assert "<invalid time -99999999999> - <invalid time 1000000000000>" in capsys.readouterr().out
    for extra in (["--findings"], ["--format", "jsonl"], ["--format", "csv"]):
        assert main(["analyze", path, *extra]) == 0
    charts = tmp_path / "charts"
    assert main(["analyze", path, "--format", "parquet", "-o", str(tmp_path / "pq")]) == 0
    assert main(["analyze", path, "--charts", str(charts), "--format", "jsonl"]) == 0
    assert sorted(p.suffix for p in charts.iterdir()).count(".png") >= 3
    report = tmp_path / "r.html"
    assert main(["report", path, "-o", str(report)]) == 0
    page = report.read_text(encoding="utf-8")
    assert f"<td>{html.escape(shown)}<td>" in page  # rows are written without end tags
    assert "<invalid time" not in page  # escaped, as every captured text
    assert main(["verify", path, "--json"]) == 1
    assert result.captures[0].warnings == [
        f"{path}: packet times off by years (first at {format_utc(T0 + tsoffset, 0)}): "
        "check the capture clock"
    ]


def test_times_pandas_cannot_hold_become_nat(tmp_path: Path) -> None:
    from analyzer.api import Analysis

    analysis = Analysis(analyze_paths([odd_times_capture(tmp_path / "odd.pcapng", 10**15)]))
    events, tokens = analysis.events, analysis.tokens
    assert events["ts"].isna().tolist() == [True, True]
    assert isinstance(events["ts"].dtype, pd.DatetimeTZDtype)
    assert analysis.result.events[0].token_exp == 1e12  # exp 1e15 read as milliseconds
    assert events["token_exp"].isna().tolist() == [True, True]
    assert tokens[["nbf", "exp"]].isna().values.tolist() == [[True, True]]
    assert tokens["iat"].tolist() == [pd.Timestamp(1772440000, unit="s", tz="UTC")]


def test_packet_times_years_off_warn_but_show(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = odd_times_capture(tmp_path / "1986.pcapng", -40 * 365 * 86400)
    result = analyze_paths([path])
    assert result.captures[0].warnings == [
        f"{path}: packet times off by years (first at 1986-03-12 09:00:00): check the capture clock"
    ]
    assert main(["analyze", path]) == 0
    out = capsys.readouterr().out
    assert "Events (2), times UTC on 1986-03-12\n" in out and "  1  09:00:00.030  " in out


def test_plausible_packet_times_do_not_warn(tmp_path: Path) -> None:
    assert analyze_paths([odd_times_capture(tmp_path / "ok.pcapng", 0)]).captures[0].warnings == []


def test_decode_shows_invalid_token_times(capsys: pytest.CaptureFixture) -> None:
    token = ODD_TIMES_TOKEN.decode()
    assert main(["decode", token, "--at", "1772442000"]) in (0, 1)  # 1: a verdict of problems
    out = capsys.readouterr().out
    assert "  exp      1000000000000000.0\n             = <invalid time 1000000000000> (" in out
    assert "[ok]   expired: valid until <invalid time 1000000000000> (" in out
    assert "[ok]   not-yet-valid: valid from <invalid time -99999999999>\n" in out


# -- 5. secret-shaped user names and nested refresh tokens ---------------------------------------
# a JWT of its own header (a 32-character piece of a shared header would match the bearer below)
PASTED_JWT = ".".join(
    base64.urlsafe_b64encode(part).rstrip(b"=").decode()
    for part in (b'{"typ":"JWT","alg":"HS256"}', b'{"sub":"pasted","exp":1772445600}', b"sig")
)
SECRET_USERS = {  # user names people paste tokens into, and what each becomes
    "github": ("ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8", "ghp_"),
    "github-oauth": ("gho_" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2", "gho_"),
    "stripe": ("sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc9Xz2", "sk_live_"),
    "aws": ("AKIA" + "Q3EGRT5KXN7WPD2M", "AKIA"),
    "slack": ("xoxb-" + "2184093-4402197-Xp3kQ9vTzR7mW2nB8cL5", "xoxb-"),
    "jwt": (PASTED_JWT, "eyJ"),
    "base64": (base64.b64encode(bytes(range(40, 72))).decode(), ""),
    "hex": (bytes(range(100, 132)).hex(), ""),
}
READABLE = ["alice@contoso.com", "CONTOSO\\alice"]
NESTED_REFRESH = "0.ARoAv4j5cvGGr0GRqy180BHbR9x2" + "Kq7Wm3Pz8Ny1Lt6Rb4Vc0Hd5Jf9Sg2Ek"
NTLM_USER = "AKIA" + "J7RT2WQX9KPM4ZL8"


def masked(secret: str, prefix: str) -> str:
    return f"{prefix}\u2026({len(secret)} chars, fp {fingerprint(secret)})"


def ntlm_exchanges() -> list[Exchange]:
    """NTLM type 1 -> 401 with type 2 -> type 3 (user NTLM_USER in CONTOSO) -> 200."""
    gen = load_generator()
    type1 = gen.ntlm_negotiate()
    type2 = gen.ntlm_challenge(b"\x01\x23\x45\x67\x89\xab\xcd\xef", gen.ntlm_target_info(int(T0)))
    auth = gen.NtlmAuth("CONTOSO", NTLM_USER, "pw", "WS01", "HTTP/web.test", b"c" * 8, b"k" * 16)
    type3 = gen.ntlm_authenticate(auth, type1, type2)

    def request(blob: bytes) -> bytes:
        header = b"Authorization: NTLM " + base64.b64encode(blob) + b"\r\n"
        return b"GET /ntlm HTTP/1.1\r\nHost: web.test\r\n" + header + b"\r\n"

    challenge = b"WWW-Authenticate: NTLM " + base64.b64encode(type2) + b"\r\n"
    denied = b"HTTP/1.1 401 Unauthorized\r\n" + challenge + b"Content-Length: 0\r\n\r\n"
    return [(request(type1), denied), (request(type3), OK)]


def load_generator() -> Any:
    """The capture generator (captures/generate), imported with captures/ on the path."""
    if str(CAPTURES) not in sys.path:
        sys.path.insert(0, str(CAPTURES))
    return importlib.import_module("generate")


def secrets_capture(path: Path) -> str:
    users = [secret for secret, _ in SECRET_USERS.values()] + READABLE
    nested = json.dumps(
        {
            "iss": "i@contoso.com",
            "aud": "https://web.test/",
            "nbf": 1772440000,
            "exp": 1772445600,
            "ctx": {"Refresh_Token": NESTED_REFRESH, "deeper": [{"REFRESH_TOKEN": NESTED_REFRESH}]},
            "note": SECRET_USERS["github"][0],
        }
    ).encode()
    bearer = b"Authorization: Bearer " + unsigned_jwt(nested) + b"\r\n"
    return write_capture(
        path,
        [(basic_get(user), OK) for user in users],
        [(b"GET /api HTTP/1.1\r\nHost: web.test\r\n" + bearer + b"\r\n", OK)],
        ntlm_exchanges(),
    )


def all_outputs(path: str, tmp_path: Path, capsys: pytest.CaptureFixture, *reveal: str) -> dict:
    """Every output of every command, as text, by name."""
    out = {}
    for name, extra in {
        "table": [],
        "jsonl": ["--format", "jsonl"],
        "csv": ["--format", "csv"],
        "tokens": ["--tokens"],
        "tokens-jsonl": ["--tokens", "--format", "jsonl"],
        "tokens-csv": ["--tokens", "--format", "csv"],
        "findings": ["--findings"],
        "findings-jsonl": ["--findings", "--format", "jsonl"],
    }.items():
        assert main(["analyze", path, *extra, *reveal]) == 0, name
        out[name] = capsys.readouterr().out
    folder = tmp_path / f"pq{len(reveal)}"
    assert main(["analyze", path, "--format", "parquet", "-o", str(folder), *reveal]) == 0
    capsys.readouterr()
    out["parquet"] = "".join(pd.read_parquet(p).to_csv() for p in sorted(folder.iterdir()))
    report = tmp_path / f"report{len(reveal)}.html"
    assert main(["report", path, "-o", str(report), *reveal]) == 0
    out["html"] = html.unescape(report.read_text(encoding="utf-8"))
    capsys.readouterr()
    assert main(["verify", path, "--json"]) == 1
    out["verify-json"] = json.dumps(json.loads(capsys.readouterr().out), ensure_ascii=False)
    assert main(["verify", path]) == 1
    out["verify"] = capsys.readouterr().out
    return out


def leaks(secret: str, outputs: dict[str, str]) -> list[str]:
    """Names of the outputs holding any 32-character piece of ``secret``."""
    pieces = {secret[i : i + 32] for i in range(max(1, len(secret) - 31))}
    return [name for name, text in outputs.items() if any(p in text for p in pieces)]


def test_secret_shaped_user_names_are_masked_in_the_records(tmp_path: Path) -> None:
    result = analyze_paths([secrets_capture(tmp_path / "secrets.pcap")])
    basic = [e for e in result.events if e.scheme == "basic"]
    expected = [masked(secret, prefix) for secret, prefix in SECRET_USERS.values()]
    assert [e.user for e in basic] == [*expected, "alice@contoso.com", "alice"]
    assert [e.raw_user for e in basic] == [s for s, _ in SECRET_USERS.values()] + [None, None]
    assert basic[-1].domain == "CONTOSO" and basic[-1].raw_domain is None
    (ntlm,) = [e for e in result.events if e.ntlm_type == 3]
    assert (ntlm.domain, ntlm.user, ntlm.raw_user) == (
        "CONTOSO",
        masked(NTLM_USER, "AKIA"),
        NTLM_USER,
    )
    (token,) = result.tokens
    assert token.claims is not None
    redacted = f"<redacted fp={fingerprint(NESTED_REFRESH)}>"
    assert token.claims["ctx"] == {
        "Refresh_Token": redacted,
        "deeper": [{"REFRESH_TOKEN": redacted}],
    }
    assert token.claims["note"] == masked(*SECRET_USERS["github"])
    assert token.claims["iss"] == "i@contoso.com" and token.claims["aud"] == "https://web.test/"


def test_secret_shaped_values_reach_no_output(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = secrets_capture(tmp_path / "secrets.pcap")
    outputs = all_outputs(path, tmp_path, capsys)
    for secret in [s for s, _ in SECRET_USERS.values()] + [NTLM_USER, NESTED_REFRESH]:
        assert leaks(secret, outputs) == [], secret
    for secret, prefix in SECRET_USERS.values():  # every event output shows the masked value
        for name in ("table", "jsonl", "csv", "html", "parquet"):
            assert masked(secret, prefix) in outputs[name], (secret, name)
    assert masked(*SECRET_USERS["github"]) in outputs["verify-json"]
    for name in ("table", "html"):
        assert "alice@contoso.com" in outputs[name] and "CONTOSO\\alice" in outputs[name]
    users = [json.loads(line)["user"] for line in outputs["jsonl"].splitlines()]
    assert "alice@contoso.com" in users and "alice" in users


def test_revealed_secret_user_names_appear_again(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = secrets_capture(tmp_path / "secrets.pcap")
    outputs = all_outputs(path, tmp_path, capsys, "--reveal-secrets")
    for secret in [s for s, _ in SECRET_USERS.values()] + [NTLM_USER]:
        assert leaks(secret, outputs) == ["jsonl", "csv", "parquet", "html"], secret
    raw = json.loads(outputs["jsonl"].splitlines()[0])
    assert (raw["user"], raw["raw_user"]) == (
        masked(*SECRET_USERS["github"]),
        SECRET_USERS["github"][0],
    )


def test_key_source_of_a_document_captured_out_of_range() -> None:
    from analyzer.analysis.tokens import _key_source
    from analyzer.oauth.keys import KeySource, SignatureResult, SigningKey

    def source(ts: float) -> str | None:
        where = KeySource("capture", "http://sts.test/metadata", ts, "metadata")
        return _key_source(SignatureResult("verified", SigningKey(None, "RSA", where), ""))

    assert source(T0) == "http://sts.test/metadata (captured 2026-03-02T09:00:00Z)"
    assert source(1e15) == "http://sts.test/metadata (captured <invalid time 1000000000000000>)"
