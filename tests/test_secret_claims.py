"""Secret claims masked by their name and wherever they hide: in any case and spelling
(``_``, ``-``, camelCase), at any depth, and inside JSON carried in a string claim (Microsoft's
``appctx``, a ``ctx`` of ``{"refresh_token": ...}``), which is masked like claims and shown as
compact JSON. Ordinary claims (``sid``, ``upn``, ``appid``, ADFS's ``pwd_exp``) stay shown.

Every expectation is the exact text shown, so a changed name list, a lost level of nesting or
a different JSON spelling fails here; the end-to-end test reads a real capture through the
JSONL token table, ``decode`` and the HTML report.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from test_html_report import template, unpack
from wire_kit import OK, write_capture

from analyzer.auth.schemes import fingerprint
from analyzer.cli import main
from analyzer.oauth.tokens import MAX_JSON_DEPTH, decode_token, secret_claim


def unsigned(claims: dict[str, Any]) -> str:
    head = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{body}."


def shown(claims: dict[str, Any]) -> dict[str, Any] | None:
    """The claims as every output shows them without --reveal-secrets."""
    return decode_token(unsigned(claims)).public_claims()


def redacted(text: str) -> str:
    return f"<redacted fp={fingerprint(text)}>"


# -- names ---------------------------------------------------------------------------------------
SECRET_NAMES = [
    # whole names (folded: lower case, no '_' or '-')
    "id_token", "ID-Token", "idToken", "pwd", "PWD", "session_key", "SessionKey",
    # endings, each one at least once, alone and after other words
    "secret", "client_secret", "clientSecret", "App-Secret",
    "password", "db_password", "Password",
    "passwd", "user_passwd",
    "passphrase", "key_passphrase",
    "api_key", "x-api-key", "apiKey", "APIKEY",
    "private_key", "privateKey",
    "secret_key", "aws_secret_key",
    "access_key", "secret_access_key",
    "signing_key", "SigningKey",
    "refresh_token", "Refresh_Token", "refreshtoken", "xms_refresh_token",
    "access_token", "AccessToken",
    "session_token", "x-session-token",
    "assertion", "client_assertion", "saml_assertion",
]  # fmt: skip
ORDINARY_NAMES = [
    "sid", "upn", "nameid", "appid", "appidacr", "oid", "tid", "iss", "aud", "sub", "nii",
    "unique_name", "smtp", "sip", "actor", "actor_token", "scp", "roles", "amr", "ipaddr",
    "pwd_exp", "pwd_url", "pwd_chg_url", "public_key", "kid", "keyid", "key", "token",
    "token_type", "id_token_hint", "secret_expiry", "passwordless", "at_hash", "nonce",
    "session", "idtyp", "", "x-id-tokens", "assertions", "pwdx", "xpwd", "sessionkeys",
]  # fmt: skip


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_a_secret_claim_is_masked_by_its_name_in_any_spelling(name: str) -> None:
    assert secret_claim(name) is True
    assert shown({name: "short-value", "upn": "alice@contoso.com"}) == {
        name: redacted("short-value"),
        "upn": "alice@contoso.com",
    }


@pytest.mark.parametrize("name", ORDINARY_NAMES)
def test_an_ordinary_claim_stays_shown(name: str) -> None:
    assert secret_claim(name) is False
    assert shown({name: "short-value"}) == {name: "short-value"}


def test_a_secret_claim_that_is_not_text_shows_its_json_type() -> None:
    claims = {
        "secret": {"value": "S1"},
        "api_key": ["K1", "K2"],
        "pwd": True,
        "private_key": None,
        "nested": {"db_password": 1234, "list": [{"x-api-key": "K3"}, "plain"]},
    }
    assert shown(claims) == {
        "secret": "<redacted fp=object>",
        "api_key": "<redacted fp=list>",
        "pwd": "<redacted fp=boolean>",
        "private_key": "<redacted fp=null>",
        "nested": {"db_password": "<redacted fp=number>", "list": [{"x-api-key": redacted("K3")},
                                                                   "plain"]},
    }  # fmt: skip


# -- JSON inside a string ------------------------------------------------------------------------
def test_json_in_a_string_claim_is_masked_like_claims_and_shown_compact() -> None:
    inner = json.dumps({"pwd": "PW-INNER"})  # JSON in a string in JSON in a string
    claims = {
        "ctx": json.dumps({"refresh_token": "RTINCTX_SECRET_ZZZ", "tenant": "contoso", "é": "ü"}),
        "appctx": " " + json.dumps({"appid": "a1", "client_secret": "CS-1", "inner": inner}),
        "list": json.dumps([{"api_key": "AK-1"}, "plain", 5]),
        "plain_json": '{"tenant": "contoso", "n": [1, 2]}',  # nothing secret: byte for byte
        "text": "{not json, names refresh_token}",  # unreadable, names a secret: masked whole
        "cut": '{"Refresh_Token": "RT-CUT',
        "cut_plain": '{"tenant": "cont',  # unreadable, names no secret: as it was
        "brace": "{",
        "note": "ghp_" + "a1B2" * 9,  # not JSON: masked by its shape, as before
    }
    assert shown(claims) == {
        "ctx": '{"refresh_token":"' + redacted("RTINCTX_SECRET_ZZZ") + '","tenant":"contoso",'
        '"é":"ü"}',
        "appctx": '{"appid":"a1","client_secret":"'
        + redacted("CS-1")
        + '","inner":'
        + json.dumps('{"pwd":"' + redacted("PW-INNER") + '"}')
        + "}",
        "list": '[{"api_key":"' + redacted("AK-1") + '"},"plain",5]',
        "plain_json": '{"tenant": "contoso", "n": [1, 2]}',
        "text": redacted("{not json, names refresh_token}"),
        "cut": redacted('{"Refresh_Token": "RT-CUT'),
        "cut_plain": '{"tenant": "cont',
        "brace": "{",
        "note": f"ghp_…(40 chars, fp {fingerprint('ghp_' + 'a1B2' * 9)})",
    }
    assert json.loads(shown(claims)["ctx"]) == {  # type: ignore[index]
        "refresh_token": redacted("RTINCTX_SECRET_ZZZ"), "tenant": "contoso", "é": "ü",
    }  # fmt: skip


def test_json_too_deep_to_parse_is_masked_whole_when_it_names_a_secret() -> None:
    deep = "[" * 5000 + '"refresh_token"' + "]" * 5000  # json.loads: RecursionError
    plain = "[" * 5000 + "]" * 5000
    assert shown({"a": deep, "b": plain}) == {"a": redacted(deep), "b": plain}


def nested_json(depth: int) -> str:
    """JSON text ``depth`` levels deep whose innermost object holds a password."""
    return "[" * (depth - 1) + '{"pwd":"PW"}' + "]" * (depth - 1)


def readable(depth: int) -> str:
    """``nested_json(depth)`` as shown when it was read: the password masked, compact."""
    return "[" * (depth - 1) + '{"pwd":"' + redacted("PW") + '"}' + "]" * (depth - 1)


@pytest.mark.parametrize(
    ("where", "depth"),
    [
        # a top-level claim is inside 1 level: JSON of 63 levels makes 64, the most read
        ("top", MAX_JSON_DEPTH - 1),
        ("object", MAX_JSON_DEPTH - 2),
        ("list", MAX_JSON_DEPTH - 2),
        ("string", MAX_JSON_DEPTH - 2),  # JSON in a string in a string claim
    ],
)
def test_json_in_a_string_is_read_to_max_json_depth_counted_from_the_claims(
    where: str, depth: int
) -> None:
    def place(text: str) -> Any:
        return {
            "top": text,
            "object": {"s": text},
            "list": [text],
            "string": json.dumps({"s": text}),
        }[where]

    def masked(text: str) -> Any:
        return {
            "top": text,
            "object": {"s": text},
            "list": [text],
            "string": '{"s":' + json.dumps(text, ensure_ascii=False) + "}",
        }[where]

    assert shown({"c": place(nested_json(depth))}) == {"c": masked(readable(depth))}
    too_deep = nested_json(depth + 1)  # one level more: not read, masked whole (it names pwd)
    assert shown({"c": place(too_deep)}) == {"c": masked(redacted(too_deep))}


def test_revealed_claims_are_the_claims_as_sent() -> None:
    claims = {"ctx": json.dumps({"refresh_token": "RT"}), "secret": "S", "sid": "S-1-5"}
    token = decode_token(unsigned(claims))
    assert token.public_claims(reveal_secrets=True) == claims
    assert token.to_dict(reveal_secrets=True)["claims"] == claims


# -- end to end ----------------------------------------------------------------------------------
SECRETS = ("RTINCTX_SECRET_ZZZ", "NESTEDSECRETVALUEZZZ", "APIKEYVALUEZZZ", "APPCTXSECRETZZZ")


def e2e_claims() -> dict[str, Any]:
    return {
        "iss": "https://sts.contoso.test/",
        "aud": "https://mail.contoso.test/",
        "exp": 2_000_000_000,
        "sid": "S-1-5-21-1-2-3-1104",
        "upn": "alice@contoso.test",
        "appid": "00000003-0000-0ff1-ce00-000000000000",
        "pwd_exp": "86400",
        "ctx": json.dumps({"refresh_token": SECRETS[0]}),
        "nested": {"secret": SECRETS[1], "list": ["plain"]},
        "x-api-key": SECRETS[2],
        "appctx": json.dumps({"appid": "a1", "client_secret": SECRETS[3]}),
    }


def masked_e2e_claims() -> dict[str, Any]:
    return {
        **e2e_claims(),
        "ctx": '{"refresh_token":"' + redacted(SECRETS[0]) + '"}',
        "nested": {"secret": redacted(SECRETS[1]), "list": ["plain"]},
        "x-api-key": redacted(SECRETS[2]),
        "appctx": '{"appid":"a1","client_secret":"' + redacted(SECRETS[3]) + '"}',
    }


def test_no_output_shows_a_secret_claim(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    token = unsigned(e2e_claims())
    request = (
        f"GET /ews HTTP/1.1\r\nHost: mail.contoso.test\r\nAuthorization: Bearer {token}\r\n\r\n"
    ).encode()
    capture = write_capture(tmp_path / "claims.pcap", [(request, OK)])
    assert main(["analyze", capture, "--format", "jsonl", "--table", "tokens"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["claims"] == masked_e2e_claims()
    (tmp_path / "token.txt").write_text(token)
    assert main(["decode", f"@{tmp_path / 'token.txt'}", "--json"]) == 1  # 1: unsigned
    assert json.loads(capsys.readouterr().out)["token"]["claims"] == masked_e2e_claims()
    assert main(["decode", f"@{tmp_path / 'token.txt'}", "--at", "1772442000"]) == 1
    text = capsys.readouterr().out
    assert '\n  ctx       {"refresh_token":"' + redacted(SECRETS[0]) + '"}\n' in text
    assert '\n  nested    {"secret": "' + redacted(SECRETS[1]) + '", "list": ["plain"]}\n' in text
    assert main(["report", capture, "-o", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    details = unpack(template(page, 'id="token-data" data-encoding="deflate-raw+base64"'))
    assert list(details) == [row["fingerprint"]]
    assert details[row["fingerprint"]]["l"] == masked_e2e_claims()  # what an opened row shows
    for output in (json.dumps(row), text, page, json.dumps(details, ensure_ascii=False)):
        for secret in SECRETS:
            assert secret not in output
