"""RFC 5452 section 9.2 against a real loopback UDP upstream: the queries of one
pool carry unpredictable IDs, leave from several source ports, and a socket is
replaced (new port) after SOCKET_USES queries."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import dns.message
import pytest

from tests.integration.dns_support import answer_a, run
from totd_faith import upstream as upstream_module
from totd_faith.dnsstats import DnsStats
from totd_faith.endpoints import Endpoint
from totd_faith.upstream import UpstreamPool

QUERIES = 64


class _Recorder(asyncio.DatagramProtocol):
    """Answers every query and records (source port, ID) of each."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        query = dns.message.from_wire(data)
        self.seen.append((addr[1], query.id))
        assert self.transport is not None
        self.transport.sendto(answer_a(query, "192.0.2.20"), addr)


async def _ask_many(uses: int | None = None) -> list[tuple[int, int]]:
    loop = asyncio.get_running_loop()
    transport, recorder = await loop.create_datagram_endpoint(
        _Recorder, local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    pool = UpstreamPool(
        [Endpoint(ipaddress.ip_address("127.0.0.1"), port)],
        timeout=2.0,
        max_failures=3,
        retry=30.0,
        stats=DnsStats(),
    )
    try:
        messages = [dns.message.make_query(f"n{i}.example.", "A") for i in range(QUERIES)]
        for message in messages:
            message.id = 0  # every query the same ID: the pool must pick its own
        replies = await asyncio.gather(*(pool.query(m) for m in messages))
        assert all(r is not None and r.answer for r in replies)
        return recorder.seen
    finally:
        pool.close()
        transport.close()


def test_query_ids_are_unpredictable_and_sockets_vary() -> None:
    seen = run(_ask_many())
    assert len(seen) == QUERIES
    ids = [qid for _, qid in seen]
    # 64 draws out of 65,536: a few birthday collisions at most, never a counter.
    assert len(set(ids)) >= QUERIES - 4
    assert sorted(ids) != ids
    ports = {port for port, _ in seen}
    # SOCKETS_PER_UPSTREAM sockets, picked at random per query.
    assert 2 <= len(ports) <= upstream_module.SOCKETS_PER_UPSTREAM


def test_sockets_are_replaced_after_socket_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(upstream_module, "SOCKET_USES", 2)
    seen = run(_ask_many())
    ports = {port for port, _ in seen}
    # 64 queries at 2 per socket: at least 32 sockets, each on its own port.
    assert len(ports) >= QUERIES // 2
