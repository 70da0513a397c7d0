"""Address syntax: ``127.0.0.1:53``, ``[::1]:53`` and bare addresses with a default port."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from totd_faith.endpoints import Endpoint, parse_endpoint, parse_port
from totd_faith.errors import AddressError, OperatorError

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address


@pytest.mark.parametrize(
    ("text", "default", "host", "port"),
    [
        ("127.0.0.1:53", None, "127.0.0.1", 53),
        ("[::1]:53", None, "::1", 53),
        ("[2001:db8::1]:5353", 53, "2001:db8::1", 5353),
        ("192.0.2.1", 53, "192.0.2.1", 53),
        ("[::1]", 853, "::1", 853),
        ("::1", 53, "::1", 53),
        ("2001:db8::53", 5353, "2001:db8::53", 5353),
        (" 192.0.2.1:80 ", None, "192.0.2.1", 80),
        ("[::ffff:192.0.2.1]:80", None, "::ffff:192.0.2.1", 80),
        ("0.0.0.0:65535", None, "0.0.0.0", 65535),
    ],
)
def test_parse_endpoint(text: str, default: int | None, host: str, port: int) -> None:
    endpoint = parse_endpoint(text, default)
    assert endpoint == Endpoint(ipaddress.ip_address(host), port)


@pytest.mark.parametrize(
    ("text", "default", "problem"),
    [
        ("192.0.2.1", None, "a port is required"),
        ("::1", None, "a port is required"),
        ("[::1", 53, "missing ']'"),
        ("[::1]53", 53, "expected ':PORT' after ']'"),
        ("[::1]:", 53, "is not a port number"),
        ("192.0.2.1:0", None, "is not a port number"),
        ("192.0.2.1:65536", None, "is not a port number"),
        ("192.0.2.1:http", None, "is not a port number"),
        ("example.org:53", None, "is not an address"),
        ("192.0.2.300:53", None, "is not an address"),
        ("192.0.2.1:53:1", None, "is not an address"),
        ("", 53, "is not an address"),
    ],
)
def test_bad_endpoints(text: str, default: int | None, problem: str) -> None:
    with pytest.raises(AddressError, match=problem):
        parse_endpoint(text, default)


def test_str_and_sockaddr() -> None:
    v4 = Endpoint(V4("192.0.2.1"), 53)
    v6 = Endpoint(V6("2001:db8::1"), 53)
    assert str(v4) == "192.0.2.1:53"
    assert str(v6) == "[2001:db8::1]:53"
    assert v4.sockaddr == ("192.0.2.1", 53)
    assert v6.sockaddr == ("2001:db8::1", 53)
    assert not v4.family_is_v6 and v6.family_is_v6


def test_endpoints_are_hashable_and_ordered() -> None:
    a = Endpoint(V4("192.0.2.1"), 53)
    b = Endpoint(V4("192.0.2.1"), 54)
    assert sorted([b, a]) == [a, b]
    assert len({a, parse_endpoint("192.0.2.1:53")}) == 1


@given(
    st.one_of(
        st.integers(0, 2**32 - 1).map(V4),
        st.integers(0, 2**128 - 1).map(V6),
    ),
    st.integers(1, 65535),
)
def test_str_round_trips(host: V4 | V6, port: int) -> None:
    endpoint = Endpoint(host, port)
    assert parse_endpoint(str(endpoint)) == endpoint
    # A different default port never overrides an explicit one.
    assert parse_endpoint(str(endpoint), 1 if port != 1 else 2) == endpoint


@pytest.mark.parametrize(("text", "port"), [("53", 53), (" 80 ", 80), (1, 1), (65535, 65535)])
def test_parse_port(text: str | int, port: int) -> None:
    assert parse_port(text) == port


@pytest.mark.parametrize("text", ["0", "65536", "-1", "http", "", "5.3", True, False])
def test_bad_ports(text: str | int) -> None:
    with pytest.raises(AddressError, match="is not a port number"):
        parse_port(text)


def test_address_errors_are_operator_errors() -> None:
    with pytest.raises(OperatorError):
        parse_endpoint("nonsense")
