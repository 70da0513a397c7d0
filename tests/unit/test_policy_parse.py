"""Network ACL parsing: networks, NetworkSet membership (v4-mapped clients), relay rules."""

from __future__ import annotations

import ipaddress

import pytest

from totd_faith.errors import AddressError
from totd_faith.policy import LOCAL_NETWORKS, NetworkSet, RelayRule, parse_network, unmap

ip = ipaddress.ip_address
net = ipaddress.ip_network


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.0/24", "192.0.2.0/24"),
        ("2001:db8::/32", "2001:db8::/32"),
        ("192.0.2.7", "192.0.2.7/32"),
        ("2001:db8::7", "2001:db8::7/128"),
        (" fd00::/8 ", "fd00::/8"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("::/0", "::/0"),
    ],
)
def test_parse_network(text: str, expected: str) -> None:
    assert parse_network(text) == net(expected)


def test_host_bits_set_suggests_the_network() -> None:
    with pytest.raises(AddressError, match=r"'192.0.2.1/24' has host bits set \(did you mean "):
        parse_network("192.0.2.1/24")
    with pytest.raises(AddressError, match="2001:db8::/32"):
        parse_network("2001:db8::1/32")


@pytest.mark.parametrize("text", ["", "banana", "192.0.2.0/33", "2001:db8::/129", "192.0.2/24"])
def test_bad_networks(text: str) -> None:
    with pytest.raises(AddressError, match="is not an IP network"):
        parse_network(text)


def test_unmap() -> None:
    assert unmap(ip("::ffff:192.0.2.1")) == ip("192.0.2.1")
    assert unmap(ip("2001:db8::1")) == ip("2001:db8::1")
    assert unmap(ip("192.0.2.1")) == ip("192.0.2.1")
    # Only ::ffff:0:0/96 is mapped; the deprecated compatible form ::a.b.c.d is not.
    assert unmap(ip("::192.0.2.1")) == ip("::192.0.2.1")


def test_network_set_membership() -> None:
    acl = NetworkSet.parse(["192.0.2.0/24", "2001:db8:1::/48"])
    assert ip("192.0.2.200") in acl
    assert ip("198.51.100.1") not in acl
    assert ip("2001:db8:1:ffff::1") in acl
    assert ip("2001:db8:2::1") not in acl
    # A dual-stack socket reports IPv4 clients as IPv4-mapped addresses.
    assert ip("::ffff:192.0.2.9") in acl
    assert ip("::ffff:198.51.100.1") not in acl
    # Non-addresses are never members.
    assert "192.0.2.1" not in acl
    assert None not in acl
    assert str(acl) == "192.0.2.0/24, 2001:db8:1::/48"


def test_empty_set_and_everyone() -> None:
    assert ip("127.0.0.1") not in NetworkSet(())
    everyone = NetworkSet.parse(["0.0.0.0/0", "::/0"])
    assert ip("203.0.113.1") in everyone and ip("2001:db8::1") in everyone


def test_network_set_reports_the_bad_item() -> None:
    with pytest.raises(AddressError, match="'10.0.0.1/8' has host bits set"):
        NetworkSet.parse(["192.0.2.0/24", "10.0.0.1/8"])


def test_local_networks_are_local_only() -> None:
    local = NetworkSet.parse(LOCAL_NETWORKS)
    for address in ("127.0.0.1", "::1", "10.1.2.3", "172.16.0.1", "192.168.1.2", "fe80::1"):
        assert ip(address) in local, address
    assert ip("fd00::1") in local and ip("::ffff:127.0.0.1") in local
    for address in ("192.0.2.1", "2001:db8::1", "198.51.100.1", "64:ff9b::c000:201"):
        assert ip(address) not in local, address


@pytest.mark.parametrize(
    ("text", "client", "permit", "destination"),
    [
        ("fd00::/8 permit 192.0.2.0/24", "fd00::/8", True, "192.0.2.0/24"),
        ("2001:db8::/32 deny 0.0.0.0/0", "2001:db8::/32", False, "0.0.0.0/0"),
        ("  ::/0   permit   198.51.100.7  ", "::/0", True, "198.51.100.7/32"),
    ],
)
def test_relay_rule_parse(text: str, client: str, permit: bool, destination: str) -> None:
    rule = RelayRule.parse(text)
    assert rule == RelayRule(net(client), permit, net(destination))
    assert RelayRule.parse(str(rule)) == rule


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "is not a rule"),
        ("fd00::/8 permit", "is not a rule"),
        ("fd00::/8 allow 192.0.2.0/24", "is not a rule"),
        ("fd00::/8 permit 192.0.2.0/24 extra", "is not a rule"),
        ("fd00::1/8 permit 192.0.2.0/24", "has host bits set"),
        ("fd00::/8 deny 192.0.2.0/33", "is not an IP network"),
    ],
)
def test_relay_rule_errors(text: str, problem: str) -> None:
    with pytest.raises(AddressError, match=problem) as info:
        RelayRule.parse(text)
    if problem == "is not a rule":
        assert "CLIENT-NET permit|deny DEST-NET" in str(info.value)
