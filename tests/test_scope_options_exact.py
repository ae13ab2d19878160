"""The scope options exactly (``analysis/scope.py``): the error line each bad ``--client``,
``--server``, ``--path``, ``--scheme``, ``--since`` / ``--until`` value prints, the values that
are accepted at their limits (ports 1 and 65535, a network with host bits, a host with a
trailing dot, a bracketed IPv6 address without a port), where a time window starts and ends,
and the scope text a verdict states. The matching is checked on the records the API narrows
(``Scope.matches`` for exchanges, ``Scope.covers`` for blind spots), as ``Analysis.where`` and
every command apply them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from analyzer.analysis.scope import ScopeError, make_scope, parse_server, parse_time
from analyzer.cli import main
from analyzer.model import Event, NotInspected

CAPTURES = Path(__file__).resolve().parents[1] / "captures"
HEALTHY = str(CAPTURES / "healthy-oauth.pcap")
TIME_FORMS = "not an ISO 8601 time, epoch seconds or an offset into the capture such as +30s"
OFFSET_FORMS = "an offset is + and a number with s, m, h or d (e.g. +30s, +5m, +1h30m)"


def event(
    *,
    ts: float = 100.0,
    client: str = "10.1.0.20",
    server: str = "10.1.0.10",
    port: int = 80,
    host: str | None = "mail.contoso.com",
    uri: str = "/EWS/Exchange.asmx",
    user: str | None = None,
    domain: str | None = None,
) -> Event:
    """One exchange as the analysis records it."""
    return Event(
        1, ts, client, 52000, server, port, "C1", "http/1.1", "POST", host, uri, 200,
        user=user, domain=domain,
    )  # fmt: skip


def blind(
    *, ts: float = 100.0, client: str = "10.1.0.20", server: str = "10.1.0.10", port: int = 443
) -> NotInspected:
    """One connection that could not be read (undecrypted TLS, no server name)."""
    return NotInspected("tls", "C9", ts, client, 52001, server, port)


def analyze_error(capsys: pytest.CaptureFixture[str], *options: str) -> str:
    """The one error line ``analyze`` prints for bad scope options (exit 2, nothing read)."""
    assert main(["analyze", HEALTHY, *options]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


def verify_json(capsys: pytest.CaptureFixture[str], *options: str) -> dict:
    """verify's answer for the one rule of ``options`` (its JSON)."""
    code = main(["verify", HEALTHY, "--json", "--no-progress", *options])
    rule = json.loads(capsys.readouterr().out)["rules"][0]
    assert code == {"PASS": 0, "FAIL": 1, "INCONCLUSIVE": 2}[rule["result"]]
    return rule


@pytest.fixture
def new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The machine's local zone is New York (UTC-5 in March), not UTC."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


# -- --server: the error line for each malformed form ---------------------------------------
@pytest.mark.parametrize(
    ("server", "message"),
    [
        ("http://mail.contoso.com:99999/", "server 'http://mail.contoso.com:99999/': bad port"),
        ("http:///EWS/", "server 'http:///EWS/': no host in the URL"),
        ("[2001:db8::10]x", "server '[2001:db8::10]x': expected [address]:port"),
        ("[2001:db8::10]]", "server '[2001:db8::10]]': expected [address]:port"),
        ("[2001:db8::10]:https", "server '[2001:db8::10]:https': bad port 'https'"),
        ("[mail.contoso.com]:443", "'[mail.contoso.com]:443' is not an IP address or network"),
        ("mail.contoso.com:http", "server 'mail.contoso.com:http': bad port 'http'"),
        ("mail.contoso.com:0", "server 'mail.contoso.com:0': bad port '0'"),
        ("mail.contoso.com:65536", "server 'mail.contoso.com:65536': bad port '65536'"),
        (
            "mail contoso",
            "server 'mail contoso': not a host name, host:port, address, [v6]:port, network or URL",
        ),
    ],
)
def test_a_bad_server_is_one_error_line(
    capsys: pytest.CaptureFixture[str], server: str, message: str
) -> None:
    assert analyze_error(capsys, "--server", server) == f"oauth-analyzer: error: {message}\n"


def test_an_empty_server_item_is_refused_by_name() -> None:
    # the command line drops empty list items; parse_server, called on one, says what it got
    for value in ("", "   "):
        with pytest.raises(ScopeError) as caught:
            parse_server(value)
        assert str(caught.value) == "empty server"


# -- --server: the forms accepted at their limits -------------------------------------------
def test_ports_one_and_65535_are_ports() -> None:
    assert make_scope(server="mail.contoso.com:1").matches(event(port=1))
    assert not make_scope(server="mail.contoso.com:1").matches(event(port=80))
    assert make_scope(server="mail.contoso.com:65535").matches(event(port=65535))
    assert make_scope(server="[2001:db8::10]:1").matches(event(server="2001:db8::10", port=1))


def test_a_bracketed_v6_address_without_port_matches_every_port() -> None:
    scope = make_scope(server="[2001:db8::10]")
    assert scope.matches(event(server="2001:db8::10", port=443, host=None))
    assert scope.matches(event(server="2001:db8::10", port=80, host=None))
    assert not scope.matches(event(server="2001:db8::11", port=443, host=None))


def test_a_network_with_host_bits_and_a_port() -> None:
    # 10.1.0.7/24 means 10.1.0.0/24, as --client takes it, here with a port
    scope = make_scope(server="10.1.0.7/24:80")
    assert scope.matches(event(server="10.1.0.10", port=80))
    assert not scope.matches(event(server="10.1.0.10", port=443))
    assert not scope.matches(event(server="10.1.1.10", port=80))


def test_a_server_name_with_a_trailing_dot_is_the_name() -> None:
    for server in ("mail.contoso.com.", "MAIL.contoso.com.:80", "http://mail.contoso.com./"):
        scope = make_scope(server=server)
        assert scope.matches(event(host="mail.contoso.com")), server
        assert scope.matches(event(host="mail.contoso.com.:80")), server
        assert not scope.matches(event(host="contoso.com")), server


def test_a_named_server_without_addresses_does_not_cover_a_nameless_blind_spot() -> None:
    # undecrypted TLS without SNI to an address that never served the name
    scope = make_scope(server="mail.contoso.com")
    assert not scope.covers(blind(server="10.9.9.9"))
    assert not scope.covers(blind(server="10.9.9.9"), {})
    assert scope.covers(blind(server="10.1.0.10"), {"mail.contoso.com": frozenset({"10.1.0.10"})})


def test_an_unknown_server_address_is_not_ruled_out_by_a_network() -> None:
    # an HTTP archive entry without serverIPAddress has server_ip "": it may be in the network,
    # so it is judged and its blind spots count (as an unknown client's), but a port still rules
    assert make_scope(server="10.0.0.0/8").matches(event(server=""))
    assert make_scope(server="[2001:db8::10]:80").matches(event(server="", port=80))
    assert not make_scope(server="10.0.0.0/8:80").matches(event(server="", port=443))
    assert make_scope(server="10.0.0.0/8").covers(blind(server=""))
    assert not make_scope(server="10.0.0.0/8").matches(event(server="192.0.2.1"))
    # text that is no address (a record made by hand) is as unknown as an empty one
    assert make_scope(server="10.0.0.0/8").matches(event(server="mail"))
    assert make_scope(client="10.1.0.0/16").matches(event(client="browser"))
    assert not make_scope(client="10.1.0.0/16").matches(event(client="10.2.0.1"))


# -- --client -----------------------------------------------------------------------------
def test_a_client_network_may_have_host_bits() -> None:
    scope = make_scope(client="10.1.0.20/24")
    assert scope.matches(event(client="10.1.0.99"))
    assert not scope.matches(event(client="10.1.1.20"))
    assert scope.describe() == "from 10.1.0.0/24"


def test_a_blind_spot_of_another_client_is_not_covered() -> None:
    scope = make_scope(client="10.1.0.20")
    assert scope.covers(blind(client="10.1.0.20"))
    assert not scope.covers(blind(client="10.1.0.50"))


# -- --host, --path, --user ---------------------------------------------------------------
def test_a_v6_host_is_its_brackets_without_the_port() -> None:
    scope = make_scope(host="[2001:DB8::1]:8443")
    assert scope.hosts == ("[2001:db8::1]",)
    assert scope.matches(event(host="[2001:db8::1]"))
    assert scope.matches(event(host="[2001:db8::1]:443"))
    assert scope.matches(event(host="[2001:db8::1]]"))  # what follows the first ']' is no name
    assert not scope.matches(event(host="[2001:db8::2]"))


def test_path_of_an_absolute_form_request_target() -> None:
    # a proxy gets the whole URL as the request-target
    ews = make_scope(path="/ews/")
    assert ews.matches(event(uri="http://mail.contoso.com/EWS/Exchange.asmx"))
    assert ews.matches(event(uri="https://mail.contoso.com:444/ews/x?a=1"))
    assert not ews.matches(event(uri="http://mail.contoso.com/OWA/?p=/EWS/"))
    root = make_scope(path="/")
    assert root.matches(event(uri="http://mail.contoso.com"))  # no path: the root
    assert not make_scope(path="/ews").matches(event(uri="http://mail.contoso.com"))


def test_path_stops_at_the_first_question_mark() -> None:
    # a prefix holding "?" could never match: it is refused (below)
    scope = make_scope(path="/ews/exchange.asmx%3F")
    assert not scope.matches(event(uri="/EWS/Exchange.asmx?a=1?b=2"))
    assert not scope.matches(event(uri="/EWS/Exchange.asmx?a=1 b"))
    assert make_scope(path="/ews/exchange.asmx").matches(event(uri="/EWS/Exchange.asmx?a=1?b=2"))


def test_path_containing_a_url_is_an_origin_form_path() -> None:
    # '://' past the scheme's place (here at the 15th character) is part of a path, read as sent
    uri = "/redirect/http://x/#f"
    assert make_scope(path="/redirect/http://x/#f").matches(event(uri=uri))


def test_path_must_start_with_a_slash(capsys: pytest.CaptureFixture[str]) -> None:
    line = analyze_error(capsys, "--path", "EWS/")
    assert line == "oauth-analyzer: error: path 'EWS/' must start with /\n"


@pytest.mark.parametrize(
    ("path", "character", "escape"),
    [("/EWS/*", "*", "%2A"), ("/ews/exchange.asmx?", "?", "%3F"), ("/[Ee]WS/", "[", "%5B"),
     ("/EWS]/", "]", "%5D")],
)  # fmt: skip
def test_a_path_pattern_is_refused_as_it_would_match_nothing(
    capsys: pytest.CaptureFixture[str], path: str, character: str, escape: str
) -> None:
    """A prefix is matched as written: ``/EWS/*`` would match no request, and in a list
    (``/EWS/*,/autodiscover/``) silently take its share out of a verdict's scope."""
    line = analyze_error(capsys, "--path", f"/autodiscover/,{path}")
    assert line == (
        f"oauth-analyzer: error: path {path!r}: a prefix, not a pattern ({character!r}): /EWS/ "
        f"covers everything under /EWS/ (a literal {character} is written {escape})\n"
    )


@pytest.mark.parametrize("user", ["alice*", "CONTOSO\\svc-?", "[ab]lice@contoso.com"])
def test_a_user_pattern_is_refused_as_it_would_match_nothing(
    capsys: pytest.CaptureFixture[str], user: str
) -> None:
    """No Windows account name holds ``*?[]``: ``--user bob,alice*`` would silently keep bob's
    exchanges only."""
    line = analyze_error(capsys, "--user", f"bob,{user}")
    pattern = next(c for c in user if c in "*?[]")
    assert (
        line
        == f"oauth-analyzer: error: user {user!r}: an account name, not a pattern ({pattern!r})\n"
    )


def test_a_literal_pattern_character_is_matched_escaped() -> None:
    assert make_scope(path="/EWS/%2A").matches(event(uri="/EWS/*x"))
    assert make_scope(path="/EWS/%2a").matches(event(uri="/EWS/%2Ax"))
    assert make_scope(path="/a%3Fb").matches(event(uri="/a%3Fb/c?d"))
    assert not make_scope(path="/a%3Fb").matches(event(uri="/a?b"))  # the query is no path


@pytest.mark.parametrize(
    "host",
    ["*.contoso.com", "mail.*", "https://mail.contoso.com/", "mail.contoso.com/EWS",
     "mail.contoso.com:http", "mail.contoso.com:0", "mail.contoso.com:65536",
     "mail.contoso.com:", "mail contoso", "[mail.contoso.com]", "[2001:db8::1]x",
     "[2001:db8::1", "2001:db8::1:443x", "10.1.0.0/24"],
)  # fmt: skip
def test_a_host_no_request_can_name_is_one_error_line(
    capsys: pytest.CaptureFixture[str], host: str
) -> None:
    """A host matches as written: a wildcard, a URL or a bad port would match nothing, and in a
    list silently take its share out of a verdict's scope (``--server`` refuses them too)."""
    line = analyze_error(capsys, "--host", f"autodiscover.contoso.com,{host}")
    assert line == (
        f"oauth-analyzer: error: host {host!r}: not a host name, host:port or IP address "
        "(names match exactly: no wildcards)\n"
    )


def test_a_policy_host_or_path_pattern_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text('[[rule]]\nhost = ["*.contoso.com", "autodiscover-s.outlook.com"]\n')
    assert main(["verify", HEALTHY, "--policy", str(policy)]) == 3
    err = capsys.readouterr().err
    assert err.startswith("oauth-analyzer: error: rule 1: host '*.contoso.com': not a host name")
    policy.write_text('[[rule]]\npath = ["/EWS/*", "/autodiscover/"]\n')
    assert main(["verify", HEALTHY, "--policy", str(policy)]) == 3
    err = capsys.readouterr().err
    assert err.startswith("oauth-analyzer: error: rule 1: path '/EWS/*': a prefix, not a pattern")


@pytest.mark.parametrize(
    ("given", "key", "hosts"),
    [
        ("MAIL.contoso.com.", "mail.contoso.com", ["mail.contoso.com", "Mail.Contoso.COM.:443"]),
        ("mail.contoso.com:443", "mail.contoso.com", ["mail.contoso.com:80"]),
        ("10.1.0.10", "10.1.0.10", ["10.1.0.10:80", "[::ffff:10.1.0.10]"]),
        ("2001:DB8::1", "[2001:db8::1]", ["[2001:db8:0::1]:443", "[2001:0db8::1]"]),
        ("[2001:db8::1]:8443", "[2001:db8::1]", ["[2001:DB8::1]", "2001:db8::1"]),
        ("[::ffff:10.1.0.10]", "10.1.0.10", ["10.1.0.10"]),
        ("_sip._tls.contoso.com", "_sip._tls.contoso.com", ["_sip._tls.contoso.com"]),
    ],
)
def test_a_host_matches_however_its_name_or_address_is_written(
    given: str, key: str, hosts: list[str]
) -> None:
    """Case, a trailing dot and a port do not matter; an IP literal is its address (brackets or
    none, zeros, IPv4-mapped), on either side."""
    scope = make_scope(host=given)
    assert scope.hosts == (key,)
    for host in hosts:
        assert scope.matches(event(host=host)), host
    assert not scope.matches(event(host="other.contoso.com"))
    assert not make_scope(host=given).matches(event(host="[2001:db8::2]"))


def test_user_matches_the_user_the_subject_or_domain_backslash_user() -> None:
    assert make_scope(user="CONTOSO\\Alice").matches(event(user="alice", domain="contoso"))
    assert make_scope(user="alice").matches(event(user="Alice", domain="CONTOSO"))
    # a domain that was not sent does not rule the account out: alice may be NONE\alice
    assert make_scope(user="none\\alice").matches(event(user="alice"))
    assert not make_scope(user="none\\alice").matches(event(user="alice", domain="CONTOSO"))
    assert not make_scope(user="contoso\\none").matches(event(domain="CONTOSO"))
    assert not make_scope(user="xxxx").matches(event())
    assert not make_scope(user="none").matches(event())


# -- --scheme -----------------------------------------------------------------------------
def test_an_unknown_scheme_lists_the_schemes_and_classes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = analyze_error(capsys, "--scheme", "ntlm,Kerb")
    assert line == (
        "oauth-analyzer: error: scheme 'kerb': not a scheme (bearer, basic, ntlm, negotiate, "
        "digest, other, none) or auth class (oauth, basic, ntlm, kerberos, negotiate-ntlm, "
        "digest, tls-dsk, anonymous, other)\n"
    )


def test_scheme_scope_text() -> None:
    assert make_scope(scheme="NTLM,oauth").describe() == "scheme ntlm, oauth"


# -- values of the wrong type (a policy file, the Python API) -------------------------------
@pytest.mark.parametrize("key", ["server", "host", "user"])
def test_a_policy_value_of_the_wrong_type_names_its_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key: str
) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text(f"[[rule]]\n{key} = 5\n")
    assert main(["verify", HEALTHY, "--policy", str(policy)]) == 3
    assert capsys.readouterr().err == (
        f"oauth-analyzer: error: rule 1: {key}: expected a string or a list of strings, got 5\n"
    )


def test_a_scheme_of_the_wrong_type_names_scheme() -> None:
    with pytest.raises(ScopeError) as caught:
        make_scope(scheme=5)  # type: ignore[arg-type]
    assert str(caught.value) == "scheme: expected a string or a list of strings, got 5"


# -- --since / --until: the forms and their errors -----------------------------------------
@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--since", "yesterday"), f"since 'yesterday': {TIME_FORMS}"),
        (("--until", "soon"), f"until 'soon': {TIME_FORMS}"),
        (("--since", "+5x"), f"since '+5x': {OFFSET_FORMS}"),
        (("--until", "+1h30"), f"until '+1h30': {OFFSET_FORMS}"),
        (("--since", "1772456441", "--until", "1772456403"), "since is after until"),
        (("--since", "+5m", "--until", "+30s"), "since is after until"),
    ],
)
def test_a_bad_time_is_one_error_line(
    capsys: pytest.CaptureFixture[str], options: tuple[str, ...], message: str
) -> None:
    assert analyze_error(capsys, *options) == f"oauth-analyzer: error: {message}\n"


def test_parse_time_names_a_time_by_default() -> None:
    with pytest.raises(ScopeError) as caught:
        parse_time("yesterday")
    assert str(caught.value) == f"time 'yesterday': {TIME_FORMS}"
    with pytest.raises(ScopeError) as caught:
        parse_time([1], "since")  # type: ignore[arg-type]
    assert str(caught.value) == f"since [1]: {TIME_FORMS}"


def test_times_of_every_form() -> None:
    assert parse_time(1772456403) == 1772456403.0
    assert parse_time(1772456403.5) == 1772456403.5
    assert parse_time("2026-03-02T13:00:03Z") == 1772456403.0
    assert parse_time("2026-03-02T14:00:03+01:00") == 1772456403.0
    assert parse_time("2026-03-02T13:00:03") == 1772456403.0  # no zone: UTC
    assert parse_time("2026-03-02Z") == 1772409600.0  # a day: its first instant
    assert parse_time("2026-03-02T13:00:03z") == 1772456403.0  # RFC 3339 allows lower case
    # a day with a zone: its first instant in that zone, not that zone read as a time of day
    assert parse_time("2026-03-02+05:00") == 1772409600.0 - 5 * 3600
    assert parse_time("2026-03-02-0130") == 1772409600.0 + 90 * 60
    assert parse_time("2026-03-02+00:00") == 1772409600.0
    with pytest.raises(ScopeError) as caught:
        make_scope(since=True)  # type: ignore[arg-type]
    assert str(caught.value) == f"since True: {TIME_FORMS}"


def test_a_time_without_zone_is_utc_whatever_the_machine_zone(new_york: None) -> None:
    assert parse_time("2026-03-02T13:00:03") == 1772456403.0
    assert parse_time("2026-03-02 13:00:03") == 1772456403.0
    assert make_scope(until="1772456403").describe() == "time * .. 2026-03-02T13:00:03Z"


@pytest.mark.parametrize(
    ("offset", "seconds"),
    [
        ("+90", 90.0),
        ("+1.5", 1.5),
        ("+30s", 30.0),
        ("+5m", 300.0),
        ("+1h30m", 5400.0),
        ("+2d", 172800.0),
        ("+250ms", 0.25),
        (" +1m30s ", 90.0),
    ],
)
def test_offsets_into_the_capture(offset: str, seconds: float) -> None:
    scope = make_scope(since=offset, until=offset)
    assert (scope.since_offset, scope.until_offset) == (seconds, seconds)
    assert scope.describe() == f"time +{seconds:g}s .. +{seconds:g}s"
    anchored = scope.anchored(1000.0)
    assert (anchored.since, anchored.until) == (1000.0 + seconds, 1000.0 + seconds)
    assert anchored.matches(event(ts=1000.0 + seconds))


def test_an_offset_scope_text_before_the_capture_start_is_known() -> None:
    assert make_scope(since="+90").describe() == "time +90s .. *"
    assert make_scope(until="+5m").describe() == "time * .. +300s"


def test_offsets_with_nothing_read_match_nothing() -> None:
    # no first packet to count from: an offset bound rules everything out
    since = make_scope(since="+30s").anchored(None)
    assert not since.matches(event(ts=0.0)) and not since.matches(event(ts=1e12))
    until = make_scope(until="+30s").anchored(None)
    assert not until.matches(event(ts=0.0))
    assert not until.covers(blind(ts=0.0))


# -- the window's edges -------------------------------------------------------------------
def test_the_window_includes_both_ends() -> None:
    scope = make_scope(since="100", until="200")
    assert [scope.matches(event(ts=t)) for t in (99.999, 100.0, 200.0, 200.001)] == [
        False,
        True,
        True,
        False,
    ]
    # a blind spot is ruled out only when it began after the window
    assert [scope.covers(blind(ts=t)) for t in (50.0, 200.0, 200.001)] == [True, True, False]


def test_a_window_of_one_instant() -> None:
    scope = make_scope(since="100", until="100")
    assert scope.matches(event(ts=100.0)) and not scope.matches(event(ts=100.5))
    offsets = make_scope(since="+30s", until="+30s").anchored(70.0)
    assert offsets.matches(event(ts=100.0)) and not offsets.matches(event(ts=99.0))


# -- the scope a verdict states -----------------------------------------------------------
def test_verify_states_every_filter_of_its_scope(capsys: pytest.CaptureFixture[str]) -> None:
    rule = verify_json(
        capsys,
        "--client", "10.1.0.20,10.1.0.0/16",
        "--server", "mail.contoso.com,10.1.0.10:80",
        "--host", "mail.contoso.com,autodiscover.contoso.com",
        "--path", "/EWS/,/Autodiscover/",
        "--user", "alice,CONTOSO\\bob",
        "--until", "2026-03-02T14:00:03+01:00",
    )  # fmt: skip
    assert rule["scope"] == (
        "from 10.1.0.20/32, 10.1.0.0/16; to mail.contoso.com, 10.1.0.10:80; "
        "Host mail.contoso.com, autodiscover.contoso.com; path /ews/, /autodiscover/; "
        "user alice, contoso\\bob; time * .. 2026-03-02T13:00:03Z"
    )


def test_verify_states_offsets_as_the_times_they_became(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # the capture's first packet is at 13:00:00.1
    rule = verify_json(capsys, "--since", "+1s", "--until", "+5m")
    assert rule["scope"] == "time 2026-03-02T13:00:01Z .. 2026-03-02T13:05:00Z"
    assert (rule["result"], rule["in_scope"]) == ("PASS", 6)


def test_verify_states_times_in_utc_whatever_the_machine_zone(
    capsys: pytest.CaptureFixture[str], new_york: None
) -> None:
    rule = verify_json(capsys, "--since", "1772456403", "--until", "2026-03-02T13:00:41")
    assert rule["scope"] == "time 2026-03-02T13:00:03Z .. 2026-03-02T13:00:41Z"


def test_policy_times_of_toml_types(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text(
        "[[rule]]\nsince = 2026-03-02T14:00:03+01:00\nuntil = 1772456441\n"
        "[[rule]]\nsince = 2026-03-02T13:00:03\n"
    )
    code = main(["verify", HEALTHY, "--policy", str(policy), "--json", "--no-progress"])
    rules = json.loads(capsys.readouterr().out)["rules"]
    assert code in (0, 1, 2)
    assert [r["scope"] for r in rules] == [
        "time 2026-03-02T13:00:03Z .. 2026-03-02T13:00:41Z",
        "time 2026-03-02T13:00:03Z .. *",
    ]
    policy.write_text("[[rule]]\nsince = true\n")
    assert main(["verify", HEALTHY, "--policy", str(policy)]) == 3
    assert capsys.readouterr().err == f"oauth-analyzer: error: rule 1: since True: {TIME_FORMS}\n"
