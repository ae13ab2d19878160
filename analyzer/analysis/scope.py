"""Which traffic a question is about: the filters ``--client``, ``--server``, ``--host``,
``--path``, ``--user``, ``--scheme``, ``--since`` and ``--until``, parsed once and meaning the
same in every command (``verify`` narrows its scope with them exactly as a policy rule does, and
refuses ``--scheme``).

Times are ISO 8601, epoch seconds, or offsets into the capture (``+30s``, ``+5m``, ``+1h30m``):
an offset counts from the capture's first packet and is fixed once that is known
(``Scope.anchored``).

Servers are accepted the way the tool prints them: ``host``, ``host:port``, ``ip``, ``ip:port``,
``[v6]:port``, a CIDR, or a URL (reduced to its host and explicit port). Every option takes a
comma-separated list (a policy file: a TOML list; the command line's options, given again, add
their items); a value matches when any item does. An item that could match nothing - a host or
path pattern (``*.contoso.com``, ``/EWS/*``) - is refused: in a list it would silently take its
share out of the scope.

A server named by host matches its Host header / TLS server name, and also the other ways a
client reaches that server: its short (NetBIOS) name or an IP literal on a connection to an
address that served the name in the capture (``ServerSpec.matches``). Another name on the same
address stays out: another virtual host. A server given as an address or network matches by the
connection's address, or by an IP literal in it as the Host / server name. A server's port
matches the connection's port or the port the request named for its server (``target_port``):
through a proxy, the port of an absolute-form target (its scheme's default, 80 or 443, when it
gives none) or of a CONNECT's authority; one it names in a way not read rules nothing out.
``--path`` matches
the request path as sent and as IIS resolves it (``normalized_path``: escapes decoded,
backslashes as slashes, repeated slashes and dot segments removed), and either with segment
``;parameters`` or trailing dots and spaces dropped, case-insensitively; a target that is no
path (``*``, an authority) matches any; it narrows HTTP only, as a SIP request has no path.
``--host`` compares the name alone (an IP literal as its address); a SIP request's host is its
Request-URI's domain, which no TLS server name gives, so traffic not read at an address that
requests for a named SIP domain reached counts as that domain's (``Scope.covers``).

Traffic that could not be read (``NotInspected``) has no path or user: it is in a scope unless
its endpoints or time rule it out, so a blind spot is never silently left out of a verdict. In
the same way an exchange whose client is unknown (``client_ip`` empty: an HTTP archive does not
record the browser's address) is not ruled out by a client filter, nor an exchange whose user
cannot be read (Kerberos, an empty or masked user, a token without a subject) by ``--user``.
``--user`` matches an account however it is spelt (``user_may_be``): account names compared
without case, domains only when both are NetBIOS names, both DNS names or both address
suffixes - a NetBIOS name cannot be mapped to a DNS name from a capture, nor a UPN suffix to
the account's domain, and keeping another account's exchange costs a FAIL that names it, while
leaving the account's own out could turn a verdict into a false PASS.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from functools import lru_cache
from urllib.parse import unquote, urlsplit

from analyzer.analysis.handshakes import is_continuation, presented
from analyzer.model import AUTH_CLASSES, SCHEMES, Event, NotInspected
from analyzer.protocols.http1 import ABSOLUTE_FORM

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_HOST_NAME = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})$")


class ScopeError(ValueError):
    """A filter value that cannot be used (one-line message)."""


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """One ``--server`` item: an address or network, or a host name, and maybe a port."""

    text: str
    network: Network | None = None
    host: str | None = None  # lower case, no port
    port: int | None = None

    def matches(
        self,
        ip: str,
        port: int | None,
        host: str | None,
        host_ips: frozenset[str],
        target_port: int | None = None,
    ) -> bool:
        """Does a connection to ``ip``:``port`` with Host / SNI ``host`` match? (``port`` None:
        unknown, any port.) ``target_port`` is the port the request itself named for its
        server (``target_port``): through a proxy the connection's port is the proxy's, and
        a spec's port matches either.

        ``host_ips`` are the addresses that served this spec's host name in the capture. A
        connection to one of them is the named server whatever host it names (none, its short
        name, an IP literal in any notation, another name): Exchange's and Skype for
        Business's sites are bound to every name on their address (IIS's default binding), so
        ``Host: ex01.contoso.com`` reaches the same EWS as ``mail.contoso.com``; ``--host``
        scopes by the name a request gave, for a rule about one virtual host. An IP literal
        that is itself one of those addresses names the server wherever the connection went
        (a proxy, a NAT).

        An address or network spec matches by the connection's address, and by an IP literal
        in the network as Host / server name (a request to it through a proxy).
        """
        if self.port is not None and port is not None and self.port not in (port, target_port):
            return False
        name = bare_host(host) if host is not None else ""
        literal = ip_literal(name)
        if self.network is not None:
            # an unknown address ("": an archive entry that kept none) is not ruled out, as an
            # unknown client is not: leaving it out could turn a verdict into a false PASS
            if not ip or _in_network(ip, self.network):
                return True
            if literal is None or literal.version != self.network.version:
                return False
            return literal in self.network
        if name == self.host:
            return True
        if literal is not None and served(literal, host_ips):
            return True
        return served(ip, host_ips)

    def __str__(self) -> str:
        return self.text


def parse_server(value: str) -> ServerSpec:
    """A ``ServerSpec`` from one item as the user typed it; raises ``ScopeError``."""
    text = value.strip()
    if not text:
        raise ScopeError("empty server")
    if "://" in text:
        parts = urlsplit(text)
        try:
            port = parts.port
        except ValueError as exc:
            raise ScopeError(f"server {value!r}: bad port") from exc
        if not parts.hostname:
            raise ScopeError(f"server {value!r}: no host in the URL")
        inner = parse_server(parts.hostname)
        return ServerSpec(text, inner.network, inner.host, port)
    if text.startswith("["):
        address, _, rest = text[1:].partition("]")
        port = _port(rest[1:], value) if rest.startswith(":") else None
        if rest and port is None:
            raise ScopeError(f"server {value!r}: expected [address]:port")
        return ServerSpec(text, _network(address, value), None, port)
    try:
        return ServerSpec(text, ipaddress.ip_network(text, strict=False))
    except ValueError:
        pass
    name, port = text, None
    if text.count(":") == 1:
        name, _, port_text = text.partition(":")
        port = _port(port_text, value)
    try:
        return ServerSpec(text, ipaddress.ip_network(name, strict=False), None, port)
    except ValueError:
        pass
    if not _HOST_NAME.match(name):
        raise ScopeError(
            f"server {value!r}: not a host name, host:port, address, [v6]:port, network or URL"
        )
    return ServerSpec(text, None, name.lower().rstrip("."), port)


@dataclass(frozen=True, slots=True)
class Scope:
    """The filters of one question; empty means all traffic."""

    clients: tuple[Network, ...] = ()
    servers: tuple[ServerSpec, ...] = ()
    hosts: tuple[str, ...] = ()  # Host header or TLS server name, lower case
    paths: tuple[str, ...] = ()  # URI path prefixes, compared case-insensitively
    users: tuple[str, ...] = ()  # user or token subject, lower case
    schemes: tuple[str, ...] = ()  # credential schemes or auth classes, lower case
    since: float | None = None
    until: float | None = None
    since_offset: float | None = None  # seconds after the capture's first packet
    until_offset: float | None = None

    @property
    def relative(self) -> bool:
        """Does a time bound wait for the capture's start (``anchored``)?"""
        return self.since_offset is not None or self.until_offset is not None

    def anchored(self, start: float | None) -> Scope:
        """This scope with offsets turned into times after ``start`` (the first packet); with
        no start (nothing was read) an offset bound matches nothing."""
        if not self.relative:
            return self
        since, until = self.since, self.until
        if self.since_offset is not None:
            since = start + self.since_offset if start is not None else math.inf
        if self.until_offset is not None:
            until = start + self.until_offset if start is not None else -math.inf
        return replace(self, since=since, until=until, since_offset=None, until_offset=None)

    def matches(self, e: Event, host_ips: dict[str, frozenset[str]] | None = None) -> bool:
        """Is exchange ``e`` in scope? (``host_ips``: see ``addresses_by_host``)."""
        if not self._endpoints(e.client_ip, e.server_ip, e.server_port, e.host, host_ips, e.uri):
            return False
        if self.since is not None and e.ts < self.since:
            return False
        if self.until is not None and e.ts > self.until:
            return False
        if (
            self.paths
            and e.protocol != "sip"
            and not any(path_matches(e.uri, p) for p in self.paths)
        ):
            return False  # a SIP request has no path (its target is a SIP URI): not narrowed
        if self.users and not user_may_be(e, self.users):
            return False
        return not self.schemes or e.scheme in self.schemes or (e.auth_class in self.schemes)

    def covers(self, n: NotInspected, host_ips: dict[str, frozenset[str]] | None = None) -> bool:
        """Could traffic ``n`` that was not read be in scope? Only what is known rules it out:
        its endpoints, its start, and its paths when it names them."""
        if not self._ends(n, host_ips):
            return False
        if (
            self.paths
            and n.paths
            and not any(path_matches(uri, p) for uri in n.paths for p in self.paths)
        ):
            return False
        return self.until is None or n.ts <= self.until

    def _ends(self, n: NotInspected, host_ips: dict[str, frozenset[str]] | None) -> bool:
        """Could ``n``'s endpoints be in scope? A record without ports (IPsec ESP between two
        addresses) names no client nor server: either address may be either, on any port; one
        without addresses either (ESP past the decoder's cap) may be any traffic."""
        if n.client_port or n.server_port:
            return self._endpoints(
                n.client_ip, n.server_ip, n.server_port, n.host, host_ips, blind=True
            )
        if not n.client_ip and not n.server_ip:
            return True
        ends = ((n.client_ip, n.server_ip), (n.server_ip, n.client_ip))
        return any(self._endpoints(a, b, None, n.host, host_ips, blind=True) for a, b in ends)

    def _endpoints(
        self,
        client_ip: str,
        server_ip: str,
        server_port: int | None,
        host: str | None,
        host_ips: dict[str, frozenset[str]] | None,
        uri: str | None = None,
        blind: bool = False,
    ) -> bool:
        # An unknown client ("": a HAR does not record the browser's address) is not ruled out.
        if self.clients and client_ip and not any(_in_network(client_ip, n) for n in self.clients):
            return False
        if self.servers:
            ips = host_ips or {}
            named = target_port(uri, host)
            if named == _ANY_PORT:
                server_port = None  # the request named its server's port in a way not read
            if not any(
                s.matches(server_ip, server_port, host, ips.get(s.host or "", frozenset()), named)
                for s in self.servers
            ):
                return False
        if not self.hosts:
            return True
        ips = host_ips or {}
        if host is None:
            # no Host (a lost request head, HTTP/1.0): at an address that served a named host,
            # it may be that host; leaving it out could turn a verdict into a false PASS
            return any(server_ip in ips.get(h, ()) for h in self.hosts)
        if host_key(host) in self.hosts:
            return True
        # Traffic not read, named otherwise (a TLS server name), at an address where requests
        # for a named SIP domain went: it may carry more of them. A SIP request names a domain
        # (sip:contoso.com), which no TLS server name gives (the pool's, fe01.contoso.com).
        return blind and any(
            served(server_ip, ips.get(_sip_key(h), frozenset())) for h in self.hosts
        )

    def describe(self) -> str:
        parts = []
        if self.clients:
            parts.append("from " + ", ".join(str(n) for n in self.clients))
        if self.servers:
            parts.append("to " + ", ".join(str(s) for s in self.servers))
        if self.hosts:
            parts.append("Host " + ", ".join(self.hosts))
        if self.paths:
            parts.append("path " + ", ".join(self.paths))
        if self.users:
            parts.append("user " + ", ".join(self.users))
        if self.schemes:
            parts.append("scheme " + ", ".join(self.schemes))
        if self.since is not None or self.until is not None or self.relative:
            low = _offset(self.since_offset) if self.since_offset is not None else _iso(self.since)
            high = _offset(self.until_offset) if self.until_offset is not None else _iso(self.until)
            parts.append(f"time {low} .. {high}")
        return "; ".join(parts) or "all traffic"


def make_scope(
    *,
    client: str | list[str] | None = None,
    server: str | list[str] | None = None,
    host: str | list[str] | None = None,
    path: str | list[str] | None = None,
    user: str | list[str] | None = None,
    scheme: str | list[str] | None = None,
    since: str | float | None = None,
    until: str | float | None = None,
) -> Scope:
    """A ``Scope`` from command-line or policy-file values; raises ``ScopeError``.

    ``scheme`` keeps the exchanges whose credential scheme (``bearer``, ``ntlm``, ...) or auth
    class (``oauth``, ``kerberos``, ...) is one of those given.
    """
    schemes = tuple(s.lower() for s in listed(scheme, "scheme"))
    unknown = [s for s in schemes if s not in SCHEMES and s not in AUTH_CLASSES]
    if unknown:
        raise ScopeError(
            f"scheme {unknown[0]!r}: not a scheme ({', '.join(SCHEMES)}) or auth class "
            f"({', '.join(AUTH_CLASSES)})"
        )
    start, start_offset = parse_bound(since, "since")
    end, end_offset = parse_bound(until, "until")
    for low, high in ((start, end), (start_offset, end_offset)):
        if low is not None and high is not None and low > high:
            raise ScopeError("since is after until")
    return Scope(
        clients=tuple(_network(c, c) for c in listed(client, "client")),
        servers=tuple(parse_server(s) for s in listed(server, "server")),
        hosts=tuple(_host(h) for h in listed(host, "host")),
        paths=tuple(_path(p) for p in listed(path, "path")),
        users=tuple(_user(u) for u in listed(user, "user")),
        schemes=schemes,
        since=start,
        until=end,
        since_offset=start_offset,
        until_offset=end_offset,
    )


def _host(value: str) -> str:
    """One ``--host`` item as compared (``host_key``); raises ``ScopeError`` for one that no
    Host header, TLS server name or SIP domain can be (a wildcard such as ``*.contoso.com``, a
    URL, a bad port): it would match nothing, and in a list silently take its share out of the
    scope."""
    text = value.strip()
    if text.startswith("["):
        inner, bracket, rest = text[1:].partition("]")
        ok = bool(bracket) and _address(inner) is not None and (not rest or _is_port(rest, ":"))
    elif text.count(":") > 1:
        ok = _address(text) is not None  # an IPv6 address without brackets, nor a port
    else:
        name, colon, port = text.partition(":")
        ok = bool(_HOST_NAME.match(name)) and (not colon or _is_port(port))
    if not ok:
        raise ScopeError(
            f"host {value!r}: not a host name, host:port or IP address (names match exactly: "
            "no wildcards)"
        )
    return host_key(text)


#: Characters of a pattern: a path prefix holding one never matches what a pattern would.
_PATTERN = "*?[]"


def _path(value: str) -> str:
    """One ``--path`` prefix, lower case; raises ``ScopeError`` for one that cannot match the
    paths it looks like it names: not rooted, or a pattern (``/EWS/*``, which in a list would
    silently take its share out of the scope; ``?`` starts the query, which no path holds)."""
    if not value.startswith("/"):
        raise ScopeError(f"path {value!r} must start with /")
    pattern = next((c for c in value if c in _PATTERN), None)
    if pattern is not None:
        raise ScopeError(
            f"path {value!r}: a prefix, not a pattern ({pattern!r}): /EWS/ covers everything "
            f"under /EWS/ (a literal {pattern} is written %{ord(pattern):02X})"
        )
    return value.lower()


def _user(value: str) -> str:
    """One ``--user`` item, lower case; raises ``ScopeError`` when it names no account, or is
    a pattern (``alice*``: no Windows account name holds ``*?[]``, so in a list it would
    silently take its share out of the scope)."""
    if not parse_account(value).name:
        raise ScopeError(f"user {value!r}: no account name (user, DOMAIN\\user or user@domain)")
    pattern = next((c for c in value if c in _PATTERN), None)
    if pattern is not None:
        raise ScopeError(f"user {value!r}: an account name, not a pattern ({pattern!r})")
    return value.lower()


_OFFSET = re.compile(r"^\+((?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+|\d+(?:\.\d+)?)$")
_OFFSET_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_bound(value: str | float | None, what: str) -> tuple[float | None, float | None]:
    """(epoch seconds, None) for a time, (None, seconds) for an offset into the capture such
    as ``+30s``, ``+5m``, ``+1h30m`` or ``+90`` (seconds); raises ``ScopeError``."""
    if isinstance(value, str) and value.strip().startswith("+"):
        text = value.strip()
        match = _OFFSET.match(text)
        if match is None:
            raise ScopeError(
                f"{what} {value!r}: an offset is + and a number with s, m, h or d (e.g. +30s, "
                "+5m, +1h30m)"
            )
        parts = _OFFSET_PART.findall(text) or [(match.group(1), "s")]
        seconds = sum(float(n) * _UNIT[unit] for n, unit in parts)
        if not seconds <= _LATEST:  # inf, or past any time a scope can hold
            raise ScopeError(f"{what} {value!r}: an offset past the year 9999")
        return None, seconds
    return parse_time(value, what), None


def addresses_by_host(events: Iterable[Event]) -> dict[str, frozenset[str]]:
    """Host name (``host_key``) -> the server addresses that answered for it; a SIP request's
    domain also under ``_sip_key`` (``Scope.covers``)."""
    found: dict[str, set[str]] = {}
    for e in events:
        _note_host(found, e)
    return {name: frozenset(ips) for name, ips in found.items()}


def _note_host(found: dict[str, set[str]], e: Event) -> bool:
    """Note that ``e``'s server answered for its host; True when that is new."""
    if not e.host:
        return False
    keys = [host_key(e.host)]
    if e.protocol == "sip":
        keys.append(_sip_key(keys[0]))
    new = False
    for key in keys:
        ips = found.setdefault(key, set())
        if e.server_ip not in ips:
            ips.add(e.server_ip)
            new = True
    return new


def _sip_key(domain: str) -> str:
    """The ``addresses_by_host`` key of the addresses requests for SIP domain ``domain`` (a
    ``host_key``) went to: upper case, so no host name's key (lower case) can be it."""
    return "SIP " + domain


class HostsSeen:
    """``addresses_by_host`` learnt as a stream's events arrive."""

    def __init__(self) -> None:
        self._found: dict[str, set[str]] = {}
        self._frozen: dict[str, frozenset[str]] | None = {}

    def add(self, e: Event) -> None:
        if _note_host(self._found, e):
            self._frozen = None

    def addresses(self) -> dict[str, frozenset[str]]:
        """Host name -> the server addresses that answered for it so far."""
        if self._frozen is None:
            self._frozen = {name: frozenset(ips) for name, ips in self._found.items()}
        return self._frozen


def listed(value: object, what: str) -> list[str]:
    """A comma-separated string or a list of strings, as a list of non-empty items."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value if v.strip()]
    raise ScopeError(f"{what}: expected a string or a list of strings, got {value!r}")


def parse_time(value: str | float | None, what: str = "time") -> float | None:
    """Epoch seconds, or an ISO 8601 time (UTC when no zone is given); raises ``ScopeError``."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _in_range(value, value, what)
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            pass
        else:
            return _in_range(seconds, value, what)
        try:
            moment = datetime.fromisoformat(_iso_text(value))
        except ValueError as exc:
            raise ScopeError(f"{what} {value!r}: {_TIME_FORMS}") from exc
    else:
        raise ScopeError(f"{what} {value!r}: {_TIME_FORMS}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return _in_range(moment.timestamp(), value, what)


# the whole seconds a datetime can hold (years 1 to 9999, UTC): the times a scope can state
_EARLIEST = datetime(1, 1, 1, tzinfo=timezone.utc).timestamp()
_LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc).timestamp()
_RANGE = "not a time from 0001-01-01 to 9999-12-31 UTC"


def _in_range(seconds: float, value: object, what: str) -> float:
    """``seconds`` as a float when it is a time a scope can hold; raises ``ScopeError`` for
    ``nan`` (every comparison with it is false: the bound would be silently ignored, and a
    blind spot left out), ``inf`` and times past year 9999 or before year 1."""
    try:
        number = float(seconds)
    except OverflowError:  # an integer too large for a float
        number = math.inf
    if not math.isfinite(number) or not _EARLIEST <= number <= _LATEST:
        raise ScopeError(f"{what} {value!r}: {_RANGE}")
    return number


def _iso_text(value: str) -> str:
    """``value`` as ``datetime.fromisoformat`` reads it right: ``Z`` or ``z`` as ``+00:00``, and
    a day with a zone (``2026-03-02+05:00``) as that day's first instant there - read as it is,
    Python takes the ``+`` for the date/time separator and the zone for a time of day."""
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    day = _DAY_WITH_ZONE.fullmatch(text)
    return f"{day[1]}T00:00{day[2]}" if day else text


_DAY_WITH_ZONE = re.compile(r"(\d{4}-\d{2}-\d{2})([+-]\d{2}:?\d{2})")
_TIME_FORMS = "not an ISO 8601 time, epoch seconds or an offset into the capture such as +30s"


def bare_host(host: str) -> str:
    """A Host header value without its port, lower case (``[v6]:port`` keeps its brackets)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def host_key(host: str) -> str:
    """A Host header, TLS server name, SIP domain or ``--host`` item as ``--host`` compares
    them: ``bare_host``, with an IP literal written one way (``[2001:db8::1]``, ``10.1.0.10``)
    however it was given (brackets or none, upper case, zeros, IPv4-mapped)."""
    name = bare_host(host)
    literal = ip_literal(name)
    if literal is None:
        return name
    return f"[{literal}]" if literal.version == 6 else str(literal)


#: ``target_port`` of a request that names its server's port in a way not read: any port.
_ANY_PORT = -1
#: The port an absolute-form target without one goes to, by its scheme (lower case).
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def target_port(uri: str | None, host: str | None) -> int | None:
    """The port a request named for its server, which a proxy's connection port is not: an
    absolute-form target's (``http://mail.contoso.com:8081/EWS/``; without one its scheme's
    default, ``http`` 80 and ``https`` 443), else the explicit port of ``host`` (the Host
    header, or the authority a CONNECT or an absolute-form target put in its place), else an
    authority-form target's (``CONNECT mail.contoso.com:443``). None when it names none (origin
    form, no port in the Host: the connection's port is the server's); ``_ANY_PORT`` for an
    absolute-form target of another scheme or a port that is no number, so that the request
    is not ruled out by a port."""
    if uri and uri[:1] not in ("/", "*"):
        scheme, sep, rest = uri.partition("://")
        if sep:
            authority = re.split(r"[/?#]", rest, maxsplit=1)[0].rpartition("@")[2]
            named = _port_of(authority)
            if named is not None:
                return named
            return _DEFAULT_PORTS.get(scheme.strip().lower(), _ANY_PORT)
    named = _port_of(host) if host else None
    if named is not None or not uri or uri[:1] in ("/", "*"):
        return named
    return _port_of(uri)  # authority form: a CONNECT's host:port


def _port_of(authority: str) -> int | None:
    """The explicit port of ``host:port`` / ``[v6]:port`` (None without one; ``_ANY_PORT`` when
    it is no port number)."""
    text = authority.strip()
    if text.startswith("["):
        text = text.partition("]")[2]
        if not text.startswith(":"):
            return None
    elif text.count(":") != 1:
        return None  # no port, or a bare IPv6 address
    digits = text.rpartition(":")[2].strip()
    if not digits:
        return None  # "host:" is the default port (RFC 3986 3.2.3)
    if digits.isascii() and digits.isdigit() and len(digits) <= 5 and int(digits) < 65536:
        return int(digits)
    return _ANY_PORT


def request_path(uri: str) -> str:
    """The path of a request-target (origin form, or absolute form as proxies get it: any
    ``scheme://``), as sent: what outputs show. ``normalized_path`` is the path a server
    resolves it to."""
    if uri[:1] not in ("/", "\\") and ABSOLUTE_FORM.match(uri):
        uri = urlsplit(uri).path or "/"
    return uri.split("?", 1)[0]


def normalized_path(uri: str) -> str:
    """The path of a request-target as IIS resolves it before it picks the application: every
    percent-escape decoded (``%45`` and IIS's ``%u0045`` alike, again while escapes remain,
    as a front end may decode once more), backslashes as slashes, repeated slashes as one, and
    dot segments removed (RFC 3986 5.2.4). Case is kept; ``path_matches`` compares without it.

    Every escape is decoded, not only the unreserved characters: IIS decodes ``%2F`` and
    ``%5C`` too, so ``/EWS%2FExchange.asmx`` reaches EWS, and decoding more only ever adds
    requests to a scope - never leaves one out."""
    path = request_path(uri)
    if path[:1] == "/" and not _PATH_NOISE.search(path):
        return path  # the usual case: nothing to resolve
    return _resolved(path)


def path_matches(uri: str, prefix: str) -> bool:
    """Is the path of request-target ``uri`` under ``prefix`` (``--path``, lower case)?

    Any form counts, case-insensitively: the path as sent (a proxy may route by the raw
    text), as the server resolves it (``normalized_path``, the prefix resolved alike), and
    either of those with each segment's ``;parameters`` dropped (as servlet containers route)
    and with each segment's trailing dots and spaces dropped (as Win32 canonicalises a path).
    A target that is no path at all (``*``, an authority, a relative or unparsed target) may
    be routed anywhere: it matches. A prefix ending in ``/`` also matches the directory itself
    without it (``/EWS`` for ``/ews/``: the application's root)."""
    raw = request_path(uri)
    if raw.lower().startswith(prefix):
        return True
    if raw[:1] not in ("/", "\\"):
        return True  # not resolved to a path: leaving it out could be a false PASS
    resolved = _resolved_prefix(prefix)
    directory = resolved[:-1] if resolved[-1:] == "/" else None
    return any(path.startswith(resolved) or path == directory for path in _candidate_paths(raw))


@lru_cache(maxsize=4096)
def _candidate_paths(raw: str) -> tuple[str, ...]:
    """The paths, lower case, a server may take origin-form ``raw`` for: resolved
    (``normalized_path``), and that and the raw one with segment parameters and trailing
    dots and spaces dropped (``_unparametered``, ``_win32_segments``) - more candidates only
    ever add a request to a scope."""
    path = raw if not _PATH_NOISE.search(raw) else _resolved(raw)
    out = {path}
    for base in (raw, path):
        if ";" in base:
            out.add(_resolved(_unparametered(base)))
        if _TRAILING_DOT.search(base):
            out.add(_resolved(_win32_segments(base)))
            if ";" in base:
                out.add(_resolved(_win32_segments(_unparametered(base))))
    return tuple(p.lower() for p in out)


def _unparametered(path: str) -> str:
    """``path`` with each segment's ``;parameters`` dropped (``/EWS;x=1/a`` -> ``/EWS/a``)."""
    return re.sub(r";[^/]*", "", path)


def _win32_segments(path: str) -> str:
    """``path`` with trailing dots and spaces dropped from each segment (``/EWS./a`` ->
    ``/EWS/a``), as Win32 canonicalises a file name; ``.`` and ``..`` (after trailing spaces)
    stay dot segments."""
    out = []
    for segment in path.split("/"):
        spaced = segment.rstrip(" ")
        out.append(spaced if spaced in (".", "..") else segment.rstrip(". "))
    return "/".join(out)


#: A segment ending in a dot or a space (decoded or escaped: ``%20``, ``%2e``).
_TRAILING_DOT = re.compile(r"(?:[. ]|%20|%2[eE])(?:[/\\;]|$)")
_PATH_NOISE = re.compile(r"[%\\]|//|/\.(?:\.)?(?:/|$)")
_PERCENT_U = re.compile(r"%[uU]([0-9A-Fa-f]{4})")
_SLASHES = re.compile(r"/{2,}")
_DECODE_ROUNDS = 4  # %252545 -> %2545 -> %45 -> E; a bound, not a loop an input can stretch


@lru_cache(maxsize=4096)
def _resolved(path: str) -> str:
    for _ in range(_DECODE_ROUNDS):
        decoded = unquote(_PERCENT_U.sub(lambda m: chr(int(m[1], 16)), path))
        if decoded == path:
            break
        path = decoded
    path = path.replace("\\", "/")
    if not path.startswith("/"):
        path = "/" + path  # a request-target is rooted; "EWS/x" means /EWS/x
    return _remove_dot_segments(_SLASHES.sub("/", path))


@lru_cache(maxsize=256)
def _resolved_prefix(prefix: str) -> str:
    return _resolved(prefix).lower()


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4 for an absolute path: ``.`` segments go, ``..`` takes the one before it
    (never above the root); a path ending in a dot segment keeps its trailing slash."""
    out: list[str] = []
    segments = path.split("/")[1:]
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        elif segment == ".":
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


def ip_literal(name: str) -> IPAddress | None:
    """The address a Host / server name of ``bare_host`` form names, when it is an IP literal
    (``10.1.0.10``, ``[2001:db8::10]``)."""
    if not name or not (name[0].isdigit() or name[0] == "[" or ":" in name):
        return None
    return _address(name)


def served(address: str | IPAddress, host_ips: frozenset[str]) -> bool:
    """Is ``address`` one of ``host_ips``, however either is written (``[v6]``, upper case,
    an IPv4-mapped IPv6 address)?"""
    if isinstance(address, str) and address in host_ips:
        return True
    ip = _address(address) if isinstance(address, str) else address
    return ip is not None and any(_address(a) == ip for a in host_ips)


@lru_cache(maxsize=4096)
def _address(text: str) -> IPAddress | None:
    """The address ``text`` writes (brackets allowed; an IPv4-mapped IPv6 one as IPv4)."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(ip, "ipv4_mapped", None)
    return mapped or ip


@dataclass(frozen=True, slots=True)
class Account:
    """One spelling of an account, lower case: its name and, when the spelling gives one, its
    domain and the kind of that domain - ``netbios`` (``CONTOSO\\user``, or a domain field
    without a dot), ``dns`` (``contoso.com\\user``, a domain field or Kerberos realm with a
    dot) or ``suffix`` (the part after ``@`` of a UPN, SMTP or SIP address)."""

    name: str
    domain: str | None = None
    kind: str | None = None

    def may_be(self, other: Account) -> bool:
        """Could both spellings name the same account? The names must be equal; domains are
        compared only when both are of the same kind. A NetBIOS name cannot be mapped to a DNS
        name from a capture, and a UPN, mail or SIP suffix need not be the account's domain
        (alternative UPN suffixes): such a pair is not told apart, the account stays in."""
        if self.name != other.name:
            return False
        if self.kind is None or self.kind != other.kind:
            return True
        return self.domain == other.domain


@lru_cache(maxsize=4096)
def parse_account(text: str, domain: str | None = None) -> Account:
    """The account ``text`` spells: ``user@suffix``, ``DOMAIN\\user`` or ``user`` (then in
    ``domain``, a credential's domain field, when given); ``sip:`` before an address is
    dropped. An empty name is an account nobody can tell."""
    text = text.strip().lower()
    if text.startswith("sip:"):
        text = text[4:]
    if "\\" in text:
        domain, _, text = text.partition("\\")
    elif "@" in text:
        text, _, suffix = text.rpartition("@")
        return Account(text.strip(), *_domain(suffix, "suffix"))
    return Account(text.strip(), *_domain(domain, None))


def _domain(text: str | None, kind: str | None) -> tuple[str | None, str | None]:
    text = (text or "").strip().lower().rstrip(".")
    if not text:
        return None, None
    return text, kind or ("dns" if "." in text else "netbios")


def event_accounts(e: Event) -> list[Account] | None:
    """The accounts exchange ``e`` names (its credential's user and domain, its token's
    subject), or None when it presented a credential whose user cannot be read: Kerberos (the
    ticket is encrypted), an anonymous or empty user, a masked one, a token without a subject
    or with an opaque ``sub`` only. A leg the server answered with the next leg of its logon
    names its logon's account, which that later leg states: it names none of its own."""
    accounts = []
    if e.user and e.raw_user is None and e.raw_domain is None:
        accounts.append(parse_account(e.user, e.domain))
    subject = (e.token_subject or "").strip()
    if subject and ("@" in subject or "\\" in subject):
        accounts.append(parse_account(subject))
    accounts = [a for a in accounts if a.name]
    if accounts or not presented(e):
        return accounts
    if is_continuation(e) and e.outcome == "challenged":
        return []  # the handshake went on: its later leg names the logon's account
    return None


def user_may_be(e: Event, users: Iterable[str]) -> bool:
    """Could exchange ``e`` be one of ``users`` (``--user``)? Yes when an account it names may
    be one of them (``Account.may_be``), or when it presented a credential whose user cannot be
    read (``event_accounts``): an unknown user is not ruled out, as an unknown client is not,
    since leaving it out could turn a verdict into a false PASS. An exchange that presented no
    credential names no user and is out, unless a token it carries names one."""
    named = {(v or "").lower() for v in (e.user, e.token_subject, _qualified(e))}
    if named & set(users):
        return True  # spelt as given (a token's opaque ``sub`` too)
    accounts = event_accounts(e)
    if accounts is None:
        return True
    wanted = [parse_account(u) for u in users]
    return any(a.may_be(w) for a in accounts for w in wanted)


def _qualified(e: Event) -> str | None:
    return f"{e.domain}\\{e.user}" if e.domain and e.user else None


def _in_network(address: str, network: Network) -> bool:
    """Is ``address`` in ``network``? An IPv4-mapped IPv6 address (``::ffff:10.1.0.20``, a
    dual-stack socket's view of an IPv4 peer) is its IPv4 address, and a network written so is
    its IPv4 network. Text that is no address (a hand-made record's) is an unknown address:
    not ruled out, as an empty one is not."""
    ip = _address(address)
    if ip is None:
        return True
    network = _mapped_network(network)
    return ip.version == network.version and ip in network


def _mapped_network(network: Network) -> Network:
    """An IPv6 network inside ``::ffff:0:0/96`` as the IPv4 network it maps; else itself."""
    if network.version == 6 and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}", strict=False)
    return network


def _network(text: str, value: str) -> Network:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError as exc:
        raise ScopeError(f"{value!r} is not an IP address or network") from exc


def _port(text: str, value: str) -> int:
    if not _is_port(text):
        raise ScopeError(f"server {value!r}: bad port {text!r}")
    return int(text)


def _is_port(text: str, before: str = "") -> bool:
    """Is ``text`` a port number (1 to 65535), after ``before``?"""
    if not text.startswith(before):
        return False
    digits = text[len(before) :]
    # ASCII digits only: isdigit() is also true for "²", which int() refuses
    return digits.isascii() and digits.isdigit() and len(digits) <= 5 and 0 < int(digits) < 65536


def _offset(seconds: float) -> str:
    return f"+{seconds:g}s"


def _iso(ts: float | None) -> str:
    if ts is None:
        return "*"
    try:
        return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"<invalid time {ts}>"
