"""Bookkeeping for one relayed TCP connection, shared by the copy engines."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
from typing import Any

from totd_faith.endpoints import Endpoint

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_LINGER_RESET = struct.pack("ii", 1, 0)


def reset_socket(sock: Any) -> None:
    """Make the next close send RST instead of FIN (SO_LINGER with zero timeout)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    except OSError:
        pass


class Connection:
    """One relayed connection's bookkeeping, whichever engine moves its bytes."""

    __slots__ = (
        "client",
        "client_port",
        "dialled",
        "dialled_port",
        "backend",
        "started",
        "up",
        "down",
        "reason",
        "idle_mark",
        "idle_since",
        "engine",
        "done",
    )

    def __init__(
        self,
        client: IPAddress,
        client_port: int,
        dialled: IPAddress,
        dialled_port: int,
        started: float,
    ) -> None:
        self.client = client
        self.client_port = client_port
        self.dialled = dialled
        self.dialled_port = dialled_port
        self.backend: Endpoint | None = None
        self.started = started
        self.up = 0  # client -> backend
        self.down = 0  # backend -> client
        self.reason = ""
        self.idle_mark = 0
        self.idle_since = started
        self.engine: Engine | None = None
        self.done: asyncio.Future[None] | None = None

    def end(self, reason: str) -> None:
        """Record why the connection ended (the first reason given wins)."""
        if not self.reason:
            self.reason = reason


class Engine:
    """What the relay needs from a copy engine."""

    def abort(self, reason: str) -> None:
        raise NotImplementedError
