"""Upstream faults against an in-process fake upstream: dead, slow, garbage, TC,
wrong ID, wrong question, wrong source; failover, mark-down and retry-back."""

from __future__ import annotations

import asyncio
import os
import socket
import time

import dns.flags
import dns.message
import dns.rcode
import dns.rrset

from tests.integration.dns_support import (
    FakeClock,
    FakeUpstream,
    a_query,
    answer_a,
    make_config,
    replies,
    run,
    start_service,
    udp_query,
)
from totd_faith.endpoints import Endpoint, parse_endpoint


def _address(response: dns.message.Message) -> str:
    assert response.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(response.rcode())
    return str(response.answer[0][0].address)


def _closed_port() -> Endpoint:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return parse_endpoint(f"127.0.0.1:{port}")


async def _silent(query: dns.message.Message, wire: bytes) -> list[bytes]:
    return []


def test_answer_is_forwarded_and_echoes_id_and_question_case():
    async def main() -> None:
        upstream = await FakeUpstream(replies("192.0.2.1")).start()
        service, endpoint = await start_service(make_config([upstream.endpoint]))
        try:
            query = a_query("MiXeD.Example.")
            query.id = 4242
            response = await udp_query(endpoint, query)
            assert response.id == 4242
            assert response.question[0].name.to_text() == "MiXeD.Example."
            assert _address(response) == "192.0.2.1"
            assert response.flags & dns.flags.RD
            # Served from the cache the second time: the fake sees one query only.
            again = a_query("mixed.EXAMPLE.")
            again.id = 7
            cached = await udp_query(endpoint, again)
            assert cached.id == 7
            assert cached.question[0].name.to_text() == "mixed.EXAMPLE."
            assert _address(cached) == "192.0.2.1"
            assert upstream.udp_queries == 1
            assert service.stats.cache_hits == 1
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_dead_upstream_fails_over_then_is_marked_down_and_retried_after_the_interval():
    async def main() -> None:
        clock = FakeClock()
        dead = await FakeUpstream(_silent).start()
        alive = await FakeUpstream(replies("192.0.2.2")).start()
        config = make_config(
            [dead.endpoint, alive.endpoint],
            upstream_timeout=0.1,
            upstream_max_failures=2,
            upstream_retry=30,
        )
        service, endpoint = await start_service(config, clock)
        try:
            for i in range(2):
                assert _address(await udp_query(endpoint, a_query(f"n{i}.example."))) == (
                    "192.0.2.2"
                )
            assert dead.udp_queries == 2
            assert service.stats.upstream_failovers == 2
            assert service.stats.upstream_marked_down == 1
            # Marked down: the next queries go straight to the second upstream.
            for i in range(2, 5):
                await udp_query(endpoint, a_query(f"n{i}.example."))
            assert dead.udp_queries == 2
            assert alive.udp_queries == 5
            # After upstream_retry seconds it is tried again (and fails again).
            clock.now += 31
            await udp_query(endpoint, a_query("n5.example."))
            assert dead.udp_queries == 3
            await udp_query(endpoint, a_query("n6.example."))
            assert dead.udp_queries == 3  # down again at once, for another interval
        finally:
            await service.stop(0)
            dead.close()
            alive.close()

    run(main())


def test_unreachable_upstream_fails_over_without_waiting_for_the_timeout():
    async def main() -> None:
        alive = await FakeUpstream(replies("192.0.2.3")).start()
        config = make_config([_closed_port(), alive.endpoint], upstream_timeout=5)
        service, endpoint = await start_service(config)
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert _address(await udp_query(endpoint, a_query("x.example."))) == "192.0.2.3"
            assert loop.time() - started < 2.0  # ICMP port unreachable, not a 5 s timeout
        finally:
            await service.stop(0)
            alive.close()

    run(main())


def test_recovered_upstream_is_used_again():
    async def main() -> None:
        clock = FakeClock()
        flaky_answers = {"on": False}

        async def flaky(query: dns.message.Message, wire: bytes) -> list[bytes]:
            return [answer_a(query, "192.0.2.10")] if flaky_answers["on"] else []

        first = await FakeUpstream(flaky).start()
        second = await FakeUpstream(replies("192.0.2.20")).start()
        config = make_config(
            [first.endpoint, second.endpoint],
            upstream_timeout=0.1,
            upstream_max_failures=1,
            upstream_retry=10,
        )
        service, endpoint = await start_service(config, clock)
        try:
            assert _address(await udp_query(endpoint, a_query("a.example."))) == "192.0.2.20"
            flaky_answers["on"] = True
            assert _address(await udp_query(endpoint, a_query("b.example."))) == "192.0.2.20"
            clock.now += 11
            assert _address(await udp_query(endpoint, a_query("c.example."))) == "192.0.2.10"
            assert _address(await udp_query(endpoint, a_query("d.example."))) == "192.0.2.10"
        finally:
            await service.stop(0)
            first.close()
            second.close()

    run(main())


def test_slow_upstream_within_and_beyond_the_timeout():
    async def main() -> None:
        delay = {"s": 0.05}

        async def slow(query: dns.message.Message, wire: bytes) -> list[bytes]:
            await asyncio.sleep(delay["s"])
            return [answer_a(query, "192.0.2.4")]

        first = await FakeUpstream(slow).start()
        second = await FakeUpstream(replies("192.0.2.5")).start()
        config = make_config([first.endpoint, second.endpoint], upstream_timeout=0.3)
        service, endpoint = await start_service(config)
        try:
            assert _address(await udp_query(endpoint, a_query("a.example."))) == "192.0.2.4"
            delay["s"] = 0.6
            assert _address(await udp_query(endpoint, a_query("b.example."))) == "192.0.2.5"
            assert service.stats.upstream_failures == 1
        finally:
            await service.stop(0)
            first.close()
            second.close()

    run(main())


def test_garbage_is_ignored_and_the_real_reply_still_accepted():
    async def main() -> None:
        async def noisy(query: dns.message.Message, wire: bytes) -> list[bytes]:
            junk_same_id = wire[:2] + os.urandom(40)
            return [os.urandom(7), os.urandom(300), junk_same_id, answer_a(query, "192.0.2.6")]

        upstream = await FakeUpstream(noisy).start()
        service, endpoint = await start_service(make_config([upstream.endpoint]))
        try:
            assert _address(await udp_query(endpoint, a_query("a.example."))) == "192.0.2.6"
            assert service.stats.upstream_ignored >= 2
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_only_garbage_means_failover():
    async def main() -> None:
        async def garbage(query: dns.message.Message, wire: bytes) -> list[bytes]:
            return [wire[:2] + os.urandom(50), os.urandom(12)]

        first = await FakeUpstream(garbage).start()
        second = await FakeUpstream(replies("192.0.2.7")).start()
        config = make_config([first.endpoint, second.endpoint], upstream_timeout=0.2)
        service, endpoint = await start_service(config)
        try:
            assert _address(await udp_query(endpoint, a_query("a.example."))) == "192.0.2.7"
        finally:
            await service.stop(0)
            first.close()
            second.close()

    run(main())


def test_truncated_reply_is_retried_over_tcp():
    async def main() -> None:
        async def truncated(query: dns.message.Message, wire: bytes) -> list[bytes]:
            response = dns.message.make_response(query)
            response.flags |= dns.flags.TC
            return [response.to_wire()]

        upstream = await FakeUpstream(truncated, tcp_behaviour=replies("192.0.2.8")).start()
        service, endpoint = await start_service(make_config([upstream.endpoint]))
        try:
            response = await udp_query(endpoint, a_query("big.example."))
            assert _address(response) == "192.0.2.8"
            assert not response.flags & dns.flags.TC
            assert upstream.tcp_queries == 1
            assert service.stats.upstream_tcp_retries == 1
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_wrong_id_and_wrong_question_are_ignored():
    async def main() -> None:
        async def confused(query: dns.message.Message, wire: bytes) -> list[bytes]:
            wrong_id = dns.message.from_wire(answer_a(query, "198.51.100.1"))
            wrong_id.id ^= 0x5A5A
            other = dns.message.make_query("other.example.", "A")
            other.id = query.id
            wrong_question = dns.message.make_response(other)
            wrong_question.answer.append(
                dns.rrset.from_text("other.example.", 60, "IN", "A", "198.51.100.2")
            )
            not_a_response = bytearray(answer_a(query, "198.51.100.3"))
            not_a_response[2] &= 0x7F  # QR=0
            return [
                wrong_id.to_wire(),
                wrong_question.to_wire(),
                bytes(not_a_response),
                answer_a(query, "192.0.2.9"),
            ]

        upstream = await FakeUpstream(confused).start()
        service, endpoint = await start_service(make_config([upstream.endpoint]))
        try:
            assert _address(await udp_query(endpoint, a_query("a.example."))) == "192.0.2.9"
            assert service.stats.upstream_ignored == 3
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_reply_from_the_wrong_source_is_ignored():
    async def main() -> None:
        spoofer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        spoofer.bind(("127.0.0.1", 0))

        async def spoofed(query: dns.message.Message, wire: bytes) -> list[bytes]:
            # The right answer, but from another port than the one queried.
            assert first.transport is not None
            return []

        first = await FakeUpstream(spoofed).start()
        original = first._reply_udp

        async def reply_elsewhere(data: bytes, addr: tuple[object, ...]) -> None:
            query = dns.message.from_wire(data)
            spoofer.sendto(answer_a(query, "198.51.100.9"), addr)
            await original(data, addr)

        first._reply_udp = reply_elsewhere  # type: ignore[method-assign]
        second = await FakeUpstream(replies("192.0.2.11")).start()
        config = make_config([first.endpoint, second.endpoint], upstream_timeout=0.2)
        service, endpoint = await start_service(config)
        try:
            assert _address(await udp_query(endpoint, a_query("a.example."))) == "192.0.2.11"
        finally:
            await service.stop(0)
            first.close()
            second.close()
            spoofer.close()

    run(main())


def test_every_upstream_failing_gives_servfail():
    async def main() -> None:
        silent = await FakeUpstream(_silent).start()
        config = make_config([silent.endpoint, _closed_port()], upstream_timeout=0.1)
        service, endpoint = await start_service(config)
        try:
            response = await udp_query(endpoint, a_query("a.example."))
            assert response.rcode() == dns.rcode.SERVFAIL
            # SERVFAIL is not cached: the next query goes upstream again.
            await udp_query(endpoint, a_query("a.example."))
            assert silent.udp_queries == 2
        finally:
            await service.stop(0)
            silent.close()

    run(main())


def test_servfail_moves_on_to_the_next_upstream():
    async def main() -> None:
        async def servfail(query: dns.message.Message, wire: bytes) -> list[bytes]:
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.SERVFAIL)
            return [response.to_wire()]

        first = await FakeUpstream(servfail).start()
        second = await FakeUpstream(replies("192.0.2.12")).start()
        service, endpoint = await start_service(make_config([first.endpoint, second.endpoint]))
        try:
            assert _address(await udp_query(endpoint, a_query("a.example."))) == "192.0.2.12"
            assert first.udp_queries == 1
        finally:
            await service.stop(0)
            first.close()
            second.close()

    run(main())


def test_socket_rotation_under_concurrency_loses_no_query(monkeypatch):
    # Sockets are replaced every few uses; queries that were handed a socket
    # while it was still opening must not find it closed under them.
    from totd_faith import upstream as upstream_module

    monkeypatch.setattr(upstream_module, "SOCKET_USES", 2)

    async def main() -> None:
        upstream = await FakeUpstream(replies("192.0.2.13")).start()
        config = make_config([upstream.endpoint], upstream_timeout=1.0)
        service, endpoint = await start_service(config)
        try:
            responses = await asyncio.gather(
                *(udp_query(endpoint, a_query(f"r{i}.example."), timeout=5) for i in range(300))
            )
            assert all(_address(r) == "192.0.2.13" for r in responses)
            assert service.stats.upstream_failures == 0
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_single_upstream_gets_a_second_try_after_a_lost_datagram():
    async def main() -> None:
        seen = {"n": 0}

        async def lossy(query: dns.message.Message, wire: bytes) -> list[bytes]:
            seen["n"] += 1
            return [] if seen["n"] == 1 else [answer_a(query, "192.0.2.14")]

        upstream = await FakeUpstream(lossy).start()
        service, endpoint = await start_service(
            make_config([upstream.endpoint], upstream_timeout=0.2)
        )
        try:
            assert _address(await udp_query(endpoint, a_query("a.example."))) == "192.0.2.14"
            assert upstream.udp_queries == 2
            assert service.stats.upstream_failures == 1
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_an_upstream_that_restarts_is_used_again_at_once():
    """Its ICMP port unreachable while it is away must not leave a socket that
    is no longer read (uvloop stops watching a descriptor after an error)."""

    async def main() -> None:
        upstream = await FakeUpstream(replies("192.0.2.1")).start()
        port = upstream.endpoint.port
        config = make_config([upstream.endpoint], upstream_timeout=1.0)
        service, endpoint = await start_service(config)
        try:
            assert _address(await udp_query(endpoint, a_query("before.example."))) == "192.0.2.1"
            upstream.close()
            for i in range(4):  # away: refused at once, well before the timeout
                started = time.monotonic()
                response = await udp_query(endpoint, a_query(f"away{i}.example."))
                assert response.rcode() == dns.rcode.SERVFAIL
                assert time.monotonic() - started < 0.9
            upstream = await FakeUpstream(replies("192.0.2.2")).start(port)
            for i in range(20):  # back: every query answered, none waits for a timeout
                started = time.monotonic()
                response = await udp_query(endpoint, a_query(f"back{i}.example."))
                assert _address(response) == "192.0.2.2"
                assert time.monotonic() - started < 0.9
        finally:
            await service.stop(0)
            upstream.close()

    run(main())
