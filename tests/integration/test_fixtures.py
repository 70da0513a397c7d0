"""The shared test helpers work: NSD and Unbound launchers, free ports, namespaces."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from tests import netns
from tests.conftest import free_port, require_root
from tests.netns import (
    Namespace,
    NamespaceCommandError,
    Topology,
    skip_unless_netns,
    wait_tcp,
    wait_udp_dns,
)
from tests.support.nsd import nsd_config, start_nsd
from tests.support.process import live_group_members
from tests.support.unbound import dns64_options
from totd_faith.endpoints import Endpoint
from totd_faith.prefix import Nat64Prefix

ZONE = """\
$ORIGIN example.
$TTL 300
@   IN SOA ns.example. hostmaster.example. 1 3600 600 86400 300
@   IN NS  ns.example.
ns  IN A   192.0.2.1
www IN A   192.0.2.10
v6  IN AAAA 2001:db8::6
"""


def query(endpoint: Endpoint, name: str, rdtype: str) -> dns.message.Message:
    return dns.query.udp(
        dns.message.make_query(name, rdtype), str(endpoint.host), port=endpoint.port, timeout=2
    )


def answer_texts(response: dns.message.Message) -> list[str]:
    return sorted(rd.to_text() for rrset in response.answer for rd in rrset)


def test_free_port_is_free_for_tcp_and_udp() -> None:
    ports = {free_port() for _ in range(5)}
    assert len(ports) == 5, "free_port handed out the same port twice"
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", port))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", port))


def test_nsd_fixture_serves_the_zone(nsd: Callable[[dict[str, str]], Endpoint]) -> None:
    endpoint = nsd({"example.": ZONE})
    assert str(endpoint.host) == "127.0.0.1"
    response = query(endpoint, "www.example.", "A")
    assert response.rcode() == dns.rcode.NOERROR
    assert answer_texts(response) == ["192.0.2.10"]
    assert answer_texts(query(endpoint, "v6.example.", "AAAA")) == ["2001:db8::6"]
    assert query(endpoint, "missing.example.", "A").rcode() == dns.rcode.NXDOMAIN


def test_nsd_serves_several_zones(nsd: Callable[[dict[str, str]], Endpoint]) -> None:
    other = ZONE.replace("example.", "example.net.")
    endpoint = nsd({"example.": ZONE, "example.net.": other})
    assert answer_texts(query(endpoint, "www.example.net.", "A")) == ["192.0.2.10"]
    assert answer_texts(query(endpoint, "www.example.", "A")) == ["192.0.2.10"]


def test_nsd_stops_with_all_its_processes(tmp_path: Path) -> None:
    server = start_nsd({"example.": ZONE}, tmp_path)
    pgid = server.daemon.pid
    server.stop()
    assert not server.daemon.alive()
    assert live_group_members(pgid) == []


def test_nsd_with_a_broken_zone_fails_fast_with_its_log(tmp_path: Path) -> None:
    broken = ZONE + "bad IN A 192.0.2.300\n"
    with pytest.raises(RuntimeError) as info:
        start_nsd({"example.": broken}, tmp_path, timeout=2.0)
    message = str(info.value)
    assert "did not answer example. SOA" in message or "exited" in message
    assert "nsd" in message and "---" in message, "the error should carry NSD's own log"


def test_unbound_as_dns64_in_front_of_nsd(
    nsd: Callable[[dict[str, str]], Endpoint], unbound: Callable[..., Endpoint]
) -> None:
    authoritative = nsd({"example.": ZONE})
    prefix = Nat64Prefix.parse("2001:db8:64::/96")
    resolver = unbound(*dns64_options(str(prefix), {"example.": authoritative}))
    response = query(resolver, "www.example.", "AAAA")
    assert response.rcode() == dns.rcode.NOERROR
    expected = prefix.embed(ipaddress.IPv4Address("192.0.2.10"))
    assert answer_texts(response) == [str(expected)]
    # A real AAAA is passed through, not synthesized (RFC 6147 section 5.1.1).
    assert answer_texts(query(resolver, "v6.example.", "AAAA")) == ["2001:db8::6"]


def test_namespace_refuses_addresses_outside_the_allowed_ranges() -> None:
    ns = Namespace("tf-never-created", "x")
    with pytest.raises(ValueError, match="may only use"):
        ns.add_address("eth0", "10.1.2.3/24")
    with pytest.raises(ValueError, match="may only use"):
        ns.add_address("eth0", "2001:4860::1/64")


def _two_hosts(topo: Topology) -> tuple[Namespace, Namespace]:
    a = topo.namespace("a")
    b = topo.namespace("b")
    topo.link(a, "eth0", b, "eth0")
    a.add_address("eth0", "fd00:1::1/64")
    b.add_address("eth0", "fd00:1::2/64")
    a.add_address("eth0", "192.0.2.1/24")
    b.add_address("eth0", "192.0.2.2/24")
    return a, b


def test_two_namespaces_ping_over_ipv6_and_ipv4(topology: Topology) -> None:
    a, b = _two_hosts(topology)
    six = a.run("ping", "-6", "-c", "1", "-W", "2", "fd00:1::2", check=False)
    assert six.returncode == 0, six.stdout + six.stderr
    four = b.run("ping", "-4", "-c", "1", "-W", "2", "192.0.2.1", check=False)
    assert four.returncode == 0, four.stdout + four.stderr
    # The namespaces are isolated: the root namespace has no such address.
    root = subprocess.run(["ip", "-6", "address"], capture_output=True, text=True, check=True)
    assert "fd00:1::1" not in root.stdout


def test_wait_tcp_sees_a_listener_in_another_namespace(topology: Topology) -> None:
    a, b = _two_hosts(topology)
    b.popen("socat", "TCP6-LISTEN:8080,bind=[fd00:1::2],fork,reuseaddr", "SYSTEM:echo hello")
    wait_tcp(a, "fd00:1::2", 8080, timeout=10)
    reply = a.run("socat", "-T", "2", "-", "TCP6:[fd00:1::2]:8080", input="")
    assert reply.stdout.strip() == "hello"


def test_wait_tcp_times_out_with_a_reason(topology: Topology) -> None:
    a, _ = _two_hosts(topology)
    with pytest.raises(TimeoutError, match="nothing accepted TCP"):
        wait_tcp(a, "fd00:1::2", 9, timeout=0.5)


def test_wait_udp_dns_sees_nsd_in_a_namespace(topology: Topology, tmp_path: Path) -> None:
    a, b = _two_hosts(topology)
    (tmp_path / "example.zone").write_text(ZONE)
    conf = tmp_path / "nsd.conf"
    conf.write_text(nsd_config({"example.": ZONE}, tmp_path, "fd00:1::2", 53))
    b.popen("nsd", "-d", "-c", str(conf), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_udp_dns(a, "fd00:1::2", 53, "example.", "SOA", timeout=10)
    dig = a.run("dig", "+short", "@fd00:1::2", "www.example.", "A")
    assert dig.stdout.split() == ["192.0.2.10"]


def test_failed_commands_say_where_and_why(topology: Topology) -> None:
    a = topology.namespace("a")
    with pytest.raises(subprocess.CalledProcessError) as info:
        a.run("ip", "link", "set", "nonexistent0", "up")
    assert isinstance(info.value, NamespaceCommandError)
    message = str(info.value)
    assert a.name in message and "ip link set nonexistent0 up" in message
    assert "nonexistent0" in info.value.stderr
    assert a.run("false", check=False).returncode == 1


def test_topology_cleans_up_after_a_failure() -> None:
    skip_unless_netns()
    names: list[str] = []
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="boom"), Topology() as topo:
        a = topo.namespace("a")
        names.append(a.name)
        assert a.name.startswith("tf-")
        pids.append(a.popen("sleep", "300").pid)
        raise RuntimeError("boom")
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert names[0] not in listing
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)


def test_not_root_skips_with_a_clear_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns, "_netns_probed", False)
    monkeypatch.setattr(netns, "_netns_problem", None)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(pytest.skip.Exception, match="needs root to create network namespaces"):
        skip_unless_netns()
    with pytest.raises(pytest.skip.Exception, match="needs root"):
        require_root()
