"""The IPv6 tcping behind ``totd-faith check``: resolve AAAA through DNS64, time TCP connects.

The classic totd+faithd set-up had to patch IPv6 into tcping to see whether
a synthesized address really reached the IPv4 daemon behind the relay.  This
module does the two halves: one AAAA query to the DNS64 server (UDP, then TCP
when the answer is truncated, RFC 7766 section 5) and timed IPv6 connects.
It touches sockets and clocks; formatting and statistics are plain functions
so they can be tested without either.  The CLI prints.
"""

from __future__ import annotations

import errno
import ipaddress
import math
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype

from totd_faith.endpoints import Endpoint
from totd_faith.errors import AddressError, PeerError
from totd_faith.prefix import Nat64Prefix

#: Limits on the command's numbers, so a typo cannot run for hours.
MAX_COUNT = 1000
MAX_TIMEOUT = 60.0
MAX_INTERVAL = 60.0

#: EDNS payload offered to the DNS64 server (the DNS Flag Day 2020 size).
EDNS_PAYLOAD = 1232


class ResolveError(PeerError):
    """The DNS64 server did not give us an IPv6 address; the message says why."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One connection attempt: the time to connect, or why it failed."""

    seq: int
    address: ipaddress.IPv6Address
    port: int
    seconds: float | None
    error: str | None = None

    @property
    def connected(self) -> bool:
        return self.seconds is not None


@dataclass(frozen=True, slots=True)
class Summary:
    """Counts and connect-time statistics over all attempts (times in seconds)."""

    attempts: int
    connected: int
    minimum: float | None
    average: float | None
    maximum: float | None

    @classmethod
    def of(cls, attempts: Sequence[Attempt]) -> Summary:
        times = [a.seconds for a in attempts if a.seconds is not None]
        if not times:
            return cls(len(attempts), 0, None, None, None)
        return cls(len(attempts), len(times), min(times), math.fsum(times) / len(times), max(times))

    @property
    def failed(self) -> int:
        return self.attempts - self.connected


# -- parsing the command's arguments --------------------------------------------------


def parse_target(text: str) -> ipaddress.IPv6Address | dns.name.Name:
    """An IPv6 literal (``::1``, ``[2001:db8::1]``) or a host name to resolve.

    An IPv4 literal is refused: this is an IPv6 check, and the address a
    client would use is the one inside the translation prefix.
    """
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        pass
    else:
        if isinstance(address, ipaddress.IPv4Address):
            raise AddressError(
                f"{text} is an IPv4 address; check connects over IPv6: give a name, or the "
                f"address inside the prefix ('totd-faith addr encode --prefix PREFIX {text}')"
            )
        return address
    if not bare or bare.startswith("-") or any(c.isspace() for c in bare):
        raise AddressError(f"{text!r} is not a host name or an IPv6 address")
    try:
        return dns.name.from_text(bare)
    except dns.exception.DNSException as exc:
        raise AddressError(f"{text!r} is not a host name ({exc})") from None


def parse_service(text: str) -> int:
    """A TCP port number, or a service name from /etc/services (``ssh``, ``http``)."""
    if text.isdigit():
        port = int(text)
        if 1 <= port <= 65535:
            return port
        raise AddressError(f"{text} is not a port number (1-65535)")
    try:
        return socket.getservbyname(text, "tcp")
    except OSError:
        raise AddressError(f"{text!r} is neither a port number nor a TCP service name") from None


# -- DNS -------------------------------------------------------------------------------


def _exchange(query: dns.message.Message, server: Endpoint, timeout: float) -> dns.message.Message:
    deadline = time.monotonic() + timeout
    host = str(server.host)
    response = dns.query.udp(query, host, timeout=timeout, port=server.port, ignore_unexpected=True)
    if response.flags & dns.flags.TC:
        # RFC 7766 section 5: a truncated UDP answer is retried over TCP.
        remaining = max(deadline - time.monotonic(), 0.05)
        response = dns.query.tcp(query, host, timeout=remaining, port=server.port)
    return response


def resolve_aaaa(
    name: dns.name.Name, server: Endpoint, timeout: float
) -> list[ipaddress.IPv6Address]:
    """The AAAA addresses of ``name`` as ``server`` answers them, CNAME chain followed."""
    shown = name.to_text(omit_final_dot=True)
    query = dns.message.make_query(name, dns.rdatatype.AAAA, use_edns=0, payload=EDNS_PAYLOAD)
    try:
        response = _exchange(query, server, timeout)
    except dns.exception.Timeout:
        raise ResolveError(
            f"no answer from the DNS server {server} within {timeout:g} s "
            "(is totd-faith dns running there? see --server)"
        ) from None
    except ConnectionRefusedError:
        raise ResolveError(f"the DNS server {server} refused the TCP connection") from None
    except OSError as exc:
        raise ResolveError(f"cannot query the DNS server {server}: {exc.strerror or exc}") from None
    except dns.exception.DNSException as exc:
        raise ResolveError(f"bad answer from the DNS server {server}: {exc}") from None
    rcode = response.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        raise ResolveError(f"{shown}: no such name (NXDOMAIN from {server})")
    if rcode != dns.rcode.NOERROR:
        raise ResolveError(f"{shown}: the DNS server {server} answered {dns.rcode.to_text(rcode)}")
    if not isinstance(response, dns.message.QueryMessage):
        raise ResolveError(f"bad answer from the DNS server {server}: not a query response")
    try:
        answer = response.resolve_chaining().answer
    except dns.exception.DNSException as exc:
        raise ResolveError(f"bad answer from the DNS server {server}: {exc}") from None
    if answer is None:
        raise ResolveError(
            f"{shown} has no AAAA record, and the DNS server {server} synthesized none "
            "(the name has no A record either, or DNS64 is off for it)"
        )
    return [ipaddress.IPv6Address(rdata.address) for rdata in answer]


# -- TCP -------------------------------------------------------------------------------


def _describe(exc: OSError, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"timeout (no answer within {timeout:g} s)"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return f"unreachable ({exc.strerror})"
    return f"error ({exc.strerror or exc})"


def connect_once(
    address: ipaddress.IPv6Address,
    port: int,
    timeout: float,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[float | None, str | None]:
    """(seconds to connect, None) or (None, why not) for one TCP connect over IPv6."""
    scope = 0
    if address.scope_id:
        # A link-local literal such as fe80::1%eth0: the tuple's scope ID wins
        # over the text's, so pass the interface index explicitly.
        try:
            scope = (
                int(address.scope_id)
                if address.scope_id.isdigit()
                else socket.if_nametoindex(address.scope_id)
            )
        except OSError:
            return None, f"error (no interface named {address.scope_id!r})"
    host = str(address).partition("%")[0]
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        start = clock()
        try:
            sock.connect((host, port, 0, scope))
        except OSError as exc:
            return None, _describe(exc, timeout)
        return clock() - start, None
    finally:
        sock.close()


def probe(
    addresses: Sequence[ipaddress.IPv6Address],
    port: int,
    *,
    count: int,
    timeout: float,
    interval: float,
    connect: Callable[[ipaddress.IPv6Address, int, float], tuple[float | None, str | None]] = (
        connect_once
    ),
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Attempt]:
    """``count`` attempts, taking the addresses in turn, ``interval`` seconds apart."""
    for seq in range(1, count + 1):
        if seq > 1 and interval > 0:
            sleep(interval)  # pacing between probes, like ping -i
        address = addresses[(seq - 1) % len(addresses)]
        seconds, error = connect(address, port, timeout)
        yield Attempt(seq, address, port, seconds, error)


# -- output ----------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}"


def format_attempt(attempt: Attempt) -> str:
    where = f"[{attempt.address}]:{attempt.port}"
    if attempt.seconds is not None:
        return f"{where}: seq={attempt.seq} connected time={_ms(attempt.seconds)} ms"
    return f"{where}: seq={attempt.seq} {attempt.error}"


def format_summary(target: str, port: int, summary: Summary) -> str:
    loss = 100 * summary.failed // summary.attempts if summary.attempts else 0
    plural = "" if summary.attempts == 1 else "s"
    line = (
        f"--- {target} port {port}: {summary.attempts} attempt{plural}, "
        f"{summary.connected} connected, "
        f"{summary.failed} failed ({loss}% failed)"
    )
    if summary.minimum is not None and summary.average is not None and summary.maximum is not None:
        line += (
            f", time min/avg/max = {_ms(summary.minimum)}/{_ms(summary.average)}/"
            f"{_ms(summary.maximum)} ms"
        )
    return line


def describe_address(address: ipaddress.IPv6Address, prefixes: Sequence[Nat64Prefix]) -> str:
    """``2001:db8:64::c000:201 (2001:db8:64::/96 -> 192.0.2.1)`` when inside a known prefix."""
    for prefix in prefixes:
        if address in prefix:
            try:
                return f"{address} ({prefix} -> {prefix.extract(address)})"
            except AddressError:
                return f"{address} (inside {prefix}, but not a valid RFC 6052 address)"
    return f"{address} (not inside a translation prefix: a native IPv6 address)"


__all__ = [
    "Attempt",
    "ResolveError",
    "Summary",
    "connect_once",
    "describe_address",
    "format_attempt",
    "format_summary",
    "parse_service",
    "parse_target",
    "probe",
    "resolve_aaaa",
]
