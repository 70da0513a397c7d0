"""This host's own addresses, both families, for the DNS forwarding-loop check.

:func:`totd_faith.endpoints.would_loop` needs them: a listener on 0.0.0.0 or
:: receives queries sent to any local address, so an upstream that is one of
them (resolv.conf ``nameserver 192.0.2.1`` on that host) would be ourselves.
IPv4 comes from :mod:`totd_faith.relay.ownaddrs`; IPv6 from
``/proc/net/if_inet6`` (every address configured in the current network
namespace), with ``ip -6 addr`` as the fallback where /proc is not mounted.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from totd_faith.endpoints import IPAddress
from totd_faith.relay.ownaddrs import own_ipv4_addresses, proc_or_ip

IF_INET6 = Path("/proc/net/if_inet6")


def parse_if_inet6(text: str) -> frozenset[ipaddress.IPv6Address]:
    """Addresses of ``/proc/net/if_inet6`` lines (32 hex digits, index, length, ...)."""
    found: set[ipaddress.IPv6Address] = set()
    for line in text.splitlines():
        words = line.split()
        if words and len(words[0]) == 32:
            try:
                found.add(ipaddress.IPv6Address(int(words[0], 16)))
            except ValueError:
                pass
    return frozenset(found)


def parse_ip6_addr(text: str) -> frozenset[ipaddress.IPv6Address]:
    """Addresses from ``ip -6 -o addr show`` lines (``... inet6 2001:db8::1/64 ...``)."""
    found: set[ipaddress.IPv6Address] = set()
    for line in text.splitlines():
        words = line.split()
        if "inet6" in words[:-1]:
            try:
                found.add(ipaddress.IPv6Address(words[words.index("inet6") + 1].partition("/")[0]))
            except ValueError:
                pass
    return frozenset(found)


def own_ipv6_addresses() -> frozenset[ipaddress.IPv6Address]:
    """This host's IPv6 addresses (current network namespace); empty if unknown."""
    return proc_or_ip(IF_INET6, parse_if_inet6, "-6", parse_ip6_addr)


def own_addresses() -> frozenset[IPAddress]:
    """This host's IPv4 and IPv6 addresses; loopback is implied by would_loop anyway."""
    return frozenset[IPAddress]((*own_ipv4_addresses(), *own_ipv6_addresses()))
