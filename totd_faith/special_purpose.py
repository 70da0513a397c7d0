"""IPv4 special-purpose address registry (RFC 6890 and its updates).

RFC 6052 section 3.1 forbids the Well-Known Prefix 64:ff9b::/96 from carrying
non-global IPv4 addresses, so we need to know which addresses are global.  The
table below follows the IANA "IPv4 Special-Purpose Address Registry" column
"Globally Reachable" (RFC 6890 section 2.2.2 as updated by RFC 8190): an
address is global unless the most specific entry covering it says otherwise.
Multicast (224.0.0.0/4) is not in that registry but is never a unicast
translation target, so it is treated as non-global here as well.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class SpecialBlock:
    network: ipaddress.IPv4Network
    name: str
    rfc: str
    globally_reachable: bool


def _block(cidr: str, name: str, rfc: str, reachable: bool) -> SpecialBlock:
    return SpecialBlock(ipaddress.IPv4Network(cidr), name, rfc, reachable)


# Ordered from least to most specific where entries nest (192.0.0.0/24 holds
# several more specific entries with their own answer).
REGISTRY: tuple[SpecialBlock, ...] = (
    _block("0.0.0.0/8", '"This network"', "RFC 791", False),
    _block("10.0.0.0/8", "Private-Use", "RFC 1918", False),
    _block("100.64.0.0/10", "Shared Address Space", "RFC 6598", False),
    _block("127.0.0.0/8", "Loopback", "RFC 1122", False),
    _block("169.254.0.0/16", "Link Local", "RFC 3927", False),
    _block("172.16.0.0/12", "Private-Use", "RFC 1918", False),
    _block("192.0.0.0/24", "IETF Protocol Assignments", "RFC 6890", False),
    _block("192.0.0.0/29", "IPv4 Service Continuity Prefix", "RFC 7335", False),
    _block("192.0.0.8/32", "IPv4 dummy address", "RFC 7600", False),
    _block("192.0.0.9/32", "Port Control Protocol Anycast", "RFC 7723", True),
    _block("192.0.0.10/32", "Traversal Using Relays around NAT Anycast", "RFC 8155", True),
    _block("192.0.0.170/32", "NAT64/DNS64 Discovery", "RFC 7050", False),
    _block("192.0.0.171/32", "NAT64/DNS64 Discovery", "RFC 7050", False),
    _block("192.0.2.0/24", "Documentation (TEST-NET-1)", "RFC 5737", False),
    _block("192.31.196.0/24", "AS112-v4", "RFC 7535", True),
    _block("192.52.193.0/24", "AMT", "RFC 7450", True),
    _block("192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", "RFC 7526", False),
    _block("192.168.0.0/16", "Private-Use", "RFC 1918", False),
    _block("192.175.48.0/24", "Direct Delegation AS112 Service", "RFC 7534", True),
    _block("198.18.0.0/15", "Benchmarking", "RFC 2544", False),
    _block("198.51.100.0/24", "Documentation (TEST-NET-2)", "RFC 5737", False),
    _block("203.0.113.0/24", "Documentation (TEST-NET-3)", "RFC 5737", False),
    _block("224.0.0.0/4", "Multicast", "RFC 5771", False),
    _block("240.0.0.0/4", "Reserved", "RFC 1112", False),
    _block("255.255.255.255/32", "Limited Broadcast", "RFC 919", False),
)

#: RFC 7050 section 2.2: the well-known IPv4 addresses of ipv4only.arpa, which
#: a DNS64 synthesizes into every prefix (the Well-Known Prefix included) so
#: that hosts can discover the prefix.
DISCOVERY_ADDRESSES = (
    ipaddress.IPv4Address("192.0.0.170"),
    ipaddress.IPv4Address("192.0.0.171"),
)


@lru_cache(maxsize=4096)
def lookup(address: ipaddress.IPv4Address) -> SpecialBlock | None:
    """The most specific registry entry covering ``address``, if any."""
    best: SpecialBlock | None = None
    for block in REGISTRY:
        if address in block.network and (
            best is None or block.network.prefixlen > best.network.prefixlen
        ):
            best = block
    return best


def _by_first_octet() -> dict[int, tuple[tuple[int, int, bool], ...]]:
    """The registry as (network, mask, globally reachable) by first octet, most
    specific first, so :func:`is_global_int` tests only the blocks that can
    cover an address: none at all for most global ones."""
    table: dict[int, list[tuple[int, int, int, bool]]] = {}
    for block in REGISTRY:
        network = block.network
        first = int(network.network_address) >> 24
        for octet in range(first, first + (1 << max(0, 8 - network.prefixlen))):
            table.setdefault(octet, []).append(
                (
                    network.prefixlen,
                    int(network.network_address),
                    int(network.netmask),
                    block.globally_reachable,
                )
            )
    return {
        octet: tuple((net, mask, reachable) for _, net, mask, reachable in sorted(blocks)[::-1])
        for octet, blocks in table.items()
    }


_BY_FIRST_OCTET = _by_first_octet()


def is_global_int(address: int) -> bool:
    """:func:`is_global` for an IPv4 address as an integer (the DNS64 hot path)."""
    blocks = _BY_FIRST_OCTET.get(address >> 24)
    if blocks is not None:
        for network, mask, reachable in blocks:
            if address & mask == network:
                return reachable
    return True


def is_global(address: ipaddress.IPv4Address) -> bool:
    """True when ``address`` is globally reachable per the IANA registry: the most
    specific entry covering it says so, or none covers it."""
    return is_global_int(int(address))
