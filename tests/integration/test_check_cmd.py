"""``totd-faith check`` against a real NSD and real TCP listeners on ::1 (loopback only)."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.name
import pytest

from tests.support.ports import free_port
from totd_faith.endpoints import Endpoint
from totd_faith.tcping import ResolveError, resolve_aaaa

ORIGIN = "check.test."

#: 100 AAAA records do not fit the 1232-byte EDNS answer, so NSD truncates
#: and the query must be retried over TCP.  Only resolved, never connected to.
MANY = 100

ZONE = f"""$ORIGIN {ORIGIN}
$TTL 300
@       IN SOA ns hostmaster 1 3600 600 86400 300
@       IN NS  ns
ns      IN A   127.0.0.1
v6      IN AAAA ::1
alias   IN CNAME v6
v4only  IN A   127.0.0.1
""" + "".join(f"many IN AAAA 2001:db8::{i:x}\n" for i in range(1, MANY + 1))

ATTEMPT = re.compile(r"^\[::1\]:(\d+): seq=(\d+) (.*)$")


@pytest.fixture
def dns_server(nsd: Callable[[dict[str, str]], Endpoint]) -> Endpoint:
    return nsd({ORIGIN: ZONE})


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP listener on [::1] that accepts connections; yields its port."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.bind(("::1", 0))
    sock.listen(64)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "totd_faith", "check", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def attempts(stdout: str) -> list[tuple[int, int, str]]:
    found = []
    for line in stdout.splitlines():
        match = ATTEMPT.match(line)
        if match:
            found.append((int(match[1]), int(match[2]), match[3]))
    return found


def test_name_through_dns_connects(dns_server: Endpoint, listener: int) -> None:
    result = check(
        "v6.check.test", str(listener), "--server", str(dns_server), "-n", "3", "-i", "0"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("v6.check.test: ::1 (not inside a translation prefix")
    assert lines[0].endswith(f"from {dns_server}")
    found = attempts(result.stdout)
    assert [seq for _, seq, _ in found] == [1, 2, 3]
    assert all(port == listener for port, _, _ in found)
    assert all(re.fullmatch(r"connected time=\d+\.\d{3} ms", what) for _, _, what in found)
    assert re.fullmatch(
        rf"--- v6\.check\.test port {listener}: 3 attempts, 3 connected, 0 failed \(0% failed\), "
        r"time min/avg/max = [\d.]+/[\d.]+/[\d.]+ ms",
        lines[-1],
    )


def test_cname_chain_is_followed(dns_server: Endpoint, listener: int) -> None:
    result = check("alias.check.test", str(listener), "-s", str(dns_server), "-n", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("alias.check.test: ::1 ")


def test_closed_port_is_refused_and_exits_1(dns_server: Endpoint) -> None:
    port = free_port("::1")
    result = check("v6.check.test", str(port), "-s", str(dns_server), "-n", "2", "-i", "0")
    assert result.returncode == 1
    assert [what for _, _, what in attempts(result.stdout)] == ["refused", "refused"]
    assert "2 attempts, 0 connected, 2 failed (100% failed)" in result.stdout
    assert "min/avg/max" not in result.stdout


def test_full_backlog_times_out(listener_backlog_full: int) -> None:
    result = check("::1", str(listener_backlog_full), "-n", "2", "-i", "0", "-t", "0.3")
    assert result.returncode == 1
    assert [what for _, _, what in attempts(result.stdout)] == [
        "timeout (no answer within 0.3 s)"
    ] * 2


@pytest.fixture
def listener_backlog_full() -> Iterator[int]:
    """A listener that never accepts, its queue filled, so new SYNs are dropped."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.bind(("::1", 0))
    sock.listen(0)
    port = int(sock.getsockname()[1])
    held = []
    for _ in range(4):
        client = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        client.setblocking(False)
        try:
            client.connect(("::1", port))
        except BlockingIOError:
            pass
        held.append(client)
    try:
        yield port
    finally:
        for client in held:
            client.close()
        sock.close()


def test_nxdomain_is_a_clear_error(dns_server: Endpoint, listener: int) -> None:
    result = check("missing.check.test", str(listener), "-s", str(dns_server))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"Error: missing.check.test: no such name (NXDOMAIN from {dns_server})\n"
    )


def test_name_without_aaaa_is_a_clear_error(dns_server: Endpoint, listener: int) -> None:
    result = check("v4only.check.test", str(listener), "-s", str(dns_server))
    assert result.returncode == 1
    assert result.stderr.startswith("Error: v4only.check.test has no AAAA record")
    assert result.stderr.count("\n") == 1


def test_refused_query_is_a_clear_error(dns_server: Endpoint, listener: int) -> None:
    # NSD is not authoritative for other zones and refuses them.
    result = check("www.example.org", str(listener), "-s", str(dns_server))
    assert result.returncode == 1
    assert result.stderr == (
        f"Error: www.example.org: the DNS server {dns_server} answered REFUSED\n"
    )


def test_silent_server_is_a_clear_error(listener: int) -> None:
    silent = free_port("127.0.0.1")
    result = check("v6.check.test", str(listener), "-s", f"127.0.0.1:{silent}", "-t", "0.3")
    assert result.returncode == 1
    assert result.stderr == (
        f"Error: no answer from the DNS server 127.0.0.1:{silent} within 0.3 s "
        "(is totd-faith dns running there? see --server)\n"
    )


def test_server_defaults_to_the_configured_listener(
    dns_server: Endpoint, listener: int, tmp_path: Path
) -> None:
    conf = tmp_path / "totd-faith.toml"
    conf.write_text(f'[dns]\nlisten = ["{dns_server}"]\n')
    result = check("v6.check.test", str(listener), "-c", str(conf), "-n", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].endswith(f"from {dns_server}")


def test_ipv6_literal_needs_no_dns(listener: int) -> None:
    result = check("[::1]", str(listener), "-n", "1", "-s", f"127.0.0.1:{free_port()}")
    assert result.returncode == 0, result.stderr
    assert [what.split(" time=")[0] for _, _, what in attempts(result.stdout)] == ["connected"]


def test_link_local_literal_with_unknown_interface(listener: int) -> None:
    # Fails on the interface name before any packet is sent.
    result = check("fe80::1%no-such-if0", str(listener), "-n", "1")
    assert result.returncode == 1
    assert "seq=1 error (no interface named 'no-such-if0')" in result.stdout
    assert "1 attempt, 0 connected" in result.stdout


def test_scoped_loopback_literal_connects(listener: int) -> None:
    result = check("::1%lo", str(listener), "-n", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"[::1%lo]:{listener}: seq=1 connected time=" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["192.0.2.1", "80"], "is an IPv4 address"),
        (["::1", "0"], "is not a port number"),
        (["::1", "no-such-service"], "neither a port number nor a TCP service name"),
        (["::1", "80", "-n", "0"], "0 is not in the range"),
        (["::1", "80", "-n", "1001"], "1001 is not in the range"),
        (["::1", "80", "-t", "61"], "is not in the range"),
        (["::1", "80", "--server", "dns.example"], "is not an address"),
        (["::1"], "Missing argument 'PORT'"),
    ],
)
def test_usage_problems_exit_2_without_traceback(args: list[str], message: str) -> None:
    result = check(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_truncated_answer_is_retried_over_tcp(dns_server: Endpoint) -> None:
    addresses = resolve_aaaa(dns.name.from_text("many.check.test"), dns_server, 5.0)
    assert len(addresses) == MANY
    assert {str(a) for a in addresses} == {f"2001:db8::{i:x}" for i in range(1, MANY + 1)}


def test_resolve_error_type(dns_server: Endpoint) -> None:
    with pytest.raises(ResolveError, match="NXDOMAIN"):
        resolve_aaaa(dns.name.from_text("nope.check.test"), dns_server, 5.0)
