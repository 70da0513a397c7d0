"""systemd readiness (sd_notify): the real ``totd-faith dns`` against a notify socket."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.ports import free_port
from totd_faith import sdnotify


def _notify_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(20)
    return sock


def test_notify_is_a_no_op_outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.ready() is False


def test_dns_tells_systemd_ready_once_then_stopping(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    sock = _notify_socket(path)
    port = free_port()
    env = {**os.environ, "NOTIFY_SOCKET": str(path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "totd_faith", "dns", "-l", f"127.0.0.1:{port}", "-u", "127.0.0.1:9"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = sock.recv(4096).decode()
        assert first.startswith("READY=1"), first
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, proc.stderr.read() if proc.stderr else ""
        rest = []
        sock.settimeout(0.5)
        while True:
            try:
                rest.append(sock.recv(4096).decode())
            except TimeoutError:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
    # One READY=1 per start, then STOPPING=1 when draining begins.
    assert [m for m in rest if m.startswith("READY=1")] == [], rest
    assert any(m.startswith("STOPPING=1") for m in rest), rest
