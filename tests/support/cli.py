"""Run the installed ``totd-faith`` command as a user would, in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def totd_faith_argv() -> list[str]:
    """The console script next to this Python (the one pip installed), else ``-m``."""
    script = Path(sys.executable).parent / "totd-faith"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "totd_faith"]


def run_cli(
    *args: str, input: str | None = None, cwd: Path | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """``totd-faith ARGS...`` to completion; never raises on a non-zero exit."""
    return subprocess.run(
        [*totd_faith_argv(), *args],
        input=input,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 1, nothing on stdout, one ``Error: ...`` line naming ``needles``, no traceback."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]
