"""Building blocks for the archive tests: SAZ and HAR versions of the generated captures (written
by ``captures/generate/archives.py``), small hand-made archives, and event comparison."""

from __future__ import annotations

import functools
import io
import json
import sys
import zipfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from analyzer.cli import main
from analyzer.engine import AnalysisResult, analyze_paths
from analyzer.model import to_dict

REPO = Path(__file__).resolve().parents[1]
CAPTURES = REPO / "captures"
HYBRID = CAPTURES / "hybrid"
POLICY = str(HYBRID / "policy.toml")
#: Bundled captures the generator's own reader takes (classic pcap).
BUNDLED = (
    "exchange-sfb.pcap",
    "small-basic.pcap",
    "findings.pcap",
    "healthy-oauth.pcap",
    "classes.pcap",
    "certificates.pcap",
)
#: What only a capture knows: how the same exchange is named in each kind of input.
SAZ_ONLY = frozenset({"conn_id", "source", "frame"})  # an archive numbers no frames
HAR_ONLY = SAZ_ONLY | {"client_ip", "client_port", "response_ts", "community_id"}  # no client


def generator() -> Any:
    """The capture generator package (captures/generate), with its archive writers."""
    if str(CAPTURES) not in sys.path:
        sys.path.insert(0, str(CAPTURES))
    import generate.archives
    import generate.frompcap

    return generate


@functools.cache
def exchanges_of(pcap: Path) -> tuple:
    return generator().frompcap.read_exchanges(pcap.read_bytes())


def write_saz(pcap: Path, out: Path) -> Path:
    exchanges, tunnels = exchanges_of(pcap)
    out.write_bytes(generator().archives.saz_bytes(exchanges, tunnels))
    return out


def write_har(pcap: Path, out: Path) -> Path:
    exchanges, _ = exchanges_of(pcap)
    out.write_bytes(generator().archives.har_bytes(exchanges))
    return out


def events(result: AnalysisResult, drop: frozenset[str] = frozenset()) -> list[dict]:
    return [{k: v for k, v in to_dict(e).items() if k not in drop} for e in result.events]


def analysis(path: Path | str) -> AnalysisResult:
    return analyze_paths([str(path)])


def make_saz(path: Path, entries: dict[str, bytes], deflated: frozenset[str] = frozenset()) -> Path:
    """A zip of ``entries`` (name -> bytes), deflated where named, stored otherwise."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            method = zipfile.ZIP_DEFLATED if name in deflated else zipfile.ZIP_STORED
            zf.writestr(zipfile.ZipInfo(name, (2026, 3, 2, 12, 0, 0)), data, compress_type=method)
    return path


def meta(begin: str, response: str | None = None, **flags: str) -> bytes:
    """A session's ``_m.xml`` as Fiddler writes it (byte-order mark, timers, flags)."""
    timers = f'ClientConnected="{begin}" ClientBeginRequest="{begin}"'
    if response:
        timers += f' ServerBeginResponse="{response}" ClientBeginResponse="{response}"'
    lines = "".join(f'<SessionFlag N="{k.replace("_", "-")}" V="{v}" />' for k, v in flags.items())
    text = (
        '<?xml version="1.0" encoding="utf-8"?>\r\n<Session SID="1" BitFlags="51">\r\n'
        f"<SessionTimers {timers} />\r\n<PipeInfo />\r\n<SessionFlags>{lines}</SessionFlags>"
        "\r\n</Session>"
    )
    return b"\xef\xbb\xbf" + text.encode()


def har(entries: list[dict], creator: str = "WebInspector", bom: bool = False) -> bytes:
    doc = {"log": {"version": "1.2", "creator": {"name": creator, "version": "1"}}}
    doc["log"]["entries"] = entries
    return (b"\xef\xbb\xbf" if bom else b"") + json.dumps(doc).encode()


def har_entry(
    url: str,
    started: str,
    headers: list[tuple[str, str]] = (),
    status: int = 200,
    response_headers: list[tuple[str, str]] = (),
    method: str = "GET",
    version: str = "HTTP/1.1",
    **extra: Any,
) -> dict:
    entry = {
        "startedDateTime": started,
        "time": 5,
        "request": {
            "method": method,
            "url": url,
            "httpVersion": version,
            "headers": [{"name": k, "value": v} for k, v in headers],
            "queryString": [],
            "cookies": [],
            "headersSize": -1,
            "bodySize": 0,
        },
        "response": {
            "status": status,
            "statusText": "",
            "httpVersion": version,
            "headers": [{"name": k, "value": v} for k, v in response_headers],
            "cookies": [],
            "content": {"size": 0, "mimeType": "text/plain"},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": 0,
        },
        "cache": {},
        "timings": {"blocked": 0, "dns": -1, "connect": -1, "send": 0, "wait": 4, "receive": 0},
        "serverIPAddress": "10.1.0.10",
        "connection": "77",
    }
    entry.update(extra)
    return entry


def run(*argv: str) -> tuple[int, str, str]:
    """The command line in process: exit status, standard output, standard error."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def verify_results(path: Path | str, *extra: str) -> dict[str, tuple[str, int]]:
    """``verify --json`` against the hybrid policy: per rule, its result and violations."""
    code, out, err = run("verify", str(path), "--policy", POLICY, "--json", *extra)
    assert code in (0, 1, 2), err
    data = json.loads(out)
    return {r["rule"]: (r["result"], len(r["violations"])) for r in data["rules"]}
