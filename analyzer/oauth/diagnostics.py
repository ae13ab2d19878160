"""``x-ms-diagnostics`` values explained, as pure functions.

Exchange answers a rejected S2S token with
``x-ms-diagnostics: <code>;reason="…";error_category="…"``, Skype for Business web services with
``<code>;source="…";reason="…"``, Entra-fronted services with the Exchange shape and their own
codes, and Exchange's front end talks to its back end with
``x-ms-diagnostics-from-backend: <OAuthErrors name>|<message>``. :func:`parse_ms_diagnostics`
reads all of these into one :class:`MsDiagnostic` that says which product spoke, what the category
means, and which detailed Exchange error the reason text matches. Facts: Microsoft S2S notes,
section 6. Nothing here raises on hostile input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from analyzer.auth.schemes import read_quoted, split_outside_quotes

__all__ = ["CATEGORY_MEANINGS", "KNOWN_CODES", "MsDiagnostic", "parse_ms_diagnostics"]

#: ``error_category`` text -> one-sentence meaning. The text is what to key on: Exchange 2013
#: sends 2000009 as ``invalid_certificate``, newer builds send 2000009 as ``invalid_issuer``.
CATEGORY_MEANINGS: dict[str, str] = {
    "invalid_signature": "The token's signature could not be validated.",
    "invalid_token": (
        "The token is malformed or breaks an S2S rule (signed user context, unsigned actor, "
        "unknown issuer, bad audience or nameid)."
    ),
    "token_expired": "The token has expired (check both servers' clocks and token lifetimes).",
    "invalid_resource": (
        "The token's audience does not name this server (wrong host, or https in the token while "
        "the request arrived as http behind SSL offloading)."
    ),
    "invalid_tenant": "The tenant or realm named in the token does not exist on this server.",
    "invalid_user": "The user in the token's user context was not found or is ambiguous.",
    "invalid_client": (
        "The calling application is unknown: no partner application or service principal "
        "matches its id."
    ),
    "internal_error": (
        "The server failed internally while validating the token (e.g. a directory lookup)."
    ),
    "invalid_grant": "The token's grant or callback scope is not allowed for this request.",
    "invalid_certificate": (
        "The certificate needed to validate the token was not found (Exchange 2013 meaning of "
        "2000009)."
    ),
    "invalid_issuer": (
        "The token's issuer is not trusted: no partner application or auth server matches it."
    ),
    "oauth_not_available": "OAuth authentication is not available on this server.",
    "insufficient_claims": "The token lacks a claim the service requires.",
    "probe": "Internal probe, not an error.",
}

#: Code -> (category, meaning). Exchange codes from MSDiagnosticsHeader.cs; 2000020 from Entra
#: (Global Secure Access); 28020 / 28029 from Skype for Business web services, which send no
#: ``error_category`` (their category names here are this tool's own).
KNOWN_CODES: dict[int, tuple[str, str]] = {
    0: ("Probe", CATEGORY_MEANINGS["probe"]),
    2000000: ("invalid_signature", CATEGORY_MEANINGS["invalid_signature"]),
    2000001: ("invalid_token", CATEGORY_MEANINGS["invalid_token"]),
    2000002: ("token_expired", CATEGORY_MEANINGS["token_expired"]),
    2000003: ("invalid_resource", CATEGORY_MEANINGS["invalid_resource"]),
    2000004: ("invalid_tenant", CATEGORY_MEANINGS["invalid_tenant"]),
    2000005: ("invalid_user", CATEGORY_MEANINGS["invalid_user"]),
    2000006: ("invalid_client", CATEGORY_MEANINGS["invalid_client"]),
    2000007: ("internal_error", CATEGORY_MEANINGS["internal_error"]),
    2000008: ("invalid_grant", CATEGORY_MEANINGS["invalid_grant"]),
    2000009: ("invalid_certificate", CATEGORY_MEANINGS["invalid_certificate"]),
    2000020: (
        "insufficient_claims",
        "The token lacks a claim the Microsoft 365 / Entra service requires (e.g. xms_trpid).",
    ),
    4000000: ("oauth_not_available", CATEGORY_MEANINGS["oauth_not_available"]),
    28020: (
        "no_valid_security_token",
        "Skype for Business web services got no valid security token (OAuth or web ticket).",
    ),
    28029: (
        "authentication_type_not_allowed",
        "Skype for Business web services do not allow the authentication type the client used.",
    ),
}

# Detailed Exchange errors (OAuthErrors.cs): (code, pattern, short summary). Matched loosely and
# case-insensitively against the reason text, first hit wins, so specific patterns come first.
# Quoted values the template carries ('{0}') are captured as detail_args.
_Q = r"(?:\s*'([^']*)')?"
_DETAILS: tuple[tuple[int, str, str], ...] = (
    (2001, r"user.?context must be unsigned", "the user context (outer token) must be unsigned"),
    (2002, r"actor token must be signed", "the inner actor token must be signed"),
    (
        2015,
        rf"user.?context issuer{_Q}.*?does not match the application.?context nameid{_Q}",
        "user-context issuer does not match the actor token's nameid",
    ),
    (
        2008,
        rf"issuer of the token is unknown(?:\.?\s*issuer was{_Q})?",
        "unknown token issuer (not among the trusted issuers)",
    ),
    (2006, r"issuer.{0,40}format|format of the issuer", "issuer claim format invalid"),
    (2003, r"(?:missing|no|without)\s+(?:the\s+)?issuer|issuer.{0,10}missing", "missing issuer"),
    (2005, rf"missing (?:the )?claim{_Q}|claim{_Q} is missing", "missing claim"),
    (
        2017,
        r"unexpected realm.{0,40}nameid|nameid.{0,40}unexpected realm",
        "unexpected realm in nameid",
    ),
    (
        7002,
        r"unexpected app(?:lication)?.?id.{0,40}nameid|nameid.{0,40}unexpected app",
        "unexpected app id in nameid",
    ),
    (2009, r"nameid.{0,40}(?:invalid|not valid)|invalid.{0,20}nameid", "nameid claim invalid"),
    (
        4002,
        rf"hostname component of the audience.{{0,40}}invalid"
        rf"(?:\.?\s*expected{_Q}\.?\s*actual{_Q})?",
        "audience hostname does not match this server",
    ),
    (4001, r"empty realm.{0,40}audience|audience.{0,40}empty realm", "empty realm in audience"),
    (2010, rf"audience claim value is invalid{_Q}", "audience claim invalid"),
    (4003, r"wrong audience|audience.{0,40}(?:does not match|not the expected)", "wrong audience"),
    (2011, r"realm.{0,40}(?:mismatch|does not match)", "realm mismatch"),
    (2018, r"no user(?:.context)? claims?|user claims? (?:are |is )?missing", "no user claims"),
    (
        2022,
        r"token.{0,60}cannot be (?:read|parsed)|unable to (?:read|parse) (?:the )?token",
        "token cannot be read",
    ),
    (3001, r"token (?:has )?expired|expired token", "token expired"),
    (
        5001,
        rf"tenant for (?:the )?(?:tenant guid|context id){_Q} does not exist",
        "tenant for the context id (tenant GUID) does not exist",
    ),
    (5002, rf"tenant for (?:the )?realm{_Q} does not exist", "tenant for the realm does not exist"),
    (
        6002,
        r"user.?context.{0,40}ambiguous|ambiguous user",
        "user in the user context is ambiguous",
    ),
    (6001, r"user specified by the user.?context.{0,40}does not exist", "user does not exist"),
    (7001, rf"application identifier{_Q} is unknown", "unknown application identifier"),
    (8001, r"(?:active )?directory operation failed|\bad operation failed", "AD operation failed"),
    (
        10001,
        r"certificate.{0,60}(?:not found|could not be found|cannot be found)",
        "certificate not found",
    ),
    (1001, r"invalid signature|signature.{0,40}(?:invalid|not valid|failed)", "invalid signature"),
)


@cache
def _detail_res() -> tuple[tuple[int, re.Pattern[str], str], ...]:
    """``_DETAILS`` compiled, on first use: runs that meet no diagnostics header skip the cost."""
    return tuple((code, re.compile(p, re.I | re.S), summary) for code, p, summary in _DETAILS)


_HEADER_PREFIX = re.compile(
    r"\s*(x-ms-diagnostics-from-backend|x-ms-diagnostics|ms-diagnostics-public|ms-diagnostics)"
    r"\s*:\s*",
    re.I,
)
_BACKEND = re.compile(r"\s*([A-Za-z][A-Za-z0-9_.]{0,99})\s*\|(.*)", re.S)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_MAX_CHARS = 16 * 1024
_MAX_MATCH_CHARS = 2048
_MAX_PARAMS = 64
_MAX_CODE_DIGITS = 12


@dataclass(frozen=True, slots=True)
class MsDiagnostic:
    """One ``x-ms-diagnostics`` value (or its back-end variant) and what it means."""

    raw: str  # the value as given (cut at 16 KiB)
    code: int | None  # leading integer code; None for the back-end form
    category: str | None  # error_category text when sent, else the table's name for the code
    reason: str | None
    source: str | None  # server that answered (Skype for Business)
    params: dict[str, str] = field(default_factory=dict)  # every name="value" pair, names lowercase
    meaning: str | None = None  # one sentence; keyed on error_category text before the number
    product: str | None = None  # exchange | skype | entra | None
    detail_code: int | None = None  # Exchange OAuthErrors code the reason text matches
    detail: str | None = None  # short summary of that detailed error
    detail_args: tuple[str, ...] = ()  # quoted values from the reason (issuer, audience, ...)
    form: str = "diagnostics"  # diagnostics | backend (x-ms-diagnostics-from-backend)
    error_name: str | None = None  # back-end form: the OAuthErrors name, e.g. "TokenExpired"
    notes: tuple[str, ...] = ()  # parser remarks, e.g. category text differing from the table

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "raw": self.raw,
            "code": self.code,
            "category": self.category,
            "reason": self.reason,
            "source": self.source,
            "params": dict(self.params),
            "meaning": self.meaning,
            "product": self.product,
            "detail_code": self.detail_code,
            "detail": self.detail,
            "detail_args": list(self.detail_args),
            "form": self.form,
            "error_name": self.error_name,
            "notes": list(self.notes),
        }


def _unquote(value: str) -> str:
    """Strip one pair of double quotes and resolve backslash escapes; unterminated is tolerated."""
    return read_quoted(value, 0)[0] if value.startswith('"') else value


def _match_detail(*texts: str | None) -> tuple[int, str, tuple[str, ...]] | None:
    for text in texts:
        if not text:
            continue
        text = text[:_MAX_MATCH_CHARS]
        for code, pattern, summary in _detail_res():
            m = pattern.search(text)
            if m:
                return code, summary, tuple(g for g in m.groups() if g is not None)
    return None


def _category_code(detail_code: int) -> int | None:
    """Category number of a detailed error: its thousands digit (1xxx -> 2000000, ...)."""
    group = detail_code // 1000
    return 2000000 + group - 1 if 1 <= group <= 10 else None


def _product(code: int | None, category: str | None) -> str | None:
    if code == 2000020 or (code is None and category == "insufficient_claims"):
        return "entra"
    if code is not None and (2000000 <= code <= 2000999 or code in (0, 4000000)):
        return "exchange"
    if code is not None and 28000 <= code <= 28999:
        return "skype"
    return None


def _parse_code(text: str) -> int | None:
    text = text.strip()
    if text.isascii() and text.isdigit() and len(text) <= _MAX_CODE_DIGITS:
        return int(text)
    return None


def _build(
    raw: str,
    code: int | None,
    params: dict[str, str],
    reason: str | None,
    form: str,
    error_name: str | None,
) -> MsDiagnostic:
    notes: list[str] = []
    sent_category = params.get("error_category") or None
    table = KNOWN_CODES.get(code) if code is not None else None
    detail = _match_detail(reason, _CAMEL.sub(" ", error_name) if error_name else None)

    category = sent_category or (table[0] if table else None)
    if category is None and detail is not None:
        derived = KNOWN_CODES.get(_category_code(detail[0]) or -1)
        category = derived[0] if derived else None
    if sent_category and table and sent_category.lower() != table[0].lower():
        notes.append(
            f"error_category {sent_category!r} differs from {table[0]!r}, the table name for {code}"
        )
    if code is not None and table is None:
        notes.append(f"code {code} is not in the known-code table")

    # The code's own sentence when the category agrees with it, else the category text's sentence.
    meaning: str | None = None
    if table is not None and (not sent_category or sent_category.lower() == table[0].lower()):
        meaning = table[1]
    if meaning is None and category is not None:
        meaning = CATEGORY_MEANINGS.get(category.lower())
    if meaning is None and table is not None:
        meaning = table[1]

    product = "exchange" if form == "backend" else _product(code, category)
    return MsDiagnostic(
        raw=raw,
        code=code,
        category=category,
        reason=reason,
        source=params.get("source"),
        params=params,
        meaning=meaning,
        product=product,
        detail_code=detail[0] if detail else None,
        detail=detail[1] if detail else None,
        detail_args=detail[2] if detail else (),
        form=form,
        error_name=error_name,
        notes=tuple(notes),
    )


def parse_ms_diagnostics(value: str) -> MsDiagnostic | None:
    """Parse an ``x-ms-diagnostics`` / ``ms-diagnostics`` value, or the back-end variant.

    ``<code>;name="value";…`` is split on ``;`` outside quotes: the first field is the integer
    code, the rest ``name="value"`` pairs (names lowercased, first one wins). ``Name|message``
    (``x-ms-diagnostics-from-backend``) is read too. A leading header name is tolerated. Returns
    ``None`` when neither a code, a parameter nor a back-end pair is there. Never raises.
    """
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return None
    raw = value[:_MAX_CHARS]
    text = raw
    header = _HEADER_PREFIX.match(text)
    if header:
        text = text[header.end() :]
    text = text.strip()
    if not text:
        return None

    first = split_outside_quotes(text, ";")[0]
    backend = _BACKEND.match(text)
    if backend and _parse_code(first) is None:
        name, message = backend.group(1), backend.group(2).strip()
        return _build(raw, None, {}, message or None, "backend", name)

    parts = split_outside_quotes(text, ";")
    code = _parse_code(parts[0])
    if code is not None:
        parts = parts[1:]
    params: dict[str, str] = {}
    for part in parts:
        if len(params) >= _MAX_PARAMS:
            break
        name, eq, rest = part.partition("=")
        name = name.strip().lower()
        if not eq or not name:
            continue
        params.setdefault(name, _unquote(rest.strip()))
    if code is None and not params:
        return None
    return _build(raw, code, params, params.get("reason"), "diagnostics", None)
