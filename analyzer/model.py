"""The records every stage produces and every output is derived from.

One schema for the whole tool (documented field by field in ``docs/schema.md``; a test keeps the
two in sync). Records are frozen, slotted dataclasses: cheap to create, safe to share.

Fields whose ``metadata`` carries ``secret=True`` hold passwords, full tokens or other credential
text. They exist so later stages (token decoding, signature checks) can read them, and writers drop
them unless the user passed the explicit reveal flag.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

_R = TypeVar("_R")

SCHEMA_VERSION = 1  # an integer: raised when a field changes meaning or is removed

#: Credential schemes an event's ``scheme`` field can hold (lowercase).
SCHEMES = ("bearer", "basic", "ntlm", "negotiate", "digest", "other", "none")
#: Input kinds an event's ``source`` field can hold: capture files, a live capture, a Fiddler
#: session archive, a browser's HTTP archive, and any other format converted through tshark.
SOURCES = ("pcap", "pcapng", "live", "saz", "har", "tshark")


class _Record:
    """Base of the frozen records: pickled as their field values in order and rebuilt without
    ``__init__`` (see ``_rebuild``). A forked worker hands every event it read back to the
    parent pickled, so this is on the critical path of a parallel run: a dataclass's own
    pickling sends a list per record and sets it back one ``object.__setattr__`` call per
    field."""

    __slots__ = ()

    def __reduce__(self) -> tuple[Callable[[type, tuple], Any], tuple[type, tuple]]:
        cls = type(self)
        return _rebuild, (cls, _field_values(cls)(self))


def _secret() -> Any:
    return field(default=None, repr=False, metadata={"secret": True})


@dataclass(frozen=True, slots=True)
class Challenge(_Record):
    """One scheme offered by a ``WWW-Authenticate`` / ``Proxy-Authenticate`` header."""

    scheme: str  # lowercase scheme name as offered, e.g. "bearer", "ntlm", "msrtcoauth"
    params: dict[str, str] = field(default_factory=dict)  # auth-params, names lowercased
    token68: str | None = None  # a bare blob after the scheme (e.g. an NTLM type 2 message)
    proxy: bool = False  # came from Proxy-Authenticate
    details: dict[str, Any] = field(default_factory=dict)  # decoded view (principals named)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"scheme": self.scheme, "params": dict(self.params)}
        if self.token68 is not None:
            out["token68"] = self.token68
        if self.proxy:
            out["proxy"] = True
        if self.details:
            out["details"] = self.details
        return out


@dataclass(frozen=True, slots=True)
class Credential(_Record):
    """What an ``Authorization`` / ``Proxy-Authorization`` header (or a token parameter) carried."""

    scheme: str  # normalised: one of SCHEMES
    scheme_name: str  # the scheme word exactly as sent ("Bearer", "Turbo", ...)
    text: str = field(repr=False)  # credential after the scheme word: secret, never written
    fingerprint: str = ""  # cred_fp: first 12 hex digits of SHA-256 over ``text``
    user: str | None = None
    domain: str | None = None
    password_len: int | None = None  # Basic only; the password itself is never kept
    params: dict[str, str] = field(default_factory=dict)  # Digest parameters (response redacted)
    source: str = "authorization"  # authorization | proxy-authorization | query | form


@dataclass(frozen=True, slots=True)
class Event(_Record):
    """One HTTP or SIP exchange (request + its response, if seen) that carries authentication
    material."""

    event_id: int
    ts: float  # capture time of the packet holding the request's first byte (epoch seconds)
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    conn_id: str
    # Community ID v1 of the connection (Zeek, Suricata, Arkime print it); keyword-only so it can
    # sit beside conn_id with a default
    community_id: str | None = field(default=None, kw_only=True)
    # Frame number (as Wireshark numbers it) of the packet holding the request's first byte
    # (the response's when only it was seen); None for an archive (SAZ, HAR), which has none
    frame: int | None = field(default=None, kw_only=True)
    protocol: str  # http/1.0, http/1.1, http/2, sip
    method: str
    host: str | None
    uri: str  # secrets in the query string redacted
    status: int | None  # response status, None when no response was seen
    stream_id: int | None = None  # HTTP/2 stream the exchange was on; None for HTTP/1.x
    response_ts: float | None = None
    scheme: str = "none"  # credential scheme the request sent (see SCHEMES)
    scheme_name: str | None = None  # the scheme word as sent, e.g. "Turbo" for scheme "other"
    # authorization | proxy-authorization | query | form; connection: no credential sent, the
    # connection's earlier NTLM / Negotiate logon authenticated it (auth.connection_auth)
    auth_header: str | None = None
    mechanism: str | None = None
    user: str | None = None  # secret-shaped text masked (analyzer.redaction)
    domain: str | None = None
    # ``user`` / ``domain`` as sent when they were masked; dropped by writers unless revealed
    raw_user: str | None = _secret()
    raw_domain: str | None = _secret()
    workstation: str | None = None
    ntlm_response: str | None = None  # NTLM type 3: NTLMv2, NTLMv1, NTLMv1-ESS, anonymous
    ntlm_type: int | None = None  # NTLM message type the credential carried (1 or 3)
    spn: str | None = None  # Kerberos: the ticket's service principal name
    password_len: int | None = None
    # Basic: the password itself, kept for --reveal-secrets only (dropped by writers otherwise)
    password: str | None = field(default=None, repr=False, kw_only=True, metadata={"secret": True})
    cred_fp: str | None = None
    cred_len: int | None = None
    # The other credentials the request presented beside the one described (``<scheme>
    # <cred_fp>``): a request presenting several is ambiguous, see auth.extract._credential
    also_presented: tuple[str, ...] = ()
    challenges: tuple[Challenge, ...] = ()
    ms_diagnostics: str | None = None  # raw x-ms-diagnostics response header
    user_agent: str | None = None
    reasons: tuple[str, ...] = ()  # why this exchange is an event: credential, challenge, ...
    transport: str = "tcp"  # tcp or udp (cleartext on the wire), or tls (decrypted by keys or
    # the recorder of a SAZ / HAR)
    source: str = "pcap"  # the input kind the exchange was read from (see SOURCES)
    # OAuth token endpoint traffic (request form, then JSON response)
    grant_type: str | None = None
    client_id: str | None = None
    resource: str | None = None  # resource, or scope when no resource was sent
    assertion_fp: str | None = None  # assertion / client_assertion JWT fingerprint
    token_type: str | None = None
    expires_in: str | None = None
    access_token_fp: str | None = None
    refresh_token_fp: str | None = None
    id_token_fp: str | None = None
    oauth_error: str | None = None
    response_content_type: str | None = None
    # x-ms-diagnostics, parsed (Exchange / Skype for Business / Entra error reporting)
    diag_code: int | None = None
    diag_category: str | None = None
    diag_reason: str | None = None
    diag_source: str | None = None
    # The event's token, decoded: the bearer credential, else the issued access token, else
    # the assertion of a token request.
    token_fp: str | None = None
    token_format: str | None = None  # jwt, jwt-unsigned, jwe, cwt, opaque, empty, malformed
    token_alg: str | None = None
    token_iss: str | None = None
    token_iss_app: str | None = None  # product name of the issuer principal
    token_aud: str | None = None
    token_aud_app: str | None = None
    token_aud_host: str | None = None
    token_realm: str | None = None
    token_nameid: str | None = None
    token_subject: str | None = None  # upn, smtp, sip or sub: who the token speaks for
    token_nbf: float | None = None
    token_exp: float | None = None
    token_actor_iss: str | None = None
    token_actor_fp: str | None = None
    token_signature: str | None = (
        None  # verified, bad-signature, unknown-key, untrusted-key, unsigned, not-checked
    )
    token_key_source: str | None = None  # where the verifying key came from
    token_flags: tuple[str, ...] = ()  # ids of failed token checks
    # Filled by handshake analysis
    handshake_id: int | None = None
    auth_class: str | None = None  # oauth, basic, ntlm, kerberos, negotiate-ntlm, digest, ...
    outcome: str | None = None  # of this exchange: accepted, rejected, challenged, incomplete
    # Secret material for later stages; dropped by writers unless revealed.
    credential: str | None = _secret()
    assertion: str | None = _secret()
    access_token: str | None = _secret()
    refresh_token: str | None = _secret()
    id_token: str | None = _secret()
    # Bearer tokens the request presented that the event does not describe as its credential
    # (beside another credential: see ``also_presented``), for the token table
    other_tokens: tuple[str, ...] = field(default=(), repr=False, metadata={"secret": True})
    # The body of a metadata / JWKS document, for signature checks; never written.
    document: str | None = field(default=None, repr=False, metadata={"internal": True})
    # Capture time of the latest packet that carried the request head before its answer - the
    # head's last segment, or a retransmitted copy of any of its bytes - when later than ``ts``:
    # the server read the request at some time in between, so expiry is judged here (never
    # written: ``token_flags`` shows its effect, the expiry check's text says the time)
    request_last_ts: float | None = field(default=None, repr=False, metadata={"internal": True})
    # SIP only (protocol "sip"): the dialog or registration, and the security association
    call_id: str | None = None
    sip_from: str | None = None  # URI of the From header
    sip_to: str | None = None  # URI of the To header
    cseq: str | None = None  # "<number> <method>", as the CSeq header reads
    sip_opaque: str | None = None  # security association (MS-SIPAE opaque) of the credential
    sip_cnum: int | None = None  # the client's number of a message signed in that association


@dataclass(frozen=True, slots=True)
class TokenRecord(_Record):
    """One distinct token seen in the captures (bearer credential, actor, issued or assertion)."""

    fingerprint: str
    role: str  # bearer, actor, access-token, id-token, refresh-token, assertion
    format: str
    alg: str | None = None
    typ: str | None = None
    x5t: str | None = None
    kid: str | None = None
    iss: str | None = None
    iss_app: str | None = None
    aud: str | None = None
    aud_app: str | None = None
    aud_host: str | None = None
    realm: str | None = None
    nameid: str | None = None
    subject: str | None = None
    appid: str | None = None
    nbf: float | None = None
    exp: float | None = None
    iat: float | None = None
    lifetime: float | None = None  # exp - (nbf or iat), seconds
    actor_fp: str | None = None
    outer_fps: tuple[str, ...] = ()  # for an actor: the outer tokens that carried it
    signature: str | None = None
    signature_detail: str | None = None
    key_source: str | None = None
    flags: tuple[str, ...] = ()
    checks: tuple[dict[str, Any], ...] = ()  # every check: {"id", "ok", "message"}
    problems: tuple[str, ...] = ()
    header: dict[str, Any] | None = None
    claims: dict[str, Any] | None = None  # decoded claims, secret-looking values fingerprinted
    first_seen: float | None = None
    last_seen: float | None = None
    uses: int = 0  # requests that presented it (for issued tokens and assertions: 0 or more)
    clients: tuple[str, ...] = ()
    servers: tuple[str, ...] = ()
    text: str | None = _secret()


#: Auth classes a handshake can have, and the outcomes.
AUTH_CLASSES = (
    "oauth",
    "basic",
    "ntlm",
    "kerberos",
    "negotiate-ntlm",
    "digest",
    "tls-dsk",
    "anonymous",
    "other",
)
OUTCOMES = ("accepted", "rejected", "challenged", "incomplete")


@dataclass(frozen=True, slots=True)
class Handshake(_Record):
    """Challenge -> credential(s) -> outcome on one connection, with its evidence."""

    handshake_id: int
    auth_class: str  # one of AUTH_CLASSES
    outcome: str  # one of OUTCOMES
    start_ts: float
    end_ts: float
    conn_id: str
    client_ip: str
    server_ip: str
    server_port: int
    host: str | None
    event_ids: tuple[int, ...]
    exchanges: int  # authenticated exchanges (events that sent a credential)
    offered: tuple[str, ...] = ()  # schemes the server offered in the handshake's challenges
    probe: bool = False  # began with the Microsoft realm-discovery probe (empty Bearer)
    user: str | None = None
    domain: str | None = None
    token_fps: tuple[str, ...] = ()
    final_status: int | None = None
    diag_code: int | None = None
    diag_category: str | None = None
    reason: str = ""  # one line: why this outcome


@dataclass(frozen=True, slots=True)
class PairVerdict(_Record):
    """What one client used to authenticate to one server (and Host), and how that went."""

    client_ip: str
    server_ip: str
    server_port: int
    host: str | None
    verdict: (
        str  # oauth-only, oauth-with-fallback, oauth-rejected, no-oauth, mixed, unauthenticated
    )
    summary: str  # one sentence for a person
    exchanges: int  # authenticated exchanges (an NTLM / Negotiate handshake's legs count once)
    classes: dict[str, int] = field(default_factory=dict)  # exchanges per auth class
    handshakes: int = 0
    handshake_classes: dict[str, int] = field(default_factory=dict)  # handshakes per auth class
    oauth_attempted: int = 0  # OAuth handshakes (probe-only ones included)
    oauth_accepted: int = 0
    oauth_rejected: int = 0
    fallbacks: tuple[dict[str, Any], ...] = ()  # OAuth rejected, then another class accepted
    issuers: tuple[str, ...] = ()  # token issuers seen (product@realm)
    signatures: dict[str, int] = field(default_factory=dict)  # token_signature -> exchanges
    first_ts: float | None = None
    last_ts: float | None = None
    protocol: str = "http"  # http, sip (or http+sip when one port and Host carried both)


@dataclass(frozen=True, slots=True)
class TlsConnection(_Record):
    """A TCP connection whose bytes were TLS, and what its cleartext handshake shows.

    ``inspected`` is true when its plaintext was read (decrypted with ``--tls-keylog``); a
    connection that was not inspected is a blind spot a verdict must count, not ignore.
    """

    conn_id: str
    ts: float  # capture time of the connection's first packet
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    inspected: bool = False
    sni: str | None = None  # server_name of the ClientHello
    version: str | None = None  # negotiated: "TLS 1.0" .. "TLS 1.3" (ServerHello)
    client_version: str | None = None  # the highest version the ClientHello offered
    # the protocol the server chose (TLS <= 1.2; 1.3 encrypts it), else the ones the client offered
    alpn: tuple[str, ...] = ()
    cert_subject: str | None = None  # server certificate (TLS <= 1.2 only: 1.3 encrypts it)
    cert_issuer: str | None = None
    cert_not_before: float | None = None
    cert_not_after: float | None = None
    cert_sha1: str | None = None  # hex SHA-1 thumbprint, as Windows and Get-AuthConfig show it
    problem: str | None = None  # why the handshake could not be read whole (malformed, cut, ...)


@dataclass(frozen=True, slots=True)
class CredentialRecord(_Record):
    """One distinct credential (by ``cred_fp``) and where it was used, like NetworkMiner's
    Credentials tab (``analyze --credentials``)."""

    cred_fp: str
    scheme: str  # one of SCHEMES
    identity: str | None  # DOMAIN\\user, user, or the token's subject
    issuer: str | None  # a token's issuer (product name when known)
    first_seen: float
    last_seen: float
    uses: int  # requests that presented it
    clients: tuple[str, ...] = ()
    servers: tuple[str, ...] = ()  # Host, else server address:port
    outcomes: dict[str, int] = field(default_factory=dict)  # accepted, rejected, ... -> requests
    password: str | None = _secret()  # Basic: the password (--reveal-secrets only)


#: Kinds of traffic a verdict cannot vouch for (``NotInspected.kind``).
NOT_INSPECTED_KINDS = (
    "tls",
    "request-lost",
    "http2",
    "connect-tunnel",
    "sanitized",
    "not-http",
    "connection-auth-unseen",
    "ipsec-esp",
    "answer-in-doubt",
    "quic",
    "unread-capture",
    "untimed-capture",
    "ip-fragments",
    "dropped-packets",
    "unread-tunnel",
)


@dataclass(frozen=True, slots=True)
class NotInspected(_Record):
    """Traffic the analysis saw but could not read, so no verdict can vouch for it.

    One record per connection: a TLS connection that was not decrypted, a connection on which
    request bytes were lost (a TCP hole, a head cut by the end of the capture) so a request's
    credential is unknown, HTTP/2 streams whose headers could not be decoded (the capture
    began mid-connection, an HPACK error, frames that could not be followed), a CONNECT
    tunnel a proxy trace (SAZ) did not decrypt, HTTP archive (HAR) entries whose
    credentials the export removed, or requests answered without a credential on a connection
    begun before the capture (whose logon it did not see); QUIC (HTTP/3) from a client to a
    server's UDP 443 (client port 0: any); or IPsec ESP between two addresses, or VXLAN or
    GENEVE on a UDP port not read as one carrying traffic between two addresses, with ports 0
    (any connection between them, either address the client); or the rest of a capture file
    after a record that cannot be one (or cut short, or a live capture given up on or ended by
    a failure), packets of it that carry no time, or packets the capture dropped (no addresses
    nor ports: any traffic). A verdict whose scope covers one errs towards INCONCLUSIVE.
    """

    kind: str  # one of NOT_INSPECTED_KINDS
    conn_id: str
    ts: float  # first packet of the connection
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    host: str | None = None  # the Host its requests named, or the TLS server name (SNI)
    # stretches of request bytes lost (request-lost); HTTP/2 streams not decoded (http2);
    # entries sanitized; packets (ipsec-esp); 1 for a TLS connection or a tunnel
    count: int = 1
    detail: str = ""
    protocol: str | None = None  # what the connection spoke when known (sip); None: any
    # the request paths it is known to have gone to (connection-auth-unseen); empty: any path
    paths: tuple[str, ...] = ()


SEVERITIES = ("high", "medium", "low", "info")


@dataclass(frozen=True, slots=True)
class Finding(_Record):
    """Something an incident responder must see on one client -> server pair, with every row
    that shows it."""

    rule_id: str
    severity: str  # one of SEVERITIES
    title: str
    detail: str  # in one line: the instance, or how many and the first of them
    explanation: str  # why it matters and what to do
    first_ts: float | None = None
    last_ts: float | None = None
    count: int = 1  # instances on this client -> server pair (e.g. distinct tokens)
    examples: tuple[str, ...] = ()  # the first instances' details
    event_ids: tuple[int, ...] = ()
    handshake_ids: tuple[int, ...] = ()
    token_fps: tuple[str, ...] = ()


def request_url(event: Event) -> str:
    """The URL an event's request went to (scheme from the transport, host from Host)."""
    scheme = "https" if event.transport == "tls" else "http"
    return f"{scheme}://{event.host or event.server_ip}{event.uri}"


def public_fields(record_type: type, reveal_secrets: bool = False) -> list[str]:
    """Names of the fields a writer may emit for ``record_type``."""
    return list(_public(record_type, reveal_secrets))


#: (record type, reveal) -> the names of its public fields
_PUBLIC: dict[tuple[type, bool], tuple[str, ...]] = {}


def _public(record_type: type, reveal_secrets: bool) -> tuple[str, ...]:
    """``public_fields`` worked out once per record type (writers call it for every row)."""
    key = (record_type, bool(reveal_secrets))
    found = _PUBLIC.get(key)
    if found is None:
        found = _PUBLIC[key] = tuple(
            f.name
            for f in dataclasses.fields(record_type)
            if not f.metadata.get("internal") and (reveal_secrets or not f.metadata.get("secret"))
        )
    return found


def to_dict(record: Any, reveal_secrets: bool = False) -> dict[str, Any]:
    """A record as a JSON-ready dict, secrets dropped unless ``reveal_secrets``.

    Tuple fields become lists, each item replaced by its ``to_dict()`` when it has one. The dict
    is built by a function compiled once per record type (``_make_dict_maker``).
    """
    key = (type(record), bool(reveal_secrets))
    maker = _DICT_MAKERS.get(key)
    if maker is None:
        maker = _DICT_MAKERS[key] = _make_dict_maker(*key)
    return maker(record)


# ---------------------------------------------------------------- compiled to_dict

#: (record type, reveal) -> compiled ``to_dict`` for that type
_DICT_MAKERS: dict[tuple[type, bool], Callable[[Any], dict[str, Any]]] = {}


def listed(values: tuple) -> list[Any]:
    """A tuple field as ``to_dict`` writes it."""
    return [v.to_dict() if hasattr(v, "to_dict") else v for v in values]


def field_kinds(record_type: type) -> dict[str, list[str]]:
    """Field name -> the types its annotation names, in order ("str", "None", "tuple", ...).

    Only a hint for which fast path to try first: every value is checked at run time.
    """
    out = {}
    for f in dataclasses.fields(record_type):
        hint = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        kinds = [
            "tuple[str]" if alt.replace(" ", "").startswith("tuple[str,") else alt.split("[", 1)[0]
            for alt in (alt.strip() for alt in hint.split("|"))
        ]
        if f.default is None and "None" not in kinds:
            kinds.append("None")
        out[f.name] = kinds
    return out


def _make_dict_maker(record_type: type, reveal_secrets: bool) -> Callable[[Any], dict[str, Any]]:
    """Compile ``to_dict`` for one record type: one dict display, tuples listed."""
    names = _public(record_type, reveal_secrets)
    kinds = field_kinds(record_type)
    lines = ["def to_dict(r, listed=listed):"]
    items = []
    for i, name in enumerate(names):
        v = f"v{i}"
        lines.append(f"    {v} = r.{name}")
        if kinds[name][0].startswith("tuple"):
            items.append(f"        {name!r}: listed({v}) if isinstance({v}, tuple) else {v},")
            continue
        plain = [f"{v} is None"] + [
            f"type({v}) is {kind}" for kind in kinds[name] if kind in ("str", "int", "float")
        ]
        plain.append(f"not isinstance({v}, tuple)")
        items.append(f"        {name!r}: {v} if {' or '.join(plain)} else listed({v}),")
    lines += ["    return {", *items, "    }"]
    scope: dict[str, Any] = {"listed": listed}
    exec("\n".join(lines), scope)  # source built above from field names only
    return scope["to_dict"]


#: record type -> function(record, changes) making the changed copy (see ``evolve``)
_COPIERS: dict[type, Callable[[Any, dict[str, Any]], Any]] = {}


def evolve(record: _R, **changes: Any) -> _R:
    """``dataclasses.replace(record, **changes)``, about six times faster for the frozen,
    slotted records of this module (an ``Event`` has 86 fields and the pipeline copies every
    event two or three times; a parallel run's merge renumbers them all)."""
    cls = type(record)
    copier = _COPIERS.get(cls)
    if copier is None:
        copier = _COPIERS[cls] = _make_copier(cls)
    return copier(record, changes)


def _make_copier(cls: type) -> Callable[[Any, dict[str, Any]], Any]:
    """Compile a copier for ``cls`` (the way ``dataclasses`` compiles ``__init__``): the copy is
    filled as a ``_writable_twin`` of ``cls``, then made a ``cls``. Classes that are not plain
    slotted dataclasses keep ``dataclasses.replace``, which runs their ``__init__``."""
    twin = _writable_twin(cls)
    if twin is None:
        return lambda record, changes: dataclasses.replace(record, **changes)
    fields = dataclasses.fields(cls)
    names = frozenset(f.name for f in fields)
    scope: dict[str, Any] = {"new": object.__new__, "cls": cls, "twin": twin, "names": names}
    lines = [
        "def copier(record, changes):",
        "    copy = new(twin)",
        *(f"    copy.{f.name} = record.{f.name}" for f in fields),
        "    if changes:",
        "        if not changes.keys() <= names:",
        "            unknown = sorted(changes.keys() - names)",
        "            raise TypeError(f'{cls.__name__}: no fields {unknown}')",
        "        for name, value in changes.items():",
        "            setattr(copy, name, value)",
        "    copy.__class__ = cls",
        "    return copy",
    ]
    exec("\n".join(lines), scope)  # source built above from field names only
    return scope["copier"]


@functools.cache
def _writable_twin(cls: type) -> type | None:
    """A writable twin of the frozen, slotted dataclass ``cls``: a subclass with no slots of its
    own and object's plain ``__setattr__``. Its slots are filled by ordinary attribute stores,
    which the interpreter runs at full speed (a frozen class's go through a Python-level
    ``__setattr__``, or a call per slot to its descriptor); same slots, same layout, so the
    filled instance then becomes a ``cls`` (``__class__`` assignment), frozen like any other.
    None for a class that is not plain (an ``init=False`` field, ``__post_init__``, no
    ``__slots__``): it must go through ``__init__``."""
    slots = cls.__dict__.get("__slots__", ())
    plain = (
        hasattr(cls, "__slots__")
        and not hasattr(cls, "__post_init__")
        and all(f.init and f.name in slots for f in dataclasses.fields(cls))
    )
    if not plain:
        return None
    writable = {
        "__slots__": (),
        "__setattr__": object.__setattr__,
        "__delattr__": object.__delattr__,
    }
    return type(f"_Writable{cls.__name__}", (cls,), writable)


def _rebuild(cls: type, values: tuple) -> Any:
    """The record of type ``cls`` with these field values (how a ``_Record`` is unpickled)."""
    return _builder(cls)(values)


@functools.cache
def _field_values(cls: type) -> Callable[[Any], tuple]:
    """The function giving a ``cls`` record's field values, in field order."""
    names = [f.name for f in dataclasses.fields(cls)]
    if len(names) == 1:  # attrgetter of one name gives the value, not a tuple
        return lambda record: (getattr(record, names[0]),)
    return operator.attrgetter(*names)


@functools.cache
def _builder(cls: type) -> Callable[[tuple], Any]:
    """Compile the function making a ``cls`` record of its field values in order."""
    names = [f.name for f in dataclasses.fields(cls)]
    twin = _writable_twin(cls)
    if twin is None:
        return lambda values: cls(*values)
    scope: dict[str, Any] = {"new": object.__new__, "cls": cls, "twin": twin}
    lines = [
        "def build(values):",
        f"    ({', '.join(names)},) = values",
        "    record = new(twin)",
        *(f"    record.{name} = {name}" for name in names),
        "    record.__class__ = cls",
        "    return record",
    ]
    exec("\n".join(lines), scope)  # source built above from field names only
    return scope["build"]


@dataclass(slots=True)
class CaptureStats:
    """Counters and warnings gathered while reading one capture (mutable: sources fill it in)."""

    path: str = ""
    # the input kind: pcap, pcapng, pcap.gz, live (...), saz, har, tshark (<format>)
    file_format: str = ""
    packets: int = 0
    exchanges: int = 0  # HTTP exchanges read from an archive (SAZ sessions, HAR entries)
    bytes: int = 0
    link_types: dict[int, int] = field(default_factory=dict)
    ipv4: int = 0
    ipv6: int = 0
    tcp: int = 0
    udp: int = 0
    non_ip: int = 0
    ip_fragments: int = 0  # IP fragments seen (analyzer.sources.ipfrag puts them together)
    ip_reassembled: int = 0  # fragmented datagrams put back together
    ip_datagrams_lost: int = 0  # fragmented datagrams given up on (warned: why)
    truncated_packets: int = 0  # snaplen-cut (caplen < original length)
    undecodable: int = 0  # link or IP headers that could not be parsed
    tcp_connections: int = 0
    http_connections: int = 0
    tls_connections: int = 0  # connections whose bytes start like TLS: unreadable without keys
    gaps: int = 0  # holes in TCP streams given up on
    evicted: int = 0  # connections dropped for idleness or the buffer cap
    # Packets the kernel or capture engine dropped (missed): live's counts, or a pcapng's
    # interface statistics (isb_ifdrop, isb_osdrop); a blind spot of kind "dropped-packets" for
    # every scope.
    dropped: int = 0
    first_ts: float | None = None  # time of the first TCP packet (offsets like --since +30s)
    # Tunnels taken apart (analyzer.sources.linklayer): packets per encapsulation read (once per
    # layer: "VXLAN", "GRE", "ERSPAN II", "MPLS", ...), the ids seen in each (VNI, GRE key,
    # ERSPAN session, TEID, bottom MPLS label, PPPoE session; the first 64 distinct), and packets
    # of encapsulations not read, by name ("GRE protocol 0x88b5", "GTP-C", "L2TP", ...).
    encapsulations: dict[str, int] = field(default_factory=dict)
    tunnel_ids: dict[str, list[int]] = field(default_factory=dict)
    unread_encapsulations: dict[str, int] = field(default_factory=dict)
    # IPsec ESP, which cannot be read: per address pair (the two packed addresses, lower first;
    # (b"", b"") for the pairs past the first 1,024) the time of its first packet and its
    # packets. Each becomes a blind spot, a NotInspected record of kind "ipsec-esp".
    esp_pairs: dict[tuple[bytes, bytes], list[float]] = field(default_factory=dict)
    # Fragmented IP datagrams given up on (analyzer.sources.ipfrag), per address pair as in
    # esp_pairs: the time of the first and how many. Each pair becomes a blind spot of kind
    # "ip-fragments": what those datagrams carried was not read.
    fragments_lost: dict[tuple[bytes, bytes], list[float]] = field(default_factory=dict)
    # Where reading stopped short of the file's end (the byte offset of a record that cannot
    # be one, or of one cut short by the end of the file before its headers; where a stream
    # was given up on, or where a live capture that failed ended) and why: the rest was never
    # read, a blind spot of kind "unread-capture" for every scope. None when the file was read
    # to its end; -1 for a file converted by Wireshark's tools that the converter gave up on
    # (where in the original is unknown: after the last packet it converted).
    unread_from: int | None = None
    unread_why: str = ""
    # Packets that carry no timestamp (pcapng simple packet blocks), dated by the packet before
    # them: when their requests were made - whether a token had expired, --since / --until - is
    # unknown, a blind spot of kind "untimed-capture" for every scope.
    untimed_packets: int = 0
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        if len(self.warnings) < 100:
            self.warnings.append(message)

    def unread_after(self, offset: int, why: str) -> None:
        """Nothing was read past ``offset`` (``unread_from``), for ``why``: the first such point
        stands (a record cut before a stream was given up on stays the one said)."""
        if self.unread_from is None:
            self.unread_from, self.unread_why = offset, why

    def check_time(self, ts: float) -> None:
        """Warn once about a packet time off by years (a wrong capture clock, a pcapng
        ``if_tsoffset``): outputs show it as captured, or as ``<invalid time ...>``. Called with
        each connection's first packet time, it also keeps the earliest (``first_ts``)."""
        if self.first_ts is None or ts < self.first_ts:
            self.first_ts = ts
        if PLAUSIBLE_TIMES[0] <= ts <= PLAUSIBLE_TIMES[1]:
            return
        from analyzer.report.times import format_utc  # only when warning (model imports nothing)

        prefix = f"{self.path}: packet times off by years"
        if not any(w.startswith(prefix) for w in self.warnings):
            self.warn(f"{prefix} (first at {format_utc(ts, 0)}): check the capture clock")


#: Packet times believed without a warning: 1990-01-01 to 2100-01-01 UTC (epoch seconds).
PLAUSIBLE_TIMES = (631_152_000.0, 4_102_444_800.0)
