"""EDNS fallback towards upstreams that do not implement EDNS (RFC 6891).

Every upstream query carries an OPT record.  RFC 6891 section 7: a responder
that does not implement EDNS "MUST respond with a return code (RCODE) of
FORMERR to messages containing an OPT RR in the additional section and MUST
NOT include an OPT RR in the response", while an EDNS-aware responder puts OPT
in its FORMERR too.  Section 6.2.2: a requestor that detects this "MAY issue
queries without an OPT record" and "MAY cache this knowledge for a brief time".
The upstream pool does both; this module holds the wire-level decisions.

Pure functions over bytes: no I/O.
"""

from __future__ import annotations

import struct

import dns.exception
import dns.message

from totd_faith.dnswire import HEADER_SIZE, TYPE_OPT, skip_name
from totd_faith.errors import WireError

#: Header bytes 4-12 of a query with one question, nothing else and one
#: additional record: the shape :func:`totd_faith.dnswire.render_query` writes.
_ONE_QUESTION_ONE_ADDITIONAL = b"\x00\x01\x00\x00\x00\x00\x00\x01"
#: The fixed part of an option-less OPT after the question (RFC 6891 section
#: 6.1.2): root owner, type, CLASS = payload, TTL, RDLENGTH.
_OPT = struct.Struct("!BHHIH")
_OPT_SIZE = _OPT.size  # 11
_COUNTS = struct.Struct("!HHHH")
_RR = struct.Struct("!HHIH")  # type, class, TTL, RDLENGTH


def edns_unsupported(query: bytes, reply: bytes) -> bool:
    """Does ``reply`` to ``query`` say the upstream does not implement EDNS?

    RFC 6891 section 7: FORMERR without an OPT record, to a query with one.
    """
    if len(reply) < HEADER_SIZE or reply[3] & 0x0F != 1:  # RCODE 1, FORMERR
        return False
    return has_opt(query) and not has_opt(reply)


def bare_formerr(reply: bytes) -> bool:
    """Is ``reply`` a FORMERR response without a question section?

    A server that cannot read a query may answer with little more than the
    header (BIND does so for malformed queries), so the question cannot be
    compared as RFC 5452 section 9.1 asks; the ID (and the connected socket's
    random port) still tie it to our query.  Such a reply is only ever used as
    a FORMERR (fall back to no EDNS, or move on), never as an answer.
    """
    return (
        len(reply) >= HEADER_SIZE
        and reply[2] & 0xF8 == 0x80  # QR, opcode QUERY
        and reply[3] & 0x0F == 1
        and reply[4:6] == b"\x00\x00"
    )


def has_opt(message: bytes) -> bool:
    """Does ``message`` carry an OPT record in its additional section?

    A message that cannot be walked counts as carrying one: the fallback is
    only for replies that say plainly that EDNS is not understood.
    """
    try:
        qdcount, ancount, nscount, arcount = _COUNTS.unpack_from(message, 4)
        offset = HEADER_SIZE
        for _ in range(qdcount):
            offset = skip_name(message, offset) + 4
        found = False
        additional = ancount + nscount
        for index in range(additional + arcount):
            offset = skip_name(message, offset)
            rtype, _, _, rdlength = _RR.unpack_from(message, offset)
            found = found or (rtype == TYPE_OPT and index >= additional)
            offset += 10 + rdlength
    except (WireError, struct.error):
        return True
    return found if offset == len(message) else True


def without_opt(query: bytes) -> bytes | None:
    """``query`` with its OPT record removed, or None when it has none (or cannot
    be read).  The common shape (one question and an option-less OPT, as
    :func:`~totd_faith.dnswire.render_query` writes it) is cut directly;
    anything else goes through dnspython."""
    try:
        if query[4:12] == _ONE_QUESTION_ONE_ADDITIONAL:
            question_end = skip_name(query, HEADER_SIZE) + 4
            if question_end + _OPT_SIZE == len(query):
                root, rtype, _, _, rdlength = _OPT.unpack_from(query, question_end)
                if root == 0 and rtype == TYPE_OPT and rdlength == 0:
                    # ARCOUNT 0, and the question without what followed it.
                    return query[:10] + b"\x00\x00" + query[HEADER_SIZE:question_end]
    except (WireError, struct.error):
        return None
    try:
        message = dns.message.from_wire(query)
    except (dns.exception.DNSException, ValueError, struct.error):
        return None
    if message.edns < 0:
        return None
    message.use_edns(False)
    return message.to_wire()
