"""Egress policy for webhooks: which addresses a webhook may reach, enforced at connect time.

Deny by default, allow by network: a receiver may be any *public* address over https on a usual
port; loopback, private (RFC 1918, fc00::/7), link-local, CGNAT, unspecified (0.0.0.0, ::),
multicast and reserved addresses are refused unless an admin lists their network in
``[alerts] allow_networks`` (intranet receivers: Teams/Mattermost/ITSM on-prem). Cloud metadata
addresses (169.254.169.254, fd00:ec2::254, 100.100.100.200, 169.254.170.2) and names
(metadata.google.internal, ...) are refused even when their network is listed.

Two checks:

- ``EgressPolicy.url_problem(url)`` when the configuration is read: scheme, names, IP literals,
  and IPv4 in non-standard forms (``2130706433``, ``0x7f000001``, ``0177.0.0.1``, ``127.1``),
  which resolvers read differently and which are refused outright.
- ``GuardedTransport`` when the connection is made: the host is resolved *once*, every address
  it resolves to is checked (one forbidden address refuses the name), and the socket connects
  to a checked address, never to the name again. DNS rebinding (public at save time, internal
  later) and a name that resolves to loopback are caught here. TLS still verifies the name.

Redirects are never followed by the delivery worker (a 3xx is a failed attempt); a client that
does follow them goes through this transport again for the new host, so a redirect into a
forbidden range is refused too. Environment proxies are ignored (``trust_env=False``).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

__all__ = [
    "EgressPolicy",
    "ForbiddenDestinationError",
    "GuardedTransport",
    "Resolver",
    "make_guarded_client",
    "system_resolver",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]
"""``resolve(host, port) -> [ip, ...]``"""

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.170.2")
)
METADATA_NAMES = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2"}
)
_NUMERIC_PART = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$", re.IGNORECASE)


class ForbiddenDestinationError(httpx.TransportError):
    """A webhook URL or the address it resolves to is not allowed by the egress policy."""

    def __init__(self, message: str, *, host: str) -> None:
        super().__init__(message)
        self.host = host


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (A and AAAA), in the resolver's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[str] = []
    for *_, sockaddr in infos:
        ip = str(sockaddr[0])
        if ip not in out:
            out.append(ip)
    return out


def _ambiguous_ipv4(host: str) -> bool:
    """Whether ``host`` is IPv4 written in a form other than four plain decimal parts."""
    parts = host.rstrip(".").split(".")
    if not all(_NUMERIC_PART.match(p) for p in parts) or len(parts) > 4:
        return False
    if len(parts) != 4:
        return True
    return any(p.lower().startswith("0x") or (len(p) > 1 and p.startswith("0")) for p in parts)


def _plain(ip: IPAddress) -> IPAddress:
    """IPv4-mapped (``::ffff:a.b.c.d``) and 6to4/NAT64-free: the IPv4 address it carries."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in ipaddress.ip_network("64:ff9b::/96"):
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


@dataclass(frozen=True)
class EgressPolicy:
    """Where webhooks may connect to."""

    allow_networks: tuple[IPNetwork, ...] = ()
    require_https: bool = True
    allowed_ports: frozenset[int] = field(default_factory=lambda: frozenset({80, 443, 8080, 8443}))

    @classmethod
    def from_settings(cls, alerts: Any) -> EgressPolicy:
        """The policy of an ``AlertSettings``."""
        return cls(
            allow_networks=tuple(alerts.allow_networks),
            require_https=alerts.require_https,
            allowed_ports=frozenset(alerts.allowed_ports),
        )

    def allow_listed(self, ip: IPAddress) -> bool:
        plain = _plain(ip)
        return any(plain in net or ip in net for net in self.allow_networks)

    def address_problem(self, ip: IPAddress | str) -> str | None:
        """Why a connection to ``ip`` is refused, or None when it is allowed."""
        if isinstance(ip, str):
            ip = ipaddress.ip_address(ip.split("%", 1)[0])
        plain = _plain(ip)
        if ip in METADATA_ADDRESSES or plain in METADATA_ADDRESSES:
            return f"{ip} is a cloud metadata address"
        if self.allow_listed(ip):
            return None
        for test, what in (
            ("is_unspecified", "an unspecified address"),
            ("is_loopback", "a loopback address"),
            ("is_link_local", "a link-local address"),
            ("is_multicast", "a multicast address"),
            ("is_private", "a private address"),
            ("is_reserved", "a reserved address"),
        ):
            if getattr(plain, test) or getattr(ip, test):
                return f"{ip} is {what} (not in alerts.allow_networks)"
        if not plain.is_global:
            return f"{ip} is not a public address (not in alerts.allow_networks)"
        return None

    def connection_problem(self, ip: str, *, port: int, scheme: str) -> str | None:
        """Why connecting to ``ip:port`` for ``scheme`` is refused, or None."""
        problem = self.address_problem(ip)
        if problem is not None:
            return problem
        address = ipaddress.ip_address(ip.split("%", 1)[0])
        if self.allow_listed(address):
            return None
        if self.require_https and scheme != "https":
            return f"{ip} is outside alerts.allow_networks: only https is allowed there"
        if port not in self.allowed_ports:
            return f"port {port} is not in alerts.allowed_ports"
        return None

    def url_problem(self, url: str) -> str | None:
        """Why ``url`` can never be a webhook target, judged without DNS; None if it may be.

        The connect-time check still applies to every name this lets through.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            return f"scheme `{parts.scheme}` is not http or https"
        host = (parts.hostname or "").lower()
        if not host:
            return "the URL has no host"
        if parts.username or parts.password:
            return "the URL must not hold credentials"
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return "the port is not a number"
        if _ambiguous_ipv4(host):
            return f"`{host}` is an IPv4 address in a non-standard form (decimal, hex, octal)"
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            name = host.rstrip(".")
            if name in METADATA_NAMES:
                return f"`{name}` is a cloud metadata name"
            if name == "localhost" or name.endswith(".localhost"):
                return f"`{name}` is a loopback name"
            return None
        return self.connection_problem(str(ip), port=port, scheme=parts.scheme)


class _GuardedBackend(httpcore.SyncBackend):
    """Resolves once, checks every address, connects to a checked address."""

    def __init__(self, policy: EgressPolicy, resolver: Resolver) -> None:
        self.policy = policy
        self.resolver = resolver
        self.local = threading.local()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        scheme = getattr(self.local, "scheme", "https")
        name = host.strip("[]").lower()
        if name.rstrip(".") in METADATA_NAMES:
            raise ForbiddenDestinationError(f"`{name}` is a cloud metadata name", host=host)
        try:
            addresses = self.resolver(name, port)
        except OSError as e:
            raise httpcore.ConnectError(f"cannot resolve `{host}`: {e}") from e
        if not addresses:
            raise httpcore.ConnectError(f"`{host}` resolves to no address")
        for ip in addresses:
            problem = self.policy.connection_problem(ip, port=port, scheme=scheme)
            if problem is not None:
                raise ForbiddenDestinationError(
                    f"refused to connect to `{host}`: {problem}", host=host
                )
        error: Exception | None = None
        for ip in addresses:
            try:
                return super().connect_tcp(
                    ip,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
                error = e
        assert error is not None
        raise error


class GuardedTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` whose every new connection passes the egress policy."""

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        resolver: Resolver = system_resolver,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._backend = _GuardedBackend(policy, resolver)
        self._pool._network_backend = self._backend

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._backend.local.scheme = request.url.scheme
        return super().handle_request(request)


def make_guarded_client(
    policy: EgressPolicy,
    *,
    resolver: Resolver = system_resolver,
    follow_redirects: bool = False,
    timeout: float = 15.0,
    user_agent: str = "ticketflow-webhooks",
) -> httpx.Client:
    """The shared client of the delivery worker: guarded transport, no env proxies, no
    redirects (unless asked), one connection pool per process."""
    return httpx.Client(
        transport=GuardedTransport(policy, resolver=resolver),
        follow_redirects=follow_redirects,
        trust_env=False,
        timeout=timeout,
        headers={"User-Agent": user_agent},
    )
