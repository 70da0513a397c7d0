"""Truncated upstream replies asked again over one reused, pipelined TCP
connection per upstream (RFC 7766 sections 6.2.1, 6.2.1.1, 6.2.3, 7)."""

from __future__ import annotations

import asyncio
import ipaddress
import struct
import time
from collections.abc import Callable

import dns.flags
import dns.message
import dns.rcode
import pytest

from tests.integration.dns_support import (
    FakeUpstream,
    a_query,
    answer_a,
    make_config,
    run,
    start_service,
    tcp_exchange,
    udp_query,
)
from tests.support.ports import free_port
from totd_faith import config as config_module
from totd_faith import upstreamtcp
from totd_faith.dnsserver import DnsService
from totd_faith.endpoints import Endpoint, parse_endpoint


async def _truncated(query: dns.message.Message, wire: bytes) -> list[bytes]:
    response = dns.message.make_response(query)
    response.flags |= dns.flags.TC
    return [response.to_wire()]


async def _by_name(query: dns.message.Message, wire: bytes) -> list[bytes]:
    """Over TCP: 192.0.2.N for the name nN.example."""
    label = query.question[0].name.labels[0].decode()
    return [answer_a(query, f"192.0.2.{int(label[1:])}")]


def _address(response: dns.message.Message) -> str:
    assert response.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(response.rcode())
    assert not response.flags & dns.flags.TC
    return str(response.answer[0][0].address)


async def _ask_many(endpoint: Endpoint, names: range) -> list[str]:
    responses = await asyncio.gather(
        *(udp_query(endpoint, a_query(f"n{i}.example.")) for i in names)
    )
    return [_address(r) for r in responses]


def test_concurrent_truncated_replies_share_one_connection():
    async def main() -> None:
        upstream = await FakeUpstream(_truncated, tcp_behaviour=_by_name).start()
        service, endpoint = await start_service(make_config([upstream.endpoint]))
        try:
            got = await _ask_many(endpoint, range(1, 21))
            assert got == [f"192.0.2.{i}" for i in range(1, 21)]
            # Later ones reuse it as well.
            assert await _ask_many(endpoint, range(21, 26)) == [
                f"192.0.2.{i}" for i in range(21, 26)
            ]
            assert upstream.tcp_queries == 25
            assert upstream.tcp_connections == 1
            assert service.stats.upstream_tcp_retries == 25
            assert service.stats.upstream_tcp_connections == 1
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_a_connection_closed_by_the_server_is_replaced_and_the_query_sent_again():
    async def main() -> None:
        upstream = await FakeUpstream(_truncated, tcp_behaviour=_by_name).start()
        # Like a server with a per-connection query limit: one answer, then
        # the next query makes it close the connection without an answer.
        upstream.tcp_close_after = 1
        service, endpoint = await start_service(make_config([upstream.endpoint]))
        try:
            for i in range(1, 6):
                assert await _ask_many(endpoint, range(i, i + 1)) == [f"192.0.2.{i}"]
            # The first connection answers once; every later query finds the
            # connection stale, and is sent again on a new one, transparently.
            assert upstream.tcp_connections == 5
            assert upstream.tcp_queries == 5
            assert service.stats.upstream_failures == 0
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_replies_out_of_order_are_matched_by_id():
    """A server may answer pipelined queries in any order (RFC 7766 section 7)."""

    async def main() -> None:
        udp = await FakeUpstream(_truncated).start()
        assert udp.server is not None
        udp.server.close()  # our own TCP server on the same port instead
        await udp.server.wait_closed()
        connections = 0

        async def reversed_pairs(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            nonlocal connections
            connections += 1
            try:
                while True:
                    pair = []
                    for _ in range(2):
                        size = struct.unpack("!H", await reader.readexactly(2))[0]
                        pair.append(dns.message.from_wire(await reader.readexactly(size)))
                    for query in reversed(pair):
                        wire = (await _by_name(query, b""))[0]
                        writer.write(struct.pack("!H", len(wire)) + wire)
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(reversed_pairs, "127.0.0.1", udp.endpoint.port)
        service, endpoint = await start_service(make_config([udp.endpoint]))
        try:
            assert await _ask_many(endpoint, range(1, 9)) == [f"192.0.2.{i}" for i in range(1, 9)]
            assert connections == 1
        finally:
            await service.stop(0)
            server.close()
            udp.close()

    run(main())


def test_one_unanswered_query_times_out_alone(monkeypatch: pytest.MonkeyPatch):
    async def main() -> None:
        async def silent_for_n1(query: dns.message.Message, wire: bytes) -> list[bytes]:
            if query.question[0].name.labels[0] == b"n1":
                return []
            return await _by_name(query, wire)

        upstream = await FakeUpstream(_truncated, tcp_behaviour=silent_for_n1).start()
        config = make_config([upstream.endpoint], upstream_timeout=0.3)
        service, endpoint = await start_service(config)
        try:
            lost = asyncio.ensure_future(udp_query(endpoint, a_query("n1.example."), timeout=10))
            assert await _ask_many(endpoint, range(2, 6)) == [f"192.0.2.{i}" for i in range(2, 6)]
            # n1 times out on TCP (each try), so the client gets SERVFAIL; the
            # connection keeps serving the others.
            assert (await lost).rcode() == dns.rcode.SERVFAIL
            assert await _ask_many(endpoint, range(6, 8)) == ["192.0.2.6", "192.0.2.7"]
            assert upstream.tcp_connections == 1
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_an_idle_connection_is_closed(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(upstreamtcp, "IDLE_SECONDS", 0.2)

    async def main() -> None:
        upstream = await FakeUpstream(_truncated, tcp_behaviour=_by_name).start()
        service, endpoint = await start_service(make_config([upstream.endpoint]))
        try:
            assert await _ask_many(endpoint, range(1, 3)) == ["192.0.2.1", "192.0.2.2"]
            pool = service.upstreams
            assert pool is not None
            tcp = pool.upstreams[0].tcp
            assert tcp is not None and not tcp.closed
            deadline = time.monotonic() + 5
            while not tcp.closed and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert tcp.closed
            assert pool.upstreams[0].tcp is None
            # The next truncated reply opens a new connection.
            assert await _ask_many(endpoint, range(3, 4)) == ["192.0.2.3"]
            assert upstream.tcp_connections == 2
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_an_upstream_refusing_tcp_fails_the_attempt_quickly():
    async def main() -> None:
        udp = await FakeUpstream(_truncated).start()
        assert udp.server is not None
        udp.server.close()  # nothing listens on TCP
        await udp.server.wait_closed()
        service, endpoint = await start_service(
            make_config([parse_endpoint(str(udp.endpoint))], upstream_timeout=2.0)
        )
        try:
            started = time.monotonic()
            response = await udp_query(endpoint, a_query("n1.example."), timeout=10)
            assert response.rcode() == dns.rcode.SERVFAIL
            # Refused connections fail at once, not at the 2 s timeout per try.
            assert time.monotonic() - started < 2.0
            assert service.stats.upstream_tcp_connections == 2
        finally:
            await service.stop(0)
            udp.close()

    run(main())


def _many_a_zone(names: int, records: int) -> str:
    """``bigN.example.`` with ``records`` A records each: over 1232 bytes, so
    NSD truncates them over UDP."""
    lines = [
        "$TTL 300",
        "@ SOA ns.example. admin.example. 1 3600 600 86400 60",
        "@ NS ns",
        "ns A 192.0.2.53",
    ]
    for n in range(names):
        lines += [f"big{n} A 198.51.100.{i}" for i in range(1, records + 1)]
    return "\n".join(lines) + "\n"


def test_nsd_truncated_answers_come_over_one_connection(nsd: Callable[[dict[str, str]], Endpoint]):
    """With the real NSD: AAAA for names with 100 A records each (synthesized
    into the prefix) need TCP upstream; they all arrive, over one connection."""
    upstream = nsd({"example.": _many_a_zone(6, 100)})

    async def main() -> None:
        config = config_module.from_table(
            {
                "prefixes": ["2001:db8:64::/96"],
                "dns": {"listen": [f"127.0.0.1:{free_port()}"], "upstreams": [str(upstream)]},
            }
        )
        service = DnsService(config)
        await service.start()
        try:
            tcp = next(address for proto, address in service.addresses if proto == "tcp")
            endpoint = Endpoint(ipaddress.ip_address(tcp[0]), tcp[1])
            queries = [dns.message.make_query(f"big{n}.example.", "AAAA") for n in range(6)]
            replies = await tcp_exchange(endpoint, [q.to_wire() for q in queries], expect=6)
            got = {}
            for wire in replies:
                reply = dns.message.from_wire(wire)
                assert reply.rcode() == dns.rcode.NOERROR
                got[reply.question[0].name.to_text()] = {rd.address for rd in reply.answer[0]}
            assert got == {
                f"big{n}.example.": {f"2001:db8:64::c633:64{i:02x}" for i in range(1, 101)}
                for n in range(6)
            }
            assert service.stats.upstream_tcp_retries == 6
            assert service.stats.upstream_tcp_connections == 1
        finally:
            await service.stop(0)

    run(main())
