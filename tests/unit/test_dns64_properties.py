"""Property tests for the DNS64 core: synthesis round-trips through RFC 6052 extraction,
and no query or upstream reply, however odd, makes resolve() raise."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.unit.dns64_support import LOCAL_CLIENT, dns64, host, query, run, upstream
from totd_faith.dns64 import Dns64
from totd_faith.dns64.synthesis import translatable
from totd_faith.prefix import ALLOWED_LENGTHS, Nat64Prefix
from totd_faith.special_purpose import is_global
from totd_faith.zones import unreachable_reason

ipv4s = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)


@st.composite
def prefixes(draw: st.DrawFn) -> Nat64Prefix:
    if draw(st.booleans()):
        return Nat64Prefix.parse("64:ff9b::/96")
    length = draw(st.sampled_from(ALLOWED_LENGTHS))
    # Inside 2001:db8::/32, host bits (and the u-octet of a /96) zero.
    bits = draw(st.integers(0, 2 ** (length - 32) - 1)) if length > 32 else 0
    base = (0x20010DB8 << 96) | (bits << (128 - length))
    if length == 96:
        base &= ~(0xFF << 56)
    return Nat64Prefix(ipaddress.IPv6Network((base, length)))


@settings(max_examples=200, deadline=None)
@given(
    addresses=st.lists(ipv4s, min_size=1, max_size=6, unique=True),
    chosen=st.lists(prefixes(), min_size=1, max_size=3, unique=True),
    mapped_len=st.integers(0, 8),
)
def test_every_synthesized_aaaa_extracts_to_a_mapped_a_address(
    addresses: list[ipaddress.IPv4Address], chosen: list[Nat64Prefix], mapped_len: int
) -> None:
    # Overlapping prefixes would make "which prefix holds this address" ambiguous.
    assume(not any(a.network.overlaps(b.network) for a in chosen for b in chosen if a is not b))
    mapped = ipaddress.IPv4Network((int(addresses[0]) & ~(2 ** (32 - mapped_len) - 1), mapped_len))
    resolver = dns64(tuple(str(p) for p in chosen), dns64={"mapped": [str(mapped)]})
    answer = "\n".join(f"v4.example. 300 IN A {a}" for a in addresses)
    r = run(
        resolver,
        query("v4.example."),
        {("v4.example.", "AAAA"): upstream(), ("v4.example.", "A"): upstream(answer=answer)},
    )
    synthesized = [ipaddress.IPv6Address(a) for a in r.addresses()]
    expected_count = sum(
        1
        for p in chosen
        for a in addresses
        if a in mapped and translatable(int(a)) and (not p.is_well_known or is_global(a))
    )
    assert len(synthesized) == expected_count
    for v6 in synthesized:
        owners = [p for p in chosen if v6 in p]
        assert owners, f"{v6} is in no configured prefix"
        v4 = owners[0].extract(v6)
        assert v4 in addresses and v4 in mapped
        if owners[0].is_well_known:
            assert is_global(v4)
    # Prefix order is preserved: addresses of the first prefix come first.
    order = [next(i for i, p in enumerate(chosen) if v6 in p) for v6 in synthesized]
    assert order == sorted(order)


# -- robustness ---------------------------------------------------------------------

NAMES = [
    "v4.example.",
    "www.example.",
    "ipv4only.arpa.",
    "x.ipv4only.arpa.",
    "cvsup.example.",
    "a.example.",
    "example.",
    ".",
    "b.a.0.0.0.0.0.c.0.0.0.0.0.0.0.0.0.0.0.0.0.4.6.0.8.b.d.0.1.0.0.2.ip6.arpa.",
    "170.0.0.192.in-addr.arpa.",
    "10.2.0.192.in-addr.arpa.",
]
TYPES = ["A", "AAAA", "PTR", "CNAME", "DNAME", "SOA", "MX", "TXT", "ANY", "RRSIG", "NS"]
RDATA = {
    "A": ["192.0.2.1", "10.0.0.1", "8.8.8.8", "192.0.0.170"],
    "AAAA": ["2001:db8::1", "::ffff:192.0.2.1", "64:ff9b::808:808"],
    "CNAME": NAMES,
    "DNAME": ["example.", "new.example."],
    "PTR": ["www.example."],
    "SOA": ["ns.example. a.example. 1 2 3 4 5", "a. b. 1 1 1 1 0"],
    "MX": ["10 mx.example."],
    "TXT": ['"hello"'],
    "NS": ["ns.example."],
    "RRSIG": [
        "A 8 2 300 20300101000000 20200101000000 1 example. AAAA",
        "AAAA 8 2 300 20300101000000 20200101000000 1 example. AAAA",
        "CNAME 8 2 300 20300101000000 20200101000000 1 example. AAAA",
    ],
}
RCODES = ["NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED", "NOTIMP", "FORMERR", "BADCOOKIE"]


@st.composite
def record_lines(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 5))):
        rtype = draw(st.sampled_from([t for t in TYPES if t != "ANY"]))
        owner = draw(st.sampled_from(NAMES))
        ttl = draw(st.sampled_from([0, 1, 300, 2**31 - 1]))
        lines.append(f"{owner} {ttl} IN {rtype} {draw(st.sampled_from(RDATA[rtype]))}")
    return "\n".join(lines)


@st.composite
def replies(draw: st.DrawFn) -> Callable[[dns.message.Message], dns.message.Message | None]:
    if draw(st.integers(0, 9)) == 0:
        return lambda sent: None
    return upstream(
        draw(st.sampled_from(RCODES)),
        answer=draw(record_lines()),
        authority=draw(record_lines()),
        additional=draw(record_lines()),
        flags=draw(st.sampled_from(["QR RD RA", "QR AA RD RA AD", "QR TC", "QR"])),
    )


@st.composite
def queries(draw: st.DrawFn) -> dns.message.Message:
    q = query(
        draw(st.sampled_from(NAMES)),
        draw(st.sampled_from(TYPES)),
        rdclass=draw(st.sampled_from(["IN", "IN", "CH", "ANY"])),
        do=draw(st.booleans()),
        cd=draw(st.booleans()),
        ad=draw(st.booleans()),
        edns=draw(st.booleans()),
        rd=draw(st.booleans()),
        qid=draw(st.integers(0, 65535)),
    )
    if draw(st.integers(0, 9)) == 0:
        q.set_opcode(
            draw(st.sampled_from([dns.opcode.IQUERY, dns.opcode.NOTIFY, dns.opcode.UPDATE]))
        )
    if draw(st.integers(0, 9)) == 0:
        q.question = q.question * draw(st.integers(0, 3))
    if draw(st.integers(0, 9)) == 0:
        q.flags |= dns.flags.QR
    return q


RESOLVERS = [
    dns64(),
    dns64(("64:ff9b::/96", "2001:db8:1::/48"), hosts=(host("192.0.2.10", "cvsup.example."),)),
    dns64(dns64={"always_synthesize": ["example"], "mapped": ["192.0.2.0/24"]}),
    dns64(dns64={"never_synthesize": ["www.example"], "exclude": []}),
]


def drive(resolver: Dns64, q: dns.message.Message, answers: list) -> dns.message.Message:  # type: ignore[type-arg]
    gen = resolver.resolve(q, LOCAL_CLIENT)
    try:
        sent = next(gen)
        for i in range(10):
            assert isinstance(sent, dns.message.QueryMessage)
            sent.to_wire()  # what the shell does with it
            sent = gen.send(answers[i % len(answers)](sent))
        raise AssertionError("too many upstream queries")
    except StopIteration as stop:
        response: dns.message.Message = stop.value
    return response


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(0, len(RESOLVERS) - 1),
    q=queries(),
    answers=st.lists(replies(), min_size=1, max_size=3),
)
def test_random_messages_never_crash_resolve(
    which: int, q: dns.message.Message, answers: list
) -> None:  # type: ignore[type-arg]
    response = drive(RESOLVERS[which], q, answers)
    assert isinstance(response, dns.message.Message)
    assert response.id == q.id and response.flags & dns.flags.QR
    assert list(response.question) == list(q.question)
    wire = response.to_wire(max_size=65535)
    if q.opcode() == dns.opcode.QUERY:
        assert dns.message.from_wire(wire).id == q.id


@settings(max_examples=500, deadline=None)
@given(data=st.binary(min_size=12, max_size=80))
def test_random_wire_queries_never_crash_resolve(data: bytes) -> None:
    try:
        q = dns.message.from_wire(data)
    except (dns.exception.DNSException, ValueError, UnicodeError):
        return  # the shell answers FORMERR or drops; not the core's business
    response = drive(RESOLVERS[1], q, [upstream(answer="v4.example. 300 IN A 192.0.2.1")])
    assert response.id == q.id
    response.to_wire(max_size=65535)


@settings(max_examples=200, deadline=None)
@given(
    a_ttl=st.integers(0, 2**31 - 1),
    soa=st.none() | st.tuples(st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1)),
)
def test_rfc6147_5_1_7_synthetic_ttl_rule(a_ttl: int, soa: tuple[int, int] | None) -> None:
    authority = "" if soa is None else f"example. {soa[0]} IN SOA a. b. 1 1 1 1 {soa[1]}"
    r = run(
        dns64(),
        query("t.example."),
        {
            ("t.example.", "AAAA"): upstream(authority=authority),
            ("t.example.", "A"): upstream(answer=f"t.example. {a_ttl} IN A 192.0.2.1"),
        },
    )
    cap = 600 if soa is None else min(soa)
    assert [rrset.ttl for rrset in r.response.answer] == [min(a_ttl, cap)]


@settings(max_examples=500, deadline=None)
@given(v4=ipv4s)
def test_translatable_matches_zone_export(v4: ipaddress.IPv4Address) -> None:
    # The DNS proxy and `zone export` read the same hosts files: same verdicts.
    assert translatable(int(v4)) == (unreachable_reason(v4) is None)
