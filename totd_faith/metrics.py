"""Prometheus metrics over HTTP: a collector over the plain stats objects, and its listener.

The DNS proxy and the relay count into :class:`~totd_faith.dnsstats.DnsStats`
and :class:`~totd_faith.relay.stats.RelayStats`, plain integers bumped inline.
Nothing is done per packet for metrics: :class:`StatsCollector` reads those
objects only when Prometheus scrapes.

The HTTP listener is a small asyncio handler on the service's own event loop
rather than prometheus_client's threaded server: the stats are mutated on
that loop without locks, so collecting there gives a consistent snapshot and
can never see a dictionary change size mid-iteration; and closing an asyncio
server frees the port at once on stop.

Metric names follow the Prometheus conventions: the ``totd_faith_`` prefix,
base units in the name (``_bytes``), ``_total`` on counters.  The full list is
in :data:`METRICS` (also used by the tests and the README).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import platform
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import dns.rcode
import dns.rdatatype
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from totd_faith import __version__
from totd_faith.config import Config
from totd_faith.dnsstats import DnsStats
from totd_faith.endpoints import Endpoint, parse_endpoint
from totd_faith.errors import ConfigError, OperatorError
from totd_faith.relay.stats import RelayStats

log = logging.getLogger("totd_faith.metrics")

#: Port when ``metrics.listen`` names only an address.
DEFAULT_PORT = 9164
PATH = "/metrics"

#: Every metric this module exports: name (as exposed), type, labels, help.
METRICS: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("totd_faith_build_info", "gauge", ("version", "python"), "Always 1; labels: the build."),
    # DNS
    ("totd_faith_dns_queries_total", "counter", ("type",), "DNS queries received, by qtype."),
    ("totd_faith_dns_responses_total", "counter", ("rcode",), "DNS responses sent, by rcode."),
    (
        "totd_faith_dns_synthesized_answers_total",
        "counter",
        (),
        "AAAA answers synthesized into a translation prefix (RFC 6147).",
    ),
    ("totd_faith_dns_cache_hits_total", "counter", (), "Answers served from the cache."),
    ("totd_faith_dns_cache_misses_total", "counter", (), "Queries the cache could not answer."),
    (
        "totd_faith_dns_upstream_failures_total",
        "counter",
        (),
        "Upstream attempts that timed out or failed to connect.",
    ),
    (
        "totd_faith_dns_upstream_failovers_total",
        "counter",
        (),
        "Queries moved on to the next upstream.",
    ),
    (
        "totd_faith_dns_upstream_marked_down_total",
        "counter",
        (),
        "Times an upstream was marked down after consecutive failures.",
    ),
    (
        "totd_faith_dns_upstream_ignored_replies_total",
        "counter",
        (),
        "Upstream datagrams that were not the awaited reply (ID, question or source).",
    ),
    (
        "totd_faith_dns_upstream_tcp_retries_total",
        "counter",
        (),
        "Truncated upstream replies retried over TCP.",
    ),
    (
        "totd_faith_dns_upstream_tcp_connections_total",
        "counter",
        (),
        "TCP connections opened to upstreams (each reused for later TCP retries).",
    ),
    (
        "totd_faith_dns_upstream_edns_fallbacks_total",
        "counter",
        (),
        "Queries asked again without EDNS: the upstream answered FORMERR without OPT.",
    ),
    (
        "totd_faith_dns_dropped_queries_total",
        "counter",
        ("reason",),
        "Queries dropped unanswered: malformed (too short, QR set) or overload (in-flight bound).",
    ),
    ("totd_faith_dns_formerr_total", "counter", (), "Queries that could not be parsed."),
    ("totd_faith_dns_errors_total", "counter", (), "Internal errors answering a query."),
    (
        "totd_faith_dns_tcp_connections_total",
        "counter",
        (),
        "DNS TCP connections accepted.",
    ),
    (
        "totd_faith_dns_tcp_connections_rejected_total",
        "counter",
        (),
        "DNS TCP connections refused: every connection was busy at the bound.",
    ),
    (
        "totd_faith_dns_tcp_connections_evicted_total",
        "counter",
        (),
        "Idle DNS TCP connections closed to make room for a new one at the bound.",
    ),
    # relay, TCP
    (
        "totd_faith_relay_connections_accepted_total",
        "counter",
        (),
        "TCP connections accepted by the relay.",
    ),
    ("totd_faith_relay_connections_active", "gauge", (), "Relayed TCP connections open now."),
    (
        "totd_faith_relay_connections_denied_total",
        "counter",
        ("rule",),
        "TCP connections refused before connecting, by the rule or limit that refused them.",
    ),
    (
        "totd_faith_relay_connections_ended_total",
        "counter",
        ("reason",),
        "Relayed TCP connections that ended, by why they ended.",
    ),
    (
        "totd_faith_relay_connections_spliced_total",
        "counter",
        (),
        "Relayed TCP connections carried by the zero-copy splice engine.",
    ),
    (
        "totd_faith_relay_bytes_total",
        "counter",
        ("direction",),
        "TCP payload bytes relayed, by direction (client_to_backend, backend_to_client).",
    ),
    # relay, UDP
    (
        "totd_faith_relay_udp_sessions_created_total",
        "counter",
        (),
        "UDP relay sessions created.",
    ),
    ("totd_faith_relay_udp_sessions_active", "gauge", (), "UDP relay sessions open now."),
    (
        "totd_faith_relay_udp_sessions_denied_total",
        "counter",
        ("rule",),
        "UDP sessions refused, by the rule or limit that refused them.",
    ),
    (
        "totd_faith_relay_udp_datagrams_total",
        "counter",
        ("direction",),
        "UDP datagrams relayed, by direction.",
    ),
    (
        "totd_faith_relay_udp_bytes_total",
        "counter",
        ("direction",),
        "UDP payload bytes relayed, by direction.",
    ),
    (
        "totd_faith_relay_errors_total",
        "counter",
        ("kind",),
        "Unexpected local relay failures (accept errors, socket set-up), by kind.",
    ),
)

_HELP = {name: text for name, _, _, text in METRICS}
TO_BACKEND = "client_to_backend"
TO_CLIENT = "backend_to_client"


def _counter(name: str, value: int) -> CounterMetricFamily:
    return CounterMetricFamily(name, _HELP[name], value=value)


def _labelled(name: str, label: str, values: Mapping[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, _HELP[name], labels=[label])
    for key in sorted(values):
        family.add_metric([key], values[key])
    return family


def _by_text(counts: Mapping[int, int], to_text: Callable[[int], str]) -> dict[str, int]:
    """Numeric keys (qtype, rcode) to their mnemonics; unknown numbers as dnspython spells them."""
    out: dict[str, int] = {}
    for number, count in list(counts.items()):
        text = str(to_text(number))
        out[text] = out.get(text, 0) + count
    return out


class StatsCollector(Collector):
    """Reads the stats objects at scrape time; either may be None (that half is not running)."""

    def __init__(self, dns_stats: DnsStats | None, relay_stats: RelayStats | None) -> None:
        self.dns_stats = dns_stats
        self.relay_stats = relay_stats

    def collect(self) -> Iterable[Metric]:
        info = GaugeMetricFamily(
            "totd_faith_build_info", _HELP["totd_faith_build_info"], labels=["version", "python"]
        )
        info.add_metric([__version__, platform.python_version()], 1)
        yield info
        if self.dns_stats is not None:
            yield from self._dns(self.dns_stats)
        if self.relay_stats is not None:
            yield from self._relay(self.relay_stats)

    def _dns(self, s: DnsStats) -> Iterator[Metric]:
        yield _labelled(
            "totd_faith_dns_queries_total", "type", _by_text(s.queries_by_type, _qtype_text)
        )
        yield _labelled(
            "totd_faith_dns_responses_total", "rcode", _by_text(s.responses_by_rcode, _rcode_text)
        )
        yield _counter("totd_faith_dns_synthesized_answers_total", s.synthesized)
        yield _counter("totd_faith_dns_cache_hits_total", s.cache_hits)
        yield _counter("totd_faith_dns_cache_misses_total", s.cache_misses)
        yield _counter("totd_faith_dns_upstream_failures_total", s.upstream_failures)
        yield _counter("totd_faith_dns_upstream_failovers_total", s.upstream_failovers)
        yield _counter("totd_faith_dns_upstream_marked_down_total", s.upstream_marked_down)
        yield _counter("totd_faith_dns_upstream_ignored_replies_total", s.upstream_ignored)
        yield _counter("totd_faith_dns_upstream_tcp_retries_total", s.upstream_tcp_retries)
        yield _counter("totd_faith_dns_upstream_tcp_connections_total", s.upstream_tcp_connections)
        yield _counter("totd_faith_dns_upstream_edns_fallbacks_total", s.upstream_edns_fallbacks)
        yield _labelled(
            "totd_faith_dns_dropped_queries_total",
            "reason",
            {"malformed": s.dropped, "overload": s.dropped_inflight},
        )
        yield _counter("totd_faith_dns_formerr_total", s.formerr)
        yield _counter("totd_faith_dns_errors_total", s.errors)
        yield _counter("totd_faith_dns_tcp_connections_total", s.tcp_connections)
        yield _counter("totd_faith_dns_tcp_connections_rejected_total", s.tcp_rejected)
        yield _counter("totd_faith_dns_tcp_connections_evicted_total", s.tcp_evicted)

    def _relay(self, s: RelayStats) -> Iterator[Metric]:
        yield _counter("totd_faith_relay_connections_accepted_total", s.connections_accepted)
        yield GaugeMetricFamily(
            "totd_faith_relay_connections_active",
            _HELP["totd_faith_relay_connections_active"],
            value=s.connections_active,
        )
        yield _labelled("totd_faith_relay_connections_denied_total", "rule", s.connections_denied)
        yield _labelled("totd_faith_relay_connections_ended_total", "reason", s.connections_ended)
        yield _counter("totd_faith_relay_connections_spliced_total", s.connections_spliced)
        yield _labelled(
            "totd_faith_relay_bytes_total",
            "direction",
            {TO_BACKEND: s.bytes_client_to_backend, TO_CLIENT: s.bytes_backend_to_client},
        )
        yield _counter("totd_faith_relay_udp_sessions_created_total", s.udp_sessions_created)
        yield GaugeMetricFamily(
            "totd_faith_relay_udp_sessions_active",
            _HELP["totd_faith_relay_udp_sessions_active"],
            value=s.udp_sessions_active,
        )
        yield _labelled("totd_faith_relay_udp_sessions_denied_total", "rule", s.udp_sessions_denied)
        yield _labelled(
            "totd_faith_relay_udp_datagrams_total",
            "direction",
            {
                TO_BACKEND: s.udp_datagrams_client_to_backend,
                TO_CLIENT: s.udp_datagrams_backend_to_client,
            },
        )
        yield _labelled(
            "totd_faith_relay_udp_bytes_total",
            "direction",
            {TO_BACKEND: s.udp_bytes_client_to_backend, TO_CLIENT: s.udp_bytes_backend_to_client},
        )
        yield _labelled("totd_faith_relay_errors_total", "kind", s.errors)


def _qtype_text(number: int) -> str:
    try:
        return dns.rdatatype.to_text(dns.rdatatype.RdataType.make(number))
    except ValueError:
        return str(number)


def _rcode_text(number: int) -> str:
    try:
        return dns.rcode.to_text(dns.rcode.Rcode.make(number))
    except ValueError:
        return str(number)


def make_registry(dns_stats: DnsStats | None, relay_stats: RelayStats | None) -> CollectorRegistry:
    """A private registry (never the global one): our collector plus the standard
    ``process_*`` metrics (CPU, memory, open file descriptors) read from /proc."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(dns_stats, relay_stats))
    ProcessCollector(registry=registry)
    return registry


def metrics_endpoint(config: Config) -> Endpoint | None:
    """``metrics.listen`` as an endpoint (port 9164 when omitted); None when it is empty."""
    text = config.metrics.listen.strip()
    if not text:
        return None
    try:
        return parse_endpoint(text, DEFAULT_PORT)
    except OperatorError as exc:
        raise ConfigError("metrics.listen", str(exc)) from None


# -- the HTTP listener ---------------------------------------------------------------------------

_HEAD_LIMIT = 8192  # bytes of request line plus headers
_READ_TIMEOUT = 10.0  # seconds a client may take to send its request
_MAX_CLIENTS = 32  # connections at once; the oldest is closed to make room


class MetricsService:
    """Serves ``GET /metrics`` on ``endpoint`` (a :class:`~totd_faith.runtime.Service`).

    With ``--workers N`` every worker process has its own counters, so worker
    ``k`` serves its own on port ``endpoint.port + k`` (Prometheus scrapes each
    as a target and ``sum without (instance)`` adds them up).  Sharing one port
    with SO_REUSEPORT would hand each scrape to a random worker and make the
    counters jump.
    """

    name = "metrics"

    def __init__(
        self,
        endpoint: Endpoint,
        dns_stats: DnsStats | None,
        relay_stats: RelayStats | None,
        *,
        worker: int = 0,
    ) -> None:
        self.worker = worker
        #: What metrics.listen says; :attr:`endpoint` is where this worker listens.
        self.configured = endpoint
        self.endpoint = self._for_worker(endpoint)
        self.registry = make_registry(dns_stats, relay_stats)
        self._server: asyncio.AbstractServer | None = None
        # Connections being served, oldest first (a dict keeps insertion order).
        self._clients: dict[asyncio.StreamWriter, None] = {}

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        assert self._server is not None
        # asyncio.Server and uvloop's Server both have .sockets; AbstractServer does not say so.
        sockets: Sequence[socket.socket] = getattr(self._server, "sockets", ())
        return int(sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await self._listen(self.endpoint)
        log.info("metrics: serving Prometheus text on http://%s%s", self.endpoint, PATH)

    def _for_worker(self, endpoint: Endpoint) -> Endpoint:
        if self.worker == 0 or endpoint.port == 0:
            return endpoint
        port = endpoint.port + self.worker
        if port > 65535:
            raise OperatorError(
                f"metrics.listen: {endpoint}: worker {self.worker} would need port {port}"
            )
        return Endpoint(endpoint.host, port)

    async def _listen(self, endpoint: Endpoint) -> asyncio.AbstractServer:
        try:
            return await asyncio.start_server(
                self._handle,
                str(endpoint.host),
                endpoint.port,
                limit=_HEAD_LIMIT,
                reuse_address=True,
            )
        except OSError as exc:
            raise OperatorError(
                f"metrics.listen: cannot listen on {endpoint}: {exc.strerror or exc}"
            ) from None

    async def reload(self, config: Config) -> None:
        """A new ``metrics.listen`` is bound before the old one closes; empty keeps the old."""
        try:
            endpoint = metrics_endpoint(config)
        except ConfigError as exc:
            log.error("%s; metrics stay on %s", exc, self.endpoint)
            return
        if endpoint is None:
            log.warning("metrics.listen is now empty: the listener stops at the next restart")
            return
        if endpoint == self.configured or self._server is None:
            return
        try:
            mine = self._for_worker(endpoint)
            server = await self._listen(mine)
        except OperatorError as exc:
            log.error("%s; metrics stay on %s", exc, self.endpoint)
            return
        old, self._server = self._server, server
        self.configured, self.endpoint = endpoint, mine
        old.close()
        log.info("metrics: now on http://%s%s", mine, PATH)

    async def stop(self, drain_timeout: float) -> None:
        """Close the listener and any scrape in progress; the port is free on return."""
        del drain_timeout  # a scrape is not worth waiting for
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._clients):
            writer.close()
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)

    # -- one request ---------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._clients) >= _MAX_CLIENTS:
            # Full of clients that have not sent their request yet: drop the oldest, so
            # idle connections can never lock Prometheus out.
            oldest = next(iter(self._clients))
            del self._clients[oldest]
            oldest.close()
        self._clients[writer] = None
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT)
            writer.write(self.respond(head))
            await asyncio.wait_for(writer.drain(), _READ_TIMEOUT)
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            TimeoutError,
            ConnectionError,
            ValueError,  # uvloop's StreamReader reports an over-long head this way too
        ):
            pass  # the client went away or sent junk: nothing to answer
        finally:
            self._clients.pop(writer, None)
            writer.close()

    def respond(self, head: bytes) -> bytes:
        """The whole HTTP/1.0-style response to one request head (``Connection: close``)."""
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return _response(400, "Bad Request", b"bad request\n")
        method, target = parts[0], parts[1]
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if method not in ("GET", "HEAD"):
            return _response(405, "Method Not Allowed", b"GET only\n", extra="Allow: GET, HEAD\r\n")
        path = target.split("?", 1)[0]
        if path == "/":
            body = f'totd-faith {__version__}: metrics at <a href="{PATH}">{PATH}</a>\n'.encode()
            return _response(
                200, "OK", body, "text/html; charset=utf-8", head_only=method == "HEAD"
            )
        if path != PATH:
            return _response(404, "Not Found", b"not found; try /metrics\n")
        # Content negotiation: OpenMetrics when the scraper asks for it, else text 0.0.4.
        encoder, content_type = choose_encoder(headers.get("accept", ""))
        return _response(
            200, "OK", encoder(self.registry), content_type, head_only=method == "HEAD"
        )


def _response(
    status: int,
    reason: str,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
    head_only: bool = False,
    extra: str = "",
) -> bytes:
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"{extra}"
        "Connection: close\r\n\r\n"
    ).encode("latin-1")
    return head if head_only else head + body
