"""Start ``totd-faith relay`` (and the peers of relay_peers.py) for tests; wait for readiness."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PEERS = Path(__file__).with_name("relay_peers.py")


def wait_for_line(proc: subprocess.Popen[Any], output: Path, needle: str, timeout: float) -> str:
    """Poll ``output`` until it holds ``needle``; fail early when the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = output.read_text(errors="replace") if output.exists() else ""
        if needle in text:
            return text
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before {needle!r}:\n{text}")
        time.sleep(0.02)
    raise TimeoutError(f"no {needle!r} within {timeout}s:\n{output.read_text(errors='replace')}")


def relay_argv(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "totd_faith", "relay", "-c", str(config), *extra]


def peer_argv(*args: str) -> list[str]:
    return [sys.executable, str(PEERS), *args]


class Started:
    """A started process with its output file; stopped by :meth:`stop`."""

    def __init__(self, proc: subprocess.Popen[Any], output: Path) -> None:
        self.proc = proc
        self.output = output

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start(
    argv: list[str],
    output: Path,
    ready: str,
    *,
    prefix: list[str] | None = None,
    timeout: float = 15.0,
) -> Started:
    """Run ``prefix + argv`` with output to ``output``; return once ``ready`` is printed."""
    out = output.open("wb")
    proc = subprocess.Popen(
        [*(prefix or []), *argv],
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out.close()
    started = Started(proc, output)
    try:
        wait_for_line(proc, output, ready, timeout)
    except BaseException:
        started.stop()
        raise
    return started
