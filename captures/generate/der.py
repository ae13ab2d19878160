"""DER encoding, just the tags SPNEGO and Kerberos tokens need."""

from __future__ import annotations


def der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + content


def der_int(value: int) -> bytes:
    return der(0x02, value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True))


def der_oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        out += bytes(reversed(chunk))
    return der(0x06, bytes(out))


def der_gstr(text: str) -> bytes:
    return der(0x1B, text.encode("ascii"))  # KerberosString = GeneralString


def seq(*items: bytes) -> bytes:
    return der(0x30, b"".join(items))


def ctx(n: int, content: bytes) -> bytes:
    return der(0xA0 + n, content)
