"""The DNS shell in process (pass-through resolver, fake upstream): UDP/TCP framing,
truncation, EDNS, RD echo, bad input, ACL on the fast path, bounds, TTL countdown."""

from __future__ import annotations

import asyncio
import struct
import time
from dataclasses import replace

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rrset

from tests.integration.dns_support import (
    FakeClock,
    FakeUpstream,
    PassThrough,
    a_query,
    make_config,
    replies,
    run,
    start_service,
    tcp_exchange,
    udp_exchange,
    udp_query,
)


async def _big(query: dns.message.Message, wire: bytes) -> list[bytes]:
    """60 A records: about 1 KB, more than 512 bytes."""
    response = dns.message.make_response(query)
    name = query.question[0].name
    rrset = dns.rrset.from_text_list(
        name, 300, "IN", "A", [f"198.51.100.{i}" for i in range(1, 61)]
    )
    response.answer.append(rrset)
    return [response.to_wire()]


def test_udp_truncates_to_the_client_payload_size_and_tcp_does_not():
    async def main() -> None:
        upstream = await FakeUpstream(_big).start()
        service, endpoint = await start_service(make_config([upstream.endpoint]))
        try:
            for _ in range(2):  # the second time from the cache
                classic = await udp_exchange(endpoint, a_query("big.example.").to_wire())
                assert classic is not None and len(classic) <= 512
                message = dns.message.from_wire(classic)
                assert message.flags & dns.flags.TC
                assert message.edns < 0
                edns = await udp_query(endpoint, a_query("big.example.", use_edns=0, payload=4096))
                assert not edns.flags & dns.flags.TC
                assert len(edns.answer[0]) == 60
                assert edns.edns == 0
            # The classic and the EDNS answer were each resolved once; the
            # repeats (and the truncation) came from the cache.
            assert upstream.udp_queries == 2
            (over_tcp,) = await tcp_exchange(endpoint, [a_query("big.example.").to_wire()], 1)
            message = dns.message.from_wire(over_tcp)
            assert not message.flags & dns.flags.TC
            assert len(message.answer[0]) == 60
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_edns_presence_and_rd_are_echoed_per_query_even_from_the_cache():
    async def main() -> None:
        upstream = await FakeUpstream(replies("192.0.2.1")).start()
        service, endpoint = await start_service(make_config([upstream.endpoint]))
        try:
            with_edns = await udp_query(endpoint, a_query("a.example.", use_edns=0))
            assert with_edns.edns == 0
            without = await udp_query(endpoint, a_query("a.example."))
            assert without.edns < 0
            no_rd = a_query("a.example.")
            no_rd.flags &= ~dns.flags.RD
            hit = await udp_query(endpoint, no_rd)
            assert not hit.flags & dns.flags.RD
            assert hit.answer[0][0].address == "192.0.2.1"
            assert service.stats.cache_hits >= 1
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_cached_ttls_count_down():
    async def main() -> None:
        clock = FakeClock()
        upstream = await FakeUpstream(replies("192.0.2.1")).start()
        service, endpoint = await start_service(make_config([upstream.endpoint]), clock)
        try:
            assert (await udp_query(endpoint, a_query("a.example."))).answer[0].ttl == 300
            clock.now += 100.5
            assert (await udp_query(endpoint, a_query("a.example."))).answer[0].ttl == 200
            clock.now += 200
            assert (await udp_query(endpoint, a_query("a.example."))).answer[0].ttl == 300
            assert upstream.udp_queries == 2
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_bad_input_formerr_and_drops():
    async def main() -> None:
        upstream = await FakeUpstream(replies("192.0.2.1")).start()
        service, endpoint = await start_service(make_config([upstream.endpoint]))
        try:
            # A readable header, then garbage: FORMERR with the client's ID.
            garbage = struct.pack("!HHHHHH", 0xABCD, 0x0100, 1, 0, 0, 0) + b"\x07abc"
            reply = await udp_exchange(endpoint, garbage)
            assert reply is not None
            message = dns.message.from_wire(reply)
            assert message.id == 0xABCD and message.rcode() == dns.rcode.FORMERR
            # Shorter than a header: dropped.  A response (QR=1): dropped.
            assert await udp_exchange(endpoint, b"\x01\x02\x03", timeout=0.3) is None
            response = dns.message.make_response(a_query("a.example.")).to_wire()
            assert await udp_exchange(endpoint, response, timeout=0.3) is None
            assert service.stats.dropped == 2
            assert service.stats.formerr == 1
            # Still serving.
            answer = await udp_query(endpoint, a_query("a.example."))
            assert answer.rcode() == dns.rcode.NOERROR
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_refused_client_is_refused_even_when_the_answer_is_cached():
    class Switchable(PassThrough):
        open = True

        def allowed(self, client: object) -> bool:
            return Switchable.open

    async def main() -> None:
        upstream = await FakeUpstream(replies("192.0.2.1")).start()
        service, endpoint = await start_service(
            make_config([upstream.endpoint]), resolver=Switchable
        )
        try:
            await udp_query(endpoint, a_query("a.example."))
            Switchable.open = False
            service.memo.clear()  # what a reload does
            refused = await udp_query(endpoint, a_query("a.example."))
            assert refused.rcode() == dns.rcode.REFUSED
            assert not refused.answer
            (tcp,) = await tcp_exchange(endpoint, [a_query("a.example.").to_wire()], 1)
            assert dns.message.from_wire(tcp).rcode() == dns.rcode.REFUSED
            assert upstream.udp_queries == 1
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_tcp_pipelined_queries_are_all_answered_and_framed():
    async def main() -> None:
        async def slow_for_some(query: dns.message.Message, wire: bytes) -> list[bytes]:
            if query.question[0].name.labels[0] == b"slow":
                await asyncio.sleep(0.2)
            return await replies("192.0.2.1")(query, wire)

        upstream = await FakeUpstream(slow_for_some).start()
        service, endpoint = await start_service(make_config([upstream.endpoint]))
        try:
            await udp_query(endpoint, a_query("cached.example."))
            queries = [a_query(n) for n in ("slow.example.", "q1.example.", "cached.example.")]
            queries += [a_query(f"p{i}.example.") for i in range(20)]
            for i, query in enumerate(queries):
                query.id = 1000 + i
            replies_ = await tcp_exchange(endpoint, [q.to_wire() for q in queries], len(queries))
            got = {dns.message.from_wire(r).id for r in replies_}
            assert got == {q.id for q in queries}
            # Out of order is allowed (RFC 7766 section 6.2.1.1): the slow one came last.
            assert dns.message.from_wire(replies_[-1]).id == 1000
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_tcp_idle_connections_are_closed_and_clients_bounded():
    async def main() -> None:
        async def slow_for_slow(query: dns.message.Message, wire: bytes) -> list[bytes]:
            if query.question[0].name.labels[0] == b"slow":
                await asyncio.sleep(0.5)
            return await replies("192.0.2.1")(query, wire)

        upstream = await FakeUpstream(slow_for_slow).start()
        config = make_config([upstream.endpoint], tcp_idle_timeout=0.3, tcp_max_clients=1)
        service, endpoint = await start_service(config)
        try:
            # At the bound, an idle connection makes room for a new client.
            reader, writer = await asyncio.open_connection(*endpoint.sockaddr)
            (reply,) = await tcp_exchange(endpoint, [a_query("a.example.").to_wire()], 1)
            assert dns.message.from_wire(reply).rcode() == dns.rcode.NOERROR
            assert await asyncio.wait_for(reader.read(), 2) == b""
            writer.close()
            assert service.stats.tcp_evicted == 1
            # A connection that owes an answer is never evicted: the newcomer is
            # turned away instead, and the busy one still gets its answer.
            reader, writer = await asyncio.open_connection(*endpoint.sockaddr)
            wire = a_query("slow.example.").to_wire()
            writer.write(struct.pack("!H", len(wire)) + wire)
            await writer.drain()
            await asyncio.sleep(0.1)
            reader2, writer2 = await asyncio.open_connection(*endpoint.sockaddr)
            assert await asyncio.wait_for(reader2.read(), 2) == b""
            writer2.close()
            assert service.stats.tcp_rejected == 1
            size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 2))[0]
            answer = dns.message.from_wire(await reader.readexactly(size))
            assert answer.rcode() == dns.rcode.NOERROR
            # Then, idle for 0.3 s, it is closed.
            assert await asyncio.wait_for(reader.read(), 2) == b""
            writer.close()
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_tcp_bytes_without_a_whole_query_do_not_keep_a_connection_open():
    async def main() -> None:
        upstream = await FakeUpstream(replies("192.0.2.1")).start()
        config = make_config([upstream.endpoint], tcp_idle_timeout=0.3)
        service, endpoint = await start_service(config)
        try:
            reader, writer = await asyncio.open_connection(*endpoint.sockaddr)
            writer.write(b"\xff\xff")  # a 65535-byte message announced...
            started = time.monotonic()
            closed = False
            for _ in range(40):  # ...and one byte every 0.05 s, at most 2 s
                try:
                    writer.write(b"x")
                    await writer.drain()
                    closed = await asyncio.wait_for(reader.read(), 0.05) == b""
                except (TimeoutError, ConnectionError):
                    pass
                if closed:
                    break
            assert closed
            assert time.monotonic() - started < 1.5
            writer.close()
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_tcp_client_outside_allow_is_refused_then_closed():
    async def main() -> None:
        upstream = await FakeUpstream(replies("192.0.2.1")).start()
        config = make_config([upstream.endpoint], allow=["192.0.2.0/24"], tcp_idle_timeout=5)
        service, endpoint = await start_service(config)
        try:
            reader, writer = await asyncio.open_connection(*endpoint.sockaddr)
            wire = a_query("a.example.").to_wire()
            writer.write(struct.pack("!H", len(wire)) + wire)
            size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 2))[0]
            answer = dns.message.from_wire(await reader.readexactly(size))
            assert answer.rcode() == dns.rcode.REFUSED
            # Closed at once, not after the 5 s idle timeout.
            assert await asyncio.wait_for(reader.read(), 1) == b""
            writer.close()
            assert upstream.udp_queries == 0
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_tcp_query_over_the_inflight_bound_gets_servfail_not_silence():
    async def main() -> None:
        async def slow(query: dns.message.Message, wire: bytes) -> list[bytes]:
            await asyncio.sleep(0.3)
            return await replies("192.0.2.1")(query, wire)

        upstream = await FakeUpstream(slow).start()
        service, endpoint = await start_service(make_config([upstream.endpoint], max_inflight=1))
        try:
            first, second = a_query("one.example."), a_query("Two.Example.")
            replies_ = await tcp_exchange(endpoint, [first.to_wire(), second.to_wire()], 2)
            answers = {m.id: m for m in map(dns.message.from_wire, replies_)}
            assert answers[first.id].rcode() == dns.rcode.NOERROR
            busy = answers[second.id]
            assert busy.rcode() == dns.rcode.SERVFAIL
            assert busy.question == second.question
            assert busy.question[0].name.to_text() == "Two.Example."
            assert service.stats.dropped_inflight == 1
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_inflight_bound_drops_and_counts():
    async def main() -> None:
        async def slow(query: dns.message.Message, wire: bytes) -> list[bytes]:
            await asyncio.sleep(0.3)
            return await replies("192.0.2.1")(query, wire)

        upstream = await FakeUpstream(slow).start()
        service, endpoint = await start_service(make_config([upstream.endpoint], max_inflight=2))
        try:
            results = await asyncio.gather(
                *(
                    udp_exchange(endpoint, a_query(f"n{i}.example.").to_wire(), 1.5)
                    for i in range(6)
                )
            )
            answered = [r for r in results if r is not None]
            assert len(answered) == 2
            assert service.stats.dropped_inflight == 4
            assert service.inflight == 0
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_reload_adopts_a_new_inflight_bound():
    async def main() -> None:
        async def slow(query: dns.message.Message, wire: bytes) -> list[bytes]:
            await asyncio.sleep(0.3)
            return await replies("192.0.2.1")(query, wire)

        upstream = await FakeUpstream(slow).start()
        config = make_config([upstream.endpoint], max_inflight=100)
        service, endpoint = await start_service(config)
        try:
            await service.reload(replace(config, dns=replace(config.dns, max_inflight=1)))
            # Both the scanned path (EDNS) and the other one (an empty question
            # section is not plain) are held to the new bound.
            slow_ones = [
                asyncio.ensure_future(
                    udp_exchange(endpoint, a_query(f"n{i}.example.", use_edns=0).to_wire(), 1.5)
                )
                for i in range(3)
            ]
            deadline = asyncio.get_running_loop().time() + 1.0
            while service.stats.dropped_inflight < 2:
                assert asyncio.get_running_loop().time() < deadline, "queries not dropped"
                await asyncio.sleep(0.01)
            assert service.inflight == 1
            empty = a_query("x.example.")
            empty.question = []
            assert await udp_exchange(endpoint, empty.to_wire(), 0.3) is None
            results = await asyncio.gather(*slow_ones)
            assert len([r for r in results if r is not None]) == 1
            assert service.stats.dropped_inflight == 3
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_resolver_crash_costs_one_servfail_not_the_server():
    class Crashing(PassThrough):
        def resolve(self, query, client):  # type: ignore[no-untyped-def]
            if query.question[0].name.labels[0] == b"boom":
                raise RuntimeError("bug")
            return super().resolve(query, client)

    async def main() -> None:
        upstream = await FakeUpstream(replies("192.0.2.1")).start()
        service, endpoint = await start_service(make_config([upstream.endpoint]), resolver=Crashing)
        try:
            query = a_query("boom.example.")
            failed = await udp_query(endpoint, query)
            assert failed.id == query.id and failed.rcode() == dns.rcode.SERVFAIL
            assert service.stats.errors == 1
            ok = await udp_query(endpoint, a_query("fine.example."))
            assert ok.rcode() == dns.rcode.NOERROR
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_reload_adopts_new_upstreams_and_clears_the_cache():
    async def main() -> None:
        first = await FakeUpstream(replies("192.0.2.1")).start()
        second = await FakeUpstream(replies("192.0.2.2")).start()
        config = make_config([first.endpoint])
        service, endpoint = await start_service(config)
        try:
            assert (await udp_query(endpoint, a_query("a.example."))).answer[0][0].address == (
                "192.0.2.1"
            )
            new = make_config([second.endpoint])
            new = type(new)(
                prefixes=new.prefixes,
                dns=type(new.dns)(listen=config.dns.listen, upstreams=new.dns.upstreams),
            )
            await service.reload(new)
            assert (await udp_query(endpoint, a_query("a.example."))).answer[0][0].address == (
                "192.0.2.2"
            )
        finally:
            await service.stop(0)
            first.close()
            second.close()

    run(main())


def test_repeated_identical_queries_are_replayed_with_their_own_ids():
    async def main() -> None:
        upstream = await FakeUpstream(replies("192.0.2.1")).start()
        service, endpoint = await start_service(make_config([upstream.endpoint]))
        try:
            wire = bytearray(a_query("Replay.Example.", use_edns=0).to_wire())
            for qid in (1, 2, 3, 0xFFFF):
                wire[0:2] = qid.to_bytes(2, "big")
                data = await udp_exchange(endpoint, bytes(wire))
                assert data is not None
                response = dns.message.from_wire(data)
                assert response.id == qid
                assert response.question[0].name.to_text() == "Replay.Example."
                assert response.answer[0][0].address == "192.0.2.1"
            assert upstream.udp_queries == 1
            assert service.stats.cache_hits == 3
            assert len(service.replays) == 1
            # Replayed hits are counted like any other query.
            assert service.stats.queries_by_type[1] == 4
            assert service.stats.responses_by_rcode[0] == 4
            # Another letter case is another byte string: the scan path answers it.
            other = await udp_query(endpoint, a_query("REPLAY.example.", use_edns=0))
            assert other.question[0].name.to_text() == "REPLAY.example."
            assert len(service.replays) == 2
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_stop_answers_queries_in_flight_before_closing():
    async def main() -> None:
        async def slow(query: dns.message.Message, wire: bytes) -> list[bytes]:
            await asyncio.sleep(0.3)
            return await replies("192.0.2.1")(query, wire)

        upstream = await FakeUpstream(slow).start()
        service, endpoint = await start_service(make_config([upstream.endpoint]))
        try:
            pending = asyncio.ensure_future(udp_query(endpoint, a_query("late.example.")))
            while service.inflight == 0:
                await asyncio.sleep(0.01)
            await service.stop(5)
            response = await pending
            assert response.answer[0][0].address == "192.0.2.1"
            # Stopped: nothing answers any more.
            assert await udp_exchange(endpoint, a_query("x.example.").to_wire(), 0.3) is None
        finally:
            upstream.close()

    run(main())
