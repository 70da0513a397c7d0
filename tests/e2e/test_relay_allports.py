"""All-ports mode (`relay.all_ports`): nftables tproxy catches ports listed nowhere.

The relay lists no port at all; a TCP echo on 8080 and a UDP echo on 9999 on
the IPv4-only server must both be reachable through PREFIX::198.51.100.2, the
nft table and fwmark rule exist while the relay runs and are gone after
SIGTERM.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.e2e.relay_net import (
    PREFIX,
    RELAY_V4,
    SERVER_V6,
    Hosts,
    Relay,
    build,
    embed,
    many_udp_sessions,
    start_tcp_echo,
    start_udp_echo,
    udp_probe,
)
from tests.netns import Topology, wait_tcp
from totd_faith.hostsetup import DEFAULT_MARK, DEFAULT_TABLE

CONFIG = f"""
prefixes = ["{PREFIX}"]

[relay]
all_ports = true
tproxy_port = 64646
"""

# Send a payload, half-close, read until EOF: the echo must come back whole.
_TCP_ROUND_TRIP = textwrap.dedent(
    """
    import hashlib, os, socket, sys
    host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    payload = os.urandom(size)
    s = socket.create_connection((host, port), timeout=10)
    peer = s.getpeername()[:2]
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    got = bytearray()
    while chunk := s.recv(65536):
        got += chunk
    same = hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    print(peer[0], peer[1], len(got), same)
    """
)


def nft_state(hosts: Hosts) -> tuple[int, str, str]:
    table = hosts.relay.run("nft", "list", "table", "inet", "totd_faith", check=False)
    rules = hosts.relay.run("ip", "-6", "rule", "show").stdout
    routes = hosts.relay.run(
        "ip", "-6", "route", "show", "table", str(DEFAULT_TABLE), check=False
    ).stdout
    return table.returncode, table.stdout + rules, routes


@pytest.fixture
def net(topology: Topology) -> Hosts:
    hosts = build(topology)
    start_tcp_echo(hosts.server, 8080)
    start_udp_echo(hosts.server, 9999)
    wait_tcp(hosts.server, "198.51.100.2", 8080)
    return hosts


def test_unlisted_tcp_and_udp_ports_work_and_setup_is_removed(net: Hosts, tmp_path: Path) -> None:
    # hostsetup.sysctl_steps() is empty: this works with the namespace defaults.
    for key in ("net/ipv6/conf/all/forwarding", "net/ipv6/ip_nonlocal_bind"):
        assert net.relay.run("cat", f"/proc/sys/{key}").stdout.strip() == "0", key
    relay = Relay(net.relay, tmp_path, CONFIG)
    # Ready when a TCP connection through the tproxy rule is accepted.
    wait_tcp(net.client, SERVER_V6, 8080, timeout=15.0)

    status, listing, routes = nft_state(net)
    assert status == 0, relay.output()
    assert "tproxy ip6 to :64646" in listing
    assert f"fwmark {DEFAULT_MARK:#x} lookup {DEFAULT_TABLE}" in listing
    assert "local default dev lo" in routes

    # TCP: 1 MiB both ways with half-close, compared by hash.
    out = net.client.run(sys.executable, "-c", _TCP_ROUND_TRIP, SERVER_V6, "8080", "1048576")
    assert out.stdout.split() == [SERVER_V6, "8080", "1048576", "True"]

    # UDP on an unlisted port: replies come from the dialled address and port,
    # including after the session's transparent socket took over from the tproxy socket.
    for _ in range(2):  # two clients (two sockets) to the same destination at once
        probe = udp_probe(net.client, SERVER_V6, 9999, "u1", "u2", "u3")
        assert [r.get("data") for r in probe["replies"]] == ["u1", "u2", "u3"], relay.output()
        assert all(r["source"] == [SERVER_V6, 9999] for r in probe["replies"])

    # A port with no service behind it: refused promptly, not hung.
    refused = net.client.run(
        sys.executable, "-c", _TCP_ROUND_TRIP, SERVER_V6, "8081", "10", check=False, timeout=15
    )
    assert refused.returncode != 0
    assert "ConnectionRefusedError" in refused.stderr or "ConnectionResetError" in refused.stderr

    assert relay.terminate() == 0, relay.output()
    status, listing, routes = nft_state(net)
    assert status != 0, listing
    assert f"fwmark {DEFAULT_MARK:#x}" not in listing
    assert routes.strip() == ""
    log = relay.output()
    assert "removed: steer TCP and UDP" in log
    assert "-> [2001:db8:64::c633:6402]:9999 (198.51.100.2:9999): 3 datagrams" in log


def test_without_privilege_it_says_so(net: Hosts, tmp_path: Path) -> None:
    # Drop every capability (setpriv from util-linux), as an unprivileged user would run it.
    conf = tmp_path / "relay.toml"
    conf.write_text(CONFIG)
    result = net.relay.run(
        "setpriv", "--inh-caps=-all", "--bounding-set=-all", "--",
        "totd-faith", "relay", "-c", str(conf), check=False, timeout=20,
    )  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: all-ports mode needs root or CAP_NET_ADMIN"), result.stderr
    assert "Traceback" not in result.stderr
    status, listing, _ = nft_state(net)
    assert status != 0 and "fwmark" not in listing


def test_after_dropping_privileges(net: Hosts, tmp_path: Path) -> None:
    """service.user: the relay keeps only CAP_NET_ADMIN, which new UDP sessions (transparent
    sockets) and the clean-up at stop (nft, ip) still need."""
    tmp_path.chmod(0o755)
    relay = Relay(net.relay, tmp_path, CONFIG + '\n[service]\nuser = "nobody"\n')
    wait_tcp(net.client, SERVER_V6, 8080, timeout=15.0)
    relay.wait_log("running as nobody", timeout=10.0)
    probe = udp_probe(net.client, SERVER_V6, 9999, "after drop")
    assert probe["replies"][0].get("data") == "after drop", relay.output()
    assert probe["replies"][0]["source"] == [SERVER_V6, 9999]
    assert relay.terminate() == 0, relay.output()
    status, listing, routes = nft_state(net)
    assert status != 0 and "fwmark" not in listing and routes.strip() == "", relay.output()


def test_sighup_with_a_new_prefix_rewrites_the_nft_table(net: Hosts, tmp_path: Path) -> None:
    relay = Relay(net.relay, tmp_path, CONFIG)
    wait_tcp(net.client, SERVER_V6, 8080, timeout=15.0)
    second = "2001:db8:65::c633:6402"  # 198.51.100.2 in the second prefix
    net.client.add_route("2001:db8:65::/96", "via", "fd00:1::2")
    relay.conf.write_text(CONFIG.replace(f'"{PREFIX}"', f'"{PREFIX}", "2001:db8:65::/96"'))
    relay.proc.send_signal(signal.SIGHUP)
    relay.wait_log("SIGHUP: configuration reloaded")
    listing = net.relay.run("nft", "list", "table", "inet", "totd_faith").stdout
    assert "2001:db8:64::/96" in listing and "2001:db8:65::/96" in listing, listing
    probe = udp_probe(net.client, second, 9999, "second prefix")
    assert probe["replies"][0].get("data") == "second prefix", relay.output()
    assert probe["replies"][0]["source"] == [second, 9999]
    assert relay.terminate() == 0, relay.output()
    assert nft_state(net)[0] != 0


def test_hundreds_of_udp_sessions_share_one_original_destination(
    net: Hosts, tmp_path: Path
) -> None:
    """300 clients to one unlisted port: 300 transparent reply sockets bound to the same
    original destination (SO_REUSEADDR), each connected to its own client."""
    relay = Relay(net.relay, tmp_path, CONFIG)
    wait_tcp(net.client, SERVER_V6, 8080, timeout=15.0)
    report = many_udp_sessions(net.client, SERVER_V6, 9999, 300)
    assert report == {"missing": [], "wrong": []}, relay.output()[-2000:]
    assert relay.terminate() == 0


def test_denied_destinations_in_all_ports_mode(net: Hosts, tmp_path: Path) -> None:
    """The deny list holds for ports nobody listed: the relay's own address and loopback."""
    # Services on the relay host itself; reaching them would be a loop through the relay.
    start_udp_echo(net.relay, 9999, host=RELAY_V4)
    start_udp_echo(net.relay, 9999, host="127.0.0.1")
    net.relay.popen(
        "socat", "TCP4-LISTEN:8080,bind=127.0.0.1,fork,reuseaddr", "EXEC:cat",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_tcp(net.relay, "127.0.0.1", 8080)
    relay = Relay(net.relay, tmp_path, CONFIG)
    wait_tcp(net.client, SERVER_V6, 8080, timeout=15.0)
    for v4 in (RELAY_V4, "127.0.0.1"):
        probe = udp_probe(net.client, embed(v4), 9999, "a", "b", timeout=0.5)
        assert all("error" in r for r in probe["replies"]), (v4, probe)
    tcp = net.client.run(
        sys.executable, "-c", _TCP_ROUND_TRIP, embed("127.0.0.1"), "8080", "10", check=False
    )
    assert tcp.returncode != 0, tcp.stdout
    out = relay.output()
    assert f"-> [{embed(RELAY_V4)}]:9999 denied: destination {RELAY_V4} is this relay host" in out
    assert f"-> [{embed('127.0.0.1')}]:9999 denied: loopback" in out
    assert relay.terminate() == 0


def test_two_workers_share_the_tproxy_port(net: Hosts, tmp_path: Path) -> None:
    """`--all-ports -w 2`: one worker installs the nft table (the other finds it in place),
    both accept on the tproxy port, and the table is gone after SIGTERM."""
    relay = Relay(net.relay, tmp_path, "", ["--prefix", PREFIX, "--all-ports", "-w", "2"])
    wait_tcp(net.client, SERVER_V6, 8080, timeout=15.0)
    assert many_udp_sessions(net.client, SERVER_V6, 9999, 200) == {"missing": [], "wrong": []}
    for _ in range(4):
        out = net.client.run(sys.executable, "-c", _TCP_ROUND_TRIP, SERVER_V6, "8080", "65536")
        assert out.stdout.split()[-1] == "True"
    assert relay.terminate() == 0, relay.output()
    log = relay.output()
    assert log.count("relaying every TCP and UDP port") == 2, log
    assert log.count("applied: steer TCP and UDP") == 1, log  # one installs, one finds it
    assert log.count("removed: steer TCP and UDP") == 1, log
    status, listing, routes = nft_state(net)
    assert status != 0 and "fwmark" not in listing and routes.strip() == "", log
