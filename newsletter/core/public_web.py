"""Fetching what an outsider's URL names: public addresses and allowed ports only, every hop.

A feed address is typed by an operator but chosen by whoever runs the feed: it (or a
redirect from it, or its DNS answer a second later) may point at the service's own
machine or network. The check is on the address actually connected to, so a name that
resolves to a public address when looked at and to 127.0.0.1 when connected to (DNS
rebinding) is refused too.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpcore
import httpx

MAX_REDIRECTS = 5

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# NAT64 prefixes (RFC 6052 well-known, RFC 8215 local use): the IPv4 address is the last 32 bits.
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


class AddressRefused(httpx.TransportError):
    """The URL leads somewhere the service must not fetch from (said in words)."""


@dataclass(frozen=True)
class Reach:
    """Where the service may fetch from: the ports, and whether private networks too."""

    allowed_ports: frozenset[int] = frozenset({80, 443})
    # The operator's escape hatch, for feeds served inside their own network.
    allow_private: bool = False


def url_problem(url: httpx.URL, reach: Reach) -> str:
    """Why the service must not ask this URL for anything, or "" (before any connection)."""
    if url.scheme not in {"http", "https"}:
        return "the address must be an http:// or https:// URL"
    port = url.port or (443 if url.scheme == "https" else 80)
    if port not in reach.allowed_ports:
        return f"port {port} is not allowed ({_ports_allowed(reach)})"
    return ""


def address_problem(address: str, reach: Reach) -> str:
    """Why the service must not connect to this IP address, or "" for a public one."""
    if reach.allow_private:
        return ""
    try:
        ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address} is not an IP address"
    # What an IPv6 address carries inside is where it leads (::ffff:127.0.0.1 is loopback).
    kinds = [_not_public(embedded) for embedded in _embedded_ipv4(ip)] + [_not_public(ip)]
    kind = next((k for k in kinds if k), "")
    if not kind:
        return ""
    return (
        f"it leads to {address}, a {kind} address; only public addresses are fetched "
        "(NEWSLETTER_FEED_ALLOW_PRIVATE=true allows private networks)"
    )


@contextmanager
def public_client(
    reach: Reach, *, timeout: float, headers: dict[str, str]
) -> Iterator[httpx.Client]:
    """An httpx client that connects only to addresses and ports `reach` allows.

    It does not follow redirects: use `send_following` for that, which checks each hop.
    """
    transport = _PublicTransport(reach)
    # trust_env=False: an HTTP(S)_PROXY in the environment would connect for us, to
    # wherever the URL says, past the address check.
    with httpx.Client(
        transport=transport,
        timeout=timeout,
        headers=headers,
        follow_redirects=False,
        trust_env=False,
    ) as client:
        yield client


@contextmanager
def send_following(
    client: httpx.Client,
    request: httpx.Request,
    reach: Reach,
    *,
    max_redirects: int = MAX_REDIRECTS,
) -> Iterator[httpx.Response]:
    """Send the request and follow its redirects by hand, each hop's URL checked; the last
    answer, streamed (closed on leaving the block).

    Raises AddressRefused for a hop that is not allowed, httpx.TooManyRedirects past the bound.
    """
    for _hop in range(max_redirects + 1):
        problem = url_problem(request.url, reach)
        if problem:
            raise AddressRefused(problem, request=request)
        response = client.send(request, stream=True)
        if response.is_redirect and response.next_request is not None:
            response.close()
            request = response.next_request
            continue
        try:
            yield response
        finally:
            response.close()
        return
    raise httpx.TooManyRedirects(f"more than {max_redirects} redirects", request=request)


# --- The check at connect time ---------------------------------------------------------


class _PublicTransport(httpx.HTTPTransport):
    def __init__(self, reach: Reach) -> None:
        super().__init__(trust_env=False)
        # httpx has no option for a network backend: its pool is rebuilt with ours, the
        # other settings as httpx's defaults (TLS verified against the URL's host name).
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            network_backend=_PublicBackend(reach),
        )


class _PublicBackend(httpcore.SyncBackend):
    """Resolves the host itself, checks every address, and connects to a checked one."""

    def __init__(self, reach: Reach) -> None:
        self._reach = reach

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        if port not in self._reach.allowed_ports:  # checked on the URL already; kept here too
            raise AddressRefusedAtConnect(
                f"port {port} is not allowed ({_ports_allowed(self._reach)})"
            )
        try:
            answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host} ({exc})") from exc
        addresses = list(dict.fromkeys(str(answer[4][0]) for answer in answers))
        # Every answer is checked, not only the one used: a name with one public and one
        # private address would otherwise reach the private one on a retry.
        for address in addresses:
            problem = address_problem(address, self._reach)
            if problem:
                raise AddressRefusedAtConnect(problem)
        if not addresses:
            raise httpcore.ConnectError(f"{host} has no address")
        failures: list[httpcore.ConnectError] = []
        for address in addresses:
            try:
                # The IP, not the name: resolving again here could give another answer.
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                failures.append(exc)
        raise failures[-1]


class AddressRefusedAtConnect(httpcore.ConnectError):
    """httpcore's form of AddressRefused, raised where the connection would be made."""


def _not_public(ip: IPAddress) -> str:
    if ip.is_loopback:
        return "loopback"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "non-public"
    return ""


def _embedded_ipv4(ip: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 one carries (mapped, 6to4, Teredo, NAT64)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    found = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
    if any(ip in network for network in _NAT64):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [address for address in found if address is not None]


def _ports_allowed(reach: Reach) -> str:
    ports = ", ".join(str(p) for p in sorted(reach.allowed_ports))
    return f"ports {ports} only; NEWSLETTER_FEED_ALLOWED_PORTS allows more"
