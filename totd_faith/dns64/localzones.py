"""Names answered locally, never sent upstream: ipv4only.arpa (RFC 8880 section 7.1,
RFC 7050), the ip6.arpa names of its synthesized addresses (RFC 8880 section 7.2.1)
and the static hosts files.

Everything is indexed once in :class:`LocalZones`; a lookup is a couple of dict
probes.  dnspython names hash and compare case-insensitively, so ``HOST.example``
finds ``host.example``; answers are owned by the name as the client wrote it.

What RFC 8880 fixes for ipv4only.arpa, and so what a DNS64 client gets here:

- A: 192.0.0.170 and 192.0.0.171; AAAA: those two synthesized into every prefix;
  every other type except DS: NOERROR with an empty answer (section 7.1 item 4).
  SOA and NS included: the RFC lists no SOA or NS data (Appendix A's zone is an
  example with placeholder names), so none is made up, and negative answers
  carry no SOA either (RFC 2308 section 2.2 allows that form; such answers are
  not cached negatively, section 5, which costs nothing for a local answer).
- DS: resolved the usual way, i.e. forwarded (section 7.1 item 4).
- Any name below ipv4only.arpa: NXDOMAIN (section 7.1 item 4).
- 170.0.0.192.in-addr.arpa and 171.0.0.192.in-addr.arpa asked directly: not
  special (section 7.2 item 4), forwarded like any name.  Only behind a PTR
  query for a synthesized ip6.arpa name are they answered here, with
  ``ipv4only.arpa`` and no query upstream (section 7.2.1).
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
from dns.rdataclass import IN
from dns.rdatatype import AAAA, ANY, DS, PTR, A

from totd_faith.dns64.synthesis import Synthesizer
from totd_faith.hosts import HostEntry
from totd_faith.special_purpose import DISCOVERY_ADDRESSES

#: RFC 8880 section 7.1 (RFC 7050's well-known name): the special-use name.
IPV4ONLY = dns.name.from_text("ipv4only.arpa.")

#: TTL of the locally generated ipv4only.arpa data (A, AAAA and the PTR behind a
#: synthesized ip6.arpa name).  RFC 8880 fixes the records but no TTL (its
#: Appendix A example zone uses 86400); ours is one hour so that a client that
#: caches the answer still learns of a changed prefix the same day.
IPV4ONLY_TTL = 3600


@dataclass(frozen=True, slots=True)
class LocalAnswer:
    rcode: int
    answer: list[dns.rrset.RRset]
    authority: list[dns.rrset.RRset]


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


def _answer(rrset: dns.rrset.RRset | None) -> LocalAnswer:
    """NOERROR with ``rrset``, or NODATA (empty answer, no SOA) when it is None."""
    return LocalAnswer(dns.rcode.NOERROR, [] if rrset is None else [_copy(rrset)], [])


@dataclass(frozen=True, slots=True)
class _Host:
    """One static host name: its A RRset and its synthesized AAAA RRset, prebuilt."""

    a: dns.rrset.RRset
    aaaa: dns.rrset.RRset | None


class LocalZones:
    """ipv4only.arpa, the reverse names behind its synthesized addresses and the
    static hosts, answered without upstream.

    Every answer is built in ``__init__``; a lookup is dict probes and RRset copies.
    """

    def __init__(
        self, synthesizer: Synthesizer, hosts: Sequence[HostEntry], hosts_ttl: int
    ) -> None:
        # RFC 8880 section 7.1: "The name 'ipv4only.arpa' is defined, by IETF
        # specification [RFC7050], to have two IPv4 address records with rdata
        # 192.0.0.170 and 192.0.0.171."
        self._discovery_a = _rrset(IPV4ONLY, A, IPV4ONLY_TTL, [str(a) for a in DISCOVERY_ADDRESSES])
        # RFC 8880 section 7.1: the AAAA rdata is "synthesized from a combination
        # of the NAT64 IPv6 prefix(es) and the IPv4 addresses 192.0.0.170 and
        # 192.0.0.171", a pair per prefix, in configured order.  dns64.mapped
        # does not apply: discovery must reveal every prefix.
        discovery_v6 = synthesizer.embed_all(
            [int(a) for a in DISCOVERY_ADDRESSES], check_mapped=False
        )
        self._discovery_aaaa = (
            synthesizer.aaaa_rrset(IPV4ONLY, IPV4ONLY_TTL, discovery_v6) if discovery_v6 else None
        )
        # RFC 8880 section 7.2: each reverse name has "only one DNS record, type
        # PTR, with rdata 'ipv4only.arpa'".  Used only behind a synthesized
        # ip6.arpa name (section 7.2.1), see reverse_of_synthesized().
        self._discovery_ptr: dict[dns.name.Name, dns.rrset.RRset] = {}
        for address in DISCOVERY_ADDRESSES:
            rname = dns.reversename.from_address(str(address))
            self._discovery_ptr[rname] = _rrset(rname, PTR, IPV4ONLY_TTL, [str(IPV4ONLY)])
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

    def lookup(
        self,
        qname: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        synthesis: bool,
        discovery: bool | None = None,
    ) -> LocalAnswer | None:
        """The local answer for a client's ``qname``/``rdtype`` (class IN), or None
        to resolve it the usual way.

        ``synthesis`` says whether AAAA records may be synthesized for this query
        (DNS64 enabled for the client, RFC 6147 section 5.5 DO+CD rule);
        ``discovery`` (default: ``synthesis``) whether we act as a DNS64 for
        ipv4only.arpa.
        """
        if discovery is None:
            discovery = synthesis
        host = self._hosts.get(qname)
        if host is not None:
            return self._host(host, rdtype, synthesis)
        ptr = self._reverse.get(qname)
        if ptr is not None:
            return _answer(ptr if rdtype in (PTR, ANY) else None)
        labels = qname.labels
        if len(labels) < 3 or labels[-2].lower() != b"arpa":
            return None  # ipv4only.arpa is under arpa.: the common case stops here
        if discovery and qname.is_subdomain(IPV4ONLY):
            return self._ipv4only(qname, rdtype)
        # RFC 8880 section 7.1 item 4: "Traditional forwarding recursive
        # resolvers SHOULD NOT recognize 'ipv4only.arpa' as special" -- what we
        # are for a client without DNS64: its queries go upstream, which may be
        # a DNS64 itself.  Section 7.2 item 4: "Recursive resolvers SHOULD NOT
        # recognize these two reverse mapping names as special": asked directly,
        # 170.0.0.192.in-addr.arpa and 171.0.0.192.in-addr.arpa go upstream too.
        return None

    def reverse_of_synthesized(self, target: dns.name.Name) -> LocalAnswer | None:
        """The local PTR answer for ``target``, the in-addr.arpa name behind a
        synthesized ip6.arpa name (RFC 6147 section 5.3.1), or None to ask upstream.

        RFC 8880 section 7.2.1: for the synthesized addresses of 192.0.0.170 and
        192.0.0.171 "the DNS64 recursive resolver does not issue reverse mapping
        queries for those IPv4 addresses, but instead ... immediately returns the
        answer 'ipv4only.arpa'."  Static hosts answer for their own addresses.
        """
        ptr = self._reverse.get(target)
        if ptr is None:
            ptr = self._discovery_ptr.get(target)
        return None if ptr is None else _answer(ptr)

    @staticmethod
    def _host(host: _Host, rdtype: dns.rdatatype.RdataType, synthesis: bool) -> LocalAnswer:
        # Static hosts are data we own but not a zone we serve: other types get
        # NODATA without an SOA (RFC 2308 section 5: not cached negatively by
        # the client, so a later hosts-file change shows at once).
        if rdtype in (A, ANY):
            return _answer(host.a)
        if rdtype == AAAA and synthesis:
            return _answer(host.aaaa)
        return _answer(None)

    def _ipv4only(
        self, qname: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> LocalAnswer | None:
        """RFC 8880 section 7.1 item 4, for a DNS64 client: "DNS64 recursive
        resolvers MUST act as authoritative for this zone, by generating immediate
        responses for all queries for 'ipv4only.arpa' (and any subdomain of
        'ipv4only.arpa'), with the one exception of queries for the DS record."
        """
        if rdtype == DS:
            # "Queries for the DS record are resolved the usual way to allow a
            # client to securely verify that the 'ipv4only.arpa' zone has an
            # insecure delegation."
            return None
        if qname != IPV4ONLY:
            # "For all subdomains of 'ipv4only.arpa', DNS64 recursive resolvers
            # MUST generate immediate NXDOMAIN responses."
            return LocalAnswer(dns.rcode.NXDOMAIN, [], [])
        # "DNS64 recursive resolvers MUST generate the 192.0.0.170 and
        # 192.0.0.171 responses for IPv4 address queries (DNS qtype "A"), the
        # appropriate synthesized IPv6 address record responses for IPv6 address
        # queries (DNS qtype "AAAA"), and a negative ("no error no answer")
        # response for all other query types except DS."
        if rdtype == A:
            return _answer(self._discovery_a)
        if rdtype == AAAA:
            return _answer(self._discovery_aaaa)
        return _answer(None)
