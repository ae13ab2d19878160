"""The finding rules at their edges, on small captures of real packets: how instances of a rule
become one finding per client -> server pair, and what each detail line says."""

from __future__ import annotations

import base64
from pathlib import Path

from wire_kit import OK, write_capture

from analyzer.engine import analyze_paths
from analyzer.model import Finding

DENIED = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"


def request(host: bytes, auth: bytes, uri: bytes = b"/ews") -> bytes:
    head = b"GET " + uri + b" HTTP/1.1\r\nHost: " + host
    return head + b"\r\nAuthorization: " + auth + b"\r\n\r\n"


def basic(user: str, password: str = "pw") -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


def findings(path: str, rule_id: str) -> list[Finding]:
    return [f for f in analyze_paths([path]).findings if f.rule_id == rule_id]


def test_two_instances_on_one_pair_are_one_finding_that_counts_them(tmp_path: Path) -> None:
    path = write_capture(
        tmp_path / "two-users.pcap",
        [(request(b"web.test", basic("alice")), OK)],
        [(request(b"web.test", basic("bob")), DENIED)],
    )
    (f,) = findings(path, "cleartext-basic")
    assert f.count == 2 and f.event_ids == (1, 2)
    assert f.detail == (
        "2 times 10.9.9.1 -> web.test (10.9.9.2:80); first: alice: 1 request "
        "10.9.9.1 -> web.test (10.9.9.2:80); server answered 200"
    )
    assert f.examples == (
        "alice: 1 request 10.9.9.1 -> web.test (10.9.9.2:80); server answered 200",
        "bob: 1 request 10.9.9.1 -> web.test (10.9.9.2:80); server answered 401",
    )
    one = write_capture(tmp_path / "one.pcap", [(request(b"web.test", basic("alice")), OK)])
    (f,) = findings(one, "cleartext-basic")
    assert f.count == 1 and f.detail == f.examples[0]


def test_a_pair_is_told_apart_by_its_host_name_case_folded(tmp_path: Path) -> None:
    bearer = b"Bearer abc.def.ghi"
    same = write_capture(
        tmp_path / "same.pcap",
        [(request(b"WEB.test", bearer), OK)],
        [(request(b"web.TEST", bearer), OK)],
    )
    assert [f.event_ids for f in findings(same, "cleartext-bearer")] == [(1, 2)]
    # "STRASSE" is "straße" upper-cased, yet another host name
    other = write_capture(
        tmp_path / "other.pcap",
        [(request("straße.test".encode("latin-1"), bearer), OK)],
        [(request(b"STRASSE.test", bearer), OK)],
    )
    assert sorted(f.event_ids for f in findings(other, "cleartext-bearer")) == [(1,), (2,)]
    # a request without Host is a pair of its own, whatever the other hosts are called
    bare = b"GET /ews HTTP/1.0\r\nAuthorization: " + bearer + b"\r\n\r\n"
    nameless = write_capture(
        tmp_path / "nameless.pcap", [(bare, OK)], [(request(b"xxxx", bearer), OK)]
    )
    assert sorted(f.event_ids for f in findings(nameless, "cleartext-bearer")) == [(1,), (2,)]


def _certificate(path: Path, not_after: float) -> str:
    """A TEST-ONLY self-signed certificate valid until ``not_after``, written as PEM."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signer.test")])
    end = dt.datetime.fromtimestamp(not_after, dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(end - dt.timedelta(days=365)).not_valid_after(end)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


def test_a_finding_about_the_capture_as_a_whole_comes_first_of_its_severity(
    tmp_path: Path,
) -> None:
    """Findings go most severe first, then by time; one without evidence events (a key file's
    certificate) has no time and leads its severity, even before traffic at 0.5 s after the
    epoch (a capture written with relative times)."""
    import scapy.all as scapy
    from wire_kit import connection

    fetch = b"GET /metadata/json/1 HTTP/1.1\r\nHost: sts.test\r\n\r\n"
    gone = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
    path = tmp_path / "early.pcap"
    scapy.wrpcap(str(path), connection([(fetch, gone)], 40001, 0.5))
    cert = _certificate(tmp_path / "signer.pem", 10 * 86400.0)  # expires 10 days in
    result = analyze_paths([str(path)], key_files=[cert])
    got = [(f.severity, f.rule_id, f.first_ts) for f in result.findings]
    assert got == [
        ("medium", "signing-certificate-expiring", None),
        ("medium", "metadata-fetch-failed", 0.53),
    ]


def test_credentials_beside_another_are_cleartext_findings_too(tmp_path: Path) -> None:
    """Two different tokens in one request (its event's scheme is ``other``), and a Basic
    password after an NTLM leg: each crossed in the clear, and no finding said so (review 8:
    F4, F5). A Basic password beside another credential is named by no user: the event's user
    is the other credential's."""
    two = b"Bearer abc.def.ghi\r\nAuthorization: Bearer jkl.mno.pqr"
    path = write_capture(tmp_path / "two.pcap", [(request(b"web.test", two), OK)])
    (f,) = findings(path, "cleartext-bearer")
    assert f.event_ids == (1,) and f.detail.startswith("1 request, 1 distinct token")
    digest = b'Digest username="carol", realm="web", nonce="1", uri="/ews", response="00"'
    both = digest + b"\r\nAuthorization: " + basic("bob")
    path = write_capture(tmp_path / "beside.pcap", [(request(b"web.test", both), OK)])
    (f,) = findings(path, "cleartext-basic")
    assert f.detail.startswith("(no user): 1 request 10.9.9.1 -> web.test")
