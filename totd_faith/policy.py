"""Network access control: one ACL type for DNS clients and relay clients/destinations.

Pure data and decisions, no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from totd_faith.errors import AddressError

if TYPE_CHECKING:
    from totd_faith.config import Config
    from totd_faith.prefix import Nat64Prefix

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Clients served by default: loopback, link-local, RFC 1918 and ULA.  An open
#: resolver or an open relay is never the default.
LOCAL_NETWORKS: tuple[str, ...] = (
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "fe80::/10",
    "fc00::/7",
)


def parse_network(text: str) -> Network:
    """Parse ``192.0.2.0/24``, ``2001:db8::/32`` or a bare address (a host route)."""
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        if "has host bits set" in str(exc):
            fixed = ipaddress.ip_network(text.strip(), strict=False)
            raise AddressError(f"{text!r} has host bits set (did you mean {fixed}?)") from None
        raise AddressError(f"{text!r} is not an IP network") from None


def unmap(address: Address) -> Address:
    """An IPv4-mapped IPv6 address (``::ffff:a.b.c.d``, dual-stack sockets) as IPv4."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True, slots=True)
class NetworkSet:
    """An unordered set of networks; membership tests unmap IPv4-mapped clients."""

    networks: tuple[Network, ...]

    @classmethod
    def parse(cls, items: Iterable[str]) -> NetworkSet:
        return cls(tuple(parse_network(item) for item in items))

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            return False
        address = unmap(address)
        return any(address in network for network in self.networks)

    def __str__(self) -> str:
        return ", ".join(str(n) for n in self.networks)


@dataclass(frozen=True, slots=True)
class RelayRule:
    """One faithd.conf-style rule: ``CLIENT-NET permit|deny DEST-NET``."""

    client: Network
    permit: bool
    destination: Network

    @classmethod
    def parse(cls, text: str) -> RelayRule:
        words = text.split()
        if len(words) != 3 or words[1] not in ("permit", "deny"):
            raise AddressError(
                f"{text!r} is not a rule; write 'CLIENT-NET permit|deny DEST-NET', "
                "e.g. 'fd00::/8 permit 192.0.2.0/24'"
            )
        return cls(parse_network(words[0]), words[1] == "permit", parse_network(words[2]))

    def __str__(self) -> str:
        return f"{self.client} {'permit' if self.permit else 'deny'} {self.destination}"


# -- relay access decisions ---------------------------------------------------

#: Destinations the relay never reaches unless a permit rule names them (issue 4):
#: relaying to them would let an IPv6 client reach the relay host itself
#: (this-host, loopback), a link-local neighbour, a multicast group or an
#: unusable address.  Each entry says why, for logs.
NEVER_RELAYED: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (ipaddress.IPv4Network("0.0.0.0/8"), "this-network"),
    (ipaddress.IPv4Network("127.0.0.0/8"), "loopback"),
    (ipaddress.IPv4Network("169.254.0.0/16"), "link-local"),
    (ipaddress.IPv4Network("224.0.0.0/4"), "multicast"),
    # Broadcast before the reserved block that contains it: the most
    # specific name is the one logged.
    (ipaddress.IPv4Network("255.255.255.255/32"), "broadcast"),
    (ipaddress.IPv4Network("240.0.0.0/4"), "reserved"),
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The relay's answer for one connection; ``reason`` names what decided it."""

    permit: bool
    reason: str


@dataclass(frozen=True, slots=True)
class _Protected:
    """Why a destination is never relayed by default, and which networks 'name' it.

    A permit rule *names* a protected destination when the rule's destination
    network lies entirely inside ``block`` (for the special blocks: a rule for
    127.0.0.0/8 or 127.0.0.1/32 names loopback, 0.0.0.0/0 or 96.0.0.0/3 does
    not), so a broad permit never opens loopback, multicast or a loop back
    into the relay by accident.  For the relay's own addresses ``block`` is
    the /32 host route: only ``... permit 192.0.2.1/32`` (or the bare address)
    opens a relay to the host's own 192.0.2.1.
    """

    block: ipaddress.IPv4Network
    reason: str

    def named_by(self, destination: Network) -> bool:
        return isinstance(destination, ipaddress.IPv4Network) and destination.subnet_of(self.block)


def _rule_matches(rule: RelayRule, client: Address, destination: ipaddress.IPv4Address) -> bool:
    # ipaddress answers False across versions, so an IPv4 client network
    # never matches an IPv6 client and vice versa.
    return client in rule.client and destination in rule.destination


@dataclass(frozen=True, slots=True)
class RelayAccess:
    """Who may relay to where: ``relay.clients``, ``relay.rules`` and the built-in denials.

    Order of evaluation for one connection (client, IPv4 destination, prefix):

    1. the client must be inside ``relay.clients`` (local networks by default);
    2. with the Well-Known Prefix 64:ff9b::/96 a non-global destination is
       refused, whatever the rules say (RFC 6052 section 3.1: the WKP "MUST
       NOT be used to represent non-global IPv4 addresses"); explicit port
       maps (``prefix`` None) skip this and step 3's built-in denials, since
       their target is the operator's own choice;
    3. the rules, in order, first match wins (faithd.conf semantics).  For a
       *protected* destination (see :data:`NEVER_RELAYED` and the relay
       host's own addresses) a matching permit rule counts only when it names
       that destination (:class:`_Protected`); a matching permit rule that
       does not name it is passed over, while a matching deny rule still
       decides.  A protected destination that no naming rule permits is denied;
    4. no rule matched: permit (clients are already restricted in step 1).
    """

    clients: NetworkSet
    rules: tuple[RelayRule, ...]
    own_addresses: frozenset[ipaddress.IPv4Address]

    @classmethod
    def from_config(
        cls, config: Config, own_addresses: frozenset[ipaddress.IPv4Address]
    ) -> RelayAccess:
        """The relay's access policy from ``config.relay`` and the host's own addresses."""
        relay = config.relay
        return cls(relay.clients, tuple(relay.rules), frozenset(own_addresses))

    def _protected(self, destination: ipaddress.IPv4Address) -> _Protected | None:
        for block, name in NEVER_RELAYED:
            if destination in block:
                return _Protected(block, f"{name} destination {block}")
        if destination in self.own_addresses:
            return _Protected(
                ipaddress.IPv4Network(destination), f"destination {destination} is this relay host"
            )
        return None

    def check(
        self,
        client: Address,
        destination: ipaddress.IPv4Address,
        prefix: Nat64Prefix | None,
    ) -> Verdict:
        client = unmap(client)
        if client not in self.clients:
            return Verdict(False, "client not in relay.clients")
        if prefix is None:
            # An explicit port map: the target is the operator's choice
            # (issue 4); only relay.clients applies.
            return Verdict(True, "relay.maps target")
        if not prefix.may_embed(destination):
            # RFC 6052 section 3.1.
            return Verdict(False, f"non-global destination inside the well-known prefix {prefix}")
        protected = self._protected(destination)
        for index, rule in enumerate(self.rules):
            if not _rule_matches(rule, client, destination):
                continue
            if not rule.permit:
                return Verdict(False, f"relay.rules[{index}]")
            if protected is None or protected.named_by(rule.destination):
                return Verdict(True, f"relay.rules[{index}]")
            # A permit that does not name the protected destination does not apply to it.
        if protected is not None:
            return Verdict(False, protected.reason)
        return Verdict(True, "no rule matched")
