"""The relay's three-host topology for end-to-end UDP and all-ports tests.

    client (IPv6 only)         relay (dual stack)              server (IPv4 only)
    fd00:1::1/64  ---- eth0 -- fd00:1::2/64
                               198.51.100.1/24 -- eth1 ---- 198.51.100.2/24
                                                            UDP echo, TCP echo

The client routes 2001:db8:64::/96 (the relay prefix) via the relay; the
server knows nothing about IPv6.  Helpers send UDP from the client and report
what came back and from which address, so tests can check the reply source.
"""

from __future__ import annotations

import ipaddress
import json
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.netns import Namespace, Topology

PREFIX = "2001:db8:64::/96"
SERVER_V4 = "198.51.100.2"
RELAY_V4 = "198.51.100.1"
RELAY_V6 = "fd00:1::2"
CLIENT_V6 = "fd00:1::1"


def embed(v4: str) -> str:
    """``2001:db8:64::a.b.c.d`` in canonical form (RFC 6052 /96)."""
    base = int(ipaddress.IPv6Address("2001:db8:64::"))
    return str(ipaddress.IPv6Address(base | int(ipaddress.IPv4Address(v4))))


SERVER_V6 = embed(SERVER_V4)  # 2001:db8:64::c633:6402

# A UDP echo on several ports (IPv4 only); each reply is the datagram itself.
_UDP_ECHO = textwrap.dedent(
    """
    import selectors, socket, sys
    sel = selectors.DefaultSelector()
    for port in sys.argv[2:]:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((sys.argv[1], int(port)))
        sel.register(s, selectors.EVENT_READ)
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            data, addr = key.fileobj.recvfrom(65535)
            key.fileobj.sendto(data, addr)
    """
)

# Send datagrams from one socket; print what came back and from where, as JSON.
_UDP_PROBE = textwrap.dedent(
    """
    import json, socket, sys
    host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    payloads = sys.argv[4:]
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    s.bind(("::", 0))
    out = {"local_port": s.getsockname()[1], "replies": []}
    for p in payloads:
        s.sendto(p.encode(), (host, port))
        try:
            data, src = s.recvfrom(65535)
            out["replies"].append({"data": data.decode(), "source": [src[0], src[1]]})
        except (TimeoutError, OSError) as exc:
            out["replies"].append({"error": type(exc).__name__})
    print(json.dumps(out))
    """
)


# N client sockets at once; every one must get its own payload back from the
# dialled address.  Lost datagrams are resent (UDP), at most 3 rounds.
_MANY = textwrap.dedent(
    """
    import json, selectors, socket, sys, time
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    socks = []
    for i in range(count):
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.bind(("::", 0))
        socks.append(s)
    waiting = {i: s for i, s in enumerate(socks)}
    wrong = []
    for _ in range(3):
        for i, s in waiting.items():
            s.sendto(str(i).encode(), (host, port))
        sel = selectors.DefaultSelector()
        for i, s in waiting.items():
            sel.register(s, selectors.EVENT_READ, i)
        deadline = time.monotonic() + 3
        while waiting and time.monotonic() < deadline:
            for key, _ in sel.select(0.2):
                data, src = key.fileobj.recvfrom(100)
                if data != str(key.data).encode() or src[:2] != (host, port):
                    wrong.append([key.data, data.decode(), src[0], src[1]])
                sel.unregister(key.fileobj)
                waiting.pop(key.data, None)
        sel.close()
        if not waiting:
            break
    print(json.dumps({"missing": sorted(waiting), "wrong": wrong}))
    """
)


def many_udp_sessions(ns: Namespace, host: str, port: int, count: int) -> dict[str, Any]:
    """``count`` client sockets each send their number and expect it back from host:port;
    returns ``{"missing": [...], "wrong": [...]}`` (both empty when all is well)."""
    result = ns.run(sys.executable, "-c", _MANY, host, str(port), str(count), timeout=60)
    report: dict[str, Any] = json.loads(result.stdout)
    return report


@dataclass
class Hosts:
    topo: Topology
    client: Namespace
    relay: Namespace
    server: Namespace


def build(topo: Topology) -> Hosts:
    client = topo.namespace("client")
    relay = topo.namespace("relay")
    server = topo.namespace("server")
    topo.link(client, "eth0", relay, "eth0")
    topo.link(relay, "eth1", server, "eth0")
    client.add_address("eth0", f"{CLIENT_V6}/64")
    relay.add_address("eth0", f"{RELAY_V6}/64")
    relay.add_address("eth1", f"{RELAY_V4}/24")
    server.add_address("eth0", f"{SERVER_V4}/24")
    client.add_route(PREFIX, "via", RELAY_V6)
    # IPv4-only server: no IPv6 at all, so nothing can bypass the relay.
    server.sysctl("net.ipv6.conf.all.disable_ipv6", 1)
    return Hosts(topo, client, relay, server)


def start_udp_echo(ns: Namespace, *ports: int, host: str = SERVER_V4) -> subprocess.Popen[str]:
    """A UDP echo on ``host`` for each port, returned once every port is bound."""
    proc = ns.popen(
        sys.executable, "-u", "-c", _UDP_ECHO, host, *map(str, ports),
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()  # printed after every port is bound: ready
    if line.strip() != "ready":
        raise RuntimeError(f"UDP echo did not start: {line!r}")
    return proc


def start_tcp_echo(server: Namespace, port: int) -> subprocess.Popen[str]:
    return server.popen(
        "socat", f"TCP4-LISTEN:{port},bind={SERVER_V4},fork,reuseaddr", "EXEC:cat",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def udp_probe(
    ns: Namespace, host: str, port: int, *payloads: str, timeout: float = 2.0
) -> dict[str, Any]:
    """Send ``payloads`` from one client socket in ``ns``; the replies and their sources."""
    result = ns.run(
        sys.executable, "-c", _UDP_PROBE, host, str(port), str(timeout), *payloads,
        timeout=timeout * len(payloads) + 20,
    )  # fmt: skip
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def wait_udp(ns: Namespace, host: str, port: int, timeout: float = 10.0) -> dict[str, Any]:
    """Poll until a datagram to host:port is answered (relay readiness); the last probe."""
    deadline = time.monotonic() + timeout
    while True:
        probe = udp_probe(ns, host, port, "ready?", timeout=0.3)
        if "data" in probe["replies"][0] or time.monotonic() > deadline:
            return probe


class Relay:
    """``totd-faith relay -c CONF [FLAGS]`` in the relay namespace, stderr in a file."""

    def __init__(
        self, ns: Namespace, workdir: Path, config_text: str, flags: Sequence[str] = ()
    ) -> None:
        self.conf = workdir / "relay.toml"
        self.conf.write_text(config_text)
        self.log = workdir / "relay.log"
        self._log_file = self.log.open("w")
        self.proc = ns.popen(
            "totd-faith", "relay", "-c", str(self.conf), *flags, stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_log(self, pattern: str, timeout: float = 10.0) -> str:
        """Poll the relay's log until a line matches the regular expression ``pattern``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output()
            if re.search(pattern, out, re.MULTILINE):
                return out
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"relay log never showed {pattern!r}:\n{self.output()}")

    def terminate(self, timeout: float = 15.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log_file.close()
