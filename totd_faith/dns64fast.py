"""A wire-level fast path for the common DNS64 miss: AAAA for a plain name, not cached.

The DNS64 core (:mod:`totd_faith.dns64`) stays the reference: it parses every
message with dnspython, which costs far more CPU than the network round trips
of a cache miss.  This module handles only the plain common case on bytes and
answers exactly what the core would (differential property test in
tests/unit/test_dns64fast.py); everything else -- and any surprise in a reply
-- returns :data:`FALLBACK` and the shell hands the query, with the upstream
replies already received, to the core.

The flow mirrors :meth:`totd_faith.dns64.Dns64._aaaa`:

1. :meth:`FastDns64.eligible`: a standard query, one question, class IN, qtype
   AAAA, no DO (so no RRSIG handling, RFC 6147 section 5.5), an OPT without
   options if any; not ipv4only.arpa or anything else under arpa., not a static
   host name, not under dns64.never_synthesize / always_synthesize.  The
   shell checks the client is allowed and gets synthesis.
2. :meth:`FastDns64.after_aaaa` on the AAAA reply: NXDOMAIN (RFC 6147 section
   5.1.2) or real AAAA data at the end of the CNAME chain (section 5.1.1) is
   relayed; otherwise :data:`NEED_A`.
3. :meth:`FastDns64.after_a` on the A reply: A records at the end of the
   chain give the synthesized answer (section 5.1.7); none, or none we may
   synthesize, gives the AAAA reply (section 5.4).

The synthesized answer is spliced from the A reply's bytes where its layout
allows (:meth:`FastDns64._spliced`: answer records before the A records,
authority and additional sections copied, their compression pointers moved),
else written name by name (:meth:`FastDns64._written`, compressed like
dnspython's renderer); both give what the core gives.

Falls back on: TC, RRSIG/DNAME/any type but A, AAAA, CNAME, NS and SOA, a
class other than IN, OPT options (EDE must be passed on, RFC 8914) or
extended RCODE bits, excluded AAAA records (section 5.1.4 trimming), an A
reply RCODE other than NOERROR (section 5.1.6), compression pointers into
the header, and anything malformed.

Pure functions over bytes: no I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

import dns.name

from totd_faith.config import Config
from totd_faith.dns64.messages import SERVER_PAYLOAD
from totd_faith.dns64.synthesis import MAX_CHAIN, NO_SOA_TTL_CAP, Synthesizer, translatable
from totd_faith.dnswire import (
    HEADER_SIZE,
    KEY_DO,
    KEY_EDNS,
    TYPE_A,
    TYPE_AAAA,
    TYPE_CNAME,
    TYPE_NS,
    TYPE_OPT,
    TYPE_SOA,
    QueryHead,
    walk_response,
)
from totd_faith.hosts import HostEntry

#: Returned when the fast path does not apply: the core answers.
FALLBACK: Final = None
#: Returned by :meth:`FastDns64.after_aaaa`: ask for A records next (RFC 6147 5.1.6).
NEED_A: Final = b""

_HEADER = struct.Struct("!HBBHHHH")
_RR = struct.Struct("!HHIH")
#: A response header from the client's ID bytes (see FastDns64._head).
_HEAD_OUT = struct.Struct("!2sBBHHHH")
#: dns.name.MAX_COMPRESSION_POINTER_CHAIN
_MAX_POINTERS = 16
#: RFC 2181 section 8: larger TTLs are read as 0 (as dnspython does).
_TTL_MAX = 0x7FFFFFFF
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
#: A plain A record's first bytes: a pointer to the question's name, type A, class IN.
_PLAIN_A = b"\xc0\x0c\x00\x01\x00\x01"
#: The owner of the AAAA records synthesized from it: the same pointer.
_PLAIN_AAAA = b"\xc0\x0c"
_OPT_TO_CLIENT = b"\x00\x00\x29" + _U16.pack(SERVER_PAYLOAD) + b"\x00\x00\x00\x00\x00\x00"
_ALLOWED_TYPES = frozenset((TYPE_A, TYPE_NS, TYPE_CNAME, TYPE_SOA, TYPE_AAAA))

# Header bits of bytes 2 and 3 (RFC 1035 section 4.1.1, RFC 4035 section 3.2.2).
_B2_QR = 0x80
_B2_TC = 0x02
_B2_RD = 0x01
_B3_RA = 0x80
_B3_AD = 0x20
_B3_CD = 0x10

#: Upstream query headers, by the client's CD and AD bits (byte 3 >> 4 & 3):
#: ID 0, RD, one question, one additional record (the OPT).
_UPSTREAM_HEADERS = tuple(
    b"\x00\x00" + bytes((_B2_RD, bits << 4)) + b"\x00\x01\x00\x00\x00\x00\x00\x01"
    for bits in range(4)
)


class FastAnswer:
    """A finished response, with what the cache needs to store it without
    walking it again (see :meth:`totd_faith.dnscache.DnsCache.put_known`)."""

    __slots__ = ("wire", "synthesized", "ttl_offsets", "ttls", "negative", "soa_minimum")

    def __init__(
        self,
        wire: bytes,
        synthesized: bool,
        ttl_offsets: tuple[int, ...],
        ttls: tuple[int, ...],
        negative: bool,
        soa_minimum: int,
    ) -> None:
        self.wire = wire
        self.synthesized = synthesized
        self.ttl_offsets = ttl_offsets
        self.ttls = ttls
        self.negative = negative
        self.soa_minimum = soa_minimum


class _Unusual(Exception):
    """Not the plain shape this module handles: the core decides."""


#: One resource record: (section 1-3, owner wire name as sent, type, ttl,
#: rdata start, rdata end, rdata parts, record start).  Rdata parts are the
#: uncompressed names of NS/CNAME/SOA rdata (SOA: mname, rname, then the 20
#: fixed bytes).
_Record = tuple[int, bytes, int, int, int, int, tuple[bytes, ...], int]


#: Names read from one reply, by offset: (uncompressed wire name, offset just
#: past its first segment, compression pointers followed, whether it is a
#: record's own name -- an owner or a name in NS/CNAME/SOA rdata -- rather
#: than one read only as a pointer's target).
_Names = dict[int, tuple[bytes, int, int, bool]]


def _name(data: bytes, offset: int, memo: _Names, own: bool = True) -> tuple[bytes, int, int, bool]:
    """(uncompressed wire name, offset just past it, pointers followed, ``own``),
    as dnspython reads it.

    dnspython (dns.name.from_wire_parser) demands that every pointer go
    strictly backwards from the previous one and that a pointer's target lie
    wholly before the segment that points to it; so do we.  Pointers into the
    header would read different bytes once the header is rewritten: unusual.
    Names are remembered by offset, so the pointers of a reply (mostly to the
    question name) are followed once: callers look in ``memo`` first.
    """
    start = offset
    while True:
        length = data[offset]  # IndexError past the end: the callers' malformed case
        if length == 0:
            end = offset + 1
            name = data[start:end]
            hops = 0
            break
        if length >= 0xC0:
            end = offset + 2
            target = ((length & 0x3F) << 8) | data[offset + 1]
            if target >= start or target < HEADER_SIZE:
                raise _Unusual
            suffix = memo.get(target)
            if suffix is None:
                suffix = _name(data, target, memo, False)
            if suffix[1] > start:
                raise _Unusual  # the target overlaps the name that points to it
            hops = suffix[2] + 1
            if hops > _MAX_POINTERS:
                raise _Unusual
            name = data[start:offset] + suffix[0] if offset > start else suffix[0]
            break
        if length > 63:
            raise _Unusual
        offset += length + 1
    if len(name) > 255:  # RFC 1035 section 2.3.4
        raise _Unusual
    found = memo[start] = (name, end, hops, own)
    return found


class Reply:
    """An upstream reply, checked: rcode, flags, question end, and either one of
    the two plain shapes of a cold miss or every record walked.
    Raises _Unusual for anything the fast path does not handle (see :meth:`FastDns64.check`).

    Nearly every reply of a cold miss has one of two shapes, which are read
    with a few byte comparisons instead of the general walk:

    - ``plain_a``: NOERROR, only A records owned by the question's name (the
      owner a pointer to it) in the answer section, and after them records
      that can be moved as they are (``tail``, see :func:`_plain_tail`): the A
      reply of an A-only name.  The (TTL, address) pairs.
    - ``nodata_ttl``: NOERROR, no answer, one SOA in the authority section, at
      most a plain OPT: the AAAA reply of an A-only name (RFC 2308 section
      2.2, NODATA type 2).  Its negative TTL, min(SOA TTL, MINIMUM) (RFC 6147
      section 5.1.7); -1 for any other shape.

    Either way every byte is checked as the general walk checks it; the walk
    itself (``records``, ``names`` and the rest) is done by :meth:`walk` when
    one of the rarer outcomes needs it.
    """

    __slots__ = (
        "data",
        "rcode",
        "byte3",
        "question_end",
        "records",
        "opt_start",
        "answer_end",
        "counts",
        "names",
        "big_ttl",
        "plain_a",
        "tail",
        "nodata_ttl",
        "walked",
    )

    def __init__(self, data: bytes) -> None:
        size = len(data)
        if size < HEADER_SIZE:
            raise _Unusual
        _, byte2, byte3, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
        # One question, a response, not truncated, opcode QUERY (dnspython reads
        # other opcodes, UPDATE above all, into other message classes).
        if qdcount != 1 or byte2 & (_B2_TC | 0x78) or not byte2 & _B2_QR:
            raise _Unusual
        self.data = data
        self.byte3 = byte3
        self.rcode = byte3 & 0x0F
        self.counts: tuple[int, int, int] = (ancount, nscount, arcount)
        self.plain_a: list[tuple[int, int]] | None = None
        self.nodata_ttl = -1
        self.walked = False
        try:
            plain = not self.rcode and self._plain(data, ancount, nscount, arcount)
        except (_Unusual, IndexError, struct.error):
            plain = False  # the walk decides what is wrong with it
        if not plain:
            self.walk()

    def _plain(self, data: bytes, ancount: int, nscount: int, arcount: int) -> bool:
        """Recognise the two plain shapes (see the class), or return False or raise
        (the walk then decides what the reply is)."""
        # The question's label starts are where later names may point (see _tail_name).
        starts, offset = _question_labels(data)
        labels: _Labels = {start: (offset - start, 0) for start in starts}
        offset += 4
        self.question_end = offset
        if ancount:
            found = []
            for _ in range(ancount):
                # Owner: a pointer to the question's name; type A, class IN, RDLENGTH 4.
                if data[offset : offset + 6] != _PLAIN_A or data[offset + 10 : offset + 12] != (
                    b"\x00\x04"
                ):
                    return False
                ttl = _U32.unpack_from(data, offset + 6)[0]
                if ttl > _TTL_MAX:
                    return False  # the walk's rule (RFC 2181 section 8)
                found.append((ttl, _U32.unpack_from(data, offset + 12)[0]))
                offset += 16
            # What follows goes into the synthesized answer as it is (RFC 6147
            # section 5.3: authority and additional sections copied), moved.
            self.tail = _plain_tail(data, offset, nscount, arcount, labels)
            self.plain_a = found
            return True
        if nscount != 1 or arcount > 1:
            return False
        # The SOA: its owner, MNAME and RNAME read as dnspython reads them (with
        # _tail_name's stricter pointers); 20 bytes more.
        moving: list[int] = []  # nothing moves: the reply is relayed, not spliced
        offset = _tail_name(data, offset, labels, offset, moving)
        rtype, rclass, ttl, rdlength = _RR.unpack_from(data, offset)
        if rtype != TYPE_SOA or rclass != 1 or ttl > _TTL_MAX:
            return False
        start = offset + 10
        end = start + rdlength
        offset = _tail_name(data, start, labels, start, moving)  # MNAME
        offset = _tail_name(data, offset, labels, start, moving)  # RNAME
        if offset + 20 != end or not _plain_end(data, end, arcount):
            return False
        # As _negative_ttl reads it: min(TTL, MINIMUM), MINIMUM the last 4 bytes.
        self.nodata_ttl = min(ttl, _U32.unpack_from(data, end - 4)[0])
        return True

    def walk(self) -> None:
        """Walk every record (once): ``records``, ``names`` and the section ends."""
        if self.walked:
            return
        data = self.data
        size = len(data)
        ancount, nscount, arcount = self.counts
        names: _Names = {}
        #: Every name read, by offset (see _name): the splice checks its pointers here.
        self.names = names
        # The question's name, and every name ending it: pointers mostly go there.
        starts, offset = _question_labels(data)
        for start in starts:
            names[start] = (data[start:offset], offset, 0, False)
        names[offset - 1] = (b"\x00", offset, 0, False)
        offset += 4
        self.question_end = offset
        self.answer_end = offset
        opt_start = -1
        big_ttl = False
        records: list[_Record] = []
        append = records.append
        section = 1
        # Sections by record index: answer, then authority, then additional.
        ns_from = ancount
        ar_from = ancount + nscount
        for index in range(ar_from + arcount):
            if index == ns_from:
                self.answer_end = offset
                section = 2
            if index == ar_from:
                if section == 1:
                    self.answer_end = offset
                section = 3
            if opt_start >= 0:
                raise _Unusual  # anything after the OPT: not the plain shape
            start = offset
            # IndexError past the end: the callers' malformed case.
            length = data[offset]
            if length >= 0xC0:
                # Mostly a bare pointer to a name read before (_name's rules).
                suffix = names.get(((length & 0x3F) << 8) | data[offset + 1])
                if suffix is not None and suffix[1] <= start and suffix[2] < _MAX_POINTERS:
                    owner = suffix[0]
                    offset += 2
                    names[start] = (owner, offset, suffix[2] + 1, True)
                else:
                    owner, offset, _, _ = _name(data, offset, names)
            elif length == 0:
                owner = b"\x00"  # the root (the OPT's owner): nothing to remember
                offset += 1
            else:
                owner, offset, _, _ = _name(data, offset, names)
            # struct.error past the end: the callers' malformed case.
            rtype, rclass, ttl, rdlength = _RR.unpack_from(data, offset)
            rdata_start = offset + 10
            offset = rdata_start + rdlength
            if offset > size:
                raise _Unusual
            if rtype == TYPE_A:
                if rdlength != 4 or rclass != 1:
                    raise _Unusual
                parts: tuple[bytes, ...] = ()
            elif rtype == TYPE_OPT:
                # RFC 6891 section 6.1.1: one OPT, root owner, additional
                # section.  Options (EDE above all, RFC 8914) and extended
                # RCODE bits are the core's business.
                if section != 3 or owner != b"\x00" or rdlength or ttl >> 24:
                    raise _Unusual
                opt_start = start
                continue
            elif rclass != 1 or rtype not in _ALLOWED_TYPES:
                raise _Unusual
            else:
                parts = _rdata_parts(data, rtype, rdata_start, offset, names)
            if ttl > _TTL_MAX:
                ttl = 0
                big_ttl = True
            append((section, owner, rtype, ttl, rdata_start, offset, parts, start))
        if section == 1:
            self.answer_end = offset
        if offset != size:
            raise _Unusual  # trailing junk: dnspython refuses it
        self.records = records
        self.opt_start = opt_start
        self.big_ttl = big_ttl
        self.walked = True

    def body_end(self) -> int:
        """Where the records to relay end (the OPT, which is last, is not relayed)."""
        return self.opt_start if self.opt_start >= 0 else len(self.data)

    def additional_count(self) -> int:
        return self.counts[2] - (1 if self.opt_start >= 0 else 0)


def _question_labels(data: bytes) -> tuple[list[int], int]:
    """The label starts of a reply's question name and the offset just past it.
    Plain labels only (the client's name, see scan_query: a pointer could only
    point into the header); raises _Unusual otherwise or past 255 bytes (RFC
    1035 section 2.3.4), IndexError past the end."""
    offset = HEADER_SIZE
    starts = []
    while True:
        length = data[offset]
        if not length:
            break
        if length > 63:
            raise _Unusual
        starts.append(offset)
        offset += length + 1
    offset += 1
    if offset - HEADER_SIZE > 255:
        raise _Unusual
    return starts, offset


#: Label starts of the names read so far by _plain_tail: (length of the name
#: from there on, compression pointers followed to read it).
_Labels = dict[int, tuple[int, int]]


class _Tail:
    """The authority and additional records after a plain A reply's answer, checked
    as the walk checks them (see _plain_tail): where they lie, the compression
    pointers among them that point among them (and so move with them), and
    their TTL fields."""

    __slots__ = ("start", "end", "moving", "ttl_offsets", "ttls")

    def __init__(
        self, start: int, end: int, moving: list[int], ttl_offsets: list[int], ttls: list[int]
    ) -> None:
        self.start = start
        self.end = end
        self.moving = moving
        self.ttl_offsets = ttl_offsets
        self.ttls = ttls


def _plain_tail(data: bytes, offset: int, nscount: int, arcount: int, labels: _Labels) -> _Tail:
    """The records from ``offset`` on (the authority and additional sections), for
    the synthesized answer; raises _Unusual (or IndexError, struct.error) where
    the walk must judge them.

    Every record is checked as the walk checks it: types A, AAAA, NS, CNAME and
    SOA of class IN, TTLs below 2**31, names as dnspython reads them, and at the
    end at most a plain OPT.  More is demanded of compression pointers, so that
    the records can move as a block: each points to the start of a label of the
    question's name or of a name already read here -- never into the answer
    section, which is replaced, nor into other bytes.
    """
    start = offset
    moving: list[int] = []
    ttl_offsets: list[int] = []
    ttls: list[int] = []
    count = nscount + arcount
    for index in range(count):
        if not data[offset]:
            # The root's name: only the OPT, last, in the additional section
            # (RFC 6891 section 6.1.1), as _plain_end checks it.
            if index != count - 1 or index < nscount or not _plain_end(data, offset, 1):
                raise _Unusual
            return _Tail(start, offset, moving, ttl_offsets, ttls)
        length = data[offset]
        target = ((length & 0x3F) << 8) | data[offset + 1] if length >= 0xC0 else start
        if target < start:
            # A bare pointer to a label start before the tail (the common owner):
            # nothing moves and no label starts here; the rest as _tail_name.
            known = labels.get(target)
            if known is None or known[1] >= _MAX_POINTERS:
                raise _Unusual
            offset += 2
        else:
            offset = _tail_name(data, offset, labels, start, moving)
        rtype, rclass, ttl, rdlength = _RR.unpack_from(data, offset)
        rdata = offset + 10
        end = rdata + rdlength
        if rclass != 1 or ttl > _TTL_MAX:
            raise _Unusual
        if rtype == TYPE_A:
            fits = rdlength == 4
        elif rtype == TYPE_NS or rtype == TYPE_CNAME:
            fits = _tail_name(data, rdata, labels, start, moving) == end
        elif rtype == TYPE_SOA:
            mname_end = _tail_name(data, rdata, labels, start, moving)
            fits = _tail_name(data, mname_end, labels, start, moving) + 20 == end
        elif rtype == TYPE_AAAA:
            fits = rdlength == 16
        else:
            raise _Unusual
        if not fits:
            raise _Unusual
        ttl_offsets.append(offset + 4)
        ttls.append(ttl)
        offset = end
    if offset != len(data):
        raise _Unusual
    return _Tail(start, offset, moving, ttl_offsets, ttls)


def _tail_name(data: bytes, offset: int, labels: _Labels, tail: int, moving: list[int]) -> int:
    """Read the name at ``offset`` for _plain_tail: the offset just past it.

    dnspython's rules (dns.name.from_wire_parser): labels of up to 63 bytes, a
    pointer only backwards, at most 255 bytes in all.  Ours on top: a pointer
    goes to a label start in ``labels``, which holds only names read before this
    one, so it goes backwards and to a name whose own pointers were checked
    already.  A pointer to ``tail`` or beyond is noted in ``moving``.
    """
    at = offset
    starts = []
    while True:
        length = data[at]
        if not length:
            suffix, hops = 1, 0
            end = at + 1
            break
        if length >= 0xC0:
            target = ((length & 0x3F) << 8) | data[at + 1]
            known = labels.get(target)
            if known is None:
                raise _Unusual
            suffix, hops = known
            hops += 1
            if hops > _MAX_POINTERS:
                raise _Unusual
            if target >= tail:
                moving.append(at)
            end = at + 2
            break
        if length > 63:
            raise _Unusual
        starts.append(at)
        at += length + 1
    if at - offset + suffix > 255:  # RFC 1035 section 2.3.4
        raise _Unusual
    for label in starts:
        labels[label] = (at - label + suffix, hops)
    return end


def _plain_end(data: bytes, offset: int, arcount: int) -> bool:
    """Whether the message ends at ``offset``, after at most a plain OPT there (the
    walk's rule: root owner, extended RCODE 0, no options; RFC 6891 section 6.1)."""
    if not arcount:
        return offset == len(data)
    return (
        len(data) == offset + 11
        and data[offset : offset + 3] == b"\x00\x00\x29"
        and not data[offset + 5]
        and data[offset + 9 : offset + 11] == b"\x00\x00"
    )


def _rdata_parts(data: bytes, rtype: int, start: int, end: int, names: _Names) -> tuple[bytes, ...]:
    """Check the rdata as dnspython would and return its names (see _Record)."""
    if rtype == TYPE_AAAA:
        if end - start != 16:
            raise _Unusual
        return ()
    if rtype == TYPE_SOA:
        mname, offset, _, _ = _name(data, start, names)
        rname, offset, _, _ = _name(data, offset, names)
        if offset + 20 != end:
            raise _Unusual
        return (mname, rname, data[offset:end])
    target, offset, _, _ = _name(data, start, names)  # NS, CNAME
    if offset != end:
        raise _Unusual
    return (target,)


def _follow_chain(records: Sequence[_Record], qname: bytes) -> bytes:
    """The lowercased owner at the end of the CNAME chain from ``qname`` (lowercased).

    Mirrors :func:`totd_faith.dns64.synthesis.follow_chain` (RFC 6147 section
    5.1.5): the last CNAME per owner, at most MAX_CHAIN steps.  DNAMEs never
    get here (unusual).
    """
    cnames: dict[bytes, bytes] = {}
    for record in records:
        if record[0] == 1 and record[2] == TYPE_CNAME:
            # CNAME is a singleton type in dnspython: the last record of an
            # owner replaces the others (dns.rdataset.Rdataset.add).
            cnames[record[1].lower()] = record[6][0].lower()
    if not cnames:
        return qname
    name = qname
    for _ in range(MAX_CHAIN):
        target = cnames.get(name)
        if target is None:
            break
        name = target
    return name


class _Writer:
    """A response being built, with name compression like dnspython's renderer."""

    __slots__ = ("buf", "names", "ttl_offsets", "ttls")

    def __init__(self, head: bytes, qname: bytes) -> None:
        self.buf = bytearray(head)
        self.names: dict[bytes, int] = {}
        self.ttl_offsets: list[int] = []
        self.ttls: list[int] = []
        low = qname.lower()
        i = 0
        while qname[i]:
            self.names[low[i:]] = HEADER_SIZE + i
            i += qname[i] + 1

    def name(self, wire: bytes) -> None:
        buf = self.buf
        names = self.names
        low = wire.lower()
        i = 0
        base = len(buf)
        while wire[i]:
            pointer = names.get(low[i:])
            if pointer is not None:
                buf += wire[:i]
                buf += _U16.pack(0xC000 | pointer)
                return
            if base + i < 0x4000:
                names[low[i:]] = base + i
            i += wire[i] + 1
        buf += wire

    def record(
        self, owner: bytes, rtype: int, ttl: int, rdata: bytes, parts: tuple[bytes, ...]
    ) -> None:
        self.name(owner)
        buf = self.buf
        self.ttl_offsets.append(len(buf) + 4)
        self.ttls.append(ttl)
        buf += _RR.pack(rtype, 1, ttl, 0)
        start = len(buf)
        if not parts:
            buf += rdata
        else:
            # RFC 3597 section 4: names in NS, CNAME and SOA rdata may be compressed.
            for part in parts[:2] if rtype == TYPE_SOA else parts:
                self.name(part)
            if rtype == TYPE_SOA:
                buf += parts[2]
        buf[start - 2 : start] = _U16.pack(len(buf) - start)


class FastDns64:
    """The fast path's view of the configuration (built like :class:`~totd_faith.dns64.Dns64`)."""

    def __init__(self, config: Config, hosts: Sequence[HostEntry] = ()) -> None:
        self.synth = Synthesizer(config.prefixes, config.dns64.mapped, config.dns64.exclude)
        #: The prefix when there is just one (the common case, see after_a).
        self.only_prefix = config.prefixes[0] if len(config.prefixes) == 1 else None
        #: Whether that prefix takes every translatable address: a Network-Specific
        #: Prefix (RFC 6052 section 3.1 limits only the Well-Known one) with
        #: dns64.mapped covering everything.
        self.takes_all = (
            self.only_prefix is not None
            and not self.only_prefix.is_well_known
            and any(n.prefixlen == 0 for n in config.dns64.mapped)
        )
        self.payload = config.dns.udp_payload_size
        # Lowercased wire names; dnspython compares names ASCII-case-insensitively.
        self.listed = frozenset(
            _lower_wire(n)
            for n in (*config.dns64.never_synthesize, *config.dns64.always_synthesize)
        )
        self.hosts = frozenset(_lower_wire(e.name) for e in hosts)
        # What follows the qname in upstream queries: type, class IN, and an OPT
        # with our payload size, no DO (see upstream_query).
        opt = b"\x00\x00\x29" + _U16.pack(self.payload) + b"\x00\x00\x00\x00\x00\x00"
        self._question_tails = {
            rdtype: _U16.pack(rdtype) + b"\x00\x01" + opt for rdtype in (TYPE_A, TYPE_AAAA)
        }

    # -- 1. the query ----------------------------------------------------------------

    def eligible(self, data: bytes, head: QueryHead) -> bool:
        """Whether the plain cold AAAA path applies (``head`` from dnswire.scan_query,
        which already demands QR=0, opcode QUERY, one question, no answer or
        authority records and at most an EDNS version 0 OPT)."""
        key = head[0]
        if key[-4:] != b"\x00\x1c\x00\x01" or head[2] & KEY_DO:
            return False  # not AAAA/IN, or DO (RFC 6147 section 5.5)
        if head[2] & KEY_EDNS and len(data) != head[1] + 11:
            return False  # OPT with options: let dnspython judge them
        qname = key[:-4]
        # Local data: ipv4only.arpa, reverse zones (all under arpa.) and hosts.
        if qname.endswith(b"\x04arpa\x00") or qname in self.hosts:
            return False
        listed = self.listed
        if listed:
            i = 0
            while True:
                if qname[i:] in listed:
                    return False
                if not qname[i]:
                    break
                i += qname[i] + 1
        return True

    def upstream_query(self, data: bytes, head: QueryHead, rdtype: int) -> bytes:
        """The upstream query the core would send (dns64.messages.upstream_query), ID 0:
        RD, the client's CD and AD, its qname as asked, EDNS0 without DO."""
        return b"".join(
            (
                _UPSTREAM_HEADERS[(data[3] >> 4) & 3],
                data[HEADER_SIZE : head[1] - 4],
                self._question_tails[rdtype],
            )
        )

    @staticmethod
    def check(reply: bytes) -> Reply | bytes:
        """The upstream module's reply check (totd_faith.upstream.ReplyCheck): the
        walked reply, or for a well-formed reply the fast path does not handle its
        bytes (for the core); raises WireError for garbage, which is ignored."""
        try:
            return Reply(reply)
        except (_Unusual, IndexError, ValueError, struct.error):
            walk_response(reply)
            return reply

    # -- 2. the AAAA reply -----------------------------------------------------------

    def after_aaaa(self, data: bytes, head: QueryHead, parsed: Reply) -> FastAnswer | bytes | None:
        """The answer, :data:`NEED_A`, or :data:`FALLBACK`."""
        if parsed.nodata_ttl >= 0:
            return NEED_A  # NOERROR without an answer: RFC 6147 section 5.1.6
        reply = parsed.data
        try:
            parsed.walk()
            answers = parsed.records[: parsed.counts[0]]
            is_excluded = self.synth.is_excluded
            aaaa = False
            for record in answers:
                if record[2] == TYPE_AAAA:
                    if is_excluded(int.from_bytes(reply[record[4] : record[5]])):
                        return FALLBACK  # RFC 6147 section 5.1.4 trimming: the core does it
                    aaaa = True
            if parsed.rcode == 3:
                # RFC 6147 section 5.1.2: NXDOMAIN is returned, never synthesized.
                return self._relay(data, head, parsed)
            if parsed.rcode == 0 and aaaa:
                final = _follow_chain(answers, head[0][:-4])
                for record in answers:
                    if record[2] == TYPE_AAAA and record[1].lower() == final:
                        return self._relay(data, head, parsed)  # section 5.1.1
            return NEED_A
        except (_Unusual, IndexError, ValueError, struct.error):
            return FALLBACK

    # -- 3. the A reply --------------------------------------------------------------

    def after_a(self, data: bytes, head: QueryHead, aaaa: Reply, a: Reply) -> FastAnswer | None:
        """The answer (synthesized or the AAAA reply) or :data:`FALLBACK`."""
        a_reply = a.data
        try:
            if a.rcode != 0:
                return FALLBACK  # RFC 6147 section 5.1.6, the core's rules
            pairs = a.plain_a
            basis: list[_Record] | None = None  # None: the plain A reply
            if pairs is None or a.question_end != head[1]:
                a.walk()
                answers = a.records[: a.counts[0]]
                final = _follow_chain(answers, head[0][:-4])
                basis = [r for r in answers if r[2] == TYPE_A and r[1].lower() == final]
                pairs = [(r[3], int.from_bytes(a_reply[r[4] : r[5]])) for r in basis]
            synthesized = self._synthesized(pairs)
            if synthesized is None:
                # RFC 6147 section 5.4: nothing to synthesize, the AAAA reply.
                return self._relay(data, head, aaaa)
            v6, ttl = synthesized
            # RFC 6147 section 5.1.7: TTL = min(A TTL, SOA TTL/MINIMUM of the
            # negative AAAA answer), 600 s without an SOA (synthesis.negative_ttl).
            ttl = min(ttl, _negative_ttl(aaaa))
            if basis is None:
                plain = self._plain_answer(data, head, a, v6, ttl)
                if plain is not None:
                    return plain
                a.walk()
                basis = [r for r in a.records if r[0] == 1]  # all A records, at the name
            return self._spliced(data, head, a, basis, v6, ttl) or self._written(
                data, head, a, basis, v6, ttl
            )
        except (_Unusual, IndexError, ValueError, struct.error):
            return FALLBACK

    def _synthesized(self, pairs: list[tuple[int, int]]) -> tuple[list[bytes], int] | None:
        """The synthetic AAAA rdata and their TTL from the (TTL, IPv4 address) pairs
        of the A records at the end of the chain, or None if there are none or
        none may be synthesized (Synthesizer.embed_all's rules)."""
        only = self.only_prefix
        if len(pairs) == 1 and only is not None:
            # The common case without the lists: one address, one prefix.
            ttl, v4 = pairs[0]
            if not (translatable(v4) if self.takes_all else self.synth.embeddable(v4, only)):
                return None
            return [only.embed_int(v4).to_bytes(16)], ttl
        if not pairs:
            return None
        # dnspython's rdataset drops duplicate addresses.
        addresses = list(dict.fromkeys(v4 for _, v4 in pairs))
        v6 = [v.to_bytes(16) for v in dict.fromkeys(self.synth.embed_all(addresses))]
        if not v6:
            return None
        return v6, min(ttl for ttl, _ in pairs)

    # -- building responses ------------------------------------------------------

    def _plain_answer(
        self, data: bytes, head: QueryHead, a: Reply, v6: list[bytes], ttl: int
    ) -> FastAnswer | None:
        """The synthesized answer to a plain A reply (see :class:`Reply`): what
        :meth:`_spliced` makes of it, built directly, or None where a pointer
        would move out of reach.  The AAAA records are owned by a pointer to
        the client's question name, as dnspython compresses them; the
        authority and additional records follow as they were, moved (RFC 6147
        section 5.3); our OPT if the client sent one; no AD (section 5.5)."""
        tail = a.tail
        count = len(v6)
        shift = 28 * count - (tail.start - head[1])  # A records (16 bytes) become AAAA (28)
        reply = a.data
        body: bytes | bytearray = reply[tail.start : tail.end]
        if tail.moving and shift:
            body = bytearray(body)
            for at in tail.moving:
                target = (((reply[at] & 0x3F) << 8) | reply[at + 1]) + shift
                if target >= 0x4000:
                    return None
                _U16.pack_into(body, at - tail.start, 0xC000 | target)
        ns, ar = a.counts[1], a.counts[2] - (tail.end < len(reply))
        record = _PLAIN_AAAA + _RR.pack(TYPE_AAAA, 1, ttl, 16)
        parts: list[bytes | bytearray] = [self._head(data, head, 0, count, ns, ar)]
        for rdata in v6:
            parts += (record, rdata)
        parts.append(body)
        if head[2] & KEY_EDNS:
            parts.append(_OPT_TO_CLIENT)
        wire = b"".join(parts)
        if len(wire) > 65_535:
            return None
        # Each AAAA record's TTL lies after its pointer, type and class.
        first = head[1] + 6
        ttl_offsets = [*range(first, first + 28 * count, 28)]
        ttl_offsets += [at + shift for at in tail.ttl_offsets]
        return FastAnswer(
            wire, True, tuple(ttl_offsets), (ttl,) * count + tuple(tail.ttls), False, -1
        )

    @staticmethod
    def _head(data: bytes, head: QueryHead, flags: int, an: int, ns: int, ar: int) -> bytes:
        """The response's header and the client's question.  dns64.messages.new_response:
        QR, RA, the client's RD and CD, opcode QUERY; ``flags`` adds the RCODE and
        AD; ``ar`` counts the additional records without our OPT."""
        return (
            _HEAD_OUT.pack(
                data[:2],
                _B2_QR | (data[2] & _B2_RD),
                _B3_RA | (data[3] & _B3_CD) | flags,
                1,
                an,
                ns,
                ar + (1 if head[2] & KEY_EDNS else 0),
            )
            + data[HEADER_SIZE : head[1]]
        )

    def _relay(self, data: bytes, head: QueryHead, reply: Reply) -> FastAnswer:
        """dns64.messages.relay with keep_ad: the reply's records after the client's
        header and question.  The reply's question has the length of the
        client's (the upstream module checks it echoes ours), so compression
        pointers stay valid."""
        reply.walk()
        reply_data = reply.data
        question_end = head[1]
        if reply.question_end != question_end or reply.big_ttl:
            # RFC 2181 section 8: a TTL with the top bit set is read as zero; the
            # core writes that zero, a byte copy would pass the huge value on.
            raise _Unusual
        body_end = reply.body_end()
        if body_end < len(reply_data):
            for start, (_, end, _, _) in reply.names.items():
                if start < body_end < end:
                    raise _Unusual  # a name that reads the OPT, which is replaced
        counts = reply.counts
        rcode = reply.rcode
        edns = head[2] & KEY_EDNS
        wire = b"".join(
            (
                self._head(
                    data,
                    head,
                    # The reply's RCODE; RFC 6840 section 5.7: AD only for a client
                    # that asked for it (AD or DO; DO never gets here) and only as
                    # the upstream asserted it.
                    (reply.byte3 & data[3] & _B3_AD) | rcode,
                    counts[0],
                    counts[1],
                    counts[2] - (reply.opt_start >= 0),
                ),
                reply_data[question_end:body_end],
                _OPT_TO_CLIENT if edns else b"",
            )
        )
        # Same header and question lengths: every record sits where it sat in
        # the reply.  RFC 2308 sections 2.1/2.2: NXDOMAIN or no AAAA in the
        # answer section is a negative answer.
        ttl_offsets: list[int] = []
        ttls: list[int] = []
        negative = True
        soa_minimum = -1
        for record in reply.records:
            ttl_offsets.append(record[4] - 6)
            ttls.append(record[3])
            if record[2] == TYPE_AAAA:
                if record[0] == 1:
                    negative = False
            elif record[2] == TYPE_SOA and record[0] == 2 and soa_minimum < 0:
                # What the cache's RFC 2308 rule reads (dnscache.lifetime): the
                # MINIMUM of the first SOA in the authority section.
                minimum = int.from_bytes(record[6][2][16:20])
                soa_minimum = 0 if minimum > _TTL_MAX else minimum
        return FastAnswer(
            wire, False, tuple(ttl_offsets), tuple(ttls), negative or rcode == 3, soa_minimum
        )

    def _spliced(
        self,
        data: bytes,
        head: QueryHead,
        a: Reply,
        basis: list[_Record],
        v6: list[bytes],
        ttl: int,
    ) -> FastAnswer | None:
        """:meth:`_written`'s answer made by splicing the A reply's bytes, or None
        when the reply's layout is not the plain one handled here.

        The A reply's question has the length of the client's (the upstream
        module checks it echoes ours), so the answer records before the first A
        record stay where they are, verbatim.  There the A records give way to
        the synthetic AAAA records (RFC 6147 section 5.1.6: the other A records
        are dropped), and the authority and additional sections follow
        verbatim, moved by the difference in size: every compression pointer
        there that points past the answer section moves with them.  Left to the
        writer: pointers into the dropped A records, answer records after an A
        record, names that read bytes which change (the question's type, which
        becomes AAAA; the OPT; a pointer that moves), pointers moved past 0x3FFF
        and TTLs to be written as zero (RFC 2181 section 8: a name may read them).
        """
        reply = a.data
        question_end = head[1]
        if a.question_end != question_end or a.big_ttl:
            return None
        records = a.records
        answer_count = a.counts[0]
        kept = 0
        for record in records:
            if record[2] == TYPE_A:
                break
            kept += 1
        changed = records[kept][7]  # the first A record (basis has one)
        for record in records[kept + 1 : answer_count]:
            if record[2] != TYPE_A:
                return None
        answer_end = a.answer_end
        body_end = a.body_end()
        first = basis[0]
        size = first[4] - 10 - first[7]
        # The AAAA records take the first basis record's owner as it was sent;
        # the later ones point at the first (as dnspython compresses), unless
        # it is a bare pointer already.
        later = _U16.pack(0xC000 | changed) if size > 2 and changed < 0x4000 else None
        shift = len(v6) * 26 + size + (len(v6) - 1) * (size if later is None else 2)
        shift -= answer_end - changed
        # Every name the reply's records read, by where it starts (Reply.names):
        # those that stay must read the same bytes after the splice.
        moves: dict[int, int] = {}  # pointer offset in the body -> new target
        # Names read only as a pointer's target, in the body: (start, end of their
        # labels, whether they end in a pointer that moves).
        targets: list[tuple[int, int, bool]] = []
        name_end = question_end - 4
        for start, (_, end, hops, own) in a.names.items():
            if end <= name_end:
                continue  # within the question's name: the client's, same but for case
            if start < changed:
                if start < question_end or end > changed:
                    return None
            elif start >= answer_end:
                if end > body_end:
                    if start >= body_end:
                        continue  # the OPT's owner: nothing points after it
                    return None
                if hops:
                    target = ((reply[end - 2] & 0x3F) << 8) | reply[end - 1]
                    if target >= answer_end:
                        if own:
                            moves[end - 2 - answer_end] = target + shift
                        else:
                            targets.append((start, end - 2, True))
                    elif target >= changed:
                        return None  # into the A records that go
                    elif not own:
                        targets.append((start, end - 2, False))
                elif not own:
                    targets.append((start, end, False))
            elif start == first[7] and hops:
                if ((reply[end - 2] & 0x3F) << 8) | reply[end - 1] >= changed:
                    return None
        for start, labels_end, moving in targets:
            # A name read from inside other bytes (RDATA, say) must end in the
            # pointer of a record's own name, and no pointer that moves may lie
            # among its labels.
            if moving and labels_end - answer_end not in moves:
                return None
            for at in moves:
                if start - 1 <= at + answer_end < labels_end:
                    return None
        body: bytes | bytearray = reply[answer_end:body_end]
        if moves and shift:
            body = bytearray(body)
            for at, target in moves.items():
                if target >= 0x4000:
                    return None
                _U16.pack_into(body, at, 0xC000 | target)
        count = len(v6)
        owner = reply[first[7] : first[4] - 10]
        fixed = _RR.pack(TYPE_AAAA, 1, ttl, 16)
        answers = [owner, fixed, v6[0]]
        ttl_offsets: list[int] = []
        ttls: list[int] = []
        for record in records[:kept]:
            ttl_offsets.append(record[4] - 6)
            ttls.append(record[3])
        offset = changed + size + 4
        ttl_offsets.append(offset)
        ttls.append(ttl)
        if count > 1:
            step = 26 + (size if later is None else 2)
            for rdata in v6[1:]:
                answers += (later or owner, fixed, rdata)
                offset += step
                ttl_offsets.append(offset)
                ttls.append(ttl)
        moved = shift - 6
        for record in records[answer_count:]:
            ttl_offsets.append(record[4] + moved)
            ttls.append(record[3])
        counts = a.counts
        edns = head[2] & KEY_EDNS
        wire = b"".join(
            (
                # NOERROR, no AD (RFC 6147 section 5.5: synthetic data is not signed).
                self._head(data, head, 0, kept + count, counts[1], counts[2] - (a.opt_start >= 0)),
                reply[question_end:changed],
                *answers,
                body,
                _OPT_TO_CLIENT if edns else b"",
            )
        )
        if len(wire) > 65_535:
            return None
        return FastAnswer(wire, True, tuple(ttl_offsets), tuple(ttls), False, -1)

    def _written(
        self,
        data: bytes,
        head: QueryHead,
        a: Reply,
        basis: list[_Record],
        v6: list[bytes],
        ttl: int,
    ) -> FastAnswer:
        """RFC 6147 section 5.4: the client's question, the A reply's answer with the
        A RRset at the end of the chain replaced by the synthetic AAAA RRset
        (other A records dropped, section 5.1.6), authority and additional
        copied; no AD (section 5.5, synthetic data is not signed)."""
        records = a.records
        a_data = a.data
        answers = 0
        first = basis[0]
        for record in records:
            if record[0] == 1 and record[2] != TYPE_A:
                answers += 1
        counts = (
            answers + len(v6),
            sum(1 for r in records if r[0] == 2),
            a.additional_count(),
        )
        writer = _Writer(self._head(data, head, 0, *counts), data[HEADER_SIZE : head[1] - 4])
        for record in records:
            rtype = record[2]
            if record[0] == 1 and rtype == TYPE_A:
                if record is first:
                    for value in v6:
                        writer.record(first[1], TYPE_AAAA, ttl, value, ())
                continue
            writer.record(record[1], rtype, record[3], a_data[record[4] : record[5]], record[6])
        if head[2] & KEY_EDNS:
            writer.buf += _OPT_TO_CLIENT
        if len(writer.buf) > 65_535:
            # Too big for any transport (RFC 1035 section 4.2.2's 16-bit length):
            # the core's renderer truncates it.
            raise _Unusual
        return FastAnswer(
            bytes(writer.buf), True, tuple(writer.ttl_offsets), tuple(writer.ttls), False, -1
        )


def _lower_wire(name: dns.name.Name) -> bytes:
    wire = name.to_wire()
    assert wire is not None
    return wire.lower()


def _negative_ttl(reply: Reply) -> int:
    """:func:`totd_faith.dns64.synthesis.negative_ttl` on bytes: min(SOA TTL, MINIMUM)
    of the first SOA RRset in the authority section (its records merged as
    dnspython merges them: TTL = the smallest), else 600 s."""
    if reply.nodata_ttl >= 0:
        return reply.nodata_ttl  # read when the reply was checked
    reply.walk()
    soa: _Record | None = None
    owner = b""
    ttl = 0
    for record in reply.records:
        if record[0] == 2 and record[2] == TYPE_SOA:
            if soa is None:
                soa = record
                ttl = record[3]
            else:
                if not owner:
                    owner = soa[1].lower()
                if record[1].lower() == owner:
                    soa = record
                    ttl = min(ttl, record[3])
    if soa is None:
        return NO_SOA_TTL_CAP
    # SOA is a singleton type in dnspython too: the last record's data stays.
    return min(ttl, int.from_bytes(soa[6][2][16:20]))
