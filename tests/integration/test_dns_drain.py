"""Stopping the DNS proxy answers the queries in flight first (graceful drain).

Both miss paths are covered: the wire-level AAAA path (callbacks, no task) and
the DNS64 core (a task per query), with a slow upstream so that the queries are
still waiting upstream when stop() is called.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import replace

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

from tests.integration.dns_support import (
    FakeUpstream,
    a_query,
    make_config,
    run,
    start_service,
    udp_exchange,
)
from totd_faith.dns64 import Dns64
from totd_faith.prefix import Nat64Prefix

SOA_DATA = "ns.example. hostmaster.example. 1 3600 600 86400 60"


async def slow_a_only(query: dns.message.Message, wire: bytes) -> list[bytes]:
    """An upstream that takes 0.3 s and knows only A records (AAAA: NODATA + SOA)."""
    await asyncio.sleep(0.3)
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    question = query.question[0]
    if question.rdtype == dns.rdatatype.A:
        response.answer.append(dns.rrset.from_text(question.name, 900, "IN", "A", "192.0.2.7"))
    else:
        response.authority.append(dns.rrset.from_text("example.", 300, "IN", "SOA", SOA_DATA))
    return [response.to_wire()]


def test_stop_answers_the_queries_in_flight_on_both_miss_paths() -> None:
    async def main() -> None:
        upstream = await FakeUpstream(slow_a_only).start()
        config = replace(
            make_config([upstream.endpoint], upstream_timeout=5),
            prefixes=(Nat64Prefix.parse("2001:db8:64::/96"),),
        )
        service, endpoint = await start_service(config, resolver=Dns64)
        try:
            aaaa = a_query("v4.example.", "AAAA")  # the wire-level fast path
            mx = a_query("v4.example.", "MX")  # the core
            exchanges = [
                asyncio.ensure_future(udp_exchange(endpoint, q.to_wire(), timeout=5))
                for q in (aaaa, mx)
            ]
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while service.inflight < 2:
                assert loop.time() < deadline, "the queries never reached the service"
                await asyncio.sleep(0.005)
            await service.stop(drain_timeout=5)
            answers = [await exchange for exchange in exchanges]
        finally:
            upstream.close()
        assert all(answer is not None for answer in answers), "a query in flight was dropped"
        synthesized = dns.message.from_wire(answers[0] or b"")
        assert synthesized.id == aaaa.id and synthesized.rcode() == dns.rcode.NOERROR
        (rrset,) = synthesized.answer
        # RFC 6147 section 5.1.7: 192.0.2.7 embedded in the Network-Specific Prefix.
        assert [ipaddress.ip_address(rd.address) for rd in rrset] == [
            ipaddress.ip_address("2001:db8:64::c000:207")
        ]
        mx_answer = dns.message.from_wire(answers[1] or b"")
        assert mx_answer.id == mx.id and mx_answer.rcode() == dns.rcode.NOERROR
        assert service.inflight == 0

    run(main())
