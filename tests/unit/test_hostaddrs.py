"""The host's own IPv6 addresses from /proc/net/if_inet6 or ``ip -6 addr`` output."""

from __future__ import annotations

import ipaddress

from totd_faith import hostaddrs
from totd_faith.endpoints import parse_endpoint, would_loop

V6 = ipaddress.IPv6Address

IF_INET6 = """\
fe8000000000000000fc00fffe000001 04 40 20 80     eth0
00000000000000000000000000000001 01 80 10 80       lo
20010db8000000000000000000000053 04 40 00 80     eth0
garbage line
"""

IP6_ADDR = """\
1: lo    inet6 ::1/128 scope host proto kernel_lo \\       valid_lft forever preferred_lft forever
4: eth0    inet6 2001:db8::53/64 scope global \\       valid_lft forever preferred_lft forever
4: eth0    inet6 fe80::fc:ff:fe00:1/64 scope link \\       valid_lft forever preferred_lft forever
5: bad    inet6 nonsense/64 scope link
"""

EXPECTED = {V6("fe80::fc:ff:fe00:1"), V6("::1"), V6("2001:db8::53")}


def test_parse_if_inet6() -> None:
    assert hostaddrs.parse_if_inet6(IF_INET6) == EXPECTED


def test_parse_ip6_addr() -> None:
    assert hostaddrs.parse_ip6_addr(IP6_ADDR) == EXPECTED


def test_a_resolver_on_an_own_address_loops_through_a_wildcard_listener() -> None:
    local = hostaddrs.parse_if_inet6(IF_INET6)
    listen = parse_endpoint("[::]:53")
    assert would_loop(listen, parse_endpoint("[2001:db8::53]:53"), local)
    assert would_loop(listen, parse_endpoint("[fe80::fc:ff:fe00:1%eth0]:53"), local)
    assert not would_loop(listen, parse_endpoint("[2001:db8::54]:53"), local)


def test_own_addresses_of_this_host_include_both_families() -> None:
    # Reads /proc (no sockets): 127.0.0.1 is always a local address.
    from totd_faith.relay.ownaddrs import FIB_TRIE

    found = hostaddrs.own_addresses()
    if FIB_TRIE.exists():
        assert ipaddress.ip_address("127.0.0.1") in found
    assert hostaddrs.own_ipv6_addresses() <= found
    assert {a.version for a in found} >= ({4} if FIB_TRIE.exists() else set())
