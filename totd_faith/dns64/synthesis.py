"""RFC 6147 AAAA synthesis on answer sections: exclusion, chains, TTL, prefixes.

Pure functions over dnspython RRsets, built once from the configuration by
:class:`Synthesizer` (integer network tests precomputed) so that the per-query
path does no parsing of settings.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import dns.ipv6
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.IN.AAAA
import dns.rrset
from dns.rdataclass import IN
from dns.rdatatype import AAAA, CNAME, DNAME, RRSIG, SOA, A

from totd_faith.prefix import Nat64Prefix

#: RFC 6147 section 5.1.7: with no SOA in the negative AAAA response, the
#: synthetic TTL is the A TTL or 600 seconds, whichever is shorter.
NO_SOA_TTL_CAP = 600

#: Longest CNAME/DNAME chain we follow; loops and absurd chains stop here.
MAX_CHAIN = 16

Section = list[dns.rrset.RRset]


def translatable(v4: int) -> bool:
    """Whether any translator could ever reach ``v4``; the others are never synthesized,
    whatever dns64.mapped says (the same set ``zone export`` refuses, see
    :func:`totd_faith.zones.unreachable_reason`).

    RFC 1122 section 3.2.1.3: 0.0.0.0/8 ("this network") and 127.0.0.0/8
    (loopback) must not appear outside a host, so an AAAA for them would send
    IPv6 clients into the translator's (or the relay host's) own loopback;
    224.0.0.0/4 is multicast (RFC 5771) and 240.0.0.0/4 reserved (RFC 1112
    section 4) with the limited broadcast address.
    """
    first = v4 >> 24
    return first != 0 and first != 127 and first < 224


def _int_networks(
    networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> tuple[tuple[int, int], ...]:
    return tuple((int(n.network_address), int(n.netmask)) for n in networks)


def follow_chain(answer: Sequence[dns.rrset.RRset], qname: dns.name.Name) -> dns.name.Name:
    """The owner name at the end of the CNAME/DNAME chain that starts at ``qname``.

    RFC 6147 section 5.1.5: "the CNAME or DNAME chain is followed until the
    first terminating A or AAAA record is reached".  A DNAME normally comes
    with its synthesized CNAME (RFC 6672 section 3.4); the DNAME itself is
    applied only when that CNAME is missing.  Names hash case-insensitively in
    dnspython, so the lookups ignore letter case as DNS does.
    """
    cnames: dict[dns.name.Name, dns.name.Name] = {}
    dnames: list[tuple[dns.name.Name, dns.name.Name]] = []
    for rrset in answer:
        if rrset.rdclass != IN or not rrset:
            continue
        if rrset.rdtype == CNAME:
            cnames[rrset.name] = rrset[0].target
        elif rrset.rdtype == DNAME:
            dnames.append((rrset.name, rrset[0].target))
    if not cnames and not dnames:
        return qname
    name = qname
    for _ in range(MAX_CHAIN):
        target = cnames.get(name)
        if target is None:
            target = _apply_dname(name, dnames)
        if target is None:
            break
        name = target
    return name


def _apply_dname(
    name: dns.name.Name, dnames: list[tuple[dns.name.Name, dns.name.Name]]
) -> dns.name.Name | None:
    for owner, target in dnames:
        # RFC 6672 section 2.2: a DNAME redirects names strictly below its owner.
        if name != owner and name.is_subdomain(owner):
            try:
                return name.relativize(owner).derelativize(target)
            except dns.name.NameTooLong:
                return None
    return None


def negative_ttl(reply: dns.message.Message | None) -> int:
    """The TTL ceiling for synthetic AAAA records taken from the negative AAAA answer.

    RFC 6147 section 5.1.7: "the minimum of the TTL of the original A RR and
    the SOA RR for the queried domain ... it can remember the TTL from the SOA
    RR in the negative response to the AAAA query."  That SOA stands for the
    negative answer, whose lifetime is RFC 2308 section 5's "minimum of the
    SOA.MINIMUM field and SOA's TTL"; an authoritative server already sends
    that minimum as the SOA TTL (RFC 2308 section 3), but an upstream cache
    counts the TTL down and some servers do not clamp it, so we take the
    minimum of both ourselves.  No SOA: 600 seconds (section 5.1.7).
    """
    if reply is not None:
        for rrset in reply.authority:
            if rrset.rdtype == SOA and rrset:
                return int(min(rrset.ttl, rrset[0].minimum))
    return NO_SOA_TTL_CAP


@dataclass(frozen=True, slots=True)
class Synthesizer:
    """The synthesis settings, precomputed: prefixes in order, mapped IPv4 ranges,
    excluded IPv6 ranges."""

    prefixes: tuple[Nat64Prefix, ...]
    mapped: tuple[ipaddress.IPv4Network, ...]
    exclude: tuple[ipaddress.IPv6Network, ...]
    _mapped: tuple[tuple[int, int], ...] = field(init=False, repr=False)
    _map_all: bool = field(init=False, repr=False)
    _exclude: tuple[tuple[int, int], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_mapped", _int_networks(self.mapped))
        object.__setattr__(self, "_map_all", any(n.prefixlen == 0 for n in self.mapped))
        object.__setattr__(self, "_exclude", _int_networks(self.exclude))

    # -- addresses -------------------------------------------------------------

    def is_mapped(self, v4: int) -> bool:
        """RFC 6147 section 5.1.7: "The DNS64 MUST check each A RR against
        configured IPv4 address ranges" -- dns64.mapped."""
        return self._map_all or any(v4 & mask == net for net, mask in self._mapped)

    def is_excluded(self, v6: int) -> bool:
        """RFC 6147 section 5.1.4: the special exclusion set (dns64.exclude)."""
        return any(v6 & mask == net for net, mask in self._exclude)

    def embed_all(self, addresses: Sequence[int], *, check_mapped: bool = True) -> list[int]:
        """Every allowed IPv6 representation of ``addresses``, prefix by prefix in
        configured order (the first prefix is the preferred one)."""
        allowed = [
            v4 for v4 in addresses if translatable(v4) and (not check_mapped or self.is_mapped(v4))
        ]
        out: list[int] = []
        for prefix in self.prefixes:
            for v4 in allowed:
                # RFC 6052 section 3.1: the Well-Known Prefix "MUST NOT be used
                # to represent non-global IPv4 addresses" (RFC 7050's
                # 192.0.0.170/171 excepted, see Nat64Prefix.may_embed).
                if not prefix.may_embed_int(v4):
                    continue
                out.append(prefix.embed_int(v4))
        return out

    def embeddable(self, v4: int, prefix: Nat64Prefix) -> bool:
        """Whether ``v4`` may appear inside ``prefix`` (mapped set and RFC 6052 3.1)."""
        if not translatable(v4) or not self.is_mapped(v4):
            return False
        return prefix.may_embed_int(v4)

    # -- sections --------------------------------------------------------------

    def remove_excluded(self, answer: Sequence[dns.rrset.RRset]) -> Section:
        """``answer`` without AAAA records in the exclusion set.

        RFC 6147 section 5.1.4: the DNS64 "SHOULD build an answer section ...
        including only the AAAA record(s) that do not contain any of the
        addresses inside the excluded ranges" and "MUST NOT return the
        offending AAAA records".  An RRSIG over a trimmed AAAA RRset no longer
        matches it, so it goes too.
        """
        if not self._exclude:
            return list(answer)
        trimmed: set[dns.name.Name] = set()
        out: Section = []
        for rrset in answer:
            if rrset.rdtype != AAAA or rrset.rdclass != IN:
                out.append(rrset)
                continue
            keep = [rd for rd in rrset if not self.is_excluded(_aaaa_int(rd))]
            if len(keep) == len(rrset):
                out.append(rrset)
                continue
            trimmed.add(rrset.name)
            if keep:
                out.append(dns.rrset.from_rdata_list(rrset.name, rrset.ttl, keep))
        if not trimmed:
            return out
        return [
            rrset
            for rrset in out
            if not (rrset.rdtype == RRSIG and rrset.covers == AAAA and rrset.name in trimmed)
        ]

    def has_aaaa(self, answer: Sequence[dns.rrset.RRset], qname: dns.name.Name) -> bool:
        """RFC 6147 section 5.1.1: real AAAA data at the end of the chain from ``qname``."""
        final = follow_chain(answer, qname)
        return any(
            rrset.rdtype == AAAA and rrset.rdclass == IN and rrset and rrset.name == final
            for rrset in answer
        )

    def synthesize(
        self, answer: Sequence[dns.rrset.RRset], qname: dns.name.Name, ttl_cap: int
    ) -> Section | None:
        """The answer section of a synthesized AAAA response built from the answer
        section of the A response, or None when there is nothing to synthesize.

        RFC 6147 section 5.1.5: the CNAME/DNAME chain is kept; section 5.1.6:
        the A records that form the basis of the synthesis are removed (with
        their RRSIGs, which cannot cover the new AAAA RRset); section 5.1.7:
        one AAAA per A per prefix, owner = the A record's owner, TTL =
        min(A TTL, ``ttl_cap``).
        """
        final = follow_chain(answer, qname)
        basis: dns.rrset.RRset | None = None
        for rrset in answer:
            if rrset.rdtype == A and rrset.rdclass == IN and rrset.name == final and rrset:
                basis = rrset
                break
        if basis is None:
            return None
        v6 = self.embed_all([_a_int(rd) for rd in basis])
        if not v6:
            return None
        synthetic = self.aaaa_rrset(basis.name, min(basis.ttl, ttl_cap), v6)
        out: Section = []
        for rrset in answer:
            if rrset is basis:
                out.append(synthetic)
            elif rrset.rdtype == A or (rrset.rdtype == RRSIG and rrset.covers == A):
                continue
            else:
                out.append(rrset)
        return out

    def aaaa_rrset(self, owner: dns.name.Name, ttl: int, v6: Sequence[int]) -> dns.rrset.RRset:
        """An AAAA RRset of ``v6`` in order.  Filled directly: RRset.add hashes each
        rdata twice (a wire rendering each time), and these are known-good rdatas
        of one type; dict.fromkeys still drops duplicates (overlapping prefixes)."""
        rrset = dns.rrset.RRset(owner, IN, AAAA)
        rrset.ttl = ttl
        rrset.items = dict.fromkeys(_aaaa_rdata(value) for value in v6)
        return rrset


def _a_int(rdata: object) -> int:
    # dnspython keeps A addresses as canonical dotted quads; splitting is several
    # times faster than a general parser on this per-record path.
    a, b, c, d = rdata.address.split(".")  # type: ignore[attr-defined]
    return (int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d)


def _aaaa_int(rdata: object) -> int:
    return int.from_bytes(dns.ipv6.inet_aton(rdata.address))  # type: ignore[attr-defined]


#: Synthesized rdatas by address.  Rdata objects are immutable, so sharing them
#: between answers is safe; popular IPv4 addresses (CDNs, shared hosting) are
#: converted once.  Bounded: cleared when full.
_AAAA_CACHE_MAX = 8192
_aaaa_cache: dict[int, dns.rdtypes.IN.AAAA.AAAA] = {}


def _aaaa_rdata(value: int) -> dns.rdtypes.IN.AAAA.AAAA:
    rdata = _aaaa_cache.get(value)
    if rdata is None:
        if len(_aaaa_cache) >= _AAAA_CACHE_MAX:
            _aaaa_cache.clear()
        # The constructor takes the 16 address bytes directly (no text round trip).
        rdata = dns.rdtypes.IN.AAAA.AAAA(IN, AAAA, value.to_bytes(16))  # type: ignore[no-untyped-call]
        _aaaa_cache[value] = rdata
    return rdata
