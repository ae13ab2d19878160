"""Token intelligence end to end: the bundled captures against their generator's truth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from analyzer.engine import analyze_paths
from analyzer.oauth.tokens import decode_token

CAPTURES = Path(__file__).resolve().parents[1] / "captures"
SFB = str(CAPTURES / "exchange-sfb.pcap")
ACS_CERT = str(CAPTURES / "keys" / "acs.cert.pem")


def truth(name: str) -> dict:
    return json.loads((CAPTURES / f"{name}.truth.json").read_text())


@pytest.fixture(scope="module")
def sfb():
    return analyze_paths([SFB], key_files=[ACS_CERT])


def test_every_bearer_event_names_issuer_audience_and_realm(sfb) -> None:
    bearer = [e for e in sfb.events if e.scheme == "bearer" and e.token_format != "empty"]
    assert len(bearer) == 5
    for e in bearer:
        assert e.token_iss_app == "Skype for Business / Lync"
        assert e.token_aud_app == "Exchange"
        assert (e.token_realm, e.token_aud_host) == ("contoso.com", "mail.contoso.com")
        assert e.token_actor_iss == "00000004-0000-0ff1-ce00-000000000000@contoso.com"
    probe = next(e for e in sfb.events if e.token_format == "empty")
    assert probe.status == 401


def test_actor_tokens_verify_against_the_captured_metadata(sfb) -> None:
    good = [e for e in sfb.events if e.cred_fp in ("c3dfeed1d554", "7d31ba609275")]
    assert len(good) == 3
    for e in good:
        assert e.token_signature == "verified"
        assert e.token_key_source.startswith("http://sfbpool01.contoso.com/metadata/json/1")
        assert e.token_flags == ()


def test_expired_and_tampered_tokens_are_flagged(sfb) -> None:
    expired = next(e for e in sfb.events if e.cred_fp == "9ceea6443a88")
    assert {"expired", "actor-expired"} <= set(expired.token_flags)
    assert (expired.diag_code, expired.diag_category) == (2000002, "token_expired")
    tampered = next(e for e in sfb.events if e.cred_fp == "9c582e045724")
    assert tampered.token_signature == "bad-signature"
    assert "actor-bad-signature" in tampered.token_flags
    assert tampered.diag_category == "invalid_signature"


def test_token_table_matches_the_generator_truth(sfb) -> None:
    records = {t.fingerprint: t for t in sfb.tokens}
    for want in truth("exchange-sfb")["tokens"]:
        got = records[want["fingerprint"]]
        assert (got.format, got.alg, got.iss, got.aud) == (
            want["format"],
            want["alg"],
            want["iss"],
            want["aud"],
        ), want["note"]
        assert got.nbf == float(want["nbf"]) and got.exp == float(want["exp"])
        if want["signature_valid"] is True and got.role == "assertion":
            # Exchange's assertions to ACS are in the tenant's realm, its metadata in
            # contoso.com: the signature holds, but nothing captured ties the key to that issuer
            assert got.signature == "untrusted-key", want["note"]
            assert got.signature_detail.endswith(
                "but nothing ties that key to the issuer "
                f"{got.iss}: not its S2S metadata, not its OpenID configuration's jwks_uri, "
                "not a --keys file"
            )
        elif want["signature_valid"] is True:
            assert got.signature == "verified", want["note"]
        elif want["signature_valid"] is False:
            assert got.signature == "bad-signature", want["note"]
        else:
            assert got.signature == "unsigned", want["note"]
        assert ("expired" in got.flags) == want["expired"], want["note"]
        assert list(got.outer_fps) == sorted(want["outer_fps"])
        assert got.actor_fp == want["actor_fp"]


def test_issued_token_needs_the_users_key_and_says_where_it_came_from() -> None:
    without = {t.fingerprint: t for t in analyze_paths([SFB]).tokens}
    assert without["93caf47396d4"].signature == "unknown-key"
    with_key = analyze_paths([SFB], key_files=[ACS_CERT])
    issued = next(t for t in with_key.tokens if t.fingerprint == "93caf47396d4")
    assert (issued.role, issued.signature, issued.key_source) == (
        "access-token",
        "verified",
        ACS_CERT,
    )


def test_malformed_principal_is_flagged_with_the_id_it_meant(sfb) -> None:
    record = next(t for t in sfb.tokens if t.fingerprint == "0dde65f07e5a")
    assert "principals" in record.flags
    (check,) = [c for c in record.checks if c["id"] == "principals"]
    assert "did you mean 00000002-0000-0ff1-ce00-000000000000 (Exchange)" in check["message"]


def test_bearer_challenge_names_the_trusted_issuers(sfb) -> None:
    probe = next(e for e in sfb.events if e.token_format == "empty")
    bearer = next(c for c in probe.challenges if c.scheme == "bearer")
    assert bearer.details["client_id_app"] == "Exchange"
    apps = [(i["app"], i["realm"]) for i in bearer.details["trusted_issuers"]]
    assert ("Skype for Business / Lync", "contoso.com") in apps
    assert bearer.details["token_types"] == ["app_asserted_user_v1", "service_asserted_app_v1"]


def test_each_distinct_token_is_decoded_once() -> None:
    decode_token.cache_clear()
    analyze_paths([SFB])
    info = decode_token.cache_info()
    assert info.hits > 0
    assert info.misses == len({t.fingerprint for t in analyze_paths([SFB]).tokens})


def test_messy_capture_tokens_decode_without_keys() -> None:
    result = analyze_paths([str(CAPTURES / "messy.pcapng")])
    formats = {t.fingerprint: t.format for t in result.tokens}
    for want in truth("messy")["tokens"]:
        assert formats[want["fingerprint"]] == want["format"], want.get("note")


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "analyzer", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
    )


def _credential(fp: str) -> str:
    event = next(e for e in analyze_paths([SFB]).events if e.cred_fp == fp)
    assert event.credential
    return event.credential


def test_decode_explains_layers_principals_times_and_checks() -> None:
    text = _credential("9ceea6443a88")
    proc = run_cli(
        "decode",
        "--keys",
        str(CAPTURES / "keys" / "sfb.cert.pem"),
        "--at",
        "2026-03-02T09:00:06Z",
        "--host",
        "mail.contoso.com",
        stdin=f"Authorization: Bearer {text}\n",
    )
    out = proc.stdout
    assert proc.returncode == 1, proc.stderr  # expired at --at: a PROBLEM
    assert out.startswith("PROBLEM: expired 2 days 16 h before --at")
    assert "unsigned JWT (alg none)" in out
    assert "Actor token fp=7491a62b9831" in out
    assert "= Skype for Business / Lync (00000004-…)@contoso.com" in out
    assert "2026-02-27T17:00:00Z (8.0 h after nbf)" in out
    assert "actor  verified:" in out
    assert "[FAIL] expired: used 2.7 days after exp" in out
    assert "[ok]   issuer-matches-actor" in out
    assert text not in out and text[:60] not in out


def test_decode_json_and_bad_input() -> None:
    text = _credential("c3dfeed1d554")
    proc = run_cli("decode", text, "--json", "--at", "1772442000")
    data = json.loads(proc.stdout)
    assert data["fingerprint"] == "c3dfeed1d554"
    assert data["actor_signature"]["status"] == "unknown-key"  # no keys given
    assert {c["id"] for c in data["checks"] if c["ok"] is False} == set()
    assert text not in proc.stdout
    bad = run_cli("decode", "not.a.jwt!", "--json")
    assert bad.returncode == 1 and json.loads(bad.stdout)["format"] in ("opaque", "malformed")
    assert json.loads(bad.stdout)["verdict"] == "problem"
    when = run_cli("decode", text, "--at", "yesterday")
    assert when.returncode == 2 and when.stderr.count("\n") == 1


def test_unusable_key_file_is_one_error_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key\n")
    proc = run_cli("analyze", SFB, "--keys", str(junk))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "junk.pem" in proc.stderr


def test_tokens_output_has_no_token_text_unless_revealed() -> None:
    secrets = [_credential("c3dfeed1d554")]
    plain = run_cli("analyze", SFB, "--tokens", "--format", "jsonl")
    rows = [json.loads(line) for line in plain.stdout.splitlines()]
    assert len(rows) == 11 and "text" not in rows[0]
    assert all(s[:60] not in plain.stdout for s in secrets)
    revealed = run_cli("analyze", SFB, "--tokens", "--format", "jsonl", "--reveal-secrets")
    texts = {json.loads(line)["text"] for line in revealed.stdout.splitlines()}
    assert secrets[0] in texts
