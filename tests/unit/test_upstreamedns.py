"""The wire-level decisions of the EDNS fallback (RFC 6891 sections 6.2.2 and 7),
against dnspython."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
from hypothesis import given
from hypothesis import strategies as st

from tests.support.replies import formerr
from totd_faith.dnswire import render_query
from totd_faith.upstreamedns import bare_formerr, edns_unsupported, has_opt, without_opt

LABEL = st.binary(min_size=1, max_size=20).filter(lambda b: b"." not in b)


def _plain(wire: bytes) -> dns.message.Message:
    """``wire`` parsed, with the ID, flags and question it must keep."""
    return dns.message.from_wire(wire)


@given(
    labels=st.lists(LABEL, min_size=0, max_size=4),
    rdtype=st.sampled_from([1, 28, 12, 16, 65]),
    flags=st.sampled_from([0x0100, 0x0110, 0x0130, 0x0000]),
    payload=st.integers(512, 4096),
    ednsflags=st.sampled_from([0, 0x8000]),
)
def test_the_rendered_query_loses_exactly_its_opt(
    labels: list[bytes], rdtype: int, flags: int, payload: int, ednsflags: int
) -> None:
    name = dns.name.Name([*labels, b""])
    wire = render_query(0x1234, flags, name.labels, rdtype, 1, 0, payload, ednsflags)
    stripped = without_opt(wire)
    assert stripped is not None
    message = _plain(stripped)
    assert message.edns == -1 and not message.additional
    expected = dns.message.make_query(name, rdtype, use_edns=False)
    expected.id = 0x1234
    expected.flags = dns.flags.Flag(flags)
    assert stripped == expected.to_wire()
    assert has_opt(wire) and not has_opt(stripped)


def test_other_shapes_go_through_dnspython() -> None:
    # An OPT with an option (a client cookie) is not the rendered shape.
    query = dns.message.make_query(
        "www.example.",
        "AAAA",
        use_edns=0,
        options=[dns.edns.CookieOption(b"12345678", b"")],
    )
    query.id = 7
    stripped = without_opt(query.to_wire())
    assert stripped is not None
    message = _plain(stripped)
    assert message.edns == -1
    assert message.id == 7
    assert message.question == query.question
    # A query without OPT has nothing to remove; garbage cannot be read.
    assert without_opt(dns.message.make_query("a.example.", "A", use_edns=False).to_wire()) is None
    assert without_opt(b"\x00\x01\x00") is None
    assert without_opt(query.to_wire()[:-3]) is None


def test_formerr_without_opt_to_a_query_with_opt_is_an_upstream_without_edns() -> None:
    with_opt = dns.message.make_query("old.example.", "A", use_edns=0, payload=1232)
    no_opt = dns.message.make_query("old.example.", "A", use_edns=False)
    # RFC 6891 section 7: the sign is FORMERR and no OPT, in reply to OPT.
    assert edns_unsupported(with_opt.to_wire(), formerr(with_opt, opt=False))
    # An EDNS-aware responder puts OPT in its FORMERR: the question is the problem.
    assert not edns_unsupported(with_opt.to_wire(), formerr(with_opt, opt=True))
    # Without OPT in the query, FORMERR is about something else.
    assert not edns_unsupported(no_opt.to_wire(), formerr(no_opt, opt=False))
    # Other rcodes without OPT are not the sign.
    servfail = dns.message.make_response(with_opt)
    servfail.set_rcode(dns.rcode.SERVFAIL)
    servfail.use_edns(False)
    assert not edns_unsupported(with_opt.to_wire(), servfail.to_wire())
    # A FORMERR that cannot be walked is not taken as the sign either.
    assert not edns_unsupported(with_opt.to_wire(), formerr(with_opt, opt=False) + b"junk")


def test_opt_is_looked_for_in_the_additional_section_only() -> None:
    reply = dns.message.make_response(dns.message.make_query("a.example.", "A", use_edns=False))
    reply.additional.append(dns.rrset.from_text("ns.example.", 60, "IN", "A", "192.0.2.1"))
    assert not has_opt(reply.to_wire())
    reply.use_edns(0)
    assert has_opt(reply.to_wire())


def test_a_formerr_with_the_header_alone_is_recognised() -> None:
    query = dns.message.make_query("old.example.", "A", use_edns=0)
    query.id = 0x4242
    # What BIND sends for a query it cannot read: ID, QR, FORMERR, no sections.
    header = b"\x42\x42\x80\x01" + bytes(8)
    assert bare_formerr(header)
    assert not has_opt(header)
    assert edns_unsupported(query.to_wire(), header)
    # With an OPT but no question: an EDNS-aware responder.
    with_opt = dns.message.Message(id=0x4242)
    with_opt.flags = dns.flags.QR
    with_opt.set_rcode(dns.rcode.FORMERR)
    with_opt.use_edns(0)
    assert bare_formerr(with_opt.to_wire())
    assert has_opt(with_opt.to_wire())
    assert not edns_unsupported(query.to_wire(), with_opt.to_wire())
    # Only FORMERR responses to a query (opcode QUERY) without a question.
    assert not bare_formerr(b"\x42\x42\x80\x02" + bytes(8))  # SERVFAIL
    assert not bare_formerr(b"\x42\x42\x00\x01" + bytes(8))  # not a response
    assert not bare_formerr(b"\x42\x42\xa8\x01" + bytes(8))  # opcode UPDATE
    assert not bare_formerr(formerr(query, opt=False))  # has its question
    assert not bare_formerr(header[:11])
