"""``--user`` never rules out an exchange that may be the account: the same account is spelt
``user@dns.domain``, ``NETBIOS\\user``, ``user`` with a NetBIOS or DNS domain field, and in tokens
as upn / smtp / sip, so account names are compared and domains only when both are of one kind;
an exchange whose user cannot be read (Kerberos, a refused or unfinished logon, an empty user)
stays in scope and is judged (review round 4: u01, an NTLM logon as CONTOSO\\svc-sfb left out by
``--user svc-sfb@contoso.com``; u02, a Kerberos call left out because its ticket is encrypted;
both PASSed). Real bytes: HTTP/1.1 captures written with scapy, NTLM and Kerberos messages and
tokens computed by the capture generator.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import token_kit
from token_kit import generated
from wire_kit import CLIENT, T0, conversation, write_packets

from analyzer import analyze
from analyzer.analysis.scope import Account, ScopeError, make_scope, parse_account
from analyzer.cli import main
from analyzer.model import Challenge, Event, evolve

pytest.importorskip("scapy.all")

STRICT = token_kit.strict_rule(CLIENT)
SVC = "svc-sfb@contoso.com"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
EWS = "/EWS/Exchange.asmx"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def request(*lines: str) -> bytes:
    head = [f"POST {EWS} HTTP/1.1", "Host: mail.contoso.com", *lines, "Content-Length: 0"]
    return ("\r\n".join([*head, "", ""])).encode()


def answer(status: int = 200, *lines: str) -> bytes:
    reason = {200: "OK", 401: "Unauthorized"}[status]
    return (
        "\r\n".join([f"HTTP/1.1 {status} {reason}", *lines, "Content-Length: 0", "", ""])
    ).encode()


def oauth_call(upn: str = SVC) -> list[tuple[bool, bytes]]:
    return [(True, request(f"Authorization: Bearer {token_kit.sfb_token(upn)}")), (False, OK)]


def ntlm_logon(user: str = "svc-sfb", domain: str = "CONTOSO", finished: bool = True) -> list:
    """NTLM NEGOTIATE -> 401 CHALLENGE -> AUTHENTICATE as ``domain\\user`` -> 200 (computed);
    not ``finished``: the client never sends the third leg."""
    ntlm = generated("ntlm")
    type1 = ntlm.ntlm_negotiate()
    info = ntlm.ntlm_target_info(int(T0), computer="EX01", dns_computer="ex01.contoso.com")
    type2 = ntlm.ntlm_challenge(b"\x11\x22\x33\x44\x55\x66\x77\x88", info)
    auth = ntlm.NtlmAuth(
        domain=domain,
        user=user,
        password="Passw0rd!",
        workstation="SFB01",
        spn="HTTP/mail.contoso.com",
        client_challenge=b"\x0a" * 8,
        exported_session_key=b"\x0b" * 16,
    )
    legs = [
        (True, request(f"Authorization: NTLM {b64(type1)}")),
        (False, answer(401, f"WWW-Authenticate: NTLM {b64(type2)}")),
    ]
    if finished:
        type3 = ntlm.ntlm_authenticate(auth, type1, type2)
        legs += [(True, request(f"Authorization: NTLM {b64(type3)}")), (False, OK)]
    return legs


def kerberos_call(status: int = 200) -> list[tuple[bool, bytes]]:
    """Negotiate with a Kerberos ticket (its client name encrypted), answered ``status``."""
    kerberos = generated("kerberos")
    ticket = kerberos.kerberos_ap_req("CONTOSO.COM", "HTTP", "mail.contoso.com", "u-ticket")
    offer = b64(kerberos.spnego_init_krb5(ticket))
    if status == 200:
        reply = answer(200, f"WWW-Authenticate: Negotiate {b64(kerberos.spnego_resp_krb5('m'))}")
    else:
        reply = answer(401, "WWW-Authenticate: Negotiate")
    return [(True, request(f"Authorization: Negotiate {offer}")), (False, reply)]


def capture(tmp_path: Path, *connections: list, name: str = "c.pcap") -> str:
    """The SfB pool's OAuth call for svc-sfb, then each connection from its own port."""
    packets = [conversation(oauth_call(), 40001, T0)]
    for i, segments in enumerate(connections):
        packets.append(conversation(segments, 40002 + i, T0 + 1 + i))
    return write_packets(tmp_path / name, *packets)


def verify(capsys: pytest.CaptureFixture[str], path: str, *extra: str) -> tuple[int, dict]:
    code = main(["verify", path, *STRICT, *extra, "--json"])
    return code, json.loads(capsys.readouterr().out)["rules"][0]


def reasons(rule: dict) -> list[str]:
    return [v["reason"] for v in rule["violations"]]


# -- u02: a user that cannot be read stays in scope ---------------------------------------------
def test_a_kerberos_call_whose_user_is_encrypted_stays_in_a_user_scope(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = capture(tmp_path, kerberos_call())
    code, rule = verify(capsys, path)
    assert (code, rule["result"], reasons(rule)) == (1, "FAIL", ["not OAuth: kerberos"])
    code, rule = verify(capsys, path, "--user", SVC)
    assert (code, rule["result"], rule["in_scope"]) == (1, "FAIL", 2)
    assert rule["reason"] == "1 of 2 exchanges break the rule"
    # the reason says why --user kept it (without --user, above, nothing to say)
    assert reasons(rule) == [
        "not OAuth: kerberos (its user cannot be read, so --user keeps it: it may be the account)"
    ]
    # the control: the OAuth call alone passes the same scope
    alone = write_packets(tmp_path / "alone.pcap", conversation(oauth_call(), 40001, T0))
    code, rule = verify(capsys, alone, "--user", SVC)
    assert (code, rule["result"], rule["in_scope"]) == (0, "PASS", 1)


def test_a_refused_kerberos_call_and_an_unfinished_ntlm_logon_stay_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = capture(tmp_path, kerberos_call(401))
    code, rule = verify(capsys, path, "--user", SVC)
    assert (code, rule["result"]) == (1, "FAIL")
    assert [v["kind"] for v in rule["violations"]] == ["not-oauth"]
    # a NEGOTIATE the server challenged and the client never followed: no user was ever sent
    path = capture(tmp_path, ntlm_logon(finished=False), name="unfinished.pcap")
    code, rule = verify(capsys, path, "--user", SVC)
    kept = "its user cannot be read, so --user keeps it: it may be the account"
    assert (code, rule["result"], reasons(rule)) == (1, "FAIL", [f"not OAuth: ntlm ({kept})"])


def test_a_basic_credential_with_an_empty_user_stays_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = [(True, request(f"Authorization: Basic {b64(b':Passw0rd!')}")), (False, OK)]
    code, rule = verify(capsys, capture(tmp_path, empty), "--user", SVC)
    assert (code, rule["result"]) == (1, "FAIL")
    assert reasons(rule)[0].startswith("not OAuth: basic")


def test_calls_whose_logon_was_not_seen_keep_a_user_scope_inconclusive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a connection the capture joined mid-way: header-less calls served by an unseen logon
    packets = [
        conversation(oauth_call(), 40001, T0),
        conversation([(True, request()), (False, OK)], 40002, T0 + 1, syn=False),
    ]
    path = write_packets(tmp_path / "joined.pcap", *packets)
    code, rule = verify(capsys, path, "--user", SVC)
    assert (code, rule["result"], rule["in_scope"]) == (2, "INCONCLUSIVE", 1)
    kinds = [n["kind"] for n in rule["coverage"]["not_inspected"]]
    assert kinds == ["connection-auth-unseen"]


# -- u01: one account, several spellings ---------------------------------------------------------
@pytest.mark.parametrize(
    "user",
    [SVC, "SVC-SFB@Contoso.com", "svc-sfb", "CONTOSO\\svc-sfb", "contoso.com\\svc-sfb"],
)
def test_an_ntlm_logon_of_the_account_stays_in_however_it_is_spelt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], user: str
) -> None:
    path = capture(tmp_path, ntlm_logon())
    code, rule = verify(capsys, path, "--user", user)
    assert (code, rule["result"], rule["in_scope"]) == (1, "FAIL", 2)
    assert reasons(rule) == ["not OAuth: ntlm as CONTOSO\\svc-sfb"]


def test_another_account_stays_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # CONTOSO\alice's logon, NEGOTIATE leg and all, is not svc-sfb's
    path = capture(tmp_path, ntlm_logon(user="alice"))
    code, rule = verify(capsys, path, "--user", SVC)
    assert (code, rule["result"], rule["in_scope"]) == (0, "PASS", 1)
    code, rule = verify(capsys, path, "--user", "CONTOSO\\alice")
    assert (code, rule["result"], reasons(rule)) == (
        1,
        "FAIL",
        ["not OAuth: ntlm as CONTOSO\\alice"],
    )
    # the same name in another domain, both NetBIOS names: another account
    path = capture(tmp_path, ntlm_logon(domain="FABRIKAM"), name="fabrikam.pcap")
    code, rule = verify(capsys, path, "--user", "CONTOSO\\svc-sfb")
    assert (code, rule["result"], rule["in_scope"]) == (0, "PASS", 1)
    # ... but a NetBIOS name and a UPN suffix cannot be related: kept
    code, rule = verify(capsys, path, "--user", SVC)
    assert (code, rule["result"]) == (1, "FAIL")


def test_a_token_for_another_user_stays_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    packets = [conversation(oauth_call(), 40001, T0)]
    packets += [conversation(oauth_call("alice@contoso.com"), 40002, T0 + 1)]
    packets += [conversation(oauth_call("svc-sfb@fabrikam.com"), 40003, T0 + 2)]
    path = write_packets(tmp_path / "tokens.pcap", *packets)
    code, rule = verify(capsys, path, "--user", SVC)
    assert (code, rule["result"], rule["in_scope"]) == (0, "PASS", 1)
    code, rule = verify(capsys, path, "--user", "svc-sfb")
    assert (code, rule["result"], rule["in_scope"]) == (0, "PASS", 2)
    code, rule = verify(capsys, path, "--user", "CONTOSO\\svc-sfb")
    assert (code, rule["result"], rule["in_scope"]) == (0, "PASS", 2)


def test_analyze_lists_the_same_exchanges(tmp_path: Path) -> None:
    # the scope options mean the same in every command
    path = capture(tmp_path, ntlm_logon(), kerberos_call(), ntlm_logon(user="alice"))
    events = analyze(path).result.events
    scope = make_scope(user=SVC)
    kept = [(e.scheme, e.user, e.ntlm_type) for e in events if scope.matches(e)]
    assert kept == [
        ("bearer", None, None),
        ("ntlm", "svc-sfb", 3),
        ("negotiate", None, None),
    ]


# -- the rule, spelling by spelling --------------------------------------------------------------
def event(**fields: object) -> Event:
    """One exchange as the analysis records it, with ``fields``."""
    base = Event(1, T0, CLIENT, 52000, "10.9.9.2", 80, "C1", "http/1.1", "POST", None, EWS, 200)
    return evolve(base, **fields)


def test_spellings_of_one_account() -> None:
    assert parse_account("CONTOSO\\Svc-SfB") == Account("svc-sfb", "contoso", "netbios")
    assert parse_account("svc-sfb@Contoso.COM.") == Account("svc-sfb", "contoso.com", "suffix")
    assert parse_account("sip:svc-sfb@contoso.com") == Account("svc-sfb", "contoso.com", "suffix")
    assert parse_account("svc-sfb", "contoso.com") == Account("svc-sfb", "contoso.com", "dns")
    assert parse_account("svc-sfb", "") == Account("svc-sfb")
    for user in ("svc-sfb@contoso.com", "CONTOSO\\svc-sfb", "svc-sfb", "SIP:svc-sfb@contoso.com"):
        scope = make_scope(user=user)
        assert scope.matches(event(scheme="ntlm", user="svc-sfb", domain="CONTOSO")), user
        assert scope.matches(event(scheme="bearer", token_subject="svc-sfb@contoso.com")), user
        assert scope.matches(event(scheme="bearer", token_subject="sip:svc-sfb@contoso.com")), user
        assert not scope.matches(event(scheme="ntlm", user="alice", domain="CONTOSO")), user
        assert not scope.matches(event(scheme="bearer", token_subject="alice@contoso.com")), user
    dns = make_scope(user="contoso.com\\svc-sfb")
    assert dns.matches(event(scheme="ntlm", user="svc-sfb", domain="CONTOSO.COM"))
    assert not dns.matches(event(scheme="ntlm", user="svc-sfb", domain="fabrikam.com"))
    assert dns.matches(event(scheme="ntlm", user="svc-sfb", domain="FABRIKAM"))  # unrelatable
    upn = make_scope(user=SVC)
    assert not upn.matches(event(scheme="bearer", token_subject="svc-sfb@fabrikam.com"))
    assert upn.matches(event(scheme="basic", user="svc-sfb@contoso.com"))
    assert upn.matches(event(scheme="ntlm", user="svc-sfb", domain="corp.contoso.com"))


def test_unknown_users_are_not_ruled_out() -> None:
    scope = make_scope(user=SVC)
    assert scope.matches(event(scheme="negotiate", mechanism="kerberos", domain="CONTOSO.COM"))
    assert scope.matches(event(scheme="ntlm", user="", domain="", ntlm_response="anonymous"))
    assert scope.matches(event(scheme="bearer"))  # a token without a subject
    assert scope.matches(event(scheme="bearer", token_subject="b3f1c0de-opaque-sub"))
    masked = event(scheme="basic", user="ghp_…(40 chars, fp 1a2b3c4d5e6f)", raw_user="ghp_x")
    assert scope.matches(masked)
    # a sub spelt as given still matches, as before
    assert make_scope(user="B3F1C0DE-opaque-sub").matches(
        event(scheme="none", token_subject="b3f1c0de-opaque-sub")
    )
    # a leg the server answered with the next leg of a logon that went on: its later leg decides
    leg = dict(scheme="ntlm", ntlm_type=1, status=401, outcome="challenged")
    leg["challenges"] = (Challenge("ntlm", token68="TlRMTVNTUAACAAAA"),)
    assert not scope.matches(event(**leg))
    assert scope.matches(event(**{**leg, "outcome": "incomplete"}))  # the client never went on
    # no credential at all: no user to match
    assert not scope.matches(event(scheme="none"))
    assert not scope.matches(event(scheme="bearer", cred_len=0))  # the realm-discovery probe


def test_a_user_item_must_name_an_account() -> None:
    for bad in ("@contoso.com", "CONTOSO\\", "sip:"):
        with pytest.raises(ScopeError, match="no account name"):
            make_scope(user=bad)
    assert make_scope(user="Alice, CONTOSO\\Bob").describe() == "user alice, contoso\\bob"
