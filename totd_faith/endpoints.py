"""Address syntax used everywhere: ``127.0.0.1:53``, ``[::1]:53``, bare addresses.

Pure parsing, no I/O.  A bare address takes the default port the caller names.
:func:`would_loop` tells whether sending to an endpoint reaches one of our own
listeners (the caller supplies the host's addresses).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from totd_faith.errors import AddressError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True, order=True)
class Endpoint:
    """An IP address and a port; ``str()`` gives the canonical ``[v6]:port`` form."""

    host: IPAddress
    port: int

    @property
    def family_is_v6(self) -> bool:
        return self.host.version == 6

    def __str__(self) -> str:
        if self.host.version == 6:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    @property
    def sockaddr(self) -> tuple[str, int]:
        return (str(self.host), self.port)


def parse_port(text: str | int) -> int:
    """A TCP/UDP port number 1..65535."""
    if isinstance(text, bool):
        raise AddressError(f"{text!r} is not a port number")
    try:
        port = int(text)
    except (TypeError, ValueError):
        raise AddressError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise AddressError(f"{port} is not a port number (1-65535)")
    return port


def parse_endpoint(text: str, default_port: int | None = None) -> Endpoint:
    """Parse ``a.b.c.d[:port]``, ``[v6][:port]`` or a bare IPv6 address."""
    text = text.strip()
    port: int | None = default_port
    if text.startswith("["):
        host_text, sep, rest = text[1:].partition("]")
        if not sep:
            raise AddressError(f"{text!r}: missing ']' after the IPv6 address")
        if rest:
            if not rest.startswith(":"):
                raise AddressError(f"{text!r}: expected ':PORT' after ']'")
            port = parse_port(rest[1:])
    elif text.count(":") == 1:
        host_text, _, port_text = text.partition(":")
        port = parse_port(port_text)
    else:
        host_text = text
    try:
        host = ipaddress.ip_address(host_text)
    except ValueError:
        raise AddressError(
            f"{text!r} is not an address (use 192.0.2.1:53, [2001:db8::1]:53 or a bare address)"
        ) from None
    if port is None:
        raise AddressError(f"{text!r}: a port is required (e.g. {host_text}:80)")
    return Endpoint(host, port)


# -- does sending to an endpoint reach our own listener? ---------------------------

_LOOPBACK_V4 = ipaddress.IPv4Address("127.0.0.1")
_LOOPBACK_V6 = ipaddress.IPv6Address("::1")


def _destination(address: IPAddress) -> IPAddress:
    """Where the kernel delivers a packet sent to ``address``, as a plain address.

    An IPv4-mapped address (``::ffff:a.b.c.d``) travels as IPv4 to a.b.c.d.  A
    scope (``fe80::1%eth0``) does not change which local socket receives it.  An
    unspecified destination is the host itself: Linux sends packets for
    0.0.0.0 to 127.0.0.1 and for :: to ::1 (ip_route_output, ip6_datagram_connect).
    """
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        elif address.scope_id is not None:
            address = ipaddress.IPv6Address(int(address))
    if address.is_unspecified:
        return _LOOPBACK_V4 if address.version == 4 else _LOOPBACK_V6
    return address


def _is_local(address: IPAddress, local: frozenset[IPAddress]) -> bool:
    # All of 127.0.0.0/8 is local on Linux (route "local 127.0.0.0/8 dev lo"), not just .1.
    return address.is_loopback or address in local


def would_loop(
    listen: Endpoint,
    upstream: Endpoint,
    local_addresses: Iterable[IPAddress] = (),
    *,
    dual_stack: bool = False,
) -> bool:
    """Whether packets sent to ``upstream`` arrive at a socket bound to ``listen``.

    A DNS proxy forwarding to such an upstream sends every query to itself.
    ``local_addresses`` are the host's own addresses (any family; e.g.
    :func:`totd_faith.relay.ownaddrs.own_ipv4_addresses`): a wildcard
    listener (0.0.0.0 or ::) receives what is sent to any of them, and to any
    loopback address, of its family on its port.  ``dual_stack``: an IPv6
    wildcard listener without IPV6_V6ONLY also receives IPv4; the DNS proxy's
    listeners set IPV6_V6ONLY (dnssockets.py), so the default is False.  A
    listener bound to an IPv4-mapped address receives that IPv4 address.
    Pure function: no I/O.
    """
    if listen.port != upstream.port:
        return False
    target = _destination(upstream.host)
    bound = listen.host
    if isinstance(bound, ipaddress.IPv6Address) and bound.ipv4_mapped is not None:
        bound = bound.ipv4_mapped  # such a socket receives IPv4 traffic for that address
    elif isinstance(bound, ipaddress.IPv6Address) and bound.scope_id is not None:
        bound = ipaddress.IPv6Address(int(bound))
    if not bound.is_unspecified:
        return bound == target
    if target.version != bound.version and not (bound.version == 6 and dual_stack):
        return False
    local = frozenset(_destination(a) for a in local_addresses)
    return _is_local(target, local)


def loop_listener(
    listens: Iterable[Endpoint],
    upstream: Endpoint,
    local_addresses: Iterable[IPAddress] = (),
    *,
    dual_stack: bool = False,
) -> Endpoint | None:
    """The first of ``listens`` that ``upstream`` reaches (see :func:`would_loop`), if any."""
    local = tuple(local_addresses)
    for listen in listens:
        if would_loop(listen, upstream, local, dual_stack=dual_stack):
            return listen
    return None
