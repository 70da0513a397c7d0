"""The DNS64 decision procedure (RFC 6147, RFC 7050, RFC 8880) as a sans-IO generator.

:meth:`Dns64.resolve` yields the queries it needs answered upstream; the shell
sends each one and ``send()``s the reply back (None when every upstream failed
or timed out).  The generator's return value is the response for the client.
No sockets, no clocks: every decision is a function of the query, the client
address and the upstream replies, so each RFC rule has a unit test that drives
the generator with hand-made replies.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Generator, Sequence

import dns.edns
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.reversename
import dns.rrset
from dns.rdataclass import IN
from dns.rdatatype import AAAA, CNAME, PTR, RRSIG, A

from totd_faith.config import Config
from totd_faith.dns64.localzones import LocalZones
from totd_faith.dns64.messages import (
    add_ede,
    checking_disabled,
    local_response,
    new_response,
    nodata,
    relay,
    servfail,
    upstream_query,
    wants_dnssec,
)
from totd_faith.dns64.synthesis import Synthesizer, negative_ttl
from totd_faith.errors import PrefixError
from totd_faith.hosts import HostEntry
from totd_faith.prefix import Nat64Prefix
from totd_faith.special_purpose import DISCOVERY_ADDRESSES

Resolution = Generator[dns.message.QueryMessage, dns.message.Message | None, dns.message.Message]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


#: TTL of the CNAME synthesized from an ip6.arpa name to its in-addr.arpa name
#: (RFC 6147 section 5.3.1).  The mapping depends only on our configuration,
#: which can change on reload, so it is kept short like the no-SOA cap.
SYNTHETIC_CNAME_TTL = 600

#: 32 nibble labels + "ip6" + "arpa" + the root label.
_FULL_IP6_ARPA_LABELS = 35

_DISCOVERY = frozenset(int(a) for a in DISCOVERY_ADDRESSES)


def _without_a(answer: Sequence[dns.rrset.RRset]) -> list[dns.rrset.RRset]:
    """An A response's answer section as seen by an AAAA question: A data removed."""
    return [
        rrset
        for rrset in answer
        if rrset.rdtype != A and not (rrset.rdtype == RRSIG and rrset.covers == A)
    ]


class Dns64:
    """RFC 6147 DNS64 over an upstream resolver, with local answers for
    ipv4only.arpa and the static hosts."""

    def __init__(self, config: Config, hosts: Sequence[HostEntry] = ()) -> None:
        self._allow = config.dns.allow
        self._clients = config.dns64.clients
        self._clients_all = any(
            n.prefixlen == 0 and n.version == 4 for n in self._clients.networks
        ) and any(n.prefixlen == 0 and n.version == 6 for n in self._clients.networks)
        self._payload = config.dns.udp_payload_size
        self._synth = Synthesizer(config.prefixes, config.dns64.mapped, config.dns64.exclude)
        self._local = LocalZones(self._synth, hosts, config.dns.hosts_ttl)
        self._never = frozenset(config.dns64.never_synthesize)
        self._always = frozenset(config.dns64.always_synthesize)
        self._reverse_zones: tuple[tuple[dns.name.Name, Nat64Prefix], ...] = tuple(
            (prefix.reverse_origin, prefix) for prefix in config.prefixes
        )

    # -- policy ------------------------------------------------------------------

    def synthesis_enabled_for(self, client: IPAddress) -> bool:
        """dns64.clients: clients outside get plain forwarding."""
        return self._clients_all or client in self._clients

    def allowed(self, client: IPAddress) -> bool:
        """dns.allow (NetworkSet unmaps IPv4-mapped clients of dual-stack sockets)."""
        return client in self._allow

    @staticmethod
    def _listed(qname: dns.name.Name, domains: frozenset[dns.name.Name]) -> bool:
        """``qname`` is one of ``domains`` or below one of them."""
        if not domains:
            return False
        labels = qname.labels
        return any(dns.name.Name(labels[i:]) in domains for i in range(len(labels)))

    # -- the procedure -------------------------------------------------------------

    def resolve(self, query: dns.message.Message, client: IPAddress) -> Resolution:
        """Answer ``query`` from ``client``; see the module docstring for the protocol."""
        if not self.allowed(client):
            refused = new_response(query, dns.rcode.REFUSED)
            add_ede(refused, dns.edns.EDECode.PROHIBITED)  # RFC 8914 section 4.19
            return refused
        if query.opcode() != dns.opcode.QUERY:
            return new_response(query, dns.rcode.NOTIMP)
        if len(query.question) != 1:
            return new_response(query, dns.rcode.FORMERR)
        if query.edns > 0:
            # RFC 6891 section 6.1.3: we speak EDNS version 0 only.
            return new_response(query, dns.rcode.BADVERS)
        question = query.question[0]
        qname, rdtype, rdclass = question.name, question.rdtype, question.rdclass
        if rdclass != IN:
            # RFC 6147 section 5.1: for classes other than IN "a DNS64 MUST
            # behave as though no DNS64 function is configured".
            return (yield from self._forward(query, qname, rdtype, rdclass))
        enabled = self.synthesis_enabled_for(client)
        # RFC 6147 section 5.5 item 3: with CD and DO both set the DNS64 "MUST
        # NOT perform synthesis" and returns the data for the client to validate.
        synthesis = enabled and not (checking_disabled(query) and wants_dnssec(query))
        # ipv4only.arpa is the exception: RFC 8880 section 7.1 has a DNS64 answer
        # it itself whatever the query, and section 5 says validating resolvers
        # "MUST NOT attempt to validate" its AAAA answers, so prefix discovery
        # works with DO+CD too.
        local = self._local.lookup(qname, rdtype, synthesis, discovery=enabled)
        if local is not None:
            return local_response(query, local.rcode, local.answer, local.authority)
        if synthesis:
            if rdtype == AAAA and not self._listed(qname, self._never):
                return (yield from self._aaaa(query, qname))
            if rdtype == PTR:
                v4 = self._embedded_v4(qname)
                if v4 is not None:
                    return (yield from self._ptr(query, qname, v4))
        return (yield from self._forward(query, qname, rdtype, rdclass))

    def _ask(
        self,
        query: dns.message.Message,
        qname: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        rdclass: dns.rdataclass.RdataClass = IN,
    ) -> dns.message.QueryMessage:
        return upstream_query(query, qname, rdtype, rdclass, self._payload)

    def _forward(
        self,
        query: dns.message.Message,
        qname: dns.name.Name,
        rdtype: dns.rdatatype.RdataType,
        rdclass: dns.rdataclass.RdataClass,
    ) -> Resolution:
        """Plain forwarding: RFC 6147 section 5.3.3, "All other RRs MUST be returned
        unchanged.  This includes responses to queries for A RRs." """
        reply = yield self._ask(query, qname, rdtype, rdclass)
        if reply is None:
            return servfail(query)
        return relay(query, reply)

    def _aaaa(self, query: dns.message.Message, qname: dns.name.Name) -> Resolution:
        synth = self._synth
        aaaa_reply: dns.message.Message | None = None
        trimmed = False
        if not self._listed(qname, self._always):
            aaaa_reply = yield self._ask(query, qname, AAAA)
            if aaaa_reply is not None:
                rcode = aaaa_reply.rcode()
                if rcode == dns.rcode.NXDOMAIN:
                    # RFC 6147 section 5.1.2: "RCODE=3 (Name Error) is handled
                    # according to normal DNS operation": returned, never synthesized.
                    return relay(query, aaaa_reply)
                # RFC 6147 section 5.1.4: excluded AAAA records are never returned
                # and an answer of only excluded records counts as empty.
                aaaa_answer = synth.remove_excluded(aaaa_reply.answer)
                trimmed = len(aaaa_answer) != len(aaaa_reply.answer) or any(
                    a is not b for a, b in zip(aaaa_answer, aaaa_reply.answer, strict=True)
                )
                if rcode == dns.rcode.NOERROR and synth.has_aaaa(aaaa_answer, qname):
                    # RFC 6147 section 5.1.1: real AAAA data (at the end of any
                    # CNAME/DNAME chain, section 5.1.5) is returned as is.
                    return relay(query, aaaa_reply, answer=aaaa_answer, keep_ad=not trimmed)
            # Here: NOERROR with no usable AAAA (NODATA, section 5.1.1), any RCODE
            # other than 0 and 3 "treated as though the RCODE were 0 ... and the
            # answer section were empty" (section 5.1.2), or no answer at all,
            # which "is treated as RCODE=2" (section 5.1.3).  Section 5.1.6: ask
            # for A records of the name in question.
        a_reply = yield self._ask(query, qname, A)
        if a_reply is None:
            # RFC 6147 sections 5.1.3 and 5.1.6: a timeout is a server failure,
            # and an error in the A query "is used as the basis for the answer".
            return servfail(query)
        if a_reply.rcode() != dns.rcode.NOERROR:
            return relay(query, a_reply, answer=_without_a(a_reply.answer), keep_ad=False)
        synthesized = synth.synthesize(a_reply.answer, qname, negative_ttl(aaaa_reply))
        if synthesized is None:
            # Nothing to synthesize: no A at the end of the chain, or none in
            # the mapped ranges (section 5.1.7) or allowed in the Well-Known
            # Prefix (RFC 6052 section 3.1).
            if aaaa_reply is not None and not trimmed:
                # RFC 6147 section 5.4: "If there is an empty answer, then the
                # DNS64 responds to the original querying client with the answer
                # the DNS64 received to the original (initiator's) query."  That
                # answer is the upstream's own negative one (its SOA included).
                return relay(query, aaaa_reply)
            if aaaa_reply is None and not self._listed(qname, self._always):
                # The AAAA query had no answer at all: section 5.1.3, RCODE=2.
                return servfail(query)
            # The AAAA answer held only excluded records, or no AAAA query was
            # made (dns64.always_synthesize).  Section 5.1.4: "if it receives an
            # answer with only AAAA records containing addresses in the excluded
            # range(s), then it MUST treat the answer as though it were an empty
            # answer, and proceed accordingly" and "MUST NOT return the offending
            # AAAA records as part of a response"; section 5.1.6: "If this new A
            # RR query results in an empty answer or in an error, then the empty
            # result or error is used as the basis for the answer returned to the
            # querying client."  So the client gets the A query's negative
            # answer (its CNAME/DNAME chain, section 5.1.5, and its SOA), not
            # the positive AAAA reply with its answer removed: that one has NS
            # records and no SOA in its authority section, which RFC 2308
            # section 2.2 reads as a referral.  When the A query did find A
            # records (none of which we may synthesize), it has no SOA either
            # and nodata() empties its NS-only authority section (RFC 2308
            # NODATA type 3).
            return nodata(query, a_reply, _without_a(a_reply.answer))
        # RFC 6147 section 5.4: question from the client's query, answer from
        # section 5.1.7, "authority and additional sections are copied from the
        # response to the final query" (and section 5.3.2: the additional section
        # passes unchanged).  Section 5.5: we do not validate, and synthetic data
        # carries no signature, so AD is never set here.
        return relay(query, a_reply, answer=synthesized, keep_ad=False)

    # -- PTR (RFC 6147 section 5.3.1) ---------------------------------------------

    def _embedded_v4(self, qname: dns.name.Name) -> int | None:
        """The IPv4 address whose synthesized IPv6 address ``qname`` is the ip6.arpa
        name of, or None when the PTR query is to be forwarded unchanged.

        RFC 6147 section 5.3.1: strip ip6.arpa, reverse the nibbles and "examine
        the resulting address to see whether its prefix matches any of the
        locally configured Pref64::/n".  Only full 32-nibble names are addresses;
        a shorter name inside a prefix's reverse zone (say the /96 zone apex) is
        not any address's name, and as we synthesize CNAMEs (option 2) rather
        than serve the prefix zone authoritatively (option 1), it is forwarded
        unchanged.  So are names whose embedded IPv4 address we would never
        synthesize (outside dns64.mapped, non-global under the Well-Known
        Prefix, non-zero u-octet): no AAAA of ours points there.
        """
        labels = qname.labels
        if len(labels) != _FULL_IP6_ARPA_LABELS or labels[-2].lower() != b"arpa":
            return None
        for origin, prefix in self._reverse_zones:
            if not qname.is_subdomain(origin):
                continue
            v6 = prefix.address_from_reverse(qname)
            if v6 is None:
                return None
            try:
                v4 = int(prefix.extract(v6))
            except PrefixError:
                return None
            # The discovery addresses are synthesized whatever dns64.mapped says
            # (RFC 7050 section 2.2), so their names resolve the same way.
            if v4 in _DISCOVERY or self._synth.embeddable(v4, prefix):
                return v4
            return None
        return None

    def _ptr(self, query: dns.message.Message, qname: dns.name.Name, v4: int) -> Resolution:
        """RFC 6147 section 5.3.1 option 2: "synthesize a CNAME mapping the IP6.ARPA
        namespace to the corresponding IN-ADDR.ARPA name ... The rest of the
        response would be the normal DNS processing": the in-addr.arpa PTR answer
        follows the CNAME, with its RCODE and authority section."""
        target = dns.reversename.from_address(str(ipaddress.IPv4Address(v4)))
        cname = dns.rrset.from_rdata_list(
            qname,
            SYNTHETIC_CNAME_TTL,
            [dns.rdtypes.ANY.CNAME.CNAME(IN, CNAME, target)],  # type: ignore[no-untyped-call]
        )
        local = self._local.reverse_of_synthesized(target)
        if local is not None:
            return local_response(query, local.rcode, [cname, *local.answer], local.authority)
        reply = yield self._ask(query, target, PTR)
        if reply is None:
            return servfail(query)
        return relay(query, reply, answer=[cname, *reply.answer], keep_ad=False)
