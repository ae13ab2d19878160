"""SIP test traffic: Skype for Business (MS-SIPAE) and Digest sign-ins as real bytes.

Messages carry the security tokens MS-SIPAE puts in ``gssapi-data``, made by the capture
generator (``captures/generate``): NTLM NEGOTIATE / CHALLENGE / AUTHENTICATE computed for real,
Kerberos AP-REQ / AP-REP in their GSS framing, TLS handshake records with a client certificate
made here. ``udp_capture`` and ``tcp_capture`` write them as pcaps with scapy, over UDP (one
datagram per message) or TCP (split across segments, or several in one segment).
"""

from __future__ import annotations

import base64
import datetime as dt
import socket
import struct
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from token_kit import generated

T0 = 1_772_442_000.0  # 2026-03-02T09:00:00Z
CLIENT, SERVER = "10.20.0.15", "10.20.0.5"
FE = "fe01.contoso.com"
REALM = "SIP Communications Service"
ALICE = "sip:alice@contoso.com"
#: (side, message bytes): side 0 is the client, 1 the server.
Message = tuple[int, bytes]


#: A module of the capture generator (``ntlm``, ``kerberos``, ``tls``, ``der``).
gen = generated


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Dialog:
    """Requests of one Call-ID from the client, and the server's answers to them."""

    def __init__(self, call_id: str, method: str = "REGISTER", uri: str = "sip:contoso.com"):
        self.call_id = call_id
        self.method = method
        self.uri = uri
        self.cseq = 0
        self.last: tuple[str, int, str] = ("", 0, "")  # branch, cseq, method of the last request

    def request(
        self, headers: Sequence[str] = (), method: str | None = None, body: bytes = b""
    ) -> bytes:
        method = method or self.method
        self.cseq += 1
        branch = f"z9hG4bK{self.call_id[:6]}{self.cseq:04d}"
        self.last = (branch, self.cseq, method)
        lines = [
            f"{method} {self.uri} SIP/2.0",
            f"Via: SIP/2.0/TLS {CLIENT}:50123;branch={branch}",
            "Max-Forwards: 70",
            f'From: "Alice" <{ALICE}>;tag=a1b2c3;epid=0123456789',
            f"To: <{ALICE}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} {method}",
            "User-Agent: UCCAPI/16.0.4266.1001 OC/16.0.4266.1001 (Skype for Business)",
            *headers,
            f"Content-Length: {len(body)}",
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def response(self, status: int, reason: str, headers: Sequence[str] = ()) -> bytes:
        branch, cseq, method = self.last
        lines = [
            f"SIP/2.0 {status} {reason}",
            f"Via: SIP/2.0/TLS {CLIENT}:50123;branch={branch};ms-received-port=50123",
            f'From: "Alice" <{ALICE}>;tag=a1b2c3;epid=0123456789',
            f"To: <{ALICE}>;tag=f00dfeed",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {method}",
            *headers,
            "Content-Length: 0",
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()


def offer() -> list[str]:
    """The 401's offer of the three MS-SIPAE schemes."""
    return [
        f'WWW-Authenticate: NTLM realm="{REALM}", targetname="{FE}", version=4',
        f'WWW-Authenticate: Kerberos realm="{REALM}", targetname="sip/{FE}", version=4',
        f'WWW-Authenticate: TLS-DSK realm="{REALM}", targetname="{FE}", version=4, '
        f'sts-uri="https://{FE}:443/CertProv/CertProvisioningService.svc"',
    ]


def signed(scheme: str, opaque: str, cnum: int) -> str:
    """The Authorization header of a message signed in an established association."""
    target = f"sip/{FE}" if scheme == "Kerberos" else FE
    return (
        f'Authorization: {scheme} qop="auth", opaque="{opaque}", realm="{REALM}", '
        f'targetname="{target}", crand="{cnum:08x}", cnum="{cnum}", '
        f'response="{cnum:02x}0102030405060708090a0b0c0d0e0f"'
    )


def leg(scheme: str, gssapi: str, opaque: str | None = None) -> str:
    """The Authorization header of one handshake leg."""
    target = f"sip/{FE}" if scheme == "Kerberos" else FE
    op = f', opaque="{opaque}"' if opaque else ""
    return (
        f'Authorization: {scheme} qop="auth", realm="{REALM}"{op}, targetname="{target}", '
        f'gssapi-data="{gssapi}", version=4'
    )


def server_leg(scheme: str, gssapi: str, opaque: str) -> str:
    target = f"sip/{FE}" if scheme == "Kerberos" else FE
    return (
        f'WWW-Authenticate: {scheme} opaque="{opaque}", gssapi-data="{gssapi}", '
        f'targetname="{target}", realm="{REALM}", version=4'
    )


def authentication_info(scheme: str, opaque: str) -> str:
    return (
        f'Authentication-Info: {scheme} opaque="{opaque}", qop="auth", realm="{REALM}", '
        f'targetname="{FE}", rspauth="0011223344556677", srand="89ABCDEF", snum="1"'
    )


def ntlm_blobs(user: str = "alice", password: str = "Passw0rd!") -> tuple[bytes, bytes, bytes]:
    """NTLM NEGOTIATE, CHALLENGE (from fe01) and AUTHENTICATE (CONTOSO\\alice), computed."""
    ntlm = gen("ntlm")
    type1 = ntlm.ntlm_negotiate()
    info = ntlm.ntlm_target_info(int(T0), computer="FE01", dns_computer=FE)
    type2 = ntlm.ntlm_challenge(b"\x11\x22\x33\x44\x55\x66\x77\x88", info)
    auth = ntlm.NtlmAuth(
        domain="CONTOSO",
        user=user,
        password=password,
        workstation="WS042",
        spn=f"sip/{FE}",
        client_challenge=b"\x0a" * 8,
        exported_session_key=b"\x0b" * 16,
    )
    return type1, type2, ntlm.ntlm_authenticate(auth, type1, type2)


def ntlm_register(opaque: str = "4A5B6C7D", subscribe: bool = True) -> list[Message]:
    """REGISTER -> 401 offer -> NTLM type 1 -> 401 type 2 (opaque) -> type 3, signed -> 200,
    then (``subscribe``) a SUBSCRIBE and a SERVICE signed in the association -> 200."""
    type1, type2, type3 = ntlm_blobs()
    reg = Dialog("ntlm-reg-0001")
    out: list[Message] = [(0, reg.request())]
    out.append((1, reg.response(401, "Unauthorized", offer())))
    out.append((0, reg.request([leg("NTLM", b64(type1))])))
    out.append((1, reg.response(401, "Unauthorized", [server_leg("NTLM", b64(type2), opaque)])))
    auth = leg("NTLM", b64(type3), opaque) + ', crand="a1b2c3d4", cnum="1", response="00ff"'
    out.append((0, reg.request([auth])))
    out.append((1, reg.response(200, "OK", [authentication_info("NTLM", opaque)])))
    if subscribe:
        sub = Dialog("ntlm-sub-0002", "SUBSCRIBE", ALICE)
        out.append((0, sub.request([signed("NTLM", opaque, 2), "Event: vnd-microsoft-roaming"])))
        out.append((1, sub.response(200, "OK", [authentication_info("NTLM", opaque)])))
        svc = Dialog("ntlm-svc-0003", "SERVICE", ALICE)
        out.append((0, svc.request([signed("NTLM", opaque, 3)], body=b"<xml/>")))
        out.append((1, svc.response(200, "OK")))
    return out


def kerberos_register(opaque: str = "1F2E3D4C") -> list[Message]:
    """REGISTER with a Kerberos AP-REQ for sip/fe01 -> 401 AP-REP (opaque) -> signed -> 200."""
    krb, der = gen("kerberos"), gen("der")
    ap_req = krb.kerberos_ap_req("CONTOSO.COM", "sip", FE, "sip-krb")
    token = der.der(0x60, der.der_oid(krb.OID_KRB5) + b"\x01\x00" + ap_req)
    ap_rep = der.der(
        0x6F,
        der.seq(
            der.ctx(0, der.der_int(5)),
            der.ctx(1, der.der_int(15)),
            der.ctx(2, krb._krb_enc_data(18, b"\x42" * 118)),
        ),
    )
    reply = der.der(0x60, der.der_oid(krb.OID_KRB5) + b"\x02\x00" + ap_rep)
    reg = Dialog("krb-reg-0001")
    return [
        (0, reg.request()),
        (1, reg.response(401, "Unauthorized", offer())),
        (0, reg.request([leg("Kerberos", b64(token))])),
        (1, reg.response(401, "Unauthorized", [server_leg("Kerberos", b64(reply), opaque)])),
        (0, reg.request([signed("Kerberos", opaque, 1)])),
        (1, reg.response(200, "OK", [authentication_info("Kerberos", opaque)])),
    ]


@cache
def client_certificate(subject: str = ALICE) -> bytes:
    """A self-signed certificate (DER) like the one Skype for Business provisions for TLS-DSK."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    start = dt.datetime.fromtimestamp(T0, dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(0x51F)
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=180))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def tls_dsk_register(opaque: str = "77665544") -> list[Message]:
    """REGISTER with a TLS ClientHello -> 401 server flight (opaque) -> the client's
    Certificate (sip:alice@contoso.com) and Finished -> 401 the server's Finished -> signed ->
    200."""
    tls = gen("tls")
    hello = tls.tls_client_hello(FE)
    server = tls.tls_server_flight("sip-dsk", client_certificate(f"CN={FE}"))
    cert = client_certificate()
    entry = len(cert).to_bytes(3, "big") + cert
    client = tls.tls_record(
        22,
        tls.tls_message(11, len(entry).to_bytes(3, "big") + entry)
        + tls.tls_message(16, b"\x41" + b"\x04" * 65)
        + tls.tls_message(15, b"\x04\x03\x00\x40" + b"\x05" * 64),
    ) + tls.tls_record(20, b"\x01")
    finished = tls.tls_record(20, b"\x01") + tls.tls_record(22, b"\x06" * 40)
    reg = Dialog("dsk-reg-0001")
    return [
        (0, reg.request()),
        (1, reg.response(401, "Unauthorized", offer())),
        (0, reg.request([leg("TLS-DSK", b64(hello))])),
        (1, reg.response(401, "Unauthorized", [server_leg("TLS-DSK", b64(server), opaque)])),
        (0, reg.request([leg("TLS-DSK", b64(client), opaque)])),
        (1, reg.response(401, "Unauthorized", [server_leg("TLS-DSK", b64(finished), opaque)])),
        (0, reg.request([signed("TLS-DSK", opaque, 1)])),
        (1, reg.response(200, "OK", [authentication_info("TLS-DSK", opaque)])),
    ]


DIGEST_AUTH = (
    'Authorization: Digest username="bob", realm="contoso.com", nonce="5f3a9c", '
    'uri="sip:contoso.com", response="6629fae49393a05397450978507c4ef1", algorithm=MD5'
)


def digest_register() -> list[Message]:
    """REGISTER -> 401 Digest -> REGISTER with Digest credentials -> 200."""
    reg = Dialog("digest-reg-0001")
    challenge = 'WWW-Authenticate: Digest realm="contoso.com", nonce="5f3a9c", algorithm=MD5'
    return [
        (0, reg.request()),
        (1, reg.response(401, "Unauthorized", [challenge])),
        (0, reg.request([DIGEST_AUTH])),
        (1, reg.response(200, "OK")),
    ]


def bearer_register(token: str) -> list[Message]:
    """REGISTER with an OAuth token (RFC 8898's Bearer scheme) -> 200."""
    reg = Dialog("bearer-reg-0001")
    return [(0, reg.request([f"Authorization: Bearer {token}"])), (1, reg.response(200, "OK"))]


# -- captures ---------------------------------------------------------------------------------
def udp_frames(
    messages: Sequence[Message],
    port: int = 5060,
    client_port: int = 5060,
    t0: float = T0,
) -> list[Any]:
    """One datagram per message between CLIENT:client_port and SERVER:port (scapy frames),
    from ``t0`` on, 10 ms apart."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    frames = []
    for i, (side, data) in enumerate(messages):
        src, dst, sport, dport = _udp_ends(side, port, client_port)
        frame = Ether() / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / data
        frame.time = t0 + i * 0.01
        frames.append(frame)
    return frames


def _udp_ends(side: int, port: int, client_port: int) -> tuple[str, str, int, int]:
    """Source and destination address and port of a datagram sent by ``side`` (0: client)."""
    if side == 0:
        return CLIENT, SERVER, client_port, port
    return SERVER, CLIENT, port, client_port


def udp_capture(
    path: Path,
    messages: Sequence[Message],
    port: int = 5060,
    client_port: int = 5060,
    t0: float = T0,
) -> str:
    """One datagram per message between CLIENT:client_port and SERVER:port, from ``t0`` on,
    10 ms apart."""
    from scapy.utils import wrpcap

    wrpcap(str(path), udp_frames(messages, port, client_port, t0))
    return str(path)


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f">{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ip_udp(src: str, dst: str, sport: int, dport: int, data: bytes) -> bytes:
    """IPv4 / UDP around ``data``, checksums computed: the bytes scapy's ``IP(src=src,
    dst=dst) / UDP(sport=sport, dport=dport) / data`` builds, packed here (thousands of times
    faster)."""
    a, b = socket.inet_aton(src), socket.inet_aton(dst)
    length = 8 + len(data)
    pseudo = a + b + struct.pack(">BBH", 0, 17, length)
    udp = struct.pack(">HHHH", sport, dport, length, 0) + data
    udp = udp[:6] + struct.pack(">H", _checksum(pseudo + udp) or 0xFFFF) + udp[8:]
    head = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + length, 1, 0, 64, 17, 0, a, b)
    head = head[:10] + struct.pack(">H", _checksum(head)) + head[12:]
    return head + udp


def many_udp_capture(
    path: Path,
    messages: Sequence[Message],
    port: int = 5060,
    client_port: int = 5060,
    t0: float = T0,
) -> str:
    """``udp_capture`` for tens of thousands of messages: the same datagrams (``ip_udp``) in
    Ethernet frames, written without scapy, which takes seconds per ten thousand packets."""
    ether = b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\x08\x00"
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)]
    for i, (side, data) in enumerate(messages):
        frame = ether + ip_udp(*_udp_ends(side, port, client_port), data)
        sec, usec = divmod(round((t0 + i * 0.01) * 1e6), 1_000_000)
        out += [struct.pack("<IIII", sec, usec, len(frame), len(frame)), frame]
    Path(path).write_bytes(b"".join(out))
    return str(path)


def tcp_capture(
    path: Path,
    messages: Sequence[Message],
    port: int = 5060,
    *,
    segment: int = 1460,
    coalesce: bool = False,
    syn: bool = True,
    t0: float = T0,
) -> str:
    """One TCP connection from CLIENT:50123 to SERVER:``port`` carrying ``messages`` from ``t0``
    on: each side's bytes cut into ``segment``-byte segments; with ``coalesce``, consecutive
    messages of one side travel together (two messages in one segment)."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    runs: list[Message] = []
    for side, data in messages:
        if coalesce and runs and runs[-1][0] == side:
            runs[-1] = (side, runs[-1][1] + data)
        else:
            runs.append((side, data))
    frames = []
    seq = [1000, 9000]
    ends = ((CLIENT, 50123), (SERVER, port))

    def send(side: int, flags: str, data: bytes = b"") -> None:
        (src, sport), (dst, dport) = ends[side], ends[1 - side]
        tcp = TCP(sport=sport, dport=dport, seq=seq[side], ack=seq[1 - side], flags=flags)
        frame = Ether() / IP(src=src, dst=dst) / tcp
        frame = frame / data if data else frame
        frame.time = t0 + len(frames) * 0.001
        frames.append(frame)
        seq[side] += len(data) + (1 if "S" in flags or "F" in flags else 0)

    if syn:
        send(0, "S")
        send(1, "SA")
        send(0, "A")
    for side, data in runs:
        for at in range(0, len(data), segment):
            send(side, "PA", data[at : at + segment])
    send(0, "FA")
    send(1, "FA")
    send(0, "A")
    wrpcap(str(path), frames)
    return str(path)
