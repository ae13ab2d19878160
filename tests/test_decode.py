"""``oauth-analyzer decode`` through the command line: verdict line, exit codes, pasted forms,
x-ms-diagnostics values, certificates named by thumbprint, JSON verdict and secret hygiene.

Tokens are minted with the TEST keys in ``captures/keys`` or taken from the bundled captures.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from analyzer.cli import main
from analyzer.engine import analyze_paths

CAPTURES = Path(__file__).resolve().parents[1] / "captures"
KEYS = CAPTURES / "keys"
SFB_CERT, ACS_CERT = str(KEYS / "sfb.cert.pem"), str(KEYS / "acs.cert.pem")
EXCHANGE = "00000002-0000-0ff1-ce00-000000000000"
SKYPE = "00000004-0000-0ff1-ce00-000000000000"
ACS = "00000001-0000-0000-c000-000000000000"
TENANT = "11111111-2222-3333-4444-555555555555"
AUD = f"{EXCHANGE}/mail.contoso.com@contoso.com"
USER = {"sid": "S-1-5-21-1111111111-2222222222-3333333333-1104", "upn": "alice@contoso.com"}
T0 = 1772442000  # 2026-03-02T09:00:00Z
EXP = T0 + 8 * 3600  # the outer token's exp: 2026-03-02T17:00:00Z


def _load_generator() -> ModuleType:
    """The capture generator (captures/generate), imported with captures/ on the path."""
    if str(CAPTURES) not in sys.path:
        sys.path.insert(0, str(CAPTURES))
    return importlib.import_module("generate")


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    return _load_generator()


@pytest.fixture(scope="module")
def keys(gen: ModuleType) -> dict[str, Any]:
    return gen.load_keys()


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def thumbprint(key: Any) -> str:
    """The certificate's SHA-1 thumbprint as Windows shows it (computed here, independently)."""
    return hashlib.sha1(key.der).hexdigest().upper()


def s2s(
    gen: ModuleType,
    keys: dict[str, Any],
    *,
    signer: str = "sfb",
    app: str = SKYPE,
    realm: str = "contoso.com",
    aud: str = AUD,
    nbf: int = T0,
    exp: int = EXP,
    outer_iss: str | None = None,
) -> str:
    """An S2S token: unsigned outer user context carrying an actor signed by ``signer``."""
    principal = f"{app}@{realm}"
    actor_claims = {
        "aud": aud,
        "iss": principal,
        "nbf": str(nbf),
        "exp": str(nbf + 24 * 3600),
        "nameid": principal,
        "trustedfordelegation": "true",
    }
    actor = gen.mint_rs256(actor_claims, keys[signer])
    outer = gen.user_context(aud, outer_iss or principal, USER, actor, nbf, exp)
    return gen.mint_unsigned(outer)


def run(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *args: str,
    stdin: str | None = None,
) -> tuple[int, str, str]:
    """``oauth-analyzer decode ARGS`` in process: (exit code, stdout, stderr)."""
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(["decode", *args])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, monkeypatch, *args: str, stdin: str | None = None) -> tuple[int, dict]:
    code, out, _ = run(capsys, monkeypatch, *args, "--json", stdin=stdin)
    return code, json.loads(out)


# -- tokens from the bundled capture ----------------------------------------------------------
@pytest.fixture(scope="module")
def healthy() -> tuple[Any, dict]:
    """The first bearer event of healthy-oauth.pcap whose token the generator says is sound."""
    truth = json.loads((CAPTURES / "healthy-oauth.truth.json").read_text())
    sound = {
        t["fingerprint"]: t
        for t in truth["tokens"]
        if t["layer"] == "outer" and not t["expired"] and not t["tampered"]
    }
    events = analyze_paths([str(CAPTURES / "healthy-oauth.pcap")]).events
    event = next(e for e in events if e.cred_fp in sound and e.credential)
    return event, sound[event.cred_fp]


def test_capture_token_with_its_key_is_ok_verdict_first(healthy, keys, capsys, monkeypatch) -> None:
    event, want = healthy
    code, out, _ = run(
        capsys, monkeypatch, event.credential, "--keys", SFB_CERT, "--at", str(event.ts)
    )
    assert code == 0
    assert out.splitlines()[0] == (
        "OK: Skype for Business / Lync -> Exchange@contoso.com (mail.contoso.com), "
        f"signature verified (RS256, thumbprint {thumbprint(keys['sfb'])}, "
        f"CN=sfbpool01.contoso.com), valid until {iso(int(want['exp']))}"
    )
    assert event.credential not in out and event.credential[:40] not in out


def test_capture_token_without_keys_names_the_metadata_url(healthy, capsys, monkeypatch) -> None:
    event, _ = healthy
    code, out, _ = run(capsys, monkeypatch, event.credential, "--at", str(event.ts))
    assert code == 0  # no keys given: not checked is a note, not a failure
    assert out.startswith("OK: Skype for Business / Lync -> Exchange@contoso.com")
    assert (
        "signature not checked (no key: save https://<Skype for Business pool FQDN>"
        "/metadata/json/1 and pass it with --keys)" in out.splitlines()[0]
    )


# -- exit 1: each kind of failure ---------------------------------------------------------------
def test_expired_at_the_given_time_is_a_problem(gen, keys, capsys, monkeypatch) -> None:
    token = s2s(gen, keys)
    at = EXP + 2 * 3600 + 10 * 60
    code, out, _ = run(capsys, monkeypatch, token, "--at", str(at))
    assert code == 1
    first = out.splitlines()[0]
    assert first.startswith("PROBLEM: expired 2 h 10 min before --at (exp 2026-03-02T17:00:00Z)")
    assert first.endswith(
        "signature not checked (no key: save https://<Skype for Business pool FQDN>"
        "/metadata/json/1 and pass it with --keys)"
    )
    # the same token inside its lifetime passes
    assert run(capsys, monkeypatch, token, "--at", str(EXP - 60))[0] == 0


def test_not_yet_valid_is_a_problem(gen, keys, capsys, monkeypatch) -> None:
    code, data = run_json(capsys, monkeypatch, s2s(gen, keys), "--at", str(T0 - 3600))
    assert code == 1 and data["verdict"] == "problem" and data["exit_code"] == 1
    ids = [r["id"] for r in data["exit_reasons"]]
    assert ids == ["not-yet-valid", "actor-not-yet-valid"]
    assert data["line"].startswith("PROBLEM: not valid until 1 h after --at")


def test_bad_signature_is_a_problem(gen, keys, capsys, monkeypatch) -> None:
    actor = gen.mint_rs256(
        {"aud": AUD, "iss": f"{SKYPE}@contoso.com", "nbf": str(T0), "exp": str(T0 + 86400),
         "nameid": f"{SKYPE}@contoso.com", "trustedfordelegation": "true"},
        keys["sfb"],
    )  # fmt: skip
    forged = gen.tamper(actor, nameid=f"{EXCHANGE}@contoso.com", iss=f"{EXCHANGE}@contoso.com")
    outer = gen.user_context(AUD, f"{EXCHANGE}@contoso.com", USER, forged, T0, EXP)
    token = gen.mint_unsigned(outer)
    code, data = run_json(capsys, monkeypatch, token, "--keys", SFB_CERT, "--at", str(T0 + 60))
    assert code == 1
    assert [r["id"] for r in data["exit_reasons"]] == ["actor-bad-signature"]
    assert data["line"].startswith(
        "PROBLEM: actor token signature does not verify: RS256 signature does not match 1 key(s)"
    )
    assert data["line"].endswith(f"[thumbprint {thumbprint(keys['sfb'])}]")


def test_unknown_key_when_keys_were_given_is_a_problem(gen, keys, capsys, monkeypatch) -> None:
    code, out, _ = run(
        capsys, monkeypatch, s2s(gen, keys), "--keys", ACS_CERT, "--at", str(T0 + 60)
    )
    assert code == 1
    hexed = thumbprint(keys["sfb"])
    assert out.splitlines()[0] == (
        f"PROBLEM: actor token signing key thumbprint {hexed} (x5t {keys['sfb'].x5t}) is not "
        "among the keys given; save https://<Skype for Business pool FQDN>/metadata/json/1 and "
        "pass it with --keys"
    )


def test_unsigned_token_without_signed_actor_is_a_problem(gen, capsys, monkeypatch) -> None:
    claims = {"aud": AUD, "iss": f"{SKYPE}@contoso.com", "nbf": T0, "exp": EXP,
              "nameid": f"{SKYPE}@contoso.com"}  # fmt: skip
    code, data = run_json(capsys, monkeypatch, gen.mint_unsigned(claims), "--at", str(T0 + 60))
    assert code == 1
    assert [r["id"] for r in data["exit_reasons"]] == ["signed"]
    assert "unsigned token (alg none) without a signed actor" in data["line"]
    # an S2S outer token whose actor is unsigned too
    actor = gen.mint_unsigned({**claims, "trustedfordelegation": "true"})
    outer = gen.mint_unsigned(gen.user_context(AUD, claims["iss"], USER, actor, T0, EXP))
    code, data = run_json(capsys, monkeypatch, outer, "--at", str(T0 + 60))
    assert code == 1
    assert "actor-signed" in [r["id"] for r in data["exit_reasons"]]
    assert "actor token is not signed" in data["line"]


def test_any_failed_check_is_a_problem(gen, keys, capsys, monkeypatch) -> None:
    token = s2s(gen, keys, outer_iss=f"{EXCHANGE}@contoso.com")  # outer iss != actor nameid
    code, data = run_json(capsys, monkeypatch, token, "--keys", SFB_CERT, "--at", str(T0 + 60))
    assert code == 1
    assert [r["id"] for r in data["exit_reasons"]] == ["issuer-matches-actor"]
    assert data["line"].startswith("PROBLEM: issuer-matches-actor: outer iss")
    signed_by = f"thumbprint {thumbprint(keys['sfb'])}, CN=sfbpool01.contoso.com"
    assert data["line"].endswith(f"signature verified (RS256, {signed_by})")


def test_a_token_nothing_can_check_is_a_problem(capsys, monkeypatch) -> None:
    code, data = run_json(capsys, monkeypatch, "EwBwA8l6BAAUO9chh8cJscQLmU")
    assert code == 1
    assert data["exit_reasons"][0]["id"] == "not-checkable"


# -- what admins paste --------------------------------------------------------------------------
def _forms(token: str, tmp_path: Path) -> dict[str, tuple[list[str], str | None]]:
    head = (
        "POST /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\n"
        "Content-Type: text/xml; charset=utf-8\r\n"
        f"Authorization: Bearer {token}\r\nUser-Agent: Test/1.0\r\n\r\n"
    )
    (tmp_path / "token.txt").write_text(token + "\n")
    (tmp_path / "head.txt").write_text(head)
    wrapped = "\n".join(token[i : i + 76] for i in range(0, len(token), 76))
    return {
        "bare": ([token], None),
        "bearer": ([f"Bearer {token}"], None),
        "header line": ([f"Authorization: Bearer {token}"], None),
        "proxy header": ([f"Proxy-Authorization: Bearer {token}"], None),
        "request head": ([head], None),
        "curl -v": (
            [f"> GET /ucwa HTTP/1.1\n> Host: mail.contoso.com\n> Authorization: Bearer {token}\n"],
            None,
        ),
        "query string": (
            [f"GET /api/me?x=1&access_token={token} HTTP/1.1\nHost: mail.contoso.com\n"],
            None,
        ),
        "url": ([f"https://mail.contoso.com/ews?access_token={token}"], None),
        "@file token": ([f"@{tmp_path / 'token.txt'}"], None),
        "@file head": ([f"@{tmp_path / 'head.txt'}"], None),
        "stdin -": (["-"], f"Authorization: Bearer {token}\n"),
        "stdin default": ([], head),
        "wrapped": ([wrapped], None),
    }


@pytest.mark.parametrize(
    "form",
    [
        "bare", "bearer", "header line", "proxy header", "request head", "curl -v",
        "query string", "url", "@file token", "@file head", "stdin -", "stdin default", "wrapped",
    ],
)  # fmt: skip
def test_every_pasted_form_finds_the_token(form, gen, keys, tmp_path, capsys, monkeypatch) -> None:
    token = s2s(gen, keys)
    args, stdin = _forms(token, tmp_path)[form]
    code, data = run_json(capsys, monkeypatch, *args, "--at", str(T0 + 60), stdin=stdin)
    assert code == 0, data["line"]
    want = hashlib.sha256(token.encode()).hexdigest()[:12]
    assert data["fingerprint"] == want and data["format"] == "jwt-unsigned"
    assert token.split(".")[1][:40] not in json.dumps(data)  # not even in the request line


def test_pasted_request_head_says_where_and_checks_its_host(gen, keys, capsys, monkeypatch) -> None:
    token = s2s(gen, keys)
    head = "POST /EWS/Exchange.asmx HTTP/1.1\nHost: webmail.contoso.com\n"
    head += f"Authorization: Bearer {token}\n"
    code, out, _ = run(capsys, monkeypatch, head, "--at", str(T0 + 60))
    assert code == 1  # the audience names mail.contoso.com, the request went to webmail
    assert out.startswith("PROBLEM: audience-host: audience host 'mail.contoso.com' is not")
    assert (
        "Read from: Authorization header of a pasted request "
        "(POST /EWS/Exchange.asmx, Host webmail.contoso.com)" in out
    )
    assert (
        run(capsys, monkeypatch, head, "--at", str(T0 + 60), "--host", "mail.contoso.com")[0] == 0
    )


def test_unreadable_file_is_one_error_line_exit_2(tmp_path, capsys, monkeypatch) -> None:
    code, out, err = run(capsys, monkeypatch, f"@{tmp_path / 'missing.txt'}")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "missing.txt: cannot read" in err


@pytest.mark.parametrize(
    ("args", "stdin", "says"),
    [
        ([], "", "no token given"),
        (["-"], "  \n", "no token given"),
        (["Authorization: Bearer"], None, "Bearer is empty (the realm-discovery probe)"),
        (["Bearer"], None, "Bearer is empty (the realm-discovery probe)"),
        (["HTTP/1.1 401 Unauthorized\nWWW-Authenticate: Bearer realm=\"\"\n"], None,
         "no token in the pasted text"),
        (["Authorization: NTLM TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAGAbEdAAAADw=="], None,
         "carries NTLM credentials, not a bearer token"),
        (["eyJhbGciOiJub25lIn0.e30.", "--at", "yesterday"], None, "--at 'yesterday'"),
    ],
)  # fmt: skip
def test_bad_input_exits_2(args, stdin, says, capsys, monkeypatch) -> None:
    code, out, err = run(capsys, monkeypatch, *args, stdin=stdin)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and says in err


# -- x-ms-diagnostics values --------------------------------------------------------------------
EXPIRED_DIAG = '2000002;reason="The token has expired.";error_category="token_expired"'


@pytest.mark.parametrize("text", [f"x-ms-diagnostics: {EXPIRED_DIAG}", EXPIRED_DIAG])
def test_diagnostics_value_is_explained_with_advice(text, capsys, monkeypatch) -> None:
    code, out, _ = run(capsys, monkeypatch, text)
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == (
        "PROBLEM: x-ms-diagnostics 2000002 token_expired (Exchange): The token has expired."
    )
    assert "  code       2000002" in lines
    assert "  category   token_expired" in lines
    assert "  reason     The token has expired." in lines
    assert "  detail     Exchange error 3001: token expired" in lines
    advice = next(line for line in lines if line.startswith("  what to do "))
    assert "clocks" in advice and "w32tm" in advice


def test_every_known_code_comes_with_its_own_advice(capsys, monkeypatch) -> None:
    from analyzer.oauth.diagnostics import KNOWN_CODES

    def advice(value: str) -> str:
        status, data = run_json(capsys, monkeypatch, value)
        assert status == 1
        return data["advice"]

    generic = advice('1234567;reason="something failed"')
    assert generic.startswith("Unknown category")
    for code in KNOWN_CODES:
        assert advice(f'{code};reason="something failed"') != generic, code


def test_diagnostics_json_and_skype_form(capsys, monkeypatch) -> None:
    value = '28020;source="sfbfe01.contoso.com";reason="No valid security token."'
    code, data = run_json(capsys, monkeypatch, f"X-Ms-diagnostics: {value}")
    assert code == 1 and data["verdict"] == "problem" and data["exit_code"] == 1
    assert data["kind"] == "x-ms-diagnostics"
    assert data["diagnostic"]["code"] == 28020 and data["diagnostic"]["product"] == "skype"
    assert data["diagnostic"]["source"] == "sfbfe01.contoso.com"
    assert "web ticket" in data["advice"]
    assert data["line"].startswith("PROBLEM: x-ms-diagnostics 28020 no_valid_security_token")


def test_token_pasted_with_the_servers_rejection_is_a_problem(
    gen, keys, capsys, monkeypatch
) -> None:
    token = s2s(gen, keys)
    paste = (
        f"POST /EWS/Exchange.asmx HTTP/1.1\nHost: mail.contoso.com\nAuthorization: Bearer {token}\n"
        "\nHTTP/1.1 401 Unauthorized\n"
        'x-ms-diagnostics: 2000000;reason="The token has an invalid signature.";'
        'error_category="invalid_signature"\n'
    )
    code, out, _ = run(capsys, monkeypatch, paste, "--keys", SFB_CERT, "--at", str(T0 + 60))
    assert code == 1
    assert out.startswith(
        "PROBLEM: the server answered x-ms-diagnostics 2000000 invalid_signature (Exchange)"
    )
    assert "(offline the token looks fine: Skype for Business / Lync -> Exchange" in out
    assert "The server's answer (x-ms-diagnostics in the paste)" in out


# -- certificates named as Windows names them ---------------------------------------------------
CERT_END = 1893456000  # 2030-01-01T00:00:00Z, notAfter of the TEST certificates


def test_verifying_certificate_shown_with_thumbprint_subject_validity(
    gen, keys, capsys, monkeypatch
) -> None:
    code, out, _ = run(
        capsys, monkeypatch, s2s(gen, keys), "--keys", SFB_CERT, "--at", str(T0 + 60)
    )
    assert code == 0
    hexed = thumbprint(keys["sfb"])
    assert f"          x5t = thumbprint {hexed}\n" in out  # the token's own x5t, as hex
    assert f"         thumbprint {hexed} (x5t {keys['sfb'].x5t})\n" in out
    assert (
        "         subject    O=TEST KEY - oauth-traffic-analyzer,CN=sfbpool01.contoso.com\n" in out
    )
    assert "         valid      2025-01-01T00:00:00Z .. 2030-01-01T00:00:00Z\n" in out


def test_certificate_expiring_within_30_days_is_a_warning(gen, keys, capsys, monkeypatch) -> None:
    at = CERT_END - 12 * 86400
    token = s2s(gen, keys, nbf=at - 600, exp=at + 3600)
    code, out, _ = run(capsys, monkeypatch, token, "--keys", SFB_CERT, "--at", str(at))
    assert code == 0
    assert out.splitlines()[0].endswith(
        f"; warning: signing certificate {thumbprint(keys['sfb'])} (CN=sfbpool01.contoso.com) "
        "expires 12 days after --at (2030-01-01T00:00:00Z)"
    )
    assert "!! signing certificate" in out  # flagged next to its validity too
    at = CERT_END - 31 * 86400  # a month away: no warning
    token = s2s(gen, keys, nbf=at - 600, exp=at + 3600)
    code, out, _ = run(capsys, monkeypatch, token, "--keys", SFB_CERT, "--at", str(at))
    assert code == 0 and "warning" not in out.splitlines()[0]


def test_expired_certificate_is_a_problem(gen, keys, capsys, monkeypatch) -> None:
    at = CERT_END + 5 * 86400
    token = s2s(gen, keys, nbf=at - 600, exp=at + 3600)
    code, data = run_json(capsys, monkeypatch, token, "--keys", SFB_CERT, "--at", str(at))
    assert code == 1
    assert [r["id"] for r in data["exit_reasons"]] == ["actor-certificate-expired"]
    assert "expired 5 days before --at" in data["line"]
    key = data["actor_signature"]["key"]
    assert key["thumbprint"] == thumbprint(keys["sfb"])
    assert key["not_after"] == "2030-01-01T00:00:00Z"
    assert data["actor_signature"]["token_x5t"] == {
        "x5t": keys["sfb"].x5t,
        "thumbprint": thumbprint(keys["sfb"]),
    }


# -- where the key would come from ----------------------------------------------------------------
def test_hints_follow_the_issuer(gen, keys, capsys, monkeypatch) -> None:
    acs_aud = f"{EXCHANGE}/outlook.office365.com@{TENANT}"
    actor = gen.mint_rs256(
        {"aud": acs_aud, "iss": f"{ACS}@{TENANT}", "nbf": T0, "exp": T0 + 86400,
         "nameid": f"{EXCHANGE}@{TENANT}", "trustedfordelegation": "true"},
        keys["acs"], kid=True,
    )  # fmt: skip
    hybrid = gen.mint_unsigned(
        gen.user_context(acs_aud, f"{EXCHANGE}@{TENANT}", USER, actor, T0, EXP)
    )
    exchange = s2s(gen, keys, signer="exchange", app=EXCHANGE,
                   aud=f"{SKYPE}/sfbpool01.contoso.com@contoso.com")  # fmt: skip
    entra = gen.mint_rs256(
        {"iss": f"https://login.microsoftonline.com/{TENANT}/v2.0", "aud": "api://x",
         "nbf": T0, "exp": EXP},
        keys["acs"], kid=True,
    )  # fmt: skip
    want = {
        hybrid: f"https://accounts.accesscontrol.windows.net/{TENANT}/metadata/json/1",
        exchange: "https://autodiscover.contoso.com/autodiscover/metadata/json/1",
        entra: f"https://login.microsoftonline.com/{TENANT}/discovery/v2.0/keys",
    }
    for token, url in want.items():
        code, data = run_json(capsys, monkeypatch, token, "--at", str(T0 + 60))
        assert data["key_hint"]["url"] == url
        assert url in data["line"] and code == 0
    # with the right key given, the hybrid actor verifies and the hint goes away
    code, data = run_json(capsys, monkeypatch, hybrid, "--keys", ACS_CERT, "--at", str(T0 + 60))
    assert code == 0 and data["key_hint"] is None
    assert data["line"].startswith(
        "OK: Exchange via Microsoft STS (Azure ACS / Entra ID) -> "
        f"Exchange@{TENANT} (outlook.office365.com), signature verified (RS256, thumbprint "
        f"{thumbprint(keys['acs'])}, "
    )
    assert "CN=accounts.accesscontrol.windows.net" in data["line"]


# -- JSON and secrets ---------------------------------------------------------------------------
def test_json_carries_the_verdict_and_no_token_text(gen, keys, capsys, monkeypatch) -> None:
    token = s2s(gen, keys)
    code, data = run_json(capsys, monkeypatch, token, "--keys", SFB_CERT, "--at", str(T0 + 60))
    assert code == 0
    assert (data["verdict"], data["exit_code"], data["exit_reasons"]) == ("ok", 0, [])
    assert data["line"].startswith("OK: Skype for Business / Lync -> Exchange@contoso.com")
    assert data["found_in"] == "bare token"
    text = json.dumps(data)
    assert token not in text and token.split(".")[1][:40] not in text
    code, data = run_json(
        capsys, monkeypatch, token, "--keys", SFB_CERT, "--at", str(T0 + 60), "--reveal-secrets"
    )
    assert data["token"]["token"] == token


def test_text_output_shows_the_token_only_when_revealed(gen, keys, capsys, monkeypatch) -> None:
    token = s2s(gen, keys)
    _, out, _ = run(capsys, monkeypatch, f"Bearer {token}", "--at", str(T0 + 60))
    assert token not in out and token[:40] not in out
    _, out, _ = run(
        capsys, monkeypatch, f"Bearer {token}", "--at", str(T0 + 60), "--reveal-secrets"
    )
    assert f"Token text\n  {token}\n" in out


def test_help_states_the_exit_rule(capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["decode", "--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Exit status: 0 when every check passes; 1 when one fails" in text
    assert "2 on bad input (no token, unreadable @FILE" in text
    assert "@FILE reads it from FILE" in text


def test_capture_rejection_pasted_with_its_token(capsys, monkeypatch) -> None:
    """The tampered token of exchange-sfb.pcap and the server's real answer, pasted together."""
    events = analyze_paths([str(CAPTURES / "exchange-sfb.pcap")]).events
    tampered = next(e for e in events if e.cred_fp == "9c582e045724")
    assert tampered.credential and tampered.ms_diagnostics
    paste = (
        f"POST {tampered.uri} HTTP/1.1\nHost: {tampered.host}\n"
        f"Authorization: Bearer {tampered.credential}\n\n"
        f"HTTP/1.1 401 Unauthorized\nx-ms-diagnostics: {tampered.ms_diagnostics}\n"
    )
    code, data = run_json(capsys, monkeypatch, paste, "--keys", SFB_CERT, "--at", str(tampered.ts))
    assert code == 1
    ids = [r["id"] for r in data["exit_reasons"]]
    assert ids[0] == "actor-bad-signature" and ids[-1] == "ms-diagnostics"  # signature first
    assert data["diagnostics"][0]["diagnostic"]["category"] == "invalid_signature"
    assert "the server answered x-ms-diagnostics 2000000 invalid_signature" in data["line"]


def test_reader_leaving_early_is_not_an_error(gen, keys) -> None:
    """``decode ... | head -1``: the verdict's exit status, no 'Broken pipe' message."""
    import subprocess

    token = s2s(gen, keys)
    proc = subprocess.Popen(
        [sys.executable, "-m", "analyzer", "decode", token, "--at", str(EXP + 3600)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # gone before the first line is written
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 1 and err == b""
