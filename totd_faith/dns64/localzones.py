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


@dataclass(frozen=True, slots=True)
class _Zone:
    """A tiny locally served zone: its apex, SOA and the records at its apex."""

    origin: dns.name.Name
    soa: dns.rrset.RRset
    records: dict[dns.rdatatype.RdataType, list[str]]


class LocalZones:
    """ipv4only.arpa, its reverse names and the static hosts, answered without upstream."""

    def __init__(
        self, synthesizer: Synthesizer, hosts: Sequence[HostEntry], hosts_ttl: int
    ) -> None:
        self._synth = synthesizer
        self._hosts_ttl = hosts_ttl
        self._zones: dict[dns.name.Name, _Zone] = {}
        discovery_texts = [str(a) for a in DISCOVERY_ADDRESSES]
        # RFC 8880 section 7.1: ipv4only.arpa has exactly the A records
        # 192.0.0.170 and 192.0.0.171; a DNS64 answers it itself.
        self._add_zone(IPV4ONLY, {A: discovery_texts})
        # RFC 8880 section 7.2: the reverse names point back at ipv4only.arpa.
        for address in DISCOVERY_ADDRESSES:
            self._add_zone(dns.reversename.from_address(str(address)), {PTR: [str(IPV4ONLY)]})
        self._discovery = [int(a) for a in DISCOVERY_ADDRESSES]
        # Static hosts: forward by name, reverse by in-addr.arpa name.  The first
        # name given for an address is its canonical name (hosts(5)) and the
        # PTR target.
        self._forward: dict[dns.name.Name, list[int]] = {}
        self._reverse: dict[dns.name.Name, dns.name.Name] = {}
        for entry in hosts:
            v4 = int(entry.address)
            addresses = self._forward.setdefault(entry.name, [])
            if v4 not in addresses:
                addresses.append(v4)
            self._reverse.setdefault(dns.reversename.from_address(str(entry.address)), entry.name)

    def _add_zone(
        self, origin: dns.name.Name, records: dict[dns.rdatatype.RdataType, list[str]]
    ) -> None:
        soa = _soa(origin, IPV4ONLY_TTL)
        records = {**records, NS: [str(origin)]}
        self._zones[origin] = _Zone(origin, soa, records)

    def lookup(
        self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType, synthesis: bool
    ) -> LocalAnswer | None:
        """The local answer for ``qname``/``rdtype`` (class IN), or None if not local.

        ``synthesis`` says whether AAAA records may be synthesized for this query
        (DNS64 enabled for the client, RFC 6147 section 5.5 DO+CD rule).
        """
        addresses = self._forward.get(qname)
        if addresses is not None:
            return self._host(qname, rdtype, addresses, synthesis)
        target = self._reverse.get(qname)
        if target is not None:
            if rdtype in (PTR, ANY):
                ptr = dns.rrset.from_rdata_list(
                    qname, self._hosts_ttl, [dns.rdata.from_text(IN, PTR, str(target))]
                )
                return LocalAnswer(dns.rcode.NOERROR, [ptr], [])
            return LocalAnswer(dns.rcode.NOERROR, [], [])
        labels = qname.labels
        if len(labels) < 3 or labels[-2].lower() != b"arpa":
            return None  # every local zone is under arpa.: the common case stops here
        for origin, zone in self._zones.items():
            if qname.is_subdomain(origin):
                return self._zone_answer(zone, qname, rdtype, synthesis)
        return None

    def _host(
        self,
        qname: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        addresses: list[int],
        synthesis: bool,
    ) -> LocalAnswer:
        # Static hosts are data we own but not a zone we serve: other types get
        # NODATA without an SOA (RFC 2308 section 5: not cached negatively by
        # the client, so a later hosts-file change shows at once).
        ttl = self._hosts_ttl
        if rdtype in (A, ANY):
            rrset = dns.rrset.from_rdata_list(
                qname,
                ttl,
                [dns.rdata.from_text(IN, A, str(ipaddress.IPv4Address(v4))) for v4 in addresses],
            )
            return LocalAnswer(dns.rcode.NOERROR, [rrset], [])
        if rdtype == AAAA and synthesis:
            # Same rules as synthesis from upstream: prefixes in order, mapped
            # ranges (RFC 6147 section 5.1.7), RFC 6052 section 3.1.
            v6 = self._synth.embed_all(addresses)
            if v6:
                return LocalAnswer(dns.rcode.NOERROR, [self._synth.aaaa_rrset(qname, ttl, v6)], [])
        return LocalAnswer(dns.rcode.NOERROR, [], [])

    def _zone_answer(
        self,
        zone: _Zone,
        qname: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        synthesis: bool,
    ) -> LocalAnswer:
        if qname != zone.origin:
            # RFC 8880 sections 7.1 and 7.2: only the apex names exist.
            return LocalAnswer(dns.rcode.NXDOMAIN, [], [zone.soa])
        if rdtype == SOA:
            soa = dns.rrset.from_rdata_list(qname, zone.soa.ttl, list(zone.soa))
            return LocalAnswer(dns.rcode.NOERROR, [soa], [])
        if rdtype == AAAA and zone.origin == IPV4ONLY and synthesis:
            # RFC 7050 section 2.2 / RFC 8880 section 7.1: the discovery
            # addresses synthesized into every prefix, in configured order.  The
            # mapped ranges do not apply: discovery must reveal every prefix.
            v6 = self._synth.embed_all(self._discovery, check_mapped=False)
            return LocalAnswer(
                dns.rcode.NOERROR, [self._synth.aaaa_rrset(qname, IPV4ONLY_TTL, v6)], []
            )
        if rdtype == ANY:
            # RFC 8482 would allow less; the zone is tiny, so give all of it.
            rrsets = [zone.soa] + [
                _rrset(qname, t, IPV4ONLY_TTL, v) for t, v in zone.records.items()
            ]
            return LocalAnswer(dns.rcode.NOERROR, rrsets, [])
        texts = zone.records.get(rdtype)
        if texts is not None:
            return LocalAnswer(dns.rcode.NOERROR, [_rrset(qname, rdtype, IPV4ONLY_TTL, texts)], [])
        return LocalAnswer(dns.rcode.NOERROR, [], [zone.soa])
