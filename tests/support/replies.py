"""Upstream replies that unit and integration tests both build."""

from __future__ import annotations

import dns.message
import dns.rcode


def formerr(query: dns.message.Message, *, opt: bool) -> bytes:
    """FORMERR for ``query``, with an OPT record (an EDNS-aware server) or
    without (a server that does not implement EDNS, RFC 6891 section 7)."""
    reply = dns.message.make_response(query)
    reply.set_rcode(dns.rcode.FORMERR)
    if not opt:
        reply.use_edns(False)
    return reply.to_wire()
