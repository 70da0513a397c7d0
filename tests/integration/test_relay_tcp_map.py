"""The TCP relay over loopback, port-map mode: [::1]:P -> 127.0.0.1:Q (issue 4).

Real peers: socat, nginx (PROXY protocol receiver), curl; the hash peers of
relay_peers.py for bulk data with half-close and SHA-256 checks.  Every test
runs the real ``totd-faith relay`` command.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.integration.relay_peers import slow_reader_echo
from tests.integration.relay_process import Started, peer_argv, relay_argv, start, wait_for_line
from tests.support.nginx import nginx_conf

# relay.splice: splice from the first byte, copy-then-splice, uvloop transports.
ENGINES = ["on", "auto", "off"]

RelayFactory = Callable[..., tuple[Started, int]]


@pytest.fixture
def peer(tmp_path: Path, processes: list[Started]) -> Callable[..., int]:
    """Start a relay_peers.py server on 127.0.0.1; return its port."""

    def run(kind: str, *args: str) -> int:
        port = free_port()
        out = tmp_path / f"{kind}-{port}.out"
        processes.append(start(peer_argv(kind, "127.0.0.1", str(port), *args), out, "ready"))
        return port

    return run


@pytest.fixture
def relay(tmp_path: Path, processes: list[Started]) -> RelayFactory:
    """Start ``totd-faith relay`` with one map [::1]:P -> 127.0.0.1:Q plus extra TOML."""

    def run(target_port: int, relay_toml: str = "", *, proxy: str = "none") -> tuple[Started, int]:
        port = free_port("::1")
        config = tmp_path / f"relay-{port}.toml"
        config.write_text(
            "[relay]\n"
            f'maps = [{{ listen = "[::1]:{port}", target = "127.0.0.1:{target_port}", '
            f'proxy_protocol = "{proxy}" }}]\n'
            f"{relay_toml}\n"
        )
        started = start(relay_argv(config), tmp_path / f"relay-{port}.out", "relay: ")
        processes.append(started)
        return started, port

    return run


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("::1", port), timeout=5)


def _echo_once(sock: socket.socket, payload: bytes = b"ping\n") -> bytes:
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        data = sock.recv(65536)
        if not data:
            break
        got += data
    return got


def _closed_within(sock: socket.socket, seconds: float) -> str:
    """How the relay ended ``sock``: 'eof' or 'reset'; fail if it stays open."""
    sock.settimeout(seconds)
    try:
        while True:
            if not sock.recv(65536):
                return "eof"
    except ConnectionResetError:
        return "reset"
    except TimeoutError:
        pytest.fail(f"connection still open after {seconds}s")


def _wait_log(started: Started, needle: str, timeout: float = 5.0) -> str:
    return wait_for_line(started.proc, started.output, needle, timeout)


@pytest.mark.parametrize("engine", ENGINES)
def test_bulk_both_ways_with_half_close(
    engine: str, peer: Callable[..., int], relay: RelayFactory
) -> None:
    size = 24_000_000
    backend = peer("hash-server", str(size))
    started, port = relay(backend, f'splice = "{engine}"')
    result = subprocess.run(
        peer_argv("hash-client", "::1", str(port), str(size), str(size)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr + started.text()
    assert json.loads(result.stdout)["ok"] is True
    # Up: the client's bytes; down: hash + length + payload + hash.
    line = _wait_log(started, f"{size} bytes up, {size + 72} bytes down")
    assert "closed" in line
    engine_name = {"on": "splice engine", "auto": "splice after", "off": "(transports)"}[engine]
    assert engine_name in started.text()


@pytest.mark.parametrize("engine", ENGINES)
def test_echo_to_a_reader_slower_than_the_writer(
    engine: str, peer: Callable[..., int], relay: RelayFactory
) -> None:
    # Both directions under backpressure at once, through the copy -> splice switch at
    # 128 KiB in "auto": the relay must neither lose a readiness event nor stop reading
    # the backend while the client falls behind (the namespace echo test's traffic).
    backend = peer("echo-server")
    started, port = relay(backend, f'splice = "{engine}"')
    result = slow_reader_echo("::1", port)
    assert result == {"sent": ["all"], "received": 600_000, "ok": True}, (
        f"{result}\n{started.text()}"
    )
    _wait_log(started, "600000 bytes up, 600000 bytes down")


def test_socat_client_and_echo_backend(
    tmp_path: Path, processes: list[Started], relay: RelayFactory
) -> None:
    backend = free_port()
    processes.append(
        start(
            ["socat", "-d", "-d", f"TCP4-LISTEN:{backend},bind=127.0.0.1,reuseaddr,fork", "PIPE"],
            tmp_path / "socat.out",
            "listening on",
        )
    )
    _, port = relay(backend)
    result = subprocess.run(
        ["socat", "-t", "5", "-", f"TCP6:[::1]:{port}"],
        input=b"hello through the relay\n",
        capture_output=True,
        timeout=20,
    )
    assert result.stdout == b"hello through the relay\n"


@pytest.mark.parametrize("engine", ENGINES)
def test_hundreds_of_concurrent_connections(
    engine: str, peer: Callable[..., int], relay: RelayFactory
) -> None:
    backend = peer("echo-server")
    # All clients share ::1, so lift the per-client limit (256 by default) above the count.
    _, port = relay(backend, f'splice = "{engine}"\nmax_connections_per_client = 1000')
    count, payload = 300, os.urandom(20_000)

    async def one(i: int) -> bool:
        reader, writer = await asyncio.open_connection("::1", port)
        writer.write(payload + i.to_bytes(4, "big"))
        writer.write_eof()
        got = await reader.read()
        writer.close()
        return got == payload + i.to_bytes(4, "big")

    async def all_of_them() -> list[bool]:
        return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(count))), 60)

    results = asyncio.run(all_of_them())
    assert results.count(True) == count


def test_backend_refused_resets_client_promptly(relay: RelayFactory) -> None:
    closed = free_port()  # nothing listens there
    started, port = relay(closed)
    t0 = time.monotonic()
    try:
        sock = _connect(port)
    except ConnectionResetError:
        # The relay's connect to a loopback backend fails at once, so its reset can
        # arrive before our connect() has returned (create_connection with a timeout
        # then reports it from SO_ERROR): that is the prompt reset this test wants.
        ended = "reset"
    else:
        ended = _closed_within(sock, 3.0)
    assert ended == "reset"
    assert time.monotonic() - t0 < 2.0
    _wait_log(started, "backend refused")


@pytest.mark.parametrize("engine", ENGINES)
def test_backend_killed_mid_stream(
    engine: str, tmp_path: Path, processes: list[Started], relay: RelayFactory
) -> None:
    backend = free_port()
    echo = start(
        peer_argv("echo-server", "127.0.0.1", str(backend)), tmp_path / "echo.out", "ready"
    )
    processes.append(echo)
    started, port = relay(backend, f'splice = "{engine}"')
    sock = _connect(port)
    assert _echo_once(sock) == b"ping\n"
    # Keep data in flight towards the backend, then kill it: the kernel resets
    # its connection, and the relay must pass that on to the client promptly.
    sock.sendall(os.urandom(200_000))
    os.kill(echo.proc.pid, signal.SIGKILL)
    echo.proc.wait(5)
    t0 = time.monotonic()
    sock.settimeout(0.2)
    ended = ""
    while time.monotonic() - t0 < 3.0 and not ended:
        try:
            sock.sendall(b"x" * 65536)
            if not sock.recv(65536):
                ended = "eof"
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            ended = "reset"
    assert ended, "client connection still open 3 s after the backend died"
    _wait_log(started, "backend")


def test_client_outside_relay_clients_never_reaches_backend(relay: RelayFactory) -> None:
    backend_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    backend_sock.bind(("127.0.0.1", 0))
    backend_sock.listen(8)
    backend_sock.settimeout(0.5)
    try:
        started, port = relay(backend_sock.getsockname()[1], 'clients = ["127.0.0.0/8"]')
        sock = _connect(port)
        assert _closed_within(sock, 3.0) in ("eof", "reset")
        _wait_log(started, "denied: client not in relay.clients")
        with pytest.raises(TimeoutError):
            backend_sock.accept()
    finally:
        backend_sock.close()


def test_per_client_and_global_limits(peer: Callable[..., int], relay: RelayFactory) -> None:
    backend = peer("echo-server")
    started, port = relay(backend, "max_connections_per_client = 3")
    held = [_connect(port) for _ in range(3)]
    for sock in held:
        assert _echo_once(sock) == b"ping\n"
    extra = _connect(port)
    assert _closed_within(extra, 3.0) in ("eof", "reset")
    _wait_log(started, "denied: max_connections_per_client")
    held.pop().close()
    # The relay notices the close; then a new connection is admitted again.
    deadline = time.monotonic() + 5
    while True:
        again = _connect(port)
        try:
            if _echo_once(again) == b"ping\n":
                break
        except ConnectionResetError:
            pass
        assert time.monotonic() < deadline, "no connection admitted after one was closed"
        time.sleep(0.05)
    for sock in [*held, again]:
        sock.close()

    started, port = relay(backend, "max_connections = 2")
    held = [_connect(port) for _ in range(2)]
    for sock in held:
        assert _echo_once(sock) == b"ping\n"
    assert _closed_within(_connect(port), 3.0) in ("eof", "reset")
    _wait_log(started, "denied: max_connections")
    for sock in held:
        sock.close()


def test_idle_timeout_closes_quiet_connections(
    peer: Callable[..., int], relay: RelayFactory
) -> None:
    backend = peer("echo-server")
    started, port = relay(backend, "idle_timeout = 1.0")
    sock = _connect(port)
    assert _echo_once(sock) == b"ping\n"
    t0 = time.monotonic()
    assert _closed_within(sock, 4.0) in ("eof", "reset")
    assert 0.9 <= time.monotonic() - t0 < 3.0
    _wait_log(started, "idle timeout")


SERVER_VARS = "server=$proxy_protocol_server_addr:$proxy_protocol_server_port"


def nginx_servers(port: int, server: str) -> str:
    return f"""    server {{
        listen 127.0.0.1:{port} proxy_protocol;
        location / {{
            return 200 "client=$proxy_protocol_addr port=$proxy_protocol_port {server}\\n";
        }}
    }}
"""


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("engine", ENGINES)
def test_proxy_protocol_parsed_by_nginx(
    version: str, engine: str, tmp_path: Path, processes: list[Started], relay: RelayFactory
) -> None:
    if shutil.which("nginx") is None:
        pytest.skip("nginx is not installed (scripts/setup installs it)")
    backend = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_conf(tmp_path, nginx_servers(backend, SERVER_VARS)))
    nginx = subprocess.Popen(
        ["nginx", "-c", str(conf), "-p", str(tmp_path), "-e", str(tmp_path / "nginx-error.log")],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    processes.append(Started(nginx, tmp_path / "nginx-error.log"))
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", backend), timeout=1).close()
            break
        except OSError:
            assert nginx.poll() is None, (tmp_path / "nginx-error.log").read_text()
            assert time.monotonic() < deadline, "nginx did not start listening"
            time.sleep(0.05)
    _, port = relay(backend, f'splice = "{engine}"', proxy=version)
    client = socket.create_connection(("::1", port), timeout=5)
    local_port = client.getsockname()[1]
    client.sendall(b"GET / HTTP/1.0\r\nHost: relay\r\n\r\n")
    response = b""
    while chunk := client.recv(65536):
        response += chunk
    client.close()
    assert response.startswith(b"HTTP/1.1 200"), response
    body = response.split(b"\r\n\r\n", 1)[1].decode()
    assert body == f"client=::1 port={local_port} server=::1:{port}\n"


def test_curl_through_proxy_protocol_map(
    tmp_path: Path, processes: list[Started], relay: RelayFactory
) -> None:
    if shutil.which("nginx") is None or shutil.which("curl") is None:
        pytest.skip("nginx and curl are needed (scripts/setup installs them)")
    backend = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_conf(tmp_path, nginx_servers(backend, SERVER_VARS)))
    nginx = subprocess.Popen(
        ["nginx", "-c", str(conf), "-p", str(tmp_path), "-e", str(tmp_path / "nginx-error.log")],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    processes.append(Started(nginx, tmp_path / "nginx-error.log"))
    _, port = relay(backend, proxy="v2")
    deadline = time.monotonic() + 10
    while True:
        result = subprocess.run(
            ["curl", "-sS", "-g", f"http://[::1]:{port}/"], capture_output=True, text=True
        )
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert result.stdout.startswith("client=::1 port="), result.stdout + result.stderr


def test_reload_adopts_new_maps_without_dropping_connections(
    tmp_path: Path, peer: Callable[..., int], processes: list[Started]
) -> None:
    backend = peer("echo-server")
    first, second = free_port("::1"), free_port("::1")
    config = tmp_path / "relay.toml"

    def write(*ports: int) -> None:
        maps = ", ".join(f'"[::1]:{p}=127.0.0.1:{backend}"' for p in ports)
        config.write_text(f"[relay]\nmaps = [{maps}]\n")

    write(first)
    started = start(relay_argv(config), tmp_path / "relay.out", "relay: ")
    processes.append(started)
    old = _connect(first)
    assert _echo_once(old) == b"ping\n"
    with pytest.raises(ConnectionRefusedError):
        _connect(second)

    write(first, second)
    started.proc.send_signal(signal.SIGHUP)
    _wait_log(started, "SIGHUP: configuration reloaded")
    assert _echo_once(_connect(second)) == b"ping\n"
    assert _echo_once(old, b"still here\n") == b"still here\n"

    write(second)
    started.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while started.text().count("SIGHUP: configuration reloaded") < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with pytest.raises(ConnectionRefusedError):
        _connect(first)
    # The established connection through the removed listener keeps working.
    assert _echo_once(old, b"and here\n") == b"and here\n"
    old.close()


def test_bind_error_is_one_line_and_exit_1(tmp_path: Path) -> None:
    holder = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    holder.bind(("::1", 0))
    holder.listen(1)
    try:
        port = holder.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "totd_faith", "relay", "--map", f"[::1]:{port}=127.0.0.1:9"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        holder.close()
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [
        f"Error: cannot listen on [::1]:{port} (TCP): Address already in use; "
        "another process is listening there; stop it or choose another port"
    ], result.stderr
    assert "Traceback" not in result.stderr


def test_nothing_to_relay_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "relay.toml"
    config.write_text("[relay]\nports = []\n")
    result = subprocess.run(
        [sys.executable, "-m", "totd_faith", "relay", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "nothing to relay" in result.stderr


def test_port_maps_alone_do_not_take_the_default_prefix_ports(
    peer: Callable[..., int], relay: RelayFactory
) -> None:
    # relay.ports defaults to 80 and 443 (for serve); a map-only relay must not bind them.
    started, port = relay(peer("echo-server"))
    assert "; ports " not in started.text()
    assert _echo_once(_connect(port)) == b"ping\n"


def test_prefix_mode_refuses_addresses_outside_the_prefixes(
    tmp_path: Path, processes: list[Started]
) -> None:
    port = free_port("::1")
    config = tmp_path / "relay.toml"
    config.write_text(
        f'prefixes = ["2001:db8:64::/96"]\n[relay]\nlisten_address = "::1"\n'
        f'ports = [{{ port = {port}, protocols = ["tcp"] }}]\n'
    )
    started = start(relay_argv(config), tmp_path / "relay.out", "relay: ")
    processes.append(started)
    sock = _connect(port)
    assert _closed_within(sock, 3.0) in ("eof", "reset")
    _wait_log(started, "denied: destination outside the prefixes")


def test_denials_are_logged_without_connection_logging(
    peer: Callable[..., int], relay: RelayFactory
) -> None:
    backend = peer("echo-server")
    started, port = relay(backend, "max_connections_per_client = 1\n[log]\nconnections = false")
    held = _connect(port)
    assert _echo_once(held) == b"ping\n"
    assert _closed_within(_connect(port), 3.0) in ("eof", "reset")
    _wait_log(started, "denied: max_connections_per_client")
    held.close()
    # Relayed connections themselves are not logged with log.connections = false.
    assert "bytes up" not in started.text().replace("0 bytes up, 0 bytes down", "")
