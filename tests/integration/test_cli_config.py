"""``totd-faith config check`` and ``config show`` run as a subprocess (import-* live elsewhere)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tests.support.cli import assert_one_line_error, run_cli
from totd_faith.config import Config, from_table, load_text, to_toml

REPO = Path(__file__).resolve().parents[2]

FILE = """\
prefixes = ["2001:db8:5999::/96"]
[dns]
listen = ["127.0.0.1:5300"]
upstreams = ["192.0.2.53"]
[relay]
ports = [5999]
all_ports = true
[log]
level = "debug"
"""


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    path = tmp_path / "totd-faith.toml"
    path.write_text(FILE)
    return path


def shown(*args: str) -> Config:
    result = run_cli("config", "show", *args)
    assert result.returncode == 0, result.stderr
    return from_table(tomllib.loads(result.stdout))


def test_check_accepts_a_good_file(conf: Path) -> None:
    result = run_cli("config", "check", str(conf))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{conf}: ok\n"


def test_check_accepts_the_shipped_example() -> None:
    result = run_cli("config", "check", "conf/totd-faith.toml", cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "conf/totd-faith.toml: ok\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[relay]\nports = [22, 80, 70000]\n", "relay.ports[2]: 70000 is not a port number"),
        ("[dns]\nlisten_on = []\n", "dns.listen_on: unknown key"),
        ("prefixes = ['2001:db8::/60']\n", "prefixes[0]: "),
        ("[log]\nqueries = 'yes'\n", "log.queries: expected true or false, got a string"),
        ("[dns\n", "not valid TOML"),
    ],
)
def test_check_rejects_a_bad_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert_one_line_error(run_cli("config", "check", str(path)), message)


def test_check_of_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    assert_one_line_error(
        run_cli("config", "check", str(missing)), str(missing), "cannot read the configuration"
    )


def test_show_prints_the_defaults() -> None:
    result = run_cli("config", "show")
    assert result.returncode == 0, result.stderr
    assert result.stdout == to_toml(Config())
    assert load_text(result.stdout) == Config()


def test_show_annotated_is_the_shipped_example_body() -> None:
    result = run_cli("config", "show", "--annotated")
    assert result.returncode == 0, result.stderr
    assert load_text(result.stdout) == Config()
    assert result.stdout.startswith("# ")
    assert (REPO / "conf" / "totd-faith.toml").read_text().endswith(result.stdout)


def test_show_with_a_file(conf: Path) -> None:
    config = shown("-c", str(conf))
    assert config == load_text(FILE)
    assert [str(p) for p in config.prefixes] == ["2001:db8:5999::/96"]
    assert config.relay.all_ports is True
    assert config.log.level == "debug"


def test_flags_override_the_file(conf: Path) -> None:
    config = shown(
        "--config",
        str(conf),
        "--prefix",
        "64:ff9b::/96",
        "--prefix",
        "2001:db8:64::/96",
        "--upstream",
        "[2001:db8::53]:5353",
        "--relay-port",
        "80",
        "--map",
        "[::]:8080=192.0.2.10:80",
    )
    assert [str(p) for p in config.prefixes] == ["64:ff9b::/96", "2001:db8:64::/96"]
    assert [str(e) for e in config.dns.upstreams] == ["[2001:db8::53]:5353"]
    assert [p.port for p in config.relay.ports] == [80]
    assert [f"{m.listen}={m.target}" for m in config.relay.maps] == ["[::]:8080=192.0.2.10:80"]
    # Flags not given leave the file's values alone.
    assert [str(e) for e in config.dns.listen] == ["127.0.0.1:5300"]
    assert config.relay.all_ports is True
    assert config.log.level == "debug"


def test_flags_not_given_never_override_the_file(conf: Path) -> None:
    assert shown("-c", str(conf)) == shown("-c", str(conf), "--annotated")
    assert shown("-c", str(conf)).relay.all_ports is True


def test_flags_without_a_file() -> None:
    config = shown("-l", "127.0.0.1:53", "--all-ports")
    assert [str(e) for e in config.dns.listen] == ["127.0.0.1:53"]
    assert config.relay.all_ports is True
    assert config.dns.upstreams == Config().dns.upstreams


def test_bad_flag_values_name_the_key(conf: Path) -> None:
    assert_one_line_error(
        run_cli("config", "show", "-c", str(conf), "--relay-port", "70000"),
        "--relay-port/--port (relay.ports[0]): 70000 is not a port number",
    )
    assert_one_line_error(run_cli("config", "show", "--prefix", "2001:db8::/60"), "/60")
    assert_one_line_error(run_cli("config", "show", "--map", "nonsense"), "relay.maps[0]")


def test_show_with_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[relay]\nports = [22, 80, 70000]\n")
    assert_one_line_error(
        run_cli("config", "show", "-c", str(path)), "relay.ports[2]: 70000 is not a port number"
    )
