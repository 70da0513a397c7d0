"""Fixtures shared by the loopback tests."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.relay_process import Started
from tests.support.dnsprobe import any_response, wait_dns
from tests.support.ports import free_port
from tests.support.process import Daemon
from totd_faith.endpoints import Endpoint, parse_endpoint

#: Starts ``totd-faith dns`` with extra arguments (and a config text): see dns_process.
DnsProcess = Callable[..., tuple[Endpoint, Daemon]]


@pytest.fixture
def processes() -> Iterator[list[Started]]:
    """Processes a test starts; stopped in reverse order at its end."""
    started: list[Started] = []
    yield started
    for proc in reversed(started):
        proc.stop()


@pytest.fixture
def dns_process(tmp_path: Path) -> Iterator[DnsProcess]:
    """Factory: the real ``totd-faith dns`` as a process on a free loopback port, with
    ``args`` and an optional ``config`` text, returned once it answers; stopped at the end."""
    daemons: list[Daemon] = []

    def start(*args: str, config: str | None = None) -> tuple[Endpoint, Daemon]:
        port = free_port()
        argv = [sys.executable, "-m", "totd_faith", "dns", "--listen", f"127.0.0.1:{port}"]
        if config is not None:
            path = tmp_path / f"totd-faith{len(daemons)}.toml"
            path.write_text(config)
            argv += ["-c", str(path)]
        workdir = tmp_path / f"dns{len(daemons)}"
        workdir.mkdir()
        daemon = Daemon("totd-faith-dns", [*argv, *args], workdir)
        daemons.append(daemon)
        endpoint = parse_endpoint(f"127.0.0.1:{port}")
        # Readiness: the local ipv4only.arpa A answer, which needs no upstream.
        wait_dns(endpoint, "ipv4only.arpa.", "A", check=any_response, daemon=daemon)
        return endpoint, daemon

    yield start
    for daemon in daemons:
        daemon.stop()
