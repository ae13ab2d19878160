"""Which traffic a question is about: the filters ``--client``, ``--server``, ``--host``,
``--path``, ``--user``, ``--scheme``, ``--since`` and ``--until``, parsed once and meaning the
same in every command (``verify`` narrows its scope with them exactly as a policy rule does, and
refuses ``--scheme``).

Times are ISO 8601, epoch seconds, or offsets into the capture (``+30s``, ``+5m``, ``+1h30m``):
an offset counts from the capture's first packet and is fixed once that is known
(``Scope.anchored``).

Servers are accepted the way the tool prints them: ``host``, ``host:port``, ``ip``, ``ip:port``,
``[v6]:port``, a CIDR, or a URL (reduced to its host and explicit port). Every option takes a
comma-separated list (a policy file: a TOML list); a value matches when any item does.

Traffic that could not be read (``NotInspected``) has no path or user: it is in a scope unless
its endpoints or time rule it out, so a blind spot is never silently left out of a verdict. In
the same way an exchange whose client is unknown (``client_ip`` empty: an HTTP archive does not
record the browser's address) is not ruled out by a client filter.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from urllib.parse import urlsplit

from analyzer.model import AUTH_CLASSES, SCHEMES, Event, NotInspected

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
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

    def matches(self, ip: str, port: int, host: str | None, host_ips: frozenset[str]) -> bool:
        """Does a connection to ``ip``:``port`` with Host / SNI ``host`` match?

        ``host_ips`` are the addresses that served this spec's host name in the capture: a
        connection there without a name of its own (undecrypted TLS without SNI, a request
        without Host) may be the named server too.
        """
        if self.port is not None and port != self.port:
            return False
        if self.network is not None:
            # an unknown address ("": an archive entry that kept none) is not ruled out, as an
            # unknown client is not: leaving it out could turn a verdict into a false PASS
            return not ip or _in_network(ip, self.network)
        if host is not None:
            return bare_host(host) == self.host
        return ip in host_ips

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
        if not self._endpoints(e.client_ip, e.server_ip, e.server_port, e.host, host_ips):
            return False
        if self.since is not None and e.ts < self.since:
            return False
        if self.until is not None and e.ts > self.until:
            return False
        if self.paths:
            path = request_path(e.uri).lower()
            if not any(path.startswith(p) for p in self.paths):
                return False
        if self.users:
            who = {(v or "").lower() for v in (e.user, e.token_subject, _qualified(e))}
            if not who & set(self.users):
                return False
        return not self.schemes or e.scheme in self.schemes or (e.auth_class in self.schemes)

    def covers(self, n: NotInspected, host_ips: dict[str, frozenset[str]] | None = None) -> bool:
        """Could traffic ``n`` that was not read be in scope? Only what is known rules it out."""
        if not self._endpoints(n.client_ip, n.server_ip, n.server_port, n.host, host_ips):
            return False
        return self.until is None or n.ts <= self.until

    def _endpoints(
        self,
        client_ip: str,
        server_ip: str,
        server_port: int,
        host: str | None,
        host_ips: dict[str, frozenset[str]] | None,
    ) -> bool:
        # An unknown client ("": a HAR does not record the browser's address) is not ruled out.
        if self.clients and client_ip and not any(_in_network(client_ip, n) for n in self.clients):
            return False
        if self.servers:
            ips = host_ips or {}
            if not any(
                s.matches(server_ip, server_port, host, ips.get(s.host or "", frozenset()))
                for s in self.servers
            ):
                return False
        return not self.hosts or (host is not None and bare_host(host) in self.hosts)

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
    paths = []
    for p in listed(path, "path"):
        if not p.startswith("/"):
            raise ScopeError(f"path {p!r} must start with /")
        paths.append(p.lower())
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
        hosts=tuple(bare_host(h) for h in listed(host, "host")),
        paths=tuple(paths),
        users=tuple(u.lower() for u in listed(user, "user")),
        schemes=schemes,
        since=start,
        until=end,
        since_offset=start_offset,
        until_offset=end_offset,
    )


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
        return None, sum(float(n) * _UNIT[unit] for n, unit in parts)
    return parse_time(value, what), None


def addresses_by_host(events: Iterable[Event]) -> dict[str, frozenset[str]]:
    """Host name (lower case, no port) -> the server addresses that answered for it."""
    found: dict[str, set[str]] = {}
    for e in events:
        if e.host:
            found.setdefault(bare_host(e.host), set()).add(e.server_ip)
    return {name: frozenset(ips) for name, ips in found.items()}


class HostsSeen:
    """``addresses_by_host`` learnt as a stream's events arrive."""

    def __init__(self) -> None:
        self._found: dict[str, set[str]] = {}
        self._frozen: dict[str, frozenset[str]] | None = {}

    def add(self, e: Event) -> None:
        if e.host:
            ips = self._found.setdefault(bare_host(e.host), set())
            if e.server_ip not in ips:
                ips.add(e.server_ip)
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
        return float(value)
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            moment = datetime.fromisoformat(_iso_text(value))
        except ValueError as exc:
            raise ScopeError(f"{what} {value!r}: {_TIME_FORMS}") from exc
    else:
        raise ScopeError(f"{what} {value!r}: {_TIME_FORMS}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


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


def request_path(uri: str) -> str:
    """The path of a request-target (origin form, or absolute form as proxies get it)."""
    if "://" in uri[:16]:
        uri = urlsplit(uri).path or "/"
    return uri.split("?", 1)[0]


def _qualified(e: Event) -> str | None:
    return f"{e.domain}\\{e.user}" if e.domain and e.user else None


def _in_network(address: str, network: Network) -> bool:
    """Is ``address`` in ``network``? Text that is no address (a hand-made record's) is an
    unknown address: not ruled out, as an empty one is not."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return True
    return ip.version == network.version and ip in network


def _network(text: str, value: str) -> Network:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError as exc:
        raise ScopeError(f"{value!r} is not an IP address or network") from exc


def _port(text: str, value: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ScopeError(f"server {value!r}: bad port {text!r}")
    return int(text)


def _offset(seconds: float) -> str:
    return f"+{seconds:g}s"


def _iso(ts: float | None) -> str:
    if ts is None:
        return "*"
    try:
        return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"<invalid time {ts}>"
