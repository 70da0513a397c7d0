"""The cold path's driver: a plain AAAA miss answered by the wire-level DNS64.

A cache miss for a plain AAAA query (see :meth:`FastDns64.eligible`) is a
short chain of callbacks, without a task or a future: the AAAA query goes to
the upstreams (:meth:`UpstreamPool.ask`); its reply either settles the answer
(NXDOMAIN, real AAAA) or sends the A query, whose reply gives the synthesized
answer (RFC 6147 sections 5.1.1-5.1.7, in :mod:`totd_faith.dns64fast`).

Anything the fast path does not handle -- an unusual or failed reply, or a
bug -- goes to the DNS64 core with the replies received so far, so no upstream
is asked twice and the answer is the core's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from totd_faith.dns64fast import NEED_A, FastAnswer, FastDns64, Reply
from totd_faith.dnswire import TYPE_A, TYPE_AAAA, QueryHead

if TYPE_CHECKING:
    from totd_faith.dnsserver import DnsService

log = logging.getLogger("totd_faith.dns")

_A_IN = b"\x00\x01\x00\x01"  # qtype A, qclass IN

#: Receives the response bytes (or None: nothing to send) exactly once.
Deliver = Callable[[bytes | None], None]
#: The same as ``send(peer, wire)``: the UDP listener's one bound ``send_answer``
#: with the client's address as ``peer``, so no callable is built per query.
Send = Callable[[Any, bytes | None], None]


def deliver_to(deliver: Deliver, wire: bytes | None) -> None:
    """The :data:`Send` for a plain :data:`Deliver` (TCP): the peer is the callback."""
    deliver(wire)


def as_deliver(send: Send, peer: Any) -> Deliver:
    """``send`` and ``peer`` as one :data:`Deliver` (for the core path)."""
    if send is deliver_to:
        return peer  # type: ignore[no-any-return]
    return partial(send, peer)


class Miss:
    """One AAAA cache miss on its way through the upstreams, for a client that
    gets DNS64 synthesis (the only clients the fast path serves)."""

    __slots__ = ("service", "fast", "data", "host", "head", "limit", "send", "peer", "aaaa")

    #: The AAAA reply, once it asked for the A query (unset before).
    aaaa: Reply

    def __init__(
        self,
        service: DnsService,
        fast: FastDns64,
        data: bytes,
        host: str,
        head: QueryHead,
        limit: int,
        send: Send,
        peer: Any,
    ) -> None:
        self.service = service
        self.fast = fast
        self.data = data
        self.host = host
        self.head = head
        self.limit = limit
        self.send = send
        self.peer = peer

    def start(self) -> None:
        upstreams = self.service.upstreams
        assert upstreams is not None
        # The question asked is the client's (scan_query lowercased its name).
        upstreams.ask(
            self.fast.upstream_query(self.data, self.head, TYPE_AAAA),
            self.fast.check,
            self.on_aaaa,
            self.head[0],
        )

    def on_aaaa(self, reply: Reply | bytes | None) -> None:
        fast = self.fast
        step: FastAnswer | bytes | None = None
        try:
            if isinstance(reply, Reply):
                step = fast.after_aaaa(self.data, self.head, reply)
                if step == NEED_A:
                    self.aaaa = reply
                    upstreams = self.service.upstreams
                    assert upstreams is not None
                    head = self.head
                    upstreams.ask(
                        fast.upstream_query(self.data, head, TYPE_A),
                        fast.check,
                        self.on_a,
                        head[0][:-4] + _A_IN,
                    )
                    return
        except Exception:
            self._bug()
            step = None
        if isinstance(step, FastAnswer):
            self.service.fast_answered(self, step)
        else:
            self.service.to_core(self, {self.upstream_query(TYPE_AAAA): _raw(reply)})

    def on_a(self, reply: Reply | bytes | None) -> None:
        done: FastAnswer | None = None
        try:
            if isinstance(reply, Reply):
                done = self.fast.after_a(self.data, self.head, self.aaaa, reply)
        except Exception:
            self._bug()
            done = None
        if done is not None:
            self.service.fast_answered(self, done)
        else:
            self.service.to_core(
                self,
                {
                    self.upstream_query(TYPE_AAAA): self.aaaa.data,
                    self.upstream_query(TYPE_A): _raw(reply),
                },
            )

    def upstream_query(self, rdtype: int) -> bytes:
        """The query sent upstream for ``rdtype``, again (for the core's prefetched
        replies: rebuilt on that rare path rather than kept on every miss)."""
        return self.fast.upstream_query(self.data, self.head, rdtype)

    def _bug(self) -> None:
        # A fast-path bug must cost speed, not an answer: the core decides.
        self.service.stats.errors += 1
        log.debug("dns: fast path failed for %s", self.host, exc_info=True)


def _raw(reply: Reply | bytes | Any) -> bytes | None:
    if isinstance(reply, Reply):
        return reply.data
    return reply if isinstance(reply, bytes) else None
