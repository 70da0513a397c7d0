"""UDP through `totd-faith relay` in namespaces: prefix mode, port maps, expiry, denials.

An IPv6-only client sends to [2001:db8:64::c633:6402]:7 and must get the echo
back *from that address and port*; the IPv4-only server echoes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.relay_net import (
    CLIENT_V6,
    PREFIX,
    RELAY_V4,
    RELAY_V6,
    SERVER_V6,
    Hosts,
    Relay,
    build,
    embed,
    many_udp_sessions,
    start_udp_echo,
    udp_probe,
    wait_udp,
)
from tests.netns import Topology

CONFIG = f"""
prefixes = ["{PREFIX}"]

[relay]
ports = [{{ port = 7, protocols = ["udp"] }}]
manage_routes = true
udp_idle_timeout = 1.0
rules = ["fd00::/8 deny 198.51.100.3/32"]

[[relay.maps]]
listen = "[{RELAY_V6}]:5300"
target = "198.51.100.2:7"
protocol = "udp"

[[relay.maps]]
listen = "[::]:5301"
target = "198.51.100.2:7"
protocol = "udp"

[[relay.maps]]
listen = "[{RELAY_V6}]:5309"
target = "198.51.100.2:9"
protocol = "udp"
"""


@pytest.fixture
def net(topology: Topology) -> Hosts:
    hosts = build(topology)
    start_udp_echo(hosts.server, 7)
    return hosts


@pytest.fixture
def relay(net: Hosts, tmp_path: Path) -> Relay:
    relay = Relay(net.relay, tmp_path, CONFIG)
    probe = wait_udp(net.client, SERVER_V6, 7)
    assert "data" in probe["replies"][0], f"relay never answered:\n{relay.output()}"
    return relay


def test_prefix_mode_replies_come_from_the_dialled_address(net: Hosts, relay: Relay) -> None:
    # hostsetup.sysctl_steps() is empty: replies from AnyIP addresses need no sysctl.
    for key in ("net/ipv6/conf/all/forwarding", "net/ipv6/ip_nonlocal_bind"):
        assert net.relay.run("cat", f"/proc/sys/{key}").stdout.strip() == "0", key
    probe = udp_probe(net.client, SERVER_V6, 7, "one", "two", "three")
    assert [r.get("data") for r in probe["replies"]] == ["one", "two", "three"]
    for reply in probe["replies"]:
        assert reply["source"] == [SERVER_V6, 7]
    # The AnyIP route was added by manage_routes while running, and goes at stop.
    routes = net.relay.run("ip", "-6", "route", "show", "table", "local", PREFIX).stdout
    assert "local 2001:db8:64::/96" in routes
    assert relay.terminate() == 0
    out = relay.output()
    # One log line for the session: 3 datagrams each way (plus nothing else from this port).
    line = next(ln for ln in out.splitlines() if f"[{CLIENT_V6}]:{probe['local_port']} ->" in ln)
    assert f"-> [{SERVER_V6}]:7 (198.51.100.2:7)" in line
    assert "3 datagrams/11 bytes out, 3 datagrams/11 bytes in" in line
    routes = net.relay.run("ip", "-6", "route", "show", "table", "local", PREFIX).stdout
    assert routes.strip() == ""


@pytest.mark.parametrize("listen_port", [5300, 5301])
def test_port_map_replies_from_the_map_address(net: Hosts, relay: Relay, listen_port: int) -> None:
    # 5300 is bound to the relay's address, 5301 to [::]: IPV6_PKTINFO picks the source.
    probe = udp_probe(net.client, RELAY_V6, listen_port, "mapped", "again")
    assert [r.get("data") for r in probe["replies"]] == ["mapped", "again"]
    assert all(r["source"] == [RELAY_V6, listen_port] for r in probe["replies"])


def test_idle_session_expires_and_is_logged(net: Hosts, relay: Relay) -> None:
    probe = udp_probe(net.client, SERVER_V6, 7, "idle soon")
    assert probe["replies"][0].get("data") == "idle soon"
    key = f"[{CLIENT_V6}]:{probe['local_port']} -> [{SERVER_V6}]:7"
    out = relay.wait_log(re.escape(key) + r".*ended: idle for 1 s$", timeout=10.0)
    (line,) = [ln for ln in out.splitlines() if key in ln]
    assert "1 datagrams/9 bytes out, 1 datagrams/9 bytes in" in line


def test_denied_destinations_get_nothing(net: Hosts, relay: Relay) -> None:
    # Echoes on the relay's own addresses: if a deny failed, the client would hear them.
    start_udp_echo(net.relay, 7, host="127.0.0.1")
    start_udp_echo(net.relay, 7, host=RELAY_V4)
    denied = {
        embed("198.51.100.3"): "relay.rules[0]",
        embed(RELAY_V4): "is this relay host",
        embed("127.0.0.1"): "loopback",
    }
    for address, reason in denied.items():
        probe = udp_probe(net.client, address, 7, "x", "y", "z", timeout=0.5)
        assert all("error" in r for r in probe["replies"]), (address, probe)
        out = relay.output()
        key = f"[{CLIENT_V6}]:{probe['local_port']} -> [{address}]:7 denied"
        lines = [ln for ln in out.splitlines() if key in ln]
        assert len(lines) == 1, (key, out)  # once per session key, not per datagram
        assert reason in lines[0]
    # The permitted destination still works alongside.
    assert udp_probe(net.client, SERVER_V6, 7, "ok")["replies"][0].get("data") == "ok"


def test_hundreds_of_concurrent_sessions(net: Hosts, relay: Relay) -> None:
    report = many_udp_sessions(net.client, SERVER_V6, 7, 300)
    assert report == {"missing": [], "wrong": []}, relay.output()[-2000:]


def test_refused_backend_ends_the_session(net: Hosts, relay: Relay) -> None:
    """Nothing listens on the server's port 9: its ICMP port unreachable ends the session."""
    probe = udp_probe(net.client, RELAY_V6, 5309, "anyone?", timeout=0.5)
    assert "error" in probe["replies"][0]
    key = f"[{CLIENT_V6}]:{probe['local_port']} -> [{RELAY_V6}]:5309 (198.51.100.2:9)"
    out = relay.wait_log(re.escape(key) + r".*ended: backend refused \(port unreachable\)$")
    (line,) = [ln for ln in out.splitlines() if key in ln]
    assert "1 datagrams/7 bytes out, 0 datagrams/0 bytes in" in line


def test_command_line_flags_and_two_workers(net: Hosts, tmp_path: Path) -> None:
    """`--prefix --port --manage-routes -w 2`: both workers share UDP port 7 (SO_REUSEPORT)
    and each client flow stays with one of them."""
    relay = Relay(
        net.relay, tmp_path, "", ["--prefix", PREFIX, "--port", "7", "--manage-routes", "-w", "2"]
    )
    probe = wait_udp(net.client, SERVER_V6, 7)
    assert probe["replies"][0].get("source") == [SERVER_V6, 7], relay.output()
    assert many_udp_sessions(net.client, SERVER_V6, 7, 200) == {"missing": [], "wrong": []}
    assert relay.terminate() == 0, relay.output()
    routes = net.relay.run("ip", "-6", "route", "show", "table", "local", PREFIX).stdout
    assert routes.strip() == "", relay.output()
