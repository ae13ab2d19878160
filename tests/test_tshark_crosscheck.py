"""Cross-check against tshark (out-of-order reassembly on) on the bundled captures.

tshark is an independent reassembler and HTTP parser: every Authorization / Proxy-Authorization
header and every challenge it sees must be found by us with the same endpoints, request and
fingerprint.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from analyzer.auth.schemes import parse_challenges, parse_credential
from analyzer.engine import analyze_paths
from analyzer.oauth.endpoints import redact_uri

CAPTURES = Path(__file__).resolve().parents[1] / "captures"
TSHARK = shutil.which("tshark")
FIELDS = (
    "ip.src",
    "ipv6.src",
    "ip.dst",
    "ipv6.dst",
    "http.request.method",
    "http.request.uri",
    "http.authorization",
    "http.proxy_authorization",
    "http.www_authenticate",
    "http.proxy_authenticate",
)

AGGREGATOR = "\x1f"  # joins repeated headers (several WWW-Authenticate lines) in one field

pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed")


def tshark_rows(capture: Path) -> list[dict[str, str]]:
    argv = [TSHARK, "-r", str(capture), "-o", "tcp.reassemble_out_of_order:TRUE"]
    argv += ["-Y", " || ".join(FIELDS[6:]), "-T", "fields", "-E", "separator=\t"]
    argv += ["-E", "occurrence=a", "-E", f"aggregator={AGGREGATOR}", "-E", "quote=n"]
    for name in FIELDS:
        argv += ["-e", name]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120).stdout
    return [dict(zip(FIELDS, line.split("\t"), strict=True)) for line in out.splitlines()]


def _unescape(value: str) -> str:
    """tshark prints CR/LF and backslashes escaped in field output."""
    return value.replace("\\r", "\r").replace("\\n", "\n").replace("\\\\", "\\")


@pytest.mark.parametrize("name", ["messy.pcapng", "exchange-sfb.pcap", "findings.pcap"])
def test_every_credential_tshark_sees_we_see(name: str) -> None:
    rows = tshark_rows(CAPTURES / name)
    theirs = Counter()
    for row in rows:
        # One frame may end several pipelined requests: their fields come aggregated, in order.
        methods = row["http.request.method"].split(AGGREGATOR)
        uris = row["http.request.uri"].split(AGGREGATOR)
        for header in ("http.authorization", "http.proxy_authorization"):
            values = [v for v in row[header].split(AGGREGATOR) if v]
            for i, value in enumerate(values):
                cred = parse_credential(_unescape(value))
                assert cred is not None
                j = i if len(values) == len(methods) else 0
                theirs[
                    (
                        row["ip.src"] or row["ipv6.src"],
                        row["ip.dst"] or row["ipv6.dst"],
                        methods[j],
                        redact_uri(uris[j]),
                        cred.fingerprint,
                    )
                ] += 1
    ours = Counter(
        (e.client_ip, e.server_ip, e.method, e.uri, e.cred_fp)
        for e in analyze_paths([str(CAPTURES / name)]).events
        if e.auth_header in ("authorization", "proxy-authorization")
    )
    assert theirs, "tshark found no credential at all"
    assert ours == theirs


@pytest.mark.parametrize("name", ["messy.pcapng", "exchange-sfb.pcap"])
def test_every_challenge_tshark_sees_we_see(name: str) -> None:
    theirs = Counter()
    for row in tshark_rows(CAPTURES / name):
        for header, proxy in (("http.www_authenticate", False), ("http.proxy_authenticate", True)):
            for value in filter(None, row[header].split(AGGREGATOR)):
                for c in parse_challenges([_unescape(value)], proxy=proxy):
                    theirs[(row["ip.src"] or row["ipv6.src"], c.scheme, proxy)] += 1
    ours = Counter(
        (e.server_ip, c.scheme, c.proxy)
        for e in analyze_paths([str(CAPTURES / name)]).events
        for c in e.challenges
    )
    assert theirs and theirs - ours == Counter()
    assert sum(theirs.values()) >= len(theirs)  # repeated headers counted one by one
