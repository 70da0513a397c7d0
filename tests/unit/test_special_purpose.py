"""The IANA IPv4 special-purpose registry and the Well-Known Prefix rules built on it."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from totd_faith.prefix import Nat64Prefix
from totd_faith.special_purpose import (
    DISCOVERY_ADDRESSES,
    REGISTRY,
    SpecialBlock,
    is_global,
    is_global_int,
    lookup,
)

V4 = ipaddress.IPv4Address

# The "Globally Reachable" column of the IANA IPv4 Special-Purpose Address Registry
# (RFC 6890 section 2.2.2, updated by RFC 8190), written out independently of the module
# so that a changed or dropped entry shows up here; multicast is added on purpose.
EXPECTED_REACHABLE = {
    "0.0.0.0/8": False,
    "10.0.0.0/8": False,
    "100.64.0.0/10": False,
    "127.0.0.0/8": False,
    "169.254.0.0/16": False,
    "172.16.0.0/12": False,
    "192.0.0.0/24": False,
    "192.0.0.0/29": False,
    "192.0.0.8/32": False,
    "192.0.0.9/32": True,
    "192.0.0.10/32": True,
    "192.0.0.170/32": False,
    "192.0.0.171/32": False,
    "192.0.2.0/24": False,
    "192.31.196.0/24": True,
    "192.52.193.0/24": True,
    "192.88.99.0/24": False,
    "192.168.0.0/16": False,
    "192.175.48.0/24": True,
    "198.18.0.0/15": False,
    "198.51.100.0/24": False,
    "203.0.113.0/24": False,
    "224.0.0.0/4": False,
    "240.0.0.0/4": False,
    "255.255.255.255/32": False,
}


def test_registry_holds_exactly_the_expected_entries() -> None:
    assert {str(block.network) for block in REGISTRY} == set(EXPECTED_REACHABLE)


def _most_specific_others(block: SpecialBlock) -> list[ipaddress.IPv4Network]:
    return [
        other.network
        for other in REGISTRY
        if other is not block and other.network.subnet_of(block.network)
    ]


@pytest.mark.parametrize("block", REGISTRY, ids=lambda b: str(b.network))
def test_every_registry_entry(block: SpecialBlock) -> None:
    assert block.globally_reachable is EXPECTED_REACHABLE[str(block.network)]
    assert block.rfc.startswith("RFC ")
    assert block.name
    # Addresses of the block not covered by a more specific entry are classified by it.
    nested = _most_specific_others(block)
    net = block.network
    candidates = [
        net.network_address,
        net.broadcast_address,
        net.network_address + net.num_addresses // 2,
    ]
    own = [a for a in candidates if not any(a in inner for inner in nested)]
    assert own, f"no sample address of {net} is outside its nested entries"
    for address in own:
        assert lookup(address) is block
        assert is_global(address) is block.globally_reachable


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("0.1.2.3", False),
        ("10.255.255.255", False),
        ("100.63.255.255", True),
        ("100.64.0.1", False),
        ("100.127.255.255", False),
        ("100.128.0.0", True),
        ("127.0.0.1", False),
        ("169.254.1.1", False),
        ("172.15.255.255", True),
        ("172.16.0.1", False),
        ("172.31.255.255", False),
        ("172.32.0.0", True),
        ("192.0.0.1", False),
        ("192.0.0.8", False),
        ("192.0.0.11", False),
        ("192.0.0.255", False),
        ("192.0.1.0", True),
        ("192.0.2.33", False),
        ("192.31.196.1", True),
        ("192.52.193.1", True),
        ("192.88.99.1", False),
        ("192.168.1.2", False),
        ("192.175.48.1", True),
        ("198.17.255.255", True),
        ("198.18.0.1", False),
        ("198.19.255.255", False),
        ("198.20.0.0", True),
        ("198.51.100.1", False),
        ("203.0.113.1", False),
        ("223.255.255.255", True),
        ("224.0.0.1", False),
        ("239.255.255.255", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("1.1.1.1", True),
        ("9.9.9.9", True),
    ],
)
def test_is_global(address: str, expected: bool) -> None:
    assert is_global(V4(address)) is expected


def test_exceptions_inside_the_ietf_protocol_block() -> None:
    # 192.0.0.0/24 is not global, but its PCP and TURN anycast entries are (RFC 8190).
    assert not is_global(V4("192.0.0.100"))
    for address in ("192.0.0.9", "192.0.0.10"):
        block = lookup(V4(address))
        assert block is not None and block.network.prefixlen == 32
        assert is_global(V4(address))


def test_discovery_addresses_are_not_global_but_go_into_every_prefix() -> None:
    assert DISCOVERY_ADDRESSES == (V4("192.0.0.170"), V4("192.0.0.171"))
    wkp = Nat64Prefix.parse("64:ff9b::/96")
    for address in DISCOVERY_ADDRESSES:
        assert not is_global(address)
        block = lookup(address)
        assert block is not None and block.rfc == "RFC 7050"
        # RFC 7050 section 2.2: the DNS64 synthesizes them into the Well-Known Prefix too.
        assert wkp.may_embed(address)
    assert wkp.embed(V4("192.0.0.170")) == ipaddress.IPv6Address("64:ff9b::c000:aa")
    assert wkp.embed(V4("192.0.0.171")) == ipaddress.IPv6Address("64:ff9b::c000:ab")


def test_well_known_prefix_embeds_only_global_addresses() -> None:
    wkp = Nat64Prefix.parse("64:ff9b::/96")
    nsp = Nat64Prefix.parse("2001:db8:64::/96")
    for cidr in EXPECTED_REACHABLE:
        address = ipaddress.IPv4Network(cidr).network_address
        if address in DISCOVERY_ADDRESSES:
            continue
        assert wkp.may_embed(address) is is_global(address), cidr
        assert nsp.may_embed(address), cidr
    assert wkp.may_embed(V4("192.0.0.9")) and not wkp.may_embed(V4("192.0.0.8"))


# Addresses at and around every block's edges, and anywhere else.
_EDGES = [
    int(b.network.network_address) + delta
    for b in REGISTRY
    for delta in (-1, 0, 1, b.network.num_addresses - 1, b.network.num_addresses)
]


@given(st.one_of(st.sampled_from([e % 2**32 for e in _EDGES]), st.integers(0, 2**32 - 1)))
def test_integer_check_agrees_with_the_most_specific_block(address: int) -> None:
    # is_global_int's first-octet table must answer what the registry's most
    # specific covering entry says (RFC 6890 section 2.2.2), or "global" if none.
    block = lookup(V4(address))
    assert is_global_int(address) is (block is None or block.globally_reachable)
    wkp = Nat64Prefix.parse("64:ff9b::/96")
    assert wkp.may_embed_int(address) is wkp.may_embed(V4(address))
