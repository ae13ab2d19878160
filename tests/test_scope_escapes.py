"""The ways a request reaches the server and path a scope names without naming them as written
(``analysis/scope.py``), each of which let an NTLM fallback out of scope and ``verify`` PASS:

- ``--server mail.contoso.com``: the same server reached as ``MAIL`` (its NetBIOS name), as an IP
  literal (``10.1.0.10``, ``[2001:db8::10]:80``), as another name on its address (Exchange's
  sites answer every name: IIS's default binding) or through undecrypted TLS naming any of
  those. ``--host`` is the scope of one virtual host.
- ``--path /EWS/``: ``/%45WS/``, ``//EWS/``, ``/x/../EWS/``, ``/./EWS/``, ``\\EWS\\``, all of
  which IIS maps to ``/EWS/``; the URI shown stays as it was sent.
- ``since = nan`` (``inf``, ``1e308``) in a policy or on the command line: a usage error, not a
  bound silently ignored.

Each end-to-end case is a capture built with scapy: one compliant OAuth EWS call from the SfB
pool (10.1.0.20) to mail.contoso.com (10.1.0.10), beside the exchange under test; the rule is
the README's strict one."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from token_kit import (
    EXO_AUD,
    SFB_ISS,
    T0,
    actor_claims,
    generator,
    signed,
    unsigned,
)

from analyzer.analysis.scope import (
    ScopeError,
    make_scope,
    normalized_path,
    parse_time,
    path_matches,
    request_path,
)
from analyzer.cli import main
from analyzer.model import Event, NotInspected

ROOT = Path(__file__).resolve().parents[1]
HEALTHY = str(ROOT / "captures" / "healthy-oauth.pcap")
SFB_CERT = str(ROOT / "captures" / "keys" / "sfb.cert.pem")
POOL, MAIL, MAIL2 = "10.1.0.20", "10.1.0.10", "10.1.0.11"
STRICT = (
    "--client", POOL, "--server", "mail.contoso.com", "--path", "/EWS/", "--issuer", "skype",
    "--realm", "contoso.com", "--require-signature",
)  # fmt: skip
NOT_OAUTH = ("not-oauth", "not OAuth: ntlm as CONTOSO\\svc-sfb")
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
RANGE = "not a time from 0001-01-01 to 9999-12-31 UTC"
MAIL_IPS = {"mail.contoso.com": frozenset({MAIL})}


# -- records ------------------------------------------------------------------------------
def event(
    host: str | None, server: str = MAIL, uri: str = "/EWS/Exchange.asmx", port: int = 80
) -> Event:
    return Event(1, T0, POOL, 52000, server, port, "C1", "http/1.1", "POST", host, uri, 200)


def blind(sni: str | None, server: str = MAIL) -> NotInspected:
    """An undecrypted TLS connection with server name ``sni``."""
    return NotInspected("tls", "C9", T0, POOL, 52001, server, 443, sni)


# -- captures -----------------------------------------------------------------------------
def tcp(
    exchanges: list[tuple[bytes, bytes | None]],
    sport: int,
    t0: float,
    *,
    server: str = MAIL,
    dport: int = 80,
) -> list[Any]:
    """Packets of one TCP connection from the pool to ``server``:``dport``, 10 ms apart."""
    import scapy.all as scapy

    packets = []
    seq = {True: 1000, False: 5000}

    def seg(out: bool, flags: str, payload: bytes = b"") -> None:
        src, dst, sp, dp = (POOL, server, sport, dport) if out else (server, POOL, dport, sport)
        packet = scapy.Ether() / scapy.IP(src=src, dst=dst)
        tcp = scapy.TCP(sport=sp, dport=dp, flags=flags, seq=seq[out], ack=seq[not out])
        packets.append(packet / tcp / payload if payload else packet / tcp)
        seq[out] += len(payload) + (1 if "S" in flags or "F" in flags else 0)

    seg(True, "S")
    seg(False, "SA")
    seg(True, "A")
    for request, response in exchanges:
        seg(True, "PA", request)
        if response is not None:
            seg(False, "PA", response)
    seg(True, "FA")
    seg(False, "FA")
    seg(True, "A")
    for i, packet in enumerate(packets):
        packet.time = t0 + i * 0.01
    return packets


def head(host: str, uri: str, auth: str) -> bytes:
    return (
        f"POST {uri} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/xml\r\n"
        f"Authorization: {auth}\r\nContent-Length: 7\r\n\r\n<soap/>"
    ).encode()


def oauth(sport: int = 40001) -> list[Any]:
    """The compliant call: an S2S token whose actor the SfB pool signed (``--keys sfb``)."""
    actor = signed({k: v for k, v in actor_claims().items() if v is not None}, key="sfb")
    user = {"sid": "S-1-5-21-1-2-3-1104", "upn": "alice@contoso.com"}
    token = unsigned(generator().user_context(EXO_AUD, SFB_ISS, user, actor, T0, T0 + 3600))
    return tcp([(head("mail.contoso.com", "/EWS/Exchange.asmx", f"Bearer {token}"), OK)], sport, T0)


def ntlm(
    host: str = "mail.contoso.com", uri: str = "/EWS/Exchange.asmx", server: str = MAIL
) -> list[Any]:
    """An NTLM handshake of CONTOSO\\svc-sfb (type 1 -> 401 with type 2, type 3 -> 200)."""
    ntlm = generator().ntlm
    type1 = ntlm.ntlm_negotiate()
    type2 = ntlm.ntlm_challenge(b"\x01" * 8, ntlm.ntlm_target_info(T0))
    auth = ntlm.NtlmAuth(
        "CONTOSO", "svc-sfb", "P@ssw0rd", "SFBFE01", "HTTP/mail.contoso.com",
        b"\x02" * 8, b"\x03" * 16,
    )  # fmt: skip
    type3 = ntlm.ntlm_authenticate(auth, type1, type2)
    b64 = base64.b64encode
    challenge = (
        f"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: NTLM {b64(type2).decode()}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    legs = [
        (head(host, uri, f"NTLM {b64(type1).decode()}"), challenge),
        (head(host, uri, f"NTLM {b64(type3).decode()}"), OK),
    ]
    return tcp(legs, 40002, T0 + 2, server=server)


def tls(sni: str, server: str = MAIL) -> list[Any]:
    """A TLS 1.3 connection that was not decrypted: ClientHello naming ``sni``, then records."""
    name = sni.encode()
    entry = b"\x00" + struct.pack(">H", len(name)) + name
    names = struct.pack(">H", len(entry)) + entry
    extension = struct.pack(">HH", 0, len(names)) + names
    body = (
        b"\x03\x03" + b"\x11" * 32 + b"\x00" + struct.pack(">H", 2) + b"\x13\x01" + b"\x01\x00"
        + struct.pack(">H", len(extension)) + extension
    )  # fmt: skip
    hello = b"\x01" + struct.pack(">I", len(body))[1:] + body
    client_hello = b"\x16\x03\x01" + struct.pack(">H", len(hello)) + hello
    body = b"\x03\x03" + b"\x22" * 32 + b"\x00" + b"\x13\x01" + b"\x00" + b"\x00\x00"
    hello = b"\x02" + struct.pack(">I", len(body))[1:] + body
    server_hello = b"\x16\x03\x03" + struct.pack(">H", len(hello)) + hello
    data = b"\x17\x03\x03\x00\x40"
    records = [(client_hello, server_hello), (data + b"\x99" * 64, data + b"\x98" * 64)]
    return tcp(records, 40443, T0 + 3, server=server, dport=443)


def verify(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, *connections: list[Any]
) -> tuple[int, dict]:
    """verify's JSON rule for a capture of the OAuth call and ``connections``, STRICT."""
    import scapy.all as scapy

    path = tmp_path / "case.pcap"
    packets = sorted((p for c in [oauth(), *connections] for p in c), key=lambda p: float(p.time))
    scapy.wrpcap(str(path), packets)
    args = ["verify", str(path), *STRICT, "--keys", SFB_CERT, "--json", "--no-progress"]
    code = main(args)
    (rule,) = json.loads(capsys.readouterr().out)["rules"]
    return code, rule


def violations(rule: dict) -> list[tuple[str, str]]:
    return [(v["kind"], v["reason"]) for v in rule["violations"]]


# -- --server: the same server under another name -----------------------------------------
def test_the_capture_without_a_fallback_passes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # the baseline every case below adds one connection to
    code, rule = verify(capsys, tmp_path)
    assert (code, rule["result"], rule["in_scope"], rule["compliant"]) == (0, "PASS", 1, 1)


@pytest.mark.parametrize(
    "host", ["MAIL", "mail", "Mail:80", "mail.", "MAIL.CONTOSO", "10.1.0.10", "10.1.0.10:80"]
)
def test_ntlm_to_the_servers_short_name_or_address_fails(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, host: str
) -> None:
    # the same address served mail.contoso.com: MAIL and 10.1.0.10 reach the same IIS site
    code, rule = verify(capsys, tmp_path, ntlm(host=host))
    assert (code, rule["result"], rule["in_scope"]) == (1, "FAIL", 2)
    assert violations(rule) == [NOT_OAUTH]
    assert rule["violations"][0]["host"] == host  # shown as it was sent


@pytest.mark.parametrize(
    "host",
    ["autodiscover.contoso.com", "mail.fabrikam.com", "mailx", "contoso", "10.1.0.10.nip.io"],
)
def test_ntlm_to_another_name_on_the_same_address_reaches_the_server(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, host: str
) -> None:
    # the address that served mail.contoso.com serves its EWS under any name
    code, rule = verify(capsys, tmp_path, ntlm(host=host))
    assert (code, rule["result"], rule["in_scope"]) == (1, "FAIL", 2)
    assert violations(rule) == [NOT_OAUTH]


def test_host_scopes_one_virtual_host(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import scapy.all as scapy

    path = tmp_path / "case.pcap"
    packets = [*oauth(), *ntlm(host="autodiscover.contoso.com")]
    scapy.wrpcap(str(path), sorted(packets, key=lambda p: float(p.time)))
    args = ["verify", str(path), "--host", "mail.contoso.com", "--path", "/EWS/", "--json"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["rules"][0]["in_scope"] == 1


def test_ntlm_to_the_short_name_at_another_address_stays_out(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # 10.1.0.11 never served mail.contoso.com: its MAIL may be another machine
    code, rule = verify(capsys, tmp_path, ntlm(host="MAIL", server=MAIL2))
    assert (code, rule["result"], rule["in_scope"]) == (0, "PASS", 1)


@pytest.mark.parametrize("sni", ["mail", "MAIL", "10.1.0.10"])
def test_undecrypted_tls_to_the_short_name_or_address_is_inconclusive(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, sni: str
) -> None:
    code, rule = verify(capsys, tmp_path, tls(sni))
    assert (code, rule["result"], rule["in_scope"]) == (2, "INCONCLUSIVE", 1)
    (spot,) = rule["coverage"]["not_inspected"]
    assert (spot["kind"], spot["server"]) == ("tls", "10.1.0.10:443")


def test_undecrypted_tls_to_another_name_on_the_address_is_inconclusive(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # what it carried may be EWS under any Host (and its SNI need not match its Host)
    code, rule = verify(capsys, tmp_path, tls("autodiscover.contoso.com"))
    assert (code, rule["result"]) == (2, "INCONCLUSIVE")
    assert [n["kind"] for n in rule["coverage"]["not_inspected"]] == ["tls"]


def test_server_names_that_reach_the_named_server() -> None:
    scope = make_scope(server="mail.contoso.com")
    # at the address that served the name, any name: its short name, a literal, another name
    hosts = ("MAIL", "mail:443", "mail.contoso", "", "10.1.0.10", "10.9.9.9", None)
    for host in (*hosts, "autodiscover.contoso.com", "mail.fabrikam.com", "167837706", "2mail"):
        assert scope.matches(event(host), MAIL_IPS), host
        assert scope.covers(blind(host), MAIL_IPS), host
    # another address, never the named server's: only the full name counts there
    for host in ("MAIL", "10.1.0.11", "", None):
        assert not scope.matches(event(host, server=MAIL2), MAIL_IPS), host
        assert not scope.covers(blind(host, server=MAIL2), MAIL_IPS), host
    assert scope.matches(event("MAIL.CONTOSO.COM.", server=MAIL2), MAIL_IPS)
    # without the addresses the capture showed, nothing but the name is the server
    assert not scope.matches(event("MAIL"))
    assert not scope.matches(event("10.1.0.10"))


def test_an_ip_literal_of_the_named_server_through_a_proxy() -> None:
    # the literal is an address that served mail.contoso.com, wherever the connection went
    scope = make_scope(server="mail.contoso.com")
    assert scope.matches(event("10.1.0.10", server="10.5.5.5"), MAIL_IPS)
    assert scope.matches(event("[::ffff:10.1.0.10]:8080", server="10.5.5.5"), MAIL_IPS)
    assert not scope.matches(event("10.1.0.12", server="10.5.5.5"), MAIL_IPS)
    assert not scope.matches(event("MAIL", server="10.5.5.5"), MAIL_IPS)


def test_ipv6_literals_in_any_spelling() -> None:
    scope = make_scope(server="mail.contoso.com")
    ips = {"mail.contoso.com": frozenset({"2001:db8::10"})}
    for host in ("[2001:db8::10]", "[2001:DB8:0::10]:80", "2001:db8::10", "[2001:db8::99]"):
        assert scope.matches(event(host, server="2001:db8::10"), ips), host
    assert scope.matches(event("[2001:db8:0:0::10]", server="2001:db8::99"), ips)
    assert not scope.matches(event("[2001:db8::99]", server="2001:db8::99"), ips)


def test_a_port_still_rules_out_the_short_name() -> None:
    scope = make_scope(server="mail.contoso.com:443")
    assert scope.matches(event("MAIL", port=443), MAIL_IPS)
    assert not scope.matches(event("MAIL", port=80), MAIL_IPS)
    assert scope.covers(blind("mail"), MAIL_IPS)
    assert not scope.covers(
        NotInspected("tls", "C9", T0, POOL, 52001, MAIL, 8443, "mail"), MAIL_IPS
    )


def test_a_server_address_or_network_matches_as_before_and_its_literal() -> None:
    for server in ("10.1.0.10", "10.1.0.0/24", "http://10.1.0.10/"):
        scope = make_scope(server=server)
        for host in ("MAIL", "autodiscover.contoso.com", "10.9.9.9", "", None):
            assert scope.matches(event(host), {}), (server, host)
            assert scope.covers(blind(host), {}), (server, host)
        assert not scope.matches(event("mail.contoso.com", server="10.2.0.10"), MAIL_IPS)
        # a request for that address through a proxy
        assert scope.matches(event("10.1.0.10:80", server="10.5.5.5"), {}), server
        assert scope.covers(blind("10.1.0.10", server="10.5.5.5"), {}), server
        assert not scope.matches(event("10.2.0.10", server="10.5.5.5"), {}), server
        assert not scope.matches(event("[2001:db8::10]", server="10.5.5.5"), {}), server
    v6 = make_scope(server="2001:db8::/64")
    assert v6.matches(event("[2001:db8::10]:80", server="10.5.5.5"), {})
    assert not v6.matches(event("10.1.0.10", server="10.5.5.5"), {})
    assert not make_scope(server="10.1.0.10:80").matches(event("10.1.0.10", port=443), {})


# -- --path: the forms IIS maps to /EWS/ ----------------------------------------------------
ESCAPES = [
    "/%45WS/Exchange.asmx",
    "/%65ws/Exchange.asmx",
    "//EWS/Exchange.asmx",
    "/x/../EWS/Exchange.asmx",
    "/./EWS/Exchange.asmx",
    "\\EWS\\Exchange.asmx",
    "/%u0045WS/Exchange.asmx",
    "/%2545WS/Exchange.asmx",
    "/EWS%2FExchange.asmx",
    "/x%2F..%2FEWS/Exchange.asmx",
    "/EWS",
    # routed into /EWS/ by a servlet container (;parameters) or Win32 (trailing dots, spaces)
    "/EWS;x=1/Exchange.asmx",
    "/EWS./Exchange.asmx",
    "/EWS%20/Exchange.asmx",
    "/x/..%20/EWS/Exchange.asmx",
    # absolute form with any scheme, and targets that are no path at all: never left out
    "x-very-long-scheme+http://mail.contoso.com/EWS/Exchange.asmx",
    "http:/EWS/Exchange.asmx",
    "EWS/Exchange.asmx",
    "*",
]


@pytest.mark.parametrize("uri", ESCAPES)
def test_ntlm_to_an_escaped_ews_path_fails_and_shows_the_path_as_sent(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, uri: str
) -> None:
    code, rule = verify(capsys, tmp_path, ntlm(uri=uri))
    assert (code, rule["result"], rule["in_scope"]) == (1, "FAIL", 2)
    assert violations(rule) == [NOT_OAUTH]
    assert rule["violations"][0]["uri"] == uri


@pytest.mark.parametrize("uri", ["/OWA/Exchange.asmx", "/EWSX/x", "/%45WSX/x", "/EWS/../owa/x"])
def test_ntlm_elsewhere_stays_out_unless_sent_under_the_prefix(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, uri: str
) -> None:
    code, rule = verify(capsys, tmp_path, ntlm(uri=uri))
    if uri.startswith("/EWS/"):
        # resolved it is /owa/, but as sent it is under /EWS/: a proxy routing by the raw
        # path sends it to EWS, so it stays in
        assert (code, rule["result"], violations(rule)) == (1, "FAIL", [NOT_OAUTH])
    else:
        assert (code, rule["result"], rule["in_scope"]) == (0, "PASS", 1)


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        ("/%45WS/Exchange.asmx?a=%2F..", "/EWS/Exchange.asmx"),
        ("//EWS///Exchange.asmx", "/EWS/Exchange.asmx"),
        ("/x/../EWS/", "/EWS/"),
        ("/./EWS/.", "/EWS/"),
        ("\\EWS\\Exchange.asmx", "/EWS/Exchange.asmx"),
        ("/%5CEWS%5cx", "/EWS/x"),
        ("/%u0045%U0057S/", "/EWS/"),
        ("/%252545WS/", "/EWS/"),
        ("/%25252545WS/", "/EWS/"),
        ("/%2525252545WS/", "/%45WS/"),  # decoding stops after four rounds
        ("/%2e%2E/EWS", "/EWS"),
        ("/../../EWS/..", "/"),
        ("/a/b/c/./../../g", "/a/g"),  # RFC 3986 5.2.4
        ("mid/content=5/../6", "/mid/6"),
        ("/a/.hidden/..x/...", "/a/.hidden/..x/..."),
        ("http://mail.contoso.com//%45WS/x?y", "/EWS/x"),
        ("/%zzEWS", "/%zzEWS"),
        ("/caf%C3%A9/", "/café/"),
        ("/EWS/Exchange.asmx", "/EWS/Exchange.asmx"),
        ("/", "/"),
    ],
)
def test_normalized_path(uri: str, path: str) -> None:
    assert normalized_path(uri) == path


def test_the_path_shown_is_the_path_sent() -> None:
    assert request_path("/%45WS/x?y=1") == "/%45WS/x"
    assert request_path("\\EWS\\x") == "\\EWS\\x"


def test_path_matching() -> None:
    assert path_matches("/%45ws/x", "/ews/")
    assert path_matches("/EWS", "/ews/")  # the application's root
    assert not path_matches("/EWSX", "/ews/")
    assert not path_matches("/", "/ews/")
    assert path_matches("/anything", "/")
    assert path_matches("/EWS/../OWA/", "/ews/")  # as sent
    assert path_matches("/EWS/../OWA/", "/owa/")  # as resolved
    # the prefix is resolved alike
    assert path_matches("/EWS/x", "/ews//")
    assert path_matches("/EWS/x", "/%45ws/")
    assert path_matches("/EWS/x", "/api/../ews/")
    assert not path_matches("/EWSX/x", "/ews//")


def test_path_matching_adds_the_paths_servers_route_and_never_drops_one() -> None:
    """Segment parameters and trailing dots and spaces dropped are further candidates, beside
    the path as sent; a target that is no path matches any prefix."""
    for uri in ("/EWS;jsessionid=1/x", "/EWS./x", "/EWS .. /x", "/%45WS%2e/x", "/EWS;a./x"):
        assert path_matches(uri, "/ews/"), uri
    assert path_matches("/EWS;x", "/ews/")  # the application's root
    assert path_matches("/OWA;x/../EWS/x", "/ews/")
    assert path_matches("/x/.. /EWS/x", "/ews/")  # ".. " is ".." once its space is dropped
    assert path_matches("/EWS;x=1/a", "/ews;x=1/")  # as sent, still
    for uri in ("/OWA;EWS/x", "/EWSX;x/a", "/EWS.x/a", "/OWA/EWS./x", "/EWSX./a"):
        assert not path_matches(uri, "/ews/"), uri
    assert path_matches("svn+ssh-tunnel-scheme://h/EWS/x", "/ews/")
    assert not path_matches("svn+ssh-tunnel-scheme://h/OWA/x", "/ews/")
    assert request_path("x-very-long-scheme+http://h/EWS/x?y") == "/EWS/x"
    assert request_path("/a?b=http://h/EWS") == "/a"  # origin form: "://" in the query
    assert not path_matches("/a?b=http://h/EWS/x", "/ews/")
    for uri in ("*", "mail.contoso.com:443", "EWS/x", "http:/EWS/x", "", "%2FEWS"):
        assert path_matches(uri, "/ews/"), uri
    scope = make_scope(path="/EWS//")
    assert scope.describe() == "path /ews//"
    assert scope.matches(event("mail.contoso.com", uri="//EWS//x"))


# -- since / until: only times a scope can hold ---------------------------------------------
@pytest.mark.parametrize(
    ("toml", "shown"),
    [
        ("nan", "nan"),
        ("-nan", "nan"),
        ("inf", "inf"),
        ("-inf", "-inf"),
        ("1e308", "1e+308"),
        ("253402300800", "253402300800"),
        ("-62135596801", "-62135596801"),
        ("1" + "0" * 400, "1" + "0" * 400),
        ('"nan"', "'nan'"),
        ('"1e308"', "'1e308'"),
        ("0001-01-01T00:00:00+05:00", "datetime.datetime(1, 1, 1, 0, 0, tzinfo=datetime"),
    ],
)
@pytest.mark.parametrize("key", ["since", "until"])
def test_a_policy_time_out_of_range_is_one_error_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key: str, toml: str, shown: str
) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text(f"[[rule]]\n{key} = {toml}\n")
    assert main(["verify", HEALTHY, "--policy", str(policy)]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"oauth-analyzer: error: rule 1: {key} {shown}")
    assert err.endswith(f": {RANGE}\n")


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "Infinity", "1e308", "1e400"])
def test_a_command_line_time_out_of_range_is_one_error_line(
    capsys: pytest.CaptureFixture[str], value: str
) -> None:
    assert main(["verify", HEALTHY, "--until", value]) == 3
    assert capsys.readouterr().err == f"oauth-analyzer: error: until {value!r}: {RANGE}\n"
    assert main(["analyze", HEALTHY, "--since", value]) == 2
    assert capsys.readouterr().err == f"oauth-analyzer: error: since {value!r}: {RANGE}\n"


def test_an_offset_past_the_last_time_is_one_error_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    huge = "+" + "9" * 400
    assert main(["verify", HEALTHY, "--since", huge]) == 3
    assert capsys.readouterr().err == (
        f"oauth-analyzer: error: since {huge!r}: an offset past the year 9999\n"
    )
    with pytest.raises(ScopeError) as caught:
        make_scope(until="+3000000d")
    assert str(caught.value) == "until '+3000000d': an offset past the year 9999"
    assert make_scope(until="+2900000d").until_offset == 2900000 * 86400.0


def test_the_first_and_last_times_a_scope_holds() -> None:
    first, last = -62135596800.0, 253402300799.0
    assert parse_time("0001-01-01T00:00:00Z") == first
    assert parse_time("9999-12-31T23:59:59Z") == last
    assert parse_time(first) == first and parse_time(int(last)) == last
    scope = make_scope(since=first, until=last)
    assert scope.describe() == "time 1-01-01T00:00:00Z .. 9999-12-31T23:59:59Z"
    for value in (first - 1, last + 0.5, float("nan")):
        with pytest.raises(ScopeError) as caught:
            parse_time(value, "since")
        assert str(caught.value) == f"since {value!r}: {RANGE}"


def test_an_ipv4_mapped_client_is_its_ipv4_address() -> None:
    # a dual-stack capture point (or socket) shows the pool as ::ffff:10.1.0.20
    mapped = Event(1, T0, "::ffff:10.1.0.20", 52000, MAIL, 80, "C1", "http/1.1", "POST", None,
                   "/EWS/", 200)  # fmt: skip
    assert make_scope(client=POOL).matches(mapped)
    assert make_scope(client="10.1.0.0/24").matches(mapped)
    assert make_scope(client="::ffff:10.1.0.0/120").matches(event("mail.contoso.com"))
    assert not make_scope(client="10.1.1.0/24").matches(mapped)
    assert not make_scope(client="2001:db8::/32").matches(mapped)


@pytest.mark.parametrize(
    ("target", "host"),
    [
        ("http://mail.contoso.com/EWS/Exchange.asmx", "mail.contoso.com"),
        ("HTTP://mail.contoso.com:8080/EWS/", "mail.contoso.com:8080"),
        ("http://user:pw@mail.contoso.com/EWS/", "mail.contoso.com"),
        ("/EWS/Exchange.asmx", "autodiscover.contoso.com"),  # origin form: the Host header
    ],
)
def test_an_absolute_form_target_names_the_host_over_the_host_header(
    target: str, host: str
) -> None:
    # RFC 9112 3.2.2: a server (http.sys too) takes the target's host and ignores Host
    from analyzer.auth.extract import build_event
    from analyzer.protocols.http1 import parse_head
    from analyzer.protocols.http_exchange import Exchange

    auth = "Authorization: Basic eDp5"
    head = f"POST {target} HTTP/1.1\r\nHost: autodiscover.contoso.com\r\n{auth}\r\n\r\n"
    request = parse_head(head.encode(), 1.0)
    assert request is not None
    e = build_event(Exchange("C1", POOL, 52000, MAIL, 80, request, None), 1)
    assert e is not None and e.host == host
    assert ":pw@" not in e.uri  # a password in the target is redacted in what is shown
