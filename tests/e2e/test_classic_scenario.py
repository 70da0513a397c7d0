"""The classic totd + faithd site, end to end in network namespaces (issue 5).

An IPv6-only client behind an IPv6 router reaches an IPv4-only server by name: the
dual-stack host runs the real ``totd-faith serve`` (DNS64 proxy + relay from one TOML
file), ``totd-faith setup --apply`` gives it the AnyIP route and prints the router's
route, which the router runs.  See tests/e2e/classic_net.py for the topology.

Covered: AAAA synthesis through serve (also behind a CNAME), a page and an 8 MiB file over
HTTP with curl resolving through serve (SHA-256 compared), TCP and UDP echo, ``check``
(success, and exit 1 on a port not relayed); SIGHUP during a slow download (the download
completes intact, the added relay port and static hosts file are in force afterwards), an
invalid configuration on SIGHUP (rejected, old one kept), an ACL adopted by SIGHUP, a SIGHUP
that adds the first relay ports; SIGTERM (in-flight download drains, new connections
refused, exit 0 within the drain time; the route setup added stays); serve without the
route (names the command, keeps serving DNS); ``manage_routes`` adding and removing the
route, an idle connection ended at the end of the drain; the relay's port taken at start
(DNS keeps serving, SIGHUP retries); two workers sharing the ports.

Run: ``pytest -q tests/e2e/test_classic_scenario.py`` as root (about 25 s).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.classic_net import (
    BIG_SIZE,
    CLIENT_V6,
    DNS_SERVER,
    FILES,
    LEGACY,
    PAGE,
    PREFIX,
    SERVER_V4,
    SERVER_V6,
    WWW,
    RouterRoute,
    Serve,
    Site,
    anyip_routes,
    build,
    curl_argv,
    dig,
    echo,
    hold_connection,
    poll,
    remove_resolv_conf,
    route_prefix_via_setup,
    serve_config,
    setup_cmd,
    sha256_file,
    start_serve,
)
from tests.netns import Topology, skip_unless_netns
from tests.support.cli import totd_faith_argv

TOOLS = ("nginx", "socat", "nsd", "dig", "curl")


class Scenario:
    """The site plus the serve currently running there (restarted when a test changed it)."""

    def __init__(self, site: Site, route: RouterRoute) -> None:
        self.site = site
        self.route = route
        self.serve: Serve | None = None
        self.pristine = False
        self.started = 0

    def start(self, config_text: str, *, relay_ready: bool = True) -> Serve:
        self.stop()
        self.started += 1
        name = f"serve{self.started}"
        self.serve = start_serve(self.site, config_text, name, relay_ready=relay_ready)
        self.pristine = False
        return self.serve

    def base(self) -> Serve:
        """serve with the base configuration, started if the last test changed or stopped it."""
        if self.serve is None or not self.pristine or self.serve.proc.poll() is not None:
            self.start(serve_config())
            self.pristine = True
        assert self.serve is not None
        return self.serve

    def stop(self) -> None:
        if self.serve is not None:
            self.serve.stop()
            self.serve = None


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    skip_unless_netns()
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (scripts/setup installs them)")
    tmp = tmp_path_factory.mktemp("classic")
    with Topology() as topo:
        site = build(topo, tmp)
        try:
            scenario = Scenario(site, route_prefix_via_setup(site))
            yield scenario
            scenario.stop()
        finally:
            remove_resolv_conf(site)


@pytest.fixture
def serve(scenario: Scenario) -> Serve:
    return scenario.base()


def test_router_route_is_the_line_setup_printed(scenario: Scenario) -> None:
    site, route = scenario.site, scenario.route
    assert route.command == f"ip -6 route add {PREFIX} via {route.host_link_local} dev eth1"
    got = site.router.run("ip", "-6", "route", "get", SERVER_V6).stdout
    assert f"via {route.host_link_local} dev eth1" in got, got
    routes = anyip_routes(site.host)
    assert len(routes) == 1 and f"local {PREFIX} dev lo " in routes[0], routes


def test_client_resolves_the_ipv4_only_name_into_the_prefix(
    serve: Serve, scenario: Scenario
) -> None:
    client = scenario.site.client
    status, answer = dig(client, "AAAA", WWW)
    assert (status, answer) == ("NOERROR", [(WWW + ".", "AAAA", SERVER_V6)]), serve.context()
    status, answer = dig(client, "AAAA", FILES)
    assert status == "NOERROR", serve.context()
    assert [(rtype, data) for _, rtype, data in answer] == [
        ("CNAME", WWW + "."),
        ("AAAA", SERVER_V6),
    ], answer
    # The plain A answer passes through untouched.
    assert dig(client, "A", WWW)[1] == [(WWW + ".", "A", SERVER_V4)]


def test_client_fetches_page_and_big_file_by_name_over_ipv6(
    serve: Serve, scenario: Scenario, tmp_path: Path
) -> None:
    client, site = scenario.site.client, scenario.site
    page = client.run(*curl_argv(f"http://{WWW}/", "-6"), check=False)
    assert page.returncode == 0, page.stderr + serve.context()
    assert page.stdout == PAGE + f"200 {len(PAGE)}"
    target = tmp_path / "big.bin"
    big = client.run(*curl_argv(f"http://{FILES}/big.bin", "-6", "-o", str(target)), check=False)
    assert big.returncode == 0, big.stderr + serve.context()
    assert big.stdout == f"200 {BIG_SIZE}"
    assert sha256_file(target) == site.big_sha256
    # The relay carried it: client -> the synthesized address -> the IPv4 server.
    serve.wait_log(rf"tcp \S+ -> \[{SERVER_V6}\]:80 -> {SERVER_V4}:80: \d+ bytes up, \d{{7,}} ")


def test_echo_over_tcp_and_udp(serve: Serve, scenario: Scenario) -> None:
    result = echo(scenario.site.client, SERVER_V6, 7, 1_000_000, 1, 512, 1400)
    assert result["tcp_ok"], f"{result}{serve.context()}"
    for entry in result["udp"]:
        assert entry["ok"], f"{result}{serve.context()}"
        assert entry["source"] == SERVER_V6, result  # the reply comes from the dialled address


def test_check_connects_through_serve(serve: Serve, scenario: Scenario) -> None:
    client = scenario.site.client
    check = [*totd_faith_argv(), "check", "--server", DNS_SERVER, "--count", "2"]
    result = client.run(*check, "--interval", "0.2", WWW, "80", check=False)
    assert result.returncode == 0, result.stdout + result.stderr + serve.context()
    assert SERVER_V6 in result.stdout
    # A port the relay does not serve: check says so with exit 1.
    refused = client.run(*check, "--interval", "0", WWW, "8080", check=False)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert SERVER_V6 in refused.stdout


def _slow_download(scenario: Scenario, target: Path, rate: str) -> subprocess.Popen[str]:
    """curl of the big file at ``rate``, in the background; returns once bytes are arriving."""
    client = scenario.site.client
    proc = client.popen(
        *curl_argv(f"http://{WWW}/big.bin", "-6", "--limit-rate", rate, "-o", str(target)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    poll("the slow download to start", lambda: target.exists() and target.stat().st_size > 0, 10)
    return proc


def _finish(proc: subprocess.Popen[str], serve: Serve, timeout: float = 30) -> str:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    assert proc.returncode == 0, f"curl exited {proc.returncode}: {err}{serve.context()}"
    return out


def test_sighup_during_a_download_keeps_it_and_adopts_the_new_settings(
    scenario: Scenario, tmp_path: Path
) -> None:
    site = scenario.site
    serve = scenario.start(serve_config())
    hosts = tmp_path / "hosts"
    hosts.write_text(f"{SERVER_V4} {LEGACY}\n")
    # Before: port 8080 is not relayed, the legacy name is not in DNS.
    assert dig(site.client, "AAAA", LEGACY)[0] == "NXDOMAIN"
    before = site.client.run(*curl_argv(f"http://{WWW}:8080/", "-6"), check=False)
    assert before.returncode != 0, before.stdout

    target = tmp_path / "big.bin"
    download = _slow_download(scenario, target, "2M")  # 8 MiB: about 4 s
    reloaded_at = serve.reload(serve_config(ports=(80, 7, 8080), hosts_file=hosts))
    assert download.poll() is None, "the download ended before the reload: nothing was tested"

    # The new settings are in force while the old connection still runs.
    after = site.client.run(*curl_argv(f"http://{WWW}:8080/", "-6"), check=False)
    assert after.returncode == 0 and after.stdout == PAGE + f"200 {len(PAGE)}", (
        after.stderr + serve.context()
    )
    status, answer = dig(site.client, "AAAA", LEGACY)
    assert (status, [data for _, _, data in answer]) == ("NOERROR", [SERVER_V6]), serve.context()

    assert _finish(download, serve) == f"200 {BIG_SIZE}"
    assert sha256_file(target) == site.big_sha256
    # The relay logs a connection when it ends: this one ended after the reload, intact.
    ended = serve.wait_log(
        rf"tcp \S+ -> \[{SERVER_V6}\]:80 -> {SERVER_V4}:80: \d+ bytes up, (\d+) bytes down.*",
        start=reloaded_at,
    )
    assert int(ended.group(1)) > BIG_SIZE, ended.group(0)
    assert serve.proc.poll() is None, serve.context()


def test_sighup_keeps_the_old_config_when_the_new_one_is_invalid_then_adopts_an_acl(
    scenario: Scenario,
) -> None:
    site = scenario.site
    serve = scenario.start(serve_config())
    complaint = serve.reload_rejected(serve_config(ports=(80, 70000)))
    assert "relay.ports" in complaint and "70000" in complaint, complaint
    page = site.client.run(*curl_argv(f"http://{WWW}/", "-6"), check=False)
    assert page.stdout == PAGE + f"200 {len(PAGE)}", page.stderr + serve.context()

    # Now an access list without the client's network: DNS refuses, the relay denies.
    serve.reload(serve_config(clients=("127.0.0.0/8", "::1/128", "fd00:2::/64")))
    assert dig(site.client, "AAAA", WWW)[0] == "REFUSED", serve.context()
    denied = site.client.run(*curl_argv(f"http://[{SERVER_V6}]/"), check=False)
    assert denied.returncode != 0, denied.stdout + serve.context()
    serve.wait_log(rf"tcp \[{CLIENT_V6}\]:\d+ -> .*denied")
    assert serve.proc.poll() is None, serve.context()


def test_relay_port_taken_dns_keeps_serving_and_sighup_retries(scenario: Scenario) -> None:
    site = scenario.site
    scenario.stop()
    squatter = site.host.popen(
        "socat", "TCP6-LISTEN:80,ipv6only=1,reuseaddr,fork", "SYSTEM:echo squatter",
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    poll("the squatter listening", lambda: ":80 " in site.host.run("ss", "-Htln").stdout, 10)
    serve = scenario.start(serve_config(), relay_ready=False)
    problem = serve.wait_log(r"relay not started, DNS64 keeps serving: .*")
    assert "[::]:80" in problem.group(0), problem.group(0)
    assert dig(site.client, "AAAA", WWW)[1] == [(WWW + ".", "AAAA", SERVER_V6)], serve.context()
    squatter.terminate()
    squatter.wait(10)
    serve.reload(serve_config())  # the same configuration: the relay is tried again
    page = site.client.run(*curl_argv(f"http://{WWW}/", "-6"), check=False)
    assert page.stdout == PAGE + f"200 {len(PAGE)}", page.stderr + serve.context()


def test_sighup_starts_the_relay_when_the_first_ports_are_added(scenario: Scenario) -> None:
    site = scenario.site
    serve = scenario.start(serve_config(ports=()), relay_ready=False)
    serve.wait_log(r"relay: nothing to relay")
    before = site.client.run(*curl_argv(f"http://{WWW}/", "-6"), check=False)
    assert before.returncode != 0, before.stdout
    serve.reload(serve_config())
    page = site.client.run(*curl_argv(f"http://{WWW}/", "-6"), check=False)
    assert page.stdout == PAGE + f"200 {len(PAGE)}", page.stderr + serve.context()
    result = echo(site.client, SERVER_V6, 7, 10_000, 100)
    assert result["tcp_ok"] and result["udp"][0]["ok"], f"{result}{serve.context()}"


def test_sighup_adding_the_first_udp_port_relays_udp(scenario: Scenario) -> None:
    site = scenario.site
    serve = scenario.start(serve_config(ports=('{ port = 80, protocols = ["tcp"] }',)))
    serve.reload(serve_config(ports=(80, 7)))
    result = echo(site.client, SERVER_V6, 7, 10_000, 100, attempts=2)
    assert result["tcp_ok"], f"{result}{serve.context()}"  # TCP on the new port works
    assert result["udp"][0]["ok"], f"{result}{serve.context()}"


def test_two_workers_serve_reload_and_stop(scenario: Scenario) -> None:
    site = scenario.site
    scenario.stop()
    serve = Serve(site.host, site.tmp, serve_config(workers=2), "serve-workers")
    scenario.serve = serve
    poll(
        "both workers serving",
        lambda: serve.output().count("serve: relay prefixes") == 2 or serve.proc.poll() is not None,
        20,
    )
    assert serve.proc.poll() is None, serve.context()
    assert dig(site.client, "AAAA", WWW)[1] == [(WWW + ".", "AAAA", SERVER_V6)], serve.context()
    for _ in range(4):  # the kernel spreads connections over both workers
        page = site.client.run(*curl_argv(f"http://{WWW}/", "-6"), check=False)
        assert page.stdout == PAGE + f"200 {len(PAGE)}", page.stderr + serve.context()
    serve.signal(signal.SIGHUP)
    poll("both workers reloaded", lambda: serve.output().count("configuration reloaded") == 2, 15)
    status, _ = serve.terminate()
    assert status == 0, serve.context()
    scenario.serve = None


def test_sigterm_drains_the_download_and_exits_zero(scenario: Scenario, tmp_path: Path) -> None:
    site = scenario.site
    drain = 8.0
    serve = scenario.start(serve_config(drain_timeout=drain))
    target = tmp_path / "big.bin"
    download = _slow_download(scenario, target, "4M")  # 8 MiB: about 2 s, well within the drain
    started = time.monotonic()
    serve.signal(signal.SIGTERM)
    serve.wait_log(r"stopping \(draining")

    # Stopped accepting: a new connection is refused while the old one drains.
    def refused() -> bool:
        probe = site.client.run(
            *curl_argv(f"http://[{SERVER_V6}]/", "--max-time", "2"), check=False
        )
        return probe.returncode != 0

    poll("new connections refused after SIGTERM", refused, drain)

    assert _finish(download, serve) == f"200 {BIG_SIZE}"
    assert sha256_file(target) == site.big_sha256
    # The download's relayed connection ended after the stop began, complete: it drained.
    stopping = serve.wait_log(r"stopping \(draining.*\n")
    ended = serve.wait_log(
        rf"tcp \S+ -> \[{SERVER_V6}\]:80 -> {SERVER_V4}:80: \d+ bytes up, (\d+) bytes down.*",
        start=stopping.end(),
    )
    assert int(ended.group(1)) > BIG_SIZE, ended.group(0)
    try:
        status = serve.proc.wait(drain + 5)
    except subprocess.TimeoutExpired:
        raise AssertionError("serve did not exit within the drain time" + serve.context()) from None
    elapsed = time.monotonic() - started
    assert status == 0, serve.context()
    assert elapsed < drain + 3, f"{elapsed:.1f} s" + serve.context()
    assert "Traceback" not in serve.output(), serve.context()
    # serve did not add the AnyIP route (setup --apply did), so it is still there.
    assert len(anyip_routes(site.host)) == 1, anyip_routes(site.host)
    scenario.serve = None


@pytest.fixture
def without_prefix_route(scenario: Scenario) -> Iterator[Site]:
    """The host without its AnyIP route (setup --undo); setup --apply restores it after."""
    site = scenario.site
    scenario.stop()
    undone = setup_cmd(site.host, "--undo")
    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert anyip_routes(site.host) == []
    try:
        yield site
    finally:
        scenario.stop()
        reapplied = setup_cmd(site.host, "--apply")
        assert reapplied.returncode == 0, reapplied.stdout + reapplied.stderr
        assert len(anyip_routes(site.host)) == 1


def test_without_the_route_serve_names_the_command_and_keeps_serving_dns(
    scenario: Scenario, without_prefix_route: Site
) -> None:
    site = without_prefix_route
    serve = scenario.start(serve_config(), relay_ready=False)
    advice = serve.wait_log(r"no AnyIP route for .*`(ip -6 route add local \S+ dev lo)`")
    assert advice.group(1) == f"ip -6 route add local {PREFIX} dev lo", advice.group(0)
    assert dig(site.client, "AAAA", WWW) == ("NOERROR", [(WWW + ".", "AAAA", SERVER_V6)])
    unrouted = site.client.run(*curl_argv(f"http://{WWW}/", "-6", "--max-time", "1"), check=False)
    assert unrouted.returncode != 0, unrouted.stdout
    # The command serve named makes the relay reachable, without a restart.
    site.host.run(*advice.group(1).split())
    page = site.client.run(*curl_argv(f"http://{WWW}/", "-6"), check=False)
    assert page.stdout == PAGE + f"200 {len(PAGE)}", page.stderr + serve.context()


def test_manage_routes_adds_the_route_at_start_and_removes_it_at_stop(
    scenario: Scenario, without_prefix_route: Site
) -> None:
    site = without_prefix_route
    drain = 2.0
    serve = scenario.start(serve_config(manage_routes=True, drain_timeout=drain))
    assert len(anyip_routes(site.host)) == 1, serve.context()
    page = site.client.run(*curl_argv(f"http://{WWW}/", "-6"), check=False)
    assert page.stdout == PAGE + f"200 {len(PAGE)}", page.stderr + serve.context()
    # An idle relayed connection outlasts the drain time: serve ends it and still exits 0.
    held = hold_connection(site.client, SERVER_V6, 7)
    status, elapsed = serve.terminate()
    assert status == 0, serve.context()
    assert drain - 0.5 < elapsed < drain + 3, f"{elapsed:.1f} s" + serve.context()
    ending, _ = held.communicate(timeout=10)
    assert ending.strip() in ("reset", "eof"), ending
    assert anyip_routes(site.host) == [], serve.context()
    scenario.serve = None


def test_manage_routes_routes_a_prefix_added_by_sighup(
    scenario: Scenario, without_prefix_route: Site
) -> None:
    site = without_prefix_route
    serve = scenario.start(serve_config(manage_routes=True, drain_timeout=1))
    second = "2001:db8:65::/96"
    serve.reload(serve_config(manage_routes=True).replace(f'"{PREFIX}"', f'"{PREFIX}", "{second}"'))
    out = site.host.run("ip", "-6", "route", "show", "table", "local", "type", "local").stdout
    assert f"local {second} dev lo" in out, out + serve.context()
