"""Find the credential in what an admin pastes into ``decode``.

People paste a bare token, ``Bearer <token>``, one ``Authorization:`` line, a whole request head
copied from Fiddler, a log or ``curl -v`` (``> Authorization: ...``), a URL with ``access_token=``
in its query, a token response (``"access_token": "..."``), or an ``x-ms-diagnostics`` value.
:func:`find_credential` says which it was and hands back the one thing ``decode`` explains;
:func:`read_paste` turns the command-line argument (text, ``@FILE`` or ``-``) into that text.
Pure functions; no token text is ever put into a message.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

from analyzer.oauth.endpoints import query_access_token, redact_uri

MAX_PASTE_BYTES = 1 << 20  # a pasted request head or token file is far smaller

__all__ = ["MAX_PASTE_BYTES", "PasteError", "Pasted", "find_credential", "read_paste"]


class PasteError(Exception):
    """The argument could not be read (one-line message, no token text in it)."""


@dataclass(frozen=True, slots=True)
class Pasted:
    """What was found in the pasted text.

    ``kind`` is ``token`` (``token`` holds the bearer text), ``diagnostics`` (only an
    ``x-ms-diagnostics`` value: ``diagnostics`` holds it), ``other-scheme`` (an Authorization
    header with a non-bearer credential, ``scheme`` names it) or ``empty`` (nothing, or the empty
    ``Bearer`` realm-discovery probe) or ``none`` (text in which no token was found).
    """

    kind: str
    token: str = ""
    origin: str = ""  # where the token was found, for people: "Authorization header", ...
    scheme: str | None = None  # scheme word of the header, lowercase
    host: str | None = None  # Host header of a pasted request head
    request: str | None = None  # "METHOD path" of a pasted request head (query secrets redacted)
    diagnostics: tuple[str, ...] = ()  # x-ms-diagnostics values found anywhere in the paste
    ignored: int = 0  # further credentials in the paste that were not decoded


def read_paste(argument: str) -> str:
    """The text behind ``argument``: stdin for ``-``, a file's content for ``@FILE``, else itself.

    Raises :class:`PasteError` when the file cannot be read or is too large to be a paste.
    """
    if argument == "-":
        return sys.stdin.read(MAX_PASTE_BYTES + 1)[:MAX_PASTE_BYTES]
    if not argument.startswith("@") or len(argument) == 1:
        return argument
    path = argument[1:]
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_PASTE_BYTES + 1)
    except OSError as exc:
        raise PasteError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > MAX_PASTE_BYTES:
        raise PasteError(f"{path}: larger than {MAX_PASTE_BYTES} bytes; not a pasted token")
    return data.decode("utf-8-sig", "replace")


# "Authorization: <scheme> <credential>" anywhere in a line (also after curl's "> " or inside
# -H '...'); "proxy-authorization" is matched whole, never as its "authorization" tail.
_AUTH_HEADER = re.compile(
    r"(?<![\w-])(proxy-authorization|authorization)[ \t]*:[ \t]*([^\r\n'\"]*)", re.I
)
_DIAG_HEADER = re.compile(
    r"(?<![\w-])((?:x-ms-diagnostics-from-backend|x-ms-diagnostics|ms-diagnostics-public|"
    r"ms-diagnostics))[ \t]*:[ \t]*([^\r\n]*)",
    re.I,
)
_HOST_HEADER = re.compile(r"^[ \t>]*host[ \t]*:[ \t]*(\S+)", re.I | re.M)
_REQUEST_LINE = re.compile(r"^[ \t>]*([A-Z]{3,10})[ \t]+(\S+)[ \t]+HTTP/\d(?:\.\d)?[ \t]*$", re.M)
_URL = re.compile(r"(?:https?://|/)\S*[?&]access_token=[^\s'\"]*", re.I)
_JSON_TOKEN = re.compile(r'"access_token"\s*:\s*"([^"\\]{1,65536})"', re.I)
_BARE_DIAG = re.compile(r"\d{1,12}\s*(?:;|$)|[A-Za-z][A-Za-z0-9_.]{0,99}\s*\|")
_TOKEN_TEXT = re.compile(r"[A-Za-z0-9\-_=.+/~%:*\s]+")


def find_credential(text: str) -> Pasted:
    """Find the bearer token (or the ``x-ms-diagnostics`` value) in pasted ``text``.

    Order: an ``Authorization`` / ``Proxy-Authorization`` header, then ``access_token`` in a
    request line or URL query, then ``access_token`` in a JSON token response, then the text
    itself as a token (``Bearer`` word dropped, line breaks of a wrapped token removed). A
    pasted value that is only ``x-ms-diagnostics`` comes back as ``diagnostics``.
    """
    text = text.lstrip("\ufeff").strip()
    diagnostics = tuple(m.group(2).strip() for m in _DIAG_HEADER.finditer(text))
    host_match = _HOST_HEADER.search(text)
    host = host_match.group(1) if host_match else None
    request_match = _REQUEST_LINE.search(text)
    request = (
        f"{request_match.group(1)} {redact_uri(request_match.group(2))}" if request_match else None
    )
    context = {"host": host, "request": request, "diagnostics": diagnostics}

    headers = list(_AUTH_HEADER.finditer(text))
    if headers:
        name, value = headers[0].group(1), headers[0].group(2).strip()
        origin = f"{_header_name(name)} header" + (" of a pasted request" if request else "")
        scheme, _, credential = value.partition(" ")
        scheme = scheme.lower()
        found = _bearer(credential) if scheme == "bearer" else ""
        if scheme != "bearer":
            kind = "other-scheme" if scheme else "empty"
        else:
            kind = "token" if found else "empty"
        return Pasted(kind, found, origin, scheme or None, ignored=len(headers) - 1, **context)

    target = request_match.group(2) if request_match else None
    url = _URL.search(text)
    for where, uri in (("request line", target), ("URL", url.group(0) if url else None)):
        token = query_access_token(uri) if uri else None
        if token:
            return Pasted("token", token, f"access_token query parameter of the {where}", **context)
    json_token = _JSON_TOKEN.search(text)
    if json_token:
        return Pasted("token", json_token.group(1), "access_token of a token response", **context)

    if diagnostics:
        return Pasted("diagnostics", **context)
    if _BARE_DIAG.match(text):
        return Pasted("diagnostics", **{**context, "diagnostics": (text,)})
    bare = text
    if bare[:7].lower() == "bearer " or bare.lower() == "bearer":
        bare = bare[7:].strip()
        origin = "Bearer value"
    else:
        origin = "bare token"
    token = _bearer(bare)
    if not token:
        return Pasted("empty", origin=origin if text else "", **context)
    if any(c.isspace() for c in token):  # words, not a token: nothing recognisable was pasted
        return Pasted("none", **context)
    return Pasted("token", token, origin, **context)


def _bearer(credential: str) -> str:
    """The token of a Bearer credential: trimmed, and re-joined when it was wrapped over lines."""
    credential = credential.strip()
    if _TOKEN_TEXT.fullmatch(credential) and "\n" in credential:
        return "".join(credential.split())
    return credential


def _header_name(name: str) -> str:
    return "Proxy-Authorization" if name.lower().startswith("proxy") else "Authorization"
