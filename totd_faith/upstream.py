"""Upstream forwarders: UDP with TCP on TC, timeouts, failover and retry-back.

Upstreams are tried in order of preference.  Each attempt waits
``upstream_timeout``; an upstream that fails ``upstream_max_failures`` times in
a row is skipped for ``upstream_retry`` seconds, then tried again (totd's
``retry``).  When every upstream is down they are all tried anyway: a slow
answer is better than none.

Spoofing resistance (RFC 5452 section 9.2): every query gets a random ID and
goes out from a UDP socket on a kernel-chosen random port; sockets are
connected to the upstream (so the kernel drops datagrams from other sources)
and are replaced after a few uses.  A datagram is accepted only if it carries
the ID of a pending query, echoes its question and passes the caller's check;
anything else is counted and ignored while the query keeps waiting.

The engine is callback-driven, because a cache miss is the proxy's most
frequent expensive event: :meth:`UpstreamPool.ask` starts a query and calls
back once with the result.  There is no task, future or timer per query: the
UDP sockets are read directly with ``add_reader`` (drained per wake-up), the
queries asked during one turn of the loop leave together at its end and share
one deadline, and one timer per pool walks the queue of those batches (every
attempt has the same timeout, so the queue is in deadline order).

Queries carry EDNS.  An upstream that answers FORMERR without OPT does not
implement it (RFC 6891 section 7): the question goes to it again without OPT,
and so do its next queries for ``upstream_retry`` seconds (section 6.2.2; see
:mod:`totd_faith.upstreamedns`).  Any other FORMERR says the upstream could not
read our query, which tells nothing about the client's question: the next
upstream is asked, and the client gets SERVFAIL if nobody does better.
:meth:`UpstreamPool.query` is the awaitable form, for the DNS64 core.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import struct
import time
from array import array
from collections import deque
from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any

import dns.message
import dns.rcode

from totd_faith.dnsreply import MessageReader
from totd_faith.dnsstats import DnsStats
from totd_faith.dnswire import HEADER_SIZE, render_query, skip_name
from totd_faith.endpoints import Endpoint
from totd_faith.upstreamedns import bare_formerr, edns_unsupported, without_opt
from totd_faith.upstreamtcp import TcpChannel

log = logging.getLogger("totd_faith.upstream")

#: Queries sent from one UDP socket before it is replaced by a new random port.
SOCKET_USES = 64
#: UDP sockets kept open per upstream (queries pick one at random).
SOCKETS_PER_UPSTREAM = 4
#: Datagrams read per wake-up of an upstream socket.
_BATCH = 64
_RECV_SIZE = 65_535

_LENGTH = struct.Struct("!H")
_ID_BYTES = [_LENGTH.pack(i) for i in range(65_536)]

_UNREACHABLE_ERRNOS = frozenset((errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH))
_FORMERR = int(dns.rcode.FORMERR)
#: Rcodes that move a query on to the next upstream (see UpstreamPool.answered).
_NOT_ANSWERS = frozenset((int(dns.rcode.SERVFAIL), int(dns.rcode.REFUSED), _FORMERR))

#: Turns an accepted reply's bytes into what the caller wants (a message, the
#: bytes, a walked reply...); raising means "garbage": ignored, keep waiting
#: (RFC 5452 section 9.1).
ReplyCheck = Callable[[bytes], Any]
#: Called once per :meth:`UpstreamPool.ask` with the checked reply, or None
#: when every attempt failed.
ReplyCallback = Callable[[Any], None]


def _random_source() -> Callable[[], int]:
    """Unpredictable 32-bit numbers for query IDs and socket choice (RFC 5452
    section 9.2), from the OS CSPRNG 4 KiB at a time: ``secrets.randbits``
    makes one getrandom() system call per number, which was ~13 % of a cache
    miss's CPU.  The numbers come out of a C iterator, so a draw costs no
    Python call."""
    blocks = iter(lambda: array("I", os.urandom(4096)), None)
    return chain.from_iterable(blocks).__next__


def _reseed() -> None:
    # Forked children (worker processes) must not repeat their parent's numbers.
    global _random32
    _random32 = _random_source()


_random32 = _random_source()
os.register_at_fork(after_in_child=_reseed)
assert array("I").itemsize >= 4, "the draw splits 32 bits into an ID and a socket index"


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
        len(data) >= HEADER_SIZE and ((data[0] << 8) | data[1]) == qid and _echoes(data, question)
    )


def _echoes(data: bytes, question: bytes) -> bool:
    """Is ``data``, at least a header long, a response (QR) with one question,
    ``question`` (lowercased) in any letter case (RFC 5452 section 9.1)?"""
    return (
        data[2] >= 0x80
        and data[4] == 0
        and data[5] == 1
        # The name usually comes back in the case it was sent in, mostly lower.
        and (
            data.startswith(question, HEADER_SIZE)
            or data[HEADER_SIZE : HEADER_SIZE + len(question)].lower() == question
        )
    )


def _retire_opened(task: asyncio.Task[TcpChannel]) -> None:
    """A TCP connection that was being opened when the pool closed: close it
    once its queries are answered."""
    if not task.cancelled() and task.exception() is None:
        task.result().retire()


def _finished(batch: list[_Ask]) -> bool:
    """Are all the queries of a batch answered or failed?"""
    for ask in batch:
        if ask.channel is not None:
            return False
    return True


class _Ask:
    """One question on its way through the upstreams (all attempts)."""

    __slots__ = (
        "wire",
        "edns_wire",
        "question",
        "check",
        "callback",
        "order",
        "attempt",
        "fallback",
        "channel",
        "qid",
        "deadline",
    )

    def __init__(
        self,
        wire: bytes,
        question: bytes,
        check: ReplyCheck,
        callback: ReplyCallback,
        order: list[_Upstream],
    ) -> None:
        #: What goes to the current upstream: the query asked, or it without
        #: OPT for an upstream without EDNS (then ``edns_wire`` keeps the query).
        self.wire = wire
        self.edns_wire: bytes | None = None
        self.question = question
        self.check = check
        self.callback = callback
        self.order = order
        self.attempt = 0
        #: A SERVFAIL or REFUSED reply, returned if nobody does better.
        self.fallback: Any = None
        #: Where the current UDP attempt waits (None: no UDP attempt pending).
        self.channel: _UdpChannel | None = None
        self.qid = 0
        #: When the current UDP attempt times out (0: not sent yet, see _flush).
        self.deadline = 0.0


class _UdpChannel:
    """One connected, non-blocking UDP socket towards one upstream."""

    __slots__ = ("pool", "upstream", "sock", "fd", "pending", "uses", "retired", "closed")

    def __init__(self, pool: UpstreamPool, upstream: _Upstream) -> None:
        self.pool = pool
        self.upstream = upstream
        family = socket.AF_INET6 if upstream.endpoint.family_is_v6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
        try:
            sock.connect(upstream.endpoint.sockaddr)
            pool.loop.add_reader(sock.fileno(), self._readable)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.fd = sock.fileno()
        self.pending: dict[int, _Ask] = {}
        self.uses = 0
        self.retired = False
        self.closed = False

    def _readable(self) -> None:
        recv = self.sock.recv
        pending = self.pending
        pool = self.pool
        stats = pool.stats
        for _ in range(_BATCH):
            try:
                data = recv(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.error(exc)
                return
            qid = (data[0] << 8) | data[1] if len(data) >= HEADER_SIZE else -1
            ask = pending.get(qid)
            if ask is None or not _echoes(data, ask.question):
                if ask is None or not bare_formerr(data):
                    stats.upstream_ignored += 1
                    continue
                result = None  # only ever used as a FORMERR (see bare_formerr)
            else:
                if data[2] & 0x02:  # TC (RFC 1035 section 4.1.1): the full answer needs TCP
                    del pending[qid]
                    ask.channel = None
                    self.release()
                    pool.retry_over_tcp(ask)
                    continue
                try:
                    result = ask.check(data)
                except Exception:  # garbage with a matching ID: keep waiting (RFC 5452 9.1)
                    stats.upstream_ignored += 1
                    continue
            del pending[qid]
            ask.channel = None
            if self.retired:
                self.release()
            pool.answered(ask, data[3] & 0x0F, result, data)

    def error(self, exc: OSError) -> None:
        if exc.errno in _UNREACHABLE_ERRNOS:
            # ICMP port/host unreachable on a connected socket: the upstream is
            # not there, so fail the waiting queries now instead of at their
            # timeout, and leave this socket: the next query gets a new one.
            self.retired = True
            self.fail_all()
            return
        # Anything else (e.g. a full buffer) concerns one datagram; the query it
        # belonged to times out and fails over as usual.
        log.debug("upstream %s: %r", self.upstream.endpoint, exc)
        if not self.closed:
            # uvloop stops watching a descriptor once it has reported an error
            # on it, so the replies still awaited here would never be read.
            loop = self.pool.loop
            loop.remove_reader(self.fd)
            loop.add_reader(self.fd, self._readable)

    def fail_all(self) -> None:
        pending, self.pending = self.pending, {}
        for ask in pending.values():
            ask.channel = None
        for ask in pending.values():
            self.pool.failed_attempt(ask)
        self.release()

    def release(self) -> None:
        """Close a retired socket once nobody waits on it."""
        if self.retired and not self.pending and not self.closed:
            self.closed = True
            self.pool.loop.remove_reader(self.fd)
            self.sock.close()


class _Upstream:
    """One forwarder and its health."""

    # Slots: these attributes are read for every query sent.
    __slots__ = (
        "endpoint",
        "host",
        "port",
        "failures",
        "down_until",
        "no_edns_until",
        "edns_missing",
        "channels",
        "tcp",
        "tcp_opening",
    )

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.host = str(endpoint.host)
        self.port = endpoint.port
        self.failures = 0
        self.down_until = 0.0
        #: Until when queries go without OPT (0: with OPT; RFC 6891 section 6.2.2).
        self.no_edns_until = 0.0
        #: Has it ever answered as an upstream without EDNS? (Logged once at info.)
        self.edns_missing = False
        self.channels: list[_UdpChannel | None] = [None] * SOCKETS_PER_UPSTREAM
        #: The TCP connection for truncated replies (see upstreamtcp), and its
        #: connection attempt while there is none.
        self.tcp: TcpChannel | None = None
        self.tcp_opening: asyncio.Task[TcpChannel] | None = None

    def tcp_opened(self, task: asyncio.Task[TcpChannel]) -> None:
        self.tcp_opening = None
        if not task.cancelled() and task.exception() is None:
            self.tcp = task.result()

    def tcp_closed(self, channel: TcpChannel) -> None:
        if self.tcp is channel:
            self.tcp = None


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
        self._loop: asyncio.AbstractEventLoop | None = None
        #: The queries sent by each _flush, with their deadline, in deadline order.
        self._deadlines: deque[tuple[float, list[_Ask]]] = deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self._tcp_tasks: set[asyncio.Task[None]] = set()
        #: Queries waiting for the end of this turn of the loop (see _flush).
        self._outbox: list[_Ask] = []
        #: The current order of upstreams (see _ordered), and when it expires (0: never).
        self._order: list[_Upstream] | None = None
        self._order_until = 0.0

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return tuple(u.endpoint for u in self.upstreams)

    def is_down(self, endpoint: Endpoint) -> bool:
        now = self.clock()
        return any(u.endpoint == endpoint and u.down_until > now for u in self.upstreams)

    def _ordered(self) -> list[_Upstream]:
        """The upstreams to try, in order: those not marked down (all if none is up).

        Shared by queries (never modified) and recomputed only when an upstream
        is marked down or up, or a down upstream's retry time has come.
        """
        order = self._order
        if order is None or (self._order_until and self.clock() >= self._order_until):
            now = self.clock()
            usable = [u for u in self.upstreams if u.down_until <= now]
            order = usable or list(self.upstreams)
            if len(order) == 1:
                # With one upstream there is nobody to fail over to: send once more,
                # as a lost UDP datagram is far likelier than a dead server.
                order = order * 2
            self._order = order
            self._order_until = min(
                (u.down_until for u in self.upstreams if u.down_until > now), default=0.0
            )
        return order

    # -- the callback engine -------------------------------------------------------

    def ask(
        self, wire: bytes, check: ReplyCheck, callback: ReplyCallback, question: bytes = b""
    ) -> None:
        """Send the query ``wire`` (any ID) and call ``callback`` once, later, with
        ``check(reply)`` of the first good reply, or None if all attempts failed.

        SERVFAIL and REFUSED move on to the next upstream too, but are returned
        when nobody does better (DNS64 treats SERVFAIL as "synthesize", RFC 6147
        section 5.1.3, so it must not be swallowed).  FORMERR moves on and is
        never returned (see :meth:`_formerr`).  ``question``, if the caller
        has it, is the question of ``wire`` with the name lowercased.
        """
        if not question:
            question = wire[HEADER_SIZE : skip_name(wire, HEADER_SIZE) + 4].lower()
        order = self._order
        if order is None or self._order_until:
            order = self._ordered()
        ask = _Ask(wire, question, check, callback, order)
        if self._closed:
            self.loop.call_soon(callback, None)
            return
        self._send(ask)

    def _send(self, ask: _Ask) -> None:
        """Start attempt number ``ask.attempt`` over UDP."""
        upstream = ask.order[ask.attempt]
        if upstream.no_edns_until:
            self._without_edns(ask, upstream)
        # RFC 5452 section 9.2: an unpredictable socket (source port) and ID, from
        # one draw: the high half picks the socket, the low half is the ID.
        bits = _random32()
        index = (bits >> 16) % SOCKETS_PER_UPSTREAM  # a power of two: unbiased
        channel = upstream.channels[index]
        if channel is None or channel.uses >= SOCKET_USES or channel.retired:
            try:
                channel = self._replace_channel(upstream, index)
            except OSError as exc:
                log.debug("upstream %s: cannot open a UDP socket: %s", upstream.endpoint, exc)
                # Not from inside ask(): the caller must not be called back re-entrantly.
                self.loop.call_soon(self.failed_attempt, ask)
                return
        channel.uses += 1
        pending = channel.pending
        qid = bits & 0xFFFF
        while qid in pending:
            qid = _random32() & 0xFFFF
        pending[qid] = ask
        ask.channel = channel
        ask.qid = qid
        outbox = self._outbox
        outbox.append(ask)
        if len(outbox) == 1:
            (self._loop or self.loop).call_soon(self._flush)

    def _flush(self) -> None:
        """Send the queries queued during this turn of the event loop, back to back.

        Sending them together rather than each between the Python work of the
        next reply or query wakes the upstream once per batch, not once per
        query: on a loopback or a VM each wake-up is a costly inter-processor
        interrupt, paid by the sender.  Never from inside :meth:`ask`, so the
        caller is never called back re-entrantly.
        """
        outbox, self._outbox = self._outbox, []
        loop = self.loop
        # One deadline for the whole batch: they all left now.
        deadline = loop.time() + self.timeout
        for ask in outbox:
            channel = ask.channel
            if channel is None or ask.deadline:
                continue  # failed (e.g. ICMP) before it left, or already sent again
            # (On a closed socket, which cannot hold a pending query, send() would
            # fail like a lost datagram: the deadline still applies.)
            ask.deadline = deadline
            try:
                channel.sock.send(_ID_BYTES[ask.qid] + ask.wire[2:])
            except (BlockingIOError, InterruptedError):
                pass  # a full buffer: like a lost datagram, the timeout handles it
            except OSError as exc:
                # e.g. ECONNREFUSED from an earlier ICMP error.
                channel.error(exc)
        deadlines = self._deadlines
        # Forget finished batches at the head, so the queue stays about as long
        # as the queries in flight.
        while deadlines and _finished(deadlines[0][1]):
            deadlines.popleft()
        deadlines.append((deadline, outbox))
        if self._sweeper is None:
            self._sweeper = loop.call_at(deadlines[0][0], self._sweep)

    def _replace_channel(self, upstream: _Upstream, index: int) -> _UdpChannel:
        """A new socket in slot ``index``, retiring the one it replaces."""
        old = upstream.channels[index]
        if old is not None:
            old.retired = True
            old.release()
        channel = upstream.channels[index] = _UdpChannel(self, upstream)
        return channel

    def _sweep(self) -> None:
        """Time out the attempts whose deadline has passed."""
        self._sweeper = None
        deadlines = self._deadlines
        now = self.loop.time()
        while deadlines and deadlines[0][0] <= now:
            deadline, batch = deadlines.popleft()
            for ask in batch:
                channel = ask.channel
                if channel is None or ask.deadline != deadline:
                    continue  # answered, or failed and sent again since
                del channel.pending[ask.qid]
                ask.channel = None
                channel.release()
                self.failed_attempt(ask)
        while deadlines and _finished(deadlines[0][1]):
            deadlines.popleft()
        if deadlines:
            self._sweeper = self.loop.call_at(deadlines[0][0], self._sweep)

    def answered(self, ask: _Ask, rcode: int, result: Any, data: bytes) -> None:
        """The current attempt got the reply ``data`` (``result`` once checked)."""
        upstream = ask.order[ask.attempt]
        if upstream.failures:  # (down_until is only set with failures)
            self._succeeded(upstream)
        if rcode in _NOT_ANSWERS:
            if rcode == _FORMERR:
                self._formerr(ask, upstream, data)
                return
            ask.fallback = result
            self._next(ask)
        else:
            ask.callback(result)

    def _formerr(self, ask: _Ask, upstream: _Upstream, data: bytes) -> None:
        if ask.edns_wire is None and edns_unsupported(ask.wire, data):
            plain = without_opt(ask.wire)
            if plain is not None:
                # RFC 6891 section 7: FORMERR without OPT to a query with OPT is
                # an upstream without EDNS.  Section 6.2.2: ask it again without
                # OPT (the same attempt: it did answer), and remember for a while.
                self.stats.upstream_edns_fallbacks += 1
                if not upstream.no_edns_until:
                    # Found again after each interval: said once, then for debugging.
                    log.log(
                        logging.DEBUG if upstream.edns_missing else logging.INFO,
                        "upstream %s does not implement EDNS; asking it without for %.0f s",
                        upstream.endpoint,
                        self.retry,
                    )
                    upstream.edns_missing = True
                upstream.no_edns_until = self.clock() + self.retry
                ask.edns_wire = ask.wire
                ask.wire = plain
                ask.deadline = 0.0  # not sent yet
                self._send(ask)
                return
        # RFC 1035 section 4.1.1: FORMERR is "unable to interpret the query", ours;
        # it says nothing about the client's question, so it is no answer to
        # relay (the client gets SERVFAIL if nobody does better), and asking
        # the same upstream the same again would only get it again.
        order = ask.order
        if ask.attempt + 1 < len(order) and order[ask.attempt + 1] is upstream:
            ask.attempt += 1
        self._next(ask)

    def _without_edns(self, ask: _Ask, upstream: _Upstream) -> None:
        """Send ``ask`` without OPT to an upstream known not to implement EDNS
        (RFC 6891 section 6.2.2), until that knowledge expires."""
        if self.clock() >= upstream.no_edns_until:
            upstream.no_edns_until = 0.0  # "for a brief time": try EDNS again
            return
        if ask.edns_wire is None:
            plain = without_opt(ask.wire)
            if plain is not None:
                ask.edns_wire = ask.wire
                ask.wire = plain

    def failed_attempt(self, ask: _Ask) -> None:
        self._failed(ask.order[ask.attempt])
        self._next(ask)

    def _next(self, ask: _Ask) -> None:
        ask.attempt += 1
        if ask.attempt >= len(ask.order) or self._closed:
            ask.callback(ask.fallback)
            return
        self.stats.upstream_failovers += 1
        ask.deadline = 0.0  # not sent yet
        if ask.edns_wire is not None:
            # The query as asked again: the next upstream may well do EDNS.
            ask.wire, ask.edns_wire = ask.edns_wire, None
        self._send(ask)

    def retry_over_tcp(self, ask: _Ask) -> None:
        self.stats.upstream_tcp_retries += 1
        task = self.loop.create_task(self._tcp(ask))
        self._tcp_tasks.add(task)
        task.add_done_callback(self._tcp_tasks.discard)

    async def _tcp(self, ask: _Ask) -> None:
        upstream = ask.order[ask.attempt]
        data = await self._ask_tcp(upstream, ask.wire, ask.question, ask.check)
        if data is None:
            self.failed_attempt(ask)
        else:
            self.answered(ask, data[0][3] & 0x0F, data[1], data[0])

    async def _ask_tcp(
        self, upstream: _Upstream, wire: bytes, question: bytes, check: ReplyCheck
    ) -> tuple[bytes, Any] | None:
        """Ask over the upstream's TCP connection, opened if there is none
        (RFC 7766 sections 6.2.1 and 6.2.1.1: reused and pipelined).  Returns
        (reply, checked reply) or None."""
        try:
            async with asyncio.timeout(self.timeout):
                data = await self._exchange_tcp(upstream, wire)
        except (OSError, TimeoutError) as exc:
            log.debug("upstream %s over TCP: %r", upstream.endpoint, exc)
            return None
        if data is not None and _echoes(data, question):
            try:
                return data, check(data)
            except Exception:  # garbage with a matching ID (RFC 5452 section 9.1)
                pass
        elif data is not None and bare_formerr(data):
            return data, None  # only ever used as a FORMERR
        self.stats.upstream_ignored += 1
        return None

    async def _exchange_tcp(self, upstream: _Upstream, wire: bytes) -> bytes | None:
        for _ in range(2):
            channel = await self._tcp_channel(upstream)
            reused = channel.reused
            qid = _random32() & 0xFFFF
            while channel.busy(qid):
                qid = _random32() & 0xFFFF
            try:
                return await channel.exchange(qid, _ID_BYTES[qid] + wire[2:])
            except ConnectionError:
                if not reused:
                    raise
                # RFC 7766 section 6.2.3: the server may close a connection at
                # any time; the query goes once more, on a new connection.
                log.debug("upstream %s closed a reused TCP connection", upstream.endpoint)
        return None

    async def _tcp_channel(self, upstream: _Upstream) -> TcpChannel:
        """The upstream's open TCP connection, or a new one.  Queries that
        need one at the same time share one connection attempt."""
        channel = upstream.tcp
        if channel is not None and not channel.closed:
            return channel
        opening = upstream.tcp_opening
        if opening is None:
            opening = upstream.tcp_opening = self.loop.create_task(
                TcpChannel.open(upstream.host, upstream.port, upstream.tcp_closed)
            )
            opening.add_done_callback(upstream.tcp_opened)
            self.stats.upstream_tcp_connections += 1
        # shield: one waiter's timeout must not cancel the attempt for the others.
        return await asyncio.shield(opening)

    # -- health ----------------------------------------------------------------------

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
            self._order = None

    def _succeeded(self, upstream: _Upstream) -> None:
        if upstream.down_until:
            log.info("upstream %s answers again", upstream.endpoint)
            upstream.down_until = 0.0
            self._order = None
        upstream.failures = 0

    # -- awaitable form -----------------------------------------------------------------

    async def query(self, message: dns.message.Message) -> dns.message.Message | None:
        """The parsed reply of the first upstream that answers well, or None."""
        future: asyncio.Future[dns.message.Message | None] = self.loop.create_future()

        def done(reply: dns.message.Message | None) -> None:
            if not future.done():
                future.set_result(reply)

        self.ask(query_wire(message), self.reader.read, done)
        return await future

    def close(self) -> None:
        """Stop sending; sockets close once their pending queries are done."""
        self._closed = True
        for upstream in self.upstreams:
            for channel in upstream.channels:
                if channel is not None:
                    channel.retired = True
                    channel.release()
            if upstream.tcp is not None:
                upstream.tcp.retire()
            if upstream.tcp_opening is not None:
                upstream.tcp_opening.add_done_callback(_retire_opened)
