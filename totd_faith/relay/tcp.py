"""The TCP relay: one accepted IPv6 client connection carried to an IPv4 backend.

:meth:`TcpRelay.handle` takes an accepted, non-blocking client socket from
any listener (prefix mode, port maps, the all-ports tproxy listener), decides
the destination, applies the access policy and the connection limits,
connects, and copies bytes both ways until both directions are done:

- prefix mode: the IPv4 destination is embedded in the address the client
  dialled, which ``getsockname()`` returns (AnyIP route or tproxy), same port;
- port maps: the destination is the map's target.

Two copy engines move the bytes (see :mod:`totd_faith.relay.splice` for the
zero-copy one).  The plain engine uses uvloop transports: each side's
protocol writes what it reads into the other side's transport, and the
other transport's write-buffer limit (``relay.buffer_size``) pauses reading
(backpressure).  EOF from one side becomes ``shutdown(SHUT_WR)`` on the other
while the other direction keeps flowing (half-close); a reset on one side
resets the other (SO_LINGER 0), so a client learns promptly that the backend
died.

Idle connections are found by one periodic sweep that compares byte
counters rather than by a timer per connection, so the hot path does no
timer work.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import logging
import os
import socket
import time
from collections import Counter
from typing import Any, cast

from totd_faith.config import Config
from totd_faith.endpoints import Endpoint
from totd_faith.errors import PrefixError
from totd_faith.policy import RelayAccess, Verdict, unmap
from totd_faith.prefix import Nat64Prefix
from totd_faith.relay import proxyproto, splice
from totd_faith.relay.connection import Connection, Engine, reset_socket
from totd_faith.relay.splice import SplicePipe
from totd_faith.relay.stats import RelayStats

log = logging.getLogger("totd_faith.relay")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: Denied connections logged per second when log.connections is off.
_DENIAL_LINES = 10


@functools.lru_cache(maxsize=4096)
def _parse_host(host: str) -> IPAddress:
    # Link-local addresses carry '%scope'.  Cached: the same clients and the
    # same dialled addresses come back again and again.
    return unmap(ipaddress.ip_address(host.partition("%")[0]))


@functools.lru_cache(maxsize=4096)
def _sockaddr(endpoint: Endpoint) -> tuple[str, int]:
    # Formatting an address costs more than the cache lookup; targets repeat.
    return endpoint.sockaddr


def _address(sockaddr: Any) -> tuple[IPAddress, int]:
    return _parse_host(sockaddr[0]), int(sockaddr[1])


@functools.lru_cache(maxsize=4096)
def _client_key(host: str) -> str:
    # Per-client counters are keyed by the canonical text of the unmapped
    # address: a str hashes in C (and caches its hash), an IPv6Address hashes
    # in Python (hex(int(...))) on every lookup.
    return str(_parse_host(host))


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _writable_now(sock: socket.socket) -> bool:
    """Whether a connect that woke us finished (rather than the timer firing)."""
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


# -- the plain engine: uvloop transports --------------------------------------


class _Leg(asyncio.Protocol):
    """One side of a relayed connection; writes what it reads into the peer leg."""

    __slots__ = ("pipe", "upstream", "transport", "peer", "eof", "lost", "early")

    def __init__(self, pipe: TransportPipe, upstream: bool) -> None:
        self.pipe = pipe
        #: True for the client leg (its data flows client -> backend).
        self.upstream = upstream
        self.transport: asyncio.Transport | None = None
        self.peer: _Leg
        self.eof = False
        self.lost = False
        #: Bytes read before the peer's transport existed (a server banner).
        self.early: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not registered as an asyncio.Transport subclass.
        self.transport = cast(asyncio.Transport, transport)
        # Nothing is read until both legs exist (TransportPipe.start).
        self.transport.pause_reading()
        self.transport.set_write_buffer_limits(high=self.pipe.buffer_size)

    def data_received(self, data: bytes) -> None:
        peer = self.peer.transport
        if peer is None:
            # uvloop may deliver one read before pause_reading takes effect.
            self.early.append(data)
        else:
            peer.write(data)
        n = len(data)
        conn = self.pipe.conn
        stats = self.pipe.stats
        if self.upstream:
            conn.up += n
            stats.bytes_client_to_backend += n
        else:
            conn.down += n
            stats.bytes_backend_to_client += n

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer.transport
        if peer is None:
            return True  # passed on when the peer is attached (TransportPipe.start)
        if not peer.is_closing():
            # Half-close: the other direction keeps flowing.
            peer.write_eof()
        if self.peer.eof:
            self.pipe.close("closed")
        # True keeps our transport open for writing.
        return True

    def pause_writing(self) -> None:
        # Our send buffer is full: stop reading the side that feeds it.
        peer = self.peer.transport
        if peer is not None and not peer.is_closing():
            peer.pause_reading()

    def resume_writing(self) -> None:
        peer = self.peer.transport
        if peer is not None and not peer.is_closing():
            peer.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if exc is not None:
            side = "client" if self.upstream else "backend"
            if isinstance(exc, ConnectionResetError):
                self.pipe.reset(self, f"{side} reset")
            else:
                self.pipe.reset(self, f"{side} error: {exc}")
        elif not self.peer.lost:
            self.pipe.close("closed")
        if self.peer.lost:
            self.pipe.finished()


class TransportPipe(Engine):
    """The plain copy engine: two uvloop transports feeding each other."""

    __slots__ = ("conn", "stats", "buffer_size", "client", "backend")

    def __init__(self, conn: Connection, stats: RelayStats, buffer_size: int) -> None:
        self.conn = conn
        self.stats = stats
        self.buffer_size = buffer_size
        self.client = _Leg(self, upstream=True)
        self.backend = _Leg(self, upstream=False)
        self.client.peer = self.backend
        self.backend.peer = self.client

    async def start(
        self,
        loop: asyncio.AbstractEventLoop,
        client: socket.socket,
        backend: socket.socket,
        header: bytes,
    ) -> None:
        """Attach both sockets; ``header`` (PROXY protocol) goes first to the backend."""
        await loop.connect_accepted_socket(lambda: self.backend, backend)
        if header:
            # Before the client's transport exists: nothing may overtake the header.
            assert self.backend.transport is not None
            self.backend.transport.write(header)
        await loop.connect_accepted_socket(lambda: self.client, client)
        assert self.client.transport is not None
        for data in self.backend.early:
            self.client.transport.write(data)
        self.backend.early.clear()
        if self.backend.lost:
            # The backend went away while the client was being attached.
            if self.conn.reason.endswith("reset"):
                self.abort(self.conn.reason)
            else:
                self.client.transport.close()
            return
        if self.backend.eof:
            self.client.transport.write_eof()
        for leg in (self.client, self.backend):
            assert leg.transport is not None
            leg.transport.resume_reading()

    def close(self, reason: str) -> None:
        self.conn.end(reason)
        for leg in (self.client, self.backend):
            if leg.transport is not None and not leg.transport.is_closing():
                leg.transport.close()

    def reset(self, origin: _Leg, reason: str) -> None:
        """One side reset or failed: reset the other so its peer learns promptly."""
        self.conn.end(reason)
        other = origin.peer.transport
        if other is not None and not other.is_closing():
            reset_socket(other.get_extra_info("socket"))
            other.abort()
        if origin.transport is not None and not origin.transport.is_closing():
            origin.transport.abort()

    def abort(self, reason: str) -> None:
        self.conn.end(reason)
        for leg in (self.client, self.backend):
            if leg.transport is not None and not leg.transport.is_closing():
                reset_socket(leg.transport.get_extra_info("socket"))
                leg.transport.abort()

    def finished(self) -> None:
        done = self.conn.done
        if done is not None and not done.done():
            done.set_result(None)


# -- the relay ------------------------------------------------------------------


class TcpRelay:
    """Relays accepted TCP connections; one instance serves every listener."""

    def __init__(self, config: Config, access: RelayAccess, stats: RelayStats) -> None:
        self.stats = stats
        self.connections: set[Connection] = set()
        self._per_client: Counter[str] = Counter()
        #: Map-mode verdicts by client host text: for a map only relay.clients
        #: applies, so the verdict depends on the client alone (cleared on reload).
        self._map_verdicts: dict[str, Verdict] = {}
        #: Map targets' socket addresses by id(target), with the target kept
        #: alive so that its id cannot be reused (cleared on reload).
        self._target_sockaddrs: dict[int, tuple[Endpoint, tuple[str, int]]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._splice_poller: splice.Poller | None = None
        self.scratch = memoryview(bytearray(0))
        self._denial_window = 0.0
        self._denials_logged = 0
        self._denials_suppressed = 0
        self.reload(config, access)

    def reload(self, config: Config, access: RelayAccess) -> None:
        """Adopt new settings for new connections; established ones are left alone."""
        self.config = config
        self.access = access
        self._map_verdicts = {}
        self._target_sockaddrs = {}
        self.prefixes: tuple[Nat64Prefix, ...] = config.prefixes
        relay = config.relay
        self.connect_timeout = relay.connect_timeout
        self.idle_timeout = relay.idle_timeout
        self.max_connections = relay.max_connections
        self.max_per_client = relay.max_connections_per_client
        self.buffer_size = relay.buffer_size
        self.log_connections = config.log.connections
        self.use_splice = splice.wanted(relay.splice)
        self.splice_after = splice.splice_after(relay.splice)
        if len(self.scratch) != relay.buffer_size:
            self.scratch = memoryview(bytearray(relay.buffer_size))

    # -- destination and admission ------------------------------------------

    def destination(self, dialled: IPAddress) -> tuple[ipaddress.IPv4Address, Nat64Prefix] | str:
        """The IPv4 address embedded in ``dialled``, or why there is none."""
        if dialled.version != 6:
            return f"{dialled} is not an IPv6 address inside a prefix"
        assert isinstance(dialled, ipaddress.IPv6Address)
        for prefix in self.prefixes:
            if dialled in prefix:
                try:
                    return prefix.extract(dialled), prefix
                except PrefixError as exc:
                    return str(exc)
        return f"{dialled} is outside every prefix ({', '.join(map(str, self.prefixes))})"

    def _log(self, conn: Connection, backend: str, *, always: bool = False) -> None:
        if not (self.log_connections or always):
            return
        client = Endpoint(conn.client, conn.client_port)
        dialled = Endpoint(conn.dialled, conn.dialled_port)
        log.info(
            "tcp %s -> %s -> %s: %d bytes up, %d bytes down, %.3f s, %s",
            client,
            dialled,
            backend,
            conn.up,
            conn.down,
            time.monotonic() - conn.started,
            conn.reason,
        )

    def _refuse(self, conn: Connection, client: socket.socket, reason: str, backend: str) -> None:
        self.stats.connections_denied[reason] += 1
        conn.end(f"denied: {reason}")
        client.close()
        if self.log_connections:
            self._log(conn, backend)
            return
        # Denials are logged even without log.connections, but at most
        # _DENIAL_LINES per second, so that a flood cannot flood the log too.
        now = time.monotonic()
        if now - self._denial_window >= 1.0:
            if self._denials_suppressed:
                log.info("%d more denied connections were not logged", self._denials_suppressed)
            self._denial_window = now
            self._denials_logged = self._denials_suppressed = 0
        if self._denials_logged < _DENIAL_LINES:
            self._denials_logged += 1
            self._log(conn, backend, always=True)
        else:
            self._denials_suppressed += 1

    async def handle(
        self,
        client: socket.socket,
        *,
        target: Endpoint | None,
        proxy_protocol: str,
        peer: Any = None,
        nodelay: bool = False,
    ) -> None:
        """Relay one accepted, non-blocking client socket until both directions end.

        ``target`` None means prefix mode: the destination is decoded from the
        address the client dialled.  Never raises for network trouble; the
        socket is always closed on return.  Optional, to save system calls:
        ``peer`` is the address accept() returned, ``nodelay`` says that the
        socket inherited TCP_NODELAY from its listener.
        """
        try:
            if peer is None:
                peer = client.getpeername()
            client_addr, client_port = _address(peer)
            dialled, dialled_port = _address(client.getsockname())
        except OSError:
            # The client went away before we looked at it.
            client.close()
            return
        client_key = _client_key(peer[0])
        self.stats.connections_accepted += 1
        conn = Connection(client_addr, client_port, dialled, dialled_port, time.monotonic())
        if target is None:
            found = self.destination(dialled)
            if isinstance(found, str):
                self._refuse(conn, client, "destination outside the prefixes", found)
                return
            v4, prefix = found
            backend = Endpoint(v4, dialled_port)
            verdict = self.access.check(client_addr, v4, prefix)
        else:
            backend = target
            cached = self._map_verdicts.get(client_key)
            if cached is None:
                # For any map (IPv4 or IPv6 target) only relay.clients applies.
                cached = self.access.check(client_addr, ipaddress.IPv4Address(0), None)
                if len(self._map_verdicts) >= 4096:
                    self._map_verdicts.clear()
                self._map_verdicts[client_key] = cached
            verdict = cached
        if not verdict.permit:
            self._refuse(conn, client, verdict.reason, str(backend))
            return
        if len(self.connections) >= self.max_connections:
            self._refuse(conn, client, "max_connections", str(backend))
            return
        if self._per_client[client_key] >= self.max_per_client:
            self._refuse(conn, client, "max_connections_per_client", str(backend))
            return
        conn.backend = backend
        self.connections.add(conn)
        self._per_client[client_key] += 1
        self.stats.connections_active += 1
        self._ensure_sweeper()
        try:
            sockaddr = _sockaddr(backend) if target is None else self._map_sockaddr(target)
            await self._relay(conn, client, backend, sockaddr, proxy_protocol, nodelay)
        except Exception as exc:  # a bug must cost one connection, never the relay
            log.exception("relaying %s to %s failed", Endpoint(client_addr, client_port), backend)
            self.stats.errors[f"internal: {type(exc).__name__}"] += 1
            conn.end("internal error")
            if conn.engine is not None:
                conn.engine.abort("internal error")
            if client.fileno() >= 0:
                client.close()
        finally:
            self.connections.discard(conn)
            left = self._per_client[client_key] - 1
            if left > 0:
                self._per_client[client_key] = left
            else:
                del self._per_client[client_key]
            self.stats.connections_active -= 1
            self.stats.connections_ended[conn.reason or "closed"] += 1
            self._log(conn, str(backend))

    def _map_sockaddr(self, target: Endpoint) -> tuple[str, int]:
        # A map's target is one long-lived object: look it up by identity
        # (hashing the dataclass hashes its address in Python).
        found = self._target_sockaddrs.get(id(target))
        if found is not None and found[0] is target:
            return found[1]
        sockaddr = _sockaddr(target)
        self._target_sockaddrs[id(target)] = (target, sockaddr)
        return sockaddr

    async def _connect(
        self,
        loop: asyncio.AbstractEventLoop,
        conn: Connection,
        backend: Endpoint,
        sockaddr: tuple[str, int],
    ) -> socket.socket | None:
        """A connected non-blocking socket to ``backend``, or None (reason in ``conn``).

        A plain non-blocking connect() plus one writability wait: cheaper than
        loop.sock_connect, which resolves the address again, and than
        asyncio.timeout, which costs two objects per connection.
        """
        family = socket.AF_INET if backend.host.version == 4 else socket.AF_INET6
        # SOCK_NONBLOCK at creation saves the ioctl of setblocking(False).
        sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        # Relayed protocols are often interactive (ssh, IMAP); forward at once.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = sock.connect_ex(sockaddr)
        if err == errno.EINPROGRESS and _writable_now(sock):
            # Loopback and other local backends finish the handshake inside
            # connect() itself: skip the readiness wait (two epoll_ctl calls
            # and a loop iteration per connection).
            err = 0
        if err == errno.EINPROGRESS:
            fd = sock.fileno()
            waiter: asyncio.Future[None] = loop.create_future()
            loop.add_writer(fd, _wake, waiter)
            timer = loop.call_later(self.connect_timeout, _wake, waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                sock.close()
                raise
            finally:
                loop.remove_writer(fd)
                timer.cancel()
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err == 0 and not _writable_now(sock):
                err = errno.ETIMEDOUT
        if err == 0:
            return sock
        if err == errno.ECONNREFUSED:
            conn.end("backend refused")
        elif err == errno.ETIMEDOUT:
            conn.end("connect timeout")
        else:
            conn.end(f"connect failed: {os.strerror(err)}")
        sock.close()
        return None

    async def _relay(
        self,
        conn: Connection,
        client: socket.socket,
        backend: Endpoint,
        sockaddr: tuple[str, int],
        proxy_protocol: str,
        nodelay: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        conn.done = loop.create_future()
        try:
            bsock = await self._connect(loop, conn, backend, sockaddr)
        except asyncio.CancelledError:
            conn.end("shutdown")
            client.close()
            raise
        if bsock is None:
            # A refused or unreachable backend: reset the client so it learns
            # at once, as a direct connection attempt would have.
            reset_socket(client)
            client.close()
            return
        header = proxyproto.header(
            proxy_protocol, conn.client, conn.client_port, conn.dialled, conn.dialled_port
        )
        try:
            if not nodelay:
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pipe: SplicePipe
            if self.use_splice:
                if header:
                    # Before the engine exists: nothing may overtake the header.
                    await loop.sock_sendall(bsock, header)
                pipe = SplicePipe(
                    loop,
                    conn,
                    self.stats,
                    client,
                    bsock,
                    self.buffer_size,
                    splice_after=self.splice_after,
                    scratch=self.scratch,
                    poller=self._poller(loop),
                )
                conn.engine = pipe
                pipe.start()
            else:
                tpipe = TransportPipe(conn, self.stats, self.buffer_size)
                conn.engine = tpipe
                await tpipe.start(loop, client, bsock, header)
        except OSError as exc:
            conn.end(f"error: {exc.strerror or exc}")
            if conn.engine is not None:
                conn.engine.abort(conn.reason)
            for sock in (client, bsock):
                if sock.fileno() >= 0:
                    sock.close()
            return
        try:
            await conn.done
        except asyncio.CancelledError:
            if conn.engine is not None:
                conn.engine.abort("shutdown")
            raise

    # -- idle sweep and shutdown ---------------------------------------------

    def _ensure_sweeper(self) -> None:
        if self._sweeper is None:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(self._sweep_interval(), self._sweep)

    def _sweep_interval(self) -> float:
        # Idle timeouts are honoured to within an eighth of their length.
        return max(0.25, min(self.idle_timeout / 8, 30.0))

    def _sweep(self) -> None:
        now = time.monotonic()
        for conn in list(self.connections):
            moved = conn.up + conn.down
            if moved != conn.idle_mark:
                conn.idle_mark = moved
                conn.idle_since = now
            elif now - conn.idle_since >= self.idle_timeout and conn.engine is not None:
                conn.engine.abort("idle timeout")
        if self.connections:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(self._sweep_interval(), self._sweep)
        else:
            self._sweeper = None

    def abort_all(self, reason: str) -> None:
        """Reset every relayed connection (end of the drain period)."""
        for conn in list(self.connections):
            if conn.engine is not None:
                conn.engine.abort(reason)
            elif conn.done is not None and not conn.done.done():
                conn.done.cancel()

    def _poller(self, loop: asyncio.AbstractEventLoop) -> splice.Poller:
        # Created in the running loop (after any fork into workers).
        poller = self._splice_poller
        if poller is None or poller.loop is not loop:
            poller = self._splice_poller = splice.Poller(loop)
        return poller

    def close(self) -> None:
        if self._splice_poller is not None:
            self._splice_poller.close()
            self._splice_poller = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
