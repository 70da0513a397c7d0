"""Start a real NSD (the Debian package) serving given zones on a loopback port.

Used by the ``nsd`` pytest fixture and by the benchmarks as the authoritative
server behind totd-faith or Unbound.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

from tests.support.dnsprobe import any_response, authoritative_answer, wait_dns
from tests.support.ports import free_port
from tests.support.process import Daemon, RunningServer
from totd_faith.endpoints import Endpoint


class NsdServer(RunningServer):
    """A running NSD."""


def zone_filename(origin: str) -> str:
    """The file name :func:`nsd_config` expects the zone of ``origin`` in (under workdir)."""
    name = origin.rstrip(".").lower() or "root"
    return re.sub(r"[^a-z0-9.-]", "_", name) + ".zone"


_zone_filename = zone_filename  # the benchmarks imported it under this name first


def _quote(value: Path | str) -> str:
    return '"' + str(value) + '"'


def nsd_config(
    zones: Mapping[str, str], workdir: Path, host: str, port: int, *, verbosity: int = 1
) -> str:
    """nsd.conf text for an unprivileged-path NSD run as the current user in ``workdir``."""
    lines = [
        "server:",
        f"  ip-address: {host}@{port}",
        f"  port: {port}",
        # Stay the invoking user (root in CI) and keep every file inside workdir.
        '  username: ""',
        '  chroot: ""',
        f"  zonesdir: {_quote(workdir)}",
        '  database: ""',
        f"  pidfile: {_quote(workdir / 'nsd.pid')}",
        f"  xfrdfile: {_quote(workdir / 'xfrd.state')}",
        f"  xfrdir: {_quote(workdir)}",
        f"  zonelistfile: {_quote(workdir / 'zone.list')}",
        f"  logfile: {_quote(workdir / 'nsd.log')}",
        f"  verbosity: {verbosity}",
        "  server-count: 1",
        "  hide-version: yes",
        "  refuse-any: no",
        # Debian's NSD rate-limits responses per source block by default; tests and
        # benchmarks send bursts from one address.
        "  rrl-ratelimit: 0",
        "remote-control:",
        "  control-enable: no",
    ]
    for origin in zones:
        lines += ["zone:", f"  name: {_quote(origin)}", f"  zonefile: {zone_filename(origin)}"]
    return "\n".join(lines) + "\n"


def start_nsd(
    zones: Mapping[str, str],
    workdir: Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    timeout: float = 10.0,
) -> NsdServer:
    """Write the zones and an nsd.conf into ``workdir``, start NSD and wait until it answers.

    ``zones`` maps each origin (``"example."``) to its master-file text.  Readiness is a
    real query: the SOA of every zone must come back NOERROR, so a zone NSD refused to load
    fails here with NSD's own log in the error.
    """
    binary = shutil.which("nsd") or "/usr/sbin/nsd"
    if not Path(binary).exists():
        raise RuntimeError("nsd is not installed: run scripts/setup --test (Debian package nsd)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = port if port is not None else free_port(host)
    for origin, text in zones.items():
        (workdir / zone_filename(origin)).write_text(text)
    conf = workdir / "nsd.conf"
    conf.write_text(nsd_config(zones, workdir, host, port))
    daemon = Daemon("nsd", [binary, "-d", "-c", str(conf)], workdir, logs=[workdir / "nsd.log"])
    endpoint = Endpoint(ipaddress.ip_address(host), port)
    try:
        if zones:
            for origin in zones:
                wait_dns(
                    endpoint,
                    origin,
                    "SOA",
                    check=authoritative_answer,
                    timeout=timeout,
                    daemon=daemon,
                )
        else:
            wait_dns(endpoint, ".", "SOA", check=any_response, timeout=timeout, daemon=daemon)
    except BaseException:
        daemon.stop()
        raise
    return NsdServer(endpoint, workdir, daemon)
