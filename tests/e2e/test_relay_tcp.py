"""End-to-end TCP relaying in network namespaces (issue 4), prefix mode and port maps.

    client (IPv6 only)          relay (dual stack)               server (IPv4 only)
    fd00:1::2/64, 2001:db8:1::2 -- fd00:1::1/64, 2001:db8:1::1
                                   198.51.100.1/24 ------------- 198.51.100.2/24
                                   AnyIP: 2001:db8:64::/96, 64:ff9b::/96 on lo

The server runs nginx (plain on :80, PROXY protocol on :8080 and :8081), an echo
server on :7 and a hashing server on :9000; the client dials
2001:db8:64::c633:6402 (198.51.100.2 embedded), as DNS64 would tell it to.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.relay_process import PEERS, wait_for_line
from tests.netns import Namespace, Topology, skip_unless_netns, wait_tcp
from tests.support.nginx import nginx_conf

PREFIX = "2001:db8:64::"
SERVER_V4 = "198.51.100.2"
SERVER_V6 = PREFIX + "c633:6402"  # 198.51.100.2 inside 2001:db8:64::/96
RELAY_OWN_V6 = PREFIX + "c633:6401"  # 198.51.100.1 is the relay itself
BULK = 30_000_000


def nginx_servers(v4: str) -> str:
    return f"""    server {{
        listen {v4}:80;
        location / {{ return 200 "hello from the IPv4-only server\\n"; }}
    }}
    server {{
        listen {v4}:8080 proxy_protocol;
        listen {v4}:8081 proxy_protocol;
        location / {{
            return 200 "client=$proxy_protocol_addr server=$proxy_protocol_server_addr\\n";
        }}
    }}
"""


RELAY_CONF = """
prefixes = ["2001:db8:64::/96", "64:ff9b::/96"]
[log]
level = "debug"
[relay]
ports = [
    {{ port = 80, protocols = ["tcp"] }},
    {{ port = 7, protocols = ["tcp"] }},
    {{ port = 9, protocols = ["tcp"] }},
    {{ port = 9000, protocols = ["tcp"] }},
    {{ port = 7007, protocols = ["tcp"] }},
    {{ port = 8080, protocols = ["tcp"], proxy_protocol = "v1" }},
    {{ port = 8081, protocols = ["tcp"], proxy_protocol = "v2" }},
]
maps = ["[fd00:1::1]:8888=198.51.100.2:80"]
max_connections_per_client = 400
splice = "{splice}"
rules = [
    "fd00:1::/64 deny 198.51.100.99/32",
    "::/0 permit 0.0.0.0/0",
]
"""


@dataclass
class Net:
    client: Namespace
    relay: Namespace
    server: Namespace
    relay_log: Path
    tmp: Path

    def peer(self, *args: str, source: Namespace | None = None, timeout: float = 60) -> str:
        ns = source or self.client
        return ns.run(sys.executable, str(PEERS), *args, timeout=timeout).stdout.strip()

    def probe(self, host: str, port: int, source_address: str | None = None) -> str:
        extra = [source_address] if source_address else []
        return self.peer("probe", host, str(port), *extra)

    def relay_text(self) -> str:
        return self.relay_log.read_text(errors="replace")


def _build(topo: Topology, tmp: Path, splice: str) -> Net:
    client = topo.namespace("client")
    relay = topo.namespace("relay")
    server = topo.namespace("server")
    topo.link(client, "eth0", relay, "eth0")
    topo.link(relay, "eth1", server, "eth0")
    client.add_address("eth0", "fd00:1::2/64")
    # A client address outside relay.clients; deprecated (preferred_lft 0) so
    # that it is used only when a test binds it explicitly.
    client.run(
        "ip", "address", "add", "2001:db8:1::2/64", "dev", "eth0", "nodad", "preferred_lft", "0"
    )
    relay.add_address("eth0", "fd00:1::1/64")
    relay.add_address("eth0", "2001:db8:1::1/64")
    relay.add_address("eth1", "198.51.100.1/24")
    server.add_address("eth0", "198.51.100.2/24")
    server.sysctl("net.ipv6.conf.all.disable_ipv6", 1)  # the server is IPv4-only
    for prefix in ("2001:db8:64::/96", "64:ff9b::/96"):
        client.add_route(prefix, "via", "fd00:1::1")
        relay.run("ip", "-6", "route", "add", "local", prefix, "dev", "lo")

    conf = tmp / "nginx.conf"
    conf.write_text(nginx_conf(tmp, nginx_servers(SERVER_V4), worker_connections=1024))
    server.popen("nginx", "-c", str(conf), "-p", str(tmp), "-e", str(tmp / "nginx-error.log"))
    server.popen(sys.executable, str(PEERS), "echo-server", SERVER_V4, "7")
    server.popen(sys.executable, str(PEERS), "hash-server", SERVER_V4, "9000", str(BULK))
    # Listeners the relay must never reach: its own address and its loopback.
    relay.popen("socat", "TCP4-LISTEN:80,bind=198.51.100.1,reuseaddr,fork", "SYSTEM:echo touched")
    relay.popen("socat", "TCP4-LISTEN:80,bind=127.0.0.1,reuseaddr,fork", "SYSTEM:echo touched")
    for port in (80, 7, 9000, 8080):
        wait_tcp(server, SERVER_V4, port)

    relay_conf = tmp / "relay.toml"
    relay_conf.write_text(RELAY_CONF.format(splice=splice))
    relay_log = tmp / "relay.out"
    with relay_log.open("wb") as out:
        proc = relay.popen(
            sys.executable,
            "-m",
            "totd_faith",
            "relay",
            "-c",
            str(relay_conf),
            stdout=out,
            stderr=-2,  # subprocess.STDOUT
        )
    wait_for_line(proc, relay_log, "relay: ", 20)
    return Net(client, relay, server, relay_log, tmp)


@pytest.fixture(scope="module", params=["on", "auto", "off"], ids=["splice", "auto", "copy"])
def net(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    skip_unless_netns()
    tmp = tmp_path_factory.mktemp(f"relay-e2e-{request.param}")
    tmp.chmod(0o755)  # nginx workers run as nobody
    with Topology() as topo:
        yield _build(topo, tmp, request.param)


def test_curl_reaches_ipv4_only_server_by_prefix(net: Net) -> None:
    result = net.client.run("curl", "-sS", "--max-time", "10", "-g", f"http://[{SERVER_V6}]/")
    assert result.stdout == "hello from the IPv4-only server\n"
    wait_for_line_in(net, "-> 198.51.100.2:80")


def test_port_map_mode(net: Net) -> None:
    result = net.client.run("curl", "-sS", "--max-time", "10", "-g", "http://[fd00:1::1]:8888/")
    assert result.stdout == "hello from the IPv4-only server\n"


def test_tens_of_megabytes_both_ways_with_half_close(net: Net) -> None:
    out = net.peer("hash-client", SERVER_V6, "9000", str(BULK), str(BULK), timeout=120)
    result = json.loads(out)
    assert result["ok"] is True, result
    wait_for_line_in(net, f"{BULK} bytes up, {BULK + 72} bytes down")


def test_hundreds_of_concurrent_connections(net: Net) -> None:
    assert net.peer("concurrent", SERVER_V6, "7", "300", "10000", timeout=90) == "300"


@pytest.mark.parametrize(("version", "port"), [("v1", 8080), ("v2", 8081)])
def test_proxy_protocol_tells_nginx_the_ipv6_client(net: Net, version: str, port: int) -> None:
    result = net.client.run(
        "curl", "-sS", "--max-time", "10", "-g", f"http://[{SERVER_V6}]:{port}/"
    )
    assert result.stdout == f"client=fd00:1::2 server={SERVER_V6}\n", version


def test_backend_refused_is_passed_on(net: Net) -> None:
    assert net.probe(SERVER_V6, 9) == "reset"
    wait_for_line_in(net, "-> 198.51.100.2:9: 0 bytes up, 0 bytes down")


@pytest.mark.parametrize(
    ("v4", "reason"),
    [
        ("127.0.0.1", "loopback destination 127.0.0.0/8"),
        ("0.0.0.1", "this-network destination 0.0.0.0/8"),
        ("169.254.1.1", "link-local destination 169.254.0.0/16"),
        ("224.0.0.1", "multicast destination 224.0.0.0/4"),
        ("240.0.0.1", "reserved destination 240.0.0.0/4"),
        ("255.255.255.255", "broadcast destination 255.255.255.255/32"),
        ("198.51.100.1", "destination 198.51.100.1 is this relay host"),
        ("198.51.100.99", "relay.rules[0]"),
    ],
)
def test_every_deny_rule(net: Net, v4: str, reason: str) -> None:
    import ipaddress

    dialled = str(
        ipaddress.IPv6Address(int(ipaddress.IPv6Address(PREFIX)) | int(ipaddress.IPv4Address(v4)))
    )
    outcome = net.probe(dialled, 80)
    assert outcome in ("eof", "reset"), outcome  # never "data:touched"
    wait_for_line_in(net, f"-> {v4}:80: 0 bytes up, 0 bytes down, ")
    wait_for_line_in(net, f"denied: {reason}")


def test_client_outside_relay_clients(net: Net) -> None:
    assert net.probe(SERVER_V6, 80, "2001:db8:1::2") in ("eof", "reset")
    wait_for_line_in(net, "denied: client not in relay.clients")


def test_well_known_prefix_refuses_non_global_ipv4(net: Net) -> None:
    # 198.51.100.2 is documentation space, not global: RFC 6052 section 3.1.
    assert net.probe("64:ff9b::c633:6402", 80) in ("eof", "reset")
    wait_for_line_in(net, "denied: non-global destination inside the well-known prefix")


def test_backend_killed_mid_stream(net: Net) -> None:
    backend = net.server.popen(
        sys.executable, str(PEERS), "echo-server", SERVER_V4, "7007", stdout=subprocess.PIPE
    )
    assert backend.stdout is not None and backend.stdout.readline().strip() == b"ready"
    client = net.client.popen(
        sys.executable, str(PEERS), "stream", SERVER_V6, "7007", stdout=subprocess.PIPE
    )
    assert client.stdout is not None
    assert client.stdout.readline().strip() == b"streaming"
    os.killpg(backend.pid, signal.SIGKILL)
    outcome = client.stdout.readline().decode().strip()
    client.wait(10)
    # The kernel resets the dead backend's connection; the relay passes that on.
    assert outcome.startswith(("reset after", "eof after")), outcome
    assert float(outcome.split()[-1].rstrip("s")) < 3.0, outcome
    wait_for_line_in(net, "-> 198.51.100.2:7007: ")


def test_per_client_limit(net: Net) -> None:
    config = net.tmp / "limited.toml"
    config.write_text(
        '[relay]\nmaps = ["[fd00:1::1]:9997=198.51.100.2:7"]\nmax_connections_per_client = 3\n'
    )
    output = net.tmp / "limited.out"
    with output.open("wb") as out:
        proc = net.relay.popen(
            sys.executable, "-m", "totd_faith", "relay", "-c", str(config), stdout=out, stderr=-2
        )
    try:
        wait_for_line(proc, output, "relay: ", 20)
        assert net.peer("hold", "fd00:1::1", "9997", "3") in (
            "held=3 extra=eof",
            "held=3 extra=reset",
        )
        wait_for_line(proc, output, "denied: max_connections_per_client", 5)
    finally:
        proc.terminate()
        proc.wait(10)


def wait_for_line_in(net: Net, needle: str, timeout: float = 5.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while needle not in net.relay_text():
        assert time.monotonic() < deadline, f"{needle!r} not logged:\n{net.relay_text()[-3000:]}"
        time.sleep(0.02)
