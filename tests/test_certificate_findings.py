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
