"""The answer cache: final responses in wire form, TTLs counting down, LRU-bounded.

Entries are stored as the response bytes plus the offsets of their TTL fields,
so a hit costs a dictionary lookup and, at most once per second of age per
entry, rewriting those TTL fields.  Keys are built by the server from
:func:`totd_faith.dnswire.scan_query` (lowercased qname, qtype, qclass, DO, CD,
EDNS present) plus whether the client gets DNS64 synthesis.

No I/O: ``now`` is a parameter (seconds on any monotonic clock).
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Hashable, Sequence

from totd_faith.dnswire import (
    SECTION_ANSWER,
    SECTION_AUTHORITY,
    TYPE_OPT,
    TYPE_SOA,
    Layout,
    Record,
    walk_response,
)
from totd_faith.errors import WireError

RCODE_NOERROR = 0
RCODE_NXDOMAIN = 3

_U32 = struct.Struct("!I")
_TTL_MAX = 2**31 - 1  # RFC 2181 section 8: TTLs above this are treated as zero


def _ttl(value: int) -> int:
    return 0 if value > _TTL_MAX else value


def lifetime(
    rcode: int,
    negative: bool,
    ttls: Sequence[int],
    soa_minimum: int,
    max_ttl: int,
    max_negative_ttl: int,
) -> int:
    """How long a response may be cached, in seconds (0: not at all).

    ``ttls`` are the TTLs of its records (OPT excluded, RFC 2181 section 8
    applied), ``negative`` whether it is a negative answer and ``soa_minimum``
    the MINIMUM field of the first SOA in its authority section (-1: none).
    Only NOERROR and NXDOMAIN answers are cached: SERVFAIL and REFUSED say
    nothing lasting.
    """
    if rcode not in (RCODE_NOERROR, RCODE_NXDOMAIN):
        return 0
    ttl = min(ttls) if ttls else max_ttl
    if ttl > max_ttl:
        ttl = max_ttl
    if negative:
        if soa_minimum < 0:
            # RFC 2308 section 5: negative answers without SOA SHOULD NOT be cached.
            return 0
        # RFC 2308 section 5: the negative TTL is the lesser of the SOA's TTL and
        # its MINIMUM field (the last 32 bits of the SOA RDATA).
        ttl = min(ttl, soa_minimum, max_negative_ttl)
    return ttl if ttl > 0 else 0


def _negative(layout: Layout, records: list[Record], data: bytes) -> tuple[bool, int]:
    """Whether a walked response is negative, and its SOA's MINIMUM (-1: none)."""
    # RFC 2308 section 2.1/2.2: NXDOMAIN, or NOERROR without an answer of the
    # type asked for (after any CNAME/DNAME chain), is a negative answer.
    negative = layout.rcode == RCODE_NXDOMAIN or not any(
        r.rtype == layout.qtype or layout.qtype == 255
        for r in records
        if r.section == SECTION_ANSWER
    )
    for r in records:
        if r.section == SECTION_AUTHORITY and r.rtype == TYPE_SOA:
            return negative, _ttl(_U32.unpack_from(data, r.rdata_end - 4)[0])
    return negative, -1


#: A cache entry, as a plain tuple (built once per cache miss, read on every
#: hit: cheaper than an object with attributes).  The first two items are what
#: :meth:`DnsCache.get_fresh` promises: the response with TTLs counted down to
#: ``age`` seconds, exact until ``fresh_until`` (the next whole second of age).
#: Then: expires, stored (the ``now`` of the put), TTL offsets, TTLs as stored,
#: the template (the response as stored), age, and the memory it is counted as
#: taking (:func:`entry_cost`).
CacheEntry = tuple[bytes, float, float, float, tuple[int, ...], tuple[int, ...], bytes, int, int]

#: Bytes counted per entry beyond its wire bytes (key, entry tuple, offsets),
#: and each entry's wire is counted twice (the stored template and the aged copy).
ENTRY_OVERHEAD = 400


def entry_cost(wire: bytes) -> int:
    """The memory an entry for ``wire`` is counted as taking."""
    return 2 * len(wire) + ENTRY_OVERHEAD


class DnsCache:
    """Responses by key, evicting the least recently used beyond ``size`` entries
    or ``max_bytes`` of memory (see :func:`entry_cost`), whichever comes first."""

    def __init__(
        self,
        size: int,
        max_ttl: int = 86_400,
        max_negative_ttl: int = 3_600,
        max_bytes: int = 64 << 20,
    ) -> None:
        self.size = size
        self.max_ttl = max_ttl
        self.max_negative_ttl = max_negative_ttl
        self.max_bytes = max_bytes
        #: What the entries are counted as taking now (at most max_bytes).
        self.bytes = 0
        self._entries: OrderedDict[Hashable, CacheEntry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0

    def get(self, key: Hashable, now: float) -> bytes | None:
        """The cached response with TTLs reduced by its age, or None.

        The caller still has to put in the client's ID, RD bit and question.
        """
        entry = self.get_fresh(key, now)
        return None if entry is None else entry[0]

    def get_fresh(self, key: Hashable, now: float) -> CacheEntry | None:
        """Like :meth:`get`: the entry, whose first two items are the response
        with TTLs reduced by its age and the time until which those bytes stay
        exact (the next whole second of age, when every TTL drops by one)."""
        entries = self._entries
        entry = entries.get(key)
        if entry is None:
            return None
        if now < entry[1]:
            entries.move_to_end(key)
            return entry
        wire, _, expires, stored, offsets, ttls, template, age, cost = entry
        if now >= expires:
            del entries[key]
            self.bytes -= cost
            return None
        new_age = int(now - stored)
        if new_age != age:
            # Rewrite the TTL fields once per second of age, not once per hit.
            buffer = bytearray(template)
            for offset, ttl in zip(offsets, ttls, strict=True):
                _U32.pack_into(buffer, offset, max(ttl - new_age, 0))
            wire = bytes(buffer)
        fresh_until = min(stored + new_age + 1, expires)
        entry = (wire, fresh_until, expires, stored, offsets, ttls, template, new_age, cost)
        entries[key] = entry
        entries.move_to_end(key)
        return entry

    def put(self, key: Hashable, wire: bytes, now: float) -> int:
        """Cache ``wire`` if its rcode and TTLs allow; returns the TTL used (0: not cached)."""
        if self.size <= 0:
            return 0
        try:
            layout = walk_response(wire)
        except WireError:
            return 0
        records = [r for r in layout.records if r.rtype != TYPE_OPT]
        negative, soa_minimum = _negative(layout, records, wire)
        return self.put_known(
            key,
            wire,
            tuple(r.ttl_offset for r in records),
            tuple(_ttl(r.ttl) for r in records),
            negative,
            soa_minimum,
            now,
        )

    def put_known(
        self,
        key: Hashable,
        wire: bytes,
        ttl_offsets: tuple[int, ...],
        ttls: tuple[int, ...],
        negative: bool,
        soa_minimum: int,
        now: float,
    ) -> int:
        """:meth:`put` for a response whose writer knows where its TTL fields are
        (``ttls``: their values, RFC 2181 section 8 applied; ``negative`` and
        ``soa_minimum`` as for :func:`lifetime`): no walk over the bytes."""
        if self.size <= 0:
            return 0
        ttl = lifetime(
            wire[3] & 0x0F, negative, ttls, soa_minimum, self.max_ttl, self.max_negative_ttl
        )
        if ttl <= 0 or wire[2] & 0x02:  # TC: not the real answer
            return 0
        cost = entry_cost(wire)
        if cost > self.max_bytes:
            return 0
        entries = self._entries
        old = entries.pop(key, None)
        if old is not None:
            self.bytes -= old[8]
        # A new key goes last in the OrderedDict: the most recently used.
        entries[key] = (wire, now + 1, now + ttl, now, ttl_offsets, ttls, wire, 0, cost)
        self.bytes += cost
        while len(entries) > self.size or self.bytes > self.max_bytes:
            self.bytes -= entries.popitem(last=False)[1][8]
        return ttl
