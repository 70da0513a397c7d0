"""would_loop: does forwarding to an upstream reach one of our own listeners?"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from totd_faith.endpoints import Endpoint, loop_listener, parse_endpoint, would_loop

LOCAL = (
    ipaddress.ip_address("192.0.2.10"),
    ipaddress.ip_address("2001:db8::10"),
    ipaddress.ip_address("fe80::10"),
)


def ep(text: str) -> Endpoint:
    return parse_endpoint(text, 53)


@pytest.mark.parametrize(
    ("listen", "upstream"),
    [
        # the literal match the old check already caught
        ("127.0.0.1:5399", "127.0.0.1:5399"),
        ("[::1]:53", "[::1]:53"),
        # a wildcard listener receives loopback traffic of its family
        ("0.0.0.0:5399", "127.0.0.1:5399"),
        ("0.0.0.0:53", "127.0.0.53:53"),  # all of 127/8 is local (systemd-resolved's stub)
        ("[::]:53", "[::1]:53"),
        # ... and traffic to the host's own addresses
        ("0.0.0.0:53", "192.0.2.10:53"),
        ("[::]:53", "[2001:db8::10]:53"),
        ("[::]:53", "[fe80::10%eth0]:53"),
        # an IPv4-mapped upstream travels as IPv4
        ("0.0.0.0:53", "[::ffff:127.0.0.1]:53"),
        ("127.0.0.1:53", "[::ffff:127.0.0.1]:53"),
        ("0.0.0.0:53", "[::ffff:192.0.2.10]:53"),
        # a listener bound to an IPv4-mapped address receives that IPv4 address
        ("[::ffff:127.0.0.1]:53", "127.0.0.1:53"),
        # sending to the unspecified address reaches the host (Linux: 127.0.0.1 / ::1)
        ("0.0.0.0:53", "0.0.0.0:53"),
        ("127.0.0.1:53", "0.0.0.0:53"),
        ("[::]:53", "[::]:53"),
        ("[::1]:53", "[::]:53"),
    ],
)
def test_loops(listen: str, upstream: str) -> None:
    assert would_loop(ep(listen), ep(upstream), LOCAL)


@pytest.mark.parametrize(
    ("listen", "upstream"),
    [
        # another port is another server
        ("0.0.0.0:5399", "127.0.0.1:5300"),
        ("127.0.0.1:53", "127.0.0.1:5353"),
        # a specific listener does not see other local addresses
        ("127.0.0.1:53", "127.0.0.53:53"),
        ("127.0.0.1:53", "192.0.2.10:53"),
        ("[::1]:53", "[2001:db8::10]:53"),
        # a remote resolver
        ("0.0.0.0:53", "192.0.2.53:53"),
        ("[::]:53", "[2001:db8::53]:53"),
        # IPV6_V6ONLY listeners: [::] does not receive IPv4, 0.0.0.0 does not receive IPv6
        ("[::]:53", "127.0.0.1:53"),
        ("[::]:53", "[::ffff:127.0.0.1]:53"),
        ("0.0.0.0:53", "[::1]:53"),
        ("0.0.0.0:53", "[2001:db8::10]:53"),
        ("0.0.0.0:53", "[::]:53"),
    ],
)
def test_does_not_loop(listen: str, upstream: str) -> None:
    assert not would_loop(ep(listen), ep(upstream), LOCAL)


def test_local_addresses_matter_only_for_wildcard_listeners() -> None:
    assert not would_loop(ep("0.0.0.0:53"), ep("192.0.2.10:53"))
    assert would_loop(ep("0.0.0.0:53"), ep("192.0.2.10:53"), [ipaddress.ip_address("192.0.2.10")])
    # an IPv4-mapped entry in the list counts as the IPv4 address
    mapped = [ipaddress.ip_address("::ffff:192.0.2.10")]
    assert would_loop(ep("0.0.0.0:53"), ep("192.0.2.10:53"), mapped)


@pytest.mark.parametrize("upstream", ["127.0.0.1:53", "192.0.2.10:53", "[::ffff:127.0.0.1]:53"])
def test_dual_stack_wildcard_receives_ipv4(upstream: str) -> None:
    assert would_loop(ep("[::]:53"), ep(upstream), LOCAL, dual_stack=True)
    assert not would_loop(ep("[::]:53"), ep(upstream), LOCAL, dual_stack=False)


def test_dual_stack_does_not_widen_specific_or_ipv4_listeners() -> None:
    assert not would_loop(ep("[::1]:53"), ep("127.0.0.1:53"), LOCAL, dual_stack=True)
    assert not would_loop(ep("0.0.0.0:53"), ep("[::1]:53"), LOCAL, dual_stack=True)


def test_local_addresses_may_be_a_one_shot_iterable() -> None:
    listens = [ep("127.0.0.1:53"), ep("0.0.0.0:53")]
    found = loop_listener(listens, ep("192.0.2.10:53"), iter(LOCAL))
    assert found == ep("0.0.0.0:53")
    assert loop_listener(listens, ep("192.0.2.53:53"), iter(LOCAL)) is None


addresses = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
)
ports = st.integers(1, 65535)


@given(addresses, ports, ports)
def test_every_endpoint_reaches_itself_and_no_other_port(host: str, port: int, other: int) -> None:
    endpoint = ep(f"{host}:{port}")
    assert would_loop(endpoint, endpoint)
    if other != port:
        assert not would_loop(endpoint, ep(f"{host}:{other}"), LOCAL, dual_stack=True)
