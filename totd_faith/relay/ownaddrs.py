"""The relay host's own IPv4 addresses, so that the relay never connects to itself.

A client dialling ``PREFIX::<own IPv4>`` would make the relay connect to its
own services (or to itself, a loop); :class:`~totd_faith.policy.RelayAccess`
refuses those destinations unless a rule names them.  The kernel's list of
local addresses is read from ``/proc/net/fib_trie`` (every address the
kernel treats as local, in the current network namespace), with ``ip -4
addr`` as the fallback where /proc is not mounted.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

_A = TypeVar("_A", ipaddress.IPv4Address, ipaddress.IPv6Address)

FIB_TRIE = Path("/proc/net/fib_trie")


def parse_fib_trie(text: str) -> frozenset[ipaddress.IPv4Address]:
    """Addresses marked ``/32 host LOCAL`` in the kernel's FIB dump."""
    found: set[ipaddress.IPv4Address] = set()
    last: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|--"):
            last = stripped[3:].strip()
        elif stripped == "/32 host LOCAL" and last is not None:
            try:
                found.add(ipaddress.IPv4Address(last))
            except ValueError:
                pass
    return frozenset(found)


def parse_ip_addr(text: str) -> frozenset[ipaddress.IPv4Address]:
    """Addresses from ``ip -4 -o addr show`` lines (``... inet 192.0.2.1/24 ...``)."""
    found: set[ipaddress.IPv4Address] = set()
    for line in text.splitlines():
        words = line.split()
        if "inet" in words:
            text_addr = words[words.index("inet") + 1].partition("/")[0]
            try:
                found.add(ipaddress.IPv4Address(text_addr))
            except ValueError:
                pass
    return frozenset(found)


def own_ipv4_addresses() -> frozenset[ipaddress.IPv4Address]:
    """This host's IPv4 addresses (current network namespace); empty if unknown."""
    return proc_or_ip(FIB_TRIE, parse_fib_trie, "-4", parse_ip_addr)


def proc_or_ip(
    path: Path,
    parse: Callable[[str], frozenset[_A]],
    family: str,
    parse_ip: Callable[[str], frozenset[_A]],
) -> frozenset[_A]:
    """``parse`` of the /proc file ``path``, or where /proc is not mounted ``parse_ip``
    of ``ip FAMILY -o addr show``; empty if neither can be read."""
    try:
        return parse(path.read_text())
    except OSError:
        pass
    try:
        out = subprocess.run(
            ["ip", family, "-o", "addr", "show"], capture_output=True, text=True, timeout=5
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return parse_ip(out)
