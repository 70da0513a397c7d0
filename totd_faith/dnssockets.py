"""Listening sockets of the DNS proxy, and bind failures as operator errors.

Sockets are made here rather than by the event loop so that the options are
explicit (IPV6_V6ONLY, SO_REUSEPORT for worker processes, a large UDP receive
buffer) and a failure becomes one line that says what to do.
"""

from __future__ import annotations

import errno
import socket

from totd_faith.endpoints import Endpoint
from totd_faith.errors import OperatorError


def bind_error(endpoint: Endpoint, proto: str, exc: OSError) -> OperatorError:
    where = f"cannot listen on {endpoint} ({proto})"
    if exc.errno == errno.EADDRINUSE:
        return OperatorError(
            f"{where}: the address is already in use; stop the other DNS server or "
            "choose another address with --listen"
        )
    if exc.errno == errno.EACCES:
        return OperatorError(
            f"{where}: permission denied; ports below 1024 need root or "
            "CAP_NET_BIND_SERVICE (e.g. setcap cap_net_bind_service=+ep on the Python "
            "binary, or AmbientCapabilities= in systemd), or use a port above 1023"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return OperatorError(f"{where}: this host has no such address; check --listen")
    return OperatorError(f"{where}: {exc.strerror or exc}")


def listening_socket(
    endpoint: Endpoint, kind: socket.SocketKind, reuse_port: bool = False
) -> socket.socket:
    family = socket.AF_INET6 if endpoint.family_is_v6 else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        if reuse_port:
            # Worker processes (service.workers > 1) share the port and the
            # kernel spreads datagrams and connections over them.  Only then:
            # otherwise a second proxy could silently bind the same port.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            # Separate v4 and v6 listeners may share a port (and clients are never
            # seen as v4-mapped addresses).
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        else:
            # Absorb bursts: a small receive buffer drops queries under load.
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
            except OSError:
                pass
        sock.bind(endpoint.sockaddr)
    except OSError as exc:
        sock.close()
        raise bind_error(endpoint, "tcp" if kind == socket.SOCK_STREAM else "udp", exc) from None
    sock.setblocking(False)
    return sock
