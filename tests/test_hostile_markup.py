"""Nothing captured runs: header values, URIs, user names and claims are data in every output.

One capture carries script, markup, ANSI sequences, Unicode line breaks and spreadsheet formulas
wherever a client or server can put them (URI, Host, User-Agent, a Basic user name, a challenge's
realm, x-ms-diagnostics, a token's claims). The HTML report escapes them under a strict CSP and is
loaded in headless Chromium, where no script may run and no request may leave the page; the
terminal outputs print control characters as text; CSV cells that would be formulas are
neutralised (numbers stay numbers); JSON Lines stay one record per line.
"""

from __future__ import annotations

import base64
import csv
import html
import html.parser
import http.server
import io
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_html_report import CHROMIUM, chromium
from wire_kit import write_capture

from analyzer.api import Analysis
from analyzer.cli import main
from analyzer.engine import analyze_paths
from analyzer.report.html import write_html
from analyzer.report.safe_text import printable, spreadsheet_cell


@pytest.fixture(scope="module")
def leak_server() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server that records every request: where a leaking page would send one."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "image/gif")
            self.end_headers()

        do_POST = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()


def b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def hostile_capture(path: Path, leak: str) -> str:
    script = f"<script>document.body.setAttribute('data-pwned','1');fetch('{leak}/script')</script>"
    img = "<img src=x onerror=\"document.body.setAttribute('data-pwned','2')\">"
    beacon = f'<img src="{leak}/img">'
    style = f"</style><style>body{{background:url({leak}/css)}}</style>"
    markup = f"{script}{img}{beacon}{style}javascript:alert(1)"
    ansi = "\x1b[2J\x1b[31mRED\x1b]8;;http://evil.test\x07link\x1b]8;;\x07\r\x9b2J"
    formula = '=HYPERLINK("http://evil.test","x")'
    user = f"{formula}{markup}"  # a Basic user name cannot hold control characters
    claims = json.dumps(
        {"iss": f"{markup}{ansi}\u2028", "aud": "@SUM(1+1)*cmd|' /C calc'!A0", "exp": 2e9}
    ).encode()
    token = b64url(b'{"alg":"none"}') + b"." + b64url(claims) + b"."
    uri = b"/a?q=" + markup.replace(" ", "%20").encode() + b"\x1b[2J"
    basic = base64.b64encode(f"{user}:pw".encode())
    request = (
        b"GET " + uri + b" HTTP/1.1\r\nHost: " + markup.replace(" ", "").encode() + b"\r\n"
        b"User-Agent: "
        + formula.encode()
        + ansi.encode("latin-1", "replace")
        + markup.encode()
        + b"\x85end\r\n"
        b"Authorization: Basic " + basic + b"\r\n\r\n"
    )
    challenge = (
        b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm="'
        + markup.replace('"', "'").encode()
        + b'", client_id="+cmd"\r\nx-ms-diagnostics: 2000001;reason="'
        + (markup + ansi).replace('"', "'").encode("latin-1", "replace")
        + b'";error_category="-2+3"\r\nContent-Length: 0\r\n\r\n'
    )
    bearer = b"GET /b HTTP/1.1\r\nHost: web.test\r\nAuthorization: Bearer " + token + b"\r\n\r\n"
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    return write_capture(path, [(request, challenge), (bearer, ok)])


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory, leak_server: tuple) -> str:
    return hostile_capture(tmp_path_factory.mktemp("hostile") / "hostile.pcap", leak_server[0])


# -- HTML ----------------------------------------------------------------------------------------
def test_report_escapes_everything_under_a_strict_csp(capture: str, tmp_path: Path) -> None:
    report = write_html(Analysis(analyze_paths([capture])), tmp_path / "r.html")
    page = report.read_text(encoding="utf-8")
    (policy,) = re.findall(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', page)
    policy = html.unescape(policy)
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["img-src"] == "data:"
    assert re.fullmatch(r"'sha256-[A-Za-z0-9+/=]+'", directives["script-src"])
    assert re.fullmatch(r"'sha256-[A-Za-z0-9+/=]+'", directives["style-src"])
    assert directives["base-uri"] == "'none'" and directives["form-action"] == "'none'"
    assert "unsafe" not in policy and "connect-src" not in policy  # default-src 'none' covers it
    assert page.count("<script>") == 1 and page.count("<style>") == 1  # our own, nothing more
    assert "&lt;script&gt;document.body.setAttribute" in page  # the captured one, as text
    tags = Tags()
    tags.feed(page)
    assert tags.handlers == [] and tags.scripts == 1 and tags.styles == 1
    assert all(url.startswith(("data:image/", "#")) for url in tags.urls), tags.urls


class Tags(html.parser.HTMLParser):
    """What the page's markup (not its text) holds: event handlers, URLs, script/style tags."""

    def __init__(self) -> None:
        super().__init__()
        self.handlers: list[str] = []
        self.urls: list[str] = []
        self.scripts = self.styles = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.scripts += tag == "script"
        self.styles += tag == "style"
        for name, value in attrs:
            if name.startswith("on"):
                self.handlers.append(f"{tag} {name}")
            if name in ("src", "href", "action", "formaction", "srcset", "poster", "data"):
                self.urls.append(value or "")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium not installed (bash setup.sh test)")
def test_hostile_report_in_headless_chromium_runs_nothing_and_sends_nothing(
    capture: str, tmp_path: Path, leak_server: tuple
) -> None:
    leak, hits = leak_server
    # the control: the same browser does reach the server from a page without a policy
    control = tmp_path / "control.html"
    control.write_text(f'<img src="{leak}/control"><p>control</p>', encoding="utf-8")
    assert chromium(control.as_uri(), "--dump-dom").returncode == 0
    assert hits == ["/control"]
    hits.clear()
    report = write_html(Analysis(analyze_paths([capture])), tmp_path / "hostile.html")
    run = chromium(report.resolve().as_uri(), "--dump-dom", "--virtual-time-budget=3000")
    assert run.returncode == 0, run.stderr[-2000:]
    dom = run.stdout
    assert 'data-js="ready"' in dom  # the report's own script ran to its end
    assert not re.search(r"<body[^>]*data-pwned", dom)  # no captured script or handler ran
    assert "<script>document.body" not in dom and "&lt;script&gt;document.body" in dom
    assert hits == []  # no request left the page


# -- terminals -----------------------------------------------------------------------------------
def _raw_controls(text: str) -> list[str]:
    return sorted({c for c in text if (ord(c) < 32 and c != "\n") or 0x7F <= ord(c) <= 0x9F})


def test_terminal_outputs_print_control_characters_as_text(
    capture: str, capsys: pytest.CaptureFixture
) -> None:
    outputs = {}
    for name, argv in {
        "table": ["analyze", capture],
        "tokens": ["analyze", capture, "--tokens"],
        "findings": ["analyze", capture, "--findings"],
        "verify": ["verify", capture, "--details"],
    }.items():
        assert main(argv) in (0, 1)
        outputs[name] = capsys.readouterr().out
    for name, text in outputs.items():
        assert _raw_controls(text) == [], name
        assert "\u2028" not in text and "\u202e" not in text, name
    assert "\\x1b[2J" in outputs["table"]  # the URI's escape sequence, shown as text
    assert "\\x1b[2J\\x1b[31mRED" in outputs["table"]  # the issuer claim
    for line in outputs["table"].splitlines():  # a captured newline forges no line
        assert not line.startswith("\\x1b")


def test_decode_prints_control_characters_as_text(capsys: pytest.CaptureFixture) -> None:
    claims = json.dumps({"iss": "evil\x1b[2J\u2028\rFAKE LINE", "aud": "x", "exp": 2e9})
    token = (b64url(b'{"alg":"none"}') + b"." + b64url(claims.encode()) + b".").decode()
    assert main(["decode", token, "--at", "1772442000"]) in (0, 1)
    out = capsys.readouterr().out
    assert _raw_controls(out) == [] and "\u2028" not in out
    assert "evil\\x1b[2J\\u2028\\x0dFAKE LINE" in out
    assert main(["decode", '2000001;reason="bad\x1b[2J";error_category="x\x07"']) == 1
    out = capsys.readouterr().out
    assert _raw_controls(out) == []


def test_rich_summary_prints_control_characters_as_text(capture: str) -> None:
    from analyzer.report.terminal import write_rich

    result = analyze_paths([capture])
    out = io.StringIO()
    write_rich(
        result.events, result.captures, result.verdicts, result.findings, out,
        result.not_inspected,
    )  # fmt: skip
    text = re.sub("\x1b\\[[0-9;]*m", "", out.getvalue())  # the writer's own colours
    assert _raw_controls(text) == [] and "\\x1b" in text


def test_printable() -> None:
    assert printable("CONTOSO\\alice é …") == "CONTOSO\\alice é …"
    assert printable("a\x1b[2Jb\nc\r\t\x00\x7f\x9b") == "a\\x1b[2Jb\\x0ac\\x0d\\x09\\x00\\x7f\\x9b"
    assert printable("x\u202eexe.txt\u2028\u2066") == "x\\u202eexe.txt\\u2028\\u2066"


# -- CSV -----------------------------------------------------------------------------------------
def test_csv_neutralises_formula_cells_and_keeps_numbers(
    capture: str, capsys: pytest.CaptureFixture
) -> None:
    for argv in (["analyze", capture, "--format", "csv"], ["analyze", capture, "--tokens",
                                                          "--format", "csv"]):  # fmt: skip
        assert main(argv) == 0
        rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
        assert rows
        for row in rows:
            for name, cell in row.items():
                if cell and cell[0] in "=+-@\t\r":
                    assert re.fullmatch(r"[+-]?\d+(\.\d+)?([eE][+-]?\d+)?", cell), (name, cell)
    assert main(["analyze", capture, "--format", "csv"]) == 0
    first = next(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert first["user"].startswith("'=HYPERLINK(")
    assert first["user_agent"].startswith("'=HYPERLINK(")
    assert float(first["ts"]) > 0 and first["client_port"] == "40001"


def test_spreadsheet_cell() -> None:
    cases = {
        "=1+1": "'=1+1", "+cmd": "'+cmd", "-2+3": "'-2+3", "@SUM(A1)": "'@SUM(A1)",
        "\tx": "'\tx", "\rx": "'\rx", "-5": "-5", "+1.5e3": "+1.5e3", "-0.25": "-0.25",
        "alice": "alice", "": "", "a=b": "a=b",
    }  # fmt: skip
    assert {k: spreadsheet_cell(k) for k in cases} == cases


# -- JSON Lines ----------------------------------------------------------------------------------
def test_jsonl_stays_one_record_per_line(capture: str, capsys: pytest.CaptureFixture) -> None:
    for extra in ([], ["--tokens"], ["--findings"]):
        assert main(["analyze", capture, "--format", "jsonl", *extra]) == 0
        out = capsys.readouterr().out
        assert "\u2028" not in out and "\u2029" not in out and "\x85" not in out
        lines = out.splitlines()  # splits on U+2028, U+2029, NEL too
        assert out.count("\n") == len(lines)
        records = [json.loads(line) for line in lines]
        if not extra:
            assert records[0]["user_agent"].endswith("\x85end")  # the values are exact
            assert records[1]["token_iss"].endswith("\x1b]8;;\x07\r\x9b2J\u2028")
