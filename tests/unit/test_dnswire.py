"""The header/question fast path agrees with dnspython (property tests)."""

from __future__ import annotations

import struct
from typing import NamedTuple

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from totd_faith.dnswire import (
    KEY_AD,
    KEY_CD,
    KEY_DO,
    KEY_EDNS,
    SECTION_ADDITIONAL,
    SECTION_ANSWER,
    SECTION_AUTHORITY,
    formerr_for,
    render_query,
    scan_query,
    skip_name,
    truncate,
    walk_response,
)
from totd_faith.errors import WireError

names = st.lists(
    st.text(alphabet="abcdefghijKLMNOPQRSTUVwxyz0123456789-_", min_size=1, max_size=20),
    min_size=0,
    max_size=5,
).map(lambda labels: dns.name.from_text(".".join(labels) + "." if labels else "."))
rdtypes = st.sampled_from([1, 2, 5, 6, 12, 15, 16, 28, 33, 43, 46, 48, 65, 90, 255, 65280])
rdclasses = st.sampled_from([1, 3, 254, 255])


class Head(NamedTuple):
    question_key: bytes
    question_end: int
    flags: int
    payload_size: int
    qtype: int


def _query(
    name: dns.name.Name, rdtype: int, rdclass: int, edns: bool, do: bool, cd: bool, payload: int
) -> dns.message.QueryMessage:
    query = dns.message.make_query(
        name, rdtype, rdclass, use_edns=0 if edns else None, payload=payload, want_dnssec=do
    )
    if cd:
        query.flags |= dns.flags.CD
    if do != cd:  # AD in every combination with DO and CD (RFC 6840 section 5.7)
        query.flags |= dns.flags.AD
    return query


@settings(max_examples=400)
@given(
    names,
    rdtypes,
    rdclasses,
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.integers(0, 65535),
)
def test_scan_query_matches_dnspython(name, rdtype, rdclass, edns, do, cd, payload):
    query = _query(name, rdtype, rdclass, edns, do and edns, cd, payload)
    wire = query.to_wire()
    scanned = scan_query(wire)
    assert scanned is not None
    head = Head(*scanned)
    parsed = dns.message.from_wire(wire)
    question = parsed.question[0]
    end = 12 + len(question.name.to_wire()) + 4
    assert head.question_end == end
    assert head.qtype == question.rdtype
    # The key is the lowercased name in wire form plus type and class.
    assert head.question_key == (
        question.name.to_wire().lower() + struct.pack("!HH", rdtype, rdclass)
    )
    assert bool(head.flags & KEY_EDNS) == (parsed.edns >= 0)
    assert bool(head.flags & KEY_DO) == bool(parsed.ednsflags & dns.flags.DO)
    assert bool(head.flags & KEY_CD) == bool(parsed.flags & dns.flags.CD)
    assert bool(head.flags & KEY_AD) == bool(parsed.flags & dns.flags.AD)
    expected_payload = max(parsed.payload, 512) if parsed.edns >= 0 else 512
    assert head.payload_size == expected_payload


@given(names, names, rdtypes)
def test_names_differing_only_in_case_share_a_key(name, _other, rdtype):
    upper = dns.name.from_text(name.to_text().upper())
    a = scan_query(_query(name, rdtype, 1, False, False, False, 0).to_wire())
    b = scan_query(_query(upper, rdtype, 1, False, False, False, 0).to_wire())
    assert a is not None and b is not None
    assert a[0] == b[0]


def test_qtype_bytes_are_not_lowercased():
    # qtype 0x0041 (HTTPS) must not collide with 0x0061 after lowercasing.
    a = scan_query(_query(dns.name.from_text("x."), 65, 1, False, False, False, 0).to_wire())
    b = scan_query(_query(dns.name.from_text("x."), 97, 1, False, False, False, 0).to_wire())
    assert a is not None and b is not None and a[0] != b[0]


@settings(max_examples=1000)
@given(st.binary(max_size=300))
def test_scan_query_random_bytes_never_raise_and_agree(data):
    scanned = scan_query(data)
    if scanned is not None:
        head = Head(*scanned)
        # Whatever the fast path accepts, dnspython parses to the same question.
        parsed = dns.message.from_wire(data)
        assert len(parsed.question) == 1
        assert parsed.question[0].rdtype == head.qtype
        assert not parsed.flags & dns.flags.QR


@settings(max_examples=1000)
@given(
    names,
    rdtypes,
    st.booleans(),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_scan_query_on_mutated_queries_agrees_with_dnspython(name, rdtype, edns, mutations):
    wire = bytearray(_query(name, rdtype, 1, edns, False, False, 1232).to_wire())
    for position, value in mutations:
        wire[position % len(wire)] = value
    data = bytes(wire)
    scanned = scan_query(data)
    if scanned is None:
        return
    head = Head(*scanned)
    parsed = dns.message.from_wire(data)
    assert parsed.question[0].rdtype == head.qtype
    assert parsed.question[0].name.to_wire().lower() == head.question_key[:-4]
    assert bool(head.flags & KEY_EDNS) == (parsed.edns >= 0)


@settings(max_examples=500)
@given(
    names,
    rdtypes,
    rdclasses,
    st.integers(0, 65535),
    st.sampled_from([0, 0x0100, 0x0110, 0x0130, 0x0020]),
    st.booleans(),
    st.booleans(),
    st.integers(512, 65535),
)
def test_render_query_matches_dnspython(name, rdtype, rdclass, qid, flags, edns, do, payload):
    message = dns.message.QueryMessage(id=qid)
    message.flags = flags
    message.question = [dns.rrset.RRset(name, rdclass, rdtype)]
    if edns:
        message.use_edns(0, dns.flags.DO if do else 0, payload)
    expected = message.to_wire()
    got = render_query(
        qid,
        int(message.flags),
        name.labels,
        rdtype,
        rdclass,
        message.edns,
        message.payload,
        int(message.ednsflags),
    )
    assert got == expected


def test_scan_query_rejects_what_is_not_plain():
    base = dns.message.make_query("example.com.", "A").to_wire()
    assert scan_query(base) is not None
    assert scan_query(base[:11]) is None
    response = bytearray(base)
    response[2] |= 0x80
    assert scan_query(bytes(response)) is None  # QR=1
    notify = bytearray(base)
    notify[2] |= 4 << 3
    assert scan_query(bytes(notify)) is None  # opcode NOTIFY
    assert scan_query(base + b"\x00") is None  # trailing junk
    two = bytearray(base)
    two[5] = 2
    assert scan_query(bytes(two)) is None  # two questions
    badvers = dns.message.make_query("example.com.", "A", use_edns=1).to_wire()
    assert scan_query(badvers) is None  # EDNS version 1 needs BADVERS


@pytest.mark.parametrize("edns", [False, True])
def test_scan_query_rejects_every_truncation(edns):
    # scan_query relies on IndexError for reads past the end: every cut is None.
    wire = _query(dns.name.from_text("www.example.com."), 28, 1, edns, False, False, 1232)
    data = wire.to_wire()
    assert scan_query(data) is not None
    for size in range(len(data)):
        assert scan_query(data[:size]) is None, size


def _response() -> dns.message.Message:
    query = dns.message.make_query("www.Example.com.", "AAAA", use_edns=0)
    response = dns.message.make_response(query)
    response.answer.append(
        dns.rrset.from_text("www.example.com.", 300, "IN", "CNAME", "host.example.com.")
    )
    response.answer.append(
        dns.rrset.from_text("host.example.com.", 120, "IN", "AAAA", "2001:db8::1")
    )
    response.authority.append(
        dns.rrset.from_text("example.com.", 3600, "IN", "NS", "ns.example.com.")
    )
    response.additional.append(dns.rrset.from_text("ns.example.com.", 60, "IN", "A", "192.0.2.1"))
    return response


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from([1, 2, 3]), st.integers(0, 2**31 - 1)), max_size=6))
def test_walk_response_finds_every_ttl(records):
    query = dns.message.make_query("a.example.", "A", use_edns=0)
    response = dns.message.make_response(query)
    sections = {1: response.answer, 2: response.authority, 3: response.additional}
    for i, (section, ttl) in enumerate(records):
        sections[section].append(
            dns.rrset.from_text(f"n{i}.example.", ttl, "IN", "A", f"192.0.2.{i + 1}")
        )
    wire = response.to_wire()
    layout = walk_response(wire)
    found = [(r.section, r.ttl) for r in layout.records if r.rtype != 41]
    assert sorted(found) == sorted(records)
    for record in layout.records:
        assert struct.unpack_from("!I", wire, record.ttl_offset)[0] == record.ttl


def test_walk_response_sections_and_types():
    wire = _response().to_wire()
    layout = walk_response(wire)
    assert layout.qtype == 28
    assert [(r.section, r.rtype, r.ttl) for r in layout.records] == [
        (SECTION_ANSWER, 5, 300),
        (SECTION_ANSWER, 28, 120),
        (SECTION_AUTHORITY, 2, 3600),
        (SECTION_ADDITIONAL, 1, 60),
        (SECTION_ADDITIONAL, 41, 0),
    ]


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_walk_response_raises_only_wire_error(data):
    try:
        walk_response(data)
    except WireError:
        pass


def test_skip_name_pointer_and_overrun():
    assert skip_name(b"\x03abc\x00", 0) == 5
    assert skip_name(b"\x03abc\xc0\x0c", 0) == 6
    with pytest.raises(WireError):
        skip_name(b"\x05ab", 0)


def test_formerr_echoes_id_opcode_and_rd():
    query = dns.message.make_query("example.com.", "A")
    query.id = 0xBEEF
    formerr = formerr_for(query.to_wire()[:14])
    assert formerr is not None
    parsed = dns.message.from_wire(formerr)
    assert parsed.id == 0xBEEF
    assert parsed.rcode() == dns.rcode.FORMERR
    assert parsed.flags & dns.flags.QR and parsed.flags & dns.flags.RD
    assert formerr_for(b"\x00" * 11) is None
    assert formerr_for(dns.message.make_response(query).to_wire()) is None


# -- truncate: RFC 2181 section 9, RFC 6891 section 7 ----------------------------------------

_owners = st.sampled_from(["big.example.", "BIG.example.", "other.example.", "example.", "x.y.z."])


@st.composite
def _rrsets(draw: st.DrawFn) -> dns.rrset.RRset:
    owner = draw(_owners)
    kind = draw(st.sampled_from(["A", "AAAA", "TXT", "NS"]))
    count = draw(st.integers(1, 30))
    if kind == "A":
        texts = [f"192.0.2.{i}" for i in range(1, count + 1)]
    elif kind == "AAAA":
        texts = [f"2001:db8::{i:x}" for i in range(1, count + 1)]
    elif kind == "TXT":
        size = draw(st.integers(0, 200))
        texts = [f'"{i}{"t" * size}"' for i in range(count)]
    else:
        texts = [f"ns{i}.{owner}" for i in range(count)]
    return dns.rrset.from_text(owner, 300, "IN", kind, *texts)


@settings(max_examples=300)
@given(
    st.lists(_rrsets(), max_size=3),
    st.lists(_rrsets(), max_size=2),
    st.lists(_rrsets(), max_size=3),
    st.sampled_from([None, 512, 1232, 4096]),
    st.integers(0, 4000),
)
def test_truncate_writes_what_dnspython_writes(answer, authority, additional, edns, limit):
    """Byte for byte dnspython's ``to_wire(max_size, prefer_truncation=True)``:
    whole RRsets in order, TC when answer or authority lost some, OPT kept."""
    query = dns.message.make_query(
        "big.example.", "AAAA", use_edns=edns is not None, payload=edns or 512
    )
    response = dns.message.make_response(query)
    for section, rrsets in (
        (response.answer, answer),
        (response.authority, authority),
        (response.additional, additional),
    ):
        for rrset in rrsets:
            found = next((r for r in section if r.match(rrset.name, 1, rrset.rdtype, 0)), None)
            if found is None:
                section.append(rrset)
            else:  # dnspython would merge them: so does the reference message
                found.union_update(rrset)
    wire = response.to_wire(max_size=65535, want_shuffle=False)
    limit = max(limit, 512)
    expected = response.to_wire(max_size=limit, prefer_truncation=True, want_shuffle=False)
    got = truncate(wire, limit)
    assert got == expected
    assert len(got) <= limit or len(got) == len(wire) <= limit


def test_truncate_keeps_a_message_that_fits_and_sets_tc_only_for_required_data():
    query = dns.message.make_query("big.example.", "AAAA", use_edns=0, payload=1232)
    response = dns.message.make_response(query)
    response.answer.append(
        dns.rrset.from_text(
            "big.example.", 300, "IN", "AAAA", *[f"2001:db8::{i}" for i in range(9)]
        )
    )
    response.additional.append(
        dns.rrset.from_text("x.example.", 300, "IN", "TXT", '"' + "t" * 250 + '"')
    )
    wire = response.to_wire(max_size=65535, want_shuffle=False)
    assert truncate(wire, len(wire)) is wire
    # Only the additional TXT is lost: no TC (RFC 2181 section 9), OPT still there.
    cut = dns.message.from_wire(truncate(wire, len(wire) - 1))
    assert not cut.flags & dns.flags.TC
    assert len(cut.answer[0]) == 9 and not cut.additional and cut.edns == 0
    # Not even the answer fits: TC, the question and OPT only.
    cut = dns.message.from_wire(truncate(wire, 100))
    assert cut.flags & dns.flags.TC
    assert not cut.answer and cut.question == response.question and cut.payload == response.payload


@settings(max_examples=1000)
@given(st.binary(max_size=300), st.integers(0, 300))
def test_truncate_of_random_bytes_raises_only_wire_error(data, limit):
    try:
        out = truncate(data, limit)
    except WireError:
        return
    if len(data) <= limit:
        assert out is data
    else:  # a prefix of the message, maybe with its OPT moved up: never longer
        assert out[:2] == data[:2] and len(out) <= len(data)
