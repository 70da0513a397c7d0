"""The relay process over loopback: graceful stop (drain), privilege drop, UDP alongside TCP."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.integration.relay_process import Started, peer_argv, relay_argv, start


@pytest.fixture
def echo(tmp_path: Path, processes: list[Started]) -> int:
    port = free_port()
    processes.append(
        start(peer_argv("echo-server", "127.0.0.1", str(port)), tmp_path / "echo.out", "ready")
    )
    return port


def _echo(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        data = sock.recv(65536)
        if not data:
            break
        got += data
    return got


def _relay(tmp_path: Path, processes: list[Started], toml: str) -> Started:
    config = tmp_path / "relay.toml"
    config.write_text(toml)
    started = start(relay_argv(config), tmp_path / "relay.out", "relay: ")
    processes.append(started)
    return started


def test_sigterm_drains_established_connections_then_exits_0(
    tmp_path: Path, processes: list[Started], echo: int
) -> None:
    port = free_port("::1")
    started = _relay(
        tmp_path,
        processes,
        f'[service]\ndrain_timeout = 2.0\n[relay]\nmaps = ["[::1]:{port}=127.0.0.1:{echo}"]\n',
    )
    sock = socket.create_connection(("::1", port), timeout=5)
    assert _echo(sock, b"before\n") == b"before\n"
    t0 = time.monotonic()
    started.proc.send_signal(signal.SIGTERM)
    # Stop accepting at once ...
    deadline = time.monotonic() + 5
    while True:
        try:
            socket.create_connection(("::1", port), timeout=1).close()
        except ConnectionRefusedError:
            break
        assert time.monotonic() < deadline, "the relay still accepts after SIGTERM"
        time.sleep(0.02)
    # ... while the established connection keeps working during the drain period ...
    assert _echo(sock, b"during the drain\n") == b"during the drain\n"
    # ... and is reset when the drain period is over.
    sock.settimeout(10)
    with pytest.raises((ConnectionResetError, AssertionError)):
        data = sock.recv(100)
        assert data, "closed with FIN instead of RST"
    assert 1.5 <= time.monotonic() - t0 < 8
    assert started.proc.wait(10) == 0
    assert "resetting 1 relayed connections" in started.text()


def test_drain_ends_early_when_connections_finish(
    tmp_path: Path, processes: list[Started], echo: int
) -> None:
    port = free_port("::1")
    started = _relay(
        tmp_path,
        processes,
        f'[service]\ndrain_timeout = 30.0\n[relay]\nmaps = ["[::1]:{port}=127.0.0.1:{echo}"]\n',
    )
    sock = socket.create_connection(("::1", port), timeout=5)
    assert _echo(sock, b"x") == b"x"
    started.proc.send_signal(signal.SIGTERM)
    sock.shutdown(socket.SHUT_WR)
    assert sock.recv(10) == b""  # the echo server half-closes back
    sock.close()
    t0 = time.monotonic()
    assert started.proc.wait(10) == 0
    assert time.monotonic() - t0 < 5


def test_drops_privileges_after_binding(
    tmp_path: Path, processes: list[Started], echo: int
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to drop privileges to another user")
    nobody = pwd.getpwnam("nobody")
    port = free_port("::1")
    tmp_path.chmod(0o755)
    started = _relay(
        tmp_path,
        processes,
        f'[service]\nuser = "nobody"\n[relay]\nmaps = ["[::1]:{port}=127.0.0.1:{echo}"]\n',
    )
    deadline = time.monotonic() + 5
    while "running as nobody" not in started.text():
        assert time.monotonic() < deadline, started.text()
        time.sleep(0.02)
    status = Path(f"/proc/{started.proc.pid}/status").read_text()
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert uids == [str(nobody.pw_uid)] * 4
    cap_eff = next(line for line in status.splitlines() if line.startswith("CapEff:")).split()[1]
    assert int(cap_eff, 16) == 0
    groups = next(line for line in status.splitlines() if line.startswith("Groups:")).split()[1:]
    assert groups == []
    sock = socket.create_connection(("::1", port), timeout=5)
    assert _echo(sock, b"as nobody\n") == b"as nobody\n"
    sock.close()


def test_unknown_user_is_one_line_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    port = free_port("::1")
    config = tmp_path / "relay.toml"
    config.write_text(
        f'[service]\nuser = "no-such-user-tf"\n[relay]\nmaps = ["[::1]:{port}=127.0.0.1:9"]\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "totd_faith", "relay", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "Error: service.user: no such user 'no-such-user-tf'" in result.stderr
    assert "Traceback" not in result.stderr


def test_udp_map_is_served_alongside_tcp(
    tmp_path: Path, processes: list[Started], echo: int
) -> None:
    udp_backend = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp_backend.bind(("127.0.0.1", 0))
    udp_backend.settimeout(5)
    port = free_port("::1")
    target = udp_backend.getsockname()[1]
    _relay(
        tmp_path,
        processes,
        "[relay]\nmaps = [\n"
        f'  "[::1]:{port}=127.0.0.1:{echo}",\n'
        f'  {{ listen = "[::1]:{port}", target = "127.0.0.1:{target}", protocol = "udp" }},\n'
        "]\n",
    )
    try:
        client = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        client.settimeout(5)
        client.sendto(b"over udp", ("::1", port))
        data, relay_addr = udp_backend.recvfrom(100)
        assert data == b"over udp"
        udp_backend.sendto(b"reply", relay_addr)
        assert client.recvfrom(100)[0] == b"reply"
        client.close()
    finally:
        udp_backend.close()
    sock = socket.create_connection(("::1", port), timeout=5)
    assert _echo(sock, b"over tcp") == b"over tcp"
    sock.close()


def test_reload_with_new_clients_keeps_established_connections(
    tmp_path: Path, processes: list[Started], echo: int
) -> None:
    port = free_port("::1")
    maps = f'maps = ["[::1]:{port}=127.0.0.1:{echo}"]\n'
    started = _relay(tmp_path, processes, f"[relay]\n{maps}")
    old = socket.create_connection(("::1", port), timeout=5)
    assert _echo(old, b"one") == b"one"
    (tmp_path / "relay.toml").write_text(f'[relay]\n{maps}clients = ["127.0.0.0/8"]\n')
    started.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while "SIGHUP: configuration reloaded" not in started.text():
        assert time.monotonic() < deadline, started.text()
        time.sleep(0.02)
    new = socket.create_connection(("::1", port), timeout=5)
    new.settimeout(5)
    try:
        assert new.recv(10) == b""  # denied: ::1 is no longer a relay client
    except ConnectionResetError:
        pass
    new.close()
    assert _echo(old, b"two") == b"two"  # the established one is untouched
    old.close()


def test_reload_starts_the_udp_relay_when_a_udp_map_appears(
    tmp_path: Path, processes: list[Started], echo: int
) -> None:
    udp_backend = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp_backend.bind(("127.0.0.1", 0))
    udp_backend.settimeout(5)
    port = free_port("::1")
    tcp_map = f'  "[::1]:{port}=127.0.0.1:{echo}",\n'
    started = _relay(tmp_path, processes, f"[relay]\nmaps = [\n{tcp_map}]\n")
    udp_map = (
        f'  {{ listen = "[::1]:{port}", target = "127.0.0.1:{udp_backend.getsockname()[1]}", '
        'protocol = "udp" },\n'
    )
    (tmp_path / "relay.toml").write_text(f"[relay]\nmaps = [\n{tcp_map}{udp_map}]\n")
    started.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while "SIGHUP: configuration reloaded" not in started.text():
        assert time.monotonic() < deadline, started.text()
        time.sleep(0.02)
    try:
        client = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        client.sendto(b"after reload", ("::1", port))
        assert udp_backend.recvfrom(100)[0] == b"after reload"
        client.close()
    finally:
        udp_backend.close()
