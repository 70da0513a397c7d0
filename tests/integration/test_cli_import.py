"""``totd-faith config import-totd|import-faithd`` as users run them (subprocess)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "legacy"
FAITHD_ARGS = ["--prefix", "2001:db8:5999::/96", "--port", "5999"]


def totd_faith(*args: str, cwd: Path = GOLDEN) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "totd_faith", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("totd-classic", ["import-totd", "totd-classic.conf"]),
        ("totd-full", ["import-totd", "totd-full.conf"]),
        ("faithd-site", ["import-faithd", *FAITHD_ARGS, "faithd-site.conf"]),
        ("faithd-empty", ["import-faithd", *FAITHD_ARGS, "faithd-empty.conf"]),
        ("faithd-open", ["import-faithd", *FAITHD_ARGS, "faithd-open.conf"]),
        (
            "classic-pair",
            ["import-totd", "totd-classic.conf", "--faithd", "faithd-site.conf", "--port", "5999"],
        ),
    ],
)
def test_import_matches_golden_and_passes_config_check(
    name: str, args: list[str], tmp_path: Path
) -> None:
    result = totd_faith("config", *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (GOLDEN / f"{name}.toml").read_text()
    assert result.stderr == (GOLDEN / f"{name}.stderr").read_text()
    out = tmp_path / "imported.toml"
    out.write_text(result.stdout)
    check = totd_faith("config", "check", str(out))
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == f"{out}: ok"
    # The imported file is a working configuration for the other commands too.
    show = totd_faith("config", "show", "-c", str(out))
    assert show.returncode == 0, show.stderr


def test_errors_name_file_and_line_and_print_nothing() -> None:
    result = totd_faith("config", "import-totd", "totd-bad.conf")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (GOLDEN / "totd-bad.stderr").read_text()
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["import-totd", "import-faithd"])
def test_unreadable_file_is_a_one_line_error(command: str, tmp_path: Path) -> None:
    missing = tmp_path / "nope.conf"
    result = totd_faith("config", command, str(missing))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip() == f"Error: {missing}: cannot read: No such file or directory"


def test_directory_is_a_usage_error(tmp_path: Path) -> None:
    result = totd_faith("config", "import-faithd", ".", cwd=tmp_path)
    assert result.returncode == 2
    assert "is a directory" in result.stderr and "Traceback" not in result.stderr


def test_service_names_are_ports_like_faithd_took_them(tmp_path: Path) -> None:
    conf = tmp_path / "faithd.conf"
    conf.write_text("fd00::/8 permit 192.0.2.0/24\n")
    result = totd_faith("config", "import-faithd", "--port", "ssh", "--port", "5999", str(conf))
    assert result.returncode == 0, result.stderr
    assert "port = 22," in result.stdout and "port = 5999," in result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--port", "no-such-service"], "neither a port number nor a TCP service name"),
        (["--port", "70000"], "not a port number"),
        (["--prefix", "2001:db8::/60"], "RFC 6052"),
    ],
)
def test_bad_options_are_usage_errors(args: list[str], expected: str, tmp_path: Path) -> None:
    conf = tmp_path / "faithd.conf"
    conf.write_text("")
    result = totd_faith("config", "import-faithd", *args, str(conf))
    assert result.returncode == 2
    assert expected in result.stderr and "Traceback" not in result.stderr


def test_port_without_faithd_is_a_usage_error() -> None:
    result = totd_faith("config", "import-totd", "totd-classic.conf", "--port", "5999")
    assert result.returncode == 2
    assert "--port needs --faithd" in result.stderr


def test_imported_config_runs_the_dns_proxy_config_path(tmp_path: Path) -> None:
    # Round trip through a file a user would keep: import, then show with a
    # flag on top; the flag wins, the imported upstreams stay.
    imported = totd_faith("config", "import-totd", "totd-classic.conf")
    conf = tmp_path / "totd-faith.toml"
    conf.write_text(imported.stdout)
    show = totd_faith("config", "show", "-c", str(conf), "--listen", "127.0.0.1:5300")
    assert show.returncode == 0, show.stderr
    assert 'listen = ["127.0.0.1:5300"]' in show.stdout
    assert 'upstreams = ["192.0.2.53:53"]' in show.stdout
    assert 'prefixes = ["2001:db8:5999::/96"]' in show.stdout


@pytest.mark.skipif(shutil.which("totd-faith") is None, reason="console script not installed")
def test_console_script_runs_the_import() -> None:
    result = subprocess.run(
        ["totd-faith", "config", "import-totd", "totd-classic.conf"],
        cwd=GOLDEN,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout == (GOLDEN / "totd-classic.toml").read_text()
