"""An empty dns.listen: `dns` refuses it, `serve` runs the relay alone, and with
nothing to relay either `serve` refuses too (QA: "listening on none", serving
nothing, forever)."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import threading
from pathlib import Path

import pytest

from tests.integration.relay_process import start, wait_for_line
from tests.support.cli import assert_one_line_error, run_cli
from tests.support.ports import free_port
from totd_faith.cli.serve_cmd import DnsOff, OptionalRelay, build_services
from totd_faith.config import load_text
from totd_faith.dnsserver import DnsService
from totd_faith.relay.service import RelayService


def test_dns_refuses_an_empty_listen_list(tmp_path: Path) -> None:
    conf = tmp_path / "dns.toml"
    conf.write_text('[dns]\nlisten = []\nupstreams = ["127.0.0.1:9"]\n')
    assert_one_line_error(
        run_cli("dns", "-c", str(conf), timeout=30),
        "Error: dns.listen: the list is empty, so the DNS proxy would answer nowhere; "
        "give --listen ADDR",
    )


def test_a_listen_flag_fills_an_empty_listen_list(tmp_path: Path) -> None:
    # The flag overrides the file, so the refusal above is about the result, not the file.
    conf = tmp_path / "dns.toml"
    conf.write_text('[dns]\nlisten = []\nupstreams = ["127.0.0.1:9"]\n')
    port = free_port()
    result = run_cli("config", "show", "-c", str(conf), "--listen", f"127.0.0.1:{port}")
    assert result.returncode == 0, result.stderr
    assert f'listen = ["127.0.0.1:{port}"]' in result.stdout


def test_serve_with_no_dns_and_nothing_to_relay_is_refused(tmp_path: Path) -> None:
    conf = tmp_path / "serve.toml"
    conf.write_text('[dns]\nlisten = []\nupstreams = ["127.0.0.1:9"]\n[relay]\nports = []\n')
    assert_one_line_error(
        run_cli("serve", "-c", str(conf), timeout=30),
        "Error: dns.listen: the list is empty and there is nothing to relay",
        "--relay-port N or --map LISTEN=TARGET",
    )


def _echo_server() -> tuple[socket.socket, int]:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)

    def serve_one() -> None:
        try:
            client, _ = server.accept()
        except OSError:
            return
        with client:
            client.settimeout(10)
            while data := client.recv(65536):
                client.sendall(data)

    threading.Thread(target=serve_one, daemon=True).start()
    return server, server.getsockname()[1]


def test_serve_with_an_empty_dns_listen_runs_the_relay_alone(tmp_path: Path) -> None:
    backend, target = _echo_server()
    port = free_port("::1")
    prefix_port = free_port("::1")
    conf = tmp_path / "serve.toml"
    conf.write_text(
        'prefixes = ["2001:db8:6464::/96"]\n'
        '[dns]\nlisten = []\nupstreams = ["127.0.0.1:9"]\n'
        f'[relay]\nports = [{{ port = {prefix_port}, protocols = ["tcp"] }}]\n'
        'listen_address = "::1"\n'
        f'maps = ["[::1]:{port}=127.0.0.1:{target}"]\n'
    )
    argv = [sys.executable, "-m", "totd_faith", "serve", "-c", str(conf)]
    started = start(argv, tmp_path / "serve.out", "serve: relay ")
    try:
        # The prefix is not routed here: the advice must not promise DNS64.
        advice = wait_for_line(
            started.proc, started.output, "no AnyIP route for 2001:db8:6464::/96", 10
        )
        assert "DNS64 keeps serving" not in advice
        with socket.create_connection(("::1", port), timeout=5) as sock:
            sock.sendall(b"ping\n")
            got = b""
            while len(got) < 5:
                data = sock.recv(100)
                assert data, "the relay closed the connection"
                got += data
        assert got == b"ping\n"
        text = started.text()
        assert "dns: off (dns.listen is empty); serving the relay only" in text
        assert "serve: prefixes 2001:db8:6464::/96; DNS off (dns.listen is empty)" in text
        assert "listening on none" not in text
    finally:
        started.stop()
        backend.close()


def test_serve_reports_that_new_dns_listen_addresses_need_a_restart(
    caplog: pytest.LogCaptureFixture,
) -> None:
    off = load_text('[dns]\nlisten = []\n[relay]\nports = []\nmaps = ["[::1]:8080=192.0.2.1:80"]\n')
    services = build_services(off)
    assert [type(s) for s in services] == [DnsOff, RelayService]
    on = load_text('[dns]\nlisten = ["127.0.0.1:5399"]\n')
    with caplog.at_level(logging.WARNING, logger="totd_faith.serve"):
        asyncio.run(services[0].reload(on))
    assert [r.getMessage() for r in caplog.records] == [
        "dns: dns.listen (127.0.0.1:5399) takes effect only after a restart; DNS stays off"
    ]
    # With addresses to listen on, DNS runs and the relay is optional (DNS keeps serving).
    assert [type(s) for s in build_services(on)] == [DnsService, OptionalRelay]
