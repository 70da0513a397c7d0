"""PROXY protocol headers against HAProxy's doc/proxy-protocol.txt (sections 2.1, 2.2)."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from totd_faith.relay import proxyproto

ALL_ONES_V6 = IPv6Address("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")


def test_v1_tcp4_worst_case_from_the_spec() -> None:
    # Section 2.1 gives this as the longest TCP4 line: 56 bytes.
    got = proxyproto.v1_header(
        IPv4Address("255.255.255.255"), 65535, IPv4Address("255.255.255.255"), 65535
    )
    assert got == b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"
    assert len(got) == 56


def test_v1_tcp6_worst_case_from_the_spec() -> None:
    # Section 2.1: the longest TCP6 line is 104 bytes.
    got = proxyproto.v1_header(ALL_ONES_V6, 65535, ALL_ONES_V6, 65535)
    expected = (
        b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
        b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
    )
    assert got == expected
    assert len(got) == 104


def test_v1_unknown_from_the_spec() -> None:
    assert proxyproto.v1_unknown() == b"PROXY UNKNOWN\r\n"


def test_v1_relayed_connection_names_ipv6_client_and_dialled_address() -> None:
    got = proxyproto.header(
        "v1", IPv6Address("2001:db8:1::5"), 40000, IPv6Address("2001:db8:64::c633:6402"), 80
    )
    assert got == b"PROXY TCP6 2001:db8:1::5 2001:db8:64::c633:6402 40000 80\r\n"


def test_v1_ports_have_no_leading_zeros() -> None:
    got = proxyproto.v1_header(IPv4Address("192.0.2.1"), 7, IPv4Address("192.0.2.2"), 80)
    assert got == b"PROXY TCP4 192.0.2.1 192.0.2.2 7 80\r\n"


def test_v2_signature_is_the_spec_bytes() -> None:
    assert proxyproto.V2_SIGNATURE == bytes(
        [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
    )


def test_v2_tcp_over_ipv6_layout() -> None:
    client = IPv6Address("2001:db8:1::5")
    dialled = IPv6Address("2001:db8:64::c633:6402")
    got = proxyproto.header("v2", client, 40000, dialled, 80)
    assert len(got) == 16 + 36
    assert got[:12] == proxyproto.V2_SIGNATURE
    assert got[12] == 0x21  # version 2, command PROXY
    assert got[13] == 0x21  # AF_INET6, STREAM
    assert got[14:16] == b"\x00\x24"  # 36 bytes of addresses
    assert got[16:32] == client.packed
    assert got[32:48] == dialled.packed
    assert got[48:52] == b"\x9c\x40\x00\x50"  # 40000, 80 big-endian


def test_v2_tcp_over_ipv4_layout() -> None:
    got = proxyproto.v2_header(IPv4Address("192.0.2.1"), 1, IPv4Address("198.51.100.2"), 65535)
    assert got == (
        proxyproto.V2_SIGNATURE
        + b"\x21\x11\x00\x0c"
        + bytes([192, 0, 2, 1, 198, 51, 100, 2])
        + b"\x00\x01\xff\xff"
    )


def test_v2_udp_family() -> None:
    got = proxyproto.v2_header(
        IPv6Address("fd00::1"), 1, IPv6Address("fd00::2"), 2, transport="udp"
    )
    assert got[13] == 0x22


def test_v2_local_command() -> None:
    assert proxyproto.v2_local() == proxyproto.V2_SIGNATURE + b"\x20\x00\x00\x00"


def test_mixed_families_are_expressed_as_ipv6() -> None:
    got = proxyproto.v1_header(IPv4Address("192.0.2.1"), 1, IPv6Address("2001:db8::1"), 2)
    assert got == b"PROXY TCP6 ::ffff:192.0.2.1 2001:db8::1 1 2\r\n"


def test_none_is_empty_and_unknown_version_rejected() -> None:
    args = (IPv6Address("::1"), 1, IPv6Address("::1"), 2)
    assert proxyproto.header("none", *args) == b""
    with pytest.raises(ValueError):
        proxyproto.header("v3", *args)


v6 = st.integers(0, 2**128 - 1).map(IPv6Address)
ports = st.integers(0, 65535)


@given(v6, ports, v6, ports)
def test_v1_and_v2_round_trip(src: IPv6Address, sport: int, dst: IPv6Address, dport: int) -> None:
    line = proxyproto.v1_header(src, sport, dst, dport)
    assert len(line) <= proxyproto.V1_MAX_LENGTH and line.endswith(b"\r\n")
    words = line[:-2].decode().split(" ")
    assert words[:2] == ["PROXY", "TCP6"]
    assert (IPv6Address(words[2]), IPv6Address(words[3])) == (src, dst)
    assert (int(words[4]), int(words[5])) == (sport, dport)
    binary = proxyproto.v2_header(src, sport, dst, dport)
    (length,) = struct.unpack("!H", binary[14:16])
    assert length == len(binary) - 16 == 36
    assert IPv6Address(binary[16:32]) == src and IPv6Address(binary[32:48]) == dst
    assert struct.unpack("!HH", binary[48:52]) == (sport, dport)
