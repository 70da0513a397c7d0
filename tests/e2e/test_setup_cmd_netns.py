"""``totd-faith setup --apply/--undo`` against the real kernel, inside throw-away namespaces.

Routes, rules and nft tables are per network namespace, so running the
command through ``ip netns exec`` changes nothing on the host running the
tests.  The state is read back with ``ip -6 route show table local``,
``ip -6 rule`` and ``nft list tables`` after every step.

    router                         host (runs setup)
    fd00:1::1/64 -- eth0 ---- eth0 -- fd00:1::2/64
    route 2001:db8:64::/96 via <host's fe80::> (what setup printed)
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e import relay_net
from tests.netns import Namespace, Topology, wait_tcp
from tests.support.cli import totd_faith_argv

PREFIX = "2001:db8:64::/96"
PREFIX2 = "2001:db8:1::/48"
NFT_TABLE = "table inet totd_faith"
FWMARK_RULE = "fwmark 0x7466 lookup 29798"


def setup_cmd(ns: Namespace, *args: str) -> subprocess.CompletedProcess[str]:
    return ns.run(*totd_faith_argv(), "setup", *args, check=False)


def local_routes(ns: Namespace) -> set[str]:
    """The AnyIP routes in the local table (``local PREFIX`` lines, kernel ones left out)."""
    out = ns.run("ip", "-6", "route", "show", "table", "local").stdout
    return {
        " ".join(line.split()[:2]) for line in out.splitlines() if line.startswith("local 2001:db8")
    }


def state(ns: Namespace) -> dict[str, object]:
    return {
        "routes": local_routes(ns),
        "rule": FWMARK_RULE in ns.run("ip", "-6", "rule").stdout,
        "nft": NFT_TABLE in ns.run("nft", "list", "tables").stdout,
        # ip exits 2 ("FIB table does not exist") when the table is empty: only stdout counts.
        "table_29798": ns.run(
            "ip", "-6", "route", "show", "table", "29798", check=False
        ).stdout.strip(),
    }


NOTHING = {"routes": set(), "rule": False, "nft": False, "table_29798": ""}


def test_prefix_mode_apply_twice_then_undo(topology: Topology) -> None:
    ns = topology.namespace("host")
    assert state(ns) == NOTHING
    args = ("--prefix", PREFIX, "--prefix", PREFIX2)

    first = setup_cmd(ns, *args, "--apply")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[:2] == [
        f"applied: deliver every address of {PREFIX} locally (AnyIP route)",
        f"applied: deliver every address of {PREFIX2} locally (AnyIP route)",
    ]
    applied = {"routes": {f"local {PREFIX}", f"local {PREFIX2}"}}
    assert state(ns) == {**NOTHING, **applied}

    second = setup_cmd(ns, *args, "--apply")
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[:2] == [
        f"already in place: deliver every address of {PREFIX} locally (AnyIP route)",
        f"already in place: deliver every address of {PREFIX2} locally (AnyIP route)",
    ]
    assert state(ns) == {**NOTHING, **applied}

    undo = setup_cmd(ns, *args, "--undo")
    assert undo.returncode == 0, undo.stderr
    assert undo.stdout.splitlines() == [
        f"removed: deliver every address of {PREFIX2} locally (AnyIP route)",
        f"removed: deliver every address of {PREFIX} locally (AnyIP route)",
    ]
    assert state(ns) == NOTHING

    again = setup_cmd(ns, *args, "--undo")
    assert again.returncode == 0, again.stderr
    assert all(line.startswith("not present: ") for line in again.stdout.splitlines())
    assert state(ns) == NOTHING


def test_all_ports_apply_twice_then_undo(topology: Topology) -> None:
    ns = topology.namespace("host")
    args = ("--prefix", PREFIX, "--all-ports")

    first = setup_cmd(ns, *args, "--apply")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.split("\n\n")[0].splitlines()
    assert len(lines) == 4 and all(line.startswith("applied: ") for line in lines), lines
    applied = state(ns)
    assert applied == {
        "routes": {f"local {PREFIX}"},
        "rule": True,
        "nft": True,
        "table_29798": applied["table_29798"],
    }
    assert str(applied["table_29798"]).startswith("local default dev lo")
    table = ns.run("nft", "list", "table", "inet", "totd_faith").stdout
    assert "tproxy ip6 to :64646" in table
    assert f"ip6 daddr {PREFIX}" in table or f"ip6 daddr {{ {PREFIX} }}" in table

    second = setup_cmd(ns, *args, "--apply")
    assert second.returncode == 0, second.stderr
    lines = second.stdout.split("\n\n")[0].splitlines()
    assert len(lines) == 4 and all(line.startswith("already in place: ") for line in lines)
    assert state(ns) == applied

    undo = setup_cmd(ns, *args, "--undo")
    assert undo.returncode == 0, undo.stderr
    assert [line.split(":")[0] for line in undo.stdout.splitlines()] == ["removed"] * 4
    assert state(ns) == NOTHING
    assert ns.run("nft", "list", "ruleset").stdout.strip() == ""


def test_tproxy_port_comes_from_the_config(topology: Topology, tmp_path: Path) -> None:
    ns = topology.namespace("host")
    conf = tmp_path / "totd-faith.toml"  # ip netns exec shares the file system
    conf.write_text(f'prefixes = ["{PREFIX}"]\n[relay]\ntproxy_port = 5999\n', "utf-8")
    out = setup_cmd(ns, "-c", str(conf), "--all-ports", "--apply")
    assert out.returncode == 0, out.stderr
    assert "tproxy ip6 to :5999" in ns.run("nft", "list", "table", "inet", "totd_faith").stdout
    assert state(ns)["routes"] == {f"local {PREFIX}"}
    assert setup_cmd(ns, "-c", str(conf), "--all-ports", "--undo").returncode == 0
    assert state(ns) == NOTHING


def test_a_route_added_by_hand_is_reported_already_in_place(topology: Topology) -> None:
    ns = topology.namespace("host")
    ns.run("ip", "-6", "route", "add", "local", PREFIX, "dev", "lo")
    out = setup_cmd(ns, "--prefix", PREFIX, "--apply")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"already in place: deliver every address of {PREFIX}")
    assert state(ns)["routes"] == {f"local {PREFIX}"}


def test_without_net_admin_apply_is_a_one_line_error_and_changes_nothing(
    topology: Topology,
) -> None:
    ns = topology.namespace("host")
    drop = ("setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin")
    for action in ("--apply", "--undo"):
        out = ns.run(*drop, *totd_faith_argv(), "setup", "--prefix", PREFIX, action, check=False)
        assert out.returncode == 1, out
        assert out.stdout == ""
        lines = out.stderr.splitlines()
        assert len(lines) == 1 and "needs root or CAP_NET_ADMIN" in lines[0], out.stderr
        assert state(ns) == NOTHING
    # Printing needs no privilege.
    printed = ns.run(*drop, *totd_faith_argv(), "setup", "--prefix", PREFIX, check=False)
    assert printed.returncode == 0, printed.stderr
    assert f"ip -6 route add local {PREFIX} dev lo" in printed.stdout


def _link_local(ns: Namespace, ifname: str, timeout: float = 5.0) -> str:
    """The kernel's fe80:: address on ``ifname`` once it is there (bounded poll)."""
    deadline = time.monotonic() + timeout
    while True:
        out = ns.run("ip", "-6", "-o", "addr", "show", "dev", ifname, "scope", "link").stdout
        found = re.search(r"inet6 (fe80::[0-9a-f:]+)/64", out)
        if found:
            return found.group(1)
        if time.monotonic() > deadline:
            raise TimeoutError(f"no link-local address on {ifname} in {ns.name}: {out!r}")
        time.sleep(0.05)


def _ping(ns: Namespace, address: str) -> bool:
    return ns.run("ping", "-6", "-n", "-c", "1", "-W", "2", address, check=False).returncode == 0


def test_router_route_from_printed_command_reaches_the_prefix(topology: Topology) -> None:
    """--uplink finds the host's fe80:: address; the router runs the printed line verbatim."""
    router = topology.namespace("router")
    host = topology.namespace("host")
    topology.link(router, "eth0", host, "eth0")
    router.add_address("eth0", "fd00:1::1/64")
    host.add_address("eth0", "fd00:1::2/64")
    host_ll = _link_local(host, "eth0")

    printed = setup_cmd(host, "--prefix", PREFIX, "--uplink", "eth0", "--router-interface", "eth0")
    assert printed.returncode == 0, printed.stderr
    assert f"# {host_ll} is this host's link-local address on eth0.\n" in printed.stdout
    commands = [
        line.removeprefix("#   ")
        for line in printed.stdout.splitlines()
        if line.startswith("#   ip -6 route add")
    ]
    assert commands == [f"ip -6 route add {PREFIX} via {host_ll} dev eth0"]
    router.run(*commands[0].split())

    assert not _ping(router, "2001:db8:64::c633:6402")  # routed to the host, not yet local there
    apply = setup_cmd(
        host, "--prefix", PREFIX, "--uplink", "eth0", "--router-interface", "eth0", "--apply"
    )
    assert apply.returncode == 0, apply.stderr
    assert commands[0] in apply.stdout  # --apply repeats what the router needs
    assert _ping(router, "2001:db8:64::c633:6402")  # AnyIP: the host answers for the prefix
    assert setup_cmd(host, "--prefix", PREFIX, "--undo").returncode == 0
    assert not _ping(router, "2001:db8:64::c633:6402")


def test_a_failing_step_undoes_the_earlier_ones(topology: Topology) -> None:
    """The second prefix cannot get its route (a different route is in the way): the first
    prefix's route, applied a moment before, is removed again and the error is one line."""
    ns = topology.namespace("host")
    ns.run("ip", "-6", "route", "add", "unreachable", PREFIX2, "table", "local")
    out = setup_cmd(ns, "--prefix", PREFIX, "--prefix", PREFIX2, "--apply")
    assert out.returncode == 1, out
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"Error: could not deliver every address of {PREFIX2} locally")
    assert "File exists" in lines[0] and "undone" in lines[0]
    assert state(ns) == NOTHING
    assert f"unreachable {PREFIX2}" in ns.run("ip", "-6", "route", "show", "table", "local").stdout


# -- with the real relay: what setup applied is what the relay needs, and the relay leaves it --

_TCP_ECHO_CHECK = (
    "import socket, sys\n"
    "s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)\n"
    "s.sendall(b'through the relay')\n"
    "s.shutdown(socket.SHUT_WR)\n"
    "got = b''\n"
    "while chunk := s.recv(4096):\n"
    "    got += chunk\n"
    "print(got.decode())\n"
)


@pytest.mark.parametrize("mode", ["prefix", "all-ports"])
def test_relay_works_on_what_setup_applied_and_leaves_it(
    topology: Topology, tmp_path: Path, mode: str
) -> None:
    hosts = relay_net.build(topology)
    relay_net.start_tcp_echo(hosts.server, 8080)
    wait_tcp(hosts.server, relay_net.SERVER_V4, 8080)
    relay_conf = "all_ports = true" if mode == "all-ports" else "ports = [8080]"
    config = f'prefixes = ["{relay_net.PREFIX}"]\n[relay]\n{relay_conf}\n'
    conf = tmp_path / "setup.toml"
    conf.write_text(config)

    applied = setup_cmd(hosts.relay, "-c", str(conf), "--apply")
    assert applied.returncode == 0, applied.stderr
    before = state(hosts.relay)
    assert before["routes"] == {f"local {relay_net.PREFIX}"}
    assert before["nft"] == before["rule"] == (mode == "all-ports")

    relay = relay_net.Relay(hosts.relay, tmp_path, config)
    wait_tcp(hosts.client, relay_net.SERVER_V6, 8080, timeout=15.0)
    out = hosts.client.run(sys.executable, "-c", _TCP_ECHO_CHECK, relay_net.SERVER_V6, "8080")
    assert out.stdout.strip() == "through the relay", relay.output()
    # The AnyIP route makes the relay host answer pings for the prefix in both modes.
    assert _ping(hosts.client, relay_net.SERVER_V6)
    assert relay.terminate() == 0, relay.output()

    # The relay found the set-up in place, so it is not the relay's to remove.
    assert state(hosts.relay) == before, relay.output()
    undo = setup_cmd(hosts.relay, "-c", str(conf), "--undo")
    assert undo.returncode == 0, undo.stderr
    assert state(hosts.relay) == NOTHING


def test_printed_script_does_what_apply_does(topology: Topology) -> None:
    """`setup | sh` and `setup --apply` are interchangeable: after the script, --apply finds
    every step in place, and --undo removes what the script added."""
    ns = topology.namespace("host")
    args = ("--prefix", PREFIX, "--prefix", PREFIX2, "--all-ports")
    script = setup_cmd(ns, *args)
    assert script.returncode == 0, script.stderr
    for _ in range(2):  # the script is idempotent too
        ns.run("sh", "-c", script.stdout)
    after_script = state(ns)
    assert after_script["routes"] == {f"local {PREFIX}", f"local {PREFIX2}"}
    assert after_script["nft"] and after_script["rule"] and after_script["table_29798"]
    apply = setup_cmd(ns, *args, "--apply")
    lines = apply.stdout.split("\n\n")[0].splitlines()
    assert len(lines) == 5 and all(line.startswith("already in place: ") for line in lines)
    assert setup_cmd(ns, *args, "--undo").returncode == 0
    assert state(ns) == NOTHING
