"""Address syntax used everywhere: ``127.0.0.1:53``, ``[::1]:53``, bare addresses.

Pure parsing, no I/O.  A bare address takes the default port the caller names.
"""

from __future__ import annotations

import ipaddress
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
