"""PKTINFO / ORIGDSTADDR ancillary data: packing, parsing, and the kernel's layout."""

from __future__ import annotations

import ipaddress
import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from totd_faith.errors import WireError
from totd_faith.relay import sockopts

V6 = ipaddress.IPv6Address("2001:db8:64::c633:6402")
v6_addresses = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)


def test_in6_pktinfo_layout() -> None:
    # struct in6_pktinfo: 16-byte address then a native int ifindex (20 bytes).
    data = sockopts.pack_in6_pktinfo(V6, 3)
    assert len(data) == 20
    assert data[:16] == V6.packed
    assert struct.unpack("=i", data[16:]) == (3,)


@given(v6_addresses, st.integers(0, 2**31 - 1))
def test_in6_pktinfo_round_trip(address: ipaddress.IPv6Address, ifindex: int) -> None:
    assert sockopts.parse_in6_pktinfo(sockopts.pack_in6_pktinfo(address, ifindex)) == (
        address,
        ifindex,
    )


def test_in_pktinfo_layout_and_parse() -> None:
    source = ipaddress.IPv4Address("198.51.100.2")
    data = sockopts.pack_in_pktinfo(source, 0)
    # ipi_ifindex, ipi_spec_dst (the source to use), ipi_addr
    assert data == struct.pack("=i", 0) + source.packed + bytes(4)
    received = struct.pack("=i", 7) + bytes(4) + source.packed
    assert sockopts.parse_in_pktinfo(received) == (source, 7)


@given(v6_addresses, st.integers(1, 65535))
def test_sockaddr_in6_round_trip(address: ipaddress.IPv6Address, port: int) -> None:
    data = sockopts.pack_sockaddr_in6(address, port)
    assert len(data) == 28
    assert data[2:4] == port.to_bytes(2, "big")  # network byte order
    assert sockopts.parse_sockaddr_in6(data) == (address, port)


@pytest.mark.parametrize(
    "parse", [sockopts.parse_in6_pktinfo, sockopts.parse_in_pktinfo, sockopts.parse_sockaddr_in6]
)
def test_short_data_is_a_wire_error(parse: object) -> None:
    with pytest.raises(WireError):
        parse(b"\x00" * 8)  # type: ignore[operator]


def test_sockaddr_in6_wrong_family() -> None:
    data = bytearray(sockopts.pack_sockaddr_in6(V6, 7))
    data[0:2] = struct.pack("=H", socket.AF_INET)
    with pytest.raises(WireError, match="family"):
        sockopts.parse_sockaddr_in6(bytes(data))


def test_cmsg_lookup() -> None:
    pktinfo = sockopts.pack_in6_pktinfo(V6, 2)
    anc = [
        (socket.SOL_SOCKET, 29, b"x"),
        (sockopts.SOL_IPV6, sockopts.IPV6_PKTINFO, pktinfo),
    ]
    assert sockopts.find_cmsg(anc, sockopts.SOL_IPV6, sockopts.IPV6_PKTINFO) == pktinfo
    assert sockopts.find_cmsg(anc, sockopts.SOL_IPV6, sockopts.IPV6_ORIGDSTADDR) is None
    assert sockopts.dialled_address(anc) == V6
    assert sockopts.dialled_address([]) is None
    orig = [(sockopts.SOL_IPV6, 74, sockopts.pack_sockaddr_in6(V6, 9999))]
    assert sockopts.original_destination(orig) == (V6, 9999)
    assert sockopts.original_destination(anc) is None


def test_dialled_v4_mapped_and_v4() -> None:
    mapped = ipaddress.IPv6Address("::ffff:192.0.2.1")
    anc = [(sockopts.SOL_IPV6, sockopts.IPV6_PKTINFO, sockopts.pack_in6_pktinfo(mapped))]
    assert sockopts.dialled_address(anc) == ipaddress.IPv4Address("192.0.2.1")
    v4 = ipaddress.IPv4Address("192.0.2.9")
    raw = struct.pack("=i", 1) + bytes(4) + v4.packed
    assert sockopts.dialled_address([(sockopts.SOL_IP, sockopts.IP_PKTINFO, raw)]) == v4


def test_source_cmsg() -> None:
    ((level, kind, data),) = sockopts.source_cmsg(V6, socket.AF_INET6)
    assert (level, kind) == (socket.IPPROTO_IPV6, 50)
    assert sockopts.parse_in6_pktinfo(data) == (V6, 0)
    v4 = ipaddress.IPv4Address("192.0.2.9")
    ((level, kind, data),) = sockopts.source_cmsg(v4, socket.AF_INET6)
    assert sockopts.parse_in6_pktinfo(data)[0] == ipaddress.IPv6Address("::ffff:192.0.2.9")
    ((level, kind, data),) = sockopts.source_cmsg(v4, socket.AF_INET)
    assert (level, kind) == (socket.IPPROTO_IP, 8) and data[4:8] == v4.packed


def test_constants_match_python_where_it_has_them() -> None:
    for name in ("IPV6_RECVPKTINFO", "IPV6_PKTINFO", "IP_TRANSPARENT", "IP_PKTINFO"):
        if hasattr(socket, name):
            assert getattr(sockopts, name) == getattr(socket, name), name
