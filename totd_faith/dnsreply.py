"""DNS messages as dnspython objects, built faster: names and rdatas interned.

On a cache miss the proxy parses the client's query and two upstream replies,
and ``dns.message.from_wire`` was the largest single cost of the miss path: every reply builds fresh
``Name`` and ``Rdata`` objects, although the same owner names, SOA records and
addresses come back again and again.  Both are immutable in dnspython, so this
reader keeps the ones it has seen (keyed by their uncompressed wire form) and
reuses them.  The result is an ordinary :class:`dns.message.Message`, equal to
what ``from_wire`` returns (property-tested in tests/unit/test_dnsreply.py).

Only the common shape is handled here: a query or response with opcode QUERY,
one question, at most one OPT (in the additional section) and no TSIG.  Anything
else, and anything malformed, goes to ``dns.message.from_wire``, which then
parses or raises exactly as before.

Pure: no I/O.
"""

from __future__ import annotations

import struct

import dns.flags
import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")
_Q = struct.Struct("!HH")

_A, _NS, _CNAME, _SOA, _PTR, _AAAA, _DNAME, _OPT, _TSIG = 1, 2, 5, 6, 12, 28, 39, 41, 250
#: Types whose whole RDATA is one (possibly compressed) domain name.
_NAME_RDATA = frozenset((_NS, _CNAME, _PTR, _DNAME))
#: Types with fixed-size RDATA and no names: the raw bytes are the key.
_RAW_RDATA = frozenset((_A, _AAAA))


class _Unusual(Exception):
    """Not the common shape (or malformed): let dnspython decide."""


class MessageReader:
    """``read(wire)`` is ``dns.message.from_wire(wire)``, with interning."""

    def __init__(self, limit: int = 16_384) -> None:
        self.limit = limit
        self._names: dict[bytes, dns.name.Name] = {}
        self._rdatas: dict[tuple[int, int, bytes], dns.rdata.Rdata] = {}
        self._types: dict[int, dns.rdatatype.RdataType] = {}
        self._classes: dict[int, dns.rdataclass.RdataClass] = {}

    def read(self, data: bytes) -> dns.message.Message:
        try:
            return self._read(data)
        except Exception:
            # _Unusual, or anything malformed: dnspython parses it or raises
            # the error it always raised.
            return dns.message.from_wire(data)

    # -- pieces -------------------------------------------------------------------

    def _name_wire(self, data: bytes, offset: int) -> tuple[bytes, int]:
        """(uncompressed wire form, offset after the name); RFC 1035 section 4.1.4."""
        parts: list[bytes] = []
        end = -1
        # dnspython's rules (dns.name.from_wire_parser): every pointer must point
        # before the previous one, and what it points to must lie wholly before
        # the stretch of the name that points to it (reads stop at ``readable``).
        limit = offset
        readable = len(data)
        position = offset
        size = 0
        while True:
            if position >= readable:
                raise _Unusual
            length = data[position]
            if length == 0:
                if end < 0:
                    end = position + 1
                break
            if length >= 0xC0:
                if position + 1 >= readable:
                    raise _Unusual
                target = ((length & 0x3F) << 8) | data[position + 1]
                if target >= limit:
                    raise _Unusual
                if end < 0:
                    end = position + 2
                readable = limit
                limit = target
                position = target
                continue
            if length > 63:
                raise _Unusual
            stop = position + 1 + length
            if stop > readable:
                raise _Unusual
            parts.append(data[position:stop])
            size += length + 1
            if size > 254:  # RFC 1035 section 2.3.4: 255 octets with the root label
                raise _Unusual
            position = stop
        parts.append(b"\x00")
        return b"".join(parts), end

    def _name(self, wire: bytes) -> dns.name.Name:
        name = self._names.get(wire)
        if name is None:
            name = dns.name.from_wire(wire, 0)[0]
            if len(self._names) >= self.limit:
                self._names.clear()
            self._names[wire] = name
        return name

    def _rdata(
        self, data: bytes, rdclass: int, rdtype: int, start: int, rdlength: int
    ) -> dns.rdata.Rdata:
        end = start + rdlength
        if rdtype in _RAW_RDATA:
            key = data[start:end]
        elif rdtype in _NAME_RDATA:
            key, name_end = self._name_wire(data, start)
            if name_end != end:
                raise _Unusual
        elif rdtype == _SOA:
            mname, after = self._name_wire(data, start)
            rname, after = self._name_wire(data, after)
            if after + 20 != end:
                raise _Unusual
            key = mname + rname + data[after:end]
        else:
            return dns.rdata.from_wire(
                self._class(rdclass), self._type(rdtype), data, start, rdlength
            )
        cache_key = (rdclass, rdtype, key)
        rdata = self._rdatas.get(cache_key)
        if rdata is None:
            rdata = dns.rdata.from_wire(
                self._class(rdclass), self._type(rdtype), data, start, rdlength
            )
            if len(self._rdatas) >= self.limit:
                self._rdatas.clear()
            self._rdatas[cache_key] = rdata
        return rdata

    def _type(self, value: int) -> dns.rdatatype.RdataType:
        rdtype = self._types.get(value)
        if rdtype is None:
            rdtype = self._types[value] = dns.rdatatype.RdataType.make(value)
        return rdtype

    def _class(self, value: int) -> dns.rdataclass.RdataClass:
        rdclass = self._classes.get(value)
        if rdclass is None:
            rdclass = self._classes[value] = dns.rdataclass.RdataClass.make(value)
        return rdclass

    # -- the message ----------------------------------------------------------------

    def _read(self, data: bytes) -> dns.message.Message:
        qid, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
        if qdcount != 1 or (flags >> 11) & 0x0F != 0:
            raise _Unusual
        message = dns.message.QueryMessage(id=qid)
        message.flags = dns.flags.Flag(flags)
        message.wire = data
        wire, offset = self._name_wire(data, 12)
        rdtype, rdclass = _Q.unpack_from(data, offset)
        offset += 4
        message.find_rrset(
            message.question,
            self._name(wire),
            self._class(rdclass),
            self._type(rdtype),
            create=True,
            force_unique=True,
        )
        for section, count in (
            (message.answer, ancount),
            (message.authority, nscount),
            (message.additional, arcount),
        ):
            for _ in range(count):
                wire, offset = self._name_wire(data, offset)
                rdtype, rdclass, ttl, rdlength = _RR.unpack_from(data, offset)
                offset += 10
                if offset + rdlength > len(data) or rdtype == _TSIG:
                    raise _Unusual
                if rdtype == _OPT:
                    # RFC 6891 section 6.1.1: one OPT, in the additional section,
                    # owned by the root.
                    if section is not message.additional or message.opt is not None:
                        raise _Unusual
                    if wire != b"\x00":
                        raise _Unusual
                    rdata = dns.rdata.from_wire(
                        self._class(rdclass), self._type(rdtype), data, offset, rdlength
                    )
                    message.opt = dns.rrset.from_rdata(dns.name.root, ttl, rdata)
                else:
                    rdata = self._rdata(data, rdclass, rdtype, offset, rdlength)
                    rrset = message.find_rrset(
                        section,
                        self._name(wire),
                        self._class(rdclass),
                        self._type(rdtype),
                        rdata.covers(),
                        None,
                        True,
                        False,
                    )
                    # RFC 2181 section 8: TTLs with the top bit set are zero.
                    rrset.add(rdata, ttl if ttl <= 0x7FFFFFFF else 0)
                offset += rdlength
        if offset != len(data):
            raise _Unusual  # trailing junk: from_wire raises TrailingJunk
        return message
