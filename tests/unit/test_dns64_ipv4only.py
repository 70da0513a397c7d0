"""ipv4only.arpa and its reverse names, as RFC 8880 section 7 fixes them for a DNS64.

RFC 8880 section 7.1 item 4 (the DNS64 recursive resolver): "MUST act as
authoritative for this zone, by generating immediate responses for all queries
for 'ipv4only.arpa' (and any subdomain of 'ipv4only.arpa'), with the one
exception of queries for the DS record", namely "the 192.0.0.170 and 192.0.0.171
responses for ... "A", the appropriate synthesized IPv6 address record responses
for ... "AAAA", and a negative ("no error no answer") response for all other
query types except DS", and "For all subdomains of 'ipv4only.arpa' ... immediate
NXDOMAIN responses."  Section 7.2 item 4: "Recursive resolvers SHOULD NOT
recognize these two reverse mapping names as special"; section 7.2.1: for the
synthesized addresses of 192.0.0.170/171 the DNS64 "does not issue reverse
mapping queries ... but instead ... immediately returns the answer
'ipv4only.arpa'."

Each test checks that nothing was asked upstream (``r.asked == []``) where the
RFC wants an immediate answer, and the exact upstream question where it wants
the usual resolution.
"""

from __future__ import annotations

import ipaddress

import dns.flags
import dns.rcode
import dns.reversename
import pytest

from tests.unit.dns64_support import dns64, query, run, upstream
from totd_faith.dns64.localzones import IPV4ONLY_TTL

PAIR = ["2001:db8:64::c000:aa", "2001:db8:64::c000:ab"]


def rev(address: str) -> str:
    return dns.reversename.from_address(address).to_text()


# -- section 7.1 item 4: A and AAAA ------------------------------------------------------


def test_rfc8880_7_1_a_is_192_0_0_170_and_171_without_upstream() -> None:
    r = run(dns64(), query("ipv4only.arpa.", "A"))
    assert r.asked == []
    assert r.rcode == dns.rcode.NOERROR
    assert r.rrsets() == [
        f"ipv4only.arpa. {IPV4ONLY_TTL} A 192.0.0.170",
        f"ipv4only.arpa. {IPV4ONLY_TTL} A 192.0.0.171",
    ]
    assert r.rrsets("authority") == [] and r.rrsets("additional") == []


def test_rfc8880_7_1_aaaa_is_a_pair_per_prefix_in_configured_order() -> None:
    # "This can return more than one pair of IPv6 addresses if there are
    # multiple NAT64 prefixes."  The WKP carries them too (RFC 6052 section 3.1
    # forbids non-global IPv4 there, but these two are what discovery is for).
    resolver = dns64(("2001:db8:64::/96", "64:ff9b::/96", "2001:db8:1::/48"))
    r = run(resolver, query("ipv4only.arpa."))
    assert r.asked == []
    assert r.rcode == dns.rcode.NOERROR
    assert r.rrsets() == [
        f"ipv4only.arpa. {IPV4ONLY_TTL} AAAA {v6}"
        for v6 in (
            *PAIR,
            "64:ff9b::c000:aa",
            "64:ff9b::c000:ab",
            "2001:db8:1:c000:0:aa00::",  # RFC 6052 section 2.2: /48 skips bits 64-71
            "2001:db8:1:c000:0:ab00::",
        )
    ]
    assert r.rrsets("authority") == []


def test_rfc8880_7_1_aaaa_ignores_mapped_ranges_and_echoes_question_case() -> None:
    # The synthesized pair reveals the prefix whatever dns64.mapped selects.
    resolver = dns64(dns64={"mapped": ["198.51.100.0/24"]})
    r = run(resolver, query("IPv4Only.ARPA."))
    assert r.asked == []
    assert r.addresses() == PAIR
    assert r.response.question[0].name.to_text() == "IPv4Only.ARPA."


def test_rfc8880_7_1_answers_are_fresh_copies() -> None:
    # The shell and the cache age TTLs in place; the next client must not see it.
    resolver = dns64()
    first = run(resolver, query("ipv4only.arpa."))
    first.response.answer[0].ttl = 5
    assert run(resolver, query("ipv4only.arpa.")).response.answer[0].ttl == IPV4ONLY_TTL


# -- section 7.1 item 4: every other type except DS is "no error no answer" --------------


@pytest.mark.parametrize(
    "rdtype", ["SOA", "NS", "MX", "TXT", "PTR", "CNAME", "SRV", "HTTPS", "ANY", "RRSIG", "DNSKEY"]
)
def test_rfc8880_7_1_other_types_are_nodata_without_upstream(rdtype: str) -> None:
    # SOA and NS too: the RFC lists no SOA or NS data for a DNS64 to give out.
    r = run(dns64(), query("ipv4only.arpa.", rdtype))
    assert r.asked == []
    assert r.rcode == dns.rcode.NOERROR
    assert r.rrsets() == [] and r.rrsets("authority") == [] and r.rrsets("additional") == []


def test_rfc8880_7_1_ds_is_resolved_the_usual_way() -> None:
    # "Queries for the DS record are resolved the usual way to allow a client to
    # securely verify that the 'ipv4only.arpa' zone has an insecure delegation."
    proof = "arpa. 3600 IN SOA a.root-servers.net. nstld.verisign-grs.com. 1 1800 900 604800 86400"
    r = run(
        dns64(),
        query("ipv4only.arpa.", "DS", do=True),
        {("ipv4only.arpa.", "DS"): upstream(authority=proof)},
    )
    assert r.questions == [("ipv4only.arpa.", "DS")]
    assert r.rcode == dns.rcode.NOERROR and r.rrsets() == []
    assert r.rrsets("authority")[0].startswith("arpa. 3600 SOA")


def test_rfc8880_7_1_ds_below_ipv4only_arpa_is_resolved_the_usual_way_too() -> None:
    # The DS exception is stated for "all queries for 'ipv4only.arpa' (and any
    # subdomain ...)"; it is the only query for those names that goes upstream.
    r = run(
        dns64(),
        query("x.ipv4only.arpa.", "DS"),
        {("x.ipv4only.arpa.", "DS"): upstream("NXDOMAIN")},
    )
    assert r.questions == [("x.ipv4only.arpa.", "DS")]
    assert r.rcode == dns.rcode.NXDOMAIN


# -- section 7.1 item 4: no names below ipv4only.arpa --------------------------------------


@pytest.mark.parametrize("rdtype", ["A", "AAAA", "SOA", "NS", "PTR", "TXT", "ANY"])
@pytest.mark.parametrize("name", ["foo.ipv4only.arpa.", "a.b.IPV4ONLY.arpa.", "*.ipv4only.arpa."])
def test_rfc8880_7_1_subdomains_are_nxdomain_without_upstream(name: str, rdtype: str) -> None:
    r = run(dns64(), query(name, rdtype))
    assert r.asked == []
    assert r.rcode == dns.rcode.NXDOMAIN
    assert r.rrsets() == [] and r.rrsets("authority") == []


def test_names_that_merely_end_like_ipv4only_arpa_are_not_special() -> None:
    name = "xipv4only.arpa."
    r = run(dns64(), query(name, "A"), {(name, "A"): upstream("NXDOMAIN")})
    assert r.questions == [(name, "A")]


# -- section 5 and RFC 6147 section 5.5: DNSSEC flags -----------------------------------


@pytest.mark.parametrize(("do", "cd"), [(True, True), (True, False), (False, True)])
def test_rfc8880_5_aaaa_answered_whatever_do_and_cd(do: bool, cd: bool) -> None:
    # Section 5: the zone "MUST be an insecure delegation" and validating
    # resolvers "MUST NOT attempt to validate answers received in response to
    # queries for the IPv6 AAAA address records for 'ipv4only.arpa'", so the
    # RFC 6147 section 5.5 DO+CD rule (no synthesis) does not stop discovery:
    # such a client learns the prefix here and synthesizes itself.
    r = run(dns64(), query("ipv4only.arpa.", do=do, cd=cd))
    assert r.asked == []
    assert r.addresses() == PAIR
    assert not r.response.flags & dns.flags.AD  # synthesized: never "authenticated"
    assert bool(r.response.flags & dns.flags.CD) == cd
    assert bool(r.response.ednsflags & dns.flags.DO) == do
    a = run(dns64(), query("ipv4only.arpa.", "A", do=do, cd=cd))
    assert a.asked == [] and len(a.rrsets()) == 2
    assert run(dns64(), query("x.ipv4only.arpa.", do=do, cd=cd)).rcode == dns.rcode.NXDOMAIN


# -- section 7.1 item 4: a client without DNS64 is served as by a plain forwarder ------------


def test_rfc8880_7_1_client_without_dns64_has_ipv4only_arpa_forwarded() -> None:
    # "Traditional forwarding recursive resolvers SHOULD NOT recognize
    # 'ipv4only.arpa' as special ... Passing through the 'ipv4only.arpa' queries
    # to the upstream DNS64 recursive resolver will allow the correct NAT64
    # prefix to be discovered."  For a client outside dns64.clients we are one.
    resolver = dns64(dns64={"clients": ["fd00::/8"]})
    outside = ipaddress.ip_address("::1")  # allowed by dns.allow, not a DNS64 client
    theirs = "ipv4only.arpa. 1800 IN AAAA 64:ff9b::c000:aa"
    r = run(
        resolver,
        query("ipv4only.arpa."),
        {("ipv4only.arpa.", "AAAA"): upstream(answer=theirs)},
        client=outside,
    )
    assert r.questions == [("ipv4only.arpa.", "AAAA")]
    assert r.rrsets() == ["ipv4only.arpa. 1800 AAAA 64:ff9b::c000:aa"]
    for name, rdtype in (("ipv4only.arpa.", "A"), ("x.ipv4only.arpa.", "A")):
        r = run(resolver, query(name, rdtype), {(name, rdtype): upstream()}, client=outside)
        assert r.questions == [(name, rdtype)]
    # A DNS64 client of the same server gets the local answer.
    inside = ipaddress.ip_address("fd00::1")
    r = run(resolver, query("ipv4only.arpa."), client=inside)
    assert r.asked == [] and r.addresses() == PAIR


# -- section 7.2: 170.0.0.192.in-addr.arpa and 171.0.0.192.in-addr.arpa ------------------


@pytest.mark.parametrize(
    ("name", "rdtype"),
    [
        ("170.0.0.192.in-addr.arpa.", "PTR"),
        ("171.0.0.192.in-addr.arpa.", "PTR"),
        ("170.0.0.192.in-addr.arpa.", "A"),
        ("x.171.0.0.192.in-addr.arpa.", "PTR"),
    ],
)
def test_rfc8880_7_2_reverse_names_asked_directly_go_upstream(name: str, rdtype: str) -> None:
    # Item 4: "Recursive resolvers SHOULD NOT recognize these two reverse
    # mapping names as special and SHOULD NOT, by default, give them any
    # special treatment."  (Item 3 asks that of stub resolver libraries.)
    answer = f"{name} 86400 IN PTR ipv4only.arpa." if rdtype == "PTR" else ""
    r = run(dns64(), query(name, rdtype), {(name, rdtype): upstream(answer=answer)})
    assert r.questions == [(name, rdtype)]
    assert r.rrsets() == ([f"{name} 86400 PTR ipv4only.arpa."] if answer else [])


@pytest.mark.parametrize("prefix", ["2001:db8:64::/96", "64:ff9b::/96", "2001:db8:1::/48"])
@pytest.mark.parametrize("last", [170, 171])
def test_rfc8880_7_2_1_ip6_arpa_of_synthesized_pair_answers_ipv4only_arpa_at_once(
    prefix: str, last: int
) -> None:
    # dns64.mapped leaves 192.0.0.0/24 out: the pair is still ours (section 7.1).
    resolver = dns64((prefix,), dns64={"mapped": ["198.51.100.0/24"]})
    # The address exactly as the ipv4only.arpa AAAA answer handed it out.
    pair = run(resolver, query("ipv4only.arpa.")).addresses()
    assert len(pair) == 2
    name = rev(pair[last - 170])
    r = run(resolver, query(name, "PTR"))
    assert r.asked == []
    assert r.rcode == dns.rcode.NOERROR
    target = f"{last}.0.0.192.in-addr.arpa."
    # RFC 6147 section 5.3.1 option 2 (our PTR form): CNAME, then the answer.
    assert r.rrsets() == [
        f"{name} 600 CNAME {target}",
        f"{target} {IPV4ONLY_TTL} PTR ipv4only.arpa.",
    ]
    assert r.rrsets("authority") == []


def test_rfc8880_7_2_1_other_addresses_in_192_0_0_0_24_are_resolved_upstream() -> None:
    name = rev("2001:db8:64::c000:ac")  # 192.0.0.172: not special
    target = "172.0.0.192.in-addr.arpa."
    r = run(
        dns64(dns64={"mapped": ["192.0.0.0/24"]}),
        query(name, "PTR"),
        {(target, "PTR"): upstream("NXDOMAIN")},
    )
    assert r.questions == [(target, "PTR")]
    assert r.rcode == dns.rcode.NXDOMAIN
