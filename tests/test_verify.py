"""``oauth-analyzer verify``: answers and exit codes."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
from pathlib import Path

import pytest
from shared_dir import PUBLIC, needs_public

from analyzer.analysis.verify import PolicyError, make_rule, rules_from_policy
from analyzer.cli import main

CAPTURES = Path(__file__).resolve().parents[1] / "captures"
SFB = str(CAPTURES / "exchange-sfb.pcap")


def verify(*args: str) -> subprocess.CompletedProcess:
    """``oauth-analyzer verify ARGS`` run in this process (so mutation testing sees it)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["verify", *args])
        except SystemExit as exc:  # argparse's own usage errors
            code = exc.code if isinstance(exc.code, int) else 2
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def test_oauth_only_scope_passes() -> None:
    # The first three EWS calls of the SfB pool: OAuth, issuer Skype, realm contoso.com, signed.
    proc = verify(SFB, "--client", "10.1.0.20", "--server", "mail.contoso.com", "--json")
    data = json.loads(proc.stdout)
    assert data["result"] == "FAIL"  # the fallback is in scope
    first = verify(
        SFB,
        "--client",
        "10.1.0.0/24",
        "--server",
        "10.1.0.10",
        "--issuer",
        "00000004-0000-0ff1-ce00-000000000000",
        "--realm",
        "contoso.com",
        "--require-signature",
        "--json",
    )
    rule = json.loads(first.stdout)["rules"][0]
    # 9 exchanges: NTLM's two legs are one; the probe is not one
    assert rule["compliant"] == 3 and rule["in_scope"] == 8


def test_ntlm_fallback_fails_with_every_violating_exchange() -> None:
    proc = verify(SFB, "--client", "10.1.0.20", "--issuer", "skype", "--require-signature")
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("FAIL") and lines[-1] == "FAIL"
    assert "3 of 6 exchanges break the rule" in proc.stdout
    # grouped by kind, with counts; each exchange only with --details
    assert "1 x not-oauth (09:00:06)" in proc.stdout
    assert "(--details lists each of the 3 exchanges)" in proc.stdout
    assert "[event" not in proc.stdout
    details = verify(
        SFB, "--client", "10.1.0.20", "--issuer", "skype", "--require-signature", "--details"
    ).stdout
    assert "401 (x-ms-diagnostics 2000002 token_expired); the token had expired  [event 8]" in (
        details
    )
    # the NTLM handshake's two legs are one violation, named with the user of its last leg
    assert "ntlm: not-oauth: not OAuth: ntlm as CONTOSO\\svc-sfb  [event 9,10]" in details
    assert "bad-signature: actor token signature does not verify" in details
    assert "invalid_signature)  [event 11]" in details


def test_wrong_issuer_realm_and_signature_are_violations() -> None:
    proc = verify(SFB, "--client", "10.1.0.20", "--issuer", "exchange", "--json")
    reasons = {v["reason"] for v in json.loads(proc.stdout)["rules"][0]["violations"]}
    assert "issuer 00000004-0000-0ff1-ce00-000000000000@contoso.com is not exchange" in reasons
    proc = verify(SFB, "--client", "10.1.0.20", "--realm", "fabrikam.com", "--json")
    reasons = {v["reason"] for v in json.loads(proc.stdout)["rules"][0]["violations"]}
    assert "realm contoso.com is not fabrikam.com" in reasons


def test_nothing_in_scope_is_inconclusive() -> None:
    proc = verify(SFB, "--server", "192.0.2.1")
    assert proc.returncode == 2
    assert proc.stdout.splitlines()[-1] == "INCONCLUSIVE"
    assert "8 authenticated exchanges elsewhere" in proc.stdout  # NTLM's two legs are one


@needs_public("lek__tls-works-dump.pcapng")
def test_only_encrypted_traffic_is_inconclusive_and_says_why() -> None:
    proc = verify(str(PUBLIC / "lek__tls-works-dump.pcapng"))
    assert proc.returncode == 2
    assert "no authenticated exchange matches all traffic; 6 connections in scope" in proc.stdout
    for port in (4434, 4435, 4436, 4479, 4483, 4491):  # one line per server
        assert f"1 TLS connection to 127.0.0.1:{port} not inspected: pass --tls-keylog" in (
            proc.stdout
        )


def test_bad_usage_and_unreadable_input_exit_3(tmp_path: Path) -> None:
    assert verify(SFB, "--no-such-option").returncode == 3
    assert verify(SFB, "--client", "not-an-ip").returncode == 3
    assert verify(SFB, "--issuer", "no-such-product").returncode == 3
    missing = verify(str(tmp_path / "missing.pcap"))
    assert missing.returncode == 3 and missing.stderr.count("\n") == 1
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"\x00" * 100)
    assert verify(str(junk)).returncode == 3


def test_policy_file_with_several_rules(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        """
[[rule]]
name = "sfb pool to exchange"
client = "10.1.0.20"
server = ["mail.contoso.com"]
issuer = "skype"

[[rule]]
name = "nobody talks to the dmz"
server = "192.0.2.0/24"
"""
    )
    proc = verify(SFB, "--policy", str(policy), "--json")
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert [(r["rule"], r["result"]) for r in data["rules"]] == [
        ("sfb pool to exchange", "FAIL"),
        ("nobody talks to the dmz", "INCONCLUSIVE"),
    ]
    broken = tmp_path / "broken.toml"
    broken.write_text('[[rule]]\nclinet = "10.0.0.1"\n')
    bad = verify(SFB, "--policy", str(broken))
    assert bad.returncode == 3 and "clinet" in bad.stderr
    broken.write_text("[[rule]\n")
    assert verify(SFB, "--policy", str(broken)).returncode == 3


def test_rule_building_rejects_nonsense() -> None:
    with pytest.raises(PolicyError):
        make_rule(client="10.0.0.300")
    with pytest.raises(PolicyError):
        rules_from_policy({"rule": "x"})
    with pytest.raises(PolicyError):
        rules_from_policy({"rule": [{"require_signature": "yes"}]})
    rule = make_rule(server="mail.contoso.com, 10.0.0.0/8", issuer="skype")
    assert [(s.host, str(s.network)) for s in rule.scope.servers] == [
        ("mail.contoso.com", "None"),
        (None, "10.0.0.0/8"),
    ]
    assert [i.app_ids for i in rule.issuers] == [
        frozenset({"00000004-0000-0ff1-ce00-000000000000"})
    ]
