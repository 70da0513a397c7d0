"""The answer cache with an injected clock: countdown, expiry, size bound, RFC 2308."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import dns.rrset

from totd_faith.dnscache import DnsCache, entry_cost

KEY = ("k", 0)


def _response(
    qname: str = "www.example.",
    qtype: str = "A",
    answers: tuple[tuple[str, int, str, str], ...] = (("www.example.", 300, "A", "192.0.2.1"),),
    soa_ttl: int | None = None,
    soa_minimum: int = 900,
    rcode: int = dns.rcode.NOERROR,
    edns: bool = True,
) -> bytes:
    query = dns.message.make_query(qname, qtype, use_edns=0 if edns else None)
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    for name, ttl, rdtype, rdata in answers:
        response.answer.append(dns.rrset.from_text(name, ttl, "IN", rdtype, rdata))
    if soa_ttl is not None:
        response.authority.append(
            dns.rrset.from_text(
                "example.",
                soa_ttl,
                "IN",
                "SOA",
                f"ns.example. admin.example. 1 2 3 4 {soa_minimum}",
            )
        )
    return response.to_wire()


def _ttls(wire: bytes) -> list[int]:
    message = dns.message.from_wire(wire)
    return [rrset.ttl for section in (message.answer, message.authority) for rrset in section]


def test_positive_answer_counts_down_and_expires():
    cache = DnsCache(10)
    assert cache.put(KEY, _response(), now=1000.0) == 300
    assert _ttls(cache.get(KEY, 1000.0)) == [300]
    assert _ttls(cache.get(KEY, 1000.9)) == [300]
    assert _ttls(cache.get(KEY, 1042.5)) == [258]
    assert _ttls(cache.get(KEY, 1299.9)) == [1]
    assert cache.get(KEY, 1300.0) is None
    assert len(cache) == 0


def test_ttl_is_the_minimum_of_all_records_and_each_counts_down():
    wire = _response(
        answers=(
            ("www.example.", 600, "CNAME", "host.example."),
            ("host.example.", 60, "A", "192.0.2.1"),
        )
    )
    cache = DnsCache(10)
    assert cache.put(KEY, wire, 0.0) == 60
    assert _ttls(cache.get(KEY, 10.0)) == [590, 50]
    assert cache.get(KEY, 60.0) is None


def test_max_ttl_caps_the_cache_lifetime_not_the_record():
    cache = DnsCache(10, max_ttl=30)
    assert cache.put(KEY, _response(), 0.0) == 30
    assert _ttls(cache.get(KEY, 5.0)) == [295]
    assert cache.get(KEY, 30.0) is None


def test_negative_answers_use_soa_ttl_and_minimum_rfc2308_section5():
    cache = DnsCache(10, max_negative_ttl=3600)
    nxdomain = _response(answers=(), soa_ttl=7200, soa_minimum=900, rcode=dns.rcode.NXDOMAIN)
    assert cache.put(KEY, nxdomain, 0.0) == 900  # min(SOA TTL, MINIMUM)
    nodata = _response(answers=(), soa_ttl=120, soa_minimum=900)
    assert cache.put(("other", 0), nodata, 0.0) == 120
    assert _ttls(cache.get(("other", 0), 100.0)) == [20]


def test_negative_ttl_is_capped():
    cache = DnsCache(10, max_negative_ttl=60)
    wire = _response(answers=(), soa_ttl=7200, soa_minimum=7200, rcode=dns.rcode.NXDOMAIN)
    assert cache.put(KEY, wire, 0.0) == 60


def test_negative_answer_without_soa_is_not_cached():
    cache = DnsCache(10)
    assert cache.put(KEY, _response(answers=()), 0.0) == 0
    assert cache.get(KEY, 0.0) is None


def test_cname_to_nodata_is_negative():
    wire = _response(
        qtype="AAAA",
        answers=(("www.example.", 600, "CNAME", "host.example."),),
        soa_ttl=100,
        soa_minimum=50,
    )
    assert DnsCache(10).put(KEY, wire, 0.0) == 50


def test_errors_and_truncated_answers_are_not_cached():
    cache = DnsCache(10)
    for rcode in (dns.rcode.SERVFAIL, dns.rcode.REFUSED, dns.rcode.FORMERR, dns.rcode.NOTIMP):
        assert cache.put(KEY, _response(rcode=rcode), 0.0) == 0
    truncated = bytearray(_response())
    truncated[2] |= 0x02
    assert cache.put(KEY, bytes(truncated), 0.0) == 0
    assert cache.put(KEY, b"\x00garbage", 0.0) == 0
    assert len(cache) == 0


def test_zero_ttl_is_not_cached():
    wire = _response(answers=(("www.example.", 0, "A", "192.0.2.1"),))
    assert DnsCache(10).put(KEY, wire, 0.0) == 0


def test_size_bound_evicts_least_recently_used():
    cache = DnsCache(3)
    for i in range(3):
        cache.put(i, _response(), 0.0)
    assert cache.get(0, 1.0) is not None  # 0 is now the most recently used
    cache.put(3, _response(), 1.0)
    assert len(cache) == 3
    assert cache.get(1, 1.0) is None
    assert all(cache.get(k, 1.0) is not None for k in (0, 2, 3))


def test_memory_bound_evicts_least_recently_used_and_counts_exactly():
    big = _response(
        qtype="TXT",
        answers=tuple(("www.example.", 300, "TXT", '"' + "x" * 200 + '"') for _ in range(4)),
    )
    small = _response()
    # Room for two big answers, not three: large answers cannot fill the memory.
    cache = DnsCache(1000, max_bytes=2 * entry_cost(big) + entry_cost(small))
    cache.put("a", big, 0.0)
    cache.put("b", big, 0.0)
    cache.put("s", small, 0.0)
    assert cache.bytes == 2 * entry_cost(big) + entry_cost(small)
    assert cache.get("a", 0.5) is not None  # "b" is now the least recently used
    cache.put("c", big, 1.0)
    assert cache.get("b", 1.0) is None
    assert all(cache.get(k, 1.0) is not None for k in ("a", "c"))
    assert cache.bytes <= cache.max_bytes
    # Replacing an entry and expiring one keep the count exact.
    cache.put("a", small, 2.0)
    assert cache.bytes == 2 * entry_cost(small) + entry_cost(big)  # a (now small), s, c
    assert cache.get("a", 10_000.0) is None  # expired: removed on access
    cache.clear()
    assert cache.bytes == 0 and len(cache) == 0


def test_an_answer_larger_than_the_memory_bound_is_not_cached():
    big = _response(qtype="TXT", answers=(("www.example.", 300, "TXT", '"' + "x" * 200 + '"'),))
    cache = DnsCache(10, max_bytes=entry_cost(big) - 1)
    cache.put("a", big, 0.0)
    assert cache.get("a", 0.0) is None and cache.bytes == 0


def test_size_zero_disables_the_cache():
    cache = DnsCache(0)
    assert cache.put(KEY, _response(), 0.0) == 0
    assert cache.get(KEY, 0.0) is None


def test_opt_record_ttl_field_is_never_rewritten():
    query = dns.message.make_query("www.example.", "A", want_dnssec=True)
    response = dns.message.make_response(query)
    response.want_dnssec(True)
    response.answer.append(dns.rrset.from_text("www.example.", 300, "IN", "A", "192.0.2.1"))
    cache = DnsCache(10)
    cache.put(KEY, response.to_wire(), 0.0)
    hit = dns.message.from_wire(cache.get(KEY, 100.0))
    assert hit.answer[0].ttl == 200
    assert hit.ednsflags & dns.flags.DO  # the OPT "TTL" carries the DO bit
