"""Per-attempt timeouts of the upstream engine against in-process fake upstreams:
each attempt gets the whole timeout from the moment it is sent, and the
engine's deadline queue stays as short as the queries in flight."""

from __future__ import annotations

import asyncio

import dns.message
import dns.rcode

from tests.integration.dns_support import FakeUpstream, answer_a, replies, run
from totd_faith.dnsstats import DnsStats
from totd_faith.endpoints import Endpoint
from totd_faith.upstream import UpstreamPool


def _pool(endpoints: list[Endpoint], timeout: float) -> UpstreamPool:
    return UpstreamPool(endpoints, timeout=timeout, max_failures=3, retry=30.0, stats=DnsStats())


def test_the_next_attempt_gets_a_whole_timeout_after_an_early_servfail() -> None:
    # The first upstream says SERVFAIL late in its attempt; the second answers
    # after the first attempt's deadline but well within its own.  An engine
    # that let the first attempt's deadline end the second one would return
    # the SERVFAIL instead.
    timeout = 1.0

    async def late_servfail(query: dns.message.Message, wire: bytes) -> list[bytes]:
        await asyncio.sleep(0.5)
        response = dns.message.make_response(query)
        response.set_rcode(dns.rcode.SERVFAIL)
        return [response.to_wire()]

    async def slow(query: dns.message.Message, wire: bytes) -> list[bytes]:
        await asyncio.sleep(0.75)
        return [answer_a(query, "192.0.2.30")]

    async def main() -> None:
        first = await FakeUpstream(late_servfail).start()
        second = await FakeUpstream(slow).start()
        pool = _pool([first.endpoint, second.endpoint], timeout)
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            reply = await pool.query(dns.message.make_query("late.example.", "A"))
            assert reply is not None
            assert reply.rcode() == dns.rcode.NOERROR
            assert reply.answer[0][0].address == "192.0.2.30"
            assert loop.time() - started > timeout  # the case under test happened
            assert pool.stats.upstream_failovers == 1
        finally:
            pool.close()
            first.close()
            second.close()

    run(main())


def test_the_deadline_queue_does_not_grow_with_answered_queries() -> None:
    async def main() -> None:
        upstream = await FakeUpstream(replies("192.0.2.31")).start()
        pool = _pool([upstream.endpoint], timeout=30.0)
        try:
            for round_ in range(20):
                names = [f"q{round_}-{i}.example." for i in range(10)]
                answers = await asyncio.gather(
                    *(pool.query(dns.message.make_query(n, "A")) for n in names)
                )
                assert all(a is not None and a.answer for a in answers)
            # 200 queries answered long before their 30 s deadline: only the
            # last batch or two may still be queued.
            assert len(pool._deadlines) <= 2
        finally:
            pool.close()
            upstream.close()

    run(main())
