"""Where a captured signing key may come from for ``verify`` to count a signature as verified
(review round 4, two false PASSes):

- k01: an OpenID configuration served from any host named the SfB issuer and a JWKS on that
  host; the JWKS key then vouched for SfB. An OpenID configuration (and the JWKS it names) now
  speaks only for issuers whose authority its location has: a host in the issuer's realm, or
  Microsoft's token service with the issuer's tenant in the path (``may_speak_for``).
- k02: a cleartext metadata fetch between two workstations, tied to the SfB pool by its Host
  header only. A captured document now counts only when its fetch ties it to its location: it
  came over TLS, or a relying party (an address the capture shows being presented bearer
  tokens) fetched it (``KeyStore.tied``).

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
from analyzer.oauth.keys import KeyStore, may_speak_for

EX_IP, SFB_IP, POOL_IP = "10.1.0.10", "10.1.0.20", "10.1.0.30"  # Exchange, SfB server, SfB pool
WS1, WS2 = "10.9.9.65", "10.9.9.66"  # two workstations on the span port
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
    """The realistic case: Exchange (the relying party SfB's tokens go to) fetches the pool's
    metadata in cleartext; the key in it vouches for SfB."""
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
    issuer https://sts.windows.net/<tenant>/ and the keys all tenants share; the relying party
    fetched both."""
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


def test_a_key_file_vouches_for_a_key_an_untied_document_published_first(
    capsys, tmp_path: Path
) -> None:
    """The way out the reason names: --keys with the pool's certificate vouches for the key,
    although the capture's untied document published the same key first."""
    path = capture(
        tmp_path,
        [get("sfbpool01.contoso.com", "/metadata/json/1", metadata(keys()["sfb"]))],
        WS1,
        WS2,
        s2s_token(keys()["sfb"]),
    )
    code, violations = verdict(capsys, path)
    assert code == 1
    untied(violations, "http://sfbpool01.contoso.com/metadata/json/1")
    with_keys = [*STRICT, "--keys", str(KEYS_DIR / "sfb.cert.pem")]
    assert verdict(capsys, path, with_keys) == (0, [])


# ------------------------------------------------------------------------ k02: Host only
@pytest.mark.parametrize(("fetcher", "server"), [(WS1, WS2), (SFB_IP, POOL_IP), (SFB_IP, EX_IP)])
def test_metadata_tied_to_the_pool_by_its_host_header_only_does_not_verify(
    capsys, tmp_path: Path, fetcher: str, server: str
) -> None:
    """k02: a cleartext fetch by a machine no token was presented to (a workstation, or the
    token's own sender) ties the document to the pool by its Host header only."""
    path = capture(
        tmp_path,
        [get("sfbpool01.contoso.com", "/metadata/json/1", metadata(attacker()))],
        fetcher,
        server,
        s2s_token(attacker()),
    )
    code, violations = verdict(capsys, path)
    assert code == 1
    untied(violations, "http://sfbpool01.contoso.com/metadata/json/1")


# -------------------------------------------------------------- k01: OpenID configuration
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
    """k01, fetched by Exchange itself (so only the locations are judged): the configuration
    and the JWKS it names must both be where the SfB issuer's realm (contoso.com) speaks."""
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
    """The counterpart of k01: both documents within contoso.com, fetched by Exchange."""
    config = {"issuer": SFB_ISS, "jwks_uri": "https://sfbpool01.contoso.com/discovery/keys"}
    fetches = [
        get("sfbpool01.contoso.com", "/.well-known/openid-configuration", config),
        get("sfbpool01.contoso.com", "/discovery/keys", jwks(keys()["sfb"])),
    ]
    path = capture(tmp_path, fetches, EX_IP, POOL_IP, s2s_token(keys()["sfb"], kid=True))
    assert verdict(capsys, path) == (0, [])


def test_an_openid_configuration_fetched_by_a_workstation_does_not_vouch(
    capsys, tmp_path: Path
) -> None:
    """The same documents in the realm, but fetched in cleartext between two workstations."""
    config = {"issuer": SFB_ISS, "jwks_uri": "https://sfbpool01.contoso.com/discovery/keys"}
    fetches = [
        get("sfbpool01.contoso.com", "/.well-known/openid-configuration", config),
        get("sfbpool01.contoso.com", "/discovery/keys", jwks(attacker())),
    ]
    path = capture(tmp_path, fetches, WS1, WS2, s2s_token(attacker(), kid=True))
    code, violations = verdict(capsys, path)
    assert code == 1
    untied(violations, "http://sfbpool01.contoso.com/discovery/keys")


def test_a_jwks_the_relying_party_fetched_needs_a_configuration_tied_too(
    capsys, tmp_path: Path
) -> None:
    """Exchange fetched the JWKS itself, but the configuration naming it for SfB came over a
    cleartext fetch between two workstations: that configuration speaks for nobody."""
    config = {"issuer": SFB_ISS, "jwks_uri": "https://sfbpool01.contoso.com/discovery/keys"}
    path = write_packets(
        tmp_path / "c.pcap",
        connection(
            [get("sfbpool01.contoso.com", "/.well-known/openid-configuration", config)],
            39000,
            T0,
            client=WS1,
            server=WS2,
        ),
        connection(
            [get("sfbpool01.contoso.com", "/discovery/keys", jwks(attacker()))],
            39001,
            T0 + 1,
            client=EX_IP,
            server=POOL_IP,
        ),
        connection([ews(s2s_token(attacker(), kid=True))], 40001, T0 + 2, SFB_IP, EX_IP),
    )
    code, violations = verdict(capsys, path)
    assert code == 1
    untied(violations, "http://sfbpool01.contoso.com/discovery/keys")


# ---------------------------------------------------------------------- the store's rules
def _store_with(doc: dict, transport: str | None, fetched_by: str | None) -> KeyStore:
    store = KeyStore()
    assert store.add_document(json.dumps(doc), URL, 1.0, transport, fetched_by) == 1
    return store


URL = "https://sfbpool01.contoso.com/metadata/json/1"


@pytest.mark.parametrize(
    ("transport", "fetched_by", "relying_party", "vouches"),
    [
        ("tls", WS1, None, True),  # over TLS: the client checked the pool's certificate
        ("tls", None, None, True),  # a HAR's https entry: no client address, still TLS
        ("tcp", EX_IP, EX_IP, True),  # the relying party fetched it
        ("tcp", WS1, EX_IP, False),  # someone else did
        ("tcp", None, EX_IP, False),  # nobody known (a HAR's http entry)
        (None, None, None, False),  # how it was fetched is not known
    ],
)
def test_how_a_document_was_fetched_decides_whether_it_can_vouch(
    transport: str | None, fetched_by: str | None, relying_party: str | None, vouches: bool
) -> None:
    store = _store_with(metadata(keys()["sfb"]), transport, fetched_by)
    if relying_party:
        store.relying_parties.add(relying_party)
    [key] = list(store)
    assert store.vouches(key, SFB_ISS) is vouches
    assert store.vouches(key, "00000004-0000-0ff1-ce00-000000000000@fabrikam.com") is False


class _Event:
    """Just the fields ``KeyStore.add_event`` reads."""

    def __init__(self, **fields: Any) -> None:
        base = {"document": None, "client_ip": SFB_IP, "server_ip": EX_IP, "scheme": "none"}
        base |= {"credential": None, "other_tokens": (), "transport": "tcp", "ts": 1.0}
        base |= {"host": "mail.contoso.com", "uri": "/EWS/Exchange.asmx", "server_port": 80}
        self.__dict__.update(base | fields)


def test_a_relying_party_seen_after_its_fetch_changes_the_verdict() -> None:
    """Streaming: the fetch comes first, the token presented to its fetcher later; the store
    says the signatures must be worked out again (and not for a bearer that is no token)."""
    store = KeyStore()
    fetch = _Event(
        document=json.dumps(metadata(keys()["sfb"])),
        client_ip=EX_IP,
        server_ip=POOL_IP,
        host="sfbpool01.contoso.com",
        uri="/metadata/json/1",
    )
    assert store.add_event(fetch) is True
    [key] = list(store)
    assert key.source.location == "http://sfbpool01.contoso.com/metadata/json/1"
    assert (key.source.transport, key.source.fetched_by) == ("tcp", EX_IP)
    assert not store.vouches(key, SFB_ISS)
    assert store.add_event(_Event(scheme="bearer", credential="not-a-jwt")) is False
    assert not store.vouches(key, SFB_ISS)
    assert store.add_event(_Event(scheme="bearer", credential=s2s_token(keys()["sfb"]))) is True
    assert store.vouches(key, SFB_ISS)
    assert store.add_event(_Event(scheme="bearer", credential=s2s_token(keys()["sfb"]))) is False
    # a configuration holds no key, yet it may tie a JWKS already read to an issuer
    config = {"issuer": SFB_ISS, "jwks_uri": "https://sfbpool01.contoso.com/discovery/keys"}
    assert store.add_event(_Event(document=json.dumps(config), client_ip=EX_IP)) is True


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
