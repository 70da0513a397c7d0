"""Free loopback ports for servers that cannot bind port 0 themselves (NSD, Unbound, ...)."""

from __future__ import annotations

import socket

_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free for both TCP and UDP on ``host`` right now.

    DNS servers listen on both protocols, so a port free only for TCP is no use.
    Ports already handed out by this process are not handed out again, which keeps
    two servers started in one test from racing for the same port.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(100):
        with socket.socket(family, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = int(tcp.getsockname()[1])
            if port in _handed_out:
                continue
            try:
                with socket.socket(family, socket.SOCK_DGRAM) as udp:
                    udp.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no port free for both TCP and UDP on {host} after 100 tries")
