"""Linux socket option numbers and ancillary-data (cmsg) helpers for the relay.

Python's ``socket`` module lacks several of these constants, so they live here
in one place, with the kernel header each comes from.  The packing and parsing
functions are pure (bytes in, values out) so they can be unit-tested; the
``enable_*``/``make_*`` helpers apply them to real sockets.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable

from totd_faith.errors import WireError

# include/uapi/linux/in6.h and include/uapi/linux/in.h
SOL_IPV6 = socket.IPPROTO_IPV6  # 41
SOL_IP = socket.IPPROTO_IP  # 0
IPV6_RECVPKTINFO = 49
IPV6_PKTINFO = 50
IPV6_RECVORIGDSTADDR = 74
IPV6_ORIGDSTADDR = 74  # the cmsg type carries the same number as the option
IPV6_TRANSPARENT = 75
IPV6_FREEBIND = 78
IP_TRANSPARENT = 19
IP_FREEBIND = 15
IP_PKTINFO = 8
IP_RECVORIGDSTADDR = 20

# struct in6_pktinfo { struct in6_addr ipi6_addr; int ipi6_ifindex; }
_IN6_PKTINFO = struct.Struct("=16si")
# struct in_pktinfo { int ipi_ifindex; struct in_addr ipi_spec_dst; struct in_addr ipi_addr; }
_IN_PKTINFO = struct.Struct("=i4s4s")
# struct sockaddr_in6: family (host order), port (network order), flowinfo, addr, scope id
_SOCKADDR_IN6 = struct.Struct("=H2sI16sI")

#: Room for the ancillary data the relay asks for (one pktinfo or one sockaddr_in6).
CMSG_SPACE = socket.CMSG_SPACE(_SOCKADDR_IN6.size) + socket.CMSG_SPACE(_IN6_PKTINFO.size)

Ancillary = Iterable[tuple[int, int, bytes]]


def pack_in6_pktinfo(address: ipaddress.IPv6Address, ifindex: int = 0) -> bytes:
    """An ``IPV6_PKTINFO`` payload: send from ``address`` (ifindex 0: let routing choose)."""
    return _IN6_PKTINFO.pack(address.packed, ifindex)


def parse_in6_pktinfo(data: bytes) -> tuple[ipaddress.IPv6Address, int]:
    """The destination address and arrival interface from an ``IPV6_PKTINFO`` cmsg."""
    if len(data) < _IN6_PKTINFO.size:
        raise WireError(f"IPV6_PKTINFO is {len(data)} bytes, expected {_IN6_PKTINFO.size}")
    packed, ifindex = _IN6_PKTINFO.unpack_from(data)
    return ipaddress.IPv6Address(packed), ifindex


def pack_in_pktinfo(address: ipaddress.IPv4Address, ifindex: int = 0) -> bytes:
    """An ``IP_PKTINFO`` payload that sets the IPv4 source address (``ipi_spec_dst``)."""
    return _IN_PKTINFO.pack(ifindex, address.packed, bytes(4))


def parse_in_pktinfo(data: bytes) -> tuple[ipaddress.IPv4Address, int]:
    """The destination address (``ipi_addr``) and interface from an ``IP_PKTINFO`` cmsg."""
    if len(data) < _IN_PKTINFO.size:
        raise WireError(f"IP_PKTINFO is {len(data)} bytes, expected {_IN_PKTINFO.size}")
    ifindex, _spec_dst, addr = _IN_PKTINFO.unpack_from(data)
    return ipaddress.IPv4Address(addr), ifindex


def pack_sockaddr_in6(address: ipaddress.IPv6Address, port: int, scope_id: int = 0) -> bytes:
    """A ``struct sockaddr_in6`` as the kernel writes it (for tests of the parser)."""
    return _SOCKADDR_IN6.pack(socket.AF_INET6, port.to_bytes(2, "big"), 0, address.packed, scope_id)


def parse_sockaddr_in6(data: bytes) -> tuple[ipaddress.IPv6Address, int]:
    """Address and port from an ``IPV6_ORIGDSTADDR`` cmsg (a ``struct sockaddr_in6``)."""
    if len(data) < _SOCKADDR_IN6.size:
        raise WireError(f"IPV6_ORIGDSTADDR is {len(data)} bytes, expected {_SOCKADDR_IN6.size}")
    family, port, _flow, packed, _scope = _SOCKADDR_IN6.unpack_from(data)
    if family != socket.AF_INET6:
        raise WireError(f"IPV6_ORIGDSTADDR carries address family {family}, not AF_INET6")
    return ipaddress.IPv6Address(packed), int.from_bytes(port, "big")


def find_cmsg(ancdata: Ancillary, level: int, kind: int) -> bytes | None:
    """The payload of the first control message of ``level``/``kind``, if any."""
    for cmsg_level, cmsg_type, data in ancdata:
        if cmsg_level == level and cmsg_type == kind:
            return data
    return None


def dialled_address(ancdata: Ancillary) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The local address a datagram was sent to, from IPV6_PKTINFO or IP_PKTINFO."""
    data = find_cmsg(ancdata, SOL_IPV6, IPV6_PKTINFO)
    if data is not None:
        v6, _ = parse_in6_pktinfo(data)
        return v6.ipv4_mapped or v6
    data = find_cmsg(ancdata, SOL_IP, IP_PKTINFO)
    if data is not None:
        return parse_in_pktinfo(data)[0]
    return None


def source_cmsg(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, family: int
) -> list[tuple[int, int, bytes]]:
    """Ancillary data for ``sendmsg`` that makes a reply leave from ``address``."""
    if family == socket.AF_INET6:
        v6 = (
            address
            if isinstance(address, ipaddress.IPv6Address)
            else ipaddress.IPv6Address(f"::ffff:{address}")
        )
        return [(SOL_IPV6, IPV6_PKTINFO, pack_in6_pktinfo(v6))]
    assert isinstance(address, ipaddress.IPv4Address)
    return [(SOL_IP, IP_PKTINFO, pack_in_pktinfo(address))]


# -- applying options to sockets ---------------------------------------------------


def enable_pktinfo(sock: socket.socket) -> None:
    """Ask for the dialled address of each datagram and allow replying from it.

    FREEBIND lets ``sendmsg`` name a source address that is not configured on
    an interface (an AnyIP prefix route is not an address): the kernel's
    ``ip6_datagram_send_ctl`` accepts such a source only when the socket may
    bind non-locally, so no ``net.ipv6.ip_nonlocal_bind`` sysctl is needed.
    """
    if sock.family == socket.AF_INET6:
        sock.setsockopt(SOL_IPV6, IPV6_RECVPKTINFO, 1)
        sock.setsockopt(SOL_IPV6, IPV6_FREEBIND, 1)
    else:
        sock.setsockopt(SOL_IP, IP_PKTINFO, 1)
        sock.setsockopt(SOL_IP, IP_FREEBIND, 1)


def enable_transparent(sock: socket.socket) -> None:
    """IPV6_TRANSPARENT: accept tproxy-steered traffic and bind foreign addresses.

    Needs CAP_NET_ADMIN (or CAP_NET_RAW); raises PermissionError otherwise.
    """
    sock.setsockopt(SOL_IPV6, IPV6_TRANSPARENT, 1)


def enable_origdstaddr(sock: socket.socket) -> None:
    """Ask for each tproxy-steered datagram's original destination (IPV6_ORIGDSTADDR)."""
    sock.setsockopt(SOL_IPV6, IPV6_RECVORIGDSTADDR, 1)


def original_destination(ancdata: Ancillary) -> tuple[ipaddress.IPv6Address, int] | None:
    """The original destination of a tproxy-steered datagram, if the cmsg is there."""
    data = find_cmsg(ancdata, SOL_IPV6, IPV6_ORIGDSTADDR)
    return None if data is None else parse_sockaddr_in6(data)
