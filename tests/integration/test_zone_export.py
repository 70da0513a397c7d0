"""`totd-faith zone export` as users run it: golden files, named-checkzone, real NSD/Unbound.

Golden outputs live in tests/golden/; after a deliberate change regenerate them (and the
examples under zones/) with

    TOTD_FAITH_UPDATE_GOLDEN=1 pytest tests/integration/test_zone_export.py

and review the diff.
"""

from __future__ import annotations

import importlib
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import dns.message
import dns.name
import dns.query
import dns.rdatatype
import dns.reversename
import pytest

from totd_faith.endpoints import Endpoint
from totd_faith.errors import OperatorError
from totd_faith.prefix import Nat64Prefix

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
GOLDEN_INPUT = "tests/golden/zone-input.hosts"
EXAMPLE_INPUT = "zones/hosts.example"
UPDATE = os.environ.get("TOTD_FAITH_UPDATE_GOLDEN") == "1"

P96 = ["-p", "2001:db8:5999::/96", "--origin", "example.org"]
P48 = [
    *("-p", "2001:db8:64::/48", "--origin", "example.org."),
    *("--serial", "2026112401", "--ttl", "600", "--ns", "ns1.example.net."),
]

REV96 = "0.0.0.0.0.0.0.0.0.0.0.0.9.9.9.5.8.b.d.0.1.0.0.2.ip6.arpa"

#: golden file -> (arguments, origin named-checkzone must load it as, or None)
GOLDEN_CASES: dict[str, tuple[list[str], str | None]] = {
    "zone-96.zone": (P96, "example.org"),
    "zone-96.rev.zone": (
        [*P96, "--reverse"],
        "0.0.0.0.0.0.0.0.0.0.0.0.9.9.9.5.8.b.d.0.1.0.0.2.ip6.arpa",
    ),
    "zone-96.hosts": ([*P96, "-f", "hosts"], None),
    "zone-96.unbound.conf": ([*P96, "-f", "unbound"], None),
    "zone-48.zone": (P48, "example.org"),
    "zone-48.rev.zone": ([*P48, "--reverse"], "4.6.0.0.8.b.d.0.1.0.0.2.ip6.arpa"),
    "zone-48.hosts": ([*P48, "--format", "hosts"], None),
    "zone-48.unbound.conf": ([*P48, "--format", "unbound"], None),
}

#: zones/ example -> arguments (the commands shown in zones/hosts.example)
EXAMPLE_CASES: dict[str, list[str]] = {
    "example.zone": P96,
    "example.rev.zone": [*P96, "--reverse"],
    "example.hosts": [*P96, "-f", "hosts"],
    "example.unbound.conf": [*P96, "-f", "unbound"],
}


def run(*args: str, stdin: str | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run the real command line in a fresh interpreter, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "totd_faith", "zone", "export", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
    )


def named_checkzone(origin: str, path: Path) -> None:
    binary = shutil.which("named-checkzone") or "/usr/sbin/named-checkzone"
    if not Path(binary).exists():
        pytest.skip("named-checkzone is missing: install the Debian package bind9-utils")
    # -i local: integrity checks inside the zone only, so no out-of-zone name is looked up
    # on the network; -k fail: host name syntax (check-names) violations are errors.
    result = subprocess.run(
        [binary, "-i", "local", "-k", "fail", "-n", "fail", "-r", "fail", origin, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"named-checkzone {origin} {path}:\n{result.stdout}"
    assert "loaded serial" in result.stdout


def assert_one_line_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode != 0
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr == f"Error: {message}\n"


# -- golden files


@pytest.mark.parametrize("golden", sorted(GOLDEN_CASES))
def test_output_matches_golden_file(golden: str) -> None:
    args, _ = GOLDEN_CASES[golden]
    result = run(*args, GOLDEN_INPUT)
    assert result.returncode == 0, result.stderr
    path = GOLDEN / golden
    if UPDATE:
        path.write_text(result.stdout)
    assert result.stdout == path.read_text(), f"{golden} differs; see the module docstring"


def test_golden_warnings_go_to_stderr_with_file_and_line() -> None:
    result = run(*P96, GOLDEN_INPUT)
    assert result.stderr.splitlines() == [
        f"Warning: {GOLDEN_INPUT}:10: skipped the IPv6 address ::1 "
        "(only IPv4 hosts need translation)",
        f"Warning: {GOLDEN_INPUT}:11: skipped localhost: 127.0.0.1 is a loopback address, "
        "which no translator can reach",
    ]
    assert "Warning" not in result.stdout


@pytest.mark.parametrize(
    "golden", sorted(name for name, (_, origin) in GOLDEN_CASES.items() if origin)
)
def test_golden_zones_pass_named_checkzone(golden: str) -> None:
    _, origin = GOLDEN_CASES[golden]
    assert origin is not None
    named_checkzone(origin, GOLDEN / golden)


@pytest.mark.parametrize("example", sorted(EXAMPLE_CASES))
def test_zones_examples_are_current(example: str) -> None:
    result = run(*EXAMPLE_CASES[example], EXAMPLE_INPUT)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", "zones/hosts.example should export without warnings"
    path = ROOT / "zones" / example
    if UPDATE:
        path.write_text(result.stdout)
    assert result.stdout == path.read_text(), (
        f"zones/{example} is stale: regenerate it (see the module docstring)"
    )


def test_zones_examples_pass_named_checkzone() -> None:
    named_checkzone("example.org", ROOT / "zones" / "example.zone")
    reverse = Nat64Prefix.parse("2001:db8:5999::/96").reverse_origin.to_text()
    named_checkzone(reverse, ROOT / "zones" / "example.rev.zone")


@pytest.mark.parametrize("length", [32, 40, 48, 56, 64, 96])
def test_every_prefix_length_gives_zones_named_checkzone_accepts(
    length: int, tmp_path: Path
) -> None:
    prefix = Nat64Prefix.parse(f"2001:db8::/{length}")
    forward = tmp_path / "forward.zone"
    reverse = tmp_path / "reverse.zone"
    common = ["-p", str(prefix), "--origin", "example.org", EXAMPLE_INPUT]
    assert run(*common, "-o", str(forward)).returncode == 0
    assert run(*common, "--reverse", "-o", str(reverse)).returncode == 0
    named_checkzone("example.org", forward)
    named_checkzone(prefix.reverse_origin.to_text(omit_final_dot=True), reverse)


def test_name_server_inside_the_zone_gets_its_address(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.53 ns1\n192.0.2.80 www\n")
    out = tmp_path / "zone"
    result = run(
        "-p", "2001:db8::/96", "--origin", "example.org", "--ns", "ns1", "-o", str(out), str(hosts)
    )
    assert result.returncode == 0, result.stderr
    assert "NS ns1\n" in out.read_text()
    named_checkzone("example.org", out)


# -- real name servers load and answer what we export


def _ask(endpoint: Endpoint, name: str, rdtype: str) -> list[str]:
    query = dns.message.make_query(name, rdtype)
    response = dns.query.udp(query, str(endpoint.host), port=endpoint.port, timeout=5)
    return sorted(rdata.to_text() for rrset in response.answer for rdata in rrset)


def _export(*args: str) -> str:
    result = run(*args, EXAMPLE_INPUT)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_nsd_serves_the_exported_forward_and_reverse_zones(
    nsd: Callable[[dict[str, str]], Endpoint],
) -> None:
    prefix = Nat64Prefix.parse("2001:db8:5999::/96")
    endpoint = nsd(
        {
            "example.org.": _export(*P96),
            prefix.reverse_origin.to_text(): _export(*P96, "--reverse"),
        }
    )
    assert _ask(endpoint, "cvsup.example.org.", "AAAA") == ["2001:db8:5999::c0a8:102"]
    assert _ask(endpoint, "mail.example.org.", "AAAA") == ["2001:db8:5999::c0a8:10a"]
    ptr_name = dns.reversename.from_address("2001:db8:5999::c0a8:102").to_text()
    assert _ask(endpoint, ptr_name, "PTR") == ["cvsup.example.org."]


def test_unbound_loads_the_exported_lines(unbound: Callable[..., Endpoint]) -> None:
    # The export starts with its own "server:" clause, so it goes in as a clause.
    endpoint = unbound(clauses=_export(*P96, "-f", "unbound"))
    assert _ask(endpoint, "smtp.example.org.", "AAAA") == ["2001:db8:5999::c0a8:10a"]
    ptr_name = dns.reversename.from_address("2001:db8:5999::c0a8:10b").to_text()
    assert _ask(endpoint, ptr_name, "PTR") == ["www.example.org."]


# -- input from stdin


def test_dash_reads_hosts_from_stdin() -> None:
    result = run(*P96, "-f", "hosts", "-", stdin="192.0.2.7 piped\n::1 localhost\n")
    assert result.returncode == 0
    assert (
        result.stdout.splitlines()[-1] == "2001:db8:5999::c000:207 piped.example.org  # 192.0.2.7"
    )
    assert result.stderr.startswith("Warning: <stdin>:2: skipped the IPv6 address ::1")


# -- errors: one line, non-zero exit, no traceback, nothing written


@pytest.mark.parametrize(
    ("args", "hosts_text", "message"),
    [
        (
            P96,
            "192.0.2.1 a\n# c\n\n\n\n\n192.0.2.300 b\n",
            "{hosts}:7: 192.0.2.300 is not an IPv4 address",
        ),
        (P96, "192.0.2.1\n", "{hosts}:1: 192.0.2.1 has no host name after it"),
        (
            P96,
            "192.0.2.1 ok\n010.1.1.1 octal\n",
            "{hosts}:2: 010.1.1.1 is ambiguous: inet_aton(3) reads it as 8.1.1.1 (a leading 0 "
            "means octal), glibc's hosts lookups skip the line, other programs read it "
            "differently; write the address you mean as four decimal numbers without leading "
            "zeros",
        ),
        (
            P96,
            "192.0.2.1 a..b\n",
            "{hosts}:1: a..b is not a valid host name: it has an empty label",
        ),
        (
            P96,
            "192.0.2.1 www.example.net\n",
            "{hosts}:1: www.example.net. is outside the origin example.org. (export it with its "
            "own --origin, or use --skip-foreign to leave such names out)",
        ),
        (
            ["-p", "64:ff9b::/96", "--origin", "example.org"],
            "8.8.8.8 ok\n192.168.1.2 cvsup\n",
            "{hosts}:2: 192.168.1.2 is not a global IPv4 address and the Well-Known Prefix "
            "64:ff9b::/96 must not carry it (RFC 6052 section 3.1); use a Network-Specific Prefix",
        ),
        (
            ["-p", "2001:db8::/60", "--origin", "example.org"],
            "192.0.2.1 a\n",
            "2001:db8::/60: prefix length /60 is not allowed by RFC 6052 section 2.2 "
            "(use /32, /40, /48, /56, /64 or /96)",
        ),
        (
            ["-p", "2001:db8::/96", "--origin", "exa..mple.org"],
            "192.0.2.1 a\n",
            "--origin: exa..mple.org is not a valid host name: it has an empty label",
        ),
        (
            [*P96, "--serial", "soon"],
            "192.0.2.1 a\n",
            "--serial: 'soon' is not a number (give N or 'today' for YYYYMMDD00)",
        ),
        (
            [*P96, "--serial", "4294967296"],
            "192.0.2.1 a\n",
            "serial 4294967296 is out of range: the SOA serial is an unsigned 32-bit number, "
            "0 to 4294967295 (RFC 1035 section 3.3.13)",
        ),
        (
            [*P96, "--ns", "ns"],
            "192.0.2.1 a\n",
            "the name server ns.example.org. is inside example.org. but no hosts line gives it "
            "an address: add it to a hosts file or name a server outside the zone",
        ),
        (
            [*P96, "-f", "hosts", "--reverse"],
            "192.0.2.1 a\n",
            "--reverse applies to the bind format only (the hosts format already carries the "
            "reverse mapping)",
        ),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    args: list[str], hosts_text: str, message: str, tmp_path: Path
) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text(hosts_text)
    out = tmp_path / "out.zone"
    out.write_text("previous contents\n")
    result = run(*args, "-o", str(out), str(hosts))
    assert_one_line_error(result, message.format(hosts=hosts))
    assert out.read_text() == "previous contents\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hosts", "out.zone"]


def test_missing_hosts_file_is_one_line(tmp_path: Path) -> None:
    result = run(*P96, str(tmp_path / "nope"))
    assert_one_line_error(result, f"{tmp_path / 'nope'}: no such hosts file; check the path")


def test_usage_errors_do_not_trace_back() -> None:
    result = run("--origin", "example.org", EXAMPLE_INPUT)
    assert result.returncode == 2
    assert "Missing option '-p' / '--prefix'" in result.stderr
    assert "Traceback" not in result.stderr


def test_output_into_a_missing_directory_is_one_line(tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "dir" / "out.zone"
    result = run(*P96, "-o", str(target), EXAMPLE_INPUT)
    assert_one_line_error(result, f"{target}: cannot write here: No such file or directory")


# -- atomic output


def test_output_replaces_the_file_and_keeps_its_mode(tmp_path: Path) -> None:
    out = tmp_path / "example.zone"
    out.write_text("old\n")
    out.chmod(0o640)
    result = run(*P96, "-o", str(out), EXAMPLE_INPUT)
    assert result.returncode == 0 and result.stdout == ""
    assert out.read_text().startswith("; Generated by totd-faith zone export")
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["example.zone"]


def test_new_output_file_is_readable_by_a_name_server(tmp_path: Path) -> None:
    # mkstemp's 0600 would keep nsd/named (other users) out; the default follows the umask.
    out = tmp_path / "new.zone"
    result = subprocess.run(
        [
            "sh",
            "-c",
            'umask 022 && exec "$0" -m totd_faith zone export "$@"',
            sys.executable,
            *P96,
            "-o",
            str(out),
            EXAMPLE_INPUT,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


def test_atomic_write_never_leaves_a_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after the temporary file exists removes it and keeps the old file."""
    # "totd_faith.cli.zone" the attribute is the click group; import the module itself.
    zone_cli = importlib.import_module("totd_faith.cli.zone")

    out = tmp_path / "out.zone"
    out.write_text("old\n")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(zone_cli.os, "replace", broken_replace)
    with pytest.raises(OperatorError, match="out.zone: cannot write: No space left on device"):
        zone_cli.write_atomically(str(out), "new\n")
    assert out.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.zone"]


def test_serial_today_is_a_date_serial() -> None:
    result = run(*P96, "--serial", "today", EXAMPLE_INPUT)
    assert result.returncode == 0
    soa = next(line for line in result.stdout.splitlines() if " SOA " in line)
    serial = soa.split()[6]
    assert len(serial) == 10 and serial.endswith("00") and serial.startswith("20")


def test_output_may_not_be_an_input_file(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.1 a\n")
    result = run(*P96, "-o", str(hosts), str(hosts))
    assert_one_line_error(
        result, f"{hosts}: refusing to overwrite the hosts file being read; give -o another file"
    )
    assert hosts.read_text() == "192.0.2.1 a\n"


def test_output_dash_is_stdout(tmp_path: Path) -> None:
    result = run(*P96, "-o", "-", EXAMPLE_INPUT, cwd=ROOT)
    assert result.returncode == 0
    assert result.stdout == (ROOT / "zones" / "example.zone").read_text()
    assert not (ROOT / "-").exists()
