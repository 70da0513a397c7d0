"""``totd-faith setup`` helpers without touching the host: fake runners, fake /proc text."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from click.testing import CliRunner

from totd_faith.cli import setup_cmd
from totd_faith.cli.common import UserError
from totd_faith.cli.setup_cmd import (
    apply_steps,
    host_steps,
    net_admin_from_status,
    parse_link_local,
    router_section,
    setup,
    undo_steps,
    uplink_link_local,
)
from totd_faith.config import load_text
from totd_faith.hostsetup import Step
from totd_faith.prefix import Nat64Prefix

P96 = Nat64Prefix.parse("2001:db8:64::/96")
P48 = Nat64Prefix.parse("2001:db8:1::/48")

STATUS = (
    "Name:\tpython3\nCapInh:\t0000000000000000\nCapPrm:\t{prm}\nCapEff:\t{eff}\nCapAmb:\t{amb}\n"
)
ALL = "000001ffffffffff"
NONE = "0000000000000000"
NET_ADMIN = f"{1 << 12:016x}"


def test_root_needs_net_admin_in_its_effective_set() -> None:
    assert net_admin_from_status(STATUS.format(prm=ALL, eff=ALL, amb=NONE), euid=0)
    dropped = f"{int(ALL, 16) & ~(1 << 12):016x}"  # e.g. setpriv --bounding-set=-net_admin
    assert not net_admin_from_status(STATUS.format(prm=dropped, eff=dropped, amb=NONE), euid=0)


def test_others_need_it_ambient_so_ip_and_nft_inherit_it() -> None:
    effective_only = STATUS.format(prm=NET_ADMIN, eff=NET_ADMIN, amb=NONE)
    assert not net_admin_from_status(effective_only, euid=1000)
    ambient = STATUS.format(prm=NET_ADMIN, eff=NET_ADMIN, amb=NET_ADMIN)
    assert net_admin_from_status(ambient, euid=1000)
    assert not net_admin_from_status("", euid=1000)


def test_link_local_parsing() -> None:
    assert parse_link_local("fe80::1") == "fe80::1"
    assert parse_link_local(" FE80::A%eth0 ") == "fe80::a"
    assert parse_link_local("febf::1") == "febf::1"  # still fe80::/10
    with pytest.raises(UserError, match="not a link-local address"):
        parse_link_local("fd00::1")
    with pytest.raises(UserError, match="not an IPv6 address"):
        parse_link_local("192.0.2.1")


def fake_ip(status: int, output: str) -> setup_cmd.hostexec.Runner:
    def runner(argv: Sequence[str], stdin: str | None) -> tuple[int, str]:
        assert list(argv) == ["ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"]
        return status, output

    return runner


def test_uplink_link_local_reads_ip_output() -> None:
    out = (
        "4: eth0    inet6 fe80::fc:ff:fe00:1/64 scope link \\       valid_lft forever "
        "preferred_lft forever\n"
        "4: eth0    inet6 fe80::99/64 scope link \\       valid_lft forever preferred_lft forever\n"
    )
    assert uplink_link_local("eth0", fake_ip(0, out)) == "fe80::fc:ff:fe00:1"


def test_uplink_without_link_local_or_unknown() -> None:
    with pytest.raises(UserError, match="no link-local IPv6 address"):
        uplink_link_local("eth0", fake_ip(0, ""))
    with pytest.raises(UserError, match='Device "eth0" does not exist'):
        uplink_link_local("eth0", fake_ip(1, 'Device "eth0" does not exist.'))


def test_router_section_known_and_placeholders() -> None:
    known = router_section([P96, P48], "fe80::1", "eth0", "eth1")
    assert known.splitlines() == [
        "# On the upstream IPv6 router: route the prefixes to this host.",
        "# fe80::1 is this host's link-local address on eth0.",
        "#   ip -6 route add 2001:db8:64::/96 via fe80::1 dev eth1",
        "#   ip -6 route add 2001:db8:1::/48 via fe80::1 dev eth1",
    ]
    unknown = router_section([P96], None, None, None)
    assert unknown.endswith(
        "#   ip -6 route add 2001:db8:64::/96 via HOST-LINK-LOCAL dev ROUTER-IFACE\n"
    )
    assert "--uplink IFACE or --link-local ADDR" in unknown
    assert "--router-interface IFACE" in unknown


def test_host_steps_follow_the_mode_and_tproxy_port() -> None:
    config = load_text('prefixes = ["2001:db8:64::/96"]\n[relay]\ntproxy_port = 5999\n')
    prefix_mode = host_steps(config, all_ports=False)
    assert [s.apply[:4] for s in prefix_mode] == [("ip", "-6", "route", "add")]
    all_ports = host_steps(config, all_ports=True)
    assert len(all_ports) == 4
    assert all_ports[0] == prefix_mode[0]
    assert all_ports[1].stdin is not None and "tproxy ip6 to :5999 " in all_ports[1].stdin


class FakeHost:
    """A step is present when its apply ran (or it was there to begin with) and undo did not."""

    def __init__(self, steps: Sequence[Step], present: Sequence[Step] = (), stuck: bool = False):
        self.by_argv = {}
        for step in steps:
            assert step.check is not None and step.undo is not None
            self.by_argv[step.check] = ("check", step)
            self.by_argv[step.apply] = ("apply", step)
            self.by_argv[step.undo] = ("undo", step)
        self.present = set(present)
        self.stuck = stuck  # undo fails

    def __call__(self, argv: Sequence[str], stdin: str | None) -> tuple[int, str]:
        kind, step = self.by_argv[tuple(argv)]
        if kind == "check":
            return (0 if step in self.present else 1), ""
        if kind == "apply":
            self.present.add(step)
            return 0, ""
        if self.stuck:
            return 2, "RTNETLINK answers: Operation not permitted"
        self.present.discard(step)
        return 0, ""


def test_apply_reports_applied_and_already_in_place_in_order() -> None:
    config = load_text('prefixes = ["2001:db8:64::/96", "2001:db8:1::/48"]')
    steps = host_steps(config, all_ports=True)
    host = FakeHost(steps, present=[steps[1]])
    lines = apply_steps(steps, host)
    assert [line.split(": ")[0] for line in lines] == [
        "applied",
        "already in place",
        "applied",
        "applied",
        "applied",
    ]
    assert lines[1] == f"already in place: {steps[1].description}"
    assert host.present == set(steps)
    assert all(line.startswith("already in place: ") for line in apply_steps(steps, host))


def test_undo_removes_in_reverse_and_reports_what_is_left() -> None:
    config = load_text('prefixes = ["2001:db8:64::/96"]')
    steps = host_steps(config, all_ports=True)
    host = FakeHost(steps, present=steps[:2])
    lines, left = undo_steps(steps, host)
    assert lines == [
        f"not present: {steps[3].description}",
        f"not present: {steps[2].description}",
        f"removed: {steps[1].description}",
        f"removed: {steps[0].description}",
    ]
    assert left == [] and host.present == set()

    stuck = FakeHost(steps, present=[steps[0]], stuck=True)
    lines, left = undo_steps(steps, stuck)
    assert lines[-1] == f"could not remove: {steps[0].description}"
    assert left == [steps[0]]


def test_apply_without_privilege_is_refused_before_any_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def must_not_run(*args: object) -> None:
        raise AssertionError("a host command ran without the privilege")

    monkeypatch.setattr(setup_cmd, "has_net_admin", lambda: False)
    monkeypatch.setattr(setup_cmd, "apply_steps", must_not_run)
    monkeypatch.setattr(setup_cmd, "undo_steps", must_not_run)
    for action in ("--apply", "--undo"):
        result = CliRunner().invoke(setup, ["--prefix", "2001:db8:64::/96", action])
        assert result.exit_code == 1
        assert result.output.strip() == (
            f"Error: setup {action} needs root or CAP_NET_ADMIN (it changes routes, rules and "
            "nftables); run it with sudo, or without --apply/--undo to print the commands"
        )


def test_undo_failure_is_one_line_with_the_command_output(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_text('prefixes = ["2001:db8:64::/96"]')
    steps = host_steps(config, all_ports=False)
    host = FakeHost(steps, present=steps, stuck=True)
    real_undo = setup_cmd.undo_steps
    monkeypatch.setattr(setup_cmd, "has_net_admin", lambda: True)
    monkeypatch.setattr(setup_cmd, "undo_steps", lambda s: real_undo(s, host))
    result = CliRunner().invoke(setup, ["--prefix", "2001:db8:64::/96", "--undo"])
    assert result.exit_code == 1
    out, error = result.output.splitlines()
    assert out == f"could not remove: {steps[0].description}"
    assert error.startswith("Error: 1 step(s) could not be removed: could not deliver every")
    assert error.endswith(
        "(needs root or CAP_NET_ADMIN): RTNETLINK answers: Operation not permitted"
    )
