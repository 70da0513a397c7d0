"""The metrics collector over given stats objects, read back with prometheus_client's parser.

No sockets: the collector and the HTTP response builder are pure.
"""

from __future__ import annotations

import ipaddress

import dns.rcode
import dns.rdatatype
import pytest
from prometheus_client import generate_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from totd_faith import __version__
from totd_faith.config import load_text
from totd_faith.dnsstats import DnsStats
from totd_faith.endpoints import Endpoint
from totd_faith.errors import ConfigError
from totd_faith.metrics import METRICS, MetricsService, make_registry, metrics_endpoint
from totd_faith.relay.stats import RelayStats

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(dns_stats: DnsStats | None, relay_stats: RelayStats | None) -> tuple[str, Samples]:
    text = generate_latest(make_registry(dns_stats, relay_stats)).decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def busy_dns() -> DnsStats:
    s = DnsStats()
    s.queries_by_type[dns.rdatatype.AAAA] = 7
    s.queries_by_type[dns.rdatatype.A] = 2
    s.queries_by_type[0] = 1  # unreadable question
    s.queries_by_type[65280] = 1  # private use: no mnemonic
    s.responses_by_rcode[dns.rcode.NOERROR] = 8
    s.responses_by_rcode[dns.rcode.NXDOMAIN] = 2
    s.responses_by_rcode[dns.rcode.FORMERR] = 1
    s.synthesized = 5
    s.cache_hits = 3
    s.cache_misses = 6
    s.upstream_failures = 4
    s.upstream_failovers = 2
    s.upstream_marked_down = 1
    s.upstream_ignored = 9
    s.upstream_tcp_retries = 11
    s.upstream_tcp_connections = 3
    s.upstream_edns_fallbacks = 5
    s.dropped = 12
    s.dropped_inflight = 13
    s.formerr = 1
    s.errors = 14
    s.tcp_connections = 15
    s.tcp_rejected = 16
    s.tcp_evicted = 4
    return s


def busy_relay() -> RelayStats:
    s = RelayStats()
    s.connections_accepted = 21
    s.connections_active = 3
    s.connections_denied["relay.rules[2]"] = 4
    s.connections_denied["client not in relay.clients"] = 1
    s.connections_ended["closed"] = 17
    s.connections_ended["backend refused"] = 1
    s.connections_spliced = 10
    s.bytes_client_to_backend = 1000
    s.bytes_backend_to_client = 5_000_000
    s.udp_sessions_created = 6
    s.udp_sessions_active = 2
    s.udp_sessions_denied["max_udp_sessions"] = 3
    s.udp_datagrams_client_to_backend = 30
    s.udp_datagrams_backend_to_client = 29
    s.udp_bytes_client_to_backend = 3000
    s.udp_bytes_backend_to_client = 2900
    s.errors["accept: Too many open files"] = 2
    return s


def test_dns_metrics() -> None:
    _, m = scrape(busy_dns(), None)
    assert value(m, "totd_faith_dns_queries_total", type="AAAA") == 7
    assert value(m, "totd_faith_dns_queries_total", type="A") == 2
    assert value(m, "totd_faith_dns_queries_total", type="TYPE0") == 1
    assert value(m, "totd_faith_dns_queries_total", type="TYPE65280") == 1
    assert value(m, "totd_faith_dns_responses_total", rcode="NOERROR") == 8
    assert value(m, "totd_faith_dns_responses_total", rcode="NXDOMAIN") == 2
    assert value(m, "totd_faith_dns_responses_total", rcode="FORMERR") == 1
    assert value(m, "totd_faith_dns_synthesized_answers_total") == 5
    assert value(m, "totd_faith_dns_cache_hits_total") == 3
    assert value(m, "totd_faith_dns_cache_misses_total") == 6
    assert value(m, "totd_faith_dns_upstream_failures_total") == 4
    assert value(m, "totd_faith_dns_upstream_failovers_total") == 2
    assert value(m, "totd_faith_dns_upstream_marked_down_total") == 1
    assert value(m, "totd_faith_dns_upstream_ignored_replies_total") == 9
    assert value(m, "totd_faith_dns_upstream_tcp_retries_total") == 11
    assert value(m, "totd_faith_dns_upstream_tcp_connections_total") == 3
    assert value(m, "totd_faith_dns_upstream_edns_fallbacks_total") == 5
    assert value(m, "totd_faith_dns_dropped_queries_total", reason="malformed") == 12
    assert value(m, "totd_faith_dns_dropped_queries_total", reason="overload") == 13
    assert value(m, "totd_faith_dns_formerr_total") == 1
    assert value(m, "totd_faith_dns_errors_total") == 14
    assert value(m, "totd_faith_dns_tcp_connections_total") == 15
    assert value(m, "totd_faith_dns_tcp_connections_rejected_total") == 16
    assert value(m, "totd_faith_dns_tcp_connections_evicted_total") == 4
    assert not any(name.startswith("totd_faith_relay_") for name, _ in m)


def test_relay_metrics() -> None:
    _, m = scrape(None, busy_relay())
    assert value(m, "totd_faith_relay_connections_accepted_total") == 21
    assert value(m, "totd_faith_relay_connections_active") == 3
    assert value(m, "totd_faith_relay_connections_denied_total", rule="relay.rules[2]") == 4
    assert (
        value(m, "totd_faith_relay_connections_denied_total", rule="client not in relay.clients")
        == 1
    )
    assert value(m, "totd_faith_relay_connections_ended_total", reason="closed") == 17
    assert value(m, "totd_faith_relay_connections_ended_total", reason="backend refused") == 1
    assert value(m, "totd_faith_relay_connections_spliced_total") == 10
    assert value(m, "totd_faith_relay_bytes_total", direction="client_to_backend") == 1000
    assert value(m, "totd_faith_relay_bytes_total", direction="backend_to_client") == 5_000_000
    assert value(m, "totd_faith_relay_udp_sessions_created_total") == 6
    assert value(m, "totd_faith_relay_udp_sessions_active") == 2
    assert value(m, "totd_faith_relay_udp_sessions_denied_total", rule="max_udp_sessions") == 3
    assert value(m, "totd_faith_relay_udp_datagrams_total", direction="client_to_backend") == 30
    assert value(m, "totd_faith_relay_udp_datagrams_total", direction="backend_to_client") == 29
    assert value(m, "totd_faith_relay_udp_bytes_total", direction="client_to_backend") == 3000
    assert value(m, "totd_faith_relay_udp_bytes_total", direction="backend_to_client") == 2900
    assert value(m, "totd_faith_relay_errors_total", kind="accept: Too many open files") == 2
    assert not any(name.startswith("totd_faith_dns_") for name, _ in m)


def test_build_info_and_process_metrics() -> None:
    _, m = scrape(None, None)
    info = [labels for name, labels in m if name == "totd_faith_build_info"]
    assert len(info) == 1
    assert dict(info[0])["version"] == __version__
    assert value(m, "totd_faith_build_info", **dict(info[0])) == 1
    assert value(m, "process_open_fds") > 0


def test_values_are_read_at_scrape_time() -> None:
    stats = DnsStats()
    registry = make_registry(stats, None)
    assert b"totd_faith_dns_synthesized_answers_total 0.0" in generate_latest(registry)
    stats.synthesized += 3
    stats.queries_by_type[dns.rdatatype.MX] += 1  # a label value that did not exist before
    text = generate_latest(registry)
    assert b"totd_faith_dns_synthesized_answers_total 3.0" in text
    assert b'totd_faith_dns_queries_total{type="MX"} 1.0' in text


def test_label_values_are_escaped() -> None:
    stats = RelayStats()
    stats.connections_ended['odd "reason"\nwith newline\\'] = 1
    _, m = scrape(None, stats)
    assert (
        value(m, "totd_faith_relay_connections_ended_total", reason='odd "reason"\nwith newline\\')
        == 1
    )


def test_metric_list_matches_what_is_exported() -> None:
    """METRICS (the README's list) names every exported family with its type and labels."""
    text, _ = scrape(busy_dns(), busy_relay())
    exported = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith("totd_faith_"):
            name = family.name + ("_total" if family.type == "counter" else "")
            labels = {k for s in family.samples for k in s.labels}
            exported[name] = (family.type, labels)
    documented = {name: (kind, set(labels)) for name, kind, labels, _ in METRICS}
    assert exported == documented
    for name, kind, _, _ in METRICS:
        assert name.startswith("totd_faith_")
        assert name.endswith("_total") == (kind == "counter")


# -- the HTTP response builder (no socket: start() is never called) ---------------------------


def service() -> MetricsService:
    stats = busy_dns()
    return MetricsService(Endpoint(ipaddress.IPv4Address("127.0.0.1"), 9164), stats, None)


def split(response: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status, headers, body


def test_get_metrics() -> None:
    status, headers, body = split(service().respond(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert headers["content-length"] == str(len(body))
    assert headers["connection"] == "close"
    assert b'totd_faith_dns_queries_total{type="AAAA"} 7.0' in body


def test_openmetrics_when_asked() -> None:
    request = (
        b"GET /metrics?x=1 HTTP/1.1\r\n"
        b"Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\r\n"
    )
    status, headers, body = split(service().respond(request))
    assert status == "HTTP/1.1 200 OK"
    assert headers["content-type"].startswith("application/openmetrics-text")
    families = {f.name: f for f in openmetrics_families(body.decode())}
    assert families["totd_faith_dns_synthesized_answers"].samples[0].value == 5
    assert body.endswith(b"# EOF\n")


def test_head_has_no_body() -> None:
    status, headers, body = split(service().respond(b"HEAD /metrics HTTP/1.0\r\n\r\n"))
    assert status == "HTTP/1.1 200 OK" and body == b""
    assert int(headers["content-length"]) > 0


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK"),
        (b"GET /other HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
        (b"POST /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 405 Method Not Allowed"),
        (b"garbage\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (b"GET /metrics SMTP\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (b"\xff\xfe /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 405 Method Not Allowed"),
    ],
)
def test_other_requests(request_head: bytes, status: str) -> None:
    assert split(service().respond(request_head))[0] == status


def test_metrics_endpoint_from_config() -> None:
    assert metrics_endpoint(load_text("")) is None
    assert str(metrics_endpoint(load_text('[metrics]\nlisten = "127.0.0.1"\n'))) == "127.0.0.1:9164"
    assert str(metrics_endpoint(load_text('[metrics]\nlisten = "[::1]:9100"\n'))) == "[::1]:9100"
    with pytest.raises(ConfigError, match=r"^metrics\.listen: "):
        metrics_endpoint(load_text('[metrics]\nlisten = "not an address"\n'))
