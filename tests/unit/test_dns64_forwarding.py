"""Plain forwarding, access control and the message contract of Dns64.resolve."""

from __future__ import annotations

import ipaddress

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import pytest

from tests.unit.dns64_support import dns64, no_reply, query, run, upstream
from totd_faith.dns64 import Dns64, IPAddress


def first_yield_or_response(
    resolver: Dns64, q: dns.message.Message, client: IPAddress
) -> dns.message.Message:
    """The response when resolve() answers without asking upstream (else the query)."""
    gen = resolver.resolve(q, client)
    try:
        return next(gen)
    except StopIteration as stop:
        response: dns.message.Message = stop.value
        return response


def test_clients_outside_allow_are_refused_without_upstream_query() -> None:
    resolver = dns64()
    q = query("www.example.", "A")
    out = first_yield_or_response(resolver, q, ipaddress.ip_address("2001:db8::99"))
    assert out.rcode() == dns.rcode.REFUSED  # returned at once: nothing was yielded
    assert out.id == q.id and out.flags & dns.flags.QR


def test_allow_unmaps_v4_mapped_clients() -> None:
    resolver = dns64()
    assert resolver.allowed(ipaddress.ip_address("::ffff:192.168.1.5"))
    assert not resolver.allowed(ipaddress.ip_address("::ffff:8.8.8.8"))
    wide = dns64(dns={"allow": ["0.0.0.0/0"]})
    assert wide.allowed(ipaddress.ip_address("::ffff:8.8.8.8"))
    assert not wide.allowed(ipaddress.ip_address("2001:db8::1"))


def test_opcode_other_than_query_is_notimp() -> None:
    q = query("www.example.", "A")
    q.set_opcode(dns.opcode.STATUS)
    out = first_yield_or_response(dns64(), q, ipaddress.ip_address("::1"))
    assert out.rcode() == dns.rcode.NOTIMP
    assert out.opcode() == dns.opcode.STATUS


@pytest.mark.parametrize("count", [0, 2])
def test_qdcount_other_than_one_is_formerr(count: int) -> None:
    q = query("www.example.", "A")
    q.question = q.question * count
    out = first_yield_or_response(dns64(), q, ipaddress.ip_address("::1"))
    assert isinstance(out, dns.message.Message)
    assert out.rcode() == dns.rcode.FORMERR


def test_unknown_edns_version_is_badvers() -> None:
    q = query("www.example.", "A")
    q.use_edns(1, 0, 1232)
    out = first_yield_or_response(dns64(), q, ipaddress.ip_address("::1"))
    assert out.rcode() == dns.rcode.BADVERS
    assert out.edns == 0


def test_a_query_forwarded_unchanged() -> None:
    r = run(
        dns64(),
        query("www.example.", "A"),
        {
            ("www.example.", "A"): upstream(
                answer="www.example. 300 IN A 192.0.2.1",
                authority="example. 300 IN NS ns.example.",
                additional="ns.example. 300 IN A 192.0.2.53",
            )
        },
    )
    assert r.questions == [("www.example.", "A")]
    assert r.rrsets() == ["www.example. 300 A 192.0.2.1"]
    assert r.rrsets("authority") == ["example. 300 NS ns.example."]
    assert r.rrsets("additional") == ["ns.example. 300 A 192.0.2.53"]


@pytest.mark.parametrize("rdtype", ["MX", "TXT", "SRV", "NS", "ANY", "TYPE65534"])
def test_other_types_forwarded_with_rcode(rdtype: str) -> None:
    r = run(
        dns64(),
        query("www.example.", rdtype),
        {("www.example.", rdtype): upstream("NXDOMAIN")},
    )
    assert r.questions == [("www.example.", rdtype)]
    assert r.rcode == dns.rcode.NXDOMAIN


def test_rfc6147_5_1_class_other_than_in_is_never_synthesized() -> None:
    r = run(
        dns64(),
        query("version.bind.", "AAAA", rdclass="CH"),
        {("version.bind.", "AAAA"): upstream()},
    )
    assert len(r.asked) == 1 and r.asked[0].question[0].rdclass == dns.rdataclass.CH
    assert r.rrsets() == []


def test_upstream_failure_is_servfail() -> None:
    r = run(dns64(), query("www.example.", "MX"), {("www.example.", "MX"): no_reply()})
    assert r.rcode == dns.rcode.SERVFAIL


def test_upstream_query_carries_edns_do_cd_and_recursion() -> None:
    r = run(
        dns64(),
        query("www.example.", "A", do=True, cd=True, rd=False),
        {("www.example.", "A"): upstream()},
    )
    sent = r.asked[0]
    assert sent.flags & dns.flags.RD  # we always need recursion from upstream
    assert sent.flags & dns.flags.CD
    assert sent.edns == 0 and sent.ednsflags & dns.flags.DO
    assert sent.payload == 1232
    assert not r.response.flags & dns.flags.RD  # the client's RD is echoed
    assert r.response.flags & dns.flags.CD  # RFC 4035 section 3.2.2


def test_upstream_query_has_no_do_when_client_has_none() -> None:
    r = run(dns64(), query("www.example.", "A", edns=False), {("www.example.", "A"): upstream()})
    assert not r.asked[0].ednsflags & dns.flags.DO
    assert r.response.edns < 0  # no OPT to a client that sent none


def test_ad_relayed_only_when_client_asked() -> None:
    reply = upstream(answer="www.example. 300 IN A 192.0.2.1", flags="QR RD RA AD")
    asked = run(dns64(), query("www.example.", "A", do=True), {("www.example.", "A"): reply})
    assert asked.response.flags & dns.flags.AD
    asked = run(dns64(), query("www.example.", "A", ad=True), {("www.example.", "A"): reply})
    assert asked.response.flags & dns.flags.AD
    # RFC 6840 section 5.7: no DO and no AD in the query, no AD in the response.
    plain = run(dns64(), query("www.example.", "A"), {("www.example.", "A"): reply})
    assert not plain.response.flags & dns.flags.AD


def test_upstream_aa_flag_not_relayed() -> None:
    r = run(
        dns64(),
        query("www.example.", "A"),
        {("www.example.", "A"): upstream(flags="QR AA RD RA")},
    )
    assert not r.response.flags & dns.flags.AA
    assert r.response.flags & dns.flags.RA


def test_extended_rcode_needs_edns() -> None:
    reply = upstream("BADCOOKIE")
    r = run(dns64(), query("www.example.", "A"), {("www.example.", "A"): reply})
    assert r.rcode == dns.rcode.BADCOOKIE
    r = run(dns64(), query("www.example.", "A", edns=False), {("www.example.", "A"): reply})
    assert r.rcode == dns.rcode.SERVFAIL


def test_response_to_message_with_qr_set_does_not_raise() -> None:
    q = query("www.example.", "A")
    q.flags |= dns.flags.QR
    r = run(dns64(), q, {("www.example.", "A"): upstream()})
    assert r.rcode == dns.rcode.NOERROR


def test_pipeline_of_many_queries_reuses_one_resolver() -> None:
    resolver = dns64()
    for i in range(50):
        name = f"h{i}.example."
        r = run(
            resolver,
            query(name),
            {
                (name, "AAAA"): upstream(),
                (name, "A"): upstream(answer=f"{name} 60 IN A 192.0.2.{i}"),
            },
        )
        assert r.addresses() == [str(ipaddress.IPv6Address(f"2001:db8:64::192.0.2.{i}"))]


def test_truncated_upstream_reply_stays_truncated() -> None:
    r = run(
        dns64(),
        query("big.example.", "TXT"),
        {("big.example.", "TXT"): upstream(flags="QR RD RA TC")},
    )
    assert r.response.flags & dns.flags.TC
    r = run(dns64(), query("small.example.", "TXT"), {("small.example.", "TXT"): upstream()})
    assert not r.response.flags & dns.flags.TC


def ede_codes(message: dns.message.Message) -> list[int]:
    return [int(o.code) for o in message.options if isinstance(o, dns.edns.EDEOption)]


def test_rfc8914_extended_errors() -> None:
    refused = first_yield_or_response(
        dns64(), query("www.example.", "A"), ipaddress.ip_address("2001:db8::99")
    )
    assert ede_codes(refused) == [18]  # Prohibited
    r = run(dns64(), query("www.example.", "A"), {("www.example.", "A"): no_reply()})
    assert ede_codes(r.response) == [22]  # No Reachable Authority
    r = run(dns64(), query("www.example.", "A", edns=False), {("www.example.", "A"): no_reply()})
    assert r.response.edns < 0  # nothing to carry an EDE in


def test_rfc8914_upstream_extended_errors_relayed() -> None:
    def bogus(sent: dns.message.Message) -> dns.message.Message:
        reply = upstream("SERVFAIL")(sent)
        assert reply is not None
        reply.use_edns(
            0,
            0,
            1232,
            options=[
                dns.edns.EDEOption(dns.edns.EDECode.DNSSEC_BOGUS),
                dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"12345678"),
            ],
        )
        return reply

    r = run(dns64(), query("bad.example.", "A", do=True), {("bad.example.", "A"): bogus})
    assert r.rcode == dns.rcode.SERVFAIL
    assert ede_codes(r.response) == [6]  # DNSSEC Bogus passed on
    assert all(o.otype == dns.edns.OptionType.EDE for o in r.response.options)  # no cookie
    assert r.response.ednsflags & dns.flags.DO
