"""classes.pcap: one handshake per auth class and outcome the analyzer reports (Negotiate/NTLM
accepted, anonymous challenged, lone realm probe, NTLM abandoned, unknown scheme, Digest with a
wrong password, Kerberos rejected), each between its own client and server.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..capture import Capture
from ..constants import ACS_ID, MS, REALM, SEC, SFB_ID, T0, US
from ..encoding import b64, http_date, prng
from ..ews import get_folder
from ..kerberos import (
    KRB_AP_ERR_MODIFIED,
    OID_MS_KRB5,
    OID_NTLM,
    kerberos_ap_req,
    kerberos_error,
    spnego_init_krb5,
    spnego_init_ntlm,
    spnego_resp,
)
from ..lab import ALICE, Lab, exchange_bearer
from ..messages import (
    AuthHeader,
    HeaderItem,
    Request,
    Response,
    authorization,
    challenge,
    digest_response,
)
from ..ntlm import NtlmAuth, ntlm_authenticate, ntlm_challenge, ntlm_negotiate, ntlm_target_info
from ..truth import finish_findings
from ..wire import C

T_CLASSES = T0 + 5 * 3600 * SEC  # 14:00:00Z
T_CLASSES_S = T_CLASSES // SEC


def build_classes() -> Capture:
    cap = Capture(
        "classes.pcap",
        "One handshake per auth class and outcome the analyzer reports, each between its own "
        "client and server: Negotiate/NTLM accepted, an anonymous request challenged, a lone "
        "realm-discovery probe, NTLM abandoned after the type 2, an unknown scheme accepted, "
        "Digest with a wrong password, Kerberos rejected. Plain HTTP as if decrypted.",
    )
    lab = Lab(cap, "classes")
    edge = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    edge += "Chrome/122.0.0.0 Safari/537.36 Edg/122.0.0.0"
    cases: list[dict[str, Any]] = []

    def sec(n: float) -> int:
        return T_CLASSES + int(n * SEC)

    def get(host: str, path: str, ua: str, auth: AuthHeader | None) -> Request:
        hdrs: list[HeaderItem] = [("Accept", "text/html, */*"), ("User-Agent", ua), ("Host", host)]
        if auth is not None:
            hdrs.append(auth)
        return Request("GET", path, [*hdrs, ("Connection", "Keep-Alive")])

    def page(
        t: int, status: int, server: str, extra: Sequence[HeaderItem], body: bytes
    ) -> Response:
        reason = {200: "OK", 401: "Unauthorized"}[status]
        headers: list[HeaderItem] = [("Content-Type", "text/html"), ("Server", server), *extra]
        headers += [("Date", http_date(t)), ("Content-Length", "{len}")]
        return Response(status, reason, headers, body)

    def denied(t: int, server: str, extra: Sequence[HeaderItem]) -> Response:
        return page(t, 401, server, extra, b"<html><body><h1>401 - Unauthorized</h1></body></html>")

    def case(
        n: int,
        auth_class: str,
        outcome: str,
        events: list[int | None],
        mechanism: str | None,
        note: str,
        user: str | None = None,
        domain: str | None = None,
    ) -> None:
        ids = [e for e in events if e is not None]
        cap.handshake(auth_class, outcome, ids, note)
        cases.append(
            {
                "scenario": n,
                "auth_class": auth_class,
                "outcome": outcome,
                "event_ids": [e + 1 for e in ids],
                "user": user,
                "domain": domain,
                "mechanism": mechanism,
                "note": note,
            }
        )

    iis = "Microsoft-IIS/10.0"

    # 1. negotiate-ntlm accepted: NTLM inside SPNEGO, three legs on one connection.
    type1 = ntlm_negotiate()
    type2 = ntlm_challenge(
        prng("classes-spnego-challenge", 8),
        ntlm_target_info(T_CLASSES_S, "APPS", "apps.contoso.com"),
    )
    carol = NtlmAuth(
        "CONTOSO",
        "carol",
        "Carol-Apps-2026!",
        "WS-0217",
        "HTTP/apps.contoso.com",
        prng("classes-spnego-client-challenge", 8),
        prng("classes-spnego-session-key", 16),
    )
    type3 = ntlm_authenticate(carol, type1, type2)
    c = lab.link("10.3.1.11", 50201, "10.3.2.11")
    t = c.open(sec(0.1))
    host, path = "apps.contoso.com", "/timesheets/"
    auth = authorization(
        "Negotiate", b64(spnego_init_ntlm(type1)), mechanism="ntlm", extra={"ntlm_message": 1}
    )
    leg2 = challenge("Negotiate", token68=b64(spnego_resp(1, OID_NTLM, type2)))
    t, n1 = cap.exchange(
        c,
        t + 200 * US,
        get(host, path, edge, auth),
        denied(t, iis, [leg2]),
        "SPNEGO NegTokenInit [NTLM] + type 1 -> 401 NegTokenResp accept-incomplete + type 2",
    )
    ident = {"ntlm_user": "carol", "ntlm_domain": "CONTOSO", "workstation": "WS-0217"}
    auth = authorization(
        "Negotiate",
        b64(spnego_resp(None, token=type3)),
        mechanism="ntlm",
        extra={"ntlm_message": 3, **ident},
    )
    done = challenge("Negotiate", token68=b64(spnego_resp(0)))
    ok = page(
        t, 200, iis, [done, ("Persistent-Auth", "true")], b"<html><body>Timesheets</body></html>"
    )
    t, n3 = cap.exchange(
        c,
        t + 2 * MS,
        get(host, path, edge, auth),
        ok,
        "NegTokenResp + type 3 (CONTOSO\\carol, NTLMv2) -> 200 accept-completed",
        think=9 * MS,
    )
    c.close(C, t + 300 * MS)
    case(
        1,
        "negotiate-ntlm",
        "accepted",
        [n1, n3],
        "ntlm",
        "NTLM inside SPNEGO: init + type 1, accept-incomplete + type 2, type 3 -> 200",
        "carol",
        "CONTOSO",
    )

    # 2. anonymous challenged: the server asks for Basic, the client never answers.
    c = lab.link("10.3.1.12", 50202, "10.3.2.12")
    t = c.open(sec(1))
    basic_ch = challenge("Basic", [("realm", "intranet", True)])
    req = get("intranet.contoso.com", "/", "curl/8.5.0", None)
    resp = page(t, 401, "Apache/2.4.58 (Debian)", [basic_ch], b"<html><body>401</body></html>\n")
    t, a1 = cap.exchange(c, t + 200 * US, req, resp, "anonymous GET -> 401 Basic, no retry")
    c.close(C, t + 20 * MS)
    case(2, "anonymous", "challenged", [a1], None, "401 Basic, the client never sends credentials")

    # 3. oauth challenged: the realm-discovery probe alone.
    c = lab.link("10.3.1.13", 50203, "10.3.2.13")
    t = c.open(sec(2))
    probe = lab.ews_request(
        get_folder(ALICE["upn"]),
        authorization("Bearer", ""),
        ALICE["upn"],
        "c-probe",
        host="ex09.contoso.com",
    )
    bearer_ch = exchange_bearer(f"{ACS_ID}@*,{SFB_ID}@{REALM}")
    resp = Response(
        401,
        "Unauthorized",
        lab.ex_headers(
            t,
            "c-probe",
            None,
            extra=[bearer_ch, challenge("Negotiate"), challenge("NTLM")],
            fqdn="ex09.contoso.com",
            netbios="EX09",
        ),
    )
    t, o1 = cap.exchange(c, t + 300 * US, probe, resp, "realm-discovery probe, nothing follows")
    c.close(C, t + 100 * MS)
    case(
        3,
        "oauth",
        "challenged",
        [o1],
        None,
        "realm-discovery probe (empty Bearer) answered 401, nothing follows",
    )

    # 4. ntlm incomplete: type 1 -> type 2, then the client closes without a type 3.
    c = lab.link("10.3.1.14", 50204, "10.3.2.14")
    t = c.open(sec(3))
    host, path = "files.contoso.com", "/share/"
    type2_files = ntlm_challenge(
        prng("classes-files-challenge", 8),
        ntlm_target_info(T_CLASSES_S + 3, "FILES", "files.contoso.com"),
    )
    auth = authorization("NTLM", b64(type1), mechanism="ntlm", extra={"ntlm_message": 1})
    leg2 = challenge("NTLM", token68=b64(type2_files))
    t, i1 = cap.exchange(
        c,
        t + 200 * US,
        get(host, path, edge, auth),
        denied(t, iis, [leg2]),
        "NTLM type 1 -> 401 type 2; the client gives up",
    )
    c.close(C, t + 40 * MS)
    case(
        4,
        "ntlm",
        "incomplete",
        [i1],
        "ntlm",
        "type 1 -> 401 type 2, then the client closes (FIN) without a type 3",
    )

    # 5. other accepted: a scheme the analyzer does not know.
    c = lab.link("10.3.1.15", 50205, "10.3.2.15")
    t = c.open(sec(4))
    req = Request(
        "GET",
        "/api/v2/status",
        [
            ("Host", "turbo.contoso.com"),
            ("User-Agent", "TurboClient/3.1"),
            authorization("Turbo", "0123456789abcdef", scheme="other"),
            ("Accept", "application/json"),
        ],
    )
    resp = Response(
        200,
        "OK",
        [("Content-Type", "application/json"), ("Date", http_date(t)), ("Content-Length", "{len}")],
        b'{"status":"green"}',
    )
    t, x1 = cap.exchange(c, t + 200 * US, req, resp, "Authorization: Turbo -> 200")
    c.close(C, t + 10 * MS)
    case(5, "other", "accepted", [x1], None, "unknown scheme Turbo -> 200")

    # 6. digest rejected: challenge, then a response computed from the wrong password.
    c = lab.link("10.3.1.16", 50206, "10.3.2.16")
    t = c.open(sec(5))
    host, path, realm = "wiki.contoso.com", "/private/roadmap", "wiki@contoso.com"
    nonce, opaque = b64(prng("classes-digest-nonce", 24)), prng("classes-digest-opaque", 16).hex()
    digest_ch = challenge(
        "Digest",
        [
            ("realm", realm, True),
            ("qop", "auth", True),
            ("nonce", nonce, True),
            ("opaque", opaque, True),
            ("algorithm", "MD5", False),
        ],
    )
    apache = "Apache/2.4.58 (Debian)"
    t, d1 = cap.exchange(
        c,
        t + 200 * US,
        get(host, path, "curl/8.5.0", None),
        denied(t, apache, [digest_ch]),
        "anonymous GET -> 401 Digest",
    )
    cnonce = prng("classes-digest-cnonce", 8).hex()
    answer = digest_response(
        "dave", realm, "Dave-Wiki-2025!", "GET", path, nonce, "00000001", cnonce
    )
    text = (
        f'username="dave", realm="{realm}", nonce="{nonce}", uri="{path}", algorithm=MD5, '
        f'response="{answer}", opaque="{opaque}", qop=auth, nc=00000001, cnonce="{cnonce}"'
    )
    auth = authorization("Digest", text, user="dave")
    t, d2 = cap.exchange(
        c,
        t + 3 * MS,
        get(host, path, "curl/8.5.0", auth),
        denied(t, apache, [digest_ch]),
        "Digest dave with the wrong password -> 401 again",
    )
    c.close(C, t + 10 * MS)
    case(
        6,
        "digest",
        "rejected",
        [d1, d2],
        None,
        "Digest challenge, response from the wrong password -> 401",
        "dave",
    )

    # 7. kerberos rejected: the server cannot decrypt the ticket (KRB_AP_ERR_MODIFIED).
    c = lab.link("10.3.1.17", 50207, "10.3.2.17")
    t = c.open(sec(6))
    host = "sp.contoso.com"
    ap_req = kerberos_ap_req("CONTOSO.COM", "HTTP", host, "classes-krb")
    krb_err = kerberos_error(KRB_AP_ERR_MODIFIED, "CONTOSO.COM", "HTTP", host, T_CLASSES_S + 6)
    auth = authorization(
        "Negotiate",
        b64(spnego_init_krb5(ap_req)),
        mechanism="kerberos",
        extra={"krb_realm": "CONTOSO.COM", "krb_sname": f"HTTP/{host}"},
    )
    reject = challenge("Negotiate", token68=b64(spnego_resp(2, OID_MS_KRB5, krb_err)))
    t, k1 = cap.exchange(
        c,
        t + 200 * US,
        get(host, "/sites/hr/", edge, auth),
        denied(t, iis, [reject]),
        "SPNEGO Kerberos AP-REQ -> 401 NegTokenResp reject + KRB-ERROR 41",
    )
    c.close(C, t + 30 * MS)
    case(
        7,
        "kerberos",
        "rejected",
        [k1],
        "kerberos",
        "SPNEGO reject with KRB-ERROR 41 KRB_AP_ERR_MODIFIED; domain = the ticket realm, "
        "in clear in the AP-REQ",
        None,
        "CONTOSO.COM",
    )

    # Scenarios run one after another, so provisional event numbers are already final.
    assert [e["ts"] for e in cap.events] == sorted(e["ts"] for e in cap.events)
    cap.truth_extra["classes"] = cases
    finish_findings(cap, list(range(len(cap.events))))  # no rule has anything to say here
    return cap
