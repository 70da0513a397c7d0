"""Start a real Unbound (the Debian package) on a loopback port with a given configuration.

The DNS benchmark runs Unbound as the DNS64 peer in front of NSD; see
:func:`dns64_options` for that set-up.
"""

from __future__ import annotations

import ipaddress
import shutil
from collections.abc import Mapping
from pathlib import Path

from tests.support.dnsprobe import authoritative_answer, wait_dns
from tests.support.ports import free_port
from tests.support.process import Daemon, RunningServer
from totd_faith.endpoints import Endpoint


class UnboundServer(RunningServer):
    """A running Unbound."""


def _at(endpoint: Endpoint) -> str:
    return f"{endpoint.host}@{endpoint.port}"


def dns64_options(prefix: str, stubs: Mapping[str, Endpoint]) -> tuple[str, str]:
    """``(server options, clauses)`` for Unbound as a DNS64 in front of authoritative stubs.

    ``stubs`` maps zone names to the servers that hold them (usually one NSD).  Unbound's
    built-in local zones for the documentation and private reverse ranges (RFC 6303) are
    switched off for the stub zones, so reverse queries reach the stub as well.
    """
    server = [
        'module-config: "dns64 iterator"',
        f"dns64-prefix: {prefix}",
    ]
    clauses = []
    for name, endpoint in stubs.items():
        zone = name if name.endswith(".") else name + "."
        server.append(f'local-zone: "{zone}" nodefault')
        clauses += ["stub-zone:", f'  name: "{zone}"', f"  stub-addr: {_at(endpoint)}"]
    return "\n".join(server), "\n".join(clauses)


def unbound_config(
    workdir: Path, host: str, port: int, server_options: str = "", clauses: str = ""
) -> str:
    """unbound.conf: our base server options, then ``server_options``, then ``clauses``."""
    lines = [
        "server:",
        f"  interface: {host}@{port}",
        f"  port: {port}",
        '  username: ""',
        '  chroot: ""',
        f'  directory: "{workdir}"',
        f'  pidfile: "{workdir / "unbound.pid"}"',
        "  use-syslog: no",
        '  logfile: ""',
        "  verbosity: 1",
        "  num-threads: 1",
        "  do-daemonize: no",
        # The peers it talks to in tests live on loopback.
        "  do-not-query-localhost: no",
        "  unblock-lan-zones: yes",
        "  insecure-lan-zones: yes",
        "  access-control: 127.0.0.0/8 allow",
        "  access-control: ::1/128 allow",
        "  qname-minimisation: no",
    ]
    lines += ["  " + line.strip() for line in server_options.splitlines() if line.strip()]
    lines += ["remote-control:", "  control-enable: no"]
    if clauses:
        lines.append(clauses.rstrip("\n"))
    return "\n".join(lines) + "\n"


def start_unbound(
    workdir: Path,
    server_options: str = "",
    clauses: str = "",
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    timeout: float = 10.0,
) -> UnboundServer:
    """Write unbound.conf into ``workdir``, run ``unbound -d -c`` and wait until it answers.

    Readiness is a real query for ``localhost. A``, which Unbound answers from its
    built-in local zone without any upstream.
    """
    binary = shutil.which("unbound") or "/usr/sbin/unbound"
    if not Path(binary).exists():
        raise RuntimeError(
            "unbound is not installed: run scripts/setup --test (Debian package unbound)"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    port = port if port is not None else free_port(host)
    conf = workdir / "unbound.conf"
    conf.write_text(unbound_config(workdir, host, port, server_options, clauses))
    daemon = Daemon("unbound", [binary, "-d", "-c", str(conf)], workdir)
    endpoint = Endpoint(ipaddress.ip_address(host), port)
    try:
        wait_dns(
            endpoint, "localhost.", "A", check=authoritative_answer, timeout=timeout, daemon=daemon
        )
    except BaseException:
        daemon.stop()
        raise
    return UnboundServer(endpoint, workdir, daemon)
