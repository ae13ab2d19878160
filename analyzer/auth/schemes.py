"""HTTP/SIP authentication header grammar as pure functions (no I/O).

Parses ``Authorization`` / ``Proxy-Authorization`` values into :class:`Credential` records,
``WWW-Authenticate`` / ``Proxy-Authenticate`` values into :class:`Challenge` records (RFC 9110
section 11), and ``x-ms-diagnostics`` values. Hostile input never raises: every function returns a
best-effort reading, or ``None`` when nothing usable is there. Secrets (Basic passwords, Digest
responses) are reduced to lengths and fingerprints before they reach a record's ``params``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from urllib.parse import unquote

from analyzer.model import Challenge, Credential

__all__ = [
    "fingerprint",
    "parse_challenges",
    "parse_credential",
    "parse_ms_diagnostics",
    "split_credentials",
]

#: Scheme words that map onto a normalised ``Credential.scheme`` other than "other".
_NORMALISED = {
    "bearer": "bearer",
    "basic": "basic",
    "ntlm": "ntlm",
    "negotiate": "negotiate",
    "digest": "digest",
}
#: Scheme words recognised when they arrive alone (no credential after them).
_KNOWN_SCHEMES = frozenset(
    {*_NORMALISED, "kerberos", "tls-dsk", "msrtcoauth", "hoba", "mutual", "vapid", "privatetoken"}
)
#: Credential parameters whose values are secret or single-use proofs: kept only as ``<name>_fp``.
_SECRET_PARAMS = frozenset({"response", "cnonce", "gssapi-data", "rspauth"})

_OWS = " \t\r\n"
_TCHAR = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN_FULL = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_TOKEN68_FULL = re.compile(r"[A-Za-z0-9\-._~+/]+=*\Z")
# A quoted-string from its opening quote: to the closing quote, or left open to the end.
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*(?:"|\\?\Z)', re.DOTALL)
_QUOTED_BODY = re.compile(r'(?:[^"\\]|\\.)*', re.DOTALL)  # up to the closing quote
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)  # a quoted-pair: backslash and the character it keeps
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # C0 controls and DEL: not a user:password
# A lone word read as a scheme name rather than as a bare token (heuristic, see parse_credential).
_SCHEME_WORD = re.compile(r"[A-Za-z][A-Za-z-]{0,19}\Z")
# "name =" at the start of a text: the text is an auth-param list, not a token68 blob. A token68
# may end in "=" padding, so the "=" must be followed by something other than "=" or the end.
_PARAM_START = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+[ \t]*=[ \t]*(?:\"|[^=\s])")

_MAX_VALUE_CHARS = 64 * 1024  # challenge/diagnostics values longer than this are cut (bounded work)
_MAX_CHALLENGES = 64
_MAX_PARAMS = 64
_MAX_PARAM_VALUE_CHARS = 16 * 1024


def fingerprint(text: str | bytes) -> str:
    """First 12 hex digits of SHA-256 over ``text`` (UTF-8 for ``str``, bytes as given).

    Text decoded with ``surrogateescape`` maps back to its original bytes, so a fingerprint of
    undecodable header bytes still matches one taken over the wire.
    """
    if isinstance(text, str):
        try:
            data = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            data = text.encode("utf-8", "surrogatepass")
    else:
        data = bytes(text)
    return hashlib.sha256(data).hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# Low-level scanning helpers (quoted-string aware)


def read_quoted(s: str, i: int) -> tuple[str, int]:
    """Read a quoted-string whose opening quote is at ``s[i]``; resolve backslash escapes.

    Returns the unquoted value and the index just past the closing quote. An unterminated quote
    runs to the end of ``s``.
    """
    m = _QUOTED_BODY.match(s, i + 1)
    assert m is not None  # the pattern matches the empty string
    value, end = m.group(), m.end()
    if "\\" in value:
        value = _ESCAPED.sub(r"\1", value)
    if end < len(s):
        if s[end] == '"':
            return value, end + 1
        value += "\\"  # a lone backslash as the last character is kept as it is
    return value, len(s)


def split_outside_quotes(s: str, sep: str) -> list[str]:
    """Split ``s`` on ``sep`` characters that are not inside a quoted-string.

    A quoted-string runs to its closing quote (backslash escapes the next character) or, left
    open, to the end of ``s``. Works with ``str.find`` between quoted-strings, not per character.
    """
    if '"' not in s:
        return s.split(sep)
    parts: list[str] = []
    start = 0
    i = 0
    n = len(s)
    while i < n:
        quote = s.find('"', i)
        end = n if quote < 0 else quote
        cut = s.find(sep, i, end)
        while cut >= 0:
            parts.append(s[start:cut])
            start = cut + 1
            cut = s.find(sep, start, end)
        if quote < 0:
            break
        m = _QUOTED.match(s, quote)  # always matches at a '"'
        i = m.end() if m is not None else n
    parts.append(s[start:])
    return parts


def _parse_param_run(item: str, params: dict[str, str]) -> None:
    """Parse one or more ``name = value`` pairs from ``item`` into ``params`` (first name wins).

    ``item`` holds no top-level comma. Values are quoted-strings (unquoted, escapes resolved) or
    bare text. Several pairs separated by whitespace only (a common server bug) are all read.
    """
    i = 0
    n = len(item)
    while i < n and len(params) < _MAX_PARAMS:
        while i < n and item[i] in _OWS:
            i += 1
        m = _TCHAR.match(item, i)
        if not m:
            return
        name = m.group(0).lower()
        i = m.end()
        while i < n and item[i] in " \t":
            i += 1
        if i >= n or item[i] != "=":
            return
        i += 1
        while i < n and item[i] in " \t":
            i += 1
        if i < n and item[i] == '"':
            value, i = read_quoted(item, i)
        else:
            j = i
            while j < n and item[j] not in _OWS:
                j += 1
            rest = item[j:].lstrip(_OWS)
            if rest and not _PARAM_START.match(rest):
                # Not followed by another pair: the bare value runs to the end (e.g. a URL).
                j = len(item.rstrip(_OWS))
            value, i = item[i:j], j
        params.setdefault(name, value[:_MAX_PARAM_VALUE_CHARS])


def _parse_auth_params(text: str) -> dict[str, str]:
    """Parse a comma-separated auth-param list (``a="x", b=y``) into a dict, names lowercased."""
    params: dict[str, str] = {}
    for item in split_outside_quotes(text[:_MAX_VALUE_CHARS], ","):
        if len(params) >= _MAX_PARAMS:
            break
        _parse_param_run(item, params)
    return params


def _looks_like_params(text: str) -> bool:
    """True when ``text`` reads as an auth-param list rather than a token68 blob."""
    return bool(_PARAM_START.match(text))


def _redact_params(params: dict[str, str]) -> dict[str, str]:
    """Replace secret parameter values by their fingerprints (``response`` -> ``response_fp``)."""
    out: dict[str, str] = {}
    for name, value in params.items():
        if name in _SECRET_PARAMS:
            out[f"{name}_fp"] = fingerprint(value)
        else:
            out[name] = value
    return out


def _decode_ext_value(value: str) -> str | None:
    """Decode an RFC 8187 ext-value (``UTF-8''%c3%a4``), as used by Digest ``username*``."""
    charset, sep1, rest = value.partition("'")
    _lang, sep2, encoded = rest.partition("'")
    if not (sep1 and sep2):
        return None
    try:
        return unquote(encoded, encoding=charset or "utf-8", errors="replace")
    except LookupError:
        return unquote(encoded, encoding="utf-8", errors="replace")


# --------------------------------------------------------------------------------------------
# Credentials (Authorization / Proxy-Authorization)


def _split_scheme(value: str) -> tuple[str, str]:
    """Split a header value into (scheme word as sent, credential text); see parse_credential."""
    stripped = value.strip(_OWS)
    # What ``(\S+)(?:\s+(.*))?\Z`` would match, without running a regex over a long token:
    # str.split and \s agree on what whitespace is.
    if not stripped or stripped[0].isspace():
        return "", ""
    parts = stripped.split(None, 1)
    first = parts[0]
    if len(parts) == 2:
        rest: str | None = parts[1]
    else:
        rest = None if len(first) == len(stripped) else ""  # only whitespace after the word
    if not _TOKEN_FULL.match(first):
        return "", stripped  # "cwt=...", "abc==", ...: no scheme word, a bare credential
    if rest is None:
        if first.lower() in _KNOWN_SCHEMES or _SCHEME_WORD.match(first):
            return first, ""
        return "", first  # a lone JWT / opaque token without a scheme
    return first, rest.strip(_OWS)


def split_credentials(value: str) -> list[str]:
    """The credentials one ``Authorization`` / ``Proxy-Authorization`` value holds, each as sent.

    RFC 9110 allows one credential per header, but a server that joins repeated headers with
    commas (IIS) reads ``Bearer a, Basic b`` as two, and a client may send it so. The value is
    split at the commas outside quoted-strings where the next element opens a credential: a
    token followed by whitespace and text that does not start with ``=`` (``Basic dXNlcjpwdw==``),
    or a lone known scheme word (``Negotiate``). Other elements (Digest's ``realm="x"``) stay
    with the credential before them. A value that opens no second credential is returned whole,
    exactly as given (its fingerprint is unchanged); a piece before a split loses the commas and
    whitespace that end it.
    """
    if "," not in value:
        return [value]
    pieces: list[str] = []
    start = 0  # where the current credential begins in ``value``
    pos = 0  # where the current element begins
    for i, part in enumerate(split_outside_quotes(value, ",")):
        if i and _opens_credential(part.strip(_OWS)):
            piece = value[start : pos - 1].rstrip(_OWS + ",")
            if piece.strip(_OWS):  # only commas before it: no credential to split off
                pieces.append(piece)
                start = pos
        pos += len(part) + 1
    if not pieces:
        return [value]
    pieces.append(value[start:])
    return pieces


def _opens_credential(item: str) -> bool:
    """Does ``item`` (one comma-separated element, stripped) begin a credential of its own?"""
    m = _TCHAR.match(item)
    if not m:
        return False
    rest = item[m.end() :]
    if not rest:
        return m.group(0).lower() in _KNOWN_SCHEMES
    return rest[0] in " \t" and not rest.lstrip(" \t").startswith("=")


def basic_password(text: str) -> str | None:
    """The password of a Basic credential, for ``--reveal-secrets`` only (None when there is
    no ``user:password`` inside)."""
    decoded = _basic_text(text)
    if decoded is None:
        return None
    _user, colon, password = decoded.partition(":")
    return password if colon else None


def _basic_text(text: str) -> str | None:
    """The decoded text of a Basic credential; None for bad base64 or control characters."""
    blob = "".join(text.split())
    blob = blob.rstrip("=")
    blob += "=" * (-len(blob) % 4)
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        decoded = raw.decode("latin-1")
    return None if _CONTROL.search(decoded) else decoded


def _parse_basic(text: str) -> tuple[str | None, str | None, int | None]:
    """Decode a Basic credential into (user, domain, password length); secrets are dropped.

    Tolerates missing padding. Undecodable base64, binary content or a missing colon give no user
    (a colon-less value is often an API key, which must not surface as a user name).
    """
    decoded = _basic_text(text)
    if decoded is None:
        return None, None, None
    user, colon, password = decoded.partition(":")
    if not colon:
        return None, None, None
    domain: str | None = None
    if "\\" in user:
        domain, _, user = user.partition("\\")
    return user, domain, len(password)


def parse_credential(value: str, source: str = "authorization") -> Credential | None:
    """Parse an ``Authorization`` / ``Proxy-Authorization`` value into a :class:`Credential`.

    Fingerprint rule (matches ``expected.json`` of the public captures, tshark's reading): strip
    leading/trailing whitespace from the header value; the scheme word runs to the first
    whitespace; ``text`` is everything after the whitespace run that follows it, with trailing
    whitespace removed; ``fingerprint`` = ``fingerprint(text)``. So ``Basic  dGVzdDoxOjM0`` (two
    spaces) gives text ``dGVzdDoxOjM0`` (12 chars), and for Digest the text is the whole parameter
    list. A value whose first word is not an RFC 9110 token (``cwt=...``, ``abc==``), or a lone
    word that is neither a known scheme nor a short alphabetic word (a bare JWT or opaque token),
    has no scheme: ``scheme`` "other", ``scheme_name`` "", text = the whole stripped value.

    Basic yields ``user`` / ``domain`` (``DOMAIN\\user``) / ``password_len``; Digest (and SIP-style
    ``NTLM``/``Kerberos``/``TLS-DSK`` parameter lists) yields ``params`` with ``response``,
    ``cnonce``, ``gssapi-data`` and ``rspauth`` replaced by ``<name>_fp``; Digest ``user`` =
    ``username``. NTLM / Negotiate blobs are left undecoded. Returns None for an empty value.
    """
    if not isinstance(value, str) or not value.strip(_OWS):
        return None
    scheme_name, text = _split_scheme(value)
    scheme = _NORMALISED.get(scheme_name.lower(), "other")
    user: str | None = None
    domain: str | None = None
    password_len: int | None = None
    params: dict[str, str] = {}
    if scheme == "basic":
        user, domain, password_len = _parse_basic(text)
    elif scheme != "bearer" and scheme_name and text and _looks_like_params(text):
        params = _redact_params(_parse_auth_params(text))
        if scheme == "digest":
            user = params.get("username")
            if user is None and "username*" in params:
                user = _decode_ext_value(params["username*"])
    return Credential(
        scheme=scheme,
        scheme_name=scheme_name,
        text=text,
        fingerprint=fingerprint(text),
        user=user,
        domain=domain,
        password_len=password_len,
        params=params,
        source=source,
    )


# --------------------------------------------------------------------------------------------
# Challenges (WWW-Authenticate / Proxy-Authenticate)


def _starts_challenge(item: str) -> tuple[str, str] | None:
    """If ``item`` (one comma-separated element) opens a challenge, return (scheme, rest)."""
    m = _TCHAR.match(item)
    if not m:
        return None
    rest = item[m.end() :]
    if not rest:
        return m.group(0), ""
    if rest[0] not in " \t":
        return None  # "name=value" (or garbage glued to a token): not a scheme
    body = rest.lstrip(" \t")
    if body.startswith("="):
        return None  # "name = value" with whitespace around "=" (BWS)
    return m.group(0), body


def _parse_one_value(value: str, proxy: bool, out: list[Challenge]) -> None:
    """Append the challenges found in one header value to ``out``."""
    scheme: str | None = None
    params: dict[str, str] = {}
    token68: str | None = None

    def flush() -> None:
        if scheme is not None and len(out) < _MAX_CHALLENGES:
            out.append(Challenge(scheme=scheme, params=params, token68=token68, proxy=proxy))

    for raw in split_outside_quotes(value[:_MAX_VALUE_CHARS], ","):
        item = raw.strip(_OWS)
        if not item:
            continue  # empty list elements are allowed (and stray commas happen)
        opened = _starts_challenge(item)
        if opened is not None:
            flush()
            scheme, body = opened[0].lower(), opened[1]
            params, token68 = {}, None
            if body and _TOKEN68_FULL.match(body) and not _looks_like_params(body):
                token68 = body
            elif body:
                _parse_param_run(body, params)
        elif scheme is not None:
            _parse_param_run(item, params)
        # else: parameters before any scheme - nothing to attach them to, dropped.
    flush()


def parse_challenges(values: list[str], proxy: bool = False) -> list[Challenge]:
    """Parse ``WWW-Authenticate`` (or, with ``proxy``, ``Proxy-Authenticate``) header values.

    RFC 9110: ``challenge = auth-scheme [ 1*SP ( token68 / #auth-param ) ]``, and one header may
    fold several challenges into a comma-separated list. The list is split at commas outside
    quoted-strings, and a new challenge starts at each element that begins with a token followed
    by whitespace (not by ``=``) or consists of a lone token; the other elements are parameters
    of the current challenge. Parameter names are lowercased, quoted values unquoted with escapes
    resolved, the first occurrence of a name wins. Malformed input gives a best-effort reading.
    """
    out: list[Challenge] = []
    if isinstance(values, str):
        values = [values]
    for value in values:
        if isinstance(value, str) and len(out) < _MAX_CHALLENGES:
            _parse_one_value(value, proxy, out)
    return out


# --------------------------------------------------------------------------------------------
# x-ms-diagnostics


def parse_ms_diagnostics(value: str) -> dict | None:
    """Parse ``x-ms-diagnostics`` / ``ms-diagnostics``: ``<code>;name="value";...``.

    Returns ``{"code": int | None, "params": {name: value}}`` (names lowercased, values unquoted);
    splits on ``;`` outside quotes. ``None`` when the value holds neither a code nor a parameter.
    """
    if not isinstance(value, str):
        return None
    parts = split_outside_quotes(value[:_MAX_VALUE_CHARS], ";")
    code: int | None = None
    first = parts[0].strip(_OWS) if parts else ""
    if first.isascii() and first.isdigit() and len(first) <= 18:
        code = int(first)
        parts = parts[1:]
    params: dict[str, str] = {}
    for part in parts:
        if len(params) >= _MAX_PARAMS:
            break
        name, eq, rest = part.partition("=")
        name = name.strip(_OWS).lower()
        if not eq or not name:
            continue
        rest = rest.strip(_OWS)
        val = read_quoted(rest, 0)[0] if rest.startswith('"') else rest
        params.setdefault(name, val[:_MAX_PARAM_VALUE_CHARS])
    if code is None and not params:
        return None
    return {"code": code, "params": params}
