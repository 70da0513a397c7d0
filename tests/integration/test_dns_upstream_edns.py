"""Upstreams without EDNS (old forwarders, home-router proxies) and upstream
FORMERR, against in-process fake upstreams and the real DNS64 core.

RFC 6891 section 7: an upstream that does not implement EDNS answers FORMERR
without OPT to a query with OPT; section 6.2.2: ask it again without OPT and
remember that for a while.  Any other FORMERR is about our query, not the
client's: the client gets the next upstream's answer, or SERVFAIL.
"""

from __future__ import annotations

import time
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from tests.integration.dns_support import (
    Behaviour,
    FakeClock,
    FakeUpstream,
    a_query,
    run,
    start_service,
    tcp_exchange,
    udp_query,
)
from tests.support.ports import free_port
from tests.support.replies import formerr
from totd_faith import config as config_module
from totd_faith.config import Config
from totd_faith.dnsserver import _default_resolver
from totd_faith.endpoints import Endpoint

PREFIX = "2001:db8:64::/96"
SOA = "ns.example. hostmaster.example. 1 3600 600 86400 300"

#: (qtype, carried OPT) of every query an upstream received.
Log = list[tuple[str, bool]]


def _config(upstreams: list[Endpoint], **dns: Any) -> Config:
    return config_module.from_table(
        {
            "prefixes": [PREFIX],
            "dns": {
                "listen": [f"127.0.0.1:{free_port()}"],
                "upstreams": [str(e) for e in upstreams],
                **dns,
            },
        }
    )


def _answer(query: dns.message.Message, address: str = "192.0.2.1") -> bytes:
    """An A-only name as an authoritative server has it: A data, AAAA NODATA."""
    reply = dns.message.make_response(query)
    name = query.question[0].name
    if query.question[0].rdtype == dns.rdatatype.A:
        reply.answer.append(dns.rrset.from_text(name, 300, "IN", "A", address))
    else:
        reply.authority.append(dns.rrset.from_text("example.", 300, "IN", "SOA", SOA))
    return reply.to_wire()


def _logged(log: Log, query: dns.message.Message) -> None:
    log.append((dns.rdatatype.to_text(query.question[0].rdtype), query.edns >= 0))


def old_server(log: Log, address: str = "192.0.2.1") -> Behaviour:
    """No EDNS: FORMERR without OPT to a query with OPT (RFC 6891 section 7)."""

    async def behaviour(query: dns.message.Message, wire: bytes) -> list[bytes]:
        _logged(log, query)
        if query.edns >= 0:
            return [formerr(query, opt=False)]
        return [_answer(query, address)]

    return behaviour


def rejecting(log: Log, *, opt: bool) -> Behaviour:
    """FORMERR to everything, with or without OPT in it."""

    async def behaviour(query: dns.message.Message, wire: bytes) -> list[bytes]:
        _logged(log, query)
        return [formerr(query, opt=opt)]

    return behaviour


def _addresses(response: dns.message.Message) -> list[str]:
    assert response.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(response.rcode())
    return [rdata.address for rrset in response.answer for rdata in rrset]


def test_aaaa_then_a_on_an_upstream_without_edns():
    async def main() -> None:
        log: Log = []
        upstream = await FakeUpstream(old_server(log)).start()
        service, endpoint = await start_service(
            _config([upstream.endpoint]), resolver=_default_resolver
        )
        try:
            aaaa = await udp_query(endpoint, a_query("v4.example.", "AAAA", use_edns=0))
            assert _addresses(aaaa) == ["2001:db8:64::c000:201"]
            # Asked again without OPT; the A query then goes without OPT at once.
            assert log == [("AAAA", True), ("AAAA", False), ("A", False)]
            a = await udp_query(endpoint, a_query("other.example.", "A", use_edns=0))
            assert _addresses(a) == ["192.0.2.1"]
            assert log[3:] == [("A", False)]
            assert service.stats.upstream_edns_fallbacks == 1
            # Not a failure of the upstream, nor a move to another one.
            assert service.stats.upstream_failures == 0
            assert service.stats.upstream_failovers == 0
            # The answers to the client still carry its OPT (RFC 6891 section 7).
            assert aaaa.edns == 0 and a.edns == 0
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_a_first_then_aaaa_and_edns_again_after_the_retry_interval():
    async def main() -> None:
        log: Log = []
        clock = FakeClock()
        upstream = await FakeUpstream(old_server(log)).start()
        service, endpoint = await start_service(
            _config([upstream.endpoint], upstream_retry=30), clock, resolver=_default_resolver
        )
        try:
            a = await udp_query(endpoint, a_query("first.example.", "A"))
            assert _addresses(a) == ["192.0.2.1"]
            assert log == [("A", True), ("A", False)]
            aaaa = await udp_query(endpoint, a_query("second.example.", "AAAA"))
            assert _addresses(aaaa) == ["2001:db8:64::c000:201"]
            assert log[2:] == [("AAAA", False), ("A", False)]
            # "for a brief time" (RFC 6891 section 6.2.2): then EDNS is tried again.
            clock.now += 31
            again = await udp_query(endpoint, a_query("third.example.", "A"))
            assert _addresses(again) == ["192.0.2.1"]
            assert log[4:] == [("A", True), ("A", False)]
            assert service.stats.upstream_edns_fallbacks == 2
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_a_truncated_answer_without_edns_goes_over_tcp_without_opt():
    async def main() -> None:
        log: Log = []
        tcp_log: Log = []

        async def truncating(query: dns.message.Message, wire: bytes) -> list[bytes]:
            _logged(log, query)
            if query.edns >= 0:
                return [formerr(query, opt=False)]
            reply = dns.message.make_response(query)
            reply.flags |= dns.flags.TC
            return [reply.to_wire()]

        async def over_tcp(query: dns.message.Message, wire: bytes) -> list[bytes]:
            _logged(tcp_log, query)
            return [_answer(query, "192.0.2.7")]

        upstream = await FakeUpstream(truncating, over_tcp).start()
        service, endpoint = await start_service(
            _config([upstream.endpoint]), resolver=_default_resolver
        )
        try:
            a = await udp_query(endpoint, a_query("big.example.", "A"))
            assert _addresses(a) == ["192.0.2.7"]
            assert log == [("A", True), ("A", False)]
            assert tcp_log == [("A", False)]
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_formerr_with_opt_reaches_the_client_as_servfail():
    async def main() -> None:
        log: Log = []
        upstream = await FakeUpstream(rejecting(log, opt=True)).start()
        service, endpoint = await start_service(
            _config([upstream.endpoint]), resolver=_default_resolver
        )
        try:
            for rdtype in ("A", "TXT", "AAAA"):
                response = await udp_query(endpoint, a_query("bad.example.", rdtype))
                assert response.rcode() == dns.rcode.SERVFAIL, rdtype
            # An EDNS-aware upstream's FORMERR: no fallback, and not asked twice
            # (an answer about our query would only come again).
            assert log == [("A", True), ("TXT", True), ("AAAA", True), ("A", True)]
            assert service.stats.upstream_edns_fallbacks == 0
            assert service.stats.responses_by_rcode[dns.rcode.FORMERR] == 0
            # Over TCP too.
            query = a_query("bad.example.", "A")
            (wire,) = await tcp_exchange(endpoint, [query.to_wire()], 1)
            assert dns.message.from_wire(wire).rcode() == dns.rcode.SERVFAIL
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_formerr_without_opt_to_queries_without_opt_reaches_the_client_as_servfail():
    async def main() -> None:
        log: Log = []
        upstream = await FakeUpstream(rejecting(log, opt=False)).start()
        service, endpoint = await start_service(
            _config([upstream.endpoint]), resolver=_default_resolver
        )
        try:
            a = await udp_query(endpoint, a_query("bad.example.", "A"))
            assert a.rcode() == dns.rcode.SERVFAIL
            assert log == [("A", True), ("A", False)]
            # Known to lack EDNS now: the next question goes without OPT only.
            aaaa = await udp_query(endpoint, a_query("bad2.example.", "AAAA"))
            assert aaaa.rcode() == dns.rcode.SERVFAIL
            assert log[2:] == [("AAAA", False), ("A", False)]
            assert service.stats.upstream_edns_fallbacks == 1
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_aaaa_formerr_is_synthesized_from_the_a_answer():
    """RFC 6147 sections 5.1.2 and 5.1.3: an AAAA query without a usable answer
    is followed by the A query, whose answer is synthesized."""

    async def main() -> None:
        async def aaaa_rejected(query: dns.message.Message, wire: bytes) -> list[bytes]:
            if query.question[0].rdtype == dns.rdatatype.AAAA:
                return [formerr(query, opt=True)]
            return [_answer(query, "192.0.2.21")]

        upstream = await FakeUpstream(aaaa_rejected).start()
        service, endpoint = await start_service(
            _config([upstream.endpoint]), resolver=_default_resolver
        )
        try:
            aaaa = await udp_query(endpoint, a_query("formerr.example.", "AAAA"))
            assert _addresses(aaaa) == ["2001:db8:64::c000:215"]
            assert upstream.udp_queries == 2
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_formerr_moves_on_to_the_next_upstream():
    async def main() -> None:
        first_log: Log = []
        second_log: Log = []
        first = await FakeUpstream(rejecting(first_log, opt=True)).start()
        second = await FakeUpstream(old_server(second_log, "192.0.2.12")).start()
        service, endpoint = await start_service(
            _config([first.endpoint, second.endpoint]), resolver=_default_resolver
        )
        try:
            a = await udp_query(endpoint, a_query("a.example.", "A"))
            assert _addresses(a) == ["192.0.2.12"]
            assert first_log == [("A", True)]
            assert second_log == [("A", True), ("A", False)]
            assert service.stats.upstream_failovers == 1
        finally:
            await service.stop(0)
            first.close()
            second.close()

    run(main())


def test_the_next_upstream_gets_the_query_with_opt_again():
    async def main() -> None:
        first_log: Log = []
        second_log: Log = []

        async def old_and_failing(query: dns.message.Message, wire: bytes) -> list[bytes]:
            _logged(first_log, query)
            if query.edns >= 0:
                return [formerr(query, opt=False)]
            reply = dns.message.make_response(query)
            reply.set_rcode(dns.rcode.SERVFAIL)
            return [reply.to_wire()]

        async def modern(query: dns.message.Message, wire: bytes) -> list[bytes]:
            _logged(second_log, query)
            return [_answer(query, "192.0.2.13")]

        first = await FakeUpstream(old_and_failing).start()
        second = await FakeUpstream(modern).start()
        service, endpoint = await start_service(
            _config([first.endpoint, second.endpoint]), resolver=_default_resolver
        )
        try:
            for name in ("a.example.", "b.example."):
                a = await udp_query(endpoint, a_query(name, "A"))
                assert _addresses(a) == ["192.0.2.13"]
            assert first_log == [("A", True), ("A", False), ("A", False)]
            assert second_log == [("A", True), ("A", True)]
        finally:
            await service.stop(0)
            first.close()
            second.close()

    run(main())


def _bare_formerr(query: dns.message.Message) -> bytes:
    """FORMERR with the header alone (no question), as BIND answers what it cannot read."""
    return query.id.to_bytes(2, "big") + b"\x80\x01" + bytes(8)


def test_formerr_without_a_question_section_is_understood():
    async def main() -> None:
        log: Log = []

        async def header_only(query: dns.message.Message, wire: bytes) -> list[bytes]:
            _logged(log, query)
            if query.edns >= 0 or query.question[0].name.labels[0] == b"bad":
                return [_bare_formerr(query)]
            return [_answer(query)]

        upstream = await FakeUpstream(header_only).start()
        service, endpoint = await start_service(
            _config([upstream.endpoint], upstream_timeout=5), resolver=_default_resolver
        )
        try:
            aaaa = await udp_query(endpoint, a_query("v4.example.", "AAAA"))
            assert _addresses(aaaa) == ["2001:db8:64::c000:201"]
            assert log == [("AAAA", True), ("AAAA", False), ("A", False)]
            # A real FORMERR without a question: SERVFAIL at once, not at the timeout.
            started = time.monotonic()
            bad = await udp_query(endpoint, a_query("bad.example.", "A"))
            assert bad.rcode() == dns.rcode.SERVFAIL
            assert time.monotonic() - started < 4
            assert log[3:] == [("A", False)]
            assert service.stats.upstream_ignored == 0
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_formerr_over_tcp_is_understood_too():
    async def main() -> None:
        log: Log = []
        tcp_log: Log = []

        async def truncating(query: dns.message.Message, wire: bytes) -> list[bytes]:
            _logged(log, query)
            reply = dns.message.make_response(query)
            reply.flags |= dns.flags.TC
            return [reply.to_wire()]

        async def old_over_tcp(query: dns.message.Message, wire: bytes) -> list[bytes]:
            _logged(tcp_log, query)
            if query.question[0].name.labels[0] == b"bad":
                return [_bare_formerr(query)]
            if query.edns >= 0:
                return [formerr(query, opt=False)]
            return [_answer(query, "192.0.2.8")]

        upstream = await FakeUpstream(truncating, old_over_tcp).start()
        service, endpoint = await start_service(
            _config([upstream.endpoint], upstream_timeout=5), resolver=_default_resolver
        )
        try:
            a = await udp_query(endpoint, a_query("big.example.", "A"))
            assert _addresses(a) == ["192.0.2.8"]
            assert log == [("A", True), ("A", False)]
            assert tcp_log == [("A", True), ("A", False)]
            started = time.monotonic()
            bad = await udp_query(endpoint, a_query("bad.example.", "A"))
            assert bad.rcode() == dns.rcode.SERVFAIL
            assert time.monotonic() - started < 4
            assert tcp_log[2:] == [("A", False)]
        finally:
            await service.stop(0)
            upstream.close()

    run(main())
