"""healthy-oauth.pcap: Skype for Business -> Exchange S2S OAuth working as designed (the
exchange-sfb lab on a good day): every finding rule stays silent but cleartext-bearer, there
only because the sample is plain HTTP.
"""

from __future__ import annotations

from ..capture import Capture
from ..constants import ACS_ID, EXCHANGE_ID, MS, REALM, SEC, SFB_ID, T0, US
from ..encoding import det_guid
from ..ews import create_item, create_item_response, get_folder, get_folder_response
from ..keys import TestKey
from ..lab import ALICE, BOB, CAROL, Lab, exchange_bearer, sfb_metadata_fetch
from ..messages import Response, authorization, challenge
from ..tokens import mint_rs256, mint_unsigned, user_context
from ..truth import finish_findings
from ..wire import C, Conn

T_HEALTHY = T0 + 4 * 3600 * SEC  # 13:00:00Z
T_HEALTHY_S = T_HEALTHY // SEC


def build_healthy(keys: dict[str, TestKey]) -> Capture:
    cap = Capture(
        "healthy-oauth.pcap",
        "Skype for Business -> Exchange S2S OAuth working as designed (the exchange-sfb lab on a "
        "good day), plain HTTP as if decrypted: Exchange fetches SfB's metadata, SfB probes the "
        "realm, then 6 EWS calls with SfB-signed actor tokens for three users, all 200.",
    )
    lab = Lab(cap, "healthy")
    ks = keys["sfb"]
    sfb_iss = f"{SFB_ID}@{REALM}"
    ex_aud = f"{EXCHANGE_ID}/mail.contoso.com@{REALM}"
    nbf = T_HEALTHY_S - 300
    e_meta = sfb_metadata_fetch(
        cap, lab, ("10.1.0.10", 27821, "10.1.0.20"), T_HEALTHY + 100 * MS, ks
    )
    actor = cap.token(
        mint_rs256(
            {
                "aud": ex_aud,
                "iss": sfb_iss,
                "nbf": str(nbf),
                "exp": str(nbf + 86400),
                "nameid": sfb_iss,
                "trustedfordelegation": "true",
            },
            ks,
        ),
        "actor",
        ks,
        note="SfB self-issued actor token (24 h)",
    )
    outers = {}
    for i, (who, user) in enumerate((("alice", ALICE), ("bob", BOB), ("carol", CAROL))):
        outers[who] = cap.token(
            mint_unsigned(user_context(ex_aud, sfb_iss, user, actor, nbf + i, nbf + i + 8 * 3600)),
            "outer",
            None,
            note=f"SfB user context for {who}",
        )
    users = {"alice": ALICE, "bob": BOB, "carol": CAROL}
    neg, ntlm = challenge("Negotiate"), challenge("NTLM")
    bearer_params = exchange_bearer(f"{ACS_ID}@*,{sfb_iss}")

    def call(c: Conn, t: int, who: str, create: bool, label: str) -> tuple[int, int | None]:
        user = users[who]
        body = create_item(user["upn"], "Alice Johnson") if create else get_folder(user["upn"])
        answer = create_item_response(label) if create else get_folder_response(label)
        req = lab.ews_request(body, authorization("Bearer", outers[who]), user["upn"], label)
        crid = ("client-request-id", det_guid("crid/" + label))
        resp = Response(200, "OK", lab.ex_headers(t, label, extra=[crid]), answer)
        what = "CreateItem" if create else "GetFolder"
        return cap.exchange(c, t, req, resp, f"S2S {who} {what} -> 200", think=19 * MS)

    c = lab.link("10.1.0.20", 52311, "10.1.0.10")
    t = c.open(T_HEALTHY + 2 * SEC)
    req = lab.ews_request(
        get_folder(ALICE["upn"]), authorization("Bearer", ""), ALICE["upn"], "h-probe"
    )
    resp = Response(
        401, "Unauthorized", lab.ex_headers(t, "h-probe", None, extra=[bearer_params, neg, ntlm])
    )
    t, e_probe = cap.exchange(c, t + 300 * US, req, resp, "S2S realm discovery (empty Bearer)")
    calls: list[int | None] = []
    for who, create, label in (("alice", False, "h1"), ("alice", True, "h2"), ("bob", False, "h3")):
        t, ev = call(c, t + 500 * MS, who, create, label)
        calls.append(ev)
    c.close(C, t + SEC)
    cap.handshake("oauth-s2s", "success", [e_probe, *calls], "realm discovery, then 3 calls")
    c = lab.link("10.1.0.20", 52312, "10.1.0.10")
    t = c.open(T_HEALTHY + 40 * SEC)
    second: list[int | None] = []
    for who, create, label in (("bob", True, "h4"), ("carol", False, "h5"), ("carol", True, "h6")):
        t, ev = call(c, t + 300 * MS, who, create, label)
        second.append(ev)
    c.close(C, t + SEC)
    cap.handshake("oauth-s2s", "success", second, "3 more calls on a new connection")
    everything = [e_meta, e_probe, *calls, *second]
    cap.expect(
        "cleartext-bearer",
        [*calls, *second],
        [e_meta, e_probe],
        "only because the sample is plain HTTP; the TLS recording covers the real deployment",
    )
    finish_findings(cap, everything)
    return cap
