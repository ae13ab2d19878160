"""The strict DER reader behind the SPNEGO/Kerberos decoder, on hand-made bytes."""

from __future__ import annotations

import random

import pytest

from analyzer.auth import der
from analyzer.auth.der import DerError, DerTruncated, Field


def tlv(tag: int, content: bytes) -> bytes:
    """A DER element with a minimal length."""
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + content


INTEGER = der.Integer(0x02)
OCTETS = der.Primitive(0x04)
OID = der.ObjectIdentifier(0x06)
BITS = der.BitString(0x03)
TIME = der.Ascii(0x18)
#: SEQUENCE { [0] INTEGER, [1] OCTET STRING OPTIONAL, [2] OCTET STRING OPTIONAL, [3] INTEGER }
RECORD = der.Sequence(
    Field(0, INTEGER), Field(1, OCTETS, True), Field(2, OCTETS, True), Field(3, INTEGER)
)


def record(*fields: bytes) -> bytes:
    return tlv(0x30, b"".join(fields))


# --- headers ---------------------------------------------------------------------------------


def test_short_and_long_form_lengths() -> None:
    assert der.read_header(b"\x04\x05hello", 0, 7) == (0x04, 2, 5)
    assert der.read_header(b"\x04\x81\x80", 0, 3) == (0x04, 3, 128)
    assert der.read_header(b"\x30\x82\x01\x00", 0, 4) == (0x30, 4, 256)
    assert der.read_header(b"\x30\x83\x01\x00\x00", 0, 5) == (0x30, 5, 65536)
    # Non-minimal long forms are tolerated (BER), up to 8 length octets.
    assert der.read_header(b"\x04\x81\x05", 0, 3) == (0x04, 3, 5)
    assert der.read_header(b"\x04\x88" + bytes(7) + b"\x02", 0, 10) == (0x04, 10, 2)
    # The header is read at an offset, content is not checked against the end.
    assert der.read_header(b"xx\xa3\x7f", 2, 4) == (0xA3, 4, 127)


def test_header_rejections() -> None:
    with pytest.raises(DerError, match="indefinite") as info:
        der.read_header(b"\x30\x80\x02\x01\x05\x00\x00", 0, 7)
    assert type(info.value) is DerError
    with pytest.raises(DerError, match="over 8 octets") as info:
        der.read_header(b"\x04\x89" + bytes(9), 0, 11)
    assert type(info.value) is DerError
    with pytest.raises(DerError):
        der.read_header(b"\x04\xff" + bytes(127), 0, 129)  # 0xFF is reserved


@pytest.mark.parametrize(
    "data",
    [b"", b"\x30", b"\x30\x82\x01", b"\x04\x88\x00\x00", b"\x1f", b"\x1f\x81", b"\x1f\x21"],
)
def test_truncated_headers(data: bytes) -> None:
    with pytest.raises(DerTruncated):
        der.read_header(data, 0, len(data))


def test_end_bounds_the_header_not_the_buffer() -> None:
    with pytest.raises(DerTruncated):
        der.read_header(b"\x30\x82\x01\x00", 0, 3)


def test_high_tag_number_form() -> None:
    # [APPLICATION 33] constructed: 0x7F 0x21; never equal to a one-octet identifier.
    assert der.read_header(b"\x7f\x21\x00", 0, 3) == (0x7F | 33 << 8, 3, 0)
    assert der.read_header(b"\x9f\x81\x00\x01\xaa", 0, 5) == (0x9F | 128 << 8, 4, 1)
    with pytest.raises(DerError, match="tag number too long"):
        der.read_header(b"\x9f" + b"\x81" * 20 + b"\x01\x00", 0, 23)
    assert der.read_header(b"\x9f" + b"\x80" * 19 + b"\x01\x00", 0, 22) == (0x9F | 1 << 8, 22, 0)
    # A low tag number in the long form is not the tag it spells.
    with pytest.raises(DerError, match="unexpected tag 0x1f"):
        der.decode(b"\x1f\x02\x01\x05", INTEGER)


# --- primitives ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "value"),
    [
        (b"\x00", 0),
        (b"\x05", 5),
        (b"\x7f", 127),
        (b"\x00\x80", 128),
        (b"\x80", -128),
        (b"\xff", -1),
        (b"\x00\xff\xff\xff\xff", 0xFFFFFFFF),
        (b"\x80\x00\x00\x00", -(2**31)),
        (b"\x7f" + b"\xff" * 7, 2**63 - 1),
    ],
)
def test_integer_values(content: bytes, value: int) -> None:
    data = tlv(0x02, content)
    assert der.decode(data, INTEGER) == (value, len(data))


def test_integer_rejections() -> None:
    for bad in (b"\x02\x00", tlv(0x02, bytes(9)), b"\x22\x03\x02\x01\x05", b"\x0a\x01\x01"):
        with pytest.raises(DerError) as info:
            der.decode(bad, INTEGER)
        assert type(info.value) is DerError, bad.hex()
    with pytest.raises(DerTruncated):
        der.decode(b"\x02\x04\x01\x02", INTEGER)
    assert der.decode(b"\x0a\x01\x03", der.Integer(0x0A)) == (3, 3)  # ENUMERATED by tag


@pytest.mark.parametrize(
    ("content", "dotted"),
    [
        (bytes.fromhex("2b0601050502"), "1.3.6.1.5.5.2"),
        (bytes.fromhex("2a864886f712010202"), "1.2.840.113554.1.2.2"),
        (bytes.fromhex("2a864882f712010202"), "1.2.840.48018.1.2.2"),
        (bytes.fromhex("2b06010401823702020a"), "1.3.6.1.4.1.311.2.2.10"),
        (bytes.fromhex("2b06010401823702021e"), "1.3.6.1.4.1.311.2.2.30"),
        (b"\x00", "0.0"),
        (b"\x27", "0.39"),
        (b"\x28", "1.0"),
        (b"\x4f\x01", "1.39.1"),
        (b"\x50", "2.0"),
        (b"\x88\x37\x03", "2.999.3"),
        (b"\x2a\xff\xff\xff\xff\x7f", "1.2.34359738367"),
    ],
)
def test_object_identifiers(content: bytes, dotted: str) -> None:
    data = tlv(0x06, content)
    assert der.decode(data, OID) == (dotted, len(data))
    assert der.oid_text(content) == dotted


def test_object_identifier_rejections() -> None:
    with pytest.raises(DerError, match="empty"):
        der.decode(b"\x06\x00", OID)
    with pytest.raises(DerError, match="leading zero"):
        der.decode(b"\x06\x03\x2a\x80\x01", OID)
    with pytest.raises(DerError, match="too long"):
        der.decode(tlv(0x06, b"\x2a" + b"\x81" * 21 + b"\x01"), OID)
    assert der.decode(tlv(0x06, b"\x2a" + b"\x81" * 20 + b"\x01"), OID)[0].startswith("1.2.")
    with pytest.raises(DerTruncated):  # the last arc never ends
        der.decode(b"\x06\x02\x2a\x86", OID)
    with pytest.raises(DerTruncated):
        der.decode(b"\x06\x09\x2a\x86\x48", OID)
    with pytest.raises(DerError):
        der.decode(b"\x26\x03\x06\x01\x2a", OID)  # constructed


def test_bit_string() -> None:
    assert der.decode(b"\x03\x05\x00\x20\x00\x00\x00", BITS) == (b"\x00\x20\x00\x00\x00", 7)
    assert der.decode(b"\x03\x02\x07\x80", BITS) == (b"\x07\x80", 4)
    assert der.decode(b"\x03\x01\x00", BITS) == (b"\x00", 3)
    for bad in (b"\x03\x00", b"\x03\x02\x08\x00", b"\x03\x01\x05", b"\x03\x05"):
        with pytest.raises(DerError) as info:
            der.decode(bad, BITS)
        assert type(info.value) is DerError, bad.hex()
    with pytest.raises(DerTruncated):
        der.decode(b"\x03\x05\x00\x20", BITS)


def test_strings() -> None:
    assert der.decode(b"\x04\x00", OCTETS) == (b"", 2)
    assert der.decode(b"\x04\x03abcXY", OCTETS) == (b"abc", 5)
    big = b"\xc1" * 300
    assert der.decode(tlv(0x04, big), OCTETS) == (big, 304)
    assert der.decode(b"\x1b\x02\xc3\xa9", der.Primitive(0x1B)) == (b"\xc3\xa9", 4)
    assert der.decode(b"\x18\x0f20260302090000Z", TIME) == (b"20260302090000Z", 17)
    with pytest.raises(DerError, match="ASCII"):
        der.decode(b"\x18\x02\xc3\xa9", TIME)
    with pytest.raises(DerTruncated):
        der.decode(b"\x04\x05abc", OCTETS)
    with pytest.raises(DerTruncated):  # length beyond the buffer
        der.decode(b"\x04\x84\x7f\xff\xff\xffabc", OCTETS)
    with pytest.raises(DerError) as info:  # BER constructed form
        der.decode(b"\x24\x05\x04\x03abc", OCTETS)
    assert type(info.value) is DerError


def test_element_any() -> None:
    assert der.decode(b"\x6c\x03\x02\x01\x05\x00", der.Element()) == (b"\x02\x01\x05", 5)
    assert der.decode(b"\x60\x02\x06\x00", der.Element(0x60)) == (b"\x06\x00", 4)
    with pytest.raises(DerError):
        der.decode(b"\x61\x02\x06\x00", der.Element(0x60))
    with pytest.raises(DerTruncated):
        der.decode(b"\x60\x84\xff\xff\xff\xff\x06\x06", der.Element(0x60))


# --- constructed -----------------------------------------------------------------------------


def test_sequence_fields_in_order_with_optional_ones_skipped() -> None:
    full = record(
        tlv(0xA0, b"\x02\x01\x07"),
        tlv(0xA1, b"\x04\x01a"),
        tlv(0xA2, b"\x04\x01b"),
        tlv(0xA3, b"\x02\x01\x09"),
    )
    assert der.decode(full, RECORD) == ((7, b"a", b"b", 9), len(full))
    short = record(tlv(0xA0, b"\x02\x01\x07"), tlv(0xA2, b"\x04\x00"), tlv(0xA3, b"\x02\x01\x09"))
    assert der.decode(short, RECORD) == ((7, None, b"", 9), len(short))
    bare = record(tlv(0xA0, b"\x02\x01\x07"), tlv(0xA3, b"\x02\x01\x09"))
    assert der.decode(bare + b"\x00\x00", RECORD) == ((7, None, None, 9), len(bare))


@pytest.mark.parametrize(
    "data",
    [
        # a required field missing
        record(tlv(0xA0, b"\x02\x01\x07")),
        record(tlv(0xA1, b"\x04\x01a"), tlv(0xA3, b"\x02\x01\x09")),
        # out of order, repeated, unknown, or one too many
        record(tlv(0xA0, b"\x02\x01\x07"), tlv(0xA2, b"\x04\x00"), tlv(0xA1, b"\x04\x00")),
        record(tlv(0xA0, b"\x02\x01\x07"), tlv(0xA0, b"\x02\x01\x07")),
        record(tlv(0xA0, b"\x02\x01\x07"), tlv(0xA5, b"\x02\x01\x07")),
        record(tlv(0xA0, b"\x02\x01\x07"), tlv(0xA3, b"\x02\x01\x09"), tlv(0xA3, b"\x02\x01\x09")),
        # primitive instead of constructed explicit tag; implicit instead of explicit
        record(b"\x80\x01\x07", tlv(0xA3, b"\x02\x01\x09")),
        record(tlv(0xA0, b"\x04\x01a"), tlv(0xA3, b"\x02\x01\x09")),
        # explicit tag longer or shorter than what it wraps
        record(b"\xa0\x04\x02\x01\x07\x00", tlv(0xA3, b"\x02\x01\x09")),
        record(b"\xa0\x02\x02\x01\x07", tlv(0xA3, b"\x02\x01\x09")),
        # sequence length longer or shorter than its components (even past the end of input)
        b"\x30\x0b\xa0\x03\x02\x01\x07\xa3\x03\x02\x01\x09\x00",
        b"\x30\x09\xa0\x03\x02\x01\x07\xa3\x03\x02\x01\x09",
        b"\x30\x7f\xa0\x03\x02\x01\x07\xa3\x03\x02\x01\x09",
        # wrong outer tag
        b"\x31\x0a\xa0\x03\x02\x01\x07\xa3\x03\x02\x01\x09",
    ],
)
def test_sequence_rejections(data: bytes) -> None:
    with pytest.raises(DerError) as info:
        der.decode(data, RECORD)
    assert type(info.value) is DerError, data.hex()


def test_truncation_inside_a_sequence() -> None:
    full = record(tlv(0xA0, b"\x02\x01\x07"), tlv(0xA3, b"\x02\x01\x09"))
    for cut in range(len(full)):
        with pytest.raises(DerTruncated):
            der.decode(full[:cut], RECORD)
    # An unknown constructed tag is read into (it may be one more explicit tag): cut there, the
    # input is truncated rather than the tag wrong.
    with pytest.raises(DerTruncated):
        der.decode(b"\x30\x06\xa0\x03\x02\x01\x07\xa5\x03\xa1\x05", RECORD)


def test_sequence_of_and_choice() -> None:
    oids = der.SequenceOf(OID)
    data = tlv(0x30, tlv(0x06, b"\x2b\x06\x01") + tlv(0x06, b"\x2a\x03"))
    assert der.decode(data, oids) == (("1.3.6.1", "1.2.3"), len(data))
    assert der.decode(b"\x30\x00", oids) == ((), 2)
    with pytest.raises(DerError):
        der.decode(tlv(0x30, tlv(0x06, b"\x2b") + tlv(0x02, b"\x01")), oids)
    with pytest.raises(DerError):  # items overrun the list
        der.decode(b"\x30\x02\x06\x02\x2b\x06", oids)
    with pytest.raises(DerTruncated):
        der.decode(b"\x30\x06\x06\x01\x2b\x06\x03\x2b", oids)

    choice = der.Choice(("number", der.Explicit(0xA0, INTEGER)), ("text", OCTETS))
    assert der.decode(b"\xa0\x03\x02\x01\x05", choice) == (("number", 5), 5)
    assert der.decode(b"\x04\x01z", choice) == (("text", b"z"), 3)
    with pytest.raises(DerError):
        der.decode(b"\xa1\x03\x02\x01\x05", choice)
    with pytest.raises(DerTruncated):
        der.decode(b"", choice)
    with pytest.raises(DerTruncated):
        der.decode(b"\x05", choice)  # not a choice, but the header is cut first


def nested(depth: int) -> tuple[der.Spec, bytes]:
    """``depth`` explicit tags around an INTEGER, as a spec and as bytes."""
    spec: der.Spec = INTEGER
    data = b"\x02\x01\x2a"
    for _ in range(depth):
        spec, data = der.Explicit(0xA0, spec), tlv(0xA0, data)
    return spec, data


def test_nesting_limit() -> None:
    spec, data = nested(der.MAX_DEPTH)
    assert der.decode(data, spec) == (42, len(data))
    spec, data = nested(der.MAX_DEPTH + 1)
    with pytest.raises(DerError, match="nested too deep"):
        der.decode(data, spec)
    # Sequences count their fields' explicit tags as a level of their own.
    deep: der.Spec = INTEGER
    body = b"\x02\x01\x2a"
    for _ in range(der.MAX_DEPTH // 2 + 1):
        deep, body = der.Sequence(Field(0, deep)), tlv(0x30, tlv(0xA0, body))
    with pytest.raises(DerError, match="nested too deep"):
        der.decode(body, deep)


def test_hostile_bytes_only_raise_der_errors() -> None:
    rng = random.Random(690)
    spec = der.Sequence(
        Field(0, der.SequenceOf(OID), True),
        Field(1, BITS, True),
        Field(2, der.Choice(("octets", OCTETS), ("record", RECORD)), True),
        Field(3, TIME, True),
    )
    sample = tlv(
        0x30,
        tlv(0xA0, tlv(0x30, tlv(0x06, b"\x2a\x86\x48")))
        + tlv(0xA1, b"\x03\x02\x00\x20")
        + tlv(0xA2, record(tlv(0xA0, b"\x02\x01\x07"), tlv(0xA3, b"\x02\x01\x09")))
        + tlv(0xA3, b"\x18\x0f20260302090000Z"),
    )
    assert der.decode(sample, spec)[1] == len(sample)
    outcomes = set()
    for _ in range(3000):
        data = bytearray(sample)
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = data[: rng.randrange(len(data) + 1)] if rng.random() < 0.3 else data
        try:
            value, stop = der.decode(bytes(data), spec)
            assert 0 < stop <= len(data) and isinstance(value, tuple)
            outcomes.add("ok")
        except DerTruncated:
            outcomes.add("truncated")
        except DerError:
            outcomes.add("malformed")
    assert outcomes == {"ok", "truncated", "malformed"}


def test_matches_pyasn1_encodings() -> None:
    """Integers and OIDs encoded by pyasn1 read back the same (skipped without pyasn1)."""
    encoder = pytest.importorskip("pyasn1.codec.der.encoder")
    univ = pytest.importorskip("pyasn1.type.univ")
    rng = random.Random(4120)
    for _ in range(300):
        n = rng.randint(-(2**63), 2**63 - 1) >> rng.randrange(64)
        data = encoder.encode(univ.Integer(n))
        assert der.decode(data, INTEGER) == (n, len(data))
        arcs = [rng.randrange(3), rng.randrange(40)] + [
            rng.randrange(2 ** rng.randrange(1, 64)) for _ in range(rng.randrange(6))
        ]
        dotted = ".".join(map(str, arcs))
        data = encoder.encode(univ.ObjectIdentifier(dotted))
        assert der.decode(data, OID) == (dotted, len(data))
