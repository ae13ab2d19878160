"""Hostile and damaged archives: zip-slip names, a zip bomb, password-protected and truncated
zips, HTTP archives of the wrong shape. Each gives one clear line (or a warning and the rest of
the archive), never a traceback; nothing is ever written to disk. And one run over a capture, a
SAZ and a HAR together: one timeline, each input listed with its kind."""

from __future__ import annotations

import json
import os
import struct
import zipfile
from pathlib import Path

import pytest
from archive_kit import CAPTURES, analysis, make_saz, meta, run, write_har, write_saz

from analyzer.engine import analyze_paths
from analyzer.sources import saz as saz_module

REQUEST = b"GET http://web.test/a HTTP/1.1\r\nHost: web.test\r\nAuthorization: Basic dTpw\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
T = "2026-03-02T16:00:01.0000000+01:00"


def one_error_line(*argv: str, status: int = 2) -> str:
    code, out, err = run(*argv)
    assert code == status, err
    assert "Traceback" not in err and out == ""
    (line,) = err.splitlines()
    assert line.startswith("oauth-analyzer: error: ")
    return line


def test_zip_slip_names_are_never_written_and_never_read(tmp_path: Path) -> None:
    saz = make_saz(
        tmp_path / "slip.saz",
        {
            "raw/1_c.txt": REQUEST,
            "raw/1_s.txt": RESPONSE,
            "raw/1_m.xml": meta(T),
            "../../evil_c.txt": REQUEST,
            "raw/../../2_c.txt": REQUEST,
            "/etc/raw/3_c.txt": REQUEST,
            "raw\\..\\..\\4_c.txt": REQUEST,
        },
    )
    before = sorted(os.listdir(tmp_path)), sorted(os.listdir(tmp_path.parent))
    result = analysis(saz)
    assert [e.uri for e in result.events] == ["/a"]
    assert any(
        "4 entries that are not SAZ sessions ignored" in w for w in result.captures[0].warnings
    )
    assert (sorted(os.listdir(tmp_path)), sorted(os.listdir(tmp_path.parent))) == before
    only_slip = make_saz(tmp_path / "only.saz", {"../../raw/1_c.txt": REQUEST})
    assert "not a Fiddler SAZ" in one_error_line("analyze", str(only_slip))


def test_a_zip_bomb_is_read_to_its_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"\x00" * (40 << 20)
    saz = make_saz(
        tmp_path / "bomb.saz",
        {"raw/1_c.txt": REQUEST, "raw/1_s.txt": bomb, "raw/1_m.xml": meta(T)},
        deflated=frozenset({"raw/1_s.txt"}),
    )
    assert saz.stat().st_size < 1 << 20
    result = analysis(saz)
    assert [e.status for e in result.events] == [200]
    assert any("(a zip bomb?) read to 4 MiB only" in w for w in result.captures[0].warnings)
    monkeypatch.setattr(saz_module, "MAX_TOTAL", 1 << 20)  # the whole archive's cap
    many = {f"raw/{n}_{p}.txt": (REQUEST if p == "c" else bomb) for n in range(1, 4) for p in "cs"}
    saz = make_saz(tmp_path / "many.saz", many, deflated=frozenset(many))
    result = analysis(saz)
    assert len(result.events) == 1
    assert any("GiB decompressed (a zip bomb?)" in w for w in result.captures[0].warnings)


def _encrypted(path: Path, method: int | None) -> Path:
    """A SAZ whose entries say they are encrypted (flag bit 0), AES when ``method`` is 99."""
    make_saz(path, {"raw/1_c.txt": REQUEST, "raw/1_s.txt": RESPONSE})
    blob = bytearray(path.read_bytes())
    for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = blob.find(signature)
        while at >= 0:
            (flags,) = struct.unpack_from("<H", blob, at + flag_at)
            struct.pack_into("<H", blob, at + flag_at, flags | 1)
            if method is not None:
                struct.pack_into("<H", blob, at + flag_at + 2, method)
            at = blob.find(signature, at + 4)
    path.write_bytes(bytes(blob))
    return path


@pytest.mark.parametrize("method", [99, None], ids=["aes", "zipcrypto"])
def test_a_password_protected_saz_says_how_to_save_it_without(
    tmp_path: Path, method: int | None
) -> None:
    saz = _encrypted(tmp_path / "locked.saz", method)
    line = one_error_line("analyze", str(saz))
    assert "password-protected" in line and "save it again without a password" in line
    assert "password-protected" in one_error_line("verify", str(saz), "--server", "x", status=3)


def test_a_truncated_saz_is_one_line(tmp_path: Path) -> None:
    whole = write_saz(CAPTURES / "exchange-sfb.pcap", tmp_path / "whole.saz").read_bytes()
    cut = tmp_path / "cut.saz"
    cut.write_bytes(whole[: len(whole) // 2])
    assert "damaged or truncated zip archive" in one_error_line("analyze", str(cut))


def test_a_damaged_entry_costs_that_session_only(tmp_path: Path) -> None:
    saz = make_saz(
        tmp_path / "d.saz",
        {"raw/1_c.txt": REQUEST, "raw/2_c.txt": REQUEST.replace(b"/a", b"/b")},
        deflated=frozenset({"raw/1_c.txt"}),
    )
    blob = bytearray(saz.read_bytes())
    at = blob.find(b"raw/1_c.txt") + len("raw/1_c.txt")  # the first entry's deflated data
    blob[at : at + 8] = b"\xff" * 8
    saz.write_bytes(bytes(blob))
    result = analysis(saz)
    assert [e.uri for e in result.events] == ["/b"]
    assert any("entries not readable" in w for w in result.captures[0].warnings)


def test_a_zip_that_is_not_a_saz(tmp_path: Path) -> None:
    other = tmp_path / "report.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("word/document.xml", "<w/>")
    assert "a zip archive but not a Fiddler SAZ" in one_error_line("analyze", str(other))


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"[1, 2, 3]", "JSON, but not an HTTP archive (no log.entries)"),
        (b'{"log": []}', "JSON, but not an HTTP archive (no log.entries)"),
        (b'{"log": {"version": "1.2"}}', "JSON, but not an HTTP archive (no log.entries)"),
        (b'{"log": {"entries": {"a": 1}}}', "log.entries is not a list"),
        (b'{"log": {"entries": "many"}}', "log.entries is not a list"),
        (b'{"log": {"entries": [{"request": ', "not valid JSON"),
        (b'{"log": {"entries": [}}', "not valid JSON"),
        (b'{"log": {"entries": ["\xff\xfe"]}}', "not"),
        (b'{"log": {"entries": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}}", "nested more"),
        (b'{"log": {"pages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}", "nested more"),
    ],
    # plain ids: mutmut passes test ids on a command line, where brackets, quotes and escaped
    # bytes in an id do not find their test again
    ids=[
        "a-list", "log-a-list", "log-without-entries", "entries-an-object", "entries-a-string",
        "cut-short", "bad-json", "not-utf-8", "entries-nested-deep", "pages-nested-deep",
    ],
)  # fmt: skip
def test_a_har_of_the_wrong_shape_is_one_line(
    tmp_path: Path, parser: str, content: bytes, says: str
) -> None:
    path = tmp_path / "bad.har"
    path.write_bytes(content)
    assert says in one_error_line("analyze", str(path))


def test_entries_of_the_wrong_shape_leave_the_rest(tmp_path: Path, parser: str) -> None:
    path = tmp_path / "mixed.har"
    entries = [
        {"request": "GET /", "startedDateTime": "2026-03-02T15:00:00Z"},
        {"request": {"url": ["x"]}, "startedDateTime": "2026-03-02T15:00:00Z"},
        {"request": {"url": "http://a.test/", "headers": [{"name": 1, "value": {}}]}},
        None,
    ]
    path.write_text(json.dumps({"log": {"entries": entries}}))
    code, out, err = run("analyze", str(path))
    assert code == 0 and "Traceback" not in err
    assert "entries skipped for wrong types" in out


def test_one_run_over_a_capture_a_saz_and_a_har(tmp_path: Path) -> None:
    pcap = CAPTURES / "exchange-sfb.pcap"  # 09:00 UTC
    saz = write_saz(CAPTURES / "hybrid" / "healthy.pcap", tmp_path / "healthy.saz")  # 15:00
    har = write_har(CAPTURES / "classes.pcap", tmp_path / "classes.har")
    result = analyze_paths([str(har), str(saz), str(pcap)])
    times = [e.ts for e in result.events]
    assert times == sorted(times)
    assert [e.event_id for e in result.events] == list(range(1, len(times) + 1))
    assert {e.source for e in result.events} == {"pcap", "saz", "har"}
    assert [c.file_format for c in result.captures] == ["har", "saz", "pcap"]
    code, out, _ = run("analyze", str(har), str(saz), str(pcap))
    assert code == 0
    assert f"{har}: har, " in out and f"{saz}: saz, " in out and f"{pcap}: pcap, 136 packets" in out
    report = tmp_path / "report.html"
    code, _, err = run("report", str(har), str(saz), str(pcap), "-o", str(report))
    assert code == 0, err
    page = report.read_text(encoding="utf-8")
    assert "healthy.saz" in page and "classes.har" in page
    code, out, _ = run("verify", str(har), str(saz), str(pcap), "--server", "mail.contoso.com")
    assert code in (0, 1, 2) and out
