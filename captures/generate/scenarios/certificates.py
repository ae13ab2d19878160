"""certificates.pcap: certificates about to break S2S (an auth certificate expiring, a renewed one
its metadata does not publish, TLS certificates expiring or expired) and the certificates derived
from the TEST keys for that story (committed as ``keys/<name>.cert.pem``).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from ..capture import Capture
from ..constants import EXCHANGE_ID, KEYS_DIR, MS, REALM, SEC, SFB_ID, T0, US
from ..encoding import b64, http_date, json_bytes, prng
from ..ews import get_folder, get_folder_response
from ..keys import TestKey
from ..lab import ALICE, Lab, exchange_metadata, sfb_metadata
from ..messages import Request, Response, authorization
from ..tls import tls_client_hello, tls_message, tls_record, tls_server_flight
from ..tokens import app_token, mint_rs256
from ..truth import finish_findings
from ..wire import C, S

T_CERTS = T0 + 6 * 3600 * SEC  # 15:00:00Z
T_CERTS_S = T_CERTS // SEC
DAY_S = 86400

#: Certificates of the certificates.pcap story, made from the TEST keys (name: key, CN, days
#: before / after the capture it is valid). The token-signing ones are committed next to the
#: keys (``keys/<name>.cert.pem``, written by ``--new-keys``) so the truth tests can read them.
DERIVED_CERTS: dict[str, tuple[str, str, int, int]] = {
    "exchange-expiring": ("exchange", "Microsoft Exchange Server Auth Certificate", 355, 10),
    "exchange-next": ("acs", "Microsoft Exchange Server Auth Certificate", 1, 1825),
    "sfb-expired": ("acs", "sfbpool01.contoso.com", 733, -3),
    "sfb-renewed": ("acs", "sfbpool01.contoso.com", 3, 730),
}
#: TLS server certificates (in the capture only).
TLS_CERTS: dict[str, tuple[str, str, int, int]] = {
    "mail-tls": ("exchange", "mail.contoso.com", 345, 20),
    "sfb-tls": ("acs", "sfbpool01.contoso.com", 370, -5),
}


def derived_cert(keys: dict[str, TestKey], spec: tuple[str, str, int, int]) -> x509.Certificate:
    """A certificate for one TEST key with the validity the story needs. Deterministic: fixed
    serial and dates, and RSA PKCS#1 v1.5 signatures do not use randomness."""
    key_name, cn, before, after = spec
    key = keys[key_name].private_key
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TEST KEY - oauth-traffic-analyzer"),
        ]
    )
    start = dt.datetime.fromtimestamp(T_CERTS_S - before * DAY_S, dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(prng(f"serial/{cn}/{before}", 8), "big") >> 1)
        .not_valid_before(start)
        .not_valid_after(dt.datetime.fromtimestamp(T_CERTS_S + after * DAY_S, dt.timezone.utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def derived_keys(keys: dict[str, TestKey]) -> dict[str, TestKey]:
    """The signing identities of certificates.pcap: a TEST key with one of ``DERIVED_CERTS``."""
    out = {}
    for name, spec in DERIVED_CERTS.items():
        cert = derived_cert(keys, spec)
        path = KEYS_DIR / f"{name}.cert.pem"
        if path.is_file():  # the committed copy must be this very certificate
            assert x509.load_pem_x509_certificate(path.read_bytes()) == cert, path
        out[name] = TestKey(name, keys[spec[0]].private_key, cert)
    return out


def write_derived_certs(keys: dict[str, TestKey], keys_dir: Path = KEYS_DIR) -> None:
    for name, spec in DERIVED_CERTS.items():
        pem = derived_cert(keys, spec).public_bytes(serialization.Encoding.PEM)
        (keys_dir / f"{name}.cert.pem").write_bytes(pem)


def tls_connection(
    lab: Lab,
    link: tuple[str, int, str, int],
    start: int,
    sni: str,
    cert_der: bytes | None,
) -> int:
    """One HTTPS connection nobody decrypted: handshake in the clear, then encrypted records."""
    c = lab.link(*link)
    label = f"tls/{link[1]}"
    t = c.open(start)
    _, t = c.send(C, t + 200 * US, tls_client_hello(sni))
    _, t = c.send(S, t + 2 * MS, tls_server_flight(label, cert_der))
    if cert_der is not None:
        finish = tls_record(22, tls_message(16, b"\x20" + prng(f"{label}/cke", 32)))
        finish += tls_record(20, b"\x01") + tls_record(22, prng(f"{label}/fin-c", 40))
        _, t = c.send(C, t + 2 * MS, finish)
        _, t = c.send(S, t + 2 * MS, tls_record(20, b"\x01") + tls_record(22, prng(label, 40)))
    _, t = c.send(C, t + 3 * MS, tls_record(23, prng(f"{label}/request", 1800)))
    _, t = c.send(S, t + 20 * MS, tls_record(23, prng(f"{label}/response", 3000)))
    return c.close(C, t + 50 * MS)


def metadata_fetch(
    cap: Capture,
    lab: Lab,
    link: tuple[str, int, str],
    start: int,
    host: str,
    path: str,
    doc: dict[str, Any],
    note: str,
) -> int | None:
    """GET of an auth metadata document -> 200 (plain HTTP, as if decrypted)."""
    c = lab.link(*link)
    t = c.open(start)
    req = Request("GET", path, [("Host", host), ("Connection", "Keep-Alive")])
    resp = Response(
        200,
        "OK",
        [
            ("Content-Type", "application/json; charset=utf-8"),
            ("Date", http_date(t + 4 * MS)),
            ("Content-Length", "{len}"),
        ],
        json_bytes(doc),
    )
    t, event = cap.exchange(c, t + 200 * US, req, resp, note)
    c.close(C, t + 30 * MS)
    cap.handshake("metadata", "success", [event], note)
    return event


def with_keys(doc: dict[str, Any], *published: TestKey) -> dict[str, Any]:
    """A metadata document publishing exactly ``published`` (in that order)."""
    keys = [
        {
            "usage": "signing",
            "keyinfo": {"x5t": key.x5t},
            "keyvalue": {"type": "x509Certificate", "value": b64(key.der)},
        }
        for key in published
    ]
    return {**doc, "keys": keys}


def build_certificates(keys: dict[str, TestKey]) -> Capture:
    cap = Capture(
        "certificates.pcap",
        "Certificates that are about to break S2S, plain HTTP as if decrypted, plus HTTPS nobody "
        "decrypted: Exchange's auth certificate expires in 10 days (its metadata also publishes "
        "an unused next certificate); Skype for Business renewed its certificate but its metadata "
        "still publishes the old one, expired 3 days ago; the TLS certificate of mail.contoso.com "
        "expires in 20 days and that of sfbpool01.contoso.com expired 5 days ago (TLS 1.2); one "
        "TLS 1.3 connection shows no certificate.",
    )
    lab = Lab(cap, "certificates")
    derived = derived_keys(keys)
    ex_iss, sfb_iss = f"{EXCHANGE_ID}@{REALM}", f"{SFB_ID}@{REALM}"
    exchange_ip, sfb_ip = "10.30.0.10", "10.30.0.20"
    ex_expiring, ex_next = derived["exchange-expiring"], derived["exchange-next"]
    sfb_expired, sfb_renewed = derived["sfb-expired"], derived["sfb-renewed"]

    def sec(n: float) -> int:
        return T_CERTS + int(n * SEC)

    # 1. SfB reads Exchange's metadata: the current certificate (10 days left) and the next one.
    e_ex_meta = metadata_fetch(
        cap,
        lab,
        (sfb_ip, 51001, exchange_ip),
        sec(0.1),
        "mail.contoso.com",
        "/autodiscover/metadata/json/1",
        with_keys(exchange_metadata(keys["exchange"]), ex_expiring, ex_next),
        "SfB fetches Exchange's metadata: current certificate expires in 10 days, next published",
    )
    # 2. Exchange calls SfB with app tokens signed with the expiring certificate.
    ex_calls: list[int | None] = []
    c = lab.link(exchange_ip, 51002, sfb_ip)
    t = c.open(sec(2))
    for i in range(2):
        nbf = T_CERTS_S + 2 + i - 300
        payload = {
            "aud": f"{SFB_ID}/sfbpool01.contoso.com@{REALM}",
            "iss": ex_iss,
            "nbf": str(nbf),
            "exp": str(nbf + 86400),
            "nameid": ex_iss,
        }
        token = cap.token(
            mint_rs256(payload, ex_expiring),
            "bearer",
            ex_expiring,
            note=f"Exchange app token {i + 1}, signed with the certificate that expires in 10 days",
        )
        req = Request(
            "GET",
            f"/ucwa/oauth/v1/applications/{1000 + i}",
            [("Host", "sfbpool01.contoso.com"), authorization("Bearer", token)],
        )
        resp = Response(
            200,
            "OK",
            [("Content-Type", "application/json"), ("Content-Length", "{len}")],
            b'{"id":"' + str(1000 + i).encode() + b'"}',
        )
        t, event = cap.exchange(c, t + 300 * MS, req, resp, f"Exchange -> SfB app call {i + 1}")
        ex_calls.append(event)
    c.close(C, t + SEC)
    cap.handshake("oauth-s2s", "success", ex_calls, "Exchange app calls to SfB")

    # 3. Exchange reads SfB's metadata: only the old certificate, expired 3 days ago.
    e_sfb_meta = metadata_fetch(
        cap,
        lab,
        (exchange_ip, 51003, sfb_ip),
        sec(10),
        "sfbpool01.contoso.com",
        "/metadata/json/1",
        with_keys(sfb_metadata(keys["sfb"]), sfb_expired),
        "Exchange fetches SfB's metadata: still the old certificate, expired 3 days ago",
    )
    # 4. SfB calls Exchange with app tokens signed with its renewed, unpublished certificate.
    sfb_calls: list[int | None] = []
    c = lab.link(sfb_ip, 51004, exchange_ip)
    t = c.open(sec(12))
    for i in range(2):
        nbf = T_CERTS_S + 12 + i - 300
        token = cap.token(
            app_token(sfb_renewed, sfb_iss, "mail.contoso.com", nbf, nbf + 86400),
            "bearer",
            sfb_renewed,
            note=f"SfB app token {i + 1}, signed with the renewed certificate nobody published",
        )
        req = lab.ews_request(
            get_folder(ALICE["upn"]),
            authorization("Bearer", token),
            ALICE["upn"],
            f"c{i}",
        )
        resp = Response(200, "OK", lab.ex_headers(t, f"c{i}"), get_folder_response(f"c{i}"))
        t, event = cap.exchange(c, t + 300 * MS, req, resp, f"SfB -> Exchange app call {i + 1}")
        sfb_calls.append(event)
    c.close(C, t + SEC)
    cap.handshake("oauth-s2s", "success", sfb_calls, "SfB app calls to Exchange")

    # 5-7. HTTPS nobody decrypted.
    mail_tls = derived_cert(keys, TLS_CERTS["mail-tls"]).public_bytes(serialization.Encoding.DER)
    sfb_tls = derived_cert(keys, TLS_CERTS["sfb-tls"]).public_bytes(serialization.Encoding.DER)
    mail, pool = "mail.contoso.com", "sfbpool01.contoso.com"
    tls_connection(lab, (sfb_ip, 51005, exchange_ip, 443), sec(20), mail, mail_tls)
    tls_connection(lab, (exchange_ip, 51006, sfb_ip, 443), sec(21), pool, sfb_tls)
    tls_connection(lab, ("10.30.0.40", 51007, exchange_ip, 443), sec(22), mail, None)

    to_mail = [e_ex_meta, *sfb_calls]  # events that went to mail.contoso.com
    to_sfb = [*ex_calls, e_sfb_meta]
    everything = [*to_mail, *to_sfb]
    cap.expect(
        "cleartext-bearer",
        [*ex_calls, *sfb_calls],
        [e_ex_meta, e_sfb_meta],
        "only because the sample is plain HTTP",
    )
    cap.expect("tls-certificate-expired", to_sfb, to_mail, "sfbpool01.contoso.com's certificate")
    cap.expect("tls-certificate-expiring", to_mail, to_sfb, "mail.contoso.com's certificate")
    cap.expect(
        "signing-certificate-expired",
        [e_sfb_meta],
        [e_ex_meta, *ex_calls, *sfb_calls],
        "SfB's published certificate; its tokens use another one",
    )
    cap.expect(
        "signing-certificate-expiring",
        [e_ex_meta, *ex_calls],
        [e_sfb_meta, *sfb_calls],
        "Exchange's certificate: the metadata that publishes it and the tokens it signs",
    )
    cap.expect(
        "signing-key-unused",
        [e_ex_meta, e_sfb_meta],
        [*ex_calls, *sfb_calls],
        "Exchange's next certificate and SfB's expired one: the documents that publish them",
    )
    cap.expect(
        "signing-key-unpublished",
        sfb_calls,
        [e_ex_meta, e_sfb_meta, *ex_calls],
        "SfB signs with a certificate its metadata does not publish",
    )
    finish_findings(cap, everything)
    return cap
