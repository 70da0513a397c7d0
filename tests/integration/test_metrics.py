"""The metrics listener on loopback: scraped with urllib and curl, stopped, rebound.

Each test runs on both event loops the program may use (asyncio's and uvloop's,
which runtime.new_event_loop picks when it is installed).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.ports import free_port
from totd_faith import metrics
from totd_faith.config import MetricsConfig, load_text
from totd_faith.dnsstats import DnsStats
from totd_faith.endpoints import Endpoint
from totd_faith.errors import OperatorError
from totd_faith.metrics import MetricsService
from totd_faith.relay.stats import RelayStats
from totd_faith.runtime import new_event_loop

LOOPS = ["asyncio", "uvloop"]


def run(kind: str, test: Callable[[], Awaitable[None]]) -> None:
    loop = asyncio.new_event_loop() if kind == "asyncio" else new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(test(), 30))
    finally:
        loop.close()


def endpoint(host: str = "127.0.0.1", port: int | None = None) -> Endpoint:
    return Endpoint(ipaddress.ip_address(host), port if port is not None else free_port(host))


def url(ep: Endpoint, path: str = "/metrics") -> str:
    return f"http://{ep}{path}"


async def fetch(target: str, **headers: str) -> tuple[int, dict[str, str], str]:
    """GET in a worker thread (urllib blocks); status, headers, body."""

    def get() -> tuple[int, dict[str, str], str]:
        request = urllib.request.Request(target, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode()

    return await asyncio.get_running_loop().run_in_executor(None, get)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def refused(ep: Endpoint) -> bool:
    family = socket.AF_INET6 if ep.host.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)
        try:
            probe.connect(ep.sockaddr)
        except ConnectionRefusedError:
            return True
    return False


def can_listen(ep: Endpoint) -> bool:
    """Whether a server (SO_REUSEADDR, as servers set it) could listen on ``ep`` now."""
    family = socket.AF_INET6 if ep.host.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(ep.sockaddr)
            sock.listen()
        except OSError:
            return False
    return True


@pytest.mark.parametrize("loop", LOOPS)
def test_scrape_reads_live_stats_and_stop_frees_the_port(loop: str) -> None:
    dns_stats, relay_stats = DnsStats(), RelayStats()
    ep = endpoint()

    async def test() -> None:
        service = MetricsService(ep, dns_stats, relay_stats)
        await service.start()
        assert service.port == ep.port
        assert not can_listen(ep)
        status, headers, body = await fetch(url(ep))
        assert status == 200
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
        first = samples(body)
        assert not any(name == "totd_faith_dns_queries_total" for name, _ in first)  # none yet
        assert first[("totd_faith_relay_bytes_total", (("direction", "client_to_backend"),))] == 0

        # The hot path bumps plain integers; the next scrape sees them.
        dns_stats.queries_by_type[28] += 3
        dns_stats.synthesized += 2
        relay_stats.bytes_client_to_backend += 4096
        relay_stats.connections_active = 5
        relay_stats.connections_denied["relay.rules[0]"] += 1
        status, _, body = await fetch(url(ep))
        second = samples(body)
        assert second[("totd_faith_dns_queries_total", (("type", "AAAA"),))] == 3
        assert second[("totd_faith_dns_synthesized_answers_total", ())] == 2
        assert second[("totd_faith_relay_bytes_total", (("direction", "client_to_backend"),))] == (
            4096
        )
        assert second[("totd_faith_relay_connections_active", ())] == 5
        assert second[("totd_faith_relay_connections_denied_total", (("rule", "relay.rules[0]"),))]

        await service.stop(drain_timeout=5)
        assert refused(ep)
        assert can_listen(ep)

    run(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
def test_ipv6_loopback_and_curl(loop: str) -> None:
    ep = endpoint("::1")

    async def test() -> None:
        service = MetricsService(ep, DnsStats(), None)
        await service.start()
        try:
            curl = await asyncio.create_subprocess_exec(
                "curl", "-sS", "--max-time", "5", "-g", url(ep), stdout=subprocess.PIPE
            )
            out, _ = await curl.communicate()
            assert curl.returncode == 0
            names = {f.name for f in text_string_to_metric_families(out.decode())}
            assert {"totd_faith_build_info", "totd_faith_dns_queries"} <= names
            assert not any(name.startswith("totd_faith_relay") for name in names)
            status, _, body = await fetch(url(ep, "/nothing"))
            assert status == 404 and "/metrics" in body
            status, _, body = await fetch(url(ep, "/"))
            assert status == 200 and 'href="/metrics"' in body
        finally:
            await service.stop(drain_timeout=0)
        assert refused(ep)

    run(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
def test_port_in_use_is_an_operator_error(loop: str) -> None:
    async def test() -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            ep = endpoint(port=taken.getsockname()[1])
            with pytest.raises(OperatorError, match=rf"^metrics.listen: cannot listen on {ep}: "):
                await MetricsService(ep, None, None).start()

    run(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
def test_idle_and_junk_clients_neither_block_scrapes_nor_stop(loop: str) -> None:
    ep = endpoint()

    async def test() -> None:
        service = MetricsService(ep, DnsStats(), RelayStats())
        await service.start()
        # More idle connections than the listener keeps: the oldest are closed, not the scraper.
        idle = [
            await asyncio.open_connection(str(ep.host), ep.port)
            for _ in range(metrics._MAX_CLIENTS + 8)
        ]
        # An over-long request head is dropped without an answer.
        reader, writer = await asyncio.open_connection(str(ep.host), ep.port)
        writer.write(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()

        status, _, body = await fetch(url(ep))
        assert status == 200 and "totd_faith_build_info" in body

        started = time.monotonic()
        await service.stop(drain_timeout=10)
        assert time.monotonic() - started < 2  # open connections do not hold stop up
        for idle_reader, idle_writer in idle:
            assert await asyncio.wait_for(idle_reader.read(), 5) == b""
            idle_writer.close()
        assert refused(ep)

    run(loop, test)


@pytest.mark.parametrize("loop", LOOPS)
def test_reload_moves_the_listener(loop: str) -> None:
    old, new = endpoint(), endpoint()

    async def test() -> None:
        service = MetricsService(old, None, RelayStats())
        await service.start()
        await service.reload(load_text(f'[metrics]\nlisten = "{new}"\n'))
        assert service.endpoint == new
        assert refused(old)
        status, _, _ = await fetch(url(new))
        assert status == 200
        # Invalid or emptied settings keep the listener where it is.  (load_text itself
        # rejects "nonsense", so build that configuration past its validation.)
        invalid = dataclasses.replace(load_text(""), metrics=MetricsConfig(listen="nonsense"))
        await service.reload(invalid)
        await service.reload(load_text(""))
        assert (await fetch(url(new)))[0] == 200
        await service.stop(drain_timeout=0)
        assert refused(new)

    run(loop, test)


def test_service_protocol_shape() -> None:
    """What runtime.run calls: name, start, reload, stop."""
    service: Any = MetricsService(endpoint(), None, None)
    assert service.name == "metrics"
    for method in ("start", "reload", "stop"):
        assert asyncio.iscoroutinefunction(getattr(service, method))


def two_free_ports() -> int:
    """A port P with P+1 free too (worker 1 of two listens on P+1)."""
    for _ in range(50):
        port = free_port()
        if port < 65535 and can_listen(endpoint(port=port + 1)):
            return port
    raise RuntimeError("no two consecutive free ports")


@pytest.mark.parametrize("loop", LOOPS)
def test_workers_serve_their_own_counters_on_consecutive_ports(loop: str) -> None:
    base = endpoint(port=two_free_ports())
    stats = [RelayStats(), RelayStats()]
    stats[0].connections_accepted, stats[1].connections_accepted = 11, 22

    async def test() -> None:
        workers = [MetricsService(base, None, s, worker=i) for i, s in enumerate(stats)]
        for service in workers:
            await service.start()
        assert [w.port for w in workers] == [base.port, base.port + 1]
        for service, expected in zip(workers, (11, 22), strict=True):
            _, _, body = await fetch(url(service.endpoint))
            assert samples(body)[("totd_faith_relay_connections_accepted_total", ())] == expected
        # A reload keeps each worker's offset from the new metrics.listen.
        new_base = endpoint(port=two_free_ports())
        for service in workers:
            await service.reload(load_text(f'[metrics]\nlisten = "{new_base}"\n'))
        assert [w.endpoint.port for w in workers] == [new_base.port, new_base.port + 1]
        _, _, body = await fetch(url(workers[1].endpoint))
        assert samples(body)[("totd_faith_relay_connections_accepted_total", ())] == 22
        assert refused(base) and refused(endpoint(port=base.port + 1))
        for service in workers:
            await service.stop(0)

    run(loop, test)


def test_worker_port_past_65535_is_an_operator_error() -> None:
    with pytest.raises(OperatorError, match="worker 2 would need port 65536"):
        MetricsService(endpoint(port=65534), None, None, worker=2)
