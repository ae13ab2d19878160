"""``analyze --credentials``: one row per distinct credential, with where and how it was used."""

from __future__ import annotations

from collections import Counter

from analyzer.model import CredentialRecord, Event
from analyzer.words import endpoint


def credential_records(events: list[Event]) -> list[CredentialRecord]:
    """Every credential presented (empty Bearer probes left out), in order of first use."""
    groups: dict[str, list[Event]] = {}
    for e in events:
        if e.cred_fp and e.cred_len:
            groups.setdefault(e.cred_fp, []).append(e)
    records = []
    for fp, uses in groups.items():
        first = uses[0]
        who = next((e for e in uses if e.user or e.token_subject), first)
        records.append(
            CredentialRecord(
                cred_fp=fp,
                scheme=first.scheme,
                identity=_identity(who),
                issuer=first.token_iss_app or first.token_iss,
                first_seen=min(e.ts for e in uses),
                last_seen=max(e.ts for e in uses),
                uses=len(uses),
                clients=tuple(dict.fromkeys(e.client_ip for e in uses)),
                servers=tuple(
                    dict.fromkeys(e.host or endpoint(e.server_ip, e.server_port) for e in uses)
                ),
                outcomes=dict(Counter(e.outcome or "unanswered" for e in uses)),
                password=next((e.password for e in uses if e.password is not None), None),
            )
        )
    return records


def _identity(e: Event) -> str | None:
    if e.user:
        return f"{e.domain}\\{e.user}" if e.domain else e.user
    return e.token_subject
