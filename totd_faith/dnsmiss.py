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
from typing import TYPE_CHECKING, Any

from totd_faith.dns64fast import NEED_A, FastAnswer, FastDns64, Reply
from totd_faith.dnswire import TYPE_A, TYPE_AAAA, QueryHead

if TYPE_CHECKING:
    from totd_faith.dnsserver import DnsService

log = logging.getLogger("totd_faith.dns")

_A_IN = b"\x00\x01\x00\x01"  # qtype A, qclass IN

#: Receives the response bytes (or None: nothing to send) exactly once.
Deliver = Callable[[bytes | None], None]


class Miss:
    """One AAAA cache miss on its way through the upstreams."""

    __slots__ = (
        "service",
        "fast",
        "data",
        "host",
        "head",
        "client_class",
        "limit",
        "deliver",
        "aaaa_query",
        "a_query",
        "aaaa",
    )

    def __init__(
        self,
        service: DnsService,
        fast: FastDns64,
        data: bytes,
        host: str,
        head: QueryHead,
        client_class: int,
        limit: int,
        deliver: Deliver,
    ) -> None:
        self.service = service
        self.fast = fast
        self.data = data
        self.host = host
        self.head = head
        self.client_class = client_class
        self.limit = limit
        self.deliver = deliver
        self.aaaa_query = b""
        self.a_query = b""
        self.aaaa: Reply | None = None

    def start(self) -> None:
        self.aaaa_query = self.fast.upstream_query(self.data, self.head, TYPE_AAAA)
        upstreams = self.service.upstreams
        assert upstreams is not None
        # The question asked is the client's (scan_query lowercased its name).
        upstreams.ask(self.aaaa_query, self.fast.check, self.on_aaaa, self.head[0])

    def on_aaaa(self, reply: Reply | bytes | None) -> None:
        step: FastAnswer | bytes | None = None
        try:
            if isinstance(reply, Reply):
                step = self.fast.after_aaaa(self.data, self.head, reply)
                if step == NEED_A:
                    self.aaaa = reply
                    upstreams = self.service.upstreams
                    assert upstreams is not None
                    self.a_query = self.fast.upstream_query(self.data, self.head, TYPE_A)
                    upstreams.ask(
                        self.a_query, self.fast.check, self.on_a, self.head[0][:-4] + _A_IN
                    )
                    return
        except Exception:
            self._bug()
            step = None
        if isinstance(step, FastAnswer):
            self.service.fast_answered(self, step)
        else:
            self.service.to_core(self, {self.aaaa_query: _raw(reply)})

    def on_a(self, reply: Reply | bytes | None) -> None:
        aaaa = self.aaaa
        assert aaaa is not None
        done: FastAnswer | None = None
        try:
            if isinstance(reply, Reply):
                done = self.fast.after_a(self.data, self.head, aaaa, reply)
        except Exception:
            self._bug()
            done = None
        if done is not None:
            self.service.fast_answered(self, done)
        else:
            self.service.to_core(self, {self.aaaa_query: aaaa.data, self.a_query: _raw(reply)})

    def _bug(self) -> None:
        # A fast-path bug must cost speed, not an answer: the core decides.
        self.service.stats.errors += 1
        log.debug("dns: fast path failed for %s", self.host, exc_info=True)


def _raw(reply: Reply | bytes | Any) -> bytes | None:
    if isinstance(reply, Reply):
        return reply.data
    return reply if isinstance(reply, bytes) else None
