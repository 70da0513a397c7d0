"""A server process under test: started in its own process group, always stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from totd_faith.endpoints import Endpoint


def live_group_members(pgid: int) -> list[int]:
    """PIDs in process group ``pgid`` that are not zombies.

    ``os.killpg(pgid, 0)`` is no use here: it also succeeds for zombies, and in some
    containers PID 1 never reaps the orphans it inherits.
    """
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


class Daemon:
    """Run ``argv`` in the foreground as a child with its output in ``workdir``.

    The child gets its own session so that :meth:`stop` can end it together with
    any workers it forked (NSD forks server and xfrd processes even with ``-d``).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        workdir: Path,
        *,
        logs: Sequence[Path] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.workdir = workdir
        self.output = workdir / f"{name}.out"
        self.logs = [self.output, *logs]
        with self.output.open("wb") as out:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the daemon's output and log files, for failure messages."""
        parts = []
        for path in self.logs:
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            tail = "\n".join(text.splitlines()[-lines:])
            parts.append(f"--- {path.name} ---\n{tail}")
        return "\n".join(parts) or "(no output)"

    def fail(self, problem: str) -> RuntimeError:
        """An error that says what went wrong and shows the daemon's own words."""
        status = "running" if self.alive() else f"exited with status {self.proc.returncode}"
        return RuntimeError(
            f"{self.name} ({' '.join(self.argv)}) {problem}; it is {status}\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the process group, then SIGKILL it if it has not gone within ``timeout``."""
        if self.proc.returncode is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait(timeout)
        # Workers may outlive a leader that exited on its own.
        self._signal_group(signal.SIGKILL)
        # SIGKILL is delivered asynchronously: wait (bounded) until the workers are gone, so
        # the next test never meets a port still held by a dying worker.
        deadline = time.monotonic() + timeout
        while live_group_members(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)

    def _signal_group(self, sig: signal.Signals) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def __enter__(self) -> Daemon:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass
class RunningServer:
    """A server a test started: where it answers, its directory and its process.

    :meth:`stop` (or leaving the ``with`` block) ends it.
    """

    endpoint: Endpoint
    workdir: Path
    daemon: Daemon

    def stop(self) -> None:
        self.daemon.stop()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
