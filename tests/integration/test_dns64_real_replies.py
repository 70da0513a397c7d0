"""The DNS64 core fed with real NSD replies, and checked against Unbound's dns64 module.

A small synchronous driver sends each query the core yields to a real NSD over
loopback (UDP, TCP on TC), so the core sees what authoritative servers really
send: DNAME with its synthesized CNAME (RFC 6672), negative answers with an SOA
(RFC 2308), AA set.  The same names are then asked of Unbound (``module-config:
"dns64 iterator"``, stub zone to the same NSD) and the answers compared.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.support.unbound import dns64_options
from totd_faith.config import from_table
from totd_faith.dns64 import Dns64
from totd_faith.endpoints import Endpoint

ORIGIN = "d64.example."
NSP = "2001:db8:64::/96"
ZONE = f"""\
$ORIGIN {ORIGIN}
$TTL 300
@           IN SOA  ns hostmaster 1 3600 600 86400 60
@           IN NS   ns
ns          IN A    192.0.2.53
v4          IN A    192.0.2.10
v4long 7200 IN A    192.0.2.11
dual        IN A    192.0.2.20
dual        IN AAAA 2001:db8::20
mapped      IN AAAA ::ffff:192.0.2.40
mapped      IN A    192.0.2.40
chain       IN CNAME v4
old         IN DNAME new
www.new     IN A    192.0.2.80
txt         IN TXT  "no addresses"
lan         IN A    10.0.0.1
multi       IN A    192.0.2.1
multi       IN A    198.51.100.1
"""

CLIENT = ipaddress.ip_address("::1")


def drive(core: Dns64, query: dns.message.Message, upstream: Endpoint) -> dns.message.Message:
    """A minimal synchronous shell: every yielded query goes to ``upstream``."""
    gen = core.resolve(query, CLIENT)
    try:
        sent = next(gen)
        for _ in range(4):
            sent.id = dns.message.make_query("x.", "A").id  # the shell's random ID
            reply = dns.query.udp(sent, str(upstream.host), port=upstream.port, timeout=5)
            if reply.flags & dns.flags.TC:
                reply = dns.query.tcp(sent, str(upstream.host), port=upstream.port, timeout=5)
            sent = gen.send(reply)
        raise AssertionError("too many upstream queries")
    except StopIteration as stop:
        response: dns.message.Message = stop.value
        return response


def answer_set(response: dns.message.Message) -> set[tuple[str, str, str]]:
    return {
        (rrset.name.to_text().lower(), dns.rdatatype.to_text(rrset.rdtype), rdata.to_text())
        for rrset in response.answer
        for rdata in rrset
    }


def ttls(response: dns.message.Message, rdtype: str) -> list[int]:
    return [r.ttl for r in response.answer if dns.rdatatype.to_text(r.rdtype) == rdtype]


@pytest.fixture
def nsd_upstream(nsd: Callable[[dict[str, str]], Endpoint]) -> Endpoint:
    return nsd({ORIGIN: ZONE})


def core(*prefixes: str) -> Dns64:
    return Dns64(from_table({"prefixes": list(prefixes or (NSP,))}))


def ask(core_: Dns64, upstream: Endpoint, name: str, rdtype: str = "AAAA") -> dns.message.Message:
    query = dns.message.make_query(name + ORIGIN, rdtype)
    response = drive(core_, query, upstream)
    assert response.id == query.id and response.question == query.question
    return response


def test_rfc6147_answers_from_real_nsd_replies(nsd_upstream: Endpoint) -> None:
    dns64 = core()
    # 5.1.6/5.1.7: synthesized; TTL = min(A TTL, negative answer's SOA) = 60.
    r = ask(dns64, nsd_upstream, "v4.")
    assert answer_set(r) == {(f"v4.{ORIGIN}", "AAAA", "2001:db8:64::c000:20a")}
    assert ttls(r, "AAAA") == [60]
    assert not r.flags & dns.flags.AA and r.flags & dns.flags.RA
    # 5.1.1: real AAAA returned.
    assert answer_set(ask(dns64, nsd_upstream, "dual.")) == {
        (f"dual.{ORIGIN}", "AAAA", "2001:db8::20")
    }
    # 5.1.4: ::ffff:0:0/96 excluded, the A synthesized instead.
    assert answer_set(ask(dns64, nsd_upstream, "mapped.")) == {
        (f"mapped.{ORIGIN}", "AAAA", "2001:db8:64::c000:228")
    }
    # 5.1.5: CNAME kept, DNAME kept with its synthesized CNAME.
    assert answer_set(ask(dns64, nsd_upstream, "chain.")) == {
        (f"chain.{ORIGIN}", "CNAME", f"v4.{ORIGIN}"),
        (f"v4.{ORIGIN}", "AAAA", "2001:db8:64::c000:20a"),
    }
    assert answer_set(ask(dns64, nsd_upstream, "www.old.")) == {
        (f"old.{ORIGIN}", "DNAME", f"new.{ORIGIN}"),
        (f"www.old.{ORIGIN}", "CNAME", f"www.new.{ORIGIN}"),
        (f"www.new.{ORIGIN}", "AAAA", "2001:db8:64::c000:250"),
    }
    # 5.1.2: NXDOMAIN passed on with its SOA.
    r = ask(dns64, nsd_upstream, "nothing.")
    assert r.rcode() == dns.rcode.NXDOMAIN and r.authority[0].rdtype == dns.rdatatype.SOA
    # NODATA for AAAA and A: the original AAAA answer (5.4), SOA kept.
    r = ask(dns64, nsd_upstream, "txt.")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer
    assert r.authority[0].rdtype == dns.rdatatype.SOA
    # 5.3.3: other types unchanged.
    assert answer_set(ask(dns64, nsd_upstream, "v4.", "A")) == {(f"v4.{ORIGIN}", "A", "192.0.2.10")}


def test_rfc6052_3_1_well_known_prefix_with_real_replies(nsd_upstream: Endpoint) -> None:
    dns64 = core("64:ff9b::/96", NSP)
    # 198.51.100.1 and 192.0.2.1 are documentation space: not global, so only the NSP.
    assert answer_set(ask(dns64, nsd_upstream, "multi.")) == {
        (f"multi.{ORIGIN}", "AAAA", "2001:db8:64::c000:201"),
        (f"multi.{ORIGIN}", "AAAA", "2001:db8:64::c633:6401"),
    }
    r = ask(core("64:ff9b::/96"), nsd_upstream, "lan.")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer


NAMES = ["v4.", "v4long.", "dual.", "chain.", "www.old.", "nothing.", "txt.", "multi."]


@pytest.mark.parametrize("name", NAMES)
def test_same_answers_as_unbound_dns64(
    nsd_upstream: Endpoint, unbound: Callable[..., Endpoint], name: str
) -> None:
    server, clauses = dns64_options(NSP, {ORIGIN: nsd_upstream})
    peer = unbound(server, clauses)
    query = dns.message.make_query(name + ORIGIN, "AAAA")
    theirs = dns.query.udp(query, str(peer.host), port=peer.port, timeout=5)
    ours = drive(core(), query, nsd_upstream)
    assert ours.rcode() == theirs.rcode()
    assert answer_set(ours) == answer_set(theirs)
    # TTLs differ by design: Unbound gives the synthetic AAAA the A record's TTL,
    # RFC 6147 section 5.1.7 says min(A TTL, SOA of the negative AAAA answer),
    # and every A record here has a TTL above the zone's negative TTL (60).
    # Real AAAA records keep their TTL in both.
    synthetic = any(
        ipaddress.IPv6Address(a) in ipaddress.IPv6Network(NSP)
        for _, t, a in answer_set(ours)
        if t == "AAAA"
    )
    for mine, peer_ttl in zip(ttls(ours, "AAAA"), ttls(theirs, "AAAA"), strict=True):
        if synthetic:
            assert mine == 60 and peer_ttl >= 300 - 2
        else:
            assert peer_ttl <= mine <= peer_ttl + 2


def test_exclusion_set_where_unbound_differs(
    nsd_upstream: Endpoint, unbound: Callable[..., Endpoint]
) -> None:
    """RFC 6147 section 5.1.4: an implementation "SHOULD include the ::ffff/96
    network" in the exclusion set by default.  Unbound has no exclusion set and
    returns the mapped AAAA; we synthesize from the A record instead."""
    server, clauses = dns64_options(NSP, {ORIGIN: nsd_upstream})
    peer = unbound(server, clauses)
    query = dns.message.make_query("mapped." + ORIGIN, "AAAA")
    theirs = dns.query.udp(query, str(peer.host), port=peer.port, timeout=5)
    ours = drive(core(), query, nsd_upstream)
    assert answer_set(theirs) == {(f"mapped.{ORIGIN}", "AAAA", "::ffff:192.0.2.40")}
    assert answer_set(ours) == {(f"mapped.{ORIGIN}", "AAAA", "2001:db8:64::c000:228")}
