"""HTTP archives (``.har``): the same traffic gives the same events as its capture (apart from
what a browser does not record), and what Chrome, Firefox, Fiddler, Charles and recorder
libraries write is read as they meant it - a removed credential never invented."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from archive_kit import (
    BUNDLED,
    CAPTURES,
    HAR_ONLY,
    HYBRID,
    analysis,
    events,
    har,
    har_entry,
    run,
    verify_results,
    write_har,
)

from analyzer.model import to_dict

#: What a HAR cannot hold: a TLS connection nobody decrypted, a request cut by the capture's end.
NOT_IN_A_HAR = ("tls-blind", "cut")
SCENARIOS = sorted(p.stem for p in HYBRID.glob("*.pcap") if p.stem not in NOT_IN_A_HAR)
T1 = "2026-03-02T15:00:01.000000Z"
T2 = "2026-03-02T15:00:02.000000Z"
T3 = "2026-03-02T15:00:03.000000Z"
NTLM_TYPE2 = "TlRMTVNTUAACAAAADAAMADgAAAAFgomi" + "A" * 40


@pytest.mark.parametrize("name", BUNDLED)
def test_same_events_as_the_capture(name: str, tmp_path: Path, parser: str) -> None:
    pcap = CAPTURES / name
    wire, archived = analysis(pcap), analysis(write_har(pcap, tmp_path / "t.har"))
    assert events(archived, HAR_ONLY) == events(wire, HAR_ONLY)
    for a, b in zip(archived.events, wire.events, strict=True):
        assert (a.client_ip, a.client_port, a.source) == ("", 0, "har")
        assert a.response_ts == pytest.approx(b.response_ts, abs=1e-6)
    # handshakes as on the wire; verdicts group by client, which a browser does not record
    assert [_handshake(h) for h in archived.handshakes] == [_handshake(h) for h in wire.handshakes]


def _handshake(h: object) -> dict:
    skip = ("conn_id", "client_ip", "end_ts")  # end_ts: a response time, from ms timings
    return {k: v for k, v in to_dict(h).items() if k not in skip}


@pytest.mark.parametrize("name", SCENARIOS)
def test_verify_answers_as_on_the_capture(name: str, tmp_path: Path) -> None:
    pcap = HYBRID / f"{name}.pcap"
    archived = write_har(pcap, tmp_path / f"{name}.har")
    for extra in ((), ("--partial",)):
        assert verify_results(archived, *extra) == verify_results(pcap, *extra), (name, extra)


def _read(tmp_path: Path, entries: list[dict], **kw) -> object:
    path = tmp_path / "t.har"
    path.write_bytes(har(entries, **kw))
    return analysis(path)


def test_chrome_http2_pseudo_headers_quic_versions_and_blocked_requests(
    tmp_path: Path, parser: str
) -> None:
    h2 = har_entry(
        "https://login.contoso.test/common/oauth2/authorize?client_id=a&access_token=tok123",
        T2,
        headers=[(":authority", "login.contoso.test"), (":method", "GET"), (":path", "/")],
        version="http/2.0+quic/46",
    )
    blocked = har_entry(
        "https://mail.contoso.test/owa/", T1, headers=[("authorization", "Basic dTpw")], status=0
    )
    result = _read(tmp_path, [h2, blocked])
    first, second = result.events  # sorted by startedDateTime: the blocked one came first
    assert (first.status, first.scheme, first.host) == (None, "basic", "mail.contoso.test")
    assert (second.protocol, second.host, second.transport) == (
        "http/2",
        "login.contoso.test",
        "tls",
    )
    assert (second.scheme, second.auth_header) == ("bearer", "query")
    assert "tok123" not in second.uri
    assert any("status 0" in w for w in result.captures[0].warnings)


def test_firefox_capitalised_names_and_form_tokens(tmp_path: Path, parser: str) -> None:
    entry = har_entry(
        "http://app.contoso.test/api",
        T1,
        headers=[
            ("Host", "app.contoso.test"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        method="POST",
    )
    entry["request"]["postData"] = {
        "mimeType": "application/x-www-form-urlencoded",
        "text": "access_token=abc.def.ghi&x=1",
    }
    (e,) = _read(tmp_path, [entry], creator="Firefox").events
    assert (e.scheme, e.auth_header, e.host, e.transport) == (
        "bearer",
        "form",
        "app.contoso.test",
        "tcp",
    )


def test_fiddler_bom_and_base64_bodies(tmp_path: Path, parser: str) -> None:
    answer = {"token_type": "Bearer", "expires_in": "3599", "access_token": "abc.def"}
    entry = har_entry(
        "https://login.contoso.test/tenant/oauth2/token",
        T1,
        headers=[("Content-Type", "application/x-www-form-urlencoded")],
        response_headers=[("Content-Type", "application/json"), ("Content-Encoding", "gzip")],
        method="POST",
    )
    entry["request"]["postData"] = {
        "mimeType": "application/x-www-form-urlencoded",
        "text": "grant_type=client_credentials&client_id=a",
    }
    body = base64.b64encode(json.dumps(answer).encode()).decode()
    entry["response"]["content"] = {
        "mimeType": "application/json",
        "text": body,
        "encoding": "base64",
    }
    entry["_charlesStatus"] = "COMPLETE"  # fields of another recorder: ignored
    (e,) = _read(tmp_path, [entry], creator="Fiddler", bom=True).events
    assert (e.grant_type, e.token_type, e.expires_in) == ("client_credentials", "Bearer", "3599")
    assert e.access_token_fp is not None


def test_placeholders_are_never_taken_for_credentials(tmp_path: Path, parser: str) -> None:
    redacted = har_entry(
        "https://mail.contoso.test/EWS/Exchange.asmx?access_token=[REDACTED]",
        T1,
        headers=[("authorization", "Bearer [REDACTED]")],
    )
    result = _read(tmp_path, [redacted])
    (e,) = result.events if result.events else (None,)
    assert e is None or e.scheme == "none"
    (blind,) = result.not_inspected
    assert (blind.kind, blind.count, blind.host) == ("sanitized", 1, "mail.contoso.test")


def test_a_sanitized_export_is_counted_not_invented(tmp_path: Path, parser: str) -> None:
    url = "https://portal.contoso.test/sites/a"
    ntlm = [
        har_entry(url, T1, status=401, response_headers=[("WWW-Authenticate", "NTLM")]),
        har_entry(  # answered with the server's NTLM challenge: the request carried type 1
            url, T2, status=401, response_headers=[("WWW-Authenticate", f"NTLM {NTLM_TYPE2}")]
        ),
        har_entry(url, T3, status=200),  # challenged before, now accepted: credential removed
    ]
    result = _read(tmp_path, ntlm)
    assert [e.scheme for e in result.events] == ["none", "none"]  # the 200 carries no auth
    (blind,) = result.not_inspected
    assert (blind.kind, blind.count) == ("sanitized", 2)
    assert any("a sanitized export" in w for w in result.captures[0].warnings)


def test_verify_on_a_sanitized_export_is_inconclusive(tmp_path: Path) -> None:
    url = "https://mail.contoso.com/EWS/Exchange.asmx"
    path = tmp_path / "s.har"
    path.write_bytes(
        har(
            [
                har_entry(url, T1, status=401, response_headers=[("WWW-Authenticate", "NTLM")]),
                har_entry(url, T2, status=200),
            ]
        )
    )
    code, out, _ = run("verify", str(path), "--server", "mail.contoso.com", "--json")
    assert code == 2 and json.loads(out)["result"] == "INCONCLUSIVE"


def test_entries_of_wrong_types_are_skipped_with_one_warning_each(
    tmp_path: Path, parser: str
) -> None:
    good = har_entry("http://a.test/", T1, headers=[("Authorization", "Basic dTpw")])
    bad_headers = har_entry("http://a.test/", T2)
    bad_headers["request"]["headers"] = "Authorization: Basic dTpw"
    bad_status = har_entry("http://a.test/", T3)
    bad_status["response"]["status"] = "OK"
    bad_time = har_entry("http://a.test/", "yesterday")
    result = _read(tmp_path, [good, bad_headers, bad_status, bad_time, 42, "x"])
    assert [e.scheme for e in result.events] == ["basic"]
    warning = " ".join(result.captures[0].warnings)
    assert "request.headers is not a list" in warning
    assert "startedDateTime is not an ISO 8601 time" in warning
    assert "an entry is not an object (2 times" in warning


def test_blind_spot_lines_count_the_entries() -> None:
    from analyzer.analysis.coverage import blind_spot_lines
    from analyzer.model import NotInspected

    def removed(count: int, conn: str) -> NotInspected:
        return NotInspected("sanitized", conn, 0.0, "", 0, "10.1.0.10", 443, "a.test", count)

    assert blind_spot_lines([removed(1, "C1")]) == [
        "1 HAR entry to a.test:443 (10.1.0.10) with credentials removed: export the HAR again "
        "with sensitive data"
    ]
    assert blind_spot_lines([removed(2, "C1"), removed(3, "C2")])[0].startswith("5 HAR entries")


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda e: e["request"]["headers"].append({"name": "X", "value": ["a", "b"]}), "array"),
        (lambda e: e.update(startedDateTime="Mon, 02 Mar 2026 09:00:02 GMT"), "time"),
        (lambda e: e["response"].update(status="200 OK"), "status"),
    ],
)
def test_an_entry_that_cannot_be_read_is_a_request_lost(change, why: str, tmp_path: Path) -> None:
    # skipped with only a warning, a Basic call in it let verify PASS on the others
    basic = [("Authorization", "Basic Q09OVE9TT1xzdmM6cHc=")]
    bearer = [("Authorization", "Bearer eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.")]
    good = har_entry("http://mail.contoso.com/EWS/", "2026-03-02T09:00:01.000Z", bearer,
                     method="POST")  # fmt: skip
    bad = har_entry("http://mail.contoso.com/EWS/", "2026-03-02T09:00:02.000Z", basic,
                    method="POST")  # fmt: skip
    change(bad)
    path = tmp_path / "a.har"
    path.write_bytes(har([good, bad]))
    args = ["--server", "mail.contoso.com", "--allow", "unsigned-token", "--json"]
    code, out, _err = run("verify", str(path), *args)
    spots = json.loads(out)["rules"][0]["coverage"]["not_inspected"]
    assert code == 2, why
    assert [(n["kind"], n["conn_id"], n["server"]) for n in spots] == [
        ("request-lost", "har-entry-2", "10.1.0.10:0")
    ]
