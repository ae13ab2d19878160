"""``verify`` holds an S2S token to what its claims must say, not to what they happen to omit.

A fourth review passed, under the README's strict rule, tokens whose claims were there in name
only or said less than the rule assumed:

- ``"exp": null`` (a token that never expires) and ``"aud": []`` (one for nobody): a required
  claim's key was enough;
- a signed actor without ``nbf``, its lifetime dated by an ``iat`` an hour before an ``exp``
  seventy years away: S2S layers need ``nbf``;
- audiences not of the ``<app id>/<host>@<realm>`` form (a URL, a bare id, no realm) skipped
  every audience check, and a second audience (from another realm) was never looked at;
- an audience host judged against the Host the client chose - or not at all when it sent none -
  though the request reached the ``--server`` named by its address;
- an actor signed by Exchange's own key naming Skype for Business as ``nameid``, with an
  unsigned outer token issued by Skype for Business, passed ``--issuer skype``: only Microsoft's
  token service issues actor tokens for another app.

Real pcaps written with scapy; tokens signed with the TEST keys in captures/keys.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import token_kit
from token_kit import EXO_AUD, REALM, SFB_ISS, T0
from wire_kit import OK, write_capture

from analyzer.cli import main

CLIENT = "10.9.9.1"
EXO_ISS = f"00000002-0000-0ff1-ce00-000000000000@{REALM}"
KEYS = token_kit.KEYS_DIR
FAR = T0 + 3600 * 24 * 365 * 70


def s2s(actor: dict[str, Any] | None = None, key: str = "sfb", **outer: Any) -> str:
    """An S2S token for alice: an unsigned outer token (``outer`` overrides its claims; None
    drops one) around an actor signed with ``key`` (``actor`` overrides, None drops)."""
    actor_claims = {**token_kit.actor_claims(), **(actor or {})}
    signed = token_kit.signed({k: v for k, v in actor_claims.items() if v is not None}, key=key)
    user = {"sid": "S-1-5-21-1-2-3-1104", "upn": "alice@contoso.com"}
    claims = token_kit.generator().user_context(EXO_AUD, SFB_ISS, user, signed, T0, T0 + 3600)
    claims.update(outer)
    return token_kit.unsigned({k: v for k, v in claims.items() if v is not None})


def request(token: str, host: str | None = "mail.contoso.com") -> bytes:
    version, named = ("1.1", f"Host: {host}\r\n") if host is not None else ("1.0", "")
    return (
        f"POST /EWS/Exchange.asmx HTTP/{version}\r\n{named}Authorization: Bearer {token}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def verify(
    capsys: pytest.CaptureFixture[str], path: str, keys: str = "sfb.cert.pem"
) -> tuple[int, list[tuple[str, str]]]:
    """Exit status and (kind, reason) of each violation, under the README's strict rule with
    ``keys`` as --keys."""
    rule = list(token_kit.strict_rule(CLIENT))
    rule[rule.index("--keys") + 1] = str(KEYS / keys)
    code = main(["verify", path, *rule, "--json", "--details"])
    data = json.loads(capsys.readouterr().out)
    (result,) = data["rules"]
    return code, [(v["kind"], v["reason"]) for v in result["violations"]]


def one(tmp_path: Path, token: str, host: str | None = "mail.contoso.com") -> str:
    return write_capture(tmp_path / "one.pcap", [(request(token, host), OK)])


def test_the_good_token_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert verify(capsys, one(tmp_path, s2s())) == (0, [])


@pytest.mark.parametrize(
    ("actor", "outer", "layers"),
    [
        ({"exp": None}, {"exp": None}, ("token", "actor token")),  # exp left out
        ({"nbf": None, "iat": FAR - 3600, "exp": FAR}, {}, ("actor token",)),  # 70 years
    ],
)
def test_missing_claims_fail(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    actor: dict[str, Any],
    outer: dict[str, Any],
    layers: tuple[str, ...],
) -> None:
    code, violations = verify(capsys, one(tmp_path, s2s(actor, **outer)))
    why = "; ".join(
        f"{layer}: a required claim is missing (iss, aud, exp, nameid or nbf)" for layer in layers
    )
    assert (code, violations) == (1, [("invalid-token", why)])


def test_null_and_empty_claims_are_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The claims are written as null / empty, not left out."""
    import base64

    def with_claims(token: str, **claims: Any) -> str:
        """``token`` (unsigned: its claims can be rewritten) with ``claims`` set."""
        head, body, sig = token.split(".")
        payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        payload.update(claims)
        raw = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
        return f"{head}.{raw}.{sig}"

    path = one(tmp_path, with_claims(s2s(), exp=None))
    code, violations = verify(capsys, path)
    assert code == 1 and violations == [
        ("invalid-token", "token: a required claim is missing (iss, aud, exp, nameid or nbf)")
    ]
    nobody = with_claims(s2s(), aud=[])
    code, violations = verify(capsys, one(tmp_path, nobody))
    assert code == 1 and violations[0][0] == "invalid-token", violations


@pytest.mark.parametrize(
    ("aud", "why"),
    [
        ("00000002-0000-0ff1-ce00-000000000000/files.evil.example", "names no realm"),
        ("https://files.evil.example/", "names no realm"),
        ("00000002-0000-0ff1-ce00-000000000000", "names no realm"),
    ],
)
def test_an_audience_in_no_realm_is_not_in_the_realm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], aud: str, why: str
) -> None:
    code, violations = verify(capsys, one(tmp_path, s2s({"aud": aud}, aud=aud)))
    assert (code, violations) == (
        1,
        [("wrong-realm", f"its audience {aud} {why}: realm (none) is not contoso.com")],
    )


def test_a_second_audience_is_not_left_unjudged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    both = [EXO_AUD, "00000002-0000-0ff1-ce00-000000000000/x.evil.example@evil.example"]
    code, violations = verify(capsys, one(tmp_path, s2s({"aud": both}, aud=both)))
    form = "its audience is not one <app id>/<host>@<realm> principal"
    assert (code, violations) == (1, [("invalid-token", f"token: {form}; actor token: {form}")])


FOREIGN = "00000002-0000-0ff1-ce00-000000000000/files.evil.example@contoso.com"
ELSEWHERE = (
    "token: its audience names host files.evil.example, not mail.contoso.com (if that is "
    "another name of the same server, name it too: --server / --host)"
)


def test_a_token_for_another_host_sent_with_its_host_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The request reaches mail.contoso.com by its address (IIS answers every name), with the
    Host the foreign token was minted for: the token is not one for this server."""
    token = s2s({"aud": FOREIGN}, aud=FOREIGN)
    path = write_capture(
        tmp_path / "foreign.pcap",
        [(request(s2s()), OK), (request(token, "files.evil.example"), OK)],
    )
    assert verify(capsys, path) == (1, [("invalid-token", ELSEWHERE)])
    code = main(
        ["verify", path, *token_kit.strict_rule(CLIENT), "--allow", "audience-host-mismatch"]
    )
    capsys.readouterr()
    assert code == 0  # relaxed on purpose, as the Host check is


def test_a_token_for_another_host_sent_without_a_host_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = s2s({"aud": FOREIGN}, aud=FOREIGN)
    path = write_capture(
        tmp_path / "nameless.pcap", [(request(s2s()), OK), (request(token, None), OK)]
    )
    code, violations = verify(capsys, path)
    host = "its audience names another host"
    assert (code, violations) == (1, [("invalid-token", f"token: {host}; actor token: {host}")])


def test_only_the_signed_issuer_meets_the_issuer_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An actor signed by Exchange (whose key the rule trusts) naming Skype for Business: the
    unsigned outer token's issuer is no signature's word. The same shape issued by Microsoft's
    token service (ACS), which does issue actor tokens for other apps, passes."""
    exchange = s2s({"iss": EXO_ISS, "nameid": SFB_ISS}, key="exchange")
    code, violations = verify(capsys, one(tmp_path, exchange), keys="exchange.cert.pem")
    assert code == 1 and violations == [
        (
            "wrong-issuer",
            f"issuer {EXO_ISS} is not skype: only the unsigned outer token names {SFB_ISS}, and "
            "an actor token signed by another app than Microsoft's token service speaks for its "
            "own issuer alone",
        )
    ]
    tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"  # ACS realms are tenant ids
    sfb, aud = f"{SFB_ISS.split('@')[0]}@{tenant}", f"{EXO_AUD.split('@')[0]}@{tenant}"
    actor = {"iss": f"00000001-0000-0000-c000-000000000000@{tenant}", "nameid": sfb, "aud": aud}
    path = one(tmp_path, s2s(actor, key="acs", iss=sfb, aud=aud))
    rule = list(token_kit.strict_rule(CLIENT))
    rule[rule.index("--realm") + 1] = tenant
    rule[rule.index("--keys") + 1] = str(KEYS / "acs.cert.pem")
    assert main(["verify", path, *rule]) == 0, capsys.readouterr().out
