"""Metrics over the real services: a DnsService in front of NSD and a RelayService port map,
in one process as ``serve`` runs them, scraped over HTTP while they work.

This checks that the exported names count what they say: queries by type, synthesized
answers, relayed bytes each way, denials by rule, connections ended.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdatatype
from prometheus_client.parser import text_string_to_metric_families

from tests.support.ports import free_port
from totd_faith.config import load_text
from totd_faith.dnsserver import DnsService
from totd_faith.endpoints import Endpoint, parse_endpoint
from totd_faith.metrics import MetricsService, metrics_endpoint
from totd_faith.relay.service import RelayService
from totd_faith.runtime import new_event_loop

DATA = Path(__file__).parents[1] / "integration" / "data"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def run(coroutine: Coroutine[Any, Any, None]) -> None:
    loop = new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(coroutine, 60))
    finally:
        loop.close()


async def scrape(ep: Endpoint) -> Samples:
    def get() -> str:
        with urllib.request.urlopen(f"http://{ep}/metrics", timeout=5) as response:
            body: bytes = response.read()
            return body.decode()

    text = await asyncio.get_running_loop().run_in_executor(None, get)
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def scrape_until(
    ep: Endpoint, done: Callable[[Samples], bool], timeout: float = 5
) -> Samples:
    """Scrape until ``done`` holds (counters a connection bumps after it closes), bounded."""
    deadline = time.monotonic() + timeout
    while True:
        samples = await scrape(ep)
        if done(samples) or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.02)


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


def test_dns_and_relay_counters_over_http(nsd: Callable[[dict[str, str]], Endpoint]) -> None:
    """Three DNS queries (all cache misses), one relayed connection, one denied."""
    upstream = nsd({"example.": (DATA / "dns64-test.zone").read_text()})
    dns_port, relay_port, metrics_port = free_port(), free_port("::1"), free_port()

    async def test() -> None:
        backend = await asyncio.start_server(echo, "127.0.0.1", 0)
        backend_port = backend.sockets[0].getsockname()[1]
        config = load_text(
            'prefixes = ["2001:db8:64::/96"]\n'
            f'[dns]\nlisten = ["127.0.0.1:{dns_port}"]\nupstreams = ["{upstream}"]\n'
            f'[relay]\nmaps = ["[::1]:{relay_port}=127.0.0.1:{backend_port}"]\n'
            "max_connections_per_client = 1\n"
            f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n'
        )
        dns_service = DnsService(config)
        relay_service = RelayService(config)
        endpoint = metrics_endpoint(config)
        assert endpoint is not None
        metrics = MetricsService(endpoint, dns_service.stats, relay_service.stats)
        services = [dns_service, relay_service, metrics]
        for service in services:
            await service.start()
        try:
            server = parse_endpoint(f"127.0.0.1:{dns_port}")
            for name in ("v4only.example.", "dual.example."):
                query = dns.message.make_query(name, dns.rdatatype.AAAA)
                reply = await dns.asyncquery.udp(
                    query, str(server.host), port=server.port, timeout=5
                )
                assert reply.rcode() == dns.rcode.NOERROR
            query = dns.message.make_query("nothing.example.", dns.rdatatype.A)
            await dns.asyncquery.udp(query, str(server.host), port=server.port, timeout=5)

            reader, writer = await asyncio.open_connection("::1", relay_port)
            writer.write(b"x" * 1000)
            assert await reader.readexactly(1000) == b"x" * 1000
            # A second connection from the same client is over max_connections_per_client.
            r2, w2 = await asyncio.open_connection("::1", relay_port)
            assert await asyncio.wait_for(r2.read(), 5) == b""
            w2.close()
            during = await scrape(endpoint)
            writer.close()

            assert during[("totd_faith_dns_cache_misses_total", ())] == 3
            assert during[("totd_faith_dns_responses_total", (("rcode", "NOERROR"),))] == 2
            assert during[("totd_faith_dns_responses_total", (("rcode", "NXDOMAIN"),))] == 1
            # v4only is synthesized (RFC 6147 5.1.6); dual has a real AAAA.
            assert during[("totd_faith_dns_synthesized_answers_total", ())] == 1
            assert during[("totd_faith_relay_connections_accepted_total", ())] >= 1
            assert during[("totd_faith_relay_connections_active", ())] == 1
            denied = {
                labels: v
                for (name, labels), v in during.items()
                if name == "totd_faith_relay_connections_denied_total"
            }
            assert list(denied.values()) == [1], denied
            to_backend = ("totd_faith_relay_bytes_total", (("direction", "client_to_backend"),))
            to_client = ("totd_faith_relay_bytes_total", (("direction", "backend_to_client"),))

            after = await scrape_until(
                endpoint,
                lambda s: (
                    s[("totd_faith_relay_connections_active", ())] == 0
                    and s.get(to_client, 0) == 1000
                ),
            )
            assert after[("totd_faith_relay_connections_active", ())] == 0
            assert after[to_backend] == 1000
            assert after[to_client] == 1000
            ended = sum(
                v
                for (name, _), v in after.items()
                if name == "totd_faith_relay_connections_ended_total"
            )
            assert ended == 1
        finally:
            for service in reversed(services):
                await service.stop(1.0)
            backend.close()

    run(test())


def test_queries_by_type_count_cache_misses(nsd: Callable[[dict[str, str]], Endpoint]) -> None:
    upstream = nsd({"example.": (DATA / "dns64-test.zone").read_text()})
    dns_port, metrics_port = free_port(), free_port()

    async def test() -> None:
        config = load_text(
            f'[dns]\nlisten = ["127.0.0.1:{dns_port}"]\nupstreams = ["{upstream}"]\n'
        )
        dns_service = DnsService(config)
        endpoint = parse_endpoint(f"127.0.0.1:{metrics_port}")
        metrics = MetricsService(endpoint, dns_service.stats, None)
        await dns_service.start()
        await metrics.start()
        try:
            for _ in range(2):  # a miss, then a hit from the cache
                query = dns.message.make_query("v4only.example.", dns.rdatatype.AAAA)
                await dns.asyncquery.udp(query, "127.0.0.1", port=dns_port, timeout=5)
            samples = await scrape(endpoint)
            assert samples[("totd_faith_dns_cache_hits_total", ())] == 1
            assert samples[("totd_faith_dns_queries_total", (("type", "AAAA"),))] == 2
        finally:
            await metrics.stop(0)
            await dns_service.stop(0)

    run(test())
