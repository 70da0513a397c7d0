"""Random and mutated packets at the UDP and TCP listeners (real DNS64 core, fake
upstream): the server answers or drops, never raises, and keeps serving."""

from __future__ import annotations

import asyncio
import random
import socket
import struct

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
    udp_query,
)
from totd_faith.dns64 import Dns64
from totd_faith.endpoints import Endpoint

BATCHES = 6
PER_BATCH = 500


async def _anything(query: dns.message.Message, wire: bytes) -> list[bytes]:
    response = dns.message.make_response(query)
    question = query.question[0]
    if question.rdtype == dns.rdatatype.A:
        response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", "192.0.2.1"))
    return [response.to_wire()]


def _seed_queries() -> list[bytes]:
    queries = [
        a_query("www.example.", "AAAA"),
        a_query("Www.Example.", "A", use_edns=0, want_dnssec=True),
        a_query("1.0.0.127.in-addr.arpa.", "PTR"),
        a_query("ipv4only.arpa.", "AAAA"),
        a_query("example.", "ANY", use_edns=0, payload=4096),
        a_query("example.", "TXT"),
    ]
    return [q.to_wire() for q in queries]


def _packet(rng: random.Random, seeds: list[bytes]) -> bytes:
    kind = rng.random()
    if kind < 0.3:
        return rng.randbytes(rng.randrange(0, 80))
    data = bytearray(rng.choice(seeds))
    if kind < 0.5:
        # A plausible header (QR=0, one question) in front of random bytes.
        return struct.pack("!HHHHHH", rng.getrandbits(16), 0x0100, 1, 0, 0, rng.randrange(2)) + (
            rng.randbytes(rng.randrange(0, 60))
        )
    for _ in range(rng.randrange(1, 6)):
        position = rng.randrange(len(data))
        choice = rng.random()
        if choice < 0.6:
            data[position] = rng.getrandbits(8)
        elif choice < 0.8:
            del data[position:]
            if not data:
                break
        else:
            data[position:position] = rng.randbytes(rng.randrange(1, 10))
    return bytes(data)


async def _still_answers(endpoint: Endpoint) -> None:
    response = await udp_query(endpoint, a_query("alive.example."), timeout=5)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.answer[0][0].address == "192.0.2.1"


def test_udp_fuzz_keeps_serving():
    async def main() -> None:
        rng = random.Random(6147)
        seeds = _seed_queries()
        upstream = await FakeUpstream(_anything).start()
        service, endpoint = await start_service(make_config([upstream.endpoint]), resolver=Dns64)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            for _ in range(BATCHES):
                for _ in range(PER_BATCH):
                    try:
                        sock.sendto(_packet(rng, seeds), endpoint.sockaddr)
                    except BlockingIOError:
                        await asyncio.sleep(0.01)
                await asyncio.sleep(0)
                await _still_answers(endpoint)
            assert service.stats.errors == 0
            assert service.stats.formerr > 0
            assert service.stats.dropped > 0
        finally:
            sock.close()
            await service.stop(0)
            upstream.close()

    run(main(), timeout=120)


def test_tcp_fuzz_keeps_serving():
    async def main() -> None:
        rng = random.Random(7766)
        seeds = _seed_queries()
        upstream = await FakeUpstream(_anything).start()
        config = make_config([upstream.endpoint], tcp_idle_timeout=1.0)
        service, endpoint = await start_service(config, resolver=Dns64)
        try:
            for _ in range(BATCHES):
                writers = []
                for _ in range(10):
                    reader, writer = await asyncio.open_connection(*endpoint.sockaddr)
                    for _ in range(PER_BATCH // 10):
                        packet = _packet(rng, seeds)
                        if rng.random() < 0.1:
                            # A lying length prefix, or raw bytes with no framing at all.
                            writer.write(rng.randbytes(rng.randrange(1, 40)))
                        else:
                            writer.write(struct.pack("!H", len(packet)) + packet)
                    writers.append(writer)
                    await writer.drain()
                for writer in writers:
                    writer.close()
                await _still_answers(endpoint)
            assert service.stats.errors == 0
        finally:
            await service.stop(0)
            upstream.close()

    run(main(), timeout=120)
