"""The DNS proxy's UDP listener: the replay and cache-hit fast paths.

A readiness callback drains up to :data:`UDP_BATCH` datagrams per wake-up
with plain ``recvfrom``/``sendto`` (no transport).  Per datagram, fastest
first:

* **replay**: the exact query bytes after the ID were answered from the cache
  within the current second for a client of the same class: answer with the
  same bytes and this query's ID (one dictionary look-up, no parsing);
* **cache hit**: :func:`~totd_faith.dnswire.scan_query` reads the header and
  question, the cache gives the stored answer with its TTLs counted down, and
  the client's ID, RD bit and question bytes are copied into it;
* otherwise the service's slow path (dnspython, the DNS64 core, upstreams).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import dns.message

from totd_faith.dnswire import HEADER_SIZE, scan_query, truncate

if TYPE_CHECKING:
    from totd_faith.dnsserver import DnsService

log = logging.getLogger("totd_faith.dns")

#: Client memo value for "not allowed" (see DnsService.classify): such
#: clients always take the slow path, where the DNS64 core answers REFUSED.
REFUSED_CLIENT = -1


class UdpListener:
    """One UDP socket, read directly with ``add_reader`` (no transport).

    Each wake-up drains up to :data:`UDP_BATCH` datagrams with plain
    ``recvfrom``/``sendto`` calls, so a busy listener pays for one event-loop
    iteration per batch instead of one per packet.  The cache-hit path is
    written out inline: it is the hottest code in the program.
    """

    def __init__(self, service: DnsService, sock: socket.socket) -> None:
        self.service = service
        self.sock = sock
        self.reading_stopped = False
        self.closed = False
        #: Answers waiting for the end of this turn of the loop (see send_answer).
        self._outbox: list[tuple[bytes, tuple[Any, ...]]] = []
        #: Everything but a replay: the scanned cache look-up, else the slow path.
        self.other = self._scanned()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_reader(self.sock.fileno(), self._reader())

    def stop_reading(self, loop: asyncio.AbstractEventLoop) -> None:
        """Take no new queries; answers still in flight can still be sent."""
        if not self.reading_stopped:
            self.reading_stopped = True
            loop.remove_reader(self.sock.fileno())

    def close(self, loop: asyncio.AbstractEventLoop) -> None:
        self.stop_reading(loop)
        if not self.closed:
            self.closed = True
            self.sock.close()

    def _reader(self) -> Callable[[], None]:
        """The readiness callback, as a closure: its state lives in cells, so a
        wake-up that brings one datagram costs no attribute look-ups."""
        service = self.service
        recvfrom = self.sock.recvfrom
        memo = service.memo
        replays = service.replays
        stats = service.stats
        by_type = stats.queries_by_type
        by_rcode = stats.responses_by_rcode
        clock = service.clock
        other = self.other
        outbox = self._outbox
        append = outbox.append
        flush = self._flush

        def readable() -> None:
            # One clock reading per batch: a batch takes well under a second,
            # and cached TTLs change only on whole seconds.
            now = clock()
            hits = 0
            try:
                for _ in range(UDP_BATCH):
                    try:
                        data, addr = recvfrom(_UDP_RECV_SIZE)
                    except (BlockingIOError, InterruptedError):
                        return
                    except OSError:
                        # e.g. ECONNREFUSED left by an ICMP error for an earlier answer.
                        continue
                    # Replay: these exact bytes (all but the ID) were answered from
                    # the cache within the current second for a client of the same
                    # class, so the answer is the same bytes with this query's ID.
                    replay = replays.get(data[2:])
                    if replay is not None and now < replay[1] and memo.get(addr[0]) == replay[2]:
                        append((data[:2] + replay[0], addr))
                        hits += 1
                        by_type[replay[3]] += 1
                        by_rcode[replay[4]] += 1
                        continue
                    other(data, addr, now)
            finally:
                stats.cache_hits += hits
                # The batch's answers back to back: one wake-up of a client that
                # sent many queries, not one per answer (see UpstreamPool._flush).
                if outbox:
                    flush()

        return readable

    def _scanned(self) -> Callable[[bytes, tuple[Any, ...], float], None]:
        """:attr:`other` as a closure, like :meth:`_reader` (the cache itself is
        looked up through the service: a reload replaces it)."""
        service = self.service
        memo = service.memo
        classify = service.classify
        replays = service.replays
        stats = service.stats
        by_type = stats.queries_by_type
        by_rcode = stats.responses_by_rcode
        append = self._outbox.append
        send_answer = self.send_answer

        def other(data: bytes, addr: tuple[Any, ...], now: float) -> None:
            try:
                head = scan_query(data)
                if head is None:
                    client_class = REFUSED_CLIENT
                else:
                    qkey, question_end, qflags, payload, qtype = head
                    host = addr[0]
                    known = memo.get(host)
                    client_class = classify(host) if known is None else known
                    if client_class >= 0:
                        found = service.cache.get_fresh((qkey, qflags | client_class), now)
                        if found is not None:
                            hit = found[0]
                            # ID from the query; RD copied (RFC 1035 section 4.1.1);
                            # the question exactly as asked, letter case included.
                            out = b"".join(
                                (
                                    data[:2],
                                    _RD_PATCH[hit[2] & 0xFE | data[2] & 0x01],
                                    hit[3:HEADER_SIZE],
                                    data[HEADER_SIZE:question_end],
                                    hit[question_end:],
                                )
                            )
                            if len(out) > payload:
                                # Too big for this client over UDP: cut at an RRset
                                # boundary and set TC (RFC 1035 section 4.2.1).  The
                                # same query bytes give the same cut, so it replays.
                                out = truncate(out, payload)
                            append((out, addr))
                            rcode = hit[3] & 0x0F
                            stats.cache_hits += 1
                            by_type[qtype] += 1
                            by_rcode[rcode] += 1
                            if service.log_queries:
                                service._log_query(host, out, True)
                            elif len(out) <= REPLAY_MAX_BYTES:
                                # Not with the query log on: every query must pass here.
                                if len(replays) >= REPLAY_MAX:
                                    replays.clear()
                                replays[data[2:]] = (
                                    out[2:],
                                    found[1],
                                    client_class,
                                    qtype,
                                    rcode,
                                )
                            return
                if service.admit(data):
                    limit = head[3] if head is not None else udp_limit(data)
                    service.handle(data, addr[0], head, client_class, limit, send_answer, addr)
            except Exception:
                stats.errors += 1
                log.debug("dns: failed to handle a UDP packet from %s", addr, exc_info=True)

        return other

    def send_answer(self, addr: tuple[Any, ...], wire: bytes | None) -> None:
        """Queue an answer from the miss paths; sent at the end of this turn of
        the loop with the others (one wake-up of a busy client per batch, as for
        upstream queries: see UpstreamPool._flush)."""
        if wire is not None:
            outbox = self._outbox
            outbox.append((wire, addr))
            if len(outbox) == 1:
                asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        outbox = self._outbox
        if not self.closed:
            sendto = self.sock.sendto
            for wire, addr in outbox:
                try:
                    sendto(wire, addr)
                except OSError as exc:
                    # A full socket buffer or a vanished client: UDP answers may be lost.
                    log.debug("dns: cannot answer %s: %s", addr, exc)
        outbox.clear()


#: One-byte values for header byte 2, precomputed (no per-packet bytes() call).
_RD_PATCH = [bytes((i,)) for i in range(256)]
#: Most remembered exact queries for the replay path (cleared when full),
#: and the largest answer remembered there (bounds it to about 5 MB).
REPLAY_MAX = 4_096
REPLAY_MAX_BYTES = 1_232
#: Datagrams handled per wake-up before other work gets a turn.
UDP_BATCH = 64
_UDP_RECV_SIZE = 65_535


def udp_limit(data: bytes) -> int:
    """The client's UDP payload size when the fast scan did not read it."""
    try:
        message = dns.message.from_wire(data)
    except Exception:
        return 512
    if message.edns >= 0:
        return max(message.payload, 512)
    return 512
