"""Certificate and signing-key findings, the TLS blind-spot lines and the signing-key report.

The bundled ``certificates.pcap`` (truth in ``certificates.truth.json``, checked rule by rule in
test_findings.py) is the main fixture; the cases here are the edges: when a rule must stay
silent, keys given with ``--keys``, and how the reports name what was not inspected.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import pandas as pd
import pytest

import analyzer
from analyzer.analysis.coverage import blind_spot_lines, from_tls
from analyzer.analysis.findings import Context, run_rules
from analyzer.engine import AnalysisResult, analyze_paths
from analyzer.model import TlsConnection
from analyzer.oauth.keys import KeySource, KeyStore
from analyzer.report.html import render_html
from analyzer.report.table import write_table

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "captures"
KEYS = CAPTURES / "keys"
CERTS = CAPTURES / "certificates.pcap"
DAY = 86400.0
T = 1_772_463_600.0  # certificates.pcap's base time, 2026-03-02T15:00:00Z
ADVICE = "not inspected: pass --tls-keylog, or capture with Fiddler / a decrypting proxy"


@functools.cache
def certs() -> AnalysisResult:
    return analyze_paths([str(CERTS)])


def ids(result: AnalysisResult, rule_id: str) -> list[str]:
    return [f.detail for f in result.findings if f.rule_id == rule_id]


def test_the_tls_inventory_of_the_bundled_capture() -> None:
    got = [(t.sni, t.server_port, t.version, t.inspected) for t in certs().tls]
    assert got == [
        ("mail.contoso.com", 443, "TLS 1.2", False),
        ("sfbpool01.contoso.com", 443, "TLS 1.2", False),
        ("mail.contoso.com", 443, "TLS 1.3", False),
    ]
    mail, pool, tls13 = certs().tls
    assert mail.cert_not_after == T + 20 * DAY and pool.cert_not_after == T - 5 * DAY
    assert tls13.cert_sha1 is None and tls13.client_version == "TLS 1.3"


def test_findings_name_certificates_by_hex_thumbprint_and_subject() -> None:
    (expiring,) = ids(certs(), "signing-certificate-expiring")
    key = next(k for k in certs().signing_keys if k.not_after == T + 10 * DAY)
    assert key.thumbprint and key.thumbprint in expiring
    assert "CN=Microsoft Exchange Server Auth Certificate" in expiring
    assert "expires 10 days after the capture" in expiring
    assert "verifies 2 captured tokens" in expiring
    (expired,) = ids(certs(), "tls-certificate-expired")
    assert expired.startswith("sfbpool01.contoso.com (10.30.0.20:443) presented certificate ")
    assert "expired 5 days before the capture" in expired
    (unpublished,) = ids(certs(), "signing-key-unpublished")
    assert "x5t BLINUUSH3bd-U2V3Uu3leZey13A" in unpublished
    severities = {f.rule_id: f.severity for f in certs().findings}
    assert severities["tls-certificate-expired"] == "high"
    assert severities["tls-certificate-expiring"] == "medium"
    assert severities["signing-key-unused"] == "info"


def test_key_rules_need_both_the_metadata_and_the_tokens_of_an_issuer() -> None:
    result = certs()
    no_tokens = Context(
        result.events,
        result.handshakes,
        [t for t in result.tokens if t.format != "jwt"],
        result.verdicts,
        keys=result.signing_keys,
    )
    fired = {f.rule_id for f in run_rules(no_tokens)}
    assert not fired & {"signing-key-unused", "signing-key-unpublished"}
    from_files = [
        k.__class__(**{**k.__dict__, "source": KeySource("file", "x.pem", None, "pem")})
        for k in result.signing_keys
    ]
    no_metadata = Context(
        result.events, result.handshakes, result.tokens, result.verdicts, keys=from_files
    )
    fired = {f.rule_id for f in run_rules(no_metadata)}
    assert not fired & {"signing-key-unused", "signing-key-unpublished"}
    assert "signing-certificate-expiring" in fired  # expiry does not need the metadata


def test_healthy_captures_raise_none_of_the_new_rules() -> None:
    new = {
        "tls-certificate-expired",
        "tls-certificate-expiring",
        "signing-certificate-expired",
        "signing-certificate-expiring",
        "signing-key-unused",
        "signing-key-unpublished",
    }
    for name in ("healthy-oauth.pcap", "exchange-sfb.pcap", "findings.pcap"):
        assert not {f.rule_id for f in analyze_paths([str(CAPTURES / name)]).findings} & new


def test_a_key_file_near_expiry_is_reported(tmp_path: Path) -> None:
    cert = KEYS / "exchange-expiring.cert.pem"
    result = analyze_paths([str(CAPTURES / "small-basic.pcap")], key_files=[str(cert)])
    store = KeyStore()
    store.add_file(cert)
    (key,) = list(store)
    # small-basic.pcap was taken on 2026-03-02 too: the certificate has days left then
    (detail,) = ids(result, "signing-certificate-expiring")
    assert detail.startswith(f"signing certificate {key.thumbprint} (")
    assert str(cert) in detail and "verifies 0 captured tokens" in detail


def test_tls_certificate_rules_read_the_time_of_each_connection() -> None:
    base = dict(client_ip="10.0.0.1", client_port=5000, server_ip="10.0.0.2", server_port=443)
    conns = [
        TlsConnection("C1", T, **base, cert_sha1="AA", cert_not_after=T + 31 * DAY),
        TlsConnection("C2", T, **{**base, "server_port": 444}, cert_sha1="BB", cert_not_after=T),
        TlsConnection("C3", T, **{**base, "server_port": 445}, cert_not_after=T - DAY),
    ]
    fired = run_rules(Context([], [], [], [], tls=conns))
    assert [(f.rule_id, f.detail.split(" ")[0]) for f in fired] == [
        ("tls-certificate-expiring", "10.0.0.2:444")
    ]


def test_uninspected_tls_is_listed_per_server_named_by_sni() -> None:
    base = dict(client_ip="10.0.0.1", client_port=5000, server_ip="10.1.0.10", server_port=443)
    conns = [TlsConnection(f"C{i}", T + i, **base, sni="mail.contoso.com") for i in range(12)]
    conns.append(TlsConnection("D", T, **{**base, "server_ip": "10.1.0.11"}))
    conns.append(TlsConnection("E", T, **base, sni="mail.contoso.com", inspected=True))
    blind = [from_tls(t) for t in conns if not t.inspected]
    assert blind_spot_lines(blind) == [
        f"12 TLS connections to mail.contoso.com:443 (10.1.0.10) {ADVICE}",
        f"1 TLS connection to 10.1.0.11:443 {ADVICE}",
    ]
    many = [TlsConnection(f"F{i}", T, **{**base, "server_port": 1000 + i}) for i in range(25)]
    lines = blind_spot_lines([from_tls(t) for t in many])
    assert len(lines) == 21 and lines[-1] == "... and 5 more to 5 other servers not inspected"
    out = io.StringIO()
    write_table([], [], out, not_inspected=blind)
    assert f"Not inspected\n  12 TLS connections to mail.contoso.com:443 (10.1.0.10) {ADVICE}" in (
        out.getvalue()
    )


def test_html_report_shows_signing_keys_and_the_tls_inventory() -> None:
    page = render_html(analyzer.Analysis(certs()), with_charts=False)
    for key in certs().signing_keys:
        assert key.thumbprint and key.thumbprint in page
    assert "expires 10 days after the capture" in page  # the signing key's validity
    assert 'id="sec-keys"' in page and 'id="sec-tls"' in page
    assert f"2 TLS connections to mail.contoso.com:443 (10.30.0.10) {ADVICE}" in page
    assert "EC1D8A16F8E1A0C982298F2E6CB04496941E27B8" in page  # mail.contoso.com's TLS cert


def test_pandas_tls_table_has_proper_dtypes() -> None:
    frame = analyzer.Analysis(certs()).tls
    assert list(frame["sni"]) == ["mail.contoso.com", "sfbpool01.contoso.com", "mail.contoso.com"]
    assert str(frame["ts"].dtype) == "datetime64[us, UTC]"
    assert str(frame["cert_not_after"].dtype) == "datetime64[us, UTC]"
    assert frame["cert_not_after"].iloc[0] == pd.Timestamp("2026-03-22 15:00:00", tz="UTC")
    assert str(frame["server_port"].dtype) == "Int64"
    assert isinstance(frame["version"].dtype, pd.CategoricalDtype)
    assert frame["inspected"].tolist() == [False, False, False]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_exports_write_the_tls_table(tmp_path: Path, fmt: str) -> None:
    paths = getattr(analyzer.Analysis(certs()), f"to_{fmt}")(tmp_path)
    tls = next(p for p in paths if p.name == f"tls.{fmt}")
    assert "mail.contoso.com" in tls.read_text()


def test_a_cloud_jwks_key_that_signs_nothing_here_is_not_reported() -> None:
    result = certs()
    expiring = next(k for k in result.signing_keys if k.not_after == T + 10 * DAY)
    jwks = expiring.__class__(
        **{**expiring.__dict__, "source": KeySource("capture", "https://sts/keys", T, "jwks")}
    )
    quiet = Context([], [], [], [], tls=result.tls, keys=[jwks])
    assert "signing-certificate-expiring" not in {f.rule_id for f in run_rules(quiet)}
    used = Context([], [], [], [], tls=result.tls, keys=[jwks], token_keys={"fp": jwks})
    assert "signing-certificate-expiring" in {f.rule_id for f in run_rules(used)}


def _key_rules_with_metadata_issuer(issuer: str) -> dict[str, int]:
    """The signing-key findings of certificates.pcap had its metadata named ``issuer``."""
    import dataclasses

    result = certs()
    keys = [dataclasses.replace(k, metadata_issuer=issuer) for k in result.signing_keys]
    ctx = Context(result.events, result.handshakes, result.tokens, result.verdicts, keys=keys)
    out: dict[str, int] = {}
    for f in run_rules(ctx):
        if f.rule_id in ("signing-key-unused", "signing-key-unpublished"):
            out[f.rule_id] = out.get(f.rule_id, 0) + f.count
    return out


def test_key_rules_compare_the_metadata_issuers_realm() -> None:
    """The metadata's issuer names the tokens' issuer by app id and realm (case-folded, "*" for
    any realm): metadata of another realm says nothing about these tokens."""
    sfb = "00000004-0000-0ff1-ce00-000000000000"
    assert _key_rules_with_metadata_issuer(f"{sfb}@fabrikam.com") == {}
    for realm in ("*", "CONTOSO.COM"):
        # the SfB tokens name x5t BLINUU..., which none of the three published keys is
        got = _key_rules_with_metadata_issuer(f"{sfb}@{realm}")
        assert got == {"signing-key-unpublished": 1, "signing-key-unused": 3}


EXO_APP = "00000002-0000-0ff1-ce00-000000000000"
EXO_USED = "H-4y4qTCExnM-tOGcrzkjcYcO80"  # x5t of the key the Exchange tokens name
EXO_USED_HEX = "1FEE32E2A4C21319CCFAD38672BCE48DC61C3BCD"
EXO_OTHER = "49CC6B92EF1042EF9CC723066B23C091B07F785B"  # the other key its metadata publishes


def _exchange_key_findings(key_kid: str | None = None, **token: str | None) -> list[str]:
    """Signing-key findings (every instance) about the Exchange issuer of certificates.pcap,
    its two tokens' header (``x5t``, ``kid``) or issuer changed to ``token``; every published
    key given ``kid``."""
    import dataclasses

    result = certs()
    tokens = [
        dataclasses.replace(t, **token) if t.iss and t.iss.startswith(EXO_APP) else t
        for t in result.tokens
    ]
    keys = [dataclasses.replace(k, kid=key_kid) for k in result.signing_keys]
    ctx = Context(result.events, result.handshakes, tokens, result.verdicts, keys=keys)
    return sorted(
        f"{f.rule_id}: {detail}"
        for f in run_rules(ctx)
        if f.rule_id.startswith("signing-key-")
        for detail in f.examples
        if detail.split(" ")[0].startswith(EXO_APP) or f" of {EXO_APP}" in detail
    )


def test_a_kid_names_a_published_key_by_its_thumbprint_in_any_spelling() -> None:
    """Tokens that name their key by kid (no x5t): a kid holding the key's thumbprint, as
    base64url or as hex, names it; only the other published key is then unused."""
    unused_other = [
        f"signing-key-unused: {EXO_APP}@contoso.com publishes {EXO_OTHER} "
        "(O=TEST KEY - oauth-traffic-analyzer,CN=Microsoft Exchange Server Auth Certificate) at "
        "http://mail.contoso.com/autodiscover/metadata/json/1, but none of its 2 signed tokens "
        "in the capture uses it"
    ]
    assert _exchange_key_findings() == unused_other  # as captured: x5t
    assert _exchange_key_findings(x5t=None, kid=EXO_USED) == unused_other
    assert _exchange_key_findings(x5t=None, kid=EXO_USED_HEX) == unused_other


def test_a_kid_that_is_no_published_key_is_an_unpublished_key() -> None:
    got = _exchange_key_findings(x5t=None, kid="exchange-2026")
    assert [d.split(":")[0] for d in got] == ["signing-key-unpublished"] + [
        "signing-key-unused"
    ] * 2
    assert got[0].startswith(
        f"signing-key-unpublished: 2 tokens of {EXO_APP}@contoso.com name kid exchange-2026, "
        f"but its metadata publishes only {EXO_USED_HEX} ("
    )
    # keys published with that kid are the ones the tokens name, whatever their x5t
    assert _exchange_key_findings("exchange-2026", x5t=None, kid="exchange-2026") == []


def test_metadata_and_tokens_without_a_realm_are_the_same_issuer() -> None:
    """An issuer written without a realm matches only a token issuer without one."""
    import dataclasses

    result = certs()
    keys = [dataclasses.replace(k, metadata_issuer=EXO_APP) for k in result.signing_keys]
    for iss, fired in ((EXO_APP, 1), (f"{EXO_APP}@contoso.com", 0)):
        tokens = [dataclasses.replace(t, iss=iss) for t in result.tokens]
        ctx = Context(result.events, result.handshakes, tokens, result.verdicts, keys=keys)
        unpublished = [f for f in run_rules(ctx) if f.rule_id == "signing-key-unpublished"]
        assert sum(f.count for f in unpublished) == fired  # the SfB tokens' x5t: unpublished


@pytest.mark.parametrize(
    ("names", "shown"),
    [
        (
            {},
            f"{EXO_OTHER} (O=TEST KEY - oauth-traffic-analyzer,CN=Microsoft Exchange Server Auth "
            "Certificate)",
        ),
        ({"subject": None}, f"{EXO_OTHER}"),
        ({"x5t": "exo-two", "kid": "exo-2", "subject": None}, "exo-two"),  # not a SHA-1
        ({"x5t": None, "kid": "exo-2", "subject": None}, "exo-2"),
        ({"x5t": None, "kid": None, "subject": None}, "(no thumbprint)"),
    ],
)
def test_a_key_without_a_certificate_is_named_by_x5t_then_kid(names: dict, shown: str) -> None:
    """A published key is named by its hex thumbprint (and subject) when it has a certificate,
    else by its x5t, else by its kid (a bare JWK)."""
    import dataclasses

    result = certs()
    keys = [
        dataclasses.replace(k, **names) if k.x5t == "Scxrku8QQu-cxyMGayPAkbB_eFs" else k
        for k in result.signing_keys
    ]
    ctx = Context(result.events, result.handshakes, result.tokens, result.verdicts, keys=keys)
    unused = [d for f in run_rules(ctx) if f.rule_id == "signing-key-unused" for d in f.examples]
    assert f"{EXO_APP}@contoso.com publishes {shown} at http://mail." in "".join(unused)
    assert f"{EXO_APP}@contoso.com publishes {shown} (None)" not in "".join(unused)


def test_a_certificate_finding_names_every_server_name_and_only_that_servers_requests() -> None:
    """One finding per server and certificate: its server names (SNI) all listed, its evidence
    the requests to that address and port, or to one of those names."""
    import dataclasses

    result = certs()
    pool = next(t for t in result.tls if t.sni == "sfbpool01.contoso.com")
    again = dataclasses.replace(pool, conn_id="C2", sni="lync.contoso.com", ts=pool.ts + 1)

    def expired(*tls: TlsConnection, events: list | None = None) -> tuple[str, tuple[int, ...]]:
        ctx = Context(events or result.events, [], [], [], tls=list(tls))
        (f,) = [f for f in run_rules(ctx) if f.rule_id == "tls-certificate-expired"]
        return f.detail, f.event_ids

    detail, events = expired(pool, again)
    assert detail.startswith(
        "lync.contoso.com, sfbpool01.contoso.com (10.30.0.20:443) presented certificate "
    )
    assert detail.endswith("; 2 TLS connections") and events == (2, 3, 4)
    # without a server name, requests to the same address on another port are not evidence
    detail, events = expired(dataclasses.replace(pool, sni=None))
    assert detail.startswith("10.30.0.20:443 presented certificate ") and events == ()
    # ... and requests to that address and port are, requests to that port elsewhere are not
    assert expired(dataclasses.replace(pool, sni=None, server_port=80))[1] == (2, 3, 4)
    # a Host naming the server with a port, in another case or as an FQDN with its trailing
    # dot is the server too (to another address: a load balancer, say)
    for host in ("SFBPOOL01.contoso.com:8443", "sfbpool01.contoso.com."):
        moved = [
            dataclasses.replace(e, host=host, server_ip="10.30.0.99") if e.event_id == 2 else e
            for e in result.events
        ]
        assert expired(pool, events=moved)[1] == (2, 3, 4), host
    # a Host of another name is not, nor a request without Host elsewhere
    for host in ("sfbpool01.contoso.com.evil.test", "[fe80::1]:443", None):
        moved = [
            dataclasses.replace(e, host=host, server_ip="10.30.0.99") if e.event_id == 2 else e
            for e in result.events
        ]
        assert expired(pool, events=moved)[1] == (3, 4), host


def test_a_cloud_jwks_key_does_not_hide_the_signing_keys_after_it() -> None:
    result = certs()
    expiring = next(k for k in result.signing_keys if k.not_after == T + 10 * DAY)
    jwks = expiring.__class__(
        **{**expiring.__dict__, "source": KeySource("capture", "https://sts/keys", T, "jwks")}
    )
    both = Context([], [], [], [], tls=result.tls, keys=[jwks, expiring])
    (f,) = [f for f in run_rules(both) if f.rule_id == "signing-certificate-expiring"]
    assert f.detail.startswith(f"signing certificate {expiring.thumbprint} (")
    assert "published by 00000002-0000-0ff1-ce00-000000000000@contoso.com" in f.detail
