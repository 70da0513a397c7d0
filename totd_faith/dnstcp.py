"""The DNS proxy's TCP side (RFC 7766): framing, pipelining, idle timeout."""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import TYPE_CHECKING, cast

from totd_faith.dnsmiss import deliver_to

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
        self.last_activity = 0.0
        self.idle_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        service = self.service
        if service.tcp_clients >= service.config.dns.tcp_max_clients:
            service.stats.tcp_rejected += 1
            transport.abort()
            return
        self.transport = transport
        service.tcp_clients += 1
        service.stats.tcp_connections += 1
        service._tcp_connections.add(self)
        peer = transport.get_extra_info("peername")
        self.host = peer[0] if peer else ""
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
        self.last_activity = asyncio.get_running_loop().time()
        buffer = self.buffer
        buffer += data
        while len(buffer) >= 2:
            size = (buffer[0] << 8) | buffer[1]
            if len(buffer) < 2 + size:
                break
            message = bytes(buffer[2 : 2 + size])
            del buffer[: 2 + size]
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
        except Exception:
            service.stats.errors += 1
            log.debug("dns: failed to handle a TCP message from %s", self.host, exc_info=True)

    def _deliver(self, wire: bytes | None) -> None:
        if wire is not None:
            self._send(wire)
        self.pending -= 1
        self.last_activity = asyncio.get_running_loop().time()
        if self.paused and self.pending < TCP_PIPELINE_MAX // 2 and self.transport:
            self.paused = False
            self.transport.resume_reading()

    def _send(self, wire: bytes | bytearray) -> None:
        if self.transport is not None and not self.transport.is_closing():
            # RFC 1035 section 4.2.2: each message is prefixed with its length.
            self.transport.write(_LENGTH.pack(len(wire)) + wire)
