"""A JSON Schema (draft 2020-12) of every record type, generated from ``analyzer.model``.

``python -m analyzer.report.schema`` prints it; ``docs/schema.json`` is that output, and a test
checks the two agree and that real JSON Lines validate against it. Every public field is required
(writers emit each key, null when empty); secret fields are allowed but never required, because
only ``--reveal-secrets`` writes them.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from analyzer.model import (
    AUTH_CLASSES,
    NOT_INSPECTED_KINDS,
    OUTCOMES,
    SCHEMA_VERSION,
    SCHEMES,
    SEVERITIES,
    Challenge,
    CredentialRecord,
    Event,
    Finding,
    Handshake,
    NotInspected,
    PairVerdict,
    TlsConnection,
    TokenRecord,
)

#: Table name (``--table``, ``Analysis`` attribute) -> record type, as JSON Lines write them.
RECORDS: dict[str, type] = {
    "events": Event,
    "handshakes": Handshake,
    "tokens": TokenRecord,
    "findings": Finding,
    "verdicts": PairVerdict,
    "tls": TlsConnection,
    "not_inspected": NotInspected,
    "credentials": CredentialRecord,
}
#: Closed vocabularies: (record type, field) -> the values it may hold.
ENUMS: dict[tuple[type, str], tuple[str, ...]] = {
    (Event, "scheme"): SCHEMES,
    (Event, "auth_class"): AUTH_CLASSES,
    (Event, "outcome"): OUTCOMES,
    (Handshake, "auth_class"): AUTH_CLASSES,
    (Handshake, "outcome"): OUTCOMES,
    (Finding, "severity"): SEVERITIES,
    (NotInspected, "kind"): NOT_INSPECTED_KINDS,
    (CredentialRecord, "scheme"): SCHEMES,
}
_SCALARS = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}
_NESTED = {"Challenge": Challenge}


def json_schema() -> dict[str, Any]:
    """The schema document: one ``$defs`` entry per record type (and ``Challenge``)."""
    defs = {t.__name__: record_schema(t) for t in (*RECORDS.values(), Challenge)}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/oauth-traffic-analyzer/docs/schema.json",
        "title": "oauth-traffic-analyzer records",
        "description": "One JSON Lines record of any table: "
        + ", ".join(f"{name} ({t.__name__})" for name, t in RECORDS.items()),
        "schema_version": SCHEMA_VERSION,
        "oneOf": [{"$ref": f"#/$defs/{t.__name__}"} for t in RECORDS.values()],
        "$defs": defs,
    }


def record_schema(record_type: type) -> dict[str, Any]:
    """The object schema of one record type, as JSON Lines write it."""
    if record_type is Challenge:
        return _challenge()
    properties: dict[str, Any] = {"schema_version": {"const": SCHEMA_VERSION}}
    required = ["schema_version"]
    for f in dataclasses.fields(record_type):
        if f.metadata.get("internal"):
            continue
        prop = type_schema(str(f.type))
        values = ENUMS.get((record_type, f.name))
        if values is not None:
            prop["enum"] = [*values, None] if "null" in _types(prop) else list(values)
        if f.metadata.get("secret"):
            prop["description"] = "secret: written only with --reveal-secrets"
        else:
            required.append(f.name)
        properties[f.name] = prop
    return {
        "type": "object",
        "description": (record_type.__doc__ or "").strip().split("\n\n")[0].replace("\n", " "),
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def type_schema(annotation: str) -> dict[str, Any]:
    """The schema of one field annotation (``str | None``, ``tuple[Challenge, ...]``, ...)."""
    text = re.sub(r"#.*", "", annotation).replace("\n", " ").strip().strip("()").strip()
    alternatives = [a.strip() for a in _split(text, "|")]
    nullable = "None" in alternatives
    kinds = [a for a in alternatives if a != "None"]
    if len(kinds) != 1:
        raise ValueError(f"unsupported annotation {annotation!r}")
    schema = _one(kinds[0])
    if nullable:
        if "type" in schema and isinstance(schema["type"], str):
            schema["type"] = [schema["type"], "null"]
        else:
            schema = {"anyOf": [schema, {"type": "null"}]}
    return schema


def _one(kind: str) -> dict[str, Any]:
    if kind in _SCALARS:
        return {"type": _SCALARS[kind]}
    if kind in _NESTED:
        return {"$ref": f"#/$defs/{kind}"}
    if kind == "Any":
        return {}
    head, _, rest = kind.partition("[")
    args = [a.strip() for a in _split(rest[:-1], ",")] if rest else []
    if head == "tuple" and len(args) == 2 and args[1] == "...":
        return {"type": "array", "items": _one(args[0])}
    if head == "dict" and len(args) == 2:
        value = _one(args[1])
        return {"type": "object", "additionalProperties": value} if value else {"type": "object"}
    raise ValueError(f"unsupported type {kind!r}")


def _split(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "["
        depth -= ch == "]"
        if ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _types(schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


def _challenge() -> dict[str, Any]:
    """A challenge as ``Challenge.to_dict`` writes it: optional keys left out when empty."""
    return {
        "type": "object",
        "description": "One scheme offered by a WWW-Authenticate / Proxy-Authenticate header.",
        "properties": {
            "scheme": {"type": "string"},
            "params": {"type": "object", "additionalProperties": {"type": "string"}},
            "token68": {"type": "string"},
            "proxy": {"const": True},
            "details": {"type": "object"},
        },
        "required": ["scheme", "params"],
        "additionalProperties": False,
    }


def main() -> None:
    print(json.dumps(json_schema(), indent=2))


if __name__ == "__main__":
    main()
