"""``totd-faith setup`` printing mode, run as a user would (no root needed, nothing changed).

The exact script text is the contract for operators who pipe it to ``sh`` or
read it as documentation; the steps themselves are tested against the kernel
in tests/e2e/test_setup_cmd_netns.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.cli import assert_one_line_error, run_cli

PREFIX_MODE_96 = """\
#!/bin/sh
# totd-faith host set-up for 2001:db8:64::/96 (prefix mode).
# Run it as root; a step already in place is skipped. The same, from totd-faith:
#   totd-faith setup --prefix 2001:db8:64::/96 --apply
# and to remove it again:
#   totd-faith setup --prefix 2001:db8:64::/96 --undo
# No sysctl is needed: the prefix is delivered locally (nothing is forwarded)
# and the relay's sockets reply from the dialled address by themselves.
set -e
# deliver every address of 2001:db8:64::/96 locally (AnyIP route)
if ! ip -6 route show table local type local exact 2001:db8:64::/96 dev lo 2>/dev/null | grep -q .; then
  ip -6 route add local 2001:db8:64::/96 dev lo
fi

# On the upstream IPv6 router: route the prefix to this host.
# fe80::1 is this host's link-local address.
#   ip -6 route add 2001:db8:64::/96 via fe80::1 dev eth1
"""  # noqa: E501 - the script's own long lines

ALL_PORTS_96 = """\
#!/bin/sh
# totd-faith host set-up for 2001:db8:64::/96 (all-ports mode).
# Run it as root; a step already in place is skipped. The same, from totd-faith:
#   totd-faith setup --prefix 2001:db8:64::/96 --all-ports --apply
# and to remove it again:
#   totd-faith setup --prefix 2001:db8:64::/96 --all-ports --undo
# No sysctl is needed: the prefix is delivered locally (nothing is forwarded)
# and the relay's sockets reply from the dialled address by themselves.
set -e
# deliver every address of 2001:db8:64::/96 locally (AnyIP route)
if ! ip -6 route show table local type local exact 2001:db8:64::/96 dev lo 2>/dev/null | grep -q .; then
  ip -6 route add local 2001:db8:64::/96 dev lo
fi
# steer TCP and UDP for 2001:db8:64::/96 to the relay's transparent port 64646 (nft table inet totd_faith)
if ! nft list table inet totd_faith 2>/dev/null | grep -qF 'comment "totd-faith 2001:db8:64::/96 port 64646 mark 0x7466"'; then
  nft -f - <<'EOF'
table inet totd_faith
delete table inet totd_faith
table inet totd_faith {
\tchain prerouting {
\t\ttype filter hook prerouting priority mangle; policy accept;
\t\tip6 daddr { 2001:db8:64::/96 } meta l4proto { tcp, udp } tproxy ip6 to :64646 meta mark set 0x7466 accept comment "totd-faith 2001:db8:64::/96 port 64646 mark 0x7466"
\t}
}
EOF
fi
# route packets marked 0x7466 by routing table 29798
if ! ip -6 rule show fwmark 0x7466 lookup 29798 priority 29798 2>/dev/null | grep -q .; then
  ip -6 rule add fwmark 0x7466 lookup 29798 priority 29798
fi
# deliver everything routed by table 29798 locally
if ! ip -6 route show table 29798 type local exact ::/0 dev lo 2>/dev/null | grep -q .; then
  ip -6 route add local ::/0 dev lo table 29798
fi

# On the upstream IPv6 router: route the prefix to this host.
# Replace HOST-LINK-LOCAL with this host's link-local address on the link
# to the router (`ip -6 addr show dev IFACE scope link`), or run setup again
# with --uplink IFACE or --link-local ADDR.
# Replace ROUTER-IFACE with the router's interface on that link
# (or run setup again with --router-interface IFACE).
#   ip -6 route add 2001:db8:64::/96 via HOST-LINK-LOCAL dev ROUTER-IFACE
"""  # noqa: E501 - the script's own long lines


def test_prints_prefix_mode_script_for_a_96() -> None:
    result = run_cli(
        "setup",
        "--prefix",
        "2001:db8:64::/96",
        "--link-local",
        "fe80::1%eth0",  # the scope means nothing to the router: dropped
        "--router-interface",
        "eth1",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == PREFIX_MODE_96


def test_prints_all_ports_script_with_placeholders() -> None:
    result = run_cli("setup", "--prefix", "2001:db8:64::/96", "--all-ports")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ALL_PORTS_96


def test_prefixes_tproxy_port_and_mode_come_from_the_config(tmp_path: Path) -> None:
    conf = tmp_path / "totd-faith.toml"
    conf.write_text(
        'prefixes = ["2001:db8:64::/96", "2001:db8:1::/48"]\n'
        "[relay]\nall_ports = true\ntproxy_port = 5999\n",
        encoding="utf-8",
    )
    out = run_cli("setup", "-c", str(conf), "--link-local", "fe80::a", "--router-interface", "em0")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert (
        "# totd-faith host set-up for 2001:db8:64::/96, 2001:db8:1::/48 (all-ports mode).\n" in text
    )
    assert f"#   totd-faith setup -c {conf} --apply\n" in text
    assert "  ip -6 route add local 2001:db8:64::/96 dev lo\n" in text
    assert "  ip -6 route add local 2001:db8:1::/48 dev lo\n" in text
    assert "tproxy ip6 to :5999 " in text
    assert "ip6 daddr { 2001:db8:64::/96, 2001:db8:1::/48 }" in text
    assert text.endswith(
        "# On the upstream IPv6 router: route the prefixes to this host.\n"
        "# fe80::a is this host's link-local address.\n"
        "#   ip -6 route add 2001:db8:64::/96 via fe80::a dev em0\n"
        "#   ip -6 route add 2001:db8:1::/48 via fe80::a dev em0\n"
    )


def test_flags_override_the_config(tmp_path: Path) -> None:
    conf = tmp_path / "totd-faith.toml"
    conf.write_text('prefixes = ["2001:db8:64::/96"]\n[relay]\nall_ports = true\n', "utf-8")
    out = run_cli("setup", "-c", str(conf), "--prefix", "2001:db8:77::/96")
    assert out.returncode == 0, out.stderr
    assert "ip -6 route add local 2001:db8:77::/96 dev lo" in out.stdout
    assert "2001:db8:64::" not in out.stdout
    assert "(all-ports mode)" in out.stdout  # the file's mode is kept


def test_default_prefix_is_the_configs_default() -> None:
    out = run_cli("setup")
    assert out.returncode == 0, out.stderr
    assert "  ip -6 route add local 64:ff9b::/96 dev lo\n" in out.stdout
    assert "#   totd-faith setup --apply\n" in out.stdout
    assert "nft" not in out.stdout


def test_printed_script_is_valid_shell() -> None:
    out = run_cli("setup", "--prefix", "2001:db8:64::/96", "--all-ports")
    assert out.returncode == 0
    # sh -n parses without running: quoting and the nft here-document are well formed.
    check = subprocess.run(["sh", "-n"], input=out.stdout, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_bad_link_local_is_a_one_line_error() -> None:
    assert_one_line_error(
        run_cli("setup", "--link-local", "2001:db8::1"), "--link-local", "not a link-local"
    )
    assert_one_line_error(
        run_cli("setup", "--link-local", "fe80::zz"), "--link-local", "not an IPv6 address"
    )


def test_unknown_uplink_is_a_one_line_error() -> None:
    assert_one_line_error(run_cli("setup", "--uplink", "tfnosuch0"), "--uplink tfnosuch0")


def test_bad_interface_name_is_a_one_line_error() -> None:
    assert_one_line_error(
        run_cli("setup", "--router-interface", "eth1; reboot"),
        "--router-interface",
        "not an interface name",
    )


def test_bad_prefix_is_a_one_line_error() -> None:
    assert_one_line_error(run_cli("setup", "--prefix", "2001:db8::/95"), "2001:db8::/95")


def test_conflicting_flags_are_usage_errors() -> None:
    for args in (("--apply", "--undo"), ("--link-local", "fe80::1", "--uplink", "eth0")):
        out = run_cli("setup", *args)
        assert out.returncode == 2, out
        assert "not both" in out.stderr
        assert out.stdout == ""
