"""findings.pcap: one scenario per finding rule, each between its own client and server, plus
look-alike cases that must not fire. Plain HTTP as if decrypted.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..capture import Capture
from ..constants import ACS_ID, EXCHANGE_ID, MS, REALM, SEC, SFB_ID, T0, TENANT, US
from ..encoding import b64, b64url, det_guid, http_date, prng
from ..ews import create_item, create_item_response, get_folder, get_folder_response
from ..keys import TestKey
from ..lab import ALICE, Lab, exchange_bearer, sfb_metadata_fetch
from ..messages import AuthHeader, HeaderItem, Request, Response, authorization, challenge
from ..ntlm import (
    NTLM_V1_CHALLENGE,
    NtlmAuth,
    ntlm_authenticate,
    ntlm_authenticate_v1,
    ntlm_challenge,
    ntlm_negotiate,
    ntlm_negotiate_v1,
    ntlm_target_info,
)
from ..tokens import app_token, mint_rs256, mint_unsigned, user_context
from ..truth import finish_findings
from ..wire import C, Conn

T_FIND = T0 + 3 * 3600 * SEC  # 12:00:00Z
T_FIND_S = T_FIND // SEC
SHAREPOINT_ID = "00000003-0000-0ff1-ce00-000000000000"


def build_findings(keys: dict[str, TestKey]) -> Capture:
    cap = Capture(
        "findings.pcap",
        "One scenario per finding rule, each between its own client and server addresses, plus "
        "look-alike cases that must not fire: token before nbf (2 h, and 60 s inside the clock "
        "skew), one token from two clients, an alg-none token, an issuer the server does not "
        "trust (and one it does), an audience naming another host (and one differing only in "
        "case), NTLMv1 (and NTLMv2), a 7-day token. Plain HTTP as if decrypted.",
    )
    lab = Lab(cap, "findings")
    ks, kx = keys["sfb"], keys["exchange"]
    sfb_iss = f"{SFB_ID}@{REALM}"
    trusted_std = f"{ACS_ID}@*,{sfb_iss}"
    neg, ntlm = challenge("Negotiate"), challenge("NTLM")

    def sec(n: float) -> int:
        return T_FIND + int(n * SEC)

    def ews(
        c: Conn,
        t: int,
        host: str,
        auth: AuthHeader,
        label: str,
        note: str,
        *,
        denied: Sequence[HeaderItem] | None = None,
        user: dict[str, str] = ALICE,
        body: bytes | None = None,
        answer: bytes | None = None,
    ) -> tuple[int, int | None]:
        """One EWS POST to ``host``: 200 with a SOAP answer, or 401 with ``denied`` headers."""
        netbios = host.split(".")[0].upper()
        req = lab.ews_request(body or get_folder(user["upn"]), auth, user["upn"], label, host=host)
        fqdn = host.lower()
        if denied is None:
            crid = ("client-request-id", det_guid("crid/" + label))
            headers = lab.ex_headers(t, label, extra=[crid], fqdn=fqdn, netbios=netbios)
            resp = Response(200, "OK", headers, answer or get_folder_response(label))
            return cap.exchange(c, t + 300 * US, req, resp, note, think=21 * MS)
        headers = lab.ex_headers(t, label, None, extra=list(denied), fqdn=fqdn, netbios=netbios)
        return cap.exchange(c, t + 300 * US, req, Response(401, "Unauthorized", headers), note)

    # 1. metadata: ex01 fetches SfB's document, so the SfB key's x5t resolves in this capture.
    e_meta = sfb_metadata_fetch(cap, lab, ("10.2.2.11", 27901, "10.2.0.20"), sec(0.1), ks)

    # 2. token-not-yet-valid: sfbfe01's clock runs 2 h fast, its app token's nbf is 2 h ahead.
    early = cap.token(
        app_token(ks, sfb_iss, "ex02.contoso.com", T_FIND_S + 2 + 7200, T_FIND_S + 2 + 93600),
        "bearer",
        ks,
        note="app-only SfB token used 2 h before its nbf",
    )
    c = lab.link("10.2.1.21", 50101, "10.2.2.12")
    t = c.open(sec(2))
    denied = [exchange_bearer(trusted_std, error=True), neg, ntlm]
    t, e_early = ews(
        c,
        t,
        "ex02.contoso.com",
        authorization("Bearer", early),
        "nbf",
        "2 h before nbf -> 401",
        denied=denied,
    )
    c.close(C, t + 200 * MS)
    cap.handshake("oauth-s2s", "failure", [e_early], "token not yet valid")

    # 3. NEGATIVE: 60 s before nbf is inside the 5-minute clock skew -> accepted.
    skew = cap.token(
        app_token(ks, sfb_iss, "ex03.contoso.com", T_FIND_S + 4 + 60, T_FIND_S + 4 + 86460),
        "bearer",
        ks,
        note="app-only SfB token used 60 s before its nbf (inside the clock skew)",
    )
    c = lab.link("10.2.1.22", 50102, "10.2.2.13")
    t = c.open(sec(4))
    t, e_skew = ews(
        c, t, "ex03.contoso.com", authorization("Bearer", skew), "skew", "60 s before nbf -> 200"
    )
    c.close(C, t + 200 * MS)
    cap.handshake("oauth-s2s", "success", [e_skew], "nbf 60 s ahead: clock skew tolerated")

    # 4. token-multiple-clients: one token from sfbfe03, then replayed from another address.
    shared = cap.token(
        app_token(ks, sfb_iss, "ex04.contoso.com", T_FIND_S - 300, T_FIND_S - 300 + 86400),
        "bearer",
        ks,
        note="valid app-only SfB token presented from 10.2.1.31 and 10.2.1.32",
    )
    replayed: list[int | None] = []
    for client, port, start, label in (
        ("10.2.1.31", 50103, 6, "shared1"),
        ("10.2.1.32", 50104, 7, "shared2"),
    ):
        c = lab.link(client, port, "10.2.2.14")
        t = c.open(sec(start))
        t, ev = ews(
            c,
            t,
            "ex04.contoso.com",
            authorization("Bearer", shared),
            label,
            f"same token from {client} -> 200",
        )
        c.close(C, t + 200 * MS)
        replayed.append(ev)
    cap.handshake("oauth-s2s", "success", replayed[:1], "token from its owner")
    cap.handshake("oauth-s2s", "success", replayed[1:], "the same token from another address")

    # 5. unsigned-token: an alg-none token without actortoken, accepted by a careless API.
    forged = cap.token(
        mint_unsigned(
            {
                "aud": "api://contoso-hr",
                "iss": f"https://sts.windows.net/{TENANT}/",
                "iat": T_FIND_S + 8,
                "nbf": T_FIND_S + 8,
                "exp": T_FIND_S + 8 + 3600,
                "appid": det_guid("app/forged"),
                "roles": ["HR.Admin"],
                "sub": b64url(prng("sub/forged", 32)),
                "tid": TENANT,
                "upn": "mallory@contoso.com",
                "ver": "1.0",
            }
        ),
        "bearer",
        None,
        note="hand-made alg-none token (no actortoken) the HR API wrongly accepts",
    )
    c = lab.link("10.2.1.41", 51000, "10.2.2.15")
    t = c.open(sec(9))
    req = Request(
        "GET",
        "/api/employees/1042",
        [
            ("Host", "hr-api.contoso.com"),
            ("User-Agent", "curl/8.5.0"),
            authorization("Bearer", forged),
            ("Accept", "application/json"),
        ],
    )
    resp = Response(
        200,
        "OK",
        [
            ("Content-Length", "{len}"),
            ("Content-Type", "application/json; charset=utf-8"),
            ("Server", "Kestrel"),
            ("Date", http_date(t)),
        ],
        b'{"id":1042,"name":"Alice Johnson","salary":"REDACTED-TEST-VALUE"}',
    )
    t, e_forged = cap.exchange(c, t + 150 * US, req, resp, "alg-none token accepted -> 200")
    c.close(C, t + 20 * MS)
    cap.handshake("bearer", "success", [e_forged], "unsigned token accepted")

    # 6. untrusted-issuer: ex05 trusts only SfB; SharePoint sends it an app-only token.
    sp_iss = f"{SHAREPOINT_ID}@{REALM}"
    sp_token = cap.token(
        app_token(kx, sp_iss, "ex05.contoso.com", T_FIND_S + 11 - 300, T_FIND_S + 11 + 12 * 3600),
        "bearer",
        kx,
        note="SharePoint app-only token (the exchange TEST key stands in for the farm's "
        "certificate; no metadata for it in this capture)",
    )
    c = lab.link("10.2.1.51", 50105, "10.2.2.16")
    t = c.open(sec(11))
    only_sfb = exchange_bearer(sfb_iss)
    t, e_sp_probe = ews(
        c,
        t,
        "ex05.contoso.com",
        authorization("Bearer", ""),
        "sp-probe",
        "realm discovery: trusted_issuers lists SfB only",
        denied=[only_sfb, neg, ntlm],
    )
    diag = (
        f"2000001;reason=\"The issuer of the token is unknown. Issuer was '{sp_iss}'.\";"
        'error_category="invalid_token"'
    )
    t, e_sp = ews(
        c,
        t + 30 * MS,
        "ex05.contoso.com",
        authorization("Bearer", sp_token),
        "sp-token",
        "SharePoint issuer not trusted -> 401",
        denied=[("x-ms-diagnostics", diag), exchange_bearer(sfb_iss, error=True), neg, ntlm],
    )
    c.close(C, t + 200 * MS)
    cap.handshake("oauth-s2s", "failure", [e_sp_probe, e_sp], "issuer not in trusted_issuers")

    # 7. audience-host-mismatch: the token names autodiscover.contoso.com, Host is mail.
    wrong_aud = cap.token(
        app_token(ks, sfb_iss, "autodiscover.contoso.com", T_FIND_S - 300, T_FIND_S + 86100),
        "bearer",
        ks,
        note="aud host autodiscover.contoso.com sent to mail.contoso.com",
    )
    c = lab.link("10.2.1.61", 50106, "10.2.2.17")
    t = c.open(sec(14))
    diag = (
        '2000003;reason="The hostname component of the audience claim value is invalid. '
        "Expected 'mail.contoso.com'. Actual 'autodiscover.contoso.com'.\";"
        'error_category="invalid_resource"'
    )
    t, e_aud = ews(
        c,
        t,
        "mail.contoso.com",
        authorization("Bearer", wrong_aud),
        "aud",
        "aud host autodiscover.contoso.com, Host mail.contoso.com -> 401 (4002)",
        denied=[("x-ms-diagnostics", diag), exchange_bearer(trusted_std, error=True), neg, ntlm],
    )
    c.close(C, t + 200 * MS)
    cap.handshake("oauth-s2s", "failure", [e_aud], "invalid_resource (audience host)")

    # 8. NEGATIVE: audience host equal to Host but for case (MAIL.contoso.com) -> accepted.
    case_aud = cap.token(
        app_token(ks, sfb_iss, "mail.contoso.com", T_FIND_S - 300, T_FIND_S + 86100),
        "bearer",
        ks,
        note="aud host mail.contoso.com sent with Host MAIL.contoso.com",
    )
    c = lab.link("10.2.1.62", 50107, "10.2.2.18")
    t = c.open(sec(16))
    t, e_case = ews(
        c,
        t,
        "MAIL.contoso.com",
        authorization("Bearer", case_aud),
        "aud-case",
        "Host differs from the aud host only in case -> 200",
    )
    c.close(C, t + 200 * MS)
    cap.handshake("oauth-s2s", "success", [e_case], "host names compared case-insensitively")

    # 9. NEGATIVE: trusted issuer (S2S outer + actor from SfB), twice from the same client.
    aud7 = f"{EXCHANGE_ID}/ex07.contoso.com@{REALM}"
    actor = cap.token(
        mint_rs256(
            {
                "aud": aud7,
                "iss": sfb_iss,
                "nbf": str(T_FIND_S - 300),
                "exp": str(T_FIND_S - 300 + 86400),
                "nameid": sfb_iss,
                "trustedfordelegation": "true",
            },
            ks,
        ),
        "actor",
        ks,
        note="SfB actor token (24 h) for ex07",
    )
    outer = cap.token(
        mint_unsigned(
            user_context(aud7, sfb_iss, ALICE, actor, T_FIND_S - 300, T_FIND_S - 300 + 8 * 3600)
        ),
        "outer",
        None,
        note="SfB user context for alice, used twice from one address",
    )
    c = lab.link("10.2.1.52", 50108, "10.2.2.19")
    t = c.open(sec(18))
    t, e_tr_probe = ews(
        c,
        t,
        "ex07.contoso.com",
        authorization("Bearer", ""),
        "tr-probe",
        "realm discovery: trusted_issuers lists ACS and SfB",
        denied=[exchange_bearer(trusted_std), neg, ntlm],
    )
    t, e_tr1 = ews(
        c,
        t + 30 * MS,
        "ex07.contoso.com",
        authorization("Bearer", outer),
        "tr1",
        "trusted SfB issuer -> 200",
    )
    t, e_tr2 = ews(
        c,
        t + 400 * MS,
        "ex07.contoso.com",
        authorization("Bearer", outer),
        "tr2",
        "same token again from the same client -> 200",
        body=create_item(ALICE["upn"], "Carol Nguyen"),
        answer=create_item_response("tr2"),
    )
    c.close(C, t + 200 * MS)
    cap.handshake("oauth-s2s", "success", [e_tr_probe, e_tr1, e_tr2], "trusted issuer")

    # 10. ntlmv1: a legacy client answers with a 24-byte NT response and no ESS.
    def iis_401(t: int, extra: Sequence[HeaderItem]) -> Response:
        return Response(
            401,
            "Unauthorized",
            [
                ("Content-Type", "text/html"),
                ("Server", "Microsoft-IIS/10.0"),
                *extra,
                ("X-Powered-By", "ASP.NET"),
                ("Date", http_date(t)),
                ("Content-Length", "{len}"),
            ],
            b"<html><body><h1>401 - Unauthorized</h1></body></html>",
        )

    def iis_200(t: int, page: bytes) -> Response:
        return Response(
            200,
            "OK",
            [
                ("Content-Type", "text/html"),
                ("Server", "Microsoft-IIS/10.0"),
                ("X-Powered-By", "ASP.NET"),
                ("Date", http_date(t)),
                ("Content-Length", "{len}"),
            ],
            page,
        )

    def ntlm_dance(
        c: Conn,
        t: int,
        host: str,
        path: str,
        ua: str,
        blobs: tuple[bytes, bytes, bytes],
        ident: dict[str, str],
        label: str,
    ) -> tuple[list[int | None], int]:
        """Anonymous GET -> 401 NTLM; type 1 -> 401 type 2; type 3 -> 200. Returns the three
        events and the end time."""
        type1, type2, type3 = blobs

        def get(auth: AuthHeader | None) -> Request:
            hdrs: list[HeaderItem] = [
                ("Accept", "text/html, */*"),
                ("User-Agent", ua),
                ("Host", host),
            ]
            if auth is not None:
                hdrs.append(auth)
            return Request("GET", path, [*hdrs, ("Connection", "Keep-Alive")])

        t, e0 = cap.exchange(
            c, t, get(None), iis_401(t, [neg, ntlm]), f"{label}: anonymous -> 401 NTLM"
        )
        auth1 = authorization("NTLM", b64(type1), mechanism="ntlm", extra={"ntlm_message": 1})
        resp = iis_401(t, [challenge("NTLM", token68=b64(type2))])
        t, e1 = cap.exchange(c, t + 2 * MS, get(auth1), resp, f"{label}: type 1 -> type 2")
        auth3 = authorization(
            "NTLM", b64(type3), mechanism="ntlm", extra={"ntlm_message": 3, **ident}
        )
        page = b"<html><body>Welcome, " + ident["ntlm_user"].encode() + b"</body></html>"
        t, e3 = cap.exchange(
            c, t + 2 * MS, get(auth3), iis_200(t, page), f"{label}: type 3 -> 200", think=9 * MS
        )
        return [e0, e1, e3], t

    v1_type1 = ntlm_negotiate_v1()
    v1_type2 = ntlm_challenge(
        prng("ntlmv1-server-challenge", 8),
        ntlm_target_info(T_FIND_S + 21, "INTRANET", "intranet.contoso.com"),
        NTLM_V1_CHALLENGE,
    )
    v1_type3 = ntlm_authenticate_v1("CONTOSO", "kiosk", "Kiosk-Legacy-1", "LEGACY-XP01", v1_type2)
    c = lab.link("10.2.1.71", 1042, "10.2.3.10")
    t = c.open(sec(21))
    v1_events, t = ntlm_dance(
        c,
        t + 200 * US,
        "intranet.contoso.com",
        "/hr/timesheets/",
        "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 5.1; Trident/4.0)",
        (v1_type1, v1_type2, v1_type3),
        {"ntlm_user": "kiosk", "ntlm_domain": "CONTOSO", "workstation": "LEGACY-XP01"},
        "NTLMv1",
    )
    c.close(C, t + 300 * MS)
    cap.handshake("ntlm", "success", v1_events, "NTLMv1 (24-byte NT response, no ESS)")
    cap.truth_extra["ntlmv1"] = {
        "events": [v1_events[2]],
        "domain": "CONTOSO",
        "user": "kiosk",
        "workstation": "LEGACY-XP01",
        "password": "Kiosk-Legacy-1 (test value)",
        "server_challenge": v1_type2[24:32].hex(),
        "nt_response_len": 24,
        "extended_session_security": False,
    }

    # 11. NEGATIVE: NTLMv2 from a current Windows client.
    v2_type1 = ntlm_negotiate()
    v2_type2 = ntlm_challenge(
        prng("ntlmv2-portal-challenge", 8),
        ntlm_target_info(T_FIND_S + 23, "PORTAL", "portal.contoso.com"),
    )
    v2_auth = NtlmAuth(
        "CONTOSO",
        "dave",
        "Dave-Portal-2026!",
        "WS-0142",
        "HTTP/portal.contoso.com",
        prng("ntlmv2-portal-client-challenge", 8),
        prng("ntlmv2-portal-session-key", 16),
    )
    v2_type3 = ntlm_authenticate(v2_auth, v2_type1, v2_type2)
    c = lab.link("10.2.1.72", 49880, "10.2.3.11")
    t = c.open(sec(23))
    v2_events, t = ntlm_dance(
        c,
        t + 200 * US,
        "portal.contoso.com",
        "/sites/finance/",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/122.0.0.0 Safari/537.36 Edg/122.0.0.0",
        (v2_type1, v2_type2, v2_type3),
        {"ntlm_user": "dave", "ntlm_domain": "CONTOSO", "workstation": "WS-0142"},
        "NTLMv2",
    )
    c.close(C, t + 300 * MS)
    cap.handshake("ntlm", "success", v2_events, "NTLMv2 with MIC")

    # 12. long-lived-token: a correctly signed app token valid for 7 days.
    week = cap.token(
        app_token(ks, sfb_iss, "ex08.contoso.com", T_FIND_S - 300, T_FIND_S - 300 + 7 * 86400),
        "bearer",
        ks,
        note="valid, correctly signed app-only token with a 7-day lifetime",
    )
    c = lab.link("10.2.1.81", 50109, "10.2.2.20")
    t = c.open(sec(26))
    t, e_week = ews(
        c, t, "ex08.contoso.com", authorization("Bearer", week), "week", "7-day token -> 200"
    )
    c.close(C, t + 200 * MS)
    cap.handshake("oauth-s2s", "success", [e_week], "7-day token accepted")

    # 13. token-exp-before-nbf: a signed app token whose exp is 100 s before its nbf, both
    # within the clock skew of its use (so neither expired nor not-yet-valid fires).
    never = cap.token(
        app_token(ks, sfb_iss, "ex08.contoso.com", T_FIND_S + 228, T_FIND_S + 128),
        "bearer",
        ks,
        note="correctly signed app-only token whose exp precedes its nbf by 100 s",
    )
    c = lab.link("10.2.1.82", 50221, "10.2.2.20")
    t = c.open(sec(28))
    t, e_never = ews(
        c, t, "ex08.contoso.com", authorization("Bearer", never), "never", "never valid, yet 200"
    )
    c.close(C, t + 200 * MS)
    cap.handshake("oauth-s2s", "success", [e_never], "token never valid, accepted anyway")

    # --- what the finding rules must say --------------------------------------------------------
    bearer = [
        *(e_early, e_skew, *replayed, e_forged, e_sp, e_aud, e_case, e_tr1, e_tr2, e_week),
        e_never,
    ]
    cap.expect(
        "cleartext-bearer",
        bearer,
        [e_sp_probe, e_tr_probe],
        "every presented bearer token (plain HTTP); the empty realm-discovery probes are not",
    )
    cap.expect("token-not-yet-valid", [e_early], [e_skew], "2 h early fires; 60 s is clock skew")
    cap.expect(
        "token-multiple-clients",
        replayed,
        [e_tr1, e_tr2, e_sp_probe, e_tr_probe],
        "one token from two addresses; a token reused by one client does not count, nor do the "
        "empty realm-discovery probes sent by two clients (they carry no token)",
    )
    cap.expect(
        "unsigned-token",
        [e_forged],
        [e_tr1, e_tr2],
        "alg none without actortoken; the S2S outer token (signed actor) is fine",
    )
    cap.expect(
        "untrusted-issuer",
        [e_sp],
        [e_sp_probe, e_tr_probe, e_tr1, e_tr2, e_early, e_aud],
        "SharePoint issuer vs trusted_issuers=SfB; SfB tokens to servers that trust SfB are fine",
    )
    cap.expect(
        "audience-host-mismatch",
        [e_aud],
        [e_case],
        "autodiscover vs mail fires; MAIL.contoso.com vs mail.contoso.com does not",
    )
    cap.expect("ntlmv1", [v1_events[2]], [v2_events[2]], "type 3 with a 24-byte NT response")
    cap.expect(
        "long-lived-token",
        [e_week],
        [e_tr1, e_tr2, *replayed, e_never],
        "7 days fires; 24 h and 8 h do not, nor a negative lifetime",
    )
    cap.expect(
        "token-exp-before-nbf",
        [e_never],
        [e_week, e_tr1],
        "exp 100 s before nbf; sane tokens not",
    )
    cap.expect("metadata-fetch-failed", [], [e_meta], "the metadata fetch succeeded")
    finish_findings(cap)
    return cap
