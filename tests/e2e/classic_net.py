"""The classic totd + faithd site in network namespaces: hosts, daemons and client probes.

    client (IPv6 only)     router (IPv6)           host (dual stack)          server (IPv4 only)
    fd00:1::2 -- eth0 -- eth0 fd00:1::1
                              eth1 fd00:2::1 -- eth0 fd00:2::2
                                                     totd-faith serve
                                                     DNS [fd00:2::2]:53
                                                     eth1 198.51.100.1 -- eth0 198.51.100.10
                                                                               nginx :80 :8080
                                                                               echo :7 tcp+udp
                                                                               NSD :53

The router routes 2001:db8:64::/96 to the host's link-local address, with the line
``totd-faith setup --uplink eth0 --router-interface eth1`` printed; the host delivers the
prefix locally (AnyIP route from ``setup --apply``).  The client's resolv.conf names
serve, so curl resolves ``www.example.test`` through DNS64 like a real IPv6-only host.
The server has no IPv6 at all: nothing reaches it except through the relay.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.integration.relay_process import peer_argv
from tests.netns import Namespace, Topology
from tests.support.cli import totd_faith_argv
from tests.support.nginx import nginx_conf
from tests.support.nsd import nsd_config

PREFIX = "2001:db8:64::/96"
CLIENT_V6 = "fd00:1::2"
ROUTER_CLIENT_SIDE = "fd00:1::1"
ROUTER_HOST_SIDE = "fd00:2::1"
HOST_V6 = "fd00:2::2"
HOST_V4 = "198.51.100.1"
SERVER_V4 = "198.51.100.10"
DNS_SERVER = f"[{HOST_V6}]:53"
WWW = "www.example.test"
FILES = "files.example.test"  # a CNAME to www: the chain is kept and followed
#: Not in the zone; the static hosts file added by a reload names it.
LEGACY = "cvsup.example.test"
PAGE = "hello from the IPv4-only server\n"
BIG_SIZE = 8 * 1024 * 1024


def embed(v4: str) -> str:
    """``2001:db8:64::a.b.c.d`` in canonical text (RFC 6052 /96)."""
    base = int(ipaddress.IPv6Address(PREFIX.split("/")[0]))
    return str(ipaddress.IPv6Address(base | int(ipaddress.IPv4Address(v4))))


SERVER_V6 = embed(SERVER_V4)  # 2001:db8:64::c633:640a

ZONE = f"""\
$ORIGIN example.test.
$TTL 300
@      IN SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 300
@      IN NS  ns1
ns1    IN A   {SERVER_V4}
www    IN A   {SERVER_V4}
files  IN CNAME www
"""


def nginx_servers(tmp: Path | str, v4: str) -> str:
    return f"""    server {{
        listen {v4}:80;
        listen {v4}:8080;
        root {tmp}/www;
    }}
"""


def serve_config(
    *,
    ports: tuple[int | str, ...] = (80, 7),
    hosts_file: Path | None = None,
    manage_routes: bool = False,
    drain_timeout: float = 8.0,
    workers: int = 1,
    clients: tuple[str, ...] | None = None,
) -> str:
    """The TOML configuration the test writes for ``totd-faith serve``.

    A port is a number (TCP and UDP) or a TOML inline table such as
    ``'{ port = 80, protocols = ["tcp"] }'``.  ``clients`` replaces both access lists
    (dns.allow and relay.clients; default: the embedded local networks).
    """
    hosts = f'["{hosts_file}"]' if hosts_file is not None else "[]"
    acl = "" if clients is None else "[" + ", ".join(f'"{c}"' for c in clients) + "]"
    dns_acl = f"allow = {acl}" if acl else ""
    relay_acl = f"clients = {acl}" if acl else ""
    return textwrap.dedent(
        f"""\
        prefixes = ["{PREFIX}"]

        [dns]
        listen = ["{DNS_SERVER}"]
        upstreams = ["{SERVER_V4}:53"]
        hosts_files = {hosts}
        {dns_acl}

        [relay]
        ports = [{", ".join(map(str, ports))}]
        manage_routes = {"true" if manage_routes else "false"}
        {relay_acl}

        [service]
        drain_timeout = {drain_timeout}
        workers = {workers}
        """
    )


# -- waiting ---------------------------------------------------------------------------------


def poll(what: str, probe: Any, timeout: float, interval: float = 0.05) -> Any:
    """Call ``probe()`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s (last: {result!r})")
        time.sleep(interval)


# -- the hosts -------------------------------------------------------------------------------


@dataclass
class Site:
    client: Namespace
    router: Namespace
    host: Namespace
    server: Namespace
    tmp: Path
    big_sha256: str
    resolv_dir: Path


def link_local(ns: Namespace, ifname: str, timeout: float = 5.0) -> str:
    """The kernel's fe80:: address on ``ifname`` once it exists."""

    def find() -> str | None:
        out = ns.run("ip", "-6", "-o", "addr", "show", "dev", ifname, "scope", "link").stdout
        found = re.search(r"inet6 (fe80::[0-9a-f:]+)/64", out)
        return found.group(1) if found else None

    result: str = poll(f"link-local address on {ifname} in {ns.name}", find, timeout)
    return result


def build(topo: Topology, tmp: Path) -> Site:
    """Namespaces, links, addresses and routes (not yet the prefix route); daemons started."""
    client = topo.namespace("client")
    router = topo.namespace("router")
    host = topo.namespace("host")
    server = topo.namespace("server")
    topo.link(client, "eth0", router, "eth0")
    topo.link(router, "eth1", host, "eth0")
    topo.link(host, "eth1", server, "eth0")

    client.add_address("eth0", f"{CLIENT_V6}/64")
    client.run("ip", "-6", "route", "add", "default", "via", ROUTER_CLIENT_SIDE)
    router.add_address("eth0", f"{ROUTER_CLIENT_SIDE}/64")
    router.add_address("eth1", f"{ROUTER_HOST_SIDE}/64")
    router.enable_forwarding()
    host.add_address("eth0", f"{HOST_V6}/64")
    host.run("ip", "-6", "route", "add", "default", "via", ROUTER_HOST_SIDE)
    host.add_address("eth1", f"{HOST_V4}/24")
    server.add_address("eth0", f"{SERVER_V4}/24")
    server.sysctl("net.ipv6.conf.all.disable_ipv6", 1)  # IPv4 only: no way around the relay
    # Small socket buffers on the client and on the host's side of the relay keep the relay
    # copying for (nearly) the whole slow download, so a signal sent during it meets a
    # connection the relay is still working on (with default buffers the relay would be done
    # once 4 MB sat in its send buffer).  The tcp_* sysctls also govern TCP over IPv6.
    client.sysctl("net.ipv4.tcp_rmem", "4096 65536 131072")
    host.sysctl("net.ipv4.tcp_wmem", "4096 16384 262144")

    # The client's resolver is serve, as on a real IPv6-only host (ip netns exec bind-mounts
    # /etc/netns/NAME/resolv.conf over /etc/resolv.conf).
    resolv_dir = Path("/etc/netns") / client.name
    resolv_dir.mkdir(parents=True, exist_ok=True)
    (resolv_dir / "resolv.conf").write_text(f"nameserver {HOST_V6}\noptions timeout:2 attempts:2\n")

    try:
        big_sha256 = start_server_daemons(server, tmp)
    except BaseException:
        shutil.rmtree(resolv_dir, ignore_errors=True)
        raise
    return Site(client, router, host, server, tmp, big_sha256, resolv_dir)


def remove_resolv_conf(site: Site) -> None:
    shutil.rmtree(site.resolv_dir, ignore_errors=True)
    try:
        site.resolv_dir.parent.rmdir()  # /etc/netns, when no other namespace uses it
    except OSError:
        pass


def tcp_echo_argv(host: str, port: int) -> list[str]:
    """The TCP echo on the server: relay_peers.py's, one thread per connection.

    Not ``socat TCP-LISTEN PIPE``: socat echoes through a pipe of its own with
    blocking writes, so when the client reads more slowly than it sends (a busy
    machine), socat can block for good writing into that full pipe, which only
    socat itself drains.  The TCP echo test then stalled about once in 20 runs:
    socat stuck in pipe_write with 500 kB unread in its socket, the relay with
    nothing queued either way.  tests/integration/test_relay_echo_backend.py
    runs this argv over loopback with that traffic (it fails with socat's).
    """
    return peer_argv("echo-server", host, str(port))


def start_server_daemons(server: Namespace, tmp: Path) -> str:
    """nginx, TCP and UDP echo on port 7, NSD; returns the big file's SHA-256."""
    www = tmp / "www"
    www.mkdir()
    (www / "index.html").write_text(PAGE)
    big = os.urandom(BIG_SIZE)
    (www / "big.bin").write_bytes(big)
    conf = tmp / "nginx.conf"
    conf.write_text(
        nginx_conf(
            tmp,
            nginx_servers(tmp, SERVER_V4),
            extra_main="user root;\n",
            extra_http="    default_type application/octet-stream;\n",
        )
    )
    server.popen(
        "nginx", "-c", str(conf), "-p", str(tmp), "-e", str(tmp / "nginx-error.log"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    server.popen(*tcp_echo_argv(SERVER_V4, 7), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server.popen(
        "socat", "-T", "5", f"UDP4-RECVFROM:7,bind={SERVER_V4},fork", "PIPE",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    start_nsd_in(server, tmp / "nsd")
    for port in (80, 8080, 7):
        wait_tcp_local(server, SERVER_V4, port, tmp / "nginx-error.log")
    return hashlib.sha256(big).hexdigest()


def wait_tcp_local(ns: Namespace, host: str, port: int, log: Path, timeout: float = 10.0) -> None:
    def accepting() -> bool:
        script = "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 1)"
        return ns.run(sys.executable, "-c", script, host, str(port), check=False).returncode == 0

    try:
        poll(f"TCP {host}:{port} in {ns.name}", accepting, timeout)
    except TimeoutError as exc:
        text = log.read_text(errors="replace") if log.exists() else ""
        raise TimeoutError(f"{exc}\n{log.name}:\n{text}") from None


def start_nsd_in(server: Namespace, workdir: Path, timeout: float = 10.0) -> None:
    """NSD (tests/support/nsd.py's configuration) on the server's IPv4 address, port 53."""
    workdir.mkdir()
    (workdir / "example.test.zone").write_text(ZONE)
    conf = workdir / "nsd.conf"
    conf.write_text(nsd_config({"example.test.": ZONE}, workdir, SERVER_V4, 53))
    binary = shutil.which("nsd") or "/usr/sbin/nsd"
    with (workdir / "nsd.out").open("wb") as out:
        server.popen(binary, "-d", "-c", str(conf), stdout=out, stderr=subprocess.STDOUT)

    def answers() -> bool:
        status, answer = dig(server, "A", WWW, SERVER_V4)
        return status == "NOERROR" and SERVER_V4 in [data for _, _, data in answer]

    try:
        poll("NSD answering for example.test", answers, timeout)
    except TimeoutError as exc:
        logs = "\n".join(
            p.read_text(errors="replace") for p in (workdir / "nsd.out", workdir / "nsd.log")
            if p.exists()
        )  # fmt: skip
        raise TimeoutError(f"{exc}\n{logs}") from None


# -- host set-up -----------------------------------------------------------------------------

_ROUTER_LINE = re.compile(r"^#\s+(ip -6 route add (\S+) via (fe80::[0-9a-f:]+) dev (\S+))\s*$")


def setup_cmd(host: Namespace, *args: str) -> subprocess.CompletedProcess[str]:
    return host.run(*totd_faith_argv(), "setup", "--prefix", PREFIX, *args, check=False)


def router_commands(setup_output: str) -> list[str]:
    """The ``ip -6 route add PREFIX via fe80::... dev IFACE`` lines setup printed."""
    return [m.group(1) for line in setup_output.splitlines() if (m := _ROUTER_LINE.match(line))]


def anyip_routes(host: Namespace) -> list[str]:
    """The AnyIP routes for the prefix on the host (``local PREFIX dev lo ...`` lines)."""
    out = host.run("ip", "-6", "route", "show", "table", "local", "type", "local").stdout
    return [line.strip() for line in out.splitlines() if line.startswith(f"local {PREFIX} ")]


# -- DNS, HTTP, echo from a namespace --------------------------------------------------------


def dig(
    ns: Namespace, rdtype: str, name: str, server: str = HOST_V6
) -> tuple[str, list[tuple[str, str, str]]]:
    """``dig`` in ``ns``: the status and the answer records as (owner, type, data)."""
    result = ns.run(
        "dig", "+time=2", "+tries=1", "+nocookie", f"@{server}", rdtype, name, check=False
    )
    status = re.search(r"status: (\w+)", result.stdout)
    answer: list[tuple[str, str, str]] = []
    section = False
    for line in result.stdout.splitlines():
        if line.startswith(";; ANSWER SECTION"):
            section = True
        elif section and not line.strip():
            break
        elif section:
            fields = line.split()
            answer.append((fields[0], fields[3], fields[4]))
    return (status.group(1) if status else f"no answer: {result.stdout}{result.stderr}"), answer


_ECHO = textwrap.dedent(
    """
    import json, os, socket, sys, threading, time
    host, port = sys.argv[1], int(sys.argv[2])
    tcp_bytes, attempts = int(sys.argv[3]), int(sys.argv[4])
    sizes = [int(s) for s in sys.argv[5:]]
    out = {"tcp_ok": False, "udp": []}
    payload = os.urandom(tcp_bytes)
    got = bytearray()
    sent = []
    def send(s):
        try:
            s.sendall(payload)
            sent.append("all")
        except OSError as exc:
            sent.append(repr(exc))
    try:
        with socket.create_connection((host, port), timeout=10) as s:
            sender = threading.Thread(target=send, args=(s,))
            sender.start()
            while len(got) < len(payload):
                data = s.recv(65536)
                if not data:
                    break
                got += data
            sender.join()
    except OSError as exc:
        # Say how far it got instead of dying: the test shows it with serve's log.
        out["tcp_error"] = repr(exc)
    out["tcp_sent"] = sent
    out["tcp_ok"] = bytes(got) == payload
    out["tcp_received"] = len(got)
    u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    u.settimeout(1.0)
    for size in sizes:
        data = os.urandom(size)
        entry = {"size": size, "ok": False}
        for attempt in range(attempts):  # UDP: a datagram may be lost; resend it
            u.sendto(data, (host, port))
            try:
                reply, source = u.recvfrom(65535)
            except TimeoutError:
                continue
            entry.update(ok=reply == data, source=source[0], attempts=attempt + 1)
            break
        out["udp"].append(entry)
    print(json.dumps(out))
    """
)


def echo(
    ns: Namespace, host: str, port: int, tcp_bytes: int, *udp_sizes: int, attempts: int = 5
) -> dict[str, Any]:
    """Echo ``tcp_bytes`` over TCP and one datagram per size over UDP (each sent up to
    ``attempts`` times, 1 s apart, until it comes back); what came back."""
    result = ns.run(
        sys.executable, "-c", _ECHO, host, str(port), str(tcp_bytes), str(attempts),
        *map(str, udp_sizes), timeout=60,
    )  # fmt: skip
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


_HOLD = textwrap.dedent(
    """
    import socket, sys
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
    s.sendall(b"hold")
    got = b""
    while len(got) < 4:
        got += s.recv(4)
    print("connected", flush=True)
    try:
        data = s.recv(100)
        print("eof" if not data else "data", flush=True)
    except ConnectionResetError:
        print("reset", flush=True)
    except TimeoutError:
        print("timeout", flush=True)
    """
)


def hold_connection(ns: Namespace, host: str, port: int) -> subprocess.Popen[str]:
    """An echo connection kept open and idle; prints "connected", then how it ended."""
    proc = ns.popen(sys.executable, "-c", _HOLD, host, str(port), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "connected":
        raise AssertionError(f"could not hold a connection to [{host}]:{port}: {line!r}")
    return proc


def curl_argv(url: str, *extra: str) -> list[str]:
    return [
        "curl",
        "-sS",
        "-g",
        "--max-time",
        "30",
        "-w",
        "%{http_code} %{size_download}",
        *extra,
        url,
    ]


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- serve -----------------------------------------------------------------------------------


class Serve:
    """``totd-faith serve -c CONF`` in the host namespace; stdout and stderr in a file."""

    def __init__(
        self, host: Namespace, workdir: Path, config_text: str, name: str = "serve"
    ) -> None:
        self.host = host
        self.conf = workdir / f"{name}.toml"
        self.conf.write_text(config_text)
        self.log = workdir / f"{name}.log"
        with self.log.open("wb") as out:
            # ip netns exec execs the command: this PID is serve itself, for the signals.
            self.proc = host.popen(
                *totd_faith_argv(), "serve", "-c", str(self.conf),
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def context(self) -> str:
        """serve's own words, for assertion messages."""
        status = "running" if self.proc.poll() is None else f"exited {self.proc.returncode}"
        return f"\n--- serve ({status}) stderr ---\n{self.output()}"

    def wait_log(self, pattern: str, timeout: float = 15.0, start: int = 0) -> re.Match[str]:
        """Poll serve's log (from byte ``start``) until ``pattern`` matches a line."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.output()[start:], re.MULTILINE)
            if found:
                return found
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"serve never logged {pattern!r}" + self.context())
            time.sleep(0.05)

    def wait_ready(self, timeout: float = 20.0, *, relay: bool = True) -> None:
        """Wait for serve's start-up lines (with ``relay``: also the relay's)."""
        self.wait_log(r"serve: relay prefixes" if relay else r"serve: prefixes", timeout)

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def reload_rejected(self, config_text: str, timeout: float = 15.0) -> str:
        """Rewrite the configuration with an invalid one, SIGHUP; serve's complaint."""
        start = len(self.output())
        self.conf.write_text(config_text)
        self.signal(signal.SIGHUP)
        return self.wait_log(r"SIGHUP: new configuration rejected.*", timeout, start).group(0)

    def reload(self, config_text: str, timeout: float = 15.0) -> int:
        """Rewrite the configuration file, SIGHUP, wait for the reload to be logged.

        Returns the log offset just after the "reloaded" line.
        """
        start = len(self.output())
        self.conf.write_text(config_text)
        self.signal(signal.SIGHUP)
        done = self.wait_log(r"SIGHUP: configuration reloaded\n", timeout, start)
        after = self.output()[start:]
        assert "rejected" not in after and "could not adopt" not in after, after + self.context()
        return start + done.end()

    def terminate(self, timeout: float = 20.0) -> tuple[int, float]:
        """SIGTERM; the exit status and the seconds it took."""
        started = time.monotonic()
        self.signal(signal.SIGTERM)
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"serve still running {timeout} s after SIGTERM" + self.context()
            ) from None
        return status, time.monotonic() - started

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def start_serve(
    site: Site, config_text: str, name: str, timeout: float = 20.0, *, relay_ready: bool = True
) -> Serve:
    """serve started and reachable from the client: DNS through the router, relay on :80
    (unless ``relay_ready`` is false: then only DNS is waited for)."""
    serve = Serve(site.host, site.tmp, config_text, name)
    try:
        serve.wait_ready(timeout, relay=relay_ready)
        poll(
            "serve answering DNS for the client",
            lambda: dig(site.client, "AAAA", WWW)[0] == "NOERROR",
            timeout,
        )
        if relay_ready:
            wait_tcp_local(site.client, SERVER_V6, 80, serve.log, timeout)
    except BaseException:
        serve.stop()
        raise
    return serve


@dataclass
class RouterRoute:
    setup_output: str
    command: str
    host_link_local: str


def route_prefix_via_setup(site: Site) -> RouterRoute:
    """``setup --apply`` on the host; the router runs the route line it printed."""
    host_ll = link_local(site.host, "eth0")
    link_local(site.router, "eth1")
    applied = setup_cmd(site.host, "--uplink", "eth0", "--router-interface", "eth1", "--apply")
    if applied.returncode != 0:
        raise AssertionError(f"setup --apply failed: {applied.stdout}{applied.stderr}")
    commands = router_commands(applied.stdout)
    if len(commands) != 1:
        raise AssertionError(f"setup printed {len(commands)} router lines:\n{applied.stdout}")
    site.router.run(*commands[0].split())
    return RouterRoute(applied.stdout, commands[0], host_ll)
