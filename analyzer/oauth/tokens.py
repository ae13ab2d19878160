"""Bearer token decoding: JWT / JWE / Lync web tickets / opaque blobs, without verifying anything.

``decode_token`` turns credential text into a ``DecodedToken``: the format, the header and claims,
the fields an analyst looks at first, Microsoft S2S specifics (the unsigned outer token that carries
a signed ``actortoken``, times as numeric strings or FILETIME-looking values), and a list of
problems instead of exceptions. Signatures are checked in ``analyzer.oauth.keys``; this module only
keeps the bytes needed to do so. Each distinct token is decoded once (bounded LRU cache).
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import math
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, NamedTuple

from analyzer.auth.schemes import fingerprint
from analyzer.redaction import mask_secret

MAX_TOKEN_CHARS = 64 * 1024  # longer credential text is not decoded
MAX_JSON_BYTES = 64 * 1024  # decoded header / claims JSON
MAX_JSON_DEPTH = 64  # deeper JSON is refused (real tokens nest 2-3 levels)
MAX_ACTOR_DEPTH = 1  # outer token -> actor token; an actor's own actortoken is not decoded
CACHE_ENTRIES = 4096
CACHE_BYTES = 64 * 1024 * 1024  # rough budget over the cached token texts

FILETIME_THRESHOLD = 1e11  # larger "unix seconds" are year 5138+: some other unit
MILLIS_LIMIT = 1e15  # 1e11..1e15 reads as unix milliseconds (1973..33658); above it FILETIME
FILETIME_UNIX_EPOCH = 11_644_473_600  # seconds from 1601-01-01 to 1970-01-01

#: Claims holding credentials of their own; masked in ``to_dict`` unless secrets are revealed.
#: Names are compared folded (``secret_claim``): lower case, without ``_`` and ``-``.
SECRET_CLAIMS = frozenset({"idtoken", "pwd", "sessionkey"})
#: Folded endings that make a claim name a secret's: ``client_secret``, ``AppSecret``,
#: ``db_password``, ``x-api-key``, ``xms_refresh_token``, ``client_assertion``. ``pwd_exp`` and
#: ``pwd_url`` (ADFS's password expiry), ``public_key``, ``kid`` or ``sid`` end otherwise and
#: stay shown.
SECRET_ENDINGS = (
    "secret",
    "password",
    "passwd",
    "passphrase",
    "apikey",
    "privatekey",
    "secretkey",
    "accesskey",
    "signingkey",
    "refreshtoken",
    "accesstoken",
    "sessiontoken",
    "assertion",
)

FORMATS = ("jwt", "jwt-unsigned", "jwe", "cwt", "opaque", "empty", "malformed")


@dataclass(frozen=True, slots=True)
class DecodedToken:
    """What a bearer credential decodes to. Treat ``header`` and ``claims`` as read-only."""

    fingerprint: str  # first 12 hex of SHA-256 over the exact token text (same as cred_fp)
    format: str  # one of FORMATS
    size: int = 0  # length of the token text in characters
    header: dict[str, Any] | None = field(default=None, hash=False)
    claims: dict[str, Any] | None = field(default=None, hash=False, repr=False)  # may hold secrets
    alg: str | None = None
    typ: str | None = None
    kid: str | None = None
    x5t: str | None = None
    enc: str | None = None  # JWE content encryption
    iss: str | None = None
    aud: str | None = None  # the first audience
    audiences: tuple[str, ...] = ()
    sub: str | None = None
    nameid: str | None = None
    nii: str | None = None
    appid: str | None = None  # appid (v1), else azp (v2)
    tid: str | None = None
    upn: str | None = None
    smtp: str | None = None
    sip: str | None = None
    actor: str | None = None  # the ``actor`` claim (SharePoint low-trust user+app tokens)
    nbf: float | None = None  # unix seconds, converted when the raw value looked like another unit
    exp: float | None = None
    iat: float | None = None
    time_notes: tuple[str, ...] = ()
    actor_token: DecodedToken | None = None  # the decoded ``actortoken`` claim
    actor_fp: str | None = None
    problems: tuple[str, ...] = ()
    signing_input: bytes = field(default=b"", repr=False)  # "<header>.<payload>" as sent
    signature: bytes = field(default=b"", repr=False)
    text: str = field(default="", repr=False)  # the token itself: secret (not kept when too large)

    def to_dict(self, reveal_secrets: bool = False) -> dict[str, Any]:
        """A JSON-ready view; the token text (and secret claims) only with ``reveal_secrets``."""
        out: dict[str, Any] = {
            "fingerprint": self.fingerprint,
            "format": self.format,
            "size": self.size,
            "header": self.public_header(),
            "claims": self.public_claims(reveal_secrets),
        }
        for name in ("alg", "typ", "kid", "x5t", "enc", "iss", "aud"):
            out[name] = getattr(self, name)
        out["audiences"] = list(self.audiences)
        for name in ("sub", "nameid", "nii", "appid", "tid", "upn", "smtp", "sip", "actor"):
            out[name] = getattr(self, name)
        for name in ("nbf", "exp", "iat"):
            value = getattr(self, name)
            out[name] = value
            out[f"{name}_iso"] = iso_utc(value)
        out["time_notes"] = list(self.time_notes)
        out["actor_fp"] = self.actor_fp
        out["actor_token"] = (
            self.actor_token.to_dict(reveal_secrets) if self.actor_token is not None else None
        )
        out["problems"] = list(self.problems)
        if reveal_secrets:
            out["token"] = self.text
        return out

    def public_header(self) -> dict[str, Any] | None:
        """A copy of the header, as ``to_dict`` shows it."""
        return _copy_json(self.header)

    def public_claims(self, reveal_secrets: bool = False) -> dict[str, Any] | None:
        """A copy of the claims as ``to_dict`` shows them: the actor token replaced by its
        fingerprint, secret-looking claims by theirs unless ``reveal_secrets``."""
        return _public_claims(self.claims, self.actor_fp, reveal_secrets)


class CacheInfo(NamedTuple):
    hits: int
    misses: int
    maxsize: int
    currsize: int


class TokenDecoder:
    """``decode_token`` with a bounded LRU cache keyed by the token text itself.

    The key is the whole text, not the 12-hex fingerprint, so a crafted fingerprint collision
    cannot make one token show another's claims; and a repeated token costs a dictionary lookup
    (its text is usually the very string object seen before), not a hash over its bytes.
    Oversized tokens are not cached.
    """

    def __init__(self, maxsize: int = CACHE_ENTRIES, max_bytes: int = CACHE_BYTES) -> None:
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self._cache: OrderedDict[tuple[str, int], tuple[DecodedToken, int]] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def __call__(self, text: str) -> DecodedToken:
        """Decode ``text`` (the credential after ``Bearer``); never raises."""
        return self.decode(text, 0)

    def decode(self, text: str, depth: int) -> DecodedToken:
        """Decode ``text`` found at actor nesting ``depth`` (0 = the bearer token itself)."""
        if isinstance(text, bytes | bytearray):
            text = bytes(text).decode("utf-8", "surrogateescape")
        elif not isinstance(text, str):
            return DecodedToken("", "malformed", problems=(f"not text ({type(text).__name__})",))
        key = (text, depth)
        hit = self._cache.get(key)
        if hit is not None:
            self.hits += 1
            self._cache.move_to_end(key)
            return hit[0]
        self.misses += 1
        try:
            token = _decode(text, depth, self)
        except Exception as exc:  # a decoder bug must not end a run
            token = DecodedToken(
                fingerprint(text),
                "malformed",
                size=len(text),
                problems=(f"decoder error: {type(exc).__name__}",),
            )
        if len(text) <= MAX_TOKEN_CHARS:
            self._store(key, token, 2 * len(text) + 512)
        return token

    def _store(self, key: tuple[str, int], token: DecodedToken, cost: int) -> None:
        self._cache[key] = (token, cost)
        self._bytes += cost
        while self._cache and (len(self._cache) > self.maxsize or self._bytes > self.max_bytes):
            _, (_, old_cost) = self._cache.popitem(last=False)
            self._bytes -= old_cost

    def cache_info(self) -> CacheInfo:
        return CacheInfo(self.hits, self.misses, self.maxsize, len(self._cache))

    def cache_clear(self) -> None:
        self._cache.clear()
        self._bytes = 0
        self.hits = 0
        self.misses = 0


#: The module's shared decoder: ``decode_token(text) -> DecodedToken``.
decode_token = TokenDecoder()


# ------------------------------------------------------------------------------------ decoding


def _decode(text: str, depth: int, decoder: TokenDecoder) -> DecodedToken:
    fp = fingerprint(text)
    size = len(text)
    s = text.strip()
    if not s:
        return DecodedToken(fp, "empty", size=size, text=text)
    if size > MAX_TOKEN_CHARS:
        head = s[:4096].split(".")
        fmt = "cwt" if s[:4].lower() == "cwt=" else "malformed" if _jwt_like(head) else "opaque"
        problem = f"token too large ({size} chars > {MAX_TOKEN_CHARS}); not decoded"
        return DecodedToken(fp, fmt, size=size, problems=(problem,))
    if s[:4].lower() == "cwt=":
        problems = () if len(s) > 4 else ("empty web ticket after cwt=",)
        return DecodedToken(fp, "cwt", size=size, problems=problems, text=text)
    segments = s.split(".")
    if not _jwt_like(segments):
        return DecodedToken(fp, "opaque", size=size, text=text)
    if len(segments) == 5:
        return _decode_jwe(fp, size, text, segments)
    if len(segments) != 3:
        problem = f"{len(segments)} dot-separated parts (a JWT has 3, a JWE 5)"
        return DecodedToken(fp, "malformed", size=size, problems=(problem,), text=text)
    return _decode_jws(fp, size, text, segments, depth, decoder)


def _decode_jwe(fp: str, size: int, text: str, segments: list[str]) -> DecodedToken:
    """Five parts: show the protected header; the payload is encrypted."""
    problems: list[str] = []
    header = _json_segment("header", segments[0], problems)
    if header is None:
        return DecodedToken(fp, "malformed", size=size, problems=tuple(problems), text=text)
    return DecodedToken(
        fp, "jwe", size=size, header=header,
        alg=_text(header.get("alg")), typ=_text(header.get("typ")),
        kid=_text(header.get("kid")), x5t=_text(header.get("x5t")),
        enc=_text(header.get("enc")), problems=tuple(problems), text=text,
    )  # fmt: skip


def _decode_jws(
    fp: str, size: int, text: str, segments: list[str], depth: int, decoder: TokenDecoder
) -> DecodedToken:
    problems: list[str] = []
    header = _json_segment("header", segments[0], problems)
    claims = _json_segment("claims", segments[1], problems)
    signing_input = _encode(f"{segments[0]}.{segments[1]}")
    signature = b""
    if segments[2]:
        decoded_sig = b64decode_lenient(segments[2])
        if decoded_sig is None:
            problems.append("signature: bad base64url")
        else:
            signature = decoded_sig
    if header is None or claims is None:
        return DecodedToken(
            fp, "malformed", size=size, header=header, claims=claims,
            problems=tuple(problems), signing_input=signing_input, signature=signature, text=text,
        )  # fmt: skip

    alg = _text(header.get("alg"))
    if alg is None:
        problems.append("header has no alg")
    unsigned = (alg or "").lower() == "none" or not segments[2]
    if unsigned and (alg or "").lower() == "none" and segments[2]:
        problems.append("alg none but a signature is present")
    elif unsigned and alg and alg.lower() != "none":
        problems.append(f"alg {alg} but the signature is empty")

    audiences = _audiences(claims.get("aud"))
    notes: list[str] = []
    times = {name: _time(name, claims.get(name), notes, problems) for name in ("nbf", "exp", "iat")}

    actor_token = None
    if "actortoken" in claims:
        actor_token = _actor(claims["actortoken"], depth, decoder, problems)
        if actor_token is not None and actor_token.format == "jwt-unsigned":
            problems.append("the inner actor token must be signed (Exchange error 2002)")
        if actor_token is not None and not unsigned:
            problems.append("the user context must be unsigned (Exchange error 2001)")

    return DecodedToken(
        fp,
        "jwt-unsigned" if unsigned else "jwt",
        size=size,
        header=header,
        claims=claims,
        alg=alg,
        typ=_text(header.get("typ")),
        kid=_text(header.get("kid")),
        x5t=_text(header.get("x5t")),
        iss=_text(claims.get("iss")),
        aud=audiences[0] if audiences else None,
        audiences=audiences,
        sub=_text(claims.get("sub")),
        nameid=_text(claims.get("nameid")),
        nii=_text(claims.get("nii")),
        appid=_text(claims.get("appid")) or _text(claims.get("azp")),
        tid=_text(claims.get("tid")),
        upn=_text(claims.get("upn")),
        smtp=_text(claims.get("smtp")),
        sip=_text(claims.get("sip")),
        actor=_text(claims.get("actor")),
        nbf=times["nbf"],
        exp=times["exp"],
        iat=times["iat"],
        time_notes=tuple(notes),
        actor_token=actor_token,
        actor_fp=actor_token.fingerprint if actor_token is not None else None,
        problems=tuple(problems),
        signing_input=signing_input,
        signature=signature,
        text=text,
    )


def _actor(
    value: Any, depth: int, decoder: TokenDecoder, problems: list[str]
) -> DecodedToken | None:
    """Decode the ``actortoken`` claim as a compact JWT of its own."""
    if not isinstance(value, str):
        problems.append(f"actortoken is not a string ({_json_type(value)})")
        return None
    if depth >= MAX_ACTOR_DEPTH:
        problems.append("actortoken inside an actor token: not decoded")
        return None
    actor = decoder.decode(value, depth + 1)
    if actor.format not in ("jwt", "jwt-unsigned"):
        why = f": {actor.problems[0]}" if actor.problems else ""
        problems.append(f"actortoken not decodable ({actor.format}{why})")
    return actor


def _jwt_like(segments: list[str]) -> bool:
    """Does this look like a compact JWS/JWE (a base64 JSON object in the first or second part)?"""
    if len(segments) < 2:
        return False
    if _json_start(segments[0]):
        return True
    return len(segments) in (3, 5) and _json_start(segments[1])


def _json_start(segment: str) -> bool:
    prefix = segment[:8]
    raw = b64decode_lenient(prefix[: len(prefix) - len(prefix) % 4] or prefix)
    if not raw:
        return False
    raw = raw.lstrip(b" \t\r\n")
    return raw[:1] == b"{" and (len(raw) == 1 or raw[1:2] in b'"} \t\r\n')


def _json_segment(name: str, segment: str, problems: list[str]) -> dict[str, Any] | None:
    """A base64url JSON object, or None with a line in ``problems``."""
    raw = b64decode_lenient(segment)
    if raw is None:
        problems.append(f"{name}: bad base64url")
        return None
    if len(raw) > MAX_JSON_BYTES:
        problems.append(f"{name}: too large ({len(raw)} bytes > {MAX_JSON_BYTES})")
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        problems.append(f"{name}: not UTF-8")
        return None
    duplicates: list[str] = []
    try:
        value = parse_json(text, duplicates)
    except RecursionError:
        problems.append(f"{name}: JSON nested too deeply")
        return None
    except ValueError:
        problems.append(f"{name}: invalid JSON")
        return None
    # Every level of nesting opens with a bracket: with few brackets, no need to walk the value.
    deep = text.count("{") + text.count("[") > MAX_JSON_DEPTH and json_depth(value) > MAX_JSON_DEPTH
    if deep:
        problems.append(f"{name}: JSON nested too deeply (> {MAX_JSON_DEPTH} levels)")
        return None
    if not isinstance(value, dict):
        problems.append(f"{name}: not a JSON object ({_json_type(value)})")
        return None
    for key in duplicates[:5]:
        problems.append(f"{name}: duplicate key {key!r} (the last one counts)")
    return value


def parse_json(text: str, duplicates: list[str] | None = None) -> Any:
    """``json.loads`` that refuses NaN/Infinity and lists duplicate object keys.

    Raises ValueError on bad JSON and RecursionError on absurd nesting; callers catch both.
    """

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(items)
        if duplicates is not None and len(out) != len(items):
            seen: set[str] = set()
            for key, _ in items:
                if key in seen and key not in duplicates:
                    duplicates.append(key)
                seen.add(key)
        return out

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    value = json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    return without_lone_surrogates(value) if "\\u" in text else value


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def without_lone_surrogates(value: Any) -> Any:
    """Parsed JSON with every lone surrogate in its strings (keys too) replaced by U+FFFD.

    JSON's ``\\ud800`` escape decodes to a lone surrogate, a ``str`` no UTF-8 writer can encode:
    one such claim crashed every output. Escaped pairs are joined by the parser, so any surrogate
    left is lone. Call it only when the text holds a ``\\u`` escape (the only way to get one).
    """
    kind = type(value)
    if kind is str:
        return _LONE_SURROGATE.sub("\ufffd", value)
    if kind is dict:
        return {
            without_lone_surrogates(key): without_lone_surrogates(item)
            for key, item in value.items()
        }
    if kind is list:
        return [without_lone_surrogates(item) for item in value]
    return value


def json_depth(value: Any) -> int:
    """Nesting depth of parsed JSON (scalars 0), computed without recursion."""
    if not isinstance(value, dict | list):
        return 0
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if level > deepest:
            deepest = level
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


def b64decode_lenient(segment: str) -> bytes | None:
    """base64url or standard base64, padding optional; None when it is not base64 at all."""
    body = segment.rstrip("=")
    if len(body) % 4 == 1:
        return None
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return None


def b64url(data: bytes) -> str:
    """base64url without padding (the JOSE form)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# ------------------------------------------------------------------------------------ claims


def _time(name: str, value: Any, notes: list[str], problems: list[str]) -> float | None:
    """A time claim as unix seconds: numbers or numeric strings; other units converted."""
    if value is None:
        return None
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str) and len(value) <= 40:
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or not math.isfinite(number):
        problems.append(f"{name} is not a number ({_json_type(value)})")
        return None
    if number > MILLIS_LIMIT:
        notes.append(f"{name} looks like a Windows FILETIME")
        return number / 1e7 - FILETIME_UNIX_EPOCH
    if number > FILETIME_THRESHOLD:
        notes.append(f"{name} looks like unix milliseconds")
        return number / 1e3
    return number


def _audiences(value: Any) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(t for t in (_text(v) for v in value) if t is not None)
    text = _text(value)
    return (text,) if text is not None else ()


def _text(value: Any) -> str | None:
    """A claim as a string: strings as they are, numbers spelled out, anything else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


def _copy_json(value: Any) -> Any:
    """``copy.deepcopy`` of parsed JSON (dicts, lists, scalars) without deepcopy's bookkeeping;
    anything else still goes through ``copy.deepcopy``."""
    kind = type(value)
    if kind is dict:
        return {key: _copy_json(item) for key, item in value.items()}
    if kind is list:
        return [_copy_json(item) for item in value]
    if kind in _JSON_SCALARS:
        return value
    return copy.deepcopy(value)


def _public_claims(
    claims: dict[str, Any] | None, actor_fp: str | None, reveal_secrets: bool
) -> dict[str, Any] | None:
    if claims is None:
        return None
    if reveal_secrets:
        out = _copy_json(claims)
    else:
        out = {key: _masked_claim(key, value) for key, value in claims.items()}
    if "actortoken" in out and actor_fp is not None:
        out["actortoken"] = f"<actor token fp={actor_fp}>"
    return out


def secret_claim(name: str) -> bool:
    """Is a claim of this name a credential? Any case, ``_`` and ``-`` ignored: a name of
    ``SECRET_CLAIMS`` or one ending in ``SECRET_ENDINGS`` (``Refresh_Token``, ``clientSecret``,
    ``api-key``)."""
    folded = name.lower().replace("_", "").replace("-", "")
    return folded in SECRET_CLAIMS or folded.endswith(SECRET_ENDINGS)


def _masked_claim(key: str, value: Any, level: int = 1) -> Any:
    """A copy of one claim with the secrets in it masked, at any depth: claims named as secrets
    (``secret_claim``: ``refresh_token``, ``ctx.Refresh_Token``) by their fingerprint (or JSON
    type), strings by ``_masked_text``. ``level``: the objects and lists around ``value`` (1 for
    a claim of the token)."""
    if secret_claim(key):
        shown = fingerprint(value) if isinstance(value, str) else _json_type(value)
        return f"<redacted fp={shown}>"
    kind = type(value)
    if kind is dict:
        return {k: _masked_claim(k, v, level + 1) for k, v in value.items()}
    if kind is list:
        return [_masked_claim("", item, level + 1) for item in value]
    if kind is str:
        return _masked_text(value, level)
    return _copy_json(value)


#: The names in a string: what ``_masked_text`` looks for in JSON it cannot read.
_NAME = re.compile(r"[A-Za-z0-9_-]+")


def _masked_text(text: str, level: int) -> str:
    """A string claim with its secrets masked. JSON in a string (Microsoft's ``appctx``, a
    ``ctx`` of ``{"refresh_token": ...}``) is masked like claims and written back as compact JSON
    when that masked anything; JSON that cannot be read (bad, or nested past ``MAX_JSON_DEPTH``
    levels counted from the top of the claims) is masked whole when it names a secret claim.
    Other text: ``mask_secret`` (a token, a key by its shape)."""
    if text.lstrip()[:1] in ("{", "["):
        try:
            inner = parse_json(text)
            readable = level + json_depth(inner) <= MAX_JSON_DEPTH
        except (ValueError, RecursionError):
            readable = False
        if readable:
            masked = _masked_claim("", inner, level)
            if masked != inner:
                return json.dumps(masked, ensure_ascii=False, separators=(",", ":"))
        elif any(secret_claim(name) for name in _NAME.findall(text)):
            return f"<redacted fp={fingerprint(text)}>"
    return mask_secret(text)


def iso_utc(seconds: float | None) -> str | None:
    """``2023-11-14T22:13:20Z`` for unix seconds; None when absent or out of range.

    Cached for plain numbers: the same nbf / exp values are formatted for every use of a token.
    """
    if seconds is None:
        return None
    if type(seconds) is float or type(seconds) is int:
        return _iso_utc_cached(seconds)
    return _iso_utc(seconds)


def _iso_utc(seconds: float) -> str | None:
    try:
        moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


_iso_utc_cached = lru_cache(maxsize=4096)(_iso_utc)


def _encode(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")
