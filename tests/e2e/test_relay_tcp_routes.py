"""The relay and the AnyIP route, in a namespace: the warning with the exact command, and
``relay.manage_routes`` adding the route at start and removing it at stop."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.integration.relay_process import wait_for_line
from tests.netns import Namespace, Topology

PREFIX = "2001:db8:64::/96"


def _local_routes(ns: Namespace) -> str:
    return ns.run("ip", "-6", "route", "show", "table", "local", "exact", PREFIX).stdout


def _start(ns: Namespace, tmp: Path, toml: str) -> tuple[subprocess.Popen[Any], Path]:
    config = tmp / "relay.toml"
    config.write_text(toml)
    output = tmp / "relay.out"
    with output.open("wb") as out:
        proc = ns.popen(
            sys.executable, "-m", "totd_faith", "relay", "-c", str(config), stdout=out, stderr=-2
        )
    wait_for_line(proc, output, "relay: ", 20)
    return proc, output


def test_missing_anyip_route_is_reported_with_the_command(
    topology: Topology, tmp_path: Path
) -> None:
    relay = topology.namespace("relay")
    proc, output = _start(
        relay,
        tmp_path,
        f'prefixes = ["{PREFIX}"]\n[relay]\nports = [{{ port = 8080, protocols = ["tcp"] }}]\n',
    )
    text = wait_for_line(proc, output, "ip -6 route add local", 10)
    assert f"no AnyIP route for {PREFIX}" in text
    assert f"ip -6 route add local {PREFIX} dev lo" in text


def test_present_route_gives_no_warning(topology: Topology, tmp_path: Path) -> None:
    relay = topology.namespace("relay")
    relay.run("ip", "-6", "route", "add", "local", PREFIX, "dev", "lo")
    proc, output = _start(
        relay,
        tmp_path,
        f'prefixes = ["{PREFIX}"]\n[relay]\nports = [{{ port = 8080, protocols = ["tcp"] }}]\n',
    )
    proc.send_signal(signal.SIGTERM)
    proc.wait(10)
    assert "no AnyIP route" not in output.read_text()


def test_manage_routes_adds_and_removes_the_route(topology: Topology, tmp_path: Path) -> None:
    relay = topology.namespace("relay")
    assert _local_routes(relay) == ""
    proc, output = _start(
        relay,
        tmp_path,
        f'prefixes = ["{PREFIX}"]\n[relay]\nmanage_routes = true\n'
        f'ports = [{{ port = 8080, protocols = ["tcp"] }}]\n',
    )
    assert _local_routes(relay).startswith(f"local {PREFIX} dev lo")
    assert "no AnyIP route" not in output.read_text()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert _local_routes(relay) == ""


def test_manage_routes_follows_prefixes_across_sighup(topology: Topology, tmp_path: Path) -> None:
    relay = topology.namespace("relay")
    second = "2001:db8:65::/96"
    body = '[relay]\nmanage_routes = true\nports = [{ port = 8080, protocols = ["tcp"] }]\n'
    proc, output = _start(relay, tmp_path, f'prefixes = ["{PREFIX}"]\n{body}')
    (tmp_path / "relay.toml").write_text(f'prefixes = ["{PREFIX}", "{second}"]\n{body}')
    proc.send_signal(signal.SIGHUP)
    wait_for_line(proc, output, "SIGHUP: configuration reloaded", 10)

    def routes() -> str:
        return relay.run("ip", "-6", "route", "show", "table", "local", "type", "local").stdout

    assert f"local {PREFIX} dev lo" in routes()
    assert f"local {second} dev lo" in routes()
    (tmp_path / "relay.toml").write_text(f'prefixes = ["{second}"]\n{body}')
    proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while output.read_text().count("SIGHUP: configuration reloaded") < 2:
        assert time.monotonic() < deadline, output.read_text()
        time.sleep(0.02)
    assert f"local {PREFIX} dev lo" not in routes()
    assert f"local {second} dev lo" in routes()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert f"{second}" not in routes()
