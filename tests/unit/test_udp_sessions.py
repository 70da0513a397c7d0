"""The UDP session table with injected time: idle expiry, limit, per-key reuse, denials."""

from __future__ import annotations

import ipaddress

import pytest

from totd_faith.endpoints import Endpoint, parse_endpoint
from totd_faith.prefix import Nat64Prefix
from totd_faith.relay.udp_sessions import (
    SessionKey,
    SessionLimitReached,
    SessionTable,
    decode_destination,
)

TARGET = parse_endpoint("198.51.100.2:7")


def key(client_port: int, dest: str = "[2001:db8:64::c633:6402]:7") -> SessionKey:
    return SessionKey(parse_endpoint(f"[fd00:1::1]:{client_port}"), parse_endpoint(dest))


def test_same_key_reuses_session_until_idle() -> None:
    table: SessionTable[str] = SessionTable(idle_timeout=60.0, limit=10)
    session = table.open(key(1000), TARGET, "flow", now=0.0)
    assert table.get(key(1000)) is session
    assert table.get(key(1001)) is None
    assert table.get(key(1000, "[2001:db8:64::c633:6403]:7")) is None
    with pytest.raises(KeyError):
        table.open(key(1000), TARGET, "again", now=1.0)
    table.from_client(session, 100, now=50.0)
    assert table.expire(now=100.0) == []  # active at 50, idle only 50 s
    assert table.get(key(1000)) is session
    assert table.expire(now=110.0) == [session]
    assert table.get(key(1000)) is None and len(table) == 0


def test_replies_keep_a_session_alive_and_are_counted() -> None:
    table: SessionTable[str] = SessionTable(idle_timeout=10.0, limit=10)
    session = table.open(key(1), TARGET, "flow", now=0.0)
    table.from_client(session, 5, now=1.0)
    table.from_backend(session, 7, now=9.0)
    table.from_backend(session, 3, now=9.5)
    assert table.expire(now=18.0) == []
    assert table.expire(now=19.5) == [session]
    assert (session.datagrams_out, session.bytes_out) == (1, 5)
    assert (session.datagrams_in, session.bytes_in) == (2, 10)


def test_expiry_takes_only_the_idle_ones_in_order() -> None:
    table: SessionTable[int] = SessionTable(idle_timeout=10.0, limit=10)
    s1 = table.open(key(1), TARGET, 1, now=0.0)
    s2 = table.open(key(2), TARGET, 2, now=1.0)
    s3 = table.open(key(3), TARGET, 3, now=2.0)
    table.from_client(s1, 1, now=5.0)  # s1 becomes the most recent
    assert table.next_expiry() == 11.0  # s2
    assert table.expire(now=12.0) == [s2, s3]
    assert list(table) == [s1]
    assert table.next_expiry() == 15.0


def test_session_limit() -> None:
    table: SessionTable[int] = SessionTable(idle_timeout=10.0, limit=2)
    table.open(key(1), TARGET, 1, now=0.0)
    table.open(key(2), TARGET, 2, now=0.0)
    assert table.full
    with pytest.raises(SessionLimitReached):
        table.open(key(3), TARGET, 3, now=0.0)
    table.expire(now=10.0)
    assert not table.full
    table.open(key(3), TARGET, 3, now=10.0)
    assert len(table) == 1


def test_denied_key_reported_once_while_it_repeats() -> None:
    table: SessionTable[int] = SessionTable(idle_timeout=10.0, limit=100)
    assert table.note_denied(key(1), now=0.0) is True
    assert table.note_denied(key(1), now=5.0) is False
    assert table.note_denied(key(1), now=14.0) is False  # refreshed at 5.0
    assert table.note_denied(key(2), now=14.0) is True
    assert table.next_expiry() == 24.0
    table.expire(now=25.0)  # silent for 11 s: forgotten
    assert table.note_denied(key(1), now=25.0) is True


def test_denial_memory_is_bounded() -> None:
    table: SessionTable[int] = SessionTable(idle_timeout=10.0, limit=3)
    for port in range(1, 6):
        assert table.note_denied(key(port), now=0.0)
    assert table.note_denied(key(5), now=0.0) is False
    assert table.note_denied(key(1), now=0.0) is True  # evicted by the bound


def test_summary_line() -> None:
    table: SessionTable[int] = SessionTable(idle_timeout=10.0, limit=3)
    session = table.open(key(4000), TARGET, 0, now=100.0)
    table.from_client(session, 12, now=101.0)
    table.from_backend(session, 12, now=101.5)
    assert session.summary(now=112.25, reason="idle for 10 s") == (
        "udp [fd00:1::1]:4000 -> [2001:db8:64::c633:6402]:7 (198.51.100.2:7): "
        "1 datagrams/12 bytes out, 1 datagrams/12 bytes in, 12.2 s, ended: idle for 10 s"
    )


def test_decode_destination() -> None:
    p96 = Nat64Prefix.parse("2001:db8:64::/96")
    p48 = Nat64Prefix.parse("2001:db8:1::/48")
    found = decode_destination([p48, p96], ipaddress.IPv6Address("2001:db8:64::c633:6402"))
    assert found == (p96, ipaddress.IPv4Address("198.51.100.2"))
    # RFC 6052 /48: v4 split around the u-octet.
    v6 = p48.embed(ipaddress.IPv4Address("192.0.2.33"), check_global=False)
    assert decode_destination([p96, p48], v6) == (p48, ipaddress.IPv4Address("192.0.2.33"))
    assert decode_destination([p96], ipaddress.IPv6Address("2001:db8:65::1")) is None
    # A non-zero u-octet is not an RFC 6052 address: not for the relay.
    bad = ipaddress.IPv6Address(int(v6) | (1 << 56))
    assert decode_destination([p48], bad) is None


def test_keys_compare_by_value() -> None:
    a = SessionKey(Endpoint(ipaddress.ip_address("fd00::1"), 5), parse_endpoint("[fd00::2]:7"))
    b = SessionKey(parse_endpoint("[fd00::1]:5"), parse_endpoint("[fd00::2]:7"))
    assert a == b and hash(a) == hash(b)
