"""Counters of the DNS proxy, read by the metrics exporter and the tests.

Plain integers and dictionaries, bumped inline on the hot path (no locks: the
server runs on one event loop).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field


@dataclass(slots=True)
class DnsStats:
    """What the DNS proxy has done since it started."""

    #: Queries received, by numeric qtype (0 when the question could not be read).
    queries_by_type: defaultdict[int, int] = field(default_factory=lambda: defaultdict(int))
    #: Responses sent, by rcode.
    responses_by_rcode: defaultdict[int, int] = field(default_factory=lambda: defaultdict(int))
    cache_hits: int = 0
    cache_misses: int = 0
    #: AAAA answers holding at least one address inside a translation prefix.
    synthesized: int = 0
    #: Upstream attempts that timed out or failed to connect.
    upstream_failures: int = 0
    #: Queries moved on to the next upstream after a failure or an error rcode.
    upstream_failovers: int = 0
    #: Upstreams marked down after too many consecutive failures.
    upstream_marked_down: int = 0
    #: Datagrams from an upstream that were not the awaited reply (wrong ID,
    #: question or source, or unparsable): ignored.
    upstream_ignored: int = 0
    #: Replies with TC that were retried over TCP.
    upstream_tcp_retries: int = 0
    #: TCP connections opened to upstreams (each is reused, see upstreamtcp).
    upstream_tcp_connections: int = 0
    #: Queries asked again without OPT after an upstream answered FORMERR
    #: without OPT: it does not implement EDNS (RFC 6891 sections 6.2.2 and 7).
    upstream_edns_fallbacks: int = 0
    #: Queries dropped: too short, QR set, or over the in-flight bound.
    dropped: int = 0
    dropped_inflight: int = 0
    formerr: int = 0
    #: Unexpected exceptions while handling one packet (logged at debug).
    errors: int = 0
    tcp_connections: int = 0
    tcp_rejected: int = 0
    #: Idle TCP connections closed to make room for a new one at the bound.
    tcp_evicted: int = 0

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            out[name] = dict(value) if isinstance(value, defaultdict) else value
        return out
