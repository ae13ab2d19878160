"""From an HTTP exchange to an auth ``Event``: which bodies to keep, and what the exchange carried.

An exchange becomes an event when the request carries credentials (header, query or form), the
response carries a challenge, x-ms-diagnostics or a 401/403/407, the request is an OAuth token
request, or it fetches a metadata / OpenID / JWKS document (or anything under a ``metadata/`` path,
so failed fetches show up).
"""

from __future__ import annotations

import re
from typing import NamedTuple, Protocol
from urllib.parse import urlsplit

from analyzer.auth.challenges import describe_challenge
from analyzer.auth.memo import Memo
from analyzer.auth.schemes import (
    basic_password,
    fingerprint,
    parse_challenges,
    parse_credential,
    split_credentials,
)
from analyzer.auth.windows import decode_windows_credential
from analyzer.flows.community import community_id
from analyzer.model import Challenge, Credential, Event, evolve
from analyzer.oauth.diagnostics import parse_ms_diagnostics
from analyzer.oauth.endpoints import (
    decode_body,
    is_metadata_uri,
    is_token_endpoint,
    looks_like_metadata_path,
    parse_form,
    parse_token_request,
    parse_token_response,
    query_access_token,
    redact_uri,
)
from analyzer.protocols.http1 import ABSOLUTE_FORM, HttpMessage
from analyzer.protocols.http_exchange import Exchange
from analyzer.redaction import identity_fields

REQUEST_BODY_CAP = 64 * 1024  # form bodies of token requests (assertions are a few KB)
RESPONSE_BODY_CAP = 1 << 20  # token responses and metadata documents
FORM_TYPE = "application/x-www-form-urlencoded"
DENIED = (401, 403, 407)
_URL_NOISE = re.compile(r"[\t\r\n]")  # characters urlsplit deletes before splitting
#: Every event is made from this one, with each required field (and the others found) replaced.
_BLANK_EVENT = Event(
    event_id=0,
    ts=0.0,
    client_ip="",
    client_port=0,
    server_ip="",
    server_port=0,
    conn_id="",
    protocol="",
    method="",
    host=None,
    uri="",
    status=None,
)


def request_body_policy(request: HttpMessage) -> int:
    """Keep form bodies (token requests, form-posted access tokens); skip everything else."""
    content_type = (request.header("content-type") or "").lower()
    return REQUEST_BODY_CAP if content_type.startswith(FORM_TYPE) else 0


def response_body_policy(request: HttpMessage | None, response: HttpMessage) -> int:
    """Keep the answers of token requests and metadata fetches; skip everything else."""
    if request is None:
        return 0
    facts = _uri_facts(request.uri)
    if facts.metadata or facts.token_endpoint:
        return RESPONSE_BODY_CAP
    if request.body and b"grant_type=" in request.body:
        return RESPONSE_BODY_CAP
    return 0


def build_event(exchange: Exchange, event_id: int = 0) -> Event | None:
    """The auth event for ``exchange``, or None when it carries no auth material."""
    req, resp = exchange.request, exchange.response
    reasons: list[str] = []
    fields: dict = {}

    facts = _uri_facts(req.uri if req is not None else "")
    # the request's form body (kept for form content only: request_body_policy), read once
    form = parse_form(req.body) if req is not None and req.body else {}
    cred, others, tokens = (
        _credential(req, facts.query_token, form) if req is not None else (None, (), ())
    )
    if cred is not None:
        reasons.append("credential")
        fields.update(credential_fields(cred, others, tokens))
        fields["password"] = basic_password(cred.text) if cred.scheme == "basic" else None
        windows = decode_windows_credential(cred.scheme, cred.text)
        if windows is not None:
            fields.update(
                mechanism=windows.mechanism,
                ntlm_type=windows.ntlm_type,
                ntlm_response=windows.ntlm_response,
                workstation=windows.workstation,
                spn=windows.spn,
            )
            if windows.user or windows.domain:
                fields.update(user=windows.user, domain=windows.domain)

    challenges: tuple[Challenge, ...] = ()
    if resp is not None:
        challenges = _challenges(resp.header_all("www-authenticate"), False) + _challenges(
            resp.header_all("proxy-authenticate"), True
        )
        if challenges:
            reasons.append("challenge")
        if resp.status in DENIED:
            reasons.append("denied")
        diagnostics = resp.header("x-ms-diagnostics")
        if diagnostics is not None:
            reasons.append("diagnostics")
            fields["ms_diagnostics"] = diagnostics
            parsed = parse_ms_diagnostics(diagnostics)
            if parsed is not None:
                fields.update(
                    diag_code=parsed.code,
                    diag_category=parsed.category,
                    diag_reason=parsed.reason,
                    diag_source=parsed.source,
                )
        fields["response_content_type"] = resp.header("content-type")

    if form:
        token_request = parse_token_request(form)
        if token_request is not None:
            reasons.append("token-request")
            fields.update(
                grant_type=token_request.grant_type,
                client_id=token_request.client_id,
                resource=token_request.resource,
                assertion=token_request.assertion,
                assertion_fp=fingerprint(token_request.assertion)
                if token_request.assertion
                else None,
            )
            if token_request.username and cred is None:
                fields["user"] = token_request.username

    body = _response_text(resp)
    if body is not None and (facts.token_endpoint or "token-request" in reasons):
        token_response = parse_token_response(body)
        if token_response is not None:
            if "token-request" not in reasons:
                reasons.append("token-response")
            for name in ("access_token", "refresh_token", "id_token"):
                text = getattr(token_response, name)
                if text:
                    fields[name] = text
                    fields[f"{name}_fp"] = fingerprint(text)
            fields.update(
                token_type=token_response.token_type,
                expires_in=token_response.expires_in,
                oauth_error=token_response.error,
            )

    if req is not None and (facts.metadata or facts.metadata_path):
        reasons.append("metadata")
        if body is not None and resp is not None and 200 <= resp.status < 300:
            fields["document"] = body.decode("utf-8", "replace")

    if not reasons:
        return None
    if "user" in fields or "domain" in fields:  # a token pasted as a user name is masked here
        fields.update(identity_fields(fields.get("user"), fields.get("domain")))
    if challenges:
        fields["challenges"] = challenges
    return event_of(exchange, event_id, tuple(reasons), fields, facts.redacted)


def event_of(
    exchange: Exchange,
    event_id: int,
    reasons: tuple[str, ...],
    fields: dict,
    uri: str | None = None,
) -> Event:
    """The event of ``exchange`` with ``reasons`` and the auth ``fields`` found in it (``uri``:
    the request target redacted, when the caller worked it out already)."""
    req, resp = exchange.request, exchange.response
    if uri is None:
        uri = _uri_facts(req.uri if req is not None else "").redacted
    first = req if req is not None else resp
    assert first is not None
    # Filling a blank event's slots is faster than Event.__init__'s 80 frozen setattr calls.
    return evolve(
        _BLANK_EVENT,
        event_id=event_id,
        ts=first.ts,
        frame=first.frame or None,
        client_ip=exchange.client_ip,
        client_port=exchange.client_port,
        server_ip=exchange.server_ip,
        server_port=exchange.server_port,
        conn_id=exchange.conn_id,
        community_id=community_id(
            exchange.client_ip, exchange.client_port, exchange.server_ip, exchange.server_port
        ),
        # every stream of an HTTP/2 connection, the request an h2c upgrade made stream 1 too
        protocol="http/2" if exchange.stream_id is not None else f"http/{first.version}",
        stream_id=exchange.stream_id,
        method=req.method if req is not None else "",
        host=(_uri_facts(req.uri).authority or req.header("host")) if req is not None else None,
        uri=uri,
        # 0: an HTTP/2 answer whose :status could not be read - no status, not a success
        status=resp.status if resp is not None and resp.status else None,
        response_ts=resp.ts if resp is not None else None,
        request_last_ts=req.last_ts if req is not None else None,
        user_agent=req.header("user-agent") if req is not None else None,
        reasons=reasons,
        **fields,
    )


def redacted_path(uri: str) -> str:
    """The path of request-target ``uri`` with its secrets redacted (no query)."""
    return _uri_facts(uri).redacted.partition("?")[0]


def _credential(
    req: HttpMessage, query_token: str | None, form: dict[str, str]
) -> tuple[Credential | None, tuple[str, ...], tuple[str, ...]]:
    """The credential the event describes, the others the request presented and the bearer
    tokens among them (see ``described_credential``), of everything ``_presented`` finds."""
    return described_credential(_presented(req, query_token, form))


def credential_fields(cred: Credential, others: tuple[str, ...], tokens: tuple[str, ...]) -> dict:
    """Event fields of the credential a request presented, with the others beside it
    (``described_credential``'s answer): shared by HTTP (``build_event``) and SIP."""
    fields: dict = {
        "scheme": cred.scheme,
        "scheme_name": cred.scheme_name,
        "auth_header": cred.source,
        "user": cred.user,
        "domain": cred.domain,
        "password_len": cred.password_len,
        "cred_fp": cred.fingerprint,
        "cred_len": len(cred.text),
        "credential": cred.text,
    }
    if others:
        fields["also_presented"] = others
    if tokens:
        fields["other_tokens"] = tokens
    return fields


def described_credential(
    presented: list[Credential],
) -> tuple[Credential | None, tuple[str, ...], tuple[str, ...]]:
    """Of the credentials a request ``presented`` (in order): the one its event describes, the
    others (each as ``<scheme> <cred_fp>``, see ``_named``), and the texts of the bearer tokens
    among them that the event does not describe as a bearer credential (for the token table).

    One credential, or the same one sent again (two identical ``Authorization`` headers), is
    what it is. Different credentials in one request are ambiguous - a server may read the
    first, the last, or all of them joined with commas (IIS) - so the request is not taken for
    OAuth: the event describes its first credential that is not a bearer token (a Basic
    password beside a token is the Basic credential it is), or, when all are different bearer
    tokens, the first one with scheme ``other`` and the scheme words of all of them as sent
    (``Bearer, Bearer``) as its ``scheme_name``. Shared by HTTP and SIP (``sip_events``).
    """
    distinct: dict[tuple[str, str], Credential] = {}
    for cred in presented:
        distinct.setdefault((cred.scheme, cred.text), cred)
    creds = list(distinct.values())
    if len(creds) < 2:
        return (creds[0] if creds else None), (), ()
    index = next((i for i, c in enumerate(creds) if c.scheme != "bearer"), None)
    if index is None:
        index = 0
        described = evolve(
            creds[0], scheme="other", scheme_name=", ".join(c.scheme_name for c in creds)
        )
    else:
        described = creds[index]
    others = tuple(_named(c) for i, c in enumerate(creds) if i != index)
    tokens = tuple(dict.fromkeys(c.text for c in creds if c.scheme == "bearer" and c.text))
    return described, others, tokens


def _presented(req: HttpMessage, query_token: str | None, form: dict[str, str]) -> list[Credential]:
    """Every credential the request presents, in order: its header credentials (see
    ``header_credentials``; ``Proxy-Authorization`` beside ``Authorization`` only when the
    request went to the server itself, ``_to_a_proxy``), then the query's ``access_token``
    (``query_token``) and the ``form``'s (not a token request's): a server may read either
    instead of the header (RFC 6750 allows all three)."""
    found = header_credentials(req, proxy_too=not _to_a_proxy(req))
    if query_token:
        found.append(_access_token(query_token, "query"))
    token = form.get("access_token") if "grant_type" not in form else None
    if token:
        found.append(_access_token(token, "form"))
    return found


class HeaderSource(Protocol):
    """A message whose header fields are read by lowercase name (an HTTP or a SIP message)."""

    def header(self, name: str) -> str | None: ...

    def header_all(self, name: str) -> list[str]: ...


def _to_a_proxy(req: HttpMessage) -> bool:
    """Was the request sent to a forward proxy - a CONNECT, or an absolute-form target (any
    ``scheme://``)? Its ``Proxy-Authorization`` then signs in to the proxy, another hop. One in
    origin form (or any other) went to the server itself, or to a front end at its address
    that may take ``Proxy-Authorization`` as the logon (a TMG-style reverse proxy)."""
    return req.method == "CONNECT" or ABSOLUTE_FORM.match(req.uri) is not None


def header_credentials(msg: HeaderSource, *, proxy_too: bool = False) -> list[Credential]:
    """Every credential of every ``Authorization`` value, in order (several in one value are
    split, see ``split_credentials``; an empty value is none), then of ``Proxy-Authorization``:
    with ``proxy_too`` always (SIP, where a Skype for Business Front End is registrar and proxy
    at once, so what either header carries signs in to it; an HTTP request sent to the server
    itself, where a proxy credential beside the server's is in doubt, so it is judged too);
    otherwise only when no ``Authorization`` credential was found (an HTTP request to a forward
    proxy, the proxy being another hop)."""
    found: list[Credential] = []
    for header in ("authorization", "proxy-authorization"):
        if found and not proxy_too:
            break
        if msg.header(header) is None:
            continue
        for value in msg.header_all(header):
            for piece in split_credentials(value):
                cred = _header_credential(piece, header)
                if cred is not None:
                    found.append(cred)
    return found


def _access_token(token: str, source: str) -> Credential:
    """An ``access_token`` sent in the query or a form, as the bearer credential it is."""
    return Credential(
        scheme="bearer",
        scheme_name="access_token",
        text=token,
        fingerprint=fingerprint(token),
        source=source,
    )


def _named(cred: Credential) -> str:
    """``<scheme> <cred_fp>``: ``basic 1a2b3c4d5e6f``; an unknown scheme with the word sent,
    ``other(Turbo) ...`` (``other(authorization)`` for a bare token)."""
    name = f"other({cred.scheme_name or cred.source})" if cred.scheme == "other" else cred.scheme
    return f"{name} {cred.fingerprint}"


#: (header value, header name) -> its Bearer / Basic credential: clients send the same token or
#: password with every request. NTLM, Negotiate and Digest blobs are single-use: not kept.
_CREDENTIALS = Memo(1024, 4 << 20)
_REPEATED_SCHEMES = ("bearer", "basic")


def _header_credential(value: str, header: str) -> Credential | None:
    """``parse_credential(value, source=header)``, remembered for repeated Bearer / Basic values."""
    key = (value, header)
    cred = _CREDENTIALS.get(key)
    if cred is None:
        cred = parse_credential(value, source=header)
        if cred is not None and cred.scheme in _REPEATED_SCHEMES:
            _CREDENTIALS.put(key, cred, len(value) + len(cred.text))
    return cred


#: (header values, proxy) -> their challenges with details: servers send the same few challenge
#: headers with every 401. Challenges carrying a blob (an NTLM / SPNEGO leg) are not kept.
_CHALLENGES = Memo(512, 1 << 20)


def _challenges(values: list[str], proxy: bool) -> tuple[Challenge, ...]:
    """The challenges of one header's values, each with its decoded ``details``."""
    if not values:
        return ()
    key = (tuple(values), proxy)
    found = _CHALLENGES.get(key)
    if found is None:
        parsed = parse_challenges(values, proxy=proxy)
        found = tuple(_described(c) for c in parsed)
        if all(c.token68 is None for c in found):
            _CHALLENGES.put(key, found, 2 * sum(map(len, values)))
    return found


def _described(challenge: Challenge) -> Challenge:
    """``challenge`` with its ``details`` (copied only when there are some to add)."""
    details = describe_challenge(challenge)
    return evolve(challenge, details=details) if details else challenge


def _response_text(resp: HttpMessage | None) -> bytes | None:
    if resp is None or not resp.body:
        return None
    return decode_body(resp.body, resp.header("content-encoding"), RESPONSE_BODY_CAP)


class _UriFacts(NamedTuple):
    """What a request target tells ``build_event`` (worked out once per distinct target)."""

    redacted: str  # the target with secret query values replaced
    query_token: str | None  # its access_token query parameter
    metadata: bool  # fetches a metadata / OpenID / JWKS document
    metadata_path: bool  # anything under a metadata/ path (mistyped fetches included)
    token_endpoint: bool  # an OAuth token endpoint
    # the host[:port] of an absolute-form target (``http://mail.contoso.com/EWS/``), which a
    # server takes over the Host header (RFC 9112 3.2.2); None for any other form
    authority: str | None


#: Request target -> its facts: clients call the same few URLs over and over.
_URI_FACTS = Memo(2048, 1 << 20)


def _uri_facts(uri: str) -> _UriFacts:
    facts = _URI_FACTS.get(uri)
    if facts is None:
        path = _path(uri)
        facts = _UriFacts(
            redacted=redact_uri(uri),
            query_token=query_access_token(uri),
            metadata=bool(is_metadata_uri(path)),
            metadata_path=looks_like_metadata_path(path),
            token_endpoint=is_token_endpoint(path),
            authority=_authority(uri),
        )
        _URI_FACTS.put(uri, facts, 2 * len(uri))
    return facts


def _authority(uri: str) -> str | None:
    """The host[:port] of an absolute-form request target (any case of scheme), without user
    information; None for origin, authority and asterisk forms."""
    scheme, sep, rest = uri.partition("://")
    if not sep or not scheme.isascii() or not scheme.isalpha():
        return None
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    return authority.rpartition("@")[2] or None


def _path(uri: str) -> str:
    if uri[:1] == "/" and uri[1:2] != "/" and not _URL_NOISE.search(uri):
        # origin-form, the usual case: what urlsplit would return, without its cost
        return uri.partition("#")[0].partition("?")[0]
    try:
        return urlsplit(uri).path or uri
    except ValueError:
        return uri.split("?", 1)[0]
