"""Hosts names that are DNS names but not RFC 1123 host names (Docker's
``project_db_1``, a label starting with '-'): the DNS proxy serves them, zone
export writes them and says that BIND's check-names would refuse them, NSD and
Unbound load them.  Ambiguous addresses stop start-up naming file and line
(QA: one such name stopped `totd-faith dns` from starting)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import dns.message
import dns.query
import dns.reversename
import pytest

from tests.integration.dns_support import a_query, run, start_service, udp_query
from tests.support.cli import assert_one_line_error, run_cli
from tests.support.ports import free_port
from totd_faith.config import from_table
from totd_faith.dnsserver import _default_resolver
from totd_faith.endpoints import Endpoint

HOSTS = (
    "# written by Docker\n"
    "192.0.2.10 project_db_1 db\n"
    "192.0.2.11 -dash.example.org\n"
    "192.0.2.12 plain\n"
)
ARGS = ["-p", "2001:db8:64::/96", "--origin", "example.org", "--serial", "1"]
WARNING = (
    "Warning: 2 name(s) are not host names (RFC 1123 section 2.1: letters, digits and hyphens, "
    "no hyphen at either end of a label): -dash.example.org, project_db_1.example.org; BIND "
    "refuses them in a primary zone unless named.conf relaxes it (check-names primary warn;), "
    "NSD and Unbound take them as they are\n"
)


def _export(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    hosts = tmp_path / "hosts"
    hosts.write_text(HOSTS)
    return subprocess.run(
        [sys.executable, "-m", "totd_faith", "zone", "export", *ARGS, *args, str(hosts)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _ask(endpoint: Endpoint, name: str, rdtype: str) -> list[str]:
    query = dns.message.make_query(name, rdtype)
    response = dns.query.udp(query, str(endpoint.host), port=endpoint.port, timeout=5)
    return sorted(rdata.to_text() for rrset in response.answer for rdata in rrset)


def test_the_dns_proxy_answers_for_underscore_and_dash_names(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text(HOSTS)

    async def main() -> None:
        # 192.0.2.0/24 is not global: the Well-Known Prefix must not carry it (RFC 6052 3.1).
        config = from_table(
            {
                "prefixes": ["2001:db8:64::/96"],
                "dns": {
                    "listen": [f"127.0.0.1:{free_port()}"],
                    "upstreams": ["127.0.0.1:9"],
                    "hosts_files": [str(hosts)],
                },
            }
        )
        service, endpoint = await start_service(config, resolver=_default_resolver)
        try:
            for name, v6 in [
                ("project_db_1.", "2001:db8:64::c000:20a"),
                ("PROJECT_DB_1.", "2001:db8:64::c000:20a"),
                ("-dash.example.org.", "2001:db8:64::c000:20b"),
            ]:
                answer = await udp_query(endpoint, a_query(name, "AAAA"))
                assert [r.address for rrset in answer.answer for r in rrset] == [v6], name
        finally:
            await service.stop(0)

    run(main())


def test_bind_export_writes_them_and_warns_about_check_names(tmp_path: Path) -> None:
    result = _export(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == WARNING
    assert "project_db_1 " in result.stdout and "-dash " in result.stdout
    reverse = _export(tmp_path, "--reverse")
    assert reverse.returncode == 0, reverse.stderr
    assert reverse.stderr == WARNING.replace(
        "-dash.example.org, project_db_1.example.org", "project_db_1.example.org, -dash.example.org"
    )
    # The warning is true: named-checkzone with check-names as a primary has it fails.
    binary = shutil.which("named-checkzone") or "/usr/sbin/named-checkzone"
    if not Path(binary).exists():
        pytest.skip("named-checkzone is missing: install the Debian package bind9-utils")
    zone = tmp_path / "example.zone"
    zone.write_text(result.stdout)
    strict = subprocess.run(
        [binary, "-i", "local", "-k", "fail", "example.org", str(zone)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert strict.returncode != 0 and "bad owner name" in strict.stdout, strict.stdout
    relaxed = subprocess.run(
        [binary, "-i", "local", "-k", "ignore", "example.org", str(zone)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert relaxed.returncode == 0, relaxed.stdout


def test_hosts_and_unbound_exports_do_not_warn(tmp_path: Path) -> None:
    for form in ("hosts", "unbound"):
        result = _export(tmp_path, "-f", form)
        assert result.returncode == 0 and result.stderr == "", (form, result.stderr)
        assert "project_db_1.example.org" in result.stdout


def test_nsd_serves_the_exported_names(
    tmp_path: Path, nsd: Callable[[dict[str, str]], Endpoint]
) -> None:
    endpoint = nsd({"example.org.": _export(tmp_path).stdout})
    assert _ask(endpoint, "project_db_1.example.org.", "AAAA") == ["2001:db8:64::c000:20a"]
    assert _ask(endpoint, "-dash.example.org.", "AAAA") == ["2001:db8:64::c000:20b"]


def test_unbound_loads_the_exported_names(tmp_path: Path, unbound: Callable[..., Endpoint]) -> None:
    endpoint = unbound(clauses=_export(tmp_path, "-f", "unbound").stdout)
    assert _ask(endpoint, "project_db_1.example.org.", "AAAA") == ["2001:db8:64::c000:20a"]
    ptr = dns.reversename.from_address("2001:db8:64::c000:20b").to_text()
    assert _ask(endpoint, ptr, "PTR") == ["-dash.example.org."]


def test_an_ambiguous_address_stops_dns_start_up_naming_file_and_line(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text(HOSTS + "010.1.1.1 octal\n")
    conf = tmp_path / "dns.toml"
    conf.write_text(
        f'[dns]\nlisten = ["127.0.0.1:{free_port()}"]\nupstreams = ["127.0.0.1:9"]\n'
        f'hosts_files = ["{hosts}"]\n'
    )
    assert_one_line_error(
        run_cli("dns", "-c", str(conf), timeout=30),
        f"Error: {hosts}:5: 010.1.1.1 is ambiguous: inet_aton(3) reads it as 8.1.1.1",
        "write the address you mean as four decimal numbers without leading zeros",
    )
