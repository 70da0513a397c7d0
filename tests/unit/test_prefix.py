"""RFC 6052 address mapping: the section 2.4 table, properties over every length, errors."""

from __future__ import annotations

import ipaddress

import dns.name
import dns.reversename
import pytest
from hypothesis import given
from hypothesis import strategies as st

from totd_faith.errors import AddressError, PrefixError
from totd_faith.prefix import (
    ALLOWED_LENGTHS,
    LOCAL_USE_PREFIX,
    WELL_KNOWN_PREFIX,
    Nat64Prefix,
    parse_ipv4,
    parse_ipv6,
)

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address
V6Net = ipaddress.IPv6Network

# RFC 6052 section 2.4, Table 1: the same IPv4 address under each Network-Specific Prefix.
RFC6052_TABLE = [
    ("2001:db8::/32", "192.0.2.33", "2001:db8:c000:221::"),
    ("2001:db8:100::/40", "192.0.2.33", "2001:db8:1c0:2:21::"),
    ("2001:db8:122::/48", "192.0.2.33", "2001:db8:122:c000:2:2100::"),
    ("2001:db8:122:300::/56", "192.0.2.33", "2001:db8:122:3c0:0:221::"),
    ("2001:db8:122:344::/64", "192.0.2.33", "2001:db8:122:344:c0:2:2100:0"),
    ("2001:db8:122:344::/96", "192.0.2.33", "2001:db8:122:344::192.0.2.33"),
]


@pytest.mark.parametrize(("prefix", "v4", "v6"), RFC6052_TABLE)
def test_rfc6052_table_1(prefix: str, v4: str, v6: str) -> None:
    nat64 = Nat64Prefix.parse(prefix)
    assert nat64.embed(V4(v4)) == V6(v6)
    assert nat64.extract(V6(v6)) == V4(v4)
    assert V6(v6) in nat64


def test_rfc6052_table_2_well_known_prefix() -> None:
    # Table 2 embeds 192.0.2.33 in 64:ff9b::/96; the address is documentation space, which
    # section 3.1 forbids in the Well-Known Prefix, so the example needs the check off.
    wkp = Nat64Prefix.parse("64:ff9b::/96")
    assert wkp.is_well_known
    assert wkp.embed(V4("192.0.2.33"), check_global=False) == V6("64:ff9b::192.0.2.33")
    with pytest.raises(PrefixError, match="section 3.1"):
        wkp.embed(V4("192.0.2.33"))


# -- an independent bit-string model of section 2.2 ------------------------------------------


def reference_embed(network: ipaddress.IPv6Network, v4: V4) -> V6:
    """Section 2.2 literally: prefix bits, then the IPv4 bits with bits 64-71 skipped."""
    bits = list(format(int(network.network_address), "0128b")[: network.prefixlen])
    for bit in format(int(v4), "032b"):
        if len(bits) == 64:
            bits += ["0"] * 8  # the u-octet
        bits.append(bit)
    bits += ["0"] * (128 - len(bits))  # the suffix
    return V6(int("".join(bits), 2))


def prefix_strategy(length: int) -> st.SearchStrategy[Nat64Prefix]:
    def build(value: int) -> Nat64Prefix:
        value &= ((1 << length) - 1) << (128 - length)
        if length == 96:
            value &= ~(0xFF << 56)  # the u-octet must be zero
        return Nat64Prefix(ipaddress.IPv6Network((value, length)))

    return st.integers(0, 2**128 - 1).map(build)


prefixes = st.sampled_from(ALLOWED_LENGTHS).flatmap(prefix_strategy)
ipv4s = st.integers(0, 2**32 - 1).map(V4)


@given(prefixes, ipv4s)
def test_embed_matches_the_section_2_2_bit_layout(nat64: Nat64Prefix, v4: V4) -> None:
    assert nat64.embed(v4, check_global=False) == reference_embed(nat64.network, v4)


@given(prefixes, ipv4s)
def test_embed_extract_round_trip(nat64: Nat64Prefix, v4: V4) -> None:
    v6 = nat64.embed(v4, check_global=False)
    assert v6 in nat64
    assert nat64.extract(v6) == v4
    # The u-octet (bits 64-71) of every synthesized address is zero.
    assert (int(v6) >> 56) & 0xFF == 0
    # The integer hot paths agree with the checked ones.
    assert nat64.embed_int(int(v4)) == int(v6)
    assert nat64.extract_int(int(v6)) == int(v4)


@given(prefixes, ipv4s)
def test_prefix_parses_from_its_own_text(nat64: Nat64Prefix, v4: V4) -> None:
    again = Nat64Prefix.parse(str(nat64))
    assert again == nat64
    assert again.embed(v4, check_global=False) == nat64.embed(v4, check_global=False)


@given(st.sampled_from([32, 40, 48, 56, 64]).flatmap(prefix_strategy), ipv4s)
def test_extract_ignores_suffix_bits(nat64: Nat64Prefix, v4: V4) -> None:
    # Section 2.2: the suffix bits are reserved; translators SHOULD ignore them.
    v6 = V6(int(nat64.embed(v4, check_global=False)) | 0xFF)
    assert nat64.extract(v6) == v4


# -- rejected prefixes and addresses -------------------------------------------------------


@pytest.mark.parametrize("length", [n for n in range(129) if n not in ALLOWED_LENGTHS])
def test_rejected_lengths(length: int) -> None:
    network = ipaddress.IPv6Network(("2001:db8::", length), strict=False)
    with pytest.raises(PrefixError, match=f"/{length} is not allowed by RFC 6052 section 2.2"):
        Nat64Prefix.parse(str(network))


@pytest.mark.parametrize(
    "text",
    [
        "2001:db8:122:344:100::/96",
        # The classic faithd-era prefix carries 0x59 in bits 64-71: not RFC 6052 valid.
        "2001:200:161:1400:5999::/96",
        "64:ff9b:0:0:ff00::/96",
    ],
)
def test_non_zero_u_octet_in_a_96_is_rejected(text: str) -> None:
    with pytest.raises(PrefixError, match="bits 64-71"):
        Nat64Prefix.parse(text)


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [("2001:db8::1/96", "2001:db8::/96"), ("2001:db8:1:2::/32", "2001:db8::/32")],
)
def test_host_bits_set(text: str, suggestion: str) -> None:
    with pytest.raises(PrefixError, match="bits after the prefix length must be zero") as info:
        Nat64Prefix.parse(text)
    assert suggestion in str(info.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("2001:db8::", "needs a length"),
        ("192.0.2.0/24", "is not an IPv6 prefix"),
        ("banana/96", "is not an IPv6 prefix"),
        ("2001:db8::/129", "is not an IPv6 prefix"),
    ],
)
def test_malformed_prefixes(text: str, problem: str) -> None:
    with pytest.raises(PrefixError, match=problem):
        Nat64Prefix.parse(text)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("10.0.0.0/8", "is not an IPv6 prefix (it is an IPv4 network)"),
        ("192.0.2.1", "is not an IPv6 prefix (it is an IPv4 address)"),
        ("banana/96", "is not an IPv6 prefix"),
        ("2001:zz::/96", "is not an IPv6 prefix"),
    ],
)
def test_malformed_prefix_errors_say_what_a_prefix_is(text: str, kind: str) -> None:
    with pytest.raises(PrefixError) as info:
        Nat64Prefix.parse(text)
    message = str(info.value)
    assert message.startswith(f"{text!r} {kind}; ")
    assert "IPv6 prefix of length 32, 40, 48, 56, 64 or 96 (RFC 6052 section 2.2)" in message
    assert "e.g. 64:ff9b::/96" in message
    # not ipaddress's own wording ("At least 3 parts expected", "Only hex digits ...")
    assert "expected" not in message and "permitted" not in message


def test_prefix_errors_are_operator_errors() -> None:
    # The CLI turns AddressError into a one-line message; ValueError keeps callers simple.
    with pytest.raises(AddressError):
        Nat64Prefix.parse("2001:db8::/60")
    with pytest.raises(ValueError):
        Nat64Prefix.parse("2001:db8::/60")


def test_extract_outside_the_prefix() -> None:
    nat64 = Nat64Prefix.parse("2001:db8:64::/96")
    with pytest.raises(PrefixError, match="is not inside the prefix 2001:db8:64::/96"):
        nat64.extract(V6("2001:db8:65::c000:221"))


@pytest.mark.parametrize("length", [32, 40, 48, 56, 64])
def test_extract_refuses_a_non_zero_u_octet(length: int) -> None:
    nat64 = Nat64Prefix.parse(f"2001:db8::/{length}")
    good = nat64.embed(V4("192.0.2.33"), check_global=False)
    bad = V6(int(good) | (0x01 << 56))
    assert bad in nat64
    with pytest.raises(PrefixError, match="u-octet"):
        nat64.extract(bad)


def test_membership() -> None:
    nat64 = Nat64Prefix.parse("2001:db8:64::/96")
    assert V6("2001:db8:64::1") in nat64
    assert V6("2001:db8:64:0:0:1::1") not in nat64
    assert V4("192.0.2.1") not in nat64
    assert "2001:db8:64::1" not in nat64  # text is not an address


def test_named_prefixes() -> None:
    assert Nat64Prefix(WELL_KNOWN_PREFIX).is_well_known
    local = Nat64Prefix(LOCAL_USE_PREFIX)  # RFC 8215 64:ff9b:1::/48 is a valid /48
    assert not local.is_well_known
    assert local.embed(V4("10.1.2.3")) == V6("64:ff9b:1:a01:2:300::")


def test_may_embed_follows_section_3_1() -> None:
    wkp = Nat64Prefix.parse("64:ff9b::/96")
    nsp = Nat64Prefix.parse("2001:db8:64::/96")
    assert wkp.may_embed(V4("192.0.0.9"))  # globally reachable anycast
    assert not wkp.may_embed(V4("10.0.0.1"))
    assert not wkp.may_embed(V4("127.0.0.1"))
    assert wkp.may_embed(V4("192.0.0.170"))  # RFC 7050 discovery
    assert wkp.may_embed(V4("192.0.0.171"))
    assert nsp.may_embed(V4("10.0.0.1"))  # a Network-Specific Prefix may carry anything
    with pytest.raises(PrefixError, match="Network-Specific Prefix"):
        wkp.embed(V4("192.168.1.2"))
    assert nsp.embed(V4("192.168.1.2")) == V6("2001:db8:64::c0a8:102")


def test_parse_ipv4_and_ipv6() -> None:
    assert parse_ipv4(" 192.0.2.1 ") == V4("192.0.2.1")
    assert parse_ipv6("2001:db8::1") == V6("2001:db8::1")
    with pytest.raises(PrefixError, match="'192.0.2.300' is not an IPv4 address"):
        parse_ipv4("192.0.2.300")
    with pytest.raises(PrefixError, match="is not an IPv6 address"):
        parse_ipv6("192.0.2.1")


# -- reverse names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "origin"),
    [
        ("2001:db8::/32", "8.b.d.0.1.0.0.2.ip6.arpa."),
        ("2001:db8:100::/40", "1.0.8.b.d.0.1.0.0.2.ip6.arpa."),
        ("2001:db8:122::/48", "2.2.1.0.8.b.d.0.1.0.0.2.ip6.arpa."),
        ("2001:db8:122:300::/56", "3.0.2.2.1.0.8.b.d.0.1.0.0.2.ip6.arpa."),
        ("2001:db8:122:344::/64", "4.4.3.0.2.2.1.0.8.b.d.0.1.0.0.2.ip6.arpa."),
        ("64:ff9b::/96", "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.b.9.f.f.4.6.0.0.ip6.arpa."),
    ],
)
def test_reverse_origin(prefix: str, origin: str) -> None:
    assert Nat64Prefix.parse(prefix).reverse_origin == dns.name.from_text(origin)


def test_reverse_names_of_the_cvsup_example() -> None:
    nat64 = Nat64Prefix.parse("2001:db8:5999::/96")
    v6 = nat64.embed(V4("192.168.1.2"))
    name = nat64.reverse_name(v6)
    assert name == dns.name.from_text(
        "2.0.1.0.8.a.0.c.0.0.0.0.0.0.0.0.0.0.0.0.9.9.9.5.8.b.d.0.1.0.0.2.ip6.arpa."
    )
    assert nat64.reverse_v4_name(v6) == dns.name.from_text("2.1.168.192.in-addr.arpa.")
    assert nat64.address_from_reverse(name) == v6


@given(prefixes, ipv4s)
def test_reverse_round_trip(nat64: Nat64Prefix, v4: V4) -> None:
    v6 = nat64.embed(v4, check_global=False)
    name = nat64.reverse_name(v6)
    assert name.is_subdomain(nat64.reverse_origin)
    assert nat64.address_from_reverse(name) == v6
    assert nat64.reverse_v4_name(v6) == dns.reversename.from_address(str(v4))


def test_address_from_reverse_rejects_other_names() -> None:
    nat64 = Nat64Prefix.parse("2001:db8:64::/96")
    inside = nat64.reverse_name(nat64.embed(V4("192.0.2.1")))
    outside = nat64.reverse_name(V6("2001:db8:65::c000:201"))
    assert nat64.address_from_reverse(outside) is None
    # A partial name (a delegation point, not an address) stands for no single address.
    assert nat64.address_from_reverse(inside.parent()) is None
    assert nat64.address_from_reverse(nat64.reverse_origin) is None
    # 32 labels, but one of them is not a hex digit.
    bogus = dns.name.Name(("x",) + inside.labels[1:])
    assert nat64.address_from_reverse(bogus) is None
    assert nat64.address_from_reverse(dns.name.from_text("1.2.0.192.in-addr.arpa.")) is None


def test_reverse_names_stay_in_ip6_arpa_for_mapped_looking_addresses() -> None:
    # Found by test_reverse_round_trip: ::/56 puts 0.0.255.255 at ::ffff:0:0, which
    # dnspython's from_address would have named 0.0.0.0.in-addr.arpa.
    nat64 = Nat64Prefix.parse("::/56")
    v6 = nat64.embed(V4("0.0.255.255"), check_global=False)
    assert v6 == V6("::ffff:0:0")
    name = nat64.reverse_name(v6)
    assert name == dns.name.from_text("0." * 8 + "f.f.f.f." + "0." * 20 + "ip6.arpa.")
    assert nat64.address_from_reverse(name) == v6
    mapped = Nat64Prefix.parse("::ffff:0:0/96")
    assert mapped.reverse_origin == dns.name.from_text("f.f.f.f." + "0." * 20 + "ip6.arpa.")


# -- may_synthesize_into: can an embedded address land in a network (dns64.exclude)? --------------


@pytest.mark.parametrize(
    ("prefix", "network", "expected"),
    [
        ("::ffff:0:0/96", "::ffff:0:0/96", True),
        ("64:ff9b::/96", "::ffff:0:0/96", False),
        ("2001:db8::/32", "2001:db8:1::/48", True),  # 0.1.x.x lands there
        ("2001:db8:64::/96", "2001:db8::/32", True),  # the whole prefix is inside
        # overlapping networks, but the ones are in bits every embedded address has zero
        ("::/32", "::ffff:0:0/96", False),  # suffix bits 80-95
        ("2001:db8::/32", "2001:db8:0:0:100::/72", False),  # the u-octet
        ("2001:db8::/32", "2001:db8:0:0:ff::/80", False),  # /32: no v4 bits after it
        ("2001:db8::/56", "2001:db8:0:0:ff::/80", True),  # /56: v4 bits 72-95
    ],
)
def test_may_synthesize_into(prefix: str, network: str, expected: bool) -> None:
    assert Nat64Prefix.parse(prefix).may_synthesize_into(V6Net(network)) is expected


@given(prefixes, st.integers(0, 2**128 - 1), st.integers(0, 128), ipv4s)
def test_may_synthesize_into_agrees_with_embedding(
    nat64: Nat64Prefix, bits: int, length: int, v4: V4
) -> None:
    # A network near the prefix (its leading bits), so that overlaps are common.
    base = int(nat64.network.network_address) | (bits & ((1 << (128 - nat64.length)) - 1))
    network = V6Net((base >> (128 - length) << (128 - length), length))
    inner = network if length >= nat64.length else nat64.network
    witness = V6(nat64.embed_int(nat64.extract_int(int(inner.network_address))))
    if nat64.may_synthesize_into(network):
        assert witness in network
    else:
        assert witness not in network
        assert nat64.embed(v4, check_global=False) not in network
