"""Strict, bounded DER reader for the ASN.1 that SPNEGO and Kerberos tokens are made of.

A schema is built from the spec classes below (the handful of types RFC 4120 and RFC 4178 use,
with their EXPLICIT context tags) and ``decode`` walks bytes against it. Pure Python, no copies
of the input beyond the values returned, about 1 µs per element.

Reading rules (all failures raise ``DerError``; ``DerTruncated`` when the input ends first):

* Definite lengths only (0x80 is rejected), in at most ``MAX_LENGTH_OCTETS`` octets. Long-form
  lengths with leading zero octets are tolerated (BER), as the pyasn1 decoder used before did.
* Identifiers must match the schema exactly, constructed bit included: the BER constructed
  forms of strings are rejected, and so is a low tag number written in the high-tag-number
  form.
* Like a streaming decoder, a constructed element's length is not checked against the input up
  front: its children are read until they reach it and must end exactly there. An element cut
  off by the end of the input is ``DerTruncated``; one whose length disagrees with its children
  is ``DerError``, even if that length also runs past the end.
* Nesting deeper than ``MAX_DEPTH`` constructed elements is rejected. INTEGERs are limited to
  ``MAX_INTEGER_OCTETS`` (Kerberos uses 32-bit values) and must have at least one octet.
"""

from __future__ import annotations

from typing import Any, NamedTuple

#: Length octets accepted after a long-form length's first octet (8 covers any length at all).
MAX_LENGTH_OCTETS = 8
#: Octets of a high-tag-number form tag number (nothing here uses one; they only get rejected).
MAX_TAG_OCTETS = 20
#: Constructed elements that may enclose one another (Kerberos needs 10).
MAX_DEPTH = 16
#: Octets of an INTEGER's content (Int32 and UInt32 need at most 5).
MAX_INTEGER_OCTETS = 8
#: Octets of one OBJECT IDENTIFIER arc (21 x 7 bits: enough for UUID arcs, as pyasn1 allowed).
MAX_OID_ARC_OCTETS = 21


class DerError(ValueError):
    """The bytes are not a well-formed encoding of the expected type."""


class DerTruncated(DerError):
    """The encoding runs past the end of the input."""


def read_header(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(identifier, content offset, content length) of the element at ``pos``.

    The identifier is the first identifier octet; in the high-tag-number form the tag number is
    added shifted left by 8, so it never equals a one-octet identifier. Only the identifier and
    length octets must lie before ``end``; the content is not checked.
    """
    if pos + 2 > end:
        raise DerTruncated("header")
    ident = buf[pos]
    if ident & 0x1F == 0x1F:
        ident, pos = _long_tag(buf, pos, end)
    size = buf[pos + 1]
    pos += 2
    if size < 0x80:
        return ident, pos, size
    size &= 0x7F
    if not size:
        raise DerError("indefinite length")
    if size > MAX_LENGTH_OCTETS:
        raise DerError("length over 8 octets")
    if pos + size > end:
        raise DerTruncated("length")
    return ident, pos + size, int.from_bytes(buf[pos : pos + size], "big")


def _long_tag(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """(identifier, offset of its last octet) of a high-tag-number form identifier at ``pos``."""
    number = 0
    for last in range(pos + 1, min(end, pos + 1 + MAX_TAG_OCTETS)):
        number = (number << 7) | (buf[last] & 0x7F)
        if not buf[last] & 0x80:
            if last + 2 > end:
                raise DerTruncated("header")
            return buf[pos] | (number << 8), last
    if end <= pos + MAX_TAG_OCTETS:
        raise DerTruncated("tag")
    raise DerError("tag number too long")


def _unexpected(buf: bytes, pos: int, end: int) -> DerError:
    """The error for an element whose tag the schema does not allow there.

    Truncation wins over the wrong tag: the header must be complete, and an unknown constructed
    context or application tag may be one more explicit tag, so the headers inside it are read
    too (as pyasn1 did), until one is not such a tag or the input ends (``DerTruncated``).
    """
    first = buf[pos] if pos < end else 0
    while True:
        ident, pos, _ = read_header(buf, pos, end)
        if not ident & 0x20 or not ident & 0xC0:
            return DerError(f"unexpected tag 0x{first:02x}")


class Spec:
    """One ASN.1 type of a schema, starting with identifier ``tag`` (None: any, or a CHOICE)."""

    __slots__ = ("tag",)

    def __init__(self, tag: int | None) -> None:
        self.tag = tag

    def read(self, buf: bytes, pos: int, end: int, depth: int) -> tuple[Any, int]:
        """(value, offset just past the element) for the element at ``pos``."""
        raise NotImplementedError

    def _element(self, buf: bytes, pos: int, end: int) -> tuple[int, int]:
        """(content offset, content length) of the element at ``pos``, its tag checked (any tag
        when ``tag`` is None)."""
        ident, start, length = read_header(buf, pos, end)
        if self.tag is not None and ident != self.tag:
            raise _unexpected(buf, pos, end)
        return start, length

    def _content(self, buf: bytes, pos: int, end: int) -> tuple[int, int]:
        """(start, stop) of the content octets of the element at ``pos``, inside ``end``."""
        start, length = self._element(buf, pos, end)
        stop = start + length
        if stop > end:
            raise DerTruncated("content")
        return start, stop


class Primitive(Spec):
    """A primitive element whose value is its content octets (OCTET STRING, GeneralString)."""

    __slots__ = ()

    def read(self, buf: bytes, pos: int, end: int, depth: int) -> tuple[bytes, int]:
        start, stop = self._content(buf, pos, end)
        return buf[start:stop], stop


class Ascii(Primitive):
    """A primitive string that must be ASCII (GeneralizedTime)."""

    __slots__ = ()

    def read(self, buf: bytes, pos: int, end: int, depth: int) -> tuple[bytes, int]:
        value, stop = Primitive.read(self, buf, pos, end, depth)
        if not value.isascii():
            raise DerError("not ASCII")
        return value, stop


class Integer(Spec):
    """INTEGER or ENUMERATED (by tag) as a Python int."""

    __slots__ = ()

    def read(self, buf: bytes, pos: int, end: int, depth: int) -> tuple[int, int]:
        start, stop = self._content(buf, pos, end)
        length = stop - start
        if not length or length > MAX_INTEGER_OCTETS:
            raise DerError(f"{length}-octet integer")
        return int.from_bytes(buf[start:stop], "big", signed=True), stop


class BitString(Spec):
    """BIT STRING, checked and returned as its content octets (unused-bits count first)."""

    __slots__ = ()

    def read(self, buf: bytes, pos: int, end: int, depth: int) -> tuple[bytes, int]:
        start, length = self._element(buf, pos, end)
        # pyasn1's order: an empty string and a bad unused-bits count are malformed even when cut.
        if not length or start >= end:
            raise DerError("empty bit string")
        unused = buf[start]
        if unused > 7 or (length == 1 and unused):
            raise DerError("bad unused-bits count")
        stop = start + length
        if stop > end:
            raise DerTruncated("content")
        return buf[start:stop], stop


class ObjectIdentifier(Spec):
    """OBJECT IDENTIFIER as dotted text (``1.2.840.113554.1.2.2``)."""

    __slots__ = ()

    def read(self, buf: bytes, pos: int, end: int, depth: int) -> tuple[str, int]:
        start, stop = self._content(buf, pos, end)
        content = buf[start:stop]
        text = _OID_TEXT.get(content)
        if text is None:
            text = oid_text(content)
            if len(_OID_TEXT) < 64 and len(content) <= 16:
                _OID_TEXT[content] = text
        return text, stop


#: Content -> dotted text of short OIDs seen so far (tokens repeat the same few mechanisms).
_OID_TEXT: dict[bytes, str] = {}


def oid_text(content: bytes) -> str:
    """Dotted text of an OBJECT IDENTIFIER's content octets."""
    if not content:
        raise DerError("empty object identifier")
    arcs: list[int] = []
    value = octets = 0
    for octet in content:
        if octets == 0 and octet == 0x80:
            raise DerError("object identifier arc with a leading zero octet")
        value = (value << 7) | (octet & 0x7F)
        octets += 1
        if octet & 0x80:
            if octets >= MAX_OID_ARC_OCTETS:
                raise DerError("object identifier arc too long")
        else:
            arcs.append(value)
            value = octets = 0
    if octets:
        raise DerTruncated("object identifier ends inside an arc")
    first = arcs[0]
    head = (0, first) if first < 40 else (1, first - 40) if first < 80 else (2, first - 80)
    return ".".join(map(str, (*head, *arcs[1:])))


class Element(Spec):
    """ASN.1 ANY: one element of any tag (``tag=None``) or of the given tag, as its content."""

    __slots__ = ()

    def __init__(self, tag: int | None = None) -> None:
        super().__init__(tag)

    def read(self, buf: bytes, pos: int, end: int, depth: int) -> tuple[bytes, int]:
        start, stop = self._content(buf, pos, end)
        return buf[start:stop], stop


class Explicit(Spec):
    """An EXPLICIT tag (context or application class) wrapped around ``inner``."""

    __slots__ = ("inner",)

    def __init__(self, tag: int, inner: Spec) -> None:
        super().__init__(tag)
        self.inner = inner

    def read(self, buf: bytes, pos: int, end: int, depth: int) -> tuple[Any, int]:
        start, length = self._element(buf, pos, end)
        if depth >= MAX_DEPTH:
            raise DerError("nested too deep")
        value, stop = self.inner.read(buf, start, end, depth + 1)
        if stop != start + length:
            raise DerError("explicit tag length disagrees with its content")
        return value, stop


class Field(NamedTuple):
    """A SEQUENCE component: ``[number] EXPLICIT spec``, possibly OPTIONAL."""

    number: int
    spec: Spec
    optional: bool = False


class Sequence(Spec):
    """SEQUENCE of explicitly tagged fields, as a tuple of their values (None when absent).

    Fields must come in order; an optional one may be skipped, a required one may not.
    """

    __slots__ = ("_fields", "_near", "_required")

    def __init__(self, *fields: Field, tag: int = 0x30) -> None:
        super().__init__(tag)
        self._fields = fields
        # _near[i]: wrapper tag -> position, for the fields allowed next after position i - 1.
        near: list[dict[int, int]] = []
        for i in range(len(fields)):
            allowed: dict[int, int] = {}
            for j in range(i, len(fields)):
                allowed[0xA0 | fields[j].number] = j
                if not fields[j].optional:
                    break
            near.append(allowed)
        self._near = tuple(near)
        self._required = tuple(i for i, f in enumerate(fields) if not f.optional)

    def read(self, buf: bytes, pos: int, end: int, depth: int) -> tuple[tuple[Any, ...], int]:
        start, length = self._element(buf, pos, end)
        if depth >= MAX_DEPTH:
            raise DerError("nested too deep")
        fields, near = self._fields, self._near
        values: list[Any] = [None] * len(fields)
        stop = start + length
        pos, index = start, 0
        while pos < stop:
            if index >= len(fields):
                raise DerError("more components than the sequence has")
            ident, inner, size = read_header(buf, pos, end)
            index = near[index].get(ident, -1)
            if index < 0:
                raise _unexpected(buf, pos, end)
            if depth + 1 >= MAX_DEPTH:  # the field's explicit tag is one level further in
                raise DerError("nested too deep")
            value, pos = fields[index].spec.read(buf, inner, end, depth + 2)
            if pos != inner + size:
                raise DerError("explicit tag length disagrees with its content")
            values[index] = value
            index += 1
        for i in self._required:
            if values[i] is None:
                raise DerError("required component missing")
        if pos != stop:
            raise DerError("sequence length disagrees with its components")
        return tuple(values), pos


class SequenceOf(Spec):
    """SEQUENCE OF ``item``, as a tuple."""

    __slots__ = ("item",)

    def __init__(self, item: Spec, tag: int = 0x30) -> None:
        super().__init__(tag)
        self.item = item

    def read(self, buf: bytes, pos: int, end: int, depth: int) -> tuple[tuple[Any, ...], int]:
        start, length = self._element(buf, pos, end)
        if depth >= MAX_DEPTH:
            raise DerError("nested too deep")
        item = self.item.read
        values = []
        stop = start + length
        pos = start
        while pos < stop:
            value, pos = item(buf, pos, end, depth + 1)
            values.append(value)
        if pos != stop:
            raise DerError("sequence length disagrees with its items")
        return tuple(values), pos


class Choice(Spec):
    """CHOICE between alternatives with distinct tags, as ``(name, value)``."""

    __slots__ = ("_by_tag",)

    def __init__(self, *alternatives: tuple[str, Spec]) -> None:
        super().__init__(None)
        self._by_tag = {spec.tag: (name, spec) for name, spec in alternatives}

    def read(self, buf: bytes, pos: int, end: int, depth: int) -> tuple[tuple[str, Any], int]:
        if pos >= end:
            raise DerTruncated("header")
        chosen = self._by_tag.get(buf[pos])
        if chosen is None:
            raise _unexpected(buf, pos, end)
        name, spec = chosen
        value, stop = spec.read(buf, pos, end, depth)
        return (name, value), stop


def decode(data: bytes, spec: Spec) -> tuple[Any, int]:
    """(value, offset just past it) of the one element at the start of ``data``.

    Bytes after the element are the caller's to judge (trailing data, or a next part).
    """
    return spec.read(data, 0, len(data), 0)
