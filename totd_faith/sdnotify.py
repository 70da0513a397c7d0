"""systemd readiness notification (sd_notify protocol), without libsystemd.

systemd passes ``NOTIFY_SOCKET`` to services with ``Type=notify``; we send
``READY=1`` once every listener is bound, ``RELOADING=1``/``READY=1`` around a
SIGHUP reload and ``STOPPING=1`` when draining starts.  Outside systemd the
variable is unset and every call is a no-op.
"""

from __future__ import annotations

import os
import socket
import time


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``) to systemd; False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError:
        return False
    return True


def ready(status: str = "") -> bool:
    return notify("READY=1" + (f"\nSTATUS={status}" if status else ""))


def reloading() -> bool:
    # systemd >= 253 wants MONOTONIC_USEC with RELOADING=1 for Type=notify-reload.
    usec = int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1_000_000)
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")


def stopping() -> bool:
    return notify("STOPPING=1")
