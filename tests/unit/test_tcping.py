"""The pure parts of ``totd-faith check``: arguments, attempt loop, statistics, output."""

from __future__ import annotations

import errno
import ipaddress

import dns.name
import pytest

from totd_faith.errors import AddressError
from totd_faith.prefix import Nat64Prefix
from totd_faith.tcping import (
    Attempt,
    Summary,
    _describe,
    describe_address,
    format_attempt,
    format_summary,
    parse_service,
    parse_target,
    probe,
)

V6 = ipaddress.IPv6Address


@pytest.mark.parametrize(
    ("text", "expected"),
    [("::1", V6("::1")), ("[2001:db8::1]", V6("2001:db8::1")), ("2001:DB8::1", V6("2001:db8::1"))],
)
def test_ipv6_literals_skip_dns(text: str, expected: ipaddress.IPv6Address) -> None:
    assert parse_target(text) == expected


def test_names_are_dns_names() -> None:
    assert parse_target("cvs.example.org") == dns.name.from_text("cvs.example.org")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("192.0.2.1", "is an IPv4 address"),
        ("", "not a host name"),
        ("a b", "not a host name"),
        ("-n", "not a host name"),
        ("a" * 64 + ".example", "not a host name"),
    ],
)
def test_bad_targets(text: str, problem: str) -> None:
    with pytest.raises(AddressError, match=problem):
        parse_target(text)


def test_services_are_numbers_or_names() -> None:
    assert parse_service("5999") == 5999
    assert parse_service("ssh") == 22
    for bad in ("0", "65536", "no-such-service", "-1"):
        with pytest.raises(AddressError):
            parse_service(bad)


def test_probe_rotates_addresses_and_paces_attempts() -> None:
    calls: list[tuple[ipaddress.IPv6Address, int, float]] = []
    sleeps: list[float] = []

    def connect(
        address: ipaddress.IPv6Address, port: int, timeout: float
    ) -> tuple[float | None, str | None]:
        calls.append((address, port, timeout))
        return (0.002, None) if len(calls) % 2 else (None, "refused")

    addresses = [V6("2001:db8::1"), V6("2001:db8::2")]
    attempts = list(
        probe(
            addresses, 80, count=3, timeout=1.5, interval=0.5, connect=connect, sleep=sleeps.append
        )
    )
    assert [a.address for a in attempts] == [addresses[0], addresses[1], addresses[0]]
    assert [a.seq for a in attempts] == [1, 2, 3]
    assert [a.connected for a in attempts] == [True, False, True]
    assert attempts[1].error == "refused"
    assert sleeps == [0.5, 0.5]  # between attempts only
    assert all(call[1:] == (80, 1.5) for call in calls)


def test_probe_without_interval_never_sleeps() -> None:
    sleeps: list[float] = []
    attempts = list(
        probe(
            [V6("::1")],
            7,
            count=4,
            timeout=1,
            interval=0,
            connect=lambda a, p, t: (0.001, None),
            sleep=sleeps.append,
        )
    )
    assert len(attempts) == 4 and sleeps == []


def test_summary_statistics() -> None:
    attempts = [
        Attempt(1, V6("::1"), 80, 0.001),
        Attempt(2, V6("::1"), 80, None, "refused"),
        Attempt(3, V6("::1"), 80, 0.004),
        Attempt(4, V6("::1"), 80, 0.0025),
    ]
    summary = Summary.of(attempts)
    assert (summary.attempts, summary.connected, summary.failed) == (4, 3, 1)
    assert summary.minimum == 0.001 and summary.maximum == 0.004
    assert summary.average == pytest.approx(0.0025)
    assert format_summary("cvs.example", 5999, summary) == (
        "--- cvs.example port 5999: 4 attempts, 3 connected, 1 failed (25% failed), "
        "time min/avg/max = 1.000/2.500/4.000 ms"
    )


def test_summary_without_success_has_no_times() -> None:
    summary = Summary.of([Attempt(1, V6("::1"), 9, None, "refused")])
    assert summary.minimum is None and summary.connected == 0
    assert format_summary("::1", 9, summary) == (
        "--- ::1 port 9: 1 attempt, 0 connected, 1 failed (100% failed)"
    )


def test_attempt_lines() -> None:
    assert format_attempt(Attempt(1, V6("2001:db8::1"), 80, 0.0001234)) == (
        "[2001:db8::1]:80: seq=1 connected time=0.123 ms"
    )
    assert format_attempt(Attempt(2, V6("::1"), 9, None, "refused")) == "[::1]:9: seq=2 refused"


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (TimeoutError(), "timeout (no answer within 2 s)"),
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "refused"),
        (
            OSError(errno.ENETUNREACH, "Network is unreachable"),
            "unreachable (Network is unreachable)",
        ),
        (OSError(errno.EHOSTUNREACH, "No route to host"), "unreachable (No route to host)"),
        (OSError(errno.EACCES, "Permission denied"), "error (Permission denied)"),
    ],
)
def test_connect_errors_are_named(exc: OSError, expected: str) -> None:
    assert _describe(exc, 2.0) == expected


def test_addresses_are_explained_against_the_prefixes() -> None:
    prefixes = [Nat64Prefix.parse("2001:db8:5999::/96"), Nat64Prefix.parse("64:ff9b::/96")]
    assert describe_address(V6("2001:db8:5999::c0a8:102"), prefixes) == (
        "2001:db8:5999::c0a8:102 (2001:db8:5999::/96 -> 192.168.1.2)"
    )
    assert "native IPv6" in describe_address(V6("2001:db8:1::1"), prefixes)
    u_octet = Nat64Prefix.parse("2001:db8:4000::/40")
    assert "not a valid RFC 6052 address" in describe_address(
        V6("2001:db8:4000:0:ff00::1"), [u_octet]
    )
