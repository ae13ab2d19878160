"""``verify`` never PASSes what an admin should not sign off on (issue 9): each wrong answer seen
when the tool was tried as an admin would, on the bundled captures and on damaged copies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from h2_kit import Peer, request, response, settings
from wire_kit import OK, T0, connection, conversation, write_packets

from analyzer.analysis.scope import ScopeError, make_scope, parse_server
from analyzer.analysis.verify import PolicyError, make_rule, parse_issuer
from analyzer.cli import main
from analyzer.protocols.http2_frames import PREFACE

CAPTURES = Path(__file__).resolve().parents[1] / "captures"
HEALTHY = str(CAPTURES / "healthy-oauth.pcap")
FINDINGS = str(CAPTURES / "findings.pcap")
SFB = str(CAPTURES / "exchange-sfb.pcap")
MESSY = str(CAPTURES / "messy.pcapng")
SFB_ID = "00000004-0000-0ff1-ce00-000000000000"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["verify", *args])
    return code, capsys.readouterr().out


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    code, out = run(capsys, *args, "--json")
    return code, json.loads(out)


@pytest.fixture(scope="module")
def cut_capture(tmp_path_factory: pytest.TempPathFactory) -> str:
    """healthy-oauth.pcap cut to 30,000 bytes (``head -c 30000``): a request head is lost."""
    path = tmp_path_factory.mktemp("cut") / "cut.pcap"
    path.write_bytes(Path(HEALTHY).read_bytes()[:30000])
    return str(path)


# -- 1. the realm is part of the issuer ------------------------------------------------------
def test_issuer_with_another_realm_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, HEALTHY, "--issuer", f"{SFB_ID}@fabrikam.com")
    assert code == 1 and out.splitlines()[-1] == "FAIL"
    assert "6 x wrong-realm" in out
    assert f"issuer {SFB_ID}@contoso.com: realm contoso.com is not fabrikam.com" in out
    assert run(capsys, HEALTHY, "--issuer", f"{SFB_ID}@contoso.com")[0] == 0


def test_realm_compares_case_sensitively_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, HEALTHY, "--issuer", f"{SFB_ID}@Contoso.com")
    assert code == 1
    assert "realms compare case-sensitively" in out


def test_issuer_host_and_wildcard_realm(capsys: pytest.CaptureFixture[str]) -> None:
    # SfB's issuer names no host: an issuer given with one does not match it
    code, out = run(capsys, HEALTHY, "--issuer", f"{SFB_ID}/sfbpool01.contoso.com@contoso.com")
    assert code == 1 and "host (none) is not sfbpool01.contoso.com" in out
    assert run(capsys, HEALTHY, "--issuer", f"{SFB_ID}@*")[0] == 0


def test_issuer_names_match_exactly_and_unknown_names_list_the_valid_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["verify", HEALTHY, "--issuer", "skyp"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "issuer 'skyp': not an app id or a known product name" in err
    assert "skype" in err and "exchange" in err and "acs" in err
    assert run(capsys, HEALTHY, "--issuer", "Skype for Business / Lync")[0] == 0  # a whole name
    # the whole name with a realm: the "/" is the name's, not <id>/<host>
    assert run(capsys, HEALTHY, "--issuer", "Skype for Business / Lync@contoso.com")[0] == 0
    code, out = run(capsys, HEALTHY, "--issuer", "Skype for Business / Lync@fabrikam.com")
    assert code == 1 and "@contoso.com: realm contoso.com is not fabrikam.com" in out
    assert run(capsys, HEALTHY, "--issuer", "skype for business/lync@*")[0] == 0
    for two_ats in ("Skype for Business / Lync@contoso.com@x", f"{SFB_ID}@contoso.com@x"):
        assert main(["verify", HEALTHY, "--issuer", two_ats]) == 3
        assert capsys.readouterr().err == (
            f"oauth-analyzer: error: issuer {two_ats!r}: more than one @ (<id>[/<host>]@<realm>)\n"
        )
    assert main(["verify", HEALTHY, "--issuer", "Skype for Business / Lync@ "]) == 3
    assert capsys.readouterr().err == (
        "oauth-analyzer: error: issuer 'Skype for Business / Lync@': empty realm after @ "
        "(use @* for any realm)\n"
    )
    with pytest.raises(PolicyError):
        parse_issuer("00000004-0000-0ff1-ce00-000000000000@")


def test_policy_file_realm_is_honoured(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text(f'[[rule]]\nname = "sfb"\nissuer = "{SFB_ID}@fabrikam.com"\n')
    code, data = run_json(capsys, HEALTHY, "--policy", str(policy))
    assert code == 1 and data["rules"][0]["result"] == "FAIL"
    assert {v["kind"] for v in data["rules"][0]["violations"]} == {"wrong-realm"}


# -- 2. serious credential problems fail unless relaxed on purpose ---------------------------
def test_unsigned_token_fails_and_allow_relaxes_it(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, FINDINGS, "--client", "10.2.1.41")
    assert code == 1
    assert "1 x unsigned" in out and "unsigned token (jwt-unsigned), not S2S" in out
    code, out = run(capsys, FINDINGS, "--client", "10.2.1.41", "--allow", "unsigned-token")
    assert code == 0 and out.splitlines()[-1] == "PASS"
    assert "relaxed on purpose: unsigned-token on 1 exchange (allow)" in out
    code, data = run_json(capsys, FINDINGS, "--client", "10.2.1.41", "--allow", "unsigned-token")
    assert data["rules"][0]["relaxed"] == {"unsigned-token": 1}


def test_s2s_outer_token_with_signed_actor_is_not_unsigned(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # healthy-oauth.pcap: every outer token is alg none with a signed actor - the normal shape
    code, data = run_json(capsys, HEALTHY, "--require-signature")
    assert code == 0 and data["rules"][0]["compliant"] == 6


@pytest.mark.parametrize(
    ("client", "kind", "text"),
    [
        ("10.2.1.21", "not-yet-valid", "token used before its nbf (not yet valid)"),
        ("10.2.1.82", "never-valid", "token's exp precedes its nbf: never valid"),
    ],
)
def test_token_time_problems_are_named_as_such(
    capsys: pytest.CaptureFixture[str], client: str, kind: str, text: str
) -> None:
    code, data = run_json(capsys, FINDINGS, "--client", client)
    assert code == 1
    (violation,) = data["rules"][0]["violations"]
    assert violation["kind"] == kind and violation["reason"].startswith(text)


def test_untrusted_issuer_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, FINDINGS, "--client", "10.2.1.51")
    kinds = [v["kind"] for v in data["rules"][0]["violations"]]
    assert code == 1 and kinds == ["untrusted-issuer"]
    relaxed = run_json(capsys, FINDINGS, "--client", "10.2.1.51", "--allow", "untrusted-issuer")
    # relaxed, the server's refusal remains
    assert [v["kind"] for v in relaxed[1]["rules"][0]["violations"]] == ["rejected"]


def test_allow_takes_only_credential_rule_ids(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", HEALTHY, "--allow", "cleartext-bearer"]) == 3
    assert "these can be relaxed: unsigned-token" in capsys.readouterr().err


def test_expired_token_refused_is_a_rejection_with_the_tools_diagnosis(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, data = run_json(capsys, SFB, "--client", "10.1.0.20", "--details")
    assert code == 1
    by_event = {v["event_id"]: v for v in data["rules"][0]["violations"]}
    assert by_event[8]["kind"] == "rejected"
    assert by_event[8]["reason"] == (
        "OAuth token refused: server answered 401 (x-ms-diagnostics 2000002 token_expired); "
        "the token had expired"
    )


# -- 3. blind spots and damage ---------------------------------------------------------------
def test_cut_capture_is_inconclusive_and_says_what_was_lost(
    capsys: pytest.CaptureFixture[str], cut_capture: str
) -> None:
    code, out = run(capsys, cut_capture)
    assert code == 2
    assert out.splitlines()[-1].startswith(
        "INCONCLUSIVE (warning: damaged capture: " + cut_capture + ": file ends in the middle"
    )
    assert "blind spot: request bytes lost 1 time on 1 connection to 10.1.0.10:80" in out
    assert "coverage: 3 exchanges inspected, 2026-03-02 13:00:02 .. 2026-03-02 13:00:03" in out


def test_cut_capture_with_partial_passes_with_the_warning(
    capsys: pytest.CaptureFixture[str], cut_capture: str
) -> None:
    code, out = run(capsys, cut_capture, "--partial")
    assert code == 0 and out.splitlines()[-1].startswith("PASS (warning: damaged capture:")
    assert "(partial: traffic in scope was not inspected, see below)" in out
    code, data = run_json(capsys, cut_capture, "--partial")
    assert data["warnings"][0].endswith("the capture is truncated")
    (blind,) = data["rules"][0]["coverage"]["not_inspected"]
    assert (blind["kind"], blind["server"], blind["client"]) == (
        "request-lost",
        "10.1.0.10:80",
        "10.1.0.20:52312",
    )


def test_blind_spot_outside_the_scope_does_not_count(
    capsys: pytest.CaptureFixture[str], cut_capture: str
) -> None:
    # the cut connection goes to 10.1.0.10:80; a scope on another server is not blinded by it
    code, out = run(capsys, cut_capture, "--server", "10.1.0.20")
    assert code == 2 and "no authenticated exchange matches to 10.1.0.20" in out
    assert "blind spot" not in out


def test_tls_to_an_in_scope_server_is_inconclusive(capsys: pytest.CaptureFixture[str]) -> None:
    # messy.pcapng holds one undecrypted TLS connection to 93.184.215.14:443
    code, out = run(capsys, MESSY, "--server", "93.184.215.14")
    assert code == 2
    # named by its SNI, with the address it went to
    assert "1 TLS connection to www.example.com:443 (93.184.215.14) not inspected" in out
    code, out = run(capsys, MESSY, "--server", "www.example.com")  # matched by SNI too
    assert code == 2 and "1 TLS connection to www.example.com:443" in out
    code, out = run(capsys, MESSY, "--server", "93.184.215.14:80")  # nothing there either
    assert code == 2 and "blind spot" not in out and "no authenticated exchange" in out


def test_html_banner_warns_of_damage(cut_capture: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.html"
    assert main(["report", cut_capture, "-o", str(out), "--no-progress"]) == 0
    page = out.read_text()
    banner = page[page.index('class="banner') : page.index("</section>", page.index("banner"))]
    assert "Warning: Damaged capture:" in banner and "file ends in the middle" in banner
    assert "Warning: Not inspected: request bytes lost 1 time" in banner


# -- 4. hybrid traffic: lists and paths ------------------------------------------------------
def test_issuer_lists_and_toml_lists(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run(capsys, HEALTHY, "--issuer", "acs,skype")[0] == 0
    assert run(capsys, HEALTHY, "--issuer", "acs,exchange")[0] == 1
    policy = tmp_path / "p.toml"
    policy.write_text('[[rule]]\nissuer = ["acs", "skype"]\nrealm = ["contoso.com", "x.com"]\n')
    assert run(capsys, HEALTHY, "--policy", str(policy))[0] == 0


def test_path_scope_is_a_case_insensitive_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, HEALTHY, "--path", "/ews/")
    assert code == 0 and data["rules"][0]["in_scope"] == 6
    code, out = run(capsys, HEALTHY, "--path", "/autodiscover/")
    assert code == 2 and "no authenticated exchange matches path /autodiscover/" in out
    with pytest.raises(PolicyError):
        make_rule(path="EWS")


def test_command_line_rule_and_policy_do_not_mix(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text('[[rule]]\nissuer = "skype"\n')
    assert main(["verify", HEALTHY, "--policy", str(policy), "--client", "10.1.0.20"]) == 3
    assert "not both" in capsys.readouterr().err


def test_verify_refuses_scheme(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", HEALTHY, "--scheme", "bearer"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "would hide the very fallbacks" in err


# -- 5. servers as the tool prints them ------------------------------------------------------
@pytest.mark.parametrize(
    "server",
    [
        "mail.contoso.com",
        "MAIL.contoso.com",
        "mail.contoso.com:80",
        "10.1.0.10",
        "10.1.0.10:80",
        "10.1.0.0/24",
        "http://mail.contoso.com/EWS/Exchange.asmx",
        "http://mail.contoso.com:80/",
        "http://10.1.0.10/",
    ],
)
def test_server_forms_match(capsys: pytest.CaptureFixture[str], server: str) -> None:
    code, data = run_json(capsys, HEALTHY, "--server", server)
    assert code == 0 and data["rules"][0]["in_scope"] == 6


@pytest.mark.parametrize("server", ["mail.contoso.com:443", "10.1.0.10:8080", "https://x.org/"])
def test_server_forms_that_do_not_match(capsys: pytest.CaptureFixture[str], server: str) -> None:
    code, out = run(capsys, HEALTHY, "--server", server)
    assert code == 2
    # the servers that were seen are listed, as --server accepts them
    assert "servers seen: mail.contoso.com 10.1.0.10:80 (6)" in out


def test_ipv6_server_forms() -> None:
    spec = parse_server("[2001:db8::10]:443")
    assert (str(spec.network), spec.port) == ("2001:db8::10/128", 443)
    assert spec.matches("2001:db8::10", 443, None, frozenset())
    assert not spec.matches("2001:db8::10", 80, None, frozenset())
    assert parse_server("2001:db8::/64").matches("2001:db8::99", 1, None, frozenset())
    assert parse_server("http://[2001:db8::10]:8080/x").port == 8080
    for bad in ("mail contoso", "[2001:db8::10]x", "host:99999", "/EWS"):
        with pytest.raises(ScopeError):
            parse_server(bad)


def test_ipv6_capture_server_scope(capsys: pytest.CaptureFixture[str]) -> None:
    from analyzer.engine import analyze_paths

    v6 = [e for e in analyze_paths([MESSY]).events if ":" in e.server_ip and e.cred_len]
    assert v6, "messy.pcapng carries authenticated IPv6 exchanges"
    e = v6[0]
    code, data = run_json(capsys, MESSY, "--server", f"[{e.server_ip}]:{e.server_port}")
    assert code in (0, 1) and data["rules"][0]["in_scope"] >= 1


def test_time_scope() -> None:
    scope = make_scope(since="2026-03-02T13:00:03Z", until="1772456441")
    assert scope.since == 1772456403.0 and scope.until == 1772456441.0
    with pytest.raises(ScopeError):
        make_scope(since="yesterday")
    with pytest.raises(ScopeError):
        make_scope(since="2026-03-03", until="2026-03-02")


def test_undecodable_http2_to_an_in_scope_server_is_a_blind_spot(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("scapy.all")
    # an HTTP/1.1 Bearer call, then HTTP/2 captured mid-connection: the client's HPACK table
    # is unknown, so stream 7's credential cannot be read
    client = Peer()
    fields = request("/api", ("authorization", "Basic YWxpY2U6cHc="))
    client.encoder.encode(fields)  # before the capture began: the block below refers to it
    h2 = [(True, client.headers(7, fields, end=True))]
    bearer = b"GET /api HTTP/1.1\r\nHost: api.test\r\nAuthorization: Bearer abc.def\r\n\r\n"
    path = write_packets(
        tmp_path / "h2.pcap",
        connection([(bearer, OK)], 40001, T0),
        conversation(h2, 40002, T0 + 1, syn=False),
    )
    code, out = run(capsys, str(path), "--server", "10.9.9.2")
    assert code == 2
    assert (
        "blind spot: 1 connection to 10.9.9.2:80 not inspected: 1 HTTP/2 stream(s) whose "
        "headers could not be decoded"
    ) in out
    code, out = run(capsys, str(path), "--server", "10.9.9.2", "--partial")
    assert code == 0 and "all 1 authenticated exchanges used OAuth" in out


def test_http2_read_whole_is_judged_like_http1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("scapy.all")
    client, server = Peer(), Peer()
    flow = [
        (
            True,
            PREFACE
            + settings()
            + client.headers(1, request("/api", ("authorization", "Basic YWxpY2U6cHc=")), end=True),
        ),
        (False, settings() + server.headers(1, response(200), end=True)),
    ]
    path = write_packets(tmp_path / "h2.pcap", conversation(flow, 40001, T0))
    code, out = run(capsys, str(path), "--server", "10.9.9.2")
    assert code == 1 and "blind spot" not in out


def test_an_unknown_client_is_not_ruled_out_by_a_client_filter() -> None:
    """An HTTP archive does not record the browser's address (client_ip ""): a client filter
    keeps its exchanges and blind spots in scope, and still rules out a known other client."""
    from analyzer.model import Event, NotInspected

    scope = make_scope(client="10.1.0.20")
    blank = Event(0, 0.0, "", 0, "10.1.0.10", 443, "C1", "http/1.1", "GET", "a.test", "/", 200)
    assert scope.matches(blank)
    assert scope.covers(NotInspected("sanitized", "C1", 0.0, "", 0, "10.1.0.10", 443))
    other = Event(0, 0.0, "10.1.0.50", 1, "10.1.0.10", 443, "C1", "http/1.1", "GET", "a", "/", 200)
    assert not scope.matches(other)
    assert scope.matches(Event(0, 0.0, "10.1.0.20", 1, "10.1.0.10", 443, "C", "", "", None, "/", 1))
