"""One TCP connection to one upstream, reused and pipelined (RFC 7766).

A reply truncated over UDP is asked again over TCP (RFC 1035 section 4.2.2,
RFC 7766 section 5).  Opening a connection per such query costs a handshake
and leaves a TIME_WAIT socket behind each; RFC 7766 section 6.2.1 says
instead that clients "SHOULD reuse existing connections" and section 6.2.1.1
that they "SHOULD pipeline their queries".  So every upstream has at most one
connection: queries are written as they come, each with its own ID, and
replies are matched by ID in whatever order they arrive (section 7).

The connection closes itself after :data:`IDLE_SECONDS` with nothing waiting
(section 6.2.3: clients close idle connections, servers may close them
earlier).  A server is free to close a connection at any time; a query that
was written to a connection that had already served earlier ones, and got
no answer because of that close, is the caller's to send again on a fresh one
(see :attr:`TcpChannel.reused`).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from typing import cast

from totd_faith.dnswire import HEADER_SIZE

log = logging.getLogger("totd_faith.upstream")

#: Seconds a connection stays open with no query waiting on it.
IDLE_SECONDS = 10.0

_LENGTH = struct.Struct("!H")


class TcpChannel(asyncio.Protocol):
    """A pipelined DNS-over-TCP connection: :meth:`exchange` writes a query and
    waits for the reply with its ID.  Create it with :meth:`open`."""

    def __init__(self, on_closed: Callable[[TcpChannel], None]) -> None:
        self._on_closed = on_closed
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        #: Replies awaited, by query ID.
        self._waiting: dict[int, asyncio.Future[bytes]] = {}
        self._idle: asyncio.TimerHandle | None = None
        #: Replies received so far: a connection that has answered before may
        #: have been closed by the server since (RFC 7766 section 6.2.3).
        self.answered = 0
        #: Replies that matched no waiting query (late, or never asked).
        self.unmatched = 0
        self.closed = False
        #: Close as soon as nothing waits (the pool is shutting down).
        self.retired = False

    @classmethod
    async def open(
        cls, host: str, port: int, on_closed: Callable[[TcpChannel], None]
    ) -> TcpChannel:
        loop = asyncio.get_running_loop()
        _, channel = await loop.create_connection(lambda: cls(on_closed), host, port)
        return channel

    @property
    def reused(self) -> bool:
        """Has this connection answered a query before (so may be stale)?"""
        return self.answered > 0

    def busy(self, qid: int) -> bool:
        """Is a query with ``qid`` already waiting on this connection?"""
        return qid in self._waiting

    async def exchange(self, qid: int, wire: bytes) -> bytes:
        """Send ``wire`` (whose ID must be ``qid``, unused here: see :meth:`busy`)
        and return the reply with that ID.  Raises ConnectionError when the
        connection closes first; the caller's timeout cancels the wait."""
        if self.closed or self._transport is None:
            raise ConnectionResetError("the upstream closed the TCP connection")
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[qid] = future
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self._transport.write(_LENGTH.pack(len(wire)) + wire)
        try:
            return await future
        finally:
            if self._waiting.get(qid) is future:
                del self._waiting[qid]
            self._idle_check()

    def close(self) -> None:
        """Close now; queries still waiting get ConnectionError."""
        if self._transport is not None and not self.closed:
            self._transport.close()

    def retire(self) -> None:
        """Close once no query waits any more."""
        self.retired = True
        if not self._waiting:
            self.close()

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self._idle_check()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        # Each message is its two-byte length and that many bytes (RFC 1035
        # section 4.2.2); the buffer never holds more than one partial message.
        while len(buffer) >= 2:
            end = 2 + _LENGTH.unpack_from(buffer)[0]
            if len(buffer) < end:
                break
            message = bytes(buffer[2:end])
            del buffer[:end]
            qid = (message[0] << 8) | message[1] if len(message) >= HEADER_SIZE else -1
            future = self._waiting.pop(qid, None)
            if future is None or future.done():
                self.unmatched += 1
                continue
            self.answered += 1
            future.set_result(message)

    def eof_received(self) -> bool:
        return False  # the server is done with us: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(ConnectionResetError("the upstream closed the TCP connection"))
        self._on_closed(self)

    # -- idle timeout --------------------------------------------------------------

    def _idle_check(self) -> None:
        if self._waiting or self.closed or self._idle is not None:
            return
        if self.retired:
            self.close()
            return
        self._idle = asyncio.get_running_loop().call_later(IDLE_SECONDS, self._idle_close)

    def _idle_close(self) -> None:
        self._idle = None
        if not self._waiting:
            self.close()
