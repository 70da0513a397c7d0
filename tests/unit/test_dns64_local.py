"""PTR for synthesized addresses (RFC 6147 5.3.1) and static hosts answered locally.

ipv4only.arpa and its reverse names (RFC 8880 section 7): test_dns64_ipv4only.py.
"""

from __future__ import annotations

import dns.flags
import dns.rcode
import dns.reversename

from tests.unit.dns64_support import dns64, host, no_reply, query, run, upstream


def rev(address: str) -> str:
    return dns.reversename.from_address(address).to_text()


# -- RFC 6147 section 5.3.1: PTR ---------------------------------------------------


def test_rfc6147_5_3_1_ptr_inside_prefix_is_cname_to_in_addr_plus_upstream_answer() -> None:
    name = rev("2001:db8:64::c000:221")
    r = run(
        dns64(),
        query(name, "PTR"),
        {
            ("33.2.0.192.in-addr.arpa.", "PTR"): upstream(
                answer="33.2.0.192.in-addr.arpa. 3600 IN PTR www.example.",
                authority="2.0.192.in-addr.arpa. 3600 IN NS ns.example.",
            )
        },
    )
    assert r.questions == [("33.2.0.192.in-addr.arpa.", "PTR")]
    assert r.rrsets() == [
        f"{name} 600 CNAME 33.2.0.192.in-addr.arpa.",
        "33.2.0.192.in-addr.arpa. 3600 PTR www.example.",
    ]
    assert r.rrsets("authority") == ["2.0.192.in-addr.arpa. 3600 NS ns.example."]


def test_rfc6147_5_3_1_ptr_rcode_comes_from_in_addr_answer() -> None:
    name = rev("2001:db8:64::c000:222")
    r = run(
        dns64(),
        query(name, "PTR"),
        {
            ("34.2.0.192.in-addr.arpa.", "PTR"): upstream(
                "NXDOMAIN", authority="2.0.192.in-addr.arpa. 60 IN SOA a. b. 1 1 1 1 60"
            )
        },
    )
    assert r.rcode == dns.rcode.NXDOMAIN
    assert r.rrsets() == [f"{name} 600 CNAME 34.2.0.192.in-addr.arpa."]


def test_rfc6147_5_3_1_ptr_upstream_failure_is_servfail() -> None:
    name = rev("2001:db8:64::c000:222")
    r = run(dns64(), query(name, "PTR"), {("34.2.0.192.in-addr.arpa.", "PTR"): no_reply()})
    assert r.rcode == dns.rcode.SERVFAIL


def test_rfc6147_5_3_1_ptr_for_non_96_prefix() -> None:
    resolver = dns64(("2001:db8:1::/48",))
    address = "2001:db8:1:c000:2:100::"  # 192.0.2.1 in a /48 (RFC 6052 section 2.2)
    r = run(
        resolver,
        query(rev(address), "PTR"),
        {("1.2.0.192.in-addr.arpa.", "PTR"): upstream()},
    )
    assert r.rrsets()[0].endswith("CNAME 1.2.0.192.in-addr.arpa.")


def test_rfc6147_5_3_1_ptr_outside_prefixes_forwarded_unchanged() -> None:
    name = rev("2001:db8:99::1")
    r = run(dns64(), query(name, "PTR"), {(name, "PTR"): upstream("NXDOMAIN")})
    assert r.questions == [(name, "PTR")]
    assert r.rcode == dns.rcode.NXDOMAIN


def test_rfc6147_5_3_1_partial_ip6_arpa_name_inside_prefix_forwarded() -> None:
    # The /96 zone apex and a name between it and a full address: not addresses.
    full = dns.reversename.from_address("2001:db8:64::c000:221")
    for cut in (8, 1):
        partial = full.split(len(full) - cut)[1].to_text()
        r = run(dns64(), query(partial, "PTR"), {(partial, "PTR"): upstream()})
        assert r.questions == [(partial, "PTR")]


def test_rfc6147_5_3_1_ptr_for_unmapped_address_forwarded() -> None:
    resolver = dns64(dns64={"mapped": ["198.51.100.0/24"]})
    name = rev("2001:db8:64::c000:221")  # 192.0.2.33: not mapped, never synthesized
    r = run(resolver, query(name, "PTR"), {(name, "PTR"): upstream("NXDOMAIN")})
    assert r.questions == [(name, "PTR")]


def test_rfc6052_3_1_ptr_for_non_global_in_wkp_forwarded() -> None:
    resolver = dns64(("64:ff9b::/96",))
    name = rev("64:ff9b::a00:1")  # 10.0.0.1
    r = run(resolver, query(name, "PTR"), {(name, "PTR"): upstream("NXDOMAIN")})
    assert r.questions == [(name, "PTR")]
    name = rev("64:ff9b::808:808")
    r = run(resolver, query(name, "PTR"), {("8.8.8.8.in-addr.arpa.", "PTR"): upstream()})
    assert r.questions == [("8.8.8.8.in-addr.arpa.", "PTR")]


def test_rfc6052_2_2_ptr_with_nonzero_u_octet_forwarded() -> None:
    resolver = dns64(("2001:db8:1::/48",))
    name = rev("2001:db8:1:c000:ff02:100::")  # u-octet (bits 64-71) = 0xff
    r = run(resolver, query(name, "PTR"), {(name, "PTR"): upstream()})
    assert r.questions == [(name, "PTR")]


def test_rfc6147_5_5_ptr_with_do_and_cd_is_not_synthesized() -> None:
    name = rev("2001:db8:64::c000:221")
    r = run(dns64(), query(name, "PTR", do=True, cd=True), {(name, "PTR"): upstream()})
    assert r.questions == [(name, "PTR")]


def test_ptr_case_of_question_echoed_and_cname_owner_matches() -> None:
    name = rev("2001:db8:64::c000:221").replace("ip6.arpa", "IP6.ARPA")
    r = run(dns64(), query(name, "PTR"), {("33.2.0.192.in-addr.arpa.", "PTR"): upstream()})
    assert r.response.question[0].name.to_text() == name
    assert r.response.answer[0].name.to_text().lower() == name.lower()


# -- static hosts ---------------------------------------------------------------------

HOSTS = (
    host("192.0.2.10", "cvsup.example."),
    host("192.0.2.10", "mirror.example."),
    host("192.0.2.11", "cvsup.example.", lineno=2),
    host("10.0.0.5", "nas.example.", lineno=3),
)


def test_hosts_a_answered_locally() -> None:
    r = run(dns64(hosts=HOSTS), query("CVSUP.example.", "A"))
    assert r.asked == []
    assert r.rrsets() == ["cvsup.example. 3600 A 192.0.2.10", "cvsup.example. 3600 A 192.0.2.11"]
    assert r.response.question[0].name.to_text() == "CVSUP.example."


def test_hosts_aaaa_synthesized_locally_with_hosts_ttl() -> None:
    resolver = dns64(hosts=HOSTS, dns={"hosts_ttl": 120})
    r = run(resolver, query("cvsup.example."))
    assert r.asked == []
    assert r.rrsets() == [
        "cvsup.example. 120 AAAA 2001:db8:64::c000:20a",
        "cvsup.example. 120 AAAA 2001:db8:64::c000:20b",
    ]


def test_hosts_aaaa_follows_wkp_rule() -> None:
    resolver = dns64(("64:ff9b::/96",), hosts=HOSTS)
    r = run(resolver, query("nas.example."))
    assert r.asked == [] and r.rrsets() == [] and r.rcode == dns.rcode.NOERROR


def test_hosts_aaaa_follows_mapped_ranges() -> None:
    resolver = dns64(hosts=HOSTS, dns64={"mapped": ["10.0.0.0/8"]})
    assert run(resolver, query("nas.example.")).addresses() == ["2001:db8:64::a00:5"]
    assert run(resolver, query("cvsup.example.")).addresses() == []


def test_hosts_other_types_nodata() -> None:
    r = run(dns64(hosts=HOSTS), query("cvsup.example.", "MX"))
    assert r.asked == [] and r.rcode == dns.rcode.NOERROR and r.rrsets() == []


def test_hosts_ptr_in_addr_answered_with_canonical_name() -> None:
    r = run(dns64(hosts=HOSTS), query("10.2.0.192.in-addr.arpa.", "PTR"))
    assert r.asked == []
    assert r.rrsets() == ["10.2.0.192.in-addr.arpa. 3600 PTR cvsup.example."]


def test_hosts_ptr_ip6_arpa_of_synthesized_address_answered_locally() -> None:
    name = rev("2001:db8:64::c000:20b")
    r = run(dns64(hosts=HOSTS), query(name, "PTR"))
    assert r.asked == []
    assert r.rrsets() == [
        f"{name} 600 CNAME 11.2.0.192.in-addr.arpa.",
        "11.2.0.192.in-addr.arpa. 3600 PTR cvsup.example.",
    ]


def test_hosts_names_below_a_host_are_forwarded() -> None:
    r = run(
        dns64(hosts=HOSTS),
        query("www.cvsup.example.", "A"),
        {("www.cvsup.example.", "A"): upstream("NXDOMAIN")},
    )
    assert r.questions == [("www.cvsup.example.", "A")]


def test_hosts_aaaa_with_do_and_cd_is_nodata() -> None:
    r = run(dns64(hosts=HOSTS), query("cvsup.example.", do=True, cd=True))
    assert r.asked == [] and r.rrsets() == []
    assert r.response.flags & dns.flags.CD


def test_hosts_loopback_entry_gets_a_but_no_aaaa() -> None:
    # /etc/hosts-style files carry "127.0.0.1 localhost": no translator reaches it.
    resolver = dns64(hosts=(host("127.0.0.1", "localhost."),))
    assert run(resolver, query("localhost.", "A")).rrsets() == ["localhost. 3600 A 127.0.0.1"]
    r = run(resolver, query("localhost."))
    assert r.asked == [] and r.rrsets() == []
    name = rev("2001:db8:64::7f00:1")
    r = run(resolver, query(name, "PTR"), {(name, "PTR"): upstream("NXDOMAIN")})
    assert r.questions == [(name, "PTR")]  # not one of our addresses: forwarded
