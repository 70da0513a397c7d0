"""service.user through the real commands: ``dns``, ``dns --workers 2`` and ``serve`` drop
root once their listeners are bound, and keep answering with upstream sockets opened
afterwards, as the unprivileged user.  (``relay`` alone: test_relay_lifecycle.py.)

Root only: the switch needs it (CI runs as root); elsewhere these tests skip with that reason.
"""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
import pytest

from tests.integration.relay_process import Started, peer_argv, start
from tests.support.ports import free_port
from tests.support.process import Daemon
from totd_faith.endpoints import Endpoint, parse_endpoint

NSP = "2001:db8:64::/96"
ZONE = """\
$ORIGIN example.
$TTL 300
@       IN SOA ns.example. hostmaster.example. 1 3600 600 86400 120
@       IN NS  ns
ns      IN A   192.0.2.53
v4only  IN A   192.0.2.10
"""
NOBODY = pwd.getpwnam("nobody") if os.geteuid() == 0 else None


def _require_root() -> pwd.struct_passwd:
    if NOBODY is None:
        pytest.skip("needs root: service.user switches from root to nobody (CI runs as root)")
    return NOBODY


@pytest.fixture
def upstream(nsd: Callable[[dict[str, str]], Endpoint]) -> Endpoint:
    return nsd({"example.": ZONE})


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in reversed(started):
        daemon.stop()


def _status(pid: int) -> dict[str, list[str]]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: rest.split() for key, _, rest in (line.partition(":") for line in lines)}


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _socket_owners(pid: int) -> dict[int, int]:
    """Local port -> owner uid of every IP socket ``pid`` holds (the uid it was created by)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    owners = {}
    for table in ("udp", "udp6", "tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            # A TCP connection accepted from a listener shares its local port but is
            # made by accept(), as whoever the process is by then: only listening
            # TCP sockets (state 0A) count, or a connection still closing would
            # pass for the listener.
            if fields[9] in inodes and (table.startswith("udp") or fields[3] == "0A"):
                owners[int(fields[1].rsplit(":", 1)[1], 16)] = int(fields[7])
    return owners


def _start(
    tmp_path: Path, daemons: list[Daemon], command: str, toml: str, *args: str, drops: int = 1
) -> tuple[Endpoint, Daemon]:
    """Run ``totd-faith COMMAND`` with ``toml``; return once ``drops`` processes have dropped."""
    port = free_port()
    config = tmp_path / f"{command}.toml"
    config.write_text(toml)
    workdir = tmp_path / f"{command}{len(daemons)}"
    workdir.mkdir()
    argv = [sys.executable, "-m", "totd_faith", command, "-c", str(config)]
    daemon = Daemon(
        f"totd-faith-{command}", [*argv, "--listen", f"127.0.0.1:{port}", *args], workdir
    )
    daemons.append(daemon)
    deadline = time.monotonic() + 15
    while daemon.output.read_text(errors="replace").count("running as nobody") < drops:
        if not daemon.alive():
            raise daemon.fail("exited before dropping privileges")
        if time.monotonic() > deadline:
            raise daemon.fail(f"did not log 'running as nobody' {drops} time(s) within 15 s")
        time.sleep(0.02)
    return parse_endpoint(f"127.0.0.1:{port}"), daemon


def _assert_unprivileged(pid: int, nobody: pwd.struct_passwd) -> None:
    status = _status(pid)
    assert status["Uid"] == [str(nobody.pw_uid)] * 4, status["Uid"]
    assert status["Gid"] == [str(nobody.pw_gid)] * 4, status["Gid"]
    assert status["Groups"] == []
    assert int(status["CapEff"][0], 16) == 0
    assert int(status["CapPrm"][0], 16) == 0


def _ask_aaaa(endpoint: Endpoint, name: str, tcp: bool = False) -> set[str]:
    query = dns.message.make_query(name, dns.rdatatype.AAAA)
    send = dns.query.tcp if tcp else dns.query.udp
    response = send(query, str(endpoint.host), port=endpoint.port, timeout=5)
    return {rdata.to_text() for rrset in response.answer for rdata in rrset}


def _assert_answers_through_upstream(
    endpoint: Endpoint, pid: int, nobody: pwd.struct_passwd, *other_listeners: int
) -> None:
    # Not cached (nothing was asked before the drop): the proxy must ask NSD, from an
    # upstream socket it opens now, as nobody.
    assert _ask_aaaa(endpoint, "v4only.example.") == {"2001:db8:64::c000:20a"}
    assert _ask_aaaa(endpoint, "v4only.example.", tcp=True) == {"2001:db8:64::c000:20a"}
    # Only the listeners, bound before the drop, belong to root; every other socket the
    # process holds (upstream sockets) was opened as nobody.
    owners = _socket_owners(pid)
    listeners = {endpoint.port, *other_listeners}
    assert {port: owners.get(port) for port in listeners} == dict.fromkeys(listeners, 0), owners
    others = {port: uid for port, uid in owners.items() if port not in listeners}
    assert set(others.values()) <= {nobody.pw_uid}, owners


def test_dns_alone_drops_to_service_user(
    tmp_path: Path, daemons: list[Daemon], upstream: Endpoint
) -> None:
    nobody = _require_root()
    toml = f'prefixes = ["{NSP}"]\n[service]\nuser = "nobody"\n[dns]\nupstreams = ["{upstream}"]\n'
    endpoint, daemon = _start(tmp_path, daemons, "dns", toml)
    _assert_unprivileged(daemon.pid, nobody)
    _assert_answers_through_upstream(endpoint, daemon.pid, nobody)
    assert "dropped root: running as nobody:" in daemon.log_tail(100)
    daemon.stop()
    assert daemon.proc.returncode == 0, daemon.log_tail()


def test_dns_workers_drop_and_the_supervisor_stays_root(
    tmp_path: Path, daemons: list[Daemon], upstream: Endpoint
) -> None:
    nobody = _require_root()
    toml = f'prefixes = ["{NSP}"]\n[service]\nuser = "nobody"\n[dns]\nupstreams = ["{upstream}"]\n'
    endpoint, daemon = _start(tmp_path, daemons, "dns", toml, "--workers", "2", drops=2)
    workers = _children(daemon.pid)
    assert len(workers) == 2, workers
    for worker in workers:
        _assert_unprivileged(worker, nobody)
    # The supervisor keeps root to undo host set-up and signal workers (runtime.run_workers).
    assert _status(daemon.pid)["Uid"] == ["0"] * 4
    for _ in range(6):  # SO_REUSEPORT spreads these over both workers
        assert _ask_aaaa(endpoint, "v4only.example.") == {"2001:db8:64::c000:20a"}


def test_serve_drops_and_both_halves_keep_working(
    tmp_path: Path, daemons: list[Daemon], processes: list[Started], upstream: Endpoint
) -> None:
    nobody = _require_root()
    echo = free_port()
    processes.append(
        start(peer_argv("echo-server", "127.0.0.1", str(echo)), tmp_path / "echo.out", "ready")
    )
    relay_port = free_port("::1")
    toml = (
        f'prefixes = ["{NSP}"]\n[service]\nuser = "nobody"\n[dns]\nupstreams = ["{upstream}"]\n'
        f'[relay]\nports = []\nmaps = ["[::1]:{relay_port}=127.0.0.1:{echo}"]\n'
    )
    endpoint, daemon = _start(tmp_path, daemons, "serve", toml)
    _assert_unprivileged(daemon.pid, nobody)
    _assert_answers_through_upstream(endpoint, daemon.pid, nobody, relay_port)
    with socket.create_connection(("::1", relay_port), timeout=5) as sock:
        sock.sendall(b"as nobody\n")
        assert sock.recv(100) == b"as nobody\n"


def test_dns_unknown_user_is_one_line_error(tmp_path: Path) -> None:
    config = tmp_path / "dns.toml"
    config.write_text('[service]\nuser = "no-such-user-tf"\n')
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "totd_faith",
            "dns",
            "-c",
            str(config),
            "-l",
            f"127.0.0.1:{free_port()}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1, result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("Error: service.user: no such user 'no-such-user-tf'")
    ), result.stderr
    assert "Traceback" not in result.stderr


def test_dns_not_root_is_one_line_error(tmp_path: Path) -> None:
    """Not root and not already service.user: refused before binding, in one line.

    Not root, the real command runs as it is.  As root, the interpreter lives where nobody
    cannot reach it (/root/.pyenv), so the command runs in a process whose geteuid() says
    65534 -- the same check, reached through the real CLI.
    """
    config = tmp_path / "dns.toml"
    config.write_text('[service]\nuser = "root"\n')
    listen = f"127.0.0.1:{free_port()}"
    args = ["dns", "-c", str(config), "-l", listen]
    if os.geteuid() == 0:
        fake = (
            "import os, sys; os.geteuid = lambda: 65534; from totd_faith.cli import cli; "
            "cli(sys.argv[1:], prog_name='totd-faith')"
        )
        argv = [sys.executable, "-c", fake, *args]
        uid = 65534
    else:
        argv = [sys.executable, "-m", "totd_faith", *args]
        uid = os.geteuid()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: service.user = 'root' needs totd-faith to start as root (it runs as uid {uid}); "
        "start it as root or leave service.user empty"
    ), result.stderr
    assert "Traceback" not in result.stderr
