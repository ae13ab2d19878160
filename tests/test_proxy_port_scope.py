"""``--server HOST:PORT`` follows the port a request named for its server, not only the port of
the connection it went on: through a proxy the connection's port is the proxy's.

A review found two false PASSes with ``--server mail.contoso.com:80`` / ``:443`` and a client
going through a proxy on port 8080: a Basic request in absolute form (``POST
http://mail.contoso.com/EWS/...``) and a ``CONNECT mail.contoso.com:443`` tunnel that could not
be read both fell out of scope, because the spec's port was compared with the proxy's 8080. The
port now comes from the request target as the host already did: an absolute-form URL's port, its
scheme's default (80, 443) when it has none, a CONNECT's authority port; either it or the
connection's port matches. A request that really went to another port stays out.

The end-to-end cases are real packets written with scapy (``wire_kit``), moved to the proxy's
port.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import token_kit
from wire_kit import CLIENT, T0, connection, write_packets

from analyzer.analysis.scope import _ANY_PORT, make_scope, target_port
from analyzer.cli import main
from analyzer.model import NotInspected

DIRECT, PROXY = "10.9.9.2", "10.9.9.99"
PASSWORD = base64.b64encode(b"CONTOSO\\svc-sfb:P@ssw0rd").decode()
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def request(target: str, auth: str, host: str = "mail.contoso.com") -> bytes:
    return (
        f"POST {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


BEARER = f"Bearer {token_kit.sfb_token()}"
BASIC = f"Basic {PASSWORD}"


def on_port(packets: list[Any], port: int) -> list[Any]:
    """The packets of a ``wire_kit`` connection (server port 80) on server port ``port``."""
    from scapy.all import TCP

    for packet in packets:
        tcp = packet[TCP]
        if tcp.dport == 80:
            tcp.dport = port
        if tcp.sport == 80:
            tcp.sport = port
        del tcp.chksum
    return packets


def oauth_direct() -> list[Any]:
    """What the rule passes: an SfB token to mail.contoso.com's EWS, direct, port 80."""
    return connection([(request("/EWS/Exchange.asmx", BEARER), OK)], 40001, T0, server=DIRECT)


def via_proxy(exchanges: list[tuple[bytes, bytes]], sport: int = 40002) -> list[Any]:
    return on_port(connection(exchanges, sport, T0 + 2, server=PROXY), 8080)


def verify(capsys: pytest.CaptureFixture[str], path: str, server: str) -> tuple[int, dict]:
    rule = list(token_kit.strict_rule(CLIENT))
    rule[rule.index("--server") + 1] = server
    code = main(["verify", path, *rule, "--json"])
    return code, json.loads(capsys.readouterr().out)


def capture(tmp_path: Path, *connections: list[Any]) -> str:
    return write_packets(tmp_path / "proxy.pcap", oauth_direct(), *connections)


# -- the port a request names ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "host", "port"),
    [
        ("/EWS/Exchange.asmx", "mail.contoso.com", None),  # origin form: the connection's
        ("/EWS/Exchange.asmx", None, None),
        ("/EWS/Exchange.asmx", "mail.contoso.com:8443", 8443),  # a Host with a port
        ("/EWS/Exchange.asmx", "[2001:db8::10]:8443", 8443),
        ("/EWS/Exchange.asmx", "[2001:db8::10]", None),
        ("/EWS/Exchange.asmx", "2001:db8::10", None),  # a bare IPv6 literal: no port
        ("/EWS/Exchange.asmx", "mail.contoso.com:", None),  # an empty port is the default
        ("http://mail.contoso.com/EWS/", "mail.contoso.com", 80),  # absolute form: its scheme's
        ("HTTPS://mail.contoso.com/EWS/", "mail.contoso.com", 443),
        ("http://mail.contoso.com:8081/EWS/", "mail.contoso.com:8081", 8081),
        ("http://mail.contoso.com:8081/EWS/", None, 8081),
        ("ftp://mail.contoso.com/EWS/", "mail.contoso.com", _ANY_PORT),  # no default known
        ("http://mail.contoso.com:x/EWS/", "mail.contoso.com:x", _ANY_PORT),
        ("mail.contoso.com:443", "mail.contoso.com:443", 443),  # CONNECT
        ("mail.contoso.com:443", None, 443),  # CONNECT without a Host
        ("mail.contoso.com", None, None),
        ("*", None, None),  # OPTIONS *
    ],
)
def test_target_port(uri: str, host: str | None, port: int | None) -> None:
    assert target_port(uri, host) == port


def record(host: str | None, server_port: int = 8080) -> NotInspected:
    return NotInspected("request-lost", "C1", T0, CLIENT, 40002, PROXY, server_port, host)


@pytest.mark.parametrize(
    ("spec", "host", "covered"),
    [
        ("mail.contoso.com:443", "mail.contoso.com:443", True),  # CONNECT mail.contoso.com:443
        ("mail.contoso.com:443", "mail.contoso.com:8443", False),  # another port named
        ("mail.contoso.com:8080", "mail.contoso.com:443", True),  # the connection's port
        ("mail.contoso.com:443", "mail.contoso.com", False),  # no port named: the connection's
        ("mail.contoso.com:443", "mail.contoso.com:bad", True),  # a port not read: not ruled out
        ("mail.contoso.com", "mail.contoso.com:8443", True),
    ],
)
def test_a_blind_spot_through_a_proxy_by_the_port_its_request_named(
    spec: str, host: str, covered: bool
) -> None:
    assert make_scope(server=spec).covers(record(host)) is covered


# -- end to end: the reviewer's cases and their controls -----------------------------------


def test_control_the_direct_oauth_call_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert verify(capsys, capture(tmp_path), "mail.contoso.com:80")[0] == 0


@pytest.mark.parametrize(
    "target", ["http://mail.contoso.com/EWS/Exchange.asmx", "http://mail.contoso.com:80/EWS/x"]
)
def test_basic_in_absolute_form_through_a_proxy_is_in_scope(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    """x03: with and without the URL's port, the Basic request reached mail.contoso.com:80."""
    path = capture(tmp_path, via_proxy([(request(target, BASIC), OK)]))
    code, out = verify(capsys, path, "mail.contoso.com:80")
    assert code == 1
    (rule,) = out["rules"]
    assert rule["coverage"]["exchanges"] == 2
    assert [(v["kind"], v["server"]) for v in rule["violations"]] == [
        ("not-oauth", f"{PROXY}:8080")
    ]


def test_https_in_absolute_form_names_443(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = "https://mail.contoso.com/EWS/Exchange.asmx"
    path = capture(tmp_path, via_proxy([(request(target, BASIC), OK)]))
    assert verify(capsys, path, "mail.contoso.com:443,mail.contoso.com:80")[0] == 1
    assert verify(capsys, path, "mail.contoso.com:80")[0] == 0  # https is not port 80


def test_control_another_port_really_used_stays_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The Basic request named port 8081 through the proxy, and another went direct to 8443:
    neither is mail.contoso.com:80."""
    target = "http://mail.contoso.com:8081/EWS/Exchange.asmx"
    direct = request("/EWS/Exchange.asmx", BASIC, host="mail.contoso.com:8443")
    path = capture(
        tmp_path,
        via_proxy([(request(target, BASIC), OK)]),
        on_port(connection([(direct, OK)], 40003, T0 + 4, server=DIRECT), 8443),
    )
    code, out = verify(capsys, path, "mail.contoso.com:80")
    assert code == 0, out
    assert out["rules"][0]["coverage"]["exchanges"] == 1
    # the same capture with the proxy's and the direct port in scope fails on both
    code, out = verify(capsys, path, "mail.contoso.com:8081,mail.contoso.com:8443")
    assert code == 1
    assert len(out["rules"][0]["violations"]) == 2


CLIENT_HELLO = b"\x16\x03\x01\x00\x2a\x01\x00\x00\x26\x03\x03" + b"\x11" * 32 + b"\x00\x00\x02"


def tunnel(authority: str) -> list[Any]:
    connect = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode()
    established = b"HTTP/1.1 200 Connection established\r\n\r\n"
    return via_proxy([(connect, established), (CLIENT_HELLO, b"\x16\x03\x03\x00\x04abcd")])


def test_a_connect_tunnel_to_the_server_port_is_a_blind_spot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """x02: CONNECT mail.contoso.com:443 through the proxy on 8080, the tunnel not read."""
    path = capture(tmp_path, tunnel("mail.contoso.com:443"))
    code, out = verify(capsys, path, "mail.contoso.com:443,mail.contoso.com:80")
    assert code == 2, out
    (blind,) = out["rules"][0]["coverage"]["not_inspected"]
    assert (blind["server"], blind["host"]) == (f"{PROXY}:8080", "mail.contoso.com:443")


def test_control_a_connect_tunnel_to_another_port_stays_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = capture(tmp_path, tunnel("mail.contoso.com:8443"))
    code, out = verify(capsys, path, "mail.contoso.com:443,mail.contoso.com:80")
    assert code == 0, out
    assert out["rules"][0]["coverage"]["not_inspected"] == []
