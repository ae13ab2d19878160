"""Secrets masked exactly where a user reads them: the request target of an event (secret query
parameters, whatever else the query holds) and a decoded token's public claims (secret claims
in any case, at any depth), with the secret text appearing nowhere."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from wire_kit import OK, write_capture

from analyzer.auth.schemes import fingerprint
from analyzer.engine import analyze_paths
from analyzer.model import Event, to_dict
from analyzer.oauth.tokens import decode_token

BASIC = "Basic " + base64.b64encode(b"alice:pw").decode()
# an opaque access token in standard base64, its '=' padding sent as is
PADDED = base64.b64encode(b"opaque access token, 35 bytes long").decode()
CODE = "M.R3_BAY.c0a8f2e1-5b7d-4c1e-9f3a-2d6e8b4a7c91"
SECRET = "Zq8wLk3Vn5Tx0Rb7Jm2Hd9Gc4Fs6Pa1Y"


def request(target: str, auth: str | None = None) -> bytes:
    head = f"GET {target} HTTP/1.1\r\nHost: app.contoso.test\r\n"
    return (head + (f"Authorization: {auth}\r\n" if auth else "") + "\r\n").encode()


def shown(events: list[Event]) -> str:
    """The events as every output writes them (no reveal flag), as one text."""
    return json.dumps([to_dict(e) for e in events], default=str)


def test_secret_query_values_are_masked_in_the_event_uri_and_nowhere_shown(
    tmp_path: Path,
) -> None:
    """The query starts at the first '?': a later '?' is part of a value (an unencoded
    redirect_uri), and a value ends only at '&' - the '=' padding of a base64 token is part of
    it. Names, order and every other byte stay as sent."""
    targets = [
        f"/EWS/Exchange.asmx?access_token={PADDED}&x=1",
        f"/oauth2/authorize?code={CODE}&redirect_uri=https://app.contoso.test/cb?tab=1",
        f"/oauth2/token?Client_Secret={SECRET}?&state=a%2Fb#frag",
        f"/cb#access_token={PADDED}&token_type=Bearer",
    ]
    path = write_capture(
        tmp_path / "queries.pcap",
        [(request(targets[0]), OK)],
        *[[(request(target, BASIC), OK)] for target in targets[1:]],
    )
    events = analyze_paths([path]).events
    assert [e.uri for e in events] == [
        "/EWS/Exchange.asmx?access_token=REDACTED&x=1",
        "/oauth2/authorize?code=REDACTED&redirect_uri=https://app.contoso.test/cb?tab=1",
        "/oauth2/token?Client_Secret=REDACTED&state=a%2Fb#frag",
        "/cb#access_token=REDACTED&token_type=Bearer",
    ]
    assert [(e.scheme, e.cred_fp) for e in events] == [
        ("bearer", fingerprint(PADDED)),
        *[("basic", fingerprint(BASIC.split()[1]))] * 3,
    ]
    text = shown(events)
    for secret in (PADDED, PADDED.rstrip("="), CODE, SECRET):
        assert secret not in text


def nested_token() -> str:
    """An unsigned token whose secrets sit under names in several cases, one level down and
    inside a list."""
    claims: dict[str, Any] = {
        "iss": "https://sts.contoso.test/",
        "Refresh_Token": "rt-secret-value-1",
        "ctx": {"CLIENT_SECRET": "cs-secret-value-2", "tenant": "contoso"},
        "grants": [{"assertion": "as-secret-value-3"}, "plain"],
        "password": 1234,
    }
    head = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{body}."


def test_public_claims_mask_secret_claims_unless_revealed_on_purpose() -> None:
    """``public_claims()`` shows what ``to_dict()`` shows: each secret claim, in any case and at
    any depth, as its fingerprint (or its JSON type), never its text. Only an explicit
    ``reveal_secrets=True`` gives the values back."""
    token = decode_token(nested_token())
    masked = {
        "iss": "https://sts.contoso.test/",
        "Refresh_Token": f"<redacted fp={fingerprint('rt-secret-value-1')}>",
        "ctx": {
            "CLIENT_SECRET": f"<redacted fp={fingerprint('cs-secret-value-2')}>",
            "tenant": "contoso",
        },
        "grants": [{"assertion": f"<redacted fp={fingerprint('as-secret-value-3')}>"}, "plain"],
        "password": "<redacted fp=number>",
    }
    assert token.public_claims() == masked
    assert token.to_dict()["claims"] == masked
    text = json.dumps(token.public_claims())
    for secret in ("rt-secret-value-1", "cs-secret-value-2", "as-secret-value-3", "1234"):
        assert secret not in text
    assert token.public_claims(reveal_secrets=True) == token.claims
