"""Token intelligence over a whole analysis: keys, decoded token fields on events, token table.

Keys come from the metadata / JWKS documents seen anywhere in the captures (a token used
before its metadata was fetched still verifies) and from files the user supplies. Each distinct
token is decoded once (the decoder caches by text), verified once, and its checks that do not
depend on the time of use are worked out once per role and Host.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from analyzer.model import Event, TokenRecord, evolve, request_url
from analyzer.oauth.checks import CheckPlan, expiry_time, failed, plan_checks
from analyzer.oauth.keys import KeyStore, SignatureResult, SigningKey, verify_token
from analyzer.oauth.principals import Principal, parse_principal
from analyzer.oauth.tokens import DecodedToken, decode_token, iso_utc
from analyzer.report.times import format_utc

#: Event fields holding token text, with the role a token found there plays.
TOKEN_SOURCES = (
    ("credential", "bearer"),
    ("access_token", "access-token"),
    ("id_token", "id-token"),
    ("refresh_token", "refresh-token"),
    ("assertion", "assertion"),
)


def load_keys(events: Iterable[Event], key_files: Iterable[str] = ()) -> KeyStore:
    """A key store filled from captured documents, then from the user's key files.

    Raises ``KeyFileError`` for a key file that cannot be used.
    """
    store = KeyStore()
    for event in events:
        if event.document:
            store.add_document(event.document, request_url(event), event.ts)
    for path in key_files:
        store.add_file(path)
    return store


@dataclass(slots=True)
class _Seen:
    """Where one token showed up."""

    role: str
    token: DecodedToken
    text: str
    first: float
    last: float
    host: str | None
    uses: int = 0
    clients: set[str] = field(default_factory=set)
    servers: set[str] = field(default_factory=set)
    outer: set[str] = field(default_factory=set)


class TokenAnalysis:
    """Decodes, checks and verifies the tokens of a list of events."""

    def __init__(self, store: KeyStore) -> None:
        self.store = store
        # token text -> (fingerprint, signature result): keyed by the whole text, as the decode
        # cache is - a crafted 48-bit fingerprint collision must not inherit another token's
        # "verified" (a second preimage of 12 hex digits is hours of GPU time, not years)
        self._signatures: dict[str, tuple[str, SignatureResult]] = {}
        self._seen: dict[str, _Seen] = {}
        # (fingerprint, role, host) -> (token, its check plan, its event fields but the flags)
        self._views: dict[tuple[str, str, str | None], tuple[DecodedToken, CheckPlan, dict]] = {}

    @property
    def distinct(self) -> int:
        """Distinct tokens seen so far."""
        return len(self._seen)

    def enrich(self, events: list[Event]) -> list[Event]:
        """The events with their token_* fields filled in (and every token remembered)."""
        out = []
        for event in events:
            fields = self._event(event)
            out.append(evolve(event, **fields) if fields else event)
        return out

    def event_fields(self, events: list[Event]) -> list[dict]:
        """Per event, the token_* fields ``enrich`` sets (empty for an event without a token),
        so a caller can set them in the same copy as other fields; every token is remembered."""
        return [self._event(e) for e in events]

    def records(self, reveal_secrets: bool = False) -> list[TokenRecord]:
        """One row per distinct token, in order of first appearance."""
        rows = sorted(self._seen.values(), key=lambda s: (s.first, s.token.fingerprint))
        return [self._record(s, reveal_secrets) for s in rows]

    def signature(self, token: DecodedToken) -> SignatureResult:
        """Signature status of ``token``, computed once per token: ``untrusted-key``
        when it verifies only with a key nothing ties to its issuer (``KeyStore.vouches``)."""
        key_text = token.text or token.fingerprint  # no text: too large to decode, or verify
        known = self._signatures.get(key_text)
        result = known[1] if known is not None else None
        if result is None:
            result = verify_token(token, self.store)
            key = result.key
            if result.status == "verified" and key and not self.store.vouches(key, token.iss):
                result = SignatureResult(
                    "untrusted-key",
                    key,
                    f"{token.alg} verifies with {key.describe()} from {key.source.location}, but "
                    f"nothing ties that key to the issuer {token.iss or '(none)'}: not its S2S "
                    "metadata, not its OpenID configuration's jwks_uri, not a --keys file",
                )
            self._signatures[key_text] = (token.fingerprint, result)
        return result

    def verifying_keys(self) -> dict[str, SigningKey]:
        """Token fingerprint -> the key that verified it, for every token verified so far."""
        return {
            fp: result.key
            for fp, result in self._signatures.values()
            if result.status == "verified" and result.key is not None
        }

    # -- internals -------------------------------------------------------------------------
    def _event(self, event: Event) -> dict:
        primary: tuple[DecodedToken, str] | None = None
        for name, role in TOKEN_SOURCES:
            text = getattr(event, name)
            if text is None or (name == "credential" and event.scheme != "bearer"):
                continue
            token = decode_token(text)
            self._remember(token, text, role, event, presented=role == "bearer")
            if primary is None:
                primary = token, role
        for text in event.other_tokens:  # beside another credential: the event is not OAuth
            self._remember(decode_token(text), text, "bearer", event, presented=True)
        if primary is None:
            return {}
        return self._fields(*primary, event)

    def _remember(
        self, token: DecodedToken, text: str, role: str, event: Event, presented: bool
    ) -> None:
        self._note(token, text, role, event, presented)
        actor = token.actor_token
        if actor is not None:
            actor_seen = self._note(actor, actor.text, "actor", event, presented)
            actor_seen.outer.add(token.fingerprint)

    def _note(
        self, token: DecodedToken, text: str, role: str, event: Event, presented: bool
    ) -> _Seen:
        ts = _seen_at(event, presented)
        seen = self._seen.get(token.fingerprint)
        if seen is None:
            seen = _Seen(role, token, text, ts, ts, event.host)
            self._seen[token.fingerprint] = seen
        seen.first = min(seen.first, ts)
        seen.last = max(seen.last, ts)
        if presented:
            seen.uses += 1
            seen.clients.add(event.client_ip)
            seen.servers.add(f"{event.server_ip}:{event.server_port}")
        return seen

    def _fields(self, token: DecodedToken, role: str, event: Event) -> dict:
        presented = role == "bearer"
        host = event.host if presented else None
        if presented and host is None and event.protocol.startswith("http"):
            host = ""  # a request that named no host: an audience host cannot be matched
        token, plan, fixed = self._view(token, role, host)
        at = _seen_at(event, presented)
        # a presented token's request may have been read as late as its head's last copy
        until = event.request_last_ts if presented else None
        flags = self._flags(token, plan.failed(at, until)) + self._key_flags(token, at, until)
        return {**fixed, "token_flags": flags}

    def _key_flags(
        self, token: DecodedToken, at: float, until: float | None = None
    ) -> tuple[str, ...]:
        """``signing-certificate-expired`` / ``-not-yet-valid`` when the certificate of a key
        that verified the token (or its actor) was not valid at the time of this use (judged
        at ``until`` for expiry when the use spans time, as ``CheckPlan.failed``)."""
        late_at = expiry_time(at, until)
        out: list[str] = []
        for layer in (token, token.actor_token):
            result = self.signature(layer) if layer is not None else None
            key = result.key if result is not None and result.status == "verified" else None
            if key is None:
                continue
            if key.not_after is not None and late_at > key.not_after:
                out.append("signing-certificate-expired")
            if key.not_before is not None and at < key.not_before:
                out.append("signing-certificate-not-yet-valid")
        return tuple(dict.fromkeys(out))

    def _view(
        self, token: DecodedToken, role: str, host: str | None
    ) -> tuple[DecodedToken, CheckPlan, dict]:
        """What does not change between uses of ``token`` with this role and Host: its check
        plan and its event fields but ``token_flags`` (a token is typically used many times)."""
        key = (token.fingerprint, role, host)
        view = self._views.get(key)
        if view is None or view[0] is not token:
            plan = plan_checks(token, host=host, role=role)
            view = self._views[key] = (token, plan, self._fixed_fields(token))
        return view

    def _plan(self, token: DecodedToken, role: str, host: str | None) -> CheckPlan:
        return self._view(token, role, host)[1]

    def _fixed_fields(self, token: DecodedToken) -> dict:
        actor = token.actor_token
        return {
            "token_fp": token.fingerprint,
            "token_format": token.format,
            "token_alg": token.alg,
            "token_iss": token.iss,
            "token_aud": token.aud,
            "token_nameid": token.nameid,
            **{f"token_{name}": value for name, value in _named(token).items()},
            "token_nbf": token.nbf,
            "token_exp": token.exp,
            "token_actor_iss": actor.iss if actor else None,
            "token_actor_fp": token.actor_fp,
            "token_signature": self._effective_signature(token),
            "token_key_source": _key_source(self._verifying_result(token)),
        }

    def _flags(self, token: DecodedToken, failed_ids: tuple[str, ...]) -> tuple[str, ...]:
        """Failed checks (their ids), then signature problems of the token and of its actor."""
        flags = list(failed_ids)
        for prefix, layer in (("", token), ("actor-", token.actor_token)):
            if layer is None:
                continue
            status = self.signature(layer).status
            if status in ("bad-signature", "unknown-key", "untrusted-key"):
                flags.append(prefix + status)
        return tuple(flags)

    def _effective_signature(self, token: DecodedToken) -> str:
        """An outer unsigned token stands or falls with its actor's signature; a signed token
        with an actor is as good as the worse of the two (a tampered actor inside a signed
        outer token is a bad signature all the same)."""
        actor = token.actor_token
        if actor is None:
            return self.signature(token).status
        if token.format == "jwt-unsigned":
            return self.signature(actor).status
        statuses = {self.signature(token).status, self.signature(actor).status}
        for worst in ("bad-signature", "untrusted-key", "unknown-key", "unsigned", "not-checked"):
            if worst in statuses:
                return worst
        return "verified"

    def _verifying_result(self, token: DecodedToken) -> SignatureResult:
        if token.format == "jwt-unsigned" and token.actor_token is not None:
            return self.signature(token.actor_token)
        return self.signature(token)

    def _record(self, seen: _Seen, reveal_secrets: bool) -> TokenRecord:
        token = seen.token
        host = seen.host if seen.role in ("bearer", "actor") and seen.uses else None
        checks = self._plan(token, seen.role, host).checks(seen.first)
        signature = self.signature(token)
        start = token.nbf if token.nbf is not None else token.iat
        return TokenRecord(
            fingerprint=token.fingerprint,
            role=seen.role,
            format=token.format,
            alg=token.alg,
            typ=token.typ,
            x5t=token.x5t,
            kid=token.kid,
            iss=token.iss,
            aud=token.aud,
            nameid=token.nameid,
            **_named(token),
            appid=token.appid,
            nbf=token.nbf,
            exp=token.exp,
            iat=token.iat,
            lifetime=token.exp - start if token.exp is not None and start is not None else None,
            actor_fp=token.actor_fp,
            outer_fps=tuple(sorted(seen.outer)),
            signature=signature.status,
            signature_detail=signature.detail,
            key_source=_key_source(signature),
            flags=self._flags(token, failed(checks)),
            checks=tuple(c.to_dict() for c in checks),
            problems=token.problems,
            header=token.public_header(),
            claims=token.public_claims(reveal_secrets=False),
            first_seen=seen.first,
            last_seen=seen.last,
            uses=seen.uses,
            clients=tuple(sorted(seen.clients)),
            servers=tuple(sorted(seen.servers)),
            text=seen.text if reveal_secrets else None,
        )


def _seen_at(event: Event, presented: bool) -> float:
    """A presented token counts from the request; an issued one from the response."""
    if presented or event.response_ts is None:
        return event.ts
    return event.response_ts


def _named(token: DecodedToken) -> dict[str, str | None]:
    """What the token's principals name: products, audience host, realm, and its subject."""
    iss = _principal(token.iss, "issuer")
    aud = _principal(token.aud, "audience")
    return {
        "iss_app": iss.app_name if iss else None,
        "aud_app": aud.app_name if aud else None,
        "aud_host": aud.host if aud else None,
        "realm": _realm(aud, iss),
        "subject": token.upn or token.smtp or token.sip or token.sub,
    }


def _principal(value: str | None, role: str) -> Principal | None:
    if not value or "@" not in value or "://" in value:
        return None
    return parse_principal(value, role=role)


def _realm(aud: Principal | None, iss: Principal | None) -> str | None:
    for principal in (aud, iss):
        if principal is not None and principal.realm:
            return principal.realm
    return None


def _key_source(result: SignatureResult) -> str | None:
    if result.key is None:
        return None
    source = result.key.source
    if source.ts is not None:
        return f"{source.location} (captured {iso_utc(source.ts) or format_utc(source.ts)})"
    return source.location
