"""RFC 6147 AAAA synthesis rules, one test (or more) per rule, driven with fake upstream replies."""

from __future__ import annotations

import ipaddress

import dns.flags
import dns.rcode

from tests.unit.dns64_support import dns64, no_reply, query, run, upstream

SOA = "example. 3600 IN SOA ns.example. admin.example. 1 3600 600 86400 300"
NODATA = upstream(authority=SOA)


def test_rfc6147_5_1_1_real_aaaa_is_returned_without_synthesis() -> None:
    r = run(
        dns64(),
        query("dual.example."),
        {("dual.example.", "AAAA"): upstream(answer="dual.example. 300 IN AAAA 2001:db8::1")},
    )
    assert r.questions == [("dual.example.", "AAAA")]  # no A query: section 5.1.1
    assert r.rrsets() == ["dual.example. 300 AAAA 2001:db8::1"]
    assert r.rcode == dns.rcode.NOERROR


def test_rfc6147_5_1_1_nodata_synthesizes_from_a() -> None:
    r = run(
        dns64(),
        query("v4.example."),
        {
            ("v4.example.", "AAAA"): NODATA,
            ("v4.example.", "A"): upstream(answer="v4.example. 900 IN A 192.0.2.33"),
        },
    )
    assert r.questions == [("v4.example.", "AAAA"), ("v4.example.", "A")]
    # TTL = min(A 900, SOA min(3600, 300)) = 300: section 5.1.7.
    assert r.rrsets() == ["v4.example. 300 AAAA 2001:db8:64::c000:221"]
    assert r.rcode == dns.rcode.NOERROR


def test_rfc6147_5_1_2_nxdomain_is_returned_never_synthesized() -> None:
    r = run(
        dns64(),
        query("gone.example."),
        {("gone.example.", "AAAA"): upstream("NXDOMAIN", authority=SOA)},
    )
    assert r.questions == [("gone.example.", "AAAA")]  # no A query
    assert r.rcode == dns.rcode.NXDOMAIN
    assert r.rrsets("authority")[0].startswith("example. 3600 SOA")


def test_rfc6147_5_1_2_other_rcodes_count_as_empty_answer() -> None:
    for rcode in ("SERVFAIL", "REFUSED", "NOTIMP", "FORMERR"):
        r = run(
            dns64(),
            query("odd.example."),
            {
                ("odd.example.", "AAAA"): upstream(rcode),
                ("odd.example.", "A"): upstream(answer="odd.example. 100 IN A 192.0.2.1"),
            },
        )
        assert r.rcode == dns.rcode.NOERROR, rcode
        # No SOA in an error answer: TTL is min(A TTL, 600).
        assert r.rrsets() == ["odd.example. 100 AAAA 2001:db8:64::c000:201"], rcode


def test_rfc6147_5_1_3_timeout_counts_as_servfail_and_synthesis_happens() -> None:
    r = run(
        dns64(),
        query("slow.example."),
        {
            ("slow.example.", "AAAA"): no_reply(),
            ("slow.example.", "A"): upstream(answer="slow.example. 7200 IN A 192.0.2.9"),
        },
    )
    assert r.rrsets() == ["slow.example. 600 AAAA 2001:db8:64::c000:209"]


def test_rfc6147_5_1_3_both_queries_time_out_gives_servfail() -> None:
    r = run(
        dns64(),
        query("dead.example."),
        {("dead.example.", "AAAA"): no_reply(), ("dead.example.", "A"): no_reply()},
    )
    assert r.rcode == dns.rcode.SERVFAIL
    assert r.rrsets() == []


def test_rfc6147_5_1_4_excluded_aaaa_only_counts_as_empty() -> None:
    r = run(
        dns64(),
        query("mapped.example."),
        {
            ("mapped.example.", "AAAA"): upstream(
                answer="mapped.example. 300 IN AAAA ::ffff:192.0.2.7"
            ),
            ("mapped.example.", "A"): upstream(answer="mapped.example. 300 IN A 192.0.2.7"),
        },
    )
    assert r.addresses() == ["2001:db8:64::c000:207"]
    assert "::ffff" not in " ".join(r.rrsets())


# A positive upstream reply: the zone's NS records in the authority section, no SOA.
NS = "example. 300 IN NS ns.example."
GLUE = "ns.example. 300 IN A 192.0.2.53"


def test_rfc6147_5_1_4_only_excluded_and_no_a_is_the_a_querys_nodata() -> None:
    # Section 5.1.4: only excluded AAAA records "MUST treat the answer as though it
    # were an empty answer"; section 5.1.6: the A query's "empty result ... is used
    # as the basis for the answer".  Not the trimmed AAAA reply: NOERROR, nothing
    # in the answer and NS without SOA is a referral by RFC 2308 section 2.2.
    r = run(
        dns64(),
        query("mappedonly.example."),
        {
            ("mappedonly.example.", "AAAA"): upstream(
                answer="mappedonly.example. 300 IN AAAA ::ffff:192.0.2.11",
                authority=NS,
                additional=GLUE,
            ),
            ("mappedonly.example.", "A"): upstream(authority=SOA),
        },
    )
    assert r.questions == [("mappedonly.example.", "AAAA"), ("mappedonly.example.", "A")]
    assert r.rcode == dns.rcode.NOERROR
    assert r.rrsets() == []
    assert r.rrsets("authority") == [
        "example. 3600 SOA ns.example. admin.example. 1 3600 600 86400 300"
    ]


def test_rfc6147_5_1_4_only_excluded_at_end_of_chain_keeps_the_chain_and_soa() -> None:
    # Section 5.1.5: the chain is part of the answer; the SOA comes with the A query's
    # negative answer for the chain's target (section 5.1.6).
    chain = "cn.example. 300 IN CNAME mappedonly.example."
    r = run(
        dns64(),
        query("cn.example."),
        {
            ("cn.example.", "AAAA"): upstream(
                answer=chain + "\nmappedonly.example. 300 IN AAAA ::ffff:192.0.2.11",
                authority=NS,
            ),
            ("cn.example.", "A"): upstream(answer=chain, authority=SOA),
        },
    )
    assert r.rcode == dns.rcode.NOERROR
    assert r.rrsets() == ["cn.example. 300 CNAME mappedonly.example."]
    assert [line.split()[2] for line in r.rrsets("authority")] == ["SOA"]


def test_rfc6147_5_1_4_only_excluded_and_nothing_to_synthesize_is_nodata_without_ns() -> None:
    # The A query found A records, none in dns64.mapped (section 5.1.7): neither reply
    # carries an SOA, so the NODATA has an empty authority section (RFC 2308 section
    # 2.2 NODATA type 3: "or there will be no NS records there"), never NS alone.
    r = run(
        dns64(dns64={"mapped": ["198.51.100.0/24"]}),
        query("mappedonly.example."),
        {
            ("mappedonly.example.", "AAAA"): upstream(
                answer="mappedonly.example. 300 IN AAAA ::ffff:192.0.2.11",
                authority=NS,
                additional=GLUE,
            ),
            ("mappedonly.example.", "A"): upstream(
                answer="mappedonly.example. 300 IN A 192.0.2.11", authority=NS, additional=GLUE
            ),
        },
    )
    assert r.rcode == dns.rcode.NOERROR
    assert r.rrsets() == []
    assert r.rrsets("authority") == []
    assert r.rrsets("additional") == []


def test_rfc6147_5_1_4_excluded_records_removed_from_mixed_answer() -> None:
    r = run(
        dns64(),
        query("mixed.example.", do=True),
        {
            ("mixed.example.", "AAAA"): upstream(
                answer="mixed.example. 300 IN AAAA ::ffff:192.0.2.7\n"
                "mixed.example. 300 IN AAAA 2001:db8::7\n"
                "mixed.example. 300 IN RRSIG AAAA 8 2 300 20300101000000 20200101000000 "
                "1 example. AAAA",
                flags="QR RD RA AD",
            ),
        },
    )
    assert r.questions == [("mixed.example.", "AAAA")]
    # The trimmed RRset's signature no longer matches it and goes, and so does AD.
    assert r.rrsets() == ["mixed.example. 300 AAAA 2001:db8::7"]
    assert not r.response.flags & dns.flags.AD


def test_rfc6147_5_1_4_exclusion_set_is_configurable() -> None:
    resolver = dns64(dns64={"exclude": ["2001:db8:bad::/48"]})
    r = run(
        resolver,
        query("site.example."),
        {
            ("site.example.", "AAAA"): upstream(answer="site.example. 300 IN AAAA 2001:db8:bad::1"),
            ("site.example.", "A"): upstream(answer="site.example. 300 IN A 192.0.2.1"),
        },
    )
    assert r.addresses() == ["2001:db8:64::c000:201"]


def test_rfc6147_5_1_5_cname_chain_followed_and_kept() -> None:
    chain = (
        "www.example. 300 IN CNAME edge.cdn.example.\n"
        "edge.cdn.example. 300 IN CNAME v4.cdn.example."
    )
    r = run(
        dns64(),
        query("www.example."),
        {
            ("www.example.", "AAAA"): upstream(answer=chain, authority=SOA),
            ("www.example.", "A"): upstream(
                answer=chain + "\nv4.cdn.example. 60 IN A 198.51.100.10"
            ),
        },
    )
    assert r.questions == [("www.example.", "AAAA"), ("www.example.", "A")]
    assert r.rrsets() == [
        "www.example. 300 CNAME edge.cdn.example.",
        "edge.cdn.example. 300 CNAME v4.cdn.example.",
        "v4.cdn.example. 60 AAAA 2001:db8:64::c633:640a",
    ]


def test_rfc6147_5_1_5_cname_chain_ending_in_real_aaaa_is_returned() -> None:
    r = run(
        dns64(),
        query("alias.example."),
        {
            ("alias.example.", "AAAA"): upstream(
                answer="alias.example. 300 IN CNAME host.example.\n"
                "host.example. 300 IN AAAA 2001:db8::5"
            )
        },
    )
    assert r.questions == [("alias.example.", "AAAA")]
    assert r.addresses() == ["2001:db8::5"]


def test_rfc6147_5_1_5_exclusion_applies_at_end_of_chain() -> None:
    chain = "alias.example. 300 IN CNAME host.example."
    r = run(
        dns64(),
        query("alias.example."),
        {
            ("alias.example.", "AAAA"): upstream(
                answer=chain + "\nhost.example. 300 IN AAAA ::ffff:192.0.2.5"
            ),
            ("alias.example.", "A"): upstream(answer=chain + "\nhost.example. 300 IN A 192.0.2.5"),
        },
    )
    assert r.rrsets() == [
        "alias.example. 300 CNAME host.example.",
        "host.example. 300 AAAA 2001:db8:64::c000:205",
    ]


def test_rfc6147_5_1_5_dname_chain_kept() -> None:
    dname = "www.old.example. 300 IN CNAME www.new.example.\nold.example. 300 IN DNAME new.example."
    r = run(
        dns64(),
        query("www.old.example."),
        {
            ("www.old.example.", "AAAA"): upstream(answer=dname, authority=SOA),
            ("www.old.example.", "A"): upstream(
                answer="old.example. 300 IN DNAME new.example.\n"
                "www.old.example. 300 IN CNAME www.new.example.\n"
                "www.new.example. 300 IN A 192.0.2.80"
            ),
        },
    )
    assert r.rrsets() == [
        "old.example. 300 DNAME new.example.",
        "www.old.example. 300 CNAME www.new.example.",
        "www.new.example. 300 AAAA 2001:db8:64::c000:250",
    ]


def test_rfc6147_5_1_5_dname_without_its_cname_is_still_followed() -> None:
    r = run(
        dns64(),
        query("www.old.example."),
        {
            ("www.old.example.", "AAAA"): NODATA,
            ("www.old.example.", "A"): upstream(
                answer="old.example. 300 IN DNAME new.example.\n"
                "www.new.example. 300 IN A 192.0.2.80"
            ),
        },
    )
    assert r.addresses() == ["2001:db8:64::c000:250"]


def test_rfc6147_5_1_5_cname_loop_does_not_hang() -> None:
    loop = "a.example. 300 IN CNAME b.example.\nb.example. 300 IN CNAME a.example."
    r = run(
        dns64(),
        query("a.example."),
        {
            ("a.example.", "AAAA"): upstream(answer=loop, authority=SOA),
            ("a.example.", "A"): upstream(answer=loop),
        },
    )
    # Nothing to synthesize: the original AAAA answer (section 5.4).
    assert r.rrsets() == [
        "a.example. 300 CNAME b.example.",
        "b.example. 300 CNAME a.example.",
    ]


def test_rfc6147_5_1_6_empty_a_answer_returns_original_aaaa_response() -> None:
    r = run(
        dns64(),
        query("nothing.example."),
        {
            ("nothing.example.", "AAAA"): NODATA,
            ("nothing.example.", "A"): upstream(authority="example. 60 IN SOA a. b. 2 1 1 1 60"),
        },
    )
    # Section 5.4: the answer the DNS64 received to the original query (its SOA).
    assert r.rcode == dns.rcode.NOERROR
    assert r.rrsets() == []
    assert r.rrsets("authority") == [
        "example. 3600 SOA ns.example. admin.example. 1 3600 600 86400 300"
    ]


def test_rfc6147_5_1_6_a_query_error_is_the_basis_of_the_answer() -> None:
    r = run(
        dns64(),
        query("broken.example."),
        {("broken.example.", "AAAA"): NODATA, ("broken.example.", "A"): upstream("SERVFAIL")},
    )
    assert r.rcode == dns.rcode.SERVFAIL


def test_rfc6147_5_1_6_a_query_timeout_is_servfail() -> None:
    r = run(
        dns64(),
        query("half.example."),
        {("half.example.", "AAAA"): NODATA, ("half.example.", "A"): no_reply()},
    )
    assert r.rcode == dns.rcode.SERVFAIL


def test_rfc6147_5_1_6_a_records_replaced_not_kept() -> None:
    r = run(
        dns64(),
        query("v4.example."),
        {
            ("v4.example.", "AAAA"): NODATA,
            ("v4.example.", "A"): upstream(
                answer="v4.example. 300 IN A 192.0.2.1\nv4.example. 300 IN A 192.0.2.2"
            ),
        },
    )
    assert [line.split()[2] for line in r.rrsets()] == ["AAAA", "AAAA"]
    assert r.addresses() == ["2001:db8:64::c000:201", "2001:db8:64::c000:202"]


def test_rfc6147_5_1_7_ttl_is_min_of_a_ttl_and_soa() -> None:
    # SOA TTL 120 below its MINIMUM 900: the SOA TTL wins (RFC 2308 section 5).
    r = run(
        dns64(),
        query("t.example."),
        {
            ("t.example.", "AAAA"): upstream(authority="example. 120 IN SOA a. b. 1 1 1 1 900"),
            ("t.example.", "A"): upstream(answer="t.example. 3600 IN A 192.0.2.1"),
        },
    )
    assert r.rrsets() == ["t.example. 120 AAAA 2001:db8:64::c000:201"]


def test_rfc6147_5_1_7_ttl_uses_soa_minimum_when_lower_than_soa_ttl() -> None:
    r = run(
        dns64(),
        query("t.example."),
        {
            ("t.example.", "AAAA"): upstream(authority="example. 3600 IN SOA a. b. 1 1 1 1 30"),
            ("t.example.", "A"): upstream(answer="t.example. 3600 IN A 192.0.2.1"),
        },
    )
    assert r.rrsets() == ["t.example. 30 AAAA 2001:db8:64::c000:201"]


def test_rfc6147_5_1_7_ttl_keeps_lower_a_ttl() -> None:
    r = run(
        dns64(),
        query("t.example."),
        {
            ("t.example.", "AAAA"): NODATA,
            ("t.example.", "A"): upstream(answer="t.example. 5 IN A 192.0.2.1"),
        },
    )
    assert r.rrsets() == ["t.example. 5 AAAA 2001:db8:64::c000:201"]


def test_rfc6147_5_1_7_ttl_capped_at_600_without_soa() -> None:
    r = run(
        dns64(),
        query("t.example."),
        {
            ("t.example.", "AAAA"): upstream(),  # NODATA without SOA
            ("t.example.", "A"): upstream(answer="t.example. 86400 IN A 192.0.2.1"),
        },
    )
    assert r.rrsets() == ["t.example. 600 AAAA 2001:db8:64::c000:201"]


def test_rfc6147_5_1_7_one_aaaa_per_a_per_prefix_in_configured_order() -> None:
    resolver = dns64(("2001:db8:64::/96", "2001:db8:1::/48", "64:ff9b::/96"))
    r = run(
        resolver,
        query("multi.example."),
        {
            ("multi.example.", "AAAA"): NODATA,
            ("multi.example.", "A"): upstream(
                answer="multi.example. 300 IN A 192.0.2.1\nmulti.example. 300 IN A 8.8.4.4"
            ),
        },
    )
    assert r.addresses() == [
        "2001:db8:64::c000:201",
        "2001:db8:64::808:404",
        "2001:db8:1:c000:2:100::",
        "2001:db8:1:808:4:400::",
        # 192.0.2.1 is documentation space (not global): not in the WKP.
        "64:ff9b::808:404",
    ]


def test_rfc6147_5_1_7_mapped_ranges_limit_synthesis() -> None:
    resolver = dns64(dns64={"mapped": ["192.0.2.0/25"]})
    r = run(
        resolver,
        query("m.example."),
        {
            ("m.example.", "AAAA"): NODATA,
            ("m.example.", "A"): upstream(
                answer="m.example. 300 IN A 192.0.2.1\nm.example. 300 IN A 192.0.2.200"
            ),
        },
    )
    assert r.addresses() == ["2001:db8:64::c000:201"]


def test_rfc6147_5_1_7_nothing_mapped_answers_as_nodata() -> None:
    resolver = dns64(dns64={"mapped": ["198.51.100.0/24"]})
    r = run(
        resolver,
        query("m.example."),
        {
            ("m.example.", "AAAA"): NODATA,
            ("m.example.", "A"): upstream(answer="m.example. 300 IN A 192.0.2.1"),
        },
    )
    assert r.rcode == dns.rcode.NOERROR
    assert r.rrsets() == []
    assert r.rrsets("authority")[0].startswith("example. 3600 SOA")


def test_rfc6052_3_1_well_known_prefix_never_carries_non_global_ipv4() -> None:
    resolver = dns64(("64:ff9b::/96",))
    r = run(
        resolver,
        query("lan.example."),
        {
            ("lan.example.", "AAAA"): NODATA,
            ("lan.example.", "A"): upstream(
                answer="lan.example. 300 IN A 10.1.2.3\nlan.example. 300 IN A 192.168.1.2"
            ),
        },
    )
    assert r.rrsets() == []  # NODATA: the original AAAA answer
    assert r.rrsets("authority")

    r = run(
        resolver,
        query("pub.example."),
        {
            ("pub.example.", "AAAA"): NODATA,
            ("pub.example.", "A"): upstream(
                answer="pub.example. 300 IN A 10.1.2.3\npub.example. 300 IN A 8.8.8.8"
            ),
        },
    )
    assert r.addresses() == ["64:ff9b::808:808"]


def test_rfc6147_5_3_2_additional_section_passed_unchanged() -> None:
    r = run(
        dns64(),
        query("v4.example."),
        {
            ("v4.example.", "AAAA"): NODATA,
            ("v4.example.", "A"): upstream(
                answer="v4.example. 300 IN A 192.0.2.1",
                authority="example. 300 IN NS ns.example.",
                additional="ns.example. 300 IN A 192.0.2.53",
            ),
        },
    )
    # Section 5.4: authority and additional from the final (A) query; 5.3.2: no
    # synthesis in the additional section.
    assert r.rrsets("authority") == ["example. 300 NS ns.example."]
    assert r.rrsets("additional") == ["ns.example. 300 A 192.0.2.53"]


def test_rfc6147_5_5_do_and_cd_set_means_no_synthesis() -> None:
    r = run(
        dns64(),
        query("v4.example.", do=True, cd=True),
        {("v4.example.", "AAAA"): NODATA},
    )
    assert r.questions == [("v4.example.", "AAAA")]
    assert r.rrsets() == []
    sent = r.asked[0]
    assert sent.flags & dns.flags.CD and sent.ednsflags & dns.flags.DO


def test_rfc6147_5_5_do_only_synthesizes_without_rrsig_and_without_ad() -> None:
    r = run(
        dns64(),
        query("v4.example.", do=True),
        {
            ("v4.example.", "AAAA"): upstream(authority=SOA, flags="QR RD RA AD"),
            ("v4.example.", "A"): upstream(
                answer="v4.example. 300 IN A 192.0.2.1\n"
                "v4.example. 300 IN RRSIG A 8 2 300 20300101000000 20200101000000 "
                "1 example. AAAA",
                flags="QR RD RA AD",
            ),
        },
    )
    assert r.rrsets() == ["v4.example. 300 AAAA 2001:db8:64::c000:201"]
    assert not r.response.flags & dns.flags.AD
    assert all(m.ednsflags & dns.flags.DO for m in r.asked)
    assert r.response.ednsflags & dns.flags.DO  # RFC 3225: DO copied to the response


def test_rfc6147_5_5_cname_rrsig_kept_a_rrsig_dropped() -> None:
    sig = "8 3 300 20300101000000 20200101000000 1 example. AAAA"
    r = run(
        dns64(),
        query("www.example.", do=True),
        {
            ("www.example.", "AAAA"): NODATA,
            ("www.example.", "A"): upstream(
                answer="www.example. 300 IN CNAME v4.example.\n"
                f"www.example. 300 IN RRSIG CNAME {sig}\n"
                "v4.example. 300 IN A 192.0.2.1\n"
                f"v4.example. 300 IN RRSIG A {sig}"
            ),
        },
    )
    kinds = [line.split()[2] for line in r.rrsets()]
    assert kinds == ["CNAME", "RRSIG/CNAME", "AAAA"]


def test_never_synthesize_domain_is_plain_forwarding() -> None:
    resolver = dns64(dns64={"never_synthesize": ["plain.example"]})
    r = run(resolver, query("host.PLAIN.example."), {("host.plain.example.", "AAAA"): NODATA})
    assert r.questions == [("host.plain.example.", "AAAA")]
    assert r.rrsets() == []
    # A sibling domain is synthesized as usual.
    r = run(
        resolver,
        query("other.example."),
        {
            ("other.example.", "AAAA"): NODATA,
            ("other.example.", "A"): upstream(answer="other.example. 300 IN A 192.0.2.1"),
        },
    )
    assert r.addresses() == ["2001:db8:64::c000:201"]


def test_always_synthesize_ignores_real_aaaa() -> None:
    resolver = dns64(dns64={"always_synthesize": ["v4only.example"]})
    r = run(
        resolver,
        query("www.v4only.example."),
        {("www.v4only.example.", "A"): upstream(answer="www.v4only.example. 7200 IN A 192.0.2.4")},
    )
    assert r.questions == [("www.v4only.example.", "A")]  # the AAAA is never asked
    assert r.rrsets() == ["www.v4only.example. 600 AAAA 2001:db8:64::c000:204"]


def test_always_synthesize_without_a_is_nodata() -> None:
    resolver = dns64(dns64={"always_synthesize": ["v4only.example"]})
    r = run(
        resolver,
        query("x.v4only.example."),
        {("x.v4only.example.", "A"): upstream(authority=SOA)},
    )
    assert r.rcode == dns.rcode.NOERROR and r.rrsets() == []
    assert [line.split()[2] for line in r.rrsets("authority")] == ["SOA"]


def test_always_synthesize_with_nothing_to_synthesize_is_nodata_without_ns() -> None:
    # The A reply is positive (NS, no SOA) but no A is in dns64.mapped: with its A
    # records removed it must not read as a referral (RFC 2308 section 2.2).
    resolver = dns64(dns64={"always_synthesize": ["v4only.example"], "mapped": ["10.0.0.0/8"]})
    r = run(
        resolver,
        query("y.v4only.example."),
        {
            ("y.v4only.example.", "A"): upstream(
                answer="y.v4only.example. 300 IN A 192.0.2.4", authority=NS, additional=GLUE
            )
        },
    )
    assert r.rcode == dns.rcode.NOERROR
    assert r.rrsets() == [] and r.rrsets("authority") == [] and r.rrsets("additional") == []


def test_dns64_clients_switch_outside_gets_plain_forwarding() -> None:
    resolver = dns64(dns64={"clients": ["fd00::/8"]})
    assert resolver.synthesis_enabled_for(ipaddress.ip_address("fd00::5"))
    assert not resolver.synthesis_enabled_for(ipaddress.ip_address("::1"))
    r = run(resolver, query("v4.example."), {("v4.example.", "AAAA"): NODATA})
    assert r.questions == [("v4.example.", "AAAA")]
    r = run(
        resolver,
        query("v4.example."),
        {
            ("v4.example.", "AAAA"): NODATA,
            ("v4.example.", "A"): upstream(answer="v4.example. 300 IN A 192.0.2.1"),
        },
        client=ipaddress.ip_address("fd00::5"),
    )
    assert r.addresses() == ["2001:db8:64::c000:201"]


def test_question_case_and_id_echoed_in_synthesized_answer() -> None:
    q = query("WwW.ExAmPlE.", qid=0xBEEF)
    r = run(
        dns64(),
        q,
        {
            ("www.example.", "AAAA"): NODATA,
            ("www.example.", "A"): upstream(answer="www.example. 300 IN A 192.0.2.1"),
        },
    )
    assert r.response.question[0].name.to_text() == "WwW.ExAmPlE."
    assert r.response.id == 0xBEEF
    assert r.response.flags & dns.flags.RA and not r.response.flags & dns.flags.AA


def test_untranslatable_ipv4_never_synthesized() -> None:
    # RFC 1122 section 3.2.1.3: loopback and "this network"; multicast and reserved.
    r = run(
        dns64(),
        query("odd.example."),
        {
            ("odd.example.", "AAAA"): NODATA,
            ("odd.example.", "A"): upstream(
                answer="odd.example. 300 IN A 127.0.0.1\n"
                "odd.example. 300 IN A 0.1.2.3\n"
                "odd.example. 300 IN A 224.0.0.1\n"
                "odd.example. 300 IN A 255.255.255.255\n"
                "odd.example. 300 IN A 192.0.2.1"
            ),
        },
    )
    assert r.addresses() == ["2001:db8:64::c000:201"]
