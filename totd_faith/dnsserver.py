"""The DNS proxy as a service: start/reload/stop, access memo, and the slow path.

A query takes one of two paths:

* **Fast paths** (no dnspython), in :mod:`totd_faith.dnsudp` (replay of an
  identical query, or a scanned cache hit) and :mod:`totd_faith.dnstcp`
  (scanned cache hit).  Access control holds there too, through
  :meth:`DnsService.classify`, a per-address memo of the core's ``allowed`` /
  ``synthesis_enabled_for``.
* **Slow path** (everything else, :meth:`DnsService.answer`): dnspython parses
  the query, the DNS64 core (:mod:`totd_faith.dns64`) drives the resolution as
  a generator of upstream queries which :class:`~totd_faith.upstream.UpstreamPool`
  answers, and the final response is cached and sent (truncated with TC to
  what a UDP client can take, RFC 1035 section 4.2.1 / RFC 6891 section 7).

Nothing a client sends stops the server: every packet is handled inside its
own ``try``; failures are counted and logged at debug level.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any, Protocol

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from totd_faith.config import Config
from totd_faith.dns64fast import FastAnswer, FastDns64
from totd_faith.dnscache import DnsCache
from totd_faith.dnsmiss import Deliver, Miss, Send, as_deliver
from totd_faith.dnsreply import MessageReader
from totd_faith.dnssockets import listening_socket
from totd_faith.dnsstats import DnsStats
from totd_faith.dnstcp import MAX_MESSAGE, TcpConnection
from totd_faith.dnsudp import REFUSED_CLIENT, UdpListener
from totd_faith.dnswire import (
    HEADER_SIZE,
    TYPE_AAAA,
    QueryHead,
    formerr_for,
    header_response,
    scan_query,
    truncate,
)
from totd_faith.endpoints import Endpoint, IPAddress, loop_listener
from totd_faith.errors import OperatorError
from totd_faith.hostaddrs import own_addresses
from totd_faith.policy import unmap
from totd_faith.upstream import UpstreamPool, query_wire

log = logging.getLogger("totd_faith.dns")

Resolution = Generator[dns.message.QueryMessage, dns.message.Message | None, dns.message.Message]

#: Cache-key bit for "this client gets DNS64 synthesis" (above the dnswire KEY_* bits).
KEY_SYNTH = 8
_MEMO_MAX = 65_536
#: The wire-level DNS64 miss path (totd_faith.dns64fast); an internal switch,
#: not a setting, for measuring against the core alone (TOTD_FAITH_DNS64_FAST=0).
FAST_DNS64 = os.environ.get("TOTD_FAITH_DNS64_FAST", "1") != "0"


class Resolver(Protocol):
    """What the shell needs from the DNS64 core (totd_faith.dns64.Dns64)."""

    def synthesis_enabled_for(self, client: IPAddress) -> bool: ...

    def allowed(self, client: IPAddress) -> bool: ...

    def resolve(self, query: dns.message.Message, client: IPAddress) -> Resolution: ...


ResolverFactory = Callable[[Config, Sequence[Any]], Resolver]


def _default_resolver(config: Config, hosts: Sequence[Any]) -> Resolver:
    from totd_faith.dns64 import Dns64

    return Dns64(config, hosts)


def _read_hosts(config: Config) -> list[Any]:
    if not config.dns.hosts_files:
        return []
    from totd_faith.hosts import read_hosts_files

    entries, warnings = read_hosts_files(config.dns.hosts_files)
    for warning in warnings:
        log.warning("hosts: %s", warning)
    return list(entries)


def upstream_endpoints(config: Config, listening: Sequence[Endpoint] = ()) -> tuple[Endpoint, ...]:
    """The configured upstreams, or the nameservers of /etc/resolv.conf.

    ``listening``: the addresses already being served (on reload they stay the
    old ones until a restart), checked for loops besides ``dns.listen``."""
    if config.dns.upstreams:
        return _not_ourselves(config, config.dns.upstreams, listening)
    from totd_faith.resolvconf import read_resolv_conf

    found, warnings = read_resolv_conf()
    for warning in warnings:
        log.warning("resolv.conf: %s", warning)
    if not found:
        raise OperatorError(
            "no upstream DNS server: /etc/resolv.conf names none; give one with "
            "--upstream ADDR or dns.upstreams in the configuration file"
        )
    return _not_ourselves(config, tuple(found), listening)


def _not_ourselves(
    config: Config, upstreams: tuple[Endpoint, ...], listening: Sequence[Endpoint] = ()
) -> tuple[Endpoint, ...]:
    """Forwarding to our own listener would loop every query until it times out,
    also through a wildcard listener (0.0.0.0:53 with nameserver 127.0.0.1)."""
    listens = (*listening, *config.dns.listen)
    wildcard = any(ipaddress.ip_address(str(e.host)).is_unspecified for e in listens)
    own = own_addresses() if wildcard else frozenset()
    for upstream in upstreams:
        listen = loop_listener(listens, upstream, own)
        if listen is not None:
            raise OperatorError(
                f"upstream {upstream} is also a listen address of this proxy ({listen} "
                "receives it), so queries would loop; point --upstream at a real resolver "
                "(with the default upstreams from /etc/resolv.conf, listen on another "
                "address or port)"
            )
    return upstreams


def _client_address(host: str) -> IPAddress:
    # Link-local IPv6 peers come as "fe80::1%eth0"; the scope is not part of the ACL.
    return unmap(ipaddress.ip_address(host.partition("%")[0]))


class DnsService:
    """The DNS64 proxy as a :class:`totd_faith.runtime.Service`."""

    name = "dns"

    def __init__(
        self,
        config: Config,
        *,
        resolver_factory: ResolverFactory = _default_resolver,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.resolver_factory = resolver_factory
        self.clock = clock
        self.stats = DnsStats()
        self.cache = DnsCache(
            config.dns.cache_size,
            config.dns.cache_max_ttl,
            config.dns.cache_max_negative_ttl,
            config.dns.cache_memory << 20,
        )
        self.memo: dict[str, int] = {}
        self.reader = MessageReader()
        #: Query bytes after the ID -> (answer bytes after the ID, valid until,
        #: client class, qtype, rcode); see totd_faith.dnsudp.
        self.replays: dict[bytes, tuple[bytes, float, int, int, int]] = {}
        self.resolver: Resolver | None = None
        self.fast: FastDns64 | None = None
        self.upstreams: UpstreamPool | None = None
        self.inflight = 0
        self.tcp_clients = 0
        self.log_queries = config.log.queries
        #: (protocol, socket address) of every listener, e.g. ("udp", ("127.0.0.1", 5353)).
        self.addresses: list[tuple[str, tuple[Any, ...]]] = []
        #: The dns.listen addresses bound at start: a reload cannot move them.
        self.listening: tuple[Endpoint, ...] = ()
        self._udp: list[UdpListener] = []
        self._tcp: list[asyncio.base_events.Server] = []
        self._tcp_connections: set[TcpConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        #: Set when the last query in flight is answered, while stopping.
        self._drained: asyncio.Event | None = None

    # -- lifecycle ------------------------------------------------------------

    def _new_upstreams(self, config: Config) -> UpstreamPool:
        return UpstreamPool(
            upstream_endpoints(config, self.listening),
            timeout=config.dns.upstream_timeout,
            max_failures=config.dns.upstream_max_failures,
            retry=config.dns.upstream_retry,
            stats=self.stats,
            clock=self.clock,
        )

    @staticmethod
    def _new_fast(config: Config, hosts: Sequence[Any], resolver: Resolver) -> FastDns64 | None:
        # Only in front of the real core (not a subclass): it mirrors that core's decisions.
        from totd_faith.dns64 import Dns64

        if FAST_DNS64 and type(resolver) is Dns64:
            return FastDns64(config, hosts)
        return None

    async def start(self) -> None:
        config = self.config
        hosts = _read_hosts(config)
        self.resolver = self.resolver_factory(config, hosts)
        self.fast = self._new_fast(config, hosts, self.resolver)
        self.upstreams = self._new_upstreams(config)
        loop = asyncio.get_running_loop()
        sockets: list[tuple[Endpoint, socket.socket, socket.socket]] = []
        try:
            reuse_port = config.service.workers > 1
            for endpoint in config.dns.listen:
                udp = listening_socket(endpoint, socket.SOCK_DGRAM, reuse_port)
                try:
                    # Port 0 (tests): TCP must take the port UDP was given.
                    tcp_endpoint = Endpoint(endpoint.host, udp.getsockname()[1])
                    tcp = listening_socket(tcp_endpoint, socket.SOCK_STREAM, reuse_port)
                except OperatorError:
                    udp.close()
                    raise
                sockets.append((endpoint, udp, tcp))
        except OperatorError:
            for _, udp, tcp in sockets:
                udp.close()
                tcp.close()
            raise
        for _, udp, tcp in sockets:
            listener = UdpListener(self, udp)
            listener.start(loop)
            self._udp.append(listener)
            server = await loop.create_server(lambda: TcpConnection(self), sock=tcp, backlog=1024)
            self._tcp.append(server)
            self.addresses.append(("udp", udp.getsockname()))
            self.addresses.append(("tcp", tcp.getsockname()))
        self.listening = tuple(endpoint for endpoint, _, _ in sockets)
        self._log_settings()

    def _log_settings(self, what: str = "listening on") -> None:
        config = self.config
        dns64 = config.dns64
        assert self.upstreams is not None

        def words(items: Sequence[object]) -> str:
            return " ".join(str(item) for item in items) or "none"

        log.info(
            "dns: %s %s (udp+tcp); upstreams %s; prefixes %s; allow %s; dns64 for %s, "
            "mapped %s, exclude %s, never %s, always %s; "
            "cache %d entries or %d MiB (ttl <= %d s, negative <= %d s); hosts files %s",
            what,
            # The sockets really bound, not dns.listen: after a reload that
            # changed it, the old addresses are served until a restart.
            words(self.listening),
            words(self.upstreams.endpoints),
            words(config.prefixes),
            # An empty set would print as nothing ("allow ;"): say what it means.
            str(config.dns.allow) or "nobody (every client gets REFUSED)",
            str(dns64.clients) or "nobody (no client gets synthesis)",
            words(dns64.mapped),
            words(dns64.exclude),
            words(dns64.never_synthesize),
            words(dns64.always_synthesize),
            config.dns.cache_size,
            config.dns.cache_memory,
            config.dns.cache_max_ttl,
            config.dns.cache_max_negative_ttl,
            words(config.dns.hosts_files),
        )

    async def reload(self, config: Config) -> None:
        """Adopt new upstreams, ACL, prefixes and hosts; listeners need a restart."""
        hosts = _read_hosts(config)
        resolver = self.resolver_factory(config, hosts)
        fast = self._new_fast(config, hosts, resolver)
        upstreams = self._new_upstreams(config)
        if config.dns.listen != self.listening:
            log.warning(
                "dns: new listen addresses take effect only after a restart (dns.listen is "
                "now %s; still listening on %s)",
                " ".join(map(str, config.dns.listen)) or "empty",
                " ".join(map(str, self.listening)),
            )
        old = self.upstreams
        self.config = config
        self.resolver = resolver
        self.fast = fast
        self.upstreams = upstreams
        self.log_queries = config.log.queries
        self.memo.clear()
        self.replays.clear()
        self.cache = DnsCache(
            config.dns.cache_size,
            config.dns.cache_max_ttl,
            config.dns.cache_max_negative_ttl,
            config.dns.cache_memory << 20,
        )
        if old is not None:
            old.close()
        self._log_settings("reloaded; still listening on")

    async def stop(self, drain_timeout: float) -> None:
        loop = asyncio.get_running_loop()
        # Stop taking queries, let those in flight be answered, then close.
        for listener in self._udp:
            listener.stop_reading(loop)
        for server in self._tcp:
            server.close()
        if self.inflight:
            self._drained = asyncio.Event()
            try:
                await asyncio.wait_for(self._drained.wait(), drain_timeout)
            except TimeoutError:
                pass
        for task in list(self._tasks):
            task.cancel()
        for listener in self._udp:
            listener.close(loop)
        for connection in list(self._tcp_connections):
            connection.close()
        if self.upstreams is not None:
            self.upstreams.close()
        self._udp.clear()
        self._tcp.clear()

    # -- shared pieces of both paths ---------------------------------------------

    def classify(self, host: str) -> int:
        """Memoized ACL and synthesis switch for a client: REFUSED_CLIENT, 0 or KEY_SYNTH."""
        assert self.resolver is not None
        try:
            client = _client_address(host)
        except ValueError:
            return REFUSED_CLIENT
        if not self.resolver.allowed(client):
            value = REFUSED_CLIENT
        elif self.resolver.synthesis_enabled_for(client):
            value = KEY_SYNTH
        else:
            value = 0
        if len(self.memo) >= _MEMO_MAX:
            self.memo.clear()
        self.memo[host] = value
        return value

    def cached(self, data: bytes, host: str) -> tuple[bytearray | None, QueryHead | None, int]:
        """The fast path: (answer or None, scanned head or None, client class)."""
        head = scan_query(data)
        if head is None:
            return None, None, REFUSED_CLIENT
        client_class = self.memo.get(host)
        if client_class is None:
            client_class = self.classify(host)
        if client_class < 0:
            return None, head, client_class
        hit = self.cache.get((head[0], head[2] | client_class), self.clock())
        if hit is None:
            return None, head, client_class
        out = bytearray(hit)
        out[0] = data[0]
        out[1] = data[1]
        # RFC 1035 section 4.1.1: RD is copied from the query into the response.
        out[2] = (hit[2] & 0xFE) | (data[2] & 0x01)
        # Echo the question exactly as asked (letter case, RFC 4343 / 0x20 clients).
        out[HEADER_SIZE : head[1]] = data[HEADER_SIZE : head[1]]
        return out, head, client_class

    def count_hit(self, head: QueryHead, out: bytearray, host: str) -> None:
        stats = self.stats
        stats.cache_hits += 1
        stats.queries_by_type[head[4]] += 1
        stats.responses_by_rcode[out[3] & 0x0F] += 1
        if self.log_queries:
            self._log_query(host, out, True)

    def _log_query(self, host: str, wire: bytes | bytearray, hit: bool) -> None:
        try:
            message = dns.message.from_wire(bytes(wire), question_only=True)
            question = message.question[0]
            what = f"{question.name} {dns.rdatatype.to_text(question.rdtype)}"
            rcode = dns.rcode.to_text(message.rcode())
        except (dns.exception.DNSException, IndexError):
            what, rcode = "?", "?"
        log.info("query %s %s -> %s%s", host, what, rcode, " (cache)" if hit else "")

    def spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def admit(self, data: bytes) -> bool:
        """May this packet take the slow path?  Counts what is dropped; on True the
        caller must run :meth:`handle`, which releases the in-flight slot."""
        if len(data) < HEADER_SIZE or data[2] & 0x80:
            # Too short to answer, or a response (answering it invites loops).
            self.stats.dropped += 1
            return False
        if self.inflight >= self.config.dns.max_inflight:
            self.stats.dropped_inflight += 1
            return False
        # Counted from admission, not from when the task first runs, so a burst
        # arriving in one loop iteration is bounded too.
        self.inflight += 1
        return True

    def handle(
        self,
        data: bytes,
        host: str,
        head: QueryHead | None,
        client_class: int,
        limit: int,
        send: Send,
        peer: Any,
    ) -> None:
        """Answer an admitted query (see :meth:`admit`): ``send(peer, wire)`` gets
        the response bytes (None: drop it) exactly once, and the in-flight slot
        is released just before.  For UDP ``send`` is the listener's one bound
        method and ``peer`` the client's address, so that a miss builds no
        callable of its own; for TCP, :func:`~totd_faith.dnsmiss.deliver_to` and
        the connection's callback.  A plain AAAA miss takes the wire-level path
        (totd_faith.dnsmiss); everything else the DNS64 core."""
        fast = self.fast
        if (
            fast is not None
            and head is not None
            and client_class == KEY_SYNTH
            and fast.eligible(data, head)
        ):
            Miss(self, fast, data, host, head, limit, send, peer).start()
        else:
            deliver = as_deliver(send, peer)
            self.spawn(self._core(data, host, head, client_class, limit, None, deliver))

    def fast_answered(self, miss: Miss, answer: FastAnswer) -> None:
        """Count, cache, truncate for a small UDP client and deliver a fast-path answer."""
        stats = self.stats
        wire = answer.wire
        try:
            stats.queries_by_type[TYPE_AAAA] += 1
            stats.cache_misses += 1
            stats.responses_by_rcode[wire[3] & 0x0F] += 1
            if answer.synthesized:
                stats.synthesized += 1
            head = miss.head
            self.cache.put_known(
                # A Miss is only for clients that get synthesis (see handle).
                (head[0], head[2] | KEY_SYNTH),
                wire,
                answer.ttl_offsets,
                answer.ttls,
                answer.negative,
                answer.soa_minimum,
                self.clock(),
            )
            if len(wire) > miss.limit:
                # RFC 1035 section 4.2.1 / RFC 6891 section 7, as on the core path.
                wire = truncate(wire, miss.limit)
            if self.log_queries:
                self._log_query(miss.host, wire, False)
        except Exception:
            stats.errors += 1
            log.debug("dns: failed to finish an answer for %s", miss.host, exc_info=True)
            wire = header_response(miss.data, dns.rcode.SERVFAIL) or b""
        self._release()
        miss.send(miss.peer, wire)

    def to_core(self, miss: Miss, prefetched: dict[bytes, bytes | None]) -> None:
        """Hand a miss the fast path does not handle to the core, with the
        upstream replies already received."""
        self.spawn(
            self._core(
                miss.data,
                miss.host,
                miss.head,
                KEY_SYNTH,
                miss.limit,
                prefetched,
                as_deliver(miss.send, miss.peer),
            )
        )

    async def _core(
        self,
        data: bytes,
        host: str,
        head: QueryHead | None,
        client_class: int,
        limit: int,
        prefetched: dict[bytes, bytes | None] | None,
        deliver: Deliver,
    ) -> None:
        try:
            wire = await self._core_answer(data, host, head, client_class, limit, prefetched)
        except Exception:
            # A bug must cost one query, not the server: answer SERVFAIL.
            self.stats.errors += 1
            log.debug("dns: failed to answer a query from %s", host, exc_info=True)
            wire = header_response(data, dns.rcode.SERVFAIL)
        self._release()
        deliver(wire)

    def _release(self) -> None:
        self.inflight -= 1
        if not self.inflight and self._drained is not None:
            self._drained.set()

    async def _core_answer(
        self,
        data: bytes,
        host: str,
        head: QueryHead | None,
        client_class: int,
        udp_limit: int,
        prefetched: dict[bytes, bytes | None] | None,
    ) -> bytes | None:
        stats = self.stats
        try:
            query = self.reader.read(data)
        except Exception:
            # RFC 1035 section 4.1.1: format error, the server could not interpret the query.
            stats.formerr += 1
            stats.queries_by_type[0] += 1
            formerr = formerr_for(data)
            if formerr is not None:
                stats.responses_by_rcode[dns.rcode.FORMERR] += 1
            return formerr
        stats.queries_by_type[query.question[0].rdtype if query.question else 0] += 1
        if head is not None:
            stats.cache_misses += 1
        # Opcode, question count, EDNS version and ACL are the core's decisions.
        response = await self._resolve(query, host, prefetched)
        # max_size: dnspython would otherwise cap at the request payload and raise.
        wire = response.to_wire(max_size=MAX_MESSAGE, prefer_truncation=True, want_shuffle=False)
        if head is not None and client_class >= 0:
            self.cache.put((head[0], head[2] | client_class), wire, self.clock())
        if len(wire) > udp_limit:
            # RFC 1035 section 4.2.1 / RFC 6891 section 7: what does not fit is
            # cut at an RRset boundary and TC tells the client to ask over TCP.
            wire = truncate(wire, udp_limit)
        stats.responses_by_rcode[response.rcode()] += 1
        if query.question and query.question[0].rdtype == dns.rdatatype.AAAA:
            self._count_synthesized(response)
        if self.log_queries:
            self._log_query(host, wire, False)
        return wire

    async def _resolve(
        self,
        query: dns.message.Message,
        host: str,
        prefetched: dict[bytes, bytes | None] | None = None,
    ) -> dns.message.Message:
        resolver, upstreams = self.resolver, self.upstreams
        assert resolver is not None and upstreams is not None
        resolution = resolver.resolve(query, _client_address(host))
        try:
            outgoing = next(resolution)
            while True:
                reply: dns.message.Message | None
                key = query_wire(outgoing) if prefetched else b""
                if prefetched and key in prefetched:
                    # The fast path already asked exactly this query: reuse its reply.
                    raw = prefetched.pop(key)
                    try:
                        reply = None if raw is None else self.reader.read(raw)
                    except Exception:
                        reply = await upstreams.query(outgoing)
                else:
                    reply = await upstreams.query(outgoing)
                outgoing = resolution.send(reply)
        except StopIteration as done:
            result: dns.message.Message = done.value
            return result

    def _count_synthesized(self, response: dns.message.Message) -> None:
        prefixes = self.config.prefixes
        for rrset in response.answer:
            if rrset.rdtype != dns.rdatatype.AAAA:
                continue
            for rdata in rrset:
                address = ipaddress.IPv6Address(rdata.address)
                if any(address in prefix for prefix in prefixes):
                    self.stats.synthesized += 1
                    return
