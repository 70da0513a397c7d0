"""Helpers for the DNS64 core unit tests: build queries, fake upstream replies, drive the generator.

No sockets: each query the generator yields is answered from a dict keyed by
(name, type), so a test states exactly which upstream conversation it expects.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from totd_faith.config import Config, from_table
from totd_faith.dns64 import Dns64
from totd_faith.hosts import HostEntry

LOCAL_CLIENT = ipaddress.ip_address("::1")

Reply = Callable[[dns.message.Message], dns.message.Message | None]


def config(prefixes: tuple[str, ...] = ("2001:db8:64::/96",), **sections: Any) -> Config:
    """A config with ``prefixes`` and ``dns64={...}``/``dns={...}`` tables."""
    table: dict[str, Any] = {"prefixes": list(prefixes)}
    table.update(sections)
    return from_table(table)


def dns64(
    prefixes: tuple[str, ...] = ("2001:db8:64::/96",),
    hosts: tuple[HostEntry, ...] = (),
    **sections: Any,
) -> Dns64:
    return Dns64(config(prefixes, **sections), hosts)


def host(address: str, name: str, lineno: int = 1) -> HostEntry:
    return HostEntry(ipaddress.IPv4Address(address), dns.name.from_text(name), "hosts", lineno)


def query(
    name: str,
    rdtype: str = "AAAA",
    *,
    rdclass: str = "IN",
    do: bool = False,
    cd: bool = False,
    ad: bool = False,
    edns: bool = True,
    rd: bool = True,
    qid: int = 0x4242,
) -> dns.message.Message:
    message = dns.message.make_query(
        name,
        rdtype,
        rdclass,
        use_edns=0 if edns else False,
        want_dnssec=do,
        payload=4096,
        id=qid,
        flags=dns.flags.RD if rd else 0,
    )
    if cd:
        message.flags |= dns.flags.CD
    if ad:
        message.flags |= dns.flags.AD
    return message


def upstream(
    rcode: str = "NOERROR",
    answer: str = "",
    authority: str = "",
    additional: str = "",
    flags: str = "QR RD RA",
) -> Reply:
    """An upstream reply to whatever query was yielded, in dnspython's message text format."""

    def build(sent: dns.message.Message) -> dns.message.Message:
        q = sent.question[0]
        # Blank lines confuse dnspython's message text reader: drop them.
        text = "\n".join(
            line
            for line in [
                f"id {sent.id}",
                "opcode QUERY",
                f"rcode {rcode}",
                f"flags {flags}",
                ";QUESTION",
                f"{q.name} {dns.rdataclass.to_text(q.rdclass)} {dns.rdatatype.to_text(q.rdtype)}",
                ";ANSWER",
                answer,
                ";AUTHORITY",
                authority,
                ";ADDITIONAL",
                additional,
            ]
            if line
        )
        return dns.message.from_text(text)

    return build


def no_reply() -> Reply:
    """Every upstream failed or timed out."""
    return lambda sent: None


@dataclass
class Run:
    response: dns.message.Message
    asked: list[dns.message.Message] = field(default_factory=list)

    @property
    def rcode(self) -> int:
        return self.response.rcode()

    def rrsets(self, section: str = "answer") -> list[str]:
        """``owner TTL type rdata`` lines, in order, lower-cased owner."""
        out = []
        for rrset in getattr(self.response, section):
            for rdata in rrset:
                rtype = dns.rdatatype.to_text(rrset.rdtype)
                if rrset.rdtype == dns.rdatatype.RRSIG:
                    rtype += "/" + dns.rdatatype.to_text(rrset.covers)
                out.append(f"{rrset.name.to_text().lower()} {rrset.ttl} {rtype} {rdata}")
        return out

    def addresses(self) -> list[str]:
        return [
            str(rdata)
            for rrset in self.response.answer
            if rrset.rdtype == dns.rdatatype.AAAA
            for rdata in rrset
        ]

    @property
    def questions(self) -> list[tuple[str, str]]:
        return [
            (
                m.question[0].name.to_text().lower(),
                dns.rdatatype.to_text(m.question[0].rdtype),
            )
            for m in self.asked
        ]


def run(
    resolver: Dns64,
    q: dns.message.Message,
    replies: Mapping[tuple[str, str], Reply] | None = None,
    client: ipaddress.IPv4Address | ipaddress.IPv6Address = LOCAL_CLIENT,
    max_steps: int = 10,
) -> Run:
    """Drive ``resolver.resolve(q, client)``; answer each yielded query from ``replies``
    keyed by (lower-case name with trailing dot, type)."""
    replies = replies or {}
    gen = resolver.resolve(q, client)
    asked: list[dns.message.Message] = []
    try:
        sent = next(gen)
        for _ in range(max_steps):
            asked.append(sent)
            assert isinstance(sent, dns.message.QueryMessage)
            assert len(sent.question) == 1
            qn = sent.question[0]
            key = (qn.name.to_text().lower(), dns.rdatatype.to_text(qn.rdtype))
            assert key in replies, f"unexpected upstream query {key}"
            sent = gen.send(replies[key](sent))
        raise AssertionError("resolve() asked too many upstream queries")
    except StopIteration as stop:
        response = stop.value
    assert isinstance(response, dns.message.Message)
    # Invariants of every response (the interface contract).
    assert response.id == q.id
    assert response.flags & dns.flags.QR
    assert response.opcode() == q.opcode()
    assert (response.flags & dns.flags.RD) == (q.flags & dns.flags.RD)
    assert [(r.name.to_text(), r.rdtype, r.rdclass) for r in response.question] == [
        (r.name.to_text(), r.rdtype, r.rdclass) for r in q.question
    ]
    assert (response.edns >= 0) == (q.edns >= 0)
    return Run(response, asked)


def rcode_name(value: int) -> str:
    return dns.rcode.to_text(dns.rcode.Rcode.make(value))
