"""MessageReader gives the same messages as dns.message.from_wire (property tests)."""

from __future__ import annotations

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from totd_faith.dnsreply import MessageReader

labels = st.sampled_from(["www", "Mail", "a", "ns", "c1", "x-y", "bench", "EXAMPLE", "org"])
names = st.lists(labels, min_size=0, max_size=4).map(lambda ls: ".".join([*ls, "example."]))
RDATA = {
    "A": st.sampled_from(["192.0.2.1", "198.51.100.7", "203.0.113.255"]),
    "AAAA": st.sampled_from(["2001:db8::1", "::ffff:192.0.2.1", "2001:db8:64::c000:201"]),
    "CNAME": names,
    "NS": names,
    "PTR": names,
    "DNAME": names,
    "MX": names.map(lambda n: f"10 {n}"),
    "TXT": st.sampled_from(['"hello"', '"a" "b"']),
    "SOA": st.tuples(names, names, st.integers(0, 2**32 - 1)).map(
        lambda t: f"{t[0]} {t[1]} {t[2]} 3600 600 86400 300"
    ),
}
records = st.tuples(
    st.sampled_from([0, 1, 2]),
    names,
    st.sampled_from(sorted(RDATA)),
    st.integers(0, 2**32 - 1),
).flatmap(lambda r: RDATA[r[2]].map(lambda rd: (*r, rd)))


def _message(qname, qtype, rcode, flags, edns, do, payload, recs) -> dns.message.Message:
    query = dns.message.make_query(qname, qtype, use_edns=0 if edns else None, payload=payload)
    response = dns.message.make_response(query)
    response.flags |= flags
    response.set_rcode(rcode)
    if edns and do:
        response.want_dnssec(True)
    sections = [response.answer, response.authority, response.additional]
    for section, name, rdtype, ttl, rdata in recs:
        rrset = dns.rrset.from_text(name, min(ttl, 2**31 - 1), "IN", rdtype, rdata)
        rrset.ttl = ttl  # TTLs above 2**31-1 must read back as 0 (RFC 2181 section 8)
        sections[section].append(rrset)
    return response


def _same(a: dns.message.Message, b: dns.message.Message) -> None:
    assert a == b
    assert a.flags == b.flags and a.rcode() == b.rcode()
    assert (a.edns, a.payload, a.ednsflags, a.options) == (
        b.edns,
        b.payload,
        b.ednsflags,
        b.options,
    )
    for mine, theirs in zip(a.sections, b.sections, strict=True):
        assert [(r.name, r.rdtype, r.ttl, sorted(r)) for r in mine] == [
            (r.name, r.rdtype, r.ttl, sorted(r)) for r in theirs
        ]


@settings(max_examples=400, deadline=None)
@given(
    names,
    st.sampled_from(["A", "AAAA", "PTR", "TXT", "ANY"]),
    st.sampled_from([dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.SERVFAIL]),
    st.sampled_from([0, dns.flags.AA, dns.flags.TC, dns.flags.AD | dns.flags.RA]),
    st.booleans(),
    st.booleans(),
    st.integers(512, 4096),
    st.lists(records, max_size=8),
)
def test_reads_like_from_wire(qname, qtype, rcode, flags, edns, do, payload, recs):
    try:
        wire = _message(qname, qtype, rcode, flags, edns, do, payload, recs).to_wire()
    except dns.exception.DNSException:
        return  # e.g. a name that grew too long
    reader = MessageReader()
    _same(reader.read(wire), dns.message.from_wire(wire))
    _same(reader.read(wire), dns.message.from_wire(wire))  # again, from the interned objects


@settings(max_examples=600, deadline=None)
@given(
    st.lists(records, min_size=1, max_size=5),
    st.lists(st.tuples(st.integers(0, 500), st.integers(0, 255)), min_size=1, max_size=3),
)
def test_mutated_replies_read_or_fail_like_from_wire(recs, mutations):
    try:
        wire = bytearray(_message("q.example.", "A", 0, 0, True, False, 1232, recs).to_wire())
    except dns.exception.DNSException:
        return
    for position, value in mutations:
        wire[position % len(wire)] = value
    data = bytes(wire)
    try:
        expected = dns.message.from_wire(data)
    except Exception as exc:
        try:
            MessageReader().read(data)
        except Exception as mine:
            assert type(mine) is type(exc)
        else:
            raise AssertionError(f"from_wire raised {exc!r} but MessageReader did not") from None
        return
    _same(MessageReader().read(data), expected)


def test_names_and_rdatas_are_interned_across_replies():
    reader = MessageReader()
    soa = "ns.example. hostmaster.example. 1 3600 600 86400 300"
    one = _message(
        "a.example.", "AAAA", 0, 0, True, False, 1232, [(1, "example.", "SOA", 300, soa)]
    )
    two = _message(
        "b.example.", "AAAA", 0, 0, True, False, 1232, [(1, "example.", "SOA", 300, soa)]
    )
    first = reader.read(one.to_wire())
    second = reader.read(two.to_wire())
    assert first.authority[0].name is second.authority[0].name
    assert first.authority[0][0] is second.authority[0][0]


def test_unusual_messages_go_to_dnspython():
    query = dns.message.make_query("example.", "A")
    two_questions = bytearray(dns.message.make_response(query).to_wire())
    two_questions[5] = 2
    reader = MessageReader()
    try:
        reader.read(bytes(two_questions))
    except dns.exception.DNSException as exc:
        mine = type(exc)
    try:
        dns.message.from_wire(bytes(two_questions))
    except dns.exception.DNSException as exc:
        assert mine is type(exc)
    notify = dns.message.make_query("example.", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    response = dns.message.make_response(notify)
    assert reader.read(response.to_wire()) == dns.message.from_wire(response.to_wire())


@settings(max_examples=300, deadline=None)
@given(
    names,
    st.sampled_from(["A", "AAAA", "PTR", "TXT", "ANY", "TYPE65280"]),
    st.sampled_from(["IN", "CH"]),
    st.booleans(),
    st.booleans(),
    st.integers(0, 65535),
    st.sampled_from([0, dns.flags.RD, dns.flags.RD | dns.flags.CD, dns.flags.AD]),
)
def test_reads_queries_like_from_wire(qname, qtype, qclass, edns, do, payload, flags):
    query = dns.message.make_query(
        qname, qtype, qclass, use_edns=0 if edns else None, payload=payload, want_dnssec=do
    )
    query.flags = flags
    wire = query.to_wire()
    _same(MessageReader().read(wire), dns.message.from_wire(wire))


def test_pointer_into_the_name_that_points_is_refused_like_from_wire():
    # The additional record's owner is a pointer (at offset 27) to offset 1, whose
    # 51-byte "label" runs past 27 into the pointer itself. dnspython refuses it
    # (the target must lie wholly before the pointing part, dns.name.from_wire_parser);
    # so must the reader, instead of reading a name out of the header.
    data = bytes.fromhex(
        "f833810000010000000000020171076578616d706c650000010001c001000100019e00012c0004"
        "c00002df0000292000000000000000"
    )
    with pytest.raises(dns.exception.FormError):
        dns.message.from_wire(data)
    with pytest.raises(dns.exception.FormError):
        MessageReader().read(data)
