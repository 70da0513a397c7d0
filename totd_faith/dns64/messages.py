"""Building the messages the DNS64 core hands out: upstream queries and client responses.

Pure dnspython message work, no I/O.  Every response echoes the client's ID,
opcode, RD and CD flags and the question exactly as received (letter case
included), because stub resolvers match answers to questions byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

#: The EDNS payload size we advertise to clients (the DNS Flag Day 2020 value);
#: the shell truncates each answer to what the client itself can take.
SERVER_PAYLOAD = 1232

Section = list[dns.rrset.RRset]

# Plain ints: flag arithmetic on enum.IntFlag members is several times slower,
# and these run a few times per query.
_RD = int(dns.flags.RD)
_CD = int(dns.flags.CD)
_AD = int(dns.flags.AD)
_DO = int(dns.flags.DO)
_QR = int(dns.flags.QR)
_RA = int(dns.flags.RA)
_TC = int(dns.flags.TC)


# OPT RRsets are built once per (flags, payload) and copied per message: building
# one is the most expensive step of a small message, and a copy is a dict copy.
# Copies, because dnspython's ednsflags setter (used by set_rcode) mutates the
# OPT RRset's TTL in place.
_opt_templates: dict[tuple[int, int], dns.rrset.RRset] = {}


def _opt(flags: int, payload: int) -> dns.rrset.RRset:
    template = _opt_templates.get((flags, payload))
    if template is None:
        scratch = dns.message.Message()
        scratch.use_edns(0, flags, payload)
        assert scratch.opt is not None
        template = _opt_templates[(flags, payload)] = scratch.opt
    copied: dns.rrset.RRset = template.copy()  # type: ignore[no-untyped-call]
    return copied


def wants_dnssec(query: dns.message.Message) -> bool:
    """The client set the DO bit (RFC 3225)."""
    return query.opt is not None and bool(int(query.ednsflags) & _DO)


def checking_disabled(query: dns.message.Message) -> bool:
    return bool(int(query.flags) & _CD)


def upstream_query(
    query: dns.message.Message,
    qname: dns.name.Name,
    rdtype: dns.rdatatype.RdataType,
    rdclass: dns.rdataclass.RdataClass,
    payload: int,
) -> dns.message.QueryMessage:
    """A query for ``qname``/``rdtype`` to send upstream on behalf of ``query``.

    We always ask for recursion and always use EDNS (larger answers over UDP).
    DO is passed on when the client set it (RFC 3225), and CD too (RFC 4035
    section 3.2.2: a security-aware stub that sets CD wants unchecked data);
    AD is passed on as the client's signal that it understands it (RFC 6840
    section 5.7).  The ID is left at 0: the shell picks a random one.
    """
    message = dns.message.QueryMessage(id=0)
    message.flags = _RD | (int(query.flags) & (_CD | _AD))
    asked = query.question[0]
    if asked.rdtype == rdtype and asked.rdclass == rdclass and asked.name is qname:
        message.question = [asked]  # question RRsets carry no data: sharing is safe
    else:
        message.question = [dns.rrset.RRset(qname, rdclass, rdtype)]
    message.opt = _opt(_DO if wants_dnssec(query) else 0, payload)
    return message


def new_response(query: dns.message.Message, rcode: int = dns.rcode.NOERROR) -> dns.message.Message:
    """An empty response to ``query`` (like ``dns.message.make_response``, which refuses
    messages that have QR set; a proxy answers whatever it was sent).

    RA is set because we look like a recursive resolver to clients; AA stays
    off because nothing we hand out is authoritative.  RD and CD are copied
    (RFC 1035 section 4.1.1, RFC 4035 section 3.2.2), and so is DO when the
    query had EDNS (RFC 3225 section 3).
    """
    response = dns.message.QueryMessage(id=query.id)
    response.flags = _QR | _RA | (int(query.flags) & (_RD | _CD))
    response.set_opcode(query.opcode())
    response.question = list(query.question)
    if query.edns >= 0:
        response.opt = _opt(int(query.ednsflags) & _DO, SERVER_PAYLOAD)
        # Like make_response: to_wire() without max_size renders for the client's
        # payload (RFC 6891 section 6.2.5: below 512 counts as 512).
        response.request_payload = max(512, query.payload)
    if rcode:
        set_rcode(response, rcode)
    return response


def set_rcode(response: dns.message.Message, rcode: int) -> None:
    """Set ``rcode``; an extended RCODE (RFC 6891 section 6.1.3) needs EDNS, so a
    client without EDNS gets SERVFAIL instead of a truncated, wrong code."""
    if rcode > 15 and response.edns < 0 or rcode > 4095:
        rcode = dns.rcode.SERVFAIL
    response.set_rcode(dns.rcode.Rcode.make(rcode))


def add_ede(response: dns.message.Message, code: dns.edns.EDECode, text: str = "") -> None:
    """Attach an RFC 8914 Extended DNS Error (clients without EDNS get none)."""
    if response.edns < 0:
        return
    _set_options(response, [*response.options, dns.edns.EDEOption(code, text)])


def _set_options(response: dns.message.Message, options: list[dns.edns.Option]) -> None:
    # A fresh OPT (the slow path, only for the few responses that carry options);
    # the flags keep DO and the extended RCODE bits.
    response.use_edns(
        0,
        response.ednsflags,
        SERVER_PAYLOAD,
        request_payload=response.request_payload,
        options=options,
    )


def relay(
    query: dns.message.Message,
    reply: dns.message.Message,
    *,
    answer: Iterable[dns.rrset.RRset] | None = None,
    keep_ad: bool = True,
) -> dns.message.Message:
    """The client's view of an upstream ``reply``: client ID, question and flags
    restored, RCODE, TC and sections passed through (``answer`` replaces the
    answer section when given).

    AD is passed on only when the client asked for it with DO or AD (RFC 6840
    section 5.7) and ``keep_ad`` allows; we do not validate, so we can only
    repeat what the upstream asserted.
    """
    response = new_response(query, reply.rcode())
    # A truncated reply (the shell could not get it whole over TCP) stays marked
    # truncated: the client must not take a partial answer for the whole one.
    reply_flags = int(reply.flags)
    flags = response.flags | (reply_flags & _TC)
    if keep_ad and reply_flags & _AD and (wants_dnssec(query) or int(query.flags) & _AD):
        flags |= _AD
    response.flags = flags
    response.answer = list(reply.answer) if answer is None else list(answer)
    response.authority = list(reply.authority)
    response.additional = list(reply.additional)
    if response.edns >= 0 and reply.options:
        # RFC 8914: the upstream's Extended DNS Errors (why it failed, DNSSEC
        # bogus, ...) reach the client; other options are hop-by-hop.
        edes = [o for o in reply.options if o.otype == dns.edns.OptionType.EDE]
        if edes:
            _set_options(response, edes)
    return response


def nodata(
    query: dns.message.Message,
    reply: dns.message.Message,
    answer: Iterable[dns.rrset.RRset],
) -> dns.message.Message:
    """A NODATA response to ``query`` built from the NOERROR ``reply`` with ``answer``
    (a CNAME/DNAME chain, or nothing) as its answer section, AD off.

    RFC 2308 section 2.2: "NODATA is indicated by an answer with the RCODE set
    to NOERROR and no relevant answers in the answer section.  The authority
    section will contain an SOA record, or there will be no NS records there."
    A negative reply keeps its SOA and everything around it (NODATA types 1
    and 2).  A reply that was positive before its data was removed carries no
    SOA, only the zone's NS records and their addresses -- the shape of a
    referral -- so both sections are emptied: NODATA type 3, which caches do
    not store (RFC 2308 section 5: "Negative responses without SOA records
    SHOULD NOT be cached").
    """
    response = relay(query, reply, answer=answer, keep_ad=False)
    if not any(rrset.rdtype == dns.rdatatype.SOA for rrset in response.authority):
        response.authority = []
        response.additional = []
    return response


def servfail(query: dns.message.Message) -> dns.message.Message:
    """SERVFAIL because no upstream answered (RFC 8914 EDE 22, No Reachable Authority)."""
    response = new_response(query, dns.rcode.SERVFAIL)
    add_ede(response, dns.edns.EDECode.NO_REACHABLE_AUTHORITY, "no upstream answered")
    return response


def local_response(
    query: dns.message.Message,
    rcode: int,
    answer: Iterable[dns.rrset.RRset],
    authority: Iterable[dns.rrset.RRset] = (),
) -> dns.message.Message:
    """A response built from local data (ipv4only.arpa, static hosts)."""
    response = new_response(query, rcode)
    response.answer = list(answer)
    response.authority = list(authority)
    return response
