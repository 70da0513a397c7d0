"""Network access control: one ACL type for DNS clients and relay clients/destinations.

Pure data and decisions, no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from totd_faith.errors import AddressError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Clients served by default: loopback, link-local, RFC 1918 and ULA.  An open
#: resolver or an open relay is never the default.
LOCAL_NETWORKS: tuple[str, ...] = (
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "fe80::/10",
    "fc00::/7",
)


def parse_network(text: str) -> Network:
    """Parse ``192.0.2.0/24``, ``2001:db8::/32`` or a bare address (a host route)."""
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        if "has host bits set" in str(exc):
            fixed = ipaddress.ip_network(text.strip(), strict=False)
            raise AddressError(f"{text!r} has host bits set (did you mean {fixed}?)") from None
        raise AddressError(f"{text!r} is not an IP network") from None


def unmap(address: Address) -> Address:
    """An IPv4-mapped IPv6 address (``::ffff:a.b.c.d``, dual-stack sockets) as IPv4."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True, slots=True)
class NetworkSet:
    """An unordered set of networks; membership tests unmap IPv4-mapped clients."""

    networks: tuple[Network, ...]

    @classmethod
    def parse(cls, items: Iterable[str]) -> NetworkSet:
        return cls(tuple(parse_network(item) for item in items))

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            return False
        address = unmap(address)
        return any(address in network for network in self.networks)

    def __str__(self) -> str:
        return ", ".join(str(n) for n in self.networks)


@dataclass(frozen=True, slots=True)
class RelayRule:
    """One faithd.conf-style rule: ``CLIENT-NET permit|deny DEST-NET``."""

    client: Network
    permit: bool
    destination: Network

    @classmethod
    def parse(cls, text: str) -> RelayRule:
        words = text.split()
        if len(words) != 3 or words[1] not in ("permit", "deny"):
            raise AddressError(
                f"{text!r} is not a rule; write 'CLIENT-NET permit|deny DEST-NET', "
                "e.g. 'fd00::/8 permit 192.0.2.0/24'"
            )
        return cls(parse_network(words[0]), words[1] == "permit", parse_network(words[2]))

    def __str__(self) -> str:
        return f"{self.client} {'permit' if self.permit else 'deny'} {self.destination}"
