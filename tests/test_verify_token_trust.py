"""What ``verify`` may vouch for about a token, tried as an attacker would (each case was a false
PASS): a signature that verifies with a key nothing ties to the issuer, an unsigned outer layer
claiming another identity than its signed actor, a realm read from the audience only, a tampered
actor inside a signed outer token, a key whose certificate had expired, an expired token whose
answer was lost, claims that cannot be judged, and an issuer or realm given empty.

Captures are real pcap bytes (``wire_kit``); tokens are signed with the test keys in
captures/keys and the generator's metadata documents (``token_kit``).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from token_kit import EXO_AUD, SFB_ISS, T0, actor_claims, generator, keys, s2s, signed
from wire_kit import OK, write_capture

from analyzer.cli import main

STRICT = ["--issuer", "skype", "--realm", "contoso.com", "--require-signature"]
SFB_ID = SFB_ISS.split("@")[0]


def lab():
    generator()
    return importlib.import_module("generate.lab")


def fetch(host: str, doc: dict, path: str = "/metadata/json/1") -> tuple[bytes, bytes]:
    """A GET of ``path`` on ``host`` answered 200 with ``doc``."""
    body = json.dumps(doc).encode()
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    return request, head.encode() + b"\r\n\r\n" + body


def ews(token: str, response: bytes | None = OK) -> tuple[bytes, bytes | None]:
    head = "POST /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nContent-Length: 0\r\n"
    return f"{head}Authorization: Bearer {token}\r\n\r\n".encode(), response


def sfb_metadata(issuer: str = SFB_ISS) -> dict:
    """SfB's metadata publishing the key the test actor tokens are signed with."""
    return {**lab().sfb_metadata(keys()["exchange"]), "issuer": issuer}


def verdict(capsys, tmp_path: Path, *connections, args=STRICT) -> tuple[int, list[tuple]]:
    path = write_capture(tmp_path / "c.pcap", *connections)
    code = main(["verify", path, "--json", *args])
    data = json.loads(capsys.readouterr().out)
    return code, [(v["kind"], v["reason"]) for v in data["rules"][0]["violations"]]


def test_the_issuers_own_metadata_verifies(capsys, tmp_path: Path) -> None:
    """The control: SfB's metadata, served in its realm, ties the key to the SfB issuer."""
    code, violations = verdict(
        capsys, tmp_path, [fetch("sfbpool01.contoso.com", sfb_metadata())], [ews(s2s())]
    )
    assert (code, violations) == (0, [])


@pytest.mark.parametrize(
    ("host", "issuer", "doc_path"),
    [
        ("evil.example", SFB_ISS, "/metadata/json/1"),  # names the issuer, served elsewhere
        ("evil.example", f"{SFB_ID}@evil.example", "/metadata/json/1"),  # its own realm
        ("sfbpool01.contoso.com", f"{SFB_ID}@fabrikam.com", "/metadata/json/1"),
        ("contoso.com.evil.example", SFB_ISS, "/metadata/json/1"),
    ],
)
def test_a_key_nothing_ties_to_the_issuer_is_not_a_verified_signature(
    capsys, tmp_path: Path, host: str, issuer: str, doc_path: str
) -> None:
    code, violations = verdict(
        capsys, tmp_path, [fetch(host, sfb_metadata(issuer), doc_path)], [ews(s2s())]
    )
    assert code == 1
    [(kind, reason)] = violations
    assert kind == "signature-not-verified"
    assert reason.startswith(
        f"signature verifies only with a key nothing ties to the issuer (from http://{host}"
        f"{doc_path} (captured "
    )


def _jwks() -> dict:
    key = keys()["exchange"]
    numbers = key.private_key.public_key().public_numbers()
    n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
    import base64

    return {
        "keys": [
            {
                "kty": "RSA",
                "x5t": key.x5t,
                "n": base64.urlsafe_b64encode(n).rstrip(b"=").decode(),
                "e": "AQAB",
            }
        ]
    }


def test_a_jwks_counts_only_when_the_issuers_openid_configuration_names_it(
    capsys, tmp_path: Path
) -> None:
    """An app-only token of a URL issuer: its keys from a JWKS anyone serves prove nothing; the
    same JWKS named as jwks_uri by that issuer's OpenID configuration does."""
    issuer = "https://login.contoso.com/"
    token = signed({"iss": issuer, "aud": "https://mail.contoso.com", "nbf": T0, "exp": T0 + 3600})
    keys_fetch = fetch("keys.example", _jwks(), "/discovery/keys")
    args = ["--require-signature"]
    code, violations = verdict(capsys, tmp_path, [keys_fetch], [ews(token)], args=args)
    assert code == 1 and [k for k, _ in violations] == ["signature-not-verified"]
    config = {"issuer": issuer, "jwks_uri": "https://keys.example/discovery/keys"}
    config_fetch = fetch("login.contoso.com", config, "/.well-known/openid-configuration")
    code, violations = verdict(
        capsys, tmp_path, [config_fetch, keys_fetch], [ews(token)], args=args
    )
    assert (code, violations) == (0, [])
    other = {**config, "issuer": "https://login.fabrikam.com/"}
    code, _ = verdict(
        capsys,
        tmp_path,
        [fetch("login.contoso.com", other, "/.well-known/openid-configuration"), keys_fetch],
        [ews(token)],
        args=args,
    )
    assert code == 1


def test_the_unsigned_outer_layer_cannot_claim_another_identity(capsys, tmp_path: Path) -> None:
    """The actor (signed) is Exchange's; the outer token (unsigned) says Skype for Business."""
    exchange = f"{generator().constants.EXCHANGE_ID}@contoso.com"
    actor = actor_claims(iss=exchange, nameid=exchange)
    code, violations = verdict(
        capsys,
        tmp_path,
        [fetch("sfbpool01.contoso.com", sfb_metadata())],
        [ews(s2s(actor=actor))],
    )
    assert (code, violations) == (
        1,
        [
            (
                "invalid-token",
                "token: the unsigned outer token's iss is not the signed actor token's nameid",
            )
        ],
    )


def test_the_realm_is_every_principals_realm(capsys, tmp_path: Path) -> None:
    """Issuer in fabrikam.com, audience in contoso.com: not a contoso.com token."""
    iss = f"{SFB_ID}@fabrikam.com"
    token = signed({"iss": iss, "nameid": iss, "aud": EXO_AUD, "nbf": T0, "exp": T0 + 3600})
    code, violations = verdict(capsys, tmp_path, [ews(token)], args=["--realm", "contoso.com"])
    assert (code, violations) == (1, [("wrong-realm", "realm fabrikam.com is not contoso.com")])


def test_a_tampered_actor_inside_a_signed_outer_token_is_a_bad_signature(
    capsys, tmp_path: Path
) -> None:
    import base64

    actor = signed(actor_claims())
    head, _body, signature = actor.split(".")
    claims = {**actor_claims(), "nameid": f"{SFB_ID}@fabrikam.com"}  # changed after signing
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    tampered = f"{head}.{body}.{signature}"
    outer = signed({**actor_claims(), "actortoken": tampered, "nameid": "alice"})
    code, violations = verdict(
        capsys, tmp_path, [fetch("sfbpool01.contoso.com", sfb_metadata())], [ews(outer)], args=[]
    )
    assert code == 1 and violations == [("bad-signature", "actor token signature does not verify")]


def test_a_key_whose_certificate_had_expired_does_not_vouch(capsys, tmp_path: Path) -> None:
    """The issuer's metadata publishes the key in a certificate that lapsed in 2025; the token
    is used in 2026: its signature checks out, but no longer vouches for the issuer."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    private = keys()["exchange"].private_key
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Lapsed OAuth signing")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(77)
        .not_valid_before(dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc))
        .not_valid_after(dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc))
        .sign(private, hashes.SHA256())
    )
    lapsed = importlib.import_module("generate.keys").TestKey("lapsed", private, cert)
    actor = generator().mint_rs256(actor_claims(), lapsed)
    user = {"sid": "S-1-5-21-1-2-3-1104", "upn": "alice@contoso.com"}
    outer = generator().user_context(EXO_AUD, SFB_ISS, user, actor, 0, 0)
    outer.update(nbf=str(T0), exp=str(T0 + 3600))
    token = generator().mint_unsigned(outer)
    metadata = {**lab().sfb_metadata(lapsed), "issuer": SFB_ISS}
    code, violations = verdict(
        capsys, tmp_path, [fetch("sfbpool01.contoso.com", metadata)], [ews(token)]
    )
    assert (code, violations) == (
        1,
        [
            (
                "signature-not-verified",
                "signature verified, but the certificate of the key that signed it had expired "
                "at this use",
            )
        ],
    )


def test_an_expired_token_whose_answer_was_lost_breaks_the_rule(capsys, tmp_path: Path) -> None:
    token = s2s(nbf=T0 - 7200, exp=T0 - 3600, actor=actor_claims(nbf=T0 - 7200, exp=T0 - 3600))
    code, violations = verdict(capsys, tmp_path, [ews(token, None)], args=[])
    assert (code, violations) == (
        1,
        [("expired", "token expired; the server's answer was not seen")],
    )


@pytest.mark.parametrize(
    ("status", "violations"),
    [
        (500, [("expired", "token expired; the server answered 500, an error, not a refusal")]),
        (503, [("expired", "token expired; the server answered 503, an error, not a refusal")]),
        (
            401,
            [
                (
                    "rejected",
                    "OAuth token refused: server answered 401; the token had expired, no key to "
                    "check its signature here",
                )
            ],
        ),
        (404, []),  # a client error other than a refusal: the server did not take the token
    ],
)
def test_an_expired_token_answered_with_a_server_error_breaks_the_rule(
    capsys, tmp_path: Path, status: int, violations: list
) -> None:
    # a 5xx may come after the token got past authentication: not a refusal
    token = s2s(nbf=T0 - 7200, exp=T0 - 3600, actor=actor_claims(nbf=T0 - 7200, exp=T0 - 3600))
    answer = f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode()
    code, found = verdict(capsys, tmp_path, [ews(token, answer)], args=[])
    assert (code, found) == (1 if violations else 0, violations)


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": None}, "token: a required claim is missing (iss, aud, exp, nameid or nbf)"),
        ({"exp": T0 + 10 * 365 * 86400}, "token: its lifetime is over 24 hours"),
        ({"exp": "soon"}, "token: a claim cannot be read (of the wrong type: see decode)"),
        ({"exp": [T0]}, "token: a claim cannot be read (of the wrong type: see decode)"),
    ],
)
def test_claims_that_cannot_be_judged_void_the_rules_claim(
    capsys, tmp_path: Path, claims: dict, reason: str
) -> None:
    base = {"iss": SFB_ISS, "nameid": SFB_ISS, "aud": EXO_AUD, "nbf": T0, "exp": T0 + 3600}
    payload = {k: v for k, v in {**base, **claims}.items() if v is not None}
    token = signed(payload)
    code, violations = verdict(capsys, tmp_path, [ews(token)], args=["--issuer", "skype"])
    assert (code, violations) == (1, [("invalid-token", reason)])


def test_a_long_lifetime_is_relaxed_by_allow(capsys, tmp_path: Path) -> None:
    payload = {"iss": SFB_ISS, "nameid": SFB_ISS, "aud": EXO_AUD, "nbf": T0, "exp": T0 + 86400 * 9}
    path = write_capture(tmp_path / "long.pcap", [ews(signed(payload))])
    code = main(["verify", path, "--json", "--issuer", "skype", "--allow", "long-lived-token"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["rules"][0]["relaxed"] == {"long-lived-token": 1}


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--issuer", ",", "issuer: empty (name at least one, or leave the issuer out)"),
        ("--realm", " ", "realm: empty (name at least one, or leave the realm out)"),
        ("--realm", "contoso .com", "realm 'contoso .com': a realm holds no spaces"),
    ],
)
def test_an_issuer_or_realm_given_empty_is_a_usage_error(
    capsys, tmp_path: Path, option: str, value: str, message: str
) -> None:
    path = write_capture(tmp_path / "any.pcap", [ews(s2s())])
    assert main(["verify", path, option, value]) == 3
    assert capsys.readouterr().err == f"oauth-analyzer: error: {message}\n"


def test_a_server_seen_only_through_tls_still_names_its_address(capsys, tmp_path: Path) -> None:
    """10.1.0.11 answers TLS for mail.contoso.com (not decrypted); NTLM sent there in the clear
    as MAIL is the same server: with --partial, the fallback still fails the rule."""
    import scapy.all as scapy
    from test_scope_escapes import MAIL2, SFB_CERT, STRICT, ntlm, oauth, tls

    path = tmp_path / "sni.pcap"
    connections = [oauth(), tls("mail.contoso.com", server=MAIL2), ntlm("MAIL", server=MAIL2)]
    packets = sorted((p for c in connections for p in c), key=lambda p: float(p.time))
    scapy.wrpcap(str(path), packets)
    code = main(["verify", str(path), *STRICT, "--keys", SFB_CERT, "--partial", "--json"])
    (rule,) = json.loads(capsys.readouterr().out)["rules"]
    assert (code, rule["result"]) == (1, "FAIL")
    assert [(v["kind"], v["host"]) for v in rule["violations"]] == [("not-oauth", "MAIL")]


@pytest.mark.parametrize(
    ("port", "result"), [(80, "INCONCLUSIVE"), (8080, "INCONCLUSIVE"), (25, "PASS")]
)
def test_bytes_that_are_not_http_on_an_http_port_are_a_blind_spot(
    capsys, tmp_path: Path, port: int, result: str
) -> None:
    """A connection to the server's port 80 that is neither HTTP nor TLS may have carried
    anything: the verdict cannot vouch for it. On port 25 it is mail, not a blind spot."""
    import scapy.all as scapy
    from test_scope_escapes import SFB_CERT, STRICT, oauth, tcp

    opaque = tcp([(bytes(range(256)) * 4, b"\x00\x01garbage")], 40555, T0 + 5, dport=port)
    path = tmp_path / "opaque.pcap"
    packets = sorted((p for c in (oauth(), opaque) for p in c), key=lambda p: float(p.time))
    scapy.wrpcap(str(path), packets)
    code = main(["verify", str(path), *STRICT, "--keys", SFB_CERT, "--json"])
    (rule,) = json.loads(capsys.readouterr().out)["rules"]
    assert rule["result"] == result and code == {"PASS": 0, "INCONCLUSIVE": 2}[result]
    blind = [(n["kind"], n["server"]) for n in rule["coverage"]["not_inspected"]]
    assert blind == ([("not-http", f"10.1.0.10:{port}")] if result == "INCONCLUSIVE" else [])
