"""The DNS proxy's TCP side (RFC 7766): framing, pipelining, idle timeout.

TCP connections are a bounded resource (``dns.tcp_max_clients``), so the
rules that keep one client from holding them matter:

* only whole queries and answers count as activity: a client that trickles
  bytes without completing a message is closed after the idle timeout;
* a client outside ``dns.allow`` gets its REFUSED answers and is then closed;
* when every slot is taken, the connection idle the longest (no answer owed)
  makes room for the new one (RFC 7766 section 6.2.3 lets a server close idle
  connections, and asks it to prefer serving active ones); only when every
  connection is busy is the new one turned away.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import TYPE_CHECKING, cast

import dns.rcode

from totd_faith.dnsmiss import deliver_to
from totd_faith.dnswire import header_response

if TYPE_CHECKING:
    from totd_faith.dnsserver import DnsService

log = logging.getLogger("totd_faith.dns")

#: Queries one TCP connection may have in flight before we stop reading from it.
TCP_PIPELINE_MAX = 64
#: Largest DNS message (RFC 1035 section 4.2.2: a two-byte length prefix).
MAX_MESSAGE = 65_535
_LENGTH = struct.Struct("!H")


class TcpConnection(asyncio.Protocol):
    """One DNS-over-TCP client (RFC 7766): pipelined queries, idle timeout."""

    def __init__(self, service: DnsService) -> None:
        self.service = service
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.pending = 0
        self.paused = False
        self.host = ""
        #: Is the client inside dns.allow?  If not, it is closed once answered.
        self.allowed = True
        self.last_activity = 0.0
        self.idle_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        service = self.service
        if service.tcp_clients >= service.config.dns.tcp_max_clients and not _make_room(service):
            service.stats.tcp_rejected += 1
            transport.abort()
            return
        self.transport = transport
        service.tcp_clients += 1
        service.stats.tcp_connections += 1
        service._tcp_connections.add(self)
        peer = transport.get_extra_info("peername")
        self.host = peer[0] if peer else ""
        self.allowed = service.classify(self.host) >= 0
        loop = asyncio.get_running_loop()
        self.last_activity = loop.time()
        self.idle_timer = loop.call_later(service.config.dns.tcp_idle_timeout, self._check_idle)

    def _check_idle(self) -> None:
        # RFC 7766 section 6.2.3: close idle connections; never while answers are owed.
        if self.transport is None:
            return
        loop = asyncio.get_running_loop()
        timeout = self.service.config.dns.tcp_idle_timeout
        idle = loop.time() - self.last_activity
        if self.pending == 0 and idle >= timeout:
            self.close()
            return
        self.idle_timer = loop.call_later(max(timeout - idle, 0.05), self._check_idle)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is None:
            return
        self.transport = None
        self.service.tcp_clients -= 1
        self.service._tcp_connections.discard(self)
        if self.idle_timer is not None:
            self.idle_timer.cancel()

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return
        buffer = self.buffer
        buffer += data
        while len(buffer) >= 2:
            size = (buffer[0] << 8) | buffer[1]
            if len(buffer) < 2 + size:
                break
            message = bytes(buffer[2 : 2 + size])
            del buffer[: 2 + size]
            # Activity is a whole query, not a byte (see the module docstring).
            self.last_activity = asyncio.get_running_loop().time()
            self._handle(message)
        if self.pending >= TCP_PIPELINE_MAX and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def _handle(self, data: bytes) -> None:
        service = self.service
        try:
            out, head, client_class = service.cached(data, self.host)
            if out is not None and head is not None:
                self._send(out)
                service.count_hit(head, out, self.host)
                return
            if service.admit(data):
                self.pending += 1
                service.handle(
                    data, self.host, head, client_class, MAX_MESSAGE, deliver_to, self._deliver
                )
            else:
                # Over the in-flight bound.  A UDP client asks again; a TCP client
                # waits for its answer, so it gets SERVFAIL now, not silence.
                # (None for what admit dropped as too short or a response.)
                busy = header_response(data, dns.rcode.SERVFAIL, head[1] if head else 0)
                if busy is not None:
                    self._send(busy)
        except Exception:
            service.stats.errors += 1
            log.debug("dns: failed to handle a TCP message from %s", self.host, exc_info=True)

    def _deliver(self, wire: bytes | None) -> None:
        if wire is not None:
            self._send(wire)
        self.pending -= 1
        self.last_activity = asyncio.get_running_loop().time()
        if not self.allowed and self.pending == 0:
            self.close()  # its answers were REFUSED: the slot is for others
            return
        if self.paused and self.pending < TCP_PIPELINE_MAX // 2 and self.transport:
            self.paused = False
            self.transport.resume_reading()

    def _send(self, wire: bytes | bytearray) -> None:
        if self.transport is not None and not self.transport.is_closing():
            # RFC 1035 section 4.2.2: each message is prefixed with its length.
            self.transport.write(_LENGTH.pack(len(wire)) + wire)


def _make_room(service: DnsService) -> bool:
    """Close the connection that owes no answer and has been idle the longest,
    clients outside dns.allow first; False when every connection is busy."""
    idle = [c for c in service._tcp_connections if c.pending == 0 and c.transport is not None]
    if not idle:
        return False
    victim = min(idle, key=lambda c: (c.allowed, c.last_activity))
    transport = victim.transport
    victim.connection_lost(None)  # frees its slot now; the close below follows
    assert transport is not None
    transport.abort()
    service.stats.tcp_evicted += 1
    return True
