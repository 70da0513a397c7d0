"""The zero-copy engine: ``os.splice`` through a pipe per direction (Linux).

Bytes go socket -> pipe -> socket inside the kernel and never reach Python
objects, which is what lets a Python relay approach line rate for bulk
transfers.  Each direction owns one non-blocking pipe whose capacity is
``relay.buffer_size`` (the bound on bytes in flight per direction).  The
loop watches the source for readability while the pipe is empty, and the
destination for writability while the pipe holds bytes the destination would
not take (backpressure: the source is not read meanwhile).

EOF on the source, once the pipe is drained, becomes ``shutdown(SHUT_WR)`` on
the destination (half-close); a reset on either side resets the other.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import select
import socket
from collections.abc import Callable

from totd_faith.relay.connection import Connection, Engine, reset_socket
from totd_faith.relay.stats import RelayStats

_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_DEFAULT_PIPE = 65536
_AGAIN = (errno.EAGAIN, errno.EWOULDBLOCK)


class Poller:
    """Read readiness for relayed sockets through one epoll set of our own.

    uvloop's ``add_reader``/``remove_reader`` cost about seven ``epoll_ctl``
    calls and an ``ioctl`` per socket (libuv probes every new fd with an
    ADD/DEL pair and re-sets O_NONBLOCK; removal tries DEL three times):
    about half of all system calls of a short relayed connection
    (strace -c during tests/bench/bench_relay.py --conn-only).  Here a socket
    costs one EPOLL_CTL_ADD when reading starts and one EPOLL_CTL_DEL when it
    stops; the epoll fd itself is watched by the loop once.  Level-triggered,
    so the callbacks behave exactly as loop.add_reader callbacks.
    """

    __slots__ = ("loop", "epoll", "callbacks")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.epoll = select.epoll()
        self.callbacks: dict[int, Callable[[], None]] = {}
        loop.add_reader(self.epoll.fileno(), self._dispatch)

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        self.epoll.register(fd, select.EPOLLIN)
        self.callbacks[fd] = callback

    def remove_reader(self, fd: int) -> None:
        if self.callbacks.pop(fd, None) is not None:
            try:
                self.epoll.unregister(fd)
            except OSError:
                pass  # already closed elsewhere: the kernel dropped it

    def _dispatch(self) -> None:
        callbacks = self.callbacks
        try:
            events = self.epoll.poll(0, 256)
        except InterruptedError:
            return
        for fd, _ in events:
            # A callback may have removed a later fd of this batch (its
            # connection closed): skip it.  No fd is registered anew inside
            # this loop, so a number cannot be reused within the batch.
            callback = callbacks.get(fd)
            if callback is not None:
                callback()

    def close(self) -> None:
        if not self.epoll.closed:
            self.loop.remove_reader(self.epoll.fileno())
            self.epoll.close()
        self.callbacks.clear()


def available() -> bool:
    return hasattr(os, "splice")


#: In ``auto`` mode a direction switches from copying to splicing after this
#: many bytes: two pipes per connection cost more than copying a short
#: exchange (tests/bench/bench_relay.py: connections per second), while
#: splicing wins for bulk transfers (iperf3 throughput).
SPLICE_AFTER = 128 * 1024


def wanted(mode: str) -> bool:
    """Whether ``relay.splice`` = auto|on|off selects this engine (else: transports)."""
    if mode == "off":
        return False
    return available()


def splice_after(mode: str) -> int:
    """Bytes copied per direction before splicing: 0 for ``on``, SPLICE_AFTER for ``auto``."""
    return 0 if mode == "on" else SPLICE_AFTER


class _Direction:
    """One direction of a connection: source socket -> destination socket.

    It starts in *copy* mode (``recv_into`` a buffer shared by every
    connection, then ``send``) unless splicing was asked for from the start,
    and switches to *splice* mode once it has carried ``splice_after`` bytes:
    short exchanges (HTTP requests, handshakes) then never pay for two pipes,
    and bulk transfers still go zero-copy.
    """

    __slots__ = (
        "pipe",
        "src",
        "dst",
        "src_sock",
        "dst_sock",
        "upstream",
        "read_fd",
        "write_fd",
        "capacity",
        "pending",
        "backlog",
        "moved",
        "eof",
        "done",
        "waiting_write",
        "reading",
    )

    def __init__(
        self, pipe: SplicePipe, src: socket.socket, dst: socket.socket, upstream: bool
    ) -> None:
        self.pipe = pipe
        self.src = src.fileno()
        self.dst = dst.fileno()
        self.src_sock = src
        self.dst_sock = dst
        self.upstream = upstream
        self.read_fd = -1
        self.write_fd = -1
        self.capacity = 0
        #: Bytes in the pipe (splice mode) not yet written to the destination.
        self.pending = 0
        #: Bytes read (copy mode) that the destination has not taken yet.
        self.backlog = b""
        self.moved = 0
        self.eof = False
        self.done = False
        self.waiting_write = False
        self.reading = False
        if pipe.splice_after == 0:
            self.open_pipe()

    def open_pipe(self) -> None:
        self.read_fd, self.write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        if not self.pipe.spliced:
            self.pipe.spliced = True
            self.pipe.stats.connections_spliced += 1
        self.capacity = _DEFAULT_PIPE
        if self.pipe.buffer_size != _DEFAULT_PIPE:
            try:
                self.capacity = fcntl.fcntl(self.write_fd, _F_SETPIPE_SZ, self.pipe.buffer_size)
            except OSError:
                pass  # above /proc/sys/fs/pipe-max-size: keep the default

    def start(self) -> None:
        self.reading = True
        self.pipe.poller.add_reader(self.src, self.on_readable)

    def stop_reading(self) -> None:
        if self.reading:
            self.reading = False
            self.pipe.poller.remove_reader(self.src)

    def _count(self, n: int) -> None:
        self.moved += n
        pipe = self.pipe
        if self.upstream:
            pipe.conn.up += n
            pipe.stats.bytes_client_to_backend += n
        else:
            pipe.conn.down += n
            pipe.stats.bytes_backend_to_client += n

    def _at_eof(self) -> None:
        self.eof = True
        self.stop_reading()
        if self.pending == 0 and not self.backlog:
            self.finish()

    def on_readable(self) -> None:
        if self.pipe.closed:
            return
        if self.write_fd < 0:
            self._copy()
        else:
            self._splice()

    def _copy(self) -> None:
        pipe = self.pipe
        scratch = pipe.scratch
        try:
            n = self.src_sock.recv_into(scratch)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            pipe.failed(self, exc, reading=True)
            return
        if n == 0:
            self._at_eof()
            return
        self._count(n)
        try:
            sent = self.dst_sock.send(scratch[:n])
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            pipe.failed(self, exc, reading=False)
            return
        if sent < n:
            # The destination is full: keep the rest, stop reading (backpressure).
            self.backlog = bytes(scratch[sent:n])
            self._wait_writable()
        elif self.moved >= pipe.splice_after:
            # Bulk transfer: from now on the kernel moves the bytes.
            self.open_pipe()

    def _splice(self) -> None:
        pipe = self.pipe
        # A few rounds per wake-up for bulk transfers, bounded so that one
        # connection cannot starve the others.
        for _ in range(4):
            want = self.capacity - self.pending
            try:
                n = os.splice(self.src, self.write_fd, want, flags=_FLAGS)
            except OSError as exc:
                if exc.errno in _AGAIN:
                    return
                pipe.failed(self, exc, reading=True)
                return
            if n == 0:
                self._at_eof()
                return
            self.pending += n
            self._count(n)
            if not self.flush() or n < want:
                # Blocked, or the socket is drained (a retry would only raise EAGAIN).
                return

    def _wait_writable(self) -> None:
        if not self.waiting_write:
            self.waiting_write = True
            self.stop_reading()
            self.pipe.loop.add_writer(self.dst, self.on_writable)

    def flush(self) -> bool:
        """Move buffered bytes to the destination; False when it would block."""
        if self.backlog:
            try:
                sent = self.dst_sock.send(self.backlog)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self.pipe.failed(self, exc, reading=False)
                return False
            self.backlog = self.backlog[sent:]
            if self.backlog:
                self._wait_writable()
                return False
        while self.pending:
            try:
                n = os.splice(self.read_fd, self.dst, self.pending, flags=_FLAGS)
            except OSError as exc:
                if exc.errno in _AGAIN:
                    self._wait_writable()
                    return False
                self.pipe.failed(self, exc, reading=False)
                return False
            self.pending -= n
        return True

    def on_writable(self) -> None:
        if self.pipe.closed or not self.flush():
            return
        self.waiting_write = False
        self.pipe.loop.remove_writer(self.dst)
        if self.eof:
            self.finish()
            return
        if self.write_fd < 0 and self.moved >= self.pipe.splice_after:
            self.open_pipe()
        self.start()

    def finish(self) -> None:
        """Source EOF and nothing left to write: half-close the destination."""
        if self.done:
            return
        self.done = True
        other = self.pipe.down if self.upstream else self.pipe.up
        if not other.done:
            try:
                self.dst_sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        # else: both directions are done and both sockets close right now;
        # close() sends the same FIN, so the shutdown call would be redundant.
        self.pipe.direction_done()

    def close(self) -> None:
        loop = self.pipe.loop
        if self.reading:
            self.reading = False
            self.pipe.poller.remove_reader(self.src)
        if self.waiting_write:
            self.waiting_write = False
            loop.remove_writer(self.dst)
        if self.write_fd >= 0:
            os.close(self.read_fd)
            os.close(self.write_fd)
            self.read_fd = self.write_fd = -1


class SplicePipe(Engine):
    """Both directions of one connection, spliced."""

    __slots__ = (
        "loop",
        "poller",
        "conn",
        "stats",
        "buffer_size",
        "client",
        "backend",
        "up",
        "down",
        "closed",
        "spliced",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        conn: Connection,
        stats: RelayStats,
        client: socket.socket,
        backend: socket.socket,
        buffer_size: int,
        *,
        splice_after: int,
        scratch: memoryview,
        poller: Poller,
    ) -> None:
        self.loop = loop
        #: Read readiness goes through the relay's own epoll set (see Poller).
        self.poller = poller
        self.conn = conn
        self.stats = stats
        self.buffer_size = buffer_size
        #: Bytes a direction carries by copying before it switches to splice (0: at once).
        self.splice_after = splice_after
        #: The read buffer of copy mode, shared by every connection of the relay
        #: (one event loop thread: it is always empty between callbacks).
        self.scratch = scratch
        self.client = client
        self.backend = backend
        self.closed = False
        self.spliced = False
        self.up = _Direction(self, client, backend, upstream=True)
        try:
            self.down = _Direction(self, backend, client, upstream=False)
        except OSError:
            self.up.close()
            raise

    def start(self) -> None:
        self.up.start()
        self.down.start()

    def direction_done(self) -> None:
        if self.up.done and self.down.done:
            self._close("closed", reset=False)

    def failed(self, direction: _Direction, exc: OSError, *, reading: bool) -> None:
        # Reading fails on the direction's source, writing on its destination.
        side = "client" if direction.upstream == reading else "backend"
        if exc.errno == errno.ECONNRESET:
            reason = f"{side} reset"
        elif exc.errno == errno.EPIPE:
            reason = f"{side} closed"
        else:
            reason = f"{side} error: {exc.strerror}"
        # Reset both: the side that failed is gone, the other must learn promptly.
        self._close(reason, reset=True)

    def abort(self, reason: str) -> None:
        self._close(reason, reset=True)

    def _close(self, reason: str, *, reset: bool) -> None:
        if self.closed:
            return
        self.closed = True
        self.conn.end(reason)
        self.up.close()
        self.down.close()
        for sock in (self.client, self.backend):
            if reset:
                reset_socket(sock)
            sock.close()
        done = self.conn.done
        if done is not None and not done.done():
            done.set_result(None)
