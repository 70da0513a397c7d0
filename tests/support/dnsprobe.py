"""Readiness of DNS servers: poll real queries until an answer comes, with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from tests.support.process import Daemon
from totd_faith.endpoints import Endpoint

Check = Callable[[dns.message.Message], bool]


def any_response(response: dns.message.Message) -> bool:
    return True


def authoritative_answer(response: dns.message.Message) -> bool:
    """The zone is loaded: NOERROR with an answer (a server still loading says SERVFAIL)."""
    return response.rcode() == dns.rcode.NOERROR and bool(response.answer)


def wait_dns(
    endpoint: Endpoint,
    qname: str = ".",
    rdtype: str = "SOA",
    *,
    check: Check = any_response,
    timeout: float = 10.0,
    daemon: Daemon | None = None,
) -> dns.message.Message:
    """Query ``endpoint`` over UDP until ``check`` accepts a response or ``timeout`` passes.

    When ``daemon`` is given, its exit ends the wait at once with its log in the error.
    """
    deadline = time.monotonic() + timeout
    last = "no response"
    query = dns.message.make_query(qname, dns.rdatatype.from_text(rdtype))
    while True:
        if daemon is not None and not daemon.alive():
            raise daemon.fail(f"exited before answering {qname} {rdtype}")
        try:
            response = dns.query.udp(query, str(endpoint.host), port=endpoint.port, timeout=0.25)
        except (dns.exception.Timeout, OSError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if check(response):
                return response
            last = f"rcode {dns.rcode.to_text(response.rcode())}, {len(response.answer)} answers"
        if time.monotonic() >= deadline:
            problem = f"did not answer {qname} {rdtype} at {endpoint} within {timeout}s ({last})"
            if daemon is not None:
                raise daemon.fail(problem)
            raise TimeoutError(problem)
        time.sleep(0.05)
