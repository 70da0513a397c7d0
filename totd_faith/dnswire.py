"""A small fast path over DNS header and question bytes (RFC 1035 section 4.1).

dnspython parses every message on the slow path.  A cache hit must not pay for
that, so this module reads just enough of a query to build the cache key, and
walks a response to find the offsets of its TTL fields (so cached answers can
count down without being parsed again).  It is property-tested against
dnspython in tests/unit/test_dnswire.py.

Pure functions over bytes: no I/O.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from totd_faith.errors import WireError

HEADER_SIZE = 12

# Header flag bits (RFC 1035 section 4.1.1; CD from RFC 4035 section 3.2.2).
FLAG_QR = 0x8000
FLAG_TC = 0x0200
FLAG_RD = 0x0100
FLAG_CD = 0x0010
OPCODE_MASK = 0x7800

TYPE_A = 1
TYPE_NS = 2
TYPE_CNAME = 5
TYPE_SOA = 6
TYPE_AAAA = 28
TYPE_DNAME = 39
TYPE_OPT = 41  # RFC 6891 section 6.1.1

# Bits of the cache-key flag byte built by :func:`scan_query`.
KEY_DO = 1  # DNSSEC OK (RFC 3225)
KEY_CD = 2  # checking disabled (RFC 4035)
KEY_EDNS = 4  # the query carried OPT, so the answer must too (RFC 6891 section 7)
KEY_AD = 16  # the client asked for AD, which decides the answer's AD (RFC 6840 section 5.7)
#: (8 is taken by the server's "gets DNS64 synthesis" bit, dnsserver.KEY_SYNTH.)

#: Largest UDP answer a client without EDNS can take (RFC 1035 section 4.2.1).
CLASSIC_UDP_SIZE = 512

SECTION_ANSWER = 1
SECTION_AUTHORITY = 2
SECTION_ADDITIONAL = 3

_U16 = struct.Struct("!H")
_RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength
_HEADER = struct.Struct("!HHHHHH")
_QTAIL = struct.Struct("!HH")
_OPT = struct.Struct("!BHHIH")  # root owner, type, class=payload, ttl, rdlength


#: What the cache needs from a plain query, read without dnspython:
#: ``(question_key, question_end, flags, payload_size, qtype)`` where
#: ``question_key`` is the lowercased qname wire form plus qtype and qclass,
#: ``question_end`` the offset just past the question (the question is
#: ``data[12:question_end]``), ``flags`` KEY_DO | KEY_CD | KEY_EDNS | KEY_AD and
#: ``payload_size`` the largest UDP response the client accepts (RFC 6891
#: section 6.2.5).  A plain tuple: a NamedTuple costs a Python-level
#: ``__new__`` call per packet on the hot path.
QueryHead = tuple[bytes, int, int, int, int]
Q_KEY, Q_END, Q_FLAGS, Q_PAYLOAD, Q_TYPE = range(5)


#: Header bytes 4-10 of a plain query: qdcount 1, ancount 0, nscount 0 and the
#: high byte of arcount 0 (compared as one slice: fewer steps per packet).
_PLAIN_COUNTS = b"\x00\x01\x00\x00\x00\x00\x00"
#: A question's type and class, then the fixed part of an OPT record (RFC 6891
#: section 6.1.2): root owner (one zero byte), type, CLASS = payload size, TTL =
#: extended rcode, version, DO and Z bits, and the length of the options.
_TAIL_UNPACK = struct.Struct("!HHBHHBBBBH").unpack_from
#: Cache-key bits for header byte 3's AD (0x20) and CD (0x10) bits, by ``byte & 0x30``.
_AD_CD_KEY = tuple((KEY_AD if i & 0x20 else 0) | (KEY_CD if i & 0x10 else 0) for i in range(0x31))


def scan_query(data: bytes) -> QueryHead | None:
    """Read a plain query's question and EDNS flags, or None if it is not plain.

    "Plain" is the shape nearly every stub query has: QR=0, opcode QUERY, one
    question with an uncompressed name, no answer or authority records, and at
    most one additional record which is an EDNS version 0 OPT.  Anything else
    (including malformed bytes) returns None and takes the dnspython path,
    which decides between an answer, FORMERR and dropping.
    """
    try:
        # QR=0 and opcode 0 (RFC 1035 section 4.1.1); qdcount 1, ancount 0, nscount 0.
        if data[2] & 0xF8 or data[4:11] != _PLAIN_COUNTS:
            return None
        # Reading past the end raises IndexError: no length checks in the loop.
        i = HEADER_SIZE
        length = data[HEADER_SIZE]
        while length:
            if length > 63:  # a compression pointer or an extended label type
                return None
            i += length + 1
            length = data[i]
        name_end = i + 1
        if name_end > HEADER_SIZE + 255:  # RFC 1035 section 2.3.4: 255 bytes of name
            return None
        question_end = name_end + 4
        size = len(data)
        flags = _AD_CD_KEY[data[3] & 0x30]
        arcount = data[11]
        if arcount == 0:
            if question_end != size:
                return None
            qtype = (data[name_end] << 8) | data[name_end + 1]
            payload = CLASSIC_UDP_SIZE
        else:
            # The OPT pseudo-RR (RFC 6891 section 6.1.2) after the question's type
            # and class: root owner, type 41, CLASS is the payload size, TTL holds
            # extended rcode, version and flags.
            qtype, _, root, rtype, payload, _, version, do_byte, _, rdlength = _TAIL_UNPACK(
                data, name_end
            )
            if arcount != 1 or root or rtype != TYPE_OPT:
                return None
            # Version other than 0 must be answered BADVERS (RFC 6891 section 6.1.3).
            if version or question_end + 11 + rdlength != size:
                return None
            # Payload sizes below 512 are treated as 512 (RFC 6891 section 6.2.5).
            if payload < CLASSIC_UDP_SIZE:
                payload = CLASSIC_UDP_SIZE
            flags |= KEY_DO | KEY_EDNS if do_byte & 0x80 else KEY_EDNS
        return (
            # The type and class bytes are not lowercased: 0x41 is qtype HTTPS.
            data[HEADER_SIZE:name_end].lower() + data[name_end:question_end],
            question_end,
            flags,
            payload,
            qtype,
        )
    except (IndexError, struct.error):
        # Shorter than its header, its name or its OPT record says.
        return None


def skip_name(data: bytes, offset: int) -> int:
    """The offset just past the (possibly compressed) name at ``offset``."""
    size = len(data)
    while True:
        if offset >= size:
            raise WireError("name runs past the end of the message")
        length = data[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:  # RFC 1035 section 4.1.4: a pointer ends the name
            if offset + 2 > size:
                raise WireError("compression pointer runs past the end of the message")
            return offset + 2
        if length > 63:
            raise WireError(f"unsupported label type 0x{length:02x}")
        offset += length + 1


class Record(NamedTuple):
    """One resource record located in a message."""

    section: int
    rtype: int
    ttl_offset: int
    ttl: int
    rdata_start: int
    rdata_end: int


class Layout(NamedTuple):
    """Where things are in a response."""

    rcode: int  # the 4 header bits (extended rcode bits are ignored here)
    flags: int
    qtype: int
    question_end: int
    records: tuple[Record, ...]


def walk_response(data: bytes) -> Layout:
    """Locate every resource record of a message with exactly one question."""
    if len(data) < HEADER_SIZE:
        raise WireError("shorter than a DNS header")
    _, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    if qdcount != 1:
        raise WireError(f"{qdcount} questions, expected 1")
    offset = skip_name(data, HEADER_SIZE)
    if offset + 4 > len(data):
        raise WireError("question runs past the end of the message")
    qtype = _U16.unpack_from(data, offset)[0]
    offset += 4
    question_end = offset
    records: list[Record] = []
    for section, count in (
        (SECTION_ANSWER, ancount),
        (SECTION_AUTHORITY, nscount),
        (SECTION_ADDITIONAL, arcount),
    ):
        for _ in range(count):
            offset = skip_name(data, offset)
            if offset + 10 > len(data):
                raise WireError("record header runs past the end of the message")
            rtype, _, ttl, rdlength = _RR_FIXED.unpack_from(data, offset)
            rdata_start = offset + 10
            rdata_end = rdata_start + rdlength
            if rdata_end > len(data):
                raise WireError("record data runs past the end of the message")
            records.append(Record(section, rtype, offset + 4, ttl, rdata_start, rdata_end))
            offset = rdata_end
    if offset != len(data):
        raise WireError(f"{len(data) - offset} bytes of trailing junk")
    return Layout(flags & 0x000F, flags, qtype, question_end, tuple(records))


def render_query(
    qid: int,
    flags: int,
    labels: tuple[bytes, ...],
    rdtype: int,
    rdclass: int,
    edns: int = -1,
    payload: int = 0,
    ednsflags: int = 0,
) -> bytes:
    """A query with one question and at most an option-less OPT, in wire form.

    Equivalent to dnspython's ``to_wire`` for that shape (property-tested);
    the upstream module uses it for every query it sends, where rendering
    with dnspython was a visible share of a cache miss.  ``labels`` are those
    of an absolute name (ending with the empty root label).
    """
    name = b"".join([bytes((len(label),)) + label for label in labels])
    if edns < 0:
        return _HEADER.pack(qid, flags & 0xFFFF, 1, 0, 0, 0) + name + _QTAIL.pack(rdtype, rdclass)
    # RFC 6891 section 6.1.3: TTL = extended RCODE (8) | VERSION (8) | flags (16).
    ttl = (ednsflags & 0xFF00FFFF) | ((edns & 0xFF) << 16)
    return (
        _HEADER.pack(qid, flags & 0xFFFF, 1, 0, 0, 1)
        + name
        + _QTAIL.pack(rdtype, rdclass)
        + _OPT.pack(0, TYPE_OPT, payload, ttl, 0)
    )


def header_response(data: bytes, rcode: int, question_end: int = 0) -> bytes | None:
    """A bare response with ``rcode`` echoing ID, opcode and RD (RFC 1035 section 4.1.1),
    and the question when its end is known (``question_end``, from :func:`scan_query`).

    None when the packet is too short to have a header or is itself a response
    (answering responses invites reflection loops).
    """
    if len(data) < HEADER_SIZE or data[2] & 0x80:
        return None
    flags = FLAG_QR | (((data[2] << 8) | data[3]) & (OPCODE_MASK | FLAG_RD)) | (rcode & 0x0F)
    if question_end > HEADER_SIZE:
        header = _HEADER.pack(0, flags, 1, 0, 0, 0)
        return b"".join((data[:2], header[2:], data[HEADER_SIZE:question_end]))
    return data[:2] + _HEADER.pack(0, flags, 0, 0, 0, 0)[2:]


def formerr_for(data: bytes) -> bytes | None:
    """FORMERR for a query whose header is readable but the rest is not."""
    return header_response(data, 1)


def truncate(data: bytes, limit: int) -> bytes:
    """The response ``data`` cut to at most ``limit`` bytes for a UDP client.

    RFC 2181 section 9: whole RRsets are kept while they fit, in message
    order; TC is set when part of the answer or authority section is left out,
    not when only additional data is (RFC 1035 section 4.2.1 for the limit).
    RFC 6891 section 7: the OPT record stays.  The result is a prefix of
    ``data`` (compression pointers only point backwards, so every kept name
    still resolves) with the counts patched, plus OPT when it lay beyond the cut:
    the bytes dnspython's ``to_wire(max_size=limit, prefer_truncation=True)``
    writes for the same message, without parsing and rendering every record.
    """
    if len(data) <= limit:
        return data
    question_end, records = _records(data)
    opt = b""
    for start, name_end, end, section in reversed(records):
        if section != SECTION_ADDITIONAL:
            break
        if data[name_end : name_end + 2] == b"\x00\x29":  # TYPE_OPT
            opt = data[start:end]
            break
    room = limit - len(opt)
    # The first record that does not fit; its whole RRset goes (dnspython
    # writes an RRset's records together, so they are neighbours).
    cut = 0
    while cut < len(records) and records[cut][2] <= room:
        cut += 1
    while 0 < cut < len(records) and _same_rrset(data, records[cut - 1], records[cut]):
        cut -= 1
    counts = [0, 0, 0, 0]
    opt_inside = False
    for _, name_end, _, section in records[:cut]:
        counts[section] += 1
        opt_inside = opt_inside or data[name_end : name_end + 2] == b"\x00\x29"
    flags = _U16.unpack_from(data, 2)[0]
    if cut < len(records) and records[cut][3] != SECTION_ADDITIONAL:
        flags |= FLAG_TC
    if opt and not opt_inside:
        counts[SECTION_ADDITIONAL] += 1
    else:
        opt = b""
    end = records[cut - 1][2] if cut else question_end
    header = _HEADER.pack(0, flags, 1, *counts[1:])
    return b"".join((data[:2], header[2:], data[HEADER_SIZE:end], opt))


#: A record's place in a message: where it starts, where its owner name ends,
#: where it ends, and its section.
_Place = tuple[int, int, int, int]


def _records(data: bytes) -> tuple[int, list[_Place]]:
    """The end of the question and the place of every record of a response
    with one question; lighter than :func:`walk_response` (no TTLs)."""
    if len(data) < HEADER_SIZE:
        raise WireError("shorter than a DNS header")
    _, _, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    if qdcount != 1:
        raise WireError(f"{qdcount} questions, expected 1")
    question_end = offset = skip_name(data, HEADER_SIZE) + 4
    records: list[_Place] = []
    append = records.append
    size = len(data)
    for section, count in (
        (SECTION_ANSWER, ancount),
        (SECTION_AUTHORITY, nscount),
        (SECTION_ADDITIONAL, arcount),
    ):
        for _ in range(count):
            start = offset
            if offset < size and data[offset] >= 0xC0:
                offset += 2  # the usual owner: one pointer (RFC 1035 section 4.1.4)
            else:
                offset = skip_name(data, offset)
            name_end = offset
            if offset + 10 > size:
                raise WireError("record header runs past the end of the message")
            offset += 10 + ((data[offset + 8] << 8) | data[offset + 9])
            append((start, name_end, offset, section))
    if offset != size:
        raise WireError("records do not end where the message does")
    return question_end, records


def _same_rrset(data: bytes, first: _Place, other: _Place) -> bool:
    """Are two records of one RRset: same section, type, class and owner?"""
    if first[3] != other[3]:
        return False
    # Type and class: the 4 bytes after the owner (RFC 1035 section 4.1.3).
    if data[first[1] : first[1] + 4] != data[other[1] : other[1] + 4]:
        return False
    # The same owner bytes (usually one pointer) are the same name; different
    # bytes may still be (a name and a pointer to it, or another letter case).
    raw = data[first[0] : first[1]]
    return raw == data[other[0] : other[1]] or _owner(data, first[0]) == _owner(data, other[0])


def _owner(data: bytes, offset: int) -> bytes:
    """The name at ``offset`` with pointers followed, lowercased (RFC 4343)."""
    labels = []
    hops = 0
    while True:
        if offset + 1 >= len(data):
            raise WireError("name runs past the end of the message")
        length = data[offset]
        if length & 0xC0 == 0xC0:
            hops += 1
            if hops > 127:  # walk_response checked the bytes, not for loops
                raise WireError("compression pointer loop")
            offset = ((length & 0x3F) << 8) | data[offset + 1]
            continue
        labels.append(data[offset : offset + length + 1])
        if length == 0:
            return b"".join(labels).lower()
        offset += length + 1
