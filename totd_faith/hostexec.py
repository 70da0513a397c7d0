"""Run :mod:`totd_faith.hostsetup` steps on this host: apply, undo, check, render.

The shell half of host set-up.  ``apply`` skips a step whose check passes
and returns the steps it actually applied, so a caller (the relay at stop,
``setup --undo``) removes exactly what it added and nothing an operator or
another instance set up.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shlex
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from totd_faith.errors import OperatorError
from totd_faith.hostsetup import Step, parse_link_local

log = logging.getLogger("totd_faith.hostsetup")

#: Runs one argv with optional stdin; returns (exit status, combined output).
Runner = Callable[[Sequence[str], str | None], tuple[int, str]]

_TIMEOUT = 30.0
_LOCK_NAME = "totd-faith-hostsetup.lock"


class HostSetupError(OperatorError):
    """A host set-up command failed; the message names the command and its output."""


def run_command(argv: Sequence[str], stdin: str | None = None) -> tuple[int, str]:
    """Run ``argv`` and return its exit status and output (the default :data:`Runner`)."""
    try:
        done = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        return 127, f"{argv[0]}: command not found (install iproute2 / nftables)"
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {_TIMEOUT:.0f} s"
    return done.returncode, (done.stdout + done.stderr).strip()


@contextlib.contextmanager
def host_lock() -> Iterator[None]:
    """Serialise check-then-apply across processes (relay workers start together).

    Without it two workers could both find the fwmark rule missing and the
    slower one would fail on "File exists"; with it the second one finds the
    first one's work in place.  The lock file lives in /run/lock when writable.
    """
    directory = Path("/run/lock")
    if not os.access(directory, os.W_OK):
        directory = Path(tempfile.gettempdir())
    try:
        # O_NOFOLLOW: in a shared temporary directory a planted symlink is refused.
        fd = os.open(directory / _LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError:
        yield  # no lock possible: the re-check in apply() still covers most races
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def is_applied(step: Step, runner: Runner = run_command) -> bool:
    """Whether ``step``'s check says it is already in place (no check: never)."""
    if step.check is None:
        return False
    status, _ = runner(step.check, None)
    return status == 0


def _failure(step: Step, argv: Sequence[str], output: str) -> HostSetupError:
    hint = ""
    if "Operation not permitted" in output or "Permission denied" in output:
        hint = " (needs root or CAP_NET_ADMIN)"
    return HostSetupError(
        f"could not {step.description}: `{shlex.join(argv)}` failed{hint}: {output or 'no output'}"
    )


def apply(steps: Sequence[Step], runner: Runner = run_command) -> list[Step]:
    """Apply each step not yet in place, in order; return the ones this call applied.

    On a failure, the steps applied so far are undone again (in reverse order)
    before the error is raised, so a failed start leaves the host as it was.
    """
    with host_lock():
        return _apply(steps, runner)


def _apply(steps: Sequence[Step], runner: Runner) -> list[Step]:
    applied: list[Step] = []
    for step in steps:
        if is_applied(step, runner):
            log.info("already in place: %s", step.description)
            continue
        status, output = runner(step.apply, step.stdin)
        if status != 0 and is_applied(step, runner):
            # Another process (a second worker, an operator) applied it meanwhile:
            # in place, and not ours to remove.
            log.info("already in place: %s", step.description)
            continue
        if status != 0:
            _undo(applied, runner)
            raise _failure(step, step.apply, output)
        log.info("applied: %s", step.description)
        applied.append(step)
    return applied


def undo(steps: Sequence[Step], runner: Runner = run_command) -> list[Step]:
    """Undo ``steps`` in reverse order, only those present; return the ones removed.

    A step without an undo command, or whose check says it is absent, is
    skipped; a failing undo is logged and the rest still run (stop must not
    leave more behind than it has to).
    """
    with host_lock():
        return _undo(steps, runner)


def _undo(steps: Sequence[Step], runner: Runner) -> list[Step]:
    removed: list[Step] = []
    for step in reversed(steps):
        if step.undo is None:
            continue
        if step.check is not None and not is_applied(step, runner):
            continue
        status, output = runner(step.undo, None)
        if status != 0:
            log.error("%s", _failure(step, step.undo, output))
            continue
        log.info("removed: %s", step.description)
        removed.append(step)
    return removed


def link_local_addresses(
    interface: str | None = None, runner: Runner = run_command
) -> list[tuple[str, str]]:
    """This host's (interface, fe80:: address) pairs, for :func:`hostsetup.router_command`."""
    argv = ["ip", "-6", "-o", "addr", "show", "scope", "link"]
    if interface is not None:
        argv += ["dev", interface]
    status, output = runner(argv, None)
    return parse_link_local(output) if status == 0 else []


def render(steps: Sequence[Step], *, undo_script: bool = False) -> str:
    """Shell script text that applies (or undoes) ``steps``, idempotently, for printing."""
    lines = ["#!/bin/sh", "set -e"]
    ordered = list(reversed(steps)) if undo_script else list(steps)
    for step in ordered:
        argv = step.undo if undo_script else step.apply
        if argv is None:
            continue
        lines.append(f"# {'undo: ' if undo_script else ''}{step.description}")
        command = shlex.join(argv)
        if step.stdin is not None and not undo_script:
            command = f"{command} <<'EOF'\n{step.stdin.rstrip(chr(10))}\nEOF"
        if step.check is None:
            lines.append(command)
            continue
        # A `sh -c PIPELINE` check reads better as the pipeline itself.
        check = step.check
        test = check[2] if check[:2] == ("sh", "-c") and len(check) == 3 else shlex.join(check)
        lines.append(f"if {'' if undo_script else '! '}{test}; then\n  {command}\nfi")
    return "\n".join(lines) + "\n"
