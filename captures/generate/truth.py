"""A finished capture's two JSON files: ``<name>.expected.json`` (events in time order) and
``<name>.truth.json`` (keys, tokens, handshakes, findings), renumbered after sorting.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .capture import Capture, TokenInfo
from .constants import KEYS_REL
from .encoding import fp12
from .keys import TestKey
from .tokens import jwt_parts, rs256_valid
from .wire import Frame

#: Every rule of analyzer/analysis/findings.py. The truth of findings.pcap and healthy-oauth.pcap
#: lists each one, the rules that must stay silent included.
RULE_IDS = (
    "cleartext-basic",
    "cleartext-bearer",
    "token-expired-use",
    "token-not-yet-valid",
    "token-multiple-clients",
    "unsigned-token",
    "bad-signature",
    "untrusted-issuer",
    "audience-host-mismatch",
    "oauth-fallback",
    "metadata-fetch-failed",
    "malformed-principal",
    "ntlmv1",
    "long-lived-token",
    "token-exp-before-nbf",
    "token-endpoint-error",
    "tls-certificate-expired",
    "tls-certificate-expiring",
    "signing-certificate-expired",
    "signing-certificate-expiring",
    "signing-key-unused",
    "signing-key-unpublished",
)


def finish_findings(cap: Capture, silent: Sequence[int | None] = ()) -> None:
    """Put the finding truth in RULE_IDS order; rules not expected to fire get ``silent``."""
    for rule_id in RULE_IDS:
        if rule_id not in cap.findings:
            cap.expect(rule_id, [], silent, "must stay silent on this capture")
    cap.findings = {rule_id: cap.findings[rule_id] for rule_id in RULE_IDS}


def _token_truth(
    tok: TokenInfo, uses: list[int], when: float | None, parents: list[str]
) -> dict[str, Any]:
    """The truth record of one token (``when``: capture time it was first seen)."""
    entry: dict[str, Any] = {"fingerprint": fp12(tok.text), "layer": tok.layer}
    is_jwt = tok.text.startswith("eyJ") and tok.text.count(".") == 2
    header, claims = jwt_parts(tok.text) if is_jwt else ({}, {})
    entry["format"] = (
        ("jwt-unsigned" if header.get("alg") == "none" else "jwt") if is_jwt else "opaque"
    )
    entry["alg"] = header.get("alg")
    entry["x5t"] = header.get("x5t")
    entry["kid"] = header.get("kid")
    for name in ("iss", "aud", "nbf", "exp"):
        entry[name] = claims.get(name)
    entry["signing_key"] = tok.key.cert_file if tok.key else None
    entry["signature_valid"] = rs256_valid(tok.text, tok.key) if tok.key else None
    if tok.key:
        assert entry["signature_valid"] == (not tok.tampered), tok.note
    exp = claims.get("exp")
    entry["expired"] = None if exp is None or when is None else int(exp) < when
    entry["tampered"] = tok.tampered
    entry["actor_fp"] = fp12(claims["actortoken"]) if "actortoken" in claims else None
    entry["outer_fps"] = [fp12(p) for p in parents]
    entry["events"] = uses
    entry["seen_in"] = "response body" if tok.in_response else "request"
    entry["claims"] = {
        k: (f"<actor token {fp12(v)}>" if k == "actortoken" else v) for k, v in claims.items()
    }
    entry["note"] = tok.note
    return entry


def finish(cap: Capture, keys: dict[str, TestKey]) -> tuple[bytes, bytes, list[Frame]]:
    """Sort frames and events; return (expected.json, truth.json, frames)."""
    frames = sorted(cap.frames, key=lambda f: (f.ts_ns, f.order))
    order = sorted(range(len(cap.events)), key=lambda i: (cap.events[i]["ts"], i))
    renumber = {old: new for new, old in enumerate(order)}
    events = [cap.events[i] for i in order]
    texts = [cap.texts[i] for i in order]
    expected = {"capture": cap.name, "description": cap.description, "events": events}

    def carried_by(tok: TokenInfo) -> list[int]:
        raw = tok.text.encode()
        return [i for i, (rq, rs) in enumerate(texts) if raw in (rs if tok.in_response else rq)]

    def outers_of(actor: str) -> list[str]:
        return [
            o.text
            for o in cap.tokens
            if o.layer == "outer" and jwt_parts(o.text)[1].get("actortoken") == actor
        ]

    tokens = []
    for tok in cap.tokens:
        parents = outers_of(tok.text) if tok.layer == "actor" else []
        if parents:
            uses = sorted({i for p in parents for i in carried_by(TokenInfo(p, "outer", None))})
        else:
            uses = carried_by(tok)
        assert uses, tok.note
        when = events[uses[0]]["response_ts" if tok.in_response else "ts"]
        tokens.append(_token_truth(tok, uses, when, parents))
    truth = {
        "capture": cap.name,
        "keys": {
            k.name: {
                "cert_file": k.cert_file,
                "key_file": f"{KEYS_REL}/{k.name}.key.pem",
                "x5t": k.x5t,
                "bits": k.private_key.key_size,
            }
            for k in keys.values()
        },
        "tokens": tokens,
        "handshakes": [
            {"kind": k, "outcome": o, "events": evs, "note": n}
            for k, o, evs, n in sorted(
                ((k, o, sorted(renumber[e] for e in evs), n) for k, o, evs, n in cap.handshakes),
                key=lambda h: h[2],
            )
        ],
        **_renumber_extra(cap.truth_extra, renumber),
    }
    if cap.findings:
        truth["findings"] = {
            rule_id: {
                "event_ids": sorted(renumber[e] + 1 for e in spec["fire"]),
                "negative_event_ids": sorted(renumber[e] + 1 for e in spec["silent"]),
                "note": spec["note"],
            }
            for rule_id, spec in cap.findings.items()
        }
    return (
        (json.dumps(expected, indent=2) + "\n").encode(),
        (json.dumps(truth, indent=2) + "\n").encode(),
        frames,
    )


def _renumber_extra(extra: dict[str, Any], renumber: dict[int, int]) -> dict[str, Any]:
    out = {}
    for key, value in extra.items():
        if isinstance(value, dict) and "events" in value:
            value = {**value, "events": [renumber[e] for e in value["events"]]}
        out[key] = value
    return out
