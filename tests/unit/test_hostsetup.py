"""Host set-up steps (exact commands) and hostexec's apply/undo decisions, with a fake runner."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

import pytest

from totd_faith import hostexec
from totd_faith.hostsetup import (
    DEFAULT_MARK,
    DEFAULT_TABLE,
    Step,
    anyip_steps,
    host_steps,
    nft_script,
    parse_link_local,
    router_command,
    sysctl_steps,
    tproxy_steps,
)
from totd_faith.prefix import Nat64Prefix

P1 = Nat64Prefix.parse("2001:db8:64::/96")
P2 = Nat64Prefix.parse("2001:db8:1::/48")


class FakeHost:
    """Records commands; a step counts as applied when its apply argv ran and undo did not."""

    def __init__(self, present: Sequence[Step] = (), fail: Sequence[str] = ()) -> None:
        self.present = {s.apply for s in present}
        self.fail = set(fail)
        self.ran: list[tuple[str, ...]] = []
        self.steps: dict[tuple[str, ...], Step] = {}

    def know(self, steps: Sequence[Step]) -> None:
        for s in steps:
            assert s.check is not None
            self.steps[s.check] = s
            if s.undo is not None:
                self.steps[s.undo] = s

    def __call__(self, argv: Sequence[str], stdin: str | None) -> tuple[int, str]:
        argv = tuple(argv)
        self.ran.append(argv)
        if argv in self.steps and argv == self.steps[argv].check:
            return (0 if self.steps[argv].apply in self.present else 1), ""
        if " ".join(argv) in self.fail:
            return 2, "RTNETLINK answers: Operation not permitted"
        if argv in self.steps:  # an undo
            self.present.discard(self.steps[argv].apply)
            return 0, ""
        self.present.add(argv)
        return 0, ""


def test_anyip_route_command_and_check() -> None:
    (step,) = anyip_steps([P1])
    assert step.apply == ("ip", "-6", "route", "add", "local", "2001:db8:64::/96", "dev", "lo")
    assert step.undo == ("ip", "-6", "route", "del", "local", "2001:db8:64::/96", "dev", "lo")
    assert step.check == (
        "sh",
        "-c",
        "ip -6 route show table local type local exact 2001:db8:64::/96 dev lo 2>/dev/null"
        " | grep -q .",
    )
    assert [s.apply[5] for s in anyip_steps([P1, P2])] == ["2001:db8:64::/96", "2001:db8:1::/48"]


def test_no_sysctl_is_needed() -> None:
    assert sysctl_steps() == []
    assert sysctl_steps(all_ports=True) == []


def test_tproxy_steps_exact_commands() -> None:
    nft, rule, route = tproxy_steps([P1, P2], 64646, 0x7466, 29798)
    assert nft.apply == ("nft", "-f", "-")
    assert nft.undo == ("nft", "delete", "table", "inet", "totd_faith")
    tag = "totd-faith 2001:db8:64::/96 2001:db8:1::/48 port 64646 mark 0x7466"
    assert nft.check == (
        "sh",
        "-c",
        f"nft list table inet totd_faith 2>/dev/null | grep -qF 'comment \"{tag}\"'",
    )
    assert f'accept comment "{tag}"\n' in nft.stdin
    assert nft.stdin == nft_script([P1, P2], 64646, 0x7466)
    assert (
        "ip6 daddr { 2001:db8:64::/96, 2001:db8:1::/48 } meta l4proto { tcp, udp } "
        "tproxy ip6 to :64646 meta mark set 0x7466 accept" in nft.stdin
    )
    # Atomic replacement of an older copy: declare, delete, define.
    assert nft.stdin.splitlines()[:2] == [
        "table inet totd_faith",
        "delete table inet totd_faith",
    ]
    assert " ".join(rule.apply) == "ip -6 rule add fwmark 0x7466 lookup 29798 priority 29798"
    assert rule.undo is not None and rule.undo[3] == "del" and rule.undo[4:] == rule.apply[4:]
    assert " ".join(route.apply) == "ip -6 route add local ::/0 dev lo table 29798"
    assert " ".join(route.undo or ()) == "ip -6 route del local ::/0 dev lo table 29798"


def test_tproxy_defaults() -> None:
    steps = tproxy_steps([P1], 5000)
    assert f"fwmark {DEFAULT_MARK:#x}" in " ".join(steps[1].apply)
    assert steps[2].apply[-1] == str(DEFAULT_TABLE)


def test_nft_script_needs_a_prefix() -> None:
    with pytest.raises(ValueError):
        nft_script([], 1, 1)


def test_router_command() -> None:
    assert (
        router_command(P1, "fe80::1:2", "eth1")
        == "ip -6 route add 2001:db8:64::/96 via fe80::1:2 dev eth1"
    )


def test_apply_skips_present_steps_and_returns_applied() -> None:
    steps = tproxy_steps([P1], 64646)
    host = FakeHost(present=[steps[1]])
    host.know(steps)
    applied = hostexec.apply(steps, host)
    assert applied == [steps[0], steps[2]]
    assert steps[1].apply not in [r for r in host.ran if r != steps[1].check]
    # Second run: everything is in place, nothing is applied.
    host.ran.clear()
    assert hostexec.apply(steps, host) == []
    assert all(argv in {s.check for s in steps} for argv in host.ran)


def test_undo_reverse_order_only_present() -> None:
    steps = tproxy_steps([P1], 64646)
    host = FakeHost(present=[steps[0], steps[2]])
    host.know(steps)
    removed = hostexec.undo(steps, host)
    assert removed == [steps[2], steps[0]]
    undos = [argv for argv in host.ran if argv in {s.undo for s in steps}]
    assert undos == [steps[2].undo, steps[0].undo]
    # Idempotent: nothing left to remove.
    assert hostexec.undo(steps, host) == []


def test_apply_failure_rolls_back_and_names_command() -> None:
    steps = tproxy_steps([P1], 64646)
    host = FakeHost(fail=[" ".join(steps[1].apply)])
    host.know(steps)
    with pytest.raises(hostexec.HostSetupError) as info:
        hostexec.apply(steps, host)
    message = str(info.value)
    assert "ip -6 rule add fwmark 0x7466" in message
    assert "needs root or CAP_NET_ADMIN" in message
    assert steps[0].undo in host.ran
    assert host.present == set()


def test_undo_continues_after_a_failure() -> None:
    steps = anyip_steps([P1, P2])
    host = FakeHost(present=steps, fail=[" ".join(steps[1].undo or ())])
    host.know(steps)
    assert hostexec.undo(steps, host) == [steps[0]]


def test_run_command_reports_missing_program() -> None:
    status, output = hostexec.run_command(["totd-faith-no-such-program"])
    assert status == 127 and "command not found" in output


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs sh to syntax-check the script")
@pytest.mark.parametrize("undo_script", [False, True])
def test_render_is_valid_shell(undo_script: bool) -> None:
    steps = [*anyip_steps([P1]), *tproxy_steps([P1], 64646)]
    text = hostexec.render(steps, undo_script=undo_script)
    assert subprocess.run(["sh", "-n"], input=text, text=True, check=False).returncode == 0
    if undo_script:
        assert text.index("nft delete table") > text.index("ip -6 route del local ::/0")
        assert "ip -6 route del local 2001:db8:64::/96 dev lo" in text
    else:
        assert "<<'EOF'\ntable inet totd_faith\n" in text
        assert text.index("ip -6 route add local 2001:db8:64::/96") < text.index("nft -f -")
        assert "if ! ip -6 route show table local type local exact 2001:db8:64::/96" in text


def test_parse_link_local() -> None:
    out = (
        "1: lo    inet6 ::1/128 scope host \\       valid_lft forever preferred_lft forever\n"
        "4: eth0    inet6 fe80::fc:ff:fe00:1/64 scope link \\       valid_lft forever\n"
        "7: veth1@if6    inet6 fe80::a8b4:1ff:fe2c:9f01/64 scope link \\       valid_lft x\n"
        "garbage\n"
    )
    assert parse_link_local(out) == [
        ("eth0", "fe80::fc:ff:fe00:1"),
        ("veth1", "fe80::a8b4:1ff:fe2c:9f01"),
    ]


def test_link_local_addresses_asks_ip() -> None:
    calls: list[tuple[str, ...]] = []

    def runner(argv: Sequence[str], stdin: str | None) -> tuple[int, str]:
        calls.append(tuple(argv))
        return 0, "4: eth1    inet6 fe80::1/64 scope link \\ valid_lft forever"

    assert hostexec.link_local_addresses("eth1", runner) == [("eth1", "fe80::1")]
    assert calls == [("ip", "-6", "-o", "addr", "show", "scope", "link", "dev", "eth1")]
    assert hostexec.link_local_addresses(None, lambda a, s: (1, "no such device")) == []


def test_host_steps() -> None:
    assert host_steps([P1]) == anyip_steps([P1])
    both = host_steps([P1], all_ports=True, tproxy_port=64646)
    assert both == anyip_steps([P1]) + tproxy_steps([P1], 64646)


def test_apply_racing_another_process_is_not_a_failure() -> None:
    """The step fails because someone applied it between check and apply: in place, not ours."""
    steps = anyip_steps([P1])
    checks = iter([1, 0])  # absent at first, present after the failed apply

    def runner(argv: Sequence[str], stdin: str | None) -> tuple[int, str]:
        if tuple(argv) == steps[0].check:
            return next(checks), ""
        return 2, "RTNETLINK answers: File exists"

    assert hostexec.apply(steps, runner) == []
