"""Findings for post-incident review: a registry of plain rule functions, mitmproxy-addon style.

Each rule has an id, a severity, a title and an explanation, and yields instances with the
evidence rows (event ids, handshake ids, token fingerprints). Rules read the analysis; they
never change it. Instances of one rule on one client -> server pair become one finding (a count,
first and last time, a few examples, every evidence id), so a capture with 300 expired tokens
gives one line per pair, not 300.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from analyzer.analysis import credentials
from analyzer.analysis.credentials import TrustedIssuers
from analyzer.analysis.handshakes import presented
from analyzer.analysis.scope import bare_host
from analyzer.model import (
    SEVERITIES,
    Event,
    Finding,
    Handshake,
    PairVerdict,
    TlsConnection,
    TokenRecord,
    request_url,
)
from analyzer.oauth.certificates import expiry, expiry_text
from analyzer.oauth.keys import SigningKey, thumbprint_forms, x5t_to_hex
from analyzer.oauth.principals import same_issuer
from analyzer.words import plural


@dataclass(frozen=True, slots=True)
class Context:
    """What the rules look at."""

    events: list[Event]
    handshakes: list[Handshake]
    tokens: list[TokenRecord]
    verdicts: list[PairVerdict]
    tls: list[TlsConnection] = field(default_factory=list)  # every TLS connection
    keys: list[SigningKey] = field(default_factory=list)  # captured documents and --keys files
    token_keys: dict[str, SigningKey] = field(default_factory=dict)  # token fp -> verifying key


@dataclass(frozen=True, slots=True)
class Rule:
    rule_id: str
    severity: str
    title: str
    explanation: str
    check: Callable[[Context], Iterator[tuple[str, list[Event]]]]


RULES: list[Rule] = []


def rule(rule_id: str, severity: str, title: str, explanation: str) -> Callable:
    """Register a rule function yielding ``(detail, evidence events)``."""
    assert severity in SEVERITIES

    def register(fn: Callable[[Context], Iterator[tuple[str, list[Event]]]]) -> Callable:
        RULES.append(Rule(rule_id, severity, title, explanation, fn))
        return fn

    return register


#: How many instance details a finding keeps as examples.
EXAMPLES = 3


def run_rules(ctx: Context) -> list[Finding]:
    """Every finding of every rule, one per rule and pair, most severe first, then in time order."""
    out = []
    for r in RULES:
        groups: dict[tuple, list[tuple[str, list[Event]]]] = defaultdict(list)
        for detail, evidence in r.check(ctx):
            if evidence:
                first = min(evidence, key=lambda e: (e.ts, e.event_id))
                groups[_pair(first)].append((detail, evidence))
            else:  # about the capture as a whole (e.g. a published key): each stands alone
                groups[("", detail)].append((detail, evidence))
        out += [_finding(r, instances) for instances in groups.values()]
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    out.sort(key=lambda f: (rank[f.severity], f.first_ts or 0.0, f.rule_id))
    return out


def _pair(e: Event) -> tuple:
    return (e.client_ip, e.server_ip, e.server_port, (e.host or "").lower())


def _finding(r: Rule, instances: list[tuple[str, list[Event]]]) -> Finding:
    """One finding from the instances of rule ``r`` on one pair."""
    evidence = {e.event_id: e for _, events in instances for e in events}.values()
    details = [detail for detail, _ in instances]
    count = len(instances)
    detail = details[0]
    if count > 1:
        where = min(evidence, key=lambda e: e.ts)
        detail = f"{count} times {_where(where)}; first: {detail}"
    return Finding(
        rule_id=r.rule_id,
        severity=r.severity,
        title=r.title,
        detail=detail,
        explanation=r.explanation,
        first_ts=min((e.ts for e in evidence), default=None),
        last_ts=max((e.ts for e in evidence), default=None),
        count=count,
        examples=tuple(details[:EXAMPLES]),
        event_ids=tuple(sorted(e.event_id for e in evidence)),
        handshake_ids=tuple(
            sorted({e.handshake_id for e in evidence if e.handshake_id is not None})
        ),
        token_fps=tuple(sorted({e.token_fp for e in evidence if e.token_fp})),
    )


# -- helpers -------------------------------------------------------------------------------
def _cleartext(e: Event) -> bool:
    return e.transport != "tls"


def _presents(e: Event, scheme: str) -> bool:
    """Did the request present a credential of ``scheme``: the one its event describes, or one
    beside it (``also_presented``: two tokens, a Basic password beside NTLM, ...)?"""
    return e.scheme == scheme or any(a.split(" ", 1)[0] == scheme for a in e.also_presented)


def _grouped(events: list[Event], key: Callable[[Event], tuple]) -> Iterator[tuple[tuple, list]]:
    groups: dict[tuple, list[Event]] = defaultdict(list)
    for e in events:
        groups[key(e)].append(e)
    yield from groups.items()


def _where(e: Event) -> str:
    return f"{e.client_ip} -> {e.host or e.server_ip} ({e.server_ip}:{e.server_port})"


def _accepted(events: list[Event]) -> str:
    statuses = sorted({str(e.status) if e.status is not None else "no answer" for e in events})
    return "server answered " + ", ".join(statuses)


# -- the rules -----------------------------------------------------------------------------
@rule(
    "cleartext-basic",
    "high",
    "Basic credentials in cleartext",
    "A Basic header carries the password itself (base64 is not encryption). Anyone on the path "
    "had it: change the password and move the service to HTTPS.",
)
def _cleartext_basic(ctx: Context) -> Iterator[tuple[str, list[Event]]]:
    basic = [e for e in ctx.events if _presents(e, "basic") and _cleartext(e)]
    for (user, domain, _server), group in _grouped(basic, _basic_account):
        who = f"{domain}\\{user}" if domain else (user or "(no user)")
        yield (
            f"{who}: {plural(len(group), 'request')} {_where(group[0])}; {_accepted(group)}",
            group,
        )


def _basic_account(e: Event) -> tuple:
    """(user, domain, server) of a Basic credential: the event's own when it describes it; one
    beside another credential is named by none (the event's user is the other one's)."""
    if e.scheme == "basic":
        return e.user, e.domain, e.server_ip
    return None, None, e.server_ip


@rule(
    "cleartext-bearer",
    "high",
    "Bearer token over cleartext HTTP",
    "Whoever sees a bearer token can replay it until it expires. Tokens belong on TLS only.",
)
def _cleartext_bearer(ctx: Context) -> Iterator[tuple[str, list[Event]]]:
    bearer = [e for e in ctx.events if _presents(e, "bearer") and presented(e) and _cleartext(e)]
    for _key, group in _grouped(bearer, _pair):
        tokens = plural(len({e.cred_fp for e in group}), "distinct token")
        yield f"{plural(len(group), 'request')}, {tokens}, {_where(group[0])}", group


@rule(
    "token-expired-use",
    "high",
    "Token used after it expired",
    "A token presented after exp (beyond 5 minutes of clock skew) is a replay or a broken client "
    "clock. If the server accepted it, the server does not check expiry.",
)
def _expired(ctx: Context) -> Iterator[tuple[str, list[Event]]]:
    late = [e for e in ctx.events if credentials.expired(e)]
    for _fp, group in _grouped(late, lambda e: (e.token_fp,)):
        e = group[0]
        accepted = [x for x in group if x.status is not None and x.status < 400]
        verdict = "ACCEPTED by the server" if accepted else _accepted(group)
        yield f"token {e.token_fp} used {plural(len(group), 'time')} after exp, {verdict}", group


@rule(
    "token-not-yet-valid",
    "medium",
    "Token used before its nbf",
    "A token presented before its not-before time points at clock trouble or a forged token.",
)
def _early(ctx: Context) -> Iterator[tuple[str, list[Event]]]:
    early = [e for e in ctx.events if credentials.not_yet_valid(e)]
    for _fp, group in _grouped(early, lambda e: (e.token_fp,)):
        yield f"token {group[0].token_fp} used before nbf; {_accepted(group)}", group


@rule(
    "token-multiple-clients",
    "medium",
    "Same token presented from more than one address",
    "S2S tokens are minted per caller; one token coming from several addresses suggests it was "
    "copied and replayed.",
)
def _replayed(ctx: Context) -> Iterator[tuple[str, list[Event]]]:
    for token in ctx.tokens:
        if token.role == "bearer" and token.format != "empty" and len(token.clients) > 1:
            uses = [e for e in ctx.events if e.token_fp == token.fingerprint]
            yield f"token {token.fingerprint} from {', '.join(token.clients)}", uses


@rule(
    "unsigned-token",
    "high",
    "Unsigned token that is not an S2S outer token",
    "alg none is acceptable only for the outer (user context) token of a Microsoft S2S pair, "
    "whose actor token is signed. Any other unsigned token can be forged by anyone.",
)
def _unsigned(ctx: Context) -> Iterator[tuple[str, list[Event]]]:
    bad = [e for e in ctx.events if credentials.unsigned(e)]
    for _fp, group in _grouped(bad, lambda e: (e.token_fp,)):
        yield f"token {group[0].token_fp} ({group[0].token_format}); {_accepted(group)}", group


@rule(
    "bad-signature",
    "high",
    "Token signature does not verify",
    "The token (or its actor) was altered after signing, or signed by a different key than the "
    "one published for its x5t/kid. A server that accepted it is not validating signatures.",
)
def _bad_signature(ctx: Context) -> Iterator[tuple[str, list[Event]]]:
    bad = [e for e in ctx.events if credentials.bad_signature(e)]
    for _fp, group in _grouped(bad, lambda e: (e.token_fp,)):
        layer = "actor token" if group[0].token_actor_fp else "token"
        yield f"{layer} of {group[0].token_fp} fails verification; {_accepted(group)}", group


@rule(
    "untrusted-issuer",
    "medium",
    "Token issuer not among the server's trusted issuers",
    "The server's Bearer challenge lists the issuers it trusts (trusted_issuers); a token from "
    "anyone else should be rejected. Rejected: check the partner application / auth server "
    "configuration. Accepted anyway: the server does not enforce the list it advertises.",
)
def _untrusted(ctx: Context) -> Iterator[tuple[str, list[Event]]]:
    trust = TrustedIssuers(ctx.events)
    suspects = [e for e in ctx.events if trust.untrusted(e)]
    for (issuer,), group in _grouped(suspects, lambda e: (e.token_actor_iss or e.token_iss,)):
        taken = [e for e in group if credentials.accepted(e)]
        what = (
            f"ACCEPTED anyway ({_accepted(taken)})"
            if taken
            else f"refused as expected ({_accepted(group)})"
        )
        yield f"issuer {issuer} not in trusted_issuers of {_where(group[0])}; {what}", group


@rule(
    "audience-host-mismatch",
    "medium",
    "Token audience names another host",
    "The host in the token's aud must be the host the request went to (Exchange 4002); a "
    "mismatch means a token minted for another server, or a wrong autodiscover/EWS URL.",
)
def _audience_host(ctx: Context) -> Iterator[tuple[str, list[Event]]]:
    off = [e for e in ctx.events if {"audience-host", "actor-audience-host"} & set(e.token_flags)]
    for _key, group in _grouped(off, lambda e: (e.token_aud_host, e.host)):
        e = group[0]
        yield f"aud host {e.token_aud_host} but Host {e.host}; {_accepted(group)}", group


@rule(
    "oauth-fallback",
    "medium",
    "OAuth rejected, then another scheme accepted",
    "The client could not use OAuth and fell back to a password-based scheme, so the integration "
    "is not really using OAuth. Fix the cause the server gave (x-ms-diagnostics).",
)
def _fallback(ctx: Context) -> Iterator[tuple[str, list[Event]]]:
    by_id = {h.handshake_id: h for h in ctx.handshakes}
    for verdict in ctx.verdicts:
        for fb in verdict.fallbacks:
            ids = set(by_id[fb["rejected_handshake"]].event_ids)
            ids |= set(by_id[fb["fallback_handshake"]].event_ids)
            group = [e for e in ctx.events if e.event_id in ids]
            why = f"{fb['diag_code']} {fb['reason']}" if fb["diag_code"] else fb["reason"]
            yield f"{_where(group[0])}: OAuth rejected ({why}), then {fb['to_class']}", group


@rule(
    "metadata-fetch-failed",
    "medium",
    "Metadata document fetch failed",
    "Partner applications and auth servers are configured with a metadata URL; when it fails "
    "(wrong path such as /metadata/jason/1, 404, 5xx), trust cannot be set up or refreshed.",
)
def _metadata(ctx: Context) -> Iterator[tuple[str, list[Event]]]:
    failed = [
        e
        for e in ctx.events
        if "metadata" in e.reasons and (e.status is None or e.status == 404 or e.status >= 500)
    ]
    for _url, group in _grouped(failed, lambda e: (e.host, e.uri)):
        e = group[0]
        status = e.status if e.status is not None else "no answer"
        yield f"{request_url(e)} -> {status}", group


@rule(
    "malformed-principal",
    "medium",
    "Malformed principal id",
    "An app id that is not a GUID, or one character off a well-known Microsoft id, usually comes "
    "from a mistyped configuration (a widely read guide printed 00000002-000-0ff1-...).",
)
def _malformed(ctx: Context) -> Iterator[tuple[str, list[Event]]]:
    by_token = {t.fingerprint: t for t in ctx.tokens}
    for e in ctx.events:
        record = by_token.get(e.token_fp or "")
        if record is not None and ("principals" in e.token_flags or "principals" in record.flags):
            messages = [c["message"] for c in record.checks if c["id"] == "principals"]
            yield f"token {e.token_fp}: {'; '.join(messages)}", [e]
        for c in e.challenges:
            for entry in c.details.get("trusted_issuers", []):
                if entry["issues"]:
                    yield f"trusted issuer {entry['raw']}: {'; '.join(entry['issues'])}", [e]


@rule(
    "ntlmv1",
    "high",
    "NTLMv1 response",
    "NTLMv1 responses can be cracked or relayed cheaply; require NTLMv2 (LmCompatibilityLevel 5).",
)
def _ntlmv1(ctx: Context) -> Iterator[tuple[str, list[Event]]]:
    v1 = [e for e in ctx.events if (e.ntlm_response or "").startswith("NTLMv1")]
    for _who, group in _grouped(v1, lambda e: (e.domain, e.user)):
        e = group[0]
        yield f"{e.domain}\\{e.user} sent {e.ntlm_response} to {_where(e)}", group


@rule(
    "long-lived-token",
    "low",
    "Token valid for more than 24 hours",
    "Microsoft S2S tokens live 8-24 h; a longer lifetime widens the replay window and may mean "
    "a hand-made or tampered token.",
)
def _long_lived(ctx: Context) -> Iterator[tuple[str, list[Event]]]:
    long = [e for e in ctx.events if {"lifetime", "actor-lifetime"} & set(e.token_flags)]
    for _fp, group in _grouped(long, lambda e: (e.token_fp,)):
        yield f"token {group[0].token_fp}: lifetime over 24 h", group


@rule(
    "token-exp-before-nbf",
    "medium",
    "Token expires before it becomes valid",
    "A token whose exp is not after its nbf (or iat) is never valid: a broken issuer clock, "
    "swapped claims or a hand-made token. A server that accepted it does not check times.",
)
def _exp_before_nbf(ctx: Context) -> Iterator[tuple[str, list[Event]]]:
    never = [e for e in ctx.events if credentials.exp_before_nbf(e)]
    for _fp, group in _grouped(never, lambda e: (e.token_fp,)):
        yield f"token {group[0].token_fp}: exp precedes nbf; {_accepted(group)}", group


@rule(
    "token-endpoint-error",
    "medium",
    "Token endpoint returned an error",
    "The STS refused to issue a token (invalid_client: bad client credentials or certificate; "
    "invalid_grant: bad or expired assertion; ...). The caller cannot get a token.",
)
def _endpoint_error(ctx: Context) -> Iterator[tuple[str, list[Event]]]:
    errors = [e for e in ctx.events if e.oauth_error]
    for (error, _host), group in _grouped(errors, lambda e: (e.oauth_error, e.host)):
        yield f"{error} from {group[0].host or group[0].server_ip} ({len(group)}x)", group


# -- certificates and signing keys -----------------------------------------------------------
def _tls_certificates(ctx: Context, status: str) -> Iterator[tuple[str, list[Event]]]:
    """TLS server certificates in ``status`` ("expired" / "expiring") when they were served."""
    groups: dict[tuple, list[TlsConnection]] = defaultdict(list)
    for t in ctx.tls:
        if t.cert_sha1 and expiry(t.cert_not_after, t.ts) == status:
            groups[(t.server_ip, t.server_port, t.cert_sha1)].append(t)
    for (ip, port, sha1), conns in groups.items():
        first = conns[0]
        names = sorted({t.sni for t in conns if t.sni})
        server = f"{', '.join(names)} ({ip}:{port})" if names else f"{ip}:{port}"
        assert first.cert_not_after is not None
        when = expiry_text(first.cert_not_after, first.ts)
        hosts = {bare_host(n) for n in names}
        evidence = [
            e
            for e in ctx.events
            if (e.server_ip == ip and e.server_port == port)
            or (e.host is not None and bare_host(e.host) in hosts)
        ]
        yield (
            (
                f"{server} presented certificate {sha1} ({first.cert_subject}, issued by "
                f"{first.cert_issuer}) that {when}; {plural(len(conns), 'TLS connection')}"
            ),
            evidence,
        )


@rule(
    "tls-certificate-expired",
    "high",
    "TLS server certificate expired",
    "The server presented a certificate past its validity: clients that check it (Exchange, "
    "Skype for Business and SharePoint all do) refuse the connection, so S2S calls, metadata "
    "refreshes and autodiscover fail before any token is sent. Renew the certificate and bind it "
    "(IIS, Set-CsCertificate, Enable-ExchangeCertificate). Read from the TLS <= 1.2 handshake "
    "(TLS 1.3 encrypts the certificate).",
)
def _tls_certificate_expired(ctx: Context) -> Iterator[tuple[str, list[Event]]]:
    yield from _tls_certificates(ctx, "expired")


@rule(
    "tls-certificate-expiring",
    "medium",
    "TLS server certificate expires within 30 days",
    "The server's certificate expires within 30 days of the capture. When it lapses, every "
    "client that checks certificates stops connecting (S2S calls, metadata, autodiscover): "
    "renew and bind the new one before then. Read from the TLS <= 1.2 handshake (TLS 1.3 "
    "encrypts the certificate).",
)
def _tls_certificate_expiring(ctx: Context) -> Iterator[tuple[str, list[Event]]]:
    yield from _tls_certificates(ctx, "expiring")


def _capture_time(ctx: Context) -> float | None:
    """The latest time the capture shows (requests, responses, TLS connections)."""
    times = [e.response_ts or e.ts for e in ctx.events] + [t.ts for t in ctx.tls]
    return max(times, default=None)


def _key_name(key: SigningKey) -> str:
    ident = key.thumbprint or key.x5t or key.kid or "(no thumbprint)"
    return f"{ident} ({key.subject})" if key.subject else ident


def _key_events(ctx: Context, key: SigningKey) -> list[Event]:
    """Events that used a token the key verified, and the fetches of documents publishing it."""
    fps = {fp for fp, k in ctx.token_keys.items() if k is key}
    location = key.source.location if key.source.kind == "capture" else None
    return [
        e
        for e in ctx.events
        if e.token_fp in fps
        or e.token_actor_fp in fps
        or ("metadata" in e.reasons and location is not None and request_url(e) == location)
    ]


def _signing_certificates(ctx: Context, status: str) -> Iterator[tuple[str, list[Event]]]:
    """Keys that sign S2S tokens: published in S2S metadata, given as files, or verifying a
    captured token (a JWKS key of a cloud STS that signs nothing here is Microsoft's to roll)."""
    at = _capture_time(ctx)
    verifying = {id(k) for k in ctx.token_keys.values()}
    for key in ctx.keys:
        if expiry(key.not_after, at) != status:
            continue
        relevant = key.source.document == "s2s-metadata" or key.source.kind == "file"
        if not relevant and id(key) not in verifying:
            continue
        assert key.not_after is not None and at is not None
        signed = sum(1 for k in ctx.token_keys.values() if k is key)
        where = key.metadata_issuer or key.source.location
        yield (
            (
                f"signing certificate {_key_name(key)} {expiry_text(key.not_after, at)}; "
                f"published by {where}; verifies {plural(signed, 'captured token')}"
            ),
            _key_events(ctx, key),
        )


@rule(
    "signing-certificate-expired",
    "high",
    "Token signing certificate expired",
    "The certificate whose key signs S2S tokens (from captured metadata or --keys) is past its "
    "validity. Partners reject tokens signed with it, and OAuth between the servers fails (often "
    "with a fallback to NTLM or Kerberos). Renew the auth certificate (Exchange: "
    "New-ExchangeCertificate, Set-AuthConfig -NewCertificateThumbprint, then "
    "-PublishCertificate; SfB: Set-CsCertificate -Type OAuthTokenIssuer) and let partners "
    "refresh the metadata.",
)
def _signing_certificate_expired(ctx: Context) -> Iterator[tuple[str, list[Event]]]:
    yield from _signing_certificates(ctx, "expired")


@rule(
    "signing-certificate-expiring",
    "medium",
    "Token signing certificate expires within 30 days",
    "The certificate whose key signs S2S tokens (from captured metadata or --keys) expires "
    "within 30 days of the capture. When it lapses, partners reject the tokens and S2S OAuth "
    "breaks; nothing warns before that day. Renew the auth certificate now and publish the new "
    "one next to it (Exchange: Set-AuthConfig -NewCertificateThumbprint ... -PublishCertificate) "
    "so partners pick it up from the metadata before the switch.",
)
def _signing_certificate_expiring(ctx: Context) -> Iterator[tuple[str, list[Event]]]:
    yield from _signing_certificates(ctx, "expiring")


def _names_key(token: TokenRecord, key: SigningKey) -> bool:
    """Does the token's header name ``key`` (x5t, or kid as a kid or a thumbprint)?"""
    if token.x5t and key.x5t and key.x5t in thumbprint_forms(token.x5t):
        return True
    if token.kid:
        return token.kid == key.kid or bool(key.x5t and key.x5t in thumbprint_forms(token.kid))
    return False


def _issuers_with_both(
    ctx: Context,
) -> Iterator[tuple[str, list[SigningKey], list[TokenRecord]]]:
    """Per issuer whose metadata the capture holds: its published keys and its signed tokens
    in the capture (issuers with only one of the two are left out: nothing to compare)."""
    published: dict[str, list[SigningKey]] = defaultdict(list)
    for key in ctx.keys:
        if key.source.kind == "capture" and key.metadata_issuer:
            published[key.metadata_issuer].append(key)
    for issuer, keys in published.items():
        tokens = [
            t for t in ctx.tokens if t.format == "jwt" and t.iss and same_issuer(issuer, t.iss)
        ]
        if tokens:
            yield issuer, keys, tokens


def _token_events(ctx: Context, fps: set[str]) -> list[Event]:
    return [e for e in ctx.events if e.token_fp in fps or e.token_actor_fp in fps]


@rule(
    "signing-key-unused",
    "info",
    "Published signing key that no captured token uses",
    "The issuer's metadata publishes a key that none of its tokens in the capture is signed "
    "with. Judged only for issuers whose metadata and signed tokens are both in the capture. "
    "Normal for the next certificate of a planned rollover; a key that stays unused long after "
    "is stale and widens what a partner trusts: unpublish it once nothing signs with it.",
)
def _signing_key_unused(ctx: Context) -> Iterator[tuple[str, list[Event]]]:
    for issuer, keys, tokens in _issuers_with_both(ctx):
        for key in keys:
            used = any(
                ctx.token_keys.get(t.fingerprint) is key or _names_key(t, key) for t in tokens
            )
            if not used:
                yield (
                    (
                        f"{issuer} publishes {_key_name(key)} at {key.source.location}, but none "
                        f"of its {plural(len(tokens), 'signed token')} in the capture uses it"
                    ),
                    _key_events(ctx, key),
                )


@rule(
    "signing-key-unpublished",
    "medium",
    "Tokens signed with a key the issuer's metadata does not publish",
    "The issuer signs tokens with a certificate (x5t/kid) that its captured metadata does not "
    "list: a certificate rollover done halfway (new certificate in use, not yet published, or "
    "the metadata partners read is stale). Partners that refreshed this metadata reject these "
    "tokens. Judged only for issuers whose metadata and signed tokens are both in the capture. "
    "Publish the certificate (Exchange: Set-AuthConfig -PublishCertificate) and have partners "
    "refresh the metadata.",
)
def _signing_key_unpublished(ctx: Context) -> Iterator[tuple[str, list[Event]]]:
    for issuer, keys, tokens in _issuers_with_both(ctx):
        groups: dict[tuple, set[str]] = defaultdict(set)
        for t in tokens:
            if (t.x5t or t.kid) and not any(_names_key(t, key) for key in keys):
                groups[(t.x5t, t.kid)].add(t.fingerprint)
        published = ", ".join(_key_name(k) for k in keys)
        for (x5t, kid), fps in groups.items():
            hex_id = x5t_to_hex(x5t or kid or "")
            named = f"x5t {x5t}" if x5t else f"kid {kid}"
            named += f" (thumbprint {hex_id})" if hex_id else ""
            yield (
                (
                    f"{plural(len(fps), 'token')} of {issuer} name {named}, but its metadata "
                    f"publishes only {published}"
                ),
                _token_events(ctx, fps),
            )
