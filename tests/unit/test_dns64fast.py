"""The wire-level DNS64 fast path (totd_faith.dns64fast) against the core it mirrors.

Differential: for generated client queries and upstream AAAA/A replies, whenever
the fast path answers, its answer must equal (parsed by dnspython) what the
DNS64 core's generator returns for the same query and replies; whenever the
fast path says the query is eligible, the core must ask upstream exactly the
AAAA query the fast path sends (so eligibility matches the core's decisions
about local names and lists).
"""

from __future__ import annotations

import io
import ipaddress
import struct
from collections import Counter
from collections.abc import Callable
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from totd_faith.config import Config, from_table
from totd_faith.dns64 import Dns64
from totd_faith.dns64fast import FALLBACK, NEED_A, FastAnswer, FastDns64, Reply
from totd_faith.dnscache import DnsCache
from totd_faith.dnswire import scan_query
from totd_faith.errors import WireError
from totd_faith.hosts import HostEntry
from totd_faith.upstream import query_wire

CLIENT = ipaddress.ip_address("::1")

CONFIGS: list[dict[str, Any]] = [
    {"prefixes": ["2001:db8:64::/96"]},
    {"prefixes": ["64:ff9b::/96"]},
    {"prefixes": ["2001:db8:64::/96", "64:ff9b::/96"]},
    {
        "prefixes": ["2001:db8:4000::/40"],
        "dns64": {
            "mapped": ["192.0.2.0/24", "203.0.113.0/24"],
            "exclude": ["::ffff:0:0/96", "2001:db8:bad::/48"],
            "never_synthesize": ["never.example"],
            "always_synthesize": ["always.example"],
        },
    },
]
HOSTS = (
    HostEntry(ipaddress.IPv4Address("192.0.2.77"), dns.name.from_text("static.example."), "h", 1),
)
_built: dict[int, tuple[Config, Dns64, CheckedFast]] = {}


class CheckedFast(FastDns64):
    """The fast path, with every synthesized answer built every way that applies:
    a plain A reply's answer (Reply.plain_a) must be byte for byte the splice's,
    and the splice must give what the writer gives.  ``last`` says which way
    the last synthesized answer was built ("plain", "spliced" or "written")."""

    last = ""

    def _plain_answer(self, data: bytes, head: Any, a: Any, v6: Any, ttl: int) -> Any:
        plain = super()._plain_answer(data, head, a, v6, ttl)
        if plain is None:
            return None
        a.walk()
        basis = [r for r in a.records if r[0] == 1]
        assert [r[2] for r in basis] == [1] * len(basis)  # only A records, at the name
        spliced = FastDns64._spliced(self, data, head, a, basis, v6, ttl)
        if spliced is not None:
            assert plain.wire == spliced.wire
            assert sorted(zip(plain.ttl_offsets, plain.ttls, strict=True)) == sorted(
                zip(spliced.ttl_offsets, spliced.ttls, strict=True)
            )
        written = FastDns64._written(self, data, head, a, basis, v6, ttl)
        assert normal(dns.message.from_wire(plain.wire)) == normal(
            dns.message.from_wire(written.wire)
        )
        assert_cached_alike(plain)
        self.last = "plain"
        return plain

    def _spliced(self, data: bytes, head: Any, a: Any, basis: Any, v6: Any, ttl: int) -> Any:
        spliced = super()._spliced(data, head, a, basis, v6, ttl)
        try:
            written: FastAnswer | None = self._written(data, head, a, basis, v6, ttl)
        except Exception:
            written = None  # too big for the writer: the core answers
        if spliced is None:
            self.last = "written"
            return None
        self.last = "spliced"
        assert written is not None
        assert normal(dns.message.from_wire(spliced.wire)) == normal(
            dns.message.from_wire(written.wire)
        )
        assert_cached_alike(spliced)
        return spliced


def built(index: int) -> tuple[Config, Dns64, CheckedFast]:
    if index not in _built:
        config = from_table(CONFIGS[index])
        _built[index] = (config, Dns64(config, HOSTS), CheckedFast(config, HOSTS))
    return _built[index]


NAMES = [
    "a.example.",
    "www.example.com.",
    "never.example.",
    "x.never.example.",
    "always.example.",
    "static.example.",
    "ipv4only.arpa.",
    "4.3.2.1.in-addr.arpa.",
]
TARGETS = ["c1.example.", "c2.example.net.", "a.example."]
V4 = ["192.0.2.1", "192.0.2.1", "203.0.113.9", "198.51.100.7", "10.1.2.3", "127.0.0.1", "0.1.2.3"]
V4 += ["224.0.0.1", "100.64.1.1", "192.0.0.170"]
V6 = ["2001:db8::1", "::ffff:192.0.2.1", "2001:db8:bad::1", "2001:db8:64::c000:201"]
TTLS = st.sampled_from([0, 1, 60, 300, 599, 600, 3600, 86400, 2**31 - 1, 2**31, 2**32 - 1])


@st.composite
def cased(draw: st.DrawFn, text: str) -> dns.name.Name:
    """``text`` with random letter case (0x20 clients, upstreams echoing case)."""
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return dns.name.from_text(
        "".join(c.upper() if f else c for c, f in zip(text, flips, strict=True))
    )


@st.composite
def client_queries(draw: st.DrawFn) -> bytes:
    # Mostly names the fast path takes; the rest check eligibility against the core.
    name = draw(cased(draw(st.sampled_from(NAMES[:2] * 6 + NAMES))))
    rdtype = draw(st.sampled_from(["AAAA"] * 8 + ["A", "MX"]))
    rdclass = draw(st.sampled_from(["IN"] * 8 + ["CH"]))
    edns = draw(st.booleans())
    message = dns.message.make_query(
        name,
        rdtype,
        rdclass,
        use_edns=0 if edns else False,
        want_dnssec=edns and draw(st.integers(0, 4)) == 0,
        payload=draw(st.sampled_from([512, 1232, 4096])),
        id=draw(st.integers(0, 0xFFFF)),
        flags=dns.flags.RD if draw(st.integers(0, 5)) else 0,
    )
    if draw(st.integers(0, 4)) == 0:
        message.flags |= dns.flags.CD
    if draw(st.booleans()):
        message.flags |= dns.flags.AD
    return message.to_wire()


def _soa(draw: st.DrawFn, owner: str = "example.") -> dns.rrset.RRset:
    minimum = draw(st.sampled_from([0, 30, 300, 900, 7200]))
    rrset = dns.rrset.from_text(
        draw(cased(owner)),
        300,
        "IN",
        "SOA",
        f"ns.{owner} hostmaster.{owner} 1 7200 3600 1209600 {minimum}",
    )
    rrset.ttl = draw(TTLS)
    return rrset


@st.composite
def chain(draw: st.DrawFn, qname: dns.name.Name) -> tuple[list[dns.rrset.RRset], dns.name.Name]:
    """A CNAME chain from ``qname``: the records and the name at its end."""
    out: list[dns.rrset.RRset] = []
    name = qname
    for _ in range(draw(st.integers(0, 2))):
        target = draw(cased(draw(st.sampled_from(TARGETS))))
        rrset = dns.rrset.RRset(draw(cased(name.to_text())), 1, dns.rdatatype.CNAME)
        rrset.add(dns.rdata.from_text("IN", "CNAME", target.to_text()), draw(TTLS))
        out.append(rrset)
        name = target
    return out, name


@st.composite
def replies(draw: st.DrawFn, upstream_query: bytes, rdtype: str, plain: bool = False) -> bytes:
    """An upstream reply to ``upstream_query`` (wire), asking ``rdtype``; ``plain``:
    NOERROR, and without AAAA records (the NODATA before synthesis)."""
    query = dns.message.from_wire(upstream_query)
    reply = dns.message.make_response(query)
    reply.id = 0  # the upstream module patches nothing: the shell compares by question
    rcodes = [dns.rcode.NOERROR] * 6 + [dns.rcode.NXDOMAIN, dns.rcode.SERVFAIL]
    reply.set_rcode(dns.rcode.NOERROR if plain else draw(st.sampled_from(rcodes)))
    records, final = draw(chain(query.question[0].name))
    owner = draw(st.sampled_from([final] * 4 + [dns.name.from_text("elsewhere.example.")]))
    # AAAA replies without AAAA records half the time, A replies mostly with
    # A records: synthesis, the common cold miss.
    if (rdtype == "A" or not plain) and draw(
        st.integers(0, 7) if rdtype == "A" else st.integers(0, 1)
    ):
        pool = V6 if rdtype == "AAAA" else V4
        addresses = draw(
            st.lists(st.sampled_from(pool), min_size=0 if rdtype == "AAAA" else 1, max_size=3)
        )
        if addresses:
            rrset = dns.rrset.RRset(
                draw(cased(owner.to_text())), 1, dns.rdatatype.from_text(rdtype)
            )
            for address in addresses:
                rrset.add(dns.rdata.from_text("IN", rdtype, address), draw(TTLS))
            records.append(rrset)
    if draw(st.integers(0, 4)) == 0:
        # Records of another owner among the answers (dropped when A: section 5.1.6).
        other = dns.rrset.RRset(draw(cased("other.example.")), 1, dns.rdatatype.from_text(rdtype))
        other.add(
            dns.rdata.from_text(
                "IN", rdtype, draw(st.sampled_from(V6 if rdtype == "AAAA" else V4))
            ),
            draw(TTLS),
        )
        records.insert(draw(st.integers(0, len(records))), other)
    if draw(st.integers(0, 6)) == 0 and records:
        records.reverse()  # out of order chains
    reply.answer = records
    if draw(st.integers(0, 2)):
        reply.authority.append(_soa(draw))
    if draw(st.integers(0, 5)) == 0:
        reply.authority.append(
            dns.rrset.from_text("example.", draw(TTLS), "IN", "NS", "ns.example.")
        )
    if draw(st.integers(0, 5)) == 0:
        reply.additional.append(
            dns.rrset.from_text("ns.example.", draw(TTLS), "IN", "A", "192.0.2.53")
        )
    if draw(st.integers(0, 2)) == 0:
        # NS and glue as NSD sends them, named after the answer's owner or the
        # other A records (compressed against the answer's A records), its zone or
        # the question (compressed against the question): the glue's owner points
        # into the NS rdata.
        base = draw(
            st.sampled_from(
                [
                    owner,
                    owner.parent(),
                    query.question[0].name,
                    dns.name.from_text("other.example."),
                ]
            )
        )
        server = dns.name.from_text(draw(st.sampled_from(["ns", "ns.sub"])), base)
        reply.authority.append(
            dns.rrset.from_text(
                draw(cased(base.to_text())), draw(TTLS), "IN", "NS", server.to_text()
            )
        )
        glue = draw(st.sampled_from([(), ("A",), ("A", "AAAA"), ("AAAA",)]))
        for glue_type in glue:
            reply.additional.append(
                dns.rrset.from_text(
                    server,
                    draw(TTLS),
                    "IN",
                    glue_type,
                    "192.0.2.53" if glue_type == "A" else "2001:db8::53",
                )
            )
    if draw(st.integers(0, 4)) == 0:
        reply.flags |= dns.flags.AD
    if draw(st.integers(0, 5)) == 0:
        reply.flags |= dns.flags.AA
    if draw(st.integers(0, 3)) == 0:
        reply.use_edns(False)
    if draw(st.integers(0, 3)) == 0:
        # The upstream echoed the question in other letter case (0x20).
        question = reply.question[0]
        reply.question = [dns.rrset.RRset(draw(cased(question.name.to_text())), 1, question.rdtype)]
    wire = reply.to_wire(want_shuffle=False) if draw(st.integers(0, 3)) else uncompressed(reply)
    if draw(st.integers(0, 15)) == 0:
        wire = wire[:-1]  # malformed: the fast path must give up, not guess
    return wire


def uncompressed(message: dns.message.Message) -> bytes:
    """``message`` in wire form without name compression (legal, and what some
    servers send), with the sections as they are (no sorting, no merging)."""
    body = io.BytesIO()
    counts = []
    for section in (message.question, message.answer, message.authority, message.additional):
        count = 0
        for rrset in section:
            if section is message.question:
                body.write(rrset.name.to_wire() or b"")
                body.write(struct.pack("!HH", rrset.rdtype, rrset.rdclass))
                count += 1
            else:
                count += rrset.to_wire(body, compress=None, want_shuffle=False)
        counts.append(count)
    if message.opt is not None:
        counts[3] += message.opt.to_wire(body, compress=None)
    header = struct.pack("!HHHHHH", message.id, int(message.flags), *counts)
    return header + body.getvalue()


def core_answer(
    core: Dns64, data: bytes, replies: dict[int, bytes]
) -> tuple[dns.message.Message, list[bytes]]:
    """Drive the core's generator; every upstream query is answered from ``replies``
    by qtype.  Returns the response and the upstream queries it sent (wire, ID 0)."""
    resolution = core.resolve(dns.message.from_wire(data), CLIENT)
    sent: list[bytes] = []
    try:
        outgoing = next(resolution)
        while True:
            sent.append(query_wire(outgoing))
            wire = replies.get(outgoing.question[0].rdtype)
            reply = None if wire is None else dns.message.from_wire(wire)
            outgoing = resolution.send(reply)
    except StopIteration as done:
        response: dns.message.Message = done.value
        return response, sent


def parse(wire: bytes) -> Reply | None:
    """The walked reply the fast path goes on with, or None where it gives up
    (what :meth:`FastDns64.check` hands the upstream module, less the bytes)."""
    try:
        checked = FastDns64.check(wire)
    except WireError:
        return None
    return checked if isinstance(checked, Reply) else None


def fast_answer(fast: FastDns64, data: bytes, replies: dict[int, bytes]) -> bytes | None:
    answer = fast_result(fast, data, replies)
    return None if answer is None else answer.wire


def fast_result(fast: FastDns64, data: bytes, replies: dict[int, bytes]) -> FastAnswer | None:
    head = scan_query(data)
    assert head is not None
    aaaa = parse(replies[28])
    if aaaa is None:
        return None
    result = fast.after_aaaa(data, head, aaaa)
    if result is FALLBACK:
        return None
    if isinstance(result, FastAnswer):
        return result
    assert result == NEED_A
    a = parse(replies[1])
    if a is None:
        return None
    return fast.after_a(data, head, aaaa, a)


def assert_cached_alike(answer: FastAnswer) -> None:
    """The cache entry stored from the fast path's layout (put_known) equals the
    one stored by walking the bytes (put): same TTL fields, values and lifetime."""
    walked, known = DnsCache(10, 86_400, 3_600), DnsCache(10, 86_400, 3_600)
    ttl = walked.put("k", answer.wire, 100.0)
    assert (
        known.put_known(
            "k",
            answer.wire,
            answer.ttl_offsets,
            answer.ttls,
            answer.negative,
            answer.soa_minimum,
            100.0,
        )
        == ttl
    )
    if ttl:
        for later in (100.0, 101.5, 100.0 + ttl / 2):
            assert known.get("k", later) == walked.get("k", later)


def normal(message: dns.message.Message) -> tuple[Any, ...]:
    """What a client sees: header, question (letter case included), sections as
    RRsets with TTLs (case-insensitive owners), EDNS."""

    def section(rrsets: list[dns.rrset.RRset]) -> list[tuple[Any, ...]]:
        return [
            # Names in records compare without letter case (RFC 4343): dnspython
            # compresses case-insensitively, so the core's rendering may take a
            # name's case from the question where the upstream wrote another.
            (r.name, r.rdclass, r.rdtype, r.covers, r.ttl, sorted(rd.to_text().lower() for rd in r))
            for r in rrsets
        ]

    return (
        message.id,
        int(message.flags),
        message.rcode(),
        [(q.name.to_wire(), q.rdtype, q.rdclass) for q in message.question],
        section(message.answer),
        section(message.authority),
        section(message.additional),
        message.edns,
        message.payload if message.edns >= 0 else None,
        int(message.ednsflags),
        message.options,
    )


STATS: Counter[str] = Counter()


@settings(
    max_examples=3000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.data())
def test_fast_path_answers_exactly_like_the_core(data: st.DataObject) -> None:
    config, core, fast = built(data.draw(st.integers(0, len(CONFIGS) - 1)))
    query = data.draw(client_queries())
    head = scan_query(query)
    if head is None or not fast.eligible(query, head):
        event("not eligible")
        return
    aaaa_query = fast.upstream_query(query, head, 28)
    a_query = fast.upstream_query(query, head, 1)
    replies = {
        28: data.draw(replies_for(aaaa_query, "AAAA")),
        1: data.draw(replies_for(a_query, "A")),
    }
    for qtype in (28, 1):
        if data.draw(st.integers(0, 3)) == 0:
            replies[qtype] = data.draw(repointed(replies[qtype]))
    compare(fast, core, query, replies)


def compare(fast: CheckedFast, core: Dns64, query: bytes, replies: dict[int, bytes]) -> str:
    """The fast path's answer to ``query`` with upstream ``replies`` (by qtype), if
    it gives one, equals the core's.  Returns how a synthesized answer was built
    ("spliced" or "written"), else ""."""
    head = scan_query(query)
    assert head is not None
    aaaa_query = fast.upstream_query(query, head, 28)
    a_query = fast.upstream_query(query, head, 1)
    malformed = {qtype for qtype, wire in replies.items() if not parses(wire)}
    if malformed:
        # The shell would never hand dnspython-malformed bytes to the core; the
        # fast path must not build an answer from them either.
        event("malformed reply")
        aaaa = parse(replies[28])
        if 28 in malformed:
            assert aaaa is None
            return ""
        assert aaaa is not None
        if fast.after_aaaa(query, head, aaaa) == NEED_A:
            assert parse(replies[1]) is None
        return ""
    expected, sent = core_answer(core, query, replies)
    # Eligible means: the core goes upstream with exactly our AAAA query first
    # (not a local answer, not always_synthesize's A-only path) and then, if at
    # all, with our A query.
    assert sent[0] == aaaa_query
    assert sent[1:] in ([], [a_query])
    answer = fast_result(fast, query, replies)
    if answer is None:
        event("fallback")
        STATS["fallback"] += 1
        return ""
    event("fast answer")
    STATS["fast"] += 1
    how = ""
    if answer.synthesized:
        how, fast.last = fast.last, ""
        event(f"synthesized, {how}")
        STATS[how] += 1
    got = answer.wire
    assert_cached_alike(answer)
    # Rendered like the shell renders it, then parsed, as a client would.
    expected_wire = expected.to_wire(max_size=65535)
    assert normal(dns.message.from_wire(got)) == normal(dns.message.from_wire(expected_wire))
    return how


@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.data())
def test_synthesized_answers_like_the_core(data: st.DataObject) -> None:
    """The common cold miss (NODATA for AAAA, then A records) in all the A reply
    shapes above: spliced or written, the answer is the core's."""
    cold_miss(data, lambda query: replies(query, "A", plain=True), aim_one_in=3)


def cold_miss(
    data: st.DataObject, a_replies: Callable[[bytes], st.SearchStrategy[bytes]], aim_one_in: int
) -> None:
    """A plain AAAA query that misses, a NODATA-like AAAA reply and an A reply from
    ``a_replies`` (one in ``aim_one_in`` with a pointer re-aimed): the fast
    path's answer, if any, is the core's (see compare)."""
    config, core, fast = built(data.draw(st.integers(0, len(CONFIGS) - 1)))
    name = data.draw(cased(data.draw(st.sampled_from(NAMES[:2]))))
    edns = data.draw(st.booleans())
    query = dns.message.make_query(
        name, "AAAA", use_edns=0 if edns else False, id=data.draw(st.integers(0, 0xFFFF))
    ).to_wire()
    head = scan_query(query)
    assert head is not None and fast.eligible(query, head)
    upstream = {
        28: data.draw(replies(fast.upstream_query(query, head, 28), "AAAA", plain=True)),
        1: data.draw(a_replies(fast.upstream_query(query, head, 1))),
    }
    aimed = data.draw(st.integers(0, aim_one_in - 1)) == 0
    if aimed:
        upstream[1] = data.draw(repointed(upstream[1]))
    how = compare(fast, core, query, upstream)
    if aimed and how:
        event(f"pointer aimed elsewhere, synthesized, {how}")


@st.composite
def plain_a_replies(draw: st.DrawFn, upstream_query: bytes) -> bytes:
    """A replies of the shape nearly every A-only name gets (Reply.plain_a): the A
    records at the question's name, then what authoritative servers add -- the
    zone's NS with glue, an SOA, other records -- compressed every which way,
    or nothing (minimal responses); sometimes a byte short."""
    query = dns.message.from_wire(upstream_query)
    reply = dns.message.make_response(query)
    reply.id = 0
    qname = query.question[0].name
    records = dns.rrset.RRset(qname, 1, dns.rdatatype.A)
    for address in draw(st.lists(st.sampled_from(V4), min_size=1, max_size=3)):
        records.add(dns.rdata.from_text("IN", "A", address), draw(TTLS))
    reply.answer = [records]
    zone = draw(st.sampled_from([qname.parent(), qname, dns.name.from_text("other.example.")]))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["NS", "NS", "SOA", "A", "AAAA", "CNAME"]))
        if kind == "SOA":
            reply.authority.append(_soa(draw, zone.to_text()))
            continue
        if kind == "NS":
            server = dns.name.from_text(draw(st.sampled_from(["ns", "ns.sub", "a.b"])), zone)
            reply.authority.append(
                dns.rrset.from_text(
                    draw(cased(zone.to_text())), draw(TTLS), "IN", "NS", server.to_text()
                )
            )
            for glue in draw(st.sampled_from([(), ("A",), ("A", "AAAA")])):
                value = "192.0.2.53" if glue == "A" else "2001:db8::53"
                reply.additional.append(dns.rrset.from_text(server, draw(TTLS), "IN", glue, value))
            continue
        owner = dns.name.from_text(draw(st.sampled_from(["x", "ns.y"])), zone)
        value = {"A": "198.51.100.1", "AAAA": "2001:db8::2", "CNAME": f"t.{zone}"}[kind]
        section = draw(st.sampled_from([reply.authority, reply.additional]))
        section.append(dns.rrset.from_text(owner, draw(TTLS), "IN", kind, value))
    if draw(st.integers(0, 3)) == 0:
        reply.use_edns(False)
    if draw(st.integers(0, 5)) == 0:
        reply.flags |= dns.flags.AA
    wire = reply.to_wire(want_shuffle=False) if draw(st.integers(0, 5)) else uncompressed(reply)
    if draw(st.integers(0, 15)) == 0:
        wire = wire[:-1]
    return wire


@settings(
    max_examples=1500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.data())
def test_plain_a_replies_answer_like_the_core(data: st.DataObject) -> None:
    """The cold miss as it nearly always comes (NSD's NODATA, then a plain A reply
    with or without NS, glue and the rest): the answer moved as a block is the
    splice's byte for byte (CheckedFast) and the core's."""
    cold_miss(data, plain_a_replies, aim_one_in=4)


@st.composite
def repointed(draw: st.DrawFn, wire: bytes) -> bytes:
    """``wire`` with one of its records' compression pointers aimed at another
    earlier offset: names read from inside addresses, TTLs, the question's type
    and so on, as RFC 1035 section 4.1.4 allows (dnspython may refuse the result:
    then the fast path must too)."""
    reply = parse(wire)
    if reply is None:
        return wire
    reply.walk()  # a plain reply is only walked on demand
    pointers = sorted({end - 2 for _, end, hops, own in reply.names.values() if hops and own})
    if not pointers:
        return wire
    at = draw(st.sampled_from(pointers))
    target = draw(st.integers(12, at - 1))
    return wire[:at] + struct.pack("!H", 0xC000 | target) + wire[at + 2 :]


def parses(wire: bytes) -> bool:
    try:
        dns.message.from_wire(wire)
    except Exception:
        return False
    return True


def replies_for(upstream_query: bytes, rdtype: str) -> st.SearchStrategy[bytes]:
    return replies(upstream_query, rdtype)


# -- the common cases, stated once by hand (and proof the fast path does answer) --


def _common(rcode: int = 0, aaaa: tuple[str, ...] = (), soa: bool = True) -> dict[str, Any]:
    config, core, fast = built(0)
    query = dns.message.make_query("Host.Example.", "AAAA", id=0x1234)
    data = query.to_wire()
    head = scan_query(data)
    assert head is not None and fast.eligible(data, head)
    aaaa_reply = dns.message.make_response(
        dns.message.from_wire(fast.upstream_query(data, head, 28))
    )
    aaaa_reply.set_rcode(rcode)
    if aaaa:
        aaaa_reply.answer.append(dns.rrset.from_text("host.example.", 300, "IN", "AAAA", *aaaa))
    if soa:
        aaaa_reply.authority.append(
            dns.rrset.from_text("example.", 900, "IN", "SOA", "ns.example. h.example. 1 2 3 4 60")
        )
    a_reply = dns.message.make_response(dns.message.from_wire(fast.upstream_query(data, head, 1)))
    a_reply.answer.append(
        dns.rrset.from_text("host.example.", 300, "IN", "A", "192.0.2.1", "192.0.2.2")
    )
    replies = {28: aaaa_reply.to_wire(), 1: a_reply.to_wire()}
    got = fast_answer(fast, data, replies)
    expected, _ = core_answer(core, data, replies)
    return {"got": got, "expected": expected}


def test_nodata_is_synthesized_on_the_fast_path() -> None:
    result = _common()
    assert result["got"] is not None
    response = dns.message.from_wire(result["got"])
    assert normal(response) == normal(result["expected"])
    (rrset,) = response.answer
    # RFC 6147 section 5.1.7: min(A TTL 300, SOA MINIMUM 60).
    assert rrset.ttl == 60
    assert sorted(rd.address for rd in rrset) == ["2001:db8:64::c000:201", "2001:db8:64::c000:202"]


def test_no_soa_caps_at_600() -> None:
    result = _common(soa=False)
    response = dns.message.from_wire(result["got"])
    assert normal(response) == normal(result["expected"])
    assert response.answer[0].ttl == 300


def test_real_aaaa_is_relayed_and_nxdomain_too() -> None:
    for kwargs in ({"aaaa": ("2001:db8::1",)}, {"rcode": dns.rcode.NXDOMAIN}):
        result = _common(**kwargs)
        assert result["got"] is not None
        assert normal(dns.message.from_wire(result["got"])) == normal(result["expected"])


def test_excluded_aaaa_falls_back() -> None:
    assert _common(aaaa=("::ffff:192.0.2.1",))["got"] is None


@pytest.mark.parametrize(
    ("name", "rdtype", "do"),
    [
        ("ipv4only.arpa.", "AAAA", False),
        ("static.example.", "AAAA", False),
        ("a.example.", "A", False),
        ("a.example.", "AAAA", True),
    ],
)
def test_not_eligible(name: str, rdtype: str, do: bool) -> None:
    _, _, fast = built(0)
    data = dns.message.make_query(name, rdtype, want_dnssec=do).to_wire()
    head = scan_query(data)
    assert head is not None
    assert not fast.eligible(data, head)


# -- the splice (FastDns64._spliced) and the shapes it leaves to the writer --------

# NSD's replies for an A-only name, as received (bench.example, see tests/bench):
# AAAA: NODATA with the zone's SOA; A: the A record, the zone's NS in authority
# and its glue in additional, whose owner points into the NS rdata.
NSD_AAAA = bytes.fromhex(
    "07aa850000010000000100010263350562656e6368076578616d706c6500001c0001c00f0006000100"
    "00012c0026026e73c00f0a686f73746d6173746572c00f0000000100000e1000000258000151800000"
    "012c00002904d0000000000000"
)
NSD_A = bytes.fromhex(
    "72c9850000010001000100020263350562656e6368076578616d706c650000010001c00c0001000100"
    "000e100004c0000206c00f0002000100000e100005026e73c00fc03e0001000100000e100004c00002"
    "3500002904d0000000000000"
)


def _answer_both_ways(
    name: str, a_reply: bytes, aaaa_reply: bytes | None = None, edns: bool = True
) -> tuple[str, dns.message.Message]:
    """How the fast path built its synthesized answer ("spliced" or "written"),
    after checking it against the core; and the answer."""
    config, core, fast = built(0)
    query = dns.message.make_query(name, "AAAA", use_edns=0 if edns else False, id=0x1234)
    data = query.to_wire()
    head = scan_query(data)
    assert head is not None
    if aaaa_reply is None:
        nodata = dns.message.make_response(
            dns.message.from_wire(fast.upstream_query(data, head, 28))
        )
        aaaa_reply = nodata.to_wire()
    replies = {28: aaaa_reply, 1: a_reply}
    fast.last = ""
    answer = fast_result(fast, data, replies)
    assert answer is not None and answer.synthesized
    assert_cached_alike(answer)
    expected, _ = core_answer(core, data, replies)
    got = dns.message.from_wire(answer.wire)
    assert normal(got) == normal(dns.message.from_wire(expected.to_wire(max_size=65535)))
    return fast.last, got


def _a_reply(name: str, build: Any) -> dns.message.Message:
    _, _, fast = built(0)
    data = dns.message.make_query(name, "AAAA").to_wire()
    head = scan_query(data)
    assert head is not None
    reply = dns.message.make_response(dns.message.from_wire(fast.upstream_query(data, head, 1)))
    build(reply)
    return reply


def test_plain_shapes_are_recognised() -> None:
    # NSD's replies for an A-only name take the short way (Reply.nodata_ttl and
    # Reply.plain_a): they are what nearly every cold miss gets.
    aaaa, a = Reply(NSD_AAAA), Reply(NSD_A)
    assert aaaa.nodata_ttl == 300  # min(SOA TTL 300, MINIMUM 300)
    assert a.plain_a == [(3600, 0xC0000206)]
    assert not aaaa.walked and not a.walked
    # Minimal responses (what recursive resolvers send): no authority, no glue.
    minimal = dns.message.from_wire(NSD_A)
    minimal.authority, minimal.additional = [], []
    plain = Reply(minimal.to_wire())
    assert plain.plain_a == [(3600, 0xC0000206)] and plain.tail.start == plain.tail.end
    # Anything else is walked, as before: here a CNAME before the A record.
    chained = dns.message.from_wire(NSD_A)
    chained.answer = [
        dns.rrset.from_text("c5.bench.example.", 60, "IN", "CNAME", "c6.bench.example."),
        dns.rrset.from_text("c6.bench.example.", 60, "IN", "A", "192.0.2.7"),
    ]
    walked = Reply(chained.to_wire())
    assert walked.walked and walked.plain_a is None and walked.nodata_ttl == -1


@pytest.mark.parametrize("edns", [True, False])
def test_nsd_reply_is_spliced(edns: bool) -> None:
    how, got = _answer_both_ways("C5.bench.example.", NSD_A, NSD_AAAA, edns)
    # Built the plain way, which CheckedFast checks is byte for byte the splice's.
    assert how == "plain"
    (aaaa,) = got.answer
    assert [rd.address for rd in aaaa] == ["2001:db8:64::c000:206"]
    # RFC 6147 section 5.1.7: min(A TTL 3600, SOA TTL 300, MINIMUM 300).
    assert aaaa.ttl == 300
    assert got.additional[0].name == dns.name.from_text("ns.bench.example.")


def test_uncompressed_reply_is_spliced() -> None:
    def build(reply: dns.message.Message) -> None:
        reply.answer.append(
            dns.rrset.from_text("host.example.", 60, "IN", "A", "192.0.2.1", "192.0.2.2")
        )
        reply.authority.append(dns.rrset.from_text("example.", 60, "IN", "NS", "ns.example."))
        reply.additional.append(dns.rrset.from_text("ns.example.", 60, "IN", "A", "192.0.2.53"))

    how, got = _answer_both_ways("host.example.", uncompressed(_a_reply("host.example.", build)))
    assert how == "spliced"
    assert len(got.answer[0]) == 2


def test_pointer_into_the_dropped_a_records_is_written() -> None:
    # The NS owner is compressed against the other name's A record, which goes
    # (RFC 6147 section 5.1.6): the writer renders the answer instead.
    def build(reply: dns.message.Message) -> None:
        reply.answer.append(dns.rrset.from_text("other.example.", 60, "IN", "A", "192.0.2.1"))
        reply.answer.append(dns.rrset.from_text("host.example.", 60, "IN", "A", "192.0.2.2"))
        reply.authority.append(
            dns.rrset.from_text("other.example.", 60, "IN", "NS", "ns.other.example.")
        )

    how, got = _answer_both_ways("host.example.", _a_reply("host.example.", build).to_wire())
    assert how == "written"
    assert got.authority[0].name == dns.name.from_text("other.example.")


def test_pointer_moved_past_the_compression_range_is_written() -> None:
    # 14-bit pointers (RFC 1035 section 4.1.4): a target that moves to 0x4000 or
    # beyond cannot be pointed at; the writer renders the answer instead.
    def build_with(count: int, pad: int) -> Any:
        def build(reply: dns.message.Message) -> None:
            reply.answer.append(dns.rrset.from_text("host.example.", 60, "IN", "A", "192.0.2.1"))
            reply.authority.append(
                dns.rrset.from_text("p" * pad + ".example.", 60, "IN", "NS", "ns.example.")
            )
            for i in range(count):
                reply.authority.append(
                    dns.rrset.from_text(f"z{i}.example.", 60, "IN", "NS", f"ns.z{i}.example.")
                )
            reply.additional.append(
                dns.rrset.from_text(f"ns.z{count - 1}.example.", 60, "IN", "A", "192.0.2.53")
            )

        return build

    def glue_target(wire: bytes) -> int:
        glue = wire.rindex(b"\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x35") - 2
        return int(struct.unpack_from("!H", wire, glue)[0] & 0x3FFF)

    # The glue's owner points into the last NS rdata, just below 0x4000: one A
    # record giving way to one AAAA record moves it 12 bytes, past the range.
    wire = _a_reply("host.example.", build_with(746, 16)).to_wire(max_size=65535)
    assert 0x4000 - 12 <= glue_target(wire) < 0x4000
    how, _ = _answer_both_ways("host.example.", wire)
    assert how == "written"
    # Further down, the same shape is moved as a block (the plain way, which
    # CheckedFast checks is byte for byte the splice's).
    wire = _a_reply("host.example.", build_with(700, 16)).to_wire(max_size=65535)
    assert glue_target(wire) < 0x4000 - 12
    how, _ = _answer_both_ways("host.example.", wire)
    assert how == "plain"


def test_pointer_through_record_data_is_written() -> None:
    # A name may be read from any earlier bytes (RFC 1035 section 4.1.4), even
    # from inside an A record's address: here the last NS target reads the glue
    # address 1.121.192.58 as "\x01y" and a pointer into the authority section.
    # Moving that pointer would change the address: the writer renders the answer.
    a_reply = bytes.fromhex(
        "0000 8180 0001 0001 0001 0002"  # header: ID 0, QR RD RA, 1/1/1/2
        "04686f7374 076578616d706c65 00 0001 0001"  # 12: host.example. A IN
        "c00c 0001 0001 0000003c 0004 c0000201"  # 30: host.example. A 192.0.2.1
        "c011 0002 0001 0000003c 0005 026e73c011"  # 46: example. NS ns.example. (58)
        "c03a 0001 0001 0000003c 0004 0179c03a"  # 63: ns.example. A (75: "\x01y" + ptr 58)
        "c011 0002 0001 0000003c 0002 c04b"  # 79: example. NS y.ns.example. (ptr 75)
    )
    how, got = _answer_both_ways("host.example.", a_reply)
    assert how == "written"
    assert [rd.address for rd in got.additional[0]] == ["1.121.192.58"]


def test_name_read_through_a_large_ttl_is_written() -> None:
    # Found by the pointer aiming above: the SOA owner reads the bytes of a
    # CNAME's TTL 2**31, which is written as 0 (RFC 2181 section 8), so the
    # A reply cannot be copied as it is.
    aaaa_reply = bytes.fromhex(
        "00008520000100000002000003777777076578616d706c6503636f6d00001c0001076578616d706c"
        "650000060001000000000034026e73076578616d706c65000a686f73746d6173746572076578616d"
        "706c65000000000100001c2000000e10001275000000000003777777076578616d706c6503636f6d"
        "0000020001000000000014026e7303777777076578616d706c6503636f6d00"
    )
    a_reply = bytes.fromhex(
        "00008520000100030002000003777777076578616d706c6503636f6d0000010001c00c0005000100"
        "000e10000b0161076578616d706c6500c02d00050001800000000002c02dc02d0001000100000000"
        "0004c0000201c02400060001000000000026026e73c02f0a686f73746d6173746572c02f00000001"
        "00001c2000000e100012750000000000c02f00020001000000000002c062"
    )
    how, _ = _answer_both_ways("www.example.com.", a_reply, aaaa_reply, edns=False)
    assert how == "written"


def test_relayed_ttl_with_the_top_bit_set_goes_to_the_core() -> None:
    """RFC 2181 section 8: such a TTL means zero; the relay must not copy it on."""
    _, core, fast = built(0)
    data = dns.message.make_query("host.example.", "AAAA").to_wire()
    head = scan_query(data)
    assert head is not None
    reply = dns.message.make_response(dns.message.from_wire(fast.upstream_query(data, head, 28)))
    reply.answer.append(dns.rrset.from_text("host.example.", 300, "IN", "AAAA", "2001:db8::1"))
    wire = bytearray(reply.to_wire())
    ttl_at = wire.index(bytes.fromhex("0000012c"))  # the AAAA record's TTL, 300
    wire[ttl_at : ttl_at + 4] = (2**31).to_bytes(4, "big")
    parsed = parse(bytes(wire))
    assert parsed is not None
    assert fast.after_aaaa(data, head, parsed) is FALLBACK
    expected, _ = core_answer(core, data, {28: bytes(wire)})
    assert expected.answer[0].ttl == 0
