"""The on-premises Exchange / Skype for Business lab: its users, auth metadata documents, hosts and
header habits (``ExchangeWorld``, ``Lab``), the Bearer challenge and the SfB metadata fetch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .capture import Capture
from .constants import EXCHANGE_ID, MS, REALM, SFB_ID, US
from .encoding import b64, det_guid, http_date, json_bytes, prng
from .ews import EWS_UA
from .keys import TestKey
from .messages import AuthHeader, ChallengeHeader, HeaderItem, Request, Response, challenge
from .wire import C, Conn, Host, ether

ALICE = {"sid": "S-1-5-21-3623811015-3361044348-30300820-1104", "upn": "alice.johnson@contoso.com"}
BOB = {"sid": "S-1-5-21-3623811015-3361044348-30300820-1117", "upn": "bob.martinez@contoso.com"}


def exchange_metadata(key: TestKey) -> dict[str, Any]:
    """Exchange's auth metadata document (microsoft-s2s.md 5.2)."""
    return {
        "id": "_" + det_guid("exchange-metadata"),
        "version": "1.0",
        "name": "Exchange",
        "realm": REALM,
        "serviceName": EXCHANGE_ID,
        "issuer": f"{EXCHANGE_ID}@{REALM}",
        "allowedAudiences": [f"{EXCHANGE_ID}@{REALM}"],
        "keys": [
            {
                "usage": "signing",
                "keyinfo": {"x5t": key.x5t},
                "keyvalue": {"type": "x509Certificate", "value": b64(key.der)},
            }
        ],
        "endpoints": [
            {
                "location": "https://mail.contoso.com/autodiscover/metadata/json/1",
                "protocol": "OAuth2",
                "usage": "metadata",
            }
        ],
    }


def sfb_metadata(key: TestKey) -> dict[str, Any]:
    """SfB's document: same shape as Exchange's (the real one is not documented, [U])."""
    return {
        "id": "_" + det_guid("sfb-metadata"),
        "version": "1.0",
        "name": "Lync",
        "realm": REALM,
        "serviceName": SFB_ID,
        "issuer": f"{SFB_ID}@{REALM}",
        "allowedAudiences": [f"{SFB_ID}@{REALM}"],
        "keys": [
            {
                "usage": "signing",
                "keyinfo": {"x5t": key.x5t},
                "keyvalue": {"type": "x509Certificate", "value": b64(key.der)},
            }
        ],
        "endpoints": [
            {
                "location": "https://sfbpool01.contoso.com/metadata/json/1",
                "protocol": "OAuth2",
                "usage": "metadata",
            }
        ],
    }


class ExchangeWorld:
    """The hosts and header habits of the on-premises Exchange / SfB lab."""

    def __init__(self, cap: Capture) -> None:
        self.cap = cap
        # Fresh hosts per build: they carry IP-ID counters, which must restart on every run.
        self.exchange = Host("10.1.0.10", "00:15:5d:01:00:0a")
        self.sfb = Host("10.1.0.20", "00:15:5d:01:00:14")
        self.client = Host("10.1.0.50", "00:15:5d:01:00:32")
        self.acs = Host("20.190.128.10", "00:15:5d:01:00:01", ttl=112)  # via the gateway

    def conn(self, client: Host, cport: int, server: Host, sport: int = 80) -> Conn:
        isn = int.from_bytes(prng(f"isn/{cport}", 8), "big")
        return Conn(self.cap, 0, ether, client, cport, server, sport, isn >> 32, isn & 0xFFFFFFFF)

    def ex_headers(
        self,
        t: int,
        label: str,
        content_type: str | None = "text/xml; charset=utf-8",
        cookie: bool = False,
        extra: Sequence[HeaderItem] = (),
        fqdn: str = "mail.contoso.com",
        netbios: str = "MAIL",
    ) -> list[HeaderItem]:
        """Headers Exchange 2019's front end puts on an EWS response."""
        out: list[HeaderItem] = [("Cache-Control", "private")]
        if content_type:
            out.append(("Content-Type", content_type))
        out += [("Server", "Microsoft-IIS/10.0"), ("request-id", det_guid("rid/" + label))]
        out += list(extra)
        out += [
            ("X-CalculatedBETarget", fqdn),
            ("X-DiagInfo", netbios),
            ("X-BEServer", netbios),
            ("X-AspNet-Version", "4.0.30319"),
        ]
        if cookie:
            out.append(
                ("Set-Cookie", "exchangecookie=" + prng("xc/" + label, 16).hex() + "; path=/")
            )
        out += [
            ("X-Powered-By", "ASP.NET"),
            ("X-FEServer", netbios),
            ("Date", http_date(t)),
            ("Content-Length", "{len}"),
        ]
        return out

    def ews_request(
        self,
        body: bytes,
        auth: AuthHeader | None,
        anchor: str,
        label: str,
        cookie: str | None = None,
        ua: str = EWS_UA,
        path: str = "/EWS/Exchange.asmx",
        host: str = "mail.contoso.com",
    ) -> Request:
        headers: list[HeaderItem] = [
            ("Content-Type", "text/xml; charset=utf-8"),
            ("User-Agent", ua),
            ("Accept", "text/xml"),
            ("X-AnchorMailbox", anchor),
            ("X-PreferServerAffinity", "true"),
            ("client-request-id", det_guid("crid/" + label)),
            ("return-client-request-id", "true"),
        ]
        if auth is not None:
            headers.append(auth)
        headers += [("Host", host)]
        if cookie:
            headers.append(("Cookie", cookie))
        headers += [("Content-Length", "{len}"), ("Accept-Encoding", "gzip,deflate")]
        return Request("POST", path, headers, body)


CAROL = {"sid": "S-1-5-21-3623811015-3361044348-30300820-1123", "upn": "carol.nguyen@contoso.com"}


class Lab(ExchangeWorld):
    """Exchange-style header habits, with hosts made on demand: one address pair per scenario."""

    def __init__(self, cap: Capture, label: str) -> None:
        super().__init__(cap)
        self.label = label
        self.hosts: dict[str, Host] = {}

    def host(self, ip: str) -> Host:
        if ip not in self.hosts:
            _, b, c, d = (int(x) for x in ip.split("."))
            self.hosts[ip] = Host(ip, f"00:15:5d:{b:02x}:{c:02x}:{d:02x}")
        return self.hosts[ip]

    def link(self, client_ip: str, cport: int, server_ip: str, sport: int = 80) -> Conn:
        isn = int.from_bytes(prng(f"isn/{self.label}/{cport}", 8), "big")
        client, server = self.host(client_ip), self.host(server_ip)
        return Conn(self.cap, 0, ether, client, cport, server, sport, isn >> 32, isn & 0xFFFFFFFF)


def exchange_bearer(trusted: str, error: bool = False) -> ChallengeHeader:
    """Exchange's Bearer challenge (microsoft-s2s.md 4.1), with error="invalid_token" on a bad
    token."""
    params = [
        ("client_id", EXCHANGE_ID, True),
        ("trusted_issuers", trusted, True),
        ("token_types", "app_asserted_user_v1 service_asserted_app_v1", True),
    ]
    if error:
        params.append(("error", "invalid_token", True))
    return challenge("Bearer", params)


def sfb_metadata_fetch(
    cap: Capture, lab: Lab, link: tuple[str, int, str], start: int, key: TestKey
) -> int | None:
    """An Exchange server fetches SfB's auth metadata: GET /metadata/json/1 -> 200.

    ``link`` is (Exchange address, its port, SfB pool address)."""
    c = lab.link(*link)
    t = c.open(start)
    req = Request(
        "GET", "/metadata/json/1", [("Host", "sfbpool01.contoso.com"), ("Connection", "Keep-Alive")]
    )
    resp = Response(
        200,
        "OK",
        [
            ("Cache-Control", "no-cache"),
            ("Content-Type", "application/json; charset=utf-8"),
            ("Server", "Microsoft-IIS/10.0"),
            ("X-MS-Server-Fqdn", "sfbfe01.contoso.com"),
            ("X-Content-Type-Options", "nosniff"),
            ("X-Powered-By", "ASP.NET"),
            ("Date", http_date(t + 4 * MS)),
            ("Content-Length", "{len}"),
        ],
        json_bytes(sfb_metadata(key)),
    )
    t, event = cap.exchange(c, t + 200 * US, req, resp, "Exchange fetches SfB's auth metadata")
    c.close(C, t + 30 * MS)
    cap.handshake("metadata", "success", [event], "SfB metadata")
    return event
