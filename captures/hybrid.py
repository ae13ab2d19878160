#!/usr/bin/env python3
"""Deterministic generator of the hybrid scenario family (captures/hybrid/, see captures/README.md).

Run from the repository root::

    python captures/hybrid.py              # rewrite captures/hybrid/*.pcap, policy.toml, truth.json
    python captures/hybrid.py --out DIR    # write them to DIR instead (the test does this)

One small capture per scenario: the healthy hybrid world (Skype for Business Server -> Exchange
EWS with SfB-signed S2S tokens; Exchange on-premises -> Exchange Online autodiscover with an
ACS-issued actor) plus one fault. ``truth.json`` holds, per scenario, what ``verify`` must answer
for each rule of ``policy.toml``, the verdict class and handshake counts of every client -> server
pair, every violating exchange (frame, time, endpoints, Host, URI, kind) and the facts an
explanation needs. All of it is written from what this module puts on the wire, never from the
analyzer's output. Building blocks (TCP connections, HTTP messages, tokens, NTLM, Kerberos, pcap
writer) come from the ``generate`` package (captures/generate/); output is byte-identical on every
run, like the bundled captures'.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generate as g

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "hybrid"
SEC, MS, US = g.SEC, g.MS, g.US
C, S = g.C, g.S

#: 2026-03-02T15:00:00Z, the base time of every hybrid scenario (generate uses 09:00-14:00).
T_HY = g.T0 + 6 * 3600 * g.SEC
T_HY_S = T_HY // SEC
SKEW = 300  # the 5-minute clock-skew allowance of the S2S validators

REALM = g.REALM
TENANT = g.TENANT
OTHER_TENANT = "99999999-8888-7777-6666-555555555555"
EXCHANGE_ID, SFB_ID, ACS_ID = g.EXCHANGE_ID, g.SFB_ID, g.ACS_ID
SFB_ISS = f"{SFB_ID}@{REALM}"
EX_AUD = f"{EXCHANGE_ID}/mail.contoso.com@{REALM}"
EXO_HOST = "autodiscover-s.outlook.com"
ACS_HOST = "accounts.accesscontrol.windows.net"

EXCHANGE_IP, SFB_IP, EXO_IP, ACS_IP = "10.1.0.10", "10.1.0.20", "52.96.0.10", "20.190.128.10"
GATEWAY_MAC = "00:15:5d:01:00:01"  # Internet hosts are reached through the lab's gateway

EXO_UA = "ASAutoDiscover/CrossForest/EmailDomain//15.02.1544.004"
SFB_PASSWORD = "Sfb-Service-2026!"
USERS = {"alice": g.ALICE, "bob": g.BOB, "carol": g.CAROL}

RULES: list[dict[str, Any]] = [
    {
        "name": "SfB pool to Exchange EWS",
        "client": SFB_IP,
        "server": ["mail.contoso.com"],
        "path": "/EWS/",
        "issuer": SFB_ISS,
        "require_signature": True,
    },
    {
        "name": "Exchange to Exchange Online autodiscover",
        "client": EXCHANGE_IP,
        "server": [EXO_HOST],
        "path": "/autodiscover/",
        "issuer": f"{ACS_ID}@{TENANT}",
        "require_signature": True,
    },
]
R1, R2 = RULES[0]["name"], RULES[1]["name"]

VIOLATION_KINDS = (
    "not-oauth",
    "rejected",
    "wrong-issuer",
    "wrong-realm",
    "unsigned",
    "bad-signature",
    "expired",
    "not-yet-valid",
    "untrusted-issuer",
    "signature-not-verified",
)
PAIR_CLASSES = (
    "oauth-only",
    "oauth-with-fallback",
    "oauth-rejected",
    "no-oauth",
    "mixed",
    "unauthenticated",
)

DEFINITIONS = {
    "frame": "1-based number of the pcap record that carries the first byte of the request",
    "ts": "capture time of that record, epoch seconds (microsecond precision)",
    "scope": "a rule covers an exchange when the client address equals `client`, the Host "
    "header (without port, case-insensitive) is one of `server`, and the request path starts "
    "with `path` (case-insensitive, as IIS treats paths)",
    "handshake": "one authentication attempt on one TCP connection: an optional challenge "
    "(anonymous request or empty-Bearer realm-discovery probe answered 401), then the "
    "credential legs (NTLM type 1 -> 401 type 2 -> type 3 is ONE handshake), then the outcome; "
    "further accepted requests of the same class on the same keep-alive connection extend it, "
    "a rejection or a change of class starts a new one",
    "handshake outcome": "accepted (last credential answered 2xx), rejected (a credential "
    "answered 401/403), challenged (no credential ever followed the challenge)",
    "pair": "client address, server address, server port and Host header; `handshakes` counts "
    "handshakes per auth class (oauth, ntlm, kerberos, basic, anonymous), `exchanges` counts "
    "credential-carrying requests per class (the empty probe excluded)",
    "pair class": "unauthenticated: no credential was sent; oauth-with-fallback: an OAuth "
    "handshake was rejected and a later handshake of another class was accepted; oauth-only / "
    "oauth-rejected: only OAuth credentials, at least one / none accepted; no-oauth: "
    "credentials, none OAuth; mixed: OAuth and other classes without a fallback",
    "event_outcome": "per exchange: accepted (credential answered 2xx), rejected (credential "
    "answered 401), challenged (401 that asks for a credential or the next leg: the "
    "anonymous request, the empty-Bearer probe, an NTLM type 1), none (no credential, no "
    "challenge: metadata fetches, token endpoint calls, 404s)",
    "violation kind": "`kind` is the primary reason, `kinds` every reason that applies "
    "(primary first); kinds come from the fixed list in `violation_kinds`",
    "result": "expected `verify` result per rule; `partial` is the result with --partial",
}


# ---------------------------------------------------------------------------------------------
# One scenario: a Capture plus the wire facts the truth is written from
# ---------------------------------------------------------------------------------------------


@dataclass
class Tok:
    text: str
    layer: str  # outer | actor | bearer | assertion | access_token
    key: g.TestKey | None
    tampered: bool = False
    note: str = ""


@dataclass(frozen=True)
class Ref:
    """A reference from the facts to an exchange; written as its (time-ordered) index."""

    rec: dict[str, Any] = field(compare=False)


@dataclass
class Scenario:
    name: str
    description: str
    fault: str | None
    keys: dict[str, g.TestKey]
    cap: g.Capture = field(init=False)
    lab: g.Lab = field(init=False)
    xs: list[dict[str, Any]] = field(default_factory=list)  # exchanges, in send order
    handshakes: list[dict[str, Any]] = field(default_factory=list)
    tokens: list[Tok] = field(default_factory=list)
    expected: dict[str, dict[str, str]] = field(default_factory=dict)
    pair_classes: dict[tuple[str, str, int, str], str] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    cut_after: dict[str, Any] | None = None  # truncate the pcap inside this exchange's request
    cut_payload: int = 0  # ... after this many bytes of its TCP payload

    def __post_init__(self) -> None:
        self.cap = g.Capture(f"{self.name}.pcap", self.description)
        self.lab = g.Lab(self.cap, f"hybrid/{self.name}")
        for ip in (EXO_IP, ACS_IP):
            self.lab.hosts[ip] = g.Host(ip, GATEWAY_MAC, ttl=112)

    # -- building ------------------------------------------------------------------------------

    def link(self, client_ip: str, cport: int, server_ip: str, sport: int = 80) -> g.Conn:
        return self.lab.link(client_ip, cport, server_ip, sport)

    def token(self, text: str, layer: str, key: g.TestKey | None, **kw: Any) -> str:
        if all(t.text != text for t in self.tokens):
            self.tokens.append(Tok(text, layer, key, **kw))
        return text

    def ex(
        self,
        c: g.Conn,
        t: int,
        req: g.Request,
        resp: g.Response | None,
        note: str,
        kinds: list[str] | None = None,
        think: int = 4 * MS,
    ) -> tuple[int, int]:
        """Send one exchange and record its wire facts; ``kinds``: its violation kinds under
        the rule whose scope covers it (primary first). Returns (end time, index)."""
        order = len(self.cap.frames)
        end, _ = self.cap.exchange(c, t, req, resp, note, think=think)
        cip, cport, sip, sport = c.endpoints
        cred = req.cred
        host = req.header("Host") or ""
        rec: dict[str, Any] = {
            "_order": order,
            "_ts_ns": self.cap.frames[order].ts_ns,
            "_req": req.encode(),
            "_resp": b"" if resp is None else resp.encode(),
            "_event": g.is_event(req, resp),
            "client": f"{cip}:{cport}",
            "server": f"{sip}:{sport}",
            "method": req.method,
            "host": host,
            "uri": req.target(),
            "status": None if resp is None else resp.status,
            "scheme": "none" if cred is None else cred.scheme,
            "mechanism": None if cred is None else cred.mechanism,
            "ntlm_message": None if cred is None else cred.extra.get("ntlm_message"),
            "cred_fp": None if cred is None else g.fp12(cred.text),
            "cred_len": None if cred is None else len(cred.text),
            "event_outcome": _event_outcome(req, resp),
            "handshake": None,
            "rules": [r["name"] for r in RULES if in_scope(r, cip, host, req.path)],
            "note": note,
        }
        assert len(rec["rules"]) <= 1, note  # the two rules' scopes do not overlap
        assert not kinds or (rec["rules"] and set(kinds) <= set(VIOLATION_KINDS)), note
        if rec["rules"] and rec["scheme"] not in ("none", "bearer"):
            assert kinds and "not-oauth" in kinds, note  # every other scheme breaks the rule
        rec["_kinds"] = {rec["rules"][0]: list(kinds)} if kinds else {}
        self.xs.append(rec)
        return end, len(self.xs) - 1

    def ref(self, i: int) -> Ref:
        return Ref(self.xs[i])

    def refs(self, idx: list[int]) -> list[Ref]:
        return [Ref(self.xs[i]) for i in idx]

    def handshake(self, cls: str, outcome: str, idx: list[int], note: str) -> int:
        hid = len(self.handshakes)
        first = self.xs[idx[0]]
        for i in idx:
            assert self.xs[i]["handshake"] is None and self.xs[i]["client"] == first["client"]
            self.xs[i]["handshake"] = hid
        self.handshakes.append(
            {
                "class": cls,
                "outcome": outcome,
                "exchanges": idx,
                "note": note,
                "_pair": _pair(first),
            }
        )
        return hid

    def expect(self, rule: str, result: str, partial: str | None = None, why: str = "") -> None:
        if not why:
            why = {
                R1: "the healthy SfB -> EWS traffic: 6 SfB-signed S2S calls",
                R2: "the healthy Exchange -> EXO traffic: 2 calls with an ACS-signed actor",
            }[rule]
        self.expected[rule] = {"result": result, "partial": partial or result, "why": why}

    def pair(self, client: str, server: str, host: str, cls: str, port: int = 80) -> None:
        self.pair_classes[(client, server, port, host)] = cls


def in_scope(rule: dict[str, Any], client_ip: str, host: str, path: str) -> bool:
    name = host.rsplit(":", 1)[0].lower() if host else ""
    return (
        client_ip == rule["client"]
        and name in [s.lower() for s in rule["server"]]
        and path.lower().startswith(rule["path"].lower())
    )


def _event_outcome(req: g.Request, resp: g.Response | None) -> str:
    cred = req.cred
    if resp is None:
        return "none"
    denied = resp.status in (401, 403, 407)
    if cred is None:
        return "challenged" if denied and resp.challenges else "none"
    if denied:
        probe = cred.scheme == "bearer" and cred.text == ""
        leg = any("token68" in ch for ch in resp.challenges)
        return "challenged" if probe or leg else "rejected"
    return "accepted"


def _pair(rec: dict[str, Any]) -> tuple[str, str, int, str]:
    sip, sport = rec["server"].rsplit(":", 1)
    return rec["client"].rsplit(":", 1)[0], sip, int(sport), rec["host"]


# ---------------------------------------------------------------------------------------------
# Messages of the hybrid world
# ---------------------------------------------------------------------------------------------

NEG, NTLM = g.challenge("Negotiate"), g.challenge("NTLM")
TRUSTED_EX = f"{ACS_ID}@*,{SFB_ISS}"  # Exchange on-prem in hybrid trusts ACS and the SfB pool


def sfb_actor(realm: str, nbf: int, exp: int) -> dict[str, Any]:
    iss = f"{SFB_ID}@{realm}"
    return {
        "aud": f"{EXCHANGE_ID}/mail.contoso.com@{realm}",
        "iss": iss,
        "nbf": str(nbf),
        "exp": str(exp),
        "nameid": iss,
        "trustedfordelegation": "true",
    }


def sfb_outer(realm: str, user: dict[str, str], actor: str, nbf: int, exp: int) -> dict[str, Any]:
    aud, iss = f"{EXCHANGE_ID}/mail.contoso.com@{realm}", f"{SFB_ID}@{realm}"
    return g.user_context(aud, iss, user, actor, nbf, exp)


class SfbTokens:
    """One SfB actor (24 h, `sfb` key) and an outer user-context token (8 h) per user."""

    def __init__(
        self,
        sc: Scenario,
        *,
        realm: str = REALM,
        nbf: int = T_HY_S - SKEW,
        tamper: bool = False,
        note: str = "",
        users: tuple[str, ...] = tuple(USERS),
        outer_times: tuple[int, int] | None = None,
    ) -> None:
        ks = sc.keys["sfb"]
        actor = g.mint_rs256(sfb_actor(realm, nbf, nbf + 86400), ks)
        if tamper:
            # The payload is changed after signing: the actor now also claims a 30-day life.
            actor = g.tamper(actor, exp=str(nbf + 30 * 86400))
        self.actor = sc.token(
            actor,
            "actor",
            ks,
            tampered=tamper,
            note=f"SfB actor token{note}" + (" (payload altered after signing)" if tamper else ""),
        )
        self.outers = {}
        for i, (who, user) in enumerate(USERS.items()):
            if who not in users:
                continue
            o_nbf, o_exp = outer_times or (nbf + i, min(nbf + i + 8 * 3600, nbf + 86400))
            claims = sfb_outer(realm, user, self.actor, o_nbf, o_exp)
            self.outers[who] = sc.token(
                g.mint_unsigned(claims), "outer", None, note=f"SfB user context for {who}{note}"
            )


def ews_ok(sc: Scenario, t: int, label: str, create: bool) -> g.Response:
    answer = g.create_item_response(label) if create else g.get_folder_response(label)
    crid = ("client-request-id", g.det_guid("crid/" + label))
    return g.Response(200, "OK", sc.lab.ex_headers(t, label, extra=[crid]), answer)


def ews_body(who: str, create: bool) -> bytes:
    upn = USERS[who]["upn"]
    return g.create_item(upn, "Alice Johnson") if create else g.get_folder(upn)


def ews_denied(
    sc: Scenario, t: int, label: str, diag: str | None, trusted: str, basic: bool = False
) -> g.Response:
    extra: list[g.HeaderItem] = []
    if diag:
        extra.append(("x-ms-diagnostics", diag))
    extra += [g.exchange_bearer(trusted, error=diag is not None), NEG, NTLM]
    if basic:
        extra.append(g.challenge("Basic", [("realm", "mail.contoso.com", True)]))
    return g.Response(401, "Unauthorized", sc.lab.ex_headers(t, label, None, extra=extra))


def sfb_probe(
    sc: Scenario, c: g.Conn, t: int, label: str, trusted: str = TRUSTED_EX
) -> tuple[int, int]:
    req = sc.lab.ews_request(
        g.get_folder(g.ALICE["upn"]), g.authorization("Bearer", ""), g.ALICE["upn"], label
    )
    resp = ews_denied(sc, t, label, None, trusted)
    return sc.ex(c, t, req, resp, "S2S realm discovery (empty Bearer) -> 401 Bearer challenge")


def sfb_call(
    sc: Scenario,
    c: g.Conn,
    t: int,
    who: str,
    create: bool,
    label: str,
    token: str,
    kinds: list[str] | None = None,
    resp: g.Response | None = None,
    note: str = "",
) -> tuple[int, int]:
    req = sc.lab.ews_request(
        ews_body(who, create), g.authorization("Bearer", token), USERS[who]["upn"], label
    )
    what = "CreateItem" if create else "GetFolder"
    resp = resp or ews_ok(sc, t, label, create)
    text = note or f"S2S {who} {what} -> {resp.status}"
    return sc.ex(c, t, req, resp, text, kinds, think=19 * MS)


CALLS_1 = (("alice", False, "h1"), ("alice", True, "h2"), ("bob", False, "h3"))
CALLS_2 = (("bob", True, "h4"), ("carol", False, "h5"), ("carol", True, "h6"))


def sfb_metadata_part(sc: Scenario, t0: int) -> None:
    """Exchange fetches SfB's auth metadata, so the SfB actor signatures verify from the capture."""
    c = sc.link(EXCHANGE_IP, 27901, SFB_IP)
    t = c.open(t0)
    req = g.Request(
        "GET", "/metadata/json/1", [("Host", "sfbpool01.contoso.com"), ("Connection", "Keep-Alive")]
    )
    resp = g.Response(
        200,
        "OK",
        [
            ("Cache-Control", "no-cache"),
            ("Content-Type", "application/json; charset=utf-8"),
            ("Server", "Microsoft-IIS/10.0"),
            ("X-MS-Server-Fqdn", "sfbfe01.contoso.com"),
            ("X-Content-Type-Options", "nosniff"),
            ("X-Powered-By", "ASP.NET"),
            ("Date", g.http_date(t + 4 * MS)),
            ("Content-Length", "{len}"),
        ],
        g.json_bytes(g.sfb_metadata(sc.keys["sfb"])),
    )
    t, _ = sc.ex(c, t + 200 * US, req, resp, "Exchange fetches SfB's auth metadata")
    c.close(C, t + 30 * MS)
    sc.facts.setdefault("metadata_documents", []).append(
        {
            "url": "http://sfbpool01.contoso.com/metadata/json/1",
            "status": 200,
            "issuer": SFB_ISS,
            "x5t": [sc.keys["sfb"].x5t],
            "cert_file": sc.keys["sfb"].cert_file,
        }
    )


def acs_metadata(key: g.TestKey, tenant: str) -> dict[str, Any]:
    """ACS's per-tenant metadata document (property casing as ACS writes it, microsoft-s2s.md
    5.2: keyInfo / keyValue, several endpoints)."""
    base = f"https://{ACS_HOST}/{tenant}"
    return {
        "version": "1.0",
        "realm": tenant,
        "name": "Microsoft Azure ACS",
        "issuer": f"{ACS_ID}@{tenant}",
        "allowedAudiences": [f"{ACS_ID}@{tenant}"],
        "keys": [
            {
                "usage": "signing",
                "keyInfo": {"x5t": key.x5t},
                "keyValue": {"type": "x509Certificate", "value": g.b64(key.der)},
            }
        ],
        "endpoints": [
            {"location": f"{base}/tokens/OAuth/2", "protocol": "OAuth2", "usage": "issuance"},
            {
                "location": f"{base}/tokens/delegation/1",
                "protocol": "DelegationIssuance1.0",
                "usage": "issuance",
            },
            {
                "location": f"{base}/mgmt/delegation/1",
                "protocol": "DelegationManagement1.0",
                "usage": "management",
            },
        ],
    }


def acs_headers(t: int, label: str) -> list[g.HeaderItem]:
    return [
        ("Cache-Control", "no-cache, no-store"),
        ("Pragma", "no-cache"),
        ("Content-Type", "application/json; charset=utf-8"),
        ("Expires", "-1"),
        ("Server", "Microsoft-IIS/10.0"),
        ("x-ms-request-id", g.det_guid("acs/" + label)),
        ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
        ("X-Content-Type-Options", "nosniff"),
        ("Date", g.http_date(t)),
        ("Content-Length", "{len}"),
    ]


def exo_headers(t: int, label: str, status: int = 200) -> list[g.HeaderItem]:
    out: list[g.HeaderItem] = [("Cache-Control", "private")]
    if status == 200:
        out.append(("Content-Type", "text/xml; charset=utf-8"))
    out += [
        ("Server", "Microsoft-IIS/10.0"),
        ("request-id", g.det_guid("exo-rid/" + label)),
        ("X-CalculatedBETarget", "BY5PR13MB3960.namprd13.prod.outlook.com"),
        ("X-BackEndHttpStatus", str(status)),
        ("X-DiagInfo", "BY5PR13MB3960"),
        ("X-BEServer", "BY5PR13MB3960"),
        ("X-FEServer", "BL1PR13CA0123"),
        ("Date", g.http_date(t)),
        ("Content-Length", "{len}"),
    ]
    return out


def get_user_settings(smtp: str) -> bytes:
    a = "http://schemas.microsoft.com/exchange/2010/Autodiscover"
    return (
        '<?xml version="1.0" encoding="utf-8"?><soap:Envelope '
        f'xmlns:a="{a}" xmlns:wsa="http://www.w3.org/2005/08/addressing" '
        'xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Header>'
        "<a:RequestedServerVersion>Exchange2013</a:RequestedServerVersion>"
        f"<wsa:Action>{a}/Autodiscover/GetUserSettings</wsa:Action>"
        f"<wsa:To>https://{EXO_HOST}/autodiscover/autodiscover.svc</wsa:To></soap:Header>"
        "<soap:Body><a:GetUserSettingsRequestMessage><a:Request><a:Users><a:User>"
        f"<a:Mailbox>{smtp}</a:Mailbox></a:User></a:Users><a:RequestedSettings>"
        "<a:Setting>ExternalEwsUrl</a:Setting><a:Setting>InternalEwsUrl</a:Setting>"
        "</a:RequestedSettings></a:Request></a:GetUserSettingsRequestMessage></soap:Body>"
        "</soap:Envelope>"
    ).encode()


def get_user_settings_response(smtp: str) -> bytes:
    a = "http://schemas.microsoft.com/exchange/2010/Autodiscover"
    return (
        '<?xml version="1.0" encoding="utf-8"?><s:Envelope '
        'xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        f'xmlns:a="http://www.w3.org/2005/08/addressing"><s:Header><a:Action>{a}/Autodiscover/'
        "GetUserSettingsResponse</a:Action></s:Header><s:Body><GetUserSettingsResponseMessage "
        f'xmlns="{a}"><Response><ErrorCode>NoError</ErrorCode><UserResponses><UserResponse>'
        "<ErrorCode>NoError</ErrorCode><UserSettings><UserSetting><Name>ExternalEwsUrl</Name>"
        "<Value>https://outlook.office365.com/EWS/Exchange.asmx</Value></UserSetting>"
        "</UserSettings></UserResponse></UserResponses></Response>"
        f"</GetUserSettingsResponseMessage></s:Body></s:Envelope><!-- {smtp} -->"
    ).encode()


def exo_request(auth: g.AuthHeader, label: str, smtp: str) -> g.Request:
    return g.Request(
        "POST",
        "/autodiscover/autodiscover.svc",
        [
            ("Content-Type", "text/xml; charset=utf-8"),
            (
                "SOAPAction",
                '"http://schemas.microsoft.com/exchange/2010/Autodiscover/Autodiscover/'
                'GetUserSettings"',
            ),
            ("User-Agent", EXO_UA),
            ("client-request-id", g.det_guid("crid/" + label)),
            ("return-client-request-id", "true"),
            auth,
            ("Host", EXO_HOST),
            ("Content-Length", "{len}"),
            ("Connection", "Keep-Alive"),
        ],
        get_user_settings(smtp),
    )


def hybrid_part(sc: Scenario, t0: int, tenant: str = TENANT) -> None:
    """Exchange on-premises -> Exchange Online autodiscover with an ACS-issued actor.

    ``tenant``: the tenant Exchange asks ACS for (TENANT when healthy)."""
    ka, kx = sc.keys["acs"], sc.keys["exchange"]
    wrong = tenant != TENANT
    fault = " (issued for another tenant)" if wrong else ""
    # 1. ACS metadata: the key that verifies ACS-issued actors, fetched in the capture.
    c = sc.link(EXCHANGE_IP, 27911, ACS_IP)
    t = c.open(t0, rtt=9 * MS)
    req = g.Request(
        "GET",
        f"/{TENANT}/metadata/json/1",
        [("Host", ACS_HOST), ("Connection", "Keep-Alive")],
    )
    doc = acs_metadata(ka, TENANT)
    resp = g.Response(200, "OK", acs_headers(t, "acs-meta"), g.json_bytes(doc))
    t, _ = sc.ex(c, t + 200 * US, req, resp, "Exchange fetches ACS's metadata", think=30 * MS)
    c.close(C, t + 20 * MS)
    sc.facts.setdefault("metadata_documents", []).append(
        {
            "url": f"http://{ACS_HOST}/{TENANT}/metadata/json/1",
            "status": 200,
            "issuer": f"{ACS_ID}@{TENANT}",
            "x5t": [ka.x5t],
            "cert_file": ka.cert_file,
        }
    )
    # 2. realm discovery at Exchange Online.
    exo = sc.link(EXCHANGE_IP, 27912, EXO_IP)
    te = exo.open(t0 + 400 * MS, rtt=11 * MS)
    exo_bearer = g.challenge(
        "Bearer",
        [
            ("client_id", EXCHANGE_ID, True),
            ("trusted_issuers", f"{ACS_ID}@*", True),
            ("token_types", "app_asserted_user_v1 service_asserted_app_v1", True),
            ("authorization_uri", "https://login.windows.net/common/oauth2/authorize", True),
        ],
    )
    basic_empty = g.challenge("Basic", [("Realm", "", True)])
    req = exo_request(g.authorization("Bearer", ""), "exo-probe", g.ALICE["upn"])
    resp = g.Response(401, "Unauthorized", exo_headers(te, "exo-probe", 401), b"")
    resp.headers[-2:-2] = [exo_bearer, basic_empty]
    te, e_probe = sc.ex(exo, te + 200 * US, req, resp, "EXO realm discovery (empty Bearer) -> 401")
    # 3. the ACS token endpoint: jwt-bearer grant -> ACS-signed actor for EXO.
    a_nbf = T_HY_S + 1
    exo_resource = f"{EXCHANGE_ID}/{EXO_HOST}@{tenant}"
    assertion = sc.token(
        g.mint_rs256(
            {
                "aud": f"{ACS_ID}/{ACS_HOST}@{tenant}",
                "iss": f"{EXCHANGE_ID}@{tenant}",
                "nbf": str(a_nbf),
                "exp": str(a_nbf + 600),
            },
            kx,
        ),
        "assertion",
        kx,
        note=f"Exchange's self-signed assertion to ACS (10 min){fault}",
    )
    acs_iss = f"{ACS_ID}@{tenant}"
    oid = g.det_guid("exchange-sp-oid/" + tenant)
    actor = sc.token(
        g.mint_rs256(
            {
                "aud": exo_resource,
                "iss": acs_iss,
                "iat": a_nbf,
                "nbf": a_nbf,
                "exp": a_nbf + 86400,
                "identityprovider": acs_iss,
                "nameid": f"{EXCHANGE_ID}@{tenant}",
                "oid": oid,
                "sub": oid,
                "trustedfordelegation": "true",
            },
            ka,
            kid=True,
        ),
        "actor",
        ka,
        note=f"ACS-issued actor token for Exchange Online (24 h){fault}",
    )
    c = sc.link(EXCHANGE_IP, 27913, ACS_IP)
    t = c.open(t0 + 700 * MS, rtt=9 * MS)
    req = g.Request(
        "POST",
        f"/{tenant}/tokens/OAuth/2",
        [
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("client-request-id", g.det_guid("crid/acs-token")),
            ("return-client-request-id", "true"),
            ("Host", ACS_HOST),
            ("Content-Length", "{len}"),
            ("Connection", "Keep-Alive"),
        ],
        form=[
            ("grant_type", "http://oauth.net/grant_type/jwt/1.0/bearer"),
            ("assertion", assertion),
            ("resource", exo_resource),
        ],
    )
    ok = {
        "token_type": "Bearer",
        "access_token": actor,
        "expires_in": "86399",
        "not_before": str(a_nbf),
        "expires_on": str(a_nbf + 86400),
        "resource": exo_resource,
    }
    resp = g.Response(200, "OK", acs_headers(t, "acs-token"), g.json_bytes(ok), json_body=ok)
    t, e_acs = sc.ex(
        c, t + 200 * US, req, resp, f"ACS jwt-bearer grant -> actor for EXO{fault}", think=60 * MS
    )
    c.close(C, t + 20 * MS)
    sc.facts["acs_token_request"] = {
        "url": f"http://{ACS_HOST}/{tenant}/tokens/OAuth/2",
        "grant_type": "http://oauth.net/grant_type/jwt/1.0/bearer",
        "resource": exo_resource,
        "status": 200,
        "access_token_fp": g.fp12(actor),
        "exchange": sc.ref(e_acs),
    }
    # 4. two autodiscover calls with unsigned outer tokens around the ACS actor.
    exo_aud = exo_resource
    calls = []
    for i, who in enumerate(("alice", "bob")):
        user = USERS[who]
        outer = sc.token(
            g.mint_unsigned(
                {
                    "aud": exo_aud,
                    "iss": f"{EXCHANGE_ID}@{tenant}",
                    "nbf": str(a_nbf + 1 + i),
                    "exp": str(a_nbf + 1 + i + 8 * 3600),
                    "upn": user["upn"],
                    "smtp": user["upn"],
                    "sip": user["upn"],
                    "actortoken": actor,
                }
            ),
            "outer",
            None,
            note=f"Exchange user context for {who} (to EXO){fault}",
        )
        label = f"exo-{who}"
        req = exo_request(g.authorization("Bearer", outer), label, user["upn"])
        resp = g.Response(
            200, "OK", exo_headers(te, label), get_user_settings_response(user["upn"])
        )
        start = max(te, t) + 300 * MS
        te, ev = sc.ex(
            exo,
            start,
            req,
            resp,
            f"EXO GetUserSettings for {who}{fault} -> 200",
            ["wrong-realm"] if wrong else None,
            think=35 * MS,
        )
        calls.append(ev)
    exo.close(C, te + 2 * SEC)
    sc.handshake("oauth", "accepted", [e_probe, *calls], "EXO realm discovery, then 2 calls")
    sc.pair(EXCHANGE_IP, EXO_IP, EXO_HOST, "oauth-only")


def healthy_sfb(
    sc: Scenario,
    t0: int,
    toks: SfbTokens,
    *,
    trusted: str = TRUSTED_EX,
    kinds: list[str] | None = None,
    second: bool = True,
) -> tuple[int, list[int]]:
    """SfB -> EWS: realm discovery and 3 calls on one connection, 3 calls on a second one.
    Returns (end, exchange indices)."""
    c = sc.link(SFB_IP, 52311, EXCHANGE_IP)
    t = c.open(t0)
    t, probe = sfb_probe(sc, c, t + 300 * US, "h-probe", trusted)
    first = [probe]
    for who, create, label in CALLS_1:
        t, ev = sfb_call(sc, c, t + 500 * MS, who, create, label, toks.outers[who], kinds)
        first.append(ev)
    t = c.close(C, t + SEC)
    sc.handshake(
        "oauth", "accepted", first, "realm discovery, then 3 calls on a keep-alive connection"
    )
    if not second:
        return t, first
    c = sc.link(SFB_IP, 52312, EXCHANGE_IP)
    t = c.open(t0 + 38 * SEC)
    more = []
    for who, create, label in CALLS_2:
        t, ev = sfb_call(sc, c, t + 300 * MS, who, create, label, toks.outers[who], kinds)
        more.append(ev)
    t = c.close(C, t + SEC)
    sc.handshake("oauth", "accepted", more, "3 more calls on a second connection")
    return t, first + more


def new(name: str, keys: dict[str, g.TestKey], fault: str | None, description: str) -> Scenario:
    sc = Scenario(name, description, fault, keys)
    sfb_metadata_part(sc, T_HY + 100 * MS)
    return sc


# ---------------------------------------------------------------------------------------------
# The scenarios
# ---------------------------------------------------------------------------------------------


def build_healthy(keys: dict[str, g.TestKey], name: str = "healthy") -> Scenario:
    sc = new(
        name,
        keys,
        None,
        "Hybrid Exchange + Skype for Business + Microsoft 365 on a good day: Exchange fetches "
        "SfB's and ACS's metadata; Exchange -> Exchange Online autodiscover with an ACS-issued "
        "actor (token endpoint call included); SfB -> Exchange EWS with SfB-signed S2S tokens "
        "(realm discovery, 6 calls, two keep-alive connections). Everything accepted.",
    )
    hybrid_part(sc, T_HY + SEC)
    healthy_sfb(sc, T_HY + 5 * SEC, SfbTokens(sc))
    sc.pair(SFB_IP, EXCHANGE_IP, "mail.contoso.com", "oauth-only")
    sc.expect(R1, "PASS", why="6 SfB-signed S2S calls, signatures verifiable from the metadata")
    sc.expect(R2, "PASS", why="2 calls with an ACS-signed actor, ACS metadata in the capture")
    return sc


def build_wrong_realm(keys: dict[str, g.TestKey]) -> Scenario:
    sc = new(
        "wrong-realm",
        keys,
        "SfB tokens minted for realm fabrikam.com (iss, nameid and aud end in @fabrikam.com), "
        "still signed by the sfb key; Exchange answers 200",
        "The healthy world, but the SfB pool's OAuth configuration names realm fabrikam.com: "
        "its 6 tokens (actor and outer) say ...@fabrikam.com and Exchange accepts them anyway.",
    )
    hybrid_part(sc, T_HY + SEC)
    kinds = ["wrong-realm", "untrusted-issuer"]
    healthy_sfb(sc, T_HY + 5 * SEC, SfbTokens(sc, realm="fabrikam.com"), kinds=kinds)
    sc.pair(SFB_IP, EXCHANGE_IP, "mail.contoso.com", "oauth-only")
    sc.expect(R1, "FAIL", why="6 calls with issuer 00000004-...@fabrikam.com, not @contoso.com")
    sc.expect(R2, "PASS")
    sc.facts["token_realm"] = "fabrikam.com"
    sc.facts["rule_realm"] = REALM
    sc.facts["note"] = (
        "untrusted-issuer is a secondary kind: the server's challenge trusts "
        f"{TRUSTED_EX}, which does not include 00000004-...@fabrikam.com"
    )
    return sc


def _faulty_second_call(
    sc: Scenario,
    t0: int,
    toks: SfbTokens,
    token: str,
    kinds: list[str],
    resp_fn: Any = None,
    note: str = "",
) -> tuple[int, list[int]]:
    """conn 1 healthy; on conn 2 the first call (bob CreateItem) presents ``token``, then the
    other two calls are healthy. Returns (end, [faulty exchange, later exchanges])."""
    healthy_sfb(sc, t0, toks, second=False)
    c = sc.link(SFB_IP, 52312, EXCHANGE_IP)
    t = c.open(t0 + 38 * SEC)
    who, create, label = CALLS_2[0]
    resp = resp_fn(t + 300 * MS, label) if resp_fn else None
    t, bad = sfb_call(sc, c, t + 300 * MS, who, create, label, token, kinds, resp, note)
    rest = []
    for who, create, label in CALLS_2[1:]:
        t, ev = sfb_call(sc, c, t + 300 * MS, who, create, label, toks.outers[who])
        rest.append(ev)
    t = c.close(C, t + SEC)
    status = sc.xs[bad]["status"]
    if status == 200:
        sc.handshake("oauth", "accepted", [bad, *rest], "faulty token accepted, then 2 more calls")
    else:
        sc.handshake("oauth", "rejected", [bad], "faulty token rejected")
        sc.handshake("oauth", "accepted", rest, "2 more calls with good tokens")
    return t, [bad, *rest]


def build_unsigned(keys: dict[str, g.TestKey]) -> Scenario:
    sc = new(
        "unsigned",
        keys,
        "one SfB call presents an alg:none token without actortoken (app-only claims); 200",
        "The healthy world, but the first call on the SfB pool's second connection carries an "
        "unsigned token with no actor token, and Exchange accepts it.",
    )
    hybrid_part(sc, T_HY + SEC)
    toks = SfbTokens(sc)
    nbf = T_HY_S - SKEW
    forged = sc.token(
        g.mint_unsigned(
            {
                "aud": EX_AUD,
                "iss": SFB_ISS,
                "nbf": str(nbf),
                "exp": str(nbf + 8 * 3600),
                "nameid": SFB_ISS,
                "trustedfordelegation": "true",
            }
        ),
        "bearer",
        None,
        note="alg none, no actortoken: nothing signs this token",
    )
    _faulty_second_call(sc, T_HY + 5 * SEC, toks, forged, ["unsigned"])
    sc.pair(SFB_IP, EXCHANGE_IP, "mail.contoso.com", "oauth-only")
    sc.expect(R1, "FAIL", why="1 call with an unsigned token (alg none, no actor)")
    sc.expect(R2, "PASS")
    return sc


def build_expired_accepted(keys: dict[str, g.TestKey]) -> Scenario:
    sc = new(
        "expired-accepted",
        keys,
        "one SfB call presents an outer + actor token whose exp passed 2 h earlier; 200",
        "The healthy world, but the first call on the SfB pool's second connection presents a "
        "token that expired 2 h before (actor 24 h and outer 8 h both ended), accepted.",
    )
    hybrid_part(sc, T_HY + SEC)
    toks = SfbTokens(sc)
    when = T_HY_S + 38  # the second connection opens at T + 43 s; exp is 2 h before that
    exp = when - 7200 + 5
    old = SfbTokens(
        sc,
        nbf=exp - 86400,
        note=" (expired 2 h before use)",
        users=("bob",),
        outer_times=(exp - 8 * 3600, exp),
    )
    token = old.outers["bob"]
    _, (bad, *_) = _faulty_second_call(sc, T_HY + 5 * SEC, toks, token, ["expired"])
    sc.pair(SFB_IP, EXCHANGE_IP, "mail.contoso.com", "oauth-only")
    sc.expect(R1, "FAIL", why="1 call with a token 2 h past its exp, accepted")
    sc.expect(R2, "PASS")
    ts = sc.xs[bad]["_ts_ns"] / SEC
    sc.facts["expired_use"] = {
        "exchange": sc.ref(bad),
        "outer_exp": exp,
        "actor_exp": exp,
        "seconds_after_exp": round(ts - exp, 6),
    }
    return sc


def build_not_yet_valid(keys: dict[str, g.TestKey]) -> Scenario:
    diag = '2000002;reason="The token is not yet valid.";error_category="token_expired"'
    sc = new(
        "not-yet-valid",
        keys,
        "one SfB call presents a token whose nbf is 1 h in the future (sender's clock 1 h "
        f"fast); 401 with x-ms-diagnostics: {diag}",
        "The healthy world, but the first call on the SfB pool's second connection presents a "
        "token that is not valid for another hour; Exchange rejects it (401, x-ms-diagnostics "
        "lifetime category); the next two calls succeed with good tokens.",
    )
    hybrid_part(sc, T_HY + SEC)
    toks = SfbTokens(sc)
    nbf = T_HY_S + 43 + 3600
    early = SfbTokens(sc, nbf=nbf, note=" (nbf 1 h after use)", users=("bob",))

    def denied(t: int, label: str) -> g.Response:
        return ews_denied(sc, t, label, diag, TRUSTED_EX)

    _, (bad, *_) = _faulty_second_call(
        sc,
        T_HY + 5 * SEC,
        toks,
        early.outers["bob"],
        ["not-yet-valid", "rejected"],
        denied,
        "S2S bob CreateItem with a token valid only in 1 h -> 401 (not yet valid)",
    )
    sc.pair(SFB_IP, EXCHANGE_IP, "mail.contoso.com", "oauth-only")
    sc.expect(
        R1,
        "FAIL",
        why="1 call rejected because its token is not yet valid (nbf 1 h ahead), not merely 401",
    )
    sc.expect(R2, "PASS")
    ts = sc.xs[bad]["_ts_ns"] / SEC
    sc.facts["not_yet_valid"] = {
        "exchange": sc.ref(bad),
        "nbf": nbf,
        "seconds_before_nbf": round(nbf - ts, 6),
        "x_ms_diagnostics": diag,
        "diag_code": 2000002,
        "diag_category": "token_expired",
        "reason_text": "The token is not yet valid.",
        "explain_as": "not yet valid",
        "why_this_code": "Exchange maps lifetime errors (internal codes 3xxx) to category "
        "2000002 token_expired (microsoft-s2s.md 6.1, thousands-digit rule); the reason text "
        "is invented. The verdict must say 'not yet valid' (the token's nbf is 1 h after the "
        "request), not 'expired' and not just '401'.",
    }
    return sc


def build_untrusted_issuer(keys: dict[str, g.TestKey]) -> Scenario:
    sc = new(
        "untrusted-issuer",
        keys,
        "Exchange's Bearer challenge lists only 00000001-...@* in trusted_issuers, yet it "
        "accepts the SfB tokens (00000004-...@contoso.com) with 200",
        "The healthy world, but Exchange's realm-discovery challenge trusts only ACS; the SfB "
        "pool's tokens come from an issuer the server says it does not trust, and are accepted.",
    )
    hybrid_part(sc, T_HY + SEC)
    trusted = f"{ACS_ID}@*"
    _, idx = healthy_sfb(
        sc, T_HY + 5 * SEC, SfbTokens(sc), trusted=trusted, kinds=["untrusted-issuer"]
    )
    sc.pair(SFB_IP, EXCHANGE_IP, "mail.contoso.com", "oauth-only")
    sc.expect(R1, "FAIL", why="6 calls from an issuer missing from the server's trusted_issuers")
    sc.expect(R2, "PASS")
    sc.facts["challenge"] = {
        "exchange": sc.ref(idx[0]),
        "trusted_issuers": [trusted],
        "token_issuer": SFB_ISS,
    }
    return sc


def build_bad_signature(keys: dict[str, g.TestKey]) -> Scenario:
    sc = new(
        "bad-signature",
        keys,
        "the SfB actor token's payload was altered after signing (exp pushed out 30 days); "
        "every call carries it and Exchange answers 200",
        "The healthy world, but the one SfB actor token inside every outer token has a payload "
        "changed after signing; the signature no longer verifies against the sfb certificate "
        "fetched in the capture, and Exchange accepts all 6 calls.",
    )
    hybrid_part(sc, T_HY + SEC)
    healthy_sfb(sc, T_HY + 5 * SEC, SfbTokens(sc, tamper=True), kinds=["bad-signature"])
    sc.pair(SFB_IP, EXCHANGE_IP, "mail.contoso.com", "oauth-only")
    sc.expect(R1, "FAIL", why="6 calls whose actor signature does not verify (payload altered)")
    sc.expect(R2, "PASS")
    return sc


def ntlm_fallback(
    sc: Scenario, c: g.Conn, t: int, label: str, straight: bool = False
) -> tuple[int, list[int]]:
    """NTLM type 1 -> 401 type 2; type 3 (CONTOSO\\svc-sfb, NTLMv2 + MIC) -> 200."""
    type1 = g.ntlm_negotiate()
    type2 = g.ntlm_challenge(g.prng(f"{sc.name}/{label}/challenge", 8), g.ntlm_target_info(T_HY_S))
    auth = g.NtlmAuth(
        "CONTOSO",
        "svc-sfb",
        SFB_PASSWORD,
        "SFBPOOL01",
        "HTTP/mail.contoso.com",
        g.prng(f"{sc.name}/{label}/client-challenge", 8),
        g.prng(f"{sc.name}/{label}/session-key", 16),
    )
    type3 = g.ntlm_authenticate(auth, type1, type2)
    upn = g.BOB["upn"]
    body = ews_body("bob", True)
    req = sc.lab.ews_request(
        body,
        g.authorization("NTLM", g.b64(type1), mechanism="ntlm", extra={"ntlm_message": 1}),
        upn,
        label + "-1",
    )
    resp = g.Response(
        401,
        "Unauthorized",
        sc.lab.ex_headers(t, label + "-1", None, extra=[g.challenge("NTLM", token68=g.b64(type2))]),
    )
    how = "straight to NTLM" if straight else "NTLM fallback"
    t, e1 = sc.ex(c, t, req, resp, f"{how}: type 1 -> 401 type 2", ["not-oauth"])
    ident = {"ntlm_user": "svc-sfb", "ntlm_domain": "CONTOSO", "workstation": "SFBPOOL01"}
    req = sc.lab.ews_request(
        body,
        g.authorization("NTLM", g.b64(type3), mechanism="ntlm", extra={"ntlm_message": 3, **ident}),
        upn,
        label + "-3",
    )
    resp = ews_ok(sc, t, label + "-3", True)
    resp.headers.insert(-2, ("Persistent-Auth", "true"))
    t, e3 = sc.ex(
        c,
        t + 2 * MS,
        req,
        resp,
        f"{how}: type 3 (CONTOSO\\svc-sfb) -> 200",
        ["not-oauth"],
        think=18 * MS,
    )
    return t, [e1, e3]


def kerberos_fallback(sc: Scenario, c: g.Conn, t: int, label: str) -> tuple[int, int]:
    ap_req = g.kerberos_ap_req("CONTOSO.COM", "HTTP", "mail.contoso.com", f"{sc.name}/{label}")
    cred = g.authorization(
        "Negotiate",
        g.b64(g.spnego_init_krb5(ap_req)),
        mechanism="kerberos",
        extra={"krb_realm": "CONTOSO.COM", "krb_sname": "HTTP/mail.contoso.com"},
    )
    req = sc.lab.ews_request(ews_body("bob", True), cred, g.BOB["upn"], label)
    resp = ews_ok(sc, t, label, True)
    rep = g.challenge("Negotiate", token68=g.b64(g.spnego_resp_krb5(f"{sc.name}/{label}/aprep")))
    resp.headers[-2:-2] = [rep, ("Persistent-Auth", "true")]
    return sc.ex(c, t, req, resp, "Negotiate/Kerberos AP-REQ -> 200", ["not-oauth"], think=21 * MS)


def basic_fallback(sc: Scenario, c: g.Conn, t: int, label: str) -> tuple[int, int]:
    cred = g.basic("CONTOSO\\svc-sfb", SFB_PASSWORD)
    req = sc.lab.ews_request(ews_body("bob", True), cred, g.BOB["upn"], label)
    resp = ews_ok(sc, t, label, True)
    return sc.ex(c, t, req, resp, "Basic CONTOSO\\svc-sfb -> 200", ["not-oauth"], think=17 * MS)


EXPIRED_DIAG = '2000002;reason="The token has expired.";error_category="token_expired"'


def expired_tokens(sc: Scenario) -> SfbTokens:
    """Tokens whose 24 h actor ran out 10 min before the capture (outer capped at it)."""
    return SfbTokens(sc, nbf=T_HY_S - 86400 - 600, note=" (expired)", users=("bob",))


def rejected_call(
    sc: Scenario,
    c: g.Conn,
    t: int,
    token: str,
    label: str,
    basic: bool = False,
) -> tuple[int, int]:
    resp = ews_denied(sc, t, label, EXPIRED_DIAG, TRUSTED_EX, basic)
    return sfb_call(
        sc,
        c,
        t,
        "bob",
        True,
        label,
        token,
        ["rejected", "expired"],
        resp,
        "S2S bob CreateItem with an expired token -> 401 (2000002 token_expired)",
    )


def build_fallback_ntlm(keys: dict[str, g.TestKey]) -> Scenario:
    sc = new(
        "fallback-ntlm",
        keys,
        "on the SfB pool's second connection an expired token is rejected (401, x-ms-diagnostics "
        "2000002 token_expired) and the client falls back to NTLM (3 legs), accepted",
        "The healthy world, but the SfB pool's second connection presents an expired token, is "
        "rejected, and falls back to a real NTLMv2 handshake (CONTOSO\\svc-sfb) that Exchange "
        "accepts.",
    )
    hybrid_part(sc, T_HY + SEC)
    toks = SfbTokens(sc)
    old = expired_tokens(sc)
    healthy_sfb(sc, T_HY + 5 * SEC, toks, second=False)
    c = sc.link(SFB_IP, 52312, EXCHANGE_IP)
    t = c.open(T_HY + 43 * SEC)
    t, bad = rejected_call(sc, c, t + 300 * MS, old.outers["bob"], "h4")
    t, legs = ntlm_fallback(sc, c, t + 2 * MS, "ntlm")
    c.close(C, t + SEC)
    sc.handshake("oauth", "rejected", [bad], "expired token rejected (2000002)")
    sc.handshake("ntlm", "accepted", legs, "NTLMv2 fallback, 3 legs")
    sc.pair(SFB_IP, EXCHANGE_IP, "mail.contoso.com", "oauth-with-fallback")
    sc.expect(R1, "FAIL", why="OAuth rejected (2000002 token_expired), then NTLM accepted")
    sc.expect(R2, "PASS")
    sc.facts["fallback"] = {
        "rejected_exchange": sc.ref(bad),
        "diag_code": 2000002,
        "diag_category": "token_expired",
        "to_class": "ntlm",
        "ntlm_user": "CONTOSO\\svc-sfb",
        "workstation": "SFBPOOL01",
        "fallback_exchanges": sc.refs(legs),
    }
    return sc


def build_oauth_rejected(keys: dict[str, g.TestKey]) -> Scenario:
    sc = new(
        "oauth-rejected",
        keys,
        "every EWS call of the SfB pool presents an expired token and is rejected (401, "
        "x-ms-diagnostics 2000002 token_expired); the client never falls back",
        "The EXO part is healthy, but the SfB pool's tokens are expired: realm discovery, then "
        "3 calls on 3 connections, each refused with 2000002 token_expired, and no other scheme "
        "tried.",
    )
    hybrid_part(sc, T_HY + SEC)
    old = expired_tokens(sc)
    for i in range(3):
        c = sc.link(SFB_IP, 52311 + i, EXCHANGE_IP)
        t = c.open(T_HY + (5 + 20 * i) * SEC)
        t, bad = rejected_call(sc, c, t + 300 * US, old.outers["bob"], f"r{i}")
        c.close(C, t + SEC)
        sc.handshake("oauth", "rejected", [bad], "expired token rejected (2000002)")
    sc.pair(SFB_IP, EXCHANGE_IP, "mail.contoso.com", "oauth-rejected")
    sc.expect(R1, "FAIL", why="3 OAuth calls rejected (2000002 token_expired), nothing accepted")
    sc.expect(R2, "PASS")
    return sc


def build_fallback_mixed(keys: dict[str, g.TestKey]) -> Scenario:
    sc = new(
        "fallback-mixed",
        keys,
        "after OAuth rejections the SfB pool authenticates with Kerberos on 5 connections, NTLM "
        "on 4 (one of them straight to NTLM, no OAuth first) and Basic on 3, all accepted",
        "The healthy world's first SfB connection (probe + 3 accepted calls), then 12 "
        "connections: on 11 an expired token is rejected (401 2000002, challenge offering "
        "Bearer, Negotiate, NTLM and Basic) and the client falls back on the same connection "
        "(Kerberos 5, NTLM 3, Basic 3); one connection goes straight to NTLM.",
    )
    hybrid_part(sc, T_HY + SEC)
    toks = SfbTokens(sc)
    old = expired_tokens(sc)
    healthy_sfb(sc, T_HY + 5 * SEC, toks, second=False)
    plan = ["kerberos", "ntlm", "basic"] * 3 + ["kerberos", "kerberos", "ntlm*"]
    rejected, straight = [], None
    by_class: Counter[str] = Counter()
    for i, what in enumerate(plan):
        port = 52320 + i
        c = sc.link(SFB_IP, port, EXCHANGE_IP)
        t = c.open(T_HY + (43 + 7 * i) * SEC)
        label = f"fb{i}"
        if what == "ntlm*":
            t, legs = ntlm_fallback(sc, c, t + 300 * US, label, straight=True)
            sc.handshake("ntlm", "accepted", legs, "straight to NTLM, no OAuth on this connection")
            straight = f"{SFB_IP}:{port}"
            by_class["ntlm"] += 1
            c.close(C, t + SEC)
            continue
        t, bad = rejected_call(sc, c, t + 300 * US, old.outers["bob"], label, basic=True)
        sc.handshake("oauth", "rejected", [bad], "expired token rejected (2000002)")
        rejected.append(bad)
        if what == "kerberos":
            t, ev = kerberos_fallback(sc, c, t + 2 * MS, label + "-krb")
            sc.handshake("kerberos", "accepted", [ev], "Kerberos fallback")
        elif what == "ntlm":
            t, legs = ntlm_fallback(sc, c, t + 2 * MS, label + "-ntlm")
            sc.handshake("ntlm", "accepted", legs, "NTLM fallback, 3 legs")
        else:
            t, ev = basic_fallback(sc, c, t + 2 * MS, label + "-basic")
            sc.handshake("basic", "accepted", [ev], "Basic fallback")
        by_class[what] += 1
        c.close(C, t + SEC)
    assert by_class == Counter(kerberos=5, ntlm=4, basic=3)
    sc.pair(SFB_IP, EXCHANGE_IP, "mail.contoso.com", "oauth-with-fallback")
    sc.expect(
        R1,
        "FAIL",
        why="OAuth rejected 11 times; fallbacks by handshake: 5 kerberos, 4 ntlm, 3 basic",
    )
    sc.expect(R2, "PASS")
    sc.facts["fallback"] = {
        "rejected_oauth_handshakes": len(rejected),
        "diag_code": 2000002,
        "diag_category": "token_expired",
        "fallback_handshakes_by_class": {"kerberos": 5, "ntlm": 4, "basic": 3},
        "text_must_list": ["5 kerberos", "4 ntlm", "3 basic"],
        "straight_to_ntlm_connection": straight,
        "note": "the verdict text must name every fallback scheme with its handshake count, "
        "not one scheme; NTLM counts once per 3-leg handshake",
    }
    return sc


def build_ntlm_legs(keys: dict[str, g.TestKey]) -> Scenario:
    sc = new(
        "ntlm-legs",
        keys,
        "the SfB pool makes 20 OAuth handshakes and 20 NTLM 3-leg handshakes to Exchange EWS",
        "Exchange fetches SfB's metadata and the EXO part is healthy; the SfB pool opens 40 "
        "connections to EWS, alternating: OAuth (the first with the empty-Bearer probe) with one "
        "accepted call each, and NTLM type 1 -> 401 type 2 -> type 3 -> 200.",
    )
    hybrid_part(sc, T_HY + SEC)
    toks = SfbTokens(sc)
    who_cycle = list(USERS)
    for i in range(20):
        c = sc.link(SFB_IP, 52400 + 2 * i, EXCHANGE_IP)
        t = c.open(T_HY + (5 + 3 * i) * SEC)
        legs = []
        if i == 0:
            t, probe = sfb_probe(sc, c, t + 300 * US, "nl-probe")
            legs.append(probe)
        who = who_cycle[i % 3]
        t, ev = sfb_call(sc, c, t + 300 * MS, who, False, f"nl-oauth{i}", toks.outers[who])
        legs.append(ev)
        c.close(C, t + 200 * MS)
        sc.handshake("oauth", "accepted", legs, "one S2S call" + (" after the probe" if i else ""))
        c = sc.link(SFB_IP, 52401 + 2 * i, EXCHANGE_IP)
        t = c.open(T_HY + (6 + 3 * i) * SEC)
        t, nl = ntlm_fallback(sc, c, t + 300 * US, f"nl-ntlm{i}", straight=True)
        c.close(C, t + 200 * MS)
        sc.handshake("ntlm", "accepted", nl, "NTLM 3-leg handshake")
    sc.pair(SFB_IP, EXCHANGE_IP, "mail.contoso.com", "mixed")
    sc.expect(R1, "FAIL", why="20 NTLM handshakes (40 NTLM legs) next to 20 OAuth handshakes")
    sc.expect(R2, "PASS")
    probe = next(i for i, x in enumerate(sc.xs) if x["cred_len"] == 0 and x["scheme"] == "bearer")
    type1 = [i for i, x in enumerate(sc.xs) if x["ntlm_message"] == 1]
    sc.facts["handshake_counts"] = {"oauth": 20, "ntlm": 20}
    sc.facts["ntlm_exchanges"] = 40
    sc.facts["challenged_events"] = {
        "probe": sc.ref(probe),
        "ntlm_type1": sc.refs(type1),
        "note": "the empty-Bearer probe and every NTLM type-1 leg were answered 401: their "
        "event_outcome is challenged, not accepted",
    }
    return sc


def server_hello(label: str, session_id: bytes) -> bytes:
    ext = struct.pack(">HHH", 43, 2, 0x0304)
    share = struct.pack(">HH", 0x1D, 32) + g.prng(f"{label}/server-share", 32)
    ext += struct.pack(">HH", 51, len(share)) + share
    body = (
        b"\x03\x03"
        + g.prng(f"{label}/server-random", 32)
        + bytes([len(session_id)])
        + session_id
        + b"\x13\x02\x00"
        + struct.pack(">H", len(ext))
        + ext
    )
    hs = b"\x02" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x03" + struct.pack(">H", len(hs)) + hs


def app_data(label: str, n: int) -> bytes:
    """TLS 1.3 application-data records (opaque bytes) totalling ``n`` bytes of payload."""
    out, i = b"", 0
    while n > 0:
        size = min(n, 4096)
        out += b"\x17\x03\x03" + struct.pack(">H", size) + g.prng(f"{label}/{i}", size)
        n -= size
        i += 1
    return out


def build_tls_blind(keys: dict[str, g.TestKey]) -> Scenario:
    sc = build_healthy(keys, "tls-blind")
    sc.fault = (
        "3 TLS connections 10.1.0.20 -> 10.1.0.10:443 (SNI mail.contoso.com) that cannot be "
        "decrypted: in scope of rule 1 but not inspected"
    )
    sc.cap.description = (
        "The healthy world plus 3 TLS 1.3 connections from the SfB pool to Exchange on port 443 "
        "(ClientHello with SNI mail.contoso.com, ServerHello, encrypted records); no keys."
    )
    conns = []
    for i in range(3):
        port = 52500 + i
        label = f"tls-blind/{i}"
        c = sc.link(SFB_IP, port, EXCHANGE_IP, 443)
        t = c.open(T_HY + (60 + 5 * i) * SEC)
        order = len(sc.cap.frames)  # the ClientHello's record
        hello = g.tls_client_hello("mail.contoso.com")
        hello = hello[:11] + g.prng(f"{label}/client-random", 32) + hello[43:]
        session_id = hello[44:76]
        t, t_last = c.send(C, t + 200 * US, hello)
        flight = server_hello(label, session_id) + b"\x14\x03\x03\x00\x01\x01"
        flight += app_data(label + "/server-flight", 2850)
        _, t_last = c.send(S, t_last + 2 * MS, flight)
        fin = b"\x14\x03\x03\x00\x01\x01" + app_data(label + "/client-finished", 53)
        _, t_last = c.send(C, t_last + 3 * MS, fin + app_data(label + "/request", 3900))
        _, t_last = c.send(S, t_last + 25 * MS, app_data(label + "/response", 1800))
        c.close(C, t_last + 2 * SEC)
        conns.append(
            {
                "client": f"{SFB_IP}:{port}",
                "server": f"{EXCHANGE_IP}:443",
                "sni": "mail.contoso.com",
                "_order": order,
                "tls_version": "1.3",
                "decryptable": False,
                "in_scope_of": [R1],
            }
        )
    sc.facts["tls_connections"] = conns
    sc.facts["tls_summary"] = {
        "count": 3,
        "server": f"{EXCHANGE_IP}:443",
        "sni": "mail.contoso.com",
        "client": SFB_IP,
    }
    sc.expect(
        R1,
        "INCONCLUSIVE",
        "PASS",
        "3 TLS connections to mail.contoso.com:443 (SNI) from the rule's client were not "
        "inspected; the 6 readable calls comply (PASS with --partial)",
    )
    return sc


def build_cut(keys: dict[str, g.TestKey]) -> Scenario:
    sc = build_healthy(keys, "cut")
    sc.fault = (
        "the file ends in the middle of the last pcap record: the last EWS request's head is "
        "lost mid-header (inside the Authorization value; Host never arrives)"
    )
    sc.cap.description = "The healthy world, cut like `head -c N` inside the last request."
    last = max(i for i, x in enumerate(sc.xs) if R1 in x["rules"])
    head = sc.xs[last]["_req"]
    at = head.index(b"Authorization: Bearer ") + len(b"Authorization: Bearer ") + 400
    assert at < 1460
    sc.cut_after, sc.cut_payload = sc.xs[last], at
    sc.expect(
        R1,
        "INCONCLUSIVE",
        "PASS",
        "the head of an in-scope request was lost in the cut (its credential is unknown); the "
        "5 readable calls comply (PASS with --partial); a damage warning either way",
    )
    return sc


def build_wrong_tenant_acs(keys: dict[str, g.TestKey]) -> Scenario:
    sc = new(
        "wrong-tenant-acs",
        keys,
        f"Exchange asks ACS for tenant {OTHER_TENANT}: the ACS actor (iss, nameid, aud) and the "
        "outer token name that tenant; Exchange Online answers 200",
        "The healthy world, but Exchange on-premises requests its ACS actor for another tenant; "
        "the autodiscover calls carry tokens issued by 00000001-...@" + OTHER_TENANT + ".",
    )
    hybrid_part(sc, T_HY + SEC, tenant=OTHER_TENANT)
    healthy_sfb(sc, T_HY + 5 * SEC, SfbTokens(sc))
    sc.pair(SFB_IP, EXCHANGE_IP, "mail.contoso.com", "oauth-only")
    sc.expect(R1, "PASS")
    sc.expect(R2, "FAIL", why=f"2 calls whose ACS actor was issued for tenant {OTHER_TENANT}")
    sc.facts["token_tenant"] = OTHER_TENANT
    sc.facts["rule_tenant"] = TENANT
    sc.facts["note"] = (
        "signature valid (the acs key signs for every tenant; the metadata fetched is the "
        "right tenant's); EXO trusts 00000001-...@* so untrusted-issuer does not apply"
    )
    return sc


def build_no_oauth(keys: dict[str, g.TestKey]) -> Scenario:
    sc = new(
        "no-oauth",
        keys,
        "the SfB pool authenticates to EWS with Kerberos only (no Bearer at all)",
        "Exchange fetches SfB's metadata and the EXO part is healthy, but the SfB pool calls EWS "
        "on 3 connections with Negotiate/Kerberos (AP-REQ for HTTP/mail.contoso.com) only.",
    )
    hybrid_part(sc, T_HY + SEC)
    for i in range(3):
        c = sc.link(SFB_IP, 52311 + i, EXCHANGE_IP)
        t = c.open(T_HY + (5 + 20 * i) * SEC)
        t, ev = kerberos_fallback(sc, c, t + 300 * US, f"krb{i}")
        sc.handshake("kerberos", "accepted", [ev], "Kerberos only")
        c.close(C, t + SEC)
    sc.pair(SFB_IP, EXCHANGE_IP, "mail.contoso.com", "no-oauth")
    sc.expect(R1, "FAIL", why="3 Kerberos handshakes, no OAuth at all")
    sc.expect(R2, "PASS")
    return sc


def build_unauthenticated(keys: dict[str, g.TestKey]) -> Scenario:
    sc = new(
        "unauthenticated",
        keys,
        "the SfB pool's EWS requests carry no credential; Exchange answers 401 offering Bearer, "
        "Negotiate and NTLM, and the client gives up",
        "Exchange fetches SfB's metadata and the EXO part is healthy; the SfB pool sends an "
        "anonymous EWS request on 2 connections, is challenged each time, and never sends a "
        "credential.",
    )
    hybrid_part(sc, T_HY + SEC)
    seen = []
    for i in range(2):
        c = sc.link(SFB_IP, 52311 + i, EXCHANGE_IP)
        t = c.open(T_HY + (5 + 30 * i) * SEC)
        label = f"anon{i}"
        req = sc.lab.ews_request(ews_body("alice", False), None, g.ALICE["upn"], label)
        resp = ews_denied(sc, t, label, None, TRUSTED_EX)
        t, ev = sc.ex(c, t + 300 * US, req, resp, "anonymous EWS request -> 401, no retry")
        sc.handshake("anonymous", "challenged", [ev], "challenged, no credential followed")
        c.close(C, t + 50 * MS)
        seen.append(ev)
    sc.pair(SFB_IP, EXCHANGE_IP, "mail.contoso.com", "unauthenticated")
    sc.expect(
        R1,
        "INCONCLUSIVE",
        why="nothing authenticated in scope: 2 anonymous EWS requests answered 401 offering "
        "bearer, negotiate, ntlm; no credential was ever sent",
    )
    sc.expect(R2, "PASS")
    sc.facts["challenged_requests"] = {
        "exchanges": sc.refs(seen),
        "status": 401,
        "offered": ["bearer", "negotiate", "ntlm"],
        "credentials_sent": 0,
    }
    return sc


def build_metadata_404(keys: dict[str, g.TestKey]) -> Scenario:
    sc = new(
        "metadata-404",
        keys,
        "the SfB pool fetches Exchange's metadata at /metadata/jason/1 (the guide's typo) 10 "
        "times, 404 each time, and never sends a token",
        "Exchange fetches SfB's metadata and the EXO part is healthy; the SfB pool, configured "
        "with http://mail.contoso.com/metadata/jason/1, retries it 10 times (30 s apart), always "
        "404, and no EWS call is ever made.",
    )
    hybrid_part(sc, T_HY + SEC)
    not_found = (
        b"<!DOCTYPE html><html><head><title>404 - File or directory not found.</title></head>"
        b"<body><h2>404 - File or directory not found.</h2></body></html>\r\n"
    )
    fetches = []
    for i in range(10):
        c = sc.link(SFB_IP, 52311 + i, EXCHANGE_IP)
        t = c.open(T_HY + (5 + 30 * i) * SEC)
        req = g.Request(
            "GET", "/metadata/jason/1", [("Host", "mail.contoso.com"), ("Connection", "Keep-Alive")]
        )
        resp = g.Response(
            404,
            "Not Found",
            [
                ("Content-Type", "text/html"),
                ("Server", "Microsoft-IIS/10.0"),
                ("X-Powered-By", "ASP.NET"),
                ("Date", g.http_date(t)),
                ("Content-Length", "{len}"),
            ],
            not_found,
        )
        t, ev = sc.ex(c, t + 200 * US, req, resp, f"metadata fetch {i + 1}/10 -> 404")
        c.close(C, t + 20 * MS)
        fetches.append(ev)
    sc.expect(
        R1,
        "INCONCLUSIVE",
        why="10 metadata fetches to /metadata/jason/1 failed with 404: no token was ever issued",
    )
    sc.expect(R2, "PASS")
    sc.facts["failed_metadata_fetches"] = {
        "url": "http://mail.contoso.com/metadata/jason/1",
        "path": "/metadata/jason/1",
        "client": SFB_IP,
        "server": f"{EXCHANGE_IP}:80",
        "count": 10,
        "status": 404,
        "exchanges": sc.refs(fetches),
        "tokens_sent_by_client": 0,
        "explanation": "10 metadata fetches to /metadata/jason/1 failed with 404: no token was "
        "ever issued",
        "likely_meant": "/autodiscover/metadata/json/1",
    }
    return sc


BUILDERS = (
    build_healthy,
    build_wrong_realm,
    build_unsigned,
    build_expired_accepted,
    build_not_yet_valid,
    build_untrusted_issuer,
    build_bad_signature,
    build_fallback_ntlm,
    build_oauth_rejected,
    build_fallback_mixed,
    build_ntlm_legs,
    build_tls_blind,
    build_cut,
    build_wrong_tenant_acs,
    build_no_oauth,
    build_unauthenticated,
    build_metadata_404,
)


# ---------------------------------------------------------------------------------------------
# Truth
# ---------------------------------------------------------------------------------------------


def _pair_class(hss: list[dict[str, Any]]) -> str:
    """The pair class from the handshakes (DEFINITIONS["pair class"])."""
    creds = [h for h in hss if h["class"] != "anonymous" and h["outcome"] != "challenged"]
    if not creds:
        return "unauthenticated"
    ordered = sorted(hss, key=lambda h: h["_start"])
    for i, h in enumerate(ordered):
        if h["class"] == "oauth" and h["outcome"] == "rejected":
            for later in ordered[i + 1 :]:
                if later["class"] == "oauth":
                    break
                if later["outcome"] == "accepted" and later["class"] != "anonymous":
                    return "oauth-with-fallback"
    classes = {h["class"] for h in creds}
    if classes == {"oauth"}:
        return "oauth-only" if any(h["outcome"] == "accepted" for h in creds) else "oauth-rejected"
    if "oauth" not in classes:
        return "no-oauth"
    return "mixed"


def _token_truth(sc: Scenario, tok: Tok, xs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Truth of one token (None if it never went on the wire); ``xs``: exchanges in time
    order."""
    header, claims = g.jwt_parts(tok.text)
    raw = tok.text.encode()
    outers = []
    if tok.layer == "actor":
        outers = [
            o.text
            for o in sc.tokens
            if o.layer == "outer" and g.jwt_parts(o.text)[1].get("actortoken") == tok.text
        ]
        sent = [i for i, x in enumerate(xs) if any(o.encode() in x["_req"] for o in outers)]
    else:
        sent = [i for i, x in enumerate(xs) if raw in x["_req"]]
    received = [i for i, x in enumerate(xs) if raw in x["_resp"]]
    uses = sorted({*sent, *received})
    if not uses:
        return None  # minted for a user the scenario never calls for
    when = xs[sent[0]]["ts"] if sent else None
    nbf, exp = claims.get("nbf"), claims.get("exp")
    valid = g.rs256_valid(tok.text, tok.key) if tok.key else None
    if tok.key:
        assert valid == (not tok.tampered), tok.note
    return {
        "fingerprint": g.fp12(tok.text),
        "layer": tok.layer,
        "format": "jwt-unsigned" if header.get("alg") == "none" else "jwt",
        "alg": header.get("alg"),
        "x5t": header.get("x5t"),
        "kid": header.get("kid"),
        "iss": claims.get("iss"),
        "aud": claims.get("aud"),
        "nameid": claims.get("nameid"),
        "nbf": nbf,
        "exp": exp,
        "signing_key": tok.key.cert_file if tok.key else None,
        "signature_valid": valid,
        "tampered": tok.tampered,
        "actor_fp": g.fp12(claims["actortoken"]) if "actortoken" in claims else None,
        "outer_fps": [g.fp12(o) for o in outers],
        "exchanges": uses,
        "issued_in": received,
        "first_presented_ts": when,
        "expired_at_first_use": None if when is None or exp is None else int(exp) < when,
        "not_yet_valid_at_first_use": (
            None if when is None or nbf is None else int(nbf) > when + SKEW
        ),
        "claims": {
            k: (f"<actor token {g.fp12(v)}>" if k == "actortoken" else v) for k, v in claims.items()
        },
        "note": tok.note,
    }


def _resolve(value: Any, index: dict[int, int]) -> Any:
    """Facts with every Ref replaced by the exchange's time-ordered index."""
    if isinstance(value, Ref):
        return index[id(value.rec)]
    if isinstance(value, dict):
        return {k: _resolve(v, index) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, index) for v in value]
    return value


def _cut(sc: Scenario, frames: list[g.Frame], blob: bytes, x: dict[str, Any]) -> dict[str, Any]:
    """Where the cut capture ends (``x``: the exchange whose request head is cut)."""
    offset = 24 + sum(16 + len(f.data) for f in frames[: x["frame"] - 1])
    rec = frames[x["frame"] - 1]
    size = offset + 16 + 14 + 20 + 20 + sc.cut_payload  # record header, Ethernet, IPv4, TCP
    return {
        "file_size": size,
        "uncut_size": len(blob),
        "last_frame": x["frame"],
        "last_record_offset": offset,
        "last_record_incl_len": len(rec.data),
        "last_record_bytes_present": size - offset - 16,
        "tcp_payload_bytes_present": sc.cut_payload,
        "request_head_bytes": x["_req"].index(b"\r\n\r\n") + 4,
        "frames_complete": x["frame"] - 1,
        "frames_lost_after": len(frames) - x["frame"],
        "exchange": Ref(x),
        "request_line": x["_req"].split(b"\r\n", 1)[0].decode(),
        "host_on_wire": x["host"],
        "authorization_complete": False,
        "host_header_present": b"\r\nHost:" in x["_req"][: sc.cut_payload],
        "in_scope_because": f"same TCP connection ({x['client']} -> {x['server']}) as earlier "
        f"requests with Host {x['host']}; the request line reads {x['method']} {x['uri']}",
        "warning_must_say": "the capture is truncated: the file ends inside frame "
        f"{x['frame']}, the head of the request {x['method']} {x['uri']} from {x['client']} "
        "was lost (credential unknown)",
        "lost": "the rest of the Authorization value and every header after it (Host, "
        "Content-Length, ...), the request body, the response and the connection close",
    }


def finish(sc: Scenario) -> tuple[bytes, dict[str, Any]]:
    """The pcap bytes and the truth entry of one scenario."""
    frames = sorted(sc.cap.frames, key=lambda f: (f.ts_ns, f.order))
    number = {f.order: n for n, f in enumerate(frames, 1)}
    blob = g.write_pcap(frames, 1)
    for x in sc.xs:
        x["frame"] = number[x["_order"]]
        x["ts"] = x["_ts_ns"] / SEC
    xs = sorted(sc.xs, key=lambda x: x["frame"])  # time order
    index = {id(x): i for i, x in enumerate(xs)}
    old_to_new = {old: index[id(x)] for old, x in enumerate(sc.xs)}
    facts = dict(sc.facts)
    if sc.cut_after is not None:
        x = sc.cut_after
        facts["cut"] = _cut(sc, frames, blob, x)
        blob = blob[: facts["cut"]["file_size"]]
        x["status"] = None
        x["event_outcome"] = "none"
        x["cut"] = True
        x["note"] += " [cut: the capture ends inside this request's head]"
    events = [x for x in xs if x["_event"] and not x.get("cut")]
    for n, x in enumerate(events, 1):
        x["event_id"] = n  # the analyzer's event numbering: events in request-time order
    for conn in facts.get("tls_connections", []):
        conn["client_hello_frame"] = number[conn.pop("_order")]
    # Handshakes (in time order) and pairs.
    for h in sc.handshakes:
        h["exchanges"] = sorted(old_to_new[i] for i in h["exchanges"])
        h["_start"] = xs[h["exchanges"][0]]["ts"]
    hss = sorted(sc.handshakes, key=lambda h: h["_start"])
    for n, h in enumerate(hss):
        for i in h["exchanges"]:
            xs[i]["handshake"] = n
    pairs: dict[tuple[str, str, int, str], list[dict[str, Any]]] = {}
    for h in hss:
        pairs.setdefault(h["_pair"], []).append(h)
    assert set(sc.pair_classes) == set(pairs), sc.name
    pair_out = []
    for key in sorted(pairs):
        group = pairs[key]
        cls = _pair_class(group)
        assert sc.pair_classes[key] == cls, (sc.name, key, cls)
        creds = [
            xs[i]
            for h in group
            for i in h["exchanges"]
            if xs[i]["scheme"] != "none" and xs[i]["cred_len"] and not xs[i].get("cut")
        ]
        outcomes: dict[str, Counter[str]] = {}
        for h in group:
            outcomes.setdefault(h["class"], Counter())[h["outcome"]] += 1
        pair_out.append(
            {
                "client": key[0],
                "server": key[1],
                "server_port": key[2],
                "host": key[3],
                "class": cls,
                "handshakes": dict(sorted(Counter(h["class"] for h in group).items())),
                "handshake_outcomes": {
                    c: dict(sorted(o.items())) for c, o in sorted(outcomes.items())
                },
                "exchanges": dict(sorted(Counter(_xclass(x) for x in creds).items())),
            }
        )
    others: dict[tuple[str, str, int, str], list[dict[str, Any]]] = {}
    for x in xs:
        if _pair(x) not in pairs:
            others.setdefault(_pair(x), []).append(x)
    other_out = [
        {
            "client": key[0],
            "server": key[1],
            "server_port": key[2],
            "host": key[3],
            "class": None,
            "requests": len(group),
            "statuses": dict(sorted(Counter(str(x["status"]) for x in group).items())),
            "note": "no credential and no challenge (metadata fetches, token endpoint calls): "
            "not an auth pair, no verdict class",
        }
        for key, group in sorted(others.items())
    ]
    violations = []
    for i, x in enumerate(xs):
        for rule, kinds in x["_kinds"].items():
            violations.append(
                {
                    "rule": rule,
                    "exchange": i,
                    "event_id": x.get("event_id"),
                    "frame": x["frame"],
                    "ts": x["ts"],
                    "client": x["client"],
                    "server": x["server"],
                    "host": x["host"],
                    "method": x["method"],
                    "uri": x["uri"],
                    "status": x["status"],
                    "scheme": x["scheme"],
                    "handshake": x["handshake"],
                    "kind": kinds[0],
                    "kinds": kinds,
                }
            )
    for rule in RULES:
        fails = [v for v in violations if v["rule"] == rule["name"]]
        assert (sc.expected[rule["name"]]["result"] == "FAIL") == bool(fails), (sc.name, rule)
    tokens = [e for e in (_token_truth(sc, t, xs) for t in sc.tokens) if e is not None]
    exchanges = []
    for i, x in enumerate(xs):
        out = {k: v for k, v in x.items() if not k.startswith("_")}
        head = {"index": i, "event_id": out.pop("event_id", None), "frame": out.pop("frame")}
        exchanges.append({**head, "ts": out.pop("ts"), **out})
    handshakes = [
        {
            "index": n,
            "class": h["class"],
            "outcome": h["outcome"],
            "exchanges": h["exchanges"],
            "frames": [xs[i]["frame"] for i in h["exchanges"]],
            "pair": {"client": h["_pair"][0], "server": h["_pair"][1], "host": h["_pair"][3]},
            "note": h["note"],
        }
        for n, h in enumerate(hss)
    ]
    cut = facts.get("cut")
    entry = {
        "capture": sc.cap.name,
        "description": sc.cap.description,
        "fault": sc.fault,
        "packets": len(frames) if cut is None else cut["last_frame"],
        "expected": sc.expected,
        "pairs": pair_out,
        "pairs_without_auth": other_out,
        "violations": violations,
        "facts": _resolve(facts, index),
        "handshakes": handshakes,
        "exchanges": exchanges,
        "tokens": tokens,
    }
    return blob, entry


def _xclass(x: dict[str, Any]) -> str:
    if x["scheme"] == "bearer":
        return "oauth"
    if x["scheme"] == "negotiate":
        return x["mechanism"] or "other"
    return x["scheme"]


def policy_toml() -> bytes:
    lines = [
        "# Policy for the hybrid scenario family (captures/hybrid/*.pcap); see captures/README.md.",
        "# Use: oauth-analyzer verify hybrid/SCENARIO.pcap --policy hybrid/policy.toml",
    ]
    for rule in RULES:
        lines += [
            "",
            "[[rule]]",
            f'name = "{rule["name"]}"',
            f'client = "{rule["client"]}"',
            "server = [" + ", ".join(f'"{s}"' for s in rule["server"]) + "]",
            f'path = "{rule["path"]}"',
            f'issuer = "{rule["issuer"]}"',
            f"require_signature = {str(rule['require_signature']).lower()}",
        ]
    return ("\n".join(lines) + "\n").encode()


def generate(out_dir: Path) -> dict[str, int]:
    """Write every scenario's pcap, policy.toml and truth.json to ``out_dir``; returns the
    number of exchanges per capture."""
    keys = g.load_keys()
    out_dir.mkdir(parents=True, exist_ok=True)
    scenarios = {}
    counts = {}
    for build in BUILDERS:
        sc = build(keys)
        blob, entry = finish(sc)
        (out_dir / sc.cap.name).write_bytes(blob)
        scenarios[sc.name] = entry
        counts[sc.cap.name] = len(sc.xs)
    truth = {
        "family": "hybrid",
        "generator": "captures/hybrid.py",
        "policy": "policy.toml",
        "base_time": g.iso_z(T_HY_S),
        "rules": RULES,
        "violation_kinds": list(VIOLATION_KINDS),
        "pair_classes": list(PAIR_CLASSES),
        "definitions": DEFINITIONS,
        "hosts": {
            EXCHANGE_IP: "mail.contoso.com (Exchange Server 2019, on-premises)",
            SFB_IP: "sfbpool01.contoso.com (Skype for Business Server pool)",
            EXO_IP: f"{EXO_HOST} (Exchange Online)",
            ACS_IP: f"{ACS_HOST} (Azure ACS)",
        },
        "keys": {
            k.name: {
                "cert_file": k.cert_file,
                "key_file": f"{g.KEYS_REL}/{k.name}.key.pem",
                "x5t": k.x5t,
                "bits": k.private_key.key_size,
            }
            for k in keys.values()
        },
        "scenarios": scenarios,
    }
    (out_dir / "policy.toml").write_bytes(policy_toml())
    (out_dir / "truth.json").write_bytes((json.dumps(truth, indent=2) + "\n").encode())
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="default: captures/hybrid/")
    args = parser.parse_args(argv)
    for name, n in generate(args.out).items():
        print(f"{name}: {n} exchanges")
    return 0


if __name__ == "__main__":
    sys.exit(main())
