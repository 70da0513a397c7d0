"""Upstream forwarders: UDP with TCP on TC, timeouts, failover and retry-back.

Upstreams are tried in order of preference.  Each attempt waits
``upstream_timeout``; an upstream that fails ``upstream_max_failures`` times in
a row is skipped for ``upstream_retry`` seconds, then tried again (totd's
``retry``).  When every upstream is down they are all tried anyway: a slow
answer is better than none.

Spoofing resistance (RFC 5452 section 9.2): every query gets a random ID and
goes out from a UDP socket on a kernel-chosen random port; sockets are
connected to the upstream (so the kernel drops datagrams from other sources)
and are replaced after a few uses.  A datagram is accepted only if it comes
from the queried server, carries the ID of a pending query and echoes its
question; anything else is counted and ignored while the query keeps waiting.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import struct
import time
from collections.abc import Callable, Sequence
from typing import cast

import dns.exception
import dns.message
import dns.rcode

from totd_faith.dnsreply import MessageReader
from totd_faith.dnsstats import DnsStats
from totd_faith.dnswire import HEADER_SIZE, render_query, skip_name, walk_response
from totd_faith.endpoints import Endpoint
from totd_faith.errors import WireError

log = logging.getLogger("totd_faith.upstream")

#: Queries sent from one UDP socket before it is replaced by a new random port.
SOCKET_USES = 64
#: UDP sockets kept open per upstream (queries pick one at random).
SOCKETS_PER_UPSTREAM = 4

_LENGTH = struct.Struct("!H")
_TRUNCATED = object()  # a UDP reply with TC set: retry over TCP


_UNREACHABLE_ERRNOS = frozenset((errno.EHOSTUNREACH, errno.ENETUNREACH))


class _Pending:
    __slots__ = ("question", "future", "raw")

    def __init__(self, question: bytes, future: asyncio.Future[object], raw: bool = False) -> None:
        self.question = question
        self.future = future
        #: Hand back the reply bytes (checked by walk_response), not a message.
        self.raw = raw


class _RandomIds:
    """Unpredictable 16-bit numbers for query IDs and socket choice (RFC 5452
    section 9.2), from the OS CSPRNG 4 KiB at a time: ``secrets.randbits``
    makes one getrandom() system call per number, which was ~13 % of a cache
    miss's CPU.  The pool is dropped in forked children (worker processes),
    which must not repeat their parent's numbers."""

    __slots__ = ("pool", "position")

    def __init__(self) -> None:
        self.pool = b""
        self.position = 0
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.pool = b""
        self.position = 0

    def next16(self) -> int:
        position = self.position
        pool = self.pool
        if position + 2 > len(pool):
            pool = self.pool = os.urandom(4096)
            position = 0
        self.position = position + 2
        return (pool[position] << 8) | pool[position + 1]


_random16 = _RandomIds().next16


def _expire(future: asyncio.Future[object]) -> None:
    if not future.done():
        future.set_result(None)


def query_wire(message: dns.message.Message) -> bytes:
    """``message`` in wire form with ID 0 (the ID is patched per attempt).

    The common shape (one question, an OPT without options, nothing else) is
    rendered by :func:`~totd_faith.dnswire.render_query`; anything else by
    dnspython.
    """
    if (
        len(message.question) == 1
        and not message.answer
        and not message.authority
        and not message.additional
        and not message.options
        and message.keyring is None
    ):
        question = message.question[0]
        return render_query(
            0,
            int(message.flags),
            question.name.labels,
            question.rdtype,
            question.rdclass,
            message.edns,
            message.payload,
            int(message.ednsflags),
        )
    message.id = 0
    return message.to_wire()


def reply_matches(data: bytes, qid: int, question: bytes) -> bool:
    """Is ``data`` a response to the query with ``qid`` and (lowercased) ``question``?"""
    return (
        len(data) >= HEADER_SIZE + len(question)
        and ((data[0] << 8) | data[1]) == qid
        and bool(data[2] & 0x80)
        and data[4:6] == b"\x00\x01"
        and data[HEADER_SIZE : HEADER_SIZE + len(question)].lower() == question
    )


class _UdpChannel(asyncio.DatagramProtocol):
    """One connected UDP socket towards one upstream, with its pending queries."""

    def __init__(self, upstream: _Upstream, stats: DnsStats, reader: MessageReader) -> None:
        self.upstream = upstream
        self.stats = stats
        self.reader = reader
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[int, _Pending] = {}
        self.uses = 0
        self.users = 0
        self.retired = False
        self.opening: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        pending = self.pending.get((data[0] << 8) | data[1]) if len(data) >= 2 else None
        if (
            pending is None
            # The socket is connected, so the kernel filters sources; check anyway.
            or addr[0] != self.upstream.host
            or addr[1] != self.upstream.port
            or not reply_matches(data, (data[0] << 8) | data[1], pending.question)
        ):
            self.stats.upstream_ignored += 1
            return
        if data[2] & 0x02:  # TC (RFC 1035 section 4.1.1): the full answer needs TCP
            result: object = _TRUNCATED
        else:
            try:
                if pending.raw:
                    walk_response(data)
                    result = data
                else:
                    result = self.reader.read(data)
            except Exception:  # garbage with a matching ID: keep waiting (RFC 5452 9.1)
                self.stats.upstream_ignored += 1
                return
        del self.pending[(data[0] << 8) | data[1]]
        if not pending.future.done():
            pending.future.set_result(result)

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, ConnectionRefusedError) or (
            isinstance(exc, OSError) and exc.errno in _UNREACHABLE_ERRNOS
        ):
            # ICMP port/host unreachable on a connected socket: the upstream is
            # not there, so fail the waiting queries now instead of at their timeout.
            self._fail_all()
        else:
            # Anything else (e.g. a full send buffer) concerns one datagram; the
            # query it belonged to times out and fails over as usual.
            log.debug("upstream %s: %r", self.upstream.endpoint, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail_all()

    def _fail_all(self) -> None:
        pending, self.pending = self.pending, {}
        for item in pending.values():
            _expire(item.future)

    def new_id(self) -> int:
        while True:
            qid = _random16()
            if qid not in self.pending:
                return qid

    def done_with(self, qid: int | None) -> None:
        """A query handed this channel is finished (None: nobody, just check).

        Counting users, not pending IDs: a query that got the channel while it
        was still opening has no pending ID yet, and must not find it closed.
        """
        if qid is not None:
            self.pending.pop(qid, None)
            self.users -= 1
        if self.retired and self.users <= 0 and self.transport is not None:
            self.transport.close()


class _Upstream:
    """One forwarder and its health."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.host = str(endpoint.host)
        self.port = endpoint.port
        self.failures = 0
        self.down_until = 0.0
        self.channels: list[_UdpChannel | None] = [None] * SOCKETS_PER_UPSTREAM


class UpstreamPool:
    """Sends queries to the configured upstreams and returns the accepted reply."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        *,
        timeout: float,
        max_failures: int,
        retry: float,
        stats: DnsStats,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.upstreams = [_Upstream(e) for e in endpoints]
        self.timeout = timeout
        self.max_failures = max_failures
        self.retry = retry
        self.stats = stats
        self.clock = clock
        self.reader = MessageReader()
        self._closed = False

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return tuple(u.endpoint for u in self.upstreams)

    def is_down(self, endpoint: Endpoint) -> bool:
        now = self.clock()
        return any(u.endpoint == endpoint and u.down_until > now for u in self.upstreams)

    def _order(self) -> list[_Upstream]:
        now = self.clock()
        usable = [u for u in self.upstreams if u.down_until <= now]
        return usable or list(self.upstreams)

    async def query(self, message: dns.message.Message) -> dns.message.Message | None:
        """The reply of the first upstream that answers, or None if all failed.

        SERVFAIL and REFUSED move on to the next upstream too, but are returned
        when nobody does better (DNS64 treats SERVFAIL as "synthesize", RFC 6147
        section 5.1.3, so it must not be swallowed).
        """
        reply = await self._query(query_wire(message), False)
        assert reply is None or isinstance(reply, dns.message.Message)
        return reply

    async def query_bytes(self, wire: bytes) -> bytes | None:
        """:meth:`query` for a query already in wire form (any ID), answered with the
        reply's bytes (for the DNS64 fast path, totd_faith.dns64fast)."""
        reply = await self._query(wire, True)
        assert reply is None or isinstance(reply, bytes)
        return reply

    async def _query(self, wire: bytes, raw: bool) -> dns.message.Message | bytes | None:
        question = wire[HEADER_SIZE : skip_name(wire, HEADER_SIZE) + 4].lower()
        fallback: dns.message.Message | bytes | None = None
        order = self._order()
        if len(order) == 1:
            # With one upstream there is nobody to fail over to: send once more,
            # as a lost UDP datagram is far likelier than a dead server.
            order = order * 2
        for attempt, upstream in enumerate(order):
            if attempt:
                self.stats.upstream_failovers += 1
            reply = await self._ask(upstream, wire, question, raw)
            if reply is None:
                self._failed(upstream)
                continue
            self._succeeded(upstream)
            rcode = reply[3] & 0x0F if isinstance(reply, bytes) else reply.rcode()
            if rcode in (dns.rcode.SERVFAIL, dns.rcode.REFUSED):
                fallback = reply
                continue
            return reply
        return fallback

    def _failed(self, upstream: _Upstream) -> None:
        self.stats.upstream_failures += 1
        upstream.failures += 1
        now = self.clock()
        if upstream.failures >= self.max_failures and upstream.down_until <= now:
            if upstream.down_until == 0.0:
                self.stats.upstream_marked_down += 1
                log.warning(
                    "upstream %s marked down after %d failures; retrying it in %.0f s",
                    upstream.endpoint,
                    upstream.failures,
                    self.retry,
                )
            upstream.down_until = now + self.retry

    def _succeeded(self, upstream: _Upstream) -> None:
        if upstream.down_until:
            log.info("upstream %s answers again", upstream.endpoint)
        upstream.failures = 0
        upstream.down_until = 0.0

    async def _channel(self, upstream: _Upstream) -> _UdpChannel:
        index = _random16() % SOCKETS_PER_UPSTREAM  # a power of two: unbiased
        channel = upstream.channels[index]
        if (
            channel is None
            or channel.uses >= SOCKET_USES
            # Closed under us (a fatal socket error): replace it.
            or (channel.transport is not None and channel.transport.is_closing())
        ):
            if channel is not None:
                channel.retired = True
                channel.done_with(None)
            channel = _UdpChannel(upstream, self.stats, self.reader)
            upstream.channels[index] = channel
            channel.opening = asyncio.ensure_future(self._open(upstream, channel))
        channel.uses += 1
        channel.users += 1
        if channel.transport is None:
            # Opened by this query or a concurrent one; wait for it either way.
            assert channel.opening is not None
            await asyncio.shield(channel.opening)
        return channel

    async def _open(self, upstream: _Upstream, channel: _UdpChannel) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if upstream.endpoint.family_is_v6 else socket.AF_INET
        try:
            await loop.create_datagram_endpoint(
                lambda: channel, remote_addr=upstream.endpoint.sockaddr, family=family
            )
        except OSError:
            upstream.channels = [None if c is channel else c for c in upstream.channels]
            raise

    async def _ask(
        self, upstream: _Upstream, wire: bytes, question: bytes, raw: bool = False
    ) -> dns.message.Message | bytes | None:
        if self._closed:
            return None
        try:
            channel = await self._channel(upstream)
        except OSError as exc:
            log.debug("upstream %s: cannot open a UDP socket: %s", upstream.endpoint, exc)
            return None
        qid = channel.new_id()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[object] = loop.create_future()
        channel.pending[qid] = _Pending(question, future, raw)
        timer = loop.call_later(self.timeout, _expire, future)
        try:
            transport = channel.transport
            if transport is None or transport.is_closing():
                return None
            transport.sendto(_LENGTH.pack(qid) + wire[2:])
            result = await future
        finally:
            timer.cancel()
            channel.done_with(qid)
        if result is _TRUNCATED:
            self.stats.upstream_tcp_retries += 1
            return await self._ask_tcp(upstream, wire, question, raw)
        assert result is None or isinstance(result, dns.message.Message | bytes)
        return result

    async def _ask_tcp(
        self, upstream: _Upstream, wire: bytes, question: bytes, raw: bool = False
    ) -> dns.message.Message | bytes | None:
        """RFC 7766 section 6.2.1: query over TCP, two-byte length prefix."""
        qid = _random16()
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(upstream.host, upstream.port)
                writer.write(_LENGTH.pack(len(wire)) + _LENGTH.pack(qid) + wire[2:])
                while True:
                    size = _LENGTH.unpack(await reader.readexactly(2))[0]
                    data = await reader.readexactly(size)
                    if reply_matches(data, qid, question):
                        try:
                            if raw:
                                walk_response(data)
                                return data
                            return self.reader.read(data)
                        except (dns.exception.DNSException, WireError):
                            pass
                    self.stats.upstream_ignored += 1
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            log.debug("upstream %s over TCP: %r", upstream.endpoint, exc)
            return None
        finally:
            if writer is not None:
                writer.close()

    def close(self) -> None:
        """Stop sending; sockets close once their pending queries are done."""
        self._closed = True
        for upstream in self.upstreams:
            for channel in upstream.channels:
                if channel is not None:
                    channel.retired = True
                    channel.done_with(None)
