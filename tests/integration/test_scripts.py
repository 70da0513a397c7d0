"""The set-up, run, test and CI scripts: executable, valid bash, idempotent set-up."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = ["scripts/setup", "scripts/run", "scripts/test", "scripts/update-conf", ".ci/run"]


def sh(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_is_executable_bash(script: str) -> None:
    path = REPO / script
    assert path.stat().st_mode & 0o111, f"{script} is not executable"
    assert path.read_text().startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in path.read_text()
    syntax = sh("bash", "-n", script)
    assert syntax.returncode == 0, syntax.stderr


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="not a git checkout")
@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_scripts_are_executable_in_git() -> None:
    listing = sh("git", "ls-files", "-s", *SCRIPTS)
    assert listing.returncode == 0, listing.stderr
    modes = {line.split("\t")[1]: line.split()[0] for line in listing.stdout.splitlines()}
    assert modes == dict.fromkeys(SCRIPTS, "100755")


def test_ci_runs_the_readme_test_command() -> None:
    assert "exec ./scripts/test" in (REPO / ".ci/run").read_text()


def test_setup_rejects_unknown_options_and_explains_itself() -> None:
    bad = sh("scripts/setup", "--tests")
    assert bad.returncode == 2
    assert "unknown option '--tests'" in bad.stderr
    usage = sh("scripts/setup", "--help")
    assert usage.returncode == 0
    assert "--test" in usage.stdout and "--bench" in usage.stdout


@pytest.mark.skipif(not (REPO / ".venv" / "bin" / "python").exists(), reason="no .venv here")
def test_setup_again_changes_nothing() -> None:
    stamp = REPO / ".venv" / ".totd-faith-installed"
    pyproject_hash = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()
    before = stamp.read_text() if stamp.exists() else ""
    up_to_date = before.split()[:1] == [pyproject_hash] and "test" in before
    result = sh("scripts/setup", "--test", timeout=600)
    assert result.returncode == 0, result.stderr
    if not up_to_date:
        pytest.skip("the first set-up ran just now; nothing to compare")
    # Everything was there: no apt, no pip, the stamp untouched.
    assert "pip install" not in result.stderr
    assert "apt-get" not in result.stderr
    assert stamp.read_text() == before
