"""An analysis narrowed to the exchanges a scope selects (``analyze`` and ``report`` filters).

The whole capture is analysed first, so handshakes, token verification and signing keys see
every packet; then the events listed are those the scope matches (keeping their numbers), the
handshakes those with a matching event, the pairs and verdicts are worked out again from them,
the tokens are those the matching events carry, and the findings are the rules run again over
that. Findings about signing keys (certificates, keys unused or unpublished) speak of the whole
capture: they are kept when one of their events matches. Blind spots and TLS connections are
kept when their endpoints and time could be in scope, as ``verify`` counts them.
"""

from __future__ import annotations

from analyzer.analysis.coverage import from_tls
from analyzer.analysis.handshakes import pair_verdicts
from analyzer.analysis.scope import Scope, addresses_by_host
from analyzer.engine import AnalysisResult
from analyzer.model import SEVERITIES, Event, Finding, evolve

#: Findings about the signing keys of the whole capture, not about particular exchanges.
KEY_RULES = frozenset(
    {
        "signing-certificate-expired",
        "signing-certificate-expiring",
        "signing-key-unused",
        "signing-key-unpublished",
    }
)


def capture_start(result: AnalysisResult) -> float | None:
    """The first packet's time, which offsets such as ``--since +30s`` count from."""
    starts = [c.first_ts for c in result.captures if c.first_ts is not None]
    if starts:
        return min(starts)
    return min((e.ts for e in result.events), default=None)


def narrow(result: AnalysisResult, scope: Scope) -> AnalysisResult:
    """``result`` as seen through ``scope`` (offsets counted from the capture's start)."""
    scope = scope.anchored(capture_start(result))
    if scope == Scope():
        return result
    host_ips = addresses_by_host(result.events)
    events = [e for e in result.events if scope.matches(e, host_ips)]
    ids = {e.event_id for e in events}
    handshakes = [h for h in result.handshakes if ids.intersection(h.event_ids)]
    fps = _fingerprints(events)
    narrowed = NarrowedResult(
        events,
        result.captures,
        derive_tokens=lambda: [
            t for t in result.tokens if t.fingerprint in fps or fps.intersection(t.outer_fps)
        ],
        handshakes=handshakes,
        verdicts=pair_verdicts(events, handshakes),
        keys=result.keys,
        key_warnings=result.key_warnings,
        not_inspected=[n for n in result.not_inspected if scope.covers(n, host_ips)],
        tls=[t for t in result.tls if scope.covers(from_tls(t), host_ips)],
        signing_keys=result.signing_keys,
        token_keys=result._token_keys,
        inputs=result.inputs,
    )
    narrowed.whole, narrowed.ids = result, ids
    return narrowed


class NarrowedResult(AnalysisResult):
    """An ``AnalysisResult`` of the exchanges in a scope; its findings, worked out on first use
    like any result's, are the rules run again over it, with the whole capture's findings about
    signing keys that have an event in scope."""

    __slots__ = ("ids", "whole")

    @property
    def findings(self) -> list[Finding]:
        if self._findings is None:
            own = [f for f in AnalysisResult.findings.fget(self) if f.rule_id not in KEY_RULES]
            keys = [_trimmed(f, self.ids) for f in self.whole.findings if f.rule_id in KEY_RULES]
            self._findings = _by_severity(own + [f for f in keys if f is not None])
        return self._findings


def _fingerprints(events: list[Event]) -> set[str]:
    """Every token fingerprint the events carry (presented, actor, issued, assertion)."""
    fps = set()
    for e in events:
        fps.update((e.token_fp, e.token_actor_fp, e.access_token_fp, e.assertion_fp))
        fps.update((e.id_token_fp, e.refresh_token_fp))
    fps.discard(None)
    return fps


def _trimmed(f: Finding, ids: set[int]) -> Finding | None:
    """A whole-capture finding with only its events in scope; None when none is."""
    kept = tuple(i for i in f.event_ids if i in ids)
    if not kept:
        return None
    return f if kept == f.event_ids else evolve(f, event_ids=kept)


def _by_severity(findings: list[Finding]) -> list[Finding]:
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(findings, key=lambda f: (rank[f.severity], f.first_ts or 0.0, f.rule_id))
