"""``totd-faith addr encode|decode`` run as a subprocess, as users run it."""

from __future__ import annotations

import ipaddress

import pytest

from tests.support.cli import assert_one_line_error, run_cli
from totd_faith.prefix import Nat64Prefix


def test_encode_the_cvsup_example() -> None:
    # The classic set-up: cvsupd on 192.168.1.2 behind a /96 translation prefix.
    result = run_cli("addr", "encode", "--prefix", "2001:db8:5999::/96", "192.168.1.2")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "2001:db8:5999::c0a8:102\n"
    assert result.stderr == ""


def test_decode_the_cvsup_example() -> None:
    result = run_cli("addr", "decode", "-p", "2001:db8:5999::/96", "2001:db8:5999::c0a8:102")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "192.168.1.2\n"


def test_several_addresses_one_a_line_in_order() -> None:
    prefix = "2001:db8:122::/48"
    v4s = ["192.0.2.33", "198.51.100.7", "203.0.113.255", "10.0.0.1"]
    encoded = run_cli("addr", "encode", "--prefix", prefix, *v4s)
    assert encoded.returncode == 0, encoded.stderr
    lines = encoded.stdout.splitlines()
    nat64 = Nat64Prefix.parse(prefix)
    assert lines == [str(nat64.embed(ipaddress.IPv4Address(a))) for a in v4s]
    assert lines[0] == "2001:db8:122:c000:2:2100::"  # RFC 6052 section 2.4
    decoded = run_cli("addr", "decode", "--prefix", prefix, *lines)
    assert decoded.returncode == 0, decoded.stderr
    assert decoded.stdout.splitlines() == v4s


@pytest.mark.parametrize(
    ("prefix", "v6"),
    [
        ("2001:db8::/32", "2001:db8:c000:221::"),
        ("2001:db8:100::/40", "2001:db8:1c0:2:21::"),
        ("2001:db8:122:300::/56", "2001:db8:122:3c0:0:221::"),
        ("2001:db8:122:344::/64", "2001:db8:122:344:c0:2:2100:0"),
    ],
)
def test_every_prefix_length(prefix: str, v6: str) -> None:
    result = run_cli("addr", "encode", "--prefix", prefix, "192.0.2.33")
    assert result.stdout == v6 + "\n", result.stderr


def test_default_prefix_is_the_well_known_prefix() -> None:
    result = run_cli("addr", "encode", "192.0.0.170")
    assert result.stdout == "64:ff9b::c000:aa\n", result.stderr
    # RFC 6052 section 3.1: no non-global addresses in 64:ff9b::/96.
    error = assert_one_line_error(run_cli("addr", "encode", "192.168.1.2"), "section 3.1")
    assert "Network-Specific Prefix" in error


def test_prefix_with_a_bad_length() -> None:
    result = run_cli("addr", "encode", "--prefix", "2001:db8::/60", "192.0.2.1")
    assert_one_line_error(result, "/60", "RFC 6052 section 2.2")


def test_the_faithd_era_prefix_is_not_rfc6052_valid() -> None:
    # 2001:200:161:1400:5999::/96 puts 0x59 in bits 64-71, which must be zero.
    result = run_cli("addr", "encode", "--prefix", "2001:200:161:1400:5999::/96", "192.168.1.2")
    assert_one_line_error(result, "bits 64-71", "u-octet", "RFC 6052 section 2.2")


def test_bad_addresses() -> None:
    assert_one_line_error(
        run_cli("addr", "encode", "-p", "2001:db8:64::/96", "192.168.1.300"),
        "'192.168.1.300' is not an IPv4 address",
    )
    assert_one_line_error(
        run_cli("addr", "decode", "-p", "2001:db8:64::/96", "192.0.2.1"),
        "is not an IPv6 address",
    )
    assert_one_line_error(
        run_cli("addr", "decode", "-p", "2001:db8:64::/96", "2001:db8:65::c000:201"),
        "is not inside the prefix 2001:db8:64::/96",
    )
    assert_one_line_error(
        run_cli("addr", "encode", "-p", "not-a-prefix/96", "192.0.2.1"),
        "is not an IPv6 prefix",
    )


def test_one_bad_address_prints_nothing() -> None:
    result = run_cli("addr", "encode", "-p", "2001:db8:64::/96", "192.0.2.1", "nope", "192.0.2.2")
    assert_one_line_error(result, "'nope'")


def test_missing_argument_is_a_usage_error() -> None:
    result = run_cli("addr", "encode", "--prefix", "2001:db8:64::/96")
    assert result.returncode == 2
    assert "Missing argument" in result.stderr
    assert "Traceback" not in result.stderr


def test_python_dash_m_works_too() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "totd_faith",
            "addr",
            "encode",
            "-p",
            "2001:db8:64::/96",
            "192.0.2.1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout == "2001:db8:64::c000:201\n", result.stderr
