"""A cold AAAA miss that the wire-level fast path hands to the DNS64 core: the
replies already received go with it, so no upstream query is sent twice."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rdatatype
import dns.rrset

from tests.integration.dns_support import FakeUpstream, a_query, run, start_service, udp_query
from tests.support.ports import free_port
from totd_faith import config as config_module
from totd_faith.dnsserver import _default_resolver

SOA = "ns.example. hostmaster.example. 1 3600 600 86400 300"


def _behaviour(unusual: str):  # type: ignore[no-untyped-def]
    """NSD-like replies for an A-only name; ``unusual`` ("AAAA" or "A") gets a TXT
    record in its additional section, a shape the fast path leaves to the core."""

    async def behaviour(query: dns.message.Message, wire: bytes) -> list[bytes]:
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.AA
        name = query.question[0].name
        rdtype = dns.rdatatype.to_text(query.question[0].rdtype)
        if rdtype == "A":
            reply.answer.append(dns.rrset.from_text(name, 300, "IN", "A", "192.0.2.1"))
        else:
            reply.authority.append(dns.rrset.from_text("example.", 300, "IN", "SOA", SOA))
        if rdtype == unusual:
            reply.additional.append(dns.rrset.from_text("x.example.", 300, "IN", "TXT", '"x"'))
        return [reply.to_wire()]

    return behaviour


def _check(unusual: str) -> None:
    async def main() -> None:
        upstream = await FakeUpstream(_behaviour(unusual)).start()
        config = config_module.from_table(
            {
                "prefixes": ["2001:db8:64::/96"],
                "dns": {
                    "listen": [f"127.0.0.1:{free_port()}"],
                    "upstreams": [str(upstream.endpoint)],
                },
            }
        )
        service, endpoint = await start_service(config, resolver=_default_resolver)
        try:
            assert service.fast is not None  # the fast path is on, and falls back
            answer = await udp_query(endpoint, a_query("v4.example.", "AAAA", use_edns=0))
            addresses = [rd.address for rrset in answer.answer for rd in rrset]
            assert addresses == ["2001:db8:64::c000:201"]
            # One AAAA and one A query: the core reused what the fast path received.
            assert upstream.udp_queries == 2
            assert service.stats.synthesized == 1
            assert service.stats.cache_misses == 1
        finally:
            await service.stop(0)
            upstream.close()

    run(main())


def test_unusual_a_reply_goes_to_the_core_without_asking_again():
    _check("A")


def test_unusual_aaaa_reply_goes_to_the_core_without_asking_again():
    _check("AAAA")
