"""Names answered locally, never sent upstream: ipv4only.arpa (RFC 7050, RFC 8880)
and the static hosts files.

Everything is indexed once in :class:`LocalZones`; a lookup is a couple of dict
probes.  dnspython names hash and compare case-insensitively, so ``HOST.example``
finds ``host.example``; answers are owned by the name as the client wrote it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset

from totd_faith.dns64.synthesis import Synthesizer
from totd_faith.hosts import HostEntry
from totd_faith.special_purpose import DISCOVERY_ADDRESSES

IN = dns.rdataclass.IN
A = dns.rdatatype.A
AAAA = dns.rdatatype.AAAA
PTR = dns.rdatatype.PTR
SOA = dns.rdatatype.SOA
NS = dns.rdatatype.NS
ANY = dns.rdatatype.ANY

#: RFC 7050 section 2.2 / RFC 8880 section 7.1: the special-use name.
IPV4ONLY = dns.name.from_text("ipv4only.arpa.")

#: TTL of the locally generated ipv4only.arpa data.  The records are fixed by
#: RFC 7050 and cannot change, but a client re-discovers the prefix when the
#: TTL runs out (RFC 7050 section 3.1), so it should not be days.
IPV4ONLY_TTL = 3600

#: The contact in the SOA we make up for the local zones (RFC 2606 .invalid:
#: nobody is to be mailed about them).
_CONTACT = dns.name.from_text("nobody.invalid.")


@dataclass(frozen=True, slots=True)
class LocalAnswer:
    rcode: int
    answer: list[dns.rrset.RRset]
    authority: list[dns.rrset.RRset]


def _soa(origin: dns.name.Name, ttl: int) -> dns.rrset.RRset:
    # RFC 2308 section 3: the negative TTL is min(SOA TTL, MINIMUM): both = ttl.
    rdata = dns.rdata.from_text(
        IN, SOA, f"{origin} {_CONTACT} 1 {ttl} {ttl // 3} {ttl * 168} {ttl}", relativize=False
    )
    return dns.rrset.from_rdata_list(origin, ttl, [rdata])


def _rrset(
    owner: dns.name.Name, rdtype: dns.rdatatype.RdataType, ttl: int, texts: Sequence[str]
) -> dns.rrset.RRset:
    return dns.rrset.from_rdata_list(
        owner, ttl, [dns.rdata.from_text(IN, rdtype, text) for text in texts]
    )


def _copy(rrset: dns.rrset.RRset) -> dns.rrset.RRset:
    """A copy of a precomputed RRset (the shell and the cache may adjust TTLs)."""
    copied: dns.rrset.RRset = rrset.copy()  # type: ignore[no-untyped-call]
    return copied


@dataclass(frozen=True, slots=True)
class _Zone:
    """A tiny locally served zone: its SOA and the RRsets at its apex, prebuilt."""

    origin: dns.name.Name
    soa: dns.rrset.RRset
    records: dict[dns.rdatatype.RdataType, dns.rrset.RRset]


@dataclass(frozen=True, slots=True)
class _Host:
    """One static host name: its A RRset and its synthesized AAAA RRset, prebuilt."""

    a: dns.rrset.RRset
    aaaa: dns.rrset.RRset | None


class LocalZones:
    """ipv4only.arpa, its reverse names and the static hosts, answered without upstream.

    Every answer is built in ``__init__``; a lookup is dict probes and RRset copies.
    """

    def __init__(
        self, synthesizer: Synthesizer, hosts: Sequence[HostEntry], hosts_ttl: int
    ) -> None:
        self._zones: dict[dns.name.Name, _Zone] = {}
        # RFC 8880 section 7.1: ipv4only.arpa has exactly the A records
        # 192.0.0.170 and 192.0.0.171; a DNS64 answers it itself.
        self._add_zone(IPV4ONLY, A, [str(a) for a in DISCOVERY_ADDRESSES])
        # RFC 7050 section 2.2 / RFC 8880 section 7.1: the discovery addresses
        # synthesized into every prefix, in configured order.  The mapped ranges
        # do not apply: discovery must reveal every prefix.
        discovery_v6 = synthesizer.embed_all(
            [int(a) for a in DISCOVERY_ADDRESSES], check_mapped=False
        )
        self._discovery_aaaa = synthesizer.aaaa_rrset(IPV4ONLY, IPV4ONLY_TTL, discovery_v6)
        # RFC 8880 section 7.2: the reverse names point back at ipv4only.arpa.
        for address in DISCOVERY_ADDRESSES:
            self._add_zone(dns.reversename.from_address(str(address)), PTR, [str(IPV4ONLY)])
        # Static hosts: forward by name, reverse by in-addr.arpa name.  The first
        # name given for an address is its canonical name (hosts(5)) and the PTR
        # target.
        addresses: dict[dns.name.Name, list[int]] = {}
        canonical: dict[dns.name.Name, dns.name.Name] = {}
        for entry in hosts:
            v4 = int(entry.address)
            known = addresses.setdefault(entry.name, [])
            if v4 not in known:
                known.append(v4)
            canonical.setdefault(dns.reversename.from_address(str(entry.address)), entry.name)
        self._hosts: dict[dns.name.Name, _Host] = {}
        for name, v4s in addresses.items():
            a = _rrset(name, A, hosts_ttl, [str(ipaddress.IPv4Address(v4)) for v4 in v4s])
            # Same rules as synthesis from upstream: prefixes in order, mapped
            # ranges (RFC 6147 section 5.1.7), RFC 6052 section 3.1.
            v6 = synthesizer.embed_all(v4s)
            aaaa = synthesizer.aaaa_rrset(name, hosts_ttl, v6) if v6 else None
            self._hosts[name] = _Host(a, aaaa)
        self._reverse: dict[dns.name.Name, dns.rrset.RRset] = {
            rname: _rrset(rname, PTR, hosts_ttl, [str(target)])
            for rname, target in canonical.items()
        }

    def _add_zone(
        self, origin: dns.name.Name, rdtype: dns.rdatatype.RdataType, texts: list[str]
    ) -> None:
        records = {
            rdtype: _rrset(origin, rdtype, IPV4ONLY_TTL, texts),
            NS: _rrset(origin, NS, IPV4ONLY_TTL, [str(origin)]),
        }
        self._zones[origin] = _Zone(origin, _soa(origin, IPV4ONLY_TTL), records)

    def lookup(
        self,
        qname: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        synthesis: bool,
        discovery: bool | None = None,
    ) -> LocalAnswer | None:
        """The local answer for ``qname``/``rdtype`` (class IN), or None if not local.

        ``synthesis`` says whether AAAA records may be synthesized for this query
        (DNS64 enabled for the client, RFC 6147 section 5.5 DO+CD rule);
        ``discovery`` (default: ``synthesis``) the same for ipv4only.arpa.
        """
        if discovery is None:
            discovery = synthesis
        host = self._hosts.get(qname)
        if host is not None:
            return self._host(host, rdtype, synthesis)
        ptr = self._reverse.get(qname)
        if ptr is not None:
            if rdtype in (PTR, ANY):
                return LocalAnswer(dns.rcode.NOERROR, [_copy(ptr)], [])
            return LocalAnswer(dns.rcode.NOERROR, [], [])
        labels = qname.labels
        if len(labels) < 3 or labels[-2].lower() != b"arpa":
            return None  # every local zone is under arpa.: the common case stops here
        for origin, zone in self._zones.items():
            if qname.is_subdomain(origin):
                return self._zone_answer(zone, qname, rdtype, discovery)
        return None

    @staticmethod
    def _host(host: _Host, rdtype: dns.rdatatype.RdataType, synthesis: bool) -> LocalAnswer:
        # Static hosts are data we own but not a zone we serve: other types get
        # NODATA without an SOA (RFC 2308 section 5: not cached negatively by
        # the client, so a later hosts-file change shows at once).
        if rdtype in (A, ANY):
            return LocalAnswer(dns.rcode.NOERROR, [_copy(host.a)], [])
        if rdtype == AAAA and synthesis and host.aaaa is not None:
            return LocalAnswer(dns.rcode.NOERROR, [_copy(host.aaaa)], [])
        return LocalAnswer(dns.rcode.NOERROR, [], [])

    def _zone_answer(
        self,
        zone: _Zone,
        qname: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        discovery: bool,
    ) -> LocalAnswer:
        if qname != zone.origin:
            # RFC 8880 sections 7.1 and 7.2: only the apex names exist.
            return LocalAnswer(dns.rcode.NXDOMAIN, [], [_copy(zone.soa)])
        if rdtype == SOA:
            return LocalAnswer(dns.rcode.NOERROR, [_copy(zone.soa)], [])
        if rdtype == AAAA and zone.origin == IPV4ONLY and discovery:
            return LocalAnswer(dns.rcode.NOERROR, [_copy(self._discovery_aaaa)], [])
        if rdtype == ANY:
            # RFC 8482 would allow less; the zone is tiny, so give all of it.
            rrsets = [_copy(zone.soa), *(_copy(r) for r in zone.records.values())]
            return LocalAnswer(dns.rcode.NOERROR, rrsets, [])
        rrset = zone.records.get(rdtype)
        if rrset is not None:
            return LocalAnswer(dns.rcode.NOERROR, [_copy(rrset)], [])
        return LocalAnswer(dns.rcode.NOERROR, [], [_copy(zone.soa)])
