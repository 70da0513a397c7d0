"""``dig`` against the real ``totd-faith dns`` process, for the cases that
test_dns_nsd.py (real process) and test_dns64_real_replies.py (the core behind a
test driver) leave out: the Well-Known Prefix with global and non-global IPv4,
two prefixes, DNAME / out-of-zone CNAME / CNAME to NXDOMAIN through the server,
upstream error codes and timeouts (a scripted upstream), DO/CD/AD handling and the
cache, the per-client DNS64 switch, never/always lists, start-up errors, and a
differential check against Unbound's dns64 module on the same NSD.

Zone data holds a few global IPv4 addresses (1.2.3.0/24) because RFC 6052
section 3.1 only lets the Well-Known Prefix carry global addresses; they are data
only: every packet in these tests goes to 127.0.0.1.
"""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from tests.integration.conftest import DnsProcess
from tests.support.cli import assert_one_line_error, run_cli, totd_faith_argv
from tests.support.ports import free_port
from tests.support.unbound import dns64_options
from totd_faith.endpoints import Endpoint, parse_endpoint

NSP = "2001:db8:64::/96"
NSP2 = "2001:db8:65::/96"

QA = """\
$ORIGIN qa.example.
$TTL 300
@           IN SOA  ns hostmaster 1 3600 600 86400 60
@           IN NS   ns
ns          IN A    1.2.3.53
v4          IN A    1.2.3.4
v4doc       IN A    192.0.2.10
v4long 7200 IN A    1.2.3.5
v4short 30  IN A    1.2.3.6
multi       IN A    1.2.3.20
multi       IN A    1.2.3.21
dual        IN A    1.2.3.7
dual        IN AAAA 2001:db8::7
v6only      IN AAAA 2001:db8::8
cn1         IN CNAME v4
cn2    900  IN CNAME cn1
cn-dual     IN CNAME dual
cn-v6       IN CNAME v6only
cn-ext      IN CNAME v4.other.example.
cn-nx       IN CNAME missing
cn-txt      IN CNAME txt
old         IN DNAME new
www.new     IN A    1.2.3.9
txt         IN TXT  "no addresses"
mapped      IN AAAA ::ffff:1.2.3.10
mapped      IN A    1.2.3.10
mappedonly  IN AAAA ::ffff:1.2.3.11
lan10       IN A    10.0.0.1
lo          IN A    127.0.0.1
lan192      IN A    192.168.1.1
cgn         IN A    100.64.0.1
privmix     IN A    10.0.0.2
privmix     IN A    1.2.3.14
*.wild      IN A    1.2.3.15
never       IN A    1.2.3.17
never       IN AAAA 2001:db8::17
sub.never   IN A    1.2.3.19
always      IN A    1.2.3.18
always      IN AAAA 2001:db8::18
"""

OTHER = """\
$ORIGIN other.example.
$TTL 300
@  IN SOA ns.qa.example. hostmaster.qa.example. 1 3600 600 86400 90
@  IN NS  ns.qa.example.
v4 IN A   1.2.3.30
"""

REVERSE = """\
$ORIGIN 3.2.1.in-addr.arpa.
$TTL 300
@  IN SOA ns.qa.example. hostmaster.qa.example. 1 3600 600 86400 60
@  IN NS  ns.qa.example.
4  IN PTR v4.qa.example.
"""

ZONES = {"qa.example.": QA, "other.example.": OTHER, "3.2.1.in-addr.arpa.": REVERSE}


# -- dig ---------------------------------------------------------------------------


@dataclass
class Record:
    name: str
    ttl: int
    rdtype: str
    rdata: str


@dataclass
class Reply:
    """The parts of dig's text output the tests look at."""

    status: str
    flags: set[str]
    answer: list[Record]
    authority: list[Record]
    text: str

    def rrs(self, rdtype: str, section: str = "answer") -> list[Record]:
        return [r for r in getattr(self, section) if r.rdtype == rdtype]

    def addresses(self) -> list[str]:
        """AAAA addresses of the answer in wire order (dig prints them as received)."""
        return [r.rdata for r in self.rrs("AAAA")]


_SECTIONS = {";; ANSWER SECTION:": "answer", ";; AUTHORITY SECTION:": "authority"}


def parse_dig(text: str) -> Reply:
    status = re.search(r"status: ([A-Z]+)", text)
    flags = re.search(r";; flags: ([a-z ]*);", text)
    assert status and flags, text
    sections: dict[str, list[Record]] = {"answer": [], "authority": []}
    current: list[Record] | None = None
    for line in text.splitlines():
        if line in _SECTIONS:
            current = sections[_SECTIONS[line]]
        elif not line.strip() or line.startswith(";"):
            current = None
        elif current is not None:
            name, ttl, _class, rdtype, rdata = line.split(None, 4)
            current.append(Record(name.lower(), int(ttl), rdtype, rdata.strip()))
    return Reply(status.group(1), set(flags.group(1).split()), **sections, text=text)


def dig(endpoint: Endpoint, *args: str, timeout: int = 3) -> Reply:
    result = subprocess.run(
        [
            "dig",
            f"@{endpoint.host}",
            "-p",
            str(endpoint.port),
            f"+time={timeout}",
            "+tries=1",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout + 20,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return parse_dig(result.stdout)


def is_nodata(reply: Reply) -> bool:
    """RFC 2308 section 2.2: NOERROR, nothing for the name, SOA in the authority section."""
    return (
        reply.status == "NOERROR" and not reply.rrs("AAAA") and bool(reply.rrs("SOA", "authority"))
    )


# -- servers -------------------------------------------------------------------------

Proxy = Callable[..., Endpoint]


@pytest.fixture
def upstream(nsd: Callable[[dict[str, str]], Endpoint]) -> Endpoint:
    return nsd(ZONES)


@pytest.fixture
def proxy(dns_process: DnsProcess) -> Proxy:
    """Factory: ``totd-faith dns`` with ``args`` (and a config text), ready to answer."""

    def start(*args: str, config: str | None = None) -> Endpoint:
        return dns_process(*args, config=config)[0]

    return start


class ScriptedUpstream:
    """A UDP DNS server on 127.0.0.1 whose reply depends on the first label.

    ``sf-aaaa``/``refused-aaaa``/``formerr-aaaa``: that RCODE for AAAA, an A
    record for A.  ``sf-a``: NODATA for AAAA, SERVFAIL for A.  ``sf-both``:
    SERVFAIL.  ``drop-aaaa``: no reply to AAAA.  ``nosoa``: AAAA NODATA without
    SOA, A with TTL 7200.  ``nx``: NXDOMAIN.  ``ad*``: every reply has AD set.
    Anything else: NODATA (SOA TTL 900, MINIMUM 30) for AAAA, an A record for A.
    """

    SOA = dns.rrset.from_text("fake.", 900, "IN", "SOA", "ns.fake. h.fake. 1 3600 600 86400 30")

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.endpoint = parse_endpoint(f"127.0.0.1:{self.sock.getsockname()[1]}")
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def reply(self, query: dns.message.Message) -> dns.message.Message | None:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA
        qname, qtype = query.question[0].name, query.question[0].rdtype
        label = qname.labels[0].decode().lower()
        aaaa = qtype == dns.rdatatype.AAAA

        def a_record(ttl: int = 300) -> None:
            response.answer.append(dns.rrset.from_text(qname, ttl, "IN", "A", "1.2.3.4"))

        errors = {"sf-aaaa": "SERVFAIL", "refused-aaaa": "REFUSED", "formerr-aaaa": "FORMERR"}
        if label in errors:
            if aaaa:
                response.set_rcode(dns.rcode.from_text(errors[label]))
            else:
                a_record()
        elif label == "sf-a":
            if aaaa:
                response.authority.append(self.SOA)
            else:
                response.set_rcode(dns.rcode.SERVFAIL)
        elif label == "sf-both":
            response.set_rcode(dns.rcode.SERVFAIL)
        elif label == "drop-aaaa" and aaaa:
            return None
        elif label == "nosoa":
            if not aaaa:
                a_record(7200)
        elif label == "nx":
            response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(self.SOA)
        else:
            if label.startswith("ad"):
                response.flags |= dns.flags.AD
            if qtype == dns.rdatatype.A:
                a_record()
            else:
                response.authority.append(self.SOA)
        return response

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                reply = self.reply(dns.message.from_wire(data))
            except Exception:  # a test server: ignore what it cannot parse
                continue
            if reply is not None:
                self.sock.sendto(reply.to_wire(), peer)

    def __enter__(self) -> ScriptedUpstream:
        self.thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def scripted() -> Iterator[Endpoint]:
    with ScriptedUpstream() as server:
        yield server.endpoint


# -- RFC 6052 section 3.1 and RFC 6147 section 5.1.7: what is synthesized ---------------


def test_rfc6052_3_1_well_known_prefix_carries_only_global_ipv4(
    upstream: Endpoint, proxy: Proxy
) -> None:
    endpoint = proxy("--upstream", str(upstream))  # default prefix 64:ff9b::/96
    assert dig(endpoint, "AAAA", "v4.qa.example").addresses() == ["64:ff9b::102:304"]
    # One global and one RFC 1918 address: only the global one is synthesized.
    assert dig(endpoint, "AAAA", "privmix.qa.example").addresses() == ["64:ff9b::102:30e"]
    # Only non-global A records: nothing to synthesize, so the client gets the
    # original negative AAAA answer with its SOA (RFC 6147 section 5.1.6).
    for name in ("lan10", "lan192", "cgn", "lo", "v4doc"):
        reply = dig(endpoint, "AAAA", f"{name}.qa.example")
        assert is_nodata(reply), (name, reply.text)


def test_rfc6052_3_1_does_not_restrict_a_network_specific_prefix(
    upstream: Endpoint, proxy: Proxy
) -> None:
    endpoint = proxy("--upstream", str(upstream), "--prefix", NSP)
    for name, address in (
        ("lan10", "2001:db8:64::a00:1"),
        ("lan192", "2001:db8:64::c0a8:101"),
        ("cgn", "2001:db8:64::6440:1"),
        ("v4doc", "2001:db8:64::c000:20a"),
    ):
        assert dig(endpoint, "AAAA", f"{name}.qa.example").addresses() == [address]


def test_rfc6147_5_1_7_one_aaaa_per_a_record_per_prefix(upstream: Endpoint, proxy: Proxy) -> None:
    endpoint = proxy("--upstream", str(upstream), "--prefix", NSP, "--prefix", NSP2)
    for transport in ("+notcp", "+tcp"):
        reply = dig(endpoint, transport, "AAAA", "multi.qa.example")
        assert sorted(reply.addresses()) == [
            "2001:db8:64::102:314",
            "2001:db8:64::102:315",
            "2001:db8:65::102:314",
            "2001:db8:65::102:315",
        ]
    # ipv4only.arpa (RFC 7050 section 3): both discovery addresses in each prefix.
    assert sorted(dig(endpoint, "AAAA", "ipv4only.arpa").addresses()) == [
        "2001:db8:64::c000:aa",
        "2001:db8:64::c000:ab",
        "2001:db8:65::c000:aa",
        "2001:db8:65::c000:ab",
    ]


def test_two_prefixes_answer_in_configured_order(upstream: Endpoint, proxy: Proxy) -> None:
    endpoint = proxy("--upstream", str(upstream), "--prefix", NSP, "--prefix", NSP2)
    firsts = [dig(endpoint, "AAAA", f"order{i}.wild.qa.example").addresses()[0] for i in range(16)]
    assert firsts == ["2001:db8:64::102:30f"] * 16


# -- RFC 6147 section 5.1.5: chains through the real server -----------------------------


def test_rfc6147_5_1_5_dname_external_cname_and_cname_to_nxdomain(
    upstream: Endpoint, proxy: Proxy
) -> None:
    endpoint = proxy("--upstream", str(upstream), "--prefix", NSP)
    for transport in ("+notcp", "+tcp"):
        # DNAME kept with the CNAME the server synthesized from it (RFC 6672).
        reply = dig(endpoint, transport, "AAAA", "www.old.qa.example")
        assert [(r.name, r.rdtype, r.rdata) for r in reply.answer] == [
            ("old.qa.example.", "DNAME", "new.qa.example."),
            ("www.old.qa.example.", "CNAME", "www.new.qa.example."),
            ("www.new.qa.example.", "AAAA", "2001:db8:64::102:309"),
        ]
        # CNAME into another zone: the synthetic TTL comes from the negative
        # AAAA answer's SOA, which is the target zone's (90), not the alias's.
        reply = dig(endpoint, transport, "AAAA", "cn-ext.qa.example")
        assert [(r.name, r.rdtype, r.rdata) for r in reply.answer] == [
            ("cn-ext.qa.example.", "CNAME", "v4.other.example."),
            ("v4.other.example.", "AAAA", "2001:db8:64::102:31e"),
        ]
        assert 85 <= reply.rrs("AAAA")[0].ttl <= 90
        # CNAME to a name that does not exist: NXDOMAIN (section 5.1.2), chain kept.
        reply = dig(endpoint, transport, "AAAA", "cn-nx.qa.example")
        assert reply.status == "NXDOMAIN"
        assert [(r.name, r.rdtype) for r in reply.answer] == [("cn-nx.qa.example.", "CNAME")]
        assert reply.rrs("SOA", "authority")
        # CNAME to a name with neither AAAA nor A: NODATA with the chain.
        reply = dig(endpoint, transport, "AAAA", "cn-txt.qa.example")
        assert is_nodata(reply) and reply.rrs("CNAME")


# -- RFC 6147 section 5.1.7: TTL ---------------------------------------------------------


def test_rfc6147_5_1_7_ttl_rule_through_the_server(
    upstream: Endpoint, scripted: Endpoint, proxy: Proxy
) -> None:
    endpoint = proxy("--upstream", str(upstream), "--prefix", NSP)
    # min(A TTL 7200, negative AAAA SOA 60) and min(A TTL 30, SOA 60).
    assert 55 <= dig(endpoint, "AAAA", "v4long.qa.example").rrs("AAAA")[0].ttl <= 60
    assert 25 <= dig(endpoint, "AAAA", "v4short.qa.example").rrs("AAAA")[0].ttl <= 30
    # The AAAA answer was positive (only excluded records), so no SOA: min(300, 600).
    assert 295 <= dig(endpoint, "AAAA", "mapped.qa.example").rrs("AAAA")[0].ttl <= 300
    # Negative AAAA answer without SOA and an A TTL of 7200: capped at 600 s.
    other = proxy("--upstream", str(scripted), "--prefix", NSP)
    assert 595 <= dig(other, "AAAA", "nosoa.fake").rrs("AAAA")[0].ttl <= 600
    # SOA TTL 900 but MINIMUM 30: the negative TTL is 30 (RFC 2308 section 5).
    assert 25 <= dig(other, "AAAA", "plain.fake").rrs("AAAA")[0].ttl <= 30


def test_synthesized_ttl_counts_down_in_the_cache(upstream: Endpoint, proxy: Proxy) -> None:
    endpoint = proxy("--upstream", str(upstream), "--prefix", NSP)
    first = dig(endpoint, "AAAA", "cn2.qa.example")
    start = time.monotonic()
    ttls = [r.ttl for r in first.answer]
    assert ttls[-1] <= 60  # the synthesized AAAA at the end of the chain
    while True:
        again = [r.ttl for r in dig(endpoint, "AAAA", "cn2.qa.example").answer]
        elapsed = time.monotonic() - start
        if again != ttls:
            break
        assert elapsed < 5, "TTLs did not count down"
        time.sleep(0.2)
    # Every record counts down together, by about the time that passed.
    drops = {before - after for before, after in zip(ttls, again, strict=True)}
    assert len(drops) == 1 and 1 <= drops.pop() <= elapsed + 1


# -- RFC 6147 sections 5.1.2 and 5.1.3: upstream errors ----------------------------------


def test_rfc6147_5_1_2_error_rcodes_other_than_nxdomain_are_synthesized(
    scripted: Endpoint, proxy: Proxy
) -> None:
    endpoint = proxy("--upstream", str(scripted), "--prefix", NSP)
    for name in ("sf-aaaa", "refused-aaaa", "formerr-aaaa"):
        reply = dig(endpoint, "AAAA", f"{name}.fake")
        assert reply.status == "NOERROR", reply.text
        assert reply.addresses() == ["2001:db8:64::102:304"]
    # Section 5.1.6: an error from the A query is the basis of the answer.
    assert dig(endpoint, "AAAA", "sf-a.fake").status == "SERVFAIL"
    assert dig(endpoint, "AAAA", "sf-both.fake").status == "SERVFAIL"
    # Section 5.1.2: NXDOMAIN is returned, never synthesized.
    reply = dig(endpoint, "AAAA", "nx.fake")
    assert reply.status == "NXDOMAIN" and not reply.answer


def test_rfc6147_5_1_3_aaaa_timeout_counts_as_servfail_then_synthesis(
    scripted: Endpoint, proxy: Proxy
) -> None:
    config = "[dns]\nupstream_timeout = 0.5\n"
    endpoint = proxy("--upstream", str(scripted), "--prefix", NSP, config=config)
    reply = dig(endpoint, "AAAA", "drop-aaaa.fake", timeout=8)
    assert reply.status == "NOERROR"
    assert reply.addresses() == ["2001:db8:64::102:304"]


# -- RFC 6147 section 5.5 and RFC 6840 section 5.7: DO, CD, AD ---------------------------


def test_rfc6147_5_5_do_and_cd_through_the_server_and_its_cache(
    upstream: Endpoint, proxy: Proxy
) -> None:
    endpoint = proxy("--upstream", str(upstream), "--prefix", NSP)
    synthesized = ["2001:db8:64::102:30f"]
    # DO+CD first, then plain: each gets its own answer, cached or not.
    for name, order in (("a", ("both", "plain")), ("b", ("plain", "both"))):
        for kind in order * 2:
            if kind == "both":
                # Item 3: "MUST NOT perform synthesis"; the client validates.
                reply = dig(endpoint, "+dnssec", "+cd", "AAAA", f"{name}.wild.qa.example")
                assert is_nodata(reply) and "cd" in reply.flags, reply.text
            else:
                reply = dig(endpoint, "AAAA", f"{name}.wild.qa.example")
                assert reply.addresses() == synthesized
    # CD alone and DO alone: synthesis, and never AD on synthetic data.
    for flags in (("+cd",), ("+dnssec",), ("+dnssec", "+adflag")):
        reply = dig(endpoint, *flags, "AAAA", "c.wild.qa.example")
        assert reply.addresses() == synthesized and "ad" not in reply.flags


def test_rfc6840_5_7_ad_is_not_replayed_to_a_client_that_did_not_ask(
    scripted: Endpoint, proxy: Proxy
) -> None:
    endpoint = proxy("--upstream", str(scripted), "--prefix", NSP)
    # The upstream sets AD on everything; dig sets AD in its queries by default.
    assert "ad" in dig(endpoint, "+adflag", "TXT", "ad1.fake").flags
    # RFC 6840 section 5.7: AD only when the query had DO or AD set.
    assert "ad" not in dig(endpoint, "+noadflag", "TXT", "ad1.fake").flags


def test_ad_from_the_upstream_is_kept_for_a_client_that_asks_after_one_that_did_not(
    scripted: Endpoint, proxy: Proxy
) -> None:
    endpoint = proxy("--upstream", str(scripted), "--prefix", NSP)
    assert "ad" not in dig(endpoint, "+noadflag", "TXT", "ad2.fake").flags
    assert "ad" in dig(endpoint, "+adflag", "TXT", "ad2.fake").flags


# -- configuration: clients, ACL, lists --------------------------------------------------


def test_per_client_dns64_switch_acl_and_cache(upstream: Endpoint, proxy: Proxy) -> None:
    config = (
        '[dns]\nallow = ["127.0.0.1/32", "127.0.0.3/32"]\n[dns64]\nclients = ["127.0.0.1/32"]\n'
    )
    endpoint = proxy("--upstream", str(upstream), "--prefix", NSP, config=config)
    synthesized = ["2001:db8:64::102:30f"]
    # Both orders, so neither client's answer leaks to the other through the cache.
    for name, sources in (("p", ("127.0.0.3", "127.0.0.1")), ("q", ("127.0.0.1", "127.0.0.3"))):
        for source in sources * 2:
            reply = dig(endpoint, "-b", source, "AAAA", f"{name}.wild.qa.example")
            if source == "127.0.0.1":
                assert reply.addresses() == synthesized
            else:
                assert is_nodata(reply), reply.text  # plain forwarding
    # Real AAAA records reach a client without DNS64 unchanged.
    assert dig(endpoint, "-b", "127.0.0.3", "AAAA", "dual.qa.example").addresses() == [
        "2001:db8::7"
    ]
    # Outside dns.allow: REFUSED over UDP and TCP, nothing in the answer.
    for transport in ("+notcp", "+tcp"):
        reply = dig(endpoint, "-b", "127.0.0.2", transport, "AAAA", "v4.qa.example")
        assert reply.status == "REFUSED" and not reply.answer


def test_never_and_always_synthesize_lists(upstream: Endpoint, proxy: Proxy) -> None:
    config = (
        '[dns64]\nnever_synthesize = ["never.qa.example"]\n'
        'always_synthesize = ["always.qa.example"]\n'
    )
    endpoint = proxy("--upstream", str(upstream), "--prefix", NSP, config=config)
    assert dig(endpoint, "AAAA", "never.qa.example").addresses() == ["2001:db8::17"]
    # Subdomains of a never-listed domain are not synthesized either.
    assert is_nodata(dig(endpoint, "AAAA", "sub.never.qa.example"))
    # always: the real AAAA is ignored and the A record synthesized instead.
    reply = dig(endpoint, "AAAA", "Always.QA.example")
    assert reply.addresses() == ["2001:db8:64::102:312"]
    assert reply.answer[0].name == "always.qa.example."  # (lower-cased by parse_dig)
    assert "Always.QA.example." in reply.text  # question and owner keep the client's case


# -- RFC 6147 section 5.3.1: PTR -----------------


def test_rfc6147_5_3_1_ptr_without_upstream_ptr_is_nxdomain_with_the_cname(
    upstream: Endpoint, proxy: Proxy
) -> None:
    endpoint = proxy("--upstream", str(upstream), "--prefix", NSP)
    reply = dig(endpoint, "-x", "2001:db8:64::102:304")
    assert [(r.rdtype, r.rdata) for r in reply.answer] == [
        ("CNAME", "4.3.2.1.in-addr.arpa."),
        ("PTR", "v4.qa.example."),
    ]
    # RFC 6604 section 2: the RCODE is that of the last name in the chain.
    reply = dig(endpoint, "-x", "2001:db8:64::102:305")
    assert reply.status == "NXDOMAIN"
    assert [(r.rdtype, r.rdata) for r in reply.answer] == [("CNAME", "5.3.2.1.in-addr.arpa.")]


# -- RFC 6147 section 5.1.4 with RFC 2308 section 2.2 ------------------------------------


def test_rfc6147_5_1_4_all_excluded_and_no_a_is_a_proper_nodata(
    upstream: Endpoint, proxy: Proxy
) -> None:
    endpoint = proxy("--upstream", str(upstream), "--prefix", NSP)
    reply = dig(endpoint, "AAAA", "mappedonly.qa.example")
    assert not reply.answer  # the ::ffff:1.2.3.11 record is never returned
    assert is_nodata(reply), reply.text


# -- the same answers as Unbound where both follow the RFC -------------------------------

AGREED = [
    "v4",
    "multi",
    "dual",
    "v6only",
    "cn1",
    "cn2",
    "cn-dual",
    "cn-v6",
    "cn-ext",
    "cn-nx",
    "cn-txt",
    "www.old",
    "txt",
    "nothing",
    "x.wild",
    "lan10",
    "v4doc",
]


def _answer_set(reply: Reply) -> set[tuple[str, str, str]]:
    return {(r.name, r.rdtype, r.rdata) for r in reply.answer}


def test_same_answers_as_unbound_dns64_through_the_server(
    upstream: Endpoint, proxy: Proxy, unbound: Callable[..., Endpoint]
) -> None:
    """Answer sets and RCODEs agree (TTLs differ: Unbound gives the synthetic AAAA
    the A record's TTL, RFC 6147 section 5.1.7 says min(A TTL, SOA))."""
    server, clauses = dns64_options(NSP, {zone: upstream for zone in ZONES})
    theirs_at = unbound(server, clauses)
    ours_at = proxy("--upstream", str(upstream), "--prefix", NSP)
    # The last name checks that a 0x20-mixed-case question gets the same data.
    for name in [f"{label}.qa.example" for label in AGREED] + ["V4.qA.Example"]:
        ours = dig(ours_at, "AAAA", name)
        theirs = dig(theirs_at, "AAAA", name)
        assert (ours.status, _answer_set(ours)) == (theirs.status, _answer_set(theirs)), name


# -- start-up errors -------------------------------------------------------------------


def start_expecting_exit(*args: str, timeout: float = 10.0) -> str:
    """Run ``totd-faith ARGS`` that must refuse to start: its stderr (exit 1, no traceback).

    A server that starts anyway is stopped after ``timeout`` and the test fails.
    """
    proc = subprocess.Popen(
        [*totd_faith_argv(), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"totd-faith {' '.join(args)} started instead of refusing")
    assert proc.returncode == 1 and "Traceback" not in stderr, stderr
    return stderr


def test_upstream_reached_through_a_wildcard_listener_is_refused() -> None:
    port = free_port("0.0.0.0")
    stderr = start_expecting_exit(
        "dns", "--listen", f"0.0.0.0:{port}", "--upstream", f"127.0.0.1:{port}"
    )
    assert "also a listen address" in stderr


def test_prefix_inside_the_exclusion_set_is_refused(upstream: Endpoint) -> None:
    port = free_port()
    stderr = start_expecting_exit(
        "dns",
        "--listen",
        f"127.0.0.1:{port}",
        "--upstream",
        str(upstream),
        "--prefix",
        "::ffff:0:0/96",
    )
    assert "prefixes[0]" in stderr


def test_port_in_use_is_exactly_one_error_line(upstream: Endpoint) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        result = run_cli(
            "dns", "--listen", f"127.0.0.1:{port}", "--upstream", str(upstream), timeout=30
        )
    assert_one_line_error(result, f"127.0.0.1:{port}", "already in use")


def test_first_minutes_errors_are_one_line(tmp_path: Path) -> None:
    bad_key = tmp_path / "bad-key.toml"
    bad_key.write_text('[dns]\nupstrems = ["127.0.0.1:53"]\n')
    assert_one_line_error(run_cli("dns", "-c", str(bad_key)), "dns.upstrems", "unknown key")
    assert_one_line_error(run_cli("dns", "--listen", "nonsense"), "dns.listen[0]")
    assert_one_line_error(run_cli("dns", "--upstream", "1.2.3.4:99999"), "not a port")
    assert_one_line_error(run_cli("dns", "--prefix", "64:ff9b::/95"), "RFC 6052")
    result = run_cli("dns", "--bogus")
    assert result.returncode == 2 and "No such option" in result.stderr
    assert "Traceback" not in result.stderr
    help_text = run_cli("dns", "--help")
    assert help_text.returncode == 0
    for flag in ("--listen", "--upstream", "--prefix", "--config"):
        assert flag in help_text.stdout
