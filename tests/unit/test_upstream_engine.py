"""The upstream engine's bookkeeping with stand-in sockets (no network): a query
whose socket fails while its batch is being sent moves on to the next upstream
and is sent there exactly once."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket
import types
from collections import deque
from typing import Any

import dns.message
import pytest

from totd_faith import upstream as upstream_module
from totd_faith.dnsstats import DnsStats
from totd_faith.endpoints import Endpoint
from totd_faith.upstream import UpstreamPool

REFUSING_PORT = 5301
ANSWERING_PORT = 5302


class _FakeSocket:
    """A connected UDP socket: to REFUSING_PORT every send fails as after an
    ICMP port unreachable; to ANSWERING_PORT every query is answered at once."""

    sent: dict[int, list[bytes]] = {}

    def __init__(self, *args: Any) -> None:
        self.port = 0
        self.replies: deque[bytes] = deque()
        self._fd = os.eventfd(0, os.EFD_NONBLOCK)  # readable while replies wait

    def connect(self, address: Any) -> None:
        self.port = address[1]

    def fileno(self) -> int:
        return self._fd

    def send(self, data: bytes) -> int:
        if self.port == REFUSING_PORT:
            raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
        self.sent.setdefault(self.port, []).append(data)
        reply = dns.message.make_response(dns.message.from_wire(data))
        self.replies.append(reply.to_wire())
        os.eventfd_write(self._fd, 1)
        return len(data)

    def recv(self, size: int) -> bytes:
        if not self.replies:
            try:
                os.eventfd_read(self._fd)
            except BlockingIOError:
                pass
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        return self.replies.popleft()

    def close(self) -> None:
        os.close(self._fd)


@pytest.fixture
def fake_sockets(monkeypatch: pytest.MonkeyPatch) -> dict[int, list[bytes]]:
    fake = types.SimpleNamespace(**{k: getattr(socket, k) for k in dir(socket) if k.isupper()})
    fake.socket = _FakeSocket
    monkeypatch.setattr(upstream_module, "socket", fake)
    monkeypatch.setattr(_FakeSocket, "sent", {})
    return _FakeSocket.sent


def _endpoint(port: int) -> Endpoint:
    return Endpoint(ipaddress.ip_address("127.0.0.1"), port)


def test_queries_failed_while_their_batch_is_sent_go_to_the_next_upstream_once(
    fake_sockets: dict[int, list[bytes]],
) -> None:
    async def main() -> list[Any]:
        pool = UpstreamPool(
            [_endpoint(REFUSING_PORT), _endpoint(ANSWERING_PORT)],
            timeout=5.0,
            max_failures=100,
            retry=30.0,
            stats=DnsStats(),
        )
        try:
            # Asked in one turn of the loop: one batch, all to the refusing upstream.
            replies = await asyncio.gather(
                *(pool.query(dns.message.make_query(f"n{i}.example.", "A")) for i in range(12))
            )
            return replies
        finally:
            pool.close()

    replies = asyncio.run(main())
    assert all(r is not None and r.rcode() == 0 for r in replies)
    names = [dns.message.from_wire(d).question[0].name for d in fake_sockets[ANSWERING_PORT]]
    # Every query reached the answering upstream, and only once each.
    assert sorted(str(n) for n in names) == sorted(f"n{i}.example." for i in range(12))
