"""ipv4only.arpa from the real ``totd-faith dns`` process, next to Unbound as a DNS64.

RFC 8880 section 7.1 item 4 has a DNS64 answer ipv4only.arpa itself ("MUST NOT
attempt to look up NS records for 'ipv4only.arpa' or otherwise query
authoritative name servers"); section 7.2 item 4 has it leave the reverse names
170/171.0.0.192.in-addr.arpa alone when asked directly; section 7.2.1 has it
answer the ip6.arpa names of the synthesized pair with 'ipv4only.arpa' at once.

The peer: Unbound 1.17 (Debian) with ``dns64-prefix`` gives ipv4only.arpa no
special treatment, so it is given an NSD holding the zone as the arpa servers
publish it (the SOA/NS values below are test placeholders).  Where both answer,
the data must agree; where Unbound departs from RFC 8880 (it asks upstream, so
with no upstream it fails; it answers SOA/NS from the zone; it gives no AAAA
with DO+CD), these tests only check that we follow the RFC.
"""

from __future__ import annotations

from collections.abc import Callable

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest

from tests.integration.conftest import DnsProcess
from tests.support.ports import free_port
from tests.support.unbound import dns64_options
from totd_faith.endpoints import Endpoint, parse_endpoint

PREFIX = "64:ff9b::/96"
SOA = "@ IN SOA ns.example. hostmaster.example. 1 7200 3600 604800 60\n@ IN NS ns.example.\n"
ARPA_ZONES = {
    "ipv4only.arpa.": f"$TTL 86400\n{SOA}@ IN A 192.0.0.170\n@ IN A 192.0.0.171\n",
    "0.0.192.in-addr.arpa.": (
        f"$TTL 86400\n{SOA}170 IN PTR ipv4only.arpa.\n171 IN PTR ipv4only.arpa.\n"
    ),
}

Start = Callable[[Endpoint], Endpoint]


@pytest.fixture
def totd(dns_process: DnsProcess) -> Start:
    """Factory: ``totd-faith dns`` for PREFIX with ``upstream``, started and answering."""

    def start(upstream: Endpoint) -> Endpoint:
        return dns_process("--upstream", str(upstream), "--prefix", PREFIX)[0]

    return start


def ask(
    endpoint: Endpoint, name: str, rdtype: str, *, do: bool = False, cd: bool = False
) -> dns.message.Message:
    query = dns.message.make_query(name, dns.rdatatype.from_text(rdtype), want_dnssec=do)
    if cd:
        query.flags |= dns.flags.CD
    response = dns.query.udp(query, str(endpoint.host), port=endpoint.port, timeout=5)
    assert response.id == query.id and response.question == query.question
    return response


def data(response: dns.message.Message, rdtype: str) -> set[str]:
    """The rdata of every ``rdtype`` RRset in the answer section."""
    wanted = dns.rdatatype.from_text(rdtype)
    return {rd.to_text() for rrset in response.answer if rrset.rdtype == wanted for rd in rrset}


def dead_endpoint() -> Endpoint:
    """A loopback port nobody listens on: an upstream that never answers."""
    return parse_endpoint(f"127.0.0.1:{free_port()}")


def test_rfc8880_same_data_as_unbound_dns64(
    nsd: Callable[[dict[str, str]], Endpoint],
    unbound: Callable[[str, str], Endpoint],
    totd: Start,
) -> None:
    arpa = nsd(ARPA_ZONES)
    server, clauses = dns64_options(PREFIX, {name: arpa for name in ARPA_ZONES})
    # Everything else goes to a dead port: Unbound must never reach the root servers.
    dead = dead_endpoint()
    clauses += f'\nforward-zone:\n  name: "."\n  forward-addr: {dead.host}@{dead.port}'
    peer = unbound(server, clauses)
    ours = totd(arpa)

    pair = {"64:ff9b::c000:aa", "64:ff9b::c000:ab"}
    for endpoint in (ours, peer):
        r = ask(endpoint, "ipv4only.arpa.", "A")
        assert r.rcode() == dns.rcode.NOERROR
        assert data(r, "A") == {"192.0.0.170", "192.0.0.171"}
        r = ask(endpoint, "ipv4only.arpa.", "AAAA")
        assert r.rcode() == dns.rcode.NOERROR and data(r, "AAAA") == pair
        r = ask(endpoint, "nothing.ipv4only.arpa.", "A")
        assert r.rcode() == dns.rcode.NXDOMAIN and not r.answer
        r = ask(endpoint, "ipv4only.arpa.", "MX")
        assert r.rcode() == dns.rcode.NOERROR and not r.answer
        # Section 7.2: asked directly, the reverse names come from the zone.
        r = ask(endpoint, "170.0.0.192.in-addr.arpa.", "PTR")
        assert data(r, "PTR") == {"ipv4only.arpa."}
        # Section 7.2.1: the synthesized address's ip6.arpa name ends in
        # 'ipv4only.arpa' (Unbound: a PTR at the ip6.arpa name; we: RFC 6147
        # section 5.3.1 option 2, a CNAME to the in-addr.arpa name and its PTR).
        r = ask(endpoint, dns.reversename.from_address("64:ff9b::c000:ab").to_text(), "PTR")
        assert r.rcode() == dns.rcode.NOERROR and data(r, "PTR") == {"ipv4only.arpa."}

    # Section 7.1 item 4: "a negative ("no error no answer") response for all
    # other query types except DS" -- Unbound relays the zone's SOA and NS here.
    for rdtype in ("SOA", "NS"):
        r = ask(ours, "ipv4only.arpa.", rdtype)
        assert r.rcode() == dns.rcode.NOERROR and not r.answer and not r.authority


def test_rfc8880_7_1_answered_with_no_upstream_at_all(totd: Start) -> None:
    # "MUST NOT attempt to look up NS records for 'ipv4only.arpa' or otherwise
    # query authoritative name servers" -- so a dead upstream changes nothing
    # (Unbound 1.17 in the same position answers SERVFAIL after its timeouts).
    ours = totd(dead_endpoint())
    r = ask(ours, "ipv4only.arpa.", "AAAA")
    assert r.rcode() == dns.rcode.NOERROR
    assert data(r, "AAAA") == {"64:ff9b::c000:aa", "64:ff9b::c000:ab"}
    assert data(ask(ours, "IPV4ONLY.arpa.", "A"), "A") == {"192.0.0.170", "192.0.0.171"}
    assert ask(ours, "x.ipv4only.arpa.", "AAAA").rcode() == dns.rcode.NXDOMAIN
    r = ask(ours, "ipv4only.arpa.", "SOA")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer
    # Section 7.2.1: no reverse query for the synthesized pair either.
    r = ask(ours, dns.reversename.from_address("64:ff9b::c000:aa").to_text(), "PTR")
    assert r.rcode() == dns.rcode.NOERROR and data(r, "PTR") == {"ipv4only.arpa."}
    # Section 5: a validating client (DO+CD) still learns the prefix; it must
    # not validate this answer (Unbound gives it no AAAA at all).
    r = ask(ours, "ipv4only.arpa.", "AAAA", do=True, cd=True)
    assert data(r, "AAAA") == {"64:ff9b::c000:aa", "64:ff9b::c000:ab"}
    assert not r.flags & dns.flags.AD
