"""JSON text of records, exactly as ``json.dumps`` of ``to_dict`` writes it, several times faster.

The writers' JSON is ``json.dumps(to_dict(record), ensure_ascii=False, separators=(",", ":"))``.
Building that dict and walking it costs more than the rest of a large run's output, so
``json_encoder`` compiles, once per record type, a function writing the text straight from the
record's fields with the json module's own C helpers; any value it does not expect sends the
record down the plain path, which gives the same text (tests/test_fast_writer.py compares both).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from analyzer.model import field_kinds, listed, public_fields, to_dict

#: (record type, reveal, lead, end) -> compiled JSON encoder
_JSON_ENCODERS: dict[tuple[type, bool, tuple, str], Callable[[Any], str]] = {}


def to_json(record: Any, reveal_secrets: bool = False) -> str:
    """``json.dumps(to_dict(record, reveal_secrets), ensure_ascii=False, separators=(",", ":"))``,
    the writers' JSON, several times faster (see ``json_encoder``)."""
    return json_encoder(type(record), reveal_secrets)(record)


def json_encoder(
    record_type: type,
    reveal_secrets: bool = False,
    *,
    lead: tuple[tuple[str, Any], ...] = (),
    end: str = "",
) -> Callable[[Any], str]:
    """A function giving one record's JSON text, compiled once per record type.

    Its text is exactly ``json.dumps({**dict(lead), **to_dict(record, reveal_secrets)},
    ensure_ascii=False, separators=(",", ":")) + end``: the same key order, escaping and number
    text, without building the dict. Scalar fields are written by the json module's own C
    helpers; lists and dicts go to its C encoder. Any value the compiled code does not expect
    (or an error) sends the record down the plain path, which gives the same text or raises.
    """
    key = (record_type, bool(reveal_secrets), lead, end)
    encoder = _JSON_ENCODERS.get(key)
    if encoder is None:
        encoder = _JSON_ENCODERS[key] = _make_json_encoder(*key)
    return encoder


#: The writers' JSON settings, as one encoder (the plain path, and the fallback of the fast one):
#: ``json.dumps(value, ensure_ascii=False, separators=(",", ":"))``, made once.
compact_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
#: The string escaper that encoder uses (json's C function when the accelerator is present).
_json_str = json.encoder.encode_basestring


def _make_c_encoder() -> Callable[[Any], str]:
    """json's C encoder with ``compact_json``'s settings, made once rather than per value.

    No circular-reference bookkeeping (a cycle ends in RecursionError, and the caller's plain
    path then raises json's own ValueError). Without the C accelerator: ``compact_json`` itself.
    """
    make = json.encoder.c_make_encoder
    if make is None:
        return compact_json
    try:
        iterencode = make(
            None, json.JSONEncoder().default, _json_str, None, ":", ",", False, False, True
        )
        if "".join(iterencode({"a": [1.5, None]}, 0)) != '{"a":[1.5,null]}':
            return compact_json
    except Exception:  # another interpreter's signature: keep the plain encoder
        return compact_json

    def encode(value: Any, _iterencode: Any = iterencode, _join: Any = "".join) -> str:
        return _join(_iterencode(value, 0))

    return encode


_json_any = _make_c_encoder()
_JUST_STR = frozenset((str,))

#: JSON text of strings (and tuples of strings) already written, by value: most repeat from
#: record to record (addresses, hosts, schemes, outcomes), and a lookup is cheaper than escaping.
#: Only exact ``str`` values are stored; a lookup finds an equal one, so a string field holding an
#: object that claims equality (and the hash) of a different string would get that string's text.
_TEXTS: dict[Any, str] = {}
_TEXTS_MAX = 8192  # entries; the cache is emptied when full
_TEXT_MAX = 200  # characters: longer values are not kept


def _str_text(value: str) -> str:
    """``_json_str(value)``, remembered in ``_TEXTS`` (raises for a non-string, as it does)."""
    text = _json_str(value)
    if type(value) is str and len(value) <= _TEXT_MAX:
        if len(_TEXTS) >= _TEXTS_MAX:
            _TEXTS.clear()
        _TEXTS[value] = text
    return text


def _strs_text(values: tuple[str, ...]) -> str:
    """JSON text of a tuple of exact strings, remembered in ``_TEXTS``."""
    text = "[" + ",".join(map(_json_str, values)) + "]"
    if len(text) <= _TEXT_MAX:
        if len(_TEXTS) >= _TEXTS_MAX:
            _TEXTS.clear()
        _TEXTS[values] = text
    return text


def _json_value(value: Any) -> str:
    """JSON text of any one field value, as ``to_dict`` then ``compact_json`` would write it."""
    if isinstance(value, tuple):
        if not value:
            return "[]"
        if _JUST_STR.issuperset(map(type, value)):
            return "[" + ",".join(map(_json_str, value)) + "]"
        value = listed(value)
    return _json_any(value)


#: Most fields tested together for "all None" by the JSON encoder.
_NULL_RUN = 6


def _nullable(key: str, fields: dict[str, int], kinds: dict[str, list[str]]) -> bool:
    return key in fields and "None" in kinds[key]


def _make_json_encoder(
    record_type: type, reveal_secrets: bool, lead: tuple[tuple[str, Any], ...], end: str
) -> Callable[[Any], str]:
    """Compile the JSON text writer ``json_encoder`` describes for one record type.

    One f-string per record: the keys are constants; each value is an inline expression picked
    by the field's annotation (``"null" if v is None else I(v) if type(v) is int else G(v)``),
    ending in ``_json_value`` for whatever else the field holds. Strings (and tuples of strings)
    are looked up in ``_TEXTS`` first. A run of fields that may be None is first tested as a
    whole, so a record whose token fields are all empty writes them as one constant. The
    generated code is wrapped in ``try``: on any exception the record is written the plain way.
    """
    names = public_fields(record_type, reveal_secrets)
    kinds = field_kinds(record_type)
    lead_values = dict(lead)
    keys = list(lead_values) + [name for name in names if name not in lead_values]
    fields = {name: i for i, name in enumerate(names)}
    scope: dict[str, Any] = {
        "I": int.__repr__,
        "F": float.__repr__,
        "G": _json_value,
        "T": _TEXTS.get,
        "TS": _str_text,
        "TT": _strs_text,
        "JS": _JUST_STR.issuperset,
        "J": _json_any,
        "L": listed,
        "slow": lambda r: compact_json({**lead_values, **to_dict(r, reveal_secrets)}) + end,
    }

    def literal(text: str) -> str:
        """``text`` for an f-string's literal part (anything unusual through a constant)."""
        if text.replace('"', "").replace(",", "").replace(":", "").replace("_", "").isalnum():
            return text
        name = f"C{len(scope)}"
        scope[name] = text
        return "{" + name + "}"

    def value(name: str) -> str:
        """The f-string expression giving the JSON text of field ``name``.

        A string field is looked up in ``_TEXTS``, else escaped unchecked: the escaper raises on
        anything but a string, and the record then takes the plain path. ``float.__repr__``
        likewise (NaN and infinities go to ``G``, which writes them as json does). Ints are
        type-checked, since bools are ints; tuples of strings, since a str subclass could have
        a ``to_dict()``.
        """
        v = f"v{fields[name]}"
        chain = [f'"null" if {v} is None'] if "None" in kinds[name] else []
        kind = next((k for k in kinds[name] if k != "None"), "")
        if kind == "str":
            return "{" + " else ".join([*chain, f"T({v}) or TS({v})"]) + "}"
        if kind == "float":
            return "{" + " else ".join([*chain, f"F({v}) if {v} - {v} == 0.0", f"G({v})"]) + "}"
        if kind == "int":
            chain.append(f"I({v}) if type({v}) is int")
        elif kind == "bool":
            chain += [f'"true" if {v} is True', f'"false" if {v} is False']
        elif kind == "tuple[str]":
            chain.append(f"T({v}) or TT({v}) if type({v}) is tuple and JS(map(type, {v}))")
        elif kind == "tuple":
            chain.append(f'(J(L({v})) if {v} else "[]") if type({v}) is tuple')
        return "{" + " else ".join([*chain, f"G({v})"]) + "}"

    body = [f"        v{i} = r.{name}" for i, name in enumerate(names)]
    pieces = []  # the f-string of the whole record, piece by piece
    pos = 0
    while pos < len(keys):
        run = pos
        while run < len(keys) and run - pos < _NULL_RUN and _nullable(keys[run], fields, kinds):
            run += 1
        if run - pos < 2:  # one field: key, then its value
            key = keys[pos]
            prefix = ("," if pos else "") + compact_json(key) + ":"
            if key in fields:
                pieces.append(literal(prefix) + value(key))
            else:
                pieces.append(literal(prefix + compact_json(lead_values[key])))
            pos += 1
            continue
        block = f"b{len(body)}"  # fields pos..run-1 together: one constant when all None
        texts = [("," if i else "") + compact_json(keys[i]) + ":" for i in range(pos, run)]
        test = " and ".join(f"v{fields[keys[i]]} is None" for i in range(pos, run))
        body.append(f"        if {test}:")
        body.append(f"            {block} = {''.join(t + 'null' for t in texts)!r}")
        body.append("        else:")
        inner = "".join(literal(t) + value(k) for t, k in zip(texts, keys[pos:run], strict=True))
        body.append(f"            {block} = f'{inner}'")
        pieces.append("{" + block + "}")
        pos = run
    lines = [
        "def encode(r, I=I, F=F, G=G, T=T, TS=TS, TT=TT, JS=JS, J=J, L=L):",
        "    try:",
        *body,
        f"        return f'{{{{{''.join(pieces)}{literal('}' + end)}'",
        "    except Exception:",
        "        return slow(r)",
    ]
    exec("\n".join(lines), scope)  # source built from field names and constants only
    return scope["encode"]
