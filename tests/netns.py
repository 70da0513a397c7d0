"""Network namespaces for end-to-end tests: hosts, veth links, processes, cleanup.

    with Topology() as topo:
        client = topo.namespace("client")
        server = topo.namespace("server")
        topo.link(client, "eth0", server, "eth0")
        client.add_address("eth0", "fd00:1::1/64")
        server.add_address("eth0", "fd00:1::2/64")
        proc = server.popen("socat", "TCP6-LISTEN:80,fork", "SYSTEM:echo hi")
        wait_tcp(client, "fd00:1::2", 80)
        client.run("curl", "-s", "http://[fd00:1::2]/")

Everything is removed on leaving the ``with`` block, also when the test fails: the
processes started with :meth:`Namespace.popen` are killed, then anything else still
running in a namespace, then the namespaces (which takes their interfaces with them).

Rules (notes/HELPERS.md): inside namespaces use only 192.0.2.0/24, 198.51.100.0/24,
203.0.113.0/24, 2001:db8::/32 and fd00::/8.  Namespace names are ``tf-<random>-<role>``
so parallel runs never collide.  Needs root and iproute2.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

#: The only networks tests may use inside namespaces.
ALLOWED_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "fd00::/8")
)

_COMMAND_TIMEOUT = 30.0


def _check_allowed(cidr: str) -> None:
    address = ipaddress.ip_interface(cidr).ip
    if not any(address in network for network in ALLOWED_NETWORKS):
        raise ValueError(
            f"{cidr}: tests may only use 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, "
            "2001:db8::/32 and fd00::/8 inside namespaces"
        )


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", *args], check=check, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT
    )


class NamespaceCommandError(subprocess.CalledProcessError, RuntimeError):
    """A command run with :meth:`Namespace.run` failed; the message shows its output."""

    def __init__(self, namespace: str, result: subprocess.CompletedProcess[str]) -> None:
        super().__init__(result.returncode, result.args, result.stdout, result.stderr)
        self.namespace = namespace

    def __str__(self) -> str:
        command = " ".join(str(a) for a in self.cmd[4:])  # without "ip netns exec NAME"
        return (
            f"in {self.namespace}: {command} exited with {self.returncode}\n"
            f"stdout: {self.stdout}\nstderr: {self.stderr}"
        )


class Namespace:
    """One network namespace (a 'host'); created by :meth:`Topology.namespace`."""

    def __init__(self, name: str, role: str) -> None:
        self.name = name
        self.role = role
        self.processes: list[subprocess.Popen[Any]] = []

    def __repr__(self) -> str:
        return f"Namespace({self.name!r})"

    def argv(self, *args: str) -> list[str]:
        """The command line that runs ``args`` inside this namespace."""
        return ["ip", "netns", "exec", self.name, *args]

    def run(
        self, *args: str, check: bool = True, timeout: float = _COMMAND_TIMEOUT, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run a command to completion in the namespace; output is captured as text.

        With ``check`` a failure raises :class:`NamespaceCommandError` (a CalledProcessError)
        whose message includes the command's output.
        """
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        result: subprocess.CompletedProcess[str] = subprocess.run(
            self.argv(*args), check=False, timeout=timeout, **kw
        )
        if check and result.returncode != 0:
            raise NamespaceCommandError(self.name, result)
        return result

    def popen(self, *args: str, **kw: Any) -> subprocess.Popen[Any]:
        """Start a long-running command in the namespace; it is killed at cleanup.

        The child gets its own process group so that its workers are killed with it.
        """
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("start_new_session", True)
        proc: subprocess.Popen[Any] = subprocess.Popen(self.argv(*args), **kw)
        self.processes.append(proc)
        return proc

    def add_address(self, ifname: str, cidr: str) -> None:
        """Add an address; IPv6 ones skip duplicate address detection so they work at once."""
        _check_allowed(cidr)
        extra = ["nodad"] if ipaddress.ip_interface(cidr).version == 6 else []
        self.run("ip", "address", "add", cidr, "dev", ifname, *extra)

    def add_route(self, destination: str, *args: str) -> None:
        """``ip route add DESTINATION ARGS...`` (the family follows the destination)."""
        family = "-6" if ":" in destination else "-4"
        self.run("ip", family, "route", "add", destination, *args)

    def sysctl(self, key: str, value: str | int) -> None:
        """Set a (per-namespace) sysctl such as ``net.ipv6.conf.all.forwarding``."""
        path = "/proc/sys/" + key.replace(".", "/")
        self.run("sh", "-c", f'echo {value} > "$1"', "sh", path)

    def enable_forwarding(self) -> None:
        """Make this namespace a router for IPv4 and IPv6."""
        self.sysctl("net.ipv4.ip_forward", 1)
        self.sysctl("net.ipv6.conf.all.forwarding", 1)

    def stop_processes(self, timeout: float = 3.0) -> None:
        """Terminate every process started with :meth:`popen`, then kill stragglers."""
        for proc in self.processes:
            if proc.poll() is None:
                _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.processes:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(timeout)
            _signal_group(proc, signal.SIGKILL)  # workers of a leader that already exited
        self.processes.clear()
        # Anything else still inside (started with run(..., check=False) in the background,
        # or forked by a daemon into another group) must not outlive the namespace.
        pids = _ip("netns", "pids", self.name, check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


def _signal_group(proc: subprocess.Popen[Any], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class Topology:
    """A set of namespaces and veth links, all removed on exit (context manager)."""

    def __init__(self) -> None:
        self.tag = "tf-" + secrets.token_hex(3)
        self.namespaces: list[Namespace] = []

    def namespace(self, role: str) -> Namespace:
        """Create the namespace ``tf-<random>-<role>`` with loopback up and IPv6 enabled.

        DAD is off (``accept_dad=0``) so addresses are usable as soon as they are added.
        """
        ns = Namespace(f"{self.tag}-{role}", role)
        _ip("netns", "add", ns.name)
        self.namespaces.append(ns)
        for key, value in (
            ("net.ipv6.conf.all.disable_ipv6", 0),
            ("net.ipv6.conf.default.disable_ipv6", 0),
            ("net.ipv6.conf.all.accept_dad", 0),
            ("net.ipv6.conf.default.accept_dad", 0),
        ):
            ns.sysctl(key, value)
        ns.run("ip", "link", "set", "lo", "up")
        return ns

    def link(self, a: Namespace, a_if: str, b: Namespace, b_if: str) -> None:
        """A veth pair: ``a_if`` in ``a`` and ``b_if`` in ``b``, both up."""
        _ip(
            "-n", a.name, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b.name
        )
        for ns, ifname in ((a, a_if), (b, b_if)):
            # Interfaces created before the default sysctl took effect keep DAD; turn it off.
            ns.sysctl(f"net.ipv6.conf.{ifname}.accept_dad", 0)
            ns.run("ip", "link", "set", ifname, "up")

    def close(self) -> None:
        """Kill every process in every namespace, then delete the namespaces."""
        errors = []
        for ns in reversed(self.namespaces):
            try:
                ns.stop_processes()
            except Exception as exc:  # keep cleaning up the rest
                errors.append(f"{ns.name}: {exc}")
            result = _ip("netns", "del", ns.name, check=False)
            if result.returncode != 0 and Path("/run/netns", ns.name).exists():
                errors.append(f"{ns.name}: ip netns del: {result.stderr.strip()}")
        self.namespaces.clear()
        if errors:
            raise RuntimeError("namespace cleanup failed: " + "; ".join(errors))

    def __enter__(self) -> Topology:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# -- readiness ------------------------------------------------------------------------------

_WAIT_TCP = textwrap.dedent(
    """
    import socket, sys, time
    host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            sys.exit(0)
        except OSError as exc:
            last = exc
            time.sleep(0.02)
    sys.exit(f"nothing accepted TCP on {host} port {port} within {timeout}s ({last})")
    """
)

_WAIT_DNS = textwrap.dedent(
    """
    import sys, time
    import dns.exception, dns.message, dns.query
    host, port, qname, rdtype, timeout = sys.argv[1:6]
    port, timeout = int(port), float(timeout)
    deadline = time.monotonic() + timeout
    query = dns.message.make_query(qname, rdtype)
    last = None
    while time.monotonic() < deadline:
        try:
            dns.query.udp(query, host, port=port, timeout=0.25)
            sys.exit(0)
        except (dns.exception.DNSException, OSError) as exc:
            last = exc
            time.sleep(0.02)
    sys.exit(f"no DNS answer over UDP from {host} port {port} within {timeout}s ({last!r})")
    """
)


def _wait(ns: Namespace | None, script: str, args: list[str], timeout: float) -> None:
    argv = [sys.executable, "-c", script, *args]
    if ns is not None:
        argv = ns.argv(*argv)
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 10)
    if result.returncode != 0:
        where = f" in {ns.name}" if ns is not None else ""
        raise TimeoutError(result.stderr.strip().splitlines()[-1] + where)


def wait_tcp(ns: Namespace | None, host: str, port: int, timeout: float = 10.0) -> None:
    """Return once a TCP connect from ``ns`` (None: this namespace) to host:port succeeds."""
    _wait(ns, _WAIT_TCP, [host, str(port), str(timeout)], timeout)


def wait_udp_dns(
    ns: Namespace | None,
    host: str,
    port: int,
    qname: str = ".",
    rdtype: str = "SOA",
    timeout: float = 10.0,
) -> None:
    """Return once a DNS query over UDP from ``ns`` gets any response (any rcode)."""
    _wait(ns, _WAIT_DNS, [host, str(port), qname, rdtype, str(timeout)], timeout)


# -- availability -----------------------------------------------------------------------------

_netns_problem: str | None = None
_netns_probed = False


def netns_problem() -> str | None:
    """Why namespaces cannot be used here, or None when they can (probed once)."""
    global _netns_problem, _netns_probed
    if _netns_probed:
        return _netns_problem
    _netns_probed = True
    if os.geteuid() != 0:
        _netns_problem = "needs root to create network namespaces (run as root, as CI does)"
    elif shutil.which("ip") is None:
        _netns_problem = "needs iproute2's 'ip' command (scripts/setup installs it)"
    else:
        probe = "tf-probe-" + secrets.token_hex(3)
        result = _ip("netns", "add", probe, check=False)
        if result.returncode != 0:
            _netns_problem = f"'ip netns add' does not work here: {result.stderr.strip()}"
        else:
            _ip("netns", "del", probe, check=False)
    return _netns_problem


def skip_unless_netns() -> None:
    """pytest.skip the calling test with the reason when namespaces are unavailable."""
    problem = netns_problem()
    if problem is not None:
        pytest.skip(problem)
