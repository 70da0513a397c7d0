"""Operator mistakes on the command line: one ``Error:`` line that says what to do.

Each command here must refuse to start (exit 1, one line on stderr, no
traceback, nothing logged before it); the listen ports are free ports on
loopback, so a command that started anyway would fail the exit-status check
only after its timeout.
"""

from __future__ import annotations

import socket
from pathlib import Path

from tests.support.cli import assert_one_line_error, run_cli
from tests.support.ports import free_port


def _dns(*args: str) -> list[str]:
    """``totd-faith dns`` on a free loopback port with a (never contacted) upstream."""
    return ["dns", "--listen", f"127.0.0.1:{free_port()}", "--upstream", "127.0.0.1:9", *args]


def test_an_ipv4_prefix_says_what_a_translation_prefix_is() -> None:
    line = assert_one_line_error(
        run_cli(*_dns("--prefix", "10.0.0.0/8"), timeout=30),
        "--prefix (prefixes[0]): '10.0.0.0/8' is not an IPv6 prefix (it is an IPv4 network)",
        "IPv6 prefix of length 32, 40, 48, 56, 64 or 96 (RFC 6052 section 2.2)",
        "e.g. 64:ff9b::/96",
    )
    assert "parts expected" not in line


def test_a_prefix_inside_the_exclusion_set_is_refused() -> None:
    assert_one_line_error(
        run_cli(*_dns("--prefix", "::ffff:0:0/96"), timeout=30),
        "--prefix (prefixes[0]): ::ffff:0:0/96 overlaps dns64.exclude[0] ::ffff:0:0/96",
        "RFC 6147 section 5.1.4",
        "use a translation prefix outside the exclusion set",
    )


def test_overlapping_and_duplicate_prefixes_are_refused() -> None:
    assert_one_line_error(
        run_cli(*_dns("-p", "2001:db8:64::/96", "-p", "2001:db8:64::/64"), timeout=30),
        "--prefix (prefixes[1]): 2001:db8:64::/64 overlaps prefixes[0] 2001:db8:64::/96",
    )
    assert_one_line_error(
        run_cli(*_dns("-p", "2001:db8:64::/96", "-p", "2001:db8:64::/96"), timeout=30),
        "--prefix (prefixes[1]): 2001:db8:64::/96 is listed twice (also prefixes[0])",
    )


def test_the_same_mistakes_in_a_file_name_the_key(tmp_path: Path) -> None:
    conf = tmp_path / "overlap.toml"
    conf.write_text('prefixes = ["2001:db8:64::/96", "2001:db8:64::/64"]\n')
    line = assert_one_line_error(
        run_cli("config", "check", str(conf)),
        "Error: prefixes[1]: 2001:db8:64::/64 overlaps prefixes[0]",
    )
    assert "--prefix" not in line


def test_a_misspelt_key_gets_a_suggestion(tmp_path: Path) -> None:
    conf = tmp_path / "typo.toml"
    conf.write_text('[dns]\nupstrems = ["127.0.0.1:53"]\n')
    assert_one_line_error(
        run_cli("dns", "-c", str(conf), timeout=30),
        "dns.upstrems: unknown key, did you mean 'upstreams'? (expected one of: ",
    )


def test_flag_errors_name_the_flag() -> None:
    assert_one_line_error(
        run_cli("dns", "--listen", "nonsense", timeout=30),
        "Error: --listen (dns.listen[0]): 'nonsense' is not an address",
    )
    assert_one_line_error(
        run_cli("dns", "--upstream", "192.0.2.1", "--upstream", "1.2.3.4:99999", timeout=30),
        "Error: --upstream (dns.upstreams[1]): 99999 is not a port number",
    )
    assert_one_line_error(
        run_cli("relay", "--port", "70000", timeout=30),
        "Error: --relay-port/--port (relay.ports[0]): 70000 is not a port number",
    )


def test_start_up_failures_log_no_stopping_line(tmp_path: Path) -> None:
    # Nothing was started, so nothing is "stopping (draining ...)": just the error.
    hosts = tmp_path / "missing-hosts"
    conf = tmp_path / "hosts.toml"
    conf.write_text(f'[dns]\nhosts_files = ["{hosts}"]\n')
    assert_one_line_error(run_cli(*_dns("-c", str(conf)), timeout=30), str(hosts))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("relay", "--map", f"127.0.0.1:{port}=192.0.2.10:80", timeout=30)
    assert_one_line_error(result, f"127.0.0.1:{port}")
