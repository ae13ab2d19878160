"""exchange-sfb.pcap: on-premises Exchange 2019 and Skype for Business 2019 (realm contoso.com),
plain HTTP as if decrypted: metadata documents, S2S realm discovery, outer+actor tokens, rejected
(expired, tampered) tokens with x-ms-diagnostics, NTLM fallback, Basic and Kerberos clients, ACS
token endpoint.
"""

from __future__ import annotations

from typing import Any

from ..capture import Capture
from ..constants import ACS_ID, EXCHANGE_ID, MS, REALM, SEC, SFB_ID, T0, T0_S, TENANT, US
from ..deflate import gzip_bytes
from ..encoding import b64, det_guid, http_date, iso_z, json_bytes, prng
from ..ews import (
    OUTLOOK_UA,
    create_item,
    create_item_response,
    find_item_inbox,
    find_item_response,
    get_folder,
    get_folder_response,
    oof_request,
    oof_response,
)
from ..kerberos import kerberos_ap_req, spnego_init_krb5, spnego_resp_krb5
from ..keys import TestKey
from ..lab import ALICE, BOB, ExchangeWorld, exchange_metadata, sfb_metadata
from ..messages import HeaderItem, Request, Response, authorization, basic, challenge
from ..ntlm import NtlmAuth, ntlm_authenticate, ntlm_challenge, ntlm_negotiate, ntlm_target_info
from ..tokens import mint_rs256, mint_unsigned, tamper, user_context
from ..wire import C, S

TYPO_EXCHANGE_ID = "00000002-000-0ff1-ce00-000000000000"  # the misprint from the field notes


def build_exchange_sfb(keys: dict[str, TestKey]) -> Capture:
    cap = Capture(
        "exchange-sfb.pcap",
        "On-premises Exchange 2019 (mail.contoso.com) and Skype for Business 2019 "
        "(sfbpool01.contoso.com), realm contoso.com, plain HTTP as if decrypted: metadata "
        "documents, S2S realm discovery, outer+actor tokens, rejected (expired, tampered) tokens "
        "with x-ms-diagnostics, NTLM fallback, Basic and Kerberos clients, ACS token endpoint.",
    )
    w = ExchangeWorld(cap)
    kx, ks, ka = keys["exchange"], keys["sfb"], keys["acs"]
    ex_aud = f"{EXCHANGE_ID}/mail.contoso.com@{REALM}"
    sfb_iss = f"{SFB_ID}@{REALM}"
    bearer_params = [
        ("client_id", EXCHANGE_ID, True),
        ("trusted_issuers", f"{ACS_ID}@*,{sfb_iss}", True),
        ("token_types", "app_asserted_user_v1 service_asserted_app_v1", True),
    ]
    neg, ntlm = challenge("Negotiate"), challenge("NTLM")
    backend_cookie = f"X-BackEndCookie={ALICE['sid']}=" + b64(prng("becookie", 96)).rstrip("=")

    # --- S2S tokens -------------------------------------------------------------------------------
    nbf, now_exp = T0_S - 300, T0_S - 300 + 24 * 3600

    def sfb_actor(nbf: int, exp: int) -> dict[str, Any]:
        return {
            "aud": ex_aud,
            "iss": sfb_iss,
            "nbf": str(nbf),
            "exp": str(exp),
            "nameid": sfb_iss,
            "trustedfordelegation": "true",
        }

    def sfb_outer(user: dict[str, str], actor: str, nbf: int, exp: int) -> dict[str, Any]:
        return user_context(ex_aud, sfb_iss, user, actor, nbf, exp)

    actor = cap.token(
        mint_rs256(sfb_actor(nbf, now_exp), ks),
        "actor",
        ks,
        note="SfB self-issued actor token (24 h)",
    )
    outer_alice = mint_unsigned(sfb_outer(ALICE, actor, nbf, nbf + 8 * 3600))
    outer_bob = mint_unsigned(sfb_outer(BOB, actor, nbf + 3, nbf + 3 + 8 * 3600))
    for outer, who in ((outer_alice, "alice"), (outer_bob, "bob")):
        cap.token(outer, "outer", None, note=f"SfB user context for {who}")
    old_nbf = T0_S - 3 * 86400
    actor_old = mint_rs256(sfb_actor(old_nbf, old_nbf + 86400), ks)
    outer_old = mint_unsigned(sfb_outer(ALICE, actor_old, old_nbf, old_nbf + 8 * 3600))
    actor_t_signed = mint_rs256(sfb_actor(nbf + 60, nbf + 60 + 86400), ks)
    actor_bad = tamper(actor_t_signed, exp=str(nbf + 60 + 30 * 86400))
    outer_bad = mint_unsigned(sfb_outer(BOB, actor_bad, nbf + 60, nbf + 60 + 8 * 3600))

    # --- a. metadata documents (+ h. gzip) --------------------------------------------------------
    c = w.conn(w.sfb, 52301, w.exchange)
    t = c.open(T0 + 100 * MS)
    req = Request(
        "GET",
        "/autodiscover/metadata/json/1",
        [
            ("Host", "mail.contoso.com"),
            ("Accept-Encoding", "gzip, deflate"),
            ("Connection", "Keep-Alive"),
        ],
    )
    doc = json_bytes(exchange_metadata(kx))
    resp = Response(
        200,
        "OK",
        w.ex_headers(
            t + 5 * MS,
            "meta-ex",
            "text/json; charset=utf-8",
            extra=[("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")],
        ),
        gzip_bytes(doc),
    )
    t, e_meta_ex = cap.exchange(
        c, t + 200 * US, req, resp, "SfB fetches Exchange's auth metadata (gzip, text/json)"
    )
    t = c.close(C, t + 40 * MS)
    cap.truth_extra["metadata_documents"] = [
        {
            "url": "http://mail.contoso.com/autodiscover/metadata/json/1",
            "issuer": f"{EXCHANGE_ID}@{REALM}",
            "x5t": [kx.x5t],
            "cert_file": kx.cert_file,
            "content_encoding": "gzip",
        },
        {
            "url": "http://sfbpool01.contoso.com/metadata/json/1",
            "issuer": sfb_iss,
            "x5t": [ks.x5t],
            "cert_file": ks.cert_file,
            "content_encoding": None,
        },
    ]

    # Exchange fetches SfB's metadata: first with the typo from the field notes (h.), then right.
    c = w.conn(w.exchange, 27811, w.sfb)
    t = c.open(T0 + 500 * MS)
    sfb_head = [("Server", "Microsoft-IIS/10.0"), ("X-MS-Server-Fqdn", "sfbfe01.contoso.com")]
    req = Request(
        "GET",
        "/metadata/jason/1",
        [("Host", "sfbpool01.contoso.com"), ("Connection", "Keep-Alive")],
    )
    not_found = (
        b'<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" '
        b'"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">\r\n<html xmlns="http://www.w3.org/'
        b'1999/xhtml">\r\n<head>\r\n<meta http-equiv="Content-Type" content="text/html; '
        b'charset=iso-8859-1"/>\r\n<title>404 - File or directory not found.</title>\r\n</head>'
        b'\r\n<body>\r\n<div id="header"><h1>Server Error</h1></div>\r\n<div id="content">'
        b"\r\n <h2>404 - File or directory not found.</h2>\r\n <h3>The resource you are looking "
        b"for might have been removed, had its name changed, or is temporarily unavailable.</h3>"
        b"\r\n</div>\r\n</body>\r\n</html>\r\n"
    )
    resp = Response(
        404,
        "Not Found",
        [
            ("Content-Type", "text/html"),
            *sfb_head,
            ("X-Powered-By", "ASP.NET"),
            ("Date", http_date(t + 3 * MS)),
            ("Content-Length", "{len}"),
        ],
        not_found,
    )
    t, e_typo = cap.exchange(
        c, t + 200 * US, req, resp, "metadata URL typo (/metadata/jason/1) -> 404"
    )
    req = Request(
        "GET", "/metadata/json/1", [("Host", "sfbpool01.contoso.com"), ("Connection", "Keep-Alive")]
    )
    resp = Response(
        200,
        "OK",
        [
            ("Cache-Control", "no-cache"),
            ("Content-Type", "application/json; charset=utf-8"),
            *sfb_head,
            ("X-Content-Type-Options", "nosniff"),
            ("X-Powered-By", "ASP.NET"),
            ("Date", http_date(t + 700 * MS)),
            ("Content-Length", "{len}"),
        ],
        json_bytes(sfb_metadata(ks)),
    )
    t, e_meta_sfb = cap.exchange(
        c, t + 700 * MS, req, resp, "Exchange fetches SfB's auth metadata (corrected URL)"
    )
    t = c.close(C, t + 30 * MS)
    cap.handshake("metadata", "failure", [e_typo], "metadata fetch with the /jason/ typo: 404")
    cap.truth_extra["failed_metadata_fetches"] = {
        "events": [e_typo],
        "url": "http://sfbpool01.contoso.com/metadata/jason/1",
        "status": 404,
    }
    cap.handshake("metadata", "success", [e_meta_ex], "Exchange metadata (gzip)")
    cap.handshake("metadata", "success", [e_meta_sfb], "SfB metadata")

    # --- b./c. realm discovery, then S2S calls for two users --------------------------------------
    c = w.conn(w.sfb, 52302, w.exchange)
    t = c.open(T0 + 2 * SEC)
    body = get_folder(ALICE["upn"])
    req = w.ews_request(body, authorization("Bearer", ""), ALICE["upn"], "probe")
    resp = Response(
        401,
        "Unauthorized",
        w.ex_headers(t, "probe", None, extra=[challenge("Bearer", bearer_params), neg, ntlm]),
    )
    t, e_probe = cap.exchange(c, t + 300 * US, req, resp, "S2S realm discovery (empty Bearer)")
    calls = [
        (
            outer_alice,
            ALICE,
            get_folder(ALICE["upn"]),
            get_folder_response("alice"),
            "alice GetFolder",
        ),
        (
            outer_alice,
            ALICE,
            create_item(ALICE["upn"], "Bob Martinez"),
            create_item_response("alice"),
            "alice CreateItem (conversation history)",
        ),
        (outer_bob, BOB, get_folder(BOB["upn"]), get_folder_response("bob"), "bob GetFolder"),
    ]
    s2s_events: list[int | None] = [e_probe]
    for i, (token, user, body, answer, note) in enumerate(calls):
        label = f"s2s{i}"
        cookie = None if i == 0 else f"ClientId={prng('cid', 16).hex().upper()}; " + backend_cookie
        req = w.ews_request(body, authorization("Bearer", token), user["upn"], label, cookie)
        set_cookie = (
            []
            if i
            else [
                (
                    "Set-Cookie",
                    f"ClientId={prng('cid', 16).hex().upper()}; "
                    "expires=Tue, 02-Mar-2027 09:00:02 GMT; path=/; HttpOnly",
                ),
                (
                    "Set-Cookie",
                    backend_cookie + "; expires=Wed, 01-Apr-2026 09:00:02 GMT; path=/EWS; HttpOnly",
                ),
            ]
        )
        resp = Response(
            200,
            "OK",
            w.ex_headers(
                t,
                label,
                cookie=False,
                extra=[("client-request-id", det_guid("crid/" + label)), *set_cookie],
            ),
            answer,
        )
        t, ev = cap.exchange(
            c, t + 600 * MS, req, resp, f"S2S outer+actor token: {note}", think=22 * MS
        )
        s2s_events.append(ev)
    t = c.close(C, t + 2 * SEC)
    cap.handshake(
        "oauth-s2s", "success", s2s_events, "realm discovery then SfB -> Exchange app+user tokens"
    )

    # --- d. expired token, NTLM fallback on the same connection -----------------------------------
    c = w.conn(w.sfb, 52303, w.exchange)
    t = c.open(T0 + 6 * SEC)
    body = get_folder(ALICE["upn"])
    cap.token(outer_old, "outer", None, note="expired SfB user context (alice)")
    cap.token(actor_old, "actor", ks, note="expired SfB actor")
    req = w.ews_request(body, authorization("Bearer", outer_old), ALICE["upn"], "expired")
    diag = '2000002;reason="The token has expired.";error_category="token_expired"'
    resp = Response(
        401,
        "Unauthorized",
        w.ex_headers(
            t,
            "expired",
            None,
            extra=[
                ("x-ms-diagnostics", diag),
                challenge("Bearer", [*bearer_params, ("error", "invalid_token", True)]),
                neg,
                ntlm,
            ],
        ),
    )
    t, e_exp = cap.exchange(c, t + 300 * US, req, resp, "expired outer+actor token rejected")
    cap.handshake("oauth-s2s", "failure", [e_exp], "token_expired (x-ms-diagnostics 2000002)")
    type1 = ntlm_negotiate()
    type2 = ntlm_challenge(prng("ntlm-server-challenge", 8), ntlm_target_info(T0_S + 6))
    auth = NtlmAuth(
        "CONTOSO",
        "svc-sfb",
        "Sfb-Service-2026!",
        "SFBPOOL01",
        "HTTP/mail.contoso.com",
        prng("ntlm-client-challenge", 8),
        prng("ntlm-session-key", 16),
    )
    type3 = ntlm_authenticate(auth, type1, type2)
    ntlm_extra = {"ntlm_user": "svc-sfb", "ntlm_domain": "CONTOSO", "workstation": "SFBPOOL01"}
    req = w.ews_request(
        body,
        authorization("NTLM", b64(type1), mechanism="ntlm", extra={"ntlm_message": 1}),
        ALICE["upn"],
        "ntlm1",
    )
    resp = Response(
        401,
        "Unauthorized",
        w.ex_headers(t, "ntlm1", None, extra=[challenge("NTLM", token68=b64(type2))]),
    )
    t, e_n1 = cap.exchange(c, t + 2 * MS, req, resp, "NTLM fallback: type 1 -> type 2")
    req = w.ews_request(
        body,
        authorization(
            "NTLM", b64(type3), mechanism="ntlm", extra={"ntlm_message": 3, **ntlm_extra}
        ),
        ALICE["upn"],
        "ntlm3",
    )
    resp = Response(
        200,
        "OK",
        w.ex_headers(
            t,
            "ntlm3",
            extra=[("client-request-id", det_guid("crid/ntlm3")), ("Persistent-Auth", "true")],
        ),
        get_folder_response("alice-ntlm"),
    )
    t, e_n3 = cap.exchange(
        c, t + 2 * MS, req, resp, "NTLM type 3 (CONTOSO\\svc-sfb) -> 200", think=18 * MS
    )
    t = c.close(C, t + SEC)
    cap.handshake("ntlm", "success", [e_n1, e_n3], "NTLMv2 fallback after the expired token")
    cap.truth_extra["ntlm"] = {
        "events": [e_n1, e_n3],
        "domain": "CONTOSO",
        "user": "svc-sfb",
        "workstation": "SFBPOOL01",
        "password": "Sfb-Service-2026! (test value)",
        "server_challenge": type2[24:32].hex(),
        "ntlmv2": True,
        "mic": True,
        "target_spn": "HTTP/mail.contoso.com",
    }

    # --- e. tampered actor token ------------------------------------------------------------------
    c = w.conn(w.sfb, 52304, w.exchange)
    t = c.open(T0 + 9 * SEC)
    cap.token(outer_bad, "outer", None, note="user context (bob) wrapping a tampered actor")
    cap.token(
        actor_bad, "actor", ks, tampered=True, note="actor exp extended by 30 days after signing"
    )
    req = w.ews_request(
        get_folder(BOB["upn"]), authorization("Bearer", outer_bad), BOB["upn"], "tampered"
    )
    diag = '2000000;reason="The token has an invalid signature.";error_category="invalid_signature"'
    resp = Response(
        401,
        "Unauthorized",
        w.ex_headers(
            t,
            "tampered",
            None,
            extra=[
                ("x-ms-diagnostics", diag),
                challenge("Bearer", [*bearer_params, ("error", "invalid_token", True)]),
                neg,
                ntlm,
            ],
        ),
    )
    t, e_bad = cap.exchange(c, t + 300 * US, req, resp, "tampered actor token rejected")
    t = c.close(C, t + 300 * MS)
    cap.handshake("oauth-s2s", "failure", [e_bad], "invalid_signature (x-ms-diagnostics 2000000)")

    # --- f. Basic and Kerberos clients ------------------------------------------------------------
    c = w.conn(w.client, 49731, w.exchange)
    t = c.open(T0 + 12 * SEC)
    req = Request(
        "GET",
        "/owa/healthcheck.htm",
        [
            ("Host", "mail.contoso.com"),
            ("User-Agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"),
            ("Connection", "Keep-Alive"),
        ],
    )
    resp = Response(
        200,
        "OK",
        [
            ("Content-Type", "text/html"),
            ("Server", "Microsoft-IIS/10.0"),
            ("X-FEServer", "MAIL"),
            ("Date", http_date(t)),
            ("Content-Length", "{len}"),
        ],
        b"200 OK<br/>MAIL.contoso.com",
    )
    t, none_event = cap.exchange(c, t + 300 * US, req, resp, "health check, no auth (no event)")
    assert none_event is None
    basic_password = "Spring2026!Alice"
    req = w.ews_request(
        find_item_inbox(),
        basic("CONTOSO\\alice", basic_password),
        "alice.johnson@contoso.com",
        "basic",
        path="/ews/exchange.asmx",
    )
    resp = Response(
        200,
        "OK",
        w.ex_headers(
            t, "basic", cookie=True, extra=[("client-request-id", det_guid("crid/basic"))]
        ),
        find_item_response(),
    )
    t, e_basic = cap.exchange(c, t + 400 * MS, req, resp, "Basic CONTOSO\\alice", think=30 * MS)
    t = c.close(C, t + 500 * MS)
    cap.handshake("basic", "success", [e_basic], "Basic over plain HTTP")

    c = w.conn(w.client, 49732, w.exchange)
    t = c.open(T0 + 13 * SEC)
    ap_req = kerberos_ap_req("CONTOSO.COM", "HTTP", "mail.contoso.com", "krb-alice")
    neg_init = b64(spnego_init_krb5(ap_req))
    neg_resp = b64(spnego_resp_krb5("krb-alice-aprep"))
    req = w.ews_request(
        oof_request(ALICE["upn"]),
        authorization(
            "Negotiate",
            neg_init,
            mechanism="kerberos",
            extra={"krb_realm": "CONTOSO.COM", "krb_sname": "HTTP/mail.contoso.com"},
        ),
        ALICE["upn"],
        "krb",
        ua=OUTLOOK_UA,
    )
    resp = Response(
        200,
        "OK",
        w.ex_headers(
            t,
            "krb",
            extra=[
                challenge("Negotiate", token68=neg_resp),
                ("Persistent-Auth", "true"),
                ("client-request-id", det_guid("crid/krb")),
            ],
        ),
        oof_response(),
    )
    t, e_krb = cap.exchange(
        c, t + 300 * US, req, resp, "Negotiate/Kerberos (SPNEGO AP-REQ)", think=25 * MS
    )
    t = c.close(C, t + 400 * MS)
    cap.handshake("kerberos", "success", [e_krb], "SPNEGO Kerberos with mutual auth NegTokenResp")
    cap.truth_extra["kerberos"] = {
        "events": [e_krb],
        "realm": "CONTOSO.COM",
        "sname": "HTTP/mail.contoso.com",
        "etype": 18,
    }

    # --- g. ACS token endpoint --------------------------------------------------------------------
    c = w.conn(w.exchange, 27812, w.acs)
    t = c.open(T0 + 15 * SEC, rtt=9 * MS)
    acs_aud = f"{ACS_ID}/accounts.accesscontrol.windows.net@{TENANT}"
    exo_resource = f"{EXCHANGE_ID}/outlook.office365.com@{TENANT}"
    a_nbf = T0_S + 15
    assertion = cap.token(
        mint_rs256(
            {
                "aud": acs_aud,
                "iss": f"{EXCHANGE_ID}@{TENANT}",
                "nbf": str(a_nbf),
                "exp": str(a_nbf + 600),
            },
            kx,
        ),
        "assertion",
        kx,
        note="Exchange's self-signed assertion to ACS",
    )
    acs_iss = f"{ACS_ID}@{TENANT}"
    oid = det_guid("exchange-sp-oid")
    access = cap.token(
        mint_rs256(
            {
                "aud": exo_resource,
                "iss": acs_iss,
                "iat": a_nbf,
                "nbf": a_nbf,
                "exp": a_nbf + 86400,
                "identityprovider": acs_iss,
                "nameid": f"{EXCHANGE_ID}@{TENANT}",
                "oid": oid,
                "sub": oid,
                "trustedfordelegation": "true",
            },
            ka,
            kid=True,
        ),
        "access_token",
        ka,
        in_response=True,
        note="ACS-issued actor token for Exchange Online",
    )

    def acs_request(assertion: str, label: str) -> Request:
        return Request(
            "POST",
            f"/{TENANT}/tokens/OAuth/2",
            [
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("client-request-id", det_guid("crid/" + label)),
                ("return-client-request-id", "true"),
                ("Host", "accounts.accesscontrol.windows.net"),
                ("Content-Length", "{len}"),
                ("Connection", "Keep-Alive"),
            ],
            form=[
                ("grant_type", "http://oauth.net/grant_type/jwt/1.0/bearer"),
                ("assertion", assertion),
                ("resource", exo_resource),
            ],
        )

    def acs_headers(t: int, label: str) -> list[HeaderItem]:
        return [
            ("Cache-Control", "no-cache, no-store"),
            ("Pragma", "no-cache"),
            ("Content-Type", "application/json; charset=utf-8"),
            ("Expires", "-1"),
            ("Server", "Microsoft-IIS/10.0"),
            ("x-ms-request-id", det_guid("acs/" + label)),
            ("client-request-id", det_guid("crid/" + label)),
            ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
            ("X-Content-Type-Options", "nosniff"),
            ("Date", http_date(t)),
            ("Content-Length", "{len}"),
        ]

    ok = {
        "token_type": "Bearer",
        "access_token": access,
        "expires_in": "86399",
        "not_before": str(a_nbf),
        "expires_on": str(a_nbf + 86400),
        "resource": exo_resource,
    }
    resp = Response(200, "OK", acs_headers(t, "acs1"), json_bytes(ok), json_body=ok)
    t, e_acs = cap.exchange(
        c,
        t + 200 * US,
        acs_request(assertion, "acs1"),
        resp,
        "ACS JWT-bearer grant -> actor token for EXO",
        think=60 * MS,
    )
    bad_assertion = cap.token(
        mint_rs256(
            {
                "aud": acs_aud,
                "iss": f"{TYPO_EXCHANGE_ID}@{TENANT}",
                "nbf": str(a_nbf + 2),
                "exp": str(a_nbf + 602),
            },
            kx,
        ),
        "assertion",
        kx,
        note="issuer with the malformed principal id from the field notes",
    )
    err = {
        "error": "invalid_grant",
        "error_description": f"The issuer '{TYPO_EXCHANGE_ID}@{TENANT}' of the assertion is not "
        f"a known service principal.\r\nTrace ID: {det_guid('trace')}\r\nCorrelation ID: "
        f"{det_guid('corr')}\r\nTimestamp: {iso_z(a_nbf + 2).replace('T', ' ')}",
    }
    resp = Response(400, "Bad Request", acs_headers(t, "acs2"), json_bytes(err), json_body=err)
    t, e_acs_bad = cap.exchange(
        c,
        t + 2 * SEC,
        acs_request(bad_assertion, "acs2"),
        resp,
        "ACS rejects an assertion whose issuer id is malformed",
        think=55 * MS,
    )
    t = c.close(S, t + 5 * SEC)
    cap.handshake("oauth-token-endpoint", "success", [e_acs], "jwt-bearer grant at ACS")
    cap.handshake("oauth-token-endpoint", "failure", [e_acs_bad], "invalid_grant")
    cap.truth_extra["malformed_principals"] = {
        "events": [e_acs_bad],
        "value": f"{TYPO_EXCHANGE_ID}@{TENANT}",
        "where": "iss claim of the assertion JWT",
        "likely_meant": EXCHANGE_ID,
    }
    return cap
