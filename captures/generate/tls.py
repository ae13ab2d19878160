"""TLS handshake records in the clear (ClientHello, a server's first flight): the bytes the analyzer
reads without decrypting. Random parts are label-derived.
"""

from __future__ import annotations

import struct

from .encoding import prng


def tls_client_hello(sni: str) -> bytes:
    """A TLS 1.3-capable ClientHello record (bytes only; nothing follows it)."""
    suites = bytes.fromhex("130213031301c02cc030c02bc02fcca9cca8c024c028c023c027009f009e")
    name = sni.encode()
    sni_ext = struct.pack(">HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    alpn = b"\x02h2\x08http/1.1"
    alpn_ext = struct.pack(">HHH", 16, len(alpn) + 2, len(alpn)) + alpn
    versions = struct.pack(">HHB", 43, 5, 4) + b"\x03\x04\x03\x03"
    groups = struct.pack(">HHH", 10, 8, 6) + b"\x00\x1d\x00\x17\x00\x18"
    sigalgs_list = bytes.fromhex("0804040104030805050108060601")
    sigalgs = struct.pack(">HHH", 13, len(sigalgs_list) + 2, len(sigalgs_list)) + sigalgs_list
    share = struct.pack(">HH", 0x1D, 32) + prng("x25519", 32)
    key_share = struct.pack(">HHH", 51, len(share) + 2, len(share)) + share
    exts = sni_ext + alpn_ext + versions + groups + sigalgs + key_share
    body = (
        b"\x03\x03"
        + prng("client-random", 32)
        + b"\x20"
        + prng("session-id", 32)
        + struct.pack(">H", len(suites))
        + suites
        + b"\x01\x00"
        + struct.pack(">H", len(exts))
        + exts
    )
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack(">H", len(hs)) + hs


def tls_record(ctype: int, body: bytes) -> bytes:
    return struct.pack(">BHH", ctype, 0x0303, len(body)) + body


def tls_message(mtype: int, body: bytes) -> bytes:
    return bytes([mtype]) + len(body).to_bytes(3, "big") + body


def tls_server_flight(label: str, cert_der: bytes | None) -> bytes:
    """A server's first flight: TLS 1.2 (ServerHello, Certificate, ServerKeyExchange,
    ServerHelloDone) when ``cert_der`` is given, else a TLS 1.3 ServerHello, ChangeCipherSpec and
    the encrypted rest. Random parts are SHA-256 of labels."""
    if cert_der is not None:
        exts = bytes.fromhex("ff01000100") + bytes.fromhex("00170000")
        version_ext = b""
    else:
        exts = struct.pack(">HHHH", 51, 36, 0x1D, 32) + prng(f"{label}/share", 32)
        version_ext = struct.pack(">HHH", 43, 2, 0x0304)
    exts += version_ext
    hello = (
        b"\x03\x03"
        + prng(f"{label}/random", 32)
        + b"\x20"
        + prng(f"{label}/session", 32)
        + (b"\xc0\x2f" if cert_der is not None else b"\x13\x02")
        + b"\x00"
        + struct.pack(">H", len(exts))
        + exts
    )
    if cert_der is None:
        return (
            tls_record(22, tls_message(2, hello))
            + tls_record(20, b"\x01")
            + tls_record(23, prng(f"{label}/encrypted", 1100))
        )
    entry = len(cert_der).to_bytes(3, "big") + cert_der
    certificate = len(entry).to_bytes(3, "big") + entry
    key_exchange = b"\x03\x00\x1d\x20" + prng(f"{label}/ske", 32) + b"\x08\x04\x01\x00"
    key_exchange += prng(f"{label}/ske-sig", 256)
    flight = (
        tls_message(2, hello)
        + tls_message(11, certificate)
        + tls_message(12, key_exchange)
        + tls_message(14, b"")
    )
    return tls_record(22, flight)
