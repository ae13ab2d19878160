"""Signing keys (from captured metadata / JWKS documents or files) and token signature checks.

A ``KeyStore`` collects public keys from Microsoft S2S ``metadata/json/1`` documents, JWKS, PEM and
DER files, indexed by certificate thumbprint (``x5t``) and ``kid``. ``verify_token`` checks a
decoded token against it. The algorithm family always comes from the key, never from the token: a
token whose ``alg`` does not fit the key it names is a bad signature (algorithm confusion), not an
invitation to verify an HMAC with a public key (HMAC algorithms are never verified at all). Only
keys in the store count: a token's own ``jwk`` / ``x5c`` header is never trusted and its ``jku`` /
``x5u`` URLs are never fetched; a ``crit`` header (extensions a verifier must understand) is
refused. No expiry or audience checks happen here.

``cryptography`` and ``pyjwt`` are imported by the functions that need them, on first use: a run
that meets no key document, key file or signed token never pays for loading them.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from analyzer.oauth.certificates import facts_of, load_der
from analyzer.oauth.principals import same_issuer
from analyzer.oauth.tokens import DecodedToken, b64decode_lenient, b64url, iso_utc, parse_json

if TYPE_CHECKING:
    from pathlib import Path

    from cryptography import x509
    from jwt.algorithms import Algorithm

DOCUMENT_CAP = 1 << 20  # bytes of one metadata / JWKS document
FILE_CAP = 4 << 20  # bytes of one key file
MAX_KEYS = 10_000  # keys a store holds
MAX_DOC_KEYS = 500  # keys read from one document
MAX_WARNINGS = 200
MAX_JWKS_URIS = 100
MAX_RSA_BITS = 16_384
MIN_RSA_BITS = 512

#: ``untrusted-key``: the signature verifies, but with a key nothing ties to the token's issuer
#: (a document anyone could have served); see ``KeyStore.vouches``.
STATUSES = ("verified", "bad-signature", "unknown-key", "untrusted-key", "unsigned", "not-checked")
DOCUMENTS = ("s2s-metadata", "jwks", "openid-configuration", "pem", "der")

#: JWK curve name -> the ``cryptography.hazmat.primitives.asymmetric.ec`` class that names it.
_CURVES: dict[str, str] = {
    "P-256": "SECP256R1",
    "P-384": "SECP384R1",
    "P-521": "SECP521R1",
    "secp256k1": "SECP256K1",
}
_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}

# alg -> (key family, required curve or None, pyjwt algorithm class, its hash attribute or None)
_ALGORITHMS: dict[str, tuple[str, str | None, str, str | None]] = {
    "RS256": ("RSA", None, "RSAAlgorithm", "SHA256"),
    "RS384": ("RSA", None, "RSAAlgorithm", "SHA384"),
    "RS512": ("RSA", None, "RSAAlgorithm", "SHA512"),
    "PS256": ("RSA", None, "RSAPSSAlgorithm", "SHA256"),
    "PS384": ("RSA", None, "RSAPSSAlgorithm", "SHA384"),
    "PS512": ("RSA", None, "RSAPSSAlgorithm", "SHA512"),
    "ES256": ("EC", "secp256r1", "ECAlgorithm", "SHA256"),
    "ES256K": ("EC", "secp256k1", "ECAlgorithm", "SHA256"),
    "ES384": ("EC", "secp384r1", "ECAlgorithm", "SHA384"),
    "ES512": ("EC", "secp521r1", "ECAlgorithm", "SHA512"),
    "EdDSA": ("OKP", None, "OKPAlgorithm", None),
    "Ed25519": ("OKP", "ed25519", "OKPAlgorithm", None),
    "Ed448": ("OKP", "ed448", "OKPAlgorithm", None),
}


@functools.cache
def _algorithm(alg: str) -> Algorithm:
    """The pyjwt algorithm object for ``alg`` (a key of ``_ALGORITHMS``), made once."""
    from jwt import algorithms

    class_name, hash_name = _ALGORITHMS[alg][2:]
    cls = getattr(algorithms, class_name)
    return cls(getattr(cls, hash_name)) if hash_name else cls()


class KeyFileError(Exception):
    """A key file that cannot be read or holds nothing usable (one-line message)."""


@dataclass(frozen=True, slots=True)
class KeySource:
    """Where a key came from."""

    kind: str  # capture | file
    location: str  # URL as requested, or file path
    ts: float | None  # capture time of the document, None for files
    document: str  # one of DOCUMENTS


@dataclass(frozen=True)
class SigningKey:
    """One public key able to verify token signatures."""

    public_key: Any = field(hash=False)  # cryptography public key object (not hashable)
    family: str  # RSA | EC | OKP
    source: KeySource
    x5t: str | None = None  # base64url SHA-1 of the certificate DER (or the stated x5t)
    x5t_s256: str | None = None
    kid: str | None = None
    subject: str | None = None  # certificate subject / issuer (RFC 4514), validity (unix seconds)
    issuer: str | None = None
    not_before: float | None = None
    not_after: float | None = None
    usage: str | None = None  # metadata "usage" / JWK "use"
    metadata_issuer: str | None = None  # the S2S metadata document's issuer principal

    @property
    def curve(self) -> str | None:
        """JOSE curve name for EC / OKP keys."""
        if self.family == "EC":
            name = self.public_key.curve.name
            return _CURVE_NAMES.get(name, name)
        if self.family == "OKP":
            from cryptography.hazmat.primitives.asymmetric import ed25519

            return "Ed25519" if isinstance(self.public_key, ed25519.Ed25519PublicKey) else "Ed448"
        return None

    @property
    def thumbprint(self) -> str | None:
        """Hex SHA-1 thumbprint (upper case), as Windows and ``Get-AuthConfig`` show it."""
        return x5t_to_hex(self.x5t) if self.x5t else None

    def describe(self) -> str:
        """Short label: family, size or curve, thumbprint or kid."""
        if self.family == "RSA":
            shape = f"RSA-{self.public_key.key_size}"
        else:
            shape = f"{self.family} {self.curve}"
        ident = f"x5t={self.x5t}" if self.x5t else f"kid={self.kid}" if self.kid else "no id"
        hexed = f" (thumbprint {self.thumbprint})" if self.thumbprint else ""
        return f"{shape} {ident}{hexed}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (public material only)."""
        return {
            "family": self.family,
            "key_size": self.public_key.key_size if self.family == "RSA" else None,
            "curve": self.curve,
            "x5t": self.x5t,
            "x5t_s256": self.x5t_s256,
            "kid": self.kid,
            "subject": self.subject,
            "issuer": self.issuer,
            "not_before": iso_utc(self.not_before),
            "not_after": iso_utc(self.not_after),
            "usage": self.usage,
            "metadata_issuer": self.metadata_issuer,
            "source": {
                "kind": self.source.kind,
                "location": self.source.location,
                "ts": self.source.ts,
                "document": self.source.document,
            },
        }


@dataclass(frozen=True, slots=True)
class SignatureResult:
    """Outcome of ``verify_token``."""

    status: str  # one of STATUSES
    key: SigningKey | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "detail": self.detail,
            "key": self.key.to_dict() if self.key is not None else None,
        }


class KeyStore:
    """Public signing keys indexed by x5t (stated and computed) and kid. Bounded; never raises
    on document contents (``add_file`` raises ``KeyFileError`` for unusable files)."""

    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        self.max_keys = max_keys
        self.warnings: list[str] = []
        self.jwks_uris: list[str] = []
        # a JWKS URL (as ``_url_key`` spells it) -> the issuers whose OpenID configuration names it
        self.jwks_issuers: dict[str, set[str]] = {}
        self._keys: list[SigningKey] = []
        self._known: dict[bytes, SigningKey] = {}  # key identity -> first SigningKey seen
        self._by_x5t: dict[str, list[SigningKey]] = {}
        self._by_kid: dict[str, list[SigningKey]] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[SigningKey]:
        return iter(list(self._keys))

    # ----------------------------------------------------------------------------- documents

    def add_metadata_document(self, text: str | bytes, location: str, ts: float | None) -> int:
        """Keys of a Microsoft S2S ``metadata/json/1`` document; returns how many it held."""
        doc = self._parse(text, location)
        if doc is None:
            return 0
        return self._metadata(doc, KeySource("capture", location, ts, "s2s-metadata"))

    def add_jwks(self, text: str | bytes, location: str, ts: float | None) -> int:
        """Keys of a JWKS document; returns how many usable keys it held."""
        doc = self._parse(text, location)
        if doc is None:
            return 0
        return self._jwks(doc, KeySource("capture", location, ts, "jwks"))

    def add_document(self, text: str | bytes, location: str, ts: float | None) -> int:
        """Sniff S2S metadata, JWKS or OpenID configuration (0 keys, ``jwks_uri`` remembered)."""
        doc = self._parse(text, location)
        if doc is None:
            return 0
        return self._sniffed(doc, "capture", location, ts)

    def add_file(self, path: str | Path) -> int:
        """Keys from a PEM / DER certificate or public key, JWKS or metadata JSON file."""
        from pathlib import Path

        p = Path(path)
        too_large = f"{p}: too large for a key file (> {FILE_CAP} bytes)"
        try:
            if p.stat().st_size > FILE_CAP:
                raise KeyFileError(too_large)
            with p.open("rb") as fh:  # at most one byte past the cap: /dev/zero, a pipe
                data = fh.read(FILE_CAP + 1)
        except OSError as exc:
            raise KeyFileError(f"{p}: cannot read ({exc.strerror or exc})") from None
        if len(data) > FILE_CAP:
            raise KeyFileError(too_large)
        body = data.lstrip(b"\xef\xbb\xbf \t\r\n")
        if not body:
            raise KeyFileError(f"{p}: file is empty")
        location = str(p)
        if b"-----BEGIN " in data:
            return self._pem_file(data, location)
        if body[:1] in (b"{", b"["):
            return self._json_file(data, location)
        der = body if _looks_binary(body) else b64decode_lenient(_squash(body))
        if der:
            source = KeySource("file", location, None, "der")
            cert = load_der(der)
            if cert is not None:
                if self._add_cert(cert, source, where=location):
                    return 1
                reason = self._last_warning(location, "unsupported certificate key")
                raise KeyFileError(f"{p}: {reason}")
            public = _load_der_public(der)
            if public is not None:
                if self._add_public(public, source, where=location):
                    return 1
                reason = self._last_warning(location, "unsupported public key")
                raise KeyFileError(f"{p}: {reason}")
        raise KeyFileError(
            f"{p}: not a PEM/DER certificate or public key, a JWKS or an S2S metadata document"
        )

    # ----------------------------------------------------------------------------- lookups

    def find(self, x5t: str | None = None, kid: str | None = None) -> list[SigningKey]:
        """Keys matching ``x5t`` (any spelling), then ``kid`` (also as a thumbprint); all keys
        when neither is given."""
        if x5t is None and kid is None:
            return list(self._keys)
        found: list[SigningKey] = []
        if x5t:
            for form in thumbprint_forms(x5t):
                found.extend(self._by_x5t.get(form, ()))
        if kid:
            found.extend(self._by_kid.get(kid, ()))
            for form in thumbprint_forms(kid):
                found.extend(self._by_x5t.get(form, ()))
        unique: dict[int, SigningKey] = {}
        for key in found:
            unique.setdefault(id(key), key)
        return list(unique.values())

    def vouches(self, key: SigningKey, issuer: str | None) -> bool:
        """Does anything tie ``key`` to the token issuer ``issuer``? A key file the user gave
        (the user vouches); the issuer's own S2S metadata (its ``issuer`` names the same app in
        the same realm, and it was served from that realm: ``served_in_realm``); or a JWKS that
        an OpenID configuration of that very issuer names as its ``jwks_uri``. A key from any
        other captured document proves nothing: anyone can serve a document with their own key
        in it, and name any issuer in it."""
        if key.source.kind == "file":
            # the user's word - for the issuer the file itself names, when it names one (an
            # S2S metadata document): Exchange's metadata does not vouch for a token that
            # says it is Skype for Business's
            return not key.metadata_issuer or bool(
                issuer and same_issuer(key.metadata_issuer, issuer)
            )
        if not issuer:
            return False
        if key.metadata_issuer:
            realm = issuer.rpartition("@")[2] if "@" in issuer else None
            return same_issuer(key.metadata_issuer, issuer) and served_in_realm(
                key.source.location, realm
            )
        if key.source.document == "jwks":
            return issuer in self.jwks_issuers.get(_url_key(key.source.location), ())
        return False

    # ----------------------------------------------------------------------------- internals

    def _parse(self, text: str | bytes, location: str) -> Any:
        if isinstance(text, bytes | bytearray):
            if len(text) > DOCUMENT_CAP:
                self._warn(f"{location}: document too large ({len(text)} bytes); ignored")
                return None
            text = bytes(text).decode("utf-8-sig", "replace")
        elif not isinstance(text, str):
            self._warn(f"{location}: document is not text; ignored")
            return None
        if len(text) > DOCUMENT_CAP:
            self._warn(f"{location}: document too large ({len(text)} chars); ignored")
            return None
        try:
            doc = parse_json(text.lstrip("\ufeff"))
        except (ValueError, RecursionError):
            self._warn(f"{location}: not JSON; no keys read")
            return None
        if not isinstance(doc, dict):
            self._warn(f"{location}: JSON is not an object; no keys read")
            return None
        return doc

    def _sniffed(self, doc: dict[str, Any], kind: str, location: str, ts: float | None) -> int:
        keys = _ci(doc, "keys")
        entries = [k for k in keys if isinstance(k, dict)] if isinstance(keys, list) else []
        if any(_ci(k, "keyvalue") is not None or _ci(k, "keyinfo") is not None for k in entries):
            return self._metadata(doc, KeySource(kind, location, ts, "s2s-metadata"))
        if any(_ci(k, "kty") is not None for k in entries):
            return self._jwks(doc, KeySource(kind, location, ts, "jwks"))
        jwks_uri = _ci(doc, "jwks_uri")
        if isinstance(jwks_uri, str):
            if jwks_uri not in self.jwks_uris and len(self.jwks_uris) < MAX_JWKS_URIS:
                self.jwks_uris.append(jwks_uri)
            issuer = _ci(doc, "issuer")
            # a configuration speaks for its issuer only from where that issuer's authority
            # lies (anyone can serve one naming any issuer); for a Microsoft issuer, of a key
            # set there too (another identity provider may keep its keys on another host, as
            # Google's accounts.google.com names www.googleapis.com)
            if (
                isinstance(issuer, str)
                and jwks_uri in self.jwks_uris
                and may_speak_for(location, issuer)
                and (_keys_anywhere(issuer) or may_speak_for(jwks_uri, issuer, keys=True))
            ):
                self.jwks_issuers.setdefault(_url_key(jwks_uri), set()).add(issuer)
            return 0
        if isinstance(keys, list):
            self._warn(f"{location}: key document holds no usable keys")
            return 0
        self._warn(f"{location}: not a JWKS, S2S metadata or OpenID configuration document")
        return 0

    def _metadata(self, doc: dict[str, Any], source: KeySource) -> int:
        where = source.location
        issuer = _ci(doc, "issuer")
        issuer = issuer if isinstance(issuer, str) else None
        entries = _ci(doc, "keys")
        if not isinstance(entries, list):
            self._warn(f"{where}: metadata document has no keys list")
            return 0
        count = 0
        for i, entry in enumerate(entries[:MAX_DOC_KEYS]):
            at = f"{where}: keys[{i}]"
            if not isinstance(entry, dict):
                self._warn(f"{at}: not an object")
                continue
            info = _ci(entry, "keyinfo")
            stated = _ci(info, "x5t") if isinstance(info, dict) else None
            value = _ci(entry, "keyvalue")
            raw = _ci(value, "value") if isinstance(value, dict) else value
            der = b64decode_lenient(_squash(raw)) if isinstance(raw, str) else None
            cert = load_der(der) if der else None
            usage = _ci(entry, "usage")
            if cert is None:
                public = _load_der_public(der) if der else None
                if public is None:
                    self._warn(f"{at}: keyvalue is not a base64 DER certificate")
                    continue
                added = self._add_public(
                    public, source, where=at, stated_x5t=_str(stated), usage=_str(usage),
                    metadata_issuer=issuer,
                )  # fmt: skip
            else:
                added = self._add_cert(
                    cert, source, where=at, stated_x5t=_str(stated), usage=_str(usage),
                    metadata_issuer=issuer,
                )  # fmt: skip
            count += added
        return count

    def _jwks(self, doc: dict[str, Any], source: KeySource) -> int:
        where = source.location
        entries = _ci(doc, "keys")
        if not isinstance(entries, list):
            self._warn(f"{where}: JWKS has no keys list")
            return 0
        count = 0
        for i, jwk in enumerate(entries[:MAX_DOC_KEYS]):
            at = f"{where}: keys[{i}]"
            if not isinstance(jwk, dict):
                self._warn(f"{at}: not an object")
                continue
            if any(_ci(jwk, name) is not None for name in ("d", "p", "q", "k")):
                self._warn(f"{at}: holds private or secret key material; only public parts used")
            raw_kty = _ci(jwk, "kty")
            kty = _KTY.get((_str(raw_kty) or "").lower())
            warned = len(self.warnings)
            params_key = _jwk_public(jwk, kty, at, self._warn)
            cert = None
            chain = _ci(jwk, "x5c")
            if isinstance(chain, list) and chain and isinstance(chain[0], str):
                der = b64decode_lenient(_squash(chain[0]))
                cert = load_der(der) if der else None
                if cert is None:
                    self._warn(f"{at}: x5c[0] is not a base64 DER certificate")
            if cert is not None and _cert_public(cert) is None:
                self._warn(f"{at}: x5c[0] certificate public key not readable")
                cert = None
            if (
                cert is not None
                and params_key is not None
                and _spki(_cert_public(cert)) != _spki(params_key)
            ):
                self._warn(f"{at}: x5c certificate and key parameters disagree; key skipped")
                continue
            extra = {
                "stated_x5t": _str(_ci(jwk, "x5t")),
                "stated_s256": _str(_ci(jwk, "x5t#S256")),
                "kid": _str(_ci(jwk, "kid")),
                "usage": _str(_ci(jwk, "use")),
            }
            if cert is not None:
                count += self._add_cert(cert, source, where=at, **extra)
            elif params_key is not None:
                count += self._add_public(params_key, source, where=at, **extra)
            elif kty == "oct":
                self._warn(f"{at}: symmetric (oct) key ignored")
            elif len(self.warnings) == warned:
                self._warn(f"{at}: no usable key (kty {raw_kty!r})")
        return count

    def _pem_file(self, data: bytes, location: str) -> int:
        from cryptography import x509
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives import serialization

        count = 0
        private = 0
        for match in _PEM_BLOCK.finditer(data):
            label = match.group(1).decode("ascii", "replace")
            block = match.group(0)
            if "PRIVATE" in label:
                private += 1
                continue
            if label in ("CERTIFICATE", "X509 CERTIFICATE"):
                try:
                    cert = x509.load_pem_x509_certificate(block)
                except ValueError:
                    self._warn(f"{location}: unreadable {label} block")
                    continue
                count += self._add_cert(cert, KeySource("file", location, None, "pem"), location)
            elif label in ("PUBLIC KEY", "RSA PUBLIC KEY"):
                try:
                    public = serialization.load_pem_public_key(block)
                except (ValueError, TypeError, UnsupportedAlgorithm):
                    self._warn(f"{location}: unreadable {label} block")
                    continue
                count += self._add_public(
                    public, KeySource("file", location, None, "pem"), location
                )
            else:
                self._warn(f"{location}: PEM block {label!r} ignored")
        if private:
            self._warn(f"{location}: {private} private key block(s) ignored (never loaded)")
        if count == 0:
            hint = " (only a private key: give the certificate or public key)" if private else ""
            raise KeyFileError(f"{location}: no certificate or public key in the PEM data{hint}")
        return count

    def _json_file(self, data: bytes, location: str) -> int:
        doc = self._parse(data, location)
        if doc is None:
            raise KeyFileError(f"{location}: {self._last_warning(location, 'not a JSON object')}")
        before = len(self.jwks_uris)
        count = self._sniffed(doc, "file", location, None)
        if count == 0 and len(self.jwks_uris) == before and _ci(doc, "jwks_uri") is None:
            raise KeyFileError(f"{location}: {self._last_warning(location, 'no usable keys')}")
        return count

    def _add_cert(
        self,
        cert: x509.Certificate,
        source: KeySource,
        where: str,
        stated_x5t: str | None = None,
        stated_s256: str | None = None,
        kid: str | None = None,
        usage: str | None = None,
        metadata_issuer: str | None = None,
    ) -> int:
        public = _cert_public(cert)
        if public is None:
            self._warn(f"{where}: certificate public key not readable")
            return 0
        family = _family(public, where, self._warn)
        if family is None:
            return 0
        facts = facts_of(cert)
        x5t, x5t_s256 = facts.x5t, facts.x5t_s256
        key = SigningKey(
            public_key=public,
            family=family,
            source=source,
            x5t=x5t,
            x5t_s256=x5t_s256,
            kid=kid,
            subject=facts.subject,
            issuer=facts.issuer,
            not_before=facts.not_before,
            not_after=facts.not_after,
            usage=usage,
            metadata_issuer=metadata_issuer,
        )
        if stated_x5t and x5t not in thumbprint_forms(stated_x5t):
            self._warn(f"{where}: stated x5t {stated_x5t} differs from the certificate's {x5t}")
        aliases = [x5t, x5t_s256, *_forms(stated_x5t), *_forms(stated_s256)]
        return self._index(b"cert:" + b64decode_lenient(x5t_s256), key, aliases, kid)

    def _add_public(
        self,
        public: Any,
        source: KeySource,
        where: str,
        stated_x5t: str | None = None,
        stated_s256: str | None = None,
        kid: str | None = None,
        usage: str | None = None,
        metadata_issuer: str | None = None,
    ) -> int:
        family = _family(public, where, self._warn)
        if family is None:
            return 0
        forms, s256_forms = _forms(stated_x5t), _forms(stated_s256)
        key = SigningKey(
            public_key=public,
            family=family,
            source=source,
            x5t=forms[0] if forms else None,
            x5t_s256=s256_forms[0] if s256_forms else None,
            kid=kid,
            usage=usage,
            metadata_issuer=metadata_issuer,
        )
        aliases = [*forms, *s256_forms]
        return self._index(b"spki:" + hashlib.sha256(_spki(public)).digest(), key, aliases, kid)

    def _index(self, identity: bytes, key: SigningKey, aliases: list[str], kid: str | None) -> int:
        """Store ``key`` once (first source wins) and file it under every alias; returns 1."""
        known = self._known.get(identity)
        if known is None:
            if len(self._keys) >= self.max_keys:
                self._warn(f"key store full ({self.max_keys} keys); further keys dropped")
                return 0
            self._known[identity] = key
            self._keys.append(key)
            known = key
        for alias in aliases:
            bucket = self._by_x5t.setdefault(alias, [])
            if known not in bucket:
                bucket.append(known)
        if kid:
            bucket = self._by_kid.setdefault(kid, [])
            if known not in bucket:
                bucket.append(known)
        return 1

    def _warn(self, message: str) -> None:
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(message[:300])
        elif len(self.warnings) == MAX_WARNINGS:
            self.warnings.append("further warnings suppressed")

    def _last_warning(self, location: str, default: str) -> str:
        """The reason the last warning gave about ``location`` (its ``location: `` prefix
        removed), or ``default`` when the last warning is about something else (the store's
        warnings were full)."""
        last = self.warnings[-1] if self.warnings else ""
        prefix = f"{location}: "
        return last[len(prefix) :] if last.startswith(prefix) else default


# ---------------------------------------------------------------------------------- verifying


def verify_token(token: DecodedToken, store: KeyStore) -> SignatureResult:
    """Check ``token``'s signature against ``store``; the key decides the algorithm family."""
    if token.format == "jwt-unsigned":
        why = "alg none" if (token.alg or "").lower() == "none" else "empty signature"
        return SignatureResult("unsigned", None, f"unsigned token ({why})")
    if token.format != "jwt":
        return SignatureResult("not-checked", None, f"{token.format} token: nothing to verify")
    alg = token.alg
    if not alg:
        return SignatureResult("bad-signature", None, "header has no alg")
    if not token.signature:
        return SignatureResult("bad-signature", None, "signature segment did not decode")
    crit = (token.header or {}).get("crit")
    if crit is not None:  # RFC 7515 4.1.11: extensions a verifier must understand; we know none
        shown = ", ".join(map(str, crit))[:80] if isinstance(crit, list) else type(crit).__name__
        return SignatureResult(
            "bad-signature", None, f"header marks extensions critical (crit: {shown}): refused"
        )

    named = bool(token.x5t or token.kid)
    if named:
        candidates = store.find(x5t=token.x5t, kid=token.kid)
        if not candidates:
            ids = ", ".join(f"{n}={v}" for n, v in (("x5t", token.x5t), ("kid", token.kid)) if v)
            hexed = x5t_to_hex(token.x5t) if token.x5t else None
            ids += f" (thumbprint {hexed})" if hexed else ""
            return SignatureResult(
                "unknown-key", None, f"no key with {ids} among {len(store)} loaded key(s)"
            )
    else:
        candidates = store.find()
        if not candidates:
            return SignatureResult("unknown-key", None, "no keys loaded (token names no x5t/kid)")

    fitting = [key for key in candidates if _fits(alg, key)]
    if not fitting:
        first = candidates[0]
        return SignatureResult("bad-signature", first if named else None, _misfit(alg, first))

    algorithm = _algorithm(alg)
    for key in fitting:
        if _verify(algorithm, token.signing_input, key.public_key, token.signature):
            where = f"{key.source.document} {key.source.location}"
            return SignatureResult(
                "verified", key, f"{alg} verified with {key.describe()} ({where})"
            )
    if named:
        return SignatureResult(
            "bad-signature",
            fitting[0],
            f"{alg} signature does not match {len(fitting)} key(s) named by the token "
            f"({fitting[0].describe()})",
        )
    return SignatureResult(
        "unknown-key",
        None,
        f"token names no key and none of {len(fitting)} {alg}-capable keys fits",
    )


def _fits(alg: str, key: SigningKey) -> bool:
    spec = _ALGORITHMS.get(alg)
    if spec is None or spec[0] != key.family:
        return False
    curve = spec[1]
    if curve is None:
        return True
    if key.family == "EC":
        return key.public_key.curve.name == curve
    return (key.curve or "").lower() == curve


def _misfit(alg: str, key: SigningKey) -> str:
    spec = _ALGORITHMS.get(alg)
    if spec is not None and spec[0] == key.family:
        return f"token alg {alg} needs another curve than the key's ({key.describe()})"
    return f"token alg {alg} does not fit an {key.family} key (algorithm confusion?)"


def _verify(algorithm: Algorithm, message: bytes, public_key: Any, signature: bytes) -> bool:
    try:
        return bool(algorithm.verify(message, public_key, signature))
    except Exception:  # malformed signatures must read as "does not verify"
        return False


# ---------------------------------------------------------------------------------- helpers

_KTY = {"rsa": "RSA", "ec": "EC", "okp": "OKP", "oct": "oct"}
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]{1,40})-----.{0,200000}?-----END \1-----", re.S)
_HEX_THUMB = re.compile(r"(?:[0-9A-Fa-f]{2}[: ]?){20}|(?:[0-9A-Fa-f]{2}[: ]?){32}")


#: Hosts of Microsoft's own token services, which publish metadata for every tenant (the
#: tenant in the path: ``/<realm>/metadata/json/1``).
MICROSOFT_METADATA_HOSTS = (
    "accounts.accesscontrol.windows.net",
    "login.microsoftonline.com",
    "login.windows.net",
    "sts.windows.net",
)


def served_in_realm(location: str, realm: str | None) -> bool:
    """Was a metadata document at ``location`` served from within ``realm``? For a DNS realm
    (``contoso.com``): a host that is the realm or under it; for a tenant id: Microsoft's token
    service with the tenant in the path. A document from anywhere else may name any issuer."""
    if not realm or realm == "*":
        return False
    host, _, path = _url_key(location).partition("/")
    host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    realm = realm.lower()
    if "." in realm:
        return host == realm or host.endswith("." + realm)
    return host in MICROSOFT_METADATA_HOSTS and realm in path.lower().split("/")


def may_speak_for(location: str, issuer: str, keys: bool = False) -> bool:
    """May a document at ``location`` speak for ``issuer`` (an OpenID configuration naming it,
    the JWKS such a configuration names)? The rules of ``served_in_realm``: for a principal
    (``<app>@<realm>``) a location within its realm, or Microsoft's token service with the
    tenant in the path; for a URL issuer on one of Microsoft's hosts (``https://sts.windows.net/
    <tenant>/``), Microsoft's token service with that tenant in the path; for any other URL
    issuer, its own host or a host under it. ``keys``: the location is a JWKS, which on
    Microsoft's hosts may also be the keys all tenants share (``/common/``, no query: a query
    such as ``?appid=`` selects an application's own keys)."""
    issuer = issuer.strip()
    if "://" in issuer:
        host, _, path = _url_key(issuer).partition("/")
        host = _bare_host(host)
        if host in MICROSOFT_METADATA_HOSTS:
            tenant = path.split("/", 1)[0].split("?", 1)[0].lower()
            if not tenant or tenant in ("common", "organizations", "consumers"):
                return False
            if _microsoft_location(location, tenant):
                return True
            return keys and _microsoft_location(location, "common")
        if not host or "." not in host:
            return False
        where = _bare_host(_url_key(location).partition("/")[0])
        return where == host or where.endswith("." + host)
    if "@" not in issuer:
        return False
    realm = issuer.rpartition("@")[2]
    if served_in_realm(location, realm):
        return True
    return keys and "." not in realm and bool(realm) and _microsoft_location(location, "common")


def _keys_anywhere(issuer: str) -> bool:
    """May ``issuer``'s OpenID configuration name a key set on any host? For a URL issuer
    other than Microsoft's token service: its configuration, served from its own host, is its
    word. A principal (``<app>@<realm>``) or a Microsoft issuer keeps its keys in its realm, or
    at Microsoft."""
    if "://" not in issuer:
        return False
    return _bare_host(_url_key(issuer.strip()).partition("/")[0]) not in MICROSOFT_METADATA_HOSTS


def _microsoft_location(location: str, tenant: str) -> bool:
    """Is ``location`` on one of Microsoft's token-service hosts, its first path segment
    ``tenant``, without a query?"""
    host, _, path = _url_key(location).partition("/")
    if "?" in path or _bare_host(host) not in MICROSOFT_METADATA_HOSTS:
        return False
    return path.split("/", 1)[0].lower() == tenant.lower()


def _bare_host(host: str) -> str:
    """``host`` without its port (an IPv6 literal left whole)."""
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _url_key(url: str) -> str:
    """``url`` as a JWKS location and a ``jwks_uri`` are compared: without its scheme (a
    document captured in the clear was published over https), host in lower case, default
    port left out."""
    rest = url.split("://", 1)[-1]
    host, slash, path = rest.partition("/")
    host = host.lower().removesuffix(":443").removesuffix(":80")
    return host + slash + path


def x5t_to_hex(x5t: str) -> str | None:
    """The hex thumbprint (upper case) of a base64url ``x5t``; None when it is not 20 bytes."""
    try:
        raw = base64.urlsafe_b64decode(x5t + "=" * (-len(x5t) % 4))
    except (ValueError, binascii.Error):
        return None
    return raw.hex().upper() if len(raw) == 20 else None


def thumbprint_forms(value: str) -> list[str]:
    """Canonical base64url spellings of a thumbprint given as base64url, base64 or hex."""
    text = value.strip()
    forms = [text.rstrip("=").replace("+", "-").replace("/", "_")]
    if _HEX_THUMB.fullmatch(text):  # pairs, each maybe followed by ':' or ' ': valid hex
        forms.append(b64url(bytes.fromhex(re.sub(r"[: ]", "", text))))
    return forms


def _forms(value: str | None) -> list[str]:
    return thumbprint_forms(value) if value else []


def _ci(obj: Any, name: str) -> Any:
    """``obj[name]`` with the property name matched case-insensitively (None if absent)."""
    if not isinstance(obj, dict):
        return None
    if name in obj:
        return obj[name]
    lowered = name.lower()
    for key, value in obj.items():
        if isinstance(key, str) and key.lower() == lowered:
            return value
    return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _squash(value: str | bytes) -> str:
    """Base64 text without whitespace (certificates are often wrapped)."""
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    return "".join(text.split())


def _looks_binary(data: bytes) -> bool:
    return data[:1] == b"\x30"  # DER SEQUENCE


def _cert_public(cert: x509.Certificate) -> Any:
    """A certificate's public key; None when its algorithm is unknown or its bits are broken
    (a hostile certificate loads, then fails here)."""
    from cryptography.exceptions import UnsupportedAlgorithm

    try:
        return cert.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None


def _load_der_public(der: bytes | None) -> Any:
    if not der:
        return None
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        return serialization.load_der_public_key(der)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None


def _spki(public: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _family(public: Any, where: str, warn: Any) -> str | None:
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    if isinstance(public, rsa.RSAPublicKey):
        if not MIN_RSA_BITS <= public.key_size <= MAX_RSA_BITS:
            warn(f"{where}: RSA key of {public.key_size} bits ignored")
            return None
        return "RSA"
    if isinstance(public, ec.EllipticCurvePublicKey):
        return "EC"
    if isinstance(public, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return "OKP"
    warn(f"{where}: unsupported key type {type(public).__name__}")
    return None


def _jwk_public(jwk: dict[str, Any], kty: str | None, where: str, warn: Any) -> Any:
    """The public key a JWK's parameters describe, or None (with a warning when broken)."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    def number(name: str) -> int | None:
        raw = _ci(jwk, name)
        data = b64decode_lenient(raw) if isinstance(raw, str) else None
        return int.from_bytes(data, "big") if data else None

    def octets(name: str) -> bytes | None:
        raw = _ci(jwk, name)
        return b64decode_lenient(raw) if isinstance(raw, str) else None

    try:
        if kty == "RSA":
            n, e = number("n"), number("e")
            if n is None or e is None:
                return None
            if n.bit_length() > MAX_RSA_BITS or e < 3 or e.bit_length() > 64:
                warn(f"{where}: implausible RSA parameters ignored")
                return None
            return rsa.RSAPublicNumbers(e, n).public_key()
        if kty == "EC":
            crv = _str(_ci(jwk, "crv"))
            x, y = octets("x"), octets("y")
            if crv not in _CURVES or x is None or y is None:
                if x is not None:
                    warn(f"{where}: EC curve {crv!r} unsupported or coordinates missing")
                return None
            numbers = ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), getattr(ec, _CURVES[crv])()
            )
            return numbers.public_key()
        if kty == "OKP":
            crv = _str(_ci(jwk, "crv"))
            x = octets("x")
            if x is None:
                return None
            if crv == "Ed25519":
                return ed25519.Ed25519PublicKey.from_public_bytes(x)
            if crv == "Ed448":
                return ed448.Ed448PublicKey.from_public_bytes(x)
            warn(f"{where}: OKP curve {crv!r} cannot sign")
            return None
    except (ValueError, TypeError, OverflowError) as exc:
        warn(f"{where}: bad {kty} key parameters ({type(exc).__name__})")
    return None


__all__ = [
    "KeyFileError",
    "KeySource",
    "KeyStore",
    "SignatureResult",
    "SigningKey",
    "thumbprint_forms",
    "verify_token",
]
