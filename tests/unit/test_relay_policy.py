"""Relay access decisions (issue 4 'Access control'): clients, ordered rules, built-in denials."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, ip_address

import pytest

from totd_faith.config import from_table
from totd_faith.policy import NEVER_RELAYED, RelayAccess
from totd_faith.prefix import Nat64Prefix

NSP = Nat64Prefix.parse("2001:db8:64::/96")
WKP = Nat64Prefix.parse("64:ff9b::/96")
CLIENT = IPv6Address("fd00::10")
OWN = frozenset({IPv4Address("192.0.2.1"), IPv4Address("198.51.100.1")})


def access(rules: list[str] | None = None, clients: list[str] | None = None) -> RelayAccess:
    relay: dict[str, object] = {"rules": rules or []}
    if clients is not None:
        relay["clients"] = clients
    return RelayAccess.from_config(from_table({"relay": relay}), OWN)


def check(a: RelayAccess, dest: str, client: str = "fd00::10", prefix: Nat64Prefix | None = NSP):
    return a.check(ip_address(client), IPv4Address(dest), prefix)


def test_default_permits_local_client_to_ordinary_destination() -> None:
    verdict = check(access(), "198.51.100.7")
    assert verdict.permit
    assert verdict.reason == "no rule matched"


def test_client_outside_relay_clients_is_denied() -> None:
    verdict = check(access(), "198.51.100.7", client="2001:db8:1::1")
    assert not verdict.permit
    assert verdict.reason == "client not in relay.clients"


def test_ipv4_mapped_client_is_unmapped() -> None:
    a = access(clients=["192.168.0.0/16"])
    assert check(a, "198.51.100.7", client="::ffff:192.168.1.2").permit
    assert not check(a, "198.51.100.7", client="::ffff:10.1.2.3").permit


def test_first_match_wins() -> None:
    a = access(["fd00::/8 deny 198.51.100.0/24", "fd00::/8 permit 198.51.100.7"])
    verdict = check(a, "198.51.100.7")
    assert (verdict.permit, verdict.reason) == (False, "relay.rules[0]")
    a = access(["fd00::/8 permit 198.51.100.7", "fd00::/8 deny 198.51.100.0/24"])
    verdict = check(a, "198.51.100.7")
    assert (verdict.permit, verdict.reason) == (True, "relay.rules[0]")
    assert check(a, "198.51.100.8").reason == "relay.rules[1]"


def test_rule_client_network_must_match() -> None:
    a = access(["fd00:1::/32 deny 0.0.0.0/0"])
    assert check(a, "198.51.100.7", client="fd00:1::5").reason == "relay.rules[0]"
    assert check(a, "198.51.100.7", client="fd00:2::5").permit


def test_faithd_style_default_deny_with_explicit_permits() -> None:
    a = access(["fd00::/8 permit 192.0.2.10", "::/0 deny 0.0.0.0/0"])
    assert check(a, "192.0.2.10").permit
    verdict = check(a, "192.0.2.11")
    assert (verdict.permit, verdict.reason) == (False, "relay.rules[1]")


@pytest.mark.parametrize(("network", "name"), [(str(n), name) for n, name in NEVER_RELAYED])
def test_every_never_relayed_block_is_denied_by_default(network: str, name: str) -> None:
    block = IPv4Network(network)
    # The last address but one: 240.0.0.0/4 ends with the broadcast address,
    # which has its own, more specific name.
    first, last = str(block.network_address), str(block[-2] if block.prefixlen < 32 else block[0])
    for dest in (first, last):
        verdict = check(access(), dest)
        assert not verdict.permit, dest
        assert verdict.reason == f"{name} destination {network}"


@pytest.mark.parametrize(
    "dest", ["127.0.0.1", "0.0.0.0", "169.254.1.1", "224.0.0.1", "240.0.0.1", "255.255.255.255"]
)
def test_permit_everything_does_not_open_protected_blocks(dest: str) -> None:
    a = access(["::/0 permit 0.0.0.0/0"])
    verdict = check(a, dest)
    assert not verdict.permit
    assert "destination" in verdict.reason


def test_permit_naming_loopback_opens_it() -> None:
    a = access(["::/0 permit 0.0.0.0/0", "fd00::/8 permit 127.0.0.0/8"])
    verdict = check(a, "127.0.0.1")
    assert (verdict.permit, verdict.reason) == (True, "relay.rules[1]")
    a = access(["fd00::/8 permit 127.0.0.1"])
    assert check(a, "127.0.0.1").permit
    assert not check(a, "127.0.0.2").permit  # the host route names only itself


def test_wider_permit_than_block_does_not_name_it() -> None:
    # 96.0.0.0/3 covers 127/8 but is not inside it.
    assert not check(access(["::/0 permit 96.0.0.0/3"]), "127.0.0.1").permit


def test_deny_rule_still_decides_for_protected_destination() -> None:
    a = access(["fd00::/8 deny 0.0.0.0/0", "fd00::/8 permit 127.0.0.1"])
    verdict = check(a, "127.0.0.1")
    assert (verdict.permit, verdict.reason) == (False, "relay.rules[0]")


def test_own_addresses_are_a_loop_and_denied() -> None:
    for dest in OWN:
        verdict = check(access(["::/0 permit 0.0.0.0/0"]), str(dest))
        assert not verdict.permit
        assert verdict.reason == f"destination {dest} is this relay host"
    # A /24 holding the own address does not name it; the host route does.
    assert not check(access(["::/0 permit 192.0.2.0/24"]), "192.0.2.1").permit
    assert check(access(["::/0 permit 192.0.2.0/24"]), "192.0.2.2").permit
    assert check(access(["::/0 permit 192.0.2.1/32"]), "192.0.2.1").permit


def test_well_known_prefix_refuses_non_global_destinations() -> None:
    # RFC 6052 section 3.1, even when a rule permits it explicitly.
    a = access(["::/0 permit 10.0.0.0/8"])
    verdict = check(a, "10.1.2.3", prefix=WKP)
    assert not verdict.permit
    assert "well-known prefix" in verdict.reason
    assert check(a, "10.1.2.3", prefix=NSP).permit
    assert check(access(), "8.8.8.8", prefix=WKP).permit


def test_port_maps_skip_destination_denials_but_not_clients() -> None:
    a = access(["::/0 deny 0.0.0.0/0"])
    verdict = check(a, "127.0.0.1", prefix=None)
    assert (verdict.permit, verdict.reason) == (True, "relay.maps target")
    assert not check(a, "127.0.0.1", client="2001:db8::1", prefix=None).permit


def test_ipv4_client_rules_do_not_match_ipv6_clients() -> None:
    a = access(["0.0.0.0/0 deny 0.0.0.0/0"])
    assert check(a, "198.51.100.7").permit
