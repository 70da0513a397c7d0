"""The real ``totd-faith dns`` process in front of a real NSD: each RFC 6147 /
RFC 7050 case over UDP and TCP with dnspython and dig, the Well-Known Prefix
rule, SIGHUP reload, the query log, ACL and bind errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.reversename
import pytest

from tests.integration.conftest import DnsProcess
from tests.support.dnsprobe import any_response, wait_dns
from tests.support.ports import free_port
from tests.support.process import Daemon
from totd_faith.endpoints import Endpoint, parse_endpoint

DATA = Path(__file__).parent / "data"
NSP = "2001:db8:64::/96"
ZONES = {
    "example.": (DATA / "dns64-test.zone").read_text(),
    "2.0.192.in-addr.arpa.": (DATA / "dns64-test-reverse.zone").read_text(),
}

Proxy = Callable[..., tuple[Endpoint, Daemon]]


@pytest.fixture
def upstream(nsd: Callable[[dict[str, str]], Endpoint]) -> Endpoint:
    return nsd(ZONES)


@pytest.fixture
def proxy(dns_process: DnsProcess) -> Proxy:
    """Factory: start ``totd-faith dns`` with ``args`` and wait until it answers."""
    return dns_process


def ask(
    endpoint: Endpoint, name: str, rdtype: str, tcp: bool = False, **kwargs: object
) -> dns.message.Message:
    query = dns.message.make_query(name, dns.rdatatype.from_text(rdtype), **kwargs)  # type: ignore[arg-type]
    send = dns.query.tcp if tcp else dns.query.udp
    response = send(query, str(endpoint.host), port=endpoint.port, timeout=5)
    assert response.id == query.id
    assert response.question == query.question
    return response


def rrsets(response: dns.message.Message) -> list[tuple[str, str, set[str]]]:
    return [
        (r.name.to_text(), dns.rdatatype.to_text(r.rdtype), {rd.to_text() for rd in r})
        for r in response.answer
    ]


def ttl_of(response: dns.message.Message, rdtype: str) -> int:
    return next(r.ttl for r in response.answer if dns.rdatatype.to_text(r.rdtype) == rdtype)


def _near(ttl: int, expected: int) -> bool:
    """TTLs count down in the cache; allow for a few seconds of test run time."""
    return expected - 5 <= ttl <= expected


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_rfc6147_cases(upstream: Endpoint, proxy: Proxy, tcp: bool) -> None:
    endpoint, _ = proxy("--upstream", str(upstream), "--prefix", NSP)

    # RFC 6147 section 5.1.6/5.1.7: A-only name -> synthesized AAAA; TTL is the
    # lesser of the A TTL (300) and the negative AAAA answer's SOA TTL (120).
    r = ask(endpoint, "v4only.example.", "AAAA", tcp)
    assert r.rcode() == dns.rcode.NOERROR
    assert rrsets(r) == [("v4only.example.", "AAAA", {"2001:db8:64::c000:20a"})]
    assert _near(ttl_of(r, "AAAA"), 120)

    # Section 5.1.1: real AAAA records are returned as they are.
    r = ask(endpoint, "dual.example.", "AAAA", tcp)
    assert rrsets(r) == [("dual.example.", "AAAA", {"2001:db8::20"})]
    r = ask(endpoint, "v6only.example.", "AAAA", tcp)
    assert rrsets(r) == [("v6only.example.", "AAAA", {"2001:db8::30"})]

    # Section 5.1.5: CNAME chains are followed and kept.
    r = ask(endpoint, "chain.example.", "AAAA", tcp)
    assert rrsets(r) == [
        ("chain.example.", "CNAME", {"alias.example."}),
        ("alias.example.", "CNAME", {"v4only.example."}),
        ("v4only.example.", "AAAA", {"2001:db8:64::c000:20a"}),
    ]
    r = ask(endpoint, "chain6.example.", "AAAA", tcp)
    assert rrsets(r) == [
        ("chain6.example.", "CNAME", {"dual.example."}),
        ("dual.example.", "AAAA", {"2001:db8::20"}),
    ]

    # Section 5.1.2: NXDOMAIN is returned, never synthesized.
    r = ask(endpoint, "nothing-here.example.", "AAAA", tcp)
    assert r.rcode() == dns.rcode.NXDOMAIN and not r.answer
    assert r.authority[0].rdtype == dns.rdatatype.SOA

    # NODATA for both AAAA and A: NOERROR, empty answer, SOA kept.
    r = ask(endpoint, "textonly.example.", "AAAA", tcp)
    assert r.rcode() == dns.rcode.NOERROR and not r.answer
    assert r.authority[0].rdtype == dns.rdatatype.SOA

    # Section 5.1.4: ::ffff:0:0/96 AAAA records are excluded, so the A is synthesized.
    r = ask(endpoint, "mapped.example.", "AAAA", tcp)
    assert rrsets(r) == [("mapped.example.", "AAAA", {"2001:db8:64::c000:228"})]

    # Section 5.3.3: everything else passes unchanged.
    r = ask(endpoint, "v4only.example.", "A", tcp)
    assert rrsets(r) == [("v4only.example.", "A", {"192.0.2.10"})]
    r = ask(endpoint, "textonly.example.", "TXT", tcp)
    assert rrsets(r) == [("textonly.example.", "TXT", {'"no addresses here"'})]

    # Section 5.3.1: PTR under the prefix -> CNAME to in-addr.arpa plus its answer.
    reverse = dns.reversename.from_address("2001:db8:64::c000:20a").to_text()
    r = ask(endpoint, reverse, "PTR", tcp)
    assert rrsets(r) == [
        (reverse, "CNAME", {"10.2.0.192.in-addr.arpa."}),
        ("10.2.0.192.in-addr.arpa.", "PTR", {"v4only.example."}),
    ]

    # RFC 7050 / RFC 8880 section 7: ipv4only.arpa is answered locally.
    r = ask(endpoint, "ipv4only.arpa.", "AAAA", tcp)
    assert rrsets(r) == [
        ("ipv4only.arpa.", "AAAA", {"2001:db8:64::c000:aa", "2001:db8:64::c000:ab"})
    ]

    # The question is echoed exactly, letter case included (also from the cache).
    for _ in range(2):
        r = ask(endpoint, "V4Only.EXAMPLE.", "AAAA", tcp)
        assert r.question[0].name.to_text() == "V4Only.EXAMPLE."
        assert rrsets(r)[0][1:] == ("AAAA", {"2001:db8:64::c000:20a"})


def test_large_answer_is_truncated_over_udp_and_whole_over_tcp(
    upstream: Endpoint, proxy: Proxy
) -> None:
    endpoint, _ = proxy("--upstream", str(upstream), "--prefix", NSP)
    for _ in range(3):  # resolved, then from the cache, then replayed (truncated too)
        classic = ask(endpoint, "big.example.", "AAAA")
        assert classic.flags & dns.flags.TC
        assert len(classic.to_wire()) <= 512
        edns = ask(endpoint, "big.example.", "AAAA", use_edns=0, payload=1232)
        assert edns.flags & dns.flags.TC and edns.edns == 0
        whole = ask(endpoint, "big.example.", "AAAA", tcp=True)
        assert not whole.flags & dns.flags.TC
        assert len(whole.answer[0]) == 60
        assert all(rd.address.startswith("2001:db8:64::c633:64") for rd in whole.answer[0])
        large = ask(endpoint, "big.example.", "AAAA", use_edns=0, payload=4096)
        assert not large.flags & dns.flags.TC and len(large.answer[0]) == 60


def test_well_known_prefix_does_not_carry_documentation_addresses(
    upstream: Endpoint, proxy: Proxy
) -> None:
    # RFC 6052 section 3.1: 64:ff9b::/96 must not embed non-global IPv4 such as
    # 192.0.2.0/24, so the A-only name gets no AAAA at all.
    endpoint, _ = proxy("--upstream", str(upstream))
    r = ask(endpoint, "v4only.example.", "AAAA")
    assert r.rcode() == dns.rcode.NOERROR
    assert r.answer == []
    # Real AAAA records still pass.
    assert rrsets(ask(endpoint, "dual.example.", "AAAA"))[0][2] == {"2001:db8::20"}


def dig(endpoint: Endpoint, *args: str) -> str:
    result = subprocess.run(
        ["dig", f"@{endpoint.host}", "-p", str(endpoint.port), "+time=3", "+tries=1", *args],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    return result.stdout


def test_dig_udp_and_tcp(upstream: Endpoint, proxy: Proxy) -> None:
    endpoint, _ = proxy("--upstream", str(upstream), "--prefix", NSP)
    for transport in ("+notcp", "+tcp"):
        assert dig(endpoint, transport, "+short", "AAAA", "v4only.example").split() == [
            "2001:db8:64::c000:20a"
        ]
        assert dig(endpoint, transport, "+short", "AAAA", "chain.example").split() == [
            "alias.example.",
            "v4only.example.",
            "2001:db8:64::c000:20a",
        ]
        assert dig(endpoint, transport, "+short", "-x", "2001:db8:64::c000:20a").split() == [
            "10.2.0.192.in-addr.arpa.",
            "v4only.example.",
        ]
        assert "status: NXDOMAIN" in dig(endpoint, transport, "AAAA", "nothing.example")
    # dig without +ignore retries a truncated UDP answer over TCP and gets all 60.
    out = dig(endpoint, "+noedns", "AAAA", "big.example")
    assert "Truncated, retrying in TCP mode" in out
    assert out.count("2001:db8:64::c633:64") == 60


def test_clients_outside_allow_are_refused(upstream: Endpoint, proxy: Proxy) -> None:
    config = '[dns]\nallow = ["10.0.0.0/8"]\n'
    endpoint, _ = proxy("--upstream", str(upstream), "--prefix", NSP, config=config)
    for tcp in (False, True):
        r = ask(endpoint, "v4only.example.", "AAAA", tcp)
        assert r.rcode() == dns.rcode.REFUSED and not r.answer


def test_sighup_adopts_a_new_prefix_and_keeps_the_old_on_a_bad_file(
    upstream: Endpoint, proxy: Proxy, tmp_path: Path
) -> None:
    config = f'prefixes = ["{NSP}"]\n[dns]\nupstreams = ["{upstream}"]\n'
    endpoint, daemon = proxy(config=config)
    assert rrsets(ask(endpoint, "v4only.example.", "AAAA"))[0][2] == {"2001:db8:64::c000:20a"}
    path = next(tmp_path.glob("totd-faith*.toml"))
    path.write_text(config.replace("2001:db8:64::", "2001:db8:65::"))
    os.kill(daemon.pid, signal.SIGHUP)
    _until(
        lambda: rrsets(ask(endpoint, "v4only.example.", "AAAA"))[0][2] == {"2001:db8:65::c000:20a"}
    )
    path.write_text('prefixes = ["not a prefix"]\n')
    os.kill(daemon.pid, signal.SIGHUP)
    _until(lambda: "new configuration rejected" in daemon.log_tail(100))
    assert rrsets(ask(endpoint, "v4only.example.", "AAAA"))[0][2] == {"2001:db8:65::c000:20a"}
    assert daemon.alive()


def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_query_log_and_start_line(upstream: Endpoint, proxy: Proxy) -> None:
    config = "[log]\nqueries = true\n"
    endpoint, daemon = proxy("--upstream", str(upstream), "--prefix", NSP, config=config)
    ask(endpoint, "v4only.example.", "AAAA")
    ask(endpoint, "v4only.example.", "AAAA")
    _until(lambda: "(cache)" in daemon.log_tail(100))
    log = daemon.log_tail(100)
    assert f"upstreams {upstream}" in log and f"prefixes {NSP}" in log
    assert "query 127.0.0.1 v4only.example. AAAA -> NOERROR" in log


def test_sigterm_stops_cleanly(upstream: Endpoint, proxy: Proxy) -> None:
    endpoint, daemon = proxy("--upstream", str(upstream))
    os.kill(daemon.pid, signal.SIGTERM)
    assert daemon.proc.wait(10) == 0
    assert "Traceback" not in daemon.log_tail(100)


def test_port_in_use_is_a_one_line_error(upstream: Endpoint) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "totd_faith",
                "dns",
                "--listen",
                f"127.0.0.1:{port}",
                "--upstream",
                str(upstream),
            ],
            capture_output=True,
            text=True,
            timeout=20,
        )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"Error: cannot listen on 127.0.0.1:{port} (udp): the address is already in use" in (
        result.stderr
    )


def test_bad_flag_is_a_one_line_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "totd_faith", "dns", "--prefix", "2001:db8::/33"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("Error: --prefix (prefixes[0])")


def test_ipv6_listener_udp_and_tcp(upstream: Endpoint, tmp_path: Path) -> None:
    port = free_port("::1")
    argv = [
        sys.executable,
        "-m",
        "totd_faith",
        "dns",
        "--upstream",
        str(upstream),
        "--prefix",
        NSP,
        "--listen",
        f"[::1]:{port}",
        "--listen",
        f"127.0.0.1:{port}",
    ]
    with Daemon("totd-faith-dns6", argv, tmp_path) as daemon:
        v6 = parse_endpoint(f"[::1]:{port}")
        wait_dns(v6, "ipv4only.arpa.", "A", check=any_response, daemon=daemon)
        for tcp in (False, True):
            r = ask(v6, "v4only.example.", "AAAA", tcp)
            assert rrsets(r) == [("v4only.example.", "AAAA", {"2001:db8:64::c000:20a"})]
            r = ask(parse_endpoint(f"127.0.0.1:{port}"), "v4only.example.", "AAAA", tcp)
            assert rrsets(r) == [("v4only.example.", "AAAA", {"2001:db8:64::c000:20a"})]


def test_hosts_files_are_answered_and_reread_on_sighup(
    upstream: Endpoint, proxy: Proxy, tmp_path: Path
) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.99 printer.lan\n2001:db8::1 v6host.lan\n")
    config = f'[dns]\nhosts_files = ["{hosts}"]\n'
    endpoint, daemon = proxy("--upstream", str(upstream), "--prefix", NSP, config=config)
    assert rrsets(ask(endpoint, "printer.lan.", "AAAA")) == [
        ("printer.lan.", "AAAA", {"2001:db8:64::c000:263"})
    ]
    assert rrsets(ask(endpoint, "printer.lan.", "A")) == [("printer.lan.", "A", {"192.0.2.99"})]
    # The IPv6 line is skipped with a warning logged at start.
    assert "skipped the IPv6 address 2001:db8::1" in daemon.log_tail(100)
    hosts.write_text("192.0.2.98 printer.lan\n")
    os.kill(daemon.pid, signal.SIGHUP)
    _until(
        lambda: (
            rrsets(ask(endpoint, "printer.lan.", "A")) == [("printer.lan.", "A", {"192.0.2.98"})]
        )
    )


def test_upstream_equal_to_listen_is_refused() -> None:
    port = free_port()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "totd_faith",
            "dns",
            "--listen",
            f"127.0.0.1:{port}",
            "--upstream",
            f"127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"Error: upstream 127.0.0.1:{port} is also a listen address" in result.stderr


def test_two_workers_share_the_port(upstream: Endpoint, proxy: Proxy) -> None:
    endpoint, daemon = proxy("--upstream", str(upstream), "--prefix", NSP, "--workers", "2")
    for i in range(20):
        tcp = bool(i % 2)
        r = ask(endpoint, "v4only.example.", "AAAA", tcp)
        assert rrsets(r) == [("v4only.example.", "AAAA", {"2001:db8:64::c000:20a"})]
    _until(lambda: daemon.log_tail(100).count("starting") >= 2)
    os.kill(daemon.pid, signal.SIGTERM)
    assert daemon.proc.wait(10) == 0
