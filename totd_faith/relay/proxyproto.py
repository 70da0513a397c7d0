"""HAProxy PROXY protocol headers, version 1 (text) and 2 (binary).

Sans-IO: the relay writes the returned bytes to the backend before any
payload, so an IPv4-only daemon (nginx, postfix, dovecot, haproxy) learns
the IPv6 client it is really talking to.  Section numbers refer to
HAProxy's doc/proxy-protocol.txt.

We always describe the connection as the client saw it: the IPv6 client and
the IPv6 address it dialled (TCP over IPv6), whatever family the backend
leg uses; that is what the backend cannot learn by itself.
"""

from __future__ import annotations

import ipaddress
import struct

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Section 2.2: "\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A", chosen so it
#: can never start a valid v1 header nor any common protocol's first bytes.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"

#: Section 2.2: the 13th byte is version (high nibble, 2) and command (low
#: nibble: 0 LOCAL, 1 PROXY).
_V2_PROXY = 0x21
_V2_LOCAL = 0x20
#: Section 2.2: the 14th byte is address family (high nibble: 1 AF_INET,
#: 2 AF_INET6) and transport (low nibble: 1 STREAM, 2 DGRAM).
_FAMILY = {(4, "tcp"): 0x11, (4, "udp"): 0x12, (6, "tcp"): 0x21, (6, "udp"): 0x22}

#: Section 2.1: a v1 header is at most 107 bytes including CRLF.
V1_MAX_LENGTH = 107


def _same_family(source: IPAddress, destination: IPAddress) -> tuple[IPAddress, IPAddress]:
    """Both addresses in one family; a mixed pair is given as IPv6 (IPv4 as ::ffff:a.b.c.d)."""
    if source.version == destination.version:
        return source, destination

    # Section 2.1/2.2 carry one family for both ends.  Mixed families happen
    # only with dual-stack listeners (IPv4-mapped); express IPv4 as mapped IPv6.
    def as_v6(a: IPAddress) -> ipaddress.IPv6Address:
        return a if a.version == 6 else ipaddress.IPv6Address(f"::ffff:{a}")

    return as_v6(source), as_v6(destination)


def _text(address: IPAddress) -> str:
    """inet_ntop's form: IPv4-mapped addresses keep their dotted quad."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return str(address)


def v1_header(
    source: IPAddress, source_port: int, destination: IPAddress, destination_port: int
) -> bytes:
    """``PROXY TCP6 <src> <dst> <sport> <dport>\\r\\n`` (section 2.1)."""
    source, destination = _same_family(source, destination)
    family = "TCP4" if source.version == 4 else "TCP6"
    # Section 2.1: addresses in their usual textual form (inet_ntop), ports
    # in decimal without leading zeros, single spaces, CRLF.
    line = (
        f"PROXY {family} {_text(source)} {_text(destination)} "
        f"{source_port:d} {destination_port:d}\r\n"
    )
    header = line.encode("ascii")
    assert len(header) <= V1_MAX_LENGTH
    return header


def v1_unknown() -> bytes:
    """Section 2.1: the header when the relay cannot tell the endpoints."""
    return b"PROXY UNKNOWN\r\n"


def v2_header(
    source: IPAddress,
    source_port: int,
    destination: IPAddress,
    destination_port: int,
    *,
    transport: str = "tcp",
) -> bytes:
    """The binary v2 header with the PROXY command and no TLVs (section 2.2)."""
    source, destination = _same_family(source, destination)
    # Section 2.2: src_addr, dst_addr, src_port, dst_port, network byte order;
    # 12 bytes for IPv4, 36 for IPv6.
    addresses = (
        source.packed + destination.packed + struct.pack("!HH", source_port, destination_port)
    )
    family = _FAMILY[(source.version, transport)]
    return V2_SIGNATURE + struct.pack("!BBH", _V2_PROXY, family, len(addresses)) + addresses


def v2_local() -> bytes:
    """Section 2.2: the LOCAL command (health checks): no address block."""
    return V2_SIGNATURE + struct.pack("!BBH", _V2_LOCAL, 0x00, 0)


def header(
    version: str,
    source: IPAddress,
    source_port: int,
    destination: IPAddress,
    destination_port: int,
) -> bytes:
    """The header for ``relay.*.proxy_protocol`` = ``none``, ``v1`` or ``v2``."""
    if version == "none":
        return b""
    if version == "v1":
        return v1_header(source, source_port, destination, destination_port)
    if version == "v2":
        return v2_header(source, source_port, destination, destination_port)
    raise ValueError(f"unknown PROXY protocol version {version!r}")
