"""From an HTTP exchange to an auth ``Event``: which bodies to keep, and what the exchange carried.

An exchange becomes an event when the request carries credentials (header, query or form), the
response carries a challenge, x-ms-diagnostics or a 401/403/407, the request is an OAuth token
request, or it fetches a metadata / OpenID / JWKS document (or anything under a ``metadata/`` path,
so failed fetches show up).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from analyzer.auth.challenges import describe_challenge
from analyzer.auth.diagnostics import parse_ms_diagnostics
from analyzer.auth.oauth_http import (
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
from analyzer.auth.schemes import fingerprint, parse_challenges, parse_credential
from analyzer.auth.windows import decode_windows_credential
from analyzer.model import Challenge, Credential, Event, evolve
from analyzer.protocols.http1 import HttpMessage
from analyzer.protocols.http_exchange import Exchange

REQUEST_BODY_CAP = 64 * 1024  # form bodies of token requests (assertions are a few KB)
RESPONSE_BODY_CAP = 1 << 20  # token responses and metadata documents
FORM_TYPE = "application/x-www-form-urlencoded"
DENIED = (401, 403, 407)
_URL_NOISE = re.compile(r"[\t\r\n]")  # characters urlsplit deletes before splitting


def request_body_policy(request: HttpMessage) -> int:
    """Keep form bodies (token requests, form-posted access tokens); skip everything else."""
    content_type = (request.header("content-type") or "").lower()
    return REQUEST_BODY_CAP if content_type.startswith(FORM_TYPE) else 0


def response_body_policy(request: HttpMessage | None, response: HttpMessage) -> int:
    """Keep the answers of token requests and metadata fetches; skip everything else."""
    if request is None:
        return 0
    path = _path(request.uri)
    if is_metadata_uri(path) or is_token_endpoint(path):
        return RESPONSE_BODY_CAP
    if request.body and b"grant_type=" in request.body:
        return RESPONSE_BODY_CAP
    return 0


def build_event(exchange: Exchange, event_id: int = 0) -> Event | None:
    """The auth event for ``exchange``, or None when it carries no auth material."""
    req, resp = exchange.request, exchange.response
    reasons: list[str] = []
    fields: dict = {}

    uri = req.uri if req is not None else ""
    path = _path(uri)
    cred = _credential(req) if req is not None else None
    if cred is not None:
        reasons.append("credential")
        fields.update(
            scheme=cred.scheme,
            scheme_name=cred.scheme_name,
            auth_header=cred.source,
            user=cred.user,
            domain=cred.domain,
            password_len=cred.password_len,
            cred_fp=cred.fingerprint,
            cred_len=len(cred.text),
            credential=cred.text,
        )
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

    challenges: list[Challenge] = []
    if resp is not None:
        challenges = parse_challenges(resp.header_all("www-authenticate")) + parse_challenges(
            resp.header_all("proxy-authenticate"), proxy=True
        )
        if challenges:
            reasons.append("challenge")
            challenges = [evolve(c, details=describe_challenge(c)) for c in challenges]
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

    if req is not None and req.body:
        token_request = parse_token_request(parse_form(req.body))
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
    if body is not None and (is_token_endpoint(path) or "token-request" in reasons):
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

    if req is not None and (is_metadata_uri(path) or looks_like_metadata_path(path)):
        reasons.append("metadata")
        if body is not None and resp is not None and 200 <= resp.status < 300:
            fields["document"] = body.decode("utf-8", "replace")

    if not reasons:
        return None
    first = req if req is not None else resp
    assert first is not None
    return Event(
        event_id=event_id,
        ts=first.ts,
        client_ip=exchange.client_ip,
        client_port=exchange.client_port,
        server_ip=exchange.server_ip,
        server_port=exchange.server_port,
        conn_id=exchange.conn_id,
        protocol=f"http/{first.version}",
        method=req.method if req is not None else "",
        host=req.header("host") if req is not None else None,
        uri=redact_uri(uri),
        status=resp.status if resp is not None else None,
        response_ts=resp.ts if resp is not None else None,
        challenges=tuple(challenges),
        user_agent=req.header("user-agent") if req is not None else None,
        reasons=tuple(reasons),
        **fields,
    )


def _credential(req: HttpMessage) -> Credential | None:
    """The credential a request carries: Authorization, Proxy-Authorization, query, then form."""
    for header in ("authorization", "proxy-authorization"):
        value = req.header(header)
        if value is not None:
            cred = parse_credential(value, source=header)
            if cred is not None:
                return cred
    token = query_access_token(req.uri)
    source = "query"
    if token is None and req.body:
        form = parse_form(req.body)
        if "grant_type" not in form:
            token = form.get("access_token")
            source = "form"
    if not token:
        return None
    return Credential(
        scheme="bearer",
        scheme_name="access_token",
        text=token,
        fingerprint=fingerprint(token),
        source=source,
    )


def _response_text(resp: HttpMessage | None) -> bytes | None:
    if resp is None or not resp.body:
        return None
    return decode_body(resp.body, resp.header("content-encoding"), RESPONSE_BODY_CAP)


def _path(uri: str) -> str:
    if uri[:1] == "/" and uri[1:2] != "/" and not _URL_NOISE.search(uri):
        # origin-form, the usual case: what urlsplit would return, without its cost
        return uri.partition("#")[0].partition("?")[0]
    try:
        return urlsplit(uri).path or uri
    except ValueError:
        return uri.split("?", 1)[0]
