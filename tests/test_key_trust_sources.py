"""Where a captured signing key may come from for ``verify`` to count a signature as verified.

Review round 4 (k01): an OpenID configuration served from any host named the Skype for
Business issuer and a JWKS on that host; the JWKS key then vouched for SfB. An OpenID
configuration now speaks only for an issuer whose authority its location has - a host in the
issuer's realm, Microsoft's token service with the issuer's tenant in the path, or a URL
issuer's own host - and, for a principal or Microsoft issuer, only of a JWKS there too
(``may_speak_for``).

Captures are real pcap bytes (``wire_kit``); tokens are signed with the test keys in
captures/keys (``token_kit``) or with an attacker's key made here.
"""

from __future__ import annotations

import base64
import datetime as dt
import importlib
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from token_kit import EXO_AUD, KEYS_DIR, SFB_ISS, T0, actor_claims, generator, keys
from wire_kit import OK, connection, write_packets

from analyzer.cli import main
from analyzer.oauth.keys import may_speak_for

EX_IP, SFB_IP, POOL_IP = "10.1.0.10", "10.1.0.20", "10.1.0.30"  # Exchange, SfB server, SfB pool
STRICT = ["--issuer", "skype", "--realm", "contoso.com", "--require-signature"]
TENANT = "11111111-2222-3333-4444-555555555555"
STS = f"https://sts.windows.net/{TENANT}/"  # Entra ID's (v1) issuer for the tenant
UNTIED = "signature verifies only with a key nothing ties to the issuer (from "
VIA_KEYS = "pass --keys with the issuer's certificate, or capture the issuer's own metadata"


@cache
def attacker() -> Any:
    """A TestKey (private key and self-signed certificate) nobody trusts."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    generator()
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sfbpool01.contoso.com")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(4242)
        .not_valid_before(dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc))
        .not_valid_after(dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))
        .sign(private, hashes.SHA256())
    )
    return importlib.import_module("generate.keys").TestKey("attacker", private, cert)


def s2s_token(key: Any, kid: bool = False) -> str:
    """SfB -> Exchange: an unsigned user context around an actor token signed with ``key``."""
    gen = generator()
    actor = gen.mint_rs256(actor_claims(), key, kid=kid)
    user = {"sid": "S-1-5-21-1-2-3-1104", "upn": "alice@contoso.com"}
    outer = gen.user_context(EXO_AUD, SFB_ISS, user, actor, 0, 0)
    outer.update(nbf=str(T0), exp=str(T0 + 3600))
    return gen.mint_unsigned(outer)


def metadata(key: Any, issuer: str = SFB_ISS) -> dict:
    return {**importlib.import_module("generate.lab").sfb_metadata(key), "issuer": issuer}


def jwks(key: Any) -> dict:
    n = key.private_key.public_key().public_numbers().n
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    jwk = {"kty": "RSA", "use": "sig", "kid": key.x5t, "x5t": key.x5t, "e": "AQAB"}
    return {"keys": [{**jwk, "n": base64.urlsafe_b64encode(raw).rstrip(b"=").decode()}]}


def get(host: str, path: str, doc: dict) -> tuple[bytes, bytes]:
    """A cleartext GET of ``path`` on ``host`` answered 200 with ``doc``."""
    body = json.dumps(doc).encode()
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    return request, head.encode() + b"\r\n\r\n" + body


def ews(token: str) -> tuple[bytes, bytes]:
    head = "POST /EWS/Exchange.asmx HTTP/1.1\r\nHost: mail.contoso.com\r\nContent-Length: 0\r\n"
    return f"{head}Authorization: Bearer {token}\r\n\r\n".encode(), OK


def capture(tmp_path: Path, fetches: list, fetcher: str, server: str, token: str) -> str:
    """``fetches`` made by ``fetcher`` from ``server`` (one connection), then SfB presents
    ``token`` to Exchange."""
    return write_packets(
        tmp_path / "c.pcap",
        connection(fetches, 39000, T0, client=fetcher, server=server),
        connection([ews(token)], 40001, T0 + 2, client=SFB_IP, server=EX_IP),
    )


def verdict(capsys, path: str, args: list[str] = STRICT) -> tuple[int, list[tuple[str, str]]]:
    code = main(["verify", path, "--json", *args])
    data = json.loads(capsys.readouterr().out)
    return code, [(v["kind"], v["reason"]) for v in data["rules"][0]["violations"]]


def untied(violations: list[tuple[str, str]], location: str) -> None:
    """The one violation says the key is tied to nothing, names where it came from, and points
    to ``--keys``."""
    [(kind, reason)] = violations
    assert kind == "signature-not-verified"
    assert reason.startswith(f"{UNTIED}{location} (captured ")
    assert VIA_KEYS in reason


# ------------------------------------------------------------------- controls that verify
def test_the_pools_metadata_fetched_by_exchange_verifies(capsys, tmp_path: Path) -> None:
    """The realistic case: Exchange fetches the pool's metadata; the key in it vouches for
    SfB."""
    path = capture(
        tmp_path,
        [get("sfbpool01.contoso.com", "/metadata/json/1", metadata(keys()["sfb"]))],
        EX_IP,
        POOL_IP,
        s2s_token(keys()["sfb"]),
    )
    assert verdict(capsys, path) == (0, [])


def test_microsofts_openid_configuration_and_jwks_verify(capsys, tmp_path: Path) -> None:
    """Entra ID: the tenant's OpenID configuration on login.microsoftonline.com names the
    issuer https://sts.windows.net/<tenant>/ and the keys all tenants share."""
    issuer = STS
    key = keys()["acs"]
    config = {
        "issuer": issuer,
        "jwks_uri": "https://login.microsoftonline.com/common/discovery/keys",
    }
    token = generator().mint_rs256(
        {"iss": issuer, "aud": "https://mail.contoso.com", "nbf": T0, "exp": T0 + 3600},
        key,
        kid=True,
    )
    fetches = [
        get("login.microsoftonline.com", f"/{TENANT}/.well-known/openid-configuration", config),
        get("login.microsoftonline.com", "/common/discovery/keys", jwks(key)),
    ]
    path = capture(tmp_path, fetches, EX_IP, "20.190.128.10", token)
    assert verdict(capsys, path, ["--require-signature"]) == (0, [])
    # the same configuration served for another tenant speaks for that tenant only
    other = "/99999999-8888-7777-6666-555555555555/.well-known/openid-configuration"
    fetches[0] = get("login.microsoftonline.com", other, config)
    path = capture(tmp_path, fetches, EX_IP, "20.190.128.10", token)
    code, violations = verdict(capsys, path, ["--require-signature"])
    assert code == 1
    untied(violations, "http://login.microsoftonline.com/common/discovery/keys")
    # the tenant's own configuration naming keys elsewhere: a Microsoft issuer keeps its keys
    # at Microsoft, so those keys speak for nobody
    elsewhere = {**config, "jwks_uri": "http://idp.evil.test/discovery/keys"}
    fetches = [
        get("login.microsoftonline.com", f"/{TENANT}/.well-known/openid-configuration", elsewhere),
        get("idp.evil.test", "/discovery/keys", jwks(attacker())),
    ]
    forged = generator().mint_rs256(
        {"iss": issuer, "aud": "https://mail.contoso.com", "nbf": T0, "exp": T0 + 3600},
        attacker(),
        kid=True,
    )
    path = capture(tmp_path, fetches, EX_IP, "20.190.128.10", forged)
    code, violations = verdict(capsys, path, ["--require-signature"])
    assert code == 1
    untied(violations, "http://idp.evil.test/discovery/keys")


@pytest.mark.parametrize(
    ("config_host", "config_path", "jwks_host"),
    [
        ("idp.evil.test", "/.well-known/openid-configuration", "idp.evil.test"),  # k01
        ("sfbpool01.contoso.com", "/.well-known/openid-configuration", "idp.evil.test"),
        ("idp.evil.test", "/.well-known/openid-configuration", "sfbpool01.contoso.com"),
        ("contoso.com.evil.test", "/.well-known/openid-configuration", "contoso.com.evil.test"),
        ("login.microsoftonline.com", "/common/.well-known/openid-configuration", "idp.evil.test"),
    ],
)
def test_an_openid_configuration_speaks_only_for_issuers_of_its_realm(
    capsys, tmp_path: Path, config_host: str, config_path: str, jwks_host: str
) -> None:
    """k01: the configuration and the JWKS it names must both be where the SfB issuer's realm
    (contoso.com) speaks."""
    jwks_uri = f"http://{jwks_host}/discovery/keys"
    config = {"issuer": SFB_ISS, "jwks_uri": jwks_uri}
    fetches = [
        get(config_host, config_path, config),
        get(jwks_host, "/discovery/keys", jwks(attacker())),
    ]
    path = capture(tmp_path, fetches, EX_IP, "10.66.6.6", s2s_token(attacker(), kid=True))
    code, violations = verdict(capsys, path)
    assert code == 1
    untied(violations, jwks_uri)


def test_an_openid_configuration_in_the_realm_naming_a_jwks_in_the_realm_verifies(
    capsys, tmp_path: Path
) -> None:
    """The counterpart of k01: both documents within contoso.com."""
    config = {"issuer": SFB_ISS, "jwks_uri": "https://sfbpool01.contoso.com/discovery/keys"}
    fetches = [
        get("sfbpool01.contoso.com", "/.well-known/openid-configuration", config),
        get("sfbpool01.contoso.com", "/discovery/keys", jwks(keys()["sfb"])),
    ]
    path = capture(tmp_path, fetches, EX_IP, POOL_IP, s2s_token(keys()["sfb"], kid=True))
    assert verdict(capsys, path) == (0, [])


@pytest.mark.parametrize(
    ("location", "issuer", "keys_doc", "speaks"),
    [
        ("http://sfbpool01.contoso.com/x", SFB_ISS, False, True),
        ("http://contoso.com/x", SFB_ISS, False, True),
        ("http://idp.evil.test/x", SFB_ISS, False, False),
        ("http://contoso.com.evil.test/x", SFB_ISS, False, False),
        ("http://evilcontoso.com/x", SFB_ISS, False, False),
        (f"https://login.microsoftonline.com/{TENANT}/v2.0/x", f"x@{TENANT}", False, True),
        ("https://login.microsoftonline.com/common/discovery/keys", f"x@{TENANT}", True, True),
        ("https://login.microsoftonline.com/common/discovery/keys", f"x@{TENANT}", False, False),
        ("https://login.microsoftonline.com/common/discovery/keys", SFB_ISS, True, False),
        ("https://login.microsoftonline.com/common/keys?appid=1", f"x@{TENANT}", True, False),
        (f"https://evil.test/{TENANT}/keys", f"x@{TENANT}", True, False),
        (f"https://login.microsoftonline.com/{TENANT}/x", STS, False, True),
        ("https://login.microsoftonline.com/other/x", STS, True, False),
        ("https://login.microsoftonline.com/common/x", STS, False, False),
        ("https://login.microsoftonline.com/common/x", STS, True, True),
        (f"https://login.windows.net/{TENANT}/keys?appid=1", STS, True, False),
        ("https://sts.windows.net/common/x", "https://sts.windows.net/common/", True, False),
        ("https://login.contoso.com/.well-known/x", "https://login.contoso.com/", False, True),
        ("https://keys.login.contoso.com/k", "https://login.contoso.com/", True, True),
        ("https://keys.example/k", "https://login.contoso.com/", True, False),
        ("https://evillogin.contoso.com/k", "https://login.contoso.com/", True, False),
        ("https://login.contoso.com:8443/k", "https://login.contoso.com", True, True),
        ("https://anything/k", "https://localhost/", True, False),
        ("https://anything/k", "no-realm", True, False),
    ],
)
def test_which_locations_may_speak_for_an_issuer(
    location: str, issuer: str, keys_doc: bool, speaks: bool
) -> None:
    assert may_speak_for(location, issuer, keys_doc) is speaks


def test_a_metadata_file_given_with_keys_vouches_for_its_own_issuer_only(
    capsys, tmp_path: Path
) -> None:
    """Review round 5: the admin passes both partners' saved metadata with --keys; a token
    whose actor says Skype for Business but is signed with Exchange's key verified, as any key
    file vouched for any issuer. A metadata document names its issuer: its keys vouch for that
    one. A certificate file names none: the user's word, as before."""
    sfb_file, exchange_file = tmp_path / "sfb.json", tmp_path / "exchange.json"
    sfb_file.write_text(json.dumps(metadata(keys()["sfb"])))
    exchange_issuer = f"{generator().constants.EXCHANGE_ID}@contoso.com"
    exchange_file.write_text(json.dumps(metadata(keys()["exchange"], exchange_issuer)))
    given = ["--keys", str(sfb_file), "--keys", str(exchange_file)]
    (tmp_path / "forged").mkdir()
    forged = capture(tmp_path / "forged", [], EX_IP, POOL_IP, s2s_token(keys()["exchange"]))
    code, violations = verdict(capsys, forged, [*STRICT, *given])
    assert code == 1 and [kind for kind, _ in violations] == ["signature-not-verified"]
    assert violations[0][1].startswith(f"{UNTIED}{exchange_file}")
    good = capture(tmp_path, [], EX_IP, POOL_IP, s2s_token(keys()["sfb"]))
    assert verdict(capsys, good, [*STRICT, *given]) == (0, [])
    pem = ["--keys", str(KEYS_DIR / "exchange.cert.pem")]
    assert verdict(capsys, forged, [*STRICT, *pem]) == (0, [])  # no issuer named: user's word
