"""RFC 6052 IPv4-embedded IPv6 addresses: the translation prefix type.

A :class:`Nat64Prefix` is parsed once, validated against RFC 6052, and then
maps IPv4 addresses into IPv6 addresses and back.  Pure computation: no I/O.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import dns.exception
import dns.name
import dns.reversename

from totd_faith.errors import PrefixError
from totd_faith.special_purpose import DISCOVERY_ADDRESSES, is_global_int

#: RFC 6052 section 2.2: "the prefix length MUST be one of 32, 40, 48, 56, 64 or 96".
ALLOWED_LENGTHS = (32, 40, 48, 56, 64, 96)

#: RFC 6052 section 2.1: the Well-Known Prefix.
WELL_KNOWN_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")

#: RFC 8215: the local-use IPv4/IPv6 translation prefix.
LOCAL_USE_PREFIX = ipaddress.IPv6Network("64:ff9b:1::/48")

# RFC 6052 section 2.2: bits 64 to 71 of the address (the "u" octet) are
# reserved and MUST be zero.  Counted from the least significant bit of the
# 128-bit integer, they are bits 56..63.
_U_OCTET_MASK = 0xFF << 56
_V4_MASK = 0xFFFF_FFFF
_DISCOVERY_INTS = frozenset(int(a) for a in DISCOVERY_ADDRESSES)


_WHAT_A_PREFIX_IS = (
    "a translation prefix is an IPv6 prefix of length 32, 40, 48, 56, 64 or 96 "
    "(RFC 6052 section 2.2), e.g. 64:ff9b::/96 or 2001:db8:64::/96"
)


def _is_ipv4(text: str) -> bool:
    """An IPv4 address or network, such as the 10.0.0.0/8 people sometimes try first."""
    try:
        ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        return False
    return True


def _v4_split(length: int) -> tuple[int, int]:
    """How many IPv4 bits go before and after the u-octet for ``length``."""
    before = max(0, 64 - length) if length < 96 else 0
    return before, 32 - before


@dataclass(frozen=True, slots=True)
class Nat64Prefix:
    """A validated RFC 6052 translation prefix (a Well-Known or Network-Specific Prefix).

    ``Nat64Prefix.parse("64:ff9b::/96").embed(IPv4Address("192.0.2.33"))``
    gives ``64:ff9b::c000:221``.
    """

    network: ipaddress.IPv6Network
    #: The prefix length in bits.
    length: int = field(init=False, repr=False, compare=False)
    #: True for 64:ff9b::/96, which RFC 6052 section 3.1 restricts to global IPv4.
    #: (Both are read per synthesized address: fields, not properties.)
    is_well_known: bool = field(init=False, repr=False, compare=False)
    _base: int = field(init=False, repr=False, compare=False)
    _before: int = field(init=False, repr=False, compare=False)
    _after: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        length = self.network.prefixlen
        if length not in ALLOWED_LENGTHS:
            raise PrefixError(
                f"{self.network}: prefix length /{length} is not allowed by RFC 6052 "
                "section 2.2 (use /32, /40, /48, /56, /64 or /96)"
            )
        base = int(self.network.network_address)
        if length == 96 and base & _U_OCTET_MASK:
            raise PrefixError(
                f"{self.network}: bits 64-71 (the u-octet) must be zero (RFC 6052 section 2.2)"
            )
        before, after = _v4_split(length)
        object.__setattr__(self, "length", length)
        object.__setattr__(self, "is_well_known", self.network == WELL_KNOWN_PREFIX)
        object.__setattr__(self, "_base", base)
        object.__setattr__(self, "_before", before)
        object.__setattr__(self, "_after", after)

    @classmethod
    def parse(cls, text: str) -> Nat64Prefix:
        """Parse ``"2001:db8:64::/96"``; raise :class:`PrefixError` naming the rule broken."""
        text = text.strip()
        if _is_ipv4(text):
            kind = "an IPv4 network" if "/" in text else "an IPv4 address"
            raise PrefixError(f"{text!r} is not an IPv6 prefix (it is {kind}); {_WHAT_A_PREFIX_IS}")
        if "/" not in text:
            raise PrefixError(f"{text!r}: a prefix needs a length, e.g. 64:ff9b::/96")
        try:
            network = ipaddress.IPv6Network(text, strict=False)
        except ValueError:
            # ipaddress's own text ("At least 3 parts expected ...") does not say what
            # a translation prefix is.
            raise PrefixError(f"{text!r} is not an IPv6 prefix; {_WHAT_A_PREFIX_IS}") from None
        if int(network.network_address) != int(ipaddress.IPv6Interface(text).ip):
            raise PrefixError(
                f"{text}: bits after the prefix length must be zero (did you mean {network}?)"
            )
        return cls(network)

    def __str__(self) -> str:
        return str(self.network)

    def may_embed(self, v4: ipaddress.IPv4Address) -> bool:
        """Whether RFC 6052 section 3.1 allows ``v4`` inside this prefix.

        The Well-Known Prefix "MUST NOT be used to represent non-global IPv4
        addresses"; the RFC 7050 discovery addresses 192.0.0.170/171 are the
        exception that lets hosts learn the prefix.
        """
        return self.may_embed_int(int(v4))

    def may_embed_int(self, v4: int) -> bool:
        """:meth:`may_embed` for an IPv4 address as an integer (the DNS64 hot path)."""
        return not self.is_well_known or is_global_int(v4) or v4 in _DISCOVERY_INTS

    def embed(
        self, v4: ipaddress.IPv4Address, *, check_global: bool = True
    ) -> ipaddress.IPv6Address:
        """The IPv4-embedded IPv6 address of ``v4`` (RFC 6052 section 2.2)."""
        if check_global and not self.may_embed(v4):
            raise PrefixError(
                f"{v4} is not a global IPv4 address and the Well-Known Prefix "
                f"{WELL_KNOWN_PREFIX} must not carry it (RFC 6052 section 3.1); "
                "use a Network-Specific Prefix"
            )
        return ipaddress.IPv6Address(self.embed_int(int(v4)))

    def embed_int(self, v4: int) -> int:
        """:meth:`embed` on integers, without the section 3.1 check (hot path)."""
        if self.length == 96:
            return self._base | v4
        after = self._after
        high = v4 >> after
        low = v4 & ((1 << after) - 1)
        return self._base | (high << 64) | (low << (56 - after))

    def may_synthesize_into(self, network: ipaddress.IPv6Network) -> bool:
        """Whether some IPv4 address embedded in this prefix lands inside ``network``.

        More than an overlap of the two networks: embedded addresses have a zero
        u-octet and zero suffix (RFC 6052 section 2.2), so e.g. ::/32 never
        produces an address in ::ffff:0:0/96, whose bits 80-95 are ones.
        """
        if not self.network.overlaps(network):
            return False
        if self.length == 96:
            return True
        suffix_bits = 56 - self._after
        always_zero = _U_OCTET_MASK | ((1 << suffix_bits) - 1)
        return int(network.network_address) & int(network.netmask) & always_zero == 0

    def __contains__(self, address: object) -> bool:
        return isinstance(address, ipaddress.IPv6Address) and address in self.network

    def extract(self, v6: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
        """The IPv4 address embedded in ``v6``; the inverse of :meth:`embed`.

        Suffix bits are ignored, as RFC 6052 section 2.2 says translators
        SHOULD; a non-zero u-octet is refused because it MUST be zero.
        """
        if v6 not in self.network:
            raise PrefixError(f"{v6} is not inside the prefix {self.network}")
        value = int(v6)
        if self.length != 96 and value & _U_OCTET_MASK:
            raise PrefixError(f"{v6}: bits 64-71 (the u-octet) must be zero (RFC 6052 section 2.2)")
        return ipaddress.IPv4Address(self.extract_int(value))

    def extract_int(self, value: int) -> int:
        """:meth:`extract` on integers, without checks (hot path)."""
        if self.length == 96:
            return value & _V4_MASK
        after = self._after
        high = (value >> 64) & ((1 << self._before) - 1)
        low = (value >> (56 - after)) & ((1 << after) - 1)
        return (high << after) | low

    # -- reverse DNS ---------------------------------------------------------

    @property
    def reverse_origin(self) -> dns.name.Name:
        """The ip6.arpa zone name of the prefix (every allowed length is nibble-aligned)."""
        full = ip6_arpa_name(self.network.network_address)
        nibbles_outside = (128 - self.length) // 4
        return full.split(len(full) - nibbles_outside)[1]

    @staticmethod
    def reverse_name(v6: ipaddress.IPv6Address) -> dns.name.Name:
        """The ip6.arpa name of ``v6``."""
        return ip6_arpa_name(v6)

    def reverse_v4_name(self, v6: ipaddress.IPv6Address) -> dns.name.Name:
        """The in-addr.arpa name of the IPv4 address embedded in ``v6`` (RFC 6147 section 5.3.1)."""
        return dns.reversename.from_address(str(self.extract(v6)))

    def address_from_reverse(self, name: dns.name.Name) -> ipaddress.IPv6Address | None:
        """The address a full 32-nibble ip6.arpa ``name`` stands for, if inside the prefix."""
        if not name.is_subdomain(self.reverse_origin) or len(name.labels) != 35:
            return None
        try:
            v6 = ipaddress.IPv6Address(dns.reversename.to_address(name))
        except (dns.exception.SyntaxError, ValueError):
            return None
        return v6 if v6 in self.network else None


def ip6_arpa_name(v6: ipaddress.IPv6Address) -> dns.name.Name:
    """The ip6.arpa nibble name of ``v6`` (RFC 3596 section 2.5).

    Not dns.reversename.from_address: it turns IPv4-mapped addresses (::ffff:0:0/96,
    reachable from prefixes such as ::/32) into in-addr.arpa names.
    """
    return dns.name.from_text(".".join(reversed(f"{int(v6):032x}")) + ".ip6.arpa.")


def parse_ipv4(text: str) -> ipaddress.IPv4Address:
    """Parse a dotted-quad IPv4 address with an error that says what is wrong."""
    try:
        return ipaddress.IPv4Address(text.strip())
    except ValueError:
        raise PrefixError(f"{text!r} is not an IPv4 address") from None


def parse_ipv6(text: str) -> ipaddress.IPv6Address:
    """Parse an IPv6 address with an error that says what is wrong."""
    try:
        return ipaddress.IPv6Address(text.strip())
    except ValueError:
        raise PrefixError(f"{text!r} is not an IPv6 address") from None
